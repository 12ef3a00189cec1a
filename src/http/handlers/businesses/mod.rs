//! Businesses (tenants); created by the operator.

pub mod create;
