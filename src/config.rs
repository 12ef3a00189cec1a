//! Configuration: environment variables (`CONSENTGATE_*`, and `DATABASE_URL`) over an
//! optional TOML file named by `CONSENTGATE_CONFIG`. One flat set of settings,
//! validated once into [`Settings`]; a bad value stops start-up with a message that
//! names the setting (never the secret value). No global statics: the settings are
//! passed down.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

use crate::store::DatabaseUrl;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line, for log shippers.
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

/// Where the master key comes from (SPEC section 6).
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// `CONSENTGATE_MASTER_KEY`: base64 of 32 bytes.
    Inline(SecretString),
    /// `CONSENTGATE_MASTER_KEY_FILE`: a file holding that, owner-only.
    File(PathBuf),
    /// Embedded default: `<data dir>/master.key`, generated on first run.
    Generated(PathBuf),
}

/// Where the checkpoint signing key comes from (like the master key).
#[derive(Debug, Clone)]
pub enum SigningKeySource {
    /// `CONSENTGATE_SIGNING_KEY`: base64 of a 32-byte Ed25519 seed.
    Inline(SecretString),
    /// `CONSENTGATE_SIGNING_KEY_FILE`: a file holding that, owner-only.
    File(PathBuf),
    /// Embedded default: `<data dir>/signing.key`, generated on first run.
    Generated(PathBuf),
}

/// Where the operator token comes from.
#[derive(Debug, Clone)]
pub enum OperatorTokenSource {
    /// `CONSENTGATE_OPERATOR_TOKEN`.
    Inline(SecretString),
    /// `<data dir>/operator-token`, generated on first run (owner-only).
    Generated(PathBuf),
}

/// Validated settings. Secrets are `SecretString`, whose `Debug` is redacted.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub database: DatabaseUrl,
    pub data_dir: PathBuf,
    pub pool_size: u32,
    pub master_key: MasterKeySource,
    pub operator_token: OperatorTokenSource,
    pub signing_key: SigningKeySource,
    /// A signed checkpoint after this many events of a business.
    pub checkpoint_every_events: u32,
    /// And at least this often (seconds) for a business whose chain moved.
    pub checkpoint_interval_secs: u64,
    /// How often the retention job runs (seconds).
    pub retention_interval_secs: u64,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// Extra or overriding policy files (`*.toml`); the shipped ones are built in.
    pub policies_dir: Option<PathBuf>,
    /// HTTP worker threads; default: one per core.
    pub workers: Option<usize>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Concurrent argon2 verifications of *legacy* key hashes (each ~19 MiB and
    /// ~20 ms of a core); new keys use an HMAC and need none.
    pub argon2_concurrency: usize,
    /// The address people and auditors reach this service at, e.g.
    /// `https://consent.example.com` (preference links are built on it, and
    /// its scheme decides whether cookies are `Secure`); default: the bound
    /// address over http.
    pub public_url: Option<String>,
    /// Form posts one preference link may make per minute (its burst, too).
    pub preference_posts_per_minute: u32,
    /// Rate limits and whose `X-Forwarded-For` to believe.
    pub rate_limits: RateLimits,
}

/// A token bucket: `rate` tokens come back per `period`, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    pub rate: u32,
    pub burst: u32,
}

/// Rate limits (README "Rate limits"). Requests are counted per client address
/// before authentication and per API key after it; failed authentications are
/// counted again per address against a much smaller quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Authenticated requests per second per API key
    /// (`CONSENTGATE_RATE_LIMIT_KEY_PER_SEC`, `..._KEY_BURST`).
    pub per_key: RateQuota,
    /// Requests to authenticated endpoints per second per client address, before
    /// authentication (`CONSENTGATE_RATE_LIMIT_ADDRESS_PER_SEC`, `..._ADDRESS_BURST`).
    pub per_address: RateQuota,
    /// Failed authentications per *minute* per client address; past it the address
    /// is refused before authentication until the quota allows one more
    /// (`CONSENTGATE_RATE_LIMIT_AUTH_FAILURES_PER_MIN`, `..._AUTH_FAILURES_BURST`).
    pub auth_failures: RateQuota,
    /// Proxies whose `X-Forwarded-For` names the client
    /// (`CONSENTGATE_TRUSTED_PROXIES`); empty (the default): the header is ignored.
    pub trusted_proxies: TrustedProxies,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_key: RateQuota {
                rate: 10_000,
                burst: 20_000,
            },
            per_address: RateQuota {
                rate: 20_000,
                burst: 40_000,
            },
            auth_failures: RateQuota {
                rate: 30,
                burst: 10,
            },
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// A list of addresses or CIDR networks (`10.0.0.1`, `10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses a comma-separated list; `None` names nothing that parses.
    pub fn parse(text: &str) -> Option<TrustedProxies> {
        let mut nets = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (addr, prefix) = match item.split_once('/') {
                Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, prefix.parse().ok()?),
                None => {
                    let addr = item.parse::<IpAddr>().ok()?;
                    (addr, if addr.is_ipv4() { 32 } else { 128 })
                }
            };
            if prefix > if addr.is_ipv4() { 32 } else { 128 } {
                return None;
            }
            nets.push((addr, prefix));
        }
        Some(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `addr` is one of the trusted proxies.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|&(net, prefix)| match (net, addr) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(addr) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(addr) & mask
            }
            _ => false,
        })
    }
}

/// A setting that is missing or wrong. `setting` is the environment variable name.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(setting: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
}

/// The raw, flat form read from the providers. Keys are the environment variable
/// names without the `CONSENTGATE_` prefix, lowercased (also the TOML keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    bind: Option<String>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    pool_size: Option<u32>,
    master_key: Option<SecretString>,
    master_key_file: Option<PathBuf>,
    operator_token: Option<SecretString>,
    signing_key: Option<SecretString>,
    signing_key_file: Option<PathBuf>,
    checkpoint_every_events: Option<u32>,
    checkpoint_interval_secs: Option<u64>,
    retention_interval_secs: Option<u64>,
    log_format: Option<LogFormat>,
    log: Option<String>,
    policies_dir: Option<PathBuf>,
    workers: Option<usize>,
    max_body_bytes: Option<usize>,
    argon2_concurrency: Option<usize>,
    public_url: Option<String>,
    preference_posts_per_minute: Option<u32>,
    rate_limit_key_per_sec: Option<u32>,
    rate_limit_key_burst: Option<u32>,
    rate_limit_address_per_sec: Option<u32>,
    rate_limit_address_burst: Option<u32>,
    rate_limit_auth_failures_per_min: Option<u32>,
    rate_limit_auth_failures_burst: Option<u32>,
    trusted_proxies: Option<String>,
}

/// One rate-limit setting: the default when unset, else within `1..=max`.
fn quota_part(value: Option<u32>, default: u32, max: u32, key: &str) -> Result<u32, ConfigError> {
    let value = value.unwrap_or(default);
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            &env_name(key),
            format!("must be between 1 and {max}"),
        ))
    }
}

impl RateLimits {
    fn from_raw(raw: &Raw) -> Result<RateLimits, ConfigError> {
        let d = RateLimits::default();
        const MAX: u32 = 10_000_000;
        let trusted_proxies = match raw.trusted_proxies.as_deref() {
            None => TrustedProxies::default(),
            Some(text) => TrustedProxies::parse(text).ok_or_else(|| {
                ConfigError::new(
                    "CONSENTGATE_TRUSTED_PROXIES",
                    "expected a comma-separated list of addresses or CIDR networks, \
                     e.g. 10.0.0.1,10.1.0.0/16",
                )
            })?,
        };
        Ok(RateLimits {
            per_key: RateQuota {
                rate: quota_part(
                    raw.rate_limit_key_per_sec,
                    d.per_key.rate,
                    MAX,
                    "rate_limit_key_per_sec",
                )?,
                burst: quota_part(
                    raw.rate_limit_key_burst,
                    d.per_key.burst,
                    MAX,
                    "rate_limit_key_burst",
                )?,
            },
            per_address: RateQuota {
                rate: quota_part(
                    raw.rate_limit_address_per_sec,
                    d.per_address.rate,
                    MAX,
                    "rate_limit_address_per_sec",
                )?,
                burst: quota_part(
                    raw.rate_limit_address_burst,
                    d.per_address.burst,
                    MAX,
                    "rate_limit_address_burst",
                )?,
            },
            auth_failures: RateQuota {
                rate: quota_part(
                    raw.rate_limit_auth_failures_per_min,
                    d.auth_failures.rate,
                    1_000_000,
                    "rate_limit_auth_failures_per_min",
                )?,
                burst: quota_part(
                    raw.rate_limit_auth_failures_burst,
                    d.auth_failures.burst,
                    1_000_000,
                    "rate_limit_auth_failures_burst",
                )?,
            },
            trusted_proxies,
        })
    }
}

const SECRET_KEYS: [&str; 3] = ["master_key", "operator_token", "signing_key"];

fn env_name(key: &str) -> String {
    if key == "database_url" {
        "DATABASE_URL".to_owned()
    } else {
        format!("CONSENTGATE_{}", key.to_uppercase())
    }
}

impl Settings {
    /// Reads the process environment (and the TOML file it may name).
    pub fn from_env() -> Result<Settings, ConfigError> {
        let mut figment = Figment::new();
        if let Ok(path) = std::env::var("CONSENTGATE_CONFIG") {
            if !Path::new(&path).is_file() {
                return Err(ConfigError::new("CONSENTGATE_CONFIG", "no such file"));
            }
            figment = figment.merge(Toml::file(path));
        }
        let figment = figment
            .merge(Env::prefixed("CONSENTGATE_").ignore(&["CONFIG"]))
            .merge(Env::raw().only(&["DATABASE_URL"]));
        Settings::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Settings, ConfigError> {
        let raw: Raw = figment.extract().map_err(|e| {
            let key = e.path.first().cloned().unwrap_or_default();
            let message = match &e.kind {
                figment::error::Kind::UnknownField(field, _) => {
                    return ConfigError::new(
                        &env_name(field),
                        "is not a setting consentgate knows",
                    );
                }
                _ if SECRET_KEYS.contains(&key.as_str()) => "is not a valid value".to_owned(),
                kind => kind.to_string(),
            };
            ConfigError::new(&env_name(&key), message)
        })?;
        Settings::validate(raw)
    }

    fn validate(raw: Raw) -> Result<Settings, ConfigError> {
        let rate_limits = RateLimits::from_raw(&raw)?;
        let bind = raw
            .bind
            .as_deref()
            .unwrap_or("127.0.0.1:8080")
            .parse::<SocketAddr>()
            .map_err(|_| {
                ConfigError::new(
                    "CONSENTGATE_BIND",
                    "expected host:port, e.g. 127.0.0.1:8080",
                )
            })?;
        let data_dir = raw.data_dir.unwrap_or_else(|| PathBuf::from("data"));
        let database = match raw.database_url.as_deref() {
            Some(url) => DatabaseUrl::parse(url)
                .map_err(|e| ConfigError::new("DATABASE_URL", e.to_string()))?,
            None => DatabaseUrl::Sqlite(data_dir.join("consentgate.db")),
        };
        let master_key = match (raw.master_key, raw.master_key_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "CONSENTGATE_MASTER_KEY",
                    "set either CONSENTGATE_MASTER_KEY or CONSENTGATE_MASTER_KEY_FILE, not both",
                ));
            }
            (Some(inline), None) => MasterKeySource::Inline(inline),
            (None, Some(file)) => MasterKeySource::File(file),
            // Several nodes share one PostgreSQL: a key generated per node would make
            // each node's data unreadable to the others, so production names its key.
            (None, None) if database.backend() == crate::store::Backend::Postgres => {
                return Err(ConfigError::new(
                    "CONSENTGATE_MASTER_KEY",
                    "required with PostgreSQL (or CONSENTGATE_MASTER_KEY_FILE); \
                     generate one with `consentgate master-key generate`",
                ));
            }
            (None, None) => MasterKeySource::Generated(data_dir.join("master.key")),
        };
        let signing_key = match (raw.signing_key, raw.signing_key_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "CONSENTGATE_SIGNING_KEY",
                    "set either CONSENTGATE_SIGNING_KEY or CONSENTGATE_SIGNING_KEY_FILE, not both",
                ));
            }
            (Some(inline), None) => SigningKeySource::Inline(inline),
            (None, Some(file)) => SigningKeySource::File(file),
            // Every node must sign with the key auditors were given.
            (None, None) if database.backend() == crate::store::Backend::Postgres => {
                return Err(ConfigError::new(
                    "CONSENTGATE_SIGNING_KEY",
                    "required with PostgreSQL (or CONSENTGATE_SIGNING_KEY_FILE); \
                     generate one with `consentgate signing-key generate`",
                ));
            }
            (None, None) => SigningKeySource::Generated(data_dir.join("signing.key")),
        };
        let checkpoint_every_events = raw.checkpoint_every_events.unwrap_or(100);
        if !(1..=1_000_000).contains(&checkpoint_every_events) {
            return Err(ConfigError::new(
                "CONSENTGATE_CHECKPOINT_EVERY_EVENTS",
                "must be between 1 and 1000000",
            ));
        }
        let checkpoint_interval_secs = raw.checkpoint_interval_secs.unwrap_or(60);
        if !(1..=86_400).contains(&checkpoint_interval_secs) {
            return Err(ConfigError::new(
                "CONSENTGATE_CHECKPOINT_INTERVAL_SECS",
                "must be between 1 and 86400",
            ));
        }
        let retention_interval_secs = raw.retention_interval_secs.unwrap_or(3600);
        if !(1..=7 * 86_400).contains(&retention_interval_secs) {
            return Err(ConfigError::new(
                "CONSENTGATE_RETENTION_INTERVAL_SECS",
                "must be between 1 and 604800",
            ));
        }
        let operator_token = match raw.operator_token {
            Some(token) => {
                use secrecy::ExposeSecret;
                if token.expose_secret().len() < 32 {
                    return Err(ConfigError::new(
                        "CONSENTGATE_OPERATOR_TOKEN",
                        "must be at least 32 characters",
                    ));
                }
                OperatorTokenSource::Inline(token)
            }
            None => OperatorTokenSource::Generated(data_dir.join("operator-token")),
        };
        let pool_size = raw.pool_size.unwrap_or(10);
        if !(1..=1000).contains(&pool_size) {
            return Err(ConfigError::new(
                "CONSENTGATE_POOL_SIZE",
                "must be between 1 and 1000",
            ));
        }
        if raw.workers == Some(0) {
            return Err(ConfigError::new(
                "CONSENTGATE_WORKERS",
                "must be at least 1",
            ));
        }
        let max_body_bytes = raw.max_body_bytes.unwrap_or(2 * 1024 * 1024);
        if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(ConfigError::new(
                "CONSENTGATE_MAX_BODY_BYTES",
                "must be between 1024 and 67108864",
            ));
        }
        let argon2_concurrency = raw.argon2_concurrency.unwrap_or(2);
        if !(1..=64).contains(&argon2_concurrency) {
            return Err(ConfigError::new(
                "CONSENTGATE_ARGON2_CONCURRENCY",
                "must be between 1 and 64",
            ));
        }
        let public_url = raw
            .public_url
            .map(|url| validate_public_url(&url))
            .transpose()?;
        let preference_posts_per_minute = raw.preference_posts_per_minute.unwrap_or(10);
        if !(1..=10_000).contains(&preference_posts_per_minute) {
            return Err(ConfigError::new(
                "CONSENTGATE_PREFERENCE_POSTS_PER_MINUTE",
                "must be between 1 and 10000",
            ));
        }
        let log_filter = raw.log.unwrap_or_else(|| "info".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log_filter)
            .map_err(|e| ConfigError::new("CONSENTGATE_LOG", e.to_string()))?;
        Ok(Settings {
            bind,
            database,
            data_dir,
            pool_size,
            master_key,
            operator_token,
            signing_key,
            checkpoint_every_events,
            checkpoint_interval_secs,
            retention_interval_secs,
            log_format: raw.log_format.unwrap_or(LogFormat::Pretty),
            log_filter,
            policies_dir: raw.policies_dir,
            workers: raw.workers,
            max_body_bytes,
            argon2_concurrency,
            public_url,
            preference_posts_per_minute,
            rate_limits,
        })
    }
}

/// An absolute http(s) base URL without query, fragment or trailing slash.
fn validate_public_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let ok = rest.is_some_and(|rest| {
        let host = rest.split('/').next().unwrap_or_default();
        !host.is_empty()
            && !host.contains('@')
            && !rest.contains(['?', '#'])
            && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if ok {
        Ok(url.to_owned())
    } else {
        Err(ConfigError::new(
            "CONSENTGATE_PUBLIC_URL",
            "must be an absolute http or https URL without credentials, query or fragment, e.g. https://consent.example.com",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut figment = Figment::new();
        for (k, v) in pairs {
            figment = figment.merge(Serialized::default(k, v));
        }
        Settings::from_figment(figment)
    }

    #[test]
    fn defaults_give_the_embedded_sqlite_setup() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite(PathBuf::from("data/consentgate.db"))
        );
        assert!(
            matches!(s.master_key, MasterKeySource::Generated(ref p) if p == Path::new("data/master.key"))
        );
        assert!(matches!(
            s.operator_token,
            OperatorTokenSource::Generated(_)
        ));
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("bind", "localhost")], "CONSENTGATE_BIND"),
            (&[("database_url", "mysql://x")], "DATABASE_URL"),
            (&[("pool_size", "0")], "CONSENTGATE_POOL_SIZE"),
            (&[("pool_size", "many")], "CONSENTGATE_POOL_SIZE"),
            (&[("log_format", "xml")], "CONSENTGATE_LOG_FORMAT"),
            (&[("log", "[[[")], "CONSENTGATE_LOG"),
            (&[("operator_token", "short")], "CONSENTGATE_OPERATOR_TOKEN"),
            (
                &[("database_url", "postgres://localhost/x")],
                "CONSENTGATE_MASTER_KEY",
            ),
            (
                &[("master_key", "a"), ("master_key_file", "b")],
                "CONSENTGATE_MASTER_KEY",
            ),
            (&[("colour", "blue")], "CONSENTGATE_COLOUR"),
            (
                &[("public_url", "consent.example.com")],
                "CONSENTGATE_PUBLIC_URL",
            ),
            (&[("public_url", "https://a@b/")], "CONSENTGATE_PUBLIC_URL"),
            (
                &[("public_url", "https://x/?q=1")],
                "CONSENTGATE_PUBLIC_URL",
            ),
            (
                &[("preference_posts_per_minute", "0")],
                "CONSENTGATE_PREFERENCE_POSTS_PER_MINUTE",
            ),
            (
                &[("rate_limit_key_per_sec", "0")],
                "CONSENTGATE_RATE_LIMIT_KEY_PER_SEC",
            ),
            (
                &[("rate_limit_address_burst", "lots")],
                "CONSENTGATE_RATE_LIMIT_ADDRESS_BURST",
            ),
            (
                &[("rate_limit_auth_failures_per_min", "0")],
                "CONSENTGATE_RATE_LIMIT_AUTH_FAILURES_PER_MIN",
            ),
            (
                &[("trusted_proxies", "10.0.0.0/33")],
                "CONSENTGATE_TRUSTED_PROXIES",
            ),
            (
                &[("trusted_proxies", "proxy.internal")],
                "CONSENTGATE_TRUSTED_PROXIES",
            ),
        ];
        for (pairs, setting) in cases {
            let err = settings(pairs).expect_err(&format!("{pairs:?} must be refused"));
            assert_eq!(err.setting, *setting, "{pairs:?}: {err}");
        }
    }

    #[test]
    fn the_public_url_loses_its_trailing_slash() {
        let s = settings(&[("public_url", "https://consent.example.com/")]).unwrap();
        assert_eq!(s.public_url.as_deref(), Some("https://consent.example.com"));
        assert_eq!(settings(&[]).unwrap().public_url, None);
    }

    #[test]
    fn rate_limits_default_to_the_documented_values_and_can_be_set() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.rate_limits, RateLimits::default());
        assert!(
            s.rate_limits.trusted_proxies.is_empty(),
            "XFF off by default"
        );
        let s = Settings::from_figment(
            Figment::new()
                .merge(Serialized::default("rate_limit_key_per_sec", 5))
                .merge(Serialized::default("rate_limit_auth_failures_burst", 3))
                .merge(Serialized::default(
                    "trusted_proxies",
                    "127.0.0.1, 10.0.0.0/8,fd00::/8",
                )),
        )
        .unwrap();
        assert_eq!(s.rate_limits.per_key.rate, 5);
        assert_eq!(s.rate_limits.auth_failures.burst, 3);
        let trusted = &s.rate_limits.trusted_proxies;
        for (addr, expected) in [
            ("127.0.0.1", true),
            ("127.0.0.2", false),
            ("10.200.3.4", true),
            ("11.0.0.1", false),
            ("fd12::1", true),
            ("fe80::1", false),
        ] {
            assert_eq!(trusted.contains(addr.parse().unwrap()), expected, "{addr}");
        }
    }

    #[test]
    fn a_bad_secret_is_never_echoed() {
        let err = settings(&[("operator_token", "hunter2")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn postgres_with_a_named_key_is_accepted() {
        let s = settings(&[
            ("database_url", "postgres://localhost/x"),
            ("master_key_file", "/etc/consentgate/master.key"),
            ("signing_key_file", "/etc/consentgate/signing.key"),
        ])
        .unwrap();
        assert!(matches!(s.master_key, MasterKeySource::File(_)));
    }
}
