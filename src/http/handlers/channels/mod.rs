//! Channel connections of the caller's business (scope `keys:manage`): where a
//! messaging platform's webhooks come in (SPEC section 10).

pub mod create;
pub mod list;
pub mod revoke;
