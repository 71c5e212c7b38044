//! Clocks and time zones: receive times in Unix milliseconds, device times given their zone.

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

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
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

/// A point in time as a query gives it, in Unix ms: a duration ago (`10m`, `2h`, `7d`, `1h 30m`) or an
/// RFC 3339 time (`2024-05-01T10:00:00Z`). `now_ms` is the time durations count back from.
pub fn parse_instant(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(ago) = humantime::parse_duration(text.trim()) {
        let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        return Ok(now_ms.saturating_sub(ago));
    }
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            format!("{text:?}: give a duration ago such as 10m, 2h or 7d, or an RFC 3339 time such as 2024-05-01T10:00:00Z")
        })
}

fn has_offset(text: &str) -> bool {
    let time = text.get(10..).unwrap_or("");
    time.ends_with('Z') || time.contains('+') || time.rfind('-').is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_durations_ago_or_rfc3339_times() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_instant("10m", now), Ok(now - 600_000));
        assert_eq!(parse_instant("1h 30m", now), Ok(now - 5_400_000));
        assert_eq!(
            parse_instant("2024-05-01T10:00:00Z", now),
            Ok(1_714_557_600_000)
        );
        assert_eq!(
            parse_instant("2024-05-01T12:00:00+02:00", now),
            Ok(1_714_557_600_000)
        );
        assert!(parse_instant("yesterday", now).unwrap_err().contains("10m"));
        // Absurd durations saturate instead of overflowing.
        assert!(parse_instant("100000000y", now).unwrap() < 0);
        let _ = parse_instant("99999999999999999999y", now);
    }

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
