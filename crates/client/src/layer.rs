//! A tower layer that sends a bearer token, for hyper and tonic clients.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::StatusCode;
use http::header::AUTHORIZATION;
use tower_layer::Layer;
use tower_service::Service;

use crate::options::TokenOptions;
use crate::token_source::TokenSource;

/// The error of a [`BearerService`]: the token source's [`Error`](crate::Error)
/// or the inner service's own, boxed as tower middleware usually does.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower [`Layer`] that adds `Authorization: <token type> <token>`
/// (`Bearer …` as a rule) to every `http::Request`, with tokens from a
/// [`TokenSource`] such as [`ClientCredentials`](crate::ClientCredentials).
///
/// On a `401 Unauthorized` from the inner service, it drops the token it
/// sent from the source, so the next request fetches a fresh one. Unlike
/// `BearerMiddleware` (feature `middleware`) it does **not** send the
/// refused request again: an `http::Request<B>` body is in general a
/// one-shot stream that cannot be replayed. Put a retry layer that knows
/// your body type (tower's `retry` with a policy that clones it) outside
/// this one if you want that.
///
/// A request can ask for its own token (other scopes, another resource, a
/// forced renewal) with [`TokenOptions`] in its extensions
/// (`request.extensions_mut().insert(options)`).
///
/// ```no_run
/// # async fn example(source: tokencache_client::ClientCredentials) {
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tokencache_client::BearerLayer;
/// use tower::ServiceBuilder;
///
/// let http = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
/// let client = ServiceBuilder::new().layer(BearerLayer::new(source)).service(http);
/// # }
/// ```
#[derive(Clone)]
pub struct BearerLayer {
    source: Arc<dyn TokenSource>,
}

impl BearerLayer {
    /// A layer taking its tokens from `source`.
    #[must_use]
    pub fn new(source: impl TokenSource + 'static) -> Self {
        Self {
            source: Arc::new(source),
        }
    }
}

impl fmt::Debug for BearerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = BearerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerService {
            inner,
            source: Arc::clone(&self.source),
        }
    }
}

/// The service [`BearerLayer`] produces.
#[derive(Clone)]
pub struct BearerService<S> {
    inner: S,
    source: Arc<dyn TokenSource>,
}

impl<S: fmt::Debug> fmt::Debug for BearerService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for BearerService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqBody: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The service made ready by `poll_ready` goes into the future; a
        // clone stays behind for the next call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let source = Arc::clone(&self.source);
        let options = request
            .extensions()
            .get::<TokenOptions>()
            .cloned()
            .unwrap_or_default();
        Box::pin(async move {
            let token = source.token_with(options).await?;
            request
                .headers_mut()
                .insert(AUTHORIZATION, token.authorization_header().clone());
            let response = inner.call(request).await.map_err(Into::into)?;
            if response.status() == StatusCode::UNAUTHORIZED {
                source.invalidate_token(&token);
            }
            Ok(response)
        })
    }
}
