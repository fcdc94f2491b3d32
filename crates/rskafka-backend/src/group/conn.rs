//! One Kafka protocol connection to one broker: length-prefixed frames, one request in
//! flight at a time, encoded and decoded with `kafka-protocol`, over TCP or TLS and
//! authenticated with SASL when so configured.

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::sasl;
use super::transport::{self, BoxStream, Security};
use crate::auth::AuthError;

/// The largest response frame accepted (Kafka's default `socket.request.max.bytes`).
const MAX_FRAME: i32 = 100 * 1024 * 1024;

/// Why a request on a [`Conn`] failed. Any of these means the connection is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// Connecting, writing or reading failed.
    #[error("I/O error talking to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The broker did not answer in time.
    #[error("{addr} did not answer within {after:?}")]
    Timeout { addr: String, after: Duration },
    /// A frame could not be encoded or decoded.
    #[error("protocol error with {addr}: {message}")]
    Protocol { addr: String, message: String },
    /// SASL authentication failed: fatal.
    #[error("authenticating to {addr}: {source}")]
    Auth {
        addr: String,
        #[source]
        source: AuthError,
    },
    /// The TLS handshake failed (fatal when the broker's certificate or name is
    /// refused).
    #[cfg(feature = "tls")]
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl ConnError {
    /// Whether retrying cannot help: authentication was refused, or the broker's TLS
    /// certificate (or our TLS settings) were.
    pub(crate) fn is_fatal(&self) -> bool {
        match self {
            ConnError::Auth { .. } => true,
            #[cfg(feature = "tls")]
            ConnError::Tls { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            ),
            _ => false,
        }
    }
}

/// A request type, with its API key and response type (`kafka-protocol` only provides
/// this mapping when its `broker` feature is on too).
pub(crate) trait KafkaRequest: Encodable + HeaderVersion {
    const KEY: ApiKey;
    type Response: Decodable + HeaderVersion;
}

macro_rules! requests {
    ($($req:ty => $resp:ty, $key:ident;)*) => {$(
        impl KafkaRequest for $req {
            const KEY: ApiKey = ApiKey::$key;
            type Response = $resp;
        }
    )*};
}

requests! {
    FindCoordinatorRequest => FindCoordinatorResponse, FindCoordinator;
    JoinGroupRequest => JoinGroupResponse, JoinGroup;
    SyncGroupRequest => SyncGroupResponse, SyncGroup;
    HeartbeatRequest => HeartbeatResponse, Heartbeat;
    LeaveGroupRequest => LeaveGroupResponse, LeaveGroup;
    OffsetCommitRequest => OffsetCommitResponse, OffsetCommit;
    OffsetFetchRequest => OffsetFetchResponse, OffsetFetch;
    SaslHandshakeRequest => SaslHandshakeResponse, SaslHandshake;
    SaslAuthenticateRequest => SaslAuthenticateResponse, SaslAuthenticate;
}

/// A connection to one broker.
pub(crate) struct Conn {
    stream: BoxStream,
    addr: String,
    client_id: StrBytes,
    next_correlation: i32,
    request_timeout: Duration,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.addr)
            .field("client_id", &self.client_id)
            .field("next_correlation", &self.next_correlation)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Connects to `addr` (`host:port`) within `timeout` (TLS handshake included, and
    /// each SASL request within `timeout` too), then authenticates if configured.
    pub(crate) async fn connect(
        addr: &str,
        client_id: &str,
        security: &Security,
        timeout: Duration,
    ) -> Result<Self, ConnError> {
        let stream = transport::open(addr, security, timeout).await?;
        let mut conn = Self {
            stream,
            addr: addr.to_owned(),
            client_id: StrBytes::from_string(client_id.to_owned()),
            next_correlation: 1,
            request_timeout: timeout,
        };
        if let Some(credentials) = &security.sasl {
            sasl::authenticate(&mut conn, credentials).await?;
        }
        Ok(conn)
    }

    /// The broker's address.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Sets how long a request may wait for its answer (a JoinGroup may take as long as
    /// the rebalance timeout).
    pub(crate) fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    /// Sends `request` at `version` and waits for its response. Not cancel-safe: drop
    /// the connection if the future is dropped half-way.
    pub(crate) async fn send<R: KafkaRequest>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ConnError> {
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, self.round_trip(request, version)).await {
            Ok(r) => r,
            Err(_) => Err(ConnError::Timeout {
                addr: self.addr.clone(),
                after: timeout,
            }),
        }
    }

    async fn round_trip<R: KafkaRequest>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ConnError> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = self.encode(request, version, correlation)?;
        let io = |addr: &str| {
            let addr = addr.to_owned();
            move |source| ConnError::Io { addr, source }
        };
        self.stream
            .write_all(&frame)
            .await
            .map_err(io(&self.addr))?;
        self.stream.flush().await.map_err(io(&self.addr))?;
        let len = self.stream.read_i32().await.map_err(io(&self.addr))?;
        if !(0..=MAX_FRAME).contains(&len) {
            return Err(self.protocol(format!("bad frame length {len}")));
        }
        let len = usize::try_from(len).map_err(|e| self.protocol(e.to_string()))?;
        let mut body = vec![0_u8; len];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(io(&self.addr))?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| self.protocol(format!("response header: {e}")))?;
        if header.correlation_id != correlation {
            return Err(self.protocol(format!(
                "correlation id {} does not match request {correlation}",
                header.correlation_id
            )));
        }
        R::Response::decode(&mut body, version)
            .map_err(|e| self.protocol(format!("{:?} response v{version}: {e}", R::KEY)))
    }

    fn encode<R: KafkaRequest>(
        &self,
        request: &R,
        version: i16,
        correlation: i32,
    ) -> Result<BytesMut, ConnError> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(128);
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(|e| self.protocol(format!("request header: {e}")))?;
        request
            .encode(&mut buf, version)
            .map_err(|e| self.protocol(format!("{:?} request v{version}: {e}", R::KEY)))?;
        let len = i32::try_from(buf.len() - 4).map_err(|e| self.protocol(e.to_string()))?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf)
    }

    fn protocol(&self, message: String) -> ConnError {
        ConnError::Protocol {
            addr: self.addr.clone(),
            message,
        }
    }
}
