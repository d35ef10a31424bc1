//! Media for the end-to-end tests: test-owned RTP sockets, tones coded as
//! AMR or A-law, RTP streams paced at 20 ms, two ends streaming to each
//! other through the relay, and the relay's counters in `/metrics`.

// Each test binary uses only some of these helpers (as in `mod.rs`).
#![allow(dead_code)]

use super::{metric_value, wait_until, Switch, SHORT};
use media::payload::amr::{self, AmrKind, AmrPayload, PayloadMode};
use media::payload::g711;
use media::transcode::{AmrNbEncoder, AMR_NB_FRAME_SAMPLES};
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Samples per 20 ms at 8 kHz (G.711 and AMR-NB alike).
pub const FRAME: usize = AMR_NB_FRAME_SAMPLES;

/// AMR-NB 12.2 kbit/s.
pub const AMR_MODE_122: u8 = 7;

// ---------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------

/// A test-owned RTP socket and its RTCP socket on the next port: the relay
/// sends RTCP to RTP port + 1 of an endpoint that signalled only its RTP
/// port, which must not be some other test's RTP socket. Both time out
/// reads after 20 ms.
pub struct MediaSocket {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

impl MediaSocket {
    pub fn bind() -> MediaSocket {
        for _ in 0..200 {
            let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind an RTP socket");
            let port = rtp.local_addr().unwrap().port();
            if port == u16::MAX {
                continue;
            }
            if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
                for s in [&rtp, &rtcp] {
                    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                }
                return MediaSocket { rtp, rtcp };
            }
        }
        panic!("no pair of adjacent free UDP ports on 127.0.0.1");
    }

    pub fn port(&self) -> u16 {
        self.rtp.local_addr().unwrap().port()
    }
}

/// `recv_from` on a socket with a read timeout: `Ok(None)` when it timed out.
pub fn recv_timeout(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<Option<(usize, SocketAddr)>> {
    match sock.recv_from(buf) {
        Ok(r) => Ok(Some(r)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------
// Audio
// ---------------------------------------------------------------------------------

/// 20 ms of a tone at `hz`, frame `i` of a continuous signal.
pub fn tone_frame(hz: f64, i: usize) -> [i16; FRAME] {
    let mut pcm = [0i16; FRAME];
    for (k, s) in pcm.iter_mut().enumerate() {
        let n = (i * FRAME + k) as f64;
        *s = (6000.0 * (2.0 * std::f64::consts::PI * hz * n / 8000.0).sin()) as i16;
    }
    pcm
}

/// One second (50 frames) of A-law payloads of a tone at `hz`.
pub fn pcma_tone(hz: f64) -> Vec<Vec<u8>> {
    (0..50)
        .map(|i| {
            let mut payload = Vec::with_capacity(FRAME);
            g711::encode_alaw(&tone_frame(hz, i), &mut payload);
            payload
        })
        .collect()
}

/// One second (50 frames) of octet-aligned AMR 12.2 payloads of a tone at
/// `hz`, one frame each, and the speech bits of each frame: what must reach
/// the other side unchanged.
pub fn amr_tone(hz: f64) -> (Vec<Vec<u8>>, BTreeSet<Vec<u8>>) {
    let mut enc = AmrNbEncoder::new(false).expect("AMR-NB encoder");
    let mut payloads = Vec::new();
    let mut speech = BTreeSet::new();
    for i in 0..50 {
        let storage = enc
            .encode(AMR_MODE_122, &tone_frame(hz, i))
            .expect("AMR encode");
        // Storage format (RFC 4867 §5): FT << 3 | Q << 2, then the bits.
        let (header, bits) = (storage[0], &storage[1..]);
        assert_eq!((header >> 3) & 0x0F, AMR_MODE_122, "encoder frame type");
        let mut payload = Vec::new();
        amr::build(
            AmrKind::Nb,
            PayloadMode::OctetAligned,
            15, // CMR: no mode request
            &[(AMR_MODE_122, true, bits)],
            &mut payload,
        )
        .expect("AMR payload");
        speech.insert(speech_bits(&payload).expect("our own payload parses"));
        payloads.push(payload);
    }
    (payloads, speech)
}

/// The speech bits of the first frame of an octet-aligned AMR payload.
pub fn speech_bits(payload: &[u8]) -> Option<Vec<u8>> {
    let mut frame = Vec::new();
    AmrPayload::parse(AmrKind::Nb, PayloadMode::OctetAligned, payload)
        .ok()?
        .frame_data(0, &mut frame)?;
    Some(frame)
}

/// A whole payload, as the key of a frame nothing transcodes.
pub fn whole_payload(payload: &[u8]) -> Option<Vec<u8>> {
    Some(payload.to_vec())
}

// ---------------------------------------------------------------------------------
// RTP streams
// ---------------------------------------------------------------------------------

/// Packet `i` of a stream: sequence number 1000 + `i`, timestamp `i` frames,
/// the marker on the first (the start of a talkspurt).
pub fn rtp_packet(i: usize, pt: u8, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(12 + payload.len());
    media::rtp::write(
        &mut pkt,
        i == 0,
        pt,
        1000u16.wrapping_add(i as u16),
        (i * FRAME) as u32,
        ssrc,
        payload,
    );
    pkt
}

/// Until `stop`, on an absolute 20 ms schedule (a late tick is caught up,
/// not shifted): [`rtp_packet`] `i` of `payloads` (in a loop) to `send`.
pub fn send_paced(
    stop: &AtomicBool,
    pt: u8,
    ssrc: u32,
    payloads: &[Vec<u8>],
    mut send: impl FnMut(&[u8]),
) {
    let t0 = Instant::now();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let due = t0 + Duration::from_millis(20 * i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        send(&rtp_packet(i, pt, ssrc, &payloads[i % payloads.len()]));
        i += 1;
    }
}

/// One end of a media path: a test socket that sends its payloads (payload
/// type `pt`) to `relay` and expects the other end's frames back from there.
pub struct End<'a> {
    pub name: &'a str,
    pub sock: &'a UdpSocket,
    pub relay: SocketAddr,
    pub pt: u8,
    /// The SSRC the relay must send with (the `rssrc` an app is told).
    pub ssrc: Option<u32>,
    pub payloads: Vec<Vec<u8>>,
    /// The frames of `payloads`, as `frame_of` gives them.
    pub frames: BTreeSet<Vec<u8>>,
    /// What of a payload must cross the relay unchanged.
    pub frame_of: fn(&[u8]) -> Option<Vec<u8>>,
}

impl<'a> End<'a> {
    /// An end sending one second of octet-aligned AMR of a tone at `hz`.
    pub fn amr(name: &'a str, sock: &'a UdpSocket, relay: SocketAddr, pt: u8, hz: f64) -> End<'a> {
        let (payloads, frames) = amr_tone(hz);
        End {
            name,
            sock,
            relay,
            pt,
            ssrc: None,
            payloads,
            frames,
            frame_of: speech_bits,
        }
    }

    /// An end sending one second of A-law (PT 8) of a tone at `hz`, which
    /// must reach the other end byte for byte.
    pub fn pcma(name: &'a str, sock: &'a UdpSocket, relay: SocketAddr, hz: f64) -> End<'a> {
        let payloads = pcma_tone(hz);
        End {
            name,
            sock,
            relay,
            pt: 8,
            ssrc: None,
            frames: payloads.iter().cloned().collect(),
            payloads,
            frame_of: whole_payload,
        }
    }
}

/// One RTP packet an end received.
#[derive(Debug)]
pub struct Rx {
    pub from: SocketAddr,
    pub pt: u8,
    pub ssrc: u32,
    pub frame: Option<Vec<u8>>,
}

impl Rx {
    /// Whether it carried one of `frames`.
    pub fn carries(&self, frames: &BTreeSet<Vec<u8>>) -> bool {
        self.frame.as_ref().is_some_and(|f| frames.contains(f))
    }
}

/// Sends `end`'s payloads every 20 ms until `stop`.
pub fn send_stream(end: &End<'_>, ssrc: u32, stop: &AtomicBool) {
    send_paced(stop, end.pt, ssrc, &end.payloads, |pkt| {
        end.sock
            .send_to(pkt, end.relay)
            .unwrap_or_else(|e| panic!("{}: send RTP to {}: {e}", end.name, end.relay));
    });
}

/// Receives RTP on `end`'s socket until `stop`; counts into `heard` the
/// packets carrying one of `other`'s frames.
pub fn receive_stream(
    end: &End<'_>,
    other: &BTreeSet<Vec<u8>>,
    stop: &AtomicBool,
    heard: &AtomicUsize,
) -> Vec<Rx> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match recv_timeout(end.sock, &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => panic!("{}: recv: {e}", end.name),
        };
        let pkt = &buf[..n];
        if media::rtp::is_rtcp(pkt) {
            continue;
        }
        let rtp = media::rtp::parse(pkt)
            .unwrap_or_else(|e| panic!("{}: not RTP from {from} ({e}): {pkt:02x?}", end.name));
        let rx = Rx {
            from,
            pt: rtp.payload_type,
            ssrc: rtp.ssrc,
            frame: (end.frame_of)(rtp.payload(pkt)),
        };
        if rx.carries(other) {
            heard.fetch_add(1, Ordering::Relaxed);
        }
        out.push(rx);
    }
    out
}

/// What [`stream_both`] saw.
pub struct Streamed {
    /// Everything each end received.
    pub rx_a: Vec<Rx>,
    pub rx_b: Vec<Rx>,
    /// How many of those carried the other end's frames.
    pub heard_a: usize,
    pub heard_b: usize,
    /// Whether both got `min` of them within [`SHORT`].
    pub enough: bool,
}

/// Streams from both ends at once (SSRCs 0x0A0A0001 and 0x0B0B0002) until
/// each got `min` packets of the other's frames, or [`SHORT`] passed.
pub fn stream_both(a: &End<'_>, b: &End<'_>, min: usize) -> Streamed {
    let stop = AtomicBool::new(false);
    let (heard_a, heard_b) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let (rx_a, rx_b, enough) = std::thread::scope(|s| {
        s.spawn(|| send_stream(a, 0x0A0A_0001, &stop));
        s.spawn(|| send_stream(b, 0x0B0B_0002, &stop));
        let ra = s.spawn(|| receive_stream(a, &b.frames, &stop, &heard_a));
        let rb = s.spawn(|| receive_stream(b, &a.frames, &stop, &heard_b));
        let enough = wait_until(SHORT, || {
            heard_a.load(Ordering::Relaxed) >= min && heard_b.load(Ordering::Relaxed) >= min
        });
        stop.store(true, Ordering::Relaxed);
        (ra.join().unwrap(), rb.join().unwrap(), enough)
    });
    Streamed {
        rx_a,
        rx_b,
        heard_a: heard_a.into_inner(),
        heard_b: heard_b.into_inner(),
        enough,
    }
}

// ---------------------------------------------------------------------------------
// The relay's counters
// ---------------------------------------------------------------------------------

/// Waits until `calls` calls have ended as answered and none is active (the
/// relay counters are added when a call is removed, before `calls_active`
/// drops), then returns `/metrics`.
pub fn metrics_after_calls(sw: &Switch, calls: u64) -> String {
    let ok = wait_until(Duration::from_secs(15), || {
        let m = sw.metrics();
        metric_value(&m, "calls_total{outcome=\"answered\"}") == Some(calls as f64)
            && metric_value(&m, "calls_active") == Some(0.0)
    });
    let m = sw.metrics();
    assert!(
        ok,
        "the switch did not count {calls} answered calls with none active:\n{}\n{}",
        rtp_lines(&m),
        sw.log_tail(30)
    );
    m
}

/// The `rtp_*` and `calls_*` sample lines, for failure messages.
pub fn rtp_lines(m: &str) -> String {
    m.lines()
        .filter(|l| !l.starts_with('#') && (l.starts_with("rtp_") || l.starts_with("calls_")))
        .filter(|l| !l.starts_with("rtp_relay_latency"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(reason, count)` of every `rtp_packets_dropped_total{reason="..."}` sample.
pub fn drops(m: &str) -> Vec<(String, u64)> {
    m.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("rtp_packets_dropped_total{reason=\"")?;
            let (reason, rest) = rest.split_once("\"}")?;
            Some((reason.to_owned(), rest.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}
