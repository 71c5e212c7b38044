//! Capture timestamps and their RFC 3339 rendering (no external time crate).

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
        let days = self.secs.div_euclid(86_400);
        let sod = self.secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let (h, m, s) = (sod / 3600, sod / 60 % 60, sod % 60);
        let nanos = self.nanos.min(999_999_999);
        if nanos.is_multiple_of(1000) {
            format!(
                "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z",
                nanos / 1000
            )
        } else {
            format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{nanos:09}Z")
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Proleptic Gregorian (year, month 1-12, day 1-31) of `days` since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
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
        let _ = ts(i64::MAX, u32::MAX);
        let _ = ts(i64::MIN, 0);
    }

    #[test]
    fn civil_matches_day_count_walk() {
        // Walk day by day over 1968..2404 and check continuity of the calendar.
        let (mut y, mut m, mut d) = civil_from_days(-731);
        assert_eq!((y, m, d), (1968, 1, 1));
        for days in -730..160_000 {
            let next = civil_from_days(days);
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let expected = if d < len[m as usize - 1] {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(next, expected, "day {days}");
            (y, m, d) = next;
        }
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
