//! The group-commit writer (`consentgate::writer`): writes queued together commit
//! together, each in its own savepoint, so one bad write fails alone with its own
//! error and leaves no trace, and the chain stays contiguous and verifiable.

use consentgate::audit::{EventType, NewEvent};
use consentgate::domain::Actor;
use consentgate::store::StoreError;
use consentgate::store::ledger::{self as rows, NewSubject};
use consentgate::writer::Writer;
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
);

fn pseudonym(i: u8) -> [u8; 32] {
    [i; 32]
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
            let subject = NewSubject {
                id,
                business_id,
                pseudonym: pseudonym(i),
                wrapped_key: vec![i; 8],
                sealed_phone: vec![i],
                created_at: now,
            };
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
    let report = app.store.verify_chain(business_id).await.unwrap();
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
        let report = app.store.verify_chain(id).await.unwrap();
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
    let report = app.store.verify_chain(business_id).await.unwrap();
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
