//! The RFC 3264 offer/answer engine, as a B2BUA uses it.
//!
//! ```text
//!   leg A                     B2BUA                          leg B
//!   offer ────────────▶ filter_offer(offer, allowed) ────▶ offer'
//!                                                      ◀── answer'
//!                       check_answer(offer', answer') -> Negotiated
//!   answer ◀─────────── answer(offer, LocalCapabilities::from_negotiated(..))
//! ```
//!
//! Rules applied (RFC 3264):
//! - §6: the answer has exactly as many m-lines as the offer, in the same
//!   order; a stream is rejected with port 0, keeping the offer's formats.
//! - §6.1: the answer lists a subset of the offered formats with the offer's
//!   payload type numbers; direction is the reverse of the offer's
//!   (sendonly -> recvonly, recvonly -> sendonly, inactive -> inactive)
//!   intersected with local policy.
//! - §8.4 / RFC 2543: `c=0.0.0.0` means the sender does not want media, i.e.
//!   hold; it is treated as if the stream were not receiving.
//!
//! Only RTP audio (`RTP/AVP`, `RTP/AVPF`) is accepted: the softswitch
//! neither handles video nor terminates SRTP.

use std::net::IpAddr;

use super::codec::CodecSpec;
use super::session::{
    Attribute, Connection, Direction, MediaDescription, Origin, Rtcp, SessionDescription,
};

/// Why an offer or answer could not be negotiated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// No audio stream could be accepted (a B2BUA answers 488).
    #[error("no common audio codec")]
    NoCommonCodec,
    #[error("answer has {answered} m-lines, offer had {offered}")]
    MediaCountMismatch { offered: usize, answered: usize },
    #[error("m-line {index}: answered media {answered:?} for offered {offered:?}")]
    MediaTypeMismatch {
        index: usize,
        offered: String,
        answered: String,
    },
    #[error("m-line {index}: stream rejected in the offer was accepted in the answer")]
    RejectedStreamAccepted { index: usize },
    #[error("m-line {index}: answer has format {format:?} that was not offered")]
    FormatNotOffered { index: usize, format: String },
    #[error("m-line {index}: payload type {payload_type} answered with different parameters")]
    IncompatibleFormat { index: usize, payload_type: u8 },
    #[error("m-line {index}: accepted audio stream without an audio codec")]
    NoAudioCodec { index: usize },
    #[error("m-line {index}: answer direction {answered} does not fit offered {offered}")]
    DirectionMismatch {
        index: usize,
        offered: Direction,
        answered: Direction,
    },
    #[error("m-line {index}: no c= line for an accepted stream")]
    MissingConnection { index: usize },
}

/// What we answer with.
///
/// Session-wide defaults plus one [`LocalStream`] per offered m-line (by
/// index). A missing entry, or one with port 0, rejects that stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCapabilities {
    pub origin: Origin,
    pub session_name: String,
    /// Session-level `c=`.
    pub connection: Connection,
    /// Preference order; telephone-event entries enable RFC 4733 events.
    pub codecs: Vec<CodecSpec>,
    pub direction: Direction,
    pub ptime: Option<u32>,
    pub streams: Vec<LocalStream>,
}

/// Our side of one m-line; `None` fields fall back to [`LocalCapabilities`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalStream {
    /// RTP port; 0 rejects the stream.
    pub port: u16,
    /// Media-level `c=` when it differs from the session-level one.
    pub connection: Option<Connection>,
    pub codecs: Option<Vec<CodecSpec>>,
    pub direction: Option<Direction>,
    pub ptime: Option<u32>,
    pub rtcp: Option<Rtcp>,
    /// Accept RTCP multiplexing (RFC 5761) if offered.
    pub rtcp_mux: bool,
}

impl LocalStream {
    pub fn new(port: u16) -> Self {
        LocalStream {
            port,
            ..LocalStream::default()
        }
    }
}

impl LocalCapabilities {
    /// The same codecs, address and direction for every stream, one port per
    /// m-line.
    pub fn new(origin: Origin, address: IpAddr, codecs: Vec<CodecSpec>, ports: &[u16]) -> Self {
        LocalCapabilities {
            origin,
            session_name: "-".to_owned(),
            connection: Connection::from_ip(address),
            codecs,
            direction: Direction::SendRecv,
            ptime: None,
            streams: ports.iter().map(|p| LocalStream::new(*p)).collect(),
        }
    }

    /// "Answer with exactly what the other leg chose, where it said": per
    /// stream the negotiated codec (plus telephone-event), the remote
    /// address/port and the remote direction. Rejected streams stay rejected.
    ///
    /// Fails with [`NegotiationError::NoCommonCodec`] if no stream was accepted.
    pub fn from_negotiated(
        origin: Origin,
        negotiated: &Negotiated,
    ) -> Result<Self, NegotiationError> {
        let session_conn = negotiated
            .streams
            .iter()
            .filter(|s| !s.rejected)
            .find_map(|s| s.connection.clone())
            .ok_or(NegotiationError::NoCommonCodec)?;
        let streams = negotiated
            .streams
            .iter()
            .map(|s| {
                let Some(codec) = s.codec.clone().filter(|_| !s.rejected) else {
                    return LocalStream::new(0);
                };
                let clock_rate = codec.clock_rate;
                let mut codecs = vec![codec];
                if let Some(pt) = s.telephone_event {
                    codecs.push(CodecSpec::telephone_event(pt, clock_rate));
                }
                LocalStream {
                    port: s.remote_port,
                    connection: s.connection.clone().filter(|c| *c != session_conn),
                    codecs: Some(codecs),
                    direction: Some(s.direction),
                    ptime: s.ptime,
                    rtcp: s.rtcp.clone(),
                    rtcp_mux: s.rtcp_mux,
                }
            })
            .collect();
        Ok(LocalCapabilities {
            origin,
            session_name: "-".to_owned(),
            connection: session_conn,
            codecs: Vec::new(),
            direction: Direction::SendRecv,
            ptime: None,
            streams,
        })
    }
}

/// Result of an offer/answer exchange we originated, per m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub streams: Vec<NegotiatedStream>,
}

impl Negotiated {
    /// True if at least one stream carries media.
    pub fn has_media(&self) -> bool {
        self.streams.iter().any(|s| !s.rejected)
    }
}

/// One m-line of a completed exchange, as the answerer described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedStream {
    pub index: usize,
    pub media: String,
    pub rejected: bool,
    /// Where the answerer receives RTP (`None` if rejected or a FQDN).
    pub remote_addr: Option<IpAddr>,
    pub remote_port: u16,
    /// The answerer's effective `c=` for this stream.
    pub connection: Option<Connection>,
    /// First voice codec of the answer (the one the answerer will send).
    pub codec: Option<CodecSpec>,
    /// Payload type of telephone-event, if the answer kept it.
    pub telephone_event: Option<u8>,
    /// The answerer's direction from its own point of view; hold by
    /// `c=0.0.0.0` shows as not receiving.
    pub direction: Direction,
    pub ptime: Option<u32>,
    pub rtcp: Option<Rtcp>,
    /// Both offer and answer have `a=rtcp-mux`.
    pub rtcp_mux: bool,
}

fn is_rtp_audio(m: &MediaDescription) -> bool {
    m.media.eq_ignore_ascii_case("audio")
        && (m.proto.eq_ignore_ascii_case("RTP/AVP") || m.proto.eq_ignore_ascii_case("RTP/AVPF"))
}

fn is_voice(c: &CodecSpec) -> bool {
    !c.is_telephone_event() && !c.is_comfort_noise()
}

/// A new offer for the other leg carrying only the `allowed` codecs (by
/// encoding name, case-insensitive) of each audio stream. Payload type
/// numbers and fmtp are kept byte-exact; the caller sets its own origin.
///
/// An audio stream left without a voice codec (telephone-event alone does
/// not count) and every non-audio stream gets port 0, so the m-line count is
/// unchanged. Fails with [`NegotiationError::NoCommonCodec`] if no audio
/// stream remains.
pub fn filter_offer(
    offer: &SessionDescription,
    allowed: &[&str],
) -> Result<SessionDescription, NegotiationError> {
    let is_allowed = |name: &str| allowed.iter().any(|a| a.eq_ignore_ascii_case(name));
    let mut out = offer.clone();
    let mut usable = false;
    for m in &mut out.media {
        if m.port == 0 {
            continue;
        }
        if !is_rtp_audio(m) {
            m.reject();
            continue;
        }
        let keep: Vec<String> = m
            .formats
            .iter()
            .filter(|f| {
                f.parse::<u8>()
                    .ok()
                    .and_then(|pt| m.codec(pt))
                    .is_some_and(|c| is_allowed(&c.name))
            })
            .cloned()
            .collect();
        let has_voice = keep
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter_map(|pt| m.codec(pt))
            .any(|c| is_voice(&c));
        if !has_voice {
            m.reject();
            continue;
        }
        m.retain_formats(|f| keep.iter().any(|k| k == f));
        usable = true;
    }
    if usable {
        Ok(out)
    } else {
        Err(NegotiationError::NoCommonCodec)
    }
}

/// Effective direction of an offered or answered stream, counting
/// `c=0.0.0.0` as "does not receive" (RFC 3264 §8.4).
fn effective_direction(sd: &SessionDescription, m: &MediaDescription) -> Direction {
    let dir = sd.direction_of(m);
    if sd.connection_of(m).is_some_and(Connection::is_hold) {
        dir.intersect(Direction::SendOnly)
    } else {
        dir
    }
}

/// A rejected stream in an answer: port 0 and the offer's formats (RFC 3264 §6).
fn rejected_like(offered: &MediaDescription) -> MediaDescription {
    let formats = if offered.formats.is_empty() {
        vec!["0".to_owned()]
    } else {
        offered.formats.clone()
    };
    MediaDescription::new(&offered.media, 0, &offered.proto, formats)
}

/// The RFC 3264 §6 answerer.
///
/// Per audio stream the answer lists, in `local` preference order, every
/// local codec the offer has (offer's payload type and fmtp; AMR needs equal
/// `octet-align` and intersecting `mode-set`), plus telephone-event when both
/// sides have it (preferring the clock rate of the first codec). Fails with
/// [`NegotiationError::NoCommonCodec`] when the offer had an active stream
/// and none could be accepted.
pub fn answer(
    offer: &SessionDescription,
    local: &LocalCapabilities,
) -> Result<SessionDescription, NegotiationError> {
    let mut sd = SessionDescription::new(local.origin.clone(), &local.session_name);
    sd.connection = Some(local.connection.clone());
    // RFC 3264 §6: the t= line of the answer equals the offer's.
    if !offer.times.is_empty() {
        sd.times = offer.times.clone();
    }
    let mut offered_active = false;
    let mut accepted = false;
    for (index, om) in offer.media.iter().enumerate() {
        offered_active |= om.port != 0;
        let m = match local.streams.get(index) {
            Some(ls) if om.port != 0 && ls.port != 0 && is_rtp_audio(om) => {
                answer_stream(offer, om, local, ls)
            }
            _ => None,
        };
        accepted |= m.is_some();
        sd.media.push(m.unwrap_or_else(|| rejected_like(om)));
    }
    if offered_active && !accepted {
        return Err(NegotiationError::NoCommonCodec);
    }
    Ok(sd)
}

fn answer_stream(
    offer: &SessionDescription,
    om: &MediaDescription,
    local: &LocalCapabilities,
    ls: &LocalStream,
) -> Option<MediaDescription> {
    let local_codecs = ls.codecs.as_ref().unwrap_or(&local.codecs);
    let offered = om.codecs();

    let mut chosen: Vec<CodecSpec> = Vec::new();
    for lc in local_codecs.iter().filter(|c| is_voice(c)) {
        for oc in offered.iter().filter(|c| is_voice(c)) {
            if chosen.iter().any(|c| c.payload_type == oc.payload_type) {
                continue;
            }
            if let Some(fmtp) = lc.answer_fmtp(oc) {
                chosen.push(CodecSpec { fmtp, ..oc.clone() });
                break;
            }
        }
    }
    let first_clock = chosen.first()?.clock_rate;

    // RFC 4733 §2.1: events use the audio clock; any rate beats no DTMF.
    if local_codecs.iter().any(CodecSpec::is_telephone_event) {
        let mut events = offered.iter().filter(|c| c.is_telephone_event());
        let te = events
            .clone()
            .find(|c| c.clock_rate == first_clock)
            .or_else(|| events.next());
        if let Some(te) = te {
            chosen.push(te.clone());
        }
    }

    let mut m = MediaDescription::new(
        &om.media,
        ls.port,
        &om.proto,
        chosen.iter().map(|c| c.payload_type.to_string()).collect(),
    );
    m.connection = ls.connection.clone().filter(|c| *c != local.connection);
    for c in &chosen {
        // Keep the offer's own rtpmap spelling; static types may go without.
        let offered_map = om.attributes.iter().find(|a| {
            a.name == "rtpmap"
                && a.value.as_deref().and_then(|v| v.split_whitespace().next())
                    == Some(c.payload_type.to_string().as_str())
        });
        if let Some(a) = offered_map {
            m.attributes.push(a.clone());
        } else if c.payload_type >= 96 {
            m.attributes
                .push(Attribute::new("rtpmap", c.rtpmap().to_string()));
        }
        if let Some(f) = &c.fmtp {
            m.attributes
                .push(Attribute::new("fmtp", format!("{} {f}", c.payload_type)));
        }
    }
    if let Some(p) = ls.ptime.or(local.ptime) {
        m.attributes.push(Attribute::new("ptime", p.to_string()));
    }
    if ls.rtcp_mux && om.rtcp_mux() {
        m.attributes.push(Attribute::flag("rtcp-mux"));
    }
    m.set_rtcp(ls.rtcp.clone());
    let offered_dir = effective_direction(offer, om);
    let dir = offered_dir
        .reversed()
        .intersect(ls.direction.unwrap_or(local.direction));
    m.set_direction(dir);
    Some(m)
}

/// Validates an answer to our offer (RFC 3264 §6, §6.1) and extracts what
/// was agreed per m-line.
pub fn check_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Negotiated, NegotiationError> {
    if offer.media.len() != answer.media.len() {
        return Err(NegotiationError::MediaCountMismatch {
            offered: offer.media.len(),
            answered: answer.media.len(),
        });
    }
    let streams = offer
        .media
        .iter()
        .zip(&answer.media)
        .enumerate()
        .map(|(index, (om, am))| check_stream(index, offer, om, answer, am))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Negotiated { streams })
}

fn check_stream(
    index: usize,
    offer: &SessionDescription,
    om: &MediaDescription,
    answer: &SessionDescription,
    am: &MediaDescription,
) -> Result<NegotiatedStream, NegotiationError> {
    if !om.media.eq_ignore_ascii_case(&am.media) {
        return Err(NegotiationError::MediaTypeMismatch {
            index,
            offered: om.media.clone(),
            answered: am.media.clone(),
        });
    }
    let mut stream = NegotiatedStream {
        index,
        media: am.media.clone(),
        rejected: true,
        remote_addr: None,
        remote_port: 0,
        connection: None,
        codec: None,
        telephone_event: None,
        direction: Direction::Inactive,
        ptime: None,
        rtcp: None,
        rtcp_mux: false,
    };
    if am.port == 0 {
        return Ok(stream);
    }
    if om.port == 0 {
        return Err(NegotiationError::RejectedStreamAccepted { index });
    }

    let rtp = super::session::is_rtp_proto(&om.proto);
    for f in &am.formats {
        if !om.formats.iter().any(|o| o == f) {
            return Err(NegotiationError::FormatNotOffered {
                index,
                format: f.clone(),
            });
        }
        let Some(pt) = f.parse::<u8>().ok().filter(|_| rtp) else {
            continue;
        };
        // The payload type is the offer's; the answer may not rebind it.
        let (Some(oc), Some(ac)) = (om.codec(pt), answered_codec(om, am, pt)) else {
            continue;
        };
        if !oc.same_encoding(&ac) || !oc.payload_format_agrees(&ac) {
            return Err(NegotiationError::IncompatibleFormat {
                index,
                payload_type: pt,
            });
        }
        if is_voice(&ac) {
            stream.codec.get_or_insert(ac);
        } else if ac.is_telephone_event() {
            stream.telephone_event.get_or_insert(pt);
        }
    }
    if rtp && is_rtp_audio(om) && stream.codec.is_none() {
        return Err(NegotiationError::NoAudioCodec { index });
    }

    let offered = offer.direction_of(om);
    let answered = answer.direction_of(am);
    // What the answerer does must be what the offerer allowed, seen reversed.
    if answered.intersect(offered.reversed()) != answered {
        return Err(NegotiationError::DirectionMismatch {
            index,
            offered,
            answered,
        });
    }

    let conn = answer
        .connection_of(am)
        .ok_or(NegotiationError::MissingConnection { index })?;
    stream.rejected = false;
    stream.remote_addr = conn.ip();
    stream.remote_port = am.port;
    stream.connection = Some(conn.clone());
    stream.direction = effective_direction(answer, am);
    stream.ptime = am.ptime();
    stream.rtcp = am.rtcp();
    stream.rtcp_mux = am.rtcp_mux() && om.rtcp_mux();
    Ok(stream)
}

/// The codec the answer means by `pt`: its own rtpmap if it repeated one,
/// else the offer's; fmtp from the answer, else the offer's, except for
/// AMR where an absent fmtp means the defaults (RFC 4867 §8.1).
fn answered_codec(om: &MediaDescription, am: &MediaDescription, pt: u8) -> Option<CodecSpec> {
    let map = am
        .attributes
        .iter()
        .filter(|a| a.name == "rtpmap")
        .filter_map(|a| a.value.as_deref().and_then(super::RtpMap::parse))
        .find(|m| m.payload_type == pt)
        .or_else(|| om.rtpmap(pt))?;
    let is_amr = map.encoding_name.eq_ignore_ascii_case("AMR")
        || map.encoding_name.eq_ignore_ascii_case("AMR-WB");
    let fmtp = match am.fmtp(pt) {
        Some(f) => Some(f.to_owned()),
        None if is_amr => None,
        None => om.fmtp(pt).map(str::to_owned),
    };
    Some(CodecSpec::from_rtpmap(&map, fmtp))
}

/// A fresh offer (RFC 3264 §5): one audio stream at `address`:`port` with
/// `codecs` in preference order, their payload types and fmtp as given. Used
/// when the other leg's offer shares no codec with this side (the relay then
/// transcodes).
pub fn offer(
    origin: Origin,
    address: IpAddr,
    port: u16,
    codecs: &[CodecSpec],
) -> SessionDescription {
    let mut sdp = SessionDescription::new(origin, "-");
    sdp.connection = Some(Connection::from_ip(address));
    let formats = codecs.iter().map(|c| c.payload_type.to_string()).collect();
    let mut m = MediaDescription::new("audio", port, "RTP/AVP", formats);
    for c in codecs {
        let rtpmap = if c.channels > 1 {
            format!(
                "{} {}/{}/{}",
                c.payload_type, c.name, c.clock_rate, c.channels
            )
        } else {
            format!("{} {}/{}", c.payload_type, c.name, c.clock_rate)
        };
        m.attributes.push(Attribute::new("rtpmap", rtpmap));
        if let Some(f) = &c.fmtp {
            m.attributes
                .push(Attribute::new("fmtp", format!("{} {f}", c.payload_type)));
        }
    }
    m.attributes.push(Attribute::flag("sendrecv"));
    sdp.media.push(m);
    sdp
}

/// The same fmtp with `octet-align` set to `octet_aligned` (RFC 4867 §8.1:
/// absent means 0, so bandwidth-efficient drops the parameter).
fn with_octet_align(fmtp: Option<&str>, octet_aligned: bool) -> Option<String> {
    let mut params: Vec<String> = fmtp
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("octet-align"))
        .map(str::to_owned)
        .collect();
    if octet_aligned {
        params.insert(0, "octet-align=1".to_owned());
    }
    (!params.is_empty()).then(|| params.join(";"))
}

/// For every AMR/AMR-WB payload type of the first audio stream, adds a twin
/// in the other payload mode on a free dynamic payload type, right after it,
/// so the answerer may pick either mode and a relay converts between them
/// (RFC 4867 §4.3/§4.4). Returns (twin PT, original PT) pairs.
pub fn add_amr_mode_twins(offer: &mut SessionDescription) -> Vec<(u8, u8)> {
    let mut pairs = Vec::new();
    let Some(m) = offer
        .media
        .iter_mut()
        .find(|m| m.media == "audio" && m.port != 0)
    else {
        return pairs;
    };
    let used: Vec<u8> = m.payload_types().collect();
    let mut free = (96u8..=127).filter(|pt| !used.contains(pt));
    let amr: Vec<CodecSpec> = m
        .codecs()
        .into_iter()
        .filter(|c| c.name.eq_ignore_ascii_case("AMR") || c.name.eq_ignore_ascii_case("AMR-WB"))
        .collect();
    for c in amr {
        let Some(pt) = free.next() else { break };
        let octet_aligned = c.fmtp.as_deref().is_some_and(|f| {
            f.split(';')
                .any(|p| p.trim().eq_ignore_ascii_case("octet-align=1"))
        });
        let pos = m
            .formats
            .iter()
            .position(|f| f == &c.payload_type.to_string())
            .map_or(m.formats.len(), |p| p + 1);
        m.formats.insert(pos, pt.to_string());
        m.attributes.push(Attribute::new(
            "rtpmap",
            format!("{pt} {}/{}", c.name, c.clock_rate),
        ));
        if let Some(f) = with_octet_align(c.fmtp.as_deref(), !octet_aligned) {
            m.attributes
                .push(Attribute::new("fmtp", format!("{pt} {f}")));
        }
        pairs.push((pt, c.payload_type));
    }
    pairs
}
