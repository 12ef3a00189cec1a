//! Rows of channel connections (SPEC section 10) and of bulk-import progress
//! (SPEC section 8). A channel row holds its secrets only sealed (see
//! `ledger::channels`); this module only runs the statements.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::rows::{from_naive, parse_id, to_naive};
use super::schema::{businesses, channels, import_progress};
use super::{DbConnection, StoreError};

/// A channel connection as stored.
#[derive(Clone)]
pub struct ChannelRow {
    pub id: Uuid,
    pub business_id: Uuid,
    pub kind: String,
    pub name: String,
    /// JSON of what is not secret.
    pub config: String,
    pub wrapped_key: Vec<u8>,
    pub secrets: Vec<u8>,
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ChannelRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRow")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

type ChannelTuple = (
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    String,
    chrono::NaiveDateTime,
    Option<chrono::NaiveDateTime>,
);

type ChannelColumns = (
    channels::id,
    channels::business_id,
    channels::kind,
    channels::name,
    channels::config,
    channels::wrapped_key,
    channels::secrets,
    channels::fingerprint,
    channels::created_at,
    channels::revoked_at,
);

const CHANNEL_COLUMNS: ChannelColumns = (
    channels::id,
    channels::business_id,
    channels::kind,
    channels::name,
    channels::config,
    channels::wrapped_key,
    channels::secrets,
    channels::fingerprint,
    channels::created_at,
    channels::revoked_at,
);

fn channel_from(row: ChannelTuple) -> Result<ChannelRow, StoreError> {
    let (id, business_id, kind, name, config, wrapped_key, secrets, fingerprint, created, revoked) =
        row;
    Ok(ChannelRow {
        id: parse_id(&id)?,
        business_id: parse_id(&business_id)?,
        kind,
        name,
        config,
        wrapped_key,
        secrets,
        fingerprint,
        created_at: from_naive(created),
        revoked_at: revoked.map(from_naive),
    })
}

/// Stores a new connection.
pub fn insert_channel(conn: &mut DbConnection, row: &ChannelRow) -> Result<(), StoreError> {
    diesel::insert_into(channels::table)
        .values((
            channels::id.eq(row.id.to_string()),
            channels::business_id.eq(row.business_id.to_string()),
            channels::kind.eq(&row.kind),
            channels::name.eq(&row.name),
            channels::config.eq(&row.config),
            channels::wrapped_key.eq(&row.wrapped_key),
            channels::secrets.eq(&row.secrets),
            channels::fingerprint.eq(&row.fingerprint),
            channels::created_at.eq(to_naive(row.created_at)),
            channels::revoked_at.eq(row.revoked_at.map(to_naive)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The business's connections that are not revoked, oldest first.
pub fn active_channels(
    conn: &mut DbConnection,
    business_id: Uuid,
) -> Result<Vec<ChannelRow>, StoreError> {
    channels::table
        .filter(channels::business_id.eq(business_id.to_string()))
        .filter(channels::revoked_at.is_null())
        .order(channels::id.asc())
        .select(CHANNEL_COLUMNS)
        .load::<ChannelTuple>(conn)?
        .into_iter()
        .map(channel_from)
        .collect()
}

/// A connection of this business, revoked or not (another business's id is not found).
pub fn channel(
    conn: &mut DbConnection,
    business_id: Uuid,
    id: Uuid,
) -> Result<ChannelRow, StoreError> {
    let row = channels::table
        .filter(channels::id.eq(id.to_string()))
        .filter(channels::business_id.eq(business_id.to_string()))
        .select(CHANNEL_COLUMNS)
        .first::<ChannelTuple>(conn)?;
    channel_from(row)
}

/// An active connection by id alone (a webhook names only the channel), with
/// the policy of its business.
pub fn active_channel_with_policy(
    conn: &mut DbConnection,
    id: Uuid,
) -> Result<Option<(ChannelRow, String)>, StoreError> {
    let row = channels::table
        .inner_join(businesses::table)
        .filter(channels::id.eq(id.to_string()))
        .filter(channels::revoked_at.is_null())
        .select((CHANNEL_COLUMNS, businesses::policy))
        .first::<(ChannelTuple, String)>(conn)
        .optional()?;
    row.map(|(row, policy)| Ok((channel_from(row)?, policy)))
        .transpose()
}

/// Marks a connection revoked at `at`.
pub fn revoke_channel(
    conn: &mut DbConnection,
    business_id: Uuid,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::update(
        channels::table
            .filter(channels::id.eq(id.to_string()))
            .filter(channels::business_id.eq(business_id.to_string())),
    )
    .set(channels::revoked_at.eq(Some(to_naive(at))))
    .execute(conn)?;
    Ok(())
}

/// How far an import of one file has committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportProgress {
    /// The last line of the file whose row is committed (or rejected).
    pub last_line: u64,
    pub imported: u64,
    pub rejected: u64,
}

/// The committed progress of an import of the file with this hash.
pub fn import_progress(
    conn: &mut DbConnection,
    business_id: Uuid,
    file_hash: &str,
) -> Result<Option<ImportProgress>, StoreError> {
    let row = import_progress::table
        .find((business_id.to_string(), file_hash))
        .select((
            import_progress::last_line,
            import_progress::imported,
            import_progress::rejected,
        ))
        .first::<(i64, i64, i64)>(conn)
        .optional()?;
    Ok(row.map(|(last_line, imported, rejected)| ImportProgress {
        last_line: u64::try_from(last_line).unwrap_or(0),
        imported: u64::try_from(imported).unwrap_or(0),
        rejected: u64::try_from(rejected).unwrap_or(0),
    }))
}

/// Records the progress of an import (inside the batch's transaction).
pub fn save_import_progress(
    conn: &mut DbConnection,
    business_id: Uuid,
    file_hash: &str,
    progress: ImportProgress,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let updated = diesel::update(import_progress::table.find((business_id.to_string(), file_hash)))
        .set((
            import_progress::last_line.eq(as_i64(progress.last_line)),
            import_progress::imported.eq(as_i64(progress.imported)),
            import_progress::rejected.eq(as_i64(progress.rejected)),
            import_progress::updated_at.eq(to_naive(at)),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(import_progress::table)
            .values((
                import_progress::business_id.eq(business_id.to_string()),
                import_progress::file_hash.eq(file_hash),
                import_progress::last_line.eq(as_i64(progress.last_line)),
                import_progress::imported.eq(as_i64(progress.imported)),
                import_progress::rejected.eq(as_i64(progress.rejected)),
                import_progress::updated_at.eq(to_naive(at)),
            ))
            .execute(conn)?;
    }
    Ok(())
}
