//! Retention (SPEC section 4, policy `retention`): a job that deletes what the
//! business's policy says has expired, audited with a `retention.purge` event of
//! counts. It never touches what a check still needs (revocations, blocks, the
//! opt-in facts themselves, recent windows) nor the audit chain.
//!
//! - Closed windows: inbound-message facts received longer ago than the longest
//!   window (168 h at most, by policy validation) plus `closed_window_days`.
//! - Evidence of ended consent: an opt-in whose every category was revoked, or
//!   whose consent expired, longer ago than `revoked_evidence_days` loses its
//!   sealed evidence (and its confirmations' evidence); the fact stays.
//! - Idempotency records older than 24 hours.
//!
//! Limitation: the audit events keep their own sealed copy of the evidence (the
//! chain hashes it), readable until the subject's data key is destroyed by an
//! erasure; the chain cannot be edited to remove it.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use super::Ledger;
use crate::audit::{EventType, NewEvent};
use crate::domain::Actor;
use crate::domain::history::Fact;
use crate::policy::Policy;
use crate::store::ledger::{self as rows, RetentionCounts};
use crate::store::{DbConnection, StoreError};

/// The longest customer-service window any valid policy can have.
const LONGEST_WINDOW: Duration = Duration::hours(168);
/// How long an Idempotency-Key is remembered.
const IDEMPOTENCY_TTL: Duration = Duration::hours(24);
/// How long a platform delivery (a webhook's message id) is remembered: Meta
/// redelivers a failed webhook for up to 7 days, so longer than that.
pub const CHANNEL_DELIVERY_TTL: Duration = Duration::days(30);

impl Ledger {
    /// One retention run over every business; returns what was purged per
    /// business (businesses with nothing to purge are left out, and get no event).
    pub async fn run_retention(&self) -> Result<Vec<(Uuid, RetentionCounts)>, StoreError> {
        let businesses = self.store.run(rows::businesses_and_policies).await?;
        let now = self.store.clock().now();
        let mut purged = Vec::new();
        for (business_id, policy_name) in businesses {
            let Some(policy) = self.policy(&policy_name) else {
                tracing::warn!(%business_id, policy = %policy_name, "retention skipped: policy not loaded");
                continue;
            };
            let result = self
                .writer
                .write_unbatched(business_id, Actor::System, move |conn, _recorded_at| {
                    let counts = purge(conn, business_id, &policy, now)?;
                    if counts.total() == 0 {
                        // Nothing changed: no event (and the transaction is empty).
                        return Err(StoreError::Conflict("nothing_to_purge"));
                    }
                    let event = NewEvent::new(
                        EventType::RetentionPurge,
                        json!({"counts": counts, "policy": policy.versioned(), "at": now}),
                    );
                    Ok((counts, vec![event]))
                })
                .await;
            match result {
                Ok(counts) => purged.push((business_id, counts)),
                Err(StoreError::Conflict("nothing_to_purge")) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(purged)
    }
}

fn purge(
    conn: &mut DbConnection,
    business_id: Uuid,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<RetentionCounts, StoreError> {
    let closed_windows = rows::purge_inbound_before(
        conn,
        business_id,
        now - LONGEST_WINDOW - policy.closed_window_retention(),
    )?;
    let keep = policy.revoked_evidence_retention();
    let mut evidence_purged = 0;
    for row in rows::opt_ins_with_evidence_before(conn, business_id, now - keep)? {
        let Fact::OptIn(opt_in) = row.to_fact()? else {
            continue;
        };
        let subject_id = crate::store::rows::parse_id(&row.subject_id)?;
        let history = rows::history(conn, subject_id)?;
        if let Some(ended) = consent_ended(&opt_in, &history.facts, policy)
            && ended + keep < now
        {
            rows::purge_evidence(conn, business_id, opt_in.id)?;
            evidence_purged += 1;
        }
    }
    let idempotency_records = rows::purge_idempotency_before(
        conn,
        business_id,
        now - IDEMPOTENCY_TTL,
        now - CHANNEL_DELIVERY_TTL,
    )?;
    Ok(RetentionCounts {
        closed_windows,
        evidence_purged,
        idempotency_records,
    })
}

/// When the consent an opt-in gave ended: when its last category was revoked
/// after it (by a revocation still in force: a STOP that a START undid ended
/// nothing), or when it expired, whichever came first. Effective times throughout.
fn consent_ended(
    opt_in: &crate::domain::history::OptInFact,
    facts: &[Fact],
    policy: &Policy,
) -> Option<DateTime<Utc>> {
    let started = opt_in.effective_at();
    let expired = started + policy.max_age();
    let covers = |list: &Option<Vec<String>>, category: &String| {
        list.as_ref().is_none_or(|c| c.contains(category))
    };
    let mut revoked_all_at: Option<DateTime<Utc>> = None;
    for category in &opt_in.categories {
        let restored = facts
            .iter()
            .filter_map(|f| match f {
                Fact::Restoration { categories, .. } if covers(categories, category) => {
                    Some(f.effective_at())
                }
                _ => None,
            })
            .max();
        let revoked = facts
            .iter()
            .filter_map(|f| match f {
                Fact::Revocation {
                    categories,
                    by_keyword,
                    ..
                } if f.effective_at() >= started && covers(categories, category) => {
                    let at = f.effective_at();
                    let undone = *by_keyword && restored.is_some_and(|r| at < r);
                    (!undone).then_some(at)
                }
                _ => None,
            })
            .min();
        match revoked {
            // One category still in force: the consent has not ended by revocation.
            None => {
                revoked_all_at = None;
                break;
            }
            Some(at) => revoked_all_at = Some(revoked_all_at.map_or(at, |r| r.max(at))),
        }
    }
    Some(revoked_all_at.map_or(expired, |r| r.min(expired)))
}
