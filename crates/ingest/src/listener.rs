//! Which connection threads watch the device port (decision D73). Had every thread the listening
//! socket in its epoll, each new connection would wake them all (the kernel wakes every epoll that
//! watches a listening socket), and all but one would wait for the accept lock and find nothing to
//! accept. So one thread, the acceptor, has it in its epoll and accepts, and spreads what it accepts
//! over the threads (D64); the others keep a duplicate of the descriptor outside their epoll. When
//! the acceptor falls behind (it keeps finding connections waiting) or an accept fails, it calls the
//! others in to accept too, and dismisses them at its first accept after a while without falling
//! behind; should it end, they accept from then on.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

/// The thread that accepts.
pub(crate) const ACCEPTOR: usize = 0;

/// Connections accepted one after another without finding the accept queue empty, after which the
/// acceptor counts as behind.
pub(crate) const BEHIND_AFTER: u32 = 64;

/// How long the acceptor must not have been behind before it dismisses the other threads.
pub(crate) const CALM_FOR: Duration = Duration::from_secs(1);

/// A connection thread's duplicate of the listening socket.
pub(crate) enum Listener {
    /// In this thread's epoll: this thread accepts.
    Accepting(TcpListener),
    /// Outside any epoll: this thread does not accept now.
    Standing(std::net::TcpListener),
    /// Lost in a failed change (logged); nothing to accept with.
    Gone,
}

impl Listener {
    /// The listener to accept from, when this thread accepts.
    pub(crate) fn accepting(&self) -> Option<&TcpListener> {
        match self {
            Listener::Accepting(listener) => Some(listener),
            _ => None,
        }
    }

    /// Puts a standing listener in the current runtime's epoll: from now on this thread accepts.
    /// Must run on the thread's runtime. A duplicate goes in, so that should that fail the listener
    /// stays standing and a later call may succeed.
    pub(crate) fn accept(&mut self) -> std::io::Result<()> {
        if let Listener::Standing(listener) = self {
            *self = Listener::Accepting(TcpListener::from_std(listener.try_clone()?)?);
        }
        Ok(())
    }

    /// Takes an accepting listener out of the runtime's epoll: this thread no longer accepts.
    pub(crate) fn stand(&mut self) -> std::io::Result<()> {
        match std::mem::replace(self, Listener::Gone) {
            Listener::Accepting(listener) => *self = Listener::Standing(listener.into_std()?),
            other => *self = other,
        }
        Ok(())
    }
}

/// Whether the threads other than the acceptor accept too; each watches it.
pub(crate) struct Helpers(watch::Sender<bool>);

impl Default for Helpers {
    fn default() -> Helpers {
        Helpers(watch::Sender::new(false))
    }
}

impl Helpers {
    /// What a thread other than the acceptor watches.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Calls the other threads in (`true`) or dismisses them; returns whether that changed anything.
    pub(crate) fn set(&self, wanted: bool) -> bool {
        self.0
            .send_if_modified(|now| std::mem::replace(now, wanted) != wanted)
    }

    /// Whether the other threads are called in.
    pub(crate) fn called(&self) -> bool {
        *self.0.borrow()
    }
}

/// The acceptor's measure of falling behind.
#[derive(Default)]
pub(crate) struct Backlog {
    /// Connections accepted since the accept queue was last found empty.
    streak: u32,
    /// When the acceptor was last behind.
    behind_at: Option<Instant>,
}

impl Backlog {
    /// The accept queue was found empty (or the thread's scheduling budget of 128 operations a turn
    /// ran out, which [`BEHIND_AFTER`] stays below).
    pub(crate) fn emptied(&mut self) {
        self.streak = 0;
    }

    /// An accept failed at `now` (this thread pauses accepting for a moment): the others should
    /// accept meanwhile, as when behind.
    pub(crate) fn failed(&mut self, now: Instant) {
        self.streak = 0;
        self.behind_at = Some(now);
    }

    /// A connection was taken off the queue at `now` (served or refused), the other threads being
    /// `called` in or not: whether they should be now.
    pub(crate) fn accepted(&mut self, now: Instant, called: bool) -> bool {
        self.streak = self.streak.saturating_add(1);
        if self.streak >= BEHIND_AFTER {
            self.behind_at = Some(now);
            return true;
        }
        called
            && self
                .behind_at
                .is_some_and(|at| now.duration_since(at) < CALM_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acceptor_calls_the_others_when_behind_and_dismisses_them_once_calm() {
        let mut backlog = Backlog::default();
        let start = Instant::now();
        // Connections one at a time (the queue found empty between them): never behind.
        for _ in 0..1_000 {
            assert!(!backlog.accepted(start, false));
            backlog.emptied();
        }
        // A run of waiting connections: behind at the BEHIND_AFTER-th.
        for _ in 1..BEHIND_AFTER {
            assert!(!backlog.accepted(start, false));
        }
        assert!(backlog.accepted(start, false));
        backlog.emptied();
        // Called in, they stay while the acceptor was behind less than CALM_FOR ago…
        let later = start + CALM_FOR - Duration::from_millis(1);
        assert!(backlog.accepted(later, true));
        // …and are dismissed after that.
        backlog.emptied();
        assert!(!backlog.accepted(start + CALM_FOR, true));
        // A failed accept counts as behind.
        let failed_at = start + CALM_FOR * 3;
        backlog.failed(failed_at);
        assert!(backlog.accepted(failed_at + CALM_FOR / 2, true));
        assert!(!backlog.accepted(failed_at + CALM_FOR, true));
    }

    #[test]
    fn helpers_change_only_when_told_otherwise() {
        let helpers = Helpers::default();
        let mut watching = helpers.watch();
        assert!(!helpers.called() && !helpers.set(false));
        assert!(!watching.has_changed().unwrap());
        assert!(helpers.set(true) && helpers.called());
        assert!(*watching.borrow_and_update());
        assert!(!helpers.set(true));
        assert!(!watching.has_changed().unwrap());
        assert!(helpers.set(false) && !helpers.called());
    }

    #[tokio::test]
    async fn a_listener_accepts_only_while_in_the_epoll() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let mut listener = Listener::Standing(std_listener);
        assert!(listener.accepting().is_none());
        listener.accept().unwrap();
        let connect = tokio::net::TcpStream::connect(addr);
        let (accepted, connected) = tokio::join!(listener.accepting().unwrap().accept(), connect);
        assert_eq!(
            accepted.unwrap().1,
            connected.unwrap().local_addr().unwrap()
        );
        listener.stand().unwrap();
        assert!(matches!(listener, Listener::Standing(_)));
        // Put in the epoll twice: the second time changes nothing.
        listener.accept().unwrap();
        listener.accept().unwrap();
        listener.stand().unwrap();
        // Standing, it still holds the socket: a connection waits in the queue until it accepts again.
        let _waiting = tokio::net::TcpStream::connect(addr).await.unwrap();
        listener.accept().unwrap();
        listener.accepting().unwrap().accept().await.unwrap();
    }
}
