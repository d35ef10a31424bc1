#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The push channel (long poll + queue) on SQLite and PostgreSQL, and the provider
//! clients against local stand-ins for APNs and FCM that check requests the way the
//! real services do (HTTP/2, headers, JWT signatures, payloads).

mod store_harness;

use std::collections::HashSet;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_2048_8192_SHA256,
};
use serde_json::{json, Value};
use softswitch::push::{
    ApnsConfig, FcmConfig, HubOptions, PollOutcome, Provider, PushConfig, PushError, PushHub,
    RetryPolicy,
};
use softswitch::store::{AnyStore, NewAccount, NewLogin, PushDelivery, Store};
use store_harness::TestDb;
use tokio::net::TcpListener;
use tokio_rustls::rustls;

both_backends!(
    poll_returns_queued_events_at_once_in_order,
    poll_waits_and_is_woken_by_notify,
    poll_idle_timeout_returns_empty,
    events_survive_a_restart_in_order,
    newer_poll_replaces_older,
    concurrent_polls_never_share_an_event,
    two_processes_never_share_an_event,
    resume_by_last_seq_returns_missed_events,
    gap_after_retention,
    purger_applies_retention,
    direct_enqueue_reaches_a_waiting_poll,
    notify_addresses_the_current_login,
    poll_session_hands_over_then_unlogined,
    tokens_register_replace_move,
    apns_push_and_poll_both_get_the_event,
    apns_retries_after_500_and_records_both,
    apns_410_drops_the_token,
    fcm_push_with_oauth_token,
    fcm_unregistered_drops_the_token,
);

const ACC: &str = "8613800138000";
const DEV: &str = "dev-b";

// ---------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------

fn options(recheck: Duration) -> HubOptions {
    HubOptions {
        recheck,
        retry: RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
        ..HubOptions::default()
    }
}

fn hub_with(store: AnyStore, config: &PushConfig, recheck: Duration) -> PushHub<AnyStore> {
    PushHub::with_options(store, config, options(recheck)).unwrap()
}

fn hub(store: AnyStore) -> PushHub<AnyStore> {
    hub_with(store, &PushConfig::default(), Duration::from_millis(200))
}

async fn login(store: &AnyStore, account: &str, device: &str) {
    if store.get_account(account).await.unwrap().is_none() {
        store
            .create_account(&NewAccount {
                uuid: account.to_owned(),
                name: String::new(),
                pwd_hash: "x".to_owned(),
                group: "app".to_owned(),
                active: true,
                info: json!({}),
                phone: None,
                created_ms: 1,
            })
            .await
            .unwrap();
    }
    store
        .put_login(&NewLogin {
            account: account.to_owned(),
            device: device.to_owned(),
            token_hash: format!("hash-{account}-{device}"),
            created_ms: 2,
        })
        .await
        .unwrap();
}

fn ev(n: i64) -> Value {
    json!({"event": "p2p_inform_called", "caller": format!("100{n}"), "opdata": format!("op{n}")})
}

fn seqs(out: &PollOutcome) -> Vec<i64> {
    out.events
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

async fn poll(hub: &PushHub<AnyStore>, last: Option<i64>, idle_ms: u64) -> PollOutcome {
    hub.poll(ACC, DEV, last, Duration::from_millis(idle_ms))
        .await
        .unwrap()
}

/// Waits until `cond` holds (checked every 10 ms), failing after 10 s.
async fn eventually<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn deliveries(store: &AnyStore) -> Vec<PushDelivery> {
    store.push_deliveries(ACC, DEV, 100).await.unwrap()
}

/// Pushes one event to the registered token, which the provider answers
/// `http_status` (`reason`): the token is dropped, and so is the delivery.
async fn push_drops_the_token(
    hub: &PushHub<AnyStore>,
    store: &AnyStore,
    http_status: i64,
    reason: &str,
) {
    hub.notify(ACC, Some(DEV), ev(1)).await.unwrap();
    hub.flush().await;
    assert!(store.push_tokens(ACC, DEV).await.unwrap().is_empty());
    let d = deliveries(store).await;
    assert_eq!(d.len(), 1);
    assert_eq!(
        (
            d[0].status.as_str(),
            d[0].http_status,
            d[0].reason.as_deref()
        ),
        ("dropped", Some(http_status), Some(reason))
    );
}

// ---------------------------------------------------------------------------------
// the long poll
// ---------------------------------------------------------------------------------

async fn poll_returns_queued_events_at_once_in_order(db: TestDb) {
    let hub = hub(db.open().await);
    let mut issued = Vec::new();
    for n in 0..3 {
        issued.push(hub.notify(ACC, Some(DEV), ev(n)).await.unwrap());
    }
    assert!(issued.windows(2).all(|w| w[0] < w[1]), "{issued:?}");
    let start = Instant::now();
    let out = poll(&hub, None, 10_000).await;
    assert!(start.elapsed() < Duration::from_secs(2), "returned at once");
    assert_eq!(seqs(&out), issued);
    assert_eq!(out.events[0]["caller"], "1000");
    assert_eq!(out.events[2]["event"], "p2p_inform_called");
    assert_eq!(out.events[2]["opdata"], "op2");
    assert!(!out.gap && !out.replaced && !out.unlogined);
    // Delivered: not again.
    assert!(poll(&hub, None, 50).await.events.is_empty());
    // Other devices' queues are separate.
    hub.notify(ACC, Some("other"), ev(9)).await.unwrap();
    assert!(poll(&hub, None, 50).await.events.is_empty());
}

async fn poll_waits_and_is_woken_by_notify(db: TestDb) {
    // A recheck far beyond the test: only the wake-up can end the wait early.
    let hub = hub_with(
        db.open().await,
        &PushConfig::default(),
        Duration::from_secs(600),
    );
    let waiting = tokio::spawn({
        let hub = hub.clone();
        async move {
            let start = Instant::now();
            (poll(&hub, None, 20_000).await, start.elapsed())
        }
    });
    eventually("poll open", || hub.open_polls() == 1).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiting.is_finished(), "waits while nothing is queued");
    let seq = hub.notify(ACC, Some(DEV), ev(1)).await.unwrap();
    let (out, took) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&out), vec![seq]);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(hub.open_polls(), 0, "closed polls leave no slot behind");
}

async fn poll_idle_timeout_returns_empty(db: TestDb) {
    let hub = hub(db.open().await);
    let start = Instant::now();
    let out = poll(&hub, None, 300).await;
    let took = start.elapsed();
    assert_eq!(out, PollOutcome::default());
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

async fn events_survive_a_restart_in_order(db: TestDb) {
    let store = db.open().await;
    let first = hub(store.clone());
    let mut issued = Vec::new();
    for n in 0..4 {
        issued.push(first.notify(ACC, Some(DEV), ev(n)).await.unwrap());
    }
    // The switch goes away with no poll having been open.
    drop(first);
    store.close().await;
    drop(store);

    let store = db.open().await;
    let second = hub(store.clone());
    let out = poll(&second, None, 5_000).await;
    assert_eq!(seqs(&out), issued);
    let callers: Vec<&str> = out
        .events
        .iter()
        .map(|e| e["caller"].as_str().unwrap())
        .collect();
    assert_eq!(callers, ["1000", "1001", "1002", "1003"]);
    // Numbers are never reused after a restart.
    let next = second.notify(ACC, Some(DEV), ev(5)).await.unwrap();
    assert!(next > *issued.last().unwrap());
    store.close().await;
}

async fn newer_poll_replaces_older(db: TestDb) {
    let hub = hub(db.open().await);
    let older = tokio::spawn({
        let hub = hub.clone();
        async move { poll(&hub, None, 20_000).await }
    });
    eventually("older poll open", || hub.open_polls() == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let newer = tokio::spawn({
        let hub = hub.clone();
        async move { poll(&hub, None, 20_000).await }
    });
    let out = tokio::time::timeout(Duration::from_secs(5), older)
        .await
        .expect("the older poll returns at once")
        .unwrap();
    assert!(out.replaced && out.events.is_empty(), "{out:?}");
    let seq = hub.notify(ACC, Some(DEV), ev(1)).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), newer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&out), vec![seq]);
    assert!(!out.replaced);
}

/// Two clients polling one device in a loop (each poll replacing the other's) while
/// events arrive: every event reaches exactly one of them.
async fn concurrent_polls_never_share_an_event(db: TestDb) {
    let hub = hub(db.open().await);
    check_exclusive_delivery(hub.clone(), hub, 30).await;
}

/// The same with two hubs on two connections to one database, as two switch
/// processes would be: no in-process replacement, only the store's claim.
async fn two_processes_never_share_an_event(db: TestDb) {
    let a = hub(db.open().await);
    let b = hub(db.open().await);
    check_exclusive_delivery(a, b, 30).await;
}

async fn check_exclusive_delivery(a: PushHub<AnyStore>, b: PushHub<AnyStore>, total: usize) {
    let got: Arc<Mutex<Vec<i64>>> = Arc::default();
    let stop = Arc::new(AtomicUsize::new(0));
    let mut pollers = Vec::new();
    for hub in [a.clone(), b.clone()] {
        let got = Arc::clone(&got);
        let stop = Arc::clone(&stop);
        pollers.push(tokio::spawn(async move {
            while stop.load(Ordering::SeqCst) == 0 {
                let out = poll(&hub, None, 300).await;
                got.lock().unwrap().extend(seqs(&out));
                if out.replaced {
                    // Like a real client that was replaced: it is gone for a moment
                    // (without this the two would only ping-pong).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let mut issued = Vec::new();
    for n in 0..total {
        let hub = if n % 2 == 0 { &a } else { &b };
        issued.push(hub.notify(ACC, Some(DEV), ev(n as i64)).await.unwrap());
        if n % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
    }
    eventually("every event delivered", || {
        got.lock().unwrap().len() >= total
    })
    .await;
    // Give a double delivery, if any, time to show up.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(1, Ordering::SeqCst);
    for p in pollers {
        p.await.unwrap();
    }
    let got = got.lock().unwrap().clone();
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "an event was delivered twice: {got:?}"
    );
    assert_eq!(unique, issued.into_iter().collect::<HashSet<_>>());
}

async fn resume_by_last_seq_returns_missed_events(db: TestDb) {
    let hub = hub(db.open().await);
    let s: Vec<i64> = {
        let mut v = Vec::new();
        for n in 0..3 {
            v.push(hub.notify(ACC, Some(DEV), ev(n)).await.unwrap());
        }
        v
    };
    assert_eq!(seqs(&poll(&hub, None, 1_000).await), s);
    // The reply was lost with the connection: the client saw only the first.
    let out = poll(&hub, Some(s[0]), 1_000).await;
    assert_eq!(seqs(&out), s[1..].to_vec());
    assert!(!out.gap);
    // Nothing after the newest: the poll waits (and is answered by the idle timeout).
    let out = poll(&hub, Some(s[2]), 100).await;
    assert!(out.events.is_empty() && !out.gap);
    // Resuming does not undo delivery for polls without a seq.
    assert!(poll(&hub, None, 50).await.events.is_empty());
    // From 0 = everything retained.
    assert_eq!(seqs(&poll(&hub, Some(0), 100).await), s);
    // Resuming also claims what was never delivered.
    let s3 = hub.notify(ACC, Some(DEV), ev(3)).await.unwrap();
    assert_eq!(seqs(&poll(&hub, Some(s[2]), 1_000).await), vec![s3]);
    assert!(poll(&hub, None, 50).await.events.is_empty());
}

async fn gap_after_retention(db: TestDb) {
    let hub = hub(db.open().await);
    let mut s = Vec::new();
    for n in 0..3 {
        s.push(hub.notify(ACC, Some(DEV), ev(n)).await.unwrap());
    }
    // The client saw only the first before the rest expired.
    assert_eq!(seqs(&poll(&hub, None, 1_000).await), s);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(hub.purge(Duration::ZERO).await.unwrap(), 3);
    let s3 = hub.notify(ACC, Some(DEV), ev(3)).await.unwrap();

    let out = poll(&hub, Some(s[0]), 1_000).await;
    assert_eq!(seqs(&out), vec![s3]);
    assert!(out.gap, "events after seq {} were lost", s[0]);
    // A client that saw the last expired one missed nothing.
    let out = poll(&hub, Some(s[2]), 1_000).await;
    assert_eq!(seqs(&out), vec![s3]);
    assert!(!out.gap);
    // Everything gone: the gap is still reported (with the idle reply, not at once,
    // so a client that cannot move past it does not spin).
    tokio::time::sleep(Duration::from_millis(5)).await;
    hub.purge(Duration::ZERO).await.unwrap();
    let start = Instant::now();
    let out = poll(&hub, Some(s[1]), 200).await;
    assert!(out.gap && out.events.is_empty(), "{out:?}");
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(!poll(&hub, Some(s3), 50).await.gap);
    // A seq this queue never issued (database replaced): gap, and the undelivered.
    let s4 = hub.notify(ACC, Some(DEV), ev(4)).await.unwrap();
    let out = poll(&hub, Some(s4 + 1_000), 1_000).await;
    assert!(out.gap);
    assert_eq!(seqs(&out), vec![s4]);
}

async fn purger_applies_retention(db: TestDb) {
    let config = PushConfig {
        retention_s: 0,
        ..PushConfig::default()
    };
    let hub = PushHub::with_options(
        db.open().await,
        &config,
        HubOptions {
            purge_every: Duration::from_millis(50),
            ..options(Duration::from_millis(200))
        },
    )
    .unwrap();
    let seq = hub.notify(ACC, Some(DEV), ev(1)).await.unwrap();
    let purger = hub.spawn_purger();
    tokio::time::sleep(Duration::from_millis(300)).await;
    purger.abort();
    let out = poll(&hub, Some(seq - 1), 50).await;
    assert!(out.events.is_empty(), "expired: {out:?}");
    assert!(out.gap);
}

/// `login_otherwhere` is queued by the accounts layer straight into the store; a
/// waiting poll finds it at its next recheck.
async fn direct_enqueue_reaches_a_waiting_poll(db: TestDb) {
    let store = db.open().await;
    let hub = hub(store.clone());
    let waiting = tokio::spawn({
        let hub = hub.clone();
        async move { poll(&hub, None, 20_000).await }
    });
    eventually("poll open", || hub.open_polls() == 1).await;
    let seq = store
        .enqueue_event(ACC, DEV, &json!({"event": "login_otherwhere"}), 5)
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.events,
        vec![json!({"event": "login_otherwhere", "seq": seq})]
    );
}

async fn notify_addresses_the_current_login(db: TestDb) {
    let store = db.open().await;
    let hub = hub(store.clone());
    let err = hub.notify(ACC, None, ev(1)).await.unwrap_err();
    assert!(
        matches!(err, PushError::NotLoggedIn(ref a) if a == ACC),
        "{err:?}"
    );
    login(&store, ACC, DEV).await;
    let seq = hub.notify(ACC, None, ev(1)).await.unwrap();
    assert_eq!(seqs(&poll(&hub, None, 1_000).await), vec![seq]);
    for bad in [json!("x"), json!({"event": 1}), json!({"caller": "1"})] {
        let err = hub.notify(ACC, Some(DEV), bad).await.unwrap_err();
        assert!(matches!(err, PushError::BadEvent(_)), "{err:?}");
    }
}

async fn poll_session_hands_over_then_unlogined(db: TestDb) {
    let store = db.open().await;
    let hub = hub(store.clone());
    login(&store, ACC, "old").await;
    let ev_seq = hub.notify(ACC, None, ev(1)).await.unwrap();
    // Logging in elsewhere queues login_otherwhere for the old device.
    login(&store, ACC, DEV).await;
    let lo_seq = hub
        .notify(ACC, Some("old"), json!({"event": "login_otherwhere"}))
        .await
        .unwrap();
    let idle = Duration::from_secs(10);
    let start = Instant::now();
    let out = hub.poll_session(ACC, "old", None, idle).await.unwrap();
    assert_eq!(seqs(&out), vec![ev_seq, lo_seq]);
    assert_eq!(out.events[1]["event"], "login_otherwhere");
    assert!(!out.unlogined);
    let out = hub.poll_session(ACC, "old", None, idle).await.unwrap();
    assert!(out.unlogined && out.events.is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "no waiting when logged out"
    );
    // The current device polls normally.
    let out = hub
        .poll_session(ACC, DEV, None, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(!out.unlogined && out.events.is_empty());
    assert!(
        hub.poll_session("nobody", DEV, None, idle)
            .await
            .unwrap()
            .unlogined
    );
}

async fn tokens_register_replace_move(db: TestDb) {
    let store = db.open().await;
    let hub = hub(store.clone());
    hub.register_token(ACC, DEV, Provider::Apns, "00aa")
        .await
        .unwrap();
    hub.register_token(ACC, DEV, Provider::Fcm, "fcm:tok-1")
        .await
        .unwrap();
    hub.register_token(ACC, DEV, Provider::Baidu, "baidu-chan")
        .await
        .unwrap();
    let names = |t: Vec<softswitch::store::PushToken>| {
        t.into_iter()
            .map(|t| format!("{}={}", t.provider, t.token))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.push_tokens(ACC, DEV).await.unwrap()),
        ["apns=00aa", "baidu=baidu-chan", "fcm=fcm:tok-1"]
    );
    // A new APNs token replaces the device's old one.
    hub.register_token(ACC, DEV, Provider::Apns, "00bb")
        .await
        .unwrap();
    // The FCM token moves with the app install to another account.
    hub.register_token("other", "d2", Provider::Fcm, "fcm:tok-1")
        .await
        .unwrap();
    assert_eq!(
        names(store.push_tokens(ACC, DEV).await.unwrap()),
        ["apns=00bb", "baidu=baidu-chan"]
    );
    assert_eq!(
        names(store.push_tokens("other", "d2").await.unwrap()),
        ["fcm=fcm:tok-1"]
    );
    let err = hub
        .register_token(ACC, DEV, Provider::Apns, "not/hex")
        .await
        .unwrap_err();
    assert!(matches!(err, PushError::BadToken { .. }), "{err:?}");
    assert_eq!(hub.unregister_device(ACC, DEV).await.unwrap(), 2);
    assert!(store.push_tokens(ACC, DEV).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------
// stand-ins for APNs and FCM
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    version: Version,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Responder = Arc<dyn Fn(&Recorded) -> (u16, String) + Send + Sync>;

/// A local HTTP server (HTTP/2 and 1.1; TLS with a fresh self-signed certificate, or
/// plain) that records every request and answers with `respond`.
struct StandIn {
    url: String,
    ca_file: Option<PathBuf>,
    seen: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    async fn start(tls: bool, respond: Responder) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, ca_file) = if tls {
            let ck = rcgen::generate_simple_self_signed(vec![
                "127.0.0.1".to_owned(),
                "localhost".to_owned(),
            ])
            .unwrap();
            let ca = dir.path().join("ca.pem");
            std::fs::write(&ca, ck.cert.pem()).unwrap();
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
                rustls::pki_types::PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()),
            );
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            (
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                Some(ca),
            )
        } else {
            (None, None)
        };
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    let seen = Arc::clone(&seen);
                    let respond = Arc::clone(&respond);
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<Incoming>| {
                            let seen = Arc::clone(&seen);
                            let respond = Arc::clone(&respond);
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.unwrap().to_bytes().to_vec();
                                let rec = Recorded {
                                    path: parts.uri.path().to_owned(),
                                    version: parts.version,
                                    headers: parts.headers,
                                    body,
                                };
                                let (status, reply) = respond(&rec);
                                seen.lock().unwrap().push(rec);
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(reply)))
                                        .unwrap(),
                                )
                            }
                        });
                        let server =
                            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        match acceptor {
                            Some(acceptor) => {
                                if let Ok(tls) = acceptor.accept(tcp).await {
                                    let _ =
                                        server.serve_connection(TokioIo::new(tls), service).await;
                                }
                            }
                            None => {
                                let _ = server.serve_connection(TokioIo::new(tcp), service).await;
                            }
                        }
                    });
                }
            }
        });
        let scheme = if tls { "https" } else { "http" };
        StandIn {
            url: format!("{scheme}://{addr}"),
            ca_file,
            seen,
            task,
            _dir: dir,
        }
    }

    fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// Splits a JWT and checks its signature with `verify(signing input, signature)`;
/// returns (header, claims).
fn open_jwt(jwt: &str, verify: impl FnOnce(&[u8], &[u8])) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig);
    let decode = |p: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (decode(parts[0]), decode(parts[1]))
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const TOPIC: &str = "com.example.app.voip";
const APNS_TOKEN: &str = "8f2e0c7a1b3d5e7f9a0b2c4d6e8f0a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e0f";

/// An APNs configuration for `stand_in` with a freshly generated `.p8` key; returns
/// it with the key's public point, to check signatures with.
fn apns_config(stand_in: &StandIn, dir: &Path) -> (ApnsConfig, Vec<u8>) {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let public = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let key_file = dir.join(format!("AuthKey_{KEY_ID}.p8"));
    std::fs::write(&key_file, pem(doc.as_ref())).unwrap();
    (
        ApnsConfig {
            url: stand_in.url.clone(),
            key_file,
            key_id: KEY_ID.to_owned(),
            team_id: TEAM_ID.to_owned(),
            topic: TOPIC.to_owned(),
            ca_file: stand_in.ca_file.clone(),
            expiration_s: 30,
        },
        public,
    )
}

/// A hub pushing through the stand-in APNs `stand_in` (see [`apns_config`]),
/// and the public key its JWTs verify with.
fn apns_hub(store: &AnyStore, stand_in: &StandIn) -> (PushHub<AnyStore>, Vec<u8>) {
    let (config, public) = apns_config(stand_in, stand_in._dir.path());
    let config = PushConfig {
        apns: Some(config),
        ..PushConfig::default()
    };
    (
        hub_with(store.clone(), &config, Duration::from_millis(200)),
        public,
    )
}

/// What APNs checks of a request; returns the JWT.
fn check_apns_request(req: &Recorded, public: &[u8]) -> String {
    assert_eq!(req.version, Version::HTTP_2, "APNs speaks only HTTP/2");
    assert_eq!(req.path, format!("/3/device/{APNS_TOKEN}"));
    assert_eq!(req.header("apns-push-type"), "voip");
    assert_eq!(req.header("apns-topic"), TOPIC);
    assert_eq!(req.header("apns-priority"), "10");
    let exp: i64 = req.header("apns-expiration").parse().unwrap();
    assert!((now_s()..=now_s() + 31).contains(&exp), "{exp}");
    let jwt = req
        .header("authorization")
        .strip_prefix("bearer ")
        .unwrap()
        .to_owned();
    let (header, claims) = open_jwt(&jwt, |input, sig| {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
            .verify(input, sig)
            .expect("ES256 signature verifies with the .p8 key's public key");
    });
    assert_eq!(header, json!({"alg": "ES256", "kid": KEY_ID}));
    assert_eq!(claims["iss"], TEAM_ID);
    let iat = claims["iat"].as_i64().unwrap();
    assert!((now_s() - 60..=now_s()).contains(&iat), "{iat}");
    jwt
}

fn fixed(status: u16, body: &'static str) -> Responder {
    Arc::new(move |_| (status, body.to_owned()))
}

/// App-to-app call: B's poll and the stand-in APNs both receive the event, with a
/// valid payload and JWT. Over TLS (ALPN h2) like the real service; then once more
/// over h2c (an `http://` URL), the test/dev affordance.
async fn apns_push_and_poll_both_get_the_event(db: TestDb) {
    for tls in [true, false] {
        let store = db.open().await;
        let account = if tls { ACC } else { "acc-h2c" };
        let apns = StandIn::start(tls, fixed(200, "")).await;
        let (hub, public) = apns_hub(&store, &apns);
        login(&store, account, DEV).await;
        hub.register_token(account, DEV, Provider::Apns, APNS_TOKEN)
            .await
            .unwrap();
        let waiting = tokio::spawn({
            let hub = hub.clone();
            async move {
                hub.poll(account, DEV, None, Duration::from_secs(20))
                    .await
                    .unwrap()
            }
        });
        eventually("B's poll open", || hub.open_polls() == 1).await;
        // Keys in sorted order, so the expected text holds with or without
        // serde_json's preserve_order.
        let opdata = json!({"caller": "1001", "event": "sip_call_in", "port": 40000});
        let seq = hub
            .notify(
                account,
                None,
                json!({"event": "p2p_inform_called", "caller": "1001", "opdata": opdata}),
            )
            .await
            .unwrap();
        let polled = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            polled.events,
            vec![
                json!({"event": "p2p_inform_called", "caller": "1001", "opdata": opdata, "seq": seq})
            ]
        );
        tokio::time::timeout(Duration::from_secs(10), hub.flush())
            .await
            .unwrap();
        let seen = apns.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        check_apns_request(&seen[0], &public);
        // The payload exactly as API.md writes it (badge: events waiting, at least 1).
        assert_eq!(
            String::from_utf8(seen[0].body.clone()).unwrap(),
            r#"{"aps":{"alert":"1001","badge":1,"sound":"chime","event":"p2p_inform_called","caller":"1001","opdata":{"caller":"1001","event":"sip_call_in","port":40000}}}"#
        );
        let recorded = store.push_deliveries(account, DEV, 10).await.unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(
            (recorded[0].provider.as_str(), recorded[0].status.as_str()),
            ("apns", "ok")
        );
        assert_eq!((recorded[0].seq, recorded[0].http_status), (seq, Some(200)));

        // The caller hangs up: caller_hookon, its own payload; the JWT is reused.
        hub.notify(
            account,
            None,
            json!({"event": "caller_hookon", "caller": "1001"}),
        )
        .await
        .unwrap();
        hub.flush().await;
        let seen = apns.seen();
        assert_eq!(seen.len(), 2);
        let first_jwt = check_apns_request(&seen[0], &public);
        assert_eq!(check_apns_request(&seen[1], &public), first_jwt);
        assert_eq!(
            String::from_utf8(seen[1].body.clone()).unwrap(),
            r#"{"aps":{"alert":"1001","event":"caller_hookon","caller":"1001"}}"#
        );
        // Events that are not calls go to the poll only.
        hub.notify(account, None, json!({"event": "login_otherwhere"}))
            .await
            .unwrap();
        hub.flush().await;
        assert_eq!(apns.seen().len(), 2);
    }
}

async fn apns_retries_after_500_and_records_both(db: TestDb) {
    let store = db.open().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let apns = StandIn::start(true, {
        let calls = Arc::clone(&calls);
        Arc::new(move |_| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                (500, r#"{"reason":"InternalServerError"}"#.to_owned())
            } else {
                (200, String::new())
            }
        })
    })
    .await;
    let (hub, public) = apns_hub(&store, &apns);
    hub.register_token(ACC, DEV, Provider::Apns, APNS_TOKEN)
        .await
        .unwrap();
    let seq = hub.notify(ACC, Some(DEV), ev(1)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), hub.flush())
        .await
        .unwrap();
    let seen = apns.seen();
    assert_eq!(seen.len(), 2, "one retry");
    assert_eq!(seen[0].body, seen[1].body);
    check_apns_request(&seen[1], &public);
    let recorded = deliveries(&store).await;
    let summary: Vec<_> = recorded
        .iter()
        .map(|d| {
            (
                d.attempt,
                d.status.as_str(),
                d.http_status,
                d.reason.as_deref(),
                d.seq,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "retry", Some(500), Some("InternalServerError"), seq),
            (2, "ok", Some(200), None, seq),
        ]
    );
    // The token is kept.
    assert_eq!(store.push_tokens(ACC, DEV).await.unwrap().len(), 1);

    // A provider that keeps failing: three attempts, then `failed`.
    let down = StandIn::start(true, fixed(503, r#"{"reason":"ServiceUnavailable"}"#)).await;
    let (hub, _) = apns_hub(&store, &down);
    hub.notify(ACC, Some(DEV), ev(2)).await.unwrap();
    hub.flush().await;
    assert_eq!(down.seen().len(), 3);
    let statuses: Vec<String> = deliveries(&store).await[2..]
        .iter()
        .map(|d| d.status.clone())
        .collect();
    assert_eq!(statuses, ["retry", "retry", "failed"]);
}

async fn apns_410_drops_the_token(db: TestDb) {
    let store = db.open().await;
    let apns = StandIn::start(
        true,
        fixed(410, r#"{"reason":"Unregistered","timestamp":1}"#),
    )
    .await;
    let (hub, _) = apns_hub(&store, &apns);
    hub.register_token(ACC, DEV, Provider::Apns, APNS_TOKEN)
        .await
        .unwrap();
    push_drops_the_token(&hub, &store, 410, "Unregistered").await;
    assert_eq!(apns.seen().len(), 1, "a dead token is not retried");
    // No token, no push; the poll still has the events.
    hub.notify(ACC, Some(DEV), ev(2)).await.unwrap();
    hub.flush().await;
    assert_eq!(apns.seen().len(), 1);
    assert_eq!(poll(&hub, None, 100).await.events.len(), 2);
}

const PROJECT: &str = "test-project";
const SA_EMAIL: &str = "push@test-project.iam.gserviceaccount.com";
const FCM_TOKEN: &str = "fcm-registration:APA91b_test-token";

/// The FCM stand-in: an OAuth2 token endpoint that verifies the RS256 assertion, and
/// the send endpoint, which wants the token it issued and answers `send_reply`.
async fn fcm_stand_in(public: Vec<u8>, send_reply: (u16, &'static str)) -> StandIn {
    let public = Arc::new(public);
    StandIn::start(
        true,
        Arc::new(move |req: &Recorded| {
            if req.path == "/token" {
                assert_eq!(
                    req.header("content-type"),
                    "application/x-www-form-urlencoded"
                );
                let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&req.body).unwrap();
                let get = |k: &str| form.iter().find(|(n, _)| n == k).unwrap().1.clone();
                assert_eq!(
                    get("grant_type"),
                    "urn:ietf:params:oauth:grant-type:jwt-bearer"
                );
                let (header, claims) = open_jwt(&get("assertion"), |input, sig| {
                    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public.as_slice())
                        .verify(input, sig)
                        .expect("RS256 assertion verifies with the service account key");
                });
                assert_eq!(header["alg"], "RS256");
                assert_eq!(header["kid"], "key-1");
                assert_eq!(claims["iss"], SA_EMAIL);
                assert_eq!(
                    claims["scope"],
                    "https://www.googleapis.com/auth/firebase.messaging"
                );
                assert!(claims["aud"].as_str().unwrap().ends_with("/token"));
                let iat = claims["iat"].as_i64().unwrap();
                assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);
                assert!((now_s() - 60..=now_s()).contains(&iat));
                (
                    200,
                    r#"{"access_token":"ya29.stand-in","expires_in":3599,"token_type":"Bearer"}"#
                        .to_owned(),
                )
            } else {
                assert_eq!(req.path, format!("/v1/projects/{PROJECT}/messages:send"));
                assert_eq!(req.header("authorization"), "Bearer ya29.stand-in");
                (send_reply.0, send_reply.1.to_owned())
            }
        }),
    )
    .await
}

/// The committed test RSA key (generating one is slow in a debug build): its PEM and
/// its public half.
fn rsa_key() -> (String, Vec<u8>) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/push_test_rsa.pem"),
    )
    .unwrap();
    let key_pem = text[text.find("-----BEGIN").unwrap()..].to_owned();
    let der: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(der).unwrap();
    let public = RsaKeyPair::from_pkcs8(&der)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    (key_pem, public)
}

/// A service account file for `stand_in` with the test RSA key.
fn fcm_config(stand_in: &StandIn) -> FcmConfig {
    let (key_pem, _) = rsa_key();
    let sa = json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "key-1",
        "private_key": key_pem,
        "client_email": SA_EMAIL,
        "token_uri": format!("{}/token", stand_in.url),
    });
    let file = stand_in._dir.path().join("sa.json");
    std::fs::write(&file, sa.to_string()).unwrap();
    FcmConfig {
        url: stand_in.url.clone(),
        project_id: PROJECT.to_owned(),
        service_account_file: file,
        ca_file: stand_in.ca_file.clone(),
    }
}

async fn fcm_hub(store: &AnyStore, stand_in: &StandIn) -> PushHub<AnyStore> {
    let config = fcm_config(stand_in);
    let hub = hub_with(
        store.clone(),
        &PushConfig {
            fcm: Some(config),
            ..PushConfig::default()
        },
        Duration::from_millis(200),
    );
    hub.register_token(ACC, DEV, Provider::Fcm, FCM_TOKEN)
        .await
        .unwrap();
    hub
}

async fn fcm_push_with_oauth_token(db: TestDb) {
    let store = db.open().await;
    let fcm = fcm_stand_in(
        rsa_key().1,
        (200, r#"{"name":"projects/test-project/messages/1"}"#),
    )
    .await;
    let hub = fcm_hub(&store, &fcm).await;
    let seq = hub
        .notify(
            ACC,
            Some(DEV),
            json!({"event": "p2p_inform_called", "caller": "1001", "opdata": {"session_id": "s1"}}),
        )
        .await
        .unwrap();
    hub.notify(
        ACC,
        Some(DEV),
        json!({"event": "caller_hookon", "caller": "1001"}),
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), hub.flush())
        .await
        .unwrap();
    let seen = fcm.seen();
    let tokens = seen.iter().filter(|r| r.path == "/token").count();
    let sends: Vec<&Recorded> = seen.iter().filter(|r| r.path != "/token").collect();
    assert_eq!(sends.len(), 2, "{seen:?}");
    assert!(
        (1..=2).contains(&tokens),
        "the access token is cached (two sends may race for the first one)"
    );
    let messages: Vec<Value> = sends.iter().map(|r| r.json()).collect();
    assert!(messages.contains(&json!({"message": {
        "token": FCM_TOKEN,
        "data": {"event": "p2p_inform_called", "caller": "1001", "opdata": "{\"session_id\":\"s1\"}"},
        "android": {"priority": "high"},
    }})));
    assert!(messages.contains(&json!({"message": {
        "token": FCM_TOKEN,
        "data": {"event": "caller_hookon", "caller": "1001"},
        "android": {"priority": "high"},
    }})));
    let d = deliveries(&store).await;
    assert_eq!(d.len(), 2);
    assert!(d
        .iter()
        .all(|d| d.provider == "fcm" && d.status == "ok" && d.http_status == Some(200)));
    assert!(d.iter().any(|d| d.seq == seq));
    // A later push reuses the cached access token.
    hub.notify(ACC, Some(DEV), ev(3)).await.unwrap();
    hub.flush().await;
    assert_eq!(
        fcm.seen().iter().filter(|r| r.path == "/token").count(),
        tokens
    );
}

async fn fcm_unregistered_drops_the_token(db: TestDb) {
    let store = db.open().await;
    let fcm = fcm_stand_in(
        rsa_key().1,
        (
            404,
            r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#,
        ),
    )
    .await;
    let hub = fcm_hub(&store, &fcm).await;
    push_drops_the_token(&hub, &store, 404, "UNREGISTERED").await;
}
