//! Simulated telemetry devices.
//!
//! With no options this reproduces the classic paho teaching producer: one device that 20 times
//! sleeps a random 1 to 5 seconds, publishes `Device 1 : Data i` to `/data` and prints
//! `Device 1 : Data published.`, then prints `Stopped...`. Options add a fleet (`--devices`),
//! JSON payloads, a fixed fleet-wide rate for load, and the mosquitto_pub connection flags.
//!
//! Each device is its own MQTT client (own client id, own connection). One task drives the
//! rumqttc event loop (acks, reconnect back-off); another publishes. Publishes are tracked until
//! acknowledged so that nothing is lost silently: at exit every unacknowledged publish is reported
//! on stderr and counted as failed.

mod options;

pub use options::{Interval, Options, PayloadFormat};

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Outgoing, QoS};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use stack_common::Backoff;

/// After Ctrl-C the user wants out: wait only briefly for in-flight acknowledgements.
const INTERRUPT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on waiting for the DISCONNECT to be written once everything is drained.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Capacity of rumqttc's request channel: publishes queue here while the broker is away, then
/// `publish().await` blocks, which throttles the producer instead of growing memory.
const REQUEST_CAPACITY: usize = 64;

/// Counts for one device, returned in [`Summary::devices`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSummary {
    /// 1-based device number, as in `Device k : ...`.
    pub device: u32,
    /// The MQTT client id this device connected with.
    pub client_id: String,
    /// Publishes handed to the client.
    pub sent: u64,
    /// Publishes acknowledged: PUBACK (QoS 1), PUBCOMP (QoS 2), or written to the socket (QoS 0).
    pub acknowledged: u64,
    /// `sent - acknowledged` at exit.
    pub failed: u64,
    /// Successful CONNACKs seen (more than one means the device reconnected).
    pub connects: u64,
}

/// What a run did, summed over the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Publishes handed to the MQTT clients, all devices.
    pub sent: u64,
    /// Publishes acknowledged (see [`DeviceSummary::acknowledged`]), all devices.
    pub acknowledged: u64,
    /// Publishes never acknowledged, all devices; each was named on stderr.
    pub failed: u64,
    /// True when the run was stopped by the shutdown token (Ctrl-C) rather than by `--count`.
    pub interrupted: bool,
    /// Per-device counts, in device order.
    pub devices: Vec<DeviceSummary>,
}

/// Runs the simulation, printing to stdout; Ctrl-C stops it cleanly and prints a summary on
/// stderr.
pub async fn run(options: Options) -> Result<Summary> {
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    run_with(options, std::io::stdout(), shutdown).await
}

/// Runs the simulation writing its stdout lines to `out` until `--count` is reached or
/// `shutdown` is cancelled. Every line is flushed as written.
pub async fn run_with(
    options: Options,
    out: impl Write + Send + 'static,
    shutdown: CancellationToken,
) -> Result<Summary> {
    options.validate()?;
    let out: Sink = Arc::new(Mutex::new(Box::new(out)));
    let options = Arc::new(options);

    let mut tasks = Vec::new();
    for device in 1..=options.devices {
        let options = options.clone();
        let out = out.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            run_device(device, &options, &out, &shutdown).await
        }));
    }

    let mut summary = Summary {
        interrupted: shutdown.is_cancelled(),
        ..Summary::default()
    };
    for task in tasks {
        let device = task.await.context("device task panicked")??;
        summary.sent += device.sent;
        summary.acknowledged += device.acknowledged;
        summary.failed += device.failed;
        summary.devices.push(device);
    }
    summary.interrupted = shutdown.is_cancelled();

    if summary.interrupted || summary.failed > 0 {
        eprintln!(
            "device-sim: summary: sent {}, acknowledged {}, failed {}",
            summary.sent, summary.acknowledged, summary.failed
        );
    }
    if !summary.interrupted {
        write_line(&out, "Stopped...")?;
    }
    Ok(summary)
}

type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// Writes one line and flushes it: stdout is block-buffered when it is not a terminal, and
/// `docker compose logs -f` should show each line as it happens.
fn write_line(out: &Sink, line: &str) -> Result<()> {
    // A poisoned lock only means another device panicked mid-write; the sink is still usable.
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Publishes not yet acknowledged, oldest first, shared by the publisher and the event loop task.
#[derive(Default)]
struct Tracker {
    /// Sequence numbers in publish order. A broker acknowledges QoS 1/2 in order
    /// ([MQTT-4.6.0-2], [MQTT-4.6.0-3]) and QoS 0 "acks" are the event loop's own writes, which are
    /// in order too, so the front is always the one being acknowledged.
    unacked: Mutex<VecDeque<u64>>,
    acknowledged: std::sync::atomic::AtomicU64,
    connects: std::sync::atomic::AtomicU64,
    /// Woken on every acknowledgement, for the final drain.
    changed: Notify,
}

impl Tracker {
    fn push(&self, seq: u64) {
        self.unacked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(seq);
    }

    fn ack(&self) {
        let popped = self
            .unacked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        if popped.is_some() {
            self.acknowledged
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.changed.notify_waiters();
    }

    fn pending(&self) -> usize {
        self.unacked.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn unacked(&self) -> Vec<u64> {
        self.unacked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Waits until nothing is pending, or `timeout` passes.
    async fn drained(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let changed = self.changed.notified();
                if self.pending() == 0 {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }
}

fn client_id(options: &Options, device: u32) -> String {
    match (&options.id, options.devices) {
        (Some(id), 1) => id.clone(),
        (Some(id), _) => format!("{id}-{device}"),
        (None, _) => format!("device-sim-{}-{device}", std::process::id()),
    }
}

async fn run_device(
    device: u32,
    options: &Options,
    out: &Sink,
    shutdown: &CancellationToken,
) -> Result<DeviceSummary> {
    let client_id = client_id(options, device);
    let mqtt = options.broker.mqtt_options(client_id.clone());
    let (client, eventloop) = AsyncClient::new(mqtt, REQUEST_CAPACITY);
    let qos = options.qos();

    let tracker = Arc::new(Tracker::default());
    // Tells the event loop task that the publisher is done, so a connection error then ends it
    // instead of retrying forever.
    let stopping = CancellationToken::new();
    let driver = tokio::spawn(drive(
        device,
        eventloop,
        qos,
        tracker.clone(),
        stopping.clone(),
    ));

    let mut sent = 0u64;
    let mut rng = StdRng::from_entropy();
    let count = options.count;
    let mut ticker = options.rate.map(|rate| {
        // The fleet shares the rate: each device publishes every `devices / rate` seconds, and
        // the devices are staggered across one period so the load is even.
        let period = Duration::from_secs_f64(f64::from(options.devices) / rate);
        let offset = period.mul_f64(f64::from(device - 1) / f64::from(options.devices));
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });

    while count == 0 || sent < count {
        let wait = async {
            match ticker.as_mut() {
                Some(ticker) => {
                    ticker.tick().await;
                }
                None => tokio::time::sleep(options.interval.sample(&mut rng)).await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wait => {}
        }
        let payload = payload(options.payload, device, sent, &mut rng);
        tracker.push(sent);
        let publish = client.publish(options.topic.clone(), qos, options.retain, payload);
        tokio::select! {
            _ = shutdown.cancelled() => {
                // The request never reached the client: it is neither sent nor pending.
                tracker.unacked.lock().unwrap_or_else(|e| e.into_inner()).pop_back();
                break;
            }
            result = publish => result.context("MQTT client event loop stopped")?,
        }
        sent += 1;
        write_line(out, &format!("Device {device} : Data published."))?;
    }

    // Make sure the last publishes actually reached the broker before saying goodbye. Ctrl-C
    // (now or during the wait) shortens the wait: the user wants out.
    let drain = options.drain_timeout();
    tokio::select! {
        _ = tracker.drained(drain) => {}
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(drain.min(INTERRUPT_DRAIN_TIMEOUT)).await;
        } => {}
    }
    stopping.cancel();
    // The DISCONNECT queues behind every publish, so the event loop writes them first.
    let _ = client.try_disconnect();
    let mut driver = driver;
    if tokio::time::timeout(DISCONNECT_TIMEOUT, &mut driver)
        .await
        .is_err()
    {
        driver.abort();
    }

    let unacked = tracker.unacked();
    for seq in &unacked {
        eprintln!("device-sim: Device {device} : Data {seq} was not acknowledged (failed)");
    }
    let acknowledged = tracker
        .acknowledged
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok(DeviceSummary {
        device,
        client_id,
        sent,
        acknowledged,
        failed: unacked.len() as u64,
        connects: tracker.connects.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// Drives the rumqttc event loop: counts acknowledgements and reconnects with back-off.
///
/// rumqttc reconnects on the next `poll` after an error, immediately; without a pause a missing
/// broker would be hammered in a tight loop, so we sleep with exponential back-off and jitter.
/// Requests queued meanwhile stay in rumqttc's pending list and are sent after reconnecting.
async fn drive(
    device: u32,
    mut eventloop: EventLoop,
    qos: QoS,
    tracker: Arc<Tracker>,
    stopping: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                if backoff.attempts() > 0 {
                    eprintln!("device-sim: Device {device}: reconnected");
                }
                backoff.reset();
                tracker
                    .connects
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == QoS::AtMostOnce => tracker.ack(),
            Ok(Event::Incoming(Incoming::PubAck(_))) if qos == QoS::AtLeastOnce => tracker.ack(),
            Ok(Event::Incoming(Incoming::PubComp(_))) if qos == QoS::ExactlyOnce => tracker.ack(),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if stopping.is_cancelled() {
                    return;
                }
                let delay = backoff.next_delay();
                eprintln!(
                    "device-sim: Device {device}: connection error: {e}; retrying in {} ms",
                    delay.as_millis()
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopping.cancelled() => return,
                }
            }
        }
    }
}

/// Builds the payload of publish `seq` of `device`.
pub fn payload(format: PayloadFormat, device: u32, seq: u64, rng: &mut impl Rng) -> Vec<u8> {
    match format {
        PayloadFormat::Text => format!("Device {device} : Data {seq}").into_bytes(),
        PayloadFormat::Json => {
            let round = |x: f64| (x * 10.0).round() / 10.0;
            serde_json::json!({
                "device": device,
                "seq": seq,
                "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                "temperature": round(rng.gen_range(18.0..26.0)),
                "humidity": round(rng.gen_range(30.0..60.0)),
                // Drains slowly with the sequence number, like a real battery would.
                "battery": round((100.0 - seq as f64 * 0.01).max(0.0)),
            })
            .to_string()
            .into_bytes()
        }
    }
}
