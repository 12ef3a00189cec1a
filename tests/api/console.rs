//! The auditor console at HTTP level (SPEC section 11), on both backends:
//! sign-in with a key that has `audit:read`, the session cookie (HttpOnly,
//! SameSite=Strict, expiring, never the key), CSRF on every form, the API's
//! filters and paging, verification in words, checkpoints, export, sign-out,
//! and a revoked key ending its sessions. The browser flow is in `browser.rs`.

use serde_json::json;

use crate::backend_tests;
use crate::helpers::{Page, TestApp};

backend_tests!(
    signing_in_takes_an_audit_key_once_and_keeps_only_a_session,
    the_console_filters_pages_verifies_and_exports_like_the_api,
    signing_out_or_revoking_the_key_ends_the_session,
);

/// Signs in with `key`; returns the session cookie (`cg_console=...`).
pub async fn sign_in(app: &TestApp, key: &str) -> Result<String, Page> {
    let form = app.page("/console", &[]).await;
    let pre = form
        .cookie("cg_signin")
        .expect("the sign-in form sets its CSRF cookie");
    let cookie = format!("cg_signin={pre}");
    let csrf = form.csrf();
    let res = app
        .submit(
            "/console/sign-in",
            &[("csrf", &csrf), ("key", key), ("lang", "en")],
            &[("cookie", &cookie)],
        )
        .await;
    match res.cookie("cg_console") {
        Some(session) if res.status == 303 => Ok(format!("cg_console={session}")),
        _ => Err(res),
    }
}

async fn signing_in_takes_an_audit_key_once_and_keeps_only_a_session(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (_, writer) = app
        .create_key(&biz.key, "writer", &["consents:write"])
        .await;
    let (_, auditor) = app.create_key(&biz.key, "auditor", &["audit:read"]).await;

    let form = app.page("/console", &[("accept-language", "it")]).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("<html lang=\"it\">"));
    assert!(
        form.body.contains("type=\"password\""),
        "the key field is masked"
    );
    assert_eq!(form.header("x-frame-options").as_deref(), Some("DENY"));
    let pre = form.set_cookies().join(" | ");
    assert!(
        pre.contains("HttpOnly") && pre.contains("SameSite=Strict"),
        "{pre}"
    );

    let wrong = sign_in(&app, "cg_00000000000000000000000000000000_nope")
        .await
        .unwrap_err();
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.body.contains("This key was not accepted"),
        "{}",
        wrong.body
    );
    let no_scope = sign_in(&app, &writer).await.unwrap_err();
    assert_eq!(no_scope.status, 403);
    assert!(no_scope.body.contains("audit:read"));

    // Without the pre-session cookie, or without the CSRF field: refused.
    let csrf = form.csrf();
    let no_cookie = app
        .submit(
            "/console/sign-in",
            &[("csrf", &csrf), ("key", &auditor)],
            &[],
        )
        .await;
    assert_eq!(no_cookie.status, 403);
    assert!(no_cookie.cookie("cg_console").is_none());
    let pre = form.cookie("cg_signin").unwrap();
    let no_csrf = app
        .submit(
            "/console/sign-in",
            &[("key", &auditor)],
            &[("cookie", &format!("cg_signin={pre}"))],
        )
        .await;
    assert_eq!(no_csrf.status, 403);

    let cookie = sign_in(&app, &auditor)
        .await
        .expect("an audit key signs in");
    let session = cookie.trim_start_matches("cg_console=");
    assert!(!session.is_empty());
    assert!(
        !auditor.contains(session) && !session.contains(&auditor[..20]),
        "the cookie is not the key"
    );
    let res = {
        let form = app.page("/console", &[]).await;
        let pre = form.cookie("cg_signin").unwrap();
        app.submit(
            "/console/sign-in",
            &[("csrf", &form.csrf()), ("key", &auditor)],
            &[("cookie", &format!("cg_signin={pre}"))],
        )
        .await
    };
    let set = res
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("cg_console="))
        .unwrap();
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=3600",
        "Path=/console",
    ] {
        assert!(set.contains(part), "{set}");
    }
    assert!(
        res.header("location").unwrap().starts_with("/console"),
        "no key in any URL"
    );

    let signed_in = app.page("/console", &[("cookie", &cookie)]).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert!(
        signed_in.body.contains("Signed in for Acme"),
        "{}",
        signed_in.body
    );
    let raw = crate::privacy::raw_database_text(&app).await;
    assert!(
        !raw.contains(session),
        "only the session id's hash is stored"
    );
    let logs = crate::helpers::captured_logs();
    assert!(
        !logs.contains(session) && !logs.contains(&auditor),
        "neither reaches a log line"
    );
}

async fn the_console_filters_pages_verifies_and_exports_like_the_api(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    for n in 0..3 {
        let res = app
            .post(
                "/v1/revocations",
                Some(&biz.key),
                &json!({"phone": format!("+31 6 1000 000{n}"), "channel": "api"}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
    let cookie = sign_in(&app, &biz.key).await.unwrap();
    let session = [("cookie", cookie.as_str())];

    let filtered = app
        .page("/console?type=consent.revoked&limit=2", &session)
        .await;
    assert_eq!(filtered.status, 200);
    assert_eq!(
        filtered
            .body
            .matches("<td class=\"type\">consent.revoked</td>")
            .count(),
        2
    );
    assert!(
        !filtered
            .body
            .contains("<td class=\"type\">business.created</td>")
    );
    let next = filtered
        .body
        .split("id=\"next-page\"")
        .next()
        .and_then(|before| before.rsplit("href=\"").next())
        .map(|href| {
            href.trim_end_matches("\" ")
                .replace("&#38;", "&")
                .replace("&amp;", "&")
        })
        .unwrap();
    assert!(
        next.contains("type=consent.revoked") && next.contains("after="),
        "{next}"
    );
    let second = app.page(&next, &session).await;
    assert_eq!(
        second
            .body
            .matches("<td class=\"type\">consent.revoked</td>")
            .count(),
        1
    );
    assert!(!second.body.contains("id=\"next-page\""), "the last page");

    let bad = app
        .page("/console?subject_id=nope&from=yesterday&limit=0", &session)
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("aria-invalid=\"true\""), "{}", bad.body);

    let total = app.get("/v1/audit/verify", Some(&biz.key)).await.body["checked"]
        .as_u64()
        .unwrap();
    let verify_form = app.page("/console/verify?lang=de", &session).await;
    let verified = app
        .submit(
            "/console/verify",
            &[("csrf", &verify_form.csrf()), ("lang", "de")],
            &session,
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert!(
        verified
            .body
            .contains(&format!("Die Kette ist intakt: Alle {total} Ereignisse")),
        "{}",
        verified.body
    );
    let refused = app.submit("/console/verify", &[], &session).await;
    assert_eq!(refused.status, 403, "no CSRF token, no verification");

    let checkpoints = app.page("/console/checkpoints", &session).await;
    assert_eq!(checkpoints.status, 200);
    assert!(checkpoints.body.contains("BEGIN PUBLIC KEY"));

    let export_form = app.page("/console/export", &session).await;
    let download = app
        .submit(
            "/console/export",
            &[("csrf", &export_form.csrf())],
            &session,
        )
        .await;
    assert_eq!(download.status, 200);
    assert_eq!(
        download.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    assert!(
        download
            .header("content-disposition")
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(download.body.lines().count() as u64, total);
    let bad_range = app
        .submit(
            "/console/export",
            &[
                ("csrf", &export_form.csrf()),
                ("from", "2026-12-02T10:00"),
                ("to", "2026-12-01T10:00"),
            ],
            &session,
        )
        .await;
    assert_eq!(bad_range.status, 422);

    // Another business's auditor sees only their own chain.
    let other = app.create_business("Other", "sms-us").await;
    let other_cookie = sign_in(&app, &other.key).await.unwrap();
    let theirs = app.page("/console", &[("cookie", &other_cookie)]).await;
    assert!(!theirs.body.contains("consent.revoked</td>"));
    assert!(theirs.body.contains("Signed in for Other"));
}

async fn signing_out_or_revoking_the_key_ends_the_session(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (key_id, auditor) = app.create_key(&biz.key, "auditor", &["audit:read"]).await;
    let cookie = sign_in(&app, &auditor).await.unwrap();
    let session = [("cookie", cookie.as_str())];
    let page = app.page("/console", &session).await;
    let no_csrf = app.submit("/console/sign-out", &[], &session).await;
    assert_eq!(no_csrf.status, 403, "sign-out needs its CSRF token too");
    let out = app
        .submit("/console/sign-out", &[("csrf", &page.csrf())], &session)
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out.body.contains("You are signed out"));
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with("cg_console=;") && c.contains("Max-Age=0"))
    );
    let after = app.page("/console/checkpoints", &session).await;
    assert_eq!(after.status, 401, "the old cookie opens nothing");
    assert!(after.body.contains("Your session has ended"));

    let cookie = sign_in(&app, &auditor).await.unwrap();
    assert_eq!(
        app.page("/console", &[("cookie", &cookie)]).await.status,
        200
    );
    let revoked = app
        .delete(&format!("/v1/keys/{key_id}"), Some(&biz.key))
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let after = app.page("/console/verify", &[("cookie", &cookie)]).await;
    assert_eq!(after.status, 401, "a revoked key ends its sessions at once");
}
