//! Businesses (tenants) and the service's own metadata.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;
use uuid::Uuid;

use super::keys::NewApiKey;
use super::rows::{ApiKeyRow, BusinessRow, from_naive, parse_id, to_naive};
use super::schema::{api_keys, businesses, meta};
use super::{DbConnection, Store, StoreError, audit};
use crate::audit::{EventType, NewEvent};
use crate::domain::{Actor, Scopes};

/// A business as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Business {
    pub id: Uuid,
    pub name: String,
    pub policy: String,
    pub created_at: DateTime<Utc>,
}

impl Business {
    /// A new business and its first key holding every scope: the business, the key
    /// to store, and the key's bearer token to show once.
    pub fn new_with_first_key(
        hasher: &crate::crypto::api_key::SecretHasher,
        name: String,
        policy: String,
    ) -> (Business, NewApiKey, String) {
        let business = Business {
            id: Uuid::now_v7(),
            name,
            policy,
            created_at: crate::domain::time::now(),
        };
        let (key, secret) =
            NewApiKey::mint(hasher, business.id, "first key".to_owned(), Scopes::all());
        (business, key, secret)
    }
}

impl TryFrom<BusinessRow> for Business {
    type Error = StoreError;
    fn try_from(row: BusinessRow) -> Result<Self, StoreError> {
        Ok(Business {
            id: parse_id(&row.id)?,
            name: row.name,
            policy: row.policy,
            created_at: from_naive(row.created_at),
        })
    }
}

impl Store {
    /// Creates a business with its first key, and starts its chain with
    /// `business.created` and `key.created`, all in one transaction.
    pub fn create_business_blocking(
        &self,
        conn: &mut DbConnection,
        business: &Business,
        first_key: &NewApiKey,
        actor: Actor,
    ) -> Result<(), StoreError> {
        self.transaction(conn, |conn| {
            diesel::insert_into(businesses::table)
                .values(BusinessRow {
                    id: business.id.to_string(),
                    name: business.name.clone(),
                    policy: business.policy.clone(),
                    created_at: to_naive(business.created_at),
                })
                .execute(conn)?;
            let head = audit::create_head(conn, business.id)?;
            diesel::insert_into(api_keys::table)
                .values(ApiKeyRow::from(first_key))
                .execute(conn)?;
            let events = vec![
                NewEvent::new(
                    EventType::BusinessCreated,
                    json!({"business_id": business.id, "name": business.name, "policy": business.policy}),
                ),
                first_key.created_event(),
            ];
            let at = head.next_recorded_at(self.clock().now());
            let head = audit::append(conn, head, actor, at, events)?;
            self.checkpoint_if_due(conn, &head)?;
            Ok(())
        })
    }

    /// [`Store::create_business_blocking`] on the blocking pool.
    pub async fn create_business(
        &self,
        business: Business,
        first_key: NewApiKey,
        actor: Actor,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        self.run(move |conn| this.create_business_blocking(conn, &business, &first_key, actor))
            .await
    }

    /// A business by id.
    pub fn business_blocking(conn: &mut DbConnection, id: Uuid) -> Result<Business, StoreError> {
        businesses::table
            .find(id.to_string())
            .select(BusinessRow::as_select())
            .first(conn)?
            .try_into()
    }

    /// Reads a value of the service's own metadata.
    pub fn meta_get(conn: &mut DbConnection, key: &str) -> Result<Option<String>, StoreError> {
        Ok(meta::table
            .find(key)
            .select(meta::value)
            .first::<String>(conn)
            .optional()?)
    }

    /// Sets a metadata value that must never change once written: returns the value
    /// that is stored afterwards (the existing one if there was one).
    pub fn meta_set_once(
        conn: &mut DbConnection,
        key: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        let inserted = diesel::insert_into(meta::table)
            .values((meta::key.eq(key), meta::value.eq(value)))
            .execute(conn);
        match inserted {
            Ok(_)
            | Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Self::meta_get(conn, key)?.ok_or(StoreError::NotFound),
            Err(e) => Err(e.into()),
        }
    }
}
