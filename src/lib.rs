//! consentgate: the consent gate between a business and its customers' phones.
//!
//! Layers point inward (see STYLE.md): `http` and `cli` at the edge, `store` the
//! only place diesel exists, `domain`, `policy` and `crypto` free of both actix and
//! diesel. `startup::Application` is the one way to build the service, used by
//! `main` and by the tests alike.

pub mod audit;
pub mod channels;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod import;
pub mod ledger;
pub mod policy;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod writer;
