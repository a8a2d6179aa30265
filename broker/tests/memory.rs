//! Memory bounds, measured as this process's resident set size. The
//! scenarios run one after the other in one test (and this file is its own
//! process), so that no other test's allocations blur the figures.

mod common;

use std::time::{Duration, Instant};

use broker::codec::{Packet, QoS};
use broker::Config;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded() {
    slow_subscriber_does_not_slow_publishers_or_grow_memory().await;
    queued_messages_do_not_pin_the_publishers_read_buffers().await;
}

/// Resident set size of this process in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

async fn slow_subscriber_does_not_slow_publishers_or_grow_memory() {
    let b = TestBroker::start().await;
    // A subscriber that never reads.
    let mut stalled = Raw::connect(b.addr, "stalled", true).await;
    stalled.subscribe(1, &[("t", QoS::AtLeastOnce)]).await;
    // A healthy subscriber that reads everything.
    let mut healthy = Raw::connect(b.addr, "healthy", true).await;
    healthy.subscribe(1, &[("t", QoS::AtMostOnce)]).await;

    let payload = vec![0x5a; 2048];
    const N: usize = 30_000; // 60 MB through the broker
    const BATCH: usize = 100;
    // The healthy subscriber reports its progress; the publisher stays at
    // most one batch ahead of it, so the healthy queue never overflows
    // whatever the machine's load, while the stalled one's backlog grows
    // to its limits.
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = tokio::spawn({
        let received = received.clone();
        async move {
            for _ in 0..N {
                let p = healthy.recv_publish().await;
                assert_eq!(p.payload.len(), 2048);
                received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    let before = rss();
    let batch: Vec<u8> = {
        let mut buf = bytes::BytesMut::new();
        for _ in 0..BATCH {
            broker::codec::encode(
                &publish_packet("t", &payload, QoS::AtMostOnce, false, 0),
                &mut buf,
            )
            .unwrap();
        }
        buf.to_vec()
    };
    let mut peak = before;
    for sent in (BATCH..=N).step_by(BATCH) {
        publisher.send_bytes(&batch).await;
        peak = peak.max(rss());
        let deadline = Instant::now() + TIMEOUT;
        while received.load(std::sync::atomic::Ordering::Relaxed) + BATCH < sent {
            assert!(
                Instant::now() < deadline,
                "healthy subscriber stalled at {sent}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    peak = peak.max(rss());
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 40 << 20,
        "memory grew by {} MiB for 60 MB sent to a stalled subscriber",
        growth >> 20
    );
    // The stalled subscriber got at most its queue's worth, and still
    // works once it reads.
    drop(stalled);
}

async fn queued_messages_do_not_pin_the_publishers_read_buffers() {
    // A stalled subscriber holds ~3 KB of small messages, each of which
    // arrived right behind a 1 MiB message: it must not keep 300 MiB of
    // read buffers alive.
    let mut config = Config::default();
    config.limits.max_queued_bytes = 10_000;
    config.limits.max_inflight = 1;
    let b = TestBroker::with_config(config).await;
    let mut sub = Raw::connect(b.addr, "slow", true).await;
    sub.subscribe(1, &[("small", QoS::AtLeastOnce)]).await;
    let mut publisher = Raw::connect(b.addr, "pub", true).await;
    publisher
        .publish("small", b"1", QoS::AtLeastOnce, false, 1)
        .await;
    publisher
        .publish("small", b"2", QoS::AtLeastOnce, false, 2)
        .await;
    let before = (rss() >> 20) as u64;
    let big = vec![b'B'; 1 << 20];
    let mut one = bytes::BytesMut::new();
    broker::codec::encode(
        &publish_packet("nobody", &big, QoS::AtMostOnce, false, 0),
        &mut one,
    )
    .unwrap();
    broker::codec::encode(
        &publish_packet("small", b"0123456789", QoS::AtMostOnce, false, 0),
        &mut one,
    )
    .unwrap();
    for _ in 0..300 {
        publisher.send_bytes(&one).await;
    }
    publisher.send(&Packet::PingReq).await;
    assert_eq!(publisher.recv().await, Some(Packet::PingResp));
    let after = (rss() >> 20) as u64;
    assert!(after < before + 64, "RSS grew from {before} to {after} MiB");
    drop(sub);
}
