//! A `reqwest-middleware` middleware that sends a bearer token.

use std::fmt;
use std::sync::Arc;

use http::Extensions;
use http::StatusCode;
use http::header::AUTHORIZATION;
use reqwest_middleware::{Middleware, Next};

use crate::options::TokenOptions;
use crate::token::AccessToken;
use crate::token_source::TokenSource;

/// Adds `Authorization: <token type> <token>` (`Bearer …` as a rule) to
/// every request, with tokens from a [`TokenSource`] such as
/// [`ClientCredentials`](crate::ClientCredentials).
///
/// On a `401 Unauthorized` from the API, it drops the token it sent from
/// the source (the API may have stopped accepting it: a revocation, a key
/// rotation) and sends the request once more with a fresh token. A request
/// whose body cannot be cloned (a stream) is not sent again: its 401 is
/// returned as is, and the next request gets a fresh token.
///
/// A request can ask for its own token (other scopes, another resource, a
/// forced renewal) with [`TokenOptions`] in its extensions:
/// `.with_extension(TokenOptions::new().scopes(["orders/write"]))`.
///
/// Every request through the client gets the token, so give it a client
/// that only talks to the API the token is for.
///
/// ```no_run
/// # async fn example(source: tokencache_client::ClientCredentials) -> Result<(), Box<dyn std::error::Error>> {
/// use tokencache_client::{BearerMiddleware, TokenOptions};
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(BearerMiddleware::new(source))
///     .build();
/// let answer = client.get("https://api.example/orders").send().await?;
/// let written = client
///     .post("https://api.example/orders")
///     .with_extension(TokenOptions::new().scopes(["orders/write"]))
///     .send()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BearerMiddleware {
    source: Arc<dyn TokenSource>,
}

impl BearerMiddleware {
    /// A middleware taking its tokens from `source`.
    #[must_use]
    pub fn new(source: impl TokenSource + 'static) -> Self {
        Self {
            source: Arc::new(source),
        }
    }

    /// Sets the header on `request`; returns the token it holds.
    async fn authorize(
        &self,
        request: &mut reqwest::Request,
        options: &TokenOptions,
    ) -> reqwest_middleware::Result<AccessToken> {
        let token = self
            .source
            .token_with(options.clone())
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        request
            .headers_mut()
            .insert(AUTHORIZATION, token.authorization_header().clone());
        Ok(token)
    }
}

impl fmt::Debug for BearerMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerMiddleware").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Middleware for BearerMiddleware {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let options = extensions
            .get::<TokenOptions>()
            .cloned()
            .unwrap_or_default();
        let spare = request.try_clone();
        let token = self.authorize(&mut request, &options).await?;
        let response = next.clone().run(request, extensions).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        self.source.invalidate_token(&token);
        let Some(mut retry) = spare else {
            return Ok(response);
        };
        // Let the refused exchange's connection go back to the pool.
        drop(response);
        self.authorize(&mut retry, &options).await?;
        next.run(retry, extensions).await
    }
}
