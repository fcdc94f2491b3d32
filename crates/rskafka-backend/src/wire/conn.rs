//! One Kafka protocol connection to one broker: length-prefixed frames, one request in
//! flight at a time, encoded and decoded with `kafka-protocol`, over TCP or TLS and
//! authenticated with SASL when so configured. Every connection asks the broker which
//! API versions it serves (ApiVersions) before anything else, and each request goes
//! out at the highest version both sides speak.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, LeaveGroupRequest, LeaveGroupResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::sasl;
use super::transport::{self, BoxStream, Security};
use crate::auth::AuthError;
use crate::group::answers::{JoinGroupAnswer, SyncGroupAnswer};

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
    /// The broker serves no version of a request that this crate speaks: fatal.
    #[error("{addr} serves {api:?} at versions {broker:?}, this client speaks {ours:?}")]
    Unsupported {
        addr: String,
        api: ApiKey,
        /// The broker's versions; `None` when it does not serve the API at all.
        broker: Option<(i16, i16)>,
        ours: RangeInclusive<i16>,
    },
    /// SASL authentication failed: fatal.
    #[error("authenticating to {addr}: {source}")]
    Auth {
        addr: String,
        #[source]
        source: AuthError,
    },
    /// The TLS handshake failed (fatal unless the connection broke during it).
    #[cfg(feature = "tls")]
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: String,
        #[source]
        source: crate::TlsError,
    },
}

impl ConnError {
    /// A failure reading or writing `addr`'s stream. A TLS alert from the broker after
    /// the handshake is a TLS error: under TLS 1.3 the client's handshake completes
    /// before the broker checks its certificate, so a missing or refused client
    /// certificate shows at the first read.
    pub(crate) fn io(addr: &str, source: std::io::Error) -> Self {
        #[cfg(feature = "tls")]
        let source = match super::transport::rustls_failure(super::transport::host_of(addr), source)
        {
            Ok(tls) => {
                return ConnError::Tls {
                    addr: addr.to_owned(),
                    source: tls,
                }
            }
            Err(source) => source,
        };
        ConnError::Io {
            addr: addr.to_owned(),
            source,
        }
    }

    /// Whether retrying cannot help: authentication was refused, the broker's TLS
    /// certificate (or our TLS settings) were, or the broker speaks no version of a
    /// request we need.
    pub(crate) fn is_fatal(&self) -> bool {
        match self {
            ConnError::Auth { source, .. } => source.is_fatal(),
            ConnError::Unsupported { .. } => true,
            #[cfg(feature = "tls")]
            ConnError::Tls { source, .. } => source.is_fatal(),
            _ => false,
        }
    }
}

/// A request type, with its API key, its response type (`kafka-protocol` only provides
/// this mapping when its `broker` feature is on too), and the versions this crate
/// builds and reads.
pub(crate) trait KafkaRequest: Encodable + HeaderVersion {
    const KEY: ApiKey;
    /// The versions the callers fill in correctly (fields that a version lacks are
    /// left at their defaults, or the caller checks the version it was given).
    const VERSIONS: RangeInclusive<i16>;
    type Response: Decodable + HeaderVersion;
}

macro_rules! requests {
    ($($req:ty => $resp:ty, $key:ident, $versions:expr;)*) => {$(
        impl KafkaRequest for $req {
            const KEY: ApiKey = ApiKey::$key;
            const VERSIONS: RangeInclusive<i16> = $versions;
            type Response = $resp;
        }
    )*};
}

// Oldest versions: those every Kafka 2.x broker serves and that carry what the group
// protocol needs (a rebalance timeout, generations on commits). Newest: the last whose
// semantics this crate implements, and for the classic group requests the newest that
// librdkafka 2.12 itself sends (JoinGroup v5, SyncGroup v3, LeaveGroup v1-2): their
// flexible versions add nothing this member uses (a join reason, a static leader
// skipping its assignment, a batch leave), and librdkafka's mock cluster advertises
// them (JoinGroup v6, SyncGroup v4, LeaveGroup v3-4) while parsing only the older
// layouts. LeaveGroup is sent by dynamic members only: a static member, as in Java
// and librdkafka, lets its session expire. FindCoordinator v4 batches keys; OffsetFetch
// v8 batches groups; OffsetCommit v9 belongs to the KIP-848 protocol.
//
// The fetch path: Fetch v4 brings isolation levels, the last stable offset and the
// aborted-transaction list; v7 fetch sessions (KIP-227); v11 is the last before the
// flexible versions, whose additions (diverging epochs, KIP-320) this consumer does not
// use, and whose tagged fields Tansu 0.6 fills wrongly (a v12 answer carries tag 0, the
// node endpoints of v16, which a strict decoder must refuse). ListOffsets v2 takes the isolation level (latest
// under read_committed is the last stable offset); v7 is the last before tiered
// storage. Metadata v1 has leader ids and rack; v12 is the newest librdkafka 2.12 sends.
requests! {
    FetchRequest => FetchResponse, Fetch, 4..=11;
    ListOffsetsRequest => ListOffsetsResponse, ListOffsets, 1..=7;
    MetadataRequest => MetadataResponse, Metadata, 1..=12;
    ApiVersionsRequest => ApiVersionsResponse, ApiVersions, 0..=0;
    FindCoordinatorRequest => FindCoordinatorResponse, FindCoordinator, 1..=3;
    JoinGroupRequest => JoinGroupAnswer, JoinGroup, 1..=5;
    SyncGroupRequest => SyncGroupAnswer, SyncGroup, 0..=3;
    HeartbeatRequest => HeartbeatResponse, Heartbeat, 0..=4;
    LeaveGroupRequest => LeaveGroupResponse, LeaveGroup, 0..=2;
    OffsetCommitRequest => OffsetCommitResponse, OffsetCommit, 2..=8;
    OffsetFetchRequest => OffsetFetchResponse, OffsetFetch, 1..=7;
    SaslHandshakeRequest => SaslHandshakeResponse, SaslHandshake, 1..=1;
    SaslAuthenticateRequest => SaslAuthenticateResponse, SaslAuthenticate, 0..=2;
}

/// API key -> the (oldest, newest) version a broker serves.
type BrokerVersions = BTreeMap<i16, (i16, i16)>;

/// A connection to one broker.
pub(crate) struct Conn {
    stream: BoxStream,
    addr: String,
    client_id: StrBytes,
    next_correlation: i32,
    request_timeout: Duration,
    versions: BrokerVersions,
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
            versions: BrokerVersions::new(),
        };
        conn.versions = conn.ask_versions().await?;
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

    /// ApiVersions v0, which every broker answers (in the v0 layout even when it does
    /// not serve v0 of anything else).
    async fn ask_versions(&mut self) -> Result<BrokerVersions, ConnError> {
        let response = self.send_at(&ApiVersionsRequest::default(), 0).await?;
        if let Some(error) = kafka_protocol::ResponseError::try_from_code(response.error_code) {
            return Err(self.protocol(format!("ApiVersions answered {error:?}")));
        }
        Ok(response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect())
    }

    /// The version to send `R` at: the highest both this crate and the broker serve.
    pub(crate) fn version<R: KafkaRequest>(&self) -> Result<i16, ConnError> {
        let broker = self.versions.get(&(R::KEY as i16)).copied();
        let unsupported = || ConnError::Unsupported {
            addr: self.addr.clone(),
            api: R::KEY,
            broker,
            ours: R::VERSIONS,
        };
        let (min, max) = broker.ok_or_else(unsupported)?;
        let version = max.min(*R::VERSIONS.end());
        if version < min.max(*R::VERSIONS.start()) {
            return Err(unsupported());
        }
        Ok(version)
    }

    /// Sends `request` at the negotiated [`version`](Self::version) and waits for its
    /// response. Not cancel-safe: drop the connection if the future is dropped half-way.
    pub(crate) async fn send<R: KafkaRequest>(
        &mut self,
        request: &R,
    ) -> Result<R::Response, ConnError> {
        let version = self.version::<R>()?;
        self.send_at(request, version).await
    }

    /// Sends `request` at `version` (one the caller had from [`version`](Self::version),
    /// to build the request for it) and waits for its response. Not cancel-safe.
    pub(crate) async fn send_at<R: KafkaRequest>(
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
            move |source| ConnError::io(&addr, source)
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
