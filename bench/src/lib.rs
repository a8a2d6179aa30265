//! mqtt-bench: an MQTT 3.1.1 load generator over raw tokio, and the
//! side-by-side comparison of our broker with Mosquitto.
//!
//! Module map:
//! - [`client`]: connect/subscribe, the pipelined publisher and the
//!   counting subscriber (the hot paths, allocation-free per message).
//! - [`scenario`]: latency, throughput, connections, subscriptions,
//!   retained; each bounded in count and time.
//! - [`proc`]: broker CPU seconds and RSS from `/proc`.
//! - [`report`]: a human row and a JSON line per scenario.
//! - [`compare`]: starts both brokers pinned to CPU 0, runs the scenarios
//!   alternately, prints medians and ratios, appends to `bench/RESULTS.md`.

pub mod client;
pub mod compare;
pub mod proc;
pub mod report;
pub mod scenario;

pub use report::Report;
pub use scenario::{Scenario, Target};
