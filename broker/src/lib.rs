//! An MQTT 3.1.1 / 3.1 broker meant as a drop-in replacement for Mosquitto.
//!
//! Module map:
//! - [`codec`]: strict wire codec (packet types, `Decoder`/`Encoder`).
//! - [`topic`]: topic name / filter validation and matching rules.
//! - [`trie`]: the subscription trie.
//! - [`retain`]: the retained-message tree.
//! - [`session`]: per-client queues, inflight window, packet ids.
//! - [`router`]: sessions, subscriptions, retained: who gets a publish.
//! - [`connection`]: one client's handshake and `select!` loop.
//! - [`server`]: accept loop, limits, shutdown.
//! - [`sys`]: the `$SYS/broker/...` publisher and its traffic counters.
//! - [`config`]: typed configuration and the mosquitto.conf reader.
//! - [`auth`]: password file and ACL file checks.
//! - [`passwd`]: the `broker passwd` subcommand (mosquitto_passwd).
//! - [`log`]: `log_type` categories, line layout, dropped-line count.

pub mod auth;
pub mod codec;
pub mod config;
pub mod connection;
pub mod log;
pub mod passwd;
pub mod retain;
pub mod router;
pub mod server;
pub mod session;
pub mod store;
pub mod sys;
pub mod topic;
pub mod trie;

pub use config::Config;
