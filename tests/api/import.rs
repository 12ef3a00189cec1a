//! `consentgate import` (SPEC section 8): legacy opt-ins from CSV through the
//! same validation and write path as `POST /v1/opt-ins`, on both backends, and
//! the real binary once (progress lines, exit codes, resume).

use std::io::Write;
use std::path::Path;

use chrono::{Duration, Utc};
use consentgate::import::{ImportOptions, ImportSummary};
use consentgate::ledger::Ledger;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    import_records_good_rows_and_rejects_bad_ones_with_their_line_and_reason,
    an_interrupted_import_resumes_after_the_last_committed_row_without_duplicates,
    a_dry_run_validates_without_writing,
    an_import_adds_facts_to_known_numbers_and_to_numbers_that_come_again,
);

fn ledger(app: &TestApp) -> Ledger {
    app.ledger_on(app.writer.clone())
}

const HEADER: &str = "phone,categories,channel,collected_at,consent_text_version,source_system,form_id,store_id,default_region";

fn write_csv(dir: &Path, rows: &[String]) -> std::path::PathBuf {
    let path = dir.join("legacy.csv");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "{HEADER}").unwrap();
    for row in rows {
        writeln!(file, "{row}").unwrap();
    }
    path
}

fn options(business: &str, file: &Path) -> ImportOptions {
    ImportOptions {
        business_id: business.parse().unwrap(),
        file: file.to_owned(),
        rejects: None,
        resume: false,
        dry_run: false,
        batch_size: 3,
        stop_after_batches: None,
    }
}

fn good(i: u32, at: &str) -> String {
    format!("+3161234{i:04},marketing;utility,web,{at},signup-v2,legacy-crm,f-1,,")
}

/// A `utility` opt-in of `phone` through the API, collected now: its response body.
async fn opt_in_now(app: &TestApp, key: &str, phone: &str) -> serde_json::Value {
    let res = app
        .post(
            "/v1/opt-ins",
            Some(key),
            &json!({"phone": phone, "categories": ["utility"], "channel": "api",
                    "evidence": {"collected_at": Utc::now().to_rfc3339(), "consent_text_version": "v1",
                                 "source_system": "crm"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body
}

async fn opt_in_events(app: &TestApp, business: &str) -> usize {
    app.audit_events(business)
        .await
        .iter()
        .filter(|e| e.event_type == "opt_in.recorded")
        .count()
}

async fn import_records_good_rows_and_rejects_bad_ones_with_their_line_and_reason(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let long_ago = (Utc::now() - Duration::days(30)).to_rfc3339();
    // A number erased after its legacy consent was collected: the stale row is refused.
    let erased = "+31612349999";
    opt_in_now(&app, &biz.key, erased).await;
    let res = app
        .post(
            "/v1/subjects/erase",
            Some(&biz.key),
            &json!({"phone": erased}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);

    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        good(1, &long_ago),                                                     // line 2
        format!("12,marketing,web,{long_ago},v1,legacy-crm,f-1,,"),             // 3: phone
        format!("+31612340002,newsletter,web,{long_ago},v1,legacy-crm,f-1,,"),  // 4: category
        format!("+31612340003,marketing,web,not-a-date,v1,legacy-crm,f-1,,"),   // 5: collected_at
        format!("+31612340004,marketing,in_store,{long_ago},v1,legacy-crm,,,"), // 6: store_id missing
        format!("{erased},marketing,web,{long_ago},v1,legacy-crm,f-1,,"),       // 7: erased since
        format!("06 1234 0007,utility,in_store,{long_ago},v1,legacy-crm,,AMS-01,NL"), // 8: national form
        good(8, &long_ago),                                                           // 9
    ];
    let file = write_csv(dir.path(), &rows);
    // Line 10: bytes that are not UTF-8.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(b"+3161234\xff\xfe,marketing,web,x,v1,crm,f,,\n")
        .unwrap();
    let ledger = ledger(&app);
    let summary: ImportSummary =
        consentgate::import::run(&ledger, &options(&biz.id, &file)).unwrap();
    assert!(summary.complete);
    assert_eq!(summary.imported, 3, "{summary:?}");
    assert_eq!(summary.rejected, 6, "{summary:?}");
    assert_eq!(summary.rejected_by_reason["invalid_phone"], 1);
    assert_eq!(summary.rejected_by_reason["invalid_categories"], 1);
    assert_eq!(summary.rejected_by_reason["invalid_collected_at"], 1);
    assert_eq!(summary.rejected_by_reason["invalid_store_id"], 1);
    assert_eq!(summary.rejected_by_reason["collected_before_erasure"], 1);
    assert_eq!(summary.rejected_by_reason["malformed_row"], 1);
    let rejects = std::fs::read_to_string(&summary.rejects_file).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines[0], "line,reason,detail");
    let numbers: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(numbers, ["3", "4", "5", "6", "7", "10"], "{rejects}");
    assert!(
        !rejects.contains("3161234") && !rejects.contains(erased),
        "no number in the rejects file"
    );

    // Imported exactly like POST /v1/opt-ins: channel import, original channel kept.
    assert_eq!(opt_in_events(&app, &biz.id).await, 1 + 3);
    let res = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": "+31612340001", "category": "marketing"}),
        )
        .await;
    assert_eq!(res.body["allowed"], true, "{}", res.body);
    let res = app
        .post(
            "/v1/subjects/export",
            Some(&biz.key),
            &json!({"phone": "+31612340007"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let export = res.body.to_string();
    assert!(
        export.contains("\"import\"") && export.contains("AMS-01"),
        "{export}"
    );
    assert_eq!(check_erased(&app, &biz.key, erased).await, "suppressed");
    let verify = app.get("/v1/audit/verify", Some(&biz.key)).await;
    assert_eq!(verify.body["valid"], true);
}

async fn check_erased(app: &TestApp, key: &str, phone: &str) -> String {
    let res = app
        .post(
            "/v1/checks",
            Some(key),
            &json!({"phone": phone, "category": "marketing"}),
        )
        .await;
    res.body["reason"].as_str().unwrap().to_owned()
}

async fn an_interrupted_import_resumes_after_the_last_committed_row_without_duplicates(
    app: TestApp,
) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let at = (Utc::now() - Duration::days(1)).to_rfc3339();
    let mut rows: Vec<String> = (0..10).map(|i| good(i, &at)).collect();
    rows.insert(4, "bad,marketing,web,x,v1,crm,f,,".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let file = write_csv(dir.path(), &rows);
    let ledger = ledger(&app);
    let mut opts = options(&biz.id, &file);
    opts.stop_after_batches = Some(2);
    let first = consentgate::import::run(&ledger, &opts).unwrap();
    assert!(!first.complete);
    assert_eq!(first.last_line, 7);
    assert_eq!((first.imported, first.rejected), (5, 1));
    assert_eq!(opt_in_events(&app, &biz.id).await, 5);

    // Running it again from the start would duplicate: refused.
    opts.stop_after_batches = None;
    let err = consentgate::import::run(&ledger, &opts).unwrap_err();
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(opt_in_events(&app, &biz.id).await, 5);

    opts.resume = true;
    let resumed = consentgate::import::run(&ledger, &opts).unwrap();
    assert!(resumed.complete);
    assert_eq!(resumed.resumed_after_line, 7);
    assert_eq!((resumed.imported, resumed.rejected), (10, 1));
    assert_eq!(opt_in_events(&app, &biz.id).await, 10, "every row once");
    let rejects = std::fs::read_to_string(&resumed.rejects_file).unwrap();
    assert_eq!(
        rejects.lines().count(),
        2,
        "the header and line 6, once: {rejects}"
    );

    // Resuming a finished import adds nothing.
    let again = consentgate::import::run(&ledger, &opts).unwrap();
    assert_eq!(again.imported, 10);
    assert_eq!(opt_in_events(&app, &biz.id).await, 10);
    let verify = app.get("/v1/audit/verify", Some(&biz.key)).await;
    assert_eq!(verify.body["valid"], true);
}

async fn a_dry_run_validates_without_writing(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let at = Utc::now().to_rfc3339();
    let dir = tempfile::tempdir().unwrap();
    let file = write_csv(
        dir.path(),
        &[good(1, &at), "x,marketing,web,x,v1,crm,f,,".to_owned()],
    );
    let before = app.audit_events(&biz.id).await.len();
    let mut opts = options(&biz.id, &file);
    opts.dry_run = true;
    let summary = consentgate::import::run(&ledger(&app), &opts).unwrap();
    assert_eq!((summary.imported, summary.rejected), (1, 1));
    assert_eq!(app.audit_events(&biz.id).await.len(), before);
    // A dry run leaves no progress behind: the real import may start.
    opts.dry_run = false;
    let summary = consentgate::import::run(&ledger(&app), &opts).unwrap();
    assert_eq!(summary.imported, 1);
}

async fn export(app: &TestApp, key: &str, phone: &str) -> serde_json::Value {
    let res = app
        .post("/v1/subjects/export", Some(key), &json!({"phone": phone}))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
}

async fn an_import_adds_facts_to_known_numbers_and_to_numbers_that_come_again(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let at = (Utc::now() - Duration::days(2)).to_rfc3339();
    // A number with a subject already: the import adds a fact to it.
    let known = "+31612340001";
    let subject_before = opt_in_now(&app, &biz.key, known).await["subject_id"].clone();
    // Batches of 3 rows: number 2 twice in the first batch, number 4 twice in
    // the second, number 3 in the second and the third.
    let rows = vec![
        good(1, &at),
        good(2, &at),
        good(2, &at),
        good(3, &at),
        good(4, &at),
        good(4, &at),
        good(3, &at),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = write_csv(dir.path(), &rows);
    let summary = consentgate::import::run(&ledger(&app), &options(&biz.id, &file)).unwrap();
    assert_eq!((summary.imported, summary.rejected), (7, 0), "{summary:?}");

    let known_export = export(&app, &biz.key, known).await;
    assert_eq!(known_export["subject"]["id"], subject_before);
    for (i, opt_ins) in [(1, 2), (2, 2), (3, 2), (4, 2)] {
        let phone = format!("+3161234{i:04}");
        let export = export(&app, &biz.key, &phone).await;
        assert_eq!(export["subject"]["phone"], phone.as_str());
        let facts = export["opt_ins"].as_array().unwrap();
        assert_eq!(facts.len(), opt_ins, "{phone}: {export}");
        // Every fact's evidence opens under its subject's key.
        for fact in facts {
            assert!(fact["evidence"].is_object(), "{phone}: {fact}");
        }
    }
    assert_eq!(opt_in_events(&app, &biz.id).await, 1 + 7);
    let verify = app.get("/v1/audit/verify", Some(&biz.key)).await;
    assert_eq!(verify.body["valid"], true, "{}", verify.body);
}

#[test]
fn the_import_command_prints_progress_and_a_summary_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_consentgate");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CONSENTGATE_DATA_DIR", dir.path().join("data"))
            .env("CONSENTGATE_LOG", "warn")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[
        "business",
        "create",
        "--name",
        "Acme",
        "--policy",
        "whatsapp-global",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let business = created["business"]["id"].as_str().unwrap().to_owned();
    let at = Utc::now().to_rfc3339();
    let rows: Vec<String> = (0..7)
        .map(|i| good(i, &at))
        .chain(["1,marketing,web,x,v,s,f,,".into()])
        .collect();
    let file = write_csv(dir.path(), &rows);
    let file = file.to_str().unwrap();

    let out = run(&[
        "import",
        "--business",
        &business,
        "--batch-size",
        "2",
        "--stop-after-batches",
        "1",
        file,
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "an interrupted import says so: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["import", "--business", &business, file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    let out = run(&["import", "--business", &business, "--resume", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["imported"], 7, "{summary}");
    assert_eq!(summary["rejected"], 1, "{summary}");
    assert_eq!(summary["resumed_after_line"], 3, "{summary}");
    assert_eq!(
        summary["rejected_by_reason"]["invalid_phone"], 1,
        "{summary}"
    );

    let out = run(&["audit", "verify", "--business", &business]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // business.created + the first key + 7 opt-ins, each once.
    assert_eq!(report["checked"], 9, "{report}");
    let out = run(&[
        "import",
        "--business",
        "00000000-0000-0000-0000-000000000000",
        file,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such business"));
}
