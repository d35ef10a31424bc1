//! `softswitch-bench`: the load generator of issue 6. On loopback it runs
//!
//! - the RTP workload (N calls of 20 ms RTP both ways, PCMA/AMR/Opus sizes)
//!   through our relay (`softswitch-relay`), through rtpengine (userspace
//!   forwarding) and with no relay at all (the floor), each relay driven
//!   over ng by the same client and measured as its own process;
//! - the SIP workload (SIPp uac → system → SIPp uas, stepping the rate)
//!   through `softswitch serve`, through Kamailio (stateful proxy) and
//!   SIPp to SIPp directly (the floor);
//! - the HTTP workload (`--only http`): wrk on one core against the apps'
//!   call-status poll of `softswitch serve` pinned to another
//!   (`softswitch::bench::http_load`);
//!
//! and writes one Markdown report with every figure per system and the
//! ratios ours/peer. `scripts/bench-compare` builds, installs the peers and
//! runs it; see docs/benchmarks.md for the last report.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use softswitch::bench::hist::Histogram;
use softswitch::bench::http_load::{self, HttpLoadConfig, HttpReport, StatusRoute};
use softswitch::bench::ng::NgClient;
use softswitch::bench::rtp_load::{self, RtpLoadConfig, RtpOutcome};
use softswitch::bench::sip_load::{self, SipStep, SipStepConfig, SipSystem};
use softswitch::bench::BenchResult;

/// The relay's criteria (issue 6).
const MAX_LOSS: f64 = 0.001;
const MAX_ADDED_P99_NS: u64 = 1_000_000;
/// Below this share of the offered packets sent, the generator (starved of
/// CPU by the system under test and whatever else runs) did not apply the
/// load, and the run cannot count as carrying N calls. The slack covers
/// the window's edges.
const MIN_SENT: f64 = 0.99;

#[derive(Parser, Debug)]
#[command(about = "RTP relay and SIP load benchmark: ours vs rtpengine/Kamailio vs no relay")]
struct Args {
    /// Workloads to run: rtp, sip, http (comma-separated).
    #[arg(long, default_value = "rtp,sip,http", value_delimiter = ',')]
    only: Vec<String>,
    /// Concurrent calls tried, ascending; past `--curve-through` each
    /// relay stops at its first failure. 300 and 400 calls are the issue's
    /// 30k and 40k packets/s.
    #[arg(
        long,
        default_value = "10,100,300,400,500,750,1000,1500,2000",
        value_delimiter = ','
    )]
    calls: Vec<usize>,
    /// Every relay runs every N up to this one, failing or not, so the
    /// curve always shows it (10, 100, 1,000 calls and the maximum).
    #[arg(long, default_value_t = 1000)]
    curve_through: usize,
    /// Answered calls with no media held at once to measure memory per
    /// call (0: skip).
    #[arg(long, default_value_t = 5000)]
    quiet_calls: usize,
    /// Pin each relay to CPU 0 and the generator to CPU 1 (on a machine
    /// with at least two), so both relays get exactly one core and
    /// neither competes with the generator.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pin: bool,
    /// Bisect once between each relay's last pass and first failure.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    refine: bool,
    /// Seconds of RTP before the measurement window.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds of the measurement window.
    #[arg(long, default_value_t = 10.0)]
    measure: f64,
    /// Sender and receiver threads of the generator.
    #[arg(long, default_value_t = 1)]
    senders: usize,
    #[arg(long, default_value_t = 1)]
    receivers: usize,
    /// RTP systems: ours, rtpengine, direct.
    #[arg(long, default_value = "direct,ours,rtpengine", value_delimiter = ',')]
    rtp_systems: Vec<String>,
    /// Relay port range (both relays; 4 ports per call).
    #[arg(long, default_value_t = 10000)]
    port_min: u16,
    #[arg(long, default_value_t = 31999)]
    port_max: u16,
    /// SIP call rates tried (calls/s), ascending; each system stops at its first failure.
    #[arg(
        long,
        default_value = "50,100,200,300,400,600,800,1000,1200,1500,2000,2500,3000",
        value_delimiter = ','
    )]
    rates: Vec<u32>,
    /// Seconds of calls per SIP step.
    #[arg(long, default_value_t = 5)]
    sip_seconds: u32,
    /// How long each SIP call is held, ms.
    #[arg(long, default_value_t = 2000)]
    hold_ms: u32,
    /// After the ladder the switch's highest passing rate (and
    /// `--sustain-target` if it passed) runs again this many seconds, as its
    /// own "sustained" row; 0 skips it.
    #[arg(long, default_value_t = 60)]
    sustain_seconds: u32,
    #[arg(long, default_value_t = 1500)]
    sustain_target: u32,
    /// The switch's relay ports in the SIP workload: four per call up at
    /// once (two legs, RTP+RTCP), below the kernel's ephemeral range.
    #[arg(long, default_value_t = 10000)]
    sip_port_min: u16,
    #[arg(long, default_value_t = 32767)]
    sip_port_max: u16,
    /// SIP systems: direct, ours, kamailio.
    #[arg(long, default_value = "direct,ours,kamailio", value_delimiter = ',')]
    sip_systems: Vec<String>,
    /// Media loops of our relay (`softswitch-relay --loops`); 0 = one per core.
    #[arg(long, default_value_t = 0)]
    relay_loops: usize,
    /// rtpengine's worker threads (`--num-threads`); 0 = its default (one per core).
    #[arg(long, default_value_t = 0)]
    rtpengine_threads: usize,
    /// Binaries; ours default to the ones next to this one.
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    #[arg(long)]
    switch_bin: Option<PathBuf>,
    #[arg(long, default_value = "rtpengine")]
    rtpengine: PathBuf,
    #[arg(long, default_value = "kamailio")]
    kamailio: PathBuf,
    #[arg(long, default_value = "/usr/lib/x86_64-linux-gnu/kamailio/modules")]
    kamailio_modules: PathBuf,
    #[arg(long, default_value = "sipp")]
    sipp: PathBuf,
    /// The SIPp scenarios (tests/sipp).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp"))]
    scenarios: PathBuf,
    /// HTTP: the load generator, pinned to `http_wrk_cpu`.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// HTTP: status routes loaded, one wrk run each: android, ios, web, and
    /// healthz (the floor: the HTTP stack without the API).
    #[arg(long, default_value = "android,healthz", value_delimiter = ',')]
    http_routes: Vec<String>,
    /// HTTP: seconds per wrk run, keep-alive connections, wrk threads.
    #[arg(long, default_value_t = 10)]
    http_seconds: u32,
    #[arg(long, default_value_t = 64)]
    http_connections: u32,
    #[arg(long, default_value_t = 1)]
    http_wrk_threads: u32,
    /// HTTP: the cores the switch (one runtime worker) and wrk are pinned to.
    #[arg(long, default_value_t = 0)]
    http_switch_cpu: usize,
    #[arg(long, default_value_t = 1)]
    http_wrk_cpu: usize,
    /// Logs, configs, SIPp statistics.
    #[arg(long, default_value = "/tmp/softswitch-bench")]
    workdir: PathBuf,
    /// Where the Markdown report goes (also printed).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> BenchResult<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SOFTSWITCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Read before any pinning narrows it.
    machine_cpus();
    std::fs::create_dir_all(&args.workdir)?;
    let here = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let relay_bin = args
        .relay_bin
        .clone()
        .unwrap_or_else(|| here.join("softswitch-relay"));
    let switch_bin = args
        .switch_bin
        .clone()
        .unwrap_or_else(|| here.join("softswitch"));

    let machine_before = Machine::read();
    let started = Instant::now();
    let mut report = Report::default();
    if args.only.iter().any(|w| w == "rtp") {
        report.rtp = Some(run_rtp(&args, &relay_bin)?);
    }
    if args.only.iter().any(|w| w == "sip") {
        report.sip = Some(run_sip(&args, &switch_bin)?);
    }
    if args.only.iter().any(|w| w == "http") {
        report.http = Some(run_http(&args, &switch_bin));
    }
    let text = report.markdown(&args, &machine_before, &Machine::read(), started.elapsed());
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text)?;
        eprintln!("bench: report written to {}", out.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    kernel: String,
    date: String,
    loadavg: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let first = |path: &str| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        Machine {
            cpus: thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel: first("/proc/sys/kernel/osrelease"),
            date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            loadavg: first("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    fn load1(&self) -> f64 {
        self.loadavg
            .split_whitespace()
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0.0)
    }
}

/// The CPUs this process may use at start-up, before it pins itself
/// (after that `available_parallelism` would say 1).
fn machine_cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Whether this run pins (asked for, and at least two CPUs to pin to).
fn pinning(args: &Args) -> bool {
    args.pin && machine_cpus() >= 2
}

/// `program` on CPU 0 when pinning (`taskset` execs it: same pid).
fn pinned_command(program: &Path, pinned: bool) -> Command {
    if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Moves every thread of this process (the generator) to `cpus`, a
/// `taskset` list; threads started later inherit it.
fn pin_self(cpus: &str) -> BenchResult<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("taskset -c {cpus} failed: {status}").into());
    }
    Ok(())
}

/// The first line a command prints (stdout, else stderr), or "".
fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// RTP
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum RtpSystem {
    Direct,
    Ours,
    Rtpengine,
}

impl RtpSystem {
    fn name(self) -> &'static str {
        match self {
            RtpSystem::Direct => "no relay (floor)",
            RtpSystem::Ours => "softswitch-relay",
            RtpSystem::Rtpengine => "rtpengine",
        }
    }
}

#[derive(Debug)]
struct RtpRun {
    system: RtpSystem,
    calls: usize,
    outcome: Result<RtpOutcome, String>,
    /// p50/p99/p99.9 added over the floor at the same N, ns.
    added: Option<[u64; 3]>,
    passed: bool,
    /// The first try failed and this is the second (the machine is shared:
    /// one stall of other work must not end a relay's curve).
    retried: bool,
}

#[derive(Debug, Default)]
struct RtpReport {
    runs: Vec<RtpRun>,
    quiet: Vec<(RtpSystem, Result<rtp_load::QuietOutcome, String>)>,
    pinned: bool,
    skipped: Vec<String>,
    versions: Vec<String>,
}

/// A relay process under test: stopped (TERM, then KILL) when dropped.
struct RelayProc {
    child: Child,
    ng: SocketAddr,
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        sip_load::signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_relay(system: RtpSystem, args: &Args, relay_bin: &Path) -> BenchResult<RelayProc> {
    let port = sip_load::free_udp_ports(1)?;
    let ng = SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(args.workdir.join(format!("{system:?}.log")))?;
    let pinned = pinning(args);
    let mut cmd = match system {
        RtpSystem::Ours => {
            let mut c = pinned_command(relay_bin, pinned);
            c.arg("--listen-ng")
                .arg(ng.to_string())
                .args(["--bind-ip", "127.0.0.1"])
                .args(["--port-min", &args.port_min.to_string()])
                .args(["--port-max", &args.port_max.to_string()])
                .args(["--loops", &args.relay_loops.to_string()]);
            c
        }
        RtpSystem::Rtpengine => {
            let mut c = pinned_command(&args.rtpengine, pinned);
            // Userspace forwarding only (no kernel table), warnings only
            // (ours logs at warn too), freed ports reusable at once.
            c.args([
                "--config-file=none",
                "--interface=127.0.0.1",
                "--foreground",
                "--log-stderr",
                "--table=-1",
                "--log-level=4",
                "--delete-delay=0",
                "--timeout=600",
            ])
            .arg(format!("--listen-ng={ng}"))
            .arg(format!("--port-min={}", args.port_min))
            .arg(format!("--port-max={}", args.port_max));
            // Pinned to one core, more workers than the one would only
            // take turns on it (ours runs one loop there likewise).
            let threads = match args.rtpengine_threads {
                0 if pinned => 1,
                n => n,
            };
            if threads > 0 {
                c.arg(format!("--num-threads={threads}"));
            }
            c
        }
        RtpSystem::Direct => return Err("no process for the direct path".into()),
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", system.name()))?;
    let mut relay = RelayProc { child, ng };
    if let Some(stdout) = relay.child.stdout.take() {
        // Drained so the pipe never fills; ours prints its ng line here.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        if system == RtpSystem::Ours {
            rx.recv_timeout(Duration::from_secs(10))
                .map_err(|_| "softswitch-relay did not start")?;
        }
    }
    let mut client = NgClient::new(ng)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client.ping() {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(format!("{} does not answer ping: {e}", system.name()).into())
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
    // Let start-up allocation settle before the idle memory sample.
    thread::sleep(Duration::from_millis(500));
    Ok(relay)
}

fn rtp_once(system: RtpSystem, calls: usize, args: &Args, relay_bin: &Path) -> RtpRun {
    let cfg = RtpLoadConfig {
        calls,
        warmup: Duration::from_secs_f64(args.warmup),
        measure: Duration::from_secs_f64(args.measure),
        drain: Duration::from_millis(300),
        bind_ip: IpAddr::from([127, 0, 0, 1]),
        senders: args.senders,
        receivers: args.receivers,
        // About a tenth of the load, at least 10 calls so the p99.9 of the
        // reference rests on some 10,000 packets per 10 s window.
        probes: if system == RtpSystem::Direct {
            0
        } else {
            (calls / 10).clamp(10, 200)
        },
    };
    let outcome = (|| -> BenchResult<RtpOutcome> {
        if system == RtpSystem::Direct {
            return rtp_load::run(&rtp_load::Path::Direct, &cfg);
        }
        let relay = start_relay(system, args, relay_bin)?;
        let path = rtp_load::Path::Relay {
            ng: relay.ng,
            pid: relay.child.id(),
            internal: system == RtpSystem::Ours,
        };
        rtp_load::run(&path, &cfg)
    })()
    .map_err(|e| e.to_string());
    let run = RtpRun {
        system,
        calls,
        outcome,
        added: None,
        passed: false,
        retried: false,
    };
    eprintln!("bench: rtp {} N={calls}: {}", system.name(), brief(&run));
    run
}

fn brief(run: &RtpRun) -> String {
    match &run.outcome {
        Ok(o) => format!(
            "{:.0} pkt/s, loss {:.3} %, p99 {} µs, cpu/Mpkt {}",
            o.pps(),
            o.loss_ratio() * 100.0,
            o.latency.quantile_ns(0.99) / 1000,
            o.relay_cpu_per_mpkt()
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.2} s"))
        ),
        Err(e) => format!("failed: {e}"),
    }
}

const QUANTILES: [f64; 3] = [0.5, 0.99, 0.999];

/// Judges `run`: a relay's added latency is its percentile minus that of
/// the probe calls of the same run (else of the floor run at the same N).
/// The floor itself is judged on keeping up only: its latency is the
/// generator's, the reference the relays are measured against.
fn judge(run: &mut RtpRun, floor: Option<&RtpOutcome>) {
    let Ok(o) = &run.outcome else {
        return;
    };
    let q = |h: &Histogram, i: usize| h.quantile_ns(QUANTILES.get(i).copied().unwrap_or(0.5));
    let keeps_up = o.sent > 0 && o.sent_ratio() >= MIN_SENT && o.loss_ratio() < MAX_LOSS;
    if run.system == RtpSystem::Direct {
        run.passed = keeps_up;
        return;
    }
    let reference = if o.probe_latency.count() > 0 {
        Some(&o.probe_latency)
    } else {
        floor.map(|f| &f.latency)
    };
    let added =
        [0, 1, 2].map(|i| q(&o.latency, i).saturating_sub(reference.map_or(0, |r| q(r, i))));
    run.added = Some(added);
    run.passed = keeps_up && added[1] < MAX_ADDED_P99_NS;
}

fn run_rtp(args: &Args, relay_bin: &Path) -> BenchResult<RtpReport> {
    let pinned = pinning(args);
    if pinned {
        pin_self("1")?;
    }
    let report = run_rtp_pinned(args, relay_bin);
    if pinned {
        pin_self(&format!("0-{}", machine_cpus().saturating_sub(1)))?;
    }
    let mut report = report?;
    report.pinned = pinned;
    Ok(report)
}

/// This process's soft limit of open files (`/proc/self/limits`).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Memory of `--quiet-calls` answered calls without media, per relay.
fn run_quiet(args: &Args, relay_bin: &Path, relays: &[RtpSystem], report: &mut RtpReport) {
    if args.quiet_calls == 0 {
        return;
    }
    // Four sockets per call (RTP and RTCP of two legs) in either relay, which
    // inherits our descriptor limit; stay under it with room for the rest.
    let calls = match open_files_limit() {
        Some(limit) => args.quiet_calls.min(limit.saturating_sub(256) / 4),
        None => args.quiet_calls,
    };
    if calls < args.quiet_calls {
        report.skipped.push(format!(
            "quiet calls: {calls} instead of {}: the open-files limit ({}) allows four \
             sockets per call for no more",
            args.quiet_calls,
            open_files_limit().unwrap_or(0)
        ));
    }
    for &r in relays {
        let outcome = start_relay(r, args, relay_bin)
            .and_then(|relay| rtp_load::quiet_calls(relay.ng, relay.child.id(), calls))
            .map_err(|e| e.to_string());
        match &outcome {
            Ok(q) => eprintln!(
                "bench: {} quiet calls on {}: {:.1} KiB/call",
                q.calls,
                r.name(),
                q.kib_per_call()
            ),
            Err(e) => eprintln!("bench: quiet calls on {}: {e}", r.name()),
        }
        report.quiet.push((r, outcome));
    }
}

fn run_rtp_pinned(args: &Args, relay_bin: &Path) -> BenchResult<RtpReport> {
    let mut report = RtpReport::default();
    let mut systems = Vec::new();
    for s in &args.rtp_systems {
        match s.as_str() {
            "direct" => systems.push(RtpSystem::Direct),
            "ours" => systems.push(RtpSystem::Ours),
            "rtpengine" => {
                let v = command_line(&args.rtpengine.to_string_lossy(), &["--version"]);
                if v.is_empty() {
                    report.skipped.push(format!(
                        "rtpengine: {} not runnable",
                        args.rtpengine.display()
                    ));
                } else {
                    report.versions.push(format!("rtpengine: {v}"));
                    systems.push(RtpSystem::Rtpengine);
                }
            }
            other => report.skipped.push(format!("unknown RTP system {other:?}")),
        }
    }
    systems.sort();
    let relays: Vec<RtpSystem> = systems
        .iter()
        .copied()
        .filter(|s| *s != RtpSystem::Direct)
        .collect();
    let mut failed_at: Vec<(RtpSystem, usize)> = Vec::new();
    let mut grid = args.calls.clone();
    grid.sort_unstable();
    grid.dedup();
    for &n in &grid {
        let live: Vec<RtpSystem> = relays
            .iter()
            .copied()
            .filter(|r| n <= args.curve_through || !failed_at.iter().any(|(s, _)| s == r))
            .collect();
        if live.is_empty() && !relays.is_empty() {
            break;
        }
        // The floor runs at every N a relay runs at: "added" needs it.
        let mut todo: Vec<RtpSystem> = Vec::new();
        if systems.contains(&RtpSystem::Direct) {
            todo.push(RtpSystem::Direct);
        }
        todo.extend(live);
        rtp_step(args, relay_bin, n, &todo, &mut report, &mut failed_at);
    }
    if args.refine {
        // One bisection per relay between its last pass and first failure.
        for &r in &relays {
            let Some(&(_, bad)) = failed_at.iter().find(|(s, _)| *s == r) else {
                continue;
            };
            let good = report
                .runs
                .iter()
                .filter(|x| x.system == r && x.passed)
                .map(|x| x.calls)
                .max()
                .unwrap_or(0);
            let mid = (good + bad) / 2;
            if good == 0
                || mid <= good
                || report.runs.iter().any(|x| x.system == r && x.calls == mid)
            {
                continue;
            }
            let mut todo = vec![r];
            if systems.contains(&RtpSystem::Direct)
                && !report
                    .runs
                    .iter()
                    .any(|x| x.system == RtpSystem::Direct && x.calls == mid)
            {
                todo.insert(0, RtpSystem::Direct);
            }
            rtp_step(args, relay_bin, mid, &todo, &mut report, &mut Vec::new());
        }
    }
    run_quiet(args, relay_bin, &relays, &mut report);
    report.runs.sort_by_key(|r| (r.calls, r.system));
    Ok(report)
}

fn rtp_step(
    args: &Args,
    relay_bin: &Path,
    n: usize,
    todo: &[RtpSystem],
    report: &mut RtpReport,
    failed_at: &mut Vec<(RtpSystem, usize)>,
) {
    let floor = report
        .runs
        .iter()
        .position(|r| r.system == RtpSystem::Direct && r.calls == n);
    let mut floor_outcome = floor
        .and_then(|i| report.runs.get(i))
        .and_then(|r| r.outcome.as_ref().ok().cloned());
    for &s in todo {
        let mut run = rtp_once(s, n, args, relay_bin);
        judge(&mut run, floor_outcome.as_ref());
        if !run.passed && s != RtpSystem::Direct {
            eprintln!("bench: retrying {} at N={n} once", s.name());
            run = rtp_once(s, n, args, relay_bin);
            judge(&mut run, floor_outcome.as_ref());
            run.retried = true;
        }
        if s == RtpSystem::Direct {
            floor_outcome = run.outcome.as_ref().ok().cloned();
        }
        if !run.passed && !failed_at.iter().any(|(x, _)| *x == s) {
            failed_at.push((s, n));
        }
        report.runs.push(run);
    }
}

// ---------------------------------------------------------------------------
// SIP
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct SipRun {
    system: &'static str,
    step: Result<SipStep, String>,
}

#[derive(Debug, Default)]
struct SipReport {
    runs: Vec<SipRun>,
    skipped: Vec<String>,
    versions: Vec<String>,
}

fn run_sip(args: &Args, switch_bin: &Path) -> BenchResult<SipReport> {
    let mut report = SipReport::default();
    let sipp_v = command_line(&args.sipp.to_string_lossy(), &["-v"]);
    if sipp_v.is_empty() {
        report.skipped.push(format!(
            "every SIP system: {} not runnable",
            args.sipp.display()
        ));
        return Ok(report);
    }
    report.versions.push(format!("SIPp: {sipp_v}"));
    let mut systems = Vec::new();
    for s in &args.sip_systems {
        match s.as_str() {
            "direct" => systems.push(SipSystem::Direct),
            "ours" => systems.push(SipSystem::Switch {
                bin: switch_bin.to_path_buf(),
            }),
            "kamailio" => {
                let v = command_line(&args.kamailio.to_string_lossy(), &["-v"]);
                if v.is_empty() || !args.kamailio_modules.join("tm.so").exists() {
                    report.skipped.push(format!(
                        "Kamailio: {} or its modules in {} missing",
                        args.kamailio.display(),
                        args.kamailio_modules.display()
                    ));
                } else {
                    report.versions.push(format!("Kamailio: {v}"));
                    systems.push(SipSystem::Kamailio {
                        bin: args.kamailio.clone(),
                        modules: args.kamailio_modules.clone(),
                    });
                }
            }
            other => report.skipped.push(format!("unknown SIP system {other:?}")),
        }
    }
    let mut rates = args.rates.clone();
    rates.sort_unstable();
    rates.dedup();
    for system in &systems {
        for &rate in &rates {
            let step = run_sip_step(args, system, rate, args.sip_seconds);
            let passed = step.as_ref().is_ok_and(|s| s.passed);
            report.runs.push(SipRun {
                system: system.name(),
                step,
            });
            if !passed {
                break;
            }
        }
        // Sustained: the best ladder rate (and the target, if it passed),
        // held long enough to show the loop never falls behind.
        if !matches!(system, SipSystem::Switch { .. }) || args.sustain_seconds == 0 {
            continue;
        }
        let passed: Vec<u32> = report
            .runs
            .iter()
            .filter(|r| r.system == system.name())
            .filter_map(|r| r.step.as_ref().ok())
            .filter(|st| st.passed && !st.sustained)
            .map(|st| st.rate)
            .collect();
        let mut sustain: Vec<u32> = passed.iter().max().copied().into_iter().collect();
        if passed.contains(&args.sustain_target) && !sustain.contains(&args.sustain_target) {
            sustain.push(args.sustain_target);
        }
        for rate in sustain {
            let step = run_sip_step(args, system, rate, args.sustain_seconds).map(|mut s| {
                s.sustained = true;
                s
            });
            report.runs.push(SipRun {
                system: system.name(),
                step,
            });
        }
    }
    Ok(report)
}

/// One SIP step, tried once more when it fails (the machine is shared).
fn run_sip_step(
    args: &Args,
    system: &SipSystem,
    rate: u32,
    seconds: u32,
) -> Result<SipStep, String> {
    let cfg = SipStepConfig {
        rate,
        seconds,
        hold_ms: args.hold_ms,
        scenarios: args.scenarios.clone(),
        workdir: args.workdir.clone(),
        sipp: args.sipp.clone(),
        media_ports: (args.sip_port_min, args.sip_port_max),
    };
    let mut step = sip_load::run_step(system, &cfg).map_err(|e| e.to_string());
    if !step.as_ref().is_ok_and(|s| s.passed) {
        // Once more, as for RTP: the machine is shared.
        let first = match &step {
            Ok(s) => s.note.clone(),
            Err(e) => e.clone(),
        };
        eprintln!(
            "bench: retrying {} at {rate}/s for {seconds} s once ({first})",
            system.name()
        );
        step = sip_load::run_step(system, &cfg)
            .map(|mut s| {
                s.note = if s.note.is_empty() {
                    format!("2nd try (1st: {first})")
                } else {
                    format!("2nd try (1st: {first}); {}", s.note)
                };
                s
            })
            .map_err(|e| e.to_string());
    }
    eprintln!(
        "bench: sip {} {rate}/s for {seconds} s: {}",
        system.name(),
        match &step {
            Ok(s) => format!(
                "{} ok, {} failed, {} retrans, {:.0} cps achieved, INVITE→200 {:.2} ms, \
                 CPU {} ms/call, {} KiB/dialog{}",
                s.successful,
                s.failed,
                s.retransmissions,
                s.achieved_cps,
                s.setup_ms,
                opt(s.cpu_ms_per_call(), 3),
                opt(s.kib_per_dialog(), 1),
                if s.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.note)
                }
            ),
            Err(e) => format!("error: {e}"),
        }
    );
    step
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Report {
    rtp: Option<RtpReport>,
    sip: Option<SipReport>,
    http: Option<HttpReport>,
}

/// The HTTP workload; a failure becomes the section's note, so the other
/// workloads' figures are still reported.
fn run_http(args: &Args, switch_bin: &Path) -> HttpReport {
    let mut routes = Vec::new();
    for name in &args.http_routes {
        match StatusRoute::parse(name) {
            Some(r) => routes.push(r),
            None => eprintln!("bench: unknown HTTP route {name:?} (android, ios, web, healthz)"),
        }
    }
    let cfg = HttpLoadConfig {
        switch_bin: switch_bin.to_path_buf(),
        sipp: args.sipp.clone(),
        wrk: args.wrk.clone(),
        scenarios: args.scenarios.clone(),
        workdir: args.workdir.clone(),
        switch_cpu: args.http_switch_cpu,
        wrk_cpu: args.http_wrk_cpu,
        wrk_threads: args.http_wrk_threads,
        connections: args.http_connections,
        seconds: args.http_seconds,
        routes,
        media_ports: (args.port_min, args.port_max),
    };
    eprintln!("bench: http status poll ({}s per route)", args.http_seconds);
    http_load::run(&cfg).unwrap_or_else(|e| HttpReport {
        note: format!("the HTTP workload did not run: {e}"),
        ..HttpReport::default()
    })
}

fn us(ns: u64) -> String {
    if ns >= 10_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{} µs", ns / 1000)
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

fn ratio(ours: Option<f64>, peer: Option<f64>) -> String {
    match (ours, peer) {
        (Some(a), Some(b)) if b.abs() > f64::EPSILON => format!("{:.2}", a / b),
        _ => "–".to_owned(),
    }
}

impl Report {
    fn markdown(&self, args: &Args, before: &Machine, after: &Machine, took: Duration) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "# Benchmarks\n");
        let _ = writeln!(
            t,
            "Produced by `scripts/bench-compare` (`softswitch-bench`, issue 6); \
             everything on loopback on one machine.\n"
        );
        let _ = writeln!(
            t,
            "**Machine:** {} CPUs ({}), Linux {}, {}. Load average (1/5/15 min) {} at the start, \
             {} at the end; the run took {:.0} s.",
            before.cpus,
            before.cpu_model,
            before.kernel,
            before.date,
            before.loadavg,
            after.loadavg,
            took.as_secs_f64()
        );
        if before.load1() > 1.0 || after.load1() > 1.0 {
            let _ = writeln!(
                t,
                "\n> The load average was above 1: the machine was shared with other work \
                 (builds, tests) while this ran, and the generator, the system under test \
                 and that work competed for {} cores. Absolute figures are pessimistic; the \
                 ratios between systems measured back to back are the better guide.",
                before.cpus
            );
        }
        let mut versions: Vec<&String> = Vec::new();
        if let Some(r) = &self.rtp {
            versions.extend(&r.versions);
        }
        if let Some(s) = &self.sip {
            versions.extend(&s.versions);
        }
        if !versions.is_empty() {
            let v: Vec<&str> = versions.iter().map(|s| s.as_str()).collect();
            let _ = writeln!(t, "\nPeers: {}.", v.join("; "));
        }
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let _ = writeln!(
            t,
            "\nReproduce with `scripts/bench-compare` (it builds the release binaries, \
             installs rtpengine, Kamailio and SIPp when missing, and rewrites this file). \
             This run: `softswitch-bench {}`.",
            argv.join(" ")
        );
        if let Some(r) = &self.rtp {
            rtp_markdown(&mut t, r, args);
        }
        if let Some(s) = &self.sip {
            sip_markdown(&mut t, s, args);
        }
        if let Some(h) = &self.http {
            http_load::markdown(&mut t, h);
        }
        let _ = writeln!(
            t,
            "\n## Not measured\n\n\
             - rtpengine's kernel forwarding (`--table=0` with the `xt_RTPENGINE` module): \
             it needs a kernel module this machine cannot load; only userspace is compared.\n\
             - Transcoding, SRTP, ICE, RTCP-mux: same codec both ways, plain RTP/AVP.\n\
             - The SIPp processes' own CPU: the SIP floor is what SIPp sustains, not a cost.\n\
             - Kamailio with the dialog module (it would hold per-call state as our B2BUA \
             does); the figures are for a transaction-stateful proxy, a lighter job.\n\
             - SIP over TCP/TLS, authentication, registrations."
        );
        t
    }
}

fn rtp_markdown(t: &mut String, r: &RtpReport, args: &Args) {
    let _ = writeln!(t, "\n## RTP relay\n");
    let _ = writeln!(
        t,
        "N calls, each two endpoints sending one packet every 20 ms to the other \
         (50 packets/s each way, 100 relayed per call per second); calls cycle through \
         PCMA (160 B payload), AMR 12.2 (32 B) and Opus (70 B). Every relay is set up over \
         rtpengine's ng protocol by the same client (`offer`, `answer`, `delete`) and runs \
         as its own process: `softswitch-relay` (our `MediaDriver`: epoll loops, one per \
         core it may use) and rtpengine (userspace forwarding, `--table=-1`). {} The floor sends \
         caller↔callee directly. Latency is one-way, send to receive, both stamped by the \
         generator's monotonic clock (send time in the payload, receive time right after \
         `recv`); *added* is the relay's percentile minus that of the *probes*: N/10 \
         (10 to 200) extra calls sent directly between generator sockets in the same run, \
         interleaved with the relayed ones, so both see the same generator and the same \
         machine at the same moments. The separate floor rows (no relay, N calls) show \
         what the generator alone sustains. \
         {:.0} s warm-up, then a {:.0} s window (packets sent in it, received after a \
         300 ms drain). CPU is the relay process's utime+stime over the window per million \
         packets delivered; memory per call is its RSS growth from idle to the end of the \
         window over N. A relay *passes* at N with loss < 0.1 % and added p99 < 1 ms, the generator \
         having sent at least 99 % of the offered packets (a generator starved of CPU \
         offers less than N calls' worth, so the run does not show N calls carried); a relay that \
         fails is tried once more at that N, and its curve ends at its second failure.\n",
        if r.pinned {
            "Each relay is pinned to CPU 0 (`taskset`; rtpengine with `--num-threads=1`, ours \
             then runs one loop) and the generator to CPU 1, so each relay has exactly one \
             core of its own: the largest N is what one core carries."
        } else {
            "Nothing is pinned: relays (default threads) and generator share every core."
        },
        args.warmup,
        args.measure
    );
    for s in &r.skipped {
        let _ = writeln!(t, "- Skipped: {s}");
    }
    // Largest N per system.
    let systems = [RtpSystem::Direct, RtpSystem::Ours, RtpSystem::Rtpengine];
    let best = |s: RtpSystem| -> Option<&RtpRun> {
        r.runs
            .iter()
            .filter(|x| x.system == s && x.passed)
            .max_by_key(|x| x.calls)
    };
    let first_fail = |s: RtpSystem| -> Option<&RtpRun> {
        r.runs
            .iter()
            .filter(|x| x.system == s && !x.passed)
            .min_by_key(|x| x.calls)
    };
    let _ = writeln!(t, "### Largest N carried\n");
    let _ = writeln!(
        t,
        "| system | largest N passing | packets/s relayed there | first N failing | why |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---|");
    for s in systems {
        if !r.runs.iter().any(|x| x.system == s) {
            continue;
        }
        let b = best(s);
        let f = first_fail(s);
        let why = f.map_or_else(
            || "none failed up to the largest N tried".to_owned(),
            |f| match &f.outcome {
                Ok(o) => format!(
                    "sent {:.1} % of the offered load, loss {:.3} %, added p99 {}",
                    o.sent_ratio() * 100.0,
                    o.loss_ratio() * 100.0,
                    us(f.added
                        .map_or_else(|| o.latency.quantile_ns(0.99), |a| a[1]))
                ),
                Err(e) => e.clone(),
            },
        );
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} |",
            s.name(),
            b.map_or_else(|| "–".to_owned(), |b| b.calls.to_string()),
            b.and_then(|b| b.outcome.as_ref().ok())
                .map_or_else(|| "–".to_owned(), |o| format!("{:.0}", o.pps())),
            f.map_or_else(|| "–".to_owned(), |f| f.calls.to_string()),
            why
        );
    }
    let _ = writeln!(
        t,
        "\nThe floor failing means the generator itself (one sender and one receiver \
         thread) could not keep up: no relay can be judged beyond that N on this \
         machine. The generator costs more CPU per packet than either relay (its column \
         below; on loopback a `send_to` also runs the receiving side's kernel path){}; \
         the relays' CPU per packet is the figure that carries over to a bigger machine.\n",
        if r.pinned {
            ", so on its one core it, not the relay, is often what gives out first"
        } else {
            ", and shares the cores with the relay, so the largest N here is that of \
             the machine as a whole"
        }
    );

    let _ = writeln!(t, "### The curve\n");
    let _ = writeln!(
        t,
        "| N | system | packets/s | sent % of offered | loss % | reordered | p50 | p99 | p99.9 | max | probes p50 / p99 | added p50 | added p99 | added p99.9 | relay CPU s / Mpkt | generator CPU s / Mpkt | relay KiB / call | ng set-ups/s | pass |"
    );
    let _ = writeln!(
        t,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"
    );
    for run in &r.runs {
        match &run.outcome {
            Ok(o) => {
                let added = |i: usize| {
                    run.added
                        .and_then(|a| a.get(i).copied())
                        .map_or_else(|| "–".to_owned(), us)
                };
                let setups = (o.setup_s > 0.0).then(|| o.calls as f64 / o.setup_s);
                let gen = (o.received > 0).then(|| o.generator_cpu_s / (o.received as f64 / 1e6));
                let _ = writeln!(
                    t,
                    "| {} | {} | {:.0} | {:.1} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    run.calls,
                    run.system.name(),
                    o.pps(),
                    o.sent_ratio() * 100.0,
                    o.loss_ratio() * 100.0,
                    o.reordered,
                    us(o.latency.quantile_ns(0.5)),
                    us(o.latency.quantile_ns(0.99)),
                    us(o.latency.quantile_ns(0.999)),
                    us(o.latency.max_ns()),
                    if o.probe_latency.count() > 0 {
                        format!(
                            "{} / {}",
                            us(o.probe_latency.quantile_ns(0.5)),
                            us(o.probe_latency.quantile_ns(0.99))
                        )
                    } else {
                        "–".to_owned()
                    },
                    added(0),
                    added(1),
                    added(2),
                    opt(o.relay_cpu_per_mpkt(), 2),
                    opt(gen, 2),
                    opt(o.relay_kib_per_call(), 1),
                    opt(setups, 0),
                    match (run.passed, run.retried) {
                        (true, false) => "✓",
                        (true, true) => "✓ (2nd try)",
                        (false, false) => "✗",
                        (false, true) => "✗ (twice)",
                    }
                );
            }
            Err(e) => {
                let _ = writeln!(
                    t,
                    "| {} | {} | error: {} | | | | | | | | | | | | | | | | ✗ |",
                    run.calls,
                    run.system.name(),
                    e.replace('|', "/")
                );
            }
        }
    }

    // Ratios ours / rtpengine at each N both ran.
    let _ = writeln!(t, "\n### Ours / rtpengine\n");
    let _ = writeln!(
        t,
        "End-to-end latency percentiles compared as measured (both include the same \
         generator, so the ratio understates the difference between the relays \
         themselves; see *added* in the curve). Below 1 is better for ours, except \
         packets/s (1 when both carry the offered load).\n"
    );
    let _ = writeln!(
        t,
        "| N | packets/s | p50 | p99 | p99.9 | max | added p99 | CPU / Mpkt | KiB / call |"
    );
    let _ = writeln!(t, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let get = |s: RtpSystem, n: usize| {
        r.runs
            .iter()
            .find(|x| x.system == s && x.calls == n)
            .and_then(|x| x.outcome.as_ref().ok().map(|o| (x, o)))
    };
    let mut ns: Vec<usize> = r.runs.iter().map(|x| x.calls).collect();
    ns.dedup();
    for n in ns {
        let (Some((ra, a)), Some((rb, b))) =
            (get(RtpSystem::Ours, n), get(RtpSystem::Rtpengine, n))
        else {
            continue;
        };
        let added_p99 = |run: &RtpRun| run.added.map(|a| a[1] as f64);
        let e2e = |o: &RtpOutcome, q: f64| Some(o.latency.quantile_ns(q) as f64);
        let _ = writeln!(
            t,
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ratio(Some(a.pps()), Some(b.pps())),
            ratio(e2e(a, 0.5), e2e(b, 0.5)),
            ratio(e2e(a, 0.99), e2e(b, 0.99)),
            ratio(e2e(a, 0.999), e2e(b, 0.999)),
            ratio(
                Some(a.latency.max_ns() as f64),
                Some(b.latency.max_ns() as f64)
            ),
            ratio(added_p99(ra), added_p99(rb)),
            ratio(a.relay_cpu_per_mpkt(), b.relay_cpu_per_mpkt()),
            ratio(a.relay_kib_per_call(), b.relay_kib_per_call()),
        );
    }

    if !r.quiet.is_empty() {
        let _ = writeln!(t, "\n### Memory per call, quiet\n");
        let _ = writeln!(
            t,
            "N calls set up (offer and answer) and held with no media flowing: the relay \
             process's memory growth over idle (RSS), divided by N. Kernel socket buffers \
             are not in it (they are charged to the kernel, for either relay).\n"
        );
        let _ = writeln!(t, "| system | calls | KiB / call | set-ups/s |");
        let _ = writeln!(t, "|---|---:|---:|---:|");
        for (sys, q) in &r.quiet {
            match q {
                Ok(q) => {
                    let _ = writeln!(
                        t,
                        "| {} | {} | {:.1} | {:.0} |",
                        sys.name(),
                        q.calls,
                        q.kib_per_call(),
                        q.calls as f64 / q.setup_s.max(1e-9)
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        t,
                        "| {} | – | error: {} | |",
                        sys.name(),
                        e.replace('|', "/")
                    );
                }
            }
        }
    }

    // Our relay's own view.
    let internal: Vec<&RtpRun> = r
        .runs
        .iter()
        .filter(|x| x.outcome.as_ref().is_ok_and(|o| o.internal.is_some()))
        .collect();
    if !internal.is_empty() {
        let _ = writeln!(t, "\n### Our relay's own histogram\n");
        let _ = writeln!(
            t,
            "`MediaDriver::latency()` over the same window: from the `Instant` right after \
             `recv_from` to the forwarded copy's `send_to` returning, in the coarse buckets \
             of `rtp_relay_latency_seconds` (a percentile reads \"at most\"). It leaves out \
             the kernel and the wake-up of the loop, which the end-to-end figures include.\n"
        );
        let _ = writeln!(t, "| N | packets | p50 ≤ | p99 ≤ | p99.9 ≤ |");
        let _ = writeln!(t, "|---:|---:|---:|---:|---:|");
        for run in internal {
            let Some(b) = run.outcome.as_ref().ok().and_then(|o| o.internal.as_ref()) else {
                continue;
            };
            let q = |q: f64| {
                b.quantile_bound_ns(q)
                    .map_or_else(|| "> 25 ms".to_owned(), us)
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} |",
                run.calls,
                b.cumulative.last().copied().unwrap_or(0),
                q(0.5),
                q(0.99),
                q(0.999)
            );
        }
    }
}

fn sip_markdown(t: &mut String, s: &SipReport, args: &Args) {
    let _ = writeln!(t, "\n## SIP call set-up and tear-down\n");
    let _ = writeln!(
        t,
        "SIPp `uac` (tests/sipp/uac.xml: INVITE with SDP, 100/180/200, ACK, {} ms hold, BYE, \
         200) → system → SIPp `uas` (tests/sipp/uas.xml), UDP on loopback, {} s of calls \
         per step at each rate. Systems: `softswitch serve` (a B2BUA: two dialogs and two \
         relay legs per call, CDRs to SQLite, info logging to a file, production timers), \
         Kamailio as a record-routing stateful proxy (`t_relay`, 2 workers, no dialog \
         module: transactions only), and SIPp talking to SIPp directly (the floor: what \
         the generator itself sustains). A step *passes* with every call successful and \
         no retransmission anywhere (both SIPps' counters, and the switch's own \
         `sip_retransmissions_total{{direction=\"out\"}}`); a failing step is tried once \
         more, and each system stops at its second failure. Memory per dialog is the system's peak memory growth over idle \
         (RSS; summed PSS of Kamailio's processes) divided by the most calls up at once; \
         CPU is the system's utime+stime over the step.\n",
        args.hold_ms, args.sip_seconds
    );
    for sk in &s.skipped {
        let _ = writeln!(t, "- Skipped: {sk}");
    }
    let mut names: Vec<&'static str> = Vec::new();
    for r in &s.runs {
        if !names.contains(&r.system) {
            names.push(r.system);
        }
    }
    let best = |name: &str| -> Option<&SipStep> {
        s.runs
            .iter()
            .filter(|r| r.system == name)
            .filter_map(|r| r.step.as_ref().ok())
            .filter(|st| st.passed && !st.sustained)
            .max_by_key(|st| st.rate)
    };
    let _ = writeln!(
        t,
        "### Highest rate with 0 failed calls and no retransmissions\n"
    );
    let _ = writeln!(
        t,
        "| system | calls/s | achieved calls/s | INVITE→200 mean | CPU ms / call | KiB / dialog | next step |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---|");
    for name in &names {
        let b = best(name);
        let next = s
            .runs
            .iter()
            .filter(|r| r.system == *name)
            .filter(|r| !r.step.as_ref().is_ok_and(|st| st.sustained))
            .find(|r| !r.step.as_ref().is_ok_and(|st| st.passed))
            .map_or_else(
                || "none failed up to the highest rate tried".to_owned(),
                |r| match &r.step {
                    Ok(st) => format!("{}/s: {}", st.rate, st.note),
                    Err(e) => format!("error: {e}"),
                },
            );
        let _ = writeln!(
            t,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            b.map_or_else(|| "–".to_owned(), |b| b.rate.to_string()),
            opt(b.map(|b| b.achieved_cps), 0),
            opt(b.map(|b| b.setup_ms), 2).replace('–', "– ") + " ms",
            opt(b.and_then(SipStep::cpu_ms_per_call), 3),
            opt(b.and_then(SipStep::kib_per_dialog), 1),
            next.replace('|', "/")
        );
    }
    let ours = best("softswitch");
    // Per-call costs compared at one rate (the highest both passed): near
    // its limit a system queues, and its set-up time says more about the
    // rate than about the system.
    let passed_at = |name: &str, rate: u32| -> Option<&SipStep> {
        s.runs
            .iter()
            .filter(|r| r.system == name)
            .filter_map(|r| r.step.as_ref().ok())
            .find(|st| st.passed && !st.sustained && st.rate == rate)
    };
    for peer in ["SIPp→SIPp", "Kamailio"] {
        let Some(p) = best(peer) else { continue };
        let common = ours.map(|o| o.rate.min(p.rate));
        let (o_at, p_at) = match common {
            Some(rate) => (passed_at("softswitch", rate), passed_at(peer, rate)),
            None => (None, None),
        };
        let _ = writeln!(
            t,
            "\nOurs / {peer}: highest calls/s {}; at {} calls/s (the highest both passed): \
             INVITE→200 {}, CPU per call {}, memory per dialog {}.",
            ratio(ours.map(|o| f64::from(o.rate)), Some(f64::from(p.rate))),
            common.map_or_else(|| "–".to_owned(), |r| r.to_string()),
            ratio(o_at.map(|o| o.setup_ms), p_at.map(|p| p.setup_ms)),
            ratio(
                o_at.and_then(SipStep::cpu_ms_per_call),
                p_at.and_then(SipStep::cpu_ms_per_call)
            ),
            ratio(
                o_at.and_then(SipStep::kib_per_dialog),
                p_at.and_then(SipStep::kib_per_dialog)
            )
        );
    }
    let sustained: Vec<&SipRun> = s
        .runs
        .iter()
        .filter(|r| r.step.as_ref().is_ok_and(|st| st.sustained))
        .collect();
    if !sustained.is_empty() {
        let _ = writeln!(
            t,
            "\n### Sustained {} s\n\nThe switch's highest passing ladder rate (and the \
             {} calls/s target when it passed), held for {} s under the same pass rule.\n",
            args.sustain_seconds, args.sustain_target, args.sustain_seconds
        );
        let _ = writeln!(
            t,
            "| system | calls/s | calls | ok | failed | retrans | achieved calls/s | INVITE→200 mean | CPU ms / call | KiB / dialog | pass | note |"
        );
        let _ = writeln!(
            t,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---|"
        );
        for r in sustained {
            if let Ok(st) = &r.step {
                let _ = writeln!(
                    t,
                    "| {} sustained {} s | {} | {} | {} | {} | {} | {:.0} | {:.2} ms | {} | {} | {} | {} |",
                    r.system,
                    st.seconds,
                    st.rate,
                    st.calls,
                    st.successful,
                    st.failed,
                    st.retransmissions,
                    st.achieved_cps,
                    st.setup_ms,
                    opt(st.cpu_ms_per_call(), 3),
                    opt(st.kib_per_dialog(), 1),
                    if st.passed { "✓" } else { "✗" },
                    st.note.replace('|', "/")
                );
            }
        }
    }
    let _ = writeln!(t, "\n### Every step\n");
    let _ = writeln!(
        t,
        "| system | rate | calls | ok | failed | retrans | achieved cps | INVITE→200 mean | peak calls up | CPU s | CPU ms / call | KiB / dialog | pass | note |"
    );
    let _ = writeln!(
        t,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---|"
    );
    for r in &s.runs {
        match &r.step {
            Ok(st) => {
                let _ = writeln!(
                    t,
                    "| {}{} | {} | {} | {} | {} | {} | {:.0} | {:.2} ms | {} | {} | {} | {} | {} | {} |",
                    r.system,
                    if st.sustained {
                        format!(" (sustained {} s)", st.seconds)
                    } else {
                        String::new()
                    },
                    st.rate,
                    st.calls,
                    st.successful,
                    st.failed,
                    st.retransmissions,
                    st.achieved_cps,
                    st.setup_ms,
                    st.peak_calls,
                    opt(st.cpu_s, 2),
                    opt(st.cpu_ms_per_call(), 3),
                    opt(st.kib_per_dialog(), 1),
                    if st.passed { "✓" } else { "✗" },
                    st.note.replace('|', "/")
                );
            }
            Err(e) => {
                let _ = writeln!(
                    t,
                    "| {} | | | | | | | | | | | | ✗ | error: {} |",
                    r.system,
                    e.replace('|', "/")
                );
            }
        }
    }
}
