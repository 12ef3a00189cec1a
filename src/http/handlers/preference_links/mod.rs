//! Preference links (scope `consents:write`): a business asks for a link to hand
//! to a person, who manages their own consent behind it (SPEC section 11).

pub mod create;
pub mod revoke;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A link for one number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePreferenceLinkRequest {
    /// The person's number (any common written form). It is never part of the link.
    pub phone: String,
    /// ISO 3166 region for a national-form number, e.g. `NL`.
    pub default_region: Option<String>,
    /// How long the link works, in minutes: 5 to 43,200 (30 days); default
    /// 10,080 (7 days).
    pub ttl_minutes: Option<i64>,
}

/// A link as created. `url` holds the link's secret: it is shown only here,
/// never stored (only its hash is), and cannot be shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreferenceLinkResponse {
    /// The link's id, to revoke it (`DELETE /v1/preference-links/{id}`).
    pub id: Uuid,
    /// The subject (the number within this business) the link is bound to.
    pub subject_id: Uuid,
    /// The page to send to the person, e.g.
    /// `https://consent.example.com/p/cgp_...`. It carries an opaque token, never
    /// the number. Send it only to the person, by the channel you already use.
    pub url: String,
    pub created_at: DateTime<Utc>,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}
