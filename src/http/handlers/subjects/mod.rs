//! Data-subject rights (scope `subjects:manage`): export and erasure.

pub mod erase;
pub mod export;

use serde::Deserialize;
use utoipa::ToSchema;

/// A data-subject request about one number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectRequest {
    /// The number the request is about (any common written form).
    pub phone: String,
    pub default_region: Option<String>,
    /// The privacy team's own reference for the request (e.g. a ticket id; not
    /// personal data), recorded in the audit event and the receipt.
    pub request_reference: Option<String>,
}
