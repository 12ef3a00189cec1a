//! The campaign of `bench/campaign.sh` (issue 10, SPEC 9): `TOTAL` numbers checked
//! for `utility`, every fifth one of the `KNOWN` numbers `bench_seed` opted in
//! (`+3161<n:07>`), the rest valid numbers nobody opted in (`+3162<n:07>`).
//!
//! Two shapes, each timed from the first byte sent to the last byte received:
//! - `stream`: one `POST /v1/checks/stream`, the body sent as it is generated (64 KiB
//!   pieces) while answers come back; also the time to the first answer;
//! - `batch`: `POST /v1/checks/batch` with 10,000 numbers per request, 2 in flight
//!   (the shape of the starting figure).
//!
//! Every answer is counted: the run fails unless exactly the known numbers are
//! allowed and every other number is a `no_consent`.
//!
//! `cargo run --release --example campaign -- URL KEY KNOWN TOTAL stream|batch`

use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};

fn number(i: u64, known: u64) -> String {
    if i.is_multiple_of(5) {
        format!("+3161{:07}", (i / 5) % known)
    } else {
        format!("+3162{i:07}")
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().expect("base URL");
    let key = args.next().expect("API key");
    let known: u64 = args.next().and_then(|n| n.parse().ok()).expect("KNOWN");
    let total: u64 = args.next().and_then(|n| n.parse().ok()).expect("TOTAL");
    let shape = args.next().unwrap_or_else(|| "stream".into());
    let expected_allowed = total.div_ceil(5);
    actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(600))
            .finish();
        let started = Instant::now();
        let (allowed, answered, first) = match shape.as_str() {
            "stream" => stream(&client, &base, &key, known, total, started).await,
            "batch" => batch(&client, &base, &key, known, total).await,
            other => panic!("stream or batch, not {other}"),
        };
        let elapsed = started.elapsed();
        assert_eq!(answered, total, "every number was answered");
        assert_eq!(allowed, expected_allowed, "exactly the known numbers are allowed");
        println!(
            "RESULT shape={shape} numbers={total} seconds={:.3} first_answer_ms={} allowed={allowed}",
            elapsed.as_secs_f64(),
            first.map_or("-".to_owned(), |f| format!("{:.1}", f.as_secs_f64() * 1000.0)),
        );
    });
}

/// One streamed campaign. The client must be full duplex: the service answers each
/// chunk of lines before it reads the next, so a client that sent the whole body
/// before reading would stall once the socket buffers fill. hyper's HTTP/1.1
/// connection sends the body while the answers are read.
async fn stream(
    _client: &awc::Client,
    base: &str,
    key: &str,
    known: u64,
    total: u64,
    started: Instant,
) -> (u64, u64, Option<Duration>) {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    const PIECE: usize = 64 * 1024;
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("the service listens");
    tcp.set_nodelay(true).ok();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("HTTP/1.1 handshake");
    actix_web::rt::spawn(connection);
    let pieces = futures_util::stream::unfold(0u64, move |mut i| async move {
        if i >= total {
            return None;
        }
        let mut piece = String::with_capacity(PIECE + 64);
        while i < total && piece.len() < PIECE {
            piece.push_str("{\"phone\":\"");
            piece.push_str(&number(i, known));
            piece.push_str("\"}\n");
            i += 1;
        }
        Some((Ok::<_, std::io::Error>(Frame::data(Bytes::from(piece))), i))
    });
    let request = hyper::Request::post("/v1/checks/stream?category=utility")
        .header("host", &authority)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/x-ndjson")
        .body(StreamBody::new(pieces))
        .expect("a request");
    let res = sender
        .send_request(request)
        .await
        .expect("the service answers");
    assert_eq!(res.status().as_u16(), 200);
    let mut body = res.into_body();
    let mut first = None;
    let (mut allowed, mut answered) = (0u64, 0u64);
    let mut pending: Vec<u8> = Vec::new();
    let mut summary = None;
    while let Some(frame) = body.frame().await {
        let Ok(bytes) = frame.expect("the answer streams").into_data() else {
            continue;
        };
        first.get_or_insert_with(|| started.elapsed());
        pending.extend_from_slice(&bytes);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + end];
            start += end + 1;
            // Answer lines are small and fixed in shape: count without a full parse.
            if line.starts_with(b"{\"summary\"") {
                summary = Some(serde_json::from_slice::<Value>(line).expect("summary JSON"));
                continue;
            }
            answered += 1;
            if memchr(line, b"\"allowed\":true") {
                allowed += 1;
            } else {
                assert!(
                    memchr(line, b"\"reason\":\"no_consent\""),
                    "{}",
                    String::from_utf8_lossy(line)
                );
            }
        }
        pending.drain(..start);
    }
    let summary = summary.expect("the stream ends with its summary");
    assert_eq!(summary["summary"]["total"], json!(total));
    (allowed, answered, first)
}

fn memchr(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn batch(
    client: &awc::Client,
    base: &str,
    key: &str,
    known: u64,
    total: u64,
) -> (u64, u64, Option<Duration>) {
    const BATCH: u64 = 10_000;
    let results: Vec<(u64, u64)> = futures_util::stream::iter((0..total).step_by(BATCH as usize))
        .map(|from| async move {
            let phones: Vec<String> = (from..(from + BATCH).min(total))
                .map(|i| number(i, known))
                .collect();
            let mut res = client
                .post(format!("{base}/v1/checks/batch"))
                .insert_header(("authorization", format!("Bearer {key}")))
                .send_json(&json!({"category": "utility", "phones": phones}))
                .await
                .expect("the service answers");
            assert_eq!(res.status().as_u16(), 200);
            let body: Value = res.json().limit(64 << 20).await.expect("JSON");
            let results = body["results"].as_array().expect("results");
            let allowed = results
                .iter()
                .filter(|r| r["allowed"] == json!(true))
                .count();
            (allowed as u64, results.len() as u64)
        })
        .buffer_unordered(2)
        .collect()
        .await;
    let allowed = results.iter().map(|r| r.0).sum();
    let answered = results.iter().map(|r| r.1).sum();
    (allowed, answered, None)
}
