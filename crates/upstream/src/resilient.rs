//! One upstream with its resilience: request budget, circuit breaker and
//! retries with exponential backoff and full jitter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use reqwest::Url;
use tokencache_core::{AnswerClass, Backoff, Clock, parse_retry_after};
use tokencache_retry::{Retry, Verdict};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use crate::budget::{BudgetConfig, Priority};
use crate::client::{UpstreamClient, UpstreamRequest, UpstreamResponse};
use crate::error::UpstreamError;
use crate::group::BudgetGroup;
use crate::trace;

/// How an upstream is protected.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResilienceConfig {
    /// Retry delays and the attempt limit.
    pub backoff: Backoff,
    /// The request budget of the upstream's default group (its host).
    pub budget: BudgetConfig,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
}

/// Why an attempt is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// No answer (connect error, timeout, broken connection).
    Transport,
    /// An answer worth retrying (throttled, 5xx, not a token).
    Answer(StatusCode),
}

/// What the resilience layer did, for metrics. Every method has an empty
/// default.
pub trait Observer: Send + Sync {
    /// An attempt went upstream: its status (`None`: no answer) and time.
    fn attempt(&self, _status: Option<StatusCode>, _elapsed: Duration) {}
    /// A retry is about to wait.
    fn retry(&self, _reason: RetryReason) {}
    /// A request waited for the budget.
    fn budget_wait(&self, _waited: Duration) {}
    /// A request was refused by the budget.
    fn budget_rejected(&self) {}
    /// The breaker's state after an attempt.
    fn breaker(&self, _state: BreakerState) {}
    /// The upstream throttled a request (429, or Cognito's 400
    /// `TooManyRequestsException`): the budget slowed down.
    fn throttled(&self) {}
}

/// An observer that records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// A request to send, owned so that it can be sent again.
///
/// A cacheable load is built with [`FetchRequest::token_form`] from the
/// parsed request its cache key came from; a pass-through request carries
/// the caller's own query, headers and body.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The caller's query string.
    pub query: Option<String>,
    /// Headers, already filtered by
    /// [`forwardable_headers`](crate::forwardable_headers).
    pub headers: HeaderMap,
    /// The form body.
    pub body: Bytes,
}

impl FetchRequest {
    /// A token request the proxy built itself: `body` (form-urlencoded) and,
    /// for `client_secret_basic`, the `Authorization` value. The only other
    /// headers are the proxy's own `Content-Type`, `Accept` and
    /// `User-Agent`: nothing of the caller's request travels unless it was
    /// parsed, so nothing the cache key did not see reaches the upstream
    /// (and no `Connection` header can strip what was keyed).
    #[must_use]
    pub fn token_form(body: Bytes, authorization: Option<HeaderValue>) -> Self {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(mut authorization) = authorization {
            // Never indexed by HPACK over HTTP/2.
            authorization.set_sensitive(true);
            headers.insert(AUTHORIZATION, authorization);
        }
        Self {
            query: None,
            headers,
            body,
        }
    }
}

impl FetchRequest {
    /// A request of the AWS JSON 1.1 protocol (Cognito's native API) the
    /// proxy built itself: `target` in `X-Amz-Target`, `body` as JSON, and
    /// only the proxy's own `Content-Type`, `Accept` and `User-Agent`
    /// besides.
    #[must_use]
    pub fn aws_json(target: HeaderValue, body: Bytes) -> Self {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        headers.insert(header::HeaderName::from_static("x-amz-target"), target);
        Self {
            query: None,
            headers,
            body,
        }
    }
}

/// The `User-Agent` of requests the proxy builds.
const USER_AGENT_VALUE: &str = concat!("tokencache/", env!("CARGO_PKG_VERSION"));

/// Why a fetch produced no answer to pass on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The last attempt got no answer.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The request budget had no slot before the deadline.
    #[error("the token endpoint's request budget is exhausted")]
    BudgetExhausted {
        /// When a slot could be free.
        retry_after: Duration,
    },
    /// The circuit breaker is open.
    #[error("the token endpoint is failing; requests are paused")]
    CircuitOpen {
        /// When the breaker lets a probe through.
        retry_after: Duration,
    },
}

impl FetchError {
    /// How long the caller should wait before trying again, if known.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::BudgetExhausted { retry_after } | Self::CircuitOpen { retry_after } => {
                Some(*retry_after)
            }
            Self::Upstream(_) => None,
        }
    }
}

/// One token endpoint: its URL, budget group and breaker, over a shared
/// client.
#[derive(Debug)]
pub struct Upstream {
    url: Url,
    client: UpstreamClient,
    budget: Arc<BudgetGroup>,
    breaker: CircuitBreaker,
    backoff: Backoff,
    /// Wall-clock time, for `Retry-After` dates.
    clock: Arc<dyn Clock>,
}

impl Upstream {
    /// An upstream at `url` drawing on the request budget of `budget`'s
    /// group (`config.budget` is that group's business, not this
    /// upstream's).
    #[must_use]
    pub fn new(
        url: Url,
        client: UpstreamClient,
        config: &ResilienceConfig,
        budget: Arc<BudgetGroup>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            url,
            client,
            budget,
            breaker: CircuitBreaker::new(config.breaker),
            backoff: config.backoff,
            clock,
        }
    }

    /// The token endpoint.
    #[must_use]
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The budget group this upstream draws on.
    #[must_use]
    pub fn budget(&self) -> &Arc<BudgetGroup> {
        &self.budget
    }

    /// The breaker's state now.
    #[must_use]
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state(Instant::now())
    }

    /// Sends `request`, retrying while `is_failure` says an answer is worth
    /// retrying (and on transport errors), within the attempt limit and
    /// `deadline`. Every attempt takes a budget slot and a breaker permit.
    ///
    /// When the retries run out, the last answer is returned as an answer
    /// (the caller decides what to show), or the last transport error.
    ///
    /// # Errors
    /// [`FetchError`] when no answer came, or the budget or breaker refused
    /// the first attempt.
    pub async fn fetch(
        &self,
        request: &FetchRequest,
        priority: Priority,
        deadline: Instant,
        is_failure: &(dyn Fn(&UpstreamResponse) -> bool + Sync),
        observer: &dyn Observer,
    ) -> Result<UpstreamResponse, FetchError> {
        // The wait before the next attempt, in milliseconds, for its span.
        let backoff_ms = AtomicU64::new(0);
        Retry::new(self.backoff)
            .deadline(deadline)
            .run(
                |made| {
                    let backoff = Duration::from_millis(backoff_ms.load(Ordering::Relaxed));
                    self.attempt(request, priority, deadline, is_failure, observer)
                        .instrument(trace::attempt_span(&self.url, made + 1, backoff))
                },
                |result| match result {
                    Ok(Attempt::Answer(_)) => Verdict::Stop,
                    // The budget slowed down (and paused for a
                    // `Retry-After`): the next attempt waits for a slot,
                    // and a throttle uses up no attempt meant for errors.
                    Ok(Attempt::Throttled(_)) if self.budget.is_limited() => Verdict::Again,
                    Ok(Attempt::Failed(answer) | Attempt::Throttled(answer)) => self
                        .retry_after(answer)
                        .map_or(Verdict::Retry, Verdict::RetryAfter),
                    Err(FetchError::Upstream(error)) if error.is_retryable() => Verdict::Retry,
                    // Refused by the budget or the breaker on a retry: the
                    // previous attempt's result says more than the refusal.
                    Err(_) => Verdict::Discard,
                },
                |result, retrying| {
                    let delay = u64::try_from(retrying.delay.as_millis()).unwrap_or(u64::MAX);
                    backoff_ms.store(delay, Ordering::Relaxed);
                    observer.retry(match result {
                        Ok(
                            Attempt::Failed(answer)
                            | Attempt::Answer(answer)
                            | Attempt::Throttled(answer),
                        ) => RetryReason::Answer(answer.status),
                        Err(_) => RetryReason::Transport,
                    });
                },
            )
            .await
            .map(Attempt::into_answer)
    }

    /// The wait an answer asks for with `Retry-After`.
    fn retry_after(&self, answer: &UpstreamResponse) -> Option<Duration> {
        let value = answer.headers.get(header::RETRY_AFTER)?;
        parse_retry_after(value.as_bytes(), self.clock.now())
    }

    /// Sends `request` once (for requests that must not be repeated, such
    /// as an authorization-code exchange), through the budget and breaker.
    ///
    /// # Errors
    /// [`FetchError`] when no answer came or the budget or breaker refused.
    pub async fn send_once(
        &self,
        request: &FetchRequest,
        deadline: Instant,
        is_failure: &(dyn Fn(&UpstreamResponse) -> bool + Sync),
        observer: &dyn Observer,
    ) -> Result<UpstreamResponse, FetchError> {
        self.attempt(request, Priority::Caller, deadline, is_failure, observer)
            .instrument(trace::attempt_span(&self.url, 1, Duration::ZERO))
            .await
            .map(Attempt::into_answer)
    }

    async fn attempt(
        &self,
        request: &FetchRequest,
        priority: Priority,
        deadline: Instant,
        is_failure: &(dyn Fn(&UpstreamResponse) -> bool + Sync),
        observer: &dyn Observer,
    ) -> Result<Attempt, FetchError> {
        let permit = self.breaker.admit(Instant::now()).map_err(|retry_after| {
            trace::record_refused("circuit_open");
            FetchError::CircuitOpen { retry_after }
        })?;
        let acquired = self
            .budget
            .acquire(priority, deadline)
            .instrument(trace::budget_wait_span(priority))
            .await;
        match acquired {
            Ok(waited) if !waited.is_zero() => observer.budget_wait(waited),
            Ok(_) => {}
            Err(retry_after) => {
                observer.budget_rejected();
                // Not the upstream's fault: leave the breaker as it was.
                self.breaker.record(permit, true, Instant::now());
                trace::record_refused("budget_exhausted");
                return Err(FetchError::BudgetExhausted { retry_after });
            }
        }
        let started = Instant::now();
        let remaining = deadline.saturating_duration_since(started);
        // The trace context goes on the copy sent, never on what was keyed.
        let mut headers = request.headers.clone();
        trace::inject_current(&mut headers);
        let sent = tokio::time::timeout(
            remaining,
            self.client.send(UpstreamRequest {
                url: &self.url,
                query: request.query.as_deref(),
                headers,
                body: request.body.clone(),
            }),
        )
        .await
        .unwrap_or_else(|_| {
            Err(UpstreamError::Timeout(
                "the caller's deadline passed".into(),
            ))
        });
        let now = Instant::now();
        trace::record_attempt(&sent);
        observer.attempt(sent.as_ref().ok().map(|a| a.status), now - started);
        let outcome = match sent {
            Ok(answer)
                if AnswerClass::of(answer.status.as_u16(), &answer.body)
                    == AnswerClass::Throttled =>
            {
                self.budget
                    .throttled(started, now, self.retry_after(&answer))
                    .await;
                observer.throttled();
                Ok(Attempt::Throttled(answer))
            }
            Ok(answer) if is_failure(&answer) => {
                self.budget.accepted(now);
                Ok(Attempt::Failed(answer))
            }
            Ok(answer) => {
                self.budget.accepted(now);
                Ok(Attempt::Answer(answer))
            }
            Err(error) => Err(FetchError::Upstream(error)),
        };
        // A throttle is the upstream answering, and asking for less: the
        // budget slows down; the breaker is for real failures.
        let healthy = matches!(outcome, Ok(Attempt::Answer(_) | Attempt::Throttled(_)))
            || matches!(&outcome, Err(FetchError::Upstream(e)) if !e.is_retryable());
        self.breaker.record(permit, healthy, now);
        observer.breaker(self.breaker.state(now));
        outcome
    }
}

/// One attempt's answer: good to pass on, or a failure worth retrying.
enum Attempt {
    Answer(UpstreamResponse),
    Failed(UpstreamResponse),
    /// A throttle: a rate signal for the budget, not a failure.
    Throttled(UpstreamResponse),
}

impl Attempt {
    fn into_answer(self) -> UpstreamResponse {
        match self {
            Self::Answer(answer) | Self::Failed(answer) | Self::Throttled(answer) => answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_form_carries_only_the_proxys_own_headers() {
        let request = FetchRequest::token_form(
            Bytes::from_static(b"grant_type=client_credentials"),
            Some(HeaderValue::from_static("Basic YTpi")),
        );
        assert_eq!(request.query, None);
        let mut names: Vec<_> = request.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["accept", "authorization", "content-type", "user-agent"]
        );
        assert!(request.headers[AUTHORIZATION].is_sensitive());
        assert!(
            request.headers[USER_AGENT]
                .to_str()
                .is_ok_and(|agent| agent.starts_with("tokencache/"))
        );
        let body_credentials = FetchRequest::token_form(Bytes::new(), None);
        assert!(!body_credentials.headers.contains_key(AUTHORIZATION));
    }
}
