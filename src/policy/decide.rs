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

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::{AllowedBy, Category, Policy, Price};
use crate::domain::history::{Fact, OptInFact, SubjectHistory};

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

/// Decides whether `category` may be sent to the subject of `history` as of `as_of`
/// (SPEC section 3).
///
/// Only facts both effective and recorded by `as_of` count. A `category` that does
/// not belong to `policy` is denied with [`Reason::NoConsent`] (it cannot happen when
/// the category came from this policy).
pub fn decide(
    history: &SubjectHistory,
    policy: &Policy,
    category: &Category,
    calling_code: Option<u16>,
    as_of: DateTime<Utc>,
) -> Decision {
    let view = View::at(as_of);
    let window_expires_at = open_window(history, policy, view);
    let Some(rules) = policy.rules(category) else {
        return Decision::deny(Reason::NoConsent, window_expires_at);
    };
    if is_blocked(history, view) {
        return Decision::deny(Reason::Blocked, window_expires_at);
    }
    // Consent-derived reasons exist only for categories consent can allow: a
    // window-only category is not "revoked" by a STOP, it just needs a window.
    let consent = rules.allows(AllowedBy::OptIn).then(|| {
        consent_state(
            history,
            policy,
            category.as_str(),
            rules.double_opt_in(),
            view,
        )
    });

    // Consent is the stronger basis, so it is named when both allow; the window
    // still decides billing below.
    // A window opened no later than the category's latest revocation does not
    // allow it: the STOP message itself opens a window, and that must not re-allow
    // what it withdrew (Art. 7(3)). A later message from the subject does.
    let revoked_since_window = consent
        .as_ref()
        .and_then(|c| c.last_revocation)
        .is_some_and(|revoked_at| {
            last_inbound(history, view).is_none_or(|inbound| inbound <= revoked_at)
        });
    let allowed = match (consent.as_ref().and_then(|c| c.active), window_expires_at) {
        (Some(opt_in_id), _) => Some((Reason::Consent, Basis::OptIn { opt_in_id })),
        (None, Some(expires_at)) if rules.allows(AllowedBy::Window) && !revoked_since_window => {
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

    let reason = consent.and_then(|c| c.denial()).unwrap_or(
        if rules.allows(AllowedBy::Window) && !rules.allows(AllowedBy::OptIn) {
            Reason::WindowClosed
        } else {
            Reason::NoConsent
        },
    );
    Decision::deny(reason, window_expires_at)
}

/// The categories of `policy` for which an opt-in is active as of `as_of`, i.e. whose
/// decision would be [`Reason::Consent`] were the subject not blocked.
///
/// A block is left out on purpose: it silences the channel but withdraws no consent,
/// and this is what a START keyword needs to know.
pub fn active_consent_categories(
    history: &SubjectHistory,
    policy: &Policy,
    as_of: DateTime<Utc>,
) -> Vec<Category> {
    active_in_view(history, policy, View::at(as_of))
}

/// The categories a START-like keyword received at `as_of` restores: those that were
/// active just before the subject's last keyword opt-out, as known at `as_of`, and
/// that the opt-out covered. Empty when there was no keyword opt-out.
///
/// Like a carrier's START undoing STOP, this never grants consent that was not in
/// force before the STOP (GDPR Art. 7: consent must be the subject's own act).
pub fn keyword_restorable_categories(
    history: &SubjectHistory,
    policy: &Policy,
    as_of: DateTime<Utc>,
) -> Vec<Category> {
    let view = View::at(as_of);
    let last_stop = history
        .facts
        .iter()
        .filter(|f| view.sees(f))
        .filter_map(|f| match f {
            Fact::Revocation {
                id,
                categories,
                at,
                recorded_at,
                by_keyword: true,
            } => Some((*at, *recorded_at, *id, categories.as_deref())),
            _ => None,
        })
        .max_by_key(|(at, recorded_at, id, _)| (*at, *recorded_at, *id));
    let Some((at, _, _, covered)) = last_stop else {
        return Vec::new();
    };
    // Just before the STOP in the world, with everything recorded up to now: an
    // opt-in imported late still counts for what the STOP took away.
    let before = View {
        world: at - Duration::microseconds(1),
        known: as_of,
    };
    active_in_view(history, policy, before)
        .into_iter()
        .filter(|c| covers(covered, c.as_str()))
        .collect()
}

fn active_in_view(history: &SubjectHistory, policy: &Policy, view: View) -> Vec<Category> {
    policy
        .categories()
        .filter(|category| {
            policy.rules(category).is_some_and(|rules| {
                rules.allows(AllowedBy::OptIn)
                    && consent_state(
                        history,
                        policy,
                        category.as_str(),
                        rules.double_opt_in(),
                        view,
                    )
                    .active
                    .is_some()
            })
        })
        .collect()
}

/// Which facts count: those that had happened by `world` and were recorded by
/// `known`. A decision uses the same instant for both.
#[derive(Debug, Clone, Copy)]
struct View {
    world: DateTime<Utc>,
    known: DateTime<Utc>,
}

impl View {
    fn at(as_of: DateTime<Utc>) -> View {
        View {
            world: as_of,
            known: as_of,
        }
    }

    fn sees(self, fact: &Fact) -> bool {
        fact.effective_at() <= self.world && fact.recorded_at() <= self.known
    }
}

/// Whether a revocation's category list covers `category` (`None` covers all).
fn covers(categories: Option<&[String]>, category: &str) -> bool {
    categories.is_none_or(|list| list.iter().any(|c| c == category))
}

/// The latest visible Block/Unblock decides. Ties are ordered by effective time, then
/// recorded time; a Block and an Unblock equal in both resolve to blocked, so the
/// answer never depends on the order the store returned them in.
fn is_blocked(history: &SubjectHistory, view: View) -> bool {
    history
        .facts
        .iter()
        .filter(|f| view.sees(f))
        .filter_map(|f| match f {
            Fact::Block { at, recorded_at } => Some((*at, *recorded_at, true)),
            Fact::Unblock { at, recorded_at } => Some((*at, *recorded_at, false)),
            _ => None,
        })
        .max()
        .is_some_and(|(_, _, blocked)| blocked)
}

/// When the customer-service window closes, if it is open at `view.world`: the latest
/// expiry over all visible inbound messages (each restarts the window; one from an
/// entry point with longer hours keeps its longer window). Closed at exactly the
/// expiry. A policy without a window never opens one.
fn open_window(history: &SubjectHistory, policy: &Policy, view: View) -> Option<DateTime<Utc>> {
    if !policy.has_window() {
        return None;
    }
    history
        .facts
        .iter()
        .filter(|f| view.sees(f))
        .filter_map(|f| match f {
            Fact::Inbound {
                received_at,
                entry_point,
                ..
            } => received_at.checked_add_signed(policy.window_for(entry_point.as_deref())?),
            _ => None,
        })
        .max()
        .filter(|expires_at| view.world < *expires_at)
}

/// When the latest visible user-initiated message was received.
fn last_inbound(history: &SubjectHistory, view: View) -> Option<DateTime<Utc>> {
    history
        .facts
        .iter()
        .filter(|f| view.sees(f))
        .filter_map(|f| match f {
            Fact::Inbound { received_at, .. } => Some(*received_at),
            _ => None,
        })
        .max()
}

/// What the opt-in facts say about one category.
#[derive(Debug, Default)]
struct ConsentState {
    /// When the category was last revoked (erasure not counted).
    last_revocation: Option<DateTime<Utc>>,
    /// The deciding active opt-in.
    active: Option<Uuid>,
    /// The latest word for the category was a revocation (erasure not counted).
    revoked: bool,
    /// Effective opt-ins after the last revocation exist, all too old.
    expired: bool,
    /// Opt-ins after the last revocation exist, none effective (unconfirmed).
    pending: bool,
    /// Erased, and no opt-in for the category collected since.
    suppressed: bool,
}

impl ConsentState {
    /// The most specific consent-derived reason for a "no", in SPEC precedence.
    fn denial(&self) -> Option<Reason> {
        if self.revoked {
            Some(Reason::Revoked)
        } else if self.expired {
            Some(Reason::ConsentExpired)
        } else if self.pending {
            Some(Reason::PendingConfirmation)
        } else if self.suppressed {
            Some(Reason::Suppressed)
        } else {
            None
        }
    }
}

fn consent_state(
    history: &SubjectHistory,
    policy: &Policy,
    category: &str,
    double_opt_in: bool,
    view: View,
) -> ConsentState {
    let visible = || history.facts.iter().filter(move |f| view.sees(f));

    let mut last_revocation = None;
    let mut last_erasure = None;
    for fact in visible() {
        match fact {
            Fact::Revocation { categories, at, .. } if covers(categories.as_deref(), category) => {
                last_revocation = last_revocation.max(Some(*at));
            }
            // Erasure destroys the evidence, and with it the consent (Art. 17).
            Fact::Erased { at, .. } => last_erasure = last_erasure.max(Some(*at)),
            _ => {}
        }
    }
    // An opt-in counts only if collected strictly after the last withdrawal: at the
    // same instant the withdrawal wins (Art. 7(3)), whatever order they were stored in.
    let cutoff = last_revocation.max(last_erasure);

    let mut latest_opt_in = None;
    let mut any_after_cutoff = false;
    // The deciding opt-in: latest collected_at, then recorded_at, then id, so that
    // the basis named is the same whatever order the facts came in.
    let mut deciding: Option<(DateTime<Utc>, DateTime<Utc>, Uuid)> = None;
    for fact in visible() {
        let Fact::OptIn(opt_in) = fact else { continue };
        if !opt_in.covers(category) {
            continue;
        }
        latest_opt_in = latest_opt_in.max(Some(opt_in.collected_at));
        if cutoff.is_some_and(|cutoff| opt_in.collected_at <= cutoff) {
            continue;
        }
        any_after_cutoff = true;
        if double_opt_in && !is_confirmed(opt_in, visible()) {
            continue;
        }
        deciding = deciding.max(Some((opt_in.collected_at, opt_in.recorded_at, opt_in.id)));
    }

    let active = deciding
        .filter(|(collected_at, ..)| {
            // Past the representable range the consent simply has not expired yet.
            collected_at
                .checked_add_signed(policy.max_age())
                .is_none_or(|expiry| view.world < expiry)
        })
        .map(|(.., id)| id);
    let no_opt_in_since = |t: DateTime<Utc>| latest_opt_in.is_none_or(|o| o <= t);
    ConsentState {
        last_revocation,
        active,
        revoked: last_revocation.is_some_and(no_opt_in_since),
        expired: deciding.is_some() && active.is_none(),
        pending: any_after_cutoff && deciding.is_none(),
        suppressed: last_erasure.is_some_and(no_opt_in_since),
    }
}

/// Whether a double opt-in is complete: confirmed on record (a keyword START came
/// from the subject's own phone) or by a visible confirmation not older than the
/// opt-in itself (a confirmation cannot precede what it confirms).
fn is_confirmed<'a>(opt_in: &OptInFact, mut visible: impl Iterator<Item = &'a Fact>) -> bool {
    opt_in.confirmed_on_record
        || visible.any(|f| {
            matches!(f, Fact::Confirmation { opt_in_id, confirmed_at, .. }
                if *opt_in_id == opt_in.id && *confirmed_at >= opt_in.collected_at)
        })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, OnceLock};

    use chrono::Duration;
    use proptest::prelude::*;

    use super::*;
    use crate::policy::PolicySet;

    // ---- fixtures -------------------------------------------------------------

    fn policy(name: &str) -> Arc<Policy> {
        static SHIPPED: OnceLock<PolicySet> = OnceLock::new();
        SHIPPED
            .get_or_init(PolicySet::shipped)
            .get(name)
            .expect("a shipped policy")
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("an RFC 3339 time")
            .with_timezone(&Utc)
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn us(n: i64) -> Duration {
        Duration::microseconds(n)
    }

    fn opt_in(n: u128, categories: &[&str], at: DateTime<Utc>) -> Fact {
        Fact::OptIn(OptInFact {
            id: id(n),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            collected_at: at,
            recorded_at: at,
            confirmed_on_record: false,
        })
    }

    /// An opt-in from a keyword START: no confirmation step.
    fn keyword_opt_in(n: u128, categories: &[&str], at: DateTime<Utc>) -> Fact {
        let Fact::OptIn(mut o) = opt_in(n, categories, at) else {
            unreachable!()
        };
        o.confirmed_on_record = true;
        Fact::OptIn(o)
    }

    fn confirm(n: u128, at: DateTime<Utc>) -> Fact {
        Fact::Confirmation {
            opt_in_id: id(n),
            confirmed_at: at,
            recorded_at: at,
        }
    }

    fn revoke(categories: &[&str], at: DateTime<Utc>) -> Fact {
        Fact::Revocation {
            id: Uuid::from_u128(at.timestamp_micros().unsigned_abs().into()),
            categories: Some(categories.iter().map(|c| (*c).to_owned()).collect()),
            at,
            recorded_at: at,
            by_keyword: false,
        }
    }

    fn revoke_all(at: DateTime<Utc>) -> Fact {
        Fact::Revocation {
            id: Uuid::from_u128(9_000),
            categories: None,
            at,
            recorded_at: at,
            by_keyword: false,
        }
    }

    fn stop(at: DateTime<Utc>) -> Fact {
        Fact::Revocation {
            id: Uuid::from_u128(9_001),
            categories: None,
            at,
            recorded_at: at,
            by_keyword: true,
        }
    }

    fn block(at: DateTime<Utc>) -> Fact {
        Fact::Block {
            at,
            recorded_at: at,
        }
    }

    fn unblock(at: DateTime<Utc>) -> Fact {
        Fact::Unblock {
            at,
            recorded_at: at,
        }
    }

    fn inbound(at: DateTime<Utc>) -> Fact {
        Fact::Inbound {
            received_at: at,
            recorded_at: at,
            entry_point: None,
        }
    }

    fn inbound_from(at: DateTime<Utc>, entry_point: &str) -> Fact {
        Fact::Inbound {
            received_at: at,
            recorded_at: at,
            entry_point: Some(entry_point.to_owned()),
        }
    }

    fn erased(at: DateTime<Utc>) -> Fact {
        Fact::Erased {
            at,
            recorded_at: at,
        }
    }

    /// The same fact, learned by the service only at `recorded_at`.
    fn recorded(mut fact: Fact, when: DateTime<Utc>) -> Fact {
        match &mut fact {
            Fact::OptIn(o) => o.recorded_at = when,
            Fact::Confirmation { recorded_at, .. }
            | Fact::Revocation { recorded_at, .. }
            | Fact::Block { recorded_at, .. }
            | Fact::Unblock { recorded_at, .. }
            | Fact::Inbound { recorded_at, .. }
            | Fact::Erased { recorded_at, .. } => *recorded_at = when,
        }
        fact
    }

    // ---- the table --------------------------------------------------------------

    /// What a case expects. Denials are always checked to be unbillable and
    /// priceless; the optional fields are checked only when set.
    #[derive(Debug, Clone)]
    struct Expect {
        allowed: bool,
        reason: Reason,
        basis: Option<Basis>,
        billable: Option<bool>,
        price: Option<Option<(&'static str, &'static str)>>,
        window: Option<Option<DateTime<Utc>>>,
    }

    impl Expect {
        fn deny(reason: Reason) -> Expect {
            Expect {
                allowed: false,
                reason,
                basis: None,
                billable: Some(false),
                price: Some(None),
                window: None,
            }
        }

        fn consent(n: u128) -> Expect {
            Expect {
                allowed: true,
                reason: Reason::Consent,
                basis: Some(Basis::OptIn { opt_in_id: id(n) }),
                billable: None,
                price: None,
                window: None,
            }
        }

        fn service_window(expires_at: DateTime<Utc>) -> Expect {
            Expect {
                allowed: true,
                reason: Reason::ServiceWindow,
                basis: Some(Basis::Window { expires_at }),
                billable: None,
                price: None,
                window: Some(Some(expires_at)),
            }
        }

        fn billed(mut self, currency: &'static str, amount: &'static str) -> Expect {
            self.billable = Some(true);
            self.price = Some(Some((currency, amount)));
            self
        }

        fn free(mut self) -> Expect {
            self.billable = Some(false);
            self.price = Some(None);
            self
        }

        fn window(mut self, expires_at: Option<DateTime<Utc>>) -> Expect {
            self.window = Some(expires_at);
            self
        }
    }

    struct Case {
        about: &'static str,
        policy: &'static str,
        facts: Vec<Fact>,
        category: &'static str,
        calling_code: Option<u16>,
        as_of: DateTime<Utc>,
        expect: Expect,
    }

    fn case(
        about: &'static str,
        facts: Vec<Fact>,
        category: &'static str,
        as_of: DateTime<Utc>,
        expect: Expect,
    ) -> Case {
        Case {
            about,
            policy: "whatsapp-eu",
            facts,
            category,
            calling_code: None,
            as_of,
            expect,
        }
    }

    impl Case {
        fn on(mut self, policy: &'static str) -> Case {
            self.policy = policy;
            self
        }

        fn calling_code(mut self, code: u16) -> Case {
            self.calling_code = Some(code);
            self
        }
    }

    fn run(case: &Case) {
        let policy = policy(case.policy);
        let category = policy
            .category(case.category)
            .expect("the case's category is in its policy");
        let history = SubjectHistory::new(case.facts.clone());
        let got = decide(&history, &policy, &category, case.calling_code, case.as_of);
        let about = case.about;
        let want = &case.expect;
        assert_eq!(
            (got.allowed, got.reason),
            (want.allowed, want.reason),
            "{about}: {got:#?}"
        );
        if want.basis.is_some() || !want.allowed {
            assert_eq!(got.basis, want.basis, "{about}: basis");
        }
        if !got.allowed {
            assert!(
                !got.billable && got.price.is_none(),
                "{about}: a denial is never billed: {got:#?}"
            );
        }
        if let Some(billable) = want.billable {
            assert_eq!(got.billable, billable, "{about}: billable");
        }
        if let Some(price) = want.price {
            let got_price = got
                .price
                .map(|p| (p.currency().to_string(), p.amount().to_string()));
            let want_price = price.map(|(c, a)| (c.to_owned(), a.to_owned()));
            assert_eq!(got_price, want_price, "{about}: price");
        }
        if let Some(window) = want.window {
            assert_eq!(got.window_expires_at, window, "{about}: window_expires_at");
        }
    }

    #[test]
    fn decisions_follow_the_spec_table() {
        let t0 = t("2026-03-01T10:00:00Z");
        let h = Duration::hours;
        let d = Duration::days;
        use Reason::*;

        let cases = vec![
            // -- nothing known
            case(
                "no facts at all: no consent",
                vec![],
                "marketing",
                t0,
                Expect::deny(NoConsent).window(None),
            ),
            case(
                "no facts: a window-only category says the window is closed",
                vec![],
                "service",
                t0,
                Expect::deny(WindowClosed),
            ),
            case(
                "utility, allowed by opt-in or window, with neither is no_consent, not window_closed",
                vec![],
                "utility",
                t0,
                Expect::deny(NoConsent),
            ),
            case(
                "an opt-in for another category does not count",
                vec![opt_in(1, &["utility"], t0)],
                "authentication",
                t0 + h(1),
                Expect::deny(NoConsent),
            ),
            case(
                "an opt-in naming a category the policy lacks is ignored",
                vec![opt_in(1, &["legacy_promo"], t0)],
                "marketing",
                t0 + h(1),
                Expect::deny(NoConsent),
            ),
            // -- consent
            case(
                "an active single opt-in allows utility by consent, billed at the default price",
                vec![opt_in(1, &["utility"], t0)],
                "utility",
                t0 + d(1),
                Expect::consent(1).billed("EUR", "0.03").window(None),
            ),
            case(
                "consent is effective at the very instant it was collected",
                vec![opt_in(1, &["utility"], t0)],
                "utility",
                t0,
                Expect::consent(1),
            ),
            case(
                "as_of before the opt-in: no consent yet",
                vec![opt_in(1, &["utility"], t0)],
                "utility",
                t0 - us(1),
                Expect::deny(NoConsent),
            ),
            // -- blocks
            case(
                "blocked beats consent",
                vec![opt_in(1, &["utility"], t0), block(t0 + h(1))],
                "utility",
                t0 + h(2),
                Expect::deny(Blocked),
            ),
            case(
                "blocked beats an open window, which is still reported",
                vec![inbound(t0), block(t0 + h(1))],
                "service",
                t0 + h(2),
                Expect::deny(Blocked).window(Some(t0 + h(24))),
            ),
            case(
                "a block before the opt-in still blocks: an opt-in is not an unblock",
                vec![block(t0), opt_in(1, &["utility"], t0 + h(1))],
                "utility",
                t0 + h(2),
                Expect::deny(Blocked),
            ),
            case(
                "blocked beats revoked",
                vec![
                    opt_in(1, &["utility"], t0),
                    revoke_all(t0 + h(1)),
                    block(t0 + h(2)),
                ],
                "utility",
                t0 + h(3),
                Expect::deny(Blocked),
            ),
            case(
                "an unblock restores consent",
                vec![
                    opt_in(1, &["utility"], t0),
                    block(t0 + h(1)),
                    unblock(t0 + h(2)),
                ],
                "utility",
                t0 + h(3),
                Expect::consent(1),
            ),
            case(
                "an unblock restores the window",
                vec![block(t0), unblock(t0 + h(1)), inbound(t0 + h(2))],
                "service",
                t0 + h(3),
                Expect::service_window(t0 + h(26)),
            ),
            case(
                "a block after an unblock blocks again",
                vec![
                    opt_in(1, &["utility"], t0),
                    block(t0 + h(1)),
                    unblock(t0 + h(2)),
                    block(t0 + h(3)),
                ],
                "utility",
                t0 + h(4),
                Expect::deny(Blocked),
            ),
            case(
                "a block and an unblock at the same instant and record time: blocked",
                vec![
                    opt_in(1, &["utility"], t0),
                    unblock(t0 + h(1)),
                    block(t0 + h(1)),
                ],
                "utility",
                t0 + h(2),
                Expect::deny(Blocked),
            ),
            case(
                "same effective instant: the one recorded later wins (unblock)",
                vec![
                    opt_in(1, &["utility"], t0),
                    recorded(unblock(t0 + h(1)), t0 + h(2)),
                    block(t0 + h(1)),
                ],
                "utility",
                t0 + h(3),
                Expect::consent(1),
            ),
            case(
                "an unblock recorded after as_of is not yet known: still blocked",
                vec![
                    opt_in(1, &["utility"], t0),
                    block(t0 + h(1)),
                    recorded(unblock(t0 + h(2)), t0 + h(5)),
                ],
                "utility",
                t0 + h(3),
                Expect::deny(Blocked),
            ),
            // -- the window
            case(
                "a window allows service, free of charge",
                vec![inbound(t0)],
                "service",
                t0 + h(1),
                Expect::service_window(t0 + h(24)).free(),
            ),
            case(
                "a window does not allow marketing in whatsapp-eu",
                vec![inbound(t0)],
                "marketing",
                t0 + h(1),
                Expect::deny(NoConsent).window(Some(t0 + h(24))),
            ),
            case(
                "a window does not allow authentication in whatsapp-eu",
                vec![inbound(t0)],
                "authentication",
                t0 + h(1),
                Expect::deny(NoConsent),
            ),
            case(
                "a window allows utility without consent, free in the window",
                vec![inbound(t0)],
                "utility",
                t0 + h(1),
                Expect::service_window(t0 + h(24)).free(),
            ),
            case(
                "the window is open one microsecond before 24 h",
                vec![inbound(t0)],
                "service",
                t0 + h(24) - us(1),
                Expect::service_window(t0 + h(24)),
            ),
            case(
                "the window is closed at exactly 24 h",
                vec![inbound(t0)],
                "service",
                t0 + h(24),
                Expect::deny(WindowClosed).window(None),
            ),
            case(
                "a click-to-chat ad keeps the window open one microsecond before 72 h",
                vec![inbound_from(t0, "click_to_chat_ad")],
                "service",
                t0 + h(72) - us(1),
                Expect::service_window(t0 + h(72)),
            ),
            case(
                "a click-to-chat ad window is closed at exactly 72 h",
                vec![inbound_from(t0, "click_to_chat_ad")],
                "service",
                t0 + h(72),
                Expect::deny(WindowClosed),
            ),
            case(
                "an entry point the policy does not list gets the default 24 h",
                vec![inbound_from(t0, "qr_code")],
                "service",
                t0 + h(24),
                Expect::deny(WindowClosed),
            ),
            case(
                "a later inbound restarts the window",
                vec![inbound(t0), inbound(t0 + h(20))],
                "service",
                t0 + h(30),
                Expect::service_window(t0 + h(44)),
            ),
            case(
                "a later ordinary inbound does not cut short a 72 h ad window",
                vec![inbound_from(t0, "click_to_chat_ad"), inbound(t0 + h(1))],
                "service",
                t0 + h(50),
                Expect::service_window(t0 + h(72)),
            ),
            case(
                "an inbound recorded after as_of opens nothing yet",
                vec![recorded(inbound(t0), t0 + h(2))],
                "service",
                t0 + h(1),
                Expect::deny(WindowClosed),
            ),
            case(
                "an inbound received after as_of opens nothing yet",
                vec![inbound(t0 + h(1))],
                "service",
                t0,
                Expect::deny(WindowClosed),
            ),
            // -- consent and window together: billing
            case(
                "consent and an open window: consent is named, the window is reported, utility is free",
                vec![opt_in(1, &["utility"], t0), inbound(t0 + h(1))],
                "utility",
                t0 + h(2),
                Expect::consent(1).free().window(Some(t0 + h(25))),
            ),
            case(
                "authentication is billed even inside a window",
                vec![opt_in(1, &["authentication"], t0), inbound(t0 + h(1))],
                "authentication",
                t0 + h(2),
                Expect::consent(1)
                    .billed("EUR", "0.03")
                    .window(Some(t0 + h(25))),
            ),
            case(
                "marketing is billed inside a window too",
                vec![keyword_opt_in(1, &["marketing"], t0), inbound(t0 + h(1))],
                "marketing",
                t0 + h(2),
                Expect::consent(1).billed("EUR", "0.0589"),
            ),
            case(
                "a calling code with its own price uses it",
                vec![opt_in(1, &["marketing"], t0), confirm(1, t0 + h(1))],
                "marketing",
                t0 + h(2),
                Expect::consent(1).billed("EUR", "0.1597"),
            )
            .calling_code(31),
            case(
                "a calling code without its own price uses the default",
                vec![opt_in(1, &["marketing"], t0), confirm(1, t0 + h(1))],
                "marketing",
                t0 + h(2),
                Expect::consent(1).billed("EUR", "0.0589"),
            )
            .calling_code(1),
            case(
                "no price on a denial, even with a calling code that has one",
                vec![opt_in(1, &["marketing"], t0)],
                "marketing",
                t0 + h(2),
                Expect::deny(PendingConfirmation),
            )
            .calling_code(31),
            case(
                "service has no price, and is never billed in a window",
                vec![inbound(t0)],
                "service",
                t0 + h(2),
                Expect::service_window(t0 + h(24)).free(),
            )
            .calling_code(49),
            // -- revocations
            case(
                "a revocation after the opt-in denies: revoked",
                vec![opt_in(1, &["utility"], t0), revoke_all(t0 + h(1))],
                "utility",
                t0 + h(2),
                Expect::deny(Revoked),
            ),
            case(
                "a keyword STOP revokes every category",
                vec![
                    opt_in(1, &["authentication", "utility"], t0),
                    stop(t0 + h(1)),
                ],
                "authentication",
                t0 + h(2),
                Expect::deny(Revoked),
            ),
            case(
                "an opt-in after the revocation allows again",
                vec![
                    opt_in(1, &["utility"], t0),
                    revoke_all(t0 + h(1)),
                    opt_in(2, &["utility"], t0 + h(2)),
                ],
                "utility",
                t0 + h(3),
                Expect::consent(2),
            ),
            case(
                "a revocation with no opt-in ever is still the latest word: revoked",
                vec![revoke_all(t0)],
                "utility",
                t0 + h(1),
                Expect::deny(Revoked),
            ),
            case(
                "an opt-in and a revocation at the same instant: the revocation wins",
                vec![opt_in(1, &["utility"], t0), revoke_all(t0)],
                "utility",
                t0 + h(1),
                Expect::deny(Revoked),
            ),
            case(
                "revoking marketing only leaves utility from the same opt-in",
                vec![
                    keyword_opt_in(1, &["marketing", "utility"], t0),
                    revoke(&["marketing"], t0 + h(1)),
                ],
                "utility",
                t0 + h(2),
                Expect::consent(1),
            ),
            case(
                "revoking marketing only does revoke marketing",
                vec![
                    keyword_opt_in(1, &["marketing", "utility"], t0),
                    revoke(&["marketing"], t0 + h(1)),
                ],
                "marketing",
                t0 + h(2),
                Expect::deny(Revoked),
            ),
            case(
                "a revoked category that the window allows is allowed by the open window",
                vec![
                    opt_in(1, &["utility"], t0),
                    revoke_all(t0 + h(1)),
                    inbound(t0 + h(2)),
                ],
                "utility",
                t0 + h(3),
                Expect::service_window(t0 + h(26)).free(),
            ),
            case(
                "the STOP message opens a window, but it does not re-allow what it revoked",
                vec![
                    opt_in(1, &["utility"], t0),
                    stop(t0 + h(1)),
                    inbound(t0 + h(1)),
                ],
                "utility",
                t0 + h(2),
                Expect::deny(Revoked).window(Some(t0 + h(25))),
            ),
            case(
                "a revocation after the window opened closes it for that category",
                vec![inbound(t0), revoke_all(t0 + h(1))],
                "utility",
                t0 + h(2),
                Expect::deny(Revoked).window(Some(t0 + h(24))),
            ),
            case(
                "the STOP message's window still allows the service reply confirming it",
                vec![
                    opt_in(1, &["utility"], t0),
                    stop(t0 + h(1)),
                    inbound(t0 + h(1)),
                ],
                "service",
                t0 + h(2),
                Expect::service_window(t0 + h(25)),
            ),
            case(
                "a STOP does not stop service replies inside a later window",
                vec![stop(t0), inbound(t0 + h(1))],
                "service",
                t0 + h(2),
                Expect::service_window(t0 + h(25)),
            ),
            case(
                "as_of before the revocation answers as it was then",
                vec![opt_in(1, &["utility"], t0), revoke_all(t0 + d(10))],
                "utility",
                t0 + d(5),
                Expect::consent(1),
            ),
            case(
                "a revocation recorded after as_of is invisible even though it happened before",
                vec![
                    opt_in(1, &["utility"], t0),
                    recorded(revoke_all(t0 + h(1)), t0 + h(5)),
                ],
                "utility",
                t0 + h(3),
                Expect::consent(1),
            ),
            case(
                "once recorded, the late revocation counts from its effective time",
                vec![
                    opt_in(1, &["utility"], t0),
                    recorded(revoke_all(t0 + h(1)), t0 + h(5)),
                ],
                "utility",
                t0 + h(5),
                Expect::deny(Revoked),
            ),
            case(
                "an opt-in recorded after as_of is invisible even though it was collected before",
                vec![recorded(opt_in(1, &["utility"], t0), t0 + h(5))],
                "utility",
                t0 + h(3),
                Expect::deny(NoConsent),
            ),
            // -- expiry
            case(
                "consent one microsecond before its max age is active",
                vec![opt_in(1, &["utility"], t0)],
                "utility",
                t0 + d(730) - us(1),
                Expect::consent(1),
            ),
            case(
                "consent at exactly its max age is expired",
                vec![opt_in(1, &["utility"], t0)],
                "utility",
                t0 + d(730),
                Expect::deny(ConsentExpired),
            ),
            case(
                "sms-us consent lasts 540 days, not 730",
                vec![opt_in(1, &["marketing"], t0)],
                "marketing",
                t0 + d(540),
                Expect::deny(ConsentExpired),
            )
            .on("sms-us"),
            case(
                "a re-opt-in refreshes the age and becomes the basis",
                vec![
                    opt_in(1, &["utility"], t0),
                    opt_in(2, &["utility"], t0 + d(700)),
                ],
                "utility",
                t0 + d(800),
                Expect::consent(2),
            ),
            case(
                "an old opt-in recorded late does not replace a newer basis",
                vec![
                    opt_in(2, &["utility"], t0 + d(1)),
                    recorded(opt_in(1, &["utility"], t0), t0 + d(2)),
                ],
                "utility",
                t0 + d(3),
                Expect::consent(2),
            ),
            case(
                "revoked beats expired: the latest word was the revocation",
                vec![opt_in(1, &["utility"], t0), revoke_all(t0 + d(800))],
                "utility",
                t0 + d(801),
                Expect::deny(Revoked),
            ),
            case(
                "an expired confirmed opt-in beats a newer unconfirmed one: consent_expired",
                vec![
                    opt_in(1, &["marketing"], t0),
                    confirm(1, t0 + h(1)),
                    opt_in(2, &["marketing"], t0 + d(729)),
                ],
                "marketing",
                t0 + d(731),
                Expect::deny(ConsentExpired),
            ),
            // -- double opt-in
            case(
                "marketing from an unconfirmed opt-in is pending under double opt-in",
                vec![opt_in(1, &["marketing", "utility"], t0)],
                "marketing",
                t0 + h(1),
                Expect::deny(PendingConfirmation),
            ),
            case(
                "utility from the same unconfirmed opt-in is active: it needs no double opt-in",
                vec![opt_in(1, &["marketing", "utility"], t0)],
                "utility",
                t0 + h(1),
                Expect::consent(1),
            ),
            case(
                "the confirmation makes marketing active",
                vec![
                    opt_in(1, &["marketing", "utility"], t0),
                    confirm(1, t0 + h(1)),
                ],
                "marketing",
                t0 + h(2),
                Expect::consent(1).billed("EUR", "0.0589"),
            ),
            case(
                "a confirmation recorded after as_of is not yet known: pending",
                vec![
                    opt_in(1, &["marketing"], t0),
                    recorded(confirm(1, t0 + h(1)), t0 + h(5)),
                ],
                "marketing",
                t0 + h(2),
                Expect::deny(PendingConfirmation),
            ),
            case(
                "a confirmation of another opt-in does not count",
                vec![opt_in(1, &["marketing"], t0), confirm(2, t0 + h(1))],
                "marketing",
                t0 + h(2),
                Expect::deny(PendingConfirmation),
            ),
            case(
                "a confirmation dated before the opt-in it names does not count",
                vec![opt_in(1, &["marketing"], t0), confirm(1, t0 - h(1))],
                "marketing",
                t0 + h(2),
                Expect::deny(PendingConfirmation),
            ),
            case(
                "a confirmation after a revocation does not revive the revoked opt-in",
                vec![
                    opt_in(1, &["marketing"], t0),
                    revoke_all(t0 + h(1)),
                    confirm(1, t0 + h(2)),
                ],
                "marketing",
                t0 + h(3),
                Expect::deny(Revoked),
            ),
            case(
                "a pending opt-in after a revocation is the latest word: pending, not revoked",
                vec![revoke_all(t0), opt_in(1, &["marketing"], t0 + h(1))],
                "marketing",
                t0 + h(2),
                Expect::deny(PendingConfirmation),
            ),
            case(
                "a keyword START opt-in needs no confirmation",
                vec![keyword_opt_in(1, &["marketing"], t0)],
                "marketing",
                t0 + h(1),
                Expect::consent(1),
            ),
            case(
                "a confirmed older opt-in stays the basis while a newer one is pending",
                vec![
                    opt_in(1, &["marketing"], t0),
                    confirm(1, t0 + h(1)),
                    opt_in(2, &["marketing"], t0 + d(1)),
                ],
                "marketing",
                t0 + d(2),
                Expect::consent(1),
            ),
            case(
                "whatsapp-global has single opt-in: marketing needs no confirmation, billed in USD",
                vec![opt_in(1, &["marketing"], t0)],
                "marketing",
                t0 + h(1),
                Expect::consent(1).billed("USD", "0.0107"),
            )
            .on("whatsapp-global")
            .calling_code(91),
            // -- erasure
            case(
                "after erasure the old consent is gone: suppressed",
                vec![opt_in(1, &["utility"], t0), erased(t0 + h(1))],
                "utility",
                t0 + h(2),
                Expect::deny(Suppressed),
            ),
            case(
                "erasure suppresses even a category never consented to",
                vec![erased(t0)],
                "marketing",
                t0 + h(1),
                Expect::deny(Suppressed),
            ),
            case(
                "a fresh opt-in after erasure lifts the suppression",
                vec![
                    opt_in(1, &["utility"], t0),
                    erased(t0 + h(1)),
                    opt_in(2, &["utility"], t0 + h(2)),
                ],
                "utility",
                t0 + h(3),
                Expect::consent(2),
            ),
            case(
                "a fresh opt-in for another category does not lift it for this one",
                vec![erased(t0), opt_in(2, &["utility"], t0 + h(1))],
                "authentication",
                t0 + h(2),
                Expect::deny(Suppressed),
            ),
            case(
                "an opt-in at the very instant of erasure does not lift it",
                vec![erased(t0), opt_in(2, &["utility"], t0)],
                "utility",
                t0 + h(1),
                Expect::deny(Suppressed),
            ),
            case(
                "pending confirmation beats suppressed",
                vec![erased(t0), opt_in(1, &["marketing"], t0 + h(1))],
                "marketing",
                t0 + h(2),
                Expect::deny(PendingConfirmation),
            ),
            case(
                "expired beats suppressed",
                vec![erased(t0), opt_in(1, &["utility"], t0 + h(1))],
                "utility",
                t0 + d(731),
                Expect::deny(ConsentExpired),
            ),
            case(
                "revoked beats suppressed: the revocation is the latest word, erasure aside",
                vec![
                    opt_in(1, &["utility"], t0),
                    revoke_all(t0 + h(1)),
                    erased(t0 + h(2)),
                ],
                "utility",
                t0 + h(3),
                Expect::deny(Revoked),
            ),
            case(
                "an erasure recorded after as_of is not yet known",
                vec![
                    opt_in(1, &["utility"], t0),
                    recorded(erased(t0 + h(1)), t0 + h(5)),
                ],
                "utility",
                t0 + h(2),
                Expect::consent(1),
            ),
            case(
                "erasure does not stop replying to a new message: window-only service",
                vec![erased(t0), inbound(t0 + h(1))],
                "service",
                t0 + h(2),
                Expect::service_window(t0 + h(25)),
            ),
            case(
                "a window-only category is window_closed, not suppressed",
                vec![erased(t0)],
                "service",
                t0 + h(2),
                Expect::deny(WindowClosed),
            ),
            // -- sms-us: no window at all
            case(
                "sms-us has no window: service after an inbound is no_consent",
                vec![inbound(t0)],
                "service",
                t0 + h(1),
                Expect::deny(NoConsent).window(None),
            )
            .on("sms-us"),
            case(
                "sms-us service with consent is allowed and billed",
                vec![opt_in(1, &["service"], t0), inbound(t0 + h(1))],
                "service",
                t0 + h(2),
                Expect::consent(1).billed("USD", "0.0083").window(None),
            )
            .on("sms-us"),
            case(
                "sms-us marketing is single opt-in",
                vec![opt_in(1, &["marketing"], t0)],
                "marketing",
                t0 + h(1),
                Expect::consent(1).billed("USD", "0.0083"),
            )
            .on("sms-us"),
            case(
                "sms-us revocation is revoked even with an inbound",
                vec![
                    opt_in(1, &["service"], t0),
                    stop(t0 + h(1)),
                    inbound(t0 + h(1)),
                ],
                "service",
                t0 + h(2),
                Expect::deny(Revoked),
            )
            .on("sms-us"),
            case(
                "sms-us erasure suppresses",
                vec![opt_in(1, &["service"], t0), erased(t0 + h(1))],
                "service",
                t0 + h(2),
                Expect::deny(Suppressed),
            )
            .on("sms-us"),
        ];

        let mut seen = std::collections::HashSet::new();
        for case in &cases {
            assert!(
                seen.insert(case.about),
                "duplicate case name {:?}",
                case.about
            );
            run(case);
        }
        // Every reason appears in the table.
        for reason in Reason::ALL {
            assert!(
                cases.iter().any(|c| c.expect.reason == reason),
                "no case for {reason}"
            );
        }
    }

    #[test]
    fn a_category_of_another_policy_is_denied() {
        let us = policy("sms-us");
        let mut set = PolicySet::new();
        let custom = Policy::from_toml_str(
            "custom.toml",
            &include_str!("../../policies/sms-us.toml")
                .replace("name = \"sms-us\"", "name = \"custom\"")
                .replace("[categories.service", "[categories.promo"),
        )
        .unwrap();
        set.insert(custom);
        let promo = set.get("custom").unwrap().category("promo").unwrap();
        let history = SubjectHistory::new(vec![keyword_opt_in(
            1,
            &["promo"],
            t("2026-01-01T00:00:00Z"),
        )]);
        let got = decide(&history, &us, &promo, None, t("2026-01-02T00:00:00Z"));
        assert_eq!((got.allowed, got.reason), (false, Reason::NoConsent));
    }

    #[test]
    fn active_consent_lists_the_categories_with_consent() {
        let eu = policy("whatsapp-eu");
        let t0 = t("2026-03-01T10:00:00Z");
        let names = |history: &SubjectHistory, as_of| -> Vec<String> {
            active_consent_categories(history, &eu, as_of)
                .iter()
                .map(|c| c.to_string())
                .collect()
        };
        let history = SubjectHistory::new(vec![
            opt_in(1, &["marketing", "utility", "authentication"], t0),
            inbound(t0),
            revoke(&["authentication"], t0 + Duration::hours(1)),
        ]);
        let at = t0 + Duration::hours(2);
        assert_eq!(
            names(&history, at),
            ["utility"],
            "marketing pending, authentication revoked, service not by consent"
        );

        let mut blocked = history.clone();
        blocked.facts.push(block(t0 + Duration::hours(1)));
        assert_eq!(
            names(&blocked, at),
            ["utility"],
            "a block withdraws no consent"
        );
    }

    #[test]
    fn start_restores_only_what_the_last_stop_revoked() {
        let eu = policy("whatsapp-eu");
        let t0 = t("2026-03-01T10:00:00Z");
        let h = Duration::hours;
        let names = |facts: Vec<Fact>, as_of| -> Vec<String> {
            keyword_restorable_categories(&SubjectHistory::new(facts), &eu, as_of)
                .iter()
                .map(|c| c.to_string())
                .collect()
        };
        let base = vec![
            opt_in(1, &["marketing", "utility"], t0),
            confirm(1, t0 + h(1)),
            revoke(&["utility"], t0 + h(2)),
            stop(t0 + h(3)),
        ];
        assert_eq!(
            names(base.clone(), t0 + h(4)),
            ["marketing"],
            "utility was already revoked before the STOP"
        );
        assert!(
            names(vec![opt_in(1, &["utility"], t0)], t0 + h(4)).is_empty(),
            "no STOP, nothing to restore"
        );
        assert!(
            names(vec![stop(t0)], t0 + h(1)).is_empty(),
            "START never grants what was never given"
        );

        let mut late = base.clone();
        late.push(recorded(
            opt_in(2, &["authentication"], t0 + h(2)),
            t0 + h(4),
        ));
        assert_eq!(
            names(late, t0 + h(5)),
            ["authentication", "marketing"],
            "an opt-in recorded late but collected before the STOP was revoked by it"
        );

        let mut expired = vec![opt_in(1, &["utility"], t0), stop(t0 + Duration::days(800))];
        assert!(
            names(expired.clone(), t0 + Duration::days(801)).is_empty(),
            "expired consent is not restored"
        );
        expired.push(opt_in(2, &["utility"], t0 + Duration::days(100)));
        assert_eq!(names(expired, t0 + Duration::days(801)), ["utility"]);

        let not_keyword = vec![opt_in(1, &["utility"], t0), revoke_all(t0 + h(1))];
        assert!(
            names(not_keyword, t0 + h(2)).is_empty(),
            "a web opt-out is not undone by a keyword"
        );
    }

    #[test]
    fn reasons_and_bases_serialize_for_the_api() {
        assert_eq!(
            serde_json::to_value(Reason::PendingConfirmation).unwrap(),
            "pending_confirmation"
        );
        for reason in Reason::ALL {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
            assert_eq!(reason.to_string(), reason.as_str());
        }
        let basis = Basis::OptIn { opt_in_id: id(7) };
        assert_eq!(
            serde_json::to_value(basis).unwrap(),
            serde_json::json!({"type": "opt_in", "opt_in_id": "00000000-0000-0000-0000-000000000007"})
        );
        let window = Basis::Window {
            expires_at: t("2026-03-02T10:00:00Z"),
        };
        assert_eq!(
            serde_json::to_value(window).unwrap(),
            serde_json::json!({"type": "window", "expires_at": "2026-03-02T10:00:00Z"})
        );
    }

    // ---- properties -------------------------------------------------------------

    const POLICIES: [&str; 3] = ["whatsapp-eu", "whatsapp-global", "sms-us"];
    // Includes a category no policy has, as stored history may.
    const CATEGORY_NAMES: [&str; 5] = [
        "marketing",
        "utility",
        "authentication",
        "service",
        "legacy_promo",
    ];

    fn base() -> DateTime<Utc> {
        t("2026-01-01T00:00:00Z")
    }

    /// Instants on three scales: a few hours (so that facts tie), a few days (windows),
    /// and about three years (consent expiry).
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            (0i64..6).prop_map(Duration::hours),
            (0i64..(5 * 24 * 60)).prop_map(Duration::minutes),
            (0i64..(1100 * 24 * 60)).prop_map(Duration::minutes),
        ]
        .prop_map(|offset| base() + offset)
    }

    fn delay() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::zero()),
            (0i64..180).prop_map(Duration::minutes),
            (0i64..40).prop_map(Duration::days)
        ]
    }

    fn categories() -> impl Strategy<Value = Vec<String>> {
        proptest::sample::subsequence(CATEGORY_NAMES.to_vec(), 0..=3)
            .prop_map(|names| names.into_iter().map(str::to_owned).collect())
    }

    fn fact() -> impl Strategy<Value = Fact> {
        // Opt-in ids come from a small range so that confirmations hit them.
        let small_id = (0u128..6).prop_map(Uuid::from_u128);
        let entry_point = prop_oneof![
            Just(None),
            Just(Some("click_to_chat_ad".to_owned())),
            Just(Some("qr".to_owned()))
        ];
        prop_oneof![
            4 => (small_id.clone(), categories(), instant(), delay(), any::<bool>()).prop_map(
                |(id, categories, at, delay, confirmed_on_record)| Fact::OptIn(OptInFact {
                    id,
                    categories,
                    collected_at: at,
                    recorded_at: at + delay,
                    confirmed_on_record,
                })
            ),
            2 => (small_id, instant(), delay()).prop_map(|(opt_in_id, at, delay)| Fact::Confirmation {
                opt_in_id,
                confirmed_at: at,
                recorded_at: at + delay,
            }),
            2 => (any::<u128>(), proptest::option::of(categories()), instant(), delay(), any::<bool>()).prop_map(
                |(id, categories, at, delay, by_keyword)| Fact::Revocation {
                    id: Uuid::from_u128(id),
                    categories,
                    at,
                    recorded_at: at + delay,
                    by_keyword,
                }
            ),
            1 => (instant(), delay()).prop_map(|(at, delay)| Fact::Block { at, recorded_at: at + delay }),
            1 => (instant(), delay()).prop_map(|(at, delay)| Fact::Unblock { at, recorded_at: at + delay }),
            3 => (instant(), delay(), entry_point).prop_map(|(at, delay, entry_point)| Fact::Inbound {
                received_at: at,
                recorded_at: at + delay,
                entry_point,
            }),
            1 => (instant(), delay()).prop_map(|(at, delay)| Fact::Erased { at, recorded_at: at + delay }),
        ]
    }

    /// A random question: policy, category of that policy, history, calling code, instant.
    fn question()
    -> impl Strategy<Value = (&'static str, usize, Vec<Fact>, Option<u16>, DateTime<Utc>)> {
        (
            proptest::sample::select(POLICIES.to_vec()),
            0usize..4,
            proptest::collection::vec(fact(), 0..14),
            proptest::option::of(prop_oneof![
                Just(1u16),
                Just(31),
                Just(49),
                Just(91),
                1u16..999
            ]),
            instant(),
        )
    }

    fn ask(
        policy_name: &str,
        category_index: usize,
        facts: Vec<Fact>,
        calling_code: Option<u16>,
        as_of: DateTime<Utc>,
    ) -> (Arc<Policy>, Category, SubjectHistory, Decision) {
        let policy = policy(policy_name);
        let category = policy
            .categories()
            .nth(category_index)
            .expect("each shipped policy has four categories");
        let history = SubjectHistory::new(facts);
        let decision = decide(&history, &policy, &category, calling_code, as_of);
        (policy, category, history, decision)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn a_block_later_than_every_unblock_always_denies(
            (p, c, facts, code, as_of) in question()
        ) {
            let (_, _, history, decision) = ask(p, c, facts, code, as_of);
            let visible: Vec<&Fact> = history.visible_at(as_of).collect();
            let last_block = visible.iter().filter_map(|f| match f { Fact::Block { at, .. } => Some(*at), _ => None }).max();
            let last_unblock = visible.iter().filter_map(|f| match f { Fact::Unblock { at, .. } => Some(*at), _ => None }).max();
            if let Some(block) = last_block && last_unblock.is_none_or(|unblock| block > unblock) {
                prop_assert!(!decision.allowed);
                prop_assert_eq!(decision.reason, Reason::Blocked);
            }
        }

        #[test]
        fn a_revocation_after_every_opt_in_never_answers_consent(
            (p, c, facts, code, as_of) in question()
        ) {
            let (_, category, history, decision) = ask(p, c, facts, code, as_of);
            let name = category.as_str();
            let visible: Vec<&Fact> = history.visible_at(as_of).collect();
            let last_opt_in = visible.iter().filter_map(|f| match f {
                Fact::OptIn(o) if o.covers(name) => Some(o.collected_at),
                _ => None,
            }).max();
            let last_withdrawal = visible.iter().filter_map(|f| match f {
                Fact::Revocation { categories, at, .. } if covers(categories.as_deref(), name) => Some(*at),
                Fact::Erased { at, .. } => Some(*at),
                _ => None,
            }).max();
            if let Some(withdrawn) = last_withdrawal && last_opt_in.is_none_or(|o| o <= withdrawn) {
                prop_assert_ne!(decision.reason, Reason::Consent);
                let by_opt_in = matches!(decision.basis, Some(Basis::OptIn { .. }));
                prop_assert!(!by_opt_in, "consent basis after a withdrawal: {:?}", decision);
            }
        }

        #[test]
        fn an_allowed_decision_uses_a_basis_the_category_permits(
            (p, c, facts, code, as_of) in question()
        ) {
            let (policy, category, history, decision) = ask(p, c, facts, code, as_of);
            let rules = policy.rules(&category).unwrap();
            prop_assert_eq!(decision.allowed, decision.basis.is_some());
            prop_assert_eq!(
                decision.allowed,
                matches!(decision.reason, Reason::Consent | Reason::ServiceWindow)
            );
            match decision.basis {
                Some(Basis::OptIn { opt_in_id }) => {
                    prop_assert!(rules.allows(AllowedBy::OptIn));
                    prop_assert_eq!(decision.reason, Reason::Consent);
                    // The named opt-in exists, is visible, covers the category and is young enough.
                    let found = history.visible_at(as_of).any(|f| matches!(f,
                        Fact::OptIn(o) if o.id == opt_in_id
                            && o.covers(category.as_str())
                            && as_of < o.collected_at + policy.max_age()));
                    prop_assert!(found, "basis {} is not a visible, live opt-in", opt_in_id);
                }
                Some(Basis::Window { expires_at }) => {
                    prop_assert!(rules.allows(AllowedBy::Window));
                    prop_assert_eq!(decision.reason, Reason::ServiceWindow);
                    prop_assert!(as_of < expires_at);
                    prop_assert_eq!(decision.window_expires_at, Some(expires_at));
                }
                None => {
                    prop_assert!(!decision.billable);
                    prop_assert!(decision.price.is_none());
                }
            }
            if decision.allowed {
                let free = decision.window_expires_at.is_some() && rules.free_in_window();
                prop_assert_eq!(decision.billable, !free);
                let price = if free { None } else { policy.price_for(&category, code) };
                prop_assert_eq!(decision.price, price);
            }
            if !policy.has_window() {
                prop_assert!(decision.window_expires_at.is_none());
            }
        }

        #[test]
        fn the_decision_ignores_the_order_of_facts(
            ((p, c, facts, code, as_of), shuffled) in question()
                .prop_flat_map(|q| { let facts = q.2.clone(); (Just(q), Just(facts).prop_shuffle()) })
        ) {
            let (policy, category, history, decision) = ask(p, c, facts, code, as_of);
            let again = decide(&history, &policy, &category, code, as_of);
            prop_assert_eq!(&decision, &again, "deterministic");
            let reordered = decide(&SubjectHistory::new(shuffled.clone()), &policy, &category, code, as_of);
            prop_assert_eq!(&decision, &reordered, "independent of order");
            let mut reversed = shuffled;
            reversed.reverse();
            let reversed = decide(&SubjectHistory::new(reversed), &policy, &category, code, as_of);
            prop_assert_eq!(&decision, &reversed, "independent of order");
        }

        #[test]
        fn facts_not_yet_visible_change_nothing(
            (p, c, facts, code, as_of) in question(),
            extra in proptest::collection::vec(fact(), 1..6),
            lateness in 1i64..100_000,
        ) {
            let (policy, category, history, decision) = ask(p, c, facts, code, as_of);
            let mut more = history.clone();
            for fact in extra {
                // Either recorded after as_of, or happening after as_of.
                let later = as_of + Duration::seconds(lateness);
                let fact = if lateness % 2 == 0 { recorded(fact, later) } else { shift(fact, later) };
                more.facts.push(fact);
            }
            let again = decide(&more, &policy, &category, code, as_of);
            prop_assert_eq!(decision, again);
        }

        #[test]
        fn restorable_categories_were_all_consented_before(
            (p, _c, facts, _code, as_of) in question()
        ) {
            let policy = policy(p);
            let history = SubjectHistory::new(facts);
            let restorable = keyword_restorable_categories(&history, &policy, as_of);
            // Everything a START may restore was named in some opt-in known by then.
            for category in restorable {
                let named = history.facts.iter().any(|f| matches!(f,
                    Fact::OptIn(o) if o.covers(category.as_str()) && o.recorded_at <= as_of && o.collected_at <= as_of));
                prop_assert!(named, "{} restored without ever being given", category);
            }
        }
    }

    /// The same fact moved to happen at `at` (and recorded then, or later).
    fn shift(mut fact: Fact, at: DateTime<Utc>) -> Fact {
        let recorded_at = at.max(fact.recorded_at());
        match &mut fact {
            Fact::OptIn(o) => o.collected_at = at,
            Fact::Confirmation { confirmed_at, .. } => *confirmed_at = at,
            Fact::Revocation { at: when, .. }
            | Fact::Block { at: when, .. }
            | Fact::Unblock { at: when, .. }
            | Fact::Erased { at: when, .. } => *when = at,
            Fact::Inbound { received_at, .. } => *received_at = at,
        }
        recorded(fact, recorded_at)
    }
}
