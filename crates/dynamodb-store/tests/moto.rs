//! The DynamoDB store and the KMS helpers against moto's AWS emulator,
//! started on a free loopback port by each test.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokencache_core::{
    EncryptionKey, KeyDeriver, KeyRing, LeaseOwner, SharedStore, StoreError, StoreKey,
    TokenRequest, UnixMillis,
};
use tokencache_dynamodb_store::{
    AwsCredentials, DynamoDbConfig, DynamoDbStore, create_table, decrypt_data_key,
    generate_data_key,
};
use tokencache_test_support::ManualClock;
use tokencache_test_support::moto::MotoServer;

const TABLE: &str = "tokencache-test";

fn config_for(moto: &MotoServer) -> DynamoDbConfig {
    DynamoDbConfig::default()
        .with_region("us-east-1")
        .with_endpoint_url(moto.endpoint_url())
        .with_credentials(AwsCredentials::new("testing", "testing"))
        // moto in Python on a busy two-core machine is slower than DynamoDB.
        .with_attempt_timeout(Duration::from_secs(5))
}

/// A DynamoDB client of the test's own, for looking behind the store.
fn raw_dynamodb(moto: &MotoServer) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto.endpoint_url())
        .credentials_provider(test_credentials())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

fn test_credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "tests")
}

fn raw_kms(moto: &MotoServer) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto.endpoint_url())
        .credentials_provider(test_credentials())
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_passes_the_conformance_suite() {
    let moto = MotoServer::start().await;
    let config = config_for(&moto);
    create_table(TABLE, &config).await.unwrap();
    let store = DynamoDbStore::connect(TABLE, config).await.unwrap();
    tokencache_test_support::conformance::check_store(Arc::new(store)).await;
}

#[tokio::test]
async fn create_table_is_idempotent_and_enables_ttl() {
    let moto = MotoServer::start().await;
    let config = config_for(&moto);
    create_table(TABLE, &config).await.unwrap();
    create_table(TABLE, &config).await.unwrap();

    let raw = raw_dynamodb(&moto);
    let ttl = raw
        .describe_time_to_live()
        .table_name(TABLE)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(ttl.time_to_live_status, Some(TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name.as_deref(), Some("exp"));

    let table = raw
        .describe_table()
        .table_name(TABLE)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys = table.key_schema();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].attribute_name(), "pk");
}

#[tokio::test]
async fn create_table_refuses_a_table_keyed_otherwise() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let moto = MotoServer::start().await;
    raw_dynamodb(&moto)
        .create_table()
        .table_name("someone-elses")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let error = create_table("someone-elses", &config_for(&moto))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Refused(_)), "{error:?}");
}

#[tokio::test]
async fn a_missing_table_is_a_refusal() {
    let moto = MotoServer::start().await;
    let store = DynamoDbStore::connect("never-created", config_for(&moto))
        .await
        .unwrap();
    let key = StoreKey::of(&tokencache_core::CacheKey::from_bytes([1; 32]));
    let error = store.get(&key).await.unwrap_err();
    assert!(matches!(error, StoreError::Refused(_)), "{error:?}");
}

#[tokio::test]
async fn the_table_holds_only_hex_keys_sealed_bytes_and_numbers() {
    const CLIENT_ID: &str = "demo-client-7f3a";
    const SECRET: &str = "demo-secret-value";
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.plaintext-access-token.signature";

    let moto = MotoServer::start().await;
    let config = config_for(&moto);
    create_table(TABLE, &config).await.unwrap();
    let store = DynamoDbStore::connect(TABLE, config).await.unwrap();

    // The key as the proxy derives it, from a request naming the client.
    let ring = KeyRing::new(EncryptionKey::from_bytes([9; 32]), vec![]);
    let basic = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{SECRET}")));
    let request = TokenRequest::parse(
        Some(b"application/x-www-form-urlencoded"),
        Some(basic.as_bytes()),
        None,
        b"grant_type=client_credentials&scope=api/read",
    )
    .unwrap();
    let key =
        StoreKey::of(&KeyDeriver::new(&ring.derived_hmac_key()).derive("/oauth2/token", &request));
    let plaintext = format!(
        r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600,"client_id":"{CLIENT_ID}"}}"#
    );
    let sealed = ring.seal(&key, plaintext.as_bytes());
    let expires_at = UnixMillis(4_000_000_000_000);
    store.put(&key, &sealed, expires_at).await.unwrap();
    assert!(
        store
            .try_lease(&key, &LeaseOwner::random(), Duration::from_secs(30))
            .await
            .unwrap()
    );

    let items = raw_dynamodb(&moto)
        .scan()
        .table_name(TABLE)
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    assert_eq!(items.len(), 2, "one entry, one lease");
    let entry = items
        .iter()
        .find(|item| item.get("pk") == Some(&AttributeValue::S(key.as_str().to_owned())))
        .unwrap();
    assert_eq!(entry["exp"], AttributeValue::N("4000000000".into()));
    assert_eq!(entry["exp_ms"], AttributeValue::N("4000000000000".into()));
    for item in &items {
        for (name, value) in item {
            match (name.as_str(), value) {
                ("pk", AttributeValue::S(pk)) => {
                    let hex = pk.strip_suffix("#lease").unwrap_or(pk);
                    assert_eq!(hex, key.as_str());
                }
                ("v", AttributeValue::B(blob)) => {
                    assert_eq!(blob.as_ref(), &sealed[..]);
                    for needle in [TOKEN, CLIENT_ID, SECRET, "access_token"] {
                        assert!(
                            !blob
                                .as_ref()
                                .windows(needle.len())
                                .any(|w| w == needle.as_bytes()),
                            "{needle} in a sealed value"
                        );
                    }
                }
                ("exp" | "exp_ms", AttributeValue::N(n)) => {
                    assert!(n.bytes().all(|b| b.is_ascii_digit()), "{name}: {n}");
                }
                ("owner", AttributeValue::S(owner)) => {
                    assert!(owner.bytes().all(|b| b.is_ascii_hexdigit()));
                }
                other => panic!("unexpected attribute {other:?}"),
            }
        }
    }
    let dump = format!("{items:?}");
    for needle in [TOKEN, CLIENT_ID, SECRET, "access_token", "Bearer"] {
        assert!(!dump.contains(needle), "{needle} in the scan");
    }

    // And it is the real entry: the ring opens what the store returns.
    let read = store.get(&key).await.unwrap().unwrap();
    assert_eq!(&*ring.open(&key, &read).unwrap(), plaintext.as_bytes());
}

#[tokio::test]
async fn expiry_follows_the_injected_clock() {
    let moto = MotoServer::start().await;
    let clock = ManualClock::at(UnixMillis(1_700_000_000_000));
    let config = config_for(&moto).with_clock(Arc::new(clock.clone()));
    create_table(TABLE, &config).await.unwrap();
    let store = DynamoDbStore::connect(TABLE, config).await.unwrap();
    let key = StoreKey::of(&tokencache_core::CacheKey::from_bytes([3; 32]));
    let (a, b) = (LeaseOwner::new("a"), LeaseOwner::new("b"));

    store
        .put(&key, b"sealed", UnixMillis(1_700_000_060_000))
        .await
        .unwrap();
    assert!(
        store
            .try_lease(&key, &a, Duration::from_secs(60))
            .await
            .unwrap()
    );
    clock.advance(Duration::from_secs(59));
    assert!(store.get(&key).await.unwrap().is_some());
    assert!(
        !store
            .try_lease(&key, &b, Duration::from_secs(10))
            .await
            .unwrap()
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.get(&key).await.unwrap(), None, "expired at exp_ms");
    assert!(
        store
            .try_lease(&key, &b, Duration::from_secs(10))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn clear_removes_entries_but_not_leases_or_foreign_items() {
    let moto = MotoServer::start().await;
    let config = config_for(&moto);
    create_table(TABLE, &config).await.unwrap();
    let store = DynamoDbStore::connect(TABLE, config).await.unwrap();
    let later = UnixMillis(4_000_000_000_000);
    // More than one BatchWriteItem's worth.
    let keys: Vec<StoreKey> = (0..30u8)
        .map(|n| StoreKey::of(&tokencache_core::CacheKey::from_bytes([n; 32])))
        .collect();
    for key in &keys {
        store.put(key, b"x", later).await.unwrap();
    }
    let owner = LeaseOwner::new("holder");
    assert!(
        store
            .try_lease(&keys[0], &owner, Duration::from_secs(60))
            .await
            .unwrap()
    );
    let raw = raw_dynamodb(&moto);
    raw.put_item()
        .table_name(TABLE)
        .item("pk", AttributeValue::S("not-ours".into()))
        .send()
        .await
        .unwrap();

    assert_eq!(store.clear().await.unwrap(), Some(30));
    for key in &keys {
        assert_eq!(store.get(key).await.unwrap(), None);
    }
    let left = raw.scan().table_name(TABLE).send().await.unwrap().count();
    assert_eq!(left, 2, "the lease and the foreign item stay");
    let other = LeaseOwner::new("other");
    assert!(
        !store
            .try_lease(&keys[0], &other, Duration::from_secs(60))
            .await
            .unwrap(),
        "the lease still holds"
    );
}

#[tokio::test]
async fn a_kms_data_key_decrypts_to_the_same_bytes() {
    let moto = MotoServer::start().await;
    let config = config_for(&moto);
    let key_id = raw_kms(&moto)
        .create_key()
        .description("tokencache test")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;

    let (ciphertext, plaintext) = generate_data_key(&key_id, &config).await.unwrap();
    assert_ne!(plaintext, [0; 32]);
    assert!(
        !ciphertext.windows(32).any(|w| w == plaintext),
        "the blob does not carry the key in clear"
    );
    let decrypted = decrypt_data_key(&ciphertext, &config).await.unwrap();
    assert_eq!(decrypted, plaintext);

    let error = decrypt_data_key(b"not a kms ciphertext blob", &config)
        .await
        .unwrap_err();
    assert!(!matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let error = generate_data_key("alias/does-not-exist", &config)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Refused(_)), "{error:?}");
}
