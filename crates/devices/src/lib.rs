//! The device core of alarm-center, sans-IO (issue 11 item 1, first part): the decisions about a
//! device that depend on time, as plain functions and data driven by explicit times. No socket, no
//! clock, no lock, no runtime: the caller says what time it is (milliseconds on a monotonic clock of
//! its choice), so every rule is tested in microseconds with exact times.
//!
//! - [`Presence`]: online or offline, with every change stamped after the one before.
//! - [`Supervision`]: when a silent device goes offline (its keep-alive period plus the grace, measured
//!   from its last frame or from the end of the last stall of ingest, whichever is later).
//! - [`ActiveAlarms`]: the alarms a device started and did not stop, for the synthetic stops made when
//!   it goes offline or when an alarm outlives its `[auto-clear]` limit.
//! - [`NewDeviceLimiter`]: how many devices never seen before may be created per minute, per source
//!   address and in all (token buckets, bounded memory).
//! - [`Device`]: one device's state and the decisions about it — `on_frame`, `poll_timeout`,
//!   `handle_timeout`, `attach` / `detach` — each returning the [`Effects`] (records to write, what to
//!   log and count) the caller carries out. It uses the pieces above.
//! - [`Deadlines`]: when each device next needs supervision (one sorted structure for all devices).
//! - [`resolve`]: who sent a frame — a configured device, the identity the frames carry, or the
//!   source address.

mod alarms;
mod deadlines;
mod device;
mod identity;
mod new_devices;
mod presence;
mod supervision;
mod zone;

pub use alarms::{ActiveAlarms, AlarmKey, MAX_ACTIVE};
pub use deadlines::Deadlines;
pub use device::{device_event, Attached, Device, Effects, Heard, Now, Policy, Profile};
pub use identity::{device_id, normalize_mac, resolve, Identity, KnownDevice, MAX_DEVICE_ID};
pub use new_devices::{Limit, NewDeviceLimiter, Refusal, MAX_SOURCES};
pub use presence::Presence;
pub use supervision::Supervision;
pub use zone::{zone, zoned_device_time};
