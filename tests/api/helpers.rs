//! The test harness: `spawn_app(backend)` builds the real application on
//! 127.0.0.1:0 against a fresh database (SQLite: a file in a temp dir; PostgreSQL:
//! a database created for the test and dropped on Drop), and returns a client with
//! one helper per endpoint.

use std::io::Write;
use std::sync::{Mutex, Once, OnceLock};

use awc::http::header::HeaderMap;
use consentgate::config::{
    LogFormat, MasterKeySource, OperatorTokenSource, Settings, SigningKeySource,
};
use consentgate::startup::Application;
use consentgate::store::{DatabaseUrl, Store};
use diesel::{Connection, RunQueryDsl};
use secrecy::SecretString;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend for each named `async fn(TestApp)`:
/// `<module>::sqlite::<name>` and `<module>::postgres::<name>`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

/// Everything any test logged, for asserting that secrets never reach a log line.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter("debug")
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// The PostgreSQL server tests use, from TEST_POSTGRES_URL. Without it the
/// PostgreSQL tests are skipped, said once on stderr; with CI=true they fail.
fn postgres_base_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true but TEST_POSTGRES_URL is not set: CI always tests PostgreSQL");
            }
            // Written straight to the process's stderr, past the test harness's
            // capture, so a developer sees it once.
            let _ = writeln!(
                std::io::stderr(),
                "\nNOTE: TEST_POSTGRES_URL is not set; PostgreSQL tests are SKIPPED \
                 (e.g. TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres)\n"
            );
            None
        }
    })
    .clone()
}

/// A database made for one test.
pub enum TestDb {
    /// The directory holding the database file, removed on drop.
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl TestDb {
    pub fn create(backend: Backend) -> Option<(TestDb, DatabaseUrl, tempfile::TempDir)> {
        let data_dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = DatabaseUrl::Sqlite(dir.path().join("consentgate.db"));
                Some((TestDb::Sqlite { _dir: dir }, url, data_dir))
            }
            Backend::Postgres => {
                let admin_url = postgres_base_url()?;
                let name = format!("consentgate_test_{}", uuid::Uuid::now_v7().simple());
                let mut admin = diesel::PgConnection::establish(&admin_url)
                    .expect("TEST_POSTGRES_URL must reach a PostgreSQL server");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .unwrap();
                let url = DatabaseUrl::Postgres(with_database(&admin_url, &name));
                Some((TestDb::Postgres { admin_url, name }, url, data_dir))
            }
        }
    }
}

/// The same server URL with another database name.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base["postgres://".len()..]
        .find('/')
        .map(|i| i + "postgres://".len())
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self
            && let Ok(mut admin) = diesel::PgConnection::establish(admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

/// Settings for a test: port 0, a fresh database, keys of its own.
pub fn test_settings(database: DatabaseUrl, data_dir: &std::path::Path) -> Settings {
    Settings {
        bind: "127.0.0.1:0".parse().unwrap(),
        database,
        data_dir: data_dir.to_owned(),
        pool_size: 4,
        master_key: MasterKeySource::Inline(SecretString::from(
            consentgate::crypto::master_key::MasterKey::generate().to_base64(),
        )),
        operator_token: OperatorTokenSource::Inline(SecretString::from(format!(
            "test-operator-token-{}",
            uuid::Uuid::now_v7().simple()
        ))),
        signing_key: SigningKeySource::Inline(SecretString::from(
            consentgate::crypto::signing::SigningKey::generate().to_base64(),
        )),
        checkpoint_every_events: 100,
        checkpoint_interval_secs: 3600,
        retention_interval_secs: 86_400,
        log_format: LogFormat::Json,
        log_filter: "debug".into(),
        policies_dir: None,
        workers: Some(1),
        max_body_bytes: 64 * 1024,
        argon2_concurrency: 2,
        public_url: None,
        preference_posts_per_minute: 10,
        rate_limits: Default::default(),
    }
}

/// A running service and a client for it.
pub struct TestApp {
    pub address: String,
    pub operator_token: String,
    pub store: Store,
    /// The service's own group-commit writer.
    pub writer: consentgate::writer::Writer,
    pub settings: Settings,
    handle: actix_web::dev::ServerHandle,
    // Dropped last: the database outlives the server.
    _db: TestDb,
    _data_dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop accepting; the database is dropped (with FORCE) right after.
        let handle = self.handle.clone();
        actix_web::rt::spawn(async move { handle.stop(false).await });
    }
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    init_logging();
    let (db, url, data_dir) = TestDb::create(backend)?;
    let mut settings = test_settings(url, data_dir.path());
    adjust(&mut settings);
    let operator_token = match &settings.operator_token {
        OperatorTokenSource::Inline(t) => secrecy::ExposeSecret::expose_secret(t).to_owned(),
        OperatorTokenSource::Generated(_) => unreachable!("tests set the token"),
    };
    let app = Application::build(settings.clone())
        .await
        .expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let writer = app.writer().clone();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    Some(TestApp {
        address,
        operator_token,
        store,
        writer,
        settings,
        handle,
        _db: db,
        _data_dir: data_dir,
    })
}

/// A response: status, headers, body as JSON (or `Value::String` if not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Asserts a problem+json body with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(self.body["type"].as_str().unwrap().ends_with(code));
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
    }
}

/// A created business: its id and the first key's token.
#[derive(Debug, Clone)]
pub struct BusinessFixture {
    pub id: String,
    pub key: String,
    pub key_id: String,
}

impl TestApp {
    pub fn client(&self) -> awc::Client {
        awc::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .finish()
    }

    pub async fn request(
        &self,
        method: awc::http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let mut req = self
            .client()
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            req = req.insert_header(("authorization", format!("Bearer {token}")));
        }
        let mut res = match body {
            Some(body) => req.send_json(body).await,
            None => req.send().await,
        }
        .expect("the request reaches the server");
        let bytes = res.body().limit(64 * 1024 * 1024).await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Resp {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.request(awc::http::Method::GET, path, token, None)
            .await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.request(awc::http::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.request(awc::http::Method::DELETE, path, token, None)
            .await
    }

    /// POST /v1/businesses with the operator token; panics unless 201.
    pub async fn create_business(&self, name: &str, policy: &str) -> BusinessFixture {
        let token = self.operator_token.clone();
        let res = self
            .post(
                "/v1/businesses",
                Some(&token),
                &serde_json::json!({"name": name, "policy": policy}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        BusinessFixture {
            id: res.body["business"]["id"].as_str().unwrap().to_owned(),
            key: res.body["key"]["secret"].as_str().unwrap().to_owned(),
            key_id: res.body["key"]["id"].as_str().unwrap().to_owned(),
        }
    }

    /// POST /v1/keys; panics unless 201. Returns (key id, token).
    pub async fn create_key(&self, token: &str, name: &str, scopes: &[&str]) -> (String, String) {
        let res = self
            .post(
                "/v1/keys",
                Some(token),
                &serde_json::json!({"name": name, "scopes": scopes}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        (
            res.body["id"].as_str().unwrap().to_owned(),
            res.body["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// A ledger of this deployment (its master key, the shipped policies) writing
    /// through `writer`: the service's own (`self.writer`), or one on a store of
    /// its own, as another process on the same database would have.
    pub fn ledger_on(&self, writer: consentgate::writer::Writer) -> consentgate::ledger::Ledger {
        let consentgate::config::MasterKeySource::Inline(key) = &self.settings.master_key else {
            unreachable!("tests set the key inline")
        };
        let master = consentgate::crypto::master_key::MasterKey::from_base64(
            secrecy::ExposeSecret::expose_secret(key),
        )
        .unwrap();
        consentgate::ledger::Ledger::new(
            writer,
            std::sync::Arc::new(consentgate::ledger::Keyring::new(master)),
            std::sync::Arc::new(consentgate::policy::PolicySet::shipped()),
        )
    }

    /// Every audit event of a business, in sequence order.
    pub async fn audit_events(&self, business_id: &str) -> Vec<consentgate::audit::StoredEvent> {
        let id = uuid::Uuid::parse_str(business_id).unwrap();
        self.store.audit_events(id, 0, 1_000_000).await.unwrap()
    }
}

/// An HTML page (or a download) as a browser would get it.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Every `Set-Cookie` value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The value a `Set-Cookie` of this response gives `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            c.split(';')
                .next()
                .and_then(|pair| pair.split_once('='))
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
    }

    /// The first hidden CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("the page has a form") + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }
}

impl TestApp {
    /// An awc client that does not follow redirects (tests look at them).
    fn browser_like(&self) -> awc::Client {
        awc::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .disable_redirects()
            .finish()
    }

    /// GET a page with extra headers (e.g. `accept-language`, `cookie`).
    pub async fn page(&self, path: &str, headers: &[(&str, &str)]) -> Page {
        let mut req = self.browser_like().get(format!("{}{path}", self.address));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let mut res = req.send().await.expect("the request reaches the server");
        let body = res.body().limit(16 * 1024 * 1024).await.unwrap();
        Page {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// POST a form with extra headers.
    pub async fn submit(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self.browser_like().post(format!("{}{path}", self.address));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let mut res = req
            .send_form(&fields.to_vec())
            .await
            .expect("the request reaches the server");
        let body = res.body().limit(16 * 1024 * 1024).await.unwrap();
        Page {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// POST /v1/preference-links; panics unless 201. Returns (link id, path of the page).
    pub async fn preference_link(&self, key: &str, phone: &str) -> (String, String) {
        let res = self
            .post(
                "/v1/preference-links",
                Some(key),
                &serde_json::json!({"phone": phone}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        let url = res.body["url"].as_str().unwrap();
        let path = url
            .strip_prefix(&self.address)
            .expect("the link is built on the service's address")
            .to_owned();
        (res.body["id"].as_str().unwrap().to_owned(), path)
    }
}
