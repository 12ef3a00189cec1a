//! Opt-ins at a fixed rate (open loop, wrk2-style), for `bench/write_http.sh`:
//! request `i` is due at `start + i / rate` and its latency is counted from when
//! it was due, not from when it could be sent, so a stalled server cannot hide
//! its queue (no coordinated omission). Each request records an opt-in (web
//! evidence) for a fresh number, through a key picked in turn from KEYS.
//!
//! `cargo run --release --example write_load -- URL KEYS RATE SECONDS [CONNECTIONS] [PREFIX]`
//!
//! Prints `RESULT sent=.. non201=.. rate=.. p50_ms=.. p99_ms=.. max_ms=..`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().expect("base URL");
    let keys: Vec<String> = args
        .next()
        .expect("API keys, comma-separated")
        .split(',')
        .map(str::to_owned)
        .collect();
    let rate: f64 = args.next().and_then(|n| n.parse().ok()).expect("rate");
    let seconds: f64 = args.next().and_then(|n| n.parse().ok()).expect("seconds");
    let connections: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(64);
    let prefix: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(0) % 10;
    let total = (rate * seconds) as u64;
    actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .connector(awc::Connector::new().limit(connections))
            .finish();
        let collected_at = chrono::Utc::now().to_rfc3339();
        let start = Instant::now();
        let results: Vec<(bool, Duration, Duration, Duration)> =
            futures_util::stream::iter(0..total)
                .map(|i| {
                    let (client, base, keys, collected_at) = (&client, &base, &keys, &collected_at);
                    async move {
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        actix_web::rt::time::sleep_until(due.into()).await;
                        let woke = due.elapsed();
                        let res = client
                            .post(format!("{base}/v1/opt-ins"))
                            .insert_header((
                                "authorization",
                                format!("Bearer {}", keys[i as usize % keys.len()]),
                            ))
                            .send_json(&json!({
                                "phone": format!("+3164{prefix}{i:06}"),
                                "categories": ["utility"],
                                "channel": "web",
                                "evidence": {
                                    "collected_at": collected_at,
                                    "consent_text_version": "bench-v1",
                                    "source_url": "https://bench.example/signup",
                                },
                            }))
                            .await;
                        // The answer is read to its end: awc puts a connection back in
                        // its pool only then, and drops (closes) it otherwise, which made
                        // this a new TCP connection per request.
                        let ok = match res {
                            Ok(mut r) => r.status().as_u16() == 201 && r.body().await.is_ok(),
                            Err(_) => false,
                        };
                        (ok, due.elapsed(), woke, due - start)
                    }
                })
                // Enough in flight that no request waits for an earlier one to be
                // sent; the connector bounds the connections.
                .buffer_unordered(connections * 64)
                .collect()
                .await;
        let elapsed = start.elapsed().as_secs_f64();
        let non201 = results.iter().filter(|(ok, ..)| !ok).count();
        if let Ok(path) = std::env::var("WRITE_LOAD_DUMP") {
            use std::io::Write;
            let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("dump"));
            let epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                - start.elapsed().as_secs_f64();
            for (ok, l, w, d) in &results {
                writeln!(
                    f,
                    "{:.4} {:.3} {:.3} {}",
                    epoch + d.as_secs_f64(),
                    l.as_secs_f64() * 1e3,
                    w.as_secs_f64() * 1e3,
                    ok
                )
                .unwrap();
            }
        }
        let mut latencies: Vec<Duration> = results.iter().map(|(_, l, ..)| *l).collect();
        latencies.sort_unstable();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0
        };
        println!(
            "RESULT sent={} non201={non201} rate={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            results.len(),
            results.len() as f64 / elapsed,
            pct(0.5),
            pct(0.99),
            pct(1.0),
        );
    });
}
