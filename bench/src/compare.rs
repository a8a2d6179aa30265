//! The side-by-side comparison: our release broker and Mosquitto with
//! matched settings, each pinned to CPU 0 (`taskset`) while the generator
//! runs on CPU 1, every scenario run against both alternately (A B A B)
//! with a fresh broker per run, medians of the rounds, and the ratio
//! ours/mosquitto. The table is printed and appended to `bench/RESULTS.md`.
//!
//! Every broker is a child process held by a [`Broker`] guard that kills
//! it by PID when dropped, so an error or Ctrl-C (which drops the running
//! future) never leaves one behind.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::report::{human, Report};
use crate::scenario::{
    ConnectionsArgs, LatencyArgs, RetainedArgs, Scenario, SubscriptionsArgs, Target, ThroughputArgs,
};

#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The full suite (< 15 min) instead of the quick one (< 2 min).
    #[arg(long)]
    pub full: bool,
    /// Rounds per scenario and broker (default 2 quick, 3 full).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Our broker's release binary.
    #[arg(long, default_value = "target/release/broker")]
    pub ours: PathBuf,
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    pub mosquitto: PathBuf,
    /// Where the table is appended; `-` for nowhere.
    #[arg(long, default_value = "bench/RESULTS.md")]
    pub results: String,
    /// Only scenarios whose label contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// The CPU the brokers are pinned to (the generator should be pinned
    /// to another one by the caller: `taskset -c 1 mqtt-bench compare`).
    #[arg(long, default_value_t = 0)]
    pub broker_cpu: usize,
    /// `max_inflight_messages` for both brokers.
    #[arg(long, default_value_t = 100)]
    pub max_inflight: usize,
}

/// Raises the soft open-files limit to the hard one: 1000 <-> 1000 pairs
/// and 10k idle connections need more than the usual 1024 descriptors (in
/// the generator and, inherited, in the brokers it starts).
pub fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Which broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Mosquitto,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Mosquitto => "mosquitto",
        }
    }
}

/// The settings both brokers get: no persistence, no logging, queues deep
/// enough that nothing is dropped, the same inflight window, Nagle off
/// (our default; Mosquitto's default is on).
fn config(port: u16, max_inflight: usize) -> String {
    // Both brokers refuse anonymous clients on a configured listener
    // unless told otherwise (Mosquitto 2.0 semantics).
    format!(
        "listener {port} 127.0.0.1\n\
         persistence false\n\
         log_dest none\n\
         set_tcp_nodelay true\n\
         max_queued_messages 10000000\n\
         max_queued_bytes 0\n\
         max_inflight_messages {max_inflight}\n\
         allow_anonymous true\n"
    )
}

/// A running broker, killed by PID when dropped.
struct Broker {
    child: Child,
    target: Target,
}

impl Broker {
    fn start(kind: Kind, args: &CompareArgs, dir: &Path) -> Result<Broker> {
        let port = free_port()?;
        let conf = dir.join(format!("{}.conf", kind.name()));
        std::fs::write(&conf, config(port, args.max_inflight))?;
        let bin = match kind {
            Kind::Ours => &args.ours,
            Kind::Mosquitto => &args.mosquitto,
        };
        let log = dir.join(format!("{}.log", kind.name()));
        // taskset execs the broker: the child's PID is the broker's.
        let child = Command::new("taskset")
            .arg("-c")
            .arg(args.broker_cpu.to_string())
            .arg(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut broker = Broker {
            target: Target {
                addr,
                pid: child.id(),
            },
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                // Let taskset's exec and the broker's start-up settle.
                std::thread::sleep(Duration::from_millis(50));
                return Ok(broker);
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("{} exited with {status}: {text}", kind.name());
            }
            if Instant::now() > deadline {
                bail!("{} did not listen on {addr} within 5 s", kind.name());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A throughput run bounded by time: publishers send as fast as the
/// broker takes messages for `seconds` (the count is only a cap), so the
/// fast and the slow broker are both measured over a long enough interval.
fn tp(pubs: usize, subs: usize, pairwise: bool, qos: u8, size: usize, seconds: f64) -> Scenario {
    Scenario::Throughput(ThroughputArgs {
        pubs,
        subs,
        pairwise,
        qos,
        size,
        count: 100_000_000,
        window: 100,
        seconds,
    })
}

/// The quick suite (about 1.5 minutes with 2 rounds) or the full one.
pub fn suite(full: bool) -> Vec<Scenario> {
    let secs = if full { 3.0 } else { 1.0 };
    let mut s = vec![
        tp(1, 1, false, 0, 16, secs),
        tp(10, 1, false, 0, 16, secs),
        tp(1, 100, false, 0, 16, secs),
        tp(1, 1, false, 1, 16, secs),
        tp(10, 10, true, 1, 16, secs),
        Scenario::Latency(LatencyArgs {
            rate: 1000.0,
            count: if full { 5000 } else { 2000 },
            size: 16,
        }),
        Scenario::Connections(ConnectionsArgs {
            count: if full { 10_000 } else { 1000 },
        }),
        Scenario::Subscriptions(SubscriptionsArgs {
            count: 10_000,
            subscribers: 10,
            messages: 100_000_000,
            seconds: secs,
        }),
        Scenario::Retained(RetainedArgs {
            count: 100_000,
            size: 16,
        }),
    ];
    if full {
        s.extend([
            tp(1, 1, false, 0, 1024, secs),
            tp(100, 1, false, 0, 16, secs),
            tp(10, 1, false, 1, 16, secs),
            tp(100, 1, false, 1, 16, secs),
            tp(1, 1000, false, 0, 16, secs),
            tp(1000, 1000, true, 1, 16, secs),
            tp(1, 1, false, 2, 16, secs),
            Scenario::Subscriptions(SubscriptionsArgs {
                count: 100_000,
                subscribers: 10,
                messages: 100_000_000,
                seconds: secs,
            }),
        ]);
    }
    s
}

/// The figures compared, and whether higher is better.
fn key_metrics(scenario: &str) -> &'static [(&'static str, bool)] {
    match scenario {
        "throughput" => &[
            ("deliveries_per_s", true),
            ("per_cpu_s", true),
            ("lost", false),
            ("gen_cpu", false),
        ],
        "latency" => &[("p50_us", false), ("p99_us", false), ("max_us", false)],
        "connections" => &[("kib_per_conn", false), ("connects_per_s", true)],
        "subscriptions" => &[
            ("deliveries_per_s", true),
            ("per_cpu_s", true),
            ("subscribe_s", false),
        ],
        "retained" => &[
            ("all_ms", false),
            ("narrow_ms", false),
            ("level_ms", false),
            ("per_cpu_s", true),
        ],
        _ => &[],
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

/// Each run at most this long, whatever the scenario.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

pub async fn run(args: CompareArgs) -> Result<()> {
    for bin in [&args.ours, &args.mosquitto] {
        if !bin.exists() {
            bail!(
                "{} not found (build with `cargo build --release -p broker`; install mosquitto)",
                bin.display()
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("mqtt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = tokio::select! {
        r = compare(&args, &dir) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = terminated() => Err(anyhow::anyhow!("terminated")),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn compare(args: &CompareArgs, dir: &Path) -> Result<()> {
    let rounds = args.rounds.unwrap_or(if args.full { 3 } else { 2 }).max(1);
    let scenarios: Vec<Scenario> = suite(args.full)
        .into_iter()
        .filter(|s| {
            args.only
                .as_ref()
                .is_none_or(|o| s.label().contains(o.as_str()))
        })
        .collect();
    let started = Instant::now();
    let mut rows = Vec::new();
    for s in &scenarios {
        let mut got: [Vec<Report>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for (k, kind) in [Kind::Ours, Kind::Mosquitto].into_iter().enumerate() {
                let broker = Broker::start(kind, args, dir)?;
                let r = tokio::time::timeout(RUN_TIMEOUT, s.run(broker.target)).await;
                drop(broker);
                match r {
                    Ok(Ok(r)) => {
                        eprintln!("[{}] round {} {}", kind.name(), round + 1, r.row());
                        println!(
                            "{{\"broker\":\"{}\",\"round\":{},\"report\":{}}}",
                            kind.name(),
                            round + 1,
                            r.json()
                        );
                        got[k].push(r);
                    }
                    Ok(Err(e)) => eprintln!("[{}] {}: failed: {e:#}", kind.name(), s.label()),
                    Err(_) => eprintln!("[{}] {}: timed out", kind.name(), s.label()),
                }
            }
        }
        let scenario = got[0]
            .first()
            .or(got[1].first())
            .map(|r| r.scenario)
            .unwrap_or("");
        for (metric, higher) in key_metrics(scenario) {
            let med = |rs: &Vec<Report>| median(rs.iter().filter_map(|r| r.get(metric)).collect());
            let (ours, mosq) = (med(&got[0]), med(&got[1]));
            rows.push((s.label(), *metric, *higher, ours, mosq));
        }
    }
    let took = started.elapsed();
    let mut table = String::from(
        "| scenario | metric | ours | mosquitto | ours/mosquitto |\n| --- | --- | ---: | ---: | ---: |\n",
    );
    for (label, metric, higher, ours, mosq) in &rows {
        let ratio = if *mosq != 0.0 { ours / mosq } else { f64::NAN };
        let better = if *higher {
            "higher is better"
        } else {
            "lower is better"
        };
        table.push_str(&format!(
            "| {label} | {metric} ({better}) | {} | {} | {} |\n",
            human(*ours),
            human(*mosq),
            if ratio.is_finite() {
                format!("{ratio:.2}")
            } else {
                "-".into()
            },
        ));
    }
    eprintln!("\n{table}");
    eprintln!(
        "{} mode, {rounds} rounds, {:.0} s",
        if args.full { "full" } else { "quick" },
        took.as_secs_f64()
    );
    if args.results != "-" {
        let header = results_header(args, rounds, took);
        let mut text = std::fs::read_to_string(&args.results).unwrap_or_default();
        text.push_str(&format!("\n{header}\n{table}"));
        std::fs::write(&args.results, text).with_context(|| format!("writing {}", args.results))?;
        eprintln!("appended to {}", args.results);
    }
    Ok(())
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Date, commit, machine and settings of a run.
fn results_header(args: &CompareArgs, rounds: usize, took: Duration) -> String {
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let commit = sh("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = if sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " (with uncommitted changes)"
    };
    let nproc = sh("nproc", &[]);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let mosq = sh(&args.mosquitto.to_string_lossy(), &["-h"]);
    let mosq = mosq.lines().next().unwrap_or("mosquitto").to_string();
    format!(
        "## {date}: {} mode, commit {commit}{dirty}\n\n\
         Machine: {nproc} CPUs, {cpu}. Brokers pinned to CPU {}, generator to the other; \
         a fresh broker per run; {rounds} rounds (A B A B), medians; {:.0} s in all. \
         Both brokers: no persistence, `log_dest none`, `set_tcp_nodelay true`, \
         `max_queued_messages 10000000`, `max_inflight_messages {}`. {mosq}.\n",
        if args.full { "full" } else { "quick" },
        args.broker_cpu,
        took.as_secs_f64(),
        args.max_inflight,
    )
}
