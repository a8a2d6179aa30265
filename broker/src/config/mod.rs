//! Broker configuration: the typed [`Config`] and its reader for
//! mosquitto.conf files.
//!
//! Reading goes through the `config` crate: [`format::MosquittoFormat`]
//! turns the file (with its `include_dir` files) into a map, environment
//! variables `BROKER__<OPTION>` (for example `BROKER__MAX_INFLIGHT_MESSAGES=5`)
//! override it, serde fills an intermediate struct of strings, and the
//! conversion here checks each value with Mosquitto 2.0's rules into the
//! typed [`Config`]. Errors name the file and line (or the environment
//! variable) and the problem; options Mosquitto 2.0 knows and this broker
//! does not implement yet are accepted with one warning each; unknown
//! options are an error, as Mosquitto's "Unknown configuration variable".
//!
//! Relative paths stay relative: they are resolved against the working
//! directory when used, as Mosquitto does.

mod format;
mod options;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::session::Limits;

pub use format::{Location, MosquittoFormat};

/// The prefix of environment variables that override the file:
/// `BROKER__MAX_INFLIGHT_MESSAGES=5` sets `max_inflight_messages`.
pub const ENV_PREFIX: &str = "BROKER";
/// Separates the prefix from the option name in environment variables.
pub const ENV_SEPARATOR: &str = "__";

/// A configuration error, naming file, line and problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}:{line}: {kind}", file = file.display())]
    Line {
        file: PathBuf,
        line: usize,
        kind: LineError,
    },
    #[error("cannot read {file}: {source}", file = file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// A bad value given by an environment variable.
    #[error("environment variable {var}: {kind}")]
    Env { var: String, kind: LineError },
    /// A problem the `config` crate found that no line can be blamed for.
    #[error("configuration: {0}")]
    Other(String),
}

/// What is wrong with one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    #[error("Unknown configuration variable \"{0}\"")]
    Unknown(String),
    #[error("{key}: missing value")]
    MissingValue { key: String },
    #[error("{key}: invalid value \"{value}\": {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: &'static str,
    },
    #[error("{0}")]
    Other(String),
}

/// One listener: a port and an optional bind address (all interfaces
/// without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub bind: Option<String>,
}

/// Where log lines go (`log_dest`). `syslog`, `topic` and `dlt` are
/// accepted with a warning and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    Stdout,
    Stderr,
    File(PathBuf),
    None,
}

/// A `log_type` category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    Error,
    Warning,
    Notice,
    Information,
    Subscribe,
    Unsubscribe,
    Websockets,
    Debug,
    /// `log_type none`: nothing.
    None,
    /// `log_type all`: everything.
    All,
}

/// A listener's wire protocol (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Mqtt,
    Websockets,
}

/// `socket_domain`: restrict a listener without an address to one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDomain {
    Ipv4,
    Ipv6,
}

/// Authentication settings of one listener, under `per_listener_settings
/// true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSecurity {
    /// Explicit `allow_anonymous`, else false (Mosquitto 2.0: a configured
    /// listener refuses anonymous clients by default).
    pub allow_anonymous: bool,
    pub allow_zero_length_clientid: bool,
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
}

impl Default for ListenerSecurity {
    fn default() -> Self {
        ListenerSecurity {
            allow_anonymous: false,
            allow_zero_length_clientid: true,
            password_file: None,
            acl_file: None,
        }
    }
}

/// Everything said about one listener: its `listener PORT [ADDRESS]` line
/// and the listener options that followed it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenerOptions {
    pub port: u16,
    /// None: every interface.
    pub bind: Option<String>,
    pub protocol: Protocol,
    /// Prefix added to the topics of this listener's clients.
    pub mount_point: Option<String>,
    /// `max_connections`; None = unlimited (Mosquitto's -1).
    pub max_connections: Option<usize>,
    pub socket_domain: Option<SocketDomain>,
    /// `bind_interface`: a network interface name (SO_BINDTODEVICE).
    pub bind_interface: Option<String>,
    /// Some only with `per_listener_settings true`; otherwise the global
    /// `allow_anonymous`, `password_file`, ... apply.
    pub security: Option<ListenerSecurity>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners from `listener`/`port`. Empty means Mosquitto 2.0's
    /// local-only mode: 127.0.0.1:1883.
    pub listeners: Vec<Listener>,
    /// The options of each listener read from the file, in the order of
    /// `listeners` as read (listeners added afterwards, such as the
    /// local-only one, have none: [`Config::listener_options`] gives
    /// defaults). Options given before any `listener` line (`port`,
    /// `bind_address`, `max_connections`, ...) make one more listener, last,
    /// on port 1883 unless `port` says otherwise, as in Mosquitto.
    pub listener_options: Vec<ListenerOptions>,
    /// Session queue limits (`max_inflight_messages`, `max_queued_messages`,
    /// `max_queued_bytes`, `queue_qos0_messages`). Mosquitto's 0 ("no
    /// limit") for `max_queued_messages` is `usize::MAX` here; for
    /// `max_inflight_messages` it stays 0, which the session reads as
    /// unlimited.
    pub limits: Limits,
    /// Largest packet accepted (`max_packet_size`); 0 means the protocol
    /// maximum.
    pub max_packet_size: usize,
    /// Largest PUBLISH payload accepted (`message_size_limit`); 0 = none.
    /// Larger messages are dropped, as Mosquitto does.
    pub message_size_limit: usize,
    pub allow_zero_length_clientid: bool,
    /// Largest keepalive accepted (`max_keepalive`). MQTT 3.1.1 cannot tell
    /// a client to use another value, so, as Mosquitto 2.0, a client asking
    /// for more (or for 0, no keepalive) is refused with CONNACK 0x02.
    pub max_keepalive: Option<u16>,
    /// `max_connections` for code that applies one limit to every
    /// listener: the value given before any `listener` line, else the
    /// first listener's. `None` = unlimited (Mosquitto's -1). Each
    /// listener's own value is in [`ListenerOptions::max_connections`].
    pub max_connections: Option<usize>,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    pub retain_available: bool,
    pub set_tcp_nodelay: bool,
    pub log_dest: Vec<LogDest>,
    /// `log_type all`/`debug` or `-v`: log every connection and packet.
    pub verbose: bool,
    pub connection_messages: bool,
    pub persistence: bool,
    pub persistence_location: PathBuf,
    pub persistence_file: String,
    pub pid_file: Option<PathBuf>,
    /// `per_listener_settings`: authentication options belong to the
    /// listener they follow ([`ListenerOptions::security`]).
    pub per_listener_settings: bool,
    /// Whether clients without a user name may connect. Mosquitto 2.0's
    /// default: false as soon as a listener is configured, true in
    /// local-only mode (no listener).
    pub allow_anonymous: bool,
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    /// `clientid_prefixes`: only client ids starting with it may connect.
    pub clientid_prefixes: Option<String>,
    /// `max_inflight_bytes`; 0 = no byte limit. The server copies it into
    /// [`Limits::max_inflight_bytes`] when it starts.
    pub max_inflight_bytes: usize,
    pub upgrade_outgoing_qos: bool,
    pub check_retain_source: bool,
    /// `persistent_client_expiration` (`2h`, `14d`, `1w`, `1m` = 30 days,
    /// `1y` = 365 days); None = persistent sessions never expire.
    pub persistent_client_expiration: Option<Duration>,
    /// `sys_interval`: how often `$SYS` is published; zero disables it.
    pub sys_interval: Duration,
    /// `log_type` categories as given; empty = Mosquitto's default (error,
    /// warning, notice, information).
    pub log_types: Vec<LogType>,
    pub log_timestamp: bool,
    /// strftime format of log timestamps; None = ISO 8601.
    pub log_timestamp_format: Option<String>,
    /// `include_dir` directories read, in order.
    pub include_dir: Vec<PathBuf>,
    /// `user`: the account to switch to when started as root (Mosquitto's
    /// default is `mosquitto`).
    pub user: Option<String>,
    /// `autosave_interval`: seconds between saves of the in-memory
    /// database (0 = only on shutdown); with `autosave_on_changes`, a
    /// number of changes instead.
    pub autosave_interval: u32,
    pub autosave_on_changes: bool,
    /// `persistence_sync_interval` (milliseconds; this broker's own
    /// option): how long written messages may wait before fsync. Zero, the
    /// default, syncs before a message is acknowledged: nothing
    /// acknowledged is lost on a crash. A larger value trades that window of
    /// loss for throughput.
    pub persistence_sync_interval: Duration,
    /// `persistence_corrupt_action` (this broker's own option):
    /// `moveaside` (default) moves a corrupt store to
    /// `NAME.corrupt-TIMESTAMP` and starts with what could be recovered;
    /// `refuse` refuses to start instead.
    pub persistence_refuse_corrupt: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: Vec::new(),
            listener_options: Vec::new(),
            limits: Limits::default(),
            max_packet_size: 0,
            message_size_limit: 0,
            allow_zero_length_clientid: true,
            max_keepalive: None,
            max_connections: None,
            connect_timeout: Duration::from_secs(10),
            retain_available: true,
            set_tcp_nodelay: true,
            log_dest: Vec::new(),
            verbose: false,
            connection_messages: true,
            persistence: false,
            persistence_location: PathBuf::new(),
            persistence_file: "mosquitto.db".into(),
            pid_file: None,
            per_listener_settings: false,
            allow_anonymous: true,
            password_file: None,
            acl_file: None,
            clientid_prefixes: None,
            max_inflight_bytes: 0,
            upgrade_outgoing_qos: false,
            check_retain_source: false,
            persistent_client_expiration: None,
            sys_interval: Duration::from_secs(10),
            log_types: Vec::new(),
            log_timestamp: true,
            log_timestamp_format: None,
            include_dir: Vec::new(),
            user: None,
            autosave_interval: 1800,
            autosave_on_changes: false,
            persistence_sync_interval: Duration::ZERO,
            persistence_refuse_corrupt: false,
        }
    }
}

fn invalid(key: &str, value: &str, reason: &'static str) -> LineError {
    LineError::InvalidValue {
        key: key.into(),
        value: value.into(),
        reason,
    }
}

/// The first word of a value: Mosquitto reads numbers and booleans with
/// `strtok`, ignoring the rest of the line.
fn word(value: &str) -> &str {
    value.split_whitespace().next().unwrap_or_default()
}

/// `true`/`false`, and `1`/`0` as Mosquitto also accepts.
fn parse_bool(key: &str, value: &str) -> Result<bool, LineError> {
    match word(value) {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, LineError> {
    word(value)
        .parse()
        .map_err(|_| invalid(key, value, "expected a number in range"))
}

fn parse_range(key: &str, value: &str, min: i64, max: i64) -> Result<i64, LineError> {
    match word(value).parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(invalid(key, value, "number out of range")),
        Err(_) => Err(invalid(key, value, "expected a number")),
    }
}

fn parse_port(key: &str, value: &str) -> Result<u16, LineError> {
    match word(value).parse::<u16>() {
        Ok(0) => Err(invalid(
            key,
            value,
            "port 0 (a unix socket listener) is not supported yet",
        )),
        Ok(p) => Ok(p),
        _ => Err(invalid(key, value, "expected a port 1-65535")),
    }
}

/// Mosquitto's `persistent_client_expiration`: a positive number and a
/// unit, h(ours), d(ays), w(eeks), m(onths of 30 days), y(ears of 365).
fn parse_expiration(key: &str, value: &str) -> Result<Duration, LineError> {
    let v = word(value);
    let bad = || {
        invalid(
            key,
            value,
            "expected a duration such as 2h, 14d, 1w, 1m or 1y",
        )
    };
    let (num, unit) = v.split_at(v.len().saturating_sub(1));
    let mult: u64 = match unit {
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "m" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(bad()),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n.saturating_mul(mult))),
        _ => Err(bad()),
    }
}

fn parse_log_dest(key: &str, value: &str) -> Result<Option<LogDest>, LineError> {
    let (kind, rest) = match value.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim()),
        None => (value, ""),
    };
    Ok(Some(match kind {
        "stdout" => LogDest::Stdout,
        "stderr" => LogDest::Stderr,
        "none" => LogDest::None,
        "file" if rest.is_empty() => {
            return Err(LineError::Other(
                "Empty \"log_dest file\" value in configuration".into(),
            ))
        }
        "file" => LogDest::File(PathBuf::from(rest)),
        "syslog" | "topic" | "dlt" => return Ok(None),
        _ => {
            return Err(invalid(
                key,
                value,
                "expected stdout, stderr, file PATH, syslog, topic, dlt or none",
            ))
        }
    }))
}

fn parse_log_type(key: &str, value: &str) -> Result<LogType, LineError> {
    Ok(match word(value) {
        "error" => LogType::Error,
        "warning" => LogType::Warning,
        "notice" => LogType::Notice,
        "information" => LogType::Information,
        "subscribe" => LogType::Subscribe,
        "unsubscribe" => LogType::Unsubscribe,
        "websockets" => LogType::Websockets,
        "debug" => LogType::Debug,
        "none" => LogType::None,
        "all" => LogType::All,
        _ => return Err(invalid(key, value, "expected error, warning, notice, information, subscribe, unsubscribe, websockets, debug, none or all")),
    })
}

/// A string option as Mosquitto reads it: the rest of the line.
fn parse_string(_key: &str, value: &str) -> Result<String, LineError> {
    Ok(value.to_owned())
}

fn parse_path(_key: &str, value: &str) -> Result<PathBuf, LineError> {
    Ok(PathBuf::from(value))
}

/// One value, or several for a repeated option. Environment variables give
/// one string where the file gives a list.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    Empty,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::Empty => Vec::new(),
            OneOrMany::One(v) => vec![v.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// The options of one listener section, as strings.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawListener {
    port: Option<String>,
    bind_address: Option<String>,
    bind_interface: Option<String>,
    max_connections: Option<String>,
    mount_point: Option<String>,
    protocol: Option<String>,
    socket_domain: Option<String>,
    acl_file: Option<String>,
    allow_anonymous: Option<String>,
    allow_zero_length_clientid: Option<String>,
    password_file: Option<String>,
    /// Options accepted without effect (warned about by the format).
    #[serde(flatten)]
    _other: BTreeMap<String, IgnoredAny>,
}

impl RawListener {
    fn is_empty(&self) -> bool {
        self.port.is_none()
            && self.bind_address.is_none()
            && self.bind_interface.is_none()
            && self.max_connections.is_none()
            && self.mount_point.is_none()
            && self.protocol.is_none()
            && self.socket_domain.is_none()
            && self.acl_file.is_none()
            && self.allow_anonymous.is_none()
            && self.allow_zero_length_clientid.is_none()
            && self.password_file.is_none()
            && self._other.is_empty()
    }
}

/// The whole configuration as strings: what the `config` crate
/// deserializes, before [`Config`]'s checks.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    listeners: Vec<RawListener>,
    default_listener: Option<RawListener>,
    bridges: Vec<IgnoredAny>,
    per_listener_settings: Option<String>,
    allow_anonymous: Option<String>,
    allow_zero_length_clientid: Option<String>,
    acl_file: Option<String>,
    password_file: Option<String>,
    clientid_prefixes: Option<String>,
    max_inflight_messages: Option<String>,
    max_inflight_bytes: Option<String>,
    max_queued_messages: Option<String>,
    max_queued_bytes: Option<String>,
    queue_qos0_messages: Option<String>,
    max_keepalive: Option<String>,
    max_packet_size: Option<String>,
    message_size_limit: Option<String>,
    retain_available: Option<String>,
    upgrade_outgoing_qos: Option<String>,
    check_retain_source: Option<String>,
    persistent_client_expiration: Option<String>,
    set_tcp_nodelay: Option<String>,
    sys_interval: Option<String>,
    log_dest: OneOrMany,
    log_type: OneOrMany,
    log_timestamp: Option<String>,
    log_timestamp_format: Option<String>,
    connection_messages: Option<String>,
    include_dir: OneOrMany,
    pid_file: Option<String>,
    user: Option<String>,
    persistence: Option<String>,
    persistence_file: Option<String>,
    persistence_location: Option<String>,
    autosave_interval: Option<String>,
    autosave_on_changes: Option<String>,
    persistence_sync_interval: Option<String>,
    persistence_corrupt_action: Option<String>,
    /// Everything else: options accepted without effect, or unknown names
    /// from the environment.
    #[serde(flatten)]
    other: BTreeMap<String, IgnoredAny>,
}

/// Turns a value's key path into the place to blame.
struct Blame<'a> {
    locations: &'a HashMap<String, Location>,
    /// Key path set by the environment -> variable name.
    env: &'a HashMap<String, String>,
}

impl Blame<'_> {
    fn error(&self, path: &str, kind: LineError) -> Error {
        let top = path.split('.').next().unwrap_or(path);
        if let Some(var) = self.env.get(path).or_else(|| self.env.get(top)) {
            return Error::Env {
                var: var.clone(),
                kind,
            };
        }
        match self.locations.get(path) {
            Some(at) => Error::Line {
                file: at.file.clone(),
                line: at.line,
                kind,
            },
            None => Error::Other(kind.to_string()),
        }
    }

    fn at(&self, path: &str) -> String {
        let top = path.split('.').next().unwrap_or(path);
        if let Some(var) = self.env.get(path).or_else(|| self.env.get(top)) {
            return format!("environment variable {var}");
        }
        self.locations
            .get(path)
            .map(ToString::to_string)
            .unwrap_or_else(|| "configuration".into())
    }

    /// Parses an optional value at `path` (whose last segment is the key).
    fn get<T>(
        &self,
        path: &str,
        value: &Option<String>,
        parse: impl Fn(&str, &str) -> Result<T, LineError>,
    ) -> Result<Option<T>, Error> {
        let key = path.rsplit('.').next().unwrap_or(path);
        match value {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => {
                Err(self.error(path, LineError::MissingValue { key: key.into() }))
            }
            Some(v) => parse(key, v.trim())
                .map(Some)
                .map_err(|k| self.error(path, k)),
        }
    }

    fn list<T>(
        &self,
        key: &str,
        values: &OneOrMany,
        parse: impl Fn(&str, &str) -> Result<T, LineError>,
    ) -> Result<Vec<T>, Error> {
        values
            .values()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let path = format!("{key}.{i}");
                parse(key, v.trim()).map_err(|k| self.error(&path, k))
            })
            .collect()
    }
}

impl Config {
    /// Reads a mosquitto.conf file, with `BROKER__*` environment overrides.
    /// Warnings (options accepted without effect) are logged with
    /// `tracing`; use [`Config::load`] to log them after logging is set up.
    pub fn from_file(path: &Path) -> Result<Config, Error> {
        let (config, warnings) = Config::load(path)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        Ok(config)
    }

    /// Reads a mosquitto.conf file with `BROKER__*` environment overrides;
    /// returns the configuration and one warning per option accepted
    /// without effect.
    pub fn load(path: &Path) -> Result<(Config, Vec<String>), Error> {
        Config::load_with_env(path, std::env::vars())
    }

    /// [`Config::load`] with the given environment instead of the
    /// process's.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            file: path.to_owned(),
            source,
        })?;
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
        Config::parse_str(&String::from_utf8_lossy(bytes), path, env)
    }

    /// Parses mosquitto.conf text; `file` names it in errors.
    pub fn parse_str(
        text: &str,
        file: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), Error> {
        let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
        let mut env_map = config::Map::new();
        let mut env_keys = HashMap::new();
        for (var, value) in env {
            if var.len() > prefix.len() && var.to_ascii_uppercase().starts_with(&prefix) {
                let key = var[prefix.len()..]
                    .to_ascii_lowercase()
                    .replace(ENV_SEPARATOR, ".");
                env_keys.insert(key, var.clone());
                env_map.insert(var, value);
            }
        }
        let format = MosquittoFormat::new(file);
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, format.clone()))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .separator(ENV_SEPARATOR)
                    .source(Some(env_map)),
            )
            .build()
            .map_err(from_config_error)?;
        let raw: Raw = built.try_deserialize().map_err(from_config_error)?;
        let parsed = format.take_parsed();
        let blame = Blame {
            locations: &parsed.locations,
            env: &env_keys,
        };
        let mut warnings = parsed.warnings;
        let config = Config::from_raw(raw, &blame, &mut warnings)?;
        Ok((config, warnings))
    }

    /// The options of listener `index` of [`Config::listeners`]: those read
    /// from the file, or defaults for a listener added later.
    pub fn listener_options(&self, index: usize) -> ListenerOptions {
        self.listener_options
            .get(index)
            .cloned()
            .unwrap_or_else(|| {
                let l = self.listeners.get(index);
                ListenerOptions {
                    port: l.map_or(1883, |l| l.port),
                    bind: l.and_then(|l| l.bind.clone()),
                    ..ListenerOptions::default()
                }
            })
    }

    fn from_raw(raw: Raw, b: &Blame, warnings: &mut Vec<String>) -> Result<Config, Error> {
        let mut c = Config::default();
        // Environment variables can name anything; the file's names were
        // checked by the format.
        for key in raw.other.keys() {
            match options::lookup(key) {
                None => return Err(b.error(key, LineError::Unknown(key.clone()))),
                Some(opt) if opt.scope != options::Scope::Global => {
                    if b.env.contains_key(key) {
                        return Err(b.error(
                            key,
                            LineError::Other(format!(
                                "{key} belongs to a listener or bridge section: set it in the file"
                            )),
                        ));
                    }
                }
                Some(_) => {}
            }
            if b.env.contains_key(key) {
                warnings.push(format!(
                    "{}: option {key} is not implemented yet; ignored",
                    b.at(key)
                ));
            }
        }
        let _ = raw.bridges;

        c.per_listener_settings = b
            .get(
                "per_listener_settings",
                &raw.per_listener_settings,
                parse_bool,
            )?
            .unwrap_or(false);
        let allow_anonymous = b.get("allow_anonymous", &raw.allow_anonymous, parse_bool)?;
        if let Some(v) = b.get(
            "allow_zero_length_clientid",
            &raw.allow_zero_length_clientid,
            parse_bool,
        )? {
            c.allow_zero_length_clientid = v;
        }
        c.acl_file = b.get("acl_file", &raw.acl_file, parse_path)?;
        c.password_file = b.get("password_file", &raw.password_file, parse_path)?;
        c.clientid_prefixes = b.get("clientid_prefixes", &raw.clientid_prefixes, parse_string)?;

        if let Some(v) = b.get(
            "max_inflight_messages",
            &raw.max_inflight_messages,
            |k, v| parse_range(k, v, 0, 65_535),
        )? {
            c.limits.max_inflight = v as usize;
        }
        if let Some(v) = b.get("max_inflight_bytes", &raw.max_inflight_bytes, parse_num)? {
            c.max_inflight_bytes = v;
        }
        if let Some(v) = b.get(
            "max_queued_messages",
            &raw.max_queued_messages,
            parse_num::<usize>,
        )? {
            c.limits.max_queued = if v == 0 { usize::MAX } else { v };
        }
        if let Some(v) = b.get("max_queued_bytes", &raw.max_queued_bytes, parse_num)? {
            c.limits.max_queued_bytes = v;
        }
        if let Some(v) = b.get("queue_qos0_messages", &raw.queue_qos0_messages, parse_bool)? {
            c.limits.queue_qos0 = v;
        }
        if let Some(v) = b.get("max_keepalive", &raw.max_keepalive, |k, v| {
            parse_range(k, v, 0, 65_535)
        })? {
            c.max_keepalive = Some(v as u16);
        }
        if let Some(v) = b.get("max_packet_size", &raw.max_packet_size, |k, v| {
            parse_range(k, v, 20, 268_435_455 + 5)
        })? {
            c.max_packet_size = v as usize;
        }
        if let Some(v) = b.get("message_size_limit", &raw.message_size_limit, |k, v| {
            parse_range(k, v, 0, 268_435_455)
        })? {
            c.message_size_limit = v as usize;
        }
        let flag = |path: &str, v: &Option<String>, into: &mut bool| -> Result<(), Error> {
            if let Some(v) = b.get(path, v, parse_bool)? {
                *into = v;
            }
            Ok(())
        };
        flag(
            "retain_available",
            &raw.retain_available,
            &mut c.retain_available,
        )?;
        flag(
            "upgrade_outgoing_qos",
            &raw.upgrade_outgoing_qos,
            &mut c.upgrade_outgoing_qos,
        )?;
        flag(
            "check_retain_source",
            &raw.check_retain_source,
            &mut c.check_retain_source,
        )?;
        flag(
            "set_tcp_nodelay",
            &raw.set_tcp_nodelay,
            &mut c.set_tcp_nodelay,
        )?;
        flag("log_timestamp", &raw.log_timestamp, &mut c.log_timestamp)?;
        flag(
            "connection_messages",
            &raw.connection_messages,
            &mut c.connection_messages,
        )?;
        flag("persistence", &raw.persistence, &mut c.persistence)?;
        flag(
            "autosave_on_changes",
            &raw.autosave_on_changes,
            &mut c.autosave_on_changes,
        )?;
        c.persistent_client_expiration = b.get(
            "persistent_client_expiration",
            &raw.persistent_client_expiration,
            parse_expiration,
        )?;
        if let Some(v) = b.get("sys_interval", &raw.sys_interval, |k, v| {
            parse_range(k, v, 0, 65_535)
        })? {
            c.sys_interval = Duration::from_secs(v as u64);
        }
        let dests = b.list("log_dest", &raw.log_dest, parse_log_dest)?;
        for (i, d) in dests.into_iter().enumerate() {
            match d {
                Some(d) => c.log_dest.push(d),
                None => {
                    let v = raw.log_dest.values()[i];
                    warnings.push(format!(
                        "{}: log_dest {} is not implemented yet; ignored",
                        b.at(&format!("log_dest.{i}")),
                        word(v)
                    ));
                }
            }
        }
        c.log_types = b.list("log_type", &raw.log_type, parse_log_type)?;
        c.verbose = c
            .log_types
            .iter()
            .any(|t| matches!(t, LogType::All | LogType::Debug));
        c.log_timestamp_format = b.get(
            "log_timestamp_format",
            &raw.log_timestamp_format,
            parse_string,
        )?;
        c.include_dir = b.list("include_dir", &raw.include_dir, parse_path)?;
        c.pid_file = b.get("pid_file", &raw.pid_file, parse_path)?;
        c.user = b.get("user", &raw.user, parse_string)?;
        if let Some(v) = b.get("persistence_file", &raw.persistence_file, parse_string)? {
            c.persistence_file = v;
        }
        if let Some(v) = b.get(
            "persistence_location",
            &raw.persistence_location,
            parse_path,
        )? {
            c.persistence_location = v;
        }
        if let Some(v) = b.get("autosave_interval", &raw.autosave_interval, |k, v| {
            parse_range(k, v, 0, u32::MAX.into())
        })? {
            c.autosave_interval = v as u32;
        }
        if let Some(v) = b.get(
            "persistence_sync_interval",
            &raw.persistence_sync_interval,
            parse_num::<u64>,
        )? {
            c.persistence_sync_interval = Duration::from_millis(v);
        }
        if let Some(v) = b.get(
            "persistence_corrupt_action",
            &raw.persistence_corrupt_action,
            |k, v| match v {
                "moveaside" => Ok(false),
                "refuse" => Ok(true),
                _ => Err(invalid(k, v, "expected moveaside or refuse")),
            },
        )? {
            c.persistence_refuse_corrupt = v;
        }

        // Listeners: each `listener` line, then the default listener if
        // anything was said before the first one (Mosquitto adds it last).
        let mut sections: Vec<(String, RawListener)> = raw
            .listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| (format!("listeners.{i}"), l))
            .collect();
        if let Some(d) = raw.default_listener.filter(|d| !d.is_empty()) {
            sections.push(("default_listener".into(), d));
        }
        let mut first_max_connections = None;
        for (path, l) in &sections {
            let opts = Config::listener_from_raw(path, l, c.per_listener_settings, b)?;
            if path == "default_listener" && opts.max_connections.is_some() {
                c.max_connections = opts.max_connections;
            }
            if first_max_connections.is_none() {
                first_max_connections = opts.max_connections;
            }
            c.listeners.push(Listener {
                port: opts.port,
                bind: opts.bind.clone(),
            });
            c.listener_options.push(opts);
        }
        if c.max_connections.is_none() {
            c.max_connections = first_max_connections;
        }
        // Mosquitto 2.0: anonymous access is allowed by default only in
        // local-only mode.
        c.allow_anonymous = allow_anonymous.unwrap_or(c.listeners.is_empty());
        Ok(c)
    }

    fn listener_from_raw(
        path: &str,
        l: &RawListener,
        per_listener_settings: bool,
        b: &Blame,
    ) -> Result<ListenerOptions, Error> {
        let p = |key: &str| format!("{path}.{key}");
        let mut o = ListenerOptions {
            port: b.get(&p("port"), &l.port, parse_port)?.unwrap_or(1883),
            bind: b.get(&p("bind_address"), &l.bind_address, parse_string)?,
            bind_interface: b.get(&p("bind_interface"), &l.bind_interface, parse_string)?,
            mount_point: b.get(&p("mount_point"), &l.mount_point, parse_string)?,
            ..ListenerOptions::default()
        };
        if let Some(n) = b.get(&p("max_connections"), &l.max_connections, |k, v| {
            parse_range(k, v, -1, i64::from(u32::MAX))
        })? {
            o.max_connections = usize::try_from(n).ok();
        }
        o.protocol = b
            .get(&p("protocol"), &l.protocol, |k, v| match word(v) {
                "mqtt" => Ok(Protocol::Mqtt),
                "websockets" => Ok(Protocol::Websockets),
                _ => Err(invalid(k, v, "expected mqtt or websockets")),
            })?
            .unwrap_or_default();
        o.socket_domain = b.get(&p("socket_domain"), &l.socket_domain, |k, v| {
            match word(v) {
                "ipv4" => Ok(SocketDomain::Ipv4),
                "ipv6" => Ok(SocketDomain::Ipv6),
                _ => Err(invalid(k, v, "expected ipv4 or ipv6")),
            }
        })?;
        if per_listener_settings {
            let mut s = ListenerSecurity::default();
            if let Some(v) = b.get(&p("allow_anonymous"), &l.allow_anonymous, parse_bool)? {
                s.allow_anonymous = v;
            }
            if let Some(v) = b.get(
                &p("allow_zero_length_clientid"),
                &l.allow_zero_length_clientid,
                parse_bool,
            )? {
                s.allow_zero_length_clientid = v;
            }
            s.password_file = b.get(&p("password_file"), &l.password_file, parse_path)?;
            s.acl_file = b.get(&p("acl_file"), &l.acl_file, parse_path)?;
            o.security = Some(s);
        }
        Ok(o)
    }
}

/// A `config` crate error: the format's own error comes back as it was.
fn from_config_error(e: config::ConfigError) -> Error {
    match e {
        config::ConfigError::FileParse { cause, .. } => match cause.downcast::<Error>() {
            Ok(e) => *e,
            Err(cause) => Error::Other(cause.to_string()),
        },
        other => Error::Other(other.to_string()),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        parse_env(text, &[]).map(|(c, _)| c)
    }

    fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<(Config, Vec<String>), Error> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::parse_str(text, Path::new("test.conf"), env)
    }

    #[test]
    fn listeners_ports_and_comments() {
        let c = parse(
            "# comment\r\nlistener 1883\r\n\nlistener 8883 127.0.0.1\nmax_inflight_messages 5",
        )
        .unwrap();
        assert_eq!(
            c.listeners,
            vec![
                Listener {
                    port: 1883,
                    bind: None
                },
                Listener {
                    port: 8883,
                    bind: Some("127.0.0.1".into())
                }
            ]
        );
        assert_eq!(c.limits.max_inflight, 5);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("listener 1883\nbogus_option 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.conf:2: Unknown configuration variable \"bogus_option\""
        );
        let e = parse("\nlistener 99999\n").unwrap_err();
        assert!(e.to_string().starts_with("test.conf:2: listener"), "{e}");
        let e = parse("queue_qos0_messages yes").unwrap_err();
        assert!(e.to_string().contains("expected true or false"), "{e}");
    }

    #[test]
    fn port_and_bind_address_form_one_listener() {
        let c = parse("bind_address 127.0.0.1\nport 1884\n").unwrap();
        assert_eq!(
            c.listeners,
            vec![Listener {
                port: 1884,
                bind: Some("127.0.0.1".into())
            }]
        );
    }

    #[test]
    fn log_dest_repeats() {
        let c = parse("log_dest stdout\nlog_dest file log/broker.log\n").unwrap();
        assert_eq!(
            c.log_dest,
            vec![LogDest::Stdout, LogDest::File("log/broker.log".into())]
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let (c, _) = parse_env(
            "listener 1883\nmax_inflight_messages 20\nlog_dest stdout\n",
            &[
                ("BROKER__MAX_INFLIGHT_MESSAGES", "5"),
                ("BROKER__LOG_DEST", "stderr"),
                ("BROKER__ALLOW_ANONYMOUS", "true"),
                // Other prefixes are not ours.
                ("BROKER_LOG", "debug"),
                ("MAX_QUEUED_MESSAGES", "1"),
            ],
        )
        .unwrap();
        assert_eq!(c.limits.max_inflight, 5);
        assert_eq!(c.log_dest, vec![LogDest::Stderr]);
        assert!(c.allow_anonymous);
        assert_eq!(c.limits.max_queued, 1000);
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let e = parse_env(
            "max_inflight_messages 20\n",
            &[("BROKER__MAX_INFLIGHT_MESSAGES", "lots")],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable BROKER__MAX_INFLIGHT_MESSAGES: max_inflight_messages: \
             invalid value \"lots\": expected a number"
        );
        let e = parse_env("", &[("BROKER__BOGUS", "1")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("BROKER__BOGUS: Unknown configuration variable \"bogus\""),
            "{e}"
        );
        let (_, warnings) = parse_env("", &[("BROKER__MEMORY_LIMIT", "1000")]).unwrap();
        assert_eq!(
            warnings,
            vec![
                "environment variable BROKER__MEMORY_LIMIT: option memory_limit is not \
                  implemented yet; ignored"
            ]
        );
    }

    #[test]
    fn value_errors_keep_file_and_line() {
        // The config crate forgets lines; the format's map remembers them.
        let e = parse("listener 1883\n\n\nsys_interval soon\n").unwrap_err();
        assert!(
            e.to_string().starts_with("test.conf:4: sys_interval"),
            "{e}"
        );
        let e = parse("listener 1883\nlog_type error\nlog_type loud\n").unwrap_err();
        assert!(e.to_string().starts_with("test.conf:3: log_type"), "{e}");
        let e = parse("listener 1883\nlistener 1884\nprotocol x\n").unwrap_err();
        assert!(e.to_string().starts_with("test.conf:3: protocol"), "{e}");
    }

    #[test]
    fn one_warning_per_unimplemented_option() {
        let (_, warnings) = parse_env(
            "listener 8883\ncafile a\nlistener 8884\ncafile b\nauth_plugin p.so\n\
             auth_opt_a 1\nauth_opt_b 2\nmemory_limit 5\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            warnings,
            vec![
                "test.conf:2: option cafile is not implemented yet; ignored",
                "test.conf:5: option auth_plugin is not implemented yet; ignored",
                "test.conf:6: option auth_opt_* is not implemented yet; ignored",
                "test.conf:8: option memory_limit is not implemented yet; ignored",
            ]
        );
    }

    #[test]
    fn allow_anonymous_defaults_as_mosquitto_2() {
        assert!(Config::default().allow_anonymous);
        assert!(parse("").unwrap().allow_anonymous, "local-only mode");
        assert!(!parse("listener 1883\n").unwrap().allow_anonymous);
        assert!(!parse("port 1883\n").unwrap().allow_anonymous);
        assert!(
            parse("listener 1883\nallow_anonymous true\n")
                .unwrap()
                .allow_anonymous
        );
    }

    #[test]
    fn options_before_the_first_listener_add_the_default_listener() {
        // As Mosquitto: max_connections before `listener 1884` also opens
        // port 1883 on every interface, after the named listeners.
        let c = parse("max_connections 10\nlistener 1884 127.0.0.1\n").unwrap();
        assert_eq!(
            c.listeners,
            vec![
                Listener {
                    port: 1884,
                    bind: Some("127.0.0.1".into())
                },
                Listener {
                    port: 1883,
                    bind: None
                }
            ]
        );
        assert_eq!(c.listener_options[1].max_connections, Some(10));
        assert_eq!(c.listener_options[0].max_connections, None);
        // Security options are global without per_listener_settings.
        let c = parse("allow_anonymous true\nlistener 1884\n").unwrap();
        assert_eq!(c.listeners.len(), 1);
        assert!(c.allow_anonymous);
        assert_eq!(c.listener_options[0].security, None);
    }

    #[test]
    fn durations_and_sync_interval() {
        let c = parse("persistent_client_expiration 2h\npersistence_sync_interval 250\n").unwrap();
        assert_eq!(
            c.persistent_client_expiration,
            Some(Duration::from_secs(7200))
        );
        assert_eq!(c.persistence_sync_interval, Duration::from_millis(250));
        assert_eq!(Config::default().persistence_sync_interval, Duration::ZERO);
        for (v, secs) in [("1w", 604_800), ("1m", 2_592_000), ("1y", 31_536_000)] {
            assert_eq!(parse_expiration("x", v).unwrap(), Duration::from_secs(secs));
        }
        assert!(parse_expiration("x", "0d").is_err());
        assert!(parse_expiration("x", "d").is_err());
    }
}
