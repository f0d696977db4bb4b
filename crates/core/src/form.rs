//! A strict `application/x-www-form-urlencoded` decoder.
//!
//! Strict where the WHATWG decoder is lenient: a `%` not followed by two hex
//! digits and bytes that do not decode to UTF-8 are errors, not passed
//! through, because a token request that two parsers could read differently
//! must not reach the cache.

use std::borrow::Cow;

/// Why a form (or one of its components) could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormError {
    /// A `%` not followed by two hexadecimal digits.
    BadPercentEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
    /// A pair with an empty name, such as `=value`.
    EmptyName,
}

impl FormError {
    pub(crate) const fn describe(self) -> &'static str {
        match self {
            Self::BadPercentEscape => "malformed percent-encoding in form",
            Self::NotUtf8 => "form is not valid UTF-8",
            Self::EmptyName => "form has a parameter without a name",
        }
    }
}

/// Decodes `input` into `(name, value)` pairs, in order, calling `visit` for
/// each. Empty segments (`a=1&&b=2`) are skipped; a name without `=` has an
/// empty value.
pub(crate) fn for_each_pair<'a>(
    input: &'a [u8],
    mut visit: impl FnMut(Cow<'a, str>, Cow<'a, str>) -> Result<(), FormError>,
) -> Result<(), FormError> {
    // One UTF-8 check of the whole form: its components split at ASCII
    // bytes, so each is valid UTF-8 too, and only a decoded one (its `%XX`
    // bytes) needs checking again. (A check per component cost the hit path
    // four calls where one does.)
    let input = std::str::from_utf8(input).map_err(|_| FormError::NotUtf8)?;
    for segment in input.split('&') {
        if segment.is_empty() {
            continue;
        }
        let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
        if name.is_empty() {
            return Err(FormError::EmptyName);
        }
        visit(decode_text(name)?, decode_text(value)?)?;
    }
    Ok(())
}

/// Decodes one form component: `+` is a space, `%XX` a byte.
pub(crate) fn decode_component(input: &[u8]) -> Result<Cow<'_, str>, FormError> {
    if needs_decoding(input) {
        return decode(input).map(Cow::Owned);
    }
    std::str::from_utf8(input)
        .map(Cow::Borrowed)
        .map_err(|_| FormError::NotUtf8)
}

/// [`decode_component`] of a component already known to be UTF-8.
fn decode_text(input: &str) -> Result<Cow<'_, str>, FormError> {
    if needs_decoding(input.as_bytes()) {
        return decode(input.as_bytes()).map(Cow::Owned);
    }
    Ok(Cow::Borrowed(input))
}

fn needs_decoding(input: &[u8]) -> bool {
    input.iter().any(|&b| b == b'%' || b == b'+')
}

fn decode(input: &[u8]) -> Result<String, FormError> {
    let mut decoded = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&byte, tail)) = rest.split_first() {
        match byte {
            b'+' => {
                decoded.push(b' ');
                rest = tail;
            }
            b'%' => {
                let (hi, lo) = match tail {
                    [hi, lo, ..] => (hex_value(*hi), hex_value(*lo)),
                    _ => (None, None),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(FormError::BadPercentEscape);
                };
                decoded.push(hi << 4 | lo);
                rest = &tail[2..];
            }
            other => {
                decoded.push(other);
                rest = tail;
            }
        }
    }
    String::from_utf8(decoded).map_err(|_| FormError::NotUtf8)
}

/// Builds an `application/x-www-form-urlencoded` string: unreserved bytes
/// (`A-Z a-z 0-9 * - . _`) as they are, space as `+`, every other byte as
/// `%XX`, the way the WHATWG serialiser does. The buffer can hold a client
/// secret, so it is wiped when dropped.
pub(crate) struct Encoder(zeroize::Zeroizing<String>);

impl Encoder {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(zeroize::Zeroizing::new(String::with_capacity(capacity)))
    }

    /// Appends `name=value`.
    pub(crate) fn pair(&mut self, name: &str, value: &str) {
        self.start(name);
        encode_into(&mut self.0, value);
    }

    /// Appends `name=` and `values` joined by `separator`.
    pub(crate) fn pair_joined(&mut self, name: &str, values: &[&str], separator: char) {
        self.start(name);
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                let mut utf8 = [0u8; 4];
                encode_into(&mut self.0, separator.encode_utf8(&mut utf8));
            }
            encode_into(&mut self.0, value);
        }
    }

    fn start(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        encode_into(&mut self.0, name);
        self.0.push('=');
    }

    pub(crate) fn finish(self) -> zeroize::Zeroizing<String> {
        self.0
    }
}

fn encode_into(out: &mut String, value: &str) {
    for &byte in value.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => push_escape(out, byte),
        }
    }
}

/// Appends one half of Basic credentials, escaping only the bytes that
/// [`decode_component`] would read differently (`%`, `+`, space) and, in
/// the client id, the `:` that would end it.
pub(crate) fn escape_basic_component(out: &mut String, value: &str, is_id: bool) {
    for character in value.chars() {
        match character {
            '%' | '+' | ' ' => push_escape(out, character as u8),
            ':' if is_id => push_escape(out, b':'),
            other => out.push(other),
        }
    }
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xF)]));
}

const fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(input: &str) -> Result<Vec<(String, String)>, FormError> {
        let mut out = Vec::new();
        for_each_pair(input.as_bytes(), |name, value| {
            out.push((name.into_owned(), value.into_owned()));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn decodes_pairs() {
        assert_eq!(
            pairs("a=1&&b=x+y%2Fz&c").unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y/z".into()),
                ("c".into(), String::new()),
            ]
        );
        assert_eq!(pairs("").unwrap(), vec![]);
        assert_eq!(pairs("k=%C3%A9").unwrap(), vec![("k".into(), "é".into())]);
    }

    #[test]
    fn encoder_round_trips_through_the_decoder() {
        let mut encoder = Encoder::with_capacity(16);
        encoder.pair("a b", "x+y/z&=%é");
        encoder.pair_joined("scope", &["r", "s/t"], ' ');
        let encoded = encoder.finish();
        assert_eq!(&*encoded, "a+b=x%2By%2Fz%26%3D%25%C3%A9&scope=r+s%2Ft");
        assert_eq!(
            pairs(&encoded).unwrap(),
            vec![
                ("a b".into(), "x+y/z&=%é".into()),
                ("scope".into(), "r s/t".into())
            ]
        );
    }

    #[test]
    fn basic_components_escape_only_what_decoding_changes() {
        let mut id = String::new();
        escape_basic_component(&mut id, "a:b c+d%e/f=é", true);
        assert_eq!(id, "a%3Ab%20c%2Bd%25e/f=é");
        let mut secret = String::new();
        escape_basic_component(&mut secret, "a:b/c=", false);
        assert_eq!(secret, "a:b/c=");
        assert_eq!(decode_component(id.as_bytes()).unwrap(), "a:b c+d%e/f=é");
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(pairs("a=%zz"), Err(FormError::BadPercentEscape));
        assert_eq!(pairs("a=%4"), Err(FormError::BadPercentEscape));
        assert_eq!(pairs("a=%"), Err(FormError::BadPercentEscape));
        assert_eq!(pairs("a=%FF"), Err(FormError::NotUtf8));
        assert_eq!(pairs("=x"), Err(FormError::EmptyName));
        assert_eq!(
            for_each_pair(b"a=\xff", |_, _| Ok(())),
            Err(FormError::NotUtf8)
        );
        // Invalid UTF-8 anywhere refuses the whole form, even in a pair that
        // comes after a well-formed one, or in a name.
        assert_eq!(
            for_each_pair(b"a=1&b\xc3=2", |_, _| Ok(())),
            Err(FormError::NotUtf8)
        );
        // A decoded component is checked again: `%C3` alone is half a
        // character, however ASCII its encoding.
        assert_eq!(pairs("a=1&b=%C3"), Err(FormError::NotUtf8));
        assert_eq!(pairs("a=%C3%A9").unwrap(), vec![("a".into(), "é".into())]);
    }

    #[test]
    fn borrows_when_nothing_to_decode() {
        assert!(matches!(
            decode_component(b"plain"),
            Ok(Cow::Borrowed("plain"))
        ));
    }
}
