//! Inbound messages from the messaging webhook (scope `consents:write`).

pub mod record;
