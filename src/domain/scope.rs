//! API key scopes (SPEC section 5).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a key may do.
// Deserialised through `String` so that a wrong value is a data error naming the
// field (a derived enum makes serde_json report a non-string as a syntax error).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(try_from = "String")]
pub enum Scope {
    /// Record opt-ins, confirmations, revocations, blocks and inbound messages.
    #[serde(rename = "consents:write")]
    ConsentsWrite,
    /// Ask may_contact, one number or a batch.
    #[serde(rename = "checks:read")]
    ChecksRead,
    /// Export and erase subjects (GDPR Art. 15, 17, 20).
    #[serde(rename = "subjects:manage")]
    SubjectsManage,
    /// Read, verify and export the audit log.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// Create, list and revoke keys.
    #[serde(rename = "keys:manage")]
    KeysManage,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::ConsentsWrite,
        Scope::ChecksRead,
        Scope::SubjectsManage,
        Scope::AuditRead,
        Scope::KeysManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ConsentsWrite => "consents:write",
            Scope::ChecksRead => "checks:read",
            Scope::SubjectsManage => "subjects:manage",
            Scope::AuditRead => "audit:read",
            Scope::KeysManage => "keys:manage",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown scope name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope; expected one of consents:write, checks:read, subjects:manage, audit:read, keys:manage"
)]
pub struct UnknownScope;

impl TryFrom<String> for Scope {
    type Error = UnknownScope;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or(UnknownScope)
    }
}

/// A non-empty set of scopes, stored as space-separated names in a fixed order.
/// One bit per scope (in [`Scope::ALL`] order): copied with every authenticated
/// request, so it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scope {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl Scopes {
    pub fn all() -> Scopes {
        Scopes(Scope::ALL.into_iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// `None` for an empty set: a key that may do nothing is a mistake.
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Option<Scopes> {
        let bits = scopes.into_iter().fold(0, |bits, s| bits | s.bit());
        (bits != 0).then_some(Scopes(bits))
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0 & !other.0 == 0
    }

    /// In [`Scope::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        Scope::ALL.into_iter().filter(|s| self.contains(*s))
    }

    /// The stored form: names separated by one space.
    pub fn to_stored(&self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    pub fn from_stored(text: &str) -> Result<Scopes, UnknownScope> {
        let scopes = text
            .split_whitespace()
            .map(Scope::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Scopes::new(scopes).ok_or(UnknownScope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_round_trip_through_text_and_json() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{}\"", scope.as_str()));
        }
        assert!("admin".parse::<Scope>().is_err());
        assert!(serde_json::from_str::<Scope>("\"admin\"").is_err());
        assert!(serde_json::from_str::<Scope>("5").unwrap_err().is_data());
    }

    #[test]
    fn stored_form_is_ordered_and_round_trips() {
        let scopes =
            Scopes::new([Scope::KeysManage, Scope::ChecksRead, Scope::ChecksRead]).unwrap();
        assert_eq!(scopes.to_stored(), "checks:read keys:manage");
        assert_eq!(Scopes::from_stored(&scopes.to_stored()), Ok(scopes));
        assert!(Scopes::from_stored("").is_err(), "empty set is refused");
        assert!(Scopes::from_stored("checks:read root").is_err());
    }

    #[test]
    fn subset_is_what_a_key_may_grant() {
        let all = Scopes::all();
        let one = Scopes::new([Scope::AuditRead]).unwrap();
        assert!(one.is_subset(&all));
        assert!(!all.is_subset(&one));
    }
}
