//! API keys: rows hold a keyed hash of the secret (`hmac-sha256$...`, or a legacy
//! argon2id PHC string until its next use), never the secret.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::rows::{ApiKeyRow, from_naive, parse_id, to_naive};
use super::schema::{api_keys, businesses};
use super::{DbConnection, Store, StoreError};
use crate::domain::Scopes;

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

/// A key about to be stored (minted, its secret hashed, by
/// `crate::ledger::keys::mint_key`).
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: Uuid,
    pub business_id: Uuid,
    pub name: String,
    pub scopes: Scopes,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
}

impl From<NewApiKey> for ApiKey {
    /// The key as just stored: not revoked.
    fn from(k: NewApiKey) -> Self {
        ApiKey {
            id: k.id,
            business_id: k.business_id,
            name: k.name,
            scopes: k.scopes,
            created_at: k.created_at,
            revoked_at: None,
        }
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
}

/// Inserts a key (the caller appends its `key.created` event in the same
/// transaction).
pub fn insert_key(conn: &mut DbConnection, key: &NewApiKey) -> Result<(), StoreError> {
    diesel::insert_into(api_keys::table)
        .values(ApiKeyRow::from(key))
        .execute(conn)?;
    Ok(())
}

/// A key of this business, revoked or not; `NotFound` for another business's
/// key or none.
pub fn find_key(
    conn: &mut DbConnection,
    business_id: Uuid,
    key_id: Uuid,
) -> Result<ApiKey, StoreError> {
    api_keys::table
        .filter(api_keys::id.eq(key_id.to_string()))
        .filter(api_keys::business_id.eq(business_id.to_string()))
        .select(ApiKeyRow::as_select())
        .first(conn)?
        .into_key()
        .map(|(key, _)| key)
}

/// Marks a key of this business revoked at `at`, unless it is revoked already;
/// returns whether the row changed.
pub fn revoke_key(
    conn: &mut DbConnection,
    business_id: Uuid,
    key_id: Uuid,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let changed = diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(key_id.to_string()))
            .filter(api_keys::business_id.eq(business_id.to_string()))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(Some(to_naive(at))))
    .execute(conn)?;
    Ok(changed == 1)
}
