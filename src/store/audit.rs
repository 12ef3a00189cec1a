//! The audit chain's statements: chain heads (lock, read, store), events
//! (insert, read), signed checkpoints (store, read). Plain rows only: what an
//! event's hash is, how the next one is chained and how a checkpoint is signed
//! are the `audit` and `writer` modules' business, above this one.

use diesel::prelude::*;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::rows::{AuditEventRow, from_naive, parse_id, to_naive};
use super::schema::{audit_checkpoints, audit_events, audit_heads};
use super::{DbConnection, Store, StoreError};

/// A business's chain head as stored: the last event's seq and hash (seq 0 and
/// the genesis hash for an empty chain), and when the chain's last write was
/// recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadRow {
    pub business_id: Uuid,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub last_recorded_at: Option<DateTime<Utc>>,
}

/// An event as stored in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub business_id: Uuid,
    pub seq: i64,
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub event_type: String,
    pub actor: String,
    pub subject_id: Option<Uuid>,
    /// The JSON text exactly as stored (and hashed).
    pub data: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub business_id: Uuid,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub at: DateTime<Utc>,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// Inserts the head of a new business's chain.
pub fn insert_head(conn: &mut DbConnection, head: &HeadRow) -> Result<(), StoreError> {
    diesel::insert_into(audit_heads::table)
        .values((
            audit_heads::business_id.eq(head.business_id.to_string()),
            audit_heads::seq.eq(head.seq),
            audit_heads::hash.eq(&head.hash),
            audit_heads::last_recorded_at.eq(head.last_recorded_at.map(to_naive)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Locks the head row (a no-op UPDATE is a write on both backends: a row lock on
/// PostgreSQL, the database write lock on SQLite) and reads it. `NotFound` when the
/// business does not exist.
pub fn lock_head(conn: &mut DbConnection, business_id: Uuid) -> Result<HeadRow, StoreError> {
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
    Ok(HeadRow {
        business_id,
        seq,
        hash,
        last_recorded_at: last_recorded_at.map(from_naive),
    })
}

/// Locks the heads of these businesses and reads them, in one round trip on
/// PostgreSQL (`SELECT ... ORDER BY business_id FOR UPDATE`: rows are locked in
/// sorted order, so two batches cannot deadlock); on SQLite a no-op UPDATE takes
/// the database's write lock first, then the heads are read. A business with no
/// head (no such business) is absent from the answer.
pub fn lock_heads(
    conn: &mut DbConnection,
    business_ids: &[Uuid],
) -> Result<Vec<HeadRow>, StoreError> {
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
            Ok(HeadRow {
                business_id: parse_id(&id)?,
                seq,
                hash,
                last_recorded_at: last_recorded_at.map(from_naive),
            })
        })
        .collect()
}

/// Inserts chained events, many to a statement. Must run in the transaction
/// that holds their business's head lock and made the changes they record.
pub fn insert_events(conn: &mut DbConnection, events: &[StoredEvent]) -> Result<(), StoreError> {
    let rows: Vec<AuditEventRow> = events.iter().map(AuditEventRow::from).collect();
    super::insert_many!(conn, audit_events::table, rows)?;
    Ok(())
}

/// Stores a moved head (under its lock, before commit).
pub fn save_head(conn: &mut DbConnection, head: &HeadRow) -> Result<(), StoreError> {
    diesel::update(audit_heads::table.find(head.business_id.to_string()))
        .set((
            audit_heads::seq.eq(head.seq),
            audit_heads::hash.eq(&head.hash),
            audit_heads::last_recorded_at.eq(head.last_recorded_at.map(to_naive)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Stores several moved heads (under their locks, before commit). On PostgreSQL
/// one statement for all of them (each statement is a round trip the writer
/// waits for, and a batch of many businesses moves many heads); on SQLite, in
/// process, one statement each: the whole row replaced, because diesel keeps an
/// `INSERT OR REPLACE` prepared and prepares every `UPDATE` afresh (a batch of 16
/// businesses parsed 16 updates; BENCHMARKS.md, writes, session 12). The rows
/// exist: the batch locked and read them in this transaction.
pub fn save_heads(conn: &mut DbConnection, heads: &[HeadRow]) -> Result<(), StoreError> {
    match conn {
        DbConnection::Sqlite(lite) => heads.iter().try_for_each(|head| {
            diesel::replace_into(audit_heads::table)
                .values((
                    audit_heads::business_id.eq(head.business_id.to_string()),
                    audit_heads::seq.eq(head.seq),
                    audit_heads::hash.eq(&head.hash),
                    audit_heads::last_recorded_at.eq(head.last_recorded_at.map(to_naive)),
                ))
                .execute(lite)?;
            Ok(())
        }),
        DbConnection::Postgres(pg) if heads.len() > 1 => {
            use diesel::sql_types::{Array, Bytea, Int8, Nullable, Text, Timestamp};
            let ids: Vec<String> = heads.iter().map(|h| h.business_id.to_string()).collect();
            let seqs: Vec<i64> = heads.iter().map(|h| h.seq).collect();
            let hashes: Vec<Vec<u8>> = heads.iter().map(|h| h.hash.clone()).collect();
            let last: Vec<Option<chrono::NaiveDateTime>> = heads
                .iter()
                .map(|h| h.last_recorded_at.map(to_naive))
                .collect();
            let updated = diesel::sql_query(
                "UPDATE audit_heads AS h \
                 SET seq = v.seq, hash = v.hash, last_recorded_at = v.last_recorded_at \
                 FROM unnest($1, $2, $3, $4) AS v (business_id, seq, hash, last_recorded_at) \
                 WHERE h.business_id = v.business_id",
            )
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Int8>, _>(seqs)
            .bind::<Array<Bytea>, _>(hashes)
            .bind::<Array<Nullable<Timestamp>>, _>(last)
            .execute(pg)?;
            if updated != heads.len() {
                return Err(StoreError::Internal(format!(
                    "stored {updated} of {} chain heads",
                    heads.len()
                )));
            }
            Ok(())
        }
        _ => heads.iter().try_for_each(|head| save_head(conn, head)),
    }
}

/// The latest checkpoint's seq of a business (0 when none).
pub fn last_checkpoint_seq(conn: &mut DbConnection, business_id: Uuid) -> Result<i64, StoreError> {
    Ok(audit_checkpoints::table
        .filter(audit_checkpoints::business_id.eq(business_id.to_string()))
        .select(diesel::dsl::max(audit_checkpoints::seq))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
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

impl Store {
    /// A business's checkpoints.
    pub async fn checkpoints(
        &self,
        business_id: Uuid,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.run(move |conn| checkpoints(conn, business_id)).await
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
