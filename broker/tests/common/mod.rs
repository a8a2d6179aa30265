//! Test support: a real broker on an ephemeral loopback port, and a raw
//! MQTT client that speaks bytes with a timeout on every receive.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use broker::codec::{self, ByteStr, Codec, Connect, LastWill, Packet, Protocol, Publish, QoS};
use broker::Config;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

/// Every receive in the tests waits at most this long.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);

pub struct TestBroker {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        TestBroker::with_config(Config::default()).await
    }

    pub async fn with_config(config: Config) -> TestBroker {
        let listener = broker::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(broker::server::run(listener, config, shutdown.clone()));
        TestBroker {
            addr,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops the broker and waits (bounded) until every connection ended.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("broker stops within the timeout")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Raw {
    pub stream: TcpStream,
    rbuf: BytesMut,
    codec: Codec,
}

impl Raw {
    pub async fn open(addr: SocketAddr) -> Raw {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timeout")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            rbuf: BytesMut::new(),
            codec: Codec::default(),
        }
    }

    /// Opens a connection and completes CONNECT/CONNACK; returns the
    /// session-present flag too.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (Raw, bool) {
        let mut c = Raw::open(addr).await;
        c.send(&Packet::Connect(connect)).await;
        match c.recv().await {
            Some(Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, codec::ConnectReturnCode::Accepted);
                (c, ack.session_present)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn connect(addr: SocketAddr, id: &str, clean: bool) -> Raw {
        Raw::connect_with(addr, connect_packet(id, clean)).await.0
    }

    pub async fn send(&mut self, p: &Packet) {
        let mut buf = BytesMut::new();
        codec::encode(p, &mut buf).unwrap();
        self.send_bytes(&buf).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        tokio::time::timeout(TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("write timeout")
            .expect("write");
    }

    /// The next packet; `None` when the broker closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(TIMEOUT)
            .await
            .expect("timed out waiting for a packet")
    }

    /// The next packet within `d`: `Err(())` on timeout, `Ok(None)` when
    /// closed.
    pub async fn recv_within(&mut self, d: Duration) -> Result<Option<Packet>, ()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(p) = self
                .codec
                .decode(&mut self.rbuf)
                .expect("broker sent a bad packet")
            {
                return Ok(Some(p));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Asserts that nothing arrives for a short while.
    pub async fn expect_quiet(&mut self) {
        match self.recv_within(QUIET).await {
            Err(()) => {}
            Ok(p) => panic!("expected nothing, got {p:?}"),
        }
    }

    /// Asserts that the broker closes the connection (without sending
    /// anything else first).
    pub async fn expect_closed(&mut self) {
        match self.recv_within(TIMEOUT).await {
            Ok(None) => {}
            Ok(Some(p)) => panic!("expected the connection to close, got {p:?}"),
            Err(()) => panic!("connection was not closed within {TIMEOUT:?}"),
        }
    }

    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Completes the subscriber's side of a delivery: PUBACK for QoS 1;
    /// PUBREC, the broker's PUBREL, PUBCOMP for QoS 2 [MQTT-4.3.3-1].
    pub async fn ack(&mut self, p: &Publish) {
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(&Packet::PubAck(p.pkid)).await,
            QoS::ExactlyOnce => {
                self.send(&Packet::PubRec(p.pkid)).await;
                assert_eq!(self.recv().await, Some(Packet::PubRel(p.pkid)));
                self.send(&Packet::PubComp(p.pkid)).await;
            }
        }
    }

    pub async fn subscribe(
        &mut self,
        pkid: u16,
        filters: &[(&str, QoS)],
    ) -> Vec<codec::SubackCode> {
        self.send(&Packet::Subscribe(codec::Subscribe {
            pkid,
            filters: filters
                .iter()
                .map(|(f, q)| (ByteStr::from(*f), *q))
                .collect(),
        }))
        .await;
        match self.recv().await {
            Some(Packet::SubAck(ack)) => {
                assert_eq!(ack.pkid, pkid);
                ack.codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS handshake as a publisher.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        pkid: u16,
    ) {
        self.send(&publish_packet(topic, payload, qos, retain, pkid))
            .await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert_eq!(self.recv().await, Some(Packet::PubAck(pkid))),
            QoS::ExactlyOnce => {
                assert_eq!(self.recv().await, Some(Packet::PubRec(pkid)));
                self.send(&Packet::PubRel(pkid)).await;
                assert_eq!(self.recv().await, Some(Packet::PubComp(pkid)));
            }
        }
    }
}

pub fn connect_packet(id: &str, clean: bool) -> Connect {
    Connect {
        protocol: Protocol::V311,
        clean_session: clean,
        keep_alive: 60,
        client_id: ByteStr::from(id),
        will: None,
        username: None,
        password: None,
    }
}

pub fn with_will(mut c: Connect, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Connect {
    c.will = Some(LastWill {
        topic: ByteStr::from(topic),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
    });
    c
}

pub fn publish_packet(topic: &str, payload: &[u8], qos: QoS, retain: bool, pkid: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: ByteStr::from(topic),
        pkid,
        payload: Bytes::copy_from_slice(payload),
    })
}

/// The broker binary of this package.
pub const BIN: &str = env!("CARGO_BIN_EXE_broker");

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker process, killed by its PID on drop if still running.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Runs the broker with `args`; stderr piped, stdout discarded.
    pub fn spawn(args: &[&str]) -> Proc {
        Proc(
            std::process::Command::new(BIN)
                .args(args)
                .env_remove("BROKER_LOG")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    /// Writes `config` to `dir/broker.conf`, runs the broker with it
    /// (output discarded) and waits until it listens on `port`.
    pub async fn with_config(dir: &std::path::Path, config: &str, port: u16) -> Proc {
        let conf = dir.join("broker.conf");
        std::fs::write(&conf, config).unwrap();
        let p = Proc(
            std::process::Command::new(BIN)
                .arg("-c")
                .arg(&conf)
                .env_remove("BROKER_LOG")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_listening(port).await;
        p
    }

    /// Sends a signal (`-TERM`, `-HUP`, ...) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "broker did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits (bounded) until something listens on 127.0.0.1:`port`.
pub async fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "broker did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
