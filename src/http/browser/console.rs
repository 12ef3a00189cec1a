//! The auditor console: `/console`.
//!
//! Sign-in takes an API key with `audit:read` once (checked by the same
//! [`Authenticator`] as the API) and answers an HttpOnly, SameSite=Strict cookie
//! holding a random session id that expires after an hour; the key is never kept,
//! in the browser or on the server. Every page re-checks the session and its key
//! (see `ledger::console`). Every form carries a CSRF token: the sign-in form one
//! bound to a pre-session cookie, the others one bound to the session.
//!
//! What the console shows is what the audit API answers: events with the same
//! filters and paging as `GET /v1/audit/events`, the chain's verification in
//! words, the signed checkpoints with their public key, and the NDJSON export.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, NaiveDateTime, Utc};
use uuid::Uuid;

use super::i18n::{Texts, fill};
use super::pages::{
    CheckpointRow, CheckpointsPage, EventRow, EventsPage, ExportPage, FilterValues, Layout,
    SessionHeader, SignInPage, VerifyPage,
};
use super::preferences::{message_page, unavailable_page};
use super::{Form, WebState, cookie, html, language, query_value, set_cookie, show_time, unix_now};
use crate::crypto::web::{new_session_id, secret_hash};
use crate::domain::Scope;
use crate::domain::language::Language;
use crate::http::auth::Authenticator;
use crate::http::error::ApiError;
use crate::ledger::Ledger;
use crate::ledger::console::ConsoleUser;
use crate::store::audit::EventFilter;

const SESSION_COOKIE: &str = "cg_console";
const SIGN_IN_COOKIE: &str = "cg_signin";
const SESSION_TTL_SECS: i64 = 3600;
const CSRF_SESSION: &str = "console";
const CSRF_SIGN_IN: &str = "console-sign-in";
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 1_000;

/// The event types the filter suggests (any type may be typed).
const EVENT_TYPES: &[&str] = &[
    "business.created",
    "key.created",
    "key.revoked",
    "opt_in.recorded",
    "opt_in.confirmed",
    "consent.revoked",
    "subject.blocked",
    "subject.unblocked",
    "window.opened",
    "subject.exported",
    "subject.erased",
    "retention.purge",
    "preference_link.created",
    "preference_link.revoked",
    "channel.created",
    "channel.revoked",
];

/// A signed-in request: who, and the session id (for its CSRF binding).
struct Session {
    user: ConsoleUser,
    id: String,
}

impl Session {
    fn csrf(&self, state: &WebState) -> String {
        state
            .csrf
            .token(CSRF_SESSION, &secret_hash(&self.id), unix_now())
    }

    fn header(&self, state: &WebState, t: &Texts) -> SessionHeader {
        SessionHeader {
            signed_in_as: fill(
                t.signed_in_as,
                &[
                    ("business", &self.user.business_name),
                    ("time", &show_time(self.user.expires_at)),
                ],
            ),
            csrf: self.csrf(state),
        }
    }

    fn check_csrf(&self, state: &WebState, form: &Form) -> bool {
        state.csrf.verify(
            form.get("csrf").unwrap_or_default(),
            CSRF_SESSION,
            &secret_hash(&self.id),
            unix_now(),
            SESSION_TTL_SECS,
        )
    }
}

/// The session of the request, if it has a valid one. `Err` is the page to
/// answer when the store cannot tell.
async fn session(
    req: &HttpRequest,
    ledger: &Ledger,
    language: Language,
) -> Result<Option<Session>, HttpResponse> {
    let Some(id) = cookie(req, SESSION_COOKIE).filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    match ledger.console_user(&id).await {
        Ok(user) => Ok(user.map(|user| Session { user, id })),
        Err(e) => {
            tracing::warn!(error = %e, "a console session could not be read");
            Err(unavailable_page(language, "/console"))
        }
    }
}

/// `GET /console`: the events (signed in) or the sign-in form.
#[tracing::instrument(name = "show_console_events", skip_all)]
pub async fn show_events(
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let language = language(&req, None);
    let session = match session(&req, &ledger, language).await {
        Ok(Some(session)) => session,
        Ok(None) => return sign_in_page(&req, &state, language, None, None, StatusCode::OK),
        Err(page) => return page,
    };
    let t = Texts::of(language);
    let values = FilterValues {
        event_type: query_value(&req, "type").unwrap_or_default(),
        subject_id: query_value(&req, "subject_id").unwrap_or_default(),
        from: query_value(&req, "from").unwrap_or_default(),
        to: query_value(&req, "to").unwrap_or_default(),
        after: query_value(&req, "after").unwrap_or_default(),
        limit: query_value(&req, "limit").unwrap_or_default(),
    };
    let (filter, errors) = parse_filters(&values, t);
    let mut page = EventsPage {
        layout: Layout::console(language, t.events_heading, "/console"),
        session: Some(session.header(&state, t)),
        section: "events",
        filters: values,
        errors,
        event_types: EVENT_TYPES,
        events: Vec::new(),
        next_href: None,
        first_href: None,
    };
    if let (Some(filter), true) = (filter, page.errors.is_empty()) {
        let limit = filter.limit;
        let after = filter.after;
        let query = EventFilter {
            limit: limit + 1,
            ..filter
        };
        let mut events = match ledger.audit_events(session.user.business_id, query).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "console events could not be read");
                return unavailable_page(language, "/console");
            }
        };
        let more = events.len() as i64 > limit;
        events.truncate(limit as usize);
        if more {
            page.next_href = events
                .last()
                .map(|e| page_href(&page.filters, language, e.seq));
        }
        if after > 0 {
            page.first_href = Some(page_href(&page.filters, language, 0));
        }
        page.events = events
            .into_iter()
            .map(|e| EventRow {
                seq: e.seq,
                at: e.at,
                event_type: e.event_type,
                actor: e.actor,
                subject_id: e.subject_id.map(|s| s.to_string()).unwrap_or_default(),
                data: serde_json::to_string(&e.data).unwrap_or_default(),
            })
            .collect();
    }
    let status = if page.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    rendered(page.render(), status, language)
}

/// `POST /console/sign-in` (`key`): checks the key once and opens a session.
#[tracing::instrument(name = "console_sign_in", skip_all)]
pub async fn sign_in(
    req: HttpRequest,
    body: web::Bytes,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
    authenticator: web::Data<Authenticator>,
) -> HttpResponse {
    let form = Form::parse(&body);
    let language = language(&req, form.get("lang"));
    let t = Texts::of(language);
    let nonce = cookie(&req, SIGN_IN_COOKIE).unwrap_or_default();
    let csrf_ok = !nonce.is_empty()
        && state.csrf.verify(
            form.get("csrf").unwrap_or_default(),
            CSRF_SIGN_IN,
            nonce.as_bytes(),
            unix_now(),
            SESSION_TTL_SECS,
        );
    if !csrf_ok {
        return refused_form(language);
    }
    let key = form.get("key").unwrap_or_default().trim();
    let principal = match authenticator.authenticate(key).await {
        Ok(principal) => principal,
        Err(ApiError::Unauthorized) => {
            return sign_in_page(
                &req,
                &state,
                language,
                None,
                Some(t.bad_key),
                StatusCode::UNAUTHORIZED,
            );
        }
        Err(ApiError::RateLimited { retry_after_secs }) => {
            let mut page = message_page(
                language,
                "/console",
                t.rate_title,
                t.rate_body,
                None,
                StatusCode::TOO_MANY_REQUESTS,
            );
            page.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_secs),
            );
            return page;
        }
        Err(e) => {
            tracing::warn!(error = %e, "a console sign-in could not be checked");
            return unavailable_page(language, "/console");
        }
    };
    if !principal.scopes.contains(Scope::AuditRead) {
        return sign_in_page(
            &req,
            &state,
            language,
            None,
            Some(t.no_scope),
            StatusCode::FORBIDDEN,
        );
    }
    let session = match ledger
        .open_console_session(
            principal.business_id,
            principal.key_id,
            chrono::Duration::seconds(SESSION_TTL_SECS),
        )
        .await
    {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(error = %e, "a console session could not be opened");
            return unavailable_page(language, "/console");
        }
    };
    tracing::info!(key_id = %principal.key_id, "console sign-in");
    HttpResponse::SeeOther()
        .insert_header((
            header::LOCATION,
            format!("/console?lang={}", language.code()),
        ))
        .append_header((
            header::SET_COOKIE,
            set_cookie(&state, SESSION_COOKIE, &session.id, SESSION_TTL_SECS),
        ))
        .append_header((
            header::SET_COOKIE,
            set_cookie(&state, SIGN_IN_COOKIE, "", 0),
        ))
        .finish()
}

/// `POST /console/sign-out`: ends the session here and in the browser.
#[tracing::instrument(name = "console_sign_out", skip_all)]
pub async fn sign_out(
    req: HttpRequest,
    body: web::Bytes,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let form = Form::parse(&body);
    let language = language(&req, form.get("lang"));
    let session = match session(&req, &ledger, language).await {
        Ok(Some(session)) => session,
        Ok(None) => return sign_in_page(&req, &state, language, None, None, StatusCode::OK),
        Err(page) => return page,
    };
    if !session.check_csrf(&state, &form) {
        return refused_form(language);
    }
    if let Err(e) = ledger.close_console_session(&session.id).await {
        tracing::warn!(error = %e, "a console session could not be closed");
        return unavailable_page(language, "/console");
    }
    let t = Texts::of(language);
    let mut page = sign_in_page(
        &req,
        &state,
        language,
        Some(t.signed_out),
        None,
        StatusCode::OK,
    );
    page.headers_mut().append(
        header::SET_COOKIE,
        header::HeaderValue::from_str(&set_cookie(&state, SESSION_COOKIE, "", 0))
            .expect("a cookie is a valid header"),
    );
    page
}

/// `GET /console/verify`: the button.
#[tracing::instrument(name = "show_console_verify", skip_all)]
pub async fn show_verify(
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let language = language(&req, None);
    let session = match signed_in(&req, &ledger, &state, language).await {
        Ok(session) => session,
        Err(page) => return page,
    };
    let t = Texts::of(language);
    let page = VerifyPage {
        layout: Layout::console(language, t.verify_heading, "/console/verify"),
        session: Some(session.header(&state, t)),
        section: "verify",
        result: None,
        valid: true,
        csrf: session.csrf(&state),
    };
    rendered(page.render(), StatusCode::OK, language)
}

/// `POST /console/verify`: recomputes the chain; the result in words.
#[tracing::instrument(name = "console_verify_chain", skip_all)]
pub async fn verify_chain(
    req: HttpRequest,
    body: web::Bytes,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let form = Form::parse(&body);
    let language = language(&req, form.get("lang"));
    let session = match signed_in(&req, &ledger, &state, language).await {
        Ok(session) => session,
        Err(page) => return page,
    };
    if !session.check_csrf(&state, &form) {
        return refused_form(language);
    }
    let t = Texts::of(language);
    let report = match ledger.verify_chain(session.user.business_id).await {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(error = %e, "a console verification could not run");
            return unavailable_page(language, "/console/verify");
        }
    };
    let mut lines = Vec::new();
    match (&report.head, report.first_invalid_seq) {
        (_, Some(seq)) => lines.push(fill(
            t.verify_broken,
            &[
                ("seq", &seq.to_string()),
                ("checked", &report.checked.to_string()),
            ],
        )),
        (None, None) => lines.push(t.verify_empty.to_owned()),
        (Some((seq, hash)), None) => lines.push(fill(
            t.verify_ok,
            &[
                ("checked", &report.checked.to_string()),
                ("seq", &seq.to_string()),
                ("hash", hash),
                ("checkpoints", &report.checkpoints_checked.to_string()),
            ],
        )),
    }
    if !report.invalid_checkpoints.is_empty() {
        let list: Vec<String> = report
            .invalid_checkpoints
            .iter()
            .map(|s| format!("#{s}"))
            .collect();
        lines.push(fill(
            t.verify_bad_checkpoints,
            &[("list", &list.join(", "))],
        ));
    }
    let page = VerifyPage {
        layout: Layout::console(language, t.verify_heading, "/console/verify"),
        session: Some(session.header(&state, t)),
        section: "verify",
        result: Some(lines),
        valid: report.valid,
        csrf: session.csrf(&state),
    };
    rendered(page.render(), StatusCode::OK, language)
}

/// `GET /console/checkpoints`: the signed checkpoints and the key to check them.
#[tracing::instrument(name = "show_console_checkpoints", skip_all)]
pub async fn show_checkpoints(
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    use base64::Engine;
    let language = language(&req, None);
    let session = match signed_in(&req, &ledger, &state, language).await {
        Ok(session) => session,
        Err(page) => return page,
    };
    let t = Texts::of(language);
    let (checkpoints, key) = match (
        ledger.checkpoints(session.user.business_id).await,
        ledger.checkpoint_public_key(),
    ) {
        (Ok(checkpoints), Some(key)) => (checkpoints, key),
        (Err(e), _) => {
            tracing::warn!(error = %e, "console checkpoints could not be read");
            return unavailable_page(language, "/console/checkpoints");
        }
        (Ok(_), None) => {
            tracing::error!("no checkpoint signing key");
            return unavailable_page(language, "/console/checkpoints");
        }
    };
    let page = CheckpointsPage {
        layout: Layout::console(language, t.checkpoints_heading, "/console/checkpoints"),
        session: Some(session.header(&state, t)),
        section: "checkpoints",
        algorithm: "Ed25519",
        key_id: key.key_id(),
        public_key_pem: key.to_pem(),
        checkpoints: checkpoints
            .into_iter()
            .map(|c| CheckpointRow {
                seq: c.seq,
                at: crate::crypto::chain::format_at(c.at),
                hash: hex::encode(&c.hash),
                signature: base64::engine::general_purpose::STANDARD.encode(&c.signature),
            })
            .collect(),
    };
    rendered(page.render(), StatusCode::OK, language)
}

/// `GET /console/export`: the download form.
#[tracing::instrument(name = "show_console_export", skip_all)]
pub async fn show_export(
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let language = language(&req, None);
    let session = match signed_in(&req, &ledger, &state, language).await {
        Ok(session) => session,
        Err(page) => return page,
    };
    export_page(
        &session,
        &state,
        language,
        Vec::new(),
        String::new(),
        String::new(),
    )
}

/// `POST /console/export` (`from`, `to`): the NDJSON download.
#[tracing::instrument(name = "console_download_export", skip_all)]
pub async fn download_export(
    req: HttpRequest,
    body: web::Bytes,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let form = Form::parse(&body);
    let language = language(&req, form.get("lang"));
    let session = match signed_in(&req, &ledger, &state, language).await {
        Ok(session) => session,
        Err(page) => return page,
    };
    if !session.check_csrf(&state, &form) {
        return refused_form(language);
    }
    let t = Texts::of(language);
    let from_text = form.get("from").unwrap_or_default().to_owned();
    let to_text = form.get("to").unwrap_or_default().to_owned();
    let mut errors = Vec::new();
    let from = parse_instant(&from_text, "from", t.filter_from, &mut errors);
    let to = parse_instant(&to_text, "to", t.filter_to, &mut errors);
    if let (Some(f), Some(t2)) = (from, to)
        && f > t2
    {
        errors.push(("to", t.filter_to.to_owned()));
    }
    if !errors.is_empty() {
        let mut page = export_page(&session, &state, language, errors, from_text, to_text);
        *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return page;
    }
    let stream = crate::http::handlers::audit::export::ndjson_stream(
        ledger.into_inner(),
        session.user.business_id,
        from,
        to,
    );
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"audit-events.ndjson\"",
        ))
        .streaming(stream)
}

fn export_page(
    session: &Session,
    state: &WebState,
    language: Language,
    errors: Vec<(&'static str, String)>,
    from: String,
    to: String,
) -> HttpResponse {
    let t = Texts::of(language);
    let page = ExportPage {
        layout: Layout::console(language, t.export_heading, "/console/export"),
        session: Some(session.header(state, t)),
        section: "export",
        errors,
        from,
        to,
        csrf: session.csrf(state),
    };
    rendered(page.render(), StatusCode::OK, language)
}

/// The session, or the page to answer without one (sign in again).
async fn signed_in(
    req: &HttpRequest,
    ledger: &Ledger,
    state: &WebState,
    language: Language,
) -> Result<Session, HttpResponse> {
    match session(req, ledger, language).await? {
        Some(session) => Ok(session),
        None => {
            let t = Texts::of(language);
            let notice = cookie(req, SESSION_COOKIE)
                .filter(|c| !c.is_empty())
                .map(|_| t.session_ended);
            Err(sign_in_page(
                req,
                state,
                language,
                notice,
                None,
                StatusCode::UNAUTHORIZED,
            ))
        }
    }
}

/// The sign-in form, with a pre-session cookie its CSRF token is bound to.
fn sign_in_page(
    req: &HttpRequest,
    state: &WebState,
    language: Language,
    notice: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let t = Texts::of(language);
    let (nonce, fresh) = match cookie(req, SIGN_IN_COOKIE).filter(|n| n.len() == 43) {
        Some(nonce) => (nonce, false),
        None => (new_session_id().0, true),
    };
    let page = SignInPage {
        layout: Layout::console(language, t.console_title, "/console"),
        session: None,
        section: "sign-in",
        notice: notice.map(str::to_owned),
        error: error.map(str::to_owned),
        csrf: state.csrf.token(CSRF_SIGN_IN, nonce.as_bytes(), unix_now()),
    };
    let mut response = rendered(page.render(), status, language);
    if fresh {
        response.headers_mut().append(
            header::SET_COOKIE,
            header::HeaderValue::from_str(&set_cookie(
                state,
                SIGN_IN_COOKIE,
                &nonce,
                SESSION_TTL_SECS,
            ))
            .expect("a cookie is a valid header"),
        );
    }
    response
}

/// A console form without a valid CSRF token: refused, nothing done.
fn refused_form(language: Language) -> HttpResponse {
    let t = Texts::of(language);
    message_page(
        language,
        "/console",
        t.csrf_title,
        t.csrf_body,
        Some(format!("/console?lang={}", language.code())),
        StatusCode::FORBIDDEN,
    )
}

fn rendered(
    result: askama::Result<String>,
    status: StatusCode,
    language: Language,
) -> HttpResponse {
    match result {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "a console page did not render");
            unavailable_page(language, "/console")
        }
    }
}

/// The filters as `GET /v1/audit/events` takes them; problems as
/// `(input id, label)`.
fn parse_filters(
    values: &FilterValues,
    t: &Texts,
) -> (Option<EventFilter>, Vec<(&'static str, String)>) {
    let mut errors = Vec::new();
    let event_type = Some(values.event_type.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if event_type.as_ref().is_some_and(|s| s.chars().count() > 100) {
        errors.push(("type", t.filter_type.to_owned()));
    }
    let subject_id = match values.subject_id.trim() {
        "" => None,
        text => match Uuid::try_parse(text) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(("subject_id", t.filter_subject.to_owned()));
                None
            }
        },
    };
    let from = parse_instant(&values.from, "from", t.filter_from, &mut errors);
    let to = parse_instant(&values.to, "to", t.filter_to, &mut errors);
    if let (Some(f), Some(t2)) = (from, to)
        && f > t2
    {
        errors.push(("to", t.filter_to.to_owned()));
    }
    let after = match values.after.trim() {
        "" => 0,
        text => match text.parse::<i64>() {
            Ok(n) if n >= 0 => n,
            _ => {
                errors.push(("after", t.filter_after.to_owned()));
                0
            }
        },
    };
    let limit = match values.limit.trim() {
        "" => DEFAULT_PAGE,
        text => match text.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                errors.push(("limit", t.filter_limit.to_owned()));
                DEFAULT_PAGE
            }
        },
    };
    let filter = EventFilter {
        after,
        limit,
        event_type,
        subject_id,
        from,
        to,
    };
    (Some(filter), errors)
}

/// An instant as typed: RFC 3339, or a date and time without offset (as a
/// `datetime-local` field sends it) taken as UTC.
fn parse_instant(
    text: &str,
    id: &'static str,
    label: &str,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            [
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M",
                "%Y-%m-%d %H:%M:%S",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .map(|naive| naive.and_utc())
        })
        .map(crate::domain::time::truncate);
    if parsed.is_none() {
        errors.push((id, label.to_owned()));
    }
    parsed
}

/// The events page with the same filters, from `after`.
fn page_href(values: &FilterValues, language: Language, after: i64) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("lang", language.code());
    for (name, value) in [
        ("type", &values.event_type),
        ("subject_id", &values.subject_id),
        ("from", &values.from),
        ("to", &values.to),
        ("limit", &values.limit),
    ] {
        if !value.trim().is_empty() {
            query.append_pair(name, value.trim());
        }
    }
    if after > 0 {
        query.append_pair("after", &after.to_string());
    }
    format!("/console?{}", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_like_the_api_and_name_what_is_wrong() {
        let t = Texts::of(Language::En);
        let values = FilterValues {
            event_type: " consent.revoked ".into(),
            subject_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            from: "2026-12-01T09:30".into(),
            to: "2026-12-02T00:00:00Z".into(),
            after: "7".into(),
            limit: "".into(),
        };
        let (filter, errors) = parse_filters(&values, t);
        assert!(errors.is_empty(), "{errors:?}");
        let filter = filter.unwrap();
        assert_eq!(filter.event_type.as_deref(), Some("consent.revoked"));
        assert_eq!((filter.after, filter.limit), (7, DEFAULT_PAGE));
        assert_eq!(
            filter.from.unwrap().to_rfc3339(),
            "2026-12-01T09:30:00+00:00",
            "a time without offset is UTC"
        );
        let bad = FilterValues {
            subject_id: "not-a-uuid".into(),
            from: "yesterday".into(),
            after: "-1".into(),
            limit: "5000".into(),
            ..FilterValues::default()
        };
        let (_, errors) = parse_filters(&bad, t);
        let ids: Vec<&str> = errors.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, ["subject_id", "from", "after", "limit"]);
    }

    #[test]
    fn paging_links_keep_the_filters() {
        let values = FilterValues {
            event_type: "opt_in.recorded".into(),
            limit: "10".into(),
            ..FilterValues::default()
        };
        assert_eq!(
            page_href(&values, Language::De, 20),
            "/console?lang=de&type=opt_in.recorded&limit=10&after=20"
        );
    }
}
