//! One load per key, however many callers ask at once.
//!
//! A [`SingleFlight`] is a table of loads in progress, keyed by `K`. The
//! first caller to [`join`](SingleFlight::join) a key starts its load; the
//! callers after it, until the load ends, wait for the same one. What the
//! load produces (`V`, cloned to each caller: typically an `Arc`) is shared
//! by all of them.
//!
//! - **A caller that goes away cancels nothing.** The load runs in its own
//!   Tokio task: a caller whose future is dropped (a client that
//!   disconnected, a timeout) leaves it running for the others, and for
//!   the cache the load fills.
//! - **A finished load leaves the table**, however it ends: a guard in its
//!   task removes the key when the task stops, a panic included. Its
//!   waiters then get [`Error::Panicked`], never a hang.
//! - **Background refreshes back off.** [`refresh`](SingleFlight::refresh)
//!   starts a load nobody waits for, unless one is running for the key or
//!   the key is cooling down: after a failed refresh the next one waits
//!   `base · 2ⁿ` (half to all of it, at random, so a fleet's replicas do
//!   not retry in step), capped, and never less than a `Retry-After` the
//!   outcome reports. A success clears it. Loads callers wait for never
//!   wait for a cooldown: their caller has nothing to be served meanwhile.
//!
//! It knows nothing of HTTP, routes or tokens: the caller says how to load
//! a key and, with a classifier, whether an outcome is a success. The
//! cooldowns are timed by core's injected [`Clock`], so tests move a manual
//! clock instead of sleeping.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use tokencache_single_flight::SingleFlight;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tokencache_single_flight::Error> {
//! let flights: SingleFlight<&str, Arc<String>> = SingleFlight::new();
//! let load = || async {
//!     tokio::time::sleep(Duration::from_millis(100)).await; // the slow part
//!     Arc::new("a token".to_owned())
//! };
//!
//! let first = flights.join("key", load)?;
//! let second = flights.join("key", load)?; // joins the load in progress
//! assert!(first.is_leader() && !second.is_leader());
//! drop(first); // the leader gives up: the load goes on
//! assert_eq!(*second.await?, "a token");
//! assert_eq!(flights.in_flight(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! This crate has no feature flags.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt as _, Shared};
use tokencache_core::{Backoff, Clock, SystemClock, UnixMillis};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why a load gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A load was to start outside a Tokio runtime, where it has no task to
    /// run in.
    #[error("loads can only start within a Tokio runtime")]
    NoRuntime,
    /// The load panicked.
    #[error("the load panicked")]
    Panicked,
    /// The load's task was cancelled before it finished (the runtime shut
    /// down).
    #[error("the load was cancelled before it finished")]
    Cancelled,
}

/// What a load's value means for the key's refresh cooldown, as the
/// classifier given to [`Builder::classify`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The load succeeded: the key's cooldown is cleared.
    Success,
    /// The load failed: a failed refresh makes the key cool down.
    Failure {
        /// How long the source asked to be left alone (`Retry-After`): a
        /// floor under the cooldown.
        retry_after: Option<Duration>,
    },
}

/// A key's refresh cooldown after failed refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cooldown {
    /// Refreshes failed in a row.
    pub failures: u32,
    /// No refresh starts before this instant.
    pub until: UnixMillis,
}

/// What [`SingleFlight::refresh`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// A load started.
    Started,
    /// A load of the key was already running; it stands for the refresh.
    Running,
    /// The key's last refresh failed too recently.
    CoolingDown,
}

/// What [`SingleFlight::join_unless`] found.
#[derive(Debug)]
pub enum Joined<V, T> {
    /// Nothing was running, and the `found` check produced this: no load
    /// started.
    Found(T),
    /// The caller leads a new load, or waits for one in progress.
    Flight(Flight<V>),
}

/// A load in progress, shared by every caller that waits for it.
type SharedLoad<V> = Shared<BoxFuture<'static, Result<V, Error>>>;

/// A caller's handle on a load: a future of its value.
///
/// Dropping it does not cancel the load.
pub struct Flight<V> {
    load: SharedLoad<V>,
    leader: bool,
}

impl<V: Clone> Flight<V> {
    /// Whether this caller started the load (rather than joining one in
    /// progress).
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}

impl<V: Clone> Future for Flight<V> {
    type Output = Result<V, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.load.poll_unpin(cx)
    }
}

impl<V: Clone> Clone for Flight<V> {
    fn clone(&self) -> Self {
        Self {
            load: self.load.clone(),
            leader: self.leader,
        }
    }
}

impl<V> fmt::Debug for Flight<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flight")
            .field("leader", &self.leader)
            .finish_non_exhaustive()
    }
}

/// Why a load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A caller is waiting.
    Load,
    /// A value is being replaced ahead of time; nobody waits.
    Refresh,
}

/// The classifier of outcomes.
type Classify<V> = Box<dyn Fn(&V) -> Outcome + Send + Sync>;

/// The loads in progress, by key, and the keys cooling down.
///
/// Cheap to clone: clones share one table.
pub struct SingleFlight<K, V> {
    inner: Arc<Inner<K, V>>,
}

struct Inner<K, V> {
    table: Mutex<Table<K, V>>,
    backoff: Backoff,
    clock: Arc<dyn Clock>,
    classify: Classify<V>,
}

struct Table<K, V> {
    running: HashMap<K, Running<V>>,
    cooldowns: HashMap<K, Cooldown>,
    next_id: u64,
}

struct Running<V> {
    /// Which load this is, so a finished load never removes a newer one.
    id: u64,
    load: SharedLoad<V>,
}

/// A key reserved in the table for a load about to be launched.
struct Reserved<V> {
    id: u64,
    runtime: Handle,
    /// Hands the load's task to the futures that wait for it.
    task: oneshot::Sender<JoinHandle<V>>,
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A table with the default settings of [`Builder`].
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, to set the refresh backoff, the clock and the classifier.
    #[must_use]
    pub fn builder() -> Builder<K, V> {
        Builder {
            backoff: Backoff::default(),
            clock: Arc::new(SystemClock),
            classify: Box::new(|_| Outcome::Success),
            key: PhantomData,
        }
    }

    /// Joins the load of `key`, or starts it with `make_load` (which only
    /// builds the future; the future runs in its own task).
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] when a load must start outside a Tokio runtime.
    pub fn join<F, Fut>(&self, key: K, make_load: F) -> Result<Flight<V>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        match self.join_unless(key, || None::<std::convert::Infallible>, make_load)? {
            Joined::Flight(flight) => Ok(flight),
            Joined::Found(never) => match never {},
        }
    }

    /// Joins the load of `key` if one is running; else returns what `found`
    /// finds, if anything; else starts the load with `make_load`.
    ///
    /// `found` runs under the table's lock, so it can re-read a cache that
    /// the loads fill *before* they leave the table: a caller that finds
    /// neither a load nor a value then knows it must load. It must not call
    /// back into this table.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] when a load must start outside a Tokio runtime.
    pub fn join_unless<T, F, Fut>(
        &self,
        key: K,
        found: impl FnOnce() -> Option<T>,
        make_load: F,
    ) -> Result<Joined<V, T>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (load, reserved) = {
            let mut table = self.inner.lock();
            if let Some(running) = table.running.get(&key) {
                return Ok(Joined::Flight(Flight {
                    load: running.load.clone(),
                    leader: false,
                }));
            }
            if let Some(value) = found() {
                return Ok(Joined::Found(value));
            }
            reserve(&mut table, &key)?
        };
        self.launch(key, Purpose::Load, reserved, make_load);
        Ok(Joined::Flight(Flight { load, leader: true }))
    }

    /// Starts a background load of `key` that nobody waits for (callers
    /// that [`join`](Self::join) meanwhile wait for it), unless one is
    /// running or the key is cooling down after a failed refresh.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] when the load would start outside a Tokio
    /// runtime.
    pub fn refresh<F, Fut>(&self, key: K, make_load: F) -> Result<Refresh, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let now = self.inner.clock.now();
        let reserved = {
            let mut table = self.inner.lock();
            if table.running.contains_key(&key) {
                return Ok(Refresh::Running);
            }
            if table
                .cooldowns
                .get(&key)
                .is_some_and(|cooldown| cooldown.until > now)
            {
                return Ok(Refresh::CoolingDown);
            }
            reserve(&mut table, &key)?.1
        };
        self.launch(key, Purpose::Refresh, reserved, make_load);
        Ok(Refresh::Started)
    }

    /// Forgets cooldowns that ended more than the backoff's cap ago: their
    /// keys are long refreshed, or gone. Call it now and then (the table
    /// keeps a cooldown per key that ever failed a refresh until then).
    pub fn prune(&self) {
        let now = self.inner.clock.now();
        let cap = u64::try_from(self.inner.backoff.cap().as_millis()).unwrap_or(u64::MAX);
        self.inner
            .lock()
            .cooldowns
            .retain(|_, cooldown| now.millis_since(cooldown.until) < cap);
    }

    /// The number of loads in progress.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.inner.lock().running.len()
    }

    /// The cooldown of `key`, if its last refreshes failed (and it was not
    /// pruned since).
    #[must_use]
    pub fn cooldown(&self, key: &K) -> Option<Cooldown> {
        self.inner.lock().cooldowns.get(key).copied()
    }

    /// Spawns the load reserved for `key`. Outside the table's lock: a
    /// runtime that is shutting down drops a task at once, on this thread,
    /// and its guard takes the lock.
    fn launch<F, Fut>(&self, key: K, purpose: Purpose, reserved: Reserved<V>, make_load: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        // From here on, however this ends (even a panic in `make_load`),
        // the guard takes the key out of the table.
        let guard = Guard {
            inner: Arc::clone(&self.inner),
            key,
            id: reserved.id,
            purpose,
            outcome: None,
        };
        let load = make_load();
        let task = reserved.runtime.spawn(async move {
            let mut guard = guard;
            let value = load.await;
            guard.outcome = Some((guard.inner.classify)(&value));
            // Out of the table before any waiter sees the value.
            drop(guard);
            value
        });
        // No one waiting is fine: the task runs on, detached.
        let _ = reserved.task.send(task);
    }
}

/// Reserves `key` for a new load: its entry goes into the table at once,
/// so the callers that come next wait for it.
fn reserve<K, V>(table: &mut Table<K, V>, key: &K) -> Result<(SharedLoad<V>, Reserved<V>), Error>
where
    K: Eq + Hash + Clone,
    V: Clone + Send + Sync + 'static,
{
    let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let id = table.next_id;
    table.next_id = id.wrapping_add(1);
    let (sender, receiver) = oneshot::channel::<JoinHandle<V>>();
    let load = async move {
        // No task handed over means `make_load` panicked.
        let task = receiver.await.map_err(|_| Error::Panicked)?;
        task.await.map_err(|error| {
            if error.is_panic() {
                Error::Panicked
            } else {
                Error::Cancelled
            }
        })
    }
    .boxed()
    .shared();
    table.running.insert(
        key.clone(),
        Running {
            id,
            load: load.clone(),
        },
    );
    Ok((
        load,
        Reserved {
            id,
            runtime,
            task: sender,
        },
    ))
}

impl<K, V> Default for SingleFlight<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Clone for SingleFlight<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.inner.lock();
        f.debug_struct("SingleFlight")
            .field("in_flight", &table.running.len())
            .field("cooling_down", &table.cooldowns.len())
            .field("backoff", &self.inner.backoff)
            .finish_non_exhaustive()
    }
}

impl<K, V> Inner<K, V> {
    fn lock(&self) -> MutexGuard<'_, Table<K, V>> {
        // The table is plain maps, consistent between statements, so it is
        // usable even if a holder panicked.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cooldown after `failures` failed refreshes in a row (at least
    /// 1): half to all of the doubling ceiling, so a fleet's replicas do
    /// not retry a failing refresh in step, and never less than asked.
    fn cooldown(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let jitter = 0.5 + rand::random::<f64>() / 2.0;
        let delay = self.backoff.delay(failures.saturating_sub(1), jitter);
        retry_after.map_or(delay, |asked| delay.max(asked))
    }
}

/// Takes a key out of the table when its load's task ends, however it ends
/// (a panic and a cancelled task included), so no caller can wait on a
/// finished load; and settles the key's cooldown.
struct Guard<K: Eq + Hash + Clone, V> {
    inner: Arc<Inner<K, V>>,
    key: K,
    id: u64,
    purpose: Purpose,
    /// `None` until the load produced a value: a panic is a failure.
    outcome: Option<Outcome>,
}

impl<K: Eq + Hash + Clone, V> Drop for Guard<K, V> {
    fn drop(&mut self) {
        let now = self.inner.clock.now();
        let mut table = self.inner.lock();
        if table
            .running
            .get(&self.key)
            .is_some_and(|running| running.id == self.id)
        {
            table.running.remove(&self.key);
        }
        match self
            .outcome
            .unwrap_or(Outcome::Failure { retry_after: None })
        {
            Outcome::Success => {
                table.cooldowns.remove(&self.key);
            }
            Outcome::Failure { retry_after } if self.purpose == Purpose::Refresh => {
                let failures = table
                    .cooldowns
                    .get(&self.key)
                    .map_or(0, |cooldown| cooldown.failures)
                    .saturating_add(1);
                let until = now.plus(self.inner.cooldown(failures, retry_after));
                table
                    .cooldowns
                    .insert(self.key.clone(), Cooldown { failures, until });
            }
            // A caller was waiting: it got the failure, and the next caller
            // may try again at once.
            Outcome::Failure { .. } => {}
        }
    }
}

/// Builds a [`SingleFlight`]; get one from [`SingleFlight::builder`].
///
/// | setting | default |
/// | --- | --- |
/// | [`refresh_backoff`](Self::refresh_backoff) | [`Backoff::default`]: 100 ms base, 5 s cap |
/// | [`clock`](Self::clock) | the system clock |
/// | [`classify`](Self::classify) | every value is a success |
pub struct Builder<K, V> {
    backoff: Backoff,
    clock: Arc<dyn Clock>,
    classify: Classify<V>,
    key: PhantomData<fn() -> K>,
}

impl<K, V> Builder<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The cooldown after failed refreshes: its base and cap (its attempt
    /// limit is not used: refreshes go on while callers are served).
    #[must_use]
    pub fn refresh_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Where the time of cooldowns comes from. Tests pass a manual clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Whether a load's value is a success, and when it is not, how long
    /// its source asked to be left alone.
    #[must_use]
    pub fn classify(mut self, classify: impl Fn(&V) -> Outcome + Send + Sync + 'static) -> Self {
        self.classify = Box::new(classify);
        self
    }

    /// The table.
    #[must_use]
    pub fn build(self) -> SingleFlight<K, V> {
        SingleFlight {
            inner: Arc::new(Inner {
                table: Mutex::new(Table {
                    running: HashMap::new(),
                    cooldowns: HashMap::new(),
                    next_id: 0,
                }),
                backoff: self.backoff,
                clock: self.clock,
                classify: self.classify,
            }),
        }
    }
}

impl<K, V> fmt::Debug for Builder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("backoff", &self.backoff)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
