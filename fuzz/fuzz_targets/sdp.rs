//! Any bytes as an SDP body: nothing panics, and a description that parses
//! serializes into one that parses again with the same media count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::sdp::SessionDescription;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = SessionDescription::parse(data) {
        let wire = sdp.to_bytes();
        match SessionDescription::parse(&wire) {
            Ok(again) => assert_eq!(
                sdp.media.len(),
                again.media.len(),
                "media lost in:\n{}",
                String::from_utf8_lossy(&wire)
            ),
            Err(e) => panic!(
                "serialized SDP does not parse again ({e}):\n{}",
                String::from_utf8_lossy(&wire)
            ),
        }
    }
});
