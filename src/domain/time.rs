//! Instants as the service stores and hashes them.

use chrono::{DateTime, SubsecRound, Utc};

/// Now, truncated to microseconds: PostgreSQL keeps microseconds and SQLite would
/// keep nanoseconds, so every instant is truncated before it is written or hashed,
/// and both backends give back exactly what was hashed.
pub fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

/// An instant truncated to microsecond precision.
pub fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_no_sub_microsecond_part() {
        assert_eq!(now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
