//! Clocks and time zones: receive times in Unix milliseconds, device times given their zone.

pub use alarm_center_devices::{zone, zoned_device_time};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
