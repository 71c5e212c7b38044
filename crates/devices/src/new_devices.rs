//! Limits on devices the server has never seen (issue 9: 100,000 random serials made 100,000 devices
//! in a minute): a token bucket per source address and one for all addresses together, each refilled
//! at its configured number of devices per minute and holding at most that many. Times are
//! milliseconds on the caller's monotonic clock.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Source addresses whose buckets are remembered at most; past it, idle and then the least recently
/// used ones are forgotten (a forgotten address starts again with a full bucket; the total limit
/// still holds).
pub const MAX_SOURCES: usize = 10_000;

/// A refused source address is logged at most this often, milliseconds.
const LOG_EVERY_MS: u64 = 60_000;

/// Which limit refused a new device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `server.max-new-devices-per-ip-per-minute`, with its value.
    PerAddress(u32),
    /// `server.max-new-devices-per-minute`, with its value.
    Total(u32),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::PerAddress(n) => write!(
                f,
                "server.max-new-devices-per-ip-per-minute ({n}) reached for this address"
            ),
            Limit::Total(n) => write!(f, "server.max-new-devices-per-minute ({n}) reached"),
        }
    }
}

/// A new device refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The limit reached.
    pub limit: Limit,
    /// True for the first refusal of its source address in [`LOG_EVERY_MS`]: log it.
    pub log: bool,
}

/// A token bucket: `tokens` devices may be created now; it refills continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: u64,
}

impl Bucket {
    /// A full bucket: a minute's worth of devices at once.
    fn full(per_minute: u32, now: u64) -> Bucket {
        Bucket {
            tokens: f64::from(per_minute),
            at: now,
        }
    }

    /// Adds what `per_minute` refills since the last update, up to a minute's worth.
    fn refill(&mut self, per_minute: u32, now: u64) {
        let elapsed_s = now.saturating_sub(self.at) as f64 / 1000.0;
        let per_s = f64::from(per_minute) / 60.0;
        self.tokens = (self.tokens + elapsed_s * per_s).min(f64::from(per_minute));
        self.at = now;
    }

    /// Whether one device may be created now (after [`Bucket::refill`]).
    fn has_token(&self) -> bool {
        self.tokens >= 1.0
    }

    /// Whether it would be full at `now`: then it is no different from a new one.
    fn full_at(&self, per_minute: u32, now: u64) -> bool {
        let mut copy = *self;
        copy.refill(per_minute, now);
        copy.tokens >= f64::from(per_minute)
    }
}

/// What is remembered about one source address.
#[derive(Debug, Clone, Copy)]
struct Source {
    bucket: Bucket,
    /// When a refusal of this address was last logged.
    logged: Option<u64>,
}

/// The new-device limits: bounded memory whatever the number of source addresses.
#[derive(Debug)]
pub struct NewDeviceLimiter {
    /// New devices per minute per source address; 0 = no limit.
    per_source: u32,
    /// New devices per minute in all; 0 = no limit.
    total: u32,
    all: Bucket,
    sources: HashMap<IpAddr, Source>,
    /// Most entries in `sources`.
    capacity: usize,
}

/// The key an address is limited under: IPv4 addresses (also IPv4-mapped IPv6) as they are, IPv6
/// addresses by their /64 prefix (one site, which can use any of its 2^64 addresses).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        },
    }
}

impl NewDeviceLimiter {
    /// Limits of `per_source` and `total` new devices per minute (0 = no limit), remembering at most
    /// `capacity` source addresses.
    pub fn new(per_source: u32, total: u32, capacity: usize, now: u64) -> Self {
        NewDeviceLimiter {
            per_source,
            total,
            all: Bucket::full(total, now),
            sources: HashMap::new(),
            capacity: capacity.max(4),
        }
    }

    /// Takes a token for one new device from `ip` at `now`, or says which limit refuses it.
    pub fn admit(&mut self, ip: IpAddr, now: u64) -> Result<(), Refusal> {
        if self.per_source == 0 && self.total == 0 {
            return Ok(());
        }
        let (per_source, total) = (self.per_source, self.total);
        self.all.refill(total, now);
        let all_has_token = total == 0 || self.all.has_token();
        let source = self.source(source_key(ip), now);
        source.bucket.refill(per_source, now);
        let limit = if per_source > 0 && !source.bucket.has_token() {
            Limit::PerAddress(per_source)
        } else if !all_has_token {
            Limit::Total(total)
        } else {
            source.bucket.tokens -= 1.0;
            self.all.tokens -= 1.0;
            return Ok(());
        };
        let log = source
            .logged
            .is_none_or(|t| now.saturating_sub(t) >= LOG_EVERY_MS);
        if log {
            source.logged = Some(now);
        }
        Err(Refusal { limit, log })
    }

    /// The entry of `key`, made (with a full bucket) when missing.
    fn source(&mut self, key: IpAddr, now: u64) -> &mut Source {
        if !self.sources.contains_key(&key) && self.sources.len() >= self.capacity {
            self.make_room(now);
        }
        let per_source = self.per_source;
        self.sources.entry(key).or_insert_with(|| Source {
            bucket: Bucket::full(per_source, now),
            logged: None,
        })
    }

    /// Forgets the addresses whose buckets are full again and whose refusal log line is older than
    /// [`LOG_EVERY_MS`]; if more than three quarters of the capacity is still in use, the least recently
    /// used ones too, down to three quarters. So a quarter of the capacity is free after each call,
    /// and the scan runs at most once per `capacity / 4` new addresses.
    fn make_room(&mut self, now: u64) {
        let per_source = self.per_source;
        let idle = |s: &Source| {
            (per_source == 0 || s.bucket.full_at(per_source, now))
                && s.logged
                    .is_none_or(|t| now.saturating_sub(t) >= LOG_EVERY_MS)
        };
        self.sources.retain(|_, s| !idle(s));
        let keep = self.capacity * 3 / 4;
        if self.sources.len() <= keep {
            return;
        }
        let mut used: Vec<u64> = self.sources.values().map(|s| s.bucket.at).collect();
        let excess = used.len() - keep;
        let (_, cutoff, _) = used.select_nth_unstable(excess - 1);
        let cutoff = *cutoff;
        self.sources.retain(|_, s| s.bucket.at > cutoff);
    }

    /// Source addresses remembered now.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + last))
    }

    #[test]
    fn a_source_gets_its_minute_worth_then_one_more_as_the_bucket_refills() {
        let t0: u64 = 0;
        let mut limiter = NewDeviceLimiter::new(3, 0, 100, t0);
        for _ in 0..3 {
            assert_eq!(limiter.admit(v4(1), t0), Ok(()));
        }
        let refused = limiter.admit(v4(1), t0).unwrap_err();
        assert_eq!(refused.limit, Limit::PerAddress(3));
        assert!(refused.log);
        assert!(!limiter.admit(v4(1), t0).unwrap_err().log, "logged once");
        assert_eq!(limiter.admit(v4(2), t0), Ok(()), "another address");
        // 3 a minute: one more every 20 s.
        assert!(limiter.admit(v4(1), t0 + 19000).is_err());
        assert_eq!(limiter.admit(v4(1), t0 + 21000), Ok(()));
        // A minute after the first log line, the next refusal is logged again.
        let later = t0 + 61000;
        let refusal = loop {
            if let Err(refusal) = limiter.admit(v4(1), later) {
                break refusal;
            }
        };
        assert!(refusal.log);
    }

    #[test]
    fn the_total_limit_holds_across_addresses() {
        let t0: u64 = 0;
        let mut limiter = NewDeviceLimiter::new(100, 5, 100, t0);
        for i in 0..5 {
            assert_eq!(limiter.admit(v4(i), t0), Ok(()));
        }
        let refused = limiter.admit(v4(99), t0).unwrap_err();
        assert_eq!(refused.limit, Limit::Total(5));
        assert_eq!(
            refused.limit.to_string(),
            "server.max-new-devices-per-minute (5) reached"
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let t0: u64 = 0;
        let mut limiter = NewDeviceLimiter::new(0, 0, 100, t0);
        for i in 0..10_000 {
            assert_eq!(limiter.admit(v4(i), t0), Ok(()));
        }
        assert_eq!(limiter.remembered(), 0);
    }

    #[test]
    fn an_ipv6_site_counts_as_one_address() {
        let t0: u64 = 0;
        let mut limiter = NewDeviceLimiter::new(2, 0, 100, t0);
        let ip = |low: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, low]);
        assert_eq!(limiter.admit(ip(1), t0), Ok(()));
        assert_eq!(limiter.admit(ip(2), t0), Ok(()));
        assert!(limiter.admit(ip(3), t0).is_err());
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(source_key(mapped), v4(7));
    }

    #[test]
    fn memory_stays_bounded_under_an_address_flood() {
        let t0: u64 = 0;
        let mut limiter = NewDeviceLimiter::new(2, 0, 1000, t0);
        // The first address is refused and keeps being refused while the flood goes on.
        limiter.admit(v4(0), t0).unwrap();
        limiter.admit(v4(0), t0).unwrap();
        for i in 1..20_000 {
            let now = t0 + u64::from(i);
            let _ = limiter.admit(v4(i), now);
            if i % 500 == 0 {
                assert!(limiter.admit(v4(0), now).is_err());
            }
            assert!(limiter.remembered() <= 1000);
        }
        // Once refilled, idle addresses are forgotten first.
        let later = t0 + 3600000;
        let _ = limiter.admit(v4(200_000), later);
        assert!(limiter.remembered() < 1000);
    }
}
