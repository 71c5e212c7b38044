//! Whether a device is online, and since when.

/// A device's online state and the time of its last change (milliseconds since the Unix epoch, the
/// time events are stamped with). Every change is stamped after the one before, even when the frame or
/// the silence that causes it was observed a moment earlier on another task: the log never holds a
/// `DeviceOnline` stamped before the `DeviceOffline` it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Presence {
    online: bool,
    since_ms: i64,
}

impl Presence {
    /// The state restored from the store at start (its time is not known: the next change is stamped
    /// by its own time).
    pub fn restored(online: bool) -> Presence {
        Presence {
            online,
            since_ms: 0,
        }
    }

    /// The device is online now.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// A frame arrived at `now_ms`: the time to stamp `DeviceOnline` with when it brings the device
    /// online, `None` when it was online already.
    pub fn heard(&mut self, now_ms: i64) -> Option<i64> {
        (!self.online).then(|| self.change(true, now_ms))
    }

    /// The device is to go offline at `now_ms` (silent, or its connection turned out to be another
    /// device's): the time to stamp `DeviceOffline` with, `None` when it was offline already.
    pub fn lost(&mut self, now_ms: i64) -> Option<i64> {
        self.online.then(|| self.change(false, now_ms))
    }

    fn change(&mut self, online: bool, now_ms: i64) -> i64 {
        let at = now_ms.max(self.since_ms.saturating_add(1));
        self.online = online;
        self.since_ms = at;
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_stamped_in_order_and_only_when_they_change_something() {
        let mut p = Presence::restored(false);
        assert_eq!(p.lost(1_000), None, "already offline");
        assert_eq!(p.heard(1_000), Some(1_000));
        assert_eq!(p.heard(1_500), None, "already online");
        // Decided after, but observed at an earlier time: stamped just after the change it ends.
        assert_eq!(p.lost(900), Some(1_001));
        assert!(!p.is_online());
        assert_eq!(p.heard(1_001), Some(1_002));
        assert_eq!(p.lost(5_000), Some(5_000));
    }

    #[test]
    fn a_device_restored_online_can_go_offline() {
        let mut p = Presence::restored(true);
        assert!(p.is_online());
        assert_eq!(p.lost(42), Some(42));
    }
}
