//! RTCP compound packets (RFC 3550 §6, RFC 3611).
