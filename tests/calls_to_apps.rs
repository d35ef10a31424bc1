#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! End to end: calls that come to apps (API.md "App-to-app calls (p2p) and
//! calls coming in from a trunk (sip_call_in)", "Push to apps"), against the
//! real `softswitch` binary.
//!
//! ```text
//!  SIPp uac ("PSTN") ──INVITE 139...──▶ softswitch ──p2p_inform_called──▶ test app (long poll)
//!        ◀──180 / 200 / 480 / 486 / 603──        ◀──p2p_ringing / p2p_answer / p2p_reject──
//!  test "trunk" socket ◀══RTP══▶ relay ◀══RTP══▶ test "app" socket
//!
//!  app A ──start type p2p──▶ softswitch ──p2p_inform_called──▶ app B
//!  app A socket ◀══RTP══▶ relay ◀══RTP══▶ app B socket     (or B's number at a SIPp uas)
//! ```
//!
//! Accounts are made the way an app makes them: `auth_code`, the code from
//! the SMS gateway hook (a small HTTP server of this test), `register`,
//! `login`; an account registered with a phone number owns that number.
//! The app's side is the HTTP façade driven by this test: the push long poll
//! (`/channel/push_service`, idle timeout 2 s here), `p2p_*` with the opdata
//! of the pushed event, and the call status routes. Media endpoints of the
//! app and of the "PSTN" caller are UDP sockets of this test (the caller's
//! SDP names one through `-key trunk_port`), so each test sends real AMR
//! frames each way and checks that exactly those frames arrive, from the
//! relay, on the other side.
//!
//! Not covered here: the APNs voip push of these events. No HTTP route of
//! the switch registers an APNs token (only Baidu channels), so it would
//! need writing the token into the switch's database behind its back; the
//! push module's own tests (tests/push.rs) cover APNs delivery.
//!
//! A failing test keeps its logs under `$TMPDIR/softswitch-e2e/`.

mod common;

use common::app::{self, has_time, t, Api, Login, Reply, SmsHook};
use common::rtp::{stream_both, End, MediaSocket};
use common::trace::{traced, wait_received, Traced};
use common::{
    free_port, media_range, require_sipp, wait_until, Sipp, SippCmd, SippPorts, Switch, SwitchCfg,
    TestDir, TrunkCfg, SHORT,
};
use serde_json::{json, Value};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `[push] long_poll_timeout_s`: an idle poll answers `shake_hand` after
/// this, so a test waiting for an event polls again every 2 s.
const POLL_IDLE_S: u64 = 2;

/// `[calls] ring_timeout_s` where the test answers (never reached: a test
/// takes far less) and where the point is that nobody answers.
const RING_LONG_S: u64 = 60;
const RING_SHORT_S: u64 = 3;

/// How long `uac_call_app.xml` holds the call after its ACK (`-d`): room for
/// the media exchange, which ends once [`MIN_PACKETS`] arrived each way
/// (about 0.5 s), on a loaded machine.
const HOLD_MS: u64 = 4000;

/// RTP packets that must cross the relay each way (0.5 s of 20 ms frames).
const MIN_PACKETS: usize = 25;

/// Payload types of AMR: as `uac_call_app.xml` offers it, and as the switch
/// gives it to Android apps (src/b2bua/app.rs).
const TRUNK_AMR_PT: u8 = 96;
const APP_AMR_PT: u8 = 114;

/// What `uac_*.xml` put in their From (the caller an app is told about).
const SIPP_CALLER: &str = "sipp";

// ---------------------------------------------------------------------------------
// Switch set-up and accounts
// ---------------------------------------------------------------------------------

/// The switch's config: `trunks`, `[sms] url` at `sms`, a short long-poll
/// idle timeout and the given ring timeout.
fn config(trunks: Vec<TrunkCfg>, sms: &SmsHook, ring_timeout_s: u64) -> SwitchCfg {
    let mut cfg = SwitchCfg::new(trunks);
    // More tables after [sms] (see `SmsHook::toml`).
    cfg.sip_extra = format!(
        "{}\n[push]\nlong_poll_timeout_s = {POLL_IDLE_S}\n\n\
         [calls]\nring_timeout_s = {ring_timeout_s}\n",
        sms.toml()
    );
    cfg
}

/// A logged-in app: its account (a phone number) on one device, and the
/// events its long polls brought that no test step took yet.
struct App {
    api: Api,
    login: Login,
    pending: VecDeque<Value>,
}

/// `auth_code` → the code from the SMS hook → `register` → `login`.
fn app_for(api: Api, sms: &SmsHook, phone: &str, device: &str) -> App {
    let login = app::register_and_login(api, sms, phone, device, "s3cret-pw");
    assert_eq!(
        login.uuid, phone,
        "an account registered by phone is that phone"
    );
    App {
        api,
        login,
        pending: VecDeque::new(),
    }
}

impl App {
    /// Long-polls until an event `kind` comes (keeping any other for later)
    /// and returns it. Fails after [`SHORT`].
    fn wait_event(&mut self, kind: &str, sw: &Switch) -> Value {
        let deadline = Instant::now() + SHORT;
        let mut polled = Vec::new();
        loop {
            if let Some(i) = self.pending.iter().position(|e| e["event"] == kind) {
                return self.pending.remove(i).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {kind} event within {SHORT:?}; polls returned {polled:?}, \
                 not yet taken {:?}\n{}",
                self.login.uuid,
                self.pending,
                sw.log_tail(40)
            );
            for e in self.login.poll(self.api) {
                polled.push(e.clone());
                if e["event"] != "shake_hand" {
                    assert!(
                        e["seq"].as_i64().is_some(),
                        "a queued event carries its seq: {e}"
                    );
                    self.pending.push_back(e);
                }
            }
        }
    }

    /// Events no step took, after one more (idle) poll: what the app would
    /// still be told.
    fn leftover_events(&mut self) -> Vec<Value> {
        for e in self.login.poll(self.api) {
            if e["event"] != "shake_hand" {
                self.pending.push_back(e);
            }
        }
        self.pending.drain(..).collect()
    }

    /// POST with this app's token added to `body`.
    fn post(&self, path: &str, mut body: Value) -> Reply {
        body["token"] = json!(self.login.token);
        self.api.post(path, body)
    }

    fn ringing(&self, opdata: &Value) -> Reply {
        self.post("/lwork/mobile/p2p_ringing", json!({"opdata": opdata}))
    }

    /// p2p_answer (Android): media at `port` on 127.0.0.1.
    fn answer(&self, opdata: &Value, port: u16) -> Reply {
        self.post(
            "/lwork/mobile/p2p_answer",
            json!({"opdata": opdata, "sdp": {"ip": "127.0.0.1", "port": port},
                   "callee_phone": self.login.uuid, "clidata": {"os_type": "android"}}),
        )
    }

    fn reject(&self, opdata: &Value, reason: Option<&str>) -> Reply {
        let mut body = json!({"opdata": opdata});
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        self.post("/lwork/mobile/p2p_reject", body)
    }

    fn p2p_poll(&self, opdata: &Value) -> Reply {
        self.post("/lwork/mobile/p2p_poll", json!({"opdata": opdata}))
    }

    /// GET /lwork/mobile/voip/calls: the session's `peer_status`.
    fn status(&self, sid: &str) -> String {
        self.login.peer_status(self.api, sid)
    }

    /// Polls the status until it is `want`; returns the states seen
    /// (consecutive repeats folded).
    fn wait_status(&self, sw: &Switch, sid: &str, want: &str) -> Vec<String> {
        let (reached, seen) = app::watch_states(sid, want, None, || self.status(sid));
        assert!(
            reached,
            "{}: session {sid} did not reach {want} within {SHORT:?}; states seen {seen:?}\n{}",
            self.login.uuid,
            sw.log_tail(40)
        );
        seen
    }

    /// DELETE /lwork/mobile/voip/calls: this app hangs up.
    fn stop(&self, sid: &str) {
        let Login { uuid, token, .. } = &self.login;
        self.api
            .request(
                "DELETE",
                "/lwork/mobile/voip/calls",
                Some(&json!({"uuid": uuid, "session_id": sid, "token": token})),
            )
            .ok();
    }

    /// Waits until the history has a group (caller, callee) and checks it
    /// holds exactly one call, of `kind`; returns that call's detail.
    fn history_record(&self, sw: &Switch, caller: &str, callee: &str, kind: &str) -> Value {
        let mut groups = Vec::new();
        let found = wait_until(SHORT, || {
            groups = self.login.history(self.api);
            groups
                .iter()
                .any(|g| g["caller"] == caller && g["callee"] == callee)
        });
        assert!(
            found,
            "{}: no history group {caller} -> {callee}: {groups:#?}\n{}",
            self.login.uuid,
            sw.log_tail(30)
        );
        let g = groups
            .iter()
            .find(|g| g["caller"] == caller && g["callee"] == callee)
            .unwrap();
        let detail = app::single_call(g, kind);
        assert!(has_time(&detail, "calltime"), "calltime: {g}");
        detail
    }
}

/// The event's opdata, as the app holds it (what it sends back), and that
/// opdata's JSON (both kinds of calls issue a JSON object's text).
fn opdata_of(event: &Value) -> (Value, Value) {
    let opdata = event["opdata"].clone();
    let parsed = match &opdata {
        Value::String(s) => serde_json::from_str(s)
            .unwrap_or_else(|e| panic!("opdata is not JSON text ({e}): {event}")),
        Value::Object(_) => opdata.clone(),
        _ => panic!("opdata is neither a string nor an object: {event}"),
    };
    (opdata, parsed)
}

/// Checks a `p2p_answer` / Android start reply against what the app must be
/// told, and returns the relay address the app sends to and the SSRC the
/// relay sends with.
fn relay_of(reply: &Value, range: (u16, u16)) -> (SocketAddr, u32) {
    assert_eq!(reply["ip"], "127.0.0.1", "relay ip: {reply}");
    assert_eq!(reply["codec_name"], "AMR", "codec: {reply}");
    assert_eq!(
        reply["payload_mode"], "octet-aligned",
        "payload mode: {reply}"
    );
    let port = reply["port"].as_u64().expect("port") as u16;
    assert!(
        (range.0..=range.1).contains(&port),
        "port {port} is not a relay port {range:?}: {reply}"
    );
    let rssrc = reply["rssrc"].as_u64().expect("rssrc") as u32;
    (SocketAddr::from(([127, 0, 0, 1], port)), rssrc)
}

// ---------------------------------------------------------------------------------
// SIPp message logs
// ---------------------------------------------------------------------------------

/// The final responses to the INVITE `sipp` received (retransmissions
/// folded).
fn invite_finals(sipp: &Sipp) -> Vec<u16> {
    let mut out: Vec<u16> = traced(sipp)
        .iter()
        .filter(|m| !m.sent && m.cseq.ends_with(" INVITE"))
        .filter_map(Traced::status)
        .filter(|s| *s >= 200)
        .collect();
    out.dedup();
    out
}

/// The provisional responses to the INVITE `sipp` received.
fn invite_provisionals(sipp: &Sipp) -> BTreeSet<u16> {
    traced(sipp)
        .iter()
        .filter(|m| !m.sent && m.cseq.ends_with(" INVITE"))
        .filter_map(Traced::status)
        .filter(|s| *s < 200)
        .collect()
}

/// A SIPp "PSTN caller" dialling `number` at the switch through the inbound
/// trunk, with its message log (in `<dir>/<name>`, one directory per run).
fn pstn_call(
    dir: &TestDir,
    name: &str,
    sw: &Switch,
    ports: SippPorts,
    scenario: &str,
    number: &str,
    extra: &[&str],
) -> Sipp {
    SippCmd::new(name, scenario, ports)
        .remote(sw.sip)
        .args(&["-s", number, "-m", "1", "-trace_msg"])
        .args(extra)
        .timeout_s(40)
        .spawn(dir.path())
}

// ---------------------------------------------------------------------------------
// Media
// ---------------------------------------------------------------------------------

/// Streams AMR from both ends at once until each got [`MIN_PACKETS`] of the
/// other's frames, then checks that everything each end received came from
/// its relay port, in its payload type (and SSRC, if it was told one), and
/// carried the other end's frames: nothing of its own (no echo), nothing
/// mangled.
fn exchange(a: &End<'_>, b: &End<'_>, context: &dyn Fn() -> String) {
    assert!(
        a.frames.is_disjoint(&b.frames),
        "the two ends' frames must be told apart"
    );
    let got = stream_both(a, b, MIN_PACKETS);
    let (rx_a, rx_b) = (got.rx_a, got.rx_b);
    assert!(
        got.enough,
        "media did not cross the relay: {} got {} of {}'s frames ({} packets in all), \
         {} got {} of {}'s ({} in all), within {SHORT:?}\n{}",
        a.name,
        got.heard_a,
        b.name,
        rx_a.len(),
        b.name,
        got.heard_b,
        a.name,
        rx_b.len(),
        context()
    );
    for (end, rx, other) in [(a, &rx_a, b), (b, &rx_b, a)] {
        for p in rx {
            assert_eq!(
                p.from, end.relay,
                "{}: RTP from {} (not its relay port {})",
                end.name, p.from, end.relay
            );
            assert_eq!(p.pt, end.pt, "{}: payload type of {p:?}", end.name);
            if let Some(ssrc) = end.ssrc {
                assert_eq!(
                    p.ssrc, ssrc,
                    "{}: the relay's SSRC is the rssrc it was told",
                    end.name
                );
            }
            assert!(
                p.carries(&other.frames),
                "{}: a packet that is not one of {}'s frames: {p:?}",
                end.name,
                other.name
            );
        }
    }
    eprintln!(
        "e2e: {} got {} packets, {} got {}",
        a.name,
        rx_a.len(),
        b.name,
        rx_b.len()
    );
}

// ---------------------------------------------------------------------------------
// Tests: calls from a trunk (sip_call_in)
// ---------------------------------------------------------------------------------

/// The number the app's account owns, and the device it is logged in on.
const APP_NUMBER: &str = "13900000001";
const APP_DEVICE: &str = "android-callee";

/// A switch whose only trunk is the inbound one `pstn` calls from, and the
/// app owning [`APP_NUMBER`].
fn call_in_setup(name: &str, ring_timeout_s: u64) -> (TestDir, Switch, SippPorts, App, SmsHook) {
    require_sipp();
    let dir = TestDir::new(name);
    let sms = SmsHook::start();
    let pstn = SippPorts::new();
    let sw = Switch::start(
        dir.path(),
        &config(
            vec![TrunkCfg::caller(pstn.addr().to_string())],
            &sms,
            ring_timeout_s,
        ),
    );
    let app = app_for(Api(sw.http), &sms, APP_NUMBER, APP_DEVICE);
    (dir, sw, pstn, app, sms)
}

/// Checks a sip_call_in `p2p_inform_called` event; returns (the opdata as
/// sent, its JSON, the session id).
fn check_call_in_event(event: &Value, range: (u16, u16)) -> (Value, Value, String) {
    assert_eq!(event["caller"], SIPP_CALLER, "caller of {event}");
    // An object the app reads the relay from (API.md; the push payloads of
    // src/push/ and the OpenAPI description say so too), not its JSON text.
    assert!(
        event["opdata"].is_object(),
        "a sip_call_in opdata is a JSON object: {event}"
    );
    let (opdata, o) = opdata_of(event);
    assert_eq!(o["event"], "sip_call_in", "opdata {o}");
    assert_eq!(o["caller"], SIPP_CALLER, "opdata {o}");
    assert_eq!(o["callee"], APP_NUMBER, "opdata {o}");
    assert_eq!(o["ip"], "127.0.0.1", "opdata {o}");
    assert_eq!(o["codec_name"], "AMR", "opdata {o}");
    assert_eq!(o["payload_mode"], "octet-aligned", "opdata {o}");
    assert!(o["rssrc"].is_u64(), "opdata rssrc: {o}");
    let port = o["port"].as_u64().expect("opdata port") as u16;
    assert!(
        (range.0..=range.1).contains(&port),
        "opdata port {port} is not a relay port {range:?}: {o}"
    );
    let sid = o["session_id"]
        .as_str()
        .expect("opdata session_id")
        .to_owned();
    assert!(!sid.is_empty(), "opdata {o}");
    (opdata, o, sid)
}

/// A PSTN call to the app's number is pushed to its open long poll with the
/// sip_call_in opdata; p2p_ringing gives the caller 180, p2p_answer 200
/// with the relay's SDP (AMR, as the caller offered it), and the app and
/// the caller hear each other's frames through the relay. The caller's BYE
/// reaches the app as `caller_hookon`, the session ends `release`, and the
/// history has one sip_call_in record.
#[test]
fn sip_call_in_answered_relays_media_and_tells_the_app_of_the_bye() {
    let (dir, sw, pstn_ports, mut app, _sms) = call_in_setup("call_in_answered", RING_LONG_S);
    let range = media_range(dir.path());
    let app_sock = MediaSocket::bind();
    let trunk_sock = MediaSocket::bind();

    // The app's long poll is open (or opens) while the call comes in.
    let (event, mut pstn) = std::thread::scope(|s| {
        let waiting = s.spawn(|| app.wait_event("p2p_inform_called", &sw));
        let pstn = pstn_call(
            &dir,
            "pstn",
            &sw,
            pstn_ports,
            "uac_call_app.xml",
            APP_NUMBER,
            &[
                "-d",
                &HOLD_MS.to_string(),
                "-key",
                "trunk_port",
                &trunk_sock.port().to_string(),
            ],
        );
        (waiting.join().unwrap(), pstn)
    });
    let (opdata, o, sid) = check_call_in_event(&event, range);
    let ctx = || format!("{}\n{}", pstn.report(), sw.log_tail(40));

    assert_eq!(app.status(&sid), "p2p_idle");
    assert_eq!(app.p2p_poll(&opdata).ok()["peer_status"], "p2p_idle");
    assert!(
        invite_provisionals(&pstn).iter().all(|s| *s == 100),
        "nothing but 100 before the app rings: {:?}",
        invite_provisionals(&pstn)
    );

    // Sent back as its compact JSON text, as an app that keeps the opdata
    // as a string would: the same opdata to the switch.
    app.ringing(&Value::String(o.to_string())).ok();
    wait_received(&pstn, "180 Ringing", |m| m.status() == Some(180));
    assert_eq!(app.status(&sid), "p2p_ring");

    let answer = app.answer(&opdata, app_sock.port());
    let reply = answer.ok();
    assert_eq!(reply["session_id"], sid.as_str(), "p2p_answer {reply}");
    let (app_relay, rssrc) = relay_of(reply, range);
    assert_eq!(
        (u64::from(app_relay.port()), u64::from(rssrc)),
        (o["port"].as_u64().unwrap(), o["rssrc"].as_u64().unwrap()),
        "the answer names the relay leg the opdata announced: {reply} vs {o}"
    );

    // The caller's 200: the relay's trunk leg, answering AMR as offered.
    let ok = wait_received(&pstn, "200 to the INVITE", |m| {
        m.status() == Some(200) && m.cseq.ends_with(" INVITE")
    });
    let trunk_relay = ok.media_addr();
    assert_eq!(trunk_relay.ip().to_string(), "127.0.0.1", "{}", ok.text);
    assert!(
        (range.0..=range.1).contains(&trunk_relay.port()) && trunk_relay != app_relay,
        "the 200's m=audio is not the relay's trunk leg ({range:?}, app leg {app_relay}):\n{}",
        ok.text
    );
    assert_eq!(
        ok.formats().first().copied(),
        Some("96"),
        "the trunk offered AMR first, so it is answered AMR:\n{}",
        ok.text
    );
    assert!(
        ok.text.contains("a=rtpmap:96 AMR/8000") && ok.text.contains("octet-align=1"),
        "the answer keeps AMR octet-aligned as offered:\n{}",
        ok.text
    );
    app.wait_status(&sw, &sid, "p2p_hookoff");
    assert_eq!(app.p2p_poll(&opdata).ok()["peer_status"], "p2p_hookoff");

    let mut app_end = End::amr("app", &app_sock.rtp, app_relay, APP_AMR_PT, 440.0);
    app_end.ssrc = Some(rssrc);
    let trunk_end = End::amr("pstn", &trunk_sock.rtp, trunk_relay, TRUNK_AMR_PT, 660.0);
    exchange(&app_end, &trunk_end, &ctx);

    // The caller hangs up after HOLD_MS.
    pstn.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
    let hookon = app.wait_event("caller_hookon", &sw);
    assert_eq!(hookon["caller"], SIPP_CALLER, "{hookon}");
    app.wait_status(&sw, &sid, "release");
    assert_eq!(
        app.answer(&opdata, app_sock.port()).failure(),
        "session_not_exist",
        "an ended call cannot be answered"
    );
    let left = app.leftover_events();
    assert!(
        left.is_empty(),
        "events the app was not expecting: {left:?}"
    );

    let detail = app.history_record(&sw, SIPP_CALLER, APP_NUMBER, "sip_call_in");
    assert!(
        has_time(&detail, "ringtime") && has_time(&detail, "starttime"),
        "the call rang and was answered: {detail}"
    );
}

/// p2p_reject declines the caller with 603, and with `reason: busy` with
/// 486. Either way the session ends.
#[test]
fn sip_call_in_rejected_gets_603_or_486_when_busy() {
    let (dir, sw, pstn_ports, mut app, _sms) = call_in_setup("call_in_rejected", RING_LONG_S);
    let range = media_range(dir.path());
    for (reason, want) in [(None, 603u16), (Some("busy"), 486)] {
        let name = format!("pstn_{want}");
        let mut pstn = pstn_call(
            &dir,
            &name,
            &sw,
            pstn_ports,
            "uac_call_app_refused.xml",
            APP_NUMBER,
            &[],
        );
        // The event comes only for a call the switch took (not one it
        // refused as busy on its own): the app's reject decides the answer.
        let event = app.wait_event("p2p_inform_called", &sw);
        let (opdata, _, sid) = check_call_in_event(&event, range);
        app.reject(&opdata, reason).ok();
        pstn.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
        assert_eq!(
            invite_finals(&pstn),
            [want],
            "final responses the caller got after p2p_reject {reason:?}"
        );
        app.wait_status(&sw, &sid, "release");
        assert_eq!(
            app.reject(&opdata, reason).failure(),
            "session_not_exist",
            "a call that ended cannot be rejected again"
        );
    }
}

/// A PSTN call (`scenario`) that the app lets ring until it ends without an
/// answer: the app is told `caller_hookon`, the caller's final response is
/// `status` (`why`), the session ends `release`, and then p2p_answer fails
/// (`too_late`). Returns the switch, the app and the caller for more checks.
fn call_in_left_ringing(
    name: &str,
    ring_timeout_s: u64,
    scenario: &str,
    status: u16,
    why: &str,
    too_late: &str,
) -> (TestDir, Switch, App, Sipp) {
    let (dir, sw, pstn_ports, mut app, _sms) = call_in_setup(name, ring_timeout_s);
    let range = media_range(dir.path());
    let mut pstn = pstn_call(&dir, "pstn", &sw, pstn_ports, scenario, APP_NUMBER, &[]);
    let event = app.wait_event("p2p_inform_called", &sw);
    let (opdata, _, sid) = check_call_in_event(&event, range);
    app.ringing(&opdata).ok();

    let hookon = app.wait_event("caller_hookon", &sw);
    assert_eq!(hookon["caller"], SIPP_CALLER, "{hookon}");
    pstn.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
    assert_eq!(invite_finals(&pstn), [status], "{why}");
    app.wait_status(&sw, &sid, "release");
    assert_eq!(
        app.answer(&opdata, free_port()).failure(),
        "session_not_exist",
        "{too_late}"
    );
    (dir, sw, app, pstn)
}

/// The app rings but never answers; after `ring_timeout_s` the caller gets
/// 480 and the app `caller_hookon`.
#[test]
fn sip_call_in_unanswered_gets_480_after_the_ring_timeout() {
    let (_dir, sw, app, pstn) = call_in_left_ringing(
        "call_in_unanswered",
        RING_SHORT_S,
        "uac_call_app_refused.xml",
        480,
        "final responses the caller got",
        "a call that timed out cannot be answered",
    );
    assert!(
        invite_provisionals(&pstn).contains(&180),
        "the app rang: {:?}",
        invite_provisionals(&pstn)
    );
    let detail = app.history_record(&sw, SIPP_CALLER, APP_NUMBER, "sip_call_in");
    assert_eq!(detail["starttime"], "", "never answered: {detail}");
}

/// The caller gives up while the app rings; the app is told with
/// `caller_hookon` and cannot answer any more.
#[test]
fn sip_call_in_cancelled_while_ringing_tells_the_app() {
    // uac_cancel.xml CANCELs as soon as it gets the 180.
    let (_dir, _sw, _app, _pstn) = call_in_left_ringing(
        "call_in_cancelled",
        RING_LONG_S,
        "uac_cancel.xml",
        487,
        "the INVITE ends 487 after the CANCEL",
        "a cancelled call cannot be answered",
    );
}

/// An opdata is the capability for one call. Made-up and tampered ones
/// (another session id, another port, an added field, not JSON) are
/// `session_not_exist`, whatever the app does with them; the real one in
/// another account's hands (its token) is `no_logind`. A call is answered
/// once: a second p2p_answer, or a reject after the answer, fails. Then the
/// app hangs up (DELETE) and the caller gets the BYE.
#[test]
fn foreign_or_tampered_opdata_and_double_answers_are_refused() {
    let (dir, sw, pstn_ports, mut app, sms) = call_in_setup("call_in_opdata", RING_LONG_S);
    let range = media_range(dir.path());
    // Another account, logged in on its own device.
    let other = app_for(Api(sw.http), &sms, "13900000099", "android-other");
    let mut pstn = pstn_call(
        &dir,
        "pstn",
        &sw,
        pstn_ports,
        "uac_wait_bye.xml",
        APP_NUMBER,
        &[],
    );
    let event = app.wait_event("p2p_inform_called", &sw);
    let (opdata, o, sid) = check_call_in_event(&event, range);

    let made_up = json!({
        "event": "sip_call_in", "caller": SIPP_CALLER, "callee": APP_NUMBER,
        "session_id": format!("{sid}0"), "ip": "127.0.0.1", "port": o["port"],
        "codec_name": "AMR", "payload_mode": "octet-aligned", "rssrc": o["rssrc"],
    });
    let mut other_port = o.clone();
    other_port["port"] = json!(o["port"].as_u64().unwrap() + 2);
    let mut extra_field = o.clone();
    extra_field["x"] = json!(1);
    let mut other_session = o.clone();
    other_session["session_id"] = json!("n1-00000000000000000000000000000000");
    let forged = [
        made_up.clone(),
        Value::String(made_up.to_string()),
        other_port.clone(),
        Value::String(other_port.to_string()),
        extra_field,
        other_session,
        json!("not an opdata"),
        json!(12345),
    ];
    for f in &forged {
        for (what, r) in [
            ("p2p_ringing", app.ringing(f)),
            ("p2p_answer", app.answer(f, free_port())),
            ("p2p_reject", app.reject(f, None)),
            ("p2p_poll", app.p2p_poll(f)),
        ] {
            assert_eq!(r.failure(), "session_not_exist", "{what} with opdata {f}");
        }
    }
    assert!(
        invite_provisionals(&pstn).iter().all(|s| *s == 100) && invite_finals(&pstn).is_empty(),
        "the forged opdata did nothing to the call: {:?} {:?}",
        invite_provisionals(&pstn),
        invite_finals(&pstn)
    );
    assert_eq!(app.status(&sid), "p2p_idle");

    // The real opdata with someone else's login token.
    assert_eq!(
        other.answer(&opdata, free_port()).failure(),
        "no_logind",
        "another account's login cannot take this call"
    );
    assert_eq!(app.status(&sid), "p2p_idle");

    let sock = MediaSocket::bind();
    let first = app.answer(&opdata, sock.port());
    relay_of(first.ok(), range);
    wait_received(&pstn, "200 to the INVITE", |m| {
        m.status() == Some(200) && m.cseq.ends_with(" INVITE")
    });
    assert_eq!(
        app.answer(&opdata, sock.port()).failure(),
        "session_not_exist",
        "a second p2p_answer"
    );
    assert_eq!(
        app.reject(&opdata, None).failure(),
        "session_not_exist",
        "p2p_reject after the answer"
    );
    assert_eq!(app.status(&sid), "p2p_hookoff", "the call is still up");

    // The app hangs up: BYE to the caller, which uac_wait_bye.xml waits for.
    app.stop(&sid);
    pstn.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
    app.wait_status(&sw, &sid, "release");
    assert_eq!(
        invite_finals(&pstn),
        [200],
        "one final response to the INVITE"
    );
    let left = app.leftover_events();
    assert!(
        left.is_empty(),
        "the app hung up itself: no caller_hookon or anything else: {left:?}"
    );
}

// ---------------------------------------------------------------------------------
// Tests: app to app (p2p)
// ---------------------------------------------------------------------------------

/// The caller's and the callee's accounts (numbers) and devices.
const A_NUMBER: &str = "13900000011";
const B_NUMBER: &str = "13900000012";

/// A starts a p2p call to B's number with its media at `sock`: the Android
/// start reply, checked; returns the session id, the relay address A sends
/// to and the SSRC A hears.
fn start_p2p(a: &App, sock: &MediaSocket, range: (u16, u16)) -> (String, SocketAddr, u32) {
    let r = a.post(
        "/lwork/mobile/voip/calls",
        json!({"uuid": a.login.uuid, "caller_phone": a.login.uuid, "phone": B_NUMBER, "type": "p2p",
               "sdp": {"ip": "127.0.0.1", "port": sock.port()},
               "clidata": {"os_type": "android"}, "t": t()}),
    );
    let reply = r.ok();
    let sid = reply["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no session_id: {reply}"))
        .to_owned();
    let (relay, rssrc) = relay_of(reply, range);
    (sid, relay, rssrc)
}

/// B's `p2p_inform_called` for A's call `sid`: the opdata as sent.
fn check_p2p_event(event: &Value, sid: &str) -> Value {
    assert_eq!(event["caller"], A_NUMBER, "caller of {event}");
    let (opdata, o) = opdata_of(event);
    assert_eq!(
        o["session_id"], sid,
        "the opdata names A's session: {event}"
    );
    opdata
}

/// App A calls app B's number with `type: p2p`; B's long poll gets
/// `p2p_inform_called`; B's p2p_ringing and p2p_answer move A's status
/// through p2p_ring and p2p_hookoff; A and B hear each other's frames
/// through the relay; B hangs up and A's status is `release`.
#[test]
fn p2p_call_rings_answers_relays_media_and_ends_when_the_callee_hangs_up() {
    let dir = TestDir::new("p2p_answered");
    let sms = SmsHook::start();
    let sw = Switch::start(dir.path(), &config(Vec::new(), &sms, RING_LONG_S));
    let range = media_range(dir.path());
    let api = Api(sw.http);
    let a = app_for(api, &sms, A_NUMBER, "android-a");
    let mut b = app_for(api, &sms, B_NUMBER, "android-b");
    let (sock_a, sock_b) = (MediaSocket::bind(), MediaSocket::bind());

    // B's long poll is open (or opens) while A calls.
    let (event, (sid, relay_a, rssrc_a)) = std::thread::scope(|s| {
        let waiting = s.spawn(|| b.wait_event("p2p_inform_called", &sw));
        let started = start_p2p(&a, &sock_a, range);
        (waiting.join().unwrap(), started)
    });
    let opdata = check_p2p_event(&event, &sid);
    assert_eq!(a.status(&sid), "p2p_idle");
    assert_eq!(b.p2p_poll(&opdata).ok()["peer_status"], "p2p_idle");
    // The opdata is checked whole: the same session with another key is
    // nobody's call.
    let (_, mut forged) = opdata_of(&event);
    forged["k"] = json!("0".repeat(32));
    let forged = Value::String(forged.to_string());
    assert_ne!(forged, opdata);
    for (what, r) in [
        ("p2p_ringing", b.ringing(&forged)),
        ("p2p_answer", b.answer(&forged, sock_b.port())),
        ("p2p_reject", b.reject(&forged, None)),
    ] {
        assert_eq!(r.failure(), "session_not_exist", "{what} with {forged}");
    }
    assert_eq!(a.status(&sid), "p2p_idle", "the forged opdata did nothing");

    b.ringing(&opdata).ok();
    assert_eq!(
        a.status(&sid),
        "p2p_ring",
        "B's p2p_ringing is A's p2p_ring"
    );
    assert_eq!(b.p2p_poll(&opdata).ok()["peer_status"], "p2p_ring");

    let answer = b.answer(&opdata, sock_b.port());
    let reply = answer.ok();
    assert_eq!(
        reply["session_id"],
        sid.as_str(),
        "B's answer names A's session: {reply}"
    );
    let (relay_b, rssrc_b) = relay_of(reply, range);
    assert_ne!(relay_a, relay_b, "each app has its own relay leg");
    assert_eq!(
        a.status(&sid),
        "p2p_hookoff",
        "B's p2p_answer is A's p2p_hookoff"
    );
    assert_eq!(b.status(&sid), "p2p_hookoff", "B reads the same session");

    let mut end_a = End::amr("app A", &sock_a.rtp, relay_a, APP_AMR_PT, 440.0);
    end_a.ssrc = Some(rssrc_a);
    let mut end_b = End::amr("app B", &sock_b.rtp, relay_b, APP_AMR_PT, 660.0);
    end_b.ssrc = Some(rssrc_b);
    exchange(&end_a, &end_b, &|| sw.log_tail(40));

    b.stop(&sid);
    a.wait_status(&sw, &sid, "release");
    assert_eq!(b.status(&sid), "release");
    assert_eq!(
        b.answer(&opdata, sock_b.port()).failure(),
        "session_not_exist",
        "an ended p2p call cannot be answered"
    );
    let left = b.leftover_events();
    assert!(
        left.is_empty(),
        "B answered: no caller_hookon or anything else: {left:?}"
    );
    let detail = a.history_record(&sw, A_NUMBER, B_NUMBER, "p2p");
    assert!(has_time(&detail, "starttime"), "answered: {detail}");
}

/// B is logged in but never answers; after the ring timeout the switch
/// calls B's number through the trunk (a SIPp uas, which answers), B's app
/// is told `caller_hookon`, and its late p2p_answer, p2p_ringing and
/// p2p_reject get `already_call_real_phone`. A's hangup ends the trunk
/// call.
#[test]
fn p2p_call_falls_back_to_the_phone_when_the_app_does_not_answer() {
    require_sipp();
    let dir = TestDir::new("p2p_fallback");
    let sms = SmsHook::start();
    let uas_ports = SippPorts::new();
    let mut uas = SippCmd::new("phone_b", "uas.xml", uas_ports)
        .args(&["-m", "1", "-trace_msg"])
        .timeout_s(40)
        .spawn(dir.path());
    let sw = Switch::start(
        dir.path(),
        &config(
            vec![TrunkCfg::callee(uas_ports.addr().to_string())],
            &sms,
            RING_SHORT_S,
        ),
    );
    let range = media_range(dir.path());
    let api = Api(sw.http);
    let a = app_for(api, &sms, A_NUMBER, "android-a");
    let mut b = app_for(api, &sms, B_NUMBER, "android-b");
    let sock_a = MediaSocket::bind();

    let (sid, _, _) = start_p2p(&a, &sock_a, range);
    let event = b.wait_event("p2p_inform_called", &sw);
    let opdata = check_p2p_event(&event, &sid);
    b.ringing(&opdata).ok();
    assert_eq!(a.status(&sid), "p2p_ring");
    assert!(
        traced(&uas).is_empty(),
        "nothing goes to the phone while the app rings: {:?}",
        traced(&uas)
    );

    // The ring timeout passes: B's app stops ringing, B's phone rings.
    let hookon = b.wait_event("caller_hookon", &sw);
    assert_eq!(hookon["caller"], A_NUMBER, "{hookon}");
    let invite = wait_received(&uas, "INVITE", |m| m.start_line.starts_with("INVITE "));
    assert_eq!(
        invite.ruri_user(),
        B_NUMBER,
        "the fallback calls B's number:\n{}",
        invite.text
    );
    let seen = a.wait_status(&sw, &sid, "hookoff");
    assert!(
        !seen.iter().any(|s| s == "p2p_hookoff"),
        "A never talked to B's app: {seen:?}"
    );

    for (what, r) in [
        ("p2p_answer", b.answer(&opdata, free_port())),
        ("p2p_ringing", b.ringing(&opdata)),
        ("p2p_reject", b.reject(&opdata, None)),
    ] {
        assert_eq!(r.failure(), "already_call_real_phone", "late {what}");
    }
    assert_eq!(a.status(&sid), "hookoff", "the phone call is still up");

    a.stop(&sid);
    uas.expect_success(Duration::from_secs(30), &|| sw.log_tail(40));
    a.wait_status(&sw, &sid, "release");
    let left = b.leftover_events();
    assert!(left.is_empty(), "events B was not expecting: {left:?}");
}
