//! Schemas remembered by id, so each is fetched once.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use super::{LookupError, RegisteredSchema, SchemaLookup};

/// A [`SchemaLookup`] that asks `inner` once per id and remembers the answer.
///
/// Only schemas found are remembered: a registry id never changes its schema, so a hit
/// is good forever, while an [`Unknown`](LookupError::Unknown) id may be registered later
/// and an [`Unavailable`](LookupError::Unavailable) registry may come back.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use ktm_core::decode::schema_registry::{CachedLookup, RegisteredSchema, SchemaLookup, SchemaType};
/// let mut schemas = HashMap::new();
/// schemas.insert(1, Arc::new(RegisteredSchema::new(1, SchemaType::Avro, r#""long""#)));
/// let cached = CachedLookup::new(schemas);
/// assert_eq!(cached.schema(1)?.text, r#""long""#);
/// assert_eq!(cached.len(), 1);
/// # Ok::<(), ktm_core::decode::schema_registry::LookupError>(())
/// ```
pub struct CachedLookup<L> {
    inner: L,
    found: IdCache<RegisteredSchema>,
}

/// Values remembered by schema id, for the lookup cache and the decoders' parsed
/// schemas. Read-mostly: after warm-up every read is a hit, so readers must not queue.
pub(super) struct IdCache<V> {
    values: RwLock<HashMap<u32, Arc<V>>>,
}

impl<V> Default for IdCache<V> {
    fn default() -> Self {
        Self {
            values: RwLock::default(),
        }
    }
}

impl<V> IdCache<V> {
    /// The value of `id`, from the cache or else from `make` (remembered only if it
    /// succeeds). The lock is not held while `make` runs: two threads missing the same
    /// id at once may both make it, which costs one extra request or parse, never a stall
    /// of every other id.
    pub(super) fn get_or_try<E>(
        &self,
        id: u32,
        make: impl FnOnce() -> Result<Arc<V>, E>,
    ) -> Result<Arc<V>, E> {
        // A poisoned lock only means another thread panicked mid-insert of a complete
        // value; the map is still consistent, so keep using it.
        if let Some(hit) = self
            .values
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok(Arc::clone(hit));
        }
        let value = make()?;
        self.values
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert_with(|| Arc::clone(&value));
        Ok(value)
    }

    /// How many values are remembered.
    pub(super) fn len(&self) -> usize {
        self.values.read().map_or(0, |values| values.len())
    }
}

impl<L: SchemaLookup> CachedLookup<L> {
    /// Remembers what `inner` finds.
    pub fn new(inner: L) -> Self {
        Self {
            inner,
            found: IdCache::default(),
        }
    }

    /// How many schemas are remembered.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether no schema is remembered yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lookup behind the cache.
    pub fn inner(&self) -> &L {
        &self.inner
    }
}

impl<L: SchemaLookup> SchemaLookup for CachedLookup<L> {
    fn schema(&self, id: u32) -> Result<Arc<RegisteredSchema>, LookupError> {
        self.found.get_or_try(id, || self.inner.schema(id))
    }
}

impl<L: fmt::Debug> fmt::Debug for CachedLookup<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.found.len();
        f.debug_struct("CachedLookup")
            .field("inner", &self.inner)
            .field("cached", &cached)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::schema_registry::SchemaType;
    use crate::DecodeError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Knows id 1, fails id 2 as unavailable, and counts every question.
    #[derive(Default)]
    struct Counting {
        asked: AtomicUsize,
    }

    impl SchemaLookup for Counting {
        fn schema(&self, id: u32) -> Result<Arc<RegisteredSchema>, LookupError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            match id {
                1 => Ok(Arc::new(RegisteredSchema::new(
                    1,
                    SchemaType::Avro,
                    "\"int\"",
                ))),
                2 => Err(LookupError::Unavailable {
                    id,
                    source: "down".into(),
                }),
                _ => Err(LookupError::Unknown { id }),
            }
        }
    }

    #[test]
    fn a_found_schema_is_asked_once_and_failures_every_time() {
        let cached = CachedLookup::new(Counting::default());
        for _ in 0..3 {
            assert_eq!(cached.schema(1).unwrap().id, 1);
        }
        assert_eq!(cached.inner().asked.load(Ordering::SeqCst), 1);
        for _ in 0..2 {
            assert!(matches!(
                cached.schema(2),
                Err(LookupError::Unavailable { id: 2, .. })
            ));
            assert!(matches!(
                cached.schema(3),
                Err(LookupError::Unknown { id: 3 })
            ));
        }
        assert_eq!(cached.inner().asked.load(Ordering::SeqCst), 5);
        assert_eq!(cached.len(), 1);
    }

    #[test]
    fn lookup_errors_map_to_decode_errors_of_the_right_permanence() {
        let unknown = DecodeError::from(LookupError::Unknown { id: 3 });
        assert!(matches!(unknown, DecodeError::UnknownSchema { id: 3 }) && !unknown.is_transient());
        let down = DecodeError::from(LookupError::Unavailable {
            id: 2,
            source: "down".into(),
        });
        assert!(
            matches!(down, DecodeError::SchemaUnavailable { id: 2, .. }) && down.is_transient()
        );
    }
}
