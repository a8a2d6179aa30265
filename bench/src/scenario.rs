//! The scenarios: each sets up its clients, measures one interval with the
//! broker's CPU seconds around it, and returns a [`Report`]. Every scenario
//! is bounded by a message count and by a deadline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::codec::{self, ByteStr, Packet, QoS, Subscribe};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Conn, Pace, PublishPlan, Template};
use crate::proc::{self, CpuMark};
use crate::report::Report;

/// The broker under test: where it listens and which process to measure.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub addr: SocketAddr,
    pub pid: u32,
}

/// After the publishers finish, a run ends once no delivery arrived for
/// this long (the rest counts as lost).
const QUIET: Duration = Duration::from_millis(300);

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 100;

/// One scenario and its parameters (also the `mqtt-bench` subcommands).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// 1 publisher -> 1 subscriber at a fixed rate; end-to-end latency.
    Latency(LatencyArgs),
    /// P publishers -> S subscribers, or P pairs; deliveries per second.
    Throughput(ThroughputArgs),
    /// N idle connections; broker RSS per connection, connect rate.
    Connections(ConnectionsArgs),
    /// N mixed exact/wildcard subscriptions; throughput to topics that
    /// match one of them.
    Subscriptions(SubscriptionsArgs),
    /// N retained topics; time until a new subscriber has all of `#`, and
    /// a narrow filter's.
    Retained(RetainedArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct LatencyArgs {
    /// Messages per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Messages sent (the first 10% are warm-up, not recorded).
    #[arg(long, default_value_t = 3000)]
    pub count: u64,
    #[arg(long, default_value_t = 16)]
    pub size: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ThroughputArgs {
    #[arg(long, default_value_t = 1)]
    pub pubs: usize,
    #[arg(long, default_value_t = 1)]
    pub subs: usize,
    /// Publisher i -> subscriber i on its own topic (`--subs` is ignored).
    #[arg(long)]
    pub pairwise: bool,
    #[arg(long, default_value_t = 0, value_parser = parse_qos)]
    pub qos: u8,
    /// Payload bytes.
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Messages per publisher.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Unacknowledged QoS 1/2 messages per publisher.
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Publishing stops after this many seconds whatever the count.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionsArgs {
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SubscriptionsArgs {
    /// Subscriptions in all (a quarter exact, the rest wildcards).
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Subscriber connections the subscriptions are spread over.
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Messages published (QoS 0, 16 B), each matching one subscription.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RetainedArgs {
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    #[arg(long, default_value_t = 16)]
    pub size: usize,
}

fn parse_qos(s: &str) -> Result<u8, String> {
    match s {
        "0" | "1" | "2" => Ok(s.parse().unwrap_or(0)),
        _ => Err("QoS is 0, 1 or 2".into()),
    }
}

fn qos_of(q: u8) -> QoS {
    QoS::from_u8(q).unwrap_or(QoS::AtMostOnce)
}

impl Scenario {
    /// A short label with the parameters that matter.
    pub fn label(&self) -> String {
        match self {
            Scenario::Latency(a) => format!("latency 1->1 {}/s {}B", a.rate, a.size),
            Scenario::Throughput(a) => {
                let shape = if a.pairwise {
                    format!("{}<->{}", a.pubs, a.pubs)
                } else {
                    format!("{}->{}", a.pubs, a.subs)
                };
                format!("throughput {shape} q{} {}B", a.qos, a.size)
            }
            Scenario::Connections(a) => format!("connections {}", a.count),
            Scenario::Subscriptions(a) => format!("subscriptions {}", a.count),
            Scenario::Retained(a) => format!("retained {}", a.count),
        }
    }

    pub async fn run(&self, target: Target) -> Result<Report> {
        let label = self.label();
        match self {
            Scenario::Latency(a) => latency(target, a, label).await,
            Scenario::Throughput(a) => throughput(target, a, label).await,
            Scenario::Connections(a) => connections(target, a, label).await,
            Scenario::Subscriptions(a) => subscriptions(target, a, label).await,
            Scenario::Retained(a) => retained(target, a, label).await,
        }
        .with_context(|| self.label())
    }
}

/// A prefix that keeps this run's topics and client ids apart from any
/// other run against the same broker.
fn run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), t % 0xFFFF_FFFF)
}

/// Opens `ids.len()` connections, [`CONNECT_CONCURRENCY`] at a time; the
/// result is in the order of `ids`.
async fn connect_many(addr: SocketAddr, ids: Vec<String>) -> Result<Vec<Conn>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CONNECT_CONCURRENCY) {
        let mut set = JoinSet::new();
        for (i, id) in chunk.iter().enumerate() {
            let id = id.clone();
            set.spawn(async move { (i, Conn::connect(addr, &id).await) });
        }
        let mut got: Vec<Option<Conn>> = (0..chunk.len()).map(|_| None).collect();
        while let Some(r) = set.join_next().await {
            let (i, c) = r?;
            got[i] = Some(c?);
        }
        out.extend(got.into_iter().flatten());
    }
    Ok(out)
}

/// What the subscribers of one measured interval received.
struct Delivery {
    delivered: u64,
    /// From the start of publishing to the last delivery.
    interval: Duration,
    latency: Option<hdrhistogram::Histogram<u64>>,
}

/// Runs publishers and subscribers (already connected and subscribed) until
/// every publisher finished and deliveries stopped (all `expected` arrived,
/// or nothing for [`QUIET`]). `expected` is computed from what was actually
/// published via `fan`: deliveries per published message.
#[allow(clippy::too_many_arguments)]
async fn drive(
    pubs: Vec<(Conn, PublishPlan)>,
    subs: Vec<(Conn, u64)>,
    stamps: bool,
    skip: u64,
    fan: u64,
    max_ahead: u64,
    start: Instant,
    hard_deadline: Instant,
) -> Result<(u64, u64, Delivery)> {
    let total = Arc::new(AtomicU64::new(0));
    let wake = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let mut sub_set = JoinSet::new();
    for (conn, expected) in subs {
        sub_set.spawn(client::receive(
            conn,
            expected,
            total.clone(),
            Some(wake.clone()),
            stamps,
            skip,
            stop.clone(),
        ));
    }
    let mut pub_set = JoinSet::new();
    let pace = Arc::new(Pace::new(total.clone(), wake, fan, max_ahead));
    for (conn, mut plan) in pubs {
        if plan.rate.is_none() {
            plan.pace = Some(pace.clone());
        }
        pub_set.spawn(client::publish(conn, plan));
    }
    let mut sent = 0u64;
    let mut completed = 0u64;
    let wait = hard_deadline.saturating_duration_since(Instant::now());
    let joined = tokio::time::timeout(wait, async {
        while let Some(r) = pub_set.join_next().await {
            let r = r??;
            sent += r.sent;
            completed += r.completed;
        }
        anyhow::Ok(())
    })
    .await;
    match joined {
        Ok(r) => r?,
        Err(_) => pub_set.abort_all(),
    }
    let expected = sent * fan;
    let mut last = total.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while last < expected && Instant::now() < hard_deadline + QUIET {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = total.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= QUIET {
            break;
        }
    }
    stop.cancel();
    let mut d = Delivery {
        delivered: 0,
        interval: Duration::ZERO,
        latency: None,
    };
    while let Some(r) = sub_set.join_next().await {
        let r = r??;
        d.delivered += r.delivered;
        if let Some(at) = r.last_at {
            d.interval = d.interval.max(at - start);
        }
        match (&mut d.latency, r.latency) {
            (Some(a), Some(b)) => a.add(b)?,
            (a @ None, b) => *a = b,
            _ => {}
        }
    }
    Ok((sent, completed, d))
}

/// How many deliveries the publishers may be ahead of the subscribers:
/// enough to keep every pipe full, little enough that the broker's queues
/// (and the socket buffers) stay short: 50k messages or 8 MiB of payload.
fn max_ahead(payload: usize) -> u64 {
    (50_000u64).min((8 << 20) / (payload as u64 + 32))
}

/// Pushes the broker-CPU figures every scenario has.
/// What the publish scenarios measure: messages published, deliveries made
/// and lost (of `expected`), and deliveries per second.
fn push_deliveries(r: &mut Report, sent: u64, expected: u64, d: &Delivery) {
    r.push("published", sent as f64);
    r.push("delivered", d.delivered as f64);
    r.push("lost", expected.saturating_sub(d.delivered) as f64);
    r.push(
        "deliveries_per_s",
        d.delivered as f64 / d.interval.as_secs_f64().max(1e-9),
    );
}

fn push_cpu(r: &mut Report, before: CpuMark, after: CpuMark, wall: Duration, work: u64) {
    let broker = after.broker - before.broker;
    r.push("broker_cpu_s", broker);
    r.push(
        "per_cpu_s",
        if broker > 0.0 {
            work as f64 / broker
        } else {
            f64::NAN
        },
    );
    // Near 1.0 would mean the generator itself was the bottleneck.
    r.push(
        "gen_cpu",
        (after.generator - before.generator) / wall.as_secs_f64().max(1e-9),
    );
}

async fn throughput(t: Target, a: &ThroughputArgs, label: String) -> Result<Report> {
    let run = run_id();
    let qos = qos_of(a.qos);
    let pubs_n = a.pubs.max(1);
    let subs_n = if a.pairwise { pubs_n } else { a.subs.max(1) };
    let topic = |i: usize| {
        if a.pairwise {
            format!("bench/{run}/p/{i}")
        } else {
            format!("bench/{run}/t")
        }
    };
    let sub_ids = (0..subs_n).map(|i| format!("mb-{run}-s{i}")).collect();
    let mut subs = connect_many(t.addr, sub_ids).await?;
    for (i, s) in subs.iter_mut().enumerate() {
        s.subscribe(&[topic(i)], qos).await?;
    }
    let pub_ids = (0..pubs_n).map(|i| format!("mb-{run}-p{i}")).collect();
    let pubs = connect_many(t.addr, pub_ids).await?;
    let (fan, per_sub) = if a.pairwise {
        (1, a.count)
    } else {
        (subs_n as u64, a.count * pubs_n as u64)
    };

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.seconds);
    let mut plans = Vec::new();
    for (i, c) in pubs.into_iter().enumerate() {
        let plan = PublishPlan {
            templates: vec![Template::new(&topic(i), qos, false, a.size)?],
            count: a.count,
            qos,
            window: a.window,
            rate: None,
            stamp: false,
            deadline,
            pace: None,
        };
        plans.push((c, plan));
    }
    let before = CpuMark::take(t.pid)?;
    let (sent, _, d) = drive(
        plans,
        subs.into_iter().map(|c| (c, per_sub)).collect(),
        false,
        0,
        fan,
        max_ahead(a.size),
        start,
        deadline + Duration::from_secs(5),
    )
    .await?;
    let after = CpuMark::take(t.pid)?;
    let wall = start.elapsed();

    let mut r = Report::new("throughput", label);
    push_deliveries(&mut r, sent, sent * fan, &d);
    push_cpu(&mut r, before, after, wall, d.delivered);
    Ok(r)
}

async fn latency(t: Target, a: &LatencyArgs, label: String) -> Result<Report> {
    let run = run_id();
    let topic = format!("bench/{run}/lat");
    let mut sub = Conn::connect(t.addr, &format!("mb-{run}-ls")).await?;
    sub.subscribe(std::slice::from_ref(&topic), QoS::AtMostOnce)
        .await?;
    let publisher = Conn::connect(t.addr, &format!("mb-{run}-lp")).await?;
    let start = Instant::now();
    let seconds = a.count as f64 / a.rate.max(1.0);
    let deadline = start + Duration::from_secs_f64(seconds * 1.5 + 1.0);
    let plan = PublishPlan {
        templates: vec![Template::new(
            &topic,
            QoS::AtMostOnce,
            false,
            a.size.max(8),
        )?],
        count: a.count,
        qos: QoS::AtMostOnce,
        window: 1,
        rate: Some(a.rate),
        stamp: true,
        deadline,
        pace: None,
    };
    let before = CpuMark::take(t.pid)?;
    let (sent, _, d) = drive(
        vec![(publisher, plan)],
        vec![(sub, a.count)],
        true,
        a.count / 10,
        1,
        u64::MAX,
        start,
        deadline + Duration::from_secs(2),
    )
    .await?;
    let after = CpuMark::take(t.pid)?;
    let wall = start.elapsed();
    let h = d.latency.context("no latency histogram")?;
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut r = Report::new("latency", label);
    r.push("published", sent as f64);
    r.push("delivered", d.delivered as f64);
    r.push("lost", sent.saturating_sub(d.delivered) as f64);
    r.push("p50_us", us(0.5));
    r.push("p90_us", us(0.9));
    r.push("p99_us", us(0.99));
    r.push("p999_us", us(0.999));
    r.push("max_us", h.max() as f64 / 1000.0);
    push_cpu(&mut r, before, after, wall, d.delivered);
    Ok(r)
}

async fn connections(t: Target, a: &ConnectionsArgs, label: String) -> Result<Report> {
    let run = run_id();
    // One connection first so that the broker's per-process start-up
    // allocations (runtime, first buffers) are not charged to the N.
    let warm = Conn::connect(t.addr, &format!("mb-{run}-warm")).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_before = proc::rss_kib(t.pid)?;
    let before = CpuMark::take(t.pid)?;
    let start = Instant::now();
    let ids = (0..a.count).map(|i| format!("mb-{run}-c{i}")).collect();
    let conns = connect_many(t.addr, ids).await?;
    let took = start.elapsed();
    let after = CpuMark::take(t.pid)?;
    // Let the broker settle (lazy allocations, freed handshake buffers).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after = proc::rss_kib(t.pid)?;
    let n = conns.len();
    drop(conns);
    drop(warm);
    let mut r = Report::new("connections", label);
    r.push("connections", n as f64);
    r.push("connects_per_s", n as f64 / took.as_secs_f64().max(1e-9));
    r.push("rss_before_kib", rss_before as f64);
    r.push("rss_after_kib", rss_after as f64);
    r.push(
        "kib_per_conn",
        rss_after.saturating_sub(rss_before) as f64 / n.max(1) as f64,
    );
    push_cpu(&mut r, before, after, took, n as u64);
    Ok(r)
}

/// Filter `i` and a topic that matches it and no other filter of the set:
/// a quarter exact, a quarter `+` at the end, a quarter `#`, a quarter `+`
/// in the middle (which makes every lookup under the prefix try that
/// branch as well).
fn mixed(run: &str, i: usize) -> (String, String) {
    match i % 4 {
        0 => (
            format!("bench/{run}/s/{i}/x"),
            format!("bench/{run}/s/{i}/x"),
        ),
        1 => (
            format!("bench/{run}/s/{i}/+"),
            format!("bench/{run}/s/{i}/y"),
        ),
        2 => (
            format!("bench/{run}/s/{i}/#"),
            format!("bench/{run}/s/{i}/z/w"),
        ),
        _ => (
            format!("bench/{run}/+/{i}/q"),
            format!("bench/{run}/m/{i}/q"),
        ),
    }
}

async fn subscriptions(t: Target, a: &SubscriptionsArgs, label: String) -> Result<Report> {
    let run = run_id();
    let n = a.count.max(1);
    let nsubs = a.subscribers.clamp(1, n);
    let ids = (0..nsubs).map(|i| format!("mb-{run}-s{i}")).collect();
    let mut subs = connect_many(t.addr, ids).await?;
    let mut filters: Vec<Vec<String>> = vec![Vec::new(); nsubs];
    let mut templates = Vec::with_capacity(n);
    for i in 0..n {
        let (f, topic) = mixed(&run, i);
        filters[i % nsubs].push(f);
        templates.push(Template::new(&topic, QoS::AtMostOnce, false, 16)?);
    }
    let sub_start = Instant::now();
    for (s, f) in subs.iter_mut().zip(&filters) {
        s.subscribe(f, QoS::AtMostOnce).await?;
    }
    let subscribe_s = sub_start.elapsed().as_secs_f64();
    let publisher = Conn::connect(t.addr, &format!("mb-{run}-p")).await?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.seconds);
    let plan = PublishPlan {
        templates,
        count: a.messages,
        qos: QoS::AtMostOnce,
        window: 1,
        rate: None,
        stamp: false,
        deadline,
        pace: None,
    };
    let before = CpuMark::take(t.pid)?;
    // Each subscriber gets an unknown share: they stop on the total.
    let (sent, _, d) = drive(
        vec![(publisher, plan)],
        subs.into_iter().map(|c| (c, u64::MAX)).collect(),
        false,
        0,
        1,
        max_ahead(16),
        start,
        deadline + Duration::from_secs(5),
    )
    .await?;
    let after = CpuMark::take(t.pid)?;
    let wall = start.elapsed();
    let mut r = Report::new("subscriptions", label);
    r.push("subscribe_s", subscribe_s);
    push_deliveries(&mut r, sent, sent, &d);
    push_cpu(&mut r, before, after, wall, d.delivered);
    Ok(r)
}

/// Subscribes a fresh connection to `filter` and returns how long until
/// `expected` retained messages arrived (from the SUBSCRIBE write), and
/// how many did.
async fn time_retained(
    t: Target,
    id: &str,
    filter: &str,
    expected: u64,
) -> Result<(Duration, u64, CpuMark)> {
    let mut conn = Conn::connect(t.addr, id).await?;
    let mut buf = bytes::BytesMut::new();
    codec::encode(
        &Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![(ByteStr::from(filter), QoS::AtMostOnce)],
        }),
        &mut buf,
    )?;
    let before = CpuMark::take(t.pid)?;
    let start = Instant::now();
    conn.stream.write_all(&buf).await?;
    let stop = CancellationToken::new();
    let total = Arc::new(AtomicU64::new(0));
    let guard = stop.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        guard.cancel();
    });
    let res = client::receive(conn, expected, total, None, false, 0, stop).await;
    timer.abort();
    let res = res?;
    let Some(last) = res.last_at else {
        bail!("no retained message arrived for {filter}");
    };
    Ok((last - start, res.delivered, before))
}

async fn retained(t: Target, a: &RetainedArgs, label: String) -> Result<Report> {
    let run = run_id();
    let n = a.count.max(1);
    let topic = |i: u64| format!("bench/{run}/r/{}/{}", i / 100, i % 100);
    let templates = (0..n)
        .map(|i| Template::new(&topic(i), QoS::AtLeastOnce, true, a.size))
        .collect::<Result<Vec<_>>>()?;
    // QoS 1: when the last PUBACK is in, the broker has stored them all.
    let publisher = Conn::connect(t.addr, &format!("mb-{run}-rp")).await?;
    let load_start = Instant::now();
    let plan = PublishPlan {
        templates,
        count: n,
        qos: QoS::AtLeastOnce,
        window: 1000,
        rate: None,
        stamp: false,
        deadline: load_start + Duration::from_secs(60),
        pace: None,
    };
    let stored = client::publish(publisher, plan).await?;
    if stored.completed < n {
        bail!(
            "only {} of {n} retained messages acknowledged",
            stored.completed
        );
    }
    let load_s = load_start.elapsed().as_secs_f64();

    let (all, got, before) = time_retained(t, &format!("mb-{run}-ra"), "#", n).await?;
    let after = CpuMark::take(t.pid)?;
    let (narrow, _, _) = time_retained(t, &format!("mb-{run}-rn"), &topic(n / 2), 1).await?;
    let level_filter = format!("bench/{run}/r/{}/+", (n / 2) / 100);
    let level_n = (n - (n / 2) / 100 * 100).min(100);
    let (level, _, _) = time_retained(t, &format!("mb-{run}-rl"), &level_filter, level_n).await?;
    let mut r = Report::new("retained", label);
    r.push("load_s", load_s);
    r.push("all_received", got as f64);
    r.push("all_ms", all.as_secs_f64() * 1000.0);
    r.push("narrow_ms", narrow.as_secs_f64() * 1000.0);
    r.push("level_ms", level.as_secs_f64() * 1000.0);
    push_cpu(&mut r, before, after, all, got);
    Ok(r)
}
