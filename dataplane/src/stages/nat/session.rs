//! `nat44` tables: lookups of sessions, mappings and subscribers in the flow
//! table, mapping creation with port allocation (RFC 4787 §4.1 REQ-1..4, RFC 6888 §5
//! port blocks), session creation and removal, idle expiry (RFC 4787 REQ-5, RFC 5382
//! §5, RFC 5508 §3.2) and the CGNAT log records (RFC 6888 §4 REQ-12).

use super::*;

impl Nat44 {
    #[inline(always)]
    pub(super) fn is_inside(&self, port: u16) -> bool {
        port < 64 && self.inside & (1 << port) != 0
    }

    #[inline(always)]
    pub(super) fn in_pool(&self, a: u32) -> bool {
        a >= self.pool_lo
            && a <= self.pool_hi
            && (self.pool_dense || self.pool.addr_index(a).is_some())
    }

    #[inline(always)]
    pub(super) fn timeout(&self, s: &Session) -> u32 {
        match s.proto {
            UDP => self.t_udp,
            TCP => {
                let both = TCP_SYN_IN | TCP_SYN_OUT;
                if s.tcp & both == both && s.tcp & (TCP_RST | TCP_FIN_IN | TCP_FIN_OUT) == 0 {
                    self.t_tcp_est
                } else if s.tcp & (TCP_FIN_IN | TCP_FIN_OUT) != 0
                    && s.tcp & (TCP_FIN_IN | TCP_FIN_OUT) != (TCP_FIN_IN | TCP_FIN_OUT)
                    && s.tcp & TCP_RST == 0
                    && s.tcp & both == both
                {
                    // Half-closed: still established until both FINs are seen.
                    self.t_tcp_est
                } else {
                    self.t_tcp_trans
                }
            }
            _ => self.t_icmp,
        }
    }

    #[inline(always)]
    pub(super) fn expired(&self, s: &Session, now: u32) -> bool {
        now.wrapping_sub(s.last) > self.timeout(s) && (now.wrapping_sub(s.last) as i32) > 0
    }

    #[inline]
    pub(super) fn find_sess_in(&self, f: &Flow) -> Option<u32> {
        let h = key4(K_SIN, f.src, f.sport, f.dst, f.dport, f.proto);
        self.find_sess_in_h(f, h)
    }

    #[inline(always)]
    pub(super) fn sess_in_eq(&self, v: u32, f: &Flow) -> bool {
        v >> 29 == K_SIN
            && self.sessions.get((v & IDX_MASK) as usize).is_some_and(|s| {
                s.live
                    && s.in_addr == f.src
                    && s.in_port == f.sport
                    && s.rem_addr == f.dst
                    && s.rem_port == f.dport
                    && s.proto == f.proto
            })
    }

    #[inline(always)]
    pub(super) fn sess_out_eq(&self, v: u32, f: &Flow) -> bool {
        v >> 29 == K_SOUT
            && self.sessions.get((v & IDX_MASK) as usize).is_some_and(|s| {
                s.live
                    && s.rem_addr == f.src
                    && s.rem_port == f.sport
                    && s.ext_addr == f.dst
                    && s.ext_port == f.dport
                    && s.proto == f.proto
            })
    }

    #[inline]
    pub(super) fn find_sess_in_h(&self, f: &Flow, h: u64) -> Option<u32> {
        self.table
            .find(h, |v| self.sess_in_eq(v, f))
            .map(|v| v & IDX_MASK)
    }

    #[inline]
    pub(super) fn find_sess_out_h(&self, f: &Flow, h: u64) -> Option<u32> {
        self.table
            .find(h, |v| self.sess_out_eq(v, f))
            .map(|v| v & IDX_MASK)
    }

    /// The mapping-key remote part under the configured mapping behaviour.
    #[inline]
    pub(super) fn map_remote(&self, f: &Flow) -> (u32, u16) {
        match self.mapping {
            Behavior::EndpointIndependent => (0, 0),
            Behavior::AddressDependent => (f.dst, 0),
            Behavior::AddressAndPortDependent => (f.dst, f.dport),
        }
    }

    pub(super) fn find_map_in(&self, f: &Flow) -> Option<u32> {
        let (ra, rp) = self.map_remote(f);
        let h = key4(K_MIN, f.src, f.sport, ra, rp, f.proto);
        self.table
            .find(h, |v| {
                v >> 29 == K_MIN
                    && self.maps.get((v & IDX_MASK) as usize).is_some_and(|m| {
                        m.live
                            && m.in_addr == f.src
                            && m.in_port == f.sport
                            && m.rem_addr == ra
                            && m.rem_port == rp
                            && m.proto == f.proto
                    })
            })
            .map(|v| v & IDX_MASK)
    }

    pub(super) fn find_map_out(&self, proto: u8, ext: u32, ext_port: u16) -> Option<u32> {
        let h = key4(K_MOUT, ext, ext_port, 0, 0, proto);
        self.table
            .find(h, |v| {
                v >> 29 == K_MOUT
                    && self.maps.get((v & IDX_MASK) as usize).is_some_and(|m| {
                        m.live && m.ext_addr == ext && m.ext_port == ext_port && m.proto == proto
                    })
            })
            .map(|v| v & IDX_MASK)
    }

    pub(super) fn find_sub(&self, inside: u32) -> Option<u32> {
        let h = key4(K_SUB, inside, 0, 0, 0, 0);
        self.table
            .find(h, |v| {
                v >> 29 == K_SUB
                    && self
                        .pool
                        .subs
                        .get((v & IDX_MASK) as usize)
                        .is_some_and(|s| s.live && s.inside == inside)
            })
            .map(|v| v & IDX_MASK)
    }

    pub(super) fn emit_log(&mut self, r: &LogRecord) {
        match r.event {
            LogEvent::Alloc => self.stats.blocks_allocated += 1,
            LogEvent::Release => self.stats.blocks_released += 1,
        }
        if !self.cgnat_log {
            return;
        }
        self.stats.log_records += 1;
        match self.sink.as_mut() {
            Some(s) => s.record(r),
            None => self.log.record(r),
        }
    }

    /// Creates a mapping for inside flow `f` (subscriber, port, keys).
    pub(super) fn new_mapping(&mut self, f: &Flow) -> Result<u32, NatDrop> {
        let sub = match self.find_sub(f.src) {
            Some(s) => s,
            None if self.external_blocks => return Err(NatDrop::NoBinding),
            None => {
                let s = self
                    .pool
                    .new_subscriber(f.src)
                    .ok_or(NatDrop::SubscribersFull)?;
                if !self
                    .table
                    .insert(key4(K_SUB, f.src, 0, 0, 0, 0), tag(K_SUB, s))
                {
                    self.pool.free_subscriber(s);
                    return Err(NatDrop::TableFull);
                }
                s
            }
        };
        let Some(m) = self.map_free.pop() else {
            self.release_sub_if_idle(sub);
            return Err(NatDrop::TableFull);
        };
        let now_ns = self.now_ns;
        let mut recs: [Option<LogRecord>; 1] = [None];
        let got = self
            .pool
            .alloc_port(sub, f.proto, f.sport, now_ns, &mut |r| recs[0] = Some(*r));
        if let Some(r) = recs[0] {
            self.emit_log(&r);
        }
        let (ext, port) = match got {
            Ok(x) => x,
            Err(e) => {
                self.map_free.push(m);
                self.release_sub_if_idle(sub);
                self.stats.block_alloc_failures += 1;
                return Err(match e {
                    AllocError::NoPort => NatDrop::NoPort,
                    AllocError::NoBlock => NatDrop::NoBlock,
                });
            }
        };
        let (ra, rp) = self.map_remote(f);
        let mp = Mapping {
            in_addr: f.src,
            ext_addr: ext,
            rem_addr: ra,
            in_port: f.sport,
            ext_port: port,
            rem_port: rp,
            proto: f.proto,
            live: true,
            sub,
            head: NONE,
            sessions: 0,
        };
        if let Some(slot) = self.maps.get_mut(m as usize) {
            *slot = mp;
        }
        let ok1 = self
            .table
            .insert(key4(K_MIN, f.src, f.sport, ra, rp, f.proto), tag(K_MIN, m));
        let ok2 = ok1
            && self
                .table
                .insert(key4(K_MOUT, ext, port, 0, 0, f.proto), tag(K_MOUT, m));
        if let Some(s) = self.pool.subs.get_mut(sub as usize) {
            s.mappings += 1;
        }
        self.stats.mappings_created += 1;
        if !ok2 {
            if ok1 {
                self.table
                    .remove(key4(K_MIN, f.src, f.sport, ra, rp, f.proto), tag(K_MIN, m));
            }
            self.free_mapping_port(m);
            return Err(NatDrop::TableFull);
        }
        Ok(m)
    }

    pub(super) fn release_sub_if_idle(&mut self, sub: u32) {
        let Some(s) = self.pool.subs.get(sub as usize) else {
            return;
        };
        if s.live && s.nblocks == 0 && s.sessions == 0 && s.mappings == 0 {
            let inside = s.inside;
            self.table
                .remove(key4(K_SUB, inside, 0, 0, 0, 0), tag(K_SUB, sub));
            self.pool.free_subscriber(sub);
        }
    }

    /// Releases mapping `m`'s port and slot (keys must already be out of the table).
    pub(super) fn free_mapping_port(&mut self, m: u32) {
        let Some(mp) = self.maps.get_mut(m as usize) else {
            return;
        };
        if !mp.live {
            return;
        }
        mp.live = false;
        let mp = *mp;
        self.map_free.push(m);
        let now_ns = self.now_ns;
        let mut recs: [Option<LogRecord>; 1] = [None];
        self.pool.free_port(
            mp.sub,
            mp.ext_addr,
            mp.proto,
            mp.ext_port,
            now_ns,
            &mut |r| recs[0] = Some(*r),
        );
        if let Some(r) = recs[0] {
            self.emit_log(&r);
        }
        if let Some(s) = self.pool.subs.get_mut(mp.sub as usize) {
            s.mappings = s.mappings.saturating_sub(1);
        }
        self.release_sub_if_idle(mp.sub);
    }

    /// Adds a session under mapping `m` with remote endpoint (`ra`, `rp`).
    pub(super) fn new_session(
        &mut self,
        m: u32,
        ra: u32,
        rp: u16,
        now: u32,
    ) -> Result<u32, NatDrop> {
        let Some(mp) = self.maps.get(m as usize).copied() else {
            return Err(NatDrop::TableFull);
        };
        if self
            .pool
            .subs
            .get(mp.sub as usize)
            .is_some_and(|s| s.sessions >= self.sess_limit)
        {
            return Err(NatDrop::SessionLimit);
        }
        let Some(s) = self.sess_free.pop() else {
            return Err(NatDrop::TableFull);
        };
        let sess = Session {
            in_addr: mp.in_addr,
            ext_addr: mp.ext_addr,
            rem_addr: ra,
            in_port: mp.in_port,
            ext_port: mp.ext_port,
            rem_port: rp,
            proto: mp.proto,
            tcp: 0,
            last: now,
            map: m,
            next: mp.head,
            prev: NONE,
            live: true,
        };
        let hin = key4(K_SIN, sess.in_addr, sess.in_port, ra, rp, sess.proto);
        let hout = key4(K_SOUT, ra, rp, sess.ext_addr, sess.ext_port, sess.proto);
        if !self.table.insert(hin, tag(K_SIN, s)) {
            self.sess_free.push(s);
            return Err(NatDrop::TableFull);
        }
        if !self.table.insert(hout, tag(K_SOUT, s)) {
            self.table.remove(hin, tag(K_SIN, s));
            self.sess_free.push(s);
            return Err(NatDrop::TableFull);
        }
        if let Some(h) = self.sessions.get_mut(mp.head as usize) {
            h.prev = s;
        }
        if let Some(slot) = self.sessions.get_mut(s as usize) {
            *slot = sess;
        }
        if let Some(mm) = self.maps.get_mut(m as usize) {
            mm.head = s;
            mm.sessions += 1;
        }
        if let Some(sb) = self.pool.subs.get_mut(mp.sub as usize) {
            sb.sessions += 1;
        }
        self.stats.sessions_created += 1;
        Ok(s)
    }

    /// Removes session `s`, and its mapping when it was the last one.
    pub(super) fn delete_session(&mut self, s: u32) {
        let Some(sess) = self.sessions.get_mut(s as usize) else {
            return;
        };
        if !sess.live {
            return;
        }
        sess.live = false;
        let sess = *sess;
        self.sess_free.push(s);
        self.table.remove(
            key4(
                K_SIN,
                sess.in_addr,
                sess.in_port,
                sess.rem_addr,
                sess.rem_port,
                sess.proto,
            ),
            tag(K_SIN, s),
        );
        self.table.remove(
            key4(
                K_SOUT,
                sess.rem_addr,
                sess.rem_port,
                sess.ext_addr,
                sess.ext_port,
                sess.proto,
            ),
            tag(K_SOUT, s),
        );
        if let Some(p) = self.sessions.get_mut(sess.prev as usize) {
            p.next = sess.next;
        }
        if let Some(n) = self.sessions.get_mut(sess.next as usize) {
            n.prev = sess.prev;
        }
        let m = sess.map;
        let Some(mp) = self.maps.get_mut(m as usize) else {
            return;
        };
        if mp.head == s {
            mp.head = sess.next;
        }
        mp.sessions = mp.sessions.saturating_sub(1);
        let mp = *mp;
        if let Some(sb) = self.pool.subs.get_mut(mp.sub as usize) {
            sb.sessions = sb.sessions.saturating_sub(1);
        }
        if mp.sessions == 0 {
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
        }
    }

    /// Expires up to `n` session slots from the scan cursor; returns how many expired.
    pub fn expire(&mut self, now_ns: u64, n: u32) -> u32 {
        self.now_ns = now_ns;
        let now = units(now_ns);
        let len = self.sessions.len() as u32;
        let mut done = 0;
        let mut left = n.min(len);
        // In rounds of up to 64 expired sessions: find them, prefetch their table
        // buckets and mappings, then delete (hides the random misses of deletion).
        let mut dead = [0u32; 64];
        while left > 0 {
            let mut k = 0;
            while left > 0 && k < dead.len() {
                left -= 1;
                let i = self.scan_cursor;
                self.scan_cursor = if i + 1 >= len { 0 } else { i + 1 };
                if let Some(s) = self.sessions.get(i as usize) {
                    if s.live && self.expired(s, now) {
                        self.table.prefetch(key4(
                            K_SIN, s.in_addr, s.in_port, s.rem_addr, s.rem_port, s.proto,
                        ));
                        self.table.prefetch(key4(
                            K_SOUT, s.rem_addr, s.rem_port, s.ext_addr, s.ext_port, s.proto,
                        ));
                        if let Some(m) = self.maps.get(s.map as usize) {
                            prefetch(m as *const Mapping as *const u8);
                        }
                        if let Some(d) = dead.get_mut(k) {
                            *d = i;
                        }
                        k += 1;
                    }
                }
            }
            for &i in dead.iter().take(k) {
                let m = self.sessions.get(i as usize).map_or(NONE, |s| s.map);
                if let Some(mp) = self.maps.get(m as usize) {
                    if mp.sessions == 1 {
                        self.table.prefetch(key4(
                            K_MIN,
                            mp.in_addr,
                            mp.in_port,
                            mp.rem_addr,
                            mp.rem_port,
                            mp.proto,
                        ));
                        self.table
                            .prefetch(key4(K_MOUT, mp.ext_addr, mp.ext_port, 0, 0, mp.proto));
                    }
                }
            }
            for &i in dead.iter().take(k) {
                self.delete_session(i);
                self.stats.sessions_expired += 1;
                done += 1;
            }
        }
        done
    }
}
