//! The baseline for `bench/check_http.sh`: a plain actix-web handler that parses
//! the same JSON body as `POST /v1/checks` and answers a JSON of the same shape and
//! size from a `HashMap`, with nothing else (no auth, no metrics, no logging, no
//! consent logic). What the service reaches beside it, in the same build profile
//! on the same machine, is the figure issue 10 asks for.
//!
//! `cargo run --release --example http_baseline -- 127.0.0.1:8090 5000`
//! (address, then how many numbers the map holds: `+3161<n:07>`).

use std::collections::HashMap;

use actix_web::{App, HttpResponse, HttpServer, post, web};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[allow(dead_code)]
struct CheckRequest {
    phone: String,
    default_region: Option<String>,
    category: String,
    as_of: Option<String>,
}

#[derive(Clone, Serialize)]
struct Basis {
    #[serde(rename = "type")]
    kind: &'static str,
    opt_in_id: String,
}

#[derive(Clone, Serialize)]
struct Price {
    currency: &'static str,
    amount: &'static str,
    estimate: bool,
}

#[derive(Clone, Serialize)]
struct Policy {
    name: &'static str,
    version: &'static str,
}

/// The same fields as consentgate's `CheckResponse`.
#[derive(Clone, Serialize)]
struct CheckResponse {
    allowed: bool,
    reason: &'static str,
    basis: Option<Basis>,
    billable: bool,
    price: Option<Price>,
    window_expires_at: Option<String>,
    policy: Policy,
    decision_id: String,
    evaluated_at: String,
    as_of: String,
}

#[post("/v1/checks")]
async fn check(
    map: web::Data<HashMap<String, CheckResponse>>,
    body: web::Json<CheckRequest>,
) -> HttpResponse {
    let answer = map.get(&body.phone).cloned().unwrap_or(CheckResponse {
        allowed: false,
        reason: "no_consent",
        basis: None,
        billable: false,
        price: None,
        window_expires_at: None,
        policy: Policy {
            name: "whatsapp-global",
            version: "2026-11-01+sha256:0123456789ab",
        },
        decision_id: "019ad1f0-0000-7000-8000-000000000000".into(),
        evaluated_at: "2026-12-02T18:00:00.000000Z".into(),
        as_of: "2026-12-02T18:00:00.000000Z".into(),
    });
    HttpResponse::Ok().json(answer)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let numbers: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(5000);
    let map: HashMap<String, CheckResponse> = (0..numbers)
        .map(|n| {
            (
                format!("+3161{n:07}"),
                CheckResponse {
                    allowed: true,
                    reason: "consent",
                    basis: Some(Basis {
                        kind: "opt_in",
                        opt_in_id: format!("019ad1f0-{n:04x}-7000-8000-000000000000"),
                    }),
                    billable: true,
                    price: Some(Price {
                        currency: "EUR",
                        amount: "0.0500",
                        estimate: true,
                    }),
                    window_expires_at: None,
                    policy: Policy {
                        name: "whatsapp-global",
                        version: "2026-11-01+sha256:0123456789ab",
                    },
                    decision_id: "019ad1f0-0000-7000-8000-000000000000".into(),
                    evaluated_at: "2026-12-02T18:00:00.000000Z".into(),
                    as_of: "2026-12-02T18:00:00.000000Z".into(),
                },
            )
        })
        .collect();
    let map = web::Data::new(map);
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || App::new().app_data(map.clone()).service(check))
            .bind(bind)?
            .run()
            .await
    })
}
