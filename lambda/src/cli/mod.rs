//! Subcommands of `jobsctl`, one module each; the binary only parses arguments and dispatches.

pub mod validate;
