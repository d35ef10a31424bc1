//! What the sans-IO core exchanges with the transport drivers.

use bytes::Bytes;
use std::fmt;
use std::net::SocketAddr;

/// The transport protocols the switch speaks (RFC 3261 §18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// Reliable transports get no retransmissions (RFC 3261 §17.1.1.2).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    /// The Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message the core wants on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub transport: Transport,
    pub destination: SocketAddr,
    pub payload: Bytes,
}

/// One whole message from the wire (a datagram, or one framed stream message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub transport: Transport,
    pub source: SocketAddr,
    pub payload: Bytes,
}
