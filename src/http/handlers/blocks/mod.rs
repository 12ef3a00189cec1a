//! Blocks and unblocks (scope `consents:write`): a block stops everything, even
//! service replies, until an unblock.

pub mod block;
pub mod unblock;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::evidence::{Channel, Evidence, Strictness};
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::extract::{IdempotencyKey, Json};
use crate::http::handlers::{
    caller, evidence_errors, evidence_limits, idempotency, parse_phone, written,
};
use crate::ledger::Ledger;
use crate::ledger::record::RecordBlock;

/// A block or unblock of the business by the person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordBlockRequest {
    pub phone: String,
    pub default_region: Option<String>,
    /// Where it was learned (default `api`; e.g. `click_to_chat` for a messaging
    /// platform's block notification).
    pub channel: Option<Channel>,
    /// Optional proof: `collected_at` (default now), `message_reference`, ...
    #[schema(value_type = Object)]
    pub evidence: Option<serde_json::Value>,
}

async fn record(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    key: IdempotencyKey,
    body: Json<RecordBlockRequest>,
    blocked: bool,
) -> Result<HttpResponse, ApiError> {
    principal.require(crate::domain::Scope::ConsentsWrite)?;
    let caller = caller(&principal, &ledger)?;
    let Json(request, raw) = body;
    let mut errors = Vec::new();
    let phone = parse_phone(
        "phone",
        &request.phone,
        request.default_region.as_deref(),
        &mut errors,
    );
    let limits = evidence_limits(&caller.policy);
    let channel = request.channel.unwrap_or(Channel::Api);
    let evidence = Evidence::parse(
        channel,
        request.evidence.as_ref(),
        Strictness::Withdrawal,
        &limits,
    )
    .map_err(|problems| errors.extend(evidence_errors(problems)))
    .ok();
    let (Some(phone), Some(evidence), true) = (phone, evidence, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let idempotency = idempotency(&req, key, &ledger, &caller, &raw, StatusCode::CREATED);
    let command = RecordBlock {
        phone,
        blocked,
        evidence,
    };
    let result = ledger.record_block(&caller, command, idempotency).await?;
    Ok(written(result, StatusCode::CREATED))
}
