//! Typed header values (RFC 3261 §20, grammar in §25.1).
//!
//! ```text
//! name-addr  = [ display-name ] LAQUOT addr-spec RAQUOT
//! From/To    = ( name-addr / addr-spec ) *( SEMI param )
//! Via        = SIP SLASH 2.0 SLASH transport LWS sent-by *( SEMI via-params )
//! CSeq       = 1*DIGIT LWS Method
//! ```
//!
//! LWS is allowed around `;`, `=` and `/` (RFC 4475 §3.1.1.1); empty elements
//! (`;;`, `,,`) are not (§3.1.2.1).

use super::parse::ParseErrorKind;
use super::uri::{split_hostport, Host, Uri};
use super::Method;
use crate::bytestr::ByteStr;
use std::fmt;

pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

/// Splits a header value at commas that are outside quotes and `<>`.
/// Elements are trimmed; empty elements are kept so callers can reject them.
pub(crate) fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            ',' if !in_quote && !in_angle => {
                out.push(s.get(start..i).unwrap_or_default().trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s.get(start..).unwrap_or_default().trim());
    out
}

/// Returns the length of the quoted string at the start of `s` (including both
/// quotes), or an error if it is not terminated.
fn quoted_len(s: &str) -> Result<usize, ParseErrorKind> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Ok(i + 1);
        }
    }
    Err(ParseErrorKind::BadHeaderValue("unterminated quoted string"))
}

/// `;name[=value]` parameters, in order. Names compare case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(ByteStr, Option<ByteStr>)>);

impl Params {
    /// `Some(None)` for a flag parameter, `Some(Some(v))` with a value.
    pub fn get(&self, name: &str) -> Option<Option<&ByteStr>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(ByteStr::from);
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((ByteStr::from(name), value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn iter(&self) -> impl Iterator<Item = &(ByteStr, Option<ByteStr>)> {
        self.0.iter()
    }

    /// Header parameters: `s` starts at the first ';' (or is empty); LWS is
    /// allowed around the separators.
    pub(crate) fn parse_header(base: &ByteStr, s: &str) -> Result<Params, ParseErrorKind> {
        Self::parse_inner(base, s, true)
    }

    /// URI parameters: no whitespace anywhere.
    pub(crate) fn parse_uri(base: &ByteStr, s: &str) -> Result<Params, ParseErrorKind> {
        Self::parse_inner(base, s, false)
    }

    fn parse_inner(base: &ByteStr, s: &str, lws: bool) -> Result<Params, ParseErrorKind> {
        let mut params = Vec::new();
        let s = s.trim_start();
        if s.is_empty() {
            return Ok(Params(params));
        }
        let mut rest = s
            .strip_prefix(';')
            .ok_or(ParseErrorKind::BadHeaderValue("garbage before parameters"))?;
        loop {
            // Find the end of this parameter: the next ';' outside quotes.
            let mut end = rest.len();
            let mut in_quote = false;
            let mut escaped = false;
            for (i, c) in rest.char_indices() {
                if escaped {
                    escaped = false;
                } else if in_quote && c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_quote = !in_quote;
                } else if c == ';' && !in_quote {
                    end = i;
                    break;
                }
            }
            if in_quote {
                return Err(ParseErrorKind::BadHeaderValue("unterminated quoted string"));
            }
            let item = rest.get(..end).unwrap_or_default();
            let item = if lws { item.trim() } else { item };
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => {
                    let (n, v) = if lws { (n.trim(), v.trim()) } else { (n, v) };
                    (n, Some(v))
                }
                None => (item, None),
            };
            if name.is_empty()
                || !name.chars().all(|c| {
                    is_token_char(c)
                        || c == '['
                        || c == ']'
                        || c == ':'
                        || c == '/'
                        || c == '&'
                        || c == '$'
                })
            {
                return Err(ParseErrorKind::BadHeaderValue("bad parameter name"));
            }
            if let Some(v) = value {
                let ok = if v.starts_with('"') {
                    lws && quoted_len(v).ok() == Some(v.len())
                } else {
                    !v.is_empty()
                        && !v.chars().any(|c| {
                            c.is_whitespace() || c == '"' || c == ',' || c == '<' || c == '>'
                        })
                };
                if !ok {
                    return Err(ParseErrorKind::BadHeaderValue("bad parameter value"));
                }
            }
            params.push((base.slice_ref(name), value.map(|v| base.slice_ref(v))));
            match rest.get(end + 1..) {
                Some(next) if end < rest.len() => rest = next,
                _ => break,
            }
        }
        Ok(Params(params))
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// From, To, Contact, Route, Record-Route values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name as written (quotes included when it was quoted).
    pub display: Option<ByteStr>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    pub fn tag(&self) -> Option<&ByteStr> {
        self.params.get("tag").flatten()
    }

    pub fn parse(base: &ByteStr, s: &str) -> Result<NameAddr, ParseErrorKind> {
        let s = s.trim();
        let (display, after_display) = if s.starts_with('"') {
            let len = quoted_len(s)?;
            (s.get(..len), s.get(len..).unwrap_or_default().trim_start())
        } else {
            match s.find('<') {
                Some(pos) => {
                    let name = s.get(..pos).unwrap_or_default().trim();
                    // display-name = *(token LWS): anything else unquoted (a
                    // comma, say) is a malformed header (RFC 4475 §3.1.2.15).
                    if !name
                        .chars()
                        .all(|c| is_token_char(c) || c == ' ' || c == '\t')
                    {
                        return Err(ParseErrorKind::BadHeaderValue(
                            "unquoted display name with separators",
                        ));
                    }
                    (
                        (!name.is_empty()).then_some(name),
                        s.get(pos..).unwrap_or_default(),
                    )
                }
                None => (None, s),
            }
        };
        if let Some(inner) = after_display.strip_prefix('<') {
            let end = inner
                .find('>')
                .ok_or(ParseErrorKind::BadHeaderValue("missing '>'"))?;
            let uri_text = inner.get(..end).unwrap_or_default();
            let uri = Uri::parse(base, uri_text)?;
            let params = Params::parse_header(base, inner.get(end + 1..).unwrap_or_default())?;
            Ok(NameAddr {
                display: display.map(|d| base.slice_ref(d)),
                uri,
                params,
            })
        } else if display.is_some() {
            Err(ParseErrorKind::BadHeaderValue(
                "display name without <addr-spec>",
            ))
        } else {
            // addr-spec form: the URI cannot contain ';', ',' or '?', so the
            // first ';' starts header parameters (RFC 3261 §20.10).
            let (uri_text, params) = match after_display.find(';') {
                Some(pos) => (
                    after_display.get(..pos).unwrap_or_default(),
                    after_display.get(pos..).unwrap_or_default(),
                ),
                None => (after_display, ""),
            };
            if uri_text.contains('?') {
                return Err(ParseErrorKind::BadHeaderValue("URI headers outside <>"));
            }
            let uri = Uri::parse(base, uri_text.trim())?;
            let params = Params::parse_header(base, params)?;
            Ok(NameAddr {
                display: None,
                uri,
                params,
            })
        }
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// One Via value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Upper-cased transport token (UDP, TCP, TLS, SCTP, WS, or unknown).
    pub transport: ByteStr,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten().map(|b| b.as_str())
    }

    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten().map(|b| b.as_str())
    }

    /// RFC 3581: `Some(None)` when the client asked for rport without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    pub fn parse(base: &ByteStr, s: &str) -> Result<Via, ParseErrorKind> {
        let bad = ParseErrorKind::BadHeaderValue("bad Via");
        let (proto, rest) = s.trim().split_once('/').ok_or(bad.clone())?;
        let (version, rest) = rest.split_once('/').ok_or(bad.clone())?;
        if !proto.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return Err(bad);
        }
        let rest = rest.trim_start();
        let tend = rest
            .find(|c: char| c.is_whitespace())
            .ok_or(ParseErrorKind::BadHeaderValue("Via without sent-by"))?;
        let transport = rest.get(..tend).unwrap_or_default();
        if transport.is_empty() || !transport.chars().all(is_token_char) {
            return Err(bad);
        }
        let rest = rest.get(tend..).unwrap_or_default().trim_start();
        let (sent_by, params) = match rest.find(';') {
            Some(pos) => (
                rest.get(..pos).unwrap_or_default().trim(),
                rest.get(pos..).unwrap_or_default(),
            ),
            None => (rest.trim(), ""),
        };
        let (host_text, port) = split_hostport(sent_by)?;
        let host = Host::parse(base, host_text)?;
        let params = Params::parse_header(base, params)?;
        Ok(Via {
            transport: if transport.bytes().all(|b| !b.is_ascii_lowercase()) {
                base.slice_ref(transport)
            } else {
                ByteStr::from(transport.to_ascii_uppercase())
            },
            host,
            port,
            params,
        })
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// CSeq: sequence number and method (RFC 3261 §20.16; the number is < 2**31,
/// we accept up to u32 and reject anything larger rather than wrap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(base: &ByteStr, s: &str) -> Result<CSeq, ParseErrorKind> {
        let s = s.trim();
        let (num, method) = s
            .split_once(|c: char| c.is_whitespace())
            .ok_or(ParseErrorKind::BadHeaderValue("bad CSeq"))?;
        let method = method.trim();
        if num.is_empty()
            || !num.bytes().all(|b| b.is_ascii_digit())
            || method.is_empty()
            || !method.chars().all(is_token_char)
        {
            return Err(ParseErrorKind::BadHeaderValue("bad CSeq"));
        }
        let seq = num
            .trim_start_matches('0')
            .parse::<u32>()
            .or_else(|e| {
                if num.bytes().all(|b| b == b'0') {
                    Ok(0)
                } else {
                    Err(e)
                }
            })
            .map_err(|_| ParseErrorKind::BadHeaderValue("CSeq number out of range"))?;
        Ok(CSeq {
            seq,
            method: Method::parse(base.slice_ref(method)),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> ByteStr {
        ByteStr::from(s)
    }

    #[test]
    fn name_addr_forms() {
        let s = b("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ;   tag = 98asjd8");
        let na = NameAddr::parse(&s, &s).unwrap();
        assert_eq!(na.tag().map(|t| t.as_str()), Some("98asjd8"));
        let s = b("caller<sip:caller@example.com>;tag=323");
        let na = NameAddr::parse(&s, &s).unwrap();
        assert_eq!(na.display.as_deref(), Some("caller"));
        let s = b("sip:user@example.com;unknownparam");
        let na = NameAddr::parse(&s, &s).unwrap();
        assert!(na.params.has("unknownparam"));
        assert!(na.uri.as_sip().unwrap().params.iter().next().is_none());
        for bad in [
            "\"Unterminated <sip:a@b>",
            "Bell, Alexander <sip:a@b>",
            "< sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:x%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
        ] {
            let s = b(bad);
            assert!(NameAddr::parse(&s, &s).is_err(), "{bad}");
        }
    }

    #[test]
    fn via_with_lws_and_ipv6() {
        let s = b("SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239");
        let v = Via::parse(&s, &s).unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.branch(), Some("z9hG4bK30239"));
        let s = b("SIP/2.0/UDP [2001:db8::9:1]:5070;received=[2001:db8::9:255];branch=z9hG4bKas3-111;rport");
        let v = Via::parse(&s, &s).unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert!(Via::parse(&b("SIP/2.0/UDP 192.0.2.15;;"), "SIP/2.0/UDP 192.0.2.15;;").is_err());
    }

    #[test]
    fn cseq_checked() {
        let s = b("0009 INVITE");
        assert_eq!(CSeq::parse(&s, &s).unwrap().seq, 9);
        let s = b("36893488147419103232 REGISTER");
        assert!(CSeq::parse(&s, &s).is_err());
        let s = b("0 ACK");
        assert_eq!(CSeq::parse(&s, &s).unwrap().seq, 0);
    }

    #[test]
    fn list_split_respects_quotes_and_angles() {
        assert_eq!(
            split_list("\"a,b\" <sip:x;p=1,2>, <sip:y>"),
            vec!["\"a,b\" <sip:x;p=1,2>", "<sip:y>"]
        );
        assert_eq!(split_list(";;,;,,").len(), 4);
    }
}
