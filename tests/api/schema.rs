//! A small JSON Schema (2020-12 / OpenAPI 3.1) validator for the subset our
//! generated documents use, so that tests can check answers against the
//! committed schemas without a heavy dependency. A keyword it does not know
//! fails the validation loudly rather than passing silently.

use serde_json::Value;

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "format",
    "examples",
    "example",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentMediaType",
];

/// Validates `value` against `schema`, resolving `$ref`s of the form
/// `#/<a>/<b>/<name>` in `root`. Returns every violation, with its JSON path.
pub fn validate(root: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(root, schema, value, "$", &mut errors);
    errors
}

fn resolve<'a>(root: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local $refs: {reference}"));
    root.pointer(pointer)
        .unwrap_or_else(|| panic!("unresolved $ref {reference}"))
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        other => panic!("unknown type {other}"),
    }
}

fn check(root: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            errors.push(format!("{path}: nothing is allowed here"));
        }
        return;
    };
    for (keyword, arg) in schema {
        match keyword.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "$defs" => {}
            "$ref" => check(
                root,
                resolve(root, arg.as_str().unwrap()),
                value,
                path,
                errors,
            ),
            "type" => {
                let ok = match arg {
                    Value::String(name) => type_matches(name, value),
                    Value::Array(names) => names
                        .iter()
                        .any(|n| type_matches(n.as_str().unwrap(), value)),
                    other => panic!("bad type {other}"),
                };
                if !ok {
                    errors.push(format!("{path}: {value} is not of type {arg}"));
                }
            }
            "enum" => {
                if !arg.as_array().unwrap().contains(value) {
                    errors.push(format!("{path}: {value} is not one of {arg}"));
                }
            }
            "const" => {
                if arg != value {
                    errors.push(format!("{path}: {value} is not {arg}"));
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in arg.as_array().unwrap() {
                        let name = name.as_str().unwrap();
                        if !object.contains_key(name) {
                            errors.push(format!("{path}: `{name}` is required"));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(object) = value.as_object() {
                    for (name, sub) in arg.as_object().unwrap() {
                        if let Some(v) = object.get(name) {
                            check(root, sub, v, &format!("{path}.{name}"), errors);
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(object) = value.as_object() {
                    let known = schema.get("properties").and_then(Value::as_object);
                    for (name, v) in object {
                        if known.is_some_and(|k| k.contains_key(name)) {
                            continue;
                        }
                        check(root, arg, v, &format!("{path}.{name}"), errors);
                    }
                }
            }
            "propertyNames" => {
                if let Some(object) = value.as_object() {
                    for name in object.keys() {
                        check(root, arg, &Value::String(name.clone()), path, errors);
                    }
                }
            }
            "items" => {
                if let Some(items) = value.as_array() {
                    for (i, v) in items.iter().enumerate() {
                        check(root, arg, v, &format!("{path}[{i}]"), errors);
                    }
                }
            }
            "minimum" | "exclusiveMinimum" | "maximum" | "exclusiveMaximum" => {
                if let (Some(v), Some(limit)) = (value.as_f64(), arg.as_f64()) {
                    let ok = match keyword.as_str() {
                        "minimum" => v >= limit,
                        "exclusiveMinimum" => v > limit,
                        "maximum" => v <= limit,
                        _ => v < limit,
                    };
                    if !ok {
                        errors.push(format!("{path}: {v} violates {keyword} {limit}"));
                    }
                }
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" => {
                let len = value
                    .as_str()
                    .map(|s| s.chars().count())
                    .or_else(|| value.as_array().map(Vec::len));
                if let (Some(len), Some(limit)) = (len, arg.as_u64()) {
                    let limit = limit as usize;
                    let ok = if keyword.starts_with("min") {
                        len >= limit
                    } else {
                        len <= limit
                    };
                    if !ok {
                        errors.push(format!("{path}: length {len} violates {keyword} {limit}"));
                    }
                }
            }
            "allOf" => {
                for sub in arg.as_array().unwrap() {
                    check(root, sub, value, path, errors);
                }
            }
            "anyOf" | "oneOf" => {
                let matching = arg
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|sub| validate(root, sub, value).is_empty())
                    .count();
                let ok = if keyword == "oneOf" {
                    matching == 1
                } else {
                    matching >= 1
                };
                if !ok {
                    errors.push(format!(
                        "{path}: {value} matches {matching} of the {keyword} alternatives"
                    ));
                }
            }
            other => panic!("the test validator does not know the keyword `{other}` ({path})"),
        }
    }
}

#[test]
fn the_validator_catches_what_it_should() {
    let root = serde_json::json!({
        "$defs": {"A": {"type": "object", "required": ["x"], "properties": {
            "x": {"oneOf": [{"type": "object"}, {"type": "null"}, {"type": "string", "enum": ["[erased]"]}]}
        }}},
        "$ref": "#/$defs/A"
    });
    for (value, ok) in [
        (serde_json::json!({"x": null}), true),
        (serde_json::json!({"x": {"a": 1}}), true),
        (serde_json::json!({"x": "[erased]"}), true),
        (serde_json::json!({"x": "other"}), false),
        (serde_json::json!({"x": 1}), false),
        (serde_json::json!({}), false),
    ] {
        assert_eq!(validate(&root, &root, &value).is_empty(), ok, "{value}");
    }
}
