//! Several nodes on one PostgreSQL answer checks from memory under a lease
//! (`store::lease`): no head read per check, and still no stale allow, because a
//! withdrawal is acknowledged only once every leased node knows it, or once the
//! lease of a node that did not answer has been fenced and has run out.

use std::time::{Duration, Instant};

use consentgate::startup::Application;
use consentgate::store::Store;
use consentgate::store::lease;
use serde_json::{Value, json};

use crate::backends::side_sql;
use crate::helpers::{Backend, TestApp, spawn_app};

/// Another node on the same database: its address and its store.
async fn node(app: &TestApp) -> (String, Store) {
    let mut settings = app.settings.clone();
    settings.bind = "127.0.0.1:0".parse().unwrap();
    let node = Application::build(settings)
        .await
        .expect("a second node builds on the same database");
    let address = format!("http://127.0.0.1:{}", node.port());
    let store = node.store().clone();
    actix_web::rt::spawn(node.run_until_stopped());
    (address, store)
}

async fn check_on(address: &str, key: &str, phone: &str) -> Value {
    let mut res = awc::Client::default()
        .post(format!("{address}/v1/checks"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .send_json(&json!({"phone": phone, "category": "utility"}))
        .await
        .expect("the node answers");
    assert_eq!(res.status().as_u16(), 200);
    res.json::<Value>().await.unwrap()
}

async fn opt_in(app: &TestApp, key: &str, phone: &str) {
    let res = app
        .post(
            "/v1/opt-ins",
            Some(key),
            &json!({"phone": phone, "categories": ["utility"], "channel": "web",
                    "evidence": {"collected_at": "2026-01-01T00:00:00Z",
                                 "consent_text_version": "v1",
                                 "source_url": "https://shop.example/signup"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
}

async fn revoke(app: &TestApp, key: &str, phone: &str) {
    let res = app
        .post(
            "/v1/revocations",
            Some(key),
            &json!({"phone": phone, "channel": "app"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
}

/// Waits until `store`'s lease is trusted (it is taken once the node answered a
/// check).
async fn leased(store: &Store) {
    let started = Instant::now();
    while !store.lease().trusted() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the node never took its lease"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn a_leased_node_reads_no_head_per_check_and_still_honours_a_revocation_through_another_node()
{
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let (other, store) = node(&app).await;
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = "+31620000001";
    opt_in(&app, &biz.key, phone).await;
    // A node takes its lease once it answers checks; the first check of the
    // business under the lease reads its head once.
    assert_eq!(check_on(&other, &biz.key, phone).await["allowed"], true);
    leased(&store).await;
    assert_eq!(check_on(&other, &biz.key, phone).await["allowed"], true);
    let reads = store.lease().reads();
    for _ in 0..20 {
        assert_eq!(check_on(&other, &biz.key, phone).await["allowed"], true);
    }
    assert_eq!(
        store.lease().reads(),
        reads,
        "checks under a lease answer from memory, no head read"
    );

    revoke(&app, &biz.key, phone).await;
    let answer = check_on(&other, &biz.key, phone).await;
    assert_eq!(
        (answer["allowed"].as_bool(), answer["reason"].as_str()),
        (Some(false), Some("revoked")),
        "the very next check on the other node: {answer}"
    );
    assert_eq!(
        store.lease().reads(),
        reads,
        "the revocation reached the other node before it was acknowledged, not through a read"
    );
}

/// The `fenced` flag of each node row, by id.
async fn fenced_flags(app: &TestApp) -> Vec<(String, bool)> {
    app.store
        .run(|conn| {
            use diesel::prelude::*;
            #[derive(QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::Text)]
                node_id: String,
                #[diesel(sql_type = diesel::sql_types::Bool)]
                fenced: bool,
            }
            Ok(diesel::sql_query(
                "SELECT node_id, fenced FROM consentgate_nodes \
                 WHERE node_id IN ('silent', 'gone') ORDER BY node_id",
            )
            .load::<Row>(conn)?
            .into_iter()
            .map(|r| (r.node_id, r.fenced))
            .collect())
        })
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_node_that_does_not_answer_is_fenced_and_its_lease_waited_out_before_the_acknowledgement()
{
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = "+31620000002";
    opt_in(&app, &biz.key, phone).await;
    // A node that holds a lease for two more seconds but listens to nobody (hung,
    // or cut off from PostgreSQL's notifications), and one whose lease ran out.
    side_sql(
        &app,
        "INSERT INTO consentgate_nodes (node_id, lease_until, fenced) VALUES \
         ('silent', (EXTRACT(EPOCH FROM now()) * 1000000)::bigint + 2000000, FALSE), \
         ('gone', (EXTRACT(EPOCH FROM now()) * 1000000)::bigint - 1000000, FALSE)",
    );
    let started = Instant::now();
    revoke(&app, &biz.key, phone).await;
    let took = started.elapsed();
    assert!(
        took >= lease::ACK_TIMEOUT + Duration::from_millis(500),
        "the revocation waited for the silent node's lease to run out: {took:?}"
    );
    assert_eq!(
        fenced_flags(&app).await,
        vec![("gone".to_owned(), false), ("silent".to_owned(), true)],
        "the silent node can no longer renew; the one whose lease had run out was not waited for"
    );
}

#[actix_web::test]
async fn a_fenced_node_forgets_the_heads_it_knew_and_reads_them_again() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let (other, store) = node(&app).await;
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = "+31620000004";
    opt_in(&app, &biz.key, phone).await;
    check_on(&other, &biz.key, phone).await;
    leased(&store).await;
    check_on(&other, &biz.key, phone).await;
    let reads = store.lease().reads();
    check_on(&other, &biz.key, phone).await;
    assert_eq!(store.lease().reads(), reads, "known: no read");

    // Another node fenced it (it did not answer in time).
    side_sql(
        &app,
        &format!(
            "UPDATE consentgate_nodes SET fenced = TRUE WHERE node_id = '{}'",
            store.node_id()
        ),
    );
    tokio::time::sleep(lease::RENEW_EVERY * 3).await;
    leased(&store).await;
    assert_eq!(check_on(&other, &biz.key, phone).await["allowed"], true);
    assert_eq!(
        store.lease().reads(),
        reads + 1,
        "a new lease starts knowing nothing: the head is read again"
    );
}
