//! The accept loop, connection limits and graceful shutdown.
//!
//! [`run`] takes listeners that are already bound, so tests bind
//! `127.0.0.1:0`; it returns only after every connection task has ended.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info};

use crate::auth::{self, Auth};
use crate::config::Config;
use crate::connection;
use crate::router::Router;
use crate::store::{self, Durability, Store};
use crate::sys;

/// State shared by every connection task.
pub struct Shared {
    pub config: Config,
    /// Held only for synchronous routing work, never across `.await`.
    router: Mutex<Router>,
    /// Source of connection ids and assigned client ids.
    pub next_connection: AtomicU64,
    /// Mixed into assigned client ids so that they differ between runs.
    pub id_salt: u64,
    /// The store, when persistence is on.
    pub store: Option<Arc<Store>>,
    /// Passwords and ACLs by realm (one, or one per listener with
    /// `per_listener_settings true`); replaced as a whole on SIGHUP when
    /// the files load, left as they were when they do not.
    auth: RwLock<Vec<Arc<Auth>>>,
    /// Bumped on every reload, so that connections can keep their own
    /// handle on the rules and refresh it only when it changed.
    pub auth_generation: AtomicU64,
    /// Traffic counters for `$SYS`, bumped by the connection tasks.
    pub counters: sys::Counters,
}

impl Shared {
    fn with_router(
        config: Config,
        router: Router,
        store: Option<Arc<Store>>,
        auths: Vec<Auth>,
    ) -> Shared {
        let auths: Vec<Arc<Auth>> = auths.into_iter().map(Arc::new).collect();
        let mut router = router;
        router.upgrade_outgoing_qos = config.upgrade_outgoing_qos;
        router.check_retain_source = config.check_retain_source;
        router.set_auth(&auths);
        let id_salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default()
            .rotate_left(32);
        Shared {
            config,
            router: Mutex::new(router),
            next_connection: AtomicU64::new(1),
            id_salt,
            store,
            auth: RwLock::new(auths),
            auth_generation: AtomicU64::new(0),
            counters: sys::Counters::default(),
        }
    }

    /// The authentication and ACL rules in force for `realm`.
    pub fn auth(&self, realm: usize) -> Arc<Auth> {
        let auths = self.auth.read().unwrap_or_else(|e| e.into_inner());
        auths
            .get(realm)
            .or_else(|| auths.first())
            .cloned()
            .unwrap_or_default()
    }

    /// Whether clients of `realm` may connect with an empty client id.
    pub fn allow_zero_length_clientid(&self, realm: usize) -> bool {
        match self.config.per_listener_settings {
            true => realm_security(&self.config, realm).allow_zero_length_clientid,
            false => self.config.allow_zero_length_clientid,
        }
    }

    /// Reloads the password and ACL files (SIGHUP). A file that fails to
    /// load leaves the old rules in force: never a crash, never open access.
    pub fn reload_auth(&self) {
        match load_auths(&self.config) {
            Ok(auths) => {
                let auths: Vec<Arc<Auth>> = auths.into_iter().map(Arc::new).collect();
                self.router().set_auth(&auths);
                *self.auth.write().unwrap_or_else(|e| e.into_inner()) = auths;
                self.auth_generation
                    .fetch_add(1, std::sync::atomic::Ordering::Release);
                info!("password and ACL files reloaded");
            }
            Err(e) => error!("reload failed, previous rules stay in force: {e}"),
        }
    }

    /// Locks the router. A poisoned lock still yields it: one panicking
    /// connection must not take the broker down.
    pub fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Binds a listening socket with SO_REUSEADDR, so a restarted broker does
/// not wait for old connections in TIME_WAIT.
///
/// The IPv6 wildcard `[::]` is bound dual-stack (IPV6_V6ONLY off, whatever
/// the system default), so one socket serves IPv6 and IPv4 clients.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Serves one listener until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> io::Result<()> {
    run_listeners(vec![listener], config, shutdown).await
}

/// Serves several listeners with one shared router until `shutdown` is
/// cancelled, then waits for every connection to end.
pub async fn run_listeners(
    listeners: Vec<TcpListener>,
    config: Config,
    shutdown: CancellationToken,
) -> io::Result<()> {
    run_with_reload(listeners, config, shutdown, Arc::new(Notify::new())).await
}

/// [`run_listeners`], reloading the password and ACL files whenever
/// `reload` is notified (SIGHUP in the binary).
pub async fn run_with_reload(
    listeners: Vec<TcpListener>,
    config: Config,
    shutdown: CancellationToken,
    reload: Arc<Notify>,
) -> io::Result<()> {
    // Listener `i` is the configuration's listener `i` (the binary binds
    // one socket per listener, in order). Listeners the file did not
    // describe (tests, the local-only default) take the global value.
    let limits: Vec<Arc<Semaphore>> = (0..listeners.len())
        .map(|i| {
            let max = match config.listener_options.get(i) {
                Some(options) => options.max_connections,
                None => config.max_connections,
            };
            let max = max.unwrap_or(Semaphore::MAX_PERMITS);
            Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)))
        })
        .collect();
    // What each listener's clients get: its mount point, and its realm of
    // access rules (its own with `per_listener_settings true`).
    let contexts: Vec<connection::ListenerContext> = (0..listeners.len())
        .map(|i| connection::ListenerContext {
            mount: config
                .listener_options
                .get(i)
                .and_then(|o| o.mount_point.as_deref())
                .map(Arc::from),
            realm: if config.per_listener_settings { i } else { 0 },
        })
        .collect();
    let websockets: Vec<bool> = (0..listeners.len())
        .map(|i| {
            config
                .listener_options
                .get(i)
                .is_some_and(|o| o.protocol == crate::config::Protocol::Websockets)
        })
        .collect();
    let shared = Arc::new(open_state(config)?);
    let tracker = TaskTracker::new();
    for (((listener, limit), websockets), context) in listeners
        .into_iter()
        .zip(limits)
        .zip(websockets)
        .zip(contexts)
    {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        if websockets {
            // Serving plain MQTT where clients expect websockets would be
            // worse than not serving: say so, keep the other listeners.
            error!(
                "Listener on {addr}: protocol websockets is not supported yet; this listener is \
                 closed (the other listeners serve MQTT over TCP)."
            );
            continue;
        }
        info!("Opening listener on {addr}.");
        tracker.spawn(accept_loop(
            listener,
            shared.clone(),
            limit,
            context,
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    tracker.spawn({
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    _ = reload.notified() => shared.reload_auth(),
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    });
    if let Some(max_age) = shared.config.persistent_client_expiration {
        tracker.spawn(expire_sessions(shared.clone(), max_age, shutdown.clone()));
    }
    if !shared.config.sys_interval.is_zero() {
        let interval = shared.config.sys_interval;
        tracker.spawn(sys::run(shared.clone(), interval, shutdown.clone()));
    }
    shutdown.cancelled().await;
    tracker.close();
    tracker.wait().await;
    if let Some(store) = shared.store.clone() {
        // Every connection has ended: write what is left, fsync, close.
        tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// Removes expired persistent sessions now and then.
async fn expire_sessions(shared: Arc<Shared>, max_age: Duration, shutdown: CancellationToken) {
    // Often enough that a session outlives its expiry by at most a tenth.
    let period = (max_age / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        shared.router().expire(max_age);
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The security settings of listener `realm` under `per_listener_settings
/// true`; a listener that sets none gets the defaults (anonymous refused).
fn realm_security(config: &Config, realm: usize) -> crate::config::ListenerSecurity {
    config
        .listener_options
        .get(realm)
        .and_then(|o| o.security.clone())
        .unwrap_or_default()
}

/// Loads the password and ACL files the configuration names, logging their
/// warnings: one set of rules, or one per listener with
/// `per_listener_settings true` (realm = listener index).
fn load_auths(config: &Config) -> Result<Vec<Auth>, auth::Error> {
    fn load(
        password_file: Option<&std::path::Path>,
        acl_file: Option<&std::path::Path>,
        allow_anonymous: bool,
    ) -> Result<Auth, auth::Error> {
        let (auth, warnings) = auth::load(password_file, acl_file, allow_anonymous)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        Ok(auth)
    }
    if !config.per_listener_settings {
        return Ok(vec![load(
            config.password_file.as_deref(),
            config.acl_file.as_deref(),
            config.allow_anonymous,
        )?]);
    }
    (0..config.listener_options.len().max(1))
        .map(|realm| {
            let security = realm_security(config, realm);
            load(
                security.password_file.as_deref(),
                security.acl_file.as_deref(),
                security.allow_anonymous,
            )
        })
        .collect()
}

/// The shared state, loaded from the store when persistence is on.
fn open_state(mut config: Config) -> io::Result<Shared> {
    // `max_inflight_bytes` is a session limit like the others.
    config.limits.max_inflight_bytes = config.max_inflight_bytes;
    let auths = load_auths(&config).map_err(io::Error::other)?;
    if !config.persistence {
        return Ok(Shared::with_router(config, Router::new(), None, auths));
    }
    let path = store::store_path(&config.persistence_location, &config.persistence_file);
    let durability = if config.persistence_sync_interval.is_zero() {
        Durability::Sync
    } else {
        Durability::Every(config.persistence_sync_interval)
    };
    let (store, recovered) = Store::open(&path, durability, config.persistence_refuse_corrupt)
        .map_err(io::Error::other)?;
    let router = Router::with_store(store.clone(), recovered, config.limits);
    Ok(Shared::with_router(config, router, Some(store), auths))
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    context: connection::ListenerContext,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(1);
                sys::add(&shared.counters.sockets, 1);
                a
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                error!("accept failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let permit = match limit.clone().try_acquire_owned() {
            Ok(permit) => permit,
            // At the limit: a client that just closed may not have been
            // noticed by its task yet (Mosquitto's single loop sees the
            // close first). Give the slot a moment to free up, then refuse.
            Err(_) => {
                match tokio::time::timeout(Duration::from_millis(50), limit.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        debug!(%peer, "max_connections reached; connection refused");
                        continue;
                    }
                }
            }
        };
        if shared.config.set_tcp_nodelay {
            let _ = stream.set_nodelay(true);
        }
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let context = context.clone();
        tracker.spawn(async move {
            connection::handle(stream, shared, context, shutdown).await;
            drop(permit);
        });
    }
}
