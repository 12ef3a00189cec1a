//! Signed checkpoints of a chain (SPEC section 7): Ed25519 over business, seq,
//! hash and time, so that a wholesale rewrite of a chain is detected too. Made
//! here, stored through the store's statements; the writer signs them after its
//! commits, on a thread of its own (`crate::writer::checkpoints`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::crypto::signing::{PublicKey, SigningKey, checkpoint_message};

/// Signs checkpoints, one every `every` events of a chain.
pub struct Checkpointer {
    key: SigningKey,
    every: i64,
}

impl Checkpointer {
    pub fn new(key: SigningKey, every: u32) -> Checkpointer {
        Checkpointer {
            key,
            every: i64::from(every.max(1)),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// Whether a chain at `seq` whose last checkpoint is at `last` is due one.
    pub fn is_due(&self, seq: i64, last: i64) -> bool {
        seq - last >= self.every
    }

    /// A checkpoint of the committed head `(seq, hash)` of a business, signed now.
    pub fn sign(
        &self,
        business_id: Uuid,
        seq: i64,
        hash: &[u8],
        at: DateTime<Utc>,
    ) -> StoredCheckpoint {
        let mut checkpoint = StoredCheckpoint {
            business_id,
            seq,
            hash: hash.to_vec(),
            at,
            key_id: self.key.key_id(),
            signature: Vec::new(),
        };
        checkpoint.signature = self.key.sign(&checkpoint.message()).to_vec();
        checkpoint
    }
}

/// A signed checkpoint as stored (a plain row of the store's).
pub use crate::store::audit::StoredCheckpoint;

impl StoredCheckpoint {
    /// The signed bytes.
    pub fn message(&self) -> Vec<u8> {
        checkpoint_message(self.business_id, self.seq, &self.hash, self.at)
    }
}
