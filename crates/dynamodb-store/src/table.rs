//! Creating the table: `tokencache store init dynamodb://TABLE`.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use tokencache_core::StoreError;
use tokio::time::Instant;

use crate::config::DynamoDbConfig;
use crate::error::from_sdk;
use crate::item::{EXP, PK};
use crate::store::validate_table_name;

/// How long to wait for a new table to become `ACTIVE` (DynamoDB takes
/// seconds, rarely a minute).
const ACTIVE_WITHIN: Duration = Duration::from_secs(120);
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Creates `table` for a [`DynamoDbStore`](crate::DynamoDbStore) and enables
/// TTL on its `exp` attribute. Idempotent: an existing table with the same
/// key schema is accepted, and TTL is enabled if it is not yet.
///
/// The table has one hash key, `pk` (string), and on-demand capacity
/// (`PAY_PER_REQUEST`). The call waits (up to two minutes) until the table
/// is `ACTIVE`. It needs `dynamodb:CreateTable`, `DescribeTable`,
/// `DescribeTimeToLive` and `UpdateTimeToLive`, which the proxy itself does
/// not.
///
/// # Errors
/// [`StoreError::Refused`] when the name is invalid, the caller lacks the
/// permissions, or the table exists with another key schema or TTL
/// attribute; [`StoreError::Unavailable`] when DynamoDB cannot be reached
/// or the table does not become active in time.
pub async fn create_table(table: &str, config: &DynamoDbConfig) -> Result<(), StoreError> {
    validate_table_name(table)?;
    let client = Client::new(&config.load_for_admin().await?);
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(PK)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(not_built)?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(PK)
                .key_type(KeyType::Hash)
                .build()
                .map_err(not_built)?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => tracing::info!(table, "created the DynamoDB table"),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            tracing::info!(table, "the DynamoDB table exists");
        }
        Err(error) => return Err(from_sdk("CreateTable", &error)),
    }
    let description = wait_until_active(&client, table).await?;
    check_key_schema(table, &description)?;
    enable_ttl(&client, table).await
}

async fn wait_until_active(client: &Client, table: &str) -> Result<TableDescription, StoreError> {
    let deadline = Instant::now() + ACTIVE_WITHIN;
    loop {
        let description = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|error| from_sdk("DescribeTable", &error))?
            .table
            .ok_or_else(|| StoreError::Protocol("DescribeTable: no table in the answer".into()))?;
        if description.table_status == Some(TableStatus::Active) {
            return Ok(description);
        }
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "table {table} not ACTIVE after {}s",
                ACTIVE_WITHIN.as_secs()
            )));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// An existing table must be keyed exactly as the store writes.
fn check_key_schema(table: &str, description: &TableDescription) -> Result<(), StoreError> {
    let keys = description.key_schema();
    let hash_on_pk =
        keys.len() == 1 && keys[0].attribute_name() == PK && *keys[0].key_type() == KeyType::Hash;
    let pk_is_string = description
        .attribute_definitions()
        .iter()
        .any(|a| a.attribute_name() == PK && *a.attribute_type() == ScalarAttributeType::S);
    if hash_on_pk && pk_is_string {
        Ok(())
    } else {
        Err(StoreError::Refused(format!(
            "table {table} exists but is not keyed by a string hash key `{PK}` alone"
        )))
    }
}

async fn enable_ttl(client: &Client, table: &str) -> Result<(), StoreError> {
    let current = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|error| from_sdk("DescribeTimeToLive", &error))?
        .time_to_live_description;
    let (status, attribute) = current
        .map(|d| (d.time_to_live_status, d.attribute_name))
        .unwrap_or_default();
    if let Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) = status {
        return if attribute.as_deref() == Some(EXP) {
            Ok(())
        } else {
            Err(StoreError::Refused(format!(
                "table {table} has TTL on {attribute:?}, not `{EXP}`"
            )))
        };
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(EXP)
                .build()
                .map_err(not_built)?,
        )
        .send()
        .await
        .map_err(|error| from_sdk("UpdateTimeToLive", &error))?;
    tracing::info!(table, attribute = EXP, "enabled TTL");
    Ok(())
}

fn not_built(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Protocol(format!("request not built: {error}"))
}
