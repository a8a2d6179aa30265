//! Encoding: [`Packet`] -> bytes.
//!
//! Every packet is sized first (which is where the only errors are found:
//! a string longer than 65535 bytes or a remaining length beyond the 4-byte
//! encoding), then `dst` is reserved once and written. On error nothing is
//! written. Encoding does not re-check the semantic rules the decoder
//! enforces (wildcards in topic names, zero packet ids, ...): it refuses only
//! what cannot be framed at all, so that tests can still build deliberately
//! invalid packets.

use bytes::{BufMut, BytesMut};

use super::{Connect, Error, Packet, Protocol, QoS, SubackCode, MAX_REMAINING_LENGTH};

/// Appends the encoding of `packet` to `dst`. Fails (writing nothing) when a
/// string is longer than 65535 bytes or the packet exceeds the maximum
/// remaining length.
pub fn encode(packet: &Packet, dst: &mut BytesMut) -> Result<(), Error> {
    match packet {
        Packet::Connect(c) => connect(c, dst),
        Packet::ConnAck(c) => {
            header(dst, 0x20, 2)?;
            dst.put_u8(u8::from(c.session_present));
            dst.put_u8(c.code as u8);
            Ok(())
        }
        Packet::Publish(p) => encode_publish(
            p.dup,
            p.qos,
            p.retain,
            p.topic.as_str(),
            p.pkid,
            &p.payload,
            dst,
        ),
        Packet::PubAck(id) => ack(dst, 0x40, *id),
        Packet::PubRec(id) => ack(dst, 0x50, *id),
        Packet::PubRel(id) => ack(dst, 0x62, *id),
        Packet::PubComp(id) => ack(dst, 0x70, *id),
        Packet::Subscribe(s) => {
            let mut len = 2usize;
            for (filter, _) in &s.filters {
                len = len.saturating_add(string_len(filter.as_bytes())? + 1);
            }
            header(dst, 0x82, len)?;
            dst.put_u16(s.pkid);
            for (filter, qos) in &s.filters {
                put_binary(dst, filter.as_bytes());
                dst.put_u8(*qos as u8);
            }
            Ok(())
        }
        Packet::SubAck(s) => {
            header(dst, 0x90, 2usize.saturating_add(s.codes.len()))?;
            dst.put_u16(s.pkid);
            for code in &s.codes {
                dst.put_u8(match code {
                    SubackCode::Success(qos) => *qos as u8,
                    SubackCode::Failure => 0x80,
                });
            }
            Ok(())
        }
        Packet::Unsubscribe(u) => {
            let mut len = 2usize;
            for filter in &u.filters {
                len = len.saturating_add(string_len(filter.as_bytes())?);
            }
            header(dst, 0xA2, len)?;
            dst.put_u16(u.pkid);
            for filter in &u.filters {
                put_binary(dst, filter.as_bytes());
            }
            Ok(())
        }
        Packet::UnsubAck(id) => ack(dst, 0xB0, *id),
        Packet::PingReq => header(dst, 0xC0, 0),
        Packet::PingResp => header(dst, 0xD0, 0),
        Packet::Disconnect => header(dst, 0xE0, 0),
    }
}

/// Appends a PUBLISH without building a [`super::Publish`]: the broker's
/// outbound path calls this once per delivery. `pkid` is written only for
/// QoS 1 and 2. One `reserve`, no intermediate allocation.
pub fn encode_publish(
    dup: bool,
    qos: QoS,
    retain: bool,
    topic: &str,
    pkid: u16,
    payload: &[u8],
    dst: &mut BytesMut,
) -> Result<(), Error> {
    let has_pkid = qos != QoS::AtMostOnce;
    let len = string_len(topic.as_bytes())?
        .saturating_add(if has_pkid { 2 } else { 0 })
        .saturating_add(payload.len());
    let byte1 = 0x30 | (u8::from(dup) << 3) | ((qos as u8) << 1) | u8::from(retain);
    header(dst, byte1, len)?;
    put_binary(dst, topic.as_bytes());
    if has_pkid {
        dst.put_u16(pkid);
    }
    dst.put_slice(payload);
    Ok(())
}

fn connect(c: &Connect, dst: &mut BytesMut) -> Result<(), Error> {
    let (name, level): (&str, u8) = match c.protocol {
        Protocol::V311 => ("MQTT", 4),
        Protocol::V31 => ("MQIsdp", 3),
    };
    let mut len = 2 + name.len() + 1 + 1 + 2 + string_len(c.client_id.as_bytes())?;
    let mut flags = u8::from(c.clean_session) << 1;
    if let Some(will) = &c.will {
        len += string_len(will.topic.as_bytes())? + string_len(&will.payload)?;
        flags |= 0b100 | ((will.qos as u8) << 3) | (u8::from(will.retain) << 5);
    }
    if let Some(username) = &c.username {
        len += string_len(username.as_bytes())?;
        flags |= 0x80;
    }
    if let Some(password) = &c.password {
        len += string_len(password)?;
        flags |= 0x40;
    }
    header(dst, 0x10, len)?;
    put_binary(dst, name.as_bytes());
    dst.put_u8(level);
    dst.put_u8(flags);
    dst.put_u16(c.keep_alive);
    put_binary(dst, c.client_id.as_bytes());
    if let Some(will) = &c.will {
        put_binary(dst, will.topic.as_bytes());
        put_binary(dst, &will.payload);
    }
    if let Some(username) = &c.username {
        put_binary(dst, username.as_bytes());
    }
    if let Some(password) = &c.password {
        put_binary(dst, password);
    }
    Ok(())
}

fn ack(dst: &mut BytesMut, byte1: u8, pkid: u16) -> Result<(), Error> {
    header(dst, byte1, 2)?;
    dst.put_u16(pkid);
    Ok(())
}

/// The encoded size of a length-prefixed string or binary field.
fn string_len(s: &[u8]) -> Result<usize, Error> {
    let len = s.len();
    if len > usize::from(u16::MAX) {
        return Err(Error::StringTooLong);
    }
    Ok(2 + len)
}

/// Number of bytes of the remaining-length encoding (the value is at most
/// [`MAX_REMAINING_LENGTH`]).
fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Checks the remaining length, reserves room for the whole packet (the only
/// `reserve` per packet) and writes the fixed header. The size reported in
/// `PacketTooLarge` counts a nominal 5-byte header.
fn header(dst: &mut BytesMut, byte1: u8, len: usize) -> Result<(), Error> {
    if len > MAX_REMAINING_LENGTH {
        return Err(Error::PacketTooLarge {
            size: len.saturating_add(5),
            limit: MAX_REMAINING_LENGTH + 5,
        });
    }
    dst.reserve(1 + remaining_length_len(len) + len);
    dst.put_u8(byte1);
    let mut rest = len;
    loop {
        let mut b = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            b |= 0x80;
        }
        dst.put_u8(b);
        if rest == 0 {
            return Ok(());
        }
    }
}

fn put_binary(dst: &mut BytesMut, bytes: &[u8]) {
    // Lengths were checked by `string_len` before anything was written.
    dst.put_u16(bytes.len() as u16);
    dst.put_slice(bytes);
}
