#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! End to end: calls that come to apps (API.md "App-to-app calls (p2p) and
//! calls coming in from a trunk (sip_call_in)", "Push to apps"), against the
//! real `softswitch` binary.
//!
//! ```text
//!  SIPp uac ("PSTN") ──INVITE 139...──▶ softswitch ──p2p_inform_called──▶ test app (long poll)
//!        ◀──180 / 200 / 480 / 486 / 603──        ◀──p2p_ringing / p2p_answer / p2p_reject──
//!  test "trunk" socket ◀══RTP══▶ relay ◀══RTP══▶ test "app" socket
//!
//!  app A ──start type p2p──▶ softswitch ──p2p_inform_called──▶ app B
//!  app A socket ◀══RTP══▶ relay ◀══RTP══▶ app B socket     (or B's number at a SIPp uas)
//! ```
//!
//! Accounts are made the way an app makes them: `auth_code`, the code from
//! the SMS gateway hook (a small HTTP server of this test), `register`,
//! `login`; an account registered with a phone number owns that number.
//! The app's side is the HTTP façade driven by this test: the push long poll
//! (`/channel/push_service`, idle timeout 2 s here), `p2p_*` with the opdata
//! of the pushed event, and the call status routes. Media endpoints of the
//! app and of the "PSTN" caller are UDP sockets of this test (the caller's
//! SDP names one through `-key trunk_port`), so each test sends real AMR
//! frames each way and checks that exactly those frames arrive, from the
//! relay, on the other side.
//!
//! Not covered here: the APNs voip push of these events. No HTTP route of
//! the switch registers an APNs token (only Baidu channels), so it would
//! need writing the token into the switch's database behind its back; the
//! push module's own tests (tests/push.rs) cover APNs delivery.
//!
//! A failing test keeps its logs under `$TMPDIR/softswitch-e2e/`.

mod common;

use common::{
    free_port, require_sipp, wait_until, Sipp, SippCmd, SippPorts, Switch, SwitchCfg, TestDir,
    TrunkCfg,
};
use media::payload::amr::{self, AmrKind, AmrPayload, PayloadMode};
use media::transcode::{AmrNbEncoder, AMR_NB_FRAME_SAMPLES};
use serde_json::{json, Value};
use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Outer bound for anything that should take a second or two.
const SHORT: Duration = Duration::from_secs(15);

/// `[push] long_poll_timeout_s`: an idle poll answers `shake_hand` after
/// this, so a test waiting for an event polls again every 2 s.
const POLL_IDLE_S: u64 = 2;

/// `[calls] ring_timeout_s` where the test answers (never reached: a test
/// takes far less) and where the point is that nobody answers.
const RING_LONG_S: u64 = 60;
const RING_SHORT_S: u64 = 3;

/// How long `uac_call_app.xml` holds the call after its ACK (`-d`): room for
/// the media exchange, which ends once [`MIN_PACKETS`] arrived each way
/// (about 0.5 s), on a loaded machine.
const HOLD_MS: u64 = 4000;

/// RTP packets that must cross the relay each way (0.5 s of 20 ms frames).
const MIN_PACKETS: usize = 25;

/// Payload types of AMR: as `uac_call_app.xml` offers it, and as the switch
/// gives it to Android apps (src/b2bua/app.rs).
const TRUNK_AMR_PT: u8 = 96;
const APP_AMR_PT: u8 = 114;

/// AMR-NB 12.2 kbit/s.
const AMR_MODE_122: u8 = 7;

/// What `uac_*.xml` put in their From (the caller an app is told about).
const SIPP_CALLER: &str = "sipp";

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
// Switch set-up and accounts
// ---------------------------------------------------------------------------------

/// The switch's config: `trunks`, `[sms] url` at `sms`, a short long-poll
/// idle timeout and the given ring timeout.
fn config(trunks: Vec<TrunkCfg>, sms: &SmsHook, ring_timeout_s: u64) -> SwitchCfg {
    let mut cfg = SwitchCfg::new(trunks);
    // The harness has no knob for these sections, but `sip_extra` is pasted
    // into the file right after the [sip] keys, so table headers there open
    // them (the [media] header that follows closes the last one).
    cfg.sip_extra = format!(
        "\n[sms]\nurl = \"http://{}/sms\"\n\n[push]\nlong_poll_timeout_s = {POLL_IDLE_S}\n\n\
         [calls]\nring_timeout_s = {ring_timeout_s}\n",
        sms.addr
    );
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

/// A logged-in app: its account (a phone number) on one device, and the
/// events its long polls brought that no test step took yet.
struct App {
    api: Api,
    uuid: String,
    device: String,
    token: String,
    pending: VecDeque<Value>,
}

/// `auth_code` → the code from the SMS hook → `register` → `login`.
fn app_for(api: Api, sms: &SmsHook, phone: &str, device: &str) -> App {
    let pwd = "s3cret-pw";
    api.post(
        "/lwork/sms/auth_code",
        json!({"uuid": phone, "device_id": device, "type": "register"}),
    )
    .ok();
    let code = sms.code(phone, "register");
    api.post(
        "/lwork/mobile/register",
        json!({"type": "sms", "uuid": phone, "device_id": device, "auth_code": code,
               "name": "Test", "pwd": pwd}),
    )
    .ok();
    let r = api.post(
        "/lwork/mobile/login",
        json!({"acc": phone, "pwd": pwd, "device_id": device, "clidata": {"os_type": "android"}}),
    );
    let v = r.ok();
    let uuid = v["uuid"]
        .as_str()
        .expect("login reply has a uuid")
        .to_owned();
    assert_eq!(uuid, phone, "an account registered by phone is that phone");
    App {
        api,
        uuid,
        device: device.to_owned(),
        token: v["token"]
            .as_str()
            .expect("login reply has a token")
            .to_owned(),
        pending: VecDeque::new(),
    }
}

impl App {
    /// One long poll: what it returned (`shake_hand` after the idle timeout).
    fn poll(&self) -> Vec<Value> {
        let r = self.api.post(
            "/channel/push_service",
            json!({"acc": self.uuid, "device_id": self.device, "token": self.token}),
        );
        let data = r.ok()["data"]
            .as_array()
            .unwrap_or_else(|| panic!("push_service data is not a list: {}", r.json))
            .clone();
        // Idle: `[{"event":"shake_hand"}]` and nothing else.
        assert!(
            data.len() == 1 || data.iter().all(|e| e["event"] != "shake_hand"),
            "shake_hand mixed with events: {data:?}"
        );
        assert!(!data.is_empty(), "a poll returns events or shake_hand");
        data
    }

    /// Long-polls until an event `kind` comes (keeping any other for later)
    /// and returns it. Fails after [`SHORT`].
    fn wait_event(&mut self, kind: &str, sw: &Switch) -> Value {
        let deadline = Instant::now() + SHORT;
        let mut polled = Vec::new();
        loop {
            if let Some(i) = self.pending.iter().position(|e| e["event"] == kind) {
                return self.pending.remove(i).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {kind} event within {SHORT:?}; polls returned {polled:?}, \
                 not yet taken {:?}\n{}",
                self.uuid,
                self.pending,
                sw.log_tail(40)
            );
            for e in self.poll() {
                polled.push(e.clone());
                if e["event"] != "shake_hand" {
                    assert!(
                        e["seq"].as_i64().is_some(),
                        "a queued event carries its seq: {e}"
                    );
                    self.pending.push_back(e);
                }
            }
        }
    }

    /// Events no step took, after one more (idle) poll: what the app would
    /// still be told.
    fn leftover_events(&mut self) -> Vec<Value> {
        for e in self.poll() {
            if e["event"] != "shake_hand" {
                self.pending.push_back(e);
            }
        }
        self.pending.drain(..).collect()
    }

    /// POST with this app's token added to `body`.
    fn post(&self, path: &str, mut body: Value) -> Reply {
        body["token"] = json!(self.token);
        self.api.post(path, body)
    }

    fn ringing(&self, opdata: &Value) -> Reply {
        self.post("/lwork/mobile/p2p_ringing", json!({"opdata": opdata}))
    }

    /// p2p_answer (Android): media at `port` on 127.0.0.1.
    fn answer(&self, opdata: &Value, port: u16) -> Reply {
        self.post(
            "/lwork/mobile/p2p_answer",
            json!({"opdata": opdata, "sdp": {"ip": "127.0.0.1", "port": port},
                   "callee_phone": self.uuid, "clidata": {"os_type": "android"}}),
        )
    }

    fn reject(&self, opdata: &Value, reason: Option<&str>) -> Reply {
        let mut body = json!({"opdata": opdata});
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        self.post("/lwork/mobile/p2p_reject", body)
    }

    fn p2p_poll(&self, opdata: &Value) -> Reply {
        self.post("/lwork/mobile/p2p_poll", json!({"opdata": opdata}))
    }

    /// GET /lwork/mobile/voip/calls: the session's `peer_status`.
    fn status(&self, sid: &str) -> String {
        let r = self.api.with_query(
            "GET",
            "/lwork/mobile/voip/calls",
            &[("uuid", &self.uuid), ("session_id", sid), ("t", &t())],
        );
        r.ok()["peer_status"]
            .as_str()
            .unwrap_or_else(|| panic!("status without peer_status: {}", r.json))
            .to_owned()
    }

    /// Polls the status until it is `want`; returns the states seen
    /// (consecutive repeats folded).
    fn wait_status(&self, sw: &Switch, sid: &str, want: &str) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let reached = wait_until(SHORT, || {
            let s = self.status(sid);
            if seen.last() != Some(&s) {
                seen.push(s.clone());
            }
            s == want
        });
        assert!(
            reached,
            "{}: session {sid} did not reach {want} within {SHORT:?}; states seen {seen:?}\n{}",
            self.uuid,
            sw.log_tail(40)
        );
        seen
    }

    /// DELETE /lwork/mobile/voip/calls: this app hangs up.
    fn stop(&self, sid: &str) {
        self.api
            .request(
                "DELETE",
                "/lwork/mobile/voip/calls",
                Some(&json!({"uuid": self.uuid, "session_id": sid, "token": self.token})),
            )
            .ok();
    }

    /// The first page of the account's call history.
    fn history(&self) -> Vec<Value> {
        let r = self.post(
            "/lwork/mobile/call_history",
            json!({"uuid": self.uuid, "start_id": 0, "num": 20}),
        );
        r.ok()["history"]
            .as_array()
            .unwrap_or_else(|| panic!("history is not a list: {}", r.json))
            .clone()
    }

    /// Waits until the history has a group (caller, callee) and checks it
    /// holds exactly one call, of `kind`; returns that call's detail.
    fn history_record(&self, sw: &Switch, caller: &str, callee: &str, kind: &str) -> Value {
        let mut groups = Vec::new();
        let found = wait_until(SHORT, || {
            groups = self.history();
            groups
                .iter()
                .any(|g| g["caller"] == caller && g["callee"] == callee)
        });
        assert!(
            found,
            "{}: no history group {caller} -> {callee}: {groups:#?}\n{}",
            self.uuid,
            sw.log_tail(30)
        );
        let g = groups
            .iter()
            .find(|g| g["caller"] == caller && g["callee"] == callee)
            .unwrap();
        assert_eq!(g["times"], 1, "exactly one record of the call: {g}");
        let detail = g["detail"].as_array().expect("detail is a list");
        assert_eq!(detail.len(), 1, "one detail: {g}");
        assert_eq!(detail[0]["type"], kind, "call kind: {g}");
        assert!(
            detail[0]["calltime"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "calltime: {g}"
        );
        detail[0].clone()
    }
}

/// The event's opdata, as the app holds it (what it sends back), and that
/// opdata's JSON (both kinds of calls issue a JSON object's text).
fn opdata_of(event: &Value) -> (Value, Value) {
    let opdata = event["opdata"].clone();
    let parsed = match &opdata {
        Value::String(s) => serde_json::from_str(s)
            .unwrap_or_else(|e| panic!("opdata is not JSON text ({e}): {event}")),
        Value::Object(_) => opdata.clone(),
        _ => panic!("opdata is neither a string nor an object: {event}"),
    };
    (opdata, parsed)
}

/// Checks a `p2p_answer` / Android start reply against what the app must be
/// told, and returns the relay address the app sends to and the SSRC the
/// relay sends with.
fn relay_of(reply: &Value, range: (u16, u16)) -> (SocketAddr, u32) {
    assert_eq!(reply["ip"], "127.0.0.1", "relay ip: {reply}");
    assert_eq!(reply["codec_name"], "AMR", "codec: {reply}");
    assert_eq!(
        reply["payload_mode"], "octet-aligned",
        "payload mode: {reply}"
    );
    let port = reply["port"].as_u64().expect("port") as u16;
    assert!(
        (range.0..=range.1).contains(&port),
        "port {port} is not a relay port {range:?}: {reply}"
    );
    let rssrc = reply["rssrc"].as_u64().expect("rssrc") as u32;
    (SocketAddr::from(([127, 0, 0, 1], port)), rssrc)
}

// ---------------------------------------------------------------------------------
// SIPp message logs
// ---------------------------------------------------------------------------------

/// One message from a SIPp `-trace_msg` log.
#[derive(Debug, Clone)]
struct Traced {
    received: bool,
    start_line: String,
    cseq: String,
    text: String,
}

impl Traced {
    /// The status code of a response.
    fn status(&self) -> Option<u16> {
        self.start_line
            .strip_prefix("SIP/2.0 ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// `c=` address and `m=audio` port of the SDP body.
    fn media_addr(&self) -> SocketAddr {
        let ip = self
            .text
            .lines()
            .find_map(|l| l.strip_prefix("c=IN IP4 "))
            .unwrap_or_else(|| panic!("no c= in\n{}", self.text));
        SocketAddr::new(
            ip.trim().parse().expect("c= address"),
            self.m_audio()[0].parse().expect("port"),
        )
    }

    /// The words of the `m=audio` line after `m=audio`: port, proto, formats.
    fn m_audio(&self) -> Vec<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .unwrap_or_else(|| panic!("no m=audio in\n{}", self.text))
            .split_whitespace()
            .collect()
    }

    /// The user part of the Request-URI.
    fn ruri_user(&self) -> &str {
        let uri = self
            .start_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default();
        let user = uri.strip_prefix("sip:").unwrap_or(uri);
        user.split('@').next().unwrap_or_default()
    }
}

/// Every message of `sipp`'s `*_messages.log` (empty until the file exists).
fn traced(sipp: &Sipp) -> Vec<Traced> {
    let mut out = Vec::new();
    for f in sipp.files_ending("_messages.log") {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
        for block in text.split("-----------------------------------------------") {
            let mut lines = block.lines().skip(1); // the rest of the separator line
            let Some(kind) = lines.next() else { continue };
            let received = kind.contains("message received");
            if !received && !kind.contains("message sent") {
                continue;
            }
            let msg: Vec<&str> = lines
                .skip_while(|l| l.trim().is_empty())
                .map(str::trim)
                .collect();
            let Some(start_line) = msg.first() else {
                continue;
            };
            let cseq = msg
                .iter()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case("CSeq").then(|| v.trim())
                })
                .unwrap_or_default()
                .to_owned();
            out.push(Traced {
                received,
                start_line: (*start_line).to_owned(),
                cseq,
                text: msg.join("\n"),
            });
        }
    }
    out
}

/// Waits until `sipp` logged a received message that `pick` accepts.
fn wait_received(sipp: &Sipp, what: &str, pick: impl Fn(&Traced) -> bool) -> Traced {
    let mut found = None;
    wait_until(SHORT, || {
        found = traced(sipp).into_iter().find(|m| m.received && pick(m));
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "sipp {} logged no {what} within {SHORT:?}\n{}",
            sipp.name,
            sipp.report()
        )
    })
}

/// The final responses to the INVITE `sipp` received (retransmissions
/// folded).
fn invite_finals(sipp: &Sipp) -> Vec<u16> {
    let mut out: Vec<u16> = traced(sipp)
        .iter()
        .filter(|m| m.received && m.cseq.ends_with(" INVITE"))
        .filter_map(Traced::status)
        .filter(|s| *s >= 200)
        .collect();
    out.dedup();
    out
}

/// The provisional responses to the INVITE `sipp` received.
fn invite_provisionals(sipp: &Sipp) -> BTreeSet<u16> {
    traced(sipp)
        .iter()
        .filter(|m| m.received && m.cseq.ends_with(" INVITE"))
        .filter_map(Traced::status)
        .filter(|s| *s < 200)
        .collect()
}

/// A SIPp "PSTN caller" dialling `number` at the switch through the inbound
/// trunk, with its message log (in `<dir>/<name>`, one directory per run).
fn pstn_call(
    dir: &TestDir,
    name: &str,
    sw: &Switch,
    ports: SippPorts,
    scenario: &str,
    number: &str,
    extra: &[&str],
) -> Sipp {
    SippCmd::new(name, scenario, ports)
        .remote(sw.sip)
        .args(&["-s", number, "-m", "1", "-trace_msg"])
        .args(extra)
        .timeout_s(40)
        .spawn(dir.path())
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

/// One second (50 frames) of octet-aligned AMR 12.2 payloads of a tone at
/// `hz`, and the speech bits of each frame: what the other side must get.
fn amr_stream(hz: f64) -> (Vec<Vec<u8>>, BTreeSet<Vec<u8>>) {
    let mut enc = AmrNbEncoder::new(false).expect("AMR-NB encoder");
    let mut payloads = Vec::new();
    let mut speech = BTreeSet::new();
    for i in 0..50 {
        let mut pcm = [0i16; AMR_NB_FRAME_SAMPLES];
        for (k, s) in pcm.iter_mut().enumerate() {
            let n = (i * AMR_NB_FRAME_SAMPLES + k) as f64;
            *s = (6000.0 * (2.0 * std::f64::consts::PI * hz * n / 8000.0).sin()) as i16;
        }
        let storage = enc.encode(AMR_MODE_122, &pcm).expect("AMR encode");
        // Storage format (RFC 4867 §5): FT << 3 | Q << 2, then the bits.
        let (header, bits) = (storage[0], &storage[1..]);
        assert_eq!((header >> 3) & 0x0F, AMR_MODE_122, "encoder frame type");
        let mut payload = Vec::new();
        amr::build(
            AmrKind::Nb,
            PayloadMode::OctetAligned,
            15, // CMR: no mode request
            &[(AMR_MODE_122, true, bits)],
            &mut payload,
        )
        .expect("AMR payload");
        speech.insert(speech_bits(&payload).expect("our own payload parses"));
        payloads.push(payload);
    }
    (payloads, speech)
}

/// The speech bits of the first frame of an octet-aligned AMR payload.
fn speech_bits(payload: &[u8]) -> Option<Vec<u8>> {
    let mut frame = Vec::new();
    AmrPayload::parse(AmrKind::Nb, PayloadMode::OctetAligned, payload)
        .ok()?
        .frame_data(0, &mut frame)?;
    Some(frame)
}

/// One end of a media path: a test socket that sends AMR (octet-aligned,
/// payload type `pt`) to `relay` and expects the other end's frames back
/// from there.
struct End<'a> {
    name: &'a str,
    sock: &'a UdpSocket,
    relay: SocketAddr,
    pt: u8,
    /// The SSRC the relay must send with (the `rssrc` an app is told).
    ssrc: Option<u32>,
    payloads: Vec<Vec<u8>>,
    speech: BTreeSet<Vec<u8>>,
}

impl<'a> End<'a> {
    fn new(name: &'a str, sock: &'a UdpSocket, relay: SocketAddr, pt: u8, hz: f64) -> End<'a> {
        let (payloads, speech) = amr_stream(hz);
        End {
            name,
            sock,
            relay,
            pt,
            ssrc: None,
            payloads,
            speech,
        }
    }
}

/// One RTP packet an end received.
#[derive(Debug)]
struct Rx {
    from: SocketAddr,
    pt: u8,
    ssrc: u32,
    speech: Option<Vec<u8>>,
}

/// Sends `end`'s frames every 20 ms until `stop`.
fn send_stream(end: &End<'_>, ssrc: u32, stop: &AtomicBool) {
    let t0 = Instant::now();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let due = t0 + Duration::from_millis(20 * i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let mut pkt = Vec::new();
        media::rtp::write(
            &mut pkt,
            i == 0,
            end.pt,
            1000u16.wrapping_add(i as u16),
            (i * AMR_NB_FRAME_SAMPLES) as u32,
            ssrc,
            &end.payloads[i % end.payloads.len()],
        );
        end.sock
            .send_to(&pkt, end.relay)
            .unwrap_or_else(|e| panic!("{}: send RTP to {}: {e}", end.name, end.relay));
        i += 1;
    }
}

/// Receives RTP on `end`'s socket until `stop`; counts into `heard` the
/// packets carrying one of `other`'s frames.
fn receive_stream(
    end: &End<'_>,
    other: &BTreeSet<Vec<u8>>,
    stop: &AtomicBool,
    heard: &AtomicUsize,
) -> Vec<Rx> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match end.sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => panic!("{}: recv: {e}", end.name),
        };
        let pkt = &buf[..n];
        if media::rtp::is_rtcp(pkt) {
            continue;
        }
        let rtp = media::rtp::parse(pkt)
            .unwrap_or_else(|e| panic!("{}: not RTP from {from} ({e}): {pkt:02x?}", end.name));
        let speech = speech_bits(rtp.payload(pkt));
        if speech.as_ref().is_some_and(|s| other.contains(s)) {
            heard.fetch_add(1, Ordering::Relaxed);
        }
        out.push(Rx {
            from,
            pt: rtp.payload_type,
            ssrc: rtp.ssrc,
            speech,
        });
    }
    out
}

/// Streams AMR from both ends at once until each got [`MIN_PACKETS`] of the
/// other's frames, then checks that everything each end received came from
/// its relay port, in its payload type (and SSRC, if it was told one), and
/// carried the other end's frames: nothing of its own (no echo), nothing
/// mangled.
fn exchange(a: &End<'_>, b: &End<'_>, context: &dyn Fn() -> String) {
    assert!(
        a.speech.is_disjoint(&b.speech),
        "the two ends' frames must be told apart"
    );
    let stop = AtomicBool::new(false);
    let (heard_a, heard_b) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let (rx_a, rx_b, enough) = std::thread::scope(|s| {
        s.spawn(|| send_stream(a, 0x0A0A_0001, &stop));
        s.spawn(|| send_stream(b, 0x0B0B_0002, &stop));
        let ra = s.spawn(|| receive_stream(a, &b.speech, &stop, &heard_a));
        let rb = s.spawn(|| receive_stream(b, &a.speech, &stop, &heard_b));
        let enough = wait_until(SHORT, || {
            heard_a.load(Ordering::Relaxed) >= MIN_PACKETS
                && heard_b.load(Ordering::Relaxed) >= MIN_PACKETS
        });
        stop.store(true, Ordering::Relaxed);
        (ra.join().unwrap(), rb.join().unwrap(), enough)
    });
    assert!(
        enough,
        "media did not cross the relay: {} got {} of {}'s frames ({} packets in all), \
         {} got {} of {}'s ({} in all), within {SHORT:?}\n{}",
        a.name,
        heard_a.load(Ordering::Relaxed),
        b.name,
        rx_a.len(),
        b.name,
        heard_b.load(Ordering::Relaxed),
        a.name,
        rx_b.len(),
        context()
    );
    for (end, rx, other) in [(a, &rx_a, b), (b, &rx_b, a)] {
        for p in rx {
            assert_eq!(
                p.from, end.relay,
                "{}: RTP from {} (not its relay port {})",
                end.name, p.from, end.relay
            );
            assert_eq!(p.pt, end.pt, "{}: payload type of {p:?}", end.name);
            if let Some(ssrc) = end.ssrc {
                assert_eq!(
                    p.ssrc, ssrc,
                    "{}: the relay's SSRC is the rssrc it was told",
                    end.name
                );
            }
            assert!(
                p.speech.as_ref().is_some_and(|s| other.speech.contains(s)),
                "{}: a packet that is not one of {}'s frames: {p:?}",
                end.name,
                other.name
            );
        }
    }
    eprintln!(
        "e2e: {} got {} packets, {} got {}",
        a.name,
        rx_a.len(),
        b.name,
        rx_b.len()
    );
}

// ---------------------------------------------------------------------------------
// Tests: calls from a trunk (sip_call_in)
// ---------------------------------------------------------------------------------

/// The number the app's account owns, and the device it is logged in on.
const APP_NUMBER: &str = "13900000001";
const APP_DEVICE: &str = "android-callee";

/// A switch whose only trunk is the inbound one `pstn` calls from, and the
/// app owning [`APP_NUMBER`].
fn call_in_setup(name: &str, ring_timeout_s: u64) -> (TestDir, Switch, SippPorts, App, SmsHook) {
    require_sipp();
    let dir = TestDir::new(name);
    let sms = SmsHook::start();
    let pstn = SippPorts::new();
    let sw = Switch::start(
        dir.path(),
        &config(
            vec![TrunkCfg::caller(pstn.addr().to_string())],
            &sms,
            ring_timeout_s,
        ),
    );
    let app = app_for(Api(sw.http), &sms, APP_NUMBER, APP_DEVICE);
    (dir, sw, pstn, app, sms)
}

/// Checks a sip_call_in `p2p_inform_called` event; returns (the opdata as
/// sent, its JSON, the session id).
fn check_call_in_event(event: &Value, range: (u16, u16)) -> (Value, Value, String) {
    assert_eq!(event["caller"], SIPP_CALLER, "caller of {event}");
    // An object the app reads the relay from (API.md; the push payloads of
    // src/push/ and the OpenAPI description say so too), not its JSON text.
    assert!(
        event["opdata"].is_object(),
        "a sip_call_in opdata is a JSON object: {event}"
    );
    let (opdata, o) = opdata_of(event);
    assert_eq!(o["event"], "sip_call_in", "opdata {o}");
    assert_eq!(o["caller"], SIPP_CALLER, "opdata {o}");
    assert_eq!(o["callee"], APP_NUMBER, "opdata {o}");
    assert_eq!(o["ip"], "127.0.0.1", "opdata {o}");
    assert_eq!(o["codec_name"], "AMR", "opdata {o}");
    assert_eq!(o["payload_mode"], "octet-aligned", "opdata {o}");
    assert!(o["rssrc"].is_u64(), "opdata rssrc: {o}");
    let port = o["port"].as_u64().expect("opdata port") as u16;
    assert!(
        (range.0..=range.1).contains(&port),
        "opdata port {port} is not a relay port {range:?}: {o}"
    );
    let sid = o["session_id"]
        .as_str()
        .expect("opdata session_id")
        .to_owned();
    assert!(!sid.is_empty(), "opdata {o}");
    (opdata, o, sid)
}

/// A PSTN call to the app's number is pushed to its open long poll with the
/// sip_call_in opdata; p2p_ringing gives the caller 180, p2p_answer 200
/// with the relay's SDP (AMR, as the caller offered it), and the app and
/// the caller hear each other's frames through the relay. The caller's BYE
/// reaches the app as `caller_hookon`, the session ends `release`, and the
/// history has one sip_call_in record.
#[test]
fn sip_call_in_answered_relays_media_and_tells_the_app_of_the_bye() {
    let (dir, sw, pstn_ports, mut app, _sms) = call_in_setup("call_in_answered", RING_LONG_S);
    let range = media_range(dir.path());
    let app_sock = MediaSocket::bind();
    let trunk_sock = MediaSocket::bind();

    // The app's long poll is open (or opens) while the call comes in.
    let (event, mut pstn) = std::thread::scope(|s| {
        let waiting = s.spawn(|| app.wait_event("p2p_inform_called", &sw));
        let pstn = pstn_call(
            &dir,
            "pstn",
            &sw,
            pstn_ports,
            "uac_call_app.xml",
            APP_NUMBER,
            &[
                "-d",
                &HOLD_MS.to_string(),
                "-key",
                "trunk_port",
                &trunk_sock.port().to_string(),
            ],
        );
        (waiting.join().unwrap(), pstn)
    });
    let (opdata, o, sid) = check_call_in_event(&event, range);
    let ctx = || format!("{}\n{}", pstn.report(), sw.log_tail(40));

    assert_eq!(app.status(&sid), "p2p_idle");
    assert_eq!(app.p2p_poll(&opdata).ok()["peer_status"], "p2p_idle");
    assert!(
        invite_provisionals(&pstn).iter().all(|s| *s == 100),
        "nothing but 100 before the app rings: {:?}",
        invite_provisionals(&pstn)
    );

    // Sent back as its compact JSON text, as an app that keeps the opdata
    // as a string would: the same opdata to the switch.
    app.ringing(&Value::String(o.to_string())).ok();
    wait_received(&pstn, "180 Ringing", |m| m.status() == Some(180));
    assert_eq!(app.status(&sid), "p2p_ring");

    let answer = app.answer(&opdata, app_sock.port());
    let reply = answer.ok();
    assert_eq!(reply["session_id"], sid.as_str(), "p2p_answer {reply}");
    let (app_relay, rssrc) = relay_of(reply, range);
    assert_eq!(
        (u64::from(app_relay.port()), u64::from(rssrc)),
        (o["port"].as_u64().unwrap(), o["rssrc"].as_u64().unwrap()),
        "the answer names the relay leg the opdata announced: {reply} vs {o}"
    );

    // The caller's 200: the relay's trunk leg, answering AMR as offered.
    let ok = wait_received(&pstn, "200 to the INVITE", |m| {
        m.status() == Some(200) && m.cseq.ends_with(" INVITE")
    });
    let trunk_relay = ok.media_addr();
    assert_eq!(trunk_relay.ip().to_string(), "127.0.0.1", "{}", ok.text);
    assert!(
        (range.0..=range.1).contains(&trunk_relay.port()) && trunk_relay != app_relay,
        "the 200's m=audio is not the relay's trunk leg ({range:?}, app leg {app_relay}):\n{}",
        ok.text
    );
    assert_eq!(
        ok.m_audio().get(2).copied(),
        Some("96"),
        "the trunk offered AMR first, so it is answered AMR:\n{}",
        ok.text
    );
    assert!(
        ok.text.contains("a=rtpmap:96 AMR/8000") && ok.text.contains("octet-align=1"),
        "the answer keeps AMR octet-aligned as offered:\n{}",
        ok.text
    );
    app.wait_status(&sw, &sid, "p2p_hookoff");
    assert_eq!(app.p2p_poll(&opdata).ok()["peer_status"], "p2p_hookoff");

    let mut app_end = End::new("app", &app_sock.rtp, app_relay, APP_AMR_PT, 440.0);
    app_end.ssrc = Some(rssrc);
    let trunk_end = End::new("pstn", &trunk_sock.rtp, trunk_relay, TRUNK_AMR_PT, 660.0);
    exchange(&app_end, &trunk_end, &ctx);

    // The caller hangs up after HOLD_MS.
    pstn.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
    let hookon = app.wait_event("caller_hookon", &sw);
    assert_eq!(hookon["caller"], SIPP_CALLER, "{hookon}");
    app.wait_status(&sw, &sid, "release");
    assert_eq!(
        app.answer(&opdata, app_sock.port()).failure(),
        "session_not_exist",
        "an ended call cannot be answered"
    );
    let left = app.leftover_events();
    assert!(
        left.is_empty(),
        "events the app was not expecting: {left:?}"
    );

    let detail = app.history_record(&sw, SIPP_CALLER, APP_NUMBER, "sip_call_in");
    assert!(
        detail["ringtime"].as_str().is_some_and(|s| !s.is_empty())
            && detail["starttime"].as_str().is_some_and(|s| !s.is_empty()),
        "the call rang and was answered: {detail}"
    );
}

/// p2p_reject declines the caller with 603, and with `reason: busy` with
/// 486. Either way the session ends.
#[test]
fn sip_call_in_rejected_gets_603_or_486_when_busy() {
    let (dir, sw, pstn_ports, mut app, _sms) = call_in_setup("call_in_rejected", RING_LONG_S);
    let range = media_range(dir.path());
    for (reason, want) in [(None, 603u16), (Some("busy"), 486)] {
        let name = format!("pstn_{want}");
        let mut pstn = pstn_call(
            &dir,
            &name,
            &sw,
            pstn_ports,
            "uac_call_app_refused.xml",
            APP_NUMBER,
            &[],
        );
        // The event comes only for a call the switch took (not one it
        // refused as busy on its own): the app's reject decides the answer.
        let event = app.wait_event("p2p_inform_called", &sw);
        let (opdata, _, sid) = check_call_in_event(&event, range);
        app.reject(&opdata, reason).ok();
        pstn.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
        assert_eq!(
            invite_finals(&pstn),
            [want],
            "final responses the caller got after p2p_reject {reason:?}"
        );
        app.wait_status(&sw, &sid, "release");
        assert_eq!(
            app.reject(&opdata, reason).failure(),
            "session_not_exist",
            "a call that ended cannot be rejected again"
        );
    }
}

/// The app rings but never answers; after `ring_timeout_s` the caller gets
/// 480 and the app `caller_hookon`.
#[test]
fn sip_call_in_unanswered_gets_480_after_the_ring_timeout() {
    let (dir, sw, pstn_ports, mut app, _sms) = call_in_setup("call_in_unanswered", RING_SHORT_S);
    let range = media_range(dir.path());
    let mut pstn = pstn_call(
        &dir,
        "pstn",
        &sw,
        pstn_ports,
        "uac_call_app_refused.xml",
        APP_NUMBER,
        &[],
    );
    let event = app.wait_event("p2p_inform_called", &sw);
    let (opdata, _, sid) = check_call_in_event(&event, range);
    app.ringing(&opdata).ok();

    let hookon = app.wait_event("caller_hookon", &sw);
    assert_eq!(hookon["caller"], SIPP_CALLER, "{hookon}");
    pstn.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
    assert_eq!(
        invite_finals(&pstn),
        [480],
        "final responses the caller got"
    );
    assert!(
        invite_provisionals(&pstn).contains(&180),
        "the app rang: {:?}",
        invite_provisionals(&pstn)
    );
    app.wait_status(&sw, &sid, "release");
    assert_eq!(
        app.answer(&opdata, free_port()).failure(),
        "session_not_exist",
        "a call that timed out cannot be answered"
    );
    let detail = app.history_record(&sw, SIPP_CALLER, APP_NUMBER, "sip_call_in");
    assert_eq!(detail["starttime"], "", "never answered: {detail}");
}

/// The caller gives up while the app rings; the app is told with
/// `caller_hookon` and cannot answer any more.
#[test]
fn sip_call_in_cancelled_while_ringing_tells_the_app() {
    let (dir, sw, pstn_ports, mut app, _sms) = call_in_setup("call_in_cancelled", RING_LONG_S);
    let range = media_range(dir.path());
    // uac_cancel.xml CANCELs as soon as it gets the 180.
    let mut pstn = pstn_call(
        &dir,
        "pstn",
        &sw,
        pstn_ports,
        "uac_cancel.xml",
        APP_NUMBER,
        &[],
    );
    let event = app.wait_event("p2p_inform_called", &sw);
    let (opdata, _, sid) = check_call_in_event(&event, range);
    app.ringing(&opdata).ok();

    let hookon = app.wait_event("caller_hookon", &sw);
    assert_eq!(hookon["caller"], SIPP_CALLER, "{hookon}");
    pstn.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
    assert_eq!(
        invite_finals(&pstn),
        [487],
        "the INVITE ends 487 after the CANCEL"
    );
    app.wait_status(&sw, &sid, "release");
    assert_eq!(
        app.answer(&opdata, free_port()).failure(),
        "session_not_exist",
        "a cancelled call cannot be answered"
    );
}

/// An opdata is the capability for one call. Made-up and tampered ones
/// (another session id, another port, an added field, not JSON) are
/// `session_not_exist`, whatever the app does with them; the real one in
/// another account's hands (its token) is `no_logind`. A call is answered
/// once: a second p2p_answer, or a reject after the answer, fails. Then the
/// app hangs up (DELETE) and the caller gets the BYE.
#[test]
fn foreign_or_tampered_opdata_and_double_answers_are_refused() {
    let (dir, sw, pstn_ports, mut app, sms) = call_in_setup("call_in_opdata", RING_LONG_S);
    let range = media_range(dir.path());
    // Another account, logged in on its own device.
    let other = app_for(Api(sw.http), &sms, "13900000099", "android-other");
    let mut pstn = pstn_call(
        &dir,
        "pstn",
        &sw,
        pstn_ports,
        "uac_wait_bye.xml",
        APP_NUMBER,
        &[],
    );
    let event = app.wait_event("p2p_inform_called", &sw);
    let (opdata, o, sid) = check_call_in_event(&event, range);

    let made_up = json!({
        "event": "sip_call_in", "caller": SIPP_CALLER, "callee": APP_NUMBER,
        "session_id": format!("{sid}0"), "ip": "127.0.0.1", "port": o["port"],
        "codec_name": "AMR", "payload_mode": "octet-aligned", "rssrc": o["rssrc"],
    });
    let mut other_port = o.clone();
    other_port["port"] = json!(o["port"].as_u64().unwrap() + 2);
    let mut extra_field = o.clone();
    extra_field["x"] = json!(1);
    let mut other_session = o.clone();
    other_session["session_id"] = json!("n1-00000000000000000000000000000000");
    let forged = [
        made_up.clone(),
        Value::String(made_up.to_string()),
        other_port.clone(),
        Value::String(other_port.to_string()),
        extra_field,
        other_session,
        json!("not an opdata"),
        json!(12345),
    ];
    for f in &forged {
        for (what, r) in [
            ("p2p_ringing", app.ringing(f)),
            ("p2p_answer", app.answer(f, free_port())),
            ("p2p_reject", app.reject(f, None)),
            ("p2p_poll", app.p2p_poll(f)),
        ] {
            assert_eq!(r.failure(), "session_not_exist", "{what} with opdata {f}");
        }
    }
    assert!(
        invite_provisionals(&pstn).iter().all(|s| *s == 100) && invite_finals(&pstn).is_empty(),
        "the forged opdata did nothing to the call: {:?} {:?}",
        invite_provisionals(&pstn),
        invite_finals(&pstn)
    );
    assert_eq!(app.status(&sid), "p2p_idle");

    // The real opdata with someone else's login token.
    assert_eq!(
        other.answer(&opdata, free_port()).failure(),
        "no_logind",
        "another account's login cannot take this call"
    );
    assert_eq!(app.status(&sid), "p2p_idle");

    let sock = MediaSocket::bind();
    let first = app.answer(&opdata, sock.port());
    relay_of(first.ok(), range);
    wait_received(&pstn, "200 to the INVITE", |m| {
        m.status() == Some(200) && m.cseq.ends_with(" INVITE")
    });
    assert_eq!(
        app.answer(&opdata, sock.port()).failure(),
        "session_not_exist",
        "a second p2p_answer"
    );
    assert_eq!(
        app.reject(&opdata, None).failure(),
        "session_not_exist",
        "p2p_reject after the answer"
    );
    assert_eq!(app.status(&sid), "p2p_hookoff", "the call is still up");

    // The app hangs up: BYE to the caller, which uac_wait_bye.xml waits for.
    app.stop(&sid);
    pstn.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
    app.wait_status(&sw, &sid, "release");
    assert_eq!(
        invite_finals(&pstn),
        [200],
        "one final response to the INVITE"
    );
    let left = app.leftover_events();
    assert!(
        left.is_empty(),
        "the app hung up itself: no caller_hookon or anything else: {left:?}"
    );
}

// ---------------------------------------------------------------------------------
// Tests: app to app (p2p)
// ---------------------------------------------------------------------------------

/// The caller's and the callee's accounts (numbers) and devices.
const A_NUMBER: &str = "13900000011";
const B_NUMBER: &str = "13900000012";

/// A starts a p2p call to B's number with its media at `sock`: the Android
/// start reply, checked; returns the session id, the relay address A sends
/// to and the SSRC A hears.
fn start_p2p(a: &App, sock: &MediaSocket, range: (u16, u16)) -> (String, SocketAddr, u32) {
    let r = a.post(
        "/lwork/mobile/voip/calls",
        json!({"uuid": a.uuid, "caller_phone": a.uuid, "phone": B_NUMBER, "type": "p2p",
               "sdp": {"ip": "127.0.0.1", "port": sock.port()},
               "clidata": {"os_type": "android"}, "t": t()}),
    );
    let reply = r.ok();
    let sid = reply["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no session_id: {reply}"))
        .to_owned();
    let (relay, rssrc) = relay_of(reply, range);
    (sid, relay, rssrc)
}

/// B's `p2p_inform_called` for A's call `sid`: the opdata as sent.
fn check_p2p_event(event: &Value, sid: &str) -> Value {
    assert_eq!(event["caller"], A_NUMBER, "caller of {event}");
    let (opdata, o) = opdata_of(event);
    assert_eq!(
        o["session_id"], sid,
        "the opdata names A's session: {event}"
    );
    opdata
}

/// App A calls app B's number with `type: p2p`; B's long poll gets
/// `p2p_inform_called`; B's p2p_ringing and p2p_answer move A's status
/// through p2p_ring and p2p_hookoff; A and B hear each other's frames
/// through the relay; B hangs up and A's status is `release`.
#[test]
fn p2p_call_rings_answers_relays_media_and_ends_when_the_callee_hangs_up() {
    let dir = TestDir::new("p2p_answered");
    let sms = SmsHook::start();
    let sw = Switch::start(dir.path(), &config(Vec::new(), &sms, RING_LONG_S));
    let range = media_range(dir.path());
    let api = Api(sw.http);
    let a = app_for(api, &sms, A_NUMBER, "android-a");
    let mut b = app_for(api, &sms, B_NUMBER, "android-b");
    let (sock_a, sock_b) = (MediaSocket::bind(), MediaSocket::bind());

    // B's long poll is open (or opens) while A calls.
    let (event, (sid, relay_a, rssrc_a)) = std::thread::scope(|s| {
        let waiting = s.spawn(|| b.wait_event("p2p_inform_called", &sw));
        let started = start_p2p(&a, &sock_a, range);
        (waiting.join().unwrap(), started)
    });
    let opdata = check_p2p_event(&event, &sid);
    assert_eq!(a.status(&sid), "p2p_idle");
    assert_eq!(b.p2p_poll(&opdata).ok()["peer_status"], "p2p_idle");
    // The opdata is checked whole: the same session with another key is
    // nobody's call.
    let (_, mut forged) = opdata_of(&event);
    forged["k"] = json!("0".repeat(32));
    let forged = Value::String(forged.to_string());
    assert_ne!(forged, opdata);
    for (what, r) in [
        ("p2p_ringing", b.ringing(&forged)),
        ("p2p_answer", b.answer(&forged, sock_b.port())),
        ("p2p_reject", b.reject(&forged, None)),
    ] {
        assert_eq!(r.failure(), "session_not_exist", "{what} with {forged}");
    }
    assert_eq!(a.status(&sid), "p2p_idle", "the forged opdata did nothing");

    b.ringing(&opdata).ok();
    assert_eq!(
        a.status(&sid),
        "p2p_ring",
        "B's p2p_ringing is A's p2p_ring"
    );
    assert_eq!(b.p2p_poll(&opdata).ok()["peer_status"], "p2p_ring");

    let answer = b.answer(&opdata, sock_b.port());
    let reply = answer.ok();
    assert_eq!(
        reply["session_id"],
        sid.as_str(),
        "B's answer names A's session: {reply}"
    );
    let (relay_b, rssrc_b) = relay_of(reply, range);
    assert_ne!(relay_a, relay_b, "each app has its own relay leg");
    assert_eq!(
        a.status(&sid),
        "p2p_hookoff",
        "B's p2p_answer is A's p2p_hookoff"
    );
    assert_eq!(b.status(&sid), "p2p_hookoff", "B reads the same session");

    let mut end_a = End::new("app A", &sock_a.rtp, relay_a, APP_AMR_PT, 440.0);
    end_a.ssrc = Some(rssrc_a);
    let mut end_b = End::new("app B", &sock_b.rtp, relay_b, APP_AMR_PT, 660.0);
    end_b.ssrc = Some(rssrc_b);
    exchange(&end_a, &end_b, &|| sw.log_tail(40));

    b.stop(&sid);
    a.wait_status(&sw, &sid, "release");
    assert_eq!(b.status(&sid), "release");
    assert_eq!(
        b.answer(&opdata, sock_b.port()).failure(),
        "session_not_exist",
        "an ended p2p call cannot be answered"
    );
    let left = b.leftover_events();
    assert!(
        left.is_empty(),
        "B answered: no caller_hookon or anything else: {left:?}"
    );
    let detail = a.history_record(&sw, A_NUMBER, B_NUMBER, "p2p");
    assert!(
        detail["starttime"].as_str().is_some_and(|s| !s.is_empty()),
        "answered: {detail}"
    );
}

/// B is logged in but never answers; after the ring timeout the switch
/// calls B's number through the trunk (a SIPp uas, which answers), B's app
/// is told `caller_hookon`, and its late p2p_answer, p2p_ringing and
/// p2p_reject get `already_call_real_phone`. A's hangup ends the trunk
/// call.
#[test]
fn p2p_call_falls_back_to_the_phone_when_the_app_does_not_answer() {
    require_sipp();
    let dir = TestDir::new("p2p_fallback");
    let sms = SmsHook::start();
    let uas_ports = SippPorts::new();
    let mut uas = SippCmd::new("phone_b", "uas.xml", uas_ports)
        .args(&["-m", "1", "-trace_msg"])
        .timeout_s(40)
        .spawn(dir.path());
    let sw = Switch::start(
        dir.path(),
        &config(
            vec![TrunkCfg::callee(uas_ports.addr().to_string())],
            &sms,
            RING_SHORT_S,
        ),
    );
    let range = media_range(dir.path());
    let api = Api(sw.http);
    let a = app_for(api, &sms, A_NUMBER, "android-a");
    let mut b = app_for(api, &sms, B_NUMBER, "android-b");
    let sock_a = MediaSocket::bind();

    let (sid, _, _) = start_p2p(&a, &sock_a, range);
    let event = b.wait_event("p2p_inform_called", &sw);
    let opdata = check_p2p_event(&event, &sid);
    b.ringing(&opdata).ok();
    assert_eq!(a.status(&sid), "p2p_ring");
    assert!(
        traced(&uas).is_empty(),
        "nothing goes to the phone while the app rings: {:?}",
        traced(&uas)
    );

    // The ring timeout passes: B's app stops ringing, B's phone rings.
    let hookon = b.wait_event("caller_hookon", &sw);
    assert_eq!(hookon["caller"], A_NUMBER, "{hookon}");
    let invite = wait_received(&uas, "INVITE", |m| m.start_line.starts_with("INVITE "));
    assert_eq!(
        invite.ruri_user(),
        B_NUMBER,
        "the fallback calls B's number:\n{}",
        invite.text
    );
    let seen = a.wait_status(&sw, &sid, "hookoff");
    assert!(
        !seen.iter().any(|s| s == "p2p_hookoff"),
        "A never talked to B's app: {seen:?}"
    );

    for (what, r) in [
        ("p2p_answer", b.answer(&opdata, free_port())),
        ("p2p_ringing", b.ringing(&opdata)),
        ("p2p_reject", b.reject(&opdata, None)),
    ] {
        assert_eq!(r.failure(), "already_call_real_phone", "late {what}");
    }
    assert_eq!(a.status(&sid), "hookoff", "the phone call is still up");

    a.stop(&sid);
    uas.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
    a.wait_status(&sw, &sid, "release");
    let left = b.leftover_events();
    assert!(left.is_empty(), "events B was not expecting: {left:?}");
}
