//! Per-client session state: the outbound queue, messages in flight, packet
//! identifiers and the inbound QoS 2 identifiers awaiting PUBREL.
//!
//! A [`Session`] is shared (`Arc`) between the router, which queues messages
//! into it from any publisher's task, and the connection task that owns the
//! client's socket, which drains it. Its state sits behind a
//! `std::sync::Mutex` that is only ever held for short, synchronous work and
//! never across `.await`; a `Notify` wakes the connection task when something
//! was queued.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use crate::codec::{self, ByteStr, QoS};
use crate::store::{Delivery, Op, Store};

/// An application message on its way to one subscriber. Cloning it is two
/// reference-count increments: topic and payload are shared `Bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: ByteStr,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

impl Message {
    /// Bytes this message accounts for in queue limits.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// Limits applied to a session's queues (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Outbound QoS 1/2 messages awaiting acknowledgement
    /// (`max_inflight_messages`; Mosquitto's default 20).
    pub max_inflight: usize,
    /// Payload bytes of outbound QoS 1/2 messages awaiting acknowledgement
    /// (`max_inflight_bytes`; 0 = no byte limit). As Mosquitto, a message
    /// goes out while the bytes already in flight are below the limit, so
    /// one message larger than the limit still flows, alone.
    pub max_inflight_bytes: usize,
    /// Messages waiting to be sent (`max_queued_messages`; default 1000).
    pub max_queued: usize,
    /// Bytes waiting to be sent (`max_queued_bytes`; 0 = no byte limit).
    pub max_queued_bytes: usize,
    /// Whether QoS 0 messages are queued for offline persistent sessions
    /// (`queue_qos0_messages`).
    pub queue_qos0: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_inflight: 20,
            max_inflight_bytes: 0,
            max_queued: 1000,
            max_queued_bytes: 0,
            queue_qos0: false,
        }
    }
}

/// Where an outbound QoS 1/2 message is in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREC received and PUBREL sent, waiting for PUBCOMP (QoS 2).
    Released,
}

#[derive(Debug, Clone)]
pub struct Inflight {
    pub pkid: u16,
    /// The message's key in the store.
    pub seq: u64,
    pub message: Message,
    pub stage: Stage,
}

/// A message waiting to be sent.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The message's key in the store (unique per session, increasing).
    pub seq: u64,
    pub message: Message,
}

/// How an acknowledgement from the client fits the messages in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// It moved its message along its handshake.
    Done,
    /// No message in flight has its packet id (a late duplicate): ignored.
    Unknown,
    /// It names a message in flight that is at another QoS or stage (a
    /// PUBREC for QoS 1, a PUBCOMP before PUBREC, ...): a protocol
    /// violation; Mosquitto closes the connection, and so do we
    /// [MQTT-4.8.0-1].
    Mismatch,
}

/// Counters for messages the session had to drop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub qos0: u64,
    pub qos12: u64,
}

/// The mutable part of a session.
#[derive(Debug)]
pub struct State {
    /// Messages not yet sent, in order [MQTT-4.6.0-6].
    pub queue: VecDeque<Queued>,
    queued_bytes: usize,
    /// Outbound QoS 1/2 messages sent and not yet completed, in send order.
    /// Small (bounded by `max_inflight`), so a linear scan is the fastest
    /// lookup.
    pub inflight: VecDeque<Inflight>,
    /// Payload bytes in `inflight`, for `max_inflight_bytes`.
    inflight_bytes: usize,
    /// The last packet identifier used; identifiers start at 1.
    last_pkid: u16,
    /// Inbound QoS 2 identifiers whose PUBREL has not arrived: a re-sent
    /// PUBLISH with one of these is not delivered again [MQTT-4.3.3-2].
    pub inbound_qos2: HashSet<u16>,
    /// The connection currently attached, if any. Only that connection may
    /// drain the queue or acknowledge; a connection that was taken over
    /// loses the right at once.
    pub owner: Option<u64>,
    pub dropped: Dropped,
    /// Set while messages are being dropped for a full queue, so that the
    /// warning is logged once per episode.
    dropping: bool,
    /// Next store key for a queued message.
    next_seq: u64,
    /// The store and this session's client id, for a persistent session
    /// when persistence is on: every change is appended under this lock,
    /// so the store sees changes in the order they happened.
    journal: Option<(Arc<Store>, Arc<str>)>,
    /// The attached connection's listener `mount_point`: topics carry it
    /// inside the broker and lose it on the way out.
    pub mount: Option<Arc<str>>,
}

/// Who a connection is, as far as its session needs to know: set when the
/// connection attaches, under the router's lock, so that no publish routed
/// to the session sees the previous connection's name or rules.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub username: Option<Arc<str>>,
    /// The access-rule realm (its listener's with `per_listener_settings
    /// true`, else 0).
    pub realm: usize,
    /// The listener's `mount_point`.
    pub mount: Option<Arc<str>>,
}

/// A client's session, shared between the router and the connection task.
#[derive(Debug)]
pub struct Session {
    pub client_id: Arc<str>,
    /// Unique per session object; the key in the subscription trie.
    pub id: u64,
    pub limits: Limits,
    state: Mutex<State>,
    /// Wakes the attached connection task when a message was queued.
    pub notify: Notify,
    /// The user name of the attached (or last) connection, for ACL checks
    /// on delivery.
    username: Mutex<Option<Arc<str>>>,
    /// The access-rule realm of that connection (its listener's with
    /// `per_listener_settings true`, else 0).
    realm: std::sync::atomic::AtomicUsize,
}

impl Session {
    /// A session; `store` is given for persistent sessions when
    /// persistence is on.
    pub fn new(client_id: Arc<str>, id: u64, limits: Limits, store: Option<Arc<Store>>) -> Session {
        let journal = store.map(|s| (s, client_id.clone()));
        Session {
            client_id,
            id,
            limits,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                inflight: VecDeque::new(),
                inflight_bytes: 0,
                last_pkid: 0,
                inbound_qos2: HashSet::new(),
                owner: None,
                dropped: Dropped::default(),
                dropping: false,
                next_seq: 1,
                journal,
                mount: None,
            }),
            notify: Notify::new(),
            username: Mutex::new(None),
            realm: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn realm(&self) -> usize {
        self.realm.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_realm(&self, realm: usize) {
        self.realm
            .store(realm, std::sync::atomic::Ordering::Relaxed);
    }

    /// Attaches connection `owner` with `identity`: from now on only it
    /// drains the queue.
    pub fn attach(&self, owner: u64, identity: Identity) {
        self.set_username(identity.username);
        self.set_realm(identity.realm);
        let mut state = self.lock();
        state.owner = Some(owner);
        state.mount = identity.mount;
    }

    pub fn username(&self) -> Option<Arc<str>> {
        self.username
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_username(&self, username: Option<Arc<str>>) {
        *self.username.lock().unwrap_or_else(|e| e.into_inner()) = username;
    }

    /// Locks the state. A poisoned lock (a panic elsewhere while holding
    /// it) still yields the state: it holds no invariant a panic can break
    /// half-way that matters more than staying up.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `message` for delivery. Returns `None` when it was dropped: a
    /// QoS 0 message for an offline session (unless `queue_qos0`), or any
    /// message beyond the queue limits (as Mosquitto does). Otherwise the
    /// store ticket an acknowledgement must wait for (0: nothing stored).
    /// Never blocks the publisher.
    pub fn enqueue(&self, message: Message) -> Option<u64> {
        let mut state = self.lock();
        let limits = &self.limits;
        let qos0 = message.qos == QoS::AtMostOnce;
        let full = state.queue.len() >= limits.max_queued
            || (limits.max_queued_bytes > 0
                && state.queued_bytes + message.size() > limits.max_queued_bytes);
        if (qos0 && state.owner.is_none() && !limits.queue_qos0) || full {
            if qos0 {
                state.dropped.qos0 += 1;
            } else {
                state.dropped.qos12 += 1;
            }
            if full && !state.dropping {
                // Once per episode, not per message (Mosquitto's users
                // complain that drops are silent, #1593).
                state.dropping = true;
                tracing::warn!(
                    "Outgoing messages are being dropped for client {} (queue full: {} messages).",
                    self.client_id,
                    state.queue.len()
                );
            }
            return None;
        }
        state.dropping = false;
        let online = state.owner.is_some();
        let seq = state.next_seq;
        state.next_seq += 1;
        let ticket = if state.stored(&message, limits) {
            state.record(|client| Op::PutMsg {
                client,
                seq,
                message: message.clone(),
                delivery: Delivery::Queued,
            })
        } else {
            0
        };
        state.queued_bytes += message.size();
        state.queue.push_back(Queued { seq, message });
        drop(state);
        if online {
            self.notify.notify_one();
        }
        Some(ticket)
    }

    /// Rebuilds state loaded from the store (startup).
    pub fn restore(&self, messages: Vec<(u64, Message, Delivery)>, inbound: Vec<u16>) {
        let mut state = self.lock();
        for (seq, message, delivery) in messages {
            state.next_seq = state.next_seq.max(seq + 1);
            match delivery {
                Delivery::Queued => {
                    state.queued_bytes += message.size();
                    state.queue.push_back(Queued { seq, message });
                }
                Delivery::Inflight { pkid, stage } => {
                    state.last_pkid = state.last_pkid.max(pkid);
                    state.inflight_bytes += message.payload.len();
                    state.inflight.push_back(Inflight {
                        pkid,
                        seq,
                        message,
                        stage,
                    });
                }
            }
        }
        state.inbound_qos2.extend(inbound);
    }
}

impl State {
    /// Whether `message`, queued in this session, is kept in the store.
    fn stored(&self, message: &Message, limits: &Limits) -> bool {
        // QoS 0 messages are stored only where they are queued offline too.
        self.journal.is_some() && (message.qos != QoS::AtMostOnce || limits.queue_qos0)
    }

    fn record(&self, op: impl FnOnce(Arc<str>) -> Op) -> u64 {
        match &self.journal {
            Some((store, client)) => store.append(op(client.clone())),
            None => 0,
        }
    }

    /// Stops recording changes in the store: the session was deleted.
    pub fn detach_store(&mut self) {
        self.journal = None;
    }

    /// Drops the unsent QoS 0 messages (a persistent session going
    /// offline), keeping the byte count right.
    pub fn discard_qos0(&mut self) {
        let mut freed = 0;
        self.queue.retain(|q| {
            let keep = q.message.qos != QoS::AtMostOnce;
            if !keep {
                freed += q.message.size();
            }
            keep
        });
        self.queued_bytes -= freed;
    }

    /// Records a new inbound QoS 2 packet id; returns whether it is new
    /// (to be delivered) and the store ticket its PUBREC waits for.
    pub fn inbound_insert(&mut self, pkid: u16) -> (bool, u64) {
        if !self.inbound_qos2.insert(pkid) {
            return (false, 0);
        }
        (true, self.record(|client| Op::PutInbound { client, pkid }))
    }

    /// PUBREL: the inbound QoS 2 id is released.
    pub fn inbound_remove(&mut self, pkid: u16) {
        if self.inbound_qos2.remove(&pkid) {
            self.record(|client| Op::DelInbound { client, pkid });
        }
    }

    /// `topic` as this client sees it: without the mount point.
    fn outbound<'t>(mount: &Option<Arc<str>>, topic: &'t str) -> &'t str {
        match mount {
            Some(m) => topic.strip_prefix(&**m).unwrap_or(topic),
            None => topic,
        }
    }

    fn next_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.wrapping_add(1);
            if self.last_pkid == 0 {
                self.last_pkid = 1;
            }
            let id = self.last_pkid;
            if !self.inflight.iter().any(|f| f.pkid == id) {
                return id;
            }
        }
    }

    /// Moves queued messages into `out` as encoded PUBLISH packets while the
    /// inflight window (messages and, with `max_inflight_bytes`, payload
    /// bytes) has room and `out` is below `high_water` bytes.
    /// QoS 0 messages wait behind a full window too, so that order is kept
    /// [MQTT-4.6.0-6]. Only the attached `connection` may drain the queue.
    /// Returns the number of packets written.
    pub fn fill(
        &mut self,
        connection: u64,
        limits: &Limits,
        out: &mut BytesMut,
        high_water: usize,
    ) -> usize {
        if self.owner != Some(connection) {
            // Taken over: the new connection sends from now on.
            return 0;
        }
        let max_inflight = if limits.max_inflight == 0 {
            usize::from(u16::MAX)
        } else {
            limits.max_inflight
        };
        let mut written = 0;
        while out.len() < high_water {
            let Some(front) = self.queue.front() else {
                break;
            };
            let pkid = if front.message.qos == QoS::AtMostOnce {
                0
            } else if self.inflight.len() >= max_inflight
                || (limits.max_inflight_bytes > 0
                    && self.inflight_bytes >= limits.max_inflight_bytes)
            {
                break;
            } else {
                self.next_pkid()
            };
            let Some(Queued { seq, message }) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= message.size();
            let stored = self.stored(&message, limits);
            // A topic is at most 65535 bytes (it was decoded or validated),
            // so encoding cannot fail; a message that somehow cannot be
            // encoded is dropped rather than wedging the queue.
            let encoded = codec::encode_publish(
                false,
                message.qos,
                message.retain,
                State::outbound(&self.mount, &message.topic),
                pkid,
                &message.payload,
                out,
            )
            .is_ok();
            if encoded {
                written += 1;
            }
            if pkid != 0 && encoded {
                if stored {
                    self.record(|client| Op::PutMsg {
                        client,
                        seq,
                        message: message.clone(),
                        delivery: Delivery::Inflight {
                            pkid,
                            stage: Stage::Published,
                        },
                    });
                }
                self.inflight_bytes += message.payload.len();
                self.inflight.push_back(Inflight {
                    pkid,
                    seq,
                    message,
                    stage: Stage::Published,
                });
            } else if stored {
                self.record(|client| Op::DelMsg { client, seq });
            }
        }
        written
    }

    /// Re-sends everything in flight after a reconnect: PUBLISH with DUP
    /// set for messages not yet acknowledged, PUBREL for those whose PUBREC
    /// arrived [MQTT-4.4.0-1].
    pub fn resend(&mut self, out: &mut BytesMut) {
        for f in &self.inflight {
            match f.stage {
                Stage::Published => {
                    let m = &f.message;
                    let _ = codec::encode_publish(
                        true,
                        m.qos,
                        m.retain,
                        State::outbound(&self.mount, &m.topic),
                        f.pkid,
                        &m.payload,
                        out,
                    );
                }
                Stage::Released => {
                    let _ = codec::encode(&codec::Packet::PubRel(f.pkid), out);
                }
            }
        }
    }

    /// PUBACK: completes a QoS 1 delivery.
    pub fn puback(&mut self, pkid: u16) -> Ack {
        match self.find(pkid) {
            None => Ack::Unknown,
            Some((i, QoS::AtLeastOnce, Stage::Published)) => {
                self.complete(i);
                Ack::Done
            }
            Some(_) => Ack::Mismatch,
        }
    }

    /// PUBREC: the QoS 2 message is received by the client; it now awaits
    /// PUBCOMP. The caller answers PUBREL unless it is a mismatch
    /// [MQTT-4.3.3-1].
    pub fn pubrec(&mut self, pkid: u16) -> Ack {
        match self.find(pkid) {
            None => Ack::Unknown,
            // A PUBREC repeated after a re-sent PUBLISH.
            Some((_, QoS::ExactlyOnce, Stage::Released)) => Ack::Done,
            Some((i, QoS::ExactlyOnce, Stage::Published)) => {
                let f = &mut self.inflight[i];
                f.stage = Stage::Released;
                let (seq, message) = (f.seq, f.message.clone());
                self.record(|client| Op::PutMsg {
                    client,
                    seq,
                    message,
                    delivery: Delivery::Inflight {
                        pkid,
                        stage: Stage::Released,
                    },
                });
                Ack::Done
            }
            Some(_) => Ack::Mismatch,
        }
    }

    /// PUBCOMP: completes a QoS 2 delivery.
    pub fn pubcomp(&mut self, pkid: u16) -> Ack {
        match self.find(pkid) {
            None => Ack::Unknown,
            Some((i, QoS::ExactlyOnce, Stage::Released)) => {
                self.complete(i);
                Ack::Done
            }
            Some(_) => Ack::Mismatch,
        }
    }

    /// The in-flight message with `pkid`: its index, QoS and stage.
    fn find(&self, pkid: u16) -> Option<(usize, QoS, Stage)> {
        self.inflight
            .iter()
            .position(|f| f.pkid == pkid)
            .map(|i| (i, self.inflight[i].message.qos, self.inflight[i].stage))
    }

    /// Removes the completed in-flight message at `i`.
    fn complete(&mut self, i: usize) {
        if let Some(f) = self.inflight.remove(i) {
            self.inflight_bytes -= f.message.payload.len();
            let seq = f.seq;
            self.record(|client| Op::DelMsg { client, seq });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(qos: QoS, n: u8) -> Message {
        Message {
            topic: ByteStr::from("t"),
            payload: Bytes::from(vec![n]),
            qos,
            retain: false,
        }
    }

    fn online(limits: Limits) -> Session {
        let s = Session::new("c".into(), 1, limits, None);
        s.lock().owner = Some(1);
        s
    }

    #[test]
    fn offline_session_drops_qos0_unless_configured() {
        let s = Session::new("c".into(), 1, Limits::default(), None);
        assert!(s.enqueue(msg(QoS::AtMostOnce, 0)).is_none());
        assert!(s.enqueue(msg(QoS::AtLeastOnce, 0)).is_some());
        assert_eq!(s.lock().dropped.qos0, 1);
        let s = Session::new(
            "c".into(),
            1,
            Limits {
                queue_qos0: true,
                ..Limits::default()
            },
            None,
        );
        assert!(s.enqueue(msg(QoS::AtMostOnce, 0)).is_some());
    }

    #[test]
    fn queue_limit_drops_and_counts() {
        let s = online(Limits {
            max_queued: 2,
            ..Limits::default()
        });
        assert!(s.enqueue(msg(QoS::AtLeastOnce, 0)).is_some());
        assert!(s.enqueue(msg(QoS::AtMostOnce, 1)).is_some());
        assert!(s.enqueue(msg(QoS::AtLeastOnce, 2)).is_none());
        assert!(s.enqueue(msg(QoS::AtMostOnce, 3)).is_none());
        let st = s.lock();
        assert_eq!(st.dropped, Dropped { qos0: 1, qos12: 1 });
    }

    #[test]
    fn inflight_window_and_packet_ids_start_at_one() {
        let limits = Limits {
            max_inflight: 2,
            ..Limits::default()
        };
        let s = online(limits);
        for n in 0..4 {
            s.enqueue(msg(QoS::AtLeastOnce, n));
        }
        let mut out = BytesMut::new();
        let mut st = s.lock();
        assert_eq!(st.fill(1, &limits, &mut out, 1 << 20), 2);
        let ids: Vec<u16> = st.inflight.iter().map(|f| f.pkid).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(st.puback(1), Ack::Done);
        assert_eq!(
            st.puback(1),
            Ack::Unknown,
            "a second PUBACK matches nothing"
        );
        assert_eq!(st.fill(1, &limits, &mut out, 1 << 20), 1);
        assert_eq!(st.inflight.back().map(|f| f.pkid), Some(3));
    }

    #[test]
    fn inflight_bytes_window_lets_one_large_message_through_alone() {
        let limits = Limits {
            max_inflight: 0,
            max_inflight_bytes: 3,
            ..Limits::default()
        };
        let s = online(limits);
        let big = Message {
            payload: Bytes::from_static(b"12345"),
            ..msg(QoS::AtLeastOnce, 0)
        };
        s.enqueue(big);
        s.enqueue(msg(QoS::AtLeastOnce, 1));
        s.enqueue(msg(QoS::AtLeastOnce, 2));
        s.enqueue(msg(QoS::AtLeastOnce, 3));
        let mut out = BytesMut::new();
        let mut st = s.lock();
        assert_eq!(
            st.fill(1, &limits, &mut out, 1 << 20),
            1,
            "5 bytes > 3 still go, alone"
        );
        assert_eq!(st.puback(1), Ack::Done);
        assert_eq!(st.fill(1, &limits, &mut out, 1 << 20), 3, "1 + 1 + 1 bytes");
        assert_eq!(st.fill(1, &limits, &mut out, 1 << 20), 0);
    }

    #[test]
    fn qos2_handshake_stages() {
        let limits = Limits::default();
        let s = online(limits);
        s.enqueue(msg(QoS::ExactlyOnce, 0));
        let mut out = BytesMut::new();
        let mut st = s.lock();
        st.fill(1, &limits, &mut out, 1 << 20);
        assert_eq!(st.pubcomp(1), Ack::Mismatch, "PUBCOMP before PUBREC");
        assert_eq!(st.puback(1), Ack::Mismatch, "PUBACK for QoS 2");
        assert_eq!(st.pubrec(1), Ack::Done);
        assert_eq!(st.inflight[0].stage, Stage::Released);
        out.clear();
        st.resend(&mut out);
        assert_eq!(&out[..], &[0x62, 0x02, 0x00, 0x01], "PUBREL re-sent");
        assert_eq!(st.pubcomp(1), Ack::Done);
        assert!(st.inflight.is_empty());
    }
}
