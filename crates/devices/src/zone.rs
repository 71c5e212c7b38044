//! Device clocks: a device reports its local time without a zone; its configured zone gives the offset.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// The time zone called `name`: `local` (this machine's), `UTC`, or an IANA name.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "local" => Ok(TimeZone::system()),
        "UTC" | "utc" => Ok(TimeZone::UTC),
        _ => TimeZone::get(name).map_err(|e| format!("unknown time zone {name:?} ({e})")),
    }
}

/// A device's local time (`2024-05-01 10:00:00`, no zone) written as RFC 3339 with the offset of `tz`
/// (`2024-05-01T10:00:00+02:00`). Text that is not such a time, or already has an offset, is returned as is.
pub fn zoned_device_time(text: &str, tz: &TimeZone) -> String {
    let trimmed = text.trim();
    match trimmed.parse::<DateTime>() {
        Ok(civil) if !has_offset(trimmed) => match civil.to_zoned(tz.clone()) {
            Ok(zoned) => zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            Err(_) => text.to_owned(),
        },
        _ => text.to_owned(),
    }
}

fn has_offset(text: &str) -> bool {
    let time = text.get(10..).unwrap_or("");
    time.ends_with('Z') || time.contains('+') || time.rfind('-').is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_times_get_their_zone() {
        let berlin = zone("Europe/Berlin").unwrap();
        assert_eq!(
            zoned_device_time("2024-05-01 10:00:00", &berlin),
            "2024-05-01T10:00:00+02:00"
        );
        assert_eq!(
            zoned_device_time("2024-01-16 10:00:00", &berlin),
            "2024-01-16T10:00:00+01:00"
        );
        assert_eq!(
            zoned_device_time("2024-01-16 10:00:00", &TimeZone::UTC),
            "2024-01-16T10:00:00+00:00"
        );
        assert_eq!(zoned_device_time("not a time", &berlin), "not a time");
        assert_eq!(
            zoned_device_time("2024-01-16T10:00:00Z", &berlin),
            "2024-01-16T10:00:00Z"
        );
        assert!(zone("Nowhere/Else").is_err());
    }
}
