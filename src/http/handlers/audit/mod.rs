//! The audit log for auditors (scope `audit:read`): events, verification, export,
//! signed checkpoints. Only the caller's own business's chain is ever read.

pub mod checkpoints;
pub mod events;
pub mod export;
pub mod verify;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::domain::time;
use crate::http::error::{ApiError, FieldError};

/// A time range (`from` inclusive, `to` exclusive).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimeRange {
    /// Events at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Events before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

/// An optional instant, as ranges use them.
type Bound = Option<DateTime<Utc>>;

pub(crate) fn check_range(from: Bound, to: Bound) -> Result<(Bound, Bound), ApiError> {
    let (from, to) = (from.map(time::truncate), to.map(time::truncate));
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::Validation(vec![FieldError::new(
            "to",
            "must not be before from",
        )]));
    }
    Ok((from, to))
}

/// A `subject_id` filter: a UUID.
pub(crate) fn subject_filter(subject_id: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    subject_id
        .map(|s| Uuid::try_parse(s).map_err(|_| ApiError::invalid("subject_id", "must be a UUID")))
        .transpose()
}
