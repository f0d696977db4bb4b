//! Cognito's native API: whatever body parses, cacheable or not, never
//! panics; a cacheable one's canonical body parses again to the same
//! canonical body and key (forward what was keyed: the upstream is sent
//! exactly the canonical body). The first input byte picks the operation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokencache_core::cognito::{NativeRequest, parse_target};
use tokencache_core::{HmacKey, KeyDeriver};

const OPERATIONS: [&str; 4] = [
    "InitiateAuth",
    "GetClientToken",
    "RespondToAuthChallenge",
    "SignUp",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let _ = parse_target(body);
    let operation = OPERATIONS[usize::from(pick) % OPERATIONS.len()];
    let Ok(request) = NativeRequest::parse(operation, body) else {
        return;
    };
    let Ok(canonical) = request.cacheable() else {
        return;
    };
    let again = NativeRequest::parse(operation, canonical.body()).expect("a canonical body parses");
    let again = again.cacheable().expect("a canonical body is cacheable");
    assert_eq!(canonical.body(), again.body());
    assert_eq!(canonical.client_id(), again.client_id());
    let deriver = KeyDeriver::new(&HmacKey::from_bytes([7; 32]));
    assert_eq!(
        deriver.derive_native("cognito-idp", canonical),
        deriver.derive_native("cognito-idp", again)
    );
});
