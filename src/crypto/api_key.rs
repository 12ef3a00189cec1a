//! API keys: a public id and a high-entropy secret in one bearer token.
//!
//! Token format: `cg_<key id: 32 lowercase hex>_<secret: 43 chars base64url>`.
//! The id lets the service find the row by primary key without scanning; the
//! secret is 256 random bits. A token is checked for shape before anything else,
//! so garbage costs nothing.
//!
//! # What is stored: a keyed hash, not a password hash
//! A slow password hash (argon2) exists to make guessing a *human-chosen* secret
//! expensive. Our secrets are 256 random bits: nobody can enumerate them, so
//! argon2 bought nothing but ~20 ms and 19 MiB per check, which a flood of wrong
//! keys turned into a denial of service. As crates.io and GitHub do for their
//! tokens, the row holds a keyed SHA-256 instead:
//!
//! `hmac-sha256$<base64 (standard, unpadded) of HMAC-SHA256(K, key id || secret)>`
//!
//! where `K` is derived from the master key with HKDF-SHA256
//! (`info = "consentgate/v1/api-key-secret"`), like every other derived key. The
//! key id (its 16 bytes) is inside the MAC, so a hash copied onto another key's row
//! verifies nothing. A copy of the database alone does not even allow an offline
//! check of a guessed secret: that needs the master key too. Verification is one
//! HMAC and a constant-time comparison (`subtle`): microseconds.
//!
//! # Legacy argon2id hashes
//! Rows written before this scheme hold an argon2id PHC string (`$argon2id$...`) in
//! the same column. They still verify ([`verify_argon2`]), with bounded memory, and
//! the authenticator replaces them by the HMAC form on their next successful use.
//! A stored value in neither form verifies nothing.

use std::fmt;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use password_hash::PasswordHash;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::master_key::MasterKey;
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

/// The text form's algorithm prefix.
pub const HMAC_PREFIX: &str = "hmac-sha256$";
/// HKDF `info` of the secret-hashing key. Versioned: a future scheme derives an
/// unrelated key (and would name itself with another prefix).
const HKDF_INFO: &[u8] = b"consentgate/v1/api-key-secret";
/// The largest argon2 memory cost a legacy hash may ask for (KiB): ours use
/// 19456; anything far above is not one of ours and would let a tampered row make
/// every verification allocate without bound.
const LEGACY_MAX_M_COST: u32 = 65_536;
const LEGACY_MAX_T_COST: u32 = 16;

/// The key API secrets are hashed under, derived from the master key, kept as
/// the HMAC's keyed state (the key's two padded blocks already hashed: each tag
/// then costs two SHA-256 blocks instead of four; the derived key itself is
/// zeroized once keyed, as in `crypto::pseudonym`). `Debug` prints no key
/// material.
pub struct SecretHasher {
    keyed: Hmac<Sha256>,
}

impl fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHasher([redacted])")
    }
}

impl SecretHasher {
    /// Derives the secret-hashing key (deterministic: every node derives the same
    /// key from the same master key, so any node verifies any key).
    pub fn derive(master: &MasterKey) -> SecretHasher {
        // No salt: the master key is already uniformly random (RFC 5869, 3.1).
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, master.expose())
            .expand(HKDF_INFO, key.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(key.as_slice())
            .expect("HMAC accepts a 32-byte key");
        SecretHasher { keyed }
    }

    /// The raw tag of a secret for a key id.
    pub fn tag(&self, key_id: Uuid, secret: &Secret) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(key_id.as_bytes());
        mac.update(secret.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The stored text form: `hmac-sha256$<base64>`.
    pub fn hash(&self, key_id: Uuid, secret: &Secret) -> String {
        format!(
            "{HMAC_PREFIX}{}",
            STANDARD_NO_PAD.encode(self.tag(key_id, secret))
        )
    }

    /// Whether `secret` is the one `expected` was made from, in constant time.
    /// Costs the same whatever `expected` is, so a dummy tag (unknown key id) and
    /// a real one (wrong secret) cannot be told apart by timing.
    pub fn verify_tag(&self, key_id: Uuid, secret: &Secret, expected: &[u8; 32]) -> bool {
        self.tag(key_id, secret).ct_eq(expected).into()
    }
}

/// The stored form of a secret's hash, recognised by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredHash<'a> {
    /// `hmac-sha256$...`: the current form.
    Hmac([u8; 32]),
    /// An argon2 PHC string (`$argon2id$...`): the legacy form.
    Argon2(&'a str),
    /// Anything else (a corrupt row): verifies nothing.
    Unknown,
}

impl<'a> StoredHash<'a> {
    pub fn parse(stored: &'a str) -> StoredHash<'a> {
        if let Some(b64) = stored.strip_prefix(HMAC_PREFIX) {
            let mut tag = [0u8; 32];
            return match STANDARD_NO_PAD.decode_slice(b64, &mut tag) {
                Ok(32) => StoredHash::Hmac(tag),
                _ => StoredHash::Unknown,
            };
        }
        if stored.starts_with("$argon2") {
            StoredHash::Argon2(stored)
        } else {
            StoredHash::Unknown
        }
    }
}

/// Checks a secret against a legacy argon2 PHC string, with argon2's working memory
/// taken from (and left in) `memory` instead of a fresh ~19 MiB allocation per call:
/// the caller keeps one buffer per concurrent verification, so memory stays bounded
/// however many wrong secrets arrive. Constant-time comparison; a malformed or
/// oversized stored hash verifies nothing. Blocking (~20 ms): off the executor.
pub fn verify_argon2(secret: &Secret, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    if params.m_cost() > LEGACY_MAX_M_COST || params.t_cost() > LEGACY_MAX_T_COST {
        return false;
    }
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        secret.expose().as_bytes(),
        salt,
        &mut out,
        memory.as_mut_slice(),
    );
    hashed.is_ok() && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
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

    fn hasher() -> SecretHasher {
        SecretHasher::derive(&MasterKey::generate())
    }

    #[test]
    fn the_hmac_form_verifies_the_secret_and_nothing_else() {
        let hasher = hasher();
        let (id, secret) = (Uuid::now_v7(), Secret::generate());
        let stored = hasher.hash(id, &secret);
        assert!(stored.starts_with("hmac-sha256$"), "{stored}");
        assert_eq!(stored.len(), HMAC_PREFIX.len() + 43);
        let StoredHash::Hmac(tag) = StoredHash::parse(&stored) else {
            panic!("own form parses: {stored}");
        };
        assert!(hasher.verify_tag(id, &secret, &tag));
        assert!(
            !hasher.verify_tag(id, &Secret::generate(), &tag),
            "wrong secret"
        );
        assert!(
            !hasher.verify_tag(Uuid::now_v7(), &secret, &tag),
            "other key id"
        );
        let other_master = self::hasher();
        assert!(
            !other_master.verify_tag(id, &secret, &tag),
            "the tag depends on the master key"
        );
    }

    #[test]
    fn stored_forms_are_recognised_by_prefix() {
        let cases = [
            ("hmac-sha256$short", "truncated tag"),
            ("hmac-sha256$!!!!", "not base64"),
            ("", "empty"),
            ("plaintext-secret", "no known prefix"),
        ];
        for (stored, why) in cases {
            assert_eq!(StoredHash::parse(stored), StoredHash::Unknown, "{why}");
        }
        assert!(matches!(
            StoredHash::parse("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            StoredHash::Argon2(_)
        ));
    }

    /// A legacy argon2id PHC string, as rows written before the HMAC form hold.
    fn legacy_phc(secret: &Secret) -> String {
        use argon2::PasswordHasher;
        let salt = password_hash::SaltString::generate(&mut password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(secret.expose().as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn legacy_argon2_hashes_still_verify_with_a_reused_buffer() {
        let secret = Secret::generate();
        let phc = legacy_phc(&secret);
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let mut memory = Vec::new();
        assert!(verify_argon2(&secret, &phc, &mut memory));
        let allocated = memory.capacity();
        assert_eq!(memory.len(), 19456, "one block per KiB of m_cost");
        assert!(!verify_argon2(&Secret::generate(), &phc, &mut memory));
        assert_eq!(
            memory.capacity(),
            allocated,
            "the buffer is reused, not regrown"
        );
        assert!(!verify_argon2(&secret, "not a phc string", &mut memory));
        let greedy = phc.replace("m=19456", "m=4194304");
        assert!(
            !verify_argon2(&secret, &greedy, &mut memory),
            "a tampered row cannot make us allocate 4 GiB"
        );
    }

    #[test]
    fn debug_of_a_token_never_shows_the_secret() {
        let secret = Secret::generate();
        let token = PresentedToken::parse(&format_token(Uuid::now_v7(), &secret)).unwrap();
        assert!(!format!("{token:?}").contains(secret.expose()));
    }
}
