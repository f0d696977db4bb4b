//! [`DynamoDbStore`]: the [`SharedStore`] contract on one DynamoDB table.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use tokencache_core::{
    BudgetStore, ClientTag, Clock, LeaseOwner, PurgeLog, PurgeMark, PurgeScope, SharedStore,
    StoreError, StoreFuture, StoreKey, UnixMillis,
};

use crate::config::DynamoDbConfig;
use crate::error::from_sdk;
use crate::item::{
    EPOCH, EXP_MS, GENERATION, LOG, OWNER, PK, PURGES_PK, VALUE, entry_item, entry_pk, is_entry_pk,
    lease_item, lease_pk, number, purge_log_item, read_entry, read_purge_log,
};

/// BatchWriteItem takes at most 25 requests.
const BATCH_LIMIT: usize = 25;
/// Rounds of read and conditional write an announcement may take when
/// other replicas announce at the same moment.
const ANNOUNCE_ROUNDS: usize = 16;
/// Rounds of retrying a batch's unprocessed deletions (throttling) before
/// giving up; the delays double from 50 ms.
const BATCH_ROUNDS: u32 = 6;

/// Sealed token entries and load leases in one DynamoDB table.
///
/// Build it with [`DynamoDbStore::connect`]; create the table once with
/// [`create_table`](crate::create_table). See the [crate docs](crate) for
/// the item layout and the IAM permissions it needs.
#[derive(Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
    /// Which shard of a sharded budget group this store asks next.
    next_shard: Arc<AtomicUsize>,
}

impl DynamoDbStore {
    /// A store on `table`, reaching AWS as `config` says.
    ///
    /// Reads the AWS configuration (region, credentials provider,
    /// endpoint) but calls no AWS API: a store that is down at start-up is
    /// one the proxy degrades around, not one that stops it. The first
    /// operation tells whether the table is reachable.
    ///
    /// # Errors
    /// [`StoreError::Refused`] when the table name is not a valid DynamoDB
    /// table name or no region is configured.
    pub async fn connect(table: &str, config: DynamoDbConfig) -> Result<Self, StoreError> {
        validate_table_name(table)?;
        let sdk = config.load_for_items().await?;
        Ok(Self {
            client: Client::new(&sdk),
            table: table.to_owned(),
            clock: config.clock,
            next_shard: Arc::default(),
        })
    }

    /// The table's name.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// The shard of `shards` to ask next: each in turn.
    pub(crate) fn next_shard(&self, shards: usize) -> usize {
        self.next_shard.fetch_add(1, Ordering::Relaxed) % shards
    }

    async fn get_entry(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, StoreError> {
        // Eventually consistent: a just-written entry may be missed for a
        // moment, which costs one upstream request at worst.
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, entry_pk(key))
            .projection_expression("#v, #exp_ms")
            .expression_attribute_names("#v", VALUE)
            .expression_attribute_names("#exp_ms", EXP_MS)
            .send()
            .await
            .map_err(|error| from_sdk("GetItem", &error))?;
        match output.item {
            Some(item) => read_entry(item, self.clock.now()),
            None => Ok(None),
        }
    }

    async fn put_entry(
        &self,
        key: &StoreKey,
        sealed: &[u8],
        expires_at: UnixMillis,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(entry_item(key, sealed, expires_at)))
            .send()
            .await
            .map_err(|error| from_sdk("PutItem", &error))?;
        Ok(())
    }

    async fn delete_entry(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, entry_pk(key))
            .send()
            .await
            .map_err(|error| from_sdk("DeleteItem", &error))?;
        Ok(())
    }

    async fn take_lease(
        &self,
        key: &StoreKey,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        // The owner clause makes a retried write idempotent: if the first
        // attempt landed but its answer was lost, the retry still wins.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lease_item(key, owner.as_str(), now.plus(ttl))))
            .condition_expression("attribute_not_exists(#pk) OR #exp_ms <= :now OR #owner = :owner")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#exp_ms", EXP_MS)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":now", number(now.0))
            .expression_attribute_values(":owner", AttributeValue::S(owner.as_str().to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(from_sdk("PutItem (lease)", &error)),
        }
    }

    async fn give_back_lease(&self, key: &StoreKey, owner: &LeaseOwner) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, lease_pk(key))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":owner", AttributeValue::S(owner.as_str().to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else's lease, or none: nothing of ours to give back.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(from_sdk("DeleteItem (lease)", &error)),
        }
    }

    /// The purge log: one strongly consistent read, so a purge announced
    /// a moment ago is seen by the next poll.
    async fn get_purge_log(&self) -> Result<PurgeLog, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(PURGES_PK.to_owned()))
            .consistent_read(true)
            .projection_expression("#epoch, #gen, #log")
            .expression_attribute_names("#epoch", EPOCH)
            .expression_attribute_names("#gen", GENERATION)
            .expression_attribute_names("#log", LOG)
            .send()
            .await
            .map_err(|error| from_sdk("GetItem (purges)", &error))?;
        read_purge_log(output.item)
    }

    /// Appends to the purge log: read, then a put conditional on the
    /// generation read, again while another replica's append wins.
    async fn append_purge(&self, scope: PurgeScope) -> Result<PurgeMark, StoreError> {
        for _ in 0..ANNOUNCE_ROUNDS {
            let log = self.get_purge_log().await?;
            let next = log.appended(scope);
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(purge_log_item(&next)));
            let put = if log.generation == 0 {
                put.condition_expression("attribute_not_exists(#pk)")
                    .expression_attribute_names("#pk", PK)
            } else {
                put.condition_expression("#gen = :read")
                    .expression_attribute_names("#gen", GENERATION)
                    .expression_attribute_values(":read", number(log.generation))
            };
            match put.send().await {
                Ok(_) => return Ok(next.mark()),
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(error) => return Err(from_sdk("PutItem (purges)", &error)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "announce_purge: lost the race {ANNOUNCE_ROUNDS} times"
        )))
    }

    /// Scans the table for entries and deletes them in batches. Leases are
    /// left to expire (removing a held one would let a second replica load
    /// the same key), and items that are not tokencache entries are left
    /// alone.
    async fn clear_entries(&self, tag: Option<&ClientTag>) -> Result<u64, StoreError> {
        let prefix = tag.map(|tag| format!("{}.", tag.as_hex()));
        let mut removed = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("#pk")
                .expression_attribute_names("#pk", PK)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| from_sdk("Scan", &error))?;
            let pks: Vec<String> = page
                .items
                .unwrap_or_default()
                .into_iter()
                .filter_map(|mut item| match item.remove(PK) {
                    Some(AttributeValue::S(pk))
                        if is_entry_pk(&pk)
                            && prefix
                                .as_deref()
                                .is_none_or(|prefix| pk.starts_with(prefix)) =>
                    {
                        Some(pk)
                    }
                    _ => None,
                })
                .collect();
            for chunk in pks.chunks(BATCH_LIMIT) {
                removed += self.delete_batch(chunk).await?;
            }
            start = page.last_evaluated_key.filter(|key| !key.is_empty());
            if start.is_none() {
                return Ok(removed);
            }
        }
    }

    /// Deletes up to 25 entries, retrying what DynamoDB leaves
    /// unprocessed; how many were deleted.
    async fn delete_batch(&self, pks: &[String]) -> Result<u64, StoreError> {
        let mut pending = pks
            .iter()
            .map(|pk| {
                let delete = DeleteRequest::builder()
                    .key(PK, AttributeValue::S(pk.clone()))
                    .build()
                    .map_err(|error| {
                        StoreError::Protocol(format!("BatchWriteItem: request not built: {error}"))
                    })?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let total = pending.len();
        let mut delay = Duration::from_millis(50);
        for round in 0..BATCH_ROUNDS {
            if round > 0 {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(|error| from_sdk("BatchWriteItem", &error))?;
            pending = output
                .unprocessed_items
                .and_then(|mut tables| tables.remove(&self.table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(total as u64);
            }
        }
        Err(StoreError::Unavailable(format!(
            "BatchWriteItem: {} of {total} deletions still unprocessed (throttled)",
            pending.len()
        )))
    }
}

impl SharedStore for DynamoDbStore {
    fn name(&self) -> &'static str {
        "dynamodb"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(self.get_entry(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        sealed: &'a [u8],
        expires_at: UnixMillis,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.put_entry(key, sealed, expires_at))
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, ()> {
        Box::pin(self.delete_entry(key))
    }

    fn try_lease<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: &'a LeaseOwner,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.take_lease(key, owner, ttl))
    }

    fn release_lease<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: &'a LeaseOwner,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.give_back_lease(key, owner))
    }

    fn clear(&self) -> StoreFuture<'_, Option<u64>> {
        Box::pin(async move { self.clear_entries(None).await.map(Some) })
    }

    fn clear_client<'a>(&'a self, tag: &'a ClientTag) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move { self.clear_entries(Some(tag)).await.map(Some) })
    }

    fn purge_log(&self) -> StoreFuture<'_, PurgeLog> {
        Box::pin(self.get_purge_log())
    }

    fn budgets(self: Arc<Self>) -> Option<Arc<dyn BudgetStore>> {
        Some(self)
    }

    fn announce_purge<'a>(&'a self, scope: &'a PurgeScope) -> StoreFuture<'a, PurgeMark> {
        Box::pin(self.append_purge(*scope))
    }
}

impl fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbStore")
            .field("table", &self.table)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// DynamoDB's rule for table names: 3 to 255 of `[A-Za-z0-9_.-]`.
pub(crate) fn validate_table_name(table: &str) -> Result<(), StoreError> {
    let valid = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(StoreError::Refused(format!(
            "{table:?} is not a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ . -)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_dynamodb_rules() {
        for good in ["tok", "tokencache", "tokencache-prod_eu.1"] {
            assert!(validate_table_name(good).is_ok(), "{good}");
        }
        for bad in ["", "ab", "has space", "slash/name", &"x".repeat(256)] {
            assert!(
                matches!(validate_table_name(bad), Err(StoreError::Refused(_))),
                "{bad}"
            );
        }
    }
}
