//! INVITE client transaction: RFC 3261 §17.1.1, with the Accepted state of
//! RFC 6026 §7.2 (Timer M, §8.4).

use std::time::Instant;

use bytes::Bytes;

use super::timer::{Backoff, Timers};
use super::{Outputs, StatusClass, Timer, TimerConfig, TransactionEvent};

/// States of Figure 5 of RFC 3261 as amended by RFC 6026 Figure 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientInviteState {
    /// Request sent, nothing heard yet; Timer A retransmits (unreliable
    /// transports), Timer B gives up.
    Calling,
    /// A provisional response arrived; no more retransmissions.
    Proceeding,
    /// A 2xx arrived; further 2xx (from other forks, or retransmissions) go
    /// to the TU until Timer M fires (RFC 6026).
    Accepted,
    /// A 300-699 arrived and was ACKed; retransmissions of it are re-ACKed
    /// until Timer D fires.
    Completed,
    Terminated,
}

/// INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2).
#[derive(Debug)]
pub struct ClientInvite {
    state: ClientInviteState,
    /// The INVITE, kept for Timer A while Calling.
    request: Bytes,
    /// The ACK for the non-2xx final, resent for each of its retransmissions.
    ack: Option<Bytes>,
    reliable: bool,
    cfg: TimerConfig,
    timers: Timers,
    backoff: Backoff,
    out: Outputs,
}

impl ClientInvite {
    /// Starts the transaction in Calling and queues the first send of
    /// `request`. Timer A runs only on unreliable transports (§17.1.1.2);
    /// Timer B (64*T1) always.
    pub fn new(request: Bytes, reliable: bool, cfg: &TimerConfig, now: Instant) -> Self {
        let mut transaction = Self {
            state: ClientInviteState::Calling,
            request: request.clone(),
            ack: None,
            reliable,
            cfg: *cfg,
            timers: Timers::default(),
            backoff: Backoff::uncapped(cfg),
            out: Outputs::default(),
        };
        transaction.out.transmit(request);
        if !reliable {
            transaction
                .timers
                .start(Timer::A, now, transaction.backoff.interval());
        }
        transaction.timers.start(Timer::B, now, cfg.timeout());
        transaction
    }

    /// Feeds a response matched to this transaction. Returns true when it
    /// must be passed up to the TU:
    ///
    /// * every provisional while Calling or Proceeding,
    /// * the first final response,
    /// * every 2xx while Accepted: the TU ACKs each 2xx itself (RFC 6026 §7.2).
    ///
    /// For 300-699, `ack` is the ACK the endpoint built for this response
    /// (§17.1.1.3). It is sent now and again for every retransmission of the
    /// final response while Completed; `None` ACKs nothing. For other
    /// responses `ack` is ignored.
    pub fn handle_response(&mut self, status: u16, ack: Option<Bytes>, now: Instant) -> bool {
        use ClientInviteState::*;
        let Some(class) = StatusClass::of(status) else {
            return false;
        };
        match (self.state, class) {
            (Calling | Proceeding, StatusClass::Provisional) => {
                // §17.1.1.2: no retransmissions in Proceeding, and Timer B
                // only applies to Calling.
                self.leave_calling();
                self.state = Proceeding;
                true
            }
            (Calling | Proceeding, StatusClass::Success) => {
                self.leave_calling();
                self.state = Accepted;
                self.timers.start(Timer::M, now, self.cfg.timeout());
                true
            }
            (Calling | Proceeding, StatusClass::Failure) => {
                self.leave_calling();
                self.state = Completed;
                if let Some(ack) = ack {
                    self.out.transmit(ack.clone());
                    self.ack = Some(ack);
                }
                if self.reliable {
                    // Timer D is zero on reliable transports: there are no
                    // retransmissions of the final to absorb.
                    self.terminate(false);
                } else {
                    self.timers.start(Timer::D, now, self.cfg.timer_d());
                }
                true
            }
            (Completed, StatusClass::Failure) => {
                // A retransmission of the final: our ACK was lost.
                if let Some(ack) = &self.ack {
                    self.out.transmit(ack.clone());
                }
                false
            }
            (Accepted, StatusClass::Success) => true,
            _ => false,
        }
    }

    /// The transport failed to send the INVITE or the ACK (§17.1.4): the
    /// transaction terminates. If the TU is still waiting for a final
    /// response it gets [`TransactionEvent::Timeout`] and must act as if a
    /// 503 arrived (§8.1.3.1).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        use ClientInviteState::*;
        match self.state {
            Calling | Proceeding => self.terminate(true),
            Accepted | Completed => self.terminate(false),
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
        use ClientInviteState::*;
        while let Some((timer, deadline)) = self.timers.pop_due(now) {
            match (timer, self.state) {
                (Timer::A, Calling) => {
                    self.out.transmit(self.request.clone());
                    let interval = self.backoff.advance();
                    self.timers.restart(Timer::A, deadline, interval, now);
                }
                (Timer::B, Calling) => self.terminate(true),
                (Timer::D, Completed) | (Timer::M, Accepted) => self.terminate(false),
                // Timers are cancelled on every state change; anything else
                // is stale and harmless.
                _ => {}
            }
        }
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    fn leave_calling(&mut self) {
        self.timers.cancel(Timer::A);
        self.timers.cancel(Timer::B);
        // Only Timer A needs the request; let its buffer go.
        self.request = Bytes::new();
    }

    fn terminate(&mut self, timeout: bool) {
        if self.state == ClientInviteState::Terminated {
            return;
        }
        self.state = ClientInviteState::Terminated;
        self.timers.clear();
        self.ack = None;
        self.out.terminated(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cfg_with_t1, drain, events, ms, run, tx_times, Out};
    use super::*;
    use ClientInviteState::*;
    use TransactionEvent::{Terminated as Term, Timeout};

    fn invite() -> Bytes {
        Bytes::from_static(b"INVITE")
    }

    fn ack() -> Bytes {
        Bytes::from_static(b"ACK")
    }

    /// Acceptance 1: all requests lost over UDP.
    #[test]
    fn udp_all_lost_retransmits_on_timer_a_and_times_out_on_timer_b() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, &TimerConfig::default(), start);
        assert_eq!(tx.state(), Calling);
        let (outs, end) = run(&mut tx, start, start, None);
        assert_eq!(
            tx_times(&outs),
            [0, 500, 1_500, 3_500, 7_500, 15_500, 31_500]
        );
        assert!(outs
            .iter()
            .all(|(_, out)| !matches!(out, Out::Tx(m) if *m != invite())));
        assert_eq!(events(&outs), [(32_000, Timeout), (32_000, Term)]);
        assert_eq!(end, start + ms(32_000));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }

    /// Acceptance 4: reliable transport, no retransmissions, still Timer B.
    #[test]
    fn reliable_no_retransmissions_but_timer_b() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), true, &TimerConfig::default(), start);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(tx_times(&outs), [0]);
        assert_eq!(events(&outs), [(32_000, Timeout), (32_000, Term)]);
    }

    /// Acceptance 5: T1 scales A and B.
    #[test]
    fn t1_scales_timers_a_and_b() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, &cfg_with_t1(100), start);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(tx_times(&outs), [0, 100, 300, 700, 1_500, 3_100, 6_300]);
        assert_eq!(events(&outs), [(6_400, Timeout), (6_400, Term)]);
    }

    /// Acceptance 6: non-2xx final over UDP.
    #[test]
    fn udp_failure_is_acked_once_per_final_and_passed_up_once() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, &TimerConfig::default(), start);
        assert_eq!(drain(&mut tx, start, start).len(), 1);

        let t = start + ms(200);
        assert!(tx.handle_response(180, None, t));
        assert_eq!(tx.state(), Proceeding);
        assert!(tx.handle_response(180, None, t));
        assert_eq!(tx.poll_transmit(), None);

        let t = start + ms(1_000);
        assert!(tx.handle_response(486, Some(ack()), t));
        assert_eq!(tx.state(), Completed);
        assert_eq!(drain(&mut tx, start, t), [(1_000, Out::Tx(ack()))]);

        // Each retransmission of the final is re-ACKed and absorbed.
        for i in 1..=3u64 {
            let t = start + ms(1_000 + 500 * i);
            assert!(!tx.handle_response(486, Some(ack()), t));
            assert_eq!(tx.poll_transmit(), Some(ack()));
            assert_eq!(tx.poll_transmit(), None);
        }
        // Other responses in Completed are dropped.
        assert!(!tx.handle_response(200, None, start + ms(3_000)));
        assert!(!tx.handle_response(180, None, start + ms(3_000)));
        assert_eq!(tx.poll_transmit(), None);

        let (outs, _) = run(&mut tx, start, start + ms(3_000), None);
        assert_eq!(tx_times(&outs), Vec::<u64>::new());
        assert_eq!(events(&outs), [(33_000, Term)]);
        assert!(!tx.handle_response(486, Some(ack()), start + ms(40_000)));
        assert_eq!(tx.poll_transmit(), None);
    }

    /// Acceptance 6 and 4: Timer D is zero on reliable transports.
    #[test]
    fn reliable_failure_terminates_immediately_after_ack() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), true, &TimerConfig::default(), start);
        assert_eq!(tx.poll_transmit(), Some(invite()));
        let t = start + ms(50);
        assert!(tx.handle_response(603, Some(ack()), t));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(
            drain(&mut tx, start, t),
            [(50, Out::Tx(ack())), (50, Out::Event(Term))]
        );
    }

    /// Acceptance 8: RFC 6026 Accepted state.
    #[test]
    fn accepted_passes_every_2xx_up_until_timer_m() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, &TimerConfig::default(), start);
        let t = start + ms(700);
        let (outs, _) = run(&mut tx, start, start, Some(t));
        assert_eq!(tx_times(&outs), [0, 500]);

        assert!(tx.handle_response(200, None, t));
        assert_eq!(tx.state(), Accepted);
        // The FSM never ACKs a 2xx; the TU does.
        assert_eq!(tx.poll_transmit(), None);
        assert!(tx.handle_response(200, None, start + ms(1_200)));
        assert!(tx.handle_response(200, None, start + ms(2_200)));
        assert!(!tx.handle_response(180, None, start + ms(2_300)));
        assert!(!tx.handle_response(500, Some(ack()), start + ms(2_400)));
        assert_eq!(tx.poll_transmit(), None);

        let (outs, _) = run(&mut tx, start, start + ms(2_400), None);
        assert_eq!(tx_times(&outs), Vec::<u64>::new());
        assert_eq!(events(&outs), [(32_700, Term)]);
        assert!(!tx.handle_response(200, None, start + ms(33_000)));
    }

    /// Acceptance 9: deterministic loss; the first three INVITEs are lost,
    /// the fourth gets through and the answer stops the retransmissions.
    #[test]
    fn lossy_udp_stops_retransmitting_at_final_response() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, &TimerConfig::default(), start);
        let mut sent = Vec::new();
        let mut now = start;
        // Loss pattern over successive transmissions: drop, drop, drop, deliver.
        let delivered = |n: usize| n >= 3;
        loop {
            let mut delivered_at = None;
            while let Some(message) = tx.poll_transmit() {
                assert_eq!(message, invite());
                if delivered(sent.len()) {
                    delivered_at = Some(now);
                }
                sent.push(now.duration_since(start).as_millis());
            }
            if let Some(at) = delivered_at {
                // One RTT later: 100 Trying, then a 486 which we ACK.
                assert_eq!(tx.state(), Calling);
                assert!(tx.handle_response(100, None, at + ms(40)));
                assert_eq!(tx.state(), Proceeding);
                assert!(tx.handle_response(486, Some(ack()), at + ms(900)));
                assert_eq!(tx.state(), Completed);
                now = at + ms(900);
                break;
            }
            now = tx.poll_timeout().unwrap();
            tx.handle_timeout(now);
        }
        assert_eq!(sent, [0, 500, 1_500, 3_500]);
        let (outs, _) = run(&mut tx, start, now, None);
        // Only the ACK; no INVITE after the final response.
        assert_eq!(tx_times(&outs), [4_400]);
        assert_eq!(outs.first().map(|(_, out)| out), Some(&Out::Tx(ack())));
        assert_eq!(events(&outs), [(36_400, Term)]);
    }

    #[test]
    fn proceeding_has_no_timer_b() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, &TimerConfig::default(), start);
        assert!(tx.handle_response(100, None, start + ms(100)));
        assert_eq!(tx.poll_timeout(), None);
        assert!(tx.handle_response(183, None, start + ms(100_000)));
        assert!(tx.handle_response(200, None, start + ms(200_000)));
        assert_eq!(tx.state(), Accepted);
    }

    #[test]
    fn transport_error_before_final_reports_timeout() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, &TimerConfig::default(), start);
        tx.handle_transport_error(start);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(tx.poll_event(), Some(Timeout));
        assert_eq!(tx.poll_event(), Some(Term));
        assert_eq!(tx.poll_event(), None);
        tx.handle_transport_error(start);
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn transport_error_after_final_only_terminates() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, &TimerConfig::default(), start);
        assert!(tx.handle_response(404, Some(ack()), start));
        tx.handle_transport_error(start);
        assert_eq!(tx.poll_event(), Some(Term));
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn invalid_status_codes_are_ignored() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, &TimerConfig::default(), start);
        assert!(!tx.handle_response(99, None, start));
        assert!(!tx.handle_response(700, None, start));
        assert_eq!(tx.state(), Calling);
    }

    #[test]
    fn late_driver_sends_one_retransmission_not_a_burst() {
        let start = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, &TimerConfig::default(), start);
        assert_eq!(tx.poll_transmit(), Some(invite()));
        tx.handle_timeout(start + ms(4_000));
        assert_eq!(tx.poll_transmit(), Some(invite()));
        assert_eq!(tx.poll_transmit(), None);
        // The schedule resumes from the late firing.
        assert_eq!(tx.poll_timeout(), Some(start + ms(5_000)));
    }
}
