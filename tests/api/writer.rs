//! The group-commit writer (`consentgate::writer`): writes queued together commit
//! together, each in its own savepoint, so one bad write fails alone with its own
//! error and leaves no trace, and the chain stays contiguous and verifiable.

use consentgate::audit::{EventType, NewEvent};
use consentgate::domain::Actor;
use consentgate::store::StoreError;
use consentgate::store::ledger::{self as rows, FactKind, NewFact, NewSubject};
use consentgate::writer::{Committed, Staged, Writer};
use futures_util::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    writes_failing_beside_others_fail_alone_and_leave_no_trace,
    a_write_for_an_unknown_business_fails_alone,
    a_constraint_violation_rolls_back_to_its_savepoint_and_the_batch_commits,
    writes_of_several_businesses_batch_together_on_their_own_chains,
    one_batch_sees_its_own_earlier_writes,
    one_batch_answers_a_repeated_idempotency_key_once,
    an_opt_in_refused_in_a_batch_fails_alone,
    a_batch_whose_rows_cannot_be_stored_fails_as_a_whole_and_stores_nothing,
    a_batch_of_new_numbers_hands_the_projection_what_a_load_reads,
    a_batch_with_any_other_write_hands_no_delta,
    new_numbers_of_several_businesses_in_one_batch_keep_their_own_chains_and_deltas,
    a_projection_loads_every_subject_of_a_business_across_pages,
    the_writer_installs_a_batch_of_new_numbers_before_acknowledging_it,
);

fn pseudonym(i: u8) -> [u8; 32] {
    [i; 32]
}

/// A subject with this pseudonym, its wrapped key and sealed phone stand-ins
/// made of `tag`.
fn new_subject(
    id: Uuid,
    business_id: Uuid,
    pseudonym: [u8; 32],
    tag: u8,
    now: chrono::DateTime<chrono::Utc>,
) -> NewSubject {
    NewSubject {
        id,
        business_id,
        pseudonym,
        wrapped_key: vec![tag; 8],
        sealed_phone: vec![tag],
        created_at: now,
    }
}

/// An opt-in for utility on the web (evidence stand-in made of `tag`).
fn utility_opt_in(
    business_id: Uuid,
    subject_id: Uuid,
    tag: u8,
    effective_at: chrono::DateTime<chrono::Utc>,
    recorded_at: chrono::DateTime<chrono::Utc>,
) -> NewFact {
    NewFact {
        categories: Some(vec!["utility".into()]),
        channel: Some("web".into()),
        evidence: Some(vec![tag; 16]),
        ..NewFact::new(
            FactKind::OptIn,
            business_id,
            subject_id,
            effective_at,
            recorded_at,
        )
    }
}

/// A write that creates a subject (so a failure has something to roll back) and
/// then fails when `fail` says so, or panics when `panic` does.
async fn subject_write(
    writer: &Writer,
    business_id: Uuid,
    i: u8,
    fail: bool,
    panic: bool,
) -> Result<Option<i64>, StoreError> {
    writer
        .write(business_id, Actor::Operator, move |conn, now| {
            let id = Uuid::now_v7();
            let subject = new_subject(id, business_id, pseudonym(i), i, now);
            rows::insert_subject(conn, &subject)?;
            if panic {
                panic!("a bug in a change");
            }
            if fail {
                return Err(StoreError::Conflict("refused_for_the_test"));
            }
            let event = NewEvent::about(EventType::WindowOpened, id, json!({"i": i}));
            Ok((i, vec![event]))
        })
        .await
        .map(|committed| committed.seq)
}

async fn writes_failing_beside_others_fail_alone_and_leave_no_trace(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    let before = app.audit_events(&biz.id).await.len() as i64;
    let writer = Writer::new(app.store.clone());
    // Queued together: most land in the same batch.
    let results = join_all((0..60u8).map(|i| {
        let writer = &writer;
        async move {
            let result = subject_write(writer, business_id, i, i % 5 == 0, i == 7).await;
            (i, result)
        }
    }))
    .await;
    let mut seqs = Vec::new();
    for (i, result) in &results {
        match (i % 5 == 0, *i == 7, result) {
            (true, _, Err(StoreError::Conflict("refused_for_the_test"))) => {}
            (_, true, Err(StoreError::Internal(_))) => {}
            (false, false, Ok(Some(seq))) => seqs.push(*seq),
            other => panic!("write {i}: unexpected {other:?}"),
        }
    }
    seqs.sort_unstable();
    let expected: Vec<i64> = (before + 1..=before + seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "each good write reached its own next seq");
    let events = app.audit_events(&biz.id).await;
    let all: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        all,
        (1..=before + 47).collect::<Vec<_>>(),
        "contiguous: 47 good writes"
    );
    let report = app.writer.verify_chain(business_id).await.unwrap();
    assert!(report.valid, "the chain verifies: {report:?}");
    let mut conn = app.store.conn().unwrap();
    for i in 0..60u8 {
        let stored = rows::find_subject(&mut conn, business_id, &pseudonym(i))
            .unwrap()
            .is_some();
        assert_eq!(
            stored,
            i % 5 != 0 && i != 7,
            "subject {i}: a failed write's rows are rolled back, a good one's kept"
        );
    }
}

async fn a_write_for_an_unknown_business_fails_alone(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    let writer = Writer::new(app.store.clone());
    let (good, unknown) = futures_util::join!(
        subject_write(&writer, business_id, 1, false, false),
        subject_write(&writer, Uuid::now_v7(), 2, false, false),
    );
    assert!(matches!(good, Ok(Some(_))), "{good:?}");
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
}

async fn writes_of_several_businesses_batch_together_on_their_own_chains(app: TestApp) {
    let a = app.create_business("A", "whatsapp-eu").await;
    let b = app.create_business("B", "whatsapp-eu").await;
    let ids: [Uuid; 2] = [a.id.parse().unwrap(), b.id.parse().unwrap()];
    let writer = Writer::new(app.store.clone());
    let results = join_all((0..40u8).map(|i| {
        let writer = &writer;
        async move { subject_write(writer, ids[usize::from(i % 2)], i, false, false).await }
    }))
    .await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
    for (business, id) in [(&a, ids[0]), (&b, ids[1])] {
        let seqs: Vec<i64> = app
            .audit_events(&business.id)
            .await
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
        let report = app.writer.verify_chain(id).await.unwrap();
        assert!(report.valid, "{report:?}");
    }
}

async fn a_constraint_violation_rolls_back_to_its_savepoint_and_the_batch_commits(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    let writer = Writer::new(app.store.clone());
    // Writes 0..10 all insert the subject of pseudonym 9 except 3..10, which are
    // fresh: the second insert of the same pseudonym breaks a UNIQUE rule (on
    // PostgreSQL an SQL error aborts the whole transaction unless it is rolled
    // back to its savepoint).
    let results = join_all((0..10u8).map(|i| {
        let writer = &writer;
        async move {
            subject_write(
                writer,
                business_id,
                if i < 3 { 99 } else { i },
                false,
                false,
            )
            .await
        }
    }))
    .await;
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict("already_exists"))))
        .count();
    let ok = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    assert_eq!((ok, conflicts), (8, 2), "{results:?}");
    let report = app.writer.verify_chain(business_id).await.unwrap();
    assert!(report.valid, "{report:?}");
}

/// PostgreSQL only (SQLite's queries do not depend on statistics): a database
/// that took many writes gets planner statistics without waiting for autovacuum,
/// which visits a database at most once a minute (`store::statistics`).
#[actix_web::test]
async fn postgresql_gets_planner_statistics_once_the_tables_grew() {
    use diesel::prelude::*;
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await else {
        return;
    };
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    let writer = Writer::new(app.store.clone());
    #[derive(diesel::QueryableByName)]
    struct Analysed {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        analysed: bool,
    }
    let analysed = || {
        let mut conn = app.store.conn().unwrap();
        diesel::sql_query(
            "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL AS analysed \
             FROM pg_stat_user_tables WHERE relname = 'subjects'",
        )
        .get_result::<Analysed>(&mut *conn)
        .unwrap()
        .analysed
    };
    assert!(!analysed(), "a new database has no statistics");
    // Fewer rows than the threshold: no ANALYZE yet.
    for i in 0..10u8 {
        subject_write(&writer, business_id, i, false, false)
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(!analysed(), "10 rows are not worth an ANALYZE");
    // The rows of the threshold (counted as written; the store is told).
    app.store.wrote(consentgate::store::statistics::MIN_ROWS);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !analysed() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tables were analysed within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

// ---- a batch sees its own earlier writes ------------------------------------------

/// Holds the business's writer shard busy with a write that waits until the
/// returned sender is dropped (and then fails alone), so that the writes queued
/// meanwhile are taken as one batch, in the order they were queued.
async fn hold_the_writer(app: &TestApp, business_id: Uuid) -> std::sync::mpsc::Sender<()> {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (started, running) = std::sync::mpsc::channel::<()>();
    let writer = app.writer.clone();
    actix_web::rt::spawn(async move {
        let held = writer
            .write(business_id, Actor::Operator, move |_conn, _now| {
                let _ = started.send(());
                let _ = released.recv_timeout(std::time::Duration::from_secs(30));
                Err::<((), Vec<NewEvent>), _>(StoreError::Conflict("held_for_the_test"))
            })
            .await;
        assert!(matches!(
            held,
            Err(StoreError::Conflict("held_for_the_test"))
        ));
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running.try_recv().is_err() {
        assert!(std::time::Instant::now() < deadline, "the hold started");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    release
}

/// Sends a request in the background once the writes queued before it are in
/// the queue, and waits until it is queued too (so requests queue in the order
/// they are sent).
async fn queue_request(
    app: &TestApp,
    business_id: Uuid,
    path: &'static str,
    token: &str,
    idempotency_key: Option<&str>,
    body: serde_json::Value,
) -> tokio::sync::oneshot::Receiver<(u16, serde_json::Value)> {
    let before = app.writer.waiting(business_id);
    let (answer, answered) = tokio::sync::oneshot::channel();
    let mut request = app
        .client()
        .post(format!("{}{path}", app.address))
        .insert_header(("authorization", format!("Bearer {token}")));
    if let Some(key) = idempotency_key {
        request = request.insert_header(("idempotency-key", key.to_owned()));
    }
    actix_web::rt::spawn(async move {
        let mut res = request.send_json(&body).await.expect("the server answers");
        let bytes = res.body().await.expect("a body");
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let _ = answer.send((res.status().as_u16(), body));
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.writer.waiting(business_id) == before {
        assert!(std::time::Instant::now() < deadline, "the write was queued");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    answered
}

fn web_opt_in(
    phone: &str,
    categories: &[&str],
    collected_at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    json!({
        "phone": phone,
        "categories": categories,
        "channel": "web",
        "evidence": {
            "collected_at": collected_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "consent_text_version": "consent-v3",
            "source_url": "https://shop.example/signup",
        },
    })
}

async fn allowed(app: &TestApp, token: &str, phone: &str, category: &str) -> bool {
    let res = app
        .post(
            "/v1/checks",
            Some(token),
            &json!({"phone": phone, "category": category}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body["allowed"].as_bool().unwrap()
}

async fn answer(
    pending: tokio::sync::oneshot::Receiver<(u16, serde_json::Value)>,
) -> (u16, serde_json::Value) {
    pending.await.expect("the request was answered")
}

async fn one_batch_sees_its_own_earlier_writes(app: TestApp) {
    const X: &str = "+31612345601";
    const Y: &str = "+31612345602";
    const Z: &str = "+31612345603";
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    let before = app.audit_events(&biz.id).await.len();
    let collected = chrono::Utc::now() - chrono::Duration::minutes(1);
    let key = biz.key.as_str();
    let release = hold_the_writer(&app, business_id).await;
    let x1 = queue_request(
        &app,
        business_id,
        "/v1/opt-ins",
        key,
        None,
        web_opt_in(X, &["utility"], collected),
    )
    .await;
    let x2 = queue_request(
        &app,
        business_id,
        "/v1/opt-ins",
        key,
        None,
        web_opt_in(X, &["utility"], collected),
    )
    .await;
    let y = queue_request(
        &app,
        business_id,
        "/v1/opt-ins",
        key,
        None,
        web_opt_in(Y, &["utility"], collected),
    )
    .await;
    let x_stop = queue_request(
        &app,
        business_id,
        "/v1/revocations",
        key,
        None,
        json!({"phone": X, "channel": "web"}),
    )
    .await;
    // A revocation of a new number (a direct write) creates its subject; the
    // opt-in after it in the batch must find that subject, not make another.
    let z_stop = queue_request(
        &app,
        business_id,
        "/v1/revocations",
        key,
        None,
        json!({"phone": Z, "channel": "web"}),
    )
    .await;
    let z = queue_request(
        &app,
        business_id,
        "/v1/opt-ins",
        key,
        None,
        web_opt_in(Z, &["utility"], chrono::Utc::now()),
    )
    .await;
    assert_eq!(
        app.writer.waiting(business_id),
        6,
        "six writes wait for one batch"
    );
    drop(release);
    let (x1, x2, y, x_stop, z_stop, z) = (
        answer(x1).await,
        answer(x2).await,
        answer(y).await,
        answer(x_stop).await,
        answer(z_stop).await,
        answer(z).await,
    );
    for (what, (status, body)) in [
        ("x1", &x1),
        ("x2", &x2),
        ("y", &y),
        ("x stop", &x_stop),
        ("z stop", &z_stop),
        ("z", &z),
    ] {
        assert_eq!(*status, 201, "{what}: {body}");
    }
    assert_eq!(
        x1.1["subject_id"], x2.1["subject_id"],
        "a second opt-in of a new number finds the subject the first made"
    );
    assert_eq!(
        x1.1["subject_id"], x_stop.1["subject_id"],
        "the revocation finds it too"
    );
    assert_ne!(x1.1["subject_id"], y.1["subject_id"]);
    assert_eq!(
        z_stop.1["subject_id"], z.1["subject_id"],
        "an opt-in finds the subject a direct write of its batch made"
    );
    assert!(
        !allowed(&app, key, X, "utility").await,
        "X's consent was revoked in the batch"
    );
    assert!(allowed(&app, key, Y, "utility").await);
    let events = app.audit_events(&biz.id).await;
    assert_eq!(events.len(), before + 6, "one event per write");
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "contiguous"
    );
    let report = app.writer.verify_chain(business_id).await.unwrap();
    assert!(report.valid, "the chain verifies: {report:?}");
}

async fn one_batch_answers_a_repeated_idempotency_key_once(app: TestApp) {
    const X: &str = "+31612345611";
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    let before = app.audit_events(&biz.id).await.len();
    let collected = chrono::Utc::now() - chrono::Duration::minutes(1);
    let body = web_opt_in(X, &["utility"], collected);
    let key = biz.key.as_str();
    let release = hold_the_writer(&app, business_id).await;
    let first = queue_request(
        &app,
        business_id,
        "/v1/opt-ins",
        key,
        Some("k-1"),
        body.clone(),
    )
    .await;
    let retry = queue_request(
        &app,
        business_id,
        "/v1/opt-ins",
        key,
        Some("k-1"),
        body.clone(),
    )
    .await;
    let other = queue_request(
        &app,
        business_id,
        "/v1/opt-ins",
        key,
        Some("k-1"),
        web_opt_in(X, &["marketing"], collected),
    )
    .await;
    // A direct write with the same key after them sees the batch's answer too.
    let revocation = queue_request(
        &app,
        business_id,
        "/v1/revocations",
        key,
        Some("k-1"),
        json!({"phone": X, "channel": "web"}),
    )
    .await;
    drop(release);
    let (first, retry, other, revocation) = (
        answer(first).await,
        answer(retry).await,
        answer(other).await,
        answer(revocation).await,
    );
    assert_eq!(first.0, 201, "{}", first.1);
    assert_eq!(
        retry, first,
        "the retry in the same batch gets the first response"
    );
    assert_eq!(other.0, 409, "{}", other.1);
    assert_eq!(other.1["code"], "idempotency_key_reused");
    assert_eq!(revocation.0, 409, "{}", revocation.1);
    assert_eq!(revocation.1["code"], "idempotency_key_reused");
    let events = app.audit_events(&biz.id).await;
    assert_eq!(events.len(), before + 1, "one write, one event");
    // And after the commit, from the stored record.
    let again = app
        .client()
        .post(format!("{}/v1/opt-ins", app.address))
        .insert_header(("authorization", format!("Bearer {key}")))
        .insert_header(("idempotency-key", "k-1"))
        .send_json(&body)
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(again, first.1);
}

async fn an_opt_in_refused_in_a_batch_fails_alone(app: TestApp) {
    const ERASED: &str = "+31612345621";
    const OTHER: &str = "+31612345622";
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    let key = biz.key.as_str();
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let res = app
        .post(
            "/v1/opt-ins",
            Some(key),
            &web_opt_in(ERASED, &["utility"], long_ago),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let res = app
        .post("/v1/subjects/erase", Some(key), &json!({"phone": ERASED}))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let before = app.audit_events(&biz.id).await.len();
    let release = hold_the_writer(&app, business_id).await;
    let stale = queue_request(
        &app,
        business_id,
        "/v1/opt-ins",
        key,
        None,
        web_opt_in(ERASED, &["utility"], long_ago),
    )
    .await;
    let good = queue_request(
        &app,
        business_id,
        "/v1/opt-ins",
        key,
        None,
        web_opt_in(OTHER, &["utility"], chrono::Utc::now()),
    )
    .await;
    let fresh = queue_request(
        &app,
        business_id,
        "/v1/opt-ins",
        key,
        None,
        web_opt_in(ERASED, &["utility"], chrono::Utc::now()),
    )
    .await;
    drop(release);
    let (stale, good, fresh) = (answer(stale).await, answer(good).await, answer(fresh).await);
    assert_eq!(stale.0, 409, "{}", stale.1);
    assert_eq!(stale.1["code"], "collected_before_erasure");
    assert_eq!(good.0, 201, "{}", good.1);
    assert_eq!(
        fresh.0, 201,
        "consent given after the erasure counts: {}",
        fresh.1
    );
    assert!(allowed(&app, key, OTHER, "utility").await);
    assert!(allowed(&app, key, ERASED, "utility").await);
    let events = app.audit_events(&biz.id).await;
    assert_eq!(events.len(), before + 2, "the refused write left no event");
    let report = app.writer.verify_chain(business_id).await.unwrap();
    assert!(report.valid, "{report:?}");
}

/// The chain head's sequence number of a business, and how many subjects it has.
fn head_and_subjects(app: &TestApp, business_id: Uuid) -> (i64, i64) {
    use diesel::prelude::*;
    #[derive(diesel::QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seq: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        subjects: i64,
    }
    let mut conn = app.store.conn().unwrap();
    let counts: Counts = diesel::sql_query(format!(
        "SELECT (SELECT seq FROM audit_heads WHERE business_id = '{business_id}') AS seq, \
                (SELECT COUNT(*) FROM subjects WHERE business_id = '{business_id}') AS subjects"
    ))
    .get_result(&mut *conn)
    .unwrap();
    (counts.seq, counts.subjects)
}

async fn a_batch_whose_rows_cannot_be_stored_fails_as_a_whole_and_stores_nothing(app: TestApp) {
    use diesel::prelude::*;
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    let (head, subjects) = head_and_subjects(&app, business_id);
    // An event already stored where the batch's second event will go (written
    // straight into the table, past the writer, which nothing in the service
    // does): the batch's rows, stored at its end, collide with it.
    let mut conn = app.store.conn().unwrap();
    diesel::sql_query(format!(
        "INSERT INTO audit_events (business_id, seq, id, at, event_type, actor, subject_id, data, prev_hash, hash) \
         SELECT business_id, seq + 2, id || '-in-the-way', at, event_type, actor, subject_id, data, prev_hash, hash \
         FROM audit_events WHERE business_id = '{business_id}' AND seq = {head}"
    ))
    .execute(&mut *conn)
    .unwrap();
    drop(conn);
    let release = hold_the_writer(&app, business_id).await;
    let first = queue_planned_opt_in(&app, business_id, 1).await;
    let second = queue_planned_opt_in(&app, business_id, 2).await;
    drop(release);
    for pending in [first, second] {
        let answer = pending.await.expect("the write was answered");
        assert!(
            matches!(answer, Err(StoreError::Unavailable(_))),
            "a write of a batch that did not commit is answered Unavailable: {answer:?}"
        );
    }
    assert_eq!(
        head_and_subjects(&app, business_id),
        (head, subjects),
        "the head did not move and neither write's subject was stored"
    );
    // The next write, alone in its batch, takes the free sequence number.
    let alone = planned_opt_in(&app.writer, business_id, 3).await.unwrap();
    assert_eq!(alone.seq, Some(head + 1));
    assert_eq!(
        head_and_subjects(&app, business_id),
        (head + 1, subjects + 1)
    );
}

// ---- what a batch hands the projection ------------------------------------------

/// Queues, in the background, an opt-in-like planned write of number `n` (a
/// pseudonym of its own) on the service's writer, and waits until it is queued.
/// It creates the number's subject when the batch knows none.
async fn queue_planned_opt_in(
    app: &TestApp,
    business_id: Uuid,
    n: u8,
) -> tokio::sync::oneshot::Receiver<Result<Committed<u8>, StoreError>> {
    let before = app.writer.waiting(business_id);
    let writer = app.writer.clone();
    let (answer, answered) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(async move {
        let _ = answer.send(planned_opt_in(&writer, business_id, n).await);
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.writer.waiting(business_id) == before {
        assert!(std::time::Instant::now() < deadline, "the write was queued");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    answered
}

/// An opt-in-like planned write of number `n` on `writer` (see
/// [`queue_planned_opt_in`]), waited for.
async fn planned_opt_in(
    writer: &Writer,
    business_id: Uuid,
    n: u8,
) -> Result<Committed<u8>, StoreError> {
    writer
        .write_planned(
            business_id,
            Actor::Operator,
            None,
            pseudonym(n),
            move |found, now| {
                let (subject_id, subject) = match found.subject {
                    Some(known) => (known.id, None),
                    None => {
                        let id = Uuid::now_v7();
                        (id, Some(new_subject(id, business_id, pseudonym(n), n, now)))
                    }
                };
                let fact = utility_opt_in(
                    business_id,
                    subject_id,
                    n,
                    now - chrono::Duration::minutes(1),
                    now,
                );
                let event = NewEvent::about(
                    EventType::OptInRecorded,
                    subject_id,
                    json!({"opt_in_id": fact.id}),
                );
                let staged = Staged {
                    subject,
                    facts: vec![fact],
                };
                Ok((n, vec![event], staged))
            },
        )
        .await
}

async fn committed<T>(
    pending: tokio::sync::oneshot::Receiver<Result<Committed<T>, StoreError>>,
) -> Committed<T> {
    pending
        .await
        .expect("the write was answered")
        .expect("the write committed")
}

fn whatsapp_eu() -> std::sync::Arc<consentgate::policy::Policy> {
    consentgate::policy::PolicySet::shipped()
        .get("whatsapp-eu")
        .expect("a shipped policy")
}

/// The business's view in a projection loaded from the database now (a node
/// of its own: what a load reads).
async fn loaded_view(
    app: &TestApp,
    business_id: Uuid,
    policy: &std::sync::Arc<consentgate::policy::Policy>,
) -> std::sync::Arc<consentgate::ledger::projection::BusinessView> {
    app.ledger_on(Writer::new(app.store.clone()))
        .projection()
        .fresh(business_id, policy)
        .await
        .unwrap()
}

/// Every decision of the view about these numbers, at `now`.
fn decisions(
    view: &consentgate::ledger::projection::BusinessView,
    numbers: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(u8, String, bool, consentgate::policy::Decision)> {
    let mut out = Vec::new();
    for &n in numbers {
        for category in view.policy().categories() {
            let decision = view.decide(&pseudonym(n), &category, Some(31), now);
            out.push((
                n,
                category.as_str().to_owned(),
                view.contains(&pseudonym(n)),
                decision,
            ));
        }
    }
    out
}

async fn a_batch_of_new_numbers_hands_the_projection_what_a_load_reads(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    let policy = whatsapp_eu();
    // A node's projection, exactly at the head before the batch.
    let ledger = app.ledger_on(app.writer.clone());
    let projection = ledger.projection();
    let view = projection.fresh(business_id, &policy).await.unwrap();
    let from = view.applied();
    let release = hold_the_writer(&app, business_id).await;
    // Numbers 1, 2 and 3, and 2 again (it finds the subject the batch made).
    let mut pending = Vec::new();
    for n in [1, 2, 3, 2] {
        pending.push(queue_planned_opt_in(&app, business_id, n).await);
    }
    drop(release);
    let mut answers = Vec::new();
    for p in pending {
        answers.push(committed(p).await);
    }
    let seqs: Vec<i64> = answers.iter().map(|c| c.seq.unwrap()).collect();
    assert_eq!(
        seqs,
        vec![from + 1, from + 2, from + 3, from + 4],
        "in order"
    );
    let delta = answers[0].delta.clone().expect("new numbers only: a delta");
    for c in &answers {
        let other = c.delta.as_ref().expect("every write of the batch has it");
        assert!(std::sync::Arc::ptr_eq(&delta, other), "one delta per batch");
    }
    assert_eq!((delta.from, delta.to), (from, from + 4));
    let mut facts: Vec<(u8, usize)> = delta
        .histories
        .iter()
        .map(|(p, h)| (p[0], h.facts.len()))
        .collect();
    facts.sort_unstable();
    assert_eq!(
        facts,
        vec![(1, 1), (2, 2), (3, 1)],
        "each number's whole history"
    );

    // Installed, it is what a projection loaded from the database holds.
    projection
        .refresh_to(business_id, &policy, from + 4, Some(&delta))
        .await;
    assert_eq!(view.applied(), from + 4);
    assert_eq!(projection.installed_from_batches(), 1, "no read-back");
    let loaded = loaded_view(&app, business_id, &policy).await;
    assert_eq!(loaded.applied(), from + 4);
    let now = chrono::Utc::now();
    let numbers = [1, 2, 3, 4];
    assert_eq!(
        decisions(&view, &numbers, now),
        decisions(&loaded, &numbers, now)
    );
    assert!(
        decisions(&view, &[1], now).iter().any(|(.., d)| d.allowed),
        "the opt-in is in force"
    );

    // A view that is not exactly at the batch's start catches up instead.
    let behind = app.ledger_on(Writer::new(app.store.clone()));
    let stale_delta = consentgate::writer::Delta {
        from: from + 1,
        to: from + 4,
        histories: Vec::new(),
    };
    let view = behind
        .projection()
        .fresh(business_id, &policy)
        .await
        .unwrap();
    assert_eq!(view.applied(), from + 4);
    behind
        .projection()
        .refresh_to(business_id, &policy, from + 4, Some(&stale_delta))
        .await;
    assert_eq!(behind.projection().installed_from_batches(), 0);
    assert_eq!(
        decisions(&view, &numbers, now),
        decisions(&loaded, &numbers, now)
    );
}

async fn a_batch_with_any_other_write_hands_no_delta(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    // Number 7 is known before the batch.
    let release = hold_the_writer(&app, business_id).await;
    let known = queue_planned_opt_in(&app, business_id, 7).await;
    drop(release);
    assert!(committed(known).await.delta.is_some());

    // A number known before the batch: its history is not all in the batch.
    let release = hold_the_writer(&app, business_id).await;
    let new = queue_planned_opt_in(&app, business_id, 1).await;
    let again = queue_planned_opt_in(&app, business_id, 7).await;
    drop(release);
    let (new, again) = (committed(new).await, committed(again).await);
    assert!(
        new.delta.is_none() && again.delta.is_none(),
        "a known number"
    );

    // A direct write: it may have changed anything.
    let release = hold_the_writer(&app, business_id).await;
    let new = queue_planned_opt_in(&app, business_id, 2).await;
    let before = app.writer.waiting(business_id);
    let writer = app.writer.clone();
    let direct =
        actix_web::rt::spawn(
            async move { subject_write(&writer, business_id, 3, false, false).await },
        );
    while app.writer.waiting(business_id) == before {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    drop(release);
    let new = committed(new).await;
    assert!(matches!(direct.await.unwrap(), Ok(Some(_))));
    assert!(new.delta.is_none(), "a direct write in the batch");

    // The projection still ends up exact (it catches up).
    let policy = whatsapp_eu();
    let view = loaded_view(&app, business_id, &policy).await;
    assert!(view.contains(&pseudonym(2)) && view.contains(&pseudonym(3)));
    let report = app.writer.verify_chain(business_id).await.unwrap();
    assert!(report.valid, "{report:?}");
}

async fn new_numbers_of_several_businesses_in_one_batch_keep_their_own_chains_and_deltas(
    app: TestApp,
) {
    let a = app.create_business("A", "whatsapp-eu").await;
    let a_id: Uuid = a.id.parse().unwrap();
    let policy = whatsapp_eu();
    let ledger = app.ledger_on(app.writer.clone());
    let projection = ledger.projection();
    // Businesses on A's writer shard (all of them on SQLite).
    let mut others = Vec::new();
    for i in 0..12 {
        let b = app.create_business(&format!("B{i}"), "whatsapp-eu").await;
        if app.writer.shard(b.id.parse().unwrap()) == app.writer.shard(a_id) {
            others.push(b);
        }
        if others.len() == 3 {
            break;
        }
    }
    assert!(!others.is_empty(), "some business shares A's shard");
    let mut froms = std::collections::HashMap::new();
    for id in std::iter::once(a_id).chain(others.iter().map(|b| b.id.parse().unwrap())) {
        let view = projection.fresh(id, &policy).await.unwrap();
        froms.insert(id, view.applied());
    }
    let release = hold_the_writer(&app, a_id).await;
    let mut pending = vec![(a_id, queue_planned_opt_in(&app, a_id, 1).await)];
    for (i, b) in others.iter().enumerate() {
        let b_id: Uuid = b.id.parse().unwrap();
        for n in 0..3u8 {
            pending.push((
                b_id,
                queue_planned_opt_in(&app, b_id, 10 * i as u8 + n).await,
            ));
        }
        pending.push((a_id, queue_planned_opt_in(&app, a_id, 100 + i as u8).await));
    }
    drop(release);
    let mut answers = Vec::new();
    for (id, p) in pending {
        answers.push((id, committed(p).await));
    }
    for (id, c) in &answers {
        let delta = c.delta.as_ref().expect("new numbers only");
        assert_eq!(delta.from, froms[id], "the batch started at the head");
        projection
            .refresh_to(*id, &policy, c.seq.unwrap(), Some(delta))
            .await;
    }
    assert_eq!(
        projection.installed_from_batches(),
        froms.len() as u64,
        "one install per business"
    );
    let now = chrono::Utc::now();
    let numbers: Vec<u8> = (0..40).chain(100..104).collect();
    for (id, from) in &froms {
        let business = id.to_string();
        let seqs: Vec<i64> = app
            .audit_events(&business)
            .await
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "contiguous"
        );
        let mine: Vec<i64> = answers
            .iter()
            .filter(|(b, _)| b == id)
            .map(|(_, c)| c.seq.unwrap())
            .collect();
        assert_eq!(
            mine,
            (from + 1..=from + mine.len() as i64).collect::<Vec<_>>(),
            "each business's writes took its next seqs"
        );
        let report = app.writer.verify_chain(*id).await.unwrap();
        assert!(report.valid, "{report:?}");
        let view = projection.fresh(*id, &policy).await.unwrap();
        let fresh = loaded_view(&app, *id, &policy).await;
        assert_eq!(view.applied(), fresh.applied());
        assert_eq!(
            decisions(&view, &numbers, now),
            decisions(&fresh, &numbers, now),
            "business {id}"
        );
    }
}

/// Pseudonym number `i` of `tag`'s numbers (first byte), spread over the index.
fn many_pseudonym(tag: u8, i: u16) -> [u8; 32] {
    let mut p = [tag; 32];
    p[1..3].copy_from_slice(&i.to_be_bytes());
    p
}

/// Records, in one direct write, `count` subjects of `tag` for the business: each
/// with an opt-in for utility, and every third with a revocation after it.
async fn many_subjects(app: &TestApp, business_id: Uuid, tag: u8, count: u16) {
    app.writer
        .write(business_id, Actor::Operator, move |conn, now| {
            let earlier = now - chrono::Duration::minutes(10);
            let mut subjects = Vec::new();
            let mut facts = Vec::new();
            for i in 0..count {
                let id = Uuid::now_v7();
                subjects.push(new_subject(
                    id,
                    business_id,
                    many_pseudonym(tag, i),
                    tag,
                    now,
                ));
                facts.push(utility_opt_in(business_id, id, tag, earlier, now));
                if i % 3 == 0 {
                    facts.push(NewFact::new(
                        FactKind::Revocation,
                        business_id,
                        id,
                        earlier + chrono::Duration::minutes(1),
                        now,
                    ));
                }
            }
            rows::insert_subjects(conn, &subjects)?;
            rows::insert_facts(conn, &facts)?;
            let event = NewEvent::new(EventType::WindowOpened, json!({"subjects": count}));
            Ok(((), vec![event]))
        })
        .await
        .expect("the subjects were written");
}

/// A node loads a business's subjects page by page (2,000 to a page, in id
/// order): every subject of the business is in its view once, with its whole
/// history, and no other business's.
async fn a_projection_loads_every_subject_of_a_business_across_pages(app: TestApp) {
    let acme = app.create_business("Acme", "whatsapp-eu").await;
    let other = app.create_business("Other", "whatsapp-eu").await;
    let (acme_id, other_id): (Uuid, Uuid) = (acme.id.parse().unwrap(), other.id.parse().unwrap());
    // The other business's subjects come between Acme's, in id order too.
    many_subjects(&app, acme_id, 1, 2_600).await;
    many_subjects(&app, other_id, 2, 50).await;
    many_subjects(&app, acme_id, 3, 1_500).await;
    let policy = whatsapp_eu();
    let view = loaded_view(&app, acme_id, &policy).await;
    let now = chrono::Utc::now();
    let utility = policy
        .category("utility")
        .expect("whatsapp-eu defines utility");
    for (tag, count) in [(1u8, 2_600u16), (3, 1_500)] {
        for i in 0..count {
            let p = many_pseudonym(tag, i);
            assert!(view.contains(&p), "subject {tag}/{i} is in the view");
            let allowed = view.decide(&p, &utility, Some(31), now).allowed;
            assert_eq!(allowed, i % 3 != 0, "subject {tag}/{i}: its whole history");
        }
    }
    for i in 0..50 {
        assert!(
            !view.contains(&many_pseudonym(2, i)),
            "another business's subject is not"
        );
    }
}

/// A batch of new numbers is in the projection of the ledger that writes
/// through the writer before any of its writes is acknowledged: the writer
/// installs it from the rows it wrote, before it publishes the batch's head, so
/// no check of the node catches up on (reads back) the node's own opt-ins.
async fn the_writer_installs_a_batch_of_new_numbers_before_acknowledging_it(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id: Uuid = biz.id.parse().unwrap();
    let policy = whatsapp_eu();
    let writer = Writer::new(app.store.clone());
    let ledger = app.ledger_on(writer.clone());
    let projection = ledger.projection();
    let view = projection.fresh(business_id, &policy).await.unwrap();
    let from = view.applied();

    // Straight through the writer: the ledger's write-through does not run.
    let first = planned_opt_in(&writer, business_id, 1).await.unwrap();
    assert_eq!(first.seq, Some(from + 1));
    assert_eq!(view.applied(), from + 1, "in the view when acknowledged");
    let now = chrono::Utc::now();
    assert!(
        decisions(&view, &[1], now).iter().any(|(.., d)| d.allowed),
        "the opt-in is in force"
    );
    let check = projection.fresh(business_id, &policy).await.unwrap();
    assert_eq!(check.applied(), from + 1);
    assert_eq!(
        (projection.installed_from_batches(), projection.catch_ups()),
        (1, 0),
        "installed, nothing read back"
    );

    // A known number: no delta, nothing installed; the next check reads it.
    let again = planned_opt_in(&writer, business_id, 1).await.unwrap();
    assert!(again.delta.is_none());
    assert_eq!(view.applied(), from + 1);
    let check = projection.fresh(business_id, &policy).await.unwrap();
    assert_eq!(check.applied(), from + 2);
    assert_eq!(projection.catch_ups(), 1);

    // A second ledger on the same writer is not handed the batches: its view
    // stays behind until its own write-through or check catches up.
    let second = app.ledger_on(writer.clone());
    let behind = second
        .projection()
        .fresh(business_id, &policy)
        .await
        .unwrap();
    planned_opt_in(&writer, business_id, 2).await.unwrap();
    assert_eq!((view.applied(), behind.applied()), (from + 3, from + 2));
    let loaded = loaded_view(&app, business_id, &policy).await;
    let numbers = [1, 2, 3];
    assert_eq!(
        decisions(&view, &numbers, now),
        decisions(&loaded, &numbers, now),
        "what a load reads"
    );
}
