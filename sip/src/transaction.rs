//! RFC 3261 §17 transactions, with the RFC 6026 corrections for INVITE.
//!
//! Four state machines, one per transaction kind:
//!
//! * [`ClientInvite`]: INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2),
//! * [`ClientNonInvite`]: non-INVITE client transaction (RFC 3261 §17.1.2),
//! * [`ServerInvite`]: INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1),
//! * [`ServerNonInvite`]: non-INVITE server transaction (RFC 3261 §17.2.2),
//!
//! plus [`Uas2xxRetransmitter`], the UAS core's 2xx retransmission of RFC 3261
//! §13.3.1.4, which RFC 3261 deliberately keeps outside the INVITE server
//! transaction.
//!
//! The machines are sans-IO and know nothing of SIP message syntax: they carry
//! already-serialized messages as [`Bytes`] and look only at status codes. The
//! endpoint parses, matches messages to transactions (§17.1.3, §17.2.3), builds
//! ACKs and responses, and drives the machines:
//!
//! * inputs are the `new`/`handle_*`/`send_response` calls, each given `now`,
//! * outputs are drained with `poll_transmit` (bytes for the wire) and
//!   `poll_event` ([`TransactionEvent`]),
//! * time advances only through `handle_timeout(now)`, scheduled by
//!   `poll_timeout()`.
//!
//! Output queues stay drainable after termination: on reliable transports a
//! machine can enter `Terminated` in the same call that queued its last message
//! (Timers D, I, J and K are zero there).

use std::collections::VecDeque;

use bytes::Bytes;

mod client_invite;
mod client_non_invite;
mod server_invite;
mod server_non_invite;
mod timer;
mod uas_2xx;

#[cfg(test)]
mod test_support;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use timer::{Timer, TimerConfig};
pub use uas_2xx::{Uas2xxRetransmitter, Uas2xxState};

/// What a transaction reports to its transaction user (TU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionEvent {
    /// The transaction gave up waiting.
    ///
    /// * Client transactions (Timer B or F, or a transport error before a
    ///   final response): the TU must act as if a 408 (or, for a transport
    ///   error, 503 — RFC 3261 §8.1.3.1) had arrived.
    /// * [`ServerInvite`] (Timer H, or a transport error): the ACK for the
    ///   non-2xx final never came.
    /// * [`Uas2xxRetransmitter`]: no ACK for the 2xx within 64*T1; the TU
    ///   should end the dialog with a BYE (RFC 3261 §13.3.1.4).
    ///
    /// Always followed by [`TransactionEvent::Terminated`].
    Timeout,
    /// The machine entered its terminal state; the endpoint can drop it once
    /// `poll_transmit` is drained.
    Terminated,
}

/// Response classes as the state machines see them (RFC 3261 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusClass {
    /// 100-199.
    Provisional,
    /// 200-299.
    Success,
    /// 300-699: the "non-2xx final" of §17.
    Failure,
}

impl StatusClass {
    /// `None` for codes outside 100-699, which §7.2 does not define; the
    /// machines ignore them rather than guess.
    fn of(status: u16) -> Option<Self> {
        match status {
            100..=199 => Some(Self::Provisional),
            200..=299 => Some(Self::Success),
            300..=699 => Some(Self::Failure),
            _ => None,
        }
    }
}

/// The two output queues every machine has.
#[derive(Debug, Default)]
struct Outputs {
    transmits: VecDeque<Bytes>,
    events: VecDeque<TransactionEvent>,
}

impl Outputs {
    fn transmit(&mut self, message: Bytes) {
        self.transmits.push_back(message);
    }

    fn event(&mut self, event: TransactionEvent) {
        self.events.push_back(event);
    }

    /// The end of every machine: `Timeout` first when it gave up waiting,
    /// then `Terminated`.
    fn terminated(&mut self, timeout: bool) {
        if timeout {
            self.event(TransactionEvent::Timeout);
        }
        self.event(TransactionEvent::Terminated);
    }

    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop_front()
    }
}
