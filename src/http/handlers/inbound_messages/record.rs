use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::Scope;
use crate::domain::time;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::{IdempotencyKey, Json};
use crate::http::handlers::{caller, idempotency, optional_text, parse_phone, written};
use crate::ledger::Ledger;
use crate::ledger::record::{InboundResponse, RecordInbound};

/// A message the person sent to the business.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordInboundMessageRequest {
    pub phone: String,
    pub default_region: Option<String>,
    /// When the messaging platform received it (RFC 3339).
    pub received_at: DateTime<Utc>,
    /// The message text, only to recognise keywords: a message that is, as a whole
    /// (trimmed, any case), an opt-out keyword of the policy revokes every
    /// category; an opt-in keyword restores what the last keyword opt-out revoked;
    /// a help keyword changes nothing. Never stored, never logged.
    pub text: Option<String>,
    /// Where the conversation started, e.g. `click_to_chat_ad` (a longer window
    /// where the policy says so); lowercase letters, digits and `_`.
    pub entry_point: Option<String>,
    /// The platform's id of the message, kept (encrypted) as keyword evidence.
    pub message_reference: Option<String>,
}

/// Records a user-initiated message: it opens (or restarts) the customer-service
/// window, and honours keywords. Accepts `Idempotency-Key`.
#[utoipa::path(
    tag = "consents",
    security(("api_key" = ["consents:write"])),
    request_body = RecordInboundMessageRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    responses(
        (status = 201, body = InboundResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/inbound-messages")]
#[tracing::instrument(skip_all, fields(business_id = %principal.business_id))]
pub async fn record_inbound_message(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    key: IdempotencyKey,
    body: Json<RecordInboundMessageRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::ConsentsWrite)?;
    let caller = caller(&principal, &ledger)?;
    let Json(request, raw) = body;
    let mut errors = Vec::new();
    let phone = parse_phone(
        "phone",
        &request.phone,
        request.default_region.as_deref(),
        &mut errors,
    );
    let received_at = time::truncate(request.received_at);
    if received_at > time::now() + caller.policy.clock_skew() {
        errors.push(FieldError::new(
            "received_at",
            "is in the future beyond the allowed clock skew",
        ));
    }
    let entry_point = request.entry_point.as_deref().map(str::trim);
    if let Some(ep) = entry_point {
        let valid = (1..=64).contains(&ep.len())
            && ep
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            errors.push(FieldError::new(
                "entry_point",
                "must be 1 to 64 lowercase letters, digits or _",
            ));
        }
    }
    let message_reference = optional_text(
        "message_reference",
        request.message_reference.as_deref(),
        500,
        &mut errors,
    );
    let (Some(phone), true) = (phone, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    // The text is reduced to what it means here and goes no further.
    let keyword = request
        .text
        .as_deref()
        .and_then(|text| caller.policy.keyword(text));
    let idempotency = idempotency(&req, key, &ledger, &caller, &raw, StatusCode::CREATED);
    let command = RecordInbound {
        phone,
        received_at,
        keyword,
        entry_point: entry_point.map(str::to_owned),
        message_reference,
    };
    let result = ledger.record_inbound(&caller, command, idempotency).await?;
    Ok(written(result, StatusCode::CREATED))
}
