//! The visited set, [`StateTable`]: state fingerprints mapped to a 32-bit word per state, in
//! 16-byte entries; and [`KeyMap`], a general fingerprint map for small sets (the states on the
//! search's stack).
//!
//! Fingerprints are already uniformly distributed (xxh3), so neither hashes them again. Nothing
//! here is randomly seeded: the same search visits the same states in the same order on every
//! machine.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A state fingerprint as the tables take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key([u64; 2]);

impl Key {
    pub fn new(fingerprint: u128) -> Key {
        Key([fingerprint as u64, (fingerprint >> 64) as u64])
    }

    /// The shard, from the top bits.
    fn shard(&self) -> usize {
        (self.0[1] >> (64 - SHARD_BITS)) as usize
    }

    /// The 96 bits a [`StateTable`] entry keeps: with the 12 bits that chose its shard, 108 bits
    /// of the fingerprint tell states apart. All-zero words mark an empty slot, so the one
    /// fingerprint whose words are all zero is stored as another.
    fn words(&self) -> [u32; 3] {
        match [self.0[0] as u32, (self.0[0] >> 32) as u32, self.0[1] as u32] {
            [0, 0, 0] => [1, 0, 0],
            words => words,
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Both words, folded: the identity hasher passes the result through.
        state.write_u64(self.0[0] ^ self.0[1]);
    }
}

/// Passes a fingerprint's folded words through: they are already a good hash.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Key`; fold anything else in deterministically.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A map keyed by fingerprints, for small sets (the states on the search's stack).
pub type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<IdentityHasher>>;

/// Shards of the [`StateTable`], chosen by a fingerprint's top bits. (Shards are also how a
/// parallel search will split the set.) Many small shards rather than a few large ones: as
/// they grow, each frees slots of a size the next shards to grow reuse, so the process touches
/// less fresh memory (first touches cost a page fault and zeroing each; 4096 shards rather
/// than 64 took the peak RSS of `madv-free-dio-anchor` at 6 pages from 87 to 64 MiB).
const SHARD_BITS: u32 = 12;
const SHARDS: usize = 1 << SHARD_BITS;

/// An entry: the key's three words and the value. `[0; 4]` is an empty slot.
type Entry = [u32; 4];

/// A slot count a shard grows by: a quarter more, so that a table is between 64% and 80%
/// full (a power of two would leave it as little as 40% full).
fn grown(slots: usize) -> usize {
    (slots + slots / 4).max(64)
}

/// One shard: open addressing with linear probing, at most 80% full.
#[derive(Default)]
struct StateShard {
    slots: Vec<Entry>,
    len: usize,
}

impl StateShard {
    /// Where a key's probe starts: its low 64 bits scaled to the slot count (any count works).
    fn home(&self, words: [u32; 3]) -> usize {
        let hash = u64::from(words[0]) | u64::from(words[1]) << 32;
        ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize
    }

    /// The slot holding `words`, or else the empty slot where they go.
    fn find(&self, words: [u32; 3]) -> Result<usize, usize> {
        let mut index = self.home(words);
        loop {
            let entry = &self.slots[index];
            if entry[..3] == words {
                return Ok(index);
            }
            if entry[..3] == [0, 0, 0] {
                return Err(index);
            }
            index = if index + 1 == self.slots.len() { 0 } else { index + 1 };
        }
    }

    fn get(&self, words: [u32; 3]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        self.find(words).ok().map(|index| self.slots[index][3])
    }

    fn insert(&mut self, words: [u32; 3], value: u32) {
        let found = match self.slots.is_empty() {
            true => Err(0),
            false => self.find(words),
        };
        let index = match found {
            Ok(index) => return self.slots[index][3] = value,
            // Only a new key can push the shard past 80% full.
            Err(_) if (self.len + 1) * 5 > self.slots.len() * 4 => {
                self.grow();
                self.find(words).expect_err("a new key")
            }
            Err(index) => index,
        };
        self.slots[index] = [words[0], words[1], words[2], value];
        self.len += 1;
    }

    fn grow(&mut self) {
        let slots = grown(self.slots.len());
        let old = std::mem::replace(&mut self.slots, vec![[0; 4]; slots]);
        for entry in old.into_iter().filter(|entry| entry[..3] != [0, 0, 0]) {
            let index = self.find([entry[0], entry[1], entry[2]]).expect_err("keys are unique");
            self.slots[index] = entry;
        }
    }
}

/// The visited set: fingerprint → a 32-bit word per state, in 16-byte entries (a general hash
/// map pads a 12-byte key and its value to 24 and rounds its capacity to a power of two). The
/// shards grow one at a time, so the peak is the set plus one shard's old slots.
pub struct StateTable {
    shards: Vec<StateShard>,
}

impl Default for StateTable {
    fn default() -> Self {
        StateTable { shards: (0..SHARDS).map(|_| StateShard::default()).collect() }
    }
}

impl StateTable {
    pub fn get(&self, key: &Key) -> Option<u32> {
        self.shards[key.shard()].get(key.words())
    }

    /// Inserts or replaces the word of `key`.
    pub fn insert(&mut self, key: Key, value: u32) {
        self.shards[key.shard()].insert(key.words(), value);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.len).sum()
    }

    /// Bytes the slots take.
    pub fn memory_bytes(&self) -> u64 {
        self.shards.iter().map(|shard| (shard.slots.len() * std::mem::size_of::<Entry>()) as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_state_table_agrees_with_a_map() {
        let mut table = StateTable::default();
        let mut map = BTreeMap::new();
        let mut random = crate::SplitMix64::new(7);
        let mut keys = Vec::new();
        for round in 0..200_000u32 {
            // Some keys come back: they overwrite.
            let fingerprint = match round % 5 {
                0 if round > 0 => keys[random.below(keys.len() as u64) as usize],
                _ => u128::from(random.next_u64()) << 64 | u128::from(random.next_u64()),
            };
            keys.push(fingerprint);
            table.insert(Key::new(fingerprint), round);
            map.insert(fingerprint, round);
            if round % 1000 == 0 {
                let absent = u128::from(random.next_u64()) << 64 | 1;
                assert_eq!(table.get(&Key::new(absent)), map.get(&absent).copied());
            }
        }
        assert_eq!(table.len(), map.len());
        for (&fingerprint, &value) in &map {
            assert_eq!(table.get(&Key::new(fingerprint)), Some(value));
        }
        // Between 64% and 80% full, but for shards at their minimum size.
        let entry_bytes = std::mem::size_of::<Entry>() as u64;
        assert!(table.memory_bytes() <= map.len() as u64 * entry_bytes * 100 / 64 + SHARDS as u64 * 64 * entry_bytes);
        assert!(table.memory_bytes() >= map.len() as u64 * entry_bytes * 100 / 80);
    }

    #[test]
    fn the_zero_fingerprint_is_a_key_like_any_other() {
        let mut table = StateTable::default();
        assert_eq!(table.get(&Key::new(0)), None);
        table.insert(Key::new(0), 9);
        assert_eq!(table.get(&Key::new(0)), Some(9));
        assert_eq!(table.len(), 1);
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn keys_of_different_fingerprints_differ_in_a_key_map() {
        let mut map: KeyMap<u32> = KeyMap::default();
        // Keys whose words fold to the same hash are still distinct entries.
        map.insert(Key::new(7), 1);
        map.insert(Key::new(6 | (1u128 << 64)), 2);
        assert!(map.contains_key(&Key::new(6 | (1u128 << 64))));
        assert_eq!(map.get(&Key::new(7)), Some(&1));
        assert_eq!(map.remove(&Key::new(7)), Some(1));
        assert!(!map.contains_key(&Key::new(7)));
    }
}
