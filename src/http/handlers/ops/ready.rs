use actix_web::{HttpResponse, get, web};

use super::health::HealthResponse;
use crate::http::error::{ApiError, Problem};
use crate::store::{Store, migrations};

/// Readiness: the store answers and every migration is applied. A load balancer
/// sends no traffic to a node that answers 503 here.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, body = HealthResponse),
        (status = 503, description = "store unreachable or migrations pending", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
#[tracing::instrument(skip_all)]
pub async fn check_ready(store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    let applied = store.run(migrations::all_applied).await?;
    if !applied {
        return Err(ApiError::Unavailable("migrations pending".into()));
    }
    Ok(HttpResponse::Ok().json(HealthResponse { status: "ready" }))
}
