//! Signed checkpoints of the audit chain (SPEC section 7): Ed25519 (ed25519-dalek,
//! RustCrypto's dalek family) over the canonical bytes of (business, seq, hash,
//! time). The hash chain alone detects any edit, insertion, deletion or reordering
//! *inside* a chain; a signed checkpoint that an auditor keeps also detects a chain
//! rebuilt wholesale with recomputed hashes, or a tail cut off.
//!
//! Message (what is signed), each field as a 4-byte big-endian length and its UTF-8
//! bytes, in this order: the label `consentgate/checkpoint/v1`, the business id
//! (UUID, lowercase, hyphenated), seq (decimal), the event hash at seq (64 lowercase
//! hex digits), the checkpoint time (RFC 3339, UTC, six fraction digits, `Z`).

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroize;

use super::master_key::{MasterKeyError, NewFileError, check_owner_only, write_new_secret_file};

/// The label that starts (and versions) every checkpoint message.
pub const CHECKPOINT_LABEL: &str = "consentgate/checkpoint/v1";

/// The checkpoint signing key (an Ed25519 seed). Never printed.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(key_id={})", self.key_id())
    }
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        let mut seed: [u8; 32] = super::random_bytes();
        let key = SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed));
        seed.zeroize();
        key
    }

    /// From the base64 of the 32-byte seed.
    pub fn from_base64(text: &str) -> Result<SigningKey, MasterKeyError> {
        let mut bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| MasterKeyError::Malformed)?;
        let seed = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| MasterKeyError::Malformed);
        bytes.zeroize();
        let mut seed = seed?;
        let key = SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed));
        seed.zeroize();
        Ok(key)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    /// Reads a key file (owner-only), or creates one with a new key.
    pub fn load_or_create(path: &Path) -> Result<SigningKey, MasterKeyError> {
        match write_new_secret_file(path, || SigningKey::generate().to_base64()) {
            Ok(()) | Err(NewFileError::Exists) => SigningKey::read_file(path),
            Err(NewFileError::Io(source)) => Err(MasterKeyError::Create {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    pub fn read_file(path: &Path) -> Result<SigningKey, MasterKeyError> {
        check_owner_only(path)?;
        let mut text = std::fs::read_to_string(path).map_err(|source| MasterKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let key = SigningKey::from_base64(&text);
        text.zeroize();
        key
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Identifies the key: the first 16 hex digits of SHA-256 of the public key.
    pub fn key_id(&self) -> String {
        self.public_key().key_id()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

/// A checkpoint verification key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Option<PublicKey> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok().map(PublicKey)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))[..16].to_owned()
    }

    /// Checks a signature (strict: rejects malleable and small-order encodings).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        self.0.verify_strict(message, &signature).is_ok()
            && self.0.verify(message, &signature).is_ok()
    }

    /// The key as PEM (SubjectPublicKeyInfo), for `openssl pkeyutl -verify`.
    pub fn to_pem(&self) -> String {
        // The fixed DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(self.0.as_bytes());
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }
}

/// The signed bytes of a checkpoint (see the module documentation).
pub fn checkpoint_message(business_id: Uuid, seq: i64, hash: &[u8], at: DateTime<Utc>) -> Vec<u8> {
    let parts = [
        CHECKPOINT_LABEL.to_owned(),
        business_id.to_string(),
        seq.to_string(),
        hex::encode(hash),
        super::chain::format_at(at),
    ];
    let mut out = Vec::with_capacity(160);
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_exact_checkpoint() {
        let key = SigningKey::generate();
        let business = Uuid::now_v7();
        let at = crate::domain::time::now();
        let message = checkpoint_message(business, 7, &[1u8; 32], at);
        let signature = key.sign(&message);
        let public = key.public_key();
        assert!(public.verify(&message, &signature));
        for other in [
            checkpoint_message(business, 8, &[1u8; 32], at),
            checkpoint_message(business, 7, &[2u8; 32], at),
            checkpoint_message(Uuid::now_v7(), 7, &[1u8; 32], at),
            checkpoint_message(
                business,
                7,
                &[1u8; 32],
                at + chrono::Duration::microseconds(1),
            ),
        ] {
            assert!(!public.verify(&other, &signature), "a changed field fails");
        }
        assert!(
            !SigningKey::generate()
                .public_key()
                .verify(&message, &signature),
            "another key fails"
        );
        assert!(
            !public.verify(&message, &signature[..63]),
            "a truncated signature fails"
        );
    }

    #[test]
    fn keys_round_trip_and_never_print_their_secret() {
        let key = SigningKey::generate();
        let again = SigningKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        assert_eq!(key.key_id().len(), 16);
        assert!(PublicKey::from_bytes(&key.public_key().to_bytes()).is_some());
        assert!(
            key.public_key()
                .to_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA")
        );
    }
}
