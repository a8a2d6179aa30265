//! Durable state across restarts: retained messages, persistent sessions,
//! queued and in-flight messages, and SIGKILL at a random moment.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use broker::codec::{Packet, QoS};
use broker::Config;
use common::*;

fn config(dir: &Path) -> Config {
    Config {
        persistence: true,
        persistence_location: dir.to_owned(),
        ..Config::default()
    }
}

async fn restart(b: TestBroker, dir: &Path) -> TestBroker {
    b.stop().await;
    TestBroker::with_config(config(dir)).await
}

#[tokio::test]
async fn retained_messages_survive_restart_and_clearing_does_too() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::with_config(config(dir.path())).await;
    let mut p = Raw::connect(b.addr, "pub", true).await;
    p.publish("r/kept", b"1", QoS::AtLeastOnce, true, 1).await;
    p.publish("r/cleared", b"2", QoS::AtLeastOnce, true, 2)
        .await;
    p.publish("r/cleared", b"", QoS::AtLeastOnce, true, 3).await;
    p.publish("r/q2", b"3", QoS::ExactlyOnce, true, 4).await;
    drop(p);
    let b = restart(b, dir.path()).await;
    let mut s = Raw::connect(b.addr, "sub", true).await;
    s.subscribe(1, &[("r/#", QoS::ExactlyOnce)]).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = s.recv_publish().await;
        assert!(m.retain);
        got.push((m.topic.to_string(), m.payload.to_vec(), m.qos));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("r/kept".into(), b"1".to_vec(), QoS::AtLeastOnce),
            ("r/q2".into(), b"3".to_vec(), QoS::ExactlyOnce)
        ]
    );
    s.expect_quiet().await;
}

#[tokio::test]
async fn persistent_session_subscriptions_and_queue_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::with_config(config(dir.path())).await;
    let mut c = Raw::connect(b.addr, "p", false).await;
    c.subscribe(1, &[("t/#", QoS::ExactlyOnce)]).await;
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;
    let mut p = Raw::connect(b.addr, "pub", true).await;
    for i in 0..5u8 {
        p.publish("t/a", &[i], QoS::AtLeastOnce, false, 1).await;
    }
    drop(p);
    let b = restart(b, dir.path()).await;

    let mut p = Raw::connect(b.addr, "pub", true).await;
    p.publish("t/b", b"after", QoS::ExactlyOnce, false, 1).await;
    let (mut c, present) = Raw::connect_with(b.addr, connect_packet("p", false)).await;
    assert!(present, "[MQTT-3.2.2-2] the session came back from disk");
    for i in 0..5u8 {
        let m = c.recv_publish().await;
        assert_eq!((&m.payload[..], m.qos), (&[i][..], QoS::AtLeastOnce));
        c.send(&Packet::PubAck(m.pkid)).await;
    }
    let m = c.recv_publish().await;
    assert_eq!((&m.payload[..], m.qos), (&b"after"[..], QoS::ExactlyOnce));
    c.ack(&m).await;
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;

    // Everything acknowledged is gone from the store.
    let b = restart(b, dir.path()).await;
    let (mut c, present) = Raw::connect_with(b.addr, connect_packet("p", false)).await;
    assert!(present);
    c.expect_quiet().await;
}

#[tokio::test]
async fn inflight_messages_resume_at_their_stage_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::with_config(config(dir.path())).await;
    let mut c = Raw::connect(b.addr, "p", false).await;
    c.subscribe(1, &[("q1", QoS::AtLeastOnce), ("q2", QoS::ExactlyOnce)])
        .await;
    let mut p = Raw::connect(b.addr, "pub", true).await;
    p.publish("q1", b"a", QoS::AtLeastOnce, false, 1).await;
    p.publish("q2", b"b", QoS::ExactlyOnce, false, 2).await;
    p.publish("q2", b"c", QoS::ExactlyOnce, false, 3).await;
    let a = c.recv_publish().await;
    let bb = c.recv_publish().await;
    let cc = c.recv_publish().await;
    // "c" reaches the PUBREL stage; "a" and "b" stay unacknowledged.
    c.send(&Packet::PubRec(cc.pkid)).await;
    assert_eq!(c.recv().await, Some(Packet::PubRel(cc.pkid)));
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    drop(c);
    drop(p);
    let b = restart(b, dir.path()).await;

    // [MQTT-4.4.0-1]: re-sent with their original packet ids.
    let (mut c, present) = Raw::connect_with(b.addr, connect_packet("p", false)).await;
    assert!(present);
    let m = c.recv_publish().await;
    assert_eq!((m.pkid, m.dup, &m.payload[..]), (a.pkid, true, &b"a"[..]));
    let m = c.recv_publish().await;
    assert_eq!((m.pkid, m.dup, &m.payload[..]), (bb.pkid, true, &b"b"[..]));
    assert_eq!(c.recv().await, Some(Packet::PubRel(cc.pkid)));
}

#[tokio::test]
async fn inbound_qos2_awaiting_pubrel_survives_restart() {
    // [MQTT-4.3.3-2]: exactly once across a broker restart.
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::with_config(config(dir.path())).await;
    let mut s = Raw::connect(b.addr, "sub", false).await;
    s.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    let mut p = Raw::connect(b.addr, "pub", false).await;
    p.send(&publish_packet("t", b"once", QoS::ExactlyOnce, false, 5))
        .await;
    assert_eq!(p.recv().await, Some(Packet::PubRec(5)));
    let m = s.recv_publish().await;
    s.send(&Packet::PubAck(m.pkid)).await;
    s.send(&Packet::PingReq).await;
    assert_eq!(s.recv().await, Some(Packet::PingResp));
    drop(p);
    drop(s);
    let b = restart(b, dir.path()).await;

    let mut s = Raw::connect_with(b.addr, connect_packet("sub", false))
        .await
        .0;
    let (mut p, present) = Raw::connect_with(b.addr, connect_packet("pub", false)).await;
    assert!(present);
    let mut dup = publish_packet("t", b"once", QoS::ExactlyOnce, false, 5);
    if let Packet::Publish(m) = &mut dup {
        m.dup = true;
    }
    p.send(&dup).await;
    assert_eq!(p.recv().await, Some(Packet::PubRec(5)));
    p.send(&Packet::PubRel(5)).await;
    assert_eq!(p.recv().await, Some(Packet::PubComp(5)));
    s.expect_quiet().await;
}

#[tokio::test]
async fn clean_session_discards_the_stored_session() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::with_config(config(dir.path())).await;
    let mut c = Raw::connect(b.addr, "p", false).await;
    c.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    drop(c);
    let mut c = Raw::connect(b.addr, "p", true).await;
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;
    let b = restart(b, dir.path()).await;
    let (_c, present) = Raw::connect_with(b.addr, connect_packet("p", false)).await;
    assert!(!present);
}

#[tokio::test]
async fn without_persistence_nothing_touches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        persistence: false,
        persistence_location: dir.path().to_owned(),
        ..Config::default()
    };
    let b = TestBroker::with_config(config).await;
    let mut p = Raw::connect(b.addr, "pub", false).await;
    p.publish("r", b"x", QoS::AtLeastOnce, true, 1).await;
    b.stop().await;
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn relaxed_durability_acknowledges_and_still_persists() {
    let dir = tempfile::tempdir().unwrap();
    let relaxed = Config {
        persistence_sync_interval: Duration::from_millis(50),
        ..config(dir.path())
    };
    let b = TestBroker::with_config(relaxed).await;
    let mut p = Raw::connect(b.addr, "pub", true).await;
    for i in 0..50u16 {
        p.publish(&format!("r/{i}"), b"x", QoS::AtLeastOnce, true, i + 1)
            .await;
    }
    drop(p);
    // A clean stop flushes whatever the interval had not yet synced.
    let b = restart(b, dir.path()).await;
    let mut s = Raw::connect(b.addr, "sub", true).await;
    s.subscribe(1, &[("r/#", QoS::AtMostOnce)]).await;
    for _ in 0..50 {
        s.recv_publish().await;
    }
    s.expect_quiet().await;
}

// ---- the real binary, killed hard ----

async fn start_binary(dir: &Path, port: u16) -> Proc {
    let config = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}\nlog_dest none\nmax_queued_messages 100000\n",
        dir.join("data").display()
    );
    Proc::with_config(dir, &config, port).await
}

/// Pseudo-random delay without a dependency: the clock's nanoseconds.
fn random_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos % max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_acknowledged() {
    for round in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut broker = start_binary(dir.path(), port).await;
        // A persistent session whose queue receives the messages.
        let mut c = Raw::connect(addr, "queue", false).await;
        c.subscribe(1, &[("q/#", QoS::AtLeastOnce)]).await;
        c.send(&Packet::Disconnect).await;
        c.expect_closed().await;

        // Publish QoS 1 messages, retained and queued, pipelined in
        // windows; record every PUBACK received; SIGKILL at a random moment.
        let kill_after = Duration::from_millis(50 + random_ms(400));
        let mut p = Raw::connect(addr, "pub", true).await;
        let mut acked = Vec::new();
        let start = Instant::now();
        let mut next = 1u16;
        let mut killed = false;
        'outer: while next < 60_000 {
            for _ in 0..20 {
                let topic = if next.is_multiple_of(2) {
                    format!("r/{next}")
                } else {
                    format!("q/{next}")
                };
                p.send(&publish_packet(
                    &topic,
                    &next.to_be_bytes(),
                    QoS::AtLeastOnce,
                    next.is_multiple_of(2),
                    next,
                ))
                .await;
                next += 1;
            }
            if !killed && start.elapsed() >= kill_after {
                broker.0.kill().unwrap();
                broker.0.wait().unwrap();
                killed = true;
            }
            for _ in 0..20 {
                match p.recv_within(TIMEOUT).await {
                    Ok(Some(Packet::PubAck(id))) => acked.push(id),
                    Ok(None) => break 'outer,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(killed, "round {round}: the broker was never killed");
        drop(broker);

        let _broker = start_binary(dir.path(), port).await;
        let mut retained = std::collections::HashSet::new();
        let mut s = Raw::connect(addr, "check", true).await;
        s.subscribe(1, &[("r/#", QoS::AtMostOnce)]).await;
        while let Ok(Some(Packet::Publish(m))) = s.recv_within(Duration::from_millis(500)).await {
            retained.insert(u16::from_be_bytes([m.payload[0], m.payload[1]]));
        }
        let mut queued = std::collections::HashSet::new();
        let (mut c, present) = Raw::connect_with(addr, connect_packet("queue", false)).await;
        assert!(present);
        while let Ok(Some(Packet::Publish(m))) = c.recv_within(Duration::from_millis(500)).await {
            queued.insert(u16::from_be_bytes([m.payload[0], m.payload[1]]));
            c.send(&Packet::PubAck(m.pkid)).await;
        }
        let mut missing = Vec::new();
        for id in &acked {
            let found = if id % 2 == 0 {
                retained.contains(id)
            } else {
                queued.contains(id)
            };
            if !found {
                missing.push(*id);
            }
        }
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} acknowledged messages lost, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(10)]
        );
        assert!(
            !acked.is_empty(),
            "round {round}: nothing was acknowledged before the kill"
        );
    }
}

#[tokio::test]
async fn corrupt_store_is_moved_aside_and_the_broker_starts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let broker = start_binary(dir.path(), port).await;
    let mut p = Raw::connect(addr, "pub", true).await;
    p.publish("r/x", b"x", QoS::AtLeastOnce, true, 1).await;
    drop(p);
    drop(broker);
    // Scribble over every file of the store and truncate some.
    let store = dir.path().join("data").join("mosquitto.db");
    let mut n = 0;
    for entry in walk(&store) {
        let len = std::fs::metadata(&entry).unwrap().len();
        std::fs::write(&entry, vec![0xa5; (len / 2) as usize]).unwrap();
        n += 1;
    }
    assert!(n > 0, "the store has files");
    let _broker = start_binary(dir.path(), port).await;
    let mut c = Raw::connect(addr, "c", true).await;
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    let aside: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("mosquitto.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside, not deleted");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn persistent_sessions_expire_from_memory_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let expiring = Config {
        persistent_client_expiration: Some(Duration::from_secs(1)),
        ..config(dir.path())
    };
    let b = TestBroker::with_config(expiring).await;
    let mut c = Raw::connect(b.addr, "old", false).await;
    c.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;
    // Away for longer than the expiration (whole seconds) plus one check
    // period (1 s).
    tokio::time::sleep(Duration::from_millis(3200)).await;
    b.stop().await;
    let b = TestBroker::with_config(config(dir.path())).await;
    let (_c, present) = Raw::connect_with(b.addr, connect_packet("old", false)).await;
    assert!(!present, "the expired session is gone from the store");
}
