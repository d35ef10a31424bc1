//! Call detail records as the call layer produces them, and the sink it
//! hands them to.
//!
//! Every call leaves exactly one record: a `live` row when it starts, the
//! same row finalized when it ends (DESIGN.md "Durability"). The SIP loop
//! never waits for the database: it pushes [`CdrEvent`]s into an unbounded
//! queue that one writer task drains in order (so a call's start is always
//! written before its end), and shutdown drains the queue before exit.
//! App calls are written `live` by the HTTP request that starts them, before
//! any SIP goes out, so not even a crash right after the start loses one.

use std::time::SystemTime;
use tokio::sync::mpsc;

/// What is known when a call starts.
#[derive(Clone, Debug, PartialEq)]
pub struct CallStart {
    pub session_id: String,
    /// `outbound`, `transit`, ...
    pub kind: &'static str,
    /// The account the call belongs to (empty for transit calls).
    pub account: String,
    pub caller: String,
    pub callee: String,
    pub trunk: Option<String>,
    pub call_time: SystemTime,
}

/// What is known when it ends.
#[derive(Clone, Debug, PartialEq)]
pub struct CallEnd {
    pub session_id: String,
    pub ring_time: Option<SystemTime>,
    pub answer_time: Option<SystemTime>,
    pub end_time: SystemTime,
    /// `answered`, `cancelled`, `rejected`, `failed`, `timeout`,
    /// `media_timeout`, `shutdown`, ...
    pub outcome: &'static str,
    /// The final SIP status of the trunk leg, when there was one.
    pub sip_status: Option<u16>,
    /// Codecs per leg, e.g. `app=AMR trunk=PCMA`.
    pub codecs: String,
    /// The final quality figures (API.md `stats`), as JSON.
    pub quality: serde_json::Value,
}

impl CallEnd {
    /// Whole seconds between answer and end (0 if never answered).
    pub fn duration_s(&self) -> u64 {
        self.answer_time
            .and_then(|a| self.end_time.duration_since(a).ok())
            .map_or(0, |d| d.as_secs_f64().round() as u64)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum CdrEvent {
    Start(CallStart),
    End(CallEnd),
}

/// The call layer's end of the record queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct CdrSink {
    tx: mpsc::UnboundedSender<CdrEvent>,
}

impl CdrSink {
    pub fn new() -> (CdrSink, mpsc::UnboundedReceiver<CdrEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (CdrSink { tx }, rx)
    }

    pub fn start(&self, start: CallStart) {
        self.send(CdrEvent::Start(start));
    }

    pub fn end(&self, end: CallEnd) {
        self.send(CdrEvent::End(end));
    }

    fn send(&self, ev: CdrEvent) {
        if self.tx.send(ev).is_err() {
            // Only after the writer stopped, i.e. at the very end of
            // shutdown; the live row (if any) is closed at the next start.
            tracing::error!("call record writer gone: record left live");
        }
    }
}
