//! Policy files (TOML) turned into a validated [`Policy`].
//!
//! A policy is the business's rulebook: which legal bases allow each category,
//! how long consent lasts, the customer-service window, keywords, prices, erasure
//! and retention (SPEC section 4). It is parsed once at start-up; a malformed file
//! stops start-up, so validation reports *every* problem with the file, the dotted
//! field path and what is wrong, instead of making the operator fix them one restart
//! at a time.
//!
//! The TOML is walked as a generic [`toml::Table`] rather than deserialised into
//! `#[serde(deny_unknown_fields)]` structs: serde stops at the first error, and this
//! module must report all of them (unknown keys included).
//!
//! Money is exact fixed point ([`Amount`], micro-units): prices reach invoices'
//! neighbourhood and a float cannot hold `0.1597`.
//!
//! This module may depend on toml, serde, sha2, hex, chrono and thiserror; never on
//! actix or diesel.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use chrono::Duration;
use serde::{Serialize, Serializer};

use crate::domain::language::Language;
use sha2::{Digest, Sha256};
use toml::{Table, Value};

use super::keywords;

// Bounds on numbers in a policy file. They exist to catch typos (days typed as
// hours, a missing digit), not to encode law: a consent refresh beyond ten years or
// a window beyond a week is almost certainly a mistake.
const MAX_AGE_DAYS: RangeInclusive<i64> = 1..=3650;
const CLOCK_SKEW_SECONDS: RangeInclusive<i64> = 0..=3600;
const WINDOW_HOURS: RangeInclusive<i64> = 1..=168;
const CLOSED_WINDOW_DAYS: RangeInclusive<i64> = 1..=3650;
// Evidence of withdrawn consent is kept to defend claims (limitation periods run up
// to about ten years in EU member states); twenty years is the typo bound.
const REVOKED_EVIDENCE_DAYS: RangeInclusive<i64> = 1..=7300;
const MAX_FRACTION_DIGITS: usize = 6;
// A category's description is read by a person on a phone: a few sentences.
const MAX_DESCRIPTION_CHARS: usize = 500;
const MICROS_PER_UNIT: i64 = 1_000_000;

/// One thing wrong with a policy file: which file, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct PolicyProblem {
    /// The file as the caller named it (a path or a file name).
    pub file: String,
    /// Dotted path of the field, e.g. `categories.marketing.price.amount`;
    /// `(syntax)` for a TOML syntax error, `(file)` when the file cannot be read.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// What a whole inbound message means when it is one of the policy's keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeywordKind {
    /// STOP and its kin: revokes every category (GDPR Art. 7(3)).
    OptOut,
    /// START and its kin: restores what the last keyword opt-out revoked.
    OptIn,
    /// HELP and its kin: records nothing.
    Help,
}

impl KeywordKind {
    /// The snake_case name, as in the policy file (`opt_out`, `opt_in`, `help`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeywordKind::OptOut => "opt_out",
            KeywordKind::OptIn => "opt_in",
            KeywordKind::Help => "help",
        }
    }
}

/// A legal basis that may allow a category (`allowed_by` in the policy file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowedBy {
    /// An active opt-in for the category (GDPR Art. 6(1)(a) consent).
    OptIn,
    /// An open customer-service window: the subject wrote first.
    Window,
}

impl AllowedBy {
    /// The name used in policy files: `opt_in` or `window`.
    pub fn as_str(self) -> &'static str {
        match self {
            AllowedBy::OptIn => "opt_in",
            AllowedBy::Window => "window",
        }
    }
}

/// A category (purpose) name that a [`Policy`] defines.
///
/// Only [`Policy::category`] and [`Policy::categories`] make one, so holding a
/// `Category` means the name was checked against a policy; an unknown name never
/// gets as far as a decision (the HTTP layer answers 422).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Category(Arc<str>);

impl Category {
    /// The category's name, e.g. `marketing`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Category {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Category {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// An ISO 4217 style currency code: three uppercase ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code such as `EUR`; `None` unless it is exactly three uppercase ASCII letters.
    pub fn parse(code: &str) -> Option<Currency> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Some(Currency([a, b, c])),
            _ => None,
        }
    }

    /// The code, e.g. `EUR`.
    pub fn as_str(&self) -> &str {
        // Only `parse` builds a Currency, from three ASCII letters.
        std::str::from_utf8(&self.0).expect("a currency code is ASCII")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a decimal string is not an [`Amount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The string is empty.
    #[error("is empty")]
    Empty,
    /// A minus sign: prices are never negative.
    #[error("must not be negative")]
    Negative,
    /// Not of the form `123` or `123.456`.
    #[error(
        "must be a decimal number such as \"0.0450\" (digits, optionally one '.' and more digits)"
    )]
    NotDecimal,
    /// More than six digits after the point.
    #[error("has more than 6 digits after the decimal point")]
    TooPrecise,
    /// Does not fit in 64-bit micro-units.
    #[error("is too large")]
    TooLarge,
}

/// An exact non-negative amount of money in micro-units (millionths of a currency unit).
///
/// Parsed from and serialised to a decimal string, never through `f64`. The string
/// form is canonical: trailing fraction zeros are dropped (`"0.0450"` becomes
/// `"0.045"`, `"1.00"` becomes `"1"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(i64);

impl Amount {
    /// The amount of `micros` millionths; `None` if negative.
    pub fn from_micros(micros: i64) -> Option<Amount> {
        (micros >= 0).then_some(Amount(micros))
    }

    /// The amount in millionths of the currency unit.
    pub fn micros(self) -> i64 {
        self.0
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    fn from_str(s: &str) -> Result<Amount, AmountError> {
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        if s.starts_with('-') {
            return Err(AmountError::Negative);
        }
        let (int, frac) = match s.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (s, None),
        };
        let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
            return Err(AmountError::NotDecimal);
        }
        let frac = frac.unwrap_or("");
        if frac.len() > MAX_FRACTION_DIGITS {
            return Err(AmountError::TooPrecise);
        }
        let mut micros: i64 = 0;
        for b in int.bytes() {
            micros = micros
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or(AmountError::TooLarge)?;
        }
        micros = micros
            .checked_mul(MICROS_PER_UNIT)
            .ok_or(AmountError::TooLarge)?;
        let mut scale = MICROS_PER_UNIT;
        for b in frac.bytes() {
            scale /= 10;
            micros = micros
                .checked_add(i64::from(b - b'0') * scale)
                .ok_or(AmountError::TooLarge)?;
        }
        Ok(Amount(micros))
    }
}

impl Amount {
    /// The canonical decimal text, written into `buf` without the formatting
    /// machinery (it is written into every priced check answer): the units, and
    /// up to six fraction digits with trailing zeros dropped.
    pub(crate) fn write<'a>(&self, buf: &'a mut [u8; 28]) -> &'a str {
        let int = self.0 / MICROS_PER_UNIT;
        let frac = self.0 % MICROS_PER_UNIT;
        let mut len = 0;
        if frac != 0 {
            // Six digits from the right, trailing zeros dropped.
            let mut digits = [b'0'; 6];
            let mut rest = frac;
            for digit in digits.iter_mut().rev() {
                *digit = b'0' + u8::try_from(rest % 10).unwrap_or(0);
                rest /= 10;
            }
            let kept = 6 - digits.iter().rev().take_while(|d| **d == b'0').count();
            // Written back to front: the fraction, then the point.
            for digit in digits[..kept].iter().rev() {
                buf[27 - len] = *digit;
                len += 1;
            }
            buf[27 - len] = b'.';
            len += 1;
        }
        let mut rest = int;
        loop {
            buf[27 - len] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
            len += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        std::str::from_utf8(&buf[28 - len..]).unwrap_or_default()
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.write(&mut [0; 28]))
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.write(&mut [0; 28]))
    }
}

/// An estimated price of one message: an estimate from the policy, not an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Price {
    currency: Currency,
    amount: Amount,
}

impl Price {
    /// A price of `amount` in `currency`.
    pub fn new(currency: Currency, amount: Amount) -> Price {
        Price { currency, amount }
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The exact amount.
    pub fn amount(&self) -> Amount {
        self.amount
    }
}

/// A category's price list: one default amount and optional per-calling-code amounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    currency: Currency,
    amount: Amount,
    by_calling_code: BTreeMap<u16, Amount>,
}

impl PriceTable {
    /// The currency of every amount in the table.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The default amount, for calling codes without their own.
    pub fn amount(&self) -> Amount {
        self.amount
    }

    /// The price for a country calling code (`31` for +31), falling back to the default.
    pub fn for_calling_code(&self, calling_code: Option<u16>) -> Price {
        let amount = calling_code
            .and_then(|code| self.by_calling_code.get(&code))
            .copied()
            .unwrap_or(self.amount);
        Price::new(self.currency, amount)
    }

    /// The per-calling-code overrides, ordered by code.
    pub fn overrides(&self) -> impl Iterator<Item = (u16, Amount)> + '_ {
        self.by_calling_code
            .iter()
            .map(|(code, amount)| (*code, *amount))
    }
}

/// What a policy says about one category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRules {
    by_opt_in: bool,
    by_window: bool,
    double_opt_in: bool,
    free_in_window: bool,
    price: Option<PriceTable>,
    /// What the category is for, in plain words, in every [`Language`].
    descriptions: BTreeMap<Language, String>,
}

impl CategoryRules {
    /// The plain-language description people read in the preference center
    /// (every language is present: the loader refuses a policy without one).
    pub fn description(&self, language: Language) -> &str {
        self.descriptions
            .get(&language)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Whether `basis` may allow the category.
    pub fn allows(&self, basis: AllowedBy) -> bool {
        match basis {
            AllowedBy::OptIn => self.by_opt_in,
            AllowedBy::Window => self.by_window,
        }
    }

    /// The bases that may allow the category (never empty).
    pub fn allowed_by(&self) -> Vec<AllowedBy> {
        [AllowedBy::OptIn, AllowedBy::Window]
            .into_iter()
            .filter(|b| self.allows(*b))
            .collect()
    }

    /// Whether an opt-in needs a confirmation before it counts.
    pub fn double_opt_in(&self) -> bool {
        self.double_opt_in
    }

    /// Whether a message sent while a window is open is free of charge.
    pub fn free_in_window(&self) -> bool {
        self.free_in_window
    }

    /// The price list, if the policy has one for this category.
    pub fn price(&self) -> Option<&PriceTable> {
        self.price.as_ref()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct WindowRules {
    hours: u32,
    entry_point_hours: BTreeMap<String, u32>,
}

/// A validated policy: the rules one business is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    version: String,
    versioned: String,
    description: String,
    content_hash: String,
    max_age_days: u32,
    clock_skew_seconds: u32,
    window: Option<WindowRules>,
    keyword_lists: [Vec<String>; 3],
    /// Opt-out keywords in [`keywords::opt_out_form`].
    opt_out: std::collections::HashSet<String>,
    /// Opt-in and help keywords in [`keywords::common_form`].
    keywords: HashMap<String, KeywordKind>,
    suppress_on_erasure: bool,
    closed_window_days: u32,
    revoked_evidence_days: u32,
    categories: BTreeMap<Arc<str>, CategoryRules>,
}

impl Policy {
    /// Parses and validates a policy file's text. `file_name` names the file in
    /// problems, and its stem must equal the policy's `name`.
    ///
    /// On failure returns every problem found, not just the first.
    pub fn from_toml_str(file_name: &str, text: &str) -> Result<Policy, Vec<PolicyProblem>> {
        let table: Table = match toml::from_str(text) {
            Ok(table) => table,
            Err(err) => return Err(vec![syntax_problem(file_name, text, &err)]),
        };
        let mut checker = Checker {
            file: file_name,
            problems: Vec::new(),
        };
        let parts = checker.policy(&table, file_name);
        if !checker.problems.is_empty() {
            return Err(checker.problems);
        }
        let content_hash = hex::encode(Sha256::digest(text.as_bytes()));
        let versioned = format!("{}+sha256:{}", parts.version, &content_hash[..12]);
        let mut keywords = HashMap::new();
        let mut opt_out = std::collections::HashSet::new();
        for (kind, list) in KINDS.iter().zip(&parts.keyword_lists) {
            for word in list {
                match kind {
                    KeywordKind::OptOut => {
                        opt_out.insert(keywords::opt_out_form(word));
                    }
                    _ => {
                        keywords.insert(keywords::common_form(word), *kind);
                    }
                }
            }
        }
        Ok(Policy {
            name: parts.name,
            version: parts.version,
            versioned,
            description: parts.description,
            content_hash,
            max_age_days: parts.max_age_days,
            clock_skew_seconds: parts.clock_skew_seconds,
            window: parts.window,
            keyword_lists: parts.keyword_lists,
            opt_out,
            keywords,
            suppress_on_erasure: parts.suppress,
            closed_window_days: parts.closed_window_days,
            revoked_evidence_days: parts.revoked_evidence_days,
            categories: parts.categories,
        })
    }

    /// Reads and validates a policy file; problems name the file by its path.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Policy, Vec<PolicyProblem>> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|err| {
            vec![PolicyProblem {
                file: file.clone(),
                field: "(file)".into(),
                message: format!("cannot read: {err}"),
            }]
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            vec![PolicyProblem {
                file: file.clone(),
                field: "(file)".into(),
                message: "is not valid UTF-8".into(),
            }]
        })?;
        Policy::from_toml_str(&file, &text)
    }

    /// The policy's name, equal to its file stem (e.g. `whatsapp-eu`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version the author wrote in the file.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The version decisions report: `{version}+sha256:{first 12 hex of the hash}`,
    /// so an auditor knows exactly which rules applied even if someone edited the
    /// file without bumping `version`.
    pub fn versioned(&self) -> &str {
        &self.versioned
    }

    /// The author's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Hex SHA-256 of the file's bytes.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// How long an opt-in stays valid after it was collected.
    pub fn max_age(&self) -> Duration {
        Duration::days(i64::from(self.max_age_days))
    }

    /// How far in the future a `collected_at` may lie (clocks of collectors drift).
    pub fn clock_skew(&self) -> Duration {
        Duration::seconds(i64::from(self.clock_skew_seconds))
    }

    /// Whether the policy has a customer-service window at all.
    pub fn has_window(&self) -> bool {
        self.window.is_some()
    }

    /// The default window length in hours; `None` when the policy has no window.
    pub fn window_hours(&self) -> Option<u32> {
        self.window.as_ref().map(|w| w.hours)
    }

    /// The window length for an entry point the policy names, in hours.
    pub fn entry_point_hours(&self, entry_point: &str) -> Option<u32> {
        self.window
            .as_ref()?
            .entry_point_hours
            .get(entry_point)
            .copied()
    }

    /// How long an inbound message from `entry_point` keeps the window open: the
    /// entry point's hours if the policy lists it, else the window hours; `None`
    /// when the policy has no window.
    pub fn window_for(&self, entry_point: Option<&str>) -> Option<Duration> {
        let window = self.window.as_ref()?;
        let hours = entry_point
            .and_then(|e| window.entry_point_hours.get(e))
            .copied()
            .unwrap_or(window.hours);
        Some(Duration::hours(i64::from(hours)))
    }

    /// What a whole inbound message means, if it is a keyword (`please stop` is
    /// not). Opt-outs are looked for first and in the more forgiving form, so that
    /// no spelling hides a STOP (see [`keywords`] for both forms).
    pub fn keyword(&self, message: &str) -> Option<KeywordKind> {
        if self.opt_out.contains(&keywords::opt_out_form(message)) {
            return Some(KeywordKind::OptOut);
        }
        self.keywords.get(&keywords::common_form(message)).copied()
    }

    /// The keywords of one kind as written in the file (e.g. for a HELP reply).
    pub fn keywords(&self, kind: KeywordKind) -> &[String] {
        let index = KINDS.iter().position(|k| *k == kind).unwrap_or_default();
        &self.keyword_lists[index]
    }

    /// The category called `name`, if this policy defines it (exact match).
    pub fn category(&self, name: &str) -> Option<Category> {
        self.categories
            .get_key_value(name)
            .map(|(key, _)| Category(Arc::clone(key)))
    }

    /// The position of `category` in [`Policy::categories`] (the order verdicts
    /// of a projection are kept in).
    pub fn category_index(&self, category: &Category) -> Option<usize> {
        self.categories
            .keys()
            .position(|key| **key == *category.as_str())
    }

    /// How many categories the policy has.
    pub fn category_count(&self) -> usize {
        self.categories.len()
    }

    /// Every category of the policy, ordered by name.
    pub fn categories(&self) -> impl Iterator<Item = Category> + '_ {
        self.categories.keys().map(|key| Category(Arc::clone(key)))
    }

    /// The rules for `category`; `None` if it came from another policy that has a
    /// category this one lacks.
    pub fn rules(&self, category: &Category) -> Option<&CategoryRules> {
        self.categories.get(category.as_str())
    }

    /// The estimated price of one message in `category` to a number with
    /// `calling_code` (e.g. `49` for +49); `None` when the category has no price.
    pub fn price_for(&self, category: &Category, calling_code: Option<u16>) -> Option<Price> {
        Some(
            self.rules(category)?
                .price()?
                .for_calling_code(calling_code),
        )
    }

    /// Whether erasure keeps a keyed-hash suppression marker (GDPR Art. 17(3)(e):
    /// kept to defend against a stale import re-adding the number without consent).
    pub fn suppress_on_erasure(&self) -> bool {
        self.suppress_on_erasure
    }

    /// How long closed customer-service windows are kept before deletion.
    pub fn closed_window_retention(&self) -> Duration {
        Duration::days(i64::from(self.closed_window_days))
    }

    /// How long evidence of a revoked or expired opt-in is kept before it is purged
    /// (GDPR Art. 5(1)(e) storage limitation, against Art. 7(1) proof of consent).
    pub fn revoked_evidence_retention(&self) -> Duration {
        Duration::days(i64::from(self.revoked_evidence_days))
    }
}

const KINDS: [KeywordKind; 3] = [KeywordKind::OptOut, KeywordKind::OptIn, KeywordKind::Help];

fn syntax_problem(file: &str, text: &str, err: &toml::de::Error) -> PolicyProblem {
    // One problem, one line: toml's messages may span several.
    let message = err.message().trim().replace('\n', "; ");
    let message = match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    };
    PolicyProblem {
        file: file.to_owned(),
        field: "(syntax)".into(),
        message,
    }
}

/// The parts of a policy once read; meaningful only when no problem was recorded.
#[derive(Default)]
struct Parts {
    name: String,
    version: String,
    description: String,
    max_age_days: u32,
    clock_skew_seconds: u32,
    window: Option<WindowRules>,
    keyword_lists: [Vec<String>; 3],
    suppress: bool,
    closed_window_days: u32,
    revoked_evidence_days: u32,
    categories: BTreeMap<Arc<str>, CategoryRules>,
}

/// Walks the TOML tree, recording every problem and carrying on with a stand-in
/// value, so that one run reports everything wrong with the file.
struct Checker<'f> {
    file: &'f str,
    problems: Vec<PolicyProblem>,
}

impl Checker<'_> {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(PolicyProblem {
            file: self.file.to_owned(),
            field: field.into(),
            message: message.into(),
        });
    }

    fn policy(&mut self, root: &Table, file_name: &str) -> Parts {
        self.unknown_keys(
            root,
            "",
            &[
                "name",
                "version",
                "description",
                "consent",
                "window",
                "keywords",
                "erasure",
                "retention",
                "categories",
            ],
        );
        let mut parts = Parts::default();

        if let Some(name) = self.string(root, "", "name", true) {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                self.problem(
                    "name",
                    format!("{name:?} must be lowercase letters, digits and '-' only"),
                );
            }
            let stem = Path::new(file_name).file_stem().and_then(|s| s.to_str());
            if let Some(stem) = stem.filter(|stem| *stem != name) {
                self.problem(
                    "name",
                    format!("{name:?} must equal the file name without .toml ({stem:?})"),
                );
            }
            parts.name = name.to_owned();
        }
        if let Some(version) = self.string(root, "", "version", true) {
            if version.trim().is_empty() {
                self.problem("version", "must not be blank");
            } else if version.chars().any(char::is_whitespace) {
                self.problem(
                    "version",
                    format!("{version:?} must not contain whitespace"),
                );
            }
            parts.version = version.to_owned();
        }
        parts.description = self
            .string(root, "", "description", false)
            .unwrap_or_default()
            .to_owned();

        if let Some(consent) = self.table(root, "", "consent", true) {
            self.unknown_keys(consent, "consent", &["max_age_days", "clock_skew_seconds"]);
            parts.max_age_days = self
                .integer(consent, "consent", "max_age_days", MAX_AGE_DAYS, true)
                .unwrap_or(0);
            parts.clock_skew_seconds = self
                .integer(
                    consent,
                    "consent",
                    "clock_skew_seconds",
                    CLOCK_SKEW_SECONDS,
                    true,
                )
                .unwrap_or(0);
        }

        let window_section = self.table(root, "", "window", false);
        if let Some(window) = window_section {
            parts.window = Some(self.window(window));
        }

        if let Some(keywords) = self.table(root, "", "keywords", true) {
            parts.keyword_lists = self.keywords(keywords);
        }

        if let Some(erasure) = self.table(root, "", "erasure", true) {
            self.unknown_keys(erasure, "erasure", &["suppress"]);
            parts.suppress = self
                .boolean(erasure, "erasure", "suppress", true)
                .unwrap_or(false);
        }

        if let Some(retention) = self.table(root, "", "retention", true) {
            self.unknown_keys(
                retention,
                "retention",
                &["closed_window_days", "revoked_evidence_days"],
            );
            parts.closed_window_days = self
                .integer(
                    retention,
                    "retention",
                    "closed_window_days",
                    CLOSED_WINDOW_DAYS,
                    true,
                )
                .unwrap_or(0);
            parts.revoked_evidence_days = self
                .integer(
                    retention,
                    "retention",
                    "revoked_evidence_days",
                    REVOKED_EVIDENCE_DAYS,
                    true,
                )
                .unwrap_or(0);
        }

        if let Some(categories) = self.table(root, "", "categories", true) {
            if categories.is_empty() {
                self.problem("categories", "at least one category is required");
            }
            for (name, value) in categories {
                let path = join("categories", name);
                if !is_identifier(name) {
                    self.problem(
                        path.as_str(),
                        "a category name must be a lowercase letter followed by lowercase letters, digits or '_'",
                    );
                }
                let Some(table) = self.expect_table(value, &path) else {
                    continue;
                };
                let rules = self.category(table, &path, window_section.is_some());
                parts.categories.insert(Arc::from(name.as_str()), rules);
            }
        }
        parts
    }

    fn window(&mut self, window: &Table) -> WindowRules {
        self.unknown_keys(window, "window", &["hours", "entry_point_hours"]);
        let hours = self
            .integer(window, "window", "hours", WINDOW_HOURS, true)
            .unwrap_or(0);
        let mut entry_point_hours = BTreeMap::new();
        if let Some(entry_points) = self.table(window, "window", "entry_point_hours", false) {
            for (name, value) in entry_points {
                let path = join("window.entry_point_hours", name);
                if !is_identifier(name) {
                    self.problem(
                        path.as_str(),
                        "an entry point name must be a lowercase letter followed by lowercase letters, digits or '_'",
                    );
                }
                if let Some(h) = self.integer_value(value, &path, WINDOW_HOURS) {
                    entry_point_hours.insert(name.clone(), h);
                }
            }
        }
        WindowRules {
            hours,
            entry_point_hours,
        }
    }

    fn keywords(&mut self, keywords: &Table) -> [Vec<String>; 3] {
        self.unknown_keys(keywords, "keywords", &["opt_out", "opt_in", "help"]);
        let mut lists: [Vec<String>; 3] = Default::default();
        // Normalised keyword -> (where it was first seen, its kind): one message
        // must never mean both "stop" and "start". Opt-outs are compared in their
        // more forgiving form, and an opt-in or help keyword that an opt-out would
        // swallow is refused too (the message would opt out).
        let mut seen: HashMap<String, (String, KeywordKind)> = HashMap::new();
        let mut opt_outs: HashMap<String, String> = HashMap::new();
        for (kind, list) in KINDS.iter().zip(lists.iter_mut()) {
            let key = kind.as_str();
            // Withdrawing must be as easy as giving consent (GDPR Art. 7(3)): a policy
            // without a single opt-out keyword is refused.
            let required = *kind == KeywordKind::OptOut;
            let Some(items) = self.array(keywords, "keywords", key, required) else {
                continue;
            };
            if required && items.is_empty() {
                self.problem(join("keywords", key), "needs at least one opt-out keyword");
            }
            for (i, item) in items.iter().enumerate() {
                let path = format!("keywords.{key}[{i}]");
                let Some(word) = self.expect_str(item, &path) else {
                    continue;
                };
                let normalized = super::keywords::common_form(word);
                let as_opt_out = super::keywords::opt_out_form(word);
                if normalized.is_empty() || as_opt_out.is_empty() {
                    self.problem(path, "a keyword must not be blank");
                    continue;
                }
                if *kind != KeywordKind::OptOut
                    && let Some(first) = opt_outs.get(&as_opt_out)
                {
                    let message = format!(
                        "{word:?} would be read as the opt-out keyword at {first} \
                             (opt-outs are compared ignoring case, accents, invisible \
                             characters and trailing . or !)"
                    );
                    self.problem(path, message);
                    continue;
                }
                match seen.get(&normalized) {
                    // The same keyword twice in one list (say ARRÊT composed and
                    // decomposed): one keyword, kept once.
                    Some((_, first_kind)) if first_kind == kind => continue,
                    Some((first, _)) => {
                        let message = format!(
                            "{word:?} is already listed at {first} (compared after Unicode \
                             normalisation, ignoring case)"
                        );
                        self.problem(path, message);
                        continue;
                    }
                    None => {}
                }
                if *kind == KeywordKind::OptOut {
                    opt_outs.entry(as_opt_out).or_insert_with(|| path.clone());
                }
                seen.insert(normalized, (path, *kind));
                list.push(word.trim().to_owned());
            }
        }
        lists
    }

    fn category(&mut self, table: &Table, path: &str, has_window: bool) -> CategoryRules {
        self.unknown_keys(
            table,
            path,
            &[
                "allowed_by",
                "double_opt_in",
                "free_in_window",
                "price",
                "description",
            ],
        );
        let (mut by_opt_in, mut by_window) = (false, false);
        if let Some(items) = self.array(table, path, "allowed_by", true) {
            let allowed_path = join(path, "allowed_by");
            if items.is_empty() {
                self.problem(
                    allowed_path.as_str(),
                    "must name at least one of \"opt_in\", \"window\"",
                );
            }
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{allowed_path}[{i}]");
                let Some(basis) = self.expect_str(item, &item_path) else {
                    continue;
                };
                let flag = match basis {
                    "opt_in" => &mut by_opt_in,
                    "window" => &mut by_window,
                    other => {
                        self.problem(
                            item_path,
                            format!("{other:?} is not one of \"opt_in\", \"window\""),
                        );
                        continue;
                    }
                };
                if *flag {
                    self.problem(item_path, format!("{basis:?} is listed twice"));
                }
                *flag = true;
            }
            if by_window && !has_window {
                self.problem(
                    allowed_path,
                    "\"window\" needs a [window] section, which this policy does not have",
                );
            }
        }
        let double_opt_in = self
            .boolean(table, path, "double_opt_in", false)
            .unwrap_or(false);
        if double_opt_in && !by_opt_in {
            self.problem(
                join(path, "double_opt_in"),
                "has no effect: \"opt_in\" is not in allowed_by",
            );
        }
        let free_in_window = self
            .boolean(table, path, "free_in_window", false)
            .unwrap_or(false);
        if free_in_window && !has_window {
            self.problem(
                join(path, "free_in_window"),
                "has no effect: this policy has no [window] section",
            );
        }
        let price = self
            .table(table, path, "price", false)
            .map(|p| self.price(p, &join(path, "price")));
        let descriptions = self.descriptions(table, path);
        CategoryRules {
            by_opt_in,
            by_window,
            double_opt_in,
            free_in_window,
            price: price.flatten(),
            descriptions,
        }
    }

    /// `[categories.<name>.description]`: what the category is for, in plain
    /// words, in every language the preference center speaks (SPEC section 11). A
    /// person deciding about a category must be able to read what it means, so a
    /// missing language is a problem, not a fallback to English.
    fn descriptions(&mut self, table: &Table, path: &str) -> BTreeMap<Language, String> {
        let mut out = BTreeMap::new();
        let codes: Vec<&str> = Language::ALL.iter().map(|l| l.code()).collect();
        let Some(texts) = self.table(table, path, "description", true) else {
            return out;
        };
        let path = join(path, "description");
        self.unknown_keys(texts, &path, &codes);
        for language in Language::ALL {
            let field = join(&path, language.code());
            let Some(value) = texts.get(language.code()) else {
                self.problem(
                    field,
                    format!(
                        "is required: every category needs a plain-language description in each of {}",
                        codes.join(", ")
                    ),
                );
                continue;
            };
            let Some(text) = self.expect_str(value, &field) else {
                continue;
            };
            let text = text.trim();
            if text.is_empty() {
                self.problem(field, "must not be blank");
            } else if text.chars().count() > MAX_DESCRIPTION_CHARS {
                self.problem(
                    field,
                    format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
                );
            } else {
                out.insert(language, text.to_owned());
            }
        }
        out
    }

    fn price(&mut self, table: &Table, path: &str) -> Option<PriceTable> {
        self.unknown_keys(table, path, &["currency", "amount", "by_calling_code"]);
        let currency = self.string(table, path, "currency", true).and_then(|code| {
            let currency = Currency::parse(code);
            if currency.is_none() {
                self.problem(
                    join(path, "currency"),
                    format!("{code:?} must be three uppercase letters, e.g. \"EUR\""),
                );
            }
            currency
        });
        let amount = match table.get("amount") {
            Some(value) => self.amount(value, &join(path, "amount")),
            None => {
                self.problem(join(path, "amount"), "is required");
                None
            }
        };
        let mut by_calling_code = BTreeMap::new();
        if let Some(codes) = self.table(table, path, "by_calling_code", false) {
            let codes_path = join(path, "by_calling_code");
            for (code, value) in codes {
                let code_path = join(&codes_path, code);
                let parsed = parse_calling_code(code);
                if parsed.is_none() {
                    self.problem(
                        code_path.as_str(),
                        "a calling code must be 1 to 3 digits without '+' or a leading 0, e.g. \"31\"",
                    );
                }
                let amount = self.amount(value, &code_path);
                if let (Some(code), Some(amount)) = (parsed, amount) {
                    by_calling_code.insert(code, amount);
                }
            }
        }
        Some(PriceTable {
            currency: currency?,
            amount: amount?,
            by_calling_code,
        })
    }

    fn amount(&mut self, value: &Value, path: &str) -> Option<Amount> {
        let text = match value {
            Value::String(text) => text,
            Value::Float(_) | Value::Integer(_) => {
                self.problem(
                    path,
                    "must be a decimal string such as \"0.0450\": a TOML number is not exact money",
                );
                return None;
            }
            other => {
                self.problem(
                    path,
                    format!(
                        "expected a decimal string, found {}",
                        article(other.type_str())
                    ),
                );
                return None;
            }
        };
        match text.parse::<Amount>() {
            Ok(amount) => Some(amount),
            Err(err) => {
                self.problem(path, format!("{text:?} {err}"));
                None
            }
        }
    }

    fn unknown_keys(&mut self, table: &Table, path: &str, allowed: &[&str]) {
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                self.problem(
                    join(path, key),
                    format!("unknown key (expected one of: {})", allowed.join(", ")),
                );
            }
        }
    }

    fn get<'t>(
        &mut self,
        table: &'t Table,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<&'t Value> {
        let value = table.get(key);
        if value.is_none() && required {
            self.problem(join(path, key), "is required");
        }
        value
    }

    fn table<'t>(
        &mut self,
        table: &'t Table,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<&'t Table> {
        let value = self.get(table, path, key, required)?;
        self.expect_table(value, &join(path, key))
    }

    fn array<'t>(
        &mut self,
        table: &'t Table,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<&'t [Value]> {
        match self.get(table, path, key, required)? {
            Value::Array(items) => Some(items),
            other => {
                self.wrong_type(&join(path, key), "an array", other);
                None
            }
        }
    }

    fn string<'t>(
        &mut self,
        table: &'t Table,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<&'t str> {
        let value = self.get(table, path, key, required)?;
        self.expect_str(value, &join(path, key))
    }

    fn boolean(&mut self, table: &Table, path: &str, key: &str, required: bool) -> Option<bool> {
        match self.get(table, path, key, required)? {
            Value::Boolean(b) => Some(*b),
            other => {
                self.wrong_type(&join(path, key), "a boolean", other);
                None
            }
        }
    }

    fn integer(
        &mut self,
        table: &Table,
        path: &str,
        key: &str,
        range: RangeInclusive<i64>,
        required: bool,
    ) -> Option<u32> {
        let value = self.get(table, path, key, required)?;
        self.integer_value(value, &join(path, key), range)
    }

    fn integer_value(
        &mut self,
        value: &Value,
        path: &str,
        range: RangeInclusive<i64>,
    ) -> Option<u32> {
        let Value::Integer(n) = value else {
            self.wrong_type(path, "an integer", value);
            return None;
        };
        if !range.contains(n) {
            self.problem(
                path,
                format!(
                    "must be between {} and {}, found {n}",
                    range.start(),
                    range.end()
                ),
            );
            return None;
        }
        u32::try_from(*n).ok()
    }

    fn expect_table<'t>(&mut self, value: &'t Value, path: &str) -> Option<&'t Table> {
        match value {
            Value::Table(table) => Some(table),
            other => {
                self.wrong_type(path, "a table", other);
                None
            }
        }
    }

    fn expect_str<'t>(&mut self, value: &'t Value, path: &str) -> Option<&'t str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(path, "a string", other);
                None
            }
        }
    }

    fn wrong_type(&mut self, path: &str, expected: &str, found: &Value) {
        self.problem(
            path,
            format!("expected {expected}, found {}", article(found.type_str())),
        );
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "array" | "integer" => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

/// `[a-z][a-z0-9_]*`
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A country calling code: 1 to 3 digits, never starting with 0 (ITU-T E.164).
fn parse_calling_code(code: &str) -> Option<u16> {
    let valid = (1..=3).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_digit())
        && !code.starts_with('0');
    if valid { code.parse().ok() } else { None }
}

/// The dotted path of `key` under `path`, quoting keys that are not bare TOML keys.
fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
name = "test-policy"
version = "2026-11-01"
description = "a policy for tests"

[consent]
max_age_days = 730
clock_skew_seconds = 300

[window]
hours = 24
[window.entry_point_hours]
click_to_chat_ad = 72

[keywords]
opt_out = ["STOP", "ARRÊT"]
opt_in = ["START"]
help = ["HELP"]

[erasure]
suppress = true

[retention]
closed_window_days = 30
revoked_evidence_days = 1095

[categories.marketing]
allowed_by = ["opt_in"]
double_opt_in = true
[categories.marketing.price]
currency = "EUR"
amount = "0.0450"
[categories.marketing.price.by_calling_code]
"31" = "0.1597"
[categories.marketing.description]
en = "Offers and news."
de = "Angebote und Neuigkeiten."
nl = "Aanbiedingen en nieuws."
it = "Offerte e novità."
fr = "Offres et nouveautés."
es = "Ofertas y novedades."

[categories.service]
allowed_by = ["window"]
free_in_window = true
[categories.service.description]
en = "Replies to your messages."
de = "Antworten auf Ihre Nachrichten."
nl = "Antwoorden op uw berichten."
it = "Risposte ai tuoi messaggi."
fr = "Réponses à vos messages."
es = "Respuestas a sus mensajes."
"#;

    fn load(text: &str) -> Result<Policy, Vec<PolicyProblem>> {
        Policy::from_toml_str("test-policy.toml", text)
    }

    fn valid() -> Policy {
        load(VALID).expect("the test policy is valid")
    }

    /// The problems of `text`, as `(field, message)` pairs.
    fn problems(text: &str) -> Vec<(String, String)> {
        match load(text) {
            Ok(_) => panic!("expected problems, the policy loaded"),
            Err(problems) => problems.into_iter().map(|p| (p.field, p.message)).collect(),
        }
    }

    /// Asserts that `text` has a problem at `field` whose message contains `needle`.
    #[track_caller]
    fn assert_problem(text: &str, field: &str, needle: &str) {
        let found = problems(text);
        assert!(
            found.iter().any(|(f, m)| f == field && m.contains(needle)),
            "expected a problem at {field} containing {needle:?}, got {found:#?}"
        );
    }

    #[test]
    fn a_valid_policy_exposes_its_rules() {
        let policy = valid();
        assert_eq!(policy.name(), "test-policy");
        assert_eq!(policy.version(), "2026-11-01");
        assert_eq!(policy.description(), "a policy for tests");
        assert_eq!(policy.max_age(), Duration::days(730));
        assert_eq!(policy.clock_skew(), Duration::seconds(300));
        assert_eq!(policy.window_hours(), Some(24));
        assert_eq!(policy.entry_point_hours("click_to_chat_ad"), Some(72));
        assert_eq!(policy.entry_point_hours("other"), None);
        assert_eq!(policy.window_for(None), Some(Duration::hours(24)));
        assert_eq!(
            policy.window_for(Some("unknown_entry")),
            Some(Duration::hours(24))
        );
        assert_eq!(
            policy.window_for(Some("click_to_chat_ad")),
            Some(Duration::hours(72))
        );
        assert!(policy.suppress_on_erasure());
        assert_eq!(policy.closed_window_retention(), Duration::days(30));
        assert_eq!(policy.revoked_evidence_retention(), Duration::days(1095));
        let names: Vec<_> = policy.categories().map(|c| c.as_str().to_owned()).collect();
        assert_eq!(names, ["marketing", "service"]);

        let marketing = policy.category("marketing").unwrap();
        let rules = policy.rules(&marketing).unwrap();
        assert_eq!(rules.allowed_by(), [AllowedBy::OptIn]);
        assert!(rules.double_opt_in());
        assert!(!rules.free_in_window());
        let service = policy
            .rules(&policy.category("service").unwrap())
            .unwrap()
            .clone();
        assert_eq!(service.allowed_by(), [AllowedBy::Window]);
        assert!(service.free_in_window());
        assert!(!service.double_opt_in());
        assert!(service.price().is_none());
    }

    #[test]
    fn the_version_carries_a_hash_of_the_exact_bytes() {
        let policy = valid();
        assert_eq!(
            policy.content_hash(),
            hex::encode(Sha256::digest(VALID.as_bytes()))
        );
        assert_eq!(
            policy.versioned(),
            format!("2026-11-01+sha256:{}", &policy.content_hash()[..12])
        );
        let edited = load(&VALID.replace("a policy for tests", "a policy for tests!")).unwrap();
        assert_eq!(edited.version(), policy.version());
        assert_ne!(
            edited.versioned(),
            policy.versioned(),
            "an edit without a version bump is still visible"
        );
    }

    #[test]
    fn categories_come_only_from_the_policy() {
        let policy = valid();
        assert_eq!(policy.category("marketing").unwrap().as_str(), "marketing");
        assert!(policy.category("utility").is_none(), "not in this policy");
        assert!(policy.category("Marketing").is_none(), "names are exact");
        assert!(policy.category(" marketing").is_none());
        let json = serde_json::to_string(&policy.category("service").unwrap()).unwrap();
        assert_eq!(json, "\"service\"");
    }

    #[test]
    fn keywords_match_the_whole_trimmed_message_in_any_case() {
        let policy = valid();
        let cases = [
            ("STOP", Some(KeywordKind::OptOut)),
            ("stop", Some(KeywordKind::OptOut)),
            ("  stop ", Some(KeywordKind::OptOut)),
            ("\tStOp\n", Some(KeywordKind::OptOut)),
            ("ARRÊT", Some(KeywordKind::OptOut)),
            ("arrêt", Some(KeywordKind::OptOut)),
            ("Arrêt", Some(KeywordKind::OptOut)),
            ("start", Some(KeywordKind::OptIn)),
            ("Help", Some(KeywordKind::Help)),
            ("please stop", None),
            ("stop please", None),
            ("st op", None),
            ("", None),
            ("   ", None),
            ("stop?", None),
            // SPEC 2: forgiving for opt-outs, because a missed STOP is a breach.
            ("STOP!", Some(KeywordKind::OptOut)),
            ("stop.", Some(KeywordKind::OptOut)),
            ("ＳＴＯＰ", Some(KeywordKind::OptOut)),
            ("STOP\u{200B}", Some(KeywordKind::OptOut)),
            ("\u{200B}S\u{2060}TOP\u{FEFF}", Some(KeywordKind::OptOut)),
            ("ARRE\u{0302}T", Some(KeywordKind::OptOut)),
            ("arret", Some(KeywordKind::OptOut)),
            ("Arrêt !", Some(KeywordKind::OptOut)),
            // Normalised and folded for opt-ins too, but nothing more.
            ("ＳＴＡＲＴ", Some(KeywordKind::OptIn)),
            (" Start ", Some(KeywordKind::OptIn)),
            ("start!", None),
            ("st\u{200B}art", None),
        ];
        for (message, expected) in cases {
            assert_eq!(policy.keyword(message), expected, "message {message:?}");
        }
        assert_eq!(policy.keywords(KeywordKind::OptOut), ["STOP", "ARRÊT"]);
        assert_eq!(policy.keywords(KeywordKind::Help), ["HELP"]);
    }

    #[test]
    fn spellings_of_one_keyword_in_one_list_collapse() {
        let text = VALID.replace(
            "opt_out = [\"STOP\", \"ARRÊT\"]",
            "opt_out = [\"STOP\", \"ARRÊT\", \"stop\", \"ARRE\u{0302}T\", \"ＳＴＯＰ\"]",
        );
        assert_ne!(text, VALID, "the fixture has that line");
        let policy = load(&text).expect("duplicates collapse");
        assert_eq!(policy.keywords(KeywordKind::OptOut), ["STOP", "ARRÊT"]);
        assert_eq!(policy.keyword("arret"), Some(KeywordKind::OptOut));
    }

    #[test]
    fn prices_are_exact_and_fall_back_to_the_default() {
        let policy = valid();
        let marketing = policy.category("marketing").unwrap();
        let nl = policy.price_for(&marketing, Some(31)).unwrap();
        assert_eq!(nl.currency().as_str(), "EUR");
        assert_eq!(nl.amount().micros(), 159_700);
        let other = policy.price_for(&marketing, Some(44)).unwrap();
        assert_eq!(other.amount().micros(), 45_000);
        assert_eq!(policy.price_for(&marketing, None), Some(other));
        assert_eq!(
            policy.price_for(&policy.category("service").unwrap(), Some(31)),
            None
        );
        let json = serde_json::to_value(nl).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"currency": "EUR", "amount": "0.1597"})
        );
    }

    #[test]
    fn amounts_parse_and_print_exactly() {
        let cases = [
            ("0", 0, "0"),
            ("0.0450", 45_000, "0.045"),
            ("0.1597", 159_700, "0.1597"),
            ("1", 1_000_000, "1"),
            ("1.00", 1_000_000, "1"),
            ("12.000001", 12_000_001, "12.000001"),
            ("0.000001", 1, "0.000001"),
            ("007.5", 7_500_000, "7.5"),
        ];
        for (text, micros, printed) in cases {
            let amount: Amount = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(amount.micros(), micros, "{text}");
            assert_eq!(amount.to_string(), printed, "{text}");
            assert_eq!(
                printed.parse::<Amount>(),
                Ok(amount),
                "round trip of {text}"
            );
        }
        let errors = [
            ("", AmountError::Empty),
            ("-1", AmountError::Negative),
            ("1.", AmountError::NotDecimal),
            (".5", AmountError::NotDecimal),
            ("1,5", AmountError::NotDecimal),
            ("+1", AmountError::NotDecimal),
            ("1e3", AmountError::NotDecimal),
            (" 1", AmountError::NotDecimal),
            ("1.2.3", AmountError::NotDecimal),
            ("0.0000001", AmountError::TooPrecise),
            ("99999999999999999999", AmountError::TooLarge),
            ("9223372036855", AmountError::TooLarge),
        ];
        for (text, expected) in errors {
            assert_eq!(text.parse::<Amount>(), Err(expected), "{text:?}");
        }
        assert_eq!(Amount::from_micros(-1), None);
        assert_eq!(Amount::from_micros(5).map(Amount::micros), Some(5));
    }

    #[test]
    fn an_amount_is_written_as_the_formatter_would_write_it() {
        // The reference: units, then the six fraction digits less trailing zeros.
        let reference = |micros: i64| {
            let (int, frac) = (micros / 1_000_000, micros % 1_000_000);
            if frac == 0 {
                int.to_string()
            } else {
                format!("{int}.{}", format!("{frac:06}").trim_end_matches('0'))
            }
        };
        let mut samples = vec![0, 1, 9, 10, 999_999, 1_000_000, 1_000_001, i64::MAX];
        // A spread over every magnitude, with and without fractions.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 19) as u32;
            samples.push((x >> 8) as i64 % 10_i64.pow(digits).max(1));
        }
        for micros in samples {
            let amount = Amount::from_micros(micros).expect("not negative");
            assert_eq!(amount.to_string(), reference(micros), "{micros}");
            assert_eq!(
                serde_json::to_string(&amount).expect("serialises"),
                format!("\"{}\"", reference(micros)),
                "{micros}"
            );
        }
    }

    #[test]
    fn currencies_are_three_uppercase_letters() {
        assert_eq!(
            Currency::parse("EUR").map(|c| c.to_string()),
            Some("EUR".into())
        );
        for bad in ["eur", "EU", "EURO", "E1R", "", "ÉUR"] {
            assert!(Currency::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_syntax_error_is_one_problem_with_line_and_column() {
        let found = problems("name = \"x\"\nversion = \n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "(syntax)");
        assert!(found[0].1.starts_with("line 2, column"), "{}", found[0].1);
        assert!(!found[0].1.contains('\n'), "one line: {}", found[0].1);
        let duplicate = problems("[consent]\nmax_age_days = 1\n[consent]\n");
        assert_eq!(duplicate.len(), 1, "{duplicate:?}");
        assert!(
            duplicate[0].1.starts_with("line 3, column 1: "),
            "{}",
            duplicate[0].1
        );
        assert!(
            duplicate[0].1.contains("duplicate key `consent`"),
            "{}",
            duplicate[0].1
        );
    }

    #[test]
    fn a_problem_displays_file_field_and_message() {
        let problem = PolicyProblem {
            file: "policies/x.toml".into(),
            field: "consent.max_age_days".into(),
            message: "is required".into(),
        };
        assert_eq!(
            problem.to_string(),
            "policies/x.toml: consent.max_age_days: is required"
        );
    }

    #[test]
    fn each_kind_of_problem_names_its_field() {
        // (what the case is about, edit of VALID as (from, to), field, message fragment)
        let cases: &[(&str, (&str, &str), &str, &str)] = &[
            (
                "unknown top-level key",
                ("description =", "colour = 1\ndescription ="),
                "colour",
                "unknown key",
            ),
            (
                "unknown nested key",
                ("max_age_days = 730", "max_age_days = 730\nmax_age = 1"),
                "consent.max_age",
                "unknown key",
            ),
            (
                "unknown category key",
                (
                    "double_opt_in = true",
                    "double_opt_in = true\ndouble_optin = true",
                ),
                "categories.marketing.double_optin",
                "unknown key",
            ),
            (
                "wrong type",
                ("max_age_days = 730", "max_age_days = \"730\""),
                "consent.max_age_days",
                "expected an integer, found a string",
            ),
            (
                "wrong type of table",
                (
                    "[window.entry_point_hours]\nclick_to_chat_ad = 72",
                    "entry_point_hours = 72",
                ),
                "window.entry_point_hours",
                "expected a table, found an integer",
            ),
            (
                "wrong type of string",
                (
                    "description = \"a policy for tests\"",
                    "description = [\"x\"]",
                ),
                "description",
                "expected a string, found an array",
            ),
            (
                "wrong type of bool",
                ("suppress = true", "suppress = \"yes\""),
                "erasure.suppress",
                "expected a boolean",
            ),
            (
                "missing required",
                ("suppress = true", ""),
                "erasure.suppress",
                "is required",
            ),
            (
                "missing section",
                (
                    "[retention]\nclosed_window_days = 30\nrevoked_evidence_days = 1095",
                    "",
                ),
                "retention",
                "is required",
            ),
            (
                "max age too small",
                ("max_age_days = 730", "max_age_days = 0"),
                "consent.max_age_days",
                "between 1 and 3650, found 0",
            ),
            (
                "max age too large",
                ("max_age_days = 730", "max_age_days = 3651"),
                "consent.max_age_days",
                "between 1 and 3650",
            ),
            (
                "negative skew",
                ("clock_skew_seconds = 300", "clock_skew_seconds = -1"),
                "consent.clock_skew_seconds",
                "between 0 and 3600",
            ),
            (
                "window hours",
                ("hours = 24", "hours = 169"),
                "window.hours",
                "between 1 and 168",
            ),
            (
                "entry point hours",
                ("click_to_chat_ad = 72", "click_to_chat_ad = 0"),
                "window.entry_point_hours.click_to_chat_ad",
                "between 1 and 168",
            ),
            (
                "entry point name",
                ("click_to_chat_ad = 72", "Click-Ad = 72"),
                "window.entry_point_hours.Click-Ad",
                "entry point name",
            ),
            (
                "retention",
                ("closed_window_days = 30", "closed_window_days = 0"),
                "retention.closed_window_days",
                "between 1 and 3650",
            ),
            (
                "evidence retention",
                (
                    "revoked_evidence_days = 1095",
                    "revoked_evidence_days = 99999",
                ),
                "retention.revoked_evidence_days",
                "between 1 and 7300",
            ),
            (
                "keyword in two lists",
                ("opt_in = [\"START\"]", "opt_in = [\"START\", \" stop \"]"),
                "keywords.opt_in[1]",
                "would be read as the opt-out keyword at keywords.opt_out[0]",
            ),
            (
                "opt-in and help keyword the same after folding",
                ("help = [\"HELP\"]", "help = [\"HELP\", \"Ｓtart\"]"),
                "keywords.help[1]",
                "already listed at keywords.opt_in[0]",
            ),
            (
                "a help keyword an opt-out would swallow (accents ignored)",
                ("help = [\"HELP\"]", "help = [\"HELP\", \"arret!\"]"),
                "keywords.help[1]",
                "would be read as the opt-out keyword at keywords.opt_out[1]",
            ),
            (
                "empty keyword",
                ("help = [\"HELP\"]", "help = [\"HELP\", \"\"]"),
                "keywords.help[1]",
                "must not be blank",
            ),
            (
                "blank keyword",
                ("help = [\"HELP\"]", "help = [\"  \"]"),
                "keywords.help[0]",
                "must not be blank",
            ),
            (
                "keyword not a string",
                ("help = [\"HELP\"]", "help = [1]"),
                "keywords.help[0]",
                "expected a string, found an integer",
            ),
            (
                "no opt-out keyword",
                ("opt_out = [\"STOP\", \"ARRÊT\"]", "opt_out = []"),
                "keywords.opt_out",
                "at least one",
            ),
            (
                "category name",
                ("[categories.service]", "[categories.Service]"),
                "categories.Service",
                "category name",
            ),
            (
                "category name with a dot",
                ("[categories.service]", "[categories.\"a.b\"]"),
                "categories.\"a.b\"",
                "category name",
            ),
            (
                "unknown basis",
                ("allowed_by = [\"window\"]", "allowed_by = [\"inbound\"]"),
                "categories.service.allowed_by[0]",
                "not one of",
            ),
            (
                "empty allowed_by",
                ("allowed_by = [\"window\"]", "allowed_by = []"),
                "categories.service.allowed_by",
                "at least one",
            ),
            (
                "basis twice",
                (
                    "allowed_by = [\"window\"]",
                    "allowed_by = [\"window\", \"window\"]",
                ),
                "categories.service.allowed_by[1]",
                "listed twice",
            ),
            (
                "double opt-in without opt-in",
                (
                    "free_in_window = true",
                    "free_in_window = true\ndouble_opt_in = true",
                ),
                "categories.service.double_opt_in",
                "no effect",
            ),
            (
                "bad currency",
                ("currency = \"EUR\"", "currency = \"eur\""),
                "categories.marketing.price.currency",
                "three uppercase letters",
            ),
            (
                "missing amount",
                ("amount = \"0.0450\"", ""),
                "categories.marketing.price.amount",
                "is required",
            ),
            (
                "float amount",
                ("amount = \"0.0450\"", "amount = 0.045"),
                "categories.marketing.price.amount",
                "not exact money",
            ),
            (
                "negative amount",
                ("amount = \"0.0450\"", "amount = \"-0.045\""),
                "categories.marketing.price.amount",
                "must not be negative",
            ),
            (
                "too precise amount",
                ("amount = \"0.0450\"", "amount = \"0.0000001\""),
                "categories.marketing.price.amount",
                "more than 6 digits",
            ),
            (
                "not a number",
                ("amount = \"0.0450\"", "amount = \"cheap\""),
                "categories.marketing.price.amount",
                "decimal number",
            ),
            (
                "bad override amount",
                ("\"31\" = \"0.1597\"", "\"31\" = \"0,1597\""),
                "categories.marketing.price.by_calling_code.31",
                "decimal number",
            ),
            (
                "calling code with plus",
                ("\"31\" = \"0.1597\"", "\"+31\" = \"0.1597\""),
                "categories.marketing.price.by_calling_code.\"+31\"",
                "calling code",
            ),
            (
                "calling code too long",
                ("\"31\" = \"0.1597\"", "\"3100\" = \"0.1597\""),
                "categories.marketing.price.by_calling_code.3100",
                "calling code",
            ),
            (
                "calling code with leading zero",
                ("\"31\" = \"0.1597\"", "\"031\" = \"0.1597\""),
                "categories.marketing.price.by_calling_code.031",
                "calling code",
            ),
            (
                "name differs from file",
                ("name = \"test-policy\"", "name = \"other\""),
                "name",
                "must equal the file name",
            ),
            (
                "name charset",
                ("name = \"test-policy\"", "name = \"Test_Policy\""),
                "name",
                "lowercase letters, digits and '-'",
            ),
            (
                "blank version",
                ("version = \"2026-11-01\"", "version = \" \""),
                "version",
                "must not be blank",
            ),
            (
                "version with spaces",
                ("version = \"2026-11-01\"", "version = \"nov 2026\""),
                "version",
                "whitespace",
            ),
        ];
        for (about, (from, to), field, needle) in cases {
            assert!(VALID.contains(from), "{about}: the edit does not apply");
            let text = VALID.replacen(from, to, 1);
            let found = problems(&text);
            assert!(
                found.iter().any(|(f, m)| f == field && m.contains(needle)),
                "{about}: expected a problem at {field} containing {needle:?}, got {found:#?}"
            );
        }
    }

    #[test]
    fn a_window_basis_needs_a_window_section() {
        let text = VALID.replace(
            "[window]\nhours = 24\n[window.entry_point_hours]\nclick_to_chat_ad = 72\n",
            "",
        );
        let found = problems(&text);
        assert!(found.contains(&(
            "categories.service.allowed_by".into(),
            "\"window\" needs a [window] section, which this policy does not have".into()
        )));
        assert!(
            found.iter().any(|(f, m)| f == "categories.service.free_in_window" && m.contains("no [window]")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_policy_needs_at_least_one_category() {
        let cut = VALID.find("[categories.marketing]").unwrap();
        let text = format!("{}[categories]\n", &VALID[..cut]);
        assert_problem(&text, "categories", "at least one category");
        assert_problem(&VALID[..cut], "categories", "is required");
    }

    #[test]
    fn a_category_must_be_a_table() {
        let cut = VALID.find("[categories.service]").unwrap();
        let text = format!("{}[categories]\nservice = \"window\"\n", &VALID[..cut]);
        assert_problem(
            &text,
            "categories.service",
            "expected a table, found a string",
        );
    }

    #[test]
    fn every_category_describes_itself_in_every_language() {
        let policy = valid();
        let marketing = policy
            .rules(&policy.category("marketing").unwrap())
            .unwrap();
        assert_eq!(
            marketing.description(Language::De),
            "Angebote und Neuigkeiten."
        );
        assert_eq!(marketing.description(Language::Es), "Ofertas y novedades.");

        let without_dutch = VALID.replacen("nl = \"Aanbiedingen en nieuws.\"\n", "", 1);
        assert_problem(
            &without_dutch,
            "categories.marketing.description.nl",
            "is required: every category needs a plain-language description in each of en, de, nl, it, fr, es",
        );
        let blank = VALID.replacen("\"Réponses à vos messages.\"", "\"  \"", 1);
        assert_problem(
            &blank,
            "categories.service.description.fr",
            "must not be blank",
        );
        let unknown = VALID.replacen("es = \"Ofertas y novedades.\"", "es = \"x\"\npt = \"y\"", 1);
        assert_problem(
            &unknown,
            "categories.marketing.description.pt",
            "unknown key",
        );
        let long = VALID.replacen("\"Offers and news.\"", &format!("{:?}", "a".repeat(501)), 1);
        assert_problem(&long, "categories.marketing.description.en", "at most 500");
        let cut = VALID.find("[categories.service.description]").unwrap();
        assert_problem(
            &VALID[..cut],
            "categories.service.description",
            "is required",
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = VALID
            .replacen("name = \"test-policy\"", "name = \"wrong\"", 1)
            .replacen("max_age_days = 730", "max_age_days = 0\nfoo = 1", 1)
            .replacen("opt_in = [\"START\"]", "opt_in = [\"STOP\"]", 1)
            .replacen("currency = \"EUR\"", "currency = \"euro\"", 1)
            .replacen("amount = \"0.0450\"", "amount = \"abc\"", 1)
            .replacen("allowed_by = [\"window\"]", "allowed_by = [\"windows\"]", 1);
        let found = problems(&text);
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "consent.foo",
                "consent.max_age_days",
                "keywords.opt_in[0]",
                "categories.marketing.price.currency",
                "categories.marketing.price.amount",
                "categories.service.allowed_by[0]",
            ],
            "{found:#?}"
        );
        let problems = load(&text).unwrap_err();
        assert!(problems.iter().all(|p| p.file == "test-policy.toml"));
    }

    #[test]
    fn the_file_stem_is_compared_whatever_the_directory() {
        assert!(Policy::from_toml_str("/etc/consentgate/policies/test-policy.toml", VALID).is_ok());
        let err = Policy::from_toml_str("/etc/other.toml", VALID).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].file, "/etc/other.toml");
        assert_eq!(err[0].field, "name");
    }

    #[test]
    fn a_missing_file_is_a_problem_not_a_panic() {
        let err = Policy::from_file("/nonexistent/dir/test-policy.toml").unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].field, "(file)");
        assert!(
            err[0].message.starts_with("cannot read"),
            "{}",
            err[0].message
        );
    }

    #[test]
    fn paths_quote_keys_that_are_not_bare() {
        assert_eq!(join("", "name"), "name");
        assert_eq!(join("a.b", "c_d-e"), "a.b.c_d-e");
        assert_eq!(join("a", "x.y"), "a.\"x.y\"");
        assert_eq!(join("a", ""), "a.\"\"");
    }

    #[test]
    fn calling_codes_are_one_to_three_digits() {
        assert_eq!(parse_calling_code("1"), Some(1));
        assert_eq!(parse_calling_code("49"), Some(49));
        assert_eq!(parse_calling_code("998"), Some(998));
        for bad in ["", "0", "01", "1000", "+1", "4a", " 1"] {
            assert_eq!(parse_calling_code(bad), None, "{bad:?}");
        }
    }
}
