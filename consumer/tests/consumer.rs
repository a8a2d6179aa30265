//! The consumer against the project's broker (in process) on a loopback port, fed by a plain
//! rumqttc publisher.

use std::time::{Duration, Instant};

use clap::Parser;
use consumer::{Control, End, Options, Report};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing, QoS};
use stack_tests::{start_broker, start_broker_on, within, SharedBuf};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn options(port: u16, args: &[&str]) -> Options {
    let port = port.to_string();
    let mut argv = vec!["consumer", "-h", "127.0.0.1", "-p", &port];
    argv.extend_from_slice(args);
    Options::try_parse_from(argv).expect("valid options")
}

struct Running {
    out: SharedBuf,
    shutdown: CancellationToken,
    subscribed: watch::Receiver<u64>,
    task: JoinHandle<anyhow::Result<Report>>,
}

impl Running {
    /// Waits for the `n`-th SUBACK, i.e. until publishes will reach us.
    async fn subscribed(&mut self, n: u64) {
        within("SUBACK", self.subscribed.wait_for(|c| *c >= n))
            .await
            .expect("consumer alive");
    }

    async fn finish(self) -> (Report, Vec<String>) {
        let report = within("consumer to finish", self.task)
            .await
            .expect("consumer task")
            .expect("consumer run");
        (report, self.out.lines())
    }
}

fn spawn_consumer(options: Options) -> Running {
    let out = SharedBuf::default();
    let shutdown = CancellationToken::new();
    let (tx, subscribed) = watch::channel(0);
    let control = Control {
        shutdown: shutdown.clone(),
        subscribed: Some(tx),
    };
    let task = tokio::spawn(consumer::run_with(options, out.clone(), control));
    Running {
        out,
        shutdown,
        subscribed,
        task,
    }
}

/// Publishes and waits until the publish is acknowledged (QoS 1) so that ordering is certain.
async fn publish(port: u16, topic: &str, payload: &[u8], retain: bool) {
    let mut mqtt = MqttOptions::new(
        format!("test-pub-{:08x}", rand::random::<u32>()),
        "127.0.0.1",
        port,
    );
    mqtt.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(mqtt, 10);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
        .await
        .unwrap();
    within("PUBACK", async {
        loop {
            if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.unwrap() {
                break;
            }
        }
    })
    .await;
    client.disconnect().await.unwrap();
    within("DISCONNECT", async {
        while !matches!(
            eventloop.poll().await,
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)
        ) {}
    })
    .await;
}

#[tokio::test]
async fn prints_connected_then_each_payload() {
    let (port, _broker) = start_broker();
    let mut c = spawn_consumer(options(port, &["-C", "2"]));
    c.subscribed(1).await;
    publish(port, "/data", b"Device 1 : Data 0", false).await;
    publish(port, "/data", b"Device 1 : Data 1", false).await;
    let (report, lines) = c.finish().await;
    assert_eq!(
        lines,
        [
            "Connected with result code 0",
            "Device 1 : Data 0",
            "Device 1 : Data 1"
        ]
    );
    assert_eq!(report.end, End::CountReached);
    assert_eq!((report.received, report.exit_code()), (2, 0));
}

#[tokio::test]
async fn verbose_prints_topic_and_several_topics_work() {
    let (port, _broker) = start_broker();
    let mut c = spawn_consumer(options(port, &["-v", "-t", "a/+", "-t", "b", "-C", "2"]));
    c.subscribed(1).await;
    publish(port, "a/x", b"one", false).await;
    publish(port, "c", b"not subscribed", false).await;
    publish(port, "b", b"two words", false).await;
    let (_, lines) = c.finish().await;
    assert_eq!(
        lines,
        ["Connected with result code 0", "a/x one", "b two words"]
    );
}

#[tokio::test]
async fn json_format_base64_for_binary_payloads() {
    let (port, _broker) = start_broker();
    publish(port, "/data", b"kept", true).await;
    let mut c = spawn_consumer(options(port, &["--format", "json", "-q", "1", "-C", "3"]));
    c.subscribed(1).await;
    publish(port, "/data", &[0xff, 0x00, 0xfe], false).await;
    publish(port, "/data", "héllo".as_bytes(), false).await;
    let (_, lines) = c.finish().await;
    assert_eq!(lines[0], "Connected with result code 0");
    let msgs: Vec<serde_json::Value> = lines[1..]
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0]["payload"], "kept");
    assert_eq!(msgs[0]["retain"], true);
    assert_eq!(msgs[1]["encoding"], "base64");
    assert_eq!(msgs[1]["payload"], "/wD+");
    assert_eq!(msgs[1]["retain"], false);
    assert_eq!(msgs[2]["encoding"], "utf8");
    assert_eq!(msgs[2]["payload"], "héllo");
    for m in &msgs {
        assert_eq!(m["topic"], "/data");
        assert_eq!(m["qos"], 1);
        let received = m["received"].as_str().unwrap();
        humantime::parse_rfc3339(received).expect("RFC 3339 receive time");
    }
}

#[tokio::test]
async fn timeout_ends_with_status_27() {
    let (port, _broker) = start_broker();
    let start = Instant::now();
    let c = spawn_consumer(options(port, &["-W", "0.5"]));
    let (report, lines) = c.finish().await;
    assert_eq!(report.end, End::TimedOut);
    assert_eq!(report.exit_code(), 27);
    assert_eq!(lines, ["Connected with result code 0"]);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn shutdown_disconnects() {
    let (port, _broker) = start_broker();
    let mut c = spawn_consumer(options(port, &[]));
    c.subscribed(1).await;
    c.shutdown.cancel();
    let (report, _) = c.finish().await;
    assert_eq!(report.end, End::Interrupted);
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test]
async fn reconnects_and_resubscribes_when_the_broker_restarts() {
    let (port, broker) = start_broker();
    let mut c = spawn_consumer(options(port, &["-C", "1"]));
    c.subscribed(1).await;
    drop(broker);
    let _broker = start_broker_on(port);
    c.subscribed(2).await;
    publish(port, "/data", b"after restart", false).await;
    let (report, lines) = c.finish().await;
    assert_eq!(
        lines,
        [
            "Connected with result code 0",
            "Connected with result code 0",
            "after restart"
        ]
    );
    assert_eq!(report.connects, 2);
}

#[tokio::test]
async fn persistent_session_receives_what_was_sent_while_away() {
    let (port, _broker) = start_broker();
    let id = format!("persistent-{:08x}", rand::random::<u32>());
    let args = ["-c", "-i", id.as_str(), "-q", "1"];
    let mut first = spawn_consumer(options(port, &args));
    first.subscribed(1).await;
    first.shutdown.cancel();
    first.finish().await;

    publish(port, "/data", b"queued while away", false).await;

    let mut args = args.to_vec();
    args.extend(["-C", "1"]);
    let (report, lines) = spawn_consumer(options(port, &args)).finish().await;
    assert_eq!(lines, ["Connected with result code 0", "queued while away"]);
    assert_eq!(report.end, End::CountReached);
}
