//! Data-subject rights (GDPR Art. 15, 17, 20): export everything held about a
//! number, and erase it by crypto-shredding (the data key is destroyed, so the
//! ciphertext the audit chain keeps can no longer be read, and the chain still
//! verifies).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit_view::{AuditEventView, ERASED};
use super::{Caller, Ledger, PolicyRef};
use crate::audit::{EventType, NewEvent};
use crate::crypto::envelope::{Aad, DataKey};
use crate::domain::phone::Phone;
use crate::policy::{Moment, decide};
use crate::store::audit::EventFilter;
use crate::store::ledger::{self as rows, ErasureRecord};
use crate::store::{DbConnection, IdempotencyRequest, Leftover, Store, StoreError, Written};

/// The identifier of the export format.
pub const EXPORT_FORMAT: &str = "consentgate.export/v1";

/// Everything held about one phone number for one business (GDPR Art. 15, 20).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubjectExport {
    /// Always `consentgate.export/v1`.
    pub format: String,
    pub generated_at: DateTime<Utc>,
    pub business: ExportBusiness,
    pub policy: PolicyRef,
    pub subject: ExportSubject,
    /// For every category of the policy, the answer a check would give now.
    pub current_state: Vec<CategoryState>,
    pub opt_ins: Vec<ExportOptIn>,
    pub revocations: Vec<ExportRevocation>,
    /// Opt-in keywords (START) and platform "resume" signals: each undid the
    /// keyword revocations of its categories before it.
    pub restorations: Vec<ExportRestoration>,
    /// Blocks and unblocks, oldest first.
    pub blocks: Vec<ExportBlock>,
    /// Customer-service windows opened by the person's messages (texts are never kept).
    pub windows: Vec<ExportWindow>,
    /// The audit events about this subject, personal fields decrypted.
    pub audit_events: Vec<AuditEventView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportBusiness {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportSubject {
    pub id: Uuid,
    /// The number, E.164.
    pub phone: String,
    /// When the service first recorded anything about it.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CategoryState {
    pub category: String,
    pub allowed: bool,
    pub reason: crate::policy::Reason,
    pub basis: Option<crate::policy::Basis>,
    pub window_expires_at: Option<DateTime<Utc>>,
}

/// What a fact's `evidence` in an export can be: the proof as recorded (an
/// object), `null` when none is held, or `"[erased]"` when it is held but can no
/// longer be opened (its subject's data key is gone).
///
/// `null` has `[purged]` semantics for opt-ins and confirmations, which always
/// carry evidence when recorded: the retention job (`consentgate retention run`,
/// the policy's `retention.revoked_evidence_days`) deleted the evidence of
/// consent revoked or expired long ago. The fact itself (when, which
/// categories, which channel) stays, and so does the audit event's own sealed
/// copy of the evidence until the number is erased. Revocations, restorations
/// and blocks recorded without evidence also export `null`.
pub fn evidence_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("the proof, as recorded")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Null)
                .description(Some(
                    "[purged]: none is held: purged by retention (the policy's \
                     `retention.revoked_evidence_days` after the consent was revoked or \
                     expired), or none was recorded for this fact",
                )),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([ERASED]))
                .description(Some(
                    "held, but can no longer be opened: its data key was destroyed",
                )),
        )
        .description(Some(
            "The proof (GDPR Art. 7(1)) as recorded; `null` when not held (purged by retention, \
             or never recorded for this fact); `\"[erased]\"` when it can no longer be opened.",
        ))
        .into()
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportOptIn {
    pub id: Uuid,
    pub categories: Vec<String>,
    pub channel: Option<String>,
    pub collected_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// True for an opt-in recorded by a START keyword before restorations existed
    /// (such a START now records a restoration instead).
    pub by_keyword: bool,
    /// The proof, as recorded; `null` once purged by retention (see [`evidence_schema`]).
    #[schema(schema_with = evidence_schema)]
    pub evidence: Value,
    pub confirmations: Vec<ExportConfirmation>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportConfirmation {
    pub id: Uuid,
    pub channel: Option<String>,
    pub confirmed_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    #[schema(schema_with = evidence_schema)]
    pub evidence: Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportRevocation {
    pub id: Uuid,
    /// `null`: every category.
    pub categories: Option<Vec<String>>,
    pub channel: Option<String>,
    pub revoked_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub by_keyword: bool,
    #[schema(schema_with = evidence_schema)]
    pub evidence: Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportRestoration {
    pub id: Uuid,
    /// `null`: every category.
    pub categories: Option<Vec<String>>,
    pub channel: Option<String>,
    pub restored_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    #[schema(schema_with = evidence_schema)]
    pub evidence: Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportBlock {
    pub id: Uuid,
    pub blocked: bool,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub channel: Option<String>,
    #[schema(schema_with = evidence_schema)]
    pub evidence: Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportWindow {
    pub id: Uuid,
    pub received_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub entry_point: Option<String>,
    /// When the window this message opened closes(d).
    pub expires_at: Option<DateTime<Utc>>,
}

/// The receipt of an erasure (GDPR Art. 17): proof that it happened, without the
/// number.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureReceipt {
    pub erasure_id: Uuid,
    /// The subject that was erased (its id stays in the audit log).
    pub subject_id: Uuid,
    pub erased_at: DateTime<Utc>,
    /// The privacy team's reference for the request, if given.
    pub request_reference: Option<String>,
    /// Whether a suppression marker (a keyed hash only) was kept, so a stale
    /// import cannot re-add the number without fresh consent (policy).
    pub suppressed: bool,
    /// What may still hold a copy of the destroyed (wrapped) data key and sealed
    /// number in the database's own files, out of reach of any query, as of this
    /// answer. Erasing again retries the cleanup and answers the receipt again.
    pub residue: Residue,
    /// What was destroyed and what remains.
    pub summary: String,
}

/// What an erasure may leave in the database's files (SPEC section 6). Any copy
/// is the wrapped data key and ciphertext, which open only with the master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Residue {
    /// Nothing: no file of the database holds a copy (SQLite: the write-ahead log
    /// was checkpointed into the database, whose freed space is zeroed, and
    /// truncated).
    None,
    /// SQLite: readers kept the write-ahead log from being truncated in time; old
    /// copies of the deleted rows stay in the WAL file until a later checkpoint.
    /// Erase again to retry.
    WriteAheadLog,
    /// PostgreSQL: deleted row versions stay in the table files until VACUUM
    /// prunes them and new rows overwrite the space, and in WAL segments, WAL
    /// archives and backups until those are recycled or expire (README, "What
    /// stays in the database's files").
    DeletedRowVersions,
}

impl From<Leftover> for Residue {
    fn from(leftover: Leftover) -> Residue {
        match leftover {
            Leftover::Nothing => Residue::None,
            Leftover::WriteAheadLog => Residue::WriteAheadLog,
            Leftover::DeletedRowVersions => Residue::DeletedRowVersions,
        }
    }
}

impl ErasureReceipt {
    /// The receipt of an erasure record, with what its cleanup left.
    fn new(r: &ErasureRecord, residue: Residue) -> Self {
        ErasureReceipt {
            erasure_id: r.id,
            subject_id: r.subject_id,
            erased_at: r.erased_at,
            request_reference: r.request_reference.clone(),
            suppressed: r.suppress,
            residue,
            summary: "the subject's data key, number, evidence and history were destroyed; the audit \
                      events stay (their personal fields are unreadable ciphertext) so the log still \
                      verifies"
                .to_owned(),
        }
    }
}

/// Opens a sealed value of a subject, or says why it cannot.
fn open_json(
    key: Option<&DataKey>,
    business_id: Uuid,
    subject_id: Uuid,
    sealed: Option<&[u8]>,
) -> Value {
    let Some(sealed) = sealed else {
        return Value::Null;
    };
    key.and_then(|k| {
        k.open(&Aad::new(business_id, subject_id, "evidence"), sealed)
            .ok()
    })
    .and_then(|plain| serde_json::from_slice(&plain).ok())
    .unwrap_or_else(|| Value::String(ERASED.to_owned()))
}

impl Ledger {
    /// `POST /v1/subjects/export`. `NotFound` when nothing is held about the number.
    pub async fn export_subject(
        &self,
        caller: &Caller,
        phone: Phone,
        request_reference: Option<String>,
    ) -> Result<SubjectExport, StoreError> {
        let business_id = caller.business_id;
        let pseudonym = self.keys.pseudonym_key(business_id).pseudonym(&phone);
        let keys = self.keys.clone();
        let policy = caller.policy.clone();
        let this = self.clone();
        self.writer
            .write_unbatched(business_id, caller.actor, move |conn, now| {
                let subject = rows::find_subject(conn, business_id, &pseudonym)?
                    .ok_or(StoreError::NotFound)?;
                let row = rows::subject_row(conn, business_id, subject.id)?;
                let created_at = row.created_at;
                let key = row
                    .wrapped_key
                    .and_then(|w| DataKey::unwrap(&w, keys.kek(), business_id, subject.id).ok());
                let phone_text = match (&key, row.sealed_phone) {
                    (Some(k), Some(sealed)) => k
                        .open(&Aad::new(business_id, subject.id, "phone"), &sealed)
                        .ok()
                        .and_then(|p| String::from_utf8(p).ok()),
                    _ => None,
                }
                .unwrap_or_else(|| phone.as_e164().to_owned());
                let business = Store::business_blocking(conn, business_id)?;
                let fact_rows = rows::fact_rows(conn, subject.id)?;
                let export = build_export(
                    conn,
                    &this,
                    &policy,
                    business_id,
                    business.name,
                    subject.id,
                    phone_text,
                    created_at,
                    &phone,
                    &fact_rows,
                    key.as_ref(),
                    now,
                )?;
                let event = NewEvent::about(
                    EventType::SubjectExported,
                    subject.id,
                    json!({"request_reference": request_reference, "format": EXPORT_FORMAT}),
                );
                Ok((export, vec![event]))
            })
            .await
    }

    /// `POST /v1/subjects/erase`: in one transaction, destroys the subject's data
    /// key, number, facts and evidence, keeps a receipt (and a suppression marker
    /// where the policy says so) and appends `subject.erased`; then clears what
    /// the backend lets it clear of the deleted rows' copies in the database's
    /// files, and says in the receipt what may remain. Erasing again (or replaying
    /// the Idempotency-Key) answers the first receipt, with the cleanup retried and
    /// `residue` as of now. `NotFound` when nothing was ever held.
    pub async fn erase_subject(
        &self,
        caller: &Caller,
        phone: Phone,
        request_reference: Option<String>,
        idempotency: Option<IdempotencyRequest>,
    ) -> Result<Written<ErasureReceipt>, StoreError> {
        let business_id = caller.business_id;
        let pseudonym = self.keys.pseudonym_key(business_id).pseudonym(&phone);
        let suppress = caller.policy.suppress_on_erasure();
        // Until the cleanup after the commit says otherwise, assume the worst: this
        // is what an Idempotency-Key stores (a replay re-checks it, below).
        let pending = self.worst_residue();
        let written = self
            .writer
            .write_idempotent(business_id, caller.actor, idempotency, move |conn, now| {
                let Some(subject) = rows::find_subject(conn, business_id, &pseudonym)? else {
                    // Already erased (or never held): no change, nothing to record.
                    return Err(StoreError::Conflict("already_erased"));
                };
                let record = ErasureRecord {
                    id: Uuid::now_v7(),
                    subject_id: subject.id,
                    erased_at: now,
                    request_reference: request_reference.clone(),
                    suppress,
                };
                let deleted =
                    rows::erase_subject(conn, business_id, subject.id, &pseudonym, &record)?;
                let event = NewEvent::about(
                    EventType::SubjectErased,
                    subject.id,
                    json!({
                        "erasure_id": record.id,
                        "request_reference": request_reference,
                        "erased_at": record.erased_at,
                        "suppressed": suppress,
                        "facts_deleted": deleted,
                    }),
                );
                Ok((ErasureReceipt::new(&record, pending), vec![event]))
            })
            .await;
        let seq = written.as_ref().ok().and_then(|c| c.seq);
        let written = written.map(|c| c.written);
        let written = match written {
            Err(StoreError::Conflict("already_erased")) => {
                let earlier = self
                    .store
                    .run(move |conn| rows::latest_erasure(conn, business_id, &pseudonym))
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Written::Fresh(ErasureReceipt::new(&earlier, pending))
            }
            other => other?,
        };
        match seq {
            Some(seq) => self.after_write_to(caller, seq, None).await,
            None => self.after_write(caller).await,
        }
        let residue = self.shred().await;
        Ok(match written {
            Written::Fresh(mut receipt) => {
                receipt.residue = residue;
                if residue == Residue::WriteAheadLog {
                    tracing::warn!(
                        %business_id,
                        erasure_id = %receipt.erasure_id,
                        "erasure committed, but the SQLite WAL could not be truncated in time: \
                         the destroyed data key may remain in the WAL file until a later checkpoint"
                    );
                }
                Written::Fresh(receipt)
            }
            Written::Replayed(mut first) => {
                first.body = with_residue(&first.body, residue);
                Written::Replayed(first)
            }
        })
    }

    /// What may remain when the cleanup has not run (or failed).
    fn worst_residue(&self) -> Residue {
        match self.store.backend() {
            crate::store::Backend::Sqlite => Residue::WriteAheadLog,
            crate::store::Backend::Postgres => Residue::DeletedRowVersions,
        }
    }

    /// The cleanup after an erasure: what may remain of the deleted rows.
    async fn shred(&self) -> Residue {
        match self.store.shred_after_erasure().await {
            Ok(leftover) => leftover.into(),
            Err(e) => {
                tracing::warn!(error = %e, "erasure committed, but the cleanup of the database files failed");
                self.worst_residue()
            }
        }
    }
}

/// A stored erasure receipt (an Idempotency-Key's first response) with `residue`
/// as of now; any other body is returned as it was.
fn with_residue(body: &str, residue: Residue) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(mut receipt)) if receipt.contains_key("residue") => {
            receipt.insert("residue".to_owned(), json!(residue));
            Value::Object(receipt).to_string()
        }
        _ => body.to_owned(),
    }
}

#[allow(clippy::too_many_arguments)]
fn build_export(
    conn: &mut DbConnection,
    ledger: &Ledger,
    policy: &crate::policy::Policy,
    business_id: Uuid,
    business_name: String,
    subject_id: Uuid,
    phone_text: String,
    created_at: DateTime<Utc>,
    phone: &Phone,
    fact_rows: &[crate::store::rows::FactRow],
    key: Option<&DataKey>,
    now: DateTime<Utc>,
) -> Result<SubjectExport, StoreError> {
    let history = crate::domain::history::SubjectHistory::new(
        fact_rows
            .iter()
            .map(|r| r.to_fact())
            .collect::<Result<_, _>>()?,
    );
    let current_state = policy
        .categories()
        .map(|category| {
            let d = decide(
                &history,
                policy,
                &category,
                Some(phone.calling_code()),
                Moment::Live(now),
            );
            CategoryState {
                category: category.as_str().to_owned(),
                allowed: d.allowed,
                reason: d.reason,
                basis: d.basis,
                window_expires_at: d.window_expires_at,
            }
        })
        .collect();
    let parse = |id: &str| crate::store::rows::parse_id(id);
    let split = |c: &Option<String>| {
        c.as_ref()
            .map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    };
    let mut opt_ins: Vec<ExportOptIn> = Vec::new();
    let mut confirmations: BTreeMap<String, Vec<ExportConfirmation>> = BTreeMap::new();
    let (mut revocations, mut restorations) = (Vec::new(), Vec::new());
    let (mut blocks, mut windows) = (Vec::new(), Vec::new());
    for row in fact_rows {
        let evidence = open_json(key, business_id, subject_id, row.evidence.as_deref());
        let at = crate::store::rows::from_naive(row.effective_at);
        let recorded_at = crate::store::rows::from_naive(row.recorded_at);
        match row.kind.as_str() {
            "opt_in" => opt_ins.push(ExportOptIn {
                id: parse(&row.id)?,
                categories: split(&row.categories).unwrap_or_default(),
                channel: row.channel.clone(),
                collected_at: at,
                recorded_at,
                by_keyword: row.by_keyword,
                evidence,
                confirmations: Vec::new(),
            }),
            "confirmation" => confirmations
                .entry(row.opt_in_id.clone().unwrap_or_default())
                .or_default()
                .push(ExportConfirmation {
                    id: parse(&row.id)?,
                    channel: row.channel.clone(),
                    confirmed_at: at,
                    recorded_at,
                    evidence,
                }),
            "revocation" => revocations.push(ExportRevocation {
                id: parse(&row.id)?,
                categories: split(&row.categories),
                channel: row.channel.clone(),
                revoked_at: at,
                recorded_at,
                by_keyword: row.by_keyword,
                evidence,
            }),
            "restoration" => restorations.push(ExportRestoration {
                id: parse(&row.id)?,
                categories: split(&row.categories),
                channel: row.channel.clone(),
                restored_at: at,
                recorded_at,
                evidence,
            }),
            "block" | "unblock" => blocks.push(ExportBlock {
                id: parse(&row.id)?,
                blocked: row.kind == "block",
                at,
                recorded_at,
                channel: row.channel.clone(),
                evidence,
            }),
            "inbound" => windows.push(ExportWindow {
                id: parse(&row.id)?,
                received_at: at,
                recorded_at,
                entry_point: row.entry_point.clone(),
                expires_at: policy
                    .window_for(row.entry_point.as_deref())
                    .map(|d| at + d),
            }),
            _ => return Err(StoreError::Corrupt("facts.kind".into())),
        }
    }
    for opt_in in &mut opt_ins {
        opt_in.confirmations = confirmations
            .remove(&opt_in.id.to_string())
            .unwrap_or_default();
    }
    let audit_events = ledger.audit_view_blocking(
        conn,
        business_id,
        EventFilter {
            after: 0,
            limit: 1_000_000,
            subject_id: Some(subject_id),
            ..EventFilter::default()
        },
    )?;
    Ok(SubjectExport {
        format: EXPORT_FORMAT.to_owned(),
        generated_at: now,
        business: ExportBusiness {
            id: business_id,
            name: business_name,
        },
        policy: PolicyRef::of(policy),
        subject: ExportSubject {
            id: subject_id,
            phone: phone_text,
            created_at,
        },
        current_state,
        opt_ins,
        revocations,
        restorations,
        blocks,
        windows,
        audit_events,
    })
}
