//! Call detail records: the queue from the call layer to the store.
//!
//! Every call leaves exactly one record: a `live` row when it starts, the
//! same row finalized when it ends (DESIGN.md "Durability"). The SIP loop
//! never waits for the database: it pushes [`CdrEvent`]s into an unbounded
//! queue that one writer task drains in order, so a call's start is always
//! written before its ring, answer and end. App calls are written `live` by
//! the HTTP request that starts them, before any SIP goes out
//! ([`CdrEvent::Known`] then tells the writer the row's id). Shutdown closes
//! the queue and waits for the writer, so every ended call is on disk before
//! the process exits; a crash leaves `live` rows that the next start closes
//! as `switch_restart` ([`crate::store::recover_node`]).

use crate::store::{now_ms, CallRecordEnd, CallRecordStart, Store};
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[derive(Clone, Debug, PartialEq)]
pub enum CdrEvent {
    /// Insert the live row.
    Start(CallRecordStart),
    /// The live row was inserted by someone else (the HTTP start of an app call).
    Known {
        session_id: String,
        id: i64,
    },
    Ringing {
        session_id: String,
        ms: i64,
    },
    Answered {
        session_id: String,
        ms: i64,
    },
    End {
        session_id: String,
        end: CallRecordEnd,
    },
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

    pub fn send(&self, ev: CdrEvent) {
        if self.tx.send(ev).is_err() {
            // Only after the writer stopped, at the very end of shutdown;
            // the live row (if any) is closed at the next start.
            tracing::error!("call record writer gone: record left live");
        }
    }

    pub fn ringing(&self, session_id: &str) {
        self.send(CdrEvent::Ringing {
            session_id: session_id.to_owned(),
            ms: now_ms(),
        });
    }

    pub fn answered(&self, session_id: &str) {
        self.send(CdrEvent::Answered {
            session_id: session_id.to_owned(),
            ms: now_ms(),
        });
    }
}

/// Drains the queue into the store until every sink is dropped. A write
/// that fails is retried (the database may be restarting) a few times with
/// a growing pause before it is logged and given up: the live row then
/// stays for the next start to close.
pub fn spawn_writer<S: Store + Clone>(
    store: S,
    mut rx: mpsc::UnboundedReceiver<CdrEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ids: HashMap<String, i64> = HashMap::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                CdrEvent::Start(start) => {
                    let session_id = start.session_id.clone();
                    if let Some(id) = retry("insert", || store.insert_live(&start)).await {
                        ids.insert(session_id, id);
                    }
                }
                CdrEvent::Known { session_id, id } => {
                    ids.insert(session_id, id);
                }
                CdrEvent::Ringing { session_id, ms } => {
                    if let Some(&id) = ids.get(&session_id) {
                        let _ = retry("ringing", || store.set_ringing(id, ms)).await;
                    }
                }
                CdrEvent::Answered { session_id, ms } => {
                    if let Some(&id) = ids.get(&session_id) {
                        let _ = retry("answered", || store.set_answered(id, ms)).await;
                    }
                }
                CdrEvent::End { session_id, end } => match ids.remove(&session_id) {
                    Some(id) => {
                        let _ = retry("finalize", || store.finalize(id, &end)).await;
                    }
                    None => {
                        tracing::error!(session = %session_id, "call ended without a record")
                    }
                },
            }
        }
    })
}

async fn retry<T, F, Fut>(what: &str, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::store::StoreResult<T>>,
{
    let mut pause = std::time::Duration::from_millis(50);
    for attempt in 1..=5 {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) if attempt < 5 => {
                tracing::warn!(error = %e, attempt, "call record {what} failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => tracing::error!(error = %e, "call record {what} failed; giving up"),
        }
    }
    None
}
