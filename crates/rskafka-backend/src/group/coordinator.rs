//! Finding the group coordinator and connecting to it; the errors of group requests.

use std::time::Duration;

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ktm_core::SourceError;
use tracing::debug;

use super::conn::{Conn, ConnError};
use super::transport::Security;
use super::Assignor;
use crate::BACKEND;

/// FindCoordinator v2: the last version before flexible encoding, with `key_type`.
const FIND_COORDINATOR_VERSION: i16 = 2;

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
    pub(crate) rebalance_timeout: Duration,
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
            GroupError::Broker { error, .. } => matches!(
                error,
                ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::CoordinatorLoadInProgress
            ),
        }
    }

    /// Whether retrying cannot help: authentication or authorization failed, or the
    /// group id is invalid.
    pub(crate) fn is_fatal(&self) -> bool {
        match self {
            GroupError::Conn(e) => e.is_fatal(),
            _ => matches!(
                self.code(),
                Some(
                    ResponseError::GroupAuthorizationFailed
                        | ResponseError::TopicAuthorizationFailed
                        | ResponseError::InvalidGroupId
                        | ResponseError::SaslAuthenticationFailed
                )
            ),
        }
    }

    /// As a source error: fatal when [`is_fatal`](Self::is_fatal).
    pub(crate) fn into_source_error(self, context: &str) -> SourceError {
        let fatal = self.is_fatal();
        let message = format!("{context}: {self}");
        let e = if fatal {
            SourceError::fatal(BACKEND, message)
        } else {
            SourceError::transient(BACKEND, message)
        };
        e.with_source(self)
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
    let response = conn.send(&request, FIND_COORDINATOR_VERSION).await?;
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
