//! Criterion benchmarks of the pieces a live check is made of (issue 10):
//! the decision over a packed projection and over a full history, phone parsing
//! (full and the E.164 fast path), and the subject pseudonym.
//!
//! `cargo bench --bench hot_path`

use std::hint::black_box;
use std::time::Instant;

use chrono::{Duration, Utc};
use consentgate::crypto::master_key::MasterKey;
use consentgate::crypto::pseudonym::PseudonymKey;
use consentgate::domain::history::{Fact, OptInFact, SubjectHistory};
use consentgate::domain::phone::{E164Candidate, Phone};
use consentgate::policy::{LiveState, Moment, PolicySet, SubjectState, decide};
use criterion::{Criterion, criterion_group, criterion_main};
use uuid::Uuid;

fn history() -> SubjectHistory {
    let t0 = Utc::now() - Duration::days(30);
    SubjectHistory::new(vec![
        Fact::OptIn(OptInFact {
            id: Uuid::now_v7(),
            categories: vec!["marketing".into(), "utility".into()],
            collected_at: t0,
            recorded_at: t0,
            confirmed_on_record: false,
        }),
        Fact::Inbound {
            received_at: t0 + Duration::days(1),
            recorded_at: t0 + Duration::days(1),
            entry_point: None,
        },
        Fact::Revocation {
            id: Uuid::now_v7(),
            categories: Some(vec!["marketing".into()]),
            at: t0 + Duration::days(2),
            recorded_at: t0 + Duration::days(2),
            by_keyword: false,
        },
    ])
}

fn decisions(c: &mut Criterion) {
    let policies = PolicySet::shipped();
    let policy = policies.get("whatsapp-global").unwrap();
    let utility = policy.category("utility").unwrap();
    let history = history();
    let now = Utc::now();
    c.bench_function("decide/full_history_3_facts", |b| {
        b.iter(|| {
            decide(
                black_box(&history),
                &policy,
                &utility,
                Some(31),
                Moment::Live(now),
            )
        })
    });
    let summary = SubjectState::fold(&history, &policy, Moment::Live(now)).summary(&policy);
    let packed = LiveState::pack(&summary).unwrap();
    let index = policy.category_index(&utility).unwrap();
    c.bench_function("decide/packed_projection", |b| {
        b.iter(|| {
            black_box(&packed).verdict(index).decide(
                &policy,
                &utility,
                packed.blocked(),
                None,
                Some(31),
                now,
            )
        })
    });
}

fn phones(c: &mut Criterion) {
    // `parse_*` is Phone::parse (E.164 input takes the metadata shortcut);
    // `library_*` is the library alone, which Phone::parse was before it.
    c.bench_function("phone/parse_e164", |b| {
        b.iter(|| Phone::parse(black_box("+31612345678"), None))
    });
    c.bench_function("phone/library_parse_e164", |b| {
        b.iter(|| Phone::parse_with_library(black_box("+31612345678"), None))
    });
    c.bench_function("phone/parse_e164_invalid", |b| {
        b.iter(|| Phone::parse(black_box("+3161234567"), None))
    });
    c.bench_function("phone/library_parse_e164_invalid", |b| {
        b.iter(|| Phone::parse_with_library(black_box("+3161234567"), None))
    });
    c.bench_function("phone/parse_e164_nanp", |b| {
        b.iter(|| Phone::parse(black_box("+14155552671"), None))
    });
    c.bench_function("phone/library_parse_e164_nanp", |b| {
        b.iter(|| Phone::parse_with_library(black_box("+14155552671"), None))
    });
    c.bench_function("phone/parse_national_with_region", |b| {
        b.iter(|| Phone::parse(black_box("06 12345678"), Some("NL")))
    });
    c.bench_function("phone/recognise_e164_fast_path", |b| {
        b.iter(|| E164Candidate::recognise(black_box("+31612345678")))
    });
    c.bench_function("phone/e164_validity", |b| {
        let candidate = E164Candidate::recognise("+31621234567").unwrap();
        b.iter(|| black_box(candidate).validity())
    });
    // Two threads parsing at once, as find_all does for a campaign, each half of
    // the numbers: wall time per number, so perfect scaling shows half the
    // one-thread figure. The library's regex cache is one mutex per process.
    for (name, parse) in [
        (
            "phone/parse_e164_2_threads",
            Phone::parse as fn(&str, Option<&str>) -> _,
        ),
        (
            "phone/library_parse_e164_2_threads",
            Phone::parse_with_library,
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..2 {
                        scope.spawn(|| {
                            for _ in 0..iters / 2 {
                                let _ = black_box(parse(black_box("+31621234567"), None));
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
}

fn pseudonyms(c: &mut Criterion) {
    let key = PseudonymKey::derive(&MasterKey::generate(), Uuid::now_v7());
    let phone = Phone::parse("+31612345678", None).unwrap();
    c.bench_function("pseudonym/hmac_sha256", |b| {
        b.iter(|| key.pseudonym(black_box(&phone)))
    });
    c.bench_function("pseudonym/derive_business_key", |b| {
        let master = MasterKey::generate();
        b.iter(|| PseudonymKey::derive(&master, black_box(Uuid::nil())))
    });
}

criterion_group!(benches, decisions, phones, pseudonyms);
criterion_main!(benches);
