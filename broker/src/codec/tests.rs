//! Codec property tests and cross-checks against `mqttbytes`.
