//! Credential loads that outlive a cancelled request.
//!
//! Store operations have a short attempt budget (500 ms by default), and
//! the SDK resolves credentials inside it. A role's credentials (STS web
//! identity on EKS, a cold ECS or EC2 metadata endpoint) can take longer;
//! cancelled with the attempt, the load would start over on the next one
//! and might never finish. Here each load runs in a spawned task that
//! completes whatever happens to the request that started it: concurrent
//! callers share it, and a later request picks up its result. The SDK's
//! identity cache in front still decides when to load again.

use std::sync::{Arc, Mutex, PoisonError};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// A load in flight, or finished and not yet superseded. The error is text
/// because shared results must be `Clone`; credential errors carry no
/// secrets.
type Load = Shared<BoxFuture<'static, Result<Credentials, String>>>;

/// Wraps a credentials provider so that its loads run detached.
#[derive(Debug)]
pub(crate) struct DetachedLoads {
    inner: SharedCredentialsProvider,
    load: Arc<Mutex<Option<Load>>>,
}

impl DetachedLoads {
    pub(crate) fn new(inner: SharedCredentialsProvider) -> Self {
        Self {
            inner,
            load: Arc::new(Mutex::new(None)),
        }
    }

    /// The load in flight, or a new one when none is (or the last one
    /// finished: its result has been seen, and a caller asking again
    /// wants fresh credentials).
    fn current_or_new(&self) -> Load {
        let mut slot = self.load.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(load) = slot.as_ref().filter(|load| load.peek().is_none()) {
            return load.clone();
        }
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            inner
                .provide_credentials()
                .await
                .map_err(|error| DisplayErrorContext(&error).to_string())
        });
        let load = async move {
            task.await
                .unwrap_or_else(|error| Err(format!("the credential load failed: {error}")))
        }
        .boxed()
        .shared();
        *slot = Some(load.clone());
        load
    }
}

impl ProvideCredentials for DetachedLoads {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.current_or_new()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    /// A provider that takes a second and counts its loads.
    #[derive(Debug, Default)]
    struct Slow(Arc<AtomicU32>);

    impl ProvideCredentials for Slow {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let loads = Arc::clone(&self.0);
            future::ProvideCredentials::new(async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(Credentials::new("id", "secret", None, None, "slow"))
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_load_finishes_for_the_next_caller() {
        let loads = Arc::new(AtomicU32::new(0));
        let provider = DetachedLoads::new(SharedCredentialsProvider::new(Slow(Arc::clone(&loads))));
        let short = Duration::from_millis(300);

        // Two callers give up before the load is done...
        assert!(
            tokio::time::timeout(short, provider.provide_credentials())
                .await
                .is_err()
        );
        assert!(
            tokio::time::timeout(short, provider.provide_credentials())
                .await
                .is_err()
        );
        // ...and the third gets what the one load fetched, in time.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let credentials = tokio::time::timeout(short, provider.provide_credentials())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(credentials.access_key_id(), "id");
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        // Asked again once that result was seen: a fresh load.
        provider.provide_credentials().await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_load() {
        let loads = Arc::new(AtomicU32::new(0));
        let provider = DetachedLoads::new(SharedCredentialsProvider::new(Slow(Arc::clone(&loads))));
        let (a, b) = tokio::join!(
            provider.provide_credentials(),
            provider.provide_credentials()
        );
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
