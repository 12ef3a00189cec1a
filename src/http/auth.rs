//! Authentication: API keys for businesses, the operator token for operators.
//!
//! # How a key is checked
//! A token of the wrong shape is refused before anything else. Otherwise the
//! key's row (scopes, revocation, secret hash) comes from this node's
//! projection (`ledger::projection`), loaded on first use and borrowed, not
//! copied, on every request after. The key's business is fenced first: every
//! key created or revoked before the request arrived, through any node, is then
//! in the kept rows (a catch-up evicts the rows its key events name, and the
//! next request loads them again), so a revoked key is refused by every node's
//! next request without a database read per request. Then the presented secret
//! is checked against the stored hash: for current keys an HMAC-SHA256 under a
//! key derived from the master key, compared in constant time
//! (`crypto::api_key`), a few microseconds.
//!
//! # No cache of verified secrets
//! With argon2 hashes, a check cost ~20 ms and 19 MiB, so this module once kept
//! a cache of verified keys and a negative cache of recent failures, and a flood
//! of wrong secrets still cost one argon2 each. With an HMAC every request
//! verifies its secret: nothing verified is remembered, and memory stays flat
//! under any flood.
//!
//! # Timing
//! An unknown key id is checked against a dummy tag with the same HMAC and the
//! same comparison as a wrong secret, so timing does not tell which ids exist.
//!
//! # Legacy argon2 hashes
//! Keys created before the HMAC form hold an argon2id PHC string. They still
//! verify, at most `argon2_concurrency` at a time; when more are queued than 16
//! per permit the answer is 429 at once. The permit is moved into the blocking
//! task, so it is released when the hash is done, not when the client goes away
//! (a blocking task cannot be cancelled: a permit held by the request future would
//! let clients that reset their connection start unbounded hashes). Each permit
//! reuses one argon2 working buffer instead of allocating 19 MiB per call. After a
//! legacy hash verifies, the row is rewritten in the HMAC form (not an audit
//! event: the key and its secret are unchanged, only the way it is stored), so
//! each key pays argon2 once.
//!
//! # Failing closed
//! A store error of any kind while authenticating answers 503 with
//! `allowed: false`, never 500 and never a success. Rate limits around all of
//! this are in [`super::throttle`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use argon2::Block;
use futures_util::future::LocalBoxFuture;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::error::ApiError;
use super::throttle::Throttle;
use crate::crypto::api_key::{self, PresentedToken, SecretHasher, StoredHash};
use crate::domain::{Scope, Scopes};
use crate::ledger::projection::Projection;
use crate::store::Store;
use crate::store::keys::KeyCredentials;

/// The authenticated caller of a business endpoint.
#[derive(Debug, Clone)]
pub struct Principal {
    pub business_id: Uuid,
    pub key_id: Uuid,
    pub scopes: Scopes,
    /// The name of the business's policy. Authentication fenced the business's
    /// view after this request arrived (so the key's revocation, on any node, was
    /// seen): live checks answer from it without fencing again.
    pub policy: String,
}

impl Principal {
    /// 403 unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope))
        }
    }

    pub fn actor(&self) -> crate::domain::Actor {
        crate::domain::Actor::Key(self.key_id)
    }
}

/// Limits for the legacy argon2 path of [`Authenticator`].
#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    /// Concurrent argon2 verifications.
    pub permits: usize,
    /// Verifications allowed to wait for a permit before new ones get 429.
    pub max_waiting: usize,
}

/// Verifies API keys (see the module documentation for the design).
pub struct Authenticator {
    store: Store,
    /// Key rows and the businesses' fences.
    projection: Arc<Projection>,
    hasher: SecretHasher,
    /// What an unknown key id is compared against: a tag nobody's secret has.
    dummy_tag: [u8; 32],
    legacy: LegacyArgon2,
}

/// Bounded argon2 verification of legacy hashes.
struct LegacyArgon2 {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// One argon2 working buffer per permit at most, reused across calls.
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
}

/// The answer when the store cannot say who the caller is: fail closed with 503.
fn unavailable(cause: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("authentication: {cause}"))
}

impl Authenticator {
    pub fn new(
        store: Store,
        projection: Arc<Projection>,
        hasher: SecretHasher,
        limits: AuthLimits,
    ) -> Authenticator {
        Authenticator {
            store,
            projection,
            hasher,
            dummy_tag: crate::crypto::random_bytes(),
            legacy: LegacyArgon2::new(limits),
        }
    }

    /// The key new secrets are hashed under (key and business creation).
    pub fn hasher(&self) -> &SecretHasher {
        &self.hasher
    }

    /// Authenticates a bearer token: `Unauthorized` for anything that is not a
    /// live key with this secret, `Unavailable` when the store cannot tell,
    /// `RateLimited` when too many legacy verifications are queued.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let token = PresentedToken::parse(token).ok_or(ApiError::Unauthorized)?;
        let key_id = token.key_id;
        // The key's business and policy, from the kept row (borrowed, see
        // `Projection::with_key`), or loaded.
        let kept = self.projection.with_key(key_id, |creds| {
            (
                creds.key.business_id,
                self.projection.policy_ref(&creds.policy),
            )
        });
        let (business_id, policy) = match kept {
            Some(found) => found,
            None => match self
                .projection
                .load_key(key_id)
                .await
                .map_err(unavailable)?
            {
                Some(creds) => (
                    creds.key.business_id,
                    self.projection.policy_ref(&creds.policy),
                ),
                None => {
                    // The same work as a wrong secret, result ignored.
                    let _ = self
                        .hasher
                        .verify_tag(key_id, &token.secret, &self.dummy_tag);
                    return Err(ApiError::Unauthorized);
                }
            },
        };
        let policy = policy.ok_or_else(|| unavailable("the key's policy is not loaded"))?;
        // Fence the key's business: every key created or revoked before this
        // request arrived, through any node, is now reflected in the kept rows.
        self.projection
            .fence(business_id, policy)
            .await
            .map_err(unavailable)?;
        let judged = match self
            .projection
            .with_key(key_id, |creds| self.judge(creds, &token))
        {
            Some(judged) => judged,
            // Evicted by the catch-up: a key event since it was loaded.
            None => match self
                .projection
                .load_key(key_id)
                .await
                .map_err(unavailable)?
            {
                Some(creds) => self.judge(&creds, &token),
                None => return Err(ApiError::Unauthorized),
            },
        };
        match judged {
            Judged::Verified(principal) => Ok(principal),
            Judged::Refused => Err(ApiError::Unauthorized),
            Judged::Legacy(principal, phc) => {
                let upgraded = self.hasher.hash(key_id, &token.secret);
                if self.legacy.verify(token.secret, phc.clone()).await? {
                    // The kept row takes the fast form at once, on this node
                    // whether or not this node's rewrite wins.
                    self.projection.rehashed_key(key_id, upgraded.clone());
                    self.upgrade(key_id, phc, upgraded).await;
                    Ok(principal)
                } else {
                    Err(ApiError::Unauthorized)
                }
            }
        }
    }

    /// The presented secret against a key's row (after the fence): verified,
    /// refused, or a live legacy hash still to be verified off the executor.
    fn judge(&self, creds: &KeyCredentials, token: &PresentedToken) -> Judged {
        let live = creds.key.revoked_at.is_none();
        match StoredHash::parse(&creds.secret_hash) {
            StoredHash::Hmac(tag) => {
                let verified = self.hasher.verify_tag(token.key_id, &token.secret, &tag);
                if verified && live {
                    Judged::Verified(principal(creds))
                } else {
                    Judged::Refused
                }
            }
            // A revoked legacy key is refused without spending argon2 on it.
            StoredHash::Argon2(_) if !live => Judged::Refused,
            StoredHash::Argon2(phc) => Judged::Legacy(principal(creds), phc.to_owned()),
            StoredHash::Unknown => {
                tracing::warn!(key_id = %creds.key.id, "stored key hash is in no known form; refusing the key");
                Judged::Refused
            }
        }
    }

    /// Rewrites a verified legacy hash in the HMAC form. Best effort: the caller
    /// is authenticated either way, and the next use tries again.
    async fn upgrade(&self, key_id: Uuid, old: String, new: String) {
        match self.store.upgrade_secret_hash(key_id, old, new).await {
            Ok(true) => {
                tracing::info!(key_id = %key_id, "key hash upgraded from argon2 to hmac-sha256")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(key_id = %key_id, error = %e, "could not upgrade a legacy key hash; will retry on its next use")
            }
        }
    }
}

impl LegacyArgon2 {
    fn new(limits: AuthLimits) -> LegacyArgon2 {
        LegacyArgon2 {
            permits: Arc::new(Semaphore::new(limits.permits)),
            waiting: AtomicUsize::new(0),
            max_waiting: limits.max_waiting,
            buffers: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// One argon2 verification, at most `permits` at a time, refusing at once when
    /// too many are queued. The permit is owned by the blocking task.
    async fn verify(&self, secret: api_key::Secret, phc: String) -> Result<bool, ApiError> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::RateLimited {
                retry_after_secs: 1,
            });
        }
        let waiting = Waiting(&self.waiting);
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| unavailable("argon2 permits closed"))?;
        drop(waiting);
        let buffers = self.buffers.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the hash is done, whatever happens to the request.
            let _permit = permit;
            let mut memory = buffers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .unwrap_or_default();
            let verified = api_key::verify_argon2(&secret, &phc, &mut memory);
            buffers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(memory);
            verified
        })
        .await
        .map_err(unavailable)
    }
}

/// What a key's row says of a presented secret.
enum Judged {
    Verified(Principal),
    Refused,
    /// A live key with a legacy argon2 hash (its PHC string): verified off the
    /// executor, then rewritten in the HMAC form.
    Legacy(Principal, String),
}

fn principal(creds: &KeyCredentials) -> Principal {
    Principal {
        business_id: creds.key.business_id,
        key_id: creds.key.id,
        scopes: creds.key.scopes,
        policy: creds.policy.clone(),
    }
}

/// The bearer token in an `Authorization` value, if it is one.
fn bearer(value: &header::HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The request's `Authorization` value (a reference-counted clone, no copy).
fn authorization(req: &HttpRequest) -> Option<header::HeaderValue> {
    req.headers().get(header::AUTHORIZATION).cloned()
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Principal, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // The request (reference counted within this worker thread), not clones of
        // the shared authenticator and throttle: their counts would be written by
        // every worker on every request.
        let request = req.clone();
        let authorization = authorization(req);
        Box::pin(async move {
            let auth = request.app_data::<web::Data<Authenticator>>();
            let throttle = request.app_data::<web::Data<Throttle>>();
            // Misconfiguration is a 503 (fail closed), never a 500 or a pass.
            let (Some(auth), Some(throttle)) = (auth, throttle) else {
                return Err(unavailable("authenticator or throttle not configured"));
            };
            let client = throttle.client(&request);
            throttle.before_auth(client)?;
            let outcome = match authorization.as_ref().and_then(bearer) {
                Some(token) => auth.authenticate(token).await,
                None => Err(ApiError::Unauthorized),
            };
            match outcome {
                Ok(principal) => {
                    // Every line of the request names its business (`observe`).
                    super::observe::note_business(&request, principal.business_id);
                    throttle.after_success(principal.key_id)?;
                    Ok(principal)
                }
                Err(ApiError::Unauthorized) => Err(throttle.after_failure(client)),
                Err(other) => Err(other),
            }
        })
    }
}

/// The operator's token, kept as a SHA-256 digest so comparisons are constant time
/// over a fixed length.
pub struct OperatorToken {
    digest: [u8; 32],
}

impl OperatorToken {
    pub fn new(token: &SecretString) -> OperatorToken {
        OperatorToken {
            digest: Sha256::digest(token.expose_secret().as_bytes()).into(),
        }
    }

    fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// Proof that the request carries the operator token.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Operator, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(throttle) = req.app_data::<web::Data<Throttle>>() else {
            return std::future::ready(Err(unavailable("throttle not configured")));
        };
        let client = throttle.client(req);
        if let Err(limited) = throttle.before_auth(client) {
            return std::future::ready(Err(limited));
        }
        let authorization = authorization(req);
        let ok = match (
            authorization.as_ref().and_then(bearer),
            req.app_data::<web::Data<OperatorToken>>(),
        ) {
            (Some(token), Some(expected)) => expected.matches(token),
            _ => false,
        };
        std::future::ready(if ok {
            Ok(Operator)
        } else {
            Err(throttle.after_failure(client))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};

    use super::*;

    /// A legacy hash heavy enough (64 MiB, t=3) to still be running when the
    /// request that started it is gone.
    fn slow_phc(secret: &api_key::Secret) -> String {
        let salt = password_hash::SaltString::generate(&mut password_hash::rand_core::OsRng);
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(65_536, 3, 1, None).unwrap(),
        )
        .hash_password(secret.expose().as_bytes(), &salt)
        .unwrap()
        .to_string()
    }

    #[actix_web::test]
    async fn a_dropped_request_does_not_release_the_argon2_permit_while_the_hash_runs() {
        let legacy = LegacyArgon2::new(AuthLimits {
            permits: 1,
            max_waiting: 4,
        });
        let secret = api_key::Secret::generate();
        let phc = slow_phc(&secret);
        // The client goes away 1 ms in: the request future is dropped.
        let abandoned =
            tokio::time::timeout(Duration::from_millis(1), legacy.verify(secret, phc)).await;
        assert!(abandoned.is_err(), "the hash takes longer than 1 ms");
        assert_eq!(
            legacy.permits.available_permits(),
            0,
            "the blocking task still runs and still holds the permit"
        );
        let mut released = false;
        for _ in 0..500 {
            if legacy.permits.available_permits() == 1 {
                released = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(released, "released when the hash is done");
        assert_eq!(legacy.waiting.load(Ordering::SeqCst), 0);
        assert_eq!(
            legacy.buffers.lock().unwrap().len(),
            1,
            "the working buffer is kept for the next verification"
        );
    }

    #[actix_web::test]
    async fn too_many_waiting_legacy_verifications_are_refused_at_once() {
        let legacy = Arc::new(LegacyArgon2::new(AuthLimits {
            permits: 1,
            max_waiting: 1,
        }));
        let secret = api_key::Secret::generate();
        let phc = slow_phc(&secret);
        let first = {
            let (legacy, phc) = (legacy.clone(), phc.clone());
            actix_web::rt::spawn(async move { legacy.verify(secret, phc).await })
        };
        // Let the first take the permit, then a second waits, then a third is 429.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = {
            let (legacy, phc) = (legacy.clone(), phc.clone());
            actix_web::rt::spawn(
                async move { legacy.verify(api_key::Secret::generate(), phc).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let third = legacy.verify(api_key::Secret::generate(), phc).await;
        assert!(
            matches!(third, Err(ApiError::RateLimited { .. })),
            "{third:?}"
        );
        assert!(first.await.unwrap().unwrap(), "the right secret verifies");
        assert!(!second.await.unwrap().unwrap(), "a wrong one does not");
    }
}
