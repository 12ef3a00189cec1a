//! Rows as diesel reads and writes them, and their conversions to and from the
//! types the rest of the service uses. All such conversions live here.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::StoreError;
use super::audit::StoredEvent;
use super::schema::{api_keys, audit_events, businesses};

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

// `treat_none_as_default_value = false`: a `None` is bound as NULL (which is also every nullable
// column's default), so that many rows can go into one SQLite `INSERT` (diesel
// inserts rows that may mean DEFAULT one statement at a time on SQLite).
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events, treat_none_as_default_value = false)]
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

// `treat_none_as_default_value = false`: see [`AuditEventRow`].
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::facts, treat_none_as_default_value = false)]
pub struct FactRow {
    pub id: String,
    pub business_id: String,
    pub subject_id: String,
    pub kind: String,
    pub effective_at: NaiveDateTime,
    pub recorded_at: NaiveDateTime,
    pub categories: Option<String>,
    pub opt_in_id: Option<String>,
    pub channel: Option<String>,
    pub entry_point: Option<String>,
    pub by_keyword: bool,
    pub evidence: Option<Vec<u8>>,
}

/// A stored first response to an idempotent write, as inserted.
#[derive(Debug, Insertable)]
#[diesel(table_name = super::schema::idempotency_keys)]
pub struct IdempotencyRow {
    pub business_id: String,
    pub key: String,
    pub request_hash: Vec<u8>,
    pub status: i32,
    pub response: String,
    pub created_at: NaiveDateTime,
}

/// A subject as inserted (see `store::ledger::NewSubject`).
#[derive(Debug, Insertable)]
#[diesel(table_name = super::schema::subjects, treat_none_as_default_value = false)]
pub struct NewSubjectRow {
    pub id: String,
    pub business_id: String,
    pub pseudonym: Vec<u8>,
    pub wrapped_key: Option<Vec<u8>>,
    pub phone: Option<Vec<u8>>,
    pub created_at: NaiveDateTime,
}

fn split_categories(text: Option<&str>) -> Option<Vec<String>> {
    text.map(|t| t.split_whitespace().map(str::to_owned).collect())
}

impl FactRow {
    /// The decision's view of this row.
    pub fn to_fact(&self) -> Result<crate::domain::history::Fact, StoreError> {
        use crate::domain::history::{Fact, OptInFact};
        let effective_at = from_naive(self.effective_at);
        let recorded_at = from_naive(self.recorded_at);
        Ok(match self.kind.as_str() {
            "opt_in" => Fact::OptIn(OptInFact {
                id: parse_id(&self.id)?,
                categories: split_categories(self.categories.as_deref()).unwrap_or_default(),
                collected_at: effective_at,
                recorded_at,
                confirmed_on_record: self.by_keyword,
            }),
            "confirmation" => Fact::Confirmation {
                opt_in_id: parse_id(self.opt_in_id.as_deref().unwrap_or_default())?,
                confirmed_at: effective_at,
                recorded_at,
            },
            "revocation" => Fact::Revocation {
                id: parse_id(&self.id)?,
                categories: split_categories(self.categories.as_deref()),
                at: effective_at,
                recorded_at,
                by_keyword: self.by_keyword,
            },
            "restoration" => Fact::Restoration {
                id: parse_id(&self.id)?,
                categories: split_categories(self.categories.as_deref()),
                at: effective_at,
                recorded_at,
            },
            "block" => Fact::Block {
                at: effective_at,
                recorded_at,
            },
            "unblock" => Fact::Unblock {
                at: effective_at,
                recorded_at,
            },
            "inbound" => Fact::Inbound {
                received_at: effective_at,
                recorded_at,
                entry_point: self.entry_point.clone(),
            },
            _ => return Err(StoreError::Corrupt("facts.kind".into())),
        })
    }
}
