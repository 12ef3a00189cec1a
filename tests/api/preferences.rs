//! The preference center at HTTP level (SPEC section 11), on both backends:
//! links (creation, revocation, audit), the page's headers and states, each form
//! recorded as the JSON API would record it with web evidence, CSRF, the one
//! "expired" page, rate limits, and that no token or number reaches a log line.
//! The same flows in a real browser are in `browser.rs`.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, spawn_app_with};

backend_tests!(
    a_link_is_bound_validated_audited_and_never_holds_the_number,
    the_page_answers_with_strict_headers_in_the_browsers_language,
    each_form_records_what_the_json_api_records_with_web_evidence,
    a_post_without_a_valid_csrf_token_changes_nothing,
    expired_revoked_forged_and_erased_links_look_the_same,
    erasing_through_the_page_kills_the_link,
    links_do_not_cross_businesses,
);

const PHONE: &str = "+31 6 1234 5678";
const E164: &str = "+31612345678";

async fn check(app: &TestApp, key: &str, category: &str) -> Value {
    let res = app
        .post(
            "/v1/checks",
            Some(key),
            &json!({"phone": PHONE, "category": category}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
}

async fn events_of_type(app: &TestApp, key: &str, event_type: &str) -> Vec<Value> {
    let res = app
        .get(
            &format!("/v1/audit/events?type={event_type}&limit=1000"),
            Some(key),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body["events"].as_array().unwrap().clone()
}

async fn a_link_is_bound_validated_audited_and_never_holds_the_number(app: TestApp) {
    let biz = app.create_business("Bakkerij", "whatsapp-eu").await;
    let res = app
        .post(
            "/v1/preference-links",
            Some(&biz.key),
            &json!({"phone": PHONE, "ttl_minutes": 60}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let url = res.body["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/p/cgp_", app.address)), "{url}");
    for digits in ["612345678", "31612345678", "1234"] {
        assert!(
            !url.contains(digits),
            "the link holds no part of the number: {url}"
        );
    }
    let created =
        chrono::DateTime::parse_from_rfc3339(res.body["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(res.body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_minutes(), 60);

    let default = app
        .post(
            "/v1/preference-links",
            Some(&biz.key),
            &json!({"phone": PHONE}),
        )
        .await;
    let created =
        chrono::DateTime::parse_from_rfc3339(default.body["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(default.body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_days(), 7, "seven days by default");
    assert_ne!(
        default.body["url"], res.body["url"],
        "every link has its own token"
    );
    assert_eq!(
        default.body["subject_id"], res.body["subject_id"],
        "bound to the number's subject"
    );

    for (body, field) in [
        (
            json!({"phone": PHONE, "ttl_minutes": 43_201}),
            "ttl_minutes",
        ),
        (json!({"phone": PHONE, "ttl_minutes": 4}), "ttl_minutes"),
        (json!({"phone": "12"}), "phone"),
        (json!({"phone": PHONE, "extra": 1}), "extra"),
    ] {
        let res = app
            .post("/v1/preference-links", Some(&biz.key), &body)
            .await;
        res.assert_problem(422, "validation_failed");
        assert_eq!(res.body["errors"][0]["field"], field, "{body}");
    }
    let (_, reader) = app.create_key(&biz.key, "auditor", &["audit:read"]).await;
    app.post(
        "/v1/preference-links",
        Some(&reader),
        &json!({"phone": PHONE}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post("/v1/preference-links", None, &json!({"phone": PHONE}))
        .await
        .assert_problem(401, "unauthorized");

    let created = events_of_type(&app, &biz.key, "preference_link.created").await;
    assert_eq!(created.len(), 2, "each creation is audited");
    assert_eq!(created[0]["data"]["link_id"], res.body["id"]);
    assert_eq!(created[0]["subject_id"], res.body["subject_id"]);
    assert_eq!(created[0]["actor"], format!("key:{}", biz.key_id));
    let token = url.rsplit('/').next().unwrap();
    for event in &created {
        let text = event.to_string();
        assert!(!text.contains(token) && !text.contains(E164), "{text}");
    }

    // Revocation: at once, audited once, idempotent.
    let id = res.body["id"].as_str().unwrap();
    let path = url.strip_prefix(&app.address).unwrap();
    assert_eq!(app.page(path, &[]).await.status, 200);
    let revoked = app
        .delete(&format!("/v1/preference-links/{id}"), Some(&biz.key))
        .await;
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    assert_eq!(app.page(path, &[]).await.status, 410);
    assert_eq!(
        app.delete(&format!("/v1/preference-links/{id}"), Some(&biz.key))
            .await
            .status,
        204
    );
    let revocations = events_of_type(&app, &biz.key, "preference_link.revoked").await;
    assert_eq!(revocations.len(), 1, "revoking twice records once");
    app.delete(
        &format!("/v1/preference-links/{}", uuid::Uuid::now_v7()),
        Some(&biz.key),
    )
    .await
    .assert_problem(404, "not_found");

    // Nothing of the token is stored, and only its hash would be.
    let raw = crate::privacy::raw_database_text(&app).await;
    assert!(!raw.contains(token), "the token is not stored");
}

async fn the_page_answers_with_strict_headers_in_the_browsers_language(app: TestApp) {
    let biz = app.create_business("Bäckerei Müller", "whatsapp-eu").await;
    let (_, path) = app.preference_link(&biz.key, PHONE).await;
    let page = app
        .page(&path, &[("accept-language", "de-DE,de;q=0.9,en;q=0.5")])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        page.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
    assert!(page.body.contains("<html lang=\"de\">"));
    assert!(page.body.contains("Bäckerei Müller"));
    assert!(
        page.body.contains("Angebote, Neuigkeiten und Aktionen"),
        "the policy's German text"
    );
    assert!(
        !page.body.contains(E164) && !page.body.contains("612345678"),
        "the page never shows the number"
    );
    for attribute in [
        "src=\"http",
        "href=\"http",
        "<script",
        "style=\"",
        "//fonts",
    ] {
        assert!(
            !page.body.contains(attribute),
            "nothing from elsewhere, no script: {attribute}"
        );
    }
    // The switcher: every language, the current one marked.
    for code in ["en", "de", "nl", "it", "fr", "es"] {
        assert!(
            page.body.contains(&format!("hreflang=\"{code}\"")),
            "{code}"
        );
    }
    assert!(page.body.contains("aria-current=\"true\">Deutsch"));
    let chosen = app
        .page(&format!("{path}?lang=es"), &[("accept-language", "de")])
        .await;
    assert!(
        chosen.body.contains("<html lang=\"es\">"),
        "an explicit choice wins"
    );
    let fallback = app.page(&path, &[("accept-language", "pt-BR")]).await;
    assert!(
        fallback.body.contains("<html lang=\"en\">"),
        "English otherwise"
    );

    let css = app.page("/assets/consentgate.css", &[]).await;
    assert_eq!(css.status, 200);
    assert_eq!(
        css.header("content-type").as_deref(),
        Some("text/css; charset=utf-8")
    );
    assert!(!css.body.contains("url("), "the stylesheet loads nothing");
}

async fn each_form_records_what_the_json_api_records_with_web_evidence(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (link_id, path) = app.preference_link(&biz.key, PHONE).await;
    let token = path.rsplit('/').next().unwrap().to_owned();
    let page = app.page(&path, &[]).await;
    let csrf = page.csrf();
    let ua = [("user-agent", "PreferenceProbe/2.0")];

    // Opt in to marketing: whatsapp-eu needs double opt-in; the link is the
    // second factor, so the page confirms at once.
    let done = app
        .submit(
            &format!("{path}/consent"),
            &[
                ("csrf", &csrf),
                ("lang", "en"),
                ("category", "marketing"),
                ("choice", "in"),
            ],
            &ua,
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("Done: you said yes to") && done.body.contains("Offers and news"),
        "the page says what was just done: {}",
        done.body
    );
    assert_eq!(
        check(&app, &biz.key, "marketing").await["reason"],
        "consent"
    );
    let recorded = events_of_type(&app, &biz.key, "opt_in.recorded").await;
    let confirmed = events_of_type(&app, &biz.key, "opt_in.confirmed").await;
    assert_eq!((recorded.len(), confirmed.len()), (1, 1));
    let opt_in = &recorded[0];
    assert_eq!(opt_in["actor"], format!("link:{link_id}"));
    assert_eq!(opt_in["data"]["channel"], "web");
    let evidence = &opt_in["data"]["evidence"];
    assert_eq!(evidence["channel"], "web");
    assert_eq!(
        evidence["source_url"],
        format!("{}/p/", app.address),
        "the page URL without its token"
    );
    assert_eq!(evidence["ip"], "127.0.0.1");
    assert_eq!(evidence["user_agent"], "PreferenceProbe/2.0");
    let version = evidence["consent_text_version"].as_str().unwrap();
    assert!(
        version.starts_with("pc1:whatsapp-eu@") && version.ends_with("#marketing.en"),
        "{version}"
    );
    assert!(!opt_in.to_string().contains(&token));

    // Opt out: a revocation with web evidence, effective at once.
    let done = app
        .submit(
            &format!("{path}/consent"),
            &[
                ("csrf", &csrf),
                ("lang", "fr"),
                ("category", "marketing"),
                ("choice", "out"),
            ],
            &ua,
        )
        .await;
    assert_eq!(done.status, 200);
    assert!(
        done.body.contains("<html lang=\"fr\">"),
        "the form keeps the language"
    );
    assert!(done.body.contains("vous avez dit non"), "{}", done.body);
    assert_eq!(
        check(&app, &biz.key, "marketing").await["reason"],
        "revoked"
    );
    let revoked = events_of_type(&app, &biz.key, "consent.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["data"]["categories"], json!(["marketing"]));
    assert_eq!(revoked[0]["data"]["evidence"]["channel"], "web");
    assert_eq!(
        revoked[0]["data"]["evidence"]["user_agent"],
        "PreferenceProbe/2.0"
    );

    // Stop all messages, then undo.
    let done = app
        .submit(
            &format!("{path}/block"),
            &[("csrf", &csrf), ("choice", "stop")],
            &ua,
        )
        .await;
    assert!(done.body.contains("id=\"unblock\""), "{}", done.body);
    assert_eq!(check(&app, &biz.key, "utility").await["reason"], "blocked");
    app.submit(
        &format!("{path}/block"),
        &[("csrf", &csrf), ("choice", "resume")],
        &ua,
    )
    .await;
    assert_ne!(check(&app, &biz.key, "utility").await["reason"], "blocked");
    assert_eq!(
        events_of_type(&app, &biz.key, "subject.blocked")
            .await
            .len(),
        1
    );
    assert_eq!(
        events_of_type(&app, &biz.key, "subject.unblocked")
            .await
            .len(),
        1
    );

    // Send me my data: the export, as a download, audited.
    let download = app
        .submit(&format!("{path}/export"), &[("csrf", &csrf)], &ua)
        .await;
    assert_eq!(download.status, 200);
    assert!(
        download
            .header("content-disposition")
            .unwrap()
            .starts_with("attachment")
    );
    let export: Value = serde_json::from_str(&download.body).unwrap();
    assert_eq!(export["format"], "consentgate.export/v1");
    assert_eq!(export["subject"]["phone"], E164);
    let exported = events_of_type(&app, &biz.key, "subject.exported").await;
    assert_eq!(
        exported[0]["data"]["request_reference"],
        "preference-center"
    );

    // A category no opt-in can allow, and made-up values, are refused.
    for fields in [
        [("category", "service"), ("choice", "in")],
        [("category", "nope"), ("choice", "in")],
        [("category", "marketing"), ("choice", "maybe")],
    ] {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(fields);
        assert_eq!(
            app.submit(&format!("{path}/consent"), &all, &ua)
                .await
                .status,
            400
        );
    }
}

async fn a_post_without_a_valid_csrf_token_changes_nothing(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let (_, path) = app.preference_link(&biz.key, PHONE).await;
    let (_, other_path) = app.preference_link(&biz.key, "+31 6 1000 0009").await;
    let other_csrf = app.page(&other_path, &[]).await.csrf();
    for csrf in [
        None,
        Some("".to_owned()),
        Some("1.abc".to_owned()),
        Some(other_csrf),
    ] {
        let mut fields = vec![("category", "marketing"), ("choice", "in")];
        if let Some(csrf) = &csrf {
            fields.push(("csrf", csrf));
        }
        let refused = app.submit(&format!("{path}/consent"), &fields, &[]).await;
        assert_eq!(refused.status, 403, "{csrf:?}");
        assert!(
            refused.body.contains("This form has expired"),
            "{}",
            refused.body
        );
        assert!(refused.header("content-security-policy").is_some());
    }
    assert_eq!(
        check(&app, &biz.key, "marketing").await["reason"],
        "no_consent"
    );
    assert!(
        events_of_type(&app, &biz.key, "opt_in.recorded")
            .await
            .is_empty()
    );
    let erase = app
        .submit(&format!("{path}/erase"), &[("confirm", "yes")], &[])
        .await;
    assert_eq!(erase.status, 403);
    assert_eq!(app.page(&path, &[]).await.status, 200, "still there");
}

async fn expired_revoked_forged_and_erased_links_look_the_same(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (revoked_id, revoked) = app.preference_link(&biz.key, PHONE).await;
    app.delete(
        &format!("/v1/preference-links/{revoked_id}"),
        Some(&biz.key),
    )
    .await;
    let (expired_id, expired) = app.preference_link(&biz.key, "+31 6 5555 1111").await;
    expire_link(&app, &expired_id).await;
    let (_, erased) = app.preference_link(&biz.key, "+31 6 5555 2222").await;
    let res = app
        .post(
            "/v1/subjects/erase",
            Some(&biz.key),
            &json!({"phone": "+31 6 5555 2222"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let forged = format!("/p/cgp_{}", "A".repeat(43));
    let malformed = "/p/hello".to_owned();

    let mut bodies = Vec::new();
    for path in [&revoked, &expired, &erased, &forged, &malformed] {
        let page = app.page(path, &[]).await;
        assert_eq!(page.status, 410, "{path}");
        assert!(
            page.body.contains("This link has expired"),
            "{path}: {}",
            page.body
        );
        assert_eq!(
            page.header("referrer-policy").as_deref(),
            Some("no-referrer")
        );
        let token = path.trim_start_matches("/p/");
        bodies.push(page.body.replace(token, "TOKEN"));
        let post = app
            .submit(
                &format!("{path}/consent"),
                &[("category", "marketing"), ("choice", "out")],
                &[],
            )
            .await;
        assert_eq!(post.status, 410, "a post to a dead link: {path}");
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one page, whatever the cause"
    );
}

async fn erasing_through_the_page_kills_the_link(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (link_id, path) = app.preference_link(&biz.key, PHONE).await;
    let confirm = app.page(&format!("{path}/erase?lang=nl"), &[]).await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("Wat blijft, en waarom"),
        "{}",
        confirm.body
    );
    assert!(
        confirm.body.contains("eenrichtingscode"),
        "whatsapp-eu keeps a suppression marker"
    );
    let csrf = confirm.csrf();
    let without = app
        .submit(&format!("{path}/erase"), &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(without.status, 400, "erasure needs the confirmation");
    let done = app
        .submit(
            &format!("{path}/erase"),
            &[("csrf", &csrf), ("confirm", "yes"), ("lang", "nl")],
            &[],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("Uw gegevens zijn gewist"),
        "{}",
        done.body
    );
    let erased = events_of_type(&app, &biz.key, "subject.erased").await;
    assert_eq!(erased[0]["actor"], format!("link:{link_id}"));
    assert_eq!(erased[0]["data"]["request_reference"], "preference-center");
    assert_eq!(
        app.page(&path, &[]).await.status,
        410,
        "the link died with the subject"
    );
    app.delete(&format!("/v1/preference-links/{link_id}"), Some(&biz.key))
        .await
        .assert_problem(404, "not_found");
    assert_eq!(
        check(&app, &biz.key, "marketing").await["reason"],
        "suppressed"
    );
    let verify = app.get("/v1/audit/verify", Some(&biz.key)).await;
    assert_eq!(verify.body["valid"], true, "{}", verify.body);
}

async fn links_do_not_cross_businesses(app: TestApp) {
    let a = app.create_business("A", "whatsapp-eu").await;
    let b = app.create_business("B", "sms-us").await;
    let (a_link, a_path) = app.preference_link(&a.key, PHONE).await;
    app.delete(&format!("/v1/preference-links/{a_link}"), Some(&b.key))
        .await
        .assert_problem(404, "not_found");
    let page = app.page(&a_path, &[]).await;
    assert_eq!(page.status, 200);
    let csrf = page.csrf();
    app.submit(
        &format!("{a_path}/consent"),
        &[("csrf", &csrf), ("category", "utility"), ("choice", "in")],
        &[],
    )
    .await;
    assert_eq!(check(&app, &a.key, "utility").await["reason"], "consent");
    assert_eq!(
        check(&app, &b.key, "utility").await["reason"],
        "no_consent",
        "B's subject is untouched"
    );
    assert!(
        events_of_type(&app, &b.key, "opt_in.recorded")
            .await
            .is_empty()
    );
}

#[actix_web::test]
async fn form_posts_are_rate_limited_per_link() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.preference_posts_per_minute = 2)
        .await
        .unwrap();
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let (_, path) = app.preference_link(&biz.key, PHONE).await;
    let (_, other) = app.preference_link(&biz.key, "+31 6 1000 0008").await;
    let csrf = app.page(&path, &[]).await.csrf();
    for _ in 0..2 {
        let ok = app
            .submit(
                &format!("{path}/block"),
                &[("csrf", &csrf), ("choice", "stop")],
                &[],
            )
            .await;
        assert_eq!(ok.status, 200);
    }
    let limited = app
        .submit(
            &format!("{path}/block"),
            &[("csrf", &csrf), ("choice", "resume")],
            &[],
        )
        .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.header("retry-after").is_some());
    assert!(limited.body.contains("Too many requests"));
    assert_eq!(
        check(&app, &biz.key, "utility").await["reason"],
        "blocked",
        "the third post did nothing"
    );
    let other_csrf = app.page(&other, &[]).await.csrf();
    let ok = app
        .submit(
            &format!("{other}/block"),
            &[("csrf", &other_csrf), ("choice", "stop")],
            &[],
        )
        .await;
    assert_eq!(ok.status, 200, "each link has its own budget");
    assert_eq!(
        app.page(&path, &[]).await.status,
        200,
        "reading the page is not limited"
    );
}

#[actix_web::test]
async fn no_token_number_or_address_reaches_a_log_line() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await.unwrap();
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (_, path) = app.preference_link(&biz.key, "+31 6 4242 4242").await;
    let token = path.trim_start_matches("/p/").to_owned();
    let page = app.page(&path, &[("user-agent", "LogProbe/9.9")]).await;
    let csrf = page.csrf();
    app.submit(
        &format!("{path}/consent"),
        &[("csrf", &csrf), ("category", "marketing"), ("choice", "in")],
        &[("user-agent", "LogProbe/9.9")],
    )
    .await;
    app.page(&format!("/p/cgp_{}", "Z".repeat(43)), &[]).await;
    let logs = crate::helpers::captured_logs();
    assert!(
        logs.contains("\"route\":\"/p/{token}\""),
        "pages are logged by their route pattern"
    );
    for needle in [
        token.as_str(),
        "+31642424242",
        "642424242",
        "LogProbe",
        &"Z".repeat(43),
    ] {
        assert!(!logs.contains(needle), "{needle:?} reached a log line");
    }
}

/// Moves a link's expiry into the past (the API cannot make one that short).
pub async fn expire_link(app: &TestApp, id: &str) {
    let id = id.to_owned();
    let expired_at = chrono::Utc::now().naive_utc() - chrono::Duration::minutes(1);
    let sql = match app.store.backend() {
        consentgate::store::Backend::Sqlite => {
            "UPDATE preference_links SET expires_at = ? WHERE id = ?"
        }
        consentgate::store::Backend::Postgres => {
            "UPDATE preference_links SET expires_at = $1 WHERE id = $2"
        }
    };
    app.store
        .run(move |conn| {
            use diesel::RunQueryDsl;
            diesel::sql_query(sql)
                .bind::<diesel::sql_types::Timestamp, _>(expired_at)
                .bind::<diesel::sql_types::Text, _>(id)
                .execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
}
