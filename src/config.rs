//! Gateway configuration: documented defaults in one place, `WA_*` environment
//! overrides, and an optional `KEY=value` config file (`WA_CONFIG`).
//!
//! Precedence: environment variable > config file > default.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;

/// A secret value that never prints (Debug and Display show `***`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which WhatsApp engine drives the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// The real WhatsApp Web multi-device client (whatsapp-rust).
    WhatsApp,
    /// The in-process simulated WhatsApp network (tests, demos, load runs).
    Sim,
}

/// Every setting of the gateway. Built by [`Config::from_env`] or by tests.
#[derive(Debug, Clone)]
pub struct Config {
    /// `WA_LISTEN`: address the HTTP API binds.
    pub listen: String,
    /// `WA_DATA_DIR`: where the SQLite files, the JWT secret and session stores live.
    pub data_dir: PathBuf,
    /// `WA_JWT_SECRET`: HMAC key for JWTs; generated into the data dir when unset.
    pub jwt_secret: Option<Secret>,
    /// `WA_SECRETS_KEY`: the key API keys and webhook secrets are sealed
    /// with (32 bytes, base64 or hex); unset: the key file.
    pub secrets_key: Option<Secret>,
    /// `WA_SECRETS_KEY_PREVIOUS`: older keys (comma-separated) that still
    /// open values until the next start re-seals them.
    pub secrets_key_previous: Vec<Secret>,
    /// `WA_SECRETS_KEY_FILE`: where the generated key is kept (default `<data>/secrets_key`).
    pub secrets_key_file: Option<PathBuf>,
    /// `WA_JWT_TTL`: lifetime of a login token.
    pub jwt_ttl: Duration,
    /// `WA_NATS_URL`: JetStream backbone; `None` = embedded SQLite backbone.
    pub nats_url: Option<String>,
    /// `WA_NATS_STREAM`: JetStream stream name.
    pub nats_stream: String,
    /// `WA_NATS_SUBJECT_PREFIX`: first token of every subject.
    pub nats_subject_prefix: String,
    /// `WA_NATS_STARTUP_TIMEOUT`: how long start-up waits for NATS (with backoff) before giving up.
    pub nats_startup_timeout: Duration,
    /// `WA_ENGINE`: `whatsapp` or `sim`.
    pub engine: EngineKind,
    /// `WA_ADMIN_EMAIL`: e-mail of the first admin, created on first start.
    pub admin_email: String,
    /// `WA_ADMIN_PASSWORD`: password of the first admin; random and printed once when unset.
    pub admin_password: Option<Secret>,
    /// `WA_ALLOWED_IPS`: client IP ranges allowed to call the API; empty = all.
    pub allowed_ips: Vec<IpNet>,
    /// `WA_TRUSTED_PROXIES`: reverse proxies whose `X-Forwarded-For` /
    /// `Forwarded` name the client; empty = the peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// `WA_TLS_CERT`: PEM certificate chain; with `WA_TLS_KEY`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// `WA_TLS_KEY`: PEM private key of the certificate.
    pub tls_key: Option<PathBuf>,
    /// `WA_TLS_RELOAD_INTERVAL`: how often the certificate files are checked for a change.
    pub tls_reload_interval: Duration,
    /// `WA_LOG`: tracing filter.
    pub log_filter: String,
    /// `WA_WEBHOOK_ALLOW_PRIVATE`: allow webhook URLs on loopback/private addresses.
    pub webhook_allow_private: bool,
    /// `WA_MEDIA_ALLOW_PRIVATE`: allow media URLs on loopback/private addresses.
    pub media_allow_private: bool,
    /// `WA_PROXY_ALLOW_PRIVATE`: allow instance proxies on loopback/private
    /// addresses (default true: proxies usually are on a private network).
    pub proxy_allow_private: bool,
    /// `WA_MEDIA_MAX_BYTES`: size cap of media fetched by URL or uploaded.
    pub media_max_bytes: u64,
    /// `WA_JSON_MAX_BYTES`: size cap of every request body but a file upload
    /// (counted as read, chunked or not; 413 above it).
    pub json_max_bytes: u64,
    /// `WA_MEDIA_TIMEOUT`: timeout of a media download.
    pub media_timeout: Duration,
    /// `WA_WEBHOOK_TIMEOUT`: timeout of one webhook attempt.
    pub webhook_timeout: Duration,
    /// `WA_WEBHOOK_WORKERS`: concurrent webhook senders.
    pub webhook_workers: usize,
    /// `WA_QR_MAX_CODES`: unscanned QR codes before an instance stops asking.
    pub qr_max_codes: u32,
    /// `WA_RATE_LIMIT_PER_MIN`: authenticated requests a user may make per
    /// minute (a token bucket that holds a minute's worth); 0 turns it off.
    pub rate_limit_per_min: u32,
    /// `WA_LOGIN_MAX_FAILURES`: failed logins per e-mail or address in 15
    /// minutes before logins are refused with 429 (slowed from half of it); 0 off.
    pub login_max_failures: u32,
    /// `WA_SIM_AUTO_PAIR`: the sim engine pairs every new instance right after its first QR.
    pub sim_auto_pair: bool,
    /// `WA_SIM_RECEIPT_DELAY_MS`: sim delay before a delivered receipt (read follows after the same delay).
    pub sim_receipt_delay: Duration,
    /// `WA_SIM_QR_INTERVAL_MS`: sim QR rotation interval.
    pub sim_qr_interval: Duration,
    /// `WA_STREAM_BUFFER`: events held for one event-stream client before it counts as slow.
    pub stream_buffer: usize,
    /// `WA_STREAM_SLOW_GRACE`: how long a client's buffer may stay full before it is cut off.
    pub stream_slow_grace: Duration,
    /// `WA_WHATSAPP_URL`: websocket URL of WhatsApp's servers (tests point it elsewhere).
    pub whatsapp_url: Option<String>,
    /// `WA_WHATSAPP_VERSION`: pin the WhatsApp Web version the real engine announces
    /// (`2.3000.1023456789`); unset = fetched once a day, falling back to the last known.
    pub whatsapp_version: Option<(u32, u32, u32)>,
    /// Not configurable from the environment: a transport that replaces the
    /// websocket of the real engine (tests and benchmarks set it from code).
    pub whatsapp_transport: Option<crate::whatsapp::real::TransportHook>,
    /// Not configurable from the environment: the HTTP client of the real
    /// engine's media (uploads and downloads at WhatsApp's CDN); tests set a
    /// fake CDN from code. `None` = the client library's own, with full
    /// certificate checks.
    pub whatsapp_http: Option<crate::whatsapp::real::HttpHook>,
    /// `WA_RECONNECT_BASE_MS`: first reconnect delay after a drop (doubles per failure, max 60 s).
    pub reconnect_base: Duration,
    /// `WA_SEND_WAIT_MS`: how long a send waits for a connecting instance before answering 409.
    pub send_wait: Duration,
    /// `WA_SEND_ACK_TIMEOUT_MS`: how long a sent message may wait for WhatsApp's
    /// server ack before its status becomes `failed` (`no_server_ack`).
    pub send_ack_timeout: Duration,
    /// `WA_METRICS_TOKEN`: when set, `/metrics` asks for `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    /// `WA_METRICS_LISTEN`: serve `/metrics` on this address instead of the API's port.
    pub metrics_listen: Option<String>,
    /// `WA_KEEPALIVE_INTERVAL_MS`: how often the real engine pings WhatsApp's server.
    pub keepalive_interval: Duration,
    /// `WA_KEEPALIVE_TIMEOUT_MS`: a ping unanswered this long closes the
    /// connection (`keepalive_timeout`) and the instance reconnects.
    pub keepalive_timeout: Duration,
    /// `WA_STUCK_AFTER_SECS`: a message still `sent` (no `delivered`) this long is stuck.
    pub stuck_after: Duration,
}

impl Config {
    /// Defaults for every key (what the README documents).
    pub fn defaults() -> Self {
        Self {
            listen: "127.0.0.1:3000".into(),
            data_dir: PathBuf::from("./data"),
            jwt_secret: None,
            jwt_ttl: Duration::from_secs(24 * 3600),
            secrets_key: None,
            secrets_key_previous: Vec::new(),
            secrets_key_file: None,
            nats_url: None,
            nats_stream: "WA_EVENTS".into(),
            nats_subject_prefix: "wa".into(),
            nats_startup_timeout: Duration::from_secs(60),
            engine: EngineKind::WhatsApp,
            admin_email: "admin@localhost".into(),
            admin_password: None,
            allowed_ips: Vec::new(),
            trusted_proxies: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_reload_interval: Duration::from_secs(10),
            log_filter: "info".into(),
            webhook_allow_private: false,
            media_allow_private: false,
            proxy_allow_private: true,
            media_max_bytes: 64 * 1024 * 1024,
            json_max_bytes: 1024 * 1024,
            media_timeout: Duration::from_secs(30),
            webhook_timeout: Duration::from_secs(10),
            webhook_workers: 32,
            qr_max_codes: 6,
            rate_limit_per_min: 6_000,
            login_max_failures: 10,
            sim_auto_pair: false,
            sim_receipt_delay: Duration::ZERO,
            sim_qr_interval: Duration::from_secs(20),
            stream_buffer: 512,
            stream_slow_grace: Duration::from_secs(5),
            whatsapp_url: None,
            whatsapp_version: None,
            whatsapp_transport: None,
            whatsapp_http: None,
            reconnect_base: Duration::from_secs(1),
            send_wait: Duration::from_secs(3),
            send_ack_timeout: Duration::from_secs(60),
            metrics_token: None,
            metrics_listen: None,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            stuck_after: Duration::from_secs(600),
        }
    }

    /// Defaults for a test: a given data dir, port 0, the sim engine, loopback allowed.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            data_dir: data_dir.into(),
            engine: EngineKind::Sim,
            admin_email: "admin@test.local".into(),
            admin_password: Some(Secret::new("admin-password")),
            webhook_allow_private: true,
            media_allow_private: true,
            log_filter: "warn".into(),
            ..Self::defaults()
        }
    }

    /// Reads the process environment, and `WA_CONFIG` (a `KEY=value` file) when set.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut vars: HashMap<String, String> = HashMap::new();
        if let Ok(path) = std::env::var("WA_CONFIG") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("Failed to read config file {path}"))?;
            vars.extend(parse_config_file(&text)?);
        }
        for (key, value) in std::env::vars() {
            if key.starts_with("WA_") {
                vars.insert(key, value);
            }
        }
        Self::from_vars(&vars)
    }

    /// Builds a config from `WA_*` key/value pairs over the defaults.
    pub fn from_vars(vars: &HashMap<String, String>) -> anyhow::Result<Self> {
        let mut c = Self::defaults();
        let get = |k: &str| {
            vars.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = get("WA_LISTEN") {
            v.parse::<SocketAddr>()
                .with_context(|| format!("WA_LISTEN must be host:port, got {v:?}"))?;
            c.listen = v;
        }
        if let Some(v) = get("WA_DATA_DIR") {
            c.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("WA_JWT_SECRET") {
            if v.len() < 16 {
                bail!("WA_JWT_SECRET must be at least 16 characters");
            }
            c.jwt_secret = Some(Secret::new(v));
        }
        c.secrets_key = get("WA_SECRETS_KEY").map(Secret::new);
        c.secrets_key_previous = get("WA_SECRETS_KEY_PREVIOUS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();
        c.secrets_key_file = get("WA_SECRETS_KEY_FILE").map(PathBuf::from);
        if let Some(v) = get("WA_JWT_TTL") {
            c.jwt_ttl = parse_duration(&v).context("WA_JWT_TTL")?;
        }
        c.nats_url = get("WA_NATS_URL");
        if let Some(v) = get("WA_NATS_STREAM") {
            c.nats_stream = v;
        }
        if let Some(v) = get("WA_NATS_SUBJECT_PREFIX") {
            if v.contains(['*', '>', ' ', '\t']) || v.starts_with('.') || v.ends_with('.') {
                bail!(
                    "WA_NATS_SUBJECT_PREFIX must be plain subject tokens (no wildcards or spaces), got {v:?}"
                );
            }
            c.nats_subject_prefix = v;
        }
        if let Some(v) = get("WA_NATS_STARTUP_TIMEOUT") {
            c.nats_startup_timeout = parse_duration(&v).context("WA_NATS_STARTUP_TIMEOUT")?;
        }
        if let Some(v) = get("WA_ENGINE") {
            c.engine = match v.as_str() {
                "whatsapp" => EngineKind::WhatsApp,
                "sim" => EngineKind::Sim,
                other => bail!("WA_ENGINE must be `whatsapp` or `sim`, got {other:?}"),
            };
        }
        if let Some(v) = get("WA_ADMIN_EMAIL") {
            c.admin_email = v;
        }
        c.admin_password = get("WA_ADMIN_PASSWORD").map(Secret::new);
        if let Some(v) = get("WA_ALLOWED_IPS") {
            c.allowed_ips = parse_cidrs(&v).context("WA_ALLOWED_IPS")?;
        }
        if let Some(v) = get("WA_TRUSTED_PROXIES") {
            c.trusted_proxies = parse_cidrs(&v).context("WA_TRUSTED_PROXIES")?;
        }
        c.tls_cert = get("WA_TLS_CERT").map(PathBuf::from);
        c.tls_key = get("WA_TLS_KEY").map(PathBuf::from);
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            bail!("WA_TLS_CERT and WA_TLS_KEY go together: set both (HTTPS) or neither (HTTP)");
        }
        if let Some(v) = get("WA_TLS_RELOAD_INTERVAL") {
            c.tls_reload_interval = parse_duration(&v).context("WA_TLS_RELOAD_INTERVAL")?;
        }
        if let Some(v) = get("WA_LOG") {
            c.log_filter = v;
        }
        if let Some(v) = get("WA_WEBHOOK_ALLOW_PRIVATE") {
            c.webhook_allow_private = parse_bool(&v).context("WA_WEBHOOK_ALLOW_PRIVATE")?;
        }
        if let Some(v) = get("WA_MEDIA_ALLOW_PRIVATE") {
            c.media_allow_private = parse_bool(&v).context("WA_MEDIA_ALLOW_PRIVATE")?;
        }
        if let Some(v) = get("WA_PROXY_ALLOW_PRIVATE") {
            c.proxy_allow_private = parse_bool(&v).context("WA_PROXY_ALLOW_PRIVATE")?;
        }
        if let Some(v) = get("WA_MEDIA_MAX_BYTES") {
            c.media_max_bytes = v.parse().context("WA_MEDIA_MAX_BYTES")?;
        }
        if let Some(v) = get("WA_JSON_MAX_BYTES") {
            c.json_max_bytes = v.parse().context("WA_JSON_MAX_BYTES")?;
        }
        if let Some(v) = get("WA_MEDIA_TIMEOUT") {
            c.media_timeout = parse_duration(&v).context("WA_MEDIA_TIMEOUT")?;
        }
        if let Some(v) = get("WA_WEBHOOK_TIMEOUT") {
            c.webhook_timeout = parse_duration(&v).context("WA_WEBHOOK_TIMEOUT")?;
        }
        if let Some(v) = get("WA_WEBHOOK_WORKERS") {
            c.webhook_workers = v.parse().context("WA_WEBHOOK_WORKERS")?;
        }
        if let Some(v) = get("WA_LOGIN_MAX_FAILURES") {
            c.login_max_failures = v.parse().context("WA_LOGIN_MAX_FAILURES")?;
        }
        if let Some(v) = get("WA_RATE_LIMIT_PER_MIN") {
            c.rate_limit_per_min = v.parse().context("WA_RATE_LIMIT_PER_MIN")?;
        }
        if let Some(v) = get("WA_QR_MAX_CODES") {
            c.qr_max_codes = v.parse().context("WA_QR_MAX_CODES")?;
        }
        if let Some(v) = get("WA_SIM_AUTO_PAIR") {
            c.sim_auto_pair = parse_bool(&v).context("WA_SIM_AUTO_PAIR")?;
        }
        if let Some(v) = get("WA_SIM_RECEIPT_DELAY_MS") {
            c.sim_receipt_delay =
                Duration::from_millis(v.parse().context("WA_SIM_RECEIPT_DELAY_MS")?);
        }
        if let Some(v) = get("WA_SIM_QR_INTERVAL_MS") {
            c.sim_qr_interval = Duration::from_millis(v.parse().context("WA_SIM_QR_INTERVAL_MS")?);
        }
        if let Some(v) = get("WA_STREAM_BUFFER") {
            c.stream_buffer = v.parse().context("WA_STREAM_BUFFER")?;
            anyhow::ensure!(c.stream_buffer >= 1, "WA_STREAM_BUFFER must be at least 1");
        }
        if let Some(v) = get("WA_STREAM_SLOW_GRACE") {
            c.stream_slow_grace = parse_duration(&v).context("WA_STREAM_SLOW_GRACE")?;
        }
        c.whatsapp_url = get("WA_WHATSAPP_URL");
        if let Some(v) = get("WA_WHATSAPP_VERSION") {
            c.whatsapp_version = Some(parse_version(&v)?);
        }
        if let Some(v) = get("WA_SEND_WAIT_MS") {
            c.send_wait = Duration::from_millis(v.parse().context("WA_SEND_WAIT_MS")?);
        }
        if let Some(v) = get("WA_SEND_ACK_TIMEOUT_MS") {
            c.send_ack_timeout =
                Duration::from_millis(v.parse().context("WA_SEND_ACK_TIMEOUT_MS")?);
        }
        c.metrics_token = get("WA_METRICS_TOKEN")
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        c.metrics_listen = get("WA_METRICS_LISTEN").filter(|l| !l.is_empty());
        if let Some(v) = get("WA_KEEPALIVE_INTERVAL_MS") {
            c.keepalive_interval =
                Duration::from_millis(v.parse().context("WA_KEEPALIVE_INTERVAL_MS")?);
        }
        if let Some(v) = get("WA_KEEPALIVE_TIMEOUT_MS") {
            c.keepalive_timeout =
                Duration::from_millis(v.parse().context("WA_KEEPALIVE_TIMEOUT_MS")?);
        }
        if c.keepalive_interval.is_zero() || c.keepalive_timeout.is_zero() {
            bail!("WA_KEEPALIVE_INTERVAL_MS and WA_KEEPALIVE_TIMEOUT_MS must be above 0");
        }
        if let Some(v) = get("WA_STUCK_AFTER_SECS") {
            let secs: u64 = v.parse().context("WA_STUCK_AFTER_SECS")?;
            if secs == 0 {
                bail!("WA_STUCK_AFTER_SECS must be above 0");
            }
            c.stuck_after = Duration::from_secs(secs);
        }
        if let Some(v) = get("WA_RECONNECT_BASE_MS") {
            c.reconnect_base = Duration::from_millis(v.parse().context("WA_RECONNECT_BASE_MS")?);
        }
        Ok(c)
    }
}

/// Parses `KEY=value` lines; `#` starts a comment; values may be quoted.
pub fn parse_config_file(text: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!("config file line {}: expected KEY=value", n + 1);
        };
        let k = k.trim();
        if !k.starts_with("WA_") {
            bail!("config file line {}: keys start with WA_", n + 1);
        }
        let v = v.trim().trim_matches('"').to_string();
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

/// Parses `30s`, `15m`, `24h`, `7d` or plain seconds.
pub fn parse_duration(v: &str) -> anyhow::Result<Duration> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let n: u64 = num.parse().with_context(|| format!("bad duration {v:?}"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("bad duration unit in {v:?} (use ms, s, m, h or d)"),
    };
    Ok(Duration::from_secs(secs))
}

/// Parses a WhatsApp Web version `primary.secondary.tertiary`.
pub fn parse_version(v: &str) -> anyhow::Result<(u32, u32, u32)> {
    let parts: Vec<u32> = v
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            anyhow::anyhow!("WA_WHATSAPP_VERSION must look like 2.3000.1023456789, got {v:?}")
        })?;
    match parts[..] {
        [a, b, c] => Ok((a, b, c)),
        _ => bail!("WA_WHATSAPP_VERSION must look like 2.3000.1023456789, got {v:?}"),
    }
}

fn parse_bool(v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("expected true or false, got {v:?}"),
    }
}

/// Parses a comma-separated CIDR list; a bare address is a single-host range.
pub fn parse_cidrs(v: &str) -> anyhow::Result<Vec<IpNet>> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .with_context(|| format!("{s:?} is not a CIDR range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("2w").is_err());
    }

    #[test]
    fn env_overrides_file_and_defaults() {
        let mut vars =
            parse_config_file("WA_LISTEN=0.0.0.0:8080\n# c\nWA_ENGINE=\"sim\"\n").unwrap();
        vars.insert("WA_ALLOWED_IPS".into(), "10.0.0.0/8, 127.0.0.1".into());
        let c = Config::from_vars(&vars).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080");
        assert_eq!(c.engine, EngineKind::Sim);
        assert_eq!(c.allowed_ips.len(), 2);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn bad_values_are_refused() {
        let vars: HashMap<String, String> =
            [("WA_ENGINE".to_string(), "baileys".to_string())].into();
        assert!(Config::from_vars(&vars).is_err());
        let vars: HashMap<String, String> =
            [("WA_ALLOWED_IPS".to_string(), "nonsense".to_string())].into();
        assert!(Config::from_vars(&vars).is_err());
    }

    #[test]
    fn a_whatsapp_version_is_three_numbers() {
        let vars: HashMap<String, String> = [(
            "WA_WHATSAPP_VERSION".to_string(),
            "2.3000.1023456789".to_string(),
        )]
        .into();
        assert_eq!(
            Config::from_vars(&vars).unwrap().whatsapp_version,
            Some((2, 3000, 1_023_456_789))
        );
        for bad in ["2.3000", "2.3000.x", "v2", "1.2.3.4"] {
            let vars: HashMap<String, String> =
                [("WA_WHATSAPP_VERSION".to_string(), bad.to_string())].into();
            assert!(Config::from_vars(&vars).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }
}
