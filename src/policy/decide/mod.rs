//! The decision: may this business contact this subject for this category now (or
//! as of a past instant)?
//!
//! [`decide`] is a pure function of the subject's history, the policy, the category,
//! the calling code and the instant: no I/O, no clock reads. The same code answers a
//! live check and an auditor's "was this send allowed at that moment?", so it can be
//! tested exhaustively without a database (SPEC section 3 is the contract).
//!
//! A wrong "yes" is a breach (GDPR Art. 6, 7; ePrivacy Art. 13), a wrong "no" is a
//! lost message: wherever the rules leave a tie or a gap, the answer falls on "no".
//!
//! This module may depend on `crate::domain::history`, chrono, uuid and serde; never
//! on actix or diesel.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::{AllowedBy, Category, CategoryRules, Policy, Price};
use crate::domain::history::{Fact, SubjectHistory};

/// Why a decision came out the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Allowed: an active opt-in covers the category.
    Consent,
    /// Allowed: the subject wrote first and the customer-service window is open.
    ServiceWindow,
    /// Denied: the subject blocked the business.
    Blocked,
    /// Denied: the latest word for the category was a revocation.
    Revoked,
    /// Denied: consent was given but is older than the policy's maximum age.
    ConsentExpired,
    /// Denied: double opt-in applies and the opt-in was not confirmed.
    PendingConfirmation,
    /// Denied: the subject's data was erased and no fresh consent came since.
    Suppressed,
    /// Denied: the category is allowed only inside a window, and none is open.
    WindowClosed,
    /// Denied: nothing allows it.
    NoConsent,
}

impl Reason {
    /// Every reason, allowing ones first.
    pub const ALL: [Reason; 9] = [
        Reason::Consent,
        Reason::ServiceWindow,
        Reason::Blocked,
        Reason::Revoked,
        Reason::ConsentExpired,
        Reason::PendingConfirmation,
        Reason::Suppressed,
        Reason::WindowClosed,
        Reason::NoConsent,
    ];

    /// The snake_case name used in the API and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Consent => "consent",
            Reason::ServiceWindow => "service_window",
            Reason::Blocked => "blocked",
            Reason::Revoked => "revoked",
            Reason::ConsentExpired => "consent_expired",
            Reason::PendingConfirmation => "pending_confirmation",
            Reason::Suppressed => "suppressed",
            Reason::WindowClosed => "window_closed",
            Reason::NoConsent => "no_consent",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The legal basis of an allowing decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Basis {
    /// Consent (GDPR Art. 6(1)(a)): the opt-in that is the proof (Art. 7(1)).
    OptIn {
        /// The deciding opt-in.
        opt_in_id: Uuid,
    },
    /// The subject's own message opened a customer-service window.
    Window {
        /// When the window closes.
        expires_at: DateTime<Utc>,
    },
}

/// The answer to `may_contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the message may be sent.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// The legal basis; `Some` exactly when allowed.
    pub basis: Option<Basis>,
    /// Whether the message will be billed; false for denials.
    pub billable: bool,
    /// The estimated price; only when allowed, billable and the policy has one.
    pub price: Option<Price>,
    /// When the open customer-service window closes, if one is open: reported even
    /// when consent is the basis or the answer is no, because it decides billing.
    pub window_expires_at: Option<DateTime<Utc>>,
}

impl Decision {
    fn deny(reason: Reason, window_expires_at: Option<DateTime<Utc>>) -> Decision {
        Decision {
            allowed: false,
            reason,
            basis: None,
            billable: false,
            price: None,
            window_expires_at,
        }
    }
}

/// Which facts a decision counts, and the instant it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// A live check, answered at this instant of the answering node's clock: every
    /// fact the store has acknowledged counts, whatever its times say. Which facts
    /// were acknowledged before the check is decided by the commit, not by
    /// comparing clocks, so no node's clock can hide a STOP (SPEC section 3).
    Live(DateTime<Utc>),
    /// An auditor's "was this allowed at that instant?": only facts recorded by
    /// then count (what the service could have known).
    AsOf(DateTime<Utc>),
}

impl Moment {
    /// The instant windows and consent age are measured at.
    pub fn instant(self) -> DateTime<Utc> {
        match self {
            Moment::Live(at) | Moment::AsOf(at) => at,
        }
    }

    /// Whether a decision at this moment counts `fact`.
    pub fn sees(self, fact: &Fact) -> bool {
        match self {
            Moment::Live(_) => true,
            Moment::AsOf(as_of) => fact.is_visible_at(as_of),
        }
    }
}

/// A bare instant is an `as_of` question.
impl From<DateTime<Utc>> for Moment {
    fn from(as_of: DateTime<Utc>) -> Moment {
        Moment::AsOf(as_of)
    }
}

/// Decides whether `category` may be sent to the subject of `history` at `moment`
/// (SPEC section 3). A bare instant is taken as `as_of`.
///
/// A `category` that does not belong to `policy` is denied with
/// [`Reason::NoConsent`] (it cannot happen when the category came from this policy).
pub fn decide(
    history: &SubjectHistory,
    policy: &Policy,
    category: &Category,
    calling_code: Option<u16>,
    moment: impl Into<Moment>,
) -> Decision {
    let moment = moment.into();
    SubjectState::fold(history, policy, moment).decide(
        policy,
        category,
        calling_code,
        moment.instant(),
    )
}

/// The categories of `policy` for which an opt-in is active at `moment`, i.e. whose
/// decision would be [`Reason::Consent`] were the subject not blocked.
///
/// A block is left out on purpose: it silences the channel but withdraws no consent.
pub fn active_consent_categories(
    history: &SubjectHistory,
    policy: &Policy,
    moment: impl Into<Moment>,
) -> Vec<Category> {
    let moment = moment.into();
    SubjectState::fold(history, policy, moment).active_categories(policy, moment.instant())
}

/// The categories a restoration (START) recorded at `moment` would bring back into
/// force: active with it, not active without it. Empty when there is no keyword
/// revocation to undo, or when what it revoked has expired meanwhile.
pub fn keyword_restorable_categories(
    history: &SubjectHistory,
    policy: &Policy,
    restoration: &Fact,
    moment: impl Into<Moment>,
) -> Vec<Category> {
    let moment = moment.into();
    let before = active_consent_categories(history, policy, moment);
    let mut with = history.clone();
    with.facts.push(restoration.clone());
    active_consent_categories(&with, policy, moment)
        .into_iter()
        .filter(|c| !before.contains(c))
        .collect()
}

/// An opt-in as the decision remembers it: ordered by effective time, then
/// recorded time, then id, so that the basis named is the same whatever order the
/// facts came in.
type OptInRef = (DateTime<Utc>, DateTime<Utc>, Uuid);

/// What the facts say about one category.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CategoryState {
    /// The latest revocation that no restoration can undo (API, web, ...).
    revoked: Option<DateTime<Utc>>,
    /// The latest keyword revocation (STOP, a platform's "stop marketing").
    revoked_by_keyword: Option<DateTime<Utc>>,
    /// The latest restoration (START, "resume"): undoes every keyword revocation
    /// effective before it.
    restored: Option<DateTime<Utc>>,
    /// The latest opt-in, confirmed or not.
    latest_opt_in: Option<OptInRef>,
    /// The latest opt-in that is confirmed (or needs no confirmation step).
    latest_confirmed: Option<OptInRef>,
}

impl CategoryState {
    /// The latest revocation in force: restorations undo keyword revocations
    /// strictly before them (at the same instant the withdrawal wins, Art. 7(3)).
    fn last_revocation(&self) -> Option<DateTime<Utc>> {
        let by_keyword = self
            .revoked_by_keyword
            .filter(|at| self.restored.is_none_or(|restored| *at >= restored));
        self.revoked.max(by_keyword)
    }
}

/// Everything a decision needs to know about one subject, folded from its facts:
/// a projection of the history, independent of the order the facts came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectState {
    /// One entry per category of the policy, in the policy's order.
    categories: Vec<(Category, CategoryState)>,
    /// The latest block or unblock: (effective, recorded, blocked). A block and an
    /// unblock equal in both times resolve to blocked.
    block: Option<(DateTime<Utc>, DateTime<Utc>, bool)>,
    /// The latest erasure (the suppression marker).
    erased: Option<DateTime<Utc>>,
    /// The latest user-initiated message.
    last_inbound: Option<DateTime<Utc>>,
    /// When the latest window closes: each message restarts it, and one from an
    /// entry point with longer hours keeps its longer window.
    window_until: Option<DateTime<Utc>>,
}

impl SubjectState {
    /// Folds the facts of `history` that `moment` sees, under `policy`.
    pub fn fold(history: &SubjectHistory, policy: &Policy, moment: Moment) -> SubjectState {
        let visible = || history.facts.iter().filter(move |f| moment.sees(f));
        // A confirmation counts when it is not older than what it confirms (a
        // confirmation cannot precede the opt-in); keep the latest per opt-in.
        let mut confirmed: Vec<(Uuid, DateTime<Utc>)> = Vec::new();
        for fact in visible() {
            if let Fact::Confirmation { opt_in_id, .. } = fact {
                let at = fact.effective_at();
                match confirmed.iter_mut().find(|(id, _)| id == opt_in_id) {
                    Some((_, latest)) => *latest = (*latest).max(at),
                    None => confirmed.push((*opt_in_id, at)),
                }
            }
        }
        let mut state = SubjectState {
            categories: policy
                .categories()
                .map(|c| (c, CategoryState::default()))
                .collect(),
            block: None,
            erased: None,
            last_inbound: None,
            window_until: None,
        };
        for fact in visible() {
            let at = fact.effective_at();
            match fact {
                Fact::OptIn(opt_in) => {
                    let is_confirmed = opt_in.confirmed_on_record
                        || confirmed
                            .iter()
                            .any(|(id, confirmed_at)| *id == opt_in.id && *confirmed_at >= at);
                    let this = Some((at, opt_in.recorded_at, opt_in.id));
                    for (category, c) in &mut state.categories {
                        if opt_in.covers(category.as_str()) {
                            c.latest_opt_in = c.latest_opt_in.max(this);
                            if is_confirmed {
                                c.latest_confirmed = c.latest_confirmed.max(this);
                            }
                        }
                    }
                }
                Fact::Revocation {
                    categories,
                    by_keyword,
                    ..
                } => {
                    for (category, c) in &mut state.categories {
                        if covers(categories.as_deref(), category.as_str()) {
                            let slot = if *by_keyword {
                                &mut c.revoked_by_keyword
                            } else {
                                &mut c.revoked
                            };
                            *slot = (*slot).max(Some(at));
                        }
                    }
                }
                Fact::Restoration { categories, .. } => {
                    for (category, c) in &mut state.categories {
                        if covers(categories.as_deref(), category.as_str()) {
                            c.restored = c.restored.max(Some(at));
                        }
                    }
                }
                Fact::Block { recorded_at, .. } => {
                    state.block = state.block.max(Some((at, *recorded_at, true)));
                }
                Fact::Unblock { recorded_at, .. } => {
                    state.block = state.block.max(Some((at, *recorded_at, false)));
                }
                Fact::Inbound { entry_point, .. } => {
                    state.last_inbound = state.last_inbound.max(Some(at));
                    if let Some(hours) = policy.window_for(entry_point.as_deref()) {
                        state.window_until = state.window_until.max(at.checked_add_signed(hours));
                    }
                }
                Fact::Erased { .. } => state.erased = state.erased.max(Some(at)),
                Fact::Confirmation { .. } => {}
            }
        }
        state
    }

    fn category(&self, category: &Category) -> Option<&CategoryState> {
        self.categories
            .iter()
            .find(|(c, _)| c == category)
            .map(|(_, state)| state)
    }

    fn category_named(&self, name: &str) -> Option<&CategoryState> {
        self.categories
            .iter()
            .find(|(c, _)| c.as_str() == name)
            .map(|(_, state)| state)
    }

    /// Whether `category` (a name; unknown names never are) was withdrawn at or
    /// after `at` by a revocation still in force or an erasure.
    pub fn withdrawn_since(&self, category: &str, at: DateTime<Utc>) -> bool {
        self.category_named(category)
            .and_then(CategoryState::last_revocation)
            .max(self.erased)
            .is_some_and(|withdrawn| withdrawn >= at)
    }

    /// Whether a keyword revocation (STOP, a platform's stop) of one of
    /// `categories` (`None`: any) is in force: something a restoration would undo.
    pub fn has_keyword_revocation_in_force(&self, categories: Option<&[String]>) -> bool {
        self.categories.iter().any(|(category, state)| {
            covers(categories, category.as_str())
                && state
                    .revoked_by_keyword
                    .is_some_and(|at| state.restored.is_none_or(|restored| at >= restored))
        })
    }

    /// When the latest customer-service window closes(d), open or not.
    pub fn window_until(&self) -> Option<DateTime<Utc>> {
        self.window_until
    }

    /// Whether the subject has blocked the business.
    pub fn is_blocked(&self) -> bool {
        self.block.is_some_and(|(.., blocked)| blocked)
    }

    /// When the open customer-service window closes, if one is open at `at`
    /// (closed at exactly the expiry).
    pub fn window_open_until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.window_until.filter(|until| at < *until)
    }

    /// The decision for `category` at instant `at` (SPEC section 3).
    pub fn decide(
        &self,
        policy: &Policy,
        category: &Category,
        calling_code: Option<u16>,
        at: DateTime<Utc>,
    ) -> Decision {
        let verdict = self
            .category(category)
            .zip(policy.rules(category))
            .map(|(state, rules)| self.verdict(state, rules))
            .unwrap_or_default();
        verdict.decide(
            policy,
            category,
            self.is_blocked(),
            self.window_until,
            calling_code,
            at,
        )
    }

    /// The instant-independent part of every category's decision, in the policy's
    /// category order: what an in-memory projection keeps (see [`Summary`]).
    pub fn summary(&self, policy: &Policy) -> Summary {
        Summary {
            blocked: self.is_blocked(),
            window_until: self.window_until,
            verdicts: self
                .categories
                .iter()
                .map(|(category, state)| {
                    policy
                        .rules(category)
                        .map(|rules| self.verdict(state, rules))
                        .unwrap_or_default()
                })
                .collect(),
        }
    }

    /// The categories whose decision would be [`Reason::Consent`] at `at` were the
    /// subject not blocked.
    pub fn active_categories(&self, policy: &Policy, at: DateTime<Utc>) -> Vec<Category> {
        self.categories
            .iter()
            .filter(|(category, state)| {
                policy.rules(category).is_some_and(|rules| {
                    rules.allows(AllowedBy::OptIn)
                        && self.verdict(state, rules).active(policy, at).is_some()
                })
            })
            .map(|(category, _)| category.clone())
            .collect()
    }

    fn verdict(&self, state: &CategoryState, rules: &CategoryRules) -> Verdict {
        let double_opt_in = rules.double_opt_in();
        let last_revocation = state.last_revocation();
        // An opt-in counts only if it took effect strictly after the last
        // withdrawal: at the same instant the withdrawal wins (Art. 7(3)), whatever
        // order they were stored in. Erasure destroys the evidence, and with it the
        // consent (Art. 17).
        let cutoff = last_revocation.max(self.erased);
        let after_cutoff =
            |o: &Option<OptInRef>| o.filter(|(t, ..)| cutoff.is_none_or(|cut| *t > cut));
        let latest = state.latest_opt_in.map(|(t, ..)| t);
        let deciding = if double_opt_in {
            after_cutoff(&state.latest_confirmed)
        } else {
            after_cutoff(&state.latest_opt_in)
        };
        let no_opt_in_since = |t: DateTime<Utc>| latest.is_none_or(|o| o <= t);
        Verdict {
            deciding: deciding.map(|(effective_at, _, id)| (effective_at, id)),
            revoked: last_revocation.is_some_and(no_opt_in_since),
            pending: after_cutoff(&state.latest_opt_in).is_some() && deciding.is_none(),
            suppressed: self.erased.is_some_and(no_opt_in_since),
            // A window opened no later than the category's latest revocation does
            // not allow it: the STOP message itself opens a window, and that must
            // not re-allow what it withdrew (Art. 7(3)). A later message does.
            revoked_since_window: rules.allows(AllowedBy::OptIn)
                && last_revocation.is_some_and(|revoked_at| {
                    self.last_inbound
                        .is_none_or(|inbound| inbound <= revoked_at)
                }),
        }
    }
}

/// The instant-independent part of a subject's decisions: a live check counts
/// every fact, so what the facts say reduces to this, and only consent age and the
/// window's expiry are measured against the clock when the question is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The subject blocked the business.
    pub blocked: bool,
    /// When the latest customer-service window closes(d).
    pub window_until: Option<DateTime<Utc>>,
    /// One per category of the policy, in the policy's category order.
    pub verdicts: Vec<Verdict>,
}

/// What the facts say about one category, independent of the instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The deciding opt-in, (effective time, id): the latest after the last
    /// withdrawal, confirmed where double opt-in applies. Whether it is still
    /// young enough is measured when the question is asked.
    pub deciding: Option<(DateTime<Utc>, Uuid)>,
    /// The latest word for the category was a revocation (erasure not counted).
    pub revoked: bool,
    /// Opt-ins after the last withdrawal exist, none confirmed.
    pub pending: bool,
    /// Erased, and no opt-in for the category since.
    pub suppressed: bool,
    /// The latest revocation is no earlier than the latest message from the
    /// subject: a window does not allow the category.
    pub revoked_since_window: bool,
}

impl Verdict {
    /// The deciding opt-in if it is still young enough at `at`.
    fn active(&self, policy: &Policy, at: DateTime<Utc>) -> Option<Uuid> {
        self.deciding
            .filter(|(effective_at, _)| {
                // Past the representable range the consent simply has not expired.
                effective_at
                    .checked_add_signed(policy.max_age())
                    .is_none_or(|expiry| at < expiry)
            })
            .map(|(_, id)| id)
    }

    /// The decision for `category` at instant `at` (SPEC section 3), given the
    /// subject-level facts. The one place the rules of SPEC 3 are applied, for a
    /// full history and for an in-memory projection alike.
    pub fn decide(
        &self,
        policy: &Policy,
        category: &Category,
        blocked: bool,
        window_until: Option<DateTime<Utc>>,
        calling_code: Option<u16>,
        at: DateTime<Utc>,
    ) -> Decision {
        let window_expires_at = window_until.filter(|until| at < *until);
        let Some(rules) = policy.rules(category) else {
            return Decision::deny(Reason::NoConsent, window_expires_at);
        };
        if blocked {
            return Decision::deny(Reason::Blocked, window_expires_at);
        }
        // Consent-derived reasons exist only for categories consent can allow: a
        // window-only category is not "revoked" by a STOP, it just needs a window.
        let by_opt_in = rules.allows(AllowedBy::OptIn);
        let active = by_opt_in.then(|| self.active(policy, at)).flatten();
        // Consent is the stronger basis, so it is named when both allow; the window
        // still decides billing below.
        let allowed = match (active, window_expires_at) {
            (Some(opt_in_id), _) => Some((Reason::Consent, Basis::OptIn { opt_in_id })),
            (None, Some(expires_at))
                if rules.allows(AllowedBy::Window) && !self.revoked_since_window =>
            {
                Some((Reason::ServiceWindow, Basis::Window { expires_at }))
            }
            _ => None,
        };
        if let Some((reason, basis)) = allowed {
            let billable = !(window_expires_at.is_some() && rules.free_in_window());
            let price = if billable {
                policy.price_for(category, calling_code)
            } else {
                None
            };
            return Decision {
                allowed: true,
                reason,
                basis: Some(basis),
                billable,
                price,
                window_expires_at,
            };
        }
        let expired = self.deciding.is_some() && active.is_none();
        let reason = if !by_opt_in {
            if rules.allows(AllowedBy::Window) {
                Reason::WindowClosed
            } else {
                Reason::NoConsent
            }
        } else if self.revoked {
            Reason::Revoked
        } else if expired {
            Reason::ConsentExpired
        } else if self.pending {
            Reason::PendingConfirmation
        } else if self.suppressed {
            Reason::Suppressed
        } else {
            Reason::NoConsent
        };
        Decision::deny(reason, window_expires_at)
    }
}

/// Whether a revocation's or restoration's category list covers `category`
/// (`None` covers all).
fn covers(categories: Option<&[String]>, category: &str) -> bool {
    categories.is_none_or(|list| list.iter().any(|c| c == category))
}

#[cfg(test)]
mod tests;
