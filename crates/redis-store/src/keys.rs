//! The key layout in Redis.
//!
//! ```text
//! {prefix}{<key>}             the sealed entry (a string, expiring PXAT)
//! {prefix}{<key>}:lease       its load lease (the owner id, expiring PX)
//! {prefix}purges              the fleet's purge log (a hash: epoch,
//!                             generation, log), never expiring
//! {prefix}budget:<group>      a budget group's state (a hash, see
//!                             `budget.rs`), expiring an hour after use
//! {prefix}replicas            the live replicas (a sorted set of owner
//!                             ids scored by when their heartbeat expires)
//! ```
//!
//! `<key>` is the store key, `<16 hex client tag>.<64 hex>` (both HMACs).
//! What is inside the braces is a Redis Cluster hash tag: only it is hashed,
//! so an entry and its lease always live in the same slot, and a script may
//! touch both. The prefix must not contain braces, or the first `{…}` in it
//! would become the tag.

use tokencache_core::{ClientTag, StoreKey};

/// What follows an entry's key to name its lease.
const LEASE_SUFFIX: &str = ":lease";

/// What follows the prefix to name the purge log: no braces, so no entry
/// pattern matches it and a purge of the entries leaves it.
const PURGES: &str = "purges";

/// What follows the prefix to name a budget group's state.
const BUDGET: &str = "budget:";

/// What follows the prefix to name the live replicas.
const REPLICAS: &str = "replicas";

/// Builds the Redis keys of store keys under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// `{prefix}{<hex>}`.
    pub(crate) fn entry(&self, key: &StoreKey) -> String {
        format!("{}{{{}}}", self.prefix, key.as_str())
    }

    /// `{prefix}{<hex>}:lease`.
    pub(crate) fn lease(&self, key: &StoreKey) -> String {
        format!("{}{{{}}}{LEASE_SUFFIX}", self.prefix, key.as_str())
    }

    /// `{prefix}purges`.
    pub(crate) fn purges(&self) -> String {
        format!("{}{PURGES}", self.prefix)
    }

    /// `{prefix}budget:<group>`, the group's name with anything but
    /// letters, digits, `.`, `-`, `_` and `:` percent-encoded (so no brace
    /// in a name becomes a hash tag, and no two names share a key).
    pub(crate) fn budget(&self, group: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + BUDGET.len() + group.len());
        key.push_str(&self.prefix);
        key.push_str(BUDGET);
        for byte in group.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b':') {
                key.push(char::from(byte));
            } else {
                key.push_str(&format!("%{byte:02X}"));
            }
        }
        key
    }

    /// `{prefix}replicas`.
    pub(crate) fn replicas(&self) -> String {
        format!("{}{REPLICAS}", self.prefix)
    }

    /// A `SCAN … MATCH` pattern for entries only (leases end in `:lease`,
    /// not `}`, and are left to expire); with `tag`, only that client's.
    pub(crate) fn entry_pattern(&self, tag: Option<&ClientTag>) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 21);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        match tag {
            // The tag is hex: nothing in it needs escaping.
            Some(tag) => {
                pattern.push('{');
                pattern.push_str(&tag.as_hex());
                pattern.push_str(".*}");
            }
            None => pattern.push_str("{*}"),
        }
        pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokencache_core::CacheKey;

    #[test]
    fn budget_groups_are_escaped_into_their_own_keys() {
        let layout = KeyLayout::new("tc:");
        assert_eq!(
            layout.budget("my-pool.auth.eu-west-1.amazoncognito.com"),
            "tc:budget:my-pool.auth.eu-west-1.amazoncognito.com"
        );
        assert_eq!(layout.budget("a{b}%"), "tc:budget:a%7Bb%7D%25");
        assert_ne!(layout.budget("a b"), layout.budget("a%20b"));
        assert_eq!(layout.replicas(), "tc:replicas");
    }

    #[test]
    fn entry_and_lease_share_the_hash_tag() {
        let layout = KeyLayout::new("tokencache:");
        let key = StoreKey::of(&CacheKey::from_bytes([0xab; 32]));
        let hex = "ab".repeat(32);
        assert_eq!(layout.entry(&key), format!("tokencache:{{{hex}}}"));
        assert_eq!(layout.lease(&key), format!("tokencache:{{{hex}}}:lease"));
    }

    #[test]
    fn the_pattern_escapes_glob_characters() {
        assert_eq!(
            KeyLayout::new("tokencache:").entry_pattern(None),
            "tokencache:{*}"
        );
        assert_eq!(
            KeyLayout::new("a*b?[c]\\:").entry_pattern(None),
            "a\\*b\\?\\[c\\]\\\\:{*}"
        );
    }
}
