#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! End to end: callback (API.md "Callback"), against the real `softswitch`
//! binary. The switch calls the user's own phone (`local`) through one
//! trunk; when it answers, calls `remote` through another and bridges the
//! two.
//!
//! ```text
//!  test ──POST /lwork/mobile/callback {local 1001, remote 2002}──▶ softswitch
//!  softswitch ──INVITE 1001──▶ SIPp uas "local"  (trunk "local", prefix 1)
//!  softswitch ──INVITE 2002──▶ SIPp uas "remote" (trunk "remote", prefix 2)
//!  test "local" socket ◀══RTP══▶ relay ◀══RTP══▶ test "remote" socket
//! ```
//!
//! Each SIPp does only the signalling: its 200 answers PCMA at a UDP socket
//! of this test (`uas_pcma_media.xml -key pcma_port`), so the test sends
//! A-law from each "phone" and checks that exactly the other phone's packets
//! arrive, from the relay. The account is made the way an app makes one
//! (SMS code from a stand-in gateway, register, login).
//!
//! A failing test keeps its logs under `$TMPDIR/softswitch-e2e/`.

mod common;

use common::TrunkCfg;
use common::{require_sipp, wait_until, Sipp, SippCmd, SippPorts, Switch, SwitchCfg, TestDir};
use media::payload::g711;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Outer bound for anything that should take a second or two.
const SHORT: Duration = Duration::from_secs(15);

/// The user's own phone and the party it wants to talk to, each routed to
/// its own trunk by its first digit.
const LOCAL: &str = "1001";
const REMOTE: &str = "2002";

/// The account placing the callbacks, and its device.
const ACCOUNT: &str = "13900000021";
const DEVICE: &str = "android-cb";

/// RTP packets that must cross the relay each way (0.5 s of 20 ms frames).
const MIN_PACKETS: usize = 25;

/// A-law, as `uas_pcma_media.xml` answers.
const PCMA_PT: u8 = 8;

/// Samples per 20 ms at 8 kHz.
const FRAME: usize = 160;

// ---------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------

/// A reply from the switch: HTTP status and JSON body.
#[derive(Debug)]
struct Reply {
    http: u16,
    json: Value,
    what: String,
}

impl Reply {
    /// The body, after checking it is `{"status":"ok",...}` with HTTP 200.
    fn ok(&self) -> &Value {
        assert!(
            self.http == 200 && self.json["status"] == "ok",
            "{}: expected HTTP 200 with status ok, got HTTP {} {}",
            self.what,
            self.http,
            self.json
        );
        &self.json
    }

    /// The `reason` of a `{"status":"failed"}` reply.
    fn failure(&self) -> &str {
        assert_eq!(
            self.json["status"], "failed",
            "{}: expected a failure, got HTTP {} {}",
            self.what, self.http, self.json
        );
        self.json["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: failure without a reason: {}", self.what, self.json))
    }
}

/// The switch's HTTP façade, spoken with a minimal HTTP/1.1 client over a
/// TcpStream (the crate has no HTTP client among its dev-dependencies).
#[derive(Clone, Copy, Debug)]
struct Api(SocketAddr);

impl Api {
    fn request(self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let what = format!(
            "{method} {path} {}",
            body.map(Value::to_string).unwrap_or_default()
        );
        let mut s = TcpStream::connect_timeout(&self.0, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{what}: connect to {}: {e}", self.0));
        // Long polls last POLL_IDLE_S; everything else is quick.
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let body = body.map(Value::to_string).unwrap_or_default();
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{ctype}\
             Content-Length: {}\r\n\r\n{body}",
            self.0,
            body.len()
        )
        .unwrap_or_else(|e| panic!("{what}: write: {e}"));
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("{what}: read: {e}"));
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no header end in {:?}",
                    String::from_utf8_lossy(&raw)
                )
            });
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let http: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{what}: bad status line in {head:?}"));
        let chunked = head.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let body = if chunked {
            dechunk(&raw[split + 4..])
        } else {
            raw[split + 4..].to_vec()
        };
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{what}: HTTP {http} body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        Reply { http, json, what }
    }

    fn post(self, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(&body))
    }

    /// GET or DELETE with the parameters in the query string, as the apps'
    /// status polls send them.
    fn with_query(self, method: &str, path: &str, params: &[(&str, &str)]) -> Reply {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
            .collect();
        self.request(method, &format!("{path}?{}", query.join("&")), None)
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_txt = String::from_utf8_lossy(&rest[..eol]).into_owned();
        let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_txt:?}"));
        rest = &rest[eol + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[..size.min(rest.len())]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
    out
}

/// Percent-encoding for a query-string value (RFC 3986 unreserved kept).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A cache-busting `t`, as the apps send.
fn t() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string()
}

// ---------------------------------------------------------------------------------
// The SMS gateway hook
// ---------------------------------------------------------------------------------

/// A stand-in SMS gateway: records every JSON body POSTed to it and
/// answers 200.
struct SmsHook {
    addr: SocketAddr,
    /// (request line, body) of each request.
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

impl SmsHook {
    fn start() -> SmsHook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMS hook");
        let addr = listener.local_addr().expect("SMS hook address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        // Detached: it blocks in accept for the rest of the test process.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let Some(req) = serve_sms(conn) {
                    log.lock().unwrap().push(req);
                }
            }
        });
        SmsHook { addr, received }
    }

    /// The code the switch sent to `phone` for `kind` (the latest one).
    fn code(&self, phone: &str, kind: &str) -> String {
        let mut code = None;
        let found = wait_until(SHORT, || {
            code = self
                .received
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(_, b)| b["phone"] == phone && b["type"] == kind)
                .and_then(|(_, b)| b["code"].as_str().map(str::to_owned));
            code.is_some()
        });
        assert!(
            found,
            "no {kind} code for {phone} reached the SMS hook; it got {:?}",
            self.received.lock().unwrap()
        );
        code.unwrap()
    }
}

/// Reads one HTTP request (Content-Length body) and answers 200.
fn serve_sms(conn: TcpStream) -> Option<(String, Value)> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    let mut conn = conn;
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    Some((
        request_line.trim().to_owned(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ))
}

// ---------------------------------------------------------------------------------
// Switch set-up and the account
// ---------------------------------------------------------------------------------

/// A switch with trunk "local" (numbers starting 1) at `local` and trunk
/// "remote" (numbers starting 2) at `remote`, and `[sms] url` at `sms`.
fn config(local: SocketAddr, remote: SocketAddr, sms: &SmsHook) -> SwitchCfg {
    let trunk = |name: &str, addr: SocketAddr, prefix: &str| TrunkCfg {
        name: name.into(),
        ..TrunkCfg::callee(addr.to_string()).prefixes(&[prefix])
    };
    let mut cfg = SwitchCfg::new(vec![
        trunk("local", local, "1"),
        trunk("remote", remote, "2"),
    ]);
    // The harness has no [sms] knob, but `sip_extra` is pasted into the
    // file right after the [sip] keys, so a table header there opens [sms]
    // (the [media] header that follows closes it again).
    cfg.sip_extra = format!("\n[sms]\nurl = \"http://{}/sms\"\n", sms.addr);
    cfg
}

/// The switch's relay port range, read back from the config it was given.
fn media_range(dir: &Path) -> (u16, u16) {
    let path = dir.join("switch.toml");
    let toml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let get = |key: &str| -> u16 {
        toml.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no {key} in {}:\n{toml}", path.display()))
    };
    (get("port_min"), get("port_max"))
}

/// The logged-in account.
struct User {
    api: Api,
    token: String,
}

/// `auth_code` → the code from the SMS hook → `register` → `login`.
fn user(api: Api, sms: &SmsHook) -> User {
    let pwd = "s3cret-pw";
    api.post(
        "/lwork/sms/auth_code",
        json!({"uuid": ACCOUNT, "device_id": DEVICE, "type": "register"}),
    )
    .ok();
    let code = sms.code(ACCOUNT, "register");
    api.post(
        "/lwork/mobile/register",
        json!({"type": "sms", "uuid": ACCOUNT, "device_id": DEVICE, "auth_code": code,
               "name": "Test", "pwd": pwd}),
    )
    .ok();
    let r = api.post(
        "/lwork/mobile/login",
        json!({"acc": ACCOUNT, "pwd": pwd, "device_id": DEVICE,
               "clidata": {"os_type": "android"}}),
    );
    let v = r.ok();
    assert_eq!(v["uuid"], ACCOUNT, "login: {v}");
    User {
        api,
        token: v["token"]
            .as_str()
            .expect("login reply has a token")
            .to_owned(),
    }
}

impl User {
    /// POST /lwork/mobile/callback: the session id.
    fn callback(&self) -> String {
        let r = self.api.post(
            "/lwork/mobile/callback",
            json!({"uuid": ACCOUNT, "local": LOCAL, "remote": REMOTE, "dev_id": DEVICE,
                   "token": self.token}),
        );
        r.ok()["session_id"]
            .as_str()
            .unwrap_or_else(|| panic!("callback reply without session_id: {}", r.json))
            .to_owned()
    }

    /// DELETE /lwork/mobile/callback.
    fn stop(&self, sid: &str) {
        self.api
            .request(
                "DELETE",
                "/lwork/mobile/callback",
                Some(&json!({"uuid": ACCOUNT, "session_id": sid, "token": self.token})),
            )
            .ok();
    }

    /// The session's state, read as an Android app reads a call's.
    fn status(&self, sid: &str) -> String {
        let r = self.api.with_query(
            "GET",
            "/lwork/mobile/voip/calls",
            &[("uuid", ACCOUNT), ("session_id", sid), ("t", &t())],
        );
        r.ok()["peer_status"]
            .as_str()
            .unwrap_or_else(|| panic!("status without peer_status: {}", r.json))
            .to_owned()
    }

    /// Polls the status until it is `want`; returns the states seen
    /// (consecutive repeats folded), checking they only move forward
    /// through idle → a_ringing → a_answered → b_ringing → bridged → release.
    fn watch(&self, sw: &Switch, sid: &str, want: &str) -> Vec<String> {
        let rank = |s: &str| match s {
            "idle" => 0,
            "a_ringing" => 1,
            "a_answered" => 2,
            "b_ringing" => 3,
            "bridged" => 4,
            "release" => 5,
            other => panic!("callback state {other:?} is not a callback state"),
        };
        let mut seen: Vec<String> = Vec::new();
        let reached = wait_until(SHORT, || {
            let s = self.status(sid);
            if seen.last() != Some(&s) {
                if let Some(prev) = seen.last() {
                    assert!(
                        rank(prev) < rank(&s),
                        "callback {sid} went from {prev} to {s} (states so far {seen:?})"
                    );
                }
                seen.push(s.clone());
            }
            s == want
        });
        assert!(
            reached,
            "callback {sid} did not reach {want} within {SHORT:?}; states seen {seen:?}\n{}",
            sw.log_tail(40)
        );
        seen
    }

    /// Waits until the history has the (local, remote) group and checks it
    /// holds exactly one callback; returns that call's detail.
    fn history_record(&self, sw: &Switch) -> Value {
        let mut groups = Vec::new();
        let found = wait_until(SHORT, || {
            let r = self.api.post(
                "/lwork/mobile/call_history",
                json!({"uuid": ACCOUNT, "start_id": 0, "num": 20, "token": self.token}),
            );
            groups = r.ok()["history"]
                .as_array()
                .unwrap_or_else(|| panic!("history is not a list: {}", r.json))
                .clone();
            !groups.is_empty()
        });
        assert!(found, "no call history\n{}", sw.log_tail(30));
        assert_eq!(groups.len(), 1, "one group: {groups:#?}");
        let g = &groups[0];
        assert_eq!(
            (g["caller"].as_str(), g["callee"].as_str()),
            (Some(LOCAL), Some(REMOTE)),
            "a callback is recorded as local calling remote: {g}"
        );
        assert_eq!(g["times"], 1, "exactly one record of the callback: {g}");
        let detail = g["detail"].as_array().expect("detail is a list");
        assert_eq!(detail.len(), 1, "one detail: {g}");
        assert_eq!(detail[0]["type"], "callback", "call kind: {g}");
        detail[0].clone()
    }
}

// ---------------------------------------------------------------------------------
// SIPp message logs
// ---------------------------------------------------------------------------------

/// The first INVITE `sipp` received (its `-trace_msg` log), as text lines.
fn received_invite(sipp: &Sipp) -> Vec<String> {
    let mut found = None;
    wait_until(SHORT, || {
        for f in sipp.files_ending("_messages.log") {
            let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
            for block in text.split("-----------------------------------------------") {
                if !block
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l.contains("message received"))
                {
                    continue;
                }
                let msg: Vec<String> = block
                    .lines()
                    .skip(2)
                    .map(str::trim)
                    .skip_while(|l| l.is_empty())
                    .map(str::to_owned)
                    .collect();
                if msg.first().is_some_and(|l| l.starts_with("INVITE ")) {
                    found = Some(msg);
                    return true;
                }
            }
        }
        false
    });
    found.unwrap_or_else(|| {
        panic!(
            "sipp {} logged no INVITE within {SHORT:?}\n{}",
            sipp.name,
            sipp.report()
        )
    })
}

/// The user part of the first SIP URI on the line of `msg` that starts with
/// `header` (a method for the request line, or a header name).
fn uri_user<'a>(msg: &'a [String], header: &str) -> &'a str {
    let line = msg
        .iter()
        .find(|l| {
            l.split_once([' ', ':'])
                .is_some_and(|(k, _)| k.eq_ignore_ascii_case(header))
        })
        .unwrap_or_else(|| panic!("no {header} in {msg:#?}"));
    let at = line
        .find("sip:")
        .unwrap_or_else(|| panic!("no sip: URI in {line}"));
    let user = &line[at + 4..];
    &user[..user.find('@').unwrap_or(user.len())]
}

/// The relay address the switch offered in an INVITE: `c=` and `m=audio`.
fn offered_media(msg: &[String], range: (u16, u16)) -> SocketAddr {
    let ip = msg
        .iter()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap_or_else(|| panic!("no c= in {msg:#?}"));
    let port: u16 = msg
        .iter()
        .find_map(|l| {
            l.strip_prefix("m=audio ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no m=audio in {msg:#?}"));
    assert!(
        ip.trim() == "127.0.0.1" && (range.0..=range.1).contains(&port),
        "the offer does not name a relay port ({range:?}): {msg:#?}"
    );
    SocketAddr::new(ip.trim().parse().unwrap(), port)
}

// ---------------------------------------------------------------------------------
// Media
// ---------------------------------------------------------------------------------

/// A test-owned RTP socket, with the next port bound too: the relay sends
/// RTCP to RTP port + 1, which must not be some other test's RTP socket.
struct MediaSocket {
    rtp: UdpSocket,
    _rtcp: UdpSocket,
}

impl MediaSocket {
    fn bind() -> MediaSocket {
        for _ in 0..200 {
            let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind an RTP socket");
            let port = rtp.local_addr().unwrap().port();
            if port == u16::MAX {
                continue;
            }
            if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
                rtp.set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                return MediaSocket { rtp, _rtcp: rtcp };
            }
        }
        panic!("no pair of adjacent free UDP ports on 127.0.0.1");
    }

    fn port(&self) -> u16 {
        self.rtp.local_addr().unwrap().port()
    }
}

/// One phone's end of the bridge: its socket, the relay port it sends to,
/// and one second of A-law payloads of a tone at its own pitch (what the
/// other phone must get, byte for byte: both legs are PCMA, nothing is
/// transcoded).
struct Phone<'a> {
    name: &'a str,
    sock: &'a UdpSocket,
    relay: SocketAddr,
    payloads: Vec<Vec<u8>>,
}

impl<'a> Phone<'a> {
    fn new(name: &'a str, sock: &'a UdpSocket, relay: SocketAddr, hz: f64) -> Phone<'a> {
        let payloads = (0..50)
            .map(|i| {
                let pcm: Vec<i16> = (0..FRAME)
                    .map(|k| {
                        let n = (i * FRAME + k) as f64;
                        (6000.0 * (2.0 * std::f64::consts::PI * hz * n / 8000.0).sin()) as i16
                    })
                    .collect();
                let mut payload = Vec::with_capacity(FRAME);
                g711::encode_alaw(&pcm, &mut payload);
                payload
            })
            .collect();
        Phone {
            name,
            sock,
            relay,
            payloads,
        }
    }

    fn frames(&self) -> BTreeSet<Vec<u8>> {
        self.payloads.iter().cloned().collect()
    }
}

/// One RTP packet a phone received.
#[derive(Debug)]
struct Rx {
    from: SocketAddr,
    pt: u8,
    payload: Vec<u8>,
}

/// Sends `phone`'s payloads every 20 ms until `stop`.
fn send_stream(phone: &Phone<'_>, ssrc: u32, stop: &AtomicBool) {
    let t0 = Instant::now();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let due = t0 + Duration::from_millis(20 * i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let mut pkt = Vec::new();
        media::rtp::write(
            &mut pkt,
            i == 0,
            PCMA_PT,
            1000u16.wrapping_add(i as u16),
            (i * FRAME) as u32,
            ssrc,
            &phone.payloads[i % phone.payloads.len()],
        );
        phone
            .sock
            .send_to(&pkt, phone.relay)
            .unwrap_or_else(|e| panic!("{}: send RTP to {}: {e}", phone.name, phone.relay));
        i += 1;
    }
}

/// Receives RTP on `phone`'s socket until `stop`; counts into `heard` the
/// packets carrying one of `other`'s payloads.
fn receive_stream(
    phone: &Phone<'_>,
    other: &BTreeSet<Vec<u8>>,
    stop: &AtomicBool,
    heard: &AtomicUsize,
) -> Vec<Rx> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match phone.sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => panic!("{}: recv: {e}", phone.name),
        };
        let pkt = &buf[..n];
        if media::rtp::is_rtcp(pkt) {
            continue;
        }
        let rtp = media::rtp::parse(pkt)
            .unwrap_or_else(|e| panic!("{}: not RTP from {from} ({e}): {pkt:02x?}", phone.name));
        let payload = rtp.payload(pkt).to_vec();
        if other.contains(&payload) {
            heard.fetch_add(1, Ordering::Relaxed);
        }
        out.push(Rx {
            from,
            pt: rtp.payload_type,
            payload,
        });
    }
    out
}

/// Streams A-law from both phones until each got [`MIN_PACKETS`] of the
/// other's payloads, then checks that everything each got came from its
/// relay port as PCMA, and was the other phone's audio: at the remote phone
/// nothing else at all; at the local phone only the ringback the switch
/// played it before the bridge, never after the other phone's audio began.
fn exchange(local: &Phone<'_>, remote: &Phone<'_>, context: &dyn Fn() -> String) {
    let (local_frames, remote_frames) = (local.frames(), remote.frames());
    assert!(local_frames.is_disjoint(&remote_frames));
    let stop = AtomicBool::new(false);
    let (heard_l, heard_r) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let (rx_l, rx_r, enough) = std::thread::scope(|s| {
        s.spawn(|| send_stream(local, 0x0A0A_0001, &stop));
        s.spawn(|| send_stream(remote, 0x0B0B_0002, &stop));
        let rl = s.spawn(|| receive_stream(local, &remote_frames, &stop, &heard_l));
        let rr = s.spawn(|| receive_stream(remote, &local_frames, &stop, &heard_r));
        let enough = wait_until(SHORT, || {
            heard_l.load(Ordering::Relaxed) >= MIN_PACKETS
                && heard_r.load(Ordering::Relaxed) >= MIN_PACKETS
        });
        stop.store(true, Ordering::Relaxed);
        (rl.join().unwrap(), rr.join().unwrap(), enough)
    });
    assert!(
        enough,
        "audio did not cross the bridge: local got {} of remote's packets ({} in all), \
         remote got {} of local's ({} in all), within {SHORT:?}\n{}",
        heard_l.load(Ordering::Relaxed),
        rx_l.len(),
        heard_r.load(Ordering::Relaxed),
        rx_r.len(),
        context()
    );
    for (phone, rx) in [(local, &rx_l), (remote, &rx_r)] {
        for p in rx {
            assert_eq!(
                (p.from, p.pt),
                (phone.relay, PCMA_PT),
                "{}: RTP from {} (its relay port is {}), payload type {}",
                phone.name,
                p.from,
                phone.relay,
                p.pt
            );
        }
    }
    assert!(
        rx_r.iter().all(|p| local_frames.contains(&p.payload)),
        "remote got something that is not local's audio"
    );
    let first = rx_l
        .iter()
        .position(|p| remote_frames.contains(&p.payload))
        .unwrap();
    assert!(
        rx_l[first..]
            .iter()
            .all(|p| remote_frames.contains(&p.payload)),
        "local got something else (ringback?) after remote's audio began"
    );
    eprintln!(
        "e2e: local got {} packets ({first} before the bridge), remote got {}",
        rx_l.len(),
        rx_r.len()
    );
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

/// Local answers, remote is called and answers, the status moves forward to
/// `bridged`, and the two phones hear each other through the relay. DELETE
/// ends both legs (each SIPp gets its BYE), the status ends `release`, and
/// the history has one callback record.
#[test]
fn callback_bridges_both_phones_and_delete_ends_both_legs() {
    require_sipp();
    let dir = TestDir::new("callback_bridged");
    let sms = SmsHook::start();
    let (sock_l, sock_r) = (MediaSocket::bind(), MediaSocket::bind());
    let (ports_l, ports_r) = (SippPorts::new(), SippPorts::new());
    let phone = |name: &str, ports: SippPorts, sock: &MediaSocket| {
        SippCmd::new(name, "uas_pcma_media.xml", ports)
            .args(&["-m", "1", "-trace_msg"])
            .args(&["-key", "pcma_port", &sock.port().to_string()])
            .timeout_s(40)
            .spawn(dir.path())
    };
    let mut local = phone("local", ports_l, &sock_l);
    let mut remote = phone("remote", ports_r, &sock_r);
    let sw = Switch::start(dir.path(), &config(ports_l.addr(), ports_r.addr(), &sms));
    let range = media_range(dir.path());
    let user = user(Api(sw.http), &sms);

    let sid = user.callback();
    let seen = user.watch(&sw, &sid, "bridged");
    eprintln!("e2e: callback states {seen:?}");

    let invite_l = received_invite(&local);
    let invite_r = received_invite(&remote);
    assert_eq!(uri_user(&invite_l, "INVITE"), LOCAL, "{invite_l:#?}");
    assert_eq!(uri_user(&invite_r, "INVITE"), REMOTE, "{invite_r:#?}");
    assert_eq!(
        uri_user(&invite_r, "From"),
        LOCAL,
        "remote sees the user's own number calling: {invite_r:#?}"
    );
    let relay_l = offered_media(&invite_l, range);
    let relay_r = offered_media(&invite_r, range);
    assert_ne!(relay_l, relay_r, "one relay leg per phone");

    let ctx = || {
        format!(
            "{}\n{}\n{}",
            local.report(),
            remote.report(),
            sw.log_tail(40)
        )
    };
    exchange(
        &Phone::new("local", &sock_l.rtp, relay_l, 440.0),
        &Phone::new("remote", &sock_r.rtp, relay_r, 660.0),
        &ctx,
    );
    assert_eq!(user.status(&sid), "bridged");
    // One call at a time per account (`[calls] max_calls_per_account` = 1).
    let again = user.api.post(
        "/lwork/mobile/callback",
        json!({"uuid": ACCOUNT, "local": LOCAL, "remote": REMOTE, "token": user.token}),
    );
    assert_eq!(again.failure(), "busy", "a second callback while one is up");
    let unknown = user.api.request(
        "DELETE",
        "/lwork/mobile/callback",
        Some(&json!({"uuid": ACCOUNT, "session_id": format!("{sid}0"), "token": user.token})),
    );
    assert_eq!(
        unknown.failure(),
        "session_not_exist",
        "DELETE of a made-up session"
    );
    assert_eq!(user.status(&sid), "bridged");

    user.stop(&sid);
    let ctx = || sw.log_tail(40);
    local.expect_success(Duration::from_secs(30), &ctx);
    remote.expect_success(Duration::from_secs(30), &ctx);
    user.watch(&sw, &sid, "release");

    let detail = user.history_record(&sw);
    assert!(
        detail["ringtime"].as_str().is_some_and(|s| !s.is_empty())
            && detail["starttime"].as_str().is_some_and(|s| !s.is_empty()),
        "local rang and the two were bridged: {detail}"
    );
}

/// Remote is busy (486); the local leg, already answered, is ended with a
/// BYE, the status ends `release` without ever being `bridged`, and the
/// history has one callback record that was never bridged.
#[test]
fn callback_remote_busy_ends_the_local_leg() {
    require_sipp();
    let dir = TestDir::new("callback_busy");
    let sms = SmsHook::start();
    let (ports_l, ports_r) = (SippPorts::new(), SippPorts::new());
    // uas.xml fails unless the call ends with a BYE from the switch.
    let mut local = SippCmd::new("local", "uas.xml", ports_l)
        .args(&["-m", "1", "-trace_msg"])
        .timeout_s(40)
        .spawn(dir.path());
    let mut remote = SippCmd::new("remote", "uas_486.xml", ports_r)
        .args(&["-m", "1", "-trace_msg"])
        .timeout_s(40)
        .spawn(dir.path());
    let sw = Switch::start(dir.path(), &config(ports_l.addr(), ports_r.addr(), &sms));
    let user = user(Api(sw.http), &sms);

    let sid = user.callback();
    let seen = user.watch(&sw, &sid, "release");
    assert!(
        !seen.iter().any(|s| s == "bridged"),
        "a failed callback is never bridged: {seen:?}"
    );
    let ctx = || sw.log_tail(40);
    local.expect_success(Duration::from_secs(30), &ctx);
    remote.expect_success(Duration::from_secs(30), &ctx);
    assert_eq!(uri_user(&received_invite(&remote), "INVITE"), REMOTE);

    let detail = user.history_record(&sw);
    assert_eq!(detail["starttime"], "", "never bridged: {detail}");
    assert!(
        detail["ringtime"].as_str().is_some_and(|s| !s.is_empty()),
        "local rang: {detail}"
    );
}
