//! jobs-core: the job rules shared by the browser (WASM), the API, the sync and the CLI.
//!
//! Pure: no I/O, no clock, no randomness. Time and ids are passed in.

pub mod sql;
