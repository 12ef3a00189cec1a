//! Integration tests: the real service over HTTP, on SQLite always and on
//! PostgreSQL whenever TEST_POSTGRES_URL is set (CI sets it and refuses to skip).
//! One binary, to keep link time down.

mod backends;
mod helpers;

mod audit;
mod auth;
mod browser;
mod chain;
mod channels;
mod checks;
mod claims;
mod cli;
mod console;
mod decisions_api;
mod errors;
mod fail_closed;
mod hostile;
mod import;
mod keys;
mod layers;
mod leases;
mod ledger;
mod migrations;
mod openapi;
mod ops;
mod preferences;
mod privacy;
mod residue;
mod retention;
mod schema;
mod scopes;
mod stream;
mod subjects;
mod withdrawals;
mod writer;
