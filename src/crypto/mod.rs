//! Cryptography, built only from RustCrypto primitives (never our own):
//! API key secrets (HMAC-SHA256 under a derived key; legacy argon2id still
//! verified), the master key, the audit chain hash.
//!
//! Depends on neither actix nor diesel.

pub mod api_key;
pub mod chain;
pub mod envelope;
pub mod fingerprint;
pub mod master_key;
pub mod pseudonym;
pub mod signing;
pub mod web;

use password_hash::rand_core::{OsRng, RngCore};

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}
