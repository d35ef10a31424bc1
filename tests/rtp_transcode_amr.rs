#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! End to end: an AMR ⇄ PCMA transcoded call through the real switch carries
//! audio, checked by decoding what arrives and correlating it with what was
//! sent.
//!
//! SIPp caller (`uac_amr_media.xml`, AMR only) -> the real `softswitch`
//! binary -> SIPp callee (`uas_pcma_media.xml`, PCMA only). The caller's
//! trunk allows only AMR, the callee's only PCMA, so the switch offers the
//! callee a fresh PCMA offer and the relay transcodes both directions.
//!
//! SIPp does only the signalling: the SDP of each side points at a UDP
//! socket of this test. After the 200 the test
//! - sends 20 ms AMR 12.2 frames (encoded here with the media crate's
//!   opencore binding) of an up-chirp from the "AMR socket" to the relay
//!   port in the 200 the caller got, and
//! - sends 20 ms A-law packets of a down-chirp from the "PCMA socket" to the
//!   relay port in the INVITE the callee got,
//!
//! and decodes what the relay sends to each socket (A-law, and AMR with the
//! media crate's decoder). A chirp has one sharp autocorrelation peak, so a
//! high normalized cross-correlation at one lag means that signal crossed,
//! not noise, silence or a tone that would match anything periodic; the
//! other direction's chirp is the negative control (no echo, no crossed
//! directions).
//!
//! A failing test keeps its logs under `$TMPDIR/softswitch-e2e/`.

mod common;

use common::rtp::{
    drops, metrics_after_calls, recv_timeout, rtp_lines, rtp_packet, AMR_MODE_122, FRAME,
};
use common::trace::{traced, wait_traced, Traced};
use common::{
    media_range, metric_value, require_sipp, wait_until, SippCmd, SippPorts, Switch, SwitchCfg,
    TestDir, TrunkCfg, SHORT,
};
use media::payload::amr::{self, AmrKind, AmrPayload, PayloadMode};
use media::payload::g711;
use media::transcode::{AmrNbDecoder, AmrNbEncoder};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The number every uac dials (only the callee trunk's "" prefix matches it).
const NUMBER: &str = "9123";

/// 20 ms packets sent each way: 2 s of audio.
const PACKETS: usize = 100;

/// How long the caller holds the call after its ACK (`-d`). The stream
/// starts right after the ACK and lasts PACKETS * 20 ms = 2 s; the rest is
/// room for a loaded machine, where the sender may fall behind.
const HOLD_MS: u64 = 4000;

/// The payload type the caller's SDP gives AMR (`uac_amr_media.xml`).
const AMR_PT: u8 = 96;

/// Lags searched for the best correlation: ±100 ms, far more than the
/// codecs' delay (AMR-NB's look-ahead is 5 ms) and a lost first packet.
const MAX_LAG: i64 = 800;

/// Lowest acceptable normalized cross-correlation of a decoded stream with
/// its source. Measured through the switch: 0.979 (AMR -> PCMA) and 0.984
/// (PCMA -> AMR), both at a 40-sample (5 ms) lag, the same as the codecs
/// give offline (they are deterministic). The margin covers the 10% of
/// packets the count checks let go missing (about 0.93 then).
const MIN_CORRELATION: f64 = 0.85;

/// Highest acceptable correlation with the other direction's source
/// (measured: 0.04; a down-chirp against an up-chirp).
const MAX_CROSS_CORRELATION: f64 = 0.3;

// ---------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------

/// A linear chirp from `f0` to `f1` Hz over `n` samples at 8 kHz, with
/// 10 ms fades so the codecs do not start or stop on a click.
fn chirp(f0: f64, f1: f64, n: usize, amplitude: f64) -> Vec<i16> {
    let total = n as f64 / 8000.0;
    let fade = 80.0;
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let phase = 2.0 * std::f64::consts::PI * (f0 * t + (f1 - f0) * t * t / (2.0 * total));
            let edge = (i.min(n - 1 - i) as f64 / fade).min(1.0);
            (amplitude * edge * phase.sin()).round() as i16
        })
        .collect()
}

/// `PACKETS` RTP packets of AMR 12.2, one frame each, in payload `mode`.
fn amr_packets(pcm: &[i16], mode: PayloadMode) -> Vec<Vec<u8>> {
    let mut enc = AmrNbEncoder::new(false).expect("AMR-NB encoder");
    let mut payload = Vec::new();
    pcm.chunks_exact(FRAME)
        .enumerate()
        .map(|(i, frame)| {
            let storage = enc
                .encode(AMR_MODE_122, frame.try_into().expect("160 samples"))
                .expect("AMR encode");
            // Storage format: header (FT << 3 | Q << 2), then the speech bits.
            let (header, speech) = (storage[0], &storage[1..]);
            let ft = (header >> 3) & 0x0F;
            assert_eq!(ft, AMR_MODE_122, "the encoder's frame type");
            amr::build(
                AmrKind::Nb,
                mode,
                15, // CMR: no mode request
                &[(ft, header & 0x04 != 0, speech)],
                &mut payload,
            )
            .expect("AMR payload");
            rtp_packet(i, AMR_PT, 0x0A31_0001, &payload)
        })
        .collect()
}

/// `PACKETS` RTP packets of A-law (PT 8, 160 bytes each).
fn pcma_packets(pcm: &[i16]) -> Vec<Vec<u8>> {
    pcm.chunks_exact(FRAME)
        .enumerate()
        .map(|(i, frame)| {
            let mut payload = Vec::with_capacity(FRAME);
            g711::encode_alaw(frame, &mut payload);
            rtp_packet(i, 8, 0x0B32_0002, &payload)
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// What came back
// ---------------------------------------------------------------------------------

/// One RTP packet received by a test socket.
struct Received {
    from: SocketAddr,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    payload: Vec<u8>,
}

/// Receives on `sock` until `stop`: RTP packets (counted in `count`) and how
/// many RTCP packets came (ignored: the relay's own reports).
fn receive(sock: &UdpSocket, stop: &AtomicBool, count: &AtomicUsize) -> (Vec<Received>, usize) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let mut out = Vec::new();
    let mut rtcp = 0;
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match recv_timeout(sock, &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => panic!("recv on {:?}: {e}", sock.local_addr()),
        };
        let pkt = &buf[..n];
        if media::rtp::is_rtcp(pkt) {
            rtcp += 1;
            continue;
        }
        let h = media::rtp::parse(pkt)
            .unwrap_or_else(|e| panic!("not RTP from {from} ({e}): {pkt:02x?}"));
        out.push(Received {
            from,
            payload_type: h.payload_type,
            sequence: h.sequence,
            timestamp: h.timestamp,
            payload: h.payload(pkt).to_vec(),
        });
        count.fetch_add(1, Ordering::Relaxed);
    }
    (out, rtcp)
}

/// Decodes a stream into PCM laid out by RTP timestamp (sample 0 = the
/// first packet in sequence order; a missing packet leaves silence), with
/// `decode` turning one payload into 160 samples. Asserts that the
/// timestamp moves on by 160 (20 ms at 8 kHz) per sequence number.
fn lay_out(packets: &mut [Received], mut decode: impl FnMut(&Received) -> Vec<i16>) -> Vec<f64> {
    // Sequence numbers relative to the first packet to arrive, signed: the
    // relay may start anywhere, even just below a wrap.
    let first = packets.first().expect("packets").sequence;
    let rel = |p: &Received| i64::from(p.sequence.wrapping_sub(first) as i16);
    packets.sort_by_key(rel);
    let (seq0, ts0) = (rel(&packets[0]), packets[0].timestamp);
    let mut pcm = Vec::new();
    for p in packets.iter() {
        let steps = rel(p) - seq0;
        let at = p.timestamp.wrapping_sub(ts0) as usize;
        assert_eq!(
            at as i64,
            steps * FRAME as i64,
            "RTP timestamp {} of the packet {steps} after the first (timestamp {ts0}): \
             expected {FRAME} per packet",
            p.timestamp
        );
        let samples = decode(p);
        if pcm.len() < at + samples.len() {
            pcm.resize(at + samples.len(), 0.0);
        }
        for (k, s) in samples.iter().enumerate() {
            pcm[at + k] = f64::from(*s);
        }
    }
    pcm
}

/// Normalized cross-correlation of `a[n]` with `b[n + lag]` over their
/// overlap.
fn ncc(a: &[f64], b: &[f64], lag: i64) -> f64 {
    let lo = (-lag).max(0) as usize;
    let hi = (b.len() as i64 - lag).min(a.len() as i64).max(0) as usize;
    if hi <= lo {
        return 0.0;
    }
    let off = (lo as i64 + lag) as usize;
    let (a, b) = (&a[lo..hi], &b[off..off + (hi - lo)]);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// The middle quarter of `sent` (half a second): a chirp segment matches at one lag
/// only, and searching with it rather than all of `sent` keeps the search
/// cheap in a debug build.
fn probe(sent: &[f64]) -> (&[f64], i64) {
    let mid = sent.len() * 3 / 8..sent.len() * 5 / 8;
    (&sent[mid.clone()], mid.start as i64)
}

/// Where `got` best matches `sent`: the lag (samples `got` is late by),
/// found with [`probe`], and the correlation over the whole overlap there.
fn best_match(sent: &[f64], got: &[f64]) -> (i64, f64) {
    let (window, start) = probe(sent);
    let (lag, _) = (-MAX_LAG..=MAX_LAG)
        .map(|lag| (lag, ncc(window, got, start + lag)))
        .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best });
    (lag, ncc(sent, got, lag))
}

/// The best correlation of `got` with [`probe`] of `sent` at any lag in
/// ±`MAX_LAG`: the negative control, where a different signal must match
/// at none.
fn max_correlation(sent: &[f64], got: &[f64]) -> f64 {
    let (window, start) = probe(sent);
    (-MAX_LAG..=MAX_LAG)
        .map(|lag| ncc(window, got, start + lag))
        .fold(f64::MIN, f64::max)
}

// ---------------------------------------------------------------------------------
// The call
// ---------------------------------------------------------------------------------

/// Asserts that an SDP a SIPp received names a relay port of the switch
/// (127.0.0.1, inside `range`, not the test's own socket) and returns it.
fn relay_addr(m: &Traced, range: (u16, u16), own: SocketAddr, who: &str) -> SocketAddr {
    let addr = m.media_addr();
    assert_eq!(
        addr.ip().to_string(),
        "127.0.0.1",
        "{who}: c= is not the relay's bind_ip in\n{}",
        m.text
    );
    assert!(
        (range.0..=range.1).contains(&addr.port()) && addr != own,
        "{who}: m=audio port {} is not a relay port (range {range:?}, our socket {own}) in\n{}",
        addr.port(),
        m.text
    );
    addr
}

/// One AMR ⇄ PCMA call with the AMR side in payload `mode`: sends a chirp
/// each way and checks what each side decodes.
fn amr_pcma_call(test: &str, mode: PayloadMode) {
    let start = Instant::now();
    require_sipp();
    let dir = TestDir::new(test);
    let (uac_ports, uas_ports) = (SippPorts::new(), SippPorts::new());
    let amr_sock = UdpSocket::bind("127.0.0.1:0").expect("bind the AMR socket");
    let pcma_sock = UdpSocket::bind("127.0.0.1:0").expect("bind the PCMA socket");
    let amr_addr = amr_sock.local_addr().expect("AMR socket address");
    let pcma_addr = pcma_sock.local_addr().expect("PCMA socket address");

    // The two trunks share no voice codec: the switch must transcode.
    let cfg = SwitchCfg::new(vec![
        TrunkCfg::caller(uac_ports.addr().to_string()).codecs(&["AMR", "telephone-event"]),
        TrunkCfg::callee(uas_ports.addr().to_string()).codecs(&["PCMA", "telephone-event"]),
    ]);
    let sw = Switch::start(dir.path(), &cfg);
    let range = media_range(dir.path());
    let mut uas = SippCmd::new("uas", "uas_pcma_media.xml", uas_ports)
        .args(&["-m", "1", "-trace_msg"])
        .args(&["-key", "pcma_port", &pcma_addr.port().to_string()])
        .timeout_s(40)
        .spawn(dir.path());
    let fmtp = match mode {
        PayloadMode::OctetAligned => "octet-align=1",
        PayloadMode::BandwidthEfficient => "octet-align=0",
    };
    let mut uac = SippCmd::new("uac", "uac_amr_media.xml", uac_ports)
        .remote(sw.sip)
        .args(&["-s", NUMBER, "-m", "1", "-d", &HOLD_MS.to_string()])
        .args(&["-trace_msg", "-key", "amr_fmtp", fmtp])
        .args(&["-key", "amr_port", &amr_addr.port().to_string()])
        .timeout_s(40)
        .spawn(dir.path());

    // The sources, encoded before the call so that sending is only pacing.
    let amr_src = chirp(300.0, 3000.0, PACKETS * FRAME, 8000.0);
    let pcma_src = chirp(3200.0, 400.0, PACKETS * FRAME, 8000.0);
    let amr_out = amr_packets(&amr_src, mode);
    let pcma_out = pcma_packets(&pcma_src);

    // Signalling: the callee was offered PCMA only, on a relay port; the
    // caller was answered AMR in its own payload mode, on another.
    let invite = wait_traced(&uas, "INVITE with SDP received", SHORT, |msgs| {
        msgs.iter()
            .find(|m| !m.sent && m.is_request("INVITE") && m.sdp.is_some())
            .cloned()
    });
    let ok = wait_traced(&uac, "200 OK with SDP received", SHORT, |msgs| {
        msgs.iter()
            .find(|m| !m.sent && m.is_invite_200() && m.sdp.is_some())
            .cloned()
    });
    let toward_uas = relay_addr(&invite, range, pcma_addr, "INVITE received by the uas");
    let toward_uac = relay_addr(&ok, range, amr_addr, "200 OK received by the uac");
    assert_ne!(toward_uas, toward_uac, "the two legs share a relay port");
    assert!(
        invite.m_audio().ends_with("RTP/AVP 8 101")
            && invite.attr("rtpmap", 8) == Some("PCMA/8000")
            && !invite.text.contains("AMR"),
        "the callee is offered PCMA (+ telephone-event) only:\n{}",
        invite.text
    );
    let formats = ok.formats();
    assert_eq!(
        formats.first().copied(),
        Some(AMR_PT.to_string().as_str()),
        "the caller is answered AMR first:\n{}",
        ok.text
    );
    assert_eq!(
        ok.attr("rtpmap", AMR_PT),
        Some("AMR/8000"),
        "the caller's AMR payload type:\n{}",
        ok.text
    );
    let answered_oa = ok
        .attr("fmtp", AMR_PT)
        .is_some_and(|f| f.replace(' ', "").contains("octet-align=1"));
    assert_eq!(
        answered_oa,
        mode == PayloadMode::OctetAligned,
        "the caller is answered in its own AMR payload mode ({mode:?}):\n{}",
        ok.text
    );

    // Media: both directions at once, paced at 20 ms, while two threads
    // collect what the relay sends to each socket.
    let stop = AtomicBool::new(false);
    let (amr_count, pcma_count) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let send_err = Mutex::new(None);
    let ((mut at_amr, amr_rtcp), (mut at_pcma, pcma_rtcp), sending) = std::thread::scope(|sc| {
        let a = sc.spawn(|| receive(&amr_sock, &stop, &amr_count));
        let p = sc.spawn(|| receive(&pcma_sock, &stop, &pcma_count));
        let t0 = Instant::now();
        for (i, (amr_pkt, pcma_pkt)) in amr_out.iter().zip(&pcma_out).enumerate() {
            // An absolute schedule: a late tick is caught up, not shifted.
            let due = t0 + Duration::from_millis(20 * i as u64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            for (sock, pkt, to) in [
                (&amr_sock, amr_pkt, toward_uac),
                (&pcma_sock, pcma_pkt, toward_uas),
            ] {
                if let Err(e) = sock.send_to(pkt, to) {
                    send_err
                        .lock()
                        .unwrap()
                        .get_or_insert(format!("to {to}: {e}"));
                }
            }
        }
        let sending = t0.elapsed();
        // Whatever is still in flight (or in a transcoder's queue).
        wait_until(Duration::from_secs(2), || {
            amr_count.load(Ordering::Relaxed) >= PACKETS
                && pcma_count.load(Ordering::Relaxed) >= PACKETS
        });
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        (a.join().unwrap(), p.join().unwrap(), sending)
    });
    let bye_early = traced(&uac).iter().any(|m| m.sent && m.is_request("BYE"));
    let ctx = || sw.log_tail(40);
    uac.expect_success(Duration::from_secs(40), &ctx);
    // The callee is checked after the analysis, which runs meanwhile its
    // scenario waits out its 2 s timewait.
    let uas_dir = uas.dir().display().to_string();
    let report = || {
        format!(
            "sending took {sending:?}{}; send error {:?}\n{}\nuas logs in {uas_dir}\n{}",
            if bye_early {
                " and outlasted the call (BYE sent before it ended)"
            } else {
                ""
            },
            send_err.lock().unwrap(),
            uac.report(),
            ctx()
        )
    };
    assert!(
        send_err.lock().unwrap().is_none(),
        "sending failed:\n{}",
        report()
    );

    // What reached the PCMA side: A-law, PT 8, 160 bytes per packet, from
    // the relay port the callee was given.
    let n_pcma = at_pcma.len();
    assert!(
        n_pcma * 10 >= PACKETS * 9 && n_pcma <= PACKETS,
        "the PCMA side got {n_pcma} RTP packets for the {PACKETS} AMR ones sent:\n{}",
        report()
    );
    for p in &at_pcma {
        assert!(
            p.from == toward_uas && p.payload_type == 8 && p.payload.len() == FRAME,
            "packet at the PCMA side: from {} (relay {toward_uas}), PT {}, {} bytes; \
             expected PT 8 with {FRAME} bytes of A-law",
            p.from,
            p.payload_type,
            p.payload.len()
        );
    }
    let pcma_pcm = lay_out(&mut at_pcma, |p| {
        let mut pcm = Vec::with_capacity(FRAME);
        g711::decode_alaw(&p.payload, &mut pcm);
        pcm
    });

    // What reached the AMR side: the caller's payload type, valid AMR in
    // the negotiated payload mode, one 12.2 kbit/s speech frame per packet.
    let n_amr = at_amr.len();
    assert!(
        n_amr * 10 >= PACKETS * 9 && n_amr <= PACKETS,
        "the AMR side got {n_amr} RTP packets for the {PACKETS} PCMA ones sent:\n{}",
        report()
    );
    let mut dec = AmrNbDecoder::new().expect("AMR-NB decoder");
    let mut bits = Vec::new();
    let amr_pcm = lay_out(&mut at_amr, |p| {
        assert!(
            p.from == toward_uac && p.payload_type == AMR_PT,
            "packet at the AMR side from {} (relay {toward_uac}) with PT {} (AMR is {AMR_PT})",
            p.from,
            p.payload_type
        );
        let parsed = AmrPayload::parse(AmrKind::Nb, mode, &p.payload).unwrap_or_else(|e| {
            panic!(
                "packet at the AMR side is not {mode:?} AMR ({e}): {:02x?}",
                p.payload
            )
        });
        let frames: Vec<(u8, bool)> = parsed.frames.iter().map(|f| (f.ft, f.q)).collect();
        assert_eq!(
            frames,
            [(AMR_MODE_122, true)],
            "AMR packet (frame type, quality) list: one good 12.2 kbit/s frame per 20 ms"
        );
        parsed.frame_data(0, &mut bits).expect("frame 0");
        let mut storage = vec![(AMR_MODE_122 << 3) | 0x04];
        storage.extend_from_slice(&bits);
        let mut pcm = [0i16; FRAME];
        dec.decode(&storage, &mut pcm).expect("AMR decode");
        pcm.to_vec()
    });

    // The audio: each side decodes the other side's chirp, and not its own.
    let amr_src: Vec<f64> = amr_src.iter().map(|&s| f64::from(s)).collect();
    let pcma_src: Vec<f64> = pcma_src.iter().map(|&s| f64::from(s)).collect();
    let (lag_to_pcma, corr_to_pcma) = best_match(&amr_src, &pcma_pcm);
    let (lag_to_amr, corr_to_amr) = best_match(&pcma_src, &amr_pcm);
    let echo_at_pcma = max_correlation(&pcma_src, &pcma_pcm);
    let echo_at_amr = max_correlation(&amr_src, &amr_pcm);
    eprintln!(
        "e2e {test}: AMR -> PCMA correlation {corr_to_pcma:.3} at lag {lag_to_pcma} \
         ({n_pcma} packets), PCMA -> AMR {corr_to_amr:.3} at lag {lag_to_amr} ({n_amr} \
         packets); own signal back: {echo_at_pcma:.3} / {echo_at_amr:.3}; RTCP at the \
         sockets {amr_rtcp}/{pcma_rtcp}; sending took {sending:?}"
    );
    assert!(
        corr_to_pcma > MIN_CORRELATION,
        "the A-law the callee got does not match the caller's AMR-coded chirp: best \
         correlation {corr_to_pcma:.3} (lag {lag_to_pcma}), need {MIN_CORRELATION}:\n{}",
        report()
    );
    assert!(
        corr_to_amr > MIN_CORRELATION,
        "the AMR the caller got does not match the callee's A-law chirp: best correlation \
         {corr_to_amr:.3} (lag {lag_to_amr}), need {MIN_CORRELATION}:\n{}",
        report()
    );
    assert!(
        echo_at_pcma < MAX_CROSS_CORRELATION && echo_at_amr < MAX_CROSS_CORRELATION,
        "a side got its own signal back (correlation {echo_at_pcma:.3} at the PCMA side, \
         {echo_at_amr:.3} at the AMR side):\n{}",
        report()
    );

    uas.expect_success(Duration::from_secs(20), &|| {
        format!("{}\n{}", uac.report(), ctx())
    });

    // The relay counted both transcoded directions and dropped nothing.
    let m = metrics_after_calls(&sw, 1);
    let relayed = metric_value(&m, "rtp_packets_relayed_total").unwrap_or(0.0) as usize;
    eprintln!(
        "e2e {test}: rtp_packets_relayed_total {relayed}, total {:?}",
        start.elapsed()
    );
    assert!(
        relayed >= n_amr + n_pcma && relayed <= 2 * PACKETS,
        "rtp_packets_relayed_total {relayed}: the sockets got {n_pcma} + {n_amr} of the \
         2 x {PACKETS} sent:\n{}\n{}",
        rtp_lines(&m),
        report()
    );
    let nonzero: Vec<_> = drops(&m).into_iter().filter(|(_, n)| *n > 0).collect();
    assert!(
        nonzero.is_empty(),
        "unexpected drops {nonzero:?}:\n{}\n{}",
        rtp_lines(&m),
        report()
    );
}

/// AMR octet-aligned (RFC 4867 §4.4) ⇄ PCMA.
#[test]
fn amr_octet_aligned_to_pcma_call_carries_audio() {
    amr_pcma_call("amr_oa_pcma", PayloadMode::OctetAligned);
}

/// AMR bandwidth-efficient (RFC 4867 §4.3) ⇄ PCMA.
#[test]
fn amr_bandwidth_efficient_to_pcma_call_carries_audio() {
    amr_pcma_call("amr_be_pcma", PayloadMode::BandwidthEfficient);
}
