//! SDP (RFC 4566) and the offer/answer model (RFC 3264).
//!
//! A session description is a list of `<type>=<value>` lines (RFC 4566 §5),
//! one session-level section followed by zero or more media sections:
//!
//! ```text
//! v=0                                              protocol version (§5.1)
//! o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
//! s=<session name>                                 (§5.3)
//! i=* u=* e=* p=*                                  optional, in this order
//! c=<nettype> <addrtype> <connection-address>      (§5.7), e.g. c=IN IP4 192.0.2.1
//! b=<bwtype>:<bandwidth>                           zero or more (§5.8)
//! t=<start-time> <stop-time>  r=*                  one or more (§5.9, §5.10)
//! z=* k=* a=*                                      (§5.11 - §5.13)
//! m=<media> <port>[/<number of ports>] <proto> <fmt> ...   (§5.14)
//!   i=* c=* b=* k=* a=*                            media-level lines
//! ```
//!
//! [`SessionDescription::parse`] accepts CRLF and bare LF line ends and keeps
//! attributes in order and byte-exact (`a=fmtp` in particular must survive a
//! B2BUA unchanged); [`SessionDescription::to_bytes`] always writes CRLF.
//! SDP arrives from the network, so parsing never panics: every malformed
//! line is an [`SdpError`].
//!
//! Codec knowledge (static payload types of RFC 3551, AMR/AMR-WB format
//! parameters of RFC 4867, opus, telephone-event) lives in [`codec`], and the
//! RFC 3264 offer/answer engine in [`negotiate`].

pub mod codec;
pub mod negotiate;
mod session;

#[cfg(test)]
mod tests;

pub use codec::{CodecSpec, RtpMap};
pub use negotiate::{
    add_amr_mode_twins, answer, check_answer, filter_offer, offer, LocalCapabilities, LocalStream,
    Negotiated, NegotiatedStream, NegotiationError,
};
pub use session::{
    AddrType, Attribute, Bandwidth, Connection, Direction, MediaDescription, Origin, RawLine, Rtcp,
    SessionDescription, Timing,
};

/// Why a session description could not be parsed.
///
/// `line` fields are 1-based line numbers in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("empty session description")]
    Empty,
    #[error("session description is not valid UTF-8")]
    NotUtf8,
    #[error("line {line}: not of the form <type>=<value>")]
    MalformedLine { line: usize },
    #[error("first line must be v= (RFC 4566 §5)")]
    MissingVersion,
    #[error("unsupported protocol version v={version}")]
    UnsupportedVersion { version: String },
    #[error("missing mandatory {field}= line")]
    MissingLine { field: char },
    #[error("line {line}: duplicate {field}= line")]
    DuplicateLine { line: usize, field: char },
    #[error("line {line}: {field}= line not allowed here")]
    MisplacedLine { line: usize, field: char },
    #[error("line {line}: malformed o= line")]
    BadOrigin { line: usize },
    #[error("line {line}: malformed c= line")]
    BadConnection { line: usize },
    #[error("line {line}: unknown address type {addrtype:?}")]
    BadAddrType { line: usize, addrtype: String },
    #[error("line {line}: malformed b= line")]
    BadBandwidth { line: usize },
    #[error("line {line}: malformed t= or r= line")]
    BadTiming { line: usize },
    #[error("line {line}: malformed a= line")]
    BadAttribute { line: usize },
    #[error("line {line}: malformed m= line")]
    BadMedia { line: usize },
    #[error("line {line}: invalid port {port:?}")]
    BadPort { line: usize, port: String },
    #[error("line {line}: port {port} with {num_ports} ports runs past 65535")]
    PortRange {
        line: usize,
        port: u16,
        num_ports: u16,
    },
}
