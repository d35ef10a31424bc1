//! What each leg of a call sends and expects, from its SDP, so the relay can
//! decide per packet between plain forwarding, a payload-type rewrite, an
//! AMR payload-mode conversion and transcoding.
//!
//! ```text
//!  leg X format ─┐
//!                ├─ equal / unknown ─▶ in-place forward (today's path)
//!  leg Y format ─┤  same encoding, other PT ─▶ PT rewritten in place
//!                ├─ AMR, other payload mode ─▶ amr::convert (no decoding)
//!                └─ other encodings ─▶ Transcoder (feature `transcode`)
//! ```

/// What one side of a call sends and expects on its leg, from its SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegFormat {
    /// The payload type of the audio codec on this leg.
    pub payload_type: u8,
    pub encoding: Encoding,
    /// RFC 4733 telephone-event payload type, if negotiated on this leg.
    pub dtmf_payload_type: Option<u8>,
}

/// An audio encoding, as far as the relay needs to tell encodings apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Pcmu,
    Pcma,
    /// AMR (`wideband: false`, 8 kHz) or AMR-WB (16 kHz), RFC 4867, in the
    /// octet-aligned or the bandwidth-efficient payload mode.
    Amr {
        wideband: bool,
        octet_aligned: bool,
    },
    Opus,
    /// Anything else: forwarded between legs of the same encoding, never
    /// transcoded.
    Other {
        clock_rate: u32,
    },
}

impl Encoding {
    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Encoding::Pcmu | Encoding::Pcma => 8000,
            Encoding::Amr {
                wideband: false, ..
            } => 8000,
            Encoding::Amr { wideband: true, .. } => 16000,
            // RFC 7587 §4.1: always 48000 whatever the audio bandwidth.
            Encoding::Opus => 48000,
            Encoding::Other { clock_rate } => clock_rate,
        }
    }

    /// The encoding of an `a=rtpmap` name (case-insensitive) with its clock
    /// rate and `a=fmtp` parameters. An AMR name with a clock rate other
    /// than its own is not that codec and falls to `Other`, as does any
    /// name the relay cannot process.
    pub fn from_sdp(name: &str, clock_rate: u32, fmtp: Option<&str>) -> Encoding {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("PCMU") && clock_rate == 8000 {
            Encoding::Pcmu
        } else if is("PCMA") && clock_rate == 8000 {
            Encoding::Pcma
        } else if is("AMR") && clock_rate == 8000 {
            Encoding::Amr {
                wideband: false,
                octet_aligned: octet_align(fmtp),
            }
        } else if is("AMR-WB") && clock_rate == 16000 {
            Encoding::Amr {
                wideband: true,
                octet_aligned: octet_align(fmtp),
            }
        } else if is("opus") && clock_rate == 48000 {
            Encoding::Opus
        } else {
            Encoding::Other { clock_rate }
        }
    }
}

/// `octet-align=1` in an fmtp parameter list (RFC 4867 §8.1: absent or 0
/// means bandwidth-efficient). Parameters are `;`-separated `name=value`
/// pairs; names are case-insensitive, whitespace around them is ignored.
fn octet_align(fmtp: Option<&str>) -> bool {
    fmtp.into_iter()
        .flat_map(|f| f.split(';'))
        .filter_map(|p| p.split_once('='))
        .any(|(k, v)| k.trim().eq_ignore_ascii_case("octet-align") && v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_from_sdp() {
        assert_eq!(Encoding::from_sdp("pcmu", 8000, None), Encoding::Pcmu);
        assert_eq!(Encoding::from_sdp("PCMA", 8000, None), Encoding::Pcma);
        assert_eq!(
            Encoding::from_sdp("AMR", 8000, Some("mode-change-capability=2")),
            Encoding::Amr {
                wideband: false,
                octet_aligned: false
            }
        );
        assert_eq!(
            Encoding::from_sdp("amr-wb", 16000, Some("mode-set=0,1,2; Octet-Align=1")),
            Encoding::Amr {
                wideband: true,
                octet_aligned: true
            }
        );
        assert_eq!(
            Encoding::from_sdp("AMR", 8000, Some("octet-align=0")),
            Encoding::Amr {
                wideband: false,
                octet_aligned: false
            }
        );
        assert_eq!(Encoding::from_sdp("OPUS", 48000, None), Encoding::Opus);
        assert_eq!(
            Encoding::from_sdp("G722", 8000, None),
            Encoding::Other { clock_rate: 8000 }
        );
        // A known name at a foreign clock rate is not that codec.
        assert_eq!(
            Encoding::from_sdp("AMR", 16000, None),
            Encoding::Other { clock_rate: 16000 }
        );
    }

    #[test]
    fn clock_rates() {
        let rates = [
            (Encoding::Pcmu, 8000),
            (Encoding::Pcma, 8000),
            (
                Encoding::Amr {
                    wideband: false,
                    octet_aligned: true,
                },
                8000,
            ),
            (
                Encoding::Amr {
                    wideband: true,
                    octet_aligned: false,
                },
                16000,
            ),
            (Encoding::Opus, 48000),
            (Encoding::Other { clock_rate: 90000 }, 90000),
        ];
        for (e, rate) in rates {
            assert_eq!(e.clock_rate(), rate, "{e:?}");
        }
    }
}
