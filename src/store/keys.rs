//! API keys: rows hold a keyed hash of the secret (`hmac-sha256$...`, or a legacy
//! argon2id PHC string until its next use), never the secret.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;
use uuid::Uuid;

use super::rows::{ApiKeyRow, from_naive, parse_id, to_naive};
use super::schema::{api_keys, businesses};
use super::{Store, StoreError};
use crate::audit::{EventType, NewEvent};
use crate::crypto::api_key;
use crate::domain::{Actor, Scopes};

/// A key as the API shows it (no secret, no hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub business_id: Uuid,
    pub name: String,
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key about to be stored.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: Uuid,
    pub business_id: Uuid,
    pub name: String,
    pub scopes: Scopes,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
}

impl NewApiKey {
    /// A new key with a fresh secret: the key to store (holding only the keyed hash
    /// of the secret) and the bearer token to show the client once. Microseconds.
    pub fn mint(
        hasher: &api_key::SecretHasher,
        business_id: Uuid,
        name: String,
        scopes: Scopes,
    ) -> (NewApiKey, String) {
        let id = Uuid::now_v7();
        let secret = api_key::Secret::generate();
        let key = NewApiKey {
            id,
            business_id,
            name,
            scopes,
            secret_hash: hasher.hash(id, &secret),
            created_at: crate::domain::time::now(),
        };
        (key, api_key::format_token(id, &secret))
    }

    pub(super) fn created_event(&self) -> NewEvent {
        NewEvent::new(
            EventType::KeyCreated,
            json!({"key_id": self.id, "name": self.name, "scopes": self.scopes.to_stored()}),
        )
    }
}

impl From<&NewApiKey> for ApiKeyRow {
    fn from(k: &NewApiKey) -> Self {
        ApiKeyRow {
            id: k.id.to_string(),
            business_id: k.business_id.to_string(),
            name: k.name.clone(),
            scopes: k.scopes.to_stored(),
            secret_hash: k.secret_hash.clone(),
            created_at: to_naive(k.created_at),
            revoked_at: None,
        }
    }
}

/// What authentication needs: the key, its hash, and its business's policy name.
#[derive(Debug, Clone)]
pub struct KeyCredentials {
    pub key: ApiKey,
    pub secret_hash: String,
    pub policy: String,
}

impl ApiKeyRow {
    fn into_key(self) -> Result<(ApiKey, String), StoreError> {
        let scopes = Scopes::from_stored(&self.scopes)
            .map_err(|_| StoreError::Corrupt("api_keys.scopes".into()))?;
        Ok((
            ApiKey {
                id: parse_id(&self.id)?,
                business_id: parse_id(&self.business_id)?,
                name: self.name,
                scopes,
                created_at: from_naive(self.created_at),
                revoked_at: self.revoked_at.map(from_naive),
            },
            self.secret_hash,
        ))
    }
}

impl Store {
    /// The credentials of a key by id, revoked or not; `None` for an unknown id.
    pub async fn key_credentials(
        &self,
        key_id: Uuid,
    ) -> Result<Option<KeyCredentials>, StoreError> {
        self.run(move |conn| {
            let found = api_keys::table
                .inner_join(businesses::table)
                .filter(api_keys::id.eq(key_id.to_string()))
                .select((ApiKeyRow::as_select(), businesses::policy))
                .first::<(ApiKeyRow, String)>(conn)
                .optional()?;
            found
                .map(|(row, policy)| {
                    let (key, secret_hash) = row.into_key()?;
                    Ok(KeyCredentials {
                        key,
                        secret_hash,
                        policy,
                    })
                })
                .transpose()
        })
        .await
    }

    /// Replaces a key's stored hash by another form of the *same* secret (a legacy
    /// argon2 hash by its HMAC form, after the secret verified against it). Only
    /// while the row still holds `old`, so a concurrent upgrade or a revocation
    /// race changes nothing twice. Not audited: the key, its secret and what it may
    /// do are unchanged; only how its secret is stored changes, like a password
    /// rehash on login. Returns whether the row changed.
    pub async fn upgrade_secret_hash(
        &self,
        key_id: Uuid,
        old: String,
        new: String,
    ) -> Result<bool, StoreError> {
        self.run(move |conn| {
            let changed = diesel::update(
                api_keys::table
                    .filter(api_keys::id.eq(key_id.to_string()))
                    .filter(api_keys::secret_hash.eq(old)),
            )
            .set(api_keys::secret_hash.eq(new))
            .execute(conn)?;
            Ok(changed == 1)
        })
        .await
    }

    /// Stores a new key of an existing business, audited.
    pub async fn create_key(&self, key: NewApiKey, actor: Actor) -> Result<ApiKey, StoreError> {
        self.write(key.business_id, actor, move |conn, _recorded_at| {
            diesel::insert_into(api_keys::table)
                .values(ApiKeyRow::from(&key))
                .execute(conn)?;
            let event = key.created_event();
            let created = ApiKey {
                id: key.id,
                business_id: key.business_id,
                name: key.name,
                scopes: key.scopes,
                created_at: key.created_at,
                revoked_at: None,
            };
            Ok((created, vec![event]))
        })
        .await
    }

    /// [`Store::create_key`] for blocking callers (the CLI).
    pub fn create_key_blocking(
        &self,
        conn: &mut super::DbConnection,
        key: &NewApiKey,
        actor: Actor,
    ) -> Result<(), StoreError> {
        self.write_blocking(conn, key.business_id, actor, |conn, _recorded_at| {
            diesel::insert_into(api_keys::table)
                .values(ApiKeyRow::from(key))
                .execute(conn)?;
            Ok(((), vec![key.created_event()]))
        })
    }

    /// The keys of a business, oldest first.
    pub async fn list_keys(&self, business_id: Uuid) -> Result<Vec<ApiKey>, StoreError> {
        self.run(move |conn| {
            api_keys::table
                .filter(api_keys::business_id.eq(business_id.to_string()))
                .order((api_keys::created_at.asc(), api_keys::id.asc()))
                .select(ApiKeyRow::as_select())
                .load(conn)?
                .into_iter()
                .map(|row| row.into_key().map(|(key, _)| key))
                .collect()
        })
        .await
    }

    /// Revokes a key of this business, effective at once. Revoking a revoked key
    /// changes nothing and records nothing; another business's key is `NotFound`.
    pub async fn revoke_key(
        &self,
        business_id: Uuid,
        key_id: Uuid,
        at: DateTime<Utc>,
        actor: Actor,
    ) -> Result<ApiKey, StoreError> {
        let this = self.clone();
        self.run(move |conn| {
            let find = |conn: &mut super::DbConnection| -> Result<ApiKey, StoreError> {
                api_keys::table
                    .filter(api_keys::id.eq(key_id.to_string()))
                    .filter(api_keys::business_id.eq(business_id.to_string()))
                    .select(ApiKeyRow::as_select())
                    .first(conn)?
                    .into_key()
                    .map(|(key, _)| key)
            };
            let current = find(conn)?;
            if current.revoked_at.is_some() {
                return Ok(current);
            }
            this.write_blocking(conn, business_id, actor, |conn, _recorded_at| {
                let changed = diesel::update(
                    api_keys::table
                        .filter(api_keys::id.eq(key_id.to_string()))
                        .filter(api_keys::business_id.eq(business_id.to_string()))
                        .filter(api_keys::revoked_at.is_null()),
                )
                .set(api_keys::revoked_at.eq(Some(to_naive(at))))
                .execute(conn)?;
                if changed == 0 {
                    // Revoked by a concurrent request between our read and our lock.
                    return Err(StoreError::Conflict("already_revoked"));
                }
                let event = NewEvent::new(EventType::KeyRevoked, json!({"key_id": key_id}));
                Ok((find(conn)?, vec![event]))
            })
            .or_else(|e| match e {
                StoreError::Conflict("already_revoked") => find(conn),
                other => Err(other),
            })
        })
        .await
    }
}
