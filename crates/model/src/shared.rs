//! Copy-on-write parts of a state with cached fingerprints.
//!
//! The explorer clones a state for every transition and fingerprints every state it reaches.
//! Parts behind [`Shared`] are cloned by reference and copied only when a step writes them
//! (`make_mut`); each caches the 128-bit hash of its contents, so a state's fingerprint costs
//! the parts a step changed, not the whole state.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::hash::{Hash, Hasher};
use std::ops::{Deref, Index};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A `Hasher` streaming into xxh3-128 (fixed seed: the same on every machine).
pub struct Xxh3Hasher(xxhash_rust::xxh3::Xxh3);

impl Xxh3Hasher {
    pub fn new() -> Self {
        Xxh3Hasher(xxhash_rust::xxh3::Xxh3::new())
    }

    pub fn digest128(&self) -> u128 {
        self.0.digest128()
    }
}

impl Default for Xxh3Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher for Xxh3Hasher {
    fn finish(&self) -> u64 {
        self.0.digest()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Bytes of a value's encoding hashed in one call: a chunk of 16 folios (16 cached 128-bit
/// fingerprints and a length) and the whole kernel's top level both fit, so neither pays for
/// the streaming hasher.
const ENCODER_BYTES: usize = 512;

/// Collects a value's `Hash` encoding in a stack buffer (most parts are small), spilling
/// into a streaming hasher when it is larger.
struct Encoder {
    buffer: [u8; ENCODER_BYTES],
    used: usize,
    spill: Option<Xxh3Hasher>,
}

impl Encoder {
    #[inline]
    fn put<const N: usize>(&mut self, bytes: [u8; N]) {
        if self.spill.is_none() && self.used + N <= self.buffer.len() {
            self.buffer[self.used..self.used + N].copy_from_slice(&bytes);
            self.used += N;
        } else {
            self.write(&bytes);
        }
    }
}

macro_rules! write_le {
    ($($method:ident: $type:ty,)*) => {
        $(
            #[inline]
            fn $method(&mut self, value: $type) {
                self.put(value.to_le_bytes());
            }
        )*
    };
}

impl Hasher for Encoder {
    fn finish(&self) -> u64 {
        0
    }

    // Integers go in as fixed-width little-endian bytes, so fingerprints do not depend on the
    // machine's byte order or word size.
    write_le! {
        write_u8: u8,
        write_u16: u16,
        write_u32: u32,
        write_u64: u64,
        write_u128: u128,
        write_i32: i32,
        write_i64: i64,
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.put((value as u64).to_le_bytes());
    }

    #[inline]
    fn write_isize(&mut self, value: isize) {
        self.put((value as i64).to_le_bytes());
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(spill) = self.spill.as_mut() {
            spill.write(bytes);
        } else if self.used + bytes.len() <= self.buffer.len() {
            self.buffer[self.used..self.used + bytes.len()].copy_from_slice(bytes);
            self.used += bytes.len();
        } else {
            let mut spill = Xxh3Hasher::new();
            spill.write(&self.buffer[..self.used]);
            spill.write(bytes);
            self.spill = Some(spill);
        }
    }
}

/// The 128-bit hash of a value's `Hash` encoding.
pub fn hash128<T: Hash + ?Sized>(value: &T) -> u128 {
    let mut encoder = Encoder { buffer: [0; ENCODER_BYTES], used: 0, spill: None };
    value.hash(&mut encoder);
    match encoder.spill {
        Some(spill) => spill.digest128(),
        None => xxhash_rust::xxh3::xxh3_128(&encoder.buffer[..encoder.used]),
    }
}

/// A cached hash. Two threads computing it at once store the same value, so relaxed atomics
/// suffice (and keep states `Send` and `Sync` for a parallel search).
#[derive(Debug, Default)]
struct HashCache {
    valid: AtomicBool,
    low: AtomicU64,
    high: AtomicU64,
}

impl HashCache {
    fn get(&self) -> Option<u128> {
        if !self.valid.load(Ordering::Acquire) {
            return None;
        }
        let low = self.low.load(Ordering::Relaxed);
        let high = self.high.load(Ordering::Relaxed);
        Some(u128::from(high) << 64 | u128::from(low))
    }

    fn set(&self, value: u128) {
        self.low.store(value as u64, Ordering::Relaxed);
        self.high.store((value >> 64) as u64, Ordering::Relaxed);
        self.valid.store(true, Ordering::Release);
    }

    fn copy(&self) -> HashCache {
        let cache = HashCache::default();
        if let Some(value) = self.get() {
            cache.set(value);
        }
        cache
    }
}

/// A shared, copy-on-write value with a cached hash.
#[derive(Debug)]
pub struct Shared<T> {
    inner: Arc<T>,
    hash: HashCache,
}

impl<T: Hash + Clone> Shared<T> {
    pub fn new(value: T) -> Self {
        Shared { inner: Arc::new(value), hash: HashCache::default() }
    }

    /// Write access: copies the value if another state shares it, and forgets the hash.
    pub fn make_mut(&mut self) -> &mut T {
        *self.hash.valid.get_mut() = false;
        Arc::make_mut(&mut self.inner)
    }

    /// Whether both share one value (then neither was written since one was cloned).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    pub fn fingerprint(&self) -> u128 {
        if let Some(value) = self.hash.get() {
            return value;
        }
        let value = hash128(&*self.inner);
        self.hash.set(value);
        value
    }
}

impl<T: Default + Hash + Clone> Default for Shared<T> {
    fn default() -> Self {
        Shared::new(T::default())
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared { inner: Arc::clone(&self.inner), hash: self.hash.copy() }
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: Hash + Clone> Hash for Shared<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.fingerprint());
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || *self.inner == *other.inner
    }
}

impl<T: Eq> Eq for Shared<T> {}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Shared { inner: Arc::new(T::deserialize(deserializer)?), hash: HashCache::default() })
    }
}

const CHUNK: usize = 16;

/// A vector of shared values in shared chunks of 16: cloning it copies one pointer per chunk.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkedVec<T: Hash + Clone> {
    chunks: Vec<Shared<Vec<Shared<T>>>>,
    len: usize,
}

impl<T: Hash + Clone> Default for ChunkedVec<T> {
    fn default() -> Self {
        ChunkedVec { chunks: Vec::new(), len: 0 }
    }
}

impl<T: Hash + Clone> ChunkedVec<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, value: T) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Shared::new(Vec::with_capacity(CHUNK)));
        }
        self.chunks.last_mut().expect("a chunk").make_mut().push(Shared::new(value));
        self.len += 1;
    }

    pub fn make_mut(&mut self, index: usize) -> &mut T {
        self.chunks[index / CHUNK].make_mut()[index % CHUNK].make_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|chunk| chunk.iter().map(|item| &**item))
    }

    /// The indices below both lengths whose values differ, skipping the chunks both share.
    pub fn differing<'a>(&'a self, other: &'a Self) -> impl Iterator<Item = usize> + 'a
    where
        T: PartialEq,
    {
        let chunks = self.chunks.iter().zip(&other.chunks).enumerate();
        chunks.filter(|(_, (a, b))| !Shared::ptr_eq(a, b)).flat_map(|(chunk, (a, b))| {
            let items = a.iter().zip(b.iter()).enumerate();
            items.filter(|(_, (x, y))| !Shared::ptr_eq(x, y) && x != y).map(move |(item, _)| chunk * CHUNK + item)
        })
    }
}

impl<T: Hash + Clone> Index<usize> for ChunkedVec<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        &self.chunks[index / CHUNK][index % CHUNK]
    }
}

impl<T: Hash + Clone> FromIterator<T> for ChunkedVec<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut vec = ChunkedVec::new();
        for value in iter {
            vec.push(value);
        }
        vec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_on_write_and_rehashes() {
        let mut a: ChunkedVec<u32> = (0..40).collect();
        let b = a.clone();
        let before = hash128(&a);
        *a.make_mut(33) = 7;
        assert_eq!(b[33], 33);
        assert_eq!(a[33], 7);
        assert_ne!(hash128(&a), before);
        *a.make_mut(33) = 33;
        assert_eq!(hash128(&a), before);
        assert_eq!(a, b);
        assert_eq!(a.iter().count(), 40);
    }
}
