//! Key storage: the key server holds the keys of every pair's SAs in fixed-size
//! slots of a few large [`Secret`] chunks, so that thousands of pairs cost a few
//! pages of `memfd_secret(2)` memory (when the kernel allows it; the heap, wiped on
//! drop, otherwise) instead of a page each. Freed slots are zeroized at once.

use crate::prelude::*;
use ipsec::secret::{Secret, Storage};

/// Octets per slot: the two directions' key ‖ salt of one epoch (2 × 36 at most).
pub const SLOT: usize = 72;
const PER_CHUNK: usize = 512;
type Chunk = [[u8; SLOT]; PER_CHUNK];

/// Slots of key material in secret memory.
#[derive(Default)]
pub struct KeyArena {
    chunks: Vec<Secret<Chunk>>,
    free: Vec<u32>,
}

impl KeyArena {
    pub fn new() -> Self {
        KeyArena::default()
    }

    /// Stores `bytes` (at most [`SLOT`] octets, zero-padded) in a new slot.
    pub fn alloc(&mut self, bytes: &[u8]) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let base = (self.chunks.len() * PER_CHUNK) as u32;
                self.chunks.push(Secret::new([[0u8; SLOT]; PER_CHUNK]));
                self.free.extend((base + 1..base + PER_CHUNK as u32).rev());
                base
            }
        };
        let d = self.slot_mut(slot);
        d.fill(0);
        let n = bytes.len().min(SLOT);
        d[..n].copy_from_slice(&bytes[..n]);
        slot
    }

    fn slot_mut(&mut self, slot: u32) -> &mut [u8; SLOT] {
        let (c, i) = (slot as usize / PER_CHUNK, slot as usize % PER_CHUNK);
        &mut self.chunks[c][i]
    }

    /// The slot's octets.
    pub fn get(&self, slot: u32) -> &[u8; SLOT] {
        let (c, i) = (slot as usize / PER_CHUNK, slot as usize % PER_CHUNK);
        &self.chunks[c][i]
    }

    /// Zeroizes the slot and makes it available again.
    pub fn free(&mut self, slot: u32) {
        zeroize::Zeroize::zeroize(self.slot_mut(slot));
        self.free.push(slot);
    }

    /// Slots in use.
    pub fn used(&self) -> usize {
        self.chunks.len() * PER_CHUNK - self.free.len()
    }

    /// Whether the keys live in `memfd_secret(2)` memory.
    pub fn in_secret_memory(&self) -> bool {
        self.chunks
            .first()
            .is_some_and(|c| matches!(c.storage(), Storage::SecretMem { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_wiped() {
        let mut a = KeyArena::new();
        let s = a.alloc(&[7; 40]);
        assert_eq!(&a.get(s)[..40], &[7; 40]);
        assert_eq!(a.get(s)[40], 0);
        let t = a.alloc(&[9; SLOT]);
        assert_ne!(s, t);
        a.free(s);
        assert_eq!(a.get(s), &[0; SLOT]);
        assert_eq!(a.alloc(&[1]), s);
        assert_eq!(a.used(), 2);
        for _ in 0..PER_CHUNK {
            a.alloc(&[3]);
        }
        assert_eq!(a.used(), 2 + PER_CHUNK);
    }
}
