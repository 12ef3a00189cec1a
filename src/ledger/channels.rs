//! Channel connections and the signals that arrive through them (SPEC section
//! 10).
//!
//! A connection's secrets (WhatsApp: app secret and verify token; Twilio: auth
//! token) are sealed with the AEAD envelope of `crypto::envelope`: each
//! connection has a data key of its own, wrapped by the master key and bound to
//! the business and the connection's id (in the slot a subject id takes for
//! personal data), and the secrets are sealed under it. They are opened only to
//! check a webhook's signature, never returned, never logged; what the API
//! shows is a keyed fingerprint.
//!
//! A verified platform signal becomes the very same ledger call as the JSON API
//! (`record_inbound`, `record_revocation`, `record_restoration`), as the actor
//! `channel:<id>`, with the platform's message id as evidence and as the key of
//! exactly-once recording: an Idempotency-Key `channel:` + a keyed digest of
//! the delivery id (the message id can hold the number, so it is never stored
//! plainly), remembered for `retention::CHANNEL_DELIVERY_TTL`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::record::{RecordInbound, RecordRestoration, RecordRevocation};
use super::{Caller, Ledger};
use crate::audit::{EventType, NewEvent};
use crate::channels::{PlatformKeyword, Signal, SignalKind};
use crate::crypto::envelope::{Aad, DataKey};
use crate::domain::Actor;
use crate::domain::evidence::{Channel, Details, Evidence, Withdrawal};
use crate::domain::phone::Phone;
use crate::policy::{KeywordKind, Policy};
use crate::store::channels::{self as rows, ChannelRow};
use crate::store::{IdempotencyRequest, StoreError, Written};

/// The entry point of a conversation that came from a click-to-chat ad (the
/// shipped policies give it a 72 h window).
pub const AD_ENTRY_POINT: &str = "click_to_chat_ad";

/// Which platform a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// WhatsApp Business Platform (Cloud API) webhooks.
    Whatsapp,
    /// Twilio Messaging inbound webhooks.
    Twilio,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Whatsapp => "whatsapp",
            ChannelKind::Twilio => "twilio",
        }
    }

    fn parse(text: &str) -> Result<ChannelKind, StoreError> {
        match text {
            "whatsapp" => Ok(ChannelKind::Whatsapp),
            "twilio" => Ok(ChannelKind::Twilio),
            other => Err(StoreError::Corrupt(format!("unknown channel kind {other}"))),
        }
    }
}

/// What a connection keeps that is not secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelConfig {
    Whatsapp {
        /// The WhatsApp phone-number ids whose webhooks this connection takes.
        phone_number_ids: Vec<String>,
    },
    Twilio {
        account_sid: String,
        /// The exact public URL Twilio posts to (Twilio signs it).
        webhook_url: String,
    },
}

/// A connection's secrets, sealed at rest. `Debug` prints nothing of them.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelSecrets {
    Whatsapp {
        app_secret: String,
        verify_token: String,
    },
    Twilio {
        auth_token: String,
    },
}

impl std::fmt::Debug for ChannelSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelSecrets([redacted])")
    }
}

/// A validated connection to create.
#[derive(Debug)]
pub struct CreateChannel {
    pub name: String,
    pub config: ChannelConfig,
    pub secrets: ChannelSecrets,
}

/// A connection as the API shows it: never a secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelResponse {
    pub id: Uuid,
    pub kind: ChannelKind,
    pub name: String,
    /// A keyed digest of the connection's secrets (`fp_` + 16 hex): tells which
    /// secret is configured, reveals nothing of it.
    pub fingerprint: String,
    /// The path the platform must call on this service's public address.
    pub webhook_path: String,
    pub created_at: DateTime<Utc>,
}

/// A connection opened for a webhook: its business, rules and secrets.
pub struct OpenChannel {
    pub id: Uuid,
    pub business_id: Uuid,
    pub policy: Arc<Policy>,
    pub config: ChannelConfig,
    pub secrets: ChannelSecrets,
}

impl std::fmt::Debug for OpenChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenChannel")
            .field("id", &self.id)
            .field("business_id", &self.business_id)
            .finish_non_exhaustive()
    }
}

impl OpenChannel {
    fn caller(&self) -> Caller {
        Caller {
            business_id: self.business_id,
            actor: Actor::Channel(self.id),
            policy: self.policy.clone(),
            fenced: false,
        }
    }

    /// Whether this WhatsApp connection takes webhooks of `phone_number_id`.
    pub fn serves(&self, phone_number_id: &str) -> bool {
        match &self.config {
            ChannelConfig::Whatsapp { phone_number_ids } => {
                phone_number_ids.iter().any(|id| id == phone_number_id)
            }
            ChannelConfig::Twilio { .. } => false,
        }
    }
}

/// What one signal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalOutcome {
    /// Recorded now.
    Recorded,
    /// Recorded before (a redelivery): nothing recorded twice.
    Replayed,
    /// Nothing to record (a resume with nothing to restore).
    Nothing,
    /// The platform's number could not be parsed: skipped.
    UnparsablePhone,
}

impl SignalOutcome {
    pub fn label(self) -> &'static str {
        match self {
            SignalOutcome::Recorded => "recorded",
            SignalOutcome::Replayed => "replayed",
            SignalOutcome::Nothing => "nothing",
            SignalOutcome::UnparsablePhone => "unparsable_phone",
        }
    }
}

const SECRETS_FIELD: &str = "channel_secrets";

fn webhook_path(kind: ChannelKind, id: Uuid) -> String {
    format!("/v1/webhooks/{}/{id}", kind.as_str())
}

fn response_of(row: &ChannelRow) -> Result<ChannelResponse, StoreError> {
    let kind = ChannelKind::parse(&row.kind)?;
    Ok(ChannelResponse {
        id: row.id,
        kind,
        name: row.name.clone(),
        fingerprint: row.fingerprint.clone(),
        webhook_path: webhook_path(kind, row.id),
        created_at: row.created_at,
    })
}

/// The platform's number as E.164 input: Meta writes it without the `+`.
fn phone_of(from: &str) -> Option<Phone> {
    let from = from.trim();
    let input = if from.starts_with('+') {
        from.to_owned()
    } else if !from.is_empty() && from.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{from}")
    } else {
        return None;
    };
    Phone::parse(&input, None).ok()
}

/// The evidence of a platform signal: when, and the platform's message id.
fn platform_evidence(at: DateTime<Utc>, reference: &str) -> Evidence {
    let reference: String = reference.chars().take(200).collect();
    Evidence {
        collected_at: at,
        consent_text_version: None,
        details: Details::Keyword {
            message_reference: Some(reference),
        },
    }
}

/// What the texts of a message mean: an opt-out anywhere wins (a missed STOP is
/// a breach), else the first keyword found.
fn keyword_of(policy: &Policy, texts: &[String]) -> Option<KeywordKind> {
    let kinds: Vec<KeywordKind> = texts.iter().filter_map(|t| policy.keyword(t)).collect();
    if kinds.contains(&KeywordKind::OptOut) {
        return Some(KeywordKind::OptOut);
    }
    kinds.first().copied()
}

impl Ledger {
    /// `POST /v1/channels`.
    pub async fn create_channel(
        &self,
        caller: &Caller,
        command: CreateChannel,
    ) -> Result<ChannelResponse, StoreError> {
        let business_id = caller.business_id;
        let id = Uuid::now_v7();
        let key = DataKey::generate();
        let wrapped_key = key.wrap(self.keys.kek(), business_id, id);
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(&command.secrets)
                .map_err(|e| StoreError::Internal(format!("channel secrets: {e}")))?,
        );
        let secrets = key.seal(&Aad::new(business_id, id, SECRETS_FIELD), &plaintext);
        let digest = self
            .keys
            .fingerprint_key(business_id)
            .digest(&[b"channel-secrets", &plaintext]);
        let fingerprint = format!("fp_{}", hex::encode(&digest[..8]));
        let kind = match command.config {
            ChannelConfig::Whatsapp { .. } => ChannelKind::Whatsapp,
            ChannelConfig::Twilio { .. } => ChannelKind::Twilio,
        };
        let config = serde_json::to_string(&command.config)
            .map_err(|e| StoreError::Internal(format!("channel config: {e}")))?;
        let name = command.name;
        self.writer
            .write_unbatched(business_id, caller.actor, move |conn, now| {
                let row = ChannelRow {
                    id,
                    business_id,
                    kind: kind.as_str().to_owned(),
                    name,
                    config,
                    wrapped_key,
                    secrets,
                    fingerprint,
                    created_at: now,
                    revoked_at: None,
                };
                rows::insert_channel(conn, &row)?;
                let event = NewEvent::new(
                    EventType::ChannelCreated,
                    json!({"channel_id": id, "kind": kind, "fingerprint": row.fingerprint}),
                );
                Ok((response_of(&row)?, vec![event]))
            })
            .await
    }

    /// `GET /v1/channels`: the business's connections in force.
    pub async fn list_channels(&self, caller: &Caller) -> Result<Vec<ChannelResponse>, StoreError> {
        let business_id = caller.business_id;
        self.store
            .run(move |conn| {
                rows::active_channels(conn, business_id)?
                    .iter()
                    .map(response_of)
                    .collect()
            })
            .await
    }

    /// `DELETE /v1/channels/{id}`: its webhooks answer 404 from now on. Deleting
    /// a deleted connection changes nothing and records nothing; another
    /// business's id is not found.
    pub async fn revoke_channel(&self, caller: &Caller, id: Uuid) -> Result<(), StoreError> {
        let business_id = caller.business_id;
        let result = self
            .writer
            .write_unbatched(business_id, caller.actor, move |conn, now| {
                let row = rows::channel(conn, business_id, id)?;
                if row.revoked_at.is_some() {
                    return Err(StoreError::Conflict("already_revoked"));
                }
                rows::revoke_channel(conn, business_id, id, now)?;
                let event = NewEvent::new(
                    EventType::ChannelRevoked,
                    json!({"channel_id": id, "kind": row.kind, "revoked_at": now}),
                );
                Ok(((), vec![event]))
            })
            .await;
        match result {
            Err(StoreError::Conflict("already_revoked")) => Ok(()),
            other => other,
        }
    }

    /// The connection a webhook names, opened, if it exists, is in force and
    /// is of `kind`. `Ok(None)` answers 404 whatever the reason.
    pub async fn open_channel(
        &self,
        id: Uuid,
        kind: ChannelKind,
    ) -> Result<Option<OpenChannel>, StoreError> {
        let Some((row, policy_name)) = self
            .store
            .run(move |conn| rows::active_channel_with_policy(conn, id))
            .await?
        else {
            return Ok(None);
        };
        if row.kind != kind.as_str() {
            return Ok(None);
        }
        let policy = self.policy(&policy_name).ok_or_else(|| {
            StoreError::Unavailable(format!("policy {policy_name} is not loaded"))
        })?;
        let key = DataKey::unwrap(&row.wrapped_key, self.keys.kek(), row.business_id, row.id)
            .map_err(|_| StoreError::Corrupt("a channel's data key does not unwrap".into()))?;
        let plaintext = zeroize::Zeroizing::new(
            key.open(
                &Aad::new(row.business_id, row.id, SECRETS_FIELD),
                &row.secrets,
            )
            .map_err(|_| StoreError::Corrupt("a channel's secrets do not open".into()))?,
        );
        let secrets: ChannelSecrets = serde_json::from_slice(&plaintext)
            .map_err(|_| StoreError::Corrupt("a channel's secrets do not parse".into()))?;
        let config: ChannelConfig = serde_json::from_str(&row.config)
            .map_err(|_| StoreError::Corrupt("a channel's config does not parse".into()))?;
        Ok(Some(OpenChannel {
            id: row.id,
            business_id: row.business_id,
            policy,
            config,
            secrets,
        }))
    }

    /// Records one verified platform signal, exactly once.
    pub async fn apply_signal(
        &self,
        channel: &OpenChannel,
        signal: Signal,
    ) -> Result<SignalOutcome, StoreError> {
        let Some(phone) = phone_of(&signal.from) else {
            return Ok(SignalOutcome::UnparsablePhone);
        };
        let caller = channel.caller();
        let fingerprint = self.keys.fingerprint_key(channel.business_id);
        let digest = fingerprint.digest(&[
            b"channel-delivery",
            channel.id.as_bytes(),
            signal.delivery_id.as_bytes(),
        ]);
        let key = format!("channel:{}", hex::encode(digest));
        // The same delivery always carries the same request: a redelivery
        // replays, it never conflicts.
        let request_hash = fingerprint.digest(&[b"channel-delivery-request", key.as_bytes()]);
        let idempotency = Some(IdempotencyRequest {
            key,
            request_hash,
            status: 200,
        });
        let now = self.clock().now();
        let at = signal.at.unwrap_or(now);
        let marketing = || {
            // A policy without a marketing category: a revocation naming a
            // category the policy lacks revokes every category (fail closed).
            caller.policy.category("marketing").map(|c| vec![c])
        };
        let withdrawal = || Withdrawal {
            evidence: platform_evidence(at, &signal.reference),
            stated: signal.at.is_some(),
            dropped: Vec::new(),
        };
        let outcome = |fresh: bool| {
            if fresh {
                SignalOutcome::Recorded
            } else {
                SignalOutcome::Replayed
            }
        };
        match &signal.kind {
            SignalKind::Inbound {
                texts,
                from_ad,
                platform_keyword,
            } => {
                let keyword = match platform_keyword {
                    Some(PlatformKeyword::Stop) => Some(KeywordKind::OptOut),
                    Some(PlatformKeyword::Start) => Some(KeywordKind::OptIn),
                    Some(PlatformKeyword::Help) => Some(KeywordKind::Help),
                    None => keyword_of(&caller.policy, texts),
                };
                let command = RecordInbound {
                    phone,
                    received_at: at,
                    keyword,
                    entry_point: from_ad.then(|| AD_ENTRY_POINT.to_owned()),
                    message_reference: Some(signal.reference.chars().take(200).collect()),
                    dropped: Vec::new(),
                };
                let written = self.record_inbound(&caller, command, idempotency).await?;
                Ok(outcome(matches!(written, Written::Fresh(_))))
            }
            SignalKind::MarketingStopped => {
                let command = RecordRevocation {
                    phone,
                    categories: marketing(),
                    channel: Channel::Keyword,
                    evidence: withdrawal(),
                    dropped: Vec::new(),
                    by_keyword: true,
                };
                let written = self
                    .record_revocation(&caller, command, idempotency)
                    .await?;
                Ok(outcome(matches!(written, Written::Fresh(_))))
            }
            SignalKind::MarketingResumed => {
                let command = RecordRestoration {
                    phone,
                    categories: marketing(),
                    channel: Channel::Keyword,
                    evidence: withdrawal(),
                };
                match self
                    .record_restoration(&caller, command, idempotency)
                    .await?
                {
                    Written::Fresh(r) if r.restoration_id.is_none() => Ok(SignalOutcome::Nothing),
                    written => Ok(outcome(matches!(written, Written::Fresh(_)))),
                }
            }
        }
    }
}
