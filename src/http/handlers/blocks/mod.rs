//! Blocks and unblocks (scope `consents:write`): a block stops everything, even
//! service replies, until an unblock.

pub mod block;
pub mod unblock;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::ToSchema;

use crate::domain::evidence::Channel;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::extract::{IdempotencyKey, Json};
use crate::http::handlers::withdrawal::LenientBody;
use crate::http::handlers::{caller, evidence_limits, idempotency, written};
use crate::ledger::Ledger;
use crate::ledger::record::RecordBlock;

/// A block or unblock of the business by the person. Only `phone` is required:
/// any other field that is malformed is dropped and named in `warnings[]` of the
/// 201, and the block is recorded all the same.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // the schema of the body, read leniently by `withdrawal`
pub struct RecordBlockRequest {
    pub phone: String,
    pub default_region: Option<String>,
    /// Where it was learned (default `api`; e.g. `click_to_chat` for a messaging
    /// platform's block notification).
    pub channel: Option<Channel>,
    /// Optional proof: `collected_at` (default: when recorded) and the channel's
    /// fields; with channel `api`: `source_system` and `message_reference` (the
    /// platform's id of the block notification).
    #[schema(value_type = Object)]
    pub evidence: Option<serde_json::Value>,
}

const FIELDS: &[&str] = &["phone", "default_region", "channel", "evidence"];

async fn record(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    key: IdempotencyKey,
    body: Json<serde_json::Value>,
    blocked: bool,
) -> Result<HttpResponse, ApiError> {
    principal.require(crate::domain::Scope::ConsentsWrite)?;
    let caller = caller(&principal, &ledger)?;
    let Json(request, raw) = body;
    let mut body = LenientBody::new(&request, FIELDS)?;
    let phone = body.phone();
    let channel = body.channel(Channel::Api);
    let evidence = body.evidence(channel, &evidence_limits(&ledger, &caller.policy));
    let dropped = body.finish()?;
    // `finish` refuses a body without a valid phone; this only names it again.
    let phone = phone.ok_or_else(|| ApiError::invalid("phone", "is required"))?;
    let idempotency = idempotency(&req, key, &ledger, &caller, &raw, StatusCode::CREATED);
    let command = RecordBlock {
        phone,
        blocked,
        evidence,
        dropped,
    };
    let result = ledger.record_block(&caller, command, idempotency).await?;
    Ok(written(result, StatusCode::CREATED))
}
