//! What the application saw: which records each producer had acknowledged, which the consumers
//! read, and from that the lost, duplicated and reordered records per partition.

use std::collections::HashMap;

/// A growable set of sequence numbers.
#[derive(Debug, Default, Clone)]
pub struct SequenceSet {
    words: Vec<u64>,
}

impl SequenceSet {
    /// Adds `sequence`; false when it was already there.
    pub fn insert(&mut self, sequence: u64) -> bool {
        let (word, bit) = ((sequence / 64) as usize, sequence % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let fresh = self.words[word] & (1 << bit) == 0;
        self.words[word] |= 1 << bit;
        fresh
    }

    pub fn contains(&self, sequence: u64) -> bool {
        self.words.get((sequence / 64) as usize).is_some_and(|w| w & (1 << (sequence % 64)) != 0)
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            (0..64).filter(move |bit| word & (1 << bit) != 0).map(move |bit| i as u64 * 64 + bit)
        })
    }

    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PartitionReport {
    pub consumed: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub lost: u64,
}

/// The consumer side's view, fed record by record.
#[derive(Debug, Default)]
pub struct Verifier {
    seen: HashMap<u32, SequenceSet>,
    last: HashMap<(i32, u32), u64>,
    pub partitions: HashMap<i32, PartitionReport>,
    pub foreign: u64,
}

impl Verifier {
    /// Records one consumed record. Reordering is judged per partition and producer, where
    /// Kafka promises order.
    pub fn observe(&mut self, partition: i32, producer: u32, sequence: u64) {
        let report = self.partitions.entry(partition).or_default();
        report.consumed += 1;
        if !self.seen.entry(producer).or_default().insert(sequence) {
            report.duplicates += 1;
            return;
        }
        let last = self.last.entry((partition, producer)).or_insert(sequence);
        if sequence < *last {
            report.reordered += 1;
        } else {
            *last = sequence;
        }
    }

    pub fn has_seen(&self, producer: u32, sequence: u64) -> bool {
        self.seen.get(&producer).is_some_and(|s| s.contains(sequence))
    }

    pub fn unique(&self) -> u64 {
        self.seen.values().map(SequenceSet::len).sum()
    }

    /// Counts, per partition, the acknowledged records nobody consumed.
    pub fn settle_losses(
        &mut self,
        acked: &HashMap<u32, SequenceSet>,
        partition_of: impl Fn(u64) -> i32,
    ) -> u64 {
        let mut lost = 0;
        for (&producer, sequences) in acked {
            for sequence in sequences.iter() {
                if !self.has_seen(producer, sequence) {
                    self.partitions.entry(partition_of(sequence)).or_default().lost += 1;
                    lost += 1;
                }
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_duplicates_and_reordering_are_told_apart() {
        let mut verifier = Verifier::default();
        for sequence in [0, 2, 1, 2, 4] {
            verifier.observe((sequence % 2) as i32, 1, sequence);
        }
        let p0 = verifier.partitions[&0];
        assert_eq!((p0.consumed, p0.duplicates, p0.reordered), (4, 1, 0));
        let mut acked = HashMap::new();
        let mut set = SequenceSet::default();
        for sequence in 0..6 {
            set.insert(sequence);
        }
        acked.insert(1, set);
        assert_eq!(verifier.settle_losses(&acked, |s| (s % 2) as i32), 2, "3 and 5 never arrived");
        assert_eq!(verifier.partitions[&1].lost, 2);
        assert_eq!(verifier.unique(), 4);

        let mut reordered = Verifier::default();
        for sequence in [0, 3, 2] {
            reordered.observe(0, 9, sequence);
        }
        assert_eq!(reordered.partitions[&0].reordered, 1);
    }

    #[test]
    fn sequence_sets_iterate_in_order() {
        let mut set = SequenceSet::default();
        for s in [130, 1, 64] {
            assert!(set.insert(s));
        }
        assert!(!set.insert(64));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![1, 64, 130]);
        assert_eq!(set.len(), 3);
    }
}
