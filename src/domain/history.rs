//! The facts about one subject that the decision reads.
//!
//! A [`SubjectHistory`] is what the store hands to [`crate::policy::decide()`]: every
//! opt-in, confirmation, revocation, restoration, block, unblock, inbound message
//! and erasure marker of one phone number within one business. It is plain data
//! with no behaviour beyond bitemporal visibility, so that the decision stays a
//! pure function that can be tested without a database.
//!
//! # The time model (SPEC section 3)
//! Every fact has two times: when it happened according to its evidence
//! (`collected_at`, `received_at`, `at`) and when the service recorded it
//! (`recorded_at`). A collector's clock may run a little ahead (the policy's clock
//! skew), but a fact is never effective later than the moment it was recorded:
//! [`Fact::effective_at`] is the earlier of the two. "Latest word", windows,
//! consent age and keyword rules all compare effective times, so an acknowledged
//! STOP dated two minutes ahead by a client's clock is in force at once.
//!
//! Which facts a decision sees:
//! - a live check (no `as_of`) sees every fact the store has acknowledged,
//!   whatever its times say: "acknowledged before the check arrived" is decided by
//!   the commit, not by comparing clocks, so a node whose clock runs behind still
//!   honours a revocation written by a node whose clock runs ahead;
//! - an `as_of` decision sees the facts recorded by `as_of` (their effective time
//!   is then no later either): what the service could have known at that moment.
//!   A late import does not rewrite what an auditor is told.
//!
//! Categories are plain strings here: this is stored data, which may name a
//! category that a later policy version no longer has. The decision compares them
//! to [`crate::policy::Category::as_str`].
//!
//! This module may depend on chrono, uuid and serde only; never on actix or diesel.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Everything the service knows about one subject, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectHistory {
    /// The facts, in any order: the decision orders them itself.
    pub facts: Vec<Fact>,
}

impl SubjectHistory {
    /// A history made of `facts` (any order).
    pub fn new(facts: Vec<Fact>) -> Self {
        Self { facts }
    }

    /// The facts visible to a decision as of `as_of`: recorded by then.
    pub fn visible_at(&self, as_of: DateTime<Utc>) -> impl Iterator<Item = &Fact> + '_ {
        self.facts.iter().filter(move |f| f.is_visible_at(as_of))
    }
}

/// One thing that happened to a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fact {
    /// Consent given for one or more categories.
    OptIn(OptInFact),
    /// The double opt-in confirmation of an earlier opt-in.
    Confirmation {
        /// The opt-in it confirms.
        opt_in_id: Uuid,
        /// When the subject confirmed.
        confirmed_at: DateTime<Utc>,
        /// When the service learned it.
        recorded_at: DateTime<Utc>,
    },
    /// Consent withdrawn (GDPR Art. 7(3)).
    Revocation {
        /// The revocation's id.
        id: Uuid,
        /// The categories withdrawn; `None` withdraws every category.
        categories: Option<Vec<String>>,
        /// When the subject withdrew.
        at: DateTime<Utc>,
        /// When the service learned it.
        recorded_at: DateTime<Utc>,
        /// True when it came from an opt-out keyword (STOP) or a platform's "stop"
        /// signal: a later [`Fact::Restoration`] (START, "resume") may undo it.
        by_keyword: bool,
    },
    /// An opt-in keyword (START) or a platform's "resume": undoes every keyword
    /// revocation of its categories effective before it, as a carrier's START
    /// undoes STOP. It grants nothing by itself: the opt-ins that were in force
    /// before the STOP count again with their original `collected_at` and
    /// confirmation state, so consent that has expired meanwhile stays expired.
    Restoration {
        /// The restoration's id.
        id: Uuid,
        /// The categories whose keyword revocations it undoes; `None`: all.
        categories: Option<Vec<String>>,
        /// When the subject asked (the message's `received_at`).
        at: DateTime<Utc>,
        /// When the service learned it.
        recorded_at: DateTime<Utc>,
    },
    /// The subject blocked the business: nothing may be sent until an unblock.
    Block {
        /// When the subject blocked.
        at: DateTime<Utc>,
        /// When the service learned it.
        recorded_at: DateTime<Utc>,
    },
    /// The subject unblocked the business.
    Unblock {
        /// When the subject unblocked.
        at: DateTime<Utc>,
        /// When the service learned it.
        recorded_at: DateTime<Utc>,
    },
    /// A user-initiated inbound message: it opens or restarts the customer-service window.
    Inbound {
        /// When the message was received.
        received_at: DateTime<Utc>,
        /// When the service learned it.
        recorded_at: DateTime<Utc>,
        /// Where the conversation started (e.g. `click_to_chat_ad`), if known.
        entry_point: Option<String>,
    },
    /// The subject's data was erased (GDPR Art. 17). This suppression marker survives
    /// the erasure so that a stale import cannot re-add the number without fresh consent.
    Erased {
        /// When the erasure took effect.
        at: DateTime<Utc>,
        /// When the service recorded it.
        recorded_at: DateTime<Utc>,
    },
}

/// Consent given for one or more categories, with when it was given and learned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptInFact {
    /// The opt-in's id: the legal basis a decision names.
    pub id: Uuid,
    /// The categories consented to.
    pub categories: Vec<String>,
    /// When the subject gave consent (from the evidence).
    pub collected_at: DateTime<Utc>,
    /// When the service learned it.
    pub recorded_at: DateTime<Utc>,
    /// True when no confirmation step is needed even under double opt-in. Set on
    /// opt-ins recorded by a keyword START before restorations existed (legacy
    /// rows): such a START was itself sent from the subject's phone.
    pub confirmed_on_record: bool,
}

impl OptInFact {
    /// When this consent took effect (see [`Fact::effective_at`]).
    pub fn effective_at(&self) -> DateTime<Utc> {
        self.collected_at.min(self.recorded_at)
    }

    /// Whether this opt-in names `category`.
    pub fn covers(&self, category: &str) -> bool {
        self.categories.iter().any(|c| c == category)
    }
}

impl Fact {
    /// When the fact happened according to its evidence (`collected_at`,
    /// `confirmed_at`, `received_at` or `at`), as the client stated it.
    pub fn stated_at(&self) -> DateTime<Utc> {
        match self {
            Fact::OptIn(o) => o.collected_at,
            Fact::Confirmation { confirmed_at, .. } => *confirmed_at,
            Fact::Revocation { at, .. }
            | Fact::Restoration { at, .. }
            | Fact::Block { at, .. }
            | Fact::Unblock { at, .. }
            | Fact::Erased { at, .. } => *at,
            Fact::Inbound { received_at, .. } => *received_at,
        }
    }

    /// When the service learned the fact.
    pub fn recorded_at(&self) -> DateTime<Utc> {
        match self {
            Fact::OptIn(o) => o.recorded_at,
            Fact::Confirmation { recorded_at, .. }
            | Fact::Revocation { recorded_at, .. }
            | Fact::Restoration { recorded_at, .. }
            | Fact::Block { recorded_at, .. }
            | Fact::Unblock { recorded_at, .. }
            | Fact::Inbound { recorded_at, .. }
            | Fact::Erased { recorded_at, .. } => *recorded_at,
        }
    }

    /// When the fact takes effect: its stated time, but never later than when it
    /// was recorded (SPEC section 3). A clock running ahead cannot postpone a STOP.
    pub fn effective_at(&self) -> DateTime<Utc> {
        self.stated_at().min(self.recorded_at())
    }

    /// Whether a decision as of `as_of` may see this fact: it had been recorded by
    /// then (and so, by [`Fact::effective_at`], had also taken effect). Without
    /// this a late import would rewrite what an auditor is told the service knew.
    pub fn is_visible_at(&self, as_of: DateTime<Utc>) -> bool {
        self.recorded_at() <= as_of
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_fact_is_visible_to_as_of_once_it_was_recorded() {
        let fact = Fact::Block {
            at: t("2026-01-01T10:00:00Z"),
            recorded_at: t("2026-01-02T10:00:00Z"),
        };
        assert!(
            !fact.is_visible_at(t("2026-01-01T12:00:00Z")),
            "happened but not yet recorded: the service could not know"
        );
        assert!(
            fact.is_visible_at(t("2026-01-02T10:00:00Z")),
            "recorded exactly then"
        );
    }

    #[test]
    fn a_fact_stated_in_the_future_takes_effect_when_recorded() {
        let recorded = t("2026-01-02T10:00:00Z");
        let ahead = Fact::Revocation {
            id: Uuid::nil(),
            categories: None,
            at: t("2026-01-02T10:02:00Z"),
            recorded_at: recorded,
            by_keyword: false,
        };
        assert_eq!(ahead.effective_at(), recorded, "never later than recorded");
        assert_eq!(ahead.stated_at(), t("2026-01-02T10:02:00Z"));
        assert!(
            ahead.is_visible_at(recorded),
            "in force from the moment recorded"
        );
    }

    #[test]
    fn effective_time_is_the_stated_time_of_each_kind_when_it_is_earlier() {
        let at = t("2026-03-01T00:00:00Z");
        let rec = t("2026-03-02T00:00:00Z");
        let facts = [
            Fact::OptIn(OptInFact {
                id: Uuid::nil(),
                categories: vec!["marketing".into()],
                collected_at: at,
                recorded_at: rec,
                confirmed_on_record: false,
            }),
            Fact::Confirmation {
                opt_in_id: Uuid::nil(),
                confirmed_at: at,
                recorded_at: rec,
            },
            Fact::Revocation {
                id: Uuid::nil(),
                categories: None,
                at,
                recorded_at: rec,
                by_keyword: true,
            },
            Fact::Restoration {
                id: Uuid::nil(),
                categories: None,
                at,
                recorded_at: rec,
            },
            Fact::Block {
                at,
                recorded_at: rec,
            },
            Fact::Unblock {
                at,
                recorded_at: rec,
            },
            Fact::Inbound {
                received_at: at,
                recorded_at: rec,
                entry_point: None,
            },
            Fact::Erased {
                at,
                recorded_at: rec,
            },
        ];
        for fact in &facts {
            assert_eq!(fact.effective_at(), at, "{fact:?}");
            assert_eq!(fact.recorded_at(), rec, "{fact:?}");
        }
        let history = SubjectHistory::new(facts.to_vec());
        assert_eq!(
            history
                .visible_at(rec - chrono::Duration::microseconds(1))
                .count(),
            0
        );
        assert_eq!(history.visible_at(rec).count(), facts.len());
    }

    #[test]
    fn facts_serialize_with_a_type_tag() {
        let fact = Fact::Erased {
            at: t("2026-03-01T00:00:00Z"),
            recorded_at: t("2026-03-01T00:00:00Z"),
        };
        let json = serde_json::to_value(&fact).unwrap();
        assert_eq!(json["type"], "erased");
        let back: Fact = serde_json::from_value(json).unwrap();
        assert_eq!(back, fact);
    }

    #[test]
    fn an_opt_in_covers_only_the_categories_it_names() {
        let o = OptInFact {
            id: Uuid::nil(),
            categories: vec!["marketing".into(), "utility".into()],
            collected_at: t("2026-03-01T00:00:00Z"),
            recorded_at: t("2026-03-01T00:00:00Z"),
            confirmed_on_record: false,
        };
        assert!(o.covers("utility"));
        assert!(!o.covers("service"));
        assert!(!o.covers("Utility"), "stored names are compared exactly");
    }
}
