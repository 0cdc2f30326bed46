//! A small map that keeps only the most recently used entries: the eval sets a long-running
//! worker holds (by hash, and tokenised by hash and sequence length). A validator scores on one
//! set per competition; sets replaced over weeks of running must not pile up in memory.

use std::collections::VecDeque;

/// At most `capacity` entries; inserting one more drops the least recently used.
#[derive(Debug, Clone)]
pub struct Recent<K, V> {
    capacity: usize,
    /// Most recently used last.
    entries: VecDeque<(K, V)>,
}

impl<K: PartialEq, V> Recent<K, V> {
    /// An empty map that holds up to `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
        }
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        let entry = self.entries.remove(i)?;
        self.entries.push_back(entry);
        self.entries.back().map(|(_, v)| v)
    }

    /// Sets `key` to `value` as the most recently used, dropping the least recently used entry
    /// when full.
    pub fn insert(&mut self, key: K, value: V) {
        if let Some(i) = self.entries.iter().position(|(k, _)| *k == key) {
            self.entries.remove(i);
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((key, value));
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut recent = Recent::new(2);
        recent.insert("a", 1);
        recent.insert("b", 2);
        assert_eq!(recent.get(&"a"), Some(&1));
        recent.insert("c", 3);
        assert_eq!(recent.len(), 2);
        assert_eq!(recent.get(&"b"), None, "b was the least recently used");
        assert_eq!(recent.get(&"a"), Some(&1));
        assert_eq!(recent.get(&"c"), Some(&3));
        recent.insert("c", 4);
        assert_eq!((recent.len(), recent.get(&"c")), (2, Some(&4)));
        assert!(Recent::<u8, u8>::new(0).is_empty());
    }
}
