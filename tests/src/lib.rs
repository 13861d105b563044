//! Shared harness for the end-to-end tests: service discovery, fresh schemas and indexes.

pub mod store_suite;
