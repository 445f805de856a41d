//! Traffic counting in the tail Worker's isolate: every TraceItem is counted per script, route,
//! release and 5-minute bucket (the denominator of every rate), without a D1 write per
//! invocation.
//!
//! [`TrafficAggregator`] keeps the counts of the invocations an isolate handled since its last
//! write. They go to D1 ([`crate::store::flush_statements`]) with the next batch the isolate writes
//! anyway (an invocation with an error event), or once the oldest count is
//! [`FlushPolicy::max_age_ms`] old, or when [`FlushPolicy::max_keys`] keys are pending.
//!
//! **Loss bound.** Counts live in the isolate until flushed: an isolate that the runtime evicts
//! loses what it counted since its last flush, at most `max_age_ms` of its traffic (60 s by
//! default) and never an event (events are written by the invocation that carries them). A
//! flush that fails is kept and retried as it was with the next write (at most
//! [`MAX_RETRIED_FLUSHES`] held; past that the oldest is dropped and counted in
//! [`TrafficAggregator::dropped_flushes`]). A retried flush that had in fact committed is a
//! no-op: each attempt is keyed and its rows apply only if its own key is the one stored.
//! **Redelivery**: an invocation whose batch text was already counted by this isolate is not
//! counted again (a bounded memory of [`DEDUPE_BATCHES`] batch hashes); occurrences stay exact
//! everywhere through their event keys, traffic only within an isolate.

use std::collections::{BTreeMap, HashSet, VecDeque};

use sha2::{Digest, Sha256};

use crate::event::{BatchCounts, Observation};
use crate::signal::gate::BUCKET_MS;

/// Batch hashes remembered per isolate for redelivery detection.
pub const DEDUPE_BATCHES: usize = 4096;
/// Failed flushes kept for a retry.
pub const MAX_RETRIED_FLUSHES: usize = 8;

/// When pending counts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Flush once the oldest pending count is this old, ms (`SELFHEAL_TRAFFIC_FLUSH_SECS`, 60 s;
    /// 0 = every invocation writes, as before the aggregation).
    pub max_age_ms: i64,
    /// Flush when this many (script, route, release, bucket) keys are pending.
    pub max_keys: usize,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            max_age_ms: 60_000,
            max_keys: 2000,
        }
    }
}

/// Counts of one (script, route, release, 5-minute bucket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCount {
    /// Items (requests, scheduled runs, queue batches …).
    pub requests: u64,
    /// Items that became events.
    pub errors: u64,
}

/// (script, route, release, bucket start ms).
pub type TrafficKey = (String, String, String, i64);

/// What one flush writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flush {
    /// Stable id of this flush (the same for every attempt).
    pub id: String,
    /// Attempts so far (the key of an attempt is `id:attempt`).
    pub attempt: u32,
    /// Per key counts.
    pub traffic: BTreeMap<TrafficKey, TrafficCount>,
    /// (script, release) → (first seen, last seen), ms.
    pub releases: BTreeMap<(String, String), (i64, i64)>,
    /// Delivery counts, for `ops_ingest_stats`.
    pub counts: BatchCounts,
    /// Tail invocations counted.
    pub batches: u64,
}

impl Flush {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.traffic.is_empty() && self.batches == 0
    }
}

/// In-isolate traffic counts (see the module docs).
#[derive(Debug, Default)]
pub struct TrafficAggregator {
    current: Flush,
    oldest_ms: Option<i64>,
    retry: VecDeque<Flush>,
    seen: HashSet<[u8; 16]>,
    seen_order: VecDeque<[u8; 16]>,
    /// Failed flushes dropped because [`MAX_RETRIED_FLUSHES`] were already held.
    pub dropped_flushes: u64,
}

/// sha256 prefix of a batch's text: the identity of a delivery.
pub fn batch_hash(json: &str) -> [u8; 16] {
    let d = Sha256::digest(json.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

impl TrafficAggregator {
    /// Remembers a batch; false when this isolate counted the same batch text before.
    pub fn first_delivery(&mut self, hash: [u8; 16]) -> bool {
        if !self.seen.insert(hash) {
            return false;
        }
        self.seen_order.push_back(hash);
        if self.seen_order.len() > DEDUPE_BATCHES
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    /// Counts one invocation: its observations and delivery counts, received at `now_ms`.
    pub fn add(&mut self, observed: &[Observation], counts: &BatchCounts, now_ms: i64) {
        let f = &mut self.current;
        for o in observed {
            let bucket = o.timestamp_ms.div_euclid(BUCKET_MS) * BUCKET_MS;
            let c = f
                .traffic
                .entry((o.script.clone(), o.route.clone(), o.release.clone(), bucket))
                .or_default();
            c.requests += 1;
            c.errors += u64::from(o.error);
            if !o.release.is_empty() {
                let r = f
                    .releases
                    .entry((o.script.clone(), o.release.clone()))
                    .or_insert((o.timestamp_ms, o.timestamp_ms));
                r.0 = r.0.min(o.timestamp_ms);
                r.1 = r.1.max(o.timestamp_ms);
            }
        }
        f.counts.items += counts.items;
        f.counts.events += counts.events;
        f.counts.noise += counts.noise;
        f.counts.malformed += counts.malformed;
        f.batches += 1;
        self.oldest_ms.get_or_insert(now_ms);
    }

    /// Whether pending counts should be written now. `writes_anyway`: this invocation writes
    /// D1 (it has events), so the counts ride along for free.
    pub fn due(&self, now_ms: i64, writes_anyway: bool, policy: FlushPolicy) -> bool {
        if self.current.is_empty() && self.retry.is_empty() {
            return false;
        }
        writes_anyway
            || !self.retry.is_empty()
            || self.current.traffic.len() >= policy.max_keys
            || self
                .oldest_ms
                .is_some_and(|t| now_ms - t >= policy.max_age_ms)
    }

    /// Takes what is to be written: earlier failed flushes first, then the current counts under
    /// the new id `id`. Give them back with [`TrafficAggregator::failed`] if the write fails.
    pub fn take(&mut self, id: &str) -> Vec<Flush> {
        let mut out: Vec<Flush> = self.retry.drain(..).collect();
        for f in &mut out {
            f.attempt += 1;
        }
        if !self.current.is_empty() {
            let mut f = std::mem::take(&mut self.current);
            f.id = id.to_string();
            out.push(f);
        }
        self.oldest_ms = None;
        out
    }

    /// Keeps flushes whose write failed, for a retry with the next write.
    pub fn failed(&mut self, flushes: Vec<Flush>) {
        for f in flushes {
            if self.retry.len() >= MAX_RETRIED_FLUSHES {
                self.retry.pop_front();
                self.dropped_flushes += 1;
            }
            self.retry.push_back(f);
        }
    }

    /// Pending keys (for logs and tests).
    pub fn pending_keys(&self) -> usize {
        self.current.traffic.len() + self.retry.iter().map(|f| f.traffic.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(route: &str, ts: i64, error: bool) -> Observation {
        Observation {
            script: "api".into(),
            route: route.into(),
            release: "v2".into(),
            timestamp_ms: ts,
            error,
        }
    }

    #[test]
    fn aggregates_until_due_and_retries_failed_flushes_as_they_were() {
        let mut agg = TrafficAggregator::default();
        let policy = FlushPolicy::default();
        let counts = BatchCounts {
            items: 2,
            events: 1,
            noise: 1,
            malformed: 0,
        };
        agg.add(
            &[obs("/a", 1_000, false), obs("/a", 2_000, true)],
            &counts,
            10_000,
        );
        assert!(!agg.due(20_000, false, policy), "young healthy counts wait");
        assert!(
            agg.due(20_000, true, policy),
            "a write that happens anyway takes them"
        );
        assert!(agg.due(70_000, false, policy), "60 s old: due");
        let flushes = agg.take("f1");
        assert_eq!(flushes.len(), 1);
        let c = flushes[0].traffic[&("api".into(), "/a".into(), "v2".into(), 0)];
        assert_eq!((c.requests, c.errors), (2, 1));
        assert_eq!(
            flushes[0].releases[&("api".into(), "v2".into())],
            (1_000, 2_000)
        );
        assert_eq!(flushes[0].batches, 1);
        assert!(!agg.due(80_000, false, policy));
        // The write failed: the same flush comes back with its id and the next attempt number.
        agg.failed(flushes);
        agg.add(
            &[obs("/b", 400_000, false)],
            &BatchCounts::default(),
            90_000,
        );
        assert!(agg.due(90_000, false, policy), "a retry is due at once");
        let again = agg.take("f2");
        assert_eq!(again.len(), 2);
        assert_eq!((again[0].id.as_str(), again[0].attempt), ("f1", 1));
        assert_eq!(again[1].id, "f2");
        assert_eq!(agg.pending_keys(), 0);
    }

    #[test]
    fn a_redelivered_batch_is_counted_once_per_isolate() {
        let mut agg = TrafficAggregator::default();
        let h = batch_hash("[{\"a\":1}]");
        assert!(agg.first_delivery(h));
        assert!(!agg.first_delivery(h));
        assert!(agg.first_delivery(batch_hash("[{\"a\":2}]")));
    }

    #[test]
    fn retries_are_bounded() {
        let mut agg = TrafficAggregator::default();
        for i in 0..(MAX_RETRIED_FLUSHES + 3) {
            agg.add(&[obs("/a", i as i64, false)], &BatchCounts::default(), 0);
            let f = agg.take(&format!("f{i}"));
            agg.failed(f);
        }
        assert_eq!(agg.dropped_flushes, 3);
        assert_eq!(agg.take("x").len(), MAX_RETRIED_FLUSHES);
    }
}
