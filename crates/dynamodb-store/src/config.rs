//! Where the AWS clients come from: the standard AWS chain, with explicit
//! overrides for tests and bounded timeouts for the hot path.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use tokencache_core::{Clock, StoreError, SystemClock};
use zeroize::Zeroizing;

use crate::credentials::DetachedLoads;

/// How a [`DynamoDbStore`](crate::DynamoDbStore), [`create_table`](crate::create_table)
/// and the KMS helpers reach AWS.
///
/// Every field left at its default comes from the standard AWS chain
/// (`aws_config::defaults`): environment (`AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_KMS`,
/// `AWS_ENDPOINT_URL`, …), the shared config and credentials files and
/// `AWS_PROFILE`, web identity (EKS), the ECS container role and the EC2
/// instance role. The explicit fields exist so tests and embedders set them
/// without touching the process environment.
///
/// ```
/// use std::time::Duration;
/// use tokencache_dynamodb_store::{AwsCredentials, DynamoDbConfig};
///
/// let config = DynamoDbConfig::default()
///     .with_region("eu-west-1")
///     .with_endpoint_url("http://127.0.0.1:5000")
///     .with_credentials(AwsCredentials::new("AKIDEXAMPLE", "not-in-debug"))
///     .with_attempt_timeout(Duration::from_millis(300));
/// assert!(!format!("{config:?}").contains("not-in-debug"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct DynamoDbConfig {
    /// The region; `None` reads it from the chain.
    pub region: Option<String>,
    /// The endpoint of both DynamoDB and KMS (a local emulator, a VPC
    /// endpoint); `None` uses the chain's `AWS_ENDPOINT_URL_*` or the
    /// region's public endpoint.
    pub endpoint_url: Option<String>,
    /// Static credentials; `None` uses the chain.
    pub credentials: Option<AwsCredentials>,
    /// How long one attempt of a store operation may take (default
    /// 500 ms): the proxy would rather go upstream than wait on a slow
    /// store.
    pub attempt_timeout: Duration,
    /// How many attempts a store operation makes (default 2: one retry,
    /// with the SDK's standard backoff).
    pub max_attempts: u32,
    /// The wall clock that expiries are compared with.
    pub clock: Arc<dyn Clock>,
}

/// Attempts of start-up and administrative calls (table creation, KMS) get
/// at least this long: the control plane is slower than item reads, and
/// nobody's request waits on them.
const ADMIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const ADMIN_MAX_ATTEMPTS: u32 = 3;

impl Default for DynamoDbConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            credentials: None,
            attempt_timeout: Duration::from_millis(500),
            max_attempts: 2,
            clock: Arc::new(SystemClock),
        }
    }
}

impl DynamoDbConfig {
    /// Sets the region.
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the endpoint of DynamoDB and KMS.
    #[must_use]
    pub fn with_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Sets static credentials.
    #[must_use]
    pub fn with_credentials(mut self, credentials: AwsCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets the per-attempt timeout of store operations.
    #[must_use]
    pub const fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Sets how many attempts a store operation makes (at least one).
    #[must_use]
    pub const fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the clock expiries are compared with.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The SDK configuration for item operations: short attempts, few
    /// retries.
    pub(crate) async fn load_for_items(&self) -> Result<SdkConfig, StoreError> {
        self.load(self.attempt_timeout, self.max_attempts).await
    }

    /// The SDK configuration for start-up and administrative calls.
    pub(crate) async fn load_for_admin(&self) -> Result<SdkConfig, StoreError> {
        self.load(
            self.attempt_timeout.max(ADMIN_ATTEMPT_TIMEOUT),
            self.max_attempts.max(ADMIN_MAX_ATTEMPTS),
        )
        .await
    }

    async fn load(&self, attempt: Duration, attempts: u32) -> Result<SdkConfig, StoreError> {
        let attempts = attempts.max(1);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(attempt)
            .operation_attempt_timeout(attempt)
            // Every attempt plus the standard mode's backoff (under a
            // second for two or three attempts) fits.
            .operation_timeout(attempt * attempts + Duration::from_secs(1))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(attempts));
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(credentials) = &self.credentials {
            loader = loader.credentials_provider(credentials.to_sdk());
        }
        let sdk = loader.load().await;
        // Credentials from the chain may take longer to load than an
        // attempt may last: load them detached (see `credentials`).
        let sdk = match sdk.credentials_provider() {
            Some(chain) if self.credentials.is_none() => sdk
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(DetachedLoads::new(chain)))
                .build(),
            _ => sdk,
        };
        if sdk.region().is_none() {
            return Err(StoreError::Refused(
                "no AWS region configured (set AWS_REGION or a profile region)".into(),
            ));
        }
        Ok(sdk)
    }
}

impl fmt::Debug for DynamoDbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbConfig")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("credentials", &self.credentials)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Static AWS credentials (tests, emulators). Production deployments leave
/// [`DynamoDbConfig::credentials`] unset and use a role.
#[derive(Clone)]
pub struct AwsCredentials {
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
}

impl AwsCredentials {
    /// Long-term credentials: an access key id and its secret.
    #[must_use]
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: Zeroizing::new(secret_access_key.into()),
            session_token: None,
        }
    }

    /// Adds a session token (temporary credentials).
    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(Zeroizing::new(token.into()));
        self
    }

    fn to_sdk(&self) -> Credentials {
        Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.to_string(),
            self.session_token.as_ref().map(|token| token.to_string()),
            None,
            "tokencache-static",
        )
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The access key id names the key without granting anything; the
        // secret and the session token stay out.
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let config = DynamoDbConfig::default().with_credentials(
            AwsCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI-secret")
                .with_session_token("tok-s3cr3t"),
        );
        let debug = format!("{config:?}");
        assert!(debug.contains("AKIDEXAMPLE"));
        assert!(!debug.contains("wJalrXUtnFEMI"));
        assert!(!debug.contains("s3cr3t"));
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn defaults_are_bounded() {
        let config = DynamoDbConfig::default();
        assert_eq!(config.attempt_timeout, Duration::from_millis(500));
        assert_eq!(config.max_attempts, 2);
    }

    #[tokio::test]
    async fn chain_credentials_load_detached_and_static_ones_do_not() {
        let chain = DynamoDbConfig::default().with_region("us-east-1");
        let sdk = chain.load_for_items().await.unwrap();
        let provider = format!("{:?}", sdk.credentials_provider());
        assert!(provider.contains("DetachedLoads"), "{provider}");

        let fixed = chain.with_credentials(AwsCredentials::new("a", "b"));
        let sdk = fixed.load_for_items().await.unwrap();
        let provider = format!("{:?}", sdk.credentials_provider());
        assert!(!provider.contains("DetachedLoads"), "{provider}");
    }

    #[tokio::test]
    async fn admin_calls_get_longer_attempts() {
        let config = DynamoDbConfig::default()
            .with_region("us-east-1")
            .with_credentials(AwsCredentials::new("a", "b"));
        let items = config.load_for_items().await.unwrap();
        let admin = config.load_for_admin().await.unwrap();
        let attempt = |sdk: &SdkConfig| {
            sdk.timeout_config()
                .and_then(TimeoutConfig::operation_attempt_timeout)
        };
        assert_eq!(attempt(&items), Some(Duration::from_millis(500)));
        assert_eq!(attempt(&admin), Some(ADMIN_ATTEMPT_TIMEOUT));
        assert_eq!(items.retry_config().map(RetryConfig::max_attempts), Some(2));
    }
}
