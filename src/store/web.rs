//! Rows of the preference center and the auditor console: preference links and
//! console sessions. Both hold only hashes of their secrets (see
//! `crypto::web`), never a token, a session id, an API key or a phone number.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::rows::{from_naive, parse_id, to_naive};
use super::schema::{businesses, console_sessions, preference_links};
use super::{DbConnection, StoreError};

/// A preference link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceLink {
    pub id: Uuid,
    pub business_id: Uuid,
    pub subject_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A link found by its token, with what the page needs of its business.
#[derive(Debug, Clone)]
pub struct LinkWithBusiness {
    pub link: PreferenceLink,
    pub business_name: String,
    pub policy: String,
}

type LinkColumns = (
    preference_links::id,
    preference_links::business_id,
    preference_links::subject_id,
    preference_links::created_at,
    preference_links::expires_at,
    preference_links::revoked_at,
);

const LINK_COLUMNS: LinkColumns = (
    preference_links::id,
    preference_links::business_id,
    preference_links::subject_id,
    preference_links::created_at,
    preference_links::expires_at,
    preference_links::revoked_at,
);

type LinkTuple = (
    String,
    String,
    String,
    chrono::NaiveDateTime,
    chrono::NaiveDateTime,
    Option<chrono::NaiveDateTime>,
);

fn link_from(row: LinkTuple) -> Result<PreferenceLink, StoreError> {
    let (id, business_id, subject_id, created_at, expires_at, revoked_at) = row;
    Ok(PreferenceLink {
        id: parse_id(&id)?,
        business_id: parse_id(&business_id)?,
        subject_id: parse_id(&subject_id)?,
        created_at: from_naive(created_at),
        expires_at: from_naive(expires_at),
        revoked_at: revoked_at.map(from_naive),
    })
}

/// Stores a new link (its token only as a hash).
pub fn insert_link(
    conn: &mut DbConnection,
    link: &PreferenceLink,
    token_hash: &[u8; 32],
) -> Result<(), StoreError> {
    diesel::insert_into(preference_links::table)
        .values((
            preference_links::id.eq(link.id.to_string()),
            preference_links::business_id.eq(link.business_id.to_string()),
            preference_links::subject_id.eq(link.subject_id.to_string()),
            preference_links::token_hash.eq(token_hash.to_vec()),
            preference_links::created_at.eq(to_naive(link.created_at)),
            preference_links::expires_at.eq(to_naive(link.expires_at)),
            preference_links::revoked_at.eq(link.revoked_at.map(to_naive)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The link with this token hash, whatever its state, with its business.
pub fn link_by_token_hash(
    conn: &mut DbConnection,
    token_hash: &[u8; 32],
) -> Result<Option<LinkWithBusiness>, StoreError> {
    let row = preference_links::table
        .inner_join(businesses::table)
        .filter(preference_links::token_hash.eq(token_hash.as_slice()))
        .select((LINK_COLUMNS, businesses::name, businesses::policy))
        .first::<(LinkTuple, String, String)>(conn)
        .optional()?;
    row.map(|(link, business_name, policy)| {
        Ok(LinkWithBusiness {
            link: link_from(link)?,
            business_name,
            policy,
        })
    })
    .transpose()
}

/// A link of this business (another business's id is not found).
pub fn link(
    conn: &mut DbConnection,
    business_id: Uuid,
    id: Uuid,
) -> Result<PreferenceLink, StoreError> {
    let row = preference_links::table
        .filter(preference_links::id.eq(id.to_string()))
        .filter(preference_links::business_id.eq(business_id.to_string()))
        .select(LINK_COLUMNS)
        .first::<LinkTuple>(conn)?;
    link_from(row)
}

/// Marks a link revoked at `at`.
pub fn revoke_link(
    conn: &mut DbConnection,
    business_id: Uuid,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::update(
        preference_links::table
            .filter(preference_links::id.eq(id.to_string()))
            .filter(preference_links::business_id.eq(business_id.to_string())),
    )
    .set(preference_links::revoked_at.eq(Some(to_naive(at))))
    .execute(conn)?;
    Ok(())
}

/// Deletes the business's links that expired before `before` (they open
/// nothing; their creation and revocation stay in the audit log).
pub fn purge_links_expired_before(
    conn: &mut DbConnection,
    business_id: Uuid,
    before: DateTime<Utc>,
) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        preference_links::table
            .filter(preference_links::business_id.eq(business_id.to_string()))
            .filter(preference_links::expires_at.lt(to_naive(before))),
    )
    .execute(conn)?)
}

/// A signed-in console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub business_id: Uuid,
    pub key_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Stores a session under the hash of its id, and drops expired sessions.
pub fn insert_session(
    conn: &mut DbConnection,
    session_hash: &[u8; 32],
    session: &ConsoleSession,
) -> Result<(), StoreError> {
    diesel::delete(
        console_sessions::table
            .filter(console_sessions::expires_at.lt(to_naive(session.created_at))),
    )
    .execute(conn)?;
    diesel::insert_into(console_sessions::table)
        .values((
            console_sessions::session_hash.eq(session_hash.to_vec()),
            console_sessions::business_id.eq(session.business_id.to_string()),
            console_sessions::key_id.eq(session.key_id.to_string()),
            console_sessions::created_at.eq(to_naive(session.created_at)),
            console_sessions::expires_at.eq(to_naive(session.expires_at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The session with this id hash, if it exists (expired or not).
pub fn session(
    conn: &mut DbConnection,
    session_hash: &[u8; 32],
) -> Result<Option<ConsoleSession>, StoreError> {
    let row = console_sessions::table
        .filter(console_sessions::session_hash.eq(session_hash.as_slice()))
        .select((
            console_sessions::business_id,
            console_sessions::key_id,
            console_sessions::created_at,
            console_sessions::expires_at,
        ))
        .first::<(String, String, chrono::NaiveDateTime, chrono::NaiveDateTime)>(conn)
        .optional()?;
    row.map(|(business_id, key_id, created_at, expires_at)| {
        Ok(ConsoleSession {
            business_id: parse_id(&business_id)?,
            key_id: parse_id(&key_id)?,
            created_at: from_naive(created_at),
            expires_at: from_naive(expires_at),
        })
    })
    .transpose()
}

/// Ends a session.
pub fn delete_session(conn: &mut DbConnection, session_hash: &[u8; 32]) -> Result<(), StoreError> {
    diesel::delete(
        console_sessions::table.filter(console_sessions::session_hash.eq(session_hash.as_slice())),
    )
    .execute(conn)?;
    Ok(())
}
