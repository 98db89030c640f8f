//! The buffer shape ESP works on: packet bytes with headroom in front and tailroom
//! behind, so encapsulation grows the packet at both ends without moving the payload
//! (the engine's `Pkt` has 256 B of headroom for this). [`HeadroomBuf`] is a plain
//! heap implementation for tests, tools and the control plane.

use alloc::vec;
use alloc::vec::Vec;

/// A packet buffer that can grow and shrink at both ends. Every method that changes
/// the length returns `false` (and changes nothing) when the room is not there.
pub trait Buf {
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the packet by `n` bytes at the front (new bytes are unspecified).
    fn push_front(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front.
    fn pull_front(&mut self, n: usize) -> bool;
    /// Grows the packet by `n` bytes at the back (new bytes are unspecified).
    fn push_back(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the back.
    fn trim_back(&mut self, n: usize) -> bool;

    fn len(&self) -> usize {
        self.data().len()
    }

    fn is_empty(&self) -> bool {
        self.data().is_empty()
    }
}

/// A heap buffer with fixed headroom and tailroom around the packet.
#[derive(Clone, Debug)]
pub struct HeadroomBuf {
    mem: Vec<u8>,
    start: usize,
    end: usize,
}

impl HeadroomBuf {
    /// Headroom used by [`HeadroomBuf::from_packet`]: the engine's figure.
    pub const HEADROOM: usize = 256;
    /// Tailroom used by [`HeadroomBuf::from_packet`]: padding, trailer, ICV, TFC.
    pub const TAILROOM: usize = 256;

    pub fn with_room(headroom: usize, packet: &[u8], tailroom: usize) -> Self {
        let mut mem = vec![0u8; headroom + packet.len() + tailroom];
        let end = headroom + packet.len();
        if let Some(d) = mem.get_mut(headroom..end) {
            d.copy_from_slice(packet);
        }
        HeadroomBuf {
            mem,
            start: headroom,
            end,
        }
    }

    pub fn from_packet(packet: &[u8]) -> Self {
        Self::with_room(Self::HEADROOM, packet, Self::TAILROOM)
    }

    pub fn headroom(&self) -> usize {
        self.start
    }

    pub fn tailroom(&self) -> usize {
        self.mem.len() - self.end
    }

    /// Puts a new packet in, resetting head- and tailroom (reuse without allocating).
    pub fn reset(&mut self, headroom: usize, packet: &[u8]) -> bool {
        let end = headroom + packet.len();
        match self.mem.get_mut(headroom..end) {
            Some(d) => {
                d.copy_from_slice(packet);
                self.start = headroom;
                self.end = end;
                true
            }
            None => false,
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl Buf for HeadroomBuf {
    fn data(&self) -> &[u8] {
        self.mem.get(self.start..self.end).unwrap_or(&[])
    }

    fn data_mut(&mut self) -> &mut [u8] {
        self.mem.get_mut(self.start..self.end).unwrap_or(&mut [])
    }

    fn push_front(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }

    fn pull_front(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }

    fn push_back(&mut self, n: usize) -> bool {
        if n > self.mem.len() - self.end {
            return false;
        }
        self.end += n;
        true
    }

    fn trim_back(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.end -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_within_room() {
        let mut b = HeadroomBuf::with_room(4, &[1, 2, 3], 2);
        assert!(b.push_front(4));
        assert!(!b.push_front(1));
        assert!(b.push_back(2));
        assert!(!b.push_back(1));
        assert_eq!(b.len(), 9);
        assert!(b.pull_front(4) && b.trim_back(2));
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(!b.pull_front(4) && !b.trim_back(4));
    }
}
