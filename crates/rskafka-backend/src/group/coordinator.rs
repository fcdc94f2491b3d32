//! Finding the group coordinator and connecting to it; the errors of group requests.

use std::time::Duration;

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ktm_core::SourceError;
use tracing::debug;

use super::Assignor;
use crate::wire::conn::{Conn, ConnError};
use crate::wire::transport::Security;

/// What the group connections need to know.
#[derive(Clone, Debug)]
pub(crate) struct GroupSettings {
    pub(crate) bootstrap: Vec<String>,
    pub(crate) group_id: String,
    pub(crate) client_id: String,
    pub(crate) topics: Vec<String>,
    pub(crate) assignor: Assignor,
    pub(crate) session_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    /// `max.poll.interval.ms`: the rebalance timeout, and how long the consumer thread
    /// may go without polling before the member leaves the group.
    pub(crate) rebalance_timeout: Duration,
    /// `group.instance.id`: a static member when set.
    pub(crate) group_instance_id: Option<String>,
    pub(crate) connect_timeout: Duration,
    /// How often the leader re-reads the subscribed topics' metadata.
    pub(crate) metadata_max_age: Duration,
    /// SASL and TLS, as for rskafka's connections.
    pub(crate) security: Security,
}

/// A failed group request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GroupError {
    /// The connection failed; reconnect (and rediscover the coordinator).
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The broker answered with an error code.
    #[error("{request} failed: {error:?}")]
    Broker {
        request: &'static str,
        error: ResponseError,
    },
    /// The answer made no sense.
    #[error("{0}")]
    Invalid(String),
    /// The coordinator answered a rejoin with the generation the member held (or whose
    /// sync it refused) before the rebalance: Kafka always moves the generation on.
    #[error("the coordinator kept generation {generation} across a rebalance")]
    KeptGeneration { generation: i32 },
    /// `group.instance.id` is set, and the coordinator is too old for it.
    #[error("static membership (group.instance.id) needs JoinGroup v5 and SyncGroup v3 (Kafka 2.3 or later); the coordinator serves v{join_version} and v{sync_version}")]
    StaticMembershipUnsupported {
        join_version: i16,
        sync_version: i16,
    },
}

impl GroupError {
    pub(crate) fn code(&self) -> Option<ResponseError> {
        match self {
            GroupError::Broker { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// Whether the coordinator connection should be dropped and rediscovered.
    pub(crate) fn needs_rediscovery(&self) -> bool {
        match self {
            GroupError::Conn(_) | GroupError::Invalid(_) => true,
            GroupError::StaticMembershipUnsupported { .. } | GroupError::KeptGeneration { .. } => {
                false
            }
            GroupError::Broker { error, .. } => matches!(
                error,
                ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::CoordinatorLoadInProgress
            ),
        }
    }

    /// Whether retrying cannot help, as in every Kafka client: authentication or
    /// authorization failed, the group or the member's settings are refused, the
    /// member's static instance id is taken by another member, or the broker speaks
    /// no version we do.
    pub(crate) fn is_fatal(&self) -> bool {
        match self {
            GroupError::Conn(e) => e.is_fatal(),
            GroupError::StaticMembershipUnsupported { .. } => true,
            GroupError::KeptGeneration { .. } => false,
            _ => matches!(
                self.code(),
                Some(
                    ResponseError::GroupAuthorizationFailed
                        | ResponseError::TopicAuthorizationFailed
                        | ResponseError::ClusterAuthorizationFailed
                        | ResponseError::InvalidGroupId
                        | ResponseError::SaslAuthenticationFailed
                        | ResponseError::UnsupportedSaslMechanism
                        | ResponseError::InconsistentGroupProtocol
                        | ResponseError::InvalidSessionTimeout
                        | ResponseError::GroupMaxSizeReached
                        | ResponseError::UnsupportedVersion
                        | ResponseError::FencedInstanceId
                )
            ),
        }
    }

    /// As a source error: fatal when [`is_fatal`](Self::is_fatal).
    pub(crate) fn into_source_error(self, context: &str) -> SourceError {
        crate::source_error(self.is_fatal(), format!("{context}: {self}")).with_source(self)
    }
}

/// Checks a response's error code.
pub(crate) fn check(request: &'static str, code: i16) -> Result<(), GroupError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(GroupError::Broker { request, error }),
    }
}

/// Asks the bootstrap brokers, in turn, for the group's coordinator and connects to it.
pub(crate) async fn connect_coordinator(s: &GroupSettings) -> Result<Conn, GroupError> {
    let mut last = None;
    for addr in &s.bootstrap {
        match find_on(addr, s).await {
            Ok(conn) => return Ok(conn),
            // The same credentials and TLS settings hold for every broker.
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                debug!(broker = %addr, error = %e, "FindCoordinator failed");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| GroupError::Invalid("no bootstrap servers".into())))
}

async fn find_on(addr: &str, s: &GroupSettings) -> Result<Conn, GroupError> {
    let mut conn = Conn::connect(addr, &s.client_id, &s.security, s.connect_timeout).await?;
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(s.group_id.clone()))
        .with_key_type(0);
    let response = conn.send(&request).await?;
    check("FindCoordinator", response.error_code)?;
    let port = u16::try_from(response.port)
        .map_err(|_| GroupError::Invalid(format!("coordinator port {}", response.port)))?;
    let coordinator = format!("{}:{port}", response.host.as_str());
    debug!(group = %s.group_id, %coordinator, "found the group coordinator");
    if coordinator == conn.addr() {
        return Ok(conn);
    }
    Ok(Conn::connect(&coordinator, &s.client_id, &s.security, s.connect_timeout).await?)
}
