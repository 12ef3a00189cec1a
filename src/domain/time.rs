//! Instants as the service stores and hashes them.

use chrono::{DateTime, SubsecRound, Utc};

/// Now, truncated to microseconds: PostgreSQL keeps microseconds and SQLite would
/// keep nanoseconds, so every instant is truncated before it is written or hashed,
/// and both backends give back exactly what was hashed.
pub fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

/// The clock a node reads: the system clock, optionally shifted (tests simulate
/// nodes whose clocks disagree by seconds; SPEC section 3 says no clock may hide
/// a withdrawal). Cheap to copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset_micros: i64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The system clock shifted by `offset` (ahead when positive).
    pub fn offset_by(offset: chrono::Duration) -> Clock {
        Clock {
            offset_micros: offset.num_microseconds().unwrap_or(0),
        }
    }

    /// Now by this clock, truncated to microseconds.
    pub fn now(&self) -> DateTime<Utc> {
        truncate(Utc::now() + chrono::Duration::microseconds(self.offset_micros))
    }
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
        assert_eq!(Clock::system().now().timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn a_shifted_clock_runs_ahead_by_its_offset() {
        let ahead = Clock::offset_by(chrono::Duration::seconds(5));
        let difference = ahead.now() - Clock::system().now();
        assert!(
            (chrono::Duration::milliseconds(4_900)..=chrono::Duration::milliseconds(5_100))
                .contains(&difference),
            "{difference}"
        );
    }
}
