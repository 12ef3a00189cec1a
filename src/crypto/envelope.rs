//! AEAD envelopes for personal fields, and per-subject data keys that make
//! erasure a matter of deleting one key (crypto-shredding).
//!
//! Every personal field (phone number, evidence: IP, user agent, source URL,
//! ...) is stored only as ciphertext (SPEC section 6; encryption is one of the
//! measures GDPR Art. 32(1)(a) names). Each subject has its own random 256-bit
//! data key (DEK); the DEK is stored wrapped (encrypted) under a key-encryption
//! key (KEK) derived from the master key with HKDF-SHA256
//! (`info = "consentgate/v1/kek"`). Erasing a subject (Art. 17) deletes its
//! wrapped DEK: the ciphertexts that remain, including those inside
//! append-only audit events that must keep verifying, can then never be read
//! again, by anyone, from any backup.
//!
//! Format of a sealed value (a field, or a wrapped DEK):
//!
//! ```text
//! version (1 byte, = 1) || nonce (24 bytes) || ciphertext || tag (16 bytes)
//! ```
//!
//! The cipher is XChaCha20-Poly1305: its 192-bit nonce can be drawn at random
//! for every encryption without a realistic risk of reuse, so no nonce counter
//! has to survive restarts or be shared between nodes. The associated data
//! ([`Aad`]) binds a ciphertext to its place: business id, subject id and a
//! field label. A ciphertext copied to another subject's row or another column
//! fails to decrypt instead of showing one person's data as another's.
//!
//! Depends on `chacha20poly1305` (with its `OsRng`), `hkdf`, `sha2`, `zeroize`,
//! `uuid` and [`MasterKey`]; no primitive is implemented here. Nothing here
//! touches storage: callers persist the byte strings returned.

use std::fmt;

use chacha20poly1305::aead::rand_core::RngCore as _;
use chacha20poly1305::aead::{AeadCore as _, AeadInPlace as _, KeyInit as _, OsRng};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::master_key::MasterKey;

/// Format version, the first byte of every sealed value. It is also the first
/// byte of the associated data, so the header is authenticated too.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// Version byte and nonce.
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Bytes a sealed value has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Length of a wrapped data key.
pub const WRAPPED_KEY_LEN: usize = SEAL_OVERHEAD + KEY_LEN;

/// HKDF `info` for the key-encryption key.
const KEK_INFO: &[u8] = b"consentgate/v1/kek";
/// Field label in the associated data of a wrapped data key.
const DATA_KEY_FIELD: &str = "consentgate/v1/data-key";

/// Why a sealed value or wrapped key could not be opened. Messages carry no
/// key material and no plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Shorter than the version byte, nonce and tag.
    #[error("sealed value is truncated")]
    Truncated,
    /// The first byte is not a format version this code knows.
    #[error("sealed value has unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Authentication failed: wrong key, wrong associated data (moved to
    /// another subject, business or field), or the bytes were altered.
    #[error("decryption failed: wrong key, wrong context or tampered data")]
    Decrypt,
    /// A wrapped data key is not [`WRAPPED_KEY_LEN`] bytes long.
    #[error("wrapped data key has the wrong length")]
    WrappedKeyLength,
}

/// The key-encryption key: wraps and unwraps subjects' data keys.
///
/// Derived from the master key, never stored. Zeroized on drop (the cipher
/// zeroizes its key); `Debug` prints no key material.
pub struct Kek {
    cipher: XChaCha20Poly1305,
}

impl Kek {
    /// Derives the key-encryption key from the master key with HKDF-SHA256.
    #[must_use]
    pub fn derive(master: &MasterKey) -> Kek {
        // No salt: the master key is already 32 uniformly random bytes
        // (RFC 5869, section 3.1).
        let hkdf = Hkdf::<Sha256>::new(None, master.expose());
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        // Cannot fail: 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        hkdf.expand(KEK_INFO, key.as_mut_slice())
            .expect("HKDF-SHA256 can expand to 32 bytes");
        Kek {
            cipher: XChaCha20Poly1305::new(Key::from_slice(key.as_slice())),
        }
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

/// Associated data: where a ciphertext belongs.
///
/// Encoded as the format version followed by three length-prefixed parts
/// (8-byte big-endian length, then the bytes): business id, subject id, field
/// label. Length prefixes keep the encoding unambiguous for any label.
#[derive(Clone, PartialEq, Eq)]
pub struct Aad {
    business_id: Uuid,
    subject_id: Uuid,
    field: &'static str,
    encoded: Vec<u8>,
}

impl Aad {
    /// The associated data for `field` of one subject of one business.
    ///
    /// `field` is `&'static str` on purpose: labels are constants in code
    /// (`"evidence"`, `"phone"`), never data from a request.
    #[must_use]
    pub fn new(business_id: Uuid, subject_id: Uuid, field: &'static str) -> Aad {
        let parts: [&[u8]; 3] = [
            business_id.as_bytes(),
            subject_id.as_bytes(),
            field.as_bytes(),
        ];
        let mut encoded = Vec::with_capacity(1 + 3 * 8 + 2 * 16 + field.len());
        encoded.push(VERSION);
        for part in parts {
            encoded.extend_from_slice(&(part.len() as u64).to_be_bytes());
            encoded.extend_from_slice(part);
        }
        Aad {
            business_id,
            subject_id,
            field,
            encoded,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }
}

impl fmt::Debug for Aad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aad")
            .field("business_id", &self.business_id)
            .field("subject_id", &self.subject_id)
            .field("field", &self.field)
            .finish()
    }
}

/// A subject's data key (DEK): 256 random bits that encrypt all of the
/// subject's personal fields.
///
/// Stored only wrapped ([`DataKey::wrap`]). Deleting the wrapped key is the
/// erasure. Zeroized on drop; `Debug` prints no key material.
pub struct DataKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl DataKey {
    /// A fresh random data key from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes (as every use of
    /// `OsRng` does); without them no key can be made safely.
    #[must_use]
    pub fn generate() -> DataKey {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(key.as_mut_slice());
        DataKey { key }
    }

    /// Encrypts this key under the KEK, bound to its business and subject, for
    /// storage. The result is [`WRAPPED_KEY_LEN`] bytes.
    #[must_use]
    pub fn wrap(&self, kek: &Kek, business_id: Uuid, subject_id: Uuid) -> Vec<u8> {
        let aad = Aad::new(business_id, subject_id, DATA_KEY_FIELD);
        seal_with(&kek.cipher, &aad, self.key.as_slice())
    }

    /// Decrypts a key made by [`DataKey::wrap`] for the same business and
    /// subject.
    ///
    /// # Errors
    ///
    /// [`CryptoError`] if `wrapped` is truncated, has the wrong length or
    /// version, was wrapped under another KEK or for another subject or
    /// business, or was altered.
    pub fn unwrap(
        wrapped: &[u8],
        kek: &Kek,
        business_id: Uuid,
        subject_id: Uuid,
    ) -> Result<DataKey, CryptoError> {
        let (nonce, ciphertext, tag) = split(wrapped)?;
        if ciphertext.len() != KEY_LEN {
            return Err(CryptoError::WrappedKeyLength);
        }
        let aad = Aad::new(business_id, subject_id, DATA_KEY_FIELD);
        // Decrypt straight into zeroizing memory: the plaintext key never sits
        // in an ordinary buffer.
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(ciphertext);
        kek.cipher
            .decrypt_in_place_detached(nonce, aad.as_bytes(), key.as_mut_slice(), tag)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(DataKey { key })
    }

    /// Encrypts a personal field under this key with a fresh random nonce.
    /// The result is [`SEAL_OVERHEAD`] bytes longer than `plaintext`.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes for the nonce.
    #[must_use]
    pub fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.cipher(), aad, plaintext)
    }

    /// Decrypts a value made by [`DataKey::seal`] with the same key and the
    /// same associated data.
    ///
    /// # Errors
    ///
    /// [`CryptoError`] if `sealed` is truncated or has an unknown version, or
    /// if the key or associated data differ, or any byte was altered. Never
    /// panics on any input.
    pub fn open(&self, aad: &Aad, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (nonce, ciphertext, tag) = split(sealed)?;
        let mut plaintext = ciphertext.to_vec();
        // The tag is checked before anything is decrypted, so on failure the
        // buffer still holds ciphertext only.
        self.cipher()
            .decrypt_in_place_detached(nonce, aad.as_bytes(), &mut plaintext, tag)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(plaintext)
    }

    /// A cipher instance for this key; it zeroizes its copy of the key on drop.
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.key.as_slice()))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// `version || nonce || ciphertext || tag`, encrypted in place in the output
/// buffer. The buffer is allocated at its final size, so it never reallocates
/// and leaves no stray copy of the plaintext behind.
fn seal_with(cipher: &XChaCha20Poly1305, aad: &Aad, plaintext: &[u8]) -> Vec<u8> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let mut sealed = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
    sealed.push(VERSION);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plaintext);
    // Fails only for plaintexts beyond XChaCha20-Poly1305's limit of about
    // 256 GiB, which no personal field comes near.
    let tag = cipher
        .encrypt_in_place_detached(&nonce, aad.as_bytes(), &mut sealed[HEADER_LEN..])
        .expect("XChaCha20-Poly1305 encrypts up to 256 GiB");
    sealed.extend_from_slice(&tag);
    sealed
}

/// Splits a sealed value into nonce, ciphertext and tag after checking its
/// version and minimum length.
fn split(sealed: &[u8]) -> Result<(&XNonce, &[u8], &Tag), CryptoError> {
    let (&version, rest) = sealed.split_first().ok_or(CryptoError::Truncated)?;
    if version != VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Truncated);
    }
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    Ok((XNonce::from_slice(nonce), ciphertext, Tag::from_slice(tag)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::Aead as _;
    use chacha20poly1305::aead::Payload;
    use proptest::prelude::*;

    const BUSINESS: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_000a);
    const OTHER_BUSINESS: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_000b);
    const SUBJECT: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
    const OTHER_SUBJECT: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);

    fn kek(byte: u8) -> Kek {
        Kek::derive(&MasterKey::from_bytes([byte; 32]))
    }

    fn aad(field: &'static str) -> Aad {
        Aad::new(BUSINESS, SUBJECT, field)
    }

    #[test]
    fn seal_then_open_returns_the_plaintext() {
        let key = DataKey::generate();
        let sealed = key.seal(&aad("evidence"), b"ip=192.0.2.7");
        assert_eq!(
            key.open(&aad("evidence"), &sealed),
            Ok(b"ip=192.0.2.7".to_vec())
        );
    }

    #[test]
    fn seal_then_open_round_trips_an_empty_plaintext() {
        let key = DataKey::generate();
        let sealed = key.seal(&aad("evidence"), b"");
        assert_eq!(sealed.len(), SEAL_OVERHEAD);
        assert_eq!(key.open(&aad("evidence"), &sealed), Ok(Vec::new()));
    }

    #[test]
    fn sealed_value_is_version_nonce_ciphertext_and_tag() {
        let key = DataKey::generate();
        let sealed = key.seal(&aad("phone"), b"+31612345678");
        assert_eq!(sealed[0], 1);
        assert_eq!(sealed.len(), 1 + 24 + 12 + 16);
    }

    #[test]
    fn sealed_value_does_not_contain_the_plaintext() {
        let key = DataKey::generate();
        let sealed = key.seal(&aad("phone"), b"+31612345678");
        assert!(!sealed.windows(4).any(|w| w == b"3161"));
    }

    #[test]
    fn seal_uses_a_fresh_nonce_every_time() {
        let key = DataKey::generate();
        let first = key.seal(&aad("phone"), b"+31612345678");
        let second = key.seal(&aad("phone"), b"+31612345678");
        assert_ne!(first[1..25], second[1..25], "nonces repeat");
        assert_ne!(first, second);
    }

    #[test]
    fn generate_makes_a_different_key_every_time() {
        let a = DataKey::generate();
        let b = DataKey::generate();
        assert_ne!(*a.key, *b.key);
        assert_ne!(*a.key, [0u8; 32]);
    }

    #[test]
    fn open_fails_with_another_data_key() {
        let sealed = DataKey::generate().seal(&aad("phone"), b"+31612345678");
        assert_eq!(
            DataKey::generate().open(&aad("phone"), &sealed),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn open_fails_when_moved_to_another_subject_business_or_field() {
        let key = DataKey::generate();
        let sealed = key.seal(&aad("phone"), b"+31612345678");
        let elsewhere = [
            (Aad::new(BUSINESS, OTHER_SUBJECT, "phone"), "other subject"),
            (Aad::new(OTHER_BUSINESS, SUBJECT, "phone"), "other business"),
            (Aad::new(BUSINESS, SUBJECT, "evidence"), "other field"),
            (Aad::new(SUBJECT, BUSINESS, "phone"), "ids swapped"),
        ];
        for (other, why) in elsewhere {
            assert_eq!(
                key.open(&other, &sealed),
                Err(CryptoError::Decrypt),
                "{why}"
            );
        }
    }

    #[test]
    fn open_rejects_truncated_values_without_panicking() {
        let key = DataKey::generate();
        let sealed = key.seal(&aad("phone"), b"+31612345678");
        assert_eq!(key.open(&aad("phone"), &[]), Err(CryptoError::Truncated));
        assert_eq!(
            key.open(&aad("phone"), &sealed[..1]),
            Err(CryptoError::Truncated)
        );
        assert_eq!(
            key.open(&aad("phone"), &sealed[..SEAL_OVERHEAD - 1]),
            Err(CryptoError::Truncated)
        );
        for len in SEAL_OVERHEAD..sealed.len() {
            assert_eq!(
                key.open(&aad("phone"), &sealed[..len]),
                Err(CryptoError::Decrypt),
                "{len}"
            );
        }
    }

    #[test]
    fn open_rejects_an_unknown_version() {
        let key = DataKey::generate();
        let mut sealed = key.seal(&aad("phone"), b"+31612345678");
        for version in [0u8, 2, 255] {
            sealed[0] = version;
            assert_eq!(
                key.open(&aad("phone"), &sealed),
                Err(CryptoError::UnsupportedVersion(version))
            );
        }
    }

    #[test]
    fn wrap_then_unwrap_returns_a_key_that_opens_the_subject_data() {
        let kek = kek(1);
        let key = DataKey::generate();
        let sealed = key.seal(&aad("phone"), b"+31612345678");
        let wrapped = key.wrap(&kek, BUSINESS, SUBJECT);
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);

        let unwrapped = DataKey::unwrap(&wrapped, &kek, BUSINESS, SUBJECT).expect("unwraps");
        assert_eq!(
            unwrapped.open(&aad("phone"), &sealed),
            Ok(b"+31612345678".to_vec())
        );
    }

    #[test]
    fn kek_derivation_is_deterministic_across_instances() {
        let wrapped = DataKey::generate().wrap(&kek(1), BUSINESS, SUBJECT);
        assert!(DataKey::unwrap(&wrapped, &kek(1), BUSINESS, SUBJECT).is_ok());
    }

    #[test]
    fn unwrap_fails_under_a_kek_from_another_master_key() {
        let wrapped = DataKey::generate().wrap(&kek(1), BUSINESS, SUBJECT);
        assert_eq!(
            DataKey::unwrap(&wrapped, &kek(2), BUSINESS, SUBJECT).map(|_| ()),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn unwrap_fails_for_another_subject_or_business() {
        let kek = kek(1);
        let wrapped = DataKey::generate().wrap(&kek, BUSINESS, SUBJECT);
        for (business, subject, why) in [
            (BUSINESS, OTHER_SUBJECT, "other subject"),
            (OTHER_BUSINESS, SUBJECT, "other business"),
        ] {
            assert_eq!(
                DataKey::unwrap(&wrapped, &kek, business, subject).map(|_| ()),
                Err(CryptoError::Decrypt),
                "{why}"
            );
        }
    }

    #[test]
    fn unwrap_rejects_malformed_input_without_panicking() {
        let kek = kek(1);
        let wrapped = DataKey::generate().wrap(&kek, BUSINESS, SUBJECT);
        let unwrap = |bytes: &[u8]| DataKey::unwrap(bytes, &kek, BUSINESS, SUBJECT).map(|_| ());
        assert_eq!(unwrap(&[]), Err(CryptoError::Truncated));
        assert_eq!(
            unwrap(&wrapped[..SEAL_OVERHEAD - 1]),
            Err(CryptoError::Truncated)
        );
        assert_eq!(
            unwrap(&wrapped[..WRAPPED_KEY_LEN - 1]),
            Err(CryptoError::WrappedKeyLength)
        );
        let mut longer = wrapped.clone();
        longer.push(0);
        assert_eq!(unwrap(&longer), Err(CryptoError::WrappedKeyLength));
        let mut versioned = wrapped;
        versioned[0] = 9;
        assert_eq!(unwrap(&versioned), Err(CryptoError::UnsupportedVersion(9)));
    }

    #[test]
    fn a_sealed_field_cannot_be_unwrapped_as_a_data_key() {
        // Even with the right length, a field ciphertext is not a wrapped key:
        // different key, different associated data.
        let key = DataKey::generate();
        let sealed = key.seal(&aad("phone"), &[0u8; 32]);
        assert_eq!(
            DataKey::unwrap(&sealed, &kek(1), BUSINESS, SUBJECT).map(|_| ()),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn wrapped_key_decrypts_with_an_independent_hkdf_and_xchacha_implementation() {
        // Pins the format (HKDF info, AAD encoding, byte layout) so a refactor
        // cannot silently make stored keys unreadable.
        let key = DataKey::generate();
        let wrapped = key.wrap(&kek(1), BUSINESS, SUBJECT);

        let mut kek_bytes = [0u8; 32];
        Hkdf::<Sha256>::new(None, &[1u8; 32])
            .expand(b"consentgate/v1/kek", &mut kek_bytes)
            .expect("32 bytes");
        let mut aad = vec![1u8];
        for part in [
            &BUSINESS.as_bytes()[..],
            &SUBJECT.as_bytes()[..],
            b"consentgate/v1/data-key",
        ] {
            aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            aad.extend_from_slice(part);
        }
        let plain = XChaCha20Poly1305::new(Key::from_slice(&kek_bytes))
            .decrypt(
                XNonce::from_slice(&wrapped[1..25]),
                Payload {
                    msg: &wrapped[25..],
                    aad: &aad,
                },
            )
            .expect("decrypts");
        assert_eq!(plain, key.key.to_vec());
    }

    #[test]
    fn aad_encoding_is_length_prefixed() {
        let aad = Aad::new(BUSINESS, SUBJECT, "phone");
        let mut expected = vec![1u8];
        expected.extend_from_slice(&16u64.to_be_bytes());
        expected.extend_from_slice(BUSINESS.as_bytes());
        expected.extend_from_slice(&16u64.to_be_bytes());
        expected.extend_from_slice(SUBJECT.as_bytes());
        expected.extend_from_slice(&5u64.to_be_bytes());
        expected.extend_from_slice(b"phone");
        assert_eq!(aad.as_bytes(), expected);
    }

    #[test]
    fn debug_prints_no_key_material() {
        let key = DataKey::generate();
        let shown = format!("{key:?}");
        assert_eq!(shown, "DataKey([redacted])");
        assert!(!shown.contains(&hex::encode(&key.key[..4])));
        assert_eq!(format!("{:?}", kek(1)), "Kek([redacted])");
        assert_eq!(
            format!("{:?}", Aad::new(BUSINESS, SUBJECT, "phone")),
            format!("Aad {{ business_id: {BUSINESS}, subject_id: {SUBJECT}, field: \"phone\" }}")
        );
    }

    proptest! {
        #[test]
        fn seal_then_open_round_trips_arbitrary_bytes(
            plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let key = DataKey::generate();
            let sealed = key.seal(&aad("evidence"), &plaintext);
            prop_assert_eq!(sealed.len(), plaintext.len() + SEAL_OVERHEAD);
            prop_assert_eq!(key.open(&aad("evidence"), &sealed), Ok(plaintext));
        }

        #[test]
        fn flipping_any_byte_of_a_sealed_value_makes_open_fail(
            plaintext in proptest::collection::vec(any::<u8>(), 0..256),
            index in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let key = DataKey::generate();
            let mut sealed = key.seal(&aad("evidence"), &plaintext);
            let at = index.index(sealed.len());
            sealed[at] ^= flip;
            prop_assert!(key.open(&aad("evidence"), &sealed).is_err(), "byte {} of {}", at, sealed.len());
        }

        #[test]
        fn flipping_any_byte_of_a_wrapped_key_makes_unwrap_fail(
            index in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let kek = kek(1);
            let mut wrapped = DataKey::generate().wrap(&kek, BUSINESS, SUBJECT);
            let at = index.index(wrapped.len());
            wrapped[at] ^= flip;
            prop_assert!(DataKey::unwrap(&wrapped, &kek, BUSINESS, SUBJECT).is_err());
        }

        #[test]
        fn open_never_panics_on_arbitrary_bytes(
            sealed in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let key = DataKey::generate();
            prop_assert!(key.open(&aad("evidence"), &sealed).is_err());
            prop_assert!(DataKey::unwrap(&sealed, &kek(1), BUSINESS, SUBJECT).is_err());
        }
    }
}
