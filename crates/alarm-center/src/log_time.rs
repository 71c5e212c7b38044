//! The time at the start of each log line, in the text tracing-subscriber's `SystemTime` writes
//! (`2026-12-01T20:23:45.123456Z`: UTC, microseconds), with the part up to the second's dot made once
//! per second and thread. Made for every line, it cost about 4,800 instructions (tracing-subscriber
//! computes the date and writes each field through `write!`): with a camera that connects for each
//! alarm, two lines per alarm, about 5 % of the server's instructions (docs/benchmarks.md §21).

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use alarm_center_proto::digits::push_fixed;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// The log lines' timer (`tracing_subscriber::fmt().with_timer(LogTime)`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogTime;

thread_local! {
    /// The second (unix time) this thread last wrote, and its text: up to the dot (`…T20:23:45.`,
    /// [`PREFIX`] bytes), then the last line's microseconds and zone.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Bytes of `YYYY-MM-DDTHH:MM:SS.` (the years 1970 to 9999 have four digits).
const PREFIX: usize = 20;

impl FormatTime for LogTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        match write_time(w, SystemTime::now()) {
            Some(result) => result,
            // A clock before 1970 or past jiff's range (9999-12-30): tracing-subscriber's own text.
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// Writes `at` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`; `None` (having written nothing) for a time before
/// 1970 or past jiff's range (9999-12-30).
fn write_time(w: &mut impl fmt::Write, at: SystemTime) -> Option<fmt::Result> {
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    let (second, micros) = (since.as_secs(), since.subsec_micros());
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *text = prefix(second)?;
            *cached = second;
        }
        text.truncate(PREFIX);
        push_fixed(text, micros, 6);
        text.push('Z');
        Some(w.write_str(text))
    })
}

/// `YYYY-MM-DDTHH:MM:SS.` of a unix second in UTC, from 1970 to jiff's end (9999-12-30): always
/// [`PREFIX`] bytes.
fn prefix(second: u64) -> Option<String> {
    let at = jiff::Timestamp::from_second(i64::try_from(second).ok()?).ok()?;
    let text = at
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%Y-%m-%dT%H:%M:%S.")
        .to_string();
    (text.len() == PREFIX).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// What tracing-subscriber's `DateTime` writes for `at` (its `Display`: each field through
    /// `write!`, the microseconds truncated), from jiff's calendar fields.
    fn expected(at: SystemTime) -> String {
        let d = at.duration_since(UNIX_EPOCH).unwrap();
        let ts = jiff::Timestamp::from_second(d.as_secs() as i64).unwrap();
        let t = ts.to_zoned(jiff::tz::TimeZone::UTC);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            d.subsec_micros() // tracing-subscriber: nanos / 1_000
        )
    }

    fn written(at: SystemTime) -> String {
        let mut text = String::new();
        write_time(&mut text, at)
            .unwrap_or_else(|| panic!("{at:?} not written"))
            .unwrap();
        text
    }

    #[test]
    fn the_time_is_written_as_tracing_subscriber_writes_it_across_seconds() {
        let base = UNIX_EPOCH + Duration::from_secs(1_764_620_625); // 2025-12-01T20:23:45Z
        assert_eq!(
            written(base + Duration::from_nanos(7_999)),
            "2025-12-01T20:23:45.000007Z"
        );
        let times = [
            base,
            base + Duration::from_micros(1),
            base + Duration::from_micros(999_999),
            base + Duration::from_secs(1),
            base, // back: the cached second changes again
            base + Duration::from_nanos(123_456_789),
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_secs(951_782_400), // 2000-02-29T00:00:00Z
            UNIX_EPOCH + Duration::from_secs(253_402_128_000), // 9999-12-30T00:00:00Z, near jiff's end
            base + Duration::from_secs(86_400 * 366) + Duration::from_micros(42),
        ];
        for at in times {
            assert_eq!(written(at), expected(at));
        }
    }

    #[test]
    fn times_outside_1970_to_jiffs_end_are_left_to_tracing_subscriber() {
        let mut text = String::new();
        let after = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert!(write_time(&mut text, after).is_none());
        assert!(write_time(&mut text, UNIX_EPOCH - Duration::from_secs(1)).is_none());
        assert!(text.is_empty());
        // And the real timer writes now, as tracing-subscriber does: both parse, a moment apart.
        let mut ours = String::new();
        LogTime.format_time(&mut Writer::new(&mut ours)).unwrap();
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .unwrap();
        assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
        let ours: jiff::Timestamp = ours.parse().unwrap();
        let theirs: jiff::Timestamp = theirs.parse().unwrap();
        assert!(theirs.duration_since(ours).abs() < jiff::SignedDuration::from_secs(1));
    }
}
