//! The token listener's one service: routing by exact path straight on the
//! connection, without a general-purpose router in between.
//!
//! `serve` runs it as a hyper service; [`Proxy::router`](crate::Proxy::router)
//! wraps the same value as axum's fallback service, so an embedder gets the
//! same routing, the same 404 and 405, the same limits. (A router's
//! per-request work, extensions, body boxing, matched-path bookkeeping,
//! shows in the benchmark: the hit path is that short.)

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{Method, Request};
use tracing::{Instrument as _, Span};

use crate::cognito::{self, CognitoRoute, X_AMZ_TARGET};
use crate::error::ProxyError;
use crate::metrics::{Outcome, ProxyMetrics};
use crate::route::{RequestLimits, Route};
use crate::spans;

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// A route as one connection holds it. The route is every connection's;
/// the outer count is this connection's own, so the reference each request
/// takes for its future is counted on a cache line no other core writes
/// (one count shared by every connection bounced between the cores on
/// every request).
type ConnectionHandle<T> = Arc<Arc<T>>;

/// Routes token requests to their [`Route`] by exact path.
///
/// A clone is one connection's: it holds the same routes through handles
/// of its own (see [`ConnectionHandle`]).
pub(crate) struct TokenService {
    routes: Box<[ConnectionHandle<Route>]>,
    /// Cognito's native API, answering `POST /` with `X-Amz-Target`.
    cognito: Option<ConnectionHandle<CognitoRoute>>,
    metrics: ProxyMetrics,
    limits: RequestLimits,
    /// Requests with more headers are refused (431). HTTP/1.1's parser
    /// refuses them before they get here; HTTP/2 has no such setting, only
    /// a limit on their bytes, so this is what holds it to the same count.
    max_headers: usize,
}

impl TokenService {
    pub(crate) fn new(
        routes: Arc<[Arc<Route>]>,
        cognito: Option<Arc<CognitoRoute>>,
        metrics: ProxyMetrics,
        limits: RequestLimits,
        max_headers: usize,
    ) -> Self {
        Self {
            routes: routes.iter().map(handle_on).collect(),
            cognito: cognito.as_ref().map(handle_on),
            metrics,
            limits,
            max_headers,
        }
    }

    fn refuse(&self, error: ProxyError) -> Answer {
        self.metrics.request(Outcome::Error);
        let response = error.into_response();
        Box::pin(std::future::ready(Ok(response)))
    }

    fn route<B>(&self, request: Request<B>) -> Answer
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    {
        if request.headers().len() > self.max_headers {
            return self.refuse(ProxyError::TooManyHeaders(self.max_headers));
        }
        let path = request.uri().path();
        if path == "/"
            && request.headers().contains_key(&X_AMZ_TARGET)
            && let Some(cognito) = &self.cognito
        {
            let cognito = Arc::clone(cognito);
            let limits = self.limits;
            let span = spans::token_request(cognito::NAME, path, request.headers());
            return traced(span, move || async move {
                cognito.answer(request, limits).await
            });
        }
        // A handful of routes at most: a linear scan beats hashing.
        let Some(route) = self.routes.iter().find(|route| route.path() == path) else {
            return self.refuse(ProxyError::NotFound);
        };
        if request.method() != Method::POST {
            return self.refuse(ProxyError::MethodNotAllowed);
        }
        let route = Arc::clone(route);
        let limits = self.limits;
        let span = spans::token_request(route.path(), path, request.headers());
        traced(
            span,
            move || async move { route.answer(request, limits).await },
        )
    }
}

impl Clone for TokenService {
    fn clone(&self) -> Self {
        Self {
            routes: self
                .routes
                .iter()
                .map(|route| handle_on(route.as_ref()))
                .collect(),
            cognito: self
                .cognito
                .as_ref()
                .map(|cognito| handle_on(cognito.as_ref())),
            metrics: self.metrics.clone(),
            limits: self.limits,
            max_headers: self.max_headers,
        }
    }
}

/// A handle of one connection's own on a shared `T`.
fn handle_on<T>(shared: &Arc<T>) -> ConnectionHandle<T> {
    Arc::new(Arc::clone(shared))
}

/// The future of one token request's `answer`: as it is when its span is
/// disabled (traces off, so the hit path pays for no wrapper), else inside
/// the span, which then records how the request was answered.
///
/// It takes what makes the answer, not the answer's future: that future
/// (a kilobyte and more) is then made where it runs, in the box, rather
/// than copied into it through every function it passes.
fn traced<M, F>(span: Span, answer: M) -> Answer
where
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = Response> + Send,
{
    if span.is_disabled() {
        return Box::pin(async move { Ok(answer().await) });
    }
    Box::pin(async move {
        let response = answer().instrument(span.clone()).await;
        spans::record_answer(&span, &response);
        Ok(response)
    })
}

impl<B> hyper::service::Service<Request<B>> for TokenService
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<B>) -> Self::Future {
        self.route(request)
    }
}

/// The token service for tower (axum's fallback service, which clones its
/// service for every request: this clone is one shared count, not a
/// connection's set of handles).
#[derive(Clone)]
pub(crate) struct TowerTokenService(Arc<TokenService>);

impl TowerTokenService {
    pub(crate) fn new(service: TokenService) -> Self {
        Self(Arc::new(service))
    }
}

impl<B> tower_service::Service<Request<B>> for TowerTokenService
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Answer {
        self.0.route(request)
    }
}
