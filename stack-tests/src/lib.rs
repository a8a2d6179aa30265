//! Test support for device-sim and consumer: the project's broker in process on a loopback port, a
//! shared output buffer, and bounded waits. One copy, used by both packages' tests (as a
//! dev-dependency); `tests/stack.rs` here runs the three real binaries end to end.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Bound on every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A broker running on its own thread and tokio runtime. Dropping it stops the broker and waits
/// (bounded by [`WAIT`]) until every connection has ended and the port is released.
///
/// Its own thread rather than the test's runtime: `#[tokio::test]` runs on one thread, `Drop` cannot
/// await, and a test that restarts the broker on the same port needs the old one really gone.
pub struct BrokerGuard {
    port: u16,
    shutdown: CancellationToken,
    /// Receives once `server::run` has returned (the listener and every connection closed).
    stopped: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl BrokerGuard {
    /// The loopback port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        self.shutdown.cancel();
        match self.stopped.recv_timeout(WAIT) {
            // The thread only drops its (idle) runtime now: joining is quick.
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
            // Leave the thread behind rather than hang the test run; say so.
            Err(mpsc::RecvTimeoutError::Timeout) => eprintln!(
                "stack-tests: broker on port {} did not stop within {WAIT:?}",
                self.port
            ),
        }
    }
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read the port, release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Starts a broker on a fresh loopback port.
pub fn start_broker() -> (u16, BrokerGuard) {
    let guard = start_broker_on(0);
    (guard.port(), guard)
}

/// Starts the project's broker (default configuration) on `127.0.0.1:port`, or on a fresh port
/// when `port` is 0. It accepts connections once this returns: the socket is already listening.
/// `server::bind` sets SO_REUSEADDR, so a test may stop a broker and start another on its port.
pub fn start_broker_on(port: u16) -> BrokerGuard {
    let shutdown = CancellationToken::new();
    let (bound_tx, bound_rx) = mpsc::channel();
    let (stopped_tx, stopped) = mpsc::channel();
    let token = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name(format!("broker-{port}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                let listener = match broker::server::bind(addr) {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                let _ = bound_tx.send(listener.local_addr().map(|a| a.port()));
                let result = broker::server::run(listener, broker::Config::default(), token).await;
                if let Err(e) = result {
                    eprintln!("stack-tests: broker on port {port} failed: {e}");
                }
            });
            let _ = stopped_tx.send(());
        })
        .expect("spawn the broker thread");
    let port = match bound_rx.recv_timeout(WAIT) {
        Ok(Ok(port)) => port,
        Ok(Err(e)) => panic!("broker cannot listen on 127.0.0.1:{port}: {e}"),
        Err(e) => panic!("broker thread did not start: {e}"),
    };
    BrokerGuard {
        port,
        shutdown,
        stopped,
        thread: Some(thread),
    }
}

/// A `Write` whose bytes the test can read while the writer is still running.
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Everything written so far, split into lines.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until some line satisfies `pred`.
    pub async fn wait_for_line(&self, pred: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while !self.lines().iter().any(|l| pred(l)) {
            assert!(
                start.elapsed() < WAIT,
                "timed out; output so far: {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Awaits `fut`, failing the test after [`WAIT`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
