//! The decision's table of cases and its properties (SPEC section 3).
use std::sync::{Arc, OnceLock};

use chrono::Duration;
use proptest::prelude::*;

use super::*;
use crate::domain::history::OptInFact;
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

/// An opt-in keyword (START): undoes the keyword revocations before it.
fn start(at: DateTime<Utc>) -> Fact {
    Fact::Restoration {
        id: Uuid::from_u128(9_002),
        categories: None,
        at,
        recorded_at: at,
    }
}

/// A platform's "resume marketing": undoes keyword revocations of `categories`.
fn resume(categories: &[&str], at: DateTime<Utc>) -> Fact {
    Fact::Restoration {
        id: Uuid::from_u128(9_003),
        categories: Some(categories.iter().map(|c| (*c).to_owned()).collect()),
        at,
        recorded_at: at,
    }
}

/// The same fact, stated (by the client's clock) at `stated` but recorded at
/// `recorded_at`.
fn stated(fact: Fact, stated: DateTime<Utc>, recorded_at: DateTime<Utc>) -> Fact {
    let mut fact = match fact {
        Fact::OptIn(mut o) => {
            o.collected_at = stated;
            Fact::OptIn(o)
        }
        Fact::Revocation {
            id,
            categories,
            by_keyword,
            ..
        } => Fact::Revocation {
            id,
            categories,
            at: stated,
            recorded_at,
            by_keyword,
        },
        Fact::Block { .. } => Fact::Block {
            at: stated,
            recorded_at,
        },
        Fact::Inbound { entry_point, .. } => Fact::Inbound {
            received_at: stated,
            recorded_at,
            entry_point,
        },
        other => other,
    };
    fact = recorded(fact, recorded_at);
    fact
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
        | Fact::Restoration { recorded_at, .. }
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
    /// A live check at `as_of` (every fact counts) instead of an `as_of` question.
    live: bool,
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
        live: false,
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

    /// Asked as a live check at `as_of` by the answering node's clock.
    fn live(mut self) -> Case {
        self.live = true;
        self
    }
}

fn run(case: &Case) {
    let policy = policy(case.policy);
    let category = policy
        .category(case.category)
        .expect("the case's category is in its policy");
    let history = SubjectHistory::new(case.facts.clone());
    let moment = if case.live {
        Moment::Live(case.as_of)
    } else {
        Moment::AsOf(case.as_of)
    };
    let got = decide(&history, &policy, &category, case.calling_code, moment);
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
        // -- the time model (SPEC 3): a fact takes effect no later than recorded
        case(
            "a revocation stated 120 s ahead denies at once (issue 8, 1)",
            vec![
                opt_in(1, &["utility"], t0),
                stated(revoke_all(t0), t0 + h(1) + Duration::seconds(120), t0 + h(1)),
            ],
            "utility",
            t0 + h(1) + Duration::seconds(1),
            Expect::deny(Revoked),
        )
        .on("whatsapp-global")
        .live(),
        case(
            "a revocation stated ahead is also in force for as_of right after it was recorded",
            vec![
                opt_in(1, &["utility"], t0),
                stated(revoke_all(t0), t0 + h(1) + Duration::seconds(120), t0 + h(1)),
            ],
            "utility",
            t0 + h(1),
            Expect::deny(Revoked),
        )
        .on("whatsapp-global"),
        case(
            "a block stated 120 s ahead blocks at once",
            vec![
                opt_in(1, &["utility"], t0),
                stated(block(t0), t0 + h(1) + Duration::seconds(120), t0 + h(1)),
            ],
            "utility",
            t0 + h(1) + Duration::seconds(1),
            Expect::deny(Blocked),
        )
        .on("whatsapp-global")
        .live(),
        case(
            "a STOP received 120 s ahead revokes at once",
            vec![
                opt_in(1, &["utility", "marketing"], t0),
                stated(stop(t0), t0 + h(1) + Duration::seconds(120), t0 + h(1)),
                stated(inbound(t0), t0 + h(1) + Duration::seconds(120), t0 + h(1)),
            ],
            "marketing",
            t0 + h(1) + Duration::seconds(1),
            Expect::deny(Revoked),
        )
        .on("whatsapp-global")
        .live(),
        case(
            "a node whose clock runs 5 s behind honours a revocation recorded by a node ahead (issue 8, 2)",
            vec![
                opt_in(1, &["utility"], t0),
                revoke_all(t0 + h(1)),
            ],
            "utility",
            t0 + h(1) - Duration::seconds(5),
            Expect::deny(Revoked),
        )
        .on("whatsapp-global")
        .live(),
        case(
            "... and a block the same way",
            vec![opt_in(1, &["utility"], t0), block(t0 + h(1))],
            "utility",
            t0 + h(1) - Duration::seconds(5),
            Expect::deny(Blocked),
        )
        .on("whatsapp-global")
        .live(),
        case(
            "an opt-in stated in the future takes effect when recorded; its age counts from then",
            vec![stated(
                opt_in(1, &["utility"], t0),
                t0 + Duration::seconds(200),
                t0,
            )],
            "utility",
            t0 + d(730) - Duration::seconds(1),
            Expect::consent(1),
        )
        .on("whatsapp-global"),
        case(
            "... and expires max_age after it was recorded, not after its stated time",
            vec![stated(
                opt_in(1, &["utility"], t0),
                t0 + Duration::seconds(200),
                t0,
            )],
            "utility",
            t0 + d(730) + Duration::seconds(1),
            Expect::deny(ConsentExpired),
        )
        .on("whatsapp-global"),
        case(
            "a live check counts a late-recorded backdated opt-in that as_of would not see",
            vec![recorded(opt_in(1, &["utility"], t0), t0 + h(2))],
            "utility",
            t0 + h(1),
            Expect::consent(1),
        )
        .on("whatsapp-global")
        .live(),
        // -- START undoes STOP; it never refreshes consent (issue 8, 4)
        case(
            "START after STOP restores consent with its original age: expired stays expired",
            vec![
                opt_in(1, &["marketing"], t0 - d(740)),
                stop(t0 - d(20)),
                start(t0),
            ],
            "marketing",
            t0 + Duration::seconds(1),
            Expect::deny(ConsentExpired),
        )
        .on("whatsapp-global"),
        case(
            "START after STOP restores consent still young enough, naming the original opt-in",
            vec![
                opt_in(1, &["marketing"], t0 - d(700)),
                stop(t0 - d(20)),
                start(t0),
            ],
            "marketing",
            t0 + Duration::seconds(1),
            Expect::consent(1),
        )
        .on("whatsapp-global"),
        case(
            "... until the original opt-in's max age is reached",
            vec![
                opt_in(1, &["marketing"], t0 - d(700)),
                stop(t0 - d(20)),
                start(t0),
            ],
            "marketing",
            t0 + d(31),
            Expect::deny(ConsentExpired),
        )
        .on("whatsapp-global"),
        case(
            "START restores a pending double opt-in as pending, never as confirmed",
            vec![opt_in(1, &["marketing"], t0), stop(t0 + h(1)), start(t0 + h(2))],
            "marketing",
            t0 + h(3),
            Expect::deny(PendingConfirmation),
        ),
        case(
            "START does not undo a revocation made on another channel",
            vec![
                opt_in(1, &["utility"], t0),
                revoke_all(t0 + h(1)),
                stop(t0 + h(2)),
                start(t0 + h(3)),
            ],
            "utility",
            t0 + h(4),
            Expect::deny(Revoked),
        )
        .on("whatsapp-global"),
        case(
            "START undoes every STOP before it (STOP, STOP, START)",
            vec![
                opt_in(1, &["utility"], t0),
                stop(t0 + h(1)),
                stop(t0 + h(2)),
                start(t0 + h(3)),
            ],
            "utility",
            t0 + h(4),
            Expect::consent(1),
        )
        .on("whatsapp-global"),
        case(
            "a STOP after the START is in force again",
            vec![
                opt_in(1, &["utility"], t0),
                stop(t0 + h(1)),
                start(t0 + h(2)),
                stop(t0 + h(3)),
            ],
            "utility",
            t0 + h(4),
            Expect::deny(Revoked),
        )
        .on("whatsapp-global"),
        case(
            "a STOP and a START at the same instant: the withdrawal wins",
            vec![opt_in(1, &["utility"], t0), stop(t0 + h(1)), start(t0 + h(1))],
            "utility",
            t0 + h(2),
            Expect::deny(Revoked),
        )
        .on("whatsapp-global"),
        case(
            "a platform's resume of marketing does not undo a STOP of the rest",
            vec![
                opt_in(1, &["utility", "marketing"], t0),
                stop(t0 + h(1)),
                resume(&["marketing"], t0 + h(2)),
            ],
            "utility",
            t0 + h(3),
            Expect::deny(Revoked),
        )
        .on("whatsapp-global"),
        case(
            "... but restores marketing",
            vec![
                opt_in(1, &["utility", "marketing"], t0),
                stop(t0 + h(1)),
                resume(&["marketing"], t0 + h(2)),
            ],
            "marketing",
            t0 + h(3),
            Expect::consent(1),
        )
        .on("whatsapp-global"),
        case(
            "as_of before the START was recorded still sees the STOP in force",
            vec![
                opt_in(1, &["utility"], t0),
                stop(t0 + h(1)),
                recorded(start(t0 + h(2)), t0 + h(5)),
            ],
            "utility",
            t0 + h(3),
            Expect::deny(Revoked),
        )
        .on("whatsapp-global"),
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
        &include_str!("../../../policies/sms-us.toml")
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
    let names = |facts: Vec<Fact>, as_of: DateTime<Utc>| -> Vec<String> {
        let start = Fact::Restoration {
            id: id(7_000),
            categories: None,
            at: as_of,
            recorded_at: as_of,
        };
        keyword_restorable_categories(&SubjectHistory::new(facts), &eu, &start, as_of)
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

/// How long after its stated time a fact was recorded; negative when the
/// client's clock ran ahead (within any policy's clock skew).
fn delay() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::zero()),
        (0i64..180).prop_map(Duration::minutes),
        (0i64..40).prop_map(Duration::days),
        (-300i64..0).prop_map(Duration::seconds),
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
        1 => (proptest::option::of(categories()), instant(), delay()).prop_map(
            |(categories, at, delay)| Fact::Restoration {
                id: Uuid::from_u128(7),
                categories,
                at,
                recorded_at: at + delay,
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
fn question() -> impl Strategy<Value = (&'static str, usize, Vec<Fact>, Option<u16>, DateTime<Utc>)>
{
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
        let last_block = visible.iter().filter_map(|f| match f { Fact::Block { .. } => Some(f.effective_at()), _ => None }).max();
        let last_unblock = visible.iter().filter_map(|f| match f { Fact::Unblock { .. } => Some(f.effective_at()), _ => None }).max();
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
            Fact::OptIn(o) if o.covers(name) => Some(o.effective_at()),
            _ => None,
        }).max();
        let last_restoration = visible.iter().filter_map(|f| match f {
            Fact::Restoration { categories, .. } if covers(categories.as_deref(), name) => Some(f.effective_at()),
            _ => None,
        }).max();
        // Withdrawals in force: a keyword revocation before a restoration is undone.
        let last_withdrawal = visible.iter().filter_map(|f| match f {
            Fact::Revocation { categories, by_keyword, .. } if covers(categories.as_deref(), name) => {
                let at = f.effective_at();
                let undone = *by_keyword && last_restoration.is_some_and(|r| at < r);
                (!undone).then_some(at)
            }
            Fact::Erased { .. } => Some(f.effective_at()),
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
                        && as_of < o.effective_at() + policy.max_age()));
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
        let start = Fact::Restoration { id: Uuid::from_u128(8), categories: None, at: as_of, recorded_at: as_of };
        let restorable = keyword_restorable_categories(&history, &policy, &start, as_of);
        // Everything a START may restore was named in some opt-in known by then.
        for category in restorable {
            let named = history.facts.iter().any(|f| matches!(f,
                Fact::OptIn(o) if o.covers(category.as_str()) && o.recorded_at <= as_of));
            prop_assert!(named, "{} restored without ever being given", category);
        }
    }

    /// SPEC 3: a withdrawal acknowledged after everything else denies the very next
    /// check, whatever its stated time (up to the clock skew ahead) and whatever the
    /// answering node's clock says (up to a minute behind).
    #[test]
    fn an_acknowledged_withdrawal_denies_the_next_check_whatever_the_clocks(
        (p, c, facts, code, _as_of) in question(),
        ahead in 0i64..=300,
        behind in 0i64..=60,
        by_keyword in any::<bool>(),
        block_instead in any::<bool>(),
    ) {
        let policy = policy(p);
        let category = policy.categories().nth(c).unwrap();
        let acknowledged = facts.iter().map(Fact::recorded_at).max().unwrap_or_else(base)
            + Duration::microseconds(1);
        let stated_at = acknowledged + Duration::seconds(ahead);
        let withdrawal = if block_instead {
            Fact::Block { at: stated_at, recorded_at: acknowledged }
        } else {
            Fact::Revocation { id: Uuid::from_u128(99), categories: None, at: stated_at, recorded_at: acknowledged, by_keyword }
        };
        let mut history = SubjectHistory::new(facts);
        history.facts.push(withdrawal);
        for moment in [
            Moment::Live(acknowledged - Duration::seconds(behind)),
            Moment::Live(acknowledged + Duration::seconds(ahead)),
            Moment::AsOf(acknowledged),
        ] {
            let decision = decide(&history, &policy, &category, code, moment);
            let by_consent = policy.rules(&category).unwrap().allows(AllowedBy::OptIn);
            if block_instead || by_consent {
                // Nothing allows it: no consent, and no window opened after it.
                prop_assert!(!decision.allowed, "{:?} {:?}", moment, decision);
            } else {
                // A window-only category (service replies) is not consent-based:
                // the STOP message's own window may still carry the confirmation.
                prop_assert_ne!(decision.reason, Reason::Consent, "{:?}", moment);
            }
        }
    }

    /// SPEC 2: START undoes STOP exactly: the decision is what it was before the
    /// STOP, for every category, at any later instant.
    #[test]
    fn a_start_undoes_a_stop_exactly(
        (p, c, facts, code, _as_of) in question(),
        stop_after in 1i64..1_000_000,
        start_after in 1i64..1_000_000,
        asked_after in 0i64..100_000_000,
    ) {
        let policy = policy(p);
        let category = policy.categories().nth(c).unwrap();
        // Without keyword revocations or restorations of its own.
        let facts: Vec<Fact> = facts.into_iter().filter(|f| !matches!(f,
            Fact::Restoration { .. } | Fact::Revocation { by_keyword: true, .. })).collect();
        let last = facts.iter().map(Fact::recorded_at).max().unwrap_or_else(base);
        let stop_at = last + Duration::seconds(stop_after);
        let start_at = stop_at + Duration::seconds(start_after);
        let asked = start_at + Duration::seconds(asked_after);
        let before = decide(&SubjectHistory::new(facts.clone()), &policy, &category, code, Moment::Live(asked));
        let mut with = facts;
        with.push(stop(stop_at));
        with.push(start(start_at));
        let after = decide(&SubjectHistory::new(with), &policy, &category, code, Moment::Live(asked));
        prop_assert_eq!(before, after);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Issue 10: a live check answered from the packed in-memory projection says
    /// exactly what a replay of the full history says, for any history, category,
    /// calling code and instant.
    #[test]
    fn the_projection_decides_exactly_like_the_full_history(
        (p, c, facts, code, at) in question(),
        later in proptest::collection::vec(0i64..2_000_000_000, 1..4),
    ) {
        let policy = policy(p);
        let category = policy.categories().nth(c).unwrap();
        let index = policy.category_index(&category).unwrap();
        let history = SubjectHistory::new(facts);
        // The fold of a live check does not depend on the instant: fold once,
        // then ask at several instants, as the projection does.
        let summary = SubjectState::fold(&history, &policy, Moment::Live(at)).summary(&policy);
        let kept = match crate::policy::LiveState::pack(&summary) {
            Some(packed) => packed.unpack(summary.window_until, policy.category_count()),
            None => summary.clone(),
        };
        prop_assert_eq!(&kept, &summary);
        for instant in std::iter::once(at).chain(later.iter().map(|s| at + Duration::seconds(*s))) {
            let projected = kept.verdicts[index].decide(
                &policy, &category, kept.blocked, kept.window_until, code, instant);
            let replayed = decide(&history, &policy, &category, code, Moment::Live(instant));
            prop_assert_eq!(projected, replayed, "at {}", instant);
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
        | Fact::Restoration { at: when, .. }
        | Fact::Block { at: when, .. }
        | Fact::Unblock { at: when, .. }
        | Fact::Erased { at: when, .. } => *when = at,
        Fact::Inbound { received_at, .. } => *received_at = at,
    }
    recorded(fact, recorded_at)
}
