//! The retained-message store: topic name -> value, matched against a topic
//! filter by walking only the branches the filter can reach.
//!
//! One node per topic level, at most one value per node. A SUBSCRIBE walks its
//! filter: a literal level is one map lookup, `+` visits every child, `#` the
//! whole subtree including the node itself [MQTT-4.7.1-2].

use std::collections::HashMap;
use std::str::Split;

/// Retained values by topic name. At most one per topic [MQTT-3.3.1-5].
pub struct RetainTree<V> {
    root: Node<V>,
    /// Kept so that `len` is O(1) (it feeds `$SYS` counters).
    len: usize,
}

/// One topic level. SipHash with a random key on purpose: levels come from
/// clients (see `trie::Node`).
struct Node<V> {
    children: HashMap<Box<str>, Node<V>>,
    /// The full topic is stored with its value so that a match hands out a
    /// `&str` without rebuilding it from the levels (no allocation per match).
    value: Option<(Box<str>, V)>,
}

impl<V> Node<V> {
    fn new() -> Self {
        Node {
            children: HashMap::new(),
            value: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.value.is_none()
    }

    fn remove(&mut self, mut levels: Split<'_, char>) -> Option<V> {
        let Some(level) = levels.next() else {
            return self.value.take().map(|(_, v)| v);
        };
        let child = self.children.get_mut(level)?;
        let removed = child.remove(levels);
        if child.is_empty() {
            self.children.remove(level);
            if self.children.is_empty() {
                // An emptied map keeps its buckets; drop them.
                self.children = HashMap::new();
            }
        }
        removed
    }

    /// Reports the stored topics below this node that the remaining filter
    /// levels match. `dollar_hidden` is set only at the root, where wildcards
    /// must skip topics starting with `$` [MQTT-4.7.2-1].
    fn for_each_match<F: FnMut(&str, &V)>(
        &self,
        mut levels: Split<'_, char>,
        dollar_hidden: bool,
        f: &mut F,
    ) {
        match levels.next() {
            None => self.report(f),
            Some("#") => {
                self.report(f);
                for (level, child) in &self.children {
                    if !(dollar_hidden && level.starts_with('$')) {
                        child.for_each_in_subtree(f);
                    }
                }
            }
            Some("+") => {
                for (level, child) in &self.children {
                    if !(dollar_hidden && level.starts_with('$')) {
                        child.for_each_match(levels.clone(), false, f);
                    }
                }
            }
            Some(level) => {
                if let Some(child) = self.children.get(level) {
                    child.for_each_match(levels, false, f);
                }
            }
        }
    }

    fn for_each_in_subtree<F: FnMut(&str, &V)>(&self, f: &mut F) {
        self.report(f);
        for child in self.children.values() {
            child.for_each_in_subtree(f);
        }
    }

    fn report<F: FnMut(&str, &V)>(&self, f: &mut F) {
        if let Some((topic, value)) = &self.value {
            f(topic, value);
        }
    }
}

impl<V> Default for RetainTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainTree<V> {
    pub fn new() -> Self {
        RetainTree {
            root: Node::new(),
            len: 0,
        }
    }

    /// Stores `value` for `topic` (a valid name); returns the replaced value.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        debug_assert!(crate::topic::validate_name(topic).is_ok(), "{topic:?}");
        let mut node = &mut self.root;
        for level in topic.split('/') {
            // Look up before inserting so that an existing level does not
            // cost a key allocation.
            if !node.children.contains_key(level) {
                node.children.insert(level.into(), Node::new());
            }
            node = node.children.get_mut(level).expect("just inserted");
        }
        match &mut node.value {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            slot @ None => {
                *slot = Some((topic.into(), value));
                self.len += 1;
                None
            }
        }
    }

    /// Removes the value for `topic`, pruning empty nodes.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let removed = self.root.remove(topic.split('/'));
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` for every stored topic that `filter` (a valid filter)
    /// matches, with the `$` rule [MQTT-4.7.2-1].
    pub fn for_each_match<F: FnMut(&str, &V)>(&self, filter: &str, mut f: F) {
        debug_assert!(crate::topic::validate_filter(filter).is_ok(), "{filter:?}");
        // The root holds no value (names are non-empty), so `#` at the root
        // reports only its children's subtrees.
        self.root.for_each_match(filter.split('/'), true, &mut f);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the tree holds no nodes besides the root (pruning worked).
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

    fn matched(tree: &RetainTree<String>, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.for_each_match(filter, |t, v| {
            assert_eq!(t, v, "callback topic is the stored topic");
            out.push(t.to_string());
        });
        out.sort();
        out
    }

    #[test]
    fn table_against_reference() {
        let table = crate::topic::tests::MATCH_TABLE;
        let mut tree = RetainTree::new();
        let mut names: Vec<&str> = table.iter().map(|r| r.1).collect();
        names.sort();
        names.dedup();
        for n in &names {
            assert!(tree.insert(n, n.to_string()).is_none());
        }
        assert_eq!(tree.len(), names.len());
        for &(filter, name, want) in table {
            let got = matched(&tree, filter);
            let reference: Vec<String> = names
                .iter()
                .filter(|n| matches(filter, n))
                .map(|n| n.to_string())
                .collect();
            assert_eq!(got, reference, "{filter:?}");
            assert_eq!(
                got.iter().any(|t| t == name),
                want,
                "{filter:?} vs {name:?}"
            );
        }
    }

    #[test]
    fn replace_and_remove() {
        let mut tree = RetainTree::new();
        assert_eq!(tree.insert("a/b", 1), None);
        // [MQTT-3.3.1-5]: a new retained message replaces the old one.
        assert_eq!(tree.insert("a/b", 2), Some(1));
        assert_eq!(tree.insert("a", 3), None);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.remove("a/c"), None);
        assert_eq!(tree.remove("a/b/c"), None);
        assert_eq!(tree.remove("a"), Some(3));
        let mut got = Vec::new();
        tree.for_each_match("a/#", |t, v| got.push((t.to_string(), *v)));
        assert_eq!(got, vec![("a/b".to_string(), 2)]);
        assert_eq!(tree.remove("a/b"), Some(2));
        assert!(tree.is_empty() && tree.is_pruned());
    }

    proptest! {
        #[test]
        fn matches_equal_brute_force(
            names in prop::collection::vec(name(), 0..30),
            filters in prop::collection::vec(filter(), 1..20),
        ) {
            let mut tree = RetainTree::new();
            let mut reference = BTreeMap::new();
            for n in &names {
                tree.insert(n, n.clone());
                reference.insert(n.clone(), ());
            }
            prop_assert_eq!(tree.len(), reference.len());
            for f in &filters {
                let want: Vec<String> =
                    reference.keys().filter(|n| matches(f, n)).cloned().collect();
                prop_assert_eq!(matched(&tree, f), want, "filter {:?}", f);
            }
        }

        #[test]
        fn insert_remove_keeps_len_and_prunes(
            ops in prop::collection::vec((any::<bool>(), name()), 0..60),
        ) {
            let mut tree = RetainTree::new();
            let mut reference: BTreeMap<String, usize> = BTreeMap::new();
            for (i, (insert, n)) in ops.iter().enumerate() {
                if *insert {
                    prop_assert_eq!(tree.insert(n, i), reference.insert(n.clone(), i));
                } else {
                    prop_assert_eq!(tree.remove(n), reference.remove(n));
                }
                prop_assert_eq!(tree.len(), reference.len());
            }
            for n in reference.keys() {
                prop_assert!(tree.remove(n).is_some());
            }
            prop_assert!(tree.is_empty());
            prop_assert!(tree.is_pruned());
        }
    }
}
