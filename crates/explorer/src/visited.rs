//! The visited set: 128-bit state fingerprints mapped to a 64-bit word per state.
//!
//! Fingerprints are already uniformly distributed (xxh3), so the table hashes them with the
//! identity instead of hashing them again, and stores a key as two `u64` words rather than one
//! `u128`, whose 16-byte alignment would pad every entry from 24 to 32 bytes. Nothing here is
//! randomly seeded: the same search visits the same states in the same order on every machine.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A state fingerprint as the table stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key([u64; 2]);

impl Key {
    pub fn new(fingerprint: u128) -> Key {
        Key([fingerprint as u64, (fingerprint >> 64) as u64])
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Both words: the bounded search mixes the running thread into the high one.
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

type Shard<V> = HashMap<Key, V, BuildHasherDefault<IdentityHasher>>;

/// Shards, chosen by a fingerprint's top bits: a table grows by doubling and holds the old and
/// the new buckets while it rehashes, so one big table would need 1.5 times its size at each
/// growth; a shard grows alone. (Shards are also how a parallel search will split the set.)
const SHARDS: usize = 64;

/// Fingerprint → a word per state.
pub struct VisitedMap<V> {
    shards: Vec<Shard<V>>,
}

impl<V> Default for VisitedMap<V> {
    fn default() -> Self {
        VisitedMap { shards: (0..SHARDS).map(|_| Shard::default()).collect() }
    }
}

impl<V> VisitedMap<V> {
    fn shard(&self, key: &Key) -> &Shard<V> {
        &self.shards[(key.0[1] >> 58) as usize % SHARDS]
    }

    fn shard_mut(&mut self, key: &Key) -> &mut Shard<V> {
        &mut self.shards[(key.0[1] >> 58) as usize % SHARDS]
    }

    pub fn get(&self, key: &Key) -> Option<&V> {
        self.shard(key).get(key)
    }

    pub fn get_mut(&mut self, key: &Key) -> Option<&mut V> {
        self.shard_mut(key).get_mut(key)
    }

    pub fn contains_key(&self, key: &Key) -> bool {
        self.shard(key).contains_key(key)
    }

    pub fn insert(&mut self, key: Key, value: V) -> Option<V> {
        self.shard_mut(&key).insert(key, value)
    }

    pub fn remove(&mut self, key: &Key) -> Option<V> {
        self.shard_mut(key).remove(key)
    }

    pub fn entry(&mut self, key: Key) -> std::collections::hash_map::Entry<'_, Key, V> {
        self.shard_mut(&key).entry(key)
    }

    /// Bytes the table holds: per shard, its buckets (a power of two, at most 7/8 full), each
    /// with the key, the value and hashbrown's control byte.
    pub fn memory_bytes(&self) -> u64 {
        let bucket_bytes = (std::mem::size_of::<Key>() + std::mem::size_of::<V>() + 1) as u64;
        let buckets = |shard: &Shard<V>| match shard.capacity() {
            0 => 0,
            capacity => (capacity as u64 * 8 / 7).next_power_of_two(),
        };
        self.shards.iter().map(|shard| buckets(shard) * bucket_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_different_fingerprints_differ_in_the_table() {
        let mut map: VisitedMap<u64> = VisitedMap::default();
        assert_eq!(map.memory_bytes(), 0);
        // Keys whose words fold to the same hash are still distinct entries.
        map.insert(Key::new(7), 1);
        map.insert(Key::new(6 | (1u128 << 64)), 2);
        assert!(map.contains_key(&Key::new(6 | (1u128 << 64))));
        assert_eq!(map.get(&Key::new(7)), Some(&1));
        assert_eq!(map.remove(&Key::new(7)), Some(1));
        assert!(!map.contains_key(&Key::new(7)));
        assert_eq!(std::mem::size_of::<(Key, u64)>(), 24, "no padding in an entry");
    }
}
