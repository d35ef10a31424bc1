//! INVITE server transaction: RFC 3261 §17.2.1, with the Accepted state of
//! RFC 6026 §7.1 (Timer L, §8.4).
//!
//! The 100 Trying the transaction must send if the TU does not answer within
//! 200 ms (§17.2.1) is left to the endpoint, which builds responses; it
//! passes it through [`ServerInvite::send_response`] like any provisional.

use std::time::Instant;

use bytes::Bytes;

use super::timer::{Backoff, Timers};
use super::{Outputs, StatusClass, Timer, TimerConfig, TransactionEvent};

/// States of Figure 7 of RFC 3261 as amended by RFC 6026 Figure 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerInviteState {
    /// Waiting for the TU's final response; request retransmissions are
    /// answered with the last provisional.
    Proceeding,
    /// The TU sent a 2xx: request retransmissions are absorbed, ACKs and
    /// further 2xx from the TU pass through, until Timer L (RFC 6026).
    Accepted,
    /// A 300-699 was sent; Timer G retransmits it (unreliable transports)
    /// until the ACK arrives or Timer H gives up.
    Completed,
    /// The ACK arrived; its retransmissions are absorbed until Timer I.
    Confirmed,
    Terminated,
}

/// INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1).
#[derive(Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    /// The most recent provisional (Proceeding) or the non-2xx final
    /// (Completed): what a request retransmission or Timer G resends.
    last_response: Option<Bytes>,
    reliable: bool,
    cfg: TimerConfig,
    timers: Timers,
    backoff: Backoff,
    out: Outputs,
}

impl ServerInvite {
    /// A server transaction for an INVITE just received, in Proceeding.
    pub fn new(reliable: bool, cfg: &TimerConfig, _now: Instant) -> Self {
        Self {
            state: ServerInviteState::Proceeding,
            last_response: None,
            reliable,
            cfg: *cfg,
            timers: Timers::default(),
            backoff: Backoff::capped(cfg),
            out: Outputs::default(),
        }
    }

    /// Sends a response from the TU.
    ///
    /// * 1xx in Proceeding: sent, and remembered for request retransmissions.
    /// * 2xx in Proceeding: sent, then Accepted with Timer L = 64*T1.
    /// * 2xx in Accepted: sent (the TU core's §13.3.1.4 retransmissions pass
    ///   through here, RFC 6026 §7.1).
    /// * 300-699 in Proceeding: sent, then Completed with Timer G (unreliable
    ///   transports) and Timer H = 64*T1.
    ///
    /// Anything else is discarded: the TU has already given its final answer.
    pub fn send_response(&mut self, status: u16, response: Bytes, now: Instant) {
        use ServerInviteState::*;
        let Some(class) = StatusClass::of(status) else {
            return;
        };
        match (self.state, class) {
            (Proceeding, StatusClass::Provisional) => {
                self.out.transmit(response.clone());
                self.last_response = Some(response);
            }
            (Proceeding, StatusClass::Success) => {
                self.out.transmit(response);
                // Retransmitting the 2xx is the TU core's job, not ours.
                self.last_response = None;
                self.state = Accepted;
                self.timers.start(Timer::L, now, self.cfg.timeout());
            }
            (Accepted, StatusClass::Success) => self.out.transmit(response),
            (Proceeding, StatusClass::Failure) => {
                self.out.transmit(response.clone());
                self.last_response = Some(response);
                self.state = Completed;
                if !self.reliable {
                    self.timers.start(Timer::G, now, self.backoff.interval());
                }
                self.timers.start(Timer::H, now, self.cfg.timeout());
            }
            _ => {}
        }
    }

    /// The INVITE was received again. In Proceeding and Completed the last
    /// response (if any) is resent; in Accepted and Confirmed the
    /// retransmission is absorbed (RFC 6026 §7.1). Never passed to the TU.
    pub fn handle_request_retransmission(&mut self, _now: Instant) {
        use ServerInviteState::*;
        if let (Proceeding | Completed, Some(response)) = (self.state, &self.last_response) {
            self.out.transmit(response.clone());
        }
    }

    /// An ACK matched this transaction. Returns true when it must be passed
    /// to the TU: only in Accepted, where it acknowledges the 2xx. In
    /// Completed it moves to Confirmed (Timer I = T4, zero on reliable
    /// transports) and is absorbed, as are ACK retransmissions in Confirmed.
    pub fn handle_ack(&mut self, now: Instant) -> bool {
        use ServerInviteState::*;
        match self.state {
            Completed => {
                self.timers.cancel(Timer::G);
                self.timers.cancel(Timer::H);
                self.last_response = None;
                self.state = Confirmed;
                if self.reliable {
                    self.terminate(false);
                } else {
                    self.timers.start(Timer::I, now, self.cfg.t4);
                }
                false
            }
            Accepted => true,
            Proceeding | Confirmed | Terminated => false,
        }
    }

    /// The transport failed to send a response (§17.2.4; alternative
    /// destinations per RFC 3263 are the endpoint's business). The
    /// transaction terminates with [`TransactionEvent::Timeout`] while a
    /// response was still owed or unacknowledged (Proceeding, Completed).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        use ServerInviteState::*;
        match self.state {
            Proceeding | Completed => self.terminate(true),
            Accepted | Confirmed => self.terminate(false),
            Terminated => {}
        }
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

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ServerInviteState::*;
        while let Some((timer, deadline)) = self.timers.pop_due(now) {
            match (timer, self.state) {
                (Timer::G, Completed) => {
                    if let Some(response) = &self.last_response {
                        self.out.transmit(response.clone());
                    }
                    let interval = self.backoff.advance();
                    self.timers.restart(Timer::G, deadline, interval, now);
                }
                (Timer::H, Completed) => self.terminate(true),
                (Timer::I, Confirmed) | (Timer::L, Accepted) => self.terminate(false),
                _ => {}
            }
        }
    }

    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    fn terminate(&mut self, timeout: bool) {
        if self.state == ServerInviteState::Terminated {
            return;
        }
        self.state = ServerInviteState::Terminated;
        self.timers.clear();
        self.last_response = None;
        self.out.terminated(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cfg_with_t1, drain, events, ms, run, tx_times, Out};
    use super::*;
    use ServerInviteState::*;
    use TransactionEvent::{Terminated as Term, Timeout};

    fn ringing() -> Bytes {
        Bytes::from_static(b"180")
    }

    fn busy() -> Bytes {
        Bytes::from_static(b"486")
    }

    fn ok() -> Bytes {
        Bytes::from_static(b"200")
    }

    /// Acceptance 3: 486 over UDP, every ACK lost.
    #[test]
    fn udp_failure_retransmits_on_timer_g_and_gives_up_on_timer_h() {
        let start = Instant::now();
        let mut tx = ServerInvite::new(false, &TimerConfig::default(), start);
        assert_eq!(tx.state(), Proceeding);
        assert_eq!(tx.poll_timeout(), None);
        tx.send_response(486, busy(), start);
        assert_eq!(tx.state(), Completed);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(
            tx_times(&outs),
            [0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert!(outs
            .iter()
            .all(|(_, out)| !matches!(out, Out::Tx(m) if *m != busy())));
        assert_eq!(events(&outs), [(32_000, Timeout), (32_000, Term)]);
        assert!(tx.is_terminated());
    }

    /// Acceptance 4: reliable, no Timer G, Timer I = 0, still Timer H.
    #[test]
    fn reliable_no_retransmissions() {
        let start = Instant::now();
        let mut tx = ServerInvite::new(true, &TimerConfig::default(), start);
        tx.send_response(486, busy(), start);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(tx_times(&outs), [0]);
        assert_eq!(events(&outs), [(32_000, Timeout), (32_000, Term)]);

        let mut tx = ServerInvite::new(true, &TimerConfig::default(), start);
        tx.send_response(486, busy(), start);
        assert!(!tx.handle_ack(start + ms(30)));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(
            drain(&mut tx, start, start),
            [(0, Out::Tx(busy())), (0, Out::Event(Term))]
        );
    }

    /// Acceptance 5: T1 scales G and H.
    #[test]
    fn t1_scales_timers_g_and_h() {
        let start = Instant::now();
        let mut tx = ServerInvite::new(false, &cfg_with_t1(100), start);
        tx.send_response(500, busy(), start);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(tx_times(&outs), [0, 100, 300, 700, 1_500, 3_100, 6_300]);
        assert_eq!(events(&outs), [(6_400, Timeout), (6_400, Term)]);
    }

    #[test]
    fn ack_confirms_and_stops_retransmissions_until_timer_i() {
        let start = Instant::now();
        let mut tx = ServerInvite::new(false, &TimerConfig::default(), start);
        tx.send_response(180, ringing(), start);
        tx.handle_request_retransmission(start + ms(100));
        tx.send_response(486, busy(), start + ms(200));
        let (outs, _) = run(&mut tx, start, start, Some(start + ms(1_000)));
        assert_eq!(
            outs,
            [
                (0, Out::Tx(ringing())),
                (0, Out::Tx(ringing())),
                (0, Out::Tx(busy())),
                (700, Out::Tx(busy())),
            ]
        );
        // Request retransmission in Completed: resend the final.
        tx.handle_request_retransmission(start + ms(1_000));
        assert_eq!(tx.poll_transmit(), Some(busy()));

        assert!(!tx.handle_ack(start + ms(1_100)));
        assert_eq!(tx.state(), Confirmed);
        assert!(!tx.handle_ack(start + ms(1_200)));
        tx.handle_request_retransmission(start + ms(1_300));
        let (outs, _) = run(&mut tx, start, start + ms(1_300), None);
        assert_eq!(tx_times(&outs), Vec::<u64>::new());
        assert_eq!(events(&outs), [(6_100, Term)]);
    }

    #[test]
    fn proceeding_resends_last_provisional_and_ignores_ack() {
        let start = Instant::now();
        let mut tx = ServerInvite::new(false, &TimerConfig::default(), start);
        tx.handle_request_retransmission(start);
        assert_eq!(tx.poll_transmit(), None);
        tx.send_response(100, Bytes::from_static(b"100"), start);
        tx.send_response(180, ringing(), start);
        assert_eq!(tx.poll_transmit(), Some(Bytes::from_static(b"100")));
        assert_eq!(tx.poll_transmit(), Some(ringing()));
        tx.handle_request_retransmission(start);
        assert_eq!(tx.poll_transmit(), Some(ringing()));
        assert!(!tx.handle_ack(start));
        assert_eq!(tx.state(), Proceeding);
        assert_eq!(tx.poll_timeout(), None);
    }

    /// Acceptance 8: RFC 6026 Accepted state.
    #[test]
    fn accepted_absorbs_invites_passes_acks_up_and_ends_on_timer_l() {
        let start = Instant::now();
        let mut tx = ServerInvite::new(false, &TimerConfig::default(), start);
        tx.send_response(180, ringing(), start);
        tx.send_response(200, ok(), start + ms(1_000));
        assert_eq!(tx.state(), Accepted);
        assert_eq!(tx.poll_transmit(), Some(ringing()));
        assert_eq!(tx.poll_transmit(), Some(ok()));

        tx.handle_request_retransmission(start + ms(1_500));
        assert_eq!(tx.poll_transmit(), None);
        // The TU core's 2xx retransmissions pass through.
        tx.send_response(200, ok(), start + ms(1_500));
        assert_eq!(tx.poll_transmit(), Some(ok()));
        // Late non-2xx answers are discarded.
        tx.send_response(500, busy(), start + ms(1_600));
        tx.send_response(183, ringing(), start + ms(1_600));
        assert_eq!(tx.poll_transmit(), None);

        assert!(tx.handle_ack(start + ms(2_000)));
        assert!(tx.handle_ack(start + ms(2_500)));
        assert_eq!(tx.state(), Accepted);

        let (outs, _) = run(&mut tx, start, start + ms(2_500), None);
        assert_eq!(tx_times(&outs), Vec::<u64>::new());
        assert_eq!(events(&outs), [(33_000, Term)]);
        assert!(!tx.handle_ack(start + ms(34_000)));
    }

    /// Acceptance 9: the 486 and its first two retransmissions are lost;
    /// the third arrives and the ACK stops Timer G.
    #[test]
    fn lossy_udp_stops_retransmitting_at_ack() {
        let start = Instant::now();
        let mut tx = ServerInvite::new(false, &TimerConfig::default(), start);
        tx.send_response(486, busy(), start);
        let mut sent = Vec::new();
        let mut now = start;
        while sent.len() < 4 {
            while let Some(message) = tx.poll_transmit() {
                assert_eq!(message, busy());
                sent.push(now.duration_since(start).as_millis());
            }
            if sent.len() < 4 {
                now = tx.poll_timeout().unwrap();
                tx.handle_timeout(now);
            }
        }
        assert_eq!(sent, [0, 500, 1_500, 3_500]);
        assert!(!tx.handle_ack(now + ms(80)));
        assert_eq!(tx.state(), Confirmed);
        let (outs, _) = run(&mut tx, start, now + ms(80), None);
        assert_eq!(tx_times(&outs), Vec::<u64>::new());
        assert_eq!(events(&outs), [(8_580, Term)]);
    }

    #[test]
    fn transport_error_terminates() {
        let start = Instant::now();
        let mut tx = ServerInvite::new(false, &TimerConfig::default(), start);
        tx.send_response(486, busy(), start);
        tx.handle_transport_error(start);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(tx.poll_transmit(), Some(busy()));
        assert_eq!(tx.poll_event(), Some(Timeout));
        assert_eq!(tx.poll_event(), Some(Term));
    }
}
