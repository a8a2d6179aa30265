//! Decoding: bytes -> [`Packet`], with every well-formedness check.

use bytes::BytesMut;

use super::{Error, Packet};

/// Decodes one packet from the front of `src`, splitting its bytes off.
/// `Ok(None)` means more bytes are needed. The packet size (fixed header +
/// remaining length) is checked against `max_packet_size` before the body is
/// buffered.
pub fn decode(src: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, Error> {
    let _ = (src, max_packet_size);
    todo!("codec helper")
}
