//! `Retry-After` values come from the upstream: parse anything without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokencache_core::{AnswerClass, UnixMillis, parse_retry_after};

fuzz_target!(|data: &[u8]| {
    let _ = parse_retry_after(data, UnixMillis(1_700_000_000_000));
    let status = data.first().map_or(400, |b| 400 + u16::from(*b % 200));
    let _ = AnswerClass::of(status, data);
});
