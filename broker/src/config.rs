//! Broker configuration: the typed [`Config`] and a reader for
//! mosquitto.conf files.
//!
//! This reader covers the options the core needs (listeners, limits,
//! logging); options Mosquitto 2.0 knows and this broker does not implement
//! yet are accepted with one warning each, and unknown options are an error
//! naming file and line, as Mosquitto's "Unknown configuration variable".

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::session::Limits;

/// A configuration error, naming file, line and problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}:{line}: {kind}")]
    Line {
        file: PathBuf,
        line: usize,
        kind: LineError,
    },
    #[error("cannot read {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
}

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
}

/// One listener: a port and an optional bind address (all interfaces
/// without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub bind: Option<String>,
}

/// Where log lines go (`log_dest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    Stdout,
    Stderr,
    File(PathBuf),
    None,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners from `listener`/`port`. Empty means Mosquitto 2.0's
    /// local-only mode: 127.0.0.1:1883.
    pub listeners: Vec<Listener>,
    /// Session queue limits.
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
    /// `max_connections`; `None` = unlimited (Mosquitto's -1).
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
    /// `persistence_sync_interval` (milliseconds): 0, the default, means a
    /// PUBACK/PUBREC for a durable change is sent only after it is fsynced;
    /// N means acknowledge at once and fsync at least every N ms.
    pub persistence_sync_interval: Duration,
    /// `persistence_corrupt_action refuse`: refuse to start on a corrupt
    /// store instead of moving it aside and starting empty.
    pub persistence_refuse_corrupt: bool,
    pub pid_file: Option<PathBuf>,
    /// `persistent_client_expiration`: persistent sessions of clients away
    /// longer than this are removed. `None`: never (Mosquitto's default).
    pub persistent_client_expiration: Option<Duration>,
    /// Warnings found while reading (options not implemented yet), for the
    /// caller to log once logging is set up.
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: Vec::new(),
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
            persistence_sync_interval: Duration::ZERO,
            persistence_refuse_corrupt: false,
            pid_file: None,
            persistent_client_expiration: None,
            warnings: Vec::new(),
        }
    }
}

/// Mosquitto 2.0 options accepted with a warning because this broker does
/// not implement them yet.
const NOT_YET: &[&str] = &[
    "acl_file",
    "address",
    "addresses",
    "allow_anonymous",
    "allow_duplicate_messages",
    "auth_opt_",
    "auth_plugin",
    "auth_plugin_deny_special_chars",
    "auto_id_prefix",
    "autosave_interval",
    "autosave_on_changes",
    "bind_interface",
    "bridge_attempt_unsubscribe",
    "bridge_bind_address",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_identity",
    "bridge_insecure",
    "bridge_keyfile",
    "bridge_max_packet_size",
    "bridge_outgoing_retain",
    "bridge_protocol_version",
    "bridge_psk",
    "bridge_require_ocsp",
    "bridge_tls_version",
    "bridge_alpn",
    "cafile",
    "capath",
    "certfile",
    "check_retain_source",
    "ciphers",
    "ciphers_tls1.3",
    "cleansession",
    "clientid_prefixes",
    "connection",
    "crlfile",
    "dhparamfile",
    "http_dir",
    "idle_timeout",
    "include_dir",
    "keepalive_interval",
    "keyfile",
    "local_cleansession",
    "local_clientid",
    "local_password",
    "local_username",
    "log_facility",
    "log_timestamp",
    "log_timestamp_format",
    "max_inflight_bytes",
    "memory_limit",
    "mount_point",
    "notification_topic",
    "notifications",
    "notifications_local_only",
    "password_file",
    "per_listener_settings",
    "plugin",
    "plugin_opt_",
    "protocol",
    "psk_file",
    "psk_hint",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "require_certificate",
    "restart_timeout",
    "round_robin",
    "socket_domain",
    "start_type",
    "sys_interval",
    "threshold",
    "tls_engine",
    "tls_engine_kpass_sha1",
    "tls_keyform",
    "tls_version",
    "topic",
    "try_private",
    "upgrade_outgoing_qos",
    "use_identity_as_username",
    "use_subject_as_username",
    "use_username_as_clientid",
    "user",
    "websockets_headers_size",
    "websockets_log_level",
];

fn invalid(key: &str, value: &str, reason: &'static str) -> LineError {
    LineError::InvalidValue {
        key: key.into(),
        value: value.into(),
        reason,
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, LineError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, LineError> {
    value
        .parse()
        .map_err(|_| invalid(key, value, "expected a number in range"))
}

/// Mosquitto's duration syntax: a number and a unit `s` (seconds, ours),
/// `h`, `d`, `w`, `m` (months of 30 days) or `y` (years of 365 days).
fn parse_duration(key: &str, value: &str) -> Result<Duration, LineError> {
    let bad = || {
        invalid(
            key,
            value,
            "expected a number with a unit s, h, d, w, m or y",
        )
    };
    let unit = value.chars().last().ok_or_else(bad)?;
    let n: u64 = value[..value.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let secs = match unit {
        's' => 1,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

fn parse_port(key: &str, value: &str) -> Result<u16, LineError> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(invalid(key, value, "expected a port 1-65535")),
    }
}

impl Config {
    /// Reads a mosquitto.conf file.
    pub fn from_file(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            file: path.to_owned(),
            source,
        })?;
        let mut config = Config::default();
        config.apply(&text, path)?;
        Ok(config)
    }

    /// Applies the lines of a mosquitto.conf text; `file` names it in
    /// errors. Warnings for unimplemented options are logged.
    pub fn apply(&mut self, text: &str, file: &Path) -> Result<(), Error> {
        let mut port_listener: Option<usize> = None;
        let mut bind_address: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r').trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.split_once(char::is_whitespace) {
                Some((k, v)) => (k, v.trim()),
                None => (line, ""),
            };
            let key_lower = key.to_ascii_lowercase();
            self.apply_line(&key_lower, value, &mut port_listener, &mut bind_address)
                .map_err(|kind| Error::Line {
                    file: file.to_owned(),
                    line: i + 1,
                    kind,
                })?;
        }
        if let (Some(i), Some(bind)) = (port_listener, bind_address) {
            self.listeners[i].bind = Some(bind);
        }
        Ok(())
    }

    fn apply_line(
        &mut self,
        key: &str,
        value: &str,
        port_listener: &mut Option<usize>,
        bind_address: &mut Option<String>,
    ) -> Result<(), LineError> {
        let need = |v: &str| {
            if v.is_empty() {
                Err(LineError::MissingValue { key: key.into() })
            } else {
                Ok(())
            }
        };
        match key {
            "listener" => {
                need(value)?;
                let mut parts = value.split_whitespace();
                let port = parse_port(key, parts.next().unwrap_or_default())?;
                let bind = parts.next().map(str::to_owned);
                self.listeners.push(Listener { port, bind });
            }
            "port" => {
                need(value)?;
                let port = parse_port(key, value)?;
                match *port_listener {
                    Some(i) => self.listeners[i].port = port,
                    None => {
                        self.listeners.push(Listener { port, bind: None });
                        *port_listener = Some(self.listeners.len() - 1);
                    }
                }
            }
            "bind_address" => {
                need(value)?;
                *bind_address = Some(value.to_owned());
            }
            "max_inflight_messages" => {
                need(value)?;
                self.limits.max_inflight = parse_num(key, value)?;
            }
            "max_queued_messages" => {
                need(value)?;
                self.limits.max_queued = parse_num(key, value)?;
            }
            "max_queued_bytes" => {
                need(value)?;
                self.limits.max_queued_bytes = parse_num(key, value)?;
            }
            "queue_qos0_messages" => self.limits.queue_qos0 = parse_bool(key, value)?,
            "max_packet_size" => {
                need(value)?;
                self.max_packet_size = parse_num(key, value)?;
            }
            "message_size_limit" => {
                need(value)?;
                self.message_size_limit = parse_num(key, value)?;
            }
            "allow_zero_length_clientid" => {
                self.allow_zero_length_clientid = parse_bool(key, value)?
            }
            "max_keepalive" => {
                need(value)?;
                self.max_keepalive = Some(parse_num(key, value)?);
            }
            "max_connections" => {
                need(value)?;
                let n: i64 = parse_num(key, value)?;
                self.max_connections = usize::try_from(n).ok();
            }
            "retain_available" => self.retain_available = parse_bool(key, value)?,
            "set_tcp_nodelay" => self.set_tcp_nodelay = parse_bool(key, value)?,
            "connection_messages" => self.connection_messages = parse_bool(key, value)?,
            "persistence" => self.persistence = parse_bool(key, value)?,
            "persistence_location" => {
                need(value)?;
                self.persistence_location = PathBuf::from(value);
            }
            "persistence_file" => {
                need(value)?;
                self.persistence_file = value.to_owned();
            }
            "persistence_sync_interval" => {
                need(value)?;
                self.persistence_sync_interval = Duration::from_millis(parse_num(key, value)?);
            }
            "persistence_corrupt_action" => match value {
                "moveaside" => self.persistence_refuse_corrupt = false,
                "refuse" => self.persistence_refuse_corrupt = true,
                _ => return Err(invalid(key, value, "expected moveaside or refuse")),
            },
            "persistent_client_expiration" => {
                need(value)?;
                self.persistent_client_expiration = Some(parse_duration(key, value)?);
            }
            "pid_file" => {
                need(value)?;
                self.pid_file = Some(PathBuf::from(value));
            }
            "log_dest" => {
                need(value)?;
                let mut parts = value.splitn(2, char::is_whitespace);
                let dest = match parts.next().unwrap_or_default() {
                    "stdout" => LogDest::Stdout,
                    "stderr" => LogDest::Stderr,
                    "none" => LogDest::None,
                    "file" => match parts.next().map(str::trim) {
                        Some(p) if !p.is_empty() => LogDest::File(PathBuf::from(p)),
                        _ => return Err(invalid(key, value, "file needs a path")),
                    },
                    "syslog" | "topic" | "dlt" => {
                        self.warnings
                            .push(format!("log_dest {value} is not supported yet; ignored"));
                        return Ok(());
                    }
                    _ => {
                        return Err(invalid(
                            key,
                            value,
                            "expected stdout, stderr, file PATH, syslog, topic or none",
                        ))
                    }
                };
                self.log_dest.push(dest);
            }
            "log_type" => {
                need(value)?;
                if matches!(value, "all" | "debug") {
                    self.verbose = true;
                }
            }
            _ => {
                let known = NOT_YET
                    .iter()
                    .any(|k| *k == key || (k.ends_with('_') && key.starts_with(k)));
                if !known {
                    return Err(LineError::Unknown(key.to_owned()));
                }
                if matches!(key, "password_file" | "acl_file") {
                    // Running open where the operator asked for access
                    // control would be worse than not running.
                    return Err(invalid(
                        key,
                        value,
                        "not supported yet; refusing to start without the access control it asks for",
                    ));
                }
                self.warnings.push(format!(
                    "configuration option {key} is not implemented yet; ignored"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        let mut c = Config::default();
        c.apply(text, Path::new("test.conf"))?;
        Ok(c)
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
}
