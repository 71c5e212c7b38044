//! One module per command of the command line.

pub(crate) mod config;
pub(crate) mod decode;
pub(crate) mod query;
pub(crate) mod serve;
pub(crate) mod simulate;
