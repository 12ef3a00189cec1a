//! The audit chain: what an event is, and how a chain is verified.
//!
//! The next event of a chain is made by [`head::Head::chain`] (numbered, linked,
//! hashed as `crypto::chain` defines); the writer (`crate::writer`) inserts it
//! through the store's statements inside the same transaction as the change it
//! records. Checkpoints are signed in [`checkpoint`]. Verification
//! ([`verify::verify_chain`]) is a pure fold over events in sequence order, fed a
//! page at a time from the store, so it streams in bounded memory.
//!
//! Depends on `crypto` (hashing, signing), `domain` and the store's statements
//! and plain rows; never on actix or diesel.

pub mod checkpoint;
pub mod head;
pub mod verify;

use serde_json::Value;
use uuid::Uuid;

/// The kinds of event the chain records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    BusinessCreated,
    KeyCreated,
    KeyRevoked,
    OptInRecorded,
    OptInConfirmed,
    ConsentRevoked,
    ConsentRestored,
    SubjectBlocked,
    SubjectUnblocked,
    WindowOpened,
    SubjectExported,
    SubjectErased,
    RetentionPurge,
    PreferenceLinkCreated,
    PreferenceLinkRevoked,
    ChannelCreated,
    ChannelRevoked,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::BusinessCreated => "business.created",
            EventType::KeyCreated => "key.created",
            EventType::KeyRevoked => "key.revoked",
            EventType::OptInRecorded => "opt_in.recorded",
            EventType::OptInConfirmed => "opt_in.confirmed",
            EventType::ConsentRevoked => "consent.revoked",
            EventType::ConsentRestored => "consent.restored",
            EventType::SubjectBlocked => "subject.blocked",
            EventType::SubjectUnblocked => "subject.unblocked",
            EventType::WindowOpened => "window.opened",
            EventType::SubjectExported => "subject.exported",
            EventType::SubjectErased => "subject.erased",
            EventType::RetentionPurge => "retention.purge",
            EventType::PreferenceLinkCreated => "preference_link.created",
            EventType::PreferenceLinkRevoked => "preference_link.revoked",
            EventType::ChannelCreated => "channel.created",
            EventType::ChannelRevoked => "channel.revoked",
        }
    }
}

/// An event about to be appended. Its data must not hold personal data in
/// plaintext: personal fields go in as ciphertext.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: EventType,
    pub subject_id: Option<Uuid>,
    pub data: Value,
}

impl NewEvent {
    /// An event about a subject.
    pub fn about(event_type: EventType, subject_id: Uuid, data: Value) -> NewEvent {
        NewEvent {
            event_type,
            subject_id: Some(subject_id),
            data,
        }
    }

    pub fn new(event_type: EventType, data: Value) -> NewEvent {
        NewEvent {
            event_type,
            subject_id: None,
            data,
        }
    }
}

/// An event as stored in the chain (a plain row of the store's).
pub use crate::store::audit::StoredEvent;

/// The hashed view of a stored event: the chain's hash is defined here and in
/// `crypto::chain`, not by the store that keeps the row.
impl StoredEvent {
    pub fn chained_fields(&self) -> crate::crypto::chain::ChainedFields<'_> {
        crate::crypto::chain::ChainedFields {
            business_id: self.business_id,
            seq: self.seq,
            id: self.id,
            at: self.at,
            event_type: &self.event_type,
            actor: &self.actor,
            subject_id: self.subject_id,
            data: &self.data,
        }
    }
}
