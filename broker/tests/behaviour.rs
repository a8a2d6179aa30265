//! Behaviour of chapters 3 and 4 of MQTT 3.1.1 over raw connections:
//! QoS flows, retained messages, wills, keepalive, takeover, persistent
//! sessions, overlapping subscriptions, flow control.

mod common;

use std::time::{Duration, Instant};

use broker::codec::{Packet, QoS, SubackCode};
use common::*;

#[tokio::test]
async fn delivery_at_minimum_of_published_and_granted_qos() {
    // [MQTT-3.8.4-6]: granted QoS may be lower; delivery at the minimum.
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    let codes = sub
        .subscribe(1, &[("q0", QoS::AtMostOnce), ("q2", QoS::ExactlyOnce)])
        .await;
    assert_eq!(
        codes,
        vec![
            SubackCode::Success(QoS::AtMostOnce),
            SubackCode::Success(QoS::ExactlyOnce)
        ]
    );
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("q0", b"a", QoS::ExactlyOnce, false, 1)
        .await;
    publisher
        .publish("q2", b"b", QoS::AtLeastOnce, false, 2)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!((p.topic.as_str(), p.qos), ("q0", QoS::AtMostOnce));
    let p = sub.recv_publish().await;
    assert_eq!((p.topic.as_str(), p.qos), ("q2", QoS::AtLeastOnce));
    // Outbound packet ids start at 1 for each client.
    assert_eq!(p.pkid, 1);
    sub.send(&Packet::PubAck(p.pkid)).await;
}

#[tokio::test]
async fn qos2_outbound_handshake() {
    // [MQTT-4.3.3-1]: PUBLISH, PUBREC, PUBREL, PUBCOMP.
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("t", QoS::ExactlyOnce)]).await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("t", b"x", QoS::ExactlyOnce, false, 5)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(p.qos, QoS::ExactlyOnce);
    sub.ack(&p).await;
    sub.expect_quiet().await;
}

#[tokio::test]
async fn qos2_resent_publish_is_not_delivered_twice() {
    // [MQTT-4.3.3-2]: exactly once, even when the publisher re-sends the
    // PUBLISH (DUP) before PUBREL.
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("t", QoS::AtMostOnce)]).await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .send(&publish_packet("t", b"once", QoS::ExactlyOnce, false, 7))
        .await;
    assert_eq!(publisher.recv().await, Some(Packet::PubRec(7)));
    let mut dup = publish_packet("t", b"once", QoS::ExactlyOnce, false, 7);
    if let Packet::Publish(p) = &mut dup {
        p.dup = true;
    }
    publisher.send(&dup).await;
    assert_eq!(publisher.recv().await, Some(Packet::PubRec(7)));
    publisher.send(&Packet::PubRel(7)).await;
    assert_eq!(publisher.recv().await, Some(Packet::PubComp(7)));
    assert_eq!(&sub.recv_publish().await.payload[..], b"once");
    sub.expect_quiet().await;
    // After PUBREL the id is free again: a new message with it is new.
    publisher
        .publish("t", b"again", QoS::ExactlyOnce, false, 7)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"again");
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy_at_highest_qos() {
    // [MQTT-3.3.5-1]
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(
        1,
        &[
            ("a/+", QoS::AtMostOnce),
            ("a/#", QoS::ExactlyOnce),
            ("a/b", QoS::AtLeastOnce),
        ],
    )
    .await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("a/b", b"x", QoS::ExactlyOnce, false, 1)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(p.qos, QoS::ExactlyOnce);
    sub.ack(&p).await;
    sub.expect_quiet().await;
}

#[tokio::test]
async fn resubscribing_replaces_the_subscription() {
    // [MQTT-3.8.4-3]
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    sub.subscribe(2, &[("t", QoS::AtMostOnce)]).await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("t", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(sub.recv_publish().await.qos, QoS::AtMostOnce);
    sub.expect_quiet().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("t", QoS::AtMostOnce)]).await;
    sub.send(&Packet::Unsubscribe(broker::codec::Unsubscribe {
        pkid: 2,
        filters: vec!["t".into()],
    }))
    .await;
    assert_eq!(sub.recv().await, Some(Packet::UnsubAck(2)));
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("t", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    sub.expect_quiet().await;
}

#[tokio::test]
async fn retained_messages() {
    let b = TestBroker::start().await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("r/1", b"one", QoS::AtLeastOnce, true, 1)
        .await;
    publisher
        .publish("r/2", b"two", QoS::AtMostOnce, true, 0)
        .await;
    publisher
        .publish("r/2", b"two'", QoS::AtMostOnce, true, 0)
        .await;
    // Make sure the broker handled the QoS 0 ones.
    publisher.send(&Packet::PingReq).await;
    assert_eq!(publisher.recv().await, Some(Packet::PingResp));

    // [MQTT-3.3.1-6]: a new subscription gets matching retained messages
    // with the retain flag set, the last per topic [MQTT-3.3.1-5].
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("r/#", QoS::AtLeastOnce)]).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = sub.recv_publish().await;
        assert!(p.retain, "[MQTT-3.3.1-8] retain flag set");
        if p.qos == QoS::AtLeastOnce {
            sub.send(&Packet::PubAck(p.pkid)).await;
        }
        got.push((p.topic.to_string(), p.payload.to_vec(), p.qos));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("r/1".into(), b"one".to_vec(), QoS::AtLeastOnce),
            ("r/2".into(), b"two'".to_vec(), QoS::AtMostOnce)
        ]
    );

    // [MQTT-3.3.1-9]: forwarded to existing subscribers without retain.
    publisher
        .publish("r/3", b"three", QoS::AtMostOnce, true, 0)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"three"[..], false));

    // [MQTT-3.3.1-10], [MQTT-3.3.1-11]: an empty retained payload clears
    // the topic; it is still forwarded.
    publisher
        .publish("r/1", b"", QoS::AtMostOnce, true, 0)
        .await;
    let p = sub.recv_publish().await;
    assert!(p.payload.is_empty());
    let mut late = Raw::connect(b.addr, "late", true).await;
    late.subscribe(1, &[("r/1", QoS::AtMostOnce), ("r/3", QoS::AtMostOnce)])
        .await;
    let p = late.recv_publish().await;
    assert_eq!(p.topic.as_str(), "r/3");
    late.expect_quiet().await;
}

#[tokio::test]
async fn retained_messages_respect_dollar_rule() {
    // [MQTT-4.7.2-1]: clients cannot publish to `$` topics (dropped), and
    // `#` never matches them.
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    // `$SYS/fake` rather than `$SYS/#`: the broker's own `$SYS` topics
    // would arrive there.
    sub.subscribe(1, &[("#", QoS::AtMostOnce), ("$SYS/fake", QoS::AtMostOnce)])
        .await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("$SYS/fake", b"x", QoS::AtLeastOnce, true, 1)
        .await;
    sub.expect_quiet().await;
}

#[tokio::test]
async fn will_is_published_when_the_socket_closes() {
    // [MQTT-3.1.2-8]
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("will/#", QoS::AtLeastOnce)]).await;
    let connect = with_will(
        connect_packet("w", true),
        "will/w",
        b"gone",
        QoS::AtLeastOnce,
        false,
    );
    let (c, _) = Raw::connect_with(b.addr, connect).await;
    drop(c);
    let p = sub.recv_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("will/w", &b"gone"[..]));
}

#[tokio::test]
async fn will_is_published_on_protocol_error() {
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("will/#", QoS::AtMostOnce)]).await;
    let connect = with_will(
        connect_packet("w", true),
        "will/w",
        b"bad",
        QoS::AtMostOnce,
        false,
    );
    let (mut c, _) = Raw::connect_with(b.addr, connect).await;
    c.send_bytes(&[0x00, 0x00]).await;
    c.expect_closed().await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"bad");
}

#[tokio::test]
async fn will_is_discarded_on_disconnect() {
    // [MQTT-3.14.4-3]
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("will/#", QoS::AtMostOnce)]).await;
    let connect = with_will(
        connect_packet("w", true),
        "will/w",
        b"gone",
        QoS::AtMostOnce,
        false,
    );
    let (mut c, _) = Raw::connect_with(b.addr, connect).await;
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;
    sub.expect_quiet().await;
}

#[tokio::test]
async fn retained_will() {
    let b = TestBroker::start().await;
    let connect = with_will(
        connect_packet("w", true),
        "status/w",
        b"offline",
        QoS::AtMostOnce,
        true,
    );
    let (c, _) = Raw::connect_with(b.addr, connect).await;
    drop(c);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut sub = Raw::connect(b.addr, "sub", true).await;
        sub.subscribe(1, &[("status/#", QoS::AtMostOnce)]).await;
        match sub.recv_within(QUIET).await {
            Ok(Some(Packet::Publish(p))) => {
                assert!(p.retain);
                assert_eq!(&p.payload[..], b"offline");
                break;
            }
            other => assert!(Instant::now() < deadline, "no retained will: {other:?}"),
        }
    }
}

#[tokio::test]
async fn keepalive_timeout_closes_and_publishes_will() {
    // [MQTT-3.1.2-24]: 1.5 x keepalive without a packet closes the
    // connection; the will goes out.
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("will/#", QoS::AtMostOnce)]).await;
    let mut connect = with_will(
        connect_packet("k", true),
        "will/k",
        b"timeout",
        QoS::AtMostOnce,
        false,
    );
    connect.keep_alive = 1;
    let start = Instant::now();
    let (mut c, _) = Raw::connect_with(b.addr, connect).await;
    c.expect_closed().await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400),
        "closed after {elapsed:?}"
    );
    assert_eq!(&sub.recv_publish().await.payload[..], b"timeout");
}

#[tokio::test]
async fn keepalive_is_reset_by_any_packet() {
    let b = TestBroker::start().await;
    let mut connect = connect_packet("k", true);
    connect.keep_alive = 1;
    let (mut c, _) = Raw::connect_with(b.addr, connect).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        c.send(&Packet::PingReq).await;
        assert_eq!(c.recv().await, Some(Packet::PingResp));
    }
}

#[tokio::test]
async fn keepalive_zero_disables_the_timeout() {
    let b = TestBroker::start().await;
    let mut connect = connect_packet("k", true);
    connect.keep_alive = 0;
    let (mut c, _) = Raw::connect_with(b.addr, connect).await;
    match c.recv_within(Duration::from_millis(2000)).await {
        Err(()) => {}
        other => panic!("expected silence, got {other:?}"),
    }
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn takeover_closes_the_old_connection() {
    // [MQTT-3.1.4-2]; the old connection's will is published.
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("will/#", QoS::AtMostOnce)]).await;
    let connect = with_will(
        connect_packet("dup", true),
        "will/dup",
        b"old",
        QoS::AtMostOnce,
        false,
    );
    let (mut old, _) = Raw::connect_with(b.addr, connect).await;
    let mut new = Raw::connect(b.addr, "dup", true).await;
    old.expect_closed().await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"old");
    new.send(&Packet::PingReq).await;
    assert_eq!(new.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn persistent_session_keeps_subscriptions_and_queues_offline() {
    let b = TestBroker::start().await;
    let (mut c, present) = Raw::connect_with(b.addr, connect_packet("p", false)).await;
    // [MQTT-3.2.2-3]: no session yet.
    assert!(!present);
    c.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;

    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    for i in 0..5u8 {
        publisher
            .publish("t", &[i], QoS::AtLeastOnce, false, 1)
            .await;
    }
    // QoS 0 is not queued for offline sessions (Mosquitto's default).
    publisher
        .publish("t", b"q0", QoS::AtMostOnce, false, 0)
        .await;

    // [MQTT-3.2.2-2]: session present; queued messages in order
    // [MQTT-4.6.0-6].
    let (mut c, present) = Raw::connect_with(b.addr, connect_packet("p", false)).await;
    assert!(present);
    for i in 0..5u8 {
        let p = c.recv_publish().await;
        assert_eq!((&p.payload[..], p.qos), (&[i][..], QoS::AtLeastOnce));
        c.send(&Packet::PubAck(p.pkid)).await;
    }
    c.expect_quiet().await;

    // The subscription survived: live delivery works without resubscribing.
    publisher
        .publish("t", b"live", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(&c.recv_publish().await.payload[..], b"live");
}

#[tokio::test]
async fn clean_session_discards_the_earlier_session() {
    // [MQTT-3.1.2-6], [MQTT-3.2.2-1]
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "p", false).await;
    c.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;
    let (mut c, present) = Raw::connect_with(b.addr, connect_packet("p", true)).await;
    assert!(!present);
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("t", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    c.expect_quiet().await;
    c.send(&Packet::Disconnect).await;
    // And the clean session is not kept either.
    let (_c, present) = Raw::connect_with(b.addr, connect_packet("p", false)).await;
    assert!(!present);
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_after_reconnect() {
    // [MQTT-4.4.0-1]
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "p", false).await;
    c.subscribe(1, &[("q1", QoS::AtLeastOnce), ("q2", QoS::ExactlyOnce)])
        .await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("q1", b"a", QoS::AtLeastOnce, false, 1)
        .await;
    publisher
        .publish("q2", b"b", QoS::ExactlyOnce, false, 2)
        .await;
    publisher
        .publish("q2", b"c", QoS::ExactlyOnce, false, 3)
        .await;
    let a = c.recv_publish().await;
    let bb = c.recv_publish().await;
    let cc = c.recv_publish().await;
    assert!(!a.dup);
    // Acknowledge only the PUBREC of "c": it moves to the PUBREL stage.
    c.send(&Packet::PubRec(cc.pkid)).await;
    assert_eq!(c.recv().await, Some(Packet::PubRel(cc.pkid)));
    drop(c);

    let (mut c, present) = Raw::connect_with(b.addr, connect_packet("p", false)).await;
    assert!(present);
    let p = c.recv_publish().await;
    assert_eq!((p.pkid, p.dup, &p.payload[..]), (a.pkid, true, &b"a"[..]));
    let p = c.recv_publish().await;
    assert_eq!((p.pkid, p.dup, &p.payload[..]), (bb.pkid, true, &b"b"[..]));
    assert_eq!(c.recv().await, Some(Packet::PubRel(cc.pkid)));
    c.send(&Packet::PubComp(cc.pkid)).await;
    c.send(&Packet::PubAck(a.pkid)).await;
    c.send(&Packet::PubRec(bb.pkid)).await;
    assert_eq!(c.recv().await, Some(Packet::PubRel(bb.pkid)));
    c.send(&Packet::PubComp(bb.pkid)).await;
    c.expect_quiet().await;
}

#[tokio::test]
async fn inflight_window_limits_unacknowledged_messages() {
    let config = broker::Config::default();
    assert_eq!(config.limits.max_inflight, 20, "Mosquitto's default");
    let b = TestBroker::with_config(config).await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    for i in 0..25u16 {
        publisher
            .publish("t", &i.to_be_bytes(), QoS::AtLeastOnce, false, i + 1)
            .await;
    }
    let mut first = Vec::new();
    for _ in 0..20 {
        first.push(sub.recv_publish().await);
    }
    sub.expect_quiet().await;
    sub.send(&Packet::PubAck(first[0].pkid)).await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], &20u16.to_be_bytes());
    sub.expect_quiet().await;
}

#[tokio::test]
async fn message_order_is_kept_per_topic_and_qos() {
    // [MQTT-4.6.0-5], [MQTT-4.6.0-6]
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    for i in 0..200u16 {
        publisher
            .send(&publish_packet(
                "t",
                &i.to_be_bytes(),
                QoS::AtLeastOnce,
                false,
                i + 1,
            ))
            .await;
    }
    for i in 0..200u16 {
        let p = sub.recv_publish().await;
        assert_eq!(&p.payload[..], &i.to_be_bytes());
        sub.send(&Packet::PubAck(p.pkid)).await;
    }
}

#[tokio::test]
async fn shared_subscriptions_deliver_each_message_to_one_member() {
    // `$share/GROUP/FILTER` over MQTT 3.1.1, as Mosquitto.
    let b = TestBroker::start().await;
    let mut m1 = Raw::connect(b.addr, "m1", true).await;
    let mut m2 = Raw::connect(b.addr, "m2", true).await;
    let mut plain = Raw::connect(b.addr, "plain", true).await;
    for m in [&mut m1, &mut m2] {
        let codes = m.subscribe(1, &[("$share/g/t/#", QoS::AtLeastOnce)]).await;
        assert_eq!(codes, vec![SubackCode::Success(QoS::AtLeastOnce)]);
    }
    plain.subscribe(1, &[("t/#", QoS::AtMostOnce)]).await;
    // Malformed shared filters fail.
    let codes = plain
        .subscribe(
            2,
            &[
                ("$share/t", QoS::AtMostOnce),
                ("$share//t", QoS::AtMostOnce),
            ],
        )
        .await;
    assert_eq!(codes, vec![SubackCode::Failure, SubackCode::Failure]);

    let mut p = Raw::connect(b.addr, "pub", true).await;
    for i in 0..10u8 {
        p.publish("t/x", &[i], QoS::AtLeastOnce, false, 1).await;
    }
    let mut seen = Vec::new();
    for m in [&mut m1, &mut m2] {
        let mut n = 0;
        while let Ok(Some(Packet::Publish(msg))) = m.recv_within(QUIET).await {
            m.send(&Packet::PubAck(msg.pkid)).await;
            seen.push(msg.payload[0]);
            n += 1;
        }
        assert!(n > 0, "both members take turns");
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..10).collect::<Vec<u8>>(),
        "each message to exactly one member"
    );
    for _ in 0..10 {
        plain.recv_publish().await;
    }

    // A member that leaves the group no longer receives.
    m1.send(&Packet::Unsubscribe(broker::codec::Unsubscribe {
        pkid: 3,
        filters: vec!["$share/g/t/#".into()],
    }))
    .await;
    assert_eq!(m1.recv().await, Some(Packet::UnsubAck(3)));
    for i in 0..4u8 {
        p.publish("t/y", &[i], QoS::AtLeastOnce, false, 1).await;
    }
    for _ in 0..4 {
        let msg = m2.recv_publish().await;
        m2.send(&Packet::PubAck(msg.pkid)).await;
    }
    m1.expect_quiet().await;
}

#[tokio::test]
async fn a_backlog_larger_than_one_write_batch_is_delivered_in_full() {
    // 100 x 2 KiB queued at once is several write batches: the broker must
    // keep writing after the publisher has gone quiet.
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("t", QoS::AtMostOnce)]).await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    let mut buf = bytes::BytesMut::new();
    for i in 0..100u8 {
        let mut payload = vec![i; 2048];
        payload[0] = i;
        broker::codec::encode(
            &publish_packet("t", &payload, QoS::AtMostOnce, false, 0),
            &mut buf,
        )
        .unwrap();
    }
    publisher.send_bytes(&buf).await;
    for i in 0..100u8 {
        assert_eq!(sub.recv_publish().await.payload[0], i);
    }
}
