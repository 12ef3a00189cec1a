use actix_web::{HttpResponse, get, post, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::crypto::chain::format_at;
use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::responses::ApiKeyErrors;
use crate::ledger::Ledger;
use crate::store::audit::StoredCheckpoint;

/// The key that signs checkpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointKey {
    /// `Ed25519`.
    pub algorithm: &'static str,
    /// First 16 hex digits of SHA-256 of the raw public key.
    pub key_id: String,
    /// The raw 32-byte public key, base64.
    pub public_key: String,
    /// The same key as PEM (SubjectPublicKeyInfo), for `openssl pkeyutl -verify`.
    pub public_key_pem: String,
}

/// A signed checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    pub business_id: Uuid,
    pub seq: i64,
    /// Hex hash of the event at `seq`.
    pub hash: String,
    /// RFC 3339, UTC, microseconds (exactly as signed).
    pub at: String,
    pub key_id: String,
    /// The exact signed bytes, base64 (see the README for how they are built).
    pub message: String,
    /// Ed25519 signature over `message`, base64.
    pub signature: String,
}

impl From<StoredCheckpoint> for CheckpointView {
    fn from(c: StoredCheckpoint) -> Self {
        CheckpointView {
            business_id: c.business_id,
            seq: c.seq,
            hash: hex::encode(&c.hash),
            at: format_at(c.at),
            key_id: c.key_id.clone(),
            message: STANDARD.encode(c.message()),
            signature: STANDARD.encode(&c.signature),
        }
    }
}

/// The business's checkpoints and the key to verify them.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointsResponse {
    pub key: CheckpointKey,
    pub checkpoints: Vec<CheckpointView>,
}

fn key(ledger: &Ledger) -> Result<CheckpointKey, ApiError> {
    let public = ledger
        .checkpoint_public_key()
        .ok_or_else(|| ApiError::Internal("no checkpoint signing key".into()))?;
    Ok(CheckpointKey {
        algorithm: "Ed25519",
        key_id: public.key_id(),
        public_key: STANDARD.encode(public.to_bytes()),
        public_key_pem: public.to_pem(),
    })
}

/// Lists the signed checkpoints of the business's chain, with the public key that
/// verifies them. Keep what you are given: a checkpoint you hold proves the chain
/// up to its seq even against someone who can rewrite the database.
#[utoipa::path(
    tag = "audit",
    security(("api_key" = ["audit:read"])),
    responses(
        ApiKeyErrors,
        (status = 200, body = CheckpointsResponse),
    )
)]
#[get("/v1/audit/checkpoints")]
#[tracing::instrument(skip_all)]
pub async fn list_audit_checkpoints(
    principal: Principal,
    ledger: web::Data<Ledger>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::AuditRead)?;
    let checkpoints = ledger.checkpoints(principal.business_id).await?;
    Ok(HttpResponse::Ok().json(CheckpointsResponse {
        key: key(&ledger)?,
        checkpoints: checkpoints.into_iter().map(CheckpointView::from).collect(),
    }))
}

/// Signs a checkpoint of the chain's current head now (or returns the one that
/// exists for it). 404 while the chain is empty never happens: a business's chain
/// starts with its creation.
#[utoipa::path(
    tag = "audit",
    security(("api_key" = ["audit:read"])),
    responses(
        ApiKeyErrors,
        (status = 201, body = CheckpointView),
    )
)]
#[post("/v1/audit/checkpoints")]
#[tracing::instrument(skip_all)]
pub async fn create_audit_checkpoint(
    principal: Principal,
    ledger: web::Data<Ledger>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::AuditRead)?;
    let checkpoint = ledger
        .writer()
        .checkpoint_now(principal.business_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Created().json(CheckpointView::from(checkpoint)))
}
