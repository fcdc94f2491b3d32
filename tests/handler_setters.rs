//! The grid of handler setters (issue 18): closures need no type annotations where Rust
//! can infer them (this file compiling is the check), every setter runs its handler over
//! every message, and a second setter is an error.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{cluster_with, eventually};
use kafka_thread_manager::mock::MockCluster;
use kafka_thread_manager::{
    async_trait, AsyncCallback, BatchCallback, BuildError, Callback, CallbackError, CommitPolicy,
    Message, ThreadManager, ThreadManagerBuilder, WorkerPool,
};

fn builder(cluster: &MockCluster) -> ThreadManagerBuilder {
    ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(50))
}

fn store(_: &[u8]) -> std::io::Result<()> {
    Ok(())
}

/// Each closure setter with the three kinds of body: `()`, an expression of type
/// `io::Result<()>`, and a named `Result<(), CallbackError>`; no argument annotations.
#[test]
fn closures_infer_their_argument_and_return_types() {
    let cluster = cluster_with("t", 1, 1);
    let b = || builder(&cluster);
    let pool = pool();
    let count = Arc::new(AtomicUsize::new(0));
    let set = [
        b().callback(move |_| {
            count.fetch_add(1, Ordering::SeqCst);
        }),
        b().callback(|m| store(m.payload().unwrap_or_default())),
        b().callback(|m| -> Result<(), CallbackError> {
            store(m.payload().ok_or(CallbackError::permanent("no payload"))?)?;
            Ok(())
        }),
        b().parallel_callback(pool, |m| assert!(m.offset() >= 0)),
        b().parallel_callback(pool, |m| store(m.key().unwrap_or_default())),
        b().batch_callback(|batch| assert!(!batch.is_empty())),
        b().batch_callback(|batch| {
            batch
                .iter()
                .try_for_each(|m| store(m.key().unwrap_or_default()))
        }),
        b().parallel_batch_callback(pool, |batch| -> Result<(), CallbackError> {
            if batch.is_empty() {
                return Err("empty".into());
            }
            Ok(())
        }),
        b().async_callback(|m| async move { assert!(m.offset() >= 0) }),
        b().async_callback(|m| async move { store(m.payload().unwrap_or_default()) }),
        b().parallel_async_callback(pool, |m| async move {
            tokio::time::sleep(Duration::from_millis(m.offset().unsigned_abs())).await;
        }),
        b().parallel_async_callback(pool, |_| async { Ok::<(), CallbackError>(()) }),
    ];
    for built in set.map(ThreadManagerBuilder::build) {
        assert!(built.is_ok());
    }
}

/// One handler type for every trait, counting the messages it handled.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicUsize>);

impl Callback for Counter {
    fn call(&mut self, _: &Message) -> Result<(), CallbackError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl BatchCallback for Counter {
    fn call(&mut self, batch: &[Message]) -> Result<(), CallbackError> {
        self.0.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait]
impl AsyncCallback for Counter {
    async fn call(&mut self, _: &Message) -> Result<(), CallbackError> {
        tokio::task::yield_now().await;
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

type Setter = fn(ThreadManagerBuilder, Counter) -> ThreadManagerBuilder;

fn pool() -> WorkerPool {
    WorkerPool::new(2).max_batch(7)
}

#[test]
fn every_setter_handles_every_message_once() {
    let setters: [(&str, Setter); 12] = [
        ("callback", |b, c| {
            b.callback(move |_| {
                c.0.fetch_add(1, Ordering::SeqCst);
            })
        }),
        ("handler", |b, c| b.handler(c)),
        ("async_callback", |b, c| {
            b.async_callback(move |_| {
                let c = c.clone();
                async move {
                    c.0.fetch_add(1, Ordering::SeqCst);
                }
            })
        }),
        ("async_handler", |b, c| b.async_handler(c)),
        ("batch_callback", |b, c| {
            b.batch_callback(move |batch| {
                c.0.fetch_add(batch.len(), Ordering::SeqCst);
            })
        }),
        ("batch_handler", |b, c| b.batch_handler(c)),
        ("parallel_callback", |b, c| {
            b.parallel_callback(pool(), move |_| {
                c.0.fetch_add(1, Ordering::SeqCst);
            })
        }),
        ("parallel_handler", |b, c| b.parallel_handler(pool(), c)),
        ("parallel_async_callback", |b, c| {
            b.parallel_async_callback(pool(), move |_| {
                let c = c.clone();
                async move {
                    tokio::time::sleep(Duration::from_micros(10)).await;
                    c.0.fetch_add(1, Ordering::SeqCst);
                }
            })
        }),
        ("parallel_async_handler", |b, c| {
            b.parallel_async_handler(pool(), c)
        }),
        ("parallel_batch_callback", |b, c| {
            b.parallel_batch_callback(pool(), move |batch| {
                c.0.fetch_add(batch.len(), Ordering::SeqCst);
            })
        }),
        ("parallel_batch_handler", |b, c| {
            b.parallel_batch_handler(pool(), c)
        }),
    ];
    for (name, set) in setters {
        let cluster = cluster_with("t", 3, 60);
        let counter = Counter::default();
        let m = set(builder(&cluster), counter.clone()).build().unwrap();
        m.start().unwrap();
        eventually(Duration::from_secs(20), name, || {
            (0..3).all(|p| cluster.committed("g", "t", p) == Some(20))
        });
        let report = m.stop().unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 60, "{name}");
        assert_eq!(report.counts.messages_handled, 60, "{name}");
    }
}

#[test]
fn a_second_setter_of_any_kind_is_an_error() {
    let cluster = cluster_with("t", 1, 1);
    let pool = WorkerPool::new(2);
    let twice = [
        builder(&cluster)
            .parallel_async_handler(pool, Counter::default())
            .batch_handler(Counter::default()),
        builder(&cluster)
            .parallel_batch_handler(pool, Counter::default())
            .parallel_async_callback(pool, |_| async {}),
    ];
    for b in twice {
        assert_eq!(
            b.build().err(),
            Some(BuildError::MoreThanOneHandler { given: 2 })
        );
    }
}
