//! Appending to and reading the audit chain.

use diesel::prelude::*;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::rows::{AuditEventRow, from_naive, parse_id, to_naive};
use super::schema::{audit_checkpoints, audit_events, audit_heads};
use super::{DbConnection, Store, StoreError};
use crate::audit::verify::{Report, Verifier};
use crate::audit::{NewEvent, StoredEvent};
use crate::domain::{Actor, time};

pub use crate::audit::checkpoint::{Checkpointer, StoredCheckpoint};
pub use crate::audit::head::Head;

/// Creates the head of a new business's chain (seq 0, the genesis hash).
pub(super) fn create_head(conn: &mut DbConnection, business_id: Uuid) -> Result<Head, StoreError> {
    let head = Head::genesis(business_id);
    diesel::insert_into(audit_heads::table)
        .values((
            audit_heads::business_id.eq(business_id.to_string()),
            audit_heads::seq.eq(head.seq()),
            audit_heads::hash.eq(head.hash()),
        ))
        .execute(conn)?;
    Ok(head)
}

/// Locks the head row (a no-op UPDATE is a write on both backends: a row lock on
/// PostgreSQL, the database write lock on SQLite) and reads it. `NotFound` when the
/// business does not exist.
pub fn lock_head(conn: &mut DbConnection, business_id: Uuid) -> Result<Head, StoreError> {
    let id = business_id.to_string();
    let locked = diesel::update(audit_heads::table.find(&id))
        .set(audit_heads::seq.eq(audit_heads::seq))
        .execute(conn)?;
    if locked == 0 {
        return Err(StoreError::NotFound);
    }
    let (seq, hash, last_recorded_at) = audit_heads::table
        .find(&id)
        .select((
            audit_heads::seq,
            audit_heads::hash,
            audit_heads::last_recorded_at,
        ))
        .first::<(i64, Vec<u8>, Option<chrono::NaiveDateTime>)>(conn)?;
    Ok(Head::stored(
        business_id,
        seq,
        hash,
        last_recorded_at.map(from_naive),
    ))
}

/// Locks the heads of these businesses and reads them, in one round trip on
/// PostgreSQL (`SELECT ... ORDER BY business_id FOR UPDATE`: rows are locked in
/// sorted order, so two batches cannot deadlock); on SQLite a no-op UPDATE takes
/// the database's write lock first, then the heads are read. A business with no
/// head (no such business) is absent from the answer.
pub fn lock_heads(
    conn: &mut DbConnection,
    business_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Head>, StoreError> {
    type Row = (String, i64, Vec<u8>, Option<chrono::NaiveDateTime>);
    let mut ids: Vec<String> = business_ids.iter().map(Uuid::to_string).collect();
    ids.sort_unstable();
    ids.dedup();
    let query = audit_heads::table
        .filter(audit_heads::business_id.eq_any(ids.clone()))
        .order(audit_heads::business_id.asc())
        .select((
            audit_heads::business_id,
            audit_heads::seq,
            audit_heads::hash,
            audit_heads::last_recorded_at,
        ));
    let rows: Vec<Row> = match conn {
        DbConnection::Postgres(pg) => query.for_update().load(pg)?,
        DbConnection::Sqlite(_) => {
            diesel::update(audit_heads::table.filter(audit_heads::business_id.eq_any(ids)))
                .set(audit_heads::seq.eq(audit_heads::seq))
                .execute(conn)?;
            query.load(conn)?
        }
    };
    rows.into_iter()
        .map(|(id, seq, hash, last_recorded_at)| {
            let id = parse_id(&id)?;
            Ok((
                id,
                Head::stored(id, seq, hash, last_recorded_at.map(from_naive)),
            ))
        })
        .collect()
}

/// Inserts chained events (made by [`Head::chain`]), many to a statement. Must
/// run in the transaction that holds their business's head lock and made the
/// changes they record.
pub fn insert_events(conn: &mut DbConnection, events: &[StoredEvent]) -> Result<(), StoreError> {
    let rows: Vec<AuditEventRow> = events.iter().map(AuditEventRow::from).collect();
    super::insert_many!(conn, audit_events::table, rows)?;
    Ok(())
}

/// Appends events after `head`, recorded at `at` (from [`Head::next_recorded_at`]),
/// and moves the head; returns the new head. Must run in the transaction that holds
/// the head's lock and made the change the events record.
pub(super) fn append(
    conn: &mut DbConnection,
    mut head: Head,
    actor: Actor,
    at: DateTime<Utc>,
    events: Vec<NewEvent>,
) -> Result<Head, StoreError> {
    append_events(conn, &mut head, actor, at, events)?;
    save_head(conn, &head)?;
    Ok(head)
}

/// Inserts events after `head`, recorded at `at` (each chained by
/// [`Head::chain`], then inserted many to a statement), and advances `head` in
/// memory only: the caller stores it with
/// [`save_head`] before its transaction commits (a group commit stores each moved
/// head once per batch). Must run in the transaction that holds the head's lock
/// and made the change the events record.
pub fn append_events(
    conn: &mut DbConnection,
    head: &mut Head,
    actor: Actor,
    at: DateTime<Utc>,
    events: Vec<NewEvent>,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::Internal(
            "a state change must append at least one audit event".into(),
        ));
    }
    let rows = events
        .into_iter()
        .map(|event| {
            head.chain(actor, at, event)
                .map(|e| AuditEventRow::from(&e))
                .map_err(|e| StoreError::Internal(format!("event data: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    super::insert_many!(conn, audit_events::table, rows)?;
    Ok(())
}

/// Stores a head moved by [`append_events`] (under its lock, before commit).
pub fn save_head(conn: &mut DbConnection, head: &Head) -> Result<(), StoreError> {
    diesel::update(audit_heads::table.find(head.business_id().to_string()))
        .set((
            audit_heads::seq.eq(head.seq()),
            audit_heads::hash.eq(head.hash()),
            audit_heads::last_recorded_at.eq(head.last_recorded_at().map(to_naive)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The latest checkpoint's seq of a business (0 when none).
pub fn last_checkpoint_seq(conn: &mut DbConnection, business_id: Uuid) -> Result<i64, StoreError> {
    Ok(audit_checkpoints::table
        .filter(audit_checkpoints::business_id.eq(business_id.to_string()))
        .select(diesel::dsl::max(audit_checkpoints::seq))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}

fn insert_checkpoint(
    conn: &mut DbConnection,
    checkpointer: &Checkpointer,
    head: &Head,
) -> Result<StoredCheckpoint, StoreError> {
    let checkpoint = checkpointer.sign(head.business_id(), head.seq(), head.hash(), time::now());
    store_checkpoint(conn, &checkpoint)?;
    Ok(checkpoint)
}

/// Stores a signed checkpoint.
pub fn store_checkpoint(
    conn: &mut DbConnection,
    checkpoint: &StoredCheckpoint,
) -> Result<(), StoreError> {
    diesel::insert_into(audit_checkpoints::table)
        .values((
            audit_checkpoints::business_id.eq(checkpoint.business_id.to_string()),
            audit_checkpoints::seq.eq(checkpoint.seq),
            audit_checkpoints::hash.eq(&checkpoint.hash),
            audit_checkpoints::at.eq(to_naive(checkpoint.at)),
            audit_checkpoints::key_id.eq(&checkpoint.key_id),
            audit_checkpoints::signature.eq(&checkpoint.signature),
        ))
        .execute(conn)?;
    Ok(())
}

/// A business's checkpoints, in sequence order.
pub fn checkpoints(
    conn: &mut DbConnection,
    business_id: Uuid,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    type Row = (i64, Vec<u8>, chrono::NaiveDateTime, String, Vec<u8>);
    let rows: Vec<Row> = audit_checkpoints::table
        .filter(audit_checkpoints::business_id.eq(business_id.to_string()))
        .order(audit_checkpoints::seq.asc())
        .select((
            audit_checkpoints::seq,
            audit_checkpoints::hash,
            audit_checkpoints::at,
            audit_checkpoints::key_id,
            audit_checkpoints::signature,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(seq, hash, at, key_id, signature)| StoredCheckpoint {
            business_id,
            seq,
            hash,
            at: from_naive(at),
            key_id,
            signature,
        })
        .collect())
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
    /// Signs a checkpoint of `head` when `every` events passed since the last one.
    pub(super) fn checkpoint_if_due(
        &self,
        conn: &mut DbConnection,
        head: &Head,
    ) -> Result<(), StoreError> {
        let Some(checkpointer) = &self.checkpointer else {
            return Ok(());
        };
        if checkpointer.is_due(head.seq(), last_checkpoint_seq(conn, head.business_id())?) {
            insert_checkpoint(conn, checkpointer, head)?;
        }
        Ok(())
    }

    /// A checkpoint of the business's current head, made now unless one exists for
    /// it already; `None` for a chain with no events. `NotFound` for no business.
    pub fn checkpoint_now_blocking(
        &self,
        conn: &mut DbConnection,
        business_id: Uuid,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let checkpointer = self
            .checkpointer
            .clone()
            .ok_or_else(|| StoreError::Internal("this store signs no checkpoints".into()))?;
        self.transaction(conn, |conn| {
            let head = lock_head(conn, business_id)?;
            if head.seq() == 0 {
                return Ok(None);
            }
            if last_checkpoint_seq(conn, business_id)? == head.seq() {
                return Ok(checkpoints(conn, business_id)?.pop());
            }
            insert_checkpoint(conn, &checkpointer, &head).map(Some)
        })
    }

    /// [`Store::checkpoint_now_blocking`] on the blocking pool.
    pub async fn checkpoint_now(
        &self,
        business_id: Uuid,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let this = self.clone();
        self.run(move |conn| this.checkpoint_now_blocking(conn, business_id))
            .await
    }

    /// Checkpoints every business whose chain moved since its last checkpoint (the
    /// periodic job). Returns how many were made.
    pub async fn checkpoint_moved_chains(&self) -> Result<usize, StoreError> {
        let this = self.clone();
        self.run(move |conn| {
            let mut made = 0;
            for business_id in chained_businesses(conn)? {
                let head = recorded_head(conn, business_id)?
                    .map(|(seq, _)| seq)
                    .unwrap_or(0);
                if head > last_checkpoint_seq(conn, business_id)? {
                    made += usize::from(this.checkpoint_now_blocking(conn, business_id)?.is_some());
                }
            }
            Ok(made)
        })
        .await
    }

    /// A business's checkpoints.
    pub async fn checkpoints(
        &self,
        business_id: Uuid,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.run(move |conn| checkpoints(conn, business_id)).await
    }

    /// Recomputes a business's whole chain from the stored rows, a page at a time,
    /// and compares it with every signed checkpoint (whose signatures are checked
    /// against this service's key).
    pub fn verify_chain_blocking(
        &self,
        conn: &mut DbConnection,
        business_id: Uuid,
    ) -> Result<Report, StoreError> {
        let stored = checkpoints(conn, business_id)?;
        let public_key = self.checkpoint_public_key();
        let mut expected = Vec::with_capacity(stored.len());
        let mut invalid = Vec::new();
        for checkpoint in stored {
            let signed = public_key.is_some_and(|key| {
                key.key_id() == checkpoint.key_id
                    && key.verify(&checkpoint.message(), &checkpoint.signature)
            });
            if signed {
                expected.push((checkpoint.seq, checkpoint.hash));
            } else {
                invalid.push(checkpoint.seq);
            }
        }
        let mut verifier = Verifier::with_checkpoints(expected, invalid);
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

/// Which events an auditor asks for.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events with seq greater than this.
    pub after: i64,
    pub limit: i64,
    pub event_type: Option<String>,
    pub subject_id: Option<Uuid>,
    /// `at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `at < to`.
    pub to: Option<DateTime<Utc>>,
}

/// Events of one business matching the filter, in sequence order.
pub fn events_matching(
    conn: &mut DbConnection,
    business_id: Uuid,
    filter: &EventFilter,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut query = audit_events::table
        .filter(audit_events::business_id.eq(business_id.to_string()))
        .filter(audit_events::seq.gt(filter.after))
        .into_boxed();
    if let Some(event_type) = &filter.event_type {
        query = query.filter(audit_events::event_type.eq(event_type.clone()));
    }
    if let Some(subject_id) = filter.subject_id {
        query = query.filter(audit_events::subject_id.eq(subject_id.to_string()));
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_events::at.ge(to_naive(from)));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_events::at.lt(to_naive(to)));
    }
    query
        .order(audit_events::seq.asc())
        .limit(filter.limit)
        .select(AuditEventRow::as_select())
        .load(conn)?
        .into_iter()
        .map(StoredEvent::try_from)
        .collect()
}
