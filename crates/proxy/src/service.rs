//! The token listener's service: routing by exact path straight on the
//! connection, without a general-purpose router in between.
//!
//! [`Proxy::router`](crate::Proxy::router) serves the same endpoints through
//! axum (for embedding and tests); this is what `serve` runs, because the
//! hit path is short enough that a router's per-request work (extensions,
//! body boxing, matched-path bookkeeping) shows in the benchmark.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{Method, Request};
use hyper::body::Incoming;

use crate::error::ProxyError;
use crate::handler;
use crate::metrics::Outcome;
use crate::proxy::{Route, Shared};

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// Routes token requests to their [`Route`] by exact path.
#[derive(Clone)]
pub(crate) struct TokenService {
    routes: Arc<[Arc<Route>]>,
    shared: Arc<Shared>,
}

impl TokenService {
    pub(crate) fn new(routes: &[Arc<Route>], shared: Arc<Shared>) -> Self {
        Self {
            routes: routes.iter().cloned().collect(),
            shared,
        }
    }

    fn refuse(&self, error: ProxyError) -> Answer {
        self.shared.metrics.request(Outcome::Error);
        let response = error.into_response();
        Box::pin(std::future::ready(Ok(response)))
    }
}

impl hyper::service::Service<Request<Incoming>> for TokenService {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        // A handful of routes at most: a linear scan beats hashing.
        let path = request.uri().path();
        let Some(route) = self.routes.iter().find(|route| *route.path == *path) else {
            return self.refuse(ProxyError::NotFound);
        };
        if request.method() != Method::POST {
            return self.refuse(ProxyError::MethodNotAllowed);
        }
        let route = Arc::clone(route);
        Box::pin(async move { Ok(handler::serve_token(&route, request).await) })
    }
}
