//! Parameter extraction: one JSON object out of whatever the request carries.
//!
//! Web pages send GET/DELETE parameters in the query string and POSTs as forms; the apps
//! send JSON bodies, sometimes without a content type, sometimes inside the `data_enc`
//! envelope. All of it is merged into one `serde_json` object (query first, body wins,
//! envelope contents win over both) and then deserialized into the endpoint's wire
//! struct. Form and query values are always strings, so the wire structs use the
//! lenient deserializers of [`de`] where a number or an object is expected.

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{envelope, Failure};

/// The merged parameters of one request.
#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) map: Map<String, Value>,
    /// The request came in a `data_enc` envelope, so the reply goes out in one.
    pub(crate) enveloped: bool,
}

/// Longest `detail` text sent back; serde messages quote the offending value, which
/// may be a whole SDP.
const MAX_DETAIL_CHARS: usize = 200;

/// Reads query string and body (at most `limit` bytes) into [`Params`].
pub(crate) async fn extract(req: Request, limit: usize) -> Result<Params, Failure> {
    let (parts, body) = req.into_parts();
    let mut map = match parts.uri.query() {
        Some(q) => parse_form(q.as_bytes(), "query")?,
        None => Map::new(),
    };
    let body = read_body(&parts.headers, body, limit).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        for (k, v) in parse_body(&parts.headers, &body)? {
            map.insert(k, v);
        }
    }
    if !map.contains_key("token") {
        if let Some(token) = bearer_token(&parts.headers) {
            map.insert("token".to_owned(), Value::String(token));
        }
    }
    match map.remove("data_enc") {
        None => Ok(Params {
            map,
            enveloped: false,
        }),
        Some(enc) => {
            for (k, v) in envelope::decode(&enc)? {
                map.insert(k, v);
            }
            Ok(Params {
                map,
                enveloped: true,
            })
        }
    }
}

/// Deserializes the merged parameters into a wire struct; errors name the field.
///
/// The common case, a valid request, is deserialized without path tracking (which
/// copies every key it passes); only a failure is deserialized again, with tracking,
/// to name the field. Both passes read the same value, so they fail alike.
pub(crate) fn parse<T: DeserializeOwned>(map: Map<String, Value>) -> Result<T, Failure> {
    let value = Value::Object(map);
    if let Ok(wire) = T::deserialize(&value) {
        return Ok(wire);
    }
    match serde_path_to_error::deserialize::<_, T>(&value) {
        Ok(wire) => Ok(wire),
        Err(e) => {
            let path = e.path().to_string();
            let message = e.inner().to_string();
            Err(describe(&path, &message))
        }
    }
}

/// Turns serde's (path, message) into `field: what is wrong`.
fn describe(path: &str, message: &str) -> Failure {
    // Missing fields are reported at the parent's path with the name in the message.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let parent = if path == "." { None } else { Some(path) };
    match (missing, parent) {
        (Some(name), None) => Failure::bad_request(name, "missing"),
        (Some(name), Some(parent)) => Failure::bad_request(format!("{parent}.{name}"), "missing"),
        (None, parent) => Failure::bad_request(parent.unwrap_or("body"), truncate(message)),
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((i, _)) => format!("{}...", s.get(..i).unwrap_or(s)),
        None => s.to_owned(),
    }
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Failure> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Refuse before reading when the client says up front that it is too big.
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Failure::TooLarge { limit });
    }
    // A GET without a body (a status poll) has nothing to collect.
    if body.size_hint().exact() == Some(0) {
        return Ok(Vec::new());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Failure::TooLarge { limit })
        }
        Err(e) => Err(Failure::bad_request(
            "body",
            format!("could not be read: {e}"),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    /// No content type: JSON if it looks like JSON, else a form.
    Unlabelled,
    Other,
}

fn body_kind(headers: &HeaderMap) -> BodyKind {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return BodyKind::Unlabelled;
    };
    let Ok(ct) = ct.to_str() else {
        return BodyKind::Other;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence == "text/json" || essence.ends_with("+json") {
        BodyKind::Json
    } else if essence == "application/x-www-form-urlencoded" {
        BodyKind::Form
    } else {
        BodyKind::Other
    }
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, Failure> {
    let looks_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[');
    match body_kind(headers) {
        BodyKind::Json => parse_json(body),
        BodyKind::Form => parse_form(body, "body"),
        BodyKind::Unlabelled | BodyKind::Other if looks_json => parse_json(body),
        BodyKind::Unlabelled => parse_form(body, "body"),
        BodyKind::Other => Err(Failure::bad_request(
            "body",
            "expected JSON or a form (application/json or application/x-www-form-urlencoded)",
        )),
    }
}

fn parse_json(body: &[u8]) -> Result<Map<String, Value>, Failure> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Failure::bad_request("body", "expected a JSON object")),
        Err(e) => Err(Failure::bad_request(
            "body",
            truncate(&format!("not JSON: {e}")),
        )),
    }
}

fn parse_form(bytes: &[u8], what: &str) -> Result<Map<String, Value>, Failure> {
    // Straight into the map, every value a string. A repeated key: the last one
    // wins, as with JSON objects.
    serde_urlencoded::from_bytes(bytes)
        .map_err(|e| Failure::bad_request(what, format!("not form-urlencoded: {e}")))
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Resolves a field that has two accepted names (`uuid`/`user_id`, ...). The first
/// name wins when both are given.
pub(crate) fn either(
    name: &str,
    alias: &str,
    a: Option<String>,
    b: Option<String>,
) -> Result<String, Failure> {
    a.or(b)
        .ok_or_else(|| Failure::bad_request(name, format!("missing (or {alias})")))
}

/// A required text field that must not be blank.
pub(crate) fn non_empty(name: &str, value: String) -> Result<String, Failure> {
    if value.trim().is_empty() {
        Err(Failure::bad_request(name, "must not be empty"))
    } else {
        Ok(value)
    }
}

/// Longest id accepted where the switch stores what the client sent (account names,
/// device ids, third-party push ids).
pub(crate) const MAX_ID_BYTES: usize = 256;

/// A text field of at most `max` bytes.
pub(crate) fn bounded(name: &str, value: String, max: usize) -> Result<String, Failure> {
    if value.len() > max {
        Err(Failure::bad_request(
            name,
            format!("longer than {max} bytes"),
        ))
    } else {
        Ok(value)
    }
}

/// Longest phone number accepted (E.164 has 15 digits; room for prefixes and `*#`).
const MAX_PHONE_DIGITS: usize = 32;

/// Validates and normalizes a phone number: visual separators (space, `-`, `.`,
/// parentheses) are dropped; what remains must be 1..=32 of `0-9*#`, with an optional
/// leading `+`. The number ends up in a SIP Request-URI, so nothing else gets through.
pub(crate) fn phone(name: &str, value: &str) -> Result<String, Failure> {
    let cleaned: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = cleaned.strip_prefix('+').unwrap_or(&cleaned);
    let ok = !digits.is_empty()
        && digits.len() <= MAX_PHONE_DIGITS
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
    if ok {
        Ok(cleaned)
    } else {
        Err(Failure::bad_request(
            name,
            "expected a phone number: 1 to 32 of 0-9 * #, optional leading +",
        ))
    }
}

/// A phone number that is informational (the device's own number, the numbers an
/// answering app echoes): normalized when it is one, dropped when not, so that a bad
/// value cannot cost the app its calls. `None` stays `None`.
pub(crate) fn lenient_phone(name: &str, value: Option<String>) -> Option<String> {
    let value = value?;
    match phone(name, &value) {
        Ok(p) => Some(p),
        Err(_) => {
            tracing::debug!(field = name, value = %truncate(&value).escape_debug(), "ignoring a value that is not a phone number");
            None
        }
    }
}

/// Lenient deserializers for fields that arrive from forms and query strings as text.
pub(crate) mod de {
    use serde::de::{DeserializeOwned, Error};
    use serde::{Deserialize, Deserializer};
    use serde_json::{Map, Value};

    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    /// Text, or a number taken as its decimal text (apps send phone numbers both ways).
    fn text<E: Error>(v: Value) -> Result<String, E> {
        match v {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(E::custom(format!(
                "expected a string, got {}",
                kind(&other)
            ))),
        }
    }

    pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        text(Value::deserialize(d)?)
    }

    /// Missing, `null` and `""` are all "not given".
    pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            v => text(v).map(|s| (!s.is_empty()).then_some(s)),
        }
    }

    fn unsigned<E: Error>(v: &Value) -> Result<Option<u64>, E> {
        let bad = || E::custom(format!("expected a non-negative integer, got {}", kind(v)));
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => n.as_u64().map(Some).ok_or_else(bad),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => s.trim().parse::<u64>().map(Some).map_err(|_| {
                E::custom(format!(
                    "expected a non-negative integer, got {:?}",
                    super::truncate(s)
                ))
            }),
            _ => Err(bad()),
        }
    }

    fn narrow<T: TryFrom<u64>, E: Error>(n: u64) -> Result<T, E> {
        T::try_from(n).map_err(|_| E::custom(format!("{n} is out of range")))
    }

    /// A number, or its decimal text.
    pub(crate) fn uint<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        match unsigned::<D::Error>(&Value::deserialize(d)?)? {
            Some(n) => narrow(n),
            None => Err(D::Error::custom("expected a non-negative integer")),
        }
    }

    /// [`uint`] where missing, `null` and `""` mean "not given".
    pub(crate) fn opt_uint<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        unsigned::<D::Error>(&Value::deserialize(d)?)?
            .map(narrow)
            .transpose()
    }

    /// Structured data: the value itself, or (from a form) a string holding its JSON.
    fn structured<E: Error>(v: Value) -> Result<Value, E> {
        match v {
            Value::String(s) => serde_json::from_str(&s)
                .map_err(|_| E::custom("expected JSON (an object or array), got a string")),
            v => Ok(v),
        }
    }

    /// A nested struct, from an object or a string holding its JSON.
    pub(crate) fn json<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned,
    {
        let v = structured::<D::Error>(Value::deserialize(d)?)?;
        T::deserialize(v).map_err(|e| D::Error::custom(e.to_string()))
    }

    /// Any JSON object, from an object or a string holding its JSON.
    pub(crate) fn object<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        match structured::<D::Error>(Value::deserialize(d)?)? {
            Value::Object(m) => Ok(m),
            other => Err(D::Error::custom(format!(
                "expected an object, got {}",
                kind(&other)
            ))),
        }
    }

    /// An optional object (`clidata`); `null` and `""` mean "not given".
    pub(crate) fn opt_object<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Map<String, Value>>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Ok(None),
            v => match structured::<D::Error>(v)? {
                Value::Object(m) => Ok(Some(m)),
                other => Err(D::Error::custom(format!(
                    "expected an object, got {}",
                    kind(&other)
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Inner {
        #[serde(deserialize_with = "de::uint")]
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    struct Wire {
        #[serde(deserialize_with = "de::string")]
        uuid: String,
        #[serde(default, deserialize_with = "de::opt_uint")]
        num: Option<u32>,
        #[serde(default, deserialize_with = "de::json")]
        sdp: Option<Inner>,
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn lenient_numbers_and_strings() {
        let w: Wire = parse(obj(
            serde_json::json!({"uuid": 123, "num": "7", "sdp": "{\"port\":\"9\"}"}),
        ))
        .unwrap();
        assert_eq!(w.uuid, "123");
        assert_eq!(w.num, Some(7));
        assert_eq!(w.sdp.unwrap().port, 9);
        let w: Wire = parse(obj(serde_json::json!({"uuid": "a", "num": ""}))).unwrap();
        assert_eq!(w.num, None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (serde_json::json!({}), "uuid", "missing"),
            (serde_json::json!({"uuid": {}}), "uuid", "expected a string"),
            (
                serde_json::json!({"uuid": "a", "num": "x"}),
                "num",
                "non-negative",
            ),
            (
                serde_json::json!({"uuid": "a", "num": -1}),
                "num",
                "non-negative",
            ),
            (
                serde_json::json!({"uuid": "a", "num": 1e20}),
                "num",
                "non-negative",
            ),
            (
                serde_json::json!({"uuid": "a", "num": 99999999999u64}),
                "num",
                "out of range",
            ),
            (
                serde_json::json!({"uuid": "a", "sdp": {}}),
                "sdp.port",
                "missing",
            ),
            (
                serde_json::json!({"uuid": "a", "sdp": {"port": 70000}}),
                "sdp",
                "out of range",
            ),
            (
                serde_json::json!({"uuid": "a", "sdp": "v=0"}),
                "sdp",
                "expected JSON",
            ),
        ];
        for (input, field, detail) in cases {
            match parse::<Wire>(obj(input.clone())) {
                Err(Failure::BadRequest {
                    field: f,
                    detail: d,
                }) => {
                    assert_eq!(f, field, "{input}");
                    assert!(d.contains(detail), "{input}: {d}");
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn phone_numbers() {
        assert_eq!(phone("p", "+86 138-0013 (8000)").unwrap(), "+8613800138000");
        assert_eq!(phone("p", "*86#").unwrap(), "*86#");
        for bad in ["", "+", "abc", "1@host", "1;tag=x", &"1".repeat(33)] {
            assert!(phone("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn informational_numbers_are_normalized_or_dropped() {
        assert_eq!(
            lenient_phone("p", Some("+86 138-0013-8000".into())).as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(lenient_phone("p", Some("alice".into())), None);
        assert_eq!(lenient_phone("p", None), None);
    }

    #[test]
    fn details_are_truncated() {
        let long = "x".repeat(1000);
        assert!(truncate(&long).len() < 220);
        assert_eq!(truncate("short"), "short");
    }
}
