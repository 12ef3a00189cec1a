//! Channel signals (SPEC section 10): what the messaging platforms send to their
//! webhooks, verified and reduced to the few things consent cares about. Pure:
//! no actix, no diesel, no store. The webhook handlers verify the signature with
//! [`whatsapp::verify_signature`] / [`twilio::verify_signature`] before anything
//! is parsed, then hand the [`Signal`]s to the ledger.
//!
//! Nothing here logs, and no [`Signal`] prints its phone number or text: `Debug`
//! is redacted.

pub mod twilio;
pub mod whatsapp;

use chrono::{DateTime, Utc};

/// What a platform told us about one person, before the number is parsed.
pub struct Signal {
    /// The person's number as the platform wrote it (`16315551181` from Meta,
    /// `+14155551234` or `whatsapp:+14155551234` from Twilio). Personal data.
    pub from: String,
    /// When it happened according to the platform (`None`: not stated).
    pub at: Option<DateTime<Utc>>,
    /// A delivery id unique per platform event (the message id, or for events
    /// without one what identifies them), for exactly-once recording. It can
    /// hold the number (Meta's message ids do): never log or store it plainly.
    pub delivery_id: String,
    /// The platform's reference kept (encrypted) as evidence: its message id.
    pub reference: String,
    pub kind: SignalKind,
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What a signal means.
pub enum SignalKind {
    /// A message the person sent: opens the window; its texts (body, button or
    /// list reply; matched against the policy's keywords, never stored).
    Inbound {
        texts: Vec<String>,
        /// The conversation came from a click-to-chat ad.
        from_ad: bool,
        /// The platform's own opt-out handling (Twilio `OptOutType`), which
        /// wins over keyword matching.
        platform_keyword: Option<PlatformKeyword>,
    },
    /// The person stopped marketing messages (Meta `user_preferences` stop, or a
    /// send refused with error 131050).
    MarketingStopped,
    /// The person resumed marketing messages (`user_preferences` resume).
    MarketingResumed,
}

impl std::fmt::Debug for SignalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignalKind::Inbound {
                from_ad,
                platform_keyword,
                ..
            } => f
                .debug_struct("Inbound")
                .field("from_ad", from_ad)
                .field("platform_keyword", platform_keyword)
                .finish_non_exhaustive(),
            SignalKind::MarketingStopped => f.write_str("MarketingStopped"),
            SignalKind::MarketingResumed => f.write_str("MarketingResumed"),
        }
    }
}

/// A platform's own keyword classification (Twilio Advanced Opt-Out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformKeyword {
    Stop,
    Start,
    Help,
}

/// Something in a payload that was not turned into a signal, and why: counted
/// in metrics under a closed set of labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// A change for a phone-number id the connection does not serve.
    UnservedNumber,
    /// A change type (`field`) or entry this service does not use.
    UnknownChange,
    /// An item whose required fields are missing or malformed.
    Malformed,
    /// A delivery status that says nothing about consent; its first error code
    /// (a closed set, see [`whatsapp::status_code_label`]) or `none`.
    Status(&'static str),
    /// A user preference of another category (not marketing messages).
    OtherPreference,
}

impl Skipped {
    /// The metric label of the reason.
    pub fn label(self) -> &'static str {
        match self {
            Skipped::UnservedNumber => "unserved_number",
            Skipped::UnknownChange => "unknown_change",
            Skipped::Malformed => "malformed",
            Skipped::Status(_) => "status",
            Skipped::OtherPreference => "other_preference",
        }
    }
}

/// A parsed payload: the signals in payload order, and what was skipped.
#[derive(Debug, Default)]
pub struct Parsed {
    pub signals: Vec<Signal>,
    pub skipped: Vec<Skipped>,
}
