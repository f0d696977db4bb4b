//! The pure logic of tokencache: everything that decides *what* to cache and
//! *when* to serve it, with no web framework, store client or SDK behind it.
//!
//! - [`TokenRequest`] parses an OAuth 2.0 token request (form body, query
//!   string, `Authorization: Basic`) strictly, as RFC 6749 asks.
//! - [`KeyDeriver`] turns a request into a [`CacheKey`]: an HMAC-SHA256 over
//!   a canonical form of every parameter that can change the token, so two
//!   requests share a token only when nothing that could change it differs.
//! - [`CachedToken`] is a cached token response, and [`FreshnessPolicy`]
//!   decides when it is fresh, aging (served while a refresh runs) or expired.
//! - [`Backoff`] and [`AnswerClass`] decide when and how soon an upstream
//!   answer is worth retrying.
//! - [`SharedStore`] is the contract of the shared stores (Redis,
//!   DynamoDB), and [`KeyRing`] seals what goes into them with AES-256-GCM.
//! - [`cognito`] does the same for Cognito's native API (AWS JSON 1.1):
//!   strict parsing, a canonical body that is both keyed
//!   ([`KeyDeriver::derive_native`]) and forwarded, and native answers as
//!   cache entries.
//! - [`Clock`] is the one source of time, so expiry logic is tested on a
//!   manual clock without sleeping.
//!
//! ```
//! use tokencache_core::{
//!     CachedToken, Freshness, FreshnessPolicy, HmacKey, KeyDeriver, TokenRequest, UnixMillis,
//! };
//!
//! let deriver = KeyDeriver::new(&HmacKey::from_bytes([7; 32]));
//! let body = b"grant_type=client_credentials&scope=api/write+api/read";
//! let basic = b"Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ="; // demo-client:demo-secret
//! let request = TokenRequest::parse(
//!     Some(b"application/x-www-form-urlencoded"),
//!     Some(basic),
//!     None,
//!     body,
//! )?;
//! assert!(request.is_cacheable());
//! let key = deriver.derive("/oauth2/token", &request);
//!
//! // The same scopes in another order share the key.
//! let reordered = TokenRequest::parse(
//!     Some(b"application/x-www-form-urlencoded"),
//!     Some(basic),
//!     None,
//!     b"grant_type=client_credentials&scope=api/read+api/write",
//! )?;
//! assert_eq!(key, deriver.derive("/oauth2/token", &reordered));
//!
//! // An upstream answer becomes a cached entry with a freshness schedule.
//! let now = UnixMillis(1_700_000_000_000);
//! let upstream = br#"{"access_token":"opaque","expires_in":3600,"token_type":"Bearer"}"#;
//! let token = CachedToken::from_response(upstream, now, &FreshnessPolicy::default())?;
//! assert_eq!(token.freshness(now), Freshness::Fresh);
//! assert_eq!(token.freshness(now.plus_millis(2_800_000)), Freshness::Aging);
//! assert_eq!(token.freshness(now.plus_millis(3_300_000)), Freshness::Expired);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate has no feature flags.

mod backoff;
pub mod budget;
mod classify;
mod clock;
pub mod cognito;
mod form;
mod freshness;
mod key;
mod purge;
mod request;
mod seal;
mod secret;
mod store;
mod token;

pub use backoff::{Backoff, http_date, parse_retry_after};
pub use classify::AnswerClass;
pub use clock::{Clock, SystemClock, UnixMillis};
pub use freshness::{
    DEFAULT_MAX_TTL, Freshness, FreshnessPolicy, MinRemaining, PolicyError, Schedule,
};
pub use key::{CacheKey, ClientTag, Fingerprint, KeyDeriver};
pub use purge::{PURGE_LOG_KEEPS, PurgeLog, PurgeMark, PurgeScope};
pub use request::{CanonicalRequest, CredentialSource, RequestError, TokenRequest};
pub use seal::{EncryptionKey, KeyRing, SealError};
pub use secret::{ClientSecret, HmacKey};
pub use store::{BudgetStore, LeaseOwner, SharedStore, StoreError, StoreFuture, StoreKey};
pub use token::{AnswerShape, CachedToken, DecodeError, Uncacheable};
