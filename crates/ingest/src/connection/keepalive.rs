//! Which keepAlives go to the raw-frame archive (`store.keepalive-sample-interval`): a connection's
//! first, any that says something new, and one per interval. The rest cost no store write at all.

use std::time::Duration;

use alarm_center_proto::{Decoded, Frame};

/// What a keepAlive says beyond "still here": a change in any of these is archived at once. Sequence
/// numbers and session ids that change with every keepAlive are not part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    protocol: &'static str,
    command: Option<u32>,
    length: usize,
    period: Option<u32>,
    error: bool,
}

impl Shape {
    fn of(frame: &Frame, decoded: &Decoded) -> Shape {
        Shape {
            protocol: frame.protocol.as_str(),
            command: decoded.command,
            length: frame.len(),
            period: decoded.keepalive_period,
            error: decoded.error.is_some(),
        }
    }
}

/// The keepAlives one connection archived.
#[derive(Debug, Default)]
pub(super) struct KeepaliveSampler {
    /// The last one archived and when (milliseconds on the registry's clock).
    last: Option<(Shape, u64)>,
}

impl KeepaliveSampler {
    /// Whether the keepAlive `frame` received at `now_ms` is archived, with `interval` between two
    /// archived alike (zero: every one).
    pub(super) fn archive(
        &mut self,
        frame: &Frame,
        decoded: &Decoded,
        now_ms: u64,
        interval: Duration,
    ) -> bool {
        let shape = Shape::of(frame, decoded);
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let due = match &self.last {
            None => true,
            Some((last, at)) => *last != shape || now_ms.saturating_sub(*at) >= interval_ms,
        };
        if due {
            self.last = Some((shape, now_ms));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alarm_center_proto::{encode, Decoder, Session};

    fn keepalive(bytes: &[u8]) -> (Frame, Decoded) {
        let frame = Decoder::default().feed(bytes).next().expect("a frame");
        let decoded = Session::new().decode(&frame);
        (frame, decoded)
    }

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    #[test]
    fn the_first_then_one_per_interval() {
        let (frame, decoded) = keepalive(&encode::dvrip_heartbeat());
        let mut sampler = KeepaliveSampler::default();
        assert!(sampler.archive(&frame, &decoded, 1_000, FIVE_MINUTES));
        for at in [11_000, 21_000, 300_999] {
            assert!(!sampler.archive(&frame, &decoded, at, FIVE_MINUTES), "{at}");
        }
        assert!(sampler.archive(&frame, &decoded, 301_000, FIVE_MINUTES));
        assert!(!sampler.archive(&frame, &decoded, 311_000, FIVE_MINUTES));
    }

    #[test]
    fn a_changed_keepalive_is_archived_at_once_but_not_a_new_sequence_number() {
        let announce = |id: u32, timeout: u32| {
            let json = format!(
                r#"{{"id":{id},"method":"global.keepAlive","params":{{"timeout":{timeout}}},"session":7}}"#
            );
            keepalive(&encode::dhip(7, id, &json))
        };
        let mut sampler = KeepaliveSampler::default();
        let (frame, decoded) = announce(10, 60);
        assert!(sampler.archive(&frame, &decoded, 0, FIVE_MINUTES));
        let (frame, decoded) = announce(11, 60);
        assert!(!sampler.archive(&frame, &decoded, 10_000, FIVE_MINUTES));
        // A new announced period is news.
        let (frame, decoded) = announce(12, 30);
        assert_eq!(decoded.keepalive_period, Some(30));
        assert!(sampler.archive(&frame, &decoded, 20_000, FIVE_MINUTES));
    }

    #[test]
    fn zero_archives_every_keepalive() {
        let (frame, decoded) = keepalive(&encode::dvrip_heartbeat());
        let mut sampler = KeepaliveSampler::default();
        for at in [0, 0, 1, 2] {
            assert!(sampler.archive(&frame, &decoded, at, Duration::ZERO));
        }
    }
}
