//! The one integration-test binary; a module per area.

mod api;
mod convergence;
mod search;
mod store;
mod store_data_api;
mod sync;
