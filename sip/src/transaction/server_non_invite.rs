//! Non-INVITE server transaction: RFC 3261 §17.2.2.

use std::time::Instant;

use bytes::Bytes;

use super::timer::Timers;
use super::{Outputs, StatusClass, Timer, TimerConfig, TransactionEvent};

/// States of Figure 8 of RFC 3261.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerNonInviteState {
    /// Request received, nothing sent yet; retransmissions are discarded.
    Trying,
    /// A provisional was sent; retransmissions get it again.
    Proceeding,
    /// A final was sent; retransmissions get it again until Timer J.
    Completed,
    Terminated,
}

/// Non-INVITE server transaction (RFC 3261 §17.2.2).
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    /// The most recent response sent, for request retransmissions.
    last_response: Option<Bytes>,
    reliable: bool,
    cfg: TimerConfig,
    timers: Timers,
    out: Outputs,
}

impl ServerNonInvite {
    /// A server transaction for a non-INVITE request just received, in
    /// Trying.
    pub fn new(reliable: bool, cfg: &TimerConfig, _now: Instant) -> Self {
        Self {
            state: ServerNonInviteState::Trying,
            last_response: None,
            reliable,
            cfg: *cfg,
            timers: Timers::default(),
            out: Outputs::default(),
        }
    }

    /// Sends a response from the TU: a 1xx moves to (or stays in)
    /// Proceeding; a final moves to Completed with Timer J = 64*T1 (zero on
    /// reliable transports). Responses after the final are discarded.
    pub fn send_response(&mut self, status: u16, response: Bytes, now: Instant) {
        use ServerNonInviteState::*;
        let Some(class) = StatusClass::of(status) else {
            return;
        };
        match (self.state, class) {
            (Trying | Proceeding, StatusClass::Provisional) => {
                self.out.transmit(response.clone());
                self.last_response = Some(response);
                self.state = Proceeding;
            }
            (Trying | Proceeding, StatusClass::Success | StatusClass::Failure) => {
                self.out.transmit(response.clone());
                self.last_response = Some(response);
                self.state = Completed;
                if self.reliable {
                    // Timer J is zero on reliable transports: no request
                    // retransmissions to absorb.
                    self.terminate(false);
                } else {
                    self.timers.start(Timer::J, now, self.cfg.timeout());
                }
            }
            _ => {}
        }
    }

    /// The request was received again: resend the last response in
    /// Proceeding or Completed, nothing in Trying. Never passed to the TU.
    pub fn handle_request_retransmission(&mut self, _now: Instant) {
        use ServerNonInviteState::*;
        if let (Proceeding | Completed, Some(response)) = (self.state, &self.last_response) {
            self.out.transmit(response.clone());
        }
    }

    /// The transport failed to send a response (§17.2.4): the transaction
    /// terminates, with [`TransactionEvent::Timeout`] if no final response
    /// was handed to the transport yet.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        use ServerNonInviteState::*;
        match self.state {
            Trying | Proceeding => self.terminate(true),
            Completed => self.terminate(false),
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
        while let Some((timer, _)) = self.timers.pop_due(now) {
            if (timer, self.state) == (Timer::J, ServerNonInviteState::Completed) {
                self.terminate(false);
            }
        }
    }

    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    fn terminate(&mut self, timeout: bool) {
        if self.state == ServerNonInviteState::Terminated {
            return;
        }
        self.state = ServerNonInviteState::Terminated;
        self.timers.clear();
        self.last_response = None;
        self.out.terminated(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cfg_with_t1, drain, events, ms, run, tx_times, Out};
    use super::*;
    use ServerNonInviteState::*;
    use TransactionEvent::{Terminated as Term, Timeout};

    fn trying() -> Bytes {
        Bytes::from_static(b"100")
    }

    fn ok() -> Bytes {
        Bytes::from_static(b"200")
    }

    /// Acceptance 7.
    #[test]
    fn retransmissions_get_the_last_response_until_timer_j() {
        let start = Instant::now();
        let mut tx = ServerNonInvite::new(false, &TimerConfig::default(), start);
        assert_eq!(tx.state(), Trying);
        // Trying: the retransmission is discarded.
        tx.handle_request_retransmission(start + ms(500));
        assert_eq!(tx.poll_transmit(), None);

        tx.send_response(100, trying(), start + ms(600));
        assert_eq!(tx.state(), Proceeding);
        assert_eq!(tx.poll_transmit(), Some(trying()));
        tx.handle_request_retransmission(start + ms(1_500));
        assert_eq!(tx.poll_transmit(), Some(trying()));

        tx.send_response(200, ok(), start + ms(2_000));
        assert_eq!(tx.state(), Completed);
        assert_eq!(tx.poll_transmit(), Some(ok()));
        assert_eq!(tx.poll_timeout(), Some(start + ms(34_000)));

        for i in 0..3u64 {
            tx.handle_request_retransmission(start + ms(3_500 + 4_000 * i));
            assert_eq!(tx.poll_transmit(), Some(ok()));
            assert_eq!(tx.poll_transmit(), None);
        }
        // The TU cannot change its answer.
        tx.send_response(500, trying(), start + ms(20_000));
        tx.send_response(180, trying(), start + ms(20_000));
        assert_eq!(tx.poll_transmit(), None);

        let (outs, _) = run(&mut tx, start, start + ms(20_000), None);
        assert_eq!(tx_times(&outs), Vec::<u64>::new());
        assert_eq!(events(&outs), [(34_000, Term)]);
        tx.handle_request_retransmission(start + ms(35_000));
        assert_eq!(tx.poll_transmit(), None);
    }

    /// Acceptance 4: Timer J = 0 on reliable transports.
    #[test]
    fn reliable_terminates_with_the_final() {
        let start = Instant::now();
        let mut tx = ServerNonInvite::new(true, &TimerConfig::default(), start);
        tx.send_response(404, ok(), start);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(
            drain(&mut tx, start, start),
            [(0, Out::Tx(ok())), (0, Out::Event(Term))]
        );
    }

    /// Acceptance 5.
    #[test]
    fn t1_scales_timer_j() {
        let start = Instant::now();
        let mut tx = ServerNonInvite::new(false, &cfg_with_t1(100), start);
        tx.send_response(200, ok(), start);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(tx_times(&outs), [0]);
        assert_eq!(events(&outs), [(6_400, Term)]);
    }

    /// Acceptance 9: the 200 is lost twice; each retransmitted request gets
    /// it again; the server never retransmits on its own.
    #[test]
    fn lossy_udp_responses_are_resent_only_on_request() {
        let start = Instant::now();
        let mut tx = ServerNonInvite::new(false, &TimerConfig::default(), start);
        tx.send_response(200, ok(), start + ms(10));
        // The first copy of the 200 is queued, then lost on the wire.
        assert_eq!(tx.poll_transmit(), Some(ok()));
        let mut now = start + ms(10);
        for at in [500, 1_500, 3_500] {
            // Nothing is sent on the server's own initiative...
            let (outs, reached) = run(&mut tx, start, now, Some(start + ms(at)));
            assert_eq!(tx_times(&outs), Vec::<u64>::new());
            // ...only in answer to a retransmitted request.
            tx.handle_request_retransmission(reached);
            assert_eq!(tx.poll_transmit(), Some(ok()));
            assert_eq!(tx.poll_transmit(), None);
            now = reached;
        }
        assert_eq!(tx.state(), Completed);
        let (outs, _) = run(&mut tx, start, start + ms(3_500), None);
        assert_eq!(tx_times(&outs), Vec::<u64>::new());
        assert_eq!(events(&outs), [(32_010, Term)]);
    }

    #[test]
    fn transport_error_before_final_reports_timeout() {
        let start = Instant::now();
        let mut tx = ServerNonInvite::new(false, &TimerConfig::default(), start);
        tx.send_response(100, trying(), start);
        tx.handle_transport_error(start);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(Timeout));
        assert_eq!(tx.poll_event(), Some(Term));
    }
}
