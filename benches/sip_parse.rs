#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Parse/serialize cost of the messages a softswitch handles most: a trunk
//! INVITE with SDP and the 200 OK answering it.
//!
//! `cargo bench --bench sip_parse -- --warm-up-time 1 --measurement-time 3`

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sip::message::{frame_stream, parse_datagram, StreamFrame};

/// A carrier INVITE as it reaches us from an SBC: Via with rport, Record-Route,
/// P-Asserted-Identity, Supported, and a PCMA/PCMU/DTMF offer.
const INVITE: &str = "INVITE sip:+4930123456789@198.51.100.10:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.20:5060;branch=z9hG4bK-524287-1---8d2f6a1c4e0b7f3a;rport\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:203.0.113.20;lr;ftag=as5f0c2b1e>\r\n\
Contact: <sip:+4989987654321@203.0.113.20:5060;transport=udp>\r\n\
To: <sip:+4930123456789@carrier.example.net;user=phone>\r\n\
From: \"Alice Example\" <sip:+4989987654321@carrier.example.net;user=phone>;tag=as5f0c2b1e\r\n\
Call-ID: 3c26700a7e3c4f1b9d0e2f4a6b8c0d1e@203.0.113.20\r\n\
CSeq: 102 INVITE\r\n\
P-Asserted-Identity: \"Alice Example\" <sip:+4989987654321@carrier.example.net;user=phone>\r\n\
Supported: replaces, timer, 100rel\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 245\r\n\
\r\n\
v=0\r\n\
o=- 1698765432 1698765432 IN IP4 203.0.113.20\r\n\
s=SBC call\r\n\
c=IN IP4 203.0.113.20\r\n\
t=0 0\r\n\
m=audio 40012 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// Our answer to it, as a B2BUA sends it back.
const OK_200: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 203.0.113.20:5060;branch=z9hG4bK-524287-1---8d2f6a1c4e0b7f3a;rport=5060;received=203.0.113.20\r\n\
Record-Route: <sip:203.0.113.20;lr;ftag=as5f0c2b1e>\r\n\
From: \"Alice Example\" <sip:+4989987654321@carrier.example.net;user=phone>;tag=as5f0c2b1e\r\n\
To: <sip:+4930123456789@carrier.example.net;user=phone>;tag=9f3b2c1d0e4a5b6c\r\n\
Call-ID: 3c26700a7e3c4f1b9d0e2f4a6b8c0d1e@203.0.113.20\r\n\
CSeq: 102 INVITE\r\n\
Contact: <sip:198.51.100.10:5060>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, INFO\r\n\
Supported: \r\n\
Server: softswitch/0.1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 228\r\n\
\r\n\
v=0\r\n\
o=softswitch 8273645 8273645 IN IP4 198.51.100.10\r\n\
s=softswitch\r\n\
c=IN IP4 198.51.100.10\r\n\
t=0 0\r\n\
m=audio 20004 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn bench(c: &mut Criterion) {
    let invite = Bytes::from_static(INVITE.as_bytes());
    let ok = Bytes::from_static(OK_200.as_bytes());
    // The fixtures must be what they claim, or the figures mean nothing.
    let parsed_invite = parse_datagram(invite.clone()).expect("INVITE parses");
    let parsed_ok = parse_datagram(ok.clone()).expect("200 OK parses");
    match (&parsed_invite, &parsed_ok) {
        (sip::message::Message::Request(r), sip::message::Message::Response(s)) => {
            assert_eq!(r.body.len(), 245, "INVITE Content-Length matches its SDP");
            assert_eq!(s.body.len(), 228, "200 OK Content-Length matches its SDP");
        }
        _ => panic!("fixtures are an INVITE and a 200 OK"),
    }
    assert_eq!(
        frame_stream(&invite, 65535),
        StreamFrame::Complete { len: invite.len() }
    );

    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));

    g.bench_function(format!("parse_invite_{}B", invite.len()), |b| {
        b.iter(|| parse_datagram(black_box(invite.clone())))
    });
    g.bench_function(format!("parse_200ok_{}B", ok.len()), |b| {
        b.iter(|| parse_datagram(black_box(ok.clone())))
    });
    g.bench_function("serialize_invite", |b| {
        b.iter(|| black_box(&parsed_invite).to_bytes())
    });
    g.bench_function("serialize_200ok", |b| {
        b.iter(|| black_box(&parsed_ok).to_bytes())
    });
    g.bench_function("frame_stream_invite", |b| {
        b.iter(|| frame_stream(black_box(&invite), black_box(65535)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
