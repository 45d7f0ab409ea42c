//! The memory layout of a site's profile slots: slots in fixed-size chunks and visitor ids
//! packed into an arena. Both grow without copying what is already there, and neither
//! allocates per profile: at a million profiles a `Vec` doubling held two copies of the slots
//! (~200 MB) for the length of the copy, and an `Arc<str>` per id cost its 16-byte pointer
//! plus a 32-byte allocation.

/// Slots per chunk.
const CHUNK_SLOTS: usize = 4096;

/// Numbered slots; a number never changes.
pub(super) struct Slots<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { chunks: Vec::new(), len: 0 }
    }
}

impl<T> Slots<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, slot: T) {
        if self.len % CHUNK_SLOTS == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK_SLOTS));
        }
        self.chunks.last_mut().expect("a chunk with room").push(slot);
        self.len += 1;
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> std::ops::Index<usize> for Slots<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK_SLOTS][i % CHUNK_SLOTS]
    }
}

impl<T> std::ops::IndexMut<usize> for Slots<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK_SLOTS][i % CHUNK_SLOTS]
    }
}

/// Bytes per arena chunk; a longer id gets a chunk of its own.
const CHUNK_BYTES: usize = 1 << 20;
const LEN_BITS: u32 = 24;
const START_BITS: u32 = 20;

/// Visitor ids one after another in chunks of [`CHUNK_BYTES`]. An id is known by a `u64`:
/// chunk (20 bits), start in the chunk (20 bits), length (24 bits).
#[derive(Default)]
pub(super) struct IdArena {
    chunks: Vec<String>,
}

impl IdArena {
    /// Stores `id` and returns its handle.
    pub(super) fn push(&mut self, id: &str) -> u64 {
        // Ids are bounded long before this (the collector's field limits); a longer one is cut
        // at a character boundary rather than corrupting its neighbours' handles.
        let mut len = id.len().min((1 << LEN_BITS) - 1);
        while !id.is_char_boundary(len) {
            len -= 1;
        }
        let id = &id[..len];
        let fits = self.chunks.last().is_some_and(|chunk| chunk.len() + len <= CHUNK_BYTES);
        if !fits {
            self.chunks.push(String::with_capacity(CHUNK_BYTES.max(len)));
        }
        let chunk_index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[chunk_index];
        let start = chunk.len();
        chunk.push_str(id);
        ((chunk_index as u64) << (START_BITS + LEN_BITS)) | ((start as u64) << LEN_BITS) | len as u64
    }

    pub(super) fn get(&self, handle: u64) -> &str {
        let chunk = (handle >> (START_BITS + LEN_BITS)) as usize;
        let start = ((handle >> LEN_BITS) & ((1 << START_BITS) - 1)) as usize;
        let len = (handle & ((1 << LEN_BITS) - 1)) as usize;
        &self.chunks[chunk][start..start + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_slots_keep_their_handles_across_chunks() {
        let mut arena = IdArena::default();
        let mut slots = Slots::default();
        let ids: Vec<String> = (0..200_000).map(|i| format!("visitor-{i}-{}", "é".repeat(i % 5))).collect();
        let handles: Vec<u64> = ids.iter().map(|id| arena.push(id)).collect();
        for (i, handle) in handles.iter().enumerate() {
            slots.push((i, *handle));
        }
        let long = "x".repeat(CHUNK_BYTES + 10);
        let long_handle = arena.push(&long);
        let after = arena.push("after-the-long-one");
        assert!(arena.chunks.len() > 3, "several chunks were used");
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(slots[i].0, i);
            assert_eq!(arena.get(slots[i].1), id);
        }
        assert_eq!(arena.get(long_handle), long);
        assert_eq!(arena.get(after), "after-the-long-one");
        assert_eq!(slots.len(), 200_000);
        assert_eq!(slots.iter().count(), 200_000);
    }
}
