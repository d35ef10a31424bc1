//! Digest authentication (RFC 2617 / RFC 7616) as a client.
//!
//! SIP reuses HTTP digest (RFC 3261 §22.4): a trunk answers a request with
//! `401 Unauthorized` carrying `WWW-Authenticate`, or `407 Proxy Authentication
//! Required` carrying `Proxy-Authenticate`, and the UAC resends the request with
//! `Authorization` / `Proxy-Authorization` respectively.
//!
//! This module works on header *values*, not on message types, so the dialog and
//! transaction layers decide which header name goes where.
//!
//! Challenge (RFC 2617 §3.2.1, RFC 7616 §3.3):
//!
//! ```text
//! Proxy-Authenticate: Digest realm="trunk.example", nonce="5f1c0a",
//!     opaque="9a1b", qop="auth,auth-int", algorithm=MD5, stale=FALSE
//! ```
//!
//! Credentials (RFC 2617 §3.2.2, RFC 7616 §3.4):
//!
//! ```text
//! Proxy-Authorization: Digest username="alice", realm="trunk.example",
//!     nonce="5f1c0a", uri="sip:bob@trunk.example", response="<hex>",
//!     algorithm=MD5, cnonce="0a4f113b", opaque="9a1b", qop=auth, nc=00000001
//! ```
//!
//! Response computation (RFC 2617 §3.2.2.1-3, RFC 7616 §3.4.1-3), `H` being
//! MD5 or SHA-256 rendered as lowercase hex:
//!
//! ```text
//! A1       = username ":" realm ":" password                 (MD5, SHA-256)
//! A1       = H(username ":" realm ":" password) ":" nonce ":" cnonce   (-sess)
//! A2       = method ":" uri                                   (qop absent or auth)
//! A2       = method ":" uri ":" H(body)                       (qop=auth-int)
//! response = H(H(A1) ":" nonce ":" nc ":" cnonce ":" qop ":" H(A2))
//! response = H(H(A1) ":" nonce ":" H(A2))                     (no qop, RFC 2069)
//! ```
//!
//! Everything parsed here comes off the network: parsing never panics, and
//! values echoed back (realm, nonce, opaque) are re-escaped and refused if they
//! contain CR/LF, so a hostile challenge cannot inject header lines.

use std::collections::VecDeque;
use std::fmt;
use std::iter::Peekable;
use std::str::CharIndices;

use md5::Md5;
use sha2::{Digest, Sha256};

/// Why a challenge could not be parsed or answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The header value was empty or only whitespace.
    #[error("empty authentication challenge")]
    Empty,
    /// A scheme other than `Digest` (e.g. `Basic`, which SIP forbids, RFC 3261 §22.4).
    #[error("unsupported authentication scheme `{scheme}`")]
    UnsupportedScheme { scheme: String },
    /// An `algorithm=` value this client cannot compute.
    #[error("unsupported digest algorithm `{algorithm}`")]
    UnsupportedAlgorithm { algorithm: String },
    /// `qop` was present but listed nothing we implement; answering without
    /// qop would be rejected by the server, so this is an error.
    #[error("no supported qop in `{offered}`")]
    UnsupportedQop { offered: String },
    /// A mandatory parameter (`realm`, `nonce`) is absent.
    #[error("missing `{param}` parameter in challenge")]
    MissingParam { param: &'static str },
    /// A parameter appeared twice (RFC 7616 §3.3: each directive at most once).
    #[error("duplicate `{param}` parameter in challenge")]
    DuplicateParam { param: String },
    /// A quoted string was opened at `offset` and never closed.
    #[error("unterminated quoted string starting at byte {offset}")]
    UnterminatedQuote { offset: usize },
    /// Any other syntax error, at byte `offset` of the header value.
    #[error("malformed challenge at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    /// A value we would have to put in the header contains CR, LF or NUL.
    #[error("`{field}` contains a character that cannot be sent in a header")]
    InvalidValue { field: &'static str },
    /// A `-sess` algorithm without qop: there is no cnonce to bind A1 to.
    #[error("algorithm {algorithm} requires qop")]
    SessionWithoutQop { algorithm: Algorithm },
    /// The nonce count for one nonce reached 2^32 - 1.
    #[error("nonce count exhausted")]
    NonceCountExhausted,
}

/// Digest hash algorithm (RFC 2617 §3.2.1, RFC 7616 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// The token as sent in `algorithm=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Parses an `algorithm=` value, case-insensitively (RFC 7616 §3.3 says the
    /// tokens are case-insensitive). `SHA256` without the dash is accepted too
    /// because some trunks send it.
    pub fn from_token(token: &str) -> Result<Algorithm, AuthError> {
        let t = token.trim();
        let alg = if t.eq_ignore_ascii_case("MD5") {
            Algorithm::Md5
        } else if t.eq_ignore_ascii_case("MD5-sess") {
            Algorithm::Md5Sess
        } else if t.eq_ignore_ascii_case("SHA-256") || t.eq_ignore_ascii_case("SHA256") {
            Algorithm::Sha256
        } else if t.eq_ignore_ascii_case("SHA-256-sess") || t.eq_ignore_ascii_case("SHA256-sess") {
            Algorithm::Sha256Sess
        } else {
            return Err(AuthError::UnsupportedAlgorithm {
                algorithm: t.to_owned(),
            });
        };
        Ok(alg)
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection (RFC 2617 §3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// Authentication only.
    Auth,
    /// Authentication with integrity protection of the body.
    AuthInt,
}

impl Qop {
    /// The token as sent in `qop=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// `MD5` when the challenge does not say (RFC 2617 §3.2.1).
    pub algorithm: Algorithm,
    /// Supported qop values offered, in the server's order; empty means the
    /// server speaks RFC 2069 (no qop directive).
    pub qop: Vec<Qop>,
    /// The previous credentials were fine but the nonce expired: retry
    /// silently with the new nonce instead of reporting a bad password.
    pub stale: bool,
    pub domain: Option<String>,
}

impl Challenge {
    /// Parses a challenge header value such as
    /// `Digest realm="x", nonce="y", qop="auth,auth-int", algorithm=MD5`.
    ///
    /// The scheme is case-insensitive, parameters may come in any order with
    /// any amount of whitespace around `=` and `,`, parameter values may be
    /// tokens or quoted strings with backslash escapes (RFC 3261 §25.1
    /// `quoted-pair`), and unknown parameters are ignored (RFC 7616 §3.3).
    pub fn parse(header_value: &str) -> Result<Challenge, AuthError> {
        // Refuses any scheme but Digest before looking at its params.
        let params = parse_auth_header(header_value)?;

        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = None;
        let mut qop = None;
        let mut stale = None;
        let mut domain = None;

        for AuthParam { name, value } in params {
            let slot = match name.as_str() {
                "realm" => &mut realm,
                "nonce" => &mut nonce,
                "opaque" => &mut opaque,
                "algorithm" => &mut algorithm,
                "qop" => &mut qop,
                "stale" => &mut stale,
                "domain" => &mut domain,
                // charset, userhash and extensions: nothing to do for us.
                _ => continue,
            };
            if slot.is_some() {
                return Err(AuthError::DuplicateParam { param: name });
            }
            *slot = Some(value);
        }

        let algorithm = match algorithm {
            Some(a) => Algorithm::from_token(&a)?,
            None => Algorithm::Md5,
        };

        let qop = match qop {
            None => Vec::new(),
            Some(list) => {
                // qop-options is a quoted, comma-separated list; unknown values
                // are to be ignored (RFC 2617 §3.2.1).
                let mut offered = Vec::new();
                for item in list.split(',').map(str::trim) {
                    let q = if item.eq_ignore_ascii_case("auth") {
                        Qop::Auth
                    } else if item.eq_ignore_ascii_case("auth-int") {
                        Qop::AuthInt
                    } else {
                        continue;
                    };
                    if !offered.contains(&q) {
                        offered.push(q);
                    }
                }
                if offered.is_empty() {
                    return Err(AuthError::UnsupportedQop { offered: list });
                }
                offered
            }
        };

        Ok(Challenge {
            realm: realm.ok_or(AuthError::MissingParam { param: "realm" })?,
            nonce: nonce.ok_or(AuthError::MissingParam { param: "nonce" })?,
            opaque,
            algorithm,
            qop,
            stale: stale.is_some_and(|s| s.trim().eq_ignore_ascii_case("true")),
            domain,
        })
    }
}

/// What the UAC authenticates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// How many distinct nonces we remember counts for. Trunks hand out a fresh
/// nonce per challenge, so an unbounded map would grow for the life of the
/// switch; forgetting an old nonce only restarts its count at 1, which a server
/// answers with a fresh (stale) challenge at worst.
const MAX_TRACKED_NONCES: usize = 64;

/// Keeps the nonce count per nonce and makes cnonces.
#[derive(Debug, Default)]
pub struct DigestClient {
    /// (nonce, last nc used), most recently used at the back.
    counts: VecDeque<(String, u32)>,
}

impl DigestClient {
    pub fn new() -> Self {
        DigestClient {
            counts: VecDeque::new(),
        }
    }

    /// Builds the Authorization / Proxy-Authorization header value for
    /// `method` and `uri` (the Request-URI as it appears on the request line).
    ///
    /// Chooses `qop=auth` when offered (`auth-int` only if `auth` is not
    /// offered, hashing `body`), increments nc per nonce (`00000001`,
    /// `00000002`, ...) and draws a random cnonce. Without qop the response is
    /// RFC 2069 compatible. `algorithm` is always included, `opaque` when the
    /// challenge carried one.
    pub fn authorize(
        &mut self,
        challenge: &Challenge,
        creds: &Credentials,
        method: &str,
        uri: &str,
        body: &[u8],
    ) -> Result<String, AuthError> {
        // 128 bits: cnonce protects against chosen-plaintext by the server
        // (RFC 2617 §4.9), so it must not be guessable.
        let cnonce = hex::encode(rand::random::<[u8; 16]>());
        self.authorize_with_cnonce(challenge, creds, method, uri, body, &cnonce)
    }

    /// [`authorize`](Self::authorize) with a caller-chosen cnonce, for
    /// deterministic tests. The cnonce is ignored when no qop is used.
    pub fn authorize_with_cnonce(
        &mut self,
        challenge: &Challenge,
        creds: &Credentials,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Result<String, AuthError> {
        let qop = if challenge.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else if challenge.qop.contains(&Qop::AuthInt) {
            Some(Qop::AuthInt)
        } else {
            None
        };
        if qop.is_none() && challenge.algorithm.is_sess() {
            return Err(AuthError::SessionWithoutQop {
                algorithm: challenge.algorithm,
            });
        }

        // Validate everything before touching the nonce count so a refused
        // request does not burn a count.
        let username = quote(&creds.username, "username")?;
        let realm = quote(&challenge.realm, "realm")?;
        let nonce = quote(&challenge.nonce, "nonce")?;
        let quoted_uri = quote(uri, "uri")?;
        let opaque = challenge
            .opaque
            .as_deref()
            .map(|o| quote(o, "opaque"))
            .transpose()?;
        reject_controls(method, "method")?;
        let quoted_cnonce = match qop {
            Some(_) => Some(quote(cnonce, "cnonce")?),
            None => None,
        };

        let nc = match qop {
            Some(_) => Some(format!("{:08x}", self.next_nc(&challenge.nonce)?)),
            None => None,
        };

        let response = digest_response(
            challenge.algorithm,
            &creds.username,
            &challenge.realm,
            &creds.password,
            &challenge.nonce,
            nc.as_deref(),
            qop.map(|_| cnonce),
            qop,
            method,
            uri,
            body,
        );

        let mut out = format!(
            "Digest username={username}, realm={realm}, nonce={nonce}, uri={quoted_uri}, \
             response=\"{response}\", algorithm={}",
            challenge.algorithm
        );
        if let (Some(q), Some(nc), Some(cn)) = (qop, nc, quoted_cnonce) {
            out.push_str(&format!(", cnonce={cn}, qop={q}, nc={nc}"));
        }
        if let Some(o) = opaque {
            out.push_str(&format!(", opaque={o}"));
        }
        Ok(out)
    }

    /// Next nonce count for `nonce`: 1 for a nonce not seen before.
    fn next_nc(&mut self, nonce: &str) -> Result<u32, AuthError> {
        if let Some(i) = self.counts.iter().position(|(n, _)| n == nonce) {
            if let Some((n, last)) = self.counts.remove(i) {
                let next = last.checked_add(1);
                // Back to the most-recently-used end, even when exhausted, so
                // the entry keeps refusing to reuse a count.
                self.counts.push_back((n, next.unwrap_or(last)));
                return next.ok_or(AuthError::NonceCountExhausted);
            }
        }
        if self.counts.len() >= MAX_TRACKED_NONCES {
            self.counts.pop_front();
        }
        self.counts.push_back((nonce.to_owned(), 1));
        Ok(1)
    }
}

/// Computes the expected `response` value (the verification half; also what
/// a server uses to check an Authorization header).
///
/// `nc`, `cnonce` and `qop` are `None` for an RFC 2069 response. For `-sess`
/// algorithms a missing `cnonce` is treated as empty.
#[allow(clippy::too_many_arguments)] // mirrors the digest directives one to one
pub fn digest_response(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    nc: Option<&str>,
    cnonce: Option<&str>,
    qop: Option<Qop>,
    method: &str,
    uri: &str,
    body: &[u8],
) -> String {
    let cnonce_b = cnonce.unwrap_or("").as_bytes();
    let mut ha1 = hash(
        algorithm,
        &[username.as_bytes(), realm.as_bytes(), password.as_bytes()],
    );
    if algorithm.is_sess() {
        ha1 = hash(algorithm, &[ha1.as_bytes(), nonce.as_bytes(), cnonce_b]);
    }

    let ha2 = match qop {
        Some(Qop::AuthInt) => {
            let hbody = hash(algorithm, &[body]);
            hash(
                algorithm,
                &[method.as_bytes(), uri.as_bytes(), hbody.as_bytes()],
            )
        }
        Some(Qop::Auth) | None => hash(algorithm, &[method.as_bytes(), uri.as_bytes()]),
    };

    match qop {
        Some(q) => hash(
            algorithm,
            &[
                ha1.as_bytes(),
                nonce.as_bytes(),
                nc.unwrap_or("").as_bytes(),
                cnonce_b,
                q.as_str().as_bytes(),
                ha2.as_bytes(),
            ],
        ),
        None => hash(
            algorithm,
            &[ha1.as_bytes(), nonce.as_bytes(), ha2.as_bytes()],
        ),
    }
}

/// `H(part0 ":" part1 ":" ...)` as lowercase hex, without building the
/// concatenation.
fn hash(algorithm: Algorithm, parts: &[&[u8]]) -> String {
    fn feed<D: Digest>(mut d: D, parts: &[&[u8]]) -> String {
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                d.update(b":");
            }
            d.update(p);
        }
        hex::encode(d.finalize())
    }
    match algorithm {
        Algorithm::Md5 | Algorithm::Md5Sess => feed(Md5::new(), parts),
        Algorithm::Sha256 | Algorithm::Sha256Sess => feed(Sha256::new(), parts),
    }
}

fn reject_controls(value: &str, field: &'static str) -> Result<(), AuthError> {
    if value.contains(['\r', '\n', '\0']) {
        Err(AuthError::InvalidValue { field })
    } else {
        Ok(())
    }
}

/// Renders `value` as a quoted-string, escaping `"` and `\` (RFC 3261 §25.1).
fn quote(value: &str, field: &'static str) -> Result<String, AuthError> {
    reject_controls(value, field)?;
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// One `name=value` auth-param; `name` is lowercased, `value` unquoted.
#[derive(Debug)]
struct AuthParam {
    name: String,
    value: String,
}

/// Parses `"Digest" 1*SP auth-param *("," auth-param)` (RFC 7235 §2.1,
/// RFC 3261 §25.1 `challenge`) into its params; any other scheme is
/// [`AuthError::UnsupportedScheme`].
fn parse_auth_header(input: &str) -> Result<Vec<AuthParam>, AuthError> {
    let mut lx = Lexer::new(input);
    lx.skip_ws();
    if lx.peek().is_none() {
        return Err(AuthError::Empty);
    }
    let scheme_at = lx.offset();
    let scheme = lx.token();
    if scheme.is_empty() {
        return Err(AuthError::Malformed {
            offset: scheme_at,
            reason: "expected authentication scheme",
        });
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        // Do not try to parse other schemes' syntax (Basic has token68).
        return Err(AuthError::UnsupportedScheme { scheme });
    }
    match lx.peek() {
        None => return Ok(Vec::new()),
        Some(c) if is_ws(c) => {}
        Some(_) => {
            return Err(AuthError::Malformed {
                offset: lx.offset(),
                reason: "expected whitespace after scheme",
            })
        }
    }

    let mut params = Vec::new();
    loop {
        // Liberal: tolerate empty list elements (",,") and stray whitespace.
        while lx.peek().is_some_and(|c| is_ws(c) || c == ',') {
            lx.bump();
        }
        if lx.peek().is_none() {
            break;
        }

        let name_at = lx.offset();
        let name = lx.token();
        if name.is_empty() {
            return Err(AuthError::Malformed {
                offset: name_at,
                reason: "expected parameter name",
            });
        }
        lx.skip_ws();
        if lx.peek() != Some('=') {
            return Err(AuthError::Malformed {
                offset: lx.offset(),
                reason: "expected `=` after parameter name",
            });
        }
        lx.bump();
        lx.skip_ws();

        let value = if lx.peek() == Some('"') {
            lx.quoted_string()?
        } else {
            let at = lx.offset();
            let v = lx.bare_value();
            if v.is_empty() {
                return Err(AuthError::Malformed {
                    offset: at,
                    reason: "expected parameter value",
                });
            }
            v
        };
        params.push(AuthParam {
            name: name.to_ascii_lowercase(),
            value,
        });

        lx.skip_ws();
        match lx.peek() {
            None => break,
            Some(',') => {}
            Some(_) => {
                return Err(AuthError::Malformed {
                    offset: lx.offset(),
                    reason: "expected `,` between parameters",
                })
            }
        }
    }
    Ok(params)
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// A char cursor that reports byte offsets for error messages.
struct Lexer<'a> {
    len: usize,
    it: Peekable<CharIndices<'a>>,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            len: src.len(),
            it: src.char_indices().peekable(),
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.it.peek().map(|&(_, c)| c)
    }

    fn offset(&mut self) -> usize {
        self.it.peek().map_or(self.len, |&(i, _)| i)
    }

    fn bump(&mut self) -> Option<char> {
        self.it.next().map(|(_, c)| c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.bump();
        }
    }

    fn token(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek().filter(|&c| is_token_char(c)) {
            out.push(c);
            self.bump();
        }
        out
    }

    /// An unquoted value. Wider than `token`: servers send unquoted nonces
    /// containing `/`, `=` or `+`, so take any visible character up to the
    /// next delimiter.
    fn bare_value(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self
            .peek()
            .filter(|&c| !is_ws(c) && c != ',' && c != '"' && !c.is_control())
        {
            out.push(c);
            self.bump();
        }
        out
    }

    /// A quoted-string starting at the current `"`, with `\` escapes removed.
    /// CR, LF and NUL are refused: the value may be echoed into a header.
    fn quoted_string(&mut self) -> Result<String, AuthError> {
        let start = self.offset();
        self.bump();
        let mut out = String::new();
        loop {
            let at = self.offset();
            let c = match self.bump() {
                None => return Err(AuthError::UnterminatedQuote { offset: start }),
                Some('"') => return Ok(out),
                Some('\\') => self
                    .bump()
                    .ok_or(AuthError::UnterminatedQuote { offset: start })?,
                Some(c) => c,
            };
            if matches!(c, '\r' | '\n' | '\0') {
                return Err(AuthError::Malformed {
                    offset: at,
                    reason: "control character in quoted string",
                });
            }
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Deliberately independent of the module's parser: a minimal
    /// Authorization-params splitter so that a bug shared by both sides of the
    /// round trip cannot hide.
    fn parse_authorization(value: &str) -> HashMap<String, String> {
        let rest = value.strip_prefix("Digest ").expect("Digest scheme");
        let mut out = HashMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            while matches!(chars.peek(), Some(' ') | Some(',')) {
                chars.next();
            }
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' {
                    break;
                }
                name.push(c);
                chars.next();
            }
            if name.is_empty() {
                break;
            }
            assert_eq!(chars.next(), Some('='));
            let mut v = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next().expect("closing quote") {
                        '"' => break,
                        '\\' => v.push(chars.next().expect("escaped char")),
                        c => v.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    v.push(c);
                    chars.next();
                }
            }
            assert!(out.insert(name.clone(), v).is_none(), "dup {name}");
        }
        out
    }

    /// Recomputes the response from the Authorization params alone, as a
    /// server would.
    fn verify(auth: &HashMap<String, String>, password: &str, method: &str, body: &[u8]) -> bool {
        let alg = Algorithm::from_token(&auth["algorithm"]).unwrap();
        let qop = auth.get("qop").map(|q| match q.as_str() {
            "auth" => Qop::Auth,
            "auth-int" => Qop::AuthInt,
            other => panic!("qop {other}"),
        });
        let expected = digest_response(
            alg,
            &auth["username"],
            &auth["realm"],
            password,
            &auth["nonce"],
            auth.get("nc").map(String::as_str),
            auth.get("cnonce").map(String::as_str),
            qop,
            method,
            &auth["uri"],
            body,
        );
        expected == auth["response"]
    }

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn rfc2617_section_3_5_example() {
        let r = digest_response(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some("00000001"),
            Some("0a4f113b"),
            Some(Qop::Auth),
            "GET",
            "/dir/index.html",
            b"",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc2617_example_through_client() {
        let ch = Challenge::parse(
            "Digest\n realm=\"testrealm@host.com\",\n qop=\"auth,auth-int\",\n \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\n \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""
                .replace('\n', "")
                .as_str(),
        )
        .unwrap();
        let mut c = DigestClient::new();
        let h = c
            .authorize_with_cnonce(
                &ch,
                &creds("Mufasa", "Circle Of Life"),
                "GET",
                "/dir/index.html",
                b"",
                "0a4f113b",
            )
            .unwrap();
        let p = parse_authorization(&h);
        assert_eq!(p["response"], "6629fae49393a05397450978507c4ef1");
        assert_eq!(p["opaque"], "5ccc069c403ebaf9f0171e9517f40e41");
        assert_eq!(p["nc"], "00000001");
        assert_eq!(p["qop"], "auth");
        assert_eq!(p["algorithm"], "MD5");
    }

    #[test]
    fn rfc7616_section_3_9_1_sha256_example() {
        let r = digest_response(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some("00000001"),
            Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
            Some(Qop::Auth),
            "GET",
            "/dir/index.html",
            b"",
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        // The same section's MD5 variant.
        let r = digest_response(
            Algorithm::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some("00000001"),
            Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
            Some(Qop::Auth),
            "GET",
            "/dir/index.html",
            b"",
        );
        assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
    }

    /// auth-int over the RFC 7616 §3.9.1 credentials with a SIP request and
    /// body; expected values computed independently with Python's hashlib.
    #[test]
    fn auth_int_hashes_the_body() {
        for (alg, want) in [
            (Algorithm::Md5, "3dbb0971468cf612bdccd7dff696c5e6"),
            (
                Algorithm::Sha256,
                "21468b02aafd4fe0a3d84bfddaf3618cc087adff4bb3c92d0a5f99c3035fcb9a",
            ),
        ] {
            let r = digest_response(
                alg,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life",
                "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                Some("00000002"),
                Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
                Some(Qop::AuthInt),
                "INVITE",
                "sip:bob@example.org",
                b"v=0\r\n",
            );
            assert_eq!(r, want, "{alg}");
        }
    }

    #[test]
    fn rfc7616_challenge_parses() {
        let ch = Challenge::parse(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
             algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        assert_eq!(ch.qop, vec![Qop::Auth, Qop::AuthInt]);
        let mut c = DigestClient::new();
        let h = c
            .authorize_with_cnonce(
                &ch,
                &creds("Mufasa", "Circle of Life"),
                "GET",
                "/dir/index.html",
                b"",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            )
            .unwrap();
        let p = parse_authorization(&h);
        assert_eq!(
            p["response"],
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(p["algorithm"], "SHA-256");
    }

    #[test]
    fn parse_full_challenge() {
        let ch = Challenge::parse(
            "  dIgEsT   nonce = \"n\\\"1\" ,realm=\"trunk.example\",,stale=TRUE, \
             algorithm=\"md5-SESS\", domain=\"sip:trunk.example\", qop=\"auth-int,foo\", \
             charset=UTF-8, opaque=abc/=+ ",
        )
        .unwrap();
        assert_eq!(
            ch,
            Challenge {
                realm: "trunk.example".into(),
                nonce: "n\"1".into(),
                opaque: Some("abc/=+".into()),
                algorithm: Algorithm::Md5Sess,
                qop: vec![Qop::AuthInt],
                stale: true,
                domain: Some("sip:trunk.example".into()),
            }
        );
    }

    #[test]
    fn defaults_when_absent() {
        let ch = Challenge::parse("Digest realm=r, nonce=n").unwrap();
        assert_eq!(ch.algorithm, Algorithm::Md5);
        assert!(ch.qop.is_empty());
        assert!(!ch.stale);
        assert_eq!(ch.opaque, None);
        assert_eq!(ch.domain, None);
    }

    #[test]
    fn algorithms_parse_case_insensitively() {
        for (s, a) in [
            ("md5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("sha-256", Algorithm::Sha256),
            ("SHA256", Algorithm::Sha256),
            ("SHA-256-SESS", Algorithm::Sha256Sess),
        ] {
            let ch = Challenge::parse(&format!("Digest realm=r, nonce=n, algorithm={s}")).unwrap();
            assert_eq!(ch.algorithm, a, "{s}");
        }
    }

    #[test]
    fn nc_increments_per_nonce_and_resets_for_new_nonce() {
        let mut c = DigestClient::new();
        let cr = creds("u", "p");
        let a = Challenge::parse("Digest realm=r, nonce=\"A\", qop=auth").unwrap();
        let b = Challenge::parse("Digest realm=r, nonce=\"B\", qop=auth").unwrap();
        let nc = |h: String| parse_authorization(&h)["nc"].clone();
        assert_eq!(
            nc(c.authorize(&a, &cr, "INVITE", "sip:x", b"").unwrap()),
            "00000001"
        );
        assert_eq!(
            nc(c.authorize(&a, &cr, "INVITE", "sip:x", b"").unwrap()),
            "00000002"
        );
        assert_eq!(
            nc(c.authorize(&b, &cr, "INVITE", "sip:x", b"").unwrap()),
            "00000001"
        );
        assert_eq!(
            nc(c.authorize(&a, &cr, "BYE", "sip:x", b"").unwrap()),
            "00000003"
        );
        assert_eq!(
            nc(c.authorize(&b, &cr, "INVITE", "sip:x", b"").unwrap()),
            "00000002"
        );
    }

    #[test]
    fn nonce_table_is_bounded() {
        let mut c = DigestClient::new();
        let cr = creds("u", "p");
        for i in 0..(MAX_TRACKED_NONCES * 3) {
            let ch = Challenge::parse(&format!("Digest realm=r, nonce=n{i}, qop=auth")).unwrap();
            c.authorize(&ch, &cr, "INVITE", "sip:x", b"").unwrap();
        }
        assert_eq!(c.counts.len(), MAX_TRACKED_NONCES);
    }

    #[test]
    fn nonce_count_exhaustion_is_an_error_not_a_wrap() {
        let mut c = DigestClient::new();
        c.counts.push_back(("n".into(), u32::MAX));
        let ch = Challenge::parse("Digest realm=r, nonce=n, qop=auth").unwrap();
        let e = c
            .authorize(&ch, &creds("u", "p"), "INVITE", "sip:x", b"")
            .unwrap_err();
        assert_eq!(e, AuthError::NonceCountExhausted);
        // Still exhausted: the count never wraps back to a used value.
        assert!(c
            .authorize(&ch, &creds("u", "p"), "INVITE", "sip:x", b"")
            .is_err());
    }

    #[test]
    fn recently_used_nonce_survives_eviction() {
        let mut c = DigestClient::new();
        let cr = creds("u", "p");
        let hot = Challenge::parse("Digest realm=r, nonce=hot, qop=auth").unwrap();
        c.authorize(&hot, &cr, "INVITE", "sip:x", b"").unwrap();
        for i in 0..(MAX_TRACKED_NONCES * 2) {
            let ch = Challenge::parse(&format!("Digest realm=r, nonce=n{i}, qop=auth")).unwrap();
            c.authorize(&ch, &cr, "INVITE", "sip:x", b"").unwrap();
            c.authorize(&hot, &cr, "INVITE", "sip:x", b"").unwrap();
        }
        let h = c.authorize(&hot, &cr, "INVITE", "sip:x", b"").unwrap();
        let want = format!("{:08x}", MAX_TRACKED_NONCES * 2 + 2);
        assert_eq!(parse_authorization(&h)["nc"], want);
    }

    #[test]
    fn cnonce_is_random_and_hex() {
        let mut c = DigestClient::new();
        let cr = creds("u", "p");
        let ch = Challenge::parse("Digest realm=r, nonce=n, qop=auth").unwrap();
        let a = parse_authorization(&c.authorize(&ch, &cr, "INVITE", "sip:x", b"").unwrap());
        let b = parse_authorization(&c.authorize(&ch, &cr, "INVITE", "sip:x", b"").unwrap());
        assert_ne!(a["cnonce"], b["cnonce"]);
        assert_eq!(a["cnonce"].len(), 32);
        assert!(a["cnonce"].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn round_trip_verifies_for_every_algorithm_and_qop() {
        let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
        let cr = creds("trunk\"user", "trunkpass");
        for alg in ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"] {
            for qop in [
                "",
                ", qop=\"auth\"",
                ", qop=\"auth-int\"",
                ", qop=\"auth-int,auth\"",
            ] {
                let ch = Challenge::parse(&format!(
                    "Digest realm=\"we\\\\ird \\\"realm\\\"\", nonce=\"abc\", \
                     opaque=\"o\", algorithm={alg}{qop}"
                ))
                .unwrap();
                let mut c = DigestClient::new();
                let h = c.authorize(
                    &ch,
                    &cr,
                    "INVITE",
                    "sip:+15551234@trunk.example;user=phone",
                    body,
                );
                if qop.is_empty() && alg.ends_with("-sess") {
                    assert!(matches!(h, Err(AuthError::SessionWithoutQop { .. })));
                    continue;
                }
                let p = parse_authorization(&h.unwrap());
                assert_eq!(p["realm"], "we\\ird \"realm\"");
                assert_eq!(p["username"], "trunk\"user");
                assert_eq!(p["uri"], "sip:+15551234@trunk.example;user=phone");
                assert_eq!(p["opaque"], "o");
                assert_eq!(
                    Algorithm::from_token(&p["algorithm"]).unwrap(),
                    ch.algorithm
                );
                match qop {
                    "" => {
                        assert!(!p.contains_key("qop"));
                        assert!(!p.contains_key("nc"));
                        assert!(!p.contains_key("cnonce"));
                    }
                    ", qop=\"auth-int\"" => assert_eq!(p["qop"], "auth-int"),
                    _ => assert_eq!(p["qop"], "auth"),
                }
                assert!(verify(&p, "trunkpass", "INVITE", body), "{alg}{qop}");
                assert!(!verify(&p, "wrong", "INVITE", body));
                assert!(!verify(&p, "trunkpass", "REGISTER", body));
                if p.get("qop").map(String::as_str) == Some("auth-int") {
                    assert!(!verify(&p, "trunkpass", "INVITE", b"tampered"));
                }
            }
        }
    }

    #[test]
    fn rfc2069_response_without_qop() {
        // H(H(A1):nonce:H(A2)) computed independently.
        let ha1 = hex::encode(Md5::digest(b"u:r:p"));
        let ha2 = hex::encode(Md5::digest(b"INVITE:sip:x"));
        let want = hex::encode(Md5::digest(format!("{ha1}:n:{ha2}").as_bytes()));
        let ch = Challenge::parse("Digest realm=r, nonce=n").unwrap();
        let h = DigestClient::new()
            .authorize(&ch, &creds("u", "p"), "INVITE", "sip:x", b"")
            .unwrap();
        assert_eq!(parse_authorization(&h)["response"], want);
    }

    #[test]
    fn malformed_challenges_are_errors() {
        use AuthError::*;
        type Check = fn(&AuthError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| *e == Empty),
            ("   \t ", |e| *e == Empty),
            (
                "Basic realm=x",
                |e| matches!(e, UnsupportedScheme { scheme } if scheme == "Basic"),
            ),
            ("Bearer", |e| matches!(e, UnsupportedScheme { .. })),
            ("Digest", |e| *e == MissingParam { param: "realm" }),
            ("Digest realm=\"x\"", |e| {
                *e == MissingParam { param: "nonce" }
            }),
            ("Digest nonce=\"x\"", |e| {
                *e == MissingParam { param: "realm" }
            }),
            // The quote swallows `, nonce=` and leaves `y"` dangling.
            ("Digest realm=\"x, nonce=\"y\"", |e| {
                matches!(e, Malformed { offset: 24, .. })
            }),
            ("Digest realm=\"x, nonce=y", |e| {
                *e == UnterminatedQuote { offset: 13 }
            }),
            ("Digest realm=\"x\", nonce=\"y", |e| {
                *e == UnterminatedQuote { offset: 24 }
            }),
            ("Digest realm=\"x\", nonce=\"y\\", |e| {
                matches!(e, UnterminatedQuote { .. })
            }),
            (
                "Digest realm=x, nonce=y, algorithm=SHA-512-256",
                |e| matches!(e, UnsupportedAlgorithm { algorithm } if algorithm == "SHA-512-256"),
            ),
            ("Digest realm=x, nonce=y, qop=\"foo\"", |e| {
                matches!(e, UnsupportedQop { .. })
            }),
            ("Digest realm=x, realm=z, nonce=y", |e| {
                matches!(e, DuplicateParam { .. })
            }),
            ("Digest realm=x nonce=y", |e| matches!(e, Malformed { .. })),
            ("Digest realm, nonce=y", |e| matches!(e, Malformed { .. })),
            ("Digest realm=, nonce=y", |e| matches!(e, Malformed { .. })),
            ("Digest =x", |e| matches!(e, Malformed { .. })),
            ("Digest\"realm=x", |e| {
                matches!(e, UnsupportedScheme { .. } | Malformed { .. })
            }),
            ("Digest realm=\"a\r\nVia: evil\", nonce=y", |e| {
                matches!(e, Malformed { .. })
            }),
            ("Digestrealm=x", |e| matches!(e, UnsupportedScheme { .. })),
            ("\"Digest\" realm=x", |e| matches!(e, Malformed { .. })),
        ];
        for (input, ok) in cases {
            let err = Challenge::parse(input).expect_err(input);
            assert!(ok(&err), "{input:?} gave {err:?}");
            // Display must not panic either.
            let _ = err.to_string();
        }
    }

    #[test]
    fn refuses_to_emit_header_injection() {
        let ch = Challenge::parse("Digest realm=r, nonce=n, qop=auth").unwrap();
        let mut c = DigestClient::new();
        let e = c
            .authorize(&ch, &creds("u\r\nX: y", "p"), "INVITE", "sip:x", b"")
            .unwrap_err();
        assert_eq!(e, AuthError::InvalidValue { field: "username" });
        let e = c
            .authorize(&ch, &creds("u", "p"), "INVITE", "sip:x\n", b"")
            .unwrap_err();
        assert_eq!(e, AuthError::InvalidValue { field: "uri" });
        // A refused request must not have consumed a nonce count.
        let h = c
            .authorize(&ch, &creds("u", "p"), "INVITE", "sip:x", b"")
            .unwrap();
        assert_eq!(parse_authorization(&h)["nc"], "00000001");
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        // Cheap deterministic fuzz: every prefix of valid challenges plus
        // random byte soup drawn from the interesting alphabet.
        let seeds = [
            "Digest realm=\"tr\\\"unk\", nonce=\"abc\", qop=\"auth,auth-int\", algorithm=MD5, opaque=x, stale=true",
            "digest  realm = \"é日本\" , nonce=\"ü\"",
        ];
        for s in seeds {
            for (i, _) in s.char_indices() {
                let _ = Challenge::parse(&s[..i]);
            }
        }
        let alphabet: Vec<char> = "Digest =,\"\\ \trealmnoce qop-auth\r\né".chars().collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5_000 {
            let mut s = String::from("Digest ");
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            if let Ok(ch) = Challenge::parse(&s) {
                let _ =
                    DigestClient::new().authorize(&ch, &creds("u", "p"), "INVITE", "sip:x", b"");
            }
        }
    }
}
