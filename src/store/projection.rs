//! The reads that keep a node's in-memory projection of the consent state exact
//! (see `ledger::projection`): every subject's history of a business, page by page;
//! which subjects and keys the events after a sequence number touched; and the
//! histories of those subjects. Each runs inside [`Store::read_snapshot`], so what
//! is read is one committed state of the database together with the chain head it
//! corresponds to.

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;
use uuid::Uuid;

use super::ledger::histories_by_pseudonym;
use super::rows::{FactRow, from_naive, parse_id};
use super::schema::{audit_events, audit_heads, erasures, facts, subjects};
use super::{DbConnection, Store, StoreError};
use crate::domain::history::{Fact, SubjectHistory};

/// Subjects per page of a full load.
const PAGE: i64 = 2_000;

/// The chain heads of these businesses (absent: no such business).
pub fn head_seqs(
    conn: &mut DbConnection,
    business_ids: &[Uuid],
) -> Result<HashMap<Uuid, i64>, StoreError> {
    let ids: Vec<String> = business_ids.iter().map(Uuid::to_string).collect();
    audit_heads::table
        .filter(audit_heads::business_id.eq_any(ids))
        .select((audit_heads::business_id, audit_heads::seq))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .map(|(id, seq)| Ok((parse_id(&id)?, seq)))
        .collect()
}

/// One page of a business's histories: subjects with id greater than `after`, in
/// id order, each with its pseudonym and facts. Empty when there are no more.
pub fn history_page(
    conn: &mut DbConnection,
    business_id: Uuid,
    after: Option<&str>,
) -> Result<Vec<(String, [u8; 32], SubjectHistory)>, StoreError> {
    let business = business_id.to_string();
    let mut page = subjects::table
        .filter(subjects::business_id.eq(&business))
        .order(subjects::id.asc())
        .limit(PAGE)
        .select((subjects::id, subjects::pseudonym))
        .into_boxed();
    if let Some(after) = after {
        page = page.filter(subjects::id.gt(after.to_owned()));
    }
    let page: Vec<(String, Vec<u8>)> = page.load(conn)?;
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Ok(Vec::new());
    };
    let rows: Vec<FactRow> = facts::table
        .filter(facts::business_id.eq(&business))
        .filter(facts::subject_id.ge(&first.0))
        .filter(facts::subject_id.le(&last.0))
        .select(FactRow::as_select())
        .load(conn)?;
    let mut by_subject: HashMap<String, Vec<Fact>> = HashMap::with_capacity(page.len());
    for row in &rows {
        by_subject
            .entry(row.subject_id.clone())
            .or_default()
            .push(row.to_fact()?);
    }
    page.into_iter()
        .map(|(id, pseudonym)| {
            let pseudonym = pseudonym_array(&pseudonym)?;
            let facts = by_subject.remove(&id).unwrap_or_default();
            Ok((id, pseudonym, SubjectHistory::new(facts)))
        })
        .collect()
}

/// Every suppression marker of a business: pseudonym -> latest erasure.
pub fn suppression_markers_of(
    conn: &mut DbConnection,
    business_id: Uuid,
) -> Result<HashMap<[u8; 32], chrono::DateTime<chrono::Utc>>, StoreError> {
    let rows: Vec<(Vec<u8>, chrono::NaiveDateTime)> = erasures::table
        .filter(erasures::business_id.eq(business_id.to_string()))
        .filter(erasures::suppress.eq(true))
        .select((erasures::pseudonym, erasures::erased_at))
        .load(conn)?;
    let mut out = HashMap::new();
    for (pseudonym, at) in rows {
        let at = from_naive(at);
        let entry = out.entry(pseudonym_array(&pseudonym)?).or_insert(at);
        *entry = (*entry).max(at);
    }
    Ok(out)
}

/// What the events of a business after `after` (up to `upto`) touched.
#[derive(Debug, Default)]
pub struct Touched {
    /// Subjects whose state may have changed.
    pub subjects: BTreeSet<Uuid>,
    /// API keys created or revoked.
    pub keys: BTreeSet<Uuid>,
    /// An event that may change many subjects at once (a retention purge): reload
    /// the whole business.
    pub everything: bool,
}

/// The subjects and keys touched by events `(after, upto]` of a business.
pub fn touched_since(
    conn: &mut DbConnection,
    business_id: Uuid,
    after: i64,
    upto: i64,
) -> Result<Touched, StoreError> {
    let rows: Vec<(String, Option<String>, String)> = audit_events::table
        .filter(audit_events::business_id.eq(business_id.to_string()))
        .filter(audit_events::seq.gt(after))
        .filter(audit_events::seq.le(upto))
        .select((
            audit_events::event_type,
            audit_events::subject_id,
            audit_events::data,
        ))
        .load(conn)?;
    let mut touched = Touched::default();
    for (event_type, subject_id, data) in rows {
        if let Some(subject_id) = subject_id {
            touched.subjects.insert(parse_id(&subject_id)?);
        }
        match event_type.as_str() {
            "key.created" | "key.revoked" => {
                let data: serde_json::Value = serde_json::from_str(&data)
                    .map_err(|_| StoreError::Corrupt("audit_events.data".into()))?;
                if let Some(id) = data["key_id"]
                    .as_str()
                    .and_then(|s| Uuid::try_parse(s).ok())
                {
                    touched.keys.insert(id);
                }
            }
            "retention.purge" => touched.everything = true,
            _ => {}
        }
    }
    Ok(touched)
}

/// The current histories of these subjects, by pseudonym. A subject erased since
/// is found by its erasure receipt: its history is then only the suppression marker
/// (or nothing, when the policy keeps none).
pub fn histories_of_subjects(
    conn: &mut DbConnection,
    business_id: Uuid,
    subject_ids: &BTreeSet<Uuid>,
) -> Result<Vec<([u8; 32], SubjectHistory)>, StoreError> {
    let business = business_id.to_string();
    let mut pseudonyms: BTreeSet<[u8; 32]> = BTreeSet::new();
    let ids: Vec<String> = subject_ids.iter().map(Uuid::to_string).collect();
    for chunk in ids.chunks(900) {
        // By primary key only, the business checked here: with `business_id = ?`
        // in the query, SQLite (no statistics) may walk the business's whole
        // (business_id, pseudonym) index instead, making every catch-up cost as
        // much as the business has subjects.
        let live: Vec<Vec<u8>> = subjects::table
            .filter(subjects::id.eq_any(chunk))
            .select((subjects::business_id, subjects::pseudonym))
            .load::<(String, Vec<u8>)>(conn)?
            .into_iter()
            .filter(|(owner, _)| *owner == business)
            .map(|(_, pseudonym)| pseudonym)
            .collect();
        let erased: Vec<Vec<u8>> = erasures::table
            .filter(erasures::business_id.eq(&business))
            .filter(erasures::subject_id.eq_any(chunk))
            .select(erasures::pseudonym)
            .load(conn)?;
        for pseudonym in live.iter().chain(&erased) {
            pseudonyms.insert(pseudonym_array(pseudonym)?);
        }
    }
    let pseudonyms: Vec<[u8; 32]> = pseudonyms.into_iter().collect();
    let mut histories = histories_by_pseudonym(conn, business_id, &pseudonyms)?;
    Ok(pseudonyms
        .into_iter()
        .map(|p| {
            let history = histories.remove(&p).unwrap_or_default();
            (p, history)
        })
        .collect())
}

fn pseudonym_array(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("subjects.pseudonym".into()))
}

impl Store {
    /// Runs `f` in a read-only transaction that sees one committed state of the
    /// database throughout (PostgreSQL: REPEATABLE READ; SQLite: a read
    /// transaction, which in WAL mode is a snapshot).
    pub fn read_snapshot<T>(
        conn: &mut DbConnection,
        f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        use diesel::connection::SimpleConnection;
        let postgres = matches!(conn, DbConnection::Postgres(_));
        conn.transaction(|conn| {
            if postgres {
                // Must be the transaction's first statement.
                conn.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
            }
            f(conn)
        })
    }
}
