//! Reception statistics and call quality (RFC 3550 A.3/A.8, ITU-T G.107).
