//! The seam between the loading policy and the network: a token endpoint
//! the loader and the routes send requests to. The real one is an
//! [`Upstream`] (budget, breaker, retries over a pooled client); tests put
//! a scripted fake behind the same trait and test the policy without
//! sockets.

use futures::future::{BoxFuture, FutureExt as _};
use tokencache_core::FreshnessPolicy;
use tokencache_upstream::{FetchError, FetchRequest, Priority, Upstream, UpstreamResponse};
use tokio::time::Instant;

use crate::answer_format::AnswerFormat;
use crate::observe::{RouteObserver, is_failed_answer, is_failed_pass_through};

/// What an upstream exchange gave.
pub(crate) type Exchange<'a> = BoxFuture<'a, Result<UpstreamResponse, FetchError>>;

/// A token endpoint, as the proxy's centre uses it.
pub(crate) trait TokenEndpoint: Send + Sync {
    /// Sends a cacheable load's request, retried as the endpoint's
    /// resilience allows (throttles, 5xx and bodies that are not tokens
    /// are retried), within `deadline`.
    fn fetch<'a>(
        &'a self,
        request: &'a FetchRequest,
        priority: Priority,
        deadline: Instant,
    ) -> Exchange<'a>;

    /// Sends a request that must not be repeated (an authorization code is
    /// single-use) once, within `deadline`.
    fn send_once<'a>(&'a self, request: &'a FetchRequest, deadline: Instant) -> Exchange<'a>;

    /// What its 200 answers look like.
    fn format(&self) -> AnswerFormat {
        AnswerFormat::OAuth
    }
}

/// A route's real upstream, with its metrics (through its observer).
pub(crate) struct UpstreamEndpoint {
    upstream: Upstream,
    observer: RouteObserver,
    policy: FreshnessPolicy,
    format: AnswerFormat,
}

impl UpstreamEndpoint {
    pub(crate) fn new(
        upstream: Upstream,
        observer: RouteObserver,
        policy: FreshnessPolicy,
    ) -> Self {
        Self {
            upstream,
            observer,
            policy,
            format: AnswerFormat::OAuth,
        }
    }

    /// The same endpoint, answering in `format`.
    pub(crate) fn with_format(mut self, format: AnswerFormat) -> Self {
        self.format = format;
        self
    }
}

impl TokenEndpoint for UpstreamEndpoint {
    fn fetch<'a>(
        &'a self,
        request: &'a FetchRequest,
        priority: Priority,
        deadline: Instant,
    ) -> Exchange<'a> {
        async move {
            let is_failure =
                |answer: &UpstreamResponse| is_failed_answer(answer, self.format, &self.policy);
            self.upstream
                .fetch(request, priority, deadline, &is_failure, &self.observer)
                .await
        }
        .boxed()
    }

    fn send_once<'a>(&'a self, request: &'a FetchRequest, deadline: Instant) -> Exchange<'a> {
        self.upstream
            .send_once(request, deadline, &is_failed_pass_through, &self.observer)
            .boxed()
    }

    fn format(&self) -> AnswerFormat {
        self.format
    }
}
