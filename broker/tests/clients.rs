//! Interoperability with real client libraries and tools: rumqttc in
//! process, and Mosquitto's `mosquitto_pub`/`mosquitto_sub` as processes.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::process::Command;

fn options(b: &TestBroker, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, b.addr.ip().to_string(), b.addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Polls the event loop until `want` returns Some, with a timeout.
async fn until<T>(ev: &mut EventLoop, mut want: impl FnMut(&Packet) -> Option<T>) -> T {
    tokio::time::timeout(TIMEOUT, async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(p)) => {
                    if let Some(t) = want(&p) {
                        return t;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("connection error: {e}"),
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

/// Drives an event loop in the background, forwarding incoming publishes.
fn drive(mut ev: EventLoop) -> tokio::sync::mpsc::Receiver<rumqttc::Publish> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        while let Ok(event) = ev.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                if tx.send(p).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Client "sub", subscribed to `filter` (the SUBACK has arrived), and the
/// publishes it receives. Keep the client: dropping it ends its event loop.
async fn subscriber(
    b: &TestBroker,
    filter: &str,
    qos: QoS,
) -> (AsyncClient, tokio::sync::mpsc::Receiver<rumqttc::Publish>) {
    let (sub, mut ev) = AsyncClient::new(options(b, "sub"), 64);
    sub.subscribe(filter, qos).await.unwrap();
    until(&mut ev, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    (sub, drive(ev))
}

/// Client "pub", its event loop driven in the background.
fn publisher(b: &TestBroker) -> (AsyncClient, tokio::sync::mpsc::Receiver<rumqttc::Publish>) {
    let (publisher, ev) = AsyncClient::new(options(b, "pub"), 64);
    (publisher, drive(ev))
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<rumqttc::Publish>) -> rumqttc::Publish {
    tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .expect("timed out waiting for a publish")
        .expect("event loop ended")
}

#[tokio::test]
async fn rumqttc_publish_subscribe_all_qos() {
    let b = TestBroker::start().await;
    let (_sub, mut rx) = subscriber(&b, "sensors/+/temp", QoS::ExactlyOnce).await;
    let (publisher, _pub_rx) = publisher(&b);
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publisher
            .publish(format!("sensors/{i}/temp"), qos, false, format!("{i}"))
            .await
            .unwrap();
        let p = next(&mut rx).await;
        assert_eq!(p.topic, format!("sensors/{i}/temp"));
        assert_eq!(p.qos, qos);
        assert_eq!(&p.payload[..], format!("{i}").as_bytes());
    }
}

#[tokio::test]
async fn rumqttc_many_messages_in_order() {
    // 1000 = the default queue limit: however far the publisher runs ahead
    // of the subscriber, nothing is dropped.
    let b = TestBroker::start().await;
    let (_sub, mut rx) = subscriber(&b, "t", QoS::AtLeastOnce).await;
    let (publisher, _pub_rx) = publisher(&b);
    tokio::spawn(async move {
        for i in 0..1000u32 {
            publisher
                .publish("t", QoS::AtLeastOnce, false, i.to_be_bytes().to_vec())
                .await
                .unwrap();
        }
    });
    for i in 0..1000u32 {
        let p = next(&mut rx).await;
        assert_eq!(&p.payload[..], &i.to_be_bytes());
    }
}

#[tokio::test]
async fn rumqttc_will_and_retained() {
    let b = TestBroker::start().await;
    let mut o = options(&b, "dying");
    o.set_last_will(LastWill::new(
        "status/dying",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (dying, mut ev) = AsyncClient::new(o, 8);
    until(&mut ev, |p| matches!(p, Packet::ConnAck(_)).then_some(())).await;
    drop(dying);
    drop(ev); // the socket closes without DISCONNECT

    let (sub, mut sub_ev) = AsyncClient::new(options(&b, "sub"), 8);
    sub.subscribe("status/#", QoS::AtLeastOnce).await.unwrap();
    let p = until(&mut sub_ev, |p| match p {
        Packet::Publish(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(p.topic, "status/dying");
    assert_eq!(&p.payload[..], b"offline");
    assert!(p.retain);
}

#[tokio::test]
async fn rumqttc_persistent_session_receives_offline_messages() {
    let b = TestBroker::start().await;
    let mut o = options(&b, "persistent");
    o.set_clean_session(false);
    let (c, mut ev) = AsyncClient::new(o.clone(), 8);
    c.subscribe("q", QoS::AtLeastOnce).await.unwrap();
    until(&mut ev, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    c.disconnect().await.unwrap();
    let _ = tokio::time::timeout(TIMEOUT, async { while ev.poll().await.is_ok() {} }).await;

    let (publisher, mut pev) = AsyncClient::new(options(&b, "pub"), 8);
    publisher
        .publish("q", QoS::AtLeastOnce, false, "while away")
        .await
        .unwrap();
    until(&mut pev, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;

    let (_c, mut ev) = AsyncClient::new(o, 8);
    let present = until(&mut ev, |p| match p {
        Packet::ConnAck(a) => Some(a.session_present),
        _ => None,
    })
    .await;
    assert!(present);
    let p = until(&mut ev, |p| match p {
        Packet::Publish(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(&p.payload[..], b"while away");
}

async fn mosquitto(cmd: &str, args: &[&str]) -> std::process::Output {
    let child = Command::new(cmd)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{cmd} must be installed (apt-get install mosquitto-clients): {e}")
        });
    tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{cmd} {args:?} timed out"))
        .unwrap()
}

#[tokio::test]
async fn mosquitto_clients_interoperate() {
    let b = TestBroker::start().await;
    let port = b.addr.port().to_string();
    let p = port.as_str();
    for (qos, version) in [("0", "mqttv311"), ("1", "mqttv31"), ("2", "mqttv311")] {
        let sub = tokio::spawn({
            let port = port.clone();
            let version = version.to_owned();
            let qos = qos.to_owned();
            async move {
                mosquitto(
                    "mosquitto_sub",
                    &[
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port,
                        "-V",
                        &version,
                        "-q",
                        &qos,
                        "-t",
                        "m/#",
                        "-v",
                        "-C",
                        "2",
                        "-W",
                        "8",
                    ],
                )
                .await
            }
        });
        // Publish until the subscriber is surely subscribed: it exits after
        // two messages, so retry the first publish a few times.
        let mut done = false;
        for _ in 0..40 {
            let out = mosquitto(
                "mosquitto_pub",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    p,
                    "-V",
                    version,
                    "-q",
                    qos,
                    "-t",
                    "m/a",
                    "-m",
                    "hello",
                ],
            )
            .await;
            assert!(out.status.success(), "mosquitto_pub failed: {out:?}");
            if sub.is_finished() {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(done, "mosquitto_sub did not get two messages");
        let out = sub.await.unwrap();
        assert!(out.status.success(), "mosquitto_sub failed: {out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout, "m/a hello\nm/a hello\n", "qos {qos} {version}");
    }

    // Retained messages with mosquitto_pub -r.
    let out = mosquitto(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            p,
            "-q",
            "1",
            "-r",
            "-t",
            "r/x",
            "-m",
            "kept",
        ],
    )
    .await;
    assert!(out.status.success());
    let out = mosquitto(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            p,
            "-t",
            "r/#",
            "-v",
            "-C",
            "1",
            "-W",
            "5",
        ],
    )
    .await;
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "r/x kept\n");
}
