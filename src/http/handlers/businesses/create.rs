use actix_web::{HttpResponse, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Actor;
use crate::http::auth::{Authenticator, Operator};
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::Json;
use crate::http::handlers::display_name;
use crate::http::handlers::keys::{KeyCreatedResponse, KeyResponse};
use crate::http::responses::{JsonBodyErrors, OperatorErrors, StoreErrors};
use crate::ledger::Ledger;
use crate::ledger::keys::new_business;
use crate::policy::PolicySet;
use crate::store::keys::ApiKey;

/// A business to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBusinessRequest {
    /// The business's name, 1 to 200 characters.
    pub name: String,
    /// The policy the business is bound to, e.g. `whatsapp-eu`.
    pub policy: String,
}

/// A business.
#[derive(Debug, Serialize, ToSchema)]
pub struct BusinessResponse {
    pub id: Uuid,
    pub name: String,
    pub policy: String,
    pub created_at: DateTime<Utc>,
}

/// The new business and its first key (all scopes), whose secret is shown here
/// only.
#[derive(Debug, Serialize, ToSchema)]
pub struct BusinessCreatedResponse {
    pub business: BusinessResponse,
    pub key: KeyCreatedResponse,
}

/// Creates a business bound to a policy, with a first key holding every scope.
#[utoipa::path(
    tag = "operator",
    security(("operator_token" = [])),
    request_body = CreateBusinessRequest,
    responses(
        OperatorErrors, JsonBodyErrors, StoreErrors,
        (status = 201, body = BusinessCreatedResponse),
        (status = 422, description = "invalid name or unknown policy", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/businesses")]
#[tracing::instrument(skip_all)]
pub async fn create_business(
    _operator: Operator,
    ledger: web::Data<Ledger>,
    policies: web::Data<PolicySet>,
    auth: web::Data<Authenticator>,
    body: Json<CreateBusinessRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0;
    let mut errors = Vec::new();
    let name = display_name("name", &request.name, 200)
        .map_err(|e| errors.push(e))
        .ok();
    if policies.get(&request.policy).is_none() {
        let known: Vec<&str> = policies.names().collect();
        errors.push(FieldError::new(
            "policy",
            format!("unknown policy; known: {}", known.join(", ")),
        ));
    }
    let Some(name) = name.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let (business, key, secret) = new_business(auth.hasher(), name, request.policy);
    ledger
        .writer()
        .create_business(business.clone(), key.clone(), Actor::Operator)
        .await?;
    Ok(HttpResponse::Created().json(BusinessCreatedResponse {
        business: BusinessResponse {
            id: business.id,
            name: business.name,
            policy: business.policy,
            created_at: business.created_at,
        },
        key: KeyCreatedResponse {
            key: KeyResponse::from(ApiKey::from(key)),
            secret,
        },
    }))
}
