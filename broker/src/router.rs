//! The router: sessions by client id, the subscription trie and the
//! retained messages; it decides who gets a publish.
//!
//! A plain struct with `&mut self` methods, held behind a
//! `std::sync::Mutex` by the server and never across `.await`. Delivery
//! itself is a push into each subscriber's bounded [`Session`] queue, which
//! never blocks.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::codec::{ByteStr, QoS, SubackCode};
use crate::retain::RetainTree;
use crate::session::{Identity, Limits, Message, Session};
use crate::store::{Op, Recovered, Store};
use crate::trie::SubscriptionTrie;

/// A subscription as stored in the trie.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub qos: QoS,
    pub session: Arc<Session>,
}

/// What a trie entry points at: one session's subscription, or a shared
/// subscription group (`$share/GROUP/FILTER`), whose members take turns.
#[derive(Debug, Clone)]
pub enum Target {
    Session(Subscriber),
    Group(u64),
}

/// The members of one shared subscription group for one filter.
#[derive(Debug, Default)]
struct Group {
    members: Vec<(u64, Subscriber)>,
    /// Round-robin position.
    next: usize,
}

/// Splits `$share/GROUP/FILTER` into group and filter; `None` for an
/// ordinary filter, `Some(Err)` for a malformed shared one.
pub fn shared_filter(filter: &str) -> Option<Result<(&str, &str), ()>> {
    let rest = filter.strip_prefix("$share/")?;
    Some(match rest.split_once('/') {
        Some((group, inner))
            if !group.is_empty()
                && !group.contains(['+', '#'])
                && crate::topic::validate_filter(inner).is_ok() =>
        {
            Ok((group, inner))
        }
        _ => Err(()),
    })
}

/// Who published a retained message, for `check_retain_source`.
#[derive(Debug, Clone)]
pub struct Source {
    pub client_id: Arc<str>,
    pub username: Option<Arc<str>>,
    /// The access-rule realm the publisher connected under (its
    /// listener's with `per_listener_settings true`, else 0).
    pub realm: usize,
}

/// A retained message and its publisher. The publisher is known only in
/// memory: the store keeps the message alone (its format is unchanged), so
/// a message recovered after a restart, like the broker's own (`$SYS`),
/// has no source and is not checked.
#[derive(Debug)]
struct Retained {
    message: Message,
    source: Option<Source>,
}

/// The ACL of `realm` in `acls`, if it has one.
fn acl_of(acls: &[Option<Arc<Auth>>], realm: usize) -> Option<&Auth> {
    acls.get(realm).and_then(|a| a.as_deref())
}

/// Whether `session` may receive a message on `topic` under `acls` (its
/// realm's ACL, with its current user name).
fn may_read(acls: &[Option<Arc<Auth>>], session: &Session, topic: &str) -> bool {
    match acl_of(acls, session.realm()) {
        Some(auth) => auth.can_read(&session.client_id, session.username().as_deref(), topic),
        None => true,
    }
}

/// A session known to the router.
#[derive(Debug)]
struct Entry {
    session: Arc<Session>,
    /// The client's filters and granted QoS, to remove them from the trie
    /// when the session ends.
    filters: HashMap<ByteStr, QoS>,
    /// Clean session 1: discarded when the connection ends [MQTT-3.1.2-6].
    clean: bool,
    /// The attached connection's id and the token that closes it.
    connection: Option<(u64, CancellationToken)>,
    /// When the client was last connected (seconds since the epoch), for
    /// `persistent_client_expiration`.
    last_seen: u64,
}

/// What [`Router::connect`] decided.
#[derive(Debug)]
pub struct Attached {
    pub session: Arc<Session>,
    /// CONNACK's session-present flag [MQTT-3.2.2-2].
    pub session_present: bool,
    /// Closes the connection that was attached to this client id before
    /// (takeover) [MQTT-3.1.4-2]; the caller cancels it.
    pub taken_over: Option<CancellationToken>,
}

/// Counters the router keeps.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub published: u64,
    pub delivered: u64,
    pub dropped: u64,
    /// Persistent sessions removed by [`Router::expire`] (`$SYS`).
    pub expired: u64,
}

#[derive(Default)]
pub struct Router {
    sessions: HashMap<Arc<str>, Entry>,
    subscriptions: SubscriptionTrie<u64, Target>,
    /// Shared subscription groups by key (keys are above every session id).
    groups: HashMap<u64, Group>,
    /// (group name, filter) -> group key.
    group_keys: HashMap<(Box<str>, Box<str>), u64>,
    /// Reused between publishes: shared groups matched by one topic.
    group_scratch: Vec<u64>,
    next_group_key: u64,
    retained: RetainTree<Retained>,
    next_session_id: u64,
    /// Reused between publishes: the matches of one topic, merged per
    /// session (no allocation per publish once warmed up).
    scratch: Vec<(u64, QoS, Arc<Session>)>,
    pub stats: Stats,
    /// The store, when persistence is on.
    store: Option<Arc<Store>>,
    /// The access rules per realm (one, or one per listener with
    /// `per_listener_settings true`); `None` where no `acl_file` is
    /// configured. Checked on every delivery and on retained messages sent
    /// on subscribe, with the subscriber's realm.
    acls: Vec<Option<Arc<Auth>>>,
    /// `upgrade_outgoing_qos`: deliver at the subscription's granted QoS
    /// even when the message was published at a lower one (Mosquitto's
    /// non-standard option; the standard caps it [MQTT-3.8.4-6]).
    pub upgrade_outgoing_qos: bool,
    /// `check_retain_source`: a retained message is sent on subscribe only
    /// while its publisher may still write to its topic (the ACL may have
    /// been reloaded since), as Mosquitto (CVE-2018-12546).
    pub check_retain_source: bool,
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// A router whose retained messages and persistent sessions are kept
    /// in `store`, starting from what was recovered from it.
    pub fn with_store(store: Arc<Store>, recovered: Recovered, limits: Limits) -> Router {
        let mut router = Router {
            store: Some(store.clone()),
            ..Router::default()
        };
        for (topic, qos, payload) in recovered.retained {
            let message = Message {
                topic: topic.clone(),
                payload,
                qos,
                retain: true,
            };
            router.retained.insert(
                &topic,
                Retained {
                    message,
                    source: None,
                },
            );
        }
        for s in recovered.sessions {
            router.next_session_id += 1;
            let client: Arc<str> = s.client.as_str().into();
            let session = Arc::new(Session::new(
                client.clone(),
                router.next_session_id,
                limits,
                Some(store.clone()),
            ));
            session.restore(s.messages, s.inbound_qos2);
            let mut filters = HashMap::new();
            for (filter, qos) in s.subscriptions {
                router.add_subscription(&session, &filter, qos);
                filters.insert(filter, qos);
            }
            router.sessions.insert(
                client,
                Entry {
                    session,
                    filters,
                    clean: false,
                    connection: None,
                    last_seen: s.last_seen,
                },
            );
        }
        router
    }

    /// Uses these rules (by realm) for deliveries from now on.
    pub fn set_auth(&mut self, auths: &[Arc<Auth>]) {
        self.acls = auths
            .iter()
            .map(|a| a.acl.is_some().then(|| a.clone()))
            .collect();
    }

    fn record(&self, op: Op) -> u64 {
        match &self.store {
            Some(store) => store.append(op),
            None => 0,
        }
    }

    /// Attaches connection `connection` to `client_id`'s session, creating
    /// or discarding sessions as `clean` asks [MQTT-3.1.2-4], [MQTT-3.1.2-6].
    pub fn connect(
        &mut self,
        client_id: &str,
        clean: bool,
        connection: u64,
        kick: CancellationToken,
        limits: Limits,
        identity: Identity,
    ) -> Attached {
        let mut taken_over = None;
        let mut resume = None;
        if let Some(mut old) = self.sessions.remove(client_id) {
            taken_over = old.connection.take().map(|(_, token)| token);
            if !clean && !old.clean {
                resume = Some(old);
            } else {
                self.drop_entry(old);
            }
        }
        let session_present = resume.is_some();
        let mut entry = match resume {
            Some(entry) => entry,
            None => {
                self.next_session_id += 1;
                let client_id: Arc<str> = client_id.into();
                let store = if clean { None } else { self.store.clone() };
                if !clean {
                    self.record(Op::PutSession {
                        client: client_id.clone(),
                        last_seen: now(),
                    });
                }
                Entry {
                    session: Arc::new(Session::new(client_id, self.next_session_id, limits, store)),
                    filters: HashMap::new(),
                    clean,
                    connection: None,
                    last_seen: now(),
                }
            }
        };
        entry.connection = Some((connection, kick));
        entry.session.attach(connection, identity);
        let session = entry.session.clone();
        self.sessions.insert(session.client_id.clone(), entry);
        Attached {
            session,
            session_present,
            taken_over,
        }
    }

    /// Detaches `connection` from `client_id`'s session, if it is still the
    /// attached one; a clean session is discarded, a persistent one keeps
    /// queueing while offline.
    pub fn disconnect(&mut self, client_id: &str, connection: u64) {
        let Some(entry) = self.sessions.get_mut(client_id) else {
            return;
        };
        if entry.connection.as_ref().map(|c| c.0) != Some(connection) {
            return;
        }
        entry.connection = None;
        entry.last_seen = now();
        {
            let mut state = entry.session.lock();
            state.owner = None;
            // Unsent QoS 0 messages are not kept for an offline session.
            if !entry.session.limits.queue_qos0 {
                state.discard_qos0();
            }
        }
        if !entry.clean {
            if let Some(store) = &self.store {
                store.append(Op::PutSession {
                    client: entry.session.client_id.clone(),
                    last_seen: entry.last_seen,
                });
            }
        }
        if entry.clean {
            if let Some(entry) = self.sessions.remove(client_id) {
                self.drop_entry(entry);
            }
        }
    }

    /// Puts one subscription of `session` in the trie (or its shared
    /// group). Replaces an existing one for the same filter.
    fn add_subscription(&mut self, session: &Arc<Session>, filter: &str, qos: QoS) {
        let sub = Subscriber {
            qos,
            session: session.clone(),
        };
        match shared_filter(filter) {
            None => {
                self.subscriptions
                    .insert(filter, session.id, Target::Session(sub));
            }
            Some(Err(())) => {}
            Some(Ok((group, inner))) => {
                let name = (Box::from(group), Box::from(inner));
                let key = match self.group_keys.get(&name) {
                    Some(k) => *k,
                    None => {
                        // Group keys live above every session id.
                        self.next_group_key += 1;
                        let key = (1 << 63) | self.next_group_key;
                        self.group_keys.insert(name, key);
                        self.subscriptions.insert(inner, key, Target::Group(key));
                        key
                    }
                };
                let group = self.groups.entry(key).or_default();
                group.members.retain(|(id, _)| *id != session.id);
                group.members.push((session.id, sub));
            }
        }
    }

    /// Removes one subscription of session `id` from the trie or its group.
    fn remove_subscription(&mut self, id: u64, filter: &str) {
        match shared_filter(filter) {
            None => {
                self.subscriptions.remove(filter, &id);
            }
            Some(Err(())) => {}
            Some(Ok((group, inner))) => {
                let name = (Box::from(group), Box::from(inner));
                let Some(&key) = self.group_keys.get(&name) else {
                    return;
                };
                let empty = match self.groups.get_mut(&key) {
                    Some(g) => {
                        g.members.retain(|(m, _)| *m != id);
                        g.members.is_empty()
                    }
                    None => true,
                };
                if empty {
                    self.groups.remove(&key);
                    self.group_keys.remove(&name);
                    self.subscriptions.remove(inner, &key);
                }
            }
        }
    }

    fn drop_entry(&mut self, entry: Entry) {
        for filter in entry.filters.keys() {
            self.remove_subscription(entry.session.id, filter);
        }
        // Under the session's lock: the deletion is appended after every
        // change the session made, and the session, which its old
        // connection may still hold for a moment, records nothing more (a
        // late change would bring the deleted session back at restart).
        let mut state = entry.session.lock();
        state.owner = None;
        state.detach_store();
        if !entry.clean {
            self.record(Op::DelSession {
                client: entry.session.client_id.clone(),
            });
        }
    }

    /// Removes persistent sessions whose client has been away longer than
    /// `max_age` (`persistent_client_expiration`), from memory and from the
    /// store. Returns how many expired.
    pub fn expire(&mut self, max_age: std::time::Duration) -> usize {
        let cutoff = now().saturating_sub(max_age.as_secs());
        let expired: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.connection.is_none() && e.last_seen < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        for client in &expired {
            if let Some(entry) = self.sessions.remove(client) {
                tracing::info!("Expiring client {client} due to timeout.");
                self.drop_entry(entry);
                self.stats.expired += 1;
            }
        }
        expired.len()
    }

    /// Number of sessions (connected or persistent).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Number of sessions with a connection attached (`$SYS`; a scan,
    /// called once per `sys_interval`).
    pub fn connected_count(&self) -> usize {
        self.sessions
            .values()
            .filter(|e| e.connection.is_some())
            .count()
    }

    /// Number of subscriptions, (client, filter) pairs; the trie counts
    /// them as they are added and removed.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// Messages queued or in flight over all sessions (`$SYS`; a scan that
    /// locks each session, called once per `sys_interval`).
    pub fn queued_count(&self) -> usize {
        self.sessions
            .values()
            .map(|e| {
                let state = e.session.lock();
                state.queue.len() + state.inflight.len()
            })
            .sum()
    }

    /// Adds subscriptions for `session` and queues the retained messages
    /// they match [MQTT-3.8.4-3], [MQTT-3.3.1-6]. The filters are valid
    /// (the codec checked them); `refuse` lets the caller fail single
    /// filters (0x80), for example too deep ones.
    pub fn subscribe(
        &mut self,
        session: &Arc<Session>,
        filters: &[(ByteStr, QoS)],
        mut refuse: impl FnMut(&str) -> bool,
    ) -> Vec<SubackCode> {
        let mut codes = Vec::with_capacity(filters.len());
        for (filter, qos) in filters {
            let shared = shared_filter(filter);
            if refuse(filter) || matches!(shared, Some(Err(()))) {
                codes.push(SubackCode::Failure);
                continue;
            }
            let Some(entry) = self.sessions.get_mut(&session.client_id) else {
                codes.push(SubackCode::Failure);
                continue;
            };
            if !Arc::ptr_eq(&entry.session, session) {
                codes.push(SubackCode::Failure);
                continue;
            }
            entry.filters.insert(filter.clone(), *qos);
            if !entry.clean {
                if let Some(store) = &self.store {
                    store.append(Op::PutSub {
                        client: session.client_id.clone(),
                        filter: filter.clone(),
                        qos: *qos,
                    });
                }
            }
            self.add_subscription(session, filter, *qos);
            codes.push(SubackCode::Success(*qos));
            if shared.is_some() {
                // No retained messages for shared subscriptions (as
                // Mosquitto and MQTT 5).
                continue;
            }
            let acls = &self.acls;
            let upgrade = self.upgrade_outgoing_qos;
            let check_source = self.check_retain_source;
            self.retained.for_each_match(filter, |topic, r| {
                if !may_read(acls, session, topic) {
                    return;
                }
                if let (true, Some(source)) = (check_source, &r.source) {
                    if let Some(auth) = acl_of(acls, source.realm) {
                        let writer = source.username.as_deref();
                        if !auth.can_write(&source.client_id, writer, topic) {
                            return;
                        }
                    }
                }
                let m = &r.message;
                session.enqueue(Message {
                    topic: m.topic.clone(),
                    payload: m.payload.clone(),
                    qos: if upgrade { *qos } else { m.qos.min(*qos) },
                    retain: true,
                });
            });
        }
        codes
    }

    /// Removes `session`'s subscriptions to `filters`; filters it did not
    /// have are ignored [MQTT-3.10.4-5].
    pub fn unsubscribe(&mut self, session: &Arc<Session>, filters: &[ByteStr]) {
        let Some(entry) = self.sessions.get_mut(&session.client_id) else {
            return;
        };
        if !Arc::ptr_eq(&entry.session, session) {
            return;
        }
        let clean = entry.clean;
        let removed: Vec<&ByteStr> = filters
            .iter()
            .filter(|f| entry.filters.remove(*f).is_some())
            .collect();
        for filter in removed {
            self.remove_subscription(session.id, filter);
            if !clean {
                if let Some(store) = &self.store {
                    store.append(Op::DelSub {
                        client: session.client_id.clone(),
                        filter: filter.clone(),
                    });
                }
            }
        }
    }

    /// Routes a PUBLISH: stores or clears the retained message, then queues
    /// one copy for every session with a matching subscription, at the
    /// highest QoS granted among its matching filters [MQTT-3.3.5-1],
    /// capped by the message's QoS unless `upgrade_outgoing_qos`; the retain flag is cleared on
    /// forwarded copies [MQTT-3.3.1-9]. Returns the store ticket the
    /// publisher's acknowledgement must wait for (0: nothing durable
    /// changed).
    pub fn publish(&mut self, topic: &ByteStr, payload: &Bytes, qos: QoS, retain: bool) -> u64 {
        self.publish_from(None, topic, payload, qos, retain)
    }

    /// [`Router::publish`] for a client's message: `source` is kept with a
    /// retained message for `check_retain_source`.
    pub fn publish_from(
        &mut self,
        source: Option<Source>,
        topic: &ByteStr,
        payload: &Bytes,
        qos: QoS,
        retain: bool,
    ) -> u64 {
        self.stats.published += 1;
        let mut ticket = 0;
        // `$` topics (the broker's own) are never stored.
        let durable = !topic.starts_with('$');
        // Decoded topics and payloads are slices of the publisher's read
        // buffer. Whatever is kept (retained, queued) is copied once, here,
        // and shared by every subscriber: a slow subscriber then holds its
        // messages' bytes only, not a read buffer each, which would escape
        // the queue limits. One copy per publish, none per subscriber.
        let mut owned: Option<(ByteStr, Bytes)> = None;
        let mut own = || {
            owned
                .get_or_insert_with(|| ByteStr::own_with(topic, payload))
                .clone()
        };
        if retain {
            if payload.is_empty() {
                // An empty retained payload clears the topic and is not
                // stored [MQTT-3.3.1-10], [MQTT-3.3.1-11].
                if self.retained.remove(topic).is_some() && durable {
                    ticket = self.record(Op::DelRetained {
                        topic: topic.clone(),
                    });
                }
            } else {
                let (owned_topic, owned_payload) = own();
                let message = Message {
                    topic: owned_topic,
                    payload: owned_payload,
                    qos,
                    retain: true,
                };
                if durable {
                    ticket = self.record(Op::PutRetained {
                        topic: message.topic.clone(),
                        qos,
                        payload: message.payload.clone(),
                    });
                }
                self.retained.insert(topic, Retained { message, source });
            }
        }

        let mut scratch = std::mem::take(&mut self.scratch);
        let mut groups = std::mem::take(&mut self.group_scratch);
        scratch.clear();
        groups.clear();
        self.subscriptions
            .for_each_match(topic, |id, target| match target {
                Target::Session(sub) => scratch.push((*id, sub.qos, sub.session.clone())),
                Target::Group(key) => groups.push(*key),
            });
        // One member of each matching shared group takes the message:
        // the next connected one in turn (any, if none is connected).
        for key in &groups {
            if let Some(g) = self.groups.get_mut(key) {
                let n = g.members.len();
                let pick = (0..n)
                    .map(|i| (g.next + i) % n)
                    .find(|&i| g.members[i].1.session.lock().owner.is_some())
                    .unwrap_or(g.next % n.max(1));
                if let Some((id, sub)) = g.members.get(pick) {
                    // Outside the overlap merge below: a shared
                    // subscription is delivered on its own.
                    scratch.push((*id | (1 << 62), sub.qos, sub.session.clone()));
                }
                g.next = pick + 1;
            }
        }
        self.group_scratch = groups;
        if scratch.len() > 1 {
            // Overlapping subscriptions: one copy per session at the
            // highest granted QoS [MQTT-3.3.5-1].
            scratch.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            scratch.dedup_by_key(|e| e.0);
        }
        let mut delivered = 0;
        for (_, granted, session) in scratch.drain(..) {
            if !may_read(&self.acls, &session, topic) {
                continue;
            }
            let (owned_topic, owned_payload) = own();
            let message = Message {
                topic: owned_topic,
                payload: owned_payload,
                qos: if self.upgrade_outgoing_qos {
                    granted
                } else {
                    qos.min(granted)
                },
                retain: false,
            };
            match session.enqueue(message) {
                Some(t) => {
                    delivered += 1;
                    ticket = ticket.max(t);
                }
                None => self.stats.dropped += 1,
            }
        }
        self.scratch = scratch;
        self.stats.delivered += delivered;
        ticket
    }
}
