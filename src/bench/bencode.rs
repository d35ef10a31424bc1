//! Bencode (BEP 3), the encoding of rtpengine's ng control protocol:
//! integers `i42e`, byte strings `4:spam`, lists `l...e`, dictionaries
//! `d...e` with byte-string keys in sorted order.
//!
//! Decoding is strict enough for a control socket that anyone on loopback
//! can write to: bounded nesting, no leading zeros, no negative zero,
//! lengths checked against the input, no duplicate keys, trailing bytes
//! rejected. Keys out of order are accepted: BEP 3 asks for sorted keys,
//! but rtpengine does not sort its replies.

use std::collections::BTreeMap;
use std::fmt;

/// Deepest nesting accepted: ng messages are two levels deep (a dictionary
/// holding lists of flags); the bound keeps a hostile datagram from
/// exhausting the stack.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// Keys are kept sorted (as bencode requires on the wire) by the map.
    Dict(BTreeMap<Vec<u8>, Value>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset where decoding failed.
    pub at: usize,
    pub problem: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bencode: {} at byte {}", self.problem, self.at)
    }
}

impl std::error::Error for DecodeError {}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from (key, value) pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The entry `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The value as bytes, if it is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The value as UTF-8 text, if it is a byte string holding some.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// `get(key)` as text.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes exactly one value filling all of `input`.
    pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
        let mut d = Decoder { input, pos: 0 };
        let v = d.value(0)?;
        if d.pos != input.len() {
            return Err(d.err("trailing bytes"));
        }
        Ok(v)
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn err(&self, problem: &'static str) -> DecodeError {
        DecodeError {
            at: self.pos,
            problem,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn expect(&mut self, b: u8, problem: &'static str) -> Result<(), DecodeError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(problem))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            Some(b'i') => {
                self.pos += 1;
                let i = self.integer(b'e')?;
                Ok(Value::Int(i))
            }
            Some(b'l') => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek() != Some(b'e') {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            Some(b'd') => {
                self.pos += 1;
                let mut d = BTreeMap::new();
                while self.peek() != Some(b'e') {
                    let at = self.pos;
                    let key = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    // Any order is taken (rtpengine writes "sdp" before
                    // "result"), but not the same key twice.
                    if d.insert(key, v).is_some() {
                        return Err(DecodeError {
                            at,
                            problem: "duplicate dictionary key",
                        });
                    }
                }
                self.pos += 1;
                Ok(Value::Dict(d))
            }
            Some(b'0'..=b'9') => Ok(Value::Bytes(self.bytes()?)),
            Some(_) => Err(self.err("unexpected byte")),
            None => Err(self.err("unexpected end")),
        }
    }

    /// Digits (optionally negative) up to `end`, which is consumed.
    fn integer(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b != end) {
            self.pos += 1;
        }
        let digits = self
            .input
            .get(start..self.pos)
            .ok_or_else(|| self.err("unexpected end"))?;
        self.expect(end, "unterminated integer")?;
        let text = std::str::from_utf8(digits).map_err(|_| self.err("bad integer"))?;
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let canonical = !unsigned.is_empty()
            && unsigned.bytes().all(|b| b.is_ascii_digit())
            && (unsigned == "0" || !unsigned.starts_with('0'))
            && text != "-0";
        if !canonical {
            return Err(self.err("bad integer"));
        }
        text.parse().map_err(|_| self.err("integer out of range"))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.err("expected a byte string"));
        }
        let len = self.integer(b':')?;
        let len = usize::try_from(len).map_err(|_| self.err("negative length"))?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or_else(|| self.err("length out of range"))?;
        let b = self
            .input
            .get(self.pos..end)
            .ok_or_else(|| self.err("string longer than the input"))?
            .to_vec();
        self.pos = end;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_an_ng_offer() {
        let v = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("c1")),
            ("from-tag", Value::str("ft")),
            ("sdp", Value::str("v=0\r\n")),
            ("flags", Value::List(vec![Value::str("trust-address")])),
            ("n", Value::Int(-12)),
        ]);
        let wire = v.encode();
        // Keys sorted on the wire, whatever order they were given in.
        assert_eq!(
            wire,
            b"d7:call-id2:c17:command5:offer5:flagsl13:trust-addresse8:from-tag2:ft1:ni-12e3:sdp5:v=0\r\ne"
                .to_vec()
        );
        assert_eq!(Value::decode(&wire), Ok(v.clone()));
        assert_eq!(v.get_str("command"), Some("offer"));
        assert_eq!(v.get("n").and_then(Value::as_int), Some(-12));
    }

    #[test]
    fn decodes_what_rtpengine_answers() {
        let v = Value::decode(b"d6:result4:ponge").unwrap();
        assert_eq!(v.get_str("result"), Some("pong"));
        let v = Value::decode(b"d6:result5:error12:error-reason3:bade").unwrap();
        assert_eq!(v.get_str("error-reason"), Some("bad"));
        // Unsorted, as rtpengine sends its offer reply.
        let v = Value::decode(b"d3:sdp3:v=06:result2:oke").unwrap();
        assert_eq!(
            (v.get_str("result"), v.get_str("sdp")),
            (Some("ok"), Some("v=0"))
        );
        assert_eq!(Value::decode(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(Value::decode(b"0:"), Ok(Value::Bytes(Vec::new())));
        assert_eq!(Value::decode(b"le"), Ok(Value::List(Vec::new())));
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            &b""[..],
            b"i01e",
            b"i-0e",
            b"ie",
            b"i12",
            b"5:abc",
            b"d1:a1:x1:a1:ye",
            b"l",
            b"d3:keye",
            b"x",
            b"i1ei2e",
            b"-1:a",
            b"99999999999999999999:a",
        ] {
            assert!(
                Value::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "l".repeat(100) + &"e".repeat(100);
        assert!(Value::decode(deep.as_bytes()).is_err());
    }
}
