#![allow(clippy::unwrap_used)]
mod support;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use std::collections::BTreeMap;
use support::{record, KafkaBroker};
#[test]
fn probe() {
    let b = KafkaBroker::any("probe").unwrap();
    let topic = format!("probe{}", std::process::id());
    b.create_topic(&topic, 1);
    for i in 0..5 {
        b.produce(
            &topic,
            0,
            vec![record(
                None,
                Some(format!("v{i}").into_bytes()),
                BTreeMap::new(),
            )],
            Compression::NoCompression,
        );
    }
    b.block_on(async {
        let c = rskafka::client::ClientBuilder::new(vec![b.bootstrap.clone()])
            .build()
            .await
            .unwrap();
        let pc = c
            .partition_client(topic.clone(), 0, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        println!(
            "latest {:?} earliest {:?}",
            pc.get_offset(OffsetAt::Latest).await,
            pc.get_offset(OffsetAt::Earliest).await
        );
        for off in [1i64, 4, 5] {
            let (recs, hw) = pc.fetch_records(off, 1..100_000, 100).await.unwrap();
            println!(
                "before: fetch at {off}: hw {hw}, {:?}",
                recs.iter()
                    .map(|r| (
                        r.offset,
                        String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default())
                            .to_string()
                    ))
                    .collect::<Vec<_>>()
            );
        }
    });
    b.produce(
        &topic,
        0,
        vec![record(None, Some(b"after".to_vec()), BTreeMap::new())],
        Compression::NoCompression,
    );
    b.block_on(async {
        let c = rskafka::client::ClientBuilder::new(vec![b.bootstrap.clone()])
            .build()
            .await
            .unwrap();
        let pc = c
            .partition_client(topic.clone(), 0, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        println!("latest {:?}", pc.get_offset(OffsetAt::Latest).await);
        for off in [1i64, 5] {
            let (recs, hw) = pc.fetch_records(off, 1..100_000, 100).await.unwrap();
            println!(
                "after: fetch at {off}: hw {hw}, {:?}",
                recs.iter()
                    .map(|r| (
                        r.offset,
                        String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default())
                            .to_string()
                    ))
                    .collect::<Vec<_>>()
            );
        }
    });
}
