//! The softswitch library.
