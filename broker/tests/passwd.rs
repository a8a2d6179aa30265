//! Password files across tools: files `broker passwd` writes are accepted by
//! the real Mosquitto broker, and files the real `mosquitto_passwd` writes are
//! accepted by [`broker::auth::PasswordFile`]. Mosquitto must be installed (CI
//! installs it); a missing binary fails the test with a message saying so.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use broker::auth::PasswordFile;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: these interop tests need Mosquitto 2.0 (apt-get install mosquitto mosquitto-clients)");
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

fn broker_passwd(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_broker"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::null()))
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real mosquitto, killed by its PID when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mosquitto(dir: &Path, password_file: &Path) -> Mosquitto {
    assert!(
        Path::new(MOSQUITTO).exists(),
        "{MOSQUITTO} not found: these interop tests need Mosquitto 2.0 installed"
    );
    // A port freed just before can be taken by someone else: retry.
    for _ in 0..5 {
        let port = common::free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                // `user root`: started as root (as CI is), mosquitto would
                // switch to the `mosquitto` user, which cannot read a 0600
                // file in a private temporary directory. Ignored otherwise.
                "listener {port} 127.0.0.1\npassword_file {}\nallow_anonymous false\nuser root\n",
                password_file.display()
            ),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
            .spawn()
            .expect("cannot start mosquitto");
        let mut m = Mosquitto { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return m;
            }
            if let Ok(Some(_)) = m.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(m);
    }
    panic!(
        "mosquitto did not start listening:\n{}",
        std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
    );
}

fn publish(m: &Mosquitto, user: &str, password: &str) -> bool {
    run(Command::new(tool("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &m.port.to_string()])
        .args(["-u", user, "-P", password, "-t", "t", "-m", "x"])
        .stdin(Stdio::null()))
    .status
    .success()
}

#[test]
fn files_broker_passwd_writes_are_accepted_by_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    let pws = pw.to_str().unwrap();
    assert_ok(
        &broker_passwd(&["-c", "-b", pws, "alice", "s3cret"]),
        "-c -b",
    );
    assert_ok(
        &broker_passwd(&["-H", "sha512", "-b", pws, "bob", "hunter2"]),
        "-H sha512",
    );
    assert_ok(
        &broker_passwd(&["-I", "1000", "-b", pws, "carol", "pa ss:word"]),
        "-I",
    );
    let text = std::fs::read_to_string(&pw).unwrap();
    assert!(text.contains("alice:$7$101$"), "{text}");
    assert!(text.contains("bob:$6$"), "{text}");
    assert!(text.contains("carol:$7$1000$"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let m = start_mosquitto(dir.path(), &pw);
    assert!(publish(&m, "alice", "s3cret"), "alice ($7$) refused");
    assert!(publish(&m, "bob", "hunter2"), "bob ($6$) refused");
    assert!(
        publish(&m, "carol", "pa ss:word"),
        "carol (1000 iterations) refused"
    );
    assert!(!publish(&m, "alice", "wrong"), "wrong password accepted");
    assert!(!publish(&m, "nobody", "s3cret"), "unknown user accepted");
}

#[test]
fn files_mosquitto_passwd_writes_are_accepted_by_us() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    let mp = tool("mosquitto_passwd");
    assert_ok(
        &run(Command::new(&mp)
            .arg("-b")
            .arg("-c")
            .arg(&pw)
            .args(["alice", "s3cret"])),
        "mosquitto_passwd -b -c",
    );
    assert_ok(
        &run(Command::new(&mp)
            .args(["-H", "sha512", "-b"])
            .arg(&pw)
            .args(["bob", "hunter 2"])),
        "mosquitto_passwd -H sha512",
    );
    let text = std::fs::read_to_string(&pw).unwrap();
    assert!(text.contains("alice:$7$"), "{text}");
    assert!(text.contains("bob:$6$"), "{text}");

    let (file, warnings) = PasswordFile::load(&pw).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(file.check("alice", b"s3cret"));
    assert!(file.check("bob", b"hunter 2"));
    assert!(!file.check("alice", b"s3cre"));
    assert!(!file.check("bob", b"hunter2"));

    // And our tool edits their file without breaking their entries.
    assert_ok(
        &broker_passwd(&["-b", pw.to_str().unwrap(), "carol", "c"]),
        "add to mosquitto's file",
    );
    let (file, _) = PasswordFile::load(&pw).unwrap();
    assert!(file.check("alice", b"s3cret") && file.check("carol", b"c"));
}

#[test]
fn passwd_update_delete_upgrade_keep_comments() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    let pws = pw.to_str().unwrap();
    std::fs::write(&pw, "# staff\n\nu1:plain1\nu2:plain2\n").unwrap();
    assert_ok(&broker_passwd(&["-U", pws]), "-U");
    // Twice is harmless: hashed lines are left alone.
    assert_ok(&broker_passwd(&["-U", pws]), "-U again");
    let (file, w) = PasswordFile::load(&pw).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(file.check("u1", b"plain1") && file.check("u2", b"plain2"));
    let text = std::fs::read_to_string(&pw).unwrap();
    assert!(text.starts_with("# staff\n\nu1:$7$101$"), "{text}");

    assert_ok(&broker_passwd(&["-b", pws, "u1", "new"]), "update");
    assert_ok(&broker_passwd(&["-D", pws, "u2"]), "delete");
    let (file, _) = PasswordFile::load(&pw).unwrap();
    assert!(file.check("u1", b"new") && !file.check("u1", b"plain1"));
    assert_eq!(file.len(), 1);
    let text = std::fs::read_to_string(&pw).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");

    let out = broker_passwd(&["-D", pws, "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("User nobody not found"));

    // A corrupt line: an error naming it, and the file untouched.
    std::fs::write(&pw, "u1:plain\njunk\n").unwrap();
    let out = broker_passwd(&["-b", pws, "u3", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "u1:plain\njunk\n");
}

fn interactive(pw: &Path, input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
        .arg("passwd")
        .arg("-c")
        .arg(pw)
        .arg("dave")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn passwd_prompts_twice_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    assert_ok(&interactive(&pw, "secret\nsecret\n"), "prompt");
    let (file, _) = PasswordFile::load(&pw).unwrap();
    assert!(file.check("dave", b"secret"));

    let out = interactive(&pw, "secret\nsecreT\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Passwords do not match"));
    let out = interactive(&pw, "\n\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Empty password"));
}

#[test]
fn passwd_usage_and_errors_as_mosquitto_passwd() {
    let out = broker_passwd(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: broker passwd"));
    let out = broker_passwd(&["-c", "-D", "f", "u"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error: -c and -D cannot be used together."
    );
    let out = broker_passwd(&["-b", "/nonexistent/dir/pw", "u", "p"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unable to open password file"));
}
