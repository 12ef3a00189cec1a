//! The live state of one subject in 32 bytes: what the in-memory projection keeps
//! so that a live check is a hash lookup plus [`Verdict::decide`] (issue 10).
//!
//! A live check counts every acknowledged fact, so everything the facts say reduces
//! to a [`Summary`] that does not depend on the instant of the question; only the
//! consent's age and the window's expiry are measured against the clock when it is
//! asked. A `Summary` is packed here without loss: the deciding opt-in (its id and
//! effective time, shared by every category it decides) and five bits per category.
//! What does not fit (categories decided by different opt-ins, more than
//! [`MAX_PACKED_CATEGORIES`] categories) is left to the caller to keep unpacked;
//! the window's expiry is kept beside the state by the caller too, because most
//! subjects never had one.
//!
//! Unpacking gives back exactly the `Summary` that was packed, and the decision is
//! made by the same [`Verdict::decide`] as for a full history: a property test in
//! `decide/tests.rs` checks that a projection answers exactly what a replay of the
//! history answers.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::decide::{Summary, Verdict};

/// The most categories whose verdicts pack into the 64 flag bits (five each, plus
/// the subject-level bits).
pub const MAX_PACKED_CATEGORIES: usize = 12;

const BITS_PER_CATEGORY: u32 = 5;
const DECIDING: u64 = 1;
const REVOKED: u64 = 1 << 1;
const PENDING: u64 = 1 << 2;
const SUPPRESSED: u64 = 1 << 3;
const REVOKED_SINCE_WINDOW: u64 = 1 << 4;
/// The subject blocked the business.
const BLOCKED: u64 = 1 << 63;
/// The subject has a window expiry (kept beside the state).
const WINDOW: u64 = 1 << 62;

/// A subject's [`Summary`], packed: 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveState {
    /// The deciding opt-in shared by every category flagged `DECIDING`.
    opt_in_id: [u8; 16],
    /// Its effective time, microseconds since the Unix epoch.
    opt_in_effective_micros: i64,
    flags: u64,
}

impl LiveState {
    /// Packs `summary`; `None` when it does not fit (see the module docs).
    pub fn pack(summary: &Summary) -> Option<LiveState> {
        if summary.verdicts.len() > MAX_PACKED_CATEGORIES {
            return None;
        }
        let mut deciding: Option<(DateTime<Utc>, Uuid)> = None;
        let mut flags = 0u64;
        for (i, verdict) in summary.verdicts.iter().enumerate() {
            let mut bits = 0u64;
            if let Some(this) = verdict.deciding {
                match deciding {
                    None => deciding = Some(this),
                    Some(shared) if shared == this => {}
                    Some(_) => return None,
                }
                bits |= DECIDING;
            }
            for (set, bit) in [
                (verdict.revoked, REVOKED),
                (verdict.pending, PENDING),
                (verdict.suppressed, SUPPRESSED),
                (verdict.revoked_since_window, REVOKED_SINCE_WINDOW),
            ] {
                if set {
                    bits |= bit;
                }
            }
            flags |= bits << (BITS_PER_CATEGORY * i as u32);
        }
        if summary.blocked {
            flags |= BLOCKED;
        }
        if summary.window_until.is_some() {
            flags |= WINDOW;
        }
        let (effective, id) = deciding.unwrap_or((DateTime::UNIX_EPOCH, Uuid::nil()));
        Some(LiveState {
            opt_in_id: *id.as_bytes(),
            opt_in_effective_micros: effective.timestamp_micros(),
            flags,
        })
    }

    /// The verdict for the category at `index` in the policy's order.
    pub fn verdict(&self, index: usize) -> Verdict {
        let bits = self.flags >> (BITS_PER_CATEGORY * index as u32);
        let deciding = (bits & DECIDING != 0).then(|| {
            (
                DateTime::from_timestamp_micros(self.opt_in_effective_micros)
                    .unwrap_or(DateTime::UNIX_EPOCH),
                Uuid::from_bytes(self.opt_in_id),
            )
        });
        Verdict {
            deciding,
            revoked: bits & REVOKED != 0,
            pending: bits & PENDING != 0,
            suppressed: bits & SUPPRESSED != 0,
            revoked_since_window: bits & REVOKED_SINCE_WINDOW != 0,
        }
    }

    /// Whether the subject blocked the business.
    pub fn blocked(&self) -> bool {
        self.flags & BLOCKED != 0
    }

    /// Whether a window expiry is kept beside this state.
    pub fn has_window(&self) -> bool {
        self.flags & WINDOW != 0
    }

    /// The `Summary` this state was packed from, given the window expiry kept
    /// beside it and the number of categories of the policy.
    pub fn unpack(&self, window_until: Option<DateTime<Utc>>, categories: usize) -> Summary {
        Summary {
            blocked: self.blocked(),
            window_until: window_until.filter(|_| self.has_window()),
            verdicts: (0..categories).map(|i| self.verdict(i)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(micros).unwrap()
    }

    #[test]
    fn a_live_state_is_32_bytes() {
        assert_eq!(std::mem::size_of::<LiveState>(), 32);
    }

    #[test]
    fn a_summary_packs_and_unpacks_without_loss() {
        let shared = Some((at(1_700_000_000_123_456), Uuid::from_u128(42)));
        let summary = Summary {
            blocked: true,
            window_until: Some(at(1_700_000_100_000_001)),
            verdicts: vec![
                Verdict {
                    deciding: shared,
                    revoked_since_window: true,
                    ..Verdict::default()
                },
                Verdict {
                    revoked: true,
                    suppressed: true,
                    ..Verdict::default()
                },
                Verdict {
                    pending: true,
                    ..Verdict::default()
                },
                Verdict {
                    deciding: shared,
                    ..Verdict::default()
                },
            ],
        };
        let packed = LiveState::pack(&summary).unwrap();
        assert_eq!(packed.unpack(summary.window_until, 4), summary);
    }

    #[test]
    fn categories_decided_by_different_opt_ins_do_not_pack() {
        let verdict = |n| Verdict {
            deciding: Some((at(n), Uuid::from_u128(n as u128))),
            ..Verdict::default()
        };
        let summary = Summary {
            blocked: false,
            window_until: None,
            verdicts: vec![verdict(1), verdict(2)],
        };
        assert_eq!(LiveState::pack(&summary), None);
        let too_many = Summary {
            blocked: false,
            window_until: None,
            verdicts: vec![Verdict::default(); MAX_PACKED_CATEGORIES + 1],
        };
        assert_eq!(LiveState::pack(&too_many), None);
    }
}
