//! The preference center and the console in a real headless browser (Debian's
//! `chromium`, driven through `chromedriver` with fantoccini), on both backends.
//!
//! One flow per page, to pay the browser's start once: open a link, opt out of
//! marketing (by keyboard), check through the API that it is `revoked` with web
//! evidence in the audit log, opt back in, block and unblock, download the export,
//! erase with confirmation and see the link die, a forged token, a form whose CSRF
//! field was removed; then the console signs in, filters, verifies and signs out.
//!
//! Without chromium and chromedriver the tests are skipped with one note; with
//! `CI=true` they fail instead (`.ci/run` installs both). `UPDATE_SCREENSHOTS=1`
//! rewrites the screenshots in `docs/`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    a_person_manages_consent_in_the_browser,
    an_auditor_uses_the_console_in_the_browser,
);

/// Browser tests run one at a time: two chromiums on two cores only slow both.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Chromium and chromedriver, or `None` (said once) where they are missing.
fn browser_programs() -> Option<(PathBuf, PathBuf)> {
    static FOUND: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
            let driver = find_program(&["chromedriver"]);
            match (chromium, driver) {
                (Some(chromium), Some(driver)) => Some((chromium, driver)),
                _ => {
                    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                        panic!(
                            "CI=true but chromium or chromedriver is missing: CI always runs the browser tests \
                             (apt-get install chromium chromium-driver)"
                        );
                    }
                    let _ = writeln!(
                        std::io::stderr(),
                        "\nNOTE: chromium or chromedriver not found; browser tests are SKIPPED \
                         (apt-get install chromium chromium-driver)\n"
                    );
                    None
                }
            }
        })
        .clone()
}

/// A chromedriver process in a process group of its own, which also holds the
/// chromium it starts: the whole group is killed on drop, so a failing test
/// leaves no browser behind.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session with its download directory.
struct Browser {
    client: Client,
    downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
    _driver: Driver,
}

impl Browser {
    async fn start() -> Option<Browser> {
        let (chromium, chromedriver) = browser_programs()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver { child, port };
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                // No internet here: everything that would phone home is off.
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    "--disable-crash-reporter", "--disable-breakpad",
                    "--window-size=1000,1400",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            }),
        );
        let url = format!("http://127.0.0.1:{}", driver.port);
        let mut last = None;
        for _ in 0..50 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Some(Browser {
                        client,
                        downloads,
                        _profile: profile,
                        _driver: driver,
                    });
                }
                Err(e) => {
                    last = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        panic!("chromedriver did not start a session: {last:?}");
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Clicks what `css` finds and waits until the page it leads to replaced
    /// this one (the old document's root goes stale), so that what is read next
    /// is the new page.
    async fn click(&self, css: &str) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
        self.until_replaced(old).await;
    }

    /// Presses a key on the element `css` finds, then waits for the next page.
    async fn press(&self, css: &str, key: Key) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .send_keys(&key.to_string())
            .await
            .unwrap();
        self.until_replaced(old).await;
    }

    async fn until_replaced(&self, old: fantoccini::elements::Element) {
        for _ in 0..200 {
            if old.tag_name().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page was not replaced within 10 s");
    }

    async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    async fn screenshot(&self, name: &str) {
        if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let png = self.client.screenshot().await.unwrap();
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs")
                .join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, png).unwrap();
        }
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

async fn reason(app: &TestApp, key: &str, phone: &str, category: &str) -> String {
    let res = app
        .post(
            "/v1/checks",
            Some(key),
            &json!({"phone": phone, "category": category}),
        )
        .await;
    res.body["reason"].as_str().unwrap().to_owned()
}

async fn latest_event(app: &TestApp, key: &str, event_type: &str) -> Value {
    let res = app
        .get(
            &format!("/v1/audit/events?type={event_type}&limit=1000"),
            Some(key),
        )
        .await;
    res.body["events"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap_or(Value::Null)
}

async fn a_person_manages_consent_in_the_browser(app: TestApp) {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    const PHONE: &str = "+31 6 2468 1357";
    let biz = app
        .create_business("Bakkerij de Vries", "whatsapp-eu")
        .await;
    // Marketing was given (and confirmed) at the shop's web form last week.
    let collected = (chrono::Utc::now() - chrono::Duration::days(7)).to_rfc3339();
    let opt_in = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({"phone": PHONE, "categories": ["marketing", "utility"], "channel": "web",
                    "evidence": {"collected_at": collected, "consent_text_version": "shop-v2",
                                 "source_url": "https://bakkerij.example/nieuwsbrief"}}),
        )
        .await;
    let id = opt_in.body["id"].as_str().unwrap();
    app.post(
        &format!("/v1/opt-ins/{id}/confirm"),
        Some(&biz.key),
        &json!({"channel": "web", "evidence": {"collected_at": collected, "consent_text_version": "shop-v2", "source_url": "https://bakkerij.example/bevestig"}}),
    )
    .await;
    assert_eq!(reason(&app, &biz.key, PHONE, "marketing").await, "consent");
    let (link_id, path) = app.preference_link(&biz.key, PHONE).await;
    let url = format!("{}{path}", app.address);

    // The page in German, then keyboard only: Tab reaches the skip link first,
    // and Enter on the focused "no" button opts out.
    browser.goto(&format!("{url}?lang=de")).await;
    assert!(
        browser
            .text("h1")
            .await
            .contains("Ihre Nachrichten-Einstellungen")
    );
    assert!(
        browser
            .text("#category-marketing")
            .await
            .contains("Sie haben zugestimmt")
    );
    let body = browser.client.find(Locator::Css("body")).await.unwrap();
    body.send_keys(&Key::Tab.to_string()).await.unwrap();
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(
        focused.attr("class").await.unwrap().as_deref(),
        Some("skip"),
        "Tab reaches the skip link first"
    );
    browser.press("#opt-out-marketing", Key::Enter).await;
    let notice = browser.text("#notice").await;
    assert!(
        notice.contains("Nein zu „Angebote und Neuigkeiten“"),
        "{notice}"
    );
    assert!(
        browser.exists("#opt-in-marketing").await,
        "the control turned around"
    );
    browser.screenshot("preference-center-de.png").await;

    assert_eq!(reason(&app, &biz.key, PHONE, "marketing").await, "revoked");
    let revoked = latest_event(&app, &biz.key, "consent.revoked").await;
    assert_eq!(revoked["actor"], format!("link:{link_id}"));
    assert_eq!(revoked["data"]["categories"], json!(["marketing"]));
    let evidence = &revoked["data"]["evidence"];
    assert_eq!(evidence["channel"], "web", "{evidence}");
    assert_eq!(evidence["source_url"], format!("{}/p/", app.address));
    assert_eq!(evidence["ip"], "127.0.0.1");
    assert!(
        evidence["user_agent"].as_str().unwrap().contains("Chrome"),
        "{evidence}"
    );
    assert!(
        evidence["consent_text_version"]
            .as_str()
            .unwrap()
            .ends_with("#marketing.de")
    );

    // Opt back in.
    browser.click("#opt-in-marketing").await;
    assert!(browser.text("#notice").await.contains("Ja zu"));
    assert_eq!(reason(&app, &biz.key, PHONE, "marketing").await, "consent");
    let opted_in = latest_event(&app, &biz.key, "opt_in.recorded").await;
    assert_eq!(opted_in["data"]["channel"], "web");
    assert_eq!(opted_in["actor"], format!("link:{link_id}"));

    // Stop all messages, and undo.
    browser.click("#block").await;
    browser.text("#unblock").await;
    assert_eq!(reason(&app, &biz.key, PHONE, "utility").await, "blocked");
    browser.click("#unblock").await;
    browser.text("#block").await;
    assert_eq!(reason(&app, &biz.key, PHONE, "utility").await, "consent");

    // Send me my data: a JSON file lands in the download directory.
    // A download does not replace the page: a plain click.
    browser
        .client
        .find(Locator::Css("#export"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Chrome may show the file before it finished writing it: wait for a whole document.
    let file = browser.downloads.path().join("my-data.json");
    let mut export = Value::Null;
    for _ in 0..200 {
        if let Some(parsed) = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        {
            export = parsed;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(export["format"], "consentgate.export/v1");
    assert_eq!(export["subject"]["phone"], "+31624681357");

    // A form whose CSRF field was taken out is refused, and changes nothing.
    browser.goto(&url).await;
    browser
        .client
        .execute(
            "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove());",
            vec![],
        )
        .await
        .unwrap();
    browser.click("#opt-out-utility").await;
    assert!(
        browser
            .text("#message-title")
            .await
            .contains("This form has expired")
    );
    assert_eq!(reason(&app, &biz.key, PHONE, "utility").await, "consent");

    // Erase, with the confirmation that says what stays and why; then the link is dead.
    browser.goto(&format!("{url}?lang=en")).await;
    browser.click("#erase").await;
    assert!(
        browser
            .text("#stays-heading")
            .await
            .contains("What stays, and why")
    );
    browser.click("#confirm-erase").await;
    assert!(
        browser
            .text("#message-title")
            .await
            .contains("Your data was erased")
    );
    assert_eq!(
        reason(&app, &biz.key, PHONE, "marketing").await,
        "suppressed"
    );
    browser.goto(&url).await;
    assert!(
        browser
            .text("#message-title")
            .await
            .contains("This link has expired")
    );

    // An expired link, and a forged token: the same page.
    let (expired_id, expired) = app.preference_link(&biz.key, "+31 6 1357 2468").await;
    crate::preferences::expire_link(&app, &expired_id).await;
    browser.goto(&format!("{}{expired}", app.address)).await;
    assert!(
        browser
            .text("#message-title")
            .await
            .contains("This link has expired")
    );
    browser
        .goto(&format!("{}/p/cgp_{}", app.address, "x".repeat(43)))
        .await;
    assert!(
        browser
            .text("#message-title")
            .await
            .contains("This link has expired")
    );
    browser.close().await;
}

async fn an_auditor_uses_the_console_in_the_browser(app: TestApp) {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let biz = app
        .create_business("Bakkerij de Vries", "whatsapp-eu")
        .await;
    for phone in ["+31 6 1000 0001", "+31 6 1000 0002"] {
        app.post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({"phone": phone, "channel": "api"}),
        )
        .await;
    }
    let (_, auditor) = app.create_key(&biz.key, "auditor", &["audit:read"]).await;

    browser
        .goto(&format!("{}/console?lang=en", app.address))
        .await;
    browser
        .client
        .find(Locator::Css("#key"))
        .await
        .unwrap()
        .send_keys(&auditor)
        .await
        .unwrap();
    browser.click("#sign-in").await;
    assert!(
        browser
            .text("#signed-in")
            .await
            .contains("Signed in for Bakkerij de Vries")
    );
    let url = browser.client.current_url().await.unwrap();
    assert!(
        !url.as_str().contains("cg_"),
        "no key or session in the URL: {url}"
    );
    let stored: Value = browser
        .client
        .execute(
            "return [document.cookie, JSON.stringify(window.localStorage)];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        stored,
        json!(["", "{}"]),
        "the session cookie is HttpOnly; nothing in local storage"
    );

    // Filter by type.
    let field = browser.client.find(Locator::Css("#type")).await.unwrap();
    field.send_keys("consent.revoked").await.unwrap();
    browser.click("#filter").await;
    browser.text("#events").await;
    let types = browser
        .client
        .find_all(Locator::Css("#events td.type"))
        .await
        .unwrap();
    assert_eq!(types.len(), 2);
    for cell in types {
        assert_eq!(cell.text().await.unwrap(), "consent.revoked");
    }
    browser.client.set_window_size(1280, 1000).await.unwrap();
    browser.screenshot("console.png").await;

    // Verify the chain.
    browser.click("a[href^='/console/verify']").await;
    browser.click("#verify").await;
    let result = browser.text("#verify-result").await;
    assert!(result.contains("The chain is intact"), "{result}");

    // Sign out: the console asks for a key again.
    browser.click("#sign-out").await;
    assert!(browser.text("#notice").await.contains("You are signed out"));
    browser
        .goto(&format!("{}/console/verify", app.address))
        .await;
    assert!(browser.exists("#key").await, "signed out for good");
    browser.close().await;
}
