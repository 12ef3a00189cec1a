//! Recording: opt-ins, confirmations, revocations, blocks and inbound messages.
//! Each appends its fact and its audit event in one transaction through the
//! group-commit writer (`crate::writer`), with an optional Idempotency-Key.
//!
//! Every fact of a write is recorded at the write's recorded time (the store's
//! monotone per-business clock, see `audit::head::Head::next_recorded_at`), and its effective time is
//! the earlier of its stated time and that (SPEC section 3): a client clock running
//! ahead cannot postpone a STOP. Withdrawals (revocations, blocks, inbound
//! messages) arrive already cleansed of malformed optional fields, which the
//! handlers drop and name; the audit event lists the dropped field names.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Caller, FreshSubject, Ledger, OpenSubject, open_found, open_or_create_subject, sealed_text,
};
use crate::audit::{EventType, NewEvent};
use crate::crypto::envelope::DataKey;
use crate::domain::evidence::{Channel, Evidence, FieldProblem, Withdrawal};
use crate::domain::history::{Fact, SubjectHistory};
use crate::domain::phone::Phone;
use crate::policy::{
    Category, KeywordKind, Moment, Policy, SubjectState, keyword_restorable_categories,
};
use crate::store::ledger::{self as rows, FactKind, NewFact};
use crate::store::{DbConnection, IdempotencyRequest, StoreError, Written};
use crate::writer::Staged;

/// Whether an opt-in is in force or waits for its double opt-in confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptInStatus {
    /// In force for every category it names.
    Active,
    /// At least one category needs double opt-in (policy); those categories are not
    /// in force until `POST /v1/opt-ins/{id}/confirm`.
    PendingConfirmation,
}

/// An opt-in as recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OptInResponse {
    /// The opt-in's id: the legal basis a check names.
    pub id: Uuid,
    /// The subject (a phone number within this business) it belongs to.
    pub subject_id: Uuid,
    pub status: OptInStatus,
    pub categories: Vec<String>,
    pub channel: Channel,
    /// When consent was given (from the evidence).
    pub collected_at: DateTime<Utc>,
    /// When the service recorded it.
    pub recorded_at: DateTime<Utc>,
    /// When the consent must be refreshed: the policy's maximum consent age after
    /// it took effect (`collected_at`, or `recorded_at` if that is earlier).
    pub expires_at: DateTime<Utc>,
    /// When it was confirmed (double opt-in), if it has been.
    pub confirmed_at: Option<DateTime<Utc>>,
}

/// A revocation as recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevocationResponse {
    pub id: Uuid,
    pub subject_id: Uuid,
    /// The categories withdrawn; `null` withdraws every category.
    pub categories: Option<Vec<String>>,
    pub channel: Channel,
    /// When consent was withdrawn: the stated `collected_at`, but never later than
    /// `recorded_at`. Effective at once.
    pub revoked_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Optional fields that were malformed and dropped: the withdrawal was
    /// recorded without them (GDPR Art. 7(3)).
    pub warnings: Vec<FieldProblem>,
}

/// A block or unblock as recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlockResponse {
    pub id: Uuid,
    pub subject_id: Uuid,
    /// True after a block, false after an unblock.
    pub blocked: bool,
    /// When it took effect: the stated `collected_at`, never later than
    /// `recorded_at`.
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Optional fields that were malformed and dropped (the block was recorded).
    pub warnings: Vec<FieldProblem>,
}

/// What an inbound message's text did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeywordAction {
    /// Not a keyword (or no text): the message only opened the window.
    None,
    /// An opt-out keyword (STOP and its kin): every category was revoked.
    OptOut,
    /// An opt-in keyword (START and its kin): the keyword opt-outs before it were
    /// undone, so the consent they revoked is in force again with its original
    /// age (possibly none: it never grants new consent).
    OptIn,
    /// A help keyword: nothing changed.
    Help,
}

/// An inbound message as recorded. Its text is never stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InboundResponse {
    pub id: Uuid,
    pub subject_id: Uuid,
    /// When the message was received (as stated; it takes effect no later than
    /// `recorded_at`).
    pub received_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// When the customer-service window closes (`null` when the policy has none).
    pub window_expires_at: Option<DateTime<Utc>>,
    pub keyword_action: KeywordAction,
    /// The revocation an opt-out keyword recorded.
    pub revocation_id: Option<Uuid>,
    /// The restoration an opt-in keyword recorded (when there was a keyword
    /// opt-out to undo).
    pub restoration_id: Option<Uuid>,
    /// The categories an opt-in keyword brought back into force.
    pub restored_categories: Vec<String>,
    /// Optional fields that were malformed and dropped (the message was recorded).
    pub warnings: Vec<FieldProblem>,
}

/// A validated opt-in.
#[derive(Debug)]
pub struct RecordOptIn {
    pub phone: Phone,
    pub categories: Vec<Category>,
    pub channel: Channel,
    pub evidence: Evidence,
}

/// A revocation, its optional fields already cleansed.
#[derive(Debug)]
pub struct RecordRevocation {
    pub phone: Phone,
    /// `None`: every category.
    pub categories: Option<Vec<Category>>,
    pub channel: Channel,
    pub evidence: Withdrawal,
    /// Request fields outside the evidence that were dropped (e.g. an unknown
    /// category, which widens the revocation to every category).
    pub dropped: Vec<FieldProblem>,
    /// A keyword-like opt-out (a platform's "stop marketing" signal): a later
    /// restoration ([`Ledger::record_restoration`]) may undo it, as START undoes
    /// STOP. False for revocations through the API.
    pub by_keyword: bool,
}

/// A restoration: a platform's "resume" (or any START-like signal that is not an
/// inbound message). Undoes the keyword revocations of its categories before it.
#[derive(Debug)]
pub struct RecordRestoration {
    pub phone: Phone,
    /// `None`: every category.
    pub categories: Option<Vec<Category>>,
    pub channel: Channel,
    pub evidence: Withdrawal,
}

/// A restoration as recorded (or not: nothing to undo records nothing).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RestorationResponse {
    /// The subject; `null` when nothing was recorded.
    pub subject_id: Option<Uuid>,
    /// The restoration recorded; `null` when there was no keyword revocation to
    /// undo (a restoration never grants consent that was not given).
    pub restoration_id: Option<Uuid>,
    /// The categories brought back into force.
    pub restored_categories: Vec<String>,
    pub recorded_at: DateTime<Utc>,
}

/// A block or unblock, its optional fields already cleansed.
#[derive(Debug)]
pub struct RecordBlock {
    pub phone: Phone,
    pub blocked: bool,
    pub evidence: Withdrawal,
    /// Request fields outside the evidence that were dropped.
    pub dropped: Vec<FieldProblem>,
}

/// A validated inbound message (its text already reduced to the keyword it is),
/// its optional fields already cleansed.
#[derive(Debug)]
pub struct RecordInbound {
    pub phone: Phone,
    pub received_at: DateTime<Utc>,
    pub keyword: Option<KeywordKind>,
    pub entry_point: Option<String>,
    pub message_reference: Option<String>,
    /// Optional fields that were dropped.
    pub dropped: Vec<FieldProblem>,
}

/// A validated confirmation.
#[derive(Debug)]
pub struct ConfirmOptIn {
    pub opt_in_id: Uuid,
    pub channel: Channel,
    pub evidence: Evidence,
}

fn names(categories: &[Category]) -> Vec<String> {
    categories.iter().map(|c| c.as_str().to_owned()).collect()
}

fn needs_confirmation(policy: &Policy, categories: &[String]) -> bool {
    categories.iter().any(|name| {
        policy
            .category(name)
            .and_then(|c| policy.rules(&c).map(|r| r.double_opt_in()))
            .unwrap_or(false)
    })
}

/// The evidence as JSON, sealed under the subject's data key.
pub(crate) fn sealed_evidence(
    subject: &OpenSubject,
    business_id: Uuid,
    evidence: &Evidence,
) -> Result<Vec<u8>, StoreError> {
    Ok(subject.seal(business_id, "evidence", &evidence_json(evidence)?))
}

/// The evidence as the JSON that is sealed.
pub(crate) fn evidence_json(evidence: &Evidence) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(evidence).map_err(|e| StoreError::Internal(format!("evidence: {e}")))
}

/// The names of dropped fields, for audit event data (never their values).
fn dropped_names(dropped: &[FieldProblem]) -> Vec<&str> {
    dropped.iter().map(|p| p.field.as_str()).collect()
}

impl Ledger {
    fn pseudonym(&self, business_id: Uuid, phone: &Phone) -> [u8; 32] {
        self.keys.pseudonym_key(business_id).pseudonym(phone)
    }

    /// `POST /v1/opt-ins`.
    pub async fn record_opt_in(
        &self,
        caller: &Caller,
        command: RecordOptIn,
        idempotency: Option<IdempotencyRequest>,
    ) -> Result<Written<OptInResponse>, StoreError> {
        let business_id = caller.business_id;
        let pseudonym = self.pseudonym(business_id, &command.phone);
        let policy = caller.policy.clone();
        let keys = self.keys.clone();
        // The subject to create should the number have none, made here (on the
        // request's thread) rather than on the writer's.
        let fresh = FreshSubject::new(&self.keys, business_id, &command.phone);
        let fresh_evidence =
            fresh.seal(business_id, "evidence", &evidence_json(&command.evidence)?);
        let written = self
            .writer
            .write_planned(
                business_id,
                caller.actor,
                idempotency,
                pseudonym,
                move |found, now| {
                    refuse_if_erased(&command, now, found.erased_at)?;
                    let (subject_id, evidence, subject) = match found.subject {
                        Some(stored) => {
                            let subject = open_found(&keys, business_id, stored)?;
                            let evidence =
                                sealed_evidence(&subject, business_id, &command.evidence)?;
                            (subject.id, evidence, None)
                        }
                        None => {
                            let (subject, row) = fresh.create(business_id, &pseudonym, now);
                            (subject.id, fresh_evidence, Some(row))
                        }
                    };
                    let planned =
                        plan_opt_in(&policy, business_id, subject_id, &command, evidence, now);
                    let staged = Staged {
                        subject,
                        facts: vec![planned.fact],
                    };
                    Ok((planned.response, vec![planned.event], staged))
                },
            )
            .await;
        self.after_commit(caller, written).await
    }

    /// `POST /v1/opt-ins/{id}/confirm`: the double opt-in confirmation.
    pub async fn confirm_opt_in(
        &self,
        caller: &Caller,
        command: ConfirmOptIn,
        idempotency: Option<IdempotencyRequest>,
    ) -> Result<Written<OptInResponse>, StoreError> {
        let business_id = caller.business_id;
        let policy = caller.policy.clone();
        let keys = self.keys.clone();
        let written = self
            .writer
            .write_idempotent(business_id, caller.actor, idempotency, move |conn, now| {
                let row = rows::fact(conn, business_id, command.opt_in_id)?;
                if row.kind != FactKind::OptIn.as_str() {
                    return Err(StoreError::NotFound);
                }
                let Fact::OptIn(opt_in) = row.to_fact()? else {
                    return Err(StoreError::NotFound);
                };
                if !needs_confirmation(&policy, &opt_in.categories) {
                    return Err(StoreError::Conflict("confirmation_not_required"));
                }
                if rows::is_confirmed(conn, opt_in.id)? {
                    return Err(StoreError::Conflict("already_confirmed"));
                }
                if command.evidence.collected_at < opt_in.collected_at {
                    return Err(StoreError::Conflict("confirmed_before_collected"));
                }
                let subject_id = crate::store::rows::parse_id(&row.subject_id)?;
                // Confirming what was withdrawn since would not revive it (the
                // decision ignores it); tell the client instead of recording noise.
                let history = rows::history(conn, subject_id)?;
                let state = SubjectState::fold(&history, &policy, Moment::Live(now));
                let withdrawn = opt_in
                    .categories
                    .iter()
                    .all(|category| state.withdrawn_since(category, opt_in.effective_at()));
                if withdrawn {
                    return Err(StoreError::Conflict("opt_in_revoked"));
                }
                let subject = open_subject(conn, &keys, business_id, subject_id)?;
                let evidence = sealed_evidence(&subject, business_id, &command.evidence)?;
                let confirmed_at = command.evidence.collected_at.min(now);
                let fact = NewFact {
                    opt_in_id: Some(opt_in.id),
                    channel: Some(command.channel.as_str().to_owned()),
                    evidence: Some(evidence.clone()),
                    ..NewFact::new(
                        FactKind::Confirmation,
                        business_id,
                        subject_id,
                        confirmed_at,
                        now,
                    )
                };
                rows::insert_fact(conn, &fact)?;
                let response = OptInResponse {
                    id: opt_in.id,
                    subject_id,
                    status: OptInStatus::Active,
                    categories: opt_in.categories.clone(),
                    channel: row
                        .channel
                        .as_deref()
                        .and_then(|c| c.parse().ok())
                        .ok_or_else(|| StoreError::Corrupt("facts.channel".into()))?,
                    collected_at: opt_in.collected_at,
                    recorded_at: opt_in.recorded_at,
                    expires_at: opt_in.effective_at() + policy.max_age(),
                    confirmed_at: Some(confirmed_at),
                };
                let event = NewEvent::about(
                    EventType::OptInConfirmed,
                    subject_id,
                    json!({
                        "opt_in_id": opt_in.id,
                        "confirmation_id": fact.id,
                        "channel": command.channel,
                        "confirmed_at": confirmed_at,
                        "evidence": sealed_text(&evidence),
                    }),
                );
                Ok((response, vec![event]))
            })
            .await;
        self.after_commit(caller, written).await
    }

    /// `POST /v1/revocations`: effective at once (GDPR Art. 7(3)). Recorded even for
    /// a number never seen before: it is the latest word, and an import of an older
    /// opt-in cannot override it.
    pub async fn record_revocation(
        &self,
        caller: &Caller,
        command: RecordRevocation,
        idempotency: Option<IdempotencyRequest>,
    ) -> Result<Written<RevocationResponse>, StoreError> {
        let business_id = caller.business_id;
        let pseudonym = self.pseudonym(business_id, &command.phone);
        let keys = self.keys.clone();
        let written = self
            .writer
            .write_idempotent(business_id, caller.actor, idempotency, move |conn, now| {
                let subject = open_or_create_subject(
                    conn,
                    &keys,
                    business_id,
                    &command.phone,
                    &pseudonym,
                    now,
                )?;
                let mut warnings = command.dropped;
                warnings.extend(command.evidence.dropped.iter().cloned());
                let (response, event) = revoke(
                    conn,
                    &subject,
                    Revoke {
                        business_id,
                        categories: command.categories.as_deref().map(names),
                        channel: command.channel,
                        evidence: &command.evidence.dated(now),
                        by_keyword: command.by_keyword,
                        recorded_at: now,
                        warnings,
                    },
                )?;
                Ok((response, vec![event]))
            })
            .await;
        self.after_commit(caller, written).await
    }

    /// A platform's "resume" (e.g. WhatsApp `user_preferences` resume of marketing):
    /// undoes the keyword revocations of `categories` before it. Records nothing
    /// (and no event) when there is nothing to undo; a subject is created only
    /// when something is recorded.
    pub async fn record_restoration(
        &self,
        caller: &Caller,
        command: RecordRestoration,
        idempotency: Option<IdempotencyRequest>,
    ) -> Result<Written<RestorationResponse>, StoreError> {
        let business_id = caller.business_id;
        let pseudonym = self.pseudonym(business_id, &command.phone);
        let policy = caller.policy.clone();
        let keys = self.keys.clone();
        let result = self
            .writer
            .write_idempotent(business_id, caller.actor, idempotency, move |conn, now| {
                let Some(found) = rows::find_subject(conn, business_id, &pseudonym)? else {
                    return Err(StoreError::Conflict("nothing_to_restore"));
                };
                let subject = open_subject(conn, &keys, business_id, found.id)?;
                let history = rows::history(conn, subject.id)?;
                let restored = restore(
                    conn,
                    &subject,
                    &history,
                    &policy,
                    Restore {
                        business_id,
                        categories: command.categories.as_deref().map(names),
                        channel: command.channel,
                        evidence: &command.evidence.dated(now),
                        recorded_at: now,
                    },
                )?;
                let Some((restoration_id, restored_categories, event)) = restored else {
                    return Err(StoreError::Conflict("nothing_to_restore"));
                };
                let response = RestorationResponse {
                    subject_id: Some(subject.id),
                    restoration_id: Some(restoration_id),
                    restored_categories,
                    recorded_at: now,
                };
                Ok((response, vec![event]))
            })
            .await;
        let result = self.after_commit(caller, result).await;
        match result {
            // Nothing to undo: nothing changed, so nothing is recorded or audited.
            Err(StoreError::Conflict("nothing_to_restore")) => {
                Ok(Written::Fresh(RestorationResponse {
                    subject_id: None,
                    restoration_id: None,
                    restored_categories: Vec::new(),
                    recorded_at: self.store.clock().now(),
                }))
            }
            other => other,
        }
    }

    /// `POST /v1/blocks` and `POST /v1/unblocks`.
    pub async fn record_block(
        &self,
        caller: &Caller,
        command: RecordBlock,
        idempotency: Option<IdempotencyRequest>,
    ) -> Result<Written<BlockResponse>, StoreError> {
        let business_id = caller.business_id;
        let pseudonym = self.pseudonym(business_id, &command.phone);
        let keys = self.keys.clone();
        let written = self
            .writer
            .write_idempotent(business_id, caller.actor, idempotency, move |conn, now| {
                let subject = open_or_create_subject(
                    conn,
                    &keys,
                    business_id,
                    &command.phone,
                    &pseudonym,
                    now,
                )?;
                let dated = command.evidence.dated(now);
                let evidence = sealed_evidence(&subject, business_id, &dated)?;
                let at = dated.collected_at.min(now);
                let kind = if command.blocked {
                    FactKind::Block
                } else {
                    FactKind::Unblock
                };
                let fact = NewFact {
                    channel: Some(dated.channel().as_str().to_owned()),
                    evidence: Some(evidence.clone()),
                    ..NewFact::new(kind, business_id, subject.id, at, now)
                };
                rows::insert_fact(conn, &fact)?;
                let mut warnings = command.dropped;
                warnings.extend(command.evidence.dropped.iter().cloned());
                let event = NewEvent::about(
                    if command.blocked {
                        EventType::SubjectBlocked
                    } else {
                        EventType::SubjectUnblocked
                    },
                    subject.id,
                    json!({
                        "fact_id": fact.id,
                        "at": at,
                        "evidence": sealed_text(&evidence),
                        "dropped_fields": dropped_names(&warnings),
                    }),
                );
                let response = BlockResponse {
                    id: fact.id,
                    subject_id: subject.id,
                    blocked: command.blocked,
                    at,
                    recorded_at: now,
                    warnings,
                };
                Ok((response, vec![event]))
            })
            .await;
        self.after_commit(caller, written).await
    }

    /// `POST /v1/inbound-messages`: opens or restarts the customer-service window,
    /// and honours an opt-out / opt-in keyword. The text itself is never stored.
    pub async fn record_inbound(
        &self,
        caller: &Caller,
        command: RecordInbound,
        idempotency: Option<IdempotencyRequest>,
    ) -> Result<Written<InboundResponse>, StoreError> {
        let business_id = caller.business_id;
        let pseudonym = self.pseudonym(business_id, &command.phone);
        let policy = caller.policy.clone();
        let keys = self.keys.clone();
        let written = self
            .writer
            .write_idempotent(business_id, caller.actor, idempotency, move |conn, now| {
                let subject = open_or_create_subject(
                    conn,
                    &keys,
                    business_id,
                    &command.phone,
                    &pseudonym,
                    now,
                )?;
                let mut history = rows::history(conn, subject.id)?;
                let received_at = command.received_at.min(now);
                let fact = NewFact {
                    entry_point: command.entry_point.clone(),
                    ..NewFact::new(FactKind::Inbound, business_id, subject.id, received_at, now)
                };
                rows::insert_fact(conn, &fact)?;
                let inbound = Fact::Inbound {
                    received_at,
                    recorded_at: now,
                    entry_point: command.entry_point.clone(),
                };
                history.facts.push(inbound);
                let window_expires_at = policy
                    .has_window()
                    .then(|| SubjectState::fold(&history, &policy, Moment::Live(now)))
                    .and_then(|state| state.window_until());
                let warnings = command.dropped;
                let mut events = vec![NewEvent::about(
                    EventType::WindowOpened,
                    subject.id,
                    json!({
                        "fact_id": fact.id,
                        "received_at": command.received_at,
                        "effective_at": received_at,
                        "entry_point": command.entry_point,
                        "window_expires_at": window_expires_at,
                        "dropped_fields": dropped_names(&warnings),
                    }),
                )];
                let mut response = InboundResponse {
                    id: fact.id,
                    subject_id: subject.id,
                    received_at: command.received_at,
                    recorded_at: now,
                    window_expires_at,
                    keyword_action: KeywordAction::None,
                    revocation_id: None,
                    restoration_id: None,
                    restored_categories: Vec::new(),
                    warnings: Vec::new(),
                };
                let evidence = keyword_evidence(received_at, command.message_reference.clone());
                match command.keyword {
                    None => {}
                    Some(KeywordKind::Help) => response.keyword_action = KeywordAction::Help,
                    Some(KeywordKind::OptOut) => {
                        let (revocation, event) = revoke(
                            conn,
                            &subject,
                            Revoke {
                                business_id,
                                categories: None,
                                channel: Channel::Keyword,
                                evidence: &evidence,
                                by_keyword: true,
                                recorded_at: now,
                                warnings: Vec::new(),
                            },
                        )?;
                        response.keyword_action = KeywordAction::OptOut;
                        response.revocation_id = Some(revocation.id);
                        events.push(event);
                    }
                    Some(KeywordKind::OptIn) => {
                        response.keyword_action = KeywordAction::OptIn;
                        if let Some((restoration, restored, event)) = restore(
                            conn,
                            &subject,
                            &history,
                            &policy,
                            Restore {
                                business_id,
                                categories: None,
                                channel: Channel::Keyword,
                                evidence: &evidence,
                                recorded_at: now,
                            },
                        )? {
                            response.restoration_id = Some(restoration);
                            response.restored_categories = restored;
                            events.push(event);
                        }
                    }
                }
                response.warnings = warnings;
                Ok((response, events))
            })
            .await;
        self.after_commit(caller, written).await
    }
}

/// Consent collected before the person had their data erased is void: a stale
/// import (or any late record of it) cannot re-add the number. Only consent
/// given after the erasure (`erased_at`: the number's latest, if any) counts.
pub(crate) fn refuse_if_erased(
    command: &RecordOptIn,
    now: DateTime<Utc>,
    erased_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let effective_at = command.evidence.collected_at.min(now);
    if erased_at.is_some_and(|erased_at| effective_at <= erased_at) {
        return Err(StoreError::Conflict("collected_before_erasure"));
    }
    Ok(())
}

/// An opt-in decided but not yet written: its fact, the answer, its audit event.
pub(crate) struct PlannedOptIn {
    pub fact: NewFact,
    pub response: OptInResponse,
    pub event: NewEvent,
}

/// What an opt-in of `subject_id` writes, recorded at `now`, with its evidence
/// already sealed under the subject's data key ([`sealed_evidence`]). Needs no
/// database: the caller inserts the fact and appends the event.
pub(crate) fn plan_opt_in(
    policy: &Policy,
    business_id: Uuid,
    subject_id: Uuid,
    command: &RecordOptIn,
    evidence: Vec<u8>,
    now: DateTime<Utc>,
) -> PlannedOptIn {
    let effective_at = command.evidence.collected_at.min(now);
    let categories = names(&command.categories);
    let pending = needs_confirmation(policy, &categories);
    let sealed = sealed_text(&evidence);
    let fact = NewFact {
        categories: Some(categories.clone()),
        channel: Some(command.channel.as_str().to_owned()),
        evidence: Some(evidence),
        ..NewFact::new(FactKind::OptIn, business_id, subject_id, effective_at, now)
    };
    let status = if pending {
        OptInStatus::PendingConfirmation
    } else {
        OptInStatus::Active
    };
    let response = OptInResponse {
        id: fact.id,
        subject_id,
        status,
        categories,
        channel: command.channel,
        collected_at: command.evidence.collected_at,
        recorded_at: now,
        expires_at: effective_at + policy.max_age(),
        confirmed_at: None,
    };
    let event = NewEvent::about(
        EventType::OptInRecorded,
        subject_id,
        json!({
            "opt_in_id": fact.id,
            "categories": response.categories,
            "channel": command.channel,
            "status": status,
            "collected_at": command.evidence.collected_at,
            "effective_at": effective_at,
            "policy": policy.versioned(),
            "evidence": sealed,
        }),
    );
    PlannedOptIn {
        fact,
        response,
        event,
    }
}

/// A revocation to append.
struct Revoke<'a> {
    business_id: Uuid,
    /// `None`: every category.
    categories: Option<Vec<String>>,
    channel: Channel,
    evidence: &'a Evidence,
    /// From an opt-out keyword (STOP) or a platform's stop: a restoration may undo it.
    by_keyword: bool,
    recorded_at: DateTime<Utc>,
    warnings: Vec<FieldProblem>,
}

/// Appends a revocation fact; returns the response and its audit event.
fn revoke(
    conn: &mut DbConnection,
    subject: &OpenSubject,
    revocation: Revoke<'_>,
) -> Result<(RevocationResponse, NewEvent), StoreError> {
    let Revoke {
        business_id,
        categories,
        channel,
        evidence,
        by_keyword,
        recorded_at,
        warnings,
    } = revocation;
    let sealed = sealed_evidence(subject, business_id, evidence)?;
    let revoked_at = evidence.collected_at.min(recorded_at);
    let fact = NewFact {
        categories: categories.clone(),
        channel: Some(channel.as_str().to_owned()),
        by_keyword,
        evidence: Some(sealed.clone()),
        ..NewFact::new(
            FactKind::Revocation,
            business_id,
            subject.id,
            revoked_at,
            recorded_at,
        )
    };
    rows::insert_fact(conn, &fact)?;
    let event = NewEvent::about(
        EventType::ConsentRevoked,
        subject.id,
        json!({
            "revocation_id": fact.id,
            "categories": categories,
            "channel": channel,
            "by_keyword": by_keyword,
            "revoked_at": revoked_at,
            "evidence": sealed_text(&sealed),
            "dropped_fields": dropped_names(&warnings),
        }),
    );
    let response = RevocationResponse {
        id: fact.id,
        subject_id: subject.id,
        categories,
        channel,
        revoked_at,
        recorded_at,
        warnings,
    };
    Ok((response, event))
}

/// A restoration to append (START, a platform's "resume").
pub(crate) struct Restore<'a> {
    pub business_id: Uuid,
    /// The categories whose keyword revocations it undoes; `None`: all.
    pub categories: Option<Vec<String>>,
    pub channel: Channel,
    pub evidence: &'a Evidence,
    pub recorded_at: DateTime<Utc>,
}

/// Appends a restoration when there is a keyword revocation in force for its
/// categories to undo; returns its id, the categories it brought back into force
/// and its audit event. `None` (nothing recorded) when there is nothing to undo:
/// a START never grants consent that was not given.
pub(crate) fn restore(
    conn: &mut DbConnection,
    subject: &OpenSubject,
    history: &SubjectHistory,
    policy: &Policy,
    restoration: Restore<'_>,
) -> Result<Option<(Uuid, Vec<String>, NewEvent)>, StoreError> {
    let Restore {
        business_id,
        categories,
        channel,
        evidence,
        recorded_at,
    } = restoration;
    let at = evidence.collected_at.min(recorded_at);
    let live = Moment::Live(recorded_at);
    let state = SubjectState::fold(history, policy, live);
    if !state.has_keyword_revocation_in_force(categories.as_deref()) {
        return Ok(None);
    }
    let sealed = sealed_evidence(subject, business_id, evidence)?;
    let fact = NewFact {
        categories: categories.clone(),
        channel: Some(channel.as_str().to_owned()),
        evidence: Some(sealed.clone()),
        ..NewFact::new(
            FactKind::Restoration,
            business_id,
            subject.id,
            at,
            recorded_at,
        )
    };
    let restored = names(&keyword_restorable_categories(
        history,
        policy,
        &Fact::Restoration {
            id: fact.id,
            categories: categories.clone(),
            at,
            recorded_at,
        },
        live,
    ));
    rows::insert_fact(conn, &fact)?;
    let event = NewEvent::about(
        EventType::ConsentRestored,
        subject.id,
        json!({
            "restoration_id": fact.id,
            "categories": categories,
            "channel": channel,
            "restored_at": at,
            "restored_categories": restored,
            "evidence": sealed_text(&sealed),
        }),
    );
    Ok(Some((fact.id, restored, event)))
}

/// The evidence of a keyword message: when it was received and the provider's
/// reference of the message (its text is never kept).
fn keyword_evidence(received_at: DateTime<Utc>, message_reference: Option<String>) -> Evidence {
    Evidence {
        collected_at: received_at,
        consent_text_version: None,
        details: crate::domain::evidence::Details::Keyword { message_reference },
    }
}

/// Opens the data key of an existing subject.
fn open_subject(
    conn: &mut DbConnection,
    keys: &super::Keyring,
    business_id: Uuid,
    subject_id: Uuid,
) -> Result<OpenSubject, StoreError> {
    let row = rows::subject_keys(conn, business_id, subject_id)?;
    let wrapped = row
        .wrapped_key
        .ok_or_else(|| StoreError::Corrupt("subject has no data key".into()))?;
    let key = DataKey::unwrap(&wrapped, keys.kek(), business_id, subject_id)
        .map_err(|_| StoreError::Corrupt("a subject's data key does not unwrap".into()))?;
    Ok(OpenSubject {
        id: subject_id,
        key,
    })
}
