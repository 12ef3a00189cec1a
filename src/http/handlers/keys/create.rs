use actix_web::{HttpResponse, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{KeyCreatedResponse, KeyResponse};
use crate::domain::{Scope, Scopes};
use crate::http::auth::{Authenticator, Principal};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::Json;
use crate::http::handlers::display_name;
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::keys::mint_key;

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// A label for people, 1 to 100 characters.
    pub name: String,
    /// What the key may do; at least one, and only scopes the calling key has.
    pub scopes: Vec<Scope>,
}

/// Creates an API key for the caller's business. The secret is in this response
/// only.
#[utoipa::path(
    tag = "keys",
    security(("api_key" = ["keys:manage"])),
    request_body = CreateKeyRequest,
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 201, body = KeyCreatedResponse),
    )
)]
#[post("/v1/keys")]
#[tracing::instrument(skip_all)]
pub async fn create_key(
    principal: Principal,
    ledger: web::Data<Ledger>,
    auth: web::Data<Authenticator>,
    body: Json<CreateKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::KeysManage)?;
    let request = body.0;
    let mut errors = Vec::new();
    let name = display_name("name", &request.name, 100)
        .map_err(|e| errors.push(e))
        .ok();
    let scopes = match Scopes::new(request.scopes) {
        None => {
            errors.push(FieldError::new("scopes", "must name at least one scope"));
            None
        }
        // No escalation: a key can only hand out what it holds itself.
        Some(scopes) if !scopes.is_subset(&principal.scopes) => {
            errors.push(FieldError::new(
                "scopes",
                "a key can only grant scopes it has itself",
            ));
            None
        }
        Some(scopes) => Some(scopes),
    };
    let (Some(name), Some(scopes), true) = (name, scopes, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let (key, secret) = mint_key(auth.hasher(), principal.business_id, name, scopes);
    let created = ledger.writer().create_key(key, principal.actor()).await?;
    Ok(HttpResponse::Created().json(KeyCreatedResponse {
        key: KeyResponse::from(created),
        secret,
    }))
}
