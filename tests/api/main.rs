//! Integration tests: the real service over HTTP, on SQLite always and on
//! PostgreSQL whenever TEST_POSTGRES_URL is set (CI sets it and refuses to skip).
//! One binary, to keep link time down.

mod helpers;

mod audit;
mod auth;
mod chain;
mod checks;
mod cli;
mod errors;
mod hostile;
mod keys;
mod layers;
mod ledger;
mod migrations;
mod openapi;
mod ops;
mod privacy;
mod retention;
mod subjects;
