//! `may_contact`: one number, or a campaign's worth at once. The hot path reads like
//! the product: parse the phone, find the state, call `policy::decide`, answer.
//! Any failure to read the state fails closed: the caller answers 503 with
//! `allowed: false`, never an allow.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Caller, Ledger, PolicyRef};
use crate::domain::history::SubjectHistory;
use crate::domain::phone::Phone;
use crate::policy::{Basis, Category, Moment, Price, Reason, decide};
use crate::store::StoreError;
use crate::store::ledger as rows;

/// An estimated price. Prices come from the policy file and are estimates for
/// planning, not an invoice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PriceEstimate {
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// Decimal amount per message, e.g. `0.0589`.
    pub amount: String,
    /// Always true: an estimate from the policy.
    pub estimate: bool,
}

impl From<Price> for PriceEstimate {
    fn from(price: Price) -> Self {
        PriceEstimate {
            currency: price.currency().as_str().to_owned(),
            amount: price.amount().to_string(),
            estimate: true,
        }
    }
}

/// The answer to `may_contact` for one number.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResponse {
    /// Send only when this is true (and the status was 200).
    pub allowed: bool,
    /// Why: `consent` or `service_window` when allowed; otherwise the most specific
    /// reason for the denial.
    pub reason: Reason,
    /// The legal basis of an allow: the opt-in, or the open window.
    pub basis: Option<Basis>,
    /// Whether the message will be billed (false inside an open window for a
    /// category the policy makes free there; false for denials).
    pub billable: bool,
    /// Estimated price (only when allowed and billable, and the policy has one).
    pub price: Option<PriceEstimate>,
    /// When the customer-service window closes, if one is open at `as_of`.
    pub window_expires_at: Option<DateTime<Utc>>,
    /// The policy and its exact version that decided.
    pub policy: PolicyRef,
    /// An id for this decision, for the sender's own records.
    pub decision_id: Uuid,
    /// When the service answered.
    pub evaluated_at: DateTime<Utc>,
    /// The instant the answer is about (default: `evaluated_at`).
    pub as_of: DateTime<Utc>,
}

/// One number of a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchItem {
    /// The number as sent.
    pub phone: String,
    pub allowed: bool,
    /// The reason, or `invalid_phone` for a number that could not be parsed.
    pub reason: String,
    pub billable: bool,
    /// Why the number is invalid (only for `invalid_phone`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answers for a batch, in input order, with counts by reason.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    pub category: String,
    pub total: usize,
    pub allowed: usize,
    /// How many of each reason (including `invalid_phone`).
    pub counts: BTreeMap<String, usize>,
    pub results: Vec<BatchItem>,
    pub policy: PolicyRef,
    pub evaluated_at: DateTime<Utc>,
    pub as_of: DateTime<Utc>,
}

/// The store could not be read: the answer is no (fail closed).
#[derive(Debug, thiserror::Error)]
#[error("the consent state could not be read: {0}")]
pub struct CheckUnavailable(pub StoreError);

impl Ledger {
    /// `may_contact` for one number.
    pub async fn check(
        &self,
        caller: &Caller,
        phone: &Phone,
        category: &Category,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<CheckResponse, CheckUnavailable> {
        let business_id = caller.business_id;
        let pseudonym = self.keys.pseudonym_key(business_id).pseudonym(phone);
        let history = self
            .store
            .run(move |conn| {
                let mut found = rows::histories_by_pseudonym(conn, business_id, &[pseudonym])?;
                Ok(found.remove(&pseudonym).unwrap_or_default())
            })
            .await
            .map_err(CheckUnavailable)?;
        let evaluated_at = self.store.clock().now();
        let moment = as_of.map_or(Moment::Live(evaluated_at), Moment::AsOf);
        let as_of = moment.instant();
        let decision = decide(
            &history,
            &caller.policy,
            category,
            Some(phone.calling_code()),
            moment,
        );
        Ok(CheckResponse {
            allowed: decision.allowed,
            reason: decision.reason,
            basis: decision.basis,
            billable: decision.billable,
            price: decision.price.map(PriceEstimate::from),
            window_expires_at: decision.window_expires_at,
            policy: PolicyRef::of(&caller.policy),
            decision_id: Uuid::now_v7(),
            evaluated_at,
            as_of,
        })
    }

    /// `may_contact` for many numbers at once (a campaign dry-run). Numbers that do
    /// not parse are items with their error, not a failed batch. Parsing, hashing
    /// and deciding run on the blocking pool, with one query per 900 numbers.
    pub async fn check_batch(
        &self,
        caller: &Caller,
        category: Category,
        phones: Vec<String>,
        default_region: Option<String>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<BatchResponse, CheckUnavailable> {
        let business_id = caller.business_id;
        let keys = self.keys.clone();
        let policy = caller.policy.clone();
        let clock = self.store.clock();
        self.store
            .run(move |conn| {
                let key = keys.pseudonym_key(business_id);
                let parsed: Vec<Result<(Phone, [u8; 32]), String>> = phones
                    .iter()
                    .map(|raw| {
                        Phone::parse(raw, default_region.as_deref())
                            .map(|phone| {
                                let pseudonym = key.pseudonym(&phone);
                                (phone, pseudonym)
                            })
                            .map_err(|e| e.to_string())
                    })
                    .collect();
                let pseudonyms: Vec<[u8; 32]> = parsed
                    .iter()
                    .filter_map(|p| p.as_ref().ok().map(|(_, s)| *s))
                    .collect();
                let histories = rows::histories_by_pseudonym(conn, business_id, &pseudonyms)?;
                let evaluated_at = clock.now();
                let moment = as_of.map_or(Moment::Live(evaluated_at), Moment::AsOf);
                let as_of = moment.instant();
                let empty = SubjectHistory::default();
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                let mut allowed = 0;
                let results: Vec<BatchItem> = phones
                    .into_iter()
                    .zip(parsed)
                    .map(|(raw, parsed)| {
                        let item = match parsed {
                            Ok((phone, pseudonym)) => {
                                let history = histories.get(&pseudonym).unwrap_or(&empty);
                                let d = decide(
                                    history,
                                    &policy,
                                    &category,
                                    Some(phone.calling_code()),
                                    moment,
                                );
                                BatchItem {
                                    phone: raw,
                                    allowed: d.allowed,
                                    reason: d.reason.as_str().to_owned(),
                                    billable: d.billable,
                                    error: None,
                                }
                            }
                            Err(error) => BatchItem {
                                phone: raw,
                                allowed: false,
                                reason: "invalid_phone".to_owned(),
                                billable: false,
                                error: Some(error),
                            },
                        };
                        *counts.entry(item.reason.clone()).or_default() += 1;
                        allowed += usize::from(item.allowed);
                        item
                    })
                    .collect();
                Ok(BatchResponse {
                    category: category.as_str().to_owned(),
                    total: results.len(),
                    allowed,
                    counts,
                    results,
                    policy: PolicyRef::of(&policy),
                    evaluated_at,
                    as_of,
                })
            })
            .await
            .map_err(CheckUnavailable)
    }
}
