use actix_web::{HttpResponse, post, web};

use super::{CreatePreferenceLinkRequest, PreferenceLinkResponse};
use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::browser::WebState;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::Json;
use crate::http::handlers::{caller, parse_phone};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::preferences::{DEFAULT_LINK_TTL, MAX_LINK_TTL, MIN_LINK_TTL};

/// Creates a preference link for a number: a page where the person sees each
/// category of the business's policy, its state now, and opts in or out, stops
/// all messages, downloads or erases their data. The link is bound to this
/// business, the number's subject and an expiry (default 7 days, at most 30); it
/// never contains the number. Each creation is audited
/// (`preference_link.created`). The response's `url` holds the link's secret and
/// is shown only once; a retry creates another link (each can be revoked).
#[utoipa::path(
    tag = "consents",
    security(("api_key" = ["consents:write"])),
    request_body = CreatePreferenceLinkRequest,
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 201, body = PreferenceLinkResponse),
    )
)]
#[post("/v1/preference-links")]
#[tracing::instrument(skip_all)]
pub async fn create_preference_link(
    principal: Principal,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
    body: Json<CreatePreferenceLinkRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::ConsentsWrite)?;
    let caller = caller(&principal, &ledger)?;
    let request = body.0;
    let mut errors = Vec::new();
    let phone = parse_phone(
        "phone",
        &request.phone,
        request.default_region.as_deref(),
        &mut errors,
    );
    let ttl = match request.ttl_minutes {
        None => Some(DEFAULT_LINK_TTL),
        Some(minutes)
            if (MIN_LINK_TTL.num_minutes()..=MAX_LINK_TTL.num_minutes()).contains(&minutes) =>
        {
            Some(chrono::Duration::minutes(minutes))
        }
        Some(_) => {
            errors.push(FieldError::new(
                "ttl_minutes",
                format!(
                    "must be between {} and {} (30 days)",
                    MIN_LINK_TTL.num_minutes(),
                    MAX_LINK_TTL.num_minutes()
                ),
            ));
            None
        }
    };
    let (Some(phone), Some(ttl), true) = (phone, ttl, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let link = ledger.create_preference_link(&caller, phone, ttl).await?;
    Ok(HttpResponse::Created().json(PreferenceLinkResponse {
        id: link.id,
        subject_id: link.subject_id,
        url: format!("{}/p/{}", state.public_url(), link.token),
        created_at: link.created_at,
        expires_at: link.expires_at,
    }))
}
