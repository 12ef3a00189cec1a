//! The audit log as an auditor meets it (SPEC sections 5 and 7): tampering with
//! the stored chain "behind the service's back" (raw SQL as a database owner, the
//! append-only triggers disabled) is found by `GET /v1/audit/verify` at the exact
//! first bad sequence number; the events API pages and filters; only `audit:read`
//! keys of the business read its log; the export re-verifies offline from the
//! documented encoding alone; checkpoints verify with the published key.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use consentgate::domain::{Actor, Scope, Scopes};
use consentgate::store::DatabaseUrl;
use consentgate::store::keys::NewApiKey;
use diesel::RunQueryDsl;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{BusinessFixture, TestApp};
use crate::{backend_test_with, backend_tests};

backend_tests!(
    verify_detects_a_changed_field_in_every_hashed_column,
    verify_detects_a_deleted_middle_event,
    verify_detects_a_deleted_last_event_by_the_checkpoint,
    verify_detects_an_inserted_event,
    verify_detects_two_swapped_events,
    verify_detects_a_chain_rebuilt_with_recomputed_hashes_by_the_checkpoint,
    the_database_refuses_updates_and_deletes_of_audit_events,
    events_are_paged_by_cursor_and_filtered,
    only_audit_read_keys_of_the_business_read_its_log,
    the_export_reverifies_offline_from_its_lines_alone,
    checkpoints_verify_with_the_published_key_and_documented_message,
    a_query_value_that_does_not_parse_is_named_in_the_error,
);
backend_test_with!(checkpoints_are_made_every_n_events, |s| s
    .checkpoint_every_events =
    3);
backend_test_with!(
    checkpoints_of_batched_writes_are_stored_by_a_later_batch,
    |s| s.checkpoint_every_events = 4
);
backend_test_with!(
    checkpoints_are_made_periodically_for_chains_that_moved,
    |s| s.checkpoint_interval_secs = 1
);

const SOURCE_URL: &str = "https://acme.example/signup?campaign=audit-probe";

/// Every scope but `audit:read`.
const NOT_AUDIT_SCOPES: [&str; 4] = [
    "consents:write",
    "checks:read",
    "subjects:manage",
    "keys:manage",
];

// ---- arranging ----------------------------------------------------------------------------

/// POST /v1/opt-ins with web evidence; panics unless 201. Returns the body.
async fn opt_in(app: &TestApp, key: &str, phone: &str) -> Value {
    let collected_at = (Utc::now() - Duration::minutes(1)).to_rfc3339();
    let res = app
        .post(
            "/v1/opt-ins",
            Some(key),
            &json!({
                "phone": phone,
                "categories": ["utility"],
                "channel": "web",
                "evidence": {"collected_at": collected_at, "consent_text_version": "v1",
                             "source_url": SOURCE_URL},
            }),
        )
        .await;
    assert_eq!(res.status, 201, "the opt-in is recorded: {}", res.body);
    res.body
}

/// A business with six events: business.created (1), key.created (2), an opt-in
/// (3, with a subject), key.created (4), an opt-in (5), key.created (6).
async fn business_with_six_events(app: &TestApp, name: &str) -> BusinessFixture {
    let biz = app.create_business(name, "whatsapp-eu").await;
    opt_in(app, &biz.key, "+31612345670").await;
    app.create_key(&biz.key, "k4", &["checks:read"]).await;
    opt_in(app, &biz.key, "+31612345671").await;
    app.create_key(&biz.key, "k6", &["checks:read"]).await;
    let events = app.audit_events(&biz.id).await;
    let arranged: Vec<(i64, &str)> = events
        .iter()
        .map(|e| (e.seq, e.event_type.as_str()))
        .collect();
    assert_eq!(
        arranged,
        [
            (1, "business.created"),
            (2, "key.created"),
            (3, "opt_in.recorded"),
            (4, "key.created"),
            (5, "opt_in.recorded"),
            (6, "key.created"),
        ],
        "the arranged chain of {name}"
    );
    let report = verify(app, &biz.key).await;
    assert_eq!(
        (&report["valid"], &report["checked"]),
        (&json!(true), &json!(6)),
        "{name} verifies before anyone touches it: {report}"
    );
    biz
}

// ---- talking to the service ---------------------------------------------------------------

/// GET /v1/audit/verify; panics unless 200.
async fn verify(app: &TestApp, key: &str) -> Value {
    let res = app.get("/v1/audit/verify", Some(key)).await;
    assert_eq!(res.status, 200, "verify answers: {}", res.body);
    res.body
}

/// Asserts a verify report says invalid, naming `seq` as the first bad one.
#[track_caller]
fn assert_invalid_at(report: &Value, seq: i64, what: &str) {
    assert_eq!(
        report["valid"], false,
        "{what}: verify must say the chain is invalid: {report}"
    );
    assert_eq!(
        report["first_invalid_seq"], seq,
        "{what}: verify must name seq {seq} as the first invalid one: {report}"
    );
}

/// GET /v1/audit/events with a query string; panics unless 200.
async fn events_page(app: &TestApp, key: &str, query: &str) -> Value {
    let res = app
        .get(&format!("/v1/audit/events?{query}"), Some(key))
        .await;
    assert_eq!(res.status, 200, "GET events?{query}: {}", res.body);
    res.body
}

/// The `seq` of every event on a page.
fn seqs(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("a page has an events array: {page}"))
        .iter()
        .map(|e| e["seq"].as_i64().expect("an event has a numeric seq"))
        .collect()
}

/// GET /v1/audit/export as raw text (NDJSON is not one JSON document):
/// `(status, content type, body)`.
async fn export_raw(app: &TestApp, key: &str, query: &str) -> (u16, String, String) {
    let mut res = app
        .client()
        .get(format!("{}/v1/audit/export?{query}", app.address))
        .insert_header(("authorization", format!("Bearer {key}")))
        .send()
        .await
        .expect("the export request reaches the server");
    let body = res
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .expect("the export body arrives whole");
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        res.status().as_u16(),
        content_type,
        String::from_utf8(body.to_vec()).expect("the export is UTF-8"),
    )
}

/// The export's lines, each parsed on its own; panics unless 200 NDJSON.
async fn export_lines(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let (status, content_type, text) = export_raw(app, key, query).await;
    assert_eq!(status, 200, "GET export?{query}: {text}");
    assert!(
        content_type.starts_with("application/x-ndjson"),
        "the export is NDJSON, not {content_type:?}"
    );
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "every export line ends with a newline"
    );
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("an export line is one JSON object ({e}): {line}"))
        })
        .collect()
}

// ---- the documented encoding, re-implemented here -------------------------------------------

/// Each part as a 4-byte big-endian length and its bytes (the encoding of both the
/// event hash and the checkpoint message).
fn length_prefixed(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn text<'a>(line: &'a Value, field: &str) -> &'a str {
    line[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string in {line}"))
}

fn unhex(line: &Value, field: &str) -> Vec<u8> {
    hex::decode(text(line, field)).unwrap_or_else(|e| panic!("{field} is hex ({e}) in {line}"))
}

/// `SHA-256(prev_hash || canonical)`, from an export line's fields and the given
/// `prev_hash`, exactly as src/crypto/chain.rs documents it.
fn documented_hash(prev_hash: &[u8], line: &Value) -> [u8; 32] {
    let seq = line["seq"].as_i64().expect("seq is a number").to_string();
    let subject = line["subject_id"].as_str().unwrap_or("");
    let canonical = length_prefixed(&[
        "consentgate/audit/v1",
        text(line, "business_id"),
        &seq,
        text(line, "id"),
        text(line, "at"),
        text(line, "type"),
        text(line, "actor"),
        subject,
        text(line, "data"),
    ]);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(&canonical);
    hasher.finalize().into()
}

/// Re-verifies export lines on their own: contiguous seqs, each `prev_hash` the
/// previous line's `hash` (the first line's is taken as given), each `hash`
/// recomputed. Err names the first line that does not fit.
fn reverify_offline(lines: &[Value]) -> Result<(), String> {
    let Some(first) = lines.first() else {
        return Ok(());
    };
    let mut prev = unhex(first, "prev_hash");
    let first_seq = first["seq"].as_i64().expect("seq is a number");
    for (expected_seq, line) in (first_seq..).zip(lines) {
        let seq = line["seq"].as_i64().expect("seq is a number");
        if seq != expected_seq {
            return Err(format!("seq {seq} where {expected_seq} was due"));
        }
        if unhex(line, "prev_hash") != prev {
            return Err(format!("seq {seq}: prev_hash is not the previous hash"));
        }
        let recomputed = documented_hash(&prev, line);
        if unhex(line, "hash") != recomputed {
            return Err(format!("seq {seq}: the hash does not recompute"));
        }
        prev = recomputed.to_vec();
    }
    Ok(())
}

// ---- raw SQL behind the service's back -------------------------------------------------------

fn is_postgres(app: &TestApp) -> bool {
    matches!(app.settings.database, DatabaseUrl::Postgres(_))
}

/// A blob literal for this backend.
fn blob(app: &TestApp, bytes: &[u8]) -> String {
    if is_postgres(app) {
        format!("'\\x{}'::bytea", hex::encode(bytes))
    } else {
        format!("X'{}'", hex::encode(bytes))
    }
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The stored timestamp form (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC) of an RFC 3339 `at`.
fn stored_at(at: &DateTime<Utc>) -> String {
    at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn parse_at(line: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text(line, "at"))
        .expect("at is RFC 3339")
        .with_timezone(&Utc)
}

/// Runs statements on the service's own database, in order: Err with the first
/// statement that failed and why.
async fn try_sql(app: &TestApp, statements: Vec<String>) -> Result<(), String> {
    app.store
        .run(move |conn| {
            for statement in &statements {
                if let Err(e) = diesel::sql_query(statement).execute(conn) {
                    return Ok(Err(format!("{statement}: {e}")));
                }
            }
            Ok(Ok(()))
        })
        .await
        .expect("a pooled connection")
}

/// Runs statements; panics if one fails.
async fn sql(app: &TestApp, statements: Vec<String>) {
    if let Err(e) = try_sql(app, statements).await {
        panic!("the tampering SQL runs: {e}");
    }
}

/// Disables the append-only triggers, as a database owner can.
async fn disable_append_only(app: &TestApp) {
    let statements = if is_postgres(app) {
        vec!["ALTER TABLE audit_events DISABLE TRIGGER USER".to_owned()]
    } else {
        vec![
            "DROP TRIGGER audit_events_no_update".to_owned(),
            "DROP TRIGGER audit_events_no_delete".to_owned(),
        ]
    };
    sql(app, statements).await;
}

/// `UPDATE audit_events SET <set> WHERE` the business's event `seq`.
fn update_event(biz: &BusinessFixture, seq: i64, set: &str) -> String {
    format!(
        "UPDATE audit_events SET {set} WHERE business_id = '{}' AND seq = {seq}",
        biz.id
    )
}

/// Moves the service's record of the chain head.
fn move_head(app: &TestApp, biz: &BusinessFixture, seq: i64, hash: &[u8]) -> String {
    format!(
        "UPDATE audit_heads SET seq = {seq}, hash = {} WHERE business_id = '{}'",
        blob(app, hash),
        biz.id
    )
}

// ---- tampering is detected ------------------------------------------------------------------

async fn verify_detects_a_changed_field_in_every_hashed_column(app: TestApp) {
    let untouched = business_with_six_events(&app, "Untouched").await;
    // Where the event moved to another business lands (its chain is seqs 1, 2).
    let receiver = app.create_business("Receiver", "whatsapp-eu").await;
    let mut cases = Vec::new();
    for column in [
        "business_id",
        "id",
        "at",
        "event_type",
        "actor",
        "subject_id",
        "data",
        "prev_hash",
        "hash",
    ] {
        let biz = business_with_six_events(&app, &format!("Tampered {column}")).await;
        let lines = export_lines(&app, &biz.key, "").await;
        let third = &lines[2];
        assert_eq!(third["seq"], 3, "{column}: the export starts at seq 1");
        // The smallest change each column allows: one microsecond, one byte of
        // insignificant JSON whitespace, another UUID.
        let set = match column {
            "business_id" => format!("business_id = '{}'", receiver.id),
            "id" => format!("id = '{}'", Uuid::now_v7()),
            "at" => format!(
                "at = '{}'",
                stored_at(&(parse_at(third) + Duration::microseconds(1)))
            ),
            "event_type" => "event_type = 'opt_in.confirmed'".to_owned(),
            "actor" => "actor = 'operator'".to_owned(),
            "subject_id" => format!("subject_id = '{}'", Uuid::now_v7()),
            "data" => "data = data || ' '".to_owned(),
            "prev_hash" => format!("prev_hash = {}", blob(&app, &[0xab; 32])),
            "hash" => format!("hash = {}", blob(&app, &[0xab; 32])),
            _ => unreachable!(),
        };
        cases.push((column, biz, set));
    }
    disable_append_only(&app).await;

    for (_, biz, set) in &cases {
        sql(&app, vec![update_event(biz, 3, set)]).await;
    }

    for (column, biz, _) in &cases {
        let report = verify(&app, &biz.key).await;
        assert_invalid_at(&report, 3, &format!("a changed {column} on seq 3"));
        assert_eq!(
            report["checked"], 2,
            "{column}: only seqs 1 and 2 are proven: {report}"
        );
    }
    let report = verify(&app, &receiver.key).await;
    assert_invalid_at(&report, 3, "an event moved in from another business");
    let report = verify(&app, &untouched.key).await;
    assert_eq!(
        report["valid"], true,
        "a business nobody touched still verifies in the same database: {report}"
    );
    assert_eq!(report["checked"], 6, "all six events checked: {report}");
}

async fn verify_detects_a_deleted_middle_event(app: TestApp) {
    let biz = business_with_six_events(&app, "Acme").await;
    disable_append_only(&app).await;

    sql(
        &app,
        vec![format!(
            "DELETE FROM audit_events WHERE business_id = '{}' AND seq = 3",
            biz.id
        )],
    )
    .await;

    let report = verify(&app, &biz.key).await;
    assert_invalid_at(&report, 3, "a deleted seq 3");
}

async fn verify_detects_a_deleted_last_event_by_the_checkpoint(app: TestApp) {
    let biz = business_with_six_events(&app, "Acme").await;
    let control = business_with_six_events(&app, "Control").await;
    let res = app
        .post("/v1/audit/checkpoints", Some(&biz.key), &json!({}))
        .await;
    assert_eq!(res.status, 201, "a checkpoint is made: {}", res.body);
    assert_eq!(res.body["seq"], 6, "the checkpoint is of the head");
    disable_append_only(&app).await;

    // Cut the last event and move the head record back onto seq 5, so the head no
    // longer says a seq 6 existed.
    for b in [&biz, &control] {
        let fifth = &export_lines(&app, &b.key, "").await[4];
        sql(
            &app,
            vec![
                format!(
                    "DELETE FROM audit_events WHERE business_id = '{}' AND seq = 6",
                    b.id
                ),
                move_head(&app, b, 5, &unhex(fifth, "hash")),
            ],
        )
        .await;
    }

    let report = verify(&app, &biz.key).await;
    assert_invalid_at(&report, 6, "a cut-off last event under a checkpoint");
    assert!(
        report["checkpoints_checked"].as_i64() >= Some(1),
        "the checkpoint is what found it: {report}"
    );
    // Why the checkpoint is needed: what is left (seqs 1 to 5, the head record
    // on 5) is a perfectly consistent chain; nothing in the database says a seq 6
    // ever existed. Only a signed checkpoint of seq 6 (made before the cut, and
    // kept by an auditor) proves it. The control business had none, and its cut
    // goes unnoticed: that is the window periodic checkpoints keep short.
    let report = verify(&app, &control.key).await;
    assert_eq!(
        report["valid"], true,
        "without a checkpoint a cleanly cut tail is consistent (the tamper itself is clean): {report}"
    );
    assert_eq!(report["head"]["seq"], 5, "{report}");
}

async fn verify_detects_an_inserted_event(app: TestApp) {
    let biz = business_with_six_events(&app, "Acme").await;
    let lines = export_lines(&app, &biz.key, "").await;
    let third = &lines[2];
    // A forged event that fits right after seq 3: linked to seq 3's hash, its own
    // hash computed correctly.
    let mut forged = json!({
        "business_id": biz.id,
        "seq": 4,
        "id": Uuid::now_v7().to_string(),
        "at": text(third, "at"),
        "type": "key.created",
        "actor": "operator",
        "subject_id": null,
        "data": r#"{"forged":true}"#,
        "prev_hash": text(third, "hash"),
    });
    let forged_hash = documented_hash(&unhex(third, "hash"), &forged);
    forged["hash"] = json!(hex::encode(forged_hash));
    disable_append_only(&app).await;

    sql(
        &app,
        vec![
            // Two steps, so no intermediate state clashes on the primary key.
            format!(
                "UPDATE audit_events SET seq = seq + 1000 WHERE business_id = '{}' AND seq >= 4",
                biz.id
            ),
            format!(
                "UPDATE audit_events SET seq = seq - 999 WHERE business_id = '{}' AND seq >= 1004",
                biz.id
            ),
            format!(
                "INSERT INTO audit_events (business_id, seq, id, at, event_type, actor, subject_id, data, prev_hash, hash) \
                 VALUES ('{}', 4, '{}', '{}', 'key.created', 'operator', NULL, {}, {}, {})",
                biz.id,
                text(&forged, "id"),
                stored_at(&parse_at(third)),
                quote(text(&forged, "data")),
                blob(&app, &unhex(third, "hash")),
                blob(&app, &forged_hash),
            ),
            move_head(&app, &biz, 7, &unhex(&lines[5], "hash")),
        ],
    )
    .await;

    let report = verify(&app, &biz.key).await;
    assert_invalid_at(&report, 5, "an event inserted at seq 4");
    assert_eq!(
        report["checked"], 4,
        "the forged event itself verifies: {report}"
    );
    assert_eq!(
        report["head"],
        json!({"seq": 4, "hash": hex::encode(forged_hash)}),
        "the last proven event is the forged one"
    );
    let exported = export_lines(&app, &biz.key, "").await;
    assert_eq!(
        exported[3], forged,
        "the forged row reads back exactly as built"
    );
}

async fn verify_detects_two_swapped_events(app: TestApp) {
    let biz = business_with_six_events(&app, "Acme").await;
    disable_append_only(&app).await;

    sql(
        &app,
        vec![
            update_event(&biz, 3, "seq = 1003"),
            update_event(&biz, 4, "seq = 3"),
            update_event(&biz, 1003, "seq = 4"),
        ],
    )
    .await;

    let report = verify(&app, &biz.key).await;
    assert_invalid_at(&report, 3, "seqs 3 and 4 swapped");
}

async fn verify_detects_a_chain_rebuilt_with_recomputed_hashes_by_the_checkpoint(app: TestApp) {
    let biz = business_with_six_events(&app, "Acme").await;
    let res = app
        .post("/v1/audit/checkpoints", Some(&biz.key), &json!({}))
        .await;
    assert_eq!(res.status, 201, "a checkpoint is made: {}", res.body);
    assert_eq!(res.body["seq"], 6, "the checkpoint is of the head");
    let mut lines = export_lines(&app, &biz.key, "").await;
    // Rewrite seq 2's data, then recompute every prev_hash and hash after it, as
    // an attacker who knows the (public) encoding would.
    let mut data: Value = serde_json::from_str(text(&lines[1], "data")).unwrap();
    data["name"] = json!("rewritten");
    lines[1]["data"] = json!(data.to_string());
    let mut prev = unhex(&lines[0], "hash");
    let mut statements = Vec::new();
    for line in &mut lines[1..] {
        let hash = documented_hash(&prev, line);
        line["prev_hash"] = json!(hex::encode(&prev));
        line["hash"] = json!(hex::encode(hash));
        statements.push(update_event(
            &biz,
            line["seq"].as_i64().unwrap(),
            &format!(
                "data = {}, prev_hash = {}, hash = {}",
                quote(text(line, "data")),
                blob(&app, &prev),
                blob(&app, &hash)
            ),
        ));
        prev = hash.to_vec();
    }
    statements.push(move_head(&app, &biz, 6, &prev));
    disable_append_only(&app).await;

    sql(&app, statements).await;

    let rebuilt = export_lines(&app, &biz.key, "").await;
    assert_eq!(rebuilt, lines, "the rebuilt chain is stored as built");
    assert_eq!(
        reverify_offline(&rebuilt),
        Ok(()),
        "the rebuilt chain is consistent in itself"
    );
    assert_ne!(
        rebuilt[5]["hash"], res.body["hash"],
        "an auditor holding the checkpoint sees the rebuild offline too"
    );
    let report = verify(&app, &biz.key).await;
    // Nothing before the mismatching checkpoint is proven (there is no earlier
    // matching one), so the first unproven seq is 1.
    assert_invalid_at(&report, 1, "a chain rebuilt under a checkpoint");
    assert!(
        report["checkpoints_checked"].as_i64() >= Some(1),
        "the checkpoint is what found it: {report}"
    );
}

async fn the_database_refuses_updates_and_deletes_of_audit_events(app: TestApp) {
    let biz = business_with_six_events(&app, "Acme").await;
    let before = export_lines(&app, &biz.key, "").await;

    let mut refused = vec![
        ("UPDATE", update_event(&biz, 3, "actor = 'operator'")),
        (
            "DELETE",
            format!(
                "DELETE FROM audit_events WHERE business_id = '{}' AND seq = 6",
                biz.id
            ),
        ),
    ];
    if is_postgres(&app) {
        refused.push(("TRUNCATE", "TRUNCATE audit_events".to_owned()));
    }
    for (what, statement) in refused {
        let result = try_sql(&app, vec![statement]).await;
        let error = result.expect_err(&format!(
            "{what} of audit events through the service's own connection is refused"
        ));
        assert!(
            error.contains("append-only"),
            "{what} is refused by the append-only trigger: {error}"
        );
    }

    assert_eq!(
        export_lines(&app, &biz.key, "").await,
        before,
        "the events are unchanged"
    );
    let report = verify(&app, &biz.key).await;
    assert_eq!(report["valid"], true, "the chain still verifies: {report}");
    assert_eq!(report["checked"], 6, "{report}");
}

// ---- reading the log ------------------------------------------------------------------------

async fn events_are_paged_by_cursor_and_filtered(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let first = opt_in(&app, &biz.key, "+31612345670").await; // 3
    app.create_key(&biz.key, "k4", &["checks:read"]).await; // 4
    opt_in(&app, &biz.key, "+31612345671").await; // 5
    app.create_key(&biz.key, "k6", &["checks:read"]).await; // 6
    let res = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({"phone": "+31612345670", "channel": "api"}),
        )
        .await; // 7
    assert_eq!(res.status, 201, "the revocation is recorded: {}", res.body);
    let subject = first["subject_id"].as_str().unwrap().to_owned();

    let all = events_page(&app, &biz.key, "limit=1000").await;
    assert_eq!(
        seqs(&all),
        (1..=7).collect::<Vec<_>>(),
        "every event, in seq order"
    );
    assert_eq!(all["next_after"], Value::Null, "one page holds all: {all}");
    assert_eq!(
        events_page(&app, &biz.key, "").await,
        all,
        "the default page (100) holds all seven"
    );

    // Cursor paging: next_after is the cursor, null on the last page; the pages
    // put together are exactly the whole list.
    let mut paged = Vec::new();
    let mut cursors = Vec::new();
    let mut after = 0;
    loop {
        let page = events_page(&app, &biz.key, &format!("limit=3&after={after}")).await;
        paged.extend(page["events"].as_array().unwrap().iter().cloned());
        cursors.push(page["next_after"].clone());
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
        assert!(cursors.len() < 10, "paging ends: {cursors:?}");
    }
    assert_eq!(cursors, [json!(3), json!(6), Value::Null], "the cursors");
    assert_eq!(
        Value::Array(paged),
        all["events"],
        "the pages together are the whole log"
    );
    let exact = events_page(&app, &biz.key, "limit=7").await;
    assert_eq!(
        exact["next_after"],
        Value::Null,
        "a page that exactly ends the log says so: {exact}"
    );
    let short = events_page(&app, &biz.key, "limit=6").await;
    assert_eq!(short["next_after"], 6, "one event is left: {short}");
    let past = events_page(&app, &biz.key, "after=7").await;
    assert_eq!(seqs(&past), Vec::<i64>::new(), "nothing after the head");
    assert_eq!(past["next_after"], Value::Null, "{past}");

    // Filters, alone and with the cursor.
    let keys = events_page(&app, &biz.key, "type=key.created").await;
    assert_eq!(seqs(&keys), [2, 4, 6], "only key.created events");
    let one = events_page(&app, &biz.key, "type=key.created&limit=1&after=2").await;
    assert_eq!(seqs(&one), [4], "the cursor skips to the next match");
    assert_eq!(one["next_after"], 4, "{one}");
    let last = events_page(&app, &biz.key, "type=key.created&limit=1&after=4").await;
    assert_eq!(seqs(&last), [6], "the last match");
    assert_eq!(
        last["next_after"],
        Value::Null,
        "no further match, so no cursor: {last}"
    );
    let about = events_page(&app, &biz.key, &format!("subject_id={subject}")).await;
    assert_eq!(seqs(&about), [3, 7], "the subject's opt-in and revocation");
    assert!(
        about["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["subject_id"] == subject.as_str()),
        "every event names the subject: {about}"
    );
    let at = |seq: usize| all["events"][seq - 1]["at"].as_str().unwrap().to_owned();
    let window = events_page(&app, &biz.key, &format!("from={}&to={}", at(4), at(6))).await;
    assert_eq!(seqs(&window), [4, 5], "from is inclusive, to exclusive");
    let both = events_page(
        &app,
        &biz.key,
        &format!("type=opt_in.recorded&from={}", at(4)),
    )
    .await;
    assert_eq!(seqs(&both), [5], "filters combine");

    // The auditor reads the evidence: decrypted, though stored as ciphertext.
    let recorded = &all["events"][2];
    assert_eq!(recorded["type"], "opt_in.recorded", "{recorded}");
    assert_eq!(recorded["subject_id"], subject.as_str(), "{recorded}");
    assert_eq!(
        recorded["data"]["evidence"]["source_url"], SOURCE_URL,
        "the evidence is decrypted for the auditor: {recorded}"
    );
    assert_eq!(
        recorded["data"]["evidence"]["consent_text_version"], "v1",
        "{recorded}"
    );
    let stored = export_lines(&app, &biz.key, "").await;
    assert!(
        !text(&stored[2], "data").contains("acme.example"),
        "the stored event holds the evidence as ciphertext: {}",
        stored[2]
    );
    for (i, event) in all["events"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            event["hash"],
            stored[i]["hash"],
            "the events API and the export agree on seq {}",
            i + 1
        );
        assert_eq!(event["prev_hash"], stored[i]["prev_hash"], "seq {}", i + 1);
    }

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=-1", "after"),
        ("subject_id=not-a-uuid", "subject_id"),
    ] {
        let res = app
            .get(&format!("/v1/audit/events?{query}"), Some(&biz.key))
            .await;
        res.assert_problem(422, "validation_failed");
        assert_eq!(
            res.body["errors"][0]["field"], field,
            "{query}: the error names the parameter: {}",
            res.body
        );
    }
    // Values that do not parse at all are 422 too (which parameter they name is
    // `a_query_value_that_does_not_parse_is_named_in_the_error`).
    for query in [
        "limit=ten".to_owned(),
        "after=x".to_owned(),
        "from=yesterday".to_owned(),
        format!("from={}&to={}", at(6), at(4)),
    ] {
        let res = app
            .get(&format!("/v1/audit/events?{query}"), Some(&biz.key))
            .await;
        assert_eq!(res.status, 422, "{query} is refused: {}", res.body);
        res.assert_problem(422, "validation_failed");
    }
}

/// SPEC section 5: validation errors carry `errors[] {field, message}`; a query
/// value of the wrong type should name its parameter like every other 422 does.
async fn a_query_value_that_does_not_parse_is_named_in_the_error(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    for (query, field) in [
        ("limit=ten", "limit"),
        ("after=x", "after"),
        ("from=yesterday", "from"),
    ] {
        let res = app
            .get(&format!("/v1/audit/events?{query}"), Some(&biz.key))
            .await;
        res.assert_problem(422, "validation_failed");
        assert_eq!(
            res.body["errors"][0]["field"], field,
            "{query}: the error names the parameter: {}",
            res.body
        );
    }
}

async fn only_audit_read_keys_of_the_business_read_its_log(app: TestApp) {
    let a = app.create_business("A", "whatsapp-eu").await;
    let b = app.create_business("B", "whatsapp-eu").await;
    let phone = "+31612345670";
    opt_in(&app, &a.key, phone).await;
    let theirs = opt_in(&app, &b.key, phone).await;
    app.create_key(&b.key, "b-extra", &["checks:read"]).await;
    let b_subject = theirs["subject_id"].as_str().unwrap().to_owned();
    let (_, no_audit) = app.create_key(&a.key, "no-audit", &NOT_AUDIT_SCOPES).await;
    let (_, auditor) = app.create_key(&a.key, "auditor", &["audit:read"]).await;

    for (method, path) in [
        ("GET", "/v1/audit/events"),
        ("GET", "/v1/audit/verify"),
        ("GET", "/v1/audit/export"),
        ("GET", "/v1/audit/checkpoints"),
        ("POST", "/v1/audit/checkpoints"),
    ] {
        let call = |token: Option<String>| {
            let app = &app;
            async move {
                if method == "GET" {
                    app.get(path, token.as_deref()).await
                } else {
                    app.post(path, token.as_deref(), &json!({})).await
                }
            }
        };
        let res = call(Some(no_audit.clone())).await;
        assert_eq!(
            res.status, 403,
            "{method} {path} without audit:read: {}",
            res.body
        );
        res.assert_problem(403, "forbidden");
        call(None).await.assert_problem(401, "unauthorized");
        let res = call(Some(auditor.clone())).await;
        assert!(
            res.status == 200 || res.status == 201,
            "{method} {path} with audit:read alone succeeds: {} {}",
            res.status,
            res.body
        );
    }

    let page = events_page(&app, &auditor, &format!("subject_id={b_subject}")).await;
    assert_eq!(
        page,
        json!({"events": [], "next_after": null}),
        "A's key with B's subject id reads an empty page"
    );
    let own = events_page(&app, &auditor, "limit=1000").await;
    let a_count = own["events"].as_array().unwrap().len();
    assert_eq!(
        a_count, 5,
        "A's own events: creation (2), the opt-in, two keys: {own}"
    );
    for leak in [&b.id, &b_subject, &b.key_id] {
        assert!(
            !own.to_string().contains(leak.as_str()),
            "A's events never mention B's {leak}: {own}"
        );
    }
    let exported = export_lines(&app, &auditor, "").await;
    assert_eq!(exported.len(), a_count, "A's export holds A's events");
    assert!(
        exported.iter().all(|l| l["business_id"] == a.id.as_str()),
        "every exported line is A's"
    );
    let report = verify(&app, &auditor).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(
        report["checked"].as_u64(),
        Some(a_count as u64),
        "A's verify counts only A's events: {report}"
    );
    let b_report = verify(&app, &b.key).await;
    assert_eq!(b_report["checked"], 4, "B's chain is B's own: {b_report}");
    let res = app.get("/v1/audit/checkpoints", Some(&b.key)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(
        res.body["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["business_id"] == b.id.as_str()),
        "B never sees A's checkpoint: {}",
        res.body
    );
}

/// More than one export page (500 events) of key creations, written through the
/// writer's unbatched path with one precomputed key hash: this test is about the
/// export, not key secrets.
async fn append_many_events(app: &TestApp, biz: &BusinessFixture, count: usize) {
    let business_id = Uuid::parse_str(&biz.id).unwrap();
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
    actix_web::rt::task::spawn_blocking(move || {
        let mut conn = writer.store().conn().expect("a pooled connection");
        for i in 0..count {
            let key = NewApiKey {
                id: Uuid::now_v7(),
                business_id,
                name: format!("bulk-{i}"),
                scopes: Scopes::new([Scope::ChecksRead]).unwrap(),
                secret_hash: hash.to_string(),
                created_at: consentgate::domain::time::now(),
            };
            writer
                .create_key_blocking(&mut conn, &key, Actor::Cli)
                .expect("a key is created");
        }
    })
    .await
    .expect("the writer finishes");
}

async fn the_export_reverifies_offline_from_its_lines_alone(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await; // 1, 2
    opt_in(&app, &biz.key, "+31612345670").await; // 3
    append_many_events(&app, &biz, 520).await; // 4..=523
    opt_in(&app, &biz.key, "+31612345671").await; // 524
    app.create_key(&biz.key, "last", &["checks:read"]).await; // 525

    let lines = export_lines(&app, &biz.key, "").await;
    assert_eq!(lines.len(), 525, "the whole chain, across export pages");
    let mut keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut documented = [
        "actor",
        "at",
        "business_id",
        "data",
        "hash",
        "id",
        "prev_hash",
        "seq",
        "subject_id",
        "type",
    ];
    documented.sort_unstable();
    assert_eq!(
        keys, documented,
        "a line holds exactly the documented fields"
    );
    assert_eq!(
        lines
            .iter()
            .map(|l| l["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (1..=525).collect::<Vec<_>>(),
        "lines are in seq order"
    );
    assert_eq!(
        text(&lines[0], "prev_hash"),
        "0".repeat(64),
        "the first event links to 32 zero bytes"
    );
    assert!(
        lines[2]["subject_id"].is_string() && lines[3]["subject_id"].is_null(),
        "both events with and without a subject are covered"
    );
    assert_eq!(
        reverify_offline(&lines),
        Ok(()),
        "the whole export recomputes from the documented encoding"
    );
    let report = verify(&app, &biz.key).await;
    assert_eq!(
        report["head"],
        json!({"seq": 525, "hash": lines[524]["hash"]}),
        "the export ends at the head the service verifies"
    );

    // A time range: seq 3 up to (not including) seq 524, across a page boundary;
    // it re-verifies from its own first line's prev_hash.
    let query = format!(
        "from={}&to={}",
        text(&lines[2], "at"),
        text(&lines[523], "at")
    );
    let range = export_lines(&app, &biz.key, &query).await;
    assert_eq!(
        range.first().map(|l| l["seq"].clone()),
        Some(json!(3)),
        "from is inclusive"
    );
    assert_eq!(
        range.last().map(|l| l["seq"].clone()),
        Some(json!(523)),
        "to is exclusive"
    );
    assert_eq!(
        range[..],
        lines[2..523],
        "the range's lines are the same as in the whole export, in seq order"
    );
    assert_eq!(
        range[0]["prev_hash"], lines[1]["hash"],
        "the range starts from seq 2's hash"
    );
    assert_eq!(
        reverify_offline(&range),
        Ok(()),
        "the range recomputes from its first line's prev_hash"
    );

    // The check above would find a forged line: a control that the offline
    // verifier is not vacuous.
    let mut forged = range.clone();
    forged[10]["actor"] = json!("operator");
    assert_eq!(
        reverify_offline(&forged),
        Err("seq 13: the hash does not recompute".to_owned()),
        "a changed line fails offline"
    );
}

async fn checkpoints_verify_with_the_published_key_and_documented_message(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let first = app
        .post("/v1/audit/checkpoints", Some(&biz.key), &json!({}))
        .await;
    assert_eq!(first.status, 201, "a checkpoint is made: {}", first.body);
    opt_in(&app, &biz.key, "+31612345670").await;
    app.create_key(&biz.key, "k", &["checks:read"]).await;
    let second = app
        .post("/v1/audit/checkpoints", Some(&biz.key), &json!({}))
        .await;
    assert_eq!(second.status, 201, "a checkpoint is made: {}", second.body);

    let res = app.get("/v1/audit/checkpoints", Some(&biz.key)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let key = &res.body["key"];
    assert_eq!(key["algorithm"], "Ed25519", "{key}");
    let public: [u8; 32] = STANDARD
        .decode(text(key, "public_key"))
        .expect("public_key is base64")
        .try_into()
        .expect("public_key is 32 raw bytes");
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("a valid Ed25519 key");
    assert_eq!(
        text(key, "key_id"),
        &hex::encode(Sha256::digest(public))[..16],
        "key_id is the first 16 hex digits of SHA-256 of the key"
    );
    let pem_body: String = text(key, "public_key_pem")
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(pem_body).expect("the PEM body is base64");
    assert!(
        der.ends_with(&public) && der.len() == 44,
        "the PEM holds the same key"
    );

    let checkpoints = res.body["checkpoints"].as_array().unwrap();
    assert_eq!(
        checkpoints,
        &vec![first.body.clone(), second.body.clone()],
        "GET lists the checkpoints made, in seq order"
    );
    assert_eq!(first.body["seq"], 2, "{}", first.body);
    assert_eq!(second.body["seq"], 4, "{}", second.body);
    let events = export_lines(&app, &biz.key, "").await;
    for checkpoint in checkpoints {
        let seq = checkpoint["seq"].as_i64().unwrap();
        assert_eq!(checkpoint["business_id"], biz.id.as_str(), "{checkpoint}");
        assert_eq!(checkpoint["key_id"], key["key_id"], "{checkpoint}");
        assert_eq!(
            checkpoint["hash"],
            events[seq as usize - 1]["hash"],
            "checkpoint {seq} signs the event hash at its seq"
        );
        let at = text(checkpoint, "at");
        assert!(
            at.len() == 27 && at.ends_with('Z') && DateTime::parse_from_rfc3339(at).is_ok(),
            "at is RFC 3339 UTC with six fraction digits: {at}"
        );
        let message = length_prefixed(&[
            "consentgate/checkpoint/v1",
            &biz.id,
            &seq.to_string(),
            text(checkpoint, "hash"),
            at,
        ]);
        assert_eq!(
            STANDARD.decode(text(checkpoint, "message")).unwrap(),
            message,
            "checkpoint {seq}: the signed bytes are the documented encoding"
        );
        let signature = ed25519_dalek::Signature::from_slice(
            &STANDARD
                .decode(text(checkpoint, "signature"))
                .expect("the signature is base64"),
        )
        .expect("a 64-byte signature");
        assert!(
            verifying.verify_strict(&message, &signature).is_ok(),
            "checkpoint {seq}: the signature verifies with the published key"
        );
        let other = length_prefixed(&[
            "consentgate/checkpoint/v1",
            &biz.id,
            &(seq + 1).to_string(),
            text(checkpoint, "hash"),
            at,
        ]);
        assert!(
            verifying.verify_strict(&other, &signature).is_err(),
            "checkpoint {seq}: the signature does not cover another seq"
        );
    }
    let report = verify(&app, &biz.key).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["checkpoints_checked"], 2, "{report}");
    assert_eq!(report["invalid_checkpoints"], json!([]), "{report}");

    // A stored checkpoint whose signature was damaged, or whose hash was replaced
    // (as a rebuilder would, to match a rewritten chain), no longer verifies.
    sql(
        &app,
        vec![
            format!(
                "UPDATE audit_checkpoints SET signature = {} WHERE business_id = '{}' AND seq = 2",
                blob(&app, &[0x01; 64]),
                biz.id
            ),
            format!(
                "UPDATE audit_checkpoints SET hash = {} WHERE business_id = '{}' AND seq = 4",
                blob(&app, &[0xab; 32]),
                biz.id
            ),
        ],
    )
    .await;
    let report = verify(&app, &biz.key).await;
    assert_eq!(
        report["valid"], false,
        "a checkpoint that does not verify makes the report invalid: {report}"
    );
    assert_eq!(
        report["invalid_checkpoints"],
        json!([2, 4]),
        "both altered checkpoints are named: {report}"
    );
}

// ---- automatic checkpoints ---------------------------------------------------------------

/// Every 3 events, in the writing transaction.
async fn checkpoints_are_made_every_n_events(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    for i in 0..5 {
        app.create_key(&biz.key, &format!("k{i}"), &["checks:read"])
            .await;
    }
    let events = export_lines(&app, &biz.key, "").await;
    assert_eq!(events.len(), 7, "seven events");
    let res = app.get("/v1/audit/checkpoints", Some(&biz.key)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let seqs: Vec<i64> = res.body["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.len() >= 2,
        "at least two checkpoints in 7 events: {seqs:?}"
    );
    for checkpoint in res.body["checkpoints"].as_array().unwrap() {
        let seq = checkpoint["seq"].as_i64().unwrap();
        assert!(
            (1..=7).contains(&seq),
            "checkpoint {seq} is at a real event"
        );
        assert_eq!(
            checkpoint["hash"],
            events[seq as usize - 1]["hash"],
            "checkpoint {seq} signs that event's hash"
        );
    }
    let mut previous = 0;
    for &seq in &seqs {
        assert!(
            seq > previous && seq - previous <= 3,
            "a checkpoint at least every 3 events: {seqs:?}"
        );
        previous = seq;
    }
    assert!(
        7 - previous < 3,
        "no 3 events without a checkpoint: {seqs:?}"
    );
    verifies_with_every_checkpoint(&app, &biz.key, seqs.len()).await;
}

/// The chain verifies, comparing each of its `checkpoints`.
async fn verifies_with_every_checkpoint(app: &TestApp, key: &str, checkpoints: usize) {
    let report = verify(app, key).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(
        report["checkpoints_checked"].as_u64(),
        Some(checkpoints as u64),
        "verify compares every checkpoint: {report}"
    );
}

/// Opt-ins go through the group-commit writer: the checkpoint thread signs the
/// heads its batches committed and the writer stores those checkpoints with a
/// later batch (or a batch of checkpoints alone when no write follows), each
/// of a real head, and verify checks them all.
async fn checkpoints_of_batched_writes_are_stored_by_a_later_batch(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    for i in 0..12 {
        opt_in(&app, &biz.key, &format!("+3161234{i:04}")).await;
    }
    let events = export_lines(&app, &biz.key, "").await;
    assert_eq!(events.len(), 14, "business, key and twelve opt-ins");
    // The last checkpoint is handed over after the last batch: poll for it.
    let mut checkpoints = Vec::new();
    for _ in 0..50 {
        let res = app.get("/v1/audit/checkpoints", Some(&biz.key)).await;
        assert_eq!(res.status, 200, "{}", res.body);
        checkpoints = res.body["checkpoints"].as_array().unwrap().clone();
        if checkpoints.last().and_then(|c| c["seq"].as_i64()) >= Some(11) {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let seqs: Vec<i64> = checkpoints
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.last() >= Some(&11),
        "a checkpoint at most 4 events before the head of 14: {seqs:?}"
    );
    for checkpoint in &checkpoints {
        let seq = checkpoint["seq"].as_i64().unwrap();
        assert_eq!(
            checkpoint["hash"],
            events[seq as usize - 1]["hash"],
            "checkpoint {seq} signs that event's hash"
        );
    }
    verifies_with_every_checkpoint(&app, &biz.key, seqs.len()).await;
}

/// Every second, for the chains that moved.
async fn checkpoints_are_made_periodically_for_chains_that_moved(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    app.create_key(&biz.key, "k", &["checks:read"]).await;
    let head = verify(&app, &biz.key).await["head"].clone();
    assert_eq!(head["seq"], 3, "three events: {head}");

    actix_web::rt::time::sleep(std::time::Duration::from_millis(2500)).await;

    let res = app.get("/v1/audit/checkpoints", Some(&biz.key)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let checkpoints = res.body["checkpoints"].as_array().unwrap().clone();
    assert!(
        checkpoints
            .iter()
            .any(|c| c["seq"] == head["seq"] && c["hash"] == head["hash"]),
        "a periodic checkpoint of the head was made: {}",
        res.body
    );
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1500)).await;
    let again = app.get("/v1/audit/checkpoints", Some(&biz.key)).await;
    assert_eq!(
        again.body["checkpoints"].as_array().unwrap().len(),
        checkpoints.len(),
        "a chain that did not move gets no new checkpoint: {}",
        again.body
    );
}
