//! Async callbacks on the worker pool (`parallel_async_callback`): the guarantees of the
//! sync pool tests in the parent module, with each message going through the worker's
//! own runtime (a timer await before the body).

use std::future::Future;
use std::pin::Pin;

use super::*;

/// What the async callbacks return (boxed, so one helper serves every test).
type Reply = Pin<Box<dyn Future<Output = Ok> + Send>>;

/// An async callback that awaits a timer (so the worker's runtime must drive it, with
/// time enabled), then runs `body`.
fn after_a_timer(
    body: impl Fn(&Message) -> Ok + Send + Sync + 'static,
) -> impl FnMut(Message) -> Reply + Clone + Send + 'static {
    let body = Arc::new(body);
    move |msg| {
        let body = Arc::clone(&body);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_micros(100)).await;
            body(&msg)
        })
    }
}

/// Waits, asynchronously, until `gate` opens.
async fn opened(gate: &AtomicBool) {
    while !gate.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn async_partition_order_is_kept_on_one_worker_per_partition() {
    let cluster = cluster_with("t", 6, 600);
    let log: SeenLog = Arc::default();
    let sink = Arc::clone(&log);
    let m = builder(&cluster, "t")
        .thread_name("async-pooled")
        .parallel_async_callback(
            WorkerPool::new(3),
            after_a_timer(move |msg| {
                sink.lock().unwrap().push(seen(msg));
                Ok(())
            }),
        )
        .build()
        .unwrap();
    m.start().unwrap();
    let report = stop_once_committed(&m, &cluster, 6, 100);
    assert_eq!(report.counts.messages_handled, 600);
    let log = log.lock().unwrap().clone();
    for (p, offsets) in by_partition(&log) {
        assert_eq!(offsets, (0..100).collect::<Vec<_>>(), "partition {p}");
        let threads: BTreeSet<_> = log
            .iter()
            .filter(|s| s.partition == p)
            .map(|s| s.thread.clone())
            .collect();
        assert_eq!(threads.len(), 1, "partition {p} on one worker: {threads:?}");
    }
    let workers: BTreeSet<_> = log.iter().map(|s| s.thread.clone()).collect();
    assert_eq!(workers.len(), 3, "{workers:?}");
    assert!(workers
        .iter()
        .all(|t| t.starts_with("async-pooled-worker-")));
}

#[test]
fn async_key_order_holds_while_one_key_waits_and_the_commit_does_not_pass_it() {
    let cluster = MockCluster::new();
    cluster.create_topic("t", 1).unwrap();
    for i in 0..200 {
        let record = Record::new("v").key(format!("k{}", i % 8));
        cluster.produce("t", 0, record).unwrap();
    }
    let release = Arc::new(AtomicBool::new(false));
    let log: SeenLog = Arc::default();
    let (gate, sink) = (Arc::clone(&release), Arc::clone(&log));
    let m = builder(&cluster, "t")
        .parallel_async_callback(
            WorkerPool::new(4).order(ProcessingOrder::Key),
            move |msg: Message| {
                let (gate, sink) = (Arc::clone(&gate), Arc::clone(&sink));
                async move {
                    if msg.offset() == 5 {
                        opened(&gate).await;
                    }
                    sink.lock().unwrap().push(seen(&msg));
                }
            },
        )
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "other keys handled past offset 5", || {
        log.lock().unwrap().iter().filter(|s| s.offset > 5).count() >= 20
    });
    assert!(committed(&cluster, "t", 0).is_none_or(|p| p <= 5));
    release.store(true, Ordering::SeqCst);
    stop_once_committed(&m, &cluster, 1, 200);
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 200);
    for k in 0..8_i64 {
        let offsets: Vec<i64> = log
            .iter()
            .filter(|s| s.offset % 8 == k)
            .map(|s| s.offset)
            .collect();
        assert_eq!(
            offsets,
            (0..25).map(|i| i * 8 + k).collect::<Vec<_>>(),
            "key k{k}"
        );
    }
}

#[test]
fn async_callbacks_pause_a_partition_whose_worker_queue_is_full() {
    let cluster = MockCluster::new();
    cluster.create_topic("t", 1).unwrap();
    cluster.fill("t", 300, 8).unwrap();
    let pauses = Arc::new(AtomicUsize::new(0));
    let pause_count = Arc::clone(&pauses);
    let source = Observed {
        inner: cluster
            .consumer("g")
            .subscribe(["t"])
            .max_batch(50)
            .build()
            .unwrap(),
        observe: Box::new(move |call| {
            if let Call::Pause(_) = call {
                pause_count.fetch_add(1, Ordering::SeqCst);
            }
        }),
    };
    let release = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&release);
    let m = ThreadManager::builder(source)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(20))
        .parallel_async_callback(WorkerPool::new(1).queue_capacity(10), move |_| {
            let gate = Arc::clone(&gate);
            async move { opened(&gate).await }
        })
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "the partition paused", || {
        pauses.load(Ordering::SeqCst) > 0
    });
    std::thread::sleep(Duration::from_millis(200));
    let stats = m.stats();
    assert_eq!(stats.counts.messages_handled, 0);
    assert!(
        stats.in_flight <= 20 && stats.held <= 50,
        "backlog not bounded: {} in flight, {} held",
        stats.in_flight,
        stats.held
    );
    release.store(true, Ordering::SeqCst);
    let report = stop_once_committed(&m, &cluster, 1, 300);
    assert_eq!(report.counts.messages_handled, 300);
}

#[test]
fn a_failed_async_message_is_retried_in_place_while_the_rest_waits() {
    let cluster = cluster_with("t", 2, 30);
    let log: SeenLog = Arc::default();
    let sink = Arc::clone(&log);
    let m = builder(&cluster, "t")
        .retry_policy(
            RetryPolicy::retries(3).backoff(Duration::from_millis(5), Duration::from_millis(5)),
        )
        .parallel_async_callback(
            WorkerPool::new(2),
            after_a_timer(move |msg| {
                let mut log = sink.lock().unwrap();
                log.push(seen(msg));
                let tries = log
                    .iter()
                    .filter(|s| (s.partition, s.offset) == (msg.partition(), msg.offset()))
                    .count();
                if (msg.partition(), msg.offset()) == (1, 4) && tries <= 2 {
                    return Err(CallbackError::retryable("busy"));
                }
                Ok(())
            }),
        )
        .build()
        .unwrap();
    m.start().unwrap();
    let report = stop_once_committed(&m, &cluster, 2, 15);
    let mut expected: Vec<i64> = (0..15).collect();
    expected.splice(4..5, [4, 4, 4]);
    assert_eq!(by_partition(&log.lock().unwrap())[&1], expected);
    assert_eq!(
        (report.counts.retries, report.counts.callback_failures),
        (2, 2)
    );
    assert_eq!(report.counts.messages_handled, 30);
}

/// Runs a 2-worker async pool over 2 partitions of 100 until it stops by itself under
/// the default `FailurePolicy::Stop`; `body` fails (or panics) at partition 0, offset 10.
fn stopped_at_p0_10(
    body: impl Fn(&Message) -> Ok + Send + Sync + 'static,
) -> (Vec<i64>, StopReport, MockCluster) {
    let cluster = cluster_with("t", 2, 200);
    let log: SeenLog = Arc::default();
    let sink = Arc::clone(&log);
    let m = builder(&cluster, "t")
        .parallel_async_callback(
            WorkerPool::new(2),
            after_a_timer(move |msg| {
                sink.lock().unwrap().push(seen(msg));
                body(msg)
            }),
        )
        .build()
        .unwrap();
    m.start().unwrap();
    let report = m.wait(Some(PATIENCE)).unwrap();
    let p0 = by_partition(&log.lock().unwrap())
        .remove(&0)
        .unwrap_or_default();
    (p0, report, cluster)
}

fn at_p0_10(msg: &Message) -> bool {
    (msg.partition(), msg.offset()) == (0, 10)
}

#[test]
fn the_stop_policy_commits_nothing_past_a_failed_async_message() {
    let (p0, report, cluster) = stopped_at_p0_10(|msg| {
        if at_p0_10(msg) {
            return Err(CallbackError::permanent("malformed"));
        }
        Ok(())
    });
    assert_eq!(report.final_state, State::Failed);
    match &report.reason {
        StopReason::CallbackFailed(f) => {
            assert_eq!((f.partition, f.offset, f.panicked), (0, 10, false));
        }
        other => panic!("unexpected reason {other:?}"),
    }
    assert_eq!(p0, (0..=10).collect::<Vec<_>>(), "nothing after 10 handled");
    assert_eq!(committed(&cluster, "t", 0), Some(10));
}

#[test]
fn a_panic_in_an_async_callback_on_a_worker_is_caught() {
    let (p0, report, cluster) = stopped_at_p0_10(|msg| {
        assert!(!at_p0_10(msg), "async boom at 10");
        Ok(())
    });
    assert_eq!(report.final_state, State::Failed);
    match &report.reason {
        StopReason::CallbackFailed(f) => {
            assert_eq!((f.partition, f.offset), (0, 10));
            assert!(f.panicked && f.reason.contains("async boom at 10"), "{f:?}");
        }
        other => panic!("unexpected reason {other:?}"),
    }
    assert_eq!(p0, (0..=10).collect::<Vec<_>>());
    assert_eq!(committed(&cluster, "t", 0), Some(10));
}
