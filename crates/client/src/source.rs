//! The token source: an in-memory cache of tokens (the source's usual one,
//! and one per set of scopes or resource a call asks for), each refreshed
//! ahead of its expiry, with one fetch at a time per token however many
//! tasks ask.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokencache_core::{Freshness, Schedule, UnixMillis};
use tokencache_single_flight::{self as single_flight, Joined, Outcome, SingleFlight};

use crate::error::Error;
use crate::fetch::{Failed, Fetcher};
use crate::options::{TokenOptions, Variant};
use crate::token::{AccessToken, Fetched};
use crate::token_source::TokenSource;
use crate::transport::BoxFuture;

/// A source of OAuth 2.0 access tokens from the `client_credentials` grant,
/// with an in-memory cache.
///
/// Clones share one cache and one in-flight fetch per token, so a source is
/// built once and cloned into every task that needs tokens.
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
/// backoff delay (never shorter than the endpoint's `Retry-After`). Within
/// one fetch, throttling, 5xx answers and transport errors are retried with
/// exponential backoff and full jitter, honouring `Retry-After`.
///
/// [`token_with`](ClientCredentials::token_with) takes per-call
/// [`TokenOptions`]: force a renewal, or ask for other scopes or another
/// resource, each cached apart.
///
/// Needs a Tokio runtime: fetches run in spawned tasks (outside one,
/// [`token`](ClientCredentials::token) returns [`Error::Config`] when it
/// has to fetch).
#[derive(Clone)]
pub struct ClientCredentials {
    inner: Arc<Inner>,
}

/// What a fetch's waiters receive.
type Fetch = Result<AccessToken, Failed>;

struct Inner {
    fetcher: Fetcher,
    refresh_jitter: f64,
    cache: Mutex<HashMap<Variant, Entry>>,
    flights: SingleFlight<Variant, Fetch>,
}

struct Entry {
    token: AccessToken,
    schedule: Schedule,
}

/// Settings the builder has checked.
pub(crate) struct SourceParts {
    pub(crate) fetcher: Fetcher,
    pub(crate) refresh_jitter: f64,
}

impl ClientCredentials {
    pub(crate) fn from_parts(parts: SourceParts) -> Self {
        // Failed refreshes back off as failed attempts within a fetch do.
        let flights = SingleFlight::builder()
            .refresh_backoff(parts.fetcher.backoff)
            .clock(Arc::clone(&parts.fetcher.clock))
            .classify(|fetch: &Fetch| match fetch {
                Ok(_) => Outcome::Success,
                Err(failed) => Outcome::Failure {
                    retry_after: failed.retry_after,
                },
            })
            .build();
        Self {
            inner: Arc::new(Inner {
                fetcher: parts.fetcher,
                refresh_jitter: parts.refresh_jitter,
                cache: Mutex::new(HashMap::new()),
                flights,
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
        self.token_with(TokenOptions::default()).await
    }

    /// A valid access token as `options` ask: renewed now, or for other
    /// scopes or another resource than the source's (cached apart, and
    /// refreshed ahead like the usual one).
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn token_with(&self, options: TokenOptions) -> Result<AccessToken, Error> {
        let variant = Variant::of(&options);
        let force = options.force_refresh;
        if !force {
            match self.inner.cached(&variant) {
                Some((Freshness::Fresh, token)) => return Ok(token),
                Some((Freshness::Aging, token)) => {
                    // Without a runtime there is no refresh, but the token
                    // is still good; the error surfaces once a caller has
                    // to wait.
                    let load = self.inner.load(variant.clone());
                    let _ = self.inner.flights.refresh(variant, load);
                    return Ok(token);
                }
                Some((Freshness::Expired, _)) | None => {}
            }
        }
        let joined = self
            .inner
            .flights
            .join_unless(
                variant.clone(),
                // Re-read under the table's lock: a fetch caches its token
                // before it leaves the table, so a caller that finds
                // neither must fetch.
                || {
                    if force {
                        None
                    } else {
                        self.inner.servable(&variant)
                    }
                },
                self.inner.load(variant.clone()),
            )
            .map_err(flight_error)?;
        let flight = match joined {
            Joined::Found(token) => return Ok(token),
            Joined::Flight(flight) => flight,
        };
        match flight.await {
            Ok(fetch) => fetch.map_err(|failed| failed.error),
            Err(error) => Err(flight_error(error)),
        }
    }

    /// Drops every cached token, so the next [`token`](Self::token) call
    /// fetches a new one. For when the API refused the token (a 401), as
    /// after a revocation or a key rotation.
    pub fn invalidate(&self) {
        self.inner.lock().clear();
    }

    /// Drops the cached token only if it is `token`. Many requests refused
    /// with the same stale token then cause one new fetch, not one each,
    /// and a token fetched since is kept.
    pub fn invalidate_token(&self, token: &AccessToken) {
        self.inner
            .lock()
            .retain(|_, entry| !entry.token.same_as(token));
    }
}

impl TokenSource for ClientCredentials {
    fn token_with(&self, options: TokenOptions) -> BoxFuture<'_, Result<AccessToken, Error>> {
        Box::pin(Self::token_with(self, options))
    }

    fn invalidate_token(&self, token: &AccessToken) {
        Self::invalidate_token(self, token);
    }
}

/// What a failed flight means to a caller.
fn flight_error(error: single_flight::Error) -> Error {
    match error {
        single_flight::Error::NoRuntime => {
            Error::Config("tokens can only be fetched within a Tokio runtime".to_owned())
        }
        _ => Error::Interrupted,
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Variant, Entry>> {
        // The cache is plain values, consistent between statements, so it
        // is usable even if a holder panicked.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> UnixMillis {
        self.fetcher.clock.now()
    }

    /// The cached token of `variant` and its stage now.
    fn cached(&self, variant: &Variant) -> Option<(Freshness, AccessToken)> {
        let now = self.now();
        self.lock()
            .get(variant)
            .map(|entry| (entry.schedule.freshness(now), entry.token.clone()))
    }

    /// The cached token of `variant` if it may still be served.
    fn servable(&self, variant: &Variant) -> Option<AccessToken> {
        self.cached(variant)
            .filter(|(freshness, _)| *freshness != Freshness::Expired)
            .map(|(_, token)| token)
    }

    /// The fetch of `variant`, to run in its flight's task.
    fn load(
        self: &Arc<Self>,
        variant: Variant,
    ) -> impl FnOnce() -> BoxFuture<'static, Fetch> + use<> {
        let inner = Arc::clone(self);
        move || Box::pin(inner.fetch_and_cache(variant))
    }

    async fn fetch_and_cache(self: Arc<Self>, variant: Variant) -> Fetch {
        let outcome = self.fetcher.fetch(&variant).await;
        self.settle(variant, outcome)
    }

    /// Caches a fetched token (before its flight leaves the table), or
    /// logs the failure.
    fn settle(&self, variant: Variant, outcome: Result<Fetched, Failed>) -> Fetch {
        let now = self.now();
        match outcome {
            Ok(fetched) => {
                let schedule = jittered(
                    fetched.schedule,
                    fetched.token.fetched_at_millis(),
                    fetched.token.expires_at_millis(),
                    self.refresh_jitter * rand::random::<f64>(),
                );
                let mut cache = self.lock();
                // The tokens of variants no longer asked for go once they
                // expire, so the cache holds live tokens only.
                cache.retain(|_, entry| entry.schedule.freshness(now) != Freshness::Expired);
                cache.insert(
                    variant,
                    Entry {
                        token: fetched.token.clone(),
                        schedule,
                    },
                );
                Ok(fetched.token)
            }
            Err(failed) => {
                let serving_stale = self
                    .lock()
                    .get(&variant)
                    .is_some_and(|entry| entry.schedule.freshness(now) == Freshness::Aging);
                tracing::warn!(
                    token_url = %self.fetcher.endpoint.uri,
                    client_id = %self.fetcher.endpoint.client_id,
                    variant = ?variant,
                    error = %failed.error,
                    serving_stale,
                    "token fetch failed"
                );
                Err(failed)
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
        let endpoint = &self.inner.fetcher.endpoint;
        let usual = Variant::default();
        // The flights' table before the cache, never both at once: callers
        // take the table's lock and then the cache's.
        let fetching = self.inner.flights.in_flight();
        let refresh_failures = self
            .inner
            .flights
            .cooldown(&usual)
            .map_or(0, |cooldown| cooldown.failures);
        let cache = self.inner.lock();
        f.debug_struct("ClientCredentials")
            .field("token_url", &endpoint.uri)
            .field("client_id", &endpoint.client_id)
            .field("scopes", &endpoint.scopes)
            .field("auth_method", &endpoint.auth_method)
            .field("cached", &cache.get(&usual).map(|entry| &entry.token))
            .field("cached_tokens", &cache.len())
            .field("fetching", &fetching)
            .field("refresh_failures", &refresh_failures)
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

    impl crate::transport::Transport for NoTransport {
        fn send(
            &self,
            _request: http::Request<Vec<u8>>,
        ) -> crate::transport::BoxFuture<
            '_,
            Result<http::Response<Vec<u8>>, crate::error::TransportError>,
        > {
            Box::pin(std::future::pending())
        }
    }

    /// A token endpoint from a script: the statuses to answer (a 503 with
    /// the given `Retry-After`), then 200s with tokens `t1`, `t2`, … that
    /// live 100 s. It records the bodies it was sent.
    #[derive(Clone, Default)]
    struct ScriptedIdp {
        failures: Arc<Mutex<Vec<Option<&'static str>>>>,
        bodies: Arc<Mutex<Vec<String>>>,
    }

    impl ScriptedIdp {
        fn fail_next(&self, retry_after: Option<&'static str>) {
            self.failures.lock().unwrap().push(retry_after);
        }

        fn bodies(&self) -> Vec<String> {
            self.bodies.lock().unwrap().clone()
        }
    }

    impl crate::transport::Transport for ScriptedIdp {
        fn send(
            &self,
            request: http::Request<Vec<u8>>,
        ) -> crate::transport::BoxFuture<
            '_,
            Result<http::Response<Vec<u8>>, crate::error::TransportError>,
        > {
            let mut bodies = self.bodies.lock().unwrap();
            bodies.push(String::from_utf8(request.into_body()).unwrap());
            let failure = self.failures.lock().unwrap().pop();
            let response = match failure {
                Some(retry_after) => {
                    let mut builder = http::Response::builder().status(503);
                    if let Some(seconds) = retry_after {
                        builder = builder.header("retry-after", seconds);
                    }
                    builder.body(br#"{"error":"server_error"}"#.to_vec())
                }
                None => http::Response::builder().body(
                    format!(r#"{{"access_token":"t{}","expires_in":100}}"#, bodies.len())
                        .into_bytes(),
                ),
            };
            Box::pin(std::future::ready(Ok(response.unwrap())))
        }
    }

    /// A clock that moves only when told.
    #[derive(Debug, Clone)]
    struct ManualClock(Arc<std::sync::atomic::AtomicU64>);

    impl ManualClock {
        fn advance(&self, seconds: u64) {
            let millis = seconds * 1000;
            self.0
                .fetch_add(millis, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl crate::clock::Clock for ManualClock {
        fn now(&self) -> std::time::SystemTime {
            let millis = self.0.load(std::sync::atomic::Ordering::SeqCst);
            crate::clock::system_time(UnixMillis(millis))
        }
    }

    /// A source on `idp` and a manual clock: one attempt per fetch, no
    /// refresh jitter.
    fn scripted_source(idp: &ScriptedIdp) -> (ClientCredentials, ManualClock) {
        let clock = ManualClock(Arc::new(T0.0.into()));
        let source = ClientCredentials::builder()
            .token_url("http://idp.test/oauth2/token")
            .client_id("id")
            .client_secret("secret")
            .transport(idp.clone())
            .clock(Arc::new(clock.clone()))
            .backoff(tokencache_core::Backoff::new(
                std::time::Duration::from_millis(1),
                std::time::Duration::from_millis(5),
                1,
            ))
            .refresh_jitter(0.0)
            .build()
            .unwrap();
        (source, clock)
    }

    async fn secret(source: &ClientCredentials, options: TokenOptions) -> String {
        source
            .token_with(options)
            .await
            .unwrap()
            .secret()
            .to_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn each_variant_has_its_own_token_and_a_forced_refresh_renews() {
        let idp = ScriptedIdp::default();
        let (source, _clock) = scripted_source(&idp);
        let usual = TokenOptions::new;
        assert_eq!(secret(&source, usual()).await, "t1");
        let ab = || TokenOptions::new().scopes(["b", "a"]);
        assert_eq!(secret(&source, ab()).await, "t2");
        assert_eq!(
            secret(&source, TokenOptions::new().scopes(["a", "b", "a"])).await,
            "t2",
            "the same scopes in another order are the same token"
        );
        assert_eq!(secret(&source, usual()).await, "t1");
        let resource = TokenOptions::new().resource("https://api.example");
        assert_eq!(secret(&source, resource.clone()).await, "t3");
        assert_eq!(secret(&source, usual().force_refresh()).await, "t4");
        assert_eq!(
            secret(&source, usual()).await,
            "t4",
            "the renewed token is cached"
        );
        assert_eq!(secret(&source, ab()).await, "t2");
        assert_eq!(secret(&source, resource).await, "t3");

        let bodies = idp.bodies();
        assert_eq!(bodies.len(), 4);
        assert_eq!(bodies[0], "grant_type=client_credentials");
        assert_eq!(bodies[1], "grant_type=client_credentials&scope=a+b");
        assert_eq!(
            bodies[2],
            "grant_type=client_credentials&resource=https%3A%2F%2Fapi.example"
        );
        let token = source.token_with(ab()).await.unwrap();
        assert_eq!(token.scopes(), ["a", "b"], "the scopes asked for");
        let printed = format!("{source:?}");
        assert!(printed.contains("cached_tokens: 3"), "{printed}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_backs_off_no_less_than_retry_after() {
        let idp = ScriptedIdp::default();
        let (source, clock) = scripted_source(&idp);
        assert_eq!(secret(&source, TokenOptions::new()).await, "t1");

        // Aging at 80 s: the old token at once, and a refresh that fails.
        clock.advance(80);
        idp.fail_next(Some("30"));
        assert_eq!(secret(&source, TokenOptions::new()).await, "t1");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(idp.bodies().len(), 2);
        let cooldown = source.inner.flights.cooldown(&Variant::default()).unwrap();
        assert_eq!(cooldown.until, T0.plus_millis(110_000), "30 s asked");

        // Still aging at 89 s, still cooling down: no new attempt.
        clock.advance(9);
        assert_eq!(secret(&source, TokenOptions::new()).await, "t1");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(idp.bodies().len(), 2);

        // Expired at 90 s: a caller has nothing to be served, so it fetches
        // whatever the cooldown.
        clock.advance(1);
        assert_eq!(secret(&source, TokenOptions::new()).await, "t3");
        assert_eq!(source.inner.flights.cooldown(&Variant::default()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidating_a_token_drops_only_that_token() {
        let idp = ScriptedIdp::default();
        let (source, _clock) = scripted_source(&idp);
        let usual = source.token().await.unwrap();
        let other = source
            .token_with(TokenOptions::new().scopes(["x"]))
            .await
            .unwrap();
        source.invalidate_token(&other);
        assert_eq!(source.token().await.unwrap().secret(), usual.secret());
        assert_eq!(
            secret(&source, TokenOptions::new().scopes(["x"])).await,
            "t3"
        );
        source.invalidate();
        assert_eq!(source.token().await.unwrap().secret(), "t4");
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
