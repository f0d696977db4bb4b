//! Strict JSON for the native API's request bodies: a value tree that
//! refuses a member given twice in one object (a proxy and an upstream
//! could each read a different copy), and that serialises canonically
//! (members sorted by name, no insignificant white space), so one parsed
//! value has exactly one byte form to key and to forward.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use zeroize::Zeroize as _;

/// A JSON value whose objects keep their members sorted by name.
///
/// Strings are wiped on drop: a body holds passwords and refresh tokens.
#[derive(Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    /// The string, if this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(text) => Some(text),
            _ => None,
        }
    }

    /// Whether this is an object whose every member is a string (the
    /// shape of `AuthParameters` and `ClientMetadata`).
    pub(crate) fn is_string_map(&self) -> bool {
        matches!(self, Self::Object(members) if members.values().all(|v| v.as_str().is_some()))
    }

    /// The object's members, if this is one.
    pub(crate) fn as_object(&self) -> Option<&BTreeMap<String, Json>> {
        match self {
            Self::Object(members) => Some(members),
            _ => None,
        }
    }
}

impl fmt::Debug for Json {
    /// The shape only: values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(_) => f.write_str("bool"),
            Self::Number(_) => f.write_str("number"),
            Self::String(_) => f.write_str("string"),
            Self::Array(items) => f.debug_list().entries(items).finish(),
            Self::Object(members) => f.debug_map().entries(members).finish(),
        }
    }
}

impl Drop for Json {
    fn drop(&mut self) {
        if let Self::String(text) = self {
            text.zeroize();
        }
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => serializer.serialize_unit(),
            Self::Bool(value) => serializer.serialize_bool(*value),
            Self::Number(number) => number.serialize(serializer),
            Self::String(text) => serializer.serialize_str(text),
            Self::Array(items) => serializer.collect_seq(items),
            Self::Object(members) => serializer.collect_map(members),
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Json, E> {
        Ok(Json::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Json, E> {
        Ok(Json::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Json, E> {
        Ok(Json::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(value)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Json, E> {
        Ok(Json::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Json, E> {
        Ok(Json::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Json, A::Error> {
        let mut array = Vec::with_capacity(items.size_hint().unwrap_or(0).min(64));
        while let Some(item) = items.next_element::<Json>()? {
            array.push(item);
        }
        Ok(Json::Array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Json, A::Error> {
        let mut object = BTreeMap::new();
        while let Some(name) = members.next_key::<String>()? {
            if object.contains_key(&name) {
                return Err(de::Error::custom(format_args!(
                    "member `{}` is given twice",
                    printable(&name)
                )));
            }
            let value = members.next_value::<Json>()?;
            object.insert(name, value);
        }
        Ok(Json::Object(object))
    }
}

/// A member name fit for an error message: printable ASCII, bounded.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

/// Why a body is not strict JSON; the text names a place, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError(pub(crate) String);

/// Parses `body` strictly: valid JSON, nothing after it, no member given
/// twice in one object, at most serde_json's nesting depth (128).
pub(crate) fn parse(body: &[u8]) -> Result<Json, JsonError> {
    serde_json::from_slice::<Json>(body).map_err(|error| {
        let text = match error.classify() {
            // Only our own messages (a repeated member, a number out of
            // range) are data errors: every value is accepted otherwise.
            serde_json::error::Category::Data => error.to_string(),
            serde_json::error::Category::Io
            | serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof => format!(
                "the body is not valid JSON (line {}, column {})",
                error.line(),
                error.column()
            ),
        };
        JsonError(text)
    })
}

/// The canonical bytes of `value`: members sorted by name, no white
/// space, strings escaped as serde_json escapes them.
pub(crate) fn canonical(value: &Json) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(256));
    // Writing JSON values into a Vec cannot fail: there is no I/O, and
    // every key is a string.
    let _ = serde_json::to_writer(&mut *out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_members_are_refused_at_any_depth() {
        for body in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":1}}"#,
            r#"{"a":[{"c":null,"c":null}]}"#,
            // The same name, escaped differently, is the same member.
            r#"{"PASSWORD":"x","PASSWOR\u0044":"y"}"#,
        ] {
            let error = parse(body.as_bytes()).unwrap_err();
            assert!(error.0.contains("given twice"), "{body}: {}", error.0);
        }
    }

    #[test]
    fn canonical_form_sorts_members_and_drops_white_space() {
        let value =
            parse(br#" { "b" : [ 1 , "\u00e9" ] , "a" : { "z" : true , "y" : null } } "#).unwrap();
        let text = String::from_utf8(canonical(&value).to_vec()).unwrap();
        assert_eq!(text, r#"{"a":{"y":null,"z":true},"b":[1,"é"]}"#);
    }

    #[test]
    fn syntax_errors_name_a_place_not_a_value() {
        let error = parse(br#"{"PASSWORD":"hunter2"#).unwrap_err();
        assert!(!error.0.contains("hunter2"), "{}", error.0);
        assert!(error.0.contains("not valid JSON"), "{}", error.0);
        assert!(parse(br#"{"a":1} x"#).is_err());
    }

    #[test]
    fn debug_shows_the_shape_only() {
        let value = parse(br#"{"PASSWORD":"hunter2","n":[1]}"#).unwrap();
        let printed = format!("{value:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("PASSWORD"), "{printed}");
    }
}
