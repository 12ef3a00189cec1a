//! Storage: the only module that knows diesel. One code path over SQLite (the
//! embedded default) and PostgreSQL through diesel's `MultiConnection`; the backend
//! is chosen from the URL scheme, never by trial.
//!
//! Diesel is synchronous: every call runs on the blocking thread pool through
//! [`Store::run`], so callers just `.await` a `Result<_, StoreError>`.
//!
//! The store only runs statements over plain row types: it locks, reads and
//! stores chain heads, inserts and reads events and checkpoints, and reads and
//! writes the ledger's tables. It owns no domain rule and knows neither the
//! chain's hashing nor checkpoint signing nor API key secrets: every state change
//! goes through `crate::writer` (batched, or in a transaction of its own), which
//! locks the head here, chains the change's audit events (the `audit` module),
//! inserts them in the same transaction (SPEC section 7), commits, and only then
//! tells this store ([`Store::committed`]) and acknowledges.
//!
//! Depends on `domain` (plain values it stores) and diesel; never on actix,
//! `audit` or `crypto`.

pub mod audit;
pub mod businesses;
pub mod channels;
pub mod durability;
pub mod fence;
pub mod keys;
pub mod lease;
pub mod ledger;
pub mod migrations;
pub mod projection;
pub(crate) mod rows;
pub mod schema;
pub mod statistics;
pub mod web;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, R2D2Connection};
use uuid::Uuid;

use crate::domain::time::Clock;

/// Rows per multi-row `INSERT` ([`insert_many!`]): 500 rows of at most 12
/// columns bind at most 6,000 parameters, well below SQLite's limit (32,766
/// since 3.32) and PostgreSQL's (65,535).
pub(crate) const ROWS_PER_INSERT: usize = 500;

/// Inserts a slice of `Insertable` rows into a table, [`ROWS_PER_INSERT`] rows
/// to a statement, on the backend's own connection: through the
/// `MultiConnection` enum every row would be its own statement on SQLite, and
/// each bound value is walked twice through the enum's backend. Full chunks go
/// in as arrays, whose statement diesel prepares once per connection (a slice's
/// is prepared anew each time); the rest as a slice. The row type must bind
/// `None` as NULL (`treat_none_as_default_value = false`), or SQLite falls back
/// to one statement per row.
macro_rules! insert_many {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let conn: &mut $crate::store::DbConnection = $conn;
        let mut chunks = $rows.chunks_exact($crate::store::ROWS_PER_INSERT);
        let mut inserted = 0usize;
        for chunk in &mut chunks {
            let chunk: &[_; $crate::store::ROWS_PER_INSERT] = chunk
                .try_into()
                .expect("chunks_exact yields chunks of exactly this size");
            inserted += match &mut *conn {
                $crate::store::DbConnection::Sqlite(c) => {
                    diesel::insert_into($table).values(chunk).execute(c)?
                }
                $crate::store::DbConnection::Postgres(c) => {
                    diesel::insert_into($table).values(chunk).execute(c)?
                }
            };
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            inserted += match conn {
                // Row by row: a one-row statement's text never changes, so diesel
                // keeps it prepared, where a statement of `rest.len()` rows would be
                // parsed again on every batch (7% of the process's CPU at 2,000
                // opt-ins/s; BENCHMARKS.md, writes, session 8); SQLite has no
                // round trip to save.
                $crate::store::DbConnection::Sqlite(c) => {
                    let mut n = 0;
                    for row in rest {
                        n += diesel::insert_into($table)
                            .values(std::array::from_ref(row))
                            .execute(c)?;
                    }
                    n
                }
                $crate::store::DbConnection::Postgres(c) => {
                    diesel::insert_into($table).values(rest).execute(c)?
                }
            };
        }
        Ok::<usize, $crate::store::StoreError>(inserted)
    }};
}
pub(crate) use insert_many;

/// A connection to either backend. Backend-specific SQL matches on the variant.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// Which database, parsed from the URL scheme.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://<path>`: a file (created if missing).
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    // A PostgreSQL URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(_) => f.write_str("postgres://[redacted]"),
        }
    }
}

/// The URL names no backend this service has.
#[derive(Debug, thiserror::Error)]
#[error("must start with sqlite://, postgres:// or postgresql://")]
pub struct UnknownScheme;

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, UnknownScheme> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(UnknownScheme);
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else {
            Err(UnknownScheme)
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        }
    }
}

/// The two backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What can go wrong in storage, as the layers above need to tell it apart.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No such row (for this business).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule or a state rule refused the write; the code is stable.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database cannot be reached or did not answer in time. Checks fail
    /// closed on this.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read back (corruption or a bug).
    #[error("stored data unreadable: {0}")]
    Corrupt(String),
    /// Anything else diesel reports.
    #[error("store error: {0}")]
    Internal(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match e {
            E::NotFound => StoreError::NotFound,
            E::DatabaseError(K::UniqueViolation, _) => StoreError::Conflict("already_exists"),
            E::DatabaseError(K::ClosedConnection | K::SerializationFailure, info) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            E::DatabaseError(_, info)
                if info.message().contains("database is locked")
                    || info.message().contains("database is busy") =>
            {
                StoreError::Unavailable(info.message().to_owned())
            }
            E::BrokenTransactionManager | E::AlreadyInTransaction => {
                StoreError::Unavailable(e.to_string())
            }
            E::DeserializationError(inner) => StoreError::Corrupt(inner.to_string()),
            other => StoreError::Internal(other.to_string()),
        }
    }
}

impl From<r2d2::PoolError> for StoreError {
    fn from(e: r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// An Idempotency-Key and what identifies the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest {
    pub key: String,
    /// A keyed digest of the request (method, route, body).
    pub request_hash: [u8; 32],
    /// The status the fresh response is sent with.
    pub status: u16,
}

/// What an idempotent write did.
#[derive(Debug)]
pub enum Written<T> {
    /// Written now; `T` is the response.
    Fresh(T),
    /// A retry: the first response, as stored.
    Replayed(ledger::IdempotentResponse),
}

/// How long a SQLite connection waits for a lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5000;
/// How many frames the SQLite WAL may hold before [`Store::checkpoint_wal`]
/// holds the writers back to restart it (256 MiB with 4 KiB pages: at the
/// 90-100 MB/s a steady 5,000 opt-ins/s write, one short stall every ~3 s).
const WAL_RESTART_FRAMES: i32 = 65_536;
/// How long an erasure waits, at most, for SQLite's WAL to be truncated.
pub const WAL_SHRED_WAIT: Duration = Duration::from_secs(3);
/// How long one truncation attempt waits for readers to leave the WAL.
const WAL_SHRED_ATTEMPT_MS: u32 = 100;

/// What an erasure's deleted rows may still leave in the database's files, beyond
/// the reach of any query. Whatever is left is the wrapped data key and
/// ciphertext: it opens only with the master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// Nothing: SQLite's WAL was checkpointed into the database, whose freed space
    /// `secure_delete` zeroes, and truncated.
    Nothing,
    /// SQLite: readers kept the WAL from being truncated within [`WAL_SHRED_WAIT`];
    /// old page images stay in the WAL file until a later checkpoint truncates it
    /// (erasing again retries).
    WriteAheadLog,
    /// PostgreSQL: deleted row versions stay in the table files until VACUUM prunes
    /// them and new rows reuse the space, and in WAL segments, archives and backups
    /// until those are recycled or expire. Only VACUUM FULL (an exclusive lock)
    /// could rewrite the files, and nothing can rewrite WAL or backups.
    DeletedRowVersions,
}

/// The result row of `PRAGMA wal_checkpoint`.
#[derive(Debug, diesel::QueryableByName)]
struct WalCheckpoint {
    /// 1 when the checkpoint could not complete (a reader or writer was in the way).
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
    /// Frames in the WAL (-1 when not in WAL mode).
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
    /// Frames copied back into the database.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    checkpointed: i32,
}

impl WalCheckpoint {
    fn completed(&self) -> bool {
        self.busy == 0 && self.log == self.checkpointed
    }
}

fn wal_checkpoint_truncate(conn: &mut DbConnection) -> Result<WalCheckpoint, StoreError> {
    Ok(diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result(conn)?)
}

/// Opens connections for the pool, for the backend the URL names.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url)
                .map(DbConnection::Postgres)
                .map_err(r2d2::Error::ConnectionError),
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(r2d2::Error::ConnectionError)?;
                // One PRAGMA per batch, busy_timeout first so the others wait for a
                // lock instead of failing. WAL lets readers run beside the writer;
                // synchronous=FULL because an acknowledged consent change must
                // survive a power cut, not only a crash.
                for pragma in [
                    &format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};"),
                    "PRAGMA journal_mode = WAL;",
                    "PRAGMA synchronous = FULL;",
                    "PRAGMA foreign_keys = ON;",
                    // Crypto-shredding: a deleted data key must not linger in a free
                    // page, where the master key could still unwrap it.
                    "PRAGMA secure_delete = ON;",
                ] {
                    conn.batch_execute(pragma)
                        .map_err(r2d2::Error::QueryError)?;
                }
                let mut conn = DbConnection::Sqlite(conn);
                // Read back: a connection that would acknowledge a write it can
                // still lose is refused (see `durability`).
                let (mode, synchronous) = durability::sqlite_settings(&mut conn).map_err(|e| {
                    r2d2::Error::ConnectionError(ConnectionError::BadConnection(e.to_string()))
                })?;
                durability::check_sqlite(&mode, synchronous)
                    .map_err(|e| r2d2::Error::ConnectionError(ConnectionError::BadConnection(e)))?;
                Ok(conn)
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

type Pool = r2d2::Pool<ConnectionManager>;
pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

/// Settings for [`Store::connect`].
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub url: DatabaseUrl,
    pub pool_size: u32,
    /// How long a request waits for a free connection before the store counts as
    /// unavailable (and a check answers 503, never allow).
    pub acquire_timeout: Duration,
}

/// Gives each opened store its id.
static NEXT_STORE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The storage handle: a connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    backend: Backend,
    /// SQLite has one writer at a time anyway; queueing writers of this process on
    /// a mutex is fairer and faster than letting them spin in SQLite's busy handler.
    /// (Other processes, such as the CLI, still wait through busy_timeout.)
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// This node's clock.
    clock: Clock,
    /// The freshness fence (started on first use) and how it connects.
    fence: Arc<std::sync::OnceLock<fence::Fence>>,
    /// SQLite: the chain heads this process knows to be committed (the fence).
    watermarks: Arc<fence::Watermarks>,
    /// PostgreSQL: this node's lease (started on first use; see [`lease`]).
    lease: Arc<std::sync::OnceLock<lease::Lease>>,
    /// PostgreSQL: this node's id in `consentgate_nodes`.
    node_id: Uuid,
    /// Unique per opened store (keys connections kept per thread).
    id: u64,
    /// PostgreSQL: keeps planner statistics current (started on the first write).
    statistics: Arc<std::sync::OnceLock<statistics::Statistics>>,
    manager: ConnectionManager,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Store {
    /// Opens the pool. SQLite's file and its directory are created if missing.
    /// Fails when the database cannot be reached at all.
    pub fn connect(settings: &StoreSettings) -> Result<Store, StoreError> {
        if let DatabaseUrl::Sqlite(path) = &settings.url
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(1))
            .connection_timeout(settings.acquire_timeout)
            // Failed connection attempts are logged by r2d2 with their error text,
            // which for PostgreSQL may contain the host and user; we log ourselves.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(ConnectionManager {
                url: settings.url.clone(),
            })?;
        let backend = settings.url.backend();
        Ok(Store {
            pool,
            backend,
            sqlite_writer: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            clock: Clock::system(),
            fence: Arc::new(std::sync::OnceLock::new()),
            watermarks: Arc::new(fence::Watermarks::new(ConnectionManager {
                url: settings.url.clone(),
            })),
            lease: Arc::new(std::sync::OnceLock::new()),
            node_id: Uuid::now_v7(),
            id: NEXT_STORE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            statistics: Arc::new(std::sync::OnceLock::new()),
            manager: ConnectionManager {
                url: settings.url.clone(),
            },
        })
    }

    /// The business's chain head as of after this call: on PostgreSQL the head
    /// this node knows under its lease ([`lease`]), else read by the fence (one
    /// query serves every caller waiting at that moment; see [`fence`]). On
    /// SQLite, the head this process committed last (the file has one server;
    /// see [`fence`]'s documentation).
    pub async fn fresh_head(&self, business_id: Uuid) -> Result<i64, StoreError> {
        if self.backend == Backend::Sqlite {
            return self.watermarks.head(self.id, business_id);
        }
        let epoch = match self.lease().lookup(business_id) {
            lease::Lookup::Known(seq) => return Ok(seq),
            lease::Lookup::Read(epoch) => epoch,
        };
        let seq = self.read_head(business_id).await?;
        if let Some(epoch) = epoch {
            self.lease().resolve(business_id, epoch, seq);
        }
        Ok(seq)
    }

    /// PostgreSQL: the business's chain head, read through the fence now.
    async fn read_head(&self, business_id: Uuid) -> Result<i64, StoreError> {
        self.fence
            .get_or_init(|| fence::Fence::start(self.manager.clone()))
            .head(business_id)
            .await
    }

    /// This node's id in `consentgate_nodes` (PostgreSQL leases).
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// PostgreSQL: this node's lease, started on first use.
    pub fn lease(&self) -> &lease::Lease {
        self.lease
            .get_or_init(|| lease::Lease::start(self.manager.clone(), self.node_id))
    }

    /// A write of this process committed the business's chain up to `seq`: called
    /// after the commit and before the write is acknowledged, so that this
    /// process's next check sees it (on SQLite the fence is this number; on
    /// PostgreSQL it raises the lease's known head).
    pub fn committed(&self, business_id: Uuid, seq: i64) {
        match self.backend {
            Backend::Sqlite => self.watermarks.raise(business_id, seq),
            Backend::Postgres => {
                if let Some(lease) = self.lease.get() {
                    lease.raise(business_id, seq);
                }
            }
        }
    }

    /// After a write that may turn an answer into a no (anything but an opt-in)
    /// committed the business's chain up to `seq` (`None`: the head now), and
    /// before it is acknowledged: waits until every other node knows it
    /// (PostgreSQL, [`lease`]). Nothing to do on SQLite (one server per file).
    pub async fn propagate(&self, business_id: Uuid, seq: Option<i64>) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            return Ok(());
        }
        let seq = match seq {
            Some(seq) => seq,
            None => self.read_head(business_id).await?,
        };
        self.lease().propagate(business_id, seq).await
    }

    /// `rows` more ledger rows were committed by this node: on PostgreSQL, the
    /// planner statistics are refreshed each time the tables have about doubled
    /// (see [`statistics`]). Nothing on SQLite.
    pub fn wrote(&self, rows: u64) {
        if self.backend == Backend::Postgres {
            self.statistics
                .get_or_init(|| statistics::Statistics::start(self.manager.clone()))
                .wrote(rows);
        }
    }

    /// This store reads `clock` instead of the system clock (tests simulate nodes
    /// whose clocks disagree).
    pub fn with_clock(mut self, clock: Clock) -> Store {
        self.clock = clock;
        self
    }

    /// This node's clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// A connection of its own, outside the pool, set up like the pool's (for a
    /// long-lived worker such as the group-commit writer).
    pub fn dedicated_connection(&self) -> Result<DbConnection, StoreError> {
        use diesel::r2d2::ManageConnection;
        self.manager
            .connect()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// The group-commit writer's own connection. On SQLite it does not run WAL
    /// checkpoints when it commits (an automatic checkpoint copies pages back into
    /// the database and fsyncs it inside the writer's commit, stalling every
    /// write queued behind it); [`Store::checkpoint_wal`] does that off the
    /// writer's path. And it keeps a larger page cache than the pool's (the
    /// writer touches every index), but not a much larger one: after a commit
    /// whose b-tree pages were renumbered while splitting (most commits under
    /// load), SQLite scans its whole page-cache hash table, so the cache's size
    /// is paid at every commit (8 MiB: 3.5-4.2% of the writer's CPU samples
    /// against 8.2-9.6% with 32 MiB; BENCHMARKS.md, writes, session 12). The
    /// cache is the writer's own: SQLite is built without its shared page-cache
    /// pool (`.cargo/config.toml`), into which the writer's grew (session 13).
    pub fn writer_connection(&self) -> Result<DbConnection, StoreError> {
        let mut conn = self.dedicated_connection()?;
        if self.backend == Backend::Sqlite {
            for pragma in [
                "PRAGMA wal_autocheckpoint = 0;",
                "PRAGMA cache_size = -8192;",
            ] {
                conn.batch_execute(pragma)?;
            }
        }
        Ok(conn)
    }

    /// SQLite: copies what the WAL holds back into the database (`PASSIVE`: it
    /// never waits for a reader or a writer), and keeps the WAL from growing
    /// without end. With `synchronous=FULL` the database is fsynced before the
    /// WAL is reused, so nothing committed is ever only in memory. A no-op on
    /// PostgreSQL.
    ///
    /// The WAL restarts from its beginning only at a write transaction that
    /// begins when a checkpoint has copied every frame, and under a steady
    /// stream of batches a checkpoint beside the writer never has (the writer
    /// commits more frames while it copies): the WAL grew by every commit
    /// (540 MB in 10 s at 5,000 opt-ins/s, 949 MB in 8 s at 3,000/s;
    /// BENCHMARKS.md, writes, session 8) until the load paused. So once it
    /// holds more than [`WAL_RESTART_FRAMES`], this process's writers are held
    /// back (the in-process writer lock) while a second pass copies the few
    /// commits made during the first. With no writer in the way it completes
    /// (unless a reader still reads an older snapshot: the next call tries
    /// again), and the writer's next transaction restarts the WAL, overwriting
    /// its frames in place. The bulk of the copying, and the fsyncs of the
    /// database, stay beside the writer: after each pass beside it the database
    /// file is synced ([`sync_database_file`]), so the pass that holds the writer
    /// back has only its own few pages to sync. And before it holds the writer
    /// back, a second pass beside it copies (and syncs) what the writer committed
    /// during the first, so that the held pass copies only the last few
    /// milliseconds' commits: the writer was held 3.8 ms (median; 7.1 ms at most)
    /// instead of 7.0 ms (16.3 ms at most) at 4,500 opt-ins/s (BENCHMARKS.md,
    /// writes, session 11).
    ///
    /// `synced` is the caller's memory of how far the WAL was copied at the last
    /// sync: a pass that copied nothing new (an idle server) syncs nothing.
    /// Returns whether this call copied anything the last one had not (false:
    /// nothing was committed since, or nothing could be copied), so that the
    /// caller can pace its passes to the writes.
    pub fn checkpoint_wal(
        &self,
        conn: &mut DbConnection,
        synced: &mut Option<i32>,
    ) -> Result<bool, StoreError> {
        self.checkpoint_wal_at(conn, synced, WAL_RESTART_FRAMES)
    }

    /// [`Store::checkpoint_wal`] with the WAL restarted past `restart_frames`.
    fn checkpoint_wal_at(
        &self,
        conn: &mut DbConnection,
        synced: &mut Option<i32>,
        restart_frames: i32,
    ) -> Result<bool, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(false);
        }
        let before = *synced;
        let beside = self.checkpoint_beside(conn, synced)?;
        if beside.log > restart_frames {
            if beside.checkpointed < beside.log {
                self.checkpoint_beside(conn, synced)?;
            }
            let _writers = self
                .sqlite_writer
                .as_ref()
                .map(|lock| lock.lock().unwrap_or_else(|p| p.into_inner()));
            let _: WalCheckpoint =
                diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(conn)?;
        }
        Ok(*synced != before)
    }

    /// One PASSIVE pass beside the writer, then a sync of the database file if
    /// the pass copied anything new.
    fn checkpoint_beside(
        &self,
        conn: &mut DbConnection,
        synced: &mut Option<i32>,
    ) -> Result<WalCheckpoint, StoreError> {
        let pass: WalCheckpoint =
            diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(conn)?;
        if *synced != Some(pass.checkpointed) {
            self.sync_database_file()?;
            *synced = Some(pass.checkpointed);
        }
        Ok(pass)
    }

    /// SQLite: flushes to disk what checkpoints copied into the database file so
    /// far (an `fdatasync` of the file, beside the writer). SQLite syncs the
    /// database only at the end of a checkpoint that copied every frame; a
    /// checkpoint beside a busy writer never has, so without this every page
    /// copied since the last restart waited in memory for the one pass that holds
    /// the writer back, and its fsync stalled every write (3-71 ms every 1.5-2 s
    /// at 6,500 opt-ins/s; BENCHMARKS.md, writes, session 9). Another sync of the
    /// same file costs nothing in safety: it only makes data durable sooner.
    fn sync_database_file(&self) -> Result<(), StoreError> {
        let DatabaseUrl::Sqlite(path) = &self.manager.url else {
            return Ok(());
        };
        std::fs::File::open(path)
            .and_then(|f| f.sync_data())
            .map_err(|e| StoreError::Unavailable(format!("syncing the database file: {e}")))
    }

    /// Checks the durability settings (see [`durability`]) and returns what is
    /// wrong with them, to be logged as warnings at start; a SQLite connection
    /// without them was already refused.
    pub fn durability_warnings(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        match self.backend {
            Backend::Sqlite => {
                let (mode, synchronous) = durability::sqlite_settings(&mut conn)?;
                durability::check_sqlite(&mode, synchronous).map_err(StoreError::Unavailable)?;
                Ok(Vec::new())
            }
            Backend::Postgres => {
                let (synchronous_commit, fsync) = durability::postgres_settings(&mut conn)?;
                Ok(durability::postgres_warnings(&synchronous_commit, &fsync))
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A pooled connection, for blocking callers (the CLI, migrations).
    pub fn conn(&self) -> Result<PooledConnection, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Runs blocking diesel work on the blocking thread pool, in the caller's
    /// tracing span.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?
    }

    /// After an erasure: makes sure no copy of the deleted rows (the wrapped data
    /// key, the sealed number) stays in the database's files where this backend can
    /// prevent it, and says what may remain.
    ///
    /// SQLite: deleted rows live on in old page images in the WAL until a
    /// checkpoint copies the newest pages back into the database (where
    /// `secure_delete` zeroed the freed space) and the WAL is truncated. A
    /// `wal_checkpoint(TRUNCATE)` cannot complete while a reader still uses the WAL,
    /// so it is retried, each attempt waiting briefly and holding this process's
    /// writers back only for that attempt, for at most [`WAL_SHRED_WAIT`]; its
    /// result row (`busy`, `log`, `checkpointed`) says whether it completed.
    ///
    /// PostgreSQL: nothing here can remove them (see [`Leftover::DeletedRowVersions`]).
    pub async fn shred_after_erasure(&self) -> Result<Leftover, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(Leftover::DeletedRowVersions);
        }
        let lock = self.sqlite_writer.clone();
        self.run(move |conn| {
            let deadline = Instant::now() + WAL_SHRED_WAIT;
            let outcome = loop {
                let attempt = {
                    let _writers = lock
                        .as_ref()
                        .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
                    conn.batch_execute(&format!("PRAGMA busy_timeout = {WAL_SHRED_ATTEMPT_MS};"))
                        .map_err(StoreError::from)
                        .and_then(|()| wal_checkpoint_truncate(conn))
                };
                match attempt {
                    Ok(checkpoint) if checkpoint.completed() => break Ok(Leftover::Nothing),
                    // Busy: a reader (or another process's writer) still uses the WAL.
                    Ok(_) | Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(_) | Err(StoreError::Unavailable(_)) => break Ok(Leftover::WriteAheadLog),
                    Err(e) => break Err(e),
                }
            };
            // The pool's connections wait for locks as long as ever.
            conn.batch_execute(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};"))?;
            outcome
        })
        .await
    }

    /// Settings for a connection that writes a bulk import. SQLite: a page cache
    /// of 256 MiB (a million new subjects make index pages that a 2 MiB cache
    /// would read back from the OS again and again) and a WAL checkpointed every
    /// 512 MiB rather than every 4 MiB: each checkpoint reads the WAL back,
    /// writes every page it holds into the database and syncs it, and the
    /// random `(business_id, pseudonym)` index puts a page of its own into
    /// nearly every row's share of the WAL, so the fewer checkpoints, the more
    /// rewrites of the same page they absorb (1,000,000 rows: 16 s of system
    /// time at 64 MiB, 12 s at 512 MiB). The WAL file may grow to that size
    /// while the import runs. Durability is unchanged: every commit still syncs
    /// the WAL (`synchronous = FULL`). Undone by [`Store::end_bulk`].
    /// PostgreSQL: nothing to tune.
    pub fn begin_bulk(&self, conn: &mut DbConnection) -> Result<(), StoreError> {
        if let DbConnection::Sqlite(conn) = conn {
            for pragma in [
                "PRAGMA cache_size = -262144;",
                "PRAGMA wal_autocheckpoint = 131072;",
            ] {
                conn.batch_execute(pragma)?;
            }
        }
        Ok(())
    }

    /// Back to the pool's settings after [`Store::begin_bulk`].
    pub fn end_bulk(&self, conn: &mut DbConnection) -> Result<(), StoreError> {
        if let DbConnection::Sqlite(conn) = conn {
            for pragma in [
                "PRAGMA cache_size = -2000;",
                "PRAGMA wal_autocheckpoint = 1000;",
            ] {
                conn.batch_execute(pragma)?;
            }
        }
        Ok(())
    }

    /// Sets savepoint `write` in the transaction `conn` is in, first releasing
    /// the previous one when there is one (`release_previous`), in one round trip.
    pub fn savepoint_next(
        conn: &mut DbConnection,
        release_previous: bool,
    ) -> Result<(), StoreError> {
        conn.batch_execute(if release_previous {
            "RELEASE SAVEPOINT write; SAVEPOINT write"
        } else {
            "SAVEPOINT write"
        })?;
        Ok(())
    }

    /// Undoes everything since the last [`Store::savepoint_next`]; the savepoint
    /// stays (the next one, or the commit, releases it).
    pub fn savepoint_roll_back(conn: &mut DbConnection) -> Result<(), StoreError> {
        conn.batch_execute("ROLLBACK TO SAVEPOINT write")?;
        Ok(())
    }

    /// A write transaction, serialised with this process's other SQLite writers.
    pub(crate) fn transaction<T, F>(&self, conn: &mut DbConnection, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    {
        let _guard = self
            .sqlite_writer
            .as_ref()
            .map(|lock| lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        conn.transaction(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on a SQLite file of its own, with one pooled connection.
    fn sqlite_store(path: PathBuf) -> Store {
        Store::connect(&StoreSettings {
            url: DatabaseUrl::Sqlite(path),
            pool_size: 1,
            acquire_timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    /// The options the bundled SQLite was compiled with.
    fn compile_options() -> Vec<String> {
        #[derive(QueryableByName, Debug)]
        struct CompileOption {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path().join("options.db"));
        let options: Vec<CompileOption> = diesel::sql_query("PRAGMA compile_options")
            .load(&mut store.dedicated_connection().unwrap())
            .unwrap();
        options.into_iter().map(|o| o.compile_options).collect()
    }

    /// `.cargo/config.toml` builds the bundled SQLite with the query planner
    /// stability guarantee. Without it SQLite takes a bound `LIMIT ?` (every
    /// diesel `.first()`) for a constant when it prepares the statement, and
    /// prepares it again whenever the value is bound anew: at every use.
    #[test]
    fn the_bundled_sqlite_is_built_with_the_query_planner_stability_guarantee() {
        let options = compile_options();
        assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "{options:?}");
    }

    /// `.cargo/config.toml` undoes libsqlite3-sys's `SQLITE_ENABLE_MEMORY_MANAGEMENT`,
    /// which makes every connection's page cache one shared pool: the writer's
    /// cache grew into the other connections' share, and SQLite scans all of it
    /// after nearly every commit.
    #[test]
    fn each_sqlite_connection_keeps_a_page_cache_of_its_own() {
        let options = compile_options();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(options.iter().any(|o| o == "THREADSAFE=1"), "{options:?}");
    }

    #[test]
    fn the_database_file_synced_after_checkpoints_is_the_stores_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.db");
        let store = sqlite_store(path.clone());
        assert!(path.exists(), "the pool opened the file");
        store.sync_database_file().unwrap();
        // The file it syncs is the one the store opened: gone, the sync fails.
        std::fs::remove_file(&path).unwrap();
        assert!(store.sync_database_file().is_err());
    }

    #[test]
    fn a_wal_checkpoint_says_whether_it_copied_anything_new() {
        use diesel::connection::SimpleConnection as _;
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path().join("paced.db"));
        let mut writer = store.writer_connection().unwrap();
        writer
            .batch_execute("CREATE TABLE rows (n INTEGER PRIMARY KEY)")
            .unwrap();
        let mut conn = store.dedicated_connection().unwrap();
        let mut synced = None;
        assert!(store.checkpoint_wal(&mut conn, &mut synced).unwrap());
        // Nothing committed since: nothing new, and the thread slows down.
        assert!(!store.checkpoint_wal(&mut conn, &mut synced).unwrap());
        assert!(!store.checkpoint_wal(&mut conn, &mut synced).unwrap());
        writer
            .batch_execute("INSERT INTO rows (n) VALUES (1)")
            .unwrap();
        assert!(store.checkpoint_wal(&mut conn, &mut synced).unwrap());
        assert!(!store.checkpoint_wal(&mut conn, &mut synced).unwrap());
    }

    #[test]
    fn a_wal_past_its_restart_size_restarts_under_a_busy_writer_and_keeps_every_row() {
        use diesel::connection::SimpleConnection as _;
        use diesel::sql_types::Text;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path().join("wal.db"));
        let mut conn = store.dedicated_connection().unwrap();
        conn.batch_execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, value TEXT NOT NULL)")
            .unwrap();
        let (stop, inserted) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        // A writer committing without pause, under the writer lock as the
        // group-commit writer does, on a connection that never checkpoints.
        let writer = {
            let (store, stop, inserted) = (store.clone(), stop.clone(), inserted.clone());
            std::thread::spawn(move || {
                let mut conn = store.writer_connection().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let _lock = store.sqlite_writer.as_ref().unwrap().lock().unwrap();
                    let n = inserted.load(Ordering::Relaxed);
                    diesel::sql_query("INSERT INTO rows (n, value) VALUES (?, ?)")
                        .bind::<diesel::sql_types::BigInt, _>(n as i64)
                        .bind::<Text, _>("x".repeat(3000))
                        .execute(&mut conn)
                        .unwrap();
                    inserted.store(n + 1, Ordering::Relaxed);
                }
            })
        };
        let wait_for = |n: usize| {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while inserted.load(Ordering::Relaxed) < n {
                assert!(
                    !writer.is_finished() && std::time::Instant::now() < deadline,
                    "the writer stopped or stalled before {n} rows"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        wait_for(300);
        let mut synced = None;
        // Every commit adds at least one frame: without a restart the WAL holds
        // one per row at least. The writer restarts the WAL at its first commit
        // after the pass that held it back, unless another connection is reading
        // the WAL at that moment; then the next pass restarts it (the service
        // makes a pass every 10 ms under load). A few passes, then, as the
        // service would.
        let mut frames = Vec::new();
        for _ in 0..5 {
            store
                .checkpoint_wal_at(&mut conn, &mut synced, 100)
                .unwrap();
            let at_pass = inserted.load(Ordering::Relaxed);
            wait_for(at_pass + 10);
            let now: WalCheckpoint = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
                .get_result(&mut conn)
                .unwrap();
            frames.push((now.log, at_pass));
            if (now.log as usize) < at_pass {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        let total = inserted.load(Ordering::Relaxed);
        assert!(
            frames
                .iter()
                .any(|&(log, at_pass)| (log as usize) < at_pass),
            "the WAL did not restart: (frames, commits) after each pass {frames:?}"
        );
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows: Count = diesel::sql_query("SELECT COUNT(*) AS n FROM rows")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(rows.n as usize, total, "every committed row is there");
    }

    #[test]
    fn urls_pick_the_backend_from_the_scheme_and_refuse_others() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/x.db").unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("data/x.db"))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///abs/x.db").unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/abs/x.db"))
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db").unwrap().backend(),
            Backend::Postgres
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://u@h/db").unwrap().backend(),
            Backend::Postgres
        );
        for bad in ["mysql://h/db", "data/x.db", "sqlite://", "", "http://x"] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn debug_of_a_postgres_url_hides_credentials() {
        let url = DatabaseUrl::parse("postgres://user:hunter2@db/x").unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}
