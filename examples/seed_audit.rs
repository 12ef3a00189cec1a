//! Seeds one business's audit chain with N events through the service's own write
//! path (1,000 events per transaction), for the verification benchmark in
//! `bench/verify.sh`. Uses the same configuration as `consentgate` (env).
//!
//! `cargo run --release --example seed_audit -- 1000000` prints the business id.

use consentgate::audit::{EventType, NewEvent};
use consentgate::config::Settings;
use consentgate::domain::Actor;
use consentgate::startup;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let settings = Settings::from_env().expect("configuration");
    let prepared = startup::prepare(&settings).expect("store");
    let writer = prepared.writer();
    let hasher = consentgate::crypto::api_key::SecretHasher::derive(&prepared.master_key);
    let (business, key, _) =
        consentgate::ledger::keys::new_business(&hasher, "bench".into(), "whatsapp-eu".into());
    let mut conn = writer.store().conn().expect("connection");
    writer
        .create_business_blocking(&mut conn, &business, &key, Actor::Cli)
        .expect("business");
    let started = std::time::Instant::now();
    let mut written = 2;
    while written < n {
        let batch = (n - written).min(1_000);
        writer
            .write_unbatched_blocking(&mut conn, business.id, Actor::System, |_, _| {
                let events = (0..batch)
                    .map(|i| {
                        NewEvent::new(
                            EventType::KeyCreated,
                            serde_json::json!({"key_id": uuid::Uuid::now_v7(), "name": format!("bench-{i}"), "scopes": "checks:read"}),
                        )
                    })
                    .collect();
                Ok(((), events))
            })
            .expect("append");
        written += batch;
    }
    eprintln!(
        "seeded {written} events in {:.1} s ({:.0} events/s)",
        started.elapsed().as_secs_f64(),
        written as f64 / started.elapsed().as_secs_f64()
    );
    println!("{}", business.id);
}
