//! The auditor's view of the chain: events with their personal fields decrypted
//! (or `[erased]` once the subject's data key is gone), and the export lines that
//! carry exactly what the hash covers.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Ledger;
use crate::audit::StoredEvent;
use crate::crypto::chain::format_at;
use crate::crypto::envelope::{Aad, DataKey};
use crate::store::audit::{EventFilter, events_matching};
use crate::store::ledger as rows;
use crate::store::{DbConnection, StoreError};

/// What a personal field shows once its subject is erased.
pub const ERASED: &str = "[erased]";

/// One audit event as an auditor reads it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEventView {
    pub seq: i64,
    pub id: Uuid,
    /// RFC 3339, UTC, microseconds (exactly as hashed).
    pub at: String,
    /// e.g. `opt_in.recorded`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `operator`, `cli`, `system` or `key:<key id>`.
    pub actor: String,
    pub subject_id: Option<Uuid>,
    /// The event's data; personal fields (`evidence`) decrypted, or `[erased]`.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Hex SHA-256 of the previous event (64 zeros before the first).
    pub prev_hash: String,
    /// Hex SHA-256 of `prev_hash || canonical(event)`.
    pub hash: String,
}

/// One line of `GET /v1/audit/export`: every field the hash covers, `data` as the
/// exact stored text, so the chain can be re-verified from the export alone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportLine {
    pub business_id: Uuid,
    pub seq: i64,
    pub id: Uuid,
    pub at: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub actor: String,
    pub subject_id: Option<Uuid>,
    /// The stored JSON text, byte for byte (personal fields are ciphertext).
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<StoredEvent> for ExportLine {
    fn from(e: StoredEvent) -> Self {
        ExportLine {
            business_id: e.business_id,
            seq: e.seq,
            id: e.id,
            at: format_at(e.at),
            event_type: e.event_type,
            actor: e.actor,
            subject_id: e.subject_id,
            data: e.data,
            prev_hash: hex::encode(&e.prev_hash),
            hash: hex::encode(&e.hash),
        }
    }
}

impl Ledger {
    /// A page of events, personal fields decrypted for the auditor.
    pub async fn audit_events(
        &self,
        business_id: Uuid,
        filter: EventFilter,
    ) -> Result<Vec<AuditEventView>, StoreError> {
        let this = self.clone();
        self.store
            .run(move |conn| this.audit_view_blocking(conn, business_id, filter))
            .await
    }

    /// [`Ledger::audit_events`] on a connection the caller holds.
    pub fn audit_view_blocking(
        &self,
        conn: &mut DbConnection,
        business_id: Uuid,
        filter: EventFilter,
    ) -> Result<Vec<AuditEventView>, StoreError> {
        let keys = &self.keys;
        {
            {
                let events = events_matching(conn, business_id, &filter)?;
                let mut data_keys: HashMap<Uuid, Option<DataKey>> = HashMap::new();
                events
                    .into_iter()
                    .map(|event| {
                        let data = match event.subject_id {
                            Some(subject_id) => {
                                if let std::collections::hash_map::Entry::Vacant(slot) =
                                    data_keys.entry(subject_id)
                                {
                                    slot.insert(subject_key(conn, keys, business_id, subject_id)?);
                                }
                                let key = data_keys.get(&subject_id).and_then(Option::as_ref);
                                reveal(&event.data, key, business_id, subject_id)
                            }
                            None => serde_json::from_str(&event.data)
                                .unwrap_or(Value::String(event.data.clone())),
                        };
                        Ok(AuditEventView {
                            seq: event.seq,
                            id: event.id,
                            at: format_at(event.at),
                            event_type: event.event_type,
                            actor: event.actor,
                            subject_id: event.subject_id,
                            data,
                            prev_hash: hex::encode(&event.prev_hash),
                            hash: hex::encode(&event.hash),
                        })
                    })
                    .collect()
            }
        }
    }

    /// A page of raw events for the export stream.
    pub async fn export_page(
        &self,
        business_id: Uuid,
        filter: EventFilter,
    ) -> Result<Vec<ExportLine>, StoreError> {
        self.store
            .run(move |conn| {
                Ok(events_matching(conn, business_id, &filter)?
                    .into_iter()
                    .map(ExportLine::from)
                    .collect())
            })
            .await
    }
}

/// The subject's data key, or `None` once it was destroyed (erasure).
fn subject_key(
    conn: &mut DbConnection,
    keys: &super::Keyring,
    business_id: Uuid,
    subject_id: Uuid,
) -> Result<Option<DataKey>, StoreError> {
    match rows::subject_keys(conn, business_id, subject_id) {
        Ok(row) => Ok(row.wrapped_key.and_then(|wrapped| {
            DataKey::unwrap(&wrapped, keys.kek(), business_id, subject_id).ok()
        })),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The event data with its sealed `evidence` opened (or `[erased]`).
fn reveal(data: &str, key: Option<&DataKey>, business_id: Uuid, subject_id: Uuid) -> Value {
    let mut value: Value = serde_json::from_str(data).unwrap_or(Value::String(data.to_owned()));
    if let Some(sealed) = value.get("evidence").and_then(Value::as_str) {
        let opened = key.and_then(|key| {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(sealed)
                .ok()?;
            let plain = key
                .open(&Aad::new(business_id, subject_id, "evidence"), &bytes)
                .ok()?;
            serde_json::from_slice::<Value>(&plain).ok()
        });
        value["evidence"] = opened.unwrap_or_else(|| Value::String(ERASED.to_owned()));
    }
    value
}
