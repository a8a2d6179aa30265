//! Persistence benchmark: prints figures (not a timed test).
//!
//! - QoS 1 publish throughput into a persistent session's queue and for
//!   retained updates, with persistence off, durable (fsync before PUBACK,
//!   the default) and relaxed (`persistence_sync_interval 100`), side by side
//!   in one run.
//! - Startup time (store open + load into the router) with 100k and 1M
//!   retained messages of 100 bytes (`BENCH_STORE_FULL=0` skips the 1M case).
//!
//! `cargo bench -p broker --bench store`

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::codec::{self, ByteStr, Codec, Connect, Packet, Protocol, Publish, QoS};
use broker::store::{Durability, Op, Store};
use broker::Config;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

struct Client {
    stream: TcpStream,
    rbuf: BytesMut,
    codec: Codec,
}

impl Client {
    async fn connect(addr: SocketAddr, id: &str, clean: bool) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = Client {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            codec: Codec::default(),
        };
        c.send(&[Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: clean,
            keep_alive: 0,
            client_id: ByteStr::from(id),
            will: None,
            username: None,
            password: None,
        })])
        .await;
        assert!(matches!(c.recv().await, Packet::ConnAck(_)));
        c
    }

    async fn send(&mut self, packets: &[Packet]) {
        let mut buf = BytesMut::new();
        for p in packets {
            codec::encode(p, &mut buf).unwrap();
        }
        self.stream.write_all(&buf).await.unwrap();
    }

    async fn recv(&mut self) -> Packet {
        loop {
            if let Some(p) = self.codec.decode(&mut self.rbuf).unwrap() {
                return p;
            }
            let n = tokio::time::timeout(
                Duration::from_secs(30),
                self.stream.read_buf(&mut self.rbuf),
            )
            .await
            .expect("broker answers within 30 s")
            .unwrap();
            assert!(n > 0, "broker closed the connection");
        }
    }
}

/// Publishes `n` QoS 1 messages with up to `window` unacknowledged;
/// returns messages per second.
async fn publish_qos1(addr: SocketAddr, n: usize, window: usize, retained: bool) -> f64 {
    let mut c = Client::connect(addr, "bench-pub", true).await;
    let payload = Bytes::from(vec![0x42u8; 100]);
    let start = Instant::now();
    let mut sent = 0usize;
    let mut acked = 0usize;
    while acked < n {
        let mut batch = Vec::new();
        while sent < n && sent - acked < window {
            let topic = if retained {
                format!("retained/{}", sent % 1000)
            } else {
                "queue/x".to_owned()
            };
            batch.push(Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: retained,
                topic: ByteStr::from(topic),
                pkid: (sent % 65_000) as u16 + 1,
                payload: payload.clone(),
            }));
            sent += 1;
        }
        if !batch.is_empty() {
            c.send(&batch).await;
        }
        match c.recv().await {
            Packet::PubAck(_) => acked += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn scenario(name: &str, dir: &Path, persistence: bool, sync_ms: u64, retained: bool) {
    let config = Config {
        persistence,
        persistence_location: dir.to_owned(),
        persistence_sync_interval: Duration::from_millis(sync_ms),
        ..Config::default()
    };
    let mut config = config;
    config.limits.max_queued = 1_000_000;
    let listener = broker::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(broker::server::run(listener, config, shutdown.clone()));
    if !retained {
        // An offline persistent session whose queue takes every message.
        let mut s = Client::connect(addr, "bench-sub", false).await;
        s.send(&[Packet::Subscribe(codec::Subscribe {
            pkid: 1,
            filters: vec![(ByteStr::from("queue/#"), QoS::AtLeastOnce)],
        })])
        .await;
        s.recv().await;
        s.send(&[Packet::Disconnect]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n = if persistence && sync_ms == 0 {
        20_000
    } else {
        50_000
    };
    let rate = publish_qos1(addr, n, 100, retained).await;
    shutdown.cancel();
    server.await.unwrap().unwrap();
    println!("{name:<52} {rate:>10.0} msg/s   ({n} messages, window 100)");
    println!(
        "{{\"bench\":\"store\",\"scenario\":\"{name}\",\"msg_per_s\":{rate:.0},\"messages\":{n}}}"
    );
}

fn startup(count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (store, _) = Store::open(&path, Durability::Every(Duration::from_secs(1)), false).unwrap();
    let payload = Bytes::from(vec![0x42u8; 100]);
    let fill = Instant::now();
    for i in 0..count {
        store.append(Op::PutRetained {
            topic: ByteStr::from(format!("site/{}/dev/{}/temp", i / 100, i % 100)),
            qos: QoS::AtLeastOnce,
            payload: payload.clone(),
        });
        if i % 10_000 == 0 {
            while store.overloaded() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    store.close();
    let fill = fill.elapsed();
    let start = Instant::now();
    let (store, recovered) = Store::open(&path, Durability::Sync, false).unwrap();
    let opened = start.elapsed();
    let loaded = recovered.retained.len();
    let router = broker::router::Router::with_store(store.clone(), recovered, Default::default());
    let elapsed = start.elapsed();
    println!(
        "  store open + read: {:.0} ms, router build: {:.0} ms",
        opened.as_secs_f64() * 1000.0,
        (elapsed - opened).as_secs_f64() * 1000.0
    );
    assert_eq!(loaded, count);
    assert_eq!(router.retained_count(), count);
    store.close();
    println!(
        "startup with {count:>8} retained messages of 100 B:  {:>7.0} ms  (store written in {:.1} s)",
        elapsed.as_secs_f64() * 1000.0,
        fill.as_secs_f64()
    );
    println!(
        "{{\"bench\":\"store\",\"scenario\":\"startup\",\"retained\":{count},\"ms\":{:.0}}}",
        elapsed.as_secs_f64() * 1000.0
    );
    drop(Arc::clone(&store));
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let only_startup = std::env::var("BENCH_STORE_ONLY_STARTUP").is_ok();
        for (name, persistence, sync_ms, retained) in [
            (
                "queue for offline persistent session, no persistence",
                false,
                0,
                false,
            ),
            (
                "queue for offline persistent session, durable",
                true,
                0,
                false,
            ),
            (
                "queue for offline persistent session, relaxed 100 ms",
                true,
                100,
                false,
            ),
            (
                "retained updates (1000 topics), no persistence",
                false,
                0,
                true,
            ),
            ("retained updates (1000 topics), durable", true, 0, true),
            (
                "retained updates (1000 topics), relaxed 100 ms",
                true,
                100,
                true,
            ),
        ] {
            if only_startup {
                break;
            }
            let dir = tempfile::tempdir().unwrap();
            scenario(name, dir.path(), persistence, sync_ms, retained).await;
        }
    });
    startup(100_000);
    if std::env::var("BENCH_STORE_FULL").as_deref() != Ok("0") {
        startup(1_000_000);
    }
}
