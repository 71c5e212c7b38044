//! The simulator's tests, in one binary: every variant against a real server, and the load tests
//! (ignored; `cargo test --release -p alarm-center-sim --test it -- --ignored --nocapture scale::`).

mod scale;
mod simulate;
