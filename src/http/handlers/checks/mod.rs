//! may_contact (scope `checks:read`): one number or a batch. Anything but a 200
//! with `allowed: true` means do not send.

pub mod batch;
pub mod check;
pub mod stream;

use chrono::{DateTime, Duration, Utc};

use crate::domain::time::{self, Clock};
use crate::http::error::FieldError;

/// How far ahead of this node's clock an `as_of` may be: nobody can know the
/// future state, and a second absorbs the time the request took to arrive.
const AS_OF_TOLERANCE: Duration = Duration::seconds(1);

/// `as_of` may be any past instant (auditors), not the future.
pub(crate) fn check_as_of(
    as_of: Option<DateTime<Utc>>,
    clock: Clock,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let as_of = as_of.map(time::truncate);
    if as_of.is_some_and(|t| t > clock.now() + AS_OF_TOLERANCE) {
        errors.push(FieldError::new(
            "as_of",
            "must not be in the future: nobody can know the future state",
        ));
    }
    as_of
}
