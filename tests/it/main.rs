//! The one integration-test binary; a module per area.

mod api;
mod store;
