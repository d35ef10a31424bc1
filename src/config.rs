//! Configuration: the TOML file described in OPERATIONS.md, environment overrides and
//! the trunk routing table derived from it.
//!
//! Loading goes file text -> `toml::Table` -> environment overrides applied to that
//! table -> typed structs. Overrides are applied *before* deserializing so that serde
//! type-checks them exactly like keys written in the file, and a bad value names the
//! variable it came from.
//!
//! Deserializing goes through a small path-tracking deserializer (`ValueDe`) instead of
//! `toml::Value::try_into`, because the operator has to be told *which* key is wrong
//! (`trunk[0].address`), and the toml crate loses that for values and array elements.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::Deserialize;

/// The file `Config::load(None)` reads from the working directory when it exists.
pub const DEFAULT_CONFIG_FILE: &str = "softswitch.toml";

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SOFTSWITCH_";

/// Separator between path segments in an override variable name.
const ENV_SEPARATOR: &str = "__";

/// Origin name used in error messages when no file was read.
const DEFAULTS_ORIGIN: &str = "built-in defaults";

/// Port used for a trunk address that does not name one (RFC 3261 default for sip:).
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// Everything that can go wrong while loading, validating or resolving configuration.
///
/// Every variant's message starts with where the problem is (file or environment
/// variable), so `main` can print it as is and exit non-zero.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file exists (or was named explicitly) but cannot be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: line {line}, column {column}: {problem}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        problem: String,
    },
    /// A key has a wrong type, a bad value, is unknown, or is missing.
    #[error("{origin}: key {key}: {problem}")]
    Key {
        /// The file, or the environment variable the value came from.
        origin: String,
        /// Dotted path, array elements as `[i]`, e.g. `trunk[0].address`.
        key: String,
        problem: String,
    },
    /// An override variable whose name does not map onto the configuration tree.
    #[error("{var}: {problem}")]
    Env { var: String, problem: String },
    /// A trunk host name did not resolve.
    #[error("trunk address {address}: cannot resolve: {source}")]
    Resolve {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// A trunk host name resolved to nothing.
    #[error("trunk address {address}: host name resolved to no address")]
    NoAddress { address: String },
}

// ---------------------------------------------------------------------------------
// Typed configuration
// ---------------------------------------------------------------------------------

/// The whole configuration. Every section is optional in the file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sip: SipConfig,
    pub media: MediaConfig,
    pub http: HttpConfig,
    pub store: StoreConfig,
    /// `[[trunk]]` tables, in file order (order breaks routing ties).
    #[serde(rename = "trunk")]
    pub trunks: Vec<Trunk>,
    pub sms: SmsConfig,
    pub push: PushConfig,
    pub calls: CallsConfig,
    pub runtime: RuntimeConfig,
}

/// `[sip]`: signalling listener and protocol timers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP and TCP are both bound on this address.
    pub listen: SocketAddr,
    /// Host or IP (optionally `:port`) written into Via/Contact when behind NAT;
    /// `None` means the listen address.
    pub public_addr: Option<String>,
    /// RFC 3261 T1 (RTT estimate), milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 T2 (maximum retransmit interval for non-INVITE), milliseconds.
    pub t2_ms: u64,
    /// RFC 3261 T4 (maximum time a message stays in the network), milliseconds.
    pub t4_ms: u64,
    /// An inbound TCP connection with no traffic for this long is closed. 120 s is
    /// well above the 30 s OPTIONS/CRLF keep-alive cadence of common clients, yet
    /// releases sockets from dead peers within a couple of minutes.
    pub tcp_idle_timeout_s: u64,
    /// Largest SIP message accepted on any transport, bytes (UDP datagram maximum).
    pub max_message_size: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5060)),
            public_addr: None,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            tcp_idle_timeout_s: 120,
            max_message_size: 65535,
        }
    }
}

impl SipConfig {
    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.t1_ms)
    }
    pub fn t2(&self) -> Duration {
        Duration::from_millis(self.t2_ms)
    }
    pub fn t4(&self) -> Duration {
        Duration::from_millis(self.t4_ms)
    }
    pub fn tcp_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.tcp_idle_timeout_s)
    }
}

/// `[media]`: RTP relay sockets.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    pub bind_ip: IpAddr,
    /// What goes into SDP `c=`; `None` means `bind_ip` (or the SIP public address).
    pub public_ip: Option<IpAddr>,
    pub port_min: u16,
    pub port_max: u16,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            public_ip: None,
            port_min: 20000,
            port_max: 29999,
        }
    }
}

/// `[http]`: the operator and app HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
        }
    }
}

/// `[store]`: where accounts, call records and events live.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path` or `postgres://user@host/db`.
    pub url: String,
    /// This switch's stable name among nodes sharing the store: it prefixes
    /// session ids and owns call records, so a restarted node closes what
    /// it left live (and only that).
    pub node: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://data/softswitch.db".to_owned(),
            node: "node1".to_owned(),
        }
    }
}

/// `[sms]`: where one-time codes are delivered.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// Codes are POSTed here as JSON; `None` writes them to the log.
    pub url: Option<String>,
}

/// `[push]`: app wake-ups (the push module owns its keys).
pub use crate::push::{ApnsConfig, FcmConfig, PushConfig};

/// `[calls]`: call supervision timers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    pub ring_timeout_s: u64,
    pub media_timeout_s: u64,
    /// AMR payload mode offered to Android apps: `octet-aligned` or
    /// `bandwidth-efficient` (RFC 4867); the relay converts to the trunk's.
    pub app_payload_mode: String,
    /// Concurrent calls per account (a phone has one line); more get `busy`.
    pub max_calls_per_account: usize,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            ring_timeout_s: 45,
            media_timeout_s: 30,
            app_payload_mode: "octet-aligned".to_owned(),
            max_calls_per_account: 1,
        }
    }
}

impl CallsConfig {
    pub fn app_payload_mode_octet_aligned(&self) -> bool {
        self.app_payload_mode != "bandwidth-efficient"
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout_s)
    }
    pub fn media_timeout(&self) -> Duration {
        Duration::from_secs(self.media_timeout_s)
    }
}

/// Most runtime worker threads accepted (more is a typo, not a machine).
pub const MAX_WORKER_THREADS: usize = 1024;

/// `[runtime]`: the async runtime that runs SIP signalling and HTTP (the
/// RTP relay has its own threads, one per core).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads; 0 (the default) means one per core the process may
    /// run on (its CPU affinity, e.g. under `taskset`).
    pub worker_threads: usize,
}

fn default_prefixes() -> Vec<String> {
    vec![String::new()]
}

fn default_codecs() -> Vec<String> {
    ["PCMA", "PCMU", "AMR", "opus", "telephone-event"]
        .iter()
        .map(|c| (*c).to_owned())
        .collect()
}

fn default_register_expires() -> u32 {
    3600
}

fn default_options_interval() -> u32 {
    30
}

/// One `[[trunk]]`: a SIP peer calls are routed to and/or accepted from.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: String,
    pub address: TrunkAddress,
    /// Numbers starting with one of these go to this trunk; `""` is the default route.
    #[serde(default = "default_prefixes")]
    pub prefixes: Vec<String>,
    /// Accept INVITEs whose source IP is this trunk's address.
    #[serde(default)]
    pub inbound: bool,
    /// Codec names offered/accepted on this trunk, in preference order.
    #[serde(default = "default_codecs")]
    pub codecs: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub realm: Option<String>,
    /// Keep a registration with the trunk.
    #[serde(default)]
    pub register: bool,
    #[serde(default = "default_register_expires")]
    pub register_expires_s: u32,
    /// OPTIONS keep-alive period; 0 disables it.
    #[serde(default = "default_options_interval")]
    pub options_interval_s: u32,
}

// Hand-written so the password never ends up in a log line.
impl fmt::Debug for Trunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trunk")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("prefixes", &self.prefixes)
            .field("inbound", &self.inbound)
            .field("codecs", &self.codecs)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("realm", &self.realm)
            .field("register", &self.register)
            .field("register_expires_s", &self.register_expires_s)
            .field("options_interval_s", &self.options_interval_s)
            .finish()
    }
}

impl Trunk {
    /// `None` when keep-alive is switched off.
    pub fn options_interval(&self) -> Option<Duration> {
        (self.options_interval_s > 0)
            .then(|| Duration::from_secs(u64::from(self.options_interval_s)))
    }
    pub fn register_expires(&self) -> Duration {
        Duration::from_secs(u64::from(self.register_expires_s))
    }
}

// ---------------------------------------------------------------------------------
// Trunk address
// ---------------------------------------------------------------------------------

/// Transport used to reach a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransportKind {
    #[default]
    Udp,
    Tcp,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
        })
    }
}

/// Where a trunk lives: `127.0.0.1:5080`, `host.example` (port 5060), `[::1]:5080`,
/// `sip:host:port;transport=tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrunkAddress {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub transport: TransportKind,
}

/// Why a trunk address string was rejected (the message part after the address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    pub input: String,
    pub problem: &'static str,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid address {:?}: {}", self.input, self.problem)
    }
}

impl std::error::Error for AddressError {}

fn valid_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn parse_port(text: &str) -> Result<u16, &'static str> {
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is not a destination"),
        Ok(port) => Ok(port),
        Err(_) => Err("port is not a number between 1 and 65535"),
    }
}

impl FromStr for TrunkAddress {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |problem: &'static str| AddressError {
            input: input.to_owned(),
            problem,
        };
        let text = input.trim();
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("sips:") {
            return Err(fail("TLS (sips:) is not supported"));
        }
        let rest = if lower.starts_with("sip:") {
            text.get(4..).unwrap_or_default()
        } else {
            text
        };
        let mut parts = rest.split(';');
        let hostport = parts.next().unwrap_or_default();
        let mut transport = TransportKind::Udp;
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "transport" => {
                    transport = match value.trim().to_ascii_lowercase().as_str() {
                        "udp" => TransportKind::Udp,
                        "tcp" => TransportKind::Tcp,
                        _ => return Err(fail("transport must be udp or tcp")),
                    }
                }
                // Loose routing is what the switch does anyway.
                "lr" => {}
                _ => return Err(fail("unknown parameter (only transport= is understood)")),
            }
        }
        if hostport.contains('@') {
            return Err(fail("a user part is not allowed, give host[:port]"));
        }
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (ip, after) = bracketed
                .split_once(']')
                .ok_or_else(|| fail("missing ] after IPv6 address"))?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| fail("bad IPv6 address"))?;
            let port = match after {
                "" => DEFAULT_SIP_PORT,
                _ => {
                    let port = after
                        .strip_prefix(':')
                        .ok_or_else(|| fail("expected :port after ]"))?;
                    parse_port(port).map_err(fail)?
                }
            };
            (ip.to_string(), port)
        } else if let Ok(ip) = hostport.parse::<Ipv6Addr>() {
            // A bare IPv6 literal cannot carry a port: the last group would be ambiguous.
            (ip.to_string(), DEFAULT_SIP_PORT)
        } else {
            let (host, port) = match hostport.rsplit_once(':') {
                Some((host, port)) => (host, parse_port(port).map_err(fail)?),
                None => (hostport, DEFAULT_SIP_PORT),
            };
            if host.is_empty() {
                return Err(fail("host is empty"));
            }
            if !valid_hostname(host) {
                return Err(fail("host is not an IP address or a valid host name"));
            }
            (host.to_ascii_lowercase(), port)
        };
        Ok(TrunkAddress {
            host,
            port,
            transport,
        })
    }
}

impl fmt::Display for TrunkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if self.transport == TransportKind::Tcp {
            f.write_str(";transport=tcp")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for TrunkAddress {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl TrunkAddress {
    /// The address when the host is an IP literal (no DNS needed).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }

    /// Every address the host resolves to (one for IP literals).
    pub async fn resolve_all(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        if let Some(addr) = self.socket_addr() {
            return Ok(vec![addr]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|source| ConfigError::Resolve {
                address: self.to_string(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(ConfigError::NoAddress {
                address: self.to_string(),
            });
        }
        Ok(addrs)
    }

    /// The first address the host resolves to: where requests are sent.
    pub async fn resolve(&self) -> Result<SocketAddr, ConfigError> {
        self.resolve_all()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ConfigError::NoAddress {
                address: self.to_string(),
            })
    }
}

// ---------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------

/// The trunk routing table: outbound by longest number prefix, inbound by source IP.
///
/// Sans-IO: trunk host names are resolved by the caller (see [`Router::resolve`]).
#[derive(Debug, Clone, Default)]
pub struct Router {
    trunks: Vec<Trunk>,
    /// (prefix, trunk index), longest prefix first; ties keep config order.
    prefixes: Vec<(String, usize)>,
    /// Source IP -> trunk index, for `inbound = true` trunks only.
    inbound: HashMap<IpAddr, usize>,
}

impl Router {
    /// Builds the table from trunks and the IPs their addresses resolved to.
    pub fn new(trunks: Vec<(Trunk, Vec<IpAddr>)>) -> Router {
        let mut router = Router::default();
        for (index, (trunk, ips)) in trunks.into_iter().enumerate() {
            for prefix in &trunk.prefixes {
                router.prefixes.push((prefix.clone(), index));
            }
            if trunk.inbound {
                for ip in ips {
                    // First trunk in config order owns a shared IP.
                    router.inbound.entry(ip.to_canonical()).or_insert(index);
                }
            }
            router.trunks.push(trunk);
        }
        // Stable sort: equal lengths keep config order, so the first trunk wins a tie.
        router
            .prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        router
    }

    /// Resolves every trunk address (DNS for host names) and builds the table.
    pub async fn resolve(trunks: &[Trunk]) -> Result<Router, ConfigError> {
        let mut resolved = Vec::with_capacity(trunks.len());
        for trunk in trunks {
            let ips = trunk
                .address
                .resolve_all()
                .await?
                .into_iter()
                .map(|addr| addr.ip())
                .collect();
            resolved.push((trunk.clone(), ips));
        }
        Ok(Router::new(resolved))
    }

    /// The trunk for a dialled number: longest matching prefix, `""` as the default
    /// route, `None` when nothing matches (the caller answers 404). Prefixes match the
    /// number verbatim, so `+49` and `49` are different prefixes.
    pub fn route(&self, number: &str) -> Option<&Trunk> {
        self.prefixes
            .iter()
            .find(|(prefix, _)| number.starts_with(prefix.as_str()))
            .and_then(|(_, index)| self.trunks.get(*index))
    }

    /// The inbound trunk an INVITE from `source` belongs to; `None` means it must be
    /// refused (403), the switch is not an open relay.
    pub fn inbound_trunk(&self, source: IpAddr) -> Option<&Trunk> {
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        self.inbound
            .get(&source.to_canonical())
            .and_then(|index| self.trunks.get(*index))
    }

    /// A trunk by name.
    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name == name)
    }

    /// All trunks in config order.
    pub fn trunks(&self) -> &[Trunk] {
        &self.trunks
    }
}

// ---------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------

impl Config {
    /// Loads `path`, or `softswitch.toml` in the working directory when it exists,
    /// or the built-in defaults; then applies `SOFTSWITCH_*` overrides from the process
    /// environment and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        // vars_os: std::env::vars panics on a non-UTF-8 variable anywhere in the
        // environment; such variables cannot be overrides anyway.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Config::load_from(path, env)
    }

    /// [`Config::load`] with an explicit environment (for tests and tools).
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => Some(path.to_path_buf()),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                default.is_file().then_some(default)
            }
        };
        match file {
            Some(file) => {
                let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                    file: file.clone(),
                    source,
                })?;
                Config::parse(&text, &file.display().to_string(), env)
            }
            None => Config::parse("", DEFAULTS_ORIGIN, env),
        }
    }

    /// Parses TOML `text`; `origin` (usually the file name) prefixes error messages.
    pub fn parse(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Syntax {
                origin: origin.to_owned(),
                line,
                column,
                problem: e.message().trim().to_owned(),
            }
        })?;
        let overrides = apply_env(&mut table, env)?;
        let root = toml::Value::Table(table);
        let de = ValueDe {
            value: &root,
            path: String::new(),
            overrides: &overrides,
        };
        let config = Config::deserialize(de).map_err(|e| {
            let key = e.key();
            ConfigError::Key {
                origin: origin_of(&key, origin, &overrides),
                key: if key.is_empty() {
                    "(top level)".to_owned()
                } else {
                    key
                },
                problem: e.message,
            }
        })?;
        config
            .validate()
            .map_err(|(key, problem)| ConfigError::Key {
                origin: origin_of(&key, origin, &overrides),
                key,
                problem,
            })?;
        Ok(config)
    }

    /// Cross-field checks serde cannot express. Returns the offending key path.
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, problem: String| Err((key.to_owned(), problem));
        let sip = &self.sip;
        if sip.t1_ms == 0 {
            return bad("sip.t1_ms", "must be greater than 0".into());
        }
        if sip.t2_ms < sip.t1_ms {
            return bad(
                "sip.t2_ms",
                format!("must be at least sip.t1_ms ({})", sip.t1_ms),
            );
        }
        if sip.max_message_size < 1024 {
            return bad("sip.max_message_size", "must be at least 1024 bytes".into());
        }
        if let Some(public) = &sip.public_addr {
            if public.is_empty() || public.contains(char::is_whitespace) {
                return bad("sip.public_addr", format!("invalid address {public:?}"));
            }
        }
        let media = &self.media;
        if media.port_min == 0 {
            return bad("media.port_min", "must be greater than 0".into());
        }
        if media.port_min > media.port_max {
            return bad(
                "media.port_min",
                format!(
                    "port_min ({}) is greater than port_max ({})",
                    media.port_min, media.port_max
                ),
            );
        }
        let url = &self.store.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return bad(
                "store.url",
                format!("unsupported store {url:?}: expected sqlite://PATH or postgres://..."),
            );
        }
        if self.calls.ring_timeout_s == 0 {
            return bad("calls.ring_timeout_s", "must be greater than 0".into());
        }
        if self.calls.media_timeout_s == 0 {
            return bad("calls.media_timeout_s", "must be greater than 0".into());
        }
        if self.runtime.worker_threads > MAX_WORKER_THREADS {
            return bad(
                "runtime.worker_threads",
                format!("must be at most {MAX_WORKER_THREADS} (0 = one per core)"),
            );
        }
        if !matches!(
            self.calls.app_payload_mode.as_str(),
            "octet-aligned" | "bandwidth-efficient"
        ) {
            return bad(
                "calls.app_payload_mode",
                "must be \"octet-aligned\" or \"bandwidth-efficient\"".into(),
            );
        }
        if self.calls.max_calls_per_account == 0 {
            return bad(
                "calls.max_calls_per_account",
                "must be greater than 0".into(),
            );
        }
        if self.store.node.is_empty()
            || !self
                .store
                .node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(
                "store.node",
                "must be letters, digits, '-' or '_' (it prefixes session ids)".into(),
            );
        }
        let mut names = HashSet::new();
        for (i, trunk) in self.trunks.iter().enumerate() {
            let key = |field: &str| format!("trunk[{i}].{field}");
            if trunk.name.trim().is_empty() {
                return Err((key("name"), "must not be empty".into()));
            }
            if !names.insert(trunk.name.as_str()) {
                return Err((
                    key("name"),
                    format!("duplicate trunk name {:?}", trunk.name),
                ));
            }
            for prefix in &trunk.prefixes {
                if !prefix
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'))
                {
                    return Err((
                        key("prefixes"),
                        format!("invalid prefix {prefix:?}: only digits, +, * and # are allowed"),
                    ));
                }
            }
            if trunk.codecs.is_empty() {
                return Err((key("codecs"), "must name at least one codec".into()));
            }
            if trunk.register && trunk.username.is_none() {
                return Err((key("username"), "required when register = true".into()));
            }
            if trunk.password.is_some() && trunk.username.is_none() {
                return Err((key("username"), "required when a password is set".into()));
            }
            if trunk.register_expires_s < 60 {
                return Err((key("register_expires_s"), "must be at least 60".into()));
            }
        }
        Ok(())
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// Names the environment variable when the failing key (or one of its parents)
/// was overridden, else the file.
fn origin_of(key: &str, file: &str, overrides: &Overrides) -> String {
    let mut best: Option<(&String, &String)> = None;
    for (path, ov) in &overrides.by_path {
        let covers = key == path
            || key.starts_with(&format!("{path}."))
            || key.starts_with(&format!("{path}["));
        let longer = match best {
            None => true,
            Some((p, _)) => path.len() > p.len(),
        };
        if covers && longer {
            best = Some((path, &ov.var));
        }
    }
    match best {
        Some((_, var)) => format!("environment {var}"),
        None => file.to_owned(),
    }
}

/// One applied environment override.
#[derive(Debug)]
struct Override {
    var: String,
    /// The variable's text, so a value that happens to look like a number can still be
    /// used where a string is expected (e.g. a numeric password).
    raw: String,
}

#[derive(Debug, Default)]
struct Overrides {
    by_path: HashMap<String, Override>,
}

/// How an override value is typed: TOML integers, floats, booleans and arrays are
/// taken as such; anything else (addresses, URLs, names) is a plain string.
fn env_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    if let Ok(mut table) = wrapped.parse::<toml::Table>() {
        if let Some(value) = table.remove("v") {
            if matches!(
                value,
                toml::Value::Integer(_)
                    | toml::Value::Float(_)
                    | toml::Value::Boolean(_)
                    | toml::Value::Array(_)
            ) {
                return value;
            }
        }
    }
    toml::Value::String(raw.to_owned())
}

/// Applies `SOFTSWITCH_SECTION__KEY[__KEY...]` variables to `table`. Array elements
/// (trunks) are addressed by index: `SOFTSWITCH_TRUNK__0__ADDRESS`. Variables without
/// a `__` are not overrides (they may be other settings) and are ignored.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Overrides, ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| {
            name.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| rest.contains(ENV_SEPARATOR))
        })
        .collect();
    // Deterministic order: an index override (TRUNK__1__...) may need TRUNK__0 first.
    vars.sort();
    let mut overrides = Overrides::default();
    for (var, raw) in vars {
        let rest = var.get(ENV_PREFIX.len()..).unwrap_or_default();
        let segments: Vec<String> = rest
            .split(ENV_SEPARATOR)
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let env_err = |problem: String| ConfigError::Env {
            var: var.clone(),
            problem,
        };
        if segments.iter().any(|s| s.is_empty()) {
            return Err(env_err("empty key segment in variable name".into()));
        }
        let path = set_path(table, &segments, env_value(&raw)).map_err(env_err)?;
        overrides.by_path.insert(
            path,
            Override {
                var: var.clone(),
                raw,
            },
        );
    }
    Ok(overrides)
}

/// Sets `value` at `segments` (creating tables, or a list when the next segment is
/// an index, as needed) and returns the key path in error-message notation.
fn set_path(
    table: &mut toml::Table,
    segments: &[String],
    value: toml::Value,
) -> Result<String, String> {
    let Some((first, rest)) = segments.split_first() else {
        return Err("no key".into());
    };
    let mut path = first.clone();
    let slot = table
        .entry(first.clone())
        .or_insert_with(|| empty_container(rest.first()));
    set_in(slot, rest, value, &mut path)?;
    Ok(path)
}

/// An empty container suited to hold `next` (an index means a list of tables).
fn empty_container(next: Option<&String>) -> toml::Value {
    match next {
        Some(segment) if segment.parse::<usize>().is_ok() => toml::Value::Array(Vec::new()),
        _ => toml::Value::Table(toml::Table::new()),
    }
}

fn set_in(
    slot: &mut toml::Value,
    segments: &[String],
    value: toml::Value,
    path: &mut String,
) -> Result<(), String> {
    let Some((segment, rest)) = segments.split_first() else {
        *slot = value;
        return Ok(());
    };
    let child = match slot {
        toml::Value::Table(t) => {
            path.push('.');
            path.push_str(segment);
            t.entry(segment.clone())
                .or_insert_with(|| empty_container(rest.first()))
        }
        toml::Value::Array(items) => {
            let index: usize = segment.parse().map_err(|_| {
                format!("{path} is a list, expected an index instead of {segment:?}")
            })?;
            // Appending one element is allowed so a trunk can be added from the
            // environment; gaps are not, they would leave half-defined entries.
            if index == items.len() {
                items.push(toml::Value::Table(toml::Table::new()));
            }
            path.push_str(&format!("[{index}]"));
            items
                .get_mut(index)
                .ok_or_else(|| format!("{path}: index beyond the end of the list"))?
        }
        _ => {
            return Err(format!(
                "{path} is not a table, cannot set {segment:?} in it"
            ))
        }
    };
    set_in(child, rest, value, path)
}

// ---------------------------------------------------------------------------------
// Path-tracking deserializer over toml::Value
// ---------------------------------------------------------------------------------

/// Serde error carrying the key path it happened at.
#[derive(Debug)]
struct DeError {
    message: String,
    /// Set once, by the innermost value that saw the error.
    path: Option<String>,
    /// A field named by the error itself (unknown or missing field), appended to the
    /// path of the table that reported it.
    field: Option<String>,
}

impl DeError {
    fn key(&self) -> String {
        let base = self.path.clone().unwrap_or_default();
        match &self.field {
            Some(field) if base.is_empty() => field.clone(),
            Some(field) => format!("{base}.{field}"),
            None => base,
        }
    }

    fn at(mut self, path: &str) -> DeError {
        if self.path.is_none() {
            self.path = Some(path.to_owned());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            path: None,
            field: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            message: format!("unknown key, expected one of: {}", expected.join(", ")),
            path: None,
            field: Some(field.to_owned()),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            message: "missing (this key is required)".to_owned(),
            path: None,
            field: Some(field.to_owned()),
        }
    }
}

struct ValueDe<'a> {
    value: &'a toml::Value,
    path: String,
    overrides: &'a Overrides,
}

impl<'a> ValueDe<'a> {
    fn child(&self, value: &'a toml::Value, path: String) -> ValueDe<'a> {
        ValueDe {
            value,
            path,
            overrides: self.overrides,
        }
    }
}

impl<'de> de::Deserializer<'de> for ValueDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.value {
            toml::Value::String(s) => visitor.visit_str(s),
            toml::Value::Integer(i) => visitor.visit_i64(*i),
            toml::Value::Float(f) => visitor.visit_f64(*f),
            toml::Value::Boolean(b) => visitor.visit_bool(*b),
            toml::Value::Datetime(d) => visitor.visit_string(d.to_string()),
            toml::Value::Array(items) => visitor.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                parent: &self,
            }),
            toml::Value::Table(table) => visitor.visit_map(MapDe {
                entries: table.iter(),
                pending: None,
                parent: &self,
            }),
        };
        result.map_err(|e| e.at(&self.path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // TOML has no null: a present key is always Some.
        let path = self.path.clone();
        visitor.visit_some(self).map_err(|e| e.at(&path))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if let Some(ov) = self.overrides.by_path.get(&self.path) {
            if !matches!(self.value, toml::Value::Array(_) | toml::Value::Table(_)) {
                return visitor
                    .visit_str(&ov.raw)
                    .map_err(|e: DeError| e.at(&self.path));
            }
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        visitor.visit_newtype_struct(self).map_err(|e| e.at(&path))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Only unit variants written as strings are used in the config.
        match self.value {
            toml::Value::String(s) => {
                let de: de::value::StrDeserializer<'_, DeError> = s.as_str().into_deserializer();
                visitor.visit_enum(de).map_err(|e| e.at(&self.path))
            }
            _ => Err(de::Error::custom(format!(
                "invalid type: {}, expected a string",
                self.value.type_str()
            )))
            .map_err(|e: DeError| e.at(&self.path)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

struct SeqDe<'a, 'p, I> {
    items: I,
    parent: &'p ValueDe<'a>,
}

impl<'de, 'a, I> de::SeqAccess<'de> for SeqDe<'a, '_, I>
where
    I: Iterator<Item = (usize, &'a toml::Value)>,
{
    type Error = DeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((index, value)) => {
                let path = format!("{}[{index}]", self.parent.path);
                // `at` again here: a Deserialize impl may fail after its primitive was
                // read (e.g. TrunkAddress parsing), outside the child's own methods.
                seed.deserialize(self.parent.child(value, path.clone()))
                    .map(Some)
                    .map_err(|e| e.at(&path))
            }
            None => Ok(None),
        }
    }
}

struct MapDe<'a, 'p, I> {
    entries: I,
    pending: Option<(&'a String, &'a toml::Value)>,
    parent: &'p ValueDe<'a>,
}

impl<'de, 'a, I> de::MapAccess<'de> for MapDe<'a, '_, I>
where
    I: Iterator<Item = (&'a String, &'a toml::Value)>,
{
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.pending = Some((key, value));
                let de: de::value::StrDeserializer<'_, DeError> = key.as_str().into_deserializer();
                seed.deserialize(de).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        let path = if self.parent.path.is_empty() {
            key.clone()
        } else {
            format!("{}.{key}", self.parent.path)
        };
        // See SeqDe: errors raised after the value was read still belong to this key.
        seed.deserialize(self.parent.child(value, path.clone()))
            .map_err(|e| e.at(&path))
    }
}

/// Deserializes any config-like type from a `toml::Value` with key-path errors.
/// Exposed for sibling modules that keep their own config fragments.
pub fn from_value<T: DeserializeOwned>(
    value: &toml::Value,
    origin: &str,
) -> Result<T, ConfigError> {
    let overrides = Overrides::default();
    let de = ValueDe {
        value,
        path: String::new(),
        overrides: &overrides,
    };
    T::deserialize(de).map_err(|e| ConfigError::Key {
        origin: origin.to_owned(),
        key: e.key(),
        problem: e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "softswitch.toml", Vec::new())
    }

    fn trunk(name: &str, address: &str, prefixes: &[&str], inbound: bool) -> Trunk {
        Trunk {
            name: name.into(),
            address: address.parse().unwrap(),
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            inbound,
            codecs: default_codecs(),
            username: None,
            password: None,
            realm: None,
            register: false,
            register_expires_s: 3600,
            options_interval_s: 30,
        }
    }

    const FULL: &str = r#"
[sip]
listen = "0.0.0.0:5060"
public_addr = "203.0.113.5"

[media]
bind_ip = "0.0.0.0"
public_ip = "203.0.113.5"
port_min = 20000
port_max = 29999

[http]
listen = "0.0.0.0:8080"

[store]
url = "sqlite://data/softswitch.db"

[[trunk]]
name = "pstn"
address = "127.0.0.1:5080"
prefixes = [""]
inbound = true
codecs = ["PCMA", "PCMU", "AMR", "opus", "telephone-event"]
username = "u"
password = "p"
realm = "r"
register = true

[sms]
url = "http://127.0.0.1:9000/sms"

[push]
long_poll_timeout_s = 30
[push.apns]
url = "https://api.push.apple.com"
key_file = "AuthKey.p8"
key_id = "K"
team_id = "T"
topic = "com.example.app.voip"
[push.fcm]
url = "https://fcm.googleapis.com"
project_id = "P"
service_account_file = "sa.json"

[calls]
ring_timeout_s = 45
media_timeout_s = 30
"#;

    #[test]
    fn defaults_run_on_a_laptop() {
        let c = parse("").unwrap();
        assert_eq!(c.sip.listen, "0.0.0.0:5060".parse().unwrap());
        assert_eq!(c.http.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!((c.media.port_min, c.media.port_max), (20000, 29999));
        assert_eq!(c.store.url, "sqlite://data/softswitch.db");
        assert_eq!(c.calls.ring_timeout(), Duration::from_secs(45));
        assert_eq!(c.calls.media_timeout(), Duration::from_secs(30));
        assert_eq!(c.push.long_poll_timeout(), Duration::from_secs(30));
        assert_eq!(c.runtime.worker_threads, 0);
        assert_eq!(c.sip.t1(), Duration::from_millis(500));
        assert_eq!(c.sip.t2(), Duration::from_millis(4000));
        assert_eq!(c.sip.t4(), Duration::from_millis(5000));
        assert_eq!(c.sip.tcp_idle_timeout(), Duration::from_secs(120));
        assert_eq!(c.sip.max_message_size, 65535);
        assert!(c.trunks.is_empty());
        assert_eq!(c, Config::default());
    }

    #[test]
    fn the_documented_example_parses() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.sip.public_addr.as_deref(), Some("203.0.113.5"));
        assert_eq!(c.media.public_ip, Some("203.0.113.5".parse().unwrap()));
        let t = &c.trunks[0];
        assert_eq!(t.name, "pstn");
        assert_eq!(t.address.port, 5080);
        assert!(t.inbound && t.register);
        assert_eq!(t.register_expires_s, 3600);
        assert_eq!(t.options_interval(), Some(Duration::from_secs(30)));
        assert_eq!(c.sms.url.as_deref(), Some("http://127.0.0.1:9000/sms"));
        let apns = c.push.apns.as_ref().unwrap();
        assert_eq!(apns.topic, "com.example.app.voip");
        assert_eq!(c.push.fcm.as_ref().unwrap().project_id, "P");
        // The password never shows in Debug output.
        let dbg = format!("{t:?}");
        assert!(
            dbg.contains("<redacted>") && !dbg.contains("\"p\""),
            "{dbg}"
        );
    }

    #[test]
    fn trunk_defaults() {
        let c = parse("[[trunk]]\nname = \"a\"\naddress = \"h.example\"\n").unwrap();
        let t = &c.trunks[0];
        assert_eq!(t.prefixes, vec![String::new()]);
        assert!(!t.inbound && !t.register);
        assert_eq!(t.codecs, default_codecs());
        assert_eq!(t.address.port, 5060);
    }

    #[test]
    fn unknown_key_is_an_error_naming_file_and_key() {
        let e = parse("[sip]\nlisen = \"1.2.3.4:5\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("softswitch.toml: key sip.lisen: unknown key"),
            "{e}"
        );
        let e = parse("[sipp]\n").unwrap_err().to_string();
        assert!(
            e.starts_with("softswitch.toml: key sipp: unknown key"),
            "{e}"
        );
        let e = parse("[[trunk]]\nname = \"a\"\naddress = \"h\"\nprefix = [\"1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("softswitch.toml: key trunk[0].prefix: unknown key"),
            "{e}"
        );
    }

    #[test]
    fn bad_trunk_address_names_file_and_key() {
        let text = "[[trunk]]\nname = \"a\"\naddress = \"h.example\"\n[[trunk]]\nname = \"b\"\naddress = \"x:y\"\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.starts_with("softswitch.toml: key trunk[1].address: invalid address \"x:y\": port"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_and_missing_key_name_the_key() {
        let e = parse("[calls]\nring_timeout_s = \"long\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("softswitch.toml: key calls.ring_timeout_s: invalid type"),
            "{e}"
        );
        let e = parse("[sip]\nlisten = \"nope\"\n").unwrap_err().to_string();
        assert!(e.starts_with("softswitch.toml: key sip.listen: "), "{e}");
        let e = parse("[[trunk]]\nname = \"a\"\n").unwrap_err().to_string();
        assert_eq!(
            e,
            "softswitch.toml: key trunk[0].address: missing (this key is required)"
        );
        let e = parse("[push.apns]\nkey_file = \"k\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("softswitch.toml: key push.apns.key_id: missing"),
            "{e}"
        );
        let e = parse("[media]\nport_min = 70000\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("softswitch.toml: key media.port_min: invalid value"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = parse("[sip]\nlisten = \n").unwrap_err();
        match &e {
            ConfigError::Syntax { origin, line, .. } => {
                assert_eq!(origin, "softswitch.toml");
                assert_eq!(*line, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string().starts_with("softswitch.toml: line 2, column"),
            "{e}"
        );
    }

    #[test]
    fn validation_errors() {
        let cases = [
            ("[media]\nport_min = 30000\nport_max = 20000\n", "media.port_min"),
            ("[[trunk]]\nname = \"\"\naddress = \"h\"\n", "trunk[0].name"),
            (
                "[[trunk]]\nname = \"a\"\naddress = \"h\"\n[[trunk]]\nname = \"a\"\naddress = \"g\"\n",
                "trunk[1].name",
            ),
            ("[[trunk]]\nname = \"a\"\naddress = \"h\"\nprefixes = [\"4x\"]\n", "trunk[0].prefixes"),
            ("[[trunk]]\nname = \"a\"\naddress = \"h\"\nregister = true\n", "trunk[0].username"),
            ("[store]\nurl = \"mysql://x\"\n", "store.url"),
            ("[sip]\nt1_ms = 0\n", "sip.t1_ms"),
            ("[calls]\nring_timeout_s = 0\n", "calls.ring_timeout_s"),
            ("[runtime]\nworker_threads = 5000\n", "runtime.worker_threads"),
        ];
        for (text, key) in cases {
            match parse(text) {
                Err(ConfigError::Key { origin, key: k, .. }) => {
                    assert_eq!(origin, "softswitch.toml", "{text}");
                    assert_eq!(k, key, "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn env_overrides_are_typed_by_serde() {
        let c = Config::parse(
            "[calls]\nring_timeout_s = 45\n",
            "softswitch.toml",
            env(&[
                ("SOFTSWITCH_SIP__LISTEN", "127.0.0.1:5070"),
                ("SOFTSWITCH_CALLS__RING_TIMEOUT_S", "10"),
                ("SOFTSWITCH_MEDIA__PUBLIC_IP", "192.0.2.1"),
                ("SOFTSWITCH_PUSH__APNS__KEY_FILE", "k.p8"),
                ("SOFTSWITCH_PUSH__APNS__KEY_ID", "1234"),
                ("SOFTSWITCH_PUSH__APNS__TEAM_ID", "T"),
                ("SOFTSWITCH_PUSH__APNS__TOPIC", "t"),
                ("SOFTSWITCH_LOG", "debug"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.sip.listen, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(c.calls.ring_timeout_s, 10);
        assert_eq!(c.media.public_ip, Some("192.0.2.1".parse().unwrap()));
        let apns = c.push.apns.unwrap();
        // A numeric-looking value still works where a string is expected.
        assert_eq!(apns.key_id, "1234");
        assert_eq!(apns.url, "https://api.push.apple.com");
    }

    #[test]
    fn env_overrides_trunks_by_index_and_arrays() {
        let c = Config::parse(
            "[[trunk]]\nname = \"a\"\naddress = \"h\"\n",
            "f.toml",
            env(&[
                (
                    "SOFTSWITCH_TRUNK__0__ADDRESS",
                    "sip:10.0.0.1:5070;transport=tcp",
                ),
                ("SOFTSWITCH_TRUNK__0__PREFIXES", "[\"49\", \"\"]"),
                ("SOFTSWITCH_TRUNK__0__INBOUND", "true"),
                ("SOFTSWITCH_TRUNK__1__NAME", "b"),
                ("SOFTSWITCH_TRUNK__1__ADDRESS", "g.example"),
            ]),
        )
        .unwrap();
        assert_eq!(c.trunks.len(), 2);
        assert_eq!(c.trunks[0].address.transport, TransportKind::Tcp);
        assert_eq!(c.trunks[0].prefixes, vec!["49".to_owned(), String::new()]);
        assert!(c.trunks[0].inbound);
        assert_eq!(c.trunks[1].address.host, "g.example");
    }

    #[test]
    fn bad_env_override_names_the_variable() {
        let e = Config::parse(
            "",
            "f.toml",
            env(&[("SOFTSWITCH_CALLS__RING_TIMEOUT_S", "soon")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("environment SOFTSWITCH_CALLS__RING_TIMEOUT_S: key calls.ring_timeout_s: invalid type"),
            "{e}"
        );
        let e = Config::parse("", "f.toml", env(&[("SOFTSWITCH_SIP__LISEN", "1.2.3.4:5")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("environment SOFTSWITCH_SIP__LISEN: key sip.lisen: unknown key"),
            "{e}"
        );
        let e = Config::parse("", "f.toml", env(&[("SOFTSWITCH_TRUNK__5__NAME", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("SOFTSWITCH_TRUNK__5__NAME: "), "{e}");
        let e = Config::parse("", "f.toml", env(&[("SOFTSWITCH_MEDIA__PORT_MAX", "100")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.toml: key media.port_min"), "{e}");
    }

    #[test]
    fn load_from_file_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("softswitch-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.toml");
        std::fs::write(&file, "[http]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        let c = Config::load_from(Some(&file), Vec::new()).unwrap();
        assert_eq!(c.http.listen.port(), 0);
        std::fs::write(&file, "[http]\nlisten = \"x\"\n").unwrap();
        let e = Config::load_from(Some(&file), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: key http.listen: ", file.display())),
            "{e}"
        );
        let missing = dir.join("missing.toml");
        let e = Config::load_from(Some(&missing), Vec::new()).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("missing.toml: cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trunk_address_forms() {
        let a: TrunkAddress = "127.0.0.1:5080".parse().unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.transport),
            ("127.0.0.1", 5080, TransportKind::Udp)
        );
        let a: TrunkAddress = "Host.Example".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("host.example", 5060));
        let a: TrunkAddress = "sip:host:5090;transport=tcp".parse().unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.transport),
            ("host", 5090, TransportKind::Tcp)
        );
        assert_eq!(a.to_string(), "host:5090;transport=tcp");
        let a: TrunkAddress = "[::1]:5080".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 5080));
        assert_eq!(a.to_string(), "[::1]:5080");
        assert_eq!(a.socket_addr(), Some("[::1]:5080".parse().unwrap()));
        let a: TrunkAddress = "SIP:[2001:db8::1];lr".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("2001:db8::1", 5060));
        let a: TrunkAddress = "2001:db8::2".parse().unwrap();
        assert_eq!(a.port, 5060);
        for bad in [
            "x:y",
            "",
            ":5060",
            "h:0",
            "h:70000",
            "sips:h",
            "sip:u@h",
            "h;transport=sctp",
            "h;foo=1",
            "[::1",
            "[::1]5060",
            "bad_host",
            "a..b",
        ] {
            let e = bad.parse::<TrunkAddress>().unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid address {bad:?}: ")),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn resolve_ip_literal_and_localhost() {
        let a: TrunkAddress = "127.0.0.1:5080".parse().unwrap();
        assert_eq!(
            a.resolve().await.unwrap(),
            "127.0.0.1:5080".parse().unwrap()
        );
        let a: TrunkAddress = "localhost:5081".parse().unwrap();
        let addr = a.resolve().await.unwrap();
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 5081);
        let router = Router::resolve(&[trunk("l", "127.0.0.1:5080", &[""], true)])
            .await
            .unwrap();
        assert_eq!(
            router
                .inbound_trunk("127.0.0.1".parse().unwrap())
                .unwrap()
                .name,
            "l"
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn router() -> Router {
        Router::new(vec![
            (
                trunk("default", "10.0.0.1", &[""], true),
                vec![ip("10.0.0.1")],
            ),
            (
                trunk("de", "10.0.0.2", &["49"], false),
                vec![ip("10.0.0.2")],
            ),
            (
                trunk("de-mobile", "10.0.0.3", &["4917", "4915"], true),
                vec![ip("10.0.0.3")],
            ),
            (
                trunk("de-mobile-2", "10.0.0.4", &["4917"], true),
                vec![ip("10.0.0.4"), ip("::1")],
            ),
        ])
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router();
        assert_eq!(r.route("4917012345").unwrap().name, "de-mobile");
        assert_eq!(r.route("4915").unwrap().name, "de-mobile");
        assert_eq!(r.route("4930123").unwrap().name, "de");
        assert_eq!(r.route("1555").unwrap().name, "default");
        assert_eq!(r.route("").unwrap().name, "default");
        assert_eq!(r.trunk("de").unwrap().address.host, "10.0.0.2");
        assert_eq!(r.trunks().len(), 4);
    }

    #[test]
    fn no_route_without_default() {
        let r = Router::new(vec![(trunk("de", "10.0.0.2", &["49"], false), vec![])]);
        assert!(r.route("1555").is_none());
        assert_eq!(r.route("49").unwrap().name, "de");
        assert!(Router::default().route("49").is_none());
    }

    #[test]
    fn inbound_by_source_ip() {
        let r = router();
        assert_eq!(r.inbound_trunk(ip("10.0.0.1")).unwrap().name, "default");
        assert_eq!(r.inbound_trunk(ip("10.0.0.3")).unwrap().name, "de-mobile");
        assert_eq!(r.inbound_trunk(ip("::1")).unwrap().name, "de-mobile-2");
        // Dual-stack sockets report IPv4 peers as mapped addresses.
        assert_eq!(
            r.inbound_trunk(ip("::ffff:10.0.0.1")).unwrap().name,
            "default"
        );
        // Not inbound = true.
        assert!(r.inbound_trunk(ip("10.0.0.2")).is_none());
        // Unknown source.
        assert!(r.inbound_trunk(ip("192.0.2.9")).is_none());
    }

    #[test]
    fn from_value_reports_paths() {
        let v: toml::Value = toml::Value::Table("name = \"a\"\naddress = 5\n".parse().unwrap());
        let e = from_value::<Trunk>(&v, "frag").unwrap_err().to_string();
        assert!(
            e.starts_with("frag: key address: invalid type: integer `5`"),
            "{e}"
        );
    }
}
