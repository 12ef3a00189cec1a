use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{check_range, subject_filter};
use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::extract::Query;
use crate::http::responses::{ApiKeyErrors, QueryErrors};
use crate::ledger::Ledger;
use crate::ledger::audit_view::AuditEventView;
use crate::store::audit::EventFilter;

/// The most events one page may hold.
pub const MAX_PAGE: i64 = 1_000;

/// Which events, from where.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAuditEventsQuery {
    /// Events with a sequence number greater than this (the previous page's
    /// `next_after`); default 0.
    pub after: Option<i64>,
    /// Page size, 1 to 1,000; default 100.
    pub limit: Option<i64>,
    /// Only this event type, e.g. `consent.revoked`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Only events about this subject.
    pub subject_id: Option<String>,
    /// Events at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Events before this instant.
    pub to: Option<DateTime<Utc>>,
}

/// A page of events in sequence order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventsResponse {
    pub events: Vec<AuditEventView>,
    /// Pass as `after` for the next page; `null` when this page is the last.
    pub next_after: Option<i64>,
}

/// Lists the business's audit events in sequence order, with cursor pagination
/// and filters; personal fields decrypted for the auditor (`[erased]` once the
/// subject was erased).
#[utoipa::path(
    tag = "audit",
    security(("api_key" = ["audit:read"])),
    params(ListAuditEventsQuery),
    responses(
        ApiKeyErrors, QueryErrors,
        (status = 200, body = AuditEventsResponse),
    )
)]
#[get("/v1/audit/events")]
#[tracing::instrument(skip_all)]
pub async fn list_audit_events(
    principal: Principal,
    ledger: web::Data<Ledger>,
    query: Query<ListAuditEventsQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::AuditRead)?;
    let query = query.0;
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after", "must be 0 or more"));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let (from, to) = check_range(query.from, query.to)?;
    let filter = EventFilter {
        after,
        // One more than asked tells whether another page follows.
        limit: limit + 1,
        event_type: query.event_type,
        subject_id: subject_filter(query.subject_id.as_deref())?,
        from,
        to,
    };
    let mut events = ledger.audit_events(principal.business_id, filter).await?;
    let more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let next_after = if more {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AuditEventsResponse { events, next_after }))
}
