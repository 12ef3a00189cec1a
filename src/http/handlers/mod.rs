//! One module per resource, one file per action.

pub mod audit;
pub mod blocks;
pub mod businesses;
pub mod channels;
pub mod checks;
pub mod inbound_messages;
pub mod keys;
pub mod ops;
pub mod opt_ins;
pub mod preference_links;
pub mod revocations;
pub mod subjects;
pub mod webhooks;
pub mod withdrawal;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::auth::Principal;
use super::error::{ApiError, FieldError};
use super::extract::IdempotencyKey;
use crate::domain::evidence::{FieldProblem, Limits};
use crate::domain::phone::{Phone, PhoneError};
use crate::ledger::{Asker, Caller, Ledger};
use crate::policy::{Category, Policy};
use crate::store::{IdempotencyRequest, Written};

/// The caller of a ledger operation. A business whose policy is not loaded cannot
/// be answered (fail closed): 503.
pub(crate) fn caller(principal: &Principal, ledger: &Ledger) -> Result<Caller, ApiError> {
    let asker = asker(principal, ledger)?;
    Ok(Caller {
        business_id: asker.business_id,
        actor: principal.actor(),
        policy: asker.policy.clone(),
        fenced: asker.fenced,
    })
}

/// What a check needs of the caller, with the policy borrowed (the single check:
/// no reference count written per request). Fails closed like [`caller`].
pub(crate) fn asker<'a>(principal: &Principal, ledger: &'a Ledger) -> Result<Asker<'a>, ApiError> {
    let policy = ledger.policy_ref(&principal.policy).ok_or_else(|| {
        ApiError::Unavailable(format!("policy {} is not loaded", principal.policy))
    })?;
    Ok(Asker {
        business_id: principal.business_id,
        policy,
        // Authentication fenced the key's business.
        fenced: true,
    })
}

/// Parses a phone number, recording the problem against the right field.
pub(crate) fn parse_phone(
    field: &str,
    phone: &str,
    default_region: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<Phone> {
    match Phone::parse(phone, default_region) {
        Ok(phone) => Some(phone),
        Err(e @ (PhoneError::MalformedRegion | PhoneError::UnknownRegion)) => {
            errors.push(FieldError::new("default_region", e.to_string()));
            None
        }
        Err(e) => {
            errors.push(FieldError::new(field, e.to_string()));
            None
        }
    }
}

/// Categories of the business's policy; unknown names and an empty list are errors.
pub(crate) fn parse_categories(
    policy: &Policy,
    field: &str,
    names: &[String],
    errors: &mut Vec<FieldError>,
) -> Option<Vec<Category>> {
    if names.is_empty() {
        errors.push(FieldError::new(field, "must name at least one category"));
        return None;
    }
    let mut categories: Vec<Category> = Vec::with_capacity(names.len());
    let mut ok = true;
    for (i, name) in names.iter().enumerate() {
        match policy.category(name) {
            Some(c) => {
                if !categories.contains(&c) {
                    categories.push(c);
                }
            }
            None => {
                ok = false;
                errors.push(FieldError::new(
                    format!("{field}[{i}]"),
                    unknown_category(policy),
                ));
            }
        }
    }
    ok.then_some(categories)
}

pub(crate) fn unknown_category(policy: &Policy) -> String {
    let names: Vec<String> = policy.categories().map(|c| c.as_str().to_owned()).collect();
    format!(
        "is not a category of policy {}; known: {}",
        policy.name(),
        names.join(", ")
    )
}

/// What evidence timestamps are checked against: this node's clock, and the
/// policy's clock skew.
pub(crate) fn evidence_limits(ledger: &Ledger, policy: &Policy) -> Limits {
    Limits {
        now: ledger.clock().now(),
        clock_skew: policy.clock_skew(),
    }
}

/// An optional free-text reference (trimmed, bounded, no control characters);
/// a bad one is recorded against `field`.
pub(crate) fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match value.map(|v| display_name(field, v, max)).transpose() {
        Ok(text) => text,
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

pub(crate) fn evidence_errors(problems: Vec<FieldProblem>) -> impl Iterator<Item = FieldError> {
    problems
        .into_iter()
        .map(|p| FieldError::new(p.field, p.message))
}

/// The Idempotency-Key of a write with a keyed digest of the request.
pub(crate) fn idempotency(
    req: &HttpRequest,
    key: IdempotencyKey,
    ledger: &Ledger,
    caller: &Caller,
    body: &[u8],
    status: StatusCode,
) -> Option<IdempotencyRequest> {
    let key = key.0?;
    // The path itself, not the route pattern: the same key and body sent to
    // another opt-in's /confirm is a different request. (Paths hold only ids.)
    let request_hash = ledger.keys().fingerprint_key(caller.business_id).digest(&[
        req.method().as_str().as_bytes(),
        req.path().as_bytes(),
        body,
    ]);
    Some(IdempotencyRequest {
        key,
        request_hash,
        status: status.as_u16(),
    })
}

/// The response of a write: fresh, or the stored first response of a retry
/// (marked with `Idempotency-Replayed: true`).
pub(crate) fn written<T: Serialize>(written: Written<T>, status: StatusCode) -> HttpResponse {
    match written {
        Written::Fresh(value) => HttpResponse::build(status).json(value),
        Written::Replayed(first) => {
            HttpResponse::build(StatusCode::from_u16(first.status).unwrap_or(status))
                .content_type("application/json")
                .insert_header(("idempotency-replayed", "true"))
                .body(first.body)
        }
    }
}

/// A trimmed display name of 1..=`max` characters with no control characters.
pub(crate) fn display_name(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(display_name("name", "  Acme  ", 10).unwrap(), "Acme");
        assert!(display_name("name", "   ", 10).is_err());
        assert!(display_name("name", "abcdefghijk", 10).is_err());
        assert!(display_name("name", "a\u{0}b", 10).is_err());
        assert_eq!(
            display_name("name", "Café", 4).unwrap(),
            "Café",
            "counts characters, not bytes"
        );
    }
}
