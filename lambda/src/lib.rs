//! jobs-lambda: the imperative shell around jobs-core (store, search, API, sync, binaries).

pub mod api;
pub mod cli;
pub mod clock;
pub mod data_api;
pub mod db;
pub mod migrate;
pub mod pg;
pub mod pg_tls;
pub mod retry;
pub mod search;
pub mod store;
pub mod sync_run;
