use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use utoipa::ToSchema;

use crate::domain::Scope;
use crate::domain::evidence::Channel;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{IdempotencyKey, Json};
use crate::http::handlers::withdrawal::LenientBody;
use crate::http::handlers::{caller, evidence_limits, idempotency, written};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::record::{RecordRevocation, RevocationResponse};

/// Consent withdrawn, for some categories or all. Only `phone` is required: any
/// other field that is malformed is dropped and named in `warnings[]` of the 201,
/// and the revocation is recorded all the same (GDPR Art. 7(3)). A category list
/// naming an unknown category widens the revocation to every category.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // the schema of the body, read leniently by `withdrawal`
pub struct RecordRevocationRequest {
    pub phone: String,
    pub default_region: Option<String>,
    /// The categories withdrawn; absent or `null` withdraws every category.
    pub categories: Option<Vec<String>>,
    /// Where the person withdrew (default `api`).
    pub channel: Option<Channel>,
    /// Optional proof: `collected_at` (default: when recorded; a stated time
    /// takes effect no later than it is recorded) and the channel's fields.
    #[schema(value_type = Object)]
    pub evidence: Option<serde_json::Value>,
}

const FIELDS: &[&str] = &[
    "phone",
    "default_region",
    "categories",
    "channel",
    "evidence",
];

/// Records a revocation, effective at once. Accepts `Idempotency-Key`.
#[utoipa::path(
    tag = "consents",
    security(("api_key" = ["consents:write"])),
    request_body = RecordRevocationRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 201, body = RevocationResponse),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "no valid phone", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/revocations")]
#[tracing::instrument(skip_all)]
pub async fn record_revocation(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    key: IdempotencyKey,
    body: Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::ConsentsWrite)?;
    let caller = caller(&principal, &ledger)?;
    let Json(request, raw) = body;
    let mut body = LenientBody::new(&request, FIELDS)?;
    let phone = body.phone();
    let categories = body.categories(&caller.policy);
    let channel = body.channel(Channel::Api);
    let evidence = body.evidence(channel, &evidence_limits(&ledger, &caller.policy));
    let dropped = body.finish()?;
    // `finish` refuses a body without a valid phone; this only names it again.
    let phone = phone.ok_or_else(|| ApiError::invalid("phone", "is required"))?;
    let idempotency = idempotency(&req, key, &ledger, &caller, &raw, StatusCode::CREATED);
    let command = RecordRevocation {
        phone,
        categories,
        channel,
        evidence,
        dropped,
        by_keyword: false,
    };
    let result = ledger
        .record_revocation(&caller, command, idempotency)
        .await?;
    Ok(written(result, StatusCode::CREATED))
}
