//! A fleet of proxies on one DynamoDB table (moto's emulator): a purge on
//! one replica reaches the other through the table's purge log.

use std::sync::Arc;
use std::time::Duration;

use tokencache_core::SharedStore;
use tokencache_dynamodb_store::{AwsCredentials, DynamoDbConfig, DynamoDbStore, create_table};
use tokencache_test_support::MockIdpServer;
use tokencache_test_support::fleet::{check_purges_reach_the_fleet, replica};
use tokencache_test_support::moto::MotoServer;

const TABLE: &str = "tokencache-fleet";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_one_replica_stops_the_other_serving_within_two_seconds() {
    let moto = MotoServer::start().await;
    let config = DynamoDbConfig::default()
        .with_region("us-east-1")
        .with_endpoint_url(moto.endpoint_url())
        .with_credentials(AwsCredentials::new("testing", "testing"))
        // moto in Python on a busy two-core machine is slower than DynamoDB.
        .with_attempt_timeout(Duration::from_secs(5));
    create_table(TABLE, &config)
        .await
        .unwrap_or_else(|error| panic!("creating the table: {error}"));
    let store = || async {
        let store = DynamoDbStore::connect(TABLE, config.clone())
            .await
            .unwrap_or_else(|error| panic!("connecting: {error}"));
        Arc::new(store) as Arc<dyn SharedStore>
    };
    let idp = MockIdpServer::start(Default::default()).await;
    let a = replica(&idp, store().await).await;
    let b = replica(&idp, store().await).await;
    let [client, all] = check_purges_reach_the_fleet(&a, &b, Duration::from_secs(2)).await;
    eprintln!(
        "dynamodb: a client's purge reached the other replica in {client:?}, a full purge in {all:?}"
    );
}
