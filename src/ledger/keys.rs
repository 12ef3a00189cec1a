//! New businesses and API keys, as values to store: ids, times, and a fresh
//! secret whose keyed hash is all that is stored (`crypto::api_key`). The writer
//! (`crate::writer`) stores them with their audit events.

use uuid::Uuid;

use crate::crypto::api_key::{self, SecretHasher};
use crate::domain::Scopes;
use crate::store::businesses::Business;
use crate::store::keys::NewApiKey;

/// A new key with a fresh secret: the key to store (holding only the keyed hash
/// of the secret) and the bearer token to show the client once. Microseconds.
pub fn mint_key(
    hasher: &SecretHasher,
    business_id: Uuid,
    name: String,
    scopes: Scopes,
) -> (NewApiKey, String) {
    let id = Uuid::now_v7();
    let secret = api_key::Secret::generate();
    let key = NewApiKey {
        id,
        business_id,
        name,
        scopes,
        secret_hash: hasher.hash(id, &secret),
        created_at: crate::domain::time::now(),
    };
    (key, api_key::format_token(id, &secret))
}

/// A new business and its first key holding every scope: the business, the key
/// to store, and the key's bearer token to show once.
pub fn new_business(
    hasher: &SecretHasher,
    name: String,
    policy: String,
) -> (Business, NewApiKey, String) {
    let business = Business {
        id: Uuid::now_v7(),
        name,
        policy,
        created_at: crate::domain::time::now(),
    };
    let (key, secret) = mint_key(hasher, business.id, "first key".to_owned(), Scopes::all());
    (business, key, secret)
}
