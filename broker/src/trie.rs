//! The subscription trie: topic filter -> subscribers, matched against a
//! topic name in time independent of unrelated subscriptions.
//!
//! One node per filter level. A node has its literal children in a map, a
//! dedicated `+` child, and two subscriber sets: filters that end at the node
//! and filters that end with `#` below it (`a/#` is stored on node `a`, since
//! `#` also matches the parent level [MQTT-4.7.1-2]). Matching a topic walks
//! its levels once: per level one map lookup plus the `+` branch, so the cost
//! depends only on the topic's depth and on how many filters match it.

use std::collections::HashMap;
use std::hash::Hash;
use std::str::Split;

/// Subscriptions keyed by (filter, subscriber key). A subscriber has at most
/// one entry per filter; inserting again replaces it [MQTT-3.8.4-3].
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    /// Kept so that `len` is O(1) (it feeds `$SYS` counters).
    len: usize,
}

/// One filter level. The literal map uses std's SipHash with a random key on
/// purpose: the levels come from clients, and a predictable hash would let
/// one flood a map with collisions.
struct Node<K, V> {
    children: HashMap<Box<str>, Node<K, V>>,
    plus: Option<Box<Node<K, V>>>,
    /// Filters ending exactly here.
    exact: Subscribers<K, V>,
    /// Filters ending in `#` right below this node.
    multi: Subscribers<K, V>,
}

/// Most filters have a single subscriber, so a small vector (no hashing, one
/// contiguous scan) is the common case; a popular filter switches to a map so
/// that subscribing N clients stays O(N) overall instead of O(N^2).
enum Subscribers<K, V> {
    Few(Vec<(K, V)>),
    Many(HashMap<K, V>),
}

/// Above this many subscribers a filter's set becomes a map.
const FEW: usize = 16;

impl<K: Hash + Eq, V> Subscribers<K, V> {
    fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            Subscribers::Few(v) => {
                if let Some(slot) = v.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(&mut slot.1, value));
                }
                if v.len() < FEW {
                    v.push((key, value));
                } else {
                    let mut map: HashMap<K, V> = v.drain(..).collect();
                    map.insert(key, value);
                    *self = Subscribers::Many(map);
                }
                None
            }
            Subscribers::Many(m) => m.insert(key, value),
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            Subscribers::Few(v) => {
                let i = v.iter().position(|(k, _)| k == key)?;
                let (_, value) = v.swap_remove(i);
                if v.is_empty() {
                    // Give the allocation back: this node may live on.
                    *v = Vec::new();
                }
                Some(value)
            }
            Subscribers::Many(m) => {
                let value = m.remove(key)?;
                if m.len() <= FEW / 2 {
                    *self = Subscribers::Few(m.drain().collect());
                }
                Some(value)
            }
        }
    }

    fn for_each<F: FnMut(&K, &V)>(&self, f: &mut F) {
        match self {
            Subscribers::Few(v) => v.iter().for_each(|(k, v)| f(k, v)),
            Subscribers::Many(m) => m.iter().for_each(|(k, v)| f(k, v)),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Subscribers::Few(v) => v.is_empty(),
            Subscribers::Many(m) => m.is_empty(),
        }
    }
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Node {
            children: HashMap::new(),
            plus: None,
            exact: Subscribers::Few(Vec::new()),
            multi: Subscribers::Few(Vec::new()),
        }
    }
}

impl<K: Hash + Eq, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.multi.is_empty()
    }

    /// Removes `key` from the filter whose remaining levels are `levels`,
    /// pruning children left empty on the way back up.
    fn remove(&mut self, mut levels: Split<'_, char>, key: &K) -> Option<V> {
        match levels.next() {
            None => self.exact.remove(key),
            Some("#") => self.multi.remove(key),
            Some("+") => {
                let child = self.plus.as_mut()?;
                let removed = child.remove(levels, key);
                if child.is_empty() {
                    self.plus = None;
                }
                removed
            }
            Some(level) => {
                let child = self.children.get_mut(level)?;
                let removed = child.remove(levels, key);
                if child.is_empty() {
                    self.children.remove(level);
                    if self.children.is_empty() {
                        // An emptied map keeps its buckets; drop them.
                        self.children = HashMap::new();
                    }
                }
                removed
            }
        }
    }

    /// Reports every subscription below this node matching the remaining
    /// topic levels. `levels` is a cloned iterator, so nothing is allocated.
    fn for_each_match<F: FnMut(&K, &V)>(&self, mut levels: Split<'_, char>, f: &mut F) {
        // `x/#` matches `x` itself and everything below it [MQTT-4.7.1-2].
        self.multi.for_each(f);
        match levels.next() {
            None => self.exact.for_each(f),
            Some(level) => {
                if let Some(child) = self.children.get(level) {
                    child.for_each_match(levels.clone(), f);
                }
                if let Some(child) = &self.plus {
                    child.for_each_match(levels, f);
                }
            }
        }
    }
}

impl<K: Hash + Eq + Clone, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone, V> SubscriptionTrie<K, V> {
    pub fn new() -> Self {
        SubscriptionTrie {
            root: Node::new(),
            len: 0,
        }
    }

    /// Adds or replaces `key`'s subscription to `filter` (a valid filter);
    /// returns the value it replaced.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        debug_assert!(crate::topic::validate_filter(filter).is_ok(), "{filter:?}");
        let mut node = &mut self.root;
        let mut levels = filter.split('/');
        let slot = loop {
            match levels.next() {
                None => break &mut node.exact,
                // Valid filters have `#` only as the last level.
                Some("#") => break &mut node.multi,
                Some("+") => node = node.plus.get_or_insert_with(|| Box::new(Node::new())),
                Some(level) => {
                    // Look up before inserting so that an existing level
                    // does not cost a key allocation.
                    if !node.children.contains_key(level) {
                        node.children.insert(level.into(), Node::new());
                    }
                    node = node.children.get_mut(level).expect("just inserted");
                }
            }
        };
        let replaced = slot.insert(key, value);
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Removes `key`'s subscription to `filter`, pruning empty nodes.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let removed = self.root.remove(filter.split('/'), key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` for every subscription whose filter matches the topic name
    /// `topic` (a valid name). A subscriber with several matching filters is
    /// reported once per filter; the caller merges them.
    pub fn for_each_match<F: FnMut(&K, &V)>(&self, topic: &str, mut f: F) {
        debug_assert!(crate::topic::validate_name(topic).is_ok(), "{topic:?}");
        let f = &mut f;
        let mut levels = topic.split('/');
        let Some(first) = levels.next() else { return };
        let root = &self.root;
        // Filters starting with a wildcard never match `$` topics
        // [MQTT-4.7.2-1], so the root's `#` and `+` are skipped for them.
        let dollar = first.starts_with('$');
        if !dollar {
            root.multi.for_each(f);
            if let Some(child) = &root.plus {
                child.for_each_match(levels.clone(), f);
            }
        }
        if let Some(child) = root.children.get(first) {
            child.for_each_match(levels, f);
        }
    }

    /// Number of (filter, key) subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the trie holds no nodes besides the root (pruning worked).
    #[cfg(test)]
    fn is_pruned(&self) -> bool {
        self.root.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;
    use crate::topic::tests::{filter, name};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn matched(trie: &SubscriptionTrie<u32, String>, topic: &str) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |k, v| out.push((*k, v.clone())));
        out.sort();
        out
    }

    #[test]
    fn table_against_reference() {
        // Each table row's filter stored once, then every name checked
        // against every filter: this covers the cross pairs as well.
        let table = crate::topic::tests::MATCH_TABLE;
        let mut trie = SubscriptionTrie::new();
        let mut filters: Vec<&str> = table.iter().map(|r| r.0).collect();
        filters.sort();
        filters.dedup();
        for (i, f) in filters.iter().enumerate() {
            assert!(trie.insert(f, i as u32, f.to_string()).is_none());
        }
        assert_eq!(trie.len(), filters.len());
        for &(_, name, _) in table {
            let want: Vec<(u32, String)> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| matches(f, name))
                .map(|(i, f)| (i as u32, f.to_string()))
                .collect();
            assert_eq!(matched(&trie, name), want, "{name:?}");
        }
        for &(filter, name, want) in table {
            let hit = matched(&trie, name).iter().any(|(_, f)| f == filter);
            assert_eq!(hit, want, "{filter:?} vs {name:?}");
        }
    }

    #[test]
    fn replace_and_remove() {
        let mut trie = SubscriptionTrie::new();
        assert_eq!(trie.insert("a/+", 1, 0), None);
        // [MQTT-3.8.4-3]: a second SUBSCRIBE to the same filter replaces.
        assert_eq!(trie.insert("a/+", 1, 1), Some(0));
        assert_eq!(trie.insert("a/#", 1, 2), None);
        assert_eq!(trie.len(), 2);
        let mut got = Vec::new();
        trie.for_each_match("a/b", |k, v| got.push((*k, *v)));
        got.sort();
        assert_eq!(got, vec![(1, 1), (1, 2)]);
        assert_eq!(trie.remove("a/+", &2), None);
        assert_eq!(trie.remove("a/b", &1), None);
        assert_eq!(trie.remove("a/+", &1), Some(1));
        assert_eq!(trie.remove("a/#", &1), Some(2));
        assert!(trie.is_empty());
        assert!(trie.is_pruned());
    }

    #[test]
    fn many_subscribers_on_one_filter() {
        let mut trie = SubscriptionTrie::new();
        for k in 0..100u32 {
            assert_eq!(trie.insert("x/#", k, k), None);
        }
        assert_eq!(trie.insert("x/#", 7, 70), Some(7));
        let mut n = 0;
        trie.for_each_match("x/y", |_, _| n += 1);
        assert_eq!(n, 100);
        for k in 0..100u32 {
            assert!(trie.remove("x/#", &k).is_some());
        }
        assert!(trie.is_empty() && trie.is_pruned());
    }

    proptest! {
        #[test]
        fn matches_equal_brute_force(
            subs in prop::collection::vec((filter(), 0u32..3), 0..30),
            names in prop::collection::vec(name(), 1..20),
        ) {
            let mut trie = SubscriptionTrie::new();
            let mut reference = BTreeMap::new();
            for (f, k) in &subs {
                trie.insert(f, *k, f.clone());
                reference.insert((f.clone(), *k), ());
            }
            prop_assert_eq!(trie.len(), reference.len());
            for n in &names {
                let mut want: Vec<(u32, String)> = reference
                    .keys()
                    .filter(|(f, _)| matches(f, n))
                    .map(|(f, k)| (*k, f.clone()))
                    .collect();
                want.sort();
                prop_assert_eq!(matched(&trie, n), want, "name {:?}", n);
            }
        }

        #[test]
        fn insert_remove_keeps_len_and_prunes(
            ops in prop::collection::vec((any::<bool>(), filter(), 0u32..3), 0..60),
        ) {
            let mut trie = SubscriptionTrie::new();
            let mut reference: BTreeMap<(String, u32), usize> = BTreeMap::new();
            for (i, (insert, f, k)) in ops.iter().enumerate() {
                if *insert {
                    let want = reference.insert((f.clone(), *k), i);
                    prop_assert_eq!(trie.insert(f, *k, i), want);
                } else {
                    let want = reference.remove(&(f.clone(), *k));
                    prop_assert_eq!(trie.remove(f, k), want);
                }
                prop_assert_eq!(trie.len(), reference.len());
            }
            for (f, k) in reference.keys() {
                prop_assert!(trie.remove(f, k).is_some());
            }
            prop_assert!(trie.is_empty());
            prop_assert!(trie.is_pruned());
        }
    }
}
