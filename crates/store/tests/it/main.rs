//! The store's tests, in one binary: the event log, devices, retention, durability across crashes, and
//! schema creation and upgrades.

mod common;
mod device_index;
mod durability;
mod page_size;
mod schema;
mod store;
