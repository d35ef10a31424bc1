//! Any bytes, as a UDP datagram and as the start of a TCP stream.
//!
//! Properties: nothing panics; framing results stay inside the buffer; a
//! message that parses serializes (`to_bytes`) into one that parses again, of
//! the same kind, method/status and body.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::message::{frame_stream, parse_datagram, parse_message, Message, StreamFrame};

const MAX: usize = 65535;

fn same_shape(a: &Message, b: &Message) -> bool {
    match (a, b) {
        (Message::Request(x), Message::Request(y)) => x.method == y.method && x.body == y.body,
        (Message::Response(x), Message::Response(y)) => x.status == y.status && x.body == y.body,
        _ => false,
    }
}

fn round_trip(m: &Message, datagram: bool) {
    let wire = m.to_bytes();
    let again = match parse_message(wire.clone(), datagram) {
        Ok(again) => again,
        Err(e) => panic!(
            "serialized message does not parse again ({e}):\n{}",
            String::from_utf8_lossy(&wire)
        ),
    };
    assert!(
        same_shape(m, &again),
        "re-parsed message differs:\n{}",
        String::from_utf8_lossy(&wire)
    );
    if !datagram {
        // What we send on a stream must frame as exactly one message.
        assert_eq!(
            frame_stream(&wire, usize::MAX),
            StreamFrame::Complete { len: wire.len() },
            "serialized message does not frame:\n{}",
            String::from_utf8_lossy(&wire)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);

    if let Ok(m) = parse_datagram(buf.clone()) {
        round_trip(&m, true);
    }

    match frame_stream(data, MAX) {
        StreamFrame::Complete { len } => {
            assert!(
                len > 0 && len <= data.len(),
                "frame of {len} in {} bytes",
                data.len()
            );
            if let Ok(m) = parse_message(buf.slice(..len), false) {
                round_trip(&m, false);
            }
        }
        StreamFrame::KeepAlive { skip, .. } => {
            assert!(
                skip > 0 && skip <= data.len(),
                "skip {skip} of {} bytes",
                data.len()
            );
        }
        StreamFrame::Incomplete | StreamFrame::Invalid(_) => {}
    }
});
