//! Consumer-group support, which rskafka lacks: coordinator discovery, membership
//! (join, sync, heartbeat, leave), the assignors, and committed offsets, spoken with
//! `kafka-protocol` over connections of our own.

mod answers;
mod assignor;
mod conn;
mod coordinator;
mod member;
mod membership;
mod metadata_watch;
mod offsets;
mod protocol;
mod sasl;
mod sync;
mod transport;

#[cfg(test)]
mod fake_wire;
#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod sasl_tests;
#[cfg(test)]
mod static_tests;
#[cfg(all(test, feature = "tls"))]
mod tls_tests;

pub use assignor::Assignor;
pub(crate) use coordinator::GroupSettings;
pub(crate) use membership::{GroupEvent, GroupHandle};
pub(crate) use offsets::{CommitIdentity, OffsetClient};
pub(crate) use transport::Security;
