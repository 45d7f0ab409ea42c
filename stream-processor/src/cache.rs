//! The bounded lookup cache the enrichment steps share (user agents, geo answers, URL facts):
//! a hash map emptied when it reaches its capacity. Emptying instead of evicting one entry keeps
//! a hit at one hash lookup with no bookkeeping; hot keys come back on the next miss.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

pub(crate) struct ClearingCache<K, V> {
    map: HashMap<K, V>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> ClearingCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        ClearingCache { map: HashMap::new(), capacity: capacity.max(1) }
    }

    /// The cached value for `key`, or `make()` stored under `owned(key)` and returned.
    pub(crate) fn get_or_insert_with<Q>(&mut self, key: &Q, owned: impl FnOnce(&Q) -> K, make: impl FnOnce() -> V) -> V
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if let Some(hit) = self.map.get(key) {
            return hit.clone();
        }
        let value = make();
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(owned(key), value.clone());
        value
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_skip_the_computation_and_the_size_stays_bounded() {
        let mut cache: ClearingCache<String, usize> = ClearingCache::new(3);
        let mut computed = 0;
        for _ in 0..2 {
            assert_eq!(cache.get_or_insert_with("a", str::to_owned, || {
                computed += 1;
                1
            }), 1);
        }
        assert_eq!(computed, 1);
        for i in 0..10 {
            cache.get_or_insert_with(&format!("k{i}")[..], str::to_owned, || i);
            assert!(cache.len() <= 3);
        }
    }
}
