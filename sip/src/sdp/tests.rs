use std::net::{IpAddr, Ipv4Addr};

use super::*;

const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 198.51.100.1\r\n\
s=-\r\n\
c=IN IP4 198.51.100.1\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 97 8 0 101\r\n\
a=rtpmap:97 AMR/8000/1\r\n\
a=fmtp:97 octet-align=1;mode-set=0,2,4,7\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const RFC5118: &str = "v=0\r\no=assistant 971731711378798081 0 IN IP6 2001:db8::20\r\ns=Live video feed\r\nc=IN IP6 2001:db8::20\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn parse(s: &str) -> SessionDescription {
    SessionDescription::parse(s.as_bytes()).unwrap()
}

fn our_origin() -> Origin {
    Origin::new(42, 1, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)))
}

fn local(codecs: Vec<CodecSpec>, ports: &[u16]) -> LocalCapabilities {
    LocalCapabilities::new(
        our_origin(),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        codecs,
        ports,
    )
}

fn audio_offer(fmts: &str, extra: &str) -> SessionDescription {
    parse(&format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP {fmts}\r\n{extra}"
    ))
}

// ---- parse / build ----

#[test]
fn round_trip_is_byte_exact() {
    let sd = parse(OFFER);
    assert_eq!(sd.to_bytes(), OFFER.as_bytes());
    assert_eq!(sd.to_string(), OFFER);
    let m = &sd.media[0];
    assert_eq!(m.port, 49170);
    assert_eq!(m.formats, ["97", "8", "0", "101"]);
    assert_eq!(m.fmtp(97), Some("octet-align=1;mode-set=0,2,4,7"));
    assert_eq!(m.fmtp(101), Some("0-15"));
    let amr = m.rtpmap(97).unwrap();
    assert_eq!(
        (amr.encoding_name.as_str(), amr.clock_rate, amr.channels),
        ("AMR", 8000, Some(1))
    );
    assert_eq!(m.ptime(), Some(20));
    assert_eq!(sd.direction_of(m), Direction::SendRecv);
    assert_eq!(sd.origin.sess_version, 2890844526);
    assert_eq!(sd.connection.as_ref().unwrap().address, "198.51.100.1");
}

#[test]
fn bare_lf_accepted_and_written_as_crlf() {
    let lf = OFFER.replace("\r\n", "\n");
    let sd = SessionDescription::parse(lf.as_bytes()).unwrap();
    assert_eq!(sd.to_string(), OFFER);
}

#[test]
fn attributes_keep_odd_spacing_byte_exact() {
    let s = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns= \r\nt=0 0\r\na=tool:x y\r\nm=audio 5000 RTP/AVP 96\r\nc=IN IP4 192.0.2.1\r\nb=AS:64\r\na=rtpmap:96 AMR-WB/16000\r\na=fmtp:96  mode-set=0,1 ; octet-align=0\r\na=foo:\r\na=rtcp:5003 IN IP4 192.0.2.9\r\n";
    let sd = parse(s);
    assert_eq!(sd.to_string(), s);
    let m = &sd.media[0];
    assert_eq!(m.fmtp(96), Some(" mode-set=0,1 ; octet-align=0"));
    assert_eq!(m.bandwidths[0].bandwidth, 64);
    let rtcp = m.rtcp().unwrap();
    assert_eq!(rtcp.port, 5003);
    assert_eq!(rtcp.connection.unwrap().address, "192.0.2.9");
    assert_eq!(m.attributes[2], Attribute::new("foo", ""));
}

#[test]
fn rfc5118_ipv6_parses() {
    let sd = parse(RFC5118);
    assert_eq!(sd.origin.username, "assistant");
    assert_eq!(sd.origin.sess_id, "971731711378798081");
    assert_eq!(sd.origin.addrtype, AddrType::Ip6);
    assert_eq!(sd.origin.unicast_address, "2001:db8::20");
    assert_eq!(sd.session_name, "Live video feed");
    let c = sd.connection.as_ref().unwrap();
    assert_eq!(c.addrtype, AddrType::Ip6);
    assert_eq!(c.ip(), Some("2001:db8::20".parse().unwrap()));
    assert_eq!(sd.media[0].port, 6000);
    assert_eq!(sd.media[0].rtpmap(0).unwrap().encoding_name, "PCMU");
    assert_eq!(sd.to_string(), RFC5118);
}

#[test]
fn static_payload_types_resolve_without_rtpmap() {
    let sd = audio_offer("0 8 18", "");
    let names: Vec<String> = sd.media[0].codecs().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["PCMU", "PCMA", "G729"]);
}

#[test]
fn multicast_and_port_ranges() {
    let sd = parse("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 224.2.1.1/127/3\r\nt=0 0\r\nm=audio 49170/2 RTP/AVP 0\r\n");
    let c = sd.connection.as_ref().unwrap();
    assert_eq!((c.ttl, c.num_addresses), (Some(127), Some(3)));
    assert_eq!(sd.media[0].num_ports, Some(2));
    assert!(sd
        .to_string()
        .contains("c=IN IP4 224.2.1.1/127/3\r\nt=0 0\r\nm=audio 49170/2 RTP/AVP 0\r\n"));
    let err = SessionDescription::parse(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 65534/2 RTP/AVP 0\r\n",
    )
    .unwrap_err();
    assert!(matches!(
        err,
        SdpError::PortRange {
            port: 65534,
            num_ports: 2,
            ..
        }
    ));
}

#[test]
fn garbage_is_rejected() {
    let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
    type Case = (String, fn(&SdpError) -> bool);
    let cases: Vec<Case> = vec![
        (String::new(), |e| matches!(e, SdpError::Empty)),
        ("\r\n\r\n".into(), |e| matches!(e, SdpError::Empty)),
        ("o=- 1 1 IN IP4 192.0.2.1\r\n".into(), |e| {
            matches!(e, SdpError::MissingVersion)
        }),
        ("v=1\r\n".into(), |e| {
            matches!(e, SdpError::UnsupportedVersion { .. })
        }),
        ("v=0\r\ns=-\r\n".into(), |e| {
            matches!(e, SdpError::MissingLine { field: 'o' })
        }),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n".into(), |e| {
            matches!(e, SdpError::MissingLine { field: 's' })
        }),
        (format!("{base}m=audio 99999 RTP/AVP 0\r\n"), |e| {
            matches!(e, SdpError::BadPort { .. })
        }),
        (format!("{base}m=audio -1 RTP/AVP 0\r\n"), |e| {
            matches!(e, SdpError::BadPort { .. })
        }),
        (format!("{base}m=audio 5000/0 RTP/AVP 0\r\n"), |e| {
            matches!(e, SdpError::PortRange { .. })
        }),
        (format!("{base}m=audio 5000 RTP/AVP\r\n"), |e| {
            matches!(e, SdpError::BadMedia { .. })
        }),
        (format!("{base}m=audio\r\n"), |e| {
            matches!(e, SdpError::BadMedia { .. })
        }),
        (format!("{base}c=IN IP4\r\n"), |e| {
            matches!(e, SdpError::BadConnection { .. })
        }),
        (format!("{base}c=IN IPX 1.2.3.4\r\n"), |e| {
            matches!(e, SdpError::BadAddrType { .. })
        }),
        (format!("{base}c=IN IP4 1.2.3.4/x\r\n"), |e| {
            matches!(e, SdpError::BadConnection { .. })
        }),
        (format!("{base}b=AS\r\n"), |e| {
            matches!(e, SdpError::BadBandwidth { .. })
        }),
        (format!("{base}t=0\r\n"), |e| {
            matches!(e, SdpError::BadTiming { .. })
        }),
        (format!("{base}a=\r\n"), |e| {
            matches!(e, SdpError::BadAttribute { .. })
        }),
        (format!("{base}hello\r\n"), |e| {
            matches!(e, SdpError::MalformedLine { line: 5 })
        }),
        (format!("{base}ab=c\r\n"), |e| {
            matches!(e, SdpError::MalformedLine { .. })
        }),
        (format!("{base}m=audio 1 RTP/AVP 0\r\nt=0 0\r\n"), |e| {
            matches!(e, SdpError::MisplacedLine { field: 't', .. })
        }),
        (format!("{base}s=again\r\n"), |e| {
            matches!(e, SdpError::DuplicateLine { field: 's', .. })
        }),
        ("v=0\r\no=- 1 x IN IP4 1.2.3.4\r\ns=-\r\n".into(), |e| {
            matches!(e, SdpError::BadOrigin { .. })
        }),
    ];
    for (input, expected) in cases {
        let e = SessionDescription::parse(input.as_bytes()).unwrap_err();
        assert!(expected(&e), "{input:?} gave {e:?}");
    }
    assert_eq!(
        SessionDescription::parse(&[0x76, 0x3d, 0xff]),
        Err(SdpError::NotUtf8)
    );
}

#[test]
fn every_prefix_parses_or_errs_without_panic() {
    for s in [OFFER, RFC5118] {
        let bytes = s.as_bytes();
        for end in 0..=bytes.len() {
            let prefix = &bytes[..end];
            let result = SessionDescription::parse(prefix);
            // Anything that parses must write out something that parses to
            // the same model.
            if let Ok(sd) = result {
                let again = SessionDescription::parse(&sd.to_bytes()).unwrap();
                assert_eq!(again, sd, "prefix {end}");
            }
        }
        // Prefixes cut inside a structured line fail.
        let cut = s.find("m=audio").unwrap() + "m=audio 4".len();
        assert!(SessionDescription::parse(&bytes[..cut]).is_err());
    }
}

#[test]
fn unknown_line_types_are_kept() {
    let s = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nx=whatever\r\nm=audio 1 RTP/AVP 0\r\ny=1\r\na=sendonly\r\n";
    let sd = parse(s);
    assert_eq!(sd.other_lines[0].kind, 'x');
    assert_eq!(sd.media[0].other_lines[0].value, "1");
    assert_eq!(sd.to_string(), s);
}

#[test]
fn direction_media_overrides_session() {
    let sd = parse("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\na=sendonly\r\nm=audio 1 RTP/AVP 0\r\nm=audio 2 RTP/AVP 0\r\na=inactive\r\nm=audio 3 RTP/AVP 0\r\n");
    assert_eq!(sd.direction(), Some(Direction::SendOnly));
    assert_eq!(sd.direction_of(&sd.media[0]), Direction::SendOnly);
    assert_eq!(sd.direction_of(&sd.media[1]), Direction::Inactive);
    let plain = parse(RFC5118);
    assert_eq!(plain.direction_of(&plain.media[0]), Direction::SendRecv);
}

#[test]
fn setters_for_relay_and_reinvite() {
    let mut sd = parse("v=0\r\no=- 1 7 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=rtcp:5001\r\na=sendrecv\r\n");
    sd.media[0].set_connection("2001:db8::1".parse().unwrap(), 30000);
    sd.media[0].set_direction(Direction::SendOnly);
    sd.bump_version();
    assert_eq!(
        sd.to_string(),
        "v=0\r\no=- 1 8 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\nc=IN IP6 2001:db8::1\r\na=sendonly\r\n"
    );
    sd.set_origin(our_origin());
    assert!(sd.to_string().contains("o=- 42 1 IN IP4 203.0.113.5\r\n"));
}

// ---- filter_offer ----

#[test]
fn filter_offer_keeps_only_allowed() {
    let offer = parse(OFFER);
    let f = filter_offer(&offer, &["pcma", "telephone-event"]).unwrap();
    let m = &f.media[0];
    assert_eq!(m.formats, ["8", "101"]);
    assert_eq!(m.port, 49170);
    let attrs: Vec<String> = m.attributes.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        attrs,
        [
            "rtpmap:8 PCMA/8000",
            "rtpmap:101 telephone-event/8000",
            "fmtp:101 0-15",
            "ptime:20",
            "sendrecv"
        ]
    );

    let f = filter_offer(&offer, &["AMR"]).unwrap();
    assert_eq!(f.media[0].formats, ["97"]);
    assert_eq!(f.media[0].fmtp(97), Some("octet-align=1;mode-set=0,2,4,7"));
}

#[test]
fn filter_offer_rejects_streams_without_voice_codec() {
    let offer = parse("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\nm=video 5002 RTP/AVP 31\r\nm=audio 5004 RTP/AVP 8\r\n");
    let f = filter_offer(&offer, &["PCMA", "telephone-event", "H261"]).unwrap();
    assert_eq!(f.media.len(), 3);
    assert_eq!(f.media[0].port, 0, "telephone-event alone is not usable");
    assert_eq!(f.media[1].port, 0, "non-audio rejected");
    assert_eq!(f.media[2].port, 5004);
    assert_eq!(
        filter_offer(&offer, &["opus", "telephone-event"]),
        Err(NegotiationError::NoCommonCodec)
    );
}

// ---- answer ----

#[test]
fn answer_picks_local_preference_with_offer_numbers() {
    let offer = parse(OFFER);
    let caps = local(
        vec![
            CodecSpec::pcmu(),
            CodecSpec::pcma(),
            CodecSpec::telephone_event(100, 8000),
        ],
        &[20000],
    );
    let a = answer(&offer, &caps).unwrap();
    let m = &a.media[0];
    assert_eq!(m.formats, ["0", "8", "101"]);
    assert_eq!(m.port, 20000);
    assert_eq!(a.connection.as_ref().unwrap().address, "203.0.113.5");
    assert_eq!(m.fmtp(101), Some("0-15"));
    assert_eq!(m.direction(), Some(Direction::SendRecv));
    assert_eq!(a.origin, our_origin());
    // The answer must itself be a valid answer to the offer.
    let n = check_answer(&offer, &a).unwrap();
    assert_eq!(n.streams[0].codec.as_ref().unwrap().name, "PCMU");
    assert_eq!(n.streams[0].telephone_event, Some(101));
    // Re-parse of what we write.
    assert_eq!(parse(&a.to_string()), a);
}

#[test]
fn answer_amr_uses_offer_pt_and_fmtp() {
    let offer = parse(OFFER);
    let caps = local(vec![CodecSpec::amr(96, Some("octet-align=1"))], &[20000]);
    let a = answer(&offer, &caps).unwrap();
    let m = &a.media[0];
    assert_eq!(m.formats, ["97"]);
    assert_eq!(m.fmtp(97), Some("octet-align=1;mode-set=0,2,4,7"));
    assert!(a.to_string().contains("a=rtpmap:97 AMR/8000/1\r\n"));
}

#[test]
fn amr_octet_align_mismatch_does_not_match() {
    let offer = parse(OFFER);
    // Local AMR without fmtp = bandwidth-efficient; offer is octet-aligned.
    let caps = local(vec![CodecSpec::amr(96, None), CodecSpec::pcma()], &[20000]);
    let a = answer(&offer, &caps).unwrap();
    assert_eq!(a.media[0].formats, ["8"]);
    let caps = local(vec![CodecSpec::amr(96, Some("octet-align=0"))], &[20000]);
    assert_eq!(answer(&offer, &caps), Err(NegotiationError::NoCommonCodec));
}

#[test]
fn amr_mode_set_intersection() {
    let offer = parse(OFFER);
    let disjoint = local(
        vec![CodecSpec::amr(96, Some("octet-align=1;mode-set=1,3"))],
        &[1],
    );
    assert_eq!(
        answer(&offer, &disjoint),
        Err(NegotiationError::NoCommonCodec)
    );

    let narrower = local(
        vec![CodecSpec::amr(96, Some("mode-set=2,7,5; octet-align=1"))],
        &[1],
    );
    let a = answer(&offer, &narrower).unwrap();
    assert_eq!(a.media[0].fmtp(97), Some("octet-align=1;mode-set=2,7"));

    // Local without mode-set = all modes: offer's fmtp untouched.
    let all = local(vec![CodecSpec::amr(96, Some("octet-align=1"))], &[1]);
    let a = answer(&offer, &all).unwrap();
    assert_eq!(a.media[0].fmtp(97), Some("octet-align=1;mode-set=0,2,4,7"));

    // Offer without mode-set, local restricted: answer states the restriction.
    let offer = audio_offer("96", "a=rtpmap:96 AMR-WB/16000\r\n");
    let wb = local(vec![CodecSpec::amr_wb(98, Some("mode-set=8"))], &[1]);
    let a = answer(&offer, &wb).unwrap();
    assert_eq!(a.media[0].fmtp(96), Some("mode-set=8"));
    // AMR-WB does not match AMR.
    let nb = local(vec![CodecSpec::amr(98, None)], &[1]);
    assert_eq!(answer(&offer, &nb), Err(NegotiationError::NoCommonCodec));
}

#[test]
fn opus_matches_on_channels() {
    let offer = audio_offer(
        "111 0",
        "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n",
    );
    let a = answer(
        &offer,
        &local(vec![CodecSpec::opus(96), CodecSpec::pcmu()], &[1]),
    )
    .unwrap();
    assert_eq!(a.media[0].formats, ["111", "0"]);
    assert_eq!(a.media[0].fmtp(111), Some("useinbandfec=1"));
    let mono = audio_offer("111", "a=rtpmap:111 OPUS/48000\r\n");
    assert_eq!(
        answer(&mono, &local(vec![CodecSpec::opus(96)], &[1])),
        Err(NegotiationError::NoCommonCodec)
    );
}

#[test]
fn telephone_event_follows_codec_clock_rate() {
    let offer = audio_offer(
        "96 0 100 101",
        "a=rtpmap:96 AMR-WB/16000\r\na=rtpmap:100 telephone-event/8000\r\na=rtpmap:101 telephone-event/16000\r\n",
    );
    let te = CodecSpec::telephone_event(101, 8000);
    let a = answer(
        &offer,
        &local(vec![CodecSpec::amr_wb(96, None), te.clone()], &[1]),
    )
    .unwrap();
    assert_eq!(a.media[0].formats, ["96", "101"]);
    let a = answer(&offer, &local(vec![CodecSpec::pcmu(), te.clone()], &[1])).unwrap();
    assert_eq!(a.media[0].formats, ["0", "100"]);
    // Only a 48000 event offered: still better than no DTMF.
    let offer = audio_offer("8 101", "a=rtpmap:101 telephone-event/48000\r\n");
    let a = answer(&offer, &local(vec![CodecSpec::pcma(), te.clone()], &[1])).unwrap();
    assert_eq!(a.media[0].formats, ["8", "101"]);
    // Local without telephone-event: none in the answer.
    let a = answer(&offer, &local(vec![CodecSpec::pcma()], &[1])).unwrap();
    assert_eq!(a.media[0].formats, ["8"]);
}

#[test]
fn hold_directions() {
    let caps = local(vec![CodecSpec::pcmu()], &[1]);
    let dir = |extra: &str| {
        let a = answer(&audio_offer("0", extra), &caps).unwrap();
        a.media[0].direction().unwrap()
    };
    assert_eq!(dir("a=sendonly\r\n"), Direction::RecvOnly);
    assert_eq!(dir("a=recvonly\r\n"), Direction::SendOnly);
    assert_eq!(dir("a=inactive\r\n"), Direction::Inactive);
    assert_eq!(dir(""), Direction::SendRecv);

    // Local direction limits a sendrecv offer.
    let mut held = caps.clone();
    held.direction = Direction::SendOnly;
    let a = answer(&audio_offer("0", ""), &held).unwrap();
    assert_eq!(a.media[0].direction(), Some(Direction::SendOnly));
    let a = answer(&audio_offer("0", "a=sendonly\r\n"), &held).unwrap();
    assert_eq!(a.media[0].direction(), Some(Direction::Inactive));

    // RFC 2543 hold: c=0.0.0.0 with no direction attribute.
    let old = parse("v=0\r\no=- 1 2 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n");
    let a = answer(&old, &caps).unwrap();
    assert_eq!(a.media[0].direction(), Some(Direction::RecvOnly));
}

#[test]
fn rejected_streams_keep_mline_count() {
    let offer = parse("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\nm=video 5002 RTP/AVP 31\r\nm=audio 5004 RTP/AVP 18 8\r\nm=audio 5006 RTP/AVP 9\r\n");
    let caps = local(vec![CodecSpec::pcma()], &[10000, 10002, 10004, 10006]);
    let a = answer(&offer, &caps).unwrap();
    assert_eq!(a.media.len(), 4);
    let ports: Vec<u16> = a.media.iter().map(|m| m.port).collect();
    assert_eq!(ports, [0, 0, 10004, 0]);
    assert_eq!(a.media[1].media, "video");
    assert_eq!(a.media[1].formats, ["31"]);
    assert_eq!(a.media[2].formats, ["8"]);
    assert_eq!(a.media[3].formats, ["9"]);
    // Answer round-trips through our own checker.
    let n = check_answer(&offer, &a).unwrap();
    let rejected: Vec<bool> = n.streams.iter().map(|s| s.rejected).collect();
    assert_eq!(rejected, [true, true, false, true]);
    // Missing LocalStream entry rejects too.
    let a = answer(&offer, &local(vec![CodecSpec::pcma()], &[1])).unwrap_err();
    assert_eq!(a, NegotiationError::NoCommonCodec);
    // An offer with only disabled streams gets an all-rejected answer.
    let off = parse("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n");
    assert_eq!(answer(&off, &caps).unwrap().media[0].port, 0);
}

// ---- check_answer ----

#[test]
fn check_answer_extracts_negotiated_stream() {
    let offer = parse(OFFER);
    let ans = parse("v=0\r\no=bob 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 30000 RTP/AVP 97 101\r\na=rtpmap:97 AMR/8000/1\r\na=fmtp:97 octet-align=1;mode-set=2\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=recvonly\r\n");
    let n = check_answer(&offer, &ans).unwrap();
    let s = &n.streams[0];
    assert!(!s.rejected);
    assert_eq!(s.remote_addr, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))));
    assert_eq!(s.remote_port, 30000);
    let c = s.codec.as_ref().unwrap();
    assert_eq!(
        (c.payload_type, c.name.as_str(), c.clock_rate, c.channels),
        (97, "AMR", 8000, 1)
    );
    assert_eq!(c.fmtp.as_deref(), Some("octet-align=1;mode-set=2"));
    assert_eq!(s.telephone_event, Some(101));
    assert_eq!(s.direction, Direction::RecvOnly);
    assert_eq!(s.ptime, Some(20));
}

#[test]
fn check_answer_rejects_bad_answers() {
    let offer = parse(OFFER);
    let base = "v=0\r\no=bob 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n";
    let bad = |media: &str| check_answer(&offer, &parse(&format!("{base}{media}"))).unwrap_err();
    assert_eq!(
        bad("m=audio 30000 RTP/AVP 18\r\n"),
        NegotiationError::FormatNotOffered {
            index: 0,
            format: "18".into()
        }
    );
    assert_eq!(
        bad("m=audio 30000 RTP/AVP 8\r\nm=audio 30002 RTP/AVP 8\r\n"),
        NegotiationError::MediaCountMismatch {
            offered: 1,
            answered: 2
        }
    );
    assert_eq!(
        check_answer(&offer, &parse(base)).unwrap_err(),
        NegotiationError::MediaCountMismatch {
            offered: 1,
            answered: 0
        }
    );
    assert_eq!(
        bad("m=audio 30000 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\n"),
        NegotiationError::IncompatibleFormat {
            index: 0,
            payload_type: 97
        }
    );
    assert_eq!(
        bad("m=audio 30000 RTP/AVP 97\r\na=rtpmap:97 AMR/8000/1\r\n"),
        NegotiationError::IncompatibleFormat {
            index: 0,
            payload_type: 97
        },
        "absent octet-align is 0, offer said 1"
    );
    assert_eq!(
        bad("m=audio 30000 RTP/AVP 101\r\n"),
        NegotiationError::NoAudioCodec { index: 0 }
    );
    assert_eq!(
        bad("m=video 30000 RTP/AVP 8\r\n"),
        NegotiationError::MediaTypeMismatch {
            index: 0,
            offered: "audio".into(),
            answered: "video".into()
        }
    );
    let held = parse(&OFFER.replace("a=sendrecv", "a=sendonly"));
    let ans = parse(&format!("{base}m=audio 30000 RTP/AVP 8\r\na=sendonly\r\n"));
    assert_eq!(
        check_answer(&held, &ans).unwrap_err(),
        NegotiationError::DirectionMismatch {
            index: 0,
            offered: Direction::SendOnly,
            answered: Direction::SendOnly
        }
    );
    let ans = parse(&format!("{base}m=audio 30000 RTP/AVP 8\r\n"));
    assert!(
        check_answer(&held, &ans).is_err(),
        "default sendrecv answer to sendonly"
    );
    let ans = parse(&format!("{base}m=audio 30000 RTP/AVP 8\r\na=recvonly\r\n"));
    assert!(check_answer(&held, &ans).is_ok());

    let no_c =
        parse("v=0\r\no=bob 1 1 IN IP4 192.0.2.7\r\ns=-\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8\r\n");
    assert_eq!(
        check_answer(&offer, &no_c).unwrap_err(),
        NegotiationError::MissingConnection { index: 0 }
    );
    let zero = audio_offer("0", "").to_string().replace("40000", "0");
    let ans = parse(&format!("{base}m=audio 30000 RTP/AVP 0\r\n"));
    assert_eq!(
        check_answer(&parse(&zero), &ans).unwrap_err(),
        NegotiationError::RejectedStreamAccepted { index: 0 }
    );
}

// ---- the B2BUA pass-through flow ----

#[test]
fn b2bua_pass_through() {
    let offer_a = parse(OFFER);
    let mut offer_b = filter_offer(&offer_a, &["AMR", "PCMA", "telephone-event"]).unwrap();
    offer_b.set_origin(Origin::new(7, 1, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5))));
    assert_eq!(offer_b.media[0].formats, ["97", "8", "101"]);

    let answer_b = parse("v=0\r\no=bob 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 30000 RTP/AVP 97 101\r\na=rtpmap:97 AMR/8000/1\r\na=fmtp:97 octet-align=1;mode-set=2,7\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp-mux\r\n");
    let n = check_answer(&offer_b, &answer_b).unwrap();
    let caps = LocalCapabilities::from_negotiated(our_origin(), &n).unwrap();
    let answer_a = answer(&offer_a, &caps).unwrap();
    assert_eq!(
        answer_a.to_string(),
        "v=0\r\n\
o=- 42 1 IN IP4 203.0.113.5\r\n\
s=-\r\n\
c=IN IP4 192.0.2.7\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 97 101\r\n\
a=rtpmap:97 AMR/8000/1\r\n\
a=fmtp:97 octet-align=1;mode-set=2,7\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n"
    );
    check_answer(&offer_a, &answer_a).unwrap();
}

#[test]
fn anchoring_points_audio_at_the_relay_and_reads_destinations() {
    let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
                m=audio 4000 RTP/AVP 8\r\na=rtcp:4001\r\n\
                m=audio 5000 RTP/AVP 0\r\n\
                m=video 6000 RTP/AVP 96\r\n";
    let mut sdp = SessionDescription::parse(text.as_bytes()).unwrap();
    assert_eq!(
        sdp.audio_destination(),
        Some("192.0.2.10:4000".parse().unwrap())
    );
    let relay: std::net::IpAddr = "203.0.113.5".parse().unwrap();
    assert!(sdp.anchor_audio(relay, 30000));
    let out = String::from_utf8(sdp.to_bytes().to_vec()).unwrap();
    assert!(out.contains("c=IN IP4 203.0.113.5\r\n"), "{out}");
    assert!(out.contains("m=audio 30000 RTP/AVP 8"), "{out}");
    assert!(
        out.contains("m=audio 0 RTP/AVP 0"),
        "a second audio stream is not carried"
    );
    assert!(
        !out.contains("192.0.2.10\r\nt="),
        "no stale session address"
    );
    assert!(!out.contains("a=rtcp:4001"), "the old RTCP port is gone");
    assert!(out.contains("m=video 6000"), "other media untouched here");
    assert_eq!(
        sdp.audio_destination(),
        Some("203.0.113.5:30000".parse().unwrap())
    );
    // Hold the RFC 2543 way has no destination.
    let hold = SessionDescription::parse(b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n").unwrap();
    assert_eq!(hold.audio_destination(), None);
}

#[test]
fn fresh_offer_and_amr_mode_twins() {
    let o = Origin::new(7, 1, "203.0.113.5".parse().unwrap());
    let codecs = [
        CodecSpec::amr(96, Some("octet-align=1;mode-set=7")),
        CodecSpec::pcma(),
        CodecSpec::telephone_event(101, 8000),
    ];
    let mut sdp = offer(o, "203.0.113.5".parse().unwrap(), 30000, &codecs);
    let text = String::from_utf8(sdp.to_bytes().to_vec()).unwrap();
    assert!(
        text.contains("m=audio 30000 RTP/AVP 96 8 101\r\n"),
        "{text}"
    );
    assert!(
        text.contains("a=fmtp:96 octet-align=1;mode-set=7\r\n"),
        "{text}"
    );
    // Round trip through the parser: a valid offer.
    let parsed = SessionDescription::parse(text.as_bytes()).unwrap();
    assert_eq!(parsed.media[0].codecs().len(), 3);

    let pairs = add_amr_mode_twins(&mut sdp);
    assert_eq!(pairs, vec![(97, 96)]);
    let text = String::from_utf8(sdp.to_bytes().to_vec()).unwrap();
    assert!(
        text.contains("m=audio 30000 RTP/AVP 96 97 8 101\r\n"),
        "{text}"
    );
    assert!(text.contains("a=rtpmap:97 AMR/8000\r\n"), "{text}");
    assert!(
        text.contains("a=fmtp:97 mode-set=7\r\n"),
        "the twin is bandwidth-efficient: {text}"
    );
    // An answerer that only does bandwidth-efficient AMR now finds a match.
    let caps = LocalCapabilities::new(
        Origin::new(9, 1, "192.0.2.9".parse().unwrap()),
        "192.0.2.9".parse().unwrap(),
        vec![CodecSpec::amr(0, None)],
        &[4000],
    );
    let answer = answer(&sdp, &caps).unwrap();
    let n = check_answer(&sdp, &answer).unwrap();
    assert_eq!(n.streams[0].codec.as_ref().unwrap().payload_type, 97);
}
