//! The consumer thread's lifecycle: one table of transitions, used by the manager and
//! rendered into the README.

use std::fmt;

/// Where a [`ThreadManager`](crate::ThreadManager) is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Built, not started.
    Created,
    /// The consumer thread is polling and handling messages.
    Running,
    /// Asked to stop (or its lifetime ended, or it failed): finishing the in-flight
    /// callback, committing, closing the source.
    Stopping,
    /// Ended cleanly; the report says why.
    Stopped,
    /// Ended by a failure (callback, fatal source error); the report says which.
    Failed,
}

impl State {
    /// Whether the manager can no longer change state.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Stopped | State::Failed)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            State::Created => "Created",
            State::Running => "Running",
            State::Stopping => "Stopping",
            State::Stopped => "Stopped",
            State::Failed => "Failed",
        };
        f.write_str(name)
    }
}

/// What moves the lifecycle on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// `start()` spawned the thread.
    Start,
    /// `start()` could not spawn the thread.
    SpawnFailed,
    /// `stop()`, or dropping the manager.
    Stop,
    /// `thread_lifetime` ran out.
    LifetimeExpired,
    /// The callback failed under the `Stop` policy, or the source failed fatally.
    Fault,
    /// The thread committed, closed the source and ended, with no fault.
    Finished,
    /// The thread ended after a fault.
    FinishedAfterFault,
}

/// Every allowed transition, `(from, trigger, to)`: the one source of truth.
pub const TRANSITIONS: &[(State, Trigger, State)] = &[
    (State::Created, Trigger::Start, State::Running),
    (State::Created, Trigger::SpawnFailed, State::Failed),
    (State::Created, Trigger::Stop, State::Stopped),
    (State::Running, Trigger::Stop, State::Stopping),
    (State::Running, Trigger::LifetimeExpired, State::Stopping),
    (State::Running, Trigger::Fault, State::Stopping),
    (State::Stopping, Trigger::Finished, State::Stopped),
    (State::Stopping, Trigger::FinishedAfterFault, State::Failed),
];

/// The state `trigger` leads to from `from`, or `None` if the table has no such row.
pub fn next_state(from: State, trigger: Trigger) -> Option<State> {
    TRANSITIONS
        .iter()
        .find(|(f, t, _)| *f == from && *t == trigger)
        .map(|(_, _, to)| *to)
}

/// Whether `from -> to` is a row of the table (under some trigger).
pub fn is_allowed(from: State, to: State) -> bool {
    TRANSITIONS.iter().any(|(f, _, t)| *f == from && *t == to)
}

/// The table as a Mermaid state diagram, as it appears in the README.
pub fn mermaid_diagram() -> String {
    let mut out = String::from("stateDiagram-v2\n    [*] --> Created\n");
    for (from, trigger, to) in TRANSITIONS {
        out.push_str(&format!("    {from} --> {to}: {trigger:?}\n"));
    }
    out.push_str("    Stopped --> [*]\n    Failed --> [*]\n");
    out
}

/// One observed state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// What caused it.
    pub trigger: Trigger,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_have_no_way_out() {
        for (from, _, _) in TRANSITIONS {
            assert!(!from.is_terminal(), "{from} is terminal but has an exit");
        }
    }

    #[test]
    fn table_is_a_function() {
        for (i, (f, t, _)) in TRANSITIONS.iter().enumerate() {
            for (g, u, _) in &TRANSITIONS[i + 1..] {
                assert!(!(f == g && t == u), "two rows for {f} + {t:?}");
            }
        }
    }

    #[test]
    fn readme_renders_the_table() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&mermaid_diagram()),
            "README's lifecycle diagram is out of date; paste:\n{}",
            mermaid_diagram()
        );
    }
}
