//! Code that device-sim and consumer share, so that it is written once: the reconnect back-off.

mod backoff;

pub use backoff::Backoff;
