//! The DynamoDB shared store of tokencache, and the AWS KMS data key that
//! seals what goes into it.
//!
//! A fleet of proxies shares one table: [`DynamoDbStore`] implements
//! [`SharedStore`](tokencache_core::SharedStore), so each token is fetched
//! once for the whole fleet. The table sees only what the contract allows:
//! an HMAC key in hex, bytes sealed with AES-256-GCM by
//! [`KeyRing`](tokencache_core::KeyRing), and an expiry.
//!
//! - [`create_table`] creates the table (on-demand capacity, hash key `pk`)
//!   and enables TTL on `exp`; idempotent (`tokencache store init
//!   dynamodb://TABLE`).
//! - [`DynamoDbStore::connect`] reaches it through the standard AWS chain
//!   (environment, profile, EKS/ECS/EC2 roles, `AWS_ENDPOINT_URL_DYNAMODB`),
//!   with short timeouts (500 ms an attempt, 2 attempts by default): the
//!   proxy would rather go upstream than wait on a slow store. Credentials
//!   from the chain load in a background task, so a slow first load is not
//!   cut off by that budget and started over.
//! - [`decrypt_data_key`] turns a KMS data key's ciphertext into the
//!   32-byte sealing key at start-up; [`generate_data_key`] makes one.
//!
//! This crate is the only one that depends on the AWS SDK, so a change to
//! the core never rebuilds it.
//!
//! # Item layout
//!
//! One item per entry and one per lease, in one table whose only key is the
//! hash key `pk`:
//!
//! | attribute | type | entry | lease |
//! | --- | --- | --- | --- |
//! | `pk` | S | the store key (`<16 hex tag>.<64 hex>`, both HMACs) | `<key>#lease` |
//! | `v` | B | the sealed bytes | — |
//! | `exp` | N | expiry in epoch seconds, rounded up: the TTL attribute | same |
//! | `exp_ms` | N | expiry in epoch milliseconds | same |
//! | `owner` | S | — | the lease holder's id |
//!
//! DynamoDB's TTL deletes expired items lazily (often days later), so every
//! read compares `exp_ms` with the clock and treats an expired item as
//! absent. Entry reads are eventually consistent (a just-written entry may
//! be missed for a moment: one extra upstream request at worst). Leases are
//! conditional writes (`attribute_not_exists(pk) OR exp_ms <= :now OR
//! owner = :owner`) and releases conditional deletes on the owner. A purge
//! ([`clear`](tokencache_core::SharedStore::clear)) scans the table and
//! batch-deletes the entries; leases are left to expire.
//!
//! The README beside this crate has the least-privilege IAM policy and the
//! table definition for the AWS CLI.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use tokencache_core::{EncryptionKey, KeyRing, SharedStore};
//! use tokencache_dynamodb_store::{DynamoDbConfig, DynamoDbStore, create_table, decrypt_data_key};
//!
//! # async fn example(kms_blob: Vec<u8>) -> Result<(), tokencache_core::StoreError> {
//! // Region, credentials and endpoint from the environment, profile or role.
//! let config = DynamoDbConfig::default();
//! create_table("tokencache", &config).await?; // once, by an operator
//!
//! let store: Arc<dyn SharedStore> = Arc::new(DynamoDbStore::connect("tokencache", config.clone()).await?);
//!
//! // The sealing key: a KMS data key, decrypted at start-up.
//! let ring = KeyRing::new(EncryptionKey::from_bytes(decrypt_data_key(&kms_blob, &config).await?), vec![]);
//! # let _ = (store, ring);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! None. The AWS SDK is built without its default features: the
//! `default-https-client` (hyper 1 with rustls) and the tokio runtime only.

mod budget;
mod config;
mod credentials;
mod error;
mod item;
mod kms;
mod store;
mod table;

pub use budget::SHARD_RATE;
pub use config::{AwsCredentials, DynamoDbConfig};
pub use kms::{decrypt_data_key, generate_data_key};
pub use store::DynamoDbStore;
pub use table::create_table;
