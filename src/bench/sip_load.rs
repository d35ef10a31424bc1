//! The SIP workload: SIPp `uac` → system → SIPp `uas` on loopback, one
//! rate per step, with the scenarios of `tests/sipp/` (INVITE, 100/180/200,
//! ACK, hold, BYE, 200).
//!
//! ```text
//!  Direct:   uac ─────────────────────────▶ uas        (the floor: SIPp alone)
//!  Switch:   uac ─▶ softswitch serve (B2BUA + relay legs) ─▶ uas
//!  Kamailio: uac ─▶ kamailio (tm t_relay, record-routed) ─▶ uas
//! ```
//!
//! A step passes when every call succeeded and nobody retransmitted: both
//! SIPps' `Retransmissions(C)`, and for the switch its own
//! `sip_retransmissions_total{direction="out"}`. Each step gets a fresh
//! system process, sampled from /proc for CPU over the step and for its
//! peak memory against the idle baseline.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::procstat::{self, ProcSample};
use super::BenchResult;

/// The number the uac dials (the switch routes it to the callee trunk).
const NUMBER: &str = "9123";

/// SIPp aborts a call on any message its scenario does not expect at that
/// point, e.g. a 180 overtaken by the 200: a proxy with several worker
/// processes (Kamailio) forwards the two in parallel and may reorder them,
/// which is legal on UDP and ignored by real user agents. So late messages
/// are logged (`-trace_err`, counted in the step's note) and the call goes
/// on; a missing or failing response still fails it.
const TOLERANT: [&str; 3] = ["-default_behaviors", "all,-abortunexp", "-trace_err"];

/// How long a system may take to come up.
const STARTUP: Duration = Duration::from_secs(15);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SipSystem {
    Direct,
    Switch { bin: PathBuf },
    Kamailio { bin: PathBuf, modules: PathBuf },
}

impl SipSystem {
    pub fn name(&self) -> &'static str {
        match self {
            SipSystem::Direct => "SIPp→SIPp",
            SipSystem::Switch { .. } => "softswitch",
            SipSystem::Kamailio { .. } => "Kamailio",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SipStepConfig {
    /// Calls per second asked of the uac.
    pub rate: u32,
    /// Seconds of calls at that rate (calls = rate × seconds).
    pub seconds: u32,
    /// How long each call stays up (uac `-d`), ms.
    pub hold_ms: u32,
    /// `tests/sipp/`.
    pub scenarios: PathBuf,
    /// Where logs, configs and SIPp statistics go.
    pub workdir: PathBuf,
    pub sipp: PathBuf,
    /// The switch's relay port range (it opens two legs per call).
    pub media_ports: (u16, u16),
}

#[derive(Clone, Debug, Default)]
pub struct SipStep {
    pub rate: u32,
    /// Seconds of calls at that rate.
    pub seconds: u32,
    /// A sustained run (a rate that passed the ladder, held longer), not a
    /// step of the ladder.
    pub sustained: bool,
    pub calls: u64,
    pub successful: u64,
    pub failed: u64,
    /// SIPp's (uac + uas) plus the system's own where it tells.
    pub retransmissions: u64,
    /// SIPp's cumulative call rate (what it achieved).
    pub achieved_cps: f64,
    /// INVITE to 200, mean over the calls (uac's ResponseTime1), ms.
    pub setup_ms: f64,
    /// Most calls up at once (uac's CurrentCall).
    pub peak_calls: u64,
    /// The system process (tree): CPU over the step, memory at idle and peak.
    pub cpu_s: Option<f64>,
    pub mem_idle: Option<ProcSample>,
    pub mem_peak_kib: Option<u64>,
    pub passed: bool,
    /// Why it did not pass, or what else was seen.
    pub note: String,
}

impl SipStep {
    /// Memory growth per concurrent dialog, KiB.
    pub fn kib_per_dialog(&self) -> Option<f64> {
        let idle = self.mem_idle?.mem_kib() as f64;
        let peak = self.mem_peak_kib? as f64;
        (self.peak_calls > 0).then(|| (peak - idle) / self.peak_calls as f64)
    }

    /// CPU ms per call of the system.
    pub fn cpu_ms_per_call(&self) -> Option<f64> {
        let cpu = self.cpu_s?;
        (self.successful > 0).then(|| cpu * 1e3 / self.successful as f64)
    }
}

/// A child process ended (TERM, then KILL) when dropped.
pub(super) struct Proc {
    pub(super) child: Child,
    name: String,
}

impl Proc {
    pub(super) fn spawn(cmd: &mut Command, name: &str) -> BenchResult<Proc> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc {
            child,
            name: name.to_owned(),
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the exit code (None: still running).
    pub(super) fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return Some(st.code().unwrap_or(-1)),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        signal(self.pid(), "TERM");
        if self.wait(Duration::from_secs(5)).is_none() {
            tracing::warn!(name = %self.name, "did not stop on SIGTERM, killing");
            // Already gone is fine.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `bin serve --config config` in `dir` (on CPU `cpu` alone when
/// given, through `taskset`), its stderr to `dir/switch.log`, with only
/// its config file configuring it (no `SOFTSWITCH_*` from our
/// environment but the log level); its stdout lines arrive on the
/// receiver, drained by a thread so the pipe never fills.
pub(super) fn spawn_switch(
    bin: &Path,
    config: &Path,
    dir: &Path,
    cpu: Option<usize>,
) -> BenchResult<(Proc, mpsc::Receiver<String>)> {
    let log = std::fs::File::create(dir.join("switch.log"))?;
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    for (k, _) in std::env::vars_os() {
        if k.to_str()
            .is_some_and(|k| k.starts_with("SOFTSWITCH_") && k != "SOFTSWITCH_LOG")
        {
            cmd.env_remove(k);
        }
    }
    let mut proc = Proc::spawn(&mut cmd, "softswitch")?;
    let stdout = proc.child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    Ok((proc, rx))
}

/// Sends a signal by name with kill(1): the workspace forbids unsafe
/// code, so no libc::kill.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A UDP port free now on 127.0.0.1 whose next `span - 1` ports are free
/// too (SIPp binds its media port and the ones after it).
pub fn free_udp_ports(span: u16) -> BenchResult<u16> {
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0")?;
        let base = probe.local_addr()?.port();
        drop(probe);
        if base.checked_add(span).is_none() {
            continue;
        }
        if (base..base + span).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return Ok(base);
        }
    }
    Err("no free UDP ports".into())
}

/// The running system under test: where the uac sends, and what to sample.
struct Running {
    target: SocketAddr,
    proc: Option<Proc>,
    /// The switch's HTTP listener, for its retransmission counter.
    http: Option<SocketAddr>,
}

fn start_system(
    system: &SipSystem,
    cfg: &SipStepConfig,
    dir: &Path,
    uac: SocketAddr,
    uas: SocketAddr,
) -> BenchResult<Running> {
    match system {
        SipSystem::Direct => Ok(Running {
            target: uas,
            proc: None,
            http: None,
        }),
        SipSystem::Switch { bin } => start_switch(bin, cfg, dir, uac, uas),
        SipSystem::Kamailio { bin, modules } => start_kamailio(bin, modules, dir, uas),
    }
}

fn start_switch(
    bin: &Path,
    cfg: &SipStepConfig,
    dir: &Path,
    uac: SocketAddr,
    uas: SocketAddr,
) -> BenchResult<Running> {
    let mut toml = String::new();
    // Production defaults (T1 500 ms, info logging to a file) except the
    // loopback listeners and the media range.
    let _ = write!(
        toml,
        "[sip]\nlisten = \"127.0.0.1:0\"\n\n\
         [media]\nbind_ip = \"127.0.0.1\"\nport_min = {}\nport_max = {}\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [store]\nurl = \"sqlite://data/softswitch.db\"\n\n\
         [[trunk]]\nname = \"caller\"\naddress = \"{uac}\"\nprefixes = [\"0000\"]\ninbound = true\noptions_interval_s = 0\n\n\
         [[trunk]]\nname = \"callee\"\naddress = \"{uas}\"\nprefixes = [\"\"]\ninbound = false\noptions_interval_s = 0\n",
        cfg.media_ports.0, cfg.media_ports.1
    );
    let config = dir.join("switch.toml");
    std::fs::write(&config, toml)?;
    let (proc, rx) = spawn_switch(bin, &config, dir, None)?;
    let (mut sip, mut http) = (None, None);
    let deadline = Instant::now() + STARTUP;
    while sip.is_none() || http.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .map_err(|_| "the switch did not print its listeners (see switch.log)")?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["sip", "udp", a] => sip = a.parse().ok(),
            ["http", a] => http = a.parse().ok(),
            _ => {}
        }
    }
    let target = sip.ok_or("no SIP listener")?;
    Ok(Running {
        target,
        proc: Some(proc),
        http,
    })
}

/// A stateful proxy with record-routing, so the whole dialog (ACK, BYE)
/// crosses it as it crosses the switch.
pub fn kamailio_cfg(listen: SocketAddr, modules: &Path, uas: SocketAddr) -> String {
    format!(
        r#"#!KAMAILIO
debug=1
log_stderror=yes
# One SIP worker per core of this machine.
children=2
auto_aliases=no
listen=udp:{listen}
mpath="{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
request_route {{
	if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
	if (has_totag()) {{
		if (loose_route()) {{ t_relay(); exit; }}
		if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
		sl_send_reply("404", "Not here"); exit;
	}}
	if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
	record_route();
	$du = "sip:{uas}";
	t_relay();
}}
"#,
        modules = modules.display()
    )
}

fn start_kamailio(bin: &Path, modules: &Path, dir: &Path, uas: SocketAddr) -> BenchResult<Running> {
    let port = free_udp_ports(1)?;
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let cfg = dir.join("kamailio.cfg");
    std::fs::write(&cfg, kamailio_cfg(listen, modules, uas))?;
    let run = dir.join("run");
    std::fs::create_dir_all(&run)?;
    let log = std::fs::File::create(dir.join("kamailio.log"))?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f")
        .arg(&cfg)
        .args(["-DD", "-E", "-m", "256", "-M", "16", "-Y"])
        .arg(&run)
        .arg("-w")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut proc = Proc::spawn(&mut cmd, "kamailio")?;
    // Up when its workers are forked and the port is taken.
    let deadline = Instant::now() + STARTUP;
    loop {
        if UdpSocket::bind(listen).is_err() && procstat::tree(proc.pid())?.len() > 2 {
            thread::sleep(Duration::from_millis(300));
            break;
        }
        if proc.wait(Duration::ZERO).is_some() || Instant::now() > deadline {
            return Err("kamailio did not start (see kamailio.log)".into());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(Running {
        target: listen,
        proc: Some(proc),
        http: None,
    })
}

/// One column of the last line of a SIPp `-trace_stat` CSV, and the
/// largest value the column took.
fn csv_column(text: &str, name: &str) -> Option<(String, u64)> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let i = header.iter().position(|h| *h == name)?;
    let mut last = None;
    let mut max = 0u64;
    for l in lines {
        let v = l.split(';').nth(i)?.to_owned();
        max = max.max(v.trim().parse().unwrap_or(0));
        last = Some(v);
    }
    Some((last?, max))
}

/// The call rate SIPp sustained while it was still placing calls: the
/// mean `CallRate(P)` of the statistics periods that ended before the last
/// call was created (the cumulative `CallRate(C)` also counts the hold and
/// the tail, so it reads low). Falls back to `CallRate(C)`.
fn achieved_rate(text: &str, calls: u64) -> f64 {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next().map(|h| h.split(';').collect::<Vec<_>>()) else {
        return 0.0;
    };
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(rate), Some(created)) = (col("CallRate(P)"), col("TotalCallCreated")) else {
        return 0.0;
    };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(';').collect()).collect();
    let num = |r: &Vec<&str>, i: usize| -> f64 {
        r.get(i).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    };
    let placing: Vec<f64> = rows
        .iter()
        .filter(|r| num(r, created) < calls as f64)
        .map(|r| num(r, rate))
        .filter(|&v| v > 0.0)
        .collect();
    if placing.is_empty() {
        csv_column(text, "CallRate(C)")
            .and_then(|(v, _)| v.trim().parse().ok())
            .unwrap_or(0.0)
    } else {
        placing.iter().sum::<f64>() / placing.len() as f64
    }
}

fn csv_u64(text: &str, name: &str) -> u64 {
    csv_column(text, name)
        .and_then(|(v, _)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// SIPp's `HH:MM:SS:uuuuuu` (or with milliseconds) as milliseconds.
fn sipp_duration_ms(v: &str) -> f64 {
    let p: Vec<&str> = v.trim().split(':').collect();
    let num = |i: usize| p.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let frac = p
        .get(3)
        .map_or(0.0, |s| num(3) / 10f64.powi(s.len() as i32));
    (num(0) * 3600.0 + num(1) * 60.0 + num(2) + frac) * 1e3
}

/// Messages SIPp logged as unexpected (and, with `TOLERANT`, let pass) in
/// the `*_errors.log` files of `dir`.
fn unexpected_messages(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|t| t.matches("call on unexpected message").count())
        .sum()
}

/// A plain HTTP/1.0 GET of the switch's /metrics.
fn metrics(http: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

struct SippPorts {
    sip: u16,
    control: u16,
    media: u16,
}

impl SippPorts {
    fn new() -> BenchResult<SippPorts> {
        Ok(SippPorts {
            sip: free_udp_ports(1)?,
            control: free_udp_ports(1)?,
            media: free_udp_ports(4)?,
        })
    }

    fn args(&self, cmd: &mut Command) {
        cmd.args(["-i", "127.0.0.1", "-p", &self.sip.to_string()])
            .args(["-cp", &self.control.to_string()])
            .args(["-mp", &self.media.to_string()]);
    }
}

/// Runs one step of the SIP workload against `system`.
pub fn run_step(system: &SipSystem, cfg: &SipStepConfig) -> BenchResult<SipStep> {
    let dir = cfg.workdir.join(format!(
        "sip-{}-{}-{}s",
        system.name().replace('→', "-"),
        cfg.rate,
        cfg.seconds
    ));
    std::fs::create_dir_all(&dir)?;
    let calls = u64::from(cfg.rate) * u64::from(cfg.seconds);
    let (uac_p, uas_p) = (SippPorts::new()?, SippPorts::new()?);
    let uac_addr = SocketAddr::from(([127, 0, 0, 1], uac_p.sip));
    let uas_addr = SocketAddr::from(([127, 0, 0, 1], uas_p.sip));
    let mut running = start_system(system, cfg, &dir, uac_addr, uas_addr)?;
    let pid = running.proc.as_ref().map(Proc::pid);
    let mut step = SipStep {
        rate: cfg.rate,
        seconds: cfg.seconds,
        calls,
        ..SipStep::default()
    };
    // Idle baseline after start-up settled.
    thread::sleep(Duration::from_millis(500));
    step.mem_idle = pid.map(procstat::sample_tree).transpose()?;
    let cpu_before = step.mem_idle.map(|s| s.cpu_s);

    // Bounded by SIPp's own global timeout too, so nothing hangs.
    let budget = cfg.seconds + cfg.hold_ms / 1000 + 30;
    let mut uas_cmd = Command::new(&cfg.sipp);
    uas_cmd
        .arg("-sf")
        .arg(cfg.scenarios.join("uas.xml"))
        .args([
            "-m",
            &calls.to_string(),
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
        ])
        .args(TOLERANT)
        .args(["-timeout", &format!("{budget}s")])
        .arg("-stf")
        .arg(dir.join("uas.csv"))
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    uas_p.args(&mut uas_cmd);
    let mut uas = Proc::spawn(&mut uas_cmd, "sipp uas")?;
    thread::sleep(Duration::from_millis(300));

    let mut uac_cmd = Command::new(&cfg.sipp);
    uac_cmd
        .arg("-sf")
        .arg(cfg.scenarios.join("uac.xml"))
        .args(["-m", &calls.to_string(), "-r", &cfg.rate.to_string()])
        .args(["-d", &cfg.hold_ms.to_string()])
        .args(["-nostdin", "-trace_stat", "-fd", "1"])
        .args(TOLERANT)
        .args(["-timeout", &format!("{budget}s")])
        .arg("-stf")
        .arg(dir.join("uac.csv"))
        .arg(running.target.to_string())
        .args(["-s", NUMBER])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    uac_p.args(&mut uac_cmd);
    let mut uac = Proc::spawn(&mut uac_cmd, "sipp uac")?;

    // Sample the system's memory until the uac is done.
    let mut peak = step.mem_idle.map(|s| s.mem_kib());
    let deadline = Instant::now() + Duration::from_secs(u64::from(budget) + 10);
    let uac_rc = loop {
        if let Some(rc) = uac.wait(Duration::from_millis(250)) {
            break Some(rc);
        }
        if let Some(s) = pid.and_then(|p| procstat::sample_tree(p).ok()) {
            peak = peak.max(Some(s.mem_kib()));
        }
        if Instant::now() > deadline {
            break None;
        }
    };
    let cpu_after = pid
        .and_then(|p| procstat::sample_tree(p).ok())
        .map(|s| s.cpu_s);
    step.cpu_s = cpu_before.zip(cpu_after).map(|(a, b)| b - a);
    step.mem_peak_kib = peak;
    let uas_rc = uas.wait(Duration::from_secs(10));
    uac.stop();
    uas.stop();

    let uac_csv = std::fs::read_to_string(dir.join("uac.csv")).unwrap_or_default();
    let uas_csv = std::fs::read_to_string(dir.join("uas.csv")).unwrap_or_default();
    step.successful = csv_u64(&uac_csv, "SuccessfulCall(C)");
    step.failed = csv_u64(&uac_csv, "FailedCall(C)");
    step.retransmissions =
        csv_u64(&uac_csv, "Retransmissions(C)") + csv_u64(&uas_csv, "Retransmissions(C)");
    step.achieved_cps = achieved_rate(&uac_csv, calls);
    step.setup_ms = csv_column(&uac_csv, "ResponseTime1(C)")
        .map(|(v, _)| sipp_duration_ms(&v))
        .unwrap_or(0.0);
    step.peak_calls = csv_column(&uac_csv, "CurrentCall").map_or(0, |(_, max)| max);
    if let Some(m) = running.http.and_then(metrics) {
        let own = metric(&m, "sip_retransmissions_total{direction=\"out\"}").unwrap_or(0.0);
        step.retransmissions += own as u64;
        if own > 0.0 {
            let _ = write!(step.note, "switch retransmitted {own}; ");
        }
    }
    if let Some(p) = running.proc.as_mut() {
        p.stop();
    }
    let unexpected = unexpected_messages(&dir);
    if unexpected > 0 {
        let _ = write!(step.note, "{unexpected} out-of-order messages ignored; ");
    }
    let mut why = Vec::new();
    if uac_rc != Some(0) {
        why.push(format!("uac exit {uac_rc:?}"));
    }
    if uas_rc.is_none() {
        why.push("uas did not finish".to_owned());
    }
    if step.failed > 0 || step.successful < calls {
        why.push(format!(
            "{} of {calls} calls succeeded, {} failed",
            step.successful, step.failed
        ));
    }
    if step.retransmissions > 0 {
        why.push(format!("{} retransmissions", step.retransmissions));
    }
    step.passed = why.is_empty();
    step.note.push_str(&why.join("; "));
    // The notes above end in "; " for the next one; the last needs none.
    let trimmed = step.note.trim_end_matches([';', ' ']).len();
    step.note.truncate(trimmed);
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sipp_statistics() {
        let csv = "StartTime;CurrentCall;SuccessfulCall(C);ResponseTime1(C);\n\
                   x;5;10;00:00:00:002000;\n\
                   x;12;40;00:00:00:001500;\n\
                   x;0;50;00:00:00:001250;\n";
        assert_eq!(csv_u64(csv, "SuccessfulCall(C)"), 50);
        assert_eq!(csv_column(csv, "CurrentCall").map(|c| c.1), Some(12));
        let ms = csv_column(csv, "ResponseTime1(C)").map(|(v, _)| sipp_duration_ms(&v));
        assert!((ms.unwrap() - 1.25).abs() < 1e-9);
        assert_eq!(csv_u64(csv, "Missing"), 0);
        let csv = "CallRate(P);CallRate(C);TotalCallCreated;\n\
                   0;0;0;\n99.5;99.5;100;\n100.5;100;200;\n20;80;250;\n";
        assert!((achieved_rate(csv, 250) - 100.0).abs() < 1e-9);
        assert!((achieved_rate("CallRate(C);\n40;\n", 10) - 0.0).abs() < 1e-9);
        let m = "# HELP x\nsip_retransmissions_total{direction=\"out\"} 3\n";
        assert_eq!(
            metric(m, "sip_retransmissions_total{direction=\"out\"}"),
            Some(3.0)
        );
    }
}
