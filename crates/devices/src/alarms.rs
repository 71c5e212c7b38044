//! The alarms a device started and did not stop.

use std::collections::HashMap;
use std::time::Duration;

/// An alarm: event code and 0-based index (`None`: the device's own, not a channel's).
pub type AlarmKey = (String, Option<i64>);

/// Most alarms tracked as active per device. Codes and indexes come from the device, so a hostile one
/// could otherwise grow the table without bound; a real NVR has a few hundred at most.
pub const MAX_ACTIVE: usize = 4096;

/// Alarms started and not stopped, with when each started (milliseconds on the caller's clock).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ActiveAlarms {
    started: HashMap<AlarmKey, u64>,
}

impl ActiveAlarms {
    /// An alarm started at `now_ms`; a repeated start keeps the first time. `false` when it is not
    /// tracked because [`MAX_ACTIVE`] alarms are active already (it gets no synthetic stop).
    pub fn start(&mut self, key: AlarmKey, now_ms: u64) -> bool {
        if self.started.len() >= MAX_ACTIVE && !self.started.contains_key(&key) {
            return false;
        }
        self.started.entry(key).or_insert(now_ms);
        true
    }

    /// An alarm stopped.
    pub fn stop(&mut self, key: &AlarmKey) {
        self.started.remove(key);
    }

    /// Alarms active now.
    pub fn len(&self) -> usize {
        self.started.len()
    }

    /// No alarm is active.
    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
    }

    /// Removes and returns, sorted, the alarms active longer than their limit at `now_ms` (`limit`
    /// gives the limit of a code, `None` = never cleared): each needs a synthetic stop.
    pub fn take_outlived(
        &mut self,
        now_ms: u64,
        limit: impl Fn(&str) -> Option<Duration>,
    ) -> Vec<AlarmKey> {
        let mut due: Vec<AlarmKey> = self
            .started
            .iter()
            .filter(|((code, _), since)| {
                limit(code).is_some_and(|l| {
                    now_ms.saturating_sub(**since)
                        >= u64::try_from(l.as_millis()).unwrap_or(u64::MAX)
                })
            })
            .map(|(key, _)| key.clone())
            .collect();
        due.sort();
        for key in &due {
            self.started.remove(key);
        }
        due
    }

    /// When the first alarm outlives its limit (`limit` as for [`take_outlived`](Self::take_outlived)),
    /// milliseconds on the caller's clock; `None` when no active alarm has a limit.
    pub fn next_outlived(&self, limit: impl Fn(&str) -> Option<Duration>) -> Option<u64> {
        self.started
            .iter()
            .filter_map(|((code, _), since)| {
                let limit = u64::try_from(limit(code)?.as_millis()).unwrap_or(u64::MAX);
                Some(since.saturating_add(limit))
            })
            .min()
    }

    /// Removes and returns every active alarm, sorted (the device went offline: each gets a stop).
    pub fn take_all(&mut self) -> Vec<AlarmKey> {
        let mut all: Vec<AlarmKey> = self.started.drain().map(|(key, _)| key).collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: &str, index: i64) -> AlarmKey {
        (code.to_owned(), Some(index))
    }

    #[test]
    fn starts_and_stops_are_tracked_and_a_repeated_start_keeps_its_first_time() {
        let mut alarms = ActiveAlarms::default();
        alarms.start(key("VideoMotion", 0), 1_000);
        alarms.start(key("VideoMotion", 0), 5_000);
        alarms.start(key("VideoMotion", 1), 2_000);
        assert_eq!(alarms.len(), 2);
        alarms.stop(&key("VideoMotion", 1));
        // Cleared 10 s after its first start, not after the repeated one.
        let limit = |_: &str| Some(Duration::from_secs(10));
        assert!(alarms.take_outlived(10_999, limit).is_empty());
        assert_eq!(alarms.take_outlived(11_000, limit), [key("VideoMotion", 0)]);
        assert!(alarms.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut alarms = ActiveAlarms::default();
        for i in 0..MAX_ACTIVE as i64 {
            assert!(alarms.start(key("Flood", i), 0));
        }
        assert!(!alarms.start(key("Flood", -1), 0), "one too many");
        assert!(alarms.start(key("Flood", 0), 5), "an active one repeated");
        assert_eq!(alarms.len(), MAX_ACTIVE);
        alarms.stop(&key("Flood", 0));
        assert!(alarms.start(key("Flood", -1), 0), "room again after a stop");
    }

    #[test]
    fn only_codes_with_a_limit_are_cleared() {
        let mut alarms = ActiveAlarms::default();
        alarms.start(key("VideoMotion", 0), 0);
        alarms.start(key("AlarmLocal", 2), 0);
        let limit = |code: &str| (code == "VideoMotion").then_some(Duration::from_secs(30));
        assert_eq!(
            alarms.take_outlived(3_600_000, limit),
            [key("VideoMotion", 0)]
        );
        assert_eq!(alarms.len(), 1);
    }

    #[test]
    fn the_next_clearing_is_the_earliest_start_plus_its_limit() {
        let mut alarms = ActiveAlarms::default();
        assert_eq!(alarms.next_outlived(|_| Some(Duration::from_secs(1))), None);
        alarms.start(key("VideoMotion", 0), 5_000);
        alarms.start(key("AlarmLocal", 0), 1_000);
        alarms.start(key("Tamper", 0), 0);
        let limit = |code: &str| match code {
            "VideoMotion" => Some(Duration::from_secs(1)),
            "AlarmLocal" => Some(Duration::from_secs(10)),
            _ => None,
        };
        assert_eq!(alarms.next_outlived(limit), Some(6_000));
        assert_eq!(
            alarms.next_outlived(|_| Some(Duration::MAX)),
            Some(u64::MAX)
        );
    }

    #[test]
    fn going_offline_takes_every_alarm_in_order() {
        let mut alarms = ActiveAlarms::default();
        alarms.start(key("VideoMotion", 3), 0);
        alarms.start(("StorageFailure".to_owned(), None), 0);
        alarms.start(key("AlarmLocal", 0), 0);
        assert_eq!(
            alarms.take_all(),
            [
                key("AlarmLocal", 0),
                ("StorageFailure".to_owned(), None),
                key("VideoMotion", 3)
            ]
        );
        assert!(alarms.is_empty());
    }
}
