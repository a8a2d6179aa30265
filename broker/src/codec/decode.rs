//! Decoding: bytes -> [`Packet`], with every well-formedness check.
//!
//! The fixed header is parsed in place; once the whole packet has arrived its
//! bytes are split off and frozen, and every field is read as a `Bytes` slice
//! of that one allocation (zero-copy). All reads are bounds-checked through
//! [`Reader`], so no input can make this module panic.

use bytes::{Buf, Bytes, BytesMut};

use super::{
    ByteStr, ConnAck, Connect, ConnectReturnCode, Error, LastWill, Packet, Protocol, Publish, QoS,
    SubAck, SubackCode, Subscribe, Unsubscribe,
};

/// Decodes one packet from the front of `src`, splitting its bytes off.
/// `Ok(None)` means more bytes are needed. The packet size (fixed header +
/// remaining length) is checked against `max_packet_size` before the body is
/// buffered.
pub fn decode(src: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, Error> {
    let Some(&byte1) = src.first() else {
        return Ok(None);
    };
    // Fail fast on the first byte: a peer that sends garbage is dropped
    // without waiting for (or buffering) a body.
    check_type_and_flags(byte1)?;

    let Some((remaining, header_len)) = remaining_length(src)? else {
        return Ok(None);
    };
    let total = header_len + remaining;
    if total > max_packet_size {
        return Err(Error::PacketTooLarge {
            size: total,
            limit: max_packet_size,
        });
    }
    if src.len() < total {
        // Bounded by `max_packet_size`, checked above.
        src.reserve(total - src.len());
        return Ok(None);
    }

    let mut frame = src.split_to(total).freeze();
    frame.advance(header_len);
    parse(byte1, Reader(frame)).map(Some)
}

/// Checks the packet type and its fixed-header flags [MQTT-2.2.2-1].
fn check_type_and_flags(byte1: u8) -> Result<(), Error> {
    let flags = byte1 & 0x0F;
    let (packet, expected) = match byte1 >> 4 {
        0 | 15 => return Err(Error::ReservedPacketType(byte1 >> 4)),
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                // [MQTT-3.3.1-4]
                return Err(Error::InvalidQos);
            }
            if qos == 0 && flags & 0b1000 != 0 {
                // DUP must be 0 for QoS 0 [MQTT-3.3.1-2].
                return Err(Error::InvalidFlags {
                    packet: "PUBLISH",
                    flags,
                });
            }
            return Ok(());
        }
        1 => ("CONNECT", 0),
        2 => ("CONNACK", 0),
        4 => ("PUBACK", 0),
        5 => ("PUBREC", 0),
        6 => ("PUBREL", 0b0010), // [MQTT-3.6.1-1]
        7 => ("PUBCOMP", 0),
        8 => ("SUBSCRIBE", 0b0010), // [MQTT-3.8.1-1]
        9 => ("SUBACK", 0),
        10 => ("UNSUBSCRIBE", 0b0010), // [MQTT-3.10.1-1]
        11 => ("UNSUBACK", 0),
        12 => ("PINGREQ", 0),
        13 => ("PINGRESP", 0),
        _ => ("DISCONNECT", 0),
    };
    if flags != expected {
        return Err(Error::InvalidFlags { packet, flags });
    }
    Ok(())
}

/// Parses the remaining length after the first byte: `(value, header_len)`,
/// or `None` if it has not fully arrived. At most 4 bytes [MQTT-2.2.3];
/// non-minimal encodings (e.g. `0x80 0x00`) are accepted, as the standard
/// does not forbid them.
fn remaining_length(src: &[u8]) -> Result<Option<(usize, usize)>, Error> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&b) = src.get(1 + i) else {
            return Ok(None);
        };
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, 2 + i)));
        }
    }
    Err(Error::MalformedRemainingLength)
}

/// Bounds-checked reads from a packet body.
struct Reader(Bytes);

impl Reader {
    fn u8(&mut self) -> Result<u8, Error> {
        if self.0.is_empty() {
            return Err(Error::Truncated);
        }
        Ok(self.0.get_u8())
    }

    fn u16(&mut self) -> Result<u16, Error> {
        if self.0.len() < 2 {
            return Err(Error::Truncated);
        }
        Ok(self.0.get_u16())
    }

    /// A packet identifier, which is never 0 [MQTT-2.3.1-1].
    fn pkid(&mut self) -> Result<u16, Error> {
        match self.u16()? {
            0 => Err(Error::ZeroPacketId),
            id => Ok(id),
        }
    }

    /// Binary data with a 2-byte length prefix.
    fn binary(&mut self) -> Result<Bytes, Error> {
        let len = usize::from(self.u16()?);
        if self.0.len() < len {
            return Err(Error::Truncated);
        }
        Ok(self.0.split_to(len))
    }

    /// A UTF-8 string [MQTT-1.5.3-1], [MQTT-1.5.3-2].
    fn string(&mut self) -> Result<ByteStr, Error> {
        ByteStr::from_bytes(self.binary()?)
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Everything has been read: anything left is a protocol violation.
    fn finish(self) -> Result<(), Error> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(Error::TrailingBytes(n)),
        }
    }

    /// A body that is exactly one packet identifier.
    fn only_pkid(self) -> Result<u16, Error> {
        self.exact_len(2)?;
        let mut r = self;
        r.pkid()
    }

    fn exact_len(&self, len: usize) -> Result<(), Error> {
        match self.0.len() {
            n if n < len => Err(Error::Truncated),
            n if n > len => Err(Error::TrailingBytes(n - len)),
            _ => Ok(()),
        }
    }
}

fn parse(byte1: u8, r: Reader) -> Result<Packet, Error> {
    let packet = match byte1 >> 4 {
        1 => Packet::Connect(connect(r)?),
        2 => Packet::ConnAck(connack(r)?),
        3 => Packet::Publish(publish(byte1, r)?),
        4 => Packet::PubAck(r.only_pkid()?),
        5 => Packet::PubRec(r.only_pkid()?),
        6 => Packet::PubRel(r.only_pkid()?),
        7 => Packet::PubComp(r.only_pkid()?),
        8 => Packet::Subscribe(subscribe(r)?),
        9 => Packet::SubAck(suback(r)?),
        10 => Packet::Unsubscribe(unsubscribe(r)?),
        11 => Packet::UnsubAck(r.only_pkid()?),
        12 => {
            r.finish()?;
            Packet::PingReq
        }
        13 => {
            r.finish()?;
            Packet::PingResp
        }
        14 => {
            r.finish()?;
            Packet::Disconnect
        }
        t => return Err(Error::ReservedPacketType(t)),
    };
    Ok(packet)
}

fn connect(mut r: Reader) -> Result<Connect, Error> {
    let name = r.string()?;
    let level = r.u8()?;
    let protocol = match (name.as_str(), level) {
        ("MQTT", 4) => Protocol::V311,
        ("MQIsdp", 3) => Protocol::V31,
        _ => {
            // [MQTT-3.1.2-2]: the caller answers CONNACK 0x01.
            return Err(Error::UnsupportedProtocol {
                name: name.as_str().to_owned(),
                level,
            });
        }
    };

    let flags = r.u8()?;
    if flags & 0b0000_0001 != 0 {
        return Err(Error::ConnectReservedFlag); // [MQTT-3.1.2-3]
    }
    let clean_session = flags & 0b0000_0010 != 0;
    let will_flag = flags & 0b0000_0100 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0b0010_0000 != 0;
    let password_flag = flags & 0b0100_0000 != 0;
    let username_flag = flags & 0b1000_0000 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        // [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]
        return Err(Error::InvalidWillFlags);
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(Error::InvalidQos)?; // [MQTT-3.1.2-14]
    if password_flag && !username_flag {
        return Err(Error::PasswordWithoutUsername); // [MQTT-3.1.2-22]
    }

    let keep_alive = r.u16()?;
    let client_id = r.string()?;
    let will = if will_flag {
        let topic = r.string()?;
        validate_topic_name(&topic)?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string()?)
    } else {
        None
    };
    // Binary data, not validated as UTF-8 [MQTT-3.1.3.5].
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };
    r.finish()?;
    Ok(Connect {
        protocol,
        clean_session,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

fn connack(mut r: Reader) -> Result<ConnAck, Error> {
    r.exact_len(2)?;
    let ack_flags = r.u8()?;
    if ack_flags & 0xFE != 0 {
        // Bits 7-1 of the acknowledge flags are reserved [MQTT-3.2.2.1].
        return Err(Error::ConnAckReservedFlags(ack_flags));
    }
    let code = match r.u8()? {
        0 => ConnectReturnCode::Accepted,
        1 => ConnectReturnCode::UnacceptableProtocolVersion,
        2 => ConnectReturnCode::IdentifierRejected,
        3 => ConnectReturnCode::ServerUnavailable,
        4 => ConnectReturnCode::BadUserNameOrPassword,
        5 => ConnectReturnCode::NotAuthorized,
        c => return Err(Error::InvalidConnectReturnCode(c)),
    };
    Ok(ConnAck {
        session_present: ack_flags & 1 != 0,
        code,
    })
}

fn publish(byte1: u8, mut r: Reader) -> Result<Publish, Error> {
    let dup = byte1 & 0b1000 != 0;
    // QoS 3 was rejected by `check_type_and_flags`.
    let qos = QoS::from_u8((byte1 >> 1) & 0b11).ok_or(Error::InvalidQos)?;
    let retain = byte1 & 0b0001 != 0;
    let topic = r.string()?;
    validate_topic_name(&topic)?;
    let pkid = if qos == QoS::AtMostOnce { 0 } else { r.pkid()? };
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        pkid,
        payload: r.rest(),
    })
}

fn subscribe(mut r: Reader) -> Result<Subscribe, Error> {
    let pkid = r.pkid()?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        validate_topic_filter(&filter)?;
        let requested = r.u8()?;
        if requested & 0b1111_1100 != 0 {
            return Err(Error::InvalidRequestedQos(requested)); // [MQTT-3-8.3-4]
        }
        let qos = QoS::from_u8(requested).ok_or(Error::InvalidQos)?;
        filters.push((filter, qos));
    }
    if filters.is_empty() {
        return Err(Error::EmptyPayload("SUBSCRIBE")); // [MQTT-3.8.3-3]
    }
    Ok(Subscribe { pkid, filters })
}

fn suback(mut r: Reader) -> Result<SubAck, Error> {
    let pkid = r.pkid()?;
    if r.is_empty() {
        // A SUBACK answers at least one filter [MQTT-3.9.3-1].
        return Err(Error::Truncated);
    }
    let mut codes = Vec::with_capacity(r.0.len());
    while !r.is_empty() {
        let code = match r.u8()? {
            0 => SubackCode::Success(QoS::AtMostOnce),
            1 => SubackCode::Success(QoS::AtLeastOnce),
            2 => SubackCode::Success(QoS::ExactlyOnce),
            0x80 => SubackCode::Failure,
            c => return Err(Error::InvalidSubackReturnCode(c)), // [MQTT-3.9.3-2]
        };
        codes.push(code);
    }
    Ok(SubAck { pkid, codes })
}

fn unsubscribe(mut r: Reader) -> Result<Unsubscribe, Error> {
    let pkid = r.pkid()?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        validate_topic_filter(&filter)?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(Error::EmptyPayload("UNSUBSCRIBE")); // [MQTT-3.10.3-2]
    }
    Ok(Unsubscribe { pkid, filters })
}

/// A topic name is non-empty [MQTT-4.7.3-1] and has no wildcards
/// [MQTT-3.3.2-2]. (Kept here rather than in `topic.rs` so the codec has no
/// dependency on the routing modules.)
pub(super) fn validate_topic_name(topic: &str) -> Result<(), Error> {
    if topic.is_empty() {
        return Err(Error::InvalidTopicName("empty"));
    }
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(Error::InvalidTopicName("contains a wildcard"));
    }
    Ok(())
}

/// A topic filter is non-empty [MQTT-4.7.3-1]; `#` is alone in the last
/// level [MQTT-4.7.1-2]; `+` is alone in its level [MQTT-4.7.1-3].
pub(super) fn validate_topic_filter(filter: &str) -> Result<(), Error> {
    if filter.is_empty() {
        return Err(Error::InvalidTopicFilter("empty"));
    }
    if !filter.bytes().any(|b| b == b'+' || b == b'#') {
        return Ok(());
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') {
            if level != "#" {
                return Err(Error::InvalidTopicFilter("'#' must be alone in its level"));
            }
            if levels.peek().is_some() {
                return Err(Error::InvalidTopicFilter("'#' must be the last level"));
            }
        }
        if level.contains('+') && level != "+" {
            return Err(Error::InvalidTopicFilter("'+' must be alone in its level"));
        }
    }
    Ok(())
}
