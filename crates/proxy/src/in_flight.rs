//! Counting a connection's requests in flight, around any hyper service.
//!
//! hyper calls a service's `call` on the connection's own task, for
//! HTTP/1.1 and for every HTTP/2 stream alike, so the count goes up before
//! the connection's watchdog can next look at it: a request that has
//! started is never mistaken for idleness. The count goes down when the
//! answer is ready or the request is dropped (a client that went away, an
//! HTTP/2 stream reset), wherever the future happens to run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::activity::Activity;

/// A hyper service whose requests are counted on one connection's
/// [`Activity`].
#[derive(Debug, Clone)]
pub(crate) struct CountInFlight<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> CountInFlight<S> {
    /// Counts `inner`'s requests on `activity`.
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S, R> hyper::service::Service<R> for CountInFlight<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn call(&self, request: R) -> Self::Future {
        self.activity.request_started();
        let guard = InFlight(Arc::clone(&self.activity));
        Counted {
            inner: self.inner.call(request),
            guard: Some(guard),
        }
    }
}

/// One request in flight: ends when dropped, however the request ended.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

pin_project_lite::pin_project! {
    /// A service's future that holds its request's place in the count
    /// until it completes or is dropped.
    #[derive(Debug)]
    pub(crate) struct Counted<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        // The answer is ready: the request is over, whenever hyper gets
        // round to dropping this future.
        this.guard.take();
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use hyper::service::Service;

    use super::*;

    /// A service whose answer waits for the test to send it.
    #[derive(Clone)]
    struct Pending(Arc<tokio::sync::Notify>);

    impl Service<()> for Pending {
        type Response = ();
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<(), Infallible>> + Send>>;

        fn call(&self, (): ()) -> Self::Future {
            let go = Arc::clone(&self.0);
            Box::pin(async move {
                go.notified().await;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_request_is_in_flight_from_call_until_its_answer_or_its_cancellation() {
        let activity = Arc::new(Activity::new(crate::activity::Ticks::start()));
        let go = Arc::new(tokio::sync::Notify::new());
        let service = CountInFlight::new(Pending(Arc::clone(&go)), Arc::clone(&activity));

        let answered = service.call(());
        let cancelled = service.call(());
        let snapshot = activity.snapshot();
        assert_eq!((snapshot.requests, snapshot.in_flight), (2, 2));

        drop(cancelled);
        assert_eq!(activity.snapshot().in_flight, 1);

        go.notify_one();
        answered.await.unwrap();
        let snapshot = activity.snapshot();
        assert_eq!((snapshot.requests, snapshot.in_flight), (2, 0));
    }
}
