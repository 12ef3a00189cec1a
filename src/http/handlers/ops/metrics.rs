use actix_web::{HttpResponse, get, web};

use crate::http::observe::Metrics;
use crate::ledger::Ledger;

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
#[get("/metrics")]
#[tracing::instrument(skip_all)]
pub async fn render_metrics(
    metrics: web::Data<Metrics>,
    ledger: web::Data<Ledger>,
) -> HttpResponse {
    metrics.set_projection(ledger.projection());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
