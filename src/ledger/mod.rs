//! The consent ledger: recording opt-ins, confirmations, revocations, blocks and
//! inbound messages, and answering `may_contact`. This is the application layer
//! between HTTP and storage: it parses nothing (handlers hand it validated
//! commands), knows neither actix nor diesel (the store does the SQL), and reads
//! like the product: find the subject by its keyed hash, seal what is personal,
//! append the fact and its audit event in one transaction; for a check, load the
//! history and call the pure `policy::decide`.

pub mod audit_view;
pub mod channels;
pub mod check;
pub mod console;
pub mod import;
pub mod keys;
pub mod preferences;
pub mod projection;
pub mod record;
pub mod retention;
pub mod subjects;

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::crypto::envelope::{Aad, DataKey, Kek};
use crate::crypto::fingerprint::FingerprintKey;
use crate::crypto::master_key::MasterKey;
use crate::crypto::pseudonym::PseudonymKey;
use crate::domain::Actor;
use crate::domain::phone::Phone;
use crate::policy::{Policy, PolicySet};
use crate::store::ledger::{self as rows, SubjectKeys};
use crate::store::{DbConnection, Store, StoreError, Written};
use crate::writer::{Committed, Delta, Writer};

/// The keys everything personal hangs on, derived once from the master key.
pub struct Keyring {
    master: MasterKey,
    kek: Kek,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring([redacted])")
    }
}

impl Keyring {
    pub fn new(master: MasterKey) -> Keyring {
        let kek = Kek::derive(&master);
        Keyring { master, kek }
    }

    /// The subject-lookup key of a business (HKDF: microseconds, so per request).
    pub fn pseudonym_key(&self, business_id: Uuid) -> PseudonymKey {
        PseudonymKey::derive(&self.master, business_id)
    }

    pub fn fingerprint_key(&self, business_id: Uuid) -> FingerprintKey {
        FingerprintKey::derive(&self.master, business_id)
    }

    pub fn kek(&self) -> &Kek {
        &self.kek
    }
}

/// Who is asking, for which business, under which policy.
#[derive(Debug, Clone)]
pub struct Caller {
    pub business_id: Uuid,
    pub actor: Actor,
    pub policy: Arc<Policy>,
    /// Whether the business's view was made fresh after the request arrived
    /// (authentication fences it, for the key's sake): a live check then answers
    /// from it without fencing again.
    pub fenced: bool,
}

impl Caller {
    /// What a check needs of the caller, borrowed.
    pub fn asker(&self) -> Asker<'_> {
        Asker {
            business_id: self.business_id,
            policy: &self.policy,
            fenced: self.fenced,
        }
    }
}

/// Who asks a check, borrowed: the single check builds it from the principal
/// without taking a reference to the policy (see [`Ledger::policy_ref`]).
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub business_id: Uuid,
    pub policy: &'a Arc<Policy>,
    /// As [`Caller::fenced`].
    pub fenced: bool,
}

/// The consent ledger service. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    keys: Arc<Keyring>,
    policies: Arc<PolicySet>,
    /// What live checks are answered from (see [`projection`]).
    projection: Arc<projection::Projection>,
    /// Every write of the ledger goes through it (group commit, see [`crate::writer`]).
    writer: Writer,
}

impl Ledger {
    /// A ledger writing through `writer` (and reading its store).
    pub fn new(writer: Writer, keys: Arc<Keyring>, policies: Arc<PolicySet>) -> Ledger {
        let store = writer.store().clone();
        let projection = Arc::new(projection::Projection::new(
            store.clone(),
            keys.clone(),
            policies.clone(),
        ));
        // The writer installs each batch's new numbers in this projection before
        // it acknowledges them. Weak: the writer's threads may outlive the
        // ledger, and a dropped projection has nothing to install.
        let view = Arc::downgrade(&projection);
        writer.installing(Box::new(move |business_id, delta| {
            if let Some(projection) = view.upgrade() {
                projection.install_committed(business_id, delta);
            }
        }));
        Ledger {
            writer,
            store,
            keys,
            policies,
            projection,
        }
    }

    /// The in-memory projection live checks are answered from.
    pub fn projection(&self) -> &Arc<projection::Projection> {
        &self.projection
    }

    /// After a write of the caller's business: bring this node's projection up to
    /// it before the write is acknowledged, so the next check here needs no catch-up.
    pub(crate) async fn after_write(&self, caller: &Caller) {
        self.projection
            .refresh(caller.business_id, &caller.policy)
            .await;
    }

    /// After a write of the caller's business committed at chain head `seq`: bring
    /// this node's projection up to at least `seq` before the write is
    /// acknowledged (no fence read: the writer said how far to go), from what
    /// the write's batch wrote when it says that exactly (`delta`).
    pub(crate) async fn after_write_to(&self, caller: &Caller, seq: i64, delta: Option<&Delta>) {
        self.projection
            .refresh_to(caller.business_id, &caller.policy, seq, delta)
            .await;
    }

    /// The answer of a write through the writer, once the projection holds it: a
    /// fresh write is applied up to its own sequence number; a replay wrote
    /// nothing now, but its first write is brought in through the fence; a failed
    /// write changed nothing.
    pub(crate) async fn after_commit<T>(
        &self,
        caller: &Caller,
        result: Result<Committed<T>, StoreError>,
    ) -> Result<Written<T>, StoreError> {
        match &result {
            Ok(Committed {
                seq: Some(seq),
                delta,
                ..
            }) => self.after_write_to(caller, *seq, delta.as_deref()).await,
            Ok(Committed { seq: None, .. }) => self.after_write(caller).await,
            Err(_) => {}
        }
        result.map(|committed| committed.written)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The group-commit writer every write of this ledger goes through.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// This node's clock.
    pub fn clock(&self) -> crate::domain::time::Clock {
        self.store.clock()
    }

    /// The policy a business is bound to. A business whose policy is no longer
    /// loaded cannot be answered: the caller fails closed.
    pub fn policy(&self, name: &str) -> Option<Arc<Policy>> {
        self.policies.get(name)
    }

    /// [`Ledger::policy`] borrowed (no reference count taken: the hot path).
    pub fn policy_ref(&self, name: &str) -> Option<&Arc<Policy>> {
        self.policies.get_ref(name)
    }
}

/// The name and exact version of the policy a decision or record applied.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyRef {
    /// e.g. `whatsapp-eu`.
    pub name: String,
    /// The policy's own version plus a hash of its file, so an auditor knows exactly
    /// which rules applied, e.g. `2026-11-01+sha256:3f2a9c01b7e4`.
    pub version: String,
}

impl PolicyRef {
    pub fn of(policy: &Policy) -> PolicyRef {
        PolicyRef {
            name: policy.name().to_owned(),
            version: policy.versioned().to_owned(),
        }
    }
}

/// A subject's data key, opened for this write.
pub(crate) struct OpenSubject {
    pub id: Uuid,
    pub key: DataKey,
}

impl OpenSubject {
    /// Seals a personal value of this subject (AAD binds it to business, subject
    /// and field, so it cannot be moved elsewhere and still open).
    pub fn seal(&self, business_id: Uuid, field: &'static str, plaintext: &[u8]) -> Vec<u8> {
        self.key
            .seal(&Aad::new(business_id, self.id, field), plaintext)
    }
}

/// Finds the subject of `phone` in the business, or creates it with a fresh data
/// key (wrapped by the master key) and the number sealed under it. Runs inside the
/// write transaction, under the business's lock.
pub(crate) fn open_or_create_subject(
    conn: &mut DbConnection,
    keys: &Keyring,
    business_id: Uuid,
    phone: &Phone,
    pseudonym: &[u8; 32],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<OpenSubject, StoreError> {
    let found = rows::find_subject(conn, business_id, pseudonym)?;
    open_or_create_found(conn, keys, business_id, phone, pseudonym, now, found)
}

/// [`open_or_create_subject`] with the subject already looked up (`found`, in
/// this transaction).
pub(crate) fn open_or_create_found(
    conn: &mut DbConnection,
    keys: &Keyring,
    business_id: Uuid,
    phone: &Phone,
    pseudonym: &[u8; 32],
    now: chrono::DateTime<chrono::Utc>,
    found: Option<SubjectKeys>,
) -> Result<OpenSubject, StoreError> {
    match found {
        Some(found) => open_found(keys, business_id, found),
        None => {
            let (subject, row) =
                FreshSubject::new(keys, business_id, phone).create(business_id, pseudonym, now);
            rows::insert_subject(conn, &row)?;
            Ok(subject)
        }
    }
}

/// Opens the data key of a subject found by its pseudonym.
pub(crate) fn open_found(
    keys: &Keyring,
    business_id: Uuid,
    found: SubjectKeys,
) -> Result<OpenSubject, StoreError> {
    match found {
        SubjectKeys {
            id,
            wrapped_key: Some(wrapped),
        } => {
            let key = DataKey::unwrap(&wrapped, keys.kek(), business_id, id)
                .map_err(|_| StoreError::Corrupt("a subject's data key does not unwrap".into()))?;
            Ok(OpenSubject { id, key })
        }
        SubjectKeys {
            wrapped_key: None, ..
        } => Err(StoreError::Corrupt(
            "a subject without a data key was found by its pseudonym".into(),
        )),
    }
}

/// A subject about to be created: a fresh id (UUID v7) and data key, the key
/// wrapped by the master key and the number sealed under it. None of it needs
/// the database, so the bulk import makes it before the write transaction (and
/// drops it when the number turns out to have a subject already).
pub(crate) struct FreshSubject {
    open: OpenSubject,
    wrapped_key: Vec<u8>,
    sealed_phone: Vec<u8>,
}

impl FreshSubject {
    pub fn new(keys: &Keyring, business_id: Uuid, phone: &Phone) -> FreshSubject {
        let id = Uuid::now_v7();
        let open = OpenSubject {
            id,
            key: DataKey::generate(),
        };
        FreshSubject {
            wrapped_key: open.key.wrap(keys.kek(), business_id, id),
            sealed_phone: open.seal(business_id, "phone", phone.as_e164().as_bytes()),
            open,
        }
    }

    /// Seals a personal value of this subject (see [`OpenSubject::seal`]).
    pub fn seal(&self, business_id: Uuid, field: &'static str, plaintext: &[u8]) -> Vec<u8> {
        self.open.seal(business_id, field, plaintext)
    }

    /// The subject, opened, and the row that creates it at the write's recorded
    /// time (for the caller to insert).
    pub fn create(
        self,
        business_id: Uuid,
        pseudonym: &[u8; 32],
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> (OpenSubject, rows::NewSubject) {
        let row = rows::NewSubject {
            id: self.open.id,
            business_id,
            pseudonym: *pseudonym,
            wrapped_key: self.wrapped_key,
            sealed_phone: self.sealed_phone,
            created_at,
        };
        (self.open, row)
    }
}

/// Base64 of a sealed value, as it appears in audit event data.
pub(crate) fn sealed_text(sealed: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(sealed)
}
