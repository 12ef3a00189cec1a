//! The error answers of the API as OpenAPI response components, and the sets of
//! them each kind of operation can give, so that every `#[utoipa::path]` lists
//! what the server really answers without repeating it (issue 9: schemathesis
//! checks status codes, content types and bodies against the document).
//!
//! Each component is one [`ApiError`](super::error::ApiError) status, rendered as
//! problem+json by `error.rs`; the sets say where each can come from:
//!
//! | set | statuses | from |
//! |---|---|---|
//! | [`ApiKeyErrors`] | 401, 403, 429, 503 | `auth::Principal` (throttle before and after authentication, key lookup, scope) |
//! | [`OperatorErrors`] | 401, 429 | `auth::Operator` |
//! | [`JsonBodyErrors`] | 400, 413, 415, 422 | `extract::Json` (content type, body limit, syntax, shape) |
//! | [`QueryErrors`] | 422 | `extract::Query` |
//! | [`StoreErrors`] | 503 | any handler that reads or writes the store |
//! | [`WebhookErrors`] | 401, 404, 413, 429, 503 | platform webhooks (signature, channel id, raw body, throttle) |
//!
//! A handler lists the sets first and its own tuples after: a tuple with the same
//! status (a 422 with its own description) replaces the set's entry.

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToResponse};

use super::error::PROBLEM_JSON;

/// A problem+json response with an optional header.
fn problem(description: &str, header: Option<(&str, &str)>) -> RefOr<Response> {
    let mut builder = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    if let Some((name, description)) = header {
        builder = builder.header(
            name,
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(description))
                .build(),
        );
    }
    RefOr::T(builder.build())
}

macro_rules! problem_response {
    ($(#[$doc:meta])* $name:ident, $description:expr $(, header = ($h:expr, $hd:expr))?) => {
        $(#[$doc])*
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                #[allow(unused_mut, unused_assignments)]
                let mut header = None;
                $(header = Some(($h, $hd));)?
                (stringify!($name), problem($description, header))
            }
        }

        impl $name {
            fn reference() -> RefOr<Response> {
                RefOr::Ref(Ref::from_response_name(stringify!($name)))
            }
        }
    };
}

problem_response!(
    /// 400 `malformed_body`.
    MalformedBody,
    "`malformed_body`: the body is empty, truncated or not JSON"
);
problem_response!(
    /// 401 `unauthorized`.
    Unauthorized,
    "`unauthorized`: no valid credentials",
    header = ("WWW-Authenticate", "`Bearer`")
);
problem_response!(
    /// 403 `forbidden`.
    Forbidden,
    "`forbidden`: the key lacks the scope this operation needs"
);
problem_response!(
    /// 404 `not_found`.
    NotFound,
    "`not_found`: no such resource in this business (an id that is not a UUID included)"
);
problem_response!(
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    "`payload_too_large`: the body exceeds `CONSENTGATE_MAX_BODY_BYTES`"
);
problem_response!(
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType,
    "`unsupported_media_type`: the body is not sent as the media type this operation takes"
);
problem_response!(
    /// 422 `validation_failed`.
    ValidationFailed,
    "`validation_failed`: every invalid field is listed in `errors`, without its value"
);
problem_response!(
    /// 429 `rate_limited`.
    RateLimited,
    "`rate_limited`: too many requests from this address or key, or too many failed \
     authentications from this address",
    header = ("Retry-After", "whole seconds to wait, at least 1")
);
problem_response!(
    /// 503 `unavailable`.
    Unavailable,
    "`unavailable`: the store cannot answer; `allowed: false` (fail closed), retry later",
    header = ("Retry-After", "whole seconds to wait")
);

fn set(entries: &[(&str, RefOr<Response>)]) -> BTreeMap<String, RefOr<Response>> {
    entries
        .iter()
        .map(|(status, response)| ((*status).to_owned(), response.clone()))
        .collect()
}

/// What every operation authenticated by an API key can answer.
pub struct ApiKeyErrors;

impl IntoResponses for ApiKeyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[
            ("401", Unauthorized::reference()),
            ("403", Forbidden::reference()),
            ("429", RateLimited::reference()),
            ("503", Unavailable::reference()),
        ])
    }
}

/// What every operation authenticated by the operator token can answer.
pub struct OperatorErrors;

impl IntoResponses for OperatorErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[
            ("401", Unauthorized::reference()),
            ("429", RateLimited::reference()),
        ])
    }
}

/// What an operation with a JSON request body can answer about the body.
pub struct JsonBodyErrors;

impl IntoResponses for JsonBodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[
            ("400", MalformedBody::reference()),
            ("413", PayloadTooLarge::reference()),
            ("415", UnsupportedMediaType::reference()),
            ("422", ValidationFailed::reference()),
        ])
    }
}

/// What a platform's webhook can answer: its signature is its authentication
/// (401, or 429 once an address has failed too often), the channel id is in the
/// path (404), the raw body is bounded (413), and a delivery that could not be
/// committed is 503 so that the platform delivers it again.
pub struct WebhookErrors;

impl IntoResponses for WebhookErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[
            ("401", Unauthorized::reference()),
            ("404", NotFound::reference()),
            ("413", PayloadTooLarge::reference()),
            ("429", RateLimited::reference()),
            ("503", Unavailable::reference()),
        ])
    }
}

/// What an operation with query parameters can answer about them.
pub struct QueryErrors;

impl IntoResponses for QueryErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[("422", ValidationFailed::reference())])
    }
}

/// What an operation with an id in its path answers for an unknown id.
pub struct PathErrors;

impl IntoResponses for PathErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[("404", NotFound::reference())])
    }
}

/// What an operation answers when the store cannot.
pub struct StoreErrors;

impl IntoResponses for StoreErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[("503", Unavailable::reference())])
    }
}
