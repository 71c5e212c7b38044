//! The server's end-to-end tests, in one binary (one link instead of one per file): real sockets on
//! 127.0.0.1:0, a temporary store, and the real MQTT broker and browser where the variables name them
//! (see `build.rs`). Run one group with `cargo test -p alarm-center-server --test it -- api::`.

mod common;

mod api;
mod api_security;
mod browser;
mod connection_threads;
mod device_index;
mod http_mode;
mod identity;
mod ingest;
mod limits;
mod mqtt;
mod mqtt_outsized;
mod new_devices;
mod ordering;
mod stall;
mod store_faults;
mod webhook;
mod write_ahead_log;
