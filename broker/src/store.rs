//! Durable state: retained messages and persistent sessions on disk, so that
//! the broker survives restarts, `kill -9` and power loss without losing
//! anything it acknowledged.
//!
//! # Design
//! Everything the broker serves lives in memory (router, sessions); the
//! store mirrors the durable part as a log of [`Op`]s. Producers (connection
//! tasks, under the router or session lock so that the order of ops is the
//! order of the state changes) append ops to a shared buffer and get a
//! ticket; one writer thread takes the whole buffer at once, coalesces it
//! (a message queued, sent and acknowledged within one batch never touches
//! the disk), writes it as one atomic batch and fsyncs once: group commit.
//! It then publishes the highest durable ticket on a `watch` channel; a
//! connection sends PUBACK/PUBREC for a publish that changed durable state
//! only when its ticket is durable.
//!
//! The network path never waits for the disk except for those
//! acknowledgements, and the buffer is bounded: past [`HIGH_WATER`] ops a
//! connection stops reading its socket until the writer has caught up.
//!
//! # Engine: fjall 3 (LSM tree with a journal)
//! Measured on a 2-vCPU machine like ours (`../shared/FIELD-NOTES.md`, 1M
//! records of 100 bytes): fjall writes 446k records/s in bulk against
//! redb's 50k, 9.2k single durable commits/s against 3.4k, and loads 1M
//! records in 1.0 s against 1.3 s. Our workload is many small writes per
//! fsync (queued QoS 1 messages for persistent sessions: a put when queued,
//! a put when sent, a delete when acknowledged), which is exactly what an
//! LSM with a write-ahead journal is best at; `cargo bench -p broker
//! --bench store` prints our own figures for this workload. Both are
//! crash-safe; fjall replays its journal on open and discards a torn tail.
//!
//! # Key layout (one keyspace)
//! - `R` topic -> qos, payload (retained; never `$` topics)
//! - `S` len:u16 client -> last_seen:u64 (a persistent session)
//! - `B` len:u16 client filter -> qos (a subscription)
//! - `Q` len:u16 client seq:u64 -> message with its delivery state
//! - `I` len:u16 client pkid:u16 -> () (inbound QoS 2 awaiting PUBREL)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::codec::{ByteStr, QoS};
use crate::session::{Message, Stage};

/// Ops waiting for the writer beyond which producers pause reading.
pub const HIGH_WATER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store {path}: {source}")]
    Engine { path: PathBuf, source: fjall::Error },
    #[error("store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store {path} is corrupt or unreadable ({reason}); refusing to start (persistence_corrupt_action refuse)")]
    Corrupt { path: PathBuf, reason: String },
}

/// Where a stored outbound message is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    Inflight { pkid: u16, stage: Stage },
}

/// One change to durable state.
#[derive(Debug, Clone)]
pub enum Op {
    PutRetained {
        topic: ByteStr,
        qos: QoS,
        payload: Bytes,
    },
    DelRetained {
        topic: ByteStr,
    },
    PutSession {
        client: Arc<str>,
        last_seen: u64,
    },
    /// Removes the session and everything stored under it.
    DelSession {
        client: Arc<str>,
    },
    PutSub {
        client: Arc<str>,
        filter: ByteStr,
        qos: QoS,
    },
    DelSub {
        client: Arc<str>,
        filter: ByteStr,
    },
    PutMsg {
        client: Arc<str>,
        seq: u64,
        message: Message,
        delivery: Delivery,
    },
    DelMsg {
        client: Arc<str>,
        seq: u64,
    },
    PutInbound {
        client: Arc<str>,
        pkid: u16,
    },
    DelInbound {
        client: Arc<str>,
        pkid: u16,
    },
}

/// A persistent session as loaded at startup.
#[derive(Debug, Default)]
pub struct RecoveredSession {
    pub client: String,
    pub last_seen: u64,
    pub subscriptions: Vec<(ByteStr, QoS)>,
    /// In sequence order.
    pub messages: Vec<(u64, Message, Delivery)>,
    pub inbound_qos2: Vec<u16>,
}

/// Everything loaded at startup.
#[derive(Debug, Default)]
pub struct Recovered {
    pub retained: Vec<(ByteStr, QoS, Bytes)>,
    pub sessions: Vec<RecoveredSession>,
}

/// How acknowledgements relate to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PUBACK/PUBREC only after the change is fsynced (the default).
    Sync,
    /// Acknowledge at once; fsync at least this often.
    Every(Duration),
}

#[derive(Debug)]
struct Pending {
    ops: Vec<Op>,
    /// Ticket of the last op appended.
    last: u64,
    closing: bool,
}

/// The store handle: cheap to share, appends never block.
#[derive(Debug)]
pub struct Store {
    pending: Mutex<Pending>,
    wake: Condvar,
    synced: watch::Sender<u64>,
    /// Notified when the writer took a batch (room in the buffer again).
    space: Notify,
    durability: Durability,
    /// Failed batch writes (disk full, permissions...).
    pub write_errors: AtomicU64,
    /// Ops appended and not yet written, failed writes awaiting retry
    /// included: what bounds the buffer (read without a lock on every turn
    /// of every connection's loop).
    backlog: AtomicUsize,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
}

/// What the directory for the store should be: `location/file`, unless that
/// is a plain file (for example Mosquitto's own `mosquitto.db`), which is
/// left untouched.
pub fn store_path(location: &Path, file: &str) -> PathBuf {
    let path = location.join(file);
    if path.is_file() {
        let ours = location.join(format!("{file}.broker"));
        info!(
            "{} is a file (Mosquitto's format?); it is left untouched and this broker stores its state in {}",
            path.display(),
            ours.display()
        );
        ours
    } else {
        path
    }
}

impl Store {
    /// Opens (or creates) the store at `path` and loads its contents. A
    /// store that cannot be opened or read is moved aside to
    /// `NAME.corrupt-TIMESTAMP` (never deleted) and a new one is started,
    /// unless `refuse_corrupt`.
    pub fn open(
        path: &Path,
        durability: Durability,
        refuse_corrupt: bool,
    ) -> Result<(Arc<Store>, Recovered), Error> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                    path: parent.to_owned(),
                    source,
                })?;
            }
        }
        let (db, keyspace, recovered) = match open_and_load(path) {
            Ok(r) => r,
            Err(reason) => {
                if refuse_corrupt {
                    return Err(Error::Corrupt {
                        path: path.to_owned(),
                        reason,
                    });
                }
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
                error!(
                    "STORE {} IS CORRUPT OR UNREADABLE ({reason}); moved aside to {} (nothing deleted); starting with an empty store",
                    path.display(),
                    aside.display()
                );
                std::fs::rename(path, &aside).map_err(|source| Error::Io {
                    path: path.to_owned(),
                    source,
                })?;
                open_and_load(path).map_err(|reason| Error::Corrupt {
                    path: path.to_owned(),
                    reason,
                })?
            }
        };
        let (synced, _) = watch::channel(0);
        let store = Arc::new(Store {
            pending: Mutex::new(Pending {
                ops: Vec::new(),
                last: 0,
                closing: false,
            }),
            wake: Condvar::new(),
            synced,
            space: Notify::new(),
            durability,
            write_errors: AtomicU64::new(0),
            backlog: AtomicUsize::new(0),
            writer: Mutex::new(None),
            path: path.to_owned(),
        });
        let writer = {
            let store = store.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || store.write_loop(db, keyspace))
                .map_err(|source| Error::Io {
                    path: path.to_owned(),
                    source,
                })?
        };
        *store.lock_writer() = Some(writer);
        info!(
            "store {}: {} retained messages, {} persistent sessions loaded",
            path.display(),
            recovered.retained.len(),
            recovered.sessions.len()
        );
        Ok((store, recovered))
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Option<std::thread::JoinHandle<()>>> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a change; returns its ticket. Never blocks on the disk.
    pub fn append(&self, op: Op) -> u64 {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        let mut p = self.lock();
        p.ops.push(op);
        p.last += 1;
        let ticket = p.last;
        let first = p.ops.len() == 1;
        drop(p);
        if first {
            self.wake.notify_one();
        }
        ticket
    }

    /// The ticket an acknowledgement must wait for: `ticket` under
    /// [`Durability::Sync`], nothing (0) when relaxed.
    pub fn ack_ticket(&self, ticket: u64) -> u64 {
        match self.durability {
            Durability::Sync => ticket,
            Durability::Every(_) => 0,
        }
    }

    /// Follows the highest durable ticket.
    pub fn synced(&self) -> watch::Receiver<u64> {
        self.synced.subscribe()
    }

    /// Whether producers should pause until [`Store::space`] is notified.
    pub fn overloaded(&self) -> bool {
        self.backlog.load(Ordering::Relaxed) >= HIGH_WATER
    }

    /// Waits until the writer has taken a batch.
    pub async fn space(&self) {
        let notified = self.space.notified();
        if !self.overloaded() {
            return;
        }
        notified.await;
    }

    /// Writes everything appended so far, fsyncs and stops the writer.
    pub fn close(&self) {
        self.lock().closing = true;
        self.wake.notify_one();
        if let Some(writer) = self.lock_writer().take() {
            let _ = writer.join();
        }
        info!("store {} closed", self.path.display());
    }

    fn write_loop(&self, db: fjall::Database, keyspace: fjall::Keyspace) {
        let interval = match self.durability {
            Durability::Sync => None,
            Durability::Every(d) => Some(d),
        };
        let mut last_sync = Instant::now();
        let mut unsynced: Option<u64> = None;
        let mut retry: Vec<Op> = Vec::new();
        loop {
            let (mut ops, last, closing) = {
                let mut p = self.lock();
                while p.ops.is_empty() && !p.closing && retry.is_empty() {
                    let wait = match (interval, unsynced) {
                        (Some(d), Some(_)) => d.saturating_sub(last_sync.elapsed()),
                        _ => Duration::from_secs(1),
                    };
                    if wait.is_zero() {
                        break;
                    }
                    p = self
                        .wake
                        .wait_timeout(p, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                (std::mem::take(&mut p.ops), p.last, p.closing)
            };
            if !retry.is_empty() {
                retry.append(&mut ops);
                ops = std::mem::take(&mut retry);
            }
            if !ops.is_empty() {
                if let Err(e) = apply(&db, &keyspace, &ops) {
                    self.write_errors.fetch_add(1, Ordering::Relaxed);
                    error!("store write failed ({e}); acknowledgements held back, retrying");
                    // Still counted in the backlog: producers stay paused
                    // while the disk refuses, so memory stays bounded.
                    retry = ops;
                    if closing {
                        error!("store closing with unwritten changes");
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
                self.backlog.fetch_sub(ops.len(), Ordering::Relaxed);
                self.space.notify_waiters();
                unsynced = Some(last);
            }
            if let Some(ticket) = unsynced {
                let due = match interval {
                    None => true,
                    Some(d) => closing || last_sync.elapsed() >= d,
                };
                if due {
                    match db.persist(fjall::PersistMode::SyncAll) {
                        Ok(()) => {
                            last_sync = Instant::now();
                            unsynced = None;
                            self.synced.send_replace(ticket);
                        }
                        Err(e) => {
                            self.write_errors.fetch_add(1, Ordering::Relaxed);
                            error!(
                                "store fsync failed ({e}); acknowledgements held back, retrying"
                            );
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                }
            }
            if closing && unsynced.is_none() && retry.is_empty() && self.lock().ops.is_empty() {
                return;
            }
        }
    }
}

fn client_key(tag: u8, client: &str, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + client.len() + extra);
    k.push(tag);
    k.extend_from_slice(&(client.len() as u16).to_be_bytes());
    k.extend_from_slice(client.as_bytes());
    k
}

fn qos_byte(q: QoS) -> u8 {
    q as u8
}

fn encode_message(message: &Message, delivery: Delivery) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + message.topic.len() + message.payload.len());
    v.push(qos_byte(message.qos) | (u8::from(message.retain) << 2));
    let (state, pkid) = match delivery {
        Delivery::Queued => (0u8, 0u16),
        Delivery::Inflight {
            pkid,
            stage: Stage::Published,
        } => (1, pkid),
        Delivery::Inflight {
            pkid,
            stage: Stage::Released,
        } => (2, pkid),
    };
    v.push(state);
    v.extend_from_slice(&pkid.to_be_bytes());
    v.extend_from_slice(&(message.topic.len() as u16).to_be_bytes());
    v.extend_from_slice(message.topic.as_bytes());
    v.extend_from_slice(&message.payload);
    v
}

fn decode_message(v: &[u8]) -> Option<(Message, Delivery)> {
    let (&flags, rest) = v.split_first()?;
    let (&state, rest) = rest.split_first()?;
    let pkid = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
    let tlen = usize::from(u16::from_be_bytes(rest.get(2..4)?.try_into().ok()?));
    let topic = rest.get(4..4 + tlen)?;
    let payload = rest.get(4 + tlen..)?;
    let delivery = match state {
        0 => Delivery::Queued,
        1 => Delivery::Inflight {
            pkid,
            stage: Stage::Published,
        },
        2 => Delivery::Inflight {
            pkid,
            stage: Stage::Released,
        },
        _ => return None,
    };
    Some((
        Message {
            topic: ByteStr::from_bytes(Bytes::copy_from_slice(topic)).ok()?,
            payload: Bytes::copy_from_slice(payload),
            qos: QoS::from_u8(flags & 0x03)?,
            retain: flags & 0x04 != 0,
        },
        delivery,
    ))
}

/// Writes a batch of ops as one atomic batch, coalesced per key.
fn apply(db: &fjall::Database, ks: &fjall::Keyspace, ops: &[Op]) -> Result<(), fjall::Error> {
    // Last write per key wins; `None` deletes.
    let mut changes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::PutRetained {
                topic,
                qos,
                payload,
            } => {
                let mut k = vec![b'R'];
                k.extend_from_slice(topic.as_bytes());
                let mut v = Vec::with_capacity(1 + payload.len());
                v.push(qos_byte(*qos));
                v.extend_from_slice(payload);
                changes.insert(k, Some(v));
            }
            Op::DelRetained { topic } => {
                let mut k = vec![b'R'];
                k.extend_from_slice(topic.as_bytes());
                changes.insert(k, None);
            }
            Op::PutSession { client, last_seen } => {
                changes.insert(
                    client_key(b'S', client, 0),
                    Some(last_seen.to_be_bytes().to_vec()),
                );
            }
            Op::DelSession { client } => {
                // Earlier changes for this client in this batch are
                // superseded; stored keys are found by prefix.
                for tag in [b'B', b'Q', b'I'] {
                    let prefix = client_key(tag, client, 0);
                    let stale: Vec<Vec<u8>> = changes
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in stale {
                        changes.insert(k, None);
                    }
                    for item in ks.prefix(&prefix) {
                        let key = item.key()?;
                        changes.insert(key.to_vec(), None);
                    }
                }
                changes.insert(client_key(b'S', client, 0), None);
            }
            Op::PutSub {
                client,
                filter,
                qos,
            } => {
                let mut k = client_key(b'B', client, filter.len());
                k.extend_from_slice(filter.as_bytes());
                changes.insert(k, Some(vec![qos_byte(*qos)]));
            }
            Op::DelSub { client, filter } => {
                let mut k = client_key(b'B', client, filter.len());
                k.extend_from_slice(filter.as_bytes());
                changes.insert(k, None);
            }
            Op::PutMsg {
                client,
                seq,
                message,
                delivery,
            } => {
                let mut k = client_key(b'Q', client, 8);
                k.extend_from_slice(&seq.to_be_bytes());
                changes.insert(k, Some(encode_message(message, *delivery)));
            }
            Op::DelMsg { client, seq } => {
                let mut k = client_key(b'Q', client, 8);
                k.extend_from_slice(&seq.to_be_bytes());
                changes.insert(k, None);
            }
            Op::PutInbound { client, pkid } => {
                let mut k = client_key(b'I', client, 2);
                k.extend_from_slice(&pkid.to_be_bytes());
                changes.insert(k, Some(Vec::new()));
            }
            Op::DelInbound { client, pkid } => {
                let mut k = client_key(b'I', client, 2);
                k.extend_from_slice(&pkid.to_be_bytes());
                changes.insert(k, None);
            }
        }
    }
    let mut batch = db.batch().durability(None);
    for (k, v) in changes {
        match v {
            Some(v) => batch.insert(ks, k, v),
            None => batch.remove(ks, k),
        }
    }
    batch.commit()
}

type Opened = (fjall::Database, fjall::Keyspace, Recovered);

fn open_and_load(path: &Path) -> Result<Opened, String> {
    let db = fjall::Database::builder(path)
        .manual_journal_persist(true)
        .open()
        .map_err(|e| e.to_string())?;
    let ks = db
        .keyspace("state", fjall::KeyspaceCreateOptions::default)
        .map_err(|e| e.to_string())?;
    let recovered = load(&ks)?;
    Ok((db, ks, recovered))
}

/// Splits `tag len client rest` keys.
fn split_client_key(k: &[u8]) -> Option<(&str, &[u8])> {
    let len = usize::from(u16::from_be_bytes(k.get(1..3)?.try_into().ok()?));
    let client = std::str::from_utf8(k.get(3..3 + len)?).ok()?;
    Some((client, k.get(3 + len..)?))
}

fn load(ks: &fjall::Keyspace) -> Result<Recovered, String> {
    let mut recovered = Recovered::default();
    let mut sessions: BTreeMap<String, RecoveredSession> = BTreeMap::new();
    let mut skipped = 0usize;
    for item in ks.iter() {
        let (k, v) = item.into_inner().map_err(|e| e.to_string())?;
        let ok = match k.first() {
            Some(b'R') => (|| {
                let topic = ByteStr::from_bytes(Bytes::copy_from_slice(&k[1..])).ok()?;
                let (&q, payload) = v.split_first()?;
                recovered
                    .retained
                    .push((topic, QoS::from_u8(q)?, Bytes::copy_from_slice(payload)));
                Some(())
            })(),
            Some(tag @ (b'S' | b'B' | b'Q' | b'I')) => (|| {
                let (client, rest) = split_client_key(&k)?;
                let s = sessions
                    .entry(client.to_owned())
                    .or_insert_with(|| RecoveredSession {
                        client: client.to_owned(),
                        ..Default::default()
                    });
                match tag {
                    b'S' => s.last_seen = u64::from_be_bytes(v.get(..8)?.try_into().ok()?),
                    b'B' => {
                        let filter = ByteStr::from_bytes(Bytes::copy_from_slice(rest)).ok()?;
                        s.subscriptions.push((filter, QoS::from_u8(*v.first()?)?));
                    }
                    b'Q' => {
                        let seq = u64::from_be_bytes(rest.try_into().ok()?);
                        let (m, d) = decode_message(&v)?;
                        s.messages.push((seq, m, d));
                    }
                    _ => s
                        .inbound_qos2
                        .push(u16::from_be_bytes(rest.try_into().ok()?)),
                }
                Some(())
            })(),
            _ => None,
        };
        if ok.is_none() {
            skipped += 1;
        }
    }
    if skipped > 0 {
        warn!("store: {skipped} unreadable records skipped (kept on disk)");
    }
    recovered.sessions = sessions.into_values().collect();
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &[u8], qos: QoS) -> Message {
        Message {
            topic: ByteStr::from(topic),
            payload: Bytes::copy_from_slice(payload),
            qos,
            retain: false,
        }
    }

    #[test]
    fn message_encoding_round_trips() {
        let m = Message {
            retain: true,
            ..msg("a/b", b"xyz", QoS::ExactlyOnce)
        };
        for d in [
            Delivery::Queued,
            Delivery::Inflight {
                pkid: 7,
                stage: Stage::Released,
            },
        ] {
            assert_eq!(decode_message(&encode_message(&m, d)), Some((m.clone(), d)));
        }
        assert_eq!(decode_message(&[0x07, 0, 0]), None);
    }

    #[test]
    fn ops_survive_reopen_and_coalesce() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (store, rec) = Store::open(&path, Durability::Sync, false).unwrap();
        assert!(rec.sessions.is_empty());
        let c: Arc<str> = "c1".into();
        let mut synced = store.synced();
        store.append(Op::PutRetained {
            topic: "r".into(),
            qos: QoS::AtLeastOnce,
            payload: Bytes::from_static(b"kept"),
        });
        store.append(Op::PutSession {
            client: c.clone(),
            last_seen: 5,
        });
        store.append(Op::PutSub {
            client: c.clone(),
            filter: "f/#".into(),
            qos: QoS::ExactlyOnce,
        });
        for seq in 1..=3 {
            store.append(Op::PutMsg {
                client: c.clone(),
                seq,
                message: msg("f/x", &[seq as u8], QoS::AtLeastOnce),
                delivery: Delivery::Queued,
            });
        }
        store.append(Op::DelMsg {
            client: c.clone(),
            seq: 2,
        });
        store.append(Op::PutInbound {
            client: c.clone(),
            pkid: 9,
        });
        let t = store.append(Op::PutSession {
            client: "gone".into(),
            last_seen: 1,
        });
        store.append(Op::DelSession {
            client: "gone".into(),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), synced.wait_for(|s| *s >= t))
                .await
                .unwrap()
                .unwrap();
        });
        store.close();

        let (store, rec) = Store::open(&path, Durability::Sync, false).unwrap();
        assert_eq!(rec.retained.len(), 1);
        assert_eq!(&rec.retained[0].2[..], b"kept");
        assert_eq!(rec.sessions.len(), 1);
        let s = &rec.sessions[0];
        assert_eq!(s.client, "c1");
        assert_eq!(s.last_seen, 5);
        assert_eq!(s.subscriptions, vec![("f/#".into(), QoS::ExactlyOnce)]);
        let seqs: Vec<u64> = s.messages.iter().map(|m| m.0).collect();
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(s.inbound_qos2, vec![9]);
        store.close();
    }

    #[test]
    fn corrupt_store_is_moved_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::create_dir_all(&path).unwrap();
        // Not a fjall database at all.
        std::fs::write(path.join("version"), b"garbage").unwrap();
        std::fs::write(path.join("data"), b"precious").unwrap();
        assert!(matches!(
            Store::open(&path, Durability::Sync, true),
            Err(Error::Corrupt { .. })
        ));
        let (store, rec) = Store::open(&path, Durability::Sync, false).unwrap();
        assert!(rec.retained.is_empty());
        store.close();
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("db.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
        let kept = std::fs::read(dir.path().join(&aside[0]).join("data")).unwrap();
        assert_eq!(kept, b"precious");
    }
}
