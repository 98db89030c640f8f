//! Security Association Database (RFC 4301 §4.4.2): SAs in slots addressed by
//! [`SaId`], inbound SAs also found by SPI in O(1) (hash map; RFC 4301 §4.1 lets a
//! unicast SA be identified by SPI alone). Lifetime events go to one rekey callback.

use crate::crypto::KeyMaterial;
use crate::error::Error;
use crate::sa::{Direction, LifetimeEvent, Sa, SaConfig};
use alloc::boxed::Box;
use alloc::vec::Vec;
use hashbrown::HashMap;

/// Handle of an installed SA. Carries a generation, so a handle to a removed SA never
/// reaches the SA that later reuses its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SaId {
    index: u32,
    generation: u32,
}

struct Slot {
    generation: u32,
    sa: Option<Sa>,
}

/// Called with every soft or hard lifetime event (soft: start a rekey; hard: the SA
/// drops traffic from now on and should be deleted).
pub type RekeyCallback = Box<dyn FnMut(LifetimeEvent) + Send>;

#[derive(Default)]
pub struct Sad {
    slots: Vec<Slot>,
    free: Vec<u32>,
    inbound: HashMap<u32, SaId>,
    rekey: Option<RekeyCallback>,
}

impl Sad {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_rekey_callback(&mut self, f: RekeyCallback) {
        self.rekey = Some(f);
    }

    /// Installs an SA. Inbound SPIs must be unique.
    pub fn add(&mut self, cfg: SaConfig, km: &KeyMaterial, now: u64) -> Result<SaId, Error> {
        if cfg.direction == Direction::Inbound && self.inbound.contains_key(&cfg.spi) {
            return Err(Error::DuplicateSpi(cfg.spi));
        }
        let sa = Sa::new(cfg, km, now)?;
        let id = match self.free.pop() {
            Some(index) => {
                let slot = self.slots.get_mut(index as usize).ok_or(Error::UnknownSa)?;
                slot.sa = Some(sa);
                SaId {
                    index,
                    generation: slot.generation,
                }
            }
            None => {
                let index = u32::try_from(self.slots.len()).map_err(|_| Error::UnknownSa)?;
                self.slots.push(Slot {
                    generation: 0,
                    sa: Some(sa),
                });
                SaId {
                    index,
                    generation: 0,
                }
            }
        };
        if let Some(sa) = self.get(id) {
            if sa.cfg.direction == Direction::Inbound {
                let spi = sa.cfg.spi;
                self.inbound.insert(spi, id);
            }
        }
        Ok(id)
    }

    /// Installs an SA built elsewhere (the control plane builds SAs off the data
    /// path, see `stage::SaUpdate`). Inbound SPIs must be unique; the SA comes back
    /// with the error.
    pub fn insert(&mut self, sa: Box<Sa>) -> Result<SaId, (Error, Box<Sa>)> {
        let spi = sa.cfg.spi;
        let inbound = sa.cfg.direction == Direction::Inbound;
        if inbound && self.inbound.contains_key(&spi) {
            return Err((Error::DuplicateSpi(spi), sa));
        }
        let id = match self.free.pop() {
            Some(index) => match self.slots.get_mut(index as usize) {
                Some(slot) => {
                    slot.sa = Some(*sa);
                    SaId {
                        index,
                        generation: slot.generation,
                    }
                }
                None => return Err((Error::UnknownSa, sa)),
            },
            None => {
                let Ok(index) = u32::try_from(self.slots.len()) else {
                    return Err((Error::UnknownSa, sa));
                };
                self.slots.push(Slot {
                    generation: 0,
                    sa: Some(*sa),
                });
                SaId {
                    index,
                    generation: 0,
                }
            }
        };
        if inbound {
            self.inbound.insert(spi, id);
        }
        Ok(id)
    }

    /// Room for `n` SAs without allocating (a running worker's SAD reserves this
    /// at start-up so installs between bursts do not grow it).
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.free.reserve(n);
        self.inbound.reserve(n);
    }

    /// The installed SA with this direction and SPI (a scan: control-plane use).
    pub fn find(&self, direction: Direction, spi: u32) -> Option<SaId> {
        if direction == Direction::Inbound {
            return self.lookup_inbound(spi);
        }
        self.slots.iter().enumerate().find_map(|(index, slot)| {
            slot.sa
                .as_ref()
                .filter(|sa| sa.cfg.direction == direction && sa.cfg.spi == spi)
                .map(|_| SaId {
                    index: index as u32,
                    generation: slot.generation,
                })
        })
    }

    /// Deletes an SA (its key memory is wiped).
    pub fn remove(&mut self, id: SaId) -> Option<Sa> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let sa = slot.sa.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        if sa.cfg.direction == Direction::Inbound {
            self.inbound.remove(&sa.cfg.spi);
        }
        Some(sa)
    }

    /// Inbound SA for an SPI.
    #[inline]
    pub fn lookup_inbound(&self, spi: u32) -> Option<SaId> {
        self.inbound.get(&spi).copied()
    }

    pub fn get(&self, id: SaId) -> Option<&Sa> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.sa.as_ref()
    }

    pub fn get_mut(&mut self, id: SaId) -> Option<&mut Sa> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.sa.as_mut()
    }

    /// The SA and a sink for its lifetime events, borrowed together.
    #[inline]
    pub(crate) fn sa_and_events(
        &mut self,
        id: SaId,
    ) -> Option<(&mut Sa, impl FnMut(LifetimeEvent) + '_)> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let sa = slot.sa.as_mut()?;
        let cb = &mut self.rekey;
        Some((sa, move |e: LifetimeEvent| {
            if let Some(f) = cb.as_mut() {
                f(e)
            }
        }))
    }

    /// Checks time-based lifetimes of every SA (call about once a second).
    pub fn tick(&mut self, now: u64) {
        let cb = &mut self.rekey;
        let mut sink = |e: LifetimeEvent| {
            if let Some(f) = cb.as_mut() {
                f(e)
            }
        };
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let generation = slot.generation;
            if let Some(sa) = slot.sa.as_mut() {
                let id = SaId {
                    index: index as u32,
                    generation,
                };
                sa.tick(id, now, &mut sink);
            }
        }
    }

    /// The installed SAs (for reports; keys stay inside each [`Sa`]).
    pub fn iter(&self) -> impl Iterator<Item = &Sa> {
        self.slots.iter().filter_map(|s| s.sa.as_ref())
    }

    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.sa.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Algorithm;
    use crate::sa::{ExpiryCause, ExpiryKind, Limits};
    use alloc::sync::Arc;
    use core::net::{IpAddr, Ipv4Addr};
    use std::sync::Mutex;

    fn km() -> KeyMaterial {
        KeyMaterial::new(Algorithm::Aes128Gcm16, &[9; 20]).unwrap()
    }

    fn a(x: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, x))
    }

    #[test]
    fn spi_lookup_remove_and_stale_ids() {
        let mut sad = Sad::new();
        let id = sad
            .add(
                SaConfig::tunnel(0x1000, Direction::Inbound, a(1), a(2)),
                &km(),
                0,
            )
            .unwrap();
        assert_eq!(sad.lookup_inbound(0x1000), Some(id));
        assert_eq!(
            sad.add(
                SaConfig::tunnel(0x1000, Direction::Inbound, a(1), a(2)),
                &km(),
                0
            )
            .err(),
            Some(Error::DuplicateSpi(0x1000))
        );
        // Outbound SAs may share an SPI value with an inbound one.
        let out = sad
            .add(
                SaConfig::tunnel(0x1000, Direction::Outbound, a(2), a(1)),
                &km(),
                0,
            )
            .unwrap();
        assert!(sad.remove(id).is_some());
        assert_eq!(sad.lookup_inbound(0x1000), None);
        let again = sad
            .add(
                SaConfig::tunnel(0x2000, Direction::Inbound, a(1), a(2)),
                &km(),
                0,
            )
            .unwrap();
        assert!(sad.get(id).is_none(), "stale handle");
        assert!(sad.get(again).is_some() && sad.get(out).is_some());
        assert_eq!(sad.len(), 2);
        assert_eq!(
            sad.add(SaConfig::transport(255, Direction::Inbound), &km(), 0)
                .err(),
            Some(Error::ReservedSpi(255))
        );
    }

    #[test]
    fn time_lifetimes_fire_once_through_the_callback() {
        let mut sad = Sad::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        sad.set_rekey_callback(Box::new(move |e| s2.lock().unwrap().push(e)));
        let mut cfg = SaConfig::transport(0x3000, Direction::Outbound);
        cfg.lifetime.soft = Limits {
            seconds: Some(10),
            ..Limits::default()
        };
        cfg.lifetime.hard = Limits {
            seconds: Some(20),
            ..Limits::default()
        };
        let id = sad.add(cfg, &km(), 100).unwrap();
        sad.tick(105);
        assert!(seen.lock().unwrap().is_empty());
        sad.tick(110);
        sad.tick(111);
        sad.tick(125);
        let ev = seen.lock().unwrap().clone();
        assert_eq!(ev.len(), 2);
        assert_eq!(
            (ev[0].kind, ev[0].cause, ev[0].sa),
            (ExpiryKind::Soft, ExpiryCause::Seconds, id)
        );
        assert_eq!(ev[1].kind, ExpiryKind::Hard);
        assert!(sad.get(id).unwrap().is_expired());
    }
}
