//! Log commits that wait for the store. A batch's log position is committed only once the store
//! reports the batch durable ([`crm_store::PipelineStore::durable_positions`]): a store that
//! acknowledges a write before it persists it (a commit point every few seconds) then loses
//! nothing in a crash, because the uncommitted records are delivered again and deduplicated by
//! event id. Stores that persist before acknowledging report `Durable::All`, and every batch is
//! committed at once, as before.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use crm_eventlog::Delivered;
use crm_store::Durable;

/// The key a batch's position is reported under: `"{source}/{topic}/{partition}"`.
pub fn position_key(source: &str, record: &Delivered) -> String {
    format!("{source}/{}/{}", record.topic.name(), record.partition)
}

/// The highest offset per topic partition of `delivered`, keyed by [`position_key`].
pub fn log_positions(delivered: &[Delivered], source: &str) -> BTreeMap<String, u64> {
    // Records of one partition come in runs: a key is formatted once per run, and the run's
    // highest offset is folded in when the run ends (no allocation per record).
    let mut positions: BTreeMap<String, u64> = BTreeMap::new();
    let mut run: Option<(&Delivered, u64)> = None;
    let close = |first: &Delivered, highest: u64, positions: &mut BTreeMap<String, u64>| {
        let entry = positions.entry(position_key(source, first)).or_insert(highest);
        *entry = (*entry).max(highest);
    };
    for record in delivered {
        match &mut run {
            Some((first, highest)) if first.topic == record.topic && first.partition == record.partition => *highest = (*highest).max(record.offset),
            _ => {
                if let Some((first, highest)) = run.take() {
                    close(first, highest, &mut positions);
                }
                run = Some((record, record.offset));
            }
        }
    }
    if let Some((first, highest)) = run {
        close(first, highest, &mut positions);
    }
    positions
}

/// One marker record per topic partition (its highest offset, no payload): committing the
/// markers commits exactly what committing the batch would.
fn markers(delivered: &[Delivered]) -> Vec<Delivered> {
    let mut markers: Vec<Delivered> = Vec::new();
    for record in delivered {
        match markers.iter_mut().find(|m| m.topic == record.topic && m.partition == record.partition) {
            Some(marker) => marker.offset = marker.offset.max(record.offset),
            None => markers.push(Delivered { topic: record.topic, partition: record.partition, offset: record.offset, key: Bytes::new(), payload: Bytes::new() }),
        }
    }
    markers
}

/// Batches written to the store whose log position is not committed yet, oldest first.
#[derive(Default)]
pub struct PendingCommits {
    batches: VecDeque<(BTreeMap<String, u64>, Vec<Delivered>)>,
}

impl PendingCommits {
    /// Records a stored batch.
    pub fn push(&mut self, positions: BTreeMap<String, u64>, delivered: &[Delivered]) {
        if !delivered.is_empty() {
            self.batches.push_back((positions, markers(delivered)));
        }
    }

    /// Removes the oldest batches the store has made durable and returns what to commit for
    /// them (empty when none is). Stops at the first batch that is not durable, so the committed
    /// position never passes a batch that could still be lost.
    pub fn take_durable(&mut self, durable: &Durable) -> Vec<Delivered> {
        let mut commit: Vec<Delivered> = Vec::new();
        while let Some((positions, _)) = self.batches.front() {
            if !durable.covers(positions) {
                break;
            }
            let (_, batch_markers) = self.batches.pop_front().expect("front exists");
            for marker in batch_markers {
                match commit.iter_mut().find(|m| m.topic == marker.topic && m.partition == marker.partition) {
                    Some(existing) => existing.offset = existing.offset.max(marker.offset),
                    None => commit.push(marker),
                }
            }
        }
        commit
    }

    /// Forgets every pending batch (after a rebalance another consumer owns their partitions;
    /// the records are delivered again and deduplicated).
    pub fn clear(&mut self) {
        self.batches.clear();
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_eventlog::Topic;

    fn record(topic: Topic, partition: u32, offset: u64) -> Delivered {
        Delivered { topic, partition, offset, key: Bytes::new(), payload: Bytes::from_static(b"payload") }
    }

    #[test]
    fn positions_are_the_highest_offset_per_topic_partition() {
        let batch = [record(Topic::Events, 0, 4), record(Topic::Events, 1, 9), record(Topic::Events, 0, 7), record(Topic::DeadLetters, 0, 2)];
        let positions = log_positions(&batch, "log");
        assert_eq!(
            positions,
            BTreeMap::from([("log/events/0".to_string(), 7), ("log/events/1".to_string(), 9), ("log/dead_letters/0".to_string(), 2)])
        );
    }

    #[test]
    fn only_the_durable_prefix_is_committed() {
        let mut pending = PendingCommits::default();
        let first = [record(Topic::Events, 0, 1), record(Topic::Events, 0, 2)];
        let second = [record(Topic::Events, 0, 3), record(Topic::Events, 1, 5)];
        pending.push(log_positions(&first, "log"), &first);
        pending.push(log_positions(&second, "log"), &second);

        assert!(pending.take_durable(&Durable::Upto(BTreeMap::new())).is_empty(), "nothing durable, nothing committed");
        assert_eq!(pending.len(), 2);

        // Partition 0 durable to 3 but partition 1 not yet: only the first batch may commit.
        let durable = Durable::Upto(BTreeMap::from([("log/events/0".to_string(), 3)]));
        let commit = pending.take_durable(&durable);
        assert_eq!(commit.iter().map(|m| (m.partition, m.offset)).collect::<Vec<_>>(), vec![(0, 2)]);
        assert!(commit.iter().all(|m| m.payload.is_empty()), "markers carry no payload");
        assert_eq!(pending.len(), 1);

        let commit = pending.take_durable(&Durable::All);
        let mut committed: Vec<_> = commit.iter().map(|m| (m.partition, m.offset)).collect();
        committed.sort();
        assert_eq!(committed, vec![(0, 3), (1, 5)]);
        assert!(pending.is_empty());
    }

    #[test]
    fn a_later_durable_batch_does_not_commit_past_an_earlier_one() {
        let mut pending = PendingCommits::default();
        let first = [record(Topic::Events, 1, 10)];
        let second = [record(Topic::Events, 0, 11)];
        pending.push(log_positions(&first, "log"), &first);
        pending.push(log_positions(&second, "log"), &second);
        let durable = Durable::Upto(BTreeMap::from([("log/events/0".to_string(), 11)]));
        assert!(pending.take_durable(&durable).is_empty(), "the oldest batch (partition 1) is not durable");
        assert_eq!(pending.len(), 2);
    }
}
