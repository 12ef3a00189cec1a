//! What the decision table (`policy::decide`'s unit tests) covers, over HTTP on
//! both backends: windows that close, consent that expires, `as_of` that sees
//! only what had been recorded by then (single and batch), and businesses whose
//! erasures, revocations and blocks never touch each other's answers.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    a_window_is_open_23_hours_after_a_message_and_closed_after_25,
    consent_older_than_the_policys_max_age_is_consent_expired,
    as_of_sees_a_late_recorded_opt_in_only_from_when_it_was_recorded,
    a_batch_as_of_an_instant_answers_what_single_checks_as_of_it_answer,
    erasing_a_number_only_another_business_holds_is_404_and_changes_nothing,
    a_revocation_or_block_by_another_business_leaves_this_ones_answer_untouched,
);

// ---- helpers ------------------------------------------------------------------------------

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An instant as sent (and stored): microsecond precision.
fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    instant(&json!(rfc3339(at)))
}

#[track_caller]
fn instant(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// POST /v1/opt-ins (api channel) collected at `collected_at`; panics unless 201.
async fn opt_in_at(
    app: &TestApp,
    key: &str,
    phone: &str,
    categories: &[&str],
    collected_at: DateTime<Utc>,
) -> Value {
    let res = app
        .post(
            "/v1/opt-ins",
            Some(key),
            &json!({"phone": phone, "categories": categories, "channel": "api",
                    "evidence": {"collected_at": rfc3339(collected_at), "consent_text_version": "v1",
                                 "source_system": "crm"}}),
        )
        .await;
    assert_eq!(res.status, 201, "the opt-in is recorded: {}", res.body);
    res.body
}

/// POST /v1/inbound-messages received at `received_at`; panics unless 201.
async fn inbound_at(
    app: &TestApp,
    key: &str,
    phone: &str,
    received_at: DateTime<Utc>,
    entry_point: Option<&str>,
) -> Value {
    let res = app
        .post(
            "/v1/inbound-messages",
            Some(key),
            &json!({"phone": phone, "received_at": rfc3339(received_at), "entry_point": entry_point}),
        )
        .await;
    assert_eq!(res.status, 201, "the message is recorded: {}", res.body);
    res.body
}

/// POST /v1/checks, now or as of an instant; panics unless 200.
async fn check(
    app: &TestApp,
    key: &str,
    phone: &str,
    category: &str,
    as_of: Option<DateTime<Utc>>,
) -> Value {
    let mut body = json!({"phone": phone, "category": category});
    if let Some(as_of) = as_of {
        body["as_of"] = json!(rfc3339(as_of));
    }
    let res = app.post("/v1/checks", Some(key), &body).await;
    assert_eq!(res.status, 200, "a check answers: {}", res.body);
    res.body
}

/// POST /v1/checks/batch; panics unless 200.
async fn batch(
    app: &TestApp,
    key: &str,
    phones: &[&str],
    category: &str,
    as_of: Option<DateTime<Utc>>,
) -> Value {
    let mut body = json!({"phones": phones, "category": category});
    if let Some(as_of) = as_of {
        body["as_of"] = json!(rfc3339(as_of));
    }
    let res = app.post("/v1/checks/batch", Some(key), &body).await;
    assert_eq!(res.status, 200, "a batch answers: {}", res.body);
    res.body
}

#[track_caller]
fn assert_decision(answer: &Value, allowed: bool, reason: &str, what: &str) {
    assert_eq!(
        (answer["allowed"].as_bool(), answer["reason"].as_str()),
        (Some(allowed), Some(reason)),
        "{what}: {answer}"
    );
}

fn reasons(batch: &Value) -> Vec<String> {
    batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect()
}

/// The head of a business's chain and how many events it has, as an auditor
/// sees them.
async fn chain(app: &TestApp, key: &str) -> (Value, usize) {
    let verify = app.get("/v1/audit/verify", Some(key)).await;
    assert_eq!(verify.body["valid"], true, "{}", verify.body);
    let events = app.get("/v1/audit/events?limit=1000", Some(key)).await;
    (
        verify.body["head"].clone(),
        events.body["events"].as_array().unwrap().len(),
    )
}

// ---- windows --------------------------------------------------------------------------------

/// whatsapp-global: 24 h after the last inbound message, 72 h from a click-to-chat
/// ad; `service` is allowed only inside a window, so outside it is `window_closed`.
async fn a_window_is_open_23_hours_after_a_message_and_closed_after_25(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let now = Utc::now();
    let (closed, open) = ("+14155550111", "+14155550112");
    let (ad_closed, ad_open) = ("+14155550113", "+14155550114");
    inbound_at(&app, &biz.key, closed, now - Duration::hours(25), None).await;
    let opened = inbound_at(&app, &biz.key, open, now - Duration::hours(23), None).await;
    inbound_at(
        &app,
        &biz.key,
        ad_closed,
        now - Duration::hours(73),
        Some("click_to_chat_ad"),
    )
    .await;
    inbound_at(
        &app,
        &biz.key,
        ad_open,
        now - Duration::hours(71),
        Some("click_to_chat_ad"),
    )
    .await;

    let answer = check(&app, &biz.key, closed, "service", None).await;
    assert_decision(&answer, false, "window_closed", "25 h after the message");
    assert_eq!(answer["billable"], false);
    let answer = check(&app, &biz.key, open, "service", None).await;
    assert_decision(&answer, true, "service_window", "23 h after the message");
    assert_eq!(
        instant(&answer["window_expires_at"]),
        instant(&opened["window_expires_at"]),
        "the window closes 24 h after the message"
    );
    assert_eq!(
        answer["billable"], false,
        "service is free inside the window"
    );
    assert_decision(
        &check(&app, &biz.key, ad_closed, "service", None).await,
        false,
        "window_closed",
        "73 h after a message from an ad",
    );
    assert_decision(
        &check(&app, &biz.key, ad_open, "service", None).await,
        true,
        "service_window",
        "71 h after a message from an ad",
    );
    // utility is allowed by a window too, or by consent: outside a window and
    // without consent the most specific reason is no_consent.
    assert_decision(
        &check(&app, &biz.key, closed, "utility", None).await,
        false,
        "no_consent",
        "utility 25 h after the message",
    );

    // A new message restarts the window.
    inbound_at(&app, &biz.key, closed, now - Duration::hours(1), None).await;
    assert_decision(
        &check(&app, &biz.key, closed, "service", None).await,
        true,
        "service_window",
        "an hour after a new message",
    );
}

// ---- consent age ----------------------------------------------------------------------------

/// whatsapp-global refreshes consent after `consent.max_age_days` (730): consent
/// collected a day longer ago than that is `consent_expired`, a day less is consent.
async fn consent_older_than_the_policys_max_age_is_consent_expired(app: TestApp) {
    let shipped = consentgate::policy::PolicySet::shipped();
    let max_age = shipped.get("whatsapp-global").unwrap().max_age();
    assert_eq!(max_age, Duration::days(730), "the policy file's max age");
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let (old, recent) = ("+14155550121", "+14155550122");
    let now = Utc::now();
    opt_in_at(
        &app,
        &biz.key,
        old,
        &["marketing"],
        now - max_age - Duration::days(1),
    )
    .await;
    let kept = opt_in_at(
        &app,
        &biz.key,
        recent,
        &["marketing"],
        now - max_age + Duration::days(1),
    )
    .await;

    let answer = check(&app, &biz.key, old, "marketing", None).await;
    assert_decision(&answer, false, "consent_expired", "731 days after consent");
    assert_eq!(answer["billable"], false);
    let answer = check(&app, &biz.key, recent, "marketing", None).await;
    assert_decision(&answer, true, "consent", "729 days after consent");
    assert_eq!(answer["basis"]["opt_in_id"], kept["id"]);
    let batch = batch(&app, &biz.key, &[old, recent], "marketing", None).await;
    assert_eq!(
        reasons(&batch),
        ["consent_expired", "consent"],
        "the batch agrees"
    );
}

// ---- as_of ------------------------------------------------------------------------------------

/// An opt-in collected 10 days ago but recorded only now: as of 5 days ago nobody
/// could have known of it (no_consent); as of after its recording, and now, it
/// is consent.
async fn as_of_sees_a_late_recorded_opt_in_only_from_when_it_was_recorded(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = "+14155550131";
    let now = Utc::now();
    let recorded = opt_in_at(
        &app,
        &biz.key,
        phone,
        &["utility"],
        now - Duration::days(10),
    )
    .await;
    let recorded_at = instant(&recorded["recorded_at"]);

    let then = check(
        &app,
        &biz.key,
        phone,
        "utility",
        Some(now - Duration::days(5)),
    )
    .await;
    let after = check(
        &app,
        &biz.key,
        phone,
        "utility",
        Some(recorded_at + Duration::milliseconds(1)),
    )
    .await;
    let live = check(&app, &biz.key, phone, "utility", None).await;

    assert_decision(
        &then,
        false,
        "no_consent",
        "as of 5 days ago, before it was recorded",
    );
    assert_eq!(
        instant(&then["as_of"]),
        to_micros(now - Duration::days(5)),
        "the answer says which instant"
    );
    assert_decision(&after, true, "consent", "as of just after it was recorded");
    assert_decision(&live, true, "consent", "now");
    assert_eq!(live["basis"]["opt_in_id"], recorded["id"]);
}

/// Three numbers: one opted in (collected 10 days ago, recorded now), one opted in
/// and then revoked, one never. A batch as of an instant answers, number by
/// number, what a single check as of that instant answers.
async fn a_batch_as_of_an_instant_answers_what_single_checks_as_of_it_answer(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let (kept, revoked, never) = ("+14155550141", "+14155550142", "+14155550143");
    let now = Utc::now();
    opt_in_at(&app, &biz.key, kept, &["utility"], now - Duration::days(10)).await;
    let before_revocation = opt_in_at(
        &app,
        &biz.key,
        revoked,
        &["utility"],
        now - Duration::days(10),
    )
    .await;
    let between = instant(&before_revocation["recorded_at"]) + Duration::milliseconds(1);
    actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    let res = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({"phone": revoked, "channel": "api"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);

    let phones = [kept, revoked, never];
    for (as_of, expected, what) in [
        (
            Some(now - Duration::days(5)),
            ["no_consent", "no_consent", "no_consent"],
            "as of 5 days ago: nothing was recorded yet",
        ),
        (
            Some(between),
            ["consent", "consent", "no_consent"],
            "as of between the opt-in and the revocation",
        ),
        (None, ["consent", "revoked", "no_consent"], "now"),
    ] {
        let answer = batch(&app, &biz.key, &phones, "utility", as_of).await;
        assert_eq!(reasons(&answer), expected, "{what}: {answer}");
        if let Some(as_of) = as_of {
            assert_eq!(instant(&answer["as_of"]), to_micros(as_of), "{what}");
        }
        for (phone, reason) in phones.iter().zip(expected) {
            let single = check(&app, &biz.key, phone, "utility", as_of).await;
            assert_eq!(
                single["reason"], reason,
                "{what}: the single check of {phone} agrees"
            );
        }
    }
}

// ---- tenants --------------------------------------------------------------------------------

/// Business B erasing a number only business A holds: 404 exactly like a number
/// nobody holds, and nothing changes for A (its answer, its chain) or for B.
async fn erasing_a_number_only_another_business_holds_is_404_and_changes_nothing(app: TestApp) {
    let a = app.create_business("A", "whatsapp-eu").await;
    let b = app.create_business("B", "whatsapp-eu").await;
    let phone = "+31612340001";
    let theirs = opt_in_at(&app, &a.key, phone, &["utility"], Utc::now()).await;
    let a_before = check(&app, &a.key, phone, "utility", None).await;
    let (a_head, a_events) = chain(&app, &a.key).await;
    let (b_head, b_events) = chain(&app, &b.key).await;

    let foreign = app
        .post(
            "/v1/subjects/erase",
            Some(&b.key),
            &json!({"phone": phone, "request_reference": "DSR-B-1"}),
        )
        .await;
    let nobodys = app
        .post(
            "/v1/subjects/erase",
            Some(&b.key),
            &json!({"phone": "+31612340002", "request_reference": "DSR-B-1"}),
        )
        .await;

    foreign.assert_problem(404, "not_found");
    assert_eq!(
        foreign.body, nobodys.body,
        "no hint that another business holds the number"
    );
    let a_after = check(&app, &a.key, phone, "utility", None).await;
    assert_decision(&a_after, true, "consent", "A's answer after B's attempt");
    assert_eq!(
        (&a_after["basis"], &a_after["reason"]),
        (&a_before["basis"], &a_before["reason"])
    );
    assert_eq!(a_after["basis"]["opt_in_id"], theirs["id"]);
    assert_eq!(
        chain(&app, &a.key).await,
        (a_head, a_events),
        "A's chain is untouched"
    );
    assert_eq!(
        chain(&app, &b.key).await,
        (b_head, b_events),
        "B's failed erasure recorded nothing"
    );
    let export = app
        .post(
            "/v1/subjects/export",
            Some(&a.key),
            &json!({"phone": phone}),
        )
        .await;
    assert_eq!(export.status, 200, "A still holds the number");
    assert_eq!(export.body["subject"]["id"], theirs["subject_id"]);
}

/// B revokes and blocks a number both hold, and revokes one only A holds: B's
/// answers change, A's answers and chain do not.
async fn a_revocation_or_block_by_another_business_leaves_this_ones_answer_untouched(app: TestApp) {
    let a = app.create_business("A", "whatsapp-global").await;
    let b = app.create_business("B", "whatsapp-global").await;
    let (shared, only_a) = ("+14155550151", "+14155550152");
    opt_in_at(&app, &a.key, shared, &["utility", "marketing"], Utc::now()).await;
    opt_in_at(&app, &a.key, only_a, &["utility"], Utc::now()).await;
    opt_in_at(&app, &b.key, shared, &["utility", "marketing"], Utc::now()).await;
    let before: Vec<Value> = vec![
        check(&app, &a.key, shared, "utility", None).await,
        check(&app, &a.key, shared, "marketing", None).await,
        check(&app, &a.key, only_a, "utility", None).await,
    ];
    let (a_head, a_events) = chain(&app, &a.key).await;

    for (path, body) in [
        (
            "/v1/revocations",
            json!({"phone": shared, "categories": ["marketing"], "channel": "api"}),
        ),
        ("/v1/blocks", json!({"phone": shared})),
        (
            "/v1/revocations",
            json!({"phone": only_a, "channel": "api"}),
        ),
    ] {
        let res = app.post(path, Some(&b.key), &body).await;
        assert_eq!(res.status, 201, "B's {path}: {}", res.body);
    }

    assert_decision(
        &check(&app, &b.key, shared, "utility", None).await,
        false,
        "blocked",
        "B's own answer",
    );
    assert_decision(
        &check(&app, &b.key, only_a, "utility", None).await,
        false,
        "revoked",
        "B's own answer for a number only A had opted in",
    );
    let after: Vec<Value> = vec![
        check(&app, &a.key, shared, "utility", None).await,
        check(&app, &a.key, shared, "marketing", None).await,
        check(&app, &a.key, only_a, "utility", None).await,
    ];
    for (before, after) in before.iter().zip(&after) {
        assert_decision(after, true, "consent", "A's answer after B's withdrawals");
        assert_eq!(after["basis"], before["basis"], "on the same opt-in");
    }
    let batch = batch(&app, &a.key, &[shared, only_a], "utility", None).await;
    assert_eq!(reasons(&batch), ["consent", "consent"], "A's batch agrees");
    assert_eq!(
        chain(&app, &a.key).await,
        (a_head, a_events),
        "A's chain is untouched"
    );
}
