//! Cognito's native API (AWS JSON 1.1, `X-Amz-Target`): requests parsed
//! strictly into a canonical form that is both keyed and forwarded, and
//! answers turned into cache entries.
//!
//! ```
//! use tokencache_core::cognito::{NativeRequest, parse_target};
//! use tokencache_core::{HmacKey, KeyDeriver};
//!
//! let operation = parse_target(b"AWSCognitoIdentityProviderService.InitiateAuth")?;
//! let body = br#"{"AuthFlow":"USER_PASSWORD_AUTH","ClientId":"app",
//!     "AuthParameters":{"USERNAME":"svc","PASSWORD":"pw"}}"#;
//! let request = NativeRequest::parse(operation, body)?;
//! let canonical = request.cacheable().expect("a password sign-in is cached");
//! assert!(canonical.body().starts_with(br#"{"AuthFlow":"USER_PASSWORD_AUTH","AuthParameters""#));
//!
//! // Member order and white space do not change the key.
//! let reordered = NativeRequest::parse(operation, br#"{"ClientId":"app",
//!     "AuthParameters":{"PASSWORD":"pw","USERNAME":"svc"},"AuthFlow":"USER_PASSWORD_AUTH"}"#)?;
//! let deriver = KeyDeriver::new(&HmacKey::from_bytes([7; 32]));
//! assert_eq!(
//!     deriver.derive_native("/", canonical),
//!     deriver.derive_native("/", reordered.cacheable().expect("cached")),
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod answer;
mod json;
mod request;

pub use answer::{NativeAnswerOptions, is_not_a_native_answer};
pub use request::{
    CanonicalNativeRequest, NativeRequest, NativeRequestError, NotCacheable, TARGET_PREFIX,
    parse_target,
};
