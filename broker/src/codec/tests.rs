//! Codec tests across decode and encode: byte vectors for encoding, encode
//! errors, property tests (decode never panics; encode -> decode round
//! trips) and cross-checks against the `mqttbytes` crate.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

const MAX: usize = MAX_REMAINING_LENGTH + 5;

fn enc(p: &Packet) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode(p, &mut dst).expect("encodable");
    dst.to_vec()
}

fn dec_one(bytes: &[u8]) -> Packet {
    let mut src = BytesMut::from(bytes);
    let p = decode(&mut src, MAX).expect("valid").expect("complete");
    assert!(src.is_empty());
    p
}

// ---- Encoding byte vectors ----

#[test]
fn encode_vectors() {
    assert_eq!(enc(&Packet::PingReq), [0xC0, 0]);
    assert_eq!(enc(&Packet::PingResp), [0xD0, 0]);
    assert_eq!(enc(&Packet::Disconnect), [0xE0, 0]);
    assert_eq!(enc(&Packet::PubAck(1)), [0x40, 2, 0, 1]);
    assert_eq!(enc(&Packet::PubRec(2)), [0x50, 2, 0, 2]);
    // PUBREL carries flags 0b0010 [MQTT-3.6.1-1].
    assert_eq!(enc(&Packet::PubRel(3)), [0x62, 2, 0, 3]);
    assert_eq!(enc(&Packet::PubComp(4)), [0x70, 2, 0, 4]);
    assert_eq!(enc(&Packet::UnsubAck(5)), [0xB0, 2, 0, 5]);
    assert_eq!(
        enc(&Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted
        })),
        [0x20, 2, 1, 0]
    );
    assert_eq!(
        enc(&Packet::Subscribe(Subscribe {
            pkid: 10,
            filters: vec![
                ("a/b".into(), QoS::AtLeastOnce),
                ("c/d".into(), QoS::ExactlyOnce)
            ]
        })),
        [0x82, 14, 0, 10, 0, 3, b'a', b'/', b'b', 1, 0, 3, b'c', b'/', b'd', 2]
    );
    assert_eq!(
        enc(&Packet::SubAck(SubAck {
            pkid: 10,
            codes: vec![SubackCode::Success(QoS::ExactlyOnce), SubackCode::Failure]
        })),
        [0x90, 4, 0, 10, 2, 0x80]
    );
    assert_eq!(
        enc(&Packet::Unsubscribe(Unsubscribe {
            pkid: 10,
            filters: vec!["a/b".into()]
        })),
        [0xA2, 7, 0, 10, 0, 3, b'a', b'/', b'b']
    );
}

#[test]
fn encode_connect_v311_and_v31() {
    let mut c = Connect {
        protocol: Protocol::V311,
        clean_session: true,
        keep_alive: 60,
        client_id: "a".into(),
        will: Some(LastWill {
            topic: "w".into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: true,
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(&[0xFF])),
    };
    assert_eq!(
        enc(&Packet::Connect(c.clone())),
        [
            0x10, 25, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xEE, 0, 60, 0, 1, b'a', 0, 1, b'w', 0, 1,
            b'x', 0, 1, b'u', 0, 1, 0xFF
        ]
    );
    c.protocol = Protocol::V31;
    c.will = None;
    c.username = None;
    c.password = None;
    assert_eq!(
        enc(&Packet::Connect(c)),
        [0x10, 15, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 1, b'a']
    );
}

#[test]
fn encode_publish_writes_pkid_only_for_qos_above_0() {
    let mut dst = BytesMut::new();
    encode_publish(false, QoS::AtMostOnce, false, "a/b", 99, b"hi", &mut dst).unwrap();
    assert_eq!(&dst[..], [0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']);
    dst.clear();
    encode_publish(true, QoS::ExactlyOnce, true, "a", 0x1234, b"", &mut dst).unwrap();
    assert_eq!(&dst[..], [0x3D, 5, 0, 1, b'a', 0x12, 0x34]);
}

#[test]
fn encode_publish_multibyte_remaining_length() {
    let payload = vec![7u8; 200];
    let mut dst = BytesMut::new();
    encode_publish(false, QoS::AtLeastOnce, false, "t", 1, &payload, &mut dst).unwrap();
    // 2 + 1 + 2 + 200 = 205 = 0xCD 0x01
    assert_eq!(&dst[..6], [0x32, 0xCD, 0x01, 0, 1, b't']);
    assert_eq!(dst.len(), 3 + 205);
    assert!(matches!(dec_one(&dst), Packet::Publish(p) if p.payload.len() == 200));
}

#[test]
fn encode_string_too_long_writes_nothing() {
    let long = "a".repeat(65_536);
    let mut dst = BytesMut::from(&b"keep"[..]);
    assert_eq!(
        encode_publish(false, QoS::AtMostOnce, false, &long, 0, b"", &mut dst),
        Err(Error::StringTooLong)
    );
    let sub = Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![
            ("ok".into(), QoS::AtMostOnce),
            (long.clone().into(), QoS::AtMostOnce),
        ],
    });
    assert_eq!(encode(&sub, &mut dst), Err(Error::StringTooLong));
    let con = Packet::Connect(Connect {
        protocol: Protocol::V311,
        clean_session: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: Some("u".into()),
        password: Some(Bytes::from(vec![0; 65_536])),
    });
    assert_eq!(encode(&con, &mut dst), Err(Error::StringTooLong));
    assert_eq!(&dst[..], b"keep");
    // 65535 bytes is the longest string that fits.
    let max = "a".repeat(65_535);
    encode_publish(false, QoS::AtMostOnce, false, &max, 0, b"", &mut dst).unwrap();
}

#[test]
fn encode_packet_too_large_writes_nothing() {
    // A zeroed allocation is lazily mapped: this does not touch 256 MiB.
    let payload = vec![0u8; MAX_REMAINING_LENGTH];
    let mut dst = BytesMut::new();
    assert!(matches!(
        encode_publish(false, QoS::AtMostOnce, false, "t", 0, &payload, &mut dst),
        Err(Error::PacketTooLarge { .. })
    ));
    assert!(dst.is_empty());
    assert_eq!(dst.capacity(), 0);
}

// ---- Property tests ----

/// Topic names: non-empty, no wildcards, no U+0000, some multi-byte chars.
fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9/$ _é😀-]{1,24}"
}

/// Valid filters: `+` levels anywhere, `#` only as the whole last level.
fn topic_filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![Just("+".to_owned()), "[a-z0-9$é]{0,5}"], 1..5),
        any::<bool>(),
    )
        .prop_map(|(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str("/#");
            }
            f
        })
        .prop_filter("non-empty", |f| !f.is_empty())
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn pkid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn binary() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        pkid(),
        binary(),
    )
        .prop_map(|(dup, qos, retain, topic, pkid, payload)| {
            let at_most_once = qos == QoS::AtMostOnce;
            Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic: topic.into(),
                pkid: if at_most_once { 0 } else { pkid },
                payload,
            }
        })
}

fn connect() -> impl Strategy<Value = Connect> {
    let will =
        (topic_name(), binary(), qos(), any::<bool>()).prop_map(|(topic, payload, qos, retain)| {
            LastWill {
                topic: topic.into(),
                payload,
                qos,
                retain,
            }
        });
    (
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        "[a-zA-Z0-9é]{0,23}",
        prop::option::of(will),
        prop::option::of(("[a-z0-9]{0,10}", prop::option::of(binary()))),
    )
        .prop_map(|(v31, clean_session, keep_alive, id, will, login)| {
            let (username, password) = match login {
                Some((u, p)) => (Some(ByteStr::from(u)), p),
                None => (None, None),
            };
            Connect {
                protocol: if v31 { Protocol::V31 } else { Protocol::V311 },
                clean_session,
                keep_alive,
                client_id: id.into(),
                will,
                username,
                password,
            }
        })
}

fn connect_return_code() -> impl Strategy<Value = ConnectReturnCode> {
    prop_oneof![
        Just(ConnectReturnCode::Accepted),
        Just(ConnectReturnCode::UnacceptableProtocolVersion),
        Just(ConnectReturnCode::IdentifierRejected),
        Just(ConnectReturnCode::ServerUnavailable),
        Just(ConnectReturnCode::BadUserNameOrPassword),
        Just(ConnectReturnCode::NotAuthorized),
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect().prop_map(Packet::Connect),
        (any::<bool>(), connect_return_code()).prop_map(|(session_present, code)| {
            Packet::ConnAck(ConnAck {
                session_present,
                code,
            })
        }),
        publish().prop_map(Packet::Publish),
        pkid().prop_map(Packet::PubAck),
        pkid().prop_map(Packet::PubRec),
        pkid().prop_map(Packet::PubRel),
        pkid().prop_map(Packet::PubComp),
        (
            pkid(),
            prop::collection::vec((topic_filter().prop_map(ByteStr::from), qos()), 1..5)
        )
            .prop_map(|(pkid, filters)| Packet::Subscribe(Subscribe { pkid, filters })),
        (
            pkid(),
            prop::collection::vec(
                prop_oneof![
                    qos().prop_map(SubackCode::Success),
                    Just(SubackCode::Failure)
                ],
                1..5
            )
        )
            .prop_map(|(pkid, codes)| Packet::SubAck(SubAck { pkid, codes })),
        (
            pkid(),
            prop::collection::vec(topic_filter().prop_map(ByteStr::from), 1..5)
        )
            .prop_map(|(pkid, filters)| Packet::Unsubscribe(Unsubscribe { pkid, filters })),
        pkid().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

/// Feeds `chunks` one at a time, decoding after each: the packets decoded
/// and the error that stopped decoding, if any.
fn decode_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    max: usize,
) -> (Vec<Packet>, Option<Error>) {
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        src.extend_from_slice(chunk);
        loop {
            match decode(&mut src, max) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), max in 0usize..1024) {
        let _ = decode_chunks([&bytes[..]], max);
    }

    /// Chunked feeding gives the same packets and error as feeding at once.
    #[test]
    fn decode_chunked_equals_whole(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        prop_assert_eq!(decode_chunks(chunks, MAX), decode_chunks([&bytes[..]], MAX));
    }

    /// Valid packets with a few corrupted bytes: reaches deep into the
    /// parsers, which random bytes rarely do.
    #[test]
    fn decode_never_panics_on_mutated_packets(
        p in packet(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = enc(&p);
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let cut = cut.index(bytes.len() + 1);
        let _ = decode_chunks([&bytes[..cut], &bytes[cut..]], MAX);
    }

    #[test]
    fn round_trip(p in packet()) {
        let bytes = enc(&p);
        prop_assert_eq!(dec_one(&bytes), p);
    }

    #[test]
    fn round_trip_back_to_back(ps in prop::collection::vec(packet(), 1..6)) {
        let mut dst = BytesMut::new();
        for p in &ps {
            encode(p, &mut dst).unwrap();
        }
        let bytes = dst.to_vec();
        let chunks: Vec<&[u8]> = bytes.chunks(7).collect();
        prop_assert_eq!(decode_chunks(chunks, MAX), (ps, None));
    }

    /// `encode_publish` writes exactly what `encode(Packet::Publish)` writes.
    #[test]
    fn encode_publish_matches_encode(p in publish()) {
        let mut a = BytesMut::new();
        encode_publish(p.dup, p.qos, p.retain, &p.topic, p.pkid, &p.payload, &mut a).unwrap();
        prop_assert_eq!(a.to_vec(), enc(&Packet::Publish(p)));
    }
}

// ---- Cross-checks with mqttbytes 0.6 (v4) ----

mod mqttbytes_cross_check {
    use super::*;
    use mqttbytes::v4;

    fn their_qos(q: QoS) -> mqttbytes::QoS {
        match q {
            QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
            QoS::AtLeastOnce => mqttbytes::QoS::AtLeastOnce,
            QoS::ExactlyOnce => mqttbytes::QoS::ExactlyOnce,
        }
    }

    /// Our bytes, read by mqttbytes.
    fn theirs(p: &Packet) -> v4::Packet {
        let mut buf = BytesMut::from(&enc(p)[..]);
        let out = v4::read(&mut buf, MAX).expect("mqttbytes reads our encoding");
        assert!(buf.is_empty());
        out
    }

    /// mqttbytes' bytes, read by us.
    fn ours(write: impl FnOnce(&mut BytesMut)) -> Packet {
        let mut buf = BytesMut::new();
        write(&mut buf);
        dec_one(&buf)
    }

    #[test]
    fn connect() {
        let mut their = v4::Connect::new("client-1");
        their.keep_alive = 30;
        their.clean_session = false;
        their.set_login("user", "pass");
        their.last_will = Some(v4::LastWill::new(
            "will/t",
            b"bye".to_vec(),
            mqttbytes::QoS::AtLeastOnce,
            true,
        ));
        let our = Connect {
            protocol: Protocol::V311,
            clean_session: false,
            keep_alive: 30,
            client_id: "client-1".into(),
            will: Some(LastWill {
                topic: "will/t".into(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"pass")),
        };
        assert_eq!(
            theirs(&Packet::Connect(our.clone())),
            v4::Packet::Connect(their.clone())
        );
        assert_eq!(
            ours(|b| {
                their.write(b).unwrap();
            }),
            Packet::Connect(our)
        );
    }

    #[test]
    fn publish_each_qos() {
        for (qos, pkid) in [
            (QoS::AtMostOnce, 0),
            (QoS::AtLeastOnce, 7),
            (QoS::ExactlyOnce, 65535),
        ] {
            let mut their = v4::Publish::new("a/b/é", their_qos(qos), b"payload".to_vec());
            their.pkid = pkid;
            their.retain = true;
            their.dup = qos != QoS::AtMostOnce;
            let our = Publish {
                dup: qos != QoS::AtMostOnce,
                qos,
                retain: true,
                topic: "a/b/é".into(),
                pkid,
                payload: Bytes::from_static(b"payload"),
            };
            assert_eq!(
                theirs(&Packet::Publish(our.clone())),
                v4::Packet::Publish(their.clone())
            );
            assert_eq!(
                ours(|b| {
                    their.write(b).unwrap();
                }),
                Packet::Publish(our)
            );
        }
    }

    #[test]
    fn subscribe() {
        let mut their = v4::Subscribe::new("a/+/c", mqttbytes::QoS::AtLeastOnce);
        their.add("#".into(), mqttbytes::QoS::ExactlyOnce);
        their.pkid = 42;
        let our = Subscribe {
            pkid: 42,
            filters: vec![
                ("a/+/c".into(), QoS::AtLeastOnce),
                ("#".into(), QoS::ExactlyOnce),
            ],
        };
        assert_eq!(
            theirs(&Packet::Subscribe(our.clone())),
            v4::Packet::Subscribe(their.clone())
        );
        assert_eq!(
            ours(|b| {
                their.write(b).unwrap();
            }),
            Packet::Subscribe(our)
        );
    }

    #[test]
    fn suback() {
        let their = v4::SubAck::new(
            9,
            vec![
                v4::SubscribeReasonCode::Success(mqttbytes::QoS::AtMostOnce),
                v4::SubscribeReasonCode::Failure,
                v4::SubscribeReasonCode::Success(mqttbytes::QoS::ExactlyOnce),
            ],
        );
        let our = SubAck {
            pkid: 9,
            codes: vec![
                SubackCode::Success(QoS::AtMostOnce),
                SubackCode::Failure,
                SubackCode::Success(QoS::ExactlyOnce),
            ],
        };
        assert_eq!(
            theirs(&Packet::SubAck(our.clone())),
            v4::Packet::SubAck(their.clone())
        );
        assert_eq!(
            ours(|b| {
                their.write(b).unwrap();
            }),
            Packet::SubAck(our)
        );
    }

    #[test]
    fn unsubscribe() {
        let mut their = v4::Unsubscribe::new("a/#");
        their.topics.push("b".into());
        their.pkid = 3;
        let our = Unsubscribe {
            pkid: 3,
            filters: vec!["a/#".into(), "b".into()],
        };
        assert_eq!(
            theirs(&Packet::Unsubscribe(our.clone())),
            v4::Packet::Unsubscribe(their.clone())
        );
        assert_eq!(
            ours(|b| {
                their.write(b).unwrap();
            }),
            Packet::Unsubscribe(our)
        );
    }

    #[test]
    fn pingreq() {
        assert_eq!(theirs(&Packet::PingReq), v4::Packet::PingReq);
        assert_eq!(
            ours(|b| {
                v4::PingReq.write(b).unwrap();
            }),
            Packet::PingReq
        );
    }
}
