use actix_web::{HttpRequest, HttpResponse, post, web};
use uuid::Uuid;

use super::{Gate, WebhookResponse, apply, count};
use crate::channels::twilio;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::RawBody;
use crate::http::observe::Metrics;
use crate::http::responses::WebhookErrors;
use crate::ledger::Ledger;
use crate::ledger::channels::{ChannelConfig, ChannelKind, ChannelSecrets};

const PLATFORM: &str = "twilio";

/// Takes a Twilio Messaging inbound webhook as Twilio sends it (form-encoded
/// `From`, `To`, `Body`, `MessageSid`, and `OptOutType` STOP/START/HELP with
/// Advanced Opt-Out). `X-Twilio-Signature` (base64 HMAC-SHA1 under the auth
/// token of the connection's configured URL followed by the sorted parameters)
/// is checked first. The message opens the window; `OptOutType` wins over the
/// policy's keyword matching. Answers the empty TwiML `<Response/>`: nothing
/// is sent back. Idempotent by `MessageSid`.
#[utoipa::path(
    tag = "webhooks",
    params(("channel_id" = Uuid, Path, description = "the Twilio connection")),
    request_body(content = String, description = "the form Twilio posts", content_type = "application/x-www-form-urlencoded"),
    responses(
        WebhookErrors,
        (status = 200, description = "empty TwiML", body = String, content_type = "application/xml"),
        (status = 401, description = "missing or wrong signature: nothing recorded", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such Twilio connection", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "not committed: deliver again", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/webhooks/twilio/{channel_id}")]
#[tracing::instrument(skip_all, fields(channel_id = %path))]
pub async fn receive_twilio_webhook(
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    metrics: Option<web::Data<Metrics>>,
    path: web::Path<Uuid>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let gate = Gate::admit(&req)?;
    let metrics = metrics.as_ref().map(|m| m.get_ref());
    let channel = ledger
        .open_channel(path.into_inner(), ChannelKind::Twilio)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (ChannelSecrets::Twilio { auth_token }, ChannelConfig::Twilio { webhook_url, .. }) =
        (&channel.secrets, &channel.config)
    else {
        return Err(ApiError::NotFound);
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body.0)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let signature = req
        .headers()
        .get(twilio::SIGNATURE_HEADER)
        .map(|v| v.as_bytes());
    if !twilio::verify_signature(auth_token.as_bytes(), webhook_url, &params, signature) {
        count(metrics, PLATFORM, "invalid_signature");
        return Err(gate.bad_signature(twilio::SIGNATURE_HEADER));
    }
    let mut summary = WebhookResponse::default();
    // A status callback sent to this URL is no message from the person.
    if params.iter().any(|(k, _)| k == "MessageStatus") {
        count(metrics, PLATFORM, "status");
    } else {
        match twilio::parse(&params) {
            Some(signal) => {
                apply(
                    &ledger,
                    metrics,
                    PLATFORM,
                    &channel,
                    vec![signal],
                    &mut summary,
                )
                .await?
            }
            None => count(metrics, PLATFORM, "malformed"),
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("application/xml")
        .body(twilio::EMPTY_TWIML))
}
