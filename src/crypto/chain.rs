//! The audit chain hash (SPEC section 7).
//!
//! Each event's hash is `SHA-256(prev_hash || canonical(event))`, where
//! `prev_hash` is the previous event's 32-byte hash (32 zero bytes before the first
//! event of a business). `canonical(event)` is the concatenation of these fields,
//! in this order, each written as a 4-byte big-endian length followed by its UTF-8
//! bytes:
//!
//! 1. the format label `consentgate/audit/v1`
//! 2. business id (UUID, lowercase, hyphenated)
//! 3. seq (decimal, no leading zeros; the first event is 1)
//! 4. event id (UUID, lowercase, hyphenated)
//! 5. at (RFC 3339 in UTC with exactly six fraction digits and `Z`,
//!    e.g. `2026-11-21T10:00:00.123456Z`)
//! 6. type (e.g. `key.created`)
//! 7. actor (`operator`, `system`, `cli` or `key:<key id>`)
//! 8. subject id (UUID, or the empty string when the event has no subject)
//! 9. data: the event's JSON object exactly as stored (its bytes are hashed, so no
//!    JSON canonicalisation is needed to re-verify; personal fields in it are
//!    ciphertext, which is why an erased subject's events still verify)
//!
//! Length prefixes make the encoding unambiguous: no two different events encode
//! to the same bytes. A third party can re-implement this in a few lines.

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The label that starts every canonical encoding (and versions it).
pub const FORMAT_LABEL: &str = "consentgate/audit/v1";

/// The `prev_hash` of a business's first event.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The fields of an event that the hash covers.
#[derive(Debug, Clone, Copy)]
pub struct ChainedFields<'a> {
    pub business_id: Uuid,
    pub seq: i64,
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub event_type: &'a str,
    pub actor: &'a str,
    pub subject_id: Option<Uuid>,
    pub data: &'a str,
}

/// The canonical bytes of an event (see the module documentation).
pub fn canonical(fields: &ChainedFields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + fields.data.len());
    let subject = fields.subject_id.map(|s| s.to_string()).unwrap_or_default();
    let (business, seq, id, at) = (
        fields.business_id.to_string(),
        fields.seq.to_string(),
        fields.id.to_string(),
        format_at(fields.at),
    );
    let parts: [&[u8]; 9] = [
        FORMAT_LABEL.as_bytes(),
        business.as_bytes(),
        seq.as_bytes(),
        id.as_bytes(),
        at.as_bytes(),
        fields.event_type.as_bytes(),
        fields.actor.as_bytes(),
        subject.as_bytes(),
        fields.data.as_bytes(),
    ];
    for part in parts {
        let len = u32::try_from(part.len()).expect("an event field is far below 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// `SHA-256(prev_hash || canonical(fields))`.
pub fn event_hash(prev_hash: &[u8], fields: &ChainedFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(canonical(fields));
    hasher.finalize().into()
}

/// The RFC 3339 form the hash covers: UTC, six fraction digits, `Z`.
pub fn format_at(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChainedFields<'static> {
        ChainedFields {
            business_id: Uuid::parse_str("0192f7a0-0000-7000-8000-000000000001").unwrap(),
            seq: 1,
            id: Uuid::parse_str("0192f7a0-0000-7000-8000-000000000002").unwrap(),
            at: DateTime::parse_from_rfc3339("2026-11-21T10:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc),
            event_type: "business.created",
            actor: "operator",
            subject_id: None,
            data: r#"{"name":"Acme"}"#,
        }
    }

    #[test]
    fn the_encoding_is_length_prefixed_in_the_documented_order() {
        let bytes = canonical(&sample());
        let mut expected = Vec::new();
        for part in [
            "consentgate/audit/v1",
            "0192f7a0-0000-7000-8000-000000000001",
            "1",
            "0192f7a0-0000-7000-8000-000000000002",
            "2026-11-21T10:00:00.123456Z",
            "business.created",
            "operator",
            "",
            r#"{"name":"Acme"}"#,
        ] {
            expected.extend_from_slice(&(part.len() as u32).to_be_bytes());
            expected.extend_from_slice(part.as_bytes());
        }
        assert_eq!(bytes, expected);
    }

    #[test]
    fn every_covered_field_changes_the_hash() {
        let base = sample();
        let h = event_hash(&GENESIS, &base);
        let variants = [
            ChainedFields { seq: 2, ..base },
            ChainedFields {
                event_type: "key.created",
                ..base
            },
            ChainedFields {
                actor: "system",
                ..base
            },
            ChainedFields {
                subject_id: Some(Uuid::nil()),
                ..base
            },
            ChainedFields {
                data: r#"{"name":"Acme2"}"#,
                ..base
            },
            ChainedFields {
                at: base.at + chrono::Duration::microseconds(1),
                ..base
            },
            ChainedFields {
                id: Uuid::nil(),
                ..base
            },
            ChainedFields {
                business_id: Uuid::nil(),
                ..base
            },
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(
                event_hash(&GENESIS, v),
                h,
                "variant {i} must change the hash"
            );
        }
        assert_ne!(event_hash(&[1u8; 32], &base), h, "prev_hash is covered");
    }

    #[test]
    fn moving_bytes_between_adjacent_fields_changes_the_hash() {
        let base = sample();
        let a = ChainedFields {
            event_type: "ab",
            actor: "c",
            ..base
        };
        let b = ChainedFields {
            event_type: "a",
            actor: "bc",
            ..base
        };
        assert_ne!(event_hash(&GENESIS, &a), event_hash(&GENESIS, &b));
    }
}
