//! Shared harness for the end-to-end tests: service discovery, fresh schemas and indexes.
