//! The in-process shared store keeps the shared-store contract.

use std::sync::Arc;

use tokencache_core::SystemClock;
use tokencache_memory_store::InProcessSharedStore;

#[tokio::test]
async fn in_process_store_passes_the_conformance_suite() {
    let store = InProcessSharedStore::new(Arc::new(SystemClock));
    tokencache_test_support::conformance::check_store(Arc::new(store)).await;
}
