//! What the HTTP side sees of calls: one [`CallView`] per session, kept up
//! to date by the call layer (state changes, from the SIP loop) and by the
//! stats refresher (relay counters, a few times a second), so a status poll
//! costs a map lookup and a serialization, never a round trip through the
//! SIP loop or the media loops (DESIGN.md "Layers and who owns what").
//!
//! ```text
//!  SIP loop ──state──▶ CallView ◀──stats── refresher (MediaDriver::counters)
//!                         ▲
//!                 HTTP status poll (read only)
//! ```
//!
//! Ended calls stay visible as `release` for [`Registry::linger`], so an app
//! polling after the hang-up sees the end rather than `session_not_exist`.

use media::driver::LegKey;
use media::relay::LegCounters;
use media::stats::{total_eval, QualitySnapshot};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// API.md `peer_status` / `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PeerStatus {
    Idle = 0,
    Ring = 1,
    Hookoff = 2,
    P2pIdle = 3,
    P2pRing = 4,
    P2pHookoff = 5,
    Release = 6,
    /// Callback: the local phone rings / answered, the remote rings, bridged.
    ARinging = 7,
    AAnswered = 8,
    BRinging = 9,
    Bridged = 10,
}

impl PeerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStatus::Idle => "idle",
            PeerStatus::Ring => "ring",
            PeerStatus::Hookoff => "hookoff",
            PeerStatus::P2pIdle => "p2p_idle",
            PeerStatus::P2pRing => "p2p_ring",
            PeerStatus::P2pHookoff => "p2p_hookoff",
            PeerStatus::Release => "release",
            PeerStatus::ARinging => "a_ringing",
            PeerStatus::AAnswered => "a_answered",
            PeerStatus::BRinging => "b_ringing",
            PeerStatus::Bridged => "bridged",
        }
    }

    fn from_u8(v: u8) -> PeerStatus {
        match v {
            0 => PeerStatus::Idle,
            1 => PeerStatus::Ring,
            2 => PeerStatus::Hookoff,
            3 => PeerStatus::P2pIdle,
            4 => PeerStatus::P2pRing,
            5 => PeerStatus::P2pHookoff,
            7 => PeerStatus::ARinging,
            8 => PeerStatus::AAnswered,
            9 => PeerStatus::BRinging,
            10 => PeerStatus::Bridged,
            _ => PeerStatus::Release,
        }
    }
}

/// The kinds of call (DESIGN.md); stored in the call record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// App → phone number through a trunk.
    Outbound,
    /// Trunk → trunk.
    Transit,
    /// Trunk → app (a number bound to an account).
    SipCallIn,
    /// App → app, maybe falling back to the callee's phone.
    P2p,
    /// Two trunk calls placed by the switch and bridged.
    Callback,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Outbound => "outbound",
            CallKind::Transit => "transit",
            CallKind::SipCallIn => "sip_call_in",
            CallKind::P2p => "p2p",
            CallKind::Callback => "callback",
        }
    }
}

/// One direction of one leg's quality (API.md `detail_eval`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LegEval {
    /// MOS of what the endpoint sends us (our measurement).
    pub up: f64,
    /// MOS of what we send the endpoint (its RTCP), when it reported.
    pub down: Option<f64>,
}

/// API.md `stats`: the app leg's figures, the end-to-end MOS and the
/// per-leg estimates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CallStats {
    pub ip: Option<IpAddr>,
    pub pr: u64,
    pub pl: i64,
    pub jitter: f64,
    pub avg_ij: f64,
    pub lostrate: f64,
    pub rttms: f64,
    pub avgrttms: f64,
    pub down_jitter: f64,
    pub down_lostrate: f64,
    pub total_eval: f64,
    pub app: LegEval,
    pub trunk: Option<LegEval>,
}

impl CallStats {
    /// From the app leg's counters and, once it exists, the trunk leg's.
    pub fn from_legs(app: &LegCounters, trunk: Option<&LegCounters>) -> CallStats {
        let q = &app.quality;
        let eval = |q: &QualitySnapshot| LegEval {
            up: round2(q.mos),
            down: q.peer_mos.map(round2),
        };
        let total = match trunk {
            Some(t) => total_eval(q, &t.quality),
            None => q.mos,
        };
        CallStats {
            // Where the app's media really comes from: unknown until it sends.
            ip: app
                .rtp_remote
                .filter(|_| q.packets_received > 0)
                .map(|a| a.ip()),
            pr: q.packets_received,
            pl: q.packets_lost,
            jitter: round2(q.jitter_ms),
            avg_ij: round2(q.mean_jitter_ms),
            lostrate: round4(q.loss_rate),
            rttms: round2(q.rtt_ms.unwrap_or(0.0)),
            avgrttms: round2(q.avg_rtt_ms.unwrap_or(0.0)),
            down_jitter: round2(q.peer_jitter_ms.unwrap_or(0.0)),
            down_lostrate: round4(q.peer_loss_rate.unwrap_or(0.0)),
            total_eval: round2(total),
            app: eval(q),
            trunk: trunk.map(|t| eval(&t.quality)),
        }
    }
}

fn round2(x: f64) -> f64 {
    if x.is_finite() {
        (x * 100.0).round() / 100.0
    } else {
        0.0
    }
}

fn round4(x: f64) -> f64 {
    if x.is_finite() {
        (x * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

/// One session as HTTP sees it.
#[derive(Debug)]
pub struct CallView {
    pub session_id: String,
    pub account: String,
    /// The device the call was started from (its login must stay current).
    pub device: Option<String>,
    pub kind: CallKind,
    /// The other account of an app-to-app call (the callee), who may act
    /// on the session too.
    pub peer_account: Option<String>,
    status: AtomicU8,
    stats: Mutex<CallStats>,
    ended_at: Mutex<Option<Instant>>,
    media: Mutex<MediaRefs>,
    /// The opdata issued for a call to an app (checked byte for byte).
    opdata: Mutex<Option<String>>,
}

/// The relay legs behind a session, for the stats refresher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaRefs {
    /// (app leg, trunk leg).
    pub legs: Option<(LegKey, LegKey)>,
    pub answered_at: Option<Instant>,
    /// The media timeout has been reported (once).
    pub timed_out: bool,
}

impl CallView {
    pub fn new(
        session_id: String,
        account: String,
        device: Option<String>,
        kind: CallKind,
    ) -> CallView {
        CallView {
            session_id,
            account,
            device,
            kind,
            peer_account: None,
            status: AtomicU8::new(PeerStatus::Idle as u8),
            stats: Mutex::new(CallStats::default()),
            ended_at: Mutex::new(None),
            media: Mutex::new(MediaRefs::default()),
            opdata: Mutex::new(None),
        }
    }

    pub fn with_peer_account(mut self, account: String) -> CallView {
        self.peer_account = Some(account);
        self
    }

    /// True when `account` may act on this session.
    pub fn involves(&self, account: &str) -> bool {
        self.account == account || self.peer_account.as_deref() == Some(account)
    }

    pub fn status(&self) -> PeerStatus {
        PeerStatus::from_u8(self.status.load(Ordering::Acquire))
    }

    /// Moves the status forward; `release` is final.
    pub fn set_status(&self, status: PeerStatus) {
        let _ = self
            .status
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                (old != PeerStatus::Release as u8).then_some(status as u8)
            });
    }

    pub fn stats(&self) -> CallStats {
        *lock(&self.stats)
    }

    pub fn set_stats(&self, stats: CallStats) {
        *lock(&self.stats) = stats;
    }

    pub fn set_opdata(&self, opdata: String) {
        *lock(&self.opdata) = Some(opdata);
    }

    /// True when `opdata` is exactly the one issued for this call.
    pub fn opdata_matches(&self, opdata: &str) -> bool {
        lock(&self.opdata).as_deref() == Some(opdata)
    }

    pub fn set_legs(&self, app: LegKey, trunk: LegKey) {
        lock(&self.media).legs = Some((app, trunk));
    }

    pub fn set_answered(&self, at: Instant) {
        lock(&self.media).answered_at = Some(at);
    }

    pub fn media(&self) -> MediaRefs {
        *lock(&self.media)
    }

    /// Marks the media timeout as reported; true the first time only.
    pub fn take_timeout(&self) -> bool {
        let mut m = lock(&self.media);
        !std::mem::replace(&mut m.timed_out, true)
    }

    pub fn release(&self, now: Instant) {
        self.set_status(PeerStatus::Release);
        lock(&self.ended_at).get_or_insert(now);
    }

    fn ended_at(&self) -> Option<Instant> {
        *lock(&self.ended_at)
    }
}

/// The mutexes guard plain data that is always consistent: a poisoned one
/// (a panic elsewhere) is still safe to read.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every session the HTTP side can ask about.
#[derive(Debug)]
pub struct Registry {
    calls: RwLock<HashMap<String, Arc<CallView>>>,
    linger: Duration,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(Duration::from_secs(120))
    }
}

impl Registry {
    pub fn new(linger: Duration) -> Registry {
        Registry {
            calls: RwLock::new(HashMap::new()),
            linger,
        }
    }

    pub fn linger(&self) -> Duration {
        self.linger
    }

    pub fn insert(&self, view: Arc<CallView>) {
        self.write().insert(view.session_id.clone(), view);
    }

    pub fn get(&self, session_id: &str) -> Option<Arc<CallView>> {
        self.read().get(session_id).cloned()
    }

    /// Live (not released) sessions of an account.
    pub fn live_for_account(&self, account: &str) -> usize {
        self.read()
            .values()
            .filter(|v| v.account == account && v.status() != PeerStatus::Release)
            .count()
    }

    /// Sessions not yet released.
    pub fn live(&self) -> Vec<Arc<CallView>> {
        self.read()
            .values()
            .filter(|v| v.status() != PeerStatus::Release)
            .cloned()
            .collect()
    }

    /// Forgets sessions released longer than the linger time ago.
    pub fn sweep(&self, now: Instant) {
        let linger = self.linger;
        self.write().retain(|_, v| match v.ended_at() {
            Some(at) => now.saturating_duration_since(at) < linger,
            None => true,
        });
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<CallView>>> {
        self.calls.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<CallView>>> {
        self.calls.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A new session id: 128 random bits, hex, behind the node's prefix so a
/// later multi-node version can route a request to the owning node.
pub fn new_session_id(node: &str) -> String {
    format!("{node}-{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_is_final_and_lingers() {
        let reg = Registry::new(Duration::from_secs(10));
        let v = Arc::new(CallView::new(
            "n1-x".into(),
            "acc".into(),
            None,
            CallKind::Outbound,
        ));
        reg.insert(Arc::clone(&v));
        v.set_status(PeerStatus::Ring);
        assert_eq!(v.status(), PeerStatus::Ring);
        assert_eq!(reg.live_for_account("acc"), 1);
        let t0 = Instant::now();
        v.release(t0);
        v.set_status(PeerStatus::Hookoff);
        assert_eq!(v.status(), PeerStatus::Release);
        assert_eq!(reg.live_for_account("acc"), 0);
        reg.sweep(t0 + Duration::from_secs(5));
        assert!(reg.get("n1-x").is_some());
        reg.sweep(t0 + Duration::from_secs(11));
        assert!(reg.get("n1-x").is_none());
    }

    #[test]
    fn session_ids_are_unique_and_prefixed() {
        let a = new_session_id("n1");
        let b = new_session_id("n1");
        assert_ne!(a, b);
        assert!(a.starts_with("n1-"));
        assert_eq!(a.len(), 3 + 32);
    }
}
