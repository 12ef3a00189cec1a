//! Recording: opt-ins, confirmations, revocations, blocks and inbound messages.
//! Each appends its fact and its audit event in one transaction through the
//! store's one write path, with an optional Idempotency-Key.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Caller, Ledger, OpenSubject, open_or_create_subject, sealed_text};
use crate::audit::{EventType, NewEvent};
use crate::crypto::envelope::DataKey;
use crate::domain::evidence::{Channel, Evidence};
use crate::domain::history::Fact;
use crate::domain::phone::Phone;
use crate::domain::time;
use crate::policy::{Category, KeywordKind, Policy, keyword_restorable_categories};
use crate::store::ledger::{self as rows, FactKind, NewFact};
use crate::store::{DbConnection, IdempotencyRequest, StoreError, Written};

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
    /// When the consent must be refreshed (`collected_at` plus the policy's maximum
    /// consent age).
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
    /// When consent was withdrawn: effective at once.
    pub revoked_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// A block or unblock as recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlockResponse {
    pub id: Uuid,
    pub subject_id: Uuid,
    /// True after a block, false after an unblock.
    pub blocked: bool,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// What an inbound message's text did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeywordAction {
    /// Not a keyword (or no text): the message only opened the window.
    None,
    /// An opt-out keyword (STOP and its kin): every category was revoked.
    OptOut,
    /// An opt-in keyword (START and its kin): the categories the last keyword
    /// opt-out revoked were restored (possibly none: it never grants new consent).
    OptIn,
    /// A help keyword: nothing changed.
    Help,
}

/// An inbound message as recorded. Its text is never stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InboundResponse {
    pub id: Uuid,
    pub subject_id: Uuid,
    pub received_at: DateTime<Utc>,
    /// When the customer-service window closes (`null` when the policy has none).
    pub window_expires_at: Option<DateTime<Utc>>,
    pub keyword_action: KeywordAction,
    /// The revocation an opt-out keyword recorded.
    pub revocation_id: Option<Uuid>,
    /// The opt-in an opt-in keyword recorded (when it restored anything).
    pub opt_in_id: Option<Uuid>,
    /// The categories an opt-in keyword restored.
    pub restored_categories: Vec<String>,
}

/// A validated opt-in.
#[derive(Debug)]
pub struct RecordOptIn {
    pub phone: Phone,
    pub categories: Vec<Category>,
    pub channel: Channel,
    pub evidence: Evidence,
}

/// A validated revocation.
#[derive(Debug)]
pub struct RecordRevocation {
    pub phone: Phone,
    /// `None`: every category.
    pub categories: Option<Vec<Category>>,
    pub channel: Channel,
    pub evidence: Evidence,
}

/// A validated block or unblock.
#[derive(Debug)]
pub struct RecordBlock {
    pub phone: Phone,
    pub blocked: bool,
    pub evidence: Evidence,
}

/// A validated inbound message (its text already reduced to the keyword it is).
#[derive(Debug)]
pub struct RecordInbound {
    pub phone: Phone,
    pub received_at: DateTime<Utc>,
    pub keyword: Option<KeywordKind>,
    pub entry_point: Option<String>,
    pub message_reference: Option<String>,
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

fn sealed_evidence(
    subject: &OpenSubject,
    business_id: Uuid,
    evidence: &Evidence,
) -> Result<Vec<u8>, StoreError> {
    let json =
        serde_json::to_vec(evidence).map_err(|e| StoreError::Internal(format!("evidence: {e}")))?;
    Ok(subject.seal(business_id, "evidence", &json))
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
        self.store
            .write_idempotent(business_id, caller.actor, idempotency, move |conn| {
                // Consent collected before the person had their data erased is void:
                // a stale import (or any late record of it) cannot re-add the number.
                // Only consent given after the erasure counts.
                if let Some(erasure) = rows::latest_erasure(conn, business_id, &pseudonym)? {
                    if command.evidence.collected_at <= erasure.erased_at {
                        return Err(StoreError::Conflict("collected_before_erasure"));
                    }
                }
                let subject =
                    open_or_create_subject(conn, &keys, business_id, &command.phone, &pseudonym)?;
                let categories = names(&command.categories);
                let pending = needs_confirmation(&policy, &categories);
                let evidence = sealed_evidence(&subject, business_id, &command.evidence)?;
                let now = time::now();
                let fact = NewFact {
                    categories: Some(categories.clone()),
                    channel: Some(command.channel.as_str().to_owned()),
                    evidence: Some(evidence.clone()),
                    ..NewFact::new(
                        FactKind::OptIn,
                        business_id,
                        subject.id,
                        command.evidence.collected_at,
                        now,
                    )
                };
                rows::insert_fact(conn, &fact)?;
                let status = if pending {
                    OptInStatus::PendingConfirmation
                } else {
                    OptInStatus::Active
                };
                let response = OptInResponse {
                    id: fact.id,
                    subject_id: subject.id,
                    status,
                    categories,
                    channel: command.channel,
                    collected_at: fact.effective_at,
                    recorded_at: now,
                    expires_at: fact.effective_at + policy.max_age(),
                    confirmed_at: None,
                };
                let event = NewEvent::about(
                    EventType::OptInRecorded,
                    subject.id,
                    json!({
                        "opt_in_id": fact.id,
                        "categories": response.categories,
                        "channel": command.channel,
                        "status": status,
                        "collected_at": fact.effective_at,
                        "policy": policy.versioned(),
                        "evidence": sealed_text(&evidence),
                    }),
                );
                Ok((response, vec![event]))
            })
            .await
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
        self.store
            .write_idempotent(business_id, caller.actor, idempotency, move |conn| {
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
                let withdrawn = opt_in.categories.iter().all(|category| {
                    history.facts.iter().any(|f| match f {
                        Fact::Revocation { categories, at, .. } => {
                            *at >= opt_in.collected_at
                                && categories
                                    .as_ref()
                                    .is_none_or(|list| list.contains(category))
                        }
                        _ => false,
                    })
                });
                if withdrawn {
                    return Err(StoreError::Conflict("opt_in_revoked"));
                }
                let subject = open_subject(conn, &keys, business_id, subject_id)?;
                let evidence = sealed_evidence(&subject, business_id, &command.evidence)?;
                let now = time::now();
                let fact = NewFact {
                    opt_in_id: Some(opt_in.id),
                    channel: Some(command.channel.as_str().to_owned()),
                    evidence: Some(evidence.clone()),
                    ..NewFact::new(
                        FactKind::Confirmation,
                        business_id,
                        subject_id,
                        command.evidence.collected_at,
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
                    expires_at: opt_in.collected_at + policy.max_age(),
                    confirmed_at: Some(fact.effective_at),
                };
                let event = NewEvent::about(
                    EventType::OptInConfirmed,
                    subject_id,
                    json!({
                        "opt_in_id": opt_in.id,
                        "confirmation_id": fact.id,
                        "channel": command.channel,
                        "confirmed_at": fact.effective_at,
                        "evidence": sealed_text(&evidence),
                    }),
                );
                Ok((response, vec![event]))
            })
            .await
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
        self.store
            .write_idempotent(business_id, caller.actor, idempotency, move |conn| {
                let subject =
                    open_or_create_subject(conn, &keys, business_id, &command.phone, &pseudonym)?;
                let categories = command.categories.as_deref().map(names);
                let (response, event) = revoke(
                    conn,
                    &subject,
                    business_id,
                    categories,
                    command.channel,
                    &command.evidence,
                    false,
                )?;
                Ok((response, vec![event]))
            })
            .await
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
        self.store
            .write_idempotent(business_id, caller.actor, idempotency, move |conn| {
                let subject = open_or_create_subject(conn, &keys, business_id, &command.phone, &pseudonym)?;
                let evidence = sealed_evidence(&subject, business_id, &command.evidence)?;
                let now = time::now();
                let fact = NewFact {
                    channel: Some(command.evidence.channel().as_str().to_owned()),
                    evidence: Some(evidence.clone()),
                    ..NewFact::new(
                        if command.blocked { FactKind::Block } else { FactKind::Unblock },
                        business_id,
                        subject.id,
                        command.evidence.collected_at,
                        now,
                    )
                };
                rows::insert_fact(conn, &fact)?;
                let event = NewEvent::about(
                    if command.blocked {
                        EventType::SubjectBlocked
                    } else {
                        EventType::SubjectUnblocked
                    },
                    subject.id,
                    json!({"fact_id": fact.id, "at": fact.effective_at, "evidence": sealed_text(&evidence)}),
                );
                let response = BlockResponse {
                    id: fact.id,
                    subject_id: subject.id,
                    blocked: command.blocked,
                    at: fact.effective_at,
                    recorded_at: now,
                };
                Ok((response, vec![event]))
            })
            .await
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
        self.store
            .write_idempotent(business_id, caller.actor, idempotency, move |conn| {
                let subject =
                    open_or_create_subject(conn, &keys, business_id, &command.phone, &pseudonym)?;
                let before = rows::history(conn, subject.id)?;
                let now = time::now();
                let fact = NewFact {
                    entry_point: command.entry_point.clone(),
                    ..NewFact::new(
                        FactKind::Inbound,
                        business_id,
                        subject.id,
                        command.received_at,
                        now,
                    )
                };
                rows::insert_fact(conn, &fact)?;
                let window_expires_at = window_expiry(
                    &before,
                    &policy,
                    command.received_at,
                    command.entry_point.as_deref(),
                );
                let mut events = vec![NewEvent::about(
                    EventType::WindowOpened,
                    subject.id,
                    json!({
                        "fact_id": fact.id,
                        "received_at": command.received_at,
                        "entry_point": command.entry_point,
                        "window_expires_at": window_expires_at,
                    }),
                )];
                let mut response = InboundResponse {
                    id: fact.id,
                    subject_id: subject.id,
                    received_at: command.received_at,
                    window_expires_at,
                    keyword_action: KeywordAction::None,
                    revocation_id: None,
                    opt_in_id: None,
                    restored_categories: Vec::new(),
                };
                let evidence =
                    keyword_evidence(command.received_at, command.message_reference.clone());
                match command.keyword {
                    None => {}
                    Some(KeywordKind::Help) => response.keyword_action = KeywordAction::Help,
                    Some(KeywordKind::OptOut) => {
                        let (revocation, event) = revoke(
                            conn,
                            &subject,
                            business_id,
                            None,
                            Channel::Keyword,
                            &evidence,
                            true,
                        )?;
                        response.keyword_action = KeywordAction::OptOut;
                        response.revocation_id = Some(revocation.id);
                        events.push(event);
                    }
                    Some(KeywordKind::OptIn) => {
                        response.keyword_action = KeywordAction::OptIn;
                        // Like a carrier's START: restore what the last STOP took,
                        // never grant what was not given.
                        let restored = names(&keyword_restorable_categories(
                            &before,
                            &policy,
                            command.received_at,
                        ));
                        if !restored.is_empty() {
                            let sealed = sealed_evidence(&subject, business_id, &evidence)?;
                            let opt_in = NewFact {
                                categories: Some(restored.clone()),
                                channel: Some(Channel::Keyword.as_str().to_owned()),
                                // The START came from the subject's own phone: no
                                // further confirmation step.
                                by_keyword: true,
                                evidence: Some(sealed.clone()),
                                ..NewFact::new(
                                    FactKind::OptIn,
                                    business_id,
                                    subject.id,
                                    command.received_at,
                                    now,
                                )
                            };
                            rows::insert_fact(conn, &opt_in)?;
                            events.push(NewEvent::about(
                                EventType::OptInRecorded,
                                subject.id,
                                json!({
                                    "opt_in_id": opt_in.id,
                                    "categories": restored,
                                    "channel": Channel::Keyword,
                                    "status": OptInStatus::Active,
                                    "collected_at": command.received_at,
                                    "by_keyword": true,
                                    "policy": policy.versioned(),
                                    "evidence": sealed_text(&sealed),
                                }),
                            ));
                            response.opt_in_id = Some(opt_in.id);
                        }
                        response.restored_categories = restored;
                    }
                }
                Ok((response, events))
            })
            .await
    }
}

/// Appends a revocation fact; returns the response and its audit event.
fn revoke(
    conn: &mut DbConnection,
    subject: &OpenSubject,
    business_id: Uuid,
    categories: Option<Vec<String>>,
    channel: Channel,
    evidence: &Evidence,
    by_keyword: bool,
) -> Result<(RevocationResponse, NewEvent), StoreError> {
    let sealed = sealed_evidence(subject, business_id, evidence)?;
    let now = time::now();
    let fact = NewFact {
        categories: categories.clone(),
        channel: Some(channel.as_str().to_owned()),
        by_keyword,
        evidence: Some(sealed.clone()),
        ..NewFact::new(
            FactKind::Revocation,
            business_id,
            subject.id,
            evidence.collected_at,
            now,
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
            "revoked_at": fact.effective_at,
            "evidence": sealed_text(&sealed),
        }),
    );
    let response = RevocationResponse {
        id: fact.id,
        subject_id: subject.id,
        categories,
        channel,
        revoked_at: fact.effective_at,
        recorded_at: now,
    };
    Ok((response, event))
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

/// When the window closes after a message received at `received_at`: every user
/// message restarts it, and one from an entry point with longer hours (a
/// click-to-chat ad) keeps its longer window, so the latest expiry wins.
fn window_expiry(
    before: &crate::domain::history::SubjectHistory,
    policy: &Policy,
    received_at: DateTime<Utc>,
    entry_point: Option<&str>,
) -> Option<DateTime<Utc>> {
    let this = policy
        .window_for(entry_point)
        .map(|hours: Duration| received_at + hours)?;
    let earlier = before
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::Inbound {
                received_at: at,
                entry_point,
                ..
            } if *at <= received_at => policy.window_for(entry_point.as_deref()).map(|d| *at + d),
            _ => None,
        })
        .max();
    Some(earlier.map_or(this, |e| e.max(this)))
}
