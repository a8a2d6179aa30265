//! device-sim and consumer together against the project's broker (in process) on a loopback port.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use consumer::{Control, End};
use device_sim::Summary;
use stack_tests::{free_port, start_broker, start_broker_on, within, SharedBuf};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn sim_options(port: u16, args: &[&str]) -> device_sim::Options {
    let port = port.to_string();
    let mut argv = vec!["device-sim", "-h", "127.0.0.1", "-p", &port];
    argv.extend_from_slice(args);
    device_sim::Options::try_parse_from(argv).expect("valid device-sim options")
}

/// Starts a consumer and returns once its subscription is in place.
async fn subscribed_consumer(
    port: u16,
    args: &[&str],
) -> (SharedBuf, JoinHandle<anyhow::Result<consumer::Report>>) {
    let port = port.to_string();
    let mut argv = vec!["consumer", "-h", "127.0.0.1", "-p", &port];
    argv.extend_from_slice(args);
    let options = consumer::Options::try_parse_from(argv).expect("valid consumer options");
    let out = SharedBuf::default();
    let (tx, mut rx) = watch::channel(0);
    let control = Control {
        shutdown: CancellationToken::new(),
        subscribed: Some(tx),
    };
    let task = tokio::spawn(consumer::run_with(options, out.clone(), control));
    within("consumer SUBACK", rx.wait_for(|n| *n >= 1))
        .await
        .expect("consumer alive");
    (out, task)
}

async fn finish_consumer(task: JoinHandle<anyhow::Result<consumer::Report>>) -> consumer::Report {
    within("consumer to finish", task)
        .await
        .expect("consumer task")
        .expect("consumer run")
}

async fn run_sim(options: device_sim::Options) -> (Summary, Vec<String>) {
    let out = SharedBuf::default();
    let summary = within(
        "device-sim to finish",
        device_sim::run_with(options, out.clone(), CancellationToken::new()),
    )
    .await
    .expect("device-sim run");
    (summary, out.lines())
}

#[tokio::test]
async fn reproduces_the_paho_example_output() {
    let (port, _broker) = start_broker();
    let (consumer_out, consumer) = subscribed_consumer(port, &["-C", "5"]).await;

    let (summary, lines) = run_sim(sim_options(
        port,
        &["--count", "5", "--interval", "0..0.05"],
    ))
    .await;

    let mut expected = vec!["Device 1 : Data published."; 5];
    expected.push("Stopped...");
    assert_eq!(lines, expected);
    assert_eq!(
        (summary.sent, summary.acknowledged, summary.failed),
        (5, 5, 0)
    );
    assert!(!summary.interrupted);

    let report = finish_consumer(consumer).await;
    assert_eq!(report.end, End::CountReached);
    assert_eq!(
        consumer_out.lines(),
        [
            "Connected with result code 0",
            "Device 1 : Data 0",
            "Device 1 : Data 1",
            "Device 1 : Data 2",
            "Device 1 : Data 3",
            "Device 1 : Data 4",
        ]
    );
}

#[tokio::test]
async fn json_payloads_parse() {
    let (port, _broker) = start_broker();
    let (consumer_out, consumer) =
        subscribed_consumer(port, &["-C", "3", "--format", "json", "-q", "2"]).await;

    let (summary, _) = run_sim(sim_options(
        port,
        &[
            "--count",
            "3",
            "--interval",
            "0",
            "--payload",
            "json",
            "-q",
            "2",
            "-t",
            "/data",
        ],
    ))
    .await;
    assert_eq!((summary.acknowledged, summary.failed), (3, 0));
    finish_consumer(consumer).await;

    let lines = consumer_out.lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (seq, line) in lines[1..].iter().enumerate() {
        let message: serde_json::Value = serde_json::from_str(line).expect("consumer JSON");
        assert_eq!(message["topic"], "/data");
        assert_eq!(message["qos"], 2);
        let reading: serde_json::Value =
            serde_json::from_str(message["payload"].as_str().unwrap()).expect("device JSON");
        assert_eq!(reading["device"], 1);
        assert_eq!(reading["seq"], seq);
        humantime::parse_rfc3339(reading["timestamp"].as_str().unwrap()).expect("timestamp");
        for field in ["temperature", "humidity", "battery"] {
            assert!(reading[field].is_f64(), "{field} in {reading}");
        }
    }
}

#[tokio::test]
async fn verbose_consumer_prints_the_topic() {
    let (port, _broker) = start_broker();
    let (consumer_out, consumer) =
        subscribed_consumer(port, &["-C", "2", "-v", "-t", "plant/+/data"]).await;
    run_sim(sim_options(
        port,
        &[
            "--count",
            "2",
            "--interval",
            "0..0.01",
            "-t",
            "plant/7/data",
        ],
    ))
    .await;
    finish_consumer(consumer).await;
    assert_eq!(
        consumer_out.lines(),
        [
            "Connected with result code 0",
            "plant/7/data Device 1 : Data 0",
            "plant/7/data Device 1 : Data 1",
        ]
    );
}

#[tokio::test]
async fn a_fleet_of_three_devices_each_with_its_own_client_id() {
    let (port, _broker) = start_broker();
    let (consumer_out, consumer) = subscribed_consumer(port, &["-C", "12", "-q", "1"]).await;

    let (summary, lines) = run_sim(sim_options(
        port,
        &[
            "--devices",
            "3",
            "--count",
            "4",
            "--rate",
            "200",
            "-q",
            "1",
            "-i",
            "fleet",
        ],
    ))
    .await;
    assert_eq!(
        (summary.sent, summary.acknowledged, summary.failed),
        (12, 12, 0)
    );
    let ids: Vec<&str> = summary
        .devices
        .iter()
        .map(|d| d.client_id.as_str())
        .collect();
    assert_eq!(ids, ["fleet-1", "fleet-2", "fleet-3"]);
    assert_eq!(lines.last().map(String::as_str), Some("Stopped..."));
    for k in 1..=3 {
        let published = format!("Device {k} : Data published.");
        assert_eq!(lines.iter().filter(|l| **l == published).count(), 4);
    }

    finish_consumer(consumer).await;
    let mut per_device: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in consumer_out.lines().iter().skip(1) {
        let (device, data) = line.split_once(" : ").expect("Device k : Data i");
        per_device
            .entry(device.to_owned())
            .or_default()
            .push(data.to_owned());
    }
    let expected: Vec<String> = (0..4).map(|i| format!("Data {i}")).collect();
    assert_eq!(per_device.len(), 3);
    for (device, data) in per_device {
        assert_eq!(data, expected, "{device} in order");
    }
}

#[tokio::test]
async fn backs_off_until_the_broker_appears_then_delivers() {
    let port = free_port();
    let shutdown = CancellationToken::new();
    let out = SharedBuf::default();
    let sim = tokio::spawn(device_sim::run_with(
        sim_options(port, &["--count", "0", "--interval", "0.05", "-q", "1"]),
        out.clone(),
        shutdown.clone(),
    ));

    // Let a few connection attempts fail first.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _broker = start_broker_on(port);
    let (consumer_out, consumer) = subscribed_consumer(port, &["-C", "3"]).await;
    finish_consumer(consumer).await;

    shutdown.cancel();
    let summary = within("device-sim to stop", sim)
        .await
        .expect("device-sim task")
        .expect("device-sim run");
    assert!(summary.interrupted);
    assert_eq!(summary.devices[0].connects, 1);
    assert!(summary.acknowledged >= 3, "{summary:?}");
    assert!(!out.lines().contains(&"Stopped...".to_owned()));

    // Whatever the consumer caught, it is consecutive data from the one device.
    let lines = consumer_out.lines();
    assert_eq!(lines[0], "Connected with result code 0");
    let seqs: Vec<u64> = lines[1..]
        .iter()
        .map(|l| {
            l.strip_prefix("Device 1 : Data ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {l:?}"))
        })
        .collect();
    assert_eq!(seqs.len(), 3);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[tokio::test]
async fn undeliverable_publishes_are_counted_as_failed() {
    // Nothing listens on this port: every publish stays unacknowledged.
    let port = free_port();
    let (summary, lines) = run_sim(sim_options(
        port,
        &[
            "--count",
            "2",
            "--interval",
            "0",
            "-q",
            "1",
            "--drain-timeout",
            "0.3",
        ],
    ))
    .await;
    assert_eq!(
        (summary.sent, summary.acknowledged, summary.failed),
        (2, 0, 2)
    );
    assert_eq!(lines.last().map(String::as_str), Some("Stopped..."));
}

#[tokio::test]
async fn ctrl_c_while_draining_stops_quickly() {
    let port = free_port();
    let out = SharedBuf::default();
    let shutdown = CancellationToken::new();
    let sim = tokio::spawn(device_sim::run_with(
        sim_options(port, &["--count", "1", "--interval", "0", "-q", "1"]),
        out.clone(),
        shutdown.clone(),
    ));
    out.wait_for_line(|l| l == "Device 1 : Data published.")
        .await;
    let cancelled = std::time::Instant::now();
    shutdown.cancel();
    let summary = within("device-sim to stop", sim)
        .await
        .expect("device-sim task")
        .expect("device-sim run");
    assert!(cancelled.elapsed() < Duration::from_secs(4));
    assert!(summary.interrupted);
    assert_eq!((summary.sent, summary.failed), (1, 1));
}
