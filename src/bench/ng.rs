//! rtpengine's ng control protocol: one UDP datagram per message,
//! `<cookie> <bencoded dictionary>`, the reply carrying the request's
//! cookie. A client retransmits with the same cookie and the server answers
//! a repeated cookie from its cache, so a lost reply does not open a call
//! twice.
//!
//! ```text
//!  offer  {call-id, from-tag, sdp: caller's}          ─▶ {result: ok, sdp: for the callee}
//!  answer {call-id, from-tag, to-tag, sdp: callee's}  ─▶ {result: ok, sdp: for the caller}
//!  delete {call-id, from-tag}                         ─▶ {result: ok}
//!  ping                                               ─▶ {result: pong}
//! ```
//!
//! Also here: the few SDP helpers both sides of the benchmark need (build
//! an offer for one codec, find the media address, point an SDP at the
//! relay).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::bencode::{DecodeError, Value};

/// How long a client waits for a reply before sending again.
const REPLY_TIMEOUT: Duration = Duration::from_millis(1000);

/// Attempts per request (the first send plus retransmissions).
const ATTEMPTS: u32 = 3;

/// Largest ng datagram (an SDP with many codecs fits easily).
pub const MAX_DATAGRAM: usize = 65_535;

#[derive(Debug)]
pub enum NgError {
    Io(io::Error),
    /// No space between cookie and dictionary, or the dictionary is bad.
    Malformed(&'static str),
    Bencode(DecodeError),
    /// The server answered `result: error` with this reason.
    Refused(String),
    /// No reply after every attempt.
    Timeout,
}

impl fmt::Display for NgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NgError::Io(e) => write!(f, "ng socket: {e}"),
            NgError::Malformed(m) => write!(f, "ng message: {m}"),
            NgError::Bencode(e) => write!(f, "ng message: {e}"),
            NgError::Refused(r) => write!(f, "ng request refused: {r}"),
            NgError::Timeout => write!(f, "ng request: no reply"),
        }
    }
}

impl std::error::Error for NgError {}

impl From<io::Error> for NgError {
    fn from(e: io::Error) -> Self {
        NgError::Io(e)
    }
}

impl From<DecodeError> for NgError {
    fn from(e: DecodeError) -> Self {
        NgError::Bencode(e)
    }
}

/// Splits a datagram into its cookie and its dictionary.
pub fn parse_message(datagram: &[u8]) -> Result<(&[u8], Value), NgError> {
    let space = datagram
        .iter()
        .position(|&b| b == b' ')
        .ok_or(NgError::Malformed("no cookie"))?;
    let (cookie, rest) = datagram.split_at(space);
    if cookie.is_empty() {
        return Err(NgError::Malformed("empty cookie"));
    }
    let body = rest.get(1..).ok_or(NgError::Malformed("no body"))?;
    let v = Value::decode(body)?;
    if !matches!(v, Value::Dict(_)) {
        return Err(NgError::Malformed("body is not a dictionary"));
    }
    Ok((cookie, v))
}

/// `<cookie> <bencode(v)>`.
pub fn frame(cookie: &[u8], v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 64);
    out.extend_from_slice(cookie);
    out.push(b' ');
    v.encode_into(&mut out);
    out
}

/// The error reply rtpengine sends.
pub fn error_reply(reason: &str) -> Value {
    Value::dict([
        ("result", Value::str("error")),
        ("error-reason", Value::str(reason)),
    ])
}

/// A blocking ng client on its own socket; one request at a time.
#[derive(Debug)]
pub struct NgClient {
    sock: UdpSocket,
    server: SocketAddr,
}

/// Cookies are unique per process, not per client: a server caches replies
/// by cookie, so a second client to the same server must not reuse the
/// first one's (it would get the cached reply to another request).
static NEXT_COOKIE: AtomicU64 = AtomicU64::new(1);

impl NgClient {
    pub fn new(server: SocketAddr) -> Result<NgClient, NgError> {
        let bind: SocketAddr = match server.ip() {
            IpAddr::V4(_) => (IpAddr::from([127, 0, 0, 1]), 0).into(),
            IpAddr::V6(_) => (IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), 0).into(),
        };
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(NgClient { sock, server })
    }

    /// Sends `v` and waits for the reply with its cookie; `result: error`
    /// becomes [`NgError::Refused`].
    pub fn request(&mut self, v: &Value) -> Result<Value, NgError> {
        let n = NEXT_COOKIE.fetch_add(1, Ordering::Relaxed);
        let cookie = format!("{:x}_{n}", std::process::id());
        let msg = frame(cookie.as_bytes(), v);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        for _ in 0..ATTEMPTS {
            self.sock.send_to(&msg, self.server)?;
            loop {
                let n = match self.sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::TimedOut =>
                    {
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                let Some(datagram) = buf.get(..n) else {
                    break;
                };
                // A late reply to an earlier request is skipped.
                let Ok((c, reply)) = parse_message(datagram) else {
                    continue;
                };
                if c != cookie.as_bytes() {
                    continue;
                }
                if reply.get_str("result") == Some("error") {
                    let reason = reply.get_str("error-reason").unwrap_or("(no reason given)");
                    return Err(NgError::Refused(reason.to_owned()));
                }
                return Ok(reply);
            }
        }
        Err(NgError::Timeout)
    }

    pub fn ping(&mut self) -> Result<(), NgError> {
        let r = self.request(&Value::dict([("command", Value::str("ping"))]))?;
        match r.get_str("result") {
            Some("pong") => Ok(()),
            _ => Err(NgError::Malformed("ping not answered with pong")),
        }
    }

    /// Returns the SDP for the callee.
    pub fn offer(&mut self, call_id: &str, from_tag: &str, sdp: &str) -> Result<String, NgError> {
        let r = self.request(&Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str(call_id)),
            ("from-tag", Value::str(from_tag)),
            ("sdp", Value::str(sdp)),
        ]))?;
        sdp_of(&r)
    }

    /// Returns the SDP for the caller.
    pub fn answer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
    ) -> Result<String, NgError> {
        let r = self.request(&Value::dict([
            ("command", Value::str("answer")),
            ("call-id", Value::str(call_id)),
            ("from-tag", Value::str(from_tag)),
            ("to-tag", Value::str(to_tag)),
            ("sdp", Value::str(sdp)),
        ]))?;
        sdp_of(&r)
    }

    pub fn delete(&mut self, call_id: &str, from_tag: &str) -> Result<(), NgError> {
        self.request(&Value::dict([
            ("command", Value::str("delete")),
            ("call-id", Value::str(call_id)),
            ("from-tag", Value::str(from_tag)),
        ]))
        .map(drop)
    }
}

fn sdp_of(reply: &Value) -> Result<String, NgError> {
    reply
        .get_str("sdp")
        .map(str::to_owned)
        .ok_or(NgError::Malformed("reply without sdp"))
}

/// A codec of the RTP workload: what goes into the SDP and how big and
/// how far apart (in its clock) its 20 ms packets are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    pub name: &'static str,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// `a=rtpmap` encoding parameters (channels), if any.
    pub channels: Option<u8>,
    pub fmtp: Option<&'static str>,
    /// RTP payload bytes of one 20 ms packet.
    pub payload_len: usize,
}

impl Codec {
    /// Timestamp advance of one 20 ms packet.
    pub fn ts_step(&self) -> u32 {
        self.clock_rate / 50
    }
}

/// G.711 A-law: 160 samples of 8 bits.
pub const PCMA: Codec = Codec {
    name: "PCMA",
    payload_type: 8,
    clock_rate: 8000,
    channels: None,
    fmtp: None,
    payload_len: 160,
};

/// AMR 12.2 in bandwidth-efficient mode: 244 bits of speech plus the
/// 10-bit payload header and TOC, 32 bytes.
pub const AMR: Codec = Codec {
    name: "AMR",
    payload_type: 96,
    clock_rate: 8000,
    channels: None,
    fmtp: Some("mode-set=7"),
    payload_len: 32,
};

/// Opus wideband voice at about 28 kb/s: 70 bytes per 20 ms.
pub const OPUS: Codec = Codec {
    name: "opus",
    payload_type: 111,
    clock_rate: 48000,
    channels: Some(2),
    fmtp: Some("useinbandfec=1"),
    payload_len: 70,
};

/// The mix of the workload, call `i` using `CODECS[i % 3]`.
pub const CODECS: [Codec; 3] = [PCMA, AMR, OPUS];

/// An SDP offering (or answering) `codec` at `addr`, sendrecv.
pub fn sdp_for(addr: SocketAddr, codec: &Codec, session: u64) -> String {
    let ipv = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let ip = addr.ip();
    let mut s = format!(
        "v=0\r\no=bench {session} 1 IN {ipv} {ip}\r\ns=-\r\nc=IN {ipv} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP {}\r\na=rtpmap:{} {}/{}",
        addr.port(),
        codec.payload_type,
        codec.payload_type,
        codec.name,
        codec.clock_rate
    );
    if let Some(ch) = codec.channels {
        s.push_str(&format!("/{ch}"));
    }
    s.push_str("\r\n");
    if let Some(f) = codec.fmtp {
        s.push_str(&format!("a=fmtp:{} {f}\r\n", codec.payload_type));
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    s
}

/// The RTP address of the first audio stream: its `m=` port and the
/// media-level `c=` address, else the session-level one.
pub fn media_address(sdp: &str) -> Option<SocketAddr> {
    let mut session_ip = None;
    let mut media: Option<(u16, Option<IpAddr>)> = None;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("m=") {
            if media.is_some() {
                break;
            }
            let mut f = rest.split_whitespace();
            if f.next() == Some("audio") {
                media = Some((f.next()?.parse().ok()?, None));
            }
        } else if let Some(rest) = line.strip_prefix("c=") {
            let ip: IpAddr = rest.split_whitespace().nth(2)?.parse().ok()?;
            match media.as_mut() {
                Some((_, c)) => *c = Some(ip),
                None => session_ip = Some(ip),
            }
        }
    }
    let (port, ip) = media?;
    Some(SocketAddr::new(ip.or(session_ip)?, port))
}

/// The first `a=rtpmap:` of the SDP: payload type, encoding name and
/// clock rate.
pub fn first_rtpmap(sdp: &str) -> Option<(u8, String, u32)> {
    let line = sdp
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("a=rtpmap:"))?;
    let (pt, rest) = line.split_once(' ')?;
    let mut parts = rest.split('/');
    let name = parts.next()?.to_owned();
    let rate = parts.next()?.parse().ok()?;
    Some((pt.parse().ok()?, name, rate))
}

/// `sdp` pointed at `addr`: every `c=` line names its IP and the first
/// audio `m=` line its port; `a=rtcp:` lines (which named the endpoint's
/// RTCP port) are dropped, so RTCP is taken to be at port + 1.
pub fn rewrite_sdp(sdp: &str, addr: SocketAddr) -> String {
    let ipv = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = String::with_capacity(sdp.len() + 16);
    let mut audio_done = false;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("c=") {
            out.push_str(&format!("c=IN {ipv} {}", addr.ip()));
        } else if let Some(rest) = line.strip_prefix("m=audio ").filter(|_| !audio_done) {
            audio_done = true;
            let tail = rest.split_once(' ').map_or("", |(_, t)| t);
            out.push_str(&format!("m=audio {} {tail}", addr.port()));
        } else if line.starts_with("a=rtcp:") {
            continue;
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_parses_messages() {
        let v = Value::dict([("command", Value::str("ping"))]);
        let wire = frame(b"5_1", &v);
        assert_eq!(wire, b"5_1 d7:command4:pinge".to_vec());
        let (cookie, back) = parse_message(&wire).unwrap();
        assert_eq!((cookie, back), (&b"5_1"[..], v));
        assert!(parse_message(b"d7:command4:pinge").is_err());
        assert!(parse_message(b" d7:command4:pinge").is_err());
        assert!(parse_message(b"c l4:pinge").is_err());
    }

    #[test]
    fn sdp_round_trip_through_a_relay() {
        let caller: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let relay: SocketAddr = "127.0.0.2:30010".parse().unwrap();
        let offer = sdp_for(caller, &OPUS, 7);
        assert!(offer.contains("a=rtpmap:111 opus/48000/2\r\n"), "{offer}");
        assert_eq!(media_address(&offer), Some(caller));
        assert_eq!(first_rtpmap(&offer), Some((111, "opus".to_owned(), 48000)));
        let rewritten = rewrite_sdp(&(offer + "a=rtcp:40001\r\n"), relay);
        assert_eq!(media_address(&rewritten), Some(relay));
        assert!(
            rewritten.contains("m=audio 30010 RTP/AVP 111\r\n"),
            "{rewritten}"
        );
        assert!(!rewritten.contains("a=rtcp:"), "{rewritten}");
        // A media-level c= wins over the session's.
        let sdp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/AVP 8\r\nc=IN IP4 127.0.0.9\r\n";
        assert_eq!(media_address(sdp), "127.0.0.9:5004".parse().ok());
        assert_eq!(media_address("v=0\r\nm=audio 5004 RTP/AVP 8\r\n"), None);
    }
}
