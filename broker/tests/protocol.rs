//! Raw-byte conformance tests: one per rule, each naming the normative
//! statement of MQTT 3.1.1 it checks. A real broker on 127.0.0.1:0.

mod common;

use std::time::Duration;

use broker::codec::{ConnectReturnCode, Packet, Protocol, QoS, SubackCode};
use common::*;

/// CONNECT, protocol MQTT level 4, clean session, keepalive 60, id "c".
const CONNECT_C: &[u8] = &[
    0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, b'c',
];

async fn expect_connack(c: &mut Raw, code: ConnectReturnCode) {
    match c.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, code),
        other => panic!("expected CONNACK {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn first_packet_must_be_connect() {
    // [MQTT-3.1.0-1]
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    c.send_bytes(&[0xc0, 0x00]).await; // PINGREQ
    c.expect_closed().await;
}

#[tokio::test]
async fn second_connect_is_a_protocol_violation() {
    // [MQTT-3.1.0-2]
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    c.send_bytes(CONNECT_C).await;
    expect_connack(&mut c, ConnectReturnCode::Accepted).await;
    c.send_bytes(CONNECT_C).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn unknown_protocol_level_gets_connack_1_and_close() {
    // [MQTT-3.1.2-2]
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    let mut bytes = CONNECT_C.to_vec();
    bytes[8] = 5;
    c.send_bytes(&bytes).await;
    expect_connack(&mut c, ConnectReturnCode::UnacceptableProtocolVersion).await;
    c.expect_closed().await;

    // [MQTT-3.1.2-1]: an unknown protocol name is not MQTT 3.1.1 to answer
    // in: the connection is closed without CONNACK (as Mosquitto).
    for name in [b"XQTT", b"MQTU"] {
        let mut c = Raw::open(b.addr).await;
        let mut bytes = CONNECT_C.to_vec();
        bytes[4..8].copy_from_slice(name);
        c.send_bytes(&bytes).await;
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn control_characters_in_strings_close() {
    // [MQTT-1.5.3]: a receiver MAY close on U+0001..U+001F, U+007F..U+009F
    // (and non-characters); Mosquitto does, and so do we.
    let b = TestBroker::start().await;
    for id in ["a\u{1}b", "a\u{7f}b", "a\u{9f}b", "a\u{ffff}b"] {
        let mut c = Raw::open(b.addr).await;
        c.send(&Packet::Connect(connect_packet(id, true))).await;
        c.expect_closed().await;
    }
    let mut c = Raw::connect(b.addr, "ok-\u{e9}", true).await;
    c.send_bytes(&[0x30, 0x04, 0x00, 0x02, b'a', 0x1f]).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt_3_1_connect_with_reserved_flag_is_accepted() {
    // The reserved-flag rule [MQTT-3.1.2-3] is 3.1.1's; 3.1 has none, and
    // Mosquitto accepts such 3.1 clients.
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    c.send_bytes(&[
        0x10, 0x0f, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x03, 0x00, 0x3c, 0x00,
        0x01, b'c',
    ])
    .await;
    expect_connack(&mut c, ConnectReturnCode::Accepted).await;
}

#[tokio::test]
async fn mqtt_3_1_mqisdp_is_accepted() {
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    c.send_bytes(&[
        0x10, 0x0f, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3c, 0x00,
        0x01, b'c',
    ])
    .await;
    expect_connack(&mut c, ConnectReturnCode::Accepted).await;
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn mqtt_3_1_requires_a_client_id() {
    let b = TestBroker::start().await;
    let mut connect = connect_packet("", true);
    connect.protocol = Protocol::V31;
    let mut c = Raw::open(b.addr).await;
    c.send(&Packet::Connect(connect)).await;
    expect_connack(&mut c, ConnectReturnCode::IdentifierRejected).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn connect_reserved_flag_closes() {
    // [MQTT-3.1.2-3]
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    let mut bytes = CONNECT_C.to_vec();
    bytes[9] |= 0x01;
    c.send_bytes(&bytes).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn password_without_username_closes() {
    // [MQTT-3.1.2-22]
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    c.send_bytes(&[
        0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x42, 0x00, 0x3c, 0x00, 0x01, b'c',
        0x00, 0x01, b'p',
    ])
    .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn empty_client_id_needs_clean_session() {
    // [MQTT-3.1.3-8]: CONNACK 0x02 then close.
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    c.send(&Packet::Connect(connect_packet("", false))).await;
    expect_connack(&mut c, ConnectReturnCode::IdentifierRejected).await;
    c.expect_closed().await;
    // [MQTT-3.1.3-6]: with clean session the broker assigns an id.
    let (mut c, present) = Raw::connect_with(b.addr, connect_packet("", true)).await;
    assert!(!present);
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn assigned_client_ids_are_unique() {
    // [MQTT-3.1.3-6]: two anonymous clients do not take each other over.
    let b = TestBroker::start().await;
    let mut a = Raw::connect_with(b.addr, connect_packet("", true)).await.0;
    let mut c = Raw::connect_with(b.addr, connect_packet("", true)).await.0;
    a.send(&Packet::PingReq).await;
    assert_eq!(a.recv().await, Some(Packet::PingResp));
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn subscribe_with_wrong_flags_closes() {
    // [MQTT-3.8.1-1]: SUBSCRIBE fixed-header flags must be 0b0010.
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00])
        .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn pubrel_with_wrong_flags_closes() {
    // [MQTT-3.6.1-1]
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0x60, 0x02, 0x00, 0x01]).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn publish_qos_3_closes() {
    // [MQTT-3.3.1-4]
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01])
        .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn wildcards_in_topic_names_close() {
    // [MQTT-3.3.2-2]
    let b = TestBroker::start().await;
    for topic in [b"a/+".as_slice(), b"#", b"a/#"] {
        let mut c = Raw::connect(b.addr, "c", true).await;
        let mut bytes = vec![0x30, (2 + topic.len()) as u8, 0x00, topic.len() as u8];
        bytes.extend_from_slice(topic);
        c.send_bytes(&bytes).await;
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn invalid_utf8_and_nul_in_topics_close() {
    // [MQTT-1.5.3-1], [MQTT-1.5.3-2]
    let b = TestBroker::start().await;
    for topic in [[b'a', 0xff], [b'a', 0x00], [0xed, 0xa0]] {
        let mut c = Raw::connect(b.addr, "c", true).await;
        c.send_bytes(&[0x30, 0x04, 0x00, 0x02, topic[0], topic[1]])
            .await;
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn empty_subscribe_and_unsubscribe_close() {
    // [MQTT-3.8.3-3], [MQTT-3.10.3-2]
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0x82, 0x02, 0x00, 0x01]).await;
    c.expect_closed().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0xa2, 0x02, 0x00, 0x01]).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn reserved_bits_in_requested_qos_close() {
    // [MQTT-3.8.3-4]
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04])
        .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn invalid_filters_close() {
    // [MQTT-4.7.1-2], [MQTT-4.7.1-3], [MQTT-4.7.3-1]
    let b = TestBroker::start().await;
    for filter in [b"a#".as_slice(), b"a/#/b", b"a+", b""] {
        let mut c = Raw::connect(b.addr, "c", true).await;
        let mut bytes = vec![
            0x82,
            (5 + filter.len()) as u8,
            0x00,
            0x01,
            0x00,
            filter.len() as u8,
        ];
        bytes.extend_from_slice(filter);
        bytes.push(0);
        c.send_bytes(&bytes).await;
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn packet_id_zero_closes() {
    // [MQTT-2.3.1-1]
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00])
        .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn malformed_remaining_length_closes() {
    // [MQTT-2.2.3]: at most four bytes.
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn trailing_bytes_close() {
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0xc0, 0x01, 0x00]).await; // PINGREQ with a body
    c.expect_closed().await;
}

#[tokio::test]
async fn packets_a_server_sends_are_refused_from_clients() {
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0x20, 0x02, 0x00, 0x00]).await; // CONNACK
    c.expect_closed().await;
}

#[tokio::test]
async fn pingreq_gets_pingresp() {
    // [MQTT-3.12.4-1]
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0xc0, 0x00]).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn unsuback_even_when_nothing_matched() {
    // [MQTT-3.10.4-4], [MQTT-3.10.4-5]
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send_bytes(&[0xa2, 0x05, 0x00, 0x07, 0x00, 0x01, b'x'])
        .await;
    assert_eq!(c.recv().await, Some(Packet::UnsubAck(7)));
}

#[tokio::test]
async fn pubrel_for_unknown_id_gets_pubcomp() {
    // [MQTT-4.3.3-2]: PUBCOMP answers PUBREL.
    let b = TestBroker::start().await;
    let mut c = Raw::connect(b.addr, "c", true).await;
    c.send(&Packet::PubRel(9)).await;
    assert_eq!(c.recv().await, Some(Packet::PubComp(9)));
}

#[tokio::test]
async fn connack_then_disconnect_pipelined() {
    // A client that sends CONNECT and DISCONNECT in one write still gets
    // its CONNACK.
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    let mut bytes = CONNECT_C.to_vec();
    bytes.extend_from_slice(&[0xe0, 0x00]);
    c.send_bytes(&bytes).await;
    expect_connack(&mut c, ConnectReturnCode::Accepted).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn connect_timeout_closes_silent_sockets() {
    let config = broker::Config {
        connect_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let b = TestBroker::with_config(config).await;
    let mut c = Raw::open(b.addr).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn too_deep_topics_are_refused() {
    let b = TestBroker::start().await;
    let deep = vec!["a"; 201].join("/");
    let mut c = Raw::connect(b.addr, "c", true).await;
    let codes = c
        .subscribe(
            1,
            &[(deep.as_str(), QoS::AtMostOnce), ("ok", QoS::AtLeastOnce)],
        )
        .await;
    assert_eq!(
        codes,
        vec![SubackCode::Failure, SubackCode::Success(QoS::AtLeastOnce)]
    );
    c.send(&publish_packet(&deep, b"x", QoS::AtMostOnce, false, 0))
        .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn malformed_input_does_not_disturb_other_clients() {
    // [MQTT-4.8.0-1]: the offender is closed; everyone else carries on.
    let b = TestBroker::start().await;
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;

    let garbage: [&[u8]; 5] = [
        &[0xff; 64],
        &[0x00, 0x00],
        &[0x30, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x82, 0x04, 0x00, 0x00, 0x00, 0x00],
        &[0x10, 0x02, 0x00, 0x00],
    ];
    for g in garbage {
        let mut bad = Raw::open(b.addr).await;
        bad.send_bytes(CONNECT_C).await;
        bad.recv().await;
        bad.send_bytes(g).await;
        bad.expect_closed().await;
        // An unauthenticated socket sending garbage as its first bytes too.
        let mut bad = Raw::open(b.addr).await;
        bad.send_bytes(g).await;
        bad.expect_closed().await;
    }
    publisher
        .publish("t", b"still here", QoS::AtLeastOnce, false, 1)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"still here");
}

#[tokio::test]
async fn max_keepalive_refuses_longer_or_zero_keepalive() {
    // Mosquitto 2.0 semantics for MQTT 3.1.1: CONNACK 0x02 and close.
    let config = broker::Config {
        max_keepalive: Some(60),
        ..Default::default()
    };
    let b = TestBroker::with_config(config).await;
    for ka in [61, 0] {
        let mut connect = connect_packet("k", true);
        connect.keep_alive = ka;
        let mut c = Raw::open(b.addr).await;
        c.send(&Packet::Connect(connect)).await;
        expect_connack(&mut c, ConnectReturnCode::IdentifierRejected).await;
        c.expect_closed().await;
    }
    let (_c, _) = Raw::connect_with(b.addr, connect_packet("k", true)).await;
}

#[tokio::test]
async fn responses_owed_before_a_violation_are_sent() {
    // [MQTT-4.8.0-1] closes the connection, but the CONNACK and SUBACK for
    // what was accepted before the bad packet still go out (as Mosquitto).
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    let mut bytes = CONNECT_C.to_vec();
    bytes.extend_from_slice(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'm', 0x00]); // SUBSCRIBE m
    bytes.extend_from_slice(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#']); // PUBLISH a/#
    c.send_bytes(&bytes).await;
    expect_connack(&mut c, ConnectReturnCode::Accepted).await;
    assert!(matches!(c.recv().await, Some(Packet::SubAck(_))));
    c.expect_closed().await;
}

#[tokio::test]
async fn a_first_packet_larger_than_any_connect_closes_at_once() {
    // Nothing is buffered beyond what a CONNECT can be before a client has
    // authenticated: a 1 MiB "CONNECT" header closes the connection.
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    c.send_bytes(&[0x10, 0x80, 0x80, 0x40]).await; // remaining length 1 MiB
    c.expect_closed().await;
    // A CONNECT with a 60 KB will payload is still fine.
    let connect = with_will(
        connect_packet("big-will", true),
        "w",
        &[7; 60_000],
        QoS::AtMostOnce,
        false,
    );
    let (mut c, _) = Raw::connect_with(b.addr, connect).await;
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn acknowledgements_that_do_not_fit_the_message_close() {
    // As Mosquitto [MQTT-4.8.0-1]: PUBREC for a QoS 1 message, PUBCOMP
    // before PUBREC; an unknown packet id is a harmless late duplicate.
    let b = TestBroker::start().await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    for (qos, wrong) in [
        (QoS::AtLeastOnce, Packet::PubRec(1)),
        (QoS::AtLeastOnce, Packet::PubComp(1)),
        (QoS::ExactlyOnce, Packet::PubComp(1)),
        (QoS::ExactlyOnce, Packet::PubAck(1)),
    ] {
        let mut sub = Raw::connect(b.addr, "sub", true).await;
        sub.subscribe(1, &[("t", qos)]).await;
        publisher.publish("t", b"x", qos, false, 9).await;
        let p = sub.recv_publish().await;
        assert_eq!(p.pkid, 1);
        sub.send(&Packet::PubAck(77)).await; // unknown id: ignored
        sub.send(&wrong).await;
        sub.expect_closed().await;
    }
}

#[tokio::test]
async fn mqtt_3_1_clients_get_session_present_0() {
    // Session present is a 3.1.1 field [MQTT-3.2.2-2]; in 3.1 that byte is
    // reserved (Mosquitto sends 0 too). The session is resumed all the same.
    let b = TestBroker::start().await;
    let mut connect = connect_packet("old", false);
    connect.protocol = Protocol::V31;
    let (mut c, _) = Raw::connect_with(b.addr, connect.clone()).await;
    c.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("t", b"kept", QoS::AtLeastOnce, false, 1)
        .await;
    let (mut c, present) = Raw::connect_with(b.addr, connect).await;
    assert!(!present);
    assert_eq!(&c.recv_publish().await.payload[..], b"kept");
}

#[tokio::test]
async fn connect_fixed_header_flags_are_reserved_in_3_1_1_only() {
    // [MQTT-2.2.2-2] for 3.1.1; 3.1 does not use them and Mosquitto accepts
    // them there.
    let b = TestBroker::start().await;
    let mut c = Raw::open(b.addr).await;
    let mut bytes = CONNECT_C.to_vec();
    bytes[0] = 0x12;
    c.send_bytes(&bytes).await;
    c.expect_closed().await;
    let mut c = Raw::open(b.addr).await;
    c.send_bytes(&[
        0x14, 0x0f, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3c, 0x00,
        0x01, b'c',
    ])
    .await;
    expect_connack(&mut c, ConnectReturnCode::Accepted).await;
}

#[tokio::test]
async fn mqtt_3_1_retries_may_carry_dup_on_pubrel() {
    // MQTT 3.1 sets DUP on a retried PUBREL (3.1.1 forbids it:
    // [MQTT-3.6.1-1]); Mosquitto's 03-publish-c2b-disconnect-qos2 does this.
    let b = TestBroker::start().await;
    let mut connect = connect_packet("v31", true);
    connect.protocol = Protocol::V31;
    let (mut c, _) = Raw::connect_with(b.addr, connect).await;
    c.send(&publish_packet("t", b"x", QoS::ExactlyOnce, false, 3))
        .await;
    assert_eq!(c.recv().await, Some(Packet::PubRec(3)));
    c.send_bytes(&[0x6a, 0x02, 0x00, 0x03]).await;
    assert_eq!(c.recv().await, Some(Packet::PubComp(3)));
    // The same bytes from a 3.1.1 client are a violation.
    let mut c = Raw::connect(b.addr, "v311", true).await;
    c.send_bytes(&[0x6a, 0x02, 0x00, 0x03]).await;
    c.expect_closed().await;
}
