//! Harness for the end-to-end tests: runs the real `softswitch` binary with a
//! generated config and drives it with SIPp (`tests/sipp/*.xml`).
//!
//! Every test gets its own temp directory (config, switch log, SIPp logs; kept
//! when the test fails, removed when it passes), its own switch on kernel-chosen
//! ports and its own SIPp ports, so tests run in parallel. Every child process is
//! owned by a guard that ends it on drop: the switch with SIGTERM (then SIGKILL
//! after 10 s), SIPp with SIGKILL.

#![allow(dead_code)]

pub mod app;
pub mod rtp;
pub mod trace;

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const SWITCH_BIN: &str = env!("CARGO_BIN_EXE_softswitch");

/// How long the switch may take to print its listener lines.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the switch has to exit after SIGTERM (OPERATIONS.md).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Outer bound for anything that should take a second or two.
pub const SHORT: Duration = Duration::from_secs(15);

/// Path of a SIPp scenario (or helper) in `tests/sipp/`.
pub fn sipp_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sipp")
        .join(name)
}

/// Polls `cond` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------
// Temp directories
// ---------------------------------------------------------------------------------

/// A per-test working directory. Removed on drop unless the thread is panicking
/// (a failed test keeps its logs; the panic messages name the directory).
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(test: &str) -> TestDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join("softswitch-e2e")
            .join(format!("{test}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A sub-directory (created).
    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("e2e: logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------

/// Ports handed out by this process, so parallel tests never get the same one.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn udp_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

fn udp_tcp_free(port: u16) -> bool {
    udp_free(port) && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Reserves `len` consecutive ports starting at a multiple of `len` inside
/// `[lo, hi)`, chosen at random, none handed out before by this process, and
/// (when `check`) each currently free for UDP and TCP on 127.0.0.1.
///
/// The ranges used stay below Linux's ephemeral range (32768+) so the kernel does
/// not hand them to someone's port-0 bind in between.
/// Gives a block from [`reserve_block`] back.
fn release_block(base: u16, len: u16) {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(taken) = taken.as_mut() {
        for p in base..base.saturating_add(len) {
            taken.remove(&p);
        }
    }
}

/// Ports in each switch's relay range: 200 calls at 4 ports each (the
/// 100 cps tests keep more than 100 calls up when the machine is loaded).
const MEDIA_BLOCK: u16 = 800;

fn reserve_block(lo: u16, hi: u16, len: u16, check: bool) -> u16 {
    let slots = u64::from((hi - lo) / len);
    for _ in 0..500 {
        let base = lo + (random_u64() % slots) as u16 * len;
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        let taken = taken.get_or_insert_with(HashSet::new);
        if (base..base + len).any(|p| taken.contains(&p)) {
            continue;
        }
        if check && !(base..base + len).all(udp_tcp_free) {
            continue;
        }
        taken.extend(base..base + len);
        return base;
    }
    panic!("no free block of {len} ports in {lo}..{hi}");
}

/// A port on 127.0.0.1 that is free (UDP and TCP) right now and that nothing
/// listens on: for "unreachable trunk" tests.
pub fn free_port() -> u16 {
    reserve_block(10000, 20000, 1, true)
}

/// The ports of one SIPp instance: SIP (`-p`), media (`-mp`, SIPp binds it and
/// `+2`) and control (`-cp`, 8888 by default, which parallel instances share).
#[derive(Clone, Copy, Debug)]
pub struct SippPorts {
    pub sip: u16,
    pub control: u16,
    pub media: u16,
}

impl SippPorts {
    pub fn new() -> SippPorts {
        let base = reserve_block(10000, 20000, 8, true);
        SippPorts {
            sip: base,
            control: base + 1,
            media: base + 2,
        }
    }

    /// `127.0.0.1:<sip port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip))
    }
}

impl Default for SippPorts {
    fn default() -> Self {
        SippPorts::new()
    }
}

// ---------------------------------------------------------------------------------
// Switch configuration
// ---------------------------------------------------------------------------------

/// One `[[trunk]]`.
#[derive(Clone, Debug)]
pub struct TrunkCfg {
    pub name: String,
    /// `127.0.0.1:5090` or `sip:127.0.0.1:5090;transport=tcp`.
    pub address: String,
    pub prefixes: Vec<String>,
    pub inbound: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Keep a registration with the trunk (`register = true`).
    pub register: bool,
    /// `codecs = [...]`; `None` keeps the switch's default list.
    pub codecs: Option<Vec<String>>,
}

impl TrunkCfg {
    /// A trunk calls come from (`inbound = true`), with a prefix nothing dials so
    /// that no call is routed back to it.
    pub fn caller(address: impl Into<String>) -> TrunkCfg {
        TrunkCfg {
            name: "caller".into(),
            address: address.into(),
            prefixes: vec!["0000".into()],
            inbound: true,
            username: None,
            password: None,
            register: false,
            codecs: None,
        }
    }

    /// A trunk calls go to (`inbound = false`), the default route.
    pub fn callee(address: impl Into<String>) -> TrunkCfg {
        TrunkCfg {
            name: "callee".into(),
            address: address.into(),
            prefixes: vec![String::new()],
            inbound: false,
            username: None,
            password: None,
            register: false,
            codecs: None,
        }
    }

    pub fn prefixes(mut self, prefixes: &[&str]) -> TrunkCfg {
        self.prefixes = prefixes.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    pub fn inbound(mut self, inbound: bool) -> TrunkCfg {
        self.inbound = inbound;
        self
    }

    pub fn codecs(mut self, codecs: &[&str]) -> TrunkCfg {
        self.codecs = Some(codecs.iter().map(|c| (*c).to_owned()).collect());
        self
    }

    pub fn register(mut self) -> TrunkCfg {
        self.register = true;
        self
    }

    pub fn credentials(mut self, username: &str, password: &str) -> TrunkCfg {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }
}

/// What a test's switch looks like; the rest (listeners on port 0, fast timers,
/// media range, store) is filled in by [`Switch::start`].
#[derive(Clone, Debug, Default)]
pub struct SwitchCfg {
    pub trunks: Vec<TrunkCfg>,
    /// Appended verbatim to `[sip]` (e.g. `t4_ms = 1000\n`).
    pub sip_extra: String,
}

impl SwitchCfg {
    pub fn new(trunks: Vec<TrunkCfg>) -> SwitchCfg {
        SwitchCfg {
            trunks,
            sip_extra: String::new(),
        }
    }

    /// The TOML text, with a relay port range starting at `media_min`.
    pub fn to_toml(&self, media_min: u16, media_max: u16) -> String {
        // Rust's Debug of these plain ASCII strings is a valid TOML basic string.
        let mut t = String::new();
        let _ = write!(
            t,
            "[sip]\nlisten = \"127.0.0.1:0\"\nt1_ms = 100\n{}\n\
             [media]\nbind_ip = \"127.0.0.1\"\nport_min = {media_min}\nport_max = {media_max}\n\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\n\
             [store]\nurl = \"sqlite://data/softswitch.db\"\n",
            self.sip_extra
        );
        for tr in &self.trunks {
            let _ = write!(
                t,
                "\n[[trunk]]\nname = {:?}\naddress = {:?}\nprefixes = {:?}\ninbound = {}\noptions_interval_s = 0\n",
                tr.name, tr.address, tr.prefixes, tr.inbound
            );
            if let Some(u) = &tr.username {
                let _ = writeln!(t, "username = {u:?}");
            }
            if let Some(p) = &tr.password {
                let _ = writeln!(t, "password = {p:?}");
            }
            if tr.register {
                let _ = writeln!(t, "register = true");
            }
            if let Some(c) = &tr.codecs {
                let _ = writeln!(t, "codecs = {c:?}");
            }
        }
        t
    }
}

// ---------------------------------------------------------------------------------
// The switch process
// ---------------------------------------------------------------------------------

/// A running `softswitch serve`. Drop sends SIGTERM, waits up to 10 s, then kills.
pub struct Switch {
    child: Option<Child>,
    pub sip: SocketAddr,
    pub sip_tcp: SocketAddr,
    pub http: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
    /// First port of the relay range reserved for it.
    media_block: u16,
}

fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The last `n` lines of a text file ("" if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Switch {
    /// Writes `dir/switch.toml` and starts the switch in `dir` (so its default
    /// store lands there), logging to `dir/switch.log`.
    pub fn start(dir: &Path, cfg: &SwitchCfg) -> Switch {
        // A relay range of our own, away from the default 20000-29999;
        // ports another process holds are skipped by the relay's pool.
        let media = reserve_block(20000, 32000, MEDIA_BLOCK, false);
        let config = dir.join("switch.toml");
        std::fs::write(&config, cfg.to_toml(media, media + MEDIA_BLOCK - 1))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let log = dir.join("switch.log");
        let log_file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let mut cmd = Command::new(SWITCH_BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        // Only the file configures this switch.
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str() {
                if k.starts_with("SOFTSWITCH_") && k != "SOFTSWITCH_LOG" {
                    cmd.env_remove(k);
                }
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SWITCH_BIN}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        // Keeps reading after start-up so the pipe never fills.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Once nobody listens any more, keep draining quietly.
                let _ = tx.send(line);
            }
        });
        let mut sw = Switch {
            child: Some(child),
            sip: SocketAddr::from(([0, 0, 0, 0], 0)),
            sip_tcp: SocketAddr::from(([0, 0, 0, 0], 0)),
            http: SocketAddr::from(([0, 0, 0, 0], 0)),
            dir: dir.to_owned(),
            log,
            media_block: media,
        };
        let (mut udp, mut tcp, mut http) = (None, None, None);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut seen = Vec::new();
        while udp.is_none() || tcp.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    let addr = |s: &str| -> SocketAddr {
                        s.parse()
                            .unwrap_or_else(|e| panic!("bad listener line {line:?}: {e}"))
                    };
                    match parts.as_slice() {
                        ["sip", "udp", a] => udp = Some(addr(a)),
                        ["sip", "tcp", a] => tcp = Some(addr(a)),
                        ["http", a] => http = Some(addr(a)),
                        _ => {}
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let status = sw.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    panic!(
                        "switch did not print its listeners within {STARTUP_TIMEOUT:?} \
                         (exit status {status:?}); stdout: {seen:?}\nconfig:\n{}\nlog tail:\n{}",
                        std::fs::read_to_string(&config).unwrap_or_default(),
                        tail(&sw.log, 40)
                    );
                }
            }
        }
        sw.sip = udp.expect("udp");
        sw.sip_tcp = tcp.expect("tcp");
        sw.http = http.expect("http");
        for a in [sw.sip, sw.sip_tcp, sw.http] {
            assert!(a.port() != 0, "listener printed port 0: {seen:?}");
        }
        sw
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// The last lines of the switch's log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        format!(
            "switch log ({}), last {n} lines:\n{}",
            self.log.display(),
            tail(&self.log, n)
        )
    }

    /// Sends SIGTERM and waits up to `timeout`; returns the exit status (None if
    /// it had to be killed) and how long the exit took.
    pub fn terminate(&mut self, timeout: Duration) -> (Option<ExitStatus>, Duration) {
        let Some(mut child) = self.child.take() else {
            return (None, Duration::ZERO);
        };
        let start = Instant::now();
        if let Ok(Some(st)) = child.try_wait() {
            return (Some(st), Duration::ZERO);
        }
        send_signal(child.id(), "TERM");
        let st = wait_child(&mut child, timeout);
        let took = start.elapsed();
        if st.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        (st, took)
    }

    /// Raw HTTP GET against the switch: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// A gauge without labels, e.g. `sip_dialogs_active`.
    pub fn gauge(&self, name: &str) -> i64 {
        let m = self.metrics();
        metric_value(&m, name)
            .unwrap_or_else(|| panic!("metric {name} missing from /metrics:\n{m}")) as i64
    }

    /// A series such as `calls_total{outcome="answered"}`; 0 when it does not
    /// exist yet (labelled counters appear on first increment).
    pub fn counter(&self, series: &str) -> u64 {
        metric_value(&self.metrics(), series).unwrap_or(0.0) as u64
    }

    pub fn calls(&self, outcome: &str) -> u64 {
        self.counter(&format!("calls_total{{outcome=\"{outcome}\"}}"))
    }

    /// `sip_responses_total{direction="out",status="..."}`.
    pub fn responses_out(&self, status: u16) -> u64 {
        self.counter(&format!(
            "sip_responses_total{{direction=\"out\",status=\"{status}\"}}"
        ))
    }

    /// Waits until `sip_dialogs_active` (and, if `transactions`, also
    /// `sip_transactions_active`) is 0; panics with the metrics otherwise.
    pub fn assert_settles(&self, timeout: Duration, transactions: bool) {
        let start = Instant::now();
        let ok = wait_until(timeout, || {
            self.gauge("sip_dialogs_active") == 0
                && (!transactions || self.gauge("sip_transactions_active") == 0)
        });
        if !ok {
            let m = self.metrics();
            let interesting: Vec<&str> = m
                .lines()
                .filter(|l| {
                    !l.starts_with('#') && (l.starts_with("sip_") || l.starts_with("calls_"))
                })
                .collect();
            panic!(
                "switch did not settle within {timeout:?} (dialogs{} not 0):\n{}\n{}",
                if transactions { "/transactions" } else { "" },
                interesting.join("\n"),
                self.log_tail(30)
            );
        }
        eprintln!("e2e: settled in {:?}", start.elapsed());
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if self.child.is_some() {
            let (st, _) = self.terminate(SHUTDOWN_TIMEOUT);
            if st.is_none() {
                eprintln!("e2e: switch in {} had to be killed", self.dir.display());
            }
        }
        // The process is gone with its sockets: its relay range is free
        // for the next switch this test binary starts.
        release_block(self.media_block, MEDIA_BLOCK);
    }
}

/// The value of the sample line whose series (name plus labels, exactly as
/// printed) is `series`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name.trim() == series)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// A minimal HTTP/1.1 GET (no client crate): (status, body). Understands
/// Content-Length, chunked and read-to-close bodies.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to http {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("write to http {addr}: {e}"));
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read from http {addr}{path}: {e}"));
    let (status, body) = parse_response(&raw).unwrap_or_else(|e| match e {
        BadResponse::NoHeaderEnd => panic!(
            "no header end in response to {path}: {:?}",
            String::from_utf8_lossy(&raw)
        ),
        BadResponse::StatusLine(head) => panic!("bad status line: {head}"),
    });
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Why [`parse_response`] could not read a response.
#[derive(Debug)]
pub enum BadResponse {
    /// No empty line ends the head.
    NoHeaderEnd,
    /// The status line (in this head) has no status code.
    StatusLine(String),
}

/// An HTTP/1.1 response read to the end of the connection: its status and its
/// body (de-chunked when the head says `Transfer-Encoding: chunked`).
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), BadResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(BadResponse::NoHeaderEnd)?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let Some(status) = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()) else {
        return Err(BadResponse::StatusLine(head));
    };
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// The data of a chunked body.
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

/// The switch's relay port range, read back from the config
/// [`Switch::start`] wrote in `dir`.
pub fn media_range(dir: &Path) -> (u16, u16) {
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

// ---------------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------------

/// Fails the test with an install hint when `sipp` is not on PATH.
pub fn require_sipp() {
    match Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => panic!(
            "sipp is needed for the end-to-end tests but cannot be run ({e}); \
             install it: apt-get install -y sip-tester (see tests/sipp/README.md)"
        ),
    }
}

/// A SIPp command line being built. Always adds `-i 127.0.0.1 -p -mp -cp
/// -nostdin -trace_err -timeout <t>s -timeout_error`.
pub struct SippCmd {
    name: String,
    scenario: PathBuf,
    ports: SippPorts,
    remote: Option<SocketAddr>,
    args: Vec<String>,
    timeout_s: u64,
}

impl SippCmd {
    /// `name` names the log directory (`<testdir>/<name>`); `scenario` is a file in
    /// `tests/sipp/`.
    pub fn new(name: &str, scenario: &str, ports: SippPorts) -> SippCmd {
        let scenario = sipp_file(scenario);
        assert!(scenario.exists(), "no scenario {}", scenario.display());
        SippCmd {
            name: name.into(),
            scenario,
            ports,
            remote: None,
            args: Vec::new(),
            timeout_s: 60,
        }
    }

    /// The host SIPp sends its first request to (a uac's target).
    pub fn remote(mut self, addr: SocketAddr) -> SippCmd {
        self.remote = Some(addr);
        self
    }

    pub fn args(mut self, args: &[&str]) -> SippCmd {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// SIPp's global `-timeout` (default 60 s); with `-timeout_error` running out
    /// fails the run.
    pub fn timeout_s(mut self, s: u64) -> SippCmd {
        self.timeout_s = s;
        self
    }

    /// Starts SIPp in `<dir>/<name>` (where it writes its logs), stdout/stderr to
    /// `sipp.out` there. For a server (no remote) it waits until the SIP port is
    /// bound, so a uac started next finds it listening.
    pub fn spawn(self, dir: &Path) -> Sipp {
        let wd = dir.join(&self.name);
        std::fs::create_dir_all(&wd)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", wd.display()));
        let out_path = wd.join("sipp.out");
        let out = std::fs::File::create(&out_path).expect("create sipp.out");
        let err = out.try_clone().expect("dup sipp.out");
        let mut cmd = Command::new("sipp");
        cmd.arg("-sf").arg(&self.scenario);
        if let Some(r) = self.remote {
            cmd.arg(r.to_string());
        }
        cmd.args(["-i", "127.0.0.1"])
            .args(["-p", &self.ports.sip.to_string()])
            .args(["-mp", &self.ports.media.to_string()])
            .args(["-cp", &self.ports.control.to_string()])
            .args(["-nostdin", "-trace_err", "-timeout_error"])
            .args(["-timeout", &format!("{}s", self.timeout_s)])
            .args(&self.args)
            .current_dir(&wd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let cmdline = format!("{cmd:?}");
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run sipp ({e}); install it: apt-get install -y sip-tester (see tests/sipp/README.md)")
        });
        let mut sipp = Sipp {
            child: Some(child),
            name: self.name,
            dir: wd,
            cmdline,
            started: Instant::now(),
        };
        if self.remote.is_none() {
            let port = self.ports.sip;
            let tcp = self
                .args
                .windows(2)
                .any(|w| w[0] == "-t" && w[1].starts_with('t'));
            let bound = wait_until(Duration::from_secs(5), || {
                if tcp {
                    TcpListener::bind(("127.0.0.1", port)).is_err()
                } else {
                    !udp_free(port)
                }
            });
            if !bound {
                let st = sipp
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "sipp {} did not bind port {port} within 5 s (exit {st:?})\n{}",
                    sipp.name,
                    sipp.report()
                );
            }
        }
        sipp
    }
}

/// A running SIPp. Drop kills it.
pub struct Sipp {
    child: Option<Child>,
    pub name: String,
    dir: PathBuf,
    cmdline: String,
    started: Instant,
}

impl Sipp {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files SIPp wrote in its directory whose name ends with `suffix`
    /// (e.g. `_errors.log`, `_logs.log`).
    pub fn files_ending(&self, suffix: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.to_string_lossy().ends_with(suffix))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Command line, error log and the end of the statistics screen.
    pub fn report(&self) -> String {
        let mut r = format!(
            "--- sipp {} in {}\n{}\n",
            self.name,
            self.dir.display(),
            self.cmdline
        );
        for f in self.files_ending("_errors.log") {
            let _ = write!(
                r,
                "--- {} (last 60 lines):\n{}\n",
                f.display(),
                tail(&f, 60)
            );
        }
        let _ = write!(
            r,
            "--- sipp.out (last 45 lines):\n{}\n",
            tail(&self.dir.join("sipp.out"), 45)
        );
        r
    }

    /// Waits up to `timeout` for SIPp to exit; None (after killing it) if it did not.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let st = wait_child(child, timeout);
        if st.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.child = None;
        st
    }

    /// Waits for SIPp and fails the test unless it exited 0 (every call
    /// succeeded). `context` is added to the failure message (e.g. the switch log).
    /// Returns how long it ran.
    pub fn expect_success(&mut self, timeout: Duration, context: &dyn Fn() -> String) -> Duration {
        let st = self.wait(timeout);
        let took = self.started.elapsed();
        match st {
            Some(s) if s.success() => took,
            other => panic!(
                "sipp {} {} after {took:?}\n{}\n{}",
                self.name,
                match other {
                    Some(s) => format!("failed: {s}"),
                    None => format!("did not finish within {timeout:?} (killed)"),
                },
                self.report(),
                context()
            ),
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
