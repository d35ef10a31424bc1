//! The HTTP workload: the apps' call-status poll (API.md "Status", e.g.
//! `GET /lwork/mobile/voip/calls?uuid=..&session_id=..&t=..`) against a
//! `softswitch serve` pinned to one core, loaded by `wrk` pinned to
//! another.
//!
//! ```text
//!  wrk (core 1, keep-alive) ──GET status──▶ softswitch (core 0, 1 worker) ──INVITE──▶ SIPp uas
//!  bench "app" socket ══RTP (PCMA, 20 ms)══▶ relay                                      (answers)
//!  softswitch ──POST {"phone","code"}──▶ bench SMS hook (auth code for register)
//! ```
//!
//! The account is made the way an app makes it (`auth_code` → the code from
//! the SMS hook → `register` → `login`), the call is a real iOS-spelling app
//! call answered by SIPp, and the bench's app socket sends it RTP, so the
//! polled status is the full reply (`hookoff` with live `stats`). The
//! figures are wrk's (requests/s, latency percentiles, non-2xx, socket
//! errors) plus the switch's CPU over the run from /proc, per request. A
//! short second wrk run checks every reply body with a Lua hook (kept out
//! of the measured run: it costs the client CPU).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::procstat;
use super::sip_load::{free_udp_ports, spawn_switch, Proc};
use super::BenchResult;

/// The issue-6 target for the status poll on one core.
pub const TARGET_RPS: f64 = 50_000.0;

/// How long the switch may take to come up, a call to be answered.
const STARTUP: Duration = Duration::from_secs(15);

/// The account (its phone number is its id), device and number called.
const PHONE: &str = "8613800000001";
const DEVICE: &str = "bench-device";
const PASSWORD: &str = "bench-password";
const CALLEE: &str = "9123";

/// The reply body a correct poll starts with (API.md field order).
const STATUS_PREFIX: &str = r#"{"status":"ok","peer_status":"hookoff","stats":{"#;

/// One status route of the three client spellings (they share one handler;
/// the web one names the state `state`), or `/healthz`: the floor, what the
/// HTTP stack (hyper, router, request counting) and the kernel cost without
/// the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusRoute {
    Android,
    Ios,
    Web,
    Healthz,
}

impl StatusRoute {
    pub fn parse(name: &str) -> Option<StatusRoute> {
        match name {
            "android" => Some(StatusRoute::Android),
            "ios" => Some(StatusRoute::Ios),
            "web" => Some(StatusRoute::Web),
            "healthz" => Some(StatusRoute::Healthz),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StatusRoute::Android => "android",
            StatusRoute::Ios => "ios",
            StatusRoute::Web => "web",
            StatusRoute::Healthz => "healthz",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            StatusRoute::Android => "/lwork/mobile/voip/calls",
            StatusRoute::Ios => "/lwork/mobile/voip/icalls",
            StatusRoute::Web => "/lwork/voices1/fzdvoip",
            StatusRoute::Healthz => "/healthz",
        }
    }

    /// What every reply body must start and end with.
    fn body_bounds(self) -> (String, &'static str) {
        match self {
            StatusRoute::Web => (STATUS_PREFIX.replace("peer_status", "state"), "}}"),
            StatusRoute::Android | StatusRoute::Ios => (STATUS_PREFIX.to_owned(), "}}"),
            StatusRoute::Healthz => (r#"{"status":"ok"}"#.to_owned(), "}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpLoadConfig {
    pub switch_bin: PathBuf,
    pub sipp: PathBuf,
    pub wrk: PathBuf,
    /// `tests/sipp/` (the trunk answers with `uas.xml`).
    pub scenarios: PathBuf,
    pub workdir: PathBuf,
    /// The core the switch is pinned to (its runtime gets one worker).
    pub switch_cpu: usize,
    /// The core wrk is pinned to.
    pub wrk_cpu: usize,
    pub wrk_threads: u32,
    pub connections: u32,
    pub seconds: u32,
    pub routes: Vec<StatusRoute>,
    /// The switch's relay port range.
    pub media_ports: (u16, u16),
}

/// One wrk run against one route.
#[derive(Clone, Debug, Default)]
pub struct HttpRun {
    pub route: String,
    /// `/healthz`: the floor, not held to the target.
    pub floor: bool,
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    pub non_2xx: u64,
    /// wrk's `Socket errors:` line, when it printed one.
    pub socket_errors: Option<String>,
    /// CPU seconds of the switch over the run.
    pub cpu_s: Option<f64>,
    /// Replies of the checking run whose body was not the status JSON, of how many.
    pub bad_bodies: Option<(u64, u64)>,
}

impl HttpRun {
    /// The switch's CPU per request, µs.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.cpu_s?;
        (self.requests > 0).then(|| cpu * 1e6 / self.requests as f64)
    }

    /// The share of its core the switch used over the run (below 1: it was
    /// not CPU-bound, or the core was shared with other work).
    pub fn core_share(&self) -> Option<f64> {
        let cpu = self.cpu_s?;
        (self.seconds > 0.0).then(|| cpu / self.seconds)
    }

    /// Requests per CPU second of the switch: the rate one whole core would
    /// sustain at this cost per request.
    pub fn per_core_second(&self) -> Option<f64> {
        let cpu = self.cpu_s?;
        (cpu > 0.0).then(|| self.requests as f64 / cpu)
    }

    pub fn passed(&self) -> bool {
        self.rps >= TARGET_RPS
            && self.non_2xx == 0
            && self.socket_errors.is_none()
            && self.bad_bodies.is_some_and(|(bad, n)| bad == 0 && n > 0)
    }
}

#[derive(Clone, Debug, Default)]
pub struct HttpReport {
    pub runs: Vec<HttpRun>,
    /// One status reply as the app sees it.
    pub sample_body: String,
    pub wrk_version: String,
    pub connections: u32,
    pub wrk_threads: u32,
    pub seconds: u32,
    pub switch_cpu: usize,
    pub wrk_cpu: usize,
    /// Why the workload did not run, or what else happened.
    pub note: String,
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client (one request per connection) and the SMS hook
// ---------------------------------------------------------------------------

/// `method path` with an optional JSON body: (HTTP status, body text).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> BenchResult<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{ctype}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no header end in {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// POST `path` and require `{"status":"ok"}`: the reply body.
fn post_ok(addr: SocketAddr, path: &str, body: Value) -> BenchResult<Value> {
    let (status, text) = request(addr, "POST", path, Some(&body))?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status != 200 || v.get("status").and_then(Value::as_str) != Some("ok") {
        return Err(format!("POST {path}: HTTP {status} {text}").into());
    }
    Ok(v)
}

/// A stand-in SMS gateway: the auth codes the switch sends, by phone.
struct SmsHook {
    addr: SocketAddr,
    codes: Arc<Mutex<Vec<(String, String)>>>,
}

impl SmsHook {
    fn start() -> BenchResult<SmsHook> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let codes = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&codes);
        // Detached: it blocks in accept until the bench exits.
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let Some(body) = serve_sms(conn) {
                    let phone = body.get("phone").and_then(Value::as_str);
                    let code = body.get("code").and_then(Value::as_str);
                    if let (Some(p), Some(c)) = (phone, code) {
                        if let Ok(mut l) = log.lock() {
                            l.push((p.to_owned(), c.to_owned()));
                        }
                    }
                }
            }
        });
        Ok(SmsHook { addr, codes })
    }

    fn code(&self, phone: &str) -> BenchResult<String> {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            let found = self.codes.lock().ok().and_then(|l| {
                l.iter()
                    .rev()
                    .find(|(p, _)| p == phone)
                    .map(|(_, c)| c.clone())
            });
            if let Some(code) = found {
                return Ok(code);
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!("no auth code for {phone} reached the SMS hook").into())
    }
}

/// Reads one HTTP request (Content-Length body), answers 200, returns the JSON body.
fn serve_sms(conn: TcpStream) -> Option<Value> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
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
    serde_json::from_slice(&body).ok()
}

// ---------------------------------------------------------------------------
// The system: switch, trunk, account, call, app media
// ---------------------------------------------------------------------------

struct Setup {
    switch: Proc,
    _uas: Proc,
    http: SocketAddr,
    uuid: String,
    session_id: String,
    media_stop: Arc<AtomicBool>,
    media_sent: Arc<AtomicU64>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.media_stop.store(true, Ordering::Relaxed);
    }
}

fn start_switch(
    cfg: &HttpLoadConfig,
    dir: &Path,
    sms: SocketAddr,
    uas: SocketAddr,
) -> BenchResult<(Proc, SocketAddr)> {
    let toml = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n\n\
         [media]\nbind_ip = \"127.0.0.1\"\nport_min = {}\nport_max = {}\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [runtime]\nworker_threads = 1\n\n\
         [store]\nurl = \"sqlite://data/softswitch.db\"\n\n\
         [sms]\nurl = \"http://{sms}/sms\"\n\n\
         [calls]\nmedia_timeout_s = 3600\n\n\
         [[trunk]]\nname = \"pstn\"\naddress = \"{uas}\"\nprefixes = [\"\"]\ninbound = false\n\
         options_interval_s = 0\ncodecs = [\"PCMA\", \"PCMU\", \"telephone-event\"]\n",
        cfg.media_ports.0, cfg.media_ports.1
    );
    let config = dir.join("switch.toml");
    std::fs::write(&config, toml)?;
    // Its log level is the production default unless SOFTSWITCH_LOG says otherwise.
    let (proc, rx) = spawn_switch(&cfg.switch_bin, &config, dir, Some(cfg.switch_cpu))?;
    let deadline = Instant::now() + STARTUP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .map_err(|_| "the switch did not print its listeners (see switch.log)")?;
        if let Some(addr) = line.strip_prefix("http ") {
            let http = addr.trim().parse()?;
            return Ok((proc, http));
        }
    }
}

fn start_uas(cfg: &HttpLoadConfig, dir: &Path) -> BenchResult<(Proc, SocketAddr)> {
    let sip = free_udp_ports(1)?;
    let control = free_udp_ports(1)?;
    let media = free_udp_ports(4)?;
    let mut cmd = Command::new(&cfg.sipp);
    cmd.arg("-sf")
        .arg(cfg.scenarios.join("uas.xml"))
        .args(["-i", "127.0.0.1", "-p", &sip.to_string()])
        .args(["-cp", &control.to_string(), "-mp", &media.to_string()])
        .args(["-m", "1", "-nostdin"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let proc = Proc::spawn(&mut cmd, "sipp uas")?;
    thread::sleep(Duration::from_millis(300));
    Ok((proc, SocketAddr::from(([127, 0, 0, 1], sip))))
}

/// The relay address of an answer SDP (`c=` and the `m=audio` port).
fn answer_addr(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?;
    let port = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?;
    format!("{}:{port}", ip.trim()).parse().ok()
}

/// 20 ms PCMA packets (silence) from the app socket to the relay until `stop`.
fn send_media(
    sock: UdpSocket,
    to: SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut pkt = [0xD5u8; 12 + 160];
        pkt[0] = 0x80;
        pkt[1] = 8;
        pkt[8..12].copy_from_slice(&0x5A5A_0001u32.to_be_bytes());
        let start = Instant::now();
        let mut n: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            pkt[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            pkt[4..8].copy_from_slice(&n.wrapping_mul(160).to_be_bytes());
            if sock.send_to(&pkt, to).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            n = n.wrapping_add(1);
            let due = start + Duration::from_millis(20) * n;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
    })
}

fn status_path(route: StatusRoute, uuid: &str, sid: &str) -> String {
    if route == StatusRoute::Healthz {
        return route.path().to_owned();
    }
    // Ids are [0-9a-z-]: nothing to percent-encode.
    format!(
        "{}?uuid={uuid}&session_id={sid}&t=1700000000000",
        route.path()
    )
}

fn setup(cfg: &HttpLoadConfig, dir: &Path) -> BenchResult<Setup> {
    let sms = SmsHook::start()?;
    let (uas, uas_addr) = start_uas(cfg, dir)?;
    let (switch, http) = start_switch(cfg, dir, sms.addr, uas_addr)?;

    post_ok(
        http,
        "/lwork/sms/auth_code",
        json!({"uuid": PHONE, "device_id": DEVICE, "type": "register"}),
    )?;
    let code = sms.code(PHONE)?;
    post_ok(
        http,
        "/lwork/mobile/register",
        json!({"type": "sms", "uuid": PHONE, "device_id": DEVICE, "auth_code": code,
               "name": "Bench", "pwd": PASSWORD}),
    )?;
    let login = post_ok(
        http,
        "/lwork/mobile/login",
        json!({"acc": PHONE, "pwd": PASSWORD, "device_id": DEVICE,
               "clidata": {"os_type": "ios"}}),
    )?;
    let uuid = login
        .get("uuid")
        .and_then(Value::as_str)
        .ok_or("login reply without uuid")?
        .to_owned();

    // An iOS call offering PCMA: the trunk (SIPp) answers PCMA, so the
    // relay forwards without transcoding and the app's packets count.
    let app = UdpSocket::bind("127.0.0.1:0")?;
    let port = app.local_addr()?.port();
    let offer = format!(
        "v=0\r\no=app 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    let started = post_ok(
        http,
        StatusRoute::Ios.path(),
        json!({"uuid": uuid, "dev_id": DEVICE, "phone": CALLEE, "sdp": offer}),
    )?;
    let session_id = started
        .get("session_id")
        .and_then(Value::as_str)
        .ok_or("start reply without session_id")?
        .to_owned();
    let relay = started
        .get("sdp")
        .and_then(Value::as_str)
        .and_then(answer_addr)
        .ok_or_else(|| format!("start reply without a usable answer SDP: {started}"))?;
    let media_stop = Arc::new(AtomicBool::new(false));
    let media_sent = Arc::new(AtomicU64::new(0));
    send_media(app, relay, Arc::clone(&media_stop), Arc::clone(&media_sent));
    let s = Setup {
        switch,
        _uas: uas,
        http,
        uuid,
        session_id,
        media_stop,
        media_sent,
    };

    // Answered, and the relay counted the app's packets (stats refresh
    // every 250 ms).
    let path = status_path(StatusRoute::Android, &s.uuid, &s.session_id);
    let deadline = Instant::now() + STARTUP;
    loop {
        let (code, body) = request(s.http, "GET", &path, None)?;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let pr = v
            .get("stats")
            .and_then(|st| st.get("pr"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if code == 200 && v.get("peer_status").and_then(Value::as_str) == Some("hookoff") && pr > 0
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the call did not reach hookoff with media (last status HTTP {code} {body}; \
                 {} packets sent)",
                s.media_sent.load(Ordering::Relaxed)
            )
            .into());
        }
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------

/// A wrk duration (`812.00us`, `1.23ms`, `2.00s`, `1.00m`) in µs.
fn wrk_duration_us(v: &str) -> Option<f64> {
    let v = v.trim();
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3600e6)
    } else {
        (v, 1.0)
    };
    num.trim().parse::<f64>().ok().map(|x| x * scale)
}

/// wrk's `--latency` report.
fn parse_wrk(out: &str, run: &mut HttpRun) {
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => run.p50_us = wrk_duration_us(v),
            ["90%", v] => run.p90_us = wrk_duration_us(v),
            ["99%", v] => run.p99_us = wrk_duration_us(v),
            ["Latency", _avg, _stdev, max, ..] => run.max_us = wrk_duration_us(max),
            [n, "requests", "in", secs, ..] => {
                run.requests = n.parse().unwrap_or(0);
                run.seconds = secs
                    .trim_end_matches(',')
                    .trim_end_matches('s')
                    .parse()
                    .unwrap_or(0.0);
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => run.non_2xx = n.parse().unwrap_or(0),
            ["Requests/sec:", v] => run.rps = v.parse().unwrap_or(0.0),
            ["Socket", "errors:", ..] => {
                run.socket_errors = Some(line.trim().to_owned());
            }
            _ => {}
        }
    }
}

/// The Lua hook of the checking run: counts replies that are not a 200
/// with the status JSON, and prints the count when wrk is done.
fn check_script((prefix, suffix): (String, &str)) -> String {
    // response() runs in each wrk thread's Lua state, done() in the main
    // one: the counts are globals of the threads, summed through setup().
    format!(
        r#"prefix = [[{prefix}]]
suffix = [[{suffix}]]
bad, total = 0, 0
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end
function response(status, headers, body)
  total = total + 1
  if status ~= 200 or string.sub(body, 1, #prefix) ~= prefix or string.sub(body, -#suffix) ~= suffix then
    bad = bad + 1
  end
end
function done(summary, latency, requests)
  local b, n = 0, 0
  for _, t in ipairs(threads) do
    b = b + t:get("bad")
    n = n + t:get("total")
  end
  io.write(string.format("checked %d bad %d\n", n, b))
end
"#
    )
}

fn wrk(
    cfg: &HttpLoadConfig,
    url: &str,
    seconds: u32,
    script: Option<&Path>,
) -> BenchResult<String> {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(cfg.wrk_cpu.to_string())
        .arg(&cfg.wrk)
        .arg(format!("-t{}", cfg.wrk_threads))
        .arg(format!("-c{}", cfg.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency");
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd.arg(url).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wrk_version(wrk: &Path) -> String {
    // `wrk -v` prints its version line (and exits non-zero).
    Command::new(wrk)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .find(|l| l.starts_with("wrk "))
                .map(|l| l.split(" [").next().unwrap_or(l).trim().to_owned())
        })
        .unwrap_or_else(|| "wrk".to_owned())
}

/// Runs the HTTP workload: one switch, one call, one wrk run per route.
pub fn run(cfg: &HttpLoadConfig) -> BenchResult<HttpReport> {
    let dir = cfg.workdir.join("http");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut report = HttpReport {
        wrk_version: wrk_version(&cfg.wrk),
        connections: cfg.connections,
        wrk_threads: cfg.wrk_threads,
        seconds: cfg.seconds,
        switch_cpu: cfg.switch_cpu,
        wrk_cpu: cfg.wrk_cpu,
        ..HttpReport::default()
    };
    let s = setup(cfg, &dir)?;
    let pid = s.switch.pid();
    let (_, body) = request(
        s.http,
        "GET",
        &status_path(StatusRoute::Android, &s.uuid, &s.session_id),
        None,
    )?;
    report.sample_body = body;
    for &route in &cfg.routes {
        let path = status_path(route, &s.uuid, &s.session_id);
        let url = format!("http://{}{path}", s.http);
        let mut run = HttpRun {
            route: route.path().to_owned(),
            floor: route == StatusRoute::Healthz,
            ..HttpRun::default()
        };
        // A moment for the previous run's connections to close.
        thread::sleep(Duration::from_millis(500));
        let before = procstat::sample_tree(pid)?;
        let out = wrk(cfg, &url, cfg.seconds, None)?;
        let after = procstat::sample_tree(pid)?;
        std::fs::write(dir.join(format!("wrk-{}.txt", route.name())), &out)?;
        parse_wrk(&out, &mut run);
        run.cpu_s = Some(after.cpu_s - before.cpu_s);

        let script = dir.join(format!("check-{}.lua", route.name()));
        std::fs::write(&script, check_script(route.body_bounds()))?;
        let checked = wrk(cfg, &url, 2, Some(&script))?;
        std::fs::write(
            dir.join(format!("wrk-check-{}.txt", route.name())),
            &checked,
        )?;
        run.bad_bodies = checked.lines().find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["checked", n, "bad", b] => Some((b.parse().ok()?, n.parse().ok()?)),
                _ => None,
            }
        });
        report.runs.push(run);
    }
    // The call is still up: the status said hookoff throughout.
    let (_, last) = request(
        s.http,
        "GET",
        &status_path(StatusRoute::Android, &s.uuid, &s.session_id),
        None,
    )?;
    if !last.starts_with(STATUS_PREFIX) {
        let _ = write!(report.note, "after the runs the status was {last}; ");
    }
    let _ = request(
        s.http,
        "DELETE",
        &status_path(StatusRoute::Ios, &s.uuid, &s.session_id),
        None,
    );
    drop(s);
    Ok(report)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |x| format!("{x:.digits$}"))
}

fn ms(us: Option<f64>) -> String {
    us.map_or_else(|| "–".to_owned(), |x| format!("{:.2}", x / 1e3))
}

/// The report's section.
pub fn markdown(t: &mut String, r: &HttpReport) {
    let _ = writeln!(t, "\n## HTTP: the call-status poll\n");
    let _ = writeln!(
        t,
        "Target: the apps' status poll (API.md \"Status\") sustains **≥ {:.0} requests/s on \
         one core**. `softswitch serve` (release, SQLite store, production log level) runs \
         pinned to core {} with one runtime worker (`[runtime] worker_threads = 1`); an \
         account is registered through the SMS-code flow and logged in, and one iOS app call \
         to a SIPp trunk is answered and carries the app's RTP (PCMA, 20 ms), so every poll \
         answers `hookoff` with live `stats`. {} (`-t{} -c{} -d{}s`, keep-alive) runs pinned \
         to core {} against `GET <route>?uuid=..&session_id=..&t=..` (`/healthz`, when \
         listed, is the floor: the same HTTP stack and kernel path without the API); a 2 s \
         second run checks every reply body with a Lua hook. CPU is the switch's (user + \
         system, from /proc) over the measured run; \"core share\" is that CPU over the \
         run's length (below 1 the switch was not the bottleneck or shared its core), \
         \"requests per CPU s\" what a whole core would serve at the measured cost.\n",
        TARGET_RPS, r.switch_cpu, r.wrk_version, r.wrk_threads, r.connections, r.seconds, r.wrk_cpu
    );
    let _ = writeln!(
        t,
        "| route | requests/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | socket errors | \
         bodies checked (bad) | switch CPU s | core share | CPU µs/request | requests per CPU s \
         | ≥ {:.0}/s |",
        TARGET_RPS
    );
    let _ = writeln!(
        t,
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"
    );
    for run in &r.runs {
        let verdict = if run.floor {
            "(floor)"
        } else if run.passed() {
            "yes"
        } else {
            "**no**"
        };
        let _ = writeln!(
            t,
            "| `{}` | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.route,
            run.rps,
            ms(run.p50_us),
            ms(run.p90_us),
            ms(run.p99_us),
            ms(run.max_us),
            run.non_2xx,
            run.socket_errors.as_deref().unwrap_or("none"),
            run.bad_bodies
                .map_or_else(|| "–".to_owned(), |(bad, n)| format!("{n} ({bad})")),
            opt(run.cpu_s, 2),
            opt(run.core_share(), 2),
            opt(run.cpu_us_per_request(), 1),
            opt(run.per_core_second(), 0),
            verdict
        );
    }
    let _ = writeln!(
        t,
        "\nOne reply, as polled:\n\n```json\n{}\n```",
        r.sample_body
    );
    if !r.note.is_empty() {
        let _ = writeln!(t, "\nNote: {}", r.note.trim_end_matches([';', ' ']));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 10s test @ http://127.0.0.1:1/x\n\
                   \x20 1 threads and 64 connections\n\
                   \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
                   \x20   Latency     1.10ms  200.00us   12.50ms   90.00%\n\
                   \x20   Req/Sec    55.00k     1.00k   58.00k    70.00%\n\
                   \x20 Latency Distribution\n\
                   \x20    50%  812.00us\n\
                   \x20    75%    1.00ms\n\
                   \x20    90%    1.20ms\n\
                   \x20    99%    2.50ms\n\
                   \x20 550000 requests in 10.00s, 300.00MB read\n\
                   \x20 Non-2xx or 3xx responses: 3\n\
                   Requests/sec:  55000.12\n\
                   Transfer/sec:     30.00MB\n";
        let mut run = HttpRun::default();
        parse_wrk(out, &mut run);
        assert_eq!(run.requests, 550_000);
        assert!((run.seconds - 10.0).abs() < 1e-9);
        assert!((run.rps - 55000.12).abs() < 1e-6);
        assert_eq!(run.p50_us, Some(812.0));
        assert_eq!(run.p90_us, Some(1200.0));
        assert_eq!(run.p99_us, Some(2500.0));
        assert_eq!(run.max_us, Some(12_500.0));
        assert_eq!(run.non_2xx, 3);
        assert_eq!(run.socket_errors, None);
        run.cpu_s = Some(5.0);
        assert_eq!(run.core_share(), Some(0.5));
        assert_eq!(run.per_core_second(), Some(110_000.0));
        assert_eq!(run.cpu_us_per_request().map(f64::round), Some(9.0));
        assert_eq!(wrk_duration_us("2.00s"), Some(2e6));
        assert_eq!(StatusRoute::parse("web"), Some(StatusRoute::Web));
        assert!(StatusRoute::Web
            .body_bounds()
            .0
            .contains("\"state\":\"hookoff\""));
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 20000 RTP/AVP 8\r\n";
        assert_eq!(answer_addr(sdp), "127.0.0.1:20000".parse().ok());
    }
}
