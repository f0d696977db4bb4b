//! The token request parser and key derivation, on untrusted bytes: the
//! input is split into content type, Authorization header, query string and
//! body. Whatever parses must derive a key, and derive the same key twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokencache_core::{HmacKey, KeyDeriver, TokenRequest};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == 0);
    let content_type = parts.next();
    let authorization = parts.next().filter(|a| !a.is_empty());
    let query = parts.next().and_then(|q| std::str::from_utf8(q).ok());
    let body = parts.next().unwrap_or_default();
    let Ok(request) = TokenRequest::parse(content_type, authorization, query, body) else {
        return;
    };
    let deriver = KeyDeriver::new(&HmacKey::from_bytes([7; 32]));
    let key = deriver.derive("/oauth2/token", &request);
    assert_eq!(key, deriver.derive("/oauth2/token", &request));
    // Scopes are a set: sorted and unique.
    let scopes = request.scopes();
    assert!(scopes.windows(2).all(|pair| pair[0] < pair[1]));
    let _ = request.is_cacheable();
});
