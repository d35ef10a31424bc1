//! Parsing and framing (RFC 3261 §7, §18.3).
//!
//! Datagrams hold one message: the body is `Content-Length` bytes (trailing
//! octets are ignored, §18.3), or the rest of the datagram when the header is
//! absent (RFC 2543 peers). On streams `Content-Length` delimits messages, so
//! a bad value makes the stream unrecoverable and the connection is closed.
//!
//! Errors carry the header lines of a request when they could be split out, so
//! the endpoint can still answer 400/505 to the sender with the right Via,
//! From, To, Call-ID and CSeq.

use super::header::{is_token_char, split_list, CSeq, NameAddr, Via};
use super::uri::Uri;
use super::{Core, Header, HeaderName, Headers, Message, Method, Request, Response};
use crate::bytestr::ByteStr;
use bytes::Bytes;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("empty message")]
    Empty,
    #[error("message head is not UTF-8")]
    NotUtf8,
    #[error("malformed start line: {0}")]
    BadStartLine(&'static str),
    #[error("SIP version not supported")]
    UnsupportedVersion,
    #[error("malformed header line")]
    BadHeaderLine,
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    #[error("malformed {header} header: {reason}")]
    BadHeader {
        header: &'static str,
        reason: &'static str,
    },
    #[error("{0}")]
    BadHeaderValue(&'static str),
    #[error("malformed URI: {0}")]
    BadUri(&'static str),
    #[error("bad Content-Length")]
    BadContentLength,
    #[error("body shorter than Content-Length ({declared} > {available})")]
    BodyTruncated { declared: usize, available: usize },
    #[error("message larger than {max} bytes")]
    TooLarge { max: usize },
}

impl ParseErrorKind {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ParseErrorKind::Empty => "empty",
            ParseErrorKind::NotUtf8 => "not_utf8",
            ParseErrorKind::BadStartLine(_) => "start_line",
            ParseErrorKind::UnsupportedVersion => "version",
            ParseErrorKind::BadHeaderLine => "header_line",
            ParseErrorKind::MissingHeader(_) => "missing_header",
            ParseErrorKind::DuplicateHeader(_) => "duplicate_header",
            ParseErrorKind::BadHeader { .. } | ParseErrorKind::BadHeaderValue(_) => "header_value",
            ParseErrorKind::BadUri(_) => "uri",
            ParseErrorKind::BadContentLength | ParseErrorKind::BodyTruncated { .. } => {
                "content_length"
            }
            ParseErrorKind::TooLarge { .. } => "too_large",
        }
    }
}

/// What went wrong, and what of the message could still be read.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    /// Set when the message is a request and its header lines were split out.
    pub request: Option<Box<PartialRequest>>,
}

/// The part of a malformed request needed to answer it.
#[derive(Clone, Debug)]
pub struct PartialRequest {
    pub method: Option<Method>,
    pub headers: Headers,
}

impl ParseError {
    fn bare(kind: ParseErrorKind) -> Self {
        Self {
            kind,
            request: None,
        }
    }
}

impl From<ParseErrorKind> for ParseError {
    fn from(kind: ParseErrorKind) -> Self {
        Self::bare(kind)
    }
}

/// The outcome of looking for one message at the start of a stream buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamFrame {
    /// Need more bytes.
    Incomplete,
    /// Leading CRLFs (RFC 5626 keep-alive): consume `skip` bytes; `pong`
    /// when a double CRLF ping was seen and a single CRLF should be returned.
    KeepAlive { skip: usize, pong: bool },
    /// A whole message is `buf[..len]`.
    Complete { len: usize },
    /// Framing cannot be recovered: close the connection.
    Invalid(ParseErrorKind),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Finds the end of the head: the index just past the empty line.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = find(buf, b"\r\n\r\n").map(|p| (p, p + 4));
    let lf = find(buf, b"\n\n").map(|p| (p, p + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Frames one message on a stream (RFC 3261 §18.3): the head ends at the
/// empty line, the body is exactly Content-Length bytes.
pub fn frame_stream(buf: &[u8], max_size: usize) -> StreamFrame {
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if lead > 0 {
        let pong = buf.starts_with(b"\r\n\r\n");
        return StreamFrame::KeepAlive {
            skip: if pong { 4 } else { lead.min(2) },
            pong,
        };
    }
    let Some((head_len, body_start)) = head_end(buf) else {
        if buf.len() > max_size {
            return StreamFrame::Invalid(ParseErrorKind::TooLarge { max: max_size });
        }
        return StreamFrame::Incomplete;
    };
    let head = buf.get(..head_len).unwrap_or_default();
    let content_length = match content_length_of_head(head) {
        Ok(cl) => cl.unwrap_or(0),
        Err(e) => return StreamFrame::Invalid(e),
    };
    let Some(total) = body_start.checked_add(content_length) else {
        return StreamFrame::Invalid(ParseErrorKind::BadContentLength);
    };
    if total > max_size {
        return StreamFrame::Invalid(ParseErrorKind::TooLarge { max: max_size });
    }
    if buf.len() < total {
        StreamFrame::Incomplete
    } else {
        StreamFrame::Complete { len: total }
    }
}

/// Scans raw head lines for Content-Length without building headers.
fn content_length_of_head(head: &[u8]) -> Result<Option<usize>, ParseErrorKind> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default();
        let name = trim_bytes(name);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = trim_bytes(line.get(colon + 1..).unwrap_or_default());
            let v = parse_content_length(value)?;
            if found.is_some_and(|f| f != v) {
                return Err(ParseErrorKind::BadContentLength);
            }
            found = Some(v);
        }
    }
    Ok(found)
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

fn parse_content_length(value: &[u8]) -> Result<usize, ParseErrorKind> {
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return Err(ParseErrorKind::BadContentLength);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or(ParseErrorKind::BadContentLength)
}

/// Parses one UDP datagram.
pub fn parse_datagram(buf: Bytes) -> Result<Message, ParseError> {
    parse_message(buf, true)
}

/// Parses one message. `datagram` selects the UDP rules for a missing
/// Content-Length (body = rest) and trailing bytes (ignored).
pub fn parse_message(buf: Bytes, datagram: bool) -> Result<Message, ParseError> {
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let buf = buf.slice(lead..);
    if buf.is_empty() {
        return Err(ParseErrorKind::Empty.into());
    }
    let (head_len, body_start) = head_end(&buf).unwrap_or((buf.len(), buf.len()));
    let head = ByteStr::from_utf8(buf.slice(..head_len))
        .map_err(|_| ParseError::bare(ParseErrorKind::NotUtf8))?;
    let rest = buf.slice(body_start.min(buf.len())..);

    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().unwrap_or_default();
    let headers = split_headers(&head, lines);

    if let Some(status_part) = start.strip_prefix("SIP/") {
        let headers = headers.map_err(ParseError::bare)?;
        return parse_response(&head, start, status_part, headers, rest, datagram)
            .map(Message::Response)
            .map_err(ParseError::bare);
    }

    // A request: from here on, errors carry what we know so a 400 can be sent.
    let method_token = start.split(' ').next().unwrap_or_default();
    let method = (!method_token.is_empty() && method_token.chars().all(is_token_char))
        .then(|| Method::parse(head.slice_ref(method_token)));
    let fail = |kind: ParseErrorKind, headers: Option<Headers>| ParseError {
        kind,
        request: headers.map(|headers| {
            Box::new(PartialRequest {
                method: method.clone(),
                headers,
            })
        }),
    };
    let headers = match headers {
        Ok(h) => h,
        Err(kind) => return Err(fail(kind, None)),
    };
    let result = (|| {
        let (method, uri) = parse_request_line(&head, start)?;
        let core = validate_core(&headers)?;
        let body = take_body(&headers, rest, datagram)?;
        Ok(Request {
            method,
            uri,
            headers: headers.clone(),
            body,
            core,
        })
    })();
    result
        .map(Message::Request)
        .map_err(|kind| fail(kind, Some(headers)))
}

fn split_headers<'a>(
    head: &ByteStr,
    lines: impl Iterator<Item = &'a str>,
) -> Result<Headers, ParseErrorKind> {
    let mut headers = Headers::new();
    // A folded header (continuation lines start with SP/HTAB) is joined with
    // one SP; only then is a copy made.
    let mut pending: Option<(HeaderName, String)> = None;
    let mut last: Option<Header> = None;
    for line in lines {
        if line.is_empty() {
            // Only possible at the very end of a datagram that lacks the empty line.
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let cont = line.trim();
            if let Some(h) = last.take() {
                pending = Some((h.name, h.value.to_string()));
            }
            match pending.as_mut() {
                Some((_, v)) => {
                    if !cont.is_empty() {
                        if !v.is_empty() {
                            v.push(' ');
                        }
                        v.push_str(cont);
                    }
                }
                None => return Err(ParseErrorKind::BadHeaderLine),
            }
            continue;
        }
        if let Some(h) = last.take() {
            headers.push(h.name, h.value);
        }
        if let Some((name, value)) = pending.take() {
            headers.push(name, value);
        }
        let (name, value) = line.split_once(':').ok_or(ParseErrorKind::BadHeaderLine)?;
        let name = name.trim_end();
        if name.is_empty() || !name.chars().all(is_token_char) {
            return Err(ParseErrorKind::BadHeaderLine);
        }
        last = Some(Header {
            name: HeaderName::parse(head.slice_ref(name)),
            value: head.slice_ref(value.trim()),
        });
    }
    if let Some(h) = last {
        headers.push(h.name, h.value);
    }
    if let Some((name, value)) = pending {
        headers.push(name, value);
    }
    Ok(headers)
}

fn parse_version(v: &str) -> Result<(), ParseErrorKind> {
    if v == "SIP/2.0" {
        return Ok(());
    }
    // Another well-formed version gets 505; anything else is garbage (400).
    let well_formed = v
        .strip_prefix("SIP/")
        .and_then(|n| n.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if well_formed {
        Err(ParseErrorKind::UnsupportedVersion)
    } else {
        Err(ParseErrorKind::BadStartLine("bad SIP-Version"))
    }
}

fn parse_request_line(head: &ByteStr, line: &str) -> Result<(Method, Uri), ParseErrorKind> {
    // Exactly one SP between the three elements (RFC 3261 §7.1; RFC 4475
    // §3.1.2.9/10 ask us not to guess past extra whitespace).
    let mut parts = line.splitn(3, ' ');
    let method = parts.next().unwrap_or_default();
    let uri = parts.next().unwrap_or_default();
    let version = parts.next().ok_or(ParseErrorKind::BadStartLine(
        "request line needs three elements",
    ))?;
    if method.is_empty() || !method.chars().all(is_token_char) {
        return Err(ParseErrorKind::BadStartLine("bad method"));
    }
    parse_version(version)?;
    let uri = Uri::parse(head, uri)?;
    if let Uri::Sip(u) = &uri {
        if u.headers.is_some() {
            // §19.1.5: headers in a Request-URI are not allowed (RFC 4475 §3.1.2.11).
            return Err(ParseErrorKind::BadUri("headers in Request-URI"));
        }
    }
    Ok((Method::parse(head.slice_ref(method)), uri))
}

fn parse_response(
    head: &ByteStr,
    line: &str,
    after_sip: &str,
    headers: Headers,
    rest: Bytes,
    datagram: bool,
) -> Result<Response, ParseErrorKind> {
    let (version, rest_line) = line
        .split_once(' ')
        .ok_or(ParseErrorKind::BadStartLine("status line"))?;
    let _ = after_sip;
    parse_version(version)?;
    let (code, reason) = match rest_line.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest_line, ""),
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseErrorKind::BadStartLine("status code"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| ParseErrorKind::BadStartLine("status code"))?;
    if !(100..=699).contains(&status) {
        return Err(ParseErrorKind::BadStartLine("status code out of range"));
    }
    let core = validate_core(&headers)?;
    let body = take_body(&headers, rest, datagram)?;
    Ok(Response {
        status,
        reason: head.slice_ref(reason),
        headers,
        body,
        core,
    })
}

fn single<'a>(
    headers: &'a Headers,
    name: &'a HeaderName,
    label: &'static str,
) -> Result<&'a ByteStr, ParseErrorKind> {
    let mut it = headers.get_all(name);
    let first = it.next().ok_or(ParseErrorKind::MissingHeader(label))?;
    if it.next().is_some() {
        return Err(ParseErrorKind::DuplicateHeader(label));
    }
    Ok(first)
}

fn bad(header: &'static str, kind: ParseErrorKind) -> ParseErrorKind {
    let reason = match kind {
        ParseErrorKind::BadHeaderValue(r) | ParseErrorKind::BadUri(r) => r,
        _ => "malformed",
    };
    ParseErrorKind::BadHeader { header, reason }
}

/// Checks the headers every message needs (RFC 3261 §8.1.1) and the syntax of
/// those the stack acts on.
fn validate_core(headers: &Headers) -> Result<Core, ParseErrorKind> {
    let mut via_top = None;
    for line in headers.get_all(&HeaderName::Via) {
        for v in split_list(line) {
            let via = Via::parse(line, v).map_err(|e| bad("Via", e))?;
            if via_top.is_none() {
                via_top = Some(via);
            }
        }
    }
    let via = via_top.ok_or(ParseErrorKind::MissingHeader("Via"))?;
    let from_line = single(headers, &HeaderName::From, "From")?;
    let from = NameAddr::parse(from_line, from_line).map_err(|e| bad("From", e))?;
    let to_line = single(headers, &HeaderName::To, "To")?;
    let to = NameAddr::parse(to_line, to_line).map_err(|e| bad("To", e))?;
    let call_id = single(headers, &HeaderName::CallId, "Call-ID")?;
    if call_id.is_empty() || call_id.chars().any(char::is_whitespace) {
        return Err(ParseErrorKind::BadHeader {
            header: "Call-ID",
            reason: "empty or contains whitespace",
        });
    }
    let cseq_line = single(headers, &HeaderName::CSeq, "CSeq")?;
    let cseq = CSeq::parse(cseq_line, cseq_line).map_err(|e| bad("CSeq", e))?;
    let mut mf = headers.get_all(&HeaderName::MaxForwards);
    let max_forwards = match (mf.next(), mf.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => return Err(ParseErrorKind::DuplicateHeader("Max-Forwards")),
        (Some(v), None) => {
            let ok = !v.is_empty() && v.len() <= 8 && v.bytes().all(|b| b.is_ascii_digit());
            let n = ok
                .then(|| v.parse::<u32>().ok())
                .flatten()
                .and_then(|n| u8::try_from(n).ok());
            Some(n.ok_or(ParseErrorKind::BadHeader {
                header: "Max-Forwards",
                reason: "not a number in 0..=255",
            })?)
        }
    };
    for name in [
        HeaderName::Contact,
        HeaderName::Route,
        HeaderName::RecordRoute,
    ] {
        for line in headers.get_all(&name) {
            if name == HeaderName::Contact && line.as_str() == "*" {
                continue;
            }
            for v in split_list(line) {
                NameAddr::parse(line, v).map_err(|e| bad("Contact/Route", e))?;
            }
        }
    }
    Ok(Core {
        via,
        from,
        to,
        call_id: call_id.clone(),
        cseq,
        max_forwards,
    })
}

fn take_body(headers: &Headers, rest: Bytes, datagram: bool) -> Result<Bytes, ParseErrorKind> {
    let mut declared: Option<usize> = None;
    for v in headers.get_all(&HeaderName::ContentLength) {
        let n = parse_content_length(v.as_bytes())?;
        if declared.is_some_and(|d| d != n) {
            return Err(ParseErrorKind::BadContentLength);
        }
        declared = Some(n);
    }
    match declared {
        Some(n) if n <= rest.len() => Ok(rest.slice(..n)),
        Some(n) => Err(ParseErrorKind::BodyTruncated {
            declared: n,
            available: rest.len(),
        }),
        None if datagram => Ok(rest),
        None => Ok(Bytes::new()),
    }
}
