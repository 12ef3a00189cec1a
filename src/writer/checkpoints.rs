//! Signed checkpoints of the chains (SPEC section 7), made by the writer:
//!
//! - after a batch commits, its moved heads go to the checkpoint thread
//!   ([`Checkpoints`]), which signs a checkpoint of each one that is due and
//!   hands it back to the writer shard of its business, which stores it in its
//!   next batch's transaction (the queue's `checkpoints`). Signing
//!   never holds up a batch, and a checkpoint costs no commit of its own: it
//!   used to be a transaction of the checkpoint thread, which on SQLite is a
//!   commit (an fsync) under the process's writer lock, so the writer waited
//!   behind it (up to half a second when the disk was slow; BENCHMARKS.md,
//!   session 7). Heads moved within [`CHECKPOINT_PAUSE`] are taken together;
//! - an unbatched write signs one in its own transaction when it is due
//!   ([`Writer::checkpoint_if_due_in`]);
//! - on demand ([`Writer::checkpoint_now`]) and by the periodic job
//!   ([`Writer::checkpoint_moved_chains`]).
//!
//! Verification ([`Writer::verify_chain`]) is here too because it needs the
//! verification key of what signs.

use std::collections::HashMap;
use std::sync::{Arc, Weak, mpsc};

use uuid::Uuid;

use super::{Inner, Writer};
use crate::audit::checkpoint::{Checkpointer, StoredCheckpoint};
use crate::audit::head::Head;
use crate::audit::verify::{self, Report};
use crate::crypto::signing::PublicKey;
use crate::store::audit as chain;
use crate::store::{DbConnection, Store, StoreError};

impl Writer {
    /// The checkpoint verification key, if this writer signs checkpoints.
    pub fn checkpoint_public_key(&self) -> Option<PublicKey> {
        self.checkpointer().map(|c| c.public_key())
    }

    /// Signs a checkpoint of `head` when one is due, in the transaction that
    /// moved it (an unbatched write's).
    pub(super) fn checkpoint_if_due_in(
        &self,
        conn: &mut DbConnection,
        head: &Head,
    ) -> Result<(), StoreError> {
        let Some(checkpointer) = self.checkpointer() else {
            return Ok(());
        };
        if checkpointer.is_due(
            head.seq(),
            chain::last_checkpoint_seq(conn, head.business_id())?,
        ) {
            sign_and_store(conn, checkpointer, head)?;
        }
        Ok(())
    }

    /// A checkpoint of the business's current head, made now unless one exists for
    /// it already; `None` for a chain with no events. `NotFound` for no business.
    pub fn checkpoint_now_blocking(
        &self,
        conn: &mut DbConnection,
        business_id: Uuid,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let checkpointer = self
            .checkpointer()
            .ok_or_else(|| StoreError::Internal("this writer signs no checkpoints".into()))?;
        let store = self.store();
        store.transaction(conn, |conn| {
            let head = Head::from(chain::lock_head(conn, business_id)?);
            if head.seq() == 0 {
                return Ok(None);
            }
            if chain::last_checkpoint_seq(conn, business_id)? == head.seq() {
                return Ok(chain::checkpoints(conn, business_id)?.pop());
            }
            sign_and_store(conn, checkpointer, &head).map(Some)
        })
    }

    /// [`Writer::checkpoint_now_blocking`] on the blocking pool.
    pub async fn checkpoint_now(
        &self,
        business_id: Uuid,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let this = self.clone();
        self.store()
            .run(move |conn| this.checkpoint_now_blocking(conn, business_id))
            .await
    }

    /// Checkpoints every business whose chain moved since its last checkpoint (the
    /// periodic job). Returns how many were made.
    pub async fn checkpoint_moved_chains(&self) -> Result<usize, StoreError> {
        let this = self.clone();
        self.store()
            .run(move |conn| {
                let mut made = 0;
                for business_id in chain::chained_businesses(conn)? {
                    let head = chain::recorded_head(conn, business_id)?
                        .map(|(seq, _)| seq)
                        .unwrap_or(0);
                    if head > chain::last_checkpoint_seq(conn, business_id)? {
                        made +=
                            usize::from(this.checkpoint_now_blocking(conn, business_id)?.is_some());
                    }
                }
                Ok(made)
            })
            .await
    }

    /// Recomputes a business's whole chain and compares it with every signed
    /// checkpoint (see [`verify::verify_chain`]), against this writer's key.
    pub fn verify_chain_blocking(
        &self,
        conn: &mut DbConnection,
        business_id: Uuid,
    ) -> Result<Report, StoreError> {
        verify::verify_chain(conn, business_id, self.checkpoint_public_key().as_ref())
    }

    /// [`Writer::verify_chain_blocking`] on the blocking pool.
    pub async fn verify_chain(&self, business_id: Uuid) -> Result<Report, StoreError> {
        let this = self.clone();
        self.store()
            .run(move |conn| this.verify_chain_blocking(conn, business_id))
            .await
    }
}

/// Signs a checkpoint of `head`, now, and stores it (in the caller's transaction).
fn sign_and_store(
    conn: &mut DbConnection,
    checkpointer: &Checkpointer,
    head: &Head,
) -> Result<StoredCheckpoint, StoreError> {
    let checkpoint = checkpointer.sign(
        head.business_id(),
        head.seq(),
        head.hash(),
        crate::domain::time::now(),
    );
    chain::store_checkpoint(conn, &checkpoint)?;
    Ok(checkpoint)
}

/// The checkpoint thread: signs a checkpoint of a committed head when one is due
/// and hands it to the writer, which stores it with its next batch.
#[derive(Clone)]
pub(super) struct Checkpoints {
    sender: Option<mpsc::Sender<Vec<MovedHead>>>,
}

/// A head a batch committed: business, seq, hash.
type MovedHead = (Uuid, i64, Vec<u8>);

/// The least time between two wake-ups of the checkpoint thread (heads moved
/// meanwhile are taken together; a checkpoint then signs the newest head, a
/// little later than its due count at most).
pub(super) const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

impl Checkpoints {
    /// Starts the thread; it hands what it signs to `writer`'s shards, until the
    /// writer is gone.
    pub(super) fn start(
        store: Store,
        checkpointer: Option<Arc<Checkpointer>>,
        writer: Weak<Inner>,
    ) -> Checkpoints {
        let Some(checkpointer) = checkpointer else {
            return Checkpoints { sender: None };
        };
        let (sender, receiver) = mpsc::channel::<Vec<MovedHead>>();
        std::thread::Builder::new()
            .name("consentgate-checkpoints".into())
            .spawn(move || {
                // Last checkpointed (or handed over) seq per business, read from
                // the store on first sight.
                let mut last: HashMap<Uuid, i64> = HashMap::new();
                while let Ok(first) = receiver.recv() {
                    // Only the newest head of each business matters.
                    let mut newest: HashMap<Uuid, (i64, Vec<u8>)> = HashMap::new();
                    for (id, seq, hash) in first.into_iter().chain(receiver.try_iter().flatten()) {
                        if newest.get(&id).is_none_or(|(s, _)| *s < seq) {
                            newest.insert(id, (seq, hash));
                        }
                    }
                    let started = std::time::Instant::now();
                    match checkpoint_due(&store, &checkpointer, &mut last, newest) {
                        Ok(signed) => {
                            let Some(writer) = writer.upgrade() else {
                                return;
                            };
                            for checkpoint in signed {
                                super::shard_in(&writer, checkpoint.business_id)
                                    .store_checkpoint(checkpoint);
                            }
                        }
                        // The periodic job checkpoints moved chains anyway.
                        Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
                    }
                    if let Some(rest) = CHECKPOINT_PAUSE.checked_sub(started.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
            })
            .expect("the checkpoint thread starts");
        Checkpoints {
            sender: Some(sender),
        }
    }

    pub(super) fn moved(&self, heads: &[Head]) {
        if let Some(sender) = &self.sender
            && !heads.is_empty()
        {
            let moved = heads
                .iter()
                .map(|h| (h.business_id(), h.seq(), h.hash().to_vec()))
                .collect();
            let _ = sender.send(moved);
        }
    }
}

/// Signs a checkpoint of each of these committed heads that is due and returns
/// them, for the writer to store. `last` is the last checkpointed seq per
/// business, read from the store on first sight and moved on when a checkpoint
/// is signed (should the batch that stores it fail, the next one is due
/// `every` events later, and the periodic job checkpoints every moved chain).
fn checkpoint_due(
    store: &Store,
    checkpointer: &Checkpointer,
    last: &mut HashMap<Uuid, i64>,
    newest: HashMap<Uuid, (i64, Vec<u8>)>,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let mut conn = None;
    let mut signed = Vec::new();
    for (business_id, (seq, hash)) in newest {
        let previous = match last.get(&business_id) {
            Some(previous) => *previous,
            None => {
                let conn = match &mut conn {
                    Some(conn) => conn,
                    None => conn.insert(store.conn()?),
                };
                let previous = chain::last_checkpoint_seq(conn, business_id)?;
                last.insert(business_id, previous);
                previous
            }
        };
        if checkpointer.is_due(seq, previous) {
            signed.push(checkpointer.sign(business_id, seq, &hash, store.clock().now()));
            last.insert(business_id, seq);
        }
    }
    Ok(signed)
}

/// Stores checkpoints the checkpoint thread signed, in a batch's transaction
/// (after its writes), each unless its business has one as new already
/// (another node, or the periodic job). They are in a savepoint of their own:
/// if storing them fails (say another node stored the same one meanwhile), they
/// are dropped and the batch's writes commit as if they were never there.
pub(super) fn store_signed(
    conn: &mut DbConnection,
    savepoint: &mut super::Savepoint,
    checkpoints: &[StoredCheckpoint],
) -> Result<(), StoreError> {
    if checkpoints.is_empty() {
        return Ok(());
    }
    savepoint.set(conn)?;
    let stored = checkpoints.iter().try_for_each(|checkpoint| {
        if chain::last_checkpoint_seq(conn, checkpoint.business_id)? < checkpoint.seq {
            chain::store_checkpoint(conn, checkpoint)?;
        }
        Ok::<_, StoreError>(())
    });
    if let Err(e) = stored {
        tracing::warn!(error = %e, "signed checkpoints not stored; the periodic job makes them");
        savepoint.roll_back(conn)?;
    }
    Ok(())
}
