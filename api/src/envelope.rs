//! The `data_enc` envelope of API.md: obfuscation the old apps speak, not security.
//!
//! Request: `{"data_enc": X}`, X = 7 arbitrary characters + base64(plain JSON).
//! Reply: `{"data_enc": Y}`, Y = base64(plain JSON reply) with 2 arbitrary characters
//! inserted after its 3rd character.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::Rng;
use serde_json::{Map, Value};

use crate::Failure;

/// Characters of junk before the base64 text of a request.
const REQUEST_PREFIX_CHARS: usize = 7;
/// Where the 2 junk characters go in a reply.
const REPLY_INSERT_AT: usize = 3;

/// Lenient about padding: some clients strip the trailing `=`.
const DECODE_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, DECODE_CONFIG);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, DECODE_CONFIG);

/// Decodes a request's `data_enc` value into the plain parameter object.
pub(crate) fn decode(value: &Value) -> Result<Map<String, Value>, Failure> {
    let Value::String(text) = value else {
        return Err(Failure::BadDataEnc);
    };
    let mut chars = text.chars();
    for _ in 0..REQUEST_PREFIX_CHARS {
        if chars.next().is_none() {
            return Err(Failure::BadDataEnc);
        }
    }
    // Android's Base64.DEFAULT wraps lines, and a form body whose `+` was not
    // percent-encoded arrives with spaces in its place: undo both.
    let b64: String = chars
        .filter(|c| !matches!(c, '\r' | '\n' | '\t'))
        .map(|c| if c == ' ' { '+' } else { c })
        .collect();
    let bytes = STANDARD_LENIENT
        .decode(b64.as_bytes())
        .or_else(|_| URL_SAFE_LENIENT.decode(b64.as_bytes()))
        .map_err(|_| Failure::BadDataEnc)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Failure::BadDataEnc),
    }
}

/// Wraps a serialized plain reply into `{"data_enc": Y}`.
pub(crate) fn encode(plain_json: &[u8]) -> Vec<u8> {
    let mut b64 = base64::engine::general_purpose::STANDARD.encode(plain_json);
    let mut rng = rand::thread_rng();
    let junk: String = (0..2)
        .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
        .collect();
    // base64 text is ASCII, so a byte index is a char boundary.
    let at = REPLY_INSERT_AT.min(b64.len());
    b64.insert_str(at, &junk);
    let mut out = Vec::with_capacity(b64.len() + 16);
    out.extend_from_slice(b"{\"data_enc\":\"");
    out.extend_from_slice(b64.as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn request_value(plain: &str) -> Value {
        Value::String(format!("abcdefg{}", STANDARD.encode(plain)))
    }

    #[test]
    fn decodes_request() {
        let map = decode(&request_value(r#"{"uuid":"1","num":3}"#)).unwrap();
        assert_eq!(map["uuid"], "1");
        assert_eq!(map["num"], 3);
    }

    #[test]
    fn tolerates_wrapping_spaces_and_missing_padding() {
        let b64 = STANDARD.encode(r#"{"a":"??>>"}"#);
        assert!(b64.contains('+') || b64.contains('/') || b64.ends_with('='));
        let mangled = format!(
            "\u{4e2d}123456{}\n",
            b64.trim_end_matches('=').replace('+', " ")
        );
        let map = decode(&Value::String(mangled)).unwrap();
        assert_eq!(map["a"], "??>>");
    }

    #[test]
    fn rejects_garbage() {
        for v in [
            Value::Null,
            Value::from(5),
            Value::String("short".into()),
            Value::String("1234567!!!!".into()),
            // decodes, but not to an object
            request_value("[1,2]"),
            request_value("not json"),
        ] {
            assert_eq!(decode(&v), Err(Failure::BadDataEnc), "{v}");
        }
    }

    #[test]
    fn encodes_reply() {
        let out = encode(br#"{"status":"ok"}"#);
        let v: Value = serde_json::from_slice(&out).unwrap();
        let y = v["data_enc"].as_str().unwrap();
        let b64 = format!("{}{}", &y[..3], &y[5..]);
        assert_eq!(STANDARD.decode(b64).unwrap(), br#"{"status":"ok"}"#);
    }
}
