//! The UA core on virtual time: no sockets, no clock. Each test feeds bytes
//! and instants to an `Endpoint` and checks what it puts on the wire.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use sip::auth::Credentials;
use sip::endpoint::{Endpoint, EndpointConfig, Event, NoObserver, OutgoingInvite};
use sip::message::{parse_datagram, HeaderName, Message, NameAddr, Request, Response, Uri};
use sip::transaction::TimerConfig;
use sip::transport::{Received, Transport};
use sip::ByteStr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PEER: &str = "192.0.2.10:5060";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";

fn endpoint() -> Endpoint {
    Endpoint::new(
        EndpointConfig {
            timers: TimerConfig::default(),
            public_host: "192.0.2.1".into(),
            public_port: 5060,
            user_agent: "test".into(),
        },
        Arc::new(NoObserver),
    )
}

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

fn feed(ep: &mut Endpoint, text: &str, now: Instant) {
    ep.handle_received(
        Received {
            transport: Transport::Udp,
            source: peer(),
            payload: Bytes::copy_from_slice(text.as_bytes()),
        },
        now,
    );
}

fn sent(ep: &mut Endpoint) -> Vec<Message> {
    std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| parse_datagram(t.payload).expect("we only send valid SIP"))
        .collect()
}

fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn statuses(msgs: &[Message]) -> Vec<u16> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Response(r) => Some(r.status),
            Message::Request(_) => None,
        })
        .collect()
}

fn requests(msgs: &[Message]) -> Vec<Request> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Request(r) => Some(r.clone()),
            Message::Response(_) => None,
        })
        .collect()
}

/// Runs every timer up to `until`, collecting what is sent.
fn run_until(ep: &mut Endpoint, until: Instant) -> Vec<(Instant, Message)> {
    let mut out = Vec::new();
    while let Some(t) = ep.poll_timeout() {
        if t > until {
            break;
        }
        ep.handle_timeout(t);
        for m in sent(ep) {
            out.push((t, m));
        }
    }
    out
}

fn invite_text(branch: &str, extra: &str, body: &str) -> String {
    format!(
        "INVITE sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.10>;tag=caller\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: call-1@192.0.2.10\r\nCSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.10:5060>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A response to `req` as a peer would write it.
fn answer(req: &Request, status: u16, to_tag: Option<&str>, extra: &str) -> String {
    let to = req.headers.get(&HeaderName::To).unwrap();
    let to = match to_tag {
        Some(t) => format!("{to};tag={t}"),
        None => to.to_string(),
    };
    format!(
        "SIP/2.0 {status} X\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:b@192.0.2.10:5060>\r\n{extra}Content-Length: 0\r\n\r\n",
        req.headers.get(&HeaderName::Via).unwrap(),
        req.headers.get(&HeaderName::From).unwrap(),
        req.core.call_id,
        req.headers.get(&HeaderName::CSeq).unwrap(),
    )
}

fn outgoing(credentials: Option<Credentials>) -> OutgoingInvite {
    let na = |s: &str| {
        let b = ByteStr::from(s);
        NameAddr::parse(&b, &b).unwrap()
    };
    OutgoingInvite {
        request_uri: Uri::parse_str("sip:200@192.0.2.10").unwrap(),
        from: na("<sip:caller@192.0.2.1>"),
        to: na("<sip:200@192.0.2.10>"),
        destination: peer(),
        transport: Transport::Udp,
        body: Bytes::from_static(SDP.as_bytes()),
        max_forwards: 70,
        credentials,
    }
}

#[test]
fn uas_invite_retransmission_is_absorbed_and_2xx_is_retransmitted_until_ack() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let inv = invite_text("z9hG4bKa1", "", SDP);
    feed(&mut ep, &inv, t0);
    assert_eq!(statuses(&sent(&mut ep)), vec![100]);
    let evs = events(&mut ep);
    let leg = match evs.as_slice() {
        [Event::IncomingInvite { leg, .. }] => *leg,
        other => panic!("{other:?}"),
    };
    // The same INVITE again: the transaction answers, the TU hears nothing.
    feed(&mut ep, &inv, t0 + Duration::from_millis(300));
    assert_eq!(statuses(&sent(&mut ep)), vec![100]);
    assert!(events(&mut ep).is_empty());

    ep.respond(leg, 180, Bytes::new(), t0);
    ep.respond(leg, 200, Bytes::from_static(SDP.as_bytes()), t0);
    let out = sent(&mut ep);
    assert_eq!(
        statuses(&out),
        vec![180, 200],
        "a 180 never follows the 200"
    );
    let Message::Response(ok) = &out[1] else {
        panic!()
    };
    let to_tag = ok.core.to.tag().unwrap().to_string();
    // No ACK: 2xx retransmitted at T1, 2T1, 4T1 ... (§13.3.1.4).
    let resent = run_until(&mut ep, t0 + Duration::from_millis(3600));
    let at: Vec<u128> = resent.iter().map(|(t, _)| (*t - t0).as_millis()).collect();
    assert_eq!(at, vec![500, 1500, 3500]);
    let ack = format!(
        "ACK sip:b@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack1\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.10>;tag=caller\r\nTo: <sip:100@192.0.2.1>;tag={to_tag}\r\nCall-ID: call-1@192.0.2.10\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    feed(&mut ep, &ack, t0 + Duration::from_millis(3700));
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::Confirmed { .. }]
    ));
    let later = run_until(&mut ep, t0 + Duration::from_secs(10));
    assert!(statuses(&later.into_iter().map(|(_, m)| m).collect::<Vec<_>>()).is_empty());

    // BYE from the caller ends the dialog.
    let bye = format!(
        "BYE sip:b@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKbye1\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.10>;tag=caller\r\nTo: <sip:100@192.0.2.1>;tag={to_tag}\r\nCall-ID: call-1@192.0.2.10\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    feed(&mut ep, &bye, t0 + Duration::from_secs(11));
    assert_eq!(statuses(&sent(&mut ep)), vec![200]);
    let evs = events(&mut ep);
    assert!(
        matches!(evs.as_slice(), [Event::Bye { .. }, Event::LegClosed { .. }]),
        "{evs:?}"
    );
    assert_eq!(ep.dialog_count(), 0);
    run_until(&mut ep, t0 + Duration::from_secs(100));
    assert_eq!(ep.transaction_count(), 0, "nothing leaks");
}

#[test]
fn uac_invite_retransmits_then_acks_2xx_and_its_retransmissions() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let leg = ep.invite(outgoing(None), t0);
    let first = requests(&sent(&mut ep));
    assert_eq!(first.len(), 1);
    let inv = first[0].clone();
    assert!(inv.core.via.branch().unwrap().starts_with("z9hG4bK"));
    // Lost: retransmitted at 0.5 s and 1.5 s.
    let resent = run_until(&mut ep, t0 + Duration::from_millis(1600));
    let at: Vec<u128> = resent.iter().map(|(t, _)| (*t - t0).as_millis()).collect();
    assert_eq!(at, vec![500, 1500]);
    feed(
        &mut ep,
        &answer(&inv, 180, Some("callee"), ""),
        t0 + Duration::from_secs(2),
    );
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::Progress { .. }]
    ));
    let ok = answer(&inv, 200, Some("callee"), "");
    feed(&mut ep, &ok, t0 + Duration::from_secs(3));
    let acks = requests(&sent(&mut ep));
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].method, sip::message::Method::Ack);
    assert_ne!(
        acks[0].core.via.branch(),
        inv.core.via.branch(),
        "ACK for 2xx is a new transaction"
    );
    assert!(matches!(events(&mut ep).as_slice(), [Event::Answered { leg: l, .. }] if *l == leg));
    // A retransmitted 200 is ACKed again and not passed up.
    feed(&mut ep, &ok, t0 + Duration::from_secs(4));
    assert_eq!(requests(&sent(&mut ep)).len(), 1);
    assert!(events(&mut ep).is_empty());
    // Our BYE, answered.
    ep.bye(leg, t0 + Duration::from_secs(5));
    let bye = requests(&sent(&mut ep)).pop().unwrap();
    assert_eq!(bye.method, sip::message::Method::Bye);
    assert_eq!(bye.core.to.tag().map(|t| t.as_str()), Some("callee"));
    assert_eq!(bye.core.cseq.seq, inv.core.cseq.seq + 1);
    feed(
        &mut ep,
        &answer(&bye, 200, None, ""),
        t0 + Duration::from_secs(5),
    );
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::LegClosed { .. }]
    ));
    run_until(&mut ep, t0 + Duration::from_secs(100));
    assert_eq!(ep.transaction_count(), 0);
    assert_eq!(ep.dialog_count(), 0);
}

#[test]
fn uac_invite_with_no_answer_fails_with_408_at_64_t1() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let leg = ep.invite(outgoing(None), t0);
    sent(&mut ep);
    let resent = run_until(&mut ep, t0 + Duration::from_secs(40));
    let at: Vec<u128> = resent.iter().map(|(t, _)| (*t - t0).as_millis()).collect();
    assert_eq!(at, vec![500, 1500, 3500, 7500, 15500, 31500]);
    let evs = events(&mut ep);
    assert!(
        matches!(evs.first(), Some(Event::Failed { leg: l, status: 408, response: None }) if *l == leg),
        "{evs:?}"
    );
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn uac_cancel_waits_for_a_provisional_then_acks_the_487() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let leg = ep.invite(outgoing(None), t0);
    let inv = requests(&sent(&mut ep)).remove(0);
    ep.cancel(leg, t0);
    assert!(
        sent(&mut ep).is_empty(),
        "no CANCEL before a provisional (§9.1)"
    );
    feed(&mut ep, &answer(&inv, 180, Some("callee"), ""), t0);
    let cancel = requests(&sent(&mut ep)).remove(0);
    assert_eq!(cancel.method, sip::message::Method::Cancel);
    assert_eq!(cancel.core.via.branch(), inv.core.via.branch());
    assert_eq!(cancel.core.cseq.seq, inv.core.cseq.seq);
    feed(&mut ep, &answer(&cancel, 200, Some("callee"), ""), t0);
    feed(&mut ep, &answer(&inv, 487, Some("callee"), ""), t0);
    let acks = requests(&sent(&mut ep));
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].method, sip::message::Method::Ack);
    assert_eq!(
        acks[0].core.via.branch(),
        inv.core.via.branch(),
        "non-2xx ACK is in the INVITE transaction"
    );
    let evs = events(&mut ep);
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::Failed { status: 487, .. })),
        "{evs:?}"
    );
}

#[test]
fn uas_cancel_gets_200_and_the_invite_487() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    feed(&mut ep, &invite_text("z9hG4bKc1", "", SDP), t0);
    sent(&mut ep);
    events(&mut ep);
    let cancel = "CANCEL sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc1\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.10>;tag=caller\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: call-1@192.0.2.10\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    feed(&mut ep, cancel, t0);
    assert_eq!(statuses(&sent(&mut ep)), vec![200, 487]);
    let evs = events(&mut ep);
    assert!(
        matches!(
            evs.as_slice(),
            [Event::Cancelled { .. }, Event::LegClosed { .. }]
        ),
        "{evs:?}"
    );
}

#[test]
fn digest_challenge_is_answered_with_a_new_cseq_on_the_same_call_id() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let creds = Credentials {
        username: "trunkuser".into(),
        password: "trunkpass".into(),
    };
    ep.invite(outgoing(Some(creds)), t0);
    let inv = requests(&sent(&mut ep)).remove(0);
    let challenge = "Proxy-Authenticate: Digest realm=\"trunk.example\", nonce=\"abc\", qop=\"auth\", algorithm=MD5\r\n";
    feed(&mut ep, &answer(&inv, 407, Some("proxy"), challenge), t0);
    let out = requests(&sent(&mut ep));
    assert_eq!(out.len(), 2, "ACK for the 407, then the new INVITE");
    assert_eq!(out[0].method, sip::message::Method::Ack);
    let retry = &out[1];
    assert_eq!(retry.core.call_id, inv.core.call_id);
    assert_eq!(retry.core.cseq.seq, inv.core.cseq.seq + 1);
    let auth = retry.headers.get(&HeaderName::ProxyAuthorization).unwrap();
    assert!(
        auth.contains("username=\"trunkuser\"") && auth.contains("nc=00000001"),
        "{auth}"
    );
    assert!(
        events(&mut ep).is_empty(),
        "the TU does not see the challenge"
    );
}

#[test]
fn uas_checks_answer_what_a_ua_answers() {
    let cases = [
        ("BYE sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1;rport\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=nope\r\nCall-ID: c1\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n", 481),
        ("FOO sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2;rport\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c2\r\nCSeq: 5 FOO\r\nContent-Length: 0\r\n\r\n", 501),
        ("OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK3;rport\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c3\r\nCSeq: 5 OPTIONS\r\nRequire: 100rel\r\nContent-Length: 0\r\n\r\n", 420),
        ("OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK4;rport\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c4\r\nCSeq: 5 OPTIONS\r\nContent-Length: 0\r\n\r\n", 200),
        ("OPTIONS sip:100@192.0.2.1 SIP/7.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK5;rport\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c5\r\nCSeq: 5 OPTIONS\r\nContent-Length: 0\r\n\r\n", 505),
        ("OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK6;rport\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c6\r\nCSeq: 5 OPTIONS\r\nContact: <sip:a@x>;;;\r\nContent-Length: 0\r\n\r\n", 400),
    ];
    for (text, want) in cases {
        let mut ep = endpoint();
        feed(&mut ep, text, Instant::now());
        let out = sent(&mut ep);
        assert_eq!(statuses(&out), vec![want], "{text}");
        let Message::Response(r) = &out[0] else {
            panic!()
        };
        if want == 200 {
            assert!(r.headers.get(&HeaderName::Allow).is_some());
        }
        if want == 420 {
            assert_eq!(
                r.headers.get(&HeaderName::Unsupported).map(|v| v.as_str()),
                Some("100rel")
            );
        }
        if want == 400 {
            assert!(
                r.reason.contains("Contact"),
                "the reason names the problem: {}",
                r.reason
            );
        }
        // rport filled in (RFC 3581) and the answer goes to the source port.
        assert!(r.core.via.rport().flatten().is_some());
    }
}

#[test]
fn responses_to_nothing_are_dropped() {
    let mut ep = endpoint();
    let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKnothing\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: zz\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    feed(&mut ep, stray, Instant::now());
    assert!(sent(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
    let _: Option<Response> = None;
}

#[test]
fn a_2xx_to_a_reinvite_is_retransmitted_until_its_ack() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    feed(&mut ep, &invite_text("z9hG4bKr1", "", SDP), t0);
    sent(&mut ep);
    let Some(Event::IncomingInvite { leg, .. }) = events(&mut ep).into_iter().next() else {
        panic!()
    };
    ep.respond(leg, 200, Bytes::from_static(SDP.as_bytes()), t0);
    let Message::Response(ok) = sent(&mut ep).remove(0) else {
        panic!()
    };
    let tag = ok.core.to.tag().unwrap().to_string();
    let in_dialog = |method: &str, seq: u32, branch: &str, body: &str| {
        format!(
            "{method} sip:b@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.10>;tag=caller\r\nTo: <sip:100@192.0.2.1>;tag={tag}\r\nCall-ID: call-1@192.0.2.10\r\nCSeq: {seq} {method}\r\nContact: <sip:a@192.0.2.10:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    feed(&mut ep, &in_dialog("ACK", 1, "z9hG4bKr1a", ""), t0);
    events(&mut ep);
    let t1 = t0 + Duration::from_secs(10);
    feed(&mut ep, &in_dialog("INVITE", 2, "z9hG4bKr2", SDP), t1);
    let txn = match events(&mut ep).as_slice() {
        [Event::InDialogRequest { txn, .. }] => *txn,
        other => panic!("{other:?}"),
    };
    ep.respond_request(
        txn,
        200,
        Some("application/sdp"),
        Bytes::from_static(SDP.as_bytes()),
        t1,
    );
    assert_eq!(statuses(&sent(&mut ep)), vec![200]);
    let resent = run_until(&mut ep, t1 + Duration::from_millis(1600));
    let at: Vec<u128> = resent.iter().map(|(t, _)| (*t - t1).as_millis()).collect();
    assert_eq!(
        at,
        vec![500, 1500],
        "retransmitted at T1, 3·T1 while no ACK"
    );
    feed(
        &mut ep,
        &in_dialog("ACK", 2, "z9hG4bKr2a", ""),
        t1 + Duration::from_secs(2),
    );
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::Confirmed { .. }]
    ));
    assert!(
        run_until(&mut ep, t1 + Duration::from_secs(10)).is_empty(),
        "no more after the ACK"
    );
}
