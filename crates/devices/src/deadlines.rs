//! When each device next needs supervision's attention: one sorted structure for all devices, so an
//! idle device costs nothing per second (issue 12) — only its own deadline, once per period.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

/// Deadlines by key (milliseconds on the caller's clock). A key is scheduled at most once at a time:
/// scheduling it earlier replaces its deadline; later is ignored (a deadline that moved later is found
/// out when it fires, and the caller schedules the new one then).
#[derive(Debug)]
pub struct Deadlines<K> {
    heap: BinaryHeap<Reverse<(u64, K)>>,
    /// The live deadline of each scheduled key; heap entries that disagree are stale.
    at: HashMap<K, u64>,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
            at: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Ord + Clone> Deadlines<K> {
    /// Schedules `key` at `at_ms`, unless it is scheduled at or before that already.
    pub fn schedule(&mut self, key: K, at_ms: u64) {
        if self.at.get(&key).is_some_and(|current| *current <= at_ms) {
            return;
        }
        self.at.insert(key.clone(), at_ms);
        self.heap.push(Reverse((at_ms, key)));
        // Stale entries pile up when keys are rescheduled earlier again and again: rebuild.
        if self.heap.len() > 2 * self.at.len() + 1024 {
            self.heap = self
                .at
                .iter()
                .map(|(k, at)| Reverse((*at, k.clone())))
                .collect();
        }
    }

    /// Removes and returns the keys due at `now_ms` (deadline at or before it), earliest first.
    pub fn pop_due(&mut self, now_ms: u64) -> Vec<K> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((at, key))) = self.heap.pop() else {
                break;
            };
            if self.at.get(&key) == Some(&at) {
                self.at.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// Keys scheduled.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// No key is scheduled.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_when_due_earliest_first_and_once() {
        let mut d = Deadlines::default();
        d.schedule("b", 2_000);
        d.schedule("a", 1_000);
        d.schedule("c", 3_000);
        assert!(d.pop_due(999).is_empty());
        assert_eq!(d.pop_due(2_000), ["a", "b"]);
        assert_eq!(d.pop_due(10_000), ["c"]);
        assert!(d.pop_due(10_000).is_empty());
        assert!(d.is_empty());
    }

    #[test]
    fn earlier_replaces_later_is_ignored() {
        let mut d = Deadlines::default();
        d.schedule("a", 5_000);
        d.schedule("a", 9_000);
        assert_eq!(d.pop_due(5_000), ["a"]);
        d.schedule("b", 9_000);
        d.schedule("b", 4_000);
        assert_eq!(d.len(), 1);
        assert_eq!(d.pop_due(4_000), ["b"], "the earlier one");
        assert!(d.pop_due(9_000).is_empty(), "the replaced one is stale");
    }

    #[test]
    fn stale_entries_do_not_grow_without_bound() {
        let mut d = Deadlines::default();
        for at in (0..100_000u64).rev() {
            d.schedule(7u32, at);
        }
        assert!(d.heap.len() <= 2 * d.len() + 1024, "{}", d.heap.len());
        assert_eq!(d.pop_due(0), [7]);
    }
}
