//! Bulk import of legacy opt-ins (SPEC section 8), the write side: a batch of
//! validated opt-ins goes through the very same [`append_opt_in`] as
//! `POST /v1/opt-ins` (the erasure suppression, the fact, the sealed evidence,
//! the audit event), many to one transaction, and the import's progress is
//! written in that same transaction, so that `--resume` continues after exactly
//! the last committed row. Reading and validating the file is the CLI's job
//! (`crate::import`).

use uuid::Uuid;

use super::Ledger;
use super::record::{Known, RecordOptIn, append_opt_in};
use crate::domain::Actor;
use crate::policy::Policy;
use crate::store::channels::{self as progress_rows, ImportProgress};
use crate::store::ledger as store_rows;
use crate::store::{DbConnection, StoreError};

/// Why a row that passed validation was not imported.
pub const COLLECTED_BEFORE_ERASURE: &str = "collected_before_erasure";

/// One batch of an import.
pub struct ImportBatch<'a> {
    pub business_id: Uuid,
    pub policy: &'a Policy,
    /// The SHA-256 (hex) of the file, which names the import.
    pub file_hash: &'a str,
    /// Valid rows, with their line numbers.
    pub rows: Vec<(u64, RecordOptIn)>,
    /// The progress to record once this batch is committed (its rejects by
    /// validation already counted; the write's own rejects are added).
    pub progress: ImportProgress,
}

impl Ledger {
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
        let keys = self.keys.clone();
        let pseudonyms = keys.pseudonym_key(business_id);
        let written = self
            .store
            .write_blocking(conn, business_id, Actor::Cli, |conn, now| {
                let mut refused = Vec::new();
                let mut events = Vec::with_capacity(rows.len());
                // Two queries for the batch instead of two per row; a number that
                // comes twice in a batch is looked up again after its first row.
                let keyed: Vec<[u8; 32]> = rows
                    .iter()
                    .map(|(_, command)| pseudonyms.pseudonym(&command.phone))
                    .collect();
                let all: Vec<Vec<u8>> = keyed.iter().map(|p| p.to_vec()).collect();
                let erased = store_rows::latest_erasures(conn, business_id, &all)?;
                let mut subjects = store_rows::find_subjects(conn, business_id, &all)?;
                let mut seen = std::collections::HashSet::with_capacity(rows.len());
                for ((line, command), pseudonym) in rows.iter().zip(&keyed) {
                    let known = seen.insert(*pseudonym).then(|| Known {
                        erased_at: erased.get(pseudonym.as_slice()).copied(),
                        subject: subjects.remove(pseudonym.as_slice()),
                    });
                    match append_opt_in(
                        conn,
                        &keys,
                        policy,
                        business_id,
                        pseudonym,
                        command,
                        now,
                        known,
                    ) {
                        Ok((_, event)) => events.push(event),
                        Err(StoreError::Conflict(COLLECTED_BEFORE_ERASURE)) => refused.push(*line),
                        Err(e) => return Err(e),
                    }
                }
                if events.is_empty() {
                    // Nothing written: the progress is saved on its own below.
                    return Err(StoreError::Conflict("nothing_imported"));
                }
                let progress = ImportProgress {
                    imported: progress.imported + events.len() as u64,
                    rejected: progress.rejected + refused.len() as u64,
                    ..progress
                };
                progress_rows::save_import_progress(conn, business_id, file_hash, progress, now)?;
                Ok(((refused, progress), events))
            });
        match written {
            Err(StoreError::Conflict("nothing_imported")) => {
                let refused: Vec<u64> = rows.iter().map(|(line, _)| *line).collect();
                let progress = ImportProgress {
                    rejected: progress.rejected + refused.len() as u64,
                    ..progress
                };
                self.save_import_progress_blocking(conn, business_id, file_hash, progress)?;
                Ok((refused, progress))
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
