//! Data protection (SPEC section 6): no phone number, IP, user agent or message
//! text is ever stored in plaintext. Tests write through the API, then read the raw
//! database (SQLite: the file, WAL and shared-memory bytes; PostgreSQL: every row of
//! every table as text, with byte columns also searched as hex) for every written
//! form of the number.

use chrono::Utc;
use diesel::RunQueryDsl;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(the_database_holds_no_plaintext_phone_ip_user_agent_or_text);

const PHONE: &str = "+31 6 1234 5678";
const IP: &str = "203.0.113.77";
const USER_AGENT: &str = "Mozilla/5.0 (PrivacyProbe; rv:99.0) Gecko/20100101";
const TEXT: &str = "hello, this is my private message zq9xk7wv";

/// Every form of the number a leak could take: E.164 with and without plus,
/// national with and without the trunk zero, international with 00.
fn needles() -> Vec<String> {
    let mut forms: Vec<String> = [
        "+31612345678",
        "31612345678",
        "0031612345678",
        "0612345678",
        "612345678",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    forms.extend([
        IP.to_owned(),
        USER_AGENT.to_owned(),
        "PrivacyProbe".to_owned(),
        TEXT.to_owned(),
        "zq9xk7wv".to_owned(),
    ]);
    forms
}

async fn the_database_holds_no_plaintext_phone_ip_user_agent_or_text(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let now = Utc::now().to_rfc3339();
    let res = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({
                "phone": PHONE, "categories": ["marketing", "utility"], "channel": "web",
                "evidence": {"collected_at": now, "consent_text_version": "v1",
                             "source_url": "https://acme.example/signup", "ip": IP, "user_agent": USER_AGENT}
            }),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let opt_in_id = res.body["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &format!("/v1/opt-ins/{opt_in_id}/confirm"),
            Some(&biz.key),
            &json!({"channel": "web", "evidence": {"collected_at": now, "consent_text_version": "doi-1",
                    "source_url": "https://acme.example/confirm", "ip": IP, "user_agent": USER_AGENT}}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    for text in [TEXT, "STOP", "START"] {
        let res = app
            .post(
                "/v1/inbound-messages",
                Some(&biz.key),
                &json!({"phone": "0031612345678", "received_at": now, "text": text}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
    let res = app
        .post(
            "/v1/blocks",
            Some(&biz.key),
            &json!({"phone": "06-12345678", "default_region": "NL"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let res = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": PHONE, "category": "marketing"}),
        )
        .await;
    assert_eq!(
        res.body["reason"], "blocked",
        "the writes took effect: {}",
        res.body
    );

    let raw = raw_database_text(&app).await;
    assert!(
        raw.len() > 1000,
        "the scan read the database ({} bytes)",
        raw.len()
    );
    assert!(raw.contains(&opt_in_id), "the scan sees what was written");
    for needle in needles() {
        assert!(
            !raw.contains(&needle),
            "plaintext {needle:?} found in the database"
        );
        let hex = hex::encode(needle.as_bytes());
        assert!(
            !raw.contains(&hex),
            "plaintext {needle:?} found hex-encoded in the database"
        );
    }
    // The logs never see them either.
    let logs = crate::helpers::captured_logs();
    for needle in needles() {
        assert!(!logs.contains(&needle), "{needle:?} reached a log line");
    }
}

/// Everything stored, as text: SQLite's files (lossy UTF-8 keeps ASCII as is) or
/// PostgreSQL's rows (`row_to_json`, bytea as `\x` hex).
pub async fn raw_database_text(app: &TestApp) -> String {
    match &app.settings.database {
        consentgate::store::DatabaseUrl::Sqlite(path) => {
            // Let the service settle, then read the file and its WAL as they are.
            let mut out = String::new();
            for suffix in ["", "-wal", "-shm"] {
                let file = format!("{}{suffix}", path.display());
                if let Ok(bytes) = std::fs::read(&file) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                    out.push_str(&hex::encode(&bytes));
                }
            }
            out
        }
        consentgate::store::DatabaseUrl::Postgres(_) => app
            .store
            .run(|conn| {
                #[derive(diesel::QueryableByName)]
                struct Table {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    name: String,
                }
                #[derive(diesel::QueryableByName)]
                struct Row {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    text: String,
                }
                let tables: Vec<Table> = diesel::sql_query(
                    "SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = current_schema()",
                )
                .load(conn)?;
                let mut out = String::new();
                for table in tables {
                    let rows: Vec<Row> = diesel::sql_query(format!("SELECT row_to_json(t)::text AS text FROM \"{}\" t", table.name))
                        .load(conn)?;
                    for row in rows {
                        out.push_str(&row.text);
                        out.push('\n');
                    }
                }
                Ok(out)
            })
            .await
            .unwrap(),
    }
}
