//! What the HTTP layers need of a token source: a small trait, so they take
//! any source, and tests plug in a fake one.

use std::sync::Arc;

use crate::error::Error;
use crate::options::TokenOptions;
use crate::token::AccessToken;
use crate::transport::BoxFuture;

/// A source of access tokens, such as [`ClientCredentials`].
///
/// `BearerMiddleware` and `BearerLayer` take any `TokenSource`: wrap
/// another grant, a token read from a file, or (in tests) a fake:
///
/// ```
/// use std::time::SystemTime;
/// use tokencache_client::{AccessToken, BoxFuture, Error, TokenOptions, TokenSource};
///
/// /// Always the same token.
/// struct Fixed(AccessToken);
///
/// impl TokenSource for Fixed {
///     fn token_with(&self, _options: TokenOptions) -> BoxFuture<'_, Result<AccessToken, Error>> {
///         let token = self.0.clone();
///         Box::pin(async move { Ok(token) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let token = AccessToken::from_response(
///     br#"{"access_token":"fake","expires_in":3600}"#,
///     SystemTime::UNIX_EPOCH,
/// )?;
/// let source = Fixed(token);
/// assert_eq!(source.token().await?.secret(), "fake");
/// # Ok(())
/// # }
/// ```
///
/// The methods return boxed futures so that the trait can be used as
/// `dyn TokenSource`.
///
/// [`ClientCredentials`]: crate::ClientCredentials
pub trait TokenSource: Send + Sync {
    /// A valid token, as `options` ask.
    fn token_with(&self, options: TokenOptions) -> BoxFuture<'_, Result<AccessToken, Error>>;

    /// A valid token: the source's usual one.
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, Error>> {
        self.token_with(TokenOptions::default())
    }

    /// Told that an API refused `token` (a 401): a caching source drops it,
    /// so that the next call gets a new one. Does nothing by default.
    fn invalidate_token(&self, token: &AccessToken) {
        let _ = token;
    }
}

impl<S: TokenSource + ?Sized> TokenSource for Arc<S> {
    fn token_with(&self, options: TokenOptions) -> BoxFuture<'_, Result<AccessToken, Error>> {
        (**self).token_with(options)
    }

    fn token(&self) -> BoxFuture<'_, Result<AccessToken, Error>> {
        (**self).token()
    }

    fn invalidate_token(&self, token: &AccessToken) {
        (**self).invalidate_token(token);
    }
}
