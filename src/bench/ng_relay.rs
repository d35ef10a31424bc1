//! The relay side of the ng protocol on top of [`MediaDriver`], so the
//! benchmark drives our relay and rtpengine with the same client and
//! measures each as a separate process (`softswitch-relay`).
//!
//! ```text
//!  offer  (caller's SDP) ─▶ open leg C (remote = caller) + leg E (remote unknown),
//!                           one call group, bridge ─▶ SDP at E's port (for the callee)
//!  answer (callee's SDP) ─▶ update leg E (remote = callee) ─▶ SDP at C's port (for the caller)
//!  delete                ─▶ close both legs
//!  statistics            ─▶ calls, and the driver's own per-packet latency histogram
//! ```
//!
//! Only what the benchmark needs: one audio stream per call, same codec on
//! both sides (payloads pass untouched), no flags, no ICE, no SRTP.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;

use media::driver::{DriverError, LegHandle, MediaDriver};
use media::relay::LegConfig;
use tokio::net::UdpSocket;

use super::bencode::Value;
use super::ng::{self, error_reply, parse_message, MAX_DATAGRAM};

/// Replies remembered for retransmitted requests (by cookie): far more
/// than can be in flight from a client that waits a second per attempt.
const REPLY_CACHE: usize = 4096;

struct Call {
    from_tag: String,
    /// Faces the caller: the caller sends here (its port goes in the answer).
    caller_leg: LegHandle,
    /// Faces the callee: the callee sends here (its port goes in the offer).
    callee_leg: LegHandle,
}

/// The ng server's state: calls by Call-ID and the reply cache.
pub struct NgRelay {
    driver: MediaDriver,
    calls: HashMap<String, Call>,
    next_group: u64,
    cache: HashMap<Vec<u8>, Vec<u8>>,
    cache_order: VecDeque<Vec<u8>>,
}

impl NgRelay {
    pub fn new(driver: MediaDriver) -> NgRelay {
        NgRelay {
            driver,
            calls: HashMap::new(),
            next_group: 0,
            cache: HashMap::new(),
            cache_order: VecDeque::new(),
        }
    }

    /// Serves requests on `sock` until it fails. Requests are handled one
    /// at a time: each costs a few control messages to a media loop, and
    /// the benchmark's client waits for every reply anyway.
    pub async fn serve(&mut self, sock: &UdpSocket) -> io::Result<()> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await?;
            let Some(datagram) = buf.get(..n) else {
                continue;
            };
            if let Some(reply) = self.handle(datagram).await {
                // A client gone away is its problem, not the server's.
                if let Err(e) = sock.send_to(&reply, from).await {
                    tracing::debug!(%from, error = %e, "ng reply not sent");
                }
            }
        }
    }

    /// The reply datagram to one request; None when it has no cookie to
    /// answer with.
    pub async fn handle(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        let (cookie, msg) = match parse_message(datagram) {
            Ok(m) => m,
            Err(e) => {
                // Without a cookie there is nothing a client could match.
                let space = datagram.iter().position(|&b| b == b' ')?;
                let cookie = datagram.get(..space).filter(|c| !c.is_empty())?;
                return Some(ng::frame(cookie, &error_reply(&e.to_string())));
            }
        };
        if let Some(r) = self.cache.get(cookie) {
            return Some(r.clone());
        }
        let reply = match self.command(&msg).await {
            Ok(v) => v,
            Err(reason) => error_reply(&reason),
        };
        let out = ng::frame(cookie, &reply);
        self.remember(cookie.to_vec(), out.clone());
        Some(out)
    }

    /// Stops the media loops.
    pub fn shutdown(self) {
        self.driver.shutdown();
    }

    fn remember(&mut self, cookie: Vec<u8>, reply: Vec<u8>) {
        if self.cache_order.len() >= REPLY_CACHE {
            if let Some(old) = self.cache_order.pop_front() {
                self.cache.remove(&old);
            }
        }
        self.cache_order.push_back(cookie.clone());
        self.cache.insert(cookie, reply);
    }

    async fn command(&mut self, msg: &Value) -> Result<Value, String> {
        let command = msg.get_str("command").ok_or("no command")?;
        match command {
            "ping" => Ok(Value::dict([("result", Value::str("pong"))])),
            "offer" => self.offer(msg).await,
            "answer" => self.answer(msg).await,
            "delete" => self.delete(msg).await,
            "statistics" => Ok(self.statistics()),
            other => Err(format!("unsupported command {other:?}")),
        }
    }

    async fn offer(&mut self, msg: &Value) -> Result<Value, String> {
        let call_id = msg.get_str("call-id").ok_or("no call-id")?;
        let from_tag = msg.get_str("from-tag").ok_or("no from-tag")?;
        let sdp = msg.get_str("sdp").ok_or("no sdp")?;
        let caller = ng::media_address(sdp).ok_or("no audio stream in the SDP")?;
        if let Some(call) = self.calls.get(call_id) {
            // A re-offer: the caller may have moved.
            self.driver
                .update_leg(&call.caller_leg, Some(caller))
                .await
                .map_err(|e| e.to_string())?;
            let local = call.callee_leg.local();
            return Ok(ok_with_sdp(ng::rewrite_sdp(sdp, local)));
        }
        let group = self.next_group;
        self.next_group = self.next_group.wrapping_add(1);
        let rtpmap = ng::first_rtpmap(sdp);
        let leg_cfg = |remote: Option<SocketAddr>| {
            let mut cfg = LegConfig::new(SocketAddr::from(([0, 0, 0, 0], 0)));
            cfg.remote = remote;
            if let Some((_, name, rate)) = &rtpmap {
                cfg.clock_rate = *rate;
                cfg.codec = Some(name.clone());
            }
            cfg
        };
        let (caller_leg, _) = self
            .driver
            .open_leg(group, leg_cfg(Some(caller)))
            .await
            .map_err(|e| e.to_string())?;
        let callee_leg = match self.driver.open_leg(group, leg_cfg(None)).await {
            Ok((leg, _)) => leg,
            Err(e) => {
                self.close(caller_leg).await;
                return Err(e.to_string());
            }
        };
        if let Err(e) = self.driver.bridge(&caller_leg, &callee_leg).await {
            self.close(caller_leg).await;
            self.close(callee_leg).await;
            return Err(e.to_string());
        }
        let local = callee_leg.local();
        self.calls.insert(
            call_id.to_owned(),
            Call {
                from_tag: from_tag.to_owned(),
                caller_leg,
                callee_leg,
            },
        );
        Ok(ok_with_sdp(ng::rewrite_sdp(sdp, local)))
    }

    async fn answer(&mut self, msg: &Value) -> Result<Value, String> {
        let call_id = msg.get_str("call-id").ok_or("no call-id")?;
        let from_tag = msg.get_str("from-tag").ok_or("no from-tag")?;
        msg.get_str("to-tag").ok_or("no to-tag")?;
        let sdp = msg.get_str("sdp").ok_or("no sdp")?;
        let callee = ng::media_address(sdp).ok_or("no audio stream in the SDP")?;
        let call = self.calls.get(call_id).ok_or("unknown call-id")?;
        if call.from_tag != from_tag {
            return Err("from-tag does not match the offer".into());
        }
        self.driver
            .update_leg(&call.callee_leg, Some(callee))
            .await
            .map_err(|e: DriverError| e.to_string())?;
        Ok(ok_with_sdp(ng::rewrite_sdp(sdp, call.caller_leg.local())))
    }

    async fn delete(&mut self, msg: &Value) -> Result<Value, String> {
        let call_id = msg.get_str("call-id").ok_or("no call-id")?;
        let call = self.calls.remove(call_id).ok_or("unknown call-id")?;
        self.close(call.caller_leg).await;
        self.close(call.callee_leg).await;
        Ok(Value::dict([("result", Value::str("ok"))]))
    }

    async fn close(&self, leg: LegHandle) {
        if let Err(e) = self.driver.close_leg(leg).await {
            tracing::warn!(error = %e, "closing a leg failed");
        }
    }

    /// Not rtpengine's layout: only what the benchmark reads. The
    /// histogram is the driver's (receive to the forwarded `send_to`
    /// returning), cumulative per bucket as in Prometheus.
    fn statistics(&self) -> Value {
        let lat = self.driver.latency();
        let to_int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        let bounds_ns = lat
            .bounds_seconds
            .iter()
            .map(|s| to_int((s * 1e9).round() as u64))
            .collect();
        let cumulative = lat.cumulative.iter().map(|&n| to_int(n)).collect();
        Value::dict([
            ("result", Value::str("ok")),
            ("calls", to_int(self.calls.len() as u64)),
            (
                "latency",
                Value::dict([
                    ("bounds-ns", Value::List(bounds_ns)),
                    ("cumulative", Value::List(cumulative)),
                    ("count", to_int(lat.count)),
                    ("sum-ns", to_int((lat.sum_seconds * 1e9) as u64)),
                ]),
            ),
        ])
    }
}

fn ok_with_sdp(sdp: String) -> Value {
    Value::dict([
        ("result", Value::str("ok")),
        ("sdp", Value::Bytes(sdp.into_bytes())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::driver::DriverConfig;
    use std::net::IpAddr;
    use std::time::Duration;

    fn request(cookie: &str, pairs: Vec<(&str, Value)>) -> Vec<u8> {
        ng::frame(cookie.as_bytes(), &Value::dict(pairs))
    }

    fn reply(datagram: Option<Vec<u8>>) -> Value {
        let d = datagram.unwrap();
        parse_message(&d).unwrap().1
    }

    #[tokio::test]
    async fn offer_answer_relay_delete() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let mut cfg = DriverConfig::new(ip, 47000, 47099);
        cfg.loops = 1;
        let mut relay = NgRelay::new(MediaDriver::start(cfg).unwrap());
        let caller = tokio::net::UdpSocket::bind((ip, 0)).await.unwrap();
        let callee = tokio::net::UdpSocket::bind((ip, 0)).await.unwrap();
        let offer = ng::sdp_for(caller.local_addr().unwrap(), &ng::PCMA, 1);
        let msg = request(
            "c1",
            vec![
                ("command", Value::str("offer")),
                ("call-id", Value::str("x")),
                ("from-tag", Value::str("a")),
                ("sdp", Value::str(&offer)),
            ],
        );
        let first = relay.handle(&msg).await;
        // A retransmission gets the same reply, not a second call.
        assert_eq!(relay.handle(&msg).await, first);
        let r = reply(first);
        assert_eq!(r.get_str("result"), Some("ok"), "{r:?}");
        let to_callee_side = ng::media_address(r.get_str("sdp").unwrap()).unwrap();
        assert!((47000..=47099).contains(&to_callee_side.port()));

        let answer = ng::sdp_for(callee.local_addr().unwrap(), &ng::PCMA, 2);
        let r = reply(
            relay
                .handle(&request(
                    "c2",
                    vec![
                        ("command", Value::str("answer")),
                        ("call-id", Value::str("x")),
                        ("from-tag", Value::str("a")),
                        ("to-tag", Value::str("b")),
                        ("sdp", Value::str(&answer)),
                    ],
                ))
                .await,
        );
        let to_caller_side = ng::media_address(r.get_str("sdp").unwrap()).unwrap();
        assert_ne!(to_caller_side, to_callee_side);

        // Caller → relay → callee, payload untouched.
        let mut pkt = vec![0x80, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        pkt.extend_from_slice(b"payload");
        caller.send_to(&pkt, to_caller_side).await.unwrap();
        let mut buf = [0u8; 256];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), callee.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, to_callee_side);
        assert_eq!(&buf[12..n], b"payload");

        let r = reply(
            relay
                .handle(&request(
                    "c3",
                    vec![
                        ("command", Value::str("delete")),
                        ("call-id", Value::str("x")),
                        ("from-tag", Value::str("a")),
                    ],
                ))
                .await,
        );
        assert_eq!(r.get_str("result"), Some("ok"));
        let r = reply(
            relay
                .handle(&request(
                    "c4",
                    vec![
                        ("command", Value::str("delete")),
                        ("call-id", Value::str("x")),
                    ],
                ))
                .await,
        );
        assert_eq!(r.get_str("result"), Some("error"));
        let r = reply(relay.handle(b"c5 d7:command10:statisticse").await);
        assert_eq!(r.get("calls").and_then(Value::as_int), Some(0));
        assert!(relay.handle(b"garbage").await.is_none());
        let r = reply(relay.handle(b"c6 d7:commande").await);
        assert_eq!(r.get_str("result"), Some("error"));
        relay.shutdown();
    }
}
