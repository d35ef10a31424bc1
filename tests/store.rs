#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The store contract, run against SQLite and PostgreSQL alike (see
//! `store_harness`): every test is one generic body instantiated for both.

mod store_harness;

use std::sync::Arc;

use serde_json::json;
use softswitch::store::{
    AnyStore, CallKind, CallRecordEnd, CallRecordStart, CallRecordWrite, NewAccount, NewAuthCode,
    NewLogin, Outcome, RateLimit, Store, StoreError,
};
use store_harness::TestDb;

both_backends!(
    migrations_are_idempotent_on_reopen,
    account_create_get_duplicate,
    account_updates,
    phone_bindings,
    auth_code_single_use_under_concurrency,
    auth_code_expiry_and_wrong_guesses,
    auth_code_rate_limit,
    logins_one_per_account,
    cdr_live_then_finalized_exactly_once,
    cdr_concurrent_finalize_has_one_winner,
    cdr_duplicate_session_conflicts,
    cdr_batch_writes_like_single_writes,
    close_stale_closes_only_this_nodes_live_rows,
    history_groups_pages_newest_first,
    list_calls_by_time_range,
    push_queue_enqueue_and_deliver,
);

fn account(uuid: &str, phone: Option<&str>) -> NewAccount {
    NewAccount {
        uuid: uuid.to_owned(),
        name: format!("name of {uuid}"),
        pwd_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
        group: "app".to_owned(),
        active: true,
        info: json!({"k": "v"}),
        phone: phone.map(str::to_owned),
        created_ms: 1_000,
    }
}

fn code(phone: &str, hash: &str, created: i64) -> NewAuthCode {
    NewAuthCode {
        phone: phone.to_owned(),
        kind: "register".to_owned(),
        code_hash: hash.to_owned(),
        device: "dev".to_owned(),
        created_ms: created,
        expires_ms: created + 600_000,
    }
}

fn start(session: &str, account: &str, caller: &str, callee: &str, at: i64) -> CallRecordStart {
    CallRecordStart {
        session_id: session.to_owned(),
        account: Some(account.to_owned()),
        peer_account: None,
        caller: caller.to_owned(),
        callee: callee.to_owned(),
        kind: CallKind::Outbound,
        trunk: Some("pstn".to_owned()),
        call_ms: at,
        node: "node-a".to_owned(),
    }
}

fn end(outcome: Outcome, answer: Option<i64>, at: i64) -> CallRecordEnd {
    CallRecordEnd {
        ring_ms: None,
        answer_ms: answer,
        end_ms: at,
        outcome,
        sip_status: Some(200),
        codecs: "app=PCMA trunk=PCMA".to_owned(),
        quality: Some(json!({"total_eval": 4.2, "pl": 0})),
        trunk: None,
    }
}

/// Inserts a call and ends it at once; returns its id.
async fn ended_call(s: &AnyStore, session: &str, account: &str, caller: &str, callee: &str) -> i64 {
    let id = s
        .insert_live(&start(session, account, caller, callee, 10_000))
        .await
        .unwrap();
    assert!(s
        .finalize(id, &end(Outcome::Answered, Some(11_000), 20_500))
        .await
        .unwrap());
    id
}

// ---------------------------------------------------------------------------------

async fn migrations_are_idempotent_on_reopen(db: TestDb) {
    let s = db.open().await;
    s.ping().await.unwrap();
    s.create_account(&account("100", Some("100")))
        .await
        .unwrap();
    s.close().await;
    // Re-running the migrator on an up-to-date schema must be a no-op.
    let s = db.open().await;
    assert_eq!(s.get_account("100").await.unwrap().unwrap().uuid, "100");
    let again = db.open().await;
    assert_eq!(
        again.account_for_phone("100").await.unwrap().as_deref(),
        Some("100")
    );
}

async fn account_create_get_duplicate(db: TestDb) {
    let s = db.open().await;
    assert!(s.get_account("200").await.unwrap().is_none());
    s.create_account(&account("200", Some("200")))
        .await
        .unwrap();
    let a = s.get_account("200").await.unwrap().unwrap();
    assert_eq!(a.name, "name of 200");
    assert_eq!(a.group, "app");
    assert!(a.active);
    assert_eq!(a.info, json!({"k": "v"}));
    assert_eq!(a.created_ms, 1_000);
    assert!(a.pwd_hash.starts_with("$argon2id$"));

    let dup = s.create_account(&account("200", None)).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict("account"))),
        "{dup:?}"
    );

    // The phone is taken: the whole creation is rolled back.
    let taken = s.create_account(&account("201", Some("200"))).await;
    assert!(
        matches!(taken, Err(StoreError::Conflict("phone"))),
        "{taken:?}"
    );
    assert!(s.get_account("201").await.unwrap().is_none());
}

async fn account_updates(db: TestDb) {
    let s = db.open().await;
    s.create_account(&account("300", None)).await.unwrap();
    assert!(s.set_password("300", "$argon2id$new").await.unwrap());
    assert!(s
        .set_info("300", &json!({"nick": "x", "n": 1}))
        .await
        .unwrap());
    assert!(s.set_active("300", false).await.unwrap());
    let a = s.get_account("300").await.unwrap().unwrap();
    assert_eq!(a.pwd_hash, "$argon2id$new");
    assert_eq!(a.info, json!({"nick": "x", "n": 1}));
    assert!(!a.active);
    assert!(!s.set_password("nobody", "x").await.unwrap());
    assert!(!s.set_info("nobody", &json!({})).await.unwrap());
    assert!(!s.set_active("nobody", true).await.unwrap());
}

async fn phone_bindings(db: TestDb) {
    let s = db.open().await;
    s.create_account(&account("a1", Some("111"))).await.unwrap();
    s.create_account(&account("a2", None)).await.unwrap();
    s.bind_phone("112", "a1", 5).await.unwrap();
    // Idempotent for the owner, refused for anyone else.
    s.bind_phone("112", "a1", 6).await.unwrap();
    let other = s.bind_phone("112", "a2", 7).await;
    assert!(
        matches!(other, Err(StoreError::Conflict("phone"))),
        "{other:?}"
    );
    let ghost = s.bind_phone("113", "ghost", 7).await;
    assert!(
        matches!(ghost, Err(StoreError::NotFound("account"))),
        "{ghost:?}"
    );

    assert_eq!(
        s.account_for_phone("112").await.unwrap().as_deref(),
        Some("a1")
    );
    assert_eq!(s.phones_of("a1").await.unwrap(), vec!["111", "112"]);
    assert!(s.account_for_phone("113").await.unwrap().is_none());
    assert!(s.unbind_phone("112").await.unwrap());
    assert!(!s.unbind_phone("112").await.unwrap());
    s.bind_phone("112", "a2", 8).await.unwrap();
    assert_eq!(
        s.account_for_phone("112").await.unwrap().as_deref(),
        Some("a2")
    );
}

async fn auth_code_single_use_under_concurrency(db: TestDb) {
    let s = db.open().await;
    assert!(s
        .issue_auth_code(&code("400", "h1", 1_000), &[])
        .await
        .unwrap());
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.consume_auth_code("400", "register", "h1", 2_000, 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1, "a code must be usable exactly once");
    assert!(!s
        .consume_auth_code("400", "register", "h1", 2_000, 5)
        .await
        .unwrap());
}

async fn auth_code_expiry_and_wrong_guesses(db: TestDb) {
    let s = db.open().await;
    // Expiry: valid strictly before expires_ms.
    assert!(s.issue_auth_code(&code("500", "h", 0), &[]).await.unwrap());
    assert!(!s
        .consume_auth_code("500", "register", "h", 600_000, 5)
        .await
        .unwrap());
    // Wrong kind does not match.
    assert!(!s
        .consume_auth_code("500", "resetpwd", "h", 1, 5)
        .await
        .unwrap());
    // Still fine before expiry (one wrong-kind miss does not count against register).
    assert!(s
        .consume_auth_code("500", "register", "h", 599_999, 5)
        .await
        .unwrap());

    // Wrong guesses: after 3 misses (max_attempts 3) the right code is dead too.
    assert!(s
        .issue_auth_code(&code("501", "right", 0), &[])
        .await
        .unwrap());
    for _ in 0..3 {
        assert!(!s
            .consume_auth_code("501", "register", "wrong", 10, 3)
            .await
            .unwrap());
    }
    assert!(!s
        .consume_auth_code("501", "register", "right", 10, 3)
        .await
        .unwrap());

    // Using the newest code retires older open ones.
    assert!(s
        .issue_auth_code(&code("502", "old", 0), &[])
        .await
        .unwrap());
    assert!(s
        .issue_auth_code(&code("502", "new", 1), &[])
        .await
        .unwrap());
    assert!(s
        .consume_auth_code("502", "register", "new", 10, 5)
        .await
        .unwrap());
    assert!(!s
        .consume_auth_code("502", "register", "old", 10, 5)
        .await
        .unwrap());
}

async fn auth_code_rate_limit(db: TestDb) {
    let s = db.open().await;
    let limits = [
        RateLimit {
            window_ms: 60_000,
            max: 1,
        },
        RateLimit {
            window_ms: 3_600_000,
            max: 3,
        },
    ];
    assert!(s
        .issue_auth_code(&code("600", "a", 1_000), &limits)
        .await
        .unwrap());
    assert!(!s
        .issue_auth_code(&code("600", "b", 30_000), &limits)
        .await
        .unwrap());
    // Another phone is not affected.
    assert!(s
        .issue_auth_code(&code("601", "a", 30_000), &limits)
        .await
        .unwrap());
    assert!(s
        .issue_auth_code(&code("600", "c", 61_001), &limits)
        .await
        .unwrap());
    assert!(s
        .issue_auth_code(&code("600", "d", 122_000), &limits)
        .await
        .unwrap());
    // Three in the hour: the fourth waits for the first to leave the window.
    assert!(!s
        .issue_auth_code(&code("600", "e", 200_000), &limits)
        .await
        .unwrap());
    assert_eq!(s.count_auth_codes("600", 0).await.unwrap(), 3);
    assert!(s
        .issue_auth_code(&code("600", "f", 3_601_001), &limits)
        .await
        .unwrap());
}

async fn logins_one_per_account(db: TestDb) {
    let s = db.open().await;
    s.create_account(&account("700", None)).await.unwrap();
    let login = |device: &str, token: &str, at: i64| NewLogin {
        account: "700".to_owned(),
        device: device.to_owned(),
        token_hash: token.to_owned(),
        created_ms: at,
    };
    assert!(s.put_login(&login("d1", "t1", 1)).await.unwrap().is_none());
    let prev = s.put_login(&login("d2", "t2", 2)).await.unwrap().unwrap();
    assert_eq!((prev.device.as_str(), prev.created_ms), ("d1", 1));
    let cur = s.get_login("700").await.unwrap().unwrap();
    assert_eq!(cur.device, "d2");
    assert!(s.login_by_token("t1").await.unwrap().is_none());
    assert_eq!(s.login_by_token("t2").await.unwrap().unwrap().device, "d2");

    assert!(!s.delete_login("700", "d1").await.unwrap());
    assert!(s.delete_login("700", "d2").await.unwrap());
    assert!(s.get_login("700").await.unwrap().is_none());

    s.put_login(&login("d3", "t3", 3)).await.unwrap();
    assert_eq!(s.delete_logins("700").await.unwrap(), 1);

    let ghost = s
        .put_login(&NewLogin {
            account: "ghost".to_owned(),
            ..login("d", "t", 4)
        })
        .await;
    assert!(
        matches!(ghost, Err(StoreError::NotFound("account"))),
        "{ghost:?}"
    );
}

async fn cdr_live_then_finalized_exactly_once(db: TestDb) {
    let s = db.open().await;
    let id = s
        .insert_live(&start("sess-1", "800", "800", "13900000000", 10_000))
        .await
        .unwrap();
    let live = s.get_call(id).await.unwrap().unwrap();
    assert!(live.is_live());
    assert_eq!(live.state, "live");
    assert_eq!(live.kind, "outbound");
    assert_eq!(live.end_ms, None);
    assert_eq!(live.node, "node-a");

    assert!(s.set_ringing(id, 10_500).await.unwrap());
    assert!(
        !s.set_ringing(id, 10_600).await.unwrap(),
        "first ring time wins"
    );
    assert!(s.set_answered(id, 11_000).await.unwrap());

    let mut e = end(Outcome::Answered, None, 40_200);
    e.trunk = Some("pstn2".to_owned());
    assert!(s.finalize(id, &e).await.unwrap());
    let done = s.get_call_by_session("sess-1").await.unwrap().unwrap();
    assert_eq!(done.id, id);
    assert_eq!(done.state, "ended");
    assert_eq!(done.outcome.as_deref(), Some("answered"));
    assert_eq!(done.ring_ms, Some(10_500));
    assert_eq!(done.answer_ms, Some(11_000));
    assert_eq!(done.end_ms, Some(40_200));
    assert_eq!(done.duration_s, 30, "29.2 s billed as 30");
    assert_eq!(done.sip_status, Some(200));
    assert_eq!(done.codecs, "app=PCMA trunk=PCMA");
    assert_eq!(done.quality, Some(json!({"total_eval": 4.2, "pl": 0})));
    assert_eq!(done.trunk.as_deref(), Some("pstn2"));

    // A second finalize changes nothing.
    assert!(!s
        .finalize(id, &end(Outcome::Failed, None, 99_000))
        .await
        .unwrap());
    assert_eq!(s.get_call(id).await.unwrap().unwrap(), done);
    assert!(
        !s.set_answered(id, 1).await.unwrap(),
        "ended rows are frozen"
    );
    assert!(!s.finalize(999_999, &e).await.unwrap());

    // Unanswered: no duration; times given at the end are kept.
    let id2 = s
        .insert_live(&start("sess-2", "800", "800", "1", 0))
        .await
        .unwrap();
    let mut e2 = end(Outcome::Cancelled, None, 5_000);
    e2.ring_ms = Some(1_000);
    e2.sip_status = Some(487);
    e2.quality = None;
    assert!(s.finalize(id2, &e2).await.unwrap());
    let c = s.get_call(id2).await.unwrap().unwrap();
    assert_eq!((c.duration_s, c.ring_ms, c.quality), (0, Some(1_000), None));
    assert_eq!(c.outcome.as_deref(), Some("cancelled"));
    assert_eq!(c.trunk.as_deref(), Some("pstn"), "start's trunk kept");
}

async fn cdr_concurrent_finalize_has_one_winner(db: TestDb) {
    let s = Arc::new(db.open().await);
    let id = s
        .insert_live(&start("race", "900", "900", "1", 0))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8u16)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let mut e = end(Outcome::Answered, Some(1_000), 10_000 + i64::from(i));
                e.sip_status = Some(600 + i);
                (i, s.finalize(id, &e).await.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, won) = t.await.unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one finalize wins: {winners:?}");
    let rec = s.get_call(id).await.unwrap().unwrap();
    assert_eq!(rec.sip_status, Some(600 + i64::from(winners[0])));
}

async fn cdr_batch_writes_like_single_writes(db: TestDb) {
    let s = db.open().await;
    let earlier = s
        .insert_live(&start("b-old", "800", "800", "1", 1_000))
        .await
        .unwrap();
    s.set_ringing(earlier, 1_500).await.unwrap();
    let mut e = end(Outcome::Answered, None, 9_100);
    e.ring_ms = Some(1_600);
    let batch = [
        // A whole call in one batch: start, ring, answer, end.
        CallRecordWrite {
            start: Some(start("b-whole", "800", "800", "2", 2_000)),
            ring_ms: Some(2_100),
            answer_ms: Some(2_200),
            end: Some(end(Outcome::Answered, None, 4_201)),
            ..CallRecordWrite::default()
        },
        // A row from an earlier batch: its own ring time wins, answer and end
        // are added.
        CallRecordWrite {
            id: Some(earlier),
            answer_ms: Some(2_000),
            end: Some(e),
            ..CallRecordWrite::default()
        },
        // Starts and rings, stays live.
        CallRecordWrite {
            start: Some(start("b-live", "800", "800", "3", 3_000)),
            ring_ms: Some(3_100),
            ..CallRecordWrite::default()
        },
        CallRecordWrite::default(),
    ];
    let ids = s.write_call_records(&batch).await.unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[1], Some(earlier));
    assert_eq!(ids[3], None);
    let whole = s.get_call(ids[0].unwrap()).await.unwrap().unwrap();
    assert_eq!(whole.state, "ended");
    assert_eq!(
        (whole.ring_ms, whole.answer_ms, whole.end_ms),
        (Some(2_100), Some(2_200), Some(4_201))
    );
    assert_eq!(whole.duration_s, 3, "2.001 s billed as 3");
    assert_eq!(whole.quality, Some(json!({"total_eval": 4.2, "pl": 0})));
    let old = s.get_call(earlier).await.unwrap().unwrap();
    assert_eq!(old.state, "ended");
    assert_eq!((old.ring_ms, old.answer_ms), (Some(1_500), Some(2_000)));
    assert_eq!(old.duration_s, 8);
    let live = s.get_call(ids[2].unwrap()).await.unwrap().unwrap();
    assert!(live.is_live());
    assert_eq!((live.ring_ms, live.answer_ms), (Some(3_100), None));

    // Later: answered, then an end that is a no-op on an ended row.
    let later = [
        CallRecordWrite {
            id: ids[2],
            answer_ms: Some(3_500),
            ..CallRecordWrite::default()
        },
        CallRecordWrite {
            id: Some(earlier),
            end: Some(end(Outcome::Failed, None, 99_000)),
            ..CallRecordWrite::default()
        },
    ];
    s.write_call_records(&later).await.unwrap();
    let live = s.get_call(ids[2].unwrap()).await.unwrap().unwrap();
    assert_eq!((live.answer_ms, live.state.as_str()), (Some(3_500), "live"));
    assert_eq!(s.get_call(earlier).await.unwrap().unwrap(), old);

    // All or nothing: a duplicate session fails the whole batch.
    let bad = [
        CallRecordWrite {
            start: Some(start("b-new", "800", "800", "4", 5_000)),
            ..CallRecordWrite::default()
        },
        CallRecordWrite {
            start: Some(start("b-live", "800", "800", "3", 5_000)),
            ..CallRecordWrite::default()
        },
    ];
    let failed = s.write_call_records(&bad).await;
    assert!(
        matches!(failed, Err(StoreError::Conflict("session_id"))),
        "{failed:?}"
    );
    assert!(s.get_call_by_session("b-new").await.unwrap().is_none());
}

async fn cdr_duplicate_session_conflicts(db: TestDb) {
    let s = db.open().await;
    s.insert_live(&start("dup", "1", "1", "2", 0))
        .await
        .unwrap();
    let again = s.insert_live(&start("dup", "1", "1", "2", 0)).await;
    assert!(
        matches!(again, Err(StoreError::Conflict("session_id"))),
        "{again:?}"
    );
}

async fn close_stale_closes_only_this_nodes_live_rows(db: TestDb) {
    let s = db.open().await;
    let ringing = s
        .insert_live(&start("s1", "1", "1", "2", 1_000))
        .await
        .unwrap();
    s.set_ringing(ringing, 2_000).await.unwrap();
    let answered = s
        .insert_live(&start("s2", "1", "1", "3", 1_000))
        .await
        .unwrap();
    s.set_answered(answered, 3_000).await.unwrap();
    let ended = ended_call(&s, "s3", "1", "1", "4").await;
    let before = s.get_call(ended).await.unwrap().unwrap();
    let mut other = start("s4", "1", "1", "5", 1_000);
    other.node = "node-b".to_owned();
    let other = s.insert_live(&other).await.unwrap();
    // Started after the last heartbeat: ends at its own last known time.
    let late = s
        .insert_live(&start("s5", "1", "1", "6", 70_000))
        .await
        .unwrap();

    s.heartbeat("node-a", 50_000).await.unwrap();
    s.heartbeat("node-a", 60_000).await.unwrap();
    s.heartbeat("node-b", 60_000).await.unwrap();

    assert_eq!(s.close_stale("node-a", 100_000).await.unwrap(), 3);
    let r = s.get_call(ringing).await.unwrap().unwrap();
    assert_eq!(r.state, "ended");
    assert_eq!(r.outcome.as_deref(), Some("switch_restart"));
    assert_eq!((r.end_ms, r.duration_s), (Some(60_000), 0));
    let a = s.get_call(answered).await.unwrap().unwrap();
    assert_eq!((a.end_ms, a.duration_s), (Some(60_000), 57));
    assert_eq!(a.outcome.as_deref(), Some("switch_restart"));
    let l = s.get_call(late).await.unwrap().unwrap();
    assert_eq!(l.end_ms, Some(70_000));
    assert_eq!(s.get_call(ended).await.unwrap().unwrap(), before);
    assert!(s.get_call(other).await.unwrap().unwrap().is_live());

    assert_eq!(s.close_stale("node-a", 100_000).await.unwrap(), 0);
    // No heartbeat ever: the call's own start time.
    let mut lone = start("s6", "1", "1", "7", 5_000);
    lone.node = "node-c".to_owned();
    let lone = s.insert_live(&lone).await.unwrap();
    assert_eq!(s.close_stale("node-c", 100_000).await.unwrap(), 1);
    assert_eq!(s.get_call(lone).await.unwrap().unwrap().end_ms, Some(5_000));
}

async fn history_groups_pages_newest_first(db: TestDb) {
    let s = db.open().await;
    // Account "me" (13800000000): calls to 111 (x3), 222 (x1), 333 (x2), and an
    // incoming p2p call from "you" where it is the peer account.
    let a1 = ended_call(&s, "h1", "me", "13800000000", "111").await;
    let b1 = ended_call(&s, "h2", "me", "13800000000", "222").await;
    let a2 = ended_call(&s, "h3", "me", "13800000000", "111").await;
    let c1 = ended_call(&s, "h4", "me", "13800000000", "333").await;
    let mut p2p = start("h5", "you", "13900000000", "13800000000", 30_000);
    p2p.kind = CallKind::P2p;
    p2p.peer_account = Some("me".to_owned());
    let p = s.insert_live(&p2p).await.unwrap();
    s.finalize(p, &end(Outcome::Rejected, None, 31_000))
        .await
        .unwrap();
    let a3 = ended_call(&s, "h6", "me", "13800000000", "111").await;
    let c2 = ended_call(&s, "h7", "me", "13800000000", "333").await;
    // Not in the history: someone else's call, and a live one.
    ended_call(&s, "h8", "else", "1", "111").await;
    s.insert_live(&start("h9", "me", "13800000000", "999", 0))
        .await
        .unwrap();

    let page = s.history("me", 0, 100).await.unwrap();
    let summary: Vec<_> = page
        .iter()
        .map(|g| (g.callee.as_str(), g.id, g.times))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("333", c2, 2),
            ("111", a3, 3),
            ("13800000000", p, 1),
            ("222", b1, 1)
        ]
    );
    let g111 = &page[1];
    assert_eq!(g111.caller, "13800000000");
    let ids: Vec<i64> = g111.detail.iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![a3, a2, a1], "details newest first");
    assert_eq!(g111.detail[0].kind, "outbound");
    assert_eq!(g111.detail[0].duration_s, 10);
    assert_eq!(g111.detail[0].call_ms, 10_000);
    assert_eq!(g111.detail[0].answer_ms, Some(11_000));
    assert_eq!(page[2].detail[0].kind, "p2p");
    assert_eq!(page[2].detail[0].outcome.as_deref(), Some("rejected"));
    let _ = c1;

    // Paging: start_id = the last id of the previous page.
    let p1 = s.history("me", 0, 2).await.unwrap();
    assert_eq!(p1.iter().map(|g| g.id).collect::<Vec<_>>(), vec![c2, a3]);
    let p2 = s.history("me", p1[1].id, 2).await.unwrap();
    assert_eq!(p2.iter().map(|g| g.id).collect::<Vec<_>>(), vec![p, b1]);
    let p3 = s.history("me", p2[1].id, 2).await.unwrap();
    assert!(p3.is_empty());
    assert!(s.history("me", 0, 0).await.unwrap().is_empty());
    assert!(s.history("nobody", 0, 10).await.unwrap().is_empty());
    // The callee side of the p2p call sees it too.
    let you = s.history("you", 0, 10).await.unwrap();
    assert_eq!(you.len(), 1);
    assert_eq!(you[0].times, 1);
}

async fn list_calls_by_time_range(db: TestDb) {
    let s = db.open().await;
    for (i, at) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        let id = s
            .insert_live(&start(&format!("l{i}"), "acc", "acc", "1", at))
            .await
            .unwrap();
        s.finalize(id, &end(Outcome::NoAnswer, None, at + 500))
            .await
            .unwrap();
    }
    let got = s.list_calls("acc", 1_500, 3_000, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].call_ms, 2_000);
    assert_eq!(got[0].outcome.as_deref(), Some("no_answer"));
    assert_eq!(s.list_calls("acc", 0, i64::MAX, 2).await.unwrap().len(), 2);
}

async fn push_queue_enqueue_and_deliver(db: TestDb) {
    let s = db.open().await;
    let e1 = s
        .enqueue_event("u", "d1", &json!({"event": "login_otherwhere"}), 1)
        .await
        .unwrap();
    let e2 = s
        .enqueue_event("u", "d1", &json!({"event": "shake_hand"}), 2)
        .await
        .unwrap();
    let other = s
        .enqueue_event("u", "d2", &json!({"event": "x"}), 3)
        .await
        .unwrap();
    assert!(e1 < e2 && e2 < other);
    let pending = s.pending_events("u", "d1", 0, 10).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].event, json!({"event": "login_otherwhere"}));
    assert_eq!((pending[0].seq, pending[0].created_ms), (e1, 1));
    assert_eq!(s.pending_events("u", "d1", e1, 10).await.unwrap().len(), 1);
    assert_eq!(s.mark_delivered("u", "d1", e1, 9).await.unwrap(), 1);
    let left = s.pending_events("u", "d1", 0, 10).await.unwrap();
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![e2]);
    assert_eq!(s.pending_events("u", "d2", 0, 10).await.unwrap().len(), 1);
}
