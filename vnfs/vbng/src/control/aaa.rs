//! The control plane's AAA: RADIUS (RFC 2865) or the local user file decides each
//! session; accounting records (RFC 2866, RFC 2869 §2.1) go to the RADIUS client's
//! durable queue; RADIUS replies and timeouts drive the sessions; CoA and Disconnect
//! requests (RFC 5176) find their session and change or end it.

use super::*;

impl ControlPlane {
    pub(super) fn line(&self, e: &Entry, idx: u32) -> LineInfo {
        let mut cs = fmt_mac(&e.key.mac);
        if e.key.vlans.tag_count() > 0 {
            cs.push_str(&alloc::format!(
                "/{}/{}",
                e.key.vlans.svlan,
                e.key.vlans.cvlan
            ));
        }
        LineInfo {
            nas_ip: self.nas_ip,
            nas_id: self.nas_id.clone(),
            nas_port_id: alloc::format!(
                "access{}:{}.{}",
                e.key.port,
                e.key.vlans.svlan,
                e.key.vlans.cvlan
            ),
            nas_port: idx,
            calling_station: cs,
            ipoe: e.ppp().is_none(),
        }
    }

    pub(super) fn tag(&self, idx: u32) -> u64 {
        let gen = self
            .slots
            .get(idx as usize)
            .and_then(|s| s.as_ref())
            .map_or(0, |e| e.gen);
        (u64::from(gen) << 32) | u64::from(idx)
    }

    pub(super) fn by_tag(&self, tag: u64) -> Option<u32> {
        let idx = tag as u32;
        let gen = (tag >> 32) as u32;
        match self.slots.get(idx as usize) {
            Some(Some(e)) if e.gen == gen => Some(idx),
            _ => None,
        }
    }

    pub(super) fn acct_id(&self, idx: u32) -> String {
        let gen = self
            .slots
            .get(idx as usize)
            .and_then(|s| s.as_ref())
            .map_or(0, |e| e.gen);
        alloc::format!("{:08x}{:08x}", gen, idx)
    }

    pub(super) fn verify(&mut self, idx: u32, c: Credentials, now: u64) {
        let fallback = self.local_fallback;
        if let Some(Some(e)) = self.slots.get_mut(idx as usize) {
            e.user = c.user().to_vec();
            if let (true, Some(p)) = (fallback, e.ppp_mut()) {
                p.pending_creds = Some(c.clone());
            }
        }
        if self.radius.is_some() {
            let Some(Some(e)) = self.slots.get(idx as usize) else {
                return;
            };
            let req = radius::access_request(&self.line(e, idx), &c);
            let tag = self.tag(idx);
            if let Some(r) = self.radius.as_mut() {
                r.submit(tag, req, now);
            }
            return;
        }
        self.verify_local(idx, &c, now);
    }

    pub(super) fn verify_local(&mut self, idx: u32, c: &Credentials, now: u64) {
        let verdict = self
            .users
            .get(c.user())
            .filter(|u| c.check(&u.password))
            .map(|u| Reply {
                framed_ip: u.ip,
                rate: u.rate,
                ..Reply::default()
            });
        match verdict {
            Some(r) => self.accept(idx, r, now),
            None => self.reject(idx, now),
        }
    }

    pub(super) fn reject(&mut self, idx: u32, now: u64) {
        self.stats.auth_reject += 1;
        let link = self.link.clone();
        let Some(p) = self.ppp_mut(idx) else {
            // IPoE: no lease for a subscriber that was refused.
            self.remove_with(idx, radius::terminate_cause::NAS_REQUEST, false, now);
            return;
        };
        let mut ev = Vec::new();
        p.link.auth_result(
            &link,
            false,
            0,
            (0, 0),
            b"authentication failed",
            now,
            &mut ev,
        );
        self.events(idx, ev, now);
    }

    pub(super) fn accept(&mut self, idx: u32, reply: Reply, now: u64) {
        // Only a session waiting for its verdict takes an address: a second accept
        // (a late or duplicated answer) must not leak the first one.
        let default_rate = self.default_rate;
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if !e.waiting_for_aaa() {
            return;
        }
        if let Access::Ipoe(i) = &mut e.access {
            // IPoE: the address comes with the DHCP lease (`[ipoe]` pools); the
            // reply brings the rate, timeouts, Class and interim interval.
            i.authorized = true;
            e.rate = reply.rate.unwrap_or(default_rate);
            e.reply = reply;
            if !self.dhcp4_fix(idx, now) {
                return;
            }
            self.stats.auth_accept += 1;
            self.dhcp6_fix(idx);
            self.ipoe_authorized(idx, now);
            return;
        }
        // Address: Framed-IP-Address (0xFFFFFFFE/0xFFFFFFFF: the NAS chooses, RFC 2865
        // §5.8), else Framed-Pool, else the default pool. A fixed address outside the
        // pools is held in the in-use set too. One that cannot be honoured (martian,
        // ours, held by another session) rejects the session (RFC 6929 §2.8).
        let got = match reply.framed_ip {
            Some(ip) if ip != 0xffff_fffe && ip != 0xffff_ffff => {
                self.pools.take(Ipv4Addr::from(ip)).map(|_| ip)
            }
            _ => self.alloc_steered(idx, reply.framed_pool.as_deref()),
        };
        let ip = match got {
            Ok(ip) => ip,
            Err(e) => {
                match e {
                    PoolError::Invalid => self.stats.framed_ip_invalid += 1,
                    PoolError::InUse => self.stats.framed_ip_in_use += 1,
                    PoolError::NoSuchPool | PoolError::Exhausted => self.stats.pool_exhausted += 1,
                }
                self.reject(idx, now);
                return;
            }
        };
        let Some(prefix6) = self.alloc_prefix6(&reply) else {
            self.stats.framed_ipv6_refused += 1;
            self.pools.free(Ipv4Addr::from(ip));
            self.reject(idx, now);
            return;
        };
        self.stats.auth_accept += 1;
        let link = self.link.clone();
        let iid = (
            (u64::from(self.rng.u32()) << 32) | u64::from(self.rng.u32()),
            u64::from(ip) | 0x0200_0000_0000_0000,
        );
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            self.pools.free(Ipv4Addr::from(ip));
            self.pools6.free(Prefix64(prefix6));
            return;
        };
        e.prefix6 = prefix6;
        e.ip = ip;
        e.rate = reply.rate.unwrap_or(default_rate);
        e.reply = reply;
        self.dhcp6_fix(idx);
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let mut ev = Vec::new();
        if let Some(p) = e.ppp_mut() {
            p.link
                .auth_result(&link, true, ip, iid, b"welcome", now, &mut ev);
        }
        self.events(idx, ev, now);
    }

    /// A PPPoE session's address from pool `name`: with several workers one that
    /// steers to the worker its session id steers to ([`crate::steer`]: the
    /// session's owner, so its downstream traffic lands where its upstream does),
    /// else (that share exhausted: counted `off_share`) any free one.
    pub(super) fn alloc_steered(&mut self, idx: u32, name: Option<&str>) -> Result<u32, PoolError> {
        let n = self.workers;
        let sid = match self.slots.get(idx as usize) {
            Some(Some(e)) => e.sid(),
            _ => 0,
        };
        if n > 1 && sid != 0 {
            let w = crate::steer::sid_owner(sid, n);
            let (got, off_share) = crate::pool::alloc_in_share(&mut self.pools, name, n, w);
            if off_share {
                self.stats.off_share += 1;
            }
            return got.map(u32::from);
        }
        self.pools.alloc(name).map(u32::from)
    }

    /// IPCP opened: route the address to the session (installing the session first
    /// if IPv6CP has not already).
    pub(super) fn network_up(&mut self, idx: u32, now: u64) {
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.ipv4_up {
            return;
        }
        e.ipv4_up = true;
        if e.installed {
            // IPCP back after an IPv4-only flap: the same session, its address again.
            let upd = FibUpdate::Add {
                idx,
                key: e.key,
                sid: e.sid(),
                ip: e.ip,
                rate: e.rate,
                mtu: e.mtu(),
            };
            self.fib.push(upd);
            return;
        }
        self.install(idx, now);
    }

    /// IPCP left the Opened state while IPv6CP runs: stop routing the address. It
    /// stays allocated to the session (IPCP coming back gets it again; accounting
    /// goes on naming it).
    pub(super) fn ipv4_down(&mut self, idx: u32, now: u64) {
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.installed && e.ipv4_up {
            self.fib.push(FibUpdate::Down4 { idx, ip: e.ip });
        }
        e.ipv4_up = false;
        // IPCP finished before it ever opened while IPv6CP is open: an IPv6-only
        // session, installed now.
        if !e.installed && e.ipv6_up && !e.ppp().is_some_and(|p| p.link.ipcp_alive()) {
            self.install(idx, now);
        }
    }

    /// The first NCP opened: install the session in the fast path (its address only
    /// while IPCP is open), start the timers and accounting.
    pub(super) fn install(&mut self, idx: u32, now: u64) {
        let interim_default = self.interim_ms;
        let acct = self.acct_enabled;
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.installed {
            return;
        }
        e.installed = true;
        e.up_at = Some(now);
        let setup = now.saturating_sub(e.created);
        let interim = e
            .reply
            .interim_interval
            .map(|s| u64::from(s.max(60)) * 1000)
            .unwrap_or(interim_default);
        if acct && interim > 0 {
            e.next_interim = Some(now + interim);
        }
        if let Some(t) = e.reply.session_timeout.filter(|t| *t > 0) {
            e.hard_deadline = Some(now + u64::from(t) * 1000);
        }
        if let Some(t) = e.reply.idle_timeout.filter(|t| *t > 0) {
            e.idle = Some((u64::from(t) * 1000, now, 0));
        }
        let upd = FibUpdate::Add {
            idx,
            key: e.key,
            sid: e.sid(),
            ip: if e.ipv4_up { e.ip } else { 0 },
            rate: e.rate,
            mtu: e.mtu(),
        };
        self.counters.reset(idx);
        self.fib.push(upd);
        if self.setup_ms.len() >= SETUP_RING {
            self.setup_ms.pop_front();
        }
        self.setup_ms.push_back(setup);
        self.stats.sessions_up += 1;
        if acct {
            if let Some(Some(e)) = self.slots.get_mut(idx as usize) {
                e.acct_started = true;
            }
            self.account(idx, AcctStatus::Start, None, now);
        }
    }

    pub(super) fn record(
        &self,
        idx: u32,
        cause: Option<u32>,
        now: u64,
    ) -> Option<(LineInfo, AcctRecord)> {
        let e = self.slots.get(idx as usize)?.as_ref()?;
        let (uo, up, d_o, dp) = self.counters.get(idx);
        let r = AcctRecord {
            session_id: self.acct_id(idx),
            user: e.user.clone(),
            framed_ip: e.ip,
            session_time: (now.saturating_sub(e.up_at.unwrap_or(now)) / 1000) as u32,
            in_octets: uo,
            out_octets: d_o,
            in_packets: up,
            out_packets: dp,
            terminate_cause: cause,
            class: e.reply.class.clone(),
        };
        Some((self.line(e, idx), r))
    }

    pub(super) fn account(&mut self, idx: u32, status: AcctStatus, cause: Option<u32>, now: u64) {
        let Some((line, rec)) = self.record(idx, cause, now) else {
            return;
        };
        let v6 = match self.slots.get(idx as usize) {
            Some(Some(e)) => radius::AcctIpv6 {
                framed_prefix: (e.prefix6 != 0).then(|| (u128::from(e.prefix6) << 64, 64)),
                delegated_prefix: e.pd.as_ref().map(|(p, l, _)| (u128::from(*p) << 64, *l)),
                address: e.addr6.as_ref().map(|(a, _)| *a),
            },
            _ => radius::AcctIpv6::default(),
        };
        let req = radius::accounting_request_ipv6(&line, status, &rec, &v6);
        // The record carries all it needs: its retries do not look at the session.
        if let Some(r) = self.radius.as_mut() {
            r.submit_acct(req, now);
        }
    }

    pub(super) fn poll_radius(&mut self, now: u64) {
        let Some(r) = self.radius.as_mut() else {
            return;
        };
        let tx = r.poll(now);
        self.radius_tx.extend(tx);
        let events = match self.radius.as_mut() {
            Some(r) => r.events(),
            None => Vec::new(),
        };
        for ev in events {
            match ev {
                Event::Response {
                    tag, code, reply, ..
                } => {
                    let Some(idx) = self.by_tag(tag) else {
                        continue;
                    };
                    if let Some(p) = self.ppp_mut(idx) {
                        p.pending_creds = None;
                    }
                    if code == rcode::ACCESS_ACCEPT {
                        self.accept(idx, *reply, now);
                    } else if code == rcode::ACCESS_REJECT || code == rcode::ACCESS_CHALLENGE {
                        self.reject(idx, now);
                    }
                }
                Event::Timeout { tag } => {
                    let Some(idx) = self.by_tag(tag) else {
                        continue;
                    };
                    self.stats.aaa_timeout += 1;
                    self.aaa_timeout(idx, now);
                }
                Event::AcctDropped {
                    reason,
                    session_id,
                    user,
                    status,
                    age_ms,
                } => {
                    let what = match status {
                        1 => "Start",
                        2 => "Stop",
                        3 => "Interim-Update",
                        _ => "record",
                    };
                    let why = match reason {
                        radius::AcctDrop::QueueFull => alloc::format!(
                            "accounting queue full ({} records, radius.acct_queue_limit)",
                            self.radius.as_ref().map_or(0, |r| r.acct_outstanding())
                        ),
                        radius::AcctDrop::MaxAge => alloc::format!(
                            "not acknowledged after {} s (radius.acct_max_age_s)",
                            age_ms / 1000
                        ),
                        radius::AcctDrop::Unencodable => {
                            String::from("cannot be encoded (too large, or no accounting server)")
                        }
                    };
                    self.notices.push(alloc::format!(
                        "accounting {what} dropped: {why}: Acct-Session-Id {session_id:?} User-Name {:?}",
                        String::from_utf8_lossy(&user)
                    ));
                }
            }
        }
    }

    pub(super) fn aaa_timeout(&mut self, idx: u32, now: u64) {
        let creds = self.ppp_mut(idx).and_then(|p| p.pending_creds.take());
        match creds {
            Some(c) if self.local_fallback => self.verify_local(idx, &c, now),
            _ => self.reject(idx, now),
        }
    }

    /// Datagrams the RADIUS client wants sent.
    pub fn take_radius_tx(&mut self) -> Vec<Transmit> {
        core::mem::take(&mut self.radius_tx)
    }

    /// Log lines (accounting records refused or given up, naming the session).
    pub fn take_notices(&mut self) -> Vec<String> {
        core::mem::take(&mut self.notices)
    }

    /// Accounting journal operations to write before the datagrams of
    /// [`ControlPlane::take_radius_tx`] go out (only with `radius.acct_journal`).
    pub fn take_acct_journal(&mut self) -> Vec<radius::JournalOp> {
        self.radius
            .as_mut()
            .map(|r| r.take_journal())
            .unwrap_or_default()
    }

    /// Queue accounting records read back from the journal after a restart: `(id,
    /// age ms, request)`.
    pub fn restore_acct(&mut self, records: Vec<(u64, u64, radius::Request)>, now: u64) {
        if let Some(r) = self.radius.as_mut() {
            for (id, age, req) in records {
                r.restore_acct(id, age, req, now);
            }
        }
        self.poll_radius(now);
    }

    /// A datagram for the RADIUS client.
    pub fn radius_input(
        &mut self,
        channel: u8,
        from: core::net::SocketAddr,
        bytes: &[u8],
        now: u64,
    ) {
        if let Some(r) = self.radius.as_mut() {
            r.input(channel, from, bytes);
        }
        self.poll_radius(now);
    }

    pub(super) fn find(&self, d: &DynAuth) -> Option<u32> {
        if let Some(id) = &d.acct_session_id {
            let idx = u32::from_str_radix(id.get(8..)?, 16).ok()?;
            return (self.acct_id(idx) == *id
                && matches!(self.slots.get(idx as usize), Some(Some(_))))
            .then_some(idx);
        }
        self.by_key.values().copied().find(|&idx| {
            let Some(Some(e)) = self.slots.get(idx as usize) else {
                return false;
            };
            // Framed-IPv6-Prefix identifies a session too (RFC 5176 §3, RFC 3162).
            let v6 = d.reply.ipv6_prefix();
            d.framed_ip.is_none_or(|ip| ip == e.ip)
                && d.user.as_ref().is_none_or(|u| *u == e.user)
                && v6
                    .is_none_or(|(p, l)| l == 64 && e.prefix6 != 0 && (p >> 64) as u64 == e.prefix6)
                && (d.framed_ip.is_some() || d.user.is_some() || v6.is_some())
        })
    }

    /// A Disconnect-/CoA-Request datagram (RFC 5176). Returns the response to send, or
    /// `None` if the request is dropped (bad authenticator).
    pub fn dynauth(&mut self, bytes: &[u8], now: u64) -> Option<Vec<u8>> {
        if self.dynauth_secret.0.is_empty() {
            // Never answer with an empty secret (config validation refuses it too).
            self.stats.dynauth_rejected += 1;
            return None;
        }
        let Some(d) = DynAuth::parse(bytes, &self.dynauth_secret.0) else {
            self.stats.dynauth_rejected += 1;
            return None;
        };
        let Some(idx) = self.find(&d) else {
            self.stats.dynauth_rejected += 1;
            return Some(d.respond(
                &self.dynauth_secret.0,
                Some(radius::error_cause::SESSION_NOT_FOUND),
            ));
        };
        if d.disconnect {
            self.stats.disconnect += 1;
            self.terminate(idx, radius::terminate_cause::ADMIN_RESET, now);
            return Some(d.respond(&self.dynauth_secret.0, None));
        }
        let Some(rate) = d.reply.rate else {
            self.stats.dynauth_rejected += 1;
            return Some(d.respond(
                &self.dynauth_secret.0,
                Some(radius::error_cause::UNSUPPORTED_SERVICE),
            ));
        };
        self.stats.coa += 1;
        if let Some(Some(e)) = self.slots.get_mut(idx as usize) {
            e.rate = rate;
            if let Some(t) = d.reply.session_timeout {
                e.hard_deadline = Some(now + u64::from(t) * 1000);
            }
            if e.installed {
                self.fib.push(FibUpdate::Rate { idx, rate });
            }
        }
        self.schedule(idx);
        Some(d.respond(&self.dynauth_secret.0, None))
    }
}
