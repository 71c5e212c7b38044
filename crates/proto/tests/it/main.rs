//! The protocol crate's tests, in one binary: the decoder against every framing, and property tests.

mod decoder;
mod properties;
