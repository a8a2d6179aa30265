//! Encoding: [`Packet`] -> bytes.

use bytes::BytesMut;

use super::{Error, Packet};

/// Appends the encoding of `packet` to `dst`. Fails (writing nothing) when a
/// string is longer than 65535 bytes or the packet exceeds the maximum
/// remaining length.
pub fn encode(packet: &Packet, dst: &mut BytesMut) -> Result<(), Error> {
    let _ = (packet, dst);
    todo!("codec helper")
}

/// Appends a PUBLISH built from its parts (the outbound hot path).
pub fn encode_publish(
    dup: bool,
    qos: super::QoS,
    retain: bool,
    topic: &str,
    pkid: u16,
    payload: &[u8],
    dst: &mut BytesMut,
) -> Result<(), Error> {
    let _ = (dup, qos, retain, topic, pkid, payload, dst);
    todo!("codec helper")
}
