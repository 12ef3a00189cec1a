//! Durability settings, explicit and checked (issue 11, SPEC section 9): an
//! acknowledged write must survive kill -9 and a power cut.
//!
//! SQLite: every connection sets `journal_mode=WAL` and `synchronous=FULL` (the
//! WAL is fsynced at every commit) and reads both back; a connection that does not
//! have them is refused. PostgreSQL: the server's settings are its operator's, so
//! start-up reads `synchronous_commit` and `fsync` and warns when either is off
//! (`synchronous_commit=off` acknowledges commits that a crash can still lose).

use diesel::prelude::*;

use super::{DbConnection, StoreError};

/// `PRAGMA synchronous` as SQLite reports it: 2 is FULL, 3 is EXTRA.
pub const SQLITE_SYNCHRONOUS_FULL: i32 = 2;

#[derive(diesel::QueryableByName)]
struct Synchronous {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    synchronous: i32,
}

#[derive(diesel::QueryableByName)]
struct JournalMode {
    #[diesel(sql_type = diesel::sql_types::Text)]
    journal_mode: String,
}

/// What a SQLite connection runs with: `(journal_mode, synchronous)`.
pub fn sqlite_settings(conn: &mut DbConnection) -> Result<(String, i32), StoreError> {
    let mode: JournalMode = diesel::sql_query("PRAGMA journal_mode").get_result(conn)?;
    let sync: Synchronous = diesel::sql_query("PRAGMA synchronous").get_result(conn)?;
    Ok((mode.journal_mode.to_ascii_lowercase(), sync.synchronous))
}

/// Refuses a SQLite connection that is not in WAL mode with `synchronous` at
/// least FULL.
pub fn check_sqlite(journal_mode: &str, synchronous: i32) -> Result<(), String> {
    if journal_mode != "wal" {
        return Err(format!("journal_mode is {journal_mode}, not wal"));
    }
    if synchronous < SQLITE_SYNCHRONOUS_FULL {
        return Err(format!("synchronous is {synchronous}, not FULL (2)"));
    }
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

fn show(conn: &mut DbConnection, name: &str) -> Result<String, StoreError> {
    let row: Setting =
        diesel::sql_query(format!("SELECT current_setting('{name}') AS value")).get_result(conn)?;
    Ok(row.value)
}

/// PostgreSQL's `(synchronous_commit, fsync)`.
pub fn postgres_settings(conn: &mut DbConnection) -> Result<(String, String), StoreError> {
    Ok((show(conn, "synchronous_commit")?, show(conn, "fsync")?))
}

/// What is wrong with PostgreSQL's durability settings (empty: nothing).
pub fn postgres_warnings(synchronous_commit: &str, fsync: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    if synchronous_commit.eq_ignore_ascii_case("off") {
        warnings.push(
            "PostgreSQL synchronous_commit is off: acknowledged writes can be lost in a crash"
                .to_owned(),
        );
    }
    if fsync.eq_ignore_ascii_case("off") {
        warnings.push(
            "PostgreSQL fsync is off: acknowledged writes can be lost (and the database \
             corrupted) in a crash"
                .to_owned(),
        );
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_warns_when_synchronous_commit_or_fsync_is_off() {
        let cases = [
            ("on", "on", 0, "the defaults are durable"),
            ("remote_apply", "on", 0, "stronger than on"),
            ("local", "on", 0, "local flush is durable on this server"),
            (
                "off",
                "on",
                1,
                "synchronous_commit off loses acknowledged commits",
            ),
            ("on", "off", 1, "fsync off"),
            ("OFF", "off", 2, "both off, any case"),
        ];
        for (synchronous_commit, fsync, expected, why) in cases {
            assert_eq!(
                postgres_warnings(synchronous_commit, fsync).len(),
                expected,
                "{why}"
            );
        }
    }

    #[test]
    fn sqlite_connections_run_in_wal_with_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::connect(&super::super::StoreSettings {
            url: super::super::DatabaseUrl::Sqlite(dir.path().join("d.db")),
            pool_size: 2,
            acquire_timeout: std::time::Duration::from_secs(5),
        })
        .unwrap();
        let (mode, synchronous) = sqlite_settings(&mut store.conn().unwrap()).unwrap();
        assert_eq!(mode, "wal", "journal_mode read back");
        assert_eq!(
            synchronous, SQLITE_SYNCHRONOUS_FULL,
            "synchronous read back"
        );
        let (mode, synchronous) =
            sqlite_settings(&mut store.dedicated_connection().unwrap()).unwrap();
        assert_eq!(
            (mode.as_str(), synchronous),
            ("wal", 2),
            "the writer's own too"
        );
        assert!(store.durability_warnings().unwrap().is_empty());
    }

    #[test]
    fn sqlite_needs_wal_and_synchronous_full() {
        assert!(check_sqlite("wal", 2).is_ok());
        assert!(
            check_sqlite("wal", 3).is_ok(),
            "EXTRA is stronger than FULL"
        );
        assert!(
            check_sqlite("wal", 1).is_err(),
            "NORMAL loses commits on power loss"
        );
        assert!(check_sqlite("delete", 2).is_err());
    }
}
