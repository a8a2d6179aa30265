//! The retained-message store: topic name -> value, matched against a topic
//! filter by walking only the branches the filter can reach.

/// Retained values by topic name. At most one per topic [MQTT-3.3.1-5].
pub struct RetainTree<V> {
    _p: std::marker::PhantomData<V>,
}

impl<V> Default for RetainTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainTree<V> {
    pub fn new() -> Self {
        todo!("trie helper")
    }

    /// Stores `value` for `topic` (a valid name); returns the replaced value.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let _ = (topic, value);
        todo!("trie helper")
    }

    /// Removes the value for `topic`, pruning empty nodes.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let _ = topic;
        todo!("trie helper")
    }

    /// Calls `f` for every stored topic that `filter` (a valid filter)
    /// matches, with the `$` rule [MQTT-4.7.2-1].
    pub fn for_each_match<F: FnMut(&str, &V)>(&self, filter: &str, f: F) {
        let _ = (filter, f);
        todo!("trie helper")
    }

    pub fn len(&self) -> usize {
        todo!("trie helper")
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
