//! Revocations (scope `consents:write`).

pub mod record;
