//! Domain types: parsed at the edge, trusted inside. No actix, no diesel here.

pub mod actor;
pub mod evidence;
pub mod history;
pub mod language;
pub mod phone;
pub mod scope;
pub mod time;

pub use actor::Actor;
pub use scope::{Scope, Scopes};
