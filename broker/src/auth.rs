//! Password file and ACL file: who may connect, and what they may read,
//! write and subscribe to. Pure and synchronous; the connection code calls
//! [`Auth`], and startup / SIGHUP build one with [`load`].
//!
//! # Password file (`password_file`)
//! Lines `user:HASH` as written by `mosquitto_passwd` (and by `broker passwd`):
//! - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 (Mosquitto 2.0's default,
//!   101 iterations, 12-byte salt, 64-byte hash);
//! - `$6$SALT$HASH`: one SHA-512 over `password || salt` (Mosquitto 1.6's
//!   format; `mosquitto_passwd -H sha512` still writes it, and the order was
//!   checked against its output).
//!
//! Salt and hash are standard base64 with padding (OpenSSL's BIO encoder).
//! Like Mosquitto, `#` comment lines and lines without `:` are skipped, the
//! user name is trimmed, the hash ends at the next `:`, a duplicate user keeps
//! its first entry, and an entry whose hash does not decode is removed. Unlike
//! Mosquitto, which logs some of these and silently drops others, every skipped
//! line is returned as a [`Warning`] with its line number.
//!
//! Choices, with reasons:
//! - The 64-byte hash comparison is constant-time (`subtle`), and an unknown
//!   user costs one PBKDF2 round like a known one, so timing tells neither the
//!   password nor whether the user exists (Mosquitto returns early there).
//! - The client's password is hashed as the bytes it sent. Mosquitto treats it
//!   as a C string, so it ignores anything after a NUL byte; no password file
//!   entry can contain one, so the only difference is that `secret\0junk` no
//!   longer logs in as `secret`.
//! - Any salt length is accepted (Mosquitto 2.0 insists on 12 bytes): a file
//!   Mosquitto accepts is accepted here.
//!
//! # ACL file (`acl_file`)
//! Mosquitto's syntax: `topic [read|write|readwrite|deny] FILTER`,
//! `user NAME`, `pattern [read|write|readwrite|deny] FILTER` with `%c`
//! (client id) and `%u` (user name) substituted. `topic` lines before the first
//! `user` line apply to clients without a user name; after it, to that user
//! (a repeated `user` section adds to the first). `pattern` lines apply to
//! everyone. The filter is the rest of the line, trimmed, so it may contain
//! spaces. An unknown keyword, a bad access word or an invalid filter is an
//! [`Error`] naming file and line, as Mosquitto refuses to start on them.
//!
//! Semantics follow Mosquitto 2.0, with these choices:
//! - **Deny wins.** A matching `deny` line, user or pattern, refuses access
//!   whatever grants it. (Mosquitto checks user denies, then user grants, then
//!   pattern denies, so a user grant beats a pattern deny; an operator who
//!   writes `deny` means it.)
//! - **`$` topics** need an ACL line whose filter starts with `$`: `#` or
//!   `+/...` never match `$SYS/...` [MQTT-4.7.2-1], so with an ACL file a
//!   client reads `$SYS` only with e.g. `topic read $SYS/#` (as Mosquitto).
//!   Writing to `$SYS/...` or publishing to `$share/...` is always refused,
//!   ACL file or not (Mosquitto's `acl__check_dollar`).
//! - **SUBSCRIBE** ([`AclFile::check_subscribe`]): Mosquitto 2.0's default
//!   ACL grants every subscription and filters each message at delivery. We
//!   refuse (SUBACK 0x80) a filter that no readable ACL filter *covers*: every
//!   topic the subscription can match must be matched by one `read`/`readwrite`
//!   filter. So `topic read sensors/#` allows `sensors/+/temp`, and
//!   `topic read sensors/a` does not allow `sensors/#`. A filter covered by a
//!   `deny` line is refused too. A granted filter can still match a denied
//!   topic (`sensors/#` next to `topic deny sensors/secret`), so the broker must
//!   also call [`Auth::can_read`] on each delivery and on each retained message
//!   sent on subscribe, as Mosquitto does. `$share/GROUP/FILTER` is checked as
//!   `FILTER`.
//! - **`%c` / `%u`**: a client id or user name containing `+`, `#` or `/`
//!   would widen or move the filter (client `+` reading every device's tree,
//!   client `a/b` reading inside client `a`'s), so a granting pattern does not
//!   apply to such a client. Mosquitto refuses `+` and `#` this way; `/` is
//!   refused here too. A `deny` pattern is still substituted, since a wider
//!   deny only refuses more. A pattern with `%u` does not apply to a client
//!   without a user name.
//! - `topic read` with nothing after it is, as in Mosquitto, a `readwrite`
//!   line for the topic `read`; it is accepted with a [`Warning`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::topic;

/// Mosquitto's PBKDF2 iteration count for new hashes.
pub const DEFAULT_ITERATIONS: u32 = 101;
/// Mosquitto's salt length for new hashes.
pub const SALT_LEN: usize = 12;
/// SHA-512 output, the only hash length Mosquitto accepts.
pub const HASH_LEN: usize = 64;

/// A password or ACL file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line the broker must not guess at.
    #[error("{}:{line}: {problem}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        problem: String,
    },
}

/// A line that was skipped or read in a surprising way; the broker logs it
/// and goes on, as Mosquitto does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.problem)
    }
}

// ---------------------------------------------------------------- passwords

/// Which hash `broker passwd -H` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// `$6$`: salted SHA-512 (`-H sha512`).
    Sha512,
    /// `$7$`: PBKDF2-HMAC-SHA512 (`-H sha512-pbkdf2`, the default).
    Sha512Pbkdf2,
}

/// One user's stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    Sha512 {
        salt: Vec<u8>,
        hash: [u8; HASH_LEN],
    },
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: [u8; HASH_LEN],
    },
}

impl fmt::Debug for PasswordHash {
    // The hash stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Sha512 { .. } => f.write_str("PasswordHash::Sha512"),
            PasswordHash::Pbkdf2 { iterations, .. } => {
                write!(f, "PasswordHash::Pbkdf2({iterations})")
            }
        }
    }
}

fn sha512(password: &[u8], salt: &[u8]) -> [u8; HASH_LEN] {
    let mut d = Sha512::new();
    d.update(password);
    d.update(salt);
    d.finalize().into()
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(kind: HashKind, iterations: u32, password: &[u8]) -> Self {
        let mut salt = vec![0u8; SALT_LEN];
        rand::Rng::fill(&mut rand::thread_rng(), &mut salt[..]);
        Self::with_salt(kind, iterations, password, salt)
    }

    /// Hashes `password` with a given salt (tests, reproducible vectors).
    pub fn with_salt(kind: HashKind, iterations: u32, password: &[u8], salt: Vec<u8>) -> Self {
        match kind {
            HashKind::Sha512 => PasswordHash::Sha512 {
                hash: sha512(password, &salt),
                salt,
            },
            HashKind::Sha512Pbkdf2 => PasswordHash::Pbkdf2 {
                iterations,
                hash: pbkdf2_sha512(password, &salt, iterations),
                salt,
            },
        }
    }

    /// Parses `$6$SALT$HASH` or `$7$ITER$SALT$HASH`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let decode_hash = |h: &str| -> Result<[u8; HASH_LEN], &'static str> {
            let bytes = BASE64
                .decode(h)
                .map_err(|_| "password hash is not valid base64")?;
            bytes
                .try_into()
                .map_err(|_| "password hash is not 64 bytes long")
        };
        let decode_salt = |s: &str| -> Result<Vec<u8>, &'static str> {
            match BASE64.decode(s) {
                Ok(salt) if !salt.is_empty() => Ok(salt),
                _ => Err("password salt is not valid base64"),
            }
        };
        let parts: Vec<&str> = s.split('$').collect();
        match parts.as_slice() {
            ["", "6", salt, hash] => Ok(PasswordHash::Sha512 {
                salt: decode_salt(salt)?,
                hash: decode_hash(hash)?,
            }),
            ["", "7", iterations, salt, hash] => {
                let iterations = match iterations.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err("invalid hash iterations"),
                };
                Ok(PasswordHash::Pbkdf2 {
                    iterations,
                    salt: decode_salt(salt)?,
                    hash: decode_hash(hash)?,
                })
            }
            ["", "6" | "7", ..] => Err("invalid password hash"),
            _ => Err("invalid password hash type (not $6$ or $7$)"),
        }
    }

    /// Whether `password` hashes to this; the comparison is constant-time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let (computed, stored) = match self {
            PasswordHash::Sha512 { salt, hash } => (sha512(password, salt), hash),
            PasswordHash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => (pbkdf2_sha512(password, salt, *iterations), hash),
        };
        computed.ct_eq(stored).into()
    }
}

impl fmt::Display for PasswordHash {
    /// The password file form, as `mosquitto_passwd` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
            PasswordHash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                BASE64.encode(salt),
                BASE64.encode(hash)
            ),
        }
    }
}

/// The users of a `password_file` and their hashes.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, PasswordHash>,
}

/// Trims what Mosquitto's `misc__trimblanks` trims.
fn trim_blanks(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_whitespace())
}

impl PasswordFile {
    /// Reads and parses a password file.
    pub fn load(path: &Path) -> Result<(Self, Vec<Warning>), Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            file: path.to_owned(),
            source,
        })?;
        Ok(Self::parse(&text, path))
    }

    /// Parses password file text; `file` only names the warnings.
    pub fn parse(text: &str, file: &Path) -> (Self, Vec<Warning>) {
        let mut users = HashMap::new();
        let mut warnings = Vec::new();
        let mut warn = |line: usize, problem: String| {
            warnings.push(Warning {
                file: file.to_owned(),
                line,
                problem,
            })
        };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = trim_blanks(raw);
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((user, rest)) = raw.split_once(':') else {
                warn(line, "no ':' in line, skipped".into());
                continue;
            };
            let user = trim_blanks(user);
            if user.is_empty() {
                warn(line, "empty user name, skipped".into());
                continue;
            }
            if users.contains_key(user) {
                warn(line, format!("duplicate user '{user}', skipped"));
                continue;
            }
            // Mosquitto's strtok: the hash ends at the next ':'.
            let hash = trim_blanks(rest.split(':').next().unwrap_or(""));
            if hash.is_empty() {
                warn(
                    line,
                    format!("missing password hash for user '{user}', skipped"),
                );
                continue;
            }
            match PasswordHash::parse(hash) {
                Ok(h) => {
                    users.insert(user.to_owned(), h);
                }
                Err(problem) => warn(line, format!("{problem} for user '{user}', skipped")),
            }
        }
        (PasswordFile { users }, warnings)
    }

    /// Whether `username` is in the file with this password. Costs the same
    /// for an unknown user as for a known one with the default hash.
    pub fn check(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(hash) => hash.verify(password),
            None => {
                let _ = pbkdf2_sha512(password, &[0u8; SALT_LEN], DEFAULT_ITERATIONS);
                false
            }
        }
    }

    /// Number of usable entries.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no entry is usable.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

// ---------------------------------------------------------------------- ACL

/// What an ACL line grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn grants(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Access::ReadWrite, _) | (Access::Read, Want::Read) | (Access::Write, Want::Write)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Read,
    Write,
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// The rules of an `acl_file`.
#[derive(Debug, Clone, Default)]
pub struct AclFile {
    /// `topic` lines before the first `user`: clients without a user name.
    anonymous: Vec<Rule>,
    /// `topic` lines per `user` section.
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` lines: everyone, after `%c` / `%u` substitution.
    patterns: Vec<Rule>,
}

impl AclFile {
    /// Reads and parses an ACL file.
    pub fn load(path: &Path) -> Result<(Self, Vec<Warning>), Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses ACL file text; `file` names errors and warnings.
    pub fn parse(text: &str, file: &Path) -> Result<(Self, Vec<Warning>), Error> {
        let mut acl = AclFile::default();
        let mut warnings = Vec::new();
        let mut user: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let syntax = |problem: String| Error::Syntax {
                file: file.to_owned(),
                line,
                problem,
            };
            // Mosquitto rejects indented lines and tabs between words; we
            // accept them: they cannot mean anything else.
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(l);
            match keyword {
                "topic" | "pattern" => {
                    if rest.is_empty() {
                        return Err(syntax(format!("empty topic in '{keyword}' line")));
                    }
                    let (word, after) = split_word(rest);
                    let (access, filter) = if after.is_empty() {
                        if matches!(word, "read" | "write" | "readwrite" | "deny") {
                            warnings.push(Warning {
                                file: file.to_owned(),
                                line,
                                problem: format!(
                                    "'{keyword} {word}' has no topic: read as readwrite access \
                                     to the topic '{word}', as Mosquitto does"
                                ),
                            });
                        }
                        (Access::ReadWrite, word)
                    } else {
                        let access = match word {
                            "read" => Access::Read,
                            "write" => Access::Write,
                            "readwrite" => Access::ReadWrite,
                            "deny" => Access::Deny,
                            _ => {
                                return Err(syntax(format!(
                                    "invalid topic access type '{word}' (read, write, readwrite or deny)"
                                )))
                            }
                        };
                        (access, after)
                    };
                    if let Err(e) = topic::validate_filter(filter) {
                        return Err(syntax(format!("invalid ACL topic '{filter}': {e}")));
                    }
                    let rule = Rule {
                        access,
                        filter: filter.to_owned(),
                    };
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else if let Some(u) = &user {
                        acl.users.entry(u.clone()).or_default().push(rule);
                    } else {
                        acl.anonymous.push(rule);
                    }
                }
                "user" => {
                    if rest.is_empty() {
                        return Err(syntax("missing user name after 'user'".into()));
                    }
                    user = Some(rest.to_owned());
                    acl.users.entry(rest.to_owned()).or_default();
                }
                _ => return Err(syntax(format!("unknown keyword '{keyword}'"))),
            }
        }
        Ok((acl, warnings))
    }

    /// The rules that apply to this client, patterns substituted.
    fn rules<'a>(
        &'a self,
        client_id: &str,
        username: Option<&str>,
    ) -> impl Iterator<Item = std::borrow::Cow<'a, Rule>> + 'a {
        let own = match username {
            Some(u) => self.users.get(u).map(Vec::as_slice).unwrap_or(&[]),
            None => &self.anonymous[..],
        };
        let client_id = client_id.to_owned();
        let username = username.map(str::to_owned);
        own.iter()
            .map(std::borrow::Cow::Borrowed)
            .chain(self.patterns.iter().filter_map(move |r| {
                substitute(r, &client_id, username.as_deref()).map(std::borrow::Cow::Owned)
            }))
    }

    fn check(&self, client_id: &str, username: Option<&str>, topic: &str, want: Want) -> bool {
        let mut granted = false;
        for rule in self.rules(client_id, username) {
            if !topic::matches(&rule.filter, topic) {
                continue;
            }
            if rule.access == Access::Deny {
                return false;
            }
            granted |= rule.access.grants(want);
        }
        granted
    }

    /// May this client receive a message published to the topic name `topic`?
    /// Also the filter for retained messages sent on subscribe.
    pub fn check_read(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.check(client_id, username, topic, Want::Read)
    }

    /// May this client publish to the topic name `topic`?
    pub fn check_write(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.check(client_id, username, topic, Want::Write)
    }

    /// May this client subscribe to `filter`? Granted when a readable ACL
    /// filter covers it and no `deny` filter does (see the module docs).
    pub fn check_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        let filter = strip_share(filter);
        let mut granted = false;
        for rule in self.rules(client_id, username) {
            if !covers(&rule.filter, filter) {
                continue;
            }
            if rule.access == Access::Deny {
                return false;
            }
            granted |= rule.access.grants(Want::Read);
        }
        granted
    }
}

/// `$share/GROUP/FILTER` -> `FILTER`; anything else unchanged.
fn strip_share(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, f)| f)
}

/// Splits off the first whitespace-separated word; the rest is trimmed.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((w, rest)) => (w, rest.trim()),
        None => (s, ""),
    }
}

/// `%c` and `%u` replaced in one pass (a client id containing `%u` is not
/// substituted again). `None` when the pattern does not apply to this client.
fn substitute(rule: &Rule, client_id: &str, username: Option<&str>) -> Option<Rule> {
    let unsafe_value = |v: &str| v.is_empty() || v.contains(['+', '#', '/']);
    let deny = rule.access == Access::Deny;
    let mut out = String::with_capacity(rule.filter.len());
    let mut rest = rule.filter.as_str();
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let value = match rest.get(at..at + 2) {
            Some("%c") => Some(client_id),
            Some("%u") => Some(username?),
            _ => None,
        };
        match value {
            Some(v) => {
                // A grant must not widen; a deny may (it only refuses more).
                if unsafe_value(v) && !deny {
                    return None;
                }
                out.push_str(v);
                rest = &rest[at + 2..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    Some(Rule {
        access: rule.access,
        filter: out,
    })
}

/// Whether every topic name that `sub` matches is matched by `acl` (both
/// valid filters), with the `$` rule [MQTT-4.7.2-1].
fn covers(acl: &str, sub: &str) -> bool {
    // `sub` starting with a literal `$` level matches only `$` topics, which
    // an `acl` starting with a wildcard never matches. A `sub` starting with a
    // wildcard matches no `$` topic, so `acl`'s first level decides as usual.
    if sub.starts_with('$') && topic::starts_with_wildcard(acl) {
        return false;
    }
    let mut a = acl.split('/');
    let mut s = sub.split('/');
    loop {
        match (a.next(), s.next()) {
            // `#` matches the rest, the parent level included.
            (Some("#"), _) => return true,
            (_, Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(_), Some("+")) => return false,
            (Some(x), Some(y)) if x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

// --------------------------------------------------------------------- Auth

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No user name, and `allow_anonymous false`; or no `password_file` and
    /// `allow_anonymous false`, which refuses everyone (as Mosquitto 2.0).
    #[error("anonymous clients are not allowed")]
    Anonymous,
    /// Unknown user, wrong or missing password.
    #[error("bad user name or password")]
    BadCredentials,
}

impl Refusal {
    /// The MQTT 3.1.1 CONNACK return code. Mosquitto 2.0 answers 5 (not
    /// authorised) in every case, a wrong password included (checked against
    /// mosquitto 2.0.11 with raw CONNECTs); we do the same so clients and
    /// scripts see no change. 4 is never sent.
    pub fn return_code(self) -> u8 {
        5
    }
}

/// Authentication and authorisation as configured: what the connection code
/// asks. Cheap to rebuild: SIGHUP builds a new one with [`load`] and swaps it
/// in only when that succeeded.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// `password_file`; `None` when not configured.
    pub passwords: Option<PasswordFile>,
    /// `acl_file`; `None` when not configured (everything allowed).
    pub acl: Option<AclFile>,
    /// `allow_anonymous`.
    pub allow_anonymous: bool,
}

/// Loads the configured files (startup and SIGHUP). Errors leave the caller's
/// current [`Auth`] in force; warnings are for the log.
pub fn load(
    password_file: Option<&Path>,
    acl_file: Option<&Path>,
    allow_anonymous: bool,
) -> Result<(Auth, Vec<Warning>), Error> {
    let mut warnings = Vec::new();
    let passwords = match password_file {
        Some(p) => {
            let (f, w) = PasswordFile::load(p)?;
            warnings.extend(w);
            Some(f)
        }
        None => None,
    };
    let acl = match acl_file {
        Some(p) => {
            let (f, w) = AclFile::load(p)?;
            warnings.extend(w);
            Some(f)
        }
        None => None,
    };
    Ok((
        Auth {
            passwords,
            acl,
            allow_anonymous,
        },
        warnings,
    ))
}

impl Auth {
    /// Checks a CONNECT's credentials, as Mosquitto 2.0: without a password
    /// file, `allow_anonymous` alone decides (a user name is not checked);
    /// with one, a client without a user name needs `allow_anonymous`, and a
    /// client with one needs its entry and password.
    pub fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), Refusal> {
        match (&self.passwords, username) {
            (None, _) | (Some(_), None) => {
                if self.allow_anonymous {
                    Ok(())
                } else {
                    Err(Refusal::Anonymous)
                }
            }
            (Some(file), Some(user)) => {
                // A missing password still costs a hash: no timing oracle.
                let ok = file.check(user, password.unwrap_or_default());
                if ok && password.is_some() {
                    Ok(())
                } else {
                    Err(Refusal::BadCredentials)
                }
            }
        }
    }

    /// May this client receive a message on `topic` (a topic name)? Call it on
    /// every delivery and on every retained message sent on subscribe.
    pub fn can_read(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|a| a.check_read(client_id, username, topic))
    }

    /// May this client publish to `topic` (a topic name)? `$SYS/...` and
    /// `$share/...` never, ACL file or not (as Mosquitto).
    pub fn can_write(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        if topic.starts_with("$SYS") || topic.starts_with("$share") {
            return false;
        }
        self.acl
            .as_ref()
            .is_none_or(|a| a.check_write(client_id, username, topic))
    }

    /// May this client subscribe to `filter`? `false` means SUBACK 0x80.
    pub fn can_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|a| a.check_subscribe(client_id, username, filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "test";

    // Written by mosquitto_passwd 2.0.11: `-b -c pw alice secret` and
    // `-b -H sha512 pw bob pass2`.
    const ALICE: &str = "alice:$7$101$Z99cHvgn7J5mbSDl$YEdkDyWABNSH2wCzA6Er2KkzE0QuUSO1HXrEt+5/fMQS4v5CBzkCKPQ6crrZhF+m1v+6ITvZjd0xvJMmCdBLHA==";
    const BOB: &str = "bob:$6$bkGoS0FsgsgQ85G5$k9Z6vde/4zVGS0I2NvhtJcPnC3VnkvME0r7k/1616ZkdvK63QXLwUD7jcvzsLyw1/HSKIWMy2n/GT/XGD5/JlQ==";

    fn pw(text: &str) -> (PasswordFile, Vec<usize>) {
        let (f, w) = PasswordFile::parse(text, Path::new(FILE));
        (f, w.iter().map(|w| w.line).collect())
    }

    #[test]
    fn auth_password_vectors_from_mosquitto_passwd() {
        let (f, warnings) = pw(&format!("{ALICE}\n{BOB}\n"));
        assert!(warnings.is_empty());
        assert!(f.check("alice", b"secret"));
        assert!(!f.check("alice", b"secreT"));
        assert!(!f.check("alice", b""));
        assert!(f.check("bob", b"pass2"));
        assert!(!f.check("bob", b"pass"));
        assert!(!f.check("carol", b"secret"));
        // Not a C string: bytes after a NUL count.
        assert!(!f.check("alice", b"secret\0junk"));
    }

    #[test]
    fn auth_password_hash_round_trip() {
        for kind in [HashKind::Sha512, HashKind::Sha512Pbkdf2] {
            let h = PasswordHash::new(kind, 7, b"p@ss word");
            let text = h.to_string();
            let back = PasswordHash::parse(&text).unwrap();
            assert_eq!(back, h);
            assert!(back.verify(b"p@ss word"));
            assert!(!back.verify(b"p@ss wore"));
            // 12-byte salt -> 16 chars, 64-byte hash -> 88 chars with `==`.
            let parts: Vec<&str> = text.split('$').collect();
            assert_eq!(parts[parts.len() - 2].len(), 16);
            assert_eq!(parts[parts.len() - 1].len(), 88);
            assert!(text.ends_with("=="));
        }
        assert!(
            PasswordHash::new(HashKind::Sha512Pbkdf2, DEFAULT_ITERATIONS, b"x")
                .to_string()
                .starts_with("$7$101$")
        );
    }

    #[test]
    fn auth_password_garbage_lines_are_reported_and_skipped() {
        let hash = ALICE.split_once(':').unwrap().1;
        let text = format!(
            "# comment\n\
             \n\
             garbage without colon\n\
             {ALICE}\n\
             alice:$6$AAAA$AAAA\n\
             nopass:\n\
             bogus:$7$0$Z99cHvgn7J5mbSDl$AAAA\n\
             :{hash}\n\
             plain:secret\n\
             short:$6$bkGoS0FsgsgQ85G5$AAAA\n\
             \x20 spaced \t:{hash}  \r\n\
             extra:{hash}:trailing:fields\n"
        );
        let (f, lines) = pw(&text);
        assert_eq!(lines, vec![3, 5, 6, 7, 8, 9, 10]);
        assert_eq!(f.len(), 3);
        // Duplicate keeps the first entry.
        assert!(f.check("alice", b"secret"));
        assert!(f.check("spaced", b"secret"));
        assert!(f.check("extra", b"secret"));
        assert!(!f.check("plain", b"secret"));
        assert!(!f.check("nopass", b""));
    }

    #[test]
    fn auth_password_hash_parse_errors() {
        for bad in [
            "",
            "secret",
            "$5$abc$def",
            "$6$",
            "$6$!!!!$AAAA",
            "$7$abc$Z99cHvgn7J5mbSDl$AAAA",
            "$7$-1$Z99cHvgn7J5mbSDl$AAAA",
            "$7$101$Z99cHvgn7J5mbSDl",
            "$7$101$Z99cHvgn7J5mbSDl$AAAA$extra",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn acl(text: &str) -> AclFile {
        AclFile::parse(text, Path::new(FILE)).unwrap().0
    }

    const ACL: &str = "\
# anonymous section
topic read public/#
topic   $SYS/broker/uptime

user alice
topic read sensors/#
topic deny sensors/secret
topic readwrite spaced topic/x
topic write cmd/+/set

user bob
topic readwrite #

  # an indented comment
user alice
topic read extra/alice

pattern readwrite dev/%c/#
pattern read users/%u/inbox
pattern deny %u/private/#
pattern write 100%/%c
";

    #[test]
    fn auth_acl_read_write_table() {
        let a = acl(ACL);
        // (client id, user, topic, read, write)
        let cases: &[(&str, Option<&str>, &str, bool, bool)] = &[
            // Anonymous section.
            ("c", None, "public/x", true, false),
            ("c", None, "public", true, false),
            ("c", None, "$SYS/broker/uptime", true, true),
            ("c", None, "$SYS/broker/load", false, false),
            ("c", None, "sensors/a", false, false),
            // The anonymous section does not apply to users.
            ("c", Some("alice"), "public/x", false, false),
            // alice: grants, deny wins, spaces in filters, repeated section.
            ("c", Some("alice"), "sensors/a/temp", true, false),
            ("c", Some("alice"), "sensors/secret", false, false),
            ("c", Some("alice"), "spaced topic/x", true, true),
            ("c", Some("alice"), "cmd/7/set", false, true),
            ("c", Some("alice"), "extra/alice", true, false),
            // `$` topics need a `$` filter: bob's `#` does not reach $SYS.
            ("c", Some("bob"), "anything/at/all", true, true),
            ("c", Some("bob"), "$SYS/broker/uptime", false, false),
            // Unknown user: patterns only.
            ("c", Some("zed"), "sensors/a", false, false),
            // Patterns: %c and %u.
            ("dev1", Some("zed"), "dev/dev1/status", true, true),
            ("dev1", None, "dev/dev1/status", true, true),
            ("dev1", Some("zed"), "dev/dev2/status", false, false),
            ("c", Some("zed"), "users/zed/inbox", true, false),
            ("c", None, "users//inbox", false, false),
            ("c", Some("zed"), "100%/c", false, true),
            // Pattern deny beats a user grant (Mosquitto lets the grant win).
            ("c", Some("bob"), "bob/private/diary", false, false),
            ("c", Some("bob"), "bob/public", true, true),
        ];
        for &(id, user, topic, read, write) in cases {
            assert_eq!(
                a.check_read(id, user, topic),
                read,
                "read {id} {user:?} {topic}"
            );
            assert_eq!(
                a.check_write(id, user, topic),
                write,
                "write {id} {user:?} {topic}"
            );
        }
    }

    #[test]
    fn auth_acl_substitution_cannot_escalate() {
        let a = acl("pattern readwrite dev/%c/#\npattern read u/%u\npattern deny secret/%c/#\n");
        // (client id, user, topic, read)
        let cases: &[(&str, Option<&str>, &str, bool)] = &[
            ("+", None, "dev/other/x", false),
            ("#", None, "dev/other/x", false),
            ("a/b", None, "dev/a/b/x", false),
            ("a", None, "dev/a/b/x", true),
            ("c", Some("+"), "u/x", false),
            ("c", Some("#"), "u/x", false),
            ("c", Some("a/b"), "u/a/b", false),
            ("c", Some("x"), "u/x", true),
            // `%u` text in a client id is not substituted again.
            ("%u", Some("x"), "dev/x/1", false),
        ];
        for &(id, user, topic, read) in cases {
            assert_eq!(a.check_read(id, user, topic), read, "{id} {user:?} {topic}");
        }
        // A deny pattern is substituted even with wildcards: it only refuses more.
        let a = acl("topic readwrite #\npattern deny secret/%c/#\n");
        assert!(!a.check_read("+", None, "secret/anyone/x"));
        assert!(a.check_read("+", None, "open/x"));
        assert!(!a.check_read("a/b", None, "secret/a/b/x"));
    }

    #[test]
    fn auth_acl_subscribe_table() {
        let a = acl(ACL);
        // (client id, user, filter, allowed)
        let cases: &[(&str, Option<&str>, &str, bool)] = &[
            ("c", Some("alice"), "sensors/#", true),
            ("c", Some("alice"), "sensors/+/temp", true),
            ("c", Some("alice"), "sensors", true),
            ("c", Some("alice"), "sensors/secret", false),
            ("c", Some("alice"), "#", false),
            ("c", Some("alice"), "+/a", false),
            ("c", Some("alice"), "cmd/1/set", false), // write-only
            ("c", Some("alice"), "$share/g/sensors/a", true),
            ("c", Some("alice"), "$share/g/other", false),
            ("c", None, "public/#", true),
            ("c", None, "$SYS/broker/uptime", true),
            ("c", None, "$SYS/#", false),
            ("c", None, "$SYS/broker/+", false),
            ("c", Some("bob"), "#", true),
            ("c", Some("bob"), "+/+", true),
            ("c", Some("bob"), "$SYS/#", false),
            ("c", Some("bob"), "bob/private/#", false),
            // bob's `#` covers `bob/#` but the deny `bob/private/#` only
            // refuses the part it covers, at delivery.
            ("c", Some("bob"), "bob/#", true),
            ("d1", None, "dev/d1/#", true),
            ("d1", None, "dev/+/x", false),
        ];
        for &(id, user, filter, ok) in cases {
            assert_eq!(
                a.check_subscribe(id, user, filter),
                ok,
                "{id} {user:?} {filter}"
            );
        }
        let only_a = acl("topic read sensors/a\n");
        assert!(!only_a.check_subscribe("c", None, "sensors/#"));
        assert!(only_a.check_subscribe("c", None, "sensors/a"));
    }

    #[test]
    fn auth_covers_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("#", "a/b", true),
            ("#", "#", true),
            ("#", "+/x", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/+/x", true),
            ("$SYS/#", "#", false),
            ("a/#", "a", true),
            ("a/#", "a/+/c/#", true),
            ("a/+", "a/#", false),
            ("a/+", "a/+", true),
            ("a/+", "a/b/c", false),
            ("a/b", "a/+", false),
            ("a", "a/#", false),
            ("a/b", "a/b", true),
            ("+/+", "a/b", true),
            ("+", "a/b", false),
        ];
        for &(a, s, want) in cases {
            assert_eq!(covers(a, s), want, "{a} covers {s}");
        }
    }

    #[test]
    fn auth_acl_parse_errors_name_the_line() {
        let cases: &[(&str, usize)] = &[
            ("topic read a\nfoo bar\n", 2),
            ("TOPIC read x\n", 1),
            ("user\n", 1),
            ("\n\nuser   \n", 3),
            ("topic\n", 1),
            ("topic reed a/b\n", 1),
            ("topic read a/#/b\n", 1),
            ("pattern read a+\n", 1),
            ("topic read sensors/a # trailing\n", 1),
        ];
        for &(text, want) in cases {
            match AclFile::parse(text, Path::new(FILE)) {
                Err(Error::Syntax { line, .. }) => assert_eq!(line, want, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let e = AclFile::parse("x\n", Path::new("/etc/acl")).unwrap_err();
        assert_eq!(e.to_string(), "/etc/acl:1: unknown keyword 'x'");
    }

    #[test]
    fn auth_acl_bare_access_word_is_a_topic_with_a_warning() {
        let (a, w) = AclFile::parse("topic read\ntopic a/b\n", Path::new(FILE)).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].line, 1);
        assert!(a.check_write("c", None, "read"));
        assert!(a.check_write("c", None, "a/b"));
        assert!(a.check_read("c", None, "a/b"));
    }

    #[test]
    fn auth_tabs_and_crlf_are_accepted() {
        let a = acl("user\talice\r\ntopic\tread\tx/y\r\n");
        assert!(a.check_read("c", Some("alice"), "x/y"));
        assert!(!a.check_write("c", Some("alice"), "x/y"));
    }

    fn auth(passwords: bool, acl_text: Option<&str>, allow_anonymous: bool) -> Auth {
        Auth {
            passwords: passwords.then(|| pw(&format!("{ALICE}\n{BOB}\n")).0),
            acl: acl_text.map(acl),
            allow_anonymous,
        }
    }

    #[test]
    fn auth_authenticate_table() {
        use Refusal::*;
        // (password file, allow_anonymous, user, password, result)
        type Case<'a> = (
            bool,
            bool,
            Option<&'a str>,
            Option<&'a [u8]>,
            Result<(), Refusal>,
        );
        let cases: &[Case] = &[
            (false, true, None, None, Ok(())),
            (false, true, Some("anyone"), Some(b"x"), Ok(())),
            (false, false, None, None, Err(Anonymous)),
            (false, false, Some("alice"), Some(b"secret"), Err(Anonymous)),
            (true, false, None, None, Err(Anonymous)),
            (true, true, None, None, Ok(())),
            (true, false, Some("alice"), Some(b"secret"), Ok(())),
            (
                true,
                true,
                Some("alice"),
                Some(b"wrong"),
                Err(BadCredentials),
            ),
            (true, true, Some("alice"), None, Err(BadCredentials)),
            (
                true,
                true,
                Some("nobody"),
                Some(b"secret"),
                Err(BadCredentials),
            ),
            (true, false, Some("bob"), Some(b"pass2"), Ok(())),
        ];
        for &(file, anon, user, password, want) in cases {
            let a = auth(file, None, anon);
            assert_eq!(
                a.authenticate(user, password),
                want,
                "{file} {anon} {user:?}"
            );
        }
        assert_eq!(BadCredentials.return_code(), 5);
        assert_eq!(Anonymous.return_code(), 5);
    }

    #[test]
    fn auth_without_acl_allows_all_but_sys_writes() {
        let a = auth(false, None, true);
        assert!(a.can_read("c", None, "$SYS/broker/uptime"));
        assert!(a.can_subscribe("c", None, "#"));
        assert!(a.can_write("c", None, "a/b"));
        assert!(!a.can_write("c", None, "$SYS/broker/uptime"));
        assert!(!a.can_write("c", None, "$share/g/x"));
        let a = auth(false, Some("topic readwrite $SYS/#\n"), true);
        assert!(a.can_read("c", None, "$SYS/x"));
        assert!(!a.can_write("c", None, "$SYS/x"));
    }

    #[test]
    fn auth_load_reports_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        let acl_path = dir.path().join("acl");
        std::fs::write(&p, format!("junk\n{ALICE}\n")).unwrap();
        std::fs::write(&acl_path, "user alice\ntopic read a\n").unwrap();
        let (a, w) = load(Some(&p), Some(&acl_path), false).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].to_string().ends_with("pw:1: no ':' in line, skipped"));
        assert!(a.authenticate(Some("alice"), Some(b"secret")).is_ok());
        assert!(a.can_read("c", Some("alice"), "a"));
        let missing = dir.path().join("missing");
        assert!(matches!(
            load(Some(&missing), None, false),
            Err(Error::Io { .. })
        ));
        std::fs::write(&acl_path, "user alice\nbad line\n").unwrap();
        assert!(matches!(
            load(None, Some(&acl_path), false),
            Err(Error::Syntax { line: 2, .. })
        ));
    }
}
