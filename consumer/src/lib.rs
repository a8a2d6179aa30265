//! A telemetry consumer: subscribe and print each payload on its own line.
//!
//! With no options this reproduces the classic paho teaching consumer: it prints
//! `Connected with result code 0` on every CONNACK (paho's `on_connect`), subscribes to `/data`
//! there (so subscriptions come back after a reconnect), and prints each payload on its own line.
//! Options follow mosquitto_sub (`-t -q -i -c -v -C -W -u -P`) plus `--format json`.
//!
//! Every line is flushed as it is written: stdout is block-buffered when it is not a terminal, and
//! `docker compose logs -f` or `tail -f` should show a message the moment it arrives.

mod options;

pub use options::{Format, Options};

use std::io::Write;
use std::time::SystemTime;

use anyhow::{Context, Result};
use base64::Engine as _;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, Incoming, Outgoing, Publish,
    SubscribeFilter, SubscribeReasonCode,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{sleep_until, Duration, Instant};
use tokio_util::sync::CancellationToken;

use stack_common::Backoff;

/// Exit status when `-W` ran out, the same as mosquitto_sub's.
pub const EXIT_TIMEOUT: u8 = 27;

/// Bound on waiting for the DISCONNECT to be written on the way out.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `-C N` messages were printed.
    CountReached,
    /// `-W` seconds passed.
    TimedOut,
    /// The shutdown token was cancelled (Ctrl-C).
    Interrupted,
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub end: End,
    /// Messages printed.
    pub received: u64,
    /// Successful CONNACKs (more than one means we reconnected).
    pub connects: u64,
}

impl Report {
    /// The process exit status mosquitto_sub would use.
    pub fn exit_code(&self) -> u8 {
        match self.end {
            End::TimedOut => EXIT_TIMEOUT,
            End::CountReached | End::Interrupted => 0,
        }
    }
}

/// Hooks for running the consumer inside another program or a test.
#[derive(Debug, Default)]
pub struct Control {
    /// Cancelled to stop: the consumer disconnects cleanly and returns [`End::Interrupted`].
    pub shutdown: CancellationToken,
    /// Bumped on every SUBACK, so a test can wait until the subscription is in place before it
    /// publishes.
    pub subscribed: Option<watch::Sender<u64>>,
}

/// Runs until `-C`, `-W` or Ctrl-C, printing to `out`.
pub async fn run(options: Options, out: impl Write + Send) -> Result<Report> {
    let control = Control::default();
    let on_signal = control.shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    run_with(options, out, control).await
}

/// Runs until `-C`, `-W` or `control.shutdown`, printing to `out`.
pub async fn run_with(
    options: Options,
    mut out: impl Write + Send,
    control: Control,
) -> Result<Report> {
    options.validate()?;
    let client_id = options
        .id
        .clone()
        .unwrap_or_else(|| format!("consumer-{:08x}", rand::random::<u32>()));
    let mut mqtt = options.broker.mqtt_options(client_id);
    mqtt.set_clean_session(!options.persistent);
    // Allow large payloads, as mosquitto_sub does; rumqttc's default is 10 KiB.
    mqtt.set_max_packet_size(256 * 1024 * 1024, 256 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(mqtt, 16);
    let filters: Vec<SubscribeFilter> = options
        .topics
        .iter()
        .map(|t| SubscribeFilter::new(t.clone(), options.qos()))
        .collect();

    let mut backoff = Backoff::new();
    let mut report = Report {
        end: End::Interrupted,
        received: 0,
        connects: 0,
    };
    // mosquitto_sub starts the -W clock once connected.
    let mut deadline: Option<Instant> = None;
    let mut suback_count = 0u64;

    if options.count == Some(0) {
        report.end = End::CountReached;
        return Ok(report);
    }

    loop {
        let timed_out = async {
            match deadline {
                Some(d) => sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            _ = control.shutdown.cancelled() => { report.end = End::Interrupted; break; }
            _ = timed_out => { report.end = End::TimedOut; break; }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                if backoff.attempts() > 0 {
                    eprintln!("consumer: reconnected");
                }
                backoff.reset();
                report.connects += 1;
                write_line(
                    &mut out,
                    format!("Connected with result code {}", ack.code as u8),
                )?;
                if let (None, Some(t)) = (deadline, options.timeout()) {
                    deadline = Some(Instant::now() + t);
                }
                // Subscribing on every CONNACK, as paho's on_connect does, restores the
                // subscription after a reconnect with a clean session.
                client
                    .try_subscribe_many(filters.clone())
                    .context("queueing SUBSCRIBE")?;
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                for (code, topic) in ack.return_codes.iter().zip(&options.topics) {
                    if *code == SubscribeReasonCode::Failure {
                        eprintln!("consumer: subscription to {topic} was refused by the broker");
                    }
                }
                suback_count += 1;
                if let Some(tx) = &control.subscribed {
                    tx.send_replace(suback_count);
                }
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                print_message(&mut out, &options, &publish)?;
                report.received += 1;
                if Some(report.received) == options.count {
                    report.end = End::CountReached;
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if let ConnectionError::ConnectionRefused(code) = &e {
                    // paho calls on_connect with the refusal code too.
                    write_line(
                        &mut out,
                        format!("Connected with result code {}", *code as u8),
                    )?;
                    if matches!(
                        code,
                        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
                    ) {
                        eprintln!(
                            "consumer: not authorised: check -u/-P and the broker's password file"
                        );
                    }
                }
                let delay = backoff.next_delay();
                eprintln!(
                    "consumer: connection to {}:{} lost or refused: {e}; reconnecting in {} ms",
                    options.broker.host,
                    options.broker.port,
                    delay.as_millis()
                );
                let timed_out = async {
                    match deadline {
                        Some(d) => sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = control.shutdown.cancelled() => { report.end = End::Interrupted; break; }
                    _ = timed_out => { report.end = End::TimedOut; break; }
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    disconnect(&client, &mut eventloop).await;
    Ok(report)
}

/// Sends DISCONNECT and polls until it is written, so the broker sees a clean goodbye (and does
/// not publish our will). Bounded: if the broker is away there is nothing to say goodbye to.
async fn disconnect(client: &AsyncClient, eventloop: &mut rumqttc::EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn write_line(out: &mut impl Write, line: String) -> Result<()> {
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// One message of `--format json`.
#[derive(Serialize)]
struct JsonMessage<'a> {
    topic: &'a str,
    qos: u8,
    retain: bool,
    /// `utf8` when `payload` is the payload itself, `base64` when the payload was not UTF-8.
    encoding: &'static str,
    payload: String,
    /// Receive time, RFC 3339 in UTC.
    received: String,
}

fn print_message(out: &mut impl Write, options: &Options, publish: &Publish) -> Result<()> {
    match options.format {
        Format::Plain => {
            // Raw bytes, as mosquitto_sub prints them.
            if options.verbose {
                out.write_all(publish.topic.as_bytes())?;
                out.write_all(b" ")?;
            }
            out.write_all(&publish.payload)?;
            out.write_all(b"\n")?;
        }
        Format::Json => {
            let (encoding, payload) = match std::str::from_utf8(&publish.payload) {
                Ok(s) => ("utf8", s.to_owned()),
                Err(_) => (
                    "base64",
                    base64::engine::general_purpose::STANDARD.encode(&publish.payload),
                ),
            };
            let message = JsonMessage {
                topic: &publish.topic,
                qos: publish.qos as u8,
                retain: publish.retain,
                encoding,
                payload,
                received: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            };
            serde_json::to_writer(&mut *out, &message)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}
