//! 2xx retransmission by the UAS core: RFC 3261 §13.3.1.4.
//!
//! The INVITE server transaction hands a 2xx to the transport once and leaves
//! (RFC 3261 §17.2.1; Accepted in RFC 6026), because the 2xx and its ACK are
//! end-to-end. Reliability then rests on the UAS core: it retransmits the
//! 2xx with the Timer G schedule (T1 doubling, capped at T2) until the ACK
//! arrives, and after 64*T1 without an ACK it gives up and ends the session
//! with a BYE. RFC 3261 names neither timer; [`Timer::G`] and [`Timer::H`]
//! are reused since the schedule is theirs.
//!
//! Over reliable transports the 2xx is not retransmitted (the transport
//! delivers it), but the ACK is still awaited for 64*T1.

use std::time::Instant;

use bytes::Bytes;

use super::timer::{Backoff, Timers};
use super::{Outputs, Timer, TimerConfig, TransactionEvent};

/// States of a [`Uas2xxRetransmitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Uas2xxState {
    /// 2xx sent, ACK not yet received.
    WaitingForAck,
    /// ACK received, or given up.
    Terminated,
}

/// Retransmits a 2xx to INVITE until its ACK arrives (RFC 3261 §13.3.1.4).
#[derive(Debug)]
pub struct Uas2xxRetransmitter {
    state: Uas2xxState,
    response: Bytes,
    timers: Timers,
    backoff: Backoff,
    out: Outputs,
}

impl Uas2xxRetransmitter {
    /// Queues the first send of `response` and starts waiting for the ACK.
    pub fn new(response: Bytes, reliable: bool, cfg: &TimerConfig, now: Instant) -> Self {
        let mut retransmitter = Self {
            state: Uas2xxState::WaitingForAck,
            response: response.clone(),
            timers: Timers::default(),
            backoff: Backoff::capped(cfg),
            out: Outputs::default(),
        };
        retransmitter.out.transmit(response);
        if !reliable {
            retransmitter
                .timers
                .start(Timer::G, now, retransmitter.backoff.interval());
        }
        retransmitter.timers.start(Timer::H, now, cfg.timeout());
        retransmitter
    }

    /// The ACK for the 2xx arrived: stop retransmitting and terminate.
    pub fn handle_ack(&mut self, _now: Instant) {
        self.terminate(false);
    }

    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.out.poll_event()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Fires every timer due at or before `now`. When the ACK wait expires
    /// the TU gets [`TransactionEvent::Timeout`] and should send a BYE.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((timer, deadline)) = self.timers.pop_due(now) {
            match (timer, self.state) {
                (Timer::G, Uas2xxState::WaitingForAck) => {
                    self.out.transmit(self.response.clone());
                    let interval = self.backoff.advance();
                    self.timers.restart(Timer::G, deadline, interval, now);
                }
                (Timer::H, Uas2xxState::WaitingForAck) => self.terminate(true),
                _ => {}
            }
        }
    }

    pub fn state(&self) -> Uas2xxState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == Uas2xxState::Terminated
    }

    fn terminate(&mut self, timeout: bool) {
        if self.state == Uas2xxState::Terminated {
            return;
        }
        self.state = Uas2xxState::Terminated;
        self.timers.clear();
        self.response = Bytes::new();
        self.out.terminated(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cfg_with_t1, events, ms, run, tx_times};
    use super::*;
    use TransactionEvent::{Terminated as Term, Timeout};

    fn ok() -> Bytes {
        Bytes::from_static(b"200")
    }

    /// Acceptance 3: no ACK over UDP.
    #[test]
    fn udp_no_ack_retransmits_capped_at_t2_and_times_out_at_64_t1() {
        let start = Instant::now();
        let mut uas = Uas2xxRetransmitter::new(ok(), false, &TimerConfig::default(), start);
        assert_eq!(uas.state(), Uas2xxState::WaitingForAck);
        let (outs, _) = run(&mut uas, start, start, None);
        assert_eq!(
            tx_times(&outs),
            [0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert_eq!(events(&outs), [(32_000, Timeout), (32_000, Term)]);
        assert!(uas.is_terminated());
    }

    /// Acceptance 4: reliable, no retransmissions, still the ACK timeout.
    #[test]
    fn reliable_no_retransmissions_but_ack_timeout() {
        let start = Instant::now();
        let mut uas = Uas2xxRetransmitter::new(ok(), true, &TimerConfig::default(), start);
        let (outs, _) = run(&mut uas, start, start, None);
        assert_eq!(tx_times(&outs), [0]);
        assert_eq!(events(&outs), [(32_000, Timeout), (32_000, Term)]);
    }

    /// Acceptance 5.
    #[test]
    fn t1_scales_everything() {
        let start = Instant::now();
        let mut uas = Uas2xxRetransmitter::new(ok(), false, &cfg_with_t1(100), start);
        let (outs, _) = run(&mut uas, start, start, None);
        assert_eq!(tx_times(&outs), [0, 100, 300, 700, 1_500, 3_100, 6_300]);
        assert_eq!(events(&outs), [(6_400, Timeout), (6_400, Term)]);
    }

    /// Acceptance 9: the first two copies are lost, the ACK for the third
    /// arrives and nothing is sent after it.
    #[test]
    fn ack_stops_retransmissions() {
        let start = Instant::now();
        let mut uas = Uas2xxRetransmitter::new(ok(), false, &TimerConfig::default(), start);
        let (outs, _) = run(&mut uas, start, start, Some(start + ms(1_600)));
        assert_eq!(tx_times(&outs), [0, 500, 1_500]);
        uas.handle_ack(start + ms(1_600));
        assert!(uas.is_terminated());
        assert_eq!(uas.poll_timeout(), None);
        assert_eq!(uas.poll_event(), Some(Term));
        assert_eq!(uas.poll_event(), None);
        assert_eq!(uas.poll_transmit(), None);
        uas.handle_ack(start + ms(1_700));
        assert_eq!(uas.poll_event(), None);
    }
}
