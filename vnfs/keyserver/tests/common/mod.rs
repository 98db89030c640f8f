//! Shared by the key server's integration tests: configurations, a server thread,
//! emulated CPEs that install their keys into an `ipsec::Ipsec` and exchange ESP.
#![allow(dead_code)]

use ipsec::{HeadroomBuf, Inbound, Ipsec, SaId};
use keyserver::client::{ClientConfig, ClientEvent, UdpClient};
use keyserver::config::Config;
use keyserver::udp::UdpServer;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub fn psk(id: &str) -> String {
    format!("secret-of-{id}")
}

/// CPE `k`: WAN 192.0.2.k-ish, LAN 10.(k/256).(k%256).0/24.
pub fn cpe_toml(id: &str, k: usize, groups: &[&str]) -> String {
    let g: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
    format!(
        "[[cpe]]\nid = {id:?}\npsk = {:?}\naddress = \"198.18.{}.{}\"\nsubnet = \"10.{}.{}.0/24\"\ngroups = [{}]\n\n",
        psk(id),
        k / 256,
        k % 256,
        k / 256,
        k % 256,
        g.join(", ")
    )
}

pub fn server_toml(rekey_s: f64, overlap_s: f64, journal: Option<&std::path::Path>) -> String {
    let mut s = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nid = \"ks.example\"\nrekey_interval_s = {rekey_s}\noverlap_s = {overlap_s}\nretransmit_ms = 200\nretransmit_tries = 4\n"
    );
    if let Some(j) = journal {
        s.push_str(&format!("journal = {:?}\n", j.display().to_string()));
    }
    s.push('\n');
    s
}

pub struct ServerThread {
    pub srv: Arc<Mutex<UdpServer>>,
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl ServerThread {
    pub fn start(cfg: &Config) -> ServerThread {
        let srv = UdpServer::bind(cfg).expect("bind");
        let addr = srv.local_addr().unwrap();
        let srv = Arc::new(Mutex::new(srv));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (srv.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                s.lock()
                    .unwrap()
                    .run_once(Duration::from_millis(2))
                    .unwrap();
                std::thread::yield_now();
            }
        });
        ServerThread {
            srv,
            addr,
            stop,
            handle: Some(handle),
        }
    }

    pub fn stats(&self) -> keyserver::Stats {
        self.srv.lock().unwrap().stats()
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// An emulated CPE: the client plus an ESP engine holding the SAs it was given.
pub struct Cpe {
    pub id: String,
    pub udp: UdpClient,
    pub ipsec: Ipsec,
    /// (pair, epoch) -> (inbound, outbound) SA ids.
    pub sas: HashMap<(u64, u32), (SaId, SaId)>,
    /// pair -> sending epoch.
    pub sending: HashMap<u64, u32>,
    /// pair -> peer id.
    pub peers: HashMap<u64, String>,
    pub synced: usize,
    pub deletes_all: Vec<u64>,
    pub disconnects: usize,
}

impl Cpe {
    pub fn new(id: &str, server: SocketAddr) -> Cpe {
        Cpe::with_psk(id, &psk(id), server)
    }

    pub fn with_psk(id: &str, key: &str, server: SocketAddr) -> Cpe {
        let mut cfg = ClientConfig::new(id, key.as_bytes());
        cfg.retransmit_ms = 100;
        cfg.retransmit_tries = 3;
        cfg.dpd_ms = 500;
        cfg.reconnect_ms = 200;
        cfg.server_id = Some("ks.example".into());
        let udp = UdpClient::connect(cfg, "127.0.0.1:0".parse().unwrap(), server).unwrap();
        Cpe {
            id: id.into(),
            udp,
            ipsec: Ipsec::new(),
            sas: HashMap::new(),
            sending: HashMap::new(),
            peers: HashMap::new(),
            synced: 0,
            deletes_all: Vec::new(),
            disconnects: 0,
        }
    }

    fn apply(&mut self, e: ClientEvent) {
        match e {
            ClientEvent::Install(t) => {
                let ids = t.install(&mut self.ipsec.sad, 0).expect("install");
                self.sas.insert((t.pair, t.epoch), ids);
                self.peers.insert(t.pair, t.peer_id.clone());
                if t.active || !self.sending.contains_key(&t.pair) {
                    self.sending.insert(t.pair, t.epoch);
                }
            }
            ClientEvent::Activate { pair, epoch } => {
                self.sending.insert(pair, epoch);
            }
            ClientEvent::Delete { pair, epoch } => {
                let gone: Vec<(u64, u32)> = self
                    .sas
                    .keys()
                    .filter(|(p, e)| *p == pair && epoch.is_none_or(|x| x == *e))
                    .copied()
                    .collect();
                for k in gone {
                    let (i, o) = self.sas.remove(&k).unwrap();
                    self.ipsec.sad.remove(i);
                    self.ipsec.sad.remove(o);
                }
                if epoch.is_none() {
                    self.sending.remove(&pair);
                    self.peers.remove(&pair);
                    self.deletes_all.push(pair);
                }
            }
            ClientEvent::Synced => self.synced += 1,
            ClientEvent::Disconnected(_) => self.disconnects += 1,
            ClientEvent::Connected => {}
        }
    }

    /// One round of the client (waits at most `ms`).
    pub fn step(&mut self, ms: u64) {
        let mut evs = Vec::new();
        self.udp
            .run_once(Duration::from_millis(ms), |e| evs.push(e))
            .unwrap();
        for e in evs {
            self.apply(e);
        }
    }

    pub fn synced(&self) -> bool {
        self.udp.client.is_synced()
    }

    pub fn pair_with(&self, peer: &str) -> Option<u64> {
        self.peers
            .iter()
            .find(|(_, p)| p.as_str() == peer)
            .map(|(k, _)| *k)
    }

    /// LAN address `host` behind CPE `k` (see `cpe_toml`).
    pub fn lan(k: usize, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, (k / 256) as u8, (k % 256) as u8, host)
    }

    /// An ESP packet of `pair` from this CPE's LAN host to the peer's, with the
    /// sending epoch's SA.
    pub fn encrypt(
        &mut self,
        pair: u64,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        seq: u32,
    ) -> Option<Vec<u8>> {
        let epoch = *self.sending.get(&pair)?;
        let (_, out) = *self.sas.get(&(pair, epoch))?;
        let pkt = ipsec::testutil::udp4(src, dst, 1000, 2000, 64);
        let mut b = HeadroomBuf::with_room(128, &pkt, 64);
        let _ = seq;
        self.ipsec.encrypt_with(out, &mut b, 0).ok()?;
        Some(b.to_vec())
    }

    /// Decrypts; whether it passed.
    pub fn decrypt(&mut self, data: &[u8]) -> bool {
        let mut b = HeadroomBuf::with_room(0, data, 0);
        matches!(self.ipsec.inbound(&mut b, 0), Ok(Inbound::Decrypted { .. }))
    }
}

/// Steps every CPE until `cond` holds or `secs` pass; whether it held.
pub fn run_until(cpes: &mut [Cpe], secs: f64, mut cond: impl FnMut(&[Cpe]) -> bool) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed().as_secs_f64() < secs {
        for c in cpes.iter_mut() {
            c.step(1);
        }
        if cond(cpes) {
            return true;
        }
    }
    false
}
