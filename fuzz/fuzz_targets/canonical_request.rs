//! Forward what was keyed: whatever parses, rebuilt as the upstream request
//! ([`TokenRequest::canonical`]) and parsed again, is the same request, with
//! the same cache key. The input is split into Authorization header, query
//! string and body; the content type is the form's, so the fuzzer spends its
//! time past the content-type check (`request_form` covers that check).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokencache_core::{HmacKey, KeyDeriver, TokenRequest};

const FORM: &[u8] = b"application/x-www-form-urlencoded";

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let content_type = Some(FORM);
    let authorization = parts.next().filter(|a| !a.is_empty());
    let query = parts.next().and_then(|q| std::str::from_utf8(q).ok());
    let body = parts.next().unwrap_or_default();
    let Ok(request) = TokenRequest::parse(content_type, authorization, query, body) else {
        return;
    };
    let Some(canonical) = request.canonical() else {
        // Only a foreign Authorization scheme cannot be rebuilt, and such a
        // request is never cached.
        assert!(!request.is_cacheable());
        return;
    };
    let again = TokenRequest::parse(
        Some(FORM),
        canonical.authorization().map(str::as_bytes),
        None,
        canonical.body().as_bytes(),
    )
    .expect("a rebuilt request parses");
    assert_eq!(request.grant_type(), again.grant_type());
    assert_eq!(request.client_id(), again.client_id());
    assert_eq!(
        request.client_secret().map(|s| s.secret()),
        again.client_secret().map(|s| s.secret())
    );
    assert_eq!(request.credential_source(), again.credential_source());
    assert_eq!(request.scopes(), again.scopes());
    assert!(request.extra_params().eq(again.extra_params()));
    assert_eq!(request.is_cacheable(), again.is_cacheable());
    let deriver = KeyDeriver::new(&HmacKey::from_bytes([7; 32]));
    assert_eq!(
        deriver.derive("/oauth2/token", &request),
        deriver.derive("/oauth2/token", &again)
    );
});
