//! Micro-benchmark of the subscription trie and the retained tree: prints
//! ns per operation. The claim checked is that matching cost does not grow
//! with the number of unrelated subscriptions (ratio 100k/1k near 1).
//! `std::time::Instant` only, so it runs anywhere without extra crates.

use broker::retain::RetainTree;
use broker::trie::SubscriptionTrie;
use std::hint::black_box;
use std::time::Instant;

const MATCHES: usize = 1_000_000;

/// xorshift64: deterministic, allocation-free topic choice.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `size` subscriptions, half exact `site/N/dev/M/temp`, half wildcard
/// `site/N/+/M/#`, each from its own client id.
fn build(size: usize) -> SubscriptionTrie<u32, u8> {
    let mut trie = SubscriptionTrie::new();
    for i in 0..size {
        let (n, m) = (i / 10, i % 10);
        let filter = if i % 2 == 0 {
            format!("site/{n}/dev/{m}/temp")
        } else {
            format!("site/{n}/+/{m}/#")
        };
        trie.insert(&filter, i as u32, 0);
    }
    assert_eq!(trie.len(), size);
    trie
}

/// Times `MATCHES` matches of topics drawn from the first `spread`
/// subscriptions of a trie of `size`. Returns (build ms, ns/match).
fn bench_size(size: usize, spread: usize) -> (f64, f64) {
    let t = Instant::now();
    let trie = build(size);
    let build_ms = t.elapsed().as_secs_f64() * 1e3;

    // 1024 topics chosen up front, each matching exactly one subscription.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let topics: Vec<String> = (0..1024)
        .map(|_| {
            let i = rng.next() as usize % spread;
            let (n, m) = (i / 10, i % 10);
            if i.is_multiple_of(2) {
                format!("site/{n}/dev/{m}/temp")
            } else {
                format!("site/{n}/dev/{m}/hum/x")
            }
        })
        .collect();

    let mut hits = 0u64;
    let t = Instant::now();
    for i in 0..MATCHES {
        trie.for_each_match(black_box(&topics[i & 1023]), |k, _| {
            hits += u64::from(*k & 1) + 1;
        });
    }
    let ns = t.elapsed().as_nanos() as f64 / MATCHES as f64;
    assert!(hits >= MATCHES as u64, "every topic matches one filter");
    black_box(hits);
    (build_ms, ns)
}

fn bench_retained() {
    const TOPICS: usize = 100_000;
    let mut tree = RetainTree::new();
    let t = Instant::now();
    for i in 0..TOPICS {
        let (n, m) = (i / 10, i % 10);
        tree.insert(&format!("site/{n}/dev/{m}/temp"), i as u32);
    }
    for i in 0..10 {
        tree.insert(&format!("$SYS/broker/{i}"), 0);
    }
    let build_ms = t.elapsed().as_secs_f64() * 1e3;

    let rounds = 20;
    let mut seen = 0usize;
    let t = Instant::now();
    for _ in 0..rounds {
        tree.for_each_match(black_box("#"), |topic, _| seen += (topic.len() & 1) + 1);
    }
    let full_ms = t.elapsed().as_secs_f64() * 1e3 / rounds as f64;
    let mut count = 0usize;
    tree.for_each_match("#", |_, _| count += 1);
    assert_eq!(count, TOPICS, "`#` skips $SYS");

    let narrow = [
        "site/4242/dev/+/temp",
        "site/777/+/3/temp",
        "site/9999/dev/9/temp",
    ];
    let rounds = 1_000_000;
    let t = Instant::now();
    for i in 0..rounds {
        tree.for_each_match(black_box(narrow[i % 3]), |_, v| seen += *v as usize & 1);
    }
    let narrow_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    println!(
        "retained {TOPICS} topics: build {build_ms:.1} ms, `#` walk {full_ms:.2} ms \
         ({:.1} ns/topic), narrow filter {narrow_ns:.1} ns/filter ({})",
        full_ms * 1e6 / TOPICS as f64,
        black_box(seen)
    );
}

fn main() {
    // `spread`: topics over all subscriptions (cold caches at 100k) and over
    // the first 1k only (same working set at every size: isolates the cost
    // of unrelated subscriptions from cache misses).
    let mut all = Vec::new();
    let mut hot = Vec::new();
    for size in [1_000, 10_000, 100_000] {
        let (build_ms, ns_all) = bench_size(size, size);
        let (_, ns_hot) = bench_size(size, 1_000);
        println!(
            "trie {size:>7} subs: build {build_ms:7.1} ms, \
             {ns_all:6.1} ns/match (topics over all subs), \
             {ns_hot:6.1} ns/match (topics over 1k subs)"
        );
        all.push(ns_all);
        hot.push(ns_hot);
    }
    println!(
        "ratio 100k/1k: {:.2} (topics over all subs), {:.2} (topics over 1k subs)",
        all[2] / all[0],
        hot[2] / hot[0]
    );
    bench_retained();
}
