//! Upstream token answers and the `expires_in` rewriting: whatever is
//! cached must render back to a JSON object with the same token and a
//! remaining lifetime no longer than the original.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokencache_core::{CachedToken, FreshnessPolicy, UnixMillis};

fuzz_target!(|data: &[u8]| {
    let now = UnixMillis(1_700_000_000_000);
    let Ok(token) = CachedToken::from_response(data, now, &FreshnessPolicy::default()) else {
        return;
    };
    let original: serde_json::Value = serde_json::from_slice(data).expect("it parsed once");
    for elapsed in [0, 1_000, 3_600_000] {
        let rendered = token.render_body(now.plus_millis(elapsed));
        let body: serde_json::Value =
            serde_json::from_slice(&rendered).expect("rendered bodies are JSON");
        assert_eq!(body["access_token"], original["access_token"]);
        let left = body["expires_in"].as_u64().expect("a whole number of seconds");
        assert!(left <= token.expires_in(now));
    }
    // And it survives the shared-store encoding.
    let decoded = CachedToken::decode(&token.encode(), &FreshnessPolicy::default())
        .expect("an entry decodes");
    assert_eq!(decoded, token);
});
