//! The item layout: one item per entry and one per lease.
//!
//! | attribute | type | entry | lease |
//! | --- | --- | --- | --- |
//! | `pk` (hash key) | S | the store key (`<16 hex tag>.<64 hex>`, both HMACs) | `<key>#lease` |
//! | `v` | B | the sealed bytes | — |
//! | `exp` | N | expiry, epoch seconds rounded up (the table's TTL attribute) | same |
//! | `exp_ms` | N | expiry, epoch milliseconds (what reads compare) | same |
//! | `owner` | S | — | the lease holder's id |
//!
//! The fleet's purge log is one more item, `pk` = `tokencache#purges`
//! (the shape of no entry or lease), with `epoch` (S), `generation` (N) and
//! `log` (S, one `<generation> <scope>` a line), and no `exp`: it never
//! expires.
//!
//! DynamoDB deletes expired items lazily (typically within days), so reads
//! compare `exp_ms` with the clock and never return an expired item. `exp`
//! is rounded up so TTL never deletes an item before `exp_ms` says it
//! expired.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use tokencache_core::{PurgeLog, StoreError, StoreKey, UnixMillis};

/// The hash key attribute.
pub(crate) const PK: &str = "pk";
/// The sealed value.
pub(crate) const VALUE: &str = "v";
/// The TTL attribute, in epoch seconds.
pub(crate) const EXP: &str = "exp";
/// The exact expiry, in epoch milliseconds.
pub(crate) const EXP_MS: &str = "exp_ms";
/// The lease holder (`OWNER` is a DynamoDB reserved word: expressions
/// name it through `#owner`).
pub(crate) const OWNER: &str = "owner";

const LEASE_SUFFIX: &str = "#lease";

/// The hash key of the purge log.
pub(crate) const PURGES_PK: &str = "tokencache#purges";
/// The purge log's epoch.
pub(crate) const EPOCH: &str = "epoch";
/// The purge log's generation.
pub(crate) const GENERATION: &str = "generation";
/// The purge log's recent purges, as text.
pub(crate) const LOG: &str = "log";

/// The hash key of an entry.
pub(crate) fn entry_pk(key: &StoreKey) -> AttributeValue {
    AttributeValue::S(key.as_str().to_owned())
}

/// The hash key of a lease: beside its entry, never equal to one.
pub(crate) fn lease_pk(key: &StoreKey) -> AttributeValue {
    AttributeValue::S(format!("{}{LEASE_SUFFIX}", key.as_str()))
}

/// Whether a hash key is a tokencache entry (64 lowercase hex digits), as
/// opposed to a lease or an item someone else put in the table.
pub(crate) fn is_entry_pk(pk: &str) -> bool {
    tokencache_core::StoreKey::is_well_formed(pk)
}

/// A number attribute.
pub(crate) fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// The TTL attribute for an expiry: epoch seconds, rounded up.
pub(crate) fn ttl_seconds(expires_at: UnixMillis) -> u64 {
    expires_at.0.div_ceil(1000)
}

/// The item of an entry.
pub(crate) fn entry_item(
    key: &StoreKey,
    sealed: &[u8],
    expires_at: UnixMillis,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), entry_pk(key)),
        (VALUE.to_owned(), AttributeValue::B(Blob::new(sealed))),
        (EXP.to_owned(), number(ttl_seconds(expires_at))),
        (EXP_MS.to_owned(), number(expires_at.0)),
    ])
}

/// The item of a lease held by `owner` until `expires_at`.
pub(crate) fn lease_item(
    key: &StoreKey,
    owner: &str,
    expires_at: UnixMillis,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), lease_pk(key)),
        (OWNER.to_owned(), AttributeValue::S(owner.to_owned())),
        (EXP.to_owned(), number(ttl_seconds(expires_at))),
        (EXP_MS.to_owned(), number(expires_at.0)),
    ])
}

/// The sealed bytes of an entry item read at `now`, or `None` when it has
/// expired (and TTL has not yet deleted it).
///
/// # Errors
/// [`StoreError::Protocol`] when the item is not shaped like an entry.
pub(crate) fn read_entry(
    mut item: HashMap<String, AttributeValue>,
    now: UnixMillis,
) -> Result<Option<Vec<u8>>, StoreError> {
    let expires_at = match item.get(EXP_MS) {
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .map_err(|_| malformed("exp_ms is not a whole number"))?,
        _ => return Err(malformed("no numeric exp_ms")),
    };
    if expires_at <= now.0 {
        return Ok(None);
    }
    match item.remove(VALUE) {
        Some(AttributeValue::B(blob)) => Ok(Some(blob.into_inner())),
        _ => Err(malformed("no binary v")),
    }
}

/// The item of a purge log.
pub(crate) fn purge_log_item(log: &PurgeLog) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(PURGES_PK.to_owned())),
        (EPOCH.to_owned(), AttributeValue::S(log.epoch.clone())),
        (GENERATION.to_owned(), number(log.generation)),
        (LOG.to_owned(), AttributeValue::S(log.recent_text())),
    ])
}

/// The purge log an item holds; an absent item is the empty log.
///
/// # Errors
/// [`StoreError::Protocol`] when the item is not shaped like a purge log.
pub(crate) fn read_purge_log(
    item: Option<HashMap<String, AttributeValue>>,
) -> Result<PurgeLog, StoreError> {
    let Some(item) = item else {
        return Ok(PurgeLog::default());
    };
    let misshapen = || StoreError::Protocol("malformed purge log item".to_owned());
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(text)) => Ok(text.as_str()),
        _ => Err(misshapen()),
    };
    let generation = match item.get(GENERATION) {
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| misshapen())?,
        _ => return Err(misshapen()),
    };
    Ok(PurgeLog {
        epoch: text(EPOCH)?.to_owned(),
        generation,
        recent: PurgeLog::parse_recent(text(LOG)?).ok_or_else(misshapen)?,
    })
}

fn malformed(what: &str) -> StoreError {
    StoreError::Protocol(format!("malformed entry item: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokencache_core::CacheKey;

    fn key() -> StoreKey {
        StoreKey::of(&CacheKey::from_bytes([0xab; 32]))
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(UnixMillis(1_700_000_000_000)), 1_700_000_000);
        assert_eq!(ttl_seconds(UnixMillis(1_700_000_000_001)), 1_700_000_001);
        assert_eq!(ttl_seconds(UnixMillis(1_700_000_000_999)), 1_700_000_001);
    }

    #[test]
    fn entries_and_leases_have_distinct_keys() {
        let entry = entry_pk(&key());
        let lease = lease_pk(&key());
        assert_ne!(entry, lease);
        assert!(is_entry_pk(entry.as_s().unwrap()));
        assert!(!is_entry_pk(lease.as_s().unwrap()));
        assert!(!is_entry_pk(&"AB".repeat(32)));
        assert!(!is_entry_pk("something-else"));
    }

    #[test]
    fn an_entry_round_trips_until_it_expires() {
        let at = UnixMillis(1_700_000_000_500);
        let item = entry_item(&key(), b"sealed", at);
        assert_eq!(item[EXP], AttributeValue::N("1700000001".into()));
        assert_eq!(item[EXP_MS], AttributeValue::N("1700000000500".into()));
        assert_eq!(
            read_entry(item.clone(), UnixMillis(at.0 - 1)).unwrap(),
            Some(b"sealed".to_vec())
        );
        assert_eq!(read_entry(item, at).unwrap(), None);
    }

    #[test]
    fn a_lease_item_names_its_owner() {
        let item = lease_item(&key(), "owner-a", UnixMillis(5_000));
        assert_eq!(item[OWNER], AttributeValue::S("owner-a".into()));
        assert!(!item.contains_key(VALUE));
    }

    #[test]
    fn a_purge_log_round_trips_and_is_no_entry() {
        let log = PurgeLog::default()
            .appended(tokencache_core::PurgeScope::All)
            .appended(tokencache_core::PurgeScope::All);
        let item = purge_log_item(&log);
        assert!(!is_entry_pk(item[PK].as_s().unwrap()));
        assert!(!item.contains_key(EXP), "it never expires");
        assert_eq!(read_purge_log(Some(item)).unwrap(), log);
        assert_eq!(read_purge_log(None).unwrap(), PurgeLog::default());
        let mut broken = purge_log_item(&log);
        broken.insert(LOG.into(), AttributeValue::S("1 nonsense".into()));
        assert!(matches!(
            read_purge_log(Some(broken)),
            Err(StoreError::Protocol(_))
        ));
    }

    #[test]
    fn misshapen_items_are_protocol_errors() {
        let mut item = entry_item(&key(), b"x", UnixMillis(u64::MAX));
        item.insert(VALUE.into(), AttributeValue::S("text".into()));
        assert!(matches!(
            read_entry(item, UnixMillis(0)),
            Err(StoreError::Protocol(_))
        ));
        let mut item = entry_item(&key(), b"x", UnixMillis(u64::MAX));
        item.insert(EXP_MS.into(), AttributeValue::N("1.5".into()));
        assert!(matches!(
            read_entry(item, UnixMillis(0)),
            Err(StoreError::Protocol(_))
        ));
        assert!(matches!(
            read_entry(HashMap::new(), UnixMillis(0)),
            Err(StoreError::Protocol(_))
        ));
    }
}
