//! API keys of the caller's business (scope `keys:manage`).

pub mod create;
pub mod list;
pub mod revoke;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Scope;
use crate::store::keys::ApiKey;

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyResponse {
    /// The key id (also the first part of the token).
    pub id: Uuid,
    /// A label for people.
    pub name: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    /// Set once revoked; the key is refused from that moment on.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyResponse {
    fn from(key: ApiKey) -> Self {
        KeyResponse {
            id: key.id,
            name: key.name,
            scopes: key.scopes.iter().collect(),
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A key just created, with its secret: shown in this response only, never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreatedResponse {
    #[serde(flatten)]
    pub key: KeyResponse,
    /// The bearer token (`Authorization: Bearer <secret>`). Store it now: only a
    /// hash is kept, so it cannot be shown again.
    pub secret: String,
}
