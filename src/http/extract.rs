//! Request extractors whose errors are [`ApiError`]s: a JSON body extractor that
//! names the bad field (via serde_path_to_error) without echoing its value, and
//! error handlers for actix's path and query extractors.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};

/// The largest body a JSON request may have (app data; set from configuration).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

const DEFAULT_LIMIT: usize = 2 * 1024 * 1024;

/// A JSON request body, and its raw bytes (for Idempotency-Key fingerprints).
/// Errors: 415 for another content type, 413 above the body limit, 400 for
/// malformed JSON, 422 naming the field for a value of the wrong shape.
#[derive(Debug)]
pub struct Json<T>(pub T, pub actix_web::web::Bytes);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !is_json(req) {
            return Box::pin(async { Err(ApiError::UnsupportedMediaType) });
        }
        let body = read_bounded(req, payload);
        Box::pin(async move {
            let body = body.await?;
            parse_json(&body).map(|value| Json(value, body))
        })
    }
}

/// Whether the request says its body is JSON: `application/json` as such (the
/// common case, compared without parsing), or any media type whose subtype or
/// suffix is `json`, with any parameters.
fn is_json(req: &HttpRequest) -> bool {
    if req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"application/json"))
    {
        return true;
    }
    match req.mime_type() {
        Ok(Some(mime)) => mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"),
        _ => false,
    }
}

/// Deserialises a JSON document, mapping errors to problems that name the field.
/// A body that is not well-formed JSON is a 400 wherever the breakage is, even
/// when a field before it already had the wrong shape: serde stops at the first
/// problem, so a data error is only reported once the whole body is known to parse.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // A body that parses needs no path: serde_path_to_error's tracking (a tenth of
    // a check's own CPU) runs only to explain a body that does not.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            json_error(&path, &inner)
        })
        .and_then(|value| {
            de.end().map_err(|e| json_error(".", &e))?;
            Ok(value)
        });
    match value {
        Err(ApiError::Validation(errors)) => {
            // Only on the error path: the body is read a second time, as syntax only.
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => Err(ApiError::Validation(errors)),
                Err(e) => Err(json_error(".", &e)),
            }
        }
        Err(ApiError::MalformedBody(detail)) => {
            // serde_json reports some shape errors of well-formed JSON as syntax
            // (an array with more items than the request has fields is "trailing
            // characters"; found by tests/fuzz.rs): well-formed JSON is never a 400.
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => Err(ApiError::invalid(
                    "body",
                    "must be a JSON object with this request's fields",
                )),
                Err(_) => Err(ApiError::MalformedBody(detail)),
            }
        }
        other => other,
    }
}

fn json_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof if e.line() == 1 && e.column() == 0 => {
            ApiError::MalformedBody("the request body is empty; expected a JSON object".into())
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedBody(format!(
            "invalid JSON at line {} column {}",
            e.line(),
            e.column()
        )),
        Category::Data => {
            let message = without_location(&e.to_string());
            let (field, message) = field_and_message(path, &message);
            ApiError::Validation(vec![FieldError::new(field, message)])
        }
    }
}

/// serde_json appends " at line L column C"; the field path says more.
fn without_location(message: &str) -> String {
    match message.rsplit_once(" at line ") {
        Some((head, _)) => head.to_owned(),
        None => message.to_owned(),
    }
}

/// The field a data error is about, and a message that never repeats the value
/// the client sent (it may be a phone number in the wrong place).
fn field_and_message(path: &str, message: &str) -> (String, String) {
    let join = |parent: &str, name: &str| {
        if parent == "." || parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    };
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return (join(path, name), "is required".to_owned());
    }
    if let Some(name) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`').map(|(n, _)| n))
    {
        if !looks_like_field_name(name) {
            // Keys are client input: one that is no field name (empty, or perhaps
            // a phone number used as a key) is never echoed; the object holding
            // it is named instead.
            let parent = path
                .strip_suffix(name)
                .unwrap_or(path)
                .trim_end_matches('.');
            let field = if parent.is_empty() {
                "body".to_owned()
            } else {
                parent.to_owned()
            };
            return (
                field,
                "has a key that is not a field of this request".to_owned(),
            );
        }
        // serde_path_to_error already ends the path with the unknown key.
        let field = if path.ends_with(name) {
            path.to_owned()
        } else {
            join(path, name)
        };
        return (field, "is not a field of this request".to_owned());
    }
    let field = if path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    for kind in [
        "invalid type",
        "invalid value",
        "unknown variant",
        "invalid length",
    ] {
        if message.starts_with(kind) {
            let expected = message
                .split_once(", expected ")
                .map(|(_, exp)| format!("; expected {exp}"))
                .unwrap_or_default();
            return (field, format!("{kind}{expected}"));
        }
    }
    // Messages from our own Deserialize impls are written not to echo values.
    (field, message.to_owned())
}

/// Whether a key a client sent may be named back as a field: 1 to 64 ASCII
/// letters, digits, `_` or `-` (an empty key names nothing, and any other key may
/// be personal data).
pub(crate) fn looks_like_field_name(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Path segments that do not parse (e.g. an id that is not a UUID) name nothing
/// that exists: 404, exactly like an unknown id.
pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into())
}

/// A query string, deserialised like [`Json`] bodies: a value that does not parse
/// is a 422 naming its parameter, without echoing the value.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Query<T>, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let parsed = form_urlencoded::parse(req.query_string().as_bytes());
        let result = serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(parsed))
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = without_location(&e.into_inner().to_string());
                let parent = if path == "." { "." } else { path.as_str() };
                let (field, message) = field_and_message(parent, &message);
                let field = if field == "body" {
                    "query".to_owned()
                } else {
                    field
                };
                ApiError::Validation(vec![FieldError::new(field, message)])
            });
        std::future::ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        name: String,
        inner: Inner,
        list: Vec<u32>,
    }

    fn fields(body: &str) -> Vec<FieldError> {
        match parse_json::<Req>(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_field_is_named_with_its_full_path() {
        let errors = fields(r#"{"name":"a","inner":{},"list":[]}"#);
        assert_eq!(errors, vec![FieldError::new("inner.count", "is required")]);
    }

    #[test]
    fn a_wrong_type_names_the_field_and_never_echoes_the_value() {
        let errors = fields(r#"{"name":31612345678,"inner":{"count":1},"list":[]}"#);
        assert_eq!(errors[0].field, "name");
        assert!(
            !errors[0].message.contains("31612345678"),
            "{:?}",
            errors[0]
        );
        let errors = fields(r#"{"name":"a","inner":{"count":1},"list":[1,"+31612345678"]}"#);
        assert_eq!(errors[0].field, "list[1]");
        assert!(!errors[0].message.contains("+316"), "{:?}", errors[0]);
    }

    #[test]
    fn an_unknown_field_is_named() {
        let errors = fields(r#"{"name":"a","inner":{"count":1},"list":[],"extra":1}"#);
        assert_eq!(errors[0].field, "extra");
    }

    #[test]
    fn a_key_that_is_no_field_name_is_never_echoed_and_never_empty() {
        // Found by tests/fuzz.rs: `{"": null}` named the field "".
        let errors = fields(r#"{"":null}"#);
        assert_eq!(errors[0].field, "body");
        let errors = fields(r#"{"name":"a","inner":{"count":1,"+31612345678":1},"list":[]}"#);
        assert_eq!(errors[0].field, "inner");
        assert!(!errors[0].message.contains("+316"), "{:?}", errors[0]);
    }

    #[test]
    fn a_truncated_body_is_a_400_even_after_a_bad_field() {
        for body in [
            r#"{"extra":1,"name":"a""#,
            r#"{"name":5,"inner":{"count":1},"list":["#,
            r#"{"name":"a","inner":{"count":"x"}"#,
        ] {
            assert!(
                matches!(
                    parse_json::<Req>(body.as_bytes()),
                    Err(ApiError::MalformedBody(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn broken_json_is_a_400_not_a_422() {
        for body in [
            "",
            "{",
            "{\"name\":",
            "not json",
            r#"{"name":"a","inner":{"count":1},"list":[]} x"#,
        ] {
            assert!(
                matches!(
                    parse_json::<Req>(body.as_bytes()),
                    Err(ApiError::MalformedBody(_))
                ),
                "{body:?}"
            );
        }
    }
    /// A request with `content_type` and a body arriving in `chunks`, without a
    /// `Content-Length` (as a chunked upload would).
    fn chunked(
        content_type: Option<&str>,
        chunks: &[&str],
        limit: usize,
    ) -> (HttpRequest, Payload) {
        let chunks: Vec<Result<actix_web::web::Bytes, actix_web::error::PayloadError>> = chunks
            .iter()
            .map(|c| Ok(actix_web::web::Bytes::copy_from_slice(c.as_bytes())))
            .collect();
        let stream: std::pin::Pin<
            Box<
                dyn futures_util::Stream<
                        Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>,
                    >,
            >,
        > = Box::pin(futures_util::stream::iter(chunks));
        let payload = Payload::Stream { payload: stream };
        let mut req = actix_web::test::TestRequest::post().app_data(BodyLimit(limit));
        if let Some(content_type) = content_type {
            req = req.insert_header((header::CONTENT_TYPE, content_type));
        }
        (req.to_http_request(), payload)
    }

    async fn extract(
        content_type: Option<&str>,
        chunks: &[&str],
        limit: usize,
    ) -> Result<serde_json::Value, ApiError> {
        let (req, mut payload) = chunked(content_type, chunks, limit);
        Json::<serde_json::Value>::from_request(&req, &mut payload)
            .await
            .map(|json| json.0)
    }

    #[actix_web::test]
    async fn json_media_types_are_recognised_with_or_without_parameters() {
        for accepted in [
            "application/json",
            "APPLICATION/JSON",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
        ] {
            let value = extract(Some(accepted), &[r#"{"a":1}"#], 1024).await;
            assert_eq!(value.ok(), Some(serde_json::json!({"a": 1})), "{accepted}");
        }
        for refused in [Some("text/plain"), Some("application/jsonx"), None] {
            let refused_as = extract(refused, &[r#"{"a":1}"#], 1024).await;
            assert!(
                matches!(refused_as, Err(ApiError::UnsupportedMediaType)),
                "{refused:?}: {refused_as:?}"
            );
        }
    }

    #[actix_web::test]
    async fn a_body_in_several_chunks_is_read_whole_and_bounded() {
        let json = Some("application/json");
        let value = extract(json, &[r#"{"a":"#, r#"[1,2"#, r#"]}"#], 1024).await;
        assert_eq!(value.ok(), Some(serde_json::json!({"a": [1, 2]})));
        let value = extract(json, &[r#"{"a":1}"#], 1024).await;
        assert_eq!(value.ok(), Some(serde_json::json!({"a": 1})), "one chunk");
        // Past the limit in a later chunk, or in the first, without a declared length.
        let over = extract(json, &[r#"{"a":"#, r#""0123456789"}"#], 12).await;
        assert!(
            matches!(over, Err(ApiError::PayloadTooLarge { limit: 12 })),
            "{over:?}"
        );
        let over = extract(json, &[r#"{"a":"0123456789"}"#], 12).await;
        assert!(
            matches!(over, Err(ApiError::PayloadTooLarge { limit: 12 })),
            "{over:?}"
        );
        // Exactly the limit is allowed.
        let exact = extract(json, &[r#"{"a":"#, r#""012345"}"#], 15).await;
        assert_eq!(exact.ok(), Some(serde_json::json!({"a": "012345"})));
        // No body at all: not JSON.
        let empty = extract(json, &[], 1024).await;
        assert!(
            matches!(empty, Err(ApiError::MalformedBody(_))),
            "{empty:?}"
        );
    }
}

/// The `Idempotency-Key` header of a write, if any: 1 to 255 visible ASCII
/// characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = std::future::Ready<Result<IdempotencyKey, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let value = req.headers().get("idempotency-key");
        std::future::ready(match value {
            None => Ok(IdempotencyKey(None)),
            Some(v) => match v.to_str() {
                Ok(text)
                    if (1..=255).contains(&text.len())
                        && text.bytes().all(|b| (0x21..=0x7e).contains(&b)) =>
                {
                    Ok(IdempotencyKey(Some(text.to_owned())))
                }
                _ => Err(ApiError::invalid(
                    "Idempotency-Key",
                    "must be 1 to 255 visible ASCII characters",
                )),
            },
        })
    }
}

/// A request body as raw bytes, any content type, up to the body limit: for the
/// platforms' webhooks, whose signature covers the exact bytes sent (413 above
/// the limit, before anything is parsed).
pub struct RawBody(pub actix_web::web::Bytes);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_bounded(req, payload);
        Box::pin(async move { Ok(RawBody(body.await?)) })
    }
}

/// Reads a request body of at most the configured limit (413 beyond it, before
/// reading when `Content-Length` already says so; 400 when it cannot be read).
fn read_bounded(
    req: &HttpRequest,
    payload: &mut Payload,
) -> LocalBoxFuture<'static, Result<actix_web::web::Bytes, ApiError>> {
    let limit = req.app_data::<BodyLimit>().map_or(DEFAULT_LIMIT, |l| l.0);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    Box::pin(async move {
        if declared.is_some_and(|len| len > limit) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let unreadable = |_| ApiError::MalformedBody("the request body could not be read".into());
        // A small body usually arrives in one chunk: kept as it is, not copied.
        let Some(first) = payload.next().await.transpose().map_err(unreadable)? else {
            return Ok(actix_web::web::Bytes::new());
        };
        if first.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let Some(second) = payload.next().await.transpose().map_err(unreadable)? else {
            return Ok(first);
        };
        let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
        let mut next = Some(second);
        body.extend_from_slice(&first);
        while let Some(chunk) = next {
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
            next = payload.next().await.transpose().map_err(unreadable)?;
        }
        Ok(body.freeze())
    })
}
