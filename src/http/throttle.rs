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

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
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

/// The three limiters and the addresses currently refused for failing too often.
pub struct Throttle {
    per_key: Keyed<Uuid>,
    per_address: Keyed<ClientAddr>,
    failures: Keyed<ClientAddr>,
    /// Addresses whose failure quota is spent, and until when.
    penalised: DashMap<ClientAddr, Instant>,
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
            per_key: RateLimiter::keyed(quota(limits.per_key, Quota::per_second)),
            per_address: RateLimiter::keyed(quota(limits.per_address, Quota::per_second)),
            failures: RateLimiter::keyed(quota(limits.auth_failures, Quota::per_minute)),
            penalised: DashMap::new(),
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
        if let Some(until) = self.penalised.get(&client).map(|e| *e.value()) {
            let now = Instant::now();
            if until > now {
                return Err(limited(until - now));
            }
            self.penalised.remove_if(&client, |_, until| *until <= now);
        }
        self.per_address
            .check_key(&client)
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
                self.penalised.insert(client, Instant::now() + wait);
                limited(wait)
            }
        }
    }

    /// After a successful authentication: the key's own quota.
    pub fn after_success(&self, key_id: Uuid) -> Result<(), ApiError> {
        self.per_key
            .check_key(&key_id)
            .map_err(|not_until| self.limited_at(not_until))
    }

    fn limited_at(&self, not_until: NotUntil<<DefaultClock as Clock>::Instant>) -> ApiError {
        limited(not_until.wait_time_from(self.per_address.clock().now()))
    }

    /// Forgets idle keys and expired penalties (their state no longer limits).
    pub fn housekeeping(&self) {
        self.per_key.retain_recent();
        self.per_address.retain_recent();
        self.failures.retain_recent();
        let now = Instant::now();
        self.penalised.retain(|_, until| *until > now);
        self.per_key.shrink_to_fit();
        self.per_address.shrink_to_fit();
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
        t.penalised
            .insert(a, Instant::now() - Duration::from_secs(1));
        t.housekeeping();
        assert!(t.penalised.is_empty());
        assert!(t.before_auth(a).is_ok());
    }
}
