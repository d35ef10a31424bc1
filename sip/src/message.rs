//! SIP messages (RFC 3261 §7, §20, §25): requests, responses, headers.
//!
//! ```text
//! Request-Line   = Method SP Request-URI SP SIP-Version CRLF
//! Status-Line    = SIP-Version SP Status-Code SP Reason-Phrase CRLF
//! message-header = field-name HCOLON field-value CRLF   ; folding: CRLF 1*WSP
//! message        = start-line *message-header CRLF [ message-body ]
//! ```
//!
//! A parsed message keeps every header line as it arrived (unfolded, value
//! trimmed) so a B2BUA can copy what it does not understand, and the fields
//! every layer needs (top Via, From/To tags, Call-ID, CSeq, Max-Forwards) are
//! validated once at parse time and kept typed in [`Core`].

mod header;
mod parse;
mod uri;

pub use header::{CSeq, NameAddr, Params, Via};
pub use parse::{
    frame_stream, parse_datagram, parse_message, ParseError, ParseErrorKind, PartialRequest,
    StreamFrame,
};
pub use uri::{Host, SipUri, Uri};

use crate::bytestr::ByteStr;
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Request methods (RFC 3261 §7.1 and the extensions a softswitch meets).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Prack,
    Update,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token; compared case-sensitively as §7.1 says.
    Other(ByteStr),
}

impl Method {
    pub fn parse(token: ByteStr) -> Method {
        match token.as_str() {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            _ => Method::Other(token),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s.as_str(),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! header_names {
    ($( $variant:ident => $canon:literal $(, $compact:literal)? ; )*) => {
        /// Header field names. Known names are matched case-insensitively, in
        /// long and compact form (RFC 3261 §7.3.3, IANA SIP parameters).
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $( $variant, )*
            Other(ByteStr),
        }

        impl HeaderName {
            pub fn parse(name: ByteStr) -> HeaderName {
                let s = name.as_str();
                $(
                    if s.eq_ignore_ascii_case($canon) $(|| s.eq_ignore_ascii_case($compact))? {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other(name)
            }

            /// The long form; messages we write always use it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other(s) => s.as_str(),
                }
            }
        }
    };
}

header_names! {
    Via => "Via", "v";
    From => "From", "f";
    To => "To", "t";
    CallId => "Call-ID", "i";
    CSeq => "CSeq";
    MaxForwards => "Max-Forwards";
    ContentLength => "Content-Length", "l";
    ContentType => "Content-Type", "c";
    ContentEncoding => "Content-Encoding", "e";
    ContentDisposition => "Content-Disposition";
    Contact => "Contact", "m";
    Route => "Route";
    RecordRoute => "Record-Route";
    Require => "Require";
    ProxyRequire => "Proxy-Require";
    Supported => "Supported", "k";
    Unsupported => "Unsupported";
    Allow => "Allow";
    Accept => "Accept";
    Expires => "Expires";
    Authorization => "Authorization";
    ProxyAuthorization => "Proxy-Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthenticate => "Proxy-Authenticate";
    UserAgent => "User-Agent";
    Server => "Server";
    Subject => "Subject", "s";
    Event => "Event", "o";
    ReferTo => "Refer-To", "r";
    RetryAfter => "Retry-After";
    Date => "Date";
    Timestamp => "Timestamp";
    Warning => "Warning";
    Reason => "Reason";
    SessionExpires => "Session-Expires", "x";
    MinExpires => "Min-Expires";
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl HeaderName {
    /// Headers whose value may be a comma-separated list (RFC 3261 §7.3.1);
    /// for these one line may carry several values.
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Supported
                | HeaderName::Unsupported
                | HeaderName::Allow
                | HeaderName::Accept
        )
    }
}

/// One header line: the name as recognised, the value unfolded and trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: ByteStr,
}

/// Header lines in arrival order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Self {
        Self(Vec::with_capacity(12))
    }

    pub fn push(&mut self, name: HeaderName, value: impl Into<ByteStr>) {
        self.0.push(Header {
            name,
            value: value.into(),
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first line with this name.
    pub fn get(&self, name: &HeaderName) -> Option<&ByteStr> {
        self.0.iter().find(|h| &h.name == name).map(|h| &h.value)
    }

    /// Every line with this name.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a ByteStr> + 'a {
        self.0
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| &h.value)
    }

    /// Every value with this name, lines split at top-level commas.
    pub fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = ByteStr> + 'a {
        self.get_all(name).flat_map(|line| {
            header::split_list(line.as_str())
                .into_iter()
                .map(|v| line.slice_ref(v))
        })
    }

    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }

    /// Replaces every line of `name` with one line (appended if absent).
    pub fn set(&mut self, name: HeaderName, value: impl Into<ByteStr>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(first) => {
                let mut idx = 0;
                self.0.retain(|h| {
                    let keep = h.name != name || idx == first;
                    idx += 1;
                    keep
                });
                if let Some(h) = self.0.get_mut(first) {
                    h.value = value;
                }
            }
            None => self.push(name, value),
        }
    }

    /// Inserts a line before every other line (used for Via).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<ByteStr>) {
        self.0.insert(
            0,
            Header {
                name,
                value: value.into(),
            },
        );
    }
}

/// The fields every layer needs, validated when the message was parsed (or
/// built), so the transaction and dialog layers never re-parse them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Core {
    pub via: Via,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: ByteStr,
    pub cseq: CSeq,
    pub max_forwards: Option<u8>,
}

impl Core {
    /// RFC 3261 §17.1.3/§17.2.3: the branch if it carries the magic cookie
    /// (and something after it), otherwise `None` (RFC 2543 matching applies).
    pub fn rfc3261_branch(&self) -> Option<&str> {
        self.via
            .branch()
            .filter(|b| b.len() > 7 && b.starts_with("z9hG4bK"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
    pub core: Core,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: ByteStr,
    pub headers: Headers,
    pub body: Bytes,
    pub core: Core,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn core(&self) -> &Core {
        match self {
            Message::Request(r) => &r.core,
            Message::Response(r) => &r.core,
        }
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

fn write_headers_and_body(out: &mut BytesMut, headers: &Headers, body: &Bytes) {
    for h in headers.iter() {
        if h.name == HeaderName::ContentLength {
            continue;
        }
        out.put_slice(h.name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(h.value.as_bytes());
        out.put_slice(b"\r\n");
    }
    // Content-Length is always written from the body we actually send, so a
    // message we forward can never carry a framing lie (RFC 3261 §18.3).
    out.put_slice(b"Content-Length: ");
    out.put_slice(itoa_u64(body.len() as u64).as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
}

fn head_capacity(headers: &Headers, body: &Bytes) -> usize {
    headers
        .iter()
        .map(|h| h.name.as_str().len() + h.value.len() + 4)
        .sum::<usize>()
        + body.len()
        + 96
}

fn itoa_u64(v: u64) -> String {
    v.to_string()
}

impl Request {
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(head_capacity(&self.headers, &self.body));
        out.put_slice(self.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.uri.to_string().as_bytes());
        out.put_slice(b" SIP/2.0\r\n");
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out.freeze()
    }

    pub fn header(&self, name: &HeaderName) -> Option<&ByteStr> {
        self.headers.get(name)
    }

    /// The Content-Type media type (without parameters), lower-cased.
    pub fn content_type(&self) -> Option<String> {
        content_type(&self.headers)
    }
}

impl Response {
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(head_capacity(&self.headers, &self.body));
        out.put_slice(b"SIP/2.0 ");
        out.put_slice(itoa_u64(u64::from(self.status)).as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.reason.as_bytes());
        out.put_slice(b"\r\n");
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out.freeze()
    }

    pub fn header(&self, name: &HeaderName) -> Option<&ByteStr> {
        self.headers.get(name)
    }

    pub fn content_type(&self) -> Option<String> {
        content_type(&self.headers)
    }

    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn content_type(headers: &Headers) -> Option<String> {
    headers.get(&HeaderName::ContentType).map(|v| {
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    })
}

/// The standard reason phrase for a status code (RFC 3261 §21).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Progress",
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}
