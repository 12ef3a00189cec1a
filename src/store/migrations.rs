//! Embedded migrations, one tree per backend with identical names. Each tree runs
//! only on its own connection variant (nothing else stops the wrong one running).

use diesel::RunQueryDsl;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{DbConnection, StoreError};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Any PostgreSQL advisory lock key would do; this one is "consentg" in ASCII.
/// Several nodes starting at once must not run the same migration twice.
const MIGRATION_LOCK: i64 = 0x636f_6e73_656e_7467;

fn migration_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("migration failed: {e}"))
}

/// Applies every pending migration; returns the names applied.
pub fn run_pending(conn: &mut DbConnection) -> Result<Vec<String>, StoreError> {
    match conn {
        DbConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(migration_error),
        DbConnection::Postgres(c) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(c)?;
            let result = c
                .run_pending_migrations(POSTGRES)
                .map(|versions| versions.iter().map(ToString::to_string).collect())
                .map_err(migration_error);
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(c)?;
            result
        }
    }
}

/// True when every embedded migration has been applied (readiness).
pub fn all_applied(conn: &mut DbConnection) -> Result<bool, StoreError> {
    let pending = match conn {
        DbConnection::Sqlite(c) => c.has_pending_migration(SQLITE),
        DbConnection::Postgres(c) => c.has_pending_migration(POSTGRES),
    };
    pending.map(|p| !p).map_err(migration_error)
}

/// Reverts every applied migration (tests: up, down, up again).
pub fn revert_all(conn: &mut DbConnection) -> Result<(), StoreError> {
    match conn {
        DbConnection::Sqlite(c) => c.revert_all_migrations(SQLITE).map(|_| ()),
        DbConnection::Postgres(c) => c.revert_all_migrations(POSTGRES).map(|_| ()),
    }
    .map_err(migration_error)
}
