//! Test support: a broker on an ephemeral loopback port, a shared output buffer, timeouts.
//!
//! All broker start-up lives in [`start_broker_on`]: it runs the system `mosquitto` for now and is
//! meant to be swapped for the project's in-process broker (`broker::server::run` on a
//! `127.0.0.1:0` listener) once that exists. The same file is in `consumer/tests/common/`.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// Stops the broker when dropped.
pub struct BrokerGuard {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        // Kill this child by its PID only, and reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read the port, release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Starts a broker on a fresh loopback port.
pub fn start_broker() -> (u16, BrokerGuard) {
    let port = free_port();
    let guard = start_broker_on(port);
    (port, guard)
}

/// Starts a broker on `port` (loopback only) and waits until it accepts connections.
pub fn start_broker_on(port: u16) -> BrokerGuard {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .expect("write mosquitto.conf");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto (is it installed?)");
    let mut guard = BrokerGuard { child, _dir: dir };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = guard.child.try_wait() {
            panic!("mosquitto exited early ({status}); port {port} taken?");
        }
        assert!(start.elapsed() < WAIT, "broker did not start on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    guard
}

/// A `Write` whose bytes the test can read while the writer is still running.
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
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
