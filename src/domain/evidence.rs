//! Evidence: the proof of an opt-in or an opt-out (SPEC section 2).
//!
//! GDPR Art. 7(1): "Where processing is based on consent, the controller shall be
//! able to demonstrate that the data subject has consented." Demonstrating means
//! answering a regulator's questions years later: when was it given, to which
//! wording, and where. A request carries that proof as a JSON object under the key
//! `evidence`; [`Evidence::parse`] turns it into a validated [`Evidence`] for one
//! [`Channel`], or reports *every* problem at once, each under a dotted path such
//! as `evidence.source_url`, so that a collector fixes its form in one round trip
//! instead of one field per request.
//!
//! The JSON is walked as a generic [`serde_json::Value`] rather than deserialised
//! into `#[serde(deny_unknown_fields)]` structs: serde stops at the first error,
//! and its messages may quote the input.
//!
//! Evidence is personal data (an IP address, a user agent, or a phone number
//! pasted into the wrong field). Problems name the field and the rule, never the
//! submitted value; `Debug` names the fields that are present, never their
//! values; the service stores evidence only sealed (SPEC section 6).
//!
//! This module may depend on serde, serde_json, chrono, thiserror and utoipa (a
//! schema derive only); never on actix or diesel.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::time;

/// The path of the evidence object itself in a request.
const ROOT: &str = "evidence";
/// Longest value of most string fields, in characters.
const MAX_TEXT_CHARS: usize = 500;
/// Browsers' user agents run long (client hints, embedded webviews).
const MAX_USER_AGENT_CHARS: usize = 1000;
/// A version label such as `marketing-v3`, not the wording itself.
const MAX_CONSENT_TEXT_VERSION_CHARS: usize = 100;
/// Longest key named in a problem's path; longer keys are not echoed.
const MAX_NAMED_KEY_CHARS: usize = 64;
/// 2000-01-01T00:00:00Z as a Unix timestamp. Nothing this service records was
/// collected before it; an earlier `collected_at` is a unit or epoch mistake.
const EARLIEST_COLLECTED_AT: i64 = 946_684_800;

/// Where an opt-in or opt-out was collected.
// Deserialised through `String` so that a wrong value is a data error naming the
// field (a derived enum makes serde_json report a non-string as a syntax error).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(try_from = "String", rename_all = "snake_case")]
pub enum Channel {
    /// A web form.
    Web,
    /// A mobile app.
    App,
    /// In a shop: a point of sale or a paper form.
    InStore,
    /// A click-to-chat entry point (an ad or a link that opens a conversation).
    ClickToChat,
    /// An inbound message that is a keyword such as START or STOP.
    Keyword,
    /// A bulk import of consent collected elsewhere, e.g. from a legacy CRM.
    Import,
    /// Recorded by customer support on the person's request.
    Support,
    /// Another system through the API, for collection points not listed here.
    Api,
}

impl Channel {
    /// Every channel, in the order of the SPEC.
    pub const ALL: [Channel; 8] = [
        Channel::Web,
        Channel::App,
        Channel::InStore,
        Channel::ClickToChat,
        Channel::Keyword,
        Channel::Import,
        Channel::Support,
        Channel::Api,
    ];

    /// The snake_case name used in the API and in storage, e.g. `in_store`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::App => "app",
            Channel::InStore => "in_store",
            Channel::ClickToChat => "click_to_chat",
            Channel::Keyword => "keyword",
            Channel::Import => "import",
            Channel::Support => "support",
            Channel::Api => "api",
        }
    }

    /// The evidence keys of this channel besides `collected_at` and
    /// `consent_text_version`.
    fn keys(self) -> &'static [Key] {
        match self {
            Channel::Web => &[Key::SourceUrl, Key::FormId, Key::Ip, Key::UserAgent],
            Channel::App => &[Key::AppId, Key::AppVersion],
            Channel::InStore => &[Key::StoreId, Key::StaffId, Key::FormReference],
            Channel::ClickToChat | Channel::Keyword => &[Key::MessageReference],
            Channel::Import => &[Key::SourceSystem, Key::OriginalChannel],
            Channel::Support => &[Key::StaffId, Key::TicketReference],
            // A system relaying what happened on a messaging platform (a block, a
            // STOP) names the platform's message.
            Channel::Api => &[Key::SourceSystem, Key::MessageReference],
        }
    }

    /// The keys an opt-in on this channel must carry (web's "source_url or
    /// form_id" is in [`Rules::missing`]). Each one is what identifies the
    /// collection point when a regulator asks "where did they agree?"
    fn required_keys(self) -> &'static [Key] {
        match self {
            Channel::Web | Channel::Keyword => &[],
            Channel::App => &[Key::AppId],
            Channel::InStore => &[Key::StoreId],
            Channel::ClickToChat => &[Key::MessageReference],
            Channel::Import => &[Key::SourceSystem, Key::OriginalChannel],
            // Who recorded it: support acts on the person's word, so the member
            // of staff is the only witness.
            Channel::Support => &[Key::StaffId],
            Channel::Api => &[Key::SourceSystem],
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown channel; expected one of web, app, in_store, click_to_chat, keyword, import, support, api"
)]
pub struct UnknownChannel;

impl TryFrom<String> for Channel {
    type Error = UnknownChannel;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|channel| channel.as_str() == s)
            .ok_or(UnknownChannel)
    }
}

/// One problem with one field of a request's evidence (for a withdrawal: a field
/// that was dropped, reported as a warning).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, thiserror::Error, Serialize, Deserialize, utoipa::ToSchema,
)]
#[error("{field}: {message}")]
pub struct FieldProblem {
    /// Dotted path: `evidence` for the object itself, else `evidence.<key>`.
    pub field: String,
    /// What is wrong, for a person. Never contains the submitted value.
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldProblem {
        FieldProblem {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Validated evidence of one opt-in or opt-out.
///
/// Made by [`Evidence::parse`] from a request. `Serialize` and `Deserialize` are
/// for the sealed copy the service stores and reads back for exports: the stored
/// form is flat, like the request (`collected_at`, `consent_text_version`,
/// `channel` and the channel's fields, absent ones left out), and deserialising
/// it trusts its input rather than validating it again.
///
/// `Debug` prints the channel, `collected_at` and which fields are present, never
/// their values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// When the person gave (or withdrew) consent, truncated to microseconds.
    pub collected_at: DateTime<Utc>,
    /// The version of the exact wording the person saw (Art. 7(1) and 7(2)):
    /// required for opt-ins, optional for withdrawals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_text_version: Option<String>,
    /// Where it was collected, with that channel's own fields.
    #[serde(flatten)]
    pub details: Details,
}

/// The channel and its own evidence fields.
///
/// Every field is an `Option` so that the lenient withdrawal form uses the same
/// type; [`Evidence::parse`] with [`Strictness::OptIn`] decides which are
/// required. `Debug` names the fields that are present, never their values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum Details {
    /// A web form: identified by its URL, its id or both.
    Web {
        /// The absolute http(s) URL of the page with the form.
        #[serde(skip_serializing_if = "Option::is_none")]
        source_url: Option<String>,
        /// The business's own identifier of the form.
        #[serde(skip_serializing_if = "Option::is_none")]
        form_id: Option<String>,
        /// The address the form was submitted from.
        #[serde(skip_serializing_if = "Option::is_none")]
        ip: Option<IpAddr>,
        /// The browser's `User-Agent`.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_agent: Option<String>,
    },
    /// A mobile app.
    App {
        /// The app's identifier, e.g. its bundle id.
        #[serde(skip_serializing_if = "Option::is_none")]
        app_id: Option<String>,
        /// The app version that showed the consent text.
        #[serde(skip_serializing_if = "Option::is_none")]
        app_version: Option<String>,
    },
    /// In a shop.
    InStore {
        /// The business's identifier of the shop.
        #[serde(skip_serializing_if = "Option::is_none")]
        store_id: Option<String>,
        /// Who took the opt-in.
        #[serde(skip_serializing_if = "Option::is_none")]
        staff_id: Option<String>,
        /// A reference to the signed paper or tablet form.
        #[serde(skip_serializing_if = "Option::is_none")]
        form_reference: Option<String>,
    },
    /// A click-to-chat entry point.
    ClickToChat {
        /// The messaging platform's id of the message that opted in.
        #[serde(skip_serializing_if = "Option::is_none")]
        message_reference: Option<String>,
    },
    /// A keyword message (START, STOP and their kin).
    Keyword {
        /// The messaging platform's id of the keyword message.
        #[serde(skip_serializing_if = "Option::is_none")]
        message_reference: Option<String>,
    },
    /// Consent collected elsewhere and imported: the import's own fields plus
    /// the fields of the channel where the consent was first collected.
    Import {
        /// The system the records came from, e.g. `legacy-crm`.
        #[serde(skip_serializing_if = "Option::is_none")]
        source_system: Option<String>,
        /// Where the consent was first collected; never `import`.
        #[serde(skip_serializing_if = "Option::is_none")]
        original_channel: Option<Channel>,
        /// As in [`Details::Web`].
        #[serde(skip_serializing_if = "Option::is_none")]
        source_url: Option<String>,
        /// As in [`Details::Web`].
        #[serde(skip_serializing_if = "Option::is_none")]
        form_id: Option<String>,
        /// As in [`Details::Web`].
        #[serde(skip_serializing_if = "Option::is_none")]
        ip: Option<IpAddr>,
        /// As in [`Details::Web`].
        #[serde(skip_serializing_if = "Option::is_none")]
        user_agent: Option<String>,
        /// As in [`Details::App`].
        #[serde(skip_serializing_if = "Option::is_none")]
        app_id: Option<String>,
        /// As in [`Details::App`].
        #[serde(skip_serializing_if = "Option::is_none")]
        app_version: Option<String>,
        /// As in [`Details::InStore`].
        #[serde(skip_serializing_if = "Option::is_none")]
        store_id: Option<String>,
        /// As in [`Details::InStore`] and [`Details::Support`].
        #[serde(skip_serializing_if = "Option::is_none")]
        staff_id: Option<String>,
        /// As in [`Details::InStore`].
        #[serde(skip_serializing_if = "Option::is_none")]
        form_reference: Option<String>,
        /// As in [`Details::ClickToChat`] and [`Details::Keyword`].
        #[serde(skip_serializing_if = "Option::is_none")]
        message_reference: Option<String>,
        /// As in [`Details::Support`].
        #[serde(skip_serializing_if = "Option::is_none")]
        ticket_reference: Option<String>,
    },
    /// Recorded by customer support.
    Support {
        /// Who recorded it.
        #[serde(skip_serializing_if = "Option::is_none")]
        staff_id: Option<String>,
        /// The support ticket in which the person asked.
        #[serde(skip_serializing_if = "Option::is_none")]
        ticket_reference: Option<String>,
    },
    /// Another system through the API.
    Api {
        /// The calling system, e.g. `partner-portal`.
        #[serde(skip_serializing_if = "Option::is_none")]
        source_system: Option<String>,
        /// The messaging platform's id of the message or notification relayed
        /// (e.g. the block or STOP a platform reported).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_reference: Option<String>,
    },
}

impl Details {
    /// The channel these details belong to.
    pub fn channel(&self) -> Channel {
        match self {
            Details::Web { .. } => Channel::Web,
            Details::App { .. } => Channel::App,
            Details::InStore { .. } => Channel::InStore,
            Details::ClickToChat { .. } => Channel::ClickToChat,
            Details::Keyword { .. } => Channel::Keyword,
            Details::Import { .. } => Channel::Import,
            Details::Support { .. } => Channel::Support,
            Details::Api { .. } => Channel::Api,
        }
    }

    /// The names of the fields that have a value, from the stored form so that
    /// the list cannot drift from the fields.
    fn present_fields(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(Value::Object(object)) => object
                .into_iter()
                .map(|(name, _)| name)
                .filter(|name| name != "channel")
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl fmt::Debug for Details {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The values are personal data; a Debug that printed them would put them
        // in the first log line that formats a request with `?`.
        f.debug_struct("Details")
            .field("channel", &self.channel())
            .field("present", &self.present_fields())
            .finish()
    }
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evidence")
            .field("collected_at", &self.collected_at)
            .field(
                "consent_text_version",
                &self.consent_text_version.as_ref().map(|_| "[redacted]"),
            )
            .field("details", &self.details)
            .finish()
    }
}

/// How much a parse demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Giving consent: the proof Art. 7(1) asks for is required, `collected_at`,
    /// `consent_text_version` and the channel's identifying fields.
    OptIn,
    /// Withdrawing consent (or blocking): nothing is required, because
    /// withdrawing must be as easy as giving (Art. 7(3)) and a missing detail
    /// must never keep a STOP from taking effect. Whatever is present is still
    /// validated like an opt-in's.
    Withdrawal,
}

/// What `collected_at` is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The service's clock at the time of the request.
    pub now: DateTime<Utc>,
    /// How far ahead of `now` a collector's clock may run (the policy's clock
    /// skew).
    pub clock_skew: chrono::Duration,
}

impl Evidence {
    /// The channel the evidence was collected on.
    pub fn channel(&self) -> Channel {
        self.details.channel()
    }

    /// Validates `value`, the JSON under `evidence` (`None` when the request had
    /// none), for `channel`.
    ///
    /// A JSON `null`, for the object or for any one field, counts as absent.
    /// Strings are trimmed. Without `collected_at`, a withdrawal is taken as made
    /// at `limits.now`.
    ///
    /// # Errors
    ///
    /// Every problem found, in a stable order: `collected_at`,
    /// `consent_text_version`, the channel fields, then unknown keys. A missing
    /// or non-object `evidence` is the only problem reported alone.
    pub fn parse(
        channel: Channel,
        value: Option<&Value>,
        strictness: Strictness,
        limits: &Limits,
    ) -> Result<Evidence, Vec<FieldProblem>> {
        let none = Map::new();
        let object = match value {
            None | Some(Value::Null) => match strictness {
                // Art. 7(1): an opt-in without proof cannot be demonstrated later.
                Strictness::OptIn => return Err(vec![FieldProblem::new(ROOT, "is required")]),
                Strictness::Withdrawal => &none,
            },
            Some(Value::Object(object)) => object,
            Some(_) => return Err(vec![FieldProblem::new(ROOT, "must be a JSON object")]),
        };

        let rules = Rules::new(channel, object);
        let mut fields = Fields::default();
        let mut problems = Vec::new();
        for key in Key::ALL {
            let raw = object.get(key.name());
            if !rules.allows(key) {
                if raw.is_some() {
                    problems.push(FieldProblem::new(key.path(), rules.not_evidence()));
                }
                continue;
            }
            match raw.filter(|raw| !raw.is_null()) {
                Some(raw) => {
                    if let Err(message) = fields.read(key, raw, limits) {
                        problems.push(FieldProblem::new(key.path(), message));
                    }
                }
                None if strictness == Strictness::OptIn => {
                    if let Some(message) = rules.missing(key, object) {
                        problems.push(FieldProblem::new(key.path(), message));
                    }
                }
                None => {}
            }
        }
        problems.extend(unknown_keys(object));

        if problems.is_empty() {
            Ok(fields.into_evidence(channel, limits))
        } else {
            Err(problems)
        }
    }
}

/// The evidence of a withdrawal (revocation, block, unblock), parsed leniently:
/// GDPR Art. 7(3) makes withdrawing as easy as giving, so a STOP forwarded with a
/// malformed IP or an overlong user agent is recorded all the same. What is
/// malformed is dropped and named, never kept.
#[derive(Debug, Clone)]
pub struct Withdrawal {
    /// What was kept. Without a stated `collected_at` it holds `limits.now` until
    /// [`Withdrawal::dated`] sets the recorded time.
    pub evidence: Evidence,
    /// Whether `collected_at` was stated (and kept).
    pub stated: bool,
    /// The fields dropped, each with why (never with its value).
    pub dropped: Vec<FieldProblem>,
}

impl Withdrawal {
    /// The evidence to keep for a withdrawal recorded at `recorded_at`: without a
    /// stated time, it happened when it was recorded.
    pub fn dated(&self, recorded_at: DateTime<Utc>) -> Evidence {
        let mut evidence = self.evidence.clone();
        if !self.stated {
            evidence.collected_at = recorded_at;
        }
        evidence
    }

    /// The dropped fields' names, for the audit event (names only, never values).
    pub fn dropped_fields(&self) -> Vec<String> {
        self.dropped.iter().map(|p| p.field.clone()).collect()
    }
}

impl Evidence {
    /// Validates a withdrawal's evidence like [`Evidence::parse`] with
    /// [`Strictness::Withdrawal`], but never refuses it: each field with a problem
    /// (malformed, too long, unknown, not evidence for `channel`, a `collected_at`
    /// beyond the clock skew) is dropped and reported in [`Withdrawal::dropped`].
    pub fn parse_withdrawal(
        channel: Channel,
        value: Option<&Value>,
        limits: &Limits,
    ) -> Withdrawal {
        let mut dropped = Vec::new();
        let mut object = match value {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(object)) => object.clone(),
            Some(_) => {
                dropped.push(FieldProblem::new(ROOT, "must be a JSON object; ignored"));
                Map::new()
            }
        };
        // Each pass drops the fields named in the problems; a problem naming the
        // object itself (keys that do not look like field names) drops every key
        // that is no evidence field. Two passes always suffice; the bound is a
        // guard, and the last resort is no evidence at all.
        for _ in 0..3 {
            match Evidence::parse(
                channel,
                Some(&Value::Object(object.clone())),
                Strictness::Withdrawal,
                limits,
            ) {
                Ok(evidence) => {
                    let stated = object
                        .get(Key::CollectedAt.name())
                        .is_some_and(|raw| !raw.is_null());
                    return Withdrawal {
                        evidence,
                        stated,
                        dropped,
                    };
                }
                Err(problems) => {
                    for problem in problems {
                        match problem.field.strip_prefix(&format!("{ROOT}.")) {
                            Some(key) => {
                                object.remove(key);
                            }
                            None => object.retain(|key, _| Key::from_name(key).is_some()),
                        }
                        dropped.push(FieldProblem::new(
                            problem.field,
                            format!("{}; the field was dropped", problem.message),
                        ));
                    }
                }
            }
        }
        Withdrawal {
            evidence: Evidence::parse(channel, None, Strictness::Withdrawal, limits)
                .expect("no evidence is valid evidence for a withdrawal"),
            stated: false,
            dropped,
        }
    }
}

/// Every key an evidence object may have, in the order problems are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    CollectedAt,
    ConsentTextVersion,
    SourceUrl,
    FormId,
    Ip,
    UserAgent,
    AppId,
    AppVersion,
    StoreId,
    StaffId,
    FormReference,
    MessageReference,
    TicketReference,
    SourceSystem,
    OriginalChannel,
}

impl Key {
    const ALL: [Key; 15] = [
        Key::CollectedAt,
        Key::ConsentTextVersion,
        Key::SourceUrl,
        Key::FormId,
        Key::Ip,
        Key::UserAgent,
        Key::AppId,
        Key::AppVersion,
        Key::StoreId,
        Key::StaffId,
        Key::FormReference,
        Key::MessageReference,
        Key::TicketReference,
        Key::SourceSystem,
        Key::OriginalChannel,
    ];

    fn name(self) -> &'static str {
        match self {
            Key::CollectedAt => "collected_at",
            Key::ConsentTextVersion => "consent_text_version",
            Key::SourceUrl => "source_url",
            Key::FormId => "form_id",
            Key::Ip => "ip",
            Key::UserAgent => "user_agent",
            Key::AppId => "app_id",
            Key::AppVersion => "app_version",
            Key::StoreId => "store_id",
            Key::StaffId => "staff_id",
            Key::FormReference => "form_reference",
            Key::MessageReference => "message_reference",
            Key::TicketReference => "ticket_reference",
            Key::SourceSystem => "source_system",
            Key::OriginalChannel => "original_channel",
        }
    }

    fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|key| key.name() == name)
    }

    /// The key's path in a request, e.g. `evidence.source_url`.
    fn path(self) -> String {
        format!("{ROOT}.{}", self.name())
    }
}

/// Which keys one evidence object may and must have.
struct Rules {
    channel: Channel,
    /// For an import, its `original_channel` when that is usable (a channel
    /// other than import); `None` otherwise and for every other channel.
    original: Option<Channel>,
}

impl Rules {
    fn new(channel: Channel, object: &Map<String, Value>) -> Rules {
        // Read ahead (problems with it are reported in the main pass) because it
        // decides which other keys an import may have.
        let original = match channel {
            Channel::Import => object
                .get(Key::OriginalChannel.name())
                .and_then(|raw| original_channel(raw).ok()),
            _ => None,
        };
        Rules { channel, original }
    }

    fn allows(&self, key: Key) -> bool {
        if matches!(key, Key::CollectedAt | Key::ConsentTextVersion)
            || self.channel.keys().contains(&key)
        {
            return true;
        }
        if self.channel != Channel::Import {
            return false;
        }
        match self.original {
            Some(original) => original.keys().contains(&key),
            // Without a usable original_channel (reported on its own, or absent
            // from a withdrawal), check the format of any original channel's
            // field rather than call each one foreign: one problem, not ten.
            None => Channel::ALL
                .into_iter()
                .any(|channel| channel != Channel::Import && channel.keys().contains(&key)),
        }
    }

    /// The problem with an opt-in that lacks `key`, if `key` is required.
    fn missing(&self, key: Key, object: &Map<String, Value>) -> Option<&'static str> {
        let web = self.channel == Channel::Web || self.original == Some(Channel::Web);
        if key == Key::SourceUrl && web {
            // Either identifies the form that showed the consent text.
            let has_form_id = object
                .get(Key::FormId.name())
                .is_some_and(|raw| !raw.is_null());
            return (!has_form_id).then_some("source_url or form_id is required");
        }
        let required = matches!(key, Key::CollectedAt | Key::ConsentTextVersion)
            || self.channel.required_keys().contains(&key)
            || self
                .original
                .is_some_and(|original| original.required_keys().contains(&key));
        required.then_some("is required")
    }

    /// The message for a known key that this channel's evidence does not have.
    fn not_evidence(&self) -> String {
        match self.original {
            Some(original) => {
                format!("is not evidence for channel import with original_channel {original}")
            }
            None => format!("is not evidence for channel {}", self.channel),
        }
    }
}

/// Problems for keys that are no evidence field of any channel.
fn unknown_keys(object: &Map<String, Value>) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    let mut unnamed = false;
    for name in object.keys() {
        if Key::from_name(name).is_some() {
            continue;
        }
        if name == "channel" {
            problems.push(FieldProblem::new(
                format!("{ROOT}.channel"),
                "is not an evidence field: the channel is given beside evidence, not inside it",
            ));
        } else if is_field_like(name) {
            problems.push(FieldProblem::new(
                format!("{ROOT}.{name}"),
                "is not an evidence field",
            ));
        } else {
            unnamed = true;
        }
    }
    if unnamed {
        problems.push(FieldProblem::new(
            ROOT,
            "has a key that is not an evidence field (not shown: it does not look like a field name)",
        ));
    }
    problems
}

/// Whether a key may be named in a problem's path. Keys are client input too: a
/// phone number or an e-mail address used as a key must not be echoed back.
fn is_field_like(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= MAX_NAMED_KEY_CHARS
}

/// The validated value of every key present, before they are sorted into the
/// channel's [`Details`].
#[derive(Default)]
struct Fields {
    collected_at: Option<DateTime<Utc>>,
    consent_text_version: Option<String>,
    source_url: Option<String>,
    form_id: Option<String>,
    ip: Option<IpAddr>,
    user_agent: Option<String>,
    app_id: Option<String>,
    app_version: Option<String>,
    store_id: Option<String>,
    staff_id: Option<String>,
    form_reference: Option<String>,
    message_reference: Option<String>,
    ticket_reference: Option<String>,
    source_system: Option<String>,
    original_channel: Option<Channel>,
}

impl Fields {
    /// Validates one present, non-null value. The error is the problem's
    /// message, which never contains the value.
    fn read(&mut self, key: Key, raw: &Value, limits: &Limits) -> Result<(), String> {
        match key {
            Key::CollectedAt => self.collected_at = Some(collected_at(raw, limits)?),
            Key::ConsentTextVersion => {
                self.consent_text_version = Some(text(raw, MAX_CONSENT_TEXT_VERSION_CHARS)?);
            }
            Key::SourceUrl => self.source_url = Some(source_url(raw)?),
            Key::FormId => self.form_id = Some(text(raw, MAX_TEXT_CHARS)?),
            Key::Ip => self.ip = Some(ip(raw)?),
            Key::UserAgent => self.user_agent = Some(text(raw, MAX_USER_AGENT_CHARS)?),
            Key::AppId => self.app_id = Some(text(raw, MAX_TEXT_CHARS)?),
            Key::AppVersion => self.app_version = Some(text(raw, MAX_TEXT_CHARS)?),
            Key::StoreId => self.store_id = Some(text(raw, MAX_TEXT_CHARS)?),
            Key::StaffId => self.staff_id = Some(text(raw, MAX_TEXT_CHARS)?),
            Key::FormReference => self.form_reference = Some(text(raw, MAX_TEXT_CHARS)?),
            Key::MessageReference => self.message_reference = Some(text(raw, MAX_TEXT_CHARS)?),
            Key::TicketReference => self.ticket_reference = Some(text(raw, MAX_TEXT_CHARS)?),
            Key::SourceSystem => self.source_system = Some(text(raw, MAX_TEXT_CHARS)?),
            Key::OriginalChannel => self.original_channel = Some(original_channel(raw)?),
        }
        Ok(())
    }

    fn into_evidence(self, channel: Channel, limits: &Limits) -> Evidence {
        let details = match channel {
            Channel::Web => Details::Web {
                source_url: self.source_url,
                form_id: self.form_id,
                ip: self.ip,
                user_agent: self.user_agent,
            },
            Channel::App => Details::App {
                app_id: self.app_id,
                app_version: self.app_version,
            },
            Channel::InStore => Details::InStore {
                store_id: self.store_id,
                staff_id: self.staff_id,
                form_reference: self.form_reference,
            },
            Channel::ClickToChat => Details::ClickToChat {
                message_reference: self.message_reference,
            },
            Channel::Keyword => Details::Keyword {
                message_reference: self.message_reference,
            },
            Channel::Import => Details::Import {
                source_system: self.source_system,
                original_channel: self.original_channel,
                source_url: self.source_url,
                form_id: self.form_id,
                ip: self.ip,
                user_agent: self.user_agent,
                app_id: self.app_id,
                app_version: self.app_version,
                store_id: self.store_id,
                staff_id: self.staff_id,
                form_reference: self.form_reference,
                message_reference: self.message_reference,
                ticket_reference: self.ticket_reference,
            },
            Channel::Support => Details::Support {
                staff_id: self.staff_id,
                ticket_reference: self.ticket_reference,
            },
            Channel::Api => Details::Api {
                source_system: self.source_system,
                message_reference: self.message_reference,
            },
        };
        Evidence {
            // Only a withdrawal gets here without one: it takes effect now.
            collected_at: self
                .collected_at
                .unwrap_or_else(|| time::truncate(limits.now)),
            consent_text_version: self.consent_text_version,
            details,
        }
    }
}

/// A trimmed, non-empty string of at most `max_chars` characters without
/// control characters (they have no place in an identifier and can forge lines
/// in whatever later prints the evidence).
fn text(raw: &Value, max_chars: usize) -> Result<String, String> {
    let Value::String(value) = raw else {
        return Err("must be a string".to_owned());
    };
    let value = value.trim();
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.chars().nth(max_chars).is_some() {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(value.to_owned())
}

/// An RFC 3339 instant with an offset, stored in UTC and truncated to
/// microseconds; checked against the clock after truncation, because the
/// truncated instant is what is stored, hashed and later shown as the proof.
fn collected_at(raw: &Value, limits: &Limits) -> Result<DateTime<Utc>, String> {
    const FORMAT: &str = "must be an RFC 3339 timestamp with an offset, e.g. 2025-01-31T09:30:00Z";
    let value = text(raw, MAX_TEXT_CHARS).map_err(|message| match raw {
        Value::String(_) => FORMAT.to_owned(),
        _ => message,
    })?;
    let at = DateTime::parse_from_rfc3339(&value).map_err(|_| FORMAT.to_owned())?;
    let at = time::truncate(at.with_timezone(&Utc));
    // A collector's clock may run a little ahead; beyond that, consent dated in
    // the future would prove nothing about the present.
    let latest = limits
        .now
        .checked_add_signed(limits.clock_skew)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if at > latest {
        return Err("is in the future beyond the allowed clock skew".to_owned());
    }
    if at.timestamp() < EARLIEST_COLLECTED_AT {
        return Err("is before 2000-01-01, which cannot be right".to_owned());
    }
    Ok(at)
}

/// An absolute http or https URL with a host and without credentials. A small
/// check by hand, per RFC 3986's authority syntax: enough to refuse relative
/// paths, other schemes and secrets, without a URL library for one field.
fn source_url(raw: &Value) -> Result<String, String> {
    const NOT_ABSOLUTE: &str = "must be an absolute http or https URL";
    let url = text(raw, MAX_TEXT_CHARS)?;
    if url.chars().any(char::is_whitespace) {
        return Err("must not contain spaces".to_owned());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(NOT_ABSOLUTE.to_owned());
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(NOT_ABSOLUTE.to_owned());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // `user:password@host` would store a secret as evidence.
    if authority.contains('@') {
        return Err("must not contain credentials".to_owned());
    }
    if !is_host_and_port(authority) {
        return Err(NOT_ABSOLUTE.to_owned());
    }
    Ok(url)
}

/// `host[:port]`, where host is a bracketed IPv6 literal or a non-empty
/// registered name (RFC 3986 `reg-name` characters, plus non-ASCII for IDNs).
fn is_host_and_port(authority: &str) -> bool {
    let (host_ok, port) = if let Some(literal) = authority.strip_prefix('[') {
        match literal.split_once(']') {
            Some((address, after)) => (
                !address.is_empty()
                    && address
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'),
                after.strip_prefix(':').or(after.is_empty().then_some("")),
            ),
            None => (false, None),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, Some("")),
        };
        let host_ok = !host.is_empty()
            && host.chars().any(char::is_alphanumeric)
            && host
                .chars()
                .all(|c| c.is_alphanumeric() || "-._~%!$&'()*+,;=".contains(c));
        (host_ok, port)
    };
    host_ok && port.is_some_and(|port| port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
}

fn ip(raw: &Value) -> Result<IpAddr, String> {
    let value = text(raw, MAX_TEXT_CHARS)?;
    value
        .parse()
        .map_err(|_| "must be an IPv4 or IPv6 address".to_owned())
}

fn original_channel(raw: &Value) -> Result<Channel, String> {
    let name = text(raw, MAX_TEXT_CHARS)?;
    match name.parse() {
        // An import records where the consent was first collected; "import of an
        // import" would leave the question "where?" unanswered.
        Ok(Channel::Import) => Err("must be a channel other than import".to_owned()),
        Ok(channel) => Ok(channel),
        Err(UnknownChannel) => Err(
            "must be one of web, app, in_store, click_to_chat, keyword, support, api".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, SecondsFormat};
    use serde_json::json;

    const PHONE: &str = "+31612345678";
    const IP: &str = "192.0.2.7";

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test timestamp")
            .with_timezone(&Utc)
    }

    fn limits() -> Limits {
        Limits {
            now: at("2025-06-01T12:00:00Z"),
            clock_skew: Duration::minutes(5),
        }
    }

    fn parse(
        channel: Channel,
        value: &Value,
        strictness: Strictness,
    ) -> Result<Evidence, Vec<FieldProblem>> {
        Evidence::parse(channel, Some(value), strictness, &limits())
    }

    fn accepted(channel: Channel, value: &Value, strictness: Strictness, why: &str) -> Evidence {
        match parse(channel, value, strictness) {
            Ok(evidence) => evidence,
            Err(problems) => panic!("{why}: {channel} evidence was refused: {problems:?}"),
        }
    }

    fn refused(
        channel: Channel,
        value: &Value,
        strictness: Strictness,
        why: &str,
    ) -> Vec<(String, String)> {
        match parse(channel, value, strictness) {
            Ok(evidence) => panic!("{why}: {channel} evidence was accepted: {evidence:?}"),
            Err(problems) => problems
                .into_iter()
                .map(|problem| (problem.field, problem.message))
                .collect(),
        }
    }

    fn fields(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(field, _)| field.as_str()).collect()
    }

    /// The common opt-in fields plus `channel_fields` (a JSON object).
    fn evidence_with(channel_fields: &str) -> Value {
        let mut value = json!({
            "collected_at": "2025-06-01T11:59:00Z",
            "consent_text_version": "marketing-v3",
        });
        let extra: Map<String, Value> = serde_json::from_str(channel_fields).expect("test JSON");
        value.as_object_mut().expect("object").extend(extra);
        value
    }

    fn with(mut value: Value, key: &str, field: Value) -> Value {
        value
            .as_object_mut()
            .expect("object")
            .insert(key.to_owned(), field);
        value
    }

    fn without(mut value: Value, key: &str) -> Value {
        value.as_object_mut().expect("object").remove(key);
        value
    }

    struct Minimal {
        channel: Channel,
        /// The channel's fields of a minimal valid opt-in, as a JSON object.
        fields: &'static str,
        /// (key removed, field reported) for each required channel key.
        required: &'static [(&'static str, &'static str)],
        why: &'static str,
    }

    #[rustfmt::skip]
    const MINIMAL: &[Minimal] = &[
        Minimal { channel: Channel::Web, fields: r#"{"form_id": "footer-newsletter"}"#,
            required: &[("form_id", "evidence.source_url")], why: "web names its form by id" },
        Minimal { channel: Channel::Web, fields: r#"{"source_url": "https://shop.example/newsletter"}"#,
            required: &[("source_url", "evidence.source_url")], why: "web names its form by URL" },
        Minimal { channel: Channel::App, fields: r#"{"app_id": "com.example.shop"}"#,
            required: &[("app_id", "evidence.app_id")], why: "app" },
        Minimal { channel: Channel::InStore, fields: r#"{"store_id": "AMS-01"}"#,
            required: &[("store_id", "evidence.store_id")], why: "in_store" },
        Minimal { channel: Channel::ClickToChat, fields: r#"{"message_reference": "wamid.HBgLMzE2"}"#,
            required: &[("message_reference", "evidence.message_reference")], why: "click_to_chat" },
        Minimal { channel: Channel::Keyword, fields: "{}",
            required: &[], why: "keyword: the service records these itself" },
        Minimal { channel: Channel::Import,
            fields: r#"{"source_system": "legacy-crm", "original_channel": "web", "form_id": "f-1"}"#,
            required: &[("source_system", "evidence.source_system"),
                        ("original_channel", "evidence.original_channel"),
                        ("form_id", "evidence.source_url")],
            why: "import of web consent follows web's rules" },
        Minimal { channel: Channel::Import,
            fields: r#"{"source_system": "legacy-crm", "original_channel": "in_store", "store_id": "AMS-01"}"#,
            required: &[("source_system", "evidence.source_system"),
                        ("original_channel", "evidence.original_channel"),
                        ("store_id", "evidence.store_id")],
            why: "import of in_store consent follows in_store's rules" },
        Minimal { channel: Channel::Import,
            fields: r#"{"source_system": "legacy-crm", "original_channel": "keyword"}"#,
            required: &[("source_system", "evidence.source_system"),
                        ("original_channel", "evidence.original_channel")],
            why: "import of keyword consent needs nothing more" },
        Minimal { channel: Channel::Import,
            fields: r#"{"source_system": "partner", "original_channel": "api"}"#,
            required: &[("source_system", "evidence.source_system"),
                        ("original_channel", "evidence.original_channel")],
            why: "import of api consent shares source_system" },
        Minimal { channel: Channel::Support, fields: r#"{"staff_id": "agent-17"}"#,
            required: &[("staff_id", "evidence.staff_id")], why: "support" },
        Minimal { channel: Channel::Api, fields: r#"{"source_system": "partner-portal"}"#,
            required: &[("source_system", "evidence.source_system")], why: "api" },
    ];

    #[test]
    fn the_minimal_table_covers_every_channel() {
        for channel in Channel::ALL {
            assert!(
                MINIMAL.iter().any(|case| case.channel == channel),
                "no minimal case for {channel}"
            );
        }
    }

    #[test]
    fn minimal_opt_in_evidence_parses_for_every_channel_and_round_trips_through_json() {
        for case in MINIMAL {
            let value = evidence_with(case.fields);
            let evidence = accepted(case.channel, &value, Strictness::OptIn, case.why);
            assert_eq!(evidence.channel(), case.channel, "{}", case.why);
            assert_eq!(
                evidence.collected_at,
                at("2025-06-01T11:59:00Z"),
                "{}",
                case.why
            );
            assert_eq!(
                evidence.consent_text_version.as_deref(),
                Some("marketing-v3"),
                "{}",
                case.why
            );

            let stored = serde_json::to_string(&evidence).expect("serialize");
            let read_back: Evidence = serde_json::from_str(&stored).expect("deserialize");
            assert_eq!(read_back, evidence, "{}: {stored}", case.why);
            // The stored form is the request's form plus the channel: a
            // regulator's export shows what was submitted, normalised.
            let mut expected = value.clone();
            expected["channel"] = json!(case.channel.as_str());
            assert_eq!(
                serde_json::from_str::<Value>(&stored).expect("json"),
                expected,
                "{}",
                case.why
            );
        }
    }

    #[test]
    fn each_required_field_missing_is_reported_alone_under_its_own_name() {
        for case in MINIMAL {
            let value = evidence_with(case.fields);
            let common = [
                ("collected_at", "evidence.collected_at"),
                ("consent_text_version", "evidence.consent_text_version"),
            ];
            for &(key, field) in common.iter().chain(case.required) {
                let problems = refused(
                    case.channel,
                    &without(value.clone(), key),
                    Strictness::OptIn,
                    case.why,
                );
                assert_eq!(fields(&problems), [field], "{}: without {key}", case.why);
                let expected = if field == "evidence.source_url" {
                    "source_url or form_id is required"
                } else {
                    "is required"
                };
                assert_eq!(problems[0].1, expected, "{}: without {key}", case.why);

                let problems = refused(
                    case.channel,
                    &with(value.clone(), key, Value::Null),
                    Strictness::OptIn,
                    case.why,
                );
                assert_eq!(
                    fields(&problems),
                    [field],
                    "{}: {key} null counts as absent",
                    case.why
                );
            }
        }
    }

    #[test]
    fn complete_evidence_keeps_every_field_and_round_trips_through_json() {
        #[rustfmt::skip]
        let cases = [
            (Channel::Web, json!({"source_url": "https://shop.example/nl/newsletter?utm_source=footer",
                "form_id": "footer-newsletter", "ip": "2001:db8::7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"})),
            (Channel::App, json!({"app_id": "com.example.shop", "app_version": "4.2.1 (build 812)"})),
            (Channel::InStore, json!({"store_id": "AMS-01", "staff_id": "E-204", "form_reference": "scan/2025/06/0041"})),
            (Channel::ClickToChat, json!({"message_reference": "wamid.HBgLMzE2"})),
            (Channel::Keyword, json!({"message_reference": "SM7a9b"})),
            (Channel::Import, json!({"source_system": "legacy-crm", "original_channel": "support",
                "staff_id": "agent-17", "ticket_reference": "T-8812"})),
            (Channel::Import, json!({"source_system": "legacy-crm", "original_channel": "web",
                "source_url": "http://old.shop.example/", "form_id": "f-1", "ip": IP, "user_agent": "curl/8"})),
            (Channel::Support, json!({"staff_id": "agent-17", "ticket_reference": "T-8812"})),
            (Channel::Api, json!({"source_system": "partner-portal"})),
        ];
        for (channel, channel_fields) in cases {
            let value = evidence_with(&channel_fields.to_string());
            let evidence = accepted(channel, &value, Strictness::OptIn, "complete");
            let stored = serde_json::to_value(&evidence).expect("serialize");
            let mut expected = value.clone();
            expected["channel"] = json!(channel.as_str());
            assert_eq!(stored, expected, "{channel}: every field is kept");
            assert_eq!(
                serde_json::from_value::<Evidence>(stored).expect("deserialize"),
                evidence,
                "{channel}"
            );
        }
    }

    #[test]
    fn several_problems_are_all_reported_at_once() {
        let value = json!({
            "collected_at": "2025-06-01T12:30:00Z",
            "form_id": "footer-newsletter",
            "ip": "not-an-ip",
            "colour": "blue",
        });
        let problems = refused(Channel::Web, &value, Strictness::OptIn, "four problems");
        assert_eq!(
            problems,
            [
                (
                    "evidence.collected_at".to_owned(),
                    "is in the future beyond the allowed clock skew".to_owned()
                ),
                (
                    "evidence.consent_text_version".to_owned(),
                    "is required".to_owned()
                ),
                (
                    "evidence.ip".to_owned(),
                    "must be an IPv4 or IPv6 address".to_owned()
                ),
                (
                    "evidence.colour".to_owned(),
                    "is not an evidence field".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn every_problem_of_a_thoroughly_wrong_import_is_reported() {
        let value = json!({
            "collected_at": 1_748_779_140,
            "consent_text_version": "",
            "original_channel": "web",
            "source_url": "ftp://files.example/form",
            "ip": "192.0.2.300",
            "user_agent": "a".repeat(1001),
            "store_id": "AMS-01",
            "channel": "import",
        });
        let problems = refused(
            Channel::Import,
            &value,
            Strictness::OptIn,
            "everything wrong",
        );
        assert_eq!(
            fields(&problems),
            [
                "evidence.collected_at",
                "evidence.consent_text_version",
                "evidence.source_url",
                "evidence.ip",
                "evidence.user_agent",
                "evidence.store_id",
                "evidence.source_system",
                "evidence.channel",
            ]
        );
    }

    #[test]
    fn collected_at_exactly_at_the_clock_skew_is_accepted_and_one_microsecond_later_is_not() {
        let limit = limits().now + limits().clock_skew;
        let micros = |at: DateTime<Utc>| json!(at.to_rfc3339_opts(SecondsFormat::Micros, true));
        let base = evidence_with(r#"{"form_id": "f"}"#);

        let evidence = accepted(
            Channel::Web,
            &with(base.clone(), "collected_at", micros(limit)),
            Strictness::OptIn,
            "at the limit",
        );
        assert_eq!(evidence.collected_at, limit);

        let late = with(
            base.clone(),
            "collected_at",
            micros(limit + Duration::microseconds(1)),
        );
        assert_eq!(
            refused(
                Channel::Web,
                &late,
                Strictness::OptIn,
                "one microsecond late"
            ),
            [(
                "evidence.collected_at".to_owned(),
                "is in the future beyond the allowed clock skew".to_owned()
            )]
        );
        let late = with(
            base,
            "collected_at",
            micros(limit + Duration::microseconds(1)),
        );
        assert_eq!(
            fields(&refused(
                Channel::Web,
                &late,
                Strictness::Withdrawal,
                "a withdrawal too"
            )),
            ["evidence.collected_at"]
        );
    }

    #[test]
    fn collected_at_is_compared_after_truncation_to_microseconds() {
        // The stored, hashed instant is the truncated one; 999 ns past the limit
        // truncates to the limit itself.
        let limit = limits().now + limits().clock_skew;
        let nanos =
            (limit + Duration::nanoseconds(999)).to_rfc3339_opts(SecondsFormat::Nanos, true);
        let value = with(
            evidence_with(r#"{"form_id": "f"}"#),
            "collected_at",
            json!(nanos),
        );
        assert_eq!(
            accepted(Channel::Web, &value, Strictness::OptIn, "sub-microsecond").collected_at,
            limit
        );
    }

    #[test]
    fn collected_at_accepts_any_offset_and_is_stored_in_utc_truncated_to_microseconds() {
        #[rustfmt::skip]
        let cases = [
            ("2025-06-01T13:59:00+02:00", "2025-06-01T11:59:00Z", "CEST offset"),
            ("2025-06-01T06:59:00-05:00", "2025-06-01T11:59:00Z", "negative offset"),
            ("2025-06-01T11:59:00.123456789Z", "2025-06-01T11:59:00.123456Z", "nanoseconds truncated"),
            ("2025-06-01t11:59:00z", "2025-06-01T11:59:00Z", "lower-case T and Z (RFC 3339 allows them)"),
            ("  2025-06-01T11:59:00Z ", "2025-06-01T11:59:00Z", "surrounding spaces trimmed"),
            ("2000-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "the earliest accepted instant"),
        ];
        for (input, expected, why) in cases {
            let value = with(
                evidence_with(r#"{"app_id": "a"}"#),
                "collected_at",
                json!(input),
            );
            let evidence = accepted(Channel::App, &value, Strictness::OptIn, why);
            assert_eq!(evidence.collected_at, at(expected), "{why}");
            assert_eq!(
                evidence.collected_at.timestamp_subsec_nanos() % 1_000,
                0,
                "{why}"
            );
        }
    }

    #[test]
    fn collected_at_without_an_offset_malformed_or_before_2000_is_refused() {
        const FORMAT: &str =
            "must be an RFC 3339 timestamp with an offset, e.g. 2025-01-31T09:30:00Z";
        #[rustfmt::skip]
        let cases = [
            (json!("2025-06-01T11:59:00"), FORMAT, "no offset"),
            (json!("2025-06-01"), FORMAT, "a date only"),
            (json!("01/06/2025 11:59"), FORMAT, "a local format"),
            (json!("2025-02-30T11:59:00Z"), FORMAT, "an impossible date"),
            (json!(""), FORMAT, "empty"),
            (json!("1999-12-31T23:59:59.999999Z"), "is before 2000-01-01, which cannot be right", "before 2000"),
            (json!("1970-01-01T00:00:00Z"), "is before 2000-01-01, which cannot be right", "the epoch: a zero timestamp"),
            (json!(1_748_779_140), "must be a string", "Unix seconds"),
        ];
        for (input, expected, why) in cases {
            let value = with(evidence_with(r#"{"app_id": "a"}"#), "collected_at", input);
            assert_eq!(
                refused(Channel::App, &value, Strictness::OptIn, why),
                [("evidence.collected_at".to_owned(), expected.to_owned())],
                "{why}"
            );
        }
    }

    #[test]
    fn evidence_that_is_not_an_object_is_refused_alone() {
        for value in [
            json!([]),
            json!(["collected_at"]),
            json!("web"),
            json!(7),
            json!(true),
        ] {
            for strictness in [Strictness::OptIn, Strictness::Withdrawal] {
                assert_eq!(
                    refused(Channel::Web, &value, strictness, "not an object"),
                    [("evidence".to_owned(), "must be a JSON object".to_owned())],
                    "{value} as {strictness:?}"
                );
            }
        }
    }

    #[test]
    fn an_opt_in_without_evidence_is_refused() {
        for value in [None, Some(&Value::Null)] {
            let problems = Evidence::parse(Channel::Web, value, Strictness::OptIn, &limits())
                .expect_err("no evidence");
            assert_eq!(
                problems,
                [FieldProblem::new("evidence", "is required")],
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_withdrawal_without_evidence_parses_with_collected_at_now() {
        let limits = Limits {
            now: at("2025-06-01T12:00:00.123456789Z"),
            ..limits()
        };
        for channel in Channel::ALL {
            for value in [None, Some(&Value::Null), Some(&json!({}))] {
                let evidence = Evidence::parse(channel, value, Strictness::Withdrawal, &limits)
                    .unwrap_or_else(|problems| panic!("{channel} {value:?}: {problems:?}"));
                assert_eq!(
                    evidence.collected_at,
                    at("2025-06-01T12:00:00.123456Z"),
                    "{channel}: now, truncated"
                );
                assert_eq!(evidence.consent_text_version, None, "{channel}");
                assert_eq!(evidence.channel(), channel);
                assert_eq!(
                    evidence.details.present_fields(),
                    Vec::<String>::new(),
                    "{channel}"
                );
            }
        }
    }

    #[test]
    fn a_withdrawal_validates_whatever_is_present_like_an_opt_in() {
        #[rustfmt::skip]
        let cases = [
            (Channel::Web, json!({"ip": "example.com"}), "evidence.ip", "a bad ip"),
            (Channel::Web, json!({"source_url": "/newsletter"}), "evidence.source_url", "a relative URL"),
            (Channel::App, json!({"store_id": "AMS-01"}), "evidence.store_id", "another channel's field"),
            (Channel::Support, json!({"consent_text_version": 3}), "evidence.consent_text_version", "a wrong type"),
            (Channel::Import, json!({"original_channel": "import"}), "evidence.original_channel", "import of import"),
            (Channel::Keyword, json!({"stop_word": "STOP"}), "evidence.stop_word", "an unknown key"),
        ];
        for (channel, value, field, why) in cases {
            assert_eq!(
                fields(&refused(channel, &value, Strictness::Withdrawal, why)),
                [field],
                "{why}"
            );
        }
        let evidence = accepted(
            Channel::Import,
            &json!({"form_id": "f-1", "consent_text_version": "v1"}),
            Strictness::Withdrawal,
            "an import withdrawal with no original_channel",
        );
        assert!(matches!(
            evidence.details,
            Details::Import {
                form_id: Some(_),
                original_channel: None,
                ..
            }
        ));
    }

    #[test]
    fn wrong_json_types_are_reported_as_must_be_a_string() {
        #[rustfmt::skip]
        let cases = [
            (Channel::Web, "source_url", json!(42)),
            (Channel::Web, "form_id", json!(true)),
            (Channel::Web, "ip", json!(3_221_225_991_u32)),
            (Channel::Web, "user_agent", json!(["Mozilla/5.0"])),
            (Channel::Web, "consent_text_version", json!({"version": 3})),
            (Channel::App, "app_id", json!(1.5)),
            (Channel::App, "app_version", json!(4)),
            (Channel::InStore, "staff_id", json!(204)),
            (Channel::ClickToChat, "message_reference", json!([])),
            (Channel::Import, "original_channel", json!(5)),
            (Channel::Import, "source_system", json!(false)),
            (Channel::Support, "ticket_reference", json!({})),
            (Channel::Api, "source_system", json!(0)),
        ];
        let minimal = |channel: Channel| {
            let case = MINIMAL
                .iter()
                .find(|case| case.channel == channel)
                .expect("case");
            evidence_with(case.fields)
        };
        for (channel, key, raw) in cases {
            let value = with(minimal(channel), key, raw);
            assert_eq!(
                refused(channel, &value, Strictness::OptIn, key),
                [(format!("evidence.{key}"), "must be a string".to_owned())],
                "{channel}.{key}"
            );
        }
    }

    #[test]
    fn strings_are_trimmed_non_empty_bounded_in_characters_and_free_of_control_characters() {
        let long = |n: usize| json!("x".repeat(n));
        #[rustfmt::skip]
        let cases: [(&str, Value, Option<&str>, &str); 14] = [
            ("form_id", json!("  footer  "), None, "surrounding spaces are trimmed"),
            ("form_id", long(500), None, "500 characters"),
            ("form_id", json!("é".repeat(500)), None, "500 characters of two bytes each"),
            ("form_id", long(501), Some("must be at most 500 characters"), "501 characters"),
            ("form_id", json!(""), Some("must not be empty"), "empty"),
            ("form_id", json!(" \t\n "), Some("must not be empty"), "only whitespace"),
            ("form_id", json!("foot\u{0}er"), Some("must not contain control characters"), "NUL"),
            ("form_id", json!("foot\ner"), Some("must not contain control characters"), "a newline inside"),
            ("form_id", json!("footer\u{1b}[2J"), Some("must not contain control characters"), "an escape sequence"),
            ("user_agent", long(1000), None, "user_agent may be 1000 characters"),
            ("user_agent", long(1001), Some("must be at most 1000 characters"), "user_agent 1001 characters"),
            ("consent_text_version", long(100), None, "consent_text_version 100 characters"),
            ("consent_text_version", long(101), Some("must be at most 100 characters"), "consent_text_version 101"),
            ("consent_text_version", json!("   "), Some("must not be empty"), "consent_text_version blank"),
        ];
        for (key, raw, expected, why) in cases {
            let value = with(evidence_with(r#"{"form_id": "f"}"#), key, raw);
            match expected {
                None => {
                    let evidence = accepted(Channel::Web, &value, Strictness::OptIn, why);
                    if key == "form_id" {
                        let Details::Web {
                            form_id: Some(form_id),
                            ..
                        } = &evidence.details
                        else {
                            panic!("{why}: no form_id");
                        };
                        assert_eq!(form_id, form_id.trim(), "{why}");
                    }
                }
                Some(message) => assert_eq!(
                    refused(Channel::Web, &value, Strictness::OptIn, why),
                    [(format!("evidence.{key}"), message.to_owned())],
                    "{why}"
                ),
            }
        }
        let value = with(
            evidence_with(r#"{"form_id": "f"}"#),
            "consent_text_version",
            json!(" v3 "),
        );
        assert_eq!(
            accepted(Channel::Web, &value, Strictness::OptIn, "trimmed")
                .consent_text_version
                .as_deref(),
            Some("v3")
        );
    }

    #[test]
    fn source_url_must_be_an_absolute_http_url_without_credentials() {
        const NOT_ABSOLUTE: &str = "must be an absolute http or https URL";
        #[rustfmt::skip]
        let cases: [(&str, Option<&str>, &str); 25] = [
            ("https://shop.example/nl/newsletter?utm_source=footer", None, "a typical form page"),
            ("http://shop.example", None, "http, no path"),
            ("HTTPS://SHOP.EXAMPLE/", None, "the scheme is case-insensitive"),
            ("https://shop.example:8443/signup", None, "a port"),
            ("https://[2001:db8::1]:8443/signup", None, "an IPv6 literal"),
            ("https://192.0.2.7/signup", None, "an IPv4 host"),
            ("https://bücher.example/anmelden", None, "an internationalised host"),
            ("https://shop.example#signup", None, "a fragment right after the host"),
            ("https://shop.example/@brand/signup", None, "an @ in the path is not a credential"),
            ("shop.example/newsletter", Some(NOT_ABSOLUTE), "no scheme"),
            ("/newsletter", Some(NOT_ABSOLUTE), "relative"),
            ("//shop.example/newsletter", Some(NOT_ABSOLUTE), "scheme-relative"),
            ("ftp://shop.example/form", Some(NOT_ABSOLUTE), "another scheme"),
            ("javascript:alert(1)", Some(NOT_ABSOLUTE), "javascript"),
            ("mailto:shop@shop.example", Some(NOT_ABSOLUTE), "mailto"),
            ("https://", Some(NOT_ABSOLUTE), "no host"),
            ("https:///newsletter", Some(NOT_ABSOLUTE), "an empty host"),
            ("https://:443/", Some(NOT_ABSOLUTE), "a port but no host"),
            ("https://shop.example:https/", Some(NOT_ABSOLUTE), "a port that is not a number"),
            ("https://[2001:db8::1/", Some(NOT_ABSOLUTE), "an unclosed IPv6 literal"),
            ("https://shop<script>.example/", Some(NOT_ABSOLUTE), "characters no host has"),
            ("https://user:secret@shop.example/", Some("must not contain credentials"), "user and password"),
            ("https://user@shop.example/", Some("must not contain credentials"), "a user"),
            ("https://shop.example/news letter", Some("must not contain spaces"), "a space"),
            ("https://shop.example/\u{a0}x", Some("must not contain spaces"), "a non-breaking space"),
        ];
        for (url, expected, why) in cases {
            let value = evidence_with(&json!({"source_url": url}).to_string());
            match expected {
                None => {
                    let evidence = accepted(Channel::Web, &value, Strictness::OptIn, why);
                    assert!(
                        matches!(&evidence.details, Details::Web { source_url: Some(kept), .. } if kept == url),
                        "{why}"
                    );
                }
                Some(message) => assert_eq!(
                    refused(Channel::Web, &value, Strictness::OptIn, why),
                    [("evidence.source_url".to_owned(), message.to_owned())],
                    "{why}: {url}"
                ),
            }
        }
    }

    #[test]
    fn ip_accepts_ipv4_and_ipv6_addresses_and_nothing_else() {
        #[rustfmt::skip]
        let cases = [
            ("192.0.2.7", true, "IPv4"),
            ("2001:db8::7", true, "IPv6"),
            ("::ffff:192.0.2.7", true, "IPv4-mapped IPv6"),
            (" 192.0.2.7 ", true, "trimmed"),
            ("192.0.2", false, "three octets"),
            ("192.0.2.256", false, "an octet out of range"),
            ("192.0.2.7:443", false, "with a port"),
            ("[2001:db8::7]", false, "IPv6 in brackets"),
            ("2001:db8::g", false, "not hex"),
            ("shop.example", false, "a host name"),
        ];
        for (input, ok, why) in cases {
            let value = evidence_with(&json!({"form_id": "f", "ip": input}).to_string());
            if ok {
                let evidence = accepted(Channel::Web, &value, Strictness::OptIn, why);
                let expected: IpAddr = input.trim().parse().expect("test address");
                assert!(
                    matches!(evidence.details, Details::Web { ip: Some(ip), .. } if ip == expected),
                    "{why}"
                );
            } else {
                assert_eq!(
                    refused(Channel::Web, &value, Strictness::OptIn, why),
                    [(
                        "evidence.ip".to_owned(),
                        "must be an IPv4 or IPv6 address".to_owned()
                    )],
                    "{why}"
                );
            }
        }
    }

    #[test]
    fn fields_of_another_channel_and_unknown_keys_are_refused_by_name() {
        #[rustfmt::skip]
        let cases = [
            (Channel::Web, r#"{"form_id": "f", "store_id": "AMS-01"}"#, "evidence.store_id", "is not evidence for channel web"),
            (Channel::App, r#"{"app_id": "a", "source_url": "https://shop.example/"}"#, "evidence.source_url", "is not evidence for channel app"),
            (Channel::Api, r#"{"source_system": "s", "original_channel": "web"}"#, "evidence.original_channel", "is not evidence for channel api"),
            (Channel::Keyword, r#"{"ip": null}"#, "evidence.ip", "is not evidence for channel keyword"),
            (Channel::Import, r#"{"source_system": "s", "original_channel": "web", "form_id": "f", "store_id": "AMS-01"}"#,
                "evidence.store_id", "is not evidence for channel import with original_channel web"),
            (Channel::Web, r#"{"form_id": "f", "sourceUrl": "https://shop.example/"}"#, "evidence.sourceUrl", "is not an evidence field"),
            (Channel::Web, r#"{"form_id": "f", "channel": "web"}"#, "evidence.channel",
                "is not an evidence field: the channel is given beside evidence, not inside it"),
        ];
        for (channel, channel_fields, field, message) in cases {
            assert_eq!(
                refused(
                    channel,
                    &evidence_with(channel_fields),
                    Strictness::OptIn,
                    field
                ),
                [(field.to_owned(), message.to_owned())],
                "{channel}: {channel_fields}"
            );
        }
    }

    #[test]
    fn keys_that_do_not_look_like_field_names_are_reported_without_being_named() {
        let value = evidence_with(
            &json!({"form_id": "f", PHONE: "yes", "jan@example.com": "yes", "x".repeat(65): 1})
                .to_string(),
        );
        assert_eq!(
            fields(&refused(
                Channel::Web,
                &value,
                Strictness::OptIn,
                "odd keys"
            )),
            ["evidence"],
            "one problem for all unnamed keys"
        );
    }

    #[test]
    fn import_of_an_import_is_refused() {
        for strictness in [Strictness::OptIn, Strictness::Withdrawal] {
            let value =
                evidence_with(r#"{"source_system": "legacy-crm", "original_channel": "import"}"#);
            assert_eq!(
                refused(Channel::Import, &value, strictness, "import of import"),
                [(
                    "evidence.original_channel".to_owned(),
                    "must be a channel other than import".to_owned()
                )],
                "{strictness:?}"
            );
        }
    }

    #[test]
    fn import_applies_the_original_channel_rules_under_the_fields_own_names() {
        #[rustfmt::skip]
        // (channel fields, the one field reported, its message, why)
        let cases = [
            (r#"{"original_channel": "web"}"#,
                "evidence.source_url", "source_url or form_id is required", "web needs source_url or form_id"),
            (r#"{"original_channel": "web", "source_url": "shop.example"}"#,
                "evidence.source_url", "must be an absolute http or https URL", "web's URL rule"),
            (r#"{"original_channel": "app", "app_version": "4.2"}"#,
                "evidence.app_id", "is required", "app needs app_id"),
            (r#"{"original_channel": "click_to_chat"}"#,
                "evidence.message_reference", "is required", "click_to_chat needs message_reference"),
            (r#"{"original_channel": "support", "ticket_reference": "T-1"}"#,
                "evidence.staff_id", "is required", "support needs staff_id"),
            (r#"{"original_channel": "fax", "form_id": "f"}"#,
                "evidence.original_channel", "must be one of web, app, in_store, click_to_chat, keyword, support, api",
                "an unknown original channel is one problem, its fields are not called foreign"),
        ];
        for (channel_fields, field, message, why) in cases {
            let value = with(
                evidence_with(channel_fields),
                "source_system",
                json!("legacy-crm"),
            );
            assert_eq!(
                refused(Channel::Import, &value, Strictness::OptIn, why),
                [(field.to_owned(), message.to_owned())],
                "{why}"
            );
        }
    }

    #[test]
    fn no_problem_ever_contains_the_submitted_value() {
        let nul = format!("{PHONE}\u{0}");
        let long = PHONE.repeat(50);
        #[rustfmt::skip]
        let cases = [
            (Channel::Web, json!({"collected_at": PHONE, "consent_text_version": long, "ip": PHONE,
                "source_url": PHONE, "user_agent": nul, "store_id": PHONE, "app_id": IP, "phone": PHONE, PHONE: IP})),
            (Channel::Web, json!({"collected_at": IP, "source_url": format!("https://{PHONE}:{IP}@shop.example/"),
                "ip": format!("{IP}:443"), "form_id": ""})),
            (Channel::Web, json!({"source_url": format!("https://shop.example/?tel={PHONE} x"), "ip": format!("[{IP}]")})),
            (Channel::Web, json!({"source_url": format!("tel:{PHONE}"), "form_id": 31_612_345_678_u64})),
            (Channel::Import, json!({"original_channel": PHONE, "source_system": IP, "staff_id": nul})),
            (Channel::Import, json!({"original_channel": "app", "form_id": PHONE, "ip": IP})),
            (Channel::Api, json!({"source_system": "", "message_reference": PHONE, IP: PHONE})),
        ];
        let mut checked = 0;
        for (channel, value) in cases {
            for strictness in [Strictness::OptIn, Strictness::Withdrawal] {
                for (field, message) in refused(channel, &value, strictness, "leak check") {
                    for secret in ["31612345678", IP, "0.2.7"] {
                        assert!(
                            !field.contains(secret),
                            "{channel}: field {field:?} leaks {secret}"
                        );
                        assert!(
                            !message.contains(secret),
                            "{channel}: {field} message {message:?} leaks {secret}"
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 30, "only {checked} problems checked");
    }

    #[test]
    fn debug_never_prints_evidence_values() {
        let value = evidence_with(
            &json!({"source_url": format!("https://shop.example/?tel={PHONE}"), "ip": IP, "user_agent": PHONE}).to_string(),
        );
        let evidence = accepted(Channel::Web, &value, Strictness::OptIn, "debug");
        for shown in [
            format!("{evidence:?}"),
            format!("{evidence:#?}"),
            format!("{:?}", evidence.details),
        ] {
            for secret in ["31612345678", IP, "shop.example", "marketing-v3"] {
                assert!(!shown.contains(secret), "{shown} leaks {secret}");
            }
            assert!(
                shown.contains("source_url") && shown.contains("user_agent"),
                "{shown} names the fields"
            );
        }
    }

    #[test]
    fn channel_names_round_trip_through_text_and_json() {
        let names = [
            "web",
            "app",
            "in_store",
            "click_to_chat",
            "keyword",
            "import",
            "support",
            "api",
        ];
        assert_eq!(Channel::ALL.map(Channel::as_str), names);
        for channel in Channel::ALL {
            assert_eq!(channel.as_str().parse::<Channel>(), Ok(channel));
            assert_eq!(channel.to_string(), channel.as_str());
            let json = serde_json::to_string(&channel).expect("serialize");
            assert_eq!(json, format!("\"{}\"", channel.as_str()));
            assert_eq!(
                serde_json::from_str::<Channel>(&json).expect("deserialize"),
                channel
            );
        }
        for name in ["fax", "Web", "in-store", "InStore", ""] {
            assert_eq!(name.parse::<Channel>(), Err(UnknownChannel), "{name:?}");
        }
    }

    #[test]
    fn an_unknown_channel_is_a_serde_data_error() {
        for json in [
            "5",
            "\"fax\"",
            "null",
            "[\"web\"]",
            "{\"channel\": \"web\"}",
        ] {
            let error = serde_json::from_str::<Channel>(json).expect_err(json);
            assert!(error.is_data(), "{json}: {error}");
        }
        let error = serde_json::from_str::<Channel>("\"fax\"").expect_err("fax");
        assert!(!error.to_string().contains("fax"), "{error}");
    }

    #[test]
    fn the_openapi_schema_of_channel_lists_the_names() {
        let schema = <Channel as utoipa::PartialSchema>::schema();
        let schema = serde_json::to_value(&schema).expect("schema");
        let names: Vec<&str> = Channel::ALL.map(Channel::as_str).to_vec();
        assert_eq!(schema["enum"], json!(names), "{schema}");
    }

    #[test]
    fn the_stored_channel_tag_is_the_channel_name() {
        for case in MINIMAL {
            let evidence = accepted(
                case.channel,
                &evidence_with(case.fields),
                Strictness::OptIn,
                case.why,
            );
            let stored = serde_json::to_value(&evidence).expect("serialize");
            assert_eq!(
                stored["channel"],
                json!(case.channel.as_str()),
                "{}",
                case.why
            );
        }
    }

    #[test]
    fn field_problems_display_the_field_and_the_message() {
        let problem = FieldProblem::new("evidence.ip", "must be an IPv4 or IPv6 address");
        assert_eq!(
            problem.to_string(),
            "evidence.ip: must be an IPv4 or IPv6 address"
        );
    }
}
