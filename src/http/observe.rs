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

use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::HttpMessage;
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
use crate::ledger::projection::Projection;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: &'static str,
}

/// A route pattern as a `&'static str` label: each pattern is kept once, for the
/// life of the process. The set is closed (the route table's patterns and
/// `unmatched`), so this holds a few dozen short strings at most. Each worker
/// thread keeps the labels it has used, so that the shared set's lock word is
/// written once per pattern and thread, not on every request.
fn route_label(pattern: &str) -> &'static str {
    thread_local! {
        static SEEN: std::cell::RefCell<std::collections::HashSet<&'static str>> =
            std::cell::RefCell::default();
    }
    if let Some(label) = SEEN.with(|seen| seen.borrow().get(pattern).copied()) {
        return label;
    }
    let label = shared_route_label(pattern);
    SEEN.with(|seen| seen.borrow_mut().insert(label));
    label
}

/// [`route_label`]'s process-wide set.
fn shared_route_label(pattern: &str) -> &'static str {
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
    projection_installs: Counter,
    projection_catch_ups: Counter,
    channel_items: Family<ChannelLabels, Counter>,
    channel_statuses: Family<StatusLabels, Counter>,
    /// The series of answered single checks, held so the hot path skips the
    /// families' lock and label hashing.
    checks_answered: (Counter, Histogram),
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
        let projection_installs = Counter::default();
        registry.register(
            "projection_batch_installs",
            "Committed write batches installed in this node's projection from the rows they wrote",
            projection_installs.clone(),
        );
        let projection_catch_ups = Counter::default();
        registry.register(
            "projection_catch_ups",
            "Catch-ups of this node's projection that read the database",
            projection_catch_ups.clone(),
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
        let answered = RequestLabels {
            method: "POST",
            route: QUIET_ROUTE,
            status: "2xx",
        };
        let checks_answered = (
            requests.get_or_create(&answered).clone(),
            latency.get_or_create(&answered).clone(),
        );
        Metrics {
            checks_answered,
            registry,
            requests,
            latency,
            projection_subjects,
            projection_bytes,
            projection_installs,
            projection_catch_ups,
            channel_items,
            channel_statuses,
        }
    }
}

impl Metrics {
    fn observe(&self, method: &'static str, route: &'static str, status: u16, seconds: f64) {
        if (200..300).contains(&status) && route == QUIET_ROUTE && method == "POST" {
            self.checks_answered.0.inc();
            self.checks_answered.1.observe(seconds);
            return;
        }
        let labels = RequestLabels {
            method,
            route,
            status: status_class(status),
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// Sets the projection's series from what it counts (read when `/metrics`
    /// is rendered): its footprint, and its two counters (monotonic, so set).
    pub fn set_projection(&self, projection: &Projection) {
        let (subjects, bytes) = projection.footprint();
        self.projection_subjects
            .set(i64::try_from(subjects).unwrap_or(i64::MAX));
        self.projection_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.projection_installs
            .inner()
            .store(projection.installed_from_batches(), Ordering::Relaxed);
        self.projection_catch_ups
            .inner()
            .store(projection.catch_ups(), Ordering::Relaxed);
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
        .unwrap_or_else(|| {
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            crate::domain::hot_v7()
                .hyphenated()
                .encode_lower(&mut text)
                .to_owned()
        })
}

/// The business a request authenticated as, kept on the request for its log line
/// when the request has no span to carry it (a single check, see [`observe`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestBusiness(pub uuid::Uuid);

/// Notes the authenticated business on the request's span, or, when the request
/// has none (a single check logged at `info`), on the request itself.
pub fn note_business(req: &actix_web::HttpRequest, business_id: uuid::Uuid) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        req.extensions_mut().insert(RequestBusiness(business_id));
    } else {
        span.record("business_id", tracing::field::display(business_id));
    }
}

/// The observing middleware (used with `actix_web::middleware::from_fn`).
///
/// Every request runs in a span naming its id, method and business, so every line
/// logged while it is answered names them too. Except a single check
/// ([`QUIET_ROUTE`]): asked before every message sent, its span is at `debug`,
/// like its answered line, because creating an `info` span (the fields are
/// formatted at once) cost about a tenth of the route's instructions
/// (BENCHMARKS.md). Under the default filter a check has no span: its failures
/// still get one `info` line, and a 5xx its cause line, each naming the request
/// id and the business itself. That is why the cause of a 503 or a 500 is logged
/// here, from the error the response carries, rather than where the error is
/// turned into a response (outside any span).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = method_label(req.method());
    let span = if req.path() == QUIET_ROUTE {
        tracing::debug_span!(
            "request",
            request_id = %id,
            method = %method,
            business_id = tracing::field::Empty,
        )
    } else {
        tracing::info_span!(
            "request",
            request_id = %id,
            // Display, not Debug: Debug escapes a `&str` character by character.
            method = %method,
            // Recorded by authentication (`http::auth`) for business endpoints.
            business_id = tracing::field::Empty,
        )
    };
    let mut res = next.call(req).instrument(span.clone()).await?;
    let route = res
        .request()
        .match_pattern()
        .map_or("unmatched", |pattern| route_label(&pattern));
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    let seconds = elapsed.as_secs_f64();
    let quiet = status < 400 && route == QUIET_ROUTE;
    if let Some(metrics) = res.request().app_data::<web::Data<Metrics>>() {
        metrics.observe(method, route, status, seconds);
    }
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    // Without a span, the lines name the request and its business themselves.
    let (request_id, business_id) = if span.is_disabled() {
        let business = res.request().extensions().get::<RequestBusiness>().copied();
        (
            Some(id.as_str()),
            business.map(|b| tracing::field::display(b.0)),
        )
    } else {
        (None, None)
    };
    let cause = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .and_then(ApiError::server_cause);
    span.in_scope(|| {
        match cause {
            Some(cause) if status == 503 => {
                tracing::warn!(request_id, business_id, cause, "answering 503")
            }
            Some(cause) => tracing::error!(request_id, business_id, cause, "answering 500"),
            None => {}
        }
        if quiet {
            tracing::debug!(route = QUIET_ROUTE, status, latency_us, "request answered");
        } else {
            tracing::info!(
                request_id,
                business_id,
                route,
                status,
                latency_us,
                "request answered"
            );
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
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
        let cause = match res.response().error() {
            Some(error) => format!("a check failed with status {status}: {error}"),
            None => format!("a check failed with status {status}"),
        };
        let problem = actix_web::HttpResponse::from_error(ApiError::Unavailable(cause));
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
    let problem = actix_web::HttpResponse::from_error(ApiError::from_status(res.status()));
    let (req, _) = res.into_parts();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, problem).map_into_right_body(),
    ))
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::{ErrorHandlers, from_fn};
    use actix_web::test as actix_test;
    use actix_web::{App, HttpRequest, HttpResponse, web};

    use super::*;
    use crate::telemetry::captured::Captured;

    /// The lines logged, as JSON values.
    fn lines(captured: &Captured) -> Vec<serde_json::Value> {
        captured
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A JSON subscriber at `filter` for this thread, writing into the result.
    fn capture(filter: &str) -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    const BUSINESS: uuid::Uuid = uuid::Uuid::from_u128(0x0123_4567_89ab_7def_8123_4567_89ab_cdef);

    async fn failing_check(req: HttpRequest) -> Result<HttpResponse, ApiError> {
        note_business(&req, BUSINESS);
        Err(ApiError::Unavailable("the store went away".into()))
    }

    async fn answered_check(req: HttpRequest) -> HttpResponse {
        note_business(&req, BUSINESS);
        HttpResponse::Ok().finish()
    }

    async fn failing_other(req: HttpRequest) -> Result<HttpResponse, ApiError> {
        note_business(&req, BUSINESS);
        Err(ApiError::Internal("a bug".into()))
    }

    /// Sends one request with this id through `observe` to an app of the three
    /// handlers, logging at `filter`; returns the lines logged.
    async fn logged(filter: &str, method: &str, path: &str, id: &str) -> Vec<serde_json::Value> {
        let (captured, _guard) = capture(filter);
        let app = actix_test::init_service(
            App::new()
                .wrap(ErrorHandlers::new().default_handler(ensure_problem))
                .wrap(from_fn(observe))
                .route(QUIET_ROUTE, web::post().to(failing_check))
                .route(QUIET_ROUTE, web::get().to(answered_check))
                .route("/v1/opt-ins", web::post().to(failing_other)),
        )
        .await;
        let req = actix_test::TestRequest::default()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .insert_header((REQUEST_ID, id))
            .to_request();
        let res = actix_test::call_service(&app, req).await;
        assert_eq!(res.headers().get(REQUEST_ID).unwrap(), id);
        lines(&captured)
    }

    fn line<'a>(lines: &'a [serde_json::Value], message: &str) -> &'a serde_json::Value {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no line {message:?} in {lines:?}"))
    }

    #[test]
    fn answered_checks_count_in_the_same_series_as_through_the_family() {
        let metrics = Metrics::default();
        metrics.observe("POST", QUIET_ROUTE, 200, 0.0002);
        metrics.observe("POST", QUIET_ROUTE, 200, 0.0002);
        metrics.observe("POST", QUIET_ROUTE, 422, 0.0002);
        metrics.observe("POST", "/v1/checks/batch", 200, 0.0002);
        let text = metrics.render();
        for series in [
            r#"consentgate_http_requests_total{method="POST",route="/v1/checks",status="2xx"} 2"#,
            r#"consentgate_http_requests_total{method="POST",route="/v1/checks",status="4xx"} 1"#,
            r#"consentgate_http_requests_total{method="POST",route="/v1/checks/batch",status="2xx"} 1"#,
            r#"consentgate_http_request_duration_seconds_count{method="POST",route="/v1/checks",status="2xx"} 2"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }

    #[actix_web::test]
    async fn a_failed_check_without_a_span_names_its_request_business_and_cause() {
        let lines = logged("info", "POST", QUIET_ROUTE, "check-1").await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        let cause = line(&lines, "answering 503");
        assert_eq!(cause["level"], "WARN");
        assert_eq!(cause["fields"]["request_id"], "check-1");
        assert_eq!(cause["fields"]["business_id"], BUSINESS.to_string());
        assert_eq!(cause["fields"]["cause"], "the store went away");
        assert!(cause.get("span").is_none(), "no span at info: {cause}");
        let answered = line(&lines, "request answered");
        assert_eq!(answered["level"], "INFO");
        assert_eq!(answered["fields"]["request_id"], "check-1");
        assert_eq!(answered["fields"]["business_id"], BUSINESS.to_string());
        assert_eq!(answered["fields"]["status"], 503);
    }

    #[actix_web::test]
    async fn an_answered_check_logs_nothing_at_info_and_its_span_at_debug() {
        assert_eq!(logged("info", "GET", QUIET_ROUTE, "check-2").await.len(), 0);
        let lines = logged("debug", "GET", QUIET_ROUTE, "check-3").await;
        let answered = line(&lines, "request answered");
        assert_eq!(answered["level"], "DEBUG");
        assert_eq!(answered["span"]["request_id"], "check-3");
        assert_eq!(answered["span"]["business_id"], BUSINESS.to_string());
        assert!(answered["fields"].get("request_id").is_none(), "{answered}");
    }

    #[actix_web::test]
    async fn other_routes_name_request_and_business_on_their_span() {
        let lines = logged("info", "POST", "/v1/opt-ins", "write-1").await;
        let cause = line(&lines, "answering 500");
        assert_eq!(cause["level"], "ERROR");
        assert_eq!(cause["fields"]["cause"], "a bug");
        assert_eq!(cause["span"]["request_id"], "write-1");
        assert_eq!(cause["span"]["business_id"], BUSINESS.to_string());
        let answered = line(&lines, "request answered");
        assert_eq!(answered["span"]["request_id"], "write-1");
        assert!(answered["fields"].get("request_id").is_none(), "{answered}");
    }

    #[actix_web::test]
    async fn a_check_failing_with_a_500_is_logged_as_the_503_it_answers() {
        // The check route answers 503 for any server failure (`ensure_problem`);
        // the original cause is kept on the line.
        async fn broken(req: HttpRequest) -> Result<HttpResponse, ApiError> {
            note_business(&req, BUSINESS);
            Err(ApiError::Internal("a bug in a check".into()))
        }
        let (captured, _guard) = capture("info");
        let app = actix_test::init_service(
            App::new()
                .wrap(ErrorHandlers::new().default_handler(ensure_problem))
                .wrap(from_fn(observe))
                .route(QUIET_ROUTE, web::post().to(broken)),
        )
        .await;
        let req = actix_test::TestRequest::post()
            .uri(QUIET_ROUTE)
            .to_request();
        let res = actix_test::call_service(&app, req).await;
        assert_eq!(res.status(), 503);
        let lines = lines(&captured);
        let cause = line(&lines, "answering 503");
        assert!(
            cause["fields"]["cause"]
                .as_str()
                .unwrap()
                .contains("a bug in a check"),
            "{cause}"
        );
        assert_eq!(cause["fields"]["business_id"], BUSINESS.to_string());
    }
}
