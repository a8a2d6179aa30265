//! The subscription trie: topic filter -> subscribers, matched against a
//! topic name in time independent of unrelated subscriptions.

use std::hash::Hash;

/// Subscriptions keyed by (filter, subscriber key). A subscriber has at most
/// one entry per filter; inserting again replaces it [MQTT-3.8.4-3].
pub struct SubscriptionTrie<K, V> {
    _p: std::marker::PhantomData<(K, V)>,
}

impl<K: Hash + Eq + Clone, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone, V> SubscriptionTrie<K, V> {
    pub fn new() -> Self {
        todo!("trie helper")
    }

    /// Adds or replaces `key`'s subscription to `filter` (a valid filter);
    /// returns the value it replaced.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let _ = (filter, key, value);
        todo!("trie helper")
    }

    /// Removes `key`'s subscription to `filter`, pruning empty nodes.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let _ = (filter, key);
        todo!("trie helper")
    }

    /// Calls `f` for every subscription whose filter matches the topic name
    /// `topic` (a valid name). A subscriber with several matching filters is
    /// reported once per filter; the caller merges them.
    pub fn for_each_match<F: FnMut(&K, &V)>(&self, topic: &str, f: F) {
        let _ = (topic, f);
        todo!("trie helper")
    }

    /// Number of (filter, key) subscriptions.
    pub fn len(&self) -> usize {
        todo!("trie helper")
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
