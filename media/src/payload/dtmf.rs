//! RFC 4733 telephone-event payloads: parsing, a receiver that turns the
//! packet stream into one notice per key press, and a paced sender.
//!
//! Payload (RFC 4733 §2.3):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Events 0-9 are the digits, 10 `*`, 11 `#`, 12-15 `A`-`D` (RFC 4733
//! §3.2 Table 7). E marks the end of the event, R is reserved (sent as 0,
//! ignored), volume is the power in -dBm0 (0..=63), duration counts
//! timestamp units since the event began (§2.3.5).
//!
//! Every packet of one press carries the RTP timestamp of the press's start
//! (§2.3.1), the duration grows in each update (§2.5.1.2), and the end
//! packet is sent three times (§2.5.1.4). The telephone-event clock rate is
//! its own (`telephone-event/8000` usually), whatever the audio codec's.
//! RFC 2198 redundancy is not used: one event per payload.

use std::collections::VecDeque;

/// Why a telephone-event payload or request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("telephone-event payload of {len} bytes, not 4")]
    Length { len: usize },
    #[error("{digit:?} is not a DTMF digit")]
    UnknownDigit { digit: char },
    #[error("a press of {duration_ms} ms does not fit one event (1 to 65535 timestamp units)")]
    Duration { duration_ms: u32 },
}

impl DtmfError {
    pub fn label(self) -> &'static str {
        match self {
            DtmfError::Length { .. } => "dtmf_length",
            DtmfError::UnknownDigit { .. } => "dtmf_digit",
            DtmfError::Duration { .. } => "dtmf_duration",
        }
    }
}

/// One telephone-event payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub event: u8,
    /// E bit: the event has ended; `duration` is final.
    pub end: bool,
    /// Power level in -dBm0, 0..=63.
    pub volume: u8,
    /// Timestamp units since the start of the event.
    pub duration: u16,
}

impl Event {
    /// The 4 payload bytes (R = 0).
    pub fn to_bytes(&self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d0,
            d1,
        ]
    }
}

/// Parses a telephone-event payload (exactly 4 bytes: anything else is RFC
/// 2198 redundancy or a mislabelled payload, which would decode as noise).
pub fn parse(payload: &[u8]) -> Result<Event, DtmfError> {
    let &[event, flags, d0, d1] = payload else {
        return Err(DtmfError::Length { len: payload.len() });
    };
    Ok(Event {
        event,
        end: flags & 0x80 != 0,
        volume: flags & 0x3F,
        duration: u16::from_be_bytes([d0, d1]),
    })
}

const DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// `0`-`9`, `*`, `#`, `A`-`D` (either case) to the event code 0..=15.
pub fn digit_to_event(c: char) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    DIGITS
        .iter()
        .position(|&d| d == c)
        .and_then(|i| u8::try_from(i).ok())
}

/// Event code 0..=15 to its digit; `None` for the other events (flash,
/// tones, ...).
pub fn event_to_digit(event: u8) -> Option<char> {
    DIGITS.get(usize::from(event)).copied()
}

/// What the receiver learnt from a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfNotice {
    /// A key press began (first packet seen of a new press).
    Started { digit: char },
    /// The press ended: `duration` in telephone-event timestamp units. It
    /// is the last duration seen when the end packets were all lost and
    /// the press was superseded or flushed.
    Ended { digit: char, duration: u16 },
}

/// The notices of one packet, in order (at most three: the end of a press
/// whose end packets were lost, the start of the next one, and its end when
/// the only packet that arrived was an end packet). No allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DtmfNotices {
    items: [Option<DtmfNotice>; 3],
    next: usize,
}

impl DtmfNotices {
    fn push(&mut self, notice: DtmfNotice) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(notice);
        }
    }

    /// No notice left.
    pub fn is_empty(&self) -> bool {
        self.items
            .get(self.next..)
            .is_none_or(|rest| rest.iter().all(Option::is_none))
    }
}

impl Iterator for DtmfNotices {
    type Item = DtmfNotice;

    fn next(&mut self) -> Option<DtmfNotice> {
        let item = self.items.get_mut(self.next)?.take();
        self.next += 1;
        item
    }
}

#[derive(Clone, Copy, Debug)]
struct RxPress {
    timestamp: u32,
    event: u8,
    digit: char,
    duration: u16,
    ended: bool,
}

/// Turns telephone-event packets into one [`DtmfNotice::Started`] and one
/// [`DtmfNotice::Ended`] per key press, whatever the retransmissions.
///
/// A press is keyed by (RTP timestamp, event code): every packet of a press
/// keeps the start timestamp (§2.5.1.2), and a new press of the same digit
/// has a new one. The marker bit is not needed for that (it is lost with
/// the first packet, §2.5.2.1 has the receiver cope), so a press is
/// started by whichever of its packets arrives first. Packets of an older
/// press arriving late (reordering, the three end copies) are ignored.
/// Events without a digit (flash, tones) are ignored.
///
/// When the end packets of a press are all lost, its `Ended` comes when
/// the next press starts or when the caller calls [`DtmfReceiver::flush`]
/// (on a timer, or when audio resumes: the receiver reads no clock).
#[derive(Clone, Debug, Default)]
pub struct DtmfReceiver {
    current: Option<RxPress>,
}

impl DtmfReceiver {
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// Feeds one packet. `marker` is accepted for the caller's
    /// convenience; keying does not depend on it.
    pub fn on_packet(&mut self, rtp_timestamp: u32, marker: bool, ev: &Event) -> DtmfNotices {
        let _ = marker;
        let mut notices = DtmfNotices::default();
        let Some(digit) = event_to_digit(ev.event) else {
            return notices;
        };
        if let Some(press) = self.current.as_mut() {
            if press.timestamp == rtp_timestamp && press.event == ev.event {
                if !press.ended {
                    press.duration = press.duration.max(ev.duration);
                    if ev.end {
                        press.ended = true;
                        press.duration = ev.duration;
                        notices.push(DtmfNotice::Ended {
                            digit,
                            duration: press.duration,
                        });
                    }
                }
                return notices;
            }
            // RTP timestamp order (RFC 3550 serial arithmetic): a packet
            // from before the current press is a late one.
            if (rtp_timestamp.wrapping_sub(press.timestamp) as i32) < 0 {
                return notices;
            }
        }
        if let Some(ended) = self.flush() {
            notices.push(ended);
        }
        notices.push(DtmfNotice::Started { digit });
        if ev.end {
            notices.push(DtmfNotice::Ended {
                digit,
                duration: ev.duration,
            });
        }
        self.current = Some(RxPress {
            timestamp: rtp_timestamp,
            event: ev.event,
            digit,
            duration: ev.duration,
            ended: ev.end,
        });
        notices
    }

    /// Ends the current press if its end packets never came, with the last
    /// duration seen.
    pub fn flush(&mut self) -> Option<DtmfNotice> {
        let press = self.current.as_mut().filter(|p| !p.ended)?;
        press.ended = true;
        Some(DtmfNotice::Ended {
            digit: press.digit,
            duration: press.duration,
        })
    }

    /// A press has started and not ended yet: its end packets may all be
    /// lost, so the caller should [`DtmfReceiver::flush`] it after a quiet
    /// period.
    pub fn in_press(&self) -> bool {
        self.current.is_some_and(|p| !p.ended)
    }

    /// Forgets the stream (new SSRC): the next packet starts a press
    /// whatever its timestamp.
    pub fn reset(&mut self) {
        self.current = None;
    }
}

/// Volume sent for generated digits: -10 dBm0, what phones commonly use.
const SEND_VOLUME: u8 = 10;
/// End packets per press (§2.5.1.4).
const END_PACKETS: u8 = 3;

#[derive(Clone, Copy, Debug)]
struct TxPress {
    event: u8,
    /// Final duration in timestamp units.
    duration: u16,
}

#[derive(Clone, Copy, Debug)]
struct TxActive {
    press: TxPress,
    timestamp: u32,
    /// Timestamp units elapsed at the next update packet.
    elapsed: u32,
    first: bool,
    ends_sent: u8,
}

/// Generates the packets of key presses, one per call to
/// [`DtmfSender::next_packet`], which the caller makes every
/// `packet_interval_ms` (sans-IO: the caller paces and numbers packets).
///
/// A press sends an update at once (marker set, duration 0), then one per
/// interval with the elapsed duration, then three end packets with the
/// final duration; all carry the timestamp of the press's start.
#[derive(Clone, Debug)]
pub struct DtmfSender {
    clock_rate: u32,
    packet_interval_ms: u32,
    queue: VecDeque<TxPress>,
    active: Option<TxActive>,
    /// Timestamp of the next packet slot; advances one interval per packet.
    clock: u32,
}

impl DtmfSender {
    /// `clock_rate` of telephone-event (8000 usually), packet interval
    /// (50 ms is customary). Zeros are raised to 1 so that nothing divides
    /// by zero or stalls.
    pub fn new(clock_rate: u32, packet_interval_ms: u32) -> DtmfSender {
        DtmfSender {
            clock_rate: clock_rate.max(1),
            packet_interval_ms: packet_interval_ms.max(1),
            queue: VecDeque::new(),
            active: None,
            clock: 0,
        }
    }

    fn units(&self, ms: u32) -> u64 {
        u64::from(ms) * u64::from(self.clock_rate) / 1000
    }

    /// Timestamp units per packet interval.
    fn step(&self) -> u32 {
        // At least one unit, or a press would never reach its end.
        u32::try_from(self.units(self.packet_interval_ms))
            .unwrap_or(u32::MAX)
            .max(1)
    }

    /// Queues a press of `digit` for `duration_ms`. `rtp_timestamp` (in the
    /// telephone-event clock) is the start of the press when the sender is
    /// idle; a digit queued behind others starts in the slot after their
    /// last end packet, its timestamp following from the pacing.
    ///
    /// A press longer than 65535 units (8.19 s at 8 kHz) would need the
    /// segmented events of §2.5.1.3; it is refused instead.
    pub fn start(
        &mut self,
        digit: char,
        duration_ms: u32,
        rtp_timestamp: u32,
    ) -> Result<(), DtmfError> {
        let event = digit_to_event(digit).ok_or(DtmfError::UnknownDigit { digit })?;
        let duration = u16::try_from(self.units(duration_ms))
            .ok()
            .filter(|&d| d > 0)
            .ok_or(DtmfError::Duration { duration_ms })?;
        if self.is_idle() {
            self.clock = rtp_timestamp;
        }
        self.queue.push_back(TxPress { event, duration });
        Ok(())
    }

    /// Queues every digit of `digits` (e.g. `"123#"`), or none if one of
    /// them is not a digit.
    pub fn start_digits(
        &mut self,
        digits: &str,
        duration_ms: u32,
        rtp_timestamp: u32,
    ) -> Result<(), DtmfError> {
        if let Some(digit) = digits.chars().find(|&c| digit_to_event(c).is_none()) {
            return Err(DtmfError::UnknownDigit { digit });
        }
        for digit in digits.chars() {
            self.start(digit, duration_ms, rtp_timestamp)?;
        }
        Ok(())
    }

    /// Nothing being sent and nothing queued.
    pub fn is_idle(&self) -> bool {
        self.active.is_none() && self.queue.is_empty()
    }

    /// The next packet: (marker, RTP timestamp, payload), or `None` when
    /// there is nothing to send.
    pub fn next_packet(&mut self) -> Option<(bool, u32, [u8; 4])> {
        let step = self.step();
        let mut active = match self.active.take() {
            Some(active) => active,
            None => TxActive {
                press: self.queue.pop_front()?,
                timestamp: self.clock,
                elapsed: 0,
                first: true,
                ends_sent: 0,
            },
        };
        let final_duration = u32::from(active.press.duration);
        let event = if active.elapsed < final_duration {
            let duration = u16::try_from(active.elapsed).unwrap_or(u16::MAX);
            active.elapsed = active.elapsed.saturating_add(step);
            Event {
                event: active.press.event,
                end: false,
                volume: SEND_VOLUME,
                duration,
            }
        } else {
            active.ends_sent += 1;
            Event {
                event: active.press.event,
                end: true,
                volume: SEND_VOLUME,
                duration: active.press.duration,
            }
        };
        let packet = (active.first, active.timestamp, event.to_bytes());
        active.first = false;
        if active.ends_sent < END_PACKETS {
            self.active = Some(active);
        }
        self.clock = self.clock.wrapping_add(step);
        Some(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(tx: &mut DtmfSender) -> Vec<(bool, u32, Event)> {
        std::iter::from_fn(|| tx.next_packet())
            .map(|(m, ts, p)| (m, ts, parse(&p).unwrap()))
            .collect()
    }

    fn feed(rx: &mut DtmfReceiver, packets: &[(bool, u32, Event)]) -> Vec<DtmfNotice> {
        packets
            .iter()
            .flat_map(|(m, ts, ev)| rx.on_packet(*ts, *m, ev))
            .collect()
    }

    #[test]
    fn payload_layout_and_round_trip() {
        // Digit 5, E=1, volume 10, duration 1280 (RFC 4733 §2.3 layout).
        let ev = parse(&[5, 0x8A, 0x05, 0x00]).unwrap();
        assert_eq!(
            ev,
            Event {
                event: 5,
                end: true,
                volume: 10,
                duration: 1280
            }
        );
        assert_eq!(ev.to_bytes(), [5, 0x8A, 0x05, 0x00]);
        // R is ignored on receive and cleared on send.
        let ev = parse(&[11, 0x40 | 0x3F, 0xFF, 0xFF]).unwrap();
        assert!(!ev.end);
        assert_eq!((ev.event, ev.volume, ev.duration), (11, 63, 0xFFFF));
        assert_eq!(ev.to_bytes()[1], 0x3F);
    }

    #[test]
    fn every_prefix_and_length_is_handled() {
        let p = [1u8, 0x8A, 0, 160, 9, 9];
        for n in 0..=p.len() {
            let r = parse(&p[..n]);
            assert_eq!(r.is_ok(), n == 4, "len {n}");
            if let Err(e) = r {
                assert_eq!(e, DtmfError::Length { len: n });
                assert_eq!(e.label(), "dtmf_length");
            }
        }
    }

    #[test]
    fn digits_map_to_events() {
        let all = "0123456789*#ABCD";
        for (i, c) in all.chars().enumerate() {
            assert_eq!(digit_to_event(c), Some(i as u8));
            assert_eq!(event_to_digit(i as u8), Some(c));
        }
        assert_eq!(digit_to_event('a'), Some(12));
        assert_eq!(digit_to_event('E'), None);
        assert_eq!(digit_to_event('+'), None);
        assert_eq!(event_to_digit(16), None);
        assert_eq!(event_to_digit(255), None);
    }

    #[test]
    fn a_160_ms_press_of_5_at_8000_hz() {
        let mut tx = DtmfSender::new(8000, 50);
        tx.start('5', 160, 123_456).unwrap();
        let packets = drain(&mut tx);
        // Updates at 0, 50, 100, 150 ms, then three ends.
        assert_eq!(packets.len(), 7);
        let durations: Vec<u16> = packets.iter().map(|p| p.2.duration).collect();
        assert_eq!(durations, [0, 400, 800, 1200, 1280, 1280, 1280]);
        let ends: Vec<bool> = packets.iter().map(|p| p.2.end).collect();
        assert_eq!(ends, [false, false, false, false, true, true, true]);
        let markers: Vec<bool> = packets.iter().map(|p| p.0).collect();
        assert_eq!(markers, [true, false, false, false, false, false, false]);
        assert!(packets.iter().all(|p| p.1 == 123_456));
        assert!(packets.iter().all(|p| p.2.event == 5 && p.2.volume == 10));
        assert!(tx.is_idle());
        assert_eq!(tx.next_packet(), None);
    }

    #[test]
    fn the_event_clock_is_its_own() {
        // telephone-event/48000 (e.g. next to Opus): 160 ms = 7680 units.
        let mut tx = DtmfSender::new(48000, 50);
        tx.start('#', 160, 7).unwrap();
        let packets = drain(&mut tx);
        assert_eq!(packets[1].2.duration, 2400);
        assert_eq!(packets.last().unwrap().2.duration, 7680);
        assert!(packets.iter().all(|p| p.1 == 7 && p.2.event == 11));
    }

    #[test]
    fn a_queue_of_digits_gets_one_timestamp_per_press() {
        let mut tx = DtmfSender::new(8000, 50);
        tx.start_digits("123#", 100, 1000).unwrap();
        // Calls made while a press is on the wire do not move its timestamp.
        let packets = drain(&mut tx);
        // 100 ms: updates at 0 and 50 ms, then three ends: 5 packets a press.
        assert_eq!(packets.len(), 20);
        let starts: Vec<(u32, u8)> = packets
            .iter()
            .filter(|p| p.0)
            .map(|p| (p.1, p.2.event))
            .collect();
        assert_eq!(starts, [(1000, 1), (3000, 2), (5000, 3), (7000, 11)]);
        for chunk in packets.chunks(5) {
            assert!(chunk.iter().all(|p| p.1 == chunk[0].1));
        }
        let mut rx = DtmfReceiver::new();
        let digits: String = feed(&mut rx, &packets)
            .into_iter()
            .filter_map(|n| match n {
                DtmfNotice::Started { digit } => Some(digit),
                DtmfNotice::Ended { .. } => None,
            })
            .collect();
        assert_eq!(digits, "123#");
    }

    #[test]
    fn sender_refuses_bad_requests() {
        let mut tx = DtmfSender::new(8000, 50);
        assert_eq!(
            tx.start('x', 100, 0),
            Err(DtmfError::UnknownDigit { digit: 'x' })
        );
        assert_eq!(
            tx.start('1', 0, 0),
            Err(DtmfError::Duration { duration_ms: 0 })
        );
        assert_eq!(tx.start('1', 8192, 0).unwrap_err().label(), "dtmf_duration");
        assert!(tx.start('1', 8191, 0).is_ok());
        let mut tx = DtmfSender::new(8000, 50);
        assert!(tx.start_digits("12x", 100, 0).is_err());
        assert!(tx.is_idle());
        // Degenerate configuration does not loop forever.
        let mut tx = DtmfSender::new(0, 0);
        tx.start('1', 5000, 0).unwrap();
        assert_eq!(drain(&mut tx).len(), 8);
    }

    #[test]
    fn duplicates_and_a_lost_start_give_one_press() {
        let mut tx = DtmfSender::new(8000, 50);
        tx.start('5', 160, 555).unwrap();
        let packets = drain(&mut tx);
        // Lose the first (marker) packet, duplicate everything else.
        let mut wire = Vec::new();
        for p in &packets[1..] {
            wire.push(*p);
            wire.push(*p);
        }
        let mut rx = DtmfReceiver::new();
        assert_eq!(
            feed(&mut rx, &wire),
            [
                DtmfNotice::Started { digit: '5' },
                DtmfNotice::Ended {
                    digit: '5',
                    duration: 1280
                }
            ]
        );
        // A late copy of the first packet changes nothing.
        assert!(feed(&mut rx, &packets[..1]).is_empty());
        assert!(rx.flush().is_none());
    }

    #[test]
    fn two_presses_of_the_same_digit_give_two() {
        let mut tx = DtmfSender::new(8000, 50);
        tx.start('7', 100, 0).unwrap();
        let first = drain(&mut tx);
        tx.start('7', 100, 8000).unwrap();
        let second = drain(&mut tx);
        let mut rx = DtmfReceiver::new();
        let mut notices = feed(&mut rx, &first);
        notices.extend(feed(&mut rx, &second));
        let ended = DtmfNotice::Ended {
            digit: '7',
            duration: 800,
        };
        let started = DtmfNotice::Started { digit: '7' };
        assert_eq!(notices, [started, ended, started, ended]);
    }

    #[test]
    fn reordering_and_lost_ends() {
        let mut tx = DtmfSender::new(8000, 50);
        tx.start_digits("19", 100, 0).unwrap();
        let packets = drain(&mut tx);
        let (one, nine) = packets.split_at(5);
        // All end packets of '1' lost; packets of '9' swapped around.
        let mut wire = one[..2].to_vec();
        wire.extend([nine[1], nine[0], nine[3], nine[2], nine[4]]);
        // And a late packet of '1' after '9' started.
        wire.insert(4, one[1]);
        let mut rx = DtmfReceiver::new();
        assert_eq!(
            feed(&mut rx, &wire),
            [
                DtmfNotice::Started { digit: '1' },
                DtmfNotice::Ended {
                    digit: '1',
                    duration: 400
                },
                DtmfNotice::Started { digit: '9' },
                DtmfNotice::Ended {
                    digit: '9',
                    duration: 800
                },
            ]
        );
    }

    #[test]
    fn only_an_end_packet_arrived() {
        let mut rx = DtmfReceiver::new();
        let end = Event {
            event: 0,
            end: true,
            volume: 10,
            duration: 960,
        };
        let mut n = rx.on_packet(42, false, &end);
        assert!(!n.is_empty());
        assert_eq!(n.next(), Some(DtmfNotice::Started { digit: '0' }));
        assert_eq!(
            n.next(),
            Some(DtmfNotice::Ended {
                digit: '0',
                duration: 960
            })
        );
        assert_eq!(n.next(), None);
        assert!(n.is_empty());
        assert!(rx.on_packet(42, false, &end).is_empty());
    }

    #[test]
    fn flush_ends_a_press_without_end_packets_once() {
        let mut rx = DtmfReceiver::new();
        let ev = Event {
            event: 12,
            end: false,
            volume: 10,
            duration: 400,
        };
        assert!(!rx.in_press());
        assert_eq!(
            rx.on_packet(9, true, &ev).collect::<Vec<_>>(),
            [DtmfNotice::Started { digit: 'A' }]
        );
        assert!(rx.in_press());
        assert_eq!(
            rx.flush(),
            Some(DtmfNotice::Ended {
                digit: 'A',
                duration: 400
            })
        );
        assert!(!rx.in_press());
        assert_eq!(rx.flush(), None);
        // Non-digit events (16 = flash) are ignored.
        let flash = Event { event: 16, ..ev };
        assert!(rx.on_packet(100, true, &flash).is_empty());
        // After a reset an "older" timestamp starts a press again.
        rx.reset();
        assert!(!rx.on_packet(1, true, &ev).is_empty());
    }

    #[test]
    fn random_packets_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4733);
        let mut rx = DtmfReceiver::new();
        let mut started = 0;
        let mut ended = 0;
        for _ in 0..20_000 {
            let bytes: [u8; 4] = [rng.gen_range(0..20), rng.gen(), rng.gen(), rng.gen()];
            let ev = parse(&bytes).unwrap();
            for n in rx.on_packet(rng.gen_range(0..50), rng.gen(), &ev) {
                match n {
                    DtmfNotice::Started { .. } => started += 1,
                    DtmfNotice::Ended { .. } => ended += 1,
                }
                assert!(ended <= started && started <= ended + 1);
            }
        }
    }
}
