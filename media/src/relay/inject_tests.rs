//! DTMF detection, DTMF injection and prompt playback in the relay, in
//! virtual time.

use super::tests::{addr, bridged, Call};
use super::*;
use crate::payload::dtmf::{DtmfReceiver, Event};
use crate::payload::g711;

fn fmt(payload_type: u8, encoding: Encoding, dtmf: Option<u8>) -> LegFormat {
    LegFormat {
        payload_type,
        encoding,
        dtmf_payload_type: dtmf,
    }
}

fn pcma(dtmf: Option<u8>) -> Option<LegFormat> {
    Some(fmt(8, Encoding::Pcma, dtmf))
}

/// Phone A (192.0.2.1:4000) in format `fa` bridged to phone B
/// (192.0.2.2:5000) in format `fb`.
fn call(fa: Option<LegFormat>, fb: Option<LegFormat>) -> Call {
    let mut c = bridged(|cfg| LegConfig {
        remote: Some(addr(2, 5000)),
        ..cfg
    });
    c.relay.set_format(c.a, fa).unwrap();
    c.relay.set_format(c.b, fb).unwrap();
    c
}

fn phone_a() -> SocketAddr {
    addr(1, 4000)
}

fn ms(c: &Call, n: u64) -> Instant {
    c.t0 + Duration::from_millis(n)
}

/// A telephone-event packet from phone A (SSRC 0xA).
fn event_packet(pt: u8, seq: u16, ts: u32, marker: bool, event: u8, end: bool, d: u16) -> Vec<u8> {
    let payload = Event {
        event,
        end,
        volume: 10,
        duration: d,
    }
    .to_bytes();
    let mut p = Vec::new();
    rtp::write(&mut p, marker, pt, seq, ts, 0xA, &payload);
    p
}

fn audio_packet(seq: u16) -> Vec<u8> {
    let mut p = Vec::new();
    rtp::write(
        &mut p,
        false,
        8,
        seq,
        u32::from(seq) * 160,
        0xA,
        &[0xD5; 160],
    );
    p
}

fn events(relay: &mut Relay) -> Vec<RelayEvent> {
    std::iter::from_fn(|| relay.poll_event()).collect()
}

/// Runs every deadline up to `end` (RTCP reports discarded).
fn run_until(relay: &mut Relay, end: Instant) -> Vec<(Transmit, Vec<u8>)> {
    let mut sent = Vec::new();
    while let Some(at) = relay.poll_timeout().filter(|&at| at <= end) {
        while relay
            .poll_rtcp(at, Duration::from_secs(1_700_000_000))
            .is_some()
        {}
        while let Some(t) = relay.poll_transmit(at) {
            sent.push((t, relay.output().to_vec()));
        }
    }
    sent
}

/// One press of `event` at RTP timestamp `ts`: updates every 50 ms from
/// `start_ms` (durations 0, 400, ...), then `ends` end packets.
fn press(
    c: &mut Call,
    seq: &mut u16,
    ts: u32,
    event: u8,
    start_ms: u64,
    updates: u16,
    ends: usize,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for i in 0..updates {
        let mut p = event_packet(101, *seq, ts, i == 0, event, false, i * 400);
        *seq += 1;
        let at = ms(c, start_ms + u64::from(i) * 50);
        actions.push(c.relay.handle_rtp(c.a, phone_a(), &mut p, at));
    }
    for _ in 0..ends {
        let mut p = event_packet(101, *seq, ts, false, event, true, updates * 400);
        *seq += 1;
        let at = ms(c, start_ms + u64::from(updates) * 50);
        actions.push(c.relay.handle_rtp(c.a, phone_a(), &mut p, at));
    }
    actions
}

#[test]
fn a_press_with_redundant_end_packets_is_one_event_and_still_forwarded() {
    let mut c = call(pcma(Some(101)), pcma(Some(100)));
    let (a, b) = (c.a, c.b);
    // Updates at 0, 50, 100 ms, three end packets of 1200 units (150 ms),
    // and every packet twice (a retransmitting network).
    let mut wire = Vec::new();
    let packets = [
        (false, 0),
        (false, 400),
        (false, 800),
        (true, 1200),
        (true, 1200),
        (true, 1200),
    ];
    for (i, (end, d)) in packets.into_iter().enumerate() {
        let p = event_packet(101, 10 + i as u16, 8000, i == 0, 5, end, d);
        let at = ms(&c, 50 * (i as u64).min(3));
        wire.push((at, p.clone()));
        wire.push((at, p));
    }
    for (at, mut p) in wire {
        let action = c.relay.handle_rtp(a, phone_a(), &mut p, at);
        assert!(
            matches!(action, Action::Forward { out_leg, .. } if out_leg == b),
            "{action:?}"
        );
        // 4733 ⇄ 4733: passed through with B's payload type.
        assert_eq!(rtp::parse(&p).unwrap().payload_type, 100);
    }
    assert_eq!(
        events(&mut c.relay),
        [RelayEvent::Dtmf {
            leg: a,
            digit: '5',
            duration_ms: 150
        }]
    );
    // The quiet-period deadline finds the press ended: nothing more.
    assert!(run_until(&mut c.relay, c.t0 + Duration::from_secs(5)).is_empty());
    assert!(events(&mut c.relay).is_empty());
    assert_eq!(c.relay.leg_counters(a).unwrap().dtmf_in, 1);
}

#[test]
fn a_press_whose_end_packets_are_all_lost_is_reported_after_the_quiet_period() {
    let mut c = call(pcma(Some(101)), pcma(Some(100)));
    let mut seq = 1;
    let actions = press(&mut c, &mut seq, 4000, 9, 0, 3, 0);
    assert!(actions.iter().all(|a| matches!(a, Action::Forward { .. })));
    assert!(events(&mut c.relay).is_empty());
    let last = ms(&c, 100);
    // The timer covers the press's end, and it is not early.
    assert!(c.relay.poll_timeout().unwrap() <= last + DTMF_QUIET);
    assert!(c.relay.take_timeout_changed());
    assert!(c
        .relay
        .poll_transmit(last + DTMF_QUIET - Duration::from_millis(1))
        .is_none());
    assert!(events(&mut c.relay).is_empty());
    assert!(c.relay.poll_timeout().unwrap() <= last + DTMF_QUIET);
    run_until(&mut c.relay, last + DTMF_QUIET);
    // The last duration seen: 800 units = 100 ms.
    assert_eq!(
        events(&mut c.relay),
        [RelayEvent::Dtmf {
            leg: c.a,
            digit: '9',
            duration_ms: 100
        }]
    );
    // An end packet of that press arriving after all changes nothing.
    let mut p = event_packet(101, seq, 4000, false, 9, true, 1200);
    let at = last + DTMF_QUIET + Duration::from_millis(10);
    assert!(matches!(
        c.relay.handle_rtp(c.a, phone_a(), &mut p, at),
        Action::Forward { .. }
    ));
    run_until(&mut c.relay, at + DTMF_QUIET * 2);
    assert!(events(&mut c.relay).is_empty());
}

#[test]
fn two_presses_of_the_same_digit_back_to_back_are_two_events() {
    let mut c = call(pcma(Some(101)), pcma(Some(100)));
    let a = c.a;
    let mut seq = 1;
    // Two complete presses of 7, the second right after the first...
    press(&mut c, &mut seq, 1000, 7, 0, 2, 3);
    press(&mut c, &mut seq, 2000, 7, 150, 2, 3);
    // ...then one whose end packets are lost, ended by the next press.
    press(&mut c, &mut seq, 3000, 7, 300, 2, 0);
    press(&mut c, &mut seq, 4000, 7, 450, 3, 1);
    let dtmf = |duration_ms| RelayEvent::Dtmf {
        leg: a,
        digit: '7',
        duration_ms,
    };
    assert_eq!(
        events(&mut c.relay),
        [dtmf(100), dtmf(100), dtmf(50), dtmf(150)]
    );
    run_until(&mut c.relay, c.t0 + Duration::from_secs(5));
    assert!(events(&mut c.relay).is_empty());
    assert_eq!(c.relay.leg_counters(a).unwrap().dtmf_in, 4);
}

#[test]
fn a_peer_without_telephone_event_gets_nothing_but_the_press_is_reported() {
    let mut c = call(pcma(Some(101)), pcma(None));
    let mut seq = 1;
    let actions = press(&mut c, &mut seq, 1000, 11, 0, 2, 3);
    // Consumed, not a drop: the call layer relays the press (SIP INFO).
    assert!(
        actions.iter().all(|a| *a == Action::Consumed),
        "{actions:?}"
    );
    let counters = c.relay.leg_counters(c.a).unwrap();
    assert_eq!(counters.dropped_total(), 0);
    assert_eq!(c.relay.leg_counters(c.b).unwrap().rtp_out, 0);
    assert_eq!(
        events(&mut c.relay),
        [RelayEvent::Dtmf {
            leg: c.a,
            digit: '#',
            duration_ms: 100
        }]
    );
    // Audio still flows.
    let mut p = audio_packet(50);
    assert!(matches!(
        c.relay.handle_rtp(c.a, phone_a(), &mut p, ms(&c, 200)),
        Action::Forward { .. }
    ));
    // Even an unbridged leg reports its presses.
    c.relay.unbridge(c.a).unwrap();
    let actions = press(&mut c, &mut seq, 9000, 0, 300, 1, 1);
    assert!(actions
        .iter()
        .all(|a| *a == Action::Drop(DropReason::NoPeer)));
    assert_eq!(
        events(&mut c.relay),
        [RelayEvent::Dtmf {
            leg: c.a,
            digit: '0',
            duration_ms: 50
        }]
    );
}

#[test]
fn without_a_format_payload_type_101_is_telephone_event() {
    let mut c = call(None, None);
    let mut seq = 1;
    let actions = press(&mut c, &mut seq, 1000, 12, 0, 2, 3);
    // Forwarded untouched, and detected.
    assert!(actions.iter().all(|a| matches!(a, Action::Forward { .. })));
    assert_eq!(
        events(&mut c.relay),
        [RelayEvent::Dtmf {
            leg: c.a,
            digit: 'A',
            duration_ms: 100
        }]
    );
    // A format without telephone-event: PT 101 is just another type.
    c.relay.set_format(c.a, pcma(None)).unwrap();
    press(&mut c, &mut seq, 9000, 3, 200, 2, 3);
    assert!(events(&mut c.relay).is_empty());
    // Removing a leg drops its unpolled events.
    c.relay.set_format(c.a, None).unwrap();
    press(&mut c, &mut seq, 20000, 3, 400, 2, 3);
    c.relay.remove_leg(c.a).unwrap();
    assert!(events(&mut c.relay).is_empty());
}

#[test]
fn the_event_queue_is_bounded() {
    let mut c = call(pcma(Some(101)), pcma(Some(100)));
    let mut seq = 1;
    for i in 0..(EVENT_QUEUE as u32 + 3) {
        press(&mut c, &mut seq, 1000 * (i + 1), 1, u64::from(i) * 10, 1, 1);
    }
    assert_eq!(c.relay.events_dropped(), 3);
    assert_eq!(events(&mut c.relay).len(), EVENT_QUEUE);
}

/// Everything sent to phone B, in order: (ms since t0, packet).
type Wire = Vec<(u64, Vec<u8>)>;

/// Phone A streams PCMA every 20 ms for `until_ms`; `control(c, t)` runs
/// at every ms tick after the audio; generated packets are polled at
/// every tick.
fn simulate(c: &mut Call, until_ms: u64, mut control: impl FnMut(&mut Call, u64)) -> Wire {
    let mut wire = Vec::new();
    for t in 0..=until_ms {
        let now = ms(c, t);
        if t % 20 == 0 {
            let mut p = audio_packet(100 + (t / 20) as u16);
            if let Action::Forward { out_leg, .. } = c.relay.handle_rtp(c.a, phone_a(), &mut p, now)
            {
                assert_eq!(out_leg, c.b);
                wire.push((t, p));
            }
        }
        control(c, t);
        while let Some(tx) = c.relay.poll_transmit(now) {
            assert_eq!(
                tx,
                Transmit {
                    leg: c.b,
                    to: addr(2, 5000),
                    socket: SocketKind::Rtp
                }
            );
            wire.push((t, c.relay.output().to_vec()));
        }
    }
    wire
}

fn assert_one_stream(c: &Call, wire: &Wire) {
    let ssrc = c.relay.leg_ssrc(c.b).unwrap();
    for w in wire.windows(2) {
        let (x, y) = (rtp::parse(&w[0].1).unwrap(), rtp::parse(&w[1].1).unwrap());
        assert_eq!(y.sequence, x.sequence.wrapping_add(1), "at {} ms", w[1].0);
        assert_eq!((x.ssrc, y.ssrc), (ssrc, ssrc));
    }
}

#[test]
fn send_dtmf_numbers_the_digits_on_the_legs_stream() {
    let mut c = call(pcma(Some(101)), pcma(Some(100)));
    let b = c.b;
    let mut errors = Vec::new();
    let wire = simulate(&mut c, 1500, |c, t| match t {
        200 => {
            c.relay.send_dtmf(b, "1#", 100, ms(c, t)).unwrap();
            // Due at once: the timer says so.
            assert_eq!(c.relay.poll_timeout(), Some(ms(c, t)));
            // Refused without queuing anything.
            errors.push(c.relay.send_dtmf(b, "12x", 100, ms(c, t)));
            errors.push(c.relay.send_dtmf(b, "1", 0, ms(c, t)));
            errors.push(c.relay.send_dtmf(LegId(99), "1", 100, ms(c, t)));
        }
        // Queued behind the first two.
        210 => c.relay.send_dtmf(b, "9", 100, ms(c, t)).unwrap(),
        260 => {
            // Phone A presses a key meanwhile: not mixed into B's digits.
            let mut p = event_packet(101, 9000, 5000, true, 4, false, 0);
            assert_eq!(
                c.relay.handle_rtp(c.a, phone_a(), &mut p, ms(c, t)),
                Action::Consumed
            );
        }
        _ => {}
    });
    assert_eq!(
        errors,
        [
            Err(RelayError::Dtmf(DtmfError::UnknownDigit { digit: 'x' })),
            Err(RelayError::Dtmf(DtmfError::Duration { duration_ms: 0 })),
            Err(RelayError::UnknownLeg(LegId(99))),
        ]
    );
    assert_one_stream(&c, &wire);
    // Audio kept flowing: one packet every 20 ms.
    let audio: Vec<_> = wire
        .iter()
        .filter(|(_, p)| rtp::parse(p).unwrap().payload_type == 8)
        .collect();
    assert_eq!(audio.len(), 76);
    let last_audio_ts = audio
        .iter()
        .take_while(|(t, _)| *t <= 200)
        .last()
        .map(|(_, p)| rtp::parse(p).unwrap().timestamp)
        .unwrap();
    // Each press: one timestamp, the marker first, updates then three ends.
    let events: Vec<(u64, RtpHeader, Event)> = wire
        .iter()
        .map(|(t, p)| (*t, rtp::parse(p).unwrap(), p))
        .filter(|(_, h, _)| h.payload_type == 100)
        .map(|(t, h, p)| (t, h, dtmf::parse(h.payload(p)).unwrap()))
        .collect();
    assert_eq!(events.len(), 15);
    let presses: Vec<_> = events.chunks(5).collect();
    let mut rx = DtmfReceiver::new();
    let mut digits = String::new();
    for (i, press) in presses.iter().enumerate() {
        let (t0, h0, _) = press[0];
        // Sent at 200, 450, 700 ms: 100 ms of tone, the ends over 100 ms,
        // a 50 ms pause.
        assert_eq!(t0, 200 + 250 * i as u64);
        // On the audio timeline: the first press at the next frame.
        assert_eq!(h0.timestamp, last_audio_ts + 160 + 2000 * i as u32);
        let marks: Vec<bool> = press.iter().map(|p| p.1.marker).collect();
        assert_eq!(marks, [true, false, false, false, false]);
        let ends: Vec<(bool, u16)> = press.iter().map(|p| (p.2.end, p.2.duration)).collect();
        assert_eq!(
            ends,
            [
                (false, 0),
                (false, 400),
                (true, 800),
                (true, 800),
                (true, 800)
            ]
        );
        for (t, h, ev) in press.iter() {
            assert_eq!(
                *t,
                t0 + 50 * (press.iter().position(|p| p.0 == *t).unwrap() as u64)
            );
            assert_eq!(h.timestamp, h0.timestamp);
            for notice in rx.on_packet(h.timestamp, h.marker, ev) {
                if let DtmfNotice::Ended { digit, duration } = notice {
                    assert_eq!(duration, 800);
                    digits.push(digit);
                }
            }
        }
    }
    assert_eq!(digits, "1#9");
    assert!(!rx.in_press());
    let cb = c.relay.leg_counters(b).unwrap();
    assert_eq!(cb.rtp_out, wire.len() as u64);
    assert_eq!(cb.suppressed, 1);
    // Done: nothing left to send into B.
    assert!(c.relay.leg(b).unwrap().inject.is_none());
}

#[test]
fn send_dtmf_needs_telephone_event_and_an_address() {
    let mut c = call(pcma(Some(101)), pcma(None));
    let t = ms(&c, 0);
    assert_eq!(
        c.relay.send_dtmf(c.b, "1", 100, t),
        Err(RelayError::NoTelephoneEvent(c.b))
    );
    c.relay.set_format(c.b, None).unwrap();
    assert_eq!(
        c.relay.send_dtmf(c.b, "1", 100, t),
        Err(RelayError::NoTelephoneEvent(c.b))
    );
    // Empty: nothing to do.
    assert_eq!(c.relay.send_dtmf(c.a, "", 100, t), Ok(()));
    assert!(c.relay.leg(c.a).unwrap().inject.is_none());
    // A leg with no address yet: nothing is ever sent, no number is used.
    let mut c = bridged(|cfg| cfg);
    c.relay.set_format(c.b, pcma(Some(101))).unwrap();
    c.relay.send_dtmf(c.b, "5", 100, c.t0).unwrap();
    assert!(run_until(&mut c.relay, c.t0 + Duration::from_secs(1)).is_empty());
    assert_eq!(c.relay.leg_counters(c.b).unwrap().rtp_out, 0);
}

/// 100 ms of a 440 Hz sine at 8 kHz.
fn tone(n: usize) -> Wav {
    let samples = (0..n)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    Wav {
        sample_rate: 8000,
        samples,
    }
}

#[test]
fn a_prompt_replaces_the_peers_audio_on_the_same_stream() {
    let mut c = call(pcma(None), pcma(None));
    let b = c.b;
    let wav = tone(800);
    let expected: Vec<Vec<u8>> = wav
        .samples
        .chunks(160)
        .map(|f| {
            let mut out = Vec::new();
            g711::encode_alaw(f, &mut out);
            out
        })
        .collect();
    let mut played = Some(wav);
    // Between two of A's packets.
    let wire = simulate(&mut c, 400, |c, t| {
        if t == 110 {
            let wav = played.take().unwrap();
            c.relay.play(b, wav, false, ms(c, t)).unwrap();
        }
    });
    assert_one_stream(&c, &wire);
    // One 20 ms frame after the other: the timestamp 160 further each
    // time, from A's audio to the prompt and back.
    for w in wire.windows(2) {
        let (x, y) = (rtp::parse(&w[0].1).unwrap(), rtp::parse(&w[1].1).unwrap());
        assert_eq!(
            y.timestamp,
            x.timestamp.wrapping_add(160),
            "at {} ms",
            w[1].0
        );
    }
    // The prompt's five frames at 110..190 ms, the marker on the first;
    // A's audio at 120..180 ms held back.
    let frames: Vec<(u64, bool, Vec<u8>)> = wire
        .iter()
        .filter(|(t, _)| t % 20 == 10)
        .map(|(t, p)| {
            let h = rtp::parse(p).unwrap();
            (*t, h.marker, h.payload(p).to_vec())
        })
        .collect();
    assert_eq!(frames.len(), 5);
    for (i, (t, marker, payload)) in frames.iter().enumerate() {
        assert_eq!(*t, 110 + 20 * i as u64);
        assert_eq!(*marker, i == 0);
        assert_eq!(payload, &expected[i]);
    }
    let audio: Vec<u64> = wire
        .iter()
        .filter(|(_, p)| rtp::parse(p).unwrap().payload(p) == [0xD5; 160])
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        audio,
        [0, 20, 40, 60, 80, 100, 200, 220, 240, 260, 280, 300, 320, 340, 360, 380, 400]
    );
    assert_eq!(c.relay.leg_counters(b).unwrap().suppressed, 4);
    assert_eq!(events(&mut c.relay), [RelayEvent::PlaybackDone { leg: b }]);
}

#[test]
fn a_looped_prompt_plays_until_stopped() {
    let mut c = call(pcma(None), pcma(None));
    let b = c.b;
    let mut wav = Some(tone(240));
    let wire = simulate(&mut c, 400, |c, t| match t {
        0 => c
            .relay
            .play(b, wav.take().unwrap(), true, ms(c, t))
            .unwrap(),
        300 => c.relay.stop_play(b).unwrap(),
        _ => {}
    });
    assert_one_stream(&c, &wire);
    // 15 frames (0..280 ms), then A's audio from 300 ms.
    let tone_frames = wire
        .iter()
        .filter(|(_, p)| {
            let h = rtp::parse(p).unwrap();
            h.payload(p) != [0xD5; 160]
        })
        .count();
    assert_eq!(tone_frames, 15);
    assert_eq!(wire.len(), 21);
    assert!(events(&mut c.relay).is_empty());
    assert!(c.relay.leg(b).unwrap().inject.is_none());
}

#[test]
fn play_errors_and_empty_audio() {
    let mut c = call(
        None,
        Some(fmt(9, Encoding::Other { clock_rate: 8000 }, None)),
    );
    let t = c.t0;
    assert_eq!(
        c.relay.play(c.a, tone(160), false, t),
        Err(RelayError::NoEncoder(c.a))
    );
    assert_eq!(c.relay.play_rate(c.b), Err(RelayError::NoEncoder(c.b)));
    assert_eq!(
        c.relay.play(c.b, tone(160), false, t),
        Err(RelayError::NoEncoder(c.b))
    );
    assert_eq!(
        c.relay.play(LegId(7), tone(160), false, t),
        Err(RelayError::UnknownLeg(LegId(7)))
    );
    let amr = fmt(
        96,
        Encoding::Amr {
            wideband: true,
            octet_aligned: true,
        },
        None,
    );
    c.relay.set_format(c.b, Some(amr)).unwrap();
    if cfg!(feature = "transcode") {
        assert_eq!(c.relay.play_rate(c.b), Ok(16000));
    } else {
        assert_eq!(c.relay.play_rate(c.b), Err(RelayError::NoEncoder(c.b)));
    }
    // Nothing to play: done at once.
    c.relay.set_format(c.a, pcma(None)).unwrap();
    let empty = Wav {
        sample_rate: 8000,
        samples: Vec::new(),
    };
    c.relay.play(c.a, empty, false, t).unwrap();
    assert_eq!(
        events(&mut c.relay),
        [RelayEvent::PlaybackDone { leg: c.a }]
    );
    assert!(c.relay.leg(c.a).unwrap().inject.is_none());
}

#[cfg(feature = "transcode")]
#[test]
fn a_prompt_on_an_amr_wb_leg_is_amr_wb() {
    use crate::payload::amr::{AmrKind, AmrPayload, PayloadMode};
    let wb = fmt(
        98,
        Encoding::Amr {
            wideband: true,
            octet_aligned: false,
        },
        None,
    );
    let mut c = call(pcma(None), Some(wb));
    let b = c.b;
    // 100 ms at 8 kHz: resampled to 16 kHz, five 320-sample frames.
    c.relay.play(b, tone(800), false, c.t0).unwrap();
    let sent = run_until(&mut c.relay, c.t0 + Duration::from_millis(200));
    assert_eq!(sent.len(), 5);
    let headers: Vec<RtpHeader> = sent.iter().map(|(_, p)| rtp::parse(p).unwrap()).collect();
    for ((_, p), h) in sent.iter().zip(&headers) {
        assert_eq!(h.payload_type, 98);
        let payload =
            AmrPayload::parse(AmrKind::Wb, PayloadMode::BandwidthEfficient, h.payload(p)).unwrap();
        assert_eq!(payload.frames.len(), 1);
    }
    for w in headers.windows(2) {
        assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(320));
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
    }
    assert_eq!(events(&mut c.relay), [RelayEvent::PlaybackDone { leg: b }]);
}

#[test]
fn durations_use_the_telephone_event_clock() {
    let wb = fmt(
        98,
        Encoding::Amr {
            wideband: true,
            octet_aligned: true,
        },
        Some(101),
    );
    let mut c = call(Some(wb.clone()), Some(wb));
    let mut seq = 1;
    // 2 updates and an end of 800 units: 50 ms at the leg's 16 kHz...
    press(&mut c, &mut seq, 1000, 2, 0, 2, 1);
    // ...100 ms once the SDP says telephone-event/8000.
    c.relay.set_dtmf_clock_rate(c.a, Some(8000)).unwrap();
    press(&mut c, &mut seq, 9000, 2, 200, 2, 1);
    let durations: Vec<u32> = events(&mut c.relay)
        .into_iter()
        .map(|e| match e {
            RelayEvent::Dtmf { duration_ms, .. } => duration_ms,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(durations, [50, 100]);
    assert_eq!(
        c.relay.set_dtmf_clock_rate(LegId(9), None),
        Err(RelayError::UnknownLeg(LegId(9)))
    );
}
