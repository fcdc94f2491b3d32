//! Fetch sessions (KIP-227), as the Java consumer's `FetchSessionHandler` keeps them: the
//! first request of a session names every partition; the broker answers with a session
//! id; later requests name only the partitions whose position (or size) changed, and
//! list as forgotten those no longer fetched (paused, revoked, moved). A broker without
//! sessions answers id 0, and every request stays a full one.

use std::collections::BTreeMap;

use ktm_core::TopicPartition;

/// Asks for a new session (the epoch of a session's first request).
const INITIAL_EPOCH: i32 = 0;
/// No session: a full request the broker must not keep (Fetch v4-v6 have no sessions).
const FINAL_EPOCH: i32 = -1;

/// One partition as a Fetch request names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Wanted {
    pub(super) offset: i64,
    pub(super) max_bytes: i32,
    pub(super) leader_epoch: i32,
}

/// The partitions one request carries, and its session fields.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Request {
    pub(super) session_id: i32,
    pub(super) session_epoch: i32,
    pub(super) partitions: Vec<(TopicPartition, Wanted)>,
    pub(super) forgotten: Vec<TopicPartition>,
}

/// A broker connection's session.
#[derive(Debug, Default)]
pub(super) struct Session {
    id: i32,
    epoch: i32,
    /// What the broker's session holds: the partitions of the last request sent, as
    /// sent. Updated only once its response arrived.
    held: BTreeMap<TopicPartition, Wanted>,
    /// The partitions of the request in flight.
    pending: BTreeMap<TopicPartition, Wanted>,
}

impl Session {
    /// The request for `wanted`: all of it when no session is open (`sessions`: whether
    /// the broker's Fetch version has them), else what changed.
    pub(super) fn request(
        &mut self,
        wanted: BTreeMap<TopicPartition, Wanted>,
        sessions: bool,
    ) -> Request {
        let request = if self.id == 0 {
            Request {
                session_id: 0,
                session_epoch: if sessions { INITIAL_EPOCH } else { FINAL_EPOCH },
                partitions: wanted.iter().map(|(tp, w)| (tp.clone(), *w)).collect(),
                forgotten: Vec::new(),
            }
        } else {
            Request {
                session_id: self.id,
                session_epoch: self.epoch,
                partitions: wanted
                    .iter()
                    .filter(|(tp, w)| self.held.get(*tp) != Some(*w))
                    .map(|(tp, w)| (tp.clone(), *w))
                    .collect(),
                forgotten: self
                    .held
                    .keys()
                    .filter(|tp| !wanted.contains_key(*tp))
                    .cloned()
                    .collect(),
            }
        };
        self.pending = wanted;
        request
    }

    /// The response to the last request arrived without a top-level error, naming
    /// `session_id` (0: the broker keeps no session).
    pub(super) fn answered(&mut self, session_id: i32) {
        self.held = std::mem::take(&mut self.pending);
        if session_id == 0 {
            self.id = 0;
        } else if self.id == 0 || self.id != session_id {
            self.id = session_id;
            self.epoch = 1;
        } else {
            // Epochs wrap to 1: 0 and -1 have meanings of their own.
            self.epoch = if self.epoch == i32::MAX {
                1
            } else {
                self.epoch + 1
            };
        }
    }

    /// Forgets the session (an error, a new connection): the next request is full.
    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }

    /// What the broker was last asked about `tp`, for matching a response to it (an
    /// incremental request omits unchanged partitions, whose data may still come).
    pub(super) fn asked(&self, tp: &TopicPartition) -> Option<Wanted> {
        self.pending.get(tp).or_else(|| self.held.get(tp)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn at(offset: i64) -> Wanted {
        Wanted {
            offset,
            max_bytes: 100,
            leader_epoch: -1,
        }
    }

    fn wanted(entries: &[(i32, i64)]) -> BTreeMap<TopicPartition, Wanted> {
        entries.iter().map(|&(p, o)| (tp(p), at(o))).collect()
    }

    #[test]
    fn a_broker_without_sessions_gets_full_requests_every_time() {
        let mut s = Session::default();
        for _ in 0..3 {
            let r = s.request(wanted(&[(0, 5), (1, 7)]), false);
            assert_eq!((r.session_id, r.session_epoch), (0, FINAL_EPOCH));
            assert_eq!(r.partitions.len(), 2);
            s.answered(0);
        }
    }

    #[test]
    fn an_open_session_names_only_what_changed_and_forgets_what_is_gone() {
        let mut s = Session::default();
        let r = s.request(wanted(&[(0, 5), (1, 7), (2, 9)]), true);
        assert_eq!((r.session_id, r.session_epoch), (0, INITIAL_EPOCH));
        assert_eq!(r.partitions.len(), 3);
        s.answered(42);

        // Partition 0 advanced, 1 unchanged, 2 paused.
        let r = s.request(wanted(&[(0, 8), (1, 7)]), true);
        assert_eq!((r.session_id, r.session_epoch), (42, 1));
        assert_eq!(r.partitions, vec![(tp(0), at(8))]);
        assert_eq!(r.forgotten, vec![tp(2)]);
        assert_eq!(s.asked(&tp(1)), Some(at(7)), "unchanged: still fetched");
        s.answered(42);

        // Nothing changed: an empty incremental request, the next epoch.
        let r = s.request(wanted(&[(0, 8), (1, 7)]), true);
        assert_eq!((r.session_id, r.session_epoch), (42, 2));
        assert!(r.partitions.is_empty() && r.forgotten.is_empty());
        s.answered(42);

        // Partition 2 resumed: named again.
        let r = s.request(wanted(&[(0, 8), (1, 7), (2, 9)]), true);
        assert_eq!(r.partitions, vec![(tp(2), at(9))]);
    }

    #[test]
    fn a_reset_or_a_new_session_id_starts_over() {
        let mut s = Session::default();
        s.request(wanted(&[(0, 5)]), true);
        s.answered(42);
        s.reset();
        let r = s.request(wanted(&[(0, 5)]), true);
        assert_eq!((r.session_id, r.session_epoch), (0, INITIAL_EPOCH));
        assert_eq!(r.partitions.len(), 1);
        s.answered(43);
        let r = s.request(wanted(&[(0, 5)]), true);
        assert_eq!((r.session_id, r.session_epoch), (43, 1));
    }
}
