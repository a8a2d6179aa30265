//! Options that change who may connect and what is delivered:
//! `clientid_prefixes`, `upgrade_outgoing_qos`, `check_retain_source`,
//! `max_inflight_bytes`, per-listener `max_connections` and `mount_point`,
//! `per_listener_settings`. Each checked against Mosquitto 2.0's behaviour.

mod common;

use broker::codec::{ConnectReturnCode, Packet};
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
