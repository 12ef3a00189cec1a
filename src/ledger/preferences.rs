//! The preference center (SPEC section 11): links a business hands to a person,
//! and what that person does on the page behind it.
//!
//! A link is an opaque token (see `crypto::web`) bound to one business, one
//! subject and an expiry; only its hash is stored. Creating one opens (or
//! creates) the subject, so the link never needs to carry the number; revoking
//! one, and each creation, is an audit event. Erasing the subject deletes its
//! links in the erasure's own transaction (the table's ON DELETE CASCADE).
//!
//! What the person does on the page goes through the very same ledger methods
//! as the JSON API (`record_opt_in`, `record_revocation`, `record_block`,
//! `export_subject`, `erase_subject`), as the actor `link:<id>`, so every click
//! becomes the same facts and audit events, with web evidence.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use super::check::CheckUnavailable;
use super::record::{ConfirmOptIn, OptInStatus, RecordBlock, RecordOptIn, RecordRevocation};
use super::subjects::{ErasureReceipt, SubjectExport};
use super::{Caller, Ledger, open_or_create_subject};
use crate::audit::{EventType, NewEvent};
use crate::crypto::envelope::{Aad, DataKey};
use crate::crypto::web::{is_link_token, new_link_token, secret_hash};
use crate::domain::evidence::{Channel, Evidence, Withdrawal};
use crate::domain::language::Language;
use crate::domain::phone::Phone;
use crate::domain::{Actor, time};
use crate::policy::{AllowedBy, Category, Policy, Reason};
use crate::store::ledger as rows;
use crate::store::web::{self as links, PreferenceLink};
use crate::store::{StoreError, Written};

/// How long a link lives unless the business asks otherwise.
pub const DEFAULT_LINK_TTL: Duration = Duration::days(7);
/// The longest a link may live: a forwarded or leaked link must die on its own.
pub const MAX_LINK_TTL: Duration = Duration::days(30);
/// The shortest, so that a link can at least be opened.
pub const MIN_LINK_TTL: Duration = Duration::minutes(5);
/// How long expired links are kept before they are deleted (they open nothing).
const EXPIRED_LINK_KEPT: Duration = Duration::days(30);
/// The version of the preference center's own wording around the policy's texts;
/// bump it when the page's consent wording changes.
pub const PAGE_TEXT_VERSION: &str = "pc1";

/// A link just created. `token` is the secret: it is shown once, in the URL
/// handed to the person, and never stored.
pub struct NewPreferenceLink {
    pub id: Uuid,
    pub subject_id: Uuid,
    pub token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewPreferenceLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPreferenceLink")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A valid link, opened: who it is for and under which rules.
#[derive(Debug, Clone)]
pub struct OpenLink {
    pub link_id: Uuid,
    pub business_id: Uuid,
    pub business_name: String,
    pub policy: Arc<Policy>,
    pub subject_id: Uuid,
    /// Opened from the subject's sealed number; never shown on the page.
    pub phone: Phone,
    pub expires_at: DateTime<Utc>,
}

impl OpenLink {
    /// The person acts through their link.
    pub fn caller(&self) -> Caller {
        Caller {
            business_id: self.business_id,
            actor: Actor::PreferenceLink(self.link_id),
            policy: self.policy.clone(),
            fenced: false,
        }
    }
}

/// One category as the page shows it.
#[derive(Debug, Clone)]
pub struct CategoryView {
    pub category: Category,
    /// Whether a person's yes can allow it (the policy lists `opt_in` for it).
    pub consentable: bool,
    /// The answer a check would give now.
    pub allowed: bool,
    pub reason: Reason,
    pub description: String,
}

/// The exact wording a person saw when saying yes on the page: the policy's
/// exact version (its content hash covers the category descriptions), the
/// category, the language and the page's own text version. At most 100
/// characters, as evidence requires.
pub fn consent_text_version(policy: &Policy, category: &Category, language: Language) -> String {
    let full = format!(
        "{PAGE_TEXT_VERSION}:{}@{}#{}.{}",
        policy.name(),
        policy.versioned(),
        category.as_str(),
        language.code()
    );
    if full.chars().count() <= 100 {
        full
    } else {
        // A long policy or category name: a digest still pins the wording.
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(full.as_bytes()));
        format!("{PAGE_TEXT_VERSION}:sha256:{digest}")
    }
}

impl Ledger {
    /// `POST /v1/preference-links`: a link for `phone`, valid for `ttl`.
    pub async fn create_preference_link(
        &self,
        caller: &Caller,
        phone: Phone,
        ttl: Duration,
    ) -> Result<NewPreferenceLink, StoreError> {
        let business_id = caller.business_id;
        let pseudonym = self.keys.pseudonym_key(business_id).pseudonym(&phone);
        let keys = self.keys.clone();
        let (token, token_hash) = new_link_token();
        self.writer
            .write_unbatched(business_id, caller.actor, move |conn, now| {
                let subject =
                    open_or_create_subject(conn, &keys, business_id, &phone, &pseudonym, now)?;
                links::purge_links_expired_before(conn, business_id, now - EXPIRED_LINK_KEPT)?;
                let link = PreferenceLink {
                    id: Uuid::now_v7(),
                    business_id,
                    subject_id: subject.id,
                    created_at: now,
                    expires_at: time::truncate(now + ttl),
                    revoked_at: None,
                };
                links::insert_link(conn, &link, &token_hash)?;
                let event = NewEvent::about(
                    EventType::PreferenceLinkCreated,
                    subject.id,
                    json!({
                        "link_id": link.id,
                        "expires_at": link.expires_at,
                        "ttl_minutes": ttl.num_minutes(),
                    }),
                );
                let created = NewPreferenceLink {
                    id: link.id,
                    subject_id: subject.id,
                    token,
                    created_at: link.created_at,
                    expires_at: link.expires_at,
                };
                Ok((created, vec![event]))
            })
            .await
    }

    /// `DELETE /v1/preference-links/{id}`: the link stops working at once.
    /// Revoking a revoked link changes nothing and records nothing. `NotFound`
    /// for an id of another business, or of a subject since erased.
    pub async fn revoke_preference_link(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<(), StoreError> {
        let business_id = caller.business_id;
        let result = self
            .writer
            .write_unbatched(business_id, caller.actor, move |conn, now| {
                let link = links::link(conn, business_id, id)?;
                if link.revoked_at.is_some() {
                    return Err(StoreError::Conflict("already_revoked"));
                }
                links::revoke_link(conn, business_id, id, now)?;
                let event = NewEvent::about(
                    EventType::PreferenceLinkRevoked,
                    link.subject_id,
                    json!({"link_id": id, "revoked_at": now}),
                );
                Ok(((), vec![event]))
            })
            .await;
        match result {
            Err(StoreError::Conflict("already_revoked")) => Ok(()),
            other => other,
        }
    }

    /// The link behind `token`, if it is well-formed, known, not revoked, not
    /// expired, and its subject not erased; `None` in every other case, with no
    /// way to tell which (so a page never hints whether a number is known).
    /// Fails (closed) only when the store or the business's policy cannot be read.
    pub async fn open_preference_link(&self, token: &str) -> Result<Option<OpenLink>, StoreError> {
        if !is_link_token(token) {
            return Ok(None);
        }
        let token_hash = secret_hash(token);
        let keys = self.keys.clone();
        let found = self
            .store
            .run(move |conn| {
                let Some(found) = links::link_by_token_hash(conn, &token_hash)? else {
                    return Ok(None);
                };
                let link = &found.link;
                let now = time::now();
                if link.revoked_at.is_some() || link.expires_at <= now {
                    return Ok(None);
                }
                let row = match rows::subject_row(conn, link.business_id, link.subject_id) {
                    Ok(row) => row,
                    Err(StoreError::NotFound) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let (Some(wrapped), Some(sealed)) = (row.wrapped_key, row.sealed_phone) else {
                    return Ok(None);
                };
                let key = DataKey::unwrap(&wrapped, keys.kek(), link.business_id, link.subject_id)
                    .map_err(|_| {
                        StoreError::Corrupt("a subject's data key does not unwrap".into())
                    })?;
                let phone = key
                    .open(
                        &Aad::new(link.business_id, link.subject_id, "phone"),
                        &sealed,
                    )
                    .ok()
                    .and_then(|plain| String::from_utf8(plain).ok())
                    .and_then(|text| Phone::parse(&text, None).ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt("a subject's number does not open".into())
                    })?;
                Ok(Some((found, phone)))
            })
            .await?;
        let Some((found, phone)) = found else {
            return Ok(None);
        };
        let policy = self.policy(&found.policy).ok_or_else(|| {
            StoreError::Unavailable(format!("policy {} is not loaded", found.policy))
        })?;
        Ok(Some(OpenLink {
            link_id: found.link.id,
            business_id: found.link.business_id,
            business_name: found.business_name,
            policy,
            subject_id: found.link.subject_id,
            phone,
            expires_at: found.link.expires_at,
        }))
    }

    /// Every category of the link's policy with the answer a check gives now.
    pub async fn preference_view(
        &self,
        link: &OpenLink,
        language: Language,
    ) -> Result<Vec<CategoryView>, CheckUnavailable> {
        let caller = link.caller();
        let mut views = Vec::new();
        for category in link.policy.categories() {
            let rules = link.policy.rules(&category);
            let consentable = rules.is_some_and(|r| r.allows(AllowedBy::OptIn));
            let description = rules
                .map(|r| r.description(language).to_owned())
                .unwrap_or_default();
            let answer = self.check_phone(&caller, &link.phone, &category).await?;
            views.push(CategoryView {
                category,
                consentable,
                allowed: answer.allowed,
                reason: answer.reason,
                description,
            });
        }
        Ok(views)
    }

    /// The person says yes to a category on the page: an opt-in with channel
    /// `web` and the page's evidence. Where the policy asks for double opt-in,
    /// the link itself is the second factor (it reached the person's own phone,
    /// and only they can open it), so the opt-in is confirmed at once, with the
    /// same evidence. Returns the opt-in's id.
    pub async fn opt_in_from_link(
        &self,
        link: &OpenLink,
        category: Category,
        evidence: Evidence,
    ) -> Result<Uuid, StoreError> {
        let caller = link.caller();
        let recorded = self
            .record_opt_in(
                &caller,
                RecordOptIn {
                    phone: link.phone.clone(),
                    categories: vec![category],
                    channel: Channel::Web,
                    evidence: evidence.clone(),
                },
                None,
            )
            .await?;
        let Written::Fresh(opt_in) = recorded else {
            return Err(StoreError::Internal("no idempotency key, no replay".into()));
        };
        if opt_in.status == OptInStatus::PendingConfirmation {
            self.confirm_opt_in(
                &caller,
                ConfirmOptIn {
                    opt_in_id: opt_in.id,
                    channel: Channel::Web,
                    evidence,
                },
                None,
            )
            .await?;
        }
        Ok(opt_in.id)
    }

    /// The person says no to a category on the page: a revocation with channel
    /// `web`, effective at once.
    pub async fn opt_out_from_link(
        &self,
        link: &OpenLink,
        category: Category,
        evidence: Evidence,
    ) -> Result<(), StoreError> {
        self.record_revocation(
            &link.caller(),
            RecordRevocation {
                phone: link.phone.clone(),
                categories: Some(vec![category]),
                channel: Channel::Web,
                evidence: Withdrawal {
                    evidence,
                    stated: true,
                    dropped: Vec::new(),
                },
                dropped: Vec::new(),
                by_keyword: false,
            },
            None,
        )
        .await?;
        Ok(())
    }

    /// "Stop all messages" (a block) and its undo (an unblock).
    pub async fn block_from_link(
        &self,
        link: &OpenLink,
        blocked: bool,
        evidence: Evidence,
    ) -> Result<(), StoreError> {
        self.record_block(
            &link.caller(),
            RecordBlock {
                phone: link.phone.clone(),
                blocked,
                evidence: Withdrawal {
                    evidence,
                    stated: true,
                    dropped: Vec::new(),
                },
                dropped: Vec::new(),
            },
            None,
        )
        .await?;
        Ok(())
    }

    /// "Send me my data": the subject export (GDPR Art. 15, 20), audited as
    /// `subject.exported` with the reference `preference-center`.
    pub async fn export_from_link(&self, link: &OpenLink) -> Result<SubjectExport, StoreError> {
        self.export_subject(
            &link.caller(),
            link.phone.clone(),
            Some("preference-center".to_owned()),
        )
        .await
    }

    /// "Erase my data" (GDPR Art. 17), after the page's confirmation step. The
    /// link dies with the subject.
    pub async fn erase_from_link(&self, link: &OpenLink) -> Result<ErasureReceipt, StoreError> {
        let written = self
            .erase_subject(
                &link.caller(),
                link.phone.clone(),
                Some("preference-center".to_owned()),
                None,
            )
            .await?;
        match written {
            Written::Fresh(receipt) => Ok(receipt),
            Written::Replayed(_) => {
                Err(StoreError::Internal("no idempotency key, no replay".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;

    #[test]
    fn the_consent_text_version_pins_policy_category_and_language() {
        let set = PolicySet::shipped();
        let eu = set.get("whatsapp-eu").unwrap();
        let marketing = eu.category("marketing").unwrap();
        let version = consent_text_version(&eu, &marketing, Language::De);
        assert!(version.starts_with("pc1:whatsapp-eu@"), "{version}");
        assert!(version.contains(eu.versioned()), "{version}");
        assert!(version.ends_with("#marketing.de"), "{version}");
        assert!(version.chars().count() <= 100);
        assert_ne!(
            version,
            consent_text_version(&eu, &marketing, Language::Fr),
            "each language is its own wording"
        );
    }
}
