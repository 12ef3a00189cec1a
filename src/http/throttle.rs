//! Rate limits on the authenticated API (governor's GCRA, one keyed limiter each):
//!
//! 1. per client address, *before* authentication: bounds what one address can
//!    make us do (a key lookup and an HMAC each) whatever it sends;
//! 2. per client address, failed authentications only, a much smaller quota per
//!    minute: once it is spent the address is refused *before* authentication
//!    until the quota allows one more attempt, so guessing is throttled hard while
//!    a well-behaved client is never near it;
//! 3. per API key, after authentication: one key cannot take the whole node.
//!
//! Every refusal is 429 problem+json with `Retry-After` (whole seconds, at least
//! 1). The check is a few atomic operations on a sharded map, with no lock held
//! across an await and no allocation: the keys are a `Uuid` and a fixed-size
//! address. IPv6 clients are counted per /64, the block a single host usually
//! owns; IPv4-mapped IPv6 addresses count as their IPv4 address.
//!
//! The client address is the TCP peer. `X-Forwarded-For` is honoured only when
//! the peer is a configured trusted proxy (`CONSENTGATE_TRUSTED_PROXIES`, empty
//! by default): then the client is the right-most address in the header that is
//! not itself a trusted proxy. Addresses are personal data: [`ClientAddr`] prints
//! nothing of the address, and nothing here logs one.
//!
//! Memory: each limiter holds one small state per key seen recently; a
//! housekeeping task ([`spawn_housekeeping`]) forgets idle keys every minute.
//!
//! # Tokens taken a few at a time
//! A limiter's state for one key is a word every worker thread writes (a
//! compare-and-swap, behind a lock word of the map's shard): on every request
//! of a busy key it bounces between cores (about 1 µs of CPU per check with both
//! limiters, BENCHMARKS.md, session 8). So each worker thread takes a key's tokens from the
//! shared limiter `lease` at a time (1 for small bursts: exact; 1/1024 of
//! the burst up to [`MAX_LEASE`] otherwise) and spends them from a small
//! per-thread cache. Only when all `lease` tokens are there at once; else the
//! request takes its one token from the shared limiter, exactly as without
//! leases, so a client near its limit is held to it token by token. The cost:
//! tokens taken ahead and not yet spent. A client can exceed its quota over a
//! window by at most `(lease - 1)` per worker thread (0.2% of the default
//! bursts with two workers) and, while its leftovers sit in a worker's cache,
//! may be refused as many requests early by another worker. A cache slot is
//! reused by whichever key maps to it next (its leftover tokens are dropped:
//! never more admitted, at worst fewer), so the cache stays a fixed size
//! whatever clients send.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{NotUntil, Quota, RateLimiter};
use uuid::Uuid;

use super::error::ApiError;
use crate::config::{RateLimits, RateQuota, TrustedProxies};

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A client address as a rate-limit key. `Debug` prints nothing of it: addresses
/// are personal data and must not reach a log line.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(IpAddr);

impl std::fmt::Debug for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientAddr([redacted])")
    }
}

impl ClientAddr {
    /// The rate-limit key of an address: IPv4 as is, IPv6 by its /64.
    pub fn new(addr: IpAddr) -> ClientAddr {
        match addr {
            IpAddr::V4(_) => ClientAddr(addr),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientAddr(IpAddr::V4(v4)),
                None => ClientAddr(IpAddr::V6(Ipv6Addr::from(
                    u128::from(v6) & (u128::MAX << 64),
                ))),
            },
        }
    }
}

/// The most tokens a worker takes from a shared limiter at once.
pub const MAX_LEASE: u32 = 64;
/// Slots of each worker thread's cache of leased tokens.
const LEASE_SLOTS: usize = 16;

/// A key of a leasing limiter, as kept in the per-thread cache.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LeaseKey {
    Key(Uuid),
    Address(ClientAddr),
}

trait Leasable: Copy + Eq + std::hash::Hash {
    fn lease_key(self) -> LeaseKey;
}

impl Leasable for Uuid {
    fn lease_key(self) -> LeaseKey {
        LeaseKey::Key(self)
    }
}

impl Leasable for ClientAddr {
    fn lease_key(self) -> LeaseKey {
        LeaseKey::Address(self)
    }
}

impl LeaseKey {
    /// The cache slot: any cheap mix of the key (collisions only drop leftovers).
    fn slot(&self) -> usize {
        let mixed = match self {
            LeaseKey::Key(id) => id.as_u64_pair().1,
            LeaseKey::Address(ClientAddr(IpAddr::V4(v4))) => u64::from(v4.to_bits()),
            LeaseKey::Address(ClientAddr(IpAddr::V6(v6))) => (v6.to_bits() >> 64) as u64,
        };
        (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % LEASE_SLOTS
    }
}

/// One slot: which limiter, which key, how many tokens are left.
type LeaseSlot = Option<(u64, LeaseKey, u32)>;

thread_local! {
    static LEASES: std::cell::RefCell<[LeaseSlot; LEASE_SLOTS]> =
        const { std::cell::RefCell::new([None; LEASE_SLOTS]) };
}

/// A keyed limiter whose worker threads take tokens `lease` at a time (see the
/// module documentation).
struct Leasing<K: Leasable> {
    limiter: Keyed<K>,
    lease: NonZeroU32,
    /// Tells this limiter's cached tokens from another's (each throttle, and each
    /// of its limiters, has its own).
    id: u64,
}

impl<K: Leasable> Leasing<K> {
    fn new(q: RateQuota) -> Leasing<K> {
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Leasing {
            limiter: RateLimiter::keyed(quota(q, Quota::per_second)),
            lease: NonZeroU32::new((q.burst / 1024).clamp(1, MAX_LEASE)).unwrap_or(NonZeroU32::MIN),
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn check(&self, key: K) -> Result<(), NotUntil<<DefaultClock as Clock>::Instant>> {
        if self.lease.get() > 1 {
            let lease_key = key.lease_key();
            let slot = lease_key.slot();
            let leased = LEASES.with(|cache| {
                let mut cache = cache.borrow_mut();
                match &mut cache[slot] {
                    Some((id, k, left)) if *id == self.id && *k == lease_key && *left > 0 => {
                        *left -= 1;
                        true
                    }
                    _ => false,
                }
            });
            if leased {
                return Ok(());
            }
            if let Ok(Ok(())) = self.limiter.check_key_n(&key, self.lease) {
                let left = self.lease.get() - 1;
                LEASES.with(|cache| cache.borrow_mut()[slot] = Some((self.id, lease_key, left)));
                return Ok(());
            }
        }
        self.limiter.check_key(&key)
    }
}

/// The three limiters and the addresses currently refused for failing too often.
pub struct Throttle {
    per_key: Leasing<Uuid>,
    per_address: Leasing<ClientAddr>,
    failures: Keyed<ClientAddr>,
    /// Addresses whose failure quota is spent, and until when.
    penalised: DashMap<ClientAddr, Instant>,
    /// How many entries `penalised` holds (at least: it is raised after an
    /// insert and lowered after a removal), so that while nobody is penalised,
    /// which is nearly always, a request does not touch the map (whose shard
    /// lock word every worker would write).
    penalties: AtomicUsize,
    trusted: TrustedProxies,
}

fn quota(q: RateQuota, per: fn(NonZeroU32) -> Quota) -> Quota {
    let rate = NonZeroU32::new(q.rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(q.burst).unwrap_or(NonZeroU32::MIN);
    per(rate).allow_burst(burst)
}

impl Throttle {
    pub fn new(limits: &RateLimits) -> Throttle {
        Throttle {
            per_key: Leasing::new(limits.per_key),
            per_address: Leasing::new(limits.per_address),
            failures: RateLimiter::keyed(quota(limits.auth_failures, Quota::per_minute)),
            penalised: DashMap::new(),
            penalties: AtomicUsize::new(0),
            trusted: limits.trusted_proxies.clone(),
        }
    }

    /// The client of a request: the peer, or what a trusted proxy says it is.
    pub fn client(&self, req: &HttpRequest) -> ClientAddr {
        let peer = req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        ClientAddr::new(self.forwarded_client(req, peer))
    }

    fn forwarded_client(&self, req: &HttpRequest, peer: IpAddr) -> IpAddr {
        if self.trusted.is_empty() || !self.trusted.contains(peer) {
            return peer;
        }
        // Right to left: each hop appends the address it received from. The first
        // one that is not one of our proxies is the client; an entry that does not
        // parse ends the walk (we cannot tell who wrote it), and so does the end.
        let mut client = peer;
        let headers: Vec<_> = req.headers().get_all(X_FORWARDED_FOR).collect();
        for value in headers.iter().rev() {
            let Ok(value) = value.to_str() else {
                return client;
            };
            for hop in value.rsplit(',') {
                let Some(addr) = parse_hop(hop) else {
                    return client;
                };
                client = addr;
                if !self.trusted.contains(addr) {
                    return client;
                }
            }
        }
        client
    }

    /// Before authentication: refuses an address that failed too often or sends
    /// too much.
    pub fn before_auth(&self, client: ClientAddr) -> Result<(), ApiError> {
        if self.penalties.load(Ordering::Acquire) != 0
            && let Some(until) = self.penalised.get(&client).map(|e| *e.value())
        {
            let now = Instant::now();
            if until > now {
                return Err(limited(until - now));
            }
            if self
                .penalised
                .remove_if(&client, |_, until| *until <= now)
                .is_some()
            {
                self.penalties.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.per_address
            .check(client)
            .map_err(|not_until| self.limited_at(not_until))
    }

    /// After a failed authentication: charges the failure quota. The answer is
    /// 401 while the quota lasts, then 429, and the address is refused before
    /// authentication until the quota allows another attempt.
    pub fn after_failure(&self, client: ClientAddr) -> ApiError {
        match self.failures.check_key(&client) {
            Ok(()) => ApiError::Unauthorized,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.failures.clock().now());
                self.penalise(client, Instant::now() + wait);
                limited(wait)
            }
        }
    }

    /// Refuses `client` before authentication until `until`.
    fn penalise(&self, client: ClientAddr, until: Instant) {
        if self.penalised.insert(client, until).is_none() {
            self.penalties.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// After a successful authentication: the key's own quota.
    pub fn after_success(&self, key_id: Uuid) -> Result<(), ApiError> {
        self.per_key
            .check(key_id)
            .map_err(|not_until| self.limited_at(not_until))
    }

    fn limited_at(&self, not_until: NotUntil<<DefaultClock as Clock>::Instant>) -> ApiError {
        limited(not_until.wait_time_from(self.failures.clock().now()))
    }

    /// Forgets idle keys and expired penalties (their state no longer limits).
    pub fn housekeeping(&self) {
        self.per_key.limiter.retain_recent();
        self.per_address.limiter.retain_recent();
        self.failures.retain_recent();
        let now = Instant::now();
        let mut expired = 0;
        self.penalised.retain(|_, until| {
            let keep = *until > now;
            expired += usize::from(!keep);
            keep
        });
        self.penalties.fetch_sub(expired, Ordering::AcqRel);
        self.per_key.limiter.shrink_to_fit();
        self.per_address.limiter.shrink_to_fit();
        self.failures.shrink_to_fit();
        self.penalised.shrink_to_fit();
    }
}

/// One entry of `X-Forwarded-For`: an address, possibly `[v6]:port` or `v4:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(addr);
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

fn limited(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

/// Every minute, [`Throttle::housekeeping`].
pub fn spawn_housekeeping(throttle: std::sync::Arc<Throttle>) {
    actix_web::rt::spawn(async move {
        let mut ticker = actix_web::rt::time::interval(Duration::from_secs(60));
        loop {
            ticker.tick().await;
            throttle.housekeeping();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn throttle(trusted: &str) -> Throttle {
        Throttle::new(&RateLimits {
            per_key: RateQuota { rate: 1, burst: 2 },
            per_address: RateQuota { rate: 1, burst: 3 },
            auth_failures: RateQuota { rate: 1, burst: 2 },
            trusted_proxies: TrustedProxies::parse(trusted).unwrap(),
        })
    }

    fn addr(text: &str) -> ClientAddr {
        ClientAddr::new(text.parse().unwrap())
    }

    #[test]
    fn each_quota_refuses_past_its_burst_with_a_retry_after() {
        let t = throttle("");
        let key = Uuid::now_v7();
        assert!(t.after_success(key).is_ok() && t.after_success(key).is_ok());
        let Err(ApiError::RateLimited { retry_after_secs }) = t.after_success(key) else {
            panic!("the third request of a key with burst 2 is limited");
        };
        assert!(retry_after_secs >= 1);
        assert!(t.after_success(Uuid::now_v7()).is_ok(), "keys are separate");
        let a = addr("192.0.2.1");
        for _ in 0..3 {
            t.before_auth(a).unwrap();
        }
        assert!(matches!(
            t.before_auth(a),
            Err(ApiError::RateLimited { .. })
        ));
        assert!(
            t.before_auth(addr("192.0.2.2")).is_ok(),
            "addresses are separate"
        );
    }

    #[test]
    fn spent_failures_refuse_the_address_before_authentication() {
        let t = throttle("");
        let a = addr("198.51.100.7");
        assert!(matches!(t.after_failure(a), ApiError::Unauthorized));
        assert!(matches!(t.after_failure(a), ApiError::Unauthorized));
        let ApiError::RateLimited { retry_after_secs } = t.after_failure(a) else {
            panic!("the third failure with burst 2 is limited");
        };
        // One failure a minute comes back: about a minute to wait.
        assert!((50..=60).contains(&retry_after_secs), "{retry_after_secs}");
        assert!(
            matches!(t.before_auth(a), Err(ApiError::RateLimited { .. })),
            "refused before authentication while penalised"
        );
        assert!(t.before_auth(addr("198.51.100.8")).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert!(addr("2001:db8:1:2:aaaa::1") == addr("2001:db8:1:2:bbbb::2"));
        assert!(addr("2001:db8:1:2::1") != addr("2001:db8:1:3::1"));
        assert!(addr("::ffff:192.0.2.1") == addr("192.0.2.1"));
        assert_eq!(format!("{:?}", addr("192.0.2.1")), "ClientAddr([redacted])");
    }

    fn request(peer: &str, xff: &[&str]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(peer.parse().unwrap());
        for value in xff {
            req = req.append_header(("x-forwarded-for", *value));
        }
        req.to_http_request()
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let untrusted = throttle("");
        let req = request("192.0.2.1:4000", &["203.0.113.9"]);
        assert!(
            untrusted.client(&req) == addr("192.0.2.1"),
            "header ignored"
        );

        let t = throttle("10.0.0.0/8");
        let cases: &[(&str, &[&str], &str, &str)] = &[
            ("10.0.0.1:1", &["203.0.113.9"], "203.0.113.9", "one hop"),
            (
                "10.0.0.1:1",
                &["6.6.6.6, 203.0.113.9, 10.0.0.2"],
                "203.0.113.9",
                "right-most untrusted; a spoofed left part is ignored",
            ),
            (
                "10.0.0.1:1",
                &["6.6.6.6", "203.0.113.9"],
                "203.0.113.9",
                "several headers",
            ),
            ("10.0.0.1:1", &[], "10.0.0.1", "no header: the proxy"),
            (
                "10.0.0.1:1",
                &["junk"],
                "10.0.0.1",
                "unparseable: the proxy",
            ),
            (
                "192.0.2.1:1",
                &["203.0.113.9"],
                "192.0.2.1",
                "untrusted peer",
            ),
            (
                "10.0.0.1:1",
                &["[2001:db8::1]:443"],
                "2001:db8::1",
                "v6 with port",
            ),
        ];
        for (peer, xff, expected, why) in cases {
            assert!(t.client(&request(peer, xff)) == addr(expected), "{why}");
        }
    }

    #[test]
    fn housekeeping_forgets_expired_penalties() {
        let t = throttle("");
        let a = addr("198.51.100.9");
        t.penalise(a, Instant::now() - Duration::from_secs(1));
        assert_eq!(t.penalties.load(Ordering::Acquire), 1);
        t.housekeeping();
        assert!(t.penalised.is_empty());
        assert_eq!(t.penalties.load(Ordering::Acquire), 0);
        assert!(t.before_auth(a).is_ok());
    }

    #[test]
    fn an_expired_penalty_is_dropped_by_the_next_request_and_counted_out() {
        let t = throttle("");
        let a = addr("198.51.100.10");
        t.penalise(a, Instant::now() + Duration::from_secs(60));
        t.penalise(a, Instant::now() + Duration::from_secs(60));
        assert_eq!(
            t.penalties.load(Ordering::Acquire),
            1,
            "one address, one entry"
        );
        assert!(matches!(
            t.before_auth(a),
            Err(ApiError::RateLimited { .. })
        ));
        t.penalise(a, Instant::now() - Duration::from_secs(1));
        assert!(t.before_auth(a).is_ok());
        assert_eq!(t.penalties.load(Ordering::Acquire), 0);
        assert!(t.penalised.is_empty());
    }

    fn leasing(burst: u32) -> Throttle {
        Throttle::new(&RateLimits {
            // One token a second comes back: nothing refills during a test.
            per_key: RateQuota { rate: 1, burst },
            per_address: RateQuota { rate: 1, burst },
            auth_failures: RateQuota { rate: 1, burst: 2 },
            trusted_proxies: TrustedProxies::default(),
        })
    }

    fn admitted(t: &Throttle, key: Uuid) -> u32 {
        let mut n = 0;
        while t.after_success(key).is_ok() {
            n += 1;
            assert!(n <= 1_000_000, "never refused");
        }
        n
    }

    #[test]
    fn a_burst_spent_through_leases_admits_exactly_the_burst() {
        // 4096 / 1024: four tokens at a time.
        let t = leasing(4096);
        assert_eq!(t.per_key.lease.get(), 4);
        let key = Uuid::now_v7();
        assert_eq!(admitted(&t, key), 4096);
        // Not a token more on another thread either.
        std::thread::scope(|s| {
            s.spawn(|| assert!(t.after_success(key).is_err()));
        });
        let a = addr("192.0.2.77");
        let mut n = 0;
        while t.before_auth(a).is_ok() {
            n += 1;
        }
        assert_eq!(n, 4096, "addresses lease too");
    }

    #[test]
    fn tokens_leased_by_one_thread_are_never_admitted_twice() {
        let t = leasing(4096);
        let key = Uuid::now_v7();
        // This thread takes a lease of 4 and spends one of them.
        assert!(t.after_success(key).is_ok());
        // Another thread spends everything else: 4096 less the 4 leased here.
        let other = std::thread::scope(|s| s.spawn(|| admitted(&t, key)).join().unwrap());
        assert_eq!(other, 4092);
        // This thread still has its 3 leftovers, and then nothing.
        assert_eq!(admitted(&t, key), 3);
    }

    #[test]
    fn leases_are_per_key_and_per_throttle() {
        let (t1, t2) = (leasing(4096), leasing(4096));
        let key = Uuid::now_v7();
        assert!(t1.after_success(key).is_ok());
        // t2's limiter has its own state: its burst is whole.
        assert_eq!(admitted(&t2, key), 4096);
        // Many other keys through t1 (some share the cache slot of `key`): each
        // has its own whole burst, and none spends `key`'s tokens.
        for _ in 0..64 {
            let other = Uuid::now_v7();
            assert!(t1.after_success(other).is_ok());
        }
        assert!(admitted(&t1, key) <= 4095);
    }

    #[test]
    fn small_bursts_are_exact() {
        let t = leasing(1000);
        assert_eq!(t.per_key.lease.get(), 1);
        assert_eq!(admitted(&t, Uuid::now_v7()), 1000);
    }
}
