//! Tunnel keys from the SD-WAN key server (`vnfs/keyserver`, its README "Protocol"
//! and "Client library"): the control plane runs a `keyserver::client::Client`
//! (IKEv2 with PSK, RFC 7296 §1.2 and §2.15, updates in INFORMATIONAL exchanges
//! §1.4) on a host UDP socket and turns its events into [`SaUpdate`]s on the
//! running `esp-*` stages' queues, as the vCPE's own IKE does:
//!
//! - `Install` (epoch e of a tunnel): the inbound SA goes to `esp-decrypt` at once;
//!   the outbound SA goes to `esp-encrypt` (re-pointing the tunnel's policy) only
//!   when the record is `active`, otherwise it waits here for `Activate`;
//! - `Activate`: the waiting outbound SA is installed; traffic moves to it, the old
//!   inbound SA stays so packets in flight still decrypt;
//! - `Delete`: the epoch's (or every epoch's) SAs are removed from both stages.
//!
//! An `Install` is matched to the `[[tunnel]]` with `[tunnel.keyserver]` whose
//! `local`/`remote` subnets equal the record's traffic selectors and whose `peer`
//! is the record's peer address (and `peer_id`, when configured); a record that
//! matches none is refused (counted, `vcpe_keyserver_refused_total`), since the
//! graph only protects configured subnets.
//!
//! The events are applied (queued to the stages) before the client's answers leave:
//! the answer is the acknowledgement on which the server moves a rotation on.
//!
//! **SA export (opt-in, for labs).** Keys are never printed. Only when asked for
//! explicitly ([`KeyLink::export_sas`], the binary's `vcpe run --esp-sa-log FILE`,
//! in the spirit of `SSLKEYLOGFILE`) does the link append every ESP SA it installs
//! — inbound and outbound, each epoch — to FILE as one record of Wireshark's
//! `esp_sa` UAT (the `esp_sa` file of a Wireshark profile, or `tshark -o
//! uat:esp_sa:RECORD`): protocol, source, destination, SPI, encryption
//! (`AES-GCM with 16 octet ICV [RFC4106]`, RFC 4106 §8.1 key ‖ salt), key,
//! authentication (`NULL`), key. A `#` comment line before each record names
//! the tunnel, epoch and direction. The file is created with mode 0600; an existing
//! file readable by group or others is refused. Records are written (and flushed)
//! before the acknowledgement leaves, so a capture never holds ESP of an SA that is
//! not yet in the file.

use crate::config::{ConfigError, KeyserverSection, TunnelConfig};
use core::net::{IpAddr, Ipv4Addr};
use dataplane::addr::Net4;
use ipsec::sa::Sa;
use ipsec::spd::Selector;
use ipsec::stage::{SaUpdate, StageQueues};
use keyserver::client::{Client, ClientConfig, ClientEvent, TunnelKeys};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of the key server link.
#[derive(Default)]
pub struct KeyStats {
    /// 1 while the IKE SA with the key server is up.
    pub connected: AtomicU64,
    /// Epochs installed (inbound SA queued).
    pub installs: AtomicU64,
    /// Outbound SAs switched to (at install when active, or on Activate).
    pub activations: AtomicU64,
    /// Epochs removed.
    pub deletes: AtomicU64,
    /// Installs that matched no `[tunnel.keyserver]` or whose SAs did not build.
    pub refused: AtomicU64,
    /// Full restatements applied (SYNC_END).
    pub syncs: AtomicU64,
    /// Socket errors (send or receive).
    pub socket_errors: AtomicU64,
    /// SA records appended to the `--esp-sa-log` file (0 unless enabled).
    pub sa_exports: AtomicU64,
    /// SA records that could not be written to it.
    pub sa_export_errors: AtomicU64,
}

impl KeyStats {
    /// Prometheus text.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        for (n, t, h, a) in [
            (
                "vcpe_keyserver_connected",
                "gauge",
                "1 while registered with the key server",
                &self.connected,
            ),
            (
                "vcpe_keyserver_installs_total",
                "counter",
                "tunnel key epochs installed from the key server",
                &self.installs,
            ),
            (
                "vcpe_keyserver_activations_total",
                "counter",
                "outbound SAs switched to",
                &self.activations,
            ),
            (
                "vcpe_keyserver_deletes_total",
                "counter",
                "tunnel key epochs removed",
                &self.deletes,
            ),
            (
                "vcpe_keyserver_refused_total",
                "counter",
                "key server installs matching no [tunnel.keyserver]",
                &self.refused,
            ),
            (
                "vcpe_keyserver_syncs_total",
                "counter",
                "full restatements from the key server",
                &self.syncs,
            ),
            (
                "vcpe_keyserver_socket_errors_total",
                "counter",
                "key server socket errors",
                &self.socket_errors,
            ),
            (
                "vcpe_keyserver_sa_exports_total",
                "counter",
                "ESP SAs appended to the opt-in --esp-sa-log file",
                &self.sa_exports,
            ),
            (
                "vcpe_keyserver_sa_export_errors_total",
                "counter",
                "ESP SAs that could not be written to the --esp-sa-log file",
                &self.sa_export_errors,
            ),
        ] {
            s.push_str(&format!(
                "# HELP {n} {h}\n# TYPE {n} {t}\n{n} {}\n",
                a.load(Ordering::Relaxed)
            ));
        }
        s
    }
}

/// One installed epoch of a tunnel.
struct Epoch {
    spi_in: u32,
    spi_out: u32,
    /// The outbound SA waiting for `Activate` (one copy per worker).
    pending: Option<(Vec<Sa>, Selector)>,
    /// Its outbound SA is in `esp-encrypt`.
    outbound: bool,
}

/// A `[tunnel.keyserver]` tunnel.
struct Slot {
    name: String,
    peer: Ipv4Addr,
    local: Net4,
    remote: Net4,
    peer_id: Option<String>,
}

/// The key server link of one vCPE.
pub struct KeyLink {
    client: Client,
    sock: UdpSocket,
    /// Every worker's queues: each SA change goes to all of them.
    queues: Vec<StageQueues>,
    tunnels: Vec<Slot>,
    epochs: HashMap<(u64, u32), Epoch>,
    /// (worker, to esp-encrypt, update) a full queue could not take yet.
    backlog: VecDeque<(usize, bool, SaUpdate)>,
    buf: Vec<u8>,
    log: Vec<String>,
    /// The opt-in SA export (`--esp-sa-log`).
    sa_log: Option<std::fs::File>,
    pub stats: Arc<KeyStats>,
}

/// Wireshark's name of AES-GCM-16 in its `esp_sa` UAT (both key sizes).
pub const WIRESHARK_GCM16: &str = "AES-GCM with 16 octet ICV [RFC4106]";

/// One `esp_sa` UAT record (Wireshark 3.x/4.x field order): any protocol family of
/// `src`, the SPI, AES-GCM-16 with `keymat` (key ‖ salt), no authentication. The
/// text holds the key: it is wiped on drop.
pub fn esp_sa_record(
    src: IpAddr,
    dst: IpAddr,
    spi: u32,
    keymat: &[u8],
) -> zeroize::Zeroizing<String> {
    use core::fmt::Write as _;
    let fam = if src.is_ipv4() { "IPv4" } else { "IPv6" };
    let mut s = zeroize::Zeroizing::new(String::with_capacity(160));
    let _ = write!(
        s,
        "\"{fam}\",\"{src}\",\"{dst}\",\"0x{spi:08x}\",\"{WIRESHARK_GCM16}\",\"0x"
    );
    for b in keymat {
        let _ = write!(s, "{b:02x}");
    }
    s.push_str("\",\"NULL\",\"\"");
    s
}

/// Opens (creates, mode 0600) the SA export file for appending; refuses one that
/// group or others may read.
pub fn open_sa_log(path: &std::path::Path) -> Result<std::fs::File, ConfigError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ConfigError(format!("--esp-sa-log {}: {e}", path.display())))?;
    let m = f
        .metadata()
        .map_err(|e| ConfigError(format!("--esp-sa-log {}: {e}", path.display())))?;
    if !m.is_file() {
        return Err(ConfigError(format!(
            "--esp-sa-log {}: not a regular file",
            path.display()
        )));
    }
    if m.mode() & 0o077 != 0 {
        return Err(ConfigError(format!(
            "--esp-sa-log {}: readable by group or others (mode {:o}); keys need 0600",
            path.display(),
            m.mode() & 0o777
        )));
    }
    Ok(f)
}

fn same(ts: &ipsec::ike::TrafficSelector, n: &Net4) -> bool {
    let lo = n.network();
    let hi = crate::config::broadcast(n);
    ts.start_addr == IpAddr::V4(lo)
        && ts.end_addr == IpAddr::V4(hi)
        && ts.ip_proto == 0
        && ts.start_port == 0
        && ts.end_port == 65535
}

impl KeyLink {
    /// Binds `k.bind` and starts registering with `k.server`; the SAs go to every
    /// worker's `queues` (one entry per worker).
    pub fn new(
        k: &KeyserverSection,
        tunnels: &[TunnelConfig],
        queues: &[StageQueues],
    ) -> Result<KeyLink, ConfigError> {
        let sock = UdpSocket::bind(k.bind)
            .map_err(|e| ConfigError(format!("keyserver.bind: {}: {e}", k.bind)))?;
        sock.set_nonblocking(true)
            .map_err(|e| ConfigError(format!("keyserver.bind: {e}")))?;
        let local = sock
            .local_addr()
            .map_err(|e| ConfigError(format!("keyserver.bind: {e}")))?;
        let mut cfg = ClientConfig::new(&k.id, k.psk.bytes());
        cfg.server_id = k.server_id.clone();
        cfg.dpd_ms = k.dpd_ms;
        cfg.retransmit_ms = k.retransmit_ms;
        let tunnels = tunnels
            .iter()
            .filter_map(|t| {
                t.keyserver.as_ref().map(|ks| Slot {
                    name: t.name.clone(),
                    peer: t.peer,
                    local: t.local,
                    remote: t.remote,
                    peer_id: ks.peer_id.clone(),
                })
            })
            .collect();
        Ok(KeyLink {
            client: Client::new(cfg, local, k.server),
            sock,
            queues: queues.to_vec(),
            tunnels,
            epochs: HashMap::new(),
            backlog: VecDeque::new(),
            buf: vec![0u8; 65536],
            log: Vec::new(),
            sa_log: None,
            stats: Arc::new(KeyStats::default()),
        })
    }

    /// Appends every ESP SA installed from now on to `path` (see the module docs:
    /// opt-in, for decrypting captures in labs).
    pub fn export_sas(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        self.sa_log = Some(open_sa_log(path)?);
        self.log.push(format!(
            "keyserver: exporting ESP SAs (keys) to {} as requested",
            path.display()
        ));
        Ok(())
    }

    fn export(&mut self, tunnel: usize, t: &TunnelKeys) {
        let Some(f) = self.sa_log.as_mut() else {
            return;
        };
        let name = self.tunnels.get(tunnel).map_or("", |s| s.name.as_str());
        let mut text = zeroize::Zeroizing::new(String::new());
        for (dir, src, dst, spi, key) in [
            ("in", t.peer, t.local, t.inbound.spi, t.inbound_key()),
            ("out", t.local, t.peer, t.outbound.spi, t.outbound_key()),
        ] {
            text.push_str(&format!("# tunnel {name} epoch {} {dir}\n", t.epoch));
            text.push_str(&esp_sa_record(src, dst, spi, key.expose_for_key_log()));
            text.push('\n');
        }
        match f.write_all(text.as_bytes()).and_then(|()| f.flush()) {
            Ok(()) => {
                self.stats.sa_exports.fetch_add(2, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.sa_export_errors.fetch_add(2, Ordering::Relaxed);
                self.log
                    .push(format!("keyserver: --esp-sa-log: write failed: {e}"));
            }
        }
    }

    /// Registered with the server and its last restatement applied.
    pub fn is_synced(&self) -> bool {
        self.client.is_synced()
    }

    /// (pair, epoch) of every installed epoch.
    pub fn installed(&self) -> Vec<(u64, u32)> {
        let mut v: Vec<_> = self.epochs.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Log lines since the last call.
    pub fn take_log(&mut self) -> Vec<String> {
        core::mem::take(&mut self.log)
    }

    /// Datagrams in, timers, events applied, answers out. `now_ms`: the control
    /// plane's clock.
    pub fn poll(&mut self, now_ms: u64) {
        loop {
            match self.sock.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let d = &self.buf[..n];
                    self.client.handle(d, from, now_ms);
                    self.apply_events();
                    self.send();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.stats.socket_errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        self.client.poll(now_ms);
        self.apply_events();
        self.send();
    }

    fn send(&mut self) {
        while let Some((to, d)) = self.client.poll_transmit() {
            if self.sock.send_to(&d, to).is_err() {
                self.stats.socket_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queues `u` for worker `w` (behind what is waiting, so changes stay in order).
    fn push(&mut self, w: usize, enc: bool, u: SaUpdate) {
        if self.backlog.is_empty() {
            let Some(qs) = self.queues.get(w) else {
                return;
            };
            let q = if enc { &qs.encrypt } else { &qs.decrypt };
            match q.push(u) {
                Ok(()) => {}
                Err(u) => self.backlog.push_back((w, enc, u)),
            }
        } else {
            self.backlog.push_back((w, enc, u));
        }
    }

    /// Queues the update `make(w)` for every worker `w`.
    fn push_all(&mut self, enc: bool, make: impl Fn() -> SaUpdate) {
        for w in 0..self.queues.len() {
            self.push(w, enc, make());
        }
    }

    fn flush_backlog(&mut self) {
        while let Some((w, enc, u)) = self.backlog.pop_front() {
            let Some(qs) = self.queues.get(w) else {
                continue;
            };
            let q = if enc { &qs.encrypt } else { &qs.decrypt };
            if let Err(u) = q.push(u) {
                self.backlog.push_front((w, enc, u));
                return;
            }
        }
    }

    fn apply_events(&mut self) {
        self.flush_backlog();
        while let Some(e) = self.client.poll_event() {
            match e {
                ClientEvent::Connected => {
                    self.stats.connected.store(1, Ordering::Relaxed);
                    self.log.push("keyserver: registered".into());
                }
                ClientEvent::Disconnected(_) => {
                    // The SAs stay: the server restates them at the next
                    // registration (and deletes what it does not restate).
                    self.stats.connected.store(0, Ordering::Relaxed);
                    self.log
                        .push("keyserver: registration lost, registering again".into());
                }
                ClientEvent::Synced => {
                    self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                }
                ClientEvent::Install(t) => self.install(&t),
                ClientEvent::Activate { pair, epoch } => self.activate(pair, epoch),
                ClientEvent::Delete { pair, epoch } => {
                    let gone: Vec<(u64, u32)> = self
                        .epochs
                        .keys()
                        .filter(|(p, e)| *p == pair && epoch.is_none_or(|x| x == *e))
                        .copied()
                        .collect();
                    for k in gone {
                        self.remove(k);
                    }
                }
            }
        }
    }

    fn tunnel_for(&self, t: &TunnelKeys) -> Option<usize> {
        self.tunnels.iter().position(|s| {
            same(&t.local_ts, &s.local)
                && same(&t.remote_ts, &s.remote)
                && t.peer == IpAddr::V4(s.peer)
                && s.peer_id.as_ref().is_none_or(|p| *p == t.peer_id)
        })
    }

    fn install(&mut self, t: &TunnelKeys) {
        let key = (t.pair, t.epoch);
        if self.epochs.contains_key(&key) {
            return;
        }
        let Some(ti) = self.tunnel_for(t) else {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            self.log.push(format!(
                "keyserver: tunnel to {} ({}) matches no [tunnel.keyserver]: refused",
                t.peer_id, t.peer
            ));
            return;
        };
        // Every worker holds every SA; the SA's owner alone uses it
        // (`ipsec::stage::sa_owner`).
        let n = self.queues.len();
        let built = (|| {
            let sel = t.outbound_selector()?;
            let mut ins = Vec::with_capacity(n);
            let mut outs = Vec::with_capacity(n);
            for _ in 0..n {
                ins.push(Box::new(
                    Sa::new(t.inbound.clone(), t.inbound_key(), 0).ok()?,
                ));
                outs.push(Sa::new(t.outbound.clone(), t.outbound_key(), 0).ok()?);
            }
            Some((sel, ins, outs))
        })();
        let Some((sel, ins, o)) = built else {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.export(ti, t);
        for (w, i) in ins.into_iter().enumerate() {
            self.push(w, false, SaUpdate::AddInbound(i));
        }
        self.stats.installs.fetch_add(1, Ordering::Relaxed);
        let mut ep = Epoch {
            spi_in: t.inbound.spi,
            spi_out: t.outbound.spi,
            pending: Some((o, sel)),
            outbound: false,
        };
        if t.active {
            Self::switch(&mut ep, &mut |w, u| self.push(w, true, u));
            self.stats.activations.fetch_add(1, Ordering::Relaxed);
        }
        self.log.push(format!(
            "keyserver: tunnel {} epoch {} installed{}",
            self.tunnels[ti].name,
            t.epoch,
            if t.active { " and active" } else { "" }
        ));
        self.epochs.insert(key, ep);
    }

    fn switch(ep: &mut Epoch, push: &mut dyn FnMut(usize, SaUpdate)) {
        if let Some((sas, selector)) = ep.pending.take() {
            for (w, sa) in sas.into_iter().enumerate() {
                push(
                    w,
                    SaUpdate::AddOutbound {
                        sa: Box::new(sa),
                        selector,
                    },
                );
            }
            ep.outbound = true;
        }
    }

    fn activate(&mut self, pair: u64, epoch: u32) {
        let Some(mut ep) = self.epochs.remove(&(pair, epoch)) else {
            return;
        };
        if ep.pending.is_some() {
            Self::switch(&mut ep, &mut |w, u| self.push(w, true, u));
            self.stats.activations.fetch_add(1, Ordering::Relaxed);
        }
        self.epochs.insert((pair, epoch), ep);
    }

    fn remove(&mut self, key: (u64, u32)) {
        let Some(ep) = self.epochs.remove(&key) else {
            return;
        };
        if ep.outbound {
            self.push_all(true, || SaUpdate::RemoveOutbound(ep.spi_out));
        }
        self.push_all(false, || SaUpdate::RemoveInbound(ep.spi_in));
        self.stats.deletes.fetch_add(1, Ordering::Relaxed);
    }
}
