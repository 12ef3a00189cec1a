//! Integration tests: the real service over HTTP, on SQLite always and on
//! PostgreSQL whenever TEST_POSTGRES_URL is set (CI sets it and refuses to skip).
//! One binary, to keep link time down.

mod helpers;

mod auth;
mod chain;
mod checks;
mod errors;
mod keys;
mod migrations;
mod openapi;
mod ops;
mod privacy;
