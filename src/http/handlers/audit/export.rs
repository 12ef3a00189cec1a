use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, web};

use super::{TimeRange, check_range};
use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::extract::Query;
use crate::http::responses::{ApiKeyErrors, QueryErrors};
use crate::ledger::Ledger;
use crate::store::audit::EventFilter;

/// Events fetched per page while streaming: memory stays bounded by one page.
const PAGE: i64 = 500;

/// Streams the business's events in a time range as NDJSON, one self-contained
/// line per event with every field the hash covers (`data` as the exact stored
/// text), so the chain can be re-verified offline from the export alone: the first
/// line's `prev_hash` is where the range starts. Constant memory for any size.
#[utoipa::path(
    tag = "audit",
    security(("api_key" = ["audit:read"])),
    params(TimeRange),
    responses(
        ApiKeyErrors, QueryErrors,
        (status = 200, description = "one JSON object per line", content_type = "application/x-ndjson", body = crate::ledger::audit_view::ExportLine),
    )
)]
#[get("/v1/audit/export")]
#[tracing::instrument(skip_all)]
pub async fn export_audit_events(
    principal: Principal,
    ledger: web::Data<Ledger>,
    query: Query<TimeRange>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::AuditRead)?;
    let (from, to) = check_range(query.0.from, query.0.to)?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(ndjson_stream(
            ledger.into_inner(),
            principal.business_id,
            from,
            to,
        )))
}

/// The business's events in `[from, to)` as NDJSON chunks, a page at a time;
/// also the auditor console's download.
pub(crate) fn ndjson_stream(
    ledger: std::sync::Arc<Ledger>,
    business_id: uuid::Uuid,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    futures_util::stream::unfold(Some(0i64), move |after| {
        let ledger = ledger.clone();
        async move {
            let after = after?;
            let filter = EventFilter {
                after,
                limit: PAGE,
                event_type: None,
                subject_id: None,
                from,
                to,
            };
            match ledger.export_page(business_id, filter).await {
                Ok(lines) if lines.is_empty() => None,
                Ok(lines) => {
                    let next = (lines.len() as i64 == PAGE)
                        .then(|| lines.last().map(|l| l.seq))
                        .flatten();
                    let mut chunk = Vec::with_capacity(lines.len() * 512);
                    for line in &lines {
                        serde_json::to_writer(&mut chunk, line).expect("export lines serialise");
                        chunk.push(b'\n');
                    }
                    Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), next))
                }
                Err(e) => {
                    // Headers are sent: the stream ends early, and the client sees
                    // a truncated body, not a valid-looking export.
                    tracing::warn!(error = %e, "audit export interrupted");
                    Some((
                        Err(actix_web::error::ErrorServiceUnavailable(
                            "export interrupted",
                        )),
                        None,
                    ))
                }
            }
        }
    })
}
