//! Every file of `tests/config/valid/` parses and every file of
//! `tests/config/invalid/` fails with the message its first line names
//! (`# error: <substring>`, which includes `file:line`). Paths in the
//! fixtures are relative to the crate root, where cargo runs tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use broker::config::{Config, Listener, LogDest, LogType, Protocol, SocketDomain};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new("tests/config").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// Parses with an empty environment so that the caller's `BROKER__*`
/// variables do not leak in.
fn load(path: &Path) -> Result<(Config, Vec<String>), broker::config::Error> {
    Config::load_with_env(path, std::iter::empty())
}

fn valid(name: &str) -> (Config, Vec<String>) {
    load(&Path::new("tests/config/valid").join(name)).unwrap()
}

#[test]
fn every_valid_file_parses() {
    for path in fixtures("valid") {
        if let Err(e) = load(&path) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn every_invalid_file_fails_with_its_message() {
    for path in fixtures("invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# error: ...`", path.display()));
        match load(&path) {
            Ok(_) => panic!("{}: parsed, expected an error", path.display()),
            Err(e) => assert!(
                e.to_string().contains(expected),
                "{}: error {:?} does not contain {expected:?}",
                path.display(),
                e.to_string()
            ),
        }
    }
}

#[test]
fn realistic_file_values() {
    let (c, warnings) = valid("realistic.conf");
    assert_eq!(
        c.listeners,
        vec![
            Listener {
                port: 1883,
                bind: None
            },
            Listener {
                port: 1884,
                bind: Some("127.0.0.1".into())
            },
            Listener {
                port: 8883,
                bind: None
            },
        ]
    );
    assert_eq!(c.listener_options[0].max_connections, Some(500));
    assert_eq!(
        c.listener_options[0].socket_domain,
        Some(SocketDomain::Ipv4)
    );
    assert_eq!(c.listener_options[0].protocol, Protocol::Mqtt);
    assert_eq!(c.listener_options[1].mount_point.as_deref(), Some("tools/"));
    assert_eq!(c.max_connections, Some(500));
    assert_eq!(c.limits.max_inflight, 40);
    assert_eq!(c.limits.max_queued, 5000);
    assert_eq!(c.message_size_limit, 1_048_576);
    assert_eq!(c.max_packet_size, 2_097_152);
    assert_eq!(c.max_keepalive, Some(600));
    assert_eq!(c.sys_interval, Duration::from_secs(30));
    assert_eq!(c.clientid_prefixes.as_deref(), Some("plant-"));
    assert_eq!(
        c.persistent_client_expiration,
        Some(Duration::from_secs(14 * 86_400))
    );
    assert!(c.persistence);
    assert_eq!(c.persistence_location, Path::new("/var/lib/mosquitto/"));
    assert_eq!(c.autosave_interval, 300);
    assert_eq!(
        c.log_dest,
        vec![
            LogDest::Stdout,
            LogDest::File("/var/log/mosquitto/mosquitto.log".into())
        ]
    );
    assert_eq!(
        c.log_types,
        vec![
            LogType::Error,
            LogType::Warning,
            LogType::Notice,
            LogType::Information
        ]
    );
    assert_eq!(c.log_timestamp_format.as_deref(), Some("%Y-%m-%dT%H:%M:%S"));
    assert!(!c.allow_anonymous);
    assert_eq!(
        c.password_file.as_deref(),
        Some(Path::new("/etc/mosquitto/passwd"))
    );
    assert_eq!(c.user.as_deref(), Some("mosquitto"));
    // One warning per unimplemented option, naming file and line.
    let joined = warnings.join("\n");
    for name in ["cafile", "certfile", "keyfile", "require_certificate"] {
        assert_eq!(
            warnings
                .iter()
                .filter(|w| w.contains(&format!("option {name} ")))
                .count(),
            1,
            "{name}: {joined}"
        );
    }
    assert!(
        joined.contains("realistic.conf:39: option cafile is not implemented yet"),
        "{joined}"
    );
    assert!(
        joined.contains("log_dest syslog is not implemented yet"),
        "{joined}"
    );
    assert_eq!(warnings.len(), 5, "{joined}");
}

#[test]
fn crlf_and_hash_inside_values() {
    let (c, _) = valid("crlf.conf");
    assert_eq!(
        c.listeners,
        vec![Listener {
            port: 1883,
            bind: None
        }]
    );
    assert_eq!(c.limits.max_inflight, 7);
    assert!(c.allow_anonymous);
    // A '#' after the start of a line is part of the value, as in Mosquitto.
    assert_eq!(
        c.log_dest,
        vec![LogDest::File("C:/mosquitto/log # not a comment".into())]
    );
}

#[test]
fn last_line_without_newline() {
    let (c, _) = valid("no-trailing-newline.conf");
    assert!(!c.retain_available);
}

#[test]
fn include_dir_appends_in_sorted_order() {
    let (c, _) = valid("include-dir.conf");
    // 10-limits.conf then 20-logging.conf; README is not read.
    assert_eq!(c.limits.max_inflight, 3);
    assert_eq!(c.log_dest, vec![LogDest::Stdout, LogDest::Stderr]);
    assert_eq!(c.limits.max_queued, 10);
    assert_eq!(c.include_dir, vec![PathBuf::from("tests/config/include.d")]);
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(
        c.listener_options[1].mount_point.as_deref(),
        Some("included/")
    );
}

#[test]
fn per_listener_security() {
    let (c, _) = valid("per-listener.conf");
    assert!(c.per_listener_settings);
    let a = c.listener_options[0].security.clone().unwrap();
    assert!(!a.allow_anonymous);
    assert_eq!(a.password_file.as_deref(), Some(Path::new("conf/passwd")));
    assert_eq!(a.acl_file.as_deref(), Some(Path::new("conf/acl")));
    let b = c.listener_options[1].security.clone().unwrap();
    assert!(b.allow_anonymous);
    assert!(!b.allow_zero_length_clientid);
    assert_eq!(b.password_file, None);
    // Nothing went to the global settings.
    assert_eq!(c.password_file, None);
}

#[test]
fn port_and_bind_address_make_the_default_listener() {
    let (c, _) = valid("default-listener.conf");
    assert_eq!(
        c.listeners,
        vec![Listener {
            port: 1884,
            bind: Some("127.0.0.1".into())
        }]
    );
    assert_eq!(c.max_connections, Some(10));
    // A configured listener: anonymous access is off by default.
    assert!(!c.allow_anonymous);
}

#[test]
fn repo_configuration() {
    let (c, warnings) = valid("repo-mosquitto.conf");
    assert_eq!(
        c.listeners,
        vec![Listener {
            port: 1883,
            bind: None
        }]
    );
    assert!(c.allow_anonymous && c.persistence);
    assert_eq!(c.persistence_location, Path::new("data/"));
    assert_eq!(
        c.log_dest,
        vec![LogDest::File("log/broker.log".into()), LogDest::Stdout]
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn bridges_warn_once() {
    let (_, warnings) = valid("bridge.conf");
    assert_eq!(warnings.len(), 7, "{warnings:?}");
    assert!(warnings[0].contains("bridge.conf:5: bridges are not implemented yet"));
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("option topic "))
            .count(),
        1
    );
}

#[test]
fn mosquitto_leniencies() {
    let (c, warnings) = valid("mosquitto-semantics.conf");
    assert!(!c.connection_messages);
    assert!(c.limits.queue_qos0);
    assert_eq!(c.limits.max_inflight, 5);
    assert_eq!(c.limits.max_queued, usize::MAX);
    assert_eq!(c.sys_interval, Duration::ZERO);
    assert_eq!(
        c.log_timestamp_format.as_deref(),
        Some("%H:%M # local time")
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("retry_interval is no longer available"));
}
