//! SIP and SIPS URIs (RFC 3261 §19.1, §25.1) and other absolute URIs.
//!
//! ```text
//! SIP-URI  = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
//! userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
//! hostport = host [ ":" port ]        ; IPv6 references in brackets (RFC 5118)
//! uri-parameters = *( ";" uri-parameter )
//! headers  = "?" header *( "&" header )
//! ```
//!
//! Parts keep their escaped form (`%41` stays `%41`): RFC 3261 §19.1.4 compares
//! escaped and unescaped forms as equal, but a B2BUA must forward what it got,
//! and unescaping twice is a classic bug (RFC 4475 §3.1.1.3).

use super::header::Params;
use super::parse::ParseErrorKind;
use crate::bytestr::ByteStr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Name(ByteStr),
    Ipv4(Ipv4Addr),
    /// The text between the brackets. Kept as text because RFC 5118 §4.10 asks
    /// us to tolerate forms (three colons) that `Ipv6Addr` rejects.
    Ipv6(ByteStr),
}

impl Host {
    pub fn parse(s: &ByteStr, text: &str) -> Result<Host, ParseErrorKind> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(ParseErrorKind::BadUri("unterminated IPv6 reference"))?;
            if inner.is_empty()
                || !inner
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                || !inner.contains(':')
            {
                return Err(ParseErrorKind::BadUri("bad IPv6 reference"));
            }
            return Ok(Host::Ipv6(s.slice_ref(inner)));
        }
        if text.is_empty() {
            return Err(ParseErrorKind::BadUri("empty host"));
        }
        if let Ok(v4) = text.parse::<Ipv4Addr>() {
            return Ok(Host::Ipv4(v4));
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            return Err(ParseErrorKind::BadUri("bad host name"));
        }
        Ok(Host::Name(s.slice_ref(text)))
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
            Host::Ipv6(text) => text.parse().ok().map(IpAddr::V6),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ipv4(v4) => write!(f, "{v4}"),
            Host::Ipv6(v6) => write!(f, "[{v6}]"),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Host::Ipv4(v4),
            IpAddr::V6(v6) => Host::Ipv6(ByteStr::from(v6.to_string())),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    pub user: Option<ByteStr>,
    pub password: Option<ByteStr>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
    /// Escaped `?header=value&...` part, without the '?'.
    pub headers: Option<ByteStr>,
}

impl SipUri {
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            secure: false,
            user: user.map(ByteStr::from),
            password: None,
            host,
            port,
            params: Params::default(),
            headers: None,
        }
    }

    /// The `transport` URI parameter, lower-cased.
    pub fn transport(&self) -> Option<String> {
        self.params
            .get("transport")
            .flatten()
            .map(|t| t.to_ascii_lowercase())
    }

    /// The user part with `%XX` escapes decoded once (never recursively).
    pub fn user_unescaped(&self) -> Option<Vec<u8>> {
        self.user.as_ref().map(|u| unescape(u))
    }

    fn parse(s: &ByteStr, secure: bool, rest: &str) -> Result<SipUri, ParseErrorKind> {
        // The user part may contain '?', ';' and ',' (user-unreserved), so the
        // userinfo ends at the first '@'; a '@' in the headers part is escaped.
        let (userinfo, hostpart) = match rest.split_once('@') {
            Some((ui, hp)) => (Some(ui), hp),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if u.is_empty() {
                    return Err(ParseErrorKind::BadUri("empty user part"));
                }
                check_escapes(u)?;
                if let Some(p) = p {
                    check_escapes(p)?;
                }
                (Some(s.slice_ref(u)), p.map(|p| s.slice_ref(p)))
            }
        };
        let (before_headers, headers) = match hostpart.split_once('?') {
            Some((b, h)) => (b, Some(s.slice_ref(h))),
            None => (hostpart, None),
        };
        let (hostport, params) = match before_headers.find(';') {
            Some(pos) => (
                before_headers.get(..pos).unwrap_or_default(),
                before_headers.get(pos..).unwrap_or_default(),
            ),
            None => (before_headers, ""),
        };
        let (host_text, port) = split_hostport(hostport)?;
        let host = Host::parse(s, host_text)?;
        let params = Params::parse_uri(s, params)?;
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }
}

/// Splits `host[:port]`, where host may be a bracketed IPv6 reference.
pub(crate) fn split_hostport(hostport: &str) -> Result<(&str, Option<u16>), ParseErrorKind> {
    let (host, port) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(end) => {
                let host = hostport.get(..=end).unwrap_or_default();
                match hostport.get(end + 1..).unwrap_or_default() {
                    "" => (host, None),
                    rest => match rest.strip_prefix(':') {
                        Some(p) => (host, Some(p)),
                        None => return Err(ParseErrorKind::BadUri("garbage after IPv6 reference")),
                    },
                }
            }
            None => return Err(ParseErrorKind::BadUri("unterminated IPv6 reference")),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p).ok_or(ParseErrorKind::BadUri("bad port"))?),
    };
    Ok((host, port))
}

pub(crate) fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

fn check_escapes(s: &str) -> Result<(), ParseErrorKind> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let ok = matches!((b.get(i + 1), b.get(i + 2)), (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit());
            if !ok {
                return Err(ParseErrorKind::BadUri("bad %-escape"));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes once. Invalid escapes are kept literally.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|h| (*h as char).to_digit(16)),
                b.get(i + 2).and_then(|l| (*l as char).to_digit(16)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    /// Any other absoluteURI (tel:, http:, urn:, ...), kept as text.
    Other {
        scheme: ByteStr,
        raw: ByteStr,
    },
}

impl Uri {
    /// Parses a URI that must not contain whitespace (request line, inside `<>`).
    pub fn parse(s: &ByteStr, text: &str) -> Result<Uri, ParseErrorKind> {
        if text.is_empty() {
            return Err(ParseErrorKind::BadUri("empty URI"));
        }
        if text
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'<' || b == b'>' || b == b'"')
        {
            return Err(ParseErrorKind::BadUri("whitespace or delimiter inside URI"));
        }
        let (scheme, rest) = text
            .split_once(':')
            .ok_or(ParseErrorKind::BadUri("no scheme"))?;
        let mut chars = scheme.chars();
        let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(ParseErrorKind::BadUri("bad scheme"));
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse(s, false, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse(s, true, rest).map(Uri::Sip)
        } else if rest.is_empty() {
            Err(ParseErrorKind::BadUri("empty URI after scheme"))
        } else {
            Ok(Uri::Other {
                scheme: s.slice_ref(scheme),
                raw: s.slice_ref(text),
            })
        }
    }

    pub fn parse_str(text: &str) -> Result<Uri, ParseErrorKind> {
        let owned = ByteStr::from(text);
        Uri::parse(&owned, owned.as_str())
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }

    /// The user part, which for a softswitch is the dialled number.
    pub fn user(&self) -> Option<&str> {
        self.as_sip().and_then(|u| u.user.as_deref())
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                write!(f, ":{pw}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => write!(f, "{u}"),
            Uri::Other { raw, .. } => f.write_str(raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse_str(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    #[test]
    fn parses_user_password_host_port_params_headers() {
        let u = sip("sip:alice:secret@example.com:5070;transport=tcp;lr?Subject=hi");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, Host::Name("example.com".into()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert!(u.params.has("lr"));
        assert_eq!(u.headers.as_deref(), Some("Subject=hi"));
        assert_eq!(
            u.to_string(),
            "sip:alice:secret@example.com:5070;transport=tcp;lr?Subject=hi"
        );
    }

    #[test]
    fn ipv6_references_rfc5118() {
        let u = sip("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".into()));
        assert_eq!(u.port, Some(5070));
        // §4.3: the port-looking suffix is part of the address.
        let u = sip("sip:[2001:db8::10:5070]");
        assert_eq!(u.port, None);
        // §4.10: three colons tolerated.
        assert!(Uri::parse_str("sip:[2001:db8:::192.0.2.1]").is_ok());
        // §4.2: unbracketed IPv6 is not a host.
        assert!(Uri::parse_str("sip:2001:db8::10").is_err());
    }

    #[test]
    fn escapes_are_kept_and_decoded_once() {
        let u = sip("sip:sip%3Auser%40example.com@example.net");
        assert_eq!(u.user.as_deref(), Some("sip%3Auser%40example.com"));
        assert_eq!(u.user_unescaped().unwrap(), b"sip:user@example.com");
        assert_eq!(unescape("value%2541"), b"value%41");
        assert!(Uri::parse_str("sip:%zz@example.com").is_err());
    }

    #[test]
    fn other_schemes_and_garbage() {
        assert!(matches!(
            Uri::parse_str("nobodyKnowsThisScheme:totallyopaquecontent").unwrap(),
            Uri::Other { .. }
        ));
        assert!(Uri::parse_str("<sip:user@example.com>").is_err());
        assert!(Uri::parse_str("sip:user@example.com;").is_err());
        assert!(Uri::parse_str("sip:user@exa mple.com").is_err());
        assert!(Uri::parse_str("sip:user@example.com:99999").is_err());
        assert!(Uri::parse_str("").is_err());
    }
}
