//! Businesses (tenants) and the service's own metadata.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::rows::{BusinessRow, from_naive, parse_id, to_naive};
use super::schema::{businesses, meta};
use super::{DbConnection, Store, StoreError};

/// A business as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Business {
    pub id: Uuid,
    pub name: String,
    pub policy: String,
    pub created_at: DateTime<Utc>,
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
    /// Inserts a business (the caller starts its chain in the same transaction).
    pub fn insert_business(conn: &mut DbConnection, business: &Business) -> Result<(), StoreError> {
        diesel::insert_into(businesses::table)
            .values(BusinessRow {
                id: business.id.to_string(),
                name: business.name.clone(),
                policy: business.policy.clone(),
                created_at: to_naive(business.created_at),
            })
            .execute(conn)?;
        Ok(())
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
