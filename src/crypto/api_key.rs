//! API keys: a public id and a high-entropy secret in one bearer token.
//!
//! Token format: `cg_<key id: 32 lowercase hex>_<secret: 43 chars base64url>`.
//! The id lets the service find the row by primary key without scanning; the
//! secret is 256 random bits, of which only an argon2id hash is stored (OWASP
//! parameters, m=19456 KiB, t=2, p=1: the argon2 crate's defaults). A token is
//! checked for shape before anything else, so garbage costs nothing.

use std::fmt;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use password_hash::SaltString;
use password_hash::rand_core::OsRng;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop};

const PREFIX: &str = "cg_";
const ID_LEN: usize = 32;
const SECRET_LEN: usize = 43;
/// Total token length: prefix, id, separator, secret.
pub const TOKEN_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// The secret half of a token. Wiped on drop; `Debug` prints nothing of it.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    /// 32 fresh random bytes, base64url without padding.
    pub fn generate() -> Secret {
        let mut bytes: [u8; 32] = super::random_bytes();
        let secret = Secret(URL_SAFE_NO_PAD.encode(bytes));
        bytes.zeroize();
        secret
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A token presented by a client, split into its parts, shape already checked.
#[derive(Debug)]
pub struct PresentedToken {
    pub key_id: Uuid,
    pub secret: Secret,
}

impl PresentedToken {
    /// Splits and checks the shape of a bearer token. Anything else is `None`: the
    /// caller answers 401 without touching the database or argon2.
    pub fn parse(token: &str) -> Option<PresentedToken> {
        if token.len() != TOKEN_LEN || !token.is_ascii() {
            return None;
        }
        let rest = token.strip_prefix(PREFIX)?;
        let (id, rest) = rest.split_at(ID_LEN);
        let secret = rest.strip_prefix('_')?;
        if !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        if !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        let key_id = Uuid::try_parse(id).ok()?;
        Some(PresentedToken {
            key_id,
            secret: Secret(secret.to_owned()),
        })
    }
}

/// The full token text for a key id and its secret; shown to the client once.
pub fn format_token(key_id: Uuid, secret: &Secret) -> String {
    format!("{PREFIX}{}_{}", key_id.simple(), secret.expose())
}

/// argon2id PHC string of a secret. Costs about 20 ms and 19 MiB: call it off the
/// async executor.
pub fn hash_secret(secret: &Secret) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.expose().as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail on a 43-byte input")
        .to_string()
}

/// Checks a secret against a stored PHC string in constant time (argon2's own
/// comparison). A malformed stored hash verifies nothing.
pub fn verify_secret(secret: &Secret, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a secret nobody has, with the same parameters as real ones: verified
/// against when a key id is unknown, so an unknown id costs what a wrong secret
/// costs and the timing says nothing about which ids exist.
pub fn dummy_hash() -> String {
    hash_secret(&Secret::generate())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formatted_token_parses_back_to_its_parts() {
        let id = Uuid::now_v7();
        let secret = Secret::generate();
        let token = format_token(id, &secret);
        assert_eq!(token.len(), TOKEN_LEN);
        let parsed = PresentedToken::parse(&token).expect("own format parses");
        assert_eq!(parsed.key_id, id);
        assert_eq!(parsed.secret.expose(), secret.expose());
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_lookup() {
        let good = format_token(Uuid::now_v7(), &Secret::generate());
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            (good[..good.len() - 1].to_owned(), "one char short"),
            (format!("{good}x"), "one char long"),
            (good.replacen("cg_", "xx_", 1), "wrong prefix"),
            (good.replacen('_', "-", 2), "missing separator"),
            (
                format!("cg_{}{}", "G".repeat(32), &good[35..]),
                "id not hex",
            ),
            (
                good[..TOKEN_LEN - 1].to_owned() + "!",
                "secret not base64url",
            ),
            (good[..TOKEN_LEN - 2].to_owned() + "é", "non-ascii"),
        ];
        for (token, why) in cases {
            assert!(PresentedToken::parse(&token).is_none(), "{why}: {token:?}");
        }
    }

    #[test]
    fn verify_accepts_the_secret_and_rejects_others() {
        let secret = Secret::generate();
        let phc = hash_secret(&secret);
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_secret(&secret, &phc));
        assert!(!verify_secret(&Secret::generate(), &phc));
        assert!(!verify_secret(&secret, "not a phc string"));
    }

    #[test]
    fn debug_of_a_token_never_shows_the_secret() {
        let secret = Secret::generate();
        let token = PresentedToken::parse(&format_token(Uuid::now_v7(), &secret)).unwrap();
        assert!(!format!("{token:?}").contains(secret.expose()));
    }
}
