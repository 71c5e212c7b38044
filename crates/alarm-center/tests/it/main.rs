//! The `alarm-center` binary's tests, in one test binary: each runs the real binary as a user would.
mod common;
mod data_dir_lock;
mod decode_cli;
mod log_escaping;
mod open_files;
mod query_cli;
mod serve_cli;
mod startup;
mod stdout_sink;
