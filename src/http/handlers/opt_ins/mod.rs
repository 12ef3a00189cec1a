//! Opt-ins (scope `consents:write`).

pub mod confirm;
pub mod record;
