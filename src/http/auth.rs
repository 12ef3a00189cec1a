//! Authentication: API keys for businesses, the operator token for operators.
//!
//! # Why a cache, and why it is safe
//! An argon2id verification costs ~20 ms of a core and 19 MiB; a sender making
//! thousands of checks a second cannot pay that per request. So after a key's
//! secret verified once, we remember, per key id, an HMAC *tag* of the secret under
//! a random key that lives only in this process's memory, plus the stored argon2
//! hash it verified against. Later requests recompute the tag of the presented
//! secret and compare in constant time: no plaintext secret is kept in memory, and
//! a dump of the cache is useless without the process key (and even then only
//! offers an HMAC to brute-force against a 256-bit secret).
//!
//! The key's row is still read on every request (one primary-key lookup, which
//! is cheap next to argon2): a revoked key is refused on its very next request, on
//! every node of a scaled-out deployment, because revocation lives in the database,
//! not in any node's cache. A cache entry is only used while the row's hash is the
//! one the entry verified against.
//!
//! # Why a flood of bad keys is cheap
//! - A token of the wrong shape is refused before any lookup.
//! - A token that failed recently (same id and secret) is refused from a small
//!   negative cache, without argon2.
//! - Everything else waits for one of a few argon2 permits; when too many are
//!   already waiting the answer is 429 with Retry-After, at once. So garbage can
//!   occupy at most `permits` cores and `permits * 19 MiB`, never the whole machine,
//!   and keys already verified (the cache above) keep working meanwhile.
//! - An unknown key id is verified against a dummy hash with the same parameters,
//!   so it costs exactly what a wrong secret costs: timing reveals no ids.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use hmac::{Hmac, Mac};
use lru::LruCache;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::error::ApiError;
use crate::crypto::api_key::{self, PresentedToken};
use crate::domain::{Scope, Scopes};
use crate::store::{Store, StoreError};

/// The authenticated caller of a business endpoint.
#[derive(Debug, Clone)]
pub struct Principal {
    pub business_id: Uuid,
    pub key_id: Uuid,
    pub scopes: Scopes,
    /// The name of the business's policy.
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

struct Verified {
    tag: [u8; 32],
    secret_hash: String,
}

/// Limits for [`Authenticator`].
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
    /// Process-local HMAC key for cache tags; never leaves memory.
    tag_key: [u8; 32],
    verified: Mutex<LruCache<Uuid, Verified>>,
    failed: Mutex<LruCache<[u8; 32], Instant>>,
    permits: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
    dummy_hash: Arc<str>,
}

const CACHE_ENTRIES: usize = 10_000;
const FAILURE_MEMORY: Duration = Duration::from_secs(60);

impl Authenticator {
    /// Builds the authenticator; computes the dummy hash (one argon2 run), so call
    /// it off the async executor or at start-up.
    pub fn new(store: Store, limits: AuthLimits) -> Authenticator {
        let entries = NonZeroUsize::new(CACHE_ENTRIES).expect("non-zero");
        Authenticator {
            store,
            tag_key: crate::crypto::random_bytes(),
            verified: Mutex::new(LruCache::new(entries)),
            failed: Mutex::new(LruCache::new(entries)),
            permits: Semaphore::new(limits.permits),
            waiting: AtomicUsize::new(0),
            max_waiting: limits.max_waiting,
            dummy_hash: api_key::dummy_hash().into(),
        }
    }

    fn tag(&self, token: &PresentedToken) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.tag_key).expect("any key length");
        mac.update(token.key_id.as_bytes());
        mac.update(token.secret.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Authenticates a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let token = PresentedToken::parse(token).ok_or(ApiError::Unauthorized)?;
        let tag = self.tag(&token);
        if self.recently_failed(&tag) {
            return Err(ApiError::Unauthorized);
        }
        let credentials = self
            .store
            .key_credentials(token.key_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ApiError::Unauthorized,
                other => ApiError::from(other),
            })?;
        if let Some(creds) = &credentials {
            if creds.key.revoked_at.is_none() && self.cached(token.key_id, &tag, &creds.secret_hash)
            {
                return Ok(principal(creds));
            }
        }
        let hash: Arc<str> = match &credentials {
            Some(creds) => creds.secret_hash.as_str().into(),
            None => self.dummy_hash.clone(),
        };
        let verified = self.verify_bounded(token, hash).await?;
        match credentials {
            Some(creds) if verified && creds.key.revoked_at.is_none() => {
                self.verified.lock().unwrap_or_else(|p| p.into_inner()).put(
                    creds.key.id,
                    Verified {
                        tag,
                        secret_hash: creds.secret_hash.clone(),
                    },
                );
                Ok(principal(&creds))
            }
            _ => {
                self.failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .put(tag, Instant::now());
                Err(ApiError::Unauthorized)
            }
        }
    }

    fn recently_failed(&self, tag: &[u8; 32]) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match failed.get(tag) {
            Some(at) if at.elapsed() < FAILURE_MEMORY => true,
            Some(_) => {
                failed.pop(tag);
                false
            }
            None => false,
        }
    }

    fn cached(&self, key_id: Uuid, tag: &[u8; 32], secret_hash: &str) -> bool {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        match verified.get(&key_id) {
            Some(entry) => bool::from(entry.tag.ct_eq(tag)) && entry.secret_hash == secret_hash,
            None => false,
        }
    }

    /// One argon2 verification, at most `permits` at a time, refusing at once when
    /// too many are queued.
    async fn verify_bounded(
        &self,
        token: PresentedToken,
        hash: Arc<str>,
    ) -> Result<bool, ApiError> {
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
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable("argon2 permits closed".into()))?;
        drop(waiting);
        tokio::task::spawn_blocking(move || api_key::verify_secret(&token.secret, &hash))
            .await
            .map_err(|e| ApiError::Internal(format!("argon2 task failed: {e}")))
    }
}

fn principal(creds: &crate::store::keys::KeyCredentials) -> Principal {
    Principal {
        business_id: creds.key.business_id,
        key_id: creds.key.id,
        scopes: creds.key.scopes.clone(),
        policy: creds.policy.clone(),
    }
}

/// The bearer token of a request, if it has one.
fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Principal, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let auth = req.app_data::<web::Data<Authenticator>>().cloned();
        Box::pin(async move {
            let auth =
                auth.ok_or_else(|| ApiError::Internal("no authenticator configured".into()))?;
            auth.authenticate(&token.ok_or(ApiError::Unauthorized)?)
                .await
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
        let ok = match (bearer(req), req.app_data::<web::Data<OperatorToken>>()) {
            (Some(token), Some(expected)) => expected.matches(&token),
            _ => false,
        };
        std::future::ready(if ok {
            Ok(Operator)
        } else {
            Err(ApiError::Unauthorized)
        })
    }
}
