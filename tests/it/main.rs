//! The one integration-test binary; a module per area.

mod api;
mod store;
mod store_data_api;
