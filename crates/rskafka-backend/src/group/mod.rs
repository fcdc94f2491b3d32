//! Consumer-group support, which rskafka lacks: coordinator discovery, membership
//! (join, sync, heartbeat, leave), the assignors, and committed offsets, spoken with
//! `kafka-protocol` over connections of our own.

pub(crate) mod answers;
mod assignor;
mod control;
mod coordinator;
mod member;
mod membership;
mod metadata_watch;
mod protocol;
mod sync;

#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod sasl_tests;
#[cfg(test)]
mod static_tests;
#[cfg(all(test, feature = "tls"))]
mod tls_tests;

pub(crate) use crate::wire::Security;
pub use assignor::Assignor;
pub(crate) use control::{CommitIdentity, ControlClient, SharedControl};
pub(crate) use coordinator::{connect_coordinator, GroupError, GroupSettings};
pub(crate) use membership::{GroupEvent, GroupHandle};
