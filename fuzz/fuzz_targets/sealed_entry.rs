//! Sealed entries read back from a shared store are untrusted: opening and
//! decoding arbitrary bytes must fail cleanly, never panic, and a sealed
//! entry altered in any byte must not open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokencache_core::{
    CacheKey, CachedToken, EncryptionKey, FreshnessPolicy, KeyRing, StoreKey,
};

fuzz_target!(|data: &[u8]| {
    let ring = KeyRing::new(EncryptionKey::from_bytes([3; 32]), vec![]);
    let key = StoreKey::of(&CacheKey::from_bytes([5; 32]));
    if let Ok(plain) = ring.open(&key, data) {
        let _ = CachedToken::decode(&plain, &FreshnessPolicy::default());
    }
    let _ = CachedToken::decode(data, &FreshnessPolicy::default());
    let sealed = ring.seal(&key, data);
    assert_eq!(&*ring.open(&key, &sealed).expect("round trip"), data);
    if let Some(first) = data.first() {
        let mut altered = sealed.clone();
        let index = usize::from(*first) % altered.len();
        altered[index] ^= 0x01;
        assert!(ring.open(&key, &altered).is_err());
    }
});
