//! Connection slots: the total limit (`server.max-connections`, a semaphore) and the per-address limit
//! (`server.max-connections-per-ip`). A [`Slot`] gives both back when it is dropped, however its
//! connection ends — a panicking connection task included — and an address holds an entry only while
//! it has connections open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::stats::Stats;

/// Why a connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `server.max-connections` connections are open.
    Total(usize),
    /// `server.max-connections-per-ip` connections are open from this address.
    PerAddress(usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Total(n) => write!(f, "server.max-connections ({n}) reached"),
            Refused::PerAddress(n) => write!(
                f,
                "server.max-connections-per-ip ({n}) reached for this address"
            ),
        }
    }
}

/// The slots of the device port.
pub(crate) struct Slots {
    total: Arc<Semaphore>,
    max_total: usize,
    max_per_address: usize,
    /// Open connections per address; an address with none has no entry.
    per_address: Mutex<HashMap<IpAddr, usize>>,
    stats: Arc<Stats>,
}

/// One open connection's slot.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Slots {
    pub(crate) fn new(max_total: usize, max_per_address: usize, stats: Arc<Stats>) -> Arc<Slots> {
        Arc::new(Slots {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            max_per_address,
            per_address: Mutex::default(),
            stats,
        })
    }

    /// A slot for a connection from `ip`, counted as open; refused (and counted) past a limit.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let Ok(permit) = self.total.clone().try_acquire_owned() else {
            Stats::inc(&self.stats.refused_total_limit);
            return Err(Refused::Total(self.max_total));
        };
        {
            let mut per_address = self.lock();
            let open = per_address.get(&ip).copied().unwrap_or(0);
            if open >= self.max_per_address {
                Stats::inc(&self.stats.refused_per_ip_limit);
                return Err(Refused::PerAddress(self.max_per_address));
            }
            per_address.insert(ip, open + 1);
        }
        self.stats.connections_open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            slots: self.clone(),
            ip,
            _permit: permit,
        })
    }

    /// Addresses with connections open.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_address.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_address = self.slots.lock();
        if let Some(open) = per_address.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                per_address.remove(&self.ip);
            }
        }
        self.slots
            .stats
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn limits_are_applied_and_given_back_on_drop() {
        let stats = Arc::new(Stats::default());
        let slots = Slots::new(3, 2, stats.clone());
        let a1 = slots.take(ip(1)).unwrap();
        let _a2 = slots.take(ip(1)).unwrap();
        assert_eq!(slots.take(ip(1)).err(), Some(Refused::PerAddress(2)));
        let _b1 = slots.take(ip(2)).unwrap();
        assert_eq!(slots.take(ip(3)).err(), Some(Refused::Total(3)));
        assert_eq!(Stats::get(&stats.connections_open), 3);
        drop(a1);
        assert!(slots.take(ip(3)).is_ok(), "the slot came back");
        assert_eq!(Stats::get(&stats.refused_total_limit), 1);
        assert_eq!(Stats::get(&stats.refused_per_ip_limit), 1);
    }

    #[test]
    fn a_panicking_connection_gives_its_slot_back() {
        let stats = Arc::new(Stats::default());
        let slots = Slots::new(1, 1, stats.clone());
        let slot = slots.take(ip(1)).unwrap();
        let panicked = std::thread::spawn(move || {
            let _slot = slot;
            panic!("a connection task fails");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(Stats::get(&stats.connections_open), 0);
        assert_eq!(slots.addresses(), 0);
        assert!(slots.take(ip(1)).is_ok());
    }

    #[test]
    fn refused_addresses_leave_nothing_behind() {
        // Before: a refusal at the total limit left a zero entry per address, without bound.
        let stats = Arc::new(Stats::default());
        let slots = Slots::new(1, 10, stats);
        let _held = slots.take(ip(1)).unwrap();
        for last in 2..=200 {
            assert!(slots.take(ip(last)).is_err());
        }
        assert_eq!(slots.addresses(), 1);
    }
}
