//! Chain verification: recompute every hash from the stored fields, in sequence
//! order, and name the first event that does not fit.

use serde::Serialize;

use super::StoredEvent;
use crate::crypto::chain::{GENESIS, event_hash};

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub valid: bool,
    pub checked: u64,
    /// The last event that verified: `(seq, hex hash)`.
    pub head: Option<(i64, String)>,
    pub first_invalid_seq: Option<i64>,
}

/// A fold over a business's events in sequence order; constant memory.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev_hash: [u8; 32],
    checked: u64,
    first_invalid: Option<i64>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            expected_seq: 1,
            prev_hash: GENESIS,
            checked: 0,
            first_invalid: None,
        }
    }
}

impl Verifier {
    /// Feeds the next event; returns false once the chain is broken (later events
    /// are not examined: everything after a break is unproven).
    pub fn push(&mut self, event: &StoredEvent) -> bool {
        if self.first_invalid.is_some() {
            return false;
        }
        let recomputed = event_hash(&self.prev_hash, &event.chained_fields());
        let fits = event.seq == self.expected_seq
            && event.prev_hash == self.prev_hash
            && event.hash == recomputed;
        if !fits {
            // A gap (deleted event) is reported at the sequence number that is
            // missing; anything else at the event that does not verify.
            self.first_invalid = Some(self.expected_seq.min(event.seq));
            return false;
        }
        self.checked += 1;
        self.expected_seq += 1;
        self.prev_hash = recomputed;
        true
    }

    /// The report, given the head the store says the chain has (seq, hash): a
    /// chain whose stored events end before the recorded head lost its tail.
    pub fn finish(self, recorded_head: Option<(i64, Vec<u8>)>) -> Report {
        let mut first_invalid = self.first_invalid;
        let last_seq = self.expected_seq - 1;
        if first_invalid.is_none() {
            if let Some((head_seq, head_hash)) = recorded_head {
                if head_seq != last_seq || (head_seq > 0 && head_hash != self.prev_hash) {
                    first_invalid = Some((last_seq + 1).min(head_seq.max(1)));
                }
            }
        }
        Report {
            valid: first_invalid.is_none(),
            checked: self.checked,
            head: (last_seq > 0).then(|| (last_seq, hex::encode(self.prev_hash))),
            first_invalid_seq: first_invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::chain::event_hash;
    use chrono::Utc;
    use uuid::Uuid;

    fn chain(n: i64) -> Vec<StoredEvent> {
        let business_id = Uuid::now_v7();
        let mut prev = GENESIS.to_vec();
        (1..=n)
            .map(|seq| {
                let mut e = StoredEvent {
                    business_id,
                    seq,
                    id: Uuid::now_v7(),
                    at: crate::domain::time::truncate(Utc::now()),
                    event_type: "key.created".into(),
                    actor: "operator".into(),
                    subject_id: None,
                    data: format!("{{\"n\":{seq}}}"),
                    prev_hash: prev.clone(),
                    hash: vec![],
                };
                e.hash = event_hash(&prev, &e.chained_fields()).to_vec();
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn verify(events: &[StoredEvent]) -> Report {
        let mut v = Verifier::default();
        for e in events {
            v.push(e);
        }
        let head = events.last().map(|e| (e.seq, e.hash.clone()));
        v.finish(head)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let report = verify(&chain(5));
        assert!(report.valid);
        assert_eq!(report.checked, 5);
        assert_eq!(report.head.unwrap().0, 5);
    }

    #[test]
    fn an_edited_field_is_found_at_its_seq() {
        let mut events = chain(5);
        events[2].data = "{\"n\":99}".into();
        assert_eq!(verify(&events).first_invalid_seq, Some(3));
    }

    #[test]
    fn a_deleted_event_is_found_at_the_missing_seq() {
        let mut events = chain(5);
        events.remove(1);
        assert_eq!(verify(&events).first_invalid_seq, Some(2));
    }

    #[test]
    fn swapped_events_are_found_at_the_first_swapped_seq() {
        let mut events = chain(5);
        events.swap(1, 2);
        assert_eq!(verify(&events).first_invalid_seq, Some(2));
    }

    #[test]
    fn a_lost_tail_is_found_against_the_recorded_head() {
        let events = chain(5);
        let head = events.last().map(|e| (e.seq, e.hash.clone()));
        let mut v = Verifier::default();
        for e in &events[..3] {
            v.push(e);
        }
        assert_eq!(v.finish(head).first_invalid_seq, Some(4));
    }
}
