//! When silence means offline.

use std::time::Duration;

/// What supervision knows about one device at one moment (all times in milliseconds on the caller's
/// monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervision {
    /// The device is online now.
    pub online: bool,
    /// Silence means something for this device: it sends keepAlives, or it has a configured period.
    /// (XM cameras open a connection per alarm and send nothing in between: never supervised.)
    pub supervised: bool,
    /// When its last frame arrived.
    pub last_seen_ms: u64,
    /// When ingest was last held up (frames waiting unread in sockets are no silence); 0 = never.
    pub stalled_at_ms: u64,
    /// Its keep-alive period: announced, configured, or the default.
    pub period: Duration,
    /// The extra time before silence counts.
    pub grace: Duration,
}

impl Supervision {
    /// How long the device may stay silent, milliseconds.
    pub fn limit_ms(&self) -> u64 {
        u64::try_from(self.period.saturating_add(self.grace).as_millis()).unwrap_or(u64::MAX)
    }

    /// When the device is due offline if nothing arrives: `None` when silence means nothing for it.
    pub fn deadline_ms(&self) -> Option<u64> {
        (self.supervised && self.online).then(|| {
            self.last_seen_ms
                .max(self.stalled_at_ms)
                .saturating_add(self.limit_ms())
        })
    }

    /// Whether the device is to go offline at `now_ms`: online, supervised, and silent for more than
    /// its period plus the grace since its last frame or the last stall, whichever is later.
    pub fn overdue(&self, now_ms: u64) -> bool {
        self.deadline_ms().is_some_and(|deadline| now_ms > deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Supervision {
        Supervision {
            online: true,
            supervised: true,
            last_seen_ms: 1_000,
            stalled_at_ms: 0,
            period: Duration::from_secs(60),
            grace: Duration::from_secs(30),
        }
    }

    #[test]
    fn offline_just_after_period_plus_grace() {
        let d = device();
        assert_eq!(d.deadline_ms(), Some(91_000));
        assert!(
            !d.overdue(91_000),
            "at exactly period + grace it is still online"
        );
        assert!(d.overdue(91_001));
    }

    #[test]
    fn a_frame_moves_the_deadline() {
        let d = Supervision {
            last_seen_ms: 50_000,
            ..device()
        };
        assert!(!d.overdue(91_001));
        assert!(d.overdue(140_001));
    }

    #[test]
    fn a_stall_is_no_silence() {
        // Ingest was held up until 80 s: the device gets a whole period plus grace from then.
        let d = Supervision {
            stalled_at_ms: 80_000,
            ..device()
        };
        assert!(!d.overdue(91_001));
        assert!(!d.overdue(170_000));
        assert!(d.overdue(170_001));
    }

    #[test]
    fn unsupervised_or_offline_devices_never_become_overdue() {
        let quiet = Supervision {
            supervised: false,
            ..device()
        };
        assert_eq!(quiet.deadline_ms(), None);
        assert!(!quiet.overdue(u64::MAX));
        let offline = Supervision {
            online: false,
            ..device()
        };
        assert!(!offline.overdue(u64::MAX));
    }

    #[test]
    fn huge_periods_saturate() {
        let d = Supervision {
            period: Duration::MAX,
            ..device()
        };
        assert_eq!(d.deadline_ms(), Some(u64::MAX));
        assert!(!d.overdue(u64::MAX));
    }
}
