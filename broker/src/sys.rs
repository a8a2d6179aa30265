//! The `$SYS` publisher: Mosquitto's `$SYS/broker/...` topics, published
//! every `sys_interval` as retained messages through the router.
//!
//! Topic names and payload formats follow Mosquitto 2.0 (`sys_tree.c`, and
//! what `mosquitto_sub -t '$SYS/#' -v` shows): the version once at start;
//! uptime every interval; counters only when they changed; load averages
//! when they moved by at least 0.01. One addition: `$SYS/broker/time`, the
//! broker's wall clock in ISO 8601 UTC (Mosquitto has no such topic).
//!
//! The router never stores `$` topics, so none of this is persisted; `#`
//! and `+/...` subscribers never see it [MQTT-4.7.2-1].
//!
//! [`Tree`] is the synchronous part (what to publish given a [`Snapshot`]),
//! unit-tested here; [`run`] is the task that takes snapshots and publishes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::codec::{ByteStr, Packet, QoS};
use crate::server::Shared;

/// Traffic counters the connection tasks bump; read by the `$SYS` task.
///
/// `Relaxed` everywhere: each counter is independent and only ever read
/// for statistics, so no ordering with other memory is needed. Connections
/// add once per read or write batch, not per byte or per packet.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes read from client sockets.
    pub bytes_received: AtomicU64,
    /// Bytes written to client sockets.
    pub bytes_sent: AtomicU64,
    /// MQTT packets of any kind received (Mosquitto's `messages/received`).
    pub messages_received: AtomicU64,
    /// MQTT packets of any kind sent (Mosquitto's `messages/sent`).
    pub messages_sent: AtomicU64,
    /// PUBLISH packets received from clients.
    pub publish_received: AtomicU64,
    /// PUBLISH packets sent to clients.
    pub publish_sent: AtomicU64,
    /// Clients whose CONNECT was accepted (`load/connections`).
    pub connections: AtomicU64,
    /// Sockets accepted (`load/sockets`).
    pub sockets: AtomicU64,
}

/// Adds `n` to `counter`, skipping the atomic operation when `n` is zero.
pub fn add(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One connection's traffic not yet added to the shared [`Counters`]:
/// plain integers bumped per packet, flushed once per loop turn.
#[derive(Debug, Default)]
pub struct Pending {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub publish_received: u64,
    pub publish_sent: u64,
}

impl Pending {
    /// Counts a packet received, and the one response the broker always
    /// answers it with (sent now or, for a deferred acknowledgement, once
    /// the store has it).
    pub fn received(&mut self, packet: &Packet) {
        self.messages_received += 1;
        let answered = match packet {
            Packet::Publish(p) => {
                self.publish_received += 1;
                p.qos != QoS::AtMostOnce
            }
            Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq => true,
            _ => false,
        };
        self.messages_sent += u64::from(answered);
    }

    /// Counts `n` PUBLISH packets put in the write buffer.
    pub fn published(&mut self, n: usize) {
        self.messages_sent += n as u64;
        self.publish_sent += n as u64;
    }

    /// Adds everything to `counters` and starts again from zero.
    pub fn flush(&mut self, counters: &Counters) {
        add(&counters.bytes_received, self.bytes_received);
        add(&counters.bytes_sent, self.bytes_sent);
        add(&counters.messages_received, self.messages_received);
        add(&counters.messages_sent, self.messages_sent);
        add(&counters.publish_received, self.publish_received);
        add(&counters.publish_sent, self.publish_sent);
        *self = Pending::default();
    }
}

/// The cumulative totals behind the load averages, in Mosquitto's
/// publishing order.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Totals {
    pub messages_received: u64,
    pub messages_sent: u64,
    pub publish_dropped: u64,
    pub publish_received: u64,
    pub publish_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub sockets: u64,
    pub connections: u64,
}

/// Reads one total out of [`Totals`].
type Total = fn(&Totals) -> u64;

/// The load series: topic part and how to read its total.
const LOADS: [(&str, Total); 9] = [
    ("messages/received", |t| t.messages_received),
    ("messages/sent", |t| t.messages_sent),
    ("publish/dropped", |t| t.publish_dropped),
    ("publish/received", |t| t.publish_received),
    ("publish/sent", |t| t.publish_sent),
    ("bytes/received", |t| t.bytes_received),
    ("bytes/sent", |t| t.bytes_sent),
    ("sockets", |t| t.sockets),
    ("connections", |t| t.connections),
];

/// The averaging windows, in seconds, with their topic suffix.
const WINDOWS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// Everything one update publishes, read at one moment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    /// Seconds since the broker started.
    pub uptime: u64,
    /// Seconds since the Unix epoch, for `$SYS/broker/time`.
    pub unix_time: u64,
    /// Sessions known: connected ones and persistent ones offline.
    pub clients_total: u64,
    pub clients_connected: u64,
    /// Persistent sessions removed by `persistent_client_expiration`.
    pub clients_expired: u64,
    pub subscriptions: u64,
    pub retained: u64,
    /// Messages held: retained, queued and in flight.
    pub stored: u64,
    /// Failed store writes and fsyncs (disk full, permissions): the
    /// acknowledgements they hold back are retried.
    pub store_write_errors: u64,
    /// Log lines dropped because a destination could not keep up.
    pub log_lines_dropped: u64,
    pub totals: Totals,
}

/// One exponentially-decayed load step, as Mosquitto computes it:
/// `rate` is the events per minute over the last `dt` seconds, and the
/// average moves toward it by `1 - exp(-dt / window)`.
pub fn decay(current: f64, rate: f64, dt: f64, window: f64) -> f64 {
    rate + (-dt / window).exp() * (current - rate)
}

/// The state between updates: what was published last, the load averages
/// and the totals they were computed from.
#[derive(Debug, Default)]
pub struct Tree {
    /// Last payload per topic, so that unchanged values are not re-sent.
    last: HashMap<String, String>,
    /// `loads[series][window]`, in events per minute.
    loads: [[f64; 3]; 9],
    /// When (seconds on the caller's clock) and from what totals the loads
    /// were last updated; `None` before the first update.
    prev: Option<(f64, Totals)>,
    /// The highest `clients_total` seen.
    clients_max: u64,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// The `(topic, payload)` pairs to publish for `s`, taken at `now`
    /// seconds on a monotonic clock.
    pub fn update(&mut self, s: &Snapshot, now: f64) -> Vec<(String, String)> {
        let mut out = Vec::new();
        // Uptime goes out every time, as in Mosquitto.
        out.push(("$SYS/broker/uptime".into(), format!("{} seconds", s.uptime)));

        let mut changed = |topic: &str, value: String, out: &mut Vec<(String, String)>| {
            if self.last.get(topic) != Some(&value) {
                self.last.insert(topic.to_string(), value.clone());
                out.push((topic.to_string(), value));
            }
        };
        let disconnected = s.clients_total.saturating_sub(s.clients_connected);
        changed(
            "$SYS/broker/clients/total",
            s.clients_total.to_string(),
            &mut out,
        );
        if s.clients_total > self.clients_max {
            self.clients_max = s.clients_total;
            changed(
                "$SYS/broker/clients/maximum",
                self.clients_max.to_string(),
                &mut out,
            );
        }
        // `inactive` and `active` are Mosquitto's deprecated names for
        // `disconnected` and `connected`; it still publishes both.
        for t in ["inactive", "disconnected"] {
            let topic = format!("$SYS/broker/clients/{t}");
            changed(&topic, disconnected.to_string(), &mut out);
        }
        for t in ["active", "connected"] {
            let topic = format!("$SYS/broker/clients/{t}");
            changed(&topic, s.clients_connected.to_string(), &mut out);
        }
        changed(
            "$SYS/broker/clients/expired",
            s.clients_expired.to_string(),
            &mut out,
        );

        match self.prev {
            None => {
                // The first update publishes every average (all zero).
                for (w, (_, suffix)) in WINDOWS.iter().enumerate() {
                    for (i, (name, _)) in LOADS.iter().enumerate() {
                        out.push((
                            format!("$SYS/broker/load/{name}/{suffix}"),
                            format!("{:.2}", self.loads[i][w]),
                        ));
                    }
                }
            }
            Some((then, before)) => {
                let dt = now - then;
                if dt > 0.0 {
                    for (w, (window, suffix)) in WINDOWS.iter().enumerate() {
                        for (i, (name, total)) in LOADS.iter().enumerate() {
                            let delta = total(&s.totals).saturating_sub(total(&before));
                            let rate = delta as f64 * 60.0 / dt;
                            let old = self.loads[i][w];
                            let new = decay(old, rate, dt, *window);
                            // Mosquitto compares with the previous average,
                            // not the last published one.
                            if (new - old).abs() >= 0.01 {
                                out.push((
                                    format!("$SYS/broker/load/{name}/{suffix}"),
                                    format!("{new:.2}"),
                                ));
                            }
                            self.loads[i][w] = new;
                        }
                    }
                }
            }
        }
        // Kept as it was when no time passed, so that the next step sees
        // the whole interval.
        if !matches!(self.prev, Some((then, _)) if now <= then) {
            self.prev = Some((now, s.totals));
        }

        let t = &s.totals;
        let counts: [(&str, u64); 13] = [
            ("messages/stored", s.stored),
            ("store/write_errors", s.store_write_errors),
            ("log/lines/dropped", s.log_lines_dropped),
            ("store/messages/count", s.stored),
            ("subscriptions/count", s.subscriptions),
            ("retained messages/count", s.retained),
            ("messages/received", t.messages_received),
            ("messages/sent", t.messages_sent),
            ("publish/messages/dropped", t.publish_dropped),
            ("publish/messages/received", t.publish_received),
            ("publish/messages/sent", t.publish_sent),
            ("bytes/received", t.bytes_received),
            ("bytes/sent", t.bytes_sent),
        ];
        for (name, value) in counts {
            changed(&format!("$SYS/broker/{name}"), value.to_string(), &mut out);
        }
        out.push(("$SYS/broker/time".into(), iso8601(s.unix_time)));
        out
    }
}

/// `$SYS/broker/version`'s payload, in Mosquitto's form
/// ("mosquitto version 2.0.11") with our name.
pub fn version() -> String {
    format!(
        "{} version {}",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION")
    )
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads the counters, the router's figures and the clocks.
fn snapshot(shared: &Shared, start: Instant) -> Snapshot {
    let c = &shared.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let router = shared.router();
    Snapshot {
        uptime: start.elapsed().as_secs(),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        clients_total: router.session_count() as u64,
        clients_connected: router.connected_count() as u64,
        clients_expired: router.stats.expired,
        subscriptions: router.subscription_count() as u64,
        retained: router.retained_count() as u64,
        stored: (router.retained_count() + router.queued_count()) as u64,
        store_write_errors: shared
            .store
            .as_ref()
            .map_or(0, |s| s.write_errors.load(Ordering::Relaxed)),
        log_lines_dropped: crate::log::dropped_lines(),
        totals: Totals {
            messages_received: get(&c.messages_received),
            messages_sent: get(&c.messages_sent),
            publish_dropped: router.stats.dropped,
            publish_received: get(&c.publish_received),
            publish_sent: get(&c.publish_sent),
            bytes_received: get(&c.bytes_received),
            bytes_sent: get(&c.bytes_sent),
            sockets: get(&c.sockets),
            connections: get(&c.connections),
        },
    }
}

/// Publishes retained QoS 0 messages through the router.
fn publish(shared: &Shared, messages: Vec<(String, String)>) {
    let mut router = shared.router();
    for (topic, payload) in messages {
        router.publish(
            &ByteStr::from(topic),
            &Bytes::from(payload),
            QoS::AtMostOnce,
            true,
        );
    }
}

/// Publishes the `$SYS` tree every `interval` until `shutdown`: the
/// version once, then the first update at once and one per interval.
pub async fn run(shared: Arc<Shared>, interval: Duration, shutdown: CancellationToken) {
    if interval.is_zero() {
        return;
    }
    let start = Instant::now();
    publish(&shared, vec![("$SYS/broker/version".into(), version())]);
    let mut tree = Tree::new();
    let mut ticker = tokio::time::interval(interval);
    // A late tick (a stalled runtime) is not caught up in a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let s = snapshot(&shared, start);
        let messages = tree.update(&s, start.elapsed().as_secs_f64());
        publish(&shared, messages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(out: &'a [(String, String)], topic: &str) -> Option<&'a str> {
        out.iter()
            .find(|(t, _)| t == topic)
            .map(|(_, p)| p.as_str())
    }

    #[test]
    fn decay_moves_toward_the_rate() {
        // One full window: 1 - 1/e of the way.
        let v = decay(0.0, 60.0, 60.0, 60.0);
        assert!((v - 60.0 * (1.0 - (-1.0f64).exp())).abs() < 1e-9);
        // A steady rate converges to it.
        let mut v = 0.0;
        for _ in 0..1000 {
            v = decay(v, 42.0, 10.0, 300.0);
        }
        assert!((v - 42.0).abs() < 1e-6);
        // No traffic decays toward zero.
        let v = decay(100.0, 0.0, 60.0, 60.0);
        assert!((v - 100.0 * (-1.0f64).exp()).abs() < 1e-9);
        // dt = 0 leaves it alone.
        assert_eq!(decay(7.0, 100.0, 0.0, 60.0), 7.0);
    }

    #[test]
    fn loads_match_mosquitto() {
        // Mosquitto 2.0.11, sys_interval 1: two packets received in the 2 s
        // between updates gave 1.97 / 0.40 / 0.13.
        let mut tree = Tree::new();
        let first = tree.update(&Snapshot::default(), 0.0);
        assert_eq!(
            find(&first, "$SYS/broker/load/messages/received/1min"),
            Some("0.00")
        );
        assert_eq!(
            first
                .iter()
                .filter(|(t, _)| t.starts_with("$SYS/broker/load/"))
                .count(),
            27
        );
        let mut s = Snapshot::default();
        s.totals.messages_received = 2;
        let out = tree.update(&s, 2.0);
        let get = |w| find(&out, &format!("$SYS/broker/load/messages/received/{w}"));
        assert_eq!(get("1min"), Some("1.97"));
        assert_eq!(get("5min"), Some("0.40"));
        assert_eq!(get("15min"), Some("0.13"));
        // Unmoved averages are not re-sent.
        assert_eq!(find(&out, "$SYS/broker/load/bytes/sent/1min"), None);
    }

    #[test]
    fn loads_below_a_hundredth_are_not_sent() {
        let mut tree = Tree::new();
        tree.update(&Snapshot::default(), 0.0);
        let mut s = Snapshot::default();
        // 1 byte in 100 s: 0.6/min; the 15 min average moves by 0.063.
        s.totals.bytes_received = 1;
        let out = tree.update(&s, 100.0);
        assert!(find(&out, "$SYS/broker/load/bytes/received/15min").is_some());
        // Then nothing for 1 s: the 15 min average moves by far less.
        let out = tree.update(&s, 101.0);
        assert_eq!(find(&out, "$SYS/broker/load/bytes/received/15min"), None);
    }

    #[test]
    fn counters_only_when_changed() {
        let mut tree = Tree::new();
        let mut s = Snapshot {
            clients_total: 3,
            clients_connected: 2,
            ..Snapshot::default()
        };
        let out = tree.update(&s, 0.0);
        assert_eq!(find(&out, "$SYS/broker/uptime"), Some("0 seconds"));
        assert_eq!(find(&out, "$SYS/broker/clients/total"), Some("3"));
        assert_eq!(find(&out, "$SYS/broker/clients/maximum"), Some("3"));
        assert_eq!(find(&out, "$SYS/broker/clients/connected"), Some("2"));
        assert_eq!(find(&out, "$SYS/broker/clients/active"), Some("2"));
        assert_eq!(find(&out, "$SYS/broker/clients/disconnected"), Some("1"));
        assert_eq!(find(&out, "$SYS/broker/messages/received"), Some("0"));

        s.uptime = 1;
        s.clients_total = 2;
        s.clients_connected = 2;
        s.totals.messages_received = 5;
        let out = tree.update(&s, 1.0);
        assert_eq!(find(&out, "$SYS/broker/uptime"), Some("1 seconds"));
        assert_eq!(find(&out, "$SYS/broker/clients/total"), Some("2"));
        assert_eq!(find(&out, "$SYS/broker/clients/maximum"), None);
        assert_eq!(find(&out, "$SYS/broker/clients/connected"), None);
        assert_eq!(find(&out, "$SYS/broker/clients/disconnected"), Some("0"));
        assert_eq!(find(&out, "$SYS/broker/messages/received"), Some("5"));
        assert_eq!(find(&out, "$SYS/broker/messages/sent"), None);
        assert!(find(&out, "$SYS/broker/time").is_some());
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso8601(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn version_names_us() {
        assert!(version().starts_with("broker version "));
    }
}
