//! The group-commit writer: every ledger write of this node goes through here
//! (issue 11). It sits above the store (which only runs the statements) and below
//! the ledger (which says what a write changes).
//!
//! # Why
//! A write is durable only after its transaction's commit reached the disk (an
//! fsync on SQLite with `synchronous=FULL`, a WAL flush on PostgreSQL), and the
//! writes of one business are serialised anyway by its audit chain head, which
//! every write locks to append its events with the next sequence numbers. One
//! transaction per write therefore costs one fsync and one lock hand-over per
//! write. Group commit shares them: many writes, one commit.
//!
//! # How, top to bottom
//! 1. [`Writer::write_idempotent`] boxes the write (its change closure, its
//!    Idempotency-Key, a oneshot channel for the answer) and queues it on the
//!    shard of its business: one shard for the whole SQLite database (SQLite has
//!    one writer anyway), [`POSTGRES_SHARDS`] shards on PostgreSQL, a business
//!    always on the same one. Each shard is one thread with one connection of
//!    its own (not from the pool).
//! 2. The shard's thread takes every write waiting (at most [`MAX_BATCH`]; on
//!    SQLite a busy writer first waits up to 2 ms for 16, see [`Gather`]) and
//!    opens one transaction. It locks the chain heads of the businesses in the
//!    batch with one statement, in sorted order (so two nodes' batches cannot
//!    deadlock), then applies the writes in queue order. What they need of the
//!    database is looked up for a run of writes at once ([`BatchState`]): the
//!    Idempotency-Keys, and for planned writes (opt-ins, [`Writer::write_planned`])
//!    their numbers' subjects and latest erasures, one query each. A planned
//!    write touches no database: it gets what the batch knows of its number
//!    (with the batch's earlier writes applied) and hands back its rows. A
//!    direct write ([`Writer::write_idempotent`]) runs its change on the
//!    connection in its own SAVEPOINT ([`Savepoint`]), after the rows staged so
//!    far are inserted, and the lookups are made again after it. Every write's
//!    audit events are chained in memory after the locked head with consecutive
//!    sequence numbers. A write that fails (bad state, a constraint, even a
//!    panic) stages nothing (a direct one rolls back to its savepoint) and fails
//!    alone with its own error; the head stays where it was.
//!    At the end the staged subjects, facts, audit events and stored responses
//!    are inserted many to a statement; if that fails, the batch fails as a
//!    whole (step 4).
//! 3. Each moved head is stored once, and the transaction commits once.
//! 4. Only then is every write of the batch answered: its value and the chain
//!    sequence number it reached (the ledger brings its in-memory projection up
//!    to that number before acknowledging to the client). If the commit fails,
//!    every write that would have succeeded is answered `Unavailable` (nothing of
//!    the batch is stored; a client retries with its Idempotency-Key).
//! 5. The committed heads are handed to the checkpoint thread, which signs a
//!    checkpoint when one is due and hands it back to the shard: the next batch
//!    stores it with its writes. Signing never holds up the writer, and a
//!    checkpoint costs no commit of its own (`checkpoints.rs`).
//!
//! 6. SQLite only: the writer's connection never checkpoints the WAL itself (an
//!    automatic checkpoint would copy pages back and fsync the database inside
//!    the writer's commit, stalling every write queued behind it); a thread beside
//!    it runs a PASSIVE checkpoint every 10 ms while writes come in
//!    (`WAL_CHECKPOINT_EVERY`; every 100 ms on an idle server),
//!    syncs the database file after it (so that the copied pages reach the disk
//!    beside the writer, a little at a time), and holds the writer back for a
//!    short second pass when the WAL has grown large, so that it restarts
//!    (`Store::checkpoint_wal`).
//!
//! The chain is exactly what it was with one transaction per write: per
//! business, contiguous, each event in the same transaction as its change.
//! Writes that skip the queue (businesses and keys, preference links, channels,
//! subject exports, retention purges, the CLI and the import: `unbatched.rs`,
//! one transaction each, they are rare) are made here too and take the same
//! head lock (and on SQLite the same in-process writer mutex), so they
//! interleave safely with batches. Checkpoints, their signing and chain
//! verification are in `checkpoints.rs`.
//!
//! This module is the only place that chains events, stores heads and signs
//! checkpoints; the store below it only runs the statements.
//!
//! Each committed batch is logged at `debug` (target `consentgate::writer`): its
//! writes, how long its oldest write waited, and its time split into the lock
//! and `BEGIN`, applying, and the commit ([`Timing`]).
//!
//! Depends on `store` (statements, head lock, inserts), `audit` (events, the
//! head that chains them, checkpoints, verification), `crypto` (the
//! verification key) and `domain` (actors); never on actix or diesel.

mod checkpoints;
mod unbatched;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::audit::checkpoint::Checkpointer;
use crate::audit::head::Head;
use crate::audit::{NewEvent, StoredEvent};
use crate::domain::Actor;
use crate::domain::history::{Fact, SubjectHistory};
use crate::store::audit as chain;
use crate::store::audit::StoredCheckpoint;
use crate::store::ledger::{
    self as rows, IdempotentResponse, NewFact, NewIdempotentResponse, NewSubject, SubjectKeys,
};
use crate::store::rows::FactRow;
use crate::store::{Backend, DbConnection, IdempotencyRequest, Store, StoreError, Written};
use checkpoints::Checkpoints;

/// How many writes one transaction takes at most (bounds a batch's latency).
pub const MAX_BATCH: usize = 512;
/// Writer threads (and connections) on PostgreSQL; a business always goes to the
/// same one, so its chain has one writer on this node. Few, because a batch's
/// fixed costs (the head lock, the lookups, the inserts, the commit) are shared
/// by the writes it holds: with 16 businesses at c=64, 8 shards made batches of a
/// few writes each (1,335 opt-ins/s) where 2 make batches four times larger
/// (1,889/s, same run; 1 shard: 1,818/s). One business is on one shard either
/// way (BENCHMARKS.md, session 5).
pub const POSTGRES_SHARDS: usize = 2;

/// A write that committed (or was answered from its Idempotency-Key).
#[derive(Debug)]
pub struct Committed<T> {
    pub written: Written<T>,
    /// The business's chain head after this write's events (`None` for a replay,
    /// which wrote nothing).
    pub seq: Option<i64>,
    /// What the write's batch changed of its business, when the batch alone says
    /// it exactly ([`Delta`]); `None` otherwise (and for a replay).
    pub delta: Option<Arc<Delta>>,
}

/// What one committed batch changed of one business's consent state, known
/// exactly from the rows the batch wrote: the batch moved the business's chain
/// head from `from` to `to`, and the subjects its events name are exactly
/// `histories`, each with its complete history (every fact it has).
///
/// A batch has a delta for a business only when every write of the business in
/// it was a planned write about a number that had no subject and no erasure
/// before the batch (a new number's opt-in, the common write): such a subject's
/// history is the facts the batch wrote for it, nothing read from the database.
/// Any other write of the business in the batch (a direct write, a number known
/// before, an event about anything else) leaves it without one, and the
/// projection catches up from the database as before.
///
/// So a projection that reflects the chain exactly at `from` reflects it exactly
/// at `to` once it installs `histories` instead of reading back the rows just
/// written: the writer hands it to the ledger for that before it publishes or
/// acknowledges the batch ([`Install`]), and each write's answer carries it too
/// (for a ledger the writer does not hand it to; see `ledger::projection`).
#[derive(Debug)]
pub struct Delta {
    pub from: i64,
    pub to: i64,
    /// By pseudonym (the projection's key).
    pub histories: Vec<([u8; 32], SubjectHistory)>,
}

/// What the writer does with each [`Delta`] of a batch that committed, on the
/// writer's thread, before it publishes the batch's heads
/// ([`Store::committed`]) and before it acknowledges any of the batch's writes:
/// the ledger installs it in its projection (`ledger::projection`). So a check
/// on this node never finds the head ahead of its view because of this node's
/// own writes, and never reads the database to catch up on them (while such a
/// catch-up reads, every request of the business waits for the view's apply
/// lock: holds of 40-60 ms at 8,000 opt-ins/s, BENCHMARKS.md, writes, session
/// 15).
pub type Install = Box<dyn Fn(Uuid, &Delta) + Send + Sync>;

/// What a planned write ([`Writer::write_planned`]) knows of its number at its
/// place in the batch: the stored state, with the batch's earlier writes
/// applied (a subject an earlier write of the batch creates is found here).
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The number's subject in the business, if it has one.
    pub subject: Option<SubjectKeys>,
    /// When the number was last erased, if ever.
    pub erased_at: Option<DateTime<Utc>>,
}

/// The rows a planned write adds, inserted with the rest of its batch's
/// (many to a statement) before the batch commits.
#[derive(Debug, Default)]
pub struct Staged {
    /// The subject the write creates (its number had none).
    pub subject: Option<NewSubject>,
    pub facts: Vec<NewFact>,
}

/// The group-commit writer of this node. Cheap to clone; the threads stop when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

struct Inner {
    store: Store,
    /// Signs checkpoints of the chains (absent only in bare test writers).
    checkpointer: Option<Arc<Checkpointer>>,
    /// Started on first write.
    shards: OnceLock<Vec<Arc<Shard>>>,
    /// Set once, by the ledger writing through this writer ([`Install`]).
    install: Arc<OnceLock<Install>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for shard in self.shards.get().into_iter().flatten() {
            shard.close();
        }
    }
}

/// What a queued write runs, type-erased over its two kinds: a direct change
/// gets the connection (inside its savepoint), a planned one what the batch
/// knows of its number.
type Run<T> = Box<
    dyn FnOnce(Input<'_>, DateTime<Utc>) -> Result<(T, Vec<NewEvent>, Staged), StoreError> + Send,
>;

enum Input<'a> {
    Conn(&'a mut DbConnection),
    Found(Found),
}

fn wrong_input() -> StoreError {
    StoreError::Internal("a write was handed the wrong input".into())
}

impl Writer {
    /// A writer that signs no checkpoints (tests, and nodes that only verify).
    pub fn new(store: Store) -> Writer {
        Writer::signing(store, None)
    }

    /// A writer that signs a checkpoint of a business's chain after every
    /// `checkpointer`'s number of events, and on demand.
    pub fn signing(store: Store, checkpointer: Option<Arc<Checkpointer>>) -> Writer {
        Writer {
            inner: Arc::new(Inner {
                store,
                checkpointer,
                shards: OnceLock::new(),
                install: Arc::new(OnceLock::new()),
            }),
        }
    }

    /// Hands every committed batch's [`Delta`]s to `install` before the batch
    /// is published or acknowledged (see [`Install`]). Only the first caller's
    /// is kept: one ledger writes through a writer; a second one's projection
    /// still catches up on each write before it is acknowledged, as without it.
    pub fn installing(&self, install: Install) {
        let _ = self.inner.install.set(install);
    }

    /// The store this writer runs its statements on.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// What signs checkpoints, if this writer does.
    pub fn checkpointer(&self) -> Option<&Checkpointer> {
        self.inner.checkpointer.as_deref()
    }

    /// A write without an Idempotency-Key (see [`Writer::write_idempotent`]).
    pub async fn write<T, F>(
        &self,
        business_id: Uuid,
        actor: Actor,
        change: F,
    ) -> Result<Committed<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, DateTime<Utc>) -> Result<(T, Vec<NewEvent>), StoreError>
            + Send
            + 'static,
    {
        let no_body = |_: &T| -> Result<String, StoreError> {
            Err(StoreError::Internal("no idempotency key, no body".into()))
        };
        let committed = self
            .submit(business_id, actor, None, None, no_body, direct(change))
            .await?;
        self.propagate(business_id, &committed).await?;
        Ok(committed)
    }

    /// Queues a write of the business and waits until it committed (or failed).
    ///
    /// `change` runs in the batch's transaction, in its own savepoint, under the
    /// business's head lock; it is handed the write's recorded time (the node's
    /// clock, but always after the chain's last write: [`Head::next_recorded_at`])
    /// and returns its value and its audit events (at least one: every state
    /// change is audited). With an Idempotency-Key, a key seen before with the same
    /// request answers the stored first response (nothing is written twice), with
    /// another request it is a conflict; a new key stores this write's response.
    pub async fn write_idempotent<T, F>(
        &self,
        business_id: Uuid,
        actor: Actor,
        request: Option<IdempotencyRequest>,
        change: F,
    ) -> Result<Committed<T>, StoreError>
    where
        T: serde::Serialize + Send + 'static,
        F: FnOnce(&mut DbConnection, DateTime<Utc>) -> Result<(T, Vec<NewEvent>), StoreError>
            + Send
            + 'static,
    {
        let committed = self
            .submit(business_id, actor, request, None, to_body, direct(change))
            .await?;
        self.propagate(business_id, &committed).await?;
        Ok(committed)
    }

    /// A direct write may turn an answer into a no: it is acknowledged only once
    /// every node knows it (`store::lease`; a replay waits for the head now, so
    /// a first answer that could not be confirmed is confirmed by its retry).
    /// Opt-ins ([`Writer::write_planned`]) may show up on other nodes later.
    async fn propagate<T>(
        &self,
        business_id: Uuid,
        committed: &Committed<T>,
    ) -> Result<(), StoreError> {
        self.store().propagate(business_id, committed.seq).await
    }

    /// [`Writer::write_idempotent`] for a write that needs nothing of the
    /// database but its number's subject and latest erasure (an opt-in). `plan`
    /// is handed those ([`Found`], looked up for the whole batch at once, with
    /// the batch's earlier writes applied) and the recorded time, and returns
    /// the value, the audit events and the rows to insert ([`Staged`]); it
    /// touches no database, so it needs no savepoint, and its rows go in with
    /// the batch's others, many to a statement. A plan that fails stages
    /// nothing and fails alone.
    pub async fn write_planned<T, P>(
        &self,
        business_id: Uuid,
        actor: Actor,
        request: Option<IdempotencyRequest>,
        pseudonym: [u8; 32],
        plan: P,
    ) -> Result<Committed<T>, StoreError>
    where
        T: serde::Serialize + Send + 'static,
        P: FnOnce(Found, DateTime<Utc>) -> Result<(T, Vec<NewEvent>, Staged), StoreError>
            + Send
            + 'static,
    {
        let run: Run<T> = Box::new(move |input, now| match input {
            Input::Found(found) => plan(found, now),
            Input::Conn(_) => Err(wrong_input()),
        });
        self.submit(business_id, actor, request, Some(pseudonym), to_body, run)
            .await
    }

    /// How many writes wait in the queue of the business's shard (not counting
    /// the batch being committed): for tests that line writes up in one batch.
    pub fn waiting(&self, business_id: Uuid) -> usize {
        let shard = self.shard_of(business_id);
        let queue = shard.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.waiting.len()
    }

    /// Which writer shard (thread) the business's writes queue on: for tests
    /// that line up writes of several businesses in one batch.
    pub fn shard(&self, business_id: Uuid) -> usize {
        shard_index(self.shards().len(), business_id)
    }

    async fn submit<T, B>(
        &self,
        business_id: Uuid,
        actor: Actor,
        request: Option<IdempotencyRequest>,
        pseudonym: Option<[u8; 32]>,
        to_body: B,
        run: Run<T>,
    ) -> Result<Committed<T>, StoreError>
    where
        T: Send + 'static,
        B: FnOnce(&T) -> Result<String, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            business_id,
            actor,
            request,
            pseudonym,
            to_body: Some(to_body),
            run: Some(run),
            outcome: None,
            reply,
        });
        self.shard_of(business_id).push(job)?;
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the writer stopped".into())))
    }

    fn shard_of(&self, business_id: Uuid) -> &Arc<Shard> {
        &self.shards()[self.shard(business_id)]
    }

    fn shards(&self) -> &[Arc<Shard>] {
        self.inner.shards.get_or_init(|| {
            let count = match self.inner.store.backend() {
                Backend::Sqlite => 1,
                Backend::Postgres => POSTGRES_SHARDS,
            };
            let checkpoints = Checkpoints::start(
                self.inner.store.clone(),
                self.inner.checkpointer.clone(),
                Arc::downgrade(&self.inner),
            );
            if self.inner.store.backend() == Backend::Sqlite {
                start_wal_checkpoints(self.inner.store.clone(), Arc::downgrade(&self.inner));
            }
            (0..count)
                .map(|i| {
                    Shard::start(
                        i,
                        self.inner.store.clone(),
                        checkpoints.clone(),
                        self.inner.install.clone(),
                    )
                })
                .collect()
        })
    }
}

/// The shard, of `shards`, that writes a business: picked by its id's random tail
/// (UUID v7 starts with the time).
fn shard_index(shards: usize, business_id: Uuid) -> usize {
    let tail = u64::from_le_bytes(business_id.as_bytes()[8..].try_into().expect("8 bytes"));
    (tail % shards as u64) as usize
}

/// The shard of a business, for the checkpoint thread (which starts before the
/// shards, and hands checkpoints only of heads that a shard committed).
fn shard_in(inner: &Inner, business_id: Uuid) -> &Arc<Shard> {
    let shards = inner
        .shards
        .get()
        .expect("a head moved, so the shards are running");
    &shards[shard_index(shards.len(), business_id)]
}

fn to_body<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(format!("response: {e}")))
}

/// A direct change, as the batch runs it.
fn direct<T, F>(change: F) -> Run<T>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection, DateTime<Utc>) -> Result<(T, Vec<NewEvent>), StoreError>
        + Send
        + 'static,
{
    Box::new(move |input, now| match input {
        Input::Conn(conn) => {
            change(conn, now).map(|(value, events)| (value, events, Staged::default()))
        }
        Input::Found(_) => Err(wrong_input()),
    })
}

/// One queued write, type-erased so one batch holds writes of any response type.
trait Job: Send {
    fn business_id(&self) -> Uuid;
    fn idempotency_key(&self) -> Option<&str>;
    /// A planned write's number (`None`: a direct write).
    fn pseudonym(&self) -> Option<&[u8; 32]>;
    /// Runs the write: a direct one inside its savepoint, on `conn`; a planned
    /// one on what `batch` knows. Its events are chained after `head` and, like
    /// its rows and its response, handed to `batch`; nothing of it reaches
    /// `batch` or `head` unless it succeeds.
    fn apply(
        &mut self,
        conn: &mut DbConnection,
        batch: &mut BatchState,
        head: &mut Head,
        clock_now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The write failed (its savepoint was rolled back).
    fn fail(&mut self, error: StoreError);
    /// Answers the caller once the batch's commit is decided (with what the
    /// batch changed of its business, when that is known exactly).
    fn acknowledge(self: Box<Self>, commit: Result<(), &StoreError>, delta: Option<&Arc<Delta>>);
}

struct Pending<T, B> {
    business_id: Uuid,
    actor: Actor,
    request: Option<IdempotencyRequest>,
    pseudonym: Option<[u8; 32]>,
    to_body: Option<B>,
    run: Option<Run<T>>,
    outcome: Option<Result<Committed<T>, StoreError>>,
    reply: oneshot::Sender<Result<Committed<T>, StoreError>>,
}

impl<T, B> Job for Pending<T, B>
where
    T: Send + 'static,
    B: FnOnce(&T) -> Result<String, StoreError> + Send + 'static,
{
    fn business_id(&self) -> Uuid {
        self.business_id
    }

    fn idempotency_key(&self) -> Option<&str> {
        self.request.as_ref().map(|r| r.key.as_str())
    }

    fn pseudonym(&self) -> Option<&[u8; 32]> {
        self.pseudonym.as_ref()
    }

    fn apply(
        &mut self,
        conn: &mut DbConnection,
        batch: &mut BatchState,
        head: &mut Head,
        clock_now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(request) = &self.request
            && let Some(first) = batch.response(self.business_id, &request.key)
        {
            if first.request_hash != request.request_hash {
                return Err(StoreError::Conflict("idempotency_key_reused"));
            }
            self.outcome = Some(Ok(Committed {
                written: Written::Replayed(first.clone()),
                seq: None,
                delta: None,
            }));
            return Ok(());
        }
        let run = self
            .run
            .take()
            .ok_or_else(|| StoreError::Internal("a write applied twice".into()))?;
        let recorded_at = head.next_recorded_at(clock_now);
        // A planned write about a number the database knows nothing of (no
        // subject, no erasure): what it writes is all there is of the number.
        let mut unseen = false;
        let input = match &self.pseudonym {
            Some(pseudonym) => {
                let found = batch.found(self.business_id, pseudonym);
                unseen = found.subject.is_none() && found.erased_at.is_none();
                Input::Found(found)
            }
            None => Input::Conn(conn),
        };
        let (value, events, staged) = run(input, recorded_at)?;
        let mut moved = head.clone();
        let events = chain_events(&mut moved, self.actor, recorded_at, events)?;
        let response = match &self.request {
            Some(request) => {
                let to_body = self
                    .to_body
                    .take()
                    .ok_or_else(|| StoreError::Internal("a write applied twice".into()))?;
                Some(NewIdempotentResponse {
                    business_id: self.business_id,
                    key: request.key.clone(),
                    response: IdempotentResponse {
                        request_hash: request.request_hash.to_vec(),
                        status: request.status,
                        body: to_body(&value)?,
                    },
                    created_at: recorded_at,
                })
            }
            None => None,
        };
        // Nothing above changed the batch: from here on the write is in.
        batch.stage(
            self.business_id,
            self.pseudonym.as_ref(),
            unseen,
            staged,
            events,
            response,
        );
        *head = moved;
        self.outcome = Some(Ok(Committed {
            written: Written::Fresh(value),
            seq: Some(head.seq()),
            delta: None,
        }));
        Ok(())
    }

    fn fail(&mut self, error: StoreError) {
        self.outcome = Some(Err(error));
    }

    fn acknowledge(self: Box<Self>, commit: Result<(), &StoreError>, delta: Option<&Arc<Delta>>) {
        let answer = match (commit, self.outcome) {
            (_, Some(Err(own))) => Err(own),
            (Ok(()), Some(Ok(mut committed))) => {
                if committed.seq.is_some() {
                    committed.delta = delta.cloned();
                }
                Ok(committed)
            }
            (Err(e), Some(Ok(_))) => Err(StoreError::Unavailable(format!(
                "the batch did not commit: {e}"
            ))),
            (Ok(()), None) => Err(StoreError::Internal("a write was never applied".into())),
            (Err(e), None) => Err(StoreError::Unavailable(format!(
                "the batch did not commit: {e}"
            ))),
        };
        // The caller may have gone (its request was cancelled): nothing to tell.
        let _ = self.reply.send(answer);
    }
}

/// Numbers and hashes `events` after `head` (moving it), recorded at `at`.
pub(crate) fn chain_events(
    head: &mut Head,
    actor: Actor,
    at: DateTime<Utc>,
    events: Vec<NewEvent>,
) -> Result<Vec<StoredEvent>, StoreError> {
    if events.is_empty() {
        return Err(StoreError::Internal(
            "a state change must append at least one audit event".into(),
        ));
    }
    events
        .into_iter()
        .map(|event| {
            head.chain(actor, at, event)
                .map_err(|e| StoreError::Internal(format!("event data: {e}")))
        })
        .collect()
}

/// The subjects a batch wrote for one business, by pseudonym: each one's id and
/// complete history.
type Histories = HashMap<[u8; 32], (Uuid, Vec<Fact>)>;

/// What a batch holds besides its transaction: what it looked up for its
/// writes, and the rows its writes made that are not inserted yet.
///
/// Lookups are made for a run of writes at once ([`BatchState::look_up`]): the
/// Idempotency-Keys of the run, and the subjects and latest erasures of its
/// planned writes' numbers, one query each. They stay true while only planned
/// writes run, because the batch itself keeps them current (a subject a planned
/// write creates is entered in `found`, a response it stores in `responses`).
/// A direct write reads the database itself: the staged subjects and facts are
/// inserted before it runs ([`BatchState::flush`]), and what was looked up is
/// looked up again after it (it may have changed anything).
///
/// Audit events and stored responses are read by no write: they are inserted
/// once, at the end of the batch ([`BatchState::finish`]).
struct BatchState {
    /// The lookups cover the batch's writes before this index.
    looked_up_to: usize,
    /// Stored first responses of the looked-up keys.
    stored: HashMap<(Uuid, String), IdempotentResponse>,
    /// The looked-up numbers, with the batch's planned writes applied.
    found: HashMap<(Uuid, [u8; 32]), Found>,
    subjects: Vec<NewSubject>,
    facts: Vec<NewFact>,
    events: Vec<StoredEvent>,
    responses: Vec<NewIdempotentResponse>,
    /// This batch's responses, by business and key (index into `responses`).
    answered: HashMap<(Uuid, String), usize>,
    /// Per business of the batch: the subjects its writes touched, each with
    /// its id and complete history, while the batch alone knows them exactly;
    /// `None` once a write of the business touched anything else (see [`Delta`]).
    written: HashMap<Uuid, Option<Histories>>,
}

impl BatchState {
    fn new(writes: usize) -> BatchState {
        BatchState {
            looked_up_to: 0,
            stored: HashMap::new(),
            found: HashMap::new(),
            subjects: Vec::new(),
            facts: Vec::with_capacity(writes),
            events: Vec::with_capacity(writes),
            responses: Vec::new(),
            answered: HashMap::new(),
            written: HashMap::new(),
        }
    }

    /// The first response under this key: this batch's, or a stored one.
    fn response(&self, business_id: Uuid, key: &str) -> Option<&IdempotentResponse> {
        let pair = (business_id, key.to_owned());
        match self.answered.get(&pair) {
            Some(&i) => Some(&self.responses[i].response),
            None => self.stored.get(&pair),
        }
    }

    fn found(&self, business_id: Uuid, pseudonym: &[u8; 32]) -> Found {
        self.found
            .get(&(business_id, *pseudonym))
            .cloned()
            .unwrap_or_default()
    }

    /// Looks up what the writes from `batch[from]` up to and including the next
    /// direct write need, unless that was done already.
    fn look_up(
        &mut self,
        conn: &mut DbConnection,
        batch: &[Box<dyn Job>],
        from: usize,
    ) -> Result<(), StoreError> {
        if from < self.looked_up_to {
            return Ok(());
        }
        let run = batch[from..]
            .iter()
            .position(|job| job.pseudonym().is_none())
            .map_or(batch.len(), |direct| from + direct + 1);
        let run_jobs = &batch[from..run];
        self.looked_up_to = run;
        let keys: Vec<(Uuid, String)> = run_jobs
            .iter()
            .filter_map(|job| Some((job.business_id(), job.idempotency_key()?.to_owned())))
            .collect();
        self.stored = if keys.is_empty() {
            HashMap::new()
        } else {
            rows::idempotent_responses(conn, &keys)?
        };
        self.found.clear();
        let numbers: Vec<(Uuid, [u8; 32])> = run_jobs
            .iter()
            .filter_map(|job| Some((job.business_id(), *job.pseudonym()?)))
            .collect();
        if !numbers.is_empty() {
            let (mut subjects, erasures) = rows::subjects_and_erasures(conn, &numbers)?;
            for number in numbers {
                let found = Found {
                    subject: subjects.remove(&number),
                    erased_at: erasures.get(&number).copied(),
                };
                self.found.entry(number).or_insert(found);
            }
        }
        Ok(())
    }

    /// Takes in what a write that succeeded made (`unseen`: a planned write
    /// whose number had no subject and no erasure when the batch looked).
    fn stage(
        &mut self,
        business_id: Uuid,
        pseudonym: Option<&[u8; 32]>,
        unseen: bool,
        staged: Staged,
        events: Vec<StoredEvent>,
        response: Option<NewIdempotentResponse>,
    ) {
        self.note_written(business_id, pseudonym, unseen, &staged, &events);
        if let Some(subject) = staged.subject {
            if let Some(pseudonym) = pseudonym {
                self.found
                    .entry((business_id, *pseudonym))
                    .or_default()
                    .subject = Some(SubjectKeys {
                    id: subject.id,
                    wrapped_key: Some(subject.wrapped_key.clone()),
                });
            }
            self.subjects.push(subject);
        }
        self.facts.extend(staged.facts);
        self.events.extend(events);
        if let Some(response) = response {
            self.answered.insert(
                (response.business_id, response.key.clone()),
                self.responses.len(),
            );
            self.responses.push(response);
        }
    }

    /// Keeps the business's [`Delta`] exact, or gives it up: a write counts in
    /// it only when it is a planned write whose facts and events are all about
    /// one subject that the batch itself created (this write, for an `unseen`
    /// number, or an earlier write of the batch).
    fn note_written(
        &mut self,
        business_id: Uuid,
        pseudonym: Option<&[u8; 32]>,
        unseen: bool,
        staged: &Staged,
        events: &[StoredEvent],
    ) {
        let entry = self
            .written
            .entry(business_id)
            .or_insert_with(|| Some(HashMap::new()));
        let Some(subjects) = entry else { return };
        let exact = pseudonym.and_then(|pseudonym| {
            let subject_id = match (&staged.subject, subjects.get(pseudonym)) {
                (Some(created), None) if unseen => created.id,
                (None, Some((known, _))) => *known,
                _ => return None,
            };
            let about_it = staged
                .facts
                .iter()
                .all(|f| f.subject_id == subject_id && f.business_id == business_id)
                && events.iter().all(|e| e.subject_id == Some(subject_id));
            if !about_it {
                return None;
            }
            // As the database will hand them back (times truncated alike).
            let facts: Vec<Fact> = staged
                .facts
                .iter()
                .map(|f| FactRow::from(f).to_fact())
                .collect::<Result<_, _>>()
                .ok()?;
            Some((*pseudonym, subject_id, facts))
        });
        match exact {
            Some((pseudonym, subject_id, facts)) => subjects
                .entry(pseudonym)
                .or_insert_with(|| (subject_id, Vec::new()))
                .1
                .extend(facts),
            None => *entry = None,
        }
    }

    /// The [`Delta`] of a business whose head the batch moved from `from` to
    /// `to`, if the batch knows it exactly.
    fn delta(&mut self, business_id: Uuid, from: i64, to: i64) -> Option<Arc<Delta>> {
        let subjects = self.written.remove(&business_id)??;
        Some(Arc::new(Delta {
            from,
            to,
            histories: subjects
                .into_iter()
                .map(|(pseudonym, (_, facts))| (pseudonym, SubjectHistory::new(facts)))
                .collect(),
        }))
    }

    /// Inserts the staged subjects and facts (before a direct write reads the
    /// database, and at the end).
    fn flush(&mut self, conn: &mut DbConnection) -> Result<(), StoreError> {
        if !self.subjects.is_empty() {
            rows::insert_subjects(conn, &self.subjects)?;
            self.subjects.clear();
        }
        if !self.facts.is_empty() {
            rows::insert_facts(conn, &self.facts)?;
            self.facts.clear();
        }
        Ok(())
    }

    /// Inserts everything still staged: subjects, facts, the audit events and
    /// the stored responses. If any of it fails, the batch fails as a whole.
    fn finish(&mut self, conn: &mut DbConnection) -> Result<(), StoreError> {
        self.flush(conn)?;
        if !self.events.is_empty() {
            chain::insert_events(conn, &self.events)?;
        }
        if !self.responses.is_empty() {
            rows::insert_idempotent_responses(conn, &self.responses)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Box<dyn Job>>,
    /// Checkpoints the checkpoint thread signed, for the next batch to store.
    checkpoints: Vec<StoredCheckpoint>,
    closed: bool,
    /// How many writes the last batch took (see [`Gather`]).
    last_batch: usize,
    /// When the oldest write waiting was queued (for the batch's log line).
    since: Option<Instant>,
}

/// SQLite: a busy writer waits a little for its next batch to fill up. Each
/// commit costs an fsync of the WAL, and rewrites the last page of every b-tree
/// it appends to (and, with many businesses, of every business's range in
/// them), whatever the number of writes it holds; at half the maximum rate a
/// batch held 3.5-9 writes. So when the last batch held more than one write
/// (the writer is busy: an idle server's single write never waits) and fewer
/// than `target` are waiting, the writer waits up to `window` for that many.
/// With 16 businesses at 3,800 opt-ins/s, 8 rounds each, the p99 was 20.7-49.1
/// ms (5 rounds under 25 ms) with 2 ms and 16 writes, 18.5-129.0 ms (1 under
/// 25 ms) without; with one business at 4,500/s the p99 was about the same, the
/// p50 2-4 ms longer, the CPU per write a fifth to a third less (BENCHMARKS.md,
/// writes, session 11). PostgreSQL does not wait: its commits share their WAL
/// flushes through its own group commit, and its tail was not measured with it.
#[derive(Clone, Copy)]
struct Gather {
    window: Duration,
    target: usize,
}

/// The gather of a SQLite writer (see [`Gather`]).
const SQLITE_GATHER: Gather = Gather {
    window: Duration::from_millis(2),
    target: 16,
};

/// What one transaction of a shard takes: the writes waiting and the signed
/// checkpoints to store (either may be empty, not both).
struct Batch {
    jobs: Vec<Box<dyn Job>>,
    checkpoints: Vec<StoredCheckpoint>,
    /// How long its oldest write had waited when the writer took it. (After a
    /// batch that left writes waiting, [`MAX_BATCH`] of them, it counts from
    /// the oldest write of that batch instead: an upper bound.)
    waited: Duration,
}

/// One writer thread and its queue.
struct Shard {
    queue: Mutex<Queue>,
    wake: Condvar,
    gather: Option<Gather>,
}

impl Shard {
    fn start(
        index: usize,
        store: Store,
        checkpoints: Checkpoints,
        install: Arc<OnceLock<Install>>,
    ) -> Arc<Shard> {
        let shard = Arc::new(Shard {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            gather: (store.backend() == Backend::Sqlite).then_some(SQLITE_GATHER),
        });
        let worker = shard.clone();
        std::thread::Builder::new()
            .name(format!("consentgate-writer-{index}"))
            .spawn(move || worker.run(&store, &checkpoints, &install))
            .expect("the writer thread starts");
        shard
    }

    fn push(&self, job: Box<dyn Job>) -> Result<(), StoreError> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.closed {
            return Err(StoreError::Unavailable("the writer stopped".into()));
        }
        queue.waiting.push(job);
        if queue.waiting.len() == 1 {
            queue.since = Some(Instant::now());
        }
        // The writer waits only for a first write (or, gathering, for a full
        // batch): while it works it takes whatever queued meanwhile, so no other
        // push wakes it (a notify is a system call, one per write at these rates).
        let waiting = queue.waiting.len();
        let wake = waiting == 1 || self.gather.is_some_and(|g| waiting == g.target);
        drop(queue);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Queues a signed checkpoint for the next batch to store (waking the
    /// writer if nothing else waits).
    fn store_checkpoint(&self, checkpoint: StoredCheckpoint) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.closed {
            return;
        }
        queue.checkpoints.push(checkpoint);
        drop(queue);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.wake.notify_one();
    }

    /// Takes every write waiting (up to [`MAX_BATCH`]) and every checkpoint to
    /// store; `None` once closed and drained of writes.
    fn next_batch(&self) -> Option<Batch> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        while queue.waiting.is_empty() && queue.checkpoints.is_empty() && !queue.closed {
            queue = self.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
        if queue.waiting.is_empty() && queue.closed {
            return None;
        }
        if let Some(gather) = self.gather.filter(|g| {
            queue.last_batch > 1 && !queue.waiting.is_empty() && queue.waiting.len() < g.target
        }) {
            queue = self
                .wake
                .wait_timeout_while(queue, gather.window, |q| {
                    q.waiting.len() < gather.target && !q.closed
                })
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let take = queue.waiting.len().min(MAX_BATCH);
        queue.last_batch = take;
        let waited = queue.since.map_or(Duration::ZERO, |since| since.elapsed());
        let jobs: Vec<Box<dyn Job>> = queue.waiting.drain(..take).collect();
        if queue.waiting.is_empty() {
            queue.since = None;
        }
        Some(Batch {
            jobs,
            checkpoints: std::mem::take(&mut queue.checkpoints),
            waited,
        })
    }

    fn run(&self, store: &Store, checkpoints: &Checkpoints, install: &OnceLock<Install>) {
        let mut conn: Option<DbConnection> = None;
        while let Some(Batch {
            jobs: mut batch,
            checkpoints: signed,
            waited,
        }) = self.next_batch()
        {
            let mut deltas = HashMap::new();
            let mut timing = Timing::start();
            // The connection of the last batch, or a new one after a failure.
            let committed = match conn.take().map_or_else(|| store.writer_connection(), Ok) {
                Ok(c) => commit_batch(
                    store,
                    conn.insert(c),
                    &mut batch,
                    &signed,
                    &mut deltas,
                    &mut timing,
                ),
                Err(e) => Err(e),
            };
            match &committed {
                Ok(heads) => {
                    let (begin, apply, commit) = timing.split();
                    let installing = Instant::now();
                    if let Some(install) = install.get() {
                        for (business_id, delta) in &deltas {
                            install(*business_id, delta);
                        }
                    }
                    let install_us = installing.elapsed().as_micros() as u64;
                    tracing::debug!(
                        writes = batch.len(),
                        checkpoints = signed.len(),
                        waited_us = waited.as_micros() as u64,
                        begin_us = begin.as_micros() as u64,
                        apply_us = apply.as_micros() as u64,
                        commit_us = commit.as_micros() as u64,
                        install_us,
                        "a write batch committed"
                    );
                    for head in heads {
                        store.committed(head.business_id(), head.seq());
                    }
                    checkpoints.moved(heads);
                    store.wrote(batch.len() as u64);
                }
                Err(e) => {
                    // Its checkpoints are dropped: the next ones are due `every`
                    // events later, and the periodic job signs moved chains.
                    tracing::warn!(error = %e, writes = batch.len(), checkpoints = signed.len(), "a write batch did not commit");
                    // The connection may be broken: a new one for the next batch.
                    conn = None;
                }
            }
            let commit = committed.as_ref().map(|_| ());
            for job in batch {
                let delta = deltas.get(&job.business_id());
                job.acknowledge(commit, delta);
            }
        }
    }
}

/// One group commit: the batch's heads locked (one statement, in sorted order),
/// each write applied in turn (a direct one in its own savepoint), everything
/// staged inserted, the moved heads stored (one statement on PostgreSQL), the
/// signed checkpoints handed to the shard stored, one commit. Returns the moved
/// heads; `deltas` gets the [`Delta`] of each business that has one (it counts
/// only once the commit succeeded).
fn commit_batch(
    store: &Store,
    conn: &mut DbConnection,
    batch: &mut [Box<dyn Job>],
    signed: &[StoredCheckpoint],
    deltas: &mut HashMap<Uuid, Arc<Delta>>,
    timing: &mut Timing,
) -> Result<Vec<Head>, StoreError> {
    let heads = store.transaction(conn, |conn| {
        timing.applying();
        deltas.clear();
        let ids: Vec<Uuid> = batch.iter().map(|job| job.business_id()).collect();
        // No head, no business: its writes fail alone below. (A batch of
        // checkpoints alone locks nothing.)
        let locked = if ids.is_empty() {
            Vec::new()
        } else {
            chain::lock_heads(conn, &ids)?
        };
        let mut heads: HashMap<Uuid, (i64, Head)> = locked
            .into_iter()
            .map(|row| (row.business_id, (row.seq, Head::from(row))))
            .collect();
        let mut state = BatchState::new(batch.len());
        let mut savepoint = Savepoint::default();
        for i in 0..batch.len() {
            if !heads.contains_key(&batch[i].business_id()) {
                batch[i].fail(StoreError::NotFound);
                continue;
            }
            state.look_up(conn, batch, i)?;
            let job = &mut batch[i];
            let Some((_, head)) = heads.get_mut(&job.business_id()) else {
                continue;
            };
            let is_direct = job.pseudonym().is_none();
            if is_direct {
                // It reads the database: what the batch staged must be there.
                state.flush(conn)?;
                savepoint.set(conn)?;
            }
            let clock_now = store.clock().now();
            let applied = std::panic::catch_unwind(AssertUnwindSafe(|| {
                job.apply(conn, &mut state, head, clock_now)
            }))
            .unwrap_or_else(|_| Err(StoreError::Internal("a write panicked".into())));
            if let Err(e) = applied {
                if is_direct {
                    savepoint.roll_back(conn)?;
                }
                job.fail(e);
            }
        }
        state.finish(conn)?;
        let mut moved = Vec::new();
        for (start, head) in heads.into_values() {
            if head.seq() != start {
                if let Some(delta) = state.delta(head.business_id(), start, head.seq()) {
                    deltas.insert(head.business_id(), delta);
                }
                moved.push(head);
            }
        }
        let rows: Vec<_> = moved.iter().map(Head::to_row).collect();
        chain::save_heads(conn, &rows)?;
        checkpoints::store_signed(conn, &mut savepoint, signed)?;
        timing.committing();
        Ok(moved)
    });
    timing.done();
    heads
}

/// Where a batch's time went, for its debug line: waiting for the writer lock
/// and `BEGIN`, applying the writes, and the commit (the fsync or WAL flush).
struct Timing {
    marks: [Instant; 4],
}

impl Timing {
    fn start() -> Timing {
        Timing {
            marks: [Instant::now(); 4],
        }
    }
    fn applying(&mut self) {
        self.marks[1] = Instant::now();
    }
    fn committing(&mut self) {
        self.marks[2] = Instant::now();
    }
    fn done(&mut self) {
        self.marks[3] = Instant::now();
    }
    /// (lock and begin, apply, commit).
    fn split(&self) -> (Duration, Duration, Duration) {
        let [start, applying, committing, done] = self.marks;
        (
            applying.saturating_duration_since(start),
            committing.saturating_duration_since(applying),
            done.saturating_duration_since(committing),
        )
    }
}

/// The savepoint each write of a batch runs in, so that a write that fails
/// rolls back alone. One statement round trip per write instead of diesel's two
/// (`SAVEPOINT` before, `RELEASE` after): the previous write's savepoint is
/// released in the same round trip that sets the next one, and the commit
/// releases the last. On PostgreSQL each round trip is a network exchange the
/// batch waits for.
#[derive(Default)]
struct Savepoint {
    set: bool,
}

impl Savepoint {
    /// Marks the point the next write rolls back to.
    fn set(&mut self, conn: &mut DbConnection) -> Result<(), StoreError> {
        Store::savepoint_next(conn, std::mem::replace(&mut self.set, true))
    }

    /// Undoes everything since [`Savepoint::set`] (the savepoint stays, released
    /// by the next `set` or the commit).
    fn roll_back(&self, conn: &mut DbConnection) -> Result<(), StoreError> {
        Store::savepoint_roll_back(conn)
    }
}

/// How often the WAL of a SQLite database is checkpointed while writes come in
/// (see [`Store::writer_connection`]). Often, so that each pass, and the sync
/// of the database file after it, is small: the less the disk has of the
/// database file to write at once, the shorter the fsyncs of the WAL that the
/// writer's commits wait for. One business at 3,800 opt-ins/s, the writer's
/// commit had a p99 of 9.6-10.7 ms with a pass every 100 ms, 6.4-6.7 ms every
/// 50 ms, 4.3-5.8 ms every 25 ms and 2.6-3.3 ms every 10 ms; the p99 of the
/// server's own time per request went from 17.6-19.1 ms to 7.2-10.0 ms, for
/// 0.02-0.04 of a core more in this thread (BENCHMARKS.md, writes, session
/// 17). Session 9 had found 100 ms better than 250 ms.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(10);

/// How long the checkpoint thread sleeps after a pass that found nothing new to
/// copy (no write committed since the last one): an idle server is not woken
/// a hundred times a second. The first pass after writes resume copies at most
/// this long's worth of them.
const WAL_CHECKPOINT_IDLE: Duration = Duration::from_millis(100);

/// The pause before the next pass, after one that copied something new or not.
fn wal_checkpoint_pause(copied: bool) -> Duration {
    if copied {
        WAL_CHECKPOINT_EVERY
    } else {
        WAL_CHECKPOINT_IDLE
    }
}

/// SQLite: checkpoints the WAL beside the writer (whose own connection does not),
/// until the writer is gone.
fn start_wal_checkpoints(store: Store, writer: std::sync::Weak<Inner>) {
    std::thread::Builder::new()
        .name("consentgate-wal-checkpoints".into())
        .spawn(move || {
            let mut conn = None;
            let mut synced = None;
            let mut pause = WAL_CHECKPOINT_IDLE;
            loop {
                std::thread::sleep(pause);
                if writer.strong_count() == 0 {
                    return;
                }
                let checkpointed = match conn.as_mut() {
                    Some(c) => store.checkpoint_wal(c, &mut synced),
                    None => store
                        .dedicated_connection()
                        .and_then(|c| store.checkpoint_wal(conn.insert(c), &mut synced)),
                };
                let copied = checkpointed.unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "WAL checkpoint failed; retried");
                    conn = None;
                    false
                });
                pause = wal_checkpoint_pause(copied);
            }
        })
        .expect("the WAL checkpoint thread starts");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that is only queued, never run.
    struct Queued;

    impl Job for Queued {
        fn business_id(&self) -> Uuid {
            Uuid::nil()
        }
        fn idempotency_key(&self) -> Option<&str> {
            None
        }
        fn pseudonym(&self) -> Option<&[u8; 32]> {
            None
        }
        fn apply(
            &mut self,
            _: &mut DbConnection,
            _: &mut BatchState,
            _: &mut Head,
            _: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            unreachable!("never run")
        }
        fn fail(&mut self, _: StoreError) {}
        fn acknowledge(self: Box<Self>, _: Result<(), &StoreError>, _: Option<&Arc<Delta>>) {}
    }

    fn shard(gather: Option<Gather>, last_batch: usize) -> Arc<Shard> {
        Arc::new(Shard {
            queue: Mutex::new(Queue {
                last_batch,
                ..Queue::default()
            }),
            wake: Condvar::new(),
            gather,
        })
    }

    const SLOW: Gather = Gather {
        window: Duration::from_millis(400),
        target: 3,
    };

    fn timed_batch(shard: &Shard) -> (usize, Duration) {
        let start = std::time::Instant::now();
        let batch = shard.next_batch().expect("a batch");
        (batch.jobs.len(), start.elapsed())
    }

    #[test]
    fn a_busy_writer_waits_for_a_fuller_batch_and_no_longer_than_its_window() {
        // Busy (the last batch held 2), one write waiting: it waits out the window.
        let busy = shard(Some(SLOW), 2);
        busy.push(Box::new(Queued)).unwrap();
        let (taken, waited) = timed_batch(&busy);
        assert_eq!(taken, 1);
        assert!(waited >= SLOW.window, "waited {waited:?}");
        // That batch held one: the writer counts as idle, the next write goes at once.
        busy.push(Box::new(Queued)).unwrap();
        let (taken, waited) = timed_batch(&busy);
        assert_eq!(taken, 1);
        assert!(
            waited < SLOW.window,
            "an idle writer's write waited {waited:?}"
        );

        // Busy again: the target's arrival ends the wait early.
        let filling = shard(Some(SLOW), 5);
        filling.push(Box::new(Queued)).unwrap();
        let pusher = {
            let filling = filling.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                filling.push(Box::new(Queued)).unwrap();
                filling.push(Box::new(Queued)).unwrap();
            })
        };
        let (taken, waited) = timed_batch(&filling);
        pusher.join().unwrap();
        assert_eq!(taken, 3, "the batch filled to its target");
        assert!(
            waited < SLOW.window,
            "woken by the target, after {waited:?}"
        );
    }

    #[test]
    fn without_a_gather_a_busy_writer_takes_what_waits_at_once() {
        let plain = shard(None, 100);
        plain.push(Box::new(Queued)).unwrap();
        let (taken, waited) = timed_batch(&plain);
        assert_eq!(taken, 1);
        assert!(waited < SLOW.window, "waited {waited:?}");
    }

    #[test]
    fn closing_ends_a_gather_and_the_waiting_writes_are_still_taken() {
        let closing = shard(Some(SLOW), 2);
        closing.push(Box::new(Queued)).unwrap();
        let closer = {
            let closing = closing.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                closing.close();
            })
        };
        let (taken, waited) = timed_batch(&closing);
        closer.join().unwrap();
        assert_eq!(
            taken, 1,
            "the write queued before the close is still written"
        );
        assert!(
            waited < SLOW.window,
            "the close ended the wait after {waited:?}"
        );
        assert!(closing.next_batch().is_none(), "then the writer stops");
    }

    #[test]
    fn a_batch_reports_how_long_its_oldest_write_waited() {
        let plain = shard(None, 0);
        plain.push(Box::new(Queued)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        plain.push(Box::new(Queued)).unwrap();
        let batch = plain.next_batch().expect("a batch");
        assert_eq!(batch.jobs.len(), 2);
        assert!(
            batch.waited >= Duration::from_millis(30),
            "the first write waited {:?}",
            batch.waited
        );
        // The queue was emptied: the next write's wait starts when it is queued.
        std::thread::sleep(Duration::from_millis(30));
        plain.push(Box::new(Queued)).unwrap();
        let batch = plain.next_batch().expect("a batch");
        assert!(
            batch.waited < Duration::from_millis(30),
            "a write queued just now waited {:?}",
            batch.waited
        );
    }

    #[test]
    fn a_batch_timing_splits_into_begin_apply_and_commit() {
        let mut timing = Timing::start();
        std::thread::sleep(Duration::from_millis(5));
        timing.applying();
        std::thread::sleep(Duration::from_millis(10));
        timing.committing();
        std::thread::sleep(Duration::from_millis(15));
        timing.done();
        let (begin, apply, commit) = timing.split();
        assert!(begin >= Duration::from_millis(5), "{begin:?}");
        assert!(apply >= Duration::from_millis(10), "{apply:?}");
        assert!(commit >= Duration::from_millis(15), "{commit:?}");
        assert_eq!(
            begin + apply + commit,
            timing.marks[3] - timing.marks[0],
            "the three parts are the whole batch"
        );
    }
}
