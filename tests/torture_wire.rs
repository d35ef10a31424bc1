#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Every RFC 4475 and RFC 5118 torture message, sent over UDP and over TCP to
//! the real `softswitch` binary, with the answer checked against what the
//! switch's rules predict (see `EXPECTED`).
//!
//! The switch is started with no trunks, so an INVITE from 127.0.0.1 that
//! gets through every check is answered 100 Trying and then 403.
//!
//! UDP: responses go to the source IP and the port of the top Via (5060 when
//! absent, the source port with `rport`, RFC 3261 §18.2.2 / RFC 3581), so the
//! test binds 127.0.0.1:5060 (and the other ports some top Vias name) and
//! sends every datagram from the 5060 socket. Only one test function touches
//! UDP so only one socket ever holds 5060.
//!
//! TCP: every message on a new connection; the answer comes back on it.
//!
//! Several vectors share a transaction key (same branch and sent-by: e.g.
//! escnull/regescrt, cparam01/cparam02, most RFC 5118 files) or a Call-ID.
//! To the switch the second one is a retransmission (RFC 3261 §17.2.3), which
//! is right but not what we want to test, so the vectors are split into
//! rounds in which keys and Call-IDs are unique, each round against a fresh
//! switch. The first round holds most vectors; after each round the switch
//! must still answer OPTIONS over UDP and TCP, and after the first its
//! `/metrics` must count parse errors.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sip/tests/data/");

/// How long to listen when no answer is expected.
const SILENCE_WAIT: Duration = Duration::from_millis(1500);
/// How long to wait for an expected answer.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the switch to close a TCP connection (idle timeout 2 s).
const CLOSE_WAIT: Duration = Duration::from_secs(6);
/// A close sooner than this is a framing close, later an idle-timeout close.
const IDLE_SPLIT: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The first final response has this status (no 100 Trying before it).
    Final(u16),
    /// 100 Trying, then this final status (an INVITE that reached the B2BUA).
    Trying(u16),
    /// Nothing at all comes back.
    Silence,
    /// TCP: the connection is closed at once, without a response (framing error).
    Closed,
    /// TCP: no response; the connection is closed by the idle timeout (2 s).
    IdleClosed,
}
use Outcome::{Closed, Final, IdleClosed, Silence, Trying};

struct Expect {
    udp: Outcome,
    tcp: Outcome,
    why: &'static str,
}

const fn both(o: Outcome, why: &'static str) -> Expect {
    Expect {
        udp: o,
        tcp: o,
        why,
    }
}

const fn split(udp: Outcome, tcp: Outcome, why: &'static str) -> Expect {
    Expect { udp, tcp, why }
}

/// Paths are relative to `sip/tests/data/`.
const EXPECTED: &[(&str, Expect)] = &[
    // ---- RFC 4475 §3.1.1: valid messages
    ("rfc4475/wsinv.dat", both(Final(481), "valid INVITE (folding, odd LWS) whose To has a tag: no such dialog -> 481, checked before the trunk 403")),
    ("rfc4475/intmeth.dat", both(Final(501), "valid request with an unknown token method -> 501")),
    ("rfc4475/esc01.dat", both(Trying(403), "valid INVITE with %HEX escapes, no To tag, from a non-trunk -> 100, 403")),
    ("rfc4475/escnull.dat", both(Final(405), "valid REGISTER with %00 in URIs -> 405 (REGISTER not implemented)")),
    ("rfc4475/esc02.dat", both(Final(501), "RE%47IST%45R is an unknown method, not REGISTER -> 501")),
    ("rfc4475/lwsdisp.dat", both(Final(200), "valid OPTIONS (no LWS before '<') -> 200")),
    ("rfc4475/longreq.dat", both(Trying(403), "valid ~3.5 KB INVITE, no To tag, from a non-trunk -> 100, 403")),
    ("rfc4475/dblreq.dat", both(Final(405), "REGISTER then INVITE-like octets: UDP ignores the rest, TCP frames a 2nd message; 1st answer 405")),
    ("rfc4475/semiuri.dat", both(Final(200), "valid OPTIONS with ';' in the R-URI user part -> 200")),
    ("rfc4475/transports.dat", both(Final(200), "valid OPTIONS with Vias of all transports -> 200")),
    ("rfc4475/mpart01.dat", both(Final(405), "valid MESSAGE with binary multipart body -> 405 (MESSAGE not implemented)")),
    ("rfc4475/unreason.dat", both(Silence, "200 response matching no transaction: dropped")),
    ("rfc4475/noreason.dat", both(Silence, "100 response (empty reason) matching no transaction: dropped")),
    // ---- RFC 4475 §3.1.2: invalid messages
    ("rfc4475/badinv01.dat", both(Final(400), "';;,;,,' in Via and ';;;;' in Contact: malformed -> 400")),
    ("rfc4475/clerr.dat", split(Final(400), IdleClosed, "Content-Length 9999 > body: UDP 400; TCP waits for the bytes, closes on idle")),
    ("rfc4475/ncl.dat", split(Final(400), Closed, "Content-Length -999: UDP 400; TCP framing lost -> close, no answer")),
    ("rfc4475/scalar02.dat", both(Final(400), "CSeq number > 2^32-1 -> 400")),
    ("rfc4475/scalarlg.dat", both(Silence, "503 response with overlarge CSeq: malformed response, dropped")),
    ("rfc4475/quotbal.dat", both(Final(400), "unterminated quoted string in To -> 400")),
    ("rfc4475/ltgtruri.dat", both(Final(400), "Request-URI in '<>' -> 400")),
    ("rfc4475/lwsruri.dat", both(Final(400), "LWS inside the Request-URI -> 400")),
    ("rfc4475/lwsstart.dat", both(Final(400), "several SP between request-line elements -> 400")),
    ("rfc4475/trws.dat", both(Final(400), "trailing SP after SIP-Version -> 400")),
    ("rfc4475/escruri.dat", both(Final(400), "escaped headers in the Request-URI -> 400")),
    ("rfc4475/baddate.dat", both(Trying(403), "non-GMT Date is ignored; valid INVITE from a non-trunk -> 100, 403")),
    ("rfc4475/regbadct.dat", both(Final(400), "Contact URI with '?' headers outside '<>' -> 400")),
    ("rfc4475/badaspec.dat", both(Final(400), "spaces inside '< addr-spec >' in To -> 400")),
    ("rfc4475/baddn.dat", split(Final(400), IdleClosed, "unquoted ',' in display names -> UDP 400; no empty line, so TCP waits and closes on idle")),
    ("rfc4475/badvers.dat", both(Final(505), "well-formed SIP/7.0 -> 505")),
    ("rfc4475/mismatch01.dat", both(Final(400), "OPTIONS with CSeq method INVITE -> 400")),
    ("rfc4475/mismatch02.dat", both(Final(501), "unknown method NEWMETHOD (CSeq INVITE): 501 is checked first")),
    ("rfc4475/bigcode.dat", both(Silence, "status code 4294967301: malformed response, dropped")),
    // ---- RFC 4475 §3.2 - §3.4
    ("rfc4475/badbranch.dat", both(Final(200), "branch is the bare cookie: valid, RFC 2543 matching; OPTIONS -> 200")),
    ("rfc4475/insuf.dat", both(Final(400), "INVITE without Call-ID/From/To -> 400 (Via is there to answer to)")),
    ("rfc4475/unkscm.dat", both(Final(416), "OPTIONS to an unknown URI scheme -> 416")),
    ("rfc4475/novelsc.dat", both(Final(416), "OPTIONS to soap.beep: -> 416")),
    ("rfc4475/unksm2.dat", both(Final(405), "REGISTER with non-SIP To/From/Contact: 405 comes before any URI check")),
    ("rfc4475/bext01.dat", both(Final(420), "OPTIONS with Require -> 420 with Unsupported")),
    ("rfc4475/invut.dat", both(Final(415), "INVITE with an application/unknownformat body -> 415")),
    ("rfc4475/regaut01.dat", both(Final(405), "REGISTER with an unknown auth scheme -> 405")),
    ("rfc4475/multi01.dat", both(Final(400), "repeated Call-ID/To/From/CSeq/Max-Forwards -> 400")),
    ("rfc4475/mcl01.dat", split(Final(400), Closed, "two different Content-Length: UDP 400; TCP framing lost -> close, no answer")),
    ("rfc4475/bcast.dat", both(Silence, "200 response with a broadcast 2nd Via, no transaction: dropped")),
    ("rfc4475/zeromf.dat", both(Final(200), "OPTIONS with Max-Forwards 0: we are the UAS -> 200 (483 is for INVITE only)")),
    ("rfc4475/cparam01.dat", both(Final(405), "REGISTER -> 405")),
    ("rfc4475/cparam02.dat", both(Final(405), "REGISTER -> 405")),
    ("rfc4475/regescrt.dat", both(Final(405), "REGISTER -> 405")),
    ("rfc4475/sdp01.dat", both(Final(406), "INVITE whose Accept lacks application/sdp -> 406")),
    ("rfc4475/inv2543.dat", both(Trying(403), "RFC 2543 INVITE (no branch/tag/CL/MF), from a non-trunk -> 100, 403")),
    ("rfc4475/unreferenced/test.dat", both(Silence, "no SIP-Version, no Via, header line without ':': unparseable and nowhere to answer")),
    // ---- RFC 5118 (wire copies: Content-Length fixed)
    ("rfc5118/wire/ipv4-mapped-ipv6", both(Trying(403), "INVITE with ::ffff: addresses, from a non-trunk -> 100, 403 (UDP: to Via port 19823)")),
    ("rfc5118/wire/ipv6-bad", both(Final(400), "R-URI sip:2001:db8::10 without brackets -> 400")),
    ("rfc5118/wire/ipv6-bug-abnf-3-colons", both(Final(200), "OPTIONS to [2001:db8:::192.0.2.1] (tolerated) -> 200")),
    ("rfc5118/wire/ipv6-correct-abnf-2-colons", both(Final(200), "OPTIONS to [2001:db8::192.0.2.1] -> 200")),
    ("rfc5118/wire/ipv6-good", both(Final(405), "REGISTER with bracketed IPv6 -> 405")),
    ("rfc5118/wire/ipv6-in-sdp", both(Trying(403), "INVITE with IN IP6 SDP, from a non-trunk -> 100, 403")),
    ("rfc5118/wire/mult-ip-in-header", both(Final(481), "BYE with a To tag, no such dialog -> 481 (UDP: to Via port 6050)")),
    ("rfc5118/wire/mult-ip-in-sdp", both(Trying(403), "INVITE with IPv4+IPv6 SDP, from a non-trunk -> 100, 403")),
    ("rfc5118/wire/port-ambiguous", both(Final(405), "REGISTER sip:[2001:db8::10:5070] -> 405")),
    ("rfc5118/wire/port-unambiguous", both(Final(405), "REGISTER sip:[2001:db8::10]:5070 -> 405")),
    ("rfc5118/wire/via-received-param-no-delim", both(Final(200), "OPTIONS, Via received= without brackets -> 200")),
    ("rfc5118/wire/via-received-param-with-delim", both(Final(481), "BYE with a To tag, no such dialog -> 481")),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Transport {
    Udp,
    Tcp,
}

/// Cases where the switch is known to answer differently from the rules.
/// Each is still run and printed; it fails the test only if it starts to pass
/// (so the entry gets removed). Empty means the switch follows every rule.
const KNOWN_MISMATCHES: &[(&str, Transport)] = &[];

// ---------------------------------------------------------------------------
// The switch process
// ---------------------------------------------------------------------------

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Kills the child (SIGTERM, then SIGKILL after 5 s) when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Switch {
    udp: SocketAddr,
    tcp: SocketAddr,
    http: SocketAddr,
    dir: PathBuf,
    child: Option<ChildGuard>,
}

impl Drop for Switch {
    fn drop(&mut self) {
        drop(self.child.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Switch {
    fn start(tag: &str) -> Switch {
        let dir = std::env::temp_dir().join(format!(
            "torture-wire-{}-{tag}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("softswitch.toml");
        std::fs::write(
            &config,
            "[sip]\nlisten = \"127.0.0.1:0\"\ntcp_idle_timeout_s = 2\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_softswitch"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .current_dir(&dir)
            .env("SOFTSWITCH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, _) in std::env::vars() {
            if k.starts_with("SOFTSWITCH_") && k != "SOFTSWITCH_LOG" {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("spawn softswitch");
        let stdout = child.stdout.take().unwrap();
        let guard = ChildGuard(child);
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (mut udp, mut tcp, mut http) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while udp.is_none() || tcp.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => panic!("softswitch did not print its listeners ({e:?})"),
            };
            let addr = |prefix: &str| {
                line.strip_prefix(prefix)
                    .map(|a| a.trim().parse::<SocketAddr>().expect("listener address"))
            };
            if let Some(a) = addr("sip udp ") {
                udp = Some(a);
            } else if let Some(a) = addr("sip tcp ") {
                tcp = Some(a);
            } else if let Some(a) = addr("http ") {
                http = Some(a);
            }
        }
        Switch {
            udp: udp.unwrap(),
            tcp: tcp.unwrap(),
            http: http.unwrap(),
            dir,
            child: Some(guard),
        }
    }

    fn assert_running(&mut self) {
        let guard = self.child.as_mut().unwrap();
        if let Ok(Some(status)) = guard.0.try_wait() {
            panic!("softswitch exited: {status}");
        }
    }
}

// ---------------------------------------------------------------------------
// What we know of the messages we send and receive (deliberately simple text
// handling, independent of the parser under test)
// ---------------------------------------------------------------------------

/// Header lines of a message head, unfolded, names as written.
fn head_headers(msg: &[u8]) -> (String, Vec<(String, String)>) {
    let end = find(msg, b"\r\n\r\n").unwrap_or(msg.len());
    let head = String::from_utf8_lossy(&msg[..end]);
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default().to_owned();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    (start, headers)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_header(name: &str, long: &str, short: &str) -> bool {
    name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
}

fn values<'a>(headers: &'a [(String, String)], long: &str, short: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| is_header(n, long, short))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// What the test needs to know about a vector.
struct Vector {
    method: String,
    ruri: String,
    call_ids: Vec<String>,
    /// The CSeq method, so an answer to a second message framed from the same
    /// bytes (dblreq over TCP: same Call-ID, CSeq 8 INVITE) is not credited to it.
    cseq_method: Option<String>,
    /// Port the rules say a UDP transaction response goes to (the top Via's
    /// port, 5060 when absent, our source port 5060 with rport).
    udp_reply_port: u16,
    /// Keys that must be unique within one run of the switch.
    keys: Vec<String>,
}

impl Vector {
    fn read(bytes: &[u8]) -> Vector {
        let (start, headers) = head_headers(bytes);
        let is_request = !start.starts_with("SIP/");
        let mut parts = start.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let ruri = parts.next().unwrap_or_default().to_owned();
        let call_ids: Vec<String> = values(&headers, "call-id", "i")
            .into_iter()
            .map(str::to_owned)
            .collect();
        let cseq_method = values(&headers, "cseq", "cseq")
            .first()
            .and_then(|c| c.split_whitespace().nth(1))
            .map(str::to_owned);
        let top_via = values(&headers, "via", "v")
            .first()
            .map(|v| v.split(',').next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let mut params = top_via.split(';');
        let sent_by = params
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut branch = String::new();
        let mut rport = false;
        for p in params {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            if n.trim().eq_ignore_ascii_case("branch") {
                branch = v.trim().to_owned();
            }
            if n.trim().eq_ignore_ascii_case("rport") {
                rport = true;
            }
        }
        let port: Option<u16> = if let Some(rest) = sent_by.strip_prefix('[') {
            rest.split_once("]:").and_then(|(_, p)| p.parse().ok())
        } else {
            sent_by.split_once(':').and_then(|(_, p)| p.parse().ok())
        };
        let udp_reply_port = if rport { 5060 } else { port.unwrap_or(5060) };
        let mut keys: Vec<String> = call_ids.iter().map(|c| format!("call-id {c}")).collect();
        if call_ids.is_empty() {
            keys.push("no call-id".to_owned());
        }
        if is_request && branch.len() > 7 && branch.starts_with("z9hG4bK") {
            let host = match port {
                Some(_) => sent_by.clone(),
                None => format!("{sent_by}:5060"),
            };
            let method_key = if method == "ACK" { "INVITE" } else { &method };
            keys.push(format!("txn {branch} {host} {method_key}"));
        }
        Vector {
            method,
            ruri,
            call_ids,
            cseq_method,
            udp_reply_port,
            keys,
        }
    }
}

/// A response from the switch.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    text: String,
}

impl Resp {
    fn parse(bytes: &[u8]) -> Option<Resp> {
        let (start, headers) = head_headers(bytes);
        let status = start.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        Some(Resp {
            status,
            headers,
            text: String::from_utf8_lossy(bytes).into_owned(),
        })
    }

    fn get(&self, long: &str, short: &str) -> Option<&str> {
        values(&self.headers, long, short).first().copied()
    }

    fn call_ids(&self) -> Vec<&str> {
        values(&self.headers, "call-id", "i")
    }

    /// Whether this answers `v` (same Call-ID; or neither has one).
    fn answers(&self, v: &Vector) -> bool {
        let mine = self.call_ids();
        if v.call_ids.is_empty() {
            return mine.is_empty();
        }
        let method = self
            .get("cseq", "cseq")
            .and_then(|c| c.split_whitespace().nth(1));
        let same_method = match (method, v.cseq_method.as_deref()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        same_method && mine.iter().any(|c| v.call_ids.iter().any(|o| o == c))
    }

    /// ACK for a non-2xx final response to an INVITE (RFC 3261 §17.1.1.3).
    fn ack(&self, ruri: &str) -> Option<String> {
        let via = self.get("via", "v")?;
        let via: Vec<&str> = via
            .split(';')
            .filter(|p| !p.trim().to_ascii_lowercase().starts_with("received="))
            .collect();
        let cseq = self.get("cseq", "cseq")?.split_whitespace().next()?;
        Some(format!(
            "ACK {ruri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            via.join(";"),
            self.get("from", "f")?,
            self.get("to", "t")?,
            self.get("call-id", "i")?,
        ))
    }
}

/// Splits complete messages off the front of a TCP receive buffer.
fn take_stream_message(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    while buf.starts_with(b"\r\n") {
        buf.drain(..2);
    }
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let (_, headers) = head_headers(&buf[..head_end]);
    let cl: usize = values(&headers, "content-length", "l")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < head_end + cl {
        return None;
    }
    Some(buf.drain(..head_end + cl).collect())
}

// ---------------------------------------------------------------------------
// Running one vector
// ---------------------------------------------------------------------------

#[derive(Default, Debug)]
struct Observed {
    provisional: Vec<u16>,
    final_resp: Option<Resp>,
    /// TCP: closed by the switch after this long.
    closed_after: Option<Duration>,
    /// UDP: the port the final response arrived on.
    port: Option<u16>,
}

impl Observed {
    fn outcome(&self) -> Outcome {
        if let Some(f) = &self.final_resp {
            return if self.provisional.contains(&100) {
                Trying(f.status)
            } else {
                Final(f.status)
            };
        }
        match self.closed_after {
            Some(d) if d < IDLE_SPLIT => Closed,
            Some(_) => IdleClosed,
            None => Silence,
        }
    }
}

fn wait_for(expect: Outcome) -> Duration {
    match expect {
        Silence => SILENCE_WAIT,
        Closed | IdleClosed => CLOSE_WAIT,
        Final(_) | Trying(_) => ANSWER_WAIT,
    }
}

struct UdpSide {
    /// Every socket a response may be addressed to; [0] is 127.0.0.1:5060.
    sockets: Vec<UdpSocket>,
}

impl UdpSide {
    fn bind() -> UdpSide {
        let ports: Vec<u16> = {
            let mut p = vec![5060];
            for (file, _) in EXPECTED {
                let v = Vector::read(&std::fs::read(format!("{DATA}{file}")).unwrap());
                if !p.contains(&v.udp_reply_port) {
                    p.push(v.udp_reply_port);
                }
            }
            p
        };
        let sockets = ports
            .iter()
            .map(|&port| {
                let mut last = None;
                for _ in 0..20 {
                    match UdpSocket::bind(("127.0.0.1", port)) {
                        Ok(s) => {
                            s.set_nonblocking(true).unwrap();
                            return s;
                        }
                        Err(e) => last = Some(e),
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                panic!(
                    "cannot bind UDP 127.0.0.1:{port} ({:?}). The torture vectors' Vias name no \
                     port (or :{port}), so per RFC 3261 §18.2.2 the switch answers to that port: \
                     free it (another SIP process?) and rerun",
                    last
                );
            })
            .collect();
        UdpSide { sockets }
    }

    fn drain(&self) {
        let mut buf = [0u8; 65536];
        for s in &self.sockets {
            while s.recv_from(&mut buf).is_ok() {}
        }
    }

    fn run(&self, sw: &Switch, v: &Vector, bytes: &[u8], expect: Outcome) -> Observed {
        self.drain();
        self.sockets[0].send_to(bytes, sw.udp).unwrap();
        let deadline = Instant::now() + wait_for(expect);
        let mut obs = Observed::default();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let mut got_any = false;
            for s in &self.sockets {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                got_any = true;
                if from != sw.udp {
                    continue;
                }
                let Some(resp) = Resp::parse(&buf[..n]) else {
                    continue;
                };
                if !resp.answers(v) {
                    continue; // a retransmission for an earlier vector
                }
                if resp.status < 200 {
                    obs.provisional.push(resp.status);
                    continue;
                }
                if obs.final_resp.is_none() {
                    obs.port = Some(s.local_addr().unwrap().port());
                    if v.method == "INVITE" && resp.status >= 300 {
                        if let Some(ack) = resp.ack(&v.ruri) {
                            let _ = self.sockets[0].send_to(ack.as_bytes(), sw.udp);
                        }
                    }
                    obs.final_resp = Some(resp);
                }
            }
            if obs.final_resp.is_some() && expect != Silence {
                break;
            }
            if !got_any {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        obs
    }
}

fn run_tcp(sw: &Switch, v: &Vector, bytes: &[u8], expect: Outcome) -> Observed {
    let mut s = TcpStream::connect(sw.tcp).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(bytes).unwrap();
    let sent = Instant::now();
    let deadline = sent + wait_for(expect);
    let mut obs = Observed::default();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(
            left.clamp(Duration::from_millis(1), Duration::from_millis(100)),
        ))
        .unwrap();
        match s.read(&mut chunk) {
            Ok(0) => {
                obs.closed_after = Some(sent.elapsed());
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                obs.closed_after = Some(sent.elapsed());
                break;
            }
            Err(e) => panic!("tcp read: {e}"),
        }
        while let Some(m) = take_stream_message(&mut buf) {
            let Some(resp) = Resp::parse(&m) else {
                panic!(
                    "unparseable bytes from the switch: {:?}",
                    String::from_utf8_lossy(&m)
                );
            };
            // A stream may carry answers to a second message framed from the
            // same bytes (dblreq): only answers to this vector count.
            if !resp.answers(v) {
                continue;
            }
            if resp.status < 200 {
                obs.provisional.push(resp.status);
            } else if obs.final_resp.is_none() {
                if v.method == "INVITE" && resp.status >= 300 {
                    if let Some(ack) = resp.ack(&v.ruri) {
                        let _ = s.write_all(ack.as_bytes());
                    }
                }
                obs.final_resp = Some(resp);
            }
        }
        if obs.final_resp.is_some() && !matches!(expect, Silence | Closed | IdleClosed) {
            break;
        }
    }
    obs
}

/// Further rules on the answer itself: which status needs which header.
fn header_checks(resp: &Resp, v: &Vector) -> Vec<String> {
    let mut problems = Vec::new();
    let need = |name: &str, problems: &mut Vec<String>| {
        if resp.get(name, name).is_none() {
            problems.push(format!("{} without {name}", resp.status));
        }
    };
    match resp.status {
        405 | 501 => need("Allow", &mut problems),
        415 | 406 => need("Accept", &mut problems),
        420 => {
            need("Unsupported", &mut problems);
            let u = resp.get("Unsupported", "Unsupported").unwrap_or_default();
            if !u.contains("nothingSupportsThis") {
                problems.push(format!("420 Unsupported lacks the Require tags: {u:?}"));
            }
        }
        200 if v.method == "OPTIONS" => {
            need("Allow", &mut problems);
            need("Accept", &mut problems);
        }
        _ => {}
    }
    if resp.status >= 300 && resp.get("via", "v").is_none() {
        problems.push("response without Via".to_owned());
    }
    problems
}

struct Row {
    file: &'static str,
    transport: Transport,
    expected: Outcome,
    got: Outcome,
    problems: Vec<String>,
    why: &'static str,
}

/// Splits the vectors into rounds in which no two share a Call-ID or a
/// server transaction key.
/// One run of the switch: (file, expectation, bytes, what we know of them).
type Round = Vec<(&'static str, &'static Expect, Vec<u8>, Vector)>;

fn rounds() -> Vec<Round> {
    let mut rounds: Vec<(HashSet<String>, Round)> = Vec::new();
    for (file, expect) in EXPECTED {
        let bytes =
            std::fs::read(format!("{DATA}{file}")).unwrap_or_else(|e| panic!("{DATA}{file}: {e}"));
        let v = Vector::read(&bytes);
        let slot = rounds
            .iter()
            .position(|(keys, _)| v.keys.iter().all(|k| !keys.contains(k)));
        let slot = slot.unwrap_or_else(|| {
            rounds.push((HashSet::new(), Vec::new()));
            rounds.len() - 1
        });
        rounds[slot].0.extend(v.keys.iter().cloned());
        rounds[slot].1.push((*file, expect, bytes, v));
    }
    rounds.into_iter().map(|(_, r)| r).collect()
}

fn options(transport: Transport, local: SocketAddr, n: usize) -> String {
    let t = match transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    };
    format!(
        "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{t} {local};branch=z9hG4bK-probe-{n}-{t};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=probe{n}\r\n\
         To: <sip:probe@127.0.0.1>\r\n\
         Call-ID: probe-{n}-{t}@torture-wire\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The switch is alive: OPTIONS over UDP and TCP both get 200 with Allow.
fn assert_alive(sw: &mut Switch, what: &str) {
    sw.assert_running();
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
    let msg = options(Transport::Udp, udp.local_addr().unwrap(), n);
    udp.send_to(msg.as_bytes(), sw.udp).unwrap();
    let mut buf = vec![0u8; 65536];
    let (len, _) = udp
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: no answer to OPTIONS over UDP: {e}"));
    let resp = Resp::parse(&buf[..len]).expect("UDP OPTIONS answer");
    assert_eq!(resp.status, 200, "{what}: UDP OPTIONS: {}", resp.text);
    assert!(resp.get("Allow", "Allow").is_some(), "{}", resp.text);

    let mut tcp = TcpStream::connect(sw.tcp).unwrap();
    tcp.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
    let msg = options(Transport::Tcp, tcp.local_addr().unwrap(), n);
    tcp.write_all(msg.as_bytes()).unwrap();
    let mut acc = Vec::new();
    let resp = loop {
        if let Some(m) = take_stream_message(&mut acc) {
            break Resp::parse(&m).expect("TCP OPTIONS answer");
        }
        let got = tcp
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{what}: no answer to OPTIONS over TCP: {e}"));
        assert!(got > 0, "{what}: TCP closed before the OPTIONS answer");
        acc.extend_from_slice(&buf[..got]);
    };
    assert_eq!(resp.status, 200, "{what}: TCP OPTIONS: {}", resp.text);
    assert!(resp.get("Allow", "Allow").is_some(), "{}", resp.text);
}

/// `GET /metrics` over a raw socket: the `sip_parse_errors_total` samples.
fn parse_error_counters(sw: &Switch) -> Vec<(String, f64)> {
    let mut s = TcpStream::connect(sw.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            sw.http
        )
        .as_bytes(),
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body.lines()
        .filter(|l| l.starts_with("sip_parse_errors_total"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn run_all(transport: Transport) {
    let udp = (transport == Transport::Udp).then(UdpSide::bind);
    let rounds = rounds();
    let mut rows: Vec<Row> = Vec::new();
    for (i, round) in rounds.iter().enumerate() {
        let mut sw = Switch::start(&format!("{transport:?}-{i}").to_lowercase());
        for (file, expect, bytes, v) in round {
            let expected = match transport {
                Transport::Udp => expect.udp,
                Transport::Tcp => expect.tcp,
            };
            let obs = match &udp {
                Some(u) => u.run(&sw, v, bytes, expected),
                None => run_tcp(&sw, v, bytes, expected),
            };
            let got = obs.outcome();
            let mut problems = Vec::new();
            if let Some(resp) = &obs.final_resp {
                problems.extend(header_checks(resp, v));
                // §18.2.2: the answer goes to the top Via's port (rport: source).
                if let Some(port) = obs.port {
                    if port != v.udp_reply_port {
                        problems.push(format!(
                            "answer went to port {port}, the top Via says {}",
                            v.udp_reply_port
                        ));
                    }
                }
                if got != expected {
                    problems.push(format!(
                        "answer: {}",
                        resp.text.lines().next().unwrap_or_default()
                    ));
                }
            }
            rows.push(Row {
                file,
                transport,
                expected,
                got,
                problems,
                why: expect.why,
            });
        }
        assert_alive(&mut sw, &format!("after round {i} over {transport:?}"));
        if i == 0 {
            let counters = parse_error_counters(&sw);
            println!("{transport:?} round 0 parse error counters: {counters:?}");
            let total: f64 = counters.iter().map(|(_, v)| v).sum();
            assert!(
                total > 0.0,
                "sip_parse_errors_total should count the malformed vectors: {counters:?}"
            );
        }
    }

    println!(
        "{transport:?}: {} vectors in {} rounds",
        rows.len(),
        rounds.len()
    );
    let mut unexpected = Vec::new();
    let mut still_known = Vec::new();
    for r in &rows {
        let ok = r.got == r.expected && r.problems.is_empty();
        let known = KNOWN_MISMATCHES.contains(&(r.file, r.transport));
        let mark = match (ok, known) {
            (true, false) => "ok",
            (false, true) => "KNOWN MISMATCH",
            (false, false) => "MISMATCH",
            (true, true) => "FIXED (remove from KNOWN_MISMATCHES)",
        };
        println!(
            "{:?} {:<45} expected {:<13} got {:<13} {mark} {}{}",
            r.transport,
            r.file,
            format!("{:?}", r.expected),
            format!("{:?}", r.got),
            r.problems.join("; "),
            if ok {
                String::new()
            } else {
                format!(" [{}]", r.why)
            },
        );
        if !ok && !known {
            unexpected.push(format!(
                "{} over {:?}: expected {:?}, got {:?} {:?} ({})",
                r.file, r.transport, r.expected, r.got, r.problems, r.why
            ));
        }
        if ok && known {
            still_known.push(r.file);
        }
    }
    for r in rows
        .iter()
        .filter(|r| KNOWN_MISMATCHES.contains(&(r.file, r.transport)))
    {
        if r.got != r.expected || !r.problems.is_empty() {
            eprintln!(
                "!!! KNOWN MISMATCH (not failing the test): {} over {:?}: expected {:?}, got {:?} {:?}",
                r.file, r.transport, r.expected, r.got, r.problems
            );
        }
    }
    assert!(
        unexpected.is_empty(),
        "{} vector(s) answered against the rules:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        still_known.is_empty(),
        "these now follow the rules; remove them from KNOWN_MISMATCHES: {still_known:?}"
    );
}

/// Every vector as one UDP datagram from 127.0.0.1:5060 (sequential: this is
/// the only test that binds 5060).
#[test]
fn torture_vectors_over_udp() {
    run_all(Transport::Udp);
}

/// Every vector on its own TCP connection.
#[test]
fn torture_vectors_over_tcp() {
    run_all(Transport::Tcp);
}

/// The table covers every vector file there is (and only those).
#[test]
fn table_covers_every_vector() {
    let mut on_disk = Vec::new();
    for dir in ["rfc4475", "rfc4475/unreferenced", "rfc5118/wire"] {
        for e in std::fs::read_dir(format!("{DATA}{dir}")).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let is_vector = e.file_type().unwrap().is_file()
                && (dir == "rfc5118/wire" || name.ends_with(".dat"));
            if is_vector {
                on_disk.push(format!("{dir}/{name}"));
            }
        }
    }
    on_disk.sort();
    let mut in_table: Vec<String> = EXPECTED.iter().map(|(f, _)| (*f).to_owned()).collect();
    in_table.sort();
    let mut dedup = in_table.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), in_table.len(), "duplicate entries in EXPECTED");
    assert_eq!(on_disk, in_table, "EXPECTED must list every vector file");
}
