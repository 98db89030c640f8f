//! A small deterministic-stream CSPRNG (HMAC-SHA256 in counter mode, NIST SP 800-90A
//! HMAC_DRBG-like without reseeding) for magic numbers (RFC 1661 §6.4), CHAP challenges
//! (RFC 1994 §2.3) and RADIUS Request Authenticators (RFC 2865 §3), which must be
//! unpredictable. `no_std`: the seed comes from the caller (`/dev/urandom` with `std`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The generator.
#[derive(Debug, Clone)]
pub struct Rng {
    key: [u8; 32],
    ctr: u64,
    buf: [u8; 32],
    used: usize,
}

impl Rng {
    /// A generator from a 32-byte seed.
    pub fn from_seed(key: [u8; 32]) -> Rng {
        Rng {
            key,
            ctr: 0,
            buf: [0; 32],
            used: 32,
        }
    }

    /// A generator seeded from the OS (`/dev/urandom`), falling back to the clock.
    #[cfg(feature = "std")]
    pub fn from_os() -> Rng {
        use std::io::Read;
        let mut k = [0u8; 32];
        let ok = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut k))
            .is_ok();
        if !ok {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            k[..16].copy_from_slice(&t.to_le_bytes());
        }
        Rng::from_seed(k)
    }

    fn refill(&mut self) {
        if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.key) {
            m.update(&self.ctr.to_le_bytes());
            self.buf.copy_from_slice(&m.finalize().into_bytes());
        }
        self.ctr = self.ctr.wrapping_add(1);
        self.used = 0;
    }

    /// Fill `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == self.buf.len() {
                self.refill();
            }
            *b = self.buf[self.used];
            self.used += 1;
        }
    }

    /// A random u32.
    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }

    /// A random non-zero u32 (magic numbers).
    pub fn nonzero_u32(&mut self) -> u32 {
        loop {
            let v = self.u32();
            if v != 0 {
                return v;
            }
        }
    }

    /// 16 random bytes.
    pub fn bytes16(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_seed_and_position() {
        let mut a = Rng::from_seed([1; 32]);
        let mut b = Rng::from_seed([2; 32]);
        let x = a.bytes16();
        assert_ne!(x, a.bytes16());
        assert_ne!(x, b.bytes16());
        assert_eq!(x, Rng::from_seed([1; 32]).bytes16());
    }
}
