//! Where a partition starts: its committed offset when that is inside the retained
//! range, otherwise the reset policy (`auto.offset.reset`), logged.

use ktm_core::OffsetReset;

/// Why the start position is not the committed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResetCause {
    /// The group has no committed offset for the partition.
    NoCommit,
    /// The offset is outside the retained range `[earliest, latest]`.
    OutOfRange {
        offset: i64,
        earliest: i64,
        latest: i64,
    },
}

/// The resolved start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Start {
    /// The offset to fetch from.
    pub(crate) offset: i64,
    /// Set when the reset policy chose it.
    pub(crate) reset: Option<ResetCause>,
}

/// The reset policy is `None` and the partition needs a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NoResetPolicy(pub(crate) ResetCause);

impl std::fmt::Display for NoResetPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            ResetCause::NoCommit => write!(f, "no committed offset and offset reset is none"),
            ResetCause::OutOfRange {
                offset,
                earliest,
                latest,
            } => write!(
                f,
                "offset {offset} is outside the retained range {earliest}..={latest} and offset reset is none"
            ),
        }
    }
}

/// Picks the start from a committed offset (`None`: no commit) and the partition's
/// retained range: `earliest` is its first offset, `latest` the next one to be written.
pub(crate) fn resolve_start(
    committed: Option<i64>,
    earliest: i64,
    latest: i64,
    policy: OffsetReset,
) -> Result<Start, NoResetPolicy> {
    let cause = match committed {
        Some(offset) if (earliest..=latest).contains(&offset) => {
            return Ok(Start {
                offset,
                reset: None,
            })
        }
        Some(offset) => ResetCause::OutOfRange {
            offset,
            earliest,
            latest,
        },
        None => ResetCause::NoCommit,
    };
    reset_to(cause, earliest, latest, policy)
}

/// Applies `policy` for `cause`.
pub(crate) fn reset_to(
    cause: ResetCause,
    earliest: i64,
    latest: i64,
    policy: OffsetReset,
) -> Result<Start, NoResetPolicy> {
    let offset = match policy {
        OffsetReset::Earliest => earliest,
        OffsetReset::Latest => latest,
        _ => return Err(NoResetPolicy(cause)),
    };
    Ok(Start {
        offset,
        reset: Some(cause),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_offset_in_range_is_used_as_is() {
        for policy in [
            OffsetReset::Earliest,
            OffsetReset::Latest,
            OffsetReset::None,
        ] {
            for committed in [10, 15, 20] {
                assert_eq!(
                    resolve_start(Some(committed), 10, 20, policy),
                    Ok(Start {
                        offset: committed,
                        reset: None
                    })
                );
            }
        }
    }

    #[test]
    fn no_commit_follows_the_policy() {
        let e = resolve_start(None, 10, 20, OffsetReset::Earliest).unwrap();
        assert_eq!((e.offset, e.reset), (10, Some(ResetCause::NoCommit)));
        let l = resolve_start(None, 10, 20, OffsetReset::Latest).unwrap();
        assert_eq!(l.offset, 20);
        let err = resolve_start(None, 10, 20, OffsetReset::None).unwrap_err();
        assert_eq!(err, NoResetPolicy(ResetCause::NoCommit));
        assert!(err.to_string().contains("no committed offset"));
    }

    #[test]
    fn out_of_range_follows_the_policy_and_says_why() {
        let cause = ResetCause::OutOfRange {
            offset: 5,
            earliest: 10,
            latest: 20,
        };
        let s = resolve_start(Some(5), 10, 20, OffsetReset::Earliest).unwrap();
        assert_eq!(
            s,
            Start {
                offset: 10,
                reset: Some(cause)
            }
        );
        let s = resolve_start(Some(25), 10, 20, OffsetReset::Latest).unwrap();
        assert_eq!(s.offset, 20);
        let err = resolve_start(Some(25), 10, 20, OffsetReset::None).unwrap_err();
        assert!(err
            .to_string()
            .contains("outside the retained range 10..=20"));
    }
}
