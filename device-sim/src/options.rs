//! Command-line options, shaped after mosquitto_pub where they overlap.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{ArgAction, Parser, ValueEnum};
use rand::Rng;
use rumqttc::QoS;
use stack_common::Broker;

/// Simulated MQTT telemetry devices (a Rust take on the classic paho producer).
///
/// `-h` is the broker host, as in mosquitto_pub, so help is `--help` only.
#[derive(Debug, Clone, Parser)]
#[command(name = "device-sim", version, disable_help_flag = true)]
pub struct Options {
    /// Broker host, port and credentials.
    #[command(flatten)]
    pub broker: Broker,

    /// Topic to publish to.
    #[arg(short = 't', long = "topic", default_value = "/data")]
    pub topic: String,

    /// Quality of service: 0, 1 or 2.
    #[arg(short = 'q', long = "qos", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// Set the retain flag on every publish.
    #[arg(short = 'r', long = "retain")]
    pub retain: bool,

    /// Client id; with `--devices N > 1`, device k uses `ID-k`. Default `device-sim-PID-k`.
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,

    /// Messages per device; 0 publishes forever.
    #[arg(long = "count", default_value_t = 20)]
    pub count: u64,

    /// Random pause before each publish, `MIN..MAX` seconds (decimals allowed) or one fixed value.
    #[arg(long = "interval", default_value = "1..5")]
    pub interval: Interval,

    /// Number of concurrent simulated devices, each with its own connection and client id.
    #[arg(long = "devices", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub devices: u32,

    /// Payload: `text` (`Device k : Data i`) or `json` (device, seq, timestamp, sensor readings).
    #[arg(long = "payload", value_enum, default_value_t = PayloadFormat::Text)]
    pub payload: PayloadFormat,

    /// Messages per second across the whole fleet, evenly spread; overrides `--interval`.
    #[arg(long = "rate")]
    pub rate: Option<f64>,

    /// Seconds to wait at the end for outstanding acknowledgements before counting them as
    /// failed. The default rides out a broker restart with back-off without hanging a script.
    #[arg(long = "drain-timeout", value_name = "SECONDS", default_value_t = 10.0)]
    pub drain_timeout: f64,

    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
}

impl Default for Options {
    /// The same as running with no arguments (environment variables included).
    fn default() -> Self {
        Options::parse_from(["device-sim"])
    }
}

impl Options {
    /// The QoS as rumqttc's type.
    pub fn qos(&self) -> QoS {
        stack_common::qos(self.qos)
    }

    /// `--drain-timeout` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout)
    }

    /// Checks what clap cannot express; `run` calls this too, for options built in code.
    pub fn validate(&self) -> Result<()> {
        if self.devices == 0 {
            bail!("--devices must be at least 1");
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a positive number of messages per second");
            }
        }
        if !(self.drain_timeout.is_finite() && (0.0..1e9).contains(&self.drain_timeout)) {
            bail!("--drain-timeout must be a non-negative number of seconds");
        }
        self.broker.validate()
    }
}

/// Payload format of `--payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadFormat {
    Text,
    Json,
}

/// A pause drawn uniformly from `[min, max]` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub min: f64,
    pub max: f64,
}

impl Interval {
    /// Draws one pause.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let secs = if self.max > self.min {
            rng.gen_range(self.min..=self.max)
        } else {
            self.min
        };
        Duration::from_secs_f64(secs)
    }
}

impl FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |x: &str| -> Result<f64, String> {
            let v: f64 = x
                .trim()
                .parse()
                .map_err(|_| format!("`{x}` is not a number of seconds"))?;
            if !v.is_finite() || !(0.0..=1e9).contains(&v) {
                return Err(format!("`{x}` is not a sensible number of seconds"));
            }
            Ok(v)
        };
        let (min, max) = match s.split_once("..") {
            Some((min, max)) => (number(min)?, number(max)?),
            None => {
                let v = number(s)?;
                (v, v)
            }
        };
        if min > max {
            return Err(format!("interval `{s}`: MIN is larger than MAX"));
        }
        Ok(Interval { min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_paho_example() {
        let o = Options::try_parse_from(["device-sim"]).unwrap();
        assert_eq!(o.topic, "/data");
        assert_eq!(o.count, 20);
        assert_eq!(o.interval, Interval { min: 1.0, max: 5.0 });
        assert_eq!(o.devices, 1);
        assert_eq!(o.payload, PayloadFormat::Text);
        assert_eq!(o.qos, 0);
    }

    #[test]
    fn dash_h_is_the_host() {
        let o = Options::try_parse_from(["device-sim", "-h", "mqtt", "-p", "1884"]).unwrap();
        assert_eq!((o.broker.host.as_str(), o.broker.port), ("mqtt", 1884));
        let help = Options::try_parse_from(["device-sim", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn intervals_parse() {
        assert_eq!(
            "0..0.05".parse::<Interval>().unwrap(),
            Interval {
                min: 0.0,
                max: 0.05
            }
        );
        assert_eq!(
            "2".parse::<Interval>().unwrap(),
            Interval { min: 2.0, max: 2.0 }
        );
        assert!("5..1".parse::<Interval>().is_err());
        assert!("a..1".parse::<Interval>().is_err());
        assert!("-1..1".parse::<Interval>().is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Options::try_parse_from(["device-sim", "-q", "3"]).is_err());
        assert!(Options::try_parse_from(["device-sim", "--devices", "0"]).is_err());
        let o = Options::try_parse_from(["device-sim", "--rate", "0"]).unwrap();
        assert!(o.validate().is_err());
    }
}
