//! The store's tests, in one binary: the event log, devices, retention, and durability across crashes.

mod durability;
mod store;
