#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Account flows of API.md over both store back ends (see `store_harness`), with auth
//! codes captured by a stand-in SMS gateway on 127.0.0.1 and a virtual clock.

mod store_harness;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use softswitch::accounts::{
    AccountError, Accounts, AccountsConfig, CodeKind, HashCost, Presence, StatusQuery,
};
use softswitch::store::{AnyStore, Store};
use store_harness::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

both_backends!(
    register_login_and_check,
    second_login_moves_to_new_device,
    login_failure_reasons,
    auth_code_type_rules,
    auth_code_rate_limit,
    auth_code_expiry,
    auth_code_wrong_guesses,
    forget_pwd_flow,
    modify_pwd_flow,
    add_info_needs_login_and_merges,
    query_status_states,
    logout_ends_login,
    ops_open_activate_bind,
    sms_hook_posts_json,
    sms_gateway_failure_is_reported,
    sms_without_url_is_logged,
    default_cost_hash_is_argon2id,
);

const T0: i64 = 1_700_000_000_000;
const PHONE: &str = "13800000001";

/// One request the stand-in gateway received.
#[derive(Debug)]
struct SmsRequest {
    request_line: String,
    content_type: String,
    body: Value,
}

/// A minimal HTTP/1.1 server that records each request's JSON body and answers
/// `status`.
async fn sms_gateway(status: u16) -> (String, mpsc::UnboundedReceiver<SmsRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed before the headers ended");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default()
                };
                let len: usize = header("content-length").parse().unwrap();
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed before the body ended");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                sock.write_all(reply.as_bytes()).await.unwrap();
                sock.shutdown().await.ok();
                let _ = tx.send(SmsRequest {
                    request_line: head.lines().next().unwrap_or_default().to_owned(),
                    content_type: header("content-type"),
                    body,
                });
            });
        }
    });
    (format!("http://{addr}/sms"), rx)
}

/// Accounts over the test's store, with a fake clock and a capturing SMS gateway.
struct Env {
    acc: Accounts<AnyStore>,
    sms: mpsc::UnboundedReceiver<SmsRequest>,
    clock: Arc<AtomicI64>,
}

fn cheap_config(sms_url: Option<String>) -> AccountsConfig {
    AccountsConfig {
        sms_url,
        sms_timeout: Duration::from_secs(5),
        // Real Argon2id, but cheap enough for unoptimised test builds.
        hash_cost: HashCost {
            m_kib: 256,
            t: 1,
            p: 1,
        },
        ..AccountsConfig::default()
    }
}

impl Env {
    async fn new(db: &TestDb) -> Env {
        let (url, sms) = sms_gateway(200).await;
        Env::with(db, cheap_config(Some(url)), sms).await
    }

    async fn with(
        db: &TestDb,
        cfg: AccountsConfig,
        sms: mpsc::UnboundedReceiver<SmsRequest>,
    ) -> Env {
        let clock = Arc::new(AtomicI64::new(T0));
        let c = Arc::clone(&clock);
        let acc = Accounts::new(db.open().await, cfg)
            .unwrap()
            .with_clock(move || c.load(Ordering::SeqCst));
        Env { acc, sms, clock }
    }

    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    /// Requests a code and returns what the gateway received.
    async fn code(&mut self, phone: &str, kind: CodeKind) -> String {
        self.acc.auth_code(phone, "dev-1", kind).await.unwrap();
        let req = tokio::time::timeout(Duration::from_secs(5), self.sms.recv())
            .await
            .expect("no SMS within 5 s")
            .unwrap();
        assert_eq!(req.body["phone"], phone);
        assert_eq!(req.body["type"], kind.as_str());
        req.body["code"].as_str().unwrap().to_owned()
    }

    /// Registers `phone` with password `pwd`.
    async fn register(&mut self, phone: &str, pwd: &str) {
        let code = self.code(phone, CodeKind::Register).await;
        self.acc
            .register(phone, "dev-1", &code, "Alice", pwd)
            .await
            .unwrap();
        // Codes are rate-limited per phone; step past the minimum interval.
        self.advance(61_000);
    }
}

fn reason<T: std::fmt::Debug>(r: Result<T, AccountError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected a failure, got Ok({v:?})"),
        Err(e) => e.reason(),
    }
}

// ---------------------------------------------------------------------------------

async fn register_login_and_check(db: TestDb) {
    let mut env = Env::new(&db).await;
    let code = env.code(PHONE, CodeKind::Register).await;
    assert_eq!(code.len(), 6);
    assert!(code.chars().all(|c| c.is_ascii_digit()));
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert_eq!(
        reason(env.acc.register(PHONE, "dev-1", wrong, "Alice", "pw").await),
        "bad_auth_code"
    );
    env.acc
        .register(PHONE, "dev-1", &code, "Alice", "secret")
        .await
        .unwrap();
    // The code is spent, and the number is now taken.
    assert_eq!(
        reason(env.acc.register(PHONE, "dev-1", &code, "Alice", "pw").await),
        "already_registered"
    );
    let store = env.acc.store();
    let a = store.get_account(PHONE).await.unwrap().unwrap();
    assert_eq!(a.name, "Alice");
    assert_eq!(a.group, "app");
    assert!(a.active);
    assert!(a.pwd_hash.starts_with("$argon2id$"), "{}", a.pwd_hash);
    assert!(!a.pwd_hash.contains("secret"));
    assert_eq!(
        store.account_for_phone(PHONE).await.unwrap().as_deref(),
        Some(PHONE),
        "the registering phone is bound to the account"
    );

    assert_eq!(
        reason(env.acc.check_login(PHONE, "dev-1").await),
        "no_logind"
    );
    let ok = env.acc.login(PHONE, "secret", "dev-1").await.unwrap();
    assert_eq!(ok.uuid, PHONE);
    assert_eq!(ok.info, json!({}));
    assert_eq!(ok.replaced_device, None);
    assert!(ok.token.len() >= 32, "token of at least 128 bits");
    env.acc.check_login(PHONE, "dev-1").await.unwrap();
    assert_eq!(
        reason(env.acc.check_login(PHONE, "dev-2").await),
        "no_logind"
    );
    let login = env.acc.check_token(&ok.token).await.unwrap();
    assert_eq!(
        (login.account.as_str(), login.device.as_str()),
        (PHONE, "dev-1")
    );
    assert_eq!(
        reason(env.acc.check_token("not-a-token").await),
        "no_logind"
    );
}

async fn second_login_moves_to_new_device(db: TestDb) {
    let mut env = Env::new(&db).await;
    env.register(PHONE, "pw").await;
    let first = env.acc.login(PHONE, "pw", "phone-a").await.unwrap();
    // Logging in again on the same device replaces the token, nobody is kicked.
    let again = env.acc.login(PHONE, "pw", "phone-a").await.unwrap();
    assert_eq!(again.replaced_device, None);
    assert_ne!(again.token, first.token);
    assert_eq!(reason(env.acc.check_token(&first.token).await), "no_logind");

    let second = env.acc.login(PHONE, "pw", "phone-b").await.unwrap();
    assert_eq!(second.replaced_device.as_deref(), Some("phone-a"));
    assert_eq!(
        reason(env.acc.check_login(PHONE, "phone-a").await),
        "no_logind"
    );
    assert_eq!(reason(env.acc.check_token(&again.token).await), "no_logind");
    env.acc.check_login(PHONE, "phone-b").await.unwrap();

    let store = env.acc.store();
    let queued = store.pending_events(PHONE, "phone-a", 0, 10).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].event, json!({"event": "login_otherwhere"}));
    assert_eq!(queued[0].created_ms, T0 + 61_000);
    assert!(store
        .pending_events(PHONE, "phone-b", 0, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn login_failure_reasons(db: TestDb) {
    let mut env = Env::new(&db).await;
    env.register(PHONE, "pw").await;
    assert_eq!(
        reason(env.acc.login("13899999999", "pw", "d").await),
        "not_registered"
    );
    assert_eq!(
        reason(env.acc.login(PHONE, "wrong", "d").await),
        "bad_password"
    );
    assert_eq!(reason(env.acc.login(PHONE, "", "d").await), "bad_password");
    assert_eq!(reason(env.acc.login("", "pw", "d").await), "bad_request");

    // A deactivated account: not_actived, but only with the right password.
    env.acc.set_active(PHONE, false).await.unwrap();
    assert_eq!(
        reason(env.acc.login(PHONE, "wrong", "d").await),
        "bad_password"
    );
    assert_eq!(reason(env.acc.login(PHONE, "pw", "d").await), "not_actived");
    env.acc.set_active(PHONE, true).await.unwrap();

    // Logging in with a number bound to the account.
    env.acc.bind_phone(PHONE, "13700000000").await.unwrap();
    let ok = env.acc.login("13700000000", "pw", "d").await.unwrap();
    assert_eq!(ok.uuid, PHONE);
    env.acc.check_login(PHONE, "d").await.unwrap();
    assert!(env.acc.store().get_login(PHONE).await.unwrap().is_some());
}

async fn auth_code_type_rules(db: TestDb) {
    let mut env = Env::new(&db).await;
    assert_eq!(
        reason(env.acc.auth_code(PHONE, "d", CodeKind::ResetPwd).await),
        "not_registered"
    );
    env.register(PHONE, "pw").await;
    assert_eq!(
        reason(env.acc.auth_code(PHONE, "d", CodeKind::Register).await),
        "already_registered"
    );
    // A register code does not reset a password.
    env.acc
        .auth_code(PHONE, "d", CodeKind::ResetPwd)
        .await
        .unwrap();
    let _ = env.sms.recv().await.unwrap();
    assert_eq!(
        reason(env.acc.auth_code("", "d", CodeKind::Register).await),
        "bad_request"
    );
}

async fn auth_code_rate_limit(db: TestDb) {
    let mut env = Env::new(&db).await;
    env.code(PHONE, CodeKind::Register).await;
    env.advance(30_000);
    assert_eq!(
        reason(env.acc.auth_code(PHONE, "d", CodeKind::Register).await),
        "rate_limited"
    );
    // Another number is not affected.
    env.code("13800000002", CodeKind::Register).await;
    // 1 per minute, 5 per hour.
    for _ in 0..4 {
        env.advance(61_000);
        env.code(PHONE, CodeKind::Register).await;
    }
    env.advance(61_000);
    assert_eq!(
        reason(env.acc.auth_code(PHONE, "d", CodeKind::Register).await),
        "rate_limited"
    );
    env.advance(3_600_000);
    env.code(PHONE, CodeKind::Register).await;
    assert!(
        env.sms.try_recv().is_err(),
        "a refused request sends nothing"
    );
}

async fn auth_code_expiry(db: TestDb) {
    let mut env = Env::new(&db).await;
    let code = env.code(PHONE, CodeKind::Register).await;
    env.advance(600_000);
    assert_eq!(
        reason(env.acc.register(PHONE, "d", &code, "A", "pw").await),
        "bad_auth_code"
    );
    let code = env.code(PHONE, CodeKind::Register).await;
    env.advance(599_000);
    env.acc
        .register(PHONE, "d", &code, "A", "pw")
        .await
        .unwrap();
}

async fn auth_code_wrong_guesses(db: TestDb) {
    let mut env = Env::new(&db).await;
    let code = env.code(PHONE, CodeKind::Register).await;
    let wrong = if code == "999999" { "999998" } else { "999999" };
    for _ in 0..5 {
        assert_eq!(
            reason(env.acc.register(PHONE, "d", wrong, "A", "pw").await),
            "bad_auth_code"
        );
    }
    // Five wrong guesses retire the code: guessing a million codes is not an option.
    assert_eq!(
        reason(env.acc.register(PHONE, "d", &code, "A", "pw").await),
        "bad_auth_code"
    );
}

async fn forget_pwd_flow(db: TestDb) {
    let mut env = Env::new(&db).await;
    assert_eq!(
        reason(env.acc.forget_pwd(PHONE, "d", "123456", "new").await),
        "not_registered"
    );
    env.register(PHONE, "old").await;
    env.acc.login(PHONE, "old", "d").await.unwrap();
    let code = env.code(PHONE, CodeKind::ResetPwd).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert_eq!(
        reason(env.acc.forget_pwd(PHONE, "d", wrong, "new").await),
        "bad_auth_code"
    );
    env.acc.forget_pwd(PHONE, "d", &code, "new").await.unwrap();
    assert_eq!(
        reason(env.acc.check_login(PHONE, "d").await),
        "no_logind",
        "a password reset ends existing logins"
    );
    assert_eq!(
        reason(env.acc.login(PHONE, "old", "d").await),
        "bad_password"
    );
    env.acc.login(PHONE, "new", "d").await.unwrap();
    // Single use.
    assert_eq!(
        reason(env.acc.forget_pwd(PHONE, "d", &code, "newer").await),
        "bad_auth_code"
    );
}

async fn modify_pwd_flow(db: TestDb) {
    let mut env = Env::new(&db).await;
    env.register(PHONE, "old").await;
    env.acc.login(PHONE, "old", "d").await.unwrap();
    assert_eq!(
        reason(env.acc.modify_pwd(PHONE, "wrong", "new").await),
        "bad_password"
    );
    assert_eq!(
        reason(env.acc.modify_pwd("13899999999", "old", "new").await),
        "bad_password"
    );
    env.acc.modify_pwd(PHONE, "old", "new").await.unwrap();
    env.acc.check_login(PHONE, "d").await.unwrap();
    assert_eq!(
        reason(env.acc.login(PHONE, "old", "d").await),
        "bad_password"
    );
    env.acc.login(PHONE, "new", "d").await.unwrap();
}

async fn add_info_needs_login_and_merges(db: TestDb) {
    let mut env = Env::new(&db).await;
    env.register(PHONE, "pw").await;
    assert_eq!(
        reason(env.acc.add_info(PHONE, "d", json!({"a": 1})).await),
        "no_logind"
    );
    env.acc.login(PHONE, "pw", "d").await.unwrap();
    env.acc
        .add_info(PHONE, "d", json!({"a": 1, "b": "x"}))
        .await
        .unwrap();
    env.acc
        .add_info(PHONE, "d", json!({"b": "y", "c": [1]}))
        .await
        .unwrap();
    assert_eq!(
        reason(env.acc.add_info(PHONE, "other", json!({"z": 0})).await),
        "no_logind"
    );
    let ok = env.acc.login(PHONE, "pw", "d").await.unwrap();
    assert_eq!(ok.info, json!({"a": 1, "b": "y", "c": [1]}));
}

async fn query_status_states(db: TestDb) {
    let mut env = Env::new(&db).await;
    env.register(PHONE, "pw").await;
    env.register("13800000002", "pw").await;
    env.acc.login(PHONE, "pw", "d").await.unwrap();
    let q = |acc: &str, phone: &str| StatusQuery {
        acc: acc.to_owned(),
        phone: phone.to_owned(),
    };
    let got = env
        .acc
        .query_status(&[
            q(PHONE, ""),
            q("", "13800000002"),
            q("nobody", "13899999999"),
            q("nobody", PHONE),
        ])
        .await
        .unwrap();
    let states: Vec<Presence> = got.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        vec![
            Presence::Online,
            Presence::Offline,
            Presence::Unregistered,
            Presence::Online
        ]
    );
    assert_eq!(got[1].phone, "13800000002");
    assert_eq!(got[2].acc, "nobody");
    assert_eq!(Presence::Unregistered.as_str(), "unregistered");
    assert!(env.acc.query_status(&[]).await.unwrap().is_empty());
}

async fn logout_ends_login(db: TestDb) {
    let mut env = Env::new(&db).await;
    env.register(PHONE, "pw").await;
    let ok = env.acc.login(PHONE, "pw", "d").await.unwrap();
    // Another device's logout does not end this login.
    env.acc.logout(PHONE, "other").await.unwrap();
    env.acc.check_login(PHONE, "d").await.unwrap();
    env.acc.logout(PHONE, "d").await.unwrap();
    assert_eq!(reason(env.acc.check_login(PHONE, "d").await), "no_logind");
    assert_eq!(reason(env.acc.check_token(&ok.token).await), "no_logind");
    env.acc.logout(PHONE, "d").await.unwrap();
}

async fn ops_open_activate_bind(db: TestDb) {
    let env = Env::new(&db).await;
    env.acc
        .open_account("dth", "dth-1", "pw", false)
        .await
        .unwrap();
    assert_eq!(
        reason(env.acc.open_account("dth", "dth-1", "pw", true).await),
        "already_registered"
    );
    assert_eq!(
        reason(env.acc.login("dth-1", "pw", "d").await),
        "not_actived"
    );
    env.acc.set_active("dth-1", true).await.unwrap();
    env.acc.login("dth-1", "pw", "d").await.unwrap();
    // Deactivation ends the live login at once.
    env.acc.set_active("dth-1", false).await.unwrap();
    assert_eq!(reason(env.acc.check_login("dth-1", "d").await), "no_logind");
    assert_eq!(
        reason(env.acc.set_active("nobody", true).await),
        "not_registered"
    );

    env.acc.bind_phone("dth-1", "13600000000").await.unwrap();
    env.acc
        .open_account("dth", "dth-2", "pw", true)
        .await
        .unwrap();
    assert_eq!(
        reason(env.acc.bind_phone("dth-2", "13600000000").await),
        "phone_taken"
    );
    assert_eq!(
        reason(env.acc.bind_phone("nobody", "13600000001").await),
        "not_registered"
    );
    assert_eq!(
        env.acc
            .store()
            .get_account("dth-1")
            .await
            .unwrap()
            .unwrap()
            .group,
        "dth"
    );
}

async fn sms_hook_posts_json(db: TestDb) {
    let mut env = Env::new(&db).await;
    env.acc
        .auth_code(PHONE, "dev-9", CodeKind::Register)
        .await
        .unwrap();
    let req = env.sms.recv().await.unwrap();
    assert_eq!(req.request_line, "POST /sms HTTP/1.1");
    assert!(req.content_type.starts_with("application/json"), "{req:?}");
    let obj = req.body.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["code", "phone", "type"]);
    assert_eq!(obj["phone"], PHONE);
    assert_eq!(obj["type"], "register");
}

async fn sms_gateway_failure_is_reported(db: TestDb) {
    let (url, sms) = sms_gateway(500).await;
    let env = Env::with(&db, cheap_config(Some(url)), sms).await;
    let err = env
        .acc
        .auth_code(PHONE, "d", CodeKind::Register)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::Sms(_)), "{err:?}");
    assert!(err.is_server_fault());

    // Nobody listening: a clear failure, not a hang.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", dead.local_addr().unwrap());
    drop(dead);
    let (_, sms) = mpsc::unbounded_channel();
    let env = Env::with(&db, cheap_config(Some(url)), sms).await;
    let err = env
        .acc
        .auth_code("13800000009", "d", CodeKind::Register)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::Sms(_)), "{err:?}");
}

async fn sms_without_url_is_logged(db: TestDb) {
    let (_, sms) = mpsc::unbounded_channel();
    let env = Env::with(&db, cheap_config(None), sms).await;
    env.acc
        .auth_code(PHONE, "d", CodeKind::Register)
        .await
        .unwrap();
    assert_eq!(env.acc.store().count_auth_codes(PHONE, 0).await.unwrap(), 1);
}

async fn default_cost_hash_is_argon2id(db: TestDb) {
    let (_, sms) = mpsc::unbounded_channel();
    let cfg = AccountsConfig::default();
    assert_eq!(cfg.code_ttl, Duration::from_secs(600));
    let env = Env::with(&db, cfg, sms).await;
    env.acc.open_account("app", "u1", "pw", true).await.unwrap();
    let hash = env
        .acc
        .store()
        .get_account("u1")
        .await
        .unwrap()
        .unwrap()
        .pwd_hash;
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    env.acc.login("u1", "pw", "d").await.unwrap();
}
