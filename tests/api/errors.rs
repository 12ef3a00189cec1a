//! Every error class answers RFC 9457 problem+json with a stable code, including
//! the ones actix produces itself; no 5xx for anything a client can send.

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    actix_error_classes_answer_problem_json,
    bad_business_input_is_422_and_stores_nothing,
);

async fn actix_error_classes_answer_problem_json(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let client = app.client();
    let url = |p: &str| format!("{}{p}", app.address);
    let auth = ("authorization", format!("Bearer {}", biz.key));

    // Malformed JSON: 400.
    let res = send(
        client
            .post(url("/v1/keys"))
            .insert_header(auth.clone())
            .content_type("application/json"),
        "{\"name\":",
    )
    .await;
    res.assert_problem(400, "malformed_body");
    // Wrong content type: 415.
    let res = send(
        client
            .post(url("/v1/keys"))
            .insert_header(auth.clone())
            .content_type("text/plain"),
        "{}",
    )
    .await;
    res.assert_problem(415, "unsupported_media_type");
    // No content type at all: 415.
    let res = send(
        client.post(url("/v1/keys")).insert_header(auth.clone()),
        "{}",
    )
    .await;
    res.assert_problem(415, "unsupported_media_type");
    // Too large (the test app allows 64 KiB): 413.
    let big = format!("{{\"name\":\"{}\",\"scopes\":[]}}", "x".repeat(70 * 1024));
    let res = send(
        client
            .post(url("/v1/keys"))
            .insert_header(auth.clone())
            .content_type("application/json"),
        big,
    )
    .await;
    res.assert_problem(413, "payload_too_large");
    // Unknown route: 404.
    app.get("/v1/nothing-here", Some(&biz.key))
        .await
        .assert_problem(404, "not_found");
    app.get("/", None).await.assert_problem(404, "not_found");
    // Known route, wrong method: 405 with Allow.
    let res = app
        .request(awc::http::Method::PUT, "/v1/keys", Some(&biz.key), None)
        .await;
    res.assert_problem(405, "method_not_allowed");
    assert_eq!(res.header("allow").as_deref(), Some("GET, POST"));
    let res = app
        .request(
            awc::http::Method::PATCH,
            &format!("/v1/keys/{}", biz.key_id),
            Some(&biz.key),
            None,
        )
        .await;
    res.assert_problem(405, "method_not_allowed");
    assert_eq!(res.header("allow").as_deref(), Some("DELETE"));
    // A path segment of the wrong shape: 404, like an unknown id.
    app.delete("/v1/keys/%ZZ", Some(&biz.key))
        .await
        .assert_problem(404, "not_found");
    // Empty body: 400.
    let res = send(
        client
            .post(url("/v1/keys"))
            .insert_header(auth.clone())
            .content_type("application/json"),
        "",
    )
    .await;
    res.assert_problem(400, "malformed_body");
}

async fn send(req: awc::ClientRequest, body: impl Into<String>) -> crate::helpers::Resp {
    let mut res = req.send_body(body.into()).await.unwrap();
    let bytes = res.body().await.unwrap();
    crate::helpers::Resp {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

async fn bad_business_input_is_422_and_stores_nothing(app: TestApp) {
    let token = app.operator_token.clone();
    let res = app
        .post(
            "/v1/businesses",
            Some(&token),
            &serde_json::json!({"name": " ", "policy": "no-such"}),
        )
        .await;
    res.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = res.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["name", "policy"]);
    assert!(
        res.body["errors"][1]["message"]
            .as_str()
            .unwrap()
            .contains("whatsapp-eu"),
        "lists the known policies"
    );
    let businesses = app
        .store
        .run(|conn| {
            use diesel::prelude::*;
            Ok(consentgate::store::schema::businesses::table
                .count()
                .get_result::<i64>(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(businesses, 0);
}
