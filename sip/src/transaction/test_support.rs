//! Virtual-time driver shared by the state machine tests.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, TimerConfig, TransactionEvent,
    Uas2xxRetransmitter,
};

/// The poll API every machine has, so one driver serves all of them.
pub(super) trait Fsm {
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_event(&mut self) -> Option<TransactionEvent>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
}

macro_rules! impl_fsm {
    ($($ty:ty),*) => {$(
        impl Fsm for $ty {
            fn poll_transmit(&mut self) -> Option<Bytes> { <$ty>::poll_transmit(self) }
            fn poll_event(&mut self) -> Option<TransactionEvent> { <$ty>::poll_event(self) }
            fn poll_timeout(&self) -> Option<Instant> { <$ty>::poll_timeout(self) }
            fn handle_timeout(&mut self, now: Instant) { <$ty>::handle_timeout(self, now) }
        }
    )*};
}

impl_fsm!(
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
    Uas2xxRetransmitter
);

/// One output, stamped with its virtual time in milliseconds since the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Out {
    Tx(Bytes),
    Event(TransactionEvent),
}

pub(super) fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

pub(super) fn cfg_with_t1(t1_ms: u64) -> TimerConfig {
    TimerConfig {
        t1: ms(t1_ms),
        ..TimerConfig::default()
    }
}

/// Everything the machine has queued, stamped `now`.
pub(super) fn drain(fsm: &mut impl Fsm, start: Instant, now: Instant) -> Vec<(u64, Out)> {
    let at = u64::try_from(now.duration_since(start).as_millis()).unwrap();
    let mut outs = Vec::new();
    while let Some(message) = fsm.poll_transmit() {
        outs.push((at, Out::Tx(message)));
    }
    while let Some(event) = fsm.poll_event() {
        outs.push((at, Out::Event(event)));
    }
    outs
}

/// Drains at `now`, then jumps from deadline to deadline (`now =
/// poll_timeout(); handle_timeout(now)`) while deadlines are at or before
/// `until` (forever if `None`). Returns the outputs and the virtual time
/// reached.
pub(super) fn run(
    fsm: &mut impl Fsm,
    start: Instant,
    now: Instant,
    until: Option<Instant>,
) -> (Vec<(u64, Out)>, Instant) {
    let mut outs = drain(fsm, start, now);
    let mut now = now;
    let mut steps = 0;
    while let Some(deadline) = fsm.poll_timeout() {
        if until.is_some_and(|until| deadline > until) {
            break;
        }
        assert!(deadline >= now, "deadline in the past");
        now = deadline;
        fsm.handle_timeout(now);
        outs.extend(drain(fsm, start, now));
        steps += 1;
        assert!(steps < 10_000, "runaway timers");
    }
    (outs, until.unwrap_or(now).max(now))
}

/// Instants (ms) of the transmissions in `outs`.
pub(super) fn tx_times(outs: &[(u64, Out)]) -> Vec<u64> {
    outs.iter()
        .filter(|(_, out)| matches!(out, Out::Tx(_)))
        .map(|(at, _)| *at)
        .collect()
}

/// The events in `outs`, with their instants (ms).
pub(super) fn events(outs: &[(u64, Out)]) -> Vec<(u64, TransactionEvent)> {
    outs.iter()
        .filter_map(|(at, out)| match out {
            Out::Event(event) => Some((*at, *event)),
            Out::Tx(_) => None,
        })
        .collect()
}
