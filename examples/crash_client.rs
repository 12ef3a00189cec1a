//! The client of `bench/crash.sh` (issue 11, SPEC 9): concurrent writers that
//! keep recording opt-ins, revocations and blocks while the server is killed
//! with SIGKILL and restarted, then the checks that nothing acknowledged was
//! lost and nothing was stored twice or out of nowhere.
//!
//! `cargo run --release --example crash_client -- URL KEY ACK_LOG WRITERS SECONDS [PREFIX]`
//!
//! Each writer owns its numbers (`+31 6 1 PREFIX WRITER N`) and runs, per number,
//! a short random sequence of writes (an opt-in first, then opt-ins, revocations
//! and blocks), one at a time, each with its own Idempotency-Key. A write that
//! gets no answer, or a 5xx (the server is down or restarting), is sent again
//! with the same key and body until it is answered: so at the end every write
//! was acknowledged exactly once from the client's point of view. Every
//! acknowledgement is appended to ACK_LOG (one JSON line, flushed) as it arrives.
//! After SECONDS no new number is started; when every writer is done:
//! - the audit events are read back, and each stored opt-in, revocation and
//!   block is matched with an acknowledgement by its id: an acknowledged id not
//!   stored is a lost write; a stored id not acknowledged is a duplicate (its
//!   subject already holds as many of that kind as were requested) or a phantom;
//! - every number is checked (`utility`), and the answer compared with a replay
//!   of its acknowledged writes in order (blocked, consent, or neither).
//!
//! Prints `RESULT acked=.. lost=.. phantoms=.. duplicates=.. mismatches=..
//! retries=.. rejected=..` (and exits 1 when any of lost, phantoms, duplicates,
//! mismatches or rejected is not 0).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Op {
    OptIn,
    Revocation,
    Block,
}

impl Op {
    fn path(self) -> &'static str {
        match self {
            Op::OptIn => "/v1/opt-ins",
            Op::Revocation => "/v1/revocations",
            Op::Block => "/v1/blocks",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Op::OptIn => "opt_in.recorded",
            Op::Revocation => "consent.revoked",
            Op::Block => "subject.blocked",
        }
    }

    /// The field of the event's data that holds the written row's id.
    fn event_id_field(self) -> &'static str {
        match self {
            Op::OptIn => "opt_in_id",
            Op::Revocation => "revocation_id",
            Op::Block => "fact_id",
        }
    }
}

/// A small deterministic generator (no dependency needed for a test client).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An acknowledged write.
#[derive(Debug, Clone)]
struct Ack {
    phone: String,
    op: Op,
    id: String,
    subject_id: String,
}

#[derive(Default)]
struct Tally {
    retries: AtomicU64,
    rejected: AtomicU64,
}

struct Client {
    base: String,
    key: String,
    http: awc::Client,
    log: Mutex<std::fs::File>,
    tally: Tally,
}

impl Client {
    /// Sends until answered (the same Idempotency-Key and body every time); an
    /// answer other than 201 is a rejection (reported; none is expected).
    async fn write(&self, phone: &str, op: Op, key: &str, body: &Value) -> Option<Ack> {
        let started = Instant::now();
        loop {
            let sent = self
                .http
                .post(format!("{}{}", self.base, op.path()))
                .insert_header(("authorization", format!("Bearer {}", self.key)))
                .insert_header(("idempotency-key", key.to_owned()))
                .send_json(body)
                .await;
            let answered = match sent {
                Ok(mut res) => {
                    let status = res.status().as_u16();
                    let body = res.json::<Value>().limit(1 << 20).await.ok();
                    Some((status, body))
                }
                Err(_) => None,
            };
            match answered {
                Some((201 | 200, Some(answer))) => {
                    let ack = Ack {
                        phone: phone.to_owned(),
                        op,
                        id: answer["id"].as_str().unwrap_or_default().to_owned(),
                        subject_id: answer["subject_id"].as_str().unwrap_or_default().to_owned(),
                    };
                    let line = json!({
                        "key": key, "op": format!("{op:?}"), "phone": phone,
                        "id": ack.id, "subject_id": ack.subject_id,
                    });
                    let mut log = self.log.lock().unwrap();
                    writeln!(log, "{line}").expect("the ack log is writable");
                    log.flush().expect("the ack log is writable");
                    return Some(ack);
                }
                Some((status, answer)) if status < 500 && status != 429 => {
                    eprintln!("{op:?} rejected: {status} {answer:?}");
                    self.tally.rejected.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                // No answer, 5xx or 429: the server is down, restarting or busy.
                _ => {
                    if started.elapsed() > Duration::from_secs(120) {
                        eprintln!("{op:?} never answered");
                        self.tally.rejected.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    self.tally.retries.fetch_add(1, Ordering::Relaxed);
                    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn get(&self, path: &str) -> Value {
        loop {
            let res = self
                .http
                .get(format!("{}{path}", self.base))
                .insert_header(("authorization", format!("Bearer {}", self.key)))
                .send()
                .await;
            if let Ok(mut res) = res
                && res.status().as_u16() == 200
                && let Ok(body) = res.json::<Value>().limit(64 << 20).await
            {
                return body;
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn check(&self, phone: &str) -> Value {
        loop {
            let res = self
                .http
                .post(format!("{}/v1/checks", self.base))
                .insert_header(("authorization", format!("Bearer {}", self.key)))
                .send_json(&json!({"phone": phone, "category": "utility"}))
                .await;
            if let Ok(mut res) = res
                && res.status().as_u16() == 200
                && let Ok(body) = res.json::<Value>().await
            {
                return body;
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn body(op: Op, phone: &str, seq: u64) -> Value {
    let now = chrono::Utc::now().to_rfc3339();
    match op {
        Op::OptIn => json!({
            "phone": phone,
            "categories": ["utility"],
            "channel": "web",
            "evidence": {
                "collected_at": now,
                "consent_text_version": "crash-v1",
                "source_url": format!("https://crash.example/signup/{seq}"),
            },
        }),
        Op::Revocation => {
            json!({"phone": phone, "channel": "app", "evidence": {"collected_at": now}})
        }
        Op::Block => json!({"phone": phone, "evidence": {"collected_at": now}}),
    }
}

/// One writer: numbers one after another until `until`, a few writes each.
async fn writer(client: &Client, w: u64, prefix: u64, until: Instant) -> Vec<Ack> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut acks = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        let phone = format!("+3161{}{w:02}{n:04}", prefix % 10);
        n += 1;
        let writes = 1 + rng.below(3);
        for i in 0..writes {
            let op = match (i, rng.below(10)) {
                (0, _) => Op::OptIn,
                (_, 0..=4) => Op::OptIn,
                (_, 5..=7) => Op::Revocation,
                _ => Op::Block,
            };
            let key = format!("crash-{prefix}-{w}-{n}-{i}-{:x}", rng.next());
            if let Some(ack) = client.write(&phone, op, &key, &body(op, &phone, i)).await {
                acks.push(ack);
            }
        }
    }
    acks
}

/// What a replay of a number's acknowledged writes says a check answers.
fn expected(acks: &[&Ack]) -> (bool, Option<&'static str>) {
    let (mut consent, mut blocked) = (false, false);
    for ack in acks {
        match ack.op {
            Op::OptIn => consent = true,
            Op::Revocation => consent = false,
            Op::Block => blocked = true,
        }
    }
    if blocked {
        (false, Some("blocked"))
    } else if consent {
        (true, Some("consent"))
    } else {
        (false, None)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().expect("base URL");
    let key = args.next().expect("API key");
    let log_path = args.next().expect("ack log path");
    let writers: u64 = args.next().and_then(|n| n.parse().ok()).expect("writers");
    let seconds: u64 = args.next().and_then(|n| n.parse().ok()).expect("seconds");
    let prefix: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(0) % 100;
    let started = Instant::now();
    let failed = actix_web::rt::System::new().block_on(async move {
        let client = Client {
            base,
            key,
            http: awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish(),
            log: Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .expect("the ack log opens"),
            ),
            tally: Tally::default(),
        };
        let until = Instant::now() + Duration::from_secs(seconds);
        let client = &client;
        let all: Vec<Ack> =
            futures_util::future::join_all((0..writers).map(|w| writer(client, w, prefix, until)))
                .await
                .into_iter()
                .flatten()
                .collect();
        let load_secs = started.elapsed().as_secs_f64();

        // The chain, read back.
        let mut stored: Vec<(Op, String, String)> = Vec::new();
        let mut after = 0i64;
        loop {
            let page = client
                .get(&format!("/v1/audit/events?after={after}&limit=1000"))
                .await;
            for event in page["events"].as_array().into_iter().flatten() {
                for op in [Op::OptIn, Op::Revocation, Op::Block] {
                    if event["type"] == op.event_type() {
                        stored.push((
                            op,
                            event["data"][op.event_id_field()]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            event["subject_id"].as_str().unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
            match page["next_after"].as_i64() {
                Some(next) => after = next,
                None => break,
            }
        }
        let acked: HashSet<&str> = all.iter().map(|a| a.id.as_str()).collect();
        let stored_ids: HashSet<&str> = stored.iter().map(|(_, id, _)| id.as_str()).collect();
        let lost = acked.iter().filter(|id| !stored_ids.contains(*id)).count();
        let mut requested: HashMap<(&str, Op), usize> = HashMap::new();
        for ack in &all {
            *requested
                .entry((ack.subject_id.as_str(), ack.op))
                .or_default() += 1;
        }
        let mut held: HashMap<(&str, Op), usize> = HashMap::new();
        for (op, _, subject) in &stored {
            *held.entry((subject.as_str(), *op)).or_default() += 1;
        }
        let (mut phantoms, mut duplicates) = (0, 0);
        for (op, id, subject) in &stored {
            if acked.contains(id.as_str()) {
                continue;
            }
            let key = (subject.as_str(), *op);
            if requested.get(&key).is_some_and(|r| held[&key] > *r) {
                duplicates += 1;
            } else {
                phantoms += 1;
            }
        }

        // The state checks answer, against a replay of the acknowledged writes.
        let mut by_phone: HashMap<&str, Vec<&Ack>> = HashMap::new();
        for ack in &all {
            by_phone.entry(ack.phone.as_str()).or_default().push(ack);
        }
        let mismatches = AtomicU64::new(0);
        let phones: Vec<(&str, Vec<&Ack>)> = by_phone.into_iter().collect();
        futures_util::stream::StreamExt::for_each_concurrent(
            futures_util::stream::iter(phones.iter()),
            32,
            |(phone, acks)| {
                let mismatches = &mismatches;
                async move {
                    let answer = client.check(phone).await;
                    let (allowed, reason) = expected(acks);
                    let ok = answer["allowed"] == allowed
                        && reason.is_none_or(|r| answer["reason"] == r);
                    if !ok {
                        eprintln!(
                            "MISMATCH: expected allowed={allowed} reason={reason:?}, got {answer}"
                        );
                        mismatches.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
        )
        .await;
        let mismatches = mismatches.into_inner();
        let rejected = client.tally.rejected.load(Ordering::Relaxed);
        println!(
            "RESULT acked={} numbers={} lost={lost} phantoms={phantoms} duplicates={duplicates} \
             mismatches={mismatches} retries={} rejected={rejected} load_seconds={load_secs:.1} \
             acked_per_second={:.0}",
            all.len(),
            phones.len(),
            client.tally.retries.load(Ordering::Relaxed),
            all.len() as f64 / load_secs,
        );
        lost + phantoms + duplicates + mismatches as usize + rejected as usize > 0
    });
    std::process::exit(i32::from(failed));
}
