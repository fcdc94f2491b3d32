//! What preflight asks of the mock: topics described, pattern subscriptions matched,
//! and the admin knobs a preflight test needs (deleting a topic, refusing a group).

use ktm_core::{GroupStatus, SourceDescription, Subscribed, TopicDescription};

use crate::cluster::ClusterState;
use crate::source::{MockSource, Mode};
use crate::{MockCluster, MockError};

impl MockCluster {
    /// Deletes a topic with its records, as `kafka-topics --delete` would. Consumers
    /// built before keep their configuration; their group finds nothing to read.
    ///
    /// # Errors
    /// [`MockError::UnknownTopic`].
    pub fn delete_topic(&self, name: &str) -> Result<(), MockError> {
        let mut st = self.inner.state();
        st.topics
            .remove(name)
            .map(drop)
            .ok_or_else(|| MockError::UnknownTopic(name.to_owned()))
    }

    /// Makes the group coordinator refuse `group` with `error` (say
    /// `"GROUP_AUTHORIZATION_FAILED"`, as an ACL would): members of it fail their
    /// polls fatally, and preflight reports the group rejected.
    pub fn refuse_group(&self, group: impl Into<String>, error: impl Into<String>) {
        self.inner
            .state()
            .refused_groups
            .insert(group.into(), error.into());
    }
}

impl MockSource {
    /// The subscription as the cluster sees it now.
    pub(crate) fn description(&self) -> SourceDescription {
        let st = self.cluster.inner.state();
        let describe = |t: &str| match st.partition_count(t) {
            0 => TopicDescription::missing(t),
            n => TopicDescription::found(t, n),
        };
        let (subscription, topics) = match &self.mode {
            Mode::Subscribe(topics) => (
                Subscribed::Topics(topics.clone()),
                topics.iter().map(|t| describe(t)).collect(),
            ),
            Mode::Pattern(pattern) => (
                Subscribed::Pattern(pattern.clone()),
                matching(&st, pattern).iter().map(|t| describe(t)).collect(),
            ),
            Mode::Assign(tps) => {
                let mut names: Vec<&str> = tps.iter().map(|tp| tp.topic()).collect();
                names.sort_unstable();
                names.dedup();
                (
                    Subscribed::Partitions(tps.clone()),
                    names.into_iter().map(describe).collect(),
                )
            }
        };
        // Kafka refuses an empty group id (INVALID_GROUP_ID); the builder already does.
        let status = match st.refused_groups.get(&self.group) {
            Some(error) => GroupStatus::Rejected {
                error: error.clone(),
            },
            None => GroupStatus::Accepted {
                coordinator: "mock".to_owned(),
            },
        };
        SourceDescription::new("mock", subscription, topics).with_group(self.group.clone(), status)
    }
}

/// The cluster's topics whose names match `pattern`, in name order.
pub(crate) fn matching(st: &ClusterState, pattern: &str) -> Vec<String> {
    st.topics
        .keys()
        .filter(|name| glob(pattern, name))
        .cloned()
        .collect()
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return name.is_empty();
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole name must have been the prefix.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_as_shell_globs_do() {
        assert!(glob("orders.*", "orders.eu"));
        assert!(glob("*.dlq", "orders.dlq"));
        assert!(glob("o*s*u", "orders.eu"));
        assert!(glob("orders", "orders"));
        assert!(!glob("orders", "orders.eu"));
        assert!(!glob("orders.*", "refunds.eu"));
        assert!(glob("a*ba", "aba"));
        assert!(
            !glob("ab*ba", "aba"),
            "the suffix may not overlap the prefix"
        );
        assert!(glob("*", ""));
    }
}
