//! The `broker` binary as a user runs it: CLI, config errors, local-only
//! mode, `broker check`, and a clean exit on SIGTERM/SIGINT.

mod common;

use std::process::Command;
use std::time::Duration;

use broker::codec::{Packet, QoS};
use common::*;

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
        let mut p = Proc::spawn(&["-p", &port.to_string()]);
        wait_listening(port).await;
        // A connected client does not hold the broker up.
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut c = Raw::connect(addr, "c", true).await;
        c.subscribe(1, &[("t", QoS::AtMostOnce)]).await;
        p.signal(sig);
        let status = p.wait_exit(Duration::from_secs(2));
        assert!(status.success(), "{sig}: {status:?}");
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn local_only_mode_and_check_subcommand() {
    let port = free_port();
    let mut p = Proc::spawn(&["-p", &port.to_string()]);
    wait_listening(port).await;
    let out = Command::new(BIN)
        .args(["check", "-h", "127.0.0.1", "-p", &port.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    p.signal("-TERM");
    p.wait_exit(Duration::from_secs(5));
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
    let mut p = Proc::spawn(&["-c", conf.to_str().unwrap()]);
    wait_listening(port).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Raw::connect(addr, "logged-client", true).await;
    c.send(&Packet::Disconnect).await;
    c.expect_closed().await;
    p.signal("-TERM");
    p.wait_exit(Duration::from_secs(5));
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
    let _p = Proc::spawn(&["-v", "-p", &port.to_string()]);
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

#[tokio::test]
async fn websockets_listeners_are_closed_not_served_as_plain_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, ws) = (free_port(), free_port());
    let config = format!(
        "listener {mqtt} 127.0.0.1\nlistener {ws} 127.0.0.1\nprotocol websockets\nallow_anonymous true\n"
    );
    let _p = Proc::with_config(dir.path(), &config, mqtt).await;
    let addr = format!("127.0.0.1:{mqtt}").parse().unwrap();
    let mut c = Raw::connect(addr, "tcp", true).await;
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    // Nothing answers MQTT on the websockets port.
    let served = match tokio::net::TcpStream::connect(("127.0.0.1", ws)).await {
        Err(_) => false,
        Ok(_) => {
            let addr = format!("127.0.0.1:{ws}").parse().unwrap();
            let mut c = Raw::open(addr).await;
            c.send(&Packet::Connect(connect_packet("ws", true))).await;
            matches!(c.recv_within(QUIET).await, Ok(Some(_)))
        }
    };
    assert!(!served, "plain MQTT answered on a websockets listener");
}

#[tokio::test]
async fn the_open_files_soft_limit_is_raised_to_the_hard_limit() {
    // One descriptor per client: a soft limit of 256 must not cap clients.
    let port = free_port();
    let script = format!("ulimit -Sn 256 && exec {BIN} -p {port}");
    let child = Command::new("sh")
        .args(["-c", &script])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_listening(port).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", p.0.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    // "Max open files SOFT HARD files"; an unlimited hard limit is capped
    // at 2^20 (the kernel's default fs.nr_open).
    let fields: Vec<&str> = line.split_whitespace().collect();
    let hard = fields[4].parse::<u64>().unwrap_or(u64::MAX).min(1 << 20);
    assert_eq!(fields[3].parse::<u64>().unwrap(), hard, "{line}");
}

#[tokio::test]
async fn a_listener_without_address_serves_ipv4_and_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("b.log");
    let config = format!(
        "listener {port}\nallow_anonymous true\nlog_dest file {}\n",
        log.display()
    );
    let _p = Proc::with_config(dir.path(), &config, port).await;
    let v4 = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Raw::connect(v4, "over-v4", true).await;
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    // IPv6 where this machine has it (a host without ::1 cannot test it).
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let v6 = format!("[::1]:{port}").parse().unwrap();
        let mut c = Raw::connect(v6, "over-v6", true).await;
        c.send(&Packet::PingReq).await;
        assert_eq!(c.recv().await, Some(Packet::PingResp));
    }
    // IPv4 peers are logged as such, not as ::ffff:127.0.0.1.
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("from 127.0.0.1:") && text.contains("as over-v4") {
            assert!(!text.contains("::ffff:"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
