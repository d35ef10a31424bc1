#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! End to end: callback (API.md "Callback"), against the real `softswitch`
//! binary. The switch calls the user's own phone (`local`) through one
//! trunk; when it answers, calls `remote` through another and bridges the
//! two.
//!
//! ```text
//!  test ──POST /lwork/mobile/callback {local 1001, remote 2002}──▶ softswitch
//!  softswitch ──INVITE 1001──▶ SIPp uas "local"  (trunk "local", prefix 1)
//!  softswitch ──INVITE 2002──▶ SIPp uas "remote" (trunk "remote", prefix 2)
//!  test "local" socket ◀══RTP══▶ relay ◀══RTP══▶ test "remote" socket
//! ```
//!
//! Each SIPp does only the signalling: its 200 answers PCMA at a UDP socket
//! of this test (`uas_pcma_media.xml -key pcma_port`), so the test sends
//! A-law from each "phone" and checks that exactly the other phone's packets
//! arrive, from the relay. The account is made the way an app makes one
//! (SMS code from a stand-in gateway, register, login).
//!
//! A failing test keeps its logs under `$TMPDIR/softswitch-e2e/`.

mod common;

use common::app::{self, has_time, Api, Login, SmsHook};
use common::rtp::{stream_both, End, MediaSocket};
use common::trace::wait_received;
use common::{
    media_range, require_sipp, wait_until, Sipp, SippCmd, SippPorts, Switch, SwitchCfg, TestDir,
    TrunkCfg, SHORT,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// The user's own phone and the party it wants to talk to, each routed to
/// its own trunk by its first digit.
const LOCAL: &str = "1001";
const REMOTE: &str = "2002";

/// The account placing the callbacks, and its device.
const ACCOUNT: &str = "13900000021";
const DEVICE: &str = "android-cb";

/// RTP packets that must cross the relay each way (0.5 s of 20 ms frames).
const MIN_PACKETS: usize = 25;

/// A-law, as `uas_pcma_media.xml` answers.
const PCMA_PT: u8 = 8;

// ---------------------------------------------------------------------------------
// Switch set-up and the account
// ---------------------------------------------------------------------------------

/// A switch with trunk "local" (numbers starting 1) at `local` and trunk
/// "remote" (numbers starting 2) at `remote`, and `[sms] url` at `sms`.
fn config(local: SocketAddr, remote: SocketAddr, sms: &SmsHook) -> SwitchCfg {
    let trunk = |name: &str, addr: SocketAddr, prefix: &str| TrunkCfg {
        name: name.into(),
        ..TrunkCfg::callee(addr.to_string()).prefixes(&[prefix])
    };
    let mut cfg = SwitchCfg::new(vec![
        trunk("local", local, "1"),
        trunk("remote", remote, "2"),
    ]);
    cfg.sip_extra = sms.toml();
    cfg
}

/// The logged-in account.
struct User {
    api: Api,
    login: Login,
}

/// `auth_code` → the code from the SMS hook → `register` → `login`.
fn user(api: Api, sms: &SmsHook) -> User {
    let login = app::register_and_login(api, sms, ACCOUNT, DEVICE, "s3cret-pw");
    assert_eq!(login.uuid, ACCOUNT, "login: {login:?}");
    User { api, login }
}

impl User {
    /// POST /lwork/mobile/callback: the session id.
    fn callback(&self) -> String {
        let r = self.api.post(
            "/lwork/mobile/callback",
            json!({"uuid": ACCOUNT, "local": LOCAL, "remote": REMOTE, "dev_id": DEVICE,
                   "token": self.login.token}),
        );
        r.ok()["session_id"]
            .as_str()
            .unwrap_or_else(|| panic!("callback reply without session_id: {}", r.json))
            .to_owned()
    }

    /// DELETE /lwork/mobile/callback.
    fn stop(&self, sid: &str) {
        self.api
            .request(
                "DELETE",
                "/lwork/mobile/callback",
                Some(&json!({"uuid": ACCOUNT, "session_id": sid, "token": self.login.token})),
            )
            .ok();
    }

    /// The session's state, read as an Android app reads a call's.
    fn status(&self, sid: &str) -> String {
        self.login.peer_status(self.api, sid)
    }

    /// Polls the status until it is `want`; returns the states seen
    /// (consecutive repeats folded), checking they only move forward
    /// through idle → a_ringing → a_answered → b_ringing → bridged → release.
    fn watch(&self, sw: &Switch, sid: &str, want: &str) -> Vec<String> {
        let rank = |s: &str| match s {
            "idle" => 0,
            "a_ringing" => 1,
            "a_answered" => 2,
            "b_ringing" => 3,
            "bridged" => 4,
            "release" => 5,
            other => panic!("callback state {other:?} is not a callback state"),
        };
        let what = format!("callback {sid}");
        let (reached, seen) = app::watch_states(&what, want, Some(&rank), || self.status(sid));
        assert!(
            reached,
            "callback {sid} did not reach {want} within {SHORT:?}; states seen {seen:?}\n{}",
            sw.log_tail(40)
        );
        seen
    }

    /// Waits until the history has the (local, remote) group and checks it
    /// holds exactly one callback; returns that call's detail.
    fn history_record(&self, sw: &Switch) -> Value {
        let mut groups = Vec::new();
        let found = wait_until(SHORT, || {
            groups = self.login.history(self.api);
            !groups.is_empty()
        });
        assert!(found, "no call history\n{}", sw.log_tail(30));
        assert_eq!(groups.len(), 1, "one group: {groups:#?}");
        let g = &groups[0];
        assert_eq!(
            (g["caller"].as_str(), g["callee"].as_str()),
            (Some(LOCAL), Some(REMOTE)),
            "a callback is recorded as local calling remote: {g}"
        );
        app::single_call(g, "callback")
    }
}

// ---------------------------------------------------------------------------------
// SIPp message logs
// ---------------------------------------------------------------------------------

/// The first INVITE `sipp` received (its `-trace_msg` log), as text lines.
fn received_invite(sipp: &Sipp) -> Vec<String> {
    wait_received(sipp, "INVITE", |m| m.is_request("INVITE"))
        .text
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The user part of the first SIP URI on the line of `msg` that starts with
/// `header` (a method for the request line, or a header name).
fn uri_user<'a>(msg: &'a [String], header: &str) -> &'a str {
    let line = msg
        .iter()
        .find(|l| {
            l.split_once([' ', ':'])
                .is_some_and(|(k, _)| k.eq_ignore_ascii_case(header))
        })
        .unwrap_or_else(|| panic!("no {header} in {msg:#?}"));
    let at = line
        .find("sip:")
        .unwrap_or_else(|| panic!("no sip: URI in {line}"));
    let user = &line[at + 4..];
    &user[..user.find('@').unwrap_or(user.len())]
}

/// The relay address the switch offered in an INVITE: `c=` and `m=audio`.
fn offered_media(msg: &[String], range: (u16, u16)) -> SocketAddr {
    let ip = msg
        .iter()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap_or_else(|| panic!("no c= in {msg:#?}"));
    let port: u16 = msg
        .iter()
        .find_map(|l| {
            l.strip_prefix("m=audio ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no m=audio in {msg:#?}"));
    assert!(
        ip.trim() == "127.0.0.1" && (range.0..=range.1).contains(&port),
        "the offer does not name a relay port ({range:?}): {msg:#?}"
    );
    SocketAddr::new(ip.trim().parse().unwrap(), port)
}

// ---------------------------------------------------------------------------------
// Media
// ---------------------------------------------------------------------------------

/// Streams A-law from both phones until each got [`MIN_PACKETS`] of the
/// other's payloads, then checks that everything each got came from its
/// relay port as PCMA, and was the other phone's audio: at the remote phone
/// nothing else at all; at the local phone only the ringback the switch
/// played it before the bridge, never after the other phone's audio began.
fn exchange(local: &End<'_>, remote: &End<'_>, context: &dyn Fn() -> String) {
    let (local_frames, remote_frames) = (&local.frames, &remote.frames);
    assert!(local_frames.is_disjoint(remote_frames));
    let got = stream_both(local, remote, MIN_PACKETS);
    let (rx_l, rx_r) = (got.rx_a, got.rx_b);
    assert!(
        got.enough,
        "audio did not cross the bridge: local got {} of remote's packets ({} in all), \
         remote got {} of local's ({} in all), within {SHORT:?}\n{}",
        got.heard_a,
        rx_l.len(),
        got.heard_b,
        rx_r.len(),
        context()
    );
    for (phone, rx) in [(local, &rx_l), (remote, &rx_r)] {
        for p in rx {
            assert_eq!(
                (p.from, p.pt),
                (phone.relay, PCMA_PT),
                "{}: RTP from {} (its relay port is {}), payload type {}",
                phone.name,
                p.from,
                phone.relay,
                p.pt
            );
        }
    }
    assert!(
        rx_r.iter().all(|p| p.carries(local_frames)),
        "remote got something that is not local's audio"
    );
    let first = rx_l.iter().position(|p| p.carries(remote_frames)).unwrap();
    assert!(
        rx_l[first..].iter().all(|p| p.carries(remote_frames)),
        "local got something else (ringback?) after remote's audio began"
    );
    eprintln!(
        "e2e: local got {} packets ({first} before the bridge), remote got {}",
        rx_l.len(),
        rx_r.len()
    );
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

/// Local answers, remote is called and answers, the status moves forward to
/// `bridged`, and the two phones hear each other through the relay. DELETE
/// ends both legs (each SIPp gets its BYE), the status ends `release`, and
/// the history has one callback record.
#[test]
fn callback_bridges_both_phones_and_delete_ends_both_legs() {
    require_sipp();
    let dir = TestDir::new("callback_bridged");
    let sms = SmsHook::start();
    let (sock_l, sock_r) = (MediaSocket::bind(), MediaSocket::bind());
    let (ports_l, ports_r) = (SippPorts::new(), SippPorts::new());
    let phone = |name: &str, ports: SippPorts, sock: &MediaSocket| {
        SippCmd::new(name, "uas_pcma_media.xml", ports)
            .args(&["-m", "1", "-trace_msg"])
            .args(&["-key", "pcma_port", &sock.port().to_string()])
            .timeout_s(40)
            .spawn(dir.path())
    };
    let mut local = phone("local", ports_l, &sock_l);
    let mut remote = phone("remote", ports_r, &sock_r);
    let sw = Switch::start(dir.path(), &config(ports_l.addr(), ports_r.addr(), &sms));
    let range = media_range(dir.path());
    let user = user(Api(sw.http), &sms);

    let sid = user.callback();
    let seen = user.watch(&sw, &sid, "bridged");
    eprintln!("e2e: callback states {seen:?}");

    let invite_l = received_invite(&local);
    let invite_r = received_invite(&remote);
    assert_eq!(uri_user(&invite_l, "INVITE"), LOCAL, "{invite_l:#?}");
    assert_eq!(uri_user(&invite_r, "INVITE"), REMOTE, "{invite_r:#?}");
    assert_eq!(
        uri_user(&invite_r, "From"),
        LOCAL,
        "remote sees the user's own number calling: {invite_r:#?}"
    );
    let relay_l = offered_media(&invite_l, range);
    let relay_r = offered_media(&invite_r, range);
    assert_ne!(relay_l, relay_r, "one relay leg per phone");

    let ctx = || {
        format!(
            "{}\n{}\n{}",
            local.report(),
            remote.report(),
            sw.log_tail(40)
        )
    };
    exchange(
        &End::pcma("local", &sock_l.rtp, relay_l, 440.0),
        &End::pcma("remote", &sock_r.rtp, relay_r, 660.0),
        &ctx,
    );
    assert_eq!(user.status(&sid), "bridged");
    // One call at a time per account (`[calls] max_calls_per_account` = 1).
    let again = user.api.post(
        "/lwork/mobile/callback",
        json!({"uuid": ACCOUNT, "local": LOCAL, "remote": REMOTE, "token": user.login.token}),
    );
    assert_eq!(again.failure(), "busy", "a second callback while one is up");
    let unknown = user.api.request(
        "DELETE",
        "/lwork/mobile/callback",
        Some(&json!({"uuid": ACCOUNT, "session_id": format!("{sid}0"), "token": user.login.token})),
    );
    assert_eq!(
        unknown.failure(),
        "session_not_exist",
        "DELETE of a made-up session"
    );
    assert_eq!(user.status(&sid), "bridged");

    user.stop(&sid);
    let ctx = || sw.log_tail(40);
    local.expect_success(Duration::from_secs(30), &ctx);
    remote.expect_success(Duration::from_secs(30), &ctx);
    user.watch(&sw, &sid, "release");

    let detail = user.history_record(&sw);
    assert!(
        has_time(&detail, "ringtime") && has_time(&detail, "starttime"),
        "local rang and the two were bridged: {detail}"
    );
}

/// Remote is busy (486); the local leg, already answered, is ended with a
/// BYE, the status ends `release` without ever being `bridged`, and the
/// history has one callback record that was never bridged.
#[test]
fn callback_remote_busy_ends_the_local_leg() {
    require_sipp();
    let dir = TestDir::new("callback_busy");
    let sms = SmsHook::start();
    let (ports_l, ports_r) = (SippPorts::new(), SippPorts::new());
    // uas.xml fails unless the call ends with a BYE from the switch.
    let mut local = SippCmd::new("local", "uas.xml", ports_l)
        .args(&["-m", "1", "-trace_msg"])
        .timeout_s(40)
        .spawn(dir.path());
    let mut remote = SippCmd::new("remote", "uas_486.xml", ports_r)
        .args(&["-m", "1", "-trace_msg"])
        .timeout_s(40)
        .spawn(dir.path());
    let sw = Switch::start(dir.path(), &config(ports_l.addr(), ports_r.addr(), &sms));
    let user = user(Api(sw.http), &sms);

    let sid = user.callback();
    let seen = user.watch(&sw, &sid, "release");
    assert!(
        !seen.iter().any(|s| s == "bridged"),
        "a failed callback is never bridged: {seen:?}"
    );
    let ctx = || sw.log_tail(40);
    local.expect_success(Duration::from_secs(30), &ctx);
    remote.expect_success(Duration::from_secs(30), &ctx);
    assert_eq!(uri_user(&received_invite(&remote), "INVITE"), REMOTE);

    let detail = user.history_record(&sw);
    assert_eq!(detail["starttime"], "", "never bridged: {detail}");
    assert!(has_time(&detail, "ringtime"), "local rang: {detail}");
}
