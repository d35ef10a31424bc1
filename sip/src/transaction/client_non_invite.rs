//! Non-INVITE client transaction: RFC 3261 §17.1.2.

use std::time::Instant;

use bytes::Bytes;

use super::timer::{Backoff, Timers};
use super::{Outputs, StatusClass, Timer, TimerConfig, TransactionEvent};

/// States of Figure 6 of RFC 3261.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNonInviteState {
    /// Request sent; Timer E retransmits (unreliable transports) with
    /// doubling intervals capped at T2, Timer F gives up.
    Trying,
    /// A provisional arrived; Timer E keeps retransmitting, every T2.
    Proceeding,
    /// A final arrived; its retransmissions are absorbed until Timer K.
    Completed,
    Terminated,
}

/// Non-INVITE client transaction (RFC 3261 §17.1.2).
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    request: Bytes,
    reliable: bool,
    cfg: TimerConfig,
    timers: Timers,
    backoff: Backoff,
    out: Outputs,
}

impl ClientNonInvite {
    /// Starts the transaction in Trying and queues the first send of
    /// `request`. Timer E runs only on unreliable transports; Timer F
    /// (64*T1) always.
    pub fn new(request: Bytes, reliable: bool, cfg: &TimerConfig, now: Instant) -> Self {
        let mut transaction = Self {
            state: ClientNonInviteState::Trying,
            request: request.clone(),
            reliable,
            cfg: *cfg,
            timers: Timers::default(),
            backoff: Backoff::capped(cfg),
            out: Outputs::default(),
        };
        transaction.out.transmit(request);
        if !reliable {
            transaction
                .timers
                .start(Timer::E, now, transaction.backoff.interval());
        }
        transaction.timers.start(Timer::F, now, cfg.timeout());
        transaction
    }

    /// Feeds a response matched to this transaction. Returns true when it
    /// must be passed up to the TU: provisionals while Trying or Proceeding,
    /// and the first final. Retransmitted finals are absorbed.
    pub fn handle_response(&mut self, status: u16, now: Instant) -> bool {
        use ClientNonInviteState::*;
        let Some(class) = StatusClass::of(status) else {
            return false;
        };
        match (self.state, class) {
            (Trying | Proceeding, StatusClass::Provisional) => {
                // Timer E keeps its pending deadline; from its next firing on
                // it runs every T2 (§17.1.2.2).
                self.state = Proceeding;
                true
            }
            (Trying | Proceeding, StatusClass::Success | StatusClass::Failure) => {
                self.state = Completed;
                self.timers.cancel(Timer::E);
                self.timers.cancel(Timer::F);
                self.request = Bytes::new();
                if self.reliable {
                    // Timer K is zero on reliable transports.
                    self.terminate(false);
                } else {
                    self.timers.start(Timer::K, now, self.cfg.t4);
                }
                true
            }
            _ => false,
        }
    }

    /// The transport failed to send the request (§17.1.4): the transaction
    /// terminates, with [`TransactionEvent::Timeout`] if the TU is still
    /// waiting for a final response (it must act as if a 503 arrived,
    /// §8.1.3.1).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        use ClientNonInviteState::*;
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
        use ClientNonInviteState::*;
        while let Some((timer, deadline)) = self.timers.pop_due(now) {
            match (timer, self.state) {
                (Timer::E, Trying) => {
                    self.out.transmit(self.request.clone());
                    let interval = self.backoff.advance();
                    self.timers.restart(Timer::E, deadline, interval, now);
                }
                (Timer::E, Proceeding) => {
                    self.out.transmit(self.request.clone());
                    self.backoff.set(self.cfg.t2);
                    let interval = self.backoff.interval();
                    self.timers.restart(Timer::E, deadline, interval, now);
                }
                (Timer::F, Trying | Proceeding) => self.terminate(true),
                (Timer::K, Completed) => self.terminate(false),
                _ => {}
            }
        }
    }

    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    fn terminate(&mut self, timeout: bool) {
        if self.state == ClientNonInviteState::Terminated {
            return;
        }
        self.state = ClientNonInviteState::Terminated;
        self.timers.clear();
        self.request = Bytes::new();
        self.out.terminated(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cfg_with_t1, drain, events, ms, run, tx_times, Out};
    use super::*;
    use std::time::Duration;
    use ClientNonInviteState::*;
    use TransactionEvent::{Terminated as Term, Timeout};

    fn options() -> Bytes {
        Bytes::from_static(b"OPTIONS")
    }

    /// Intervals between successive transmissions.
    fn intervals(times: &[u64]) -> Vec<u64> {
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Acceptance 2: all requests lost over UDP.
    #[test]
    fn udp_all_lost_backs_off_to_t2_and_times_out_on_timer_f() {
        let start = Instant::now();
        let mut tx = ClientNonInvite::new(options(), false, &TimerConfig::default(), start);
        assert_eq!(tx.state(), Trying);
        let (outs, _) = run(&mut tx, start, start, None);
        let times = tx_times(&outs);
        assert_eq!(
            times,
            [0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert_eq!(
            intervals(&times),
            [500, 1_000, 2_000, 4_000, 4_000, 4_000, 4_000, 4_000, 4_000, 4_000]
        );
        assert_eq!(events(&outs), [(32_000, Timeout), (32_000, Term)]);
        assert!(tx.is_terminated());
    }

    /// Acceptance 2: in Proceeding, Timer E fires every T2.
    #[test]
    fn proceeding_retransmits_every_t2() {
        let start = Instant::now();
        let mut tx = ClientNonInvite::new(options(), false, &TimerConfig::default(), start);
        let (outs, _) = run(&mut tx, start, start, Some(start + ms(600)));
        assert_eq!(tx_times(&outs), [0, 500]);

        assert!(tx.handle_response(100, start + ms(600)));
        assert_eq!(tx.state(), Proceeding);
        let (outs, _) = run(&mut tx, start, start + ms(600), None);
        // The pending E (1.5 s) still fires, then every T2 = 4 s.
        let times = tx_times(&outs);
        assert_eq!(
            times,
            [1_500, 5_500, 9_500, 13_500, 17_500, 21_500, 25_500, 29_500]
        );
        assert_eq!(events(&outs), [(32_000, Timeout), (32_000, Term)]);
    }

    /// Acceptance 4: no retransmissions on reliable transports; Timer K = 0.
    #[test]
    fn reliable_no_retransmissions_and_no_timer_k() {
        let start = Instant::now();
        let mut tx = ClientNonInvite::new(options(), true, &TimerConfig::default(), start);
        assert_eq!(tx.poll_transmit(), Some(options()));
        assert_eq!(tx.poll_timeout(), Some(start + ms(32_000)));
        assert!(tx.handle_response(200, start + ms(10)));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(tx.poll_event(), Some(Term));
        assert_eq!(tx.poll_transmit(), None);

        let mut tx = ClientNonInvite::new(options(), true, &TimerConfig::default(), start);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(tx_times(&outs), [0]);
        assert_eq!(events(&outs), [(32_000, Timeout), (32_000, Term)]);
    }

    /// Acceptance 5: T1 scales E and F; E still caps at T2.
    #[test]
    fn t1_scales_timers_e_and_f() {
        let start = Instant::now();
        let cfg = TimerConfig {
            t1: ms(100),
            t2: ms(1_000),
            t4: ms(2_000),
        };
        let mut tx = ClientNonInvite::new(options(), false, &cfg, start);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(
            tx_times(&outs),
            [0, 100, 300, 700, 1_500, 2_500, 3_500, 4_500, 5_500]
        );
        assert_eq!(events(&outs), [(6_400, Timeout), (6_400, Term)]);

        // Timer K = T4.
        let mut tx = ClientNonInvite::new(options(), false, &cfg, start);
        assert!(tx.handle_response(404, start + ms(50)));
        let (outs, _) = run(&mut tx, start, start + ms(50), None);
        assert_eq!(events(&outs), [(2_050, Term)]);

        let mut tx = ClientNonInvite::new(options(), false, &cfg_with_t1(250), start);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(events(&outs), [(16_000, Timeout), (16_000, Term)]);
    }

    #[test]
    fn final_passed_up_once_and_absorbed_until_timer_k() {
        let start = Instant::now();
        let mut tx = ClientNonInvite::new(options(), false, &TimerConfig::default(), start);
        assert_eq!(drain(&mut tx, start, start), [(0, Out::Tx(options()))]);
        assert!(tx.handle_response(200, start + ms(100)));
        assert_eq!(tx.state(), Completed);
        assert!(!tx.handle_response(200, start + ms(600)));
        assert!(!tx.handle_response(100, start + ms(700)));
        assert!(!tx.handle_response(500, start + ms(800)));
        let (outs, _) = run(&mut tx, start, start + ms(800), None);
        assert_eq!(tx_times(&outs), Vec::<u64>::new());
        assert_eq!(events(&outs), [(5_100, Term)]);
    }

    /// Acceptance 9: deterministic loss; requests 1, 2 and 3 are lost, the
    /// 4th is answered 100 then 200 (the 100 lost too).
    #[test]
    fn lossy_udp_stops_retransmitting_at_final_response() {
        let start = Instant::now();
        let mut tx = ClientNonInvite::new(options(), false, &TimerConfig::default(), start);
        let mut sent = Vec::new();
        let mut now = start;
        loop {
            while let Some(message) = tx.poll_transmit() {
                assert_eq!(message, options());
                sent.push(now);
            }
            if sent.len() == 4 {
                break;
            }
            assert_eq!(tx.state(), Trying);
            now = tx.poll_timeout().unwrap();
            tx.handle_timeout(now);
        }
        let times: Vec<u128> = sent
            .iter()
            .map(|t| t.duration_since(start).as_millis())
            .collect();
        assert_eq!(times, [0, 500, 1_500, 3_500]);

        // The UAS answers the 4th copy 100 ms later with 200; its retransmission
        // of the 200 (for a copy that also arrived) is absorbed.
        now += ms(100);
        assert!(tx.handle_response(200, now));
        assert_eq!(tx.state(), Completed);
        assert!(!tx.handle_response(200, now + ms(10)));
        let (outs, _) = run(&mut tx, start, now, None);
        assert_eq!(tx_times(&outs), Vec::<u64>::new());
        assert_eq!(events(&outs), [(8_600, Term)]);
    }

    #[test]
    fn transport_error_reports_timeout_before_final() {
        let start = Instant::now();
        let mut tx = ClientNonInvite::new(options(), false, &TimerConfig::default(), start);
        tx.handle_transport_error(start);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(Timeout));
        assert_eq!(tx.poll_event(), Some(Term));
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn degenerate_zero_config_terminates_instead_of_spinning() {
        let start = Instant::now();
        let cfg = TimerConfig {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::ZERO,
        };
        let mut tx = ClientNonInvite::new(options(), false, &cfg, start);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(tx_times(&outs), [0]);
        assert_eq!(events(&outs), [(0, Timeout), (0, Term)]);

        // T2 below T1: the interval stays positive and F still ends it.
        let cfg = TimerConfig {
            t1: ms(10),
            t2: Duration::ZERO,
            t4: Duration::ZERO,
        };
        let mut tx = ClientNonInvite::new(options(), false, &cfg, start);
        let (outs, _) = run(&mut tx, start, start, None);
        assert_eq!(tx_times(&outs).len(), 631);
        assert_eq!(events(&outs), [(640, Timeout), (640, Term)]);
    }
}
