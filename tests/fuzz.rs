//! Property-based fuzzing of every parser a client or a file can reach (issue 9):
//! phone input, evidence, withdrawal and webhook bodies, policy files, the audit
//! chain verifier, keyword matching and JSON request bodies. Each target feeds arbitrary strings, bytes
//! or structured junk and asserts that nothing panics and that what parses obeys
//! its invariants.
//!
//! `cargo test --test fuzz` runs a small number of cases per target (64 unless
//! `PROPTEST_CASES` says otherwise); `bench/fuzz.sh` runs each target with
//! `PROPTEST_CASES=1000000` in release. One binary of its own, so that the
//! script does not build the integration suite in release.

use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use consentgate::audit::StoredEvent;
use consentgate::audit::verify::Verifier;
use consentgate::crypto::chain::{GENESIS, event_hash};
use consentgate::domain::evidence::{Channel, Evidence, Limits, Strictness};
use consentgate::domain::phone::{E164Candidate, Phone};
use consentgate::http::error::ApiError;
use consentgate::http::extract::parse_json;
use consentgate::policy::keywords::{common_form, opt_out_form};
use consentgate::policy::model::{KeywordKind, Policy};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Cases per target: `PROPTEST_CASES` (the fuzz script), else a few, so that
/// every target stays well under a few seconds in a debug build.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    // Failures are shrunk, printed and kept in proptest-regressions/ like the
    // others, and replayed first on the next run.
    Config::with_cases(cases)
}

// ---------------------------------------------------------------- phone input

const REGIONS: &str = "(NL|DE|US|GB|IT|FR|ES|BR|IN|JP|ZZ|nl|001|[A-Za-z]{0,3}|\\PC{0,3})";

/// Input that looks like a phone number more often than random text does:
/// digits of several scripts, separators, prefixes.
fn phone_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,64}",
        "[+0-9\u{660}-\u{669}\u{6f0}-\u{6f9}\u{ff10}-\u{ff19}\u{ff0b} ()./x#*;ext-]{0,40}",
        "(\\+|00|0|)[1-9][0-9]{0,16}",
        "(\\+|00)[1-9][0-9 ]{6,20}(;ext=[0-9]{1,5}| x[0-9]{1,4}|)",
    ]
}

fn check_phone(input: &str, region: Option<&str>) -> Result<(), TestCaseError> {
    let Ok(phone) = Phone::parse(input, region) else {
        return Ok(());
    };
    let e164 = phone.as_e164();
    // A valid E.164 number: `+`, no leading zero, at most 15 digits.
    prop_assert!(e164.starts_with('+'));
    let digits = &e164[1..];
    prop_assert!((2..=15).contains(&digits.len()), "{} digits", digits.len());
    prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    prop_assert!(!digits.starts_with('0'));
    prop_assert!(digits.starts_with(&phone.calling_code().to_string()));
    // Parsing the output gives the same number, with or without a region.
    let again = Phone::parse(e164, None);
    prop_assert_eq!(again.as_ref(), Ok(&phone));
    let again = Phone::parse(e164, Some("NL"));
    prop_assert_eq!(again.as_ref(), Ok(&phone));
    // The check path's fast recogniser agrees with the parser on its output.
    if digits.len() >= 8 {
        let candidate = E164Candidate::recognise(e164);
        prop_assert!(candidate.is_some(), "the fast path recognises its own form");
        prop_assert_eq!(candidate.unwrap().calling_code(), phone.calling_code());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_phone_parse(input in phone_like(), region in proptest::option::of(REGIONS)) {
        check_phone(&input, region.as_deref())?;
    }

    #[test]
    fn fuzz_phone_recognise(input in phone_like()) {
        // The fast path must never panic on slicing, and what it accepts has the
        // exact E.164 shape.
        if let Some(candidate) = E164Candidate::recognise(&input) {
            prop_assert_eq!(candidate.as_str(), input.as_str());
            prop_assert!(input.starts_with('+'));
            prop_assert!(input[1..].bytes().all(|b| b.is_ascii_digit()));
        }
    }
}

// ------------------------------------------------------------------- evidence

const EVIDENCE_KEYS: &[&str] = &[
    "collected_at",
    "consent_text_version",
    "source_url",
    "form_id",
    "ip",
    "user_agent",
    "app_id",
    "app_version",
    "store_id",
    "staff_id",
    "form_reference",
    "message_reference",
    "source_system",
    "original_channel",
    "ticket_reference",
    "channel",
];

/// Values an evidence field may plausibly hold, and junk.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::String),
        "(19|20|99)[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,12})?(Z|[+-][01][0-9]:[0-5][0-9])"
            .prop_map(Value::String),
        "(https?|ftp|javascript)://[a-z.]{0,20}(/\\PC{0,20})?".prop_map(Value::String),
        "([0-9]{1,3}\\.){3}[0-9]{1,3}|[0-9a-f:]{2,39}".prop_map(Value::String),
        "(web|app|in_store|click_to_chat|keyword|import|support|api|WEB|)".prop_map(Value::String),
        "[a-z0-9._-]{0,300}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("\\PC{0,8}", inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// An evidence object: mostly known keys, with plausible values or junk.
fn evidence_object() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        6 => proptest::sample::select(EVIDENCE_KEYS).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
    ];
    let value = prop_oneof![4 => scalar(), 1 => json_value()];
    prop_oneof![
        8 => proptest::collection::vec((key, value), 0..8)
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        1 => json_value(),
    ]
}

fn limits() -> Limits {
    Limits {
        now: Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
        clock_skew: chrono::Duration::minutes(5),
    }
}

/// The stored (flat) form of evidence as a request would send it again.
fn as_request(evidence: &Evidence) -> Value {
    let mut value = serde_json::to_value(evidence).expect("evidence serialises");
    if let Value::Object(object) = &mut value {
        object.remove("channel");
    }
    value
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_evidence_parse(
        channel in proptest::sample::select(Channel::ALL.to_vec()),
        value in proptest::option::of(evidence_object()),
    ) {
        let limits = limits();
        for strictness in [Strictness::OptIn, Strictness::Withdrawal] {
            match Evidence::parse(channel, value.as_ref(), strictness, &limits) {
                Ok(evidence) => {
                    prop_assert_eq!(evidence.channel(), channel);
                    prop_assert!(evidence.collected_at <= limits.now + limits.clock_skew);
                    // What was accepted is accepted again, unchanged.
                    let again = as_request(&evidence);
                    let reparsed = Evidence::parse(channel, Some(&again), strictness, &limits);
                    prop_assert_eq!(reparsed.clone().ok(), Some(evidence.clone()), "{:?}", reparsed.err());
                    // The stored form reads back to the same value.
                    let stored = serde_json::to_vec(&evidence).unwrap();
                    let read: Evidence = serde_json::from_slice(&stored).unwrap();
                    prop_assert_eq!(read, evidence);
                }
                Err(problems) => {
                    prop_assert!(!problems.is_empty());
                    for problem in &problems {
                        prop_assert!(problem.field.starts_with("evidence"), "{}", problem.field);
                    }
                }
            }
        }
        // A withdrawal is never refused: what is malformed is dropped, and what
        // is kept parses again without anything dropped.
        let withdrawal = Evidence::parse_withdrawal(channel, value.as_ref(), &limits);
        prop_assert_eq!(withdrawal.evidence.channel(), channel);
        let kept = as_request(&withdrawal.evidence);
        let again = Evidence::parse_withdrawal(channel, Some(&kept), &limits);
        prop_assert!(again.dropped.is_empty(), "dropped on the second pass: {:?}", again.dropped);
        prop_assert_eq!(again.evidence, withdrawal.evidence);
    }
}

// ------------------------------------------- withdrawal and webhook bodies

const WITHDRAWAL_FIELDS: &[&str] = &[
    "phone",
    "default_region",
    "categories",
    "channel",
    "evidence",
];

/// A withdrawal body (revocation, block, inbound-message webhook): mostly its
/// own fields with plausible values, and junk.
fn withdrawal_body() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        6 => proptest::sample::select(WITHDRAWAL_FIELDS).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
    ];
    let value = prop_oneof![
        2 => phone_like().prop_map(Value::String),
        1 => proptest::collection::vec(
            "(marketing|utility|authentication|service|MARKETING|[a-z]{0,12}|\\PC{0,6})",
            0..4
        )
        .prop_map(|c| Value::Array(c.into_iter().map(Value::String).collect())),
        1 => REGIONS.prop_map(Value::String),
        2 => scalar(),
        2 => evidence_object(),
    ];
    prop_oneof![
        10 => proptest::collection::vec((key, value), 0..7)
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        1 => json_value(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_withdrawal_body(body in withdrawal_body(), which in any::<prop::sample::Index>()) {
        use consentgate::http::handlers::withdrawal::LenientBody;
        let policy = which.get(parsed_policies());
        let limits = limits();
        // What the revocation handler does with a body that parsed as JSON.
        let Ok(mut lenient) = LenientBody::new(&body, WITHDRAWAL_FIELDS) else {
            prop_assert!(!body.is_object());
            return Ok(());
        };
        let phone = lenient.phone();
        let categories = lenient.categories(policy);
        let channel = lenient.channel(Channel::Api);
        let withdrawal = lenient.evidence(channel, &limits);
        match lenient.finish() {
            Ok(dropped) => {
                // Only a bad phone refuses a withdrawal (GDPR Art. 7(3)).
                let phone = phone.expect("a withdrawal that is recorded has a number");
                check_phone(phone.as_e164(), None)?;
                prop_assert_eq!(withdrawal.evidence.channel(), channel);
                if let Some(categories) = categories {
                    prop_assert!(!categories.is_empty());
                }
                for problem in &dropped {
                    prop_assert!(!problem.field.is_empty());
                    // A dropped field is named, never its value.
                    if let Some(Value::String(raw)) = body.get("phone")
                        && raw.len() >= 6 {
                            prop_assert!(!problem.message.contains(raw.as_str()));
                            prop_assert!(!problem.field.contains(raw.as_str()));
                        }
                }
            }
            Err(ApiError::Validation(errors)) => {
                prop_assert!(phone.is_none(), "refused only for its number: {:?}", errors);
                for e in &errors {
                    prop_assert!(e.field == "phone" || e.field == "default_region", "{:?}", e);
                }
            }
            Err(other) => prop_assert!(false, "a withdrawal body is recorded or a 422, not {:?}", other),
        }
    }
}

// --------------------------------------------------------------- policy files

fn shipped_policies() -> &'static [(String, String)] {
    static TEXTS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
        let mut texts: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        texts.sort();
        texts
    })
}

/// One edit of a policy file's text.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    Insert(usize, String),
    ReplaceValue(usize, String),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let junk = prop_oneof![
        "\\PC{0,20}",
        "(-?[0-9]{1,20}|[0-9]+\\.[0-9]+|true|false|\"\\PC{0,10}\"|\\[\\]|\\{\\}|nan|inf|1e999|-1|0|99999999999)",
        "\n\\[[a-z_.]{0,20}\\]\n",
        "\n[a-z_]{1,16} = (\"[a-z]{0,8}\"|[0-9]{1,12}|\\[\"[A-Z]{1,6}\"\\])\n",
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), junk.clone()).prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), junk).prop_map(|(at, s)| Edit::ReplaceValue(at, s)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len().max(1);
    match edit {
        Edit::DeleteLine(at) => {
            if !lines.is_empty() {
                lines.remove(at % n);
            }
        }
        Edit::DuplicateLine(at) => {
            if !lines.is_empty() {
                let line = lines[at % n].clone();
                lines.insert(at % n, line);
            }
        }
        Edit::Insert(at, s) => lines.insert(at % (lines.len() + 1), s.clone()),
        Edit::ReplaceValue(at, s) => {
            if !lines.is_empty() {
                let line = &mut lines[at % n];
                if let Some((key, _)) = line.split_once('=') {
                    *line = format!("{key}= {s}");
                }
            }
        }
        Edit::Truncate(at) => {
            let joined = lines.join("\n");
            let mut cut = at % (joined.len() + 1);
            while !joined.is_char_boundary(cut) {
                cut -= 1;
            }
            return joined[..cut].to_owned();
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_policy_file(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(edit(), 0..5),
        arbitrary in proptest::option::weighted(0.1, "\\PC{0,200}"),
    ) {
        let (name, original) = which.get(shipped_policies());
        let text = match &arbitrary {
            Some(text) => text.clone(),
            None => edits.iter().fold(original.clone(), |text, e| apply(&text, e)),
        };
        match Policy::from_toml_str(name, &text) {
            Ok(policy) => {
                prop_assert_eq!(format!("{}.toml", policy.name()), name.clone());
                // Every keyword of the policy is recognised in its own forms.
                for word in policy.keywords(KeywordKind::OptOut) {
                    prop_assert_eq!(policy.keyword(word), Some(KeywordKind::OptOut), "{}", word);
                }
            }
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                for problem in &problems {
                    prop_assert_eq!(&problem.file, name);
                    prop_assert!(!problem.message.is_empty());
                }
            }
        }
    }
}

// ----------------------------------------------------------- keyword matching

fn parsed_policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        shipped_policies()
            .iter()
            .map(|(name, text)| Policy::from_toml_str(name, text).unwrap())
            .collect()
    })
}

fn opt_out_words() -> impl Strategy<Value = String> {
    // The shipped opt-out keywords of every policy, written the ways SPEC 2 says
    // still opt out.
    let words: Vec<String> = parsed_policies()
        .iter()
        .flat_map(|p| p.keywords(KeywordKind::OptOut).to_vec())
        .collect();
    proptest::sample::select(words)
}

fn disguise() -> impl Strategy<Value = (String, String, String, bool)> {
    (
        "[ \t\n\u{a0}\u{3000}]{0,3}",
        "[\u{200b}\u{200c}\u{200d}\u{2060}\u{feff}\u{fe0f}\u{ad}]{0,3}",
        "[.!]{0,3}[ \t]{0,2}",
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_keyword_forms(text in "\\PC{0,40}|[\\PC\u{200b}\u{200d}\u{fe0f}\u{301}\u{308}\u{ff21}-\u{ff3a} .!]{0,20}") {
        let common = common_form(&text);
        let opt_out = opt_out_form(&text);
        // Both forms are fixed points of themselves: matching a normalised
        // keyword against a normalised message cannot depend on the order.
        prop_assert_eq!(common_form(&common), common.clone());
        prop_assert_eq!(opt_out_form(&opt_out), opt_out.clone());
        prop_assert_eq!(common.trim(), common.as_str());
        prop_assert!(!opt_out.ends_with(['.', '!']));
    }

    #[test]
    fn fuzz_keyword_opt_out_disguised(
        word in opt_out_words(),
        (lead, invisible, trail, upper) in disguise(),
        which in any::<prop::sample::Index>(),
    ) {
        let word = if upper { word.to_uppercase() } else { word };
        let message = format!("{lead}{word}{invisible}{trail}");
        let policy = which.get(parsed_policies());
        let is_own = policy.keywords(KeywordKind::OptOut).iter().any(|k| opt_out_form(k) == opt_out_form(&word));
        if is_own {
            prop_assert_eq!(policy.keyword(&message), Some(KeywordKind::OptOut), "{:?}", message);
        }
    }
}

// --------------------------------------------------------- audit chain verify

fn chain(n: i64, data: &[String]) -> Vec<StoredEvent> {
    let business_id = Uuid::from_u128(7);
    let mut prev = GENESIS.to_vec();
    (1..=n)
        .map(|seq| {
            let mut e = StoredEvent {
                business_id,
                seq,
                id: Uuid::from_u128(seq as u128),
                at: Utc.timestamp_opt(1_700_000_000 + seq, 0).unwrap(),
                event_type: "opt_in.recorded".into(),
                actor: "key:x".into(),
                subject_id: None,
                data: data[(seq as usize - 1) % data.len().max(1)].clone(),
                prev_hash: prev.clone(),
                hash: vec![],
            };
            e.hash = event_hash(&prev, &e.chained_fields()).to_vec();
            prev = e.hash.clone();
            e
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Tamper {
    Data(usize, String),
    Seq(usize, i64),
    Hash(usize, Vec<u8>),
    PrevHash(usize, Vec<u8>),
    Drop(usize),
    Swap(usize, usize),
    EventType(usize, String),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), "\\PC{0,20}").prop_map(|(i, s)| Tamper::Data(i, s)),
        (any::<usize>(), any::<i64>()).prop_map(|(i, s)| Tamper::Seq(i, s)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(i, h)| Tamper::Hash(i, h)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(i, h)| Tamper::PrevHash(i, h)),
        any::<usize>().prop_map(Tamper::Drop),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Tamper::Swap(i, j)),
        (any::<usize>(), "\\PC{0,12}").prop_map(|(i, s)| Tamper::EventType(i, s)),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_audit_chain_verify(
        n in 1i64..12,
        data in proptest::collection::vec(json_value().prop_map(|v| v.to_string()), 1..4),
        tampering in tamper(),
        checkpoint_at in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let events = chain(n, &data);
        let checkpoints: Vec<(i64, Vec<u8>)> = checkpoint_at
            .map(|i| {
                let e = i.get(&events);
                vec![(e.seq, e.hash.clone())]
            })
            .unwrap_or_default();
        let head = events.last().map(|e| (e.seq, e.hash.clone()));
        let verify = |events: &[StoredEvent]| {
            let mut v = Verifier::with_checkpoints(checkpoints.clone(), Vec::new());
            for e in events {
                v.push(e);
            }
            v.finish(head.clone())
        };
        let clean = verify(&events);
        prop_assert!(clean.valid, "an untouched chain verifies: {:?}", clean);
        prop_assert_eq!(clean.checked, n as u64);

        let mut tampered = events.clone();
        let len = tampered.len();
        let changed = match &tampering {
            Tamper::Data(i, s) => { let e = &mut tampered[i % len]; let c = e.data != *s; e.data = s.clone(); c }
            Tamper::Seq(i, s) => { let e = &mut tampered[i % len]; let c = e.seq != *s; e.seq = *s; c }
            Tamper::Hash(i, h) => { let e = &mut tampered[i % len]; let c = e.hash != *h; e.hash = h.clone(); c }
            Tamper::PrevHash(i, h) => { let e = &mut tampered[i % len]; let c = e.prev_hash != *h; e.prev_hash = h.clone(); c }
            Tamper::Drop(i) => { tampered.remove(i % len); true }
            Tamper::Swap(i, j) => { tampered.swap(i % len, j % len); i % len != j % len }
            Tamper::EventType(i, s) => { let e = &mut tampered[i % len]; let c = e.event_type != *s; e.event_type = s.clone(); c }
        };
        let report = verify(&tampered);
        if changed {
            prop_assert!(!report.valid, "{:?} went unnoticed", tampering);
            let first = report.first_invalid_seq.expect("names where it breaks");
            prop_assert!((1..=n + 1).contains(&first), "{first} within the chain");
        } else {
            prop_assert!(report.valid);
        }
    }
}

// --------------------------------------------------------- JSON request bodies

/// Bodies that are valid requests of each kind, to truncate and mutate.
const VALID_BODIES: &[&str] = &[
    r#"{"phone":"+31612345678","categories":["marketing"],"channel":"web","evidence":{"collected_at":"2026-01-01T00:00:00Z","consent_text_version":"v1","source_url":"https://shop.example/form"}}"#,
    r#"{"phone":"+31612345678","category":"marketing"}"#,
    r#"{"phones":["+31612345678","0612345678"],"category":"utility","default_region":"NL"}"#,
    r#"{"phone":"+31612345678","categories":null,"channel":"api","evidence":{"source_system":"crm"}}"#,
    r#"{"phone":"+31612345678","channel":"api","evidence":{"message_reference":"wamid.1"}}"#,
    r#"{"phone":"+31612345678","received_at":"2026-01-01T00:00:00Z","text":"STOP"}"#,
    r#"{"phone":"+31612345678","request_reference":"DSR-1"}"#,
    r#"{"name":"dpo","scopes":["subjects:manage"]}"#,
    r#"{"name":"Shop","policy":"whatsapp-eu"}"#,
    r#"{"evidence":{"collected_at":"2026-01-01T00:00:00Z","channel":"web"}}"#,
];

/// Parses `body` as every request type; returns the outcomes' kinds.
fn parse_all(body: &[u8]) -> Vec<&'static str> {
    use consentgate::http::handlers::*;
    fn kind<T>(r: Result<T, ApiError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(ApiError::MalformedBody(_)) => "malformed",
            Err(ApiError::Validation(errors)) => {
                assert!(!errors.is_empty(), "a validation error names a field");
                for e in &errors {
                    assert!(!e.field.is_empty(), "{e:?}");
                }
                "invalid"
            }
            Err(other) => panic!("a body can only be malformed or invalid, got {other:?}"),
        }
    }
    vec![
        kind(parse_json::<opt_ins::record::RecordOptInRequest>(body)),
        kind(parse_json::<opt_ins::confirm::ConfirmOptInRequest>(body)),
        // Withdrawals (revocations, blocks, inbound messages) are read as a JSON
        // value, then field by field (`handlers::withdrawal`).
        kind(parse_json::<Value>(body)),
        kind(parse_json::<checks::check::CheckContactRequest>(body)),
        kind(parse_json::<checks::batch::CheckContactsBatchRequest>(body)),
        kind(parse_json::<subjects::SubjectRequest>(body)),
        kind(parse_json::<keys::create::CreateKeyRequest>(body)),
        kind(parse_json::<businesses::create::CreateBusinessRequest>(
            body,
        )),
        kind(parse_json::<preference_links::CreatePreferenceLinkRequest>(
            body,
        )),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_json_body_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let kinds = parse_all(&body);
        // Whether a body is JSON does not depend on the request type.
        let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
        for k in kinds {
            prop_assert_eq!(k == "malformed", !is_json);
        }
    }

    #[test]
    fn fuzz_json_body_structured(value in json_value(), which in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        // Well-formed JSON of any shape is never a 400.
        let text = value.to_string();
        for k in parse_all(text.as_bytes()) {
            prop_assert_ne!(k, "malformed");
        }
        // A valid body cut short anywhere (after its first byte) is always a 400,
        // whatever it would have been whole.
        let body = which.get(VALID_BODIES).as_bytes();
        let at = 1 + cut.index(body.len() - 1);
        for k in parse_all(&body[..at]) {
            prop_assert_eq!(k, "malformed", "cut at {}", at);
        }
    }
}
