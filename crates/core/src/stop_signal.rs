//! The stop request: checked once per message, so the check is one atomic load
//! (tokio-util's `CancellationToken::is_cancelled` takes a mutex), and awaitable, so a
//! pending poll wakes at once.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct StopSignal {
    raised: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Completes once `raise` has been called (at once if it already was).
    pub(crate) async fn raised(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a raise in between still wakes us.
            notified.as_mut().enable();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_raise_from_another_thread_wakes_the_waiter() {
        let signal = Arc::new(StopSignal::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let raiser = Arc::clone(&signal);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            raiser.raise();
        });
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), signal.raised())
                .await
                .expect("woken");
        });
        t.join().unwrap();
        assert!(signal.is_raised());
        rt.block_on(signal.raised()); // already raised: returns at once
    }
}
