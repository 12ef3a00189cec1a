//! may_contact (scope `checks:read`): one number or a batch. Anything but a 200
//! with `allowed: true` means do not send.

pub mod batch;
pub mod check;

use chrono::{DateTime, Utc};

use crate::domain::time;
use crate::http::error::FieldError;
use crate::policy::Policy;

/// `as_of` may be any past instant (auditors), not the future.
pub(crate) fn check_as_of(
    as_of: Option<DateTime<Utc>>,
    policy: &Policy,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let as_of = as_of.map(time::truncate);
    if as_of.is_some_and(|t| t > time::now() + policy.clock_skew()) {
        errors.push(FieldError::new("as_of", "must not be in the future"));
    }
    as_of
}
