//! The pages people and auditors use in a browser (SPEC section 11): the
//! preference center at `/p/{token}` and the auditor console at `/console`.
//!
//! Server-rendered HTML, one small stylesheet served by this binary, no script
//! at all (every action is a plain form), nothing from another origin. Every
//! response of these routes carries a strict Content-Security-Policy
//! (`default-src 'self'`), `X-Frame-Options: DENY`, `Referrer-Policy:
//! no-referrer` (a link's token is in its URL and must never travel in a
//! `Referer`), `nosniff` and `no-store`.
//!
//! Templates are [askama](https://askama.rs): compiled into the binary and
//! type-checked at build time (a template that names a missing field does not
//! compile, so a page cannot fail at run time), HTML-escaped by default, and
//! actively maintained (askama-rs, MIT/Apache-2.0). We pin 0.14, the newest
//! release that builds with our `rust-version`. minijinja would parse templates at
//! run time and maud writes HTML as Rust macros that designers cannot review.
//!
//! Layers: these handlers call the [`Ledger`] (the same methods as the JSON API,
//! so every click is the same facts and audit events) and never the store or
//! diesel. Only route patterns are logged (`/p/{token}`, see `observe`), never a
//! path, a token, an address or a user agent.

pub mod console;
pub mod i18n;
mod pages;
pub mod preferences;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, web};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::crypto::web::CsrfKey;
use crate::domain::evidence::{Details, Evidence};
use crate::domain::language::Language;
use crate::domain::time;

pub use i18n::Texts;

/// The Content-Security-Policy of every page: only this origin, no script, no
/// plugin, no framing, forms post only here.
pub const CSP: &str = "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The stylesheet, served at `/assets/consentgate.css`.
const STYLESHEET: &str = include_str!("consentgate.css");

/// What the pages need besides the ledger (app data).
pub struct WebState {
    csrf: CsrfKey,
    public_url: String,
    secure_cookies: bool,
    /// Form posts per preference link (keyed by the token's hash).
    link_posts: DefaultKeyedRateLimiter<[u8; 32]>,
}

impl WebState {
    /// `public_url` without a trailing slash; posts per minute and link (>= 1).
    pub fn new(csrf: CsrfKey, public_url: String, posts_per_minute: u32) -> WebState {
        let per_minute = std::num::NonZeroU32::new(posts_per_minute.max(1)).expect("at least 1");
        WebState {
            secure_cookies: public_url.starts_with("https://"),
            csrf,
            public_url,
            link_posts: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    /// The public address of the service (no trailing slash).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Whether one more post for this link is allowed now; otherwise how many
    /// seconds until it is.
    fn allow_link_post(&self, token_hash: &[u8; 32]) -> Result<(), u64> {
        // Keys of links that have been quiet for a while are dropped now and then,
        // so a flood of forged tokens cannot grow the map without bound.
        if self.link_posts.len() > 10_000 {
            self.link_posts.retain_recent();
            self.link_posts.shrink_to_fit();
        }
        self.link_posts.check_key(token_hash).map_err(|not_until| {
            use governor::clock::{Clock, DefaultClock};
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1)
        })
    }
}

/// The routes of the pages. Not in the OpenAPI document: they are HTML for
/// people, not the API.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/assets/consentgate.css")
            .wrap(from_fn(security_headers))
            .route(web::get().to(serve_stylesheet)),
    )
    .service(
        web::scope("/p")
            .wrap(from_fn(security_headers))
            .route("/{token}", web::get().to(preferences::show_preferences))
            .route(
                "/{token}/consent",
                web::post().to(preferences::change_consent),
            )
            .route("/{token}/block", web::post().to(preferences::change_block))
            .route(
                "/{token}/export",
                web::post().to(preferences::download_my_data),
            )
            .route(
                "/{token}/erase",
                web::get().to(preferences::confirm_erasure),
            )
            .route("/{token}/erase", web::post().to(preferences::erase_my_data)),
    )
    .service(
        web::scope("/console")
            .wrap(from_fn(security_headers))
            .route("", web::get().to(console::show_events))
            .route("/sign-in", web::post().to(console::sign_in))
            .route("/sign-out", web::post().to(console::sign_out))
            .route("/verify", web::get().to(console::show_verify))
            .route("/verify", web::post().to(console::verify_chain))
            .route("/checkpoints", web::get().to(console::show_checkpoints))
            .route("/export", web::get().to(console::show_export))
            .route("/export", web::post().to(console::download_export)),
    );
}

async fn serve_stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

/// The headers every page, download and the stylesheet carry.
async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}

/// An HTML page with a status.
fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// The language of a request: an explicit choice (the switcher's `?lang=` or a
/// form's hidden `lang`), else `Accept-Language`, else English.
fn language(req: &HttpRequest, explicit: Option<&str>) -> Language {
    explicit
        .and_then(Language::from_code)
        .or_else(|| query_value(req, "lang").and_then(|l| Language::from_code(&l)))
        .or_else(|| {
            req.headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Language::from_accept_language)
        })
        .unwrap_or(Language::En)
}

/// One query parameter (the first of that name).
fn query_value(req: &HttpRequest, name: &str) -> Option<String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A submitted form's fields (first value of each name). Bounded by actix's
/// body limit for `Bytes` (256 KiB).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .take(64)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Now, as unix seconds, for CSRF tokens.
fn unix_now() -> i64 {
    time::now().timestamp()
}

/// The evidence of something a person did on a page: channel `web`, now, the
/// wording's version, the page's public URL without its token, and the
/// browser's address and user agent (sealed with the subject's key, like all
/// evidence; never logged).
fn web_evidence(req: &HttpRequest, state: &WebState, consent_text_version: String) -> Evidence {
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| {
            ua.chars()
                .filter(|c| !c.is_control())
                .take(1000)
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .filter(|ua| !ua.is_empty());
    Evidence {
        collected_at: time::truncate(time::now()),
        consent_text_version: Some(consent_text_version),
        details: Details::Web {
            source_url: Some(format!("{}/p/", state.public_url)),
            form_id: Some("consentgate-preference-center".to_owned()),
            ip: req.peer_addr().map(|addr| addr.ip()),
            user_agent,
        },
    }
}

/// A date and time as pages show them (UTC, to the minute).
fn show_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The value of a cookie of the request.
fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, scoped to `/console`,
/// `Secure` when the service is reached over https.
fn set_cookie(state: &WebState, name: &str, value: &str, max_age_secs: i64) -> String {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path=/console; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn the_language_is_the_choice_then_the_browser_then_english() {
        let req = TestRequest::default()
            .insert_header((header::ACCEPT_LANGUAGE, "nl-NL,nl;q=0.9"))
            .uri("/p/x?lang=it")
            .to_http_request();
        assert_eq!(language(&req, Some("fr")), Language::Fr);
        assert_eq!(language(&req, None), Language::It);
        assert_eq!(language(&req, Some("xx")), Language::It);
        let req = TestRequest::default()
            .insert_header((header::ACCEPT_LANGUAGE, "nl-NL,nl;q=0.9"))
            .to_http_request();
        assert_eq!(language(&req, None), Language::Nl);
        assert_eq!(
            language(&TestRequest::default().to_http_request(), None),
            Language::En
        );
    }

    #[test]
    fn cookies_are_read_by_name_and_set_strict() {
        let req = TestRequest::default()
            .insert_header((header::COOKIE, "a=1; cg_console=abc; b=2"))
            .to_http_request();
        assert_eq!(cookie(&req, "cg_console").as_deref(), Some("abc"));
        assert_eq!(cookie(&req, "nope"), None);
        let state = WebState::new(
            CsrfKey::derive(&crate::crypto::master_key::MasterKey::generate()),
            "https://consent.example".into(),
            10,
        );
        let value = set_cookie(&state, "cg_console", "abc", 3600);
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/console",
            "Max-Age=3600",
        ] {
            assert!(value.contains(part), "{value}");
        }
    }

    #[test]
    fn posts_per_link_are_limited() {
        let state = WebState::new(
            CsrfKey::derive(&crate::crypto::master_key::MasterKey::generate()),
            "http://127.0.0.1:1".into(),
            3,
        );
        let (a, b) = ([1u8; 32], [2u8; 32]);
        for _ in 0..3 {
            assert!(state.allow_link_post(&a).is_ok());
        }
        let wait = state.allow_link_post(&a).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(
            state.allow_link_post(&b).is_ok(),
            "another link has its own budget"
        );
    }
}
