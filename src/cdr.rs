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

use crate::store::{now_ms, CallRecordEnd, CallRecordStart, CallRecordWrite, Store, StoreError};
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

/// Most events one batch takes from the queue.
const MAX_BATCH: usize = 2048;
/// How long the writer lets events gather after the first of a batch: a
/// call's start, ring and answer (a few ms apart) then fold into one row
/// insert, and the transaction's fixed cost is shared by many calls. Records
/// reach the database this much later; the SIP loop never waits either way.
const LINGER: std::time::Duration = std::time::Duration::from_millis(25);

/// Drains the queue into the store until every sink is dropped. Whatever is
/// queued when the writer gets to it is written as one batch in one
/// transaction ([`Store::write_call_records`]), each call's events folded
/// into one write, so the cost per record falls as the call rate rises. A
/// batch that fails is retried (the database may be restarting) a few times
/// with a growing pause, then replayed event by event so one bad record
/// (say, a duplicate session) cannot take the others down with it; what
/// still fails is logged and given up: the live row then stays for the next
/// start to close.
pub fn spawn_writer<S: Store + Clone>(
    store: S,
    mut rx: mpsc::UnboundedReceiver<CdrEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ids: HashMap<String, i64> = HashMap::new();
        let mut events = Vec::new();
        while let Some(first) = rx.recv().await {
            events.clear();
            events.push(first);
            tokio::time::sleep(LINGER).await;
            while events.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(ev) => events.push(ev),
                    Err(_) => break,
                }
            }
            let batch = fold(&events, &ids);
            let written = if batch.writes.is_empty() {
                Some(Vec::new())
            } else {
                write_batch(&store, &batch.writes).await
            };
            match written {
                Some(written) => {
                    ids.extend(batch.known);
                    for session in &batch.ended {
                        ids.remove(session);
                    }
                    for ((session_id, w), id) in
                        batch.sessions.into_iter().zip(&batch.writes).zip(written)
                    {
                        if let (Some(id), None) = (id, &w.end) {
                            ids.insert(session_id, id);
                        }
                    }
                }
                None => {
                    for ev in events.drain(..) {
                        write_one(&store, &mut ids, ev).await;
                    }
                }
            }
        }
    })
}

/// One batch in one transaction; `None` when it did not go in (then nothing
/// of it did). Only database errors are worth a retry: a conflict stays one.
async fn write_batch<S: Store>(store: &S, writes: &[CallRecordWrite]) -> Option<Vec<Option<i64>>> {
    let mut pause = std::time::Duration::from_millis(50);
    for attempt in 1..=3 {
        match store.write_call_records(writes).await {
            Ok(ids) => return Some(ids),
            Err(e @ StoreError::Db(_)) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "call record batch failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => {
                tracing::warn!(error = %e, "call record batch failed; writing its records one by one");
                return None;
            }
        }
    }
    None
}

/// A batch of events folded into one write per call.
#[derive(Debug, Default)]
struct Batch {
    /// Each write's session, in the order of each call's first event.
    sessions: Vec<String>,
    writes: Vec<CallRecordWrite>,
    /// Rows the HTTP side inserted (`Known`).
    known: Vec<(String, i64)>,
    /// Sessions whose end is in the batch.
    ended: Vec<String>,
}

/// Folds a batch of events into one write per call (the writer's id map
/// as it was before the batch stays untouched until the batch is written).
fn fold(events: &[CdrEvent], ids: &HashMap<String, i64>) -> Batch {
    let mut batch = Batch::default();
    // Session → its write in this batch (None: ended here, no more writes).
    let mut at: HashMap<&str, Option<usize>> = HashMap::new();
    let mut known: HashMap<&str, i64> = HashMap::new();
    for ev in events {
        let (session, slot) = match ev {
            CdrEvent::Start(start) => {
                batch.writes.push(CallRecordWrite {
                    start: Some(start.clone()),
                    ..CallRecordWrite::default()
                });
                batch.sessions.push(start.session_id.clone());
                at.insert(start.session_id.as_str(), Some(batch.writes.len() - 1));
                continue;
            }
            CdrEvent::Known { session_id, id } => {
                known.insert(session_id.as_str(), *id);
                batch.known.push((session_id.clone(), *id));
                continue;
            }
            CdrEvent::Ringing { session_id, .. }
            | CdrEvent::Answered { session_id, .. }
            | CdrEvent::End { session_id, .. } => {
                let slot = match at.get(session_id.as_str()) {
                    Some(slot) => *slot,
                    None => {
                        // A row from before this batch (or none at all).
                        let id = known
                            .get(session_id.as_str())
                            .or_else(|| ids.get(session_id))
                            .copied();
                        id.map(|id| {
                            batch.writes.push(CallRecordWrite {
                                id: Some(id),
                                ..CallRecordWrite::default()
                            });
                            batch.sessions.push(session_id.clone());
                            at.insert(session_id.as_str(), Some(batch.writes.len() - 1));
                            batch.writes.len() - 1
                        })
                    }
                };
                (session_id, slot)
            }
        };
        let w = slot.and_then(|i| batch.writes.get_mut(i));
        match (ev, w) {
            (CdrEvent::Ringing { ms, .. }, Some(w)) => w.ring_ms = w.ring_ms.or(Some(*ms)),
            (CdrEvent::Answered { ms, .. }, Some(w)) => w.answer_ms = w.answer_ms.or(Some(*ms)),
            (CdrEvent::End { end, .. }, w) => {
                match w {
                    Some(w) => {
                        w.end = Some(end.clone());
                        batch.ended.push(session.clone());
                    }
                    None => tracing::error!(session = %session, "call ended without a record"),
                }
                at.insert(session.as_str(), None);
            }
            _ => {}
        }
    }
    batch
}

/// One event on its own (the replay of a batch that failed).
async fn write_one<S: Store>(store: &S, ids: &mut HashMap<String, i64>, ev: CdrEvent) {
    match ev {
        CdrEvent::Start(start) => {
            let session_id = start.session_id.clone();
            if let Some(id) = retry("insert", || store.insert_live(&start), 5).await {
                ids.insert(session_id, id);
            }
        }
        CdrEvent::Known { session_id, id } => {
            ids.insert(session_id, id);
        }
        CdrEvent::Ringing { session_id, ms } => {
            if let Some(&id) = ids.get(&session_id) {
                let _ = retry("ringing", || store.set_ringing(id, ms), 5).await;
            }
        }
        CdrEvent::Answered { session_id, ms } => {
            if let Some(&id) = ids.get(&session_id) {
                let _ = retry("answered", || store.set_answered(id, ms), 5).await;
            }
        }
        CdrEvent::End { session_id, end } => match ids.remove(&session_id) {
            Some(id) => {
                let _ = retry("finalize", || store.finalize(id, &end), 5).await;
            }
            None => tracing::error!(session = %session_id, "call ended without a record"),
        },
    }
}

async fn retry<T, F, Fut>(what: &str, mut op: F, attempts: u32) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::store::StoreResult<T>>,
{
    let mut pause = std::time::Duration::from_millis(50);
    for attempt in 1..=attempts {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) if attempt < attempts => {
                tracing::warn!(error = %e, attempt, "call record {what} failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => tracing::error!(error = %e, "call record {what} failed; giving up"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallKind, Outcome};

    fn start(session: &str) -> CdrEvent {
        CdrEvent::Start(CallRecordStart {
            session_id: session.to_owned(),
            account: None,
            peer_account: None,
            caller: "1".to_owned(),
            callee: "2".to_owned(),
            kind: CallKind::Transit,
            trunk: None,
            call_ms: 1,
            node: "n".to_owned(),
        })
    }

    fn end(session: &str) -> CdrEvent {
        CdrEvent::End {
            session_id: session.to_owned(),
            end: CallRecordEnd {
                ring_ms: None,
                answer_ms: None,
                end_ms: 9,
                outcome: Outcome::Answered,
                sip_status: None,
                codecs: String::new(),
                quality: None,
                trunk: None,
            },
        }
    }

    fn ring(session: &str, ms: i64) -> CdrEvent {
        CdrEvent::Ringing {
            session_id: session.to_owned(),
            ms,
        }
    }

    fn answer(session: &str, ms: i64) -> CdrEvent {
        CdrEvent::Answered {
            session_id: session.to_owned(),
            ms,
        }
    }

    #[test]
    fn fold_gives_one_write_per_call() {
        let ids = HashMap::from([("old".to_owned(), 7)]);
        let events = [
            start("a"),
            ring("old", 5),
            ring("a", 2),
            ring("a", 3),
            CdrEvent::Known {
                session_id: "app".to_owned(),
                id: 9,
            },
            answer("app", 4),
            answer("a", 6),
            end("old"),
            end("a"),
            // Nothing to write for these: no record, or already ended.
            ring("unknown", 1),
            end("a"),
            answer("old", 8),
        ];
        let b = fold(&events, &ids);
        assert_eq!(b.sessions, ["a", "old", "app"]);
        let [a, old, app] = &b.writes[..] else {
            panic!("{:?}", b.writes);
        };
        assert!(a.start.is_some() && a.id.is_none());
        assert_eq!((a.ring_ms, a.answer_ms), (Some(2), Some(6)));
        assert!(a.end.is_some());
        assert_eq!(
            (old.id, old.ring_ms, old.answer_ms),
            (Some(7), Some(5), None)
        );
        assert!(old.end.is_some());
        assert_eq!(
            (app.id, app.answer_ms, app.end.is_some()),
            (Some(9), Some(4), false)
        );
        assert_eq!(b.known, [("app".to_owned(), 9)]);
        assert_eq!(b.ended, ["old", "a"]);
    }
}
