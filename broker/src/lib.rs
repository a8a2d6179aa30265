//! An MQTT 3.1.1 / 3.1 broker meant as a drop-in replacement for Mosquitto.
//!
//! Module map:
//! - [`codec`]: strict wire codec (packet types, `Decoder`/`Encoder`).
//! - [`topic`]: topic name / filter validation and matching rules.
//! - [`trie`]: the subscription trie.
//! - [`retain`]: the retained-message tree.

pub mod codec;
pub mod retain;
pub mod topic;
pub mod trie;
