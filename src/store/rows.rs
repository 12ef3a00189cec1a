//! Rows as diesel reads and writes them, and their conversions to and from the
//! types the rest of the service uses. All such conversions live here.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::StoreError;
use super::schema::{api_keys, audit_events, businesses};
use crate::audit::StoredEvent;

pub fn to_naive(at: DateTime<Utc>) -> NaiveDateTime {
    crate::domain::time::truncate(at).naive_utc()
}

pub fn from_naive(at: NaiveDateTime) -> DateTime<Utc> {
    DateTime::from_naive_utc_and_offset(at, Utc)
}

pub fn parse_id(text: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(text).map_err(|_| StoreError::Corrupt("an id column holds a non-UUID".into()))
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = businesses)]
pub struct BusinessRow {
    pub id: String,
    pub name: String,
    pub policy: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: String,
    pub business_id: String,
    pub name: String,
    pub scopes: String,
    pub secret_hash: String,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditEventRow {
    pub business_id: String,
    pub seq: i64,
    pub id: String,
    pub at: NaiveDateTime,
    pub event_type: String,
    pub actor: String,
    pub subject_id: Option<String>,
    pub data: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl TryFrom<AuditEventRow> for StoredEvent {
    type Error = StoreError;

    fn try_from(row: AuditEventRow) -> Result<Self, StoreError> {
        Ok(StoredEvent {
            business_id: parse_id(&row.business_id)?,
            seq: row.seq,
            id: parse_id(&row.id)?,
            at: from_naive(row.at),
            event_type: row.event_type,
            actor: row.actor,
            subject_id: row.subject_id.as_deref().map(parse_id).transpose()?,
            data: row.data,
            prev_hash: row.prev_hash,
            hash: row.hash,
        })
    }
}

impl From<&StoredEvent> for AuditEventRow {
    fn from(e: &StoredEvent) -> Self {
        AuditEventRow {
            business_id: e.business_id.to_string(),
            seq: e.seq,
            id: e.id.to_string(),
            at: to_naive(e.at),
            event_type: e.event_type.clone(),
            actor: e.actor.clone(),
            subject_id: e.subject_id.map(|s| s.to_string()),
            data: e.data.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}
