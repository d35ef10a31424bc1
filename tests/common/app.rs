//! The switch's HTTP façade spoken the way an app speaks it: a minimal
//! HTTP/1.1 client over a TcpStream (the crate has no HTTP client among its
//! dev-dependencies), a stand-in SMS gateway that captures the auth codes
//! the switch sends, accounts made as an app makes them (`auth_code`,
//! `register`, `login`), and the calls an app makes with its login.

// Each test binary uses only some of these helpers (as in `mod.rs`).
#![allow(dead_code)]

use super::{parse_response, wait_until, BadResponse, SHORT};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------

/// A reply from the switch: HTTP status and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub http: u16,
    pub json: Value,
    pub what: String,
}

impl Reply {
    /// The body, after checking it is `{"status":"ok",...}` with HTTP 200.
    pub fn ok(&self) -> &Value {
        assert!(
            self.http == 200 && self.json["status"] == "ok",
            "{}: expected HTTP 200 with status ok, got HTTP {} {}",
            self.what,
            self.http,
            self.json
        );
        &self.json
    }

    /// The list `field` of an ok body; `what` names it when it is no list.
    pub fn list(&self, field: &str, what: &str) -> Vec<Value> {
        self.ok()[field]
            .as_array()
            .unwrap_or_else(|| panic!("{what} is not a list: {}", self.json))
            .clone()
    }

    /// The `reason` of a `{"status":"failed"}` reply.
    pub fn failure(&self) -> &str {
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

/// The switch's HTTP façade at this address.
#[derive(Clone, Copy, Debug)]
pub struct Api(pub SocketAddr);

impl Api {
    pub fn request(self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let what = format!(
            "{method} {path} {}",
            body.map(Value::to_string).unwrap_or_default()
        );
        let mut s = TcpStream::connect_timeout(&self.0, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{what}: connect to {}: {e}", self.0));
        // Long polls last the switch's idle timeout; everything else is quick.
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
        let (http, body) = parse_response(&raw).unwrap_or_else(|e| match e {
            BadResponse::NoHeaderEnd => panic!(
                "{what}: no header end in {:?}",
                String::from_utf8_lossy(&raw)
            ),
            BadResponse::StatusLine(head) => panic!("{what}: bad status line in {head:?}"),
        });
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{what}: HTTP {http} body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        Reply { http, json, what }
    }

    pub fn post(self, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(&body))
    }

    /// GET or DELETE with the parameters in the query string, as web pages
    /// (and the apps' status polls) send them.
    pub fn with_query(self, method: &str, path: &str, params: &[(&str, &str)]) -> Reply {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
            .collect();
        self.request(method, &format!("{path}?{}", query.join("&")), None)
    }
}

/// Percent-encoding for a query-string value (RFC 3986 unreserved kept).
pub fn pct(s: &str) -> String {
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
pub fn t() -> String {
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
pub struct SmsHook {
    pub addr: SocketAddr,
    /// (request line, body) of each request.
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

impl SmsHook {
    pub fn start() -> SmsHook {
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

    /// The `[sms]` table pointing the switch at this hook. The harness has
    /// no knob for it, but `SwitchCfg::sip_extra` is pasted into the file
    /// right after the [sip] keys, so a table header there opens [sms] (the
    /// next table header, [media] or one that follows this text, closes it).
    pub fn toml(&self) -> String {
        format!("\n[sms]\nurl = \"http://{}/sms\"\n", self.addr)
    }

    /// Waits up to [`SHORT`] for the latest request the switch sent for
    /// `phone` and `kind` to be one that `pick` (given its request line and
    /// body) maps to something, and returns that.
    pub fn wait_for<T>(
        &self,
        phone: &str,
        kind: &str,
        mut pick: impl FnMut(&str, &Value) -> Option<T>,
    ) -> T {
        let mut found = None;
        let ok = wait_until(SHORT, || {
            found = self
                .received
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(_, b)| b["phone"] == phone && b["type"] == kind)
                .and_then(|(line, b)| pick(line, b));
            found.is_some()
        });
        assert!(
            ok,
            "no {kind} code for {phone} reached the SMS hook; it got {:?}",
            self.received.lock().unwrap()
        );
        found.unwrap()
    }

    /// The code the switch sent to `phone` for `kind` (the latest one).
    pub fn code(&self, phone: &str, kind: &str) -> String {
        self.wait_for(phone, kind, |_, b| b["code"].as_str().map(str::to_owned))
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
// Accounts
// ---------------------------------------------------------------------------------

/// A logged-in account on one device.
#[derive(Clone, Debug)]
pub struct Login {
    pub uuid: String,
    pub device: String,
    pub token: String,
}

/// `auth_code`: asks the switch to send `phone` a register code.
pub fn send_auth_code(api: Api, phone: &str, device: &str) {
    api.post(
        "/lwork/sms/auth_code",
        json!({"uuid": phone, "device_id": device, "type": "register"}),
    )
    .ok();
}

/// `register` with the SMS `code`.
pub fn register_with_code(api: Api, phone: &str, device: &str, code: &str, pwd: &str) {
    api.post(
        "/lwork/mobile/register",
        json!({"type": "sms", "uuid": phone, "device_id": device, "auth_code": code,
               "name": "Test", "pwd": pwd}),
    )
    .ok();
}

/// `auth_code` → the code from the SMS hook → `register`.
pub fn register(api: Api, sms: &SmsHook, phone: &str, device: &str, pwd: &str) {
    send_auth_code(api, phone, device);
    let code = sms.code(phone, "register");
    register_with_code(api, phone, device, &code, pwd);
}

/// `login` as an Android app.
pub fn login(api: Api, acc: &str, pwd: &str, device: &str) -> Login {
    let r = api.post(
        "/lwork/mobile/login",
        json!({"acc": acc, "pwd": pwd, "device_id": device, "clidata": {"os_type": "android"}}),
    );
    let v = r.ok();
    Login {
        uuid: v["uuid"]
            .as_str()
            .expect("login reply has a uuid")
            .to_owned(),
        device: device.to_owned(),
        token: v["token"]
            .as_str()
            .expect("login reply has a token")
            .to_owned(),
    }
}

/// `auth_code` → the code from the SMS hook → `register` → `login`.
pub fn register_and_login(api: Api, sms: &SmsHook, phone: &str, device: &str, pwd: &str) -> Login {
    register(api, sms, phone, device, pwd);
    login(api, phone, pwd, device)
}

impl Login {
    /// GET /lwork/mobile/voip/calls, as an Android app reads a call: the
    /// session's `peer_status`.
    pub fn peer_status(&self, api: Api, sid: &str) -> String {
        let r = api.with_query(
            "GET",
            "/lwork/mobile/voip/calls",
            &[("uuid", &self.uuid), ("session_id", sid), ("t", &t())],
        );
        r.ok()["peer_status"]
            .as_str()
            .unwrap_or_else(|| panic!("status without peer_status: {}", r.json))
            .to_owned()
    }

    /// The first page of the account's call history.
    pub fn history(&self, api: Api) -> Vec<Value> {
        api.post(
            "/lwork/mobile/call_history",
            json!({"uuid": self.uuid, "start_id": 0, "num": 20, "token": self.token}),
        )
        .list("history", "history")
    }

    /// One long poll of the push channel: what it returned (`shake_hand`
    /// after the switch's idle timeout).
    pub fn poll(&self, api: Api) -> Vec<Value> {
        let data = api
            .post(
                "/channel/push_service",
                json!({"acc": self.uuid, "device_id": self.device, "token": self.token}),
            )
            .list("data", "push_service data");
        // Idle: `[{"event":"shake_hand"}]` and nothing else.
        assert!(
            data.len() == 1 || data.iter().all(|e| e["event"] != "shake_hand"),
            "shake_hand mixed with events: {data:?}"
        );
        assert!(!data.is_empty(), "a poll returns events or shake_hand");
        data
    }
}

/// The one call of a call-history group: checks the group holds exactly
/// one call, of `kind`, and returns its detail.
pub fn single_call(g: &Value, kind: &str) -> Value {
    assert_eq!(g["times"], 1, "exactly one record of the call: {g}");
    let detail = g["detail"].as_array().expect("detail is a list");
    assert_eq!(detail.len(), 1, "one detail: {g}");
    assert_eq!(detail[0]["type"], kind, "call kind: {g}");
    detail[0].clone()
}

/// Whether the time `field` (`calltime`, `ringtime`, `starttime`) of a
/// call-history detail is set.
pub fn has_time(detail: &Value, field: &str) -> bool {
    detail[field].as_str().is_some_and(|s| !s.is_empty())
}

/// Polls `state` until it returns `want` or [`SHORT`] passes: whether it got
/// there, and the states seen (consecutive repeats folded). With `rank`,
/// checks that the states only move forward; `what` (e.g. `callback <sid>`)
/// names the call when they do not.
pub fn watch_states(
    what: &str,
    want: &str,
    rank: Option<&dyn Fn(&str) -> u32>,
    mut state: impl FnMut() -> String,
) -> (bool, Vec<String>) {
    let mut seen: Vec<String> = Vec::new();
    let reached = wait_until(SHORT, || {
        let s = state();
        if seen.last() != Some(&s) {
            if let (Some(prev), Some(rank)) = (seen.last(), rank) {
                assert!(
                    rank(prev) < rank(&s),
                    "{what} went from {prev} to {s} (states so far {seen:?})"
                );
            }
            seen.push(s.clone());
        }
        s == want
    });
    (reached, seen)
}
