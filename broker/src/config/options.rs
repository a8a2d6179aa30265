//! The option names Mosquitto 2.0 knows, and where each one belongs:
//! the whole broker, the current listener, the security settings (global,
//! or per listener under `per_listener_settings true`) or the current
//! bridge (`connection`).
//!
//! The names come from mosquitto.conf(5) of Mosquitto 2.0.11 and from the
//! strings its `conf.c` compares against.

/// Where an option's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One value for the broker.
    Global,
    /// The current `listener` (or the default listener before any).
    Listener,
    /// Global, or the current listener with `per_listener_settings true`.
    Security,
    /// The current `connection` (bridge) section.
    Bridge,
}

/// What this broker does with an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Parsed into a typed field of `Config`.
    Implemented,
    /// Accepted with one warning naming it.
    NotYet,
    /// Removed from Mosquitto; Mosquitto itself warns and ignores it.
    Removed,
}

/// One known option.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    pub name: &'static str,
    pub scope: Scope,
    pub support: Support,
    /// May appear several times; the values are kept as a list.
    pub repeatable: bool,
    /// Mosquitto refuses a second occurrence ("Duplicate X value in
    /// configuration") instead of taking the last one.
    pub unique: bool,
}

const fn o(name: &'static str, scope: Scope, support: Support) -> Opt {
    Opt {
        name,
        scope,
        support,
        repeatable: false,
        unique: false,
    }
}

const fn many(mut opt: Opt) -> Opt {
    opt.repeatable = true;
    opt
}

const fn unique(mut opt: Opt) -> Opt {
    opt.unique = true;
    opt
}

use Scope::{Bridge as B, Global as G, Listener as L, Security as S};
use Support::{Implemented as I, NotYet as N, Removed as R};

/// Every Mosquitto 2.0 option except the prefixed families
/// (`auth_opt_*`, `plugin_opt_*`, see [`lookup`]) and the two lines that
/// open sections (`listener`, `connection`), which the format handles.
pub const OPTIONS: &[Opt] = &[
    // Global.
    o("allow_duplicate_messages", G, N),
    o("autosave_interval", G, I),
    o("autosave_on_changes", G, I),
    o("check_retain_source", G, I),
    unique(o("clientid_prefixes", G, I)),
    o("connection_messages", G, I),
    many(o("include_dir", G, I)),
    many(o("log_dest", G, I)),
    o("log_facility", G, N),
    o("log_timestamp", G, I),
    unique(o("log_timestamp_format", G, I)),
    many(o("log_type", G, I)),
    o("max_inflight_bytes", G, I),
    o("max_inflight_messages", G, I),
    o("max_keepalive", G, I),
    o("max_packet_size", G, I),
    o("max_queued_bytes", G, I),
    o("max_queued_messages", G, I),
    o("memory_limit", G, N),
    o("message_size_limit", G, I),
    o("per_listener_settings", G, I),
    o("persistence", G, I),
    unique(o("persistence_file", G, I)),
    unique(o("persistence_location", G, I)),
    o("persistent_client_expiration", G, I),
    unique(o("pid_file", G, I)),
    o("queue_qos0_messages", G, I),
    o("retain_available", G, I),
    o("retry_interval", G, R),
    o("set_tcp_nodelay", G, I),
    o("sys_interval", G, I),
    o("upgrade_outgoing_qos", G, I),
    unique(o("user", G, I)),
    o("websockets_log_level", G, N),
    // Not a Mosquitto option: this broker's persistence durability.
    o("persistence_sync_interval", G, I),
    o("persistence_corrupt_action", G, I),
    // Listener.
    o("bind_address", L, I),
    o("bind_interface", L, I),
    o("cafile", L, N),
    o("capath", L, N),
    o("certfile", L, N),
    o("ciphers", L, N),
    o("ciphers_tls1.3", L, N),
    o("crlfile", L, N),
    o("dhparamfile", L, N),
    o("http_dir", L, N),
    o("keyfile", L, N),
    o("max_connections", L, I),
    o("max_qos", L, N),
    o("max_topic_alias", L, N),
    unique(o("mount_point", L, I)),
    o("port", L, I),
    o("protocol", L, I),
    o("psk_hint", L, N),
    o("require_certificate", L, N),
    o("socket_domain", L, I),
    o("tls_engine", L, N),
    o("tls_engine_kpass_sha1", L, N),
    o("tls_keyform", L, N),
    o("tls_version", L, N),
    o("use_identity_as_username", L, N),
    o("use_subject_as_username", L, N),
    o("use_username_as_clientid", L, N),
    o("websockets_headers_size", L, N),
    // Security.
    unique(o("acl_file", S, I)),
    o("allow_anonymous", S, I),
    o("allow_zero_length_clientid", S, I),
    o("auth_plugin", S, N),
    o("auth_plugin_deny_special_chars", S, N),
    o("auto_id_prefix", S, N),
    unique(o("password_file", S, I)),
    many(o("plugin", S, N)),
    unique(o("psk_file", S, N)),
    // Bridge.
    o("address", B, N),
    o("addresses", B, N),
    o("bridge_alpn", B, N),
    o("bridge_attempt_unsubscribe", B, N),
    o("bridge_bind_address", B, N),
    o("bridge_cafile", B, N),
    o("bridge_capath", B, N),
    o("bridge_certfile", B, N),
    o("bridge_identity", B, N),
    o("bridge_insecure", B, N),
    o("bridge_keyfile", B, N),
    o("bridge_max_packet_size", B, N),
    o("bridge_outgoing_retain", B, N),
    o("bridge_protocol_version", B, N),
    o("bridge_psk", B, N),
    o("bridge_require_ocsp", B, N),
    o("bridge_tls_version", B, N),
    o("cleansession", B, N),
    o("idle_timeout", B, N),
    o("keepalive_interval", B, N),
    o("local_cleansession", B, N),
    o("local_clientid", B, N),
    o("local_password", B, N),
    o("local_username", B, N),
    o("notification_topic", B, N),
    o("notifications", B, N),
    o("notifications_local_only", B, N),
    o("remote_clientid", B, N),
    o("remote_password", B, N),
    o("remote_username", B, N),
    o("restart_timeout", B, N),
    o("round_robin", B, N),
    o("start_type", B, N),
    o("threshold", B, N),
    many(o("topic", B, N)),
    o("try_private", B, N),
];

/// Finds a (lower-case) option name; `auth_opt_NAME` and `plugin_opt_NAME`
/// are security options of the plugin family.
pub fn lookup(name: &str) -> Option<Opt> {
    if let Some(opt) = OPTIONS.iter().find(|o| o.name == name) {
        return Some(*opt);
    }
    let family = ["auth_opt_", "plugin_opt_"]
        .iter()
        .any(|p| name.len() > p.len() && name.starts_with(p));
    family.then_some(Opt {
        name: "auth_opt_*",
        scope: Scope::Security,
        support: Support::NotYet,
        repeatable: false,
        unique: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lower_case() {
        let mut names: Vec<_> = OPTIONS.iter().map(|o| o.name).collect();
        assert!(names.iter().all(|n| *n == n.to_ascii_lowercase()));
        names.sort_unstable();
        let len = names.len();
        names.dedup();
        assert_eq!(len, names.len());
    }

    #[test]
    fn plugin_families() {
        assert_eq!(lookup("auth_opt_db_host").unwrap().scope, Scope::Security);
        assert_eq!(lookup("plugin_opt_x").unwrap().support, Support::NotYet);
        assert!(lookup("auth_opt_").is_none());
        assert!(lookup("bogus").is_none());
    }
}
