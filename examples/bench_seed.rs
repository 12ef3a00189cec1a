//! Seeds a running service for the benchmarks under `bench/`: creates a business
//! (operator token) and records `N` opt-ins for `+3161<n:07>` (utility and
//! marketing, channel web) over HTTP, 32 at a time. Prints `BUSINESS_ID KEY` on
//! stdout.
//!
//! `cargo run --release --example bench_seed -- http://127.0.0.1:8080 OPERATOR_TOKEN 5000 [policy]`

use futures_util::StreamExt;
use serde_json::{Value, json};

fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().expect("base URL");
    let operator = args.next().expect("operator token");
    let numbers: u32 = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("how many numbers");
    let policy = args.next().unwrap_or_else(|| "whatsapp-global".into());
    actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .finish();
        let mut res = client
            .post(format!("{base}/v1/businesses"))
            .insert_header(("authorization", format!("Bearer {operator}")))
            .send_json(&json!({"name": "Bench", "policy": policy}))
            .await
            .expect("the service answers");
        let body: Value = res.json().await.expect("JSON");
        assert_eq!(res.status().as_u16(), 201, "{body}");
        let business = body["business"]["id"].as_str().unwrap().to_owned();
        let key = body["key"]["secret"].as_str().unwrap().to_owned();
        let collected_at = chrono::Utc::now().to_rfc3339();
        let failures = futures_util::stream::iter(0..numbers)
            .map(|n| {
                let client = &client;
                let (base, key, collected_at) = (&base, &key, &collected_at);
                async move {
                    let res = client
                        .post(format!("{base}/v1/opt-ins"))
                        .insert_header(("authorization", format!("Bearer {key}")))
                        .send_json(&json!({
                            "phone": format!("+3161{n:07}"),
                            "categories": ["utility", "marketing"],
                            "channel": "web",
                            "evidence": {
                                "collected_at": collected_at,
                                "consent_text_version": "bench-v1",
                                "source_url": "https://bench.example/signup",
                            },
                        }))
                        .await;
                    // Read to its end, so that awc keeps the connection.
                    match res {
                        Ok(mut r) => r.status().as_u16() != 201 || r.body().await.is_err(),
                        Err(_) => true,
                    }
                }
            })
            .buffer_unordered(32)
            .filter(|failed| std::future::ready(*failed))
            .count()
            .await;
        assert_eq!(failures, 0, "every opt-in was recorded");
        println!("{business} {key}");
    });
}
