//! The in-memory projection: each business's current consent state, so that a
//! live check is a hash lookup plus `Verdict::decide` instead of reading and
//! folding the subject's history (issue 10; SPEC sections 8 and 9).
//!
//! # What is kept
//! Per subject, 48 bytes: the first 16 bytes of its pseudonym (a 128-bit key: an
//! accidental match among a business's subjects has odds around 2^-88) and its
//! [`LiveState`], the instant-independent verdict of every category packed into
//! 32 bytes. Subjects whose categories are decided by different opt-ins keep
//! their unpacked `Summary` on the side, and so do window expiries (most subjects
//! never wrote). The index is sixteen `hashbrown::HashTable`s of `u32` positions
//! into dense chunks of entries (never moved once written, so growing copies
//! nothing), hashed by the pseudonym's own bytes (already uniformly random). So
//! no install holds the index for long: growing moves no entry, and a table
//! that doubles rehashes a sixteenth of the subjects. Unknown numbers, most of a
//! campaign, cost one probe.
//!
//! # Why it never answers a stale "yes" (zero stale allows)
//! The audit chain of a business is its change log: contiguous sequence numbers,
//! committed in order under the head's lock, each event naming the subject or key
//! it is about. A business's view records `applied`, the chain head whose state it
//! reflects exactly. Before a check is answered from memory, the node reads the
//! business's head (the fence in `store::fence`: one query for every check waiting
//! at that moment, started after they arrived) and, if the view is behind, catches
//! up: in one snapshot, it reads the head again, the subjects and keys touched by
//! the events since `applied`, and their current histories, folds them and installs
//! them. So every change committed before the check arrived, on any node, is in
//! the view that answers it. A write is acknowledged only after its node caught up
//! to the write's own sequence number (write-through), so the writer's own next
//! check needs no database read either. A batch of new numbers' opt-ins (the
//! common write) is installed by the writer itself, from the rows it wrote,
//! before it publishes the batch's head to this node's fences and before it
//! acknowledges any of it (`crate::writer::Install`): so this node's checks never
//! find the head ahead of the view because of its own opt-ins, and never wait
//! for a catch-up to read them back. When the fence or the catch-up cannot
//! read the store, the check fails closed (503, `allowed: false`).
//!
//! Installs happen only under the view's apply lock, and each catch-up reads under
//! it, so an install never replaces a newer state with an older one.
//!
//! This module is part of the application layer: it knows neither actix nor
//! diesel (the store runs the statements).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crossbeam_utils::sync::ShardedLock;

use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use uuid::Uuid;

use super::Keyring;
use crate::crypto::pseudonym::PseudonymKey;
use crate::domain::history::SubjectHistory;
use crate::policy::{
    Category, Decision, LiveState, Moment, Policy, PolicySet, SubjectState, Summary, Verdict,
};
use crate::store::keys::KeyCredentials;
use crate::store::projection::{self as rows, Touched};
use crate::store::{Store, StoreError};
use crate::writer::Delta;

/// Every business's view, loaded on first use (and all at start-up).
pub struct Projection {
    store: Store,
    keys: Arc<Keyring>,
    policies: Arc<PolicySet>,
    /// Read by every request on every worker: a sharded lock, so readers on
    /// different cores do not all write one lock word (a cache line bouncing
    /// between cores on every check); likewise `api_keys` and each view's index.
    views: ShardedLock<HashMap<Uuid, Arc<BusinessView>>>,
    /// Serialises the first load of a view.
    loading: tokio::sync::Mutex<()>,
    /// API key rows (scopes, revocation, secret hash), kept coherent with the
    /// chain like the consent state: a catch-up evicts every key a `key.created`
    /// or `key.revoked` event names, and a key is (re)loaded only under its
    /// business's apply lock, so no eviction can slip between the read and the
    /// insert. So a key revoked through any node is refused by this node's next
    /// request, without a database read per request.
    api_keys: ShardedLock<HashMap<Uuid, Arc<KeyCredentials>>>,
    /// Write-throughs installed from their batch's rows ([`Delta`]), no read.
    from_batches: AtomicU64,
    /// Catch-ups that read the database (the view was behind).
    catch_ups: AtomicU64,
}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projection").finish_non_exhaustive()
    }
}

/// One business's view: what its live checks are answered from.
pub struct BusinessView {
    business_id: Uuid,
    policy: Arc<Policy>,
    pseudonym_key: PseudonymKey,
    index: ShardedLock<Index>,
    /// The chain head the index reflects exactly.
    applied: AtomicI64,
    /// Held while catching up or installing.
    apply: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for BusinessView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusinessView")
            .field("business_id", &self.business_id)
            .field("applied", &self.applied.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

/// A subject in the index: 48 bytes.
#[derive(Clone, Copy)]
struct Entry {
    key: [u8; 16],
    state: LiveState,
}

/// The index's entries, in chunks of [`CHUNK`] that never move once full:
/// growing adds a chunk instead of reallocating (and copying) every entry. A
/// single `Vec` grown by an eighth at a time was copied, and its new pages
/// faulted in, under the index's write lock and the view's apply lock: 30-45 ms
/// with 300,000-480,000 subjects, every 4-5 s at 8,000 new subjects a second,
/// while no check of the business could read it and no write of it could be
/// acknowledged (BENCHMARKS.md, writes, session 16).
#[derive(Default)]
struct Entries {
    chunks: Vec<Vec<Entry>>,
}

/// Entries per chunk: 4,096 of 48 bytes, 192 KiB. Only the first chunk grows
/// (as a `Vec` does, doubling), so a small business holds little more than it
/// needs; a large one wastes at most the unused part of its last chunk.
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;

impl Entries {
    /// Every chunk but the last is full.
    fn len(&self) -> usize {
        self.chunks
            .last()
            .map_or(0, |last| (self.chunks.len() - 1) * CHUNK + last.len())
    }

    /// The chunk and the place in it of the entry at `position`.
    fn slot(position: u32) -> (usize, usize) {
        (
            (position >> CHUNK_BITS) as usize,
            position as usize & (CHUNK - 1),
        )
    }

    fn get(&self, position: u32) -> &Entry {
        let (chunk, at) = Self::slot(position);
        &self.chunks[chunk][at]
    }

    fn set(&mut self, position: u32, entry: Entry) {
        let (chunk, at) = Self::slot(position);
        self.chunks[chunk][at] = entry;
    }

    fn push(&mut self, entry: Entry) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(entry),
            _ => {
                let mut chunk = Vec::with_capacity(if self.chunks.is_empty() { 1 } else { CHUNK });
                chunk.push(entry);
                self.chunks.push(chunk);
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<Entry>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<Entry>>()
    }
}

/// The index's hash table, in [`TABLES`] tables picked by a byte of the key
/// that the hash does not use. A table that is full doubles, rehashing every
/// position it holds (each a read of a random entry): one table of 458,752
/// subjects took 34 ms to, under the index's write lock. Split, each table
/// doubles on its own (about when the others do, the keys being uniform, but
/// one at a time), so one install holds the lock for a sixteenth of that.
const TABLES: usize = 16;

#[derive(Default)]
struct Index {
    tables: [HashTable<u32>; TABLES],
    entries: Entries,
    /// Window expiries, by entry position.
    windows: HashMap<u32, DateTime<Utc>>,
    /// Summaries that do not pack, by entry position.
    spilled: HashMap<u32, Summary>,
}

fn key_of(pseudonym: &[u8; 32]) -> [u8; 16] {
    let mut key = [0u8; 16];
    key.copy_from_slice(&pseudonym[..16]);
    key
}

fn hash_of(key: &[u8; 16]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&key[..8]);
    u64::from_le_bytes(bytes)
}

/// Which of the index's tables holds the key: a byte past those it hashes.
fn table_of(key: &[u8; 16]) -> usize {
    usize::from(key[8]) % TABLES
}

impl Index {
    fn find(&self, key: &[u8; 16]) -> Option<u32> {
        self.tables[table_of(key)]
            .find(hash_of(key), |&i| self.entries.get(i).key == *key)
            .copied()
    }

    fn install(&mut self, pseudonym: &[u8; 32], summary: Summary) {
        let key = key_of(pseudonym);
        let packed = LiveState::pack(&summary);
        let state = packed.unwrap_or_else(|| {
            // Kept unpacked on the side; the packed form only flags the window.
            LiveState::pack(&Summary {
                blocked: summary.blocked,
                window_until: summary.window_until,
                verdicts: Vec::new(),
            })
            .expect("an empty summary packs")
        });
        let position = match self.find(&key) {
            Some(position) => {
                self.entries.set(position, Entry { key, state });
                position
            }
            None => {
                let position = u32::try_from(self.entries.len())
                    .expect("fewer than 4 billion subjects per business and node");
                self.entries.push(Entry { key, state });
                let entries = &self.entries;
                self.tables[table_of(&key)]
                    .insert_unique(hash_of(&key), position, |&i| hash_of(&entries.get(i).key));
                position
            }
        };
        match summary.window_until {
            Some(until) => self.windows.insert(position, until),
            None => self.windows.remove(&position),
        };
        match packed {
            Some(_) => self.spilled.remove(&position),
            None => self.spilled.insert(position, summary),
        };
    }

    /// The subject's verdict for the category at `index`, whether it blocked, and
    /// its window; an unknown subject has the default verdict.
    /// Heap bytes held: the entries' and the table's allocations, and the side
    /// maps' (estimated from their capacity and entry size).
    fn heap_bytes(&self) -> usize {
        fn map_bytes<K, V>(map: &HashMap<K, V>) -> usize {
            // std's map is hashbrown: a slot of (K, V) plus one control byte each.
            map.capacity() * (std::mem::size_of::<(K, V)>() + 1)
        }
        self.entries.heap_bytes()
            + self
                .tables
                .iter()
                .map(HashTable::allocation_size)
                .sum::<usize>()
            + map_bytes(&self.windows)
            + map_bytes(&self.spilled)
            + self
                .spilled
                .values()
                .map(|s| s.verdicts.capacity() * std::mem::size_of::<Verdict>())
                .sum::<usize>()
    }

    fn verdict(&self, key: &[u8; 16], index: usize) -> (Verdict, bool, Option<DateTime<Utc>>) {
        self.known_verdict(key, index)
            .unwrap_or((Verdict::default(), false, None))
    }

    /// [`Index::verdict`] of a known subject; `None` when the key is unknown.
    fn known_verdict(
        &self,
        key: &[u8; 16],
        index: usize,
    ) -> Option<(Verdict, bool, Option<DateTime<Utc>>)> {
        let position = self.find(key)?;
        let entry = self.entries.get(position);
        let window = if entry.state.has_window() {
            self.windows.get(&position).copied()
        } else {
            None
        };
        Some(match self.spilled.get(&position) {
            Some(summary) => (
                summary.verdicts.get(index).copied().unwrap_or_default(),
                summary.blocked,
                window,
            ),
            None => (entry.state.verdict(index), entry.state.blocked(), window),
        })
    }
}

/// A number as the check path looks it up.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// The pseudonym under the business's key.
    pub pseudonym: [u8; 32],
    pub calling_code: u16,
}

impl BusinessView {
    pub fn business_id(&self) -> Uuid {
        self.business_id
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The business's pseudonym key (kept, so a check derives nothing).
    pub fn pseudonym_key(&self) -> &PseudonymKey {
        &self.pseudonym_key
    }

    /// The chain head this view reflects.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Whether the subject with this pseudonym is known (a stored, validated
    /// number, or an erased one kept as a suppression marker).
    pub fn contains(&self, pseudonym: &[u8; 32]) -> bool {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index.find(&key_of(pseudonym)).is_some()
    }

    /// The live decision for a subject at `now` (the caller made the view fresh).
    pub fn decide(
        &self,
        pseudonym: &[u8; 32],
        category: &Category,
        calling_code: Option<u16>,
        now: DateTime<Utc>,
    ) -> Decision {
        self.decide_known(pseudonym, category, calling_code, now)
            .unwrap_or_else(|| {
                Verdict::default().decide(&self.policy, category, false, None, calling_code, now)
            })
    }

    /// [`BusinessView::decide`] for a known subject, in one lookup; `None` when
    /// no subject has this pseudonym (the caller then tells an unknown number from
    /// an invalid one).
    pub fn decide_known(
        &self,
        pseudonym: &[u8; 32],
        category: &Category,
        calling_code: Option<u16>,
        now: DateTime<Utc>,
    ) -> Option<Decision> {
        let position = self.policy.category_index(category).unwrap_or(usize::MAX);
        let (verdict, blocked, window) = {
            let index = self.index.read().unwrap_or_else(|p| p.into_inner());
            index.known_verdict(&key_of(pseudonym), position)?
        };
        Some(verdict.decide(&self.policy, category, blocked, window, calling_code, now))
    }

    /// Several decisions under one read of the index (a campaign's batch).
    pub fn decide_many<'a, T>(
        &self,
        lookups: impl Iterator<Item = (T, Option<&'a [u8; 32]>, Option<u16>)>,
        category: &Category,
        now: DateTime<Utc>,
        mut answer: impl FnMut(T, Option<Decision>),
    ) {
        let position = self.policy.category_index(category).unwrap_or(usize::MAX);
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        for (item, pseudonym, calling_code) in lookups {
            let decision = pseudonym.map(|pseudonym| {
                let (verdict, blocked, window) = index.verdict(&key_of(pseudonym), position);
                verdict.decide(&self.policy, category, blocked, window, calling_code, now)
            });
            answer(item, decision);
        }
    }

    /// How many subjects the view holds.
    pub fn len(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes the view's index holds (what the hot path keeps per subject).
    pub fn heap_bytes(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .heap_bytes()
    }

    fn install_histories(&self, histories: &[([u8; 32], SubjectHistory)], now: DateTime<Utc>) {
        let summaries: Vec<([u8; 32], Summary)> = histories
            .iter()
            .map(|(pseudonym, history)| {
                let state = SubjectState::fold(history, &self.policy, Moment::Live(now));
                (*pseudonym, state.summary(&self.policy))
            })
            .collect();
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        for (pseudonym, summary) in summaries {
            index.install(&pseudonym, summary);
        }
    }
}

impl Projection {
    pub fn new(store: Store, keys: Arc<Keyring>, policies: Arc<PolicySet>) -> Projection {
        Projection {
            store,
            keys,
            policies,
            views: ShardedLock::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
            api_keys: ShardedLock::new(HashMap::new()),
            from_batches: AtomicU64::new(0),
            catch_ups: AtomicU64::new(0),
        }
    }

    /// A loaded policy by name, borrowed (no reference count taken).
    pub fn policy_ref(&self, name: &str) -> Option<&Arc<Policy>> {
        self.policies.get_ref(name)
    }

    /// Makes the business's view fresh (see [`Projection::fresh`]) without taking
    /// a reference to it: the hot path's fence. When the view is loaded and
    /// already at the head the fence reads, that is one read of the view map (a
    /// sharded lock, no shared write) and the fence itself; otherwise the view is
    /// loaded, or caught up to that head. Afterwards
    /// [`Projection::with_view`] finds a view holding every change committed before
    /// this call (views are never replaced nor dropped once loaded, and `applied`
    /// only grows).
    pub async fn fence(&self, business_id: Uuid, policy: &Arc<Policy>) -> Result<(), StoreError> {
        let applied = match self.with_view(business_id, BusinessView::applied) {
            Some(applied) => applied,
            None => self.view_with(business_id, policy).await?.applied(),
        };
        // `applied` read first: it only grows, so a view at least at the head
        // read afterwards holds every change committed before this call.
        let head = self.store.fresh_head(business_id).await?;
        if applied < head {
            // Under the view's apply lock, a no-op if another caught it up.
            let view = self.view_with(business_id, policy).await?;
            self.catch_up(&view, head).await?;
        }
        Ok(())
    }

    /// Runs `f` on the business's view, borrowed under the view map's read lock
    /// (no reference count taken: every worker incrementing one view's count would
    /// bounce its cache line between cores on every check); `None` when the view is
    /// not loaded. The view is as fresh as the caller made it ([`Projection::fence`]).
    pub fn with_view<R>(&self, business_id: Uuid, f: impl FnOnce(&BusinessView) -> R) -> Option<R> {
        self.views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&business_id)
            .map(|view| f(view))
    }

    /// Subjects held and heap bytes of all loaded views, for `/metrics`.
    pub fn footprint(&self) -> (usize, usize) {
        let views: Vec<Arc<BusinessView>> = self
            .views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        views.iter().fold((0, 0), |(n, bytes), v| {
            (n + v.len(), bytes + v.heap_bytes())
        })
    }

    /// Runs `f` on a key's row as last loaded, borrowed under the key map's read
    /// lock (no reference count taken); `None` when this node does not hold it.
    pub fn with_key<R>(&self, key_id: Uuid, f: impl FnOnce(&KeyCredentials) -> R) -> Option<R> {
        self.api_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key_id)
            .map(|creds| f(creds))
    }

    /// Loads a key's row from the store and keeps it (`None`: no such key, which
    /// is not kept). The row is read under its business's apply lock.
    pub async fn load_key(&self, key_id: Uuid) -> Result<Option<Arc<KeyCredentials>>, StoreError> {
        let Some(first) = self.store.key_credentials(key_id).await? else {
            return Ok(None);
        };
        let Some(policy) = self.policies.get(&first.policy) else {
            return Err(StoreError::Unavailable(format!(
                "policy {} is not loaded",
                first.policy
            )));
        };
        let view = self.view_with(first.key.business_id, &policy).await?;
        let _apply = view.apply.lock().await;
        let found = self.store.key_credentials(key_id).await?.map(Arc::new);
        let mut keys = self.api_keys.write().unwrap_or_else(|p| p.into_inner());
        match &found {
            Some(creds) => keys.insert(key_id, creds.clone()),
            None => keys.remove(&key_id),
        };
        Ok(found)
    }

    /// Replaces a kept key's secret hash by another form of the same secret (a
    /// legacy hash verified and rewritten): no chain event marks that change.
    pub fn rehashed_key(&self, key_id: Uuid, secret_hash: String) {
        let mut keys = self.api_keys.write().unwrap_or_else(|p| p.into_inner());
        if let Some(creds) = keys.get(&key_id) {
            let mut creds = (**creds).clone();
            creds.secret_hash = secret_hash;
            keys.insert(key_id, Arc::new(creds));
        }
    }

    /// Loads every business's view (at start-up, before serving).
    pub async fn load_all(&self) -> Result<usize, StoreError> {
        let businesses = self
            .store
            .run(crate::store::ledger::businesses_and_policies)
            .await?;
        let mut subjects = 0;
        for (business_id, policy) in businesses {
            if let Some(policy) = self.policies.get(&policy) {
                subjects += self.view_with(business_id, &policy).await?.len();
            }
        }
        Ok(subjects)
    }

    /// The business's view, fresh: every change committed before this call, on
    /// any node, is in it. Fails closed when freshness cannot be proved.
    pub async fn fresh(
        &self,
        business_id: Uuid,
        policy: &Arc<Policy>,
    ) -> Result<Arc<BusinessView>, StoreError> {
        self.fence(business_id, policy).await?;
        self.view_with(business_id, policy).await
    }

    /// After a write of this business committed: bring the view up to it before
    /// the write is acknowledged (write-through). Failing to, the view stays
    /// behind and the next check's fence catches up; the write itself stands.
    pub async fn refresh(&self, business_id: Uuid, policy: &Arc<Policy>) {
        if let Err(e) = self.fresh(business_id, policy).await {
            tracing::warn!(%business_id, error = %e, "projection write-through failed; the next check catches up");
        }
    }

    /// Write-through with a known target: after a write committed at chain head
    /// `seq`, bring the view up to at least `seq` (nothing to do when a catch-up
    /// already got there; no fence read either way). With the write's batch's
    /// [`Delta`], a view exactly at the batch's start installs the histories the
    /// batch wrote instead of reading them back; any other view catches up.
    pub async fn refresh_to(
        &self,
        business_id: Uuid,
        policy: &Arc<Policy>,
        seq: i64,
        delta: Option<&Delta>,
    ) {
        let caught_up = async {
            let view = self.view_with(business_id, policy).await?;
            if view.applied() >= seq {
                return Ok(());
            }
            if let Some(delta) = delta
                && self.apply_delta(&view, delta).await
            {
                return Ok(());
            }
            if view.applied() < seq {
                self.catch_up(&view, seq).await?;
            }
            Ok::<_, StoreError>(())
        };
        if let Err(e) = caught_up.await {
            tracing::warn!(%business_id, error = %e, "projection write-through failed; the next check catches up");
        }
    }

    /// Installs a batch's [`Delta`] when the view reflects the chain exactly at
    /// the batch's start (then it reflects it exactly at the batch's end);
    /// false when it does not (it is behind: a catch-up reads the rest; or
    /// past it already).
    async fn apply_delta(&self, view: &BusinessView, delta: &Delta) -> bool {
        let _apply = view.apply.lock().await;
        self.install_delta(view, delta)
    }

    /// [`Projection::apply_delta`] on the writer's thread, before the batch is
    /// published or acknowledged (see [`crate::writer::Install`]). It never
    /// waits: when a load or a catch-up holds the view's apply lock (reading,
    /// for as long as a reload of the whole business takes), the batch's writes
    /// bring the view up themselves before they are acknowledged, as each write
    /// does anyway ([`Projection::refresh_to`]). A business whose view is not
    /// loaded has nothing to install: its first use loads it.
    pub fn install_committed(&self, business_id: Uuid, delta: &Delta) {
        let Some(view) = self.get(business_id) else {
            return;
        };
        if let Ok(_apply) = view.apply.try_lock() {
            self.install_delta(&view, delta);
        }
    }

    /// Installs `delta` if the view is exactly at its start; the caller holds
    /// the view's apply lock.
    fn install_delta(&self, view: &BusinessView, delta: &Delta) -> bool {
        if view.applied() != delta.from {
            return false;
        }
        view.install_histories(&delta.histories, self.store.clock().now());
        view.applied.store(delta.to, Ordering::Release);
        self.from_batches.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// How many write-throughs were installed from the rows their batch wrote
    /// (a [`Delta`]) rather than read back by a catch-up.
    pub fn installed_from_batches(&self) -> u64 {
        self.from_batches.load(Ordering::Relaxed)
    }

    /// How many catch-ups read the database (a view behind the head it had to
    /// reach: another node's writes, a write of this node's that its batch
    /// could not hand over, a CLI process's).
    pub fn catch_ups(&self) -> u64 {
        self.catch_ups.load(Ordering::Relaxed)
    }

    async fn view_with(
        &self,
        business_id: Uuid,
        policy: &Arc<Policy>,
    ) -> Result<Arc<BusinessView>, StoreError> {
        if let Some(view) = self.get(business_id) {
            return Ok(view);
        }
        let _loading = self.loading.lock().await;
        if let Some(view) = self.get(business_id) {
            return Ok(view);
        }
        let view = Arc::new(BusinessView {
            business_id,
            pseudonym_key: self.keys.pseudonym_key(business_id),
            policy: policy.clone(),
            index: ShardedLock::new(Index::default()),
            applied: AtomicI64::new(0),
            apply: tokio::sync::Mutex::new(()),
        });
        self.load(&view).await?;
        self.views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(business_id, view.clone());
        Ok(view)
    }

    /// The business's view, if loaded (a reference taken: for batches and
    /// streams, not the single check).
    pub fn get(&self, business_id: Uuid) -> Option<Arc<BusinessView>> {
        self.views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&business_id)
            .cloned()
    }

    /// Loads every subject of the business, in one snapshot with its head, page
    /// by page (so a million subjects never sit in memory as histories at once).
    async fn load(&self, view: &Arc<BusinessView>) -> Result<(), StoreError> {
        let _apply = view.apply.lock().await;
        let business_id = view.business_id;
        let target = view.clone();
        let now = self.store.clock().now();
        let head = self
            .store
            .run(move |conn| {
                Store::read_snapshot(conn, |conn| {
                    let head = rows::head_seqs(conn, &[business_id])?
                        .get(&business_id)
                        .copied()
                        .ok_or(StoreError::NotFound)?;
                    let mut markers = rows::suppression_markers_of(conn, business_id)?;
                    let mut after: Option<String> = None;
                    loop {
                        let page = rows::history_page(conn, business_id, after.as_deref())?;
                        let Some((last, ..)) = page.last() else { break };
                        after = Some(last.clone());
                        let histories: Vec<_> = page
                            .into_iter()
                            .map(|(_, pseudonym, mut history)| {
                                if let Some(at) = markers.remove(&pseudonym) {
                                    history.facts.push(erased(at));
                                }
                                (pseudonym, history)
                            })
                            .collect();
                        target.install_histories(&histories, now);
                    }
                    // Erased numbers that never came back: only the marker.
                    let rest: Vec<_> = markers
                        .into_iter()
                        .map(|(pseudonym, at)| (pseudonym, SubjectHistory::new(vec![erased(at)])))
                        .collect();
                    target.install_histories(&rest, now);
                    Ok(head)
                })
            })
            .await?;
        view.applied.store(head, Ordering::Release);
        Ok(())
    }

    /// Brings the view up to at least `target` (a head committed before the
    /// caller asked). Single-flight per business: callers queue on the apply lock
    /// and find the work done.
    async fn catch_up(&self, view: &Arc<BusinessView>, target: i64) -> Result<(), StoreError> {
        let _apply = view.apply.lock().await;
        let applied = view.applied();
        if applied >= target {
            return Ok(());
        }
        self.catch_ups.fetch_add(1, Ordering::Relaxed);
        let business_id = view.business_id;
        let (head, touched, histories) = self
            .store
            .run(move |conn| {
                Store::read_snapshot(conn, |conn| {
                    let head = rows::head_seqs(conn, &[business_id])?
                        .get(&business_id)
                        .copied()
                        .ok_or(StoreError::NotFound)?;
                    let touched = rows::touched_since(conn, business_id, applied, head)?;
                    let histories = if touched.everything {
                        Vec::new()
                    } else {
                        rows::histories_of_subjects(conn, business_id, &touched.subjects)?
                    };
                    Ok((head, touched, histories))
                })
            })
            .await?;
        let Touched {
            everything, keys, ..
        } = touched;
        {
            let mut cached = self.api_keys.write().unwrap_or_else(|p| p.into_inner());
            for key_id in keys {
                cached.remove(&key_id);
            }
        }
        if everything {
            // A retention purge: reload the business (rare; outside the fast path).
            drop(_apply);
            return self.load(view).await;
        }
        view.install_histories(&histories, self.store.clock().now());
        view.applied.store(head, Ordering::Release);
        Ok(())
    }
}

fn erased(at: DateTime<Utc>) -> crate::domain::history::Fact {
    crate::domain::history::Fact::Erased {
        at,
        recorded_at: at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudonym(i: u32) -> [u8; 32] {
        // Uniform-looking leading bytes, as an HMAC's are: the table hashes them.
        let mut p = [0u8; 32];
        p[..8].copy_from_slice(
            &u64::from(i)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .to_le_bytes(),
        );
        p[8..12].copy_from_slice(&i.to_le_bytes());
        p
    }

    fn summary(blocked: bool) -> Summary {
        Summary {
            blocked,
            window_until: None,
            verdicts: Vec::new(),
        }
    }

    #[test]
    fn the_index_finds_every_subject_across_chunks_and_updates_in_place() {
        let mut index = Index::default();
        let n = 2 * CHUNK as u32 + 77;
        for i in 0..n {
            index.install(&pseudonym(i), summary(i % 3 == 0));
        }
        assert_eq!(index.entries.len(), n as usize);
        assert_eq!(index.entries.chunks.len(), 3);
        assert!(
            index.tables.iter().all(|t| t.len() > 400),
            "spread over the tables"
        );
        // Installing a known subject again replaces its entry, adds none.
        for i in (0..n).step_by(5) {
            index.install(&pseudonym(i), summary(i % 3 != 0));
        }
        assert_eq!(index.entries.len(), n as usize);
        for i in 0..n {
            let (_, blocked, _) = index.known_verdict(&key_of(&pseudonym(i)), 0).unwrap();
            let expected = if i % 5 == 0 { i % 3 != 0 } else { i % 3 == 0 };
            assert_eq!(blocked, expected, "subject {i}");
        }
        assert!(index.known_verdict(&key_of(&pseudonym(n)), 0).is_none());
        // Full chunks hold exactly their entries; the last one at most a chunk.
        let entries = index.entries.heap_bytes();
        let size = std::mem::size_of::<Entry>();
        assert!(entries >= n as usize * size && entries <= 3 * CHUNK * size + 1024);
    }

    #[test]
    fn a_small_index_holds_little_more_than_its_entries() {
        let mut index = Index::default();
        for i in 0..10 {
            index.install(&pseudonym(i), summary(false));
        }
        let size = std::mem::size_of::<Entry>();
        assert!(
            index.entries.heap_bytes() <= 16 * size + 1024,
            "not a whole chunk"
        );
    }
}
