//! Rules shared by every sink: filters, duplicate suppression and rate limits.

use std::collections::HashMap;
use std::time::Duration;

use alarm_center_store::{EventAction, StoredEvent};
use serde::Deserialize;
use tokio::time::Instant;
use wildmatch::WildMatch;

/// `[sinks.<name>.rules]` / `rules = {…}` of a sink. Patterns match whole values; `*` matches any run
/// of characters (`Video*`, `*Detect*`), `?` one character.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RulesConfig {
    /// Only events of these devices (empty = all).
    pub include_devices: Vec<String>,
    /// Never events of these devices.
    pub exclude_devices: Vec<String>,
    /// Only these codes (empty = all).
    pub include_codes: Vec<String>,
    /// Never these codes.
    pub exclude_codes: Vec<String>,
    /// Only these kinds: alarm, report, device, keepalive, … (empty = all).
    pub include_kinds: Vec<String>,
    /// Never these kinds.
    pub exclude_kinds: Vec<String>,
    /// Only these actions: start, stop, pulse, state (empty = all).
    pub include_actions: Vec<String>,
    /// Drop a `start` of an alarm already started, and a `stop` of one already stopped.
    pub suppress_duplicates: bool,
    /// At most this many events per `rate-period` (0 = no limit); the excess is skipped and counted.
    pub rate_limit: u32,
    /// The period of `rate-limit`.
    #[serde(deserialize_with = "crate::config::duration")]
    pub rate_period: Duration,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            include_devices: Vec::new(),
            exclude_devices: Vec::new(),
            include_codes: Vec::new(),
            exclude_codes: Vec::new(),
            include_kinds: Vec::new(),
            exclude_kinds: Vec::new(),
            include_actions: Vec::new(),
            suppress_duplicates: true,
            rate_limit: 0,
            rate_period: Duration::from_secs(60),
        }
    }
}

/// Include and exclude patterns of one field, compiled once (`wildmatch`: `*` any run of characters,
/// `?` one character, matched against the whole value).
#[derive(Debug)]
struct Filter {
    include: Vec<WildMatch>,
    exclude: Vec<WildMatch>,
}

impl Filter {
    fn new(include: &[String], exclude: &[String]) -> Filter {
        let compile = |patterns: &[String]| patterns.iter().map(|p| WildMatch::new(p)).collect();
        Filter {
            include: compile(include),
            exclude: compile(exclude),
        }
    }

    fn passes(&self, value: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(value)))
            && !self.exclude.iter().any(|p| p.matches(value))
    }
}

/// Why an event was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// A filter excluded it.
    Filtered,
    /// Same state as the last event of that alarm.
    Duplicate,
    /// Over the rate limit.
    RateLimited,
}

/// The rules of one sink with their state.
/// An alarm as duplicate suppression tracks it: device, code, index.
type AlarmKey = (String, String, Option<i64>);

#[derive(Debug)]
pub(crate) struct Rules {
    config: RulesConfig,
    /// Devices, codes, kinds, actions.
    filters: [Filter; 4],
    /// Last action delivered per (device, code, index): started or not, and its device time.
    last: HashMap<AlarmKey, (bool, Option<String>)>,
    window: (Instant, u32),
}

impl Rules {
    pub(crate) fn new(config: RulesConfig) -> Rules {
        Rules {
            filters: [
                Filter::new(&config.include_devices, &config.exclude_devices),
                Filter::new(&config.include_codes, &config.exclude_codes),
                Filter::new(&config.include_kinds, &config.exclude_kinds),
                Filter::new(&config.include_actions, &[]),
            ],
            config,
            last: HashMap::new(),
            window: (Instant::now(), 0),
        }
    }

    /// Whether `event` goes out, updating duplicate and rate state.
    pub(crate) fn check(&mut self, event: &StoredEvent) -> Result<(), Skip> {
        let c = &self.config;
        let [devices, codes, kinds, actions] = &self.filters;
        if !devices.passes(&event.event.device)
            || !codes.passes(&event.event.code)
            || !kinds.passes(event.event.kind.as_str())
            || !actions.passes(event.event.action.as_str())
        {
            return Err(Skip::Filtered);
        }
        let transition = (c.suppress_duplicates
            && matches!(event.event.action, EventAction::Start | EventAction::Stop))
        .then(|| {
            (
                (
                    event.event.device.clone(),
                    event.event.code.clone(),
                    event.event.index,
                ),
                event.event.action == EventAction::Start,
            )
        });
        if let Some((key, started)) = &transition {
            if let Some((last_started, last_time)) = self.last.get(key) {
                // The same action again is a duplicate, unless the device's own clock says it is a
                // later occurrence (a stop or start in between was lost or stored out of order).
                let later = match (&event.event.device_time, last_time) {
                    (Some(now), Some(before)) => now > before,
                    _ => false,
                };
                if last_started == started && !later {
                    return Err(Skip::Duplicate);
                }
            }
        }
        if c.rate_limit > 0 {
            let now = Instant::now();
            if now.duration_since(self.window.0) >= c.rate_period {
                self.window = (now, 0);
            }
            if self.window.1 >= c.rate_limit {
                // Not sent, so the alarm's state as this sink's destination knows it is unchanged.
                return Err(Skip::RateLimited);
            }
            self.window.1 += 1;
        }
        if let Some((key, started)) = transition {
            self.last
                .insert(key, (started, event.event.device_time.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(device: &str, code: &str, action: &str) -> StoredEvent {
        StoredEvent {
            id: 1,
            frame_id: None,
            event: alarm_center_store::NewEvent {
                frame: alarm_center_store::FrameRef::None,
                device: device.into(),
                code: code.into(),
                action: action.into(),
                index: Some(0),
                channel: Some(1),
                channel_name: None,
                kind: "alarm".into(),
                device_time: None,
                received_at: 0,
                data: None,
                synthetic: None,
            },
        }
    }

    #[test]
    fn globs() {
        let glob =
            |pattern: &str, value: &str| Filter::new(&[pattern.to_owned()], &[]).passes(value);
        assert!(glob("Video*", "VideoMotion"));
        assert!(glob("*Detect*", "CrossLineDetection"));
        assert!(glob("*", ""));
        assert!(!glob("Video*Loss", "VideoMotion"));
        assert!(glob("a*b*c", "a-b-b-c"));
        assert!(!glob("ab*ba", "aba"));
        assert!(glob("nvr-?", "nvr-1") && !glob("nvr-?", "nvr-12"));
        assert!(!glob("VideoMotion", "videomotion"), "case-sensitive");
        let filter = Filter::new(&["*".to_owned()], &["Storage*".to_owned()]);
        assert!(filter.passes("VideoMotion") && !filter.passes("StorageFailure"));
    }

    #[test]
    fn filters_duplicates_and_rate() {
        let mut rules = Rules::new(RulesConfig {
            exclude_codes: vec!["Storage*".into()],
            rate_limit: 3,
            rate_period: Duration::from_secs(3600),
            ..RulesConfig::default()
        });
        assert_eq!(
            rules.check(&event("d", "StorageFailure", "start")),
            Err(Skip::Filtered)
        );
        assert_eq!(rules.check(&event("d", "VideoMotion", "start")), Ok(()));
        assert_eq!(
            rules.check(&event("d", "VideoMotion", "start")),
            Err(Skip::Duplicate)
        );
        assert_eq!(rules.check(&event("d", "VideoMotion", "stop")), Ok(()));
        assert_eq!(rules.check(&event("e", "VideoMotion", "pulse")), Ok(()));
        assert_eq!(
            rules.check(&event("e", "VideoMotion", "pulse")),
            Err(Skip::RateLimited)
        );
    }

    #[test]
    fn a_repeated_action_with_a_later_device_time_is_a_real_transition() {
        let mut rules = Rules::new(RulesConfig::default());
        let at = |action: &str, time: &str| {
            let mut e = event("cam", "HumanDetect", action);
            e.event.device_time = Some(time.into());
            e
        };
        assert_eq!(
            rules.check(&at("start", "2024-01-27T21:10:58+00:00")),
            Ok(())
        );
        // The stop between the two starts was lost: the second start is a new alarm, not a duplicate.
        assert_eq!(
            rules.check(&at("start", "2024-01-27T21:11:30+00:00")),
            Ok(())
        );
        // Sent twice with the same time: a duplicate.
        assert_eq!(
            rules.check(&at("start", "2024-01-27T21:11:30+00:00")),
            Err(Skip::Duplicate)
        );
        assert_eq!(
            rules.check(&at("stop", "2024-01-27T21:11:40+00:00")),
            Ok(())
        );
    }
}
