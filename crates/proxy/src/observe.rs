//! What one route's upstream did, into the proxy's metrics.

use std::time::Duration;

use http::StatusCode;
use tokencache_core::{AnswerClass, FreshnessPolicy};
use tokencache_upstream::{BreakerState, Observer, RetryReason, UpstreamResponse};

use crate::answer_format::AnswerFormat;
use crate::metrics::{BreakerGauges, ProxyMetrics};

/// The metrics of one route's upstream.
pub(crate) struct RouteObserver {
    pub(crate) metrics: ProxyMetrics,
    pub(crate) breaker: BreakerGauges,
}

impl Observer for RouteObserver {
    fn attempt(&self, status: Option<StatusCode>, elapsed: Duration) {
        self.metrics.upstream(status, elapsed);
    }

    fn retry(&self, reason: RetryReason) {
        self.metrics.retry(reason == RetryReason::Transport);
    }

    fn budget_wait(&self, waited: Duration) {
        self.metrics.budget_wait(waited);
    }

    fn budget_rejected(&self) {
        self.metrics.budget_rejected();
    }

    fn throttled(&self) {
        self.metrics.throttled();
    }

    fn breaker(&self, state: BreakerState) {
        self.breaker.set(state);
    }
}

/// Whether an upstream answer to a cacheable request is a failure worth
/// retrying: a throttle, a 5xx, or a 200 that is not a token at all.
/// (A 200 holding a token without a usable lifetime is an answer: the
/// caller can use the token; it is just not cached.)
pub(crate) fn is_failed_answer(
    answer: &UpstreamResponse,
    format: AnswerFormat,
    policy: &FreshnessPolicy,
) -> bool {
    match AnswerClass::of(answer.status.as_u16(), &answer.body) {
        // Counted by the observer, where the budget learns of it.
        AnswerClass::Throttled => true,
        AnswerClass::ServerError => true,
        AnswerClass::Success => format.is_not_a_token(&answer.body, policy),
        _ => false,
    }
}

/// Whether a request that must not be retried failed upstream (for the
/// breaker): a 5xx or a throttle.
pub(crate) fn is_failed_pass_through(answer: &UpstreamResponse) -> bool {
    AnswerClass::of(answer.status.as_u16(), &answer.body).is_retryable()
}
