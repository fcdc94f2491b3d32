//! The pure-Rust Kafka backend of **kafka-thread-manager**.
//!
//! It speaks the consumer's whole wire path itself, with
//! [kafka-protocol](https://docs.rs/kafka-protocol) for request and response framing
//! over connections of its own: fetching (Fetch, ListOffsets, Metadata, with its own
//! record-batch decoder) and the group protocol (FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetFetch, OffsetCommit). The
//! [rskafka](https://docs.rs/rskafka) crate, after which the backend is named, only
//! produces dead letters ([`RskafkaDeadLetterProducer`]): its consumer keeps headers in a
//! map, rejects control batches, needs C for lz4 and zstd and opens a connection per
//! partition.
//!
//! - [`RskafkaSource`] implements [`ktm_core::MessageSource`]; build it with
//!   [`RskafkaSource::builder`].
//! - **Its own I/O thread.** Every connection and background task of a source (group
//!   membership, heartbeats, partition fetches, offset requests) runs on a thread of its
//!   own (`ktm-rskafka-io`, with its own tokio runtime), as librdkafka and the Java
//!   client keep a heartbeat thread: nothing a callback does, however long it blocks
//!   the consumer thread, delays a heartbeat. The consumer thread only exchanges
//!   messages with it.
//! - Subscribing to topics joins the group; the leader assigns partitions with the
//!   configured [`Assignor`]: `range` and `roundrobin` rebalance eagerly (on a
//!   rebalance the source commits the positions the manager stored for its partitions,
//!   reports them revoked, rejoins and reports the new assignment);
//!   [`Assignor::CooperativeSticky`] rebalances incrementally (KIP-429): only the
//!   partitions that move are committed and revoked, the others are consumed without a
//!   pause, and librdkafka and Java members of the same group interoperate (same
//!   protocol name, subscription v3 with owned partitions and generation, Java's user
//!   data). A fenced member (illegal generation, unknown member id, expired session)
//!   reports its partitions lost, and a commit goes out only under the generation that
//!   owns the partitions: one for a generation that has moved on is refused locally.
//! - `max.poll.interval` is enforced as Kafka defines it: when the consumer thread has
//!   not polled for longer (a callback stuck), the member leaves the group (a WARN
//!   names the setting and the stuck duration), its partitions are reported lost at
//!   the next poll, and it rejoins when polling resumes. Heartbeats go on while a
//!   revoke is handed over to the consumer thread.
//! - Static membership (KIP-345): with `group_instance_id`, a restarted member gets its
//!   partitions back without a rebalance if it returns within the session timeout;
//!   static members do not send LeaveGroup on close (as in Java and librdkafka), and
//!   FENCED_INSTANCE_ID (another live member with the same id) is fatal.
//! - Every group connection asks the broker for its API versions (ApiVersions) and
//!   sends each request at the highest version both sides speak, down to Kafka 2.x.
//!   Errors that are final in every Kafka client (authorization, INVALID_GROUP_ID,
//!   INCONSISTENT_GROUP_PROTOCOL, INVALID_SESSION_TIMEOUT, GROUP_MAX_SIZE_REACHED,
//!   UNSUPPORTED_VERSION, FENCED_INSTANCE_ID) are fatal: the manager ends `Failed`
//!   with the cause; the others are retried with backoff.
//! - [`RskafkaDeadLetterProducer`] produces dead letters for
//!   [`FailurePolicy::DeadLetter`](ktm_core::FailurePolicy::DeadLetter), with the same
//!   connection settings ([`from_config`](RskafkaDeadLetterProducer::from_config)).
//! - [`pause`](ktm_core::MessageSource::pause) takes a partition out of its broker's
//!   fetch requests; the batches already fetched wait and come after the resume, in
//!   order. Each poll reports the partitions' high watermarks (last stable offsets under
//!   `read_committed`) from the fetch responses, for lag in the stats.
//! - [`assign`](RskafkaSourceBuilder::assign) reads fixed partitions without membership,
//!   still fetching and committing offsets under the group id.
//! - **Fetching**: one task and one connection per broker leading assigned
//!   partitions, one Fetch request covering all of them (in a fetch session, KIP-227,
//!   where the broker keeps one); leaders from Metadata, moved on
//!   NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION or a lost
//!   connection. A consumer holds the brokers' connections plus two: membership, and a
//!   control connection (offsets, metadata).
//! - **Records as they were written**: every codec in pure Rust (gzip, snappy raw and
//!   xerial-framed, lz4 frames, zstd), headers as Kafka's ordered list (repeated keys,
//!   null and empty values apart), CreateTime or LogAppendTime from the batch, legacy
//!   message sets (magic 0 and 1) too. Under `read_committed` (the default) aborted
//!   transactions are dropped and control batches consumed, the position moving past
//!   them. A batch that cannot be decoded is a fatal error whose source is a
//!   [`DecodeError`] naming topic, partition and offset.
//! - **Bounded memory**: one prefetch budget for all partitions,
//!   [`queued_max_bytes`](RskafkaSourceBuilder::queued_max_bytes) (default 32 MiB);
//!   prefetched memory stays within it plus one response per broker in flight, each
//!   asking for no more than the room left (at most `fetch.max.bytes`).
//! - Security comes from the shared settings ([`ktm_core::Security`]: `security.protocol`,
//!   [`sasl`](RskafkaSourceBuilder::sasl), [`tls`](RskafkaSourceBuilder::tls)) and
//!   applies to every connection (and to the dead-letter producer's): the fetch, group
//!   and control connections do the TLS handshake (rustls; the configured CA or the
//!   system's; the broker's host name checked unless turned off; a client certificate
//!   for mutual TLS), then SaslHandshake v1 and SaslAuthenticate v2 with `PLAIN`,
//!   `SCRAM-SHA-256`, `SCRAM-SHA-512` (RFC 5802/7677; the server signature is
//!   verified) or `OAUTHBEARER` (RFC 7628, tokens from the user's
//!   [`OAuthTokenProvider`](ktm_core::OAuthTokenProvider)). A refused authentication
//!   or certificate is fatal ([`AuthError`] or [`TlsError`] in the error's source
//!   chain), never retried. [`rustls_config`](RskafkaSourceBuilder::rustls_config)
//!   takes a whole rustls configuration instead, for what [`ktm_core::TlsConfig`] lacks.
//!
//! # Cargo features
//! The default build needs no C compiler, every codec included. `tls` (rustls with
//! ring) needs one. `test-util`, for tests only, adds `CrashSwitch`
//! (`RskafkaSource::crash_switch`): a simulated crash, without a word to the group.
//! Without it the source carries no switch and checks none.
//!
//! # Limitations
//! - SCRAM over plaintext and TLS, and TLS with and without a client certificate, are
//!   tested against Tansu (`tests/security.rs` of the workspace); `OAUTHBEARER` only
//!   against a fake in-process broker (no broker here offers it). SCRAM uses the
//!   password's UTF-8 bytes without SASLprep, as Kafka does. Re-authentication
//!   (KIP-368) is not done: a broker that closes the connection when the session
//!   lifetime ends causes a reconnect, which authenticates again (with a fresh
//!   `OAUTHBEARER` token). `GSSAPI` is not supported (`ConfigError::Backend`).
//! - Until the brokers are reachable, a `poll` may take up to `connect_timeout` before
//!   it reports its transient error (it is cancel-safe, so `stop()` never waits for it).
//! - A committed offset past the log end is detected only when the broker answers the
//!   fetch with `OffsetOutOfRange` (Tansu 0.6 never does, and under-reports
//!   ListOffsets(latest), so it is not trusted as an upper bound).
//! - For Tansu 0.6, whose coordinator keeps the generation, the assignment and a dead
//!   leader when a member's session expires, a member whose rejoin after a rebalance
//!   returns the generation it held (or whose sync was refused) leaves and joins
//!   afresh (never the case on Kafka).
//! - A restarted static member that led the group makes the group rebalance: letting
//!   it skip the assignment needs JoinGroup v9 (KIP-814); group requests go out at
//!   most at the versions librdkafka 2.12 sends (JoinGroup v5, SyncGroup v3).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
mod backoff;
mod config;
mod dead_letter;
mod fetch;
mod group;
mod io;
mod records;
mod reset;
mod source;
mod wire;

pub use auth::{AuthError, TlsError};
pub use config::{RskafkaConfig, RskafkaSourceBuilder};
pub use dead_letter::{
    RskafkaDeadLetterProducer, RskafkaDeadLetterProducerBuilder, DEFAULT_SEND_TIMEOUT,
};
pub use group::Assignor;
// The decoder's errors reach users as the source of the fatal error `poll` reports.
pub use records::{DecodeError, DecodeErrorKind};
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use source::CrashSwitch;
pub use source::RskafkaSource;

/// The backend's name in errors and logs.
pub(crate) const BACKEND: &str = "rskafka";

/// An error of this backend: fatal when retrying cannot help, else transient.
pub(crate) fn source_error(fatal: bool, message: impl Into<String>) -> ktm_core::SourceError {
    let kind = if fatal {
        ktm_core::SourceErrorKind::Fatal
    } else {
        ktm_core::SourceErrorKind::Transient
    };
    ktm_core::SourceError::new(BACKEND, kind, message)
}
