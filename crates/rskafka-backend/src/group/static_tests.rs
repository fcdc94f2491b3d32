//! Static membership (KIP-345, `group.instance.id`), client side, against a fake
//! in-process coordinator: no broker available to the tests serves static membership
//! (librdkafka's mock cluster lacks it, Tansu 0.6's is broken).
//!
//! The fake answers what rskafka's `ClientBuilder::build` sends (ApiVersions, Metadata)
//! and the group requests (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), recording each. It names another member as the leader, so the member
//! under test is a follower and never needs topic metadata, and it answers SyncGroup
//! with a fixed assignment. Like Kafka, it keeps the generation when a known static
//! member rejoins with an empty member id (giving it a new member id), and fences
//! (FENCED_INSTANCE_ID) requests of an instance under a member id that is not the
//! instance's current one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, MetadataRequest, MetadataResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;
use ktm_core::TopicPartition;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::control::{CommitIdentity, ControlClient};
use super::coordinator::GroupSettings;
use super::membership::{GroupEvent, GroupHandle};
use super::protocol::encode_assignment;
use super::Assignor;
use crate::wire::fake::{api_versions, read_request, respond};
use crate::wire::transport::Security;

/// The generation the fake group stays at.
const GENERATION: i32 = 7;
/// The member the fake names as leader: never the member under test.
const LEADER: &str = "the-leader-elsewhere";
const INSTANCE: &str = "instance-1";
/// Generous bound for anything the member does on its own.
const PATIENCE: Duration = Duration::from_secs(10);

/// What the fake serves: the group requests at the versions of Kafka 2.3 (the first
/// with static membership) that this crate speaks, and what rskafka's client needs.
const SERVED: [(ApiKey, i16, i16); 9] = [
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 0, 4),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 3),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 2),
    (ApiKey::OffsetCommit, 0, 8),
    (ApiKey::OffsetFetch, 0, 7),
];

/// One request the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    api: ApiKey,
    version: i16,
    /// The member id the request named (empty when none).
    member_id: String,
    instance_id: Option<String>,
}

impl Seen {
    fn new(api: ApiKey, version: i16, member_id: &StrBytes, instance: Option<&StrBytes>) -> Self {
        Self {
            api,
            version,
            member_id: member_id.to_string(),
            instance_id: instance.map(ToString::to_string),
        }
    }
}

#[derive(Default)]
struct Group {
    /// Static instance id -> the member id it holds now.
    instances: BTreeMap<String, String>,
    next_member: u32,
    /// Answer every Heartbeat with this error.
    heartbeat_error: Option<ResponseError>,
    seen: Vec<Seen>,
}

impl Group {
    fn new_member_id(&mut self, prefix: &str) -> String {
        self.next_member += 1;
        format!("{prefix}-{}", self.next_member)
    }

    /// Whether a request from `member` of `instance` is fenced: the instance is held
    /// by another member id now.
    fn fenced(&self, instance: Option<&StrBytes>, member: &StrBytes) -> bool {
        instance.is_some_and(|i| {
            self.instances.get(i.as_str()).map(String::as_str) != Some(member.as_str())
        })
    }
}

/// The fake coordinator.
#[derive(Clone)]
struct Coordinator {
    /// What SyncGroup gives the member.
    assignment: BTreeMap<String, Vec<i32>>,
    group: Arc<Mutex<Group>>,
}

impl Coordinator {
    fn new() -> Self {
        Self {
            assignment: BTreeMap::from([("t".to_owned(), vec![0, 2])]),
            group: Arc::default(),
        }
    }

    fn answer_heartbeats_with(&self, error: ResponseError) {
        self.group.lock().unwrap().heartbeat_error = Some(error);
    }

    /// The group requests seen so far (not ApiVersions, Metadata, FindCoordinator).
    fn seen(&self) -> Vec<Seen> {
        self.group.lock().unwrap().seen.clone()
    }

    fn count(&self, api: ApiKey) -> usize {
        self.seen().iter().filter(|s| s.api == api).count()
    }

    /// Waits until `n` Heartbeats from `member_id` were seen.
    async fn await_heartbeats(&self, member_id: &str, n: usize) {
        tokio::time::timeout(PATIENCE, async {
            while self
                .seen()
                .iter()
                .filter(|s| s.api == ApiKey::Heartbeat && s.member_id == member_id)
                .count()
                < n
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} heartbeats of {member_id}; seen {:?}", self.seen()));
    }

    /// Listens on a free port and serves every connection; returns its address.
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (me, fake) = (addr.clone(), self.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(fake.clone().serve(stream, me.clone()));
            }
        });
        addr
    }

    async fn serve(self, mut stream: TcpStream, me: String) {
        let (host, port) = me.rsplit_once(':').unwrap();
        let (host, port): (String, i32) = (host.to_owned(), port.parse().unwrap());
        while let Some((header, mut buf)) = read_request(&mut stream).await {
            let v = header.request_api_version;
            let c = header.correlation_id;
            let mut out = BytesMut::new();
            match ApiKey::try_from(header.request_api_key).unwrap() {
                ApiKey::ApiVersions => {
                    // v0 from this crate's connections, v3 from rskafka's.
                    let _ = ApiVersionsRequest::decode(&mut buf, v).unwrap();
                    respond(&mut out, c, &api_versions(&SERVED), v);
                }
                ApiKey::Metadata => {
                    // The leader asks for its topics' partition counts.
                    let _ = MetadataRequest::decode(&mut buf, v).unwrap();
                    let resp = MetadataResponse::default()
                        .with_brokers(vec![MetadataResponseBroker::default()
                            .with_node_id(BrokerId(0))
                            .with_host(StrBytes::from_string(host.clone()))
                            .with_port(port)])
                        .with_controller_id(BrokerId(0));
                    respond(&mut out, c, &resp, v);
                }
                ApiKey::FindCoordinator => {
                    let _ = FindCoordinatorRequest::decode(&mut buf, v).unwrap();
                    let resp = FindCoordinatorResponse::default()
                        .with_node_id(BrokerId(0))
                        .with_host(StrBytes::from_string(host.clone()))
                        .with_port(port);
                    respond(&mut out, c, &resp, v);
                }
                ApiKey::JoinGroup => {
                    let req = JoinGroupRequest::decode(&mut buf, v).unwrap();
                    respond(&mut out, c, &self.join(&req, v), v);
                }
                ApiKey::SyncGroup => {
                    let req = SyncGroupRequest::decode(&mut buf, v).unwrap();
                    let instance = req.group_instance_id.as_ref();
                    let mut group = self.group.lock().unwrap();
                    group
                        .seen
                        .push(Seen::new(ApiKey::SyncGroup, v, &req.member_id, instance));
                    let resp = if group.fenced(instance, &req.member_id) {
                        SyncGroupResponse::default()
                            .with_error_code(ResponseError::FencedInstanceId.code())
                    } else {
                        SyncGroupResponse::default()
                            .with_assignment(encode_assignment(&self.assignment).unwrap())
                    };
                    drop(group);
                    respond(&mut out, c, &resp, v);
                }
                ApiKey::Heartbeat => {
                    let req = HeartbeatRequest::decode(&mut buf, v).unwrap();
                    let instance = req.group_instance_id.as_ref();
                    let mut group = self.group.lock().unwrap();
                    group
                        .seen
                        .push(Seen::new(ApiKey::Heartbeat, v, &req.member_id, instance));
                    let error = group.heartbeat_error.or_else(|| {
                        group
                            .fenced(instance, &req.member_id)
                            .then_some(ResponseError::FencedInstanceId)
                    });
                    drop(group);
                    let resp =
                        HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()));
                    respond(&mut out, c, &resp, v);
                }
                ApiKey::LeaveGroup => {
                    // Up to v2 the member is named at the top level, without an instance.
                    let req = LeaveGroupRequest::decode(&mut buf, v).unwrap();
                    self.group.lock().unwrap().seen.push(Seen::new(
                        ApiKey::LeaveGroup,
                        v,
                        &req.member_id,
                        None,
                    ));
                    respond(&mut out, c, &LeaveGroupResponse::default(), v);
                }
                other => panic!("the fake coordinator does not serve {other:?}"),
            }
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    /// Kafka's JoinGroup for a stable group: a dynamic member with no id is given one
    /// to rejoin with (MEMBER_ID_REQUIRED, v4+); a static member with no id is given a
    /// new one at once, replacing the instance's old member, with the generation kept.
    fn join(&self, req: &JoinGroupRequest, v: i16) -> JoinGroupResponse {
        let instance = req.group_instance_id.as_ref();
        let mut group = self.group.lock().unwrap();
        group
            .seen
            .push(Seen::new(ApiKey::JoinGroup, v, &req.member_id, instance));
        let protocol = req.protocols.first().map(|p| p.name.clone());
        let answer = |error: Option<ResponseError>, member_id: String| {
            JoinGroupResponse::default()
                .with_error_code(error.map_or(0, |e| e.code()))
                .with_generation_id(if error.is_some() { -1 } else { GENERATION })
                .with_protocol_name(protocol.clone().or(Some(StrBytes::default())))
                .with_leader(StrBytes::from_static_str(LEADER))
                .with_member_id(StrBytes::from_string(member_id))
        };
        match instance {
            Some(instance) if req.member_id.is_empty() => {
                let id = group.new_member_id(instance.as_str());
                group.instances.insert(instance.to_string(), id.clone());
                answer(None, id)
            }
            Some(_) if group.fenced(instance, &req.member_id) => answer(
                Some(ResponseError::FencedInstanceId),
                req.member_id.to_string(),
            ),
            None if req.member_id.is_empty() && v >= 4 => {
                let id = group.new_member_id("dynamic");
                answer(Some(ResponseError::MemberIdRequired), id)
            }
            _ => answer(None, req.member_id.to_string()),
        }
    }
}

fn settings(addr: &str, instance: Option<&str>) -> Arc<GroupSettings> {
    Arc::new(GroupSettings {
        bootstrap: vec![addr.to_owned()],
        group_id: "g".into(),
        client_id: "ktm-test".into(),
        topics: vec!["t".into()],
        assignor: Assignor::Range,
        session_timeout: Duration::from_secs(6),
        heartbeat_interval: Duration::from_millis(50),
        rebalance_timeout: Duration::from_secs(30),
        group_instance_id: instance.map(str::to_owned),
        connect_timeout: Duration::from_secs(5),
        metadata_max_age: Duration::from_secs(300),
        security: Security::default(),
    })
}

/// A member task of `settings`, with a control client of its own against the fake
/// (the member uses it for Metadata when it leads).
async fn spawn(_addr: &str, settings: Arc<GroupSettings>) -> GroupHandle {
    let control = Arc::new(tokio::sync::Mutex::new(ControlClient::new(Arc::clone(
        &settings,
    ))));
    GroupHandle::spawn(&tokio::runtime::Handle::current(), settings, control)
}

async fn next_event(handle: &mut GroupHandle) -> Option<GroupEvent> {
    tokio::time::timeout(PATIENCE, handle.next_event())
        .await
        .expect("a group event")
}

/// The next event, which must be an assignment.
async fn assigned(handle: &mut GroupHandle) -> (CommitIdentity, Vec<TopicPartition>) {
    match next_event(handle).await {
        Some(GroupEvent::Assigned {
            identity,
            partitions,
            done,
        }) => {
            assert!(
                done.is_none(),
                "an eager member's first assignment revokes nothing"
            );
            (identity, partitions)
        }
        other => panic!("expected an assignment, got {other:?}"),
    }
}

/// No event comes within a few heartbeats.
async fn assert_quiet(handle: &mut GroupHandle) {
    if let Ok(event) = tokio::time::timeout(Duration::from_millis(300), handle.next_event()).await {
        panic!("expected no event, got {event:?}");
    }
}

fn the_assignment() -> Vec<TopicPartition> {
    vec![TopicPartition::new("t", 0), TopicPartition::new("t", 2)]
}

fn seen(api: ApiKey, version: i16, member_id: &str, instance: Option<&str>) -> Seen {
    Seen {
        api,
        version,
        member_id: member_id.to_owned(),
        instance_id: instance.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_static_member_names_its_instance_in_join_sync_and_heartbeats() {
    let fake = Coordinator::new();
    let addr = fake.start().await;
    let mut member = spawn(&addr, settings(&addr, Some(INSTANCE))).await;

    let (identity, partitions) = assigned(&mut member).await;
    let member_id = format!("{INSTANCE}-1");
    assert_eq!(
        identity,
        CommitIdentity {
            generation: GENERATION,
            member_id: member_id.clone()
        }
    );
    assert_eq!(partitions, the_assignment());
    assert!(member.may_commit_as(&identity));

    fake.await_heartbeats(&member_id, 3).await;
    let seen_now = fake.seen();
    // A static member is given its id at once: no MEMBER_ID_REQUIRED round.
    assert_eq!(
        seen_now[..5],
        [
            seen(ApiKey::JoinGroup, 5, "", Some(INSTANCE)),
            seen(ApiKey::SyncGroup, 3, &member_id, Some(INSTANCE)),
            seen(ApiKey::Heartbeat, 4, &member_id, Some(INSTANCE)),
            seen(ApiKey::Heartbeat, 4, &member_id, Some(INSTANCE)),
            seen(ApiKey::Heartbeat, 4, &member_id, Some(INSTANCE)),
        ]
    );
    assert!(
        seen_now[5..]
            .iter()
            .all(|s| *s == seen(ApiKey::Heartbeat, 4, &member_id, Some(INSTANCE))),
        "{seen_now:?}"
    );
    assert_quiet(&mut member).await;
}

#[tokio::test]
async fn leaving_sends_leave_group_for_a_dynamic_member_only() {
    // Static: the session is left to expire, so that the instance can come back.
    let fake = Coordinator::new();
    let addr = fake.start().await;
    let mut member = spawn(&addr, settings(&addr, Some(INSTANCE))).await;
    let (identity, _) = assigned(&mut member).await;
    fake.await_heartbeats(&identity.member_id, 1).await;
    member.leave().await;
    assert!(!member.may_commit_as(&identity));
    assert!(member.next_event().await.is_none(), "the task ended");
    let seen_static = fake.seen();
    assert_eq!(fake.count(ApiKey::LeaveGroup), 0, "{seen_static:?}");
    assert_eq!(fake.count(ApiKey::JoinGroup), 1, "{seen_static:?}");

    // Dynamic: the same steps do leave, under the member id the coordinator gave.
    let fake = Coordinator::new();
    let addr = fake.start().await;
    let mut member = spawn(&addr, settings(&addr, None)).await;
    let (identity, partitions) = assigned(&mut member).await;
    assert_eq!(identity.member_id, "dynamic-1");
    assert_eq!(partitions, the_assignment());
    fake.await_heartbeats(&identity.member_id, 1).await;
    member.leave().await;
    assert!(member.next_event().await.is_none(), "the task ended");
    let seen_dynamic = fake.seen();
    assert_eq!(
        seen_dynamic[..3],
        [
            seen(ApiKey::JoinGroup, 5, "", None),
            seen(ApiKey::JoinGroup, 5, "dynamic-1", None),
            seen(ApiKey::SyncGroup, 3, "dynamic-1", None),
        ]
    );
    assert_eq!(
        seen_dynamic.last(),
        Some(&seen(ApiKey::LeaveGroup, 2, "dynamic-1", None)),
        "{seen_dynamic:?}"
    );
    assert_eq!(fake.count(ApiKey::LeaveGroup), 1, "{seen_dynamic:?}");
}

#[tokio::test]
async fn a_poll_timeout_sends_leave_group_for_a_dynamic_member_only() {
    for (instance, leaves) in [(Some(INSTANCE), 0), (None, 1)] {
        let fake = Coordinator::new();
        let addr = fake.start().await;
        let mut s = (*settings(&addr, instance)).clone();
        s.rebalance_timeout = Duration::from_millis(500);
        let mut member = spawn(&addr, Arc::new(s)).await;
        // The consumer thread never polls: once max.poll.interval has passed, the
        // partitions are lost.
        assigned(&mut member).await;
        match next_event(&mut member).await {
            Some(GroupEvent::Lost) => {}
            other => panic!("expected Lost, got {other:?}"),
        }
        let seen_now = fake.seen();
        assert_eq!(
            fake.count(ApiKey::LeaveGroup),
            leaves,
            "{instance:?}: {seen_now:?}"
        );
        assert_eq!(fake.count(ApiKey::JoinGroup), 1 + leaves, "{seen_now:?}");
    }
}

#[tokio::test]
async fn a_restarted_static_member_gets_its_assignment_back_in_the_same_generation() {
    let fake = Coordinator::new();
    let addr = fake.start().await;
    let s = settings(&addr, Some(INSTANCE));

    let mut first = spawn(&addr, Arc::clone(&s)).await;
    let (first_identity, first_partitions) = assigned(&mut first).await;
    fake.await_heartbeats(&first_identity.member_id, 1).await;
    first.leave().await;
    let before_restart = fake.seen().len();

    // The same process settings, a new process: no member id, the same instance id.
    let mut second = spawn(&addr, Arc::clone(&s)).await;
    let (identity, partitions) = assigned(&mut second).await;
    assert_eq!(
        identity,
        CommitIdentity {
            generation: first_identity.generation,
            member_id: format!("{INSTANCE}-2"),
        }
    );
    assert_eq!(partitions, first_partitions);
    assert_eq!(partitions, the_assignment());
    fake.await_heartbeats(&identity.member_id, 3).await;
    // Nothing lost, revoked or failed: the member just goes on with that assignment.
    assert_quiet(&mut second).await;

    let after = &fake.seen()[before_restart..];
    assert_eq!(
        after[..3],
        [
            seen(ApiKey::JoinGroup, 5, "", Some(INSTANCE)),
            seen(ApiKey::SyncGroup, 3, &identity.member_id, Some(INSTANCE)),
            seen(ApiKey::Heartbeat, 4, &identity.member_id, Some(INSTANCE)),
        ]
    );
    assert!(
        after[3..]
            .iter()
            .all(|s| *s == seen(ApiKey::Heartbeat, 4, &identity.member_id, Some(INSTANCE))),
        "{after:?}"
    );
    assert_eq!(fake.count(ApiKey::LeaveGroup), 0);
}

/// The member ends after a fatal heartbeat failure: one Failed event, then nothing.
async fn assert_fenced_for_good(member: &mut GroupHandle, identity: &CommitIdentity) {
    match next_event(member).await {
        Some(GroupEvent::Failed(e)) => {
            assert!(!e.is_transient(), "{e:?}");
            assert!(format!("{e:?}").contains("FencedInstanceId"), "{e:?}");
        }
        other => panic!("expected a fatal failure, got {other:?}"),
    }
    assert!(next_event(member).await.is_none(), "the task ended");
    assert!(!member.may_commit_as(identity));
}

#[tokio::test]
async fn fenced_instance_id_on_a_heartbeat_is_fatal() {
    let fake = Coordinator::new();
    fake.answer_heartbeats_with(ResponseError::FencedInstanceId);
    let addr = fake.start().await;
    let mut member = spawn(&addr, settings(&addr, Some(INSTANCE))).await;
    let (identity, _) = assigned(&mut member).await;
    assert_fenced_for_good(&mut member, &identity).await;
    // Not retried: one heartbeat, no rejoin, and no leave.
    let seen_now = fake.seen();
    assert_eq!(fake.count(ApiKey::Heartbeat), 1, "{seen_now:?}");
    assert_eq!(fake.count(ApiKey::JoinGroup), 1, "{seen_now:?}");
    assert_eq!(fake.count(ApiKey::LeaveGroup), 0, "{seen_now:?}");
}

#[tokio::test]
async fn a_second_process_with_the_same_instance_id_fences_the_first() {
    let fake = Coordinator::new();
    let addr = fake.start().await;
    let s = settings(&addr, Some(INSTANCE));
    let mut first = spawn(&addr, Arc::clone(&s)).await;
    let (first_identity, _) = assigned(&mut first).await;
    fake.await_heartbeats(&first_identity.member_id, 1).await;

    // The instance id is taken over while the first process still runs.
    let mut second = spawn(&addr, Arc::clone(&s)).await;
    let (second_identity, partitions) = assigned(&mut second).await;
    assert_eq!(partitions, the_assignment());

    assert_fenced_for_good(&mut first, &first_identity).await;
    fake.await_heartbeats(&second_identity.member_id, 3).await;
    assert_quiet(&mut second).await;
    let first_joins = fake
        .seen()
        .iter()
        .filter(|s| s.api == ApiKey::JoinGroup && s.member_id == first_identity.member_id)
        .count();
    assert_eq!(first_joins, 0, "the fenced member never rejoined");
    assert_eq!(fake.count(ApiKey::LeaveGroup), 0);
}
