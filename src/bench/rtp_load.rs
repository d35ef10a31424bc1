//! The RTP workload: N calls, each two endpoints (caller and callee
//! sockets on loopback) sending 20 ms packets at each other, either
//! directly (the floor) or through a relay set up over ng.
//!
//! ```text
//!  setup:   per call  offer(caller SDP) ─▶ relay port for the callee
//!                     answer(callee SDP) ─▶ relay port for the caller
//!  sender thread(s):  every endpoint every 20 ms, start offsets spread over
//!                     the period; payload = magic, stream, seq, send time
//!  receiver thread(s): tokio current-thread runtime, one recv task per socket;
//!                     time taken right after recv returns
//!  window:  only packets *sent* in [warm-up end, warm-up end + measure) count,
//!           so loss = sent in window − received of those (after a drain)
//! ```
//!
//! Probes: a few extra calls sent straight between two generator sockets
//! in the same run, interleaved with the relayed ones. They see the same
//! generator, kernel and machine at the same moments, so the relay's added
//! latency is the relayed percentile minus the probes' (on a shared
//! machine a separate floor run is minutes away and sees other load).
//!
//! Send and receive times come from one monotonic clock (`Instant` since a
//! shared origin) in one process, so their difference is the one-way
//! latency with no clock sync; the relays forward payloads untouched.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::hist::Histogram;
use super::ng::{self, Codec, NgClient, CODECS};
use super::procstat::{self, ProcSample};
use super::BenchResult;

/// Marks our packets (anything else arriving, e.g. a relay's RTCP landing
/// on a neighbouring port, is counted as stray and ignored).
const MAGIC: [u8; 4] = *b"SSB1";
const RTP_HEADER: usize = 12;
/// magic, stream, sequence (u32), send time (u64 ns).
const STAMP: usize = 4 + 4 + 4 + 8;
const PERIOD: Duration = Duration::from_millis(20);
/// A sender this early for a packet sends it now rather than sleep: the
/// send time is taken at the send anyway, and a sleep costs ~60 µs.
const SPIN: Duration = Duration::from_micros(200);

#[derive(Clone, Debug)]
pub struct RtpLoadConfig {
    pub calls: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// After the last send, how long receivers wait for stragglers.
    pub drain: Duration,
    pub bind_ip: IpAddr,
    pub senders: usize,
    pub receivers: usize,
    /// Direct calls run alongside as the concurrent floor (see the
    /// module notes); not counted in `sent`, `received` or `latency`.
    pub probes: usize,
}

/// Where the media goes.
#[derive(Clone, Debug)]
pub enum Path {
    /// Caller and callee send straight at each other.
    Direct,
    /// Through a relay: set up over ng at `ng`; `pid` is the relay
    /// process, sampled for CPU and memory; `internal` asks it for its own
    /// latency histogram (our relay's `statistics`).
    Relay {
        ng: SocketAddr,
        pid: u32,
        internal: bool,
    },
}

/// Prometheus-style buckets: upper bounds and cumulative counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    pub bounds_ns: Vec<u64>,
    pub cumulative: Vec<u64>,
}

impl Buckets {
    /// The upper bound of the first bucket holding quantile `q`; None
    /// when empty or when it falls in the unbounded last bucket.
    pub fn quantile_bound_ns(&self, q: f64) -> Option<u64> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let i = self.cumulative.iter().position(|&c| c >= rank)?;
        self.bounds_ns.get(i).copied()
    }

    fn minus(&self, earlier: &Buckets) -> Buckets {
        Buckets {
            bounds_ns: self.bounds_ns.clone(),
            cumulative: self
                .cumulative
                .iter()
                .zip(earlier.cumulative.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RtpOutcome {
    pub calls: usize,
    /// Seconds to set up every call over ng (0 for the direct path).
    pub setup_s: f64,
    pub window_s: f64,
    /// Packets the workload asks for in the window (every stream, every
    /// 20 ms); a generator starved of CPU sends fewer (see `sent`).
    pub offered: u64,
    /// Packets sent in the window, and how many of those arrived.
    pub sent: u64,
    pub received: u64,
    /// Arrived after a later packet of the same stream.
    pub reordered: u64,
    /// Sends that failed (full socket buffer): not offered to the path.
    pub send_errors: u64,
    /// Datagrams that were not ours.
    pub stray: u64,
    /// One-way latency, sender to receiver, of the packets that arrived.
    pub latency: Histogram,
    /// The same for the probe calls (direct, concurrent).
    pub probe_latency: Histogram,
    pub probe_sent: u64,
    pub probe_received: u64,
    /// The relay process over the window (CPU) and its memory before
    /// set-up and at the window's end.
    pub relay_before: Option<ProcSample>,
    pub relay_start: Option<ProcSample>,
    pub relay_end: Option<ProcSample>,
    /// The load generator's own CPU over the window.
    pub generator_cpu_s: f64,
    /// The relay's own histogram over the window (ours only).
    pub internal: Option<Buckets>,
}

impl RtpOutcome {
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    /// The share of the offered packets the generator managed to send.
    pub fn sent_ratio(&self) -> f64 {
        if self.offered == 0 {
            1.0
        } else {
            self.sent as f64 / self.offered as f64
        }
    }

    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost() as f64 / self.sent as f64
        }
    }

    /// Packets per second delivered through the path.
    pub fn pps(&self) -> f64 {
        if self.window_s > 0.0 {
            self.received as f64 / self.window_s
        } else {
            0.0
        }
    }

    /// Relay CPU seconds per million packets relayed in the window.
    pub fn relay_cpu_per_mpkt(&self) -> Option<f64> {
        let (a, b) = (self.relay_start?, self.relay_end?);
        (self.received > 0).then(|| (b.cpu_s - a.cpu_s) / (self.received as f64 / 1e6))
    }

    /// Relay memory growth per call, KiB.
    pub fn relay_kib_per_call(&self) -> Option<f64> {
        let (a, b) = (self.relay_before?, self.relay_end?);
        (self.calls > 0).then(|| (b.mem_kib() as f64 - a.mem_kib() as f64) / self.calls as f64)
    }
}

/// One endpoint's sending side.
struct Tx {
    sock: UdpSocket,
    dest: SocketAddr,
    seq: u32,
    rtp_seq: u16,
    ts: u32,
    ts_step: u32,
    offset: Duration,
    packet: Vec<u8>,
    probe: bool,
}

impl Tx {
    fn new(
        sock: UdpSocket,
        dest: SocketAddr,
        stream: u32,
        codec: &Codec,
        offset: Duration,
        probe: bool,
    ) -> Tx {
        let mut packet = vec![0xD5u8; RTP_HEADER + codec.payload_len.max(STAMP)];
        let ssrc = 0x5000_0000u32 ^ stream.wrapping_mul(2_654_435_761);
        let header = [0x80, codec.payload_type & 0x7f, 0, 0, 0, 0, 0, 0];
        for (d, s) in packet.iter_mut().zip(header) {
            *d = s;
        }
        put(&mut packet, 8, &ssrc.to_be_bytes());
        put(&mut packet, RTP_HEADER, &MAGIC);
        put(&mut packet, RTP_HEADER + 4, &stream.to_be_bytes());
        Tx {
            sock,
            dest,
            seq: 0,
            rtp_seq: (stream as u16).wrapping_mul(7919),
            ts: stream.wrapping_mul(104_729),
            ts_step: codec.ts_step(),
            offset,
            packet,
            probe,
        }
    }

    /// Stamps and sends the next packet; its send time (ns since `t0`).
    fn send(&mut self, t0: Instant) -> io::Result<u64> {
        put(&mut self.packet, 2, &self.rtp_seq.to_be_bytes());
        put(&mut self.packet, 4, &self.ts.to_be_bytes());
        put(&mut self.packet, RTP_HEADER + 8, &self.seq.to_be_bytes());
        let now = nanos_since(t0);
        put(&mut self.packet, RTP_HEADER + 12, &now.to_be_bytes());
        let r = self.sock.send_to(&self.packet, self.dest);
        self.seq = self.seq.wrapping_add(1);
        self.rtp_seq = self.rtp_seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.ts_step);
        r.map(|_| now)
    }
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn nanos_since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The measurement window, in ns since `t0`, by send time.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: u64,
    end: u64,
}

impl Window {
    fn contains(&self, ns: u64) -> bool {
        (self.start..self.end).contains(&ns)
    }
}

#[derive(Debug, Default)]
struct TxStats {
    sent: u64,
    probe_sent: u64,
    errors: u64,
}

#[derive(Debug, Default)]
struct RxStats {
    received: u64,
    reordered: u64,
    stray: u64,
    latency: Histogram,
    probe_received: u64,
    probe_latency: Histogram,
    /// Streams from here on are probes.
    first_probe: u32,
    /// Per stream: highest sequence seen + 1.
    next: Vec<u32>,
}

impl RxStats {
    fn on_packet(&mut self, pkt: &[u8], now: u64, window: Window) {
        let ours = pkt.get(RTP_HEADER..RTP_HEADER + 4) == Some(&MAGIC[..]);
        let (Some(stream), Some(seq), Some(sent)) = (
            be_u32(pkt, RTP_HEADER + 4),
            be_u32(pkt, RTP_HEADER + 8),
            be_u64(pkt, RTP_HEADER + 12),
        ) else {
            self.stray += 1;
            return;
        };
        let Some(next) = self.next.get_mut(stream as usize).filter(|_| ours) else {
            self.stray += 1;
            return;
        };
        let late = seq < *next;
        *next = (*next).max(seq.wrapping_add(1));
        if !window.contains(sent) {
            return;
        }
        if stream >= self.first_probe {
            self.probe_received += 1;
            self.probe_latency.record(now.saturating_sub(sent));
            return;
        }
        self.received += 1;
        if late {
            self.reordered += 1;
        }
        self.latency.record(now.saturating_sub(sent));
    }
}

/// Runs the workload once on `path`.
pub fn run(path: &Path, cfg: &RtpLoadConfig) -> BenchResult<RtpOutcome> {
    let t0 = Instant::now();
    let calls = cfg.calls;
    let relayed = calls * 2;
    let streams = relayed + cfg.probes * 2;
    let pid = match path {
        Path::Relay { pid, .. } => Some(*pid),
        Path::Direct => None,
    };
    let sample = |pid: Option<u32>| -> BenchResult<Option<ProcSample>> {
        Ok(match pid {
            Some(p) => Some(procstat::sample_tree(p)?),
            None => None,
        })
    };
    let mut out = RtpOutcome {
        calls,
        relay_before: sample(pid)?,
        ..RtpOutcome::default()
    };

    // Endpoint sockets: stream 2c is call c's caller, 2c+1 its callee.
    let mut socks = Vec::with_capacity(streams);
    for _ in 0..streams {
        let s = UdpSocket::bind(SocketAddr::new(cfg.bind_ip, 0))?;
        s.set_nonblocking(true)?;
        socks.push(s);
    }
    let addrs = socks
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<io::Result<Vec<_>>>()?;

    // Where each stream sends.
    let setup = Instant::now();
    let mut dests = Vec::with_capacity(streams);
    let run_id = format!(
        "{:x}",
        t0.elapsed().as_nanos() ^ u128::from(std::process::id())
    );
    let mut client = match path {
        Path::Relay { ng, .. } => Some(NgClient::new(*ng)?),
        Path::Direct => None,
    };
    for (c, pair) in addrs.chunks(2).enumerate() {
        if c >= calls {
            // A probe: straight at each other, whatever the path.
            dests.extend(pair.iter().rev().copied());
            continue;
        }
        let (Some(&caller), Some(&callee)) = (pair.first(), pair.get(1)) else {
            continue;
        };
        let codec = CODECS.get(c % CODECS.len()).unwrap_or(&ng::PCMA);
        match client.as_mut() {
            None => dests.extend([callee, caller]),
            Some(client) => {
                let call_id = format!("bench-{run_id}-{c}");
                let for_callee =
                    client.offer(&call_id, "caller", &ng::sdp_for(caller, codec, c as u64))?;
                let for_caller = client.answer(
                    &call_id,
                    "caller",
                    "callee",
                    &ng::sdp_for(callee, codec, c as u64),
                )?;
                let to_callee_side =
                    ng::media_address(&for_callee).ok_or("offer reply without an audio address")?;
                let to_caller_side = ng::media_address(&for_caller)
                    .ok_or("answer reply without an audio address")?;
                // The caller sends to what the answer names, the callee to the offer's.
                dests.extend([to_caller_side, to_callee_side]);
            }
        }
    }
    out.setup_s = if client.is_some() {
        setup.elapsed().as_secs_f64()
    } else {
        0.0
    };

    // Senders get dups of the sockets; receivers the originals (tokio).
    let period_ns = PERIOD.as_nanos() as u64;
    let mut tx_groups: Vec<Vec<Tx>> = (0..cfg.senders.max(1)).map(|_| Vec::new()).collect();
    let mut rx_groups: Vec<Vec<UdpSocket>> =
        (0..cfg.receivers.max(1)).map(|_| Vec::new()).collect();
    let (ntx, nrx) = (tx_groups.len(), rx_groups.len());
    for (i, (sock, dest)) in socks.into_iter().zip(dests).enumerate() {
        let codec = CODECS.get((i / 2) % CODECS.len()).unwrap_or(&ng::PCMA);
        // Spread over the period so the packets do not all fire at once.
        let offset = Duration::from_nanos(period_ns * i as u64 / streams.max(1) as u64);
        let tx = Tx::new(
            sock.try_clone()?,
            dest,
            i as u32,
            codec,
            offset,
            i >= relayed,
        );
        if let Some(g) = tx_groups.get_mut(i % ntx) {
            g.push(tx);
        }
        if let Some(g) = rx_groups.get_mut(i % nrx) {
            g.push(sock);
        }
    }

    // Starts a little ahead so every thread is up.
    let start = t0.elapsed() + Duration::from_millis(100);
    let window = Window {
        start: u64::try_from((start + cfg.warmup).as_nanos()).unwrap_or(u64::MAX),
        end: u64::try_from((start + cfg.warmup + cfg.measure).as_nanos()).unwrap_or(u64::MAX),
    };
    let stop_at = start + cfg.warmup + cfg.measure + PERIOD;

    let mut rx_handles = Vec::new();
    let mut rx_stops = Vec::new();
    for group in rx_groups {
        let (stop, stopped) = oneshot::channel::<()>();
        rx_stops.push(stop);
        let stats = RxStats {
            next: vec![0u32; streams],
            first_probe: u32::try_from(relayed).unwrap_or(u32::MAX),
            ..RxStats::default()
        };
        rx_handles.push(
            thread::Builder::new()
                .name("bench-rx".into())
                .spawn(move || receive(group, t0, window, stats, stopped))?,
        );
    }
    let mut tx_handles = Vec::new();
    for mut group in tx_groups {
        group.sort_by_key(|t| t.offset);
        tx_handles.push(
            thread::Builder::new()
                .name("bench-tx".into())
                .spawn(move || send(&mut group, t0, start, stop_at, window))?,
        );
    }

    // Samples at the window's edges.
    let me = std::process::id();
    let internal_stats = |c: &mut Option<NgClient>| -> Option<Buckets> {
        match (path, c.as_mut()) {
            (Path::Relay { internal: true, .. }, Some(c)) => internal_buckets(c).ok(),
            _ => None,
        }
    };
    sleep_until(t0, Duration::from_nanos(window.start));
    out.relay_start = sample(pid)?;
    let gen_start = procstat::sample_tree(me)?.cpu_s;
    let internal_start = internal_stats(&mut client);
    sleep_until(t0, Duration::from_nanos(window.end));
    out.relay_end = sample(pid)?;
    out.generator_cpu_s = procstat::sample_tree(me)?.cpu_s - gen_start;
    if let (Some(a), Some(b)) = (internal_start, internal_stats(&mut client)) {
        out.internal = Some(b.minus(&a));
    }
    out.window_s = cfg.measure.as_secs_f64();
    out.offered = (relayed as u128 * cfg.measure.as_nanos() / PERIOD.as_nanos()) as u64;

    for h in tx_handles {
        let s = h.join().map_err(|_| "sender thread panicked")?;
        out.sent += s.sent;
        out.probe_sent += s.probe_sent;
        out.send_errors += s.errors;
    }
    thread::sleep(cfg.drain);
    for s in rx_stops {
        // A receiver that already ended has nothing more to say.
        let _ = s.send(());
    }
    for h in rx_handles {
        let r = h.join().map_err(|_| "receiver thread panicked")??;
        out.received += r.received;
        out.reordered += r.reordered;
        out.stray += r.stray;
        out.latency.merge(&r.latency);
        out.probe_received += r.probe_received;
        out.probe_latency.merge(&r.probe_latency);
    }

    // Tear the calls down (the relay is ended by the caller anyway, but
    // delete is part of the protocol the benchmark exercises).
    if let Some(client) = client.as_mut() {
        for c in 0..calls {
            client.delete(&format!("bench-{run_id}-{c}"), "caller")?;
        }
    }
    Ok(out)
}

/// N answered calls that carry no media: what a relay holds per call
/// when nothing flows (the state of two legs and their sockets).
#[derive(Clone, Copy, Debug)]
pub struct QuietOutcome {
    pub calls: usize,
    pub before: ProcSample,
    pub after: ProcSample,
    /// Offer + answer per call, seconds for all of them.
    pub setup_s: f64,
}

impl QuietOutcome {
    /// Memory growth per call, KiB (RSS; PSS for a process tree).
    pub fn kib_per_call(&self) -> f64 {
        let grown = self.after.mem_kib() as f64 - self.before.mem_kib() as f64;
        grown / self.calls.max(1) as f64
    }
}

/// Sets up `calls` calls on the relay at `ng` (process `pid`), measures
/// its memory once they are all up, and deletes them again. The SDPs
/// name one socket of ours that nobody sends from, so no RTP flows.
pub fn quiet_calls(ng: SocketAddr, pid: u32, calls: usize) -> BenchResult<QuietOutcome> {
    let before = procstat::sample_tree(pid)?;
    let mut client = NgClient::new(ng)?;
    let endpoint = UdpSocket::bind("127.0.0.1:0")?;
    let addr = endpoint.local_addr()?;
    let run_id = format!("quiet-{:x}", std::process::id());
    let setup = Instant::now();
    for c in 0..calls {
        let call_id = format!("{run_id}-{c}");
        let codec = CODECS.get(c % CODECS.len()).unwrap_or(&ng::PCMA);
        let sdp = ng::sdp_for(addr, codec, c as u64);
        client.offer(&call_id, "caller", &sdp)?;
        client.answer(&call_id, "caller", "callee", &sdp)?;
    }
    let setup_s = setup.elapsed().as_secs_f64();
    // Let the relay settle (deferred work, allocator) before sampling.
    thread::sleep(Duration::from_secs(1));
    let after = procstat::sample_tree(pid)?;
    for c in 0..calls {
        client.delete(&format!("{run_id}-{c}"), "caller")?;
    }
    Ok(QuietOutcome {
        calls,
        before,
        after,
        setup_s,
    })
}

fn sleep_until(t0: Instant, at: Duration) {
    let now = t0.elapsed();
    if at > now {
        thread::sleep(at - now);
    }
}

fn send(txs: &mut [Tx], t0: Instant, start: Duration, stop: Duration, window: Window) -> TxStats {
    let mut stats = TxStats::default();
    let mut cycle = start;
    while cycle < stop {
        for tx in txs.iter_mut() {
            let due = cycle + tx.offset;
            let now = t0.elapsed();
            if due > now + SPIN {
                thread::sleep(due - now);
            }
            match tx.send(t0) {
                Ok(at) if window.contains(at) && tx.probe => stats.probe_sent += 1,
                Ok(at) if window.contains(at) => stats.sent += 1,
                Ok(_) => {}
                Err(_) => stats.errors += 1,
            }
        }
        cycle += PERIOD;
        // Behind by more than a period (an overloaded machine): skip ahead
        // rather than burst, as a real phone would not catch up either.
        let now = t0.elapsed();
        while cycle + PERIOD < now {
            cycle += PERIOD;
        }
    }
    stats
}

fn receive(
    socks: Vec<UdpSocket>,
    t0: Instant,
    window: Window,
    stats: RxStats,
    stopped: oneshot::Receiver<()>,
) -> BenchResult<RxStats> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let stats = Rc::new(RefCell::new(stats));
    let t0 = Arc::new(t0);
    let result: BenchResult<()> = local.block_on(&rt, async {
        for s in socks {
            let sock = tokio::net::UdpSocket::from_std(s)?;
            let stats = Rc::clone(&stats);
            let t0 = Arc::clone(&t0);
            tokio::task::spawn_local(async move {
                let mut buf = vec![0u8; 2048];
                loop {
                    let Ok(n) = sock.recv(&mut buf).await else {
                        // An ICMP error surfacing on the socket: the next
                        // datagram is unaffected; let the others run first.
                        tokio::task::yield_now().await;
                        continue;
                    };
                    let now = nanos_since(*t0);
                    if let Some(pkt) = buf.get(..n) {
                        stats.borrow_mut().on_packet(pkt, now, window);
                    }
                }
            });
        }
        // Ends when told, or when the sender side is gone.
        let _ = stopped.await;
        Ok(())
    });
    drop(local);
    result?;
    let s = stats.replace(RxStats::default());
    Ok(s)
}

/// Our relay's `statistics` latency histogram.
fn internal_buckets(c: &mut NgClient) -> BenchResult<Buckets> {
    let r = c.request(&super::bencode::Value::dict([(
        "command",
        super::bencode::Value::str("statistics"),
    )]))?;
    let lat = r.get("latency").ok_or("no latency in statistics")?;
    let list = |k: &str| -> Vec<u64> {
        match lat.get(k) {
            Some(super::bencode::Value::List(l)) => l
                .iter()
                .filter_map(|v| v.as_int().and_then(|i| u64::try_from(i).ok()))
                .collect(),
            _ => Vec::new(),
        }
    };
    Ok(Buckets {
        bounds_ns: list("bounds-ns"),
        cumulative: list("cumulative"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_path_delivers_everything_in_the_window() {
        let cfg = RtpLoadConfig {
            calls: 3,
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(400),
            drain: Duration::from_millis(100),
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            senders: 1,
            receivers: 1,
            probes: 1,
        };
        let o = run(&Path::Direct, &cfg).unwrap();
        assert!((35..=45).contains(&o.probe_sent), "{o:?}");
        assert_eq!(o.probe_received, o.probe_sent);
        assert_eq!(o.probe_latency.count(), o.probe_received);
        // 6 streams × 20 packets in 400 ms, give or take the edges.
        assert!((110..=130).contains(&o.sent), "{o:?}");
        assert_eq!(o.received, o.sent, "{o:?}");
        assert_eq!(o.send_errors, 0);
        assert!(o.latency.quantile_ns(0.5) < 20_000_000, "{o:?}");
    }

    #[test]
    fn buckets_quantiles() {
        let b = Buckets {
            bounds_ns: vec![5_000, 10_000, 25_000],
            cumulative: vec![10, 99, 100, 100],
        };
        assert_eq!(b.quantile_bound_ns(0.5), Some(10_000));
        assert_eq!(b.quantile_bound_ns(0.995), Some(25_000));
        let d = b.minus(&Buckets {
            bounds_ns: vec![],
            cumulative: vec![10, 10, 10, 10],
        });
        assert_eq!(d.cumulative, vec![0, 89, 90, 90]);
    }
}
