//! Port blocks given from outside: a disaggregated BNG's control plane owns the CGNAT
//! pool and allocates each subscriber's (outside address, port block) binding (BBF
//! TR-459 CGNAT over PFCP); the user plane's `nat44` installs it with [`Nat44::bind`]
//! and removes it with [`Nat44::unbind`]. A bound subscriber is *pinned*: the fast
//! path takes its mappings' ports only from the given blocks (RFC 6888 §5, RFC 7422
//! bulk port allocation with the allocation made elsewhere) and never takes or gives
//! back a block for it. Both calls run between bursts (a worker hook); neither
//! allocates: the subscriber slot comes from the free list built at start-up.

use super::*;

/// Why a binding was refused. Nothing changed in the stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// The outside address is not in the pool.
    NotInPool,
    /// The port range is not whole blocks of the stage's geometry within the port
    /// range (and this worker's slice), or more blocks than a subscriber may hold.
    BadRange,
    /// A block of the range is held by another subscriber, or the inside address
    /// already has a different binding or dynamically allocated ports.
    Conflict,
    /// No subscriber slot or flow table room left.
    Full,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindError::NotInPool => "outside address not in the pool",
            BindError::BadRange => "port range is not whole port blocks of the pool",
            BindError::Conflict => "port block or subscriber already bound",
            BindError::Full => "subscriber table full",
        })
    }
}

impl Nat44 {
    /// The blocks `first..=last` of ports `port_first..=port_last` (whole blocks of
    /// this stage's geometry, at most the per-subscriber block limit).
    pub fn blocks_of(&self, port_first: u16, port_last: u16) -> Result<(u16, u16), BindError> {
        let p = &self.pool;
        let bs = u32::from(p.block_size.max(1));
        if port_last < port_first || port_first < p.port_min {
            return Err(BindError::BadRange);
        }
        let lo = u32::from(port_first) - u32::from(p.port_min);
        let hi = u32::from(port_last) + 1 - u32::from(p.port_min);
        if lo % bs != 0 || hi % bs != 0 {
            return Err(BindError::BadRange);
        }
        let (b0, b1) = (lo / bs, hi / bs);
        if b1 > p.blocks_per_addr || b1 - b0 > u32::from(p.max_blocks) {
            return Err(BindError::BadRange);
        }
        Ok((b0 as u16, (b1 - 1) as u16))
    }

    /// Installs the binding of inside address `inside`: outside address `outside`,
    /// ports `port_first..=port_last` (whole port blocks). The same binding again is
    /// accepted (idempotent); anything that overlaps another subscriber's blocks, a
    /// different binding of the same inside address, or dynamically allocated ports
    /// is refused, as is a full subscriber table. Allocates nothing.
    pub fn bind(
        &mut self,
        inside: Ipv4Addr,
        outside: Ipv4Addr,
        port_first: u16,
        port_last: u16,
    ) -> Result<(), BindError> {
        let inside = u32::from(inside);
        let a = self
            .pool
            .addr_index(u32::from(outside))
            .ok_or(BindError::NotInPool)?;
        let (b0, b1) = self.blocks_of(port_first, port_last)?;
        if let Some(s) = self.find_sub(inside) {
            let same = self.pool.subs.get(s as usize).is_some_and(|x| {
                x.pinned
                    && x.addr as usize == a
                    && usize::from(x.nblocks) == usize::from(b1 - b0) + 1
                    && x.blocks.first() == Some(&b0)
            });
            return if same {
                Ok(())
            } else {
                Err(BindError::Conflict)
            };
        }
        if !(b0..=b1).all(|b| self.pool.block_free(a, b)) {
            // Taken, or outside this worker's slice.
            return if (b0..=b1).all(|b| {
                let bi = b as u32;
                bi >= self.pool.slice.0 && bi < self.pool.slice.1
            }) {
                Err(BindError::Conflict)
            } else {
                Err(BindError::BadRange)
            };
        }
        let now_ns = self.now_ns;
        let mut recs = [None; MAX_BIND_BLOCKS];
        let mut k = 0;
        let s = self
            .pool
            .bind_subscriber(inside, a, b0, b1, now_ns, &mut |r| {
                if let Some(x) = recs.get_mut(k) {
                    *x = Some(*r);
                }
                k += 1;
            })
            .ok_or(BindError::Full)?;
        if !self
            .table
            .insert(key4(K_SUB, inside, 0, 0, 0, 0), tag(K_SUB, s))
        {
            self.pool.release_blocks(s, now_ns, &mut |_| {});
            self.pool.free_subscriber(s);
            return Err(BindError::Full);
        }
        for r in recs.iter().flatten() {
            self.emit_log(r);
        }
        Ok(())
    }

    /// Removes the binding of inside address `inside`: its sessions and mappings
    /// end, its blocks go back. Returns whether it had one.
    pub fn unbind(&mut self, inside: Ipv4Addr) -> bool {
        let inside = u32::from(inside);
        let Some(s) = self.find_sub(inside) else {
            return false;
        };
        let Some(sub) = self.pool.subs.get(s as usize).copied() else {
            return false;
        };
        if !sub.pinned {
            return false;
        }
        let a = sub.addr as usize;
        let ext = self.pool.addrs.get(a).map_or(0, |o| o.addr);
        for &b in sub.blocks.iter().take(usize::from(sub.nblocks)) {
            let (first, last) = self.pool.block_range(b);
            for proto in [TCP, UDP, ICMP] {
                for port in first..=last {
                    if !self.pool.port_in_use(a, proto, port) {
                        continue;
                    }
                    if let Some(m) = self.find_map_out(proto, ext, port) {
                        self.drop_mapping(m);
                    }
                }
            }
        }
        let now_ns = self.now_ns;
        let mut recs = [None; MAX_BIND_BLOCKS];
        let mut k = 0;
        self.pool.release_blocks(s, now_ns, &mut |r| {
            if let Some(x) = recs.get_mut(k) {
                *x = Some(*r);
            }
            k += 1;
        });
        for r in recs.iter().flatten() {
            self.emit_log(r);
        }
        if let Some(x) = self.pool.subs.get_mut(s as usize) {
            // Sessions and mappings are gone: nothing keeps it.
            x.sessions = 0;
            x.mappings = 0;
        }
        self.release_sub_if_idle(s);
        true
    }

    /// Ends every session of mapping `m`, and the mapping.
    fn drop_mapping(&mut self, m: u32) {
        while let Some(mp) = self.maps.get(m as usize).filter(|x| x.live).copied() {
            if mp.head == NONE {
                // A mapping without sessions: take its keys out and free it.
                self.table.remove(
                    key4(
                        K_MIN,
                        mp.in_addr,
                        mp.in_port,
                        mp.rem_addr,
                        mp.rem_port,
                        mp.proto,
                    ),
                    tag(K_MIN, m),
                );
                self.table.remove(
                    key4(K_MOUT, mp.ext_addr, mp.ext_port, 0, 0, mp.proto),
                    tag(K_MOUT, m),
                );
                self.free_mapping_port(m);
                break;
            }
            self.delete_session(mp.head);
        }
    }
}

/// Most blocks whose log records one bind or unbind writes (the per-subscriber
/// block limit).
const MAX_BIND_BLOCKS: usize = alloc::MAX_BLOCKS;
