//! Request observation: a request id on every span, one log line per request
//! (at `debug` for answered single checks, [`QUIET_ROUTE`]; `info` otherwise),
//! Prometheus counters and latency histograms by route and status, and a safety net
//! that turns any error response actix produced itself into problem+json, and any
//! server failure of a check into the check's only safe answer: 503, `allowed: false`.
//!
//! Only the route *pattern* (`/v1/keys/{id}`) is logged or labelled, never the
//! path, the query, headers, the client address or the user agent.
//!
//! Every label comes from a closed set, so the number of series is bounded
//! whatever clients send: the method is one of the nine standard ones or
//! `other`, the route is one of our patterns or `unmatched`, the status is its
//! class (`1xx` .. `5xx`). Without this, each distinct method a client invents
//! (any token, any length) would become a new series for ever.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::web;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use super::error::{ApiError, PROBLEM_JSON};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: &'static str,
}

/// A route pattern as a `&'static str` label: each pattern is kept once, for the
/// life of the process. The set is closed (the route table's patterns and
/// `unmatched`), so this holds a few dozen short strings at most.
fn route_label(pattern: &str) -> &'static str {
    static KNOWN: std::sync::OnceLock<std::sync::RwLock<std::collections::HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    if let Some(label) = known.read().unwrap_or_else(|p| p.into_inner()).get(pattern) {
        return label;
    }
    let mut known = known.write().unwrap_or_else(|p| p.into_inner());
    if let Some(label) = known.get(pattern) {
        return label;
    }
    let label: &'static str = Box::leak(pattern.to_owned().into_boxed_str());
    known.insert(label);
    label
}

/// Labels of the channel-webhook counters: every value is a `&'static str` from
/// a closed set (the platform, what became of an item, a known status code or
/// `other`), never a value from the payload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    platform: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    code: &'static str,
}

/// The method as a label: a standard method, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The status as a label: its class.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn latency_histogram() -> Histogram {
    // 0.1 ms .. ~1.6 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

/// The service's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    projection_subjects: Gauge,
    projection_bytes: Gauge,
    channel_items: Family<ChannelLabels, Counter>,
    channel_statuses: Family<StatusLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("consentgate");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route pattern and status class",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method, route pattern and status class",
            latency.clone(),
        );
        let projection_subjects = Gauge::default();
        let projection_bytes = Gauge::default();
        registry.register(
            "projection_subjects",
            "Subjects held by this node's in-memory projection (all loaded businesses)",
            projection_subjects.clone(),
        );
        registry.register(
            "projection_bytes",
            "Heap bytes of this node's in-memory projection's indexes",
            projection_bytes.clone(),
        );
        let channel_items = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "channel_webhook_items",
            "Items of channel webhooks, by platform and what became of them",
            channel_items.clone(),
        );
        let channel_statuses = Family::<StatusLabels, Counter>::default();
        registry.register(
            "whatsapp_statuses_ignored",
            "WhatsApp delivery statuses that say nothing about consent, by error code",
            channel_statuses.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            projection_subjects,
            projection_bytes,
            channel_items,
            channel_statuses,
        }
    }
}

impl Metrics {
    fn observe(&self, method: &'static str, route: &'static str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method,
            route,
            status: status_class(status),
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// Sets the projection's footprint gauges (read when `/metrics` is rendered).
    pub fn set_projection(&self, subjects: usize, bytes: usize) {
        self.projection_subjects
            .set(i64::try_from(subjects).unwrap_or(i64::MAX));
        self.projection_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Counts one item of a channel webhook.
    pub fn channel_item(&self, platform: &'static str, outcome: &'static str) {
        self.channel_items
            .get_or_create(&ChannelLabels { platform, outcome })
            .inc();
    }

    /// Counts one ignored WhatsApp delivery status by its (closed-set) code label.
    pub fn whatsapp_status(&self, code: &'static str) {
        self.channel_statuses
            .get_or_create(&StatusLabels { code })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// A client's request id if it is a short, harmless token; else a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// The observing middleware (used with `actix_web::middleware::from_fn`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = method_label(req.method());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        // Display, not Debug: Debug escapes a `&str` character by character.
        method = %method,
        // Recorded by authentication (`http::auth`) for business endpoints.
        business_id = tracing::field::Empty,
    );
    let mut res = next.call(req).instrument(span.clone()).await?;
    let route = res
        .request()
        .match_pattern()
        .map_or("unmatched", |pattern| route_label(&pattern));
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    let seconds = elapsed.as_secs_f64();
    let quiet = status < 400 && route == QUIET_ROUTE;
    if let Some(metrics) = metrics {
        metrics.observe(method, route, status, seconds);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        if quiet {
            tracing::debug!(route = QUIET_ROUTE, status, latency_us, "request answered");
        } else {
            tracing::info!(route, status, latency_us, "request answered");
        }
    });
    Ok(res)
}

/// The route whose answered requests are logged at `debug`, not `info`: single
/// checks, asked before every message sent, tens of thousands a second. A line
/// each would be most of the log (and cost a tenth of the route's throughput,
/// BENCHMARKS.md); they are counted and timed in `/metrics` instead, and their
/// failures (4xx, 5xx) are still logged at `info`. To log every check:
/// `CONSENTGATE_LOG=info,consentgate::http::observe=debug`.
pub const QUIET_ROUTE: &str = "/v1/checks";

/// The routes that answer a decision (`may_contact`). Whatever they answer that is
/// not a decision and not the client's fault is a no (SPEC section 3, fail closed).
const DECISION_ROUTES: &str = "/v1/checks";

fn answers_a_decision<B>(res: &ServiceResponse<B>) -> bool {
    res.request()
        .match_pattern()
        .is_some_and(|route| route.starts_with(DECISION_ROUTES))
}

/// Error responses that did not come from [`ApiError`] (actix's own) become
/// problem documents with the same status. A check that fails on the server side
/// for any reason (a 500 from authentication reading a corrupt row, a bug) answers
/// 503 with `allowed: false`, like a store it cannot reach: a sender must never
/// see a 5xx from a check that is not an explicit no.
pub fn ensure_problem<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let status = res.status();
    if status.is_server_error()
        && status != StatusCode::SERVICE_UNAVAILABLE
        && answers_a_decision(&res)
    {
        let problem = actix_web::ResponseError::error_response(&ApiError::Unavailable(format!(
            "a check failed with status {status}"
        )));
        let (req, _) = res.into_parts();
        return Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(req, problem).map_into_right_body(),
        ));
    }
    // Problem documents, and the HTML error pages of the browser-facing routes
    // (`http::web`), are already what the client should see.
    let is_rendered = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes() == PROBLEM_JSON.as_bytes() || v.as_bytes().starts_with(b"text/html")
    });
    if is_rendered {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let problem = actix_web::ResponseError::error_response(&ApiError::from_status(res.status()));
    let (req, _) = res.into_parts();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, problem).map_into_right_body(),
    ))
}
