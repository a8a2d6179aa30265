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

/// The most [`decode`] reserves ahead for a body that has not arrived yet.
const MAX_RESERVE: usize = 64 * 1024;

/// Decodes one packet from the front of `src`, splitting its bytes off.
/// `Ok(None)` means more bytes are needed. The packet size (fixed header +
/// remaining length) is checked against `max_packet_size` before the body is
/// buffered.
pub fn decode(src: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, Error> {
    decode_for(src, max_packet_size, Protocol::V311)
}

/// [`decode`] for a peer that connected with `protocol`.
pub fn decode_for(
    src: &mut BytesMut,
    max_packet_size: usize,
    protocol: Protocol,
) -> Result<Option<Packet>, Error> {
    let Some(&byte1) = src.first() else {
        return Ok(None);
    };
    // Fail fast on the first byte: a peer that sends garbage is dropped
    // without waiting for (or buffering) a body.
    check_type_and_flags(byte1, protocol)?;

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
        // Capped so that a 5-byte header cannot make every connection
        // allocate `max_packet_size` up front; beyond the cap the buffer
        // grows (amortized) as the bytes actually arrive.
        src.reserve((total - src.len()).min(MAX_RESERVE));
        return Ok(None);
    }

    let mut frame = src.split_to(total).freeze();
    frame.advance(header_len);
    parse(byte1, Reader(frame)).map(Some)
}

/// Checks the packet type and its fixed-header flags [MQTT-2.2.2-1].
fn check_type_and_flags(byte1: u8, protocol: Protocol) -> Result<(), Error> {
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
        // CONNECT's flags are checked once its protocol is known: they are
        // reserved in 3.1.1 [MQTT-2.2.2-2] but unused (and Mosquitto
        // ignores them) in 3.1.
        1 => return Ok(()),
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
    // MQTT 3.1 sets DUP on a retried PUBREL, SUBSCRIBE or UNSUBSCRIBE.
    let retry_31 = protocol == Protocol::V31 && expected == 0b0010 && flags == 0b1010;
    if flags != expected && !retry_31 {
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
        1 => Packet::Connect(connect(byte1 & 0x0F, r)?),
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

fn connect(header_flags: u8, mut r: Reader) -> Result<Connect, Error> {
    let name = r.string()?;
    let level = r.u8()?;
    let protocol = match (name.as_str(), level) {
        ("MQTT", 4) => Protocol::V311,
        ("MQIsdp", 3) => Protocol::V31,
        _ => {
            // The caller answers CONNACK 0x01 to a known name at another
            // level [MQTT-3.1.2-2] and closes on any other name.
            return Err(Error::UnsupportedProtocol {
                name: name.as_str().to_owned(),
                level,
            });
        }
    };

    if header_flags != 0 && protocol == Protocol::V311 {
        return Err(Error::InvalidFlags {
            packet: "CONNECT",
            flags: header_flags,
        }); // [MQTT-2.2.2-2]
    }
    let flags = r.u8()?;
    // [MQTT-3.1.2-3]; MQTT 3.1 has no such rule (Mosquitto accepts it too).
    if flags & 0b0000_0001 != 0 && protocol == Protocol::V311 {
        return Err(Error::ConnectReservedFlag);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::MAX_REMAINING_LENGTH;

    const MAX: usize = MAX_REMAINING_LENGTH + 5;

    fn dec(bytes: &[u8]) -> Result<Option<Packet>, Error> {
        decode(&mut BytesMut::from(bytes), MAX)
    }

    /// Decodes a complete packet and checks nothing is left over.
    fn ok(bytes: &[u8]) -> Packet {
        let mut src = BytesMut::from(bytes);
        let p = decode(&mut src, MAX).unwrap().expect("complete packet");
        assert!(src.is_empty(), "bytes left over: {src:?}");
        p
    }

    fn err(bytes: &[u8]) -> Error {
        dec(bytes).expect_err("should be rejected")
    }

    /// A v3.1.1 CONNECT: "MQTT" level 4, the given flags, keepalive 60,
    /// then `payload` as is.
    fn connect_bytes(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60];
        v.extend_from_slice(payload);
        let mut out = vec![0x10, v.len() as u8];
        out.extend(v);
        out
    }

    // ---- CONNECT [MQTT-3.1] ----

    #[test]
    fn connect_minimal_v311() {
        // Client id "a", clean session.
        let p = ok(&connect_bytes(0b10, &[0, 1, b'a']));
        assert_eq!(
            p,
            Packet::Connect(Connect {
                protocol: Protocol::V311,
                clean_session: true,
                keep_alive: 60,
                client_id: ByteStr::from("a"),
                will: None,
                username: None,
                password: None,
            })
        );
    }

    #[test]
    fn connect_full_with_will_username_and_binary_password() {
        // flags: user, password, will retain, will QoS 1, will, clean.
        let flags = 0x80 | 0x40 | 0x20 | (1 << 3) | 0x04 | 0x02;
        let payload = [
            &[0, 3][..],
            b"cid",
            &[0, 3],
            b"a/b",
            &[0, 2],
            &[0xFF, 0x00],
            &[0, 4],
            b"user",
            // Not UTF-8: passwords are binary [MQTT-3.1.3.5].
            &[0, 3],
            &[0xC3, 0x28, 0x00],
        ]
        .concat();
        let Packet::Connect(c) = ok(&connect_bytes(flags, &payload)) else {
            panic!("not a CONNECT")
        };
        assert_eq!(c.client_id.as_str(), "cid");
        let will = c.will.expect("will");
        assert_eq!(will.topic.as_str(), "a/b");
        assert_eq!(&will.payload[..], &[0xFF, 0x00]);
        assert_eq!(will.qos, QoS::AtLeastOnce);
        assert!(will.retain);
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some(&[0xC3, 0x28, 0x00][..]));
    }

    #[test]
    fn connect_mqtt_3_1_mqisdp_level_3() {
        let mut v = vec![0, 6];
        v.extend_from_slice(b"MQIsdp");
        v.extend_from_slice(&[3, 0b10, 0, 10, 0, 2, b'i', b'd']);
        let mut bytes = vec![0x10, v.len() as u8];
        bytes.extend(v);
        let Packet::Connect(c) = ok(&bytes) else {
            panic!("not a CONNECT")
        };
        assert_eq!(c.protocol, Protocol::V31);
        assert_eq!(c.client_id.as_str(), "id");
        assert_eq!(c.keep_alive, 10);
    }

    #[test]
    fn connect_empty_client_id_is_left_to_the_broker() {
        // [MQTT-3.1.3-6]
        let Packet::Connect(c) = ok(&connect_bytes(0b10, &[0, 0])) else {
            panic!("not a CONNECT")
        };
        assert!(c.client_id.is_empty());
    }

    #[test]
    fn connect_unsupported_protocol_mqtt_3_1_2_2() {
        let mut bytes = connect_bytes(0b10, &[0, 1, b'a']);
        bytes[8] = 5; // level 5
        assert_eq!(
            err(&bytes),
            Error::UnsupportedProtocol {
                name: "MQTT".into(),
                level: 5
            }
        );
        // MQIsdp with level 4 is not a known combination.
        let bytes = [
            0x10, 13, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 4, 2, 0, 0, 0, 0,
        ];
        assert!(matches!(
            err(&bytes[..15]),
            Error::UnsupportedProtocol { level: 4, .. }
        ));
        // A bogus name.
        let bytes = [0x10, 6, 0, 3, b'F', b'O', b'O', 4];
        assert_eq!(
            err(&bytes),
            Error::UnsupportedProtocol {
                name: "FOO".into(),
                level: 4
            }
        );
    }

    #[test]
    fn connect_reserved_flag_mqtt_3_1_2_3() {
        assert_eq!(
            err(&connect_bytes(0b11, &[0, 1, b'a'])),
            Error::ConnectReservedFlag
        );
    }

    #[test]
    fn connect_will_qos_without_will_flag_mqtt_3_1_2_13() {
        assert_eq!(
            err(&connect_bytes(0b01010, &[0, 1, b'a'])),
            Error::InvalidWillFlags
        );
    }

    #[test]
    fn connect_will_retain_without_will_flag_mqtt_3_1_2_15() {
        assert_eq!(
            err(&connect_bytes(0x22, &[0, 1, b'a'])),
            Error::InvalidWillFlags
        );
    }

    #[test]
    fn connect_will_qos_3_mqtt_3_1_2_14() {
        assert_eq!(
            err(&connect_bytes(0b11110, &[0, 1, b'a', 0, 1, b't', 0, 0])),
            Error::InvalidQos
        );
    }

    #[test]
    fn connect_password_without_username_mqtt_3_1_2_22() {
        assert_eq!(
            err(&connect_bytes(0x42, &[0, 1, b'a', 0, 1, b'p'])),
            Error::PasswordWithoutUsername
        );
    }

    #[test]
    fn connect_will_topic_must_be_a_topic_name() {
        assert!(matches!(
            err(&connect_bytes(0b110, &[0, 1, b'a', 0, 1, b'#', 0, 0])),
            Error::InvalidTopicName(_)
        ));
        assert!(matches!(
            err(&connect_bytes(0b110, &[0, 1, b'a', 0, 0, 0, 0])),
            Error::InvalidTopicName(_)
        ));
    }

    #[test]
    fn connect_trailing_bytes() {
        assert_eq!(
            err(&connect_bytes(0b10, &[0, 1, b'a', 9, 9])),
            Error::TrailingBytes(2)
        );
    }

    #[test]
    fn connect_missing_fields_are_truncated() {
        // Username flag set but no username.
        assert_eq!(err(&connect_bytes(0x82, &[0, 1, b'a'])), Error::Truncated);
        // Client id length beyond the packet.
        assert_eq!(err(&connect_bytes(0x02, &[0, 9, b'a'])), Error::Truncated);
    }

    #[test]
    fn connect_client_id_invalid_utf8_mqtt_1_5_3_1() {
        assert_eq!(
            err(&connect_bytes(0b10, &[0, 2, 0xC3, 0x28])),
            Error::InvalidUtf8
        );
        // An encoded surrogate half (U+D800) is not well-formed [MQTT-1.5.3-1].
        assert_eq!(
            err(&connect_bytes(0b10, &[0, 3, 0xED, 0xA0, 0x80])),
            Error::InvalidUtf8
        );
        // An overlong '/' is not well-formed either.
        assert_eq!(
            err(&connect_bytes(0b10, &[0, 2, 0xC0, 0xAF])),
            Error::InvalidUtf8
        );
    }

    #[test]
    fn connect_client_id_null_mqtt_1_5_3_2() {
        assert_eq!(
            err(&connect_bytes(0b10, &[0, 2, b'a', 0])),
            Error::NullCharacter
        );
    }

    #[test]
    fn connect_flags_must_be_zero_mqtt_2_2_2_1() {
        let mut bytes = connect_bytes(0b10, &[0, 1, b'a']);
        bytes[0] = 0x11;
        assert_eq!(
            err(&bytes),
            Error::InvalidFlags {
                packet: "CONNECT",
                flags: 1
            }
        );
    }

    // ---- CONNACK [MQTT-3.2] ----

    #[test]
    fn connack() {
        assert_eq!(
            ok(&[0x20, 2, 1, 0]),
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: ConnectReturnCode::Accepted
            })
        );
        assert_eq!(
            ok(&[0x20, 2, 0, 5]),
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::NotAuthorized
            })
        );
    }

    #[test]
    fn connack_invalid() {
        assert_eq!(err(&[0x20, 2, 0, 6]), Error::InvalidConnectReturnCode(6));
        // Reserved acknowledge flags [MQTT-3.2.2.1].
        assert_eq!(err(&[0x20, 2, 2, 0]), Error::ConnAckReservedFlags(2));
        assert_eq!(err(&[0x20, 1, 0]), Error::Truncated);
        assert_eq!(err(&[0x20, 3, 0, 0, 0]), Error::TrailingBytes(1));
    }

    // ---- PUBLISH [MQTT-3.3] ----

    #[test]
    fn publish_qos0_from_the_standard() {
        // Topic "a/b", no packet id, payload "hi".
        let p = ok(&[0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']);
        assert_eq!(
            p,
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: ByteStr::from("a/b"),
                pkid: 0,
                payload: Bytes::from_static(b"hi"),
            })
        );
    }

    #[test]
    fn publish_qos1_dup_retain_empty_payload() {
        let p = ok(&[0x3B, 5, 0, 1, b'x', 0, 10]);
        assert_eq!(
            p,
            Packet::Publish(Publish {
                dup: true,
                qos: QoS::AtLeastOnce,
                retain: true,
                topic: ByteStr::from("x"),
                pkid: 10,
                payload: Bytes::new(),
            })
        );
    }

    #[test]
    fn publish_qos2() {
        let Packet::Publish(p) = ok(&[0x34, 6, 0, 1, b'x', 0x12, 0x34, 7]) else {
            panic!("not a PUBLISH")
        };
        assert_eq!(
            (p.qos, p.pkid, &p.payload[..]),
            (QoS::ExactlyOnce, 0x1234, &[7][..])
        );
    }

    #[test]
    fn publish_payload_is_a_slice_of_the_read_buffer() {
        let mut src = BytesMut::from(&[0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i'][..]);
        let start = src.as_ptr() as usize;
        let Some(Packet::Publish(p)) = decode(&mut src, MAX).unwrap() else {
            panic!("not a PUBLISH")
        };
        assert_eq!(p.payload.as_ptr() as usize, start + 7);
        assert_eq!(p.topic.as_bytes().as_ptr() as usize, start + 4);
    }

    #[test]
    fn publish_qos3_mqtt_3_3_1_4() {
        assert_eq!(err(&[0x36, 5, 0, 1, b'x', 0, 1]), Error::InvalidQos);
    }

    #[test]
    fn publish_dup_with_qos0_mqtt_3_3_1_2() {
        assert_eq!(
            err(&[0x38, 3, 0, 1, b'x']),
            Error::InvalidFlags {
                packet: "PUBLISH",
                flags: 0b1000
            }
        );
    }

    #[test]
    fn publish_wildcard_topic_mqtt_3_3_2_2() {
        assert!(matches!(
            err(&[0x30, 5, 0, 3, b'a', b'/', b'+']),
            Error::InvalidTopicName(_)
        ));
        assert!(matches!(
            err(&[0x30, 3, 0, 1, b'#']),
            Error::InvalidTopicName(_)
        ));
    }

    #[test]
    fn publish_empty_topic_mqtt_4_7_3_1() {
        assert!(matches!(err(&[0x30, 2, 0, 0]), Error::InvalidTopicName(_)));
    }

    #[test]
    fn publish_zero_pkid_mqtt_2_3_1_1() {
        assert_eq!(err(&[0x32, 5, 0, 1, b'x', 0, 0]), Error::ZeroPacketId);
    }

    #[test]
    fn publish_topic_null_char_mqtt_1_5_3_2() {
        assert_eq!(err(&[0x30, 4, 0, 2, b'a', 0]), Error::NullCharacter);
    }

    #[test]
    fn publish_missing_pkid_is_truncated() {
        assert_eq!(err(&[0x32, 4, 0, 1, b'x', 0]), Error::Truncated);
    }

    // ---- PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK ----

    #[test]
    fn acks() {
        assert_eq!(ok(&[0x40, 2, 0, 1]), Packet::PubAck(1));
        assert_eq!(ok(&[0x50, 2, 0xFF, 0xFF]), Packet::PubRec(0xFFFF));
        assert_eq!(ok(&[0x62, 2, 1, 0]), Packet::PubRel(256));
        assert_eq!(ok(&[0x70, 2, 0, 7]), Packet::PubComp(7));
        assert_eq!(ok(&[0xB0, 2, 0, 9]), Packet::UnsubAck(9));
    }

    #[test]
    fn acks_invalid() {
        for t in [0x40, 0x50, 0x62, 0x70, 0xB0] {
            assert_eq!(err(&[t, 1, 0]), Error::Truncated);
            assert_eq!(err(&[t, 3, 0, 1, 0]), Error::TrailingBytes(1));
            assert_eq!(err(&[t, 2, 0, 0]), Error::ZeroPacketId); // [MQTT-2.3.1-1]
        }
    }

    #[test]
    fn pubrel_flags_mqtt_3_6_1_1() {
        assert_eq!(
            err(&[0x60, 2, 0, 1]),
            Error::InvalidFlags {
                packet: "PUBREL",
                flags: 0
            }
        );
    }

    #[test]
    fn ack_flags_mqtt_2_2_2_1() {
        assert_eq!(
            err(&[0x41, 2, 0, 1]),
            Error::InvalidFlags {
                packet: "PUBACK",
                flags: 1
            }
        );
    }

    // ---- SUBSCRIBE [MQTT-3.8] ----

    #[test]
    fn subscribe_from_the_standard() {
        // Figure 3.22 (payload): "a/b" QoS 1, "c/d" QoS 2; packet id 10.
        let p = ok(&[
            0x82, 14, 0, 10, 0, 3, b'a', b'/', b'b', 1, 0, 3, b'c', b'/', b'd', 2,
        ]);
        assert_eq!(
            p,
            Packet::Subscribe(Subscribe {
                pkid: 10,
                filters: vec![
                    (ByteStr::from("a/b"), QoS::AtLeastOnce),
                    (ByteStr::from("c/d"), QoS::ExactlyOnce)
                ],
            })
        );
    }

    #[test]
    fn subscribe_wildcards() {
        for f in ["#", "+", "a/#", "+/+/#", "/+", "a//b", "$SYS/#", "+/a/+"] {
            let mut bytes = vec![0x82, (f.len() + 5) as u8, 0, 1, 0, f.len() as u8];
            bytes.extend_from_slice(f.as_bytes());
            bytes.push(0);
            assert!(matches!(ok(&bytes), Packet::Subscribe(_)), "{f}");
        }
    }

    #[test]
    fn subscribe_flags_mqtt_3_8_1_1() {
        assert_eq!(
            err(&[0x80, 6, 0, 1, 0, 1, b'a', 0]),
            Error::InvalidFlags {
                packet: "SUBSCRIBE",
                flags: 0
            }
        );
    }

    #[test]
    fn subscribe_empty_payload_mqtt_3_8_3_3() {
        assert_eq!(err(&[0x82, 2, 0, 1]), Error::EmptyPayload("SUBSCRIBE"));
    }

    #[test]
    fn subscribe_reserved_qos_bits_mqtt_3_8_3_4() {
        assert_eq!(
            err(&[0x82, 6, 0, 1, 0, 1, b'a', 0x04]),
            Error::InvalidRequestedQos(4)
        );
        assert_eq!(
            err(&[0x82, 6, 0, 1, 0, 1, b'a', 0x81]),
            Error::InvalidRequestedQos(0x81)
        );
        assert_eq!(err(&[0x82, 6, 0, 1, 0, 1, b'a', 3]), Error::InvalidQos);
    }

    #[test]
    fn subscribe_zero_pkid_mqtt_2_3_1_1() {
        assert_eq!(err(&[0x82, 6, 0, 0, 0, 1, b'a', 0]), Error::ZeroPacketId);
    }

    #[test]
    fn subscribe_missing_qos_is_truncated() {
        assert_eq!(err(&[0x82, 5, 0, 1, 0, 1, b'a']), Error::Truncated);
    }

    #[test]
    fn subscribe_invalid_filters_mqtt_4_7_1_2_and_4_7_1_3() {
        for f in ["", "a#", "#/a", "a/#/b", "a+", "+a/b", "a/b+", "##", "++"] {
            let mut bytes = vec![0x82, (f.len() + 5) as u8, 0, 1, 0, f.len() as u8];
            bytes.extend_from_slice(f.as_bytes());
            bytes.push(0);
            assert!(matches!(err(&bytes), Error::InvalidTopicFilter(_)), "{f:?}");
        }
    }

    // ---- SUBACK [MQTT-3.9] ----

    #[test]
    fn suback() {
        assert_eq!(
            ok(&[0x90, 6, 0, 10, 0, 1, 2, 0x80]),
            Packet::SubAck(SubAck {
                pkid: 10,
                codes: vec![
                    SubackCode::Success(QoS::AtMostOnce),
                    SubackCode::Success(QoS::AtLeastOnce),
                    SubackCode::Success(QoS::ExactlyOnce),
                    SubackCode::Failure
                ]
            })
        );
    }

    #[test]
    fn suback_invalid_code_mqtt_3_9_3_2() {
        assert_eq!(err(&[0x90, 3, 0, 1, 3]), Error::InvalidSubackReturnCode(3));
        assert_eq!(
            err(&[0x90, 3, 0, 1, 0x81]),
            Error::InvalidSubackReturnCode(0x81)
        );
        assert_eq!(err(&[0x90, 2, 0, 1]), Error::Truncated);
    }

    // ---- UNSUBSCRIBE [MQTT-3.10] ----

    #[test]
    fn unsubscribe_from_the_standard() {
        assert_eq!(
            ok(&[0xA2, 12, 0, 10, 0, 3, b'a', b'/', b'b', 0, 3, b'c', b'/', b'd']),
            Packet::Unsubscribe(Unsubscribe {
                pkid: 10,
                filters: vec![ByteStr::from("a/b"), ByteStr::from("c/d")]
            })
        );
    }

    #[test]
    fn unsubscribe_invalid() {
        // [MQTT-3.10.1-1]
        assert_eq!(
            err(&[0xA0, 5, 0, 1, 0, 1, b'a']),
            Error::InvalidFlags {
                packet: "UNSUBSCRIBE",
                flags: 0
            }
        );
        // [MQTT-3.10.3-2]
        assert_eq!(err(&[0xA2, 2, 0, 1]), Error::EmptyPayload("UNSUBSCRIBE"));
        assert_eq!(err(&[0xA2, 5, 0, 0, 0, 1, b'a']), Error::ZeroPacketId);
        assert!(matches!(
            err(&[0xA2, 6, 0, 1, 0, 2, b'a', b'#']),
            Error::InvalidTopicFilter(_)
        ));
    }

    // ---- PINGREQ, PINGRESP, DISCONNECT ----

    #[test]
    fn empty_packets() {
        assert_eq!(ok(&[0xC0, 0]), Packet::PingReq);
        assert_eq!(ok(&[0xD0, 0]), Packet::PingResp);
        assert_eq!(ok(&[0xE0, 0]), Packet::Disconnect);
        assert_eq!(err(&[0xC0, 1, 0]), Error::TrailingBytes(1));
        assert_eq!(err(&[0xE0, 2, 0, 0]), Error::TrailingBytes(2));
        assert_eq!(
            err(&[0xE1, 0]),
            Error::InvalidFlags {
                packet: "DISCONNECT",
                flags: 1
            }
        );
    }

    // ---- Fixed header [MQTT-2.2] ----

    #[test]
    fn reserved_packet_types() {
        assert_eq!(err(&[0x00, 0]), Error::ReservedPacketType(0));
        assert_eq!(err(&[0xF0, 0]), Error::ReservedPacketType(15));
    }

    #[test]
    fn remaining_length_of_five_bytes_is_malformed() {
        assert_eq!(
            err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Error::MalformedRemainingLength
        );
        // Detected even before the 5th byte arrives.
        assert_eq!(
            err(&[0x30, 0x80, 0x80, 0x80, 0x80]),
            Error::MalformedRemainingLength
        );
    }

    #[test]
    fn remaining_length_non_minimal_encoding_is_accepted() {
        assert_eq!(ok(&[0xC0, 0x80, 0x00]), Packet::PingReq);
        assert_eq!(ok(&[0x40, 0x82, 0x80, 0x00, 0, 1]), Packet::PubAck(1));
    }

    #[test]
    fn remaining_length_maximum() {
        // 0xFF 0xFF 0xFF 0x7F = 268,435,455: needs more bytes, not an error.
        let mut src = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
        assert_eq!(decode(&mut src, MAX), Ok(None));
    }

    // ---- Framing ----

    #[test]
    fn every_prefix_is_incomplete_and_untouched() {
        let full = connect_bytes(0xC2, &[0, 1, b'a', 0, 1, b'u', 0, 1, b'p']);
        for n in 0..full.len() {
            let mut src = BytesMut::from(&full[..n]);
            assert_eq!(decode(&mut src, MAX), Ok(None), "prefix {n}");
            assert_eq!(&src[..], &full[..n]);
        }
        // A long remaining length, fed byte by byte.
        let mut publish = vec![0x30, 0x83, 0x01, 0, 1, b't'];
        publish.extend(std::iter::repeat_n(7, 128));
        for n in 0..publish.len() {
            let mut src = BytesMut::from(&publish[..n]);
            assert_eq!(decode(&mut src, MAX), Ok(None), "prefix {n}");
            assert_eq!(&src[..], &publish[..n]);
        }
        assert!(matches!(ok(&publish), Packet::Publish(_)));
    }

    #[test]
    fn back_to_back_packets_decode_in_order() {
        let mut src = BytesMut::from(&[0x40, 2, 0, 1, 0xC0, 0, 0x30, 3, 0, 1, b'x', 0xE0][..]);
        assert_eq!(decode(&mut src, MAX), Ok(Some(Packet::PubAck(1))));
        assert_eq!(decode(&mut src, MAX), Ok(Some(Packet::PingReq)));
        assert!(matches!(
            decode(&mut src, MAX),
            Ok(Some(Packet::Publish(_)))
        ));
        assert_eq!(decode(&mut src, MAX), Ok(None));
        src.extend_from_slice(&[0]);
        assert_eq!(decode(&mut src, MAX), Ok(Some(Packet::Disconnect)));
        assert!(src.is_empty());
    }

    #[test]
    fn too_large_is_reported_from_the_header_alone() {
        // Header says 200 bytes remaining; limit is 100; no body has arrived.
        let mut src = BytesMut::from(&[0x30, 0xC8, 0x01][..]);
        assert_eq!(
            decode(&mut src, 100),
            Err(Error::PacketTooLarge {
                size: 203,
                limit: 100
            })
        );
        // Exactly at the limit is fine.
        let mut src = BytesMut::from(&[0x30, 0x61][..]);
        assert_eq!(decode(&mut src, 99), Ok(None));
        assert!(matches!(
            decode(&mut src, 98),
            Err(Error::PacketTooLarge { .. })
        ));
    }

    #[test]
    fn incomplete_body_reserves_room() {
        let mut src = BytesMut::with_capacity(4);
        src.extend_from_slice(&[0x30, 0xE8, 0x07]); // 1000 remaining
        assert_eq!(decode(&mut src, MAX), Ok(None));
        assert!(src.capacity() >= 1003);
    }

    #[test]
    fn incomplete_body_reserve_is_capped() {
        // A header announcing the maximum must not allocate 256 MiB.
        let mut src = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
        assert_eq!(decode(&mut src, MAX), Ok(None));
        assert!(src.capacity() <= 2 * MAX_RESERVE);
    }
}
