//! Subject pseudonyms: the keyed hash under which a phone number is looked up
//! (SPEC section 6).
//!
//! The store never holds a phone number in plaintext, yet every check must
//! find the subject for a number. It finds it by
//! `HMAC-SHA256(per-business key, E.164 string)`. A plain hash would not do:
//! there are only about 10^10 to 10^12 plausible numbers, so anyone holding a
//! copy of the database could hash them all in minutes and reverse every row.
//! With a keyed hash, that enumeration needs the master key, which never
//! enters the database. This is pseudonymisation in the sense of GDPR
//! Art. 4(5) and one of the measures Art. 32(1)(a) names.
//!
//! Each business gets its own key, derived from the master key with
//! HKDF-SHA256 (`info = "consentgate/v1/subject-pseudonym/" || business id`),
//! so the same person has unrelated pseudonyms in two businesses: rows cannot
//! be joined across tenants, and a key leaked for one business says nothing
//! about another. After erasure the pseudonym may stay as a suppression
//! marker (policy), which is why it must not be reversible without the key.
//!
//! Depends on `hkdf`, `hmac`, `sha2` and `zeroize` (no primitives of our own),
//! on [`MasterKey`] for the input key material and on [`Phone`] so that only a
//! normalised number is ever hashed: two spellings of one number must give one
//! pseudonym.

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::master_key::MasterKey;
use crate::domain::phone::{E164Candidate, Phone};

/// HKDF `info` prefix; the business id's 16 bytes follow. Versioned so that a
/// future scheme derives unrelated keys.
const INFO_PREFIX: &[u8] = b"consentgate/v1/subject-pseudonym/";

/// A business's key for subject pseudonyms, held as an HMAC keyed once (its inner
/// and outer states: key-equivalent material), so that hashing a number on the
/// check path costs two compressions less. The derived key itself is zeroized as
/// soon as the HMAC is keyed; `Debug` prints no key material.
pub struct PseudonymKey {
    keyed: Hmac<Sha256>,
}

impl PseudonymKey {
    /// Derives the pseudonym key of one business from the master key.
    ///
    /// Deterministic: the same master key and business id always give the same
    /// key, so pseudonyms stay stable across restarts and nodes.
    #[must_use]
    pub fn derive(master: &MasterKey, business_id: Uuid) -> PseudonymKey {
        let mut info = [0u8; INFO_PREFIX.len() + 16];
        info[..INFO_PREFIX.len()].copy_from_slice(INFO_PREFIX);
        info[INFO_PREFIX.len()..].copy_from_slice(business_id.as_bytes());

        // No salt: the master key is already 32 uniformly random bytes, so
        // HKDF-Extract has nothing to add entropy to (RFC 5869, section 3.1).
        let hkdf = Hkdf::<Sha256>::new(None, master.expose());
        let mut key = Zeroizing::new([0u8; 32]);
        // Cannot fail: 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        hkdf.expand(&info, key.as_mut_slice())
            .expect("HKDF-SHA256 can expand to 32 bytes");
        // Cannot fail: HMAC takes keys of any length.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(key.as_slice())
            .expect("HMAC accepts a 32-byte key");
        PseudonymKey { keyed }
    }

    /// The pseudonym of a subject: HMAC-SHA256 over the bytes of the number's
    /// E.164 form, under this business's key.
    #[must_use]
    pub fn pseudonym(&self, phone: &Phone) -> [u8; 32] {
        self.hash(phone.as_e164())
    }

    /// The pseudonym input already in E.164 form would have: equal to
    /// [`PseudonymKey::pseudonym`] of the number it spells, if it is valid.
    #[must_use]
    pub fn pseudonym_of_candidate(&self, candidate: &E164Candidate<'_>) -> [u8; 32] {
        self.hash(candidate.as_str())
    }

    fn hash(&self, e164: &str) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(e164.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn master(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; 32])
    }

    fn phone(input: &str) -> Phone {
        Phone::parse(input, None).expect("test number is valid")
    }

    const BUSINESS_A: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_000a);
    const BUSINESS_B: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_000b);

    #[test]
    fn pseudonym_is_deterministic_for_the_same_key_business_and_number() {
        let first = PseudonymKey::derive(&master(1), BUSINESS_A).pseudonym(&phone("+31612345678"));
        let second = PseudonymKey::derive(&master(1), BUSINESS_A).pseudonym(&phone("+31612345678"));
        assert_eq!(first, second);
    }

    #[test]
    fn pseudonym_is_the_same_for_every_spelling_of_a_number() {
        let key = PseudonymKey::derive(&master(1), BUSINESS_A);
        let national = Phone::parse("06 12345678", Some("NL")).expect("valid");
        assert_eq!(
            key.pseudonym(&phone("0031 6 1234 5678")),
            key.pseudonym(&national)
        );
    }

    #[test]
    fn pseudonym_differs_per_business() {
        let number = phone("+31612345678");
        let a = PseudonymKey::derive(&master(1), BUSINESS_A).pseudonym(&number);
        let b = PseudonymKey::derive(&master(1), BUSINESS_B).pseudonym(&number);
        assert_ne!(a, b);
    }

    #[test]
    fn pseudonym_differs_per_master_key() {
        let number = phone("+31612345678");
        let one = PseudonymKey::derive(&master(1), BUSINESS_A).pseudonym(&number);
        let two = PseudonymKey::derive(&master(2), BUSINESS_A).pseudonym(&number);
        assert_ne!(one, two);
    }

    #[test]
    fn pseudonym_differs_per_number() {
        let key = PseudonymKey::derive(&master(1), BUSINESS_A);
        assert_ne!(
            key.pseudonym(&phone("+31612345678")),
            key.pseudonym(&phone("+31612345679"))
        );
    }

    #[test]
    fn pseudonym_is_not_a_plain_sha256_of_the_number() {
        let number = phone("+31612345678");
        let plain: [u8; 32] = Sha256::digest(number.as_e164().as_bytes()).into();
        let keyed = PseudonymKey::derive(&master(1), BUSINESS_A).pseudonym(&number);
        assert_ne!(keyed, plain);
    }

    #[test]
    fn pseudonym_matches_an_independent_hkdf_then_hmac_computation() {
        // Pins the derivation (salt, info layout, HMAC input) so that a
        // refactor cannot silently change every stored pseudonym.
        let mut info = b"consentgate/v1/subject-pseudonym/".to_vec();
        info.extend_from_slice(BUSINESS_A.as_bytes());
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, &[1u8; 32])
            .expand(&info, &mut key)
            .expect("32 bytes");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any length");
        mac.update(b"+31612345678");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();

        let actual = PseudonymKey::derive(&master(1), BUSINESS_A).pseudonym(&phone("+31612345678"));
        assert_eq!(actual, expected);
    }

    #[test]
    fn debug_prints_no_key_material() {
        let key = PseudonymKey::derive(&master(1), BUSINESS_A);
        let shown = format!("{key:?}");
        assert_eq!(shown, "PseudonymKey([redacted])");
    }
}
