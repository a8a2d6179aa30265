//! End to end: the three real binaries as processes. The broker runs with the repository's
//! `conf/mosquitto.conf` (a temporary copy, listener moved to a free loopback port) in a scratch
//! working directory with `data/` and `log/`, as in the container; the consumer and device-sim are
//! pointed at it with `-h` and `-p`.
//!
//! `cargo test` builds only the binaries of the package under test, so this test first runs
//! `cargo build -p broker -p device-sim -p consumer` (bounded) into the same target directory; that
//! is quick when `cargo test --workspace` has built them already.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use stack_tests::free_port;

/// Bound on building the three binaries (a cold build on a small machine).
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
/// Bound on every wait once the binaries exist.
const WAIT: Duration = Duration::from_secs(30);

/// A child process, killed by its PID and reaped on drop.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child }
    }

    /// Waits (bounded) for the process to exit; `diagnostics` is shown if it does not.
    fn wait(&mut self, within: Duration, diagnostics: impl Fn() -> String) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}\n{}",
                self.name,
                diagnostics()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Builds the three binaries with the profile this test was built with and returns their
/// directory (this test runs as `<target>/<profile>/deps/stack-<hash>`).
fn build_binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>")
        .to_owned();
    let target_dir = bin_dir.parent().expect("<target>");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "broker",
        "-p",
        "device-sim",
        "-p",
        "consumer",
    ])
    .arg("--manifest-path")
    .arg(workspace_root().join("Cargo.toml"))
    .arg("--target-dir")
    .arg(target_dir);
    if bin_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let mut build = Proc::spawn("cargo build", cmd.stdout(Stdio::null()));
    let status = build.wait(BUILD_TIMEOUT, String::new);
    assert!(status.success(), "cargo build failed: {status}");
    bin_dir
}

/// `conf/mosquitto.conf` with `listener 1883` moved to `127.0.0.1:port`; nothing else changes.
fn conf_on_port(port: u16) -> String {
    let text = std::fs::read_to_string(workspace_root().join("conf/mosquitto.conf"))
        .expect("read conf/mosquitto.conf");
    let mut moved = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.trim() == "listener 1883" {
                moved += 1;
                format!("listener {port} 127.0.0.1")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(moved, 1, "one `listener 1883` line in conf/mosquitto.conf");
    lines.join("\n") + "\n"
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn lines(path: &Path) -> Vec<String> {
    read(path).lines().map(str::to_owned).collect()
}

/// Waits until `cond` holds, or fails with `diagnostics`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool, diagnostics: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn device_sim_to_consumer_through_the_broker_with_the_repository_conf() {
    let bin = build_binaries();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for sub in ["conf", "data", "log"] {
        std::fs::create_dir(root.join(sub)).expect("mkdir");
    }
    let port = free_port();
    std::fs::write(root.join("conf/mosquitto.conf"), conf_on_port(port)).expect("write conf");
    let out = |name: &str| File::create(root.join(name)).expect("create output file");
    let port_arg = port.to_string();
    let log = root.join("log/broker.log");

    // `-v` logs each packet type: the SUBSCRIBE line tells when the consumer is listening.
    let mut broker = Proc::spawn(
        "broker",
        Command::new(bin.join("broker"))
            .args(["-c", "conf/mosquitto.conf", "-v"])
            .current_dir(root)
            .stdout(out("broker.stdout"))
            .stderr(out("broker.stderr")),
    );
    let broker_diag = || {
        format!(
            "broker stderr:\n{}\nlog/broker.log:\n{}",
            read(&root.join("broker.stderr")),
            read(&log)
        )
    };
    wait_until(
        "the broker to listen",
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        broker_diag,
    );

    let mut consumer = Proc::spawn(
        "consumer",
        Command::new(bin.join("consumer"))
            .args(["-h", "127.0.0.1", "-p", &port_arg])
            .args(["-i", "e2e-consumer", "-C", "20"])
            .stdout(out("consumer.stdout"))
            .stderr(out("consumer.stderr")),
    );
    wait_until(
        "the consumer's SUBSCRIBE",
        || {
            read(&log)
                .lines()
                .any(|l| l.contains("received SUBSCRIBE") && l.contains("e2e-consumer"))
        },
        broker_diag,
    );

    let mut sim = Proc::spawn(
        "device-sim",
        Command::new(bin.join("device-sim"))
            .args(["-h", "127.0.0.1", "-p", &port_arg, "--interval", "0..0.05"])
            .stdout(out("device-sim.stdout"))
            .stderr(out("device-sim.stderr")),
    );
    let sim_diag = || {
        format!(
            "device-sim stdout:\n{}\ndevice-sim stderr:\n{}",
            read(&root.join("device-sim.stdout")),
            read(&root.join("device-sim.stderr"))
        )
    };
    let status = sim.wait(WAIT, sim_diag);
    assert!(status.success(), "device-sim: {status}\n{}", sim_diag());
    let mut expected = vec!["Device 1 : Data published.".to_owned(); 20];
    expected.push("Stopped...".to_owned());
    assert_eq!(lines(&root.join("device-sim.stdout")), expected);

    let consumer_diag = || {
        format!(
            "consumer stdout:\n{}\nconsumer stderr:\n{}",
            read(&root.join("consumer.stdout")),
            read(&root.join("consumer.stderr"))
        )
    };
    let status = consumer.wait(WAIT, consumer_diag);
    assert!(status.success(), "consumer: {status}\n{}", consumer_diag());
    let mut expected = vec!["Connected with result code 0".to_owned()];
    expected.extend((0..20).map(|i| format!("Device 1 : Data {i}")));
    assert_eq!(lines(&root.join("consumer.stdout")), expected);

    // The broker is still up, and its log landed under log/ of its working directory (and on
    // stdout too: `log_dest stdout`).
    assert!(broker.running(), "broker exited\n{}", broker_diag());
    let text = read(&log);
    assert!(text.contains("running"), "log/broker.log:\n{text}");
    assert!(text.contains("e2e-consumer"), "log/broker.log:\n{text}");
    assert!(read(&root.join("broker.stdout")).contains("running"));
}
