//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document.

pub mod health;
pub mod metrics;
pub mod openapi;
pub mod ready;
