//! Codec knowledge for negotiation.
//!
//! ```text
//! a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
//! a=fmtp:<payload type> <format specific parameters>
//! ```
//!
//! (RFC 4566 §6). Payload types 0-95 are statically assigned by RFC 3551 §6
//! and may appear without `a=rtpmap`; 96-127 are dynamic and bound by
//! `a=rtpmap`. Two codecs are the same when their encoding names match
//! case-insensitively and clock rate and channel count are equal (RFC 4566
//! §6 / RFC 3264 §6.1): opus is `opus/48000/2`, so channels matter.
//!
//! AMR (`AMR/8000`) and AMR-WB (`AMR-WB/16000`) carry format parameters that
//! change the payload layout (RFC 4867 §8.1, §8.3.1): `octet-align`,
//! `crc`, `robust-sorting` and `interleaving` must be equal on both sides,
//! absent meaning 0 (bandwidth-efficient mode); `mode-set` restricts the
//! codec modes (absent = all), and two sides agree if the sets intersect.

use std::fmt;

/// `a=rtpmap` value: `<payload type> <encoding name>/<clock rate>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding_name: String,
    pub clock_rate: u32,
    /// Encoding parameters; for audio the channel count (absent = 1).
    pub channels: Option<u16>,
}

impl RtpMap {
    /// Parses the value of `a=rtpmap:`; `None` if malformed.
    pub fn parse(value: &str) -> Option<Self> {
        let (pt, rest) = value.trim().split_once(char::is_whitespace)?;
        let payload_type = pt.parse::<u8>().ok().filter(|pt| *pt <= 127)?;
        let mut parts = rest.trim().split('/');
        let encoding_name = parts.next().filter(|n| !n.is_empty())?.to_owned();
        let clock_rate = parts.next()?.trim().parse::<u32>().ok()?;
        let channels = match parts.next() {
            Some(c) => Some(c.trim().parse::<u16>().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(RtpMap {
            payload_type,
            encoding_name,
            clock_rate,
            channels,
        })
    }
}

impl fmt::Display for RtpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding_name, self.clock_rate
        )?;
        if let Some(c) = self.channels {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// RFC 3551 §6 tables 4 and 5: static payload types.
pub fn static_payload_type(pt: u8) -> Option<RtpMap> {
    let (name, clock_rate, channels) = match pt {
        0 => ("PCMU", 8000, None),
        3 => ("GSM", 8000, None),
        4 => ("G723", 8000, None),
        5 => ("DVI4", 8000, None),
        6 => ("DVI4", 16000, None),
        7 => ("LPC", 8000, None),
        8 => ("PCMA", 8000, None),
        9 => ("G722", 8000, None),
        10 => ("L16", 44100, Some(2)),
        11 => ("L16", 44100, None),
        12 => ("QCELP", 8000, None),
        13 => ("CN", 8000, None),
        14 => ("MPA", 90000, None),
        15 => ("G728", 8000, None),
        16 => ("DVI4", 11025, None),
        17 => ("DVI4", 22050, None),
        18 => ("G729", 8000, None),
        25 => ("CelB", 90000, None),
        26 => ("JPEG", 90000, None),
        28 => ("nv", 90000, None),
        31 => ("H261", 90000, None),
        32 => ("MPV", 90000, None),
        33 => ("MP2T", 90000, None),
        34 => ("H263", 90000, None),
        _ => return None,
    };
    Some(RtpMap {
        payload_type: pt,
        encoding_name: name.to_owned(),
        clock_rate,
        channels,
    })
}

/// A codec as offered, answered or configured.
///
/// In [`super::LocalCapabilities`] the payload type is only our preference
/// for offers we originate; answers always use the offer's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecSpec {
    pub payload_type: u8,
    pub name: String,
    pub clock_rate: u32,
    /// Channel count, 1 when the rtpmap has none.
    pub channels: u16,
    /// `a=fmtp` parameters, byte-exact.
    pub fmtp: Option<String>,
}

impl CodecSpec {
    pub fn new(payload_type: u8, name: &str, clock_rate: u32, channels: u16) -> Self {
        CodecSpec {
            payload_type,
            name: name.to_owned(),
            clock_rate,
            channels,
            fmtp: None,
        }
    }

    pub fn with_fmtp(mut self, fmtp: &str) -> Self {
        self.fmtp = Some(fmtp.to_owned());
        self
    }

    pub fn from_rtpmap(map: &RtpMap, fmtp: Option<String>) -> Self {
        CodecSpec {
            payload_type: map.payload_type,
            name: map.encoding_name.clone(),
            clock_rate: map.clock_rate,
            channels: map.channels.unwrap_or(1),
            fmtp,
        }
    }

    /// G.711 µ-law, static PT 0.
    pub fn pcmu() -> Self {
        CodecSpec::new(0, "PCMU", 8000, 1)
    }

    /// G.711 A-law, static PT 8.
    pub fn pcma() -> Self {
        CodecSpec::new(8, "PCMA", 8000, 1)
    }

    /// AMR narrowband; `fmtp` as in `octet-align=1;mode-set=0,2,4,7`.
    pub fn amr(payload_type: u8, fmtp: Option<&str>) -> Self {
        CodecSpec {
            fmtp: fmtp.map(str::to_owned),
            ..CodecSpec::new(payload_type, "AMR", 8000, 1)
        }
    }

    /// AMR wideband.
    pub fn amr_wb(payload_type: u8, fmtp: Option<&str>) -> Self {
        CodecSpec {
            fmtp: fmtp.map(str::to_owned),
            ..CodecSpec::new(payload_type, "AMR-WB", 16000, 1)
        }
    }

    /// opus is always `opus/48000/2` in SDP (RFC 7587 §7).
    pub fn opus(payload_type: u8) -> Self {
        CodecSpec::new(payload_type, "opus", 48000, 2)
    }

    /// RFC 4733 telephone-event at a clock rate (8000, 16000, 48000, ...).
    pub fn telephone_event(payload_type: u8, clock_rate: u32) -> Self {
        CodecSpec::new(payload_type, "telephone-event", clock_rate, 1)
    }

    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }

    /// Comfort noise (RFC 3389) is not a voice codec either.
    pub fn is_comfort_noise(&self) -> bool {
        self.name.eq_ignore_ascii_case("CN")
    }

    fn is_amr(&self) -> bool {
        self.name.eq_ignore_ascii_case("AMR") || self.name.eq_ignore_ascii_case("AMR-WB")
    }

    /// Same encoding: name (case-insensitive), clock rate and channels.
    pub fn same_encoding(&self, other: &CodecSpec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock_rate == other.clock_rate
            && self.channels == other.channels
    }

    /// The rtpmap line for this codec.
    pub fn rtpmap(&self) -> RtpMap {
        RtpMap {
            payload_type: self.payload_type,
            encoding_name: self.name.clone(),
            clock_rate: self.clock_rate,
            channels: (self.channels != 1).then_some(self.channels),
        }
    }

    /// Whether an offered codec is acceptable to us (`self` being our
    /// capability), and if so the fmtp the answer carries for it: the offer's,
    /// byte-exact, except that an AMR `mode-set` is narrowed to the common
    /// modes when we support fewer than offered.
    pub fn answer_fmtp(&self, offered: &CodecSpec) -> Option<Option<String>> {
        if !self.same_encoding(offered) {
            return None;
        }
        if !self.is_amr() {
            return Some(offered.fmtp.clone());
        }
        let max_mode = if self.name.eq_ignore_ascii_case("AMR-WB") {
            8
        } else {
            7
        };
        let ours = AmrParams::parse(self.fmtp.as_deref(), max_mode)?;
        let theirs = AmrParams::parse(offered.fmtp.as_deref(), max_mode)?;
        if !ours.same_payload_format(&theirs) {
            return None;
        }
        let common = ours.mode_set & theirs.mode_set;
        if common == 0 {
            return None;
        }
        if common == theirs.mode_set {
            return Some(offered.fmtp.clone());
        }
        Some(Some(with_mode_set(offered.fmtp.as_deref(), common)))
    }

    /// For answers we receive: do the payload-layout parameters of the
    /// answered codec agree with what we offered? Only AMR has such rules.
    pub(crate) fn payload_format_agrees(&self, answered: &CodecSpec) -> bool {
        if !self.is_amr() {
            return true;
        }
        let max_mode = if self.name.eq_ignore_ascii_case("AMR-WB") {
            8
        } else {
            7
        };
        match (
            AmrParams::parse(self.fmtp.as_deref(), max_mode),
            AmrParams::parse(answered.fmtp.as_deref(), max_mode),
        ) {
            (Some(o), Some(a)) => o.same_payload_format(&a) && (o.mode_set & a.mode_set) != 0,
            _ => false,
        }
    }
}

/// The RFC 4867 §8.1 parameters that matter for negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AmrParams {
    octet_align: bool,
    crc: bool,
    robust_sorting: bool,
    interleaving: Option<u32>,
    /// Bit n set = mode n allowed.
    mode_set: u16,
}

impl AmrParams {
    /// `None` if a parameter we depend on is malformed: such a payload type
    /// cannot be safely matched.
    fn parse(fmtp: Option<&str>, max_mode: u8) -> Option<Self> {
        let all_modes = (1u16 << (max_mode + 1)).wrapping_sub(1);
        let mut p = AmrParams {
            octet_align: false,
            crc: false,
            robust_sorting: false,
            interleaving: None,
            mode_set: all_modes,
        };
        for (key, value) in fmtp_params(fmtp.unwrap_or("")) {
            let flag = || match value {
                "0" => Some(false),
                "1" => Some(true),
                _ => None,
            };
            if key.eq_ignore_ascii_case("octet-align") {
                p.octet_align = flag()?;
            } else if key.eq_ignore_ascii_case("crc") {
                p.crc = flag()?;
            } else if key.eq_ignore_ascii_case("robust-sorting") {
                p.robust_sorting = flag()?;
            } else if key.eq_ignore_ascii_case("interleaving") {
                p.interleaving = Some(value.parse().ok()?);
            } else if key.eq_ignore_ascii_case("mode-set") {
                let mut set = 0u16;
                for m in value.split(',') {
                    let m = m.trim().parse::<u8>().ok().filter(|m| *m <= max_mode)?;
                    set |= 1u16 << m;
                }
                p.mode_set = set;
            }
        }
        Some(p)
    }

    fn same_payload_format(&self, other: &AmrParams) -> bool {
        self.octet_align == other.octet_align
            && self.crc == other.crc
            && self.robust_sorting == other.robust_sorting
            && self.interleaving == other.interleaving
    }
}

/// `key=value` pairs of an fmtp separated by `;`, whitespace-trimmed.
/// A bare key yields an empty value.
pub(crate) fn fmtp_params(fmtp: &str) -> impl Iterator<Item = (&str, &str)> {
    fmtp.split(';').filter_map(|p| {
        let p = p.trim();
        if p.is_empty() {
            return None;
        }
        Some(match p.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (p, ""),
        })
    })
}

/// The fmtp with its `mode-set` replaced (or appended), everything else as it was.
fn with_mode_set(fmtp: Option<&str>, modes: u16) -> String {
    let list = (0u8..16)
        .filter(|m| modes & (1u16 << m) != 0)
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let Some(fmtp) = fmtp.filter(|f| !f.trim().is_empty()) else {
        return format!("mode-set={list}");
    };
    let mut replaced = false;
    let parts: Vec<String> = fmtp
        .split(';')
        .map(|seg| {
            let key = seg.split_once('=').map_or(seg, |(k, _)| k).trim();
            if key.eq_ignore_ascii_case("mode-set") {
                replaced = true;
                let indent = seg.len().saturating_sub(seg.trim_start().len());
                let ws = seg.get(..indent).unwrap_or("");
                format!("{ws}mode-set={list}")
            } else {
                seg.to_owned()
            }
        })
        .collect();
    let mut out = parts.join(";");
    if !replaced {
        out.push_str(";mode-set=");
        out.push_str(&list);
    }
    out
}
