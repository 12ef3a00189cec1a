//! The auditor console's sessions (SPEC section 11), and the audit reads it
//! shows besides events (verification, checkpoints).
//!
//! An auditor signs in with an API key that has `audit:read`; the console then
//! holds a random session id in an HttpOnly cookie. The key itself is never kept
//! (not in the cookie, not in the database): the session row has the hash of the
//! session id, the key's id and an expiry. Every request re-reads the key, so a
//! revoked key, or one that lost `audit:read`, ends its sessions at once, on every
//! node.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::Ledger;
use crate::audit::verify::Report;
use crate::crypto::signing::PublicKey;
use crate::crypto::web::{new_session_id, secret_hash};
use crate::domain::{Scope, time};
use crate::store::audit::StoredCheckpoint;
use crate::store::web::{self as sessions, ConsoleSession};
use crate::store::{Store, StoreError};

/// A signed-in auditor, as every console request sees them.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    pub business_id: Uuid,
    pub business_name: String,
    pub key_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// A session just opened: `id` goes into the cookie and nowhere else.
pub struct NewConsoleSession {
    pub id: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewConsoleSession")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens a session for a key that was just verified and has `audit:read`.
    pub async fn open_console_session(
        &self,
        business_id: Uuid,
        key_id: Uuid,
        ttl: Duration,
    ) -> Result<NewConsoleSession, StoreError> {
        let (id, hash) = new_session_id();
        let now = time::now();
        let session = ConsoleSession {
            business_id,
            key_id,
            created_at: now,
            expires_at: time::truncate(now + ttl),
        };
        let expires_at = session.expires_at;
        self.store
            .run(move |conn| sessions::insert_session(conn, &hash, &session))
            .await?;
        Ok(NewConsoleSession { id, expires_at })
    }

    /// The auditor behind a session id: `None` when the session is unknown or
    /// expired, or its key was revoked or no longer has `audit:read`.
    pub async fn console_user(&self, session_id: &str) -> Result<Option<ConsoleUser>, StoreError> {
        if session_id.is_empty() || session_id.len() > 64 {
            return Ok(None);
        }
        let hash = secret_hash(session_id);
        let session = self
            .store
            .run(move |conn| sessions::session(conn, &hash))
            .await?;
        let Some(session) = session.filter(|s| s.expires_at > time::now()) else {
            return Ok(None);
        };
        let Some(credentials) = self.store.key_credentials(session.key_id).await? else {
            return Ok(None);
        };
        let key = &credentials.key;
        if key.revoked_at.is_some()
            || key.business_id != session.business_id
            || !key.scopes.contains(Scope::AuditRead)
        {
            return Ok(None);
        }
        let business_id = session.business_id;
        let business = self
            .store
            .run(move |conn| Store::business_blocking(conn, business_id))
            .await?;
        Ok(Some(ConsoleUser {
            business_id,
            business_name: business.name,
            key_id: session.key_id,
            expires_at: session.expires_at,
        }))
    }

    /// Signs out: the session id opens nothing any more.
    pub async fn close_console_session(&self, session_id: &str) -> Result<(), StoreError> {
        let hash = secret_hash(session_id);
        self.store
            .run(move |conn| sessions::delete_session(conn, &hash))
            .await
    }

    /// Recomputes the business's chain and compares it with the signed checkpoints.
    pub async fn verify_chain(&self, business_id: Uuid) -> Result<Report, StoreError> {
        self.writer.verify_chain(business_id).await
    }

    /// The business's signed checkpoints, oldest first.
    pub async fn checkpoints(
        &self,
        business_id: Uuid,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.store.checkpoints(business_id).await
    }

    /// The key that verifies checkpoints.
    pub fn checkpoint_public_key(&self) -> Option<PublicKey> {
        self.writer.checkpoint_public_key()
    }
}
