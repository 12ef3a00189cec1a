//! Keyed digests of requests, for Idempotency-Key: a retry is recognised by the
//! digest of its method, route and body. The body holds a phone number, and a plain
//! hash of it could be reversed by enumerating numbers, so the digest is an
//! HMAC-SHA256 under a per-business key derived from the master key (HKDF).

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::master_key::MasterKey;

/// The per-business request-digest key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct FingerprintKey([u8; 32]);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey([redacted])")
    }
}

impl FingerprintKey {
    pub fn derive(master: &MasterKey, business_id: Uuid) -> FingerprintKey {
        let mut info = b"consentgate/v1/request-fingerprint/".to_vec();
        info.extend_from_slice(business_id.as_bytes());
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, master.expose())
            .expand(&info, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        FingerprintKey(key)
    }

    /// HMAC over each part, length-prefixed so that parts cannot run into each other.
    pub fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_business_key_and_every_part() {
        let master = MasterKey::generate();
        let a = FingerprintKey::derive(&master, Uuid::now_v7());
        let b = FingerprintKey::derive(&master, Uuid::now_v7());
        let d = a.digest(&[b"POST", b"/v1/opt-ins", b"{}"]);
        assert_eq!(d, a.digest(&[b"POST", b"/v1/opt-ins", b"{}"]));
        assert_ne!(
            d,
            b.digest(&[b"POST", b"/v1/opt-ins", b"{}"]),
            "per business"
        );
        assert_ne!(d, a.digest(&[b"POST", b"/v1/opt-ins", b"{ }"]), "per body");
        assert_ne!(
            d,
            a.digest(&[b"POST", b"/v1/revocations", b"{}"]),
            "per route"
        );
        assert_ne!(
            a.digest(&[b"ab", b"c"]),
            a.digest(&[b"a", b"bc"]),
            "parts are delimited"
        );
    }
}
