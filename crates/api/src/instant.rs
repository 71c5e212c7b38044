//! Points in time as queries give them.

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
}
