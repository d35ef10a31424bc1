//! The driver of the relay: a UDP port pool and N event loops, one OS
//! thread each, over `epoll` (see [`sys`]).
//!
//! ```text
//!  call layer (any thread, async)              loop k (own OS thread)
//!  MediaDriver::open_leg(group, cfg) ──bind──▶ ports from the pool
//!        └── Control::Open + eventfd ────────▶ Relay::add_leg + epoll_ctl(ADD)
//!                                              epoll_wait ─▶ ready sockets:
//!                                                recvfrom ─▶ Relay::handle_rtp
//!                                                ─▶ sendto on the peer leg's socket
//! ```
//!
//! Every leg of a call group lives on one loop, so forwarding is a direct
//! `sendto` on the peer's socket: no channel hop, no lock, no task and no
//! allocation per packet. A loop has one receive buffer for all its
//! sockets and one level-triggered epoll set: a busy loop collects the
//! packets of many calls in one `epoll_wait` and spends exactly one
//! `recvfrom` and one `sendto` on each. A leg costs its relay state and
//! its sockets, nothing per socket in user space besides. Control (open,
//! bridge, update, close, counters) reaches a loop by message plus an
//! eventfd write; the reply comes back on a oneshot channel the caller
//! awaits. The port pool is the only shared structure, behind a mutex
//! touched on the control path only.
//!
//! Each loop also owns the relay's timers: its `epoll_wait` times out at
//! `Relay::poll_timeout`, then it sends what `Relay::poll_rtcp` produces
//! (the relay's own SR/RR per leg) from the leg's RTCP socket, or its RTP
//! socket with rtcp-mux, and what `Relay::poll_transmit` produces (the
//! digits of `send_dtmf`, the frames of `play`) from the leg's RTP socket.
//! RTCP from the endpoints is terminated by the relay. The timeout is
//! computed afresh every iteration, so a packet that adds a deadline (the
//! first packet of a received key press) is accounted for at once.
//!
//! ```text
//!  Relay::poll_event ─▶ MediaEvent (LegKey, not the reused LegId)
//!      ─▶ bounded channel, try_send (a full channel drops and counts:
//!         the loop never waits for the call layer) ─▶ MediaDriver::take_events
//!  recvfrom ─ Instant ─▶ handle_rtp ─▶ sendto returned ─▶ LatencyHistogram
//!      (one shard per loop, relaxed atomics) ─▶ MediaDriver::latency
//! ```

mod sys;

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use self::sys::{Epoll, EventFd, Events};
use crate::format::LegFormat;
use crate::latency::{LatencyHistogram, LatencySnapshot};
use crate::playback::{self, Wav};
use crate::relay::{
    Action, DropReason, LegConfig, LegCounters, LegId, Relay, RelayConfig, RelayError, RelayEvent,
    RtcpOut, SocketKind,
};

/// Receive buffer of a loop. RTP on a 1500-byte MTU fits with room to
/// spare; a datagram that fills it may have been truncated and is dropped.
const RECV_BUF: usize = 4096;

/// Ready sockets taken from one `epoll_wait`.
const EPOLL_BATCH: usize = 256;

/// Events waiting for the call layer ([`MediaDriver::take_events`]) before
/// new ones are dropped (and counted): a few seconds of key presses on
/// every call of a busy switch.
const EVENT_CHANNEL: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Address the leg sockets bind to (also what `open_leg` returns for the SDP,
    /// unless it is unspecified, in which case the call layer advertises its own).
    pub bind_ip: IpAddr,
    /// RTP ports are the even ports of `port_min..=port_max` whose RTCP port
    /// (RTP + 1) is also in range.
    pub port_min: u16,
    pub port_max: u16,
    /// Event loops (OS threads); 0 means one per available core.
    pub loops: usize,
    pub relay: RelayConfig,
}

impl DriverConfig {
    pub fn new(bind_ip: IpAddr, port_min: u16, port_max: u16) -> DriverConfig {
        DriverConfig {
            bind_ip,
            port_min,
            port_max,
            loops: 0,
            relay: RelayConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("port range {min}-{max} holds no RTP/RTCP pair")]
    PortRange { min: u16, max: u16 },
    #[error("no free RTP port in the pool")]
    PortsExhausted,
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error("the media loop has stopped")]
    LoopGone,
    #[error("unknown or closed leg")]
    UnknownLeg,
    #[error("legs are on different loops (open them with the same call group)")]
    DifferentLoops,
    #[error(transparent)]
    Relay(#[from] RelayError),
}

/// Even RTP ports, each reserving RTP + 1 for RTCP (also with rtcp-mux, so a
/// leg can be switched to non-mux without moving). Freed ports go to the
/// back of the queue so a port is reused as late as possible: stray packets
/// of an ended call must not land in a new one.
#[derive(Debug)]
pub struct PortPool {
    first: u16,
    free: VecDeque<u16>,
    in_use: Vec<bool>,
}

impl PortPool {
    pub fn new(min: u16, max: u16) -> Result<PortPool, DriverError> {
        let first = if min & 1 == 0 {
            Some(min)
        } else {
            min.checked_add(1)
        };
        let ports: VecDeque<u16> = match first {
            // p + 1 <= max, i.e. p < max.
            Some(first) if first < max => (first..max).step_by(2).collect(),
            _ => VecDeque::new(),
        };
        match (first, ports.is_empty()) {
            (Some(first), false) => Ok(PortPool {
                first,
                in_use: vec![false; ports.len()],
                free: ports,
            }),
            _ => Err(DriverError::PortRange { min, max }),
        }
    }

    /// The next free RTP port (RTCP is port + 1).
    pub fn allocate(&mut self) -> Option<u16> {
        let port = self.free.pop_front()?;
        if let Some(used) = self.slot(port) {
            *used = true;
        }
        Some(port)
    }

    /// Returns a port; unknown or already free ports are ignored (never a double free).
    pub fn release(&mut self, port: u16) {
        if let Some(used) = self.slot(port) {
            if *used {
                *used = false;
                self.free.push_back(port);
            }
        }
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.in_use.len()
    }

    fn slot(&mut self, port: u16) -> Option<&mut bool> {
        let offset = port.checked_sub(self.first)?;
        if offset & 1 != 0 {
            return None;
        }
        self.in_use.get_mut(usize::from(offset / 2))
    }
}

/// A leg opened by [`MediaDriver::open_leg`]. Not `Clone`: whoever holds it
/// owns the ports and must give it back with [`MediaDriver::close_leg`].
#[derive(Debug, PartialEq, Eq)]
pub struct LegHandle {
    loop_index: usize,
    key: Key,
    port: u16,
    local: SocketAddr,
    ssrc: u32,
}

impl LegHandle {
    /// The local RTP address (for the SDP); RTCP is on port + 1 unless muxed.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The SSRC the relay sends to this leg's endpoint (`rssrc`).
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn id(&self) -> LegId {
        self.key.id
    }

    pub fn loop_index(&self) -> usize {
        self.loop_index
    }

    /// What [`MediaEvent`]s about this leg carry.
    pub fn key(&self) -> LegKey {
        LegKey {
            loop_index: self.loop_index,
            id: self.key.id,
            serial: self.key.serial,
        }
    }
}

/// A leg's identity for the driver's lifetime, to match a [`MediaEvent`]
/// to its [`LegHandle`] ([`LegHandle::key`]): unlike the relay's
/// [`LegId`], never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegKey {
    loop_index: usize,
    id: LegId,
    serial: u64,
}

impl LegKey {
    pub fn loop_index(&self) -> usize {
        self.loop_index
    }

    /// The relay's id of the leg (reused after the leg is closed).
    pub fn id(&self) -> LegId {
        self.id
    }
}

/// What the media loops tell the call layer ([`MediaDriver::take_events`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// A key press received on the leg (RFC 4733), once per press; also
    /// when the peer leg negotiated no telephone-event (relay it with SIP
    /// INFO then). See [`RelayEvent::Dtmf`].
    Dtmf {
        leg: LegKey,
        digit: char,
        duration_ms: u32,
    },
    /// A prompt of [`MediaDriver::play`] (not looped) has been played to
    /// its end.
    PlaybackDone { leg: LegKey },
}

impl MediaEvent {
    pub fn leg(&self) -> LegKey {
        match *self {
            MediaEvent::Dtmf { leg, .. } | MediaEvent::PlaybackDone { leg } => leg,
        }
    }
}

/// A leg inside a loop: its relay id plus a serial, because relay ids are
/// reused and a late message for a closed leg must not reach its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    id: LegId,
    serial: u64,
}

type Reply<T> = oneshot::Sender<Result<T, DriverError>>;

enum Control {
    Open {
        cfg: LegConfig,
        rtp: StdUdpSocket,
        rtcp: Option<StdUdpSocket>,
        reply: Reply<(Key, u32)>,
    },
    Bridge {
        a: Key,
        b: Key,
        reply: Reply<()>,
    },
    Update {
        leg: Key,
        remote: Option<SocketAddr>,
        reply: Reply<()>,
    },
    Close {
        leg: Key,
        reply: Reply<()>,
    },
    Counters {
        leg: Key,
        reply: Reply<LegCounters>,
    },
    Codec {
        leg: Key,
        codec: Option<String>,
        reply: Reply<()>,
    },
    Format {
        leg: Key,
        format: Option<LegFormat>,
        reply: Reply<()>,
    },
    Dtmf {
        leg: Key,
        digits: String,
        duration_ms: u32,
        reply: Reply<()>,
    },
    PlayRate {
        leg: Key,
        reply: Reply<u32>,
    },
    Play {
        leg: Key,
        wav: Wav,
        looped: bool,
        reply: Reply<()>,
    },
    StopPlay {
        leg: Key,
        reply: Reply<()>,
    },
    DtmfClock {
        leg: Key,
        rate: Option<u32>,
        reply: Reply<()>,
    },
}

/// What a loop shares with the driver: where its events go, and its shard
/// of the latency histogram.
struct LoopOutputs {
    index: usize,
    events: mpsc::Sender<MediaEvent>,
    events_dropped: Arc<AtomicU64>,
    latency: Arc<LatencyHistogram>,
}

struct LoopHandle {
    /// `None` once the loop has been told to stop.
    tx: Option<std_mpsc::Sender<Control>>,
    waker: Arc<EventFd>,
    thread: Option<thread::JoinHandle<()>>,
}

impl LoopHandle {
    fn send(&self, message: Control) -> Result<(), DriverError> {
        let tx = self.tx.as_ref().ok_or(DriverError::LoopGone)?;
        tx.send(message).map_err(|_| DriverError::LoopGone)?;
        self.waker.wake();
        Ok(())
    }

    /// Closes the queue and wakes the loop, which then ends (closing its
    /// sockets) once it has handled what was queued.
    fn stop(&mut self) {
        if self.tx.take().is_some() {
            self.waker.wake();
        }
    }
}

impl Drop for LoopHandle {
    fn drop(&mut self) {
        // Not joined: a driver dropped on an async task must not block it.
        self.stop();
    }
}

/// The relay's event loops and port pool.
pub struct MediaDriver {
    loops: Vec<LoopHandle>,
    pool: Mutex<PortPool>,
    bind_ip: IpAddr,
    /// Until the call layer takes it.
    events: Mutex<Option<mpsc::Receiver<MediaEvent>>>,
    events_dropped: Arc<AtomicU64>,
    latency: Arc<LatencyHistogram>,
}

impl MediaDriver {
    /// Starts the loops (one OS thread each). Needs no ambient runtime.
    pub fn start(cfg: DriverConfig) -> Result<MediaDriver, DriverError> {
        let pool = PortPool::new(cfg.port_min, cfg.port_max)?;
        let n = if cfg.loops == 0 {
            thread::available_parallelism().map_or(1, NonZeroUsize::get)
        } else {
            cfg.loops
        };
        let mut loops = Vec::with_capacity(n);
        let (events, events_rx) = mpsc::channel(EVENT_CHANNEL);
        let events_dropped = Arc::new(AtomicU64::new(0));
        let latency = Arc::new(LatencyHistogram::new(n));
        for i in 0..n {
            let epoll = Epoll::new()?;
            let waker = Arc::new(EventFd::new()?);
            epoll.add(waker.raw(), WAKE_TOKEN)?;
            let (tx, rx) = std_mpsc::channel();
            let relay_cfg = cfg.relay;
            let outputs = LoopOutputs {
                index: i,
                events: events.clone(),
                events_dropped: Arc::clone(&events_dropped),
                latency: Arc::clone(&latency),
            };
            let loop_waker = Arc::clone(&waker);
            // On an early return the loops already started are stopped by
            // their handles' drop.
            let thread = thread::Builder::new()
                .name(format!("media-loop-{i}"))
                .spawn(move || {
                    run_loop(rx, loop_waker, epoll, relay_cfg, outputs);
                })?;
            loops.push(LoopHandle {
                tx: Some(tx),
                waker,
                thread: Some(thread),
            });
        }
        Ok(MediaDriver {
            loops,
            pool: Mutex::new(pool),
            bind_ip: cfg.bind_ip,
            events: Mutex::new(Some(events_rx)),
            events_dropped,
            latency,
        })
    }

    /// The receiver of every loop's [`MediaEvent`]s; the first call takes
    /// it, later ones get None. Until it is taken (and whenever it lags
    /// 4096 events behind) new events are dropped and counted
    /// in [`MediaDriver::events_dropped`]: the loops never wait.
    pub fn take_events(&self) -> Option<mpsc::Receiver<MediaEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Events dropped because the channel was full, taken by nobody or closed.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped.load(Ordering::Relaxed)
    }

    /// The relay-added latency of every forwarded packet so far (receive
    /// to the forwarded copy's `send_to` returning), all loops together,
    /// for the `rtp_relay_latency_seconds` histogram.
    pub fn latency(&self) -> LatencySnapshot {
        self.latency.snapshot()
    }

    pub fn loop_count(&self) -> usize {
        self.loops.len()
    }

    /// Free RTP ports (pairs) in the pool.
    pub fn ports_available(&self) -> usize {
        self.pool().available()
    }

    pub fn ports_capacity(&self) -> usize {
        self.pool().capacity()
    }

    /// Opens a leg on the loop of `call_group` (legs to be bridged must share
    /// it). `cfg.local` is ignored: the port comes from the pool. Returns the
    /// local RTP address for the SDP.
    pub async fn open_leg(
        &self,
        call_group: u64,
        mut cfg: LegConfig,
    ) -> Result<(LegHandle, SocketAddr), DriverError> {
        let (port, rtp, rtcp) = self.bind_ports(cfg.rtcp_mux)?;
        let local = match rtp.local_addr() {
            Ok(a) => a,
            Err(e) => {
                self.pool().release(port);
                return Err(e.into());
            }
        };
        cfg.local = local;
        let loop_index = self.loop_for(call_group);
        let opened = self
            .request(loop_index, |reply| Control::Open {
                cfg,
                rtp,
                rtcp,
                reply,
            })
            .await;
        match opened {
            Ok((key, ssrc)) => Ok((
                LegHandle {
                    loop_index,
                    key,
                    port,
                    local,
                    ssrc,
                },
                local,
            )),
            Err(e) => {
                // The sockets were dropped with the message or by the loop.
                self.pool().release(port);
                Err(e)
            }
        }
    }

    /// Bridges two legs of the same call group.
    pub async fn bridge(&self, a: &LegHandle, b: &LegHandle) -> Result<(), DriverError> {
        if a.loop_index != b.loop_index {
            return Err(DriverError::DifferentLoops);
        }
        let loop_index = a.loop_index;
        let (a, b) = (a.key, b.key);
        self.request(loop_index, |reply| Control::Bridge { a, b, reply })
            .await
    }

    /// A new offer/answer for the leg: new SDP address, new latch window.
    pub async fn update_leg(
        &self,
        leg: &LegHandle,
        remote: Option<SocketAddr>,
    ) -> Result<(), DriverError> {
        let key = leg.key;
        self.request(leg.loop_index, |reply| Control::Update {
            leg: key,
            remote,
            reply,
        })
        .await
    }

    /// Closes the leg: its sockets are closed before its ports return to the pool.
    pub async fn close_leg(&self, leg: LegHandle) -> Result<(), DriverError> {
        let key = leg.key;
        let closed = self
            .request(leg.loop_index, |reply| Control::Close { leg: key, reply })
            .await;
        // The handle is the only owner of the port: whatever the loop said
        // (closed, or gone with its sockets), the port is free now.
        self.pool().release(leg.port);
        closed
    }

    /// Names the leg's negotiated codec (SDP encoding name, e.g. "AMR") for
    /// the MOS estimate in [`LegCounters::quality`]; the default is G.711.
    pub async fn set_codec(
        &self,
        leg: &LegHandle,
        codec: Option<String>,
    ) -> Result<(), DriverError> {
        let key = leg.key;
        self.request(leg.loop_index, |reply| Control::Codec {
            leg: key,
            codec,
            reply,
        })
        .await
    }

    /// What the leg's endpoint sends and expects (see
    /// [`Relay::set_format`]): between two legs with known, different
    /// formats the relay remaps payload types, converts AMR payload modes
    /// or transcodes.
    pub async fn set_format(
        &self,
        leg: &LegHandle,
        format: Option<LegFormat>,
    ) -> Result<(), DriverError> {
        let key = leg.key;
        self.request(leg.loop_index, |reply| Control::Format {
            leg: key,
            format,
            reply,
        })
        .await
    }

    /// Sends `digits` into the leg as RFC 4733 events of `duration_ms`
    /// each (see [`Relay::send_dtmf`]); `Err(Relay(NoTelephoneEvent))`
    /// when the leg's format has no telephone-event (use SIP INFO then).
    pub async fn send_dtmf(
        &self,
        leg: &LegHandle,
        digits: &str,
        duration_ms: u32,
    ) -> Result<(), DriverError> {
        let key = leg.key;
        let digits = digits.to_owned();
        self.request(leg.loop_index, |reply| Control::Dtmf {
            leg: key,
            digits,
            duration_ms,
            reply,
        })
        .await
    }

    /// Plays `wav` into the leg in its codec (see [`Relay::play`]); what
    /// the peer sends the leg meanwhile is held back. A prompt not looped
    /// ends with [`MediaEvent::PlaybackDone`]. The WAV is resampled to the
    /// codec's rate here, off the media loop.
    pub async fn play(&self, leg: &LegHandle, wav: Wav, looped: bool) -> Result<(), DriverError> {
        let key = leg.key;
        let rate = self
            .request(leg.loop_index, |reply| Control::PlayRate {
                leg: key,
                reply,
            })
            .await?;
        let wav = if wav.sample_rate == rate {
            wav
        } else {
            let resample = move || Wav {
                samples: playback::resample(&wav.samples, wav.sample_rate, rate),
                sample_rate: rate,
            };
            match tokio::runtime::Handle::try_current() {
                // Seconds of audio through a filter: not on a runtime worker.
                Ok(rt) => rt
                    .spawn_blocking(resample)
                    .await
                    .map_err(|e| DriverError::Io(io::Error::other(e)))?,
                Err(_) => resample(),
            }
        };
        self.request(leg.loop_index, |reply| Control::Play {
            leg: key,
            wav,
            looped,
            reply,
        })
        .await
    }

    /// Stops the leg's prompt (no [`MediaEvent::PlaybackDone`]); the peer's
    /// media flows to the leg again.
    pub async fn stop_play(&self, leg: &LegHandle) -> Result<(), DriverError> {
        let key = leg.key;
        self.request(leg.loop_index, |reply| Control::StopPlay {
            leg: key,
            reply,
        })
        .await
    }

    /// The leg's telephone-event clock rate when its SDP gives one other
    /// than the audio codec's (see [`Relay::set_dtmf_clock_rate`]).
    pub async fn set_dtmf_clock_rate(
        &self,
        leg: &LegHandle,
        rate: Option<u32>,
    ) -> Result<(), DriverError> {
        let key = leg.key;
        self.request(leg.loop_index, |reply| Control::DtmfClock {
            leg: key,
            rate,
            reply,
        })
        .await
    }

    /// The leg's counters and quality snapshot (API.md `stats`).
    pub async fn counters(&self, leg: &LegHandle) -> Result<LegCounters, DriverError> {
        let key = leg.key;
        self.request(leg.loop_index, |reply| Control::Counters {
            leg: key,
            reply,
        })
        .await
    }

    /// The counters of the leg `key` names, for readers that do not own the
    /// leg (a stats refresher): a closed leg answers `UnknownLeg`, never a
    /// successor's figures, because keys are not reused.
    pub async fn counters_of(&self, key: LegKey) -> Result<LegCounters, DriverError> {
        let leg = Key {
            id: key.id,
            serial: key.serial,
        };
        self.request(key.loop_index, |reply| Control::Counters { leg, reply })
            .await
    }

    /// Stops the loops and waits for their threads (their sockets close).
    /// Blocking, briefly: call it at process shutdown.
    pub fn shutdown(mut self) {
        for lp in &mut self.loops {
            lp.stop();
        }
        for lp in &mut self.loops {
            if lp.thread.take().is_some_and(|t| t.join().is_err()) {
                tracing::error!("media loop thread panicked");
            }
        }
    }

    fn pool(&self) -> MutexGuard<'_, PortPool> {
        // The pool stays consistent even if a holder panicked: every
        // operation is a single push or pop.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn loop_for(&self, call_group: u64) -> usize {
        let n = self.loops.len().max(1) as u64;
        usize::try_from(call_group % n).unwrap_or(0)
    }

    /// The next pool port whose RTP (and RTCP) port binds; ports held by
    /// another process are skipped and go back to the pool.
    fn bind_ports(
        &self,
        rtcp_mux: bool,
    ) -> Result<(u16, StdUdpSocket, Option<StdUdpSocket>), DriverError> {
        let mut pool = self.pool();
        let mut skipped = Vec::new();
        let mut last_error = None;
        let bound = loop {
            let Some(port) = pool.allocate() else {
                break Err(last_error.map_or(DriverError::PortsExhausted, DriverError::Io));
            };
            match bind_pair(self.bind_ip, port, rtcp_mux) {
                Ok((rtp, rtcp)) => break Ok((port, rtp, rtcp)),
                Err(e) => {
                    tracing::debug!(port, error = %e, "media port busy, skipped");
                    skipped.push(port);
                    last_error = Some(e);
                }
            }
        };
        for port in skipped {
            pool.release(port);
        }
        bound
    }

    async fn request<T>(
        &self,
        loop_index: usize,
        message: impl FnOnce(Reply<T>) -> Control,
    ) -> Result<T, DriverError> {
        let lp = self.loops.get(loop_index).ok_or(DriverError::LoopGone)?;
        let (reply, rx) = oneshot::channel();
        lp.send(message(reply))?;
        rx.await.map_err(|_| DriverError::LoopGone)?
    }
}

fn bind_pair(
    ip: IpAddr,
    port: u16,
    rtcp_mux: bool,
) -> io::Result<(StdUdpSocket, Option<StdUdpSocket>)> {
    let rtp = StdUdpSocket::bind(SocketAddr::new(ip, port))?;
    let rtcp = if rtcp_mux {
        None
    } else {
        let rtcp_port = port
            .checked_add(1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no RTCP port"))?;
        Some(StdUdpSocket::bind(SocketAddr::new(ip, rtcp_port))?)
    };
    Ok((rtp, rtcp))
}

/// One loop's sockets of one leg.
struct LoopLeg {
    serial: u64,
    rtp: StdUdpSocket,
    rtcp: Option<StdUdpSocket>,
}

impl LoopLeg {
    fn socket(&self, kind: SocketKind) -> Option<&StdUdpSocket> {
        match kind {
            SocketKind::Rtp => Some(&self.rtp),
            SocketKind::Rtcp => self.rtcp.as_ref(),
        }
    }
}

/// The `epoll` token of the loop's own eventfd; sockets' tokens are never 0
/// (see [`socket_token`]).
const WAKE_TOKEN: u64 = 0;

/// A socket's `epoll` token: the leg's slot, which socket, and the low
/// bits of the leg's serial, so a readiness reported for a slot that has
/// since been reused is recognised and ignored.
fn socket_token(key: Key, kind: SocketKind) -> u64 {
    let kind_bit = match kind {
        SocketKind::Rtp => 0,
        SocketKind::Rtcp => 1,
    };
    ((key.serial & 0xffff_ffff) << 32) | (u64::from(key.id.0) << 1) | kind_bit
}

fn token_socket(token: u64) -> (LegId, u32, SocketKind) {
    let kind = if token & 1 == 0 {
        SocketKind::Rtp
    } else {
        SocketKind::Rtcp
    };
    let id = LegId(((token & 0xffff_ffff) >> 1) as u32);
    (id, (token >> 32) as u32, kind)
}

/// Everything a loop owns; only its own thread ever touches it.
struct LoopState {
    relay: Relay,
    legs: Vec<Option<LoopLeg>>,
    /// Starts at 1 so that no socket's token is [`WAKE_TOKEN`].
    next_serial: u64,
    epoll: Epoll,
    outputs: LoopOutputs,
}

impl LoopState {
    fn leg(&self, key: Key) -> Option<&LoopLeg> {
        self.legs
            .get(key.id.0 as usize)
            .and_then(Option::as_ref)
            .filter(|l| l.serial == key.serial)
    }

    fn socket(&self, leg: LegId, kind: SocketKind) -> Option<&StdUdpSocket> {
        self.legs
            .get(leg.0 as usize)
            .and_then(Option::as_ref)
            .and_then(|l| l.socket(kind))
    }
}

/// A loop: wait for sockets, the control eventfd or the relay's next
/// deadline; read each ready socket once; then timers; then control.
fn run_loop(
    rx: std_mpsc::Receiver<Control>,
    waker: Arc<EventFd>,
    epoll: Epoll,
    cfg: RelayConfig,
    outputs: LoopOutputs,
) {
    let mut st = LoopState {
        relay: Relay::new(cfg),
        legs: Vec::new(),
        next_serial: 1,
        epoll,
        outputs,
    };
    // The one receive buffer of the loop: every socket is read into it and
    // the packet is forwarded before the next read.
    let mut buf = vec![0u8; RECV_BUF];
    let mut events = Events::with_capacity(EPOLL_BATCH);
    loop {
        // This very computation takes any new deadline into account.
        st.relay.take_timeout_changed();
        let timeout = st
            .relay
            .poll_timeout()
            .map(|at| at.saturating_duration_since(Instant::now()));
        if let Err(e) = st.epoll.wait(&mut events, timeout) {
            // Not expected (EBADF/EINVAL would be a bug); do not spin.
            tracing::error!(error = %e, "media loop epoll_wait failed");
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        let mut control_pending = false;
        for token in events.tokens() {
            if token == WAKE_TOKEN {
                control_pending = true;
            } else {
                read_socket(&mut st, token, &mut buf);
            }
        }
        if st
            .relay
            .poll_timeout()
            .is_some_and(|at| at <= Instant::now())
        {
            send_rtcp(&mut st);
            send_generated(&mut st);
        }
        if control_pending {
            // Drained before reading the queue: a message sent after the
            // last `try_recv` finds the eventfd set again.
            waker.drain();
            loop {
                match rx.try_recv() {
                    Ok(message) => control(&mut st, message),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    // The driver is gone: dropping the state closes the sockets.
                    Err(std_mpsc::TryRecvError::Disconnected) => return,
                }
            }
        }
    }
}

fn control(st: &mut LoopState, message: Control) {
    match message {
        Control::Open {
            cfg,
            rtp,
            rtcp,
            reply,
        } => {
            let _ = reply.send(open(st, cfg, rtp, rtcp));
        }
        Control::Bridge { a, b, reply } => {
            let result = if st.leg(a).is_some() && st.leg(b).is_some() {
                st.relay.bridge(a.id, b.id).map_err(DriverError::from)
            } else {
                Err(DriverError::UnknownLeg)
            };
            let _ = reply.send(result);
        }
        Control::Update { leg, remote, reply } => {
            let result = with_leg(st, leg, |relay, id| {
                relay.update_leg(id, remote, Instant::now())
            });
            let _ = reply.send(result);
        }
        Control::Counters { leg, reply } => {
            let result = st
                .leg(leg)
                .and_then(|_| st.relay.leg_counters(leg.id))
                .ok_or(DriverError::UnknownLeg);
            let _ = reply.send(result);
        }
        Control::Codec { leg, codec, reply } => {
            let _ = reply.send(with_leg(st, leg, |relay, id| relay.set_codec(id, codec)));
        }
        Control::Format { leg, format, reply } => {
            let _ = reply.send(with_leg(st, leg, |relay, id| relay.set_format(id, format)));
        }
        Control::Dtmf {
            leg,
            digits,
            duration_ms,
            reply,
        } => {
            let result = with_leg(st, leg, |relay, id| {
                relay.send_dtmf(id, &digits, duration_ms, Instant::now())
            });
            let _ = reply.send(result);
        }
        Control::PlayRate { leg, reply } => {
            let _ = reply.send(with_leg(st, leg, |relay, id| relay.play_rate(id)));
        }
        Control::Play {
            leg,
            wav,
            looped,
            reply,
        } => {
            let result = with_leg(st, leg, |relay, id| {
                relay.play(id, wav, looped, Instant::now())
            });
            // Empty audio ends at once.
            drain_events(st);
            let _ = reply.send(result);
        }
        Control::StopPlay { leg, reply } => {
            let _ = reply.send(with_leg(st, leg, |relay, id| relay.stop_play(id)));
        }
        Control::DtmfClock { leg, rate, reply } => {
            let result = with_leg(st, leg, |relay, id| relay.set_dtmf_clock_rate(id, rate));
            let _ = reply.send(result);
        }
        Control::Close { leg, reply } => {
            if st.leg(leg).is_none() {
                let _ = reply.send(Err(DriverError::UnknownLeg));
                return;
            }
            // Tell the endpoint this SSRC is gone while the socket is
            // still open (best effort: RTCP is not retried).
            if let Some(bye) = st.relay.rtcp_bye(leg.id, None) {
                send_rtcp_packet(st, bye);
            }
            let _ = st.relay.remove_leg(leg.id);
            // Closing the sockets takes them out of the epoll set, so the
            // ports are really free when the caller reuses them.
            drop(st.legs.get_mut(leg.id.0 as usize).and_then(Option::take));
            let _ = reply.send(Ok(()));
        }
    }
}

/// Runs `f` on the relay for `leg` if it is still the leg the caller
/// opened (not a closed one's successor).
fn with_leg<T>(
    st: &mut LoopState,
    leg: Key,
    f: impl FnOnce(&mut Relay, LegId) -> Result<T, RelayError>,
) -> Result<T, DriverError> {
    if st.leg(leg).is_none() {
        return Err(DriverError::UnknownLeg);
    }
    f(&mut st.relay, leg.id).map_err(DriverError::from)
}

fn open(
    st: &mut LoopState,
    cfg: LegConfig,
    rtp: StdUdpSocket,
    rtcp: Option<StdUdpSocket>,
) -> Result<(Key, u32), DriverError> {
    rtp.set_nonblocking(true)?;
    if let Some(rtcp) = &rtcp {
        rtcp.set_nonblocking(true)?;
    }
    let id = st.relay.add_leg(cfg, Instant::now());
    let key = Key {
        id,
        serial: st.next_serial,
    };
    st.next_serial += 1;
    let watched = st
        .epoll
        .add(rtp.as_raw_fd(), socket_token(key, SocketKind::Rtp))
        .and_then(|()| match &rtcp {
            Some(s) => st
                .epoll
                .add(s.as_raw_fd(), socket_token(key, SocketKind::Rtcp)),
            None => Ok(()),
        });
    if let Err(e) = watched {
        // The sockets close when dropped here, leaving the set with them.
        let _ = st.relay.remove_leg(id);
        return Err(e.into());
    }
    let ssrc = st.relay.leg_ssrc(id).unwrap_or(0);
    let index = id.0 as usize;
    if st.legs.len() <= index {
        st.legs.resize_with(index + 1, || None);
    }
    if let Some(slot) = st.legs.get_mut(index) {
        *slot = Some(LoopLeg {
            serial: key.serial,
            rtp,
            rtcp,
        });
    }
    Ok((key, ssrc))
}

/// Sends every RTCP report due now (the relay's own SR/RR per leg).
fn send_rtcp(st: &mut LoopState) {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    while let Some(report) = st.relay.poll_rtcp(now, wall) {
        send_rtcp_packet(st, report);
    }
}

/// Sends every packet the relay generated that is due now (digits,
/// prompt frames) from the leg's RTP socket, without waiting: a packet
/// that finds the socket busy is dropped and counted (the next follows a
/// frame later); then hands over the events the deadlines produced.
fn send_generated(st: &mut LoopState) {
    let now = Instant::now();
    while let Some(t) = st.relay.poll_transmit(now) {
        let sent = st
            .socket(t.leg, t.socket)
            .is_some_and(|s| s.send_to(st.relay.output(), t.to).is_ok());
        if !sent {
            st.relay.count_drop(t.leg, DropReason::SendFailed);
        }
    }
    drain_events(st);
}

/// Hands the relay's events to the call layer, never waiting: a full or
/// closed channel drops them (counted).
fn drain_events(st: &mut LoopState) {
    while let Some(event) = st.relay.poll_event() {
        let id = event.leg();
        let Some(serial) = st
            .legs
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .map(|l| l.serial)
        else {
            continue;
        };
        let leg = LegKey {
            loop_index: st.outputs.index,
            id,
            serial,
        };
        let event = match event {
            RelayEvent::Dtmf {
                digit, duration_ms, ..
            } => MediaEvent::Dtmf {
                leg,
                digit,
                duration_ms,
            },
            RelayEvent::PlaybackDone { .. } => MediaEvent::PlaybackDone { leg },
        };
        if st.outputs.events.try_send(event).is_err() {
            st.outputs.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One RTCP compound out of the leg's socket, without waiting: a report
/// that finds the socket busy is dropped (and counted), the next one
/// follows an interval later.
fn send_rtcp_packet(st: &mut LoopState, (leg, to, kind, packet): RtcpOut) {
    let sent = st
        .socket(leg, kind)
        .is_some_and(|s| s.send_to(&packet, to).is_ok());
    if !sent {
        st.relay.count_drop(leg, DropReason::SendFailed);
    }
}

/// The per-packet step for one ready socket: one `recvfrom`, the relay's
/// decision, and at most one `sendto` out of the peer leg's socket. A
/// send that would block is a drop (counted): a late RTP packet is worth
/// less than the next one, and the loop never waits on one socket.
fn read_socket(st: &mut LoopState, token: u64, buf: &mut [u8]) {
    let (leg, serial_low, kind) = token_socket(token);
    let Some(socket) = st
        .legs
        .get(leg.0 as usize)
        .and_then(Option::as_ref)
        .filter(|l| l.serial & 0xffff_ffff == u64::from(serial_low))
        .and_then(|l| l.socket(kind))
    else {
        return;
    };
    let (len, source) = match socket.recv_from(buf) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
        Err(e) => {
            // E.g. ECONNREFUSED from an ICMP error for an earlier send.
            tracing::debug!(error = %e, "media recv error");
            return;
        }
    };
    // The start of the relay-added latency, and the relay's `now`.
    let received = Instant::now();
    if len >= buf.len() {
        // May have been truncated.
        st.relay.count_drop(leg, DropReason::Oversize);
        return;
    }
    let Some(packet) = buf.get_mut(..len) else {
        return;
    };
    let action = match kind {
        SocketKind::Rtp => st.relay.handle_rtp(leg, source, packet, received),
        SocketKind::Rtcp => st.relay.handle_rtcp(leg, source, packet, received),
    };
    // A key press: its event now; its quiet-period deadline re-arms the
    // loop's timeout at the top of the loop.
    drain_events(st);
    let (out_leg, to, socket, built) = match action {
        Action::Forward {
            out_leg,
            to,
            socket,
        } => (out_leg, to, socket, false),
        Action::ForwardBuffer {
            out_leg,
            to,
            socket,
        } => (out_leg, to, socket, true),
        Action::Consumed | Action::Drop(_) => return,
    };
    let Some(out) = st.socket(out_leg, socket) else {
        st.relay.count_drop(out_leg, DropReason::SendFailed);
        return;
    };
    let bytes: &[u8] = if built { st.relay.output() } else { packet };
    match out.send_to(bytes, to) {
        Ok(_) => st
            .outputs
            .latency
            .record(st.outputs.index, received.elapsed()),
        Err(e) => {
            tracing::trace!(error = %e, %to, "media send failed");
            st.relay.count_drop(out_leg, DropReason::SendFailed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::{self, RtcpPacket};
    use crate::rtp;
    use std::net::Ipv4Addr;
    use std::time::Duration;
    use tokio::net::UdpSocket;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn driver(min: u16, max: u16, loops: usize) -> MediaDriver {
        MediaDriver::start(DriverConfig {
            loops,
            ..DriverConfig::new(LOCALHOST, min, max)
        })
        .unwrap()
    }

    /// A driver whose relay reports every ~200 ms instead of ~5 s.
    fn fast_rtcp_driver(min: u16, max: u16) -> MediaDriver {
        MediaDriver::start(DriverConfig {
            loops: 1,
            relay: RelayConfig {
                rtcp_interval: Duration::from_millis(200),
                ..RelayConfig::default()
            },
            ..DriverConfig::new(LOCALHOST, min, max)
        })
        .unwrap()
    }

    /// A phone with an RTP/RTCP pair on adjacent ports.
    async fn phone_pair() -> (UdpSocket, UdpSocket) {
        loop {
            let rtp = phone().await;
            let port = rtp.local_addr().unwrap().port();
            if port % 2 != 0 {
                continue;
            }
            if let Ok(rtcp) = UdpSocket::bind((LOCALHOST, port + 1)).await {
                return (rtp, rtcp);
            }
        }
    }

    /// The next RTCP compound on `s` (RTP on a muxed socket is skipped).
    async fn recv_rtcp(s: &UdpSocket, wait_ms: u64) -> Option<(Vec<RtcpPacket>, SocketAddr)> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (p, from) = recv(s, u64::try_from(left.as_millis()).unwrap()).await?;
            if rtp::is_rtcp(&p) {
                return Some((rtcp::parse_compound(&p).unwrap(), from));
            }
        }
    }

    fn leg(remote: Option<SocketAddr>) -> LegConfig {
        LegConfig {
            remote,
            ..LegConfig::new(SocketAddr::new(LOCALHOST, 0))
        }
    }

    fn pkt(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = Vec::new();
        rtp::write(
            &mut p,
            false,
            8,
            seq,
            u32::from(seq) * 160,
            ssrc,
            &[0xD5; 160],
        );
        p
    }

    async fn phone() -> UdpSocket {
        UdpSocket::bind((LOCALHOST, 0)).await.unwrap()
    }

    async fn recv(s: &UdpSocket, wait_ms: u64) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 2048];
        let r = tokio::time::timeout(Duration::from_millis(wait_ms), s.recv_from(&mut buf)).await;
        match r {
            Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
            _ => None,
        }
    }

    /// Polls the leg's counters until `done` holds (packets and control
    /// messages race on the loop).
    async fn wait_counters(
        d: &MediaDriver,
        h: &LegHandle,
        done: impl Fn(&LegCounters) -> bool,
    ) -> LegCounters {
        for _ in 0..100 {
            let c = d.counters(h).await.unwrap();
            if done(&c) {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        d.counters(h).await.unwrap()
    }

    #[tokio::test]
    async fn two_phones_both_ways_with_rewritten_ssrc_and_spoofer_blocked() {
        let d = driver(31000, 31019, 2);
        let (pa, pb, spoofer) = (phone().await, phone().await, phone().await);
        let (ha, la) = d
            .open_leg(7, leg(Some(pa.local_addr().unwrap())))
            .await
            .unwrap();
        let (hb, lb) = d
            .open_leg(7, leg(Some(pb.local_addr().unwrap())))
            .await
            .unwrap();
        assert_eq!(la.port() % 2, 0);
        assert_eq!(ha.loop_index(), hb.loop_index());
        d.bridge(&ha, &hb).await.unwrap();

        for seq in 0..10u16 {
            pa.send_to(&pkt(seq, 0xA), la).await.unwrap();
            let (p, from) = recv(&pb, 2000).await.expect("A -> B");
            assert_eq!(from, lb);
            let h = rtp::parse(&p).unwrap();
            assert_eq!((h.ssrc, h.sequence), (hb.ssrc(), seq));

            pb.send_to(&pkt(1000 + seq, 0xB), lb).await.unwrap();
            let (p, from) = recv(&pa, 2000).await.expect("B -> A");
            assert_eq!(from, la);
            let h = rtp::parse(&p).unwrap();
            assert_eq!((h.ssrc, h.sequence), (ha.ssrc(), 1000 + seq));
        }

        // RTP Bleed: a sprayer on A's port after latching.
        for seq in 0..20u16 {
            spoofer.send_to(&pkt(seq, 0xBAD), la).await.unwrap();
        }
        let c = wait_counters(&d, &ha, |c| c.dropped(DropReason::NotLatched) >= 20).await;
        assert_eq!(c.dropped(DropReason::NotLatched), 20);
        assert_eq!(c.rtp_in, 10);
        assert!(
            recv(&pb, 200).await.is_none(),
            "spoofed packets must not reach B"
        );
        // B's media still goes to A only, never to the sprayer.
        pb.send_to(&pkt(5000, 0xB), lb).await.unwrap();
        assert!(recv(&pa, 2000).await.is_some());
        assert!(recv(&spoofer, 200).await.is_none());

        let cb = d.counters(&hb).await.unwrap();
        assert_eq!((cb.rtp_out, cb.rtp_in), (10, 11));
        assert_eq!(cb.ssrc_out, hb.ssrc());

        d.close_leg(ha).await.unwrap();
        d.close_leg(hb).await.unwrap();
        d.shutdown();
    }

    #[tokio::test]
    async fn symmetric_leg_learns_nat_source_and_rtcp_goes_to_rtcp_port() {
        let d = fast_rtcp_driver(31020, 31039);
        let pa = phone().await;
        let (pb, pb_rtcp) = phone_pair().await;
        // A: muxed, no SDP address (NAT, learned from its first packet).
        let (ha, la) = d
            .open_leg(
                3,
                LegConfig {
                    rtcp_mux: true,
                    ..leg(None)
                },
            )
            .await
            .unwrap();
        let (hb, lb) = d
            .open_leg(3, leg(Some(pb.local_addr().unwrap())))
            .await
            .unwrap();
        d.bridge(&ha, &hb).await.unwrap();
        // B speaks first: nowhere to send (A unknown), counted, nothing sent.
        pb.send_to(&pkt(1, 0xB), lb).await.unwrap();
        let c = wait_counters(&d, &hb, |c| c.dropped(DropReason::NoPeer) == 1).await;
        assert_eq!(c.dropped(DropReason::NoPeer), 1);
        // A's first packet latches it.
        pa.send_to(&pkt(1, 0xA), la).await.unwrap();
        assert!(recv(&pb, 2000).await.is_some());
        pb.send_to(&pkt(2, 0xB), lb).await.unwrap();
        let (_, from) = recv(&pa, 2000).await.expect("B -> learned A");
        assert_eq!(from, la);
        // RTCP from A (muxed) is terminated on A: it used to be forwarded
        // raw to B, now the relay reads it and sends each phone its own
        // reports instead (about the stream on that leg, with its SSRCs).
        let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 0xA];
        pa.send_to(&rr, la).await.unwrap();
        let c = wait_counters(&d, &ha, |c| c.rtcp_in == 1).await;
        assert_eq!(c.rtcp_in, 1);
        // B's RTCP port gets the relay's report from B's RTCP socket...
        let (p, from) = recv_rtcp(&pb_rtcp, 3000).await.expect("RTCP to B");
        assert_eq!(from, SocketAddr::new(LOCALHOST, lb.port() + 1));
        assert!(matches!(
            p.first(),
            Some(RtcpPacket::SenderReport { ssrc, .. } | RtcpPacket::ReceiverReport { ssrc, .. })
                if *ssrc == hb.ssrc()
        ));
        // ...and A's muxed, learned port gets its own from A's RTP socket.
        let (p, from) = recv_rtcp(&pa, 3000).await.expect("RTCP to A");
        assert_eq!(from, la);
        assert!(matches!(
            p.first(),
            Some(RtcpPacket::SenderReport { ssrc, .. } | RtcpPacket::ReceiverReport { ssrc, .. })
                if *ssrc == ha.ssrc()
        ));

        // A re-INVITE with a new address for B: media goes there.
        let pb2 = phone().await;
        d.update_leg(&hb, Some(pb2.local_addr().unwrap()))
            .await
            .unwrap();
        pa.send_to(&pkt(2, 0xA), la).await.unwrap();
        assert!(recv(&pb2, 2000).await.is_some());

        d.close_leg(ha).await.unwrap();
        d.close_leg(hb).await.unwrap();
        d.shutdown();
    }

    #[tokio::test]
    async fn each_phone_gets_the_relays_reports_on_its_rtcp_port() {
        let d = fast_rtcp_driver(31120, 31139);
        let ((pa, pa_rtcp), (pb, pb_rtcp)) = (phone_pair().await, phone_pair().await);
        let (ha, la) = d
            .open_leg(5, leg(Some(pa.local_addr().unwrap())))
            .await
            .unwrap();
        let (hb, lb) = d
            .open_leg(5, leg(Some(pb.local_addr().unwrap())))
            .await
            .unwrap();
        d.bridge(&ha, &hb).await.unwrap();
        d.set_codec(&hb, Some("AMR".into())).await.unwrap();
        for seq in 0..10u16 {
            pa.send_to(&pkt(seq, 0xA), la).await.unwrap();
            assert!(recv(&pb, 2000).await.is_some());
            pb.send_to(&pkt(100 + seq, 0xB), lb).await.unwrap();
            assert!(recv(&pa, 2000).await.is_some());
        }
        // Each phone, from the leg's RTCP port with the leg's SSRC and an
        // SDES: an SR counting the 10 packets the relay sent it, and a block
        // about the phone's own stream up to its last packet, no loss.
        // Reports sent during the exchange (every ~200 ms) come first, and
        // the last block may ride on the SR or on a later RR.
        let phones = [(&pa_rtcp, &ha, la, 0xA, 9), (&pb_rtcp, &hb, lb, 0xB, 109)];
        for (rtcp_socket, h, l, phone_ssrc, highest_seq) in phones {
            let (mut full_sr, mut last_block) = (false, false);
            while !(full_sr && last_block) {
                let (p, from) = recv_rtcp(rtcp_socket, 3000).await.expect("relay report");
                assert_eq!(from, SocketAddr::new(LOCALHOST, l.port() + 1));
                assert!(matches!(p.get(1), Some(RtcpPacket::Sdes { .. })));
                let (ssrc, reports) = match p.first() {
                    Some(RtcpPacket::SenderReport {
                        ssrc,
                        info,
                        reports,
                    }) => {
                        assert!(info.packet_count <= 10);
                        assert_eq!(info.octet_count, info.packet_count * 160);
                        full_sr |= info.packet_count == 10;
                        (ssrc, reports)
                    }
                    Some(RtcpPacket::ReceiverReport { ssrc, reports }) => (ssrc, reports),
                    _ => panic!("{p:?}"),
                };
                assert_eq!(*ssrc, h.ssrc());
                assert!(reports.len() <= 1);
                if let Some(block) = reports.first() {
                    assert_eq!((block.ssrc, block.cumulative_lost), (phone_ssrc, 0));
                    last_block |= block.extended_highest_seq == highest_seq;
                }
            }
        }
        // RTCP from phone A about the relay's stream: read on A, not sent to B.
        let block = rtcp::ReportBlock {
            ssrc: ha.ssrc(),
            fraction_lost: 128,
            cumulative_lost: 5,
            extended_highest_seq: 109,
            jitter: 8,
            lsr: 0,
            dlsr: 0,
        };
        let mut rr = Vec::new();
        rtcp::write_report(&mut rr, 0xA, None, &[block], "a@test");
        pa_rtcp
            .send_to(&rr, SocketAddr::new(LOCALHOST, la.port() + 1))
            .await
            .unwrap();
        let c = wait_counters(&d, &ha, |c| c.quality.peer_loss_rate.is_some()).await;
        assert_eq!(c.quality.peer_loss_rate, Some(0.5));
        assert_eq!(c.quality.peer_jitter_ms, Some(1.0));
        assert_eq!(c.quality.packets_received, 10);
        // B is AMR: a lower R than A's G.711 on the same clean stream.
        let cb = d.counters(&hb).await.unwrap();
        assert!(cb.quality.r < c.quality.r);
        for _ in 0..3 {
            if let Some((p, _)) = recv_rtcp(&pb_rtcp, 300).await {
                assert!(
                    matches!(
                        p.first(),
                        Some(RtcpPacket::SenderReport { ssrc, .. } | RtcpPacket::ReceiverReport { ssrc, .. })
                            if *ssrc == hb.ssrc()
                    ),
                    "only the relay's own reports reach B: {p:?}"
                );
            }
        }
        // Closing a leg says BYE to its phone.
        d.close_leg(ha).await.unwrap();
        let mut bye = false;
        while let Some((p, _)) = recv_rtcp(&pa_rtcp, 500).await {
            bye |= p.iter().any(|p| matches!(p, RtcpPacket::Bye { .. }));
        }
        assert!(bye);
        d.close_leg(hb).await.unwrap();
        d.shutdown();
    }

    #[tokio::test]
    async fn ports_return_to_the_pool_and_exhaustion_errors() {
        // Two pairs: 31040/41 and 31042/43.
        let d = driver(31040, 31043, 2);
        assert_eq!((d.ports_capacity(), d.ports_available()), (2, 2));
        let (h1, l1) = d.open_leg(1, leg(None)).await.unwrap();
        let (h2, _) = d.open_leg(1, leg(None)).await.unwrap();
        assert_eq!(d.ports_available(), 0);
        assert!(matches!(
            d.open_leg(1, leg(None)).await,
            Err(DriverError::PortsExhausted)
        ));
        d.close_leg(h1).await.unwrap();
        assert_eq!(d.ports_available(), 1);
        // The sockets are closed: the ports bind again...
        drop(StdUdpSocket::bind(l1).unwrap());
        drop(StdUdpSocket::bind(SocketAddr::new(LOCALHOST, l1.port() + 1)).unwrap());
        // ...and the pool hands the freed port out again, on another loop.
        let (h3, l3) = d.open_leg(2, leg(None)).await.unwrap();
        assert_eq!(l3.port(), l1.port());
        assert!(matches!(
            d.bridge(&h2, &h3).await,
            Err(DriverError::DifferentLoops)
        ));
        d.close_leg(h2).await.unwrap();
        d.close_leg(h3).await.unwrap();
        assert_eq!(d.ports_available(), 2);
        d.shutdown();
    }

    #[tokio::test]
    async fn busy_ports_are_skipped() {
        let busy = StdUdpSocket::bind((LOCALHOST, 31061)).unwrap();
        let d = driver(31060, 31063, 1);
        // 31060 binds but its RTCP port is taken: skipped, 31062 is used.
        let (h, l) = d.open_leg(1, leg(None)).await.unwrap();
        assert_eq!(l.port(), 31062);
        // With rtcp-mux 31060 is fine.
        let (hm, lm) = d
            .open_leg(
                1,
                LegConfig {
                    rtcp_mux: true,
                    ..leg(None)
                },
            )
            .await
            .unwrap();
        assert_eq!(lm.port(), 31060);
        drop(busy);
        d.close_leg(h).await.unwrap();
        d.close_leg(hm).await.unwrap();
        assert_eq!(d.ports_available(), 2);
        d.shutdown();
    }

    /// Phone A talks AMR-NB (octet-aligned), phone B PCMA: the relay
    /// transcodes, and B hears the tone A sent.
    #[cfg(feature = "transcode")]
    #[tokio::test]
    async fn amr_phone_to_pcma_phone_is_transcoded() {
        use crate::format::Encoding;
        use crate::payload::{amr, g711};
        use crate::transcode::AmrNbEncoder;

        let d = driver(31140, 31159, 1);
        let (pa, pb) = (phone().await, phone().await);
        let (ha, la) = d
            .open_leg(9, leg(Some(pa.local_addr().unwrap())))
            .await
            .unwrap();
        let (hb, _) = d
            .open_leg(9, leg(Some(pb.local_addr().unwrap())))
            .await
            .unwrap();
        d.bridge(&ha, &hb).await.unwrap();
        let amr = LegFormat {
            payload_type: 96,
            encoding: Encoding::Amr {
                wideband: false,
                octet_aligned: true,
            },
            dtmf_payload_type: None,
        };
        let pcma = LegFormat {
            payload_type: 8,
            encoding: Encoding::Pcma,
            dtmf_payload_type: None,
        };
        d.set_format(&ha, Some(amr)).await.unwrap();
        d.set_format(&hb, Some(pcma)).await.unwrap();

        let mut enc = AmrNbEncoder::new(false).unwrap();
        let mut heard = Vec::new();
        for i in 0..50u16 {
            let pcm: Vec<i16> = (0..160)
                .map(|n| {
                    let t = f64::from(u32::from(i) * 160 + n) / 8000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect();
            let storage = enc.encode(7, pcm.as_slice().try_into().unwrap()).unwrap();
            let (ft, q) = ((storage[0] >> 3) & 0x0F, storage[0] & 0x04 != 0);
            let mut payload = Vec::new();
            amr::build(
                amr::AmrKind::Nb,
                amr::PayloadMode::OctetAligned,
                15,
                &[(ft, q, &storage[1..])],
                &mut payload,
            )
            .unwrap();
            let mut p = Vec::new();
            rtp::write(&mut p, false, 96, i, u32::from(i) * 160, 0xA, &payload);
            pa.send_to(&p, la).await.unwrap();
            let (p, _) = recv(&pb, 2000).await.expect("PCMA to B");
            let h = rtp::parse(&p).unwrap();
            assert_eq!((h.payload_type, h.ssrc, h.payload_len), (8, hb.ssrc(), 160));
            g711::decode_alaw(h.payload(&p), &mut heard);
        }
        // Zero crossings (with hysteresis) after the codecs settled.
        let tail = &heard[160 * 5..];
        let rms =
            (tail.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
        let (mut positive, mut crossings) = (None, 0u32);
        for &s in tail {
            let s = f64::from(s);
            if let Some(now) = (s.abs() > rms * 0.3).then_some(s > 0.0) {
                crossings += u32::from(positive.is_some_and(|p| p != now));
                positive = Some(now);
            }
        }
        let f = f64::from(crossings) / 2.0 / (tail.len() as f64 / 8000.0);
        assert!((396.0..=484.0).contains(&f), "{f} Hz");
        assert!(rms > 8000.0 / 2f64.sqrt() / 2.0, "rms {rms}");
        d.close_leg(ha).await.unwrap();
        d.close_leg(hb).await.unwrap();
        d.shutdown();
    }

    fn dtmf_packet(seq: u16, ts: u32, marker: bool, event: u8, end: bool, d: u16) -> Vec<u8> {
        let payload = crate::payload::dtmf::Event {
            event,
            end,
            volume: 10,
            duration: d,
        }
        .to_bytes();
        let mut p = Vec::new();
        rtp::write(&mut p, marker, 101, seq, ts, 0xA, &payload);
        p
    }

    fn pcma_with_dtmf(dtmf: Option<u8>) -> LegFormat {
        LegFormat {
            payload_type: 8,
            encoding: crate::format::Encoding::Pcma,
            dtmf_payload_type: dtmf,
        }
    }

    async fn next_event(rx: &mut mpsc::Receiver<MediaEvent>, wait_ms: u64) -> Option<MediaEvent> {
        tokio::time::timeout(Duration::from_millis(wait_ms), rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Two bridged phones; A sends telephone-event 101, B takes 100.
    async fn dtmf_call(d: &MediaDriver) -> ([UdpSocket; 2], [LegHandle; 2], [SocketAddr; 2]) {
        let (pa, pb) = (phone().await, phone().await);
        let (ha, la) = d
            .open_leg(11, leg(Some(pa.local_addr().unwrap())))
            .await
            .unwrap();
        let (hb, lb) = d
            .open_leg(11, leg(Some(pb.local_addr().unwrap())))
            .await
            .unwrap();
        d.bridge(&ha, &hb).await.unwrap();
        d.set_format(&ha, Some(pcma_with_dtmf(Some(101))))
            .await
            .unwrap();
        d.set_format(&hb, Some(pcma_with_dtmf(Some(100))))
            .await
            .unwrap();
        ([pa, pb], [ha, hb], [la, lb])
    }

    #[tokio::test]
    async fn received_presses_become_events_and_still_reach_the_peer() {
        let d = driver(31200, 31219, 1);
        let mut events = d.take_events().expect("events");
        assert!(d.take_events().is_none());
        let ([pa, pb], [ha, hb], [la, _]) = dtmf_call(&d).await;
        // telephone-event/8000 on an 8 kHz leg: what the default does too.
        d.set_dtmf_clock_rate(&ha, Some(8000)).await.unwrap();
        let started = Instant::now();
        // '5': updates at 0, 50, 100 ms, three end packets (150 ms).
        let press = [
            (false, 0),
            (false, 400),
            (false, 800),
            (true, 1200),
            (true, 1200),
            (true, 1200),
        ];
        for (i, (end, duration)) in press.into_iter().enumerate() {
            let p = dtmf_packet(i as u16, 8000, i == 0, 5, end, duration);
            pa.send_to(&p, la).await.unwrap();
            let (p, _) = recv(&pb, 2000).await.expect("event forwarded to B");
            let h = rtp::parse(&p).unwrap();
            assert_eq!(
                (h.payload_type, h.ssrc, h.timestamp),
                (100, hb.ssrc(), 8000)
            );
            if i < 3 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let event = next_event(&mut events, 2000).await.expect("DTMF event");
        assert_eq!(
            event,
            MediaEvent::Dtmf {
                leg: ha.key(),
                digit: '5',
                duration_ms: 150
            }
        );
        assert_eq!(event.leg().id(), ha.id());
        assert_eq!(event.leg().loop_index(), ha.loop_index());
        // '3' with every end packet lost: reported after the quiet period.
        // The first RTCP report is due 1.25 s or more after the legs
        // opened, so an event this early comes from the loop being woken
        // by the press's own deadline.
        for (i, duration) in [0u16, 400].into_iter().enumerate() {
            let p = dtmf_packet(10 + i as u16, 16000, i == 0, 3, false, duration);
            pa.send_to(&p, la).await.unwrap();
            assert!(recv(&pb, 2000).await.is_some());
        }
        let event = next_event(&mut events, 1000).await.expect("flushed press");
        assert_eq!(
            event,
            MediaEvent::Dtmf {
                leg: ha.key(),
                digit: '3',
                duration_ms: 50
            }
        );
        assert!(started.elapsed() < Duration::from_millis(1200));
        assert!(next_event(&mut events, 700).await.is_none(), "once");
        let c = d.counters(&ha).await.unwrap();
        assert_eq!((c.dtmf_in, c.dropped_total()), (2, 0));
        assert_eq!(d.events_dropped(), 0);
        d.close_leg(ha).await.unwrap();
        d.close_leg(hb).await.unwrap();
        d.shutdown();
    }

    #[tokio::test]
    async fn send_dtmf_reaches_the_phone_as_rfc_4733_digits() {
        use crate::payload::dtmf::{self, DtmfNotice, DtmfReceiver};
        let d = driver(31220, 31239, 1);
        let ([pa, pb], [ha, hb], [la, lb]) = dtmf_call(&d).await;
        // Some audio first: the digits continue B's stream.
        for seq in 0..5u16 {
            pa.send_to(&pkt(seq, 0xA), la).await.unwrap();
            assert!(recv(&pb, 2000).await.is_some());
        }
        d.send_dtmf(&hb, "1#9", 100).await.unwrap();
        let mut rx = DtmfReceiver::new();
        let (mut digits, mut packets) = (String::new(), Vec::new());
        while packets.len() < 15 {
            let (p, from) = recv(&pb, 2000).await.expect("event packet");
            assert_eq!(from, lb);
            let h = rtp::parse(&p).unwrap();
            assert_eq!((h.payload_type, h.ssrc), (100, hb.ssrc()));
            let ev = dtmf::parse(h.payload(&p)).unwrap();
            for n in rx.on_packet(h.timestamp, h.marker, &ev) {
                if let DtmfNotice::Ended { digit, duration } = n {
                    assert_eq!(duration, 800);
                    digits.push(digit);
                }
            }
            packets.push(h);
        }
        assert_eq!(digits, "1#9");
        // 5 packets a press (3 of them end packets), the sequence
        // continuing the forwarded audio's.
        assert_eq!(packets.len(), 15);
        for (i, h) in packets.iter().enumerate() {
            assert_eq!(h.sequence, 5 + i as u16);
            assert_eq!(h.marker, i % 5 == 0);
        }
        assert!(recv(&pb, 300).await.is_none(), "each digit once");
        // Bad digits, and a leg without telephone-event.
        assert!(matches!(
            d.send_dtmf(&hb, "1x", 100).await,
            Err(DriverError::Relay(RelayError::Dtmf(_)))
        ));
        d.set_format(&ha, Some(pcma_with_dtmf(None))).await.unwrap();
        assert!(matches!(
            d.send_dtmf(&ha, "1", 100).await,
            Err(DriverError::Relay(RelayError::NoTelephoneEvent(_)))
        ));
        d.close_leg(ha).await.unwrap();
        d.close_leg(hb).await.unwrap();
        d.shutdown();
    }

    /// A 16-bit mono WAV file of `secs` of 440 Hz at `rate`.
    fn sine_wav(rate: u32, secs: f64) -> Vec<u8> {
        let n = (f64::from(rate) * secs) as usize;
        let data: Vec<u8> = (0..n)
            .flat_map(|i| {
                let t = i as f64 / f64::from(rate);
                ((8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16).to_le_bytes()
            })
            .collect();
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&(rate * 2).to_le_bytes());
        fmt.extend_from_slice(&2u16.to_le_bytes());
        fmt.extend_from_slice(&16u16.to_le_bytes());
        let mut wav = b"RIFF".to_vec();
        wav.extend_from_slice(&(4 + 8 + 16 + 8 + data.len() as u32).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&fmt);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
        wav.extend_from_slice(&data);
        wav
    }

    #[tokio::test]
    async fn a_wav_plays_into_the_leg_in_real_time() {
        use crate::payload::g711;
        let d = driver(31240, 31259, 1);
        let mut events = d.take_events().unwrap();
        let ([pa, pb], [ha, hb], [la, lb]) = dtmf_call(&d).await;
        for seq in 0..3u16 {
            pa.send_to(&pkt(seq, 0xA), la).await.unwrap();
            assert!(recv(&pb, 2000).await.is_some());
        }
        // 1 s at 16 kHz: resampled to the leg's 8 kHz, sent as PCMA.
        let wav = crate::playback::parse_wav(&sine_wav(16000, 1.0)).unwrap();
        d.play(&hb, wav, false).await.unwrap();
        let start = Instant::now();
        let (mut headers, mut pcm) = (Vec::new(), Vec::new());
        let mut talking = 3u16;
        while headers.len() < 50 {
            // Phone A keeps talking: held back meanwhile.
            if talking < 13 {
                pa.send_to(&pkt(talking, 0xA), la).await.unwrap();
                talking += 1;
            }
            let (p, from) = recv(&pb, 2000).await.expect("prompt frame");
            assert_eq!(from, lb);
            let h = rtp::parse(&p).unwrap();
            assert_eq!((h.payload_type, h.ssrc, h.payload_len), (8, hb.ssrc(), 160));
            g711::decode_alaw(h.payload(&p), &mut pcm);
            headers.push(h);
        }
        let took = start.elapsed();
        // Real time: 50 frames of 20 ms, the first at once.
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
            "{took:?}"
        );
        assert!(headers[0].marker);
        assert_eq!(headers[0].sequence, 3, "continues the forwarded stream");
        for w in headers.windows(2) {
            assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
            assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(160));
            assert!(!w[1].marker);
        }
        let rms =
            (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
        assert!(rms > 4000.0, "rms {rms}");
        assert_eq!(
            next_event(&mut events, 2000).await,
            Some(MediaEvent::PlaybackDone { leg: hb.key() })
        );
        assert!(recv(&pb, 200).await.is_none(), "nothing after the prompt");
        let c = d.counters(&hb).await.unwrap();
        assert_eq!(c.suppressed, 10);
        // A's audio flows again, continuing the stream.
        pa.send_to(&pkt(20, 0xA), la).await.unwrap();
        let (p, _) = recv(&pb, 2000).await.expect("A again");
        let h = rtp::parse(&p).unwrap();
        assert_eq!(h.sequence, headers[49].sequence.wrapping_add(1));

        // A looped prompt until stop_play, then A again.
        let wav = crate::playback::parse_wav(&sine_wav(8000, 0.05)).unwrap();
        d.play(&hb, wav, true).await.unwrap();
        let mut last = h.sequence;
        for _ in 0..10 {
            let (p, _) = recv(&pb, 2000).await.expect("looped frame");
            let h = rtp::parse(&p).unwrap();
            assert_eq!(h.sequence, last.wrapping_add(1));
            last = h.sequence;
        }
        d.stop_play(&hb).await.unwrap();
        // Frames already on the way, then A's audio with the next number.
        pa.send_to(&pkt(21, 0xA), la).await.unwrap();
        loop {
            let (p, _) = recv(&pb, 2000).await.expect("A after stop");
            let h = rtp::parse(&p).unwrap();
            assert_eq!(h.sequence, last.wrapping_add(1));
            last = h.sequence;
            if h.payload(&p) == [0xD5; 160] {
                break;
            }
        }
        assert!(next_event(&mut events, 200).await.is_none());
        // Errors: a leg whose codec has no encoder.
        d.set_format(&ha, None).await.unwrap();
        let wav = crate::playback::parse_wav(&sine_wav(8000, 0.1)).unwrap();
        assert!(matches!(
            d.play(&ha, wav, false).await,
            Err(DriverError::Relay(RelayError::NoEncoder(_)))
        ));
        d.close_leg(ha).await.unwrap();
        d.close_leg(hb).await.unwrap();
        d.shutdown();
    }

    #[tokio::test]
    async fn forwarded_packets_fill_the_latency_histogram() {
        let d = driver(31260, 31279, 2);
        let (pa, pb) = (phone().await, phone().await);
        let (ha, la) = d
            .open_leg(4, leg(Some(pa.local_addr().unwrap())))
            .await
            .unwrap();
        let (hb, lb) = d
            .open_leg(4, leg(Some(pb.local_addr().unwrap())))
            .await
            .unwrap();
        d.bridge(&ha, &hb).await.unwrap();
        let empty = d.latency();
        assert_eq!(
            (empty.count, empty.cumulative.last().copied()),
            (0, Some(0))
        );
        let n = 60u16;
        for seq in 0..n {
            let (from, to, rx) = if seq % 2 == 0 {
                (&pa, la, &pb)
            } else {
                (&pb, lb, &pa)
            };
            from.send_to(&pkt(seq, 0xC), to).await.unwrap();
            assert!(recv(rx, 2000).await.is_some());
        }
        // Recorded once send_to returned, which races with the phone's
        // receive of the last packet.
        let mut s = d.latency();
        for _ in 0..100 {
            if s.count >= u64::from(n) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            s = d.latency();
        }
        assert_eq!(s.count, u64::from(n));
        assert_eq!(s.cumulative.len(), s.bounds_seconds.len() + 1);
        assert_eq!(s.cumulative.last().copied(), Some(s.count));
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]), "{s:?}");
        assert!(s.bounds_seconds.windows(2).all(|w| w[0] < w[1]));
        assert!(
            s.sum_seconds > 0.0 && s.sum_seconds < f64::from(n) * 0.025,
            "{s:?}"
        );
        // Dropped packets are not forwarded, so not measured.
        let stranger = phone().await;
        stranger.send_to(&pkt(999, 0xBAD), la).await.unwrap();
        wait_counters(&d, &ha, |c| c.dropped(DropReason::NotLatched) == 1).await;
        assert_eq!(d.latency().count, u64::from(n));
        d.close_leg(ha).await.unwrap();
        d.close_leg(hb).await.unwrap();
        d.shutdown();
    }

    /// Round trip A -> relay -> B -> relay -> A on loopback, against the same
    /// ping-pong without the relay (run with `--ignored --nocapture`).
    #[tokio::test]
    #[ignore]
    async fn relay_latency() {
        let d = driver(31080, 31099, 1);
        let (pa, pb) = (phone().await, phone().await);
        let (ha, la) = d
            .open_leg(1, leg(Some(pa.local_addr().unwrap())))
            .await
            .unwrap();
        let (hb, lb) = d
            .open_leg(1, leg(Some(pb.local_addr().unwrap())))
            .await
            .unwrap();
        d.bridge(&ha, &hb).await.unwrap();
        let n = 5000u16;
        let mut buf = [0u8; 2048];
        let mut p = pkt(0, 0xA);
        let start = Instant::now();
        for seq in 0..n {
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            pa.send_to(&p, la).await.unwrap();
            let (len, _) = pb.recv_from(&mut buf).await.unwrap();
            pb.send_to(&buf[..len], lb).await.unwrap();
            pa.recv_from(&mut buf).await.unwrap();
        }
        let relayed = start.elapsed() / u32::from(n);
        let start = Instant::now();
        let (ta, tb) = (pa.local_addr().unwrap(), pb.local_addr().unwrap());
        for _ in 0..n {
            pa.send_to(&p, tb).await.unwrap();
            let (len, _) = pb.recv_from(&mut buf).await.unwrap();
            pb.send_to(&buf[..len], ta).await.unwrap();
            pa.recv_from(&mut buf).await.unwrap();
        }
        let direct = start.elapsed() / u32::from(n);
        println!(
            "round trip: relayed {relayed:?}, direct {direct:?}, per relay hop ~{:?}",
            (relayed.saturating_sub(direct)) / 2
        );
        d.close_leg(ha).await.unwrap();
        d.close_leg(hb).await.unwrap();
        d.shutdown();
    }

    /// The call layer runs on the multi-thread runtime: the driver is shared
    /// between tasks and its futures move between threads.
    #[test]
    fn driver_and_its_futures_are_send() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let d = driver(31100, 31103, 1);
        send_sync(&d);
        send(d.open_leg(1, leg(None)));
        let h = LegHandle {
            loop_index: 0,
            key: Key {
                id: LegId(0),
                serial: 0,
            },
            port: 0,
            local: SocketAddr::new(LOCALHOST, 0),
            ssrc: 0,
        };
        send(d.counters(&h));
        send(d.send_dtmf(&h, "1", 100));
        let wav = Wav {
            sample_rate: 8000,
            samples: Vec::new(),
        };
        send(d.play(&h, wav, false));
        send(d.stop_play(&h));
        send(d.take_events());
        d.shutdown();
    }

    #[test]
    fn port_pool() {
        assert!(PortPool::new(31001, 31001).is_err());
        assert!(PortPool::new(31002, 31002).is_err());
        assert!(PortPool::new(65535, 65535).is_err());
        let mut p = PortPool::new(31001, 31006).unwrap();
        assert_eq!(p.capacity(), 2);
        assert_eq!(p.allocate(), Some(31002));
        assert_eq!(p.allocate(), Some(31004));
        assert_eq!(p.allocate(), None);
        p.release(31002);
        p.release(31002);
        p.release(31003);
        p.release(9);
        assert_eq!(p.available(), 1);
        let full = PortPool::new(0, 65535).unwrap();
        assert_eq!(full.capacity(), 32768);
    }
}
