//! Instants as the service stores and hashes them.

use chrono::{DateTime, Datelike, SubsecRound, Timelike, Utc};

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

/// Serialises an instant exactly as chrono's own `Serialize` does (RFC 3339, `Z`,
/// the fraction in 0, 3, 6 or 9 digits as needed), without going through
/// `fmt::Display`: a check's answer carries two instants, and formatting them the
/// generic way was a twentieth of the check's CPU. Instants chrono would write
/// differently (years outside 0..=9999, a leap second) are left to chrono.
pub fn serialize_rfc3339<S: serde::Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match write_rfc3339(at, &mut buf) {
        Some(len) => serializer
            .serialize_str(std::str::from_utf8(&buf[..len]).expect("the formatter writes ASCII")),
        None => serde::Serialize::serialize(at, serializer),
    }
}

/// Appends `at` to a JSON document being written by hand, as a quoted string:
/// byte for byte what [`serialize_rfc3339`] gives through serde_json.
pub fn push_rfc3339_json(at: &DateTime<Utc>, out: &mut Vec<u8>) {
    let mut buf = [0u8; 30];
    match write_rfc3339(at, &mut buf) {
        Some(len) => {
            out.push(b'"');
            out.extend_from_slice(&buf[..len]);
            out.push(b'"');
        }
        // chrono's own form (years outside 0..=9999), as serde_json writes it.
        None => serde_json::to_writer(out, at).expect("an instant serialises into a Vec"),
    }
}

/// Writes `at` as `YYYY-MM-DDTHH:MM:SS[.fff[fff[fff]]]Z` into `out`; `None` when
/// chrono would write it differently (see [`serialize_rfc3339`]).
fn write_rfc3339(at: &DateTime<Utc>, out: &mut [u8; 30]) -> Option<usize> {
    let year = at.year();
    let nanos = at.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    fn digits(out: &mut [u8], value: u32) {
        let mut v = value;
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    digits(&mut out[0..4], year as u32);
    out[4] = b'-';
    digits(&mut out[5..7], at.month());
    out[7] = b'-';
    digits(&mut out[8..10], at.day());
    out[10] = b'T';
    digits(&mut out[11..13], at.hour());
    out[13] = b':';
    digits(&mut out[14..16], at.minute());
    out[16] = b':';
    digits(&mut out[17..19], at.second());
    let mut len = 19;
    let (fraction, width) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    if width > 0 {
        out[len] = b'.';
        digits(&mut out[len + 1..len + 1 + width], fraction);
        len += 1 + width;
    }
    out[len] = b'Z';
    Some(len + 1)
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

    use proptest::strategy::Strategy;

    fn chrono_json(at: &DateTime<Utc>) -> String {
        serde_json::to_string(at).unwrap()
    }

    fn ours_json(at: &DateTime<Utc>) -> String {
        let mut out = Vec::new();
        serialize_rfc3339(at, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn instants_are_written_exactly_as_chrono_writes_them_at_the_edges() {
        for text in [
            "2026-12-04T16:45:50Z",
            "2026-12-04T16:45:50.100Z",
            "2026-12-04T16:45:50.798091Z",
            "2026-12-04T16:45:50.000000001Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "2016-12-31T23:59:60.5Z",
        ] {
            let at: DateTime<Utc> = DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(ours_json(&at), chrono_json(&at), "{text}");
        }
        let far = DateTime::<Utc>::from_timestamp(253_402_300_800, 5_000).unwrap();
        assert_eq!(ours_json(&far), chrono_json(&far), "year 10000");
    }

    proptest::proptest! {
        #[test]
        fn instants_are_written_exactly_as_chrono_writes_them(
            secs in -62_167_219_200i64..253_402_300_800,
            nanos in proptest::prop_oneof![
                proptest::strategy::Just(0u32),
                (0u32..1_000).prop_map(|m| m * 1_000_000),
                (0u32..1_000_000).prop_map(|u| u * 1_000),
                0u32..1_000_000_000,
            ],
        ) {
            let at = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
            proptest::prop_assert_eq!(ours_json(&at), chrono_json(&at));
        }
    }
}
