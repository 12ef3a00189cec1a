use actix_web::{HttpResponse, post, web};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::Json;
use crate::http::handlers::{caller, display_name};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::channels::{
    ChannelConfig, ChannelKind, ChannelResponse, ChannelSecrets, CreateChannel,
};

/// A channel connection to create. WhatsApp: `app_secret`, `verify_token` and
/// `phone_number_ids`; Twilio: `auth_token`, `account_sid` and `webhook_url`.
/// The secrets are stored sealed and never shown again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    pub kind: ChannelKind,
    /// A label for people (default: the kind).
    pub name: Option<String>,
    /// WhatsApp: the Meta app's secret, which signs every webhook
    /// (`X-Hub-Signature-256`).
    #[schema(value_type = Option<String>)]
    pub app_secret: Option<SecretString>,
    /// WhatsApp: the verify token you enter in the app's webhook settings; the
    /// verification handshake must present it.
    #[schema(value_type = Option<String>)]
    pub verify_token: Option<SecretString>,
    /// WhatsApp: the phone-number ids this connection serves (webhooks for
    /// others are ignored and counted).
    pub phone_number_ids: Option<Vec<String>>,
    /// Twilio: the account's auth token, which signs every webhook
    /// (`X-Twilio-Signature`).
    #[schema(value_type = Option<String>)]
    pub auth_token: Option<SecretString>,
    /// Twilio: the account SID (`AC...`).
    pub account_sid: Option<String>,
    /// Twilio: the exact public URL Twilio posts to (it is part of what Twilio
    /// signs), e.g. `https://consent.example.com/v1/webhooks/twilio/<id>`; the
    /// id is only known after creation, so set the URL with a placeholder and
    /// create again, or put the service behind a stable path of your own.
    pub webhook_url: Option<String>,
}

const MAX_SECRET: usize = 512;

fn secret(
    field: &'static str,
    value: Option<&SecretString>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let Some(value) = value else {
        errors.push(FieldError::new(field, "is required"));
        return None;
    };
    let text = value.expose_secret().trim();
    if text.is_empty() || text.len() > MAX_SECRET || text.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            format!("must be 1 to {MAX_SECRET} bytes without control characters"),
        ));
        return None;
    }
    Some(text.to_owned())
}

fn required<'a>(
    field: &'static str,
    value: Option<&'a str>,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    if value.is_none() {
        errors.push(FieldError::new(field, "is required"));
    }
    value
}

fn forbid(field: &'static str, present: bool, kind: ChannelKind, errors: &mut Vec<FieldError>) {
    if present {
        errors.push(FieldError::new(
            field,
            format!("is not a field of a {} connection", kind.as_str()),
        ));
    }
}

fn is_id(text: &str) -> bool {
    (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn validate(request: &CreateChannelRequest) -> Result<CreateChannel, ApiError> {
    let mut errors = Vec::new();
    let name = match &request.name {
        Some(name) => display_name("name", name, 100)
            .map_err(|e| errors.push(e))
            .ok(),
        None => Some(request.kind.as_str().to_owned()),
    };
    let kind = request.kind;
    let (config, secrets) = match kind {
        ChannelKind::Whatsapp => {
            forbid(
                "auth_token",
                request.auth_token.is_some(),
                kind,
                &mut errors,
            );
            forbid(
                "account_sid",
                request.account_sid.is_some(),
                kind,
                &mut errors,
            );
            forbid(
                "webhook_url",
                request.webhook_url.is_some(),
                kind,
                &mut errors,
            );
            let app_secret = secret("app_secret", request.app_secret.as_ref(), &mut errors);
            let verify_token = secret("verify_token", request.verify_token.as_ref(), &mut errors);
            let ids = match &request.phone_number_ids {
                None => {
                    errors.push(FieldError::new("phone_number_ids", "is required"));
                    None
                }
                Some(ids) if ids.is_empty() || ids.len() > 100 => {
                    errors.push(FieldError::new(
                        "phone_number_ids",
                        "must list 1 to 100 phone-number ids",
                    ));
                    None
                }
                Some(ids) => {
                    let mut ok = true;
                    for (i, id) in ids.iter().enumerate() {
                        if !is_id(id) {
                            ok = false;
                            errors.push(FieldError::new(
                                format!("phone_number_ids[{i}]"),
                                "must be 1 to 64 letters or digits (the id Meta shows, not the number)",
                            ));
                        }
                    }
                    ok.then(|| ids.clone())
                }
            };
            match (app_secret, verify_token, ids) {
                (Some(app_secret), Some(verify_token), Some(phone_number_ids)) => (
                    Some(ChannelConfig::Whatsapp { phone_number_ids }),
                    Some(ChannelSecrets::Whatsapp {
                        app_secret,
                        verify_token,
                    }),
                ),
                _ => (None, None),
            }
        }
        ChannelKind::Twilio => {
            forbid(
                "app_secret",
                request.app_secret.is_some(),
                kind,
                &mut errors,
            );
            forbid(
                "verify_token",
                request.verify_token.is_some(),
                kind,
                &mut errors,
            );
            forbid(
                "phone_number_ids",
                request.phone_number_ids.is_some(),
                kind,
                &mut errors,
            );
            let auth_token = secret("auth_token", request.auth_token.as_ref(), &mut errors);
            let sid = required("account_sid", request.account_sid.as_deref(), &mut errors).filter(
                |sid| {
                    let ok = is_id(sid) && sid.starts_with("AC");
                    if !ok {
                        errors.push(FieldError::new(
                            "account_sid",
                            "must be a Twilio account SID (AC followed by letters and digits)",
                        ));
                    }
                    ok
                },
            );
            let url = required("webhook_url", request.webhook_url.as_deref(), &mut errors)
                .filter(|url| {
                    let ok = (url.starts_with("https://") || url.starts_with("http://"))
                        && url.len() <= 2000
                        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
                    if !ok {
                        errors.push(FieldError::new(
                            "webhook_url",
                            "must be the absolute http(s) URL Twilio posts to, at most 2000 characters",
                        ));
                    }
                    ok
                });
            match (auth_token, sid, url) {
                (Some(auth_token), Some(sid), Some(url)) => (
                    Some(ChannelConfig::Twilio {
                        account_sid: sid.to_owned(),
                        webhook_url: url.to_owned(),
                    }),
                    Some(ChannelSecrets::Twilio { auth_token }),
                ),
                _ => (None, None),
            }
        }
    };
    match (name, config, secrets, errors.is_empty()) {
        (Some(name), Some(config), Some(secrets), true) => Ok(CreateChannel {
            name,
            config,
            secrets,
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// Connects a WhatsApp Business Platform or Twilio Messaging account: their
/// webhooks for this business then come in at `webhook_path`, checked with the
/// connection's secrets. Audited (`channel.created`).
#[utoipa::path(
    tag = "channels",
    security(("api_key" = ["keys:manage"])),
    request_body = CreateChannelRequest,
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 201, body = ChannelResponse),
        (status = 422, description = "every invalid field is listed", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/channels")]
#[tracing::instrument(skip_all)]
pub async fn create_channel(
    principal: Principal,
    ledger: web::Data<Ledger>,
    body: Json<CreateChannelRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::KeysManage)?;
    let caller = caller(&principal, &ledger)?;
    let Json(request, _) = body;
    let command = validate(&request)?;
    let channel = ledger.create_channel(&caller, command).await?;
    Ok(HttpResponse::Created().json(channel))
}
