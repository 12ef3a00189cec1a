//! PostgreSQL: the node lease, which lets a node answer live checks from memory
//! without reading the chain head per check, and still never give a stale "yes".
//!
//! # The promise
//! A withdrawal (revocation, block, STOP, erasure, key revocation: any write but
//! an opt-in) acknowledged by any node is honoured by every node's next check
//! (SPEC 8). The fence ([`super::fence`]) keeps it by reading the head after each
//! check arrives: correct, but a PostgreSQL round trip on every check (shared by
//! the checks waiting at that moment), which put a single-connection check at a
//! third of the HTTP stack's speed. The lease moves that cost from the check,
//! asked before every message, to the withdrawal, which is rare.
//!
//! # How
//! - **Lease.** Each node that answers checks holds a row in `consentgate_nodes`:
//!   `lease_until`, set by PostgreSQL's clock to `now() + LEASE` and renewed
//!   every [`RENEW_EVERY`] by the node's listener thread (its own connection).
//!   The node itself counts its lease as valid until the instant it *sent* the
//!   renewal plus [`TRUSTED`] (three quarters of the lease) on its own monotonic
//!   clock: that is always before the row's `lease_until`, whatever the two
//!   clocks read (only their rates must agree, to a quarter of two seconds).
//! - **Known heads.** While its lease is valid the node keeps, per business, the
//!   newest chain head it knows to be committed. A check whose business has one
//!   answers from it (the projection catches up to it first, if behind): no
//!   read. A business without one is read once through the fence, and the value
//!   is kept. The entry is made *before* that read starts (unresolved), so a
//!   head raised while the read runs is not lost.
//! - **Propagation.** A node that committed a withdrawal does not acknowledge it
//!   until every other node holding a lease has raised its known head of that
//!   business to the new sequence number: after the commit it lists the live
//!   leases, sends `NOTIFY consentgate_ack_req` with the heads, and each node's
//!   listener raises its entries and answers `NOTIFY consentgate_ack`. A node
//!   that has not answered within [`ACK_TIMEOUT`] is *fenced*: its row is marked
//!   so that it can no longer renew, and the writer waits until the lease that
//!   row still grants has run out. From then on that node does not trust what it
//!   knows (its lease lapsed) and reads through the fence, or fails closed.
//! - **Epochs.** Whenever a lease is taken again after it lapsed or was fenced,
//!   or after the listener's connection broke, every known head is forgotten:
//!   a writer may have skipped this node while its lease was not valid, so what
//!   it knew may be old. Only a fence read started in the current epoch makes
//!   an entry; notifications and polls only raise entries that exist.
//! - **Opt-ins** are not propagated (SPEC 8: an opt-in may show up a little
//!   later): the listener raises its known heads from the database every
//!   [`POLL_EVERY`], so they show within about that long.
//!
//! # Why it holds
//! Take a withdrawal acknowledged at time A and a check arriving at node N after
//! A. Either the writer saw N's lease as live after its commit, and waited for
//! N's answer (N raised its entry before answering: the check sees the new head)
//! or for N's lease to run out after fencing it (the check finds N's lease lapsed
//! and reads the head). Or the writer saw N's lease as expired by PostgreSQL's
//! clock: then N's own, earlier, view of it had lapsed too, so N either still
//! has no valid lease at the check (it reads the head) or took a new one since,
//! which started a new epoch after the commit (any head it knows was read after
//! the commit, or raised by a later notification). A node whose listener fails
//! in any way stops renewing, its lease lapses within [`TRUSTED`], and it reads
//! through the fence; if that fails too, the check fails closed.
//!
//! SQLite needs none of this: one server per file (see [`super::fence`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_utils::sync::ShardedLock;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::r2d2::ManageConnection;
use diesel::sql_types::{Array, Double, Text};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{ConnectionManager, DbConnection, StoreError};

/// How long a renewed lease lasts, by PostgreSQL's clock.
pub const LEASE: Duration = Duration::from_secs(2);
/// How long the node itself trusts a renewal, from the moment it sent it.
pub const TRUSTED: Duration = Duration::from_millis(1_500);
/// How often the listener renews the lease.
pub const RENEW_EVERY: Duration = Duration::from_millis(200);
/// How long a writer waits for the other nodes' answers before fencing them.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(250);
/// How often the listener raises its known heads from the database (opt-ins
/// written through other nodes show within about this long).
pub const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long the listener sleeps between looks at its connection.
const TICK: Duration = Duration::from_millis(1);
/// Heads per propagation request (a NOTIFY payload holds at most 8,000 bytes).
const PER_REQUEST: usize = 100;

/// PostgreSQL's clock in microseconds since the Unix epoch (`lease_until`'s unit).
const NOW_US: &str = "(EXTRACT(EPOCH FROM now()) * 1000000)::bigint";

const ACK_REQUEST: &str = "consentgate_ack_req";
const ACK: &str = "consentgate_ack";

#[derive(Clone, Copy)]
struct Known {
    seq: i64,
    /// The fence read that made the entry has answered.
    resolved: bool,
}

#[derive(Default)]
struct Epoch {
    number: u64,
    heads: HashMap<Uuid, Known>,
}

type Reply = oneshot::Sender<Result<(), StoreError>>;

#[derive(Default)]
struct Outgoing {
    waiting: Vec<(Uuid, i64, Reply)>,
}

struct Shared {
    node_id: Uuid,
    started: Instant,
    /// Nanoseconds after `started` until which the lease is trusted; 0: not.
    trusted_until: AtomicU64,
    /// Read by every check on every worker: sharded, so readers do not bounce
    /// one lock word between cores.
    epoch: ShardedLock<Epoch>,
    /// The listener is connected and listening (acknowledgements can arrive).
    listening: AtomicBool,
    /// This node answers checks (so it takes a lease).
    checking: AtomicBool,
    /// Answers to this node's propagation requests: request number -> nodes.
    acks: Mutex<HashMap<u64, HashSet<String>>>,
    acked: Condvar,
    outgoing: Mutex<Outgoing>,
    wake: Condvar,
    closed: AtomicBool,
    /// Fence reads made because no trusted head was known (tests, metrics).
    reads: AtomicU64,
}

/// This node's lease (PostgreSQL). Dropping it stops its threads and removes its
/// row, so no writer waits for it.
pub struct Lease {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("node_id", &self.shared.node_id)
            .finish()
    }
}

/// What a check may answer from.
pub enum Lookup {
    /// A head this node knows to be current: no read needed.
    Known(i64),
    /// Read the head; if `Some(epoch)`, hand the answer to [`Lease::resolve`].
    Read(Option<u64>),
}

impl Lease {
    /// Starts the listener and the propagation threads of node `node_id`.
    pub(super) fn start(manager: ConnectionManager, node_id: Uuid) -> Lease {
        let shared = Arc::new(Shared {
            node_id,
            started: Instant::now(),
            trusted_until: AtomicU64::new(0),
            epoch: ShardedLock::default(),
            listening: AtomicBool::new(false),
            checking: AtomicBool::new(false),
            acks: Mutex::default(),
            acked: Condvar::new(),
            outgoing: Mutex::default(),
            wake: Condvar::new(),
            closed: AtomicBool::new(false),
            reads: AtomicU64::new(0),
        });
        for (name, run) in [
            (
                "consentgate-lease",
                listen as fn(&Shared, &ConnectionManager),
            ),
            ("consentgate-propagate", propagate),
        ] {
            let (shared, manager) = (shared.clone(), manager.clone());
            if let Err(e) = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&shared, &manager))
            {
                // Without the thread the lease is never trusted (checks read the
                // head), and propagation answers unavailable.
                tracing::warn!(error = %e, thread = name, "could not start a lease thread");
            }
        }
        Lease { shared }
    }

    /// The head of `business_id` a check may trust without a read, if any.
    pub fn lookup(&self, business_id: Uuid) -> Lookup {
        if !self.shared.trusted() {
            self.shared.checking.store(true, Ordering::Release);
            self.shared.reads.fetch_add(1, Ordering::Relaxed);
            return Lookup::Read(None);
        }
        if let Some(known) = self
            .shared
            .epoch
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .heads
            .get(&business_id)
            && known.resolved
        {
            return Lookup::Known(known.seq);
        }
        self.shared.reads.fetch_add(1, Ordering::Relaxed);
        let mut epoch = self.shared.epoch.write().unwrap_or_else(|p| p.into_inner());
        epoch.heads.entry(business_id).or_insert(Known {
            seq: i64::MIN,
            resolved: false,
        });
        Lookup::Read(Some(epoch.number))
    }

    /// A fence read of `business_id` that started in epoch `number` answered `seq`.
    pub fn resolve(&self, business_id: Uuid, number: u64, seq: i64) {
        let mut epoch = self.shared.epoch.write().unwrap_or_else(|p| p.into_inner());
        if epoch.number != number {
            return;
        }
        if let Some(known) = epoch.heads.get_mut(&business_id) {
            known.seq = known.seq.max(seq);
            known.resolved = true;
        }
    }

    /// This node committed `business_id` up to `seq`.
    pub fn raise(&self, business_id: Uuid, seq: i64) {
        self.shared.raise(&[(business_id, seq)]);
    }

    /// Waits until every other node with a live lease knows `business_id`'s head
    /// is at least `seq`, or its lease ran out (see the module documentation).
    pub async fn propagate(&self, business_id: Uuid, seq: i64) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .outgoing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting
            .push((business_id, seq, tx));
        self.shared.wake.notify_one();
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the lease stopped".into())))
    }

    /// The lease is trusted now.
    pub fn trusted(&self) -> bool {
        self.shared.trusted()
    }

    /// How many checks had to read the head since the start.
    pub fn reads(&self) -> u64 {
        self.shared.reads.load(Ordering::Relaxed)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn trusted(&self) -> bool {
        self.now() < self.trusted_until.load(Ordering::Acquire)
    }

    fn distrust(&self) {
        self.trusted_until.store(0, Ordering::Release);
    }

    /// A renewal sent at `sent` succeeded. If the lease had lapsed meanwhile (or
    /// was never held), what this node knew is forgotten: a new epoch.
    fn renewed(&self, sent: u64) {
        let until = sent.saturating_add(u64::try_from(TRUSTED.as_nanos()).unwrap_or(u64::MAX));
        let mut epoch = self.epoch.write().unwrap_or_else(|p| p.into_inner());
        if !self.trusted() {
            epoch.number += 1;
            epoch.heads.clear();
        }
        // Under the lock, after the clear: a check that sees the new time sees
        // the cleared heads.
        self.trusted_until.store(until, Ordering::Release);
    }

    /// Raises the entries that exist (never makes one: see the module docs).
    fn raise(&self, heads: &[(Uuid, i64)]) {
        let mut epoch = self.epoch.write().unwrap_or_else(|p| p.into_inner());
        for (business_id, seq) in heads {
            if let Some(known) = epoch.heads.get_mut(business_id) {
                known.seq = known.seq.max(*seq);
            }
        }
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[derive(QueryableByName)]
struct NodeRow {
    #[diesel(sql_type = Text)]
    node_id: String,
}

#[derive(QueryableByName)]
struct Remaining {
    #[diesel(sql_type = Double)]
    seconds: f64,
}

fn pg(conn: &mut DbConnection) -> Result<&mut diesel::PgConnection, StoreError> {
    match conn {
        DbConnection::Postgres(c) => Ok(c),
        DbConnection::Sqlite(_) => Err(StoreError::Internal(
            "node leases are for PostgreSQL only".into(),
        )),
    }
}

fn notify(conn: &mut diesel::PgConnection, channel: &str, payload: &str) -> QueryResult<usize> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(channel)
        .bind::<Text, _>(payload)
        .execute(conn)
}

/// Takes (or takes again) the lease: a new row or a fenced one made live, and a
/// new epoch (nothing known is trusted until then, and nothing from before).
fn register(conn: &mut diesel::PgConnection, shared: &Shared) -> QueryResult<()> {
    shared.distrust();
    let sent = shared.now();
    diesel::sql_query(format!(
        "INSERT INTO consentgate_nodes (node_id, lease_until, fenced) \
         VALUES ($1, {NOW_US} + {}, FALSE) \
         ON CONFLICT (node_id) DO UPDATE SET lease_until = EXCLUDED.lease_until, fenced = FALSE",
        LEASE.as_micros()
    ))
    .bind::<Text, _>(shared.node_id.to_string())
    .execute(conn)?;
    shared.renewed(sent);
    Ok(())
}

/// Renews a lease nobody fenced: 0 rows when it was fenced (or removed).
fn renew(conn: &mut diesel::PgConnection, node_id: Uuid) -> QueryResult<usize> {
    diesel::sql_query(format!(
        "UPDATE consentgate_nodes SET lease_until = {NOW_US} + {} \
         WHERE node_id = $1 AND NOT fenced",
        LEASE.as_micros()
    ))
    .bind::<Text, _>(node_id.to_string())
    .execute(conn)
}

/// The listener: holds the lease, answers propagation requests, receives the
/// answers to this node's, and polls the known heads.
fn listen(shared: &Shared, manager: &ConnectionManager) {
    let mut conn: Option<DbConnection> = None;
    // The lease row is ours (taken once this node answered a check).
    let mut registered = false;
    let mut failures: u32 = 0;
    let mut last_renewal = Instant::now();
    let mut last_poll = Instant::now();
    while !shared.closed() {
        let step = (|| -> Result<(), StoreError> {
            if conn.is_none() {
                let mut fresh = manager
                    .connect()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                let c = pg(&mut fresh)?;
                diesel::sql_query(format!("LISTEN {ACK_REQUEST}")).execute(c)?;
                diesel::sql_query(format!("LISTEN {ACK}")).execute(c)?;
                shared.listening.store(true, Ordering::Release);
                registered = false;
                conn = Some(fresh);
            }
            let Some(db) = conn.as_mut() else {
                unreachable!("connected above")
            };
            // A process that only writes (the CLI) listens for answers but holds
            // no lease: nobody waits for it.
            if !registered && shared.checking.load(Ordering::Acquire) {
                register(pg(db)?, shared)?;
                registered = true;
                last_renewal = Instant::now();
            }
            if registered && last_renewal.elapsed() >= RENEW_EVERY {
                let sent = shared.now();
                let c = pg(db)?;
                if renew(c, shared.node_id)? == 1 {
                    shared.renewed(sent);
                } else {
                    // Fenced by a writer that waited for us in vain: start again.
                    register(c, shared)?;
                    tracing::info!(
                        "this node's lease was fenced by another node; known heads are read again"
                    );
                }
                last_renewal = Instant::now();
            }
            if last_poll.elapsed() >= POLL_EVERY {
                let ids: Vec<Uuid> = shared
                    .epoch
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .heads
                    .keys()
                    .copied()
                    .collect();
                if !ids.is_empty() {
                    let heads: Vec<(Uuid, i64)> = super::projection::head_seqs(db, &ids)?
                        .into_iter()
                        .collect();
                    shared.raise(&heads);
                }
                last_poll = Instant::now();
            }
            let c = pg(db)?;
            let mut answers = Vec::new();
            let mut acked = false;
            for notification in c.notifications_iter() {
                let notification = notification?;
                let mut parts = notification.payload.split(' ');
                let (Some(origin), Some(request)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if notification.channel == ACK_REQUEST {
                    let heads: Vec<(Uuid, i64)> = parts
                        .filter_map(|head| {
                            let (id, seq) = head.split_once(':')?;
                            Some((id.parse().ok()?, seq.parse().ok()?))
                        })
                        .collect();
                    shared.raise(&heads);
                    if origin != shared.node_id.to_string() {
                        answers.push(format!("{origin} {request} {}", shared.node_id));
                    }
                } else if notification.channel == ACK
                    && origin == shared.node_id.to_string()
                    && let (Ok(request), Some(node)) = (request.parse::<u64>(), parts.next())
                {
                    let mut acks = shared.acks.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(nodes) = acks.get_mut(&request) {
                        nodes.insert(node.to_owned());
                        acked = true;
                    }
                }
            }
            if acked {
                shared.acked.notify_all();
            }
            for answer in answers {
                notify(c, ACK, &answer)?;
            }
            Ok(())
        })();
        if let Err(e) = step {
            shared.distrust();
            shared.listening.store(false, Ordering::Release);
            conn = None;
            if failures == 0 {
                tracing::warn!(error = %e, "node lease lost; checks read the chain heads until it is taken again");
            }
            failures = failures.saturating_add(1);
            // 50 ms, doubling up to a second while it keeps failing.
            std::thread::sleep(
                Duration::from_millis(50 << failures.min(5)).min(Duration::from_secs(1)),
            );
        } else {
            if failures > 0 {
                tracing::info!("node lease connection restored");
            }
            failures = 0;
            std::thread::sleep(TICK);
        }
    }
    shared.distrust();
    // Leave: no writer should wait for a node that is gone.
    if registered
        && let Some(mut db) = conn
        && let Ok(c) = pg(&mut db)
    {
        let _ = diesel::sql_query("DELETE FROM consentgate_nodes WHERE node_id = $1")
            .bind::<Text, _>(shared.node_id.to_string())
            .execute(c);
    }
}

/// The propagation thread: takes the waiting writes' heads, and answers them
/// once every other live node knows them (or was fenced and its lease ran out).
fn propagate(shared: &Shared, manager: &ConnectionManager) {
    let mut conn: Option<DbConnection> = None;
    let mut next_request: u64 = 0;
    loop {
        let batch = {
            let mut out = shared.outgoing.lock().unwrap_or_else(|p| p.into_inner());
            while out.waiting.is_empty() && !shared.closed() {
                out = shared.wake.wait(out).unwrap_or_else(|p| p.into_inner());
            }
            if shared.closed() {
                for (_, _, reply) in out.waiting.drain(..) {
                    let _ = reply.send(Err(StoreError::Unavailable("shutting down".into())));
                }
                return;
            }
            let take = out.waiting.len().min(PER_REQUEST);
            out.waiting.drain(..take).collect::<Vec<_>>()
        };
        let mut heads: HashMap<Uuid, i64> = HashMap::new();
        for (business_id, seq, _) in &batch {
            let known = heads.entry(*business_id).or_insert(*seq);
            *known = (*known).max(*seq);
        }
        next_request += 1;
        let outcome = propagate_once(shared, &mut conn, manager, next_request, &heads);
        if let Err(e) = &outcome {
            conn = None;
            tracing::warn!(error = %e, "could not confirm a write on the other nodes; it is stored, and answered unavailable");
        }
        for (_, _, reply) in batch {
            let _ = reply.send(outcome.clone());
        }
    }
}

fn propagate_once(
    shared: &Shared,
    conn: &mut Option<DbConnection>,
    manager: &ConnectionManager,
    request: u64,
    heads: &HashMap<Uuid, i64>,
) -> Result<(), StoreError> {
    if conn.is_none() {
        *conn = Some(
            manager
                .connect()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        );
    }
    let Some(db) = conn.as_mut() else {
        unreachable!("connected above")
    };
    let c = pg(db)?;
    let me = shared.node_id.to_string();
    let peers: HashSet<String> = diesel::sql_query(format!(
        "SELECT node_id FROM consentgate_nodes WHERE lease_until > {NOW_US} AND node_id <> $1"
    ))
    .bind::<Text, _>(&me)
    .load::<NodeRow>(c)?
    .into_iter()
    .map(|row| row.node_id)
    .collect();
    if peers.is_empty() {
        return Ok(());
    }
    // Answers reach this node's listener; give a listener that is (re)connecting
    // a moment, else the peers are fenced for want of an ear.
    let listening_by = Instant::now() + ACK_TIMEOUT;
    while !shared.listening.load(Ordering::Acquire) && Instant::now() < listening_by {
        std::thread::sleep(Duration::from_millis(5));
    }
    shared
        .acks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(request, HashSet::new());
    let mut payload = format!("{me} {request}");
    for (business_id, seq) in heads {
        payload.push_str(&format!(" {business_id}:{seq}"));
    }
    let sent = notify(c, ACK_REQUEST, &payload);
    let deadline = Instant::now() + ACK_TIMEOUT;
    let answered = {
        let mut acks = shared.acks.lock().unwrap_or_else(|p| p.into_inner());
        if sent.is_ok() {
            while acks.get(&request).is_some_and(|got| !peers.is_subset(got)) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                acks = shared
                    .acked
                    .wait_timeout(acks, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        acks.remove(&request).unwrap_or_default()
    };
    sent?;
    let silent: Vec<String> = peers.difference(&answered).cloned().collect();
    if silent.is_empty() {
        return Ok(());
    }
    // Fence them: they cannot renew any more, and what their leases still grant
    // is waited out.
    let remaining = diesel::sql_query(format!(
        "UPDATE consentgate_nodes SET fenced = TRUE \
         WHERE node_id = ANY($1) AND lease_until > {NOW_US} \
         RETURNING (lease_until - {NOW_US})::float8 / 1000000 AS seconds"
    ))
    .bind::<Array<Text>, _>(&silent)
    .load::<Remaining>(c)?;
    let longest = remaining.iter().map(|r| r.seconds).fold(0.0_f64, f64::max);
    tracing::warn!(
        nodes = silent.len(),
        wait_ms = (longest * 1000.0) as u64,
        "other nodes did not confirm a write in time; fenced, waiting out their leases"
    );
    // A little beyond the row's time: the clocks' rates may differ slightly.
    std::thread::sleep(Duration::from_secs_f64(longest.max(0.0)) + Duration::from_millis(50));
    Ok(())
}
