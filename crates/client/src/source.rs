//! The token source: an in-memory cache of one token, refreshed ahead of
//! its expiry, with one fetch at a time however many tasks ask.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokencache_core::{Freshness, Schedule, UnixMillis};
use tokio::sync::watch;

use crate::fetch::{Failed, Fetcher};
use crate::token::Fetched;
use crate::{AccessToken, AuthMethod, ClientCredentialsBuilder, Error};

/// A source of OAuth 2.0 access tokens from the `client_credentials` grant,
/// with an in-memory cache.
///
/// Clones share one cache and one in-flight fetch, so a source is built
/// once and cloned into every task that needs tokens.
///
/// [`token`](ClientCredentials::token) follows the same freshness model as
/// the tokencache proxy:
///
/// - **fresh** (by default before 75 % of the token's life, less a random
///   shift of up to 5 % of it): the cached token is returned at once;
/// - **aging** (until 10 % of the life is left): the cached token is
///   returned at once, and one background refresh starts;
/// - **expired**, or no token yet: callers wait for one shared fetch.
///
/// A caller holding a valid token never waits behind a refresh, and no lock
/// is held across an HTTP request. The fetch runs in its own task, so a
/// caller that gives up (its future dropped) does not cancel it for the
/// others.
///
/// When a background refresh fails, the aging token keeps being returned
/// until it expires (stale-if-error), and the next refresh waits for a
/// backoff delay. Within one fetch, throttling, 5xx answers and transport
/// errors are retried with exponential backoff and full jitter, honouring
/// `Retry-After`.
///
/// Needs a Tokio runtime: fetches run in spawned tasks (outside one,
/// [`token`](ClientCredentials::token) returns [`Error::Config`]).
#[derive(Clone)]
pub struct ClientCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    fetcher: Fetcher,
    client_id: String,
    auth_method: AuthMethod,
    refresh_jitter: f64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<Entry>,
    in_flight: Option<InFlight>,
    next_flight: u64,
    /// Fetches failed in a row.
    failures: u32,
    /// No background refresh starts before this instant.
    refresh_not_before: Option<UnixMillis>,
}

struct Entry {
    token: AccessToken,
    schedule: Schedule,
}

/// What a fetch's waiters receive: nothing yet, then its outcome.
type Outcome = Option<Result<AccessToken, Error>>;

struct InFlight {
    id: u64,
    outcome: watch::Receiver<Outcome>,
}

/// Settings the builder has checked.
pub(crate) struct SourceParts {
    pub(crate) fetcher: Fetcher,
    pub(crate) client_id: String,
    pub(crate) auth_method: AuthMethod,
    pub(crate) refresh_jitter: f64,
}

impl ClientCredentials {
    /// A builder; `token_url`, `client_id` and `client_secret` are required.
    #[must_use]
    pub fn builder() -> ClientCredentialsBuilder {
        ClientCredentialsBuilder::default()
    }

    pub(crate) fn from_parts(parts: SourceParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                fetcher: parts.fetcher,
                client_id: parts.client_id,
                auth_method: parts.auth_method,
                refresh_jitter: parts.refresh_jitter,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// A valid access token: the cached one while it may be served, or a
    /// new one.
    ///
    /// # Errors
    ///
    /// When no valid token is cached and the fetch failed: an
    /// [`Error::OAuth`] when the endpoint refused, [`Error::Throttled`]
    /// when it kept throttling through the retries, a transport error or a
    /// timeout.
    pub async fn token(&self) -> Result<AccessToken, Error> {
        let mut outcome = {
            let now = self.inner.fetcher.clock.now();
            let mut state = self.inner.lock();
            let cached = state
                .current
                .as_ref()
                .map(|entry| (entry.schedule.freshness(now), entry.token.clone()));
            match cached {
                Some((Freshness::Fresh, token)) => return Ok(token),
                Some((Freshness::Aging, token)) => {
                    if state.in_flight.is_none()
                        && state.refresh_not_before.is_none_or(|at| now >= at)
                    {
                        // Without a runtime there is no refresh, but the
                        // token is still good; the error surfaces once the
                        // caller has to wait.
                        let _ = self.inner.start_fetch(&mut state);
                    }
                    return Ok(token);
                }
                Some((Freshness::Expired, _)) | None => match &state.in_flight {
                    Some(flight) => flight.outcome.clone(),
                    None => self.inner.start_fetch(&mut state)?,
                },
            }
        };
        let settled = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Interrupted)?;
        settled.clone().unwrap_or(Err(Error::Interrupted))
    }

    /// Drops the cached token, so the next [`token`](Self::token) call
    /// fetches a new one. For when the API refused the token (a 401), as
    /// after a revocation or a key rotation.
    pub fn invalidate(&self) {
        let mut state = self.inner.lock();
        state.current = None;
        state.refresh_not_before = None;
    }

    /// Drops the cached token only if it is `token`. Many requests refused
    /// with the same stale token then cause one new fetch, not one each,
    /// and a token fetched since is kept.
    pub fn invalidate_token(&self, token: &AccessToken) {
        let mut state = self.inner.lock();
        if state
            .current
            .as_ref()
            .is_some_and(|entry| entry.token.same_as(token))
        {
            state.current = None;
            state.refresh_not_before = None;
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain values, consistent between statements, so it
        // is usable even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a fetch in its own task and records it as the one in flight.
    fn start_fetch(self: &Arc<Self>, state: &mut State) -> Result<watch::Receiver<Outcome>, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("tokens can only be fetched within a Tokio runtime".to_owned())
        })?;
        let (sender, outcome) = watch::channel(None);
        let id = state.next_flight;
        state.next_flight = id.wrapping_add(1);
        state.in_flight = Some(InFlight {
            id,
            outcome: outcome.clone(),
        });
        let flight = Flight {
            inner: Arc::clone(self),
            id,
            sender: Some(sender),
        };
        runtime.spawn(flight.run());
        Ok(outcome)
    }

    /// Records a fetch's outcome and clears the in-flight slot.
    fn settle(&self, id: u64, outcome: &Result<Fetched, Failed>) {
        let now = self.fetcher.clock.now();
        let mut state = self.lock();
        if state
            .in_flight
            .as_ref()
            .is_some_and(|flight| flight.id == id)
        {
            state.in_flight = None;
        }
        match outcome {
            Ok(fetched) => {
                let schedule = jittered(
                    fetched.schedule,
                    fetched.token.fetched_at(),
                    fetched.token.expires_at(),
                    self.refresh_jitter * rand::random::<f64>(),
                );
                state.current = Some(Entry {
                    token: fetched.token.clone(),
                    schedule,
                });
                state.failures = 0;
                state.refresh_not_before = None;
            }
            Err(failed) => {
                let delay = self.fetcher.backoff.delay_honouring(
                    state.failures,
                    rand::random(),
                    failed.retry_after,
                );
                state.failures = state.failures.saturating_add(1);
                state.refresh_not_before = Some(now.plus(delay));
                let serving_stale = state
                    .current
                    .as_ref()
                    .is_some_and(|entry| entry.schedule.freshness(now) == Freshness::Aging);
                tracing::warn!(
                    token_url = %self.fetcher.request.uri(),
                    client_id = %self.client_id,
                    error = %failed.error,
                    failures = state.failures,
                    serving_stale,
                    "token fetch failed"
                );
            }
        }
    }
}

/// A fetch in its task. Dropped without settling (cancelled, or a panic),
/// it clears the in-flight slot, and its waiters see [`Error::Interrupted`]
/// as the channel closes.
struct Flight {
    inner: Arc<Inner>,
    id: u64,
    sender: Option<watch::Sender<Outcome>>,
}

impl Flight {
    async fn run(mut self) {
        let outcome = self.inner.fetcher.fetch().await;
        self.inner.settle(self.id, &outcome);
        if let Some(sender) = self.sender.take() {
            let result = outcome
                .map(|fetched| fetched.token)
                .map_err(|failed| failed.error);
            // No waiters is fine: the token is cached for the next caller.
            let _ = sender.send(Some(result));
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if self.sender.is_some() {
            let mut state = self.inner.lock();
            if state
                .in_flight
                .as_ref()
                .is_some_and(|flight| flight.id == self.id)
            {
                state.in_flight = None;
            }
        }
    }
}

/// `schedule` with its refresh point moved earlier by `shift` (a share of
/// the lifetime), so that sources started together (a fleet's pods after a
/// deploy) do not refresh in lockstep.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // lifetimes fit f64's mantissa; `shift` is in [0, 1)
fn jittered(
    schedule: Schedule,
    fetched_at: UnixMillis,
    expires_at: UnixMillis,
    shift: f64,
) -> Schedule {
    let lifetime = expires_at.millis_since(fetched_at);
    let shift = if shift.is_finite() {
        (lifetime as f64 * shift.clamp(0.0, 1.0)) as u64
    } else {
        0
    };
    Schedule {
        refresh_at: UnixMillis(schedule.refresh_at.0.saturating_sub(shift)).max(fetched_at),
        serve_until: schedule.serve_until,
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("ClientCredentials")
            .field("token_url", self.inner.fetcher.request.uri())
            .field("client_id", &self.inner.client_id)
            .field("scopes", &self.inner.fetcher.scopes)
            .field("auth_method", &self.inner.auth_method)
            .field("cached", &state.current.as_ref().map(|entry| &entry.token))
            .field("fetching", &state.in_flight.is_some())
            .field("failures", &state.failures)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    #[test]
    fn outside_a_runtime_token_is_an_error_not_a_panic() {
        let source = ClientCredentials::builder()
            .token_url("http://127.0.0.1:9/oauth2/token")
            .client_id("id")
            .client_secret("secret")
            .transport(NoTransport)
            .build()
            .unwrap();
        let polled = std::pin::pin!(source.token());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let outcome = std::future::Future::poll(polled, &mut context);
        assert!(matches!(
            outcome,
            std::task::Poll::Ready(Err(Error::Config(message))) if message.contains("Tokio")
        ));
    }

    struct NoTransport;

    impl crate::Transport for NoTransport {
        fn send(
            &self,
            _request: http::Request<Vec<u8>>,
        ) -> crate::BoxFuture<'_, Result<http::Response<Vec<u8>>, crate::TransportError>> {
            Box::pin(std::future::pending())
        }
    }

    #[test]
    fn jitter_moves_only_the_refresh_point_earlier() {
        let schedule = Schedule {
            refresh_at: T0.plus_millis(75_000),
            serve_until: T0.plus_millis(90_000),
        };
        let end = T0.plus_millis(100_000);
        assert_eq!(jittered(schedule, T0, end, 0.0), schedule);
        let shifted = jittered(schedule, T0, end, 0.05);
        assert_eq!(shifted.refresh_at, T0.plus_millis(70_000));
        assert_eq!(shifted.serve_until, schedule.serve_until);
        assert_eq!(jittered(schedule, T0, end, 1.0).refresh_at, T0);
        assert_eq!(jittered(schedule, T0, end, f64::NAN), schedule);
    }
}
