//! Bulk import of legacy opt-ins (SPEC section 8), the write side. Each row
//! takes the steps of `POST /v1/opt-ins` ([`Ledger::record_opt_in`](super::Ledger::record_opt_in)): the erasure
//! suppression ([`refuse_if_erased`]), the subject found by its pseudonym or
//! created, the fact with its sealed evidence and its audit event
//! ([`plan_opt_in`]); many rows to a transaction, and the import's progress is
//! written in that same transaction, so that `--resume` continues after exactly
//! the last committed row. Reading and validating the file is the CLI's job
//! (`crate::import`).
//!
//! What is different is only where the work is done, for speed (issue 12):
//! - Off the writing thread, [`ImportPreparer::prepare`] does what needs no
//!   database: the pseudonym, and a subject to create should the number have
//!   none yet (a fresh id and data key, the key wrapped, the number and the
//!   evidence sealed under it).
//! - In the transaction, the batch's erasures and existing subjects are looked
//!   up with one query each; a row whose number has a subject (stored, or made
//!   by an earlier row of the batch) drops its prepared subject and seals its
//!   evidence under that subject's key, exactly as `record_opt_in` does.
//! - The batch's subjects, facts and audit events are inserted many rows to a
//!   statement, in that order, in the same transaction as the progress.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use uuid::Uuid;

use super::record::{RecordOptIn, plan_opt_in, refuse_if_erased, sealed_evidence};
use super::{FreshSubject, Keyring, Ledger, OpenSubject, open_found};
use crate::audit::NewEvent;
use crate::crypto::pseudonym::PseudonymKey;
use crate::domain::Actor;
use crate::policy::Policy;
use crate::store::channels::{self as progress_rows, ImportProgress};
use crate::store::ledger as store_rows;
use crate::store::{DbConnection, StoreError};

/// Why a row that passed validation was not imported.
pub const COLLECTED_BEFORE_ERASURE: &str = "collected_before_erasure";

/// A valid row, made ready for the write by [`ImportPreparer::prepare`].
pub struct PreparedOptIn {
    /// The row's line in the file.
    pub line: u64,
    command: RecordOptIn,
    pseudonym: [u8; 32],
    /// The subject the row creates if its number has none.
    fresh: FreshSubject,
    /// The evidence sealed under `fresh`'s data key.
    fresh_evidence: Vec<u8>,
}

/// Prepares the rows of one business's import, on any thread.
pub struct ImportPreparer {
    keys: Arc<Keyring>,
    business_id: Uuid,
    pseudonyms: PseudonymKey,
}

impl ImportPreparer {
    /// The work of a row that needs no database.
    pub fn prepare(&self, line: u64, command: RecordOptIn) -> Result<PreparedOptIn, StoreError> {
        let pseudonym = self.pseudonyms.pseudonym(&command.phone);
        let fresh = FreshSubject::new(&self.keys, self.business_id, &command.phone);
        let fresh_evidence = fresh.seal(
            self.business_id,
            "evidence",
            &super::record::evidence_json(&command.evidence)?,
        );
        Ok(PreparedOptIn {
            line,
            command,
            pseudonym,
            fresh,
            fresh_evidence,
        })
    }
}

/// One batch of an import.
pub struct ImportBatch<'a> {
    pub business_id: Uuid,
    pub policy: &'a Policy,
    /// The SHA-256 (hex) of the file, which names the import.
    pub file_hash: &'a str,
    /// Valid rows, in file order.
    pub rows: Vec<PreparedOptIn>,
    /// The progress to record once this batch is committed (its rejects by
    /// validation already counted; the write's own rejects are added).
    pub progress: ImportProgress,
}

/// What a batch wrote, for its transaction to finish.
struct Appended {
    /// Lines refused by the write path (consent collected before an erasure).
    refused: Vec<u64>,
    events: Vec<NewEvent>,
}

/// Appends the batch's opt-ins inside a write recorded at `now` (see the module
/// documentation).
fn append_opt_ins(
    conn: &mut DbConnection,
    keys: &Keyring,
    policy: &Policy,
    business_id: Uuid,
    rows: Vec<PreparedOptIn>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Appended, StoreError> {
    let all: Vec<Vec<u8>> = rows.iter().map(|row| row.pseudonym.to_vec()).collect();
    let erased = store_rows::latest_erasures(conn, business_id, &all)?;
    let mut stored = store_rows::find_subjects(conn, business_id, &all)?;
    // Subjects opened or created by this batch's rows so far: a number that
    // comes again gets its next fact on the same subject.
    let mut opened: HashMap<[u8; 32], OpenSubject> = HashMap::with_capacity(rows.len());
    let mut subjects = Vec::with_capacity(rows.len());
    let mut facts = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    let mut refused = Vec::new();
    for row in rows {
        let erased_at = erased.get(row.pseudonym.as_slice()).copied();
        match refuse_if_erased(&row.command, now, erased_at) {
            Ok(()) => {}
            Err(StoreError::Conflict(COLLECTED_BEFORE_ERASURE)) => {
                refused.push(row.line);
                continue;
            }
            Err(e) => return Err(e),
        }
        let (subject_id, evidence) = match opened.entry(row.pseudonym) {
            Entry::Occupied(known) => {
                let subject = known.get();
                let evidence = sealed_evidence(subject, business_id, &row.command.evidence)?;
                (subject.id, evidence)
            }
            Entry::Vacant(slot) => match stored.remove(row.pseudonym.as_slice()) {
                Some(found) => {
                    let subject = open_found(keys, business_id, found)?;
                    let evidence = sealed_evidence(&subject, business_id, &row.command.evidence)?;
                    (slot.insert(subject).id, evidence)
                }
                None => {
                    let (subject, new) = row.fresh.create(business_id, &row.pseudonym, now);
                    subjects.push(new);
                    (slot.insert(subject).id, row.fresh_evidence)
                }
            },
        };
        let planned = plan_opt_in(policy, business_id, subject_id, &row.command, evidence, now);
        facts.push(planned.fact);
        events.push(planned.event);
    }
    store_rows::insert_subjects(conn, &subjects)?;
    store_rows::insert_facts(conn, &facts)?;
    Ok(Appended { refused, events })
}

impl Ledger {
    /// What prepares rows of an import into `business_id` off the writing thread.
    pub fn import_preparer(&self, business_id: Uuid) -> ImportPreparer {
        ImportPreparer {
            keys: self.keys.clone(),
            business_id,
            pseudonyms: self.keys.pseudonym_key(business_id),
        }
    }

    /// Writes one batch in one transaction; returns the lines refused by the
    /// write path itself (consent collected before the number was erased) and
    /// the progress as committed.
    pub fn import_batch_blocking(
        &self,
        conn: &mut DbConnection,
        batch: ImportBatch<'_>,
    ) -> Result<(Vec<u64>, ImportProgress), StoreError> {
        let ImportBatch {
            business_id,
            policy,
            file_hash,
            rows,
            progress,
        } = batch;
        let lines: Vec<u64> = rows.iter().map(|row| row.line).collect();
        let keys = self.keys.clone();
        let written =
            self.writer
                .write_unbatched_blocking(conn, business_id, Actor::Cli, |conn, now| {
                    let Appended { refused, events } =
                        append_opt_ins(conn, &keys, policy, business_id, rows, now)?;
                    if events.is_empty() {
                        // Nothing written: the progress is saved on its own below.
                        return Err(StoreError::Conflict("nothing_imported"));
                    }
                    let progress = ImportProgress {
                        imported: progress.imported + events.len() as u64,
                        rejected: progress.rejected + refused.len() as u64,
                        ..progress
                    };
                    progress_rows::save_import_progress(
                        conn,
                        business_id,
                        file_hash,
                        progress,
                        now,
                    )?;
                    Ok(((refused, progress), events))
                });
        match written {
            Err(StoreError::Conflict("nothing_imported")) => {
                let progress = ImportProgress {
                    rejected: progress.rejected + lines.len() as u64,
                    ..progress
                };
                self.save_import_progress_blocking(conn, business_id, file_hash, progress)?;
                Ok((lines, progress))
            }
            other => other,
        }
    }

    /// Records progress without writing anything else (a batch of rejects only).
    pub fn save_import_progress_blocking(
        &self,
        conn: &mut DbConnection,
        business_id: Uuid,
        file_hash: &str,
        progress: ImportProgress,
    ) -> Result<(), StoreError> {
        let now = self.store.clock().now();
        self.store.transaction(conn, |conn| {
            progress_rows::save_import_progress(conn, business_id, file_hash, progress, now)
        })
    }

    /// The committed progress of an import of the file with this hash.
    pub fn import_progress_blocking(
        &self,
        conn: &mut DbConnection,
        business_id: Uuid,
        file_hash: &str,
    ) -> Result<Option<ImportProgress>, StoreError> {
        progress_rows::import_progress(conn, business_id, file_hash)
    }
}
