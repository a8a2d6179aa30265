//! The raw MQTT 3.1.1 client side of the generator: connect, subscribe,
//! pipelined publishers and counting subscribers.
//!
//! Control packets (CONNECT, SUBSCRIBE, CONNACK, SUBACK) go through
//! `broker::codec`. The hot paths do not: a publisher copies a pre-encoded
//! PUBLISH into a batch buffer (patching the packet id) and writes many per
//! `write` call; a subscriber walks the frames in its read buffer in place
//! and allocates nothing per message. That keeps the generator well ahead of
//! any broker on one core.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::codec::{self, ByteStr, Connect, Packet, Protocol, QoS, SubackCode, Subscribe};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Every handshake step (connect, CONNACK, SUBACK) waits at most this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many bytes a publisher gathers before one `write` call.
const BATCH_BYTES: usize = 64 * 1024;

/// The instant latency timestamps count from: the publisher writes
/// nanoseconds since this into the payload and the subscriber, in the same
/// process, subtracts.
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// One connected client, after CONNACK.
pub struct Conn {
    pub stream: TcpStream,
    rbuf: BytesMut,
}

impl Conn {
    /// Opens a TCP connection and completes CONNECT/CONNACK (clean session).
    pub async fn connect(addr: SocketAddr, client_id: &str) -> Result<Conn> {
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(4096),
        };
        conn.send(&Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 600,
            client_id: ByteStr::from(client_id),
            will: None,
            username: None,
            password: None,
        }))
        .await?;
        match conn.recv().await? {
            Packet::ConnAck(ack) if ack.code == codec::ConnectReturnCode::Accepted => Ok(conn),
            other => bail!("expected CONNACK accepted, got {other:?}"),
        }
    }

    async fn send(&mut self, p: &Packet) -> Result<()> {
        let mut buf = BytesMut::new();
        codec::encode(p, &mut buf)?;
        self.stream.write_all(&buf).await?;
        Ok(())
    }

    /// The next control packet (handshakes only; bounded wait).
    async fn recv(&mut self) -> Result<Packet> {
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            if let Some(p) = codec::decode(&mut self.rbuf, usize::MAX)? {
                return Ok(p);
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf))
                .await
                .context("timed out waiting for the broker")??;
            if n == 0 {
                bail!("broker closed the connection");
            }
        }
    }

    /// Subscribes to `filters`, many per SUBSCRIBE and every SUBSCRIBE sent
    /// before the SUBACKs are awaited, so 100k filters take little time
    /// from the generator's side. Fails if any filter is refused.
    pub async fn subscribe(&mut self, filters: &[String], qos: QoS) -> Result<()> {
        const PER_PACKET: usize = 100;
        let mut buf = BytesMut::new();
        let mut packets = 0usize;
        for (i, chunk) in filters.chunks(PER_PACKET).enumerate() {
            let p = Packet::Subscribe(Subscribe {
                pkid: (i % 65535) as u16 + 1,
                filters: chunk
                    .iter()
                    .map(|f| (ByteStr::from(f.as_str()), qos))
                    .collect(),
            });
            codec::encode(&p, &mut buf)?;
            packets += 1;
        }
        self.stream.write_all(&buf).await?;
        for _ in 0..packets {
            match self.recv().await? {
                Packet::SubAck(ack) => {
                    if ack.codes.contains(&SubackCode::Failure) {
                        bail!("a subscription was refused");
                    }
                }
                other => bail!("expected SUBACK, got {other:?}"),
            }
        }
        Ok(())
    }
}

/// A complete frame at the front of `buf`: (first byte, header length,
/// remaining length). `Ok(None)` when more bytes are needed.
pub fn frame(buf: &[u8]) -> Result<Option<(u8, usize, usize)>> {
    let mut len = 0usize;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        len |= ((b & 0x7F) as usize) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if i > 4 {
            bail!("malformed remaining length from the broker");
        }
    }
    if buf.len() < i + len {
        return Ok(None);
    }
    Ok(Some((buf[0], i, len)))
}

/// A PUBLISH encoded once, to be copied for every send.
#[derive(Clone)]
pub struct Template {
    bytes: Vec<u8>,
    /// Where the packet id goes (QoS 1/2).
    pkid_at: Option<usize>,
    /// Where the 8-byte latency timestamp goes, if the payload has room.
    stamp_at: Option<usize>,
}

impl Template {
    pub fn new(topic: &str, qos: QoS, retain: bool, payload_len: usize) -> Result<Template> {
        let payload = vec![b'x'; payload_len];
        let mut buf = BytesMut::new();
        codec::encode_publish(false, qos, retain, topic, 1, &payload, &mut buf)?;
        let bytes = buf.to_vec();
        let (_, header_len, _) = frame(&bytes)?.context("template frame")?;
        let after_topic = header_len + 2 + topic.len();
        let pkid_at = (qos != QoS::AtMostOnce).then_some(after_topic);
        let payload_at = after_topic + if pkid_at.is_some() { 2 } else { 0 };
        Ok(Template {
            bytes,
            pkid_at,
            stamp_at: (payload_len >= 8).then_some(payload_at),
        })
    }

    fn append(&self, buf: &mut BytesMut, pkid: u16, stamp: bool) {
        let start = buf.len();
        buf.extend_from_slice(&self.bytes);
        if let Some(at) = self.pkid_at {
            buf[start + at..start + at + 2].copy_from_slice(&pkid.to_be_bytes());
        }
        if let (true, Some(at)) = (stamp, self.stamp_at) {
            buf[start + at..start + at + 8].copy_from_slice(&now_ns().to_be_bytes());
        }
    }
}

/// Keeps the publishers of a run at most `max_ahead` deliveries ahead of
/// their subscribers. Without it a QoS 0 publisher fills the socket buffers
/// (megabytes: hundreds of thousands of small messages) faster than a slow
/// broker drains them, and the run measures the drain, not the broker.
pub struct Pace {
    /// Messages published by all publishers of the run.
    pub published: AtomicU64,
    /// Deliveries counted by all subscribers of the run.
    pub delivered: Arc<AtomicU64>,
    /// Deliveries per published message.
    pub fan: u64,
    pub max_ahead: u64,
    /// Deliveries given up on: a broker that drops would otherwise stall
    /// the publishers for good.
    forgiven: AtomicU64,
    /// Woken by subscribers after each read that delivered something.
    pub wake: Arc<Notify>,
}

impl Pace {
    pub fn new(delivered: Arc<AtomicU64>, wake: Arc<Notify>, fan: u64, max_ahead: u64) -> Pace {
        Pace {
            published: AtomicU64::new(0),
            delivered,
            fan: fan.max(1),
            max_ahead: max_ahead.max(1),
            forgiven: AtomicU64::new(0),
            wake,
        }
    }

    fn ahead(&self) -> u64 {
        (self.published.load(Ordering::Relaxed) * self.fan)
            .saturating_sub(self.delivered.load(Ordering::Relaxed))
            .saturating_sub(self.forgiven.load(Ordering::Relaxed))
    }

    /// Waits until the subscribers caught up to below `max_ahead`; after
    /// 100 ms without progress the lag is taken as lost and forgiven.
    async fn wait(&self) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ahead = self.ahead();
            if ahead < self.max_ahead {
                return;
            }
            if tokio::time::timeout(Duration::from_millis(100), notified)
                .await
                .is_err()
            {
                self.forgiven.fetch_add(ahead, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// How a publisher sends.
#[derive(Clone)]
pub struct PublishPlan {
    /// Cycled through, one message each.
    pub templates: Vec<Template>,
    pub count: u64,
    pub qos: QoS,
    /// Unacknowledged QoS 1/2 messages allowed at once.
    pub window: usize,
    /// Messages per second; `None` = as fast as the broker takes them.
    pub rate: Option<f64>,
    /// Write a timestamp into each payload (latency).
    pub stamp: bool,
    /// Stop sending at this instant even if `count` is not reached.
    pub deadline: Instant,
    /// Shared with the other publishers and the subscribers of the run.
    pub pace: Option<Arc<Pace>>,
}

/// What one publisher did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublishResult {
    pub sent: u64,
    /// PUBACKs (QoS 1) or PUBCOMPs (QoS 2) received.
    pub completed: u64,
}

/// Sends `plan.count` messages on `conn`, pipelined: QoS 0 in 64 KiB
/// batches, QoS 1/2 within the window, acks read without blocking between
/// batches. A single task: the ack traffic a window can cause is far below
/// a socket buffer, so the writes cannot deadlock against unread acks.
pub async fn publish(mut conn: Conn, plan: PublishPlan) -> Result<PublishResult> {
    let mut wbuf = BytesMut::with_capacity(BATCH_BYTES + 4096);
    let mut res = PublishResult::default();
    let mut inflight = 0usize;
    let mut pkid: u16 = 0;
    let mut next = 0usize;
    let window = if plan.qos == QoS::AtMostOnce {
        usize::MAX
    } else {
        plan.window.max(1)
    };
    let mut ticker = plan.rate.map(|r| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    loop {
        let stop = Instant::now() >= plan.deadline;
        if !stop {
            if let Some(t) = ticker.as_mut() {
                if res.sent < plan.count && inflight < window {
                    t.tick().await;
                }
            }
        }
        // A batch may use a quarter of the pacing budget.
        let mut batch_left = u64::MAX;
        if let (false, Some(p)) = (stop, plan.pace.as_ref()) {
            if p.ahead() >= p.max_ahead {
                p.wait().await;
            }
            batch_left = (p.max_ahead / 4 / p.fan).max(1);
        }
        let sent_before = res.sent;
        while !stop
            && res.sent < plan.count
            && inflight < window
            && wbuf.len() < BATCH_BYTES
            && res.sent - sent_before < batch_left
        {
            pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            plan.templates[next].append(&mut wbuf, pkid, plan.stamp);
            next = (next + 1) % plan.templates.len();
            res.sent += 1;
            if plan.qos != QoS::AtMostOnce {
                inflight += 1;
            }
            if ticker.is_some() {
                break;
            }
        }
        if let Some(p) = plan.pace.as_ref() {
            p.published
                .fetch_add(res.sent - sent_before, Ordering::Relaxed);
        }
        if !wbuf.is_empty() {
            conn.stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
        let done_sending = stop || res.sent >= plan.count;
        if plan.qos == QoS::AtMostOnce {
            if done_sending {
                break;
            }
            continue;
        }
        if done_sending && inflight == 0 {
            break;
        }
        // Harvest acks: block only when nothing else can be done.
        let must_wait = inflight >= window || done_sending;
        if must_wait {
            let left = plan
                .deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(200));
            match tokio::time::timeout(left, conn.stream.read_buf(&mut conn.rbuf)).await {
                Err(_) => break, // acks stopped coming: count what completed
                Ok(Ok(0)) => bail!("broker closed a publisher's connection"),
                Ok(r) => {
                    r?;
                }
            }
        } else {
            match conn.stream.try_read_buf(&mut conn.rbuf) {
                Ok(0) => bail!("broker closed a publisher's connection"),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        while let Some((b1, h, len)) = frame(&conn.rbuf)? {
            let id = if len >= 2 {
                u16::from_be_bytes([conn.rbuf[h], conn.rbuf[h + 1]])
            } else {
                0
            };
            match b1 >> 4 {
                4 | 7 => {
                    inflight = inflight.saturating_sub(1);
                    res.completed += 1;
                }
                5 => wbuf.extend_from_slice(&[0x62, 2, (id >> 8) as u8, id as u8]),
                _ => {}
            }
            conn.rbuf.advance(h + len);
        }
    }
    // Flush the last PUBRELs (QoS 2 stopped by the deadline).
    if !wbuf.is_empty() {
        conn.stream.write_all(&wbuf).await?;
    }
    Ok(res)
}

/// What one subscriber received.
#[derive(Debug)]
pub struct SubscribeResult {
    pub delivered: u64,
    pub last_at: Option<Instant>,
    /// End-to-end latency in nanoseconds, when stamps were asked for.
    pub latency: Option<Histogram<u64>>,
}

/// Counts PUBLISHes on `conn` (acknowledging QoS 1/2) until `expected`
/// arrived or `stop` is cancelled. Every delivery also bumps `total`, which
/// the scenario watches to see when traffic has stopped, and wakes `wake`
/// (the publishers' [`Pace`]). With `stamps`, the first `skip` messages are
/// not recorded (warm-up).
#[allow(clippy::too_many_arguments)]
pub async fn receive(
    mut conn: Conn,
    expected: u64,
    total: Arc<AtomicU64>,
    wake: Option<Arc<Notify>>,
    stamps: bool,
    skip: u64,
    stop: CancellationToken,
) -> Result<SubscribeResult> {
    let mut res = SubscribeResult {
        delivered: 0,
        last_at: None,
        latency: if stamps {
            Some(Histogram::new_with_bounds(1, 60_000_000_000, 3)?)
        } else {
            None
        },
    };
    let mut wbuf = BytesMut::new();
    let mut rbuf = std::mem::take(&mut conn.rbuf);
    rbuf.reserve(256 * 1024);
    while res.delivered < expected {
        // Reading is cancel-safe; the acks are written outside the select.
        let n = tokio::select! {
            r = conn.stream.read_buf(&mut rbuf) => r?,
            _ = stop.cancelled() => break,
        };
        if n == 0 {
            bail!("broker closed a subscriber's connection");
        }
        let now = Instant::now();
        let mut batch = 0u64;
        let mut pos = 0usize;
        while let Some((b1, h, len)) = frame(&rbuf[pos..])? {
            let body = &rbuf[pos + h..pos + h + len];
            match b1 >> 4 {
                3 => {
                    batch += 1;
                    let qos = (b1 >> 1) & 3;
                    let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
                    let mut at = 2 + tlen;
                    if qos > 0 {
                        let id = [body[at], body[at + 1]];
                        at += 2;
                        let kind = if qos == 1 { 0x40 } else { 0x50 };
                        wbuf.extend_from_slice(&[kind, 2, id[0], id[1]]);
                    }
                    if let Some(h) = res.latency.as_mut() {
                        if res.delivered + batch > skip && body.len() >= at + 8 {
                            let mut ts = [0u8; 8];
                            ts.copy_from_slice(&body[at..at + 8]);
                            let sent = u64::from_be_bytes(ts);
                            let ns = (now - origin()).as_nanos() as u64;
                            h.saturating_record(ns.saturating_sub(sent).max(1));
                        }
                    }
                }
                6 => wbuf.extend_from_slice(&[0x70, 2, body[0], body[1]]),
                _ => {}
            }
            pos += h + len;
        }
        rbuf.advance(pos);
        if batch > 0 {
            res.delivered += batch;
            res.last_at = Some(now);
            total.fetch_add(batch, Ordering::Relaxed);
            if let Some(w) = &wake {
                w.notify_waiters();
            }
        }
        if !wbuf.is_empty() {
            conn.stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
    }
    Ok(res)
}
