//! The one error type of the HTTP layer, rendered as RFC 9457
//! `application/problem+json` with a stable machine `code`.
//!
//! Every error a client can cause maps to a 4xx here; actix's own extractor and
//! routing errors are turned into this type too (see `extract` and `configure`).
//! 5xx bodies never carry the cause: the cause is logged once, here.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Scope;
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where in the request: a JSON path such as `evidence.source_url` or
    /// `phones[3]`, or a query parameter name.
    pub field: String,
    /// What is wrong, without echoing the value.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:consentgate:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub code: String,
    /// The invalid fields (validation errors only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// On every 503: `false`. Senders treat anything but a 200 with
    /// `allowed: true` as no.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
}

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    #[error("bad request: {detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("the key lacks scope {0}")]
    Forbidden(Scope),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed(Vec<actix_web::http::Method>),
    #[error("conflict: {detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("payload larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A webhook whose platform signature is missing or wrong (the header named).
    #[error("bad webhook signature")]
    BadSignature(&'static str),
    /// A webhook verification handshake that did not present the verify token.
    #[error("verification refused")]
    VerificationRefused,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// The store (or another dependency) cannot answer; the cause is logged only.
    /// The problem carries `allowed: false`: whatever was asked (a check above all),
    /// nothing may be sent on the strength of this answer (fail closed).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data; the cause is logged only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// What went wrong on the server's side (a 503's or a 500's cause, for the
    /// log: never in a response body); `None` for the client's errors.
    pub fn server_cause(&self) -> Option<&str> {
        match self {
            ApiError::Unavailable(cause) | ApiError::Internal(cause) => Some(cause),
            _ => None,
        }
    }

    /// One invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedBody(_) => "malformed_body",
            ApiError::BadRequest { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadSignature(_) => "invalid_signature",
            ApiError::VerificationRefused => "verification_refused",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Validation(_) => "validation_failed",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::MalformedBody(_) => "Malformed request body",
            ApiError::BadRequest { .. } => "Bad request",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::BadSignature(_) => "Invalid signature",
            ApiError::VerificationRefused => "Verification refused",
            ApiError::NotFound => "Not found",
            ApiError::MethodNotAllowed(_) => "Method not allowed",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::PayloadTooLarge { .. } => "Payload too large",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::Validation(_) => "Invalid request",
            ApiError::RateLimited { .. } => "Too many requests",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Internal(_) => "Internal error",
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::MalformedBody(detail) => detail.clone(),
            ApiError::BadRequest { detail, .. } | ApiError::Conflict { detail, .. } => {
                detail.clone()
            }
            ApiError::Unauthorized => {
                "send a valid API key as `Authorization: Bearer <key>`".to_owned()
            }
            ApiError::Forbidden(scope) => format!("this key does not have the scope `{scope}`"),
            ApiError::BadSignature(header) => {
                format!("the `{header}` header is missing or does not sign this request")
            }
            ApiError::VerificationRefused => {
                "hub.mode must be subscribe and hub.verify_token the connection's verify token"
                    .to_owned()
            }
            ApiError::NotFound => "no such resource".to_owned(),
            ApiError::MethodNotAllowed(_) => {
                "this resource does not support this method".to_owned()
            }
            ApiError::PayloadTooLarge { limit } => {
                format!("the request body exceeds {limit} bytes")
            }
            ApiError::UnsupportedMediaType => {
                "send the body as `Content-Type: application/json`".to_owned()
            }
            ApiError::Validation(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("invalid fields: {}", fields.join(", "))
            }
            ApiError::RateLimited { retry_after_secs } => {
                format!("too many requests; retry after {retry_after_secs} s")
            }
            // 5xx: never the cause.
            ApiError::Unavailable(_) => {
                "the service cannot read its state right now, so the answer is no; retry later"
                    .to_owned()
            }
            ApiError::Internal(_) => "the service failed to handle this request".to_owned(),
        }
    }

    /// The problem document of this error.
    pub fn problem(&self) -> Problem {
        Problem {
            problem_type: format!("urn:consentgate:problem:{}", self.code()),
            title: self.title().to_owned(),
            status: self.status_code().as_u16(),
            detail: self.detail(),
            code: self.code().to_owned(),
            errors: match self {
                ApiError::Validation(errors) => errors.clone(),
                _ => Vec::new(),
            },
            allowed: matches!(self, ApiError::Unavailable(_)).then_some(false),
        }
    }

    /// The error a bare status stands for: used to turn responses that actix
    /// produced itself into problem documents.
    pub fn from_status(status: StatusCode) -> ApiError {
        match status.as_u16() {
            401 => ApiError::Unauthorized,
            404 => ApiError::NotFound,
            405 => ApiError::MethodNotAllowed(Vec::new()),
            413 => ApiError::PayloadTooLarge { limit: 0 },
            415 => ApiError::UnsupportedMediaType,
            429 => ApiError::RateLimited {
                retry_after_secs: 1,
            },
            503 => ApiError::Unavailable(format!("status {status}")),
            400..=499 => ApiError::BadRequest {
                code: "bad_request",
                detail: status
                    .canonical_reason()
                    .unwrap_or("bad request")
                    .to_owned(),
            },
            _ => ApiError::Internal(format!("status {status}")),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        // No catch-all arm: a new variant must choose its status.
        match self {
            ApiError::MalformedBody(_) | ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            ApiError::VerificationRefused => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs nothing: the cause of a 503 or a 500 is logged by `observe`, with the
    /// request's id and business, from the error the response carries.
    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        match self {
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::RateLimited { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::MethodNotAllowed(methods) if !methods.is_empty() => {
                let allow: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
                response.insert_header((header::ALLOW, allow.join(", ")));
            }
            _ => {}
        }
        response.body(serde_json::to_vec(&self.problem()).expect("a problem always serialises"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(code) => ApiError::Conflict {
                code,
                detail: conflict_detail(code).to_owned(),
            },
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
            StoreError::Corrupt(cause) | StoreError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

/// What each conflict code means, for the problem's `detail`.
fn conflict_detail(code: &str) -> &'static str {
    match code {
        "idempotency_key_reused" => {
            "this Idempotency-Key was already used with a different request"
        }
        "already_confirmed" => "this opt-in is already confirmed",
        "confirmation_not_required" => {
            "this opt-in needs no confirmation under the business's policy"
        }
        "confirmed_before_collected" => {
            "the confirmation's collected_at is before the opt-in was collected"
        }
        "opt_in_revoked" => {
            "consent for this opt-in was withdrawn after it was given; record a new opt-in"
        }
        "already_revoked" => "already revoked",
        "collected_before_erasure" => {
            "this consent was collected before the number was erased; only consent given after the erasure can be recorded"
        }
        _ => "the request conflicts with what is already recorded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn a_validation_error_renders_as_rfc9457_with_fields() {
        let err = ApiError::Validation(vec![
            FieldError::new("name", "must not be empty"),
            FieldError::new("scopes[1]", "unknown scope"),
        ]);
        let response = err.error_response();
        assert_eq!(response.status(), 422);
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            PROBLEM_JSON
        );
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(response.into_body()).await.unwrap()).unwrap();
        assert_eq!(body["type"], "urn:consentgate:problem:validation_failed");
        assert_eq!(body["status"], 422);
        assert_eq!(body["code"], "validation_failed");
        assert_eq!(body["errors"][1]["field"], "scopes[1]");
    }

    #[actix_web::test]
    async fn a_5xx_body_never_carries_its_cause() {
        for err in [
            ApiError::Internal("secret table xyz broke".into()),
            ApiError::Unavailable("connection to 10.0.0.7 refused".into()),
        ] {
            let response = err.error_response();
            let body = to_bytes(response.into_body()).await.unwrap();
            let text = String::from_utf8(body.to_vec()).unwrap();
            assert!(
                !text.contains("xyz") && !text.contains("10.0.0.7"),
                "{text}"
            );
        }
    }
}
