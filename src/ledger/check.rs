//! `may_contact`: one number, or a campaign's worth at once. The hot path reads like
//! the product: parse the phone, find the state, call `policy::decide`, answer.
//! Any failure to read the state fails closed: the caller answers 503 with
//! `allowed: false`, never an allow.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::projection::BusinessView;
use super::{Asker, Caller, Ledger, PolicyRef};
use crate::domain::history::SubjectHistory;
use crate::domain::phone::{E164Candidate, Phone, PhoneError};
use crate::policy::model::{Amount, Currency};
use crate::policy::{Basis, Category, Decision, Moment, Price, Reason, decide};
use crate::store::StoreError;
use crate::store::ledger as rows;

/// An estimated price. Prices come from the policy file and are estimates for
/// planning, not an invoice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PriceEstimate {
    /// ISO 4217 code, e.g. `EUR`.
    #[schema(value_type = String)]
    pub currency: Currency,
    /// Decimal amount per message, e.g. `0.0589`.
    #[schema(value_type = String)]
    pub amount: Amount,
    /// Always true: an estimate from the policy.
    pub estimate: bool,
}

impl From<Price> for PriceEstimate {
    fn from(price: Price) -> Self {
        // Kept as they are and written straight into the answer: no strings.
        PriceEstimate {
            currency: price.currency(),
            amount: price.amount(),
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
    #[serde(serialize_with = "crate::domain::time::serialize_rfc3339")]
    pub evaluated_at: DateTime<Utc>,
    /// The instant the answer is about (default: `evaluated_at`).
    #[serde(serialize_with = "crate::domain::time::serialize_rfc3339")]
    pub as_of: DateTime<Utc>,
}

impl CheckResponse {
    /// The answer as JSON, written by hand: byte for byte what serde_json writes
    /// for it (a property test holds the two equal), without serde's per-field
    /// machinery and with no escaping pass over the strings that cannot need one
    /// (the reason, ids, instants, the currency and amount). The policy's name and
    /// version, which come from a file, still go through serde_json. Written into
    /// every single check's answer.
    pub fn to_json(&self) -> Vec<u8> {
        use crate::domain::time::push_rfc3339_json;
        fn push_uuid(id: &Uuid, out: &mut Vec<u8>) {
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            out.push(b'"');
            out.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
            out.push(b'"');
        }
        fn push_bool(value: bool, out: &mut Vec<u8>) {
            out.extend_from_slice(if value { b"true" } else { b"false" });
        }
        fn push_serde<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
            serde_json::to_writer(out, value)
                .expect("a string or an instant serialises into a Vec");
        }
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"allowed\":");
        push_bool(self.allowed, &mut out);
        out.extend_from_slice(b",\"reason\":\"");
        out.extend_from_slice(self.reason.as_str().as_bytes());
        out.extend_from_slice(b"\",\"basis\":");
        match &self.basis {
            None => out.extend_from_slice(b"null"),
            Some(Basis::OptIn { opt_in_id }) => {
                out.extend_from_slice(b"{\"type\":\"opt_in\",\"opt_in_id\":");
                push_uuid(opt_in_id, &mut out);
                out.push(b'}');
            }
            Some(window @ Basis::Window { .. }) => push_serde(window, &mut out),
        }
        out.extend_from_slice(b",\"billable\":");
        push_bool(self.billable, &mut out);
        out.extend_from_slice(b",\"price\":");
        match &self.price {
            None => out.extend_from_slice(b"null"),
            Some(price) => {
                out.extend_from_slice(b"{\"currency\":\"");
                out.extend_from_slice(price.currency.as_str().as_bytes());
                out.extend_from_slice(b"\",\"amount\":\"");
                out.extend_from_slice(price.amount.write(&mut [0; 28]).as_bytes());
                out.extend_from_slice(b"\",\"estimate\":");
                push_bool(price.estimate, &mut out);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"window_expires_at\":");
        match &self.window_expires_at {
            None => out.extend_from_slice(b"null"),
            Some(at) => push_serde(at, &mut out),
        }
        out.extend_from_slice(b",\"policy\":{\"name\":");
        push_serde(self.policy.name.as_str(), &mut out);
        out.extend_from_slice(b",\"version\":");
        push_serde(self.policy.version.as_str(), &mut out);
        out.extend_from_slice(b"},\"decision_id\":");
        push_uuid(&self.decision_id, &mut out);
        out.extend_from_slice(b",\"evaluated_at\":");
        push_rfc3339_json(&self.evaluated_at, &mut out);
        out.extend_from_slice(b",\"as_of\":");
        push_rfc3339_json(&self.as_of, &mut out);
        out.push(b'}');
        out
    }
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

/// Why a single check has no answer.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The number is not a valid phone number (422).
    #[error("invalid phone: {0}")]
    InvalidPhone(PhoneError),
    /// The state cannot be read or proved fresh: the answer is no (503).
    #[error(transparent)]
    Unavailable(#[from] CheckUnavailable),
}

/// A number, found the fast way where it can be: input already in E.164 is hashed
/// as it is and looked up; the parse runs only for other forms, or when the
/// number is not known (to tell an invalid number from an unknown one; for E.164
/// input that parse is itself a shortcut, see `domain::phone::plan`).
fn find(
    view: &BusinessView,
    raw: &str,
    default_region: Option<&str>,
) -> Result<([u8; 32], u16), PhoneError> {
    let mut hashed = None;
    if let Some(candidate) = E164Candidate::recognise(raw.trim()) {
        let pseudonym = view.pseudonym_key().pseudonym_of_candidate(&candidate);
        if view.contains(&pseudonym) {
            return Ok((pseudonym, candidate.calling_code()));
        }
        hashed = Some((candidate.as_str(), pseudonym));
    }
    parse_unknown(view, raw, default_region, hashed)
}

/// The rest of [`find`] for a number not found by its E.164 text (`hashed`: that
/// text and its pseudonym, when the input was E.164).
fn parse_unknown(
    view: &BusinessView,
    raw: &str,
    default_region: Option<&str>,
    hashed: Option<(&str, [u8; 32])>,
) -> Result<([u8; 32], u16), PhoneError> {
    let phone = Phone::parse(raw, default_region)?;
    let pseudonym = match hashed {
        // The same text: the same keyed hash, already computed.
        Some((text, pseudonym)) if text == phone.as_e164() => pseudonym,
        _ => view.pseudonym_key().pseudonym(&phone),
    };
    Ok((pseudonym, phone.calling_code()))
}

/// The live decision for one number: [`find`] and `decide`, with one lookup of
/// the index when the number is known and written in E.164.
fn decide_one_live(
    view: &BusinessView,
    raw: &str,
    default_region: Option<&str>,
    category: &Category,
    now: DateTime<Utc>,
) -> Result<Decision, PhoneError> {
    let mut hashed = None;
    let candidate = E164Candidate::recognise(raw.trim());
    if let Some(candidate) = &candidate {
        let pseudonym = view.pseudonym_key().pseudonym_of_candidate(candidate);
        let code = Some(candidate.calling_code());
        if let Some(decision) = view.decide_known(&pseudonym, category, code, now) {
            return Ok(decision);
        }
        hashed = Some((candidate.as_str(), pseudonym));
    }
    let (pseudonym, calling_code) = parse_unknown(view, raw, default_region, hashed)?;
    Ok(view.decide(&pseudonym, category, Some(calling_code), now))
}

impl Ledger {
    /// `may_contact` for one number, as written by the sender (`raw`, with its
    /// `default_region`), for `asker`'s business under its policy. A live check is
    /// answered from this node's projection, made fresh first (fail closed when it
    /// cannot be), with the view borrowed, not counted (see
    /// [`super::projection::Projection::with_view`]); an `as_of` check is answered from
    /// the recorded history, exactly.
    pub async fn check(
        &self,
        asker: Asker<'_>,
        raw: &str,
        default_region: Option<&str>,
        category: &Category,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<CheckResponse, CheckError> {
        let business_id = asker.business_id;
        let (decision, evaluated_at, as_of) = match as_of {
            None => {
                if !asker.fenced {
                    self.projection
                        .fence(business_id, asker.policy)
                        .await
                        .map_err(CheckUnavailable)?;
                }
                let now = self.store.clock().now();
                let live =
                    |view: &BusinessView| decide_one_live(view, raw, default_region, category, now);
                let decision = match self.projection.with_view(business_id, live) {
                    Some(decision) => decision,
                    // Not loaded (a fence loads it; kept for safety): load it now.
                    None => {
                        let view = self.projection.fresh(business_id, asker.policy).await;
                        live(&*view.map_err(CheckUnavailable)?)
                    }
                }
                .map_err(CheckError::InvalidPhone)?;
                (decision, now, now)
            }
            Some(as_of) => {
                let phone = Phone::parse(raw, default_region).map_err(CheckError::InvalidPhone)?;
                let pseudonym = self.keys.pseudonym_key(business_id).pseudonym(&phone);
                let history = self
                    .store
                    .run(move |conn| {
                        let mut found =
                            rows::histories_by_pseudonym(conn, business_id, &[pseudonym])?;
                        Ok(found.remove(&pseudonym).unwrap_or_default())
                    })
                    .await
                    .map_err(CheckUnavailable)?;
                let decision = decide(
                    &history,
                    asker.policy,
                    category,
                    Some(phone.calling_code()),
                    Moment::AsOf(as_of),
                );
                (decision, self.store.clock().now(), as_of)
            }
        };
        Ok(CheckResponse {
            allowed: decision.allowed,
            reason: decision.reason,
            basis: decision.basis,
            billable: decision.billable,
            price: decision.price.map(PriceEstimate::from),
            window_expires_at: decision.window_expires_at,
            policy: PolicyRef::of(asker.policy),
            decision_id: crate::domain::hot_v7(),
            evaluated_at,
            as_of,
        })
    }

    /// The caller's business view, fresh since the request arrived: the one
    /// authentication fenced, or a new fence.
    async fn fresh_view(&self, caller: &Caller) -> Result<Arc<BusinessView>, CheckUnavailable> {
        if caller.fenced
            && let Some(view) = self.projection.get(caller.business_id)
        {
            return Ok(view);
        }
        self.projection
            .fresh(caller.business_id, &caller.policy)
            .await
            .map_err(CheckUnavailable)
    }

    /// [`Ledger::check`] live, for a number already parsed (the preference page).
    pub async fn check_phone(
        &self,
        caller: &Caller,
        phone: &Phone,
        category: &Category,
    ) -> Result<CheckResponse, CheckUnavailable> {
        self.check(caller.asker(), phone.as_e164(), None, category, None)
            .await
            .map_err(|e| match e {
                CheckError::Unavailable(e) => e,
                CheckError::InvalidPhone(e) => CheckUnavailable(StoreError::Internal(format!(
                    "a parsed number did not parse again: {e}"
                ))),
            })
    }

    /// `may_contact` for many numbers at once (a campaign dry-run). Numbers that do
    /// not parse are items with their error, not a failed batch. Live batches are
    /// answered from the projection (one fence for the whole batch); `as_of`
    /// batches from the recorded history, one query per 900 numbers.
    pub async fn check_batch(
        &self,
        caller: &Caller,
        category: Category,
        phones: Vec<String>,
        default_region: Option<String>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<BatchResponse, CheckUnavailable> {
        let policy = caller.policy.clone();
        let evaluated_at;
        let items: Vec<(String, Result<Decision, String>)> = match as_of {
            None => {
                let view = self.fresh_view(caller).await?;
                evaluated_at = self.store.clock().now();
                let category = category.clone();
                tokio::task::spawn_blocking(move || {
                    decide_live(
                        &view,
                        phones,
                        default_region.as_deref(),
                        &category,
                        evaluated_at,
                    )
                })
                .await
                .map_err(|e| CheckUnavailable(StoreError::Internal(e.to_string())))?
            }
            Some(as_of) => {
                let business_id = caller.business_id;
                let keys = self.keys.clone();
                let policy = policy.clone();
                let category = category.clone();
                evaluated_at = self.store.clock().now();
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
                        let histories =
                            rows::histories_by_pseudonym(conn, business_id, &pseudonyms)?;
                        let empty = SubjectHistory::default();
                        Ok(phones
                            .into_iter()
                            .zip(parsed)
                            .map(|(raw, parsed)| {
                                let decision = parsed.map(|(phone, pseudonym)| {
                                    decide(
                                        histories.get(&pseudonym).unwrap_or(&empty),
                                        &policy,
                                        &category,
                                        Some(phone.calling_code()),
                                        Moment::AsOf(as_of),
                                    )
                                });
                                (raw, decision)
                            })
                            .collect())
                    })
                    .await
                    .map_err(CheckUnavailable)?
            }
        };
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut allowed = 0;
        let results: Vec<BatchItem> = items
            .into_iter()
            .map(|(phone, decision)| {
                let item = match decision {
                    Ok(d) => BatchItem {
                        phone,
                        allowed: d.allowed,
                        reason: d.reason.as_str().to_owned(),
                        billable: d.billable,
                        error: None,
                    },
                    Err(error) => BatchItem {
                        phone,
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
            as_of: as_of.unwrap_or(evaluated_at),
        })
    }
}

/// Running totals of a streamed campaign (its last line).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct StreamCounts {
    pub total: usize,
    pub allowed: usize,
    /// How many of each reason (including `invalid_phone` and `invalid_line`).
    pub counts: BTreeMap<String, usize>,
}

/// One answered line of a stream: the decision, or (reason, why) when there is
/// none.
pub type StreamAnswer = (String, Result<Decision, (&'static str, String)>);

impl Ledger {
    /// One chunk of `POST /v1/checks/stream`: live decisions from a view fenced
    /// for this chunk (its lines arrived before the fence read). Lines marked
    /// `false` could not be read and are answered `invalid_line`.
    pub async fn check_stream_chunk(
        &self,
        caller: &Caller,
        category: &Category,
        lines: Vec<(String, bool)>,
        default_region: Option<String>,
        counts: &mut StreamCounts,
    ) -> Result<Vec<StreamAnswer>, CheckUnavailable> {
        let view = self
            .projection
            .fresh(caller.business_id, &caller.policy)
            .await
            .map_err(CheckUnavailable)?;
        let now = self.store.clock().now();
        let category = category.clone();
        let answers = tokio::task::spawn_blocking(move || {
            let (phones, readable): (Vec<String>, Vec<bool>) = lines.into_iter().unzip();
            let decided = decide_live(&view, phones, default_region.as_deref(), &category, now);
            decided
                .into_iter()
                .zip(readable)
                .map(|((phone, decision), readable)| {
                    let answer = if readable {
                        decision.map_err(|e| ("invalid_phone", e))
                    } else {
                        Err(("invalid_line", phone.clone()))
                    };
                    (phone, answer)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| CheckUnavailable(StoreError::Internal(e.to_string())))?;
        for (_, answer) in &answers {
            counts.total += 1;
            let reason = match answer {
                Ok(d) => {
                    counts.allowed += usize::from(d.allowed);
                    d.reason.as_str()
                }
                Err((reason, _)) => reason,
            };
            *counts.counts.entry(reason.to_owned()).or_default() += 1;
        }
        Ok(answers)
    }
}

/// Below this many numbers, one thread finds them all.
const PARALLEL_FROM: usize = 256;

/// [`find`] for every number, in input order. A number nobody opted in costs a
/// parse (to tell `invalid_phone` from `no_consent`): ~0.2 us for E.164 input
/// (the metadata shortcut), several microseconds for other forms, and most of a
/// campaign is such numbers: large lists are split across the machine's cores
/// (scoped threads; the caller is already on the blocking pool).
fn find_all(
    view: &BusinessView,
    phones: &[String],
    default_region: Option<&str>,
) -> Vec<Result<([u8; 32], u16), String>> {
    let one = |raw: &String| find(view, raw, default_region).map_err(|e| e.to_string());
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || phones.len() < PARALLEL_FROM {
        return phones.iter().map(one).collect();
    }
    let per_thread = phones.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = phones
            .chunks(per_thread)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().expect("finding numbers does not panic"))
            .collect()
    })
}

/// Live decisions for `phones` from a fresh view, in input order.
pub(crate) fn decide_live(
    view: &BusinessView,
    phones: Vec<String>,
    default_region: Option<&str>,
    category: &Category,
    now: DateTime<Utc>,
) -> Vec<(String, Result<Decision, String>)> {
    let found = find_all(view, &phones, default_region);
    let mut out = Vec::with_capacity(phones.len());
    view.decide_many(
        phones
            .into_iter()
            .zip(&found)
            .map(|(raw, found)| match found {
                Ok((pseudonym, code)) => ((raw, None), Some(pseudonym), Some(*code)),
                Err(e) => ((raw, Some(e.clone())), None, None),
            }),
        category,
        now,
        |(raw, error), decision| {
            out.push((
                raw,
                match (decision, error) {
                    (Some(d), _) => Ok(d),
                    (None, Some(e)) => Err(e),
                    (None, None) => Err("phone number could not be parsed".to_owned()),
                },
            ));
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{Amount, Currency};
    use proptest::prelude::*;

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (
            // Years 0 to 9999 mostly, and beyond (chrono's own form).
            prop_oneof![
                9 => -62_167_219_200i64..253_402_300_800,
                1 => 253_402_300_800i64..8_210_266_876_799,
            ],
            prop_oneof![
                Just(0u32),
                (0u32..1_000_000).prop_map(|u| u * 1_000),
                0u32..1_000_000_000
            ],
        )
            .prop_map(|(secs, nanos)| DateTime::<Utc>::from_timestamp(secs, nanos).unwrap())
    }

    fn answer() -> impl Strategy<Value = CheckResponse> {
        let basis = prop_oneof![
            Just(None),
            any::<u128>().prop_map(|id| Some(Basis::OptIn {
                opt_in_id: Uuid::from_u128(id)
            })),
            instant().prop_map(|expires_at| Some(Basis::Window { expires_at })),
        ];
        let price = proptest::option::of(("[A-Z]{3}", 0i64..1_000_000_000_000, any::<bool>()));
        (
            (
                any::<bool>(),
                0..Reason::ALL.len(),
                basis,
                any::<bool>(),
                price,
            ),
            (
                proptest::option::of(instant()),
                // Names and versions from policy files: anything, quotes and
                // control characters included.
                any::<String>(),
                any::<String>(),
                any::<u128>(),
                instant(),
                instant(),
            ),
        )
            .prop_map(
                |(
                    (allowed, reason, basis, billable, price),
                    (window_expires_at, name, version, decision_id, evaluated_at, as_of),
                )| CheckResponse {
                    allowed,
                    reason: Reason::ALL[reason],
                    basis,
                    billable,
                    price: price.map(|(currency, micros, estimate)| PriceEstimate {
                        currency: Currency::parse(&currency).unwrap(),
                        amount: Amount::from_micros(micros).unwrap(),
                        estimate,
                    }),
                    window_expires_at,
                    policy: PolicyRef { name, version },
                    decision_id: Uuid::from_u128(decision_id),
                    evaluated_at,
                    as_of,
                },
            )
    }

    proptest! {
        #[test]
        fn the_hand_written_answer_is_what_serde_json_writes(answer in answer()) {
            let ours = answer.to_json();
            prop_assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&answer).unwrap()
            );
        }
    }

    #[test]
    fn an_answer_with_every_field_is_written_as_serde_json_writes_it() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T01:22:18.520432Z")
            .unwrap()
            .with_timezone(&Utc);
        let answer = CheckResponse {
            allowed: true,
            reason: Reason::ServiceWindow,
            basis: Some(Basis::Window { expires_at: at }),
            billable: true,
            price: Some(PriceEstimate {
                currency: Currency::parse("EUR").unwrap(),
                amount: Amount::from_micros(58_900).unwrap(),
                estimate: true,
            }),
            window_expires_at: Some(at),
            policy: PolicyRef {
                name: "whatsapp-\"eu\"".into(),
                version: "2026-11-01+sha256:47cff3b3f7bc\u{1}".into(),
            },
            decision_id: Uuid::from_u128(7),
            evaluated_at: at,
            as_of: at,
        };
        let text = String::from_utf8(answer.to_json()).unwrap();
        assert_eq!(text, serde_json::to_string(&answer).unwrap());
        assert!(text.contains(r#""amount":"0.0589""#), "{text}");
        assert!(text.contains(r#""name":"whatsapp-\"eu\"""#), "{text}");
    }
}
