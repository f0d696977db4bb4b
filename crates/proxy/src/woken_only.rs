//! A future that is polled only when it asked to be: when something it
//! waits on woke it, not whenever the task it shares is polled.
//!
//! A connection's task runs hyper's connection beside its watchdog; every
//! read and write readiness wakes the task, and a plain `select!` would then
//! poll the watchdog too (its shutdown signal, its close notification, its
//! timer) for nothing, on every request. Wrapped in [`WokenOnly`], the
//! watchdog costs such a poll one atomic swap.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// `inner`, polled only after one of its own wakers fired (and once at the
/// start).
pub(crate) struct WokenOnly<F> {
    inner: Pin<Box<F>>,
    signal: Arc<Signal>,
    /// The waker `inner` is polled with: sets the signal, wakes the task.
    waker: Waker,
    /// The task's waker the signal last registered.
    task: Option<Waker>,
}

/// Shared by the wrapper and the wakers it hands `inner`.
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> WokenOnly<F> {
    /// Wraps `inner` (boxed once, so the wrapper moves freely).
    pub(crate) fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            inner: Box::pin(inner),
            waker: Waker::from(Arc::clone(&signal)),
            signal,
            task: None,
        }
    }
}

impl<F: Future> Future for WokenOnly<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let moved = !this
            .task
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()));
        if moved {
            this.signal.task.register(cx.waker());
            this.task = Some(cx.waker().clone());
        }
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        // A wake takes the registration with it: register again before
        // `inner` can be woken next.
        if !moved {
            this.signal.task.register(cx.waker());
        }
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts its polls; ready once notified, waking through the waker it
    /// was last polled with.
    struct Counted {
        polls: Arc<AtomicUsize>,
        notified: Pin<Box<tokio::sync::futures::OwnedNotified>>,
    }

    impl Future for Counted {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            self.notified.as_mut().poll(cx)
        }
    }

    #[tokio::test]
    async fn polled_at_the_start_and_after_its_own_wakes_only() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(tokio::sync::Notify::new());
        let counted = Counted {
            polls: Arc::clone(&polls),
            notified: Box::pin(Arc::clone(&ready).notified_owned()),
        };
        let mut wrapped = std::pin::pin!(WokenOnly::new(counted));
        // The task is polled many times for other reasons: the wrapped
        // future only once, at the start.
        for _ in 0..100 {
            assert!(futures::poll!(wrapped.as_mut()).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        // Its own wake: polled again, and it completes.
        ready.notify_one();
        tokio::time::timeout(Duration::from_secs(5), wrapped)
            .await
            .expect("completed once woken");
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_timer_inside_wakes_the_task_each_time() {
        tokio::time::pause();
        let ticks = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ticks);
        let wrapped = WokenOnly::new(async move {
            // Three timers in turn: each must wake the task through a
            // registration renewed after the previous wake.
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        tokio::time::timeout(Duration::from_secs(10), wrapped)
            .await
            .expect("every timer woke it");
        assert_eq!(ticks.load(Ordering::Relaxed), 3);
    }
}
