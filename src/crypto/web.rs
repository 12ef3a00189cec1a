//! Secrets of the browser-facing pages (SPEC section 11): preference-link tokens,
//! console session ids and CSRF tokens.
//!
//! - A preference-link token and a console session id are 32 random bytes
//!   (base64url). Only their SHA-256 is stored: with 256 bits of entropy a plain
//!   hash cannot be reversed by enumeration (unlike a phone number's), and a copy
//!   of the database lets nobody open a link or a session.
//! - A CSRF token is `<issued unix seconds>.<HMAC-SHA256>` over a purpose, what the
//!   form is bound to (a link, a session) and the issue time, under a key derived
//!   from the master key (HKDF), so every node of a deployment accepts the forms
//!   of every other, and a token minted for one link or session is worthless for
//!   another. Checked in constant time (`Mac::verify_slice`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::master_key::MasterKey;

/// The prefix of preference-link tokens, so that secret scanners can find a
/// leaked one.
pub const LINK_TOKEN_PREFIX: &str = "cgp_";

/// A new preference-link token (`cgp_` + 43 base64url characters) and its hash.
pub fn new_link_token() -> (String, [u8; 32]) {
    let token = format!(
        "{LINK_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(super::random_bytes::<32>())
    );
    let hash = secret_hash(&token);
    (token, hash)
}

/// Whether `token` has the shape of a link token: anything else is refused
/// before it costs a lookup.
pub fn is_link_token(token: &str) -> bool {
    token.strip_prefix(LINK_TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A new console session id (43 base64url characters) and its hash.
pub fn new_session_id() -> (String, [u8; 32]) {
    let id = URL_SAFE_NO_PAD.encode(super::random_bytes::<32>());
    let hash = secret_hash(&id);
    (id, hash)
}

/// The stored form of a high-entropy secret (a link token, a session id).
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The key CSRF tokens are signed with, derived from the master key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey([redacted])")
    }
}

impl CsrfKey {
    pub fn derive(master: &MasterKey) -> CsrfKey {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, master.expose())
            .expand(b"consentgate/v1/csrf", &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        CsrfKey(key)
    }

    fn mac(&self, purpose: &str, binding: &[u8], issued: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        for part in [purpose.as_bytes(), binding, &issued.to_be_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// A token for a form of `purpose`, bound to `binding`, issued at `now`
    /// (unix seconds).
    pub fn token(&self, purpose: &str, binding: &[u8], now: i64) -> String {
        let tag = self.mac(purpose, binding, now).finalize().into_bytes();
        format!("{now}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Whether `token` was made by [`CsrfKey::token`] for this purpose and
    /// binding, no more than `max_age_secs` before `now` (and not from the future
    /// beyond a minute of clock skew between nodes).
    pub fn verify(
        &self,
        token: &str,
        purpose: &str,
        binding: &[u8],
        now: i64,
        max_age_secs: i64,
    ) -> bool {
        let Some((issued, tag)) = token.split_once('.') else {
            return false;
        };
        let Ok(issued) = issued.parse::<i64>() else {
            return false;
        };
        if issued > now + 60 || now - issued > max_age_secs {
            return false;
        }
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        self.mac(purpose, binding, issued)
            .verify_slice(&tag)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_are_random_prefixed_and_hash_stably() {
        let (a, hash_a) = new_link_token();
        let (b, _) = new_link_token();
        assert_ne!(a, b);
        assert!(is_link_token(&a) && is_link_token(&b), "{a}");
        assert_eq!(secret_hash(&a), hash_a);
        for bad in [
            "",
            "cgp_",
            "cgp_short",
            &a[..a.len() - 1],
            &format!("{a}x"),
            &a.replace("cgp_", "cgk_"),
        ] {
            assert!(!is_link_token(bad), "{bad:?}");
        }
        assert!(!is_link_token(&format!("cgp_{}", "+".repeat(43))));
    }

    #[test]
    fn a_csrf_token_is_bound_to_purpose_binding_key_and_age() {
        let master = MasterKey::generate();
        let key = CsrfKey::derive(&master);
        let now = 1_800_000_000;
        let token = key.token("pref", b"link-1", now);
        assert!(key.verify(&token, "pref", b"link-1", now + 10, 3600));
        assert!(
            !key.verify(&token, "console", b"link-1", now, 3600),
            "purpose"
        );
        assert!(!key.verify(&token, "pref", b"link-2", now, 3600), "binding");
        assert!(
            !key.verify(&token, "pref", b"link-1", now + 3601, 3600),
            "too old"
        );
        assert!(
            !key.verify(&token, "pref", b"link-1", now - 120, 3600),
            "from the future"
        );
        let other = CsrfKey::derive(&MasterKey::generate());
        assert!(
            !other.verify(&token, "pref", b"link-1", now, 3600),
            "another key"
        );
        assert_eq!(
            CsrfKey::derive(&master).token("pref", b"link-1", now),
            token,
            "every node derives the same key"
        );
        let (issued, tag) = token.split_once('.').unwrap();
        let forged_time = format!("{}.{tag}", issued.parse::<i64>().unwrap() + 1);
        for bad in ["", ".", "abc", "1.", &forged_time, &format!("{token}x")] {
            assert!(!key.verify(bad, "pref", b"link-1", now, 3600), "{bad:?}");
        }
    }
}
