//! Regression tests for bugs a review found: each failed before its fix.

mod common;

use std::time::Duration;

use broker::auth::{HashKind, PasswordHash};
use broker::codec::{Packet, QoS};
use broker::session::Limits;
use broker::Config;
use common::*;

fn password_line(user: &str, password: &str) -> String {
    format!(
        "{user}:{}\n",
        PasswordHash::new(HashKind::Sha512Pbkdf2, 101, password.as_bytes())
    )
}

fn login(id: &str, user: &str, password: &'static [u8]) -> broker::codec::Connect {
    let mut c = connect_packet(id, true);
    c.username = Some(user.into());
    c.password = Some(bytes::Bytes::from_static(password));
    c
}

#[tokio::test]
async fn a_will_obeys_the_write_acl() {
    // Bob may only read sensors/+/temp; his will there must not go out
    // (nor become a retained message), as his PUBLISH does not.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    std::fs::write(
        &pw,
        password_line("alice", "a") + &password_line("bob", "b"),
    )
    .unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite sensors/#\nuser bob\ntopic read sensors/+/temp\n",
    )
    .unwrap();
    let b = TestBroker::with_config(Config {
        allow_anonymous: false,
        password_file: Some(pw),
        acl_file: Some(acl),
        ..Config::default()
    })
    .await;
    let (mut alice, _) = Raw::connect_with(b.addr, login("alice", "alice", b"a")).await;
    alice.subscribe(1, &[("sensors/#", QoS::AtMostOnce)]).await;
    let will = with_will(
        login("bob", "bob", b"b"),
        "sensors/1/temp",
        b"forged",
        QoS::AtMostOnce,
        true,
    );
    let (bob, _) = Raw::connect_with(b.addr, will).await;
    drop(bob);
    alice.expect_quiet().await;
}

#[tokio::test]
async fn queued_bytes_stay_right_when_qos0_is_discarded_on_disconnect() {
    let config = Config {
        limits: Limits {
            max_inflight: 1,
            max_queued_bytes: 100,
            ..Limits::default()
        },
        ..Config::default()
    };
    let b = TestBroker::with_config(config).await;
    let mut sub = Raw::connect(b.addr, "sub", false).await;
    sub.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("t", b"first", QoS::AtLeastOnce, false, 1)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"first");
    publisher
        .publish("t", b"second", QoS::AtLeastOnce, false, 2)
        .await;
    publisher
        .publish("t", &[b'x'; 40], QoS::AtMostOnce, false, 0)
        .await;
    publisher
        .publish("t", &[b'y'; 40], QoS::AtMostOnce, false, 0)
        .await;
    publisher.send(&Packet::PingReq).await;
    assert_eq!(publisher.recv().await, Some(Packet::PingResp));
    drop(sub);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut sub, present) = Raw::connect_with(b.addr, connect_packet("sub", false)).await;
    assert!(present);
    let p = sub.recv_publish().await;
    assert!(p.dup);
    sub.ack(&p).await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"second");
    sub.ack(&p).await;
    // The queue is empty: a 30-byte message fits the 100-byte limit.
    publisher
        .publish("t", &[b'z'; 30], QoS::AtLeastOnce, false, 3)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], &[b'z'; 30]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_discarded_by_a_clean_takeover_stays_discarded_after_restart() {
    // [MQTT-3.1.2-6]: the old connection, still busy with a burst of QoS 2
    // publishes, must not write the discarded session back to the store.
    let dir = tempfile::tempdir().unwrap();
    let config = || Config {
        persistence: true,
        persistence_location: dir.path().to_owned(),
        ..Config::default()
    };
    for round in 0..3u64 {
        let b = TestBroker::with_config(config()).await;
        let mut old = Raw::connect(b.addr, "z", false).await;
        let mut burst = bytes::BytesMut::new();
        for pkid in 1..=20_000u16 {
            broker::codec::encode(
                &publish_packet("t", b"x", QoS::ExactlyOnce, false, pkid),
                &mut burst,
            )
            .unwrap();
        }
        let writer = tokio::spawn(async move {
            old.send_bytes(&burst).await;
            old
        });
        tokio::time::sleep(Duration::from_micros(200 * round)).await;
        let mut new = Raw::connect(b.addr, "z", true).await;
        new.send(&Packet::Disconnect).await;
        let _old = writer.await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.stop().await;

        let b = TestBroker::with_config(config()).await;
        let (mut c, present) = Raw::connect_with(b.addr, connect_packet("z", false)).await;
        assert!(!present, "round {round}: the discarded session came back");
        c.send(&Packet::Disconnect).await;
        // Leave no session for the next round.
        let (mut c, _) = Raw::connect_with(b.addr, connect_packet("z", true)).await;
        c.send(&Packet::Disconnect).await;
        b.stop().await;
    }
}
