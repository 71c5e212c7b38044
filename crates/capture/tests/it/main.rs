//! The capture crate's tests, in one binary: pcap/pcapng files written here and captured on loopback,
//! the hex-dump fixtures, and hostile input.
mod common;

mod capture_loopback;
mod capture_synthetic;
mod hex_fixtures;
mod robustness;
