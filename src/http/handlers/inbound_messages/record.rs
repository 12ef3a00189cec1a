use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::{DateTime, Utc};
use utoipa::ToSchema;

use crate::domain::Scope;
use crate::domain::time;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::{IdempotencyKey, Json};
use crate::http::handlers::withdrawal::LenientBody;
use crate::http::handlers::{caller, idempotency, optional_text, written};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::record::{InboundResponse, RecordInbound};

/// A message the person sent to the business. `phone` and `received_at` are
/// required; any other field that is malformed is dropped and named in
/// `warnings[]` of the 201, and the message (with its keyword) is recorded all the
/// same: a STOP is never lost to a bad optional field.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // the schema of the body, read leniently by `withdrawal`
pub struct RecordInboundMessageRequest {
    pub phone: String,
    pub default_region: Option<String>,
    /// When the messaging platform received it (RFC 3339); at most the policy's
    /// clock skew in the future, and effective no later than it is recorded.
    pub received_at: DateTime<Utc>,
    /// The message text, only to recognise keywords: a message that is, as a whole,
    /// an opt-out keyword of the policy revokes every category; an opt-in keyword
    /// undoes the keyword opt-outs before it; a help keyword changes nothing.
    /// Matching is Unicode-normalised (NFKC) and case-folded, surrounding space
    /// ignored; for opt-outs also invisible characters, trailing `.`/`!` and
    /// accents (SPEC section 2). Never stored, never logged.
    pub text: Option<String>,
    /// Where the conversation started, e.g. `click_to_chat_ad` (a longer window
    /// where the policy says so); lowercase letters, digits and `_`.
    pub entry_point: Option<String>,
    /// The platform's id of the message, kept (encrypted) as keyword evidence.
    pub message_reference: Option<String>,
}

const FIELDS: &[&str] = &[
    "phone",
    "default_region",
    "received_at",
    "text",
    "entry_point",
    "message_reference",
];

/// Records a user-initiated message: it opens (or restarts) the customer-service
/// window, and honours keywords. Accepts `Idempotency-Key`.
#[utoipa::path(
    tag = "consents",
    security(("api_key" = ["consents:write"])),
    request_body = RecordInboundMessageRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 201, body = InboundResponse),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "no valid phone or received_at", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/inbound-messages")]
#[tracing::instrument(skip_all)]
pub async fn record_inbound_message(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    key: IdempotencyKey,
    body: Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::ConsentsWrite)?;
    let caller = caller(&principal, &ledger)?;
    let Json(request, raw) = body;
    let mut body = LenientBody::new(&request, FIELDS)?;
    let phone = body.phone();
    let received_at = received_at(&request, &ledger, &caller.policy);
    let entry_point = body.optional_str("entry_point").map(str::trim);
    let entry_point = match entry_point {
        Some(ep)
            if !((1..=64).contains(&ep.len())
                && ep
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')) =>
        {
            body.drop_field(
                "entry_point",
                "must be 1 to 64 lowercase letters, digits or _",
            );
            None
        }
        other => other.map(str::to_owned),
    };
    let message_reference = body.optional_str("message_reference").and_then(|text| {
        let mut errors = Vec::new();
        let kept = optional_text("message_reference", Some(text), 500, &mut errors);
        for e in errors {
            body.drop_field(e.field, e.message);
        }
        kept
    });
    // The text is reduced to what it means here and goes no further.
    let keyword = body
        .optional_str("text")
        .and_then(|text| caller.policy.keyword(text));
    let mut dropped = body.finish();
    let received_at = match (received_at, &mut dropped) {
        (Ok(at), _) => at,
        (Err(e), Err(ApiError::Validation(errors))) => {
            errors.push(e);
            return Err(ApiError::Validation(std::mem::take(errors)));
        }
        (Err(e), _) => return Err(ApiError::Validation(vec![e])),
    };
    let dropped = dropped?;
    // `finish` refuses a body without a valid phone; this only names it again.
    let phone = phone.ok_or_else(|| ApiError::invalid("phone", "is required"))?;
    let idempotency = idempotency(&req, key, &ledger, &caller, &raw, StatusCode::CREATED);
    let command = RecordInbound {
        phone,
        received_at,
        keyword,
        entry_point,
        message_reference,
        dropped,
    };
    let result = ledger.record_inbound(&caller, command, idempotency).await?;
    Ok(written(result, StatusCode::CREATED))
}

/// `received_at`: required, RFC 3339 with an offset, at most the policy's clock
/// skew ahead of this node's clock.
fn received_at(
    request: &serde_json::Value,
    ledger: &Ledger,
    policy: &crate::policy::Policy,
) -> Result<DateTime<Utc>, FieldError> {
    const FIELD: &str = "received_at";
    let text = match request.get(FIELD) {
        None | Some(serde_json::Value::Null) => {
            return Err(FieldError::new(FIELD, "is required"));
        }
        Some(serde_json::Value::String(text)) => text,
        Some(_) => return Err(FieldError::new(FIELD, "must be an RFC 3339 timestamp")),
    };
    let at = DateTime::parse_from_rfc3339(text.trim())
        .map_err(|_| {
            FieldError::new(
                FIELD,
                "must be an RFC 3339 timestamp with an offset, e.g. 2025-01-31T09:30:00Z",
            )
        })?
        .with_timezone(&Utc);
    let at = time::truncate(at);
    if at > ledger.clock().now() + policy.clock_skew() {
        return Err(FieldError::new(
            FIELD,
            "is in the future beyond the allowed clock skew",
        ));
    }
    Ok(at)
}
