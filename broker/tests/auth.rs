//! Passwords and ACLs as a client sees them: CONNACK codes, SUBACK 0x80,
//! silently dropped publishes, retained messages filtered by read access,
//! and SIGHUP reload in the real binary.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use broker::auth::{HashKind, PasswordHash};
use broker::codec::{ConnectReturnCode, Packet, QoS, SubackCode};
use broker::Config;
use common::*;

fn password_line(user: &str, password: &str) -> String {
    format!(
        "{user}:{}\n",
        PasswordHash::new(HashKind::Sha512Pbkdf2, 101, password.as_bytes())
    )
}

fn secured(dir: &Path, acl: Option<&str>) -> Config {
    let pw = dir.join("passwd");
    std::fs::write(
        &pw,
        password_line("alice", "secret") + &password_line("bob", "hunter2"),
    )
    .unwrap();
    let acl_file = acl.map(|text| {
        let p = dir.join("acl");
        std::fs::write(&p, text).unwrap();
        p
    });
    Config {
        allow_anonymous: false,
        password_file: Some(pw),
        acl_file,
        ..Config::default()
    }
}

async fn connack(
    addr: std::net::SocketAddr,
    user: Option<&str>,
    password: Option<&str>,
) -> ConnectReturnCode {
    let mut connect = connect_packet("c", true);
    connect.username = user.map(Into::into);
    connect.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    let mut c = Raw::open(addr).await;
    c.send(&Packet::Connect(connect)).await;
    match c.recv().await {
        Some(Packet::ConnAck(a)) => a.code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

async fn login(b: &TestBroker, id: &str, user: &str, password: &str) -> Raw {
    let mut connect = connect_packet(id, true);
    connect.username = Some(user.into());
    connect.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
    Raw::connect_with(b.addr, connect).await.0
}

#[tokio::test]
async fn password_file_decides_who_connects() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::with_config(secured(dir.path(), None)).await;
    assert_eq!(
        connack(b.addr, Some("alice"), Some("secret")).await,
        ConnectReturnCode::Accepted
    );
    // Mosquitto 2.0 answers 5 (not authorised) for every refusal.
    assert_eq!(
        connack(b.addr, Some("alice"), Some("wrong")).await,
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        connack(b.addr, Some("mallory"), Some("secret")).await,
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        connack(b.addr, Some("alice"), None).await,
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        connack(b.addr, None, None).await,
        ConnectReturnCode::NotAuthorized
    );
}

#[tokio::test]
async fn anonymous_clients_allowed_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        allow_anonymous: true,
        ..secured(dir.path(), None)
    };
    let b = TestBroker::with_config(config).await;
    assert_eq!(
        connack(b.addr, None, None).await,
        ConnectReturnCode::Accepted
    );
    assert_eq!(
        connack(b.addr, Some("alice"), Some("wrong")).await,
        ConnectReturnCode::NotAuthorized
    );
}

const ACL: &str = "\
# anonymous: nothing
user alice
topic readwrite sensors/#
topic deny sensors/secret
topic write cmd/#
user bob
topic read sensors/+/temp
pattern readwrite clients/%u/#
";

#[tokio::test]
async fn acl_governs_subscribe_publish_and_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::with_config(secured(dir.path(), Some(ACL))).await;
    let mut alice = login(&b, "a", "alice", "secret").await;
    let mut bob = login(&b, "b", "bob", "hunter2").await;

    // SUBACK 0x80 for filters the client may not read, deny included.
    let codes = bob
        .subscribe(
            1,
            &[
                ("sensors/#", QoS::AtLeastOnce),
                ("sensors/+/temp", QoS::AtLeastOnce),
                ("clients/bob/#", QoS::AtMostOnce),
            ],
        )
        .await;
    assert_eq!(
        codes,
        vec![
            SubackCode::Failure,
            SubackCode::Success(QoS::AtLeastOnce),
            SubackCode::Success(QoS::AtMostOnce)
        ]
    );
    let codes = alice
        .subscribe(
            1,
            &[("sensors/#", QoS::AtMostOnce), ("cmd/#", QoS::AtMostOnce)],
        )
        .await;
    assert_eq!(
        codes,
        vec![SubackCode::Success(QoS::AtMostOnce), SubackCode::Failure]
    );

    // Bob may not write sensors/...: dropped silently, handshake complete.
    bob.publish("sensors/1/temp", b"forged", QoS::AtLeastOnce, false, 1)
        .await;
    alice.expect_quiet().await;
    // Alice may; bob receives what he may read.
    alice
        .publish("sensors/1/temp", b"21.5", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(&bob.recv_publish().await.payload[..], b"21.5");
    assert_eq!(&alice.recv_publish().await.payload[..], b"21.5");
    // A denied topic is not delivered even under an allowed filter, and
    // alice cannot write it either.
    alice
        .publish("sensors/secret", b"x", QoS::AtLeastOnce, false, 2)
        .await;
    alice.expect_quiet().await;
    // %u patterns.
    bob.publish("clients/bob/status", b"up", QoS::AtMostOnce, false, 0)
        .await;
    assert_eq!(&bob.recv_publish().await.payload[..], b"up");
}

#[tokio::test]
async fn retained_messages_are_filtered_by_read_access() {
    let dir = tempfile::tempdir().unwrap();
    let acl = "user alice\ntopic readwrite #\nuser bob\ntopic read r/#\ntopic deny r/hidden\n";
    let b = TestBroker::with_config(secured(dir.path(), Some(acl))).await;
    let mut alice = login(&b, "a", "alice", "secret").await;
    alice
        .publish("r/open", b"1", QoS::AtLeastOnce, true, 1)
        .await;
    alice
        .publish("r/hidden", b"2", QoS::AtLeastOnce, true, 2)
        .await;
    let mut bob = login(&b, "b", "bob", "hunter2").await;
    bob.subscribe(1, &[("r/#", QoS::AtMostOnce)]).await;
    let m = bob.recv_publish().await;
    assert_eq!(m.topic.as_str(), "r/open");
    bob.expect_quiet().await;
}

#[tokio::test]
async fn sighup_reloads_passwords_and_keeps_old_rules_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pw = dir.path().join("passwd");
    std::fs::write(&pw, password_line("alice", "one")).unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user alice\ntopic readwrite #\n").unwrap();
    let config = format!(
        "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\n",
        pw.display(),
        acl.display()
    );
    let mut broker = Proc::with_config(dir.path(), &config, port).await;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(
        connack(addr, Some("alice"), Some("one")).await,
        ConnectReturnCode::Accepted
    );

    std::fs::write(&pw, password_line("alice", "two")).unwrap();
    broker.signal("-HUP");
    let deadline = Instant::now() + TIMEOUT;
    while connack(addr, Some("alice"), Some("two")).await != ConnectReturnCode::Accepted {
        assert!(Instant::now() < deadline, "reload did not take effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        connack(addr, Some("alice"), Some("one")).await,
        ConnectReturnCode::NotAuthorized
    );

    // A broken ACL file on reload: the old rules stay, the broker lives.
    std::fs::write(&acl, "bogus line here\n").unwrap();
    broker.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        broker.0.try_wait().unwrap().is_none(),
        "broker still running"
    );
    assert_eq!(
        connack(addr, Some("alice"), Some("two")).await,
        ConnectReturnCode::Accepted
    );
}

#[tokio::test]
async fn check_subcommand_works_with_authentication_on() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::with_config(secured(dir.path(), None)).await;
    let port = b.addr.port().to_string();
    let check = |extra: &'static [&'static str]| {
        let port = port.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_broker"))
                .args(["check", "-h", "127.0.0.1", "-p", &port])
                .args(extra)
                .output()
                .unwrap()
                .status
                .success()
        })
    };
    // A container health check without credentials: the broker answered.
    assert!(check(&[]).await.unwrap());
    assert!(check(&["-u", "alice", "-P", "secret"]).await.unwrap());
    assert!(!check(&["-u", "alice", "-P", "wrong"]).await.unwrap());
}
