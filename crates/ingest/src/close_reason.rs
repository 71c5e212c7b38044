//! Why a device connection closed: one enum, logged (its text goes to the log and to the
//! connection's row in the store) and counted (by its label in `connections_closed_total`) in one place,
//! `Connection::close`.

use std::time::Duration;

use crate::stats::Stats;

/// Why a device connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The device closed it (end of stream).
    ByDevice,
    /// The server is stopping (what the socket held was read first).
    Shutdown,
    /// Nothing received for `server.idle-timeout`.
    Idle(Duration),
    /// A frame stayed incomplete for `server.frame-timeout`, with this many bytes buffered.
    SlowSender { timeout: Duration, buffered: usize },
    /// Reading or writing the socket failed.
    Socket(String),
    /// An HTTP answer closes it (`Connection: close`, or a request answered 400/403/408/413).
    HttpAnswered,
    /// Unknown devices are refused and this one is not configured; `silent` when it sent no
    /// identity within `server.frame-timeout`.
    UnknownDevice { silent: bool },
    /// A frame would have created a device past a new-device limit.
    NewDeviceLimit(String),
}

impl CloseReason {
    /// Every label of `connections_closed_total`, in the order of the metric's lines.
    pub(crate) const LABELS: [&'static str; 8] = [
        "device",
        "shutdown",
        "idle",
        "slow_sender",
        "socket_error",
        "http_answer",
        "unknown_device",
        "new_device_limit",
    ];

    /// The label this reason is counted under.
    pub(crate) fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    fn index(&self) -> usize {
        match self {
            CloseReason::ByDevice => 0,
            CloseReason::Shutdown => 1,
            CloseReason::Idle(_) => 2,
            CloseReason::SlowSender { .. } => 3,
            CloseReason::Socket(_) => 4,
            CloseReason::HttpAnswered => 5,
            CloseReason::UnknownDevice { .. } => 6,
            CloseReason::NewDeviceLimit(_) => 7,
        }
    }

    /// Counts this close in `stats`.
    pub(crate) fn count(&self, stats: &Stats) {
        Stats::inc(&stats.closed_by_reason[self.index()]);
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::ByDevice => f.write_str("closed by the device"),
            CloseReason::Shutdown => f.write_str("server shutdown"),
            CloseReason::Idle(idle) => write!(f, "idle: nothing received for {idle:?}"),
            CloseReason::SlowSender { timeout, buffered } => write!(
                f,
                "slow sender: a frame stayed incomplete for {timeout:?} ({buffered} bytes buffered)"
            ),
            CloseReason::Socket(e) => write!(f, "socket error: {e}"),
            CloseReason::HttpAnswered => {
                f.write_str("HTTP: closed after the answer (Connection: close, or a bad request)")
            }
            CloseReason::UnknownDevice { silent: true } => f.write_str(
                "unknown device refused: no configured identity within server.frame-timeout (server.allow-unknown-devices = false)",
            ),
            CloseReason::UnknownDevice { silent: false } => {
                f.write_str("unknown device refused (server.allow-unknown-devices = false)")
            }
            CloseReason::NewDeviceLimit(limit) => write!(f, "new-device limit: {limit}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_counted_under_its_own_label() {
        let stats = Stats::default();
        let reasons = [
            CloseReason::ByDevice,
            CloseReason::Shutdown,
            CloseReason::Idle(Duration::from_secs(180)),
            CloseReason::SlowSender {
                timeout: Duration::from_secs(30),
                buffered: 5,
            },
            CloseReason::Socket("reset".into()),
            CloseReason::HttpAnswered,
            CloseReason::UnknownDevice { silent: true },
            CloseReason::NewDeviceLimit("100 per minute".into()),
        ];
        for (n, reason) in reasons.iter().enumerate() {
            assert_eq!(reason.label(), CloseReason::LABELS[n]);
            reason.count(&stats);
            assert_eq!(Stats::get(&stats.closed_by_reason[n]), 1, "{reason}");
        }
        assert_eq!(
            CloseReason::Idle(Duration::from_secs(180)).to_string(),
            "idle: nothing received for 180s"
        );
    }
}
