//! PostgreSQL planner statistics, kept current while the ledger's tables grow.
//!
//! # Why
//! The projection's catch-up (`store::projection`) reads a batch of subjects and
//! their facts by pseudonym and by subject id. With statistics, PostgreSQL answers
//! that from the unique `(business_id, pseudonym)` index and `facts_by_subject`: a
//! nested loop, ~1 ms for 60 subjects whatever the table's size. Without them (a
//! table that grew since it was last analysed) it guesses: it scanned the whole
//! business through `(business_id, id)` and hashed a sequential scan of `facts`,
//! ~10 ms for the same 60 subjects with 10,000 rows and growing with every row.
//! Autovacuum analyses a table only after 10 % of it changed and at most once a
//! minute per database, so a new database taking thousands of writes a second
//! ran on guesses for its first minutes, and every write's catch-up got slower
//! as the tables grew (measured: `bench/write_http.sh`, issue 11).
//!
//! # What
//! A thread beside the writer counts the rows this node committed
//! ([`Statistics::wrote`]); whenever they reach as many as the tables held at
//! the last `ANALYZE` (at least [`MIN_ROWS`]), so each time the tables have
//! roughly doubled, it runs `ANALYZE` on the ledger's tables on a connection of
//! its own. That is a logarithmic number of runs as a database grows, each a
//! bounded sample (PostgreSQL reads at most 300 x `default_statistics_target`
//! rows per table), never on the writer's or a request's path. Once a table is
//! large, autovacuum's own threshold comes first anyway. SQLite needs none of
//! this: its queries are written so that they do not depend on statistics.
//!
//! The thread connects only to run `ANALYZE` and lets the connection go after, so
//! it never holds a database open (tests drop theirs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::ManageConnection;

use super::{ConnectionManager, DbConnection, StoreError};

/// Rows written before the first `ANALYZE` of a new database, and the least
/// between two.
pub const MIN_ROWS: u64 = 1_000;

/// How often the thread looks at the count.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The tables whose plans matter on the write and catch-up paths.
const TABLES: &str = "subjects, facts, audit_events, idempotency_keys, erasures";

struct Shared {
    written: AtomicU64,
    closed: Mutex<bool>,
    wake: Condvar,
}

/// The statistics keeper of one node (PostgreSQL only). Dropping it stops its
/// thread.
pub struct Statistics {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Statistics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Statistics")
    }
}

impl Drop for Statistics {
    fn drop(&mut self) {
        *self.shared.closed.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_one();
    }
}

impl Statistics {
    pub(super) fn start(manager: ConnectionManager) -> Statistics {
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            closed: Mutex::new(false),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("consentgate-statistics".into())
            .spawn(move || run(&worker, &manager))
            .expect("the statistics thread starts");
        Statistics { shared }
    }

    /// `rows` more rows were committed.
    pub fn wrote(&self, rows: u64) {
        self.shared.written.fetch_add(rows, Ordering::Relaxed);
    }
}

/// Whether `written` rows since the last `ANALYZE` of tables then holding
/// `rows_then` call for another.
pub fn due(written: u64, rows_then: u64) -> bool {
    written >= rows_then.max(MIN_ROWS)
}

fn run(shared: &Shared, manager: &ConnectionManager) {
    let mut rows_then: Option<u64> = None;
    loop {
        {
            let closed = shared.closed.lock().unwrap_or_else(|p| p.into_inner());
            let (closed, _) = shared
                .wake
                .wait_timeout(closed, LOOK_EVERY)
                .unwrap_or_else(|p| p.into_inner());
            if *closed {
                return;
            }
        }
        let written = shared.written.load(Ordering::Relaxed);
        let then = match rows_then {
            Some(rows) => rows,
            None => match manager
                .connect()
                .map_err(|e| StoreError::Unavailable(e.to_string()))
                .and_then(|mut c| {
                    // What the tables held when this node started (the estimate of
                    // the last ANALYZE or VACUUM; 0 for a table never analysed).
                    rows_estimate(&mut c)
                }) {
                Ok(rows) => *rows_then.insert(rows),
                Err(_) => continue,
            },
        };
        if !due(written, then) {
            continue;
        }
        let analysed = manager
            .connect()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
            .and_then(|mut conn| {
                conn.batch_execute(&format!("ANALYZE {TABLES}"))?;
                rows_estimate(&mut conn)
            });
        match analysed {
            Ok(rows) => {
                shared.written.fetch_sub(written, Ordering::Relaxed);
                rows_then = Some(rows);
                tracing::debug!(rows, "planner statistics refreshed");
            }
            Err(e) => tracing::debug!(error = %e, "ANALYZE failed; retried"),
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Estimate {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rows: i64,
}

/// The planner's row estimate of the `facts` table (one row per write, the
/// largest of the tables; `reltuples` is -1 or 0 before the first ANALYZE).
fn rows_estimate(conn: &mut DbConnection) -> Result<u64, StoreError> {
    let estimate: Estimate = diesel::sql_query(
        "SELECT GREATEST(reltuples, 0)::bigint AS rows FROM pg_class \
         WHERE oid = to_regclass('facts')",
    )
    .get_result(conn)?;
    Ok(u64::try_from(estimate.rows).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyses_when_the_tables_have_about_doubled() {
        assert!(!due(0, 0));
        assert!(!due(MIN_ROWS - 1, 0));
        assert!(due(MIN_ROWS, 0));
        assert!(!due(9_999, 10_000));
        assert!(due(10_000, 10_000));
        assert!(due(250_000, 10_000));
    }
}
