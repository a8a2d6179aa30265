//! The `broker` binary's log file as an operator greps it: Mosquitto's
//! connection messages and disconnect reasons, `log_type` categories,
//! `log_timestamp` and `log_timestamp_format`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use broker::codec::{ByteStr, Packet, QoS, Subscribe, Unsubscribe};
use common::*;

/// A broker process writing to a log file; killed by PID on drop.
struct Logged {
    process: Proc,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Logged {
    /// Starts the broker with `extra` config lines after the listener and
    /// log file lines, and waits until it listens.
    async fn start(extra: &str) -> Logged {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("broker.log");
        let port = free_port();
        let config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest file {}\n{extra}\n",
            log.display()
        );
        let proc = Proc::with_config(dir.path(), &config, port).await;
        Logged {
            process: proc,
            addr: ([127, 0, 0, 1], port).into(),
            log,
            _dir: dir,
        }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The first line ending with `message`, waiting for it up to
    /// `TIMEOUT`.
    async fn wait_for(&self, message: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.ends_with(message)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no line ending with {message:?} in:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `2026-11-27T15:04:05` followed by `: `: the prefix `%Y-%m-%dT%H:%M:%S`
/// writes.
fn has_second_stamp(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() >= 21
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && &line[19..21] == ": "
}

#[tokio::test]
async fn connection_messages_and_disconnect_reasons() {
    let b = Logged::start("log_timestamp_format %Y-%m-%dT%H:%M:%S").await;

    // Username shown as u'...'; DISCONNECT.
    let mut connect = connect_packet("alice-c", true);
    connect.username = Some(ByteStr::from("alice"));
    let (mut alice, _) = Raw::connect_with(b.addr, connect).await;
    let port = alice.stream.local_addr().unwrap().port();
    let line = b
        .wait_for(&format!(
            "New client connected from 127.0.0.1:{port} as alice-c (p2, c1, k60, u'alice')."
        ))
        .await;
    assert!(has_second_stamp(&line), "{line}");
    alice.send(&Packet::Disconnect).await;
    alice.expect_closed().await;
    b.wait_for(": Client alice-c disconnected.").await;

    // No username: no u'...'.
    let anon = Raw::connect(b.addr, "anon", true).await;
    let port = anon.stream.local_addr().unwrap().port();
    b.wait_for(&format!(
        "New client connected from 127.0.0.1:{port} as anon (p2, c1, k60)."
    ))
    .await;

    // The socket closed without DISCONNECT.
    drop(anon);
    b.wait_for(": Client anon closed its connection.").await;

    // Keepalive 1 s: dropped after 1.5 s of silence.
    let mut connect = connect_packet("sleepy", true);
    connect.keep_alive = 1;
    let (mut sleepy, _) = Raw::connect_with(b.addr, connect).await;
    sleepy.expect_closed().await;
    b.wait_for(": Client sleepy has exceeded timeout, disconnecting.")
        .await;

    // A protocol error names the rule broken.
    let mut bad = Raw::connect(b.addr, "bad", true).await;
    bad.send_bytes(&[0x00, 0x00]).await;
    bad.expect_closed().await;
    b.wait_for(": Client bad disconnected due to protocol error: reserved packet type 0.")
        .await;

    // Takeover: logged when the new connection arrives.
    let mut old = Raw::connect(b.addr, "twin", true).await;
    let _new = Raw::connect(b.addr, "twin", true).await;
    old.expect_closed().await;
    b.wait_for(": Client twin already connected, closing old connection.")
        .await;

    // Default categories: no debug lines, no subscribe lines.
    let mut sub = Raw::connect(b.addr, "sub", true).await;
    sub.send(&Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![(ByteStr::from("a/b"), QoS::AtLeastOnce)],
    }))
    .await;
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));
    sub.send(&Packet::Disconnect).await;
    b.wait_for(": Client sub disconnected.").await;
    let lines = b.lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("received") || l.ends_with("sub 1 a/b")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| has_second_stamp(l)), "{lines:#?}");
}

#[tokio::test]
async fn not_authorised() {
    let b = Logged::start("allow_anonymous false").await;
    let mut c = Raw::open(b.addr).await;
    c.send(&Packet::Connect(connect_packet("stranger", true)))
        .await;
    assert!(matches!(c.recv().await, Some(Packet::ConnAck(_))));
    b.wait_for(": Client stranger disconnected, not authorised.")
        .await;
}

#[tokio::test]
async fn subscribe_category_only_without_timestamps() {
    let b = Logged::start("log_type subscribe\nlog_timestamp false").await;
    let mut c = Raw::connect(b.addr, "watcher", true).await;
    c.send(&Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![
            (ByteStr::from("a/b"), QoS::AtLeastOnce),
            (ByteStr::from("c/#"), QoS::AtMostOnce),
        ],
    }))
    .await;
    assert!(matches!(c.recv().await, Some(Packet::SubAck(_))));
    c.send(&Packet::Unsubscribe(Unsubscribe {
        pkid: 2,
        filters: vec![ByteStr::from("a/b")],
    }))
    .await;
    assert!(matches!(c.recv().await, Some(Packet::UnsubAck(2))));
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;
    // Give the writer a moment to catch up, then compare the whole file:
    // no connection messages, no unsubscribe line, no timestamps.
    b.wait_for("watcher 0 c/#").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(b.lines(), ["watcher 1 a/b", "watcher 0 c/#"]);
}

#[tokio::test]
async fn iso8601_timestamps_by_default_and_log_type_none() {
    let b = Logged::start("log_type unsubscribe\nlog_type notice").await;
    let mut c = Raw::connect(b.addr, "iso", true).await;
    c.send(&Packet::Unsubscribe(Unsubscribe {
        pkid: 2,
        filters: vec![ByteStr::from("x")],
    }))
    .await;
    assert!(matches!(c.recv().await, Some(Packet::UnsubAck(2))));
    let line = b.wait_for(": iso x").await;
    // 2026-11-27T15:04:05.123Z: iso x
    let (stamp, _) = line.split_once(": ").unwrap();
    assert_eq!(stamp.len(), 24, "{line}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
        "{line}"
    );
    assert!(has_second_stamp(&format!("{}: ", &stamp[..19])), "{line}");

    let none = Logged::start("log_type none").await;
    let _c = Raw::connect(none.addr, "quiet", true).await;
    tokio::time::sleep(QUIET).await;
    assert!(none.lines().is_empty(), "{:#?}", none.lines());
}

#[tokio::test]
async fn sighup_reopens_log_files_after_rotation() {
    let b = Logged::start("").await;
    let rotated = b.log.with_extension("log.1");
    std::fs::rename(&b.log, &rotated).unwrap();
    b.process.signal("-HUP");
    // The next connection is logged in a new file at the configured path.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = Raw::connect(b.addr, "after-rotation", true).await;
        c.send(&Packet::Disconnect).await;
        c.expect_closed().await;
        if b.lines().iter().any(|l| l.contains("as after-rotation")) {
            break;
        }
        assert!(Instant::now() < deadline, "no new log file after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.is_empty(), "the rotated file kept the earlier lines");
}
