//! A minimal libpcap ("classic" format, microsecond timestamps) writer for
//! the tests that hand captures to `tshark`: link type 101 (LINKTYPE_RAW,
//! each record is a bare IPv4 packet), one UDP datagram per record, IPv4
//! header and UDP checksums computed (RFC 791, RFC 768).

/// LINKTYPE_RAW: the record starts with the IP header.
const LINKTYPE_RAW: u32 = 101;

/// An in-memory capture file.
pub struct PcapWriter {
    bytes: Vec<u8>,
    ip_id: u16,
}

impl PcapWriter {
    pub fn new() -> PcapWriter {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xA1B2_C3D4_u32.to_le_bytes()); // magic, µs
        bytes.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        bytes.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        bytes.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
        bytes.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        PcapWriter { bytes, ip_id: 1 }
    }

    /// Appends one IPv4/UDP datagram captured at `ts_us` microseconds
    /// since the epoch.
    pub fn udp(&mut self, ts_us: u64, src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) {
        let udp_len = u16::try_from(8 + payload.len()).expect("UDP length");
        let total_len = 20 + udp_len;

        let mut ip = [0u8; 20];
        ip[0] = 0x45; // version 4, IHL 5
        ip[2..4].copy_from_slice(&total_len.to_be_bytes());
        ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64; // TTL
        ip[9] = 17; // UDP
        ip[12..16].copy_from_slice(&src.0);
        ip[16..20].copy_from_slice(&dst.0);
        let ip_sum = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);

        let mut udp = [0u8; 8];
        udp[0..2].copy_from_slice(&src.1.to_be_bytes());
        udp[2..4].copy_from_slice(&dst.1.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        // Pseudo-header: source, destination, zero, protocol, UDP length.
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.0);
        pseudo[4..8].copy_from_slice(&dst.0);
        pseudo[9] = 17;
        pseudo[10..12].copy_from_slice(&udp_len.to_be_bytes());
        let udp_sum = match checksum(&[&pseudo, &udp, payload]) {
            0 => 0xFFFF, // RFC 768: a computed zero is sent as all ones
            s => s,
        };
        udp[6..8].copy_from_slice(&udp_sum.to_be_bytes());

        let len = u32::from(total_len);
        let sec = u32::try_from(ts_us / 1_000_000).expect("timestamp seconds");
        let usec = u32::try_from(ts_us % 1_000_000).expect("timestamp µs");
        for field in [sec, usec, len, len] {
            self.bytes.extend_from_slice(&field.to_le_bytes());
        }
        self.bytes.extend_from_slice(&ip);
        self.bytes.extend_from_slice(&udp);
        self.bytes.extend_from_slice(payload);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut pending: Option<u8> = None;
    for &byte in parts.iter().flat_map(|p| p.iter()) {
        match pending.take() {
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
            None => pending = Some(byte),
        }
    }
    if let Some(high) = pending {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn checksum_of_the_rfc_1071_example() {
    // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2, complement 220d.
    assert_eq!(
        checksum(&[&[0x00, 0x01, 0xF2], &[0x03, 0xF4, 0xF5, 0xF6, 0xF7]]),
        0x220D
    );
}
