//! Sans-IO implementation of the Alarm Center wire protocols spoken by Dahua (and OEM) NVRs, DVRs and
//! cameras and by XM/HiSilicon cameras.
//!
//! - [`Decoder`] turns arbitrary chunks of one TCP stream into whole [`Frame`]s (DVRIP, DHIP, XM, bare
//!   JSON, HTTP requests, or `junk` for bytes that are none of these), with a bounded buffer.
//! - [`Session`] classifies frames, extracts [`Event`]s and keeps the per-stream state that the DVRIP
//!   0x69 bitmask snapshots need.
//! - [`encode`] builds frames of every variant (tests, simulator).
//! - [`FrameRecord`] is the stable JSON shape of one decoded frame (`alarm-center decode`, HTTP API).
//!
//! No sockets, no clock, no async runtime: bytes in, frames and events out.
//! All multi-byte integers on the wire are little-endian unless a field's doc says otherwise.
#![forbid(unsafe_code)]

pub mod addr_text;
pub mod decoder;
pub mod dhip;
pub mod digits;
pub mod dvrip;
pub mod encode;
pub mod event;
pub mod fragment;
pub mod frame;
pub mod http;
mod json_body;
pub mod object_bounds;
pub mod record;
pub mod session;
pub mod text;
pub mod xm;

pub use decoder::{Decoder, DecoderConfig, DEFAULT_MAX_FRAME};
pub use event::{Action, DeviceInfo, Event, JsonText};
pub use frame::{Frame, FrameError, Protocol};
pub use record::FrameRecord;
pub use session::{BodyFormat, Decoded, Kind, Session};
