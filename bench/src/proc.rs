//! What the kernel says about a process: CPU seconds from
//! `/proc/PID/task/*/schedstat` (or `/proc/PID/stat`) and resident memory
//! from `/proc/PID/status`.
//!
//! The broker's CPU time is what makes the figures fair: a broker that is
//! fast only because it takes the generator's core would otherwise look
//! good, so every scenario also reports deliveries per broker CPU-second.

use anyhow::{bail, Context, Result};

/// Clock ticks per second of `utime`/`stime` in `/proc/PID/stat`. The
/// kernel exports these in USER_HZ, which is 100 on every Linux
/// architecture this runs on (it is part of the ABI, unlike CONFIG_HZ).
const USER_HZ: f64 = 100.0;

/// CPU seconds consumed so far by process `pid`, all its threads: the sum
/// of the nanosecond run times in `/proc/PID/task/*/schedstat`. The
/// `utime`/`stime` ticks of `/proc/PID/stat` count in 10 ms steps, too
/// coarse for sub-second runs of a broker that batches well; they are the
/// fallback when schedstat is missing. (Threads that exited during the
/// interval drop out of the sum; both brokers keep theirs.)
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    if let Some(s) = schedstat_seconds(pid) {
        return Ok(s);
    }
    stat_seconds(pid)
}

fn schedstat_seconds(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    let mut read_any = false;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        // A thread may exit between the listing and the read: skip it
        // rather than fall back to the coarse figure for this one reading.
        let Ok(text) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else {
            continue;
        };
        ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
        read_any = true;
    }
    read_any.then_some(ns as f64 / 1e9)
}

/// User + system CPU seconds from `/proc/PID/stat` (10 ms resolution).
pub fn stat_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (utime, stime) = parse_stat(&text).with_context(|| format!("parsing {path}"))?;
    Ok((utime + stime) as f64 / USER_HZ)
}

/// `utime` and `stime` (fields 14 and 15) from a `/proc/PID/stat` line. The
/// command name (field 2) is in parentheses and may contain spaces, so the
/// fields are counted from the last `)`.
fn parse_stat(text: &str) -> Result<(u64, u64)> {
    let Some(close) = text.rfind(')') else {
        bail!("no ')' in stat line");
    };
    // After ')': field 3 (state) is the first; utime is field 14.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    if fields.len() < 13 {
        bail!("stat line too short");
    }
    Ok((fields[11].parse()?, fields[12].parse()?))
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kib = rest.trim().trim_end_matches("kB").trim();
            return kib.parse().with_context(|| format!("VmRSS {rest:?}"));
        }
    }
    bail!("no VmRSS in {path}")
}

/// A CPU-time reading of the broker and of this generator, taken together
/// so that the interval between two readings covers the same span.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    pub broker: f64,
    pub generator: f64,
}

impl CpuMark {
    pub fn take(broker_pid: u32) -> Result<CpuMark> {
        Ok(CpuMark {
            broker: cpu_seconds(broker_pid)?,
            generator: cpu_seconds(std::process::id())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat(line).unwrap(), (250, 17));
    }

    #[test]
    fn own_process_is_readable() {
        assert!(schedstat_seconds(std::process::id()).unwrap() > 0.0);
        assert!(stat_seconds(std::process::id()).unwrap() >= 0.0);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
