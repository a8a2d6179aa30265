//! The `broker` binary as a user runs it: CLI, config errors, local-only
//! mode, `broker check`, and a clean exit on SIGTERM/SIGINT.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use broker::codec::{Packet, QoS};
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_broker");

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker process, killed by PID on drop if still running.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

async fn wait_listening(port: u16) {
    let deadline = Instant::now() + TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "broker did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn wait_exit(p: &mut Proc, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = p.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "broker did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn help_and_version() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("-c config_file"));
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("broker version "));
    let out = Command::new(BIN).arg("--bogus").output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn bad_config_line_names_file_and_line_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.conf");
    std::fs::write(&conf, "listener 1883\n\nno_such_option true\n").unwrap();
    let out = Command::new(BIN).arg("-c").arg(&conf).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3: Unknown configuration variable \"no_such_option\"",
            conf.display()
        )),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .args(["-c", "/nonexistent/x.conf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.conf"));
}

#[test]
fn a_config_under_config_instead_of_conf_is_named() {
    // The Mosquitto image's `config` mounted where this stack reads `conf`, and the other way.
    for (wanted, present) in [("conf", "config"), ("config", "conf")] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(present)).unwrap();
        let existing = dir.path().join(present).join("mosquitto.conf");
        std::fs::write(&existing, "listener 1883\n").unwrap();
        let missing = dir.path().join(wanted).join("mosquitto.conf");
        let out = Command::new(BIN).arg("-c").arg(&missing).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("cannot read {}: ", missing.display())),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "; {} exists: the Mosquitto image mounts \"config\", this stack mounts \"conf\" \
                 (see README)",
                existing.display()
            )),
            "{stderr}"
        );
    }
    // Neither exists: the plain error, no hint.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("conf").join("mosquitto.conf");
    let out = Command::new(BIN).arg("-c").arg(&missing).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(!stderr.contains("exists"), "{stderr}");
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_broker_promptly() {
    for sig in ["-TERM", "-INT"] {
        let port = free_port();
        let mut p = spawn(&["-p", &port.to_string()]);
        wait_listening(port).await;
        // A connected client does not hold the broker up.
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut c = Raw::connect(addr, "c", true).await;
        c.subscribe(1, &[("t", QoS::AtMostOnce)]).await;
        signal(&p, sig);
        let status = wait_exit(&mut p, Duration::from_secs(2));
        assert!(status.success(), "{sig}: {status:?}");
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn local_only_mode_and_check_subcommand() {
    let port = free_port();
    let mut p = spawn(&["-p", &port.to_string()]);
    wait_listening(port).await;
    let out = Command::new(BIN)
        .args(["check", "-h", "127.0.0.1", "-p", &port.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    signal(&p, "-TERM");
    wait_exit(&mut p, Duration::from_secs(2));
    let mut stderr = String::new();
    std::io::Read::read_to_string(p.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("local only mode"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");

    // Nothing listening: check fails.
    let out = Command::new(BIN)
        .args(["check", "-p", &free_port().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn config_file_listener_and_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("broker.log");
    let conf = dir.path().join("m.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\r\nallow_anonymous true\nlog_dest file {}\nlog_dest stderr\n",
            log.display()
        ),
    )
    .unwrap();
    let mut p = spawn(&["-c", conf.to_str().unwrap()]);
    wait_listening(port).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Raw::connect(addr, "logged-client", true).await;
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;
    signal(&p, "-TERM");
    wait_exit(&mut p, Duration::from_secs(2));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("as logged-client"), "{text}");
}

#[tokio::test]
async fn missing_log_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("m.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {} 127.0.0.1\nlog_dest file {}/nope/b.log\n",
            free_port(),
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN).arg("-c").arg(&conf).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope/b.log"));
}

#[tokio::test]
async fn an_unread_log_pipe_never_stalls_the_broker() {
    // -v logs every packet to stderr; nobody reads the pipe. Once the pipe
    // (64 KiB) is full, lines are dropped instead of blocking.
    let port = free_port();
    let _p = spawn(&["-v", "-p", &port.to_string()]);
    wait_listening(port).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Raw::connect(addr, "chatty", true).await;
    // 20,000 lines of about 100 bytes: 30 times the pipe's capacity. Each
    // reply must come within the receive timeout.
    for i in 0..20_000u32 {
        c.send(&Packet::PingReq).await;
        assert_eq!(c.recv().await, Some(Packet::PingResp), "ping {i}");
    }
}
