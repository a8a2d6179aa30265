//! Command-line options, shaped after mosquitto_sub where they overlap.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::{ArgAction, Parser, ValueEnum};
use rumqttc::QoS;
use stack_common::Broker;

/// Subscribe and print each payload on its own line (a Rust take on the classic paho consumer).
///
/// `-h` is the broker host, as in mosquitto_sub, so help is `--help` only.
/// Exit status: 0 normally (also after `-C N` messages or Ctrl-C), 27 when `-W` timed out (as
/// mosquitto_sub), 1 on error.
#[derive(Debug, Clone, Parser)]
#[command(name = "consumer", version, disable_help_flag = true)]
pub struct Options {
    /// Broker host, port and credentials.
    #[command(flatten)]
    pub broker: Broker,

    /// Topic filter to subscribe to; repeat for several.
    #[arg(short = 't', long = "topic", default_value = "/data")]
    pub topics: Vec<String>,

    /// Subscription quality of service: 0, 1 or 2.
    #[arg(short = 'q', long = "qos", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// Client id. Default `consumer-` and random hex.
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,

    /// Persistent session (clean session off): the broker keeps subscriptions and queues QoS 1/2
    /// messages while we are away. Needs -i.
    #[arg(short = 'c', long = "disable-clean-session", requires = "id")]
    pub persistent: bool,

    /// Print the topic, a space, then the payload.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Exit after N messages.
    #[arg(short = 'C', value_name = "N")]
    pub count: Option<u64>,

    /// Exit after SECONDS (counted from the first connection) with status 27.
    #[arg(short = 'W', value_name = "SECONDS")]
    pub timeout: Option<f64>,

    /// Output: `plain` payload lines, or `json`, one object per message.
    #[arg(long = "format", value_enum, default_value_t = Format::Plain)]
    pub format: Format,

    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
}

impl Default for Options {
    /// The same as running with no arguments (environment variables included).
    fn default() -> Self {
        Options::parse_from(["consumer"])
    }
}

impl Options {
    /// The QoS as rumqttc's type.
    pub fn qos(&self) -> QoS {
        stack_common::qos(self.qos)
    }

    /// `-W` as a duration.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout.map(Duration::from_secs_f64)
    }

    /// Checks what clap cannot express; `run` calls this too, for options built in code.
    pub fn validate(&self) -> Result<()> {
        if self.topics.is_empty() {
            bail!("at least one -t topic is needed");
        }
        if self.persistent && self.id.as_deref().unwrap_or("").is_empty() {
            bail!("-c (persistent session) needs a client id: -i ID");
        }
        if let Some(t) = self.timeout {
            if !(t.is_finite() && t > 0.0 && t < 1e9) {
                bail!("-W must be a positive number of seconds");
            }
        }
        self.broker.validate()
    }
}

/// Output format of `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Plain,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_paho_example() {
        let o = Options::try_parse_from(["consumer"]).unwrap();
        assert_eq!(o.topics, ["/data"]);
        assert_eq!(o.qos, 0);
        assert_eq!(o.format, Format::Plain);
        assert!(!o.verbose && !o.persistent);
    }

    #[test]
    fn flags_follow_mosquitto_sub() {
        let o = Options::try_parse_from([
            "consumer", "-h", "mqtt", "-p", "1884", "-t", "a/#", "-t", "b", "-q", "1", "-i", "me",
            "-c", "-v", "-C", "3", "-W", "2",
        ])
        .unwrap();
        assert_eq!((o.broker.host.as_str(), o.broker.port), ("mqtt", 1884));
        assert_eq!(o.topics, ["a/#", "b"]);
        assert!(o.persistent && o.verbose);
        assert_eq!((o.count, o.timeout), (Some(3), Some(2.0)));
        let help = Options::try_parse_from(["consumer", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn persistent_session_needs_an_id() {
        assert!(Options::try_parse_from(["consumer", "-c"]).is_err());
    }
}
