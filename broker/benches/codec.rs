//! Micro-benchmark of the wire codec: prints ns per packet for decoding
//! and encoding PUBLISH packets of a few sizes, and for a pipelined buffer
//! of many packets (the shape the broker reads). `std::time::Instant` only.
//!
//! `cargo bench -p broker --bench codec`

use std::hint::black_box;
use std::time::Instant;

use broker::codec::{self, ByteStr, Packet, Publish, QoS};
use bytes::{Bytes, BytesMut};

const ROUNDS: usize = 1_000_000;

fn publish(size: usize, qos: QoS) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from("site/42/dev/7/temp"),
        pkid: if qos == QoS::AtMostOnce { 0 } else { 7 },
        payload: Bytes::from(vec![0x5a; size]),
    })
}

fn main() {
    println!("{:<44} {:>10} {:>10}", "packet", "decode ns", "encode ns");
    for (size, qos) in [
        (16, QoS::AtMostOnce),
        (16, QoS::AtLeastOnce),
        (1024, QoS::AtMostOnce),
        (65_536, QoS::AtMostOnce),
    ] {
        let packet = publish(size, qos);
        let mut one = BytesMut::new();
        codec::encode(&packet, &mut one).unwrap();
        let rounds = if size > 10_000 { ROUNDS / 100 } else { ROUNDS };

        // Decode: a buffer of 1000 back-to-back packets, as read from a
        // busy socket, decoded until empty, repeated.
        let batch = 1000;
        let mut many = BytesMut::with_capacity(one.len() * batch);
        for _ in 0..batch {
            many.extend_from_slice(&one);
        }
        let many = many.freeze();
        let start = Instant::now();
        for _ in 0..rounds / batch {
            let mut buf = BytesMut::from(&many[..]);
            while let Some(p) = codec::decode(&mut buf, usize::MAX).unwrap() {
                black_box(p);
            }
        }
        let decode_ns = start.elapsed().as_nanos() as f64 / rounds as f64;

        let mut out = BytesMut::with_capacity(one.len() * batch);
        let start = Instant::now();
        for i in 0..rounds {
            if i % batch == 0 {
                out.clear();
            }
            codec::encode(black_box(&packet), &mut out).unwrap();
        }
        let encode_ns = start.elapsed().as_nanos() as f64 / rounds as f64;
        let label = format!("PUBLISH qos {} payload {size} B", qos as u8);
        println!("{label:<44} {decode_ns:>10.1} {encode_ns:>10.1}");
        println!(
            "{{\"bench\":\"codec\",\"packet\":\"{label}\",\"decode_ns\":{decode_ns:.1},\"encode_ns\":{encode_ns:.1}}}"
        );
    }
}
