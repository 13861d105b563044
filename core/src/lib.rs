//! jobs-core: the job rules shared by the browser (WASM), the API, the sync and the CLI.
//!
//! Pure: no I/O, no clock, no randomness. Time and ids are passed in.

pub(crate) mod float;
pub mod issue;
pub mod json_len;
pub mod metadata;
pub mod model;
pub mod msg;
pub mod query;
pub mod search;
pub mod spec;
pub mod sql;
pub mod status;
pub mod sync;
pub mod text;
pub mod time;
pub mod tree;
pub mod validate;

#[cfg(feature = "host-numbers")]
pub use float::{HostNumbers, use_host_numbers};
pub use issue::{Code, Issue};
pub use model::{Job, JobStatus, JobType};
pub use time::Timestamp;
pub use tree::{Json, Object};
