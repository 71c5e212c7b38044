//! Counters of the open connections, readable while they are open (a connection's row in the store
//! gets its counters when it closes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Frames and bytes one open connection has received.
#[derive(Default)]
pub(crate) struct Counters {
    frames: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn add_frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// (frames, bytes).
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.frames.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The open connections' counters by connection id.
#[derive(Default, Clone)]
pub(crate) struct LiveConnections(Arc<Mutex<HashMap<i64, Arc<Counters>>>>);

/// One open connection's entry; dropping it (however the connection ends, a panic included) removes it.
pub(crate) struct Entry {
    live: LiveConnections,
    id: i64,
    pub(crate) counters: Arc<Counters>,
}

impl LiveConnections {
    pub(crate) fn open(&self, id: i64) -> Entry {
        let counters = Arc::new(Counters::default());
        self.lock().insert(id, counters.clone());
        Entry {
            live: self.clone(),
            id,
            counters,
        }
    }

    /// (frames, bytes) of open connection `id`.
    pub(crate) fn get(&self, id: i64) -> Option<(u64, u64)> {
        self.lock().get(&id).map(|c| c.get())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<Counters>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.live.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_counts_while_open_and_goes_when_dropped() {
        let live = LiveConnections::default();
        let entry = live.open(7);
        entry.counters.add_frame();
        entry.counters.add_bytes(42);
        assert_eq!(live.get(7), Some((1, 42)));
        drop(entry);
        assert_eq!(live.get(7), None);
    }
}
