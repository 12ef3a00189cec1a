//! Appending to a business's chain, as values: the head, the next event's number
//! and hash, and the recorded time of the next write. The store only loads and
//! stores heads ([`HeadRow`]) and inserts the events made here; the writer
//! (`crate::writer`), batched or not, chains events through [`Head::chain`].

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewEvent, StoredEvent};
use crate::crypto::chain::{GENESIS, event_hash};
use crate::domain::Actor;
use crate::store::audit::HeadRow;

/// The chain head of one business, as read under its lock.
#[derive(Debug, Clone)]
pub struct Head {
    business_id: Uuid,
    seq: i64,
    hash: Vec<u8>,
    /// When the chain's last write was recorded (`None` before the first one, or
    /// for chains written before recorded times were kept in the head).
    last_recorded_at: Option<DateTime<Utc>>,
}

impl Head {
    /// The head of a new chain: seq 0, the genesis hash.
    pub fn genesis(business_id: Uuid) -> Head {
        Head {
            business_id,
            seq: 0,
            hash: GENESIS.to_vec(),
            last_recorded_at: None,
        }
    }

    /// A head as stored.
    pub fn stored(
        business_id: Uuid,
        seq: i64,
        hash: Vec<u8>,
        last_recorded_at: Option<DateTime<Utc>>,
    ) -> Head {
        Head {
            business_id,
            seq,
            hash,
            last_recorded_at,
        }
    }

    /// The head as the store keeps it.
    pub fn to_row(&self) -> HeadRow {
        HeadRow {
            business_id: self.business_id,
            seq: self.seq,
            hash: self.hash.clone(),
            last_recorded_at: self.last_recorded_at,
        }
    }

    pub fn business_id(&self) -> Uuid {
        self.business_id
    }

    /// The sequence number of the chain's last event (0 for an empty chain).
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// The hash of the chain's last event (the genesis hash for an empty chain).
    pub fn hash(&self) -> &[u8] {
        &self.hash
    }

    pub fn last_recorded_at(&self) -> Option<DateTime<Utc>> {
        self.last_recorded_at
    }

    /// The recorded time of the next write of this chain: the writer's clock, but
    /// always after the chain's last recorded time. So within a business recorded
    /// times follow commit order whatever the clocks of the nodes that wrote: a
    /// withdrawal acknowledged after an opt-in is recorded after it, even when it
    /// went through a node whose clock runs behind (SPEC section 3).
    pub fn next_recorded_at(&self, clock_now: DateTime<Utc>) -> DateTime<Utc> {
        match self.last_recorded_at {
            Some(last) if clock_now <= last => last + chrono::Duration::microseconds(1),
            _ => clock_now,
        }
    }

    /// The next event of this chain, recorded at `at` by `actor`: numbered after
    /// the head, linked to its hash and hashed (`crypto::chain`); the head moves to
    /// it. The caller inserts it in the transaction that holds the head's lock and
    /// made the change it records.
    pub fn chain(
        &mut self,
        actor: Actor,
        at: DateTime<Utc>,
        event: NewEvent,
    ) -> Result<StoredEvent, serde_json::Error> {
        let data = serde_json::to_string(&event.data)?;
        let mut e = StoredEvent {
            business_id: self.business_id,
            seq: self.seq + 1,
            id: Uuid::now_v7(),
            at,
            event_type: event.event_type.as_str().to_owned(),
            actor: actor.to_string(),
            subject_id: event.subject_id,
            data,
            prev_hash: self.hash.clone(),
            hash: Vec::new(),
        };
        e.hash = event_hash(&e.prev_hash, &e.chained_fields()).to_vec();
        self.seq = e.seq;
        self.hash = e.hash.clone();
        self.last_recorded_at = Some(at);
        Ok(e)
    }
}

impl From<HeadRow> for Head {
    fn from(row: HeadRow) -> Head {
        Head::stored(row.business_id, row.seq, row.hash, row.last_recorded_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EventType;

    #[test]
    fn chained_events_are_numbered_linked_and_move_the_head() {
        let business = Uuid::now_v7();
        let mut head = Head::genesis(business);
        let at = chrono::Utc::now();
        let first = head
            .chain(
                Actor::Operator,
                at,
                NewEvent::new(EventType::BusinessCreated, serde_json::json!({})),
            )
            .unwrap();
        let second = head
            .chain(
                Actor::Operator,
                at,
                NewEvent::new(EventType::KeyCreated, serde_json::json!({})),
            )
            .unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(first.prev_hash, GENESIS.to_vec());
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!((head.seq(), head.hash()), (2, second.hash.as_slice()));
        assert_eq!(head.last_recorded_at(), Some(at));
    }

    #[test]
    fn recorded_times_never_go_back_behind_the_chain() {
        let at = chrono::Utc::now();
        let head = Head::stored(Uuid::now_v7(), 3, vec![0; 32], Some(at));
        assert_eq!(
            head.next_recorded_at(at - chrono::Duration::seconds(5)),
            at + chrono::Duration::microseconds(1)
        );
        let later = at + chrono::Duration::seconds(1);
        assert_eq!(head.next_recorded_at(later), later);
    }
}
