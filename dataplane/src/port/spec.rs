//! Port specs: one string selects a backend everywhere (CLIs, scenario files, VNF
//! configs).
//!
//! | spec                    | backend                                             |
//! |-------------------------|-----------------------------------------------------|
//! | `afxdp:IFACE[:QUEUE]`   | AF_XDP socket on one queue (native XDP, else copy)  |
//! | `afpacket:IFACE`        | AF_PACKET with TPACKET_V3 mmap rings                |
//! | `tap:NAME`              | a TAP device (`/dev/net/tun`, `IFF_TAP`)            |
//! | `pcap:FILE`             | read FILE if it exists, else write it               |
//! | `pcap:IN:OUT`           | read IN and write OUT (either may be empty)         |
//! | `mem:NAME`              | in-memory virtio pair: the 1st and 2nd `mem:NAME`   |
//! |                         | opened in a process are the two ends                |
//! | `memif:PATH[,id=N][,master][,copy][,queues=N]` | memif (VPP/DPDK shared  |
//! |                         | memory) on the unix socket PATH: slave (connects,   |
//! |                         | owns the memory) by default, `master` listens;      |
//! |                         | interface id N (0); a slave is zero-copy unless     |
//! |                         | `copy` is given; `queues=N` (1, at most 16): N ring |
//! |                         | pairs, one per worker ([`open_workers`])            |
//! | `vhost-user:PATH[,server][,queues=N]` | vhost-user backend of a virtio-net    |
//! |                         | device on the unix socket PATH: client (connects)   |
//! |                         | by default, `server` listens; `queues=N` (1): N     |
//! |                         | queue pairs, one per worker ([`open_workers`])      |
//! | `virtio-user:PATH`      | virtio-net driver (vhost-user frontend) connecting  |
//! |                         | to a backend listening on PATH (DPDK `net_vhost`,   |
//! |                         | `vhost-user:PATH,server`); one queue pair           |

use super::{afpacket, afxdp, mem, memif, pcap, tap, vhost_user, virtio_user, Port};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::str::FromStr;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// A parsed port spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec {
    AfXdp {
        iface: String,
        queue: u32,
    },
    AfPacket {
        iface: String,
    },
    Tap {
        name: String,
    },
    Pcap {
        rx: Option<PathBuf>,
        tx: Option<PathBuf>,
    },
    Mem {
        name: String,
    },
    Memif {
        path: PathBuf,
        id: u32,
        master: bool,
        /// Slave: copy frames through a region of the link's own instead of posting
        /// engine buffers of the shared region (zero-copy, the default).
        copy: bool,
        /// Queue pairs (1..=[`memif::MAX_QUEUES`]), one per worker.
        queues: u16,
    },
    VhostUser {
        path: PathBuf,
        server: bool,
        /// Queue pairs (1..=[`vhost_user::MAX_QUEUES`]), one per worker.
        queues: u16,
    },
    VirtioUser {
        path: PathBuf,
    },
}

/// Errors of parsing or opening a port spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bad port spec {0:?}: expected afxdp:IFACE[:QUEUE], afpacket:IFACE, tap:NAME, pcap:FILE, mem:NAME, memif:PATH[,id=N][,master][,copy][,queues=N], vhost-user:PATH[,server][,queues=N] or virtio-user:PATH")]
    Syntax(String),
    #[error("port spec {spec:?}: {msg}")]
    Unsupported { spec: String, msg: &'static str },
    #[error("port {spec}: {msg}")]
    Open { spec: String, msg: String },
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty() && s.len() < 16 && !s.contains(['/', ' ', ':', '\0'])
}

impl FromStr for PortSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = || SpecError::Syntax(s.to_string());
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "afxdp" => {
                let (iface, q) = match rest.split_once(':') {
                    Some((i, q)) => (i, q.parse::<u32>().map_err(|_| bad())?),
                    None => (rest, 0),
                };
                if !valid_ifname(iface) {
                    return Err(bad());
                }
                Ok(PortSpec::AfXdp {
                    iface: iface.into(),
                    queue: q,
                })
            }
            "afpacket" if valid_ifname(rest) => Ok(PortSpec::AfPacket { iface: rest.into() }),
            "tap" if valid_ifname(rest) => Ok(PortSpec::Tap { name: rest.into() }),
            "pcap" if !rest.is_empty() => {
                let opt = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
                match rest.split_once(':') {
                    Some((i, o)) => Ok(PortSpec::Pcap {
                        rx: opt(i),
                        tx: opt(o),
                    }),
                    None => {
                        let p = PathBuf::from(rest);
                        if p.exists() {
                            Ok(PortSpec::Pcap {
                                rx: Some(p),
                                tx: None,
                            })
                        } else {
                            Ok(PortSpec::Pcap {
                                rx: None,
                                tx: Some(p),
                            })
                        }
                    }
                }
            }
            "mem" if !rest.is_empty() => Ok(PortSpec::Mem { name: rest.into() }),
            "memif" => {
                let mut parts = rest.split(',');
                let path = parts.next().filter(|p| !p.is_empty()).ok_or_else(bad)?;
                let (mut id, mut master, mut copy, mut queues) = (0u32, false, false, 1);
                for opt in parts {
                    match opt.split_once('=') {
                        Some(("id", v)) => id = v.parse().map_err(|_| bad())?,
                        Some(("queues", v)) => match v.parse::<u32>().map_err(|_| bad())? {
                            0 => return Err(bad()),
                            n if n > u32::from(memif::MAX_QUEUES) => {
                                return Err(SpecError::Unsupported {
                                    spec: s.to_string(),
                                    msg: "memif ports have at most 16 queue pairs",
                                })
                            }
                            n => queues = n as u16,
                        },
                        None if opt == "master" => master = true,
                        None if opt == "slave" => master = false,
                        None if opt == "copy" => copy = true,
                        _ => return Err(bad()),
                    }
                }
                Ok(PortSpec::Memif {
                    path: path.into(),
                    id,
                    master,
                    copy,
                    queues,
                })
            }
            "vhost-user" => {
                let mut parts = rest.split(',');
                let path = parts.next().filter(|p| !p.is_empty()).ok_or_else(bad)?;
                let mut server = false;
                let mut queues = 1;
                for opt in parts {
                    match opt.split_once('=') {
                        Some(("queues", v)) => match v.parse::<u32>().map_err(|_| bad())? {
                            0 => return Err(bad()),
                            n if n > u32::from(vhost_user::MAX_QUEUES) => {
                                return Err(SpecError::Unsupported {
                                    spec: s.to_string(),
                                    msg: "vhost-user ports have at most 64 queue pairs",
                                })
                            }
                            n => queues = n as u16,
                        },
                        None if opt == "server" => server = true,
                        None if opt == "client" => server = false,
                        _ => return Err(bad()),
                    }
                }
                Ok(PortSpec::VhostUser {
                    path: path.into(),
                    server,
                    queues,
                })
            }
            "virtio-user" if !rest.is_empty() && !rest.contains(',') => {
                Ok(PortSpec::VirtioUser { path: rest.into() })
            }
            _ => Err(bad()),
        }
    }
}

impl core::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PortSpec::AfXdp { iface, queue } => write!(f, "afxdp:{iface}:{queue}"),
            PortSpec::AfPacket { iface } => write!(f, "afpacket:{iface}"),
            PortSpec::Tap { name } => write!(f, "tap:{name}"),
            PortSpec::Pcap { rx, tx } => {
                let d = |p: &Option<PathBuf>| {
                    p.as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                };
                write!(f, "pcap:{}:{}", d(rx), d(tx))
            }
            PortSpec::Mem { name } => write!(f, "mem:{name}"),
            PortSpec::Memif {
                path,
                id,
                master,
                copy,
                queues,
            } => {
                write!(f, "memif:{},id={id}", path.display())?;
                if *master {
                    f.write_str(",master")?;
                }
                if *copy {
                    f.write_str(",copy")?;
                }
                if *queues != 1 {
                    write!(f, ",queues={queues}")?;
                }
                Ok(())
            }
            PortSpec::VhostUser {
                path,
                server,
                queues,
            } => {
                write!(f, "vhost-user:{}", path.display())?;
                if *server {
                    f.write_str(",server")?;
                }
                if *queues != 1 {
                    write!(f, ",queues={queues}")?;
                }
                Ok(())
            }
            PortSpec::VirtioUser { path } => write!(f, "virtio-user:{}", path.display()),
        }
    }
}

/// Ring size of in-memory pairs opened by spec.
pub const MEM_RING: u16 = 1024;

static MEM_PEERS: Mutex<Option<HashMap<String, mem::MemPort>>> = Mutex::new(None);

/// Opens the port a spec names.
pub fn open(spec: &PortSpec) -> Result<Box<dyn Port>, SpecError> {
    let err = |msg: String| SpecError::Open {
        spec: spec.to_string(),
        msg,
    };
    match spec {
        PortSpec::Mem { name } => {
            let mut g = MEM_PEERS
                .lock()
                .map_err(|_| err("registry poisoned".into()))?;
            let map = g.get_or_insert_with(HashMap::new);
            if let Some(peer) = map.remove(name) {
                return Ok(Box::new(peer));
            }
            let (a, b) = mem::pair(&(name.clone() + ".0"), &(name.clone() + ".1"), MEM_RING)
                .ok_or_else(|| err("no memory for rings".into()))?;
            map.insert(name.clone(), b);
            Ok(Box::new(a))
        }
        PortSpec::Pcap { rx, tx } => pcap::PcapPort::open(rx.as_deref(), tx.as_deref())
            .map(|p| Box::new(p) as Box<dyn Port>)
            .map_err(|e| err(e.to_string())),
        PortSpec::AfPacket { iface } => {
            afpacket::AfPacketPort::open(iface, &afpacket::Config::default())
                .map(|p| Box::new(p) as Box<dyn Port>)
                .map_err(|e| err(e.to_string()))
        }
        PortSpec::Tap { name } => tap::TapPort::open(name)
            .map(|p| Box::new(p) as Box<dyn Port>)
            .map_err(|e| err(e.to_string())),
        PortSpec::AfXdp { iface, queue } => {
            afxdp::XdpPort::open(iface, *queue, &afxdp::Config::default())
                .map(|p| Box::new(p) as Box<dyn Port>)
                .map_err(|e| err(e.to_string()))
        }
        PortSpec::Memif { queues, .. } if *queues > 1 => Err(err(alloc::format!(
            "queues={queues} needs {queues} workers (one queue pair each)"
        ))),
        PortSpec::Memif { path, .. } => memif::MemifPort::open(path, &memif_config(spec))
            .map(|p| Box::new(p) as Box<dyn Port>)
            .map_err(|e| err(e.to_string())),
        PortSpec::VhostUser { queues, .. } if *queues > 1 => Err(err(alloc::format!(
            "queues={queues} needs {queues} workers (one queue pair each)"
        ))),
        PortSpec::VhostUser { path, server, .. } => {
            let cfg = vhost_user::Config {
                server: *server,
                ..vhost_user::Config::default()
            };
            vhost_user::VhostUserPort::open(path, &cfg)
                .map(|p| Box::new(p) as Box<dyn Port>)
                .map_err(|e| err(e.to_string()))
        }
        PortSpec::VirtioUser { path } => {
            virtio_user::VirtioUserPort::open(path, &virtio_user::Config::default())
                .map(|p| Box::new(p) as Box<dyn Port>)
                .map_err(|e| err(e.to_string()))
        }
    }
}

/// The memif port settings of a `memif:` spec (defaults for anything else).
fn memif_config(spec: &PortSpec) -> memif::Config {
    match spec {
        PortSpec::Memif {
            id,
            master,
            copy,
            queues,
            ..
        } => memif::Config {
            role: if *master {
                memif::Role::Master
            } else {
                memif::Role::Slave
            },
            id: *id,
            zero_copy: !*copy,
            queues: *queues,
            ..memif::Config::default()
        },
        _ => memif::Config::default(),
    }
}

/// Opens the ports `workers` workers poll for one spec, element `w` for worker
/// `w`: AF_XDP queues `QUEUE + w`; a vhost-user device or a memif link with
/// `queues=workers` (one queue pair per worker, the control socket served by a
/// thread of its own).
/// Other backends have one queue: several workers are refused (the caller
/// decides whether one port may be shared some other way).
pub fn open_workers(spec: &PortSpec, workers: usize) -> Result<Vec<Box<dyn Port>>, SpecError> {
    let err = |msg: String| SpecError::Open {
        spec: spec.to_string(),
        msg,
    };
    match spec {
        _ if workers <= 1 => Ok(alloc::vec![open(spec)?]),
        PortSpec::AfXdp { iface, queue } => (0..workers)
            .map(|w| {
                open(&PortSpec::AfXdp {
                    iface: iface.clone(),
                    queue: queue + w as u32,
                })
            })
            .collect(),
        PortSpec::VhostUser {
            path,
            server,
            queues,
        } => {
            if usize::from(*queues) != workers {
                return Err(err(alloc::format!(
                    "{workers} workers need queues={workers} (one queue pair each)"
                )));
            }
            let cfg = vhost_user::Config {
                server: *server,
                queues: *queues,
                ..vhost_user::Config::default()
            };
            let qs = vhost_user::open_queues(path, &cfg).map_err(|e| err(e.to_string()))?;
            Ok(qs
                .into_iter()
                .map(|q| Box::new(q) as Box<dyn Port>)
                .collect())
        }
        PortSpec::Memif { path, queues, .. } => {
            if usize::from(*queues) != workers {
                return Err(err(alloc::format!(
                    "{workers} workers need queues={workers} (one queue pair each)"
                )));
            }
            let qs =
                memif::open_queues(path, &memif_config(spec)).map_err(|e| err(e.to_string()))?;
            Ok(qs
                .into_iter()
                .map(|q| Box::new(q) as Box<dyn Port>)
                .collect())
        }
        _ => Err(err(alloc::format!(
            "{workers} workers need a port with a queue per worker (afxdp, vhost-user or memif with queues={workers})"
        ))),
    }
}

/// Parses and opens.
pub fn open_str(s: &str) -> Result<Box<dyn Port>, SpecError> {
    open(&s.parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;
    use crate::buf::Pool;

    #[test]
    fn parse_specs() {
        assert_eq!(
            "afxdp:veth0:3".parse::<PortSpec>().unwrap(),
            PortSpec::AfXdp {
                iface: "veth0".into(),
                queue: 3
            }
        );
        assert_eq!(
            "afxdp:veth0".parse::<PortSpec>().unwrap(),
            PortSpec::AfXdp {
                iface: "veth0".into(),
                queue: 0
            }
        );
        assert_eq!(
            "afpacket:eth1".parse::<PortSpec>().unwrap(),
            PortSpec::AfPacket {
                iface: "eth1".into()
            }
        );
        assert_eq!(
            "tap:tap0".parse::<PortSpec>().unwrap(),
            PortSpec::Tap {
                name: "tap0".into()
            }
        );
        assert_eq!(
            "pcap:in.pcap:out.pcap".parse::<PortSpec>().unwrap(),
            PortSpec::Pcap {
                rx: Some("in.pcap".into()),
                tx: Some("out.pcap".into())
            }
        );
        assert_eq!(
            "pcap:/nonexistent/x.pcap".parse::<PortSpec>().unwrap(),
            PortSpec::Pcap {
                rx: None,
                tx: Some("/nonexistent/x.pcap".into())
            }
        );
        for bad in [
            "",
            "eth0",
            "afxdp:",
            "afxdp:e:x",
            "tap:",
            "foo:bar",
            "afpacket:waytoolonginterfacename0",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
        let s = "afxdp:v0:1".parse::<PortSpec>().unwrap();
        assert_eq!(s.to_string().parse::<PortSpec>().unwrap(), s);
        assert_eq!(
            "memif:/run/m.sock".parse::<PortSpec>().unwrap(),
            PortSpec::Memif {
                path: "/run/m.sock".into(),
                id: 0,
                master: false,
                copy: false,
                queues: 1
            }
        );
        let m = "memif:/tmp/x.sock,id=7,master".parse::<PortSpec>().unwrap();
        assert_eq!(
            m,
            PortSpec::Memif {
                path: "/tmp/x.sock".into(),
                id: 7,
                master: true,
                copy: false,
                queues: 1
            }
        );
        assert_eq!(m.to_string(), "memif:/tmp/x.sock,id=7,master");
        assert_eq!(m.to_string().parse::<PortSpec>().unwrap(), m);
        let c = "memif:/tmp/x.sock,copy".parse::<PortSpec>().unwrap();
        assert!(matches!(c, PortSpec::Memif { copy: true, .. }));
        assert_eq!(c.to_string(), "memif:/tmp/x.sock,id=0,copy");
        for bad in [
            "memif:",
            "memif:,id=1",
            "memif:/s,id=x",
            "memif:/s,id=-1",
            "memif:/s,mastr",
            "memif:/s,queues=0",
            "memif:/s,queues=x",
            "memif:/s,queue=2",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
        let mm = "memif:/s,id=1,queues=2".parse::<PortSpec>().unwrap();
        assert_eq!(
            mm,
            PortSpec::Memif {
                path: "/s".into(),
                id: 1,
                master: false,
                copy: false,
                queues: 2
            }
        );
        assert_eq!(mm.to_string(), "memif:/s,id=1,queues=2");
        assert_eq!(mm.to_string().parse::<PortSpec>().unwrap(), mm);
        let mm = "memif:/s,queues=16,copy,master"
            .parse::<PortSpec>()
            .unwrap();
        assert_eq!(mm.to_string(), "memif:/s,id=0,master,copy,queues=16");
        assert_eq!(mm.to_string().parse::<PortSpec>().unwrap(), mm);
        let e = "memif:/s,queues=17".parse::<PortSpec>().unwrap_err();
        assert!(e.to_string().contains("at most 16"), "{e}");
        let e = open(&"memif:/s,queues=2".parse().unwrap())
            .err()
            .expect("memif queues=2 on one worker");
        assert!(e.to_string().contains("needs 2 workers"), "{e}");
        let e = open_workers(&"memif:/s,master,queues=3".parse().unwrap(), 2)
            .err()
            .expect("3 memif pairs for 2 workers");
        assert!(e.to_string().contains("queues=2"), "{e}");
        assert_eq!(
            "vhost-user:/run/v.sock".parse::<PortSpec>().unwrap(),
            PortSpec::VhostUser {
                path: "/run/v.sock".into(),
                server: false,
                queues: 1
            }
        );
        let v = "vhost-user:/tmp/v.sock,server,queues=1"
            .parse::<PortSpec>()
            .unwrap();
        assert_eq!(
            v,
            PortSpec::VhostUser {
                path: "/tmp/v.sock".into(),
                server: true,
                queues: 1
            }
        );
        assert_eq!(v.to_string(), "vhost-user:/tmp/v.sock,server");
        assert_eq!(v.to_string().parse::<PortSpec>().unwrap(), v);
        for bad in [
            "vhost-user:",
            "vhost-user:,server",
            "vhost-user:/s,srv",
            "vhost-user:/s,queues=0",
            "vhost-user:/s,queues=x",
        ] {
            assert!(
                matches!(bad.parse::<PortSpec>(), Err(SpecError::Syntax(_))),
                "{bad}"
            );
        }
        let vu = "virtio-user:/tmp/b.sock".parse::<PortSpec>().unwrap();
        assert_eq!(
            vu,
            PortSpec::VirtioUser {
                path: "/tmp/b.sock".into()
            }
        );
        assert_eq!(vu.to_string().parse::<PortSpec>().unwrap(), vu);
        for bad in ["virtio-user:", "virtio-user:/s,server"] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
        let mq = "vhost-user:/s,queues=2,server".parse::<PortSpec>().unwrap();
        assert_eq!(
            mq,
            PortSpec::VhostUser {
                path: "/s".into(),
                server: true,
                queues: 2
            }
        );
        assert_eq!(mq.to_string(), "vhost-user:/s,server,queues=2");
        assert_eq!(mq.to_string().parse::<PortSpec>().unwrap(), mq);
        let e = "vhost-user:/s,queues=65".parse::<PortSpec>().unwrap_err();
        assert!(matches!(e, SpecError::Unsupported { .. }));
        assert!(e.to_string().contains("at most 64"), "{e}");
        // One port cannot serve two pairs; N workers need queues=N.
        let e = open(&mq).err().expect("queues=2 on one worker");
        assert!(e.to_string().contains("needs 2 workers"), "{e}");
        let e = open_workers(&"vhost-user:/s,server,queues=3".parse().unwrap(), 2)
            .err()
            .expect("3 pairs for 2 workers");
        assert!(e.to_string().contains("queues=2"), "{e}");
        let e = open_workers(&"tap:x0".parse().unwrap(), 2)
            .err()
            .expect("tap for 2 workers");
        assert!(e.to_string().contains("a queue per worker"), "{e}");
    }

    #[test]
    fn vhost_user_queues_open_one_port_per_worker() {
        let path =
            std::env::temp_dir().join(alloc::format!("vmq-spec-{}.sock", std::process::id()));
        let spec: PortSpec = alloc::format!("vhost-user:{},server,queues=2", path.display())
            .parse()
            .unwrap();
        let ports = open_workers(&spec, 2).unwrap();
        assert_eq!(ports.len(), 2);
        assert!(ports[1].name().ends_with(",queue=1"), "{}", ports[1].name());
        assert!(path.exists());
        drop(ports);
        // The control thread notices within its poll timeout and removes the socket.
        let t = std::time::Instant::now();
        while path.exists() && t.elapsed() < std::time::Duration::from_secs(2) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!path.exists(), "socket file left behind");
    }

    /// `memif:...,queues=2` for two workers, master and slave: one port per ring
    /// pair (named `...,queue=K`), each carrying its own frames; the master's socket
    /// file goes with its last queue.
    #[test]
    fn memif_queues_open_one_port_per_worker() {
        let path =
            std::env::temp_dir().join(alloc::format!("dp-spec-mq-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let spec = |extra: &str| -> PortSpec {
            alloc::format!("memif:{},id=3{extra},queues=2", path.display())
                .parse()
                .unwrap()
        };
        let mut m = open_workers(&spec(",master"), 2).unwrap();
        let mut s = open_workers(&spec(""), 2).unwrap();
        assert_eq!((m.len(), s.len()), (2, 2));
        assert!(m[1].name().ends_with("/master,queue=1"), "{}", m[1].name());
        let pool = Pool::new(64).unwrap();
        let mut c = pool.cache();
        for k in 0..2u8 {
            let mut got = Batch::new();
            let t = std::time::Instant::now();
            // Frames sent before the link is up are dropped; keep sending.
            while got.is_empty() && t.elapsed() < std::time::Duration::from_secs(5) {
                let mut batch = Batch::new();
                let mut p = c.alloc().unwrap();
                p.copy_from(&[k; 64]).unwrap();
                batch.push(p).unwrap();
                s[usize::from(k)].tx_burst(&mut c, &mut batch);
                batch.free_all(&mut c);
                m[usize::from(k)].rx_burst(&mut c, &mut got);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!(got.as_slice()[0].data(), &[k; 64], "queue {k}");
            got.free_all(&mut c);
            // nothing on the other pair
            m[usize::from(1 - k)].rx_burst(&mut c, &mut got);
            assert!(got.is_empty(), "queue {k}'s frame on the other pair");
        }
        drop(s);
        drop(m);
        let t = std::time::Instant::now();
        while path.exists() && t.elapsed() < std::time::Duration::from_secs(2) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!path.exists(), "socket file left behind");
    }

    #[test]
    fn mem_spec_pairs_two_opens() {
        let pool = Pool::new(16).unwrap();
        let mut c = pool.cache();
        let mut a = open_str("mem:spec-test").unwrap();
        let mut b = open_str("mem:spec-test").unwrap();
        let mut batch = Batch::new();
        let mut p = c.alloc().unwrap();
        p.copy_from(&[7; 60]).unwrap();
        batch.push(p).unwrap();
        assert_eq!(a.tx_burst(&mut c, &mut batch), 1);
        assert_eq!(b.rx_burst(&mut c, &mut batch), 1);
        assert_eq!(batch.as_slice()[0].data(), &[7; 60]);
        batch.free_all(&mut c);
    }

    #[test]
    fn memif_specs_open_a_master_and_a_slave() {
        let path = std::env::temp_dir().join(alloc::format!("dp-spec-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let pool = Pool::new(64).unwrap();
        let mut c = pool.cache();
        let mut m = open_str(&alloc::format!("memif:{},id=2,master", path.display())).unwrap();
        let mut s = open_str(&alloc::format!("memif:{},id=2", path.display())).unwrap();
        assert!(m.name().ends_with("/2/master"));
        let t = std::time::Instant::now();
        let mut got = Batch::new();
        // The bursts drive the handshake; the slave's frames are dropped until it is up.
        while got.is_empty() && t.elapsed() < std::time::Duration::from_secs(5) {
            let mut batch = Batch::new();
            let mut p = c.alloc().unwrap();
            p.copy_from(&[9; 64]).unwrap();
            batch.push(p).unwrap();
            s.tx_burst(&mut c, &mut batch);
            batch.free_all(&mut c);
            m.rx_burst(&mut c, &mut got);
        }
        assert_eq!(got.as_slice()[0].data(), &[9; 64]);
        got.free_all(&mut c);
        assert!(
            s.stats().tx_dropped > 0,
            "frames sent before the link came up are counted"
        );
    }

    #[test]
    fn vhost_user_specs_open_a_server_and_a_client() {
        let path =
            std::env::temp_dir().join(alloc::format!("dp-spec-vu-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let srv = open_str(&alloc::format!("vhost-user:{},server", path.display())).unwrap();
        assert!(path.exists(), "the server listens on its path");
        assert!(srv.name().ends_with(",server"));
        let mut cli = open_str(&alloc::format!("vhost-user:{}", path.display())).unwrap();
        let pool = Pool::new(16).unwrap();
        let mut c = pool.cache();
        let mut batch = Batch::new();
        let mut p = c.alloc().unwrap();
        p.copy_from(&[1; 60]).unwrap();
        batch.push(p).unwrap();
        // No frontend on either end: the frame is dropped and counted.
        cli.tx_burst(&mut c, &mut batch);
        assert!(batch.is_empty());
        assert_eq!(cli.stats().tx_dropped, 1);
        drop(srv);
        assert!(!path.exists(), "the server removes its socket");
    }
}
