//! Reading the body of a withdrawal (revocation, block, unblock, inbound message)
//! without ever losing it to a bad optional field (GDPR Art. 7(3), SPEC section 5).
//!
//! Opt-ins are parsed strictly: proof of consent that is malformed proves nothing,
//! and the collector can fix its form. A withdrawal is different: a webhook
//! forwarding STOP cannot fix its payload, and the person said stop. So the body is
//! read field by field: only what identifies the person (`phone`, and for inbound
//! messages `received_at`) is required; every other field that is malformed, too
//! long or unknown is dropped and named in `warnings[]` of the 201 (and by name in
//! the audit event), and the withdrawal is recorded without it. A malformed JSON
//! body is still a 400: there is nothing to read.

use serde_json::{Map, Value};

use crate::domain::evidence::{Channel, Evidence, FieldProblem, Withdrawal};
use crate::domain::phone::{Phone, PhoneError};
use crate::http::error::{ApiError, FieldError};
use crate::policy::{Category, Policy};

/// A withdrawal's JSON body, read leniently. Public for `tests/fuzz.rs`.
pub struct LenientBody<'a> {
    object: &'a Map<String, Value>,
    /// The fields this request knows; others are dropped.
    known: &'static [&'static str],
    /// Problems with required fields: the request is refused (422).
    errors: Vec<FieldError>,
    /// Optional fields dropped, with why.
    dropped: Vec<FieldProblem>,
}

impl<'a> LenientBody<'a> {
    /// The body must be a JSON object (422 naming `body` otherwise).
    pub fn new(body: &'a Value, known: &'static [&'static str]) -> Result<Self, ApiError> {
        let Value::Object(object) = body else {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        };
        Ok(LenientBody {
            object,
            known,
            errors: Vec::new(),
            dropped: Vec::new(),
        })
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|v| !v.is_null())
    }

    /// Drops `name` with `message` (the value is never repeated).
    pub fn drop_field(&mut self, name: impl Into<String>, message: impl Into<String>) {
        self.dropped.push(FieldProblem::new(
            name,
            format!("{}; the field was dropped", message.into()),
        ));
    }

    /// An optional string field; any other JSON type is dropped.
    pub fn optional_str(&mut self, name: &str) -> Option<&'a str> {
        match self.present(name)? {
            Value::String(text) => Some(text),
            _ => {
                self.drop_field(name, "must be a string");
                None
            }
        }
    }

    /// The subject's number: required. A bad `default_region` is dropped when the
    /// number parses without it (it is then in international form), and refused
    /// when it was needed.
    pub fn phone(&mut self) -> Option<Phone> {
        let Some(value) = self.present("phone") else {
            self.errors.push(FieldError::new("phone", "is required"));
            return None;
        };
        let Value::String(raw) = value else {
            self.errors
                .push(FieldError::new("phone", "must be a string"));
            return None;
        };
        let region = match self.present("default_region") {
            None => None,
            Some(Value::String(region)) => Some(region.as_str()),
            Some(_) => {
                self.drop_field("default_region", "must be a string");
                None
            }
        };
        match Phone::parse(raw, region) {
            Ok(phone) => Some(phone),
            Err(e @ (PhoneError::MalformedRegion | PhoneError::UnknownRegion)) => {
                match Phone::parse(raw, None) {
                    Ok(phone) => {
                        self.drop_field("default_region", e.to_string());
                        Some(phone)
                    }
                    Err(_) => {
                        self.errors
                            .push(FieldError::new("default_region", e.to_string()));
                        None
                    }
                }
            }
            Err(e) => {
                self.errors.push(FieldError::new("phone", e.to_string()));
                None
            }
        }
    }

    /// The channel the withdrawal was made on; `default` when absent, and when
    /// unknown (dropped).
    pub fn channel(&mut self, default: Channel) -> Channel {
        match self.present("channel") {
            None => default,
            Some(Value::String(name)) => name.parse().unwrap_or_else(|_| {
                self.drop_field(
                    "channel",
                    format!("is not a channel; recorded as {default}"),
                );
                default
            }),
            Some(_) => {
                self.drop_field(
                    "channel",
                    format!("must be a string; recorded as {default}"),
                );
                default
            }
        }
    }

    /// The categories withdrawn: `None` (every category) when absent. A list that
    /// is not a list of the policy's categories widens the withdrawal to every
    /// category rather than lose it: withdrawing too much costs a message, too
    /// little is a breach.
    pub fn categories(&mut self, policy: &Policy) -> Option<Vec<Category>> {
        let value = self.present("categories")?;
        let widen = |this: &mut Self, message: String| {
            this.drop_field("categories", message);
            None
        };
        let Value::Array(items) = value else {
            return widen(
                self,
                "must be a list of categories; every category was revoked".into(),
            );
        };
        if items.is_empty() {
            return widen(self, "names no category; every category was revoked".into());
        }
        let mut categories: Vec<Category> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str().and_then(|name| policy.category(name)) {
                Some(category) => {
                    if !categories.contains(&category) {
                        categories.push(category);
                    }
                }
                None => {
                    return widen(
                        self,
                        format!(
                            "[{i}] is not a category of policy {}; every category was revoked",
                            policy.name()
                        ),
                    );
                }
            }
        }
        Some(categories)
    }

    /// The evidence, leniently (see [`Evidence::parse_withdrawal`]); the fields
    /// it drops join this body's, in request order.
    pub fn evidence(
        &mut self,
        channel: Channel,
        limits: &crate::domain::evidence::Limits,
    ) -> Withdrawal {
        let mut withdrawal =
            Evidence::parse_withdrawal(channel, self.object.get("evidence"), limits);
        self.dropped.append(&mut withdrawal.dropped);
        withdrawal
    }

    /// Refused when a required field is bad; otherwise the fields dropped so far
    /// plus every unknown field.
    pub fn finish(mut self) -> Result<Vec<FieldProblem>, ApiError> {
        if !self.errors.is_empty() {
            return Err(ApiError::Validation(self.errors));
        }
        let unknown: Vec<String> = self
            .object
            .keys()
            .filter(|key| !self.known.contains(&key.as_str()))
            .map(|key| {
                // Keys are client input too: name them only when they look like
                // field names (never a phone number used as a key).
                if crate::http::extract::looks_like_field_name(key) {
                    key.clone()
                } else {
                    "body".to_owned()
                }
            })
            .collect();
        for key in unknown {
            self.drop_field(key, "is not a field of this request");
        }
        Ok(self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::PolicySet;

    fn policy() -> std::sync::Arc<Policy> {
        PolicySet::shipped().get("whatsapp-global").unwrap()
    }

    #[test]
    fn a_bad_optional_field_is_dropped_and_named_never_refused() {
        let body = json!({
            "phone": "+31612345678",
            "channel": "carrier-pigeon",
            "categories": ["marketting"],
            "surprise": 1,
            "+31612345678": "a number as a key",
        });
        let mut lenient = LenientBody::new(&body, &["phone", "channel", "categories"]).unwrap();
        assert!(lenient.phone().is_some());
        assert_eq!(lenient.channel(Channel::Api), Channel::Api);
        assert_eq!(
            lenient.categories(&policy()),
            None,
            "widened to every category"
        );
        let dropped = lenient.finish().unwrap();
        let fields: Vec<&str> = dropped.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["channel", "categories", "body", "surprise"]);
        for problem in &dropped {
            assert!(!problem.message.contains("+3161"), "{problem:?}");
            assert!(!problem.message.contains("marketting"), "{problem:?}");
        }
    }

    #[test]
    fn a_missing_or_invalid_phone_is_still_refused() {
        for body in [json!({}), json!({"phone": 31}), json!({"phone": "12"})] {
            let mut lenient = LenientBody::new(&body, &["phone"]).unwrap();
            assert!(lenient.phone().is_none());
            assert!(
                matches!(lenient.finish(), Err(ApiError::Validation(_))),
                "{body}"
            );
        }
        assert!(LenientBody::new(&json!([1]), &[]).is_err(), "not an object");
    }

    #[test]
    fn a_bad_region_is_dropped_only_when_the_number_needs_none() {
        let body = json!({"phone": "+31612345678", "default_region": "XX"});
        let mut lenient = LenientBody::new(&body, &["phone", "default_region"]).unwrap();
        assert!(lenient.phone().is_some());
        assert_eq!(lenient.finish().unwrap()[0].field, "default_region");

        let body = json!({"phone": "0612345678", "default_region": "XX"});
        let mut lenient = LenientBody::new(&body, &["phone", "default_region"]).unwrap();
        assert!(lenient.phone().is_none());
        assert!(lenient.finish().is_err());
    }

    #[test]
    fn known_categories_are_kept() {
        let body = json!({"phone": "+31612345678", "categories": ["marketing", "marketing"]});
        let mut lenient = LenientBody::new(&body, &["phone", "categories"]).unwrap();
        let categories = lenient.categories(&policy()).unwrap();
        assert_eq!(categories.len(), 1);
        assert!(lenient.finish().unwrap().is_empty());
    }
}
