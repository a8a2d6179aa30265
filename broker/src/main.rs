//! The `broker` binary: a mosquitto-style command line over the library.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use broker::config::{Config, Listener, LogDest};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

const USAGE: &str = "\
broker: an MQTT 3.1.1 / 3.1 broker, a drop-in replacement for mosquitto.

Usage: broker [-c config_file] [-p port] [-v]
       broker check [-h host] [-p port] [-u user -P password]
       broker -h | --help | --version

 -c : read configuration from a mosquitto.conf file.
 -p : listen on this port (repeatable), on 127.0.0.1 only (local-only mode,
      as mosquitto 2.0). Ignored when the config file defines listeners.
 -v : verbose: log every connection and packet type.
 check : connect to a broker over MQTT and exit 0 when it accepts the
      connection, 1 otherwise (for container health checks).";

struct Args {
    config: Option<PathBuf>,
    ports: Vec<u16>,
    verbose: bool,
}

fn parse_port(v: Option<String>) -> anyhow::Result<u16> {
    let v = v.context("-p needs a port")?;
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => bail!("invalid port {v:?}"),
    }
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("passwd") {
        argv.next();
        return broker::passwd::main(argv.collect());
    }
    if argv.peek().map(String::as_str) == Some("check") {
        argv.next();
        return match check(argv) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("check failed: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let mut args = Args {
        config: None,
        ports: Vec::new(),
        verbose: false,
    };
    while let Some(a) = argv.next() {
        match a.as_str() {
            "-c" | "--config-file" => {
                args.config = Some(argv.next().map(PathBuf::from).unwrap_or_default());
                if args.config.as_deref() == Some(std::path::Path::new("")) {
                    eprintln!("Error: -c argument given, but no config file specified.");
                    return ExitCode::FAILURE;
                }
            }
            "-p" | "--port" => match parse_port(argv.next()) {
                Ok(p) => args.ports.push(p),
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    return ExitCode::FAILURE;
                }
            },
            "-v" | "--verbose" => args.verbose = true,
            "-d" | "--daemon" => {
                eprintln!("Warning: -d (daemon) is not supported; running in the foreground.")
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--version" => {
                println!("broker version {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("Error: unknown option {other:?}.\n\n{USAGE}");
                return ExitCode::FAILURE;
            }
        }
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let (mut config, warnings) = match &args.config {
        Some(path) => Config::load(path).map_err(|e| match mount_mixup(path) {
            Some(other) => anyhow::anyhow!(
                "{e}; {} exists: the Mosquitto image mounts \"config\", this stack mounts \"conf\" \
                 (see README)",
                other.display()
            ),
            None => e.into(),
        })?,
        None => (Config::default(), Vec::new()),
    };
    let _guards = init_logging(&config, args.verbose)?;
    config.verbose |= args.verbose;

    let local_only = config.listeners.is_empty();
    if !args.ports.is_empty() {
        if local_only {
            // Command-line ports alone stay local-only (Mosquitto 2.0).
            config
                .listeners
                .extend(args.ports.iter().map(|&port| Listener {
                    port,
                    bind: Some("127.0.0.1".to_owned()),
                }));
        } else {
            // As Mosquitto: the config file's listeners win over `-p`
            // (its own test suite runs `-c FILE -p PORT` with the same port
            // in both).
            info!("-p ignored: the configuration file defines listeners");
        }
    }
    if config.listeners.is_empty() {
        config.listeners.push(Listener {
            port: 1883,
            bind: Some("127.0.0.1".into()),
        });
    }
    if local_only {
        info!(
            "Starting in local only mode. Connections will only be possible from clients \
             running on this machine. Create a configuration file which defines a listener \
             (for example `listener 1883`) to listen on all interfaces."
        );
    }
    for w in &warnings {
        warn!("{w}");
    }

    raise_open_files_limit();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let mut listeners = Vec::new();
        for l in &config.listeners {
            listeners.push(bind_listener(l)?);
        }
        if let Some(pid_file) = &config.pid_file {
            std::fs::write(pid_file, format!("{}\n", std::process::id()))
                .with_context(|| format!("cannot write pid_file {}", pid_file.display()))?;
        }
        info!("broker version {} running", env!("CARGO_PKG_VERSION"));
        let shutdown = CancellationToken::new();
        let reload = Arc::new(Notify::new());
        tokio::spawn(signals(shutdown.clone(), reload.clone()));
        tokio::spawn(async {
            // Dropped log lines are reported once a minute, and at exit.
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                broker::log::report_dropped();
            }
        });
        broker::server::run_with_reload(listeners, config, shutdown, reload).await?;
        info!("broker version {} terminating", env!("CARGO_PKG_VERSION"));
        broker::log::report_dropped();
        anyhow::Ok(())
    })
}

/// For a config file that does not exist: the same path with a `conf` directory swapped for
/// `config` (or back), if that file exists. The official Mosquitto image keeps its configuration
/// in `/mosquitto/config`, this stack in `/mosquitto/conf`; a volume mounted at the other one is
/// the likely mistake.
fn mount_mixup(path: &Path) -> Option<PathBuf> {
    if path.exists() {
        return None;
    }
    let parts: Vec<Component> = path.components().collect();
    // Directories only: the file name itself is never swapped.
    let dirs = parts.len().saturating_sub(1);
    (0..dirs).find_map(|i| {
        let swapped = match parts[i].as_os_str().to_str() {
            Some("conf") => "config",
            Some("config") => "conf",
            _ => return None,
        };
        let mut other = PathBuf::new();
        for (j, part) in parts.iter().enumerate() {
            if i == j {
                other.push(swapped);
            } else {
                other.push(part);
            }
        }
        other.is_file().then_some(other)
    })
}

/// Raises the soft limit on open files to the hard limit: a broker holds a
/// descriptor per client, and the usual soft limit of 1024 would refuse
/// clients long before memory or CPU run out (Go's runtime and nginx do the
/// same). Failure changes nothing and is only logged.
fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return;
            }
            // An unlimited hard limit cannot be set as the soft one
            // (the kernel caps descriptors at fs.nr_open, 2^20 by default).
            let target = limit.rlim_max.min(1 << 20);
            if limit.rlim_cur < target {
                let old = limit.rlim_cur;
                limit.rlim_cur = target;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    tracing::debug!("open files limit raised from {old} to {target}");
                } else {
                    warn!("cannot raise the open files limit above {old}");
                }
            }
        }
    }
}

/// Binds listener `l`: on its address, or, without one, on every
/// interface: one dual-stack socket on `[::]` (IPv6 and IPv4, as Mosquitto
/// serves both), or `0.0.0.0` where the system has no IPv6.
fn bind_listener(l: &Listener) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = match &l.bind {
        Some(host) => std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), l.port))
            .with_context(|| format!("cannot resolve listener address {host}"))?
            .next()
            .with_context(|| format!("listener address {host} resolves to nothing"))?,
        None => {
            let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), l.port);
            match broker::server::bind(any6) {
                Ok(listener) => return Ok(listener),
                Err(e) => {
                    tracing::debug!("no IPv6 listener on port {} ({e}); IPv4 only", l.port);
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), l.port)
                }
            }
        }
    };
    broker::server::bind(addr).with_context(|| format!("cannot listen on {addr}"))
}

async fn signals(shutdown: CancellationToken, reload: Arc<Notify>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr1)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    broker::log::reopen_files();
                    info!("SIGHUP: log files reopened; reloading the password and ACL files");
                    reload.notify_one();
                }
                _ = usr1.recv() => {
                    // Mosquitto's "save now": our store is written
                    // continuously, so there is nothing to do.
                    info!("SIGUSR1: the store is always up to date; nothing to save");
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reload;
        let _ = tokio::signal::ctrl_c().await;
    }
    info!("signal received, shutting down");
    shutdown.cancel();
}

/// Sets up logging to the configured destinations, with Mosquitto's
/// `log_type` categories and line layout (see `broker::log`); `BROKER_LOG`
/// (an `EnvFilter` directive) replaces the categories. Writes go through
/// non-blocking writers that drop lines, and count them, when a destination
/// cannot keep up: a pipe nobody reads never stalls the broker.
fn init_logging(
    config: &Config,
    verbose: bool,
) -> anyhow::Result<Vec<tracing_appender::non_blocking::WorkerGuard>> {
    use broker::log::{Categories, LineFormat, Timestamp};
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{filter, Layer};

    let timestamp =
        Timestamp::from_config(config.log_timestamp, config.log_timestamp_format.as_deref())
            .map_err(anyhow::Error::msg)?;
    let categories = Categories::select(&config.log_types, verbose);
    let env = tracing_subscriber::EnvFilter::try_from_env("BROKER_LOG").ok();
    if env.is_none() && categories.is_none() {
        // `log_type none`: no destination is even opened.
        return Ok(Vec::new());
    }
    let mut dests = config.log_dest.clone();
    if dests.is_empty() {
        dests.push(LogDest::Stderr);
    }
    let mut guards = Vec::new();
    let mut writers = Vec::new();
    let mut counters = Vec::new();
    for dest in &dests {
        let (writer, guard) = match dest {
            LogDest::None => continue,
            LogDest::Stdout => tracing_appender::non_blocking(std::io::stdout()),
            LogDest::Stderr => tracing_appender::non_blocking(std::io::stderr()),
            LogDest::File(path) => {
                let file = broker::log::ReopenableFile::open(path).with_context(|| {
                    format!(
                        "cannot open log file {} (does its directory exist?)",
                        path.display()
                    )
                })?;
                tracing_appender::non_blocking(file)
            }
        };
        counters.push(writer.error_counter());
        writers.push(writer);
        guards.push(guard);
    }
    broker::log::count_drops(counters);
    let mut iter = writers.into_iter();
    let writer = match (iter.next(), iter.next(), iter.next()) {
        (None, _, _) => return Ok(guards),
        (Some(a), None, _) => BoxMakeWriter::new(a),
        (Some(a), Some(b), None) => BoxMakeWriter::new(a.and(b)),
        (Some(a), Some(b), Some(c)) => BoxMakeWriter::new(a.and(b).and(c)),
    };
    let layer = tracing_subscriber::fmt::layer()
        .event_format(LineFormat { timestamp })
        .with_ansi(false)
        .with_writer(writer);
    let registry = tracing_subscriber::registry();
    match env {
        Some(env) => registry.with(layer.with_filter(env)).init(),
        None => registry
            .with(layer.with_filter(filter::filter_fn(move |meta| categories.enabled(meta))))
            .init(),
    }
    Ok(guards)
}

/// `broker check [-h HOST] [-p PORT] [-u USER -P PASSWORD]`: CONNECT,
/// read the CONNACK, DISCONNECT. Without credentials any CONNACK means the
/// broker is up and speaking MQTT (a broker that refuses anonymous clients
/// is still healthy); with them, only acceptance counts.
fn check(mut argv: impl Iterator<Item = String>) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut host = "127.0.0.1".to_owned();
    let mut port = 1883;
    let mut username = None;
    let mut password = None;
    while let Some(a) = argv.next() {
        match a.as_str() {
            "-h" => host = argv.next().context("-h needs a host")?,
            "-p" => port = parse_port(argv.next())?,
            "-u" => username = Some(argv.next().context("-u needs a user name")?),
            "-P" => password = Some(argv.next().context("-P needs a password")?),
            other => bail!("unknown option {other:?}"),
        }
    }
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))?
        .next()
        .context("no address")?;
    let timeout = Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    let strict = username.is_some();
    let mut buf = bytes::BytesMut::new();
    broker::codec::encode(
        &broker::codec::Packet::Connect(broker::codec::Connect {
            protocol: broker::codec::Protocol::V311,
            clean_session: true,
            keep_alive: 10,
            client_id: broker::codec::ByteStr::from(""),
            will: None,
            username: username.map(broker::codec::ByteStr::from),
            password: password.map(bytes::Bytes::from),
        }),
        &mut buf,
    )?;
    broker::codec::encode(&broker::codec::Packet::Disconnect, &mut buf)?;
    s.write_all(&buf)?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).context("no CONNACK")?;
    match connack {
        [0x20, 0x02, _, 0] => Ok(()),
        [0x20, 0x02, _, code] if !strict => {
            eprintln!("broker is up; it refused this anonymous connection (return code {code})");
            Ok(())
        }
        [0x20, 0x02, _, code] => bail!("connection refused with return code {code}"),
        other => bail!("unexpected reply {other:?}"),
    }
}
