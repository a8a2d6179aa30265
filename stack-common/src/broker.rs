//! The broker connection flags device-sim and consumer share, shaped after mosquitto_pub/sub:
//! `-h`, `-p`, `-u`, `-P`, and the MQTT options built from them.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use rumqttc::{MqttOptions, QoS};

/// Where the broker is and who we are to it.
#[derive(Debug, Clone, Args)]
pub struct Broker {
    /// Broker host.
    #[arg(
        short = 'h',
        long = "host",
        env = "MQTT_HOST",
        default_value = "localhost"
    )]
    pub host: String,

    /// Broker port.
    #[arg(short = 'p', long = "port", env = "MQTT_PORT", default_value_t = 1883)]
    pub port: u16,

    /// User name.
    #[arg(short = 'u', long = "username")]
    pub username: Option<String>,

    /// Password (with -u).
    #[arg(short = 'P', long = "pw")]
    pub password: Option<String>,
}

impl Broker {
    /// Checks what clap cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.password.is_some() && self.username.is_none() {
            bail!("-P needs -u");
        }
        Ok(())
    }

    /// Options for a client `client_id` of this broker: its address, a 60 s keepalive, and the
    /// credentials if any.
    pub fn mqtt_options(&self, client_id: String) -> MqttOptions {
        let mut mqtt = MqttOptions::new(client_id, self.host.clone(), self.port);
        mqtt.set_keep_alive(Duration::from_secs(60));
        if let Some(user) = &self.username {
            mqtt.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        mqtt
    }
}

/// A `-q` level (0, 1 or 2, which clap has checked) as rumqttc's type.
pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}
