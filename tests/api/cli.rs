//! The command line, run as a user would: the real binary, a fresh data directory.

use std::process::Command;

fn consentgate(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_consentgate"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONSENTGATE_DATA_DIR", data_dir)
        .env("CONSENTGATE_LOG", "warn");
    cmd
}

#[test]
fn policy_check_accepts_the_shipped_policies() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = consentgate(dir.path())
        .args(["policy", "check"])
        .args(
            ["whatsapp-eu", "whatsapp-global", "sms-us"]
                .map(|p| format!("{root}/policies/{p}.toml")),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches(": ok").count(), 3, "{stdout}");
    assert!(
        stdout.contains("+sha256:"),
        "the version names the content hash: {stdout}"
    );
}

#[test]
fn policy_check_reports_every_problem_with_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        r#"
name = "broken"
version = "1"
[consent]
max_age_days = 0
clock_skew_seconds = 300
[keywords]
opt_out = ["STOP"]
[erasure]
suppress = true
[retention]
closed_window_days = 30
revoked_evidence_days = 1095
[categories.marketing]
allowed_by = ["window"]
[categories.marketing.price]
currency = "euro"
amount = "-1"
"#,
    )
    .unwrap();
    let out = consentgate(dir.path())
        .args(["policy", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a broken policy fails the command"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for field in [
        "consent.max_age_days",
        "categories.marketing.allowed_by",
        "categories.marketing.price.currency",
        "categories.marketing.price.amount",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{}: {field}: ", file.display()))),
            "`{field}` reported as file: field: reason in\n{stdout}"
        );
    }
}

#[test]
fn a_malformed_policy_directory_stops_start_up_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("custom.toml"),
        "name = \"custom\"\nversion = 1\n",
    )
    .unwrap();
    let out = consentgate(dir.path())
        .env("CONSENTGATE_POLICIES_DIR", &policies)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("custom.toml") && stderr.contains("version"),
        "{stderr}"
    );
}

#[test]
fn bad_configuration_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = consentgate(dir.path())
        .env("CONSENTGATE_BIND", "not-an-address")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONSENTGATE_BIND"));
}

/// The same commands on each backend: SQLite is the embedded default of a fresh
/// data directory; PostgreSQL comes from `DATABASE_URL`.
mod sqlite {
    #[test]
    fn business_create_then_audit_verify_on_a_fresh_data_directory() {
        super::business_create_then_audit_verify(crate::helpers::Backend::Sqlite);
    }
}

mod postgres {
    #[test]
    fn business_create_then_audit_verify_on_a_fresh_data_directory() {
        super::business_create_then_audit_verify(crate::helpers::Backend::Postgres);
    }
}

fn business_create_then_audit_verify(backend: crate::helpers::Backend) {
    let Some((_db, url, dir)) = crate::helpers::TestDb::create(backend) else {
        return;
    };
    // PostgreSQL needs its keys from configuration (several nodes share them).
    let master_key = consentgate::crypto::master_key::MasterKey::generate().to_base64();
    let signing_key = consentgate::crypto::signing::SigningKey::generate().to_base64();
    let consentgate = |dir: &std::path::Path| {
        let mut cmd = consentgate(dir);
        if let consentgate::store::DatabaseUrl::Postgres(url) = &url {
            cmd.env("DATABASE_URL", url)
                .env("CONSENTGATE_MASTER_KEY", &master_key)
                .env("CONSENTGATE_SIGNING_KEY", &signing_key);
        }
        cmd
    };
    let out = consentgate(dir.path())
        .args([
            "business",
            "create",
            "--name",
            "Acme",
            "--policy",
            "whatsapp-eu",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["business"]["id"].as_str().unwrap();
    assert!(
        created["key"]["secret"]
            .as_str()
            .unwrap()
            .starts_with("cg_")
    );
    let out = consentgate(dir.path())
        .args([
            "key",
            "create",
            "--business",
            id,
            "--name",
            "sender",
            "--scopes",
            "checks:read",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = consentgate(dir.path())
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(
        report["checked"], 3,
        "business.created, key.created, key.created"
    );
    let out = consentgate(dir.path())
        .args(["business", "create", "--name", "X", "--policy", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--policy"));
}

#[test]
fn policy_check_names_a_category_description_missing_a_language() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("whatsapp-eu.toml");
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/whatsapp-eu.toml"
    ))
    .unwrap();
    let start = shipped.find("[categories.utility.description]").unwrap();
    let nl = start + shipped[start..].find("\nnl = ").unwrap() + 1;
    let end = nl + shipped[nl..].find('\n').unwrap() + 1;
    std::fs::write(&file, format!("{}{}", &shipped[..nl], &shipped[end..])).unwrap();
    let out = consentgate(dir.path())
        .args(["policy", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with(&format!(
            "{}: categories.utility.description.nl: is required",
            file.display()
        ))),
        "the file and the field are named:\n{stdout}"
    );
}
