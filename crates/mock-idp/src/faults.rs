//! The faults `POST /oauth2/token` can be told to inject (see [`Settings`]):
//! which one a request gets, and how each is delivered.
//!
//! A request's fault is drawn on arrival, in a fixed order: the rate limit,
//! then a reset, a hang, a server error, garbage. Each share is an
//! independent draw among the requests the earlier steps left, so with
//! `reset_rate` and `hang_rate` both at 0.5, half the requests are reset
//! and a quarter hang.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokencache_core::UnixMillis;

use crate::control::{Settings, ThrottleStyle};
use crate::rate_limit::RateLimiter;
use crate::response::OAuthError;
use crate::server::{ServerStopping, drop_connection, hang};

/// The body of a garbage answer: what a misrouted load balancer or a
/// captive portal sends, served as `text/html` with status 200.
pub(crate) const GARBAGE_BODY: &str = "<html>upstream garbage</html>";

/// What a token request gets instead of being processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Over the rate limit: refused in `style`, to retry after
    /// `retry_after_secs`.
    Throttled {
        /// How the refusal looks.
        style: ThrottleStyle,
        /// Whole seconds until the limit admits a request again.
        retry_after_secs: u64,
    },
    /// The connection is closed without an answer.
    Reset,
    /// Never answered (until the server stops).
    Hang,
    /// `500` or `503` with `{"error":"server_error"}`.
    ServerError(StatusCode),
    /// `200` with [`GARBAGE_BODY`].
    Garbage,
}

/// Draws the faults: the rate limit's bucket, and the alternation of server
/// errors.
#[derive(Debug, Default)]
pub(crate) struct FaultInjector {
    limiter: RateLimiter,
    /// Server errors alternate 500, 503, 500, ..., so a client's handling of
    /// both is exercised with a couple of requests rather than by chance.
    next_is_503: AtomicBool,
}

impl FaultInjector {
    /// The fault, if any, for a token request arriving at `now`.
    pub(crate) fn draw(&self, settings: &Settings, now: UnixMillis) -> Option<Fault> {
        if let Some(rate) = settings.rate_limit_per_sec
            && let Err(retry_after_secs) = self.limiter.try_acquire(rate, now)
        {
            return Some(Fault::Throttled {
                style: settings.throttle_style,
                retry_after_secs,
            });
        }
        if happens(settings.reset_rate) {
            Some(Fault::Reset)
        } else if happens(settings.hang_rate) {
            Some(Fault::Hang)
        } else if happens(settings.error_rate) {
            Some(Fault::ServerError(self.next_server_error()))
        } else if happens(settings.garbage_rate) {
            Some(Fault::Garbage)
        } else {
            None
        }
    }

    /// Starts the rate limit over with a full bucket.
    pub(crate) fn reset_rate_limit(&self) {
        self.limiter.reset();
    }

    fn next_server_error(&self) -> StatusCode {
        if self.next_is_503.fetch_xor(true, Ordering::Relaxed) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// A draw that comes true for `share` of the requests: never at 0, always
/// at 1.
fn happens(share: f64) -> bool {
    // `random` is in [0, 1), so a share of 1 always comes true.
    share > 0.0 && rand::random::<f64>() < share
}

impl Fault {
    /// Delivers the fault. A hang waits here until `stopping` says the
    /// server is stopping.
    pub(crate) async fn deliver(self, stopping: Option<&ServerStopping>) -> Response {
        match self {
            Self::Throttled {
                style: ThrottleStyle::Http429,
                retry_after_secs,
            } => {
                let mut response = OAuthError::too_many_requests().into_response();
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
                response
            }
            Self::Throttled {
                style: ThrottleStyle::Cognito400,
                ..
            } => OAuthError::cognito_throttle().into_response(),
            Self::Reset => drop_connection(),
            Self::Hang => hang(stopping).await,
            Self::ServerError(status) => OAuthError {
                status,
                ..OAuthError::server_error()
            }
            .into_response(),
            Self::Garbage => (
                StatusCode::OK,
                [(CONTENT_TYPE, HeaderValue::from_static("text/html"))],
                GARBAGE_BODY,
            )
                .into_response(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Arc;
    use std::time::Duration;

    use tower::ServiceExt as _;

    use super::*;
    use crate::test_client::{ManualClock, demo_token, token_request};
    use crate::{ControlUpdate, MockIdp, MockIdpConfig};

    fn idp() -> MockIdp {
        MockIdp::new(MockIdpConfig::default())
    }

    fn settings(update: &ControlUpdate) -> Settings {
        let mut settings = Settings::healthy(Duration::ZERO, Duration::from_secs(3600));
        settings.apply(update);
        settings
    }

    fn draws(injector: &FaultInjector, settings: &Settings, count: usize) -> Vec<Option<Fault>> {
        (0..count)
            .map(|_| injector.draw(settings, UnixMillis(0)))
            .collect()
    }

    #[test]
    fn healthy_draws_nothing() {
        let injector = FaultInjector::default();
        let healthy = settings(&ControlUpdate::healthy());
        assert!(draws(&injector, &healthy, 1000).iter().all(Option::is_none));
    }

    #[test]
    fn a_share_of_one_always_comes_true_and_the_order_holds() {
        let injector = FaultInjector::default();
        let all = ControlUpdate {
            error_rate: Some(1.0),
            reset_rate: Some(1.0),
            garbage_rate: Some(1.0),
            hang_rate: Some(1.0),
            ..ControlUpdate::default()
        };
        let mut settings = settings(&all);
        let next = |settings: &Settings| injector.draw(settings, UnixMillis(0));
        assert_eq!(next(&settings), Some(Fault::Reset));
        settings.reset_rate = 0.0;
        assert_eq!(next(&settings), Some(Fault::Hang));
        settings.hang_rate = 0.0;
        assert_eq!(
            next(&settings),
            Some(Fault::ServerError(StatusCode::INTERNAL_SERVER_ERROR))
        );
        assert_eq!(
            next(&settings),
            Some(Fault::ServerError(StatusCode::SERVICE_UNAVAILABLE))
        );
        settings.error_rate = 0.0;
        assert_eq!(next(&settings), Some(Fault::Garbage));
        // The rate limit comes first of all.
        settings.reset_rate = 1.0;
        settings.rate_limit_per_sec = NonZeroU32::new(1);
        settings.throttle_style = ThrottleStyle::Cognito400;
        assert_eq!(next(&settings), Some(Fault::Reset));
        assert_eq!(
            next(&settings),
            Some(Fault::Throttled {
                style: ThrottleStyle::Cognito400,
                retry_after_secs: 1
            })
        );
    }

    #[test]
    fn a_share_is_roughly_that_share() {
        let injector = FaultInjector::default();
        let half = settings(&ControlUpdate {
            garbage_rate: Some(0.5),
            ..ControlUpdate::default()
        });
        let garbage = draws(&injector, &half, 10_000)
            .iter()
            .filter(|fault| **fault == Some(Fault::Garbage))
            .count();
        // Ten standard deviations either side: never fails by chance.
        assert!((4_500..=5_500).contains(&garbage), "{garbage}");
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn deliveries() {
        let response = Fault::Throttled {
            style: ThrottleStyle::Http429,
            retry_after_secs: 2,
        }
        .deliver(None)
        .await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        assert_eq!(
            body(response).await,
            r#"{"error":"too_many_requests","error_description":"Rate exceeded"}"#
        );

        let response = Fault::Throttled {
            style: ThrottleStyle::Cognito400,
            retry_after_secs: 1,
        }
        .deliver(None)
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get(RETRY_AFTER).is_none());
        assert_eq!(
            body(response).await,
            r#"{"error":"TooManyRequestsException","error_description":"Rate exceeded"}"#
        );

        let response = Fault::ServerError(StatusCode::SERVICE_UNAVAILABLE)
            .deliver(None)
            .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(response).await, r#"{"error":"server_error"}"#);

        let response = Fault::Garbage.deliver(None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html");
        assert_eq!(body(response).await, GARBAGE_BODY);
    }

    #[tokio::test(start_paused = true)]
    async fn faults_are_counted_on_arrival_and_delivered_after_the_latency() {
        let idp = idp();
        idp.apply(&ControlUpdate {
            latency_ms: Some(700),
            error_rate: Some(1.0),
            ..ControlUpdate::default()
        });
        let started = tokio::time::Instant::now();
        let pending = tokio::spawn({
            let idp = idp.clone();
            async move { demo_token(&idp, "grant_type=client_credentials").await }
        });
        while idp.stats().server_errors < 1 {
            tokio::task::yield_now().await;
        }
        assert!(idp.stats().by_status.is_empty());
        let answer = pending.await.unwrap();
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.error(), "server_error");
        assert_eq!(
            answer.headers[CONTENT_TYPE],
            "application/json;charset=UTF-8"
        );
        assert!(started.elapsed() >= Duration::from_millis(700));
        let stats = idp.stats();
        assert_eq!(stats.by_status[&500], 1);
        assert_eq!(stats.tokens_issued, 0);
    }

    #[tokio::test]
    async fn throttled_requests_are_counted_but_not_processed() {
        let clock = Arc::new(ManualClock::new(UnixMillis(1_700_000_000_000)));
        let idp = MockIdp::with_clock(MockIdpConfig::default(), clock.clone());
        idp.apply(&ControlUpdate {
            rate_limit_per_sec: Some(2),
            ..ControlUpdate::default()
        });
        let statuses = [
            demo_token(&idp, "grant_type=client_credentials")
                .await
                .status,
            demo_token(&idp, "grant_type=password").await.status,
            demo_token(&idp, "grant_type=client_credentials")
                .await
                .status,
        ];
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::BAD_REQUEST,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        // Half a second later one token is back.
        clock.advance_millis(500);
        let answer = demo_token(&idp, "grant_type=client_credentials").await;
        assert_eq!(answer.status, StatusCode::OK);
        let stats = idp.stats();
        assert_eq!((stats.token_requests, stats.throttled), (4, 1));
        assert_eq!(stats.by_client["demo-client"], 4);
        assert_eq!(stats.by_status[&429], 1);
        // Setting the limit again starts over with a full bucket.
        idp.apply(&ControlUpdate {
            rate_limit_per_sec: Some(2),
            ..ControlUpdate::default()
        });
        for _ in 0..2 {
            let answer = demo_token(&idp, "grant_type=client_credentials").await;
            assert_eq!(answer.status, StatusCode::OK);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_server_a_hang_lasts_an_hour_then_fails_to_read() {
        let idp = idp();
        idp.apply(&ControlUpdate {
            hang_rate: Some(1.0),
            ..ControlUpdate::default()
        });
        let started = tokio::time::Instant::now();
        let response = idp
            .router()
            .oneshot(token_request(
                Some(("demo-client", "demo-secret")),
                None,
                "grant_type=client_credentials",
            ))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(3600));
        assert!(
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .is_err()
        );
        let stats = idp.stats();
        assert_eq!(stats.hangs, 1);
        assert!(stats.by_status.is_empty());
    }
}
