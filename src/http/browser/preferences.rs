//! The preference center: `GET /p/{token}` and the forms on it.
//!
//! Every post is rate-limited per link, then the link is opened (an unknown,
//! forged, revoked or expired token, or one whose subject was erased, gets the
//! same "this link has expired" page with the same status, 410, so the page
//! never tells whether a number is known), then its CSRF token is checked
//! (bound to the link, four hours). The action goes through the [`Ledger`]'s
//! own methods; the answer is the page again, saying what was just done and
//! what happens now.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::i18n::{Texts, fill};
use super::pages::{CategoryRow, ErasePage, Layout, MessagePage, PreferencesPage};
use super::{Form, WebState, html, language, show_time, unix_now, web_evidence};
use crate::crypto::web::secret_hash;
use crate::domain::language::Language;
use crate::ledger::Ledger;
use crate::ledger::preferences::{OpenLink, consent_text_version};
use crate::policy::{AllowedBy, Reason};

const CSRF_PURPOSE: &str = "preference-center";
/// A page left open this long must be reloaded before its forms work.
const CSRF_MAX_AGE_SECS: i64 = 4 * 3600;

/// `GET /p/{token}`: the person's categories, their state now, one control each.
#[tracing::instrument(name = "show_preferences", skip_all)]
pub async fn show_preferences(
    req: HttpRequest,
    token: web::Path<String>,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let language = language(&req, None);
    match open(&ledger, &token, language).await {
        Ok(link) => render(&ledger, &state, &link, &token, language, None).await,
        Err(page) => page,
    }
}

/// `POST /p/{token}/consent` (`category`, `choice` = `in` | `out`): an opt-in or
/// a revocation of one category, channel `web`, with the page's evidence.
#[tracing::instrument(name = "change_consent", skip_all)]
pub async fn change_consent(
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let form = Form::parse(&body);
    let language = language(&req, form.get("lang"));
    let link = match guard(&token, &form, language, &ledger, &state).await {
        Ok(link) => link,
        Err(page) => return page,
    };
    let t = Texts::of(language);
    let category = form
        .get("category")
        .and_then(|name| link.policy.category(name))
        .filter(|c| {
            link.policy
                .rules(c)
                .is_some_and(|r| r.allows(AllowedBy::OptIn))
        });
    let (Some(category), Some(choice)) = (category, form.get("choice")) else {
        return refused_form(language, StatusCode::BAD_REQUEST, &token);
    };
    let evidence = web_evidence(
        &req,
        &state,
        consent_text_version(&link.policy, &category, language),
    );
    let at = show_time(evidence.collected_at);
    let title = t.category_name(category.as_str());
    let values = [
        ("category", title.as_str()),
        ("business", link.business_name.as_str()),
        ("time", at.as_str()),
    ];
    let result = match choice {
        "in" => ledger
            .opt_in_from_link(&link, category, evidence)
            .await
            .map(|_| fill(t.done_opt_in, &values)),
        "out" => ledger
            .opt_out_from_link(&link, category, evidence)
            .await
            .map(|_| fill(t.done_opt_out, &values)),
        _ => return refused_form(language, StatusCode::BAD_REQUEST, &token),
    };
    match result {
        Ok(notice) => render(&ledger, &state, &link, &token, language, Some(notice)).await,
        Err(e) => {
            tracing::warn!(error = %e, "a preference change failed");
            unavailable_page(language, &format!("/p/{}", token.as_str()))
        }
    }
}

/// `POST /p/{token}/block` (`choice` = `stop` | `resume`): "stop all messages"
/// (a block) and its undo (an unblock).
#[tracing::instrument(name = "change_block", skip_all)]
pub async fn change_block(
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let form = Form::parse(&body);
    let language = language(&req, form.get("lang"));
    let link = match guard(&token, &form, language, &ledger, &state).await {
        Ok(link) => link,
        Err(page) => return page,
    };
    let t = Texts::of(language);
    let blocked = match form.get("choice") {
        Some("stop") => true,
        Some("resume") => false,
        _ => return refused_form(language, StatusCode::BAD_REQUEST, &token),
    };
    let version = format!("{}:block", crate::ledger::preferences::PAGE_TEXT_VERSION);
    let evidence = web_evidence(&req, &state, version);
    let at = show_time(evidence.collected_at);
    match ledger.block_from_link(&link, blocked, evidence).await {
        Ok(()) => {
            let values = [
                ("business", link.business_name.as_str()),
                ("time", at.as_str()),
            ];
            let notice = if blocked {
                fill(t.done_block, &values)
            } else {
                fill(t.done_unblock, &values)
            };
            render(&ledger, &state, &link, &token, language, Some(notice)).await
        }
        Err(e) => {
            tracing::warn!(error = %e, "a block from a preference link failed");
            unavailable_page(language, &format!("/p/{}", token.as_str()))
        }
    }
}

/// `POST /p/{token}/export`: "send me my data", the subject export as a JSON
/// download (audited as `subject.exported`).
#[tracing::instrument(name = "download_my_data", skip_all)]
pub async fn download_my_data(
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let form = Form::parse(&body);
    let language = language(&req, form.get("lang"));
    let link = match guard(&token, &form, language, &ledger, &state).await {
        Ok(link) => link,
        Err(page) => return page,
    };
    match ledger.export_from_link(&link).await {
        Ok(export) => match serde_json::to_vec_pretty(&export) {
            Ok(json) => HttpResponse::Ok()
                .content_type("application/json")
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"my-data.json\"",
                ))
                .body(json),
            Err(e) => {
                tracing::error!(error = %e, "an export did not serialise");
                unavailable_page(language, &format!("/p/{}", token.as_str()))
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "an export from a preference link failed");
            unavailable_page(language, &format!("/p/{}", token.as_str()))
        }
    }
}

/// `GET /p/{token}/erase`: what erasure deletes, what stays and why (SPEC
/// section 6), and the confirming form.
#[tracing::instrument(name = "confirm_erasure", skip_all)]
pub async fn confirm_erasure(
    req: HttpRequest,
    token: web::Path<String>,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let language = language(&req, None);
    let link = match open(&ledger, &token, language).await {
        Ok(link) => link,
        Err(page) => return page,
    };
    let t = Texts::of(language);
    let base = format!("/p/{}", token.as_str());
    let page = ErasePage {
        layout: Layout::new(language, t.erase_title, &format!("{base}/erase")),
        business: link.business_name.clone(),
        suppress: link.policy.suppress_on_erasure(),
        after: fill(t.erase_after, &[("business", &link.business_name)]),
        csrf: state
            .csrf
            .token(CSRF_PURPOSE, link.link_id.as_bytes(), unix_now()),
        base,
    };
    rendered(page.render(), language)
}

/// `POST /p/{token}/erase` (`confirm` = `yes`): erasure (GDPR Art. 17). The
/// link dies with the subject; the answer says so.
#[tracing::instrument(name = "erase_my_data", skip_all)]
pub async fn erase_my_data(
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
    ledger: web::Data<Ledger>,
    state: web::Data<WebState>,
) -> HttpResponse {
    let form = Form::parse(&body);
    let language = language(&req, form.get("lang"));
    let link = match guard(&token, &form, language, &ledger, &state).await {
        Ok(link) => link,
        Err(page) => return page,
    };
    if form.get("confirm") != Some("yes") {
        return refused_form(language, StatusCode::BAD_REQUEST, &token);
    }
    let t = Texts::of(language);
    match ledger.erase_from_link(&link).await {
        Ok(receipt) => {
            let at = show_time(receipt.erased_at);
            let page = MessagePage {
                layout: Layout::new(language, t.erased_title, &format!("/p/{}", token.as_str())),
                heading: t.erased_title.to_owned(),
                body: fill(
                    t.erased_body,
                    &[("business", &link.business_name), ("time", &at)],
                ),
                back: None,
            };
            rendered(page.render(), language)
        }
        Err(e) => {
            tracing::warn!(error = %e, "an erasure from a preference link failed");
            unavailable_page(language, &format!("/p/{}", token.as_str()))
        }
    }
}

/// Opens the link, or answers the page a person sees instead.
async fn open(ledger: &Ledger, token: &str, language: Language) -> Result<OpenLink, HttpResponse> {
    match ledger.open_preference_link(token).await {
        Ok(Some(link)) => Ok(link),
        Ok(None) => Err(expired(language, token)),
        Err(e) => {
            tracing::warn!(error = %e, "a preference link could not be opened");
            Err(unavailable_page(language, &format!("/p/{token}")))
        }
    }
}

/// What every post passes first: the link's rate limit, the link, the CSRF token.
async fn guard(
    token: &str,
    form: &Form,
    language: Language,
    ledger: &Ledger,
    state: &WebState,
) -> Result<OpenLink, HttpResponse> {
    if let Err(retry_after) = state.allow_link_post(&secret_hash(token)) {
        let t = Texts::of(language);
        let mut page = message_page(
            language,
            &format!("/p/{token}"),
            t.rate_title,
            t.rate_body,
            None,
            StatusCode::TOO_MANY_REQUESTS,
        );
        page.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after));
        return Err(page);
    }
    let link = open(ledger, token, language).await?;
    let presented = form.get("csrf").unwrap_or_default();
    if !state.csrf.verify(
        presented,
        CSRF_PURPOSE,
        link.link_id.as_bytes(),
        unix_now(),
        CSRF_MAX_AGE_SECS,
    ) {
        return Err(refused_form(language, StatusCode::FORBIDDEN, token));
    }
    Ok(link)
}

/// The preference page, optionally with what was just done.
async fn render(
    ledger: &Ledger,
    state: &WebState,
    link: &OpenLink,
    token: &str,
    language: Language,
    notice: Option<String>,
) -> HttpResponse {
    let t = Texts::of(language);
    let views = match ledger.preference_view(link, language).await {
        Ok(views) => views,
        Err(e) => {
            tracing::warn!(error = %e, "a preference page could not read the state");
            return unavailable_page(language, &format!("/p/{token}"));
        }
    };
    let blocked = views.iter().any(|v| v.reason == Reason::Blocked);
    let mut views = views;
    // The shipped categories in the order people care about; a policy's own after.
    let rank = |name: &str| {
        ["marketing", "utility", "authentication", "service"]
            .iter()
            .position(|n| *n == name)
            .unwrap_or(4)
    };
    views.sort_by(|a, b| {
        (rank(a.category.as_str()), a.category.as_str())
            .cmp(&(rank(b.category.as_str()), b.category.as_str()))
    });
    let categories = views
        .into_iter()
        .map(|v| {
            let consent_on = matches!(v.reason, Reason::Consent | Reason::PendingConfirmation);
            let (can_opt_out, can_opt_in, hint) = if blocked {
                (false, false, t.blocked_no_choice)
            } else if !v.consentable {
                (false, false, t.no_choice_needed)
            } else {
                (consent_on, !consent_on, "")
            };
            CategoryRow {
                name: v.category.as_str().to_owned(),
                title: t.category_name(v.category.as_str()),
                description: v.description,
                on: v.allowed,
                reason: t.reason(v.reason).to_owned(),
                can_opt_out,
                can_opt_in,
                hint: hint.to_owned(),
            }
        })
        .collect();
    let business = [("business", link.business_name.as_str())];
    let base = format!("/p/{token}");
    let page = PreferencesPage {
        layout: Layout::new(language, t.pref_title, &base),
        business: link.business_name.clone(),
        intro: fill(t.pref_intro, &business),
        notice,
        blocked,
        blocked_state: fill(t.blocked_state, &business),
        block_explain: fill(t.block_explain, &business),
        export_explain: fill(t.export_explain, &business),
        erase_explain: fill(t.erase_explain, &business),
        valid_until: fill(t.link_valid_until, &[("date", &show_time(link.expires_at))]),
        categories,
        csrf: state
            .csrf
            .token(CSRF_PURPOSE, link.link_id.as_bytes(), unix_now()),
        base,
    };
    rendered(page.render(), language)
}

fn rendered(result: askama::Result<String>, language: Language) -> HttpResponse {
    match result {
        Ok(body) => html(StatusCode::OK, body),
        Err(e) => {
            tracing::error!(error = %e, "a page did not render");
            unavailable_page(language, "")
        }
    }
}

pub(super) fn message_page(
    language: Language,
    path: &str,
    heading: &str,
    body: &str,
    back: Option<String>,
    status: StatusCode,
) -> HttpResponse {
    let page = MessagePage {
        layout: Layout::new(language, heading, path),
        heading: heading.to_owned(),
        body: body.to_owned(),
        back,
    };
    match page.render() {
        Ok(body) => html(status, body),
        Err(_) => HttpResponse::build(status)
            .content_type("text/plain; charset=utf-8")
            .body(heading.to_owned()),
    }
}

/// The one page for every link that does not open (410, whatever the cause).
fn expired(language: Language, token: &str) -> HttpResponse {
    let t = Texts::of(language);
    message_page(
        language,
        &format!("/p/{token}"),
        t.expired_title,
        t.expired_body,
        None,
        StatusCode::GONE,
    )
}

/// A form that cannot be accepted (no or a stale CSRF token, or fields that no
/// page of ours sends): nothing was changed; reload and try again.
fn refused_form(language: Language, status: StatusCode, token: &str) -> HttpResponse {
    let t = Texts::of(language);
    let path = format!("/p/{token}");
    let back = format!("{path}?lang={}", language.code());
    message_page(
        language,
        &path,
        t.csrf_title,
        t.csrf_body,
        Some(back),
        status,
    )
}

/// The store cannot answer: nothing was changed (fail closed).
pub(super) fn unavailable_page(language: Language, path: &str) -> HttpResponse {
    let t = Texts::of(language);
    let mut page = message_page(
        language,
        path,
        t.unavailable_title,
        t.unavailable_body,
        None,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    page.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    page
}
