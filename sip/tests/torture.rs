//! RFC 4475 and RFC 5118 torture messages against the parser, one test per
//! file. The files in `tests/data/` are byte-exact copies (see the READMEs and
//! SHA256SUMS there); MANIFEST.txt says what each must produce.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use bytes::Bytes;
use sip::message::{
    parse_datagram, parse_message, HeaderName, Message, Method, ParseErrorKind, Uri,
};

fn load(path: &str) -> Bytes {
    let full = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}")))
}

fn ok(path: &str) -> Message {
    match parse_datagram(load(path)) {
        Ok(m) => m,
        Err(e) => panic!("{path} must parse, got {e}"),
    }
}

fn req(path: &str) -> sip::message::Request {
    match ok(path) {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{path}: expected a request"),
    }
}

fn rejected(path: &str) -> ParseErrorKind {
    match parse_datagram(load(path)) {
        Ok(m) => panic!("{path} must be rejected, parsed as {m:?}"),
        Err(e) => e.kind,
    }
}

/// A rejected request must still yield the headers needed to answer 400.
fn rejected_answerable(path: &str) -> ParseErrorKind {
    let err = parse_datagram(load(path)).expect_err(path);
    let partial = err
        .request
        .as_ref()
        .unwrap_or_else(|| panic!("{path}: no partial request"));
    assert!(
        partial.headers.get(&HeaderName::Via).is_some(),
        "{path}: Via kept"
    );
    err.kind
}

// ---- RFC 4475 §3.1.1: valid messages ----

#[test]
fn rfc4475_wsinv() {
    let r = req("rfc4475/wsinv.dat");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.core.cseq.seq, 9);
    assert_eq!(r.core.max_forwards, Some(68));
    assert_eq!(r.core.to.tag().map(|t| t.as_str()), Some("1918181833n"));
    assert_eq!(r.core.from.tag().map(|t| t.as_str()), Some("98asjd8"));
    assert_eq!(r.core.via.branch(), Some("390skdjuw"));
    assert_eq!(r.headers.values(&HeaderName::Via).count(), 3);
    assert_eq!(
        r.headers
            .get(&HeaderName::Other("NewFangledHeader".into()))
            .map(|v| v.as_str()),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        r.headers
            .get(&HeaderName::Other("UnknownHeaderWithUnusualValue".into()))
            .map(|v| v.as_str()),
        Some(";;,,;;,;")
    );
    assert_eq!(r.body.len(), 150);
}

#[test]
fn rfc4475_intmeth() {
    let r = req("rfc4475/intmeth.dat");
    assert_eq!(
        r.method.as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    assert!(matches!(r.method, Method::Other(_)));
    let uri = r.uri.as_sip().unwrap();
    assert_eq!(
        uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        uri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(
        r.core.call_id.as_str(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert!(r.core.to.display.as_deref().unwrap().contains('\u{0}'));
}

#[test]
fn rfc4475_esc01() {
    let r = req("rfc4475/esc01.dat");
    let user = r.uri.as_sip().unwrap().user_unescaped().unwrap();
    assert_eq!(user, b"sips:user@example.com");
    let to = r.core.to.uri.as_sip().unwrap();
    assert_eq!(to.user.as_deref(), Some("%75se%72"));
    assert_eq!(to.user_unescaped().unwrap(), b"user");
}

#[test]
fn rfc4475_escnull() {
    let r = req("rfc4475/escnull.dat");
    let to = r.core.to.uri.as_sip().unwrap().user_unescaped().unwrap();
    assert!(to.contains(&0), "NUL kept, not truncated");
    assert_eq!(r.headers.values(&HeaderName::Contact).count(), 2);
}

#[test]
fn rfc4475_esc02() {
    let r = req("rfc4475/esc02.dat");
    assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
    assert_eq!(
        r.headers.values(&HeaderName::Contact).count(),
        2,
        "C%6Fntact is not Contact"
    );
}

#[test]
fn rfc4475_lwsdisp() {
    let r = req("rfc4475/lwsdisp.dat");
    assert_eq!(r.core.from.display.as_deref(), Some("caller"));
}

#[test]
fn rfc4475_longreq() {
    let r = req("rfc4475/longreq.dat");
    assert!(r.core.call_id.len() > 100);
    assert!(r.core.from.tag().unwrap().len() > 100);
    assert!(r.core.to.display.as_deref().unwrap().len() > 100);
}

#[test]
fn rfc4475_dblreq() {
    let r = req("rfc4475/dblreq.dat");
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty(), "trailing INVITE-looking octets ignored");
}

#[test]
fn rfc4475_semiuri() {
    let r = req("rfc4475/semiuri.dat");
    assert_eq!(r.method, Method::Options);
    let user = r.uri.as_sip().unwrap().user_unescaped().unwrap();
    assert_eq!(user, b"user;par=u@example.net");
}

#[test]
fn rfc4475_transports() {
    let r = req("rfc4475/transports.dat");
    let vias: Vec<_> = r.headers.values(&HeaderName::Via).collect();
    assert_eq!(vias.len(), 5);
    assert_eq!(r.core.via.transport, "UDP");
}

#[test]
fn rfc4475_mpart01() {
    let r = req("rfc4475/mpart01.dat");
    assert_eq!(r.body.len(), 553);
    assert!(r.body.contains(&0));
}

#[test]
fn rfc4475_unreason() {
    match ok("rfc4475/unreason.dat") {
        Message::Response(r) => {
            assert_eq!(r.status, 200);
            assert!(!r.reason.is_ascii());
        }
        Message::Request(_) => panic!("response expected"),
    }
}

#[test]
fn rfc4475_noreason() {
    match ok("rfc4475/noreason.dat") {
        Message::Response(r) => {
            assert_eq!(r.status, 100);
            assert_eq!(r.reason.as_str(), "");
        }
        Message::Request(_) => panic!("response expected"),
    }
}

// ---- RFC 4475 §3.1.2: invalid messages ----

#[test]
fn rfc4475_badinv01() {
    assert!(matches!(
        rejected_answerable("rfc4475/badinv01.dat"),
        ParseErrorKind::BadHeader { .. }
    ));
}

#[test]
fn rfc4475_clerr() {
    assert!(matches!(
        rejected_answerable("rfc4475/clerr.dat"),
        ParseErrorKind::BodyTruncated { declared: 9999, .. }
    ));
}

#[test]
fn rfc4475_ncl() {
    assert_eq!(
        rejected_answerable("rfc4475/ncl.dat"),
        ParseErrorKind::BadContentLength
    );
}

#[test]
fn rfc4475_scalar02() {
    assert!(matches!(
        rejected_answerable("rfc4475/scalar02.dat"),
        ParseErrorKind::BadHeader { header: "CSeq", .. }
    ));
}

#[test]
fn rfc4475_scalarlg() {
    let err = parse_datagram(load("rfc4475/scalarlg.dat")).unwrap_err();
    assert!(
        err.request.is_none(),
        "a response is dropped, never answered"
    );
}

#[test]
fn rfc4475_quotbal() {
    rejected_answerable("rfc4475/quotbal.dat");
}

#[test]
fn rfc4475_ltgtruri() {
    assert!(matches!(
        rejected_answerable("rfc4475/ltgtruri.dat"),
        ParseErrorKind::BadUri(_)
    ));
}

#[test]
fn rfc4475_lwsruri() {
    rejected_answerable("rfc4475/lwsruri.dat");
}

#[test]
fn rfc4475_lwsstart() {
    rejected_answerable("rfc4475/lwsstart.dat");
}

#[test]
fn rfc4475_trws() {
    rejected_answerable("rfc4475/trws.dat");
}

#[test]
fn rfc4475_escruri() {
    assert_eq!(
        rejected_answerable("rfc4475/escruri.dat"),
        ParseErrorKind::BadUri("headers in Request-URI")
    );
}

#[test]
fn rfc4475_baddate() {
    // The Date value does not matter to us, so the request is processed.
    assert_eq!(req("rfc4475/baddate.dat").method, Method::Invite);
}

#[test]
fn rfc4475_regbadct() {
    rejected_answerable("rfc4475/regbadct.dat");
}

#[test]
fn rfc4475_badaspec() {
    rejected_answerable("rfc4475/badaspec.dat");
}

#[test]
fn rfc4475_baddn() {
    rejected_answerable("rfc4475/baddn.dat");
}

#[test]
fn rfc4475_badvers() {
    assert_eq!(
        rejected_answerable("rfc4475/badvers.dat"),
        ParseErrorKind::UnsupportedVersion
    );
}

#[test]
fn rfc4475_mismatch01() {
    // Syntactically fine; the UAS rejects the CSeq/method mismatch with 400.
    let r = req("rfc4475/mismatch01.dat");
    assert_eq!(r.method, Method::Options);
    assert_eq!(r.core.cseq.method, Method::Invite);
}

#[test]
fn rfc4475_mismatch02() {
    let r = req("rfc4475/mismatch02.dat");
    assert_eq!(r.method, Method::Other("NEWMETHOD".into()));
}

#[test]
fn rfc4475_bigcode() {
    let err = parse_datagram(load("rfc4475/bigcode.dat")).unwrap_err();
    assert!(matches!(err.kind, ParseErrorKind::BadStartLine(_)));
    assert!(err.request.is_none());
}

// ---- RFC 4475 §3.2–3.4 ----

#[test]
fn rfc4475_badbranch() {
    let r = req("rfc4475/badbranch.dat");
    assert_eq!(r.core.via.branch(), Some("z9hG4bK"));
    assert_eq!(
        r.core.rfc3261_branch(),
        None,
        "falls back to RFC 2543 matching"
    );
}

#[test]
fn rfc4475_insuf() {
    assert!(matches!(
        rejected_answerable("rfc4475/insuf.dat"),
        ParseErrorKind::MissingHeader(_)
    ));
}

#[test]
fn rfc4475_unkscm() {
    assert!(matches!(req("rfc4475/unkscm.dat").uri, Uri::Other { .. }));
}

#[test]
fn rfc4475_novelsc() {
    assert!(matches!(req("rfc4475/novelsc.dat").uri, Uri::Other { .. }));
}

#[test]
fn rfc4475_unksm2() {
    let r = req("rfc4475/unksm2.dat");
    assert!(matches!(r.core.to.uri, Uri::Other { .. }));
    assert!(matches!(r.core.from.uri, Uri::Other { .. }));
}

#[test]
fn rfc4475_bext01() {
    let r = req("rfc4475/bext01.dat");
    assert!(r.headers.get(&HeaderName::Require).is_some());
    assert!(r.headers.get(&HeaderName::ProxyRequire).is_some());
}

#[test]
fn rfc4475_invut() {
    assert_eq!(
        req("rfc4475/invut.dat").content_type().as_deref(),
        Some("application/unknownformat")
    );
}

#[test]
fn rfc4475_regaut01() {
    assert!(req("rfc4475/regaut01.dat")
        .headers
        .get(&HeaderName::Authorization)
        .is_some());
}

#[test]
fn rfc4475_multi01() {
    assert!(matches!(
        rejected_answerable("rfc4475/multi01.dat"),
        ParseErrorKind::DuplicateHeader(_)
    ));
}

#[test]
fn rfc4475_mcl01() {
    assert_eq!(
        rejected_answerable("rfc4475/mcl01.dat"),
        ParseErrorKind::BadContentLength
    );
}

#[test]
fn rfc4475_bcast() {
    assert!(matches!(ok("rfc4475/bcast.dat"), Message::Response(_)));
}

#[test]
fn rfc4475_zeromf() {
    assert_eq!(req("rfc4475/zeromf.dat").core.max_forwards, Some(0));
}

#[test]
fn rfc4475_cparam01() {
    let r = req("rfc4475/cparam01.dat");
    let contact = r.headers.get(&HeaderName::Contact).unwrap();
    let na = sip::message::NameAddr::parse(contact, contact).unwrap();
    assert!(na.params.has("unknownparam"), "a contact-param");
    assert!(!na.uri.as_sip().unwrap().params.has("unknownparam"));
}

#[test]
fn rfc4475_cparam02() {
    let r = req("rfc4475/cparam02.dat");
    let contact = r.headers.get(&HeaderName::Contact).unwrap();
    let na = sip::message::NameAddr::parse(contact, contact).unwrap();
    assert!(
        na.uri.as_sip().unwrap().params.has("unknownparam"),
        "a url-param"
    );
}

#[test]
fn rfc4475_regescrt() {
    let r = req("rfc4475/regescrt.dat");
    let contact = r.headers.get(&HeaderName::Contact).unwrap();
    let na = sip::message::NameAddr::parse(contact, contact).unwrap();
    assert!(na
        .uri
        .as_sip()
        .unwrap()
        .headers
        .as_deref()
        .unwrap()
        .starts_with("Route="));
}

#[test]
fn rfc4475_sdp01() {
    let r = req("rfc4475/sdp01.dat");
    assert_eq!(
        r.headers.get(&HeaderName::Accept).map(|v| v.as_str()),
        Some("text/nobodyKnowsThis")
    );
}

#[test]
fn rfc4475_inv2543() {
    let r = req("rfc4475/inv2543.dat");
    assert!(r.core.via.branch().is_none());
    assert!(r.core.from.tag().is_none());
    assert!(r.core.max_forwards.is_none());
    assert!(
        !r.body.is_empty(),
        "no Content-Length on UDP: body is the rest"
    );
}

#[test]
fn rfc4475_unreferenced_test_dat_does_not_panic() {
    let _ = parse_datagram(load("rfc4475/unreferenced/test.dat"));
}

#[test]
fn rfc4475_every_file_over_stream_framing_never_panics() {
    let dir = format!("{}/tests/data/rfc4475", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "dat") {
            let bytes = std::fs::read(&path).unwrap();
            // Every prefix, as a TCP peer might deliver it.
            for cut in 0..=bytes.len() {
                let prefix = bytes.get(..cut).unwrap();
                if let sip::message::StreamFrame::Complete { len } =
                    sip::message::frame_stream(prefix, 65535)
                {
                    let _ =
                        parse_message(Bytes::copy_from_slice(prefix.get(..len).unwrap()), false);
                }
                let _ = parse_datagram(Bytes::copy_from_slice(prefix));
            }
        }
    }
}

// ---- RFC 5118 ----

fn v6(name: &str) -> Message {
    ok(&format!("rfc5118/wire/{name}"))
}

#[test]
fn rfc5118_ipv6_good() {
    let m = v6("ipv6-good");
    assert!(matches!(m.core().via.host, sip::message::Host::Ipv6(_)));
}

#[test]
fn rfc5118_ipv6_bad() {
    assert!(matches!(
        rejected("rfc5118/wire/ipv6-bad"),
        ParseErrorKind::BadUri(_)
    ));
}

#[test]
fn rfc5118_port_ambiguous() {
    let Message::Request(r) = v6("port-ambiguous") else {
        panic!()
    };
    assert_eq!(r.uri.as_sip().unwrap().port, None);
}

#[test]
fn rfc5118_port_unambiguous() {
    let Message::Request(r) = v6("port-unambiguous") else {
        panic!()
    };
    assert_eq!(r.uri.as_sip().unwrap().port, Some(5070));
}

#[test]
fn rfc5118_via_received_with_and_without_brackets() {
    assert!(v6("via-received-param-with-delim")
        .core()
        .via
        .received()
        .is_some());
    assert!(v6("via-received-param-no-delim")
        .core()
        .via
        .received()
        .is_some());
}

#[test]
fn rfc5118_ipv6_in_sdp() {
    let Message::Request(r) = v6("ipv6-in-sdp") else {
        panic!()
    };
    assert!(!r.body.is_empty());
}

#[test]
fn rfc5118_mult_ip_in_header() {
    let m = v6("mult-ip-in-header");
    assert_eq!(m.headers().values(&HeaderName::Via).count(), 3);
}

#[test]
fn rfc5118_mult_ip_in_sdp() {
    v6("mult-ip-in-sdp");
}

#[test]
fn rfc5118_ipv4_mapped_ipv6() {
    v6("ipv4-mapped-ipv6");
}

#[test]
fn rfc5118_ipv6_abnf_three_colons_tolerated() {
    v6("ipv6-bug-abnf-3-colons");
}

#[test]
fn rfc5118_ipv6_abnf_two_colons() {
    v6("ipv6-correct-abnf-2-colons");
}
