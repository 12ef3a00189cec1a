//! The freshness fence: "what is the newest committed chain head of this business,
//! read after my question arrived?", answered for many questions with one query.
//!
//! A node answers live checks from memory (see `ledger::projection`). Before such
//! an answer it must have applied every change any node committed before the check
//! arrived. The audit chain of a business is exactly that change log: contiguous,
//! committed in sequence order under the head's lock. So one read of the head's
//! sequence number, started after the check arrived, tells how far the node must
//! have caught up.
//!
//! One thread with its own connection serves every fence of this node: it takes
//! every request waiting, reads all their businesses' heads in one query, answers
//! them all, and starts again with whatever arrived meanwhile. A request that
//! arrives while a read is running waits for the next one (that read may have
//! started before it arrived). So under load the cost is one small query per
//! batch of checks, not per check, and idle it is nothing. On PostgreSQL a node
//! that holds a lease ([`super::lease`]) reads a business's head here only once
//! per lease: withdrawals are pushed to it before they are acknowledged.
//!
//! SQLite is different: the database is a file that one `consentgate serve`
//! process owns (`startup` holds an exclusive lock beside it, so a second server on
//! the same file refuses to start). Every write of that process that can turn an
//! answer into a no (a revocation, a block, a STOP, an erasure, a key revoked) goes
//! through this process's writers, which raise [`Watermarks`] to the head they
//! committed after the commit and before the write is acknowledged. So on SQLite
//! the fence is that in-memory number: no read, no hop, no system call on the hot
//! path (reading the head on each check cost a fifth of the server's CPU at
//! c=64: diesel building the query, SQLite's read transaction and its `fcntl`
//! locks).
//!
//! Other processes may write the same file: the CLI's `business create`,
//! `key create`, `import` (opt-ins), `retention run` and `audit checkpoint`. None of
//! them can turn an answer into a no that must be seen at once (SPEC 8: a new
//! opt-in may become visible a little later; a key or business is read from the
//! store when first used). A thread raises the watermarks from the heads stored in
//! the file every [`POLL_EVERY`], so their changes show within about that long.
//! A business this process has not seen yet is read from the file on its first
//! check ([`head_inline`]). A CLI command that could write a withdrawal would
//! break this argument: it would have to go through the server's API instead.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, Weak};

use crossbeam_utils::sync::ShardedLock;
use std::time::Duration;

use diesel::r2d2::ManageConnection;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{ConnectionManager, DbConnection, StoreError};

type Reply = oneshot::Sender<Result<i64, StoreError>>;

#[derive(Default)]
struct Queue {
    waiting: Vec<(Uuid, Reply)>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// The fence of one node. Dropping it stops its thread and closes its connection.
pub struct Fence {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}

impl Fence {
    /// Starts the fence thread; it connects on first use (and again after a
    /// connection breaks).
    pub(super) fn start(manager: ConnectionManager) -> Fence {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("consentgate-fence".into())
            .spawn(move || run(&worker, &manager))
            .expect("the fence thread starts");
        Fence { shared }
    }

    /// The business's chain head, read after this call. `NotFound` for no such
    /// business; `Unavailable` when the store cannot be read (the caller fails
    /// closed).
    pub async fn head(&self, business_id: Uuid) -> Result<i64, StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.waiting.push((business_id, tx));
        }
        self.shared.wake.notify_one();
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the fence stopped".into())))
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.shared.wake.notify_one();
    }
}

fn run(shared: &Shared, manager: &ConnectionManager) {
    let mut conn: Option<DbConnection> = None;
    loop {
        let batch = {
            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            while queue.waiting.is_empty() && !queue.closed {
                queue = shared.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
            if queue.closed {
                return;
            }
            std::mem::take(&mut queue.waiting)
        };
        let mut ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let heads = read_heads(&mut conn, manager, &ids);
        for (business_id, reply) in batch {
            let answer = match &heads {
                Ok(heads) => heads.get(&business_id).copied().ok_or(StoreError::NotFound),
                Err(e) => Err(StoreError::Unavailable(e.clone())),
            };
            let _ = reply.send(answer);
        }
    }
}

fn read_heads(
    conn: &mut Option<DbConnection>,
    manager: &ConnectionManager,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, i64>, String> {
    if conn.is_none() {
        *conn = Some(manager.connect().map_err(|e| e.to_string())?);
    }
    let Some(c) = conn.as_mut() else {
        unreachable!("connected above")
    };
    match super::projection::head_seqs(c, ids) {
        Ok(heads) => Ok(heads),
        Err(e) => {
            // Reconnect next time: the connection may be broken.
            *conn = None;
            Err(e.to_string())
        }
    }
}

thread_local! {
    /// SQLite: this thread's connection for [`head_inline`], with the id of the
    /// store it belongs to (one at a time; a thread that serves another store
    /// opens a new one).
    static INLINE: std::cell::RefCell<Option<(u64, DbConnection)>> =
        const { std::cell::RefCell::new(None) };
}

/// SQLite: the business's chain head, read now on the calling thread (see the
/// module documentation). `store` identifies the database (`Store`'s unique id).
fn head_inline(
    store: u64,
    manager: &ConnectionManager,
    business_id: Uuid,
) -> Result<i64, StoreError> {
    use diesel::prelude::*;

    use super::schema::audit_heads;
    INLINE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(id, _)| *id != store) {
            let conn = manager
                .connect()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            *cell = Some((store, conn));
        }
        let Some((_, conn)) = cell.as_mut() else {
            unreachable!("connected above")
        };
        // `get_result`, not `first`: a bound LIMIT makes SQLite (built with
        // STAT4) re-prepare the cached statement at every run, three times the
        // cost of the read itself (3.3 us against 1.0 us, measured).
        let read = audit_heads::table
            .filter(audit_heads::business_id.eq(business_id.to_string()))
            .select(audit_heads::seq)
            .get_result::<i64>(conn)
            .optional();
        match read {
            Ok(Some(seq)) => Ok(seq),
            Ok(None) => Err(StoreError::NotFound),
            Err(e) => {
                // Reconnect next time: the connection may be broken.
                *cell = None;
                Err(StoreError::Unavailable(e.to_string()))
            }
        }
    })
}

/// SQLite: how often [`Watermarks`] are raised from the heads in the file (other
/// processes' commits show within about this long).
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// SQLite: the newest chain head of each business this process knows to be
/// committed (see the module documentation). Values only ever rise.
pub(super) struct Watermarks {
    /// Read by every check on every worker: sharded, so readers do not bounce
    /// one lock word between cores.
    heads: ShardedLock<HashMap<Uuid, i64>>,
    /// How the poller connects.
    manager: ConnectionManager,
    /// Started with the first number known (read or committed).
    poller: std::sync::OnceLock<()>,
    /// The poller's last read failed: the file may be gone or broken, so nothing
    /// is answered from these numbers until a read succeeds again (fail closed).
    unreadable: std::sync::atomic::AtomicBool,
}

impl Watermarks {
    pub(super) fn new(manager: ConnectionManager) -> Watermarks {
        Watermarks {
            heads: ShardedLock::default(),
            manager,
            poller: std::sync::OnceLock::new(),
            unreadable: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The business's head as known here, if it is known.
    pub(super) fn get(&self, business_id: Uuid) -> Option<i64> {
        self.heads
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&business_id)
            .copied()
    }

    /// A head committed (by this process) or read from the file: kept unless a
    /// newer one is known. The first number known starts the poller, however it
    /// became known (a business first written, then checked, needs it too).
    pub(super) fn raise(self: &Arc<Self>, business_id: Uuid, seq: i64) {
        {
            let mut heads = self.heads.write().unwrap_or_else(|p| p.into_inner());
            let known = heads.entry(business_id).or_insert(seq);
            *known = (*known).max(seq);
        }
        self.poller
            .get_or_init(|| start_poller(Arc::downgrade(self), self.manager.clone()));
    }

    /// The business's head: known here, or read from the file now on the calling
    /// thread (and known from then on; the poller starts with the first).
    pub(super) fn head(self: &Arc<Self>, store: u64, business_id: Uuid) -> Result<i64, StoreError> {
        if !self.unreadable.load(std::sync::atomic::Ordering::Acquire)
            && let Some(seq) = self.get(business_id)
        {
            return Ok(seq);
        }
        let seq = head_inline(store, &self.manager, business_id)?;
        self.raise(business_id, seq);
        Ok(seq)
    }
}

/// Raises the known heads from the file every [`POLL_EVERY`] until the
/// watermarks are dropped. While its reads fail, checks read the head from the
/// file themselves (and fail closed if they cannot either): a store that cannot
/// be read is not answered from memory for longer than one interval.
fn start_poller(watermarks: Weak<Watermarks>, manager: ConnectionManager) {
    let started = std::thread::Builder::new()
        .name("consentgate-heads".into())
        .spawn(move || {
            let mut conn: Option<DbConnection> = None;
            loop {
                std::thread::sleep(POLL_EVERY);
                let Some(watermarks) = watermarks.upgrade() else {
                    return;
                };
                let ids: Vec<Uuid> = watermarks
                    .heads
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .copied()
                    .collect();
                match read_heads(&mut conn, &manager, &ids) {
                    Ok(heads) => {
                        for (id, seq) in heads {
                            watermarks.raise(id, seq);
                        }
                        watermarks
                            .unreadable
                            .store(false, std::sync::atomic::Ordering::Release);
                    }
                    Err(e) => {
                        watermarks
                            .unreadable
                            .store(true, std::sync::atomic::Ordering::Release);
                        tracing::warn!(error = %e, "could not read the chain heads; checks read the store themselves until this read works again")
                    }
                }
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "could not start the chain head poller; other processes' writes show after a restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DatabaseUrl;

    fn watermarks() -> (tempfile::TempDir, Arc<Watermarks>) {
        let dir = tempfile::tempdir().unwrap();
        let manager = ConnectionManager {
            url: DatabaseUrl::Sqlite(dir.path().join("w.db")),
        };
        (dir, Arc::new(Watermarks::new(manager)))
    }

    #[test]
    fn a_head_only_rises() {
        let (_dir, marks) = watermarks();
        let business = Uuid::now_v7();
        assert_eq!(marks.get(business), None);
        marks.raise(business, 7);
        marks.raise(business, 5);
        assert_eq!(
            marks.get(business),
            Some(7),
            "an older number never lowers it"
        );
        marks.raise(business, 9);
        assert_eq!(marks.get(business), Some(9));
    }

    #[test]
    fn the_first_commit_starts_the_poller_as_the_first_read_does() {
        // A business first known from this process's own commit (a webhook's
        // write, before any check read its head) must still have its head polled,
        // or other processes' writes would never show and a file that became
        // unreadable would never be noticed.
        let (_dir, marks) = watermarks();
        assert!(marks.poller.get().is_none());
        marks.raise(Uuid::now_v7(), 1);
        assert!(marks.poller.get().is_some(), "the poller runs");
        // Its first read fails (this file has no tables): checks stop trusting
        // the numbers and read the store themselves.
        let started = std::time::Instant::now();
        while !marks.unreadable.load(std::sync::atomic::Ordering::Acquire) {
            assert!(
                started.elapsed() < POLL_EVERY * 20,
                "the poller never read the file"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
