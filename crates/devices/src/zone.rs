//! Device clocks: a device reports its local time without a zone; its configured zone gives the offset.

use alarm_center_proto::digits::push_fixed;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Zoned;

/// How a zoned device time is written: RFC 3339 with the offset in hours and minutes.
const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%:z";

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
            Ok(zoned) => rfc3339(&zoned).unwrap_or_else(|| zoned.strftime(FORMAT).to_string()),
            Err(_) => text.to_owned(),
        },
        _ => text.to_owned(),
    }
}

/// [`FORMAT`] written digit by digit: an alarm's device time is formatted once per event, and jiff's
/// `strftime` interprets the format each time (about 1,500 instructions of the ~40,000 an alarm costs
/// the whole server, against ~100 here). `None` when the year has other than four digits or the
/// offset has seconds (zones before 1900): `strftime` writes those.
fn rfc3339(zoned: &Zoned) -> Option<String> {
    let year = u32::try_from(zoned.year()).ok().filter(|y| *y <= 9999)?;
    let offset = zoned.offset().seconds();
    if offset % 60 != 0 {
        return None;
    }
    let mut out = String::with_capacity(25);
    push_fixed(&mut out, year, 4);
    let fields = [
        ('-', zoned.month()),
        ('-', zoned.day()),
        ('T', zoned.hour()),
        (':', zoned.minute()),
        (':', zoned.second()),
    ];
    for (separator, value) in fields {
        out.push(separator);
        push_fixed(&mut out, u32::try_from(value).ok()?, 2);
    }
    let minutes = offset.unsigned_abs() / 60;
    out.push(if offset < 0 { '-' } else { '+' });
    push_fixed(&mut out, minutes / 60, 2);
    out.push(':');
    push_fixed(&mut out, minutes % 60, 2);
    Some(out)
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

    /// The hand-written format gives what `strftime` gives, across zones with odd offsets (Kathmandu
    /// +05:45, St John's −03:30, Lord Howe's half-hour DST), DST changes, years before 1900 (offsets
    /// with seconds) and the ends of the four-digit years.
    #[test]
    fn the_fast_format_writes_what_strftime_writes() {
        let zones = [
            "UTC",
            "Europe/Berlin",
            "America/St_Johns",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
            "America/Los_Angeles",
            "Europe/Amsterdam",
            "Pacific/Chatham",
        ];
        let mut checked = 0;
        for name in zones {
            let tz = zone(name).unwrap();
            for year in [0, 1, 1850, 1899, 1937, 1970, 2024, 2038, 9999] {
                for (month, day, hour, minute, second) in [
                    (1, 1, 0, 0, 0),
                    (3, 31, 2, 30, 0),
                    (3, 10, 2, 59, 59),
                    (10, 27, 2, 30, 7),
                    (11, 3, 1, 30, 0),
                    (12, 31, 23, 59, 59),
                ] {
                    let civil = jiff::civil::date(year, month, day).at(hour, minute, second, 0);
                    let Ok(zoned) = civil.to_zoned(tz.clone()) else {
                        continue;
                    };
                    let expected = zoned.strftime(FORMAT).to_string();
                    if let Some(fast) = rfc3339(&zoned) {
                        assert_eq!(fast, expected, "{name} {civil}");
                        checked += 1;
                    }
                    let text = civil.strftime("%Y-%m-%d %H:%M:%S").to_string();
                    assert_eq!(zoned_device_time(&text, &tz), expected, "{name} {text}");
                }
            }
        }
        assert!(checked > 200, "only {checked} times took the fast path");
    }
}
