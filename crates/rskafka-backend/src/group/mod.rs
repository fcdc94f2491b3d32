//! Consumer-group support, which rskafka lacks: coordinator discovery, membership
//! (join, sync, heartbeat, leave), the assignors, and committed offsets, spoken with
//! `kafka-protocol` over connections of our own.

mod assignor;
mod conn;
mod coordinator;
mod membership;
mod offsets;
mod protocol;
mod sync;

pub use assignor::Assignor;
pub(crate) use coordinator::GroupSettings;
pub(crate) use membership::{GroupEvent, GroupHandle};
pub(crate) use offsets::{CommitIdentity, OffsetClient};
