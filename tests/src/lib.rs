//! Shared harness for the end-to-end tests: service discovery, fresh schemas and indexes.

pub mod engine_direct;
pub mod search_env;
pub mod store_suite;
pub mod workload;
