//! One token fetch: attempts with exponential backoff and full jitter,
//! `Retry-After` honoured, bounded by the attempt limit and a deadline (the
//! loop is the workspace's one retry driver, `tokencache-retry`).

use std::sync::Arc;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokencache_core::{
    AnswerClass, Backoff, Clock, FreshnessPolicy, UnixMillis, parse_retry_after,
};
use tokencache_retry::{Retry, Verdict};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::options::Variant;
use crate::request::{Endpoint, TokenRequest};
use crate::token::{self, Fetched};
use crate::transport::Transport;

/// Everything a fetch needs; shared by all clones of a source.
pub(crate) struct Fetcher {
    pub(crate) endpoint: Endpoint,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) policy: FreshnessPolicy,
    pub(crate) backoff: Backoff,
    pub(crate) timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    /// Core's view of the source's clock.
    pub(crate) clock: Arc<dyn Clock>,
}

/// A fetch that failed, and how long the endpoint asked to be left alone.
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    pub(crate) error: Error,
    pub(crate) retry_after: Option<Duration>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

impl Fetcher {
    /// Fetches the token `variant` names, retrying what is worth retrying.
    pub(crate) async fn fetch(&self, variant: &Variant) -> Result<Fetched, Failed> {
        let (request, scopes) = self.endpoint.request(variant)?;
        let deadline = Instant::now() + self.timeout;
        Retry::new(self.backoff)
            .deadline(deadline)
            .run(
                |_| self.attempt(&request, scopes, deadline),
                |outcome| match outcome {
                    Ok(_) => Verdict::Stop,
                    Err(failed) if !failed.error.is_retryable() => Verdict::Stop,
                    Err(failed) => failed
                        .retry_after
                        .map_or(Verdict::Retry, Verdict::RetryAfter),
                },
                |outcome, retrying| {
                    if let Err(failed) = outcome {
                        tracing::debug!(
                            token_url = %self.endpoint.uri,
                            attempts = retrying.attempts,
                            error = %failed.error,
                            delay = ?retrying.delay,
                            "token request failed; retrying"
                        );
                    }
                },
            )
            .await
    }

    /// One exchange, within the attempt timeout and the fetch's deadline.
    async fn attempt(
        &self,
        request: &TokenRequest,
        scopes: &[String],
        deadline: Instant,
    ) -> Result<Fetched, Failed> {
        let request = request.to_http()?;
        let sent_at = self.clock.now();
        let limit = deadline.min(Instant::now() + self.attempt_timeout);
        let response = match tokio::time::timeout_at(limit, self.transport.send(request)).await {
            Err(_elapsed) => return Err(Error::Timeout { source: None }.into()),
            Ok(Err(error)) => return Err(Error::from_transport(error).into()),
            Ok(Ok(response)) => response,
        };
        let (parts, body) = response.into_parts();
        let body = Zeroizing::new(body);
        self.read_answer(parts.status, &parts.headers, &body, sent_at, scopes)
    }

    /// What the token endpoint's answer means.
    fn read_answer(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        sent_at: UnixMillis,
        scopes: &[String],
    ) -> Result<Fetched, Failed> {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|value| parse_retry_after(value.as_bytes(), self.clock.now()));
        let status = status.as_u16();
        let error = match AnswerClass::of(status, body) {
            AnswerClass::Success => {
                return token::parse(body, sent_at, &self.policy, scopes).map_err(Failed::from);
            }
            AnswerClass::Throttled => Error::Throttled {
                status,
                retry_after,
            },
            _ => oauth_error(status, body).unwrap_or(Error::Status { status }),
        };
        Err(Failed { error, retry_after })
    }
}

/// An RFC 6749 §5.2 error answer: `{"error": "...", "error_description": "..."}`.
fn oauth_error(status: u16, body: &[u8]) -> Option<Error> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let Some(Value::String(error)) = fields.get("error") else {
        return None;
    };
    let error_description = match fields.get("error_description") {
        Some(Value::String(description)) => Some(description.clone()),
        _ => None,
    };
    Some(Error::OAuth {
        status,
        error: error.clone(),
        error_description,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use http::Uri;
    use tokencache_core::{ClientSecret, SystemClock};

    use super::*;
    use crate::error::TransportError;
    use crate::request::AuthMethod;
    use crate::transport::BoxFuture;

    /// A scripted answer: status, headers and body, or a reset connection.
    type Answer = Result<(u16, Vec<(&'static str, &'static str)>, String), ()>;

    /// Answers from a script, counting requests; hangs once it runs out.
    struct Scripted {
        answers: Mutex<VecDeque<Answer>>,
        sent: AtomicU32,
    }

    impl Transport for Scripted {
        fn send(
            &self,
            _request: http::Request<Vec<u8>>,
        ) -> BoxFuture<'_, Result<http::Response<Vec<u8>>, TransportError>> {
            self.sent.fetch_add(1, Ordering::SeqCst);
            let next = self.answers.lock().unwrap().pop_front();
            Box::pin(async move {
                let (status, headers, body) = match next {
                    Some(Ok(answer)) => answer,
                    Some(Err(())) => {
                        return Err(TransportError::new(std::io::Error::other("reset")));
                    }
                    None => {
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                };
                let mut response = http::Response::new(body.into_bytes());
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                Ok(response)
            })
        }
    }

    fn fetcher(answers: Vec<Answer>) -> (Fetcher, Arc<Scripted>) {
        let transport = Arc::new(Scripted {
            answers: Mutex::new(answers.into()),
            sent: AtomicU32::new(0),
        });
        let endpoint = Endpoint {
            uri: Uri::from_static("http://idp.test/oauth2/token"),
            client_id: "id".to_owned(),
            client_secret: ClientSecret::new("secret".to_owned()),
            auth_method: AuthMethod::Basic,
            scopes: Vec::new(),
            params: Vec::new(),
        };
        let fetcher = Fetcher {
            endpoint,
            transport: transport.clone(),
            policy: FreshnessPolicy::default(),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 4),
            timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
        };
        (fetcher, transport)
    }

    fn ok() -> Answer {
        Ok((
            200,
            vec![],
            r#"{"access_token":"t","expires_in":3600}"#.to_owned(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn retries_throttling_and_server_errors_then_succeeds() {
        let (fetcher, transport) = fetcher(vec![
            Ok((429, vec![("retry-after", "3")], String::new())),
            Ok((503, vec![], "busy".to_owned())),
            Err(()),
            ok(),
        ]);
        let started = Instant::now();
        let fetched = fetcher.fetch(&Variant::default()).await.unwrap();
        assert_eq!(fetched.token.secret(), "t");
        assert_eq!(transport.sent.load(Ordering::SeqCst), 4);
        // Retry-After is a floor on the first delay.
        assert!(started.elapsed() >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_not_retried() {
        let (fetcher, transport) = fetcher(vec![Ok((
            400,
            vec![],
            r#"{"error":"invalid_scope","error_description":"bad"}"#.to_owned(),
        ))]);
        let failed = fetcher.fetch(&Variant::default()).await.unwrap_err();
        assert!(matches!(
            failed.error,
            Error::OAuth { status: 400, ref error, error_description: Some(ref d) }
                if error == "invalid_scope" && d == "bad"
        ));
        assert_eq!(transport.sent.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let (fetcher, transport) = fetcher(vec![
            Ok((500, vec![], String::new())),
            Ok((500, vec![], String::new())),
            Ok((500, vec![], String::new())),
            Ok((500, vec![], String::new())),
            ok(),
        ]);
        let failed = fetcher.fetch(&Variant::default()).await.unwrap_err();
        assert!(matches!(failed.error, Error::Status { status: 500 }));
        assert_eq!(transport.sent.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_past_the_deadline_ends_the_fetch() {
        let (fetcher, transport) = fetcher(vec![
            Ok((429, vec![("retry-after", "60")], String::new())),
            ok(),
        ]);
        let failed = fetcher.fetch(&Variant::default()).await.unwrap_err();
        assert!(matches!(
            failed.error,
            Error::Throttled { status: 429, retry_after: Some(after) } if after == Duration::from_secs(60)
        ));
        assert_eq!(transport.sent.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_endpoint_times_out_per_attempt() {
        // No scripted answers: every attempt hangs.
        let (fetcher, transport) = fetcher(vec![]);
        let failed = fetcher.fetch(&Variant::default()).await.unwrap_err();
        assert!(matches!(failed.error, Error::Timeout { source: None }));
        assert_eq!(transport.sent.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn cognito_throttling_and_garbage() {
        let (fetcher, _) = fetcher(vec![
            Ok((
                400,
                vec![],
                r#"{"__type":"TooManyRequestsException","message":"Rate exceeded"}"#.to_owned(),
            )),
            Ok((200, vec![], "<html>".to_owned())),
        ]);
        let failed = fetcher.fetch(&Variant::default()).await.unwrap_err();
        assert!(matches!(failed.error, Error::InvalidResponse { .. }));
    }
}
