//! `broker passwd`: manages password files with `mosquitto_passwd`'s command
//! line, messages and exit codes, writing hashes Mosquitto accepts.
//!
//! Where `mosquitto_passwd` 2.0 hurts its users, this tool does better:
//! - Comment and blank lines are kept (2.0.11 calls them corrupt and, when
//!   adding a user, truncates the file at the first one).
//! - A corrupt line is an error naming it, and the file is left untouched.
//! - `-U` leaves lines that are already hashed alone (2.0.11 hashes the hash,
//!   locking the user out), so running it twice is harmless.
//! - Files are replaced atomically (temporary file in the same directory,
//!   then rename); a new file is created with mode 0600 (the hashes are
//!   worth guessing at offline), an existing file keeps its mode.
//! - `-I iterations` chooses the PBKDF2 iteration count (later Mosquitto
//!   versions have it; 2.0.11 always uses 101).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::auth::{HashKind, PasswordHash, DEFAULT_ITERATIONS};

const USAGE: &str = "\
broker passwd is a tool for managing password files for the broker (and mosquitto).

Usage: broker passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] passwordfile username
       broker passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c] -b passwordfile username password
       broker passwd -U passwordfile
 -b : run in batch mode to allow passing passwords on the command line.
 -c : create a new password file. This will overwrite existing files.
 -D : delete the username rather than adding/updating its password.
 -H : specify the hashing algorithm. Defaults to sha512-pbkdf2, which is recommended.
      Mosquitto 1.6 and earlier defaulted to sha512.
 -I : PBKDF2 iterations for sha512-pbkdf2 (default 101, as mosquitto).
 -U : update a plain text password file to use hashed passwords.";

/// Mosquitto's limit on user names and passwords.
const MAX_LEN: usize = 65535;

/// A failure: the message for stderr and the exit status.
#[derive(Debug)]
struct Failure(String, u8);

fn fail<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(msg.into(), 1))
}

enum Mode {
    /// Add or update one user (`-c` starts from an empty file).
    Set {
        create: bool,
        username: String,
        password: Option<String>,
    },
    Delete {
        username: String,
    },
    Upgrade,
}

struct Command {
    file: PathBuf,
    kind: HashKind,
    iterations: u32,
    mode: Mode,
}

/// Runs `broker passwd` with the arguments after `passwd`.
pub fn main(args: Vec<String>) -> ExitCode {
    let cmd = match parse_args(args) {
        Ok(Some(cmd)) => cmd,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::FAILURE;
        }
        Err(Failure(msg, code)) => {
            eprintln!("{msg}");
            return ExitCode::from(code);
        }
    };
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg, code)) => {
            eprintln!("{msg}");
            ExitCode::from(code)
        }
    }
}

/// `Ok(None)`: print the usage and fail, as mosquitto_passwd does.
fn parse_args(args: Vec<String>) -> Result<Option<Command>, Failure> {
    let mut batch = false;
    let mut create = false;
    let mut delete = false;
    let mut upgrade = false;
    let mut kind = HashKind::Sha512Pbkdf2;
    let mut iterations = DEFAULT_ITERATIONS;
    let mut args = args.into_iter().peekable();
    while let Some(a) = args.next_if(|a| a.starts_with('-') && a.len() > 1) {
        match a.as_str() {
            "-b" => batch = true,
            "-c" => create = true,
            "-D" => delete = true,
            "-U" => upgrade = true,
            "-H" => match args.next().as_deref() {
                Some("sha512") => kind = HashKind::Sha512,
                Some("sha512-pbkdf2") => kind = HashKind::Sha512Pbkdf2,
                Some(other) => return fail(format!("Error: Unknown hash type '{other}'")),
                None => return fail("Error: -H argument given but not enough arguments."),
            },
            "-I" => match args.next().map(|n| n.parse::<u32>()) {
                Some(Ok(n)) if n >= 1 => iterations = n,
                Some(_) => return fail("Error: -I argument must be a positive integer."),
                None => return fail("Error: -I argument given but not enough arguments."),
            },
            "-h" | "--help" => return Ok(None),
            _ => return Ok(None),
        }
    }
    let rest: Vec<String> = args.collect();
    if create && delete {
        return fail("Error: -c and -D cannot be used together.");
    }
    if upgrade && (create || delete || batch) {
        return fail("Error: -U cannot be used with -b, -c or -D.");
    }
    if delete && batch {
        return fail("Error: -b and -D cannot be used together.");
    }
    let mut rest = rest.into_iter();
    let (file, username, password) = (rest.next(), rest.next(), rest.next());
    if rest.next().is_some() {
        return Ok(None);
    }
    let mode = match (upgrade, batch, file.is_some(), username, password) {
        (true, _, true, None, None) => Mode::Upgrade,
        (false, true, true, Some(u), Some(p)) => Mode::Set {
            create,
            username: u,
            password: Some(p),
        },
        (false, false, true, Some(u), None) if delete => Mode::Delete { username: u },
        (false, false, true, Some(u), None) => Mode::Set {
            create,
            username: u,
            password: None,
        },
        _ => return Ok(None),
    };
    let username = match &mode {
        Mode::Set { username, .. } | Mode::Delete { username } => Some(username),
        Mode::Upgrade => None,
    };
    if let Some(u) = username {
        if u.contains(':') {
            return fail("Error: Username must not contain the ':' character.");
        }
        if u.is_empty() || u.len() > MAX_LEN {
            return fail("Error: Username must be between 1 and 65535 characters long.");
        }
    }
    Ok(Some(Command {
        file: PathBuf::from(file.unwrap_or_default()),
        kind,
        iterations,
        mode,
    }))
}

/// A password file line: kept as written unless it is the user's entry.
enum Line {
    /// Comment, blank line.
    Other(String),
    /// `user:rest`, `rest` being a hash or, before `-U`, a plain password.
    Entry { user: String, rest: String },
}

fn read_lines(file: &Path) -> Result<Vec<Line>, Failure> {
    let text = std::fs::read_to_string(file).or_else(|e| {
        fail(format!(
            "Error: Unable to open password file {}. {e}.",
            file.display()
        ))
    })?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') {
                return Ok(Line::Other(l.to_owned()));
            }
            match l.split_once(':') {
                Some((user, rest)) if !user.trim().is_empty() => Ok(Line::Entry {
                    user: user.trim().to_owned(),
                    rest: rest.to_owned(),
                }),
                _ => fail(format!(
                    "Error: Corrupt password file at line {}; nothing changed.",
                    i + 1
                )),
            }
        })
        .collect()
}

fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    for l in lines {
        match l {
            Line::Other(s) => out.push_str(s),
            Line::Entry { user, rest } => {
                out.push_str(user);
                out.push(':');
                out.push_str(rest);
            }
        }
        out.push('\n');
    }
    out
}

/// Replaces `file` atomically: a temporary file beside it, then rename.
fn write_atomically(file: &Path, text: &str) -> Result<(), Failure> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| Failure(format!("Error: {}: {e}.", file.display()), 1);
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mode = std::fs::metadata(file)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

fn hash(cmd: &Command, password: &str) -> String {
    PasswordHash::new(cmd.kind, cmd.iterations, password.as_bytes()).to_string()
}

fn run(cmd: Command) -> Result<(), Failure> {
    match &cmd.mode {
        Mode::Set {
            create,
            username,
            password,
        } => {
            let mut lines = if *create {
                Vec::new()
            } else {
                read_lines(&cmd.file)?
            };
            let password = match password {
                Some(p) => p.clone(),
                None => prompt_password()?,
            };
            if password.len() > MAX_LEN {
                return fail("Error: Password must be at most 65535 characters long.");
            }
            let rest = hash(&cmd, &password);
            let existing = lines
                .iter_mut()
                .find(|l| matches!(l, Line::Entry { user, .. } if user == username));
            match existing {
                Some(Line::Entry { rest: r, .. }) => *r = rest,
                _ => lines.push(Line::Entry {
                    user: username.clone(),
                    rest,
                }),
            }
            write_atomically(&cmd.file, &render(&lines))
        }
        Mode::Delete { username } => {
            let mut lines = read_lines(&cmd.file)?;
            let before = lines.len();
            lines.retain(|l| !matches!(l, Line::Entry { user, .. } if user == username));
            if lines.len() == before {
                return fail(format!(
                    "Warning: User {username} not found in password file."
                ));
            }
            write_atomically(&cmd.file, &render(&lines))
        }
        Mode::Upgrade => {
            let mut lines = read_lines(&cmd.file)?;
            for l in &mut lines {
                if let Line::Entry { rest, .. } = l {
                    let trimmed = rest.trim_end_matches('\r');
                    if PasswordHash::parse(trimmed.trim()).is_err() {
                        *rest = hash(&cmd, trimmed);
                    }
                }
            }
            write_atomically(&cmd.file, &render(&lines))
        }
    }
}

/// Asks twice, without echo on a terminal; from stdin lines otherwise (for
/// scripts and tests), as mosquitto_passwd.
fn prompt_password() -> Result<String, Failure> {
    let (first, second) = if std::io::stdin().is_terminal() {
        let ask = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .or_else(|e| fail(format!("Error: cannot read the password: {e}.")))
        };
        (ask("Password: ")?, ask("Reenter password: ")?)
    } else {
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let mut ask = |prompt: &str| {
            println!("{prompt}");
            match lines.next() {
                Some(Ok(l)) => Ok(l.trim_end_matches('\r').to_owned()),
                _ => fail("Error: Empty password."),
            }
        };
        (ask("Password: ")?, ask("Reenter password: ")?)
    };
    if first != second {
        return Err(Failure("Error: Passwords do not match.".into(), 2));
    }
    if first.is_empty() {
        return fail("Error: Empty password.");
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn passwd_args() {
        for ok in [
            "f u",
            "-c f u",
            "-D f u",
            "-b f u p",
            "-c -b f u p",
            "-H sha512 -b f u p",
            "-H sha512-pbkdf2 -I 1000 f u",
            "-U f",
        ] {
            assert!(matches!(parse_args(args(ok)), Ok(Some(_))), "{ok}");
        }
        for usage in ["", "f", "-b f u", "-U", "-U f u", "f u p", "-x f u", "-h"] {
            assert!(matches!(parse_args(args(usage)), Ok(None)), "{usage}");
        }
        for (bad, msg) in [
            ("-c -D f u", "Error: -c and -D cannot be used together."),
            ("-H md5 f u", "Error: Unknown hash type 'md5'"),
            (
                "-b f a:b p",
                "Error: Username must not contain the ':' character.",
            ),
            ("-I 0 f u", "Error: -I argument must be a positive integer."),
            ("-U -c f", "Error: -U cannot be used with -b, -c or -D."),
        ] {
            match parse_args(args(bad)) {
                Err(Failure(m, 1)) => assert_eq!(m, msg),
                _ => panic!("{bad}"),
            }
        }
    }

    #[test]
    fn passwd_lines_round_trip_and_corrupt_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        let text = "# users\n\nu1:plain\nu2:$6$x$y\n";
        std::fs::write(&f, text).unwrap();
        assert_eq!(render(&read_lines(&f).unwrap()), text);
        std::fs::write(&f, "u1:a\njunk\n").unwrap();
        match read_lines(&f) {
            Err(Failure(m, 1)) => assert!(m.contains("line 2"), "{m}"),
            _ => panic!("corrupt line accepted"),
        }
    }
}
