//! mosquitto.conf as a [`config::Format`].
//!
//! A line is `key value`: the key up to the first blank, the value the
//! rest of the line, trimmed (options that take a number or a boolean read
//! its first word, as Mosquitto's `strtok` does, so `max_inflight_messages
//! 5 # five` works there and here). A `#` starts a comment only at the
//! beginning of a line: values may contain `#`. Blank lines, CRLF endings
//! and a last line without a newline are accepted. Keys are folded to
//! lower case (Mosquitto compares them case-sensitively; accepting `Port`
//! breaks nothing that worked). Unlike Mosquitto, a comment may be
//! indented.
//!
//! The resulting map is:
//! - each global option as a string, or a list of strings for the
//!   repeatable ones (`log_dest`, `log_type`, `include_dir`);
//! - `listeners`: a list of tables, one per `listener PORT [ADDRESS]`
//!   line, holding `port`, `bind_address` and the listener options that
//!   followed it (and the security options under `per_listener_settings
//!   true`);
//! - `default_listener`: the listener options given before any `listener`
//!   line (`port`, `bind_address`, ...), which Mosquitto turns into one more
//!   listener;
//! - `bridges`: one table per `connection NAME` section.
//!
//! `include_dir DIR` is expanded here, in place (the `*.conf` files of DIR
//! in sorted order), because the `config` crate replaces a list from a later
//! source instead of appending to it. The crate forgets where a value came
//! from, so the format records a [`Location`] for every key path in
//! [`Parsed::locations`]; the typed conversion uses it to name file and
//! line in value errors.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use config::{Map, Value, ValueKind};

use super::options::{self, Opt, Scope, Support};
use super::{Error, LineError};

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What a parse found besides the values: locations and the options it
/// accepted without implementing them.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Key path (`max_inflight_messages`, `log_dest.1`, `listeners.0.port`,
    /// `default_listener.port`, `bridges.0`) to where it was written.
    pub locations: HashMap<String, Location>,
    /// Warnings, one per option name, in file order.
    pub warnings: Vec<String>,
}

/// The mosquitto.conf format. Cloned into the `config` crate's `File`
/// source; the clones share the [`Parsed`] side results.
#[derive(Debug, Clone)]
pub struct MosquittoFormat {
    file: PathBuf,
    parsed: Arc<Mutex<Parsed>>,
}

impl MosquittoFormat {
    /// A format for the text of `file` (named in errors; `include_dir`
    /// paths are resolved against the working directory, as Mosquitto does).
    pub fn new(file: &Path) -> Self {
        MosquittoFormat {
            file: file.to_owned(),
            parsed: Arc::default(),
        }
    }

    /// The locations and warnings of the last parse.
    pub fn take_parsed(&self) -> Parsed {
        std::mem::take(&mut *self.parsed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Parses `text` into the map described in the module docs.
    pub fn parse_text(&self, text: &str) -> Result<Map<String, Value>, Error> {
        let mut b = Builder::default();
        b.text(&self.file, text, 0)?;
        if let (Some(at), false) = (&b.first_auth_opt, b.auth_plugin_seen) {
            return Err(Error::Line {
                file: at.file.clone(),
                line: at.line,
                kind: LineError::Other(
                    "An auth_opt_ option exists in the config file without an auth_plugin".into(),
                ),
            });
        }
        let (map, parsed) = b.finish();
        *self.parsed.lock().unwrap_or_else(PoisonError::into_inner) = parsed;
        Ok(map)
    }
}

impl config::Format for MosquittoFormat {
    fn parse(
        &self,
        _uri: Option<&String>,
        text: &str,
    ) -> Result<Map<String, Value>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.parse_text(text)?)
    }
}

impl config::FileStoredFormat for MosquittoFormat {
    fn file_extensions(&self) -> &'static [&'static str] {
        &["conf"]
    }
}

/// One value as written.
#[derive(Debug)]
enum Entry {
    One(String, Location),
    Many(Vec<(String, Location)>),
}

/// Options of one section, in a stable order.
#[derive(Debug, Default)]
struct Section {
    entries: Vec<(String, Entry)>,
    /// Where the section was opened (`listener`, `connection` line).
    opened: Option<Location>,
}

impl Section {
    fn set(&mut self, opt: &Opt, key: &str, value: &str, at: &Location) -> Result<(), LineError> {
        let existing = self.entries.iter_mut().find(|(k, _)| k == key);
        match existing {
            Some((_, Entry::Many(values))) => values.push((value.to_owned(), at.clone())),
            Some(_) if opt.unique => {
                return Err(LineError::Other(format!(
                    "Duplicate {key} value in configuration"
                )))
            }
            // Mosquitto keeps the last of a number or boolean.
            Some((_, entry)) => *entry = Entry::One(value.to_owned(), at.clone()),
            None => {
                let entry = if opt.repeatable {
                    Entry::Many(vec![(value.to_owned(), at.clone())])
                } else {
                    Entry::One(value.to_owned(), at.clone())
                };
                self.entries.push((key.to_owned(), entry));
            }
        }
        Ok(())
    }

    fn into_value(self, origin: &str, path: &str, parsed: &mut Parsed) -> Value {
        let mut table = Map::new();
        if let Some(at) = self.opened {
            parsed
                .locations
                .insert(path.trim_end_matches('.').to_owned(), at);
        }
        for (key, entry) in self.entries {
            let full = format!("{path}{key}");
            let value = match entry {
                Entry::One(v, at) => {
                    parsed.locations.insert(full, at);
                    Value::new(Some(&origin.to_owned()), v)
                }
                Entry::Many(values) => {
                    if let Some((_, at)) = values.first() {
                        parsed.locations.insert(full.clone(), at.clone());
                    }
                    let list: Vec<Value> = values
                        .into_iter()
                        .enumerate()
                        .map(|(i, (v, at))| {
                            parsed.locations.insert(format!("{full}.{i}"), at);
                            Value::new(Some(&origin.to_owned()), v)
                        })
                        .collect();
                    Value::new(Some(&origin.to_owned()), ValueKind::Array(list))
                }
            };
            table.insert(key, value);
        }
        Value::new(Some(&origin.to_owned()), ValueKind::Table(table))
    }
}

/// Deepest `include_dir` nesting; deeper is a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Debug, Default)]
struct Builder {
    global: Section,
    default_listener: Section,
    listeners: Vec<Section>,
    bridges: Vec<Section>,
    per_listener_settings: bool,
    /// A security option was seen: `per_listener_settings` may no longer
    /// change (Mosquitto refuses it too).
    security_seen: bool,
    warned: Vec<String>,
    /// Mosquitto refuses `auth_opt_*` without any `auth_plugin`.
    first_auth_opt: Option<Location>,
    auth_plugin_seen: bool,
    parsed: Parsed,
    origin: String,
}

impl Builder {
    fn text(&mut self, file: &Path, text: &str, depth: usize) -> Result<(), Error> {
        if self.origin.is_empty() {
            self.origin = file.display().to_string();
        }
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.split_once(char::is_whitespace) {
                Some((k, v)) => (k, v.trim()),
                None => (line, ""),
            };
            let at = Location {
                file: file.to_owned(),
                line: i + 1,
            };
            let written = key;
            let key = key.to_ascii_lowercase();
            let result = if key == "include_dir" {
                self.include_dir(value, &at, depth)
            } else {
                let result = self.line(&key, value, &at).map_err(|kind| match kind {
                    // Name the option as written.
                    LineError::Unknown(_) => LineError::Unknown(written.to_owned()),
                    other => other,
                });
                result.map_err(|kind| Error::Line {
                    file: at.file.clone(),
                    line: at.line,
                    kind,
                })
            };
            result?;
        }
        Ok(())
    }

    fn include_dir(&mut self, dir: &str, at: &Location, depth: usize) -> Result<(), Error> {
        let fail = |kind: LineError| Error::Line {
            file: at.file.clone(),
            line: at.line,
            kind,
        };
        if dir.is_empty() {
            return Err(fail(LineError::MissingValue {
                key: "include_dir".into(),
            }));
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(fail(LineError::Other(format!(
                "include_dir {dir}: nested more than {MAX_INCLUDE_DEPTH} deep (a loop?)"
            ))));
        }
        let entries = std::fs::read_dir(dir).map_err(|e| {
            fail(LineError::Other(format!(
                "Unable to open include_dir '{dir}': {e}"
            )))
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
            .collect();
        files.sort();
        let opt = options::lookup("include_dir").unwrap_or_else(|| unreachable!());
        self.global
            .set(&opt, "include_dir", dir, at)
            .map_err(fail)?;
        for path in files {
            let text = std::fs::read(&path).map_err(|source| Error::Read {
                file: path.clone(),
                source,
            })?;
            self.text(&path, &String::from_utf8_lossy(&text), depth + 1)?;
        }
        Ok(())
    }

    fn line(&mut self, key: &str, value: &str, at: &Location) -> Result<(), LineError> {
        match key {
            "listener" => return self.listener(value, at),
            "connection" => {
                if value.is_empty() {
                    return Err(LineError::MissingValue { key: key.into() });
                }
                self.warn_once(key, at, "bridges are not implemented yet; ignored");
                let mut section = Section {
                    opened: Some(at.clone()),
                    ..Section::default()
                };
                let opt = options::lookup("address").unwrap_or_else(|| unreachable!());
                section.set(&opt, "connection", value, at)?;
                self.bridges.push(section);
                return Ok(());
            }
            _ => {}
        }
        let opt = options::lookup(key).ok_or_else(|| LineError::Unknown(key.to_owned()))?;
        if value.is_empty() {
            return Err(LineError::MissingValue { key: key.into() });
        }
        match opt.support {
            Support::Implemented => {}
            Support::NotYet => self.warn_once(key, at, "is not implemented yet; ignored"),
            Support::Removed => self.warn_once(key, at, "is no longer available; ignored"),
        }
        if key.starts_with("auth_opt_") && self.first_auth_opt.is_none() {
            self.first_auth_opt = Some(at.clone());
        }
        self.auth_plugin_seen |= key == "auth_plugin";
        if key == "per_listener_settings" {
            if self.security_seen {
                return Err(LineError::Other(
                    "per_listener_settings must be set before any other security settings".into(),
                ));
            }
            self.per_listener_settings = super::parse_bool(key, value)?;
        }
        let section = match opt.scope {
            Scope::Global => &mut self.global,
            Scope::Security if !self.per_listener_settings => {
                self.security_seen = true;
                &mut self.global
            }
            Scope::Listener | Scope::Security => {
                self.security_seen |= opt.scope == Scope::Security;
                match self.listeners.last_mut() {
                    Some(l) => l,
                    None if key == "mount_point" => {
                        return Err(LineError::Other(
                            "You must use create a listener before using the mount_point \
                             option in the configuration file"
                                .into(),
                        ))
                    }
                    None => &mut self.default_listener,
                }
            }
            Scope::Bridge => match self.bridges.last_mut() {
                Some(b) => b,
                None => {
                    return Err(LineError::Other(format!(
                        "Invalid bridge configuration: {key} outside a connection section"
                    )))
                }
            },
        };
        section.set(&opt, key, value, at)
    }

    fn listener(&mut self, value: &str, at: &Location) -> Result<(), LineError> {
        let mut words = value.split_whitespace();
        let Some(port) = words.next() else {
            return Err(LineError::MissingValue {
                key: "listener".into(),
            });
        };
        let port_num = super::parse_port("listener", port)?;
        let mut section = Section {
            opened: Some(at.clone()),
            ..Section::default()
        };
        let port_opt = options::lookup("port").unwrap_or_else(|| unreachable!());
        section.set(&port_opt, "port", &port_num.to_string(), at)?;
        if let Some(addr) = words.next() {
            let opt = options::lookup("bind_address").unwrap_or_else(|| unreachable!());
            section.set(&opt, "bind_address", addr, at)?;
        }
        self.listeners.push(section);
        Ok(())
    }

    fn warn_once(&mut self, key: &str, at: &Location, what: &str) {
        let name = if key.starts_with("auth_opt_") || key.starts_with("plugin_opt_") {
            key.split_inclusive('_').take(2).collect::<String>() + "*"
        } else {
            key.to_owned()
        };
        if self.warned.contains(&name) {
            return;
        }
        let msg = if key == "connection" {
            format!("{at}: {what} (connection)")
        } else {
            format!("{at}: option {name} {what}")
        };
        self.parsed.warnings.push(msg);
        self.warned.push(name);
    }

    fn finish(mut self) -> (Map<String, Value>, Parsed) {
        let origin = self.origin.clone();
        let mut parsed = std::mem::take(&mut self.parsed);
        let mut map = match self.global.into_value(&origin, "", &mut parsed).kind {
            ValueKind::Table(t) => t,
            _ => Map::new(),
        };
        if !self.default_listener.entries.is_empty() {
            let v = self
                .default_listener
                .into_value(&origin, "default_listener.", &mut parsed);
            map.insert("default_listener".into(), v);
        }
        let mut list = |name: &str, sections: Vec<Section>, parsed: &mut Parsed| {
            let values: Vec<Value> = sections
                .into_iter()
                .enumerate()
                .map(|(i, s)| s.into_value(&origin, &format!("{name}.{i}."), parsed))
                .collect();
            if !values.is_empty() {
                map.insert(
                    name.to_owned(),
                    Value::new(Some(&origin), ValueKind::Array(values)),
                );
            }
        };
        list("listeners", self.listeners, &mut parsed);
        list("bridges", self.bridges, &mut parsed);
        (map, parsed)
    }
}
