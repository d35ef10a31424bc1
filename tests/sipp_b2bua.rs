#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! End to end: SIPp caller (uac) -> the real `softswitch` binary (B2BUA) -> SIPp
//! callee (uas), with the scenarios in `tests/sipp/`.
//!
//! Each test starts its own switch (listeners on port 0, T1 = 100 ms so
//! transactions settle fast) and its own SIPp pair, so they run in parallel.
//! On loopback every peer is 127.0.0.1: the switch gets one inbound trunk for the
//! caller (prefix "0000", so nothing routes back to it) and one outbound trunk for
//! the callee (default route). SIPp exit code 0 means every call succeeded.
//! A failing test keeps its logs under `$TMPDIR/softswitch-e2e/`.

mod common;

use common::{
    free_port, require_sipp, wait_until, SippCmd, SippPorts, Switch, SwitchCfg, TestDir, TrunkCfg,
    SHUTDOWN_TIMEOUT,
};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The number every uac dials (only the callee trunk's "" prefix matches it).
const NUMBER: &str = "9123";

/// Time for 2xx-ended transactions to go (64*T1 = 6.4 s plus T4) and then some.
const SETTLE_2XX: Duration = Duration::from_secs(40);

/// Time for transactions ended by a non-2xx over UDP: Timer D is >= 32 s.
const SETTLE_NON_2XX: Duration = Duration::from_secs(45);

/// Time for dialogs alone to go once SIPp is done.
const SETTLE_DIALOGS: Duration = Duration::from_secs(10);

struct Setup {
    dir: TestDir,
    uac: SippPorts,
    uas: SippPorts,
}

impl Setup {
    fn new(test: &str) -> Setup {
        require_sipp();
        Setup {
            dir: TestDir::new(test),
            uac: SippPorts::new(),
            uas: SippPorts::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The usual switch: calls come from the uac, go to `callee`.
    fn switch(&self, callee: TrunkCfg) -> Switch {
        let cfg = SwitchCfg::new(vec![TrunkCfg::caller(self.uac.addr().to_string()), callee]);
        Switch::start(self.path(), &cfg)
    }

    /// The callee trunk at the uas over UDP.
    fn callee_udp(&self) -> TrunkCfg {
        TrunkCfg::callee(self.uas.addr().to_string())
    }

    /// A uas scenario, handling `calls` calls then exiting.
    fn uas(&self, scenario: &str, calls: u32, extra: &[&str]) -> common::Sipp {
        SippCmd::new("uas", scenario, self.uas)
            .args(&["-m", &calls.to_string()])
            .args(extra)
            .spawn(self.path())
    }

    /// A uac scenario placing `calls` calls to NUMBER through `sw` at `rate` cps.
    fn uac(
        &self,
        sw: &Switch,
        scenario: &str,
        calls: u32,
        rate: u32,
        extra: &[&str],
    ) -> common::Sipp {
        SippCmd::new("uac", scenario, self.uac)
            .remote(sw.sip)
            .args(&[
                "-s",
                NUMBER,
                "-m",
                &calls.to_string(),
                "-r",
                &rate.to_string(),
            ])
            .args(extra)
            .spawn(self.path())
    }
}

/// Runs `calls` basic calls (uac.xml / uas.xml) at `rate` cps with `uac_extra`
/// arguments and checks that all of them succeed on both sides, are counted as
/// answered, and that every dialog and transaction is gone afterwards.
fn transit(test: &str, calls: u32, rate: u32, uac_extra: &[&str]) {
    let s = Setup::new(test);
    let sw = s.switch(s.callee_udp());
    let start = Instant::now();
    let ports_free = sw.gauge("media_ports_free");
    assert!(ports_free > 0, "the relay's port pool is exported");
    let mut uas = s.uas("uas.xml", calls, &[]);
    let mut uac = s.uac(&sw, "uac.xml", calls, rate, uac_extra);
    let ctx = || sw.log_tail(40);
    let took = uac.expect_success(Duration::from_secs(120), &ctx);
    uas.expect_success(Duration::from_secs(30), &|| {
        format!("{}\n{}", uac.report(), ctx())
    });
    eprintln!("e2e {test}: {calls} calls done in {took:?}");
    // A call is counted when both legs are gone, which for a call whose ACK
    // was lost can be up to 64*T1 after the caller's BYE: settle first.
    sw.assert_settles(SETTLE_2XX, true);
    let m = sw.metrics();
    let get = |series: &str| common::metric_value(&m, series).unwrap_or(0.0) as u64;
    assert_eq!(
        get("calls_total{outcome=\"answered\"}"),
        u64::from(calls),
        "calls_total{{outcome=\"answered\"}}; metrics:\n{m}"
    );
    assert_eq!(get("calls_active"), 0, "calls_active; metrics:\n{m}");
    // Every call held two relay legs: all their ports are back in the pool.
    assert_eq!(
        sw.gauge("media_ports_free"),
        ports_free,
        "relay ports leaked; metrics:\n{m}"
    );
    eprintln!(
        "e2e {test}: total {:?}, switch retransmissions out: {}, BYEs out: {}",
        start.elapsed(),
        get("sip_retransmissions_total{direction=\"out\"}"),
        get("sip_messages_out_total{kind=\"request\",method=\"BYE\"}"),
    );
}

#[test]
fn transit_1000_calls_at_100_cps() {
    transit("transit_1000", 1000, 100, &["-d", "200"]);
}

#[test]
fn transit_with_10_percent_loss() {
    // SIPp drops 10 % of what the caller sends and receives; retransmissions
    // (SIPp's and the switch's) must repair every call.
    //
    // The switch runs with T1 = 100 ms, so its non-INVITE server transactions
    // absorb retransmissions for 64*T1 = 6.4 s (Timer J). The scenarios
    // retransmit from 500 ms, doubling (0.5, 1.5, 3.5, 7.5 s...): a BYE whose
    // first copies (or their 200s) are all lost arrives after Timer J and gets
    // a legitimate 481 (about 1 call in 1000). -T2 500 caps SIPp's
    // non-INVITE interval at 500 ms, like a client whose T1 matches, and 10
    // retransmissions keep retrying for 5.5 s, inside Timer J.
    transit(
        "transit_loss",
        1000,
        100,
        &[
            "-d",
            "200",
            "-lost",
            "10",
            "-T2",
            "500",
            "-max_non_invite_retrans",
            "10",
        ],
    );
}

#[test]
fn cancel_before_answer() {
    let s = Setup::new("cancel");
    let sw = s.switch(s.callee_udp());
    let mut uas = s.uas("uas_ring_forever.xml", 3, &[]);
    let mut uac = s.uac(&sw, "uac_cancel.xml", 3, 10, &[]);
    let ctx = || sw.log_tail(40);
    uac.expect_success(Duration::from_secs(60), &ctx);
    uas.expect_success(Duration::from_secs(30), &ctx);
    assert_eq!(sw.calls("cancelled"), 3, "metrics:\n{}", sw.metrics());
    assert_eq!(sw.calls("answered"), 0);
    // 487 ends both INVITE transactions with a non-2xx: Timer D (>= 32 s) on
    // the B side, so this wait is long; it runs in parallel with other tests.
    sw.assert_settles(SETTLE_NON_2XX, true);
}

#[test]
fn callee_busy_486() {
    let s = Setup::new("busy");
    let sw = s.switch(s.callee_udp());
    let mut uas = s.uas("uas_486.xml", 3, &[]);
    let mut uac = s.uac(&sw, "uac_expect_486.xml", 3, 10, &[]);
    let ctx = || sw.log_tail(40);
    uac.expect_success(Duration::from_secs(60), &ctx);
    uas.expect_success(Duration::from_secs(30), &ctx);
    assert_eq!(sw.calls("rejected"), 3, "metrics:\n{}", sw.metrics());
    assert_eq!(
        sw.responses_out(486),
        3,
        "486 relayed to the caller once per call"
    );
    sw.assert_settles(SETTLE_NON_2XX, true);
}

/// Three calls at 10 cps with `uas_scenario` / `uac_scenario` (each checking
/// its own part of the call), all answered, and every dialog gone afterwards.
fn three_answered_calls(test: &str, uas_scenario: &str, uac_scenario: &str, uac_extra: &[&str]) {
    let s = Setup::new(test);
    let sw = s.switch(s.callee_udp());
    let mut uas = s.uas(uas_scenario, 3, &[]);
    let mut uac = s.uac(&sw, uac_scenario, 3, 10, uac_extra);
    let ctx = || sw.log_tail(40);
    uac.expect_success(Duration::from_secs(60), &ctx);
    uas.expect_success(Duration::from_secs(30), &ctx);
    assert_eq!(sw.calls("answered"), 3, "metrics:\n{}", sw.metrics());
    sw.assert_settles(SETTLE_DIALOGS, false);
}

#[test]
fn callee_hangs_up() {
    three_answered_calls("callee_bye", "uas_bye.xml", "uac_wait_bye.xml", &[]);
}

#[test]
fn caller_hangs_up_callee_over_tcp() {
    // uac over UDP, the callee trunk over TCP: the switch connects to SIPp's TCP
    // listener, relays the call and the caller's BYE over it.
    let s = Setup::new("caller_bye_tcp");
    let sw = s.switch(TrunkCfg::callee(format!(
        "sip:127.0.0.1:{};transport=tcp",
        s.uas.sip
    )));
    let mut uas = s.uas("uas.xml", 3, &["-t", "t1"]);
    let mut uac = s.uac(&sw, "uac.xml", 3, 10, &["-d", "200"]);
    let ctx = || sw.log_tail(40);
    uac.expect_success(Duration::from_secs(60), &ctx);
    uas.expect_success(Duration::from_secs(30), &ctx);
    assert_eq!(sw.calls("answered"), 3, "metrics:\n{}", sw.metrics());
    // Over TCP there are no retransmission timers to wait for on the B side.
    sw.assert_settles(SETTLE_2XX, true);
}

#[test]
fn caller_hangs_up_udp() {
    three_answered_calls("caller_bye_udp", "uas.xml", "uac.xml", &["-d", "200"]);
}

#[test]
fn caller_hangs_up_before_its_ack_arrives() {
    // What a lost ACK looks like: the caller's BYE comes while the switch is
    // still retransmitting the 200. The BYE must end the call at once (BYE to
    // the callee, 200 to the caller), and the missing ACK must not make the
    // switch send a BYE of its own to the caller, whose dialog is already over.
    let s = Setup::new("bye_before_ack");
    let sw = s.switch(s.callee_udp());
    let mut uas = s.uas("uas.xml", 2, &[]);
    let mut uac = s.uac(&sw, "uac_bye_before_ack.xml", 2, 10, &[]);
    let ctx = || sw.log_tail(40);
    uac.expect_success(Duration::from_secs(60), &ctx);
    uas.expect_success(Duration::from_secs(30), &ctx);
    sw.assert_settles(SETTLE_2XX, true);
    let m = sw.metrics();
    let get = |series: &str| common::metric_value(&m, series).unwrap_or(0.0) as u64;
    assert_eq!(get("calls_total{outcome=\"answered\"}"), 2, "metrics:\n{m}");
    assert_eq!(
        get("sip_messages_out_total{kind=\"request\",method=\"BYE\"}"),
        2,
        "one BYE per call, to the callee only; metrics:\n{m}"
    );
}

/// One call to a trunk nobody answers; returns (elapsed, 503s sent, 408s sent).
fn unreachable(test: &str, tcp: bool) -> Unreach {
    let s = Setup::new(test);
    let port = free_port();
    let address = if tcp {
        format!("sip:127.0.0.1:{port};transport=tcp")
    } else {
        format!("127.0.0.1:{port}")
    };
    let sw = s.switch(TrunkCfg::callee(address));
    let start = Instant::now();
    let mut uac = s.uac(&sw, "uac_unreachable.xml", 1, 10, &[]);
    uac.expect_success(Duration::from_secs(60), &|| sw.log_tail(40));
    let took = start.elapsed();
    assert_eq!(sw.calls("failed"), 1, "metrics:\n{}", sw.metrics());
    sw.assert_settles(SETTLE_DIALOGS, false);
    (took, sw.responses_out(503), sw.responses_out(408))
}

/// (elapsed, 503s sent, 408s sent) of one unreachable-trunk call.
type Unreach = (Duration, u64, u64);

/// Both transports at once (the UDP case waits for Timer B, 6.4 s).
fn unreachable_both() -> (Unreach, Unreach) {
    let (tcp, udp) = std::thread::scope(|sc| {
        let tcp = sc.spawn(|| unreachable("unreachable_tcp", true));
        let udp = sc.spawn(|| unreachable("unreachable_udp", false));
        (tcp.join(), udp.join())
    });
    let both = match (tcp, udp) {
        (Ok(t), Ok(u)) => (t, u),
        (Err(e), _) | (_, Err(e)) => std::panic::resume_unwind(e),
    };
    eprintln!(
        "e2e unreachable: tcp {:?}, udp {:?} (elapsed, 503s, 408s)",
        both.0, both.1
    );
    both
}

#[test]
fn unreachable_trunk() {
    let (tcp, udp) = unreachable_both();
    // TCP: connection refused is a transport error: the caller hears at once.
    // (Which status: see unreachable_trunk_tcp_gets_503.)
    assert_eq!(
        tcp.1 + tcp.2,
        1,
        "TCP: want exactly one 503 or 408 to the caller"
    );
    assert!(
        tcp.0 < Duration::from_secs(3),
        "TCP: the final response took {:?}",
        tcp.0
    );
    // UDP: nothing tells the switch, so Timer B (64*T1 = 6.4 s) ends it with 408
    // (a 503 would be acceptable too if the switch used ICMP errors).
    assert_eq!(
        udp.1 + udp.2,
        1,
        "UDP: want exactly one 408 or 503 to the caller"
    );
    if udp.2 == 1 {
        assert!(
            udp.0 >= Duration::from_millis(6300),
            "UDP: 408 came before Timer B (64*T1 = 6.4 s): {:?}",
            udp.0
        );
    }
    assert!(udp.0 < Duration::from_secs(20), "UDP: took {:?}", udp.0);
}

#[test]
fn unreachable_trunk_tcp_gets_503() {
    // OPERATIONS.md: "Trunk unreachable or timing out: 503/408 towards the
    // caller"; connection refused is "unreachable" (RFC 3261 §17.1.4, RFC 3263
    // §4.3: a transport failure is treated like a 503).
    let tcp = unreachable("unreachable_tcp_503", true);
    assert_eq!(
        (tcp.1, tcp.2),
        (1, 0),
        "TCP: want exactly one 503 (and no 408) to the caller"
    );
}

/// A call to a callee that challenges the switch (`scenario`: 407 or 401), with
/// the trunk's credentials configured. Returns the setup for log checks.
fn digest(test: &str, scenario: &str) -> Setup {
    let s = Setup::new(test);
    let sw = s.switch(s.callee_udp().credentials("trunkuser", "trunkpass"));
    let mut uas = s.uas(scenario, 2, &["-trace_logs"]);
    let mut uac = s.uac(&sw, "uac.xml", 2, 10, &["-d", "200"]);
    let ctx = || sw.log_tail(40);
    uac.expect_success(Duration::from_secs(60), &ctx);
    uas.expect_success(Duration::from_secs(30), &ctx);
    assert_eq!(sw.calls("answered"), 2, "metrics:\n{}", sw.metrics());
    sw.assert_settles(SETTLE_DIALOGS, false);
    s
}

#[test]
fn digest_407_challenge() {
    let s = digest("digest_407", "uas_auth.xml");
    let uas_dir = s.path().join("uas");
    let logs: Vec<_> = std::fs::read_dir(&uas_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_logs.log"))
        .collect();
    assert_eq!(
        logs.len(),
        1,
        "want one SIPp -trace_logs file in {}",
        uas_dir.display()
    );
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    assert_eq!(
        text.matches("verify-digest method=INVITE").count(),
        2,
        "one Proxy-Authorization per call:\n{text}"
    );
    let out = Command::new("python3")
        .arg(common::sipp_file("check_auth_log.py"))
        .arg(&logs[0])
        .args(["trunkuser", "trunkpass"])
        .output()
        .expect("python3 is needed to run tests/sipp/check_auth_log.py");
    assert!(
        out.status.success(),
        "check_auth_log.py: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2 logged, 2 verified"
    );
}

#[test]
fn digest_401_challenge() {
    // uas_auth_www.xml checks the Authorization header itself (verifyauth).
    digest("digest_401", "uas_auth_www.xml");
}

#[test]
fn no_route_404_and_unknown_source_403() {
    let s = Setup::new("404_403");
    let s403 = Setup::new("404_403_b");
    // (a) The only outbound route is 555..., the uac dials 9123: 404. The trunk
    // points at the uas ports where nothing listens, so a misrouted call fails too.
    let sw404 = s.switch(s.callee_udp().prefixes(&["555"]));
    // (b) The caller's address is a trunk, but not an inbound one: 403.
    let sw403 = Switch::start(
        s403.path(),
        &SwitchCfg::new(vec![
            TrunkCfg::caller(s403.uac.addr().to_string()).inbound(false),
            s403.callee_udp(),
        ]),
    );
    let mut uac404 = s.uac(&sw404, "uac_expect_404.xml", 2, 10, &[]);
    let mut uac403 = s403.uac(&sw403, "uac_expect_403.xml", 2, 10, &[]);
    uac404.expect_success(Duration::from_secs(30), &|| sw404.log_tail(40));
    uac403.expect_success(Duration::from_secs(30), &|| sw403.log_tail(40));
    assert_eq!(sw404.calls("no_route"), 2, "metrics:\n{}", sw404.metrics());
    assert_eq!(sw404.responses_out(404), 2);
    assert_eq!(sw403.calls("forbidden"), 2, "metrics:\n{}", sw403.metrics());
    assert_eq!(sw403.responses_out(403), 2);
    // Neither switch may have sent an INVITE anywhere.
    for sw in [&sw404, &sw403] {
        let m = sw.metrics();
        let invites_out = common::metric_value(
            &m,
            "sip_messages_out_total{kind=\"request\",method=\"INVITE\"}",
        )
        .unwrap_or(0.0);
        assert_eq!(invites_out, 0.0, "an INVITE left the switch:\n{m}");
        assert_eq!(sw.gauge("sip_dialogs_active"), 0);
    }
}

#[test]
fn healthz_and_metrics() {
    let dir = TestDir::new("healthz");
    let mut sw = Switch::start(
        dir.path(),
        &SwitchCfg::new(vec![TrunkCfg::callee(format!("127.0.0.1:{}", free_port()))]),
    );
    let (status, body) = sw.get("/healthz");
    assert_eq!(status, 200, "/healthz body: {body}");
    let json: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"));
    assert_eq!(json, serde_json::json!({"status": "ok"}));

    // One OpenAPI document describes the operator and the app routes.
    let (status, body) = sw.get("/openapi.json");
    assert_eq!(status, 200, "/openapi.json: {body}");
    let doc: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/openapi.json is not JSON ({e}): {body}"));
    for (path, method) in [
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/lwork/mobile/voip/calls", "post"),
        ("/channel/push_service", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from /openapi.json"
        );
    }

    let m = sw.metrics();
    for gauge in [
        "sip_dialogs_active",
        "sip_transactions_active",
        "calls_active",
    ] {
        assert!(
            m.contains(&format!("# TYPE {gauge} gauge")),
            "{gauge} is not declared a gauge:\n{m}"
        );
        assert_eq!(common::metric_value(&m, gauge), Some(0.0), "{gauge}:\n{m}");
    }
    for family in ["calls_total", "sip_retransmissions_total"] {
        assert!(
            m.contains(&format!("# TYPE {family} counter")),
            "{family} missing:\n{m}"
        );
    }

    let (st, took) = sw.terminate(SHUTDOWN_TIMEOUT);
    let st =
        st.unwrap_or_else(|| panic!("switch still running {SHUTDOWN_TIMEOUT:?} after SIGTERM"));
    assert!(
        st.success(),
        "exit after SIGTERM: {st}\n{}",
        sw.log_tail(20)
    );
    eprintln!("e2e healthz: exit after SIGTERM took {took:?}");
}

#[test]
fn sigterm_hangs_up_live_calls() {
    // Two answered calls in progress: on SIGTERM the switch sends BYE on both
    // legs of each (uac_wait_bye and uas both wait for one), then exits 0.
    let s = Setup::new("sigterm");
    let mut sw = s.switch(s.callee_udp());
    let mut uas = s.uas("uas.xml", 2, &[]);
    let mut uac = s.uac(&sw, "uac_wait_bye.xml", 2, 10, &[]);
    let up = wait_until(Duration::from_secs(10), || sw.gauge("calls_active") == 2);
    assert!(
        up,
        "2 calls never became active:\n{}\n{}",
        sw.metrics(),
        sw.log_tail(30)
    );
    let (st, took) = sw.terminate(SHUTDOWN_TIMEOUT);
    let st =
        st.unwrap_or_else(|| panic!("switch still running {SHUTDOWN_TIMEOUT:?} after SIGTERM"));
    assert!(
        st.success(),
        "exit after SIGTERM: {st}\n{}",
        sw.log_tail(20)
    );
    eprintln!("e2e sigterm: exit with 2 live calls took {took:?}");
    let ctx = || sw.log_tail(40);
    uac.expect_success(Duration::from_secs(20), &ctx);
    uas.expect_success(Duration::from_secs(20), &ctx);
}

#[test]
fn reinvite_hold_and_info_cross_the_bridge() {
    // The caller holds (re-INVITE a=sendonly): the callee must get a hold offer
    // and its a=recvonly answer must come back; then an INFO (dtmf-relay) must
    // reach the callee with its body and its 200 come back (both checked by the
    // scenarios' regexps).
    three_answered_calls("reinvite_info", "uas_reinvite.xml", "uac_reinvite.xml", &[]);
}

#[test]
fn trunk_registration_with_digest_is_refreshed() {
    // The registrar challenges (401), verifies the digest, grants 2 s, and
    // expects the refresh (challenged and verified again) before it expires.
    let s = Setup::new("register");
    let registrar = TrunkCfg::callee(s.uas.addr().to_string())
        .prefixes(&["7777"])
        .credentials("trunkuser", "trunkpass")
        .register();
    let cfg = SwitchCfg::new(vec![TrunkCfg::caller(s.uac.addr().to_string()), registrar]);
    let mut uas = s.uas("uas_register.xml", 1, &[]);
    let sw = Switch::start(s.path(), &cfg);
    let ctx = || sw.log_tail(40);
    uas.expect_success(Duration::from_secs(30), &ctx);
}

#[test]
fn late_offer_is_bridged() {
    // INVITE without SDP: the callee's 2xx offer reaches the caller in our
    // 2xx, and the caller's answer (in its ACK) reaches the callee in ours.
    three_answered_calls(
        "late_offer",
        "uas_late_offer.xml",
        "uac_late_offer.xml",
        &[],
    );
}
