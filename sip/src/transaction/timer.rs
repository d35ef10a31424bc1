//! Transaction timers: RFC 3261 §17.1.1.1 and Appendix A (Table 4), RFC 6026
//! §8.4 (Timers L and M).

use std::time::{Duration, Instant};

/// The base timer values every transaction timer is derived from (RFC 3261
/// Appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; initial retransmission interval. Default 500 ms.
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE
    /// responses. Default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network. Default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J, L and M, and the §13.3.1.4 ACK wait.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D on unreliable transports.
    ///
    /// RFC 3261 only says "at least 32 seconds". The client stays in
    /// Completed to absorb the server's final-response retransmissions,
    /// which last up to Timer H = 64*T1, so a T1 above 500 ms raises it too.
    pub fn timer_d(&self) -> Duration {
        self.timeout().max(Duration::from_secs(32))
    }
}

/// Transaction timers, named as in RFC 3261 Table 4 and RFC 6026 §8.4.
///
/// [`Uas2xxRetransmitter`](super::Uas2xxRetransmitter) has no named timers in
/// RFC 3261 §13.3.1.4; it reuses G (retransmission, same schedule) and H
/// (64*T1 ACK wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmission (client, unreliable only).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Wait for response retransmissions (client INVITE, Completed).
    D,
    /// Non-INVITE request retransmission (client, unreliable only).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// INVITE final response retransmission (server, unreliable only).
    G,
    /// Wait for ACK receipt (server INVITE, Completed).
    H,
    /// Wait for ACK retransmissions (server INVITE, Confirmed).
    I,
    /// Wait for non-INVITE request retransmissions (server, Completed).
    J,
    /// Wait for response retransmissions (client non-INVITE, Completed).
    K,
    /// Wait for INVITE request retransmissions after a 2xx (server INVITE,
    /// Accepted; RFC 6026).
    L,
    /// Wait for 2xx retransmissions (client INVITE, Accepted; RFC 6026).
    M,
}

impl Timer {
    /// Retransmission timers lose ties against the others: when a
    /// retransmission and a timeout fall due at the same instant, the
    /// transaction is over and sending once more would be pointless.
    fn is_retransmission(self) -> bool {
        matches!(self, Self::A | Self::E | Self::G)
    }
}

/// Smallest retransmission interval used, whatever the configuration says:
/// a zero interval would make `handle_timeout` spin.
const MIN_RETRANSMIT_INTERVAL: Duration = Duration::from_millis(1);

/// The armed timers of one machine. At most three are armed at a time, so a
/// small vector beats any map.
#[derive(Debug, Default)]
pub(super) struct Timers {
    armed: Vec<(Timer, Instant)>,
}

impl Timers {
    /// (Re)starts `timer` to fire `after` from `now`. A deadline beyond what
    /// `Instant` can represent can only come from an absurd configuration;
    /// such a timer never fires.
    pub(super) fn start(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.cancel(timer);
        if let Some(deadline) = now.checked_add(after) {
            self.armed.push((timer, deadline));
        }
    }

    /// Re-arms a retransmission timer that fired with `deadline`.
    ///
    /// The next deadline counts from the previous one, not from `now`, so the
    /// schedule stays exact however late the driver calls. If the driver is
    /// so late that the next deadline is already past, the missed
    /// retransmissions are skipped rather than sent in a burst.
    pub(super) fn restart(
        &mut self,
        timer: Timer,
        deadline: Instant,
        interval: Duration,
        now: Instant,
    ) {
        let next = deadline.checked_add(interval).filter(|next| *next > now);
        match next {
            Some(next) => {
                self.cancel(timer);
                self.armed.push((timer, next));
            }
            None => self.start(timer, now, interval),
        }
    }

    pub(super) fn cancel(&mut self, timer: Timer) {
        self.armed.retain(|(armed, _)| *armed != timer);
    }

    pub(super) fn clear(&mut self) {
        self.armed.clear();
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.armed.iter().map(|(_, deadline)| *deadline).min()
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Timer, Instant)> {
        let position = self
            .armed
            .iter()
            .enumerate()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .min_by_key(|(_, (timer, deadline))| (*deadline, timer.is_retransmission()))
            .map(|(position, _)| position)?;
        Some(self.armed.swap_remove(position))
    }
}

/// Retransmission interval: starts at T1 and doubles on each retransmission,
/// capped at T2 for Timers E and G (RFC 3261 §17.1.2.2, §17.2.1) and
/// uncapped for Timer A (§17.1.1.2).
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    interval: Duration,
    cap: Option<Duration>,
}

impl Backoff {
    /// Timer A.
    pub(super) fn uncapped(cfg: &TimerConfig) -> Self {
        Self {
            interval: cfg.t1.max(MIN_RETRANSMIT_INTERVAL),
            cap: None,
        }
    }

    /// Timers E and G.
    pub(super) fn capped(cfg: &TimerConfig) -> Self {
        Self {
            interval: cfg.t1.max(MIN_RETRANSMIT_INTERVAL),
            cap: Some(cfg.t2),
        }
    }

    pub(super) fn interval(&self) -> Duration {
        self.interval
    }

    /// Doubles the interval and returns the new one.
    pub(super) fn advance(&mut self) -> Duration {
        let doubled = self.interval.saturating_mul(2);
        let capped = self.cap.map_or(doubled, |cap| doubled.min(cap));
        // A T2 below T1 must not shrink the interval below the minimum.
        self.interval = capped.max(MIN_RETRANSMIT_INTERVAL);
        self.interval
    }

    /// Pins the interval, e.g. Timer E at T2 in Proceeding.
    pub(super) fn set(&mut self, interval: Duration) {
        self.interval = interval.max(MIN_RETRANSMIT_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rfc_3261_values() {
        let cfg = TimerConfig::default();
        assert_eq!(cfg.t1, Duration::from_millis(500));
        assert_eq!(cfg.t2, Duration::from_secs(4));
        assert_eq!(cfg.t4, Duration::from_secs(5));
        assert_eq!(cfg.timeout(), Duration::from_secs(32));
        assert_eq!(cfg.timer_d(), Duration::from_secs(32));
    }

    #[test]
    fn timer_d_is_at_least_32_s_and_covers_timer_h() {
        let small = TimerConfig {
            t1: Duration::from_millis(100),
            ..TimerConfig::default()
        };
        assert_eq!(small.timer_d(), Duration::from_secs(32));
        let large = TimerConfig {
            t1: Duration::from_secs(1),
            ..TimerConfig::default()
        };
        assert_eq!(large.timer_d(), Duration::from_secs(64));
    }

    #[test]
    fn capped_backoff_doubles_up_to_t2() {
        let mut backoff = Backoff::capped(&TimerConfig::default());
        let intervals: Vec<u128> = std::iter::once(backoff.interval())
            .chain((0..5).map(|_| backoff.advance()))
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(intervals, [500, 1000, 2000, 4000, 4000, 4000]);
    }

    #[test]
    fn zero_intervals_are_clamped() {
        let cfg = TimerConfig {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::ZERO,
        };
        let mut backoff = Backoff::capped(&cfg);
        assert_eq!(backoff.interval(), MIN_RETRANSMIT_INTERVAL);
        assert_eq!(backoff.advance(), MIN_RETRANSMIT_INTERVAL);
    }

    #[test]
    fn ties_go_to_the_timeout() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.start(Timer::A, now, Duration::from_secs(1));
        timers.start(Timer::B, now, Duration::from_secs(1));
        let due = now + Duration::from_secs(1);
        assert_eq!(timers.pop_due(due), Some((Timer::B, due)));
        assert_eq!(timers.pop_due(due), Some((Timer::A, due)));
        assert_eq!(timers.pop_due(due), None);
    }

    #[test]
    fn late_restart_skips_missed_deadlines() {
        let now = Instant::now();
        let mut timers = Timers::default();
        let late = now + Duration::from_secs(10);
        timers.restart(Timer::E, now, Duration::from_secs(1), late);
        assert_eq!(timers.next_deadline(), Some(late + Duration::from_secs(1)));
        timers.restart(Timer::E, late, Duration::from_secs(1), late);
        assert_eq!(timers.next_deadline(), Some(late + Duration::from_secs(1)));
    }
}
