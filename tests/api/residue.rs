//! What an erasure leaves in the database's own files, and what the receipt says
//! about it (SPEC section 6; README "Erasure: what stays in the files").
//!
//! SQLite: the WAL is checkpointed and truncated after the erasure; a reader that
//! keeps using the WAL delays that, and the receipt says so rather than claiming a
//! clean erasure. PostgreSQL: deleted row versions stay in the files until VACUUM
//! and in WAL and backups, which no query can clear; the receipt says that too.
//! The same bodies run on both backends; what differs is the answer each backend
//! can honestly give.

use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::RunQueryDsl;
use diesel::connection::SimpleConnection;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::backends::{backend, post_idempotent, side_connection, side_sql};
use crate::helpers::{Backend, TestApp};

backend_tests!(
    after_erasure_no_database_file_holds_the_number_in_any_form,
    an_erasure_receipt_says_what_may_remain_in_the_database_files,
    an_erasure_while_a_reader_holds_on_says_what_may_remain_and_erasing_again_retries,
    an_erasure_waits_for_a_short_reader_to_finish,
);

const PHONE: &str = "+31 6 4444 5555";

/// Opts the number in; returns the subject's wrapped data key as stored.
async fn opted_in_subject(app: &TestApp, key: &str) -> Vec<u8> {
    let res = app
        .post(
            "/v1/opt-ins",
            Some(key),
            &json!({"phone": PHONE, "categories": ["utility"], "channel": "api",
                    "evidence": {"collected_at": Utc::now().to_rfc3339(), "consent_text_version": "v1", "source_system": "crm"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let subject_id = res.body["subject_id"].as_str().unwrap().to_owned();
    app.store
        .run(move |conn| {
            use consentgate::store::schema::subjects;
            use diesel::prelude::*;
            Ok(subjects::table
                .filter(subjects::id.eq(subject_id))
                .select(subjects::wrapped_key)
                .first::<Option<Vec<u8>>>(conn)?
                .expect("a live subject has a wrapped key"))
        })
        .await
        .unwrap()
}

async fn erase(app: &TestApp, key: &str) -> Value {
    let res = app
        .post("/v1/subjects/erase", Some(key), &json!({"phone": PHONE}))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
}

/// What the receipt says when nothing got in the cleanup's way.
fn clean_residue(app: &TestApp) -> &'static str {
    match backend(app) {
        Backend::Sqlite => "none",
        Backend::Postgres => "deleted_row_versions",
    }
}

/// Opens a transaction on a side connection and reads from it, so it holds a
/// snapshot: on SQLite a read lock on the WAL, on PostgreSQL an old snapshot
/// (which also keeps VACUUM from removing the deleted row versions).
fn open_reader(app: &TestApp) -> consentgate::store::DbConnection {
    let mut reader = side_connection(app);
    let begin = match backend(app) {
        Backend::Sqlite => "BEGIN",
        Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ",
    };
    reader.batch_execute(begin).unwrap();
    diesel::sql_query("SELECT id FROM subjects")
        .execute(&mut reader)
        .expect("the reader reads");
    reader
}

async fn an_erasure_receipt_says_what_may_remain_in_the_database_files(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let wrapped_key = opted_in_subject(&app, &biz.key).await;
    let body = json!({"phone": PHONE, "request_reference": "DSR-7"});
    let res = post_idempotent(&app, "/v1/subjects/erase", &biz.key, "erase-7", &body).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let receipt = res.body;
    assert_eq!(
        receipt["residue"],
        clean_residue(&app),
        "with no reader in the way: {receipt}"
    );
    let replay = post_idempotent(&app, "/v1/subjects/erase", &biz.key, "erase-7", &body).await;
    assert_eq!(
        replay.header("idempotency-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(
        replay.body, receipt,
        "a replay answers the first receipt, residue included"
    );
    let again = erase(&app, &biz.key).await;
    assert_eq!(
        again["erasure_id"], receipt["erasure_id"],
        "erasing again answers the same receipt"
    );
    assert_eq!(again["residue"], receipt["residue"]);
    if backend(&app) == Backend::Sqlite {
        let raw = crate::privacy::raw_database_text(&app).await;
        assert!(
            !raw.contains(&hex::encode(&wrapped_key)),
            "`none` is true: no file holds the wrapped key"
        );
    }
}

async fn an_erasure_while_a_reader_holds_on_says_what_may_remain_and_erasing_again_retries(
    app: TestApp,
) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let wrapped_key = opted_in_subject(&app, &biz.key).await;
    let mut reader = open_reader(&app);

    let started = Instant::now();
    let receipt = erase(&app, &biz.key).await;
    let waited = started.elapsed();
    let raw_while_held = crate::privacy::raw_database_text(&app).await;
    reader.batch_execute("COMMIT").unwrap();
    drop(reader);

    let check = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": PHONE, "category": "utility"}),
        )
        .await;
    assert_eq!(
        check.body["reason"], "suppressed",
        "the erasure itself committed: {}",
        check.body
    );
    match backend(&app) {
        Backend::Sqlite => {
            assert_eq!(
                receipt["residue"], "write_ahead_log",
                "the WAL could not be truncated under the reader, and the receipt says so: {receipt}"
            );
            assert!(
                waited >= consentgate::store::WAL_SHRED_WAIT,
                "it retried for the whole wait first ({waited:?})"
            );
            assert!(
                raw_while_held.contains(&hex::encode(&wrapped_key)),
                "the warning is real: the WAL still held the wrapped key"
            );
            let again = erase(&app, &biz.key).await;
            assert_eq!(
                again["residue"], "none",
                "with the reader gone, erasing again completes the cleanup: {again}"
            );
            assert_eq!(
                again["erasure_id"], receipt["erasure_id"],
                "the same erasure"
            );
            let raw = crate::privacy::raw_database_text(&app).await;
            assert!(
                !raw.contains(&hex::encode(&wrapped_key)),
                "and the WAL no longer holds the wrapped key"
            );
        }
        Backend::Postgres => {
            assert_eq!(
                receipt["residue"], "deleted_row_versions",
                "PostgreSQL says what it cannot clear: {receipt}"
            );
            assert!(
                waited < consentgate::store::WAL_SHRED_WAIT,
                "an old snapshot does not hold the erasure up ({waited:?})"
            );
        }
    }
}

async fn an_erasure_waits_for_a_short_reader_to_finish(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let wrapped_key = opted_in_subject(&app, &biz.key).await;
    let mut reader = open_reader(&app);
    let hold = Duration::from_millis(800);
    let started = Instant::now();
    let finished = std::thread::spawn(move || {
        std::thread::sleep(hold);
        reader.batch_execute("COMMIT").unwrap();
    });

    let receipt = erase(&app, &biz.key).await;
    let waited = started.elapsed();
    finished.join().unwrap();

    assert_eq!(
        receipt["residue"],
        clean_residue(&app),
        "the reader finished within the wait: {receipt}"
    );
    if backend(&app) == Backend::Sqlite {
        assert!(
            waited >= hold,
            "the truncation waited for the reader ({waited:?})"
        );
        let raw = crate::privacy::raw_database_text(&app).await;
        assert!(
            !raw.contains(&hex::encode(&wrapped_key)),
            "no file holds the wrapped key"
        );
    }
}

/// Every written form of the number, and the other personal values the test writes.
fn plaintexts() -> Vec<&'static str> {
    vec![
        "+31644445555",
        "31644445555",
        "0031644445555",
        "0644445555",
        "644445555",
        "198.51.100.77",
        "ResidueProbe/2.0",
        "my private message qv7zk2",
    ]
}

/// After erasure no file of the database holds the number in any written form,
/// nor the IP, user agent or message text recorded with it: SQLite's database,
/// WAL and shared-memory files; on PostgreSQL every relation file of the database
/// (tables, TOAST, indexes, catalogs, so dead row versions too) after a
/// CHECKPOINT, and the WAL segments written since the test began, read as
/// superuser. What opens the ciphertext (the wrapped data key and the sealed
/// number): on SQLite in no file; on PostgreSQL in no live row, while dead row
/// versions and WAL may keep it until VACUUM and recycling, as the receipt says.
async fn after_erasure_no_database_file_holds_the_number_in_any_form(app: TestApp) {
    let wal_start = match backend(&app) {
        Backend::Postgres => Some(postgres_wal_lsn(&app)),
        Backend::Sqlite => None,
    };
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let res = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({"phone": PHONE, "categories": ["utility"], "channel": "web",
                    "evidence": {"collected_at": Utc::now().to_rfc3339(), "consent_text_version": "v1",
                                 "source_url": "https://shoes.example/signup", "ip": "198.51.100.77",
                                 "user_agent": "ResidueProbe/2.0"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let subject_id = res.body["subject_id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            "/v1/inbound-messages",
            Some(&biz.key),
            &json!({"phone": "0031644445555", "received_at": Utc::now().to_rfc3339(),
                    "text": "my private message qv7zk2"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let (wrapped_key, sealed_phone) = {
        let id = subject_id.clone();
        app.store
            .run(move |conn| {
                use consentgate::store::schema::subjects;
                use diesel::prelude::*;
                let (wrapped, phone) = subjects::table
                    .filter(subjects::id.eq(id))
                    .select((subjects::wrapped_key, subjects::phone))
                    .first::<(Option<Vec<u8>>, Option<Vec<u8>>)>(conn)?;
                Ok((wrapped.unwrap(), phone.unwrap()))
            })
            .await
            .unwrap()
    };

    let receipt = erase(&app, &biz.key).await;
    assert_eq!(receipt["residue"], clean_residue(&app), "{receipt}");

    // Live rows (PostgreSQL) or the files (SQLite): nothing that opens.
    let raw = crate::privacy::raw_database_text(&app).await;
    assert!(raw.contains(&biz.id), "the scan reads the database");
    for (name, bytes) in [
        ("wrapped data key", &wrapped_key),
        ("sealed number", &sealed_phone),
    ] {
        assert!(
            !raw.contains(&hex::encode(bytes)),
            "the {name} is gone from the database"
        );
    }
    for text in plaintexts() {
        assert!(!raw.contains(text), "{text} is not stored");
    }

    if let Some(wal_start) = wal_start {
        let mut needles: Vec<Vec<u8>> =
            plaintexts().iter().map(|t| t.as_bytes().to_vec()).collect();
        needles.push(subject_id.as_bytes().to_vec());
        let sanity = needles.len() - 1;
        // The WAL first: a CHECKPOINT may recycle the segments it no longer needs.
        let in_wal = postgres_wal_holding(&app, &wal_start, &needles);
        side_sql(&app, "CHECKPOINT");
        let in_files = postgres_relations_holding(&app, &needles);
        for (found, place) in [(&in_wal, "WAL segment"), (&in_files, "relation file")] {
            assert!(
                found.iter().any(|(needle, _)| *needle == sanity),
                "the {place} scan sees what was written (the subject id)"
            );
            let leaks: Vec<(&str, &String)> = found
                .iter()
                .filter(|(needle, _)| *needle != sanity)
                .map(|(needle, file)| (plaintexts()[*needle], file))
                .collect();
            assert!(leaks.is_empty(), "plaintext in a {place}: {leaks:?}");
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    text: String,
}

#[derive(diesel::QueryableByName)]
struct Found {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    needle: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    file: String,
}

fn postgres_wal_lsn(app: &TestApp) -> String {
    let rows: Vec<Text> = diesel::sql_query("SELECT pg_current_wal_lsn()::text AS text")
        .load(&mut side_connection(app))
        .unwrap();
    rows[0].text.clone()
}

/// `ARRAY[...]::bytea[]` of the needles, for searching files server-side.
fn bytea_array(needles: &[Vec<u8>]) -> String {
    let items: Vec<String> = needles
        .iter()
        .map(|n| format!("decode('{}', 'hex')", hex::encode(n)))
        .collect();
    format!("ARRAY[{}]::bytea[]", items.join(", "))
}

/// Which needles (by index) each relation file of this database holds: every
/// relation with storage (tables, TOAST, indexes, catalogs), read as superuser.
fn postgres_relations_holding(app: &TestApp, needles: &[Vec<u8>]) -> Vec<(usize, String)> {
    let sql = format!(
        "SELECT (n.i - 1)::bigint AS needle, c.relname::text AS file \
         FROM pg_class c, unnest({}) WITH ORDINALITY AS n(bytes, i) \
         WHERE pg_relation_filepath(c.oid) IS NOT NULL \
           AND position(n.bytes IN pg_read_binary_file(pg_relation_filepath(c.oid), 0, 104857600, true)) > 0",
        bytea_array(needles)
    );
    let found: Vec<Found> = diesel::sql_query(sql)
        .load(&mut side_connection(app))
        .unwrap();
    found
        .into_iter()
        .map(|f| (f.needle as usize, f.file))
        .collect()
}

/// Which needles each WAL segment written since `start` holds (segments already
/// recycled by a checkpoint are gone and cannot be read).
fn postgres_wal_holding(app: &TestApp, start: &str, needles: &[Vec<u8>]) -> Vec<(usize, String)> {
    let sql = format!(
        "SELECT (n.i - 1)::bigint AS needle, w.name::text AS file \
         FROM pg_ls_waldir() w, unnest({}) WITH ORDINALITY AS n(bytes, i) \
         WHERE length(w.name) = 24 \
           AND w.name >= pg_walfile_name('{start}') \
           AND w.name <= pg_walfile_name(pg_current_wal_lsn()) \
           AND position(n.bytes IN pg_read_binary_file('pg_wal/' || w.name, 0, 104857600, true)) > 0",
        bytea_array(needles)
    );
    let found: Vec<Found> = diesel::sql_query(sql)
        .load(&mut side_connection(app))
        .unwrap();
    found
        .into_iter()
        .map(|f| (f.needle as usize, f.file))
        .collect()
}
