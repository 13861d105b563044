//! Subcommands of `jobsctl`, one module each; the binary only parses arguments and dispatches.

pub mod data_api;
pub mod dead_letters;
pub mod migrate;
pub mod reindex;
pub mod serve;
pub mod sync;
pub mod token;
pub mod validate;
pub mod verify;
