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
    for segment in input.split(|&b| b == b'&') {
        if segment.is_empty() {
            continue;
        }
        let (name, value) = match segment.iter().position(|&b| b == b'=') {
            Some(eq) => (&segment[..eq], &segment[eq + 1..]),
            None => (segment, &segment[segment.len()..]),
        };
        if name.is_empty() {
            return Err(FormError::EmptyName);
        }
        visit(decode_component(name)?, decode_component(value)?)?;
    }
    Ok(())
}

/// Decodes one form component: `+` is a space, `%XX` a byte.
pub(crate) fn decode_component(input: &[u8]) -> Result<Cow<'_, str>, FormError> {
    if !input.iter().any(|&b| b == b'%' || b == b'+') {
        return std::str::from_utf8(input)
            .map(Cow::Borrowed)
            .map_err(|_| FormError::NotUtf8);
    }
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
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| FormError::NotUtf8)
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
    }

    #[test]
    fn borrows_when_nothing_to_decode() {
        assert!(matches!(
            decode_component(b"plain"),
            Ok(Cow::Borrowed("plain"))
        ));
    }
}
