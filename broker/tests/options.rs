//! Options that change who may connect and what is delivered:
//! `clientid_prefixes`, `upgrade_outgoing_qos`, `check_retain_source`,
//! `max_inflight_bytes`, per-listener `max_connections` and `mount_point`,
//! `per_listener_settings`. Each checked against Mosquitto 2.0's behaviour.

mod common;

use broker::codec::{ConnectReturnCode, Packet, QoS};
use broker::Config;
use common::*;

/// Sends CONNECT with `id` and returns the CONNACK code.
async fn connack_code(addr: std::net::SocketAddr, id: &str) -> ConnectReturnCode {
    let mut c = Raw::open(addr).await;
    c.send(&Packet::Connect(connect_packet(id, true))).await;
    match c.recv().await {
        Some(Packet::ConnAck(ack)) => ack.code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn clientid_prefixes_refuses_other_ids_as_not_authorised() {
    let broker = TestBroker::with_config(Config {
        clientid_prefixes: Some("dev-".into()),
        ..Config::default()
    })
    .await;
    // Mosquitto 2.0.11: CONNACK 5 for "other", 0 for "dev-1", and 5 for an
    // empty id (the assigned id does not carry the prefix).
    assert_eq!(
        connack_code(broker.addr, "other").await,
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        connack_code(broker.addr, "dev-1").await,
        ConnectReturnCode::Accepted
    );
    assert_eq!(
        connack_code(broker.addr, "").await,
        ConnectReturnCode::NotAuthorized
    );
    broker.stop().await;
}

#[tokio::test]
async fn upgrade_outgoing_qos_delivers_at_the_granted_qos() {
    let broker = TestBroker::with_config(Config {
        upgrade_outgoing_qos: true,
        ..Config::default()
    })
    .await;
    let mut publisher = Raw::connect(broker.addr, "pub", true).await;
    publisher
        .publish("r/t", b"ret", QoS::AtMostOnce, true, 0)
        .await;
    let mut sub = Raw::connect(broker.addr, "sub", true).await;
    sub.subscribe(1, &[("r/t", QoS::ExactlyOnce)]).await;
    // Mosquitto 2.0.11 with upgrade_outgoing_qos: the retained QoS 0
    // message arrives at QoS 2 (r1), and so does a live one (r0).
    let p = sub.recv_publish().await;
    assert_eq!(
        (p.qos, p.retain, &p.payload[..]),
        (QoS::ExactlyOnce, true, &b"ret"[..])
    );
    sub.send(&Packet::PubRec(p.pkid)).await;
    assert_eq!(sub.recv().await, Some(Packet::PubRel(p.pkid)));
    sub.send(&Packet::PubComp(p.pkid)).await;
    publisher
        .publish("r/t", b"live", QoS::AtMostOnce, false, 0)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(
        (p.qos, p.retain, &p.payload[..]),
        (QoS::ExactlyOnce, false, &b"live"[..])
    );
    broker.stop().await;
}

#[tokio::test]
async fn without_upgrade_outgoing_qos_the_message_qos_caps_delivery() {
    let broker = TestBroker::start().await;
    let mut publisher = Raw::connect(broker.addr, "pub", true).await;
    let mut sub = Raw::connect(broker.addr, "sub", true).await;
    sub.subscribe(1, &[("r/t", QoS::ExactlyOnce)]).await;
    publisher
        .publish("r/t", b"live", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(sub.recv_publish().await.qos, QoS::AtLeastOnce);
    broker.stop().await;
}

#[tokio::test]
async fn max_inflight_bytes_holds_messages_until_acknowledged() {
    let broker = TestBroker::with_config(Config {
        max_inflight_bytes: 10,
        ..Config::default()
    })
    .await;
    let mut publisher = Raw::connect(broker.addr, "pub", true).await;
    let mut sub = Raw::connect(broker.addr, "sub", true).await;
    sub.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    for (i, payload) in [b"aaaaaa", b"bbbbbb", b"cccccc"].iter().enumerate() {
        publisher
            .publish("t", &payload[..], QoS::AtLeastOnce, false, i as u16 + 1)
            .await;
    }
    // 0 bytes in flight < 10: the first goes; 6 < 10: the second too; 12
    // bytes in flight hold the third (Mosquitto's db__ready_for_flight).
    let first = sub.recv_publish().await;
    assert_eq!(&first.payload[..], b"aaaaaa");
    assert_eq!(&sub.recv_publish().await.payload[..], b"bbbbbb");
    sub.expect_quiet().await;
    sub.send(&Packet::PubAck(first.pkid)).await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"cccccc");
    broker.stop().await;
}

/// A broker on port 0 whose password and ACL files reload when the
/// returned `Notify` is notified (SIGHUP in the binary).
async fn reloadable(
    config: Config,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<tokio::sync::Notify>,
    tokio_util::sync::CancellationToken,
) {
    let listener = broker::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let reload = std::sync::Arc::new(tokio::sync::Notify::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(broker::server::run_with_reload(
        vec![listener],
        config,
        shutdown.clone(),
        reload.clone(),
    ));
    (addr, reload, shutdown)
}

#[tokio::test]
async fn check_retain_source_hides_retained_messages_whose_publisher_lost_write_access() {
    // Mosquitto 2.0.11, as its CVE-2018-12546 test: a retained message
    // published under `readwrite`, then the ACL reloaded with `read` only:
    // with check_retain_source true a new subscriber gets nothing; without
    // it (Mosquitto's effective default, whatever its man page says) it
    // gets the message.
    for check in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let acl = dir.path().join("acl");
        std::fs::write(&acl, "topic readwrite test/topic\n").unwrap();
        let (addr, reload, shutdown) = reloadable(Config {
            acl_file: Some(acl.clone()),
            check_retain_source: check,
            ..Config::default()
        })
        .await;
        let mut publisher = Raw::connect(addr, "pub", true).await;
        publisher
            .publish("test/topic", b"hello", QoS::AtLeastOnce, true, 1)
            .await;
        std::fs::write(&acl, "topic read test/topic\n").unwrap();
        reload.notify_one();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut sub = Raw::connect(addr, "sub", true).await;
        sub.subscribe(1, &[("test/topic", QoS::AtLeastOnce)]).await;
        if check {
            sub.expect_quiet().await;
        } else {
            assert_eq!(&sub.recv_publish().await.payload[..], b"hello");
        }
        shutdown.cancel();
    }
}

#[tokio::test]
async fn max_connections_applies_to_each_listener_on_its_own() {
    let bind = || broker::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let (one, two) = (bind(), bind());
    let (a, b) = (one.local_addr().unwrap(), two.local_addr().unwrap());
    let config = Config {
        listener_options: vec![
            broker::config::ListenerOptions {
                port: a.port(),
                max_connections: Some(1),
                ..Default::default()
            },
            broker::config::ListenerOptions {
                port: b.port(),
                max_connections: Some(2),
                ..Default::default()
            },
        ],
        ..Config::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(broker::server::run_listeners(
        vec![one, two],
        config,
        shutdown.clone(),
    ));
    let _first = Raw::connect(a, "a1", true).await;
    // The first listener is full: its next connection is closed at once.
    let mut refused = Raw::open(a).await;
    refused
        .send(&Packet::Connect(connect_packet("a2", true)))
        .await;
    refused.expect_closed().await;
    // The second listener counts its own connections.
    let _b1 = Raw::connect(b, "b1", true).await;
    let _b2 = Raw::connect(b, "b2", true).await;
    let mut refused = Raw::open(b).await;
    refused
        .send(&Packet::Connect(connect_packet("b3", true)))
        .await;
    refused.expect_closed().await;
    shutdown.cancel();
}

#[tokio::test]
async fn mount_point_confines_a_listeners_clients_to_their_subtree() {
    // Listener 0 mounts its clients under `tenant/`; listener 1 does not.
    let mounted = broker::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let plain = broker::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let (m_addr, p_addr) = (mounted.local_addr().unwrap(), plain.local_addr().unwrap());
    let config = Config {
        listener_options: vec![
            broker::config::ListenerOptions {
                mount_point: Some("tenant/".into()),
                ..Default::default()
            },
            broker::config::ListenerOptions::default(),
        ],
        ..Config::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    tokio::spawn(broker::server::run_listeners(
        vec![mounted, plain],
        config,
        shutdown,
    ));

    let mut outside = Raw::connect(p_addr, "outside", true).await;
    outside.subscribe(1, &[("tenant/#", QoS::AtMostOnce)]).await;
    let mut inside = Raw::connect(m_addr, "inside", true).await;
    inside.subscribe(1, &[("x/#", QoS::AtMostOnce)]).await;

    // The tenant publishes x/1: inside sees x/1, outside tenant/x/1.
    inside
        .publish("x/1", b"a", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(inside.recv_publish().await.topic.as_str(), "x/1");
    assert_eq!(outside.recv_publish().await.topic.as_str(), "tenant/x/1");
    // In from outside, mount point stripped; nothing from outside the tree.
    outside
        .publish("tenant/x/2", b"b", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(inside.recv_publish().await.topic.as_str(), "x/2");
    assert_eq!(outside.recv_publish().await.topic.as_str(), "tenant/x/2");
    outside
        .publish("x/3", b"c", QoS::AtLeastOnce, false, 3)
        .await;
    inside.expect_quiet().await;

    // Retained messages live under the mount point too.
    inside
        .publish("r", b"kept", QoS::AtLeastOnce, true, 4)
        .await;
    assert_eq!(outside.recv_publish().await.topic.as_str(), "tenant/r");
    let mut late = Raw::connect(m_addr, "late", true).await;
    late.subscribe(1, &[("r", QoS::AtMostOnce)]).await;
    let m = late.recv_publish().await;
    assert_eq!((m.topic.as_str(), m.retain), ("r", true));
}

#[tokio::test]
async fn retain_available_false_closes_on_a_retained_publish() {
    // Mosquitto 2.0 closes the connection without PUBACK.
    let config = broker::Config {
        retain_available: false,
        ..broker::Config::default()
    };
    let b = TestBroker::with_config(config).await;
    let mut c = Raw::connect(b.addr, "r", true).await;
    c.publish("plain", b"ok", QoS::AtLeastOnce, false, 1).await;
    c.send(&publish_packet("kept", b"x", QoS::AtLeastOnce, true, 2))
        .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn per_listener_settings_give_each_listener_its_own_access_rules() {
    use broker::auth::{HashKind, PasswordHash};
    use broker::config::{ListenerOptions, ListenerSecurity};
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    std::fs::write(
        &pw,
        format!(
            "alice:{}\n",
            PasswordHash::new(HashKind::Sha512Pbkdf2, 101, b"secret")
        ),
    )
    .unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user alice\ntopic readwrite a/#\n").unwrap();
    // Listener 0: open, no ACL. Listener 1: passwords and an ACL.
    let open = broker::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let secured = broker::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let (open_addr, secured_addr) = (open.local_addr().unwrap(), secured.local_addr().unwrap());
    let config = Config {
        per_listener_settings: true,
        listener_options: vec![
            ListenerOptions {
                security: Some(ListenerSecurity {
                    allow_anonymous: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ListenerOptions {
                security: Some(ListenerSecurity {
                    allow_anonymous: false,
                    password_file: Some(pw),
                    acl_file: Some(acl),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        ..Config::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    tokio::spawn(broker::server::run_listeners(
        vec![open, secured],
        config,
        shutdown,
    ));

    let connack = |addr, user: Option<&'static str>| async move {
        let mut connect = connect_packet("c", true);
        connect.username = user.map(Into::into);
        connect.password = user.map(|_| bytes::Bytes::from_static(b"secret"));
        let mut c = Raw::open(addr).await;
        c.send(&Packet::Connect(connect)).await;
        match c.recv().await {
            Some(Packet::ConnAck(a)) => a.code,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    };
    assert_eq!(connack(open_addr, None).await, ConnectReturnCode::Accepted);
    assert_eq!(
        connack(secured_addr, None).await,
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        connack(secured_addr, Some("alice")).await,
        ConnectReturnCode::Accepted
    );

    // The secured listener's ACL binds its clients only.
    let mut connect = connect_packet("alice", true);
    connect.username = Some("alice".into());
    connect.password = Some(bytes::Bytes::from_static(b"secret"));
    let (mut alice, _) = Raw::connect_with(secured_addr, connect).await;
    let codes = alice
        .subscribe(1, &[("a/#", QoS::AtMostOnce), ("b/#", QoS::AtMostOnce)])
        .await;
    assert_eq!(
        codes,
        vec![
            broker::codec::SubackCode::Success(QoS::AtMostOnce),
            broker::codec::SubackCode::Failure
        ]
    );
    let mut anon = Raw::connect(open_addr, "anon", true).await;
    let codes = anon.subscribe(1, &[("b/#", QoS::AtMostOnce)]).await;
    assert_eq!(
        codes,
        vec![broker::codec::SubackCode::Success(QoS::AtMostOnce)]
    );
    // Delivery across listeners follows the receiver's rules.
    anon.publish("a/x", b"1", QoS::AtLeastOnce, false, 1).await;
    assert_eq!(alice.recv_publish().await.topic.as_str(), "a/x");
    anon.publish("b/x", b"2", QoS::AtLeastOnce, false, 2).await;
    assert_eq!(anon.recv_publish().await.topic.as_str(), "b/x");
    alice.expect_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_freed_by_a_close_is_available_to_an_immediate_reconnect() {
    // Mosquitto's own max_connections test closes every client and
    // reconnects at once: the freed slots must be usable then, although
    // the broker's tasks may not have seen the closes yet.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections 10\n");
    let _broker = Proc::with_config(dir.path(), &config, port).await;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    for round in 0..10 {
        let mut clients = Vec::new();
        for i in 0..10 {
            clients.push(Raw::connect(addr, &format!("c{round}-{i}"), true).await);
        }
        drop(clients);
    }
}
