//! Logging as Mosquitto does it, over `tracing`: which `log_type`
//! categories are shown ([`Categories`]), the line layout
//! `TIMESTAMP: message` ([`LineFormat`], [`Timestamp`]) and the count of
//! lines dropped because a destination could not keep up
//! ([`dropped_lines`]).
//!
//! Categories map to tracing levels and targets: error → ERROR,
//! warning → WARN, notice and information → INFO (tracing has one level for
//! both), debug → DEBUG and TRACE, subscribe / unsubscribe → INFO events
//! with the targets [`SUBSCRIBE`] / [`UNSUBSCRIBE`], so that they are shown
//! only when their own category is chosen.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::format::{Item, StrftimeItems};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_appender::non_blocking::ErrorCounter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogType;

/// Target of the `log_type subscribe` lines: `CLIENT QOS FILTER`.
pub const SUBSCRIBE: &str = "broker::subscribe";
/// Target of the `log_type unsubscribe` lines: `CLIENT FILTER`.
pub const UNSUBSCRIBE: &str = "broker::unsubscribe";

/// The `log_type` categories that are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Categories {
    pub error: bool,
    pub warning: bool,
    /// notice and information: both are tracing's INFO.
    pub info: bool,
    pub debug: bool,
    pub subscribe: bool,
    pub unsubscribe: bool,
}

impl Categories {
    /// Every category (`log_type all`, `-v`).
    pub const ALL: Categories = Categories {
        error: true,
        warning: true,
        info: true,
        debug: true,
        subscribe: true,
        unsubscribe: true,
    };

    /// The categories `log_type` lines choose, in order as Mosquitto reads
    /// them: each adds one, `all` adds every one, `none` clears what came
    /// before. No `log_type` at all means error, warning, notice and
    /// information; `-v` (`verbose`) means all.
    pub fn select(types: &[LogType], verbose: bool) -> Categories {
        if verbose {
            return Categories::ALL;
        }
        if types.is_empty() {
            return Categories {
                error: true,
                warning: true,
                info: true,
                ..Categories::default()
            };
        }
        let mut c = Categories::default();
        for t in types {
            match t {
                LogType::Error => c.error = true,
                LogType::Warning => c.warning = true,
                LogType::Notice | LogType::Information => c.info = true,
                LogType::Debug => c.debug = true,
                LogType::Subscribe => c.subscribe = true,
                LogType::Unsubscribe => c.unsubscribe = true,
                // No websockets listener yet: nothing logs in it.
                LogType::Websockets => {}
                LogType::None => c = Categories::default(),
                LogType::All => c = Categories::ALL,
            }
        }
        c
    }

    /// Whether no line at all is shown.
    pub fn is_none(&self) -> bool {
        *self == Categories::default()
    }

    /// Whether an event or span with this metadata is shown.
    pub fn enabled(&self, meta: &Metadata<'_>) -> bool {
        match meta.target() {
            SUBSCRIBE => return self.subscribe,
            UNSUBSCRIBE => return self.unsubscribe,
            _ => {}
        }
        match *meta.level() {
            Level::ERROR => self.error,
            Level::WARN => self.warning,
            Level::INFO => self.info,
            Level::DEBUG | Level::TRACE => self.debug,
        }
    }
}

/// How each line's timestamp is written.
#[derive(Debug, Clone)]
pub enum Timestamp {
    /// ISO 8601 in UTC with milliseconds: `2026-11-27T15:04:05.123Z`.
    Iso8601,
    /// `log_timestamp_format`: strftime in local time, as Mosquitto
    /// (`localtime` + `strftime`), so existing formats give the same text.
    Strftime(Vec<Item<'static>>),
    /// `log_timestamp false`.
    None,
}

impl Timestamp {
    /// The timestamp for `log_timestamp` / `log_timestamp_format`; an
    /// error names a format chrono cannot write.
    pub fn from_config(enabled: bool, format: Option<&str>) -> Result<Timestamp, String> {
        if !enabled {
            return Ok(Timestamp::None);
        }
        let Some(format) = format else {
            return Ok(Timestamp::Iso8601);
        };
        let items: Vec<Item<'static>> = StrftimeItems::new(format)
            .map(|item| item.to_owned())
            .collect();
        if items.iter().any(|i| matches!(i, Item::Error)) {
            return Err(format!("invalid log_timestamp_format {format:?}"));
        }
        Ok(Timestamp::Strftime(items))
    }

    /// Writes `now` (given for tests) in this format.
    fn write_at(&self, w: &mut Writer<'_>, now: chrono::DateTime<chrono::Utc>) -> fmt::Result {
        match self {
            Timestamp::Iso8601 => write!(w, "{}", now.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
            Timestamp::Strftime(items) => {
                let local = now.with_timezone(&chrono::Local);
                write!(w, "{}", local.format_with_items(items.iter()))
            }
            Timestamp::None => Ok(()),
        }
    }
}

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        self.write_at(w, chrono::Utc::now())
    }
}

/// Mosquitto's line layout: `TIMESTAMP: message`, with `Error: ` /
/// `Warning: ` before error and warning messages as Mosquitto writes them,
/// and no level or target: operators' grep patterns keep working. Fields
/// follow the message as `key=value`.
#[derive(Debug, Clone)]
pub struct LineFormat {
    pub timestamp: Timestamp,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if !matches!(self.timestamp, Timestamp::None) {
            self.timestamp.format_time(&mut w)?;
            w.write_str(": ")?;
        }
        match *event.metadata().level() {
            Level::ERROR => w.write_str("Error: ")?,
            Level::WARN => w.write_str("Warning: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Drop counters of the non-blocking log writers.
static COUNTERS: OnceLock<Vec<ErrorCounter>> = OnceLock::new();
/// Dropped lines already reported by [`report_dropped`].
static REPORTED: AtomicU64 = AtomicU64::new(0);

/// Registers the writers' drop counters (once, when logging starts).
pub fn count_drops(counters: Vec<ErrorCounter>) {
    let _ = COUNTERS.set(counters);
}

/// Log lines dropped so far because a destination could not keep up, all
/// destinations together (a line dropped by two counts twice).
pub fn dropped_lines() -> u64 {
    COUNTERS
        .get()
        .map(|cs| cs.iter().map(|c| c.dropped_lines() as u64).sum())
        .unwrap_or(0)
}

/// Logs a warning if lines were dropped since the last report; returns the
/// total. Called periodically and at shutdown.
pub fn report_dropped() -> u64 {
    let total = dropped_lines();
    let before = REPORTED.swap(total, Ordering::Relaxed);
    if total > before {
        tracing::warn!(
            "{} log lines dropped because a log destination could not keep up ({total} in all).",
            total - before
        );
    }
    total
}

/// Log files open now, so that SIGHUP can reopen them.
static FILES: Mutex<Vec<(PathBuf, Arc<Mutex<File>>)>> = Mutex::new(Vec::new());

/// A log file destination that [`reopen_files`] can swap for a freshly
/// opened file at the same path: after `logrotate` moves the file away and
/// sends SIGHUP, lines go to a new file (as Mosquitto does).
pub struct ReopenableFile(Arc<Mutex<File>>);

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl ReopenableFile {
    /// Opens `path` for appending, creating it if missing.
    pub fn open(path: &Path) -> std::io::Result<ReopenableFile> {
        let file = Arc::new(Mutex::new(open_append(path)?));
        FILES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path.to_owned(), file.clone()));
        Ok(ReopenableFile(file))
    }
}

impl Write for ReopenableFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Only the destination's writer thread writes: uncontended.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// Reopens every log file (SIGHUP). A file that cannot be reopened keeps
/// the old handle, and the failure is logged.
pub fn reopen_files() {
    let files = FILES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (path, file) in files {
        match open_append(&path) {
            Ok(new) => *file.lock().unwrap_or_else(|e| e.into_inner()) = new,
            Err(e) => tracing::error!("cannot reopen log file {}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use tracing::callsite::Identifier;
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;

    fn at(ts: &Timestamp) -> String {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 27, 15, 4, 5)
            .unwrap()
            + chrono::Duration::milliseconds(123);
        let mut s = String::new();
        ts.write_at(&mut Writer::new(&mut s), now).unwrap();
        s
    }

    #[test]
    fn iso8601_by_default() {
        let ts = Timestamp::from_config(true, None).unwrap();
        assert_eq!(at(&ts), "2026-11-27T15:04:05.123Z");
    }

    #[test]
    fn strftime_format_honoured() {
        let ts = Timestamp::from_config(true, Some("%Y-%m-%d")).unwrap();
        assert_eq!(at(&ts), "2026-11-27");
        // Minutes and seconds do not depend on the local time zone (for
        // whole-hour offsets).
        let ts = Timestamp::from_config(true, Some("[%M:%S]")).unwrap();
        assert_eq!(at(&ts), "[04:05]");
    }

    #[test]
    fn no_timestamp() {
        let ts = Timestamp::from_config(false, Some("%Y")).unwrap();
        assert_eq!(at(&ts), "");
    }

    #[test]
    fn bad_format_refused() {
        let e = Timestamp::from_config(true, Some("%Q")).unwrap_err();
        assert!(e.contains("%Q"), "{e}");
    }

    struct Cs;
    impl tracing::Callsite for Cs {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!()
        }
    }
    static CS: Cs = Cs;

    fn meta(target: &'static str, level: Level) -> Metadata<'static> {
        Metadata::new(
            "event",
            target,
            level,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&CS)),
            Kind::EVENT,
        )
    }

    fn shown(c: &Categories) -> Vec<&'static str> {
        [
            ("error", meta("broker", Level::ERROR)),
            ("warning", meta("broker", Level::WARN)),
            ("info", meta("broker::connection", Level::INFO)),
            ("debug", meta("broker", Level::DEBUG)),
            ("subscribe", meta(SUBSCRIBE, Level::INFO)),
            ("unsubscribe", meta(UNSUBSCRIBE, Level::INFO)),
        ]
        .into_iter()
        .filter(|(_, m)| c.enabled(m))
        .map(|(name, _)| name)
        .collect()
    }

    #[test]
    fn default_categories() {
        let c = Categories::select(&[], false);
        assert_eq!(shown(&c), ["error", "warning", "info"]);
    }

    #[test]
    fn verbose_is_all() {
        let c = Categories::select(&[LogType::Error], true);
        assert_eq!(c, Categories::ALL);
        assert_eq!(shown(&c).len(), 6);
    }

    #[test]
    fn chosen_categories_only() {
        use LogType::*;
        let c = Categories::select(&[Subscribe], false);
        assert_eq!(shown(&c), ["subscribe"]);
        let c = Categories::select(&[Error, Unsubscribe], false);
        assert_eq!(shown(&c), ["error", "unsubscribe"]);
        let c = Categories::select(&[Warning, Notice], false);
        assert_eq!(shown(&c), ["warning", "info"]);
        let c = Categories::select(&[Debug], false);
        assert_eq!(shown(&c), ["debug"]);
        let c = Categories::select(&[Websockets], false);
        assert!(c.is_none());
    }

    #[test]
    fn none_and_all_in_order() {
        use LogType::*;
        assert!(Categories::select(&[Error, None], false).is_none());
        let c = Categories::select(&[All, None, Information], false);
        assert_eq!(shown(&c), ["info"]);
        assert_eq!(Categories::select(&[None, All], false), Categories::ALL);
    }
}
