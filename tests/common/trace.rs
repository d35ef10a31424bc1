//! The messages a SIPp run logged with `-trace_msg` (`*_messages.log`).

// Each test binary uses only some of these helpers (as in `mod.rs`).
#![allow(dead_code)]

use super::{wait_until, Sipp, SHORT};
use std::net::SocketAddr;
use std::time::Duration;

/// One message from a SIPp `-trace_msg` log (its lines trimmed).
#[derive(Debug, Clone)]
pub struct Traced {
    /// Sent by SIPp (else received).
    pub sent: bool,
    pub start_line: String,
    pub call_id: String,
    pub cseq: String,
    /// `c=` address and `m=audio` port of the SDP body, if any.
    pub sdp: Option<(String, u16)>,
    pub text: String,
}

impl Traced {
    pub fn is_request(&self, method: &str) -> bool {
        self.start_line.starts_with(&format!("{method} "))
    }

    /// A 200 to an INVITE.
    pub fn is_invite_200(&self) -> bool {
        self.start_line.starts_with("SIP/2.0 200") && self.cseq.ends_with(" INVITE")
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        self.start_line
            .strip_prefix("SIP/2.0 ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The `m=audio` line ("" if there is none).
    pub fn m_audio(&self) -> &str {
        self.text
            .lines()
            .find(|l| l.starts_with("m=audio "))
            .unwrap_or_default()
    }

    /// The formats of the `m=audio` line (after port and protocol).
    pub fn formats(&self) -> Vec<&str> {
        sdp_formats(&self.text)
    }

    /// The value of `a=<attr>:<pt> ...` for payload type `pt`.
    pub fn attr(&self, attr: &str, pt: u8) -> Option<&str> {
        let prefix = format!("a={attr}:{pt} ");
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
    }

    /// `c=` address and `m=audio` port of the SDP body.
    pub fn media_addr(&self) -> SocketAddr {
        let (ip, port) = self
            .sdp
            .as_ref()
            .unwrap_or_else(|| panic!("no c=/m=audio in\n{}", self.text));
        SocketAddr::new(ip.parse().expect("c= address"), *port)
    }

    /// The user part of the Request-URI.
    pub fn ruri_user(&self) -> &str {
        let uri = self
            .start_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default();
        let user = uri.strip_prefix("sip:").unwrap_or(uri);
        user.split('@').next().unwrap_or_default()
    }
}

/// The formats of the `m=audio` line of a message's SDP (after port and
/// protocol; none without one).
pub fn sdp_formats(text: &str) -> Vec<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .map(|m| m.split_whitespace().skip(2).collect())
        .unwrap_or_default()
}

/// Every message of `sipp`'s `*_messages.log` (empty until the file exists).
pub fn traced(sipp: &Sipp) -> Vec<Traced> {
    let mut out = Vec::new();
    for f in sipp.files_ending("_messages.log") {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
        for block in text.split("-----------------------------------------------") {
            let mut lines = block.lines().skip(1); // the rest of the separator line
            let Some(kind) = lines.next() else { continue };
            let sent = kind.contains("message sent");
            if !sent && !kind.contains("message received") {
                continue;
            }
            let msg: Vec<&str> = lines
                .skip_while(|l| l.trim().is_empty())
                .map(str::trim)
                .collect();
            let Some(start_line) = msg.first() else {
                continue;
            };
            let header = |name: &str| -> String {
                msg.iter()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case(name)
                            .then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            let conn = msg
                .iter()
                .find_map(|l| l.strip_prefix("c=IN IP4 "))
                .map(|a| a.trim().to_owned());
            let port = msg.iter().find_map(|l| {
                l.strip_prefix("m=audio ")?
                    .split_whitespace()
                    .next()?
                    .parse::<u16>()
                    .ok()
            });
            out.push(Traced {
                sent,
                start_line: (*start_line).to_owned(),
                call_id: header("Call-ID"),
                cseq: header("CSeq"),
                sdp: conn.zip(port),
                text: msg.join("\n"),
            });
        }
    }
    out
}

/// Polls `sipp`'s message log for up to `timeout` until `pick` finds
/// something.
fn poll_traced<T>(
    sipp: &Sipp,
    timeout: Duration,
    mut pick: impl FnMut(&[Traced]) -> Option<T>,
) -> Option<T> {
    let mut found = None;
    let ok = wait_until(timeout, || {
        found = pick(&traced(sipp));
        found.is_some()
    });
    found.filter(|_| ok)
}

/// Polls `sipp`'s message log until `pick` finds something (or `timeout`
/// passes, which fails the test).
pub fn wait_traced<T>(
    sipp: &Sipp,
    what: &str,
    timeout: Duration,
    pick: impl FnMut(&[Traced]) -> Option<T>,
) -> T {
    poll_traced(sipp, timeout, pick).unwrap_or_else(|| {
        panic!(
            "no {what} in sipp {}'s message log\n{}",
            sipp.name,
            sipp.report()
        )
    })
}

/// Waits up to [`SHORT`] until `sipp` logged a received message that `pick`
/// accepts (the first one).
pub fn wait_received(sipp: &Sipp, what: &str, pick: impl Fn(&Traced) -> bool) -> Traced {
    poll_traced(sipp, SHORT, |msgs| {
        msgs.iter().find(|m| !m.sent && pick(m)).cloned()
    })
    .unwrap_or_else(|| {
        panic!(
            "sipp {} logged no {what} within {SHORT:?}\n{}",
            sipp.name,
            sipp.report()
        )
    })
}
