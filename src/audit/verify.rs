//! Chain verification: recompute every hash from the stored fields, in sequence
//! order, and name the first event that does not fit.

use serde::Serialize;

use uuid::Uuid;

use super::StoredEvent;
use crate::crypto::chain::{GENESIS, event_hash};
use crate::crypto::signing::PublicKey;
use crate::store::audit::{checkpoints, events_after, recorded_head};
use crate::store::{DbConnection, StoreError};

/// Page size when streaming through a chain: memory stays bounded by one page.
const VERIFY_PAGE: i64 = 1_000;

/// Recomputes a business's whole chain from the stored rows, a page at a time,
/// and compares it with every signed checkpoint (whose signatures are checked
/// against `public_key`, this service's; with none, no checkpoint counts as
/// signed).
pub fn verify_chain(
    conn: &mut DbConnection,
    business_id: Uuid,
    public_key: Option<&PublicKey>,
) -> Result<Report, StoreError> {
    let stored = checkpoints(conn, business_id)?;
    let mut expected = Vec::with_capacity(stored.len());
    let mut invalid = Vec::new();
    for checkpoint in stored {
        let signed = public_key.is_some_and(|key| {
            key.key_id() == checkpoint.key_id
                && key.verify(&checkpoint.message(), &checkpoint.signature)
        });
        if signed {
            expected.push((checkpoint.seq, checkpoint.hash));
        } else {
            invalid.push(checkpoint.seq);
        }
    }
    let mut verifier = Verifier::with_checkpoints(expected, invalid);
    let mut after = 0;
    loop {
        let page = events_after(conn, business_id, after, VERIFY_PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let done = page.len() < VERIFY_PAGE as usize;
        let intact = page.iter().all(|e| verifier.push(e));
        if !intact || done {
            break;
        }
    }
    Ok(verifier.finish(recorded_head(conn, business_id)?))
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The chain verified and matched every signed checkpoint, and every
    /// checkpoint's signature verified.
    pub valid: bool,
    /// Events that verified.
    pub checked: u64,
    /// The last event that verified: `(seq, hex hash)`.
    pub head: Option<(i64, String)>,
    /// The first sequence number that is not proven: an event that does not verify,
    /// a missing one, or the first event after the last checkpoint that matched when
    /// a later checkpoint does not.
    pub first_invalid_seq: Option<i64>,
    /// Checkpoints the chain was compared with.
    pub checkpoints_checked: u64,
    /// Checkpoints whose signature does not verify under the service's key.
    pub invalid_checkpoints: Vec<i64>,
}

/// A fold over a business's events in sequence order; memory bounded by the
/// number of checkpoints (one per N events), not by the chain.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev_hash: [u8; 32],
    checked: u64,
    first_invalid: Option<i64>,
    /// Signed checkpoints still to meet: seq -> hash, ascending.
    checkpoints: std::collections::BTreeMap<i64, Vec<u8>>,
    checkpoints_checked: u64,
    last_matching_checkpoint: i64,
    invalid_checkpoints: Vec<i64>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            expected_seq: 1,
            prev_hash: GENESIS,
            checked: 0,
            first_invalid: None,
            checkpoints: Default::default(),
            checkpoints_checked: 0,
            last_matching_checkpoint: 0,
            invalid_checkpoints: Vec::new(),
        }
    }
}

impl Verifier {
    /// A verifier that also compares the chain with these checkpoints (whose
    /// signatures the caller verified; `invalid` are those that did not).
    pub fn with_checkpoints(checkpoints: Vec<(i64, Vec<u8>)>, invalid: Vec<i64>) -> Verifier {
        Verifier {
            checkpoints: checkpoints.into_iter().collect(),
            invalid_checkpoints: invalid,
            ..Verifier::default()
        }
    }

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
            // Reported at the sequence number expected here: the missing one for
            // a gap (deleted event), the event's own for one that does not verify.
            // Never the event's stated seq, which may be anything (a stored seq
            // below the expected one, even negative, was named before: tests/fuzz.rs).
            self.first_invalid = Some(self.expected_seq);
            return false;
        }
        if let Some(signed) = self.checkpoints.remove(&event.seq) {
            self.checkpoints_checked += 1;
            if signed != recomputed {
                // A chain consistent in itself but not with what was signed: it was
                // rebuilt. Nothing after the last matching checkpoint is proven.
                self.first_invalid = Some(self.last_matching_checkpoint + 1);
                return false;
            }
            self.last_matching_checkpoint = event.seq;
        }
        self.checked += 1;
        self.expected_seq += 1;
        self.prev_hash = recomputed;
        true
    }

    /// The report, given the head the store says the chain has (seq, hash): a
    /// chain whose stored events end before the recorded head lost its tail.
    pub fn finish(mut self, recorded_head: Option<(i64, Vec<u8>)>) -> Report {
        let mut first_invalid = self.first_invalid;
        let last_seq = self.expected_seq - 1;
        if first_invalid.is_none()
            && let Some((head_seq, head_hash)) = recorded_head
            && (head_seq != last_seq || (head_seq > 0 && head_hash != self.prev_hash))
        {
            first_invalid = Some((last_seq + 1).min(head_seq.max(1)));
        }
        if first_invalid.is_none() && !self.checkpoints.is_empty() {
            // A checkpoint beyond the last event: the tail was cut off, even if the
            // recorded head was moved back to hide it.
            self.checkpoints_checked += self.checkpoints.len() as u64;
            first_invalid = Some(last_seq + 1);
        }
        Report {
            valid: first_invalid.is_none() && self.invalid_checkpoints.is_empty(),
            checked: self.checked,
            head: (last_seq > 0).then(|| (last_seq, hex::encode(self.prev_hash))),
            first_invalid_seq: first_invalid,
            checkpoints_checked: self.checkpoints_checked,
            invalid_checkpoints: self.invalid_checkpoints,
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
    fn a_rebuilt_chain_is_found_by_a_checkpoint() {
        let original = chain(5);
        let rebuilt = chain(5); // other ids and times: consistent in itself
        let signed = vec![(3, original[2].hash.clone())];
        let mut v = Verifier::with_checkpoints(signed, vec![]);
        for e in &rebuilt {
            v.push(e);
        }
        let report = v.finish(rebuilt.last().map(|e| (e.seq, e.hash.clone())));
        assert!(!report.valid);
        assert_eq!(report.first_invalid_seq, Some(1));
    }

    #[test]
    fn a_cut_tail_is_found_by_a_later_checkpoint_even_with_the_head_moved_back() {
        let events = chain(5);
        let signed = vec![(2, events[1].hash.clone()), (5, events[4].hash.clone())];
        let mut v = Verifier::with_checkpoints(signed, vec![]);
        for e in &events[..4] {
            v.push(e);
        }
        let report = v.finish(Some((4, events[3].hash.clone())));
        assert!(!report.valid);
        assert_eq!(report.first_invalid_seq, Some(5));
        assert_eq!(report.checkpoints_checked, 2);
    }

    #[test]
    fn matching_checkpoints_keep_the_chain_valid_and_forged_ones_do_not() {
        let events = chain(4);
        let signed = vec![(2, events[1].hash.clone()), (4, events[3].hash.clone())];
        let mut v = Verifier::with_checkpoints(signed.clone(), vec![]);
        events.iter().for_each(|e| {
            v.push(e);
        });
        let report = v.finish(Some((4, events[3].hash.clone())));
        assert!(report.valid, "{report:?}");
        assert_eq!(report.checkpoints_checked, 2);
        let mut v = Verifier::with_checkpoints(signed, vec![4]);
        events.iter().for_each(|e| {
            v.push(e);
        });
        assert!(
            !v.finish(Some((4, events[3].hash.clone()))).valid,
            "a bad signature fails"
        );
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
