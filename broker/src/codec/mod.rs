//! The MQTT 3.1.1 / 3.1 wire codec: packet types and a strict tokio-util
//! `Decoder`/`Encoder`.
//!
//! Strict means every well-formedness rule of the standard is enforced on
//! decode (fixed-header flags, remaining-length encoding, UTF-8 strings
//! without U+0000, no wildcards in topic names, no trailing bytes, ...): a
//! violation is an [`Error`] and the connection that sent it is closed
//! ([MQTT-4.8.0-1]). Payloads and topic names are `Bytes` slices of the read
//! buffer, so decoding copies nothing.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

pub use decode::{decode, decode_for};
pub use encode::{encode, encode_publish};

/// The largest remaining length the 4-byte variable-length encoding can
/// express (268,435,455 bytes) [MQTT-2.2.3].
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// The largest CONNECT the standard allows: fixed header (5), protocol
/// name, level, flags and keepalive (12), then five length-prefixed fields
/// of at most 65,535 bytes each (client id, will topic, will payload, user
/// name, password). A larger first packet cannot be a CONNECT, so nothing
/// more is buffered for a client that has not authenticated.
pub const MAX_CONNECT_SIZE: usize = 5 + 12 + 5 * (2 + 65_535);

/// A codec error: anything that makes the byte stream unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("packet of {size} bytes exceeds the limit of {limit} bytes")]
    PacketTooLarge { size: usize, limit: usize },
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    #[error("invalid fixed-header flags {flags:#06b} for {packet}")]
    InvalidFlags { packet: &'static str, flags: u8 },
    #[error("invalid QoS 3")]
    InvalidQos,
    #[error("packet identifier 0")]
    ZeroPacketId,
    #[error("packet shorter than its contents")]
    Truncated,
    #[error("{0} trailing bytes after the packet's contents")]
    TrailingBytes(usize),
    #[error("string is not well-formed UTF-8")]
    InvalidUtf8,
    #[error("string contains U+0000")]
    NullCharacter,
    #[error("string contains a control character or a Unicode non-character")]
    ControlCharacter,
    #[error("string longer than 65535 bytes")]
    StringTooLong,
    #[error("invalid topic name: {0}")]
    InvalidTopicName(&'static str),
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(&'static str),
    #[error("CONNECT reserved flag is set")]
    ConnectReservedFlag,
    #[error("inconsistent will flags")]
    InvalidWillFlags,
    #[error("password without user name")]
    PasswordWithoutUsername,
    #[error("{0} without any topic filter")]
    EmptyPayload(&'static str),
    #[error("reserved bits set in requested QoS byte {0:#04x}")]
    InvalidRequestedQos(u8),
    /// Bits 7-1 of the CONNACK acknowledge flags are reserved [MQTT-3.2.2.1].
    #[error("reserved CONNACK acknowledge flags set: {0:#04x}")]
    ConnAckReservedFlags(u8),
    #[error("invalid CONNACK return code {0}")]
    InvalidConnectReturnCode(u8),
    #[error("invalid SUBACK return code {0:#04x}")]
    InvalidSubackReturnCode(u8),
    /// An unknown protocol name or level. For a known name ("MQTT",
    /// "MQIsdp") at a level it does not speak the broker answers CONNACK
    /// 0x01 and closes [MQTT-3.1.2-2]; any other name is closed without
    /// CONNACK [MQTT-3.1.2-1].
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol { name: String, level: u8 },
    #[error("I/O error: {0}")]
    Io(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a 2-bit value; `None` for 3.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A string known to be well-formed UTF-8 without U+0000, kept as a `Bytes`
/// slice of the buffer it was read from so that it is never copied.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ByteStr(Bytes);

impl ByteStr {
    /// Validates `bytes` as an MQTT UTF-8 string [MQTT-1.5.3-1], [MQTT-1.5.3-2].
    ///
    /// Like Mosquitto, control characters (U+0001..U+001F, U+007F..U+009F)
    /// and Unicode non-characters are refused too: the standard says they
    /// SHOULD NOT be sent and a receiver MAY close the connection
    /// [MQTT-1.5.3], and clients that rely on Mosquitto never send them.
    pub fn from_bytes(bytes: Bytes) -> Result<ByteStr, Error> {
        let s = std::str::from_utf8(&bytes).map_err(|_| Error::InvalidUtf8)?;
        if bytes.is_ascii() {
            // Fast path: topics are mostly ASCII.
            if let Some(&b) = bytes.iter().find(|&&b| b < 0x20 || b == 0x7f) {
                return Err(if b == 0 {
                    Error::NullCharacter
                } else {
                    Error::ControlCharacter
                });
            }
        } else {
            for c in s.chars() {
                let u = c as u32;
                if u == 0 {
                    return Err(Error::NullCharacter);
                }
                if u < 0x20
                    || (0x7f..=0x9f).contains(&u)
                    || (0xfdd0..=0xfdef).contains(&u)
                    || (u & 0xfffe) == 0xfffe
                {
                    return Err(Error::ControlCharacter);
                }
            }
        }
        Ok(ByteStr(bytes))
    }

    /// Copies `topic` and `payload` into one new allocation, so that a
    /// message kept in queues pins only its own bytes, not the (possibly
    /// much larger) read buffer it was decoded from.
    pub fn own_with(topic: &ByteStr, payload: &[u8]) -> (ByteStr, Bytes) {
        let mut buf = BytesMut::with_capacity(topic.len() + payload.len());
        buf.extend_from_slice(topic.as_bytes());
        buf.extend_from_slice(payload);
        let mut payload = buf.freeze();
        let topic = payload.split_to(topic.len());
        // A copy of a valid string is valid.
        (ByteStr(topic), payload)
    }

    /// A `ByteStr` from a static string (tests, `$SYS` topics).
    pub fn from_static(s: &'static str) -> ByteStr {
        ByteStr(Bytes::from_static(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks (or is given) valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> Self {
        ByteStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> Self {
        ByteStr(Bytes::from(s.into_bytes()))
    }
}

impl std::ops::Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for ByteStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Protocol name and level from CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `MQIsdp`, level 3.
    V31,
    /// `MQTT`, level 4.
    V311,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: ByteStr,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: Protocol,
    pub clean_session: bool,
    pub keep_alive: u16,
    /// May be empty; the broker decides what that means [MQTT-3.1.3-6].
    pub client_id: ByteStr,
    pub will: Option<LastWill>,
    pub username: Option<ByteStr>,
    /// Binary data, not a string [MQTT-3.1.3.5].
    pub password: Option<Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectReturnCode {
    Accepted = 0,
    UnacceptableProtocolVersion = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    BadUserNameOrPassword = 4,
    NotAuthorized = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: ConnectReturnCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: ByteStr,
    /// 0 for QoS 0 (not on the wire), non-zero otherwise [MQTT-2.3.1-1].
    pub pkid: u16,
    pub payload: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pkid: u16,
    /// At least one; filters are validated [MQTT-3.8.3-3], [MQTT-4.7.1-*].
    pub filters: Vec<(ByteStr, QoS)>,
}

/// A SUBACK return code: granted QoS or failure (0x80).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubackCode {
    Success(QoS),
    Failure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub pkid: u16,
    pub codes: Vec<SubackCode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub pkid: u16,
    /// At least one [MQTT-3.10.3-2].
    pub filters: Vec<ByteStr>,
}

/// Every MQTT 3.1.1 control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(u16),
    PingReq,
    PingResp,
    Disconnect,
}

impl Packet {
    /// The packet type's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect => "DISCONNECT",
        }
    }
}

/// The tokio-util codec. `max_packet_size` bounds the whole packet and is
/// checked from the fixed header, before the body is buffered.
#[derive(Debug, Clone)]
pub struct Codec {
    pub max_packet_size: usize,
    /// The protocol the peer connected with: MQTT 3.1 lets PUBREL,
    /// SUBSCRIBE and UNSUBSCRIBE carry the DUP flag on a retry, which 3.1.1
    /// forbids [MQTT-3.6.1-1]. 3.1.1 until a 3.1 CONNECT is accepted.
    pub protocol: Protocol,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            max_packet_size: MAX_REMAINING_LENGTH + 5,
            protocol: Protocol::V311,
        }
    }
}

impl tokio_util::codec::Decoder for Codec {
    type Item = Packet;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, Error> {
        decode_for(src, self.max_packet_size, self.protocol)
    }
}

impl tokio_util::codec::Encoder<&Packet> for Codec {
    type Error = Error;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> Result<(), Error> {
        encode(item, dst)
    }
}
