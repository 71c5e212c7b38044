//! Capture timestamps and their RFC 3339 rendering.

use std::fmt;

/// A capture timestamp: UTC seconds since the Unix epoch plus nanoseconds, as recorded by the
/// capture tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z (negative before the epoch).
    pub secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Timestamp {
    /// Builds a timestamp from seconds and a sub-second fraction counted in `1 / per_sec`
    /// units (`per_sec` = 1_000_000 for microseconds, 1_000_000_000 for nanoseconds); a
    /// fraction of a second or more carries into `secs`.
    pub fn from_fraction(secs: i64, frac: u64, per_sec: u64) -> Timestamp {
        Timestamp::from_ticks(frac, per_sec).add_secs(secs)
    }

    /// Builds a timestamp from `ticks` counted in `1 / per_sec` second units since the epoch
    /// (`per_sec` = 0 is treated as 1).
    pub fn from_ticks(ticks: u64, per_sec: u64) -> Timestamp {
        let per_sec = per_sec.max(1);
        let secs = i64::try_from(ticks / per_sec).unwrap_or(i64::MAX);
        let frac = u128::from(ticks % per_sec);
        let nanos = frac * 1_000_000_000 / u128::from(per_sec);
        Timestamp {
            secs,
            nanos: u32::try_from(nanos).unwrap_or(0),
        }
    }

    /// This timestamp shifted by `secs` seconds (saturating).
    pub fn add_secs(self, secs: i64) -> Timestamp {
        Timestamp {
            secs: self.secs.saturating_add(secs),
            nanos: self.nanos,
        }
    }

    /// Renders as RFC 3339 UTC, e.g. `2024-01-27T21:10:58.123456Z`: six fraction digits when
    /// the nanoseconds are a whole number of microseconds (what a microsecond capture gives),
    /// otherwise nine.
    pub fn to_rfc3339(&self) -> String {
        let nanos = self.nanos.min(999_999_999);
        let fraction = match nanos.is_multiple_of(1000) {
            true => format!("{:06}", nanos / 1000),
            false => format!("{nanos:09}"),
        };
        let (days, second) = (self.secs.div_euclid(86_400), self.secs.rem_euclid(86_400));
        let date = jiff::Span::new()
            .try_days(days)
            .ok()
            .and_then(|span| jiff::civil::date(1970, 1, 1).checked_add(span).ok());
        match date {
            Some(date) => format!(
                "{date}T{:02}:{:02}:{:02}.{fraction}Z",
                second / 3600,
                second / 60 % 60,
                second % 60
            ),
            // Beyond the years -9999..=9999: no real capture, so the raw count is shown.
            None => format!(
                "{}.{fraction} seconds since 1970-01-01T00:00:00Z",
                self.secs
            ),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64, nanos: u32) -> String {
        Timestamp { secs, nanos }.to_rfc3339()
    }

    #[test]
    fn rfc3339() {
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            ts(1_706_389_858, 123_456_000),
            "2024-01-27T21:10:58.123456Z"
        );
        assert_eq!(
            ts(1_706_389_858, 123_456_789),
            "2024-01-27T21:10:58.123456789Z"
        );
        assert_eq!(ts(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
        assert_eq!(ts(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(ts(-1, 500_000_000), "1969-12-31T23:59:59.500000Z");
        assert_eq!(ts(-62_135_596_800, 0), "0001-01-01T00:00:00.000000Z");
        assert_eq!(ts(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z");
        // Extremes must not panic.
        assert_eq!(
            ts(i64::MAX, u32::MAX),
            "9223372036854775807.999999999 seconds since 1970-01-01T00:00:00Z"
        );
        let _ = ts(i64::MIN, 0);
    }

    #[test]
    fn ticks() {
        assert_eq!(
            Timestamp::from_ticks(1_500_000, 1_000_000),
            Timestamp {
                secs: 1,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            Timestamp::from_ticks(3, 4),
            Timestamp {
                secs: 0,
                nanos: 750_000_000
            }
        );
        assert_eq!(Timestamp::from_ticks(u64::MAX, 1).secs, i64::MAX);
        assert_eq!(Timestamp::from_ticks(7, 0), Timestamp { secs: 7, nanos: 0 });
        assert_eq!(
            Timestamp::from_fraction(5, 2_000_000, 1_000_000),
            Timestamp { secs: 7, nanos: 0 }
        );
    }
}
