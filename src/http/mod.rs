//! The HTTP API (SPEC section 5): one file per action under `handlers/`, one route
//! table in [`routes`], one error type in [`error`]. Never touches diesel: handlers
//! call the store's methods and `.await` their results.

pub mod auth;
pub mod browser;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod observe;
pub mod openapi;
pub mod responses;
pub mod throttle;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use self::error::ApiError;

/// The route table: every handler, registered with `.service()` so that the
/// OpenAPI document sees it.
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    use handlers::{
        audit, blocks, businesses, channels, checks, inbound_messages, keys, ops, opt_ins,
        preference_links, revocations, subjects, webhooks,
    };
    // The checks first: actix tries routes in this order, and every route with a
    // path parameter it passes on the way costs a regex match (the checks are
    // most of all requests).
    cfg.service(checks::check::check_contact)
        .service(checks::batch::check_contacts_batch)
        .service(checks::stream::check_contacts_stream)
        .service(ops::health::check_health)
        .service(ops::ready::check_ready)
        .service(ops::metrics::render_metrics)
        .service(ops::openapi::serve_openapi)
        .service(businesses::create::create_business)
        .service(keys::create::create_key)
        .service(keys::list::list_keys)
        .service(keys::revoke::revoke_key)
        .service(opt_ins::record::record_opt_in)
        .service(opt_ins::confirm::confirm_opt_in)
        .service(revocations::record::record_revocation)
        .service(blocks::block::record_block)
        .service(blocks::unblock::record_unblock)
        .service(inbound_messages::record::record_inbound_message)
        .service(subjects::export::export_subject)
        .service(subjects::erase::erase_subject)
        .service(audit::events::list_audit_events)
        .service(audit::verify::verify_audit_chain)
        .service(audit::export::export_audit_events)
        .service(audit::checkpoints::list_audit_checkpoints)
        .service(audit::checkpoints::create_audit_checkpoint)
        .service(preference_links::create::create_preference_link)
        .service(preference_links::revoke::revoke_preference_link)
        .service(channels::create::create_channel)
        .service(channels::list::list_channels)
        .service(channels::revoke::revoke_channel)
        .service(webhooks::whatsapp::verify_whatsapp_webhook)
        .service(webhooks::whatsapp::receive_whatsapp_webhook)
        .service(webhooks::twilio::receive_twilio_webhook);
}

/// Which methods each route pattern has, to answer 405 (with `Allow`) rather than
/// 404 for a known path with the wrong method.
pub struct RouteTable {
    routes: Vec<(actix_web::dev::ResourceDef, Vec<Method>)>,
}

impl RouteTable {
    /// Built from the OpenAPI document, so it cannot disagree with the routes.
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> RouteTable {
        let routes = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let mut methods = Vec::new();
                for (op, method) in [
                    (&item.get, Method::GET),
                    (&item.post, Method::POST),
                    (&item.put, Method::PUT),
                    (&item.patch, Method::PATCH),
                    (&item.delete, Method::DELETE),
                ] {
                    if op.is_some() {
                        methods.push(method);
                    }
                }
                (actix_web::dev::ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        RouteTable { routes }
    }

    fn allowed(&self, path: &str) -> Vec<Method> {
        let mut methods: Vec<Method> = self
            .routes
            .iter()
            .filter(|(def, _)| def.is_match(path))
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect();
        methods.dedup();
        methods
    }
}

/// What answers when no route matched: 405 for a known path, else 404.
pub async fn fallback(
    req: HttpRequest,
    table: web::Data<RouteTable>,
) -> Result<HttpResponse, ApiError> {
    let allowed = table.allowed(req.path());
    Err(if allowed.is_empty() {
        ApiError::NotFound
    } else {
        ApiError::MethodNotAllowed(allowed)
    })
}
