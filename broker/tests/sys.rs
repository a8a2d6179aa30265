//! `$SYS/broker/...`: what a `$SYS/#` subscriber sees, that the counters
//! move, that `#` never matches it, and that `sys_interval 0` turns it off.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use broker::codec::{Packet, QoS};
use broker::Config;
use common::*;

const INTERVAL: Duration = Duration::from_millis(200);

async fn broker(interval: Duration) -> TestBroker {
    TestBroker::with_config(Config {
        sys_interval: interval,
        ..Config::default()
    })
    .await
}

/// Collects `$SYS` publishes (latest payload per topic) until `done` holds
/// for them, failing after [`TIMEOUT`].
async fn until(
    c: &mut Raw,
    seen: &mut HashMap<String, String>,
    mut done: impl FnMut(&mut HashMap<String, String>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !done(seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.recv_within(left).await {
            Ok(Some(Packet::Publish(p))) => {
                let payload = String::from_utf8(p.payload.to_vec()).expect("UTF-8 payload");
                seen.insert(p.topic.to_string(), payload);
            }
            Ok(Some(other)) => panic!("expected PUBLISH, got {other:?}"),
            Ok(None) => panic!("broker closed the connection"),
            Err(()) => panic!("timed out; $SYS seen so far: {seen:#?}"),
        }
    }
}

fn number(seen: &HashMap<String, String>, topic: &str) -> Option<u64> {
    seen.get(topic).and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn sys_subscriber_sees_the_broker_topics() {
    let b = broker(INTERVAL).await;
    let mut c = Raw::connect(b.addr, "sys-watcher", true).await;
    c.subscribe(1, &[("$SYS/#", QoS::AtMostOnce)]).await;
    let mut seen = HashMap::new();
    until(&mut c, &mut seen, |s| {
        number(s, "$SYS/broker/clients/connected").is_some_and(|n| n >= 1)
            && s.contains_key("$SYS/broker/version")
            && s.contains_key("$SYS/broker/uptime")
            && number(s, "$SYS/broker/clients/total").is_some_and(|n| n >= 1)
            && number(s, "$SYS/broker/subscriptions/count").is_some_and(|n| n >= 1)
            && s.contains_key("$SYS/broker/load/bytes/received/15min")
            // Last of each update.
            && s.contains_key("$SYS/broker/time")
    })
    .await;

    let version = &seen["$SYS/broker/version"];
    assert!(version.starts_with("broker version "), "{version}");
    let uptime = &seen["$SYS/broker/uptime"];
    let secs = uptime
        .strip_suffix(" seconds")
        .and_then(|n| n.parse::<u64>().ok());
    assert!(secs.is_some_and(|s| s < 60), "{uptime}");
    assert!(
        seen.contains_key("$SYS/broker/retained messages/count"),
        "{seen:#?}"
    );
    // Failures an operator must be able to see.
    assert_eq!(number(&seen, "$SYS/broker/store/write_errors"), Some(0));
    assert!(number(&seen, "$SYS/broker/log/lines/dropped").is_some());
    let load = &seen["$SYS/broker/load/bytes/received/15min"];
    assert!(load.parse::<f64>().is_ok() && load.contains('.'), "{load}");
    let time = &seen["$SYS/broker/time"];
    assert!(time.len() == 20 && time.ends_with('Z'), "{time}");
    b.stop().await;
}

#[tokio::test]
async fn counters_move_after_publishes() {
    let b = broker(INTERVAL).await;
    let mut c = Raw::connect(b.addr, "sys-watcher", true).await;
    c.subscribe(1, &[("$SYS/broker/#", QoS::AtMostOnce)]).await;
    let mut seen = HashMap::new();
    until(&mut c, &mut seen, |s| {
        s.contains_key("$SYS/broker/publish/messages/received")
    })
    .await;
    let before = number(&seen, "$SYS/broker/bytes/received").unwrap_or(0);

    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    for i in 1..=3 {
        publisher
            .publish("t", b"hello", QoS::AtLeastOnce, false, i)
            .await;
        let p = sub.recv_publish().await;
        sub.send(&Packet::PubAck(p.pkid)).await;
    }
    publisher
        .publish("kept", b"x", QoS::AtMostOnce, true, 0)
        .await;

    until(&mut c, &mut seen, |s| {
        number(s, "$SYS/broker/publish/messages/received").is_some_and(|n| n >= 4)
            && number(s, "$SYS/broker/publish/messages/sent").is_some_and(|n| n >= 3)
            && number(s, "$SYS/broker/clients/connected").is_some_and(|n| n >= 3)
            && number(s, "$SYS/broker/clients/maximum").is_some_and(|n| n >= 3)
            && number(s, "$SYS/broker/bytes/received").is_some_and(|n| n > before)
            && number(s, "$SYS/broker/messages/received").is_some_and(|n| n >= 10)
            && number(s, "$SYS/broker/subscriptions/count").is_some_and(|n| n >= 2)
            && s.get("$SYS/broker/load/publish/received/1min")
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
    })
    .await;

    // A client leaving shows up too.
    drop(publisher);
    until(&mut c, &mut seen, |s| {
        number(s, "$SYS/broker/clients/connected") == Some(2)
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn wildcards_never_match_sys() {
    // [MQTT-4.7.2-1]: `#` and `+/...` do not match topics starting with `$`.
    let b = broker(INTERVAL).await;
    let mut all = Raw::connect(b.addr, "all", true).await;
    all.subscribe(
        1,
        &[("#", QoS::AtMostOnce), ("+/broker/#", QoS::AtMostOnce)],
    )
    .await;
    let mut sys = Raw::connect(b.addr, "sys", true).await;
    sys.subscribe(1, &[("$SYS/#", QoS::AtMostOnce)]).await;
    // The $SYS task runs: the other subscriber gets several updates...
    let mut seen = HashMap::new();
    let mut uptimes = 0;
    until(&mut sys, &mut seen, |s| {
        if s.remove("$SYS/broker/uptime").is_some() {
            uptimes += 1;
        }
        uptimes >= 3
    })
    .await;
    // ...and the wildcard subscriber, retained ones included, none.
    all.expect_quiet().await;
    let mut late = Raw::connect(b.addr, "late", true).await;
    late.subscribe(1, &[("#", QoS::AtMostOnce)]).await;
    late.expect_quiet().await;
    b.stop().await;
}

#[tokio::test]
async fn sys_interval_zero_publishes_nothing() {
    let b = broker(Duration::ZERO).await;
    let mut c = Raw::connect(b.addr, "sys-watcher", true).await;
    c.subscribe(1, &[("$SYS/#", QoS::AtMostOnce)]).await;
    match c.recv_within(INTERVAL * 4).await {
        Err(()) => {}
        Ok(p) => panic!("expected nothing, got {p:?}"),
    }
    b.stop().await;
}
