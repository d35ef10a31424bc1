//! The session description model (RFC 4566 §5), its parser and its writer.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::codec::{static_payload_type, CodecSpec, RtpMap};
use super::SdpError;

/// `<addrtype>` of `o=` and `c=` (RFC 4566 §5.2, §5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrType {
    Ip4,
    Ip6,
}

impl AddrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AddrType::Ip4 => "IP4",
            AddrType::Ip6 => "IP6",
        }
    }

    /// The address type matching an IP address.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }

    fn parse(token: &str) -> Option<Self> {
        // Case-insensitive: some stacks write "ip4"; we always write upper case.
        if token.eq_ignore_ascii_case("IP4") {
            Some(AddrType::Ip4)
        } else if token.eq_ignore_ascii_case("IP6") {
            Some(AddrType::Ip6)
        } else {
            None
        }
    }
}

impl fmt::Display for AddrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`
/// (RFC 4566 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    /// Kept as text: it is only an identifier and some stacks exceed `u64`.
    pub sess_id: String,
    /// Incremented on every change of the session (RFC 3264 §8).
    pub sess_version: u64,
    pub nettype: String,
    pub addrtype: AddrType,
    pub unicast_address: String,
}

impl Origin {
    /// An `IN` origin for our own address, username `-` as RFC 4566 allows.
    pub fn new(sess_id: u64, sess_version: u64, address: IpAddr) -> Self {
        Origin {
            username: "-".to_owned(),
            sess_id: sess_id.to_string(),
            sess_version,
            nettype: "IN".to_owned(),
            addrtype: AddrType::of(&address),
            unicast_address: address.to_string(),
        }
    }

    fn parse(value: &str, line: usize) -> Result<Self, SdpError> {
        let bad = SdpError::BadOrigin { line };
        let mut it = value.split_ascii_whitespace();
        let (Some(username), Some(sess_id), Some(version), Some(nettype), Some(addrtype)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad);
        };
        let (Some(unicast_address), None) = (it.next(), it.next()) else {
            return Err(bad);
        };
        let sess_version = version.parse::<u64>().map_err(|_| bad.clone())?;
        let addrtype = AddrType::parse(addrtype).ok_or_else(|| SdpError::BadAddrType {
            line,
            addrtype: addrtype.to_owned(),
        })?;
        Ok(Origin {
            username: username.to_owned(),
            sess_id: sess_id.to_owned(),
            sess_version,
            nettype: nettype.to_owned(),
            addrtype,
            unicast_address: unicast_address.to_owned(),
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.sess_id,
            self.sess_version,
            self.nettype,
            self.addrtype,
            self.unicast_address
        )
    }
}

/// `c=<nettype> <addrtype> <connection-address>` (RFC 4566 §5.7).
///
/// The address is text because it may be a FQDN; IPv6 addresses are written
/// without brackets (RFC 5118 §4.6). For multicast, IP4 carries
/// `<base>/<ttl>[/<number of addresses>]` and IP6 `<base>[/<number of addresses>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub nettype: String,
    pub addrtype: AddrType,
    pub address: String,
    pub ttl: Option<u8>,
    pub num_addresses: Option<u32>,
}

impl Connection {
    /// `c=IN IP4|IP6 <addr>` for a unicast address.
    pub fn from_ip(addr: IpAddr) -> Self {
        Connection {
            nettype: "IN".to_owned(),
            addrtype: AddrType::of(&addr),
            address: addr.to_string(),
            ttl: None,
            num_addresses: None,
        }
    }

    /// The address as an IP address; `None` for a FQDN. Brackets are
    /// tolerated although RFC 5118 §4.6 says not to send them.
    pub fn ip(&self) -> Option<IpAddr> {
        let a = self.address.as_str();
        let a = a
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(a);
        a.parse().ok()
    }

    /// RFC 2543 style hold (`c=IN IP4 0.0.0.0`, RFC 3264 §8.4): the peer
    /// does not want to receive media. `::` is treated the same way.
    pub fn is_hold(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }

    fn parse(value: &str, line: usize) -> Result<Self, SdpError> {
        let bad = || SdpError::BadConnection { line };
        let mut it = value.split_ascii_whitespace();
        let (Some(nettype), Some(addrtype), Some(addr), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad());
        };
        let addrtype = AddrType::parse(addrtype).ok_or_else(|| SdpError::BadAddrType {
            line,
            addrtype: addrtype.to_owned(),
        })?;
        let mut parts = addr.split('/');
        let address = parts.next().filter(|a| !a.is_empty()).ok_or_else(bad)?;
        let first = parts.next();
        let second = parts.next();
        if parts.next().is_some() {
            return Err(bad());
        }
        let (ttl, num_addresses) = match addrtype {
            AddrType::Ip4 => (
                first.map(str::parse::<u8>).transpose().map_err(|_| bad())?,
                second
                    .map(str::parse::<u32>)
                    .transpose()
                    .map_err(|_| bad())?,
            ),
            AddrType::Ip6 => {
                // IP6 multicast has no TTL (RFC 4566 §5.7).
                if second.is_some() {
                    return Err(bad());
                }
                (
                    None,
                    first
                        .map(str::parse::<u32>)
                        .transpose()
                        .map_err(|_| bad())?,
                )
            }
        };
        Ok(Connection {
            nettype: nettype.to_owned(),
            addrtype,
            address: address.to_owned(),
            ttl,
            num_addresses,
        })
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.nettype, self.addrtype, self.address)?;
        if let Some(ttl) = self.ttl {
            write!(f, "/{ttl}")?;
        }
        if let Some(n) = self.num_addresses {
            write!(f, "/{n}")?;
        }
        Ok(())
    }
}

/// `b=<bwtype>:<bandwidth>` (RFC 4566 §5.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    pub bwtype: String,
    pub bandwidth: u64,
}

impl Bandwidth {
    fn parse(value: &str, line: usize) -> Result<Self, SdpError> {
        let bad = || SdpError::BadBandwidth { line };
        let (bwtype, bw) = value.split_once(':').ok_or_else(bad)?;
        if bwtype.is_empty() || bwtype.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Bandwidth {
            bwtype: bwtype.to_owned(),
            bandwidth: bw.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bwtype, self.bandwidth)
    }
}

/// `t=<start-time> <stop-time>` with its `r=` lines kept raw (RFC 4566 §5.9, §5.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub start: u64,
    pub stop: u64,
    pub repeats: Vec<String>,
}

impl Timing {
    fn parse(value: &str, line: usize) -> Result<Self, SdpError> {
        let bad = || SdpError::BadTiming { line };
        let mut it = value.split_ascii_whitespace();
        let (Some(start), Some(stop), None) = (it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        Ok(Timing {
            start: start.parse().map_err(|_| bad())?,
            stop: stop.parse().map_err(|_| bad())?,
            repeats: Vec::new(),
        })
    }
}

impl Default for Timing {
    /// `t=0 0`: a permanent session, what SIP uses (RFC 3264 §5).
    fn default() -> Self {
        Timing {
            start: 0,
            stop: 0,
            repeats: Vec::new(),
        }
    }
}

/// `a=<name>` or `a=<name>:<value>` (RFC 4566 §5.13), kept byte-exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    pub fn flag(name: &str) -> Self {
        Attribute {
            name: name.to_owned(),
            value: None,
        }
    }

    pub fn new(name: &str, value: impl Into<String>) -> Self {
        Attribute {
            name: name.to_owned(),
            value: Some(value.into()),
        }
    }

    fn parse(value: &str, line: usize) -> Result<Self, SdpError> {
        let (name, v) = match value.split_once(':') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (value, None),
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(SdpError::BadAttribute { line });
        }
        Ok(Attribute {
            name: name.to_owned(),
            value: v,
        })
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}:{}", self.name, v),
            None => f.write_str(&self.name),
        }
    }
}

/// A line whose type letter this parser does not model; kept so that a
/// pass-through does not silently lose it. Written just before the `a=`
/// lines of its section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    pub kind: char,
    pub value: String,
}

/// Media direction attributes (RFC 4566 §6, RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    pub fn from_attribute(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn from_flags(sends: bool, receives: bool) -> Self {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other end: sendonly <-> recvonly.
    pub fn reversed(self) -> Self {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// Both constraints at once, e.g. what an answerer may say when the
    /// offer permits `self` and local policy permits `other`.
    pub fn intersect(self, other: Direction) -> Self {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `a=rtcp:<port> [<nettype> <addrtype> <connection-address>]` (RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtcp {
    pub port: u16,
    pub connection: Option<Connection>,
}

impl Rtcp {
    fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (port, rest) = match value.split_once(char::is_whitespace) {
            Some((p, r)) => (p, Some(r)),
            None => (value, None),
        };
        let connection = match rest {
            Some(r) => Some(Connection::parse(r, 0).ok()?),
            None => None,
        };
        Some(Rtcp {
            port: port.parse().ok()?,
            connection,
        })
    }
}

impl fmt::Display for Rtcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some(c) = &self.connection {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

/// One media section: `m=<media> <port>[/<number of ports>] <proto> <fmt> ...`
/// and its `i= c= b= k= a=` lines (RFC 4566 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    /// 0 means the stream is rejected/disabled (RFC 3264 §5.1, §6).
    pub port: u16,
    pub num_ports: Option<u16>,
    pub proto: String,
    /// RTP payload type numbers for RTP profiles, as written.
    pub formats: Vec<String>,
    pub information: Option<String>,
    /// Media-level `c=`; overrides the session-level one. RFC 4566 allows
    /// several for layered multicast, which a unicast softswitch never sees,
    /// so a second one is rejected rather than silently dropped.
    pub connection: Option<Connection>,
    pub bandwidths: Vec<Bandwidth>,
    pub key: Option<String>,
    pub other_lines: Vec<RawLine>,
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// A bare media section with no attributes.
    pub fn new(media: &str, port: u16, proto: &str, formats: Vec<String>) -> Self {
        MediaDescription {
            media: media.to_owned(),
            port,
            num_ports: None,
            proto: proto.to_owned(),
            formats,
            information: None,
            connection: None,
            bandwidths: Vec::new(),
            key: None,
            other_lines: Vec::new(),
            attributes: Vec::new(),
        }
    }

    fn parse(value: &str, line: usize) -> Result<Self, SdpError> {
        let bad = || SdpError::BadMedia { line };
        let mut it = value.split_ascii_whitespace();
        let (Some(media), Some(port), Some(proto)) = (it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        let formats: Vec<String> = it.map(str::to_owned).collect();
        let bad_port = || SdpError::BadPort {
            line,
            port: port.to_owned(),
        };
        let (port_str, num_str) = match port.split_once('/') {
            Some((p, n)) => (p, Some(n)),
            None => (port, None),
        };
        let port_num = port_str.parse::<u16>().map_err(|_| bad_port())?;
        let num_ports = num_str
            .map(str::parse::<u16>)
            .transpose()
            .map_err(|_| bad_port())?;
        if let Some(n) = num_ports {
            // RTP takes an even/odd port pair per stream (RFC 4566 §5.14), so
            // the last port used is port + 2*(n-1); it must still be a port.
            let step: u16 = if is_rtp_proto(proto) { 2 } else { 1 };
            let last = n
                .checked_sub(1)
                .and_then(|k| k.checked_mul(step))
                .and_then(|d| port_num.checked_add(d));
            if last.is_none() {
                return Err(SdpError::PortRange {
                    line,
                    port: port_num,
                    num_ports: n,
                });
            }
        }
        // At least one <fmt> is mandatory; a rejected stream is tolerated
        // without one because some stacks write `m=video 0 RTP/AVP`.
        if formats.is_empty() && port_num != 0 {
            return Err(bad());
        }
        Ok(MediaDescription {
            media: media.to_owned(),
            port: port_num,
            num_ports,
            proto: proto.to_owned(),
            formats,
            information: None,
            connection: None,
            bandwidths: Vec::new(),
            key: None,
            other_lines: Vec::new(),
            attributes: Vec::new(),
        })
    }

    /// First attribute with this name.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// True if a property attribute (`a=<name>`) is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// Numeric formats (RTP payload types) in `m=` order; others are skipped.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse::<u8>().ok())
    }

    /// `a=rtpmap:<pt> ...` for a payload type, falling back to the RFC 3551
    /// static assignment when there is none.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        self.attributes
            .iter()
            .filter(|a| a.name == "rtpmap")
            .filter_map(|a| a.value.as_deref().and_then(RtpMap::parse))
            .find(|m| m.payload_type == pt)
            .or_else(|| static_payload_type(pt))
    }

    /// Parameters of `a=fmtp:<pt> <parameters>`, byte-exact.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name == "fmtp")
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (p, params) = v.split_once(' ').unwrap_or((v, ""));
                (p.parse::<u8>().ok() == Some(pt)).then_some(params)
            })
    }

    /// The codec behind a payload type: rtpmap (or static table) plus fmtp.
    pub fn codec(&self, pt: u8) -> Option<CodecSpec> {
        let map = self.rtpmap(pt)?;
        Some(CodecSpec::from_rtpmap(
            &map,
            self.fmtp(pt).map(str::to_owned),
        ))
    }

    /// All codecs of this stream in `m=` (preference) order.
    pub fn codecs(&self) -> Vec<CodecSpec> {
        self.payload_types()
            .filter_map(|pt| self.codec(pt))
            .collect()
    }

    /// Media-level direction attribute, if any (see
    /// [`SessionDescription::direction_of`] for the effective one).
    pub fn direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .rev()
            .filter(|a| a.value.is_none())
            .find_map(|a| Direction::from_attribute(&a.name))
    }

    /// Replaces any direction attribute with `dir`.
    pub fn set_direction(&mut self, dir: Direction) {
        self.attributes
            .retain(|a| !(a.value.is_none() && Direction::from_attribute(&a.name).is_some()));
        self.attributes.push(Attribute::flag(dir.as_str()));
    }

    /// `a=ptime` in milliseconds (RFC 4566 §6).
    pub fn ptime(&self) -> Option<u32> {
        self.attribute("ptime")
            .and_then(|a| a.value.as_deref())
            .and_then(|v| v.trim().parse().ok())
    }

    /// `a=rtcp` (RFC 3605); `None` if absent or unparsable.
    pub fn rtcp(&self) -> Option<Rtcp> {
        self.attribute("rtcp")
            .and_then(|a| a.value.as_deref())
            .and_then(Rtcp::parse)
    }

    /// `a=rtcp-mux` (RFC 5761).
    pub fn rtcp_mux(&self) -> bool {
        self.has_attribute("rtcp-mux")
    }

    /// Points the stream at a new RTP endpoint (what a media relay does for
    /// each m-line). Sets a media-level `c=` and the port, and drops a stale
    /// `a=rtcp` since it named the old endpoint; RTCP then defaults to
    /// port + 1 (RFC 3550 §11) unless [`Self::set_rtcp`] says otherwise.
    pub fn set_connection(&mut self, address: IpAddr, port: u16) {
        self.connection = Some(Connection::from_ip(address));
        self.port = port;
        self.attributes.retain(|a| a.name != "rtcp");
    }

    /// Replaces `a=rtcp` (`None` removes it).
    pub fn set_rtcp(&mut self, rtcp: Option<Rtcp>) {
        self.attributes.retain(|a| a.name != "rtcp");
        if let Some(r) = rtcp {
            self.attributes.push(Attribute::new("rtcp", r.to_string()));
        }
    }

    /// Rejects the stream (port 0, RFC 3264 §5.1/§6), leaving the m-line in
    /// place so that the m-line count and order stay intact.
    pub fn reject(&mut self) {
        self.port = 0;
        self.num_ports = None;
    }

    /// Keeps only the formats for which `keep` returns true, together with
    /// their `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines.
    pub fn retain_formats(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let mut dropped = Vec::new();
        self.formats.retain(|f| {
            let k = keep(f);
            if !k {
                dropped.push(f.clone());
            }
            k
        });
        self.attributes.retain(|a| {
            if !matches!(a.name.as_str(), "rtpmap" | "fmtp" | "rtcp-fb") {
                return true;
            }
            let fmt = a
                .value
                .as_deref()
                .and_then(|v| v.split_ascii_whitespace().next())
                .unwrap_or("");
            !dropped.iter().any(|d| d == fmt)
        });
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        write!(out, "m={} {}", self.media, self.port)?;
        if let Some(n) = self.num_ports {
            write!(out, "/{n}")?;
        }
        write!(out, " {}", self.proto)?;
        for f in &self.formats {
            write!(out, " {f}")?;
        }
        out.push_str("\r\n");
        if let Some(i) = &self.information {
            write!(out, "i={i}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(out, "c={c}\r\n")?;
        }
        for b in &self.bandwidths {
            write!(out, "b={b}\r\n")?;
        }
        if let Some(k) = &self.key {
            write!(out, "k={k}\r\n")?;
        }
        for l in &self.other_lines {
            write!(out, "{}={}\r\n", l.kind, l.value)?;
        }
        for a in &self.attributes {
            write!(out, "a={a}\r\n")?;
        }
        Ok(())
    }
}

/// True for the RTP profiles (`RTP/AVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`, ...).
pub(crate) fn is_rtp_proto(proto: &str) -> bool {
    proto.split('/').any(|p| p.eq_ignore_ascii_case("RTP"))
}

/// A complete session description (RFC 4566 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `v=`; only 0 exists.
    pub version: u8,
    pub origin: Origin,
    pub session_name: String,
    pub information: Option<String>,
    pub uri: Option<String>,
    /// `e=` lines; RFC 4566 allows several.
    pub emails: Vec<String>,
    /// `p=` lines; RFC 4566 allows several.
    pub phones: Vec<String>,
    pub connection: Option<Connection>,
    pub bandwidths: Vec<Bandwidth>,
    /// `t=` lines with their `r=` lines. A missing `t=` parses as `t=0 0`;
    /// if emptied, `t=0 0` is still written because the line is mandatory.
    pub times: Vec<Timing>,
    /// `z=` kept raw.
    pub time_zones: Option<String>,
    pub key: Option<String>,
    pub other_lines: Vec<RawLine>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// A minimal description: `v=0`, the origin, `s=`, `t=0 0`, no media.
    pub fn new(origin: Origin, session_name: &str) -> Self {
        SessionDescription {
            version: 0,
            origin,
            session_name: session_name.to_owned(),
            information: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection: None,
            bandwidths: Vec::new(),
            times: vec![Timing::default()],
            time_zones: None,
            key: None,
            other_lines: Vec::new(),
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// Parses a session description. Accepts CRLF and bare LF and skips
    /// blank lines; unknown type letters are kept as [`RawLine`]s.
    pub fn parse(input: &[u8]) -> Result<Self, SdpError> {
        let text = std::str::from_utf8(input).map_err(|_| SdpError::NotUtf8)?;
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i.saturating_add(1), l.strip_suffix('\r').unwrap_or(l)))
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| split_line(n, l));

        match lines.next() {
            None => return Err(SdpError::Empty),
            Some(Err(e)) => return Err(e),
            Some(Ok((_, 'v', v))) => {
                if v.trim() != "0" {
                    return Err(SdpError::UnsupportedVersion {
                        version: v.to_owned(),
                    });
                }
            }
            Some(Ok(_)) => return Err(SdpError::MissingVersion),
        }

        let mut origin = None;
        let mut session_name = None;
        let mut sd = SessionDescription::new(
            Origin::new(0, 0, IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            "",
        );
        sd.times.clear();
        let mut current: Option<MediaDescription> = None;

        for item in lines {
            let (line, kind, value) = item?;
            if kind == 'm' {
                if let Some(m) = current.take() {
                    sd.media.push(m);
                }
                current = Some(MediaDescription::parse(value, line)?);
                continue;
            }
            if let Some(m) = current.as_mut() {
                match kind {
                    'i' => set_once(&mut m.information, value.to_owned(), line, kind)?,
                    'c' => set_once(
                        &mut m.connection,
                        Connection::parse(value, line)?,
                        line,
                        kind,
                    )?,
                    'b' => m.bandwidths.push(Bandwidth::parse(value, line)?),
                    'k' => set_once(&mut m.key, value.to_owned(), line, kind)?,
                    'a' => m.attributes.push(Attribute::parse(value, line)?),
                    'v' | 'o' | 's' | 'u' | 'e' | 'p' | 't' | 'r' | 'z' => {
                        return Err(SdpError::MisplacedLine { line, field: kind })
                    }
                    _ => m.other_lines.push(RawLine {
                        kind,
                        value: value.to_owned(),
                    }),
                }
                continue;
            }
            match kind {
                'v' => return Err(SdpError::DuplicateLine { line, field: kind }),
                'o' => set_once(&mut origin, Origin::parse(value, line)?, line, kind)?,
                's' => set_once(&mut session_name, value.to_owned(), line, kind)?,
                'i' => set_once(&mut sd.information, value.to_owned(), line, kind)?,
                'u' => set_once(&mut sd.uri, value.to_owned(), line, kind)?,
                'e' => sd.emails.push(value.to_owned()),
                'p' => sd.phones.push(value.to_owned()),
                'c' => set_once(
                    &mut sd.connection,
                    Connection::parse(value, line)?,
                    line,
                    kind,
                )?,
                'b' => sd.bandwidths.push(Bandwidth::parse(value, line)?),
                't' => sd.times.push(Timing::parse(value, line)?),
                'r' => sd
                    .times
                    .last_mut()
                    .ok_or(SdpError::BadTiming { line })?
                    .repeats
                    .push(value.to_owned()),
                'z' => set_once(&mut sd.time_zones, value.to_owned(), line, kind)?,
                'k' => set_once(&mut sd.key, value.to_owned(), line, kind)?,
                'a' => sd.attributes.push(Attribute::parse(value, line)?),
                _ => sd.other_lines.push(RawLine {
                    kind,
                    value: value.to_owned(),
                }),
            }
        }
        if let Some(m) = current {
            sd.media.push(m);
        }
        sd.origin = origin.ok_or(SdpError::MissingLine { field: 'o' })?;
        sd.session_name = session_name.ok_or(SdpError::MissingLine { field: 's' })?;
        // t= is mandatory but some stacks omit it; its absence means the
        // same as `t=0 0`, which is what gets written back.
        if sd.times.is_empty() {
            sd.times.push(Timing::default());
        }
        Ok(sd)
    }

    /// The description as bytes, CRLF line ends.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.to_string())
    }

    /// Replaces the origin (a B2BUA uses its own on each leg).
    pub fn set_origin(&mut self, origin: Origin) {
        self.origin = origin;
    }

    /// Increments `<sess-version>`, to be called when a re-offer differs
    /// from the previous one (RFC 3264 §8). Wraps rather than panics; a
    /// 64-bit counter cannot realistically get there.
    pub fn bump_version(&mut self) {
        self.origin.sess_version = self.origin.sess_version.wrapping_add(1);
    }

    /// Session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .rev()
            .filter(|a| a.value.is_none())
            .find_map(|a| Direction::from_attribute(&a.name))
    }

    /// Effective direction of a stream: media level overrides session level,
    /// default sendrecv (RFC 3264 §5.1).
    pub fn direction_of(&self, media: &MediaDescription) -> Direction {
        media.direction().or(self.direction()).unwrap_or_default()
    }

    /// Effective `c=` of a stream: media level, else session level.
    pub fn connection_of<'a>(&'a self, media: &'a MediaDescription) -> Option<&'a Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }
    /// Where the first usable audio stream says to send media: its (or the
    /// session's) connection address and its port. `None` when it is
    /// rejected, on hold the RFC 2543 way (c=0.0.0.0), or absent.
    pub fn audio_destination(&self) -> Option<SocketAddr> {
        let m = self
            .media
            .iter()
            .find(|m| m.media == "audio" && m.port != 0)?;
        let ip = self.connection_of(m)?.ip()?;
        (!ip.is_unspecified()).then(|| SocketAddr::new(ip, m.port))
    }

    /// Points the first usable audio stream at `address`:`port` (a media
    /// relay anchoring the call) and rejects any further audio stream, which
    /// the relay does not carry. The session-level `c=` follows, so no stale
    /// address is left for a peer to fall back to. Returns false when there
    /// is no usable audio stream.
    pub fn anchor_audio(&mut self, address: IpAddr, port: u16) -> bool {
        let mut anchored = false;
        for m in self
            .media
            .iter_mut()
            .filter(|m| m.media == "audio" && m.port != 0)
        {
            if anchored {
                m.reject();
            } else {
                m.set_connection(address, port);
                anchored = true;
            }
        }
        if anchored {
            self.connection = Some(Connection::from_ip(address));
        }
        anchored
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(512);
        write!(out, "v={}\r\n", self.version)?;
        write!(out, "o={}\r\n", self.origin)?;
        write!(out, "s={}\r\n", self.session_name)?;
        if let Some(i) = &self.information {
            write!(out, "i={i}\r\n")?;
        }
        if let Some(u) = &self.uri {
            write!(out, "u={u}\r\n")?;
        }
        for e in &self.emails {
            write!(out, "e={e}\r\n")?;
        }
        for p in &self.phones {
            write!(out, "p={p}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(out, "c={c}\r\n")?;
        }
        for b in &self.bandwidths {
            write!(out, "b={b}\r\n")?;
        }
        if self.times.is_empty() {
            out.push_str("t=0 0\r\n");
        }
        for t in &self.times {
            write!(out, "t={} {}\r\n", t.start, t.stop)?;
            for r in &t.repeats {
                write!(out, "r={r}\r\n")?;
            }
        }
        if let Some(z) = &self.time_zones {
            write!(out, "z={z}\r\n")?;
        }
        if let Some(k) = &self.key {
            write!(out, "k={k}\r\n")?;
        }
        for l in &self.other_lines {
            write!(out, "{}={}\r\n", l.kind, l.value)?;
        }
        for a in &self.attributes {
            write!(out, "a={a}\r\n")?;
        }
        for m in &self.media {
            m.write(&mut out)?;
        }
        f.write_str(&out)
    }
}

/// Splits `<type>=<value>`; the type is a single lower-case letter.
fn split_line(line: usize, text: &str) -> Result<(usize, char, &str), SdpError> {
    let (kind, value) = text
        .split_once('=')
        .ok_or(SdpError::MalformedLine { line })?;
    let mut chars = kind.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_lowercase() => Ok((line, c, value)),
        _ => Err(SdpError::MalformedLine { line }),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, line: usize, field: char) -> Result<(), SdpError> {
    if slot.is_some() {
        return Err(SdpError::DuplicateLine { line, field });
    }
    *slot = Some(value);
    Ok(())
}
