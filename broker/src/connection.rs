//! One client connection: the CONNECT handshake, then a single `select!`
//! loop over the socket, the session's queue, the keepalive deadline and
//! shutdown; the will and session clean-up happen once, after the loop.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::codec::{
    self, ByteStr, Codec, ConnAck, Connect, ConnectReturnCode, LastWill, Packet, Protocol, Publish,
    QoS, SubAck, SubackCode,
};
use crate::log;
use crate::server::Shared;
use crate::session::Session;
use crate::sys;
use crate::topic;

/// Outbound bytes buffered before the queue stops being drained into the
/// write buffer (the rest waits in the bounded session queue).
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Outbound bytes beyond which the client's packets are not read until it
/// reads its acknowledgements: a client that never reads cannot make the
/// broker buffer without bound.
const READ_STOP: usize = 256 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// DISCONNECT received: the will is discarded [MQTT-3.14.4-3].
    Disconnect,
    /// Socket closed, protocol error, keepalive, takeover: the will is
    /// published [MQTT-3.1.2-8].
    Abnormal(Lost),
    /// A protocol violation [MQTT-4.8.0-1], naming the rule broken: like
    /// `Abnormal`, but what the broker already owes the client (CONNACK,
    /// SUBACK...) is sent first, as Mosquitto does.
    Violation(String),
    /// Broker shutting down.
    Shutdown,
}

/// How a connection was lost without DISCONNECT; each has Mosquitto's
/// log line.
#[derive(Debug)]
enum Lost {
    /// The client closed the socket.
    Closed,
    /// Nothing read for 1.5 x keepalive [MQTT-3.1.2-24].
    KeepAlive,
    /// A new connection with the same client id [MQTT-3.1.4-2]; the new
    /// connection logs it.
    TakenOver,
    /// A read or write failed.
    Socket(String),
    /// A protocol violation, naming the rule broken.
    Protocol(String),
    /// The store stopped (the broker is failing).
    Store,
}

impl Lost {
    /// Mosquitto's words for this end of client `id`'s connection; `None`
    /// for a takeover, logged when it happens.
    fn message(&self, id: &str) -> Option<String> {
        Some(match self {
            Lost::Closed => format!("Client {id} closed its connection."),
            Lost::KeepAlive => format!("Client {id} has exceeded timeout, disconnecting."),
            Lost::TakenOver => return None,
            Lost::Socket(e) => format!("Socket error on client {id}, disconnecting ({e})."),
            Lost::Protocol(what) => {
                format!("Client {id} disconnected due to protocol error: {what}.")
            }
            Lost::Store => format!("Client {id} disconnected: the store has stopped."),
        })
    }
}

/// Serves one accepted socket until it closes.
/// What a connection inherits from the listener that accepted it.
#[derive(Debug, Clone, Default)]
pub struct ListenerContext {
    /// The listener's `mount_point`, if any.
    pub mount: Option<Arc<str>>,
    /// Which access rules apply: the listener's own under
    /// `per_listener_settings true`, else the one global set (0).
    pub realm: usize,
}

pub async fn handle(
    mut stream: TcpStream,
    shared: Arc<Shared>,
    listener: ListenerContext,
    shutdown: CancellationToken,
) {
    // An IPv4 client of a dual-stack listener shows as 127.0.0.1, not as
    // ::ffff:127.0.0.1.
    let peer = stream
        .peer_addr()
        .map(|a| std::net::SocketAddr::new(a.ip().to_canonical(), a.port()).to_string())
        .unwrap_or_else(|_| "unknown".into());
    if shared.config.connection_messages {
        let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
        info!("New connection from {peer} on port {port}.");
    }
    let mut codec = Codec {
        max_packet_size: if shared.config.max_packet_size == 0 {
            codec::MAX_REMAINING_LENGTH + 5
        } else {
            shared.config.max_packet_size
        },
        protocol: Protocol::V311,
    };
    let mut rbuf = BytesMut::with_capacity(256);
    let mut read = 0;
    // Until CONNECT is accepted, no more than a CONNECT can be.
    let configured = codec.max_packet_size;
    codec.max_packet_size = configured.min(codec::MAX_CONNECT_SIZE);

    let first = tokio::select! {
        // Boxed here and below: these awaits happen once per connection,
        // and inline they would size every connection's task for them
        // (measured: 3.3 KiB per idle connection before, see RESULTS.md).
        r = Box::pin(tokio::time::timeout(
            shared.config.connect_timeout,
            read_packet(&mut stream, &mut rbuf, &mut codec, &mut read),
        )) => r,
        _ = shutdown.cancelled() => return,
    };
    codec.max_packet_size = configured;
    let connect = match first {
        Ok(Ok(Some(Packet::Connect(c)))) => {
            codec.protocol = c.protocol;
            c
        }
        Ok(Err(codec::Error::UnsupportedProtocol { name, level }))
            if name == "MQTT" || name == "MQIsdp" =>
        {
            // [MQTT-3.1.2-2]: a level we do not speak: CONNACK 0x01, close.
            debug!(%peer, "unsupported protocol {name:?} level {level}");
            refuse(&mut stream, ConnectReturnCode::UnacceptableProtocolVersion).await;
            return;
        }
        Ok(Ok(Some(p))) => {
            // [MQTT-3.1.0-1]: the first packet must be CONNECT.
            debug!(%peer, "first packet is {}, not CONNECT", p.name());
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            debug!(%peer, "bad CONNECT: {e}");
            return;
        }
        Err(_) => {
            debug!(%peer, "no CONNECT within {:?}", shared.config.connect_timeout);
            return;
        }
    };
    sys::add(&shared.counters.bytes_received, read);
    serve(Box::new(Handoff {
        stream,
        rbuf,
        codec,
        connect,
        peer,
        shared,
        listener,
        shutdown,
    }))
    .await;
}

/// The connection's parts, handed over from the CONNECT phase.
struct Handoff {
    stream: TcpStream,
    rbuf: BytesMut,
    codec: Codec,
    connect: Connect,
    peer: String,
    shared: Arc<Shared>,
    listener: ListenerContext,
    shutdown: CancellationToken,
}

/// Serves an accepted CONNECT. The parts come boxed: an async fn keeps its
/// parameters for its whole life besides the locals they move into, and
/// idle connections are the broker's memory floor (this took 136 bytes off each
/// connection's task).
async fn serve(handoff: Box<Handoff>) {
    let Handoff {
        mut stream,
        mut rbuf,
        mut codec,
        mut connect,
        peer,
        shared,
        listener,
        shutdown,
    } = *handoff;
    let config = &shared.config;
    let ListenerContext { mount, realm } = listener;

    if connect.client_id.is_empty() {
        // [MQTT-3.1.3-8]: an empty id needs clean session; MQTT 3.1
        // requires an id.
        if !connect.clean_session
            || connect.protocol == Protocol::V31
            || !shared.allow_zero_length_clientid(realm)
        {
            refuse(&mut stream, ConnectReturnCode::IdentifierRejected).await;
            return;
        }
        // [MQTT-3.1.3-6]: the server assigns a unique id.
        connect.client_id = ByteStr::from(format!(
            "auto-{:016X}",
            shared.next_connection.fetch_add(1, Ordering::Relaxed) ^ shared.id_salt
        ));
    }
    if let Some(prefix) = &config.clientid_prefixes {
        // Mosquitto 2.0 answers "not authorised" (0x05), not "identifier
        // rejected", and checks the id after assigning one: an assigned
        // `auto-...` id is refused too unless the prefix admits it.
        if !connect.client_id.starts_with(prefix.as_str()) {
            debug!(client = %connect.client_id, %peer, "client id lacks prefix {prefix:?}");
            if config.connection_messages {
                info!("Client {} disconnected, not authorised.", connect.client_id);
            }
            refuse(&mut stream, ConnectReturnCode::NotAuthorized).await;
            return;
        }
    }
    if let Some(max) = config.max_keepalive {
        if connect.keep_alive == 0 || connect.keep_alive > max {
            debug!(%peer, "keepalive {} refused (max_keepalive {max})", connect.keep_alive);
            refuse(&mut stream, ConnectReturnCode::IdentifierRejected).await;
            return;
        }
    }
    if let Some(will) = &connect.will {
        if topic::validate_name(&will.topic).is_err() {
            debug!(%peer, "will topic {:?} refused", will.topic.as_str());
            return;
        }
    }

    let auth = shared.auth(realm);
    if let Err(refusal) =
        auth.authenticate(connect.username.as_deref(), connect.password.as_deref())
    {
        debug!(client = %connect.client_id, %peer, "not authorised: {refusal}");
        if config.connection_messages {
            info!("Client {} disconnected, not authorised.", connect.client_id);
        }
        let code = match refusal.return_code() {
            4 => ConnectReturnCode::BadUserNameOrPassword,
            _ => ConnectReturnCode::NotAuthorized,
        };
        refuse(&mut stream, code).await;
        return;
    }
    drop(auth);

    let connection_id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let kick = shutdown.child_token();
    let attached = shared.router().connect(
        &connect.client_id,
        connect.clean_session,
        connection_id,
        kick.clone(),
        config.limits,
        crate::session::Identity {
            username: connect.username.as_deref().map(Arc::from),
            realm,
            mount: mount.clone(),
        },
    );
    if let Some(old) = attached.taken_over {
        // [MQTT-3.1.4-2]: the existing client is disconnected.
        if config.connection_messages {
            info!(
                "Client {} already connected, closing old connection.",
                connect.client_id
            );
        }
        old.cancel();
    }
    let session = attached.session;
    if let (Some(m), Some(will)) = (&mount, connect.will.as_mut()) {
        will.topic = mounted(m, &will.topic);
    }
    if config.connection_messages {
        let user = match &connect.username {
            Some(u) => format!(", u'{u}'"),
            None => String::new(),
        };
        info!(
            "New client connected from {peer} as {} (p{}, c{}, k{}{user}).",
            connect.client_id,
            match connect.protocol {
                Protocol::V31 => 1,
                Protocol::V311 => 2,
            },
            u8::from(connect.clean_session),
            connect.keep_alive
        );
    }

    let mut wbuf = BytesMut::with_capacity(64);
    let _ = codec.encode(
        &Packet::ConnAck(ConnAck {
            // A 3.1.1 field [MQTT-3.2.2-2]; in MQTT 3.1 the byte is
            // reserved and must be 0 (the session is resumed all the same).
            session_present: attached.session_present && connect.protocol == Protocol::V311,
            code: ConnectReturnCode::Accepted,
        }),
        &mut wbuf,
    );
    session.lock().resend(&mut wbuf);

    let mut conn = Connection {
        session: &session,
        shared: &shared,
        will: connect.will.take(),
        peer: &peer,
        client_id: &connect.client_id,
        username: connect.username.clone(),
        mount,
        connection_id,
        deferred: VecDeque::new(),
        synced: shared.store.as_ref().map(|s| s.synced()),
        auth_generation: shared.auth_generation.load(Ordering::Acquire),
        auth: shared.auth(realm),
        realm,
        // CONNECT in, CONNACK out.
        traffic: sys::Pending {
            messages_received: 1,
            messages_sent: 1,
            ..sys::Pending::default()
        },
    };
    sys::add(&shared.counters.connections, 1);
    let end = conn
        .run(
            &mut stream,
            &mut rbuf,
            &mut wbuf,
            &mut codec,
            connect.keep_alive,
            &kick,
            &shutdown,
        )
        .await;

    if let End::Disconnect | End::Violation(_) = end {
        // Responses (even the CONNACK) may still be buffered when a client
        // pipelines DISCONNECT, or a bad packet, behind other packets: send
        // them. Acknowledgements still waiting for the store are not sent.
        if let Ok(Ok(())) = Box::pin(tokio::time::timeout(
            Duration::from_secs(1),
            stream.write_all(&wbuf),
        ))
        .await
        {
            conn.traffic.bytes_sent += wbuf.len() as u64;
        }
    }
    conn.traffic.flush(&shared.counters);
    let end = match end {
        End::Violation(what) => End::Abnormal(Lost::Protocol(what)),
        end => end,
    };
    if let End::Abnormal(_) = &end {
        if let Some(will) = conn.will.take() {
            conn.publish_will(will);
        }
    }
    shared
        .router()
        .disconnect(&connect.client_id, connection_id);
    let message = match &end {
        End::Disconnect => Some(format!("Client {} disconnected.", connect.client_id)),
        End::Abnormal(lost) => lost.message(&connect.client_id),
        End::Shutdown | End::Violation(_) => None,
    };
    if let Some(message) = message {
        // Without connection messages the reason still reaches debug.
        if config.connection_messages {
            info!("{message}");
        } else {
            debug!("{message}");
        }
    }
}

struct Connection<'a> {
    session: &'a Arc<Session>,
    shared: &'a Shared,
    will: Option<LastWill>,
    peer: &'a str,
    client_id: &'a ByteStr,
    username: Option<ByteStr>,
    /// The listener's `mount_point`: prefixed to every topic and filter
    /// this client sends, stripped from what it receives (as Mosquitto).
    mount: Option<Arc<str>>,
    connection_id: u64,
    /// PUBACK/PUBREC waiting until the change they acknowledge is on disk,
    /// with the store ticket each waits for; in order, and every later one
    /// waits behind them [MQTT-4.6.0-2], [MQTT-4.6.0-3].
    deferred: VecDeque<(u64, Packet)>,
    /// The highest durable store ticket, when persistence is on.
    synced: Option<watch::Receiver<u64>>,
    /// This connection's handle on the access rules, refreshed when a
    /// reload bumps `Shared::auth_generation` (no shared lock per publish).
    auth: Arc<crate::auth::Auth>,
    auth_generation: u64,
    /// The realm of access rules this connection's listener uses.
    realm: usize,
    /// Traffic for `$SYS`, added to the shared counters once per loop turn.
    traffic: sys::Pending,
}

impl Connection<'_> {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        stream: &mut TcpStream,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
        codec: &mut Codec,
        keep_alive: u16,
        kick: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> End {
        // [MQTT-3.1.2-24]: one and a half keepalive periods; 0 = off.
        let grace = Duration::from_millis(u64::from(keep_alive) * 1500);
        let mut last_read = Instant::now();
        let keepalive = tokio::time::sleep(grace);
        tokio::pin!(keepalive);
        let limits = self.session.limits;

        // Packets that arrived together with CONNECT.
        if let Err(end) = self.process(rbuf, wbuf, codec) {
            return end;
        }
        let stream = &*stream;
        loop {
            // Move queued messages to the socket while it takes them: one
            // write call per batch, no waiting for the next turn of the
            // loop. Bounded, so that one busy subscriber cannot hold the
            // worker thread.
            let mut rounds = 0;
            loop {
                let filled = if wbuf.len() < WRITE_HIGH_WATER {
                    self.session
                        .lock()
                        .fill(self.connection_id, &limits, wbuf, WRITE_HIGH_WATER)
                } else {
                    0
                };
                self.traffic.published(filled);
                if wbuf.is_empty() {
                    break;
                }
                match write_ready(stream, wbuf) {
                    Ok(n) => self.traffic.bytes_sent += n as u64,
                    Err(end) => return end,
                }
                if !wbuf.is_empty() || filled == 0 {
                    // The socket is full (wait for it to drain), or the
                    // queue is (wait for a notification).
                    break;
                }
                rounds += 1;
                if rounds == 16 {
                    tokio::task::yield_now().await;
                    rounds = 0;
                }
            }
            self.traffic.flush(&self.shared.counters);
            // The store is behind: stop reading until it catches up, so
            // its buffer stays bounded.
            let store_full = self.shared.store.as_ref().is_some_and(|s| s.overloaded());
            let deferred = !self.deferred.is_empty();
            tokio::select! {
                biased;
                _ = kick.cancelled() => {
                    return if shutdown.is_cancelled() {
                        End::Shutdown
                    } else {
                        End::Abnormal(Lost::TakenOver)
                    };
                }
                r = stream.writable(), if !wbuf.is_empty() => {
                    if let Err(e) = r {
                        return End::Abnormal(Lost::Socket(format!("write: {e}")));
                    }
                    match write_ready(stream, wbuf) {
                        Ok(n) => self.traffic.bytes_sent += n as u64,
                        Err(end) => return end,
                    }
                }
                // Readiness first, buffer second: an idle connection holds
                // no read buffer while it waits.
                r = stream.readable(), if wbuf.len() < READ_STOP && !store_full => {
                    if let Err(e) = r {
                        return End::Abnormal(Lost::Socket(format!("read: {e}")));
                    }
                    if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                        rbuf.reserve(READ_CHUNK);
                    }
                    match stream.try_read_buf(rbuf) {
                        Ok(0) => return End::Abnormal(Lost::Closed),
                        Ok(n) => {
                            self.traffic.bytes_received += n as u64;
                            last_read = Instant::now();
                            if let Err(end) = self.process(rbuf, wbuf, codec) {
                                return end;
                            }
                            if rbuf.is_empty() {
                                // Let go of the buffer (decoded payloads keep
                                // their own slices alive).
                                *rbuf = BytesMut::new();
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        // A reset is how many clients close: Mosquitto says "closed".
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                            return End::Abnormal(Lost::Closed)
                        }
                        Err(e) => return End::Abnormal(Lost::Socket(format!("read: {e}"))),
                    }
                }
                _ = self.session.notify.notified() => {}
                r = changed(&mut self.synced), if deferred => {
                    if r.is_err() {
                        return End::Abnormal(Lost::Store);
                    }
                    self.release(wbuf);
                }
                _ = space(&self.shared.store), if store_full => {}
                _ = &mut keepalive, if keep_alive > 0 => {
                    let due = last_read + grace;
                    if Instant::now() >= due {
                        return End::Abnormal(Lost::KeepAlive);
                    }
                    keepalive.as_mut().reset(due);
                }
            }
        }
    }

    /// Decodes and handles every complete packet in `rbuf`; responses go
    /// to `wbuf`.
    fn process(
        &mut self,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
        codec: &mut Codec,
    ) -> Result<(), End> {
        loop {
            match codec.decode(rbuf) {
                Ok(Some(packet)) => self.handle(packet, wbuf)?,
                Ok(None) => return Ok(()),
                Err(e) => {
                    // [MQTT-4.8.0-1]: close the connection on a protocol
                    // violation; nobody else is affected.
                    debug!(client = %self.client_id, peer = self.peer, "protocol error: {e}");
                    return Err(End::Violation(e.to_string()));
                }
            }
        }
    }

    fn handle(&mut self, packet: Packet, wbuf: &mut BytesMut) -> Result<(), End> {
        debug!(client = %self.client_id, "received {}", packet.name());
        self.traffic.received(&packet);
        let shared = self.shared;
        match packet {
            Packet::Publish(p) => self.publish(p, wbuf)?,
            Packet::PubAck(pkid) => {
                let ack = self.session.lock().puback(pkid);
                mismatch(ack, "PUBACK", pkid)?;
            }
            Packet::PubRec(pkid) => {
                let ack = self.session.lock().pubrec(pkid);
                mismatch(ack, "PUBREC", pkid)?;
                // [MQTT-4.3.3-1]: PUBREL answers PUBREC.
                push(wbuf, &Packet::PubRel(pkid));
            }
            Packet::PubRel(pkid) => {
                self.session.lock().inbound_remove(pkid);
                // [MQTT-4.3.3-2]: PUBCOMP answers PUBREL, known id or not.
                push(wbuf, &Packet::PubComp(pkid));
            }
            Packet::PubComp(pkid) => {
                let ack = self.session.lock().pubcomp(pkid);
                mismatch(ack, "PUBCOMP", pkid)?;
            }
            Packet::Subscribe(mut s) => {
                if let Some(m) = &self.mount {
                    for (filter, _) in &mut s.filters {
                        *filter = mounted_filter(m, filter);
                    }
                }
                // The SUBACK goes into the write buffer now; retained
                // messages are queued and follow it [MQTT-3.8.4-1].
                let auth = shared.auth(self.realm);
                let user = self.username.as_deref();
                let codes = shared.router().subscribe(self.session, &s.filters, |f| {
                    let refused = topic::validate_filter(f).is_err()
                        || !auth.can_subscribe(self.client_id, user, f);
                    if refused {
                        debug!(client = %self.client_id, filter = f, "subscription refused");
                    }
                    refused
                });
                // `log_type subscribe`: "CLIENT QOS FILTER" for each granted
                // filter, as Mosquitto.
                for ((filter, _), code) in s.filters.iter().zip(&codes) {
                    if let SubackCode::Success(qos) = code {
                        info!(target: log::SUBSCRIBE, "{} {} {filter}", self.client_id, *qos as u8);
                    }
                }
                push(
                    wbuf,
                    &Packet::SubAck(SubAck {
                        pkid: s.pkid,
                        codes,
                    }),
                );
            }
            Packet::Unsubscribe(mut u) => {
                if let Some(m) = &self.mount {
                    for filter in &mut u.filters {
                        *filter = mounted_filter(m, filter);
                    }
                }
                for filter in &u.filters {
                    info!(target: log::UNSUBSCRIBE, "{} {filter}", self.client_id);
                }
                shared.router().unsubscribe(self.session, &u.filters);
                // [MQTT-3.10.4-4], [MQTT-3.10.4-5]: UNSUBACK even when
                // nothing matched.
                push(wbuf, &Packet::UnsubAck(u.pkid));
            }
            Packet::PingReq => push(wbuf, &Packet::PingResp),
            Packet::Disconnect => {
                // [MQTT-3.14.4-3]: discard the will.
                self.will = None;
                return Err(End::Disconnect);
            }
            Packet::Connect(_) => {
                // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
                return Err(End::Violation("second CONNECT".into()));
            }
            p @ (Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                return Err(End::Violation(format!("{} from a client", p.name())));
            }
        }
        Ok(())
    }

    fn publish(&mut self, mut p: Publish, wbuf: &mut BytesMut) -> Result<(), End> {
        if let Err(e) = topic::validate_name(&p.topic) {
            return Err(End::Violation(format!("invalid topic name: {e}")));
        }
        let dollar = p.topic.starts_with('$');
        if let Some(m) = &self.mount {
            p.topic = mounted(m, &p.topic);
        }
        let limit = self.shared.config.message_size_limit;
        // Clients may not publish to `$` topics; oversized messages are
        // dropped as Mosquitto does. Either way the QoS handshake completes.
        let accept = !dollar && (limit == 0 || p.payload.len() <= limit) && {
            self.refresh_auth();
            self.auth
                .can_write(self.client_id, self.username.as_deref(), &p.topic)
        };
        if p.retain && !self.shared.config.retain_available {
            // As Mosquitto 2.0 with `retain_available false`: a retained
            // PUBLISH closes the connection, unacknowledged (MQTT 3.1.1
            // has no way to say "not supported").
            return Err(End::Violation("retain not available".into()));
        }
        let retain = p.retain;
        let route = |this: &Self| -> u64 {
            if accept {
                let source = retain.then(|| this.source());
                this.shared
                    .router()
                    .publish_from(source, &p.topic, &p.payload, p.qos, retain)
            } else {
                0
            }
        };
        match p.qos {
            QoS::AtMostOnce => {
                route(self);
            }
            QoS::AtLeastOnce => {
                let ticket = route(self);
                self.ack(ticket, Packet::PubAck(p.pkid), wbuf);
            }
            QoS::ExactlyOnce => {
                // Delivered on the first receipt; a re-sent PUBLISH with an
                // id still awaiting PUBREL is not delivered again
                // [MQTT-4.3.3-2].
                let (first, stored) = self.session.lock().inbound_insert(p.pkid);
                let ticket = if first { route(self).max(stored) } else { 0 };
                self.ack(ticket, Packet::PubRec(p.pkid), wbuf);
            }
        }
        if !accept {
            debug!(client = %self.client_id, topic = %p.topic, "publish dropped");
        }
        Ok(())
    }

    /// Takes the current access rules if a reload replaced them.
    fn refresh_auth(&mut self) {
        let generation = self.shared.auth_generation.load(Ordering::Acquire);
        if generation != self.auth_generation {
            self.auth = self.shared.auth(self.realm);
            self.auth_generation = generation;
        }
    }

    /// Sends a PUBACK/PUBREC now, or once the store has made `ticket`
    /// durable; order is kept either way.
    fn ack(&mut self, ticket: u64, packet: Packet, wbuf: &mut BytesMut) {
        let wait = match (&self.shared.store, &self.synced) {
            (Some(store), Some(synced)) => {
                let t = store.ack_ticket(ticket);
                t > *synced.borrow()
            }
            _ => false,
        };
        if wait || !self.deferred.is_empty() {
            self.deferred.push_back((ticket, packet));
        } else {
            push(wbuf, &packet);
        }
    }

    /// Moves deferred acknowledgements whose changes are durable to `wbuf`.
    fn release(&mut self, wbuf: &mut BytesMut) {
        let Some(synced) = &self.synced else {
            return;
        };
        let durable = *synced.borrow();
        while let Some((ticket, _)) = self.deferred.front() {
            if *ticket > durable {
                break;
            }
            if let Some((_, packet)) = self.deferred.pop_front() {
                push(wbuf, &packet);
            }
        }
    }

    fn publish_will(&self, will: LastWill) {
        // The same rules as a PUBLISH from this client: no `$` topics, the
        // size limit, and write access (as Mosquitto checks its ACL).
        let limit = self.shared.config.message_size_limit;
        if will.topic.starts_with('$')
            || (limit != 0 && will.payload.len() > limit)
            || !self.shared.auth(self.realm).can_write(
                self.client_id,
                self.username.as_deref(),
                &will.topic,
            )
        {
            debug!(client = %self.client_id, topic = %will.topic, "will dropped");
            return;
        }
        let retain = will.retain && self.shared.config.retain_available;
        let source = retain.then(|| self.source());
        self.shared
            .router()
            .publish_from(source, &will.topic, &will.payload, will.qos, retain);
    }

    /// This client as the publisher of a retained message.
    fn source(&self) -> crate::router::Source {
        crate::router::Source {
            client_id: Arc::from(self.client_id.as_str()),
            username: self.username.as_deref().map(Arc::from),
            realm: self.realm,
        }
    }
}

/// An acknowledgement naming a message in flight at another QoS or stage
/// closes the connection (as Mosquitto) [MQTT-4.8.0-1].
fn mismatch(ack: crate::session::Ack, packet: &str, pkid: u16) -> Result<(), End> {
    match ack {
        crate::session::Ack::Mismatch => Err(End::Violation(format!(
            "{packet} {pkid} does not fit the QoS or stage of that message"
        ))),
        _ => Ok(()),
    }
}

/// `topic` under the mount point `m`.
fn mounted(m: &str, topic: &str) -> ByteStr {
    ByteStr::from(format!("{m}{topic}"))
}

/// A filter under the mount point `m`; a shared subscription keeps its
/// `$share/GROUP/` in front.
fn mounted_filter(m: &str, filter: &str) -> ByteStr {
    match crate::router::shared_filter(filter) {
        Some(Ok((group, inner))) => ByteStr::from(format!("$share/{group}/{m}{inner}")),
        _ => mounted(m, filter),
    }
}

/// Writes as much of `wbuf` as the socket takes now; an emptied buffer is
/// released so that idle connections hold none.
/// Returns the number of bytes written.
fn write_ready(stream: &TcpStream, wbuf: &mut BytesMut) -> Result<usize, End> {
    let mut written = 0;
    while !wbuf.is_empty() {
        match stream.try_write(wbuf) {
            Ok(0) => return Err(End::Abnormal(Lost::Closed)),
            Ok(n) => {
                wbuf.advance(n);
                written += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(written),
            Err(e) => return Err(End::Abnormal(Lost::Socket(format!("write: {e}")))),
        }
    }
    *wbuf = BytesMut::new();
    Ok(written)
}

/// Waits for the next durable-ticket change (pending forever without a
/// store).
async fn changed(synced: &mut Option<watch::Receiver<u64>>) -> Result<(), watch::error::RecvError> {
    match synced {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

async fn space(store: &Option<Arc<crate::store::Store>>) {
    match store {
        Some(store) => store.space().await,
        None => std::future::pending().await,
    }
}

fn push(wbuf: &mut BytesMut, packet: &Packet) {
    // Acknowledgements are fixed-size; encoding cannot fail.
    let _ = codec::encode(packet, wbuf);
}

/// Reads until one whole packet is decoded; `None` if the peer closed
/// first.
async fn read_packet(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    codec: &mut Codec,
    read: &mut u64,
) -> Result<Option<Packet>, codec::Error> {
    loop {
        if let Some(p) = codec.decode(rbuf)? {
            return Ok(Some(p));
        }
        match stream.read_buf(rbuf).await? {
            0 => return Ok(None),
            n => *read += n as u64,
        }
    }
}

/// Answers a refused CONNECT with its CONNACK return code; the caller then
/// closes the connection [MQTT-3.2.2-5]. Boxed: it happens at most once per
/// connection, and inline it would size every connection's task for it.
fn refuse(
    stream: &mut TcpStream,
    code: ConnectReturnCode,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        let connack = Packet::ConnAck(ConnAck {
            session_present: false,
            code,
        });
        let _ = write_packet(stream, &connack).await;
    })
}

async fn write_packet(stream: &mut TcpStream, packet: &Packet) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(8);
    push(&mut buf, packet);
    stream.write_all(&buf).await
}
