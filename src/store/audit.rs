//! Appending to and reading the audit chain.

use diesel::prelude::*;
use uuid::Uuid;

use super::rows::{AuditEventRow, parse_id};
use super::schema::{audit_events, audit_heads};
use super::{DbConnection, Store, StoreError};
use crate::audit::verify::{Report, Verifier};
use crate::audit::{NewEvent, StoredEvent};
use crate::crypto::chain::{GENESIS, event_hash};
use crate::domain::{Actor, time};

/// The chain head of one business, read under its lock.
#[derive(Debug)]
pub struct Head {
    business_id: Uuid,
    seq: i64,
    hash: Vec<u8>,
}

/// Creates the head of a new business's chain (seq 0, the genesis hash).
pub(super) fn create_head(conn: &mut DbConnection, business_id: Uuid) -> Result<Head, StoreError> {
    diesel::insert_into(audit_heads::table)
        .values((
            audit_heads::business_id.eq(business_id.to_string()),
            audit_heads::seq.eq(0i64),
            audit_heads::hash.eq(GENESIS.to_vec()),
        ))
        .execute(conn)?;
    Ok(Head {
        business_id,
        seq: 0,
        hash: GENESIS.to_vec(),
    })
}

/// Locks the head row (a no-op UPDATE is a write on both backends: a row lock on
/// PostgreSQL, the database write lock on SQLite) and reads it. `NotFound` when the
/// business does not exist.
pub(super) fn lock_head(conn: &mut DbConnection, business_id: Uuid) -> Result<Head, StoreError> {
    let id = business_id.to_string();
    let locked = diesel::update(audit_heads::table.find(&id))
        .set(audit_heads::seq.eq(audit_heads::seq))
        .execute(conn)?;
    if locked == 0 {
        return Err(StoreError::NotFound);
    }
    let (seq, hash) = audit_heads::table
        .find(&id)
        .select((audit_heads::seq, audit_heads::hash))
        .first::<(i64, Vec<u8>)>(conn)?;
    Ok(Head {
        business_id,
        seq,
        hash,
    })
}

/// Appends events after `head` and moves the head. Must run in the transaction
/// that holds the head's lock and made the change the events record.
pub(super) fn append(
    conn: &mut DbConnection,
    mut head: Head,
    actor: Actor,
    events: Vec<NewEvent>,
) -> Result<Vec<StoredEvent>, StoreError> {
    if events.is_empty() {
        return Err(StoreError::Internal(
            "a state change must append at least one audit event".into(),
        ));
    }
    let actor = actor.to_string();
    let mut stored = Vec::with_capacity(events.len());
    for event in events {
        let data = serde_json::to_string(&event.data)
            .map_err(|e| StoreError::Internal(format!("event data: {e}")))?;
        let mut e = StoredEvent {
            business_id: head.business_id,
            seq: head.seq + 1,
            id: Uuid::now_v7(),
            at: time::now(),
            event_type: event.event_type.as_str().to_owned(),
            actor: actor.clone(),
            subject_id: event.subject_id,
            data,
            prev_hash: head.hash.clone(),
            hash: Vec::new(),
        };
        e.hash = event_hash(&e.prev_hash, &e.chained_fields()).to_vec();
        diesel::insert_into(audit_events::table)
            .values(AuditEventRow::from(&e))
            .execute(conn)?;
        head.seq = e.seq;
        head.hash = e.hash.clone();
        stored.push(e);
    }
    diesel::update(audit_heads::table.find(head.business_id.to_string()))
        .set((
            audit_heads::seq.eq(head.seq),
            audit_heads::hash.eq(&head.hash),
        ))
        .execute(conn)?;
    Ok(stored)
}

/// Events of a business with `seq > after`, in sequence order, at most `limit`.
pub fn events_after(
    conn: &mut DbConnection,
    business_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    audit_events::table
        .filter(audit_events::business_id.eq(business_id.to_string()))
        .filter(audit_events::seq.gt(after))
        .order(audit_events::seq.asc())
        .limit(limit)
        .select(AuditEventRow::as_select())
        .load(conn)?
        .into_iter()
        .map(StoredEvent::try_from)
        .collect()
}

/// The head recorded for a business: `(seq, hash)`, or `None` for no business.
pub fn recorded_head(
    conn: &mut DbConnection,
    business_id: Uuid,
) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    Ok(audit_heads::table
        .find(business_id.to_string())
        .select((audit_heads::seq, audit_heads::hash))
        .first::<(i64, Vec<u8>)>(conn)
        .optional()?)
}

/// Every business id that has a chain.
pub fn chained_businesses(conn: &mut DbConnection) -> Result<Vec<Uuid>, StoreError> {
    audit_heads::table
        .select(audit_heads::business_id)
        .order(audit_heads::business_id.asc())
        .load::<String>(conn)?
        .iter()
        .map(|id| parse_id(id))
        .collect()
}

/// Page size when streaming through a chain: memory stays bounded by one page.
const VERIFY_PAGE: i64 = 1_000;

impl Store {
    /// Recomputes a business's whole chain from the stored rows, a page at a time.
    pub fn verify_chain_blocking(
        &self,
        conn: &mut DbConnection,
        business_id: Uuid,
    ) -> Result<Report, StoreError> {
        let mut verifier = Verifier::default();
        let mut after = 0;
        loop {
            let page = events_after(conn, business_id, after, VERIFY_PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let done = page.len() < VERIFY_PAGE as usize;
            let intact = page.iter().all(|e| verifier.push(e));
            if !intact || done {
                break;
            }
        }
        Ok(verifier.finish(recorded_head(conn, business_id)?))
    }

    /// [`Store::verify_chain_blocking`] on the blocking pool.
    pub async fn verify_chain(&self, business_id: Uuid) -> Result<Report, StoreError> {
        let this = self.clone();
        self.run(move |conn| this.verify_chain_blocking(conn, business_id))
            .await
    }

    /// Events after `after`, at most `limit`.
    pub async fn audit_events(
        &self,
        business_id: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.run(move |conn| events_after(conn, business_id, after, limit))
            .await
    }
}
