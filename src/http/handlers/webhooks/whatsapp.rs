use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Gate, WebhookResponse, apply, count};
use crate::channels::{Skipped, whatsapp};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::RawBody;
use crate::http::observe::Metrics;
use crate::http::responses::{RateLimited, Unavailable, WebhookErrors};
use crate::ledger::Ledger;
use crate::ledger::channels::{ChannelKind, ChannelSecrets};

const PLATFORM: &str = "whatsapp";

/// The webhook verification handshake Meta makes when the callback URL is
/// saved: `hub.mode=subscribe`, `hub.verify_token` (compared in constant time
/// with the connection's) and `hub.challenge`, echoed as `text/plain` only when
/// the token matches.
#[utoipa::path(
    tag = "webhooks",
    params(
        ("channel_id" = Uuid, Path, description = "the WhatsApp connection"),
        ("hub.mode" = String, Query, description = "`subscribe`"),
        ("hub.verify_token" = String, Query, description = "the connection's verify token"),
        ("hub.challenge" = String, Query, description = "echoed back"),
    ),
    responses(
        (status = 200, description = "the challenge", body = String, content_type = "text/plain"),
        (status = 403, description = "wrong mode or token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such WhatsApp connection", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/webhooks/whatsapp/{channel_id}")]
#[tracing::instrument(skip_all, fields(channel_id = %path))]
pub async fn verify_whatsapp_webhook(
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let gate = Gate::admit(&req)?;
    let channel = ledger
        .open_channel(path.into_inner(), ChannelKind::Whatsapp)
        .await?
        .ok_or(ApiError::NotFound)?;
    let ChannelSecrets::Whatsapp { verify_token, .. } = &channel.secrets else {
        return Err(ApiError::NotFound);
    };
    let mut mode = None;
    let mut token = None;
    let mut challenge = None;
    for (name, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match name.as_ref() {
            "hub.mode" => mode = Some(value.into_owned()),
            "hub.verify_token" => token = Some(value.into_owned()),
            "hub.challenge" => challenge = Some(value.into_owned()),
            _ => {}
        }
    }
    // Digests of equal length, so that the comparison reveals not even the length.
    let matches = token.is_some_and(|token| {
        bool::from(Sha256::digest(token.as_bytes()).ct_eq(&Sha256::digest(verify_token.as_bytes())))
    });
    match (mode.as_deref(), challenge) {
        (Some("subscribe"), Some(challenge)) if matches && challenge.len() <= 1024 => {
            Ok(HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .body(challenge))
        }
        _ => Err(gate.refused(ApiError::VerificationRefused)),
    }
}

/// Takes a WhatsApp Cloud API webhook as Meta sends it. The
/// `X-Hub-Signature-256` header (`sha256=` + hex HMAC-SHA256 of the raw body
/// under the app secret) is checked first; then `messages` open the window (72 h
/// from a click-to-chat ad where the policy says so) and are matched for
/// keywords, `user_preferences` marketing stop/resume revoke or restore
/// marketing, and statuses failed with error 131050 revoke marketing. Anything
/// else is ignored and counted. Idempotent by the platform's ids.
#[utoipa::path(
    tag = "webhooks",
    params(("channel_id" = Uuid, Path, description = "the WhatsApp connection")),
    request_body(content = Object, description = "the payload exactly as Meta sends it", content_type = "application/json"),
    responses(
        WebhookErrors,
        (status = 200, body = WebhookResponse),
        (status = 400, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or wrong signature: nothing recorded", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such WhatsApp connection", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "not all items could be committed: deliver again", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/webhooks/whatsapp/{channel_id}")]
#[tracing::instrument(skip_all, fields(channel_id = %path))]
pub async fn receive_whatsapp_webhook(
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    metrics: Option<web::Data<Metrics>>,
    path: web::Path<Uuid>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let gate = Gate::admit(&req)?;
    let metrics = metrics.as_ref().map(|m| m.get_ref());
    let channel = ledger
        .open_channel(path.into_inner(), ChannelKind::Whatsapp)
        .await?
        .ok_or(ApiError::NotFound)?;
    let ChannelSecrets::Whatsapp { app_secret, .. } = &channel.secrets else {
        return Err(ApiError::NotFound);
    };
    let signature = req
        .headers()
        .get(whatsapp::SIGNATURE_HEADER)
        .map(|v| v.as_bytes());
    if !whatsapp::verify_signature(app_secret.as_bytes(), &body.0, signature) {
        count(metrics, PLATFORM, "invalid_signature");
        return Err(gate.bad_signature(whatsapp::SIGNATURE_HEADER));
    }
    let parsed = whatsapp::parse(&body.0, |id| channel.serves(id))
        .ok_or_else(|| ApiError::MalformedBody("the webhook body is not a JSON document".into()))?;
    let mut summary = WebhookResponse::default();
    for skipped in &parsed.skipped {
        count(metrics, PLATFORM, skipped.label());
        if let (Skipped::Status(code), Some(metrics)) = (skipped, metrics) {
            metrics.whatsapp_status(code);
        }
        summary.skipped += 1;
    }
    apply(
        &ledger,
        metrics,
        PLATFORM,
        &channel,
        parsed.signals,
        &mut summary,
    )
    .await?;
    Ok(HttpResponse::Ok().json(summary))
}
