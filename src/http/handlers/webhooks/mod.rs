//! The messaging platforms' webhooks (SPEC section 10). They authenticate by the
//! platform's signature over the request, checked with the channel connection's
//! secret before anything is parsed, never by an API key. An unknown (or
//! deleted) connection is a 404; a wrong or missing signature a 401 that
//! records nothing. Each item then becomes the ledger call the JSON API would
//! make; the answer is 200 only once every item is committed (the platforms
//! retry anything else, and a redelivery records nothing twice).

pub mod twilio;
pub mod whatsapp;

use serde::Serialize;
use utoipa::ToSchema;

use crate::channels::Signal;
use crate::http::error::ApiError;
use crate::http::observe::Metrics;
use crate::http::throttle::{ClientAddr, Throttle};
use crate::ledger::Ledger;
use crate::ledger::channels::{OpenChannel, SignalOutcome};
use crate::store::StoreError;

/// What a webhook delivery did: counts only (never a number or a text).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct WebhookResponse {
    /// Items recorded now.
    pub recorded: u32,
    /// Items recorded by an earlier delivery (nothing recorded twice).
    pub replayed: u32,
    /// Items that changed nothing (e.g. a resume with nothing to restore).
    pub unchanged: u32,
    /// Items ignored: other numbers, other change types, statuses that say
    /// nothing about consent, malformed items, numbers that cannot be parsed.
    pub skipped: u32,
}

/// Applies the signals in order. A store failure does not stop the others (they
/// are recorded exactly once either way); it makes the answer a 503 so that the
/// platform delivers again.
pub(crate) async fn apply(
    ledger: &Ledger,
    metrics: Option<&Metrics>,
    platform: &'static str,
    channel: &OpenChannel,
    signals: Vec<Signal>,
    summary: &mut WebhookResponse,
) -> Result<(), ApiError> {
    let mut failure = None;
    for signal in signals {
        let outcome = match ledger.apply_signal(channel, signal).await {
            Ok(outcome) => outcome,
            Err(e @ (StoreError::Unavailable(_) | StoreError::Internal(_))) => {
                count(metrics, platform, "failed");
                failure.get_or_insert(e);
                continue;
            }
            Err(e) => {
                // Refused by a rule (a conflict) or unreadable data: this item
                // cannot be recorded however often it is delivered.
                tracing::warn!(error = %e, "a channel signal was not recorded");
                count(metrics, platform, "refused");
                summary.skipped += 1;
                continue;
            }
        };
        count(metrics, platform, outcome.label());
        match outcome {
            SignalOutcome::Recorded => summary.recorded += 1,
            SignalOutcome::Replayed => summary.replayed += 1,
            SignalOutcome::Nothing => summary.unchanged += 1,
            SignalOutcome::UnparsablePhone => summary.skipped += 1,
        }
    }
    match failure {
        Some(e) => Err(ApiError::Unavailable(e.to_string())),
        None => Ok(()),
    }
}

pub(crate) fn count(metrics: Option<&Metrics>, platform: &'static str, outcome: &'static str) {
    if let Some(metrics) = metrics {
        metrics.channel_item(platform, outcome);
    }
}

/// Webhooks authenticate by their signature, not by a key, so they are throttled
/// like any unauthenticated caller: per client address before anything is read
/// (each delivery costs a store read and an HMAC over the body), and a missing or
/// wrong signature is charged as a failed authentication (401 while that small
/// quota lasts, then 429 with `Retry-After`).
pub(crate) struct Gate {
    throttle: actix_web::web::Data<Throttle>,
    client: ClientAddr,
}

impl Gate {
    /// Admits the request or refuses it (429); fails closed without a throttle.
    pub(crate) fn admit(req: &actix_web::HttpRequest) -> Result<Gate, ApiError> {
        let throttle = req
            .app_data::<actix_web::web::Data<Throttle>>()
            .cloned()
            .ok_or_else(|| ApiError::Unavailable("throttle not configured".into()))?;
        let client = throttle.client(req);
        throttle.before_auth(client)?;
        Ok(Gate { throttle, client })
    }

    /// The answer to a bad signature on `header`.
    pub(crate) fn bad_signature(&self, header: &'static str) -> ApiError {
        self.refused(ApiError::BadSignature(header))
    }

    /// Charges a failed authentication: `error` while the quota lasts, else 429.
    pub(crate) fn refused(&self, error: ApiError) -> ApiError {
        match self.throttle.after_failure(self.client) {
            ApiError::Unauthorized => error,
            limited => limited,
        }
    }
}
