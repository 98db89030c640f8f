//! IPv4 address pools for subscribers (RFC 2869 §5.18 Framed-Pool selects one by name;
//! RFC 2865 §5.8 Framed-IP-Address overrides). Each pool is one or more ranges with a
//! bitmap of used addresses; allocation is a scan from a rotating hint.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// One pool.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Name (matched against Framed-Pool).
    pub name: String,
    ranges: Vec<(u32, u32)>,
    used: Vec<u64>,
    size: u32,
    hint: u32,
    in_use: u32,
}

/// Why an address could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// No pool of that name.
    NoSuchPool,
    /// The pool is exhausted.
    Exhausted,
    /// The address is already in use.
    InUse,
}

impl Pool {
    /// A pool of inclusive ranges (big-endian u32 addresses). Empty or inverted ranges
    /// are ignored.
    pub fn new(name: &str, ranges: &[(u32, u32)]) -> Pool {
        let ranges: Vec<(u32, u32)> = ranges.iter().copied().filter(|(a, b)| a <= b).collect();
        let size: u64 = ranges.iter().map(|(a, b)| u64::from(b - a) + 1).sum();
        let size = size.min(u64::from(u32::MAX)) as u32;
        Pool {
            name: String::from(name),
            ranges,
            used: vec![0; (size as usize).div_ceil(64)],
            size,
            hint: 0,
            in_use: 0,
        }
    }

    fn index_of(&self, addr: u32) -> Option<u32> {
        let mut base = 0u32;
        for &(a, b) in &self.ranges {
            if (a..=b).contains(&addr) {
                return Some(base + (addr - a));
            }
            base += b - a + 1;
        }
        None
    }

    fn addr_of(&self, mut idx: u32) -> Option<u32> {
        for &(a, b) in &self.ranges {
            let n = b - a + 1;
            if idx < n {
                return Some(a + idx);
            }
            idx -= n;
        }
        None
    }

    fn bit(&self, i: u32) -> bool {
        self.used
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, i: u32, v: bool) {
        if let Some(w) = self.used.get_mut((i / 64) as usize) {
            if v {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// Addresses in use.
    pub fn in_use(&self) -> u32 {
        self.in_use
    }

    /// Total addresses.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether `addr` belongs to this pool.
    pub fn contains(&self, addr: u32) -> bool {
        self.index_of(addr).is_some()
    }

    /// Allocate any free address.
    pub fn alloc(&mut self) -> Result<u32, PoolError> {
        if self.in_use >= self.size {
            return Err(PoolError::Exhausted);
        }
        let words = self.used.len() as u32;
        let start = self.hint / 64;
        for k in 0..=words {
            let w = (start + k) % words.max(1);
            let word = self.used.get(w as usize).copied().unwrap_or(u64::MAX);
            if word != u64::MAX {
                let i = w * 64 + (!word).trailing_zeros();
                if i < self.size {
                    self.set(i, true);
                    self.in_use += 1;
                    self.hint = i + 1;
                    return self.addr_of(i).ok_or(PoolError::Exhausted);
                }
            }
        }
        Err(PoolError::Exhausted)
    }

    /// Take a specific address (RADIUS Framed-IP-Address inside this pool).
    pub fn take(&mut self, addr: u32) -> Result<(), PoolError> {
        let i = self.index_of(addr).ok_or(PoolError::NoSuchPool)?;
        if self.bit(i) {
            return Err(PoolError::InUse);
        }
        self.set(i, true);
        self.in_use += 1;
        Ok(())
    }

    /// Return an address; addresses outside the pool or already free are ignored.
    pub fn free(&mut self, addr: u32) {
        if let Some(i) = self.index_of(addr) {
            if self.bit(i) {
                self.set(i, false);
                self.in_use -= 1;
            }
        }
    }
}

/// All pools, the first being the default.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    pools: Vec<Pool>,
}

impl Pools {
    /// From a list of pools (the first is the default).
    pub fn new(pools: Vec<Pool>) -> Pools {
        Pools { pools }
    }

    /// Allocate from the pool `name` (or the default pool).
    pub fn alloc(&mut self, name: Option<&str>) -> Result<u32, PoolError> {
        let p = match name {
            Some(n) => self
                .pools
                .iter_mut()
                .find(|p| p.name == n)
                .ok_or(PoolError::NoSuchPool)?,
            None => self.pools.first_mut().ok_or(PoolError::NoSuchPool)?,
        };
        p.alloc()
    }

    /// Reserve a specific address: in its pool if one holds it; addresses outside all
    /// pools are accepted as static (not tracked).
    pub fn take(&mut self, addr: u32) -> Result<(), PoolError> {
        match self.pools.iter_mut().find(|p| p.contains(addr)) {
            Some(p) => p.take(addr),
            None => Ok(()),
        }
    }

    /// Return an address to whichever pool holds it.
    pub fn free(&mut self, addr: u32) {
        if let Some(p) = self.pools.iter_mut().find(|p| p.contains(addr)) {
            p.free(addr);
        }
    }

    /// Iterate pools.
    pub fn iter(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_exhaust() {
        let mut p = Pool::new("a", &[(10, 12), (100, 100)]);
        assert_eq!(p.size(), 4);
        let got: Vec<u32> = (0..4).map(|_| p.alloc().unwrap()).collect();
        assert_eq!(got, [10, 11, 12, 100]);
        assert_eq!(p.alloc(), Err(PoolError::Exhausted));
        p.free(11);
        p.free(11);
        assert_eq!(p.in_use(), 3);
        assert_eq!(p.alloc(), Ok(11));
        assert_eq!(p.take(12), Err(PoolError::InUse));
    }

    #[test]
    fn named_pools() {
        let mut ps = Pools::new(vec![
            Pool::new("default", &[(1, 1000)]),
            Pool::new("gold", &[(5000, 5001)]),
        ]);
        assert_eq!(ps.alloc(Some("gold")), Ok(5000));
        assert_eq!(ps.alloc(Some("nope")), Err(PoolError::NoSuchPool));
        assert_eq!(ps.alloc(None), Ok(1));
        assert_eq!(ps.take(7), Ok(()));
        assert_ne!(ps.alloc(None), Ok(7));
        assert_eq!(ps.take(99999), Ok(()));
        let p = ps.iter().next().unwrap();
        assert_eq!(p.in_use(), 3);
    }
}
