//! The consent ledger's rows: subjects (found by keyed hash), append-only facts,
//! and Idempotency-Key records. Everything personal arrives here already sealed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::rows::{FactRow, IdempotencyRow, NewSubjectRow, parse_id, to_naive};
use super::schema::{facts, idempotency_keys, subjects};
use super::{DbConnection, StoreError};
use crate::domain::history::SubjectHistory;

/// The kinds of fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactKind {
    OptIn,
    Confirmation,
    Revocation,
    Restoration,
    Block,
    Unblock,
    Inbound,
}

impl FactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FactKind::OptIn => "opt_in",
            FactKind::Confirmation => "confirmation",
            FactKind::Revocation => "revocation",
            FactKind::Restoration => "restoration",
            FactKind::Block => "block",
            FactKind::Unblock => "unblock",
            FactKind::Inbound => "inbound",
        }
    }
}

/// A fact to append.
#[derive(Debug, Clone)]
pub struct NewFact {
    pub id: Uuid,
    pub business_id: Uuid,
    pub subject_id: Uuid,
    pub kind: FactKind,
    pub effective_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// `None`: not applicable, or (revocations) every category.
    pub categories: Option<Vec<String>>,
    pub opt_in_id: Option<Uuid>,
    pub channel: Option<String>,
    pub entry_point: Option<String>,
    /// Revocations: from an opt-out keyword. Opt-ins: confirmed on record (keyword).
    pub by_keyword: bool,
    /// Sealed evidence JSON.
    pub evidence: Option<Vec<u8>>,
}

impl NewFact {
    /// A fact with a fresh id and nothing optional set; callers add what applies
    /// with struct update syntax.
    pub fn new(
        kind: FactKind,
        business_id: Uuid,
        subject_id: Uuid,
        effective_at: DateTime<Utc>,
        recorded_at: DateTime<Utc>,
    ) -> NewFact {
        NewFact {
            id: Uuid::now_v7(),
            business_id,
            subject_id,
            kind,
            effective_at,
            recorded_at,
            categories: None,
            opt_in_id: None,
            channel: None,
            entry_point: None,
            by_keyword: false,
            evidence: None,
        }
    }
}

/// A subject as the write path needs it.
#[derive(Debug, Clone)]
pub struct SubjectKeys {
    pub id: Uuid,
    /// The wrapped data key; `None` once erased.
    pub wrapped_key: Option<Vec<u8>>,
}

/// The subject with this pseudonym in this business, if any.
pub fn find_subject(
    conn: &mut DbConnection,
    business_id: Uuid,
    pseudonym: &[u8; 32],
) -> Result<Option<SubjectKeys>, StoreError> {
    let row = subjects::table
        .filter(subjects::business_id.eq(business_id.to_string()))
        .filter(subjects::pseudonym.eq(pseudonym.as_slice()))
        .select((subjects::id, subjects::wrapped_key))
        .first::<(String, Option<Vec<u8>>)>(conn)
        .optional()?;
    row.map(|(id, wrapped_key)| {
        Ok(SubjectKeys {
            id: parse_id(&id)?,
            wrapped_key,
        })
    })
    .transpose()
}

/// The subjects of these pseudonyms (of this business) that exist, by
/// pseudonym: one query for a batch (the bulk import).
pub fn find_subjects(
    conn: &mut DbConnection,
    business_id: Uuid,
    pseudonyms: &[Vec<u8>],
) -> Result<std::collections::HashMap<Vec<u8>, SubjectKeys>, StoreError> {
    let mut found = std::collections::HashMap::new();
    for chunk in pseudonyms.chunks(500) {
        let rows = subjects::table
            .filter(subjects::business_id.eq(business_id.to_string()))
            .filter(subjects::pseudonym.eq_any(chunk))
            .select((subjects::pseudonym, subjects::id, subjects::wrapped_key))
            .load::<(Vec<u8>, String, Option<Vec<u8>>)>(conn)?;
        for (pseudonym, id, wrapped_key) in rows {
            found.insert(
                pseudonym,
                SubjectKeys {
                    id: parse_id(&id)?,
                    wrapped_key,
                },
            );
        }
    }
    Ok(found)
}

/// The latest erasure time of each of these pseudonyms that was ever erased:
/// one query for a batch (the bulk import).
pub fn latest_erasures(
    conn: &mut DbConnection,
    business_id: Uuid,
    pseudonyms: &[Vec<u8>],
) -> Result<std::collections::HashMap<Vec<u8>, DateTime<Utc>>, StoreError> {
    use super::schema::erasures;
    let mut latest: std::collections::HashMap<Vec<u8>, DateTime<Utc>> =
        std::collections::HashMap::new();
    for chunk in pseudonyms.chunks(500) {
        let rows = erasures::table
            .filter(erasures::business_id.eq(business_id.to_string()))
            .filter(erasures::pseudonym.eq_any(chunk))
            .select((erasures::pseudonym, erasures::erased_at))
            .load::<(Vec<u8>, chrono::NaiveDateTime)>(conn)?;
        for (pseudonym, at) in rows {
            let at = super::rows::from_naive(at);
            let entry = latest.entry(pseudonym).or_insert(at);
            if at > *entry {
                *entry = at;
            }
        }
    }
    Ok(latest)
}

/// The subjects and the latest erasure times of these numbers (business,
/// pseudonym), across businesses: a whole batch of writes looked up at once.
/// Each number is probed by its own pair: on PostgreSQL one statement joins
/// the wanted pairs (one round trip); on SQLite (in process) two prepared
/// statements per number. An `IN` over businesses and another over pseudonyms
/// would probe every business with every pseudonym (16 businesses, 64 numbers:
/// 1,024 index probes instead of 64).
#[allow(clippy::type_complexity)]
pub fn subjects_and_erasures(
    conn: &mut DbConnection,
    wanted: &[(Uuid, [u8; 32])],
) -> Result<
    (
        HashMap<(Uuid, [u8; 32]), SubjectKeys>,
        HashMap<(Uuid, [u8; 32]), DateTime<Utc>>,
    ),
    StoreError,
> {
    use super::schema::erasures;
    let mut subjects = HashMap::new();
    let mut erased: HashMap<(Uuid, [u8; 32]), DateTime<Utc>> = HashMap::new();
    match conn {
        DbConnection::Postgres(pg) => {
            use diesel::sql_types::{Array, Binary, Bytea, Nullable, Text, Timestamp};
            #[derive(QueryableByName)]
            struct SubjectOf {
                #[diesel(sql_type = Text)]
                business_id: String,
                #[diesel(sql_type = Binary)]
                pseudonym: Vec<u8>,
                #[diesel(sql_type = Text)]
                id: String,
                #[diesel(sql_type = Nullable<Binary>)]
                wrapped_key: Option<Vec<u8>>,
            }
            #[derive(QueryableByName)]
            struct ErasureOf {
                #[diesel(sql_type = Text)]
                business_id: String,
                #[diesel(sql_type = Binary)]
                pseudonym: Vec<u8>,
                #[diesel(sql_type = Timestamp)]
                erased_at: chrono::NaiveDateTime,
            }
            let mut found = |business_id: &str,
                             pseudonym: &[u8],
                             subject: Option<(String, Option<Vec<u8>>)>,
                             erased_at: Option<chrono::NaiveDateTime>|
             -> Result<(), StoreError> {
                let Ok(pseudonym) = <[u8; 32]>::try_from(pseudonym) else {
                    return Ok(());
                };
                let pair = (parse_id(business_id)?, pseudonym);
                if let Some((id, wrapped_key)) = subject {
                    let id = parse_id(&id)?;
                    subjects.insert(pair, SubjectKeys { id, wrapped_key });
                }
                if let Some(at) = erased_at {
                    let at = super::rows::from_naive(at);
                    let latest = erased.entry(pair).or_insert(at);
                    *latest = (*latest).max(at);
                }
                Ok(())
            };
            for chunk in wanted.chunks(LOOKUP_CHUNK) {
                let businesses: Vec<String> = chunk.iter().map(|(b, _)| b.to_string()).collect();
                let pseudonyms: Vec<Vec<u8>> = chunk.iter().map(|(_, p)| p.to_vec()).collect();
                let rows: Vec<SubjectOf> = diesel::sql_query(
                    "SELECT s.business_id, s.pseudonym, s.id, s.wrapped_key \
                     FROM subjects AS s \
                     JOIN unnest($1, $2) AS w (business_id, pseudonym) \
                     ON s.business_id = w.business_id AND s.pseudonym = w.pseudonym",
                )
                .bind::<Array<Text>, _>(&businesses)
                .bind::<Array<Bytea>, _>(&pseudonyms)
                .load(pg)?;
                for row in rows {
                    found(
                        &row.business_id,
                        &row.pseudonym,
                        Some((row.id, row.wrapped_key)),
                        None,
                    )?;
                }
                let rows: Vec<ErasureOf> = diesel::sql_query(
                    "SELECT e.business_id, e.pseudonym, max(e.erased_at) AS erased_at \
                     FROM erasures AS e \
                     JOIN unnest($1, $2) AS w (business_id, pseudonym) \
                     ON e.business_id = w.business_id AND e.pseudonym = w.pseudonym \
                     GROUP BY e.business_id, e.pseudonym",
                )
                .bind::<Array<Text>, _>(&businesses)
                .bind::<Array<Bytea>, _>(&pseudonyms)
                .load(pg)?;
                for row in rows {
                    found(&row.business_id, &row.pseudonym, None, Some(row.erased_at))?;
                }
            }
        }
        DbConnection::Sqlite(_) => {
            // Two statements per number, each the same text every time, so that
            // they stay prepared: diesel prepares an `IN` list afresh at every use
            // (its length varies), and parsing cost the writer more than the
            // probes themselves (BENCHMARKS.md, writes, session 12).
            for (business_id, pseudonym) in wanted {
                let pair = (*business_id, *pseudonym);
                if let Some(subject) = find_subject(conn, *business_id, pseudonym)? {
                    subjects.insert(pair, subject);
                }
                let erased_at = erasures::table
                    .filter(erasures::business_id.eq(business_id.to_string()))
                    .filter(erasures::pseudonym.eq(pseudonym.as_slice()))
                    .select(diesel::dsl::max(erasures::erased_at))
                    .first::<Option<chrono::NaiveDateTime>>(conn)?;
                if let Some(at) = erased_at {
                    erased.insert(pair, super::rows::from_naive(at));
                }
            }
        }
    }
    Ok((subjects, erased))
}

/// A subject to insert: its data key already wrapped and its number already
/// sealed (by the ledger).
#[derive(Debug, Clone)]
pub struct NewSubject {
    pub id: Uuid,
    pub business_id: Uuid,
    pub pseudonym: [u8; 32],
    pub wrapped_key: Vec<u8>,
    pub sealed_phone: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

impl From<&NewSubject> for NewSubjectRow {
    fn from(subject: &NewSubject) -> Self {
        NewSubjectRow {
            id: subject.id.to_string(),
            business_id: subject.business_id.to_string(),
            pseudonym: subject.pseudonym.to_vec(),
            wrapped_key: Some(subject.wrapped_key.clone()),
            phone: Some(subject.sealed_phone.clone()),
            created_at: to_naive(subject.created_at),
        }
    }
}

impl From<&NewFact> for FactRow {
    fn from(fact: &NewFact) -> Self {
        FactRow {
            id: fact.id.to_string(),
            business_id: fact.business_id.to_string(),
            subject_id: fact.subject_id.to_string(),
            kind: fact.kind.as_str().to_owned(),
            effective_at: to_naive(fact.effective_at),
            recorded_at: to_naive(fact.recorded_at),
            categories: fact.categories.as_ref().map(|c| c.join(" ")),
            opt_in_id: fact.opt_in_id.map(|id| id.to_string()),
            channel: fact.channel.clone(),
            entry_point: fact.entry_point.clone(),
            by_keyword: fact.by_keyword,
            evidence: fact.evidence.clone(),
        }
    }
}

/// Inserts a new subject. Runs under the business's write lock, so a find that
/// came back empty cannot race another insert of the same pseudonym.
pub fn insert_subject(conn: &mut DbConnection, subject: &NewSubject) -> Result<(), StoreError> {
    insert_subjects(conn, std::slice::from_ref(subject))
}

/// Inserts new subjects, many to a statement (the bulk import).
pub fn insert_subjects(conn: &mut DbConnection, new: &[NewSubject]) -> Result<(), StoreError> {
    let rows: Vec<NewSubjectRow> = new.iter().map(NewSubjectRow::from).collect();
    super::insert_many!(conn, subjects::table, rows)?;
    Ok(())
}

/// Appends a fact.
pub fn insert_fact(conn: &mut DbConnection, fact: &NewFact) -> Result<(), StoreError> {
    insert_facts(conn, std::slice::from_ref(fact))
}

/// Appends facts, many to a statement (the bulk import).
pub fn insert_facts(conn: &mut DbConnection, new: &[NewFact]) -> Result<(), StoreError> {
    let rows: Vec<FactRow> = new.iter().map(FactRow::from).collect();
    super::insert_many!(conn, facts::table, rows)?;
    Ok(())
}

/// Every fact of one subject, as the decision reads them.
pub fn history(conn: &mut DbConnection, subject_id: Uuid) -> Result<SubjectHistory, StoreError> {
    let rows: Vec<FactRow> = facts::table
        .filter(facts::subject_id.eq(subject_id.to_string()))
        .select(FactRow::as_select())
        .load(conn)?;
    Ok(SubjectHistory::new(
        rows.iter()
            .map(FactRow::to_fact)
            .collect::<Result<_, _>>()?,
    ))
}

/// One fact by id within a business (e.g. the opt-in a confirmation names).
pub fn fact(conn: &mut DbConnection, business_id: Uuid, id: Uuid) -> Result<FactRow, StoreError> {
    Ok(facts::table
        .filter(facts::id.eq(id.to_string()))
        .filter(facts::business_id.eq(business_id.to_string()))
        .select(FactRow::as_select())
        .first(conn)?)
}

/// Rows per query when looking up many subjects at once (well under both
/// backends' bind-parameter limits).
const LOOKUP_CHUNK: usize = 900;

/// The histories of the subjects with these pseudonyms; a pseudonym with no subject
/// is absent from the map (it has no facts). One round trip per chunk.
pub fn histories_by_pseudonym(
    conn: &mut DbConnection,
    business_id: Uuid,
    pseudonyms: &[[u8; 32]],
) -> Result<HashMap<[u8; 32], SubjectHistory>, StoreError> {
    let mut out: HashMap<[u8; 32], SubjectHistory> = HashMap::with_capacity(pseudonyms.len());
    for chunk in pseudonyms.chunks(LOOKUP_CHUNK) {
        let keys: Vec<&[u8]> = chunk.iter().map(|p| p.as_slice()).collect();
        let rows: Vec<(Vec<u8>, Option<FactRow>)> = subjects::table
            .left_join(facts::table)
            .filter(subjects::business_id.eq(business_id.to_string()))
            .filter(subjects::pseudonym.eq_any(keys))
            .select((subjects::pseudonym, Option::<FactRow>::as_select()))
            .load(conn)?;
        for (pseudonym, row) in rows {
            let key: [u8; 32] = pseudonym
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("subjects.pseudonym".into()))?;
            let history = out.entry(key).or_default();
            if let Some(row) = row {
                history.facts.push(row.to_fact()?);
            }
        }
    }
    // An erased number keeps no facts, only its suppression marker: the decision
    // answers `suppressed` until fresh consent comes.
    for (pseudonym, erased_at) in suppression_markers(conn, business_id, pseudonyms)? {
        out.entry(pseudonym)
            .or_default()
            .facts
            .push(crate::domain::history::Fact::Erased {
                at: erased_at,
                recorded_at: erased_at,
            });
    }
    Ok(out)
}

/// A stored first response to an idempotent write.
#[derive(Debug, Clone)]
pub struct IdempotentResponse {
    pub request_hash: Vec<u8>,
    pub status: u16,
    pub body: String,
}

pub fn idempotent_response(
    conn: &mut DbConnection,
    business_id: Uuid,
    key: &str,
) -> Result<Option<IdempotentResponse>, StoreError> {
    let row = idempotency_keys::table
        .find((business_id.to_string(), key))
        .select((
            idempotency_keys::request_hash,
            idempotency_keys::status,
            idempotency_keys::response,
        ))
        .first::<(Vec<u8>, i32, String)>(conn)
        .optional()?;
    Ok(row.map(|(request_hash, status, body)| IdempotentResponse {
        request_hash,
        status: u16::try_from(status).unwrap_or(500),
        body,
    }))
}

/// The stored first responses of these Idempotency-Keys, by business and key:
/// one query for a whole batch of writes (keys of other businesses that happen
/// to match are filtered out here).
pub fn idempotent_responses(
    conn: &mut DbConnection,
    wanted: &[(Uuid, String)],
) -> Result<HashMap<(Uuid, String), IdempotentResponse>, StoreError> {
    let mut found = HashMap::new();
    for chunk in wanted.chunks(LOOKUP_CHUNK / 2) {
        let mut businesses: Vec<String> = chunk.iter().map(|(b, _)| b.to_string()).collect();
        businesses.sort_unstable();
        businesses.dedup();
        let keys: Vec<&str> = chunk.iter().map(|(_, k)| k.as_str()).collect();
        let rows = idempotency_keys::table
            .filter(idempotency_keys::business_id.eq_any(businesses))
            .filter(idempotency_keys::key.eq_any(keys))
            .select((
                idempotency_keys::business_id,
                idempotency_keys::key,
                idempotency_keys::request_hash,
                idempotency_keys::status,
                idempotency_keys::response,
            ))
            .load::<(String, String, Vec<u8>, i32, String)>(conn)?;
        for (business_id, key, request_hash, status, body) in rows {
            found.insert(
                (parse_id(&business_id)?, key),
                IdempotentResponse {
                    request_hash,
                    status: u16::try_from(status).unwrap_or(500),
                    body,
                },
            );
        }
    }
    let wanted: std::collections::HashSet<&(Uuid, String)> = wanted.iter().collect();
    found.retain(|pair, _| wanted.contains(pair));
    Ok(found)
}

/// A first response to store under its Idempotency-Key.
#[derive(Debug, Clone)]
pub struct NewIdempotentResponse {
    pub business_id: Uuid,
    pub key: String,
    pub response: IdempotentResponse,
    pub created_at: DateTime<Utc>,
}

/// Stores first responses, many to a statement (a batch of writes).
pub fn insert_idempotent_responses(
    conn: &mut DbConnection,
    new: &[NewIdempotentResponse],
) -> Result<(), StoreError> {
    let rows: Vec<IdempotencyRow> = new
        .iter()
        .map(|n| IdempotencyRow {
            business_id: n.business_id.to_string(),
            key: n.key.clone(),
            request_hash: n.response.request_hash.clone(),
            status: i32::from(n.response.status),
            response: n.response.body.clone(),
            created_at: to_naive(n.created_at),
        })
        .collect();
    super::insert_many!(conn, idempotency_keys::table, rows)?;
    Ok(())
}

pub fn insert_idempotent_response(
    conn: &mut DbConnection,
    business_id: Uuid,
    key: &str,
    response: &IdempotentResponse,
    created_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::business_id.eq(business_id.to_string()),
            idempotency_keys::key.eq(key),
            idempotency_keys::request_hash.eq(&response.request_hash),
            idempotency_keys::status.eq(i32::from(response.status)),
            idempotency_keys::response.eq(&response.body),
            idempotency_keys::created_at.eq(to_naive(created_at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The wrapped data key of a subject of this business.
pub fn subject_keys(
    conn: &mut DbConnection,
    business_id: Uuid,
    subject_id: Uuid,
) -> Result<SubjectKeys, StoreError> {
    let wrapped_key = subjects::table
        .filter(subjects::id.eq(subject_id.to_string()))
        .filter(subjects::business_id.eq(business_id.to_string()))
        .select(subjects::wrapped_key)
        .first::<Option<Vec<u8>>>(conn)?;
    Ok(SubjectKeys {
        id: subject_id,
        wrapped_key,
    })
}

/// Whether an opt-in already has a confirmation.
pub fn is_confirmed(conn: &mut DbConnection, opt_in_id: Uuid) -> Result<bool, StoreError> {
    use diesel::dsl::exists;
    Ok(diesel::select(exists(
        facts::table
            .filter(facts::opt_in_id.eq(opt_in_id.to_string()))
            .filter(facts::kind.eq(FactKind::Confirmation.as_str())),
    ))
    .get_result(conn)?)
}

/// An erasure receipt (and, when `suppress`, the suppression marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRecord {
    pub id: Uuid,
    pub subject_id: Uuid,
    pub erased_at: DateTime<Utc>,
    pub request_reference: Option<String>,
    pub suppress: bool,
}

/// The latest erasure of the number with this pseudonym in this business.
pub fn latest_erasure(
    conn: &mut DbConnection,
    business_id: Uuid,
    pseudonym: &[u8; 32],
) -> Result<Option<ErasureRecord>, StoreError> {
    use super::schema::erasures;
    let row = erasures::table
        .filter(erasures::business_id.eq(business_id.to_string()))
        .filter(erasures::pseudonym.eq(pseudonym.as_slice()))
        .order(erasures::erased_at.desc())
        .select((
            erasures::id,
            erasures::subject_id,
            erasures::erased_at,
            erasures::request_reference,
            erasures::suppress,
        ))
        .first::<(String, String, chrono::NaiveDateTime, Option<String>, bool)>(conn)
        .optional()?;
    row.map(|(id, subject_id, erased_at, request_reference, suppress)| {
        Ok(ErasureRecord {
            id: parse_id(&id)?,
            subject_id: parse_id(&subject_id)?,
            erased_at: super::rows::from_naive(erased_at),
            request_reference,
            suppress,
        })
    })
    .transpose()
}

/// Erases a subject: its facts (with their sealed evidence) and its row (with the
/// wrapped data key and the sealed number) are deleted, and the receipt is kept.
/// Runs inside the business's write transaction.
pub fn erase_subject(
    conn: &mut DbConnection,
    business_id: Uuid,
    subject_id: Uuid,
    pseudonym: &[u8; 32],
    receipt: &ErasureRecord,
) -> Result<usize, StoreError> {
    use super::schema::erasures;
    let deleted_facts = diesel::delete(
        facts::table
            .filter(facts::subject_id.eq(subject_id.to_string()))
            .filter(facts::business_id.eq(business_id.to_string())),
    )
    .execute(conn)?;
    diesel::delete(
        subjects::table
            .filter(subjects::id.eq(subject_id.to_string()))
            .filter(subjects::business_id.eq(business_id.to_string())),
    )
    .execute(conn)?;
    diesel::insert_into(erasures::table)
        .values((
            erasures::id.eq(receipt.id.to_string()),
            erasures::business_id.eq(business_id.to_string()),
            erasures::pseudonym.eq(pseudonym.to_vec()),
            erasures::subject_id.eq(subject_id.to_string()),
            erasures::erased_at.eq(to_naive(receipt.erased_at)),
            erasures::request_reference.eq(receipt.request_reference.clone()),
            erasures::suppress.eq(receipt.suppress),
        ))
        .execute(conn)?;
    Ok(deleted_facts)
}

/// Every fact row of a subject, oldest first (for exports).
pub fn fact_rows(conn: &mut DbConnection, subject_id: Uuid) -> Result<Vec<FactRow>, StoreError> {
    Ok(facts::table
        .filter(facts::subject_id.eq(subject_id.to_string()))
        .order((facts::effective_at.asc(), facts::recorded_at.asc()))
        .select(FactRow::as_select())
        .load(conn)?)
}

/// A subject's stored row: sealed number, wrapped data key, first seen.
#[derive(Debug, Clone)]
pub struct SubjectRow {
    pub sealed_phone: Option<Vec<u8>>,
    pub wrapped_key: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

/// A subject's sealed number and wrapped key, and when it was first seen.
pub fn subject_row(
    conn: &mut DbConnection,
    business_id: Uuid,
    subject_id: Uuid,
) -> Result<SubjectRow, StoreError> {
    let (sealed_phone, wrapped_key, created_at) = subjects::table
        .filter(subjects::id.eq(subject_id.to_string()))
        .filter(subjects::business_id.eq(business_id.to_string()))
        .select((subjects::phone, subjects::wrapped_key, subjects::created_at))
        .first::<(Option<Vec<u8>>, Option<Vec<u8>>, chrono::NaiveDateTime)>(conn)?;
    Ok(SubjectRow {
        sealed_phone,
        wrapped_key,
        created_at: super::rows::from_naive(created_at),
    })
}

/// The suppression markers among these pseudonyms: pseudonym -> (erased_at, when
/// recorded). Only markers the policy keeps (`suppress`).
pub fn suppression_markers(
    conn: &mut DbConnection,
    business_id: Uuid,
    pseudonyms: &[[u8; 32]],
) -> Result<HashMap<[u8; 32], DateTime<Utc>>, StoreError> {
    use super::schema::erasures;
    let mut out = HashMap::new();
    for chunk in pseudonyms.chunks(LOOKUP_CHUNK) {
        let keys: Vec<&[u8]> = chunk.iter().map(|p| p.as_slice()).collect();
        let rows: Vec<(Vec<u8>, chrono::NaiveDateTime)> = erasures::table
            .filter(erasures::business_id.eq(business_id.to_string()))
            .filter(erasures::suppress.eq(true))
            .filter(erasures::pseudonym.eq_any(keys))
            .select((erasures::pseudonym, erasures::erased_at))
            .load(conn)?;
        for (pseudonym, at) in rows {
            if let Ok(key) = <[u8; 32]>::try_from(pseudonym.as_slice()) {
                let at = super::rows::from_naive(at);
                let entry = out.entry(key).or_insert(at);
                *entry = (*entry).max(at);
            }
        }
    }
    Ok(out)
}

/// What one retention run removed for one business.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionCounts {
    /// Inbound-message facts of windows closed longer ago than the policy keeps.
    pub closed_windows: usize,
    /// Opt-ins (and their confirmations) whose evidence was purged.
    pub evidence_purged: usize,
    /// Idempotency records past their 24 h.
    pub idempotency_records: usize,
}

impl RetentionCounts {
    pub fn total(&self) -> usize {
        self.closed_windows + self.evidence_purged + self.idempotency_records
    }
}

/// Deletes inbound facts received before `cutoff` (their windows are long closed).
pub fn purge_inbound_before(
    conn: &mut DbConnection,
    business_id: Uuid,
    cutoff: DateTime<Utc>,
) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        facts::table
            .filter(facts::business_id.eq(business_id.to_string()))
            .filter(facts::kind.eq(FactKind::Inbound.as_str()))
            .filter(facts::effective_at.lt(to_naive(cutoff))),
    )
    .execute(conn)?)
}

/// Opt-in facts of a business with evidence still held, collected before `cutoff`.
pub fn opt_ins_with_evidence_before(
    conn: &mut DbConnection,
    business_id: Uuid,
    cutoff: DateTime<Utc>,
) -> Result<Vec<FactRow>, StoreError> {
    Ok(facts::table
        .filter(facts::business_id.eq(business_id.to_string()))
        .filter(facts::kind.eq(FactKind::OptIn.as_str()))
        .filter(facts::evidence.is_not_null())
        .filter(facts::effective_at.lt(to_naive(cutoff)))
        .select(FactRow::as_select())
        .load(conn)?)
}

/// Removes the evidence of an opt-in and of its confirmations (the facts stay:
/// the decision still needs them).
pub fn purge_evidence(
    conn: &mut DbConnection,
    business_id: Uuid,
    opt_in_id: Uuid,
) -> Result<(), StoreError> {
    let id = opt_in_id.to_string();
    diesel::update(
        facts::table
            .filter(facts::business_id.eq(business_id.to_string()))
            .filter(facts::id.eq(&id).or(facts::opt_in_id.eq(&id))),
    )
    .set(facts::evidence.eq(None::<Vec<u8>>))
    .execute(conn)?;
    Ok(())
}

/// Deletes idempotency records created before `cutoff`.
pub fn purge_idempotency_before(
    conn: &mut DbConnection,
    business_id: Uuid,
    cutoff: DateTime<Utc>,
    channel_cutoff: DateTime<Utc>,
) -> Result<usize, StoreError> {
    // Keys of platform deliveries (`channel:` + a keyed digest of the platform's
    // message id) are kept longer: the platforms redeliver for days.
    let clients = diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::business_id.eq(business_id.to_string()))
            .filter(idempotency_keys::key.not_like("channel:%"))
            .filter(idempotency_keys::created_at.lt(to_naive(cutoff))),
    )
    .execute(conn)?;
    let deliveries = diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::business_id.eq(business_id.to_string()))
            .filter(idempotency_keys::key.like("channel:%"))
            .filter(idempotency_keys::created_at.lt(to_naive(channel_cutoff))),
    )
    .execute(conn)?;
    Ok(clients + deliveries)
}

/// Every business id with its policy name.
pub fn businesses_and_policies(conn: &mut DbConnection) -> Result<Vec<(Uuid, String)>, StoreError> {
    use super::schema::businesses;
    businesses::table
        .select((businesses::id, businesses::policy))
        .load::<(String, String)>(conn)?
        .into_iter()
        .map(|(id, policy)| Ok((parse_id(&id)?, policy)))
        .collect()
}
