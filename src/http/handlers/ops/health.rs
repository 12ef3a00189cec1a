use actix_web::{HttpResponse, get};
use serde::Serialize;
use utoipa::ToSchema;

/// Liveness and readiness status.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` (alive) or `ready`.
    pub status: &'static str,
}

/// Liveness: the process answers. Says nothing about the store (see /readyz).
#[utoipa::path(tag = "operations", responses((status = 200, body = HealthResponse)))]
#[get("/healthz")]
#[tracing::instrument(skip_all)]
pub async fn check_health() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse { status: "ok" })
}
