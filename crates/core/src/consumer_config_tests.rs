//! The shared consumer settings' rules, each with its typed error.

use super::*;

fn base() -> ConsumerConfigBuilder {
    ConsumerConfig::builder()
        .bootstrap_servers(["127.0.0.1:9092"])
        .topics(["t"])
        .group_id("g")
}

#[test]
fn group_instance_ids_follow_the_topic_name_rules() {
    let c = base().group_instance_id("pod-7").build().unwrap();
    assert_eq!(c.group_instance_id.as_deref(), Some("pod-7"));
    assert_eq!(base().build().unwrap().group_instance_id, None);
    for id in ["", "pod 7", ".."] {
        assert!(
            matches!(
                base().group_instance_id(id).build(),
                Err(ConfigError::InvalidGroupInstanceId { .. })
            ),
            "{id:?}"
        );
    }
}

#[test]
fn every_rule_has_its_typed_error() {
    assert_eq!(
        base().bootstrap_servers(Vec::<String>::new()).build(),
        Err(ConfigError::NoBootstrapServers)
    );
    for (addr, reason) in [
        ("localhost", "no ':port'"),
        (":9092", "empty host"),
        ("h:0", "port 0"),
        ("h:99999", "port is not a number from 1 to 65535"),
    ] {
        let e = base().bootstrap_servers([addr]).build().unwrap_err();
        assert_eq!(
            e,
            ConfigError::InvalidBootstrapAddress {
                address: addr.into(),
                reason
            }
        );
    }
    assert_eq!(
        base().topics(Vec::<String>::new()).build(),
        Err(ConfigError::NoTopics)
    );
    let long = "a".repeat(250);
    for name in ["", "bad name", "..", long.as_str(), "caf\u{e9}"] {
        let e = base().topics([name]).build().unwrap_err();
        assert!(
            matches!(e, ConfigError::InvalidTopicName { .. }),
            "{name:?}: {e}"
        );
    }
    assert!(base().topics(["a".repeat(249)]).build().is_ok());
    assert_eq!(base().group_id("").build(), Err(ConfigError::EmptyGroupId));
    let e = base()
        .session_timeout(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_secs(3))
        .build()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "heartbeat interval 3s must be below the session timeout 3s"
    );
    assert_eq!(
        base().fetch_max_bytes(0).build(),
        Err(ConfigError::InvalidSize {
            which: "fetch.max.bytes",
            value: 0,
            max: i64::from(i32::MAX)
        })
    );
    assert_eq!(
        base().assign([TopicPartition::new("t", -1)]).build(),
        Err(ConfigError::InvalidPartition {
            topic: "t".into(),
            partition: -1
        })
    );
    assert_eq!(
        base().max_poll_interval(Duration::ZERO).build(),
        Err(ConfigError::ZeroDuration {
            which: "max poll interval"
        })
    );
}

#[test]
fn isolation_level_defaults_to_read_committed_as_librdkafka() {
    assert_eq!(
        base().build().unwrap().isolation_level,
        IsolationLevel::ReadCommitted
    );
    assert_eq!(IsolationLevel::default(), IsolationLevel::ReadCommitted);
    let c = base()
        .isolation_level(IsolationLevel::ReadUncommitted)
        .build()
        .unwrap();
    assert_eq!(c.isolation_level, IsolationLevel::ReadUncommitted);
    assert_eq!(IsolationLevel::ReadCommitted.as_str(), "read_committed");
    assert_eq!(
        IsolationLevel::ReadUncommitted.to_string(),
        "read_uncommitted"
    );
}

#[test]
fn bootstrap_lists_are_split_into_one_address_each() {
    let c = base()
        .bootstrap_servers(["host1:9092,host2:9092", " host3:9092 ", ",,"])
        .build()
        .unwrap();
    assert_eq!(
        c.bootstrap_servers,
        ["host1:9092", "host2:9092", "host3:9092"]
    );
    let c = base().bootstrap_servers(["[::1]:9092"]).build().unwrap();
    assert_eq!(c.bootstrap_servers, ["[::1]:9092"]);
    assert_eq!(
        base().bootstrap_servers([" , "]).build(),
        Err(ConfigError::NoBootstrapServers)
    );
    assert_eq!(
        base().bootstrap_servers(["ok:1,::1:9092"]).build(),
        Err(ConfigError::InvalidBootstrapAddress {
            address: "::1:9092".into(),
            reason: "an IPv6 host goes in brackets, as [::1]:9092"
        })
    );
}
