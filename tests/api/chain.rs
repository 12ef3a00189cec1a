//! The audit chain: every privileged action appends its event in the same
//! transaction; concurrent writers never fork the chain or leave a gap.

use std::sync::Arc;

use consentgate::domain::{Actor, Scope, Scopes};
use consentgate::store::keys::NewApiKey;
use futures_util::future::join_all;
use uuid::Uuid;

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    business_and_key_actions_are_chained_in_order,
    concurrent_http_writers_leave_a_contiguous_chain,
    many_threads_appending_never_fork_or_gap_the_chain,
    chains_are_per_business,
);

async fn business_and_key_actions_are_chained_in_order(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (id, _) = app.create_key(&biz.key, "k", &["checks:read"]).await;
    app.delete(&format!("/v1/keys/{id}"), Some(&biz.key)).await;
    let events = app.audit_events(&biz.id).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "business.created",
            "key.created",
            "key.created",
            "key.revoked"
        ]
    );
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(events[0].actor, "operator");
    assert_eq!(events[2].actor, format!("key:{}", biz.key_id));
    assert!(events[3].data.contains(&id));
    for pair in events.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "each event links to the one before"
        );
    }
    let report = app
        .writer
        .verify_chain(Uuid::parse_str(&biz.id).unwrap())
        .await
        .unwrap();
    assert!(report.valid);
    assert_eq!(report.checked, 4);
    assert_eq!(report.head.unwrap().0, 4);
}

async fn concurrent_http_writers_leave_a_contiguous_chain(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let creates = (0..24).map(|i| {
        let app = &app;
        let key = biz.key.clone();
        async move {
            app.post(
                "/v1/keys",
                Some(&key),
                &serde_json::json!({"name": format!("k{i}"), "scopes": ["checks:read"]}),
            )
            .await
        }
    });
    for res in join_all(creates).await {
        assert_eq!(res.status, 201, "{}", res.body);
    }
    let events = app.audit_events(&biz.id).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=26).collect::<Vec<_>>());
    let report = app
        .writer
        .verify_chain(Uuid::parse_str(&biz.id).unwrap())
        .await
        .unwrap();
    assert!(report.valid, "{report:?}");
}

/// Eight OS threads append through the unbatched write path at once; the chain
/// must come out contiguous and verifiable, with one event per write.
async fn many_threads_appending_never_fork_or_gap_the_chain(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let business_id = Uuid::parse_str(&biz.id).unwrap();
    // One key hash reused: this test is about the chain, not key secrets.
    let hash: Arc<str> = consentgate::ledger::keys::mint_key(
        &consentgate::crypto::api_key::SecretHasher::derive(
            &consentgate::crypto::master_key::MasterKey::generate(),
        ),
        business_id,
        "x".into(),
        Scopes::all(),
    )
    .0
    .secret_hash
    .into();
    let writer = app.writer.clone();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let writer = writer.clone();
            let hash = hash.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let key = NewApiKey {
                        id: Uuid::now_v7(),
                        business_id,
                        name: format!("t{t}-{i}"),
                        scopes: Scopes::new([Scope::ChecksRead]).unwrap(),
                        secret_hash: hash.to_string(),
                        created_at: consentgate::domain::time::now(),
                    };
                    let mut conn = writer.store().conn().unwrap();
                    writer
                        .create_key_blocking(&mut conn, &key, Actor::Cli)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    let events = app.audit_events(&biz.id).await;
    assert_eq!(events.len(), 2 + 8 * 25);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "no gap, no duplicate");
    }
    let report = app.writer.verify_chain(business_id).await.unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.checked, 202);
}

async fn chains_are_per_business(app: TestApp) {
    let a = app.create_business("A", "whatsapp-eu").await;
    let b = app.create_business("B", "sms-us").await;
    app.create_key(&a.key, "k", &["checks:read"]).await;
    let a_events = app.audit_events(&a.id).await;
    let b_events = app.audit_events(&b.id).await;
    assert_eq!(a_events.len(), 3);
    assert_eq!(b_events.len(), 2);
    assert_eq!(b_events[0].seq, 1, "each business's chain starts at 1");
    assert!(b_events.iter().all(|e| e.business_id.to_string() == b.id));
}
