//! The two-node race of `bench/race.sh` (issue 10, SPEC 8): withdrawals through
//! one node, checks through another, counting stale allows.
//!
//! Each race takes a fresh number, records an opt-in for it through one node
//! (alternating), waits for the other node to see it (the opt-in lag, measured),
//! then withdraws it through one node (a revocation, a block or an inbound STOP, in
//! turn) and, the moment that write is acknowledged, checks it through the *other*
//! node. An `allowed: true` there is a stale allow: a withdrawal acknowledged by
//! one node and not honoured by another's next check.
//!
//! `cargo run --release --example race -- NODE_A NODE_B KEY RACES [CONCURRENCY]`
//! prints one line of counts and lag percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

struct Nodes {
    urls: [String; 2],
    key: String,
    client: awc::Client,
}

impl Nodes {
    async fn post(&self, node: usize, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let mut res = self
            .client
            .post(format!("{}{path}", self.urls[node]))
            .insert_header(("authorization", format!("Bearer {}", self.key)))
            .send_json(body)
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let body = res.json::<Value>().await.map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    async fn allowed(&self, node: usize, phone: &str) -> Result<bool, String> {
        let (status, body) = self
            .post(
                node,
                "/v1/checks",
                &json!({"phone": phone, "category": "utility"}),
            )
            .await?;
        if status != 200 {
            return Err(format!("check answered {status}: {body}"));
        }
        Ok(body["allowed"] == true)
    }
}

#[derive(Default)]
struct Tally {
    races: AtomicU64,
    stale_allows: AtomicU64,
    errors: AtomicU64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let a = args.next().expect("node A URL");
    let b = args.next().expect("node B URL");
    let key = args.next().expect("API key");
    let races: u64 = args.next().and_then(|n| n.parse().ok()).expect("races");
    let concurrency: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(32);
    let started = Instant::now();
    actix_web::rt::System::new().block_on(async move {
        let nodes = Nodes {
            urls: [a, b],
            key,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        };
        let tally = Tally::default();
        let lags: std::cell::RefCell<Vec<u64>> = std::cell::RefCell::new(Vec::new());
        futures_util::stream::iter(0..races)
            .for_each_concurrent(concurrency, |i| {
                let (nodes, tally, lags) = (&nodes, &tally, &lags);
                async move {
                    match race(nodes, i).await {
                        Ok((stale, lag_us)) => {
                            tally.races.fetch_add(1, Ordering::Relaxed);
                            if stale {
                                tally.stale_allows.fetch_add(1, Ordering::Relaxed);
                                eprintln!("STALE ALLOW in race {i}");
                            }
                            lags.borrow_mut().push(lag_us);
                        }
                        Err(e) => {
                            tally.errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("race {i}: {e}");
                        }
                    }
                }
            })
            .await;
        let mut lags = lags.into_inner();
        lags.sort_unstable();
        let pct = |p: f64| {
            lags.get(((lags.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        println!(
            "RACES races={} stale_allows={} errors={} seconds={:.1} opt_in_lag_ms p50={:.2} p99={:.2} max={:.2}",
            tally.races.load(Ordering::Relaxed),
            tally.stale_allows.load(Ordering::Relaxed),
            tally.errors.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
        );
    });
}

/// One race; returns (stale allow?, opt-in lag in microseconds).
async fn race(nodes: &Nodes, i: u64) -> Result<(bool, u64), String> {
    let phone = format!("+3165{:07}", i % 10_000_000);
    let writer = (i % 2) as usize;
    let reader = 1 - writer;
    let (status, body) = nodes
        .post(
            writer,
            "/v1/opt-ins",
            &json!({
                "phone": phone,
                "categories": ["utility"],
                "channel": "web",
                "evidence": {
                    "collected_at": chrono::Utc::now().to_rfc3339(),
                    "consent_text_version": "race-v1",
                    "form_id": "race",
                },
            }),
        )
        .await?;
    if status != 201 {
        return Err(format!("opt-in answered {status}: {body}"));
    }
    // How long until the other node answers yes (an opt-in may show up a little
    // later: SPEC 8).
    let acked = Instant::now();
    let mut lag = None;
    for _ in 0..1000 {
        if nodes.allowed(reader, &phone).await? {
            lag = Some(acked.elapsed().as_micros() as u64);
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(1)).await;
    }
    let lag = lag.ok_or("the opt-in never showed up on the other node")?;
    // The withdrawal, through the node that wrote the opt-in or the other one.
    let withdraw_via = ((i / 2) % 2) as usize;
    let check_via = 1 - withdraw_via;
    let (path, body) = match i % 3 {
        0 => ("/v1/revocations", json!({"phone": phone, "channel": "app"})),
        1 => ("/v1/blocks", json!({"phone": phone})),
        _ => (
            "/v1/inbound-messages",
            json!({"phone": phone, "received_at": chrono::Utc::now().to_rfc3339(), "text": "STOP"}),
        ),
    };
    let (status, answer) = nodes.post(withdraw_via, path, &body).await?;
    if status != 201 {
        return Err(format!("{path} answered {status}: {answer}"));
    }
    // The very next check, through the other node.
    let stale = nodes.allowed(check_via, &phone).await?;
    Ok((stale, lag))
}
