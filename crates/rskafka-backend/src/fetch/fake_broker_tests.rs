//! The fetch path against an in-process fake broker that keeps aborted transactions, as
//! Kafka does (Tansu drops them itself, and librdkafka's mock cluster keeps no
//! aborted-transaction index): a partition holding a plain record, a committed, an
//! aborted and another committed transaction, ending with a commit marker. The manager
//! must hand over only the committed records, reach the high watermark (lag 0, healthy)
//! and, once idle, fetch at the broker's long-poll pace rather than spin on the marker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use ktm_core::{IsolationLevel, Message, ThreadManager, TopicPartition};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::records::tests::encode::{TestBatch, TestRecord};
use crate::wire::fake::{api_versions, read_request, respond};
use crate::RskafkaSource;

const TOPIC: &str = "tx";
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;
/// The log end: the trailing commit marker is offset 9.
const END: i64 = 10;

/// Batches of `n` records of producer `pid` (-1: none) from `base`, or its marker.
fn batch(base: i64, n: i32, pid: i64, marker: Option<bool>) -> (i64, Vec<u8>) {
    let records = match marker {
        Some(commit) => vec![TestRecord::new(
            0,
            Some(&[0, 0, 0, u8::from(commit)]),
            Some(&[0, 0, 0, 0, 0, 0]),
        )],
        None => (0..n)
            .map(|i| {
                TestRecord::new(
                    i,
                    Some(b"k"),
                    Some(format!("v{}", base + i64::from(i)).as_bytes()),
                )
            })
            .collect(),
    };
    let mut b = TestBatch::new(base, records);
    b.producer_id = pid;
    if pid >= 0 {
        b.attributes = TRANSACTIONAL | if marker.is_some() { CONTROL } else { 0 };
    }
    (base + i64::from(n.max(1)) - 1, b.encode())
}

/// (last offset, bytes) of each batch of the partition.
fn log() -> Vec<(i64, Vec<u8>)> {
    vec![
        batch(0, 1, -1, None),
        batch(1, 2, 5, None),
        batch(3, 1, 5, Some(true)),
        batch(4, 2, 6, None),
        batch(6, 1, 6, Some(false)),
        batch(7, 2, 5, None),
        batch(9, 1, 5, Some(true)),
    ]
}

/// The fake broker: one partition, led by itself, coordinator of every group.
#[derive(Clone, Default)]
struct Fake {
    fetches: Arc<AtomicUsize>,
    committed: Arc<Mutex<Option<i64>>>,
    /// Flips a bit in the batch at offset 7, as a disk or a network might.
    corrupt: bool,
}

const SERVED: [(ApiKey, i16, i16); 8] = [
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 1, 9),
    (ApiKey::FindCoordinator, 1, 3),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Fetch, 4, 11),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::Heartbeat, 0, 4),
];

impl Fake {
    async fn start(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let me = addr.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(self.clone().serve(stream, me.clone()));
            }
        });
        addr
    }

    async fn serve(self, mut stream: tokio::net::TcpStream, me: String) {
        let (host, port) = me.rsplit_once(':').unwrap();
        let (host, port) = (
            StrBytes::from_string(host.to_owned()),
            port.parse::<i32>().unwrap(),
        );
        while let Some((header, mut buf)) = read_request(&mut stream).await {
            let (v, c) = (header.request_api_version, header.correlation_id);
            let mut out = BytesMut::new();
            match ApiKey::try_from(header.request_api_key).unwrap() {
                ApiKey::ApiVersions => {
                    ApiVersionsRequest::decode(&mut buf, v).unwrap();
                    respond(&mut out, c, &api_versions(&SERVED), v);
                }
                ApiKey::Metadata => {
                    MetadataRequest::decode(&mut buf, v).unwrap();
                    let resp = MetadataResponse::default()
                        .with_brokers(vec![MetadataResponseBroker::default()
                            .with_node_id(BrokerId(0))
                            .with_host(host.clone())
                            .with_port(port)])
                        .with_topics(vec![MetadataResponseTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))
                            .with_partitions(vec![MetadataResponsePartition::default()
                                .with_partition_index(0)
                                .with_leader_id(BrokerId(0))])]);
                    respond(&mut out, c, &resp, v);
                }
                ApiKey::FindCoordinator => {
                    FindCoordinatorRequest::decode(&mut buf, v).unwrap();
                    let resp = FindCoordinatorResponse::default()
                        .with_node_id(BrokerId(0))
                        .with_host(host.clone())
                        .with_port(port);
                    respond(&mut out, c, &resp, v);
                }
                ApiKey::OffsetFetch => {
                    OffsetFetchRequest::decode(&mut buf, v).unwrap();
                    let committed = self.committed.lock().unwrap().unwrap_or(-1);
                    let resp = OffsetFetchResponse::default().with_topics(vec![
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                            .with_partitions(vec![OffsetFetchResponsePartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(committed)]),
                    ]);
                    respond(&mut out, c, &resp, v);
                }
                ApiKey::OffsetCommit => {
                    let req = OffsetCommitRequest::decode(&mut buf, v).unwrap();
                    let offset = req.topics[0].partitions[0].committed_offset;
                    *self.committed.lock().unwrap() = Some(offset);
                    let resp = OffsetCommitResponse::default().with_topics(vec![
                        OffsetCommitResponseTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                            .with_partitions(vec![
                                OffsetCommitResponsePartition::default().with_partition_index(0)
                            ]),
                    ]);
                    respond(&mut out, c, &resp, v);
                }
                ApiKey::ListOffsets => {
                    let req = ListOffsetsRequest::decode(&mut buf, v).unwrap();
                    let at = req.topics[0].partitions[0].timestamp;
                    let offset = if at == -2 { 0 } else { END };
                    let resp = ListOffsetsResponse::default().with_topics(vec![
                        ListOffsetsTopicResponse::default()
                            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                            .with_partitions(vec![ListOffsetsPartitionResponse::default()
                                .with_partition_index(0)
                                .with_offset(offset)]),
                    ]);
                    respond(&mut out, c, &resp, v);
                }
                ApiKey::Fetch => {
                    let req = FetchRequest::decode(&mut buf, v).unwrap();
                    self.fetches.fetch_add(1, Ordering::SeqCst);
                    let resp = self.fetch(&req).await;
                    respond(&mut out, c, &resp, v);
                }
                other => panic!("the fake does not serve {other:?}"),
            }
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    /// The batches from the one holding the fetch offset; at the log end, nothing
    /// after `max_wait_ms`, as Kafka's long poll.
    async fn fetch(&self, req: &FetchRequest) -> FetchResponse {
        let offset = req
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .map(|p| p.fetch_offset);
        let mut data: Vec<u8> = Vec::new();
        if let Some(offset) = offset {
            for (last, mut bytes) in log() {
                if self.corrupt && last == 8 {
                    let end = bytes.len() - 1;
                    bytes[end] ^= 0x40;
                }
                if last >= offset {
                    data.extend_from_slice(&bytes);
                }
            }
        }
        if data.is_empty() {
            let wait = u64::try_from(req.max_wait_ms).unwrap();
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let partitions = req
            .topics
            .first()
            .map(|t| {
                t.partitions
                    .iter()
                    .map(|_| {
                        PartitionData::default()
                            .with_partition_index(0)
                            .with_high_watermark(END)
                            .with_last_stable_offset(END)
                            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                                .with_producer_id(ProducerId(6))
                                .with_first_offset(4)]))
                            .with_records(Some(Bytes::from(data.clone())))
                    })
                    .collect()
            })
            .unwrap_or_default();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(partitions)])
    }
}

/// Runs a manager over the fake's partition at `isolation` until it has handled
/// `expected` records, then idles `idle`; returns what it handled and the Fetch
/// requests the idle time cost.
fn consume(
    fake: Fake,
    isolation: IsolationLevel,
    expected: usize,
    idle: Duration,
) -> (Vec<i64>, usize, ThreadManager) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = rt.block_on(fake.clone().start());
    let source = RskafkaSource::builder()
        .bootstrap_servers([addr.as_str()])
        .group_id("g")
        .assign([TopicPartition::new(TOPIC, 0)])
        .isolation_level(isolation)
        .fetch_max_wait(Duration::from_millis(200))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let manager = ThreadManager::builder(source)
        .thread_lifetime(None)
        .callback(move |m: &Message| -> Result<(), std::io::Error> {
            s.lock().unwrap().push(m.offset());
            Ok(())
        })
        .build()
        .unwrap();
    manager.start().unwrap();
    let limit = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < expected {
        assert!(
            Instant::now() < limit,
            "only {:?} arrived",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = fake.fetches.load(Ordering::SeqCst);
    std::thread::sleep(idle);
    let idle_fetches = fake.fetches.load(Ordering::SeqCst) - before;
    let handled = seen.lock().unwrap().clone();
    // The runtime serves the fake until the manager is done with it.
    std::mem::forget(rt);
    (handled, idle_fetches, manager)
}

#[test]
fn read_committed_delivers_committed_records_only_and_idles_past_the_trailing_marker() {
    let idle = Duration::from_secs(2);
    let (handled, idle_fetches, manager) =
        consume(Fake::default(), IsolationLevel::ReadCommitted, 5, idle);
    assert_eq!(
        handled,
        [0, 1, 2, 7, 8],
        "aborted records 4 and 5 are dropped"
    );
    // 200 ms long polls: about 10 in 2 s; a consumer stuck refetching the marker would
    // send hundreds.
    assert!(
        idle_fetches <= 15,
        "{idle_fetches} fetches in {idle:?} of idling"
    );
    let stats = manager.stats();
    let p = &stats.partitions[0];
    assert_eq!(p.high_watermark, Some(END), "{p:?}");
    assert_eq!(
        p.lag,
        Some(0),
        "the position reached the high watermark: {p:?}"
    );
    assert!(manager.health().healthy, "{:?}", manager.health());
    let report = manager.stop().unwrap();
    assert_eq!(
        report.committed.get(&TopicPartition::new(TOPIC, 0)),
        Some(END),
        "committed past the trailing marker: {report:?}"
    );
    assert_eq!(report.counts.poll_errors, 0, "{report:?}");
}

#[test]
fn read_uncommitted_delivers_the_aborted_records_too() {
    let (handled, _, manager) = consume(
        Fake::default(),
        IsolationLevel::ReadUncommitted,
        7,
        Duration::from_millis(300),
    );
    assert_eq!(handled, [0, 1, 2, 4, 5, 7, 8], "never a marker");
    manager.stop().unwrap();
}

#[test]
fn a_corrupt_batch_stops_the_manager_failed_naming_where_and_nothing_past_it_is_committed() {
    let fake = Fake {
        corrupt: true,
        ..Fake::default()
    };
    // Nothing is delivered: the response holding the bad batch fails as a whole.
    let (handled, idle_fetches, manager) = consume(
        fake,
        IsolationLevel::ReadCommitted,
        0,
        Duration::from_millis(500),
    );
    let limit = Instant::now() + Duration::from_secs(20);
    while manager.stats().state != ktm_core::State::Failed {
        assert!(Instant::now() < limit, "still {:?}", manager.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = manager.stop().unwrap();
    let ktm_core::StopReason::SourceFailed(why) = &report.reason else {
        panic!("{report:?}");
    };
    let why = why.to_string();
    assert!(
        why.contains("tx [0] at offset 7") && why.contains("checksum"),
        "{why}"
    );
    assert!(handled.is_empty(), "{handled:?}");
    assert!(idle_fetches <= 2, "not retried: {idle_fetches} fetches");
    assert_eq!(
        report.counts.poll_errors, 0,
        "fatal at once, not retried: {report:?}"
    );
    let committed = report.committed.get(&TopicPartition::new(TOPIC, 0));
    assert!(committed.is_none_or(|c| c == 0), "{committed:?}");
}
