//! Code that device-sim and consumer share, so that it is written once: the broker connection
//! flags and the reconnect back-off.

mod backoff;
mod broker;

pub use backoff::Backoff;
pub use broker::{qos, Broker};
