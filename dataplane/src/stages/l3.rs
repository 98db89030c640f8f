//! Layer-3 state shared by the router stages: interfaces with their addresses, the
//! adjacency (next-hop) table, the IPv4/IPv6 FIBs and the neighbour table.
//!
//! The FIB maps a prefix to an adjacency index (RFC 1812 §5.2.4.3 longest match).
//! An adjacency says how to reach the next hop: `Glean` (a connected subnet — the
//! destination itself is the neighbour), `Via` (a gateway address), `Local` (one of our
//! addresses — deliver to the router), `Drop` (a blackhole route) or `Martian` (an
//! IPv4 destination that is never forwarded, RFC 1812 §5.3.7 and §5.3.5: 0.0.0.0/8,
//! 127.0.0.0/8, multicast 224.0.0.0/4, class E 240.0.0.0/4 with the limited broadcast
//! 255.255.255.255, and the directed broadcast of each connected subnet up to /30,
//! RFC 2644). The martian routes are installed by [`L3Builder::new`] and
//! [`L3Builder::iface`], and no route inside them is accepted, so `ip4-lookup` drops a
//! martian destination with its reason whatever the routes (VPP installs the same
//! special drop entries in every IPv4 FIB). Built once by
//! the control plane ([`L3Builder`]) and shared read-only (`Arc<L3>`) by the workers;
//! only the neighbour table changes at run time, lock-free.

use super::neigh::NeighTable;
use crate::lpm::ipv4::Lpm4;
use crate::lpm::ipv6::Lpm6;
use crate::lpm::{LpmError, NextHop};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

use crate::addr::{mask4, mask6};
pub use crate::addr::{Net4, Net6};

/// A router interface (one port).
#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub port: u16,
    pub mac: [u8; 6],
    pub v4: Vec<Net4>,
    pub v6: Vec<Net6>,
    /// Largest IP packet the port sends.
    pub mtu: u16,
}

impl Iface {
    /// The first IPv4 address (the source of ICMP errors and ARP requests).
    pub fn primary_v4(&self) -> Option<Ipv4Addr> {
        self.v4.first().map(|n| n.addr)
    }

    /// The IPv4 address of ours in the subnet of `peer`, else the primary one.
    pub fn v4_for(&self, peer: Ipv4Addr) -> Option<Ipv4Addr> {
        self.v4
            .iter()
            .find(|n| n.contains(peer))
            .map(|n| n.addr)
            .or_else(|| self.primary_v4())
    }

    /// The link-local IPv6 address (fe80::/10) if configured, else the first one.
    pub fn v6_source(&self) -> Option<Ipv6Addr> {
        self.v6
            .iter()
            .find(|n| n.addr.segments()[0] & 0xffc0 == 0xfe80)
            .or(self.v6.first())
            .map(|n| n.addr)
    }

    /// True when `a` is one of this interface's IPv4 addresses.
    pub fn has_v4(&self, a: Ipv4Addr) -> bool {
        self.v4.iter().any(|n| n.addr == a)
    }

    /// True when `a` is one of this interface's IPv6 addresses.
    pub fn has_v6(&self, a: &Ipv6Addr) -> bool {
        self.v6.iter().any(|n| n.addr == *a)
    }
}

/// How to reach a next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjKind {
    /// Connected subnet on `port`: the destination address is the neighbour.
    Glean,
    /// Through this IPv4 gateway.
    Via4(Ipv4Addr),
    /// Through this IPv6 gateway.
    Via6(Ipv6Addr),
    /// One of our addresses.
    Local,
    /// Blackhole: drop.
    Drop,
    /// An IPv4 destination that is never forwarded.
    Martian(Martian4),
}

/// Why an IPv4 destination is never forwarded (the `Martian` routes of the FIB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Martian4 {
    /// 0.0.0.0/8, "this network" (RFC 1812 §5.3.7).
    ThisNet,
    /// 127.0.0.0/8 (RFC 1812 §5.3.7).
    Loopback,
    /// 224.0.0.0/4: this router does not route multicast.
    Multicast,
    /// 240.0.0.0/4 (RFC 1812 §5.3.7), the limited broadcast apart.
    ClassE,
    /// 255.255.255.255 (RFC 1812 §5.3.5.1).
    LimitedBroadcast,
    /// The broadcast address of a connected subnet (RFC 1812 §5.3.5.2, off as RFC
    /// 2644 asks).
    DirectedBroadcast,
}

impl Martian4 {
    /// The reason `dst` (host order) hit a route to `self`: the class E route also
    /// covers the limited broadcast, which has a reason of its own.
    #[inline]
    pub fn reason(self, dst: u32) -> Martian4 {
        if self == Martian4::ClassE && dst == u32::MAX {
            Martian4::LimitedBroadcast
        } else {
            self
        }
    }

    /// The martian prefix `dst` (host order) lies in, if any: the reasons of
    /// [`MARTIAN4`] (directed broadcasts depend on the interfaces and are not
    /// covered).
    pub fn of_dst(dst: u32) -> Option<Martian4> {
        MARTIAN4
            .iter()
            .find(|&&(net, len, _)| dst & mask4(len) == net)
            .map(|&(_, _, why)| why.reason(dst))
    }

    /// The drop-reason name every node dropping for this reason counts under.
    pub const fn name(self) -> &'static str {
        match self {
            Martian4::ThisNet => "martian destination: this network 0.0.0.0/8",
            Martian4::Loopback => "martian destination: loopback 127.0.0.0/8",
            Martian4::Multicast => "multicast destination not routed",
            Martian4::ClassE => "martian destination: class E 240.0.0.0/4",
            Martian4::LimitedBroadcast => "limited broadcast not forwarded",
            Martian4::DirectedBroadcast => "directed broadcast not forwarded",
        }
    }

    /// The reason's one-line description.
    pub const fn help(self) -> &'static str {
        match self {
            Martian4::ThisNet => "destination address in 0.0.0.0/8 (RFC 1812 §5.3.7)",
            Martian4::Loopback => "destination address in 127.0.0.0/8 (RFC 1812 §5.3.7)",
            Martian4::Multicast => "multicast destination: this router does not route multicast",
            Martian4::ClassE => "destination address in 240.0.0.0/4 (RFC 1812 §5.3.7)",
            Martian4::LimitedBroadcast => {
                "destination 255.255.255.255 is never forwarded (RFC 1812 §5.3.5.1)"
            }
            Martian4::DirectedBroadcast => "directed broadcast forwarding is off (RFC 2644)",
        }
    }
}

/// The martian destination prefixes every IPv4 FIB holds (the directed broadcasts are
/// added per interface). The limited broadcast shares the class E route (its reason
/// is told apart on the drop path, [`Martian4::reason`]) so that it takes no
/// extension group of the FIB.
const MARTIAN4: [(u32, u8, Martian4); 4] = [
    (0x0000_0000, 8, Martian4::ThisNet),
    (0x7f00_0000, 8, Martian4::Loopback),
    (0xe000_0000, 4, Martian4::Multicast),
    (0xf000_0000, 4, Martian4::ClassE),
];

/// True when the prefix `net/len` (host order, masked) lies inside a martian prefix of
/// [`MARTIAN4`] (or is one).
fn in_martian4(net: u32, len: u8) -> bool {
    MARTIAN4
        .iter()
        .any(|&(m, ml, _)| len >= ml && net & mask4(ml) == m)
}

/// One adjacency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adj {
    pub port: u16,
    pub kind: AdjKind,
}

/// Errors building the L3 state (configuration errors, never packet errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L3Error {
    /// A gateway is not inside any connected subnet.
    GatewayUnreachable(String),
    /// An interface names a port that does not exist.
    BadPort(u16),
    /// The FIB refused a route.
    Lpm(LpmError),
    /// Too many adjacencies for the FIB's next-hop width.
    TooManyAdjacencies,
    /// A size setting above its limit: the setting, the value asked for, the limit.
    Limit(&'static str, u64, u64),
    /// A route inside martian address space (`prefix/len`), which is never forwarded.
    MartianRoute(String),
}

impl fmt::Display for L3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            L3Error::GatewayUnreachable(g) => {
                write!(f, "gateway {g} is not in any connected subnet")
            }
            L3Error::BadPort(p) => write!(f, "port {p} does not exist"),
            L3Error::Lpm(e) => write!(f, "route table: {e}"),
            L3Error::TooManyAdjacencies => f.write_str("too many next hops"),
            L3Error::Limit(what, v, max) => write!(f, "{what}: {v} is above the limit of {max}"),
            L3Error::MartianRoute(p) => write!(
                f,
                "route {p} is inside martian address space, which is never forwarded (RFC 1812 §5.3.7)"
            ),
        }
    }
}

impl From<LpmError> for L3Error {
    fn from(e: LpmError) -> Self {
        L3Error::Lpm(e)
    }
}

/// Shared L3 state.
pub struct L3 {
    pub ifaces: Vec<Iface>,
    /// Interface index per port number.
    by_port: Vec<Option<usize>>,
    pub adj: Vec<Adj>,
    pub fib4: Lpm4,
    pub fib6: Lpm6,
    pub neigh: NeighTable,
    /// Entries of `fib4` that are martian drop routes (not configured by anyone).
    martian4: usize,
}

impl fmt::Debug for L3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("L3")
            .field("ifaces", &self.ifaces.len())
            .field("adj", &self.adj.len())
            .field("fib4", &self.fib4.len())
            .field("fib6", &self.fib6.len())
            .finish()
    }
}

impl L3 {
    /// The interface on `port`.
    #[inline]
    pub fn iface(&self, port: u16) -> Option<&Iface> {
        let i = (*self.by_port.get(port as usize)?)?;
        self.ifaces.get(i)
    }

    /// IPv4 routes from the interfaces and the configuration: the FIB's entries
    /// without its martian drop routes (what `ipv4-routes` reports).
    pub fn routes4(&self) -> usize {
        self.fib4.len().saturating_sub(self.martian4)
    }

    /// The adjacency with index `nh`.
    #[inline]
    pub fn adj(&self, nh: NextHop) -> Option<&Adj> {
        self.adj.get(nh as usize)
    }
}

/// Most IPv4 FIB extension groups [`L3Builder::new`] accepts: 2^20 groups of 256
/// entries (1 GiB of address space, backed only as groups are used), enough for a
/// million prefixes longer than /24.
pub const MAX_TBL8_GROUPS: u32 = 1 << 20;

/// Builds [`L3`]: interfaces first, then routes.
pub struct L3Builder {
    l3: L3,
}

impl L3Builder {
    /// Starts with an empty FIB; `tbl8_groups` sizes the IPv4 table's extension
    /// groups (prefixes longer than /24, at most [`MAX_TBL8_GROUPS`]),
    /// `neigh_capacity` the neighbour table (at most
    /// [`super::neigh::MAX_NEIGHBORS`]). Both limits are checked before anything is
    /// allocated.
    pub fn new(tbl8_groups: u32, neigh_capacity: usize) -> Result<Self, L3Error> {
        if tbl8_groups > MAX_TBL8_GROUPS {
            return Err(L3Error::Limit(
                "tbl8_groups",
                u64::from(tbl8_groups),
                u64::from(MAX_TBL8_GROUPS),
            ));
        }
        let neigh = NeighTable::try_new(neigh_capacity)
            .map_err(|max| L3Error::Limit("neighbors", neigh_capacity as u64, max as u64))?;
        let fib4 = Lpm4::with_config(crate::lpm::ipv4::Lpm4Config { tbl8_groups })?;
        let mut b = L3Builder {
            l3: L3 {
                ifaces: Vec::new(),
                by_port: Vec::new(),
                adj: Vec::new(),
                fib4,
                fib6: Lpm6::new(),
                neigh,
                martian4: 0,
            },
        };
        for (net, len, why) in MARTIAN4 {
            let nh = b.martian(why)?;
            b.l3.fib4.add(net, len, nh)?;
            b.l3.martian4 += 1;
        }
        Ok(b)
    }

    fn martian(&mut self, why: Martian4) -> Result<NextHop, L3Error> {
        self.adjacency(Adj {
            port: 0,
            kind: AdjKind::Martian(why),
        })
    }

    /// Index of an adjacency, adding it if new.
    pub fn adjacency(&mut self, a: Adj) -> Result<NextHop, L3Error> {
        if let Some(i) = self.l3.adj.iter().position(|x| *x == a) {
            return Ok(i as NextHop);
        }
        if self.l3.adj.len() as u64 > u64::from(crate::lpm::MAX_NEXT_HOP) {
            return Err(L3Error::TooManyAdjacencies);
        }
        self.l3.adj.push(a);
        Ok((self.l3.adj.len() - 1) as NextHop)
    }

    /// Adds an interface: its connected subnets (glean) and local addresses.
    pub fn iface(&mut self, ifc: Iface) -> Result<(), L3Error> {
        let port = ifc.port;
        for n in &ifc.v4 {
            if in_martian4(u32::from(n.addr) & mask4(n.len), n.len) {
                return Err(L3Error::MartianRoute(alloc::format!(
                    "{}/{}", n.addr, n.len
                )));
            }
        }
        for n in &ifc.v4 {
            let glean = self.adjacency(Adj {
                port,
                kind: AdjKind::Glean,
            })?;
            let net = u32::from(n.addr) & mask4(n.len);
            self.l3.fib4.add(net, n.len, glean)?;
            let local = self.adjacency(Adj {
                port,
                kind: AdjKind::Local,
            })?;
            self.l3.fib4.add(u32::from(n.addr), 32, local)?;
            if n.len <= 30 {
                let bcast = self.martian(Martian4::DirectedBroadcast)?;
                let before = self.l3.fib4.len();
                self.l3.fib4.add(net | !mask4(n.len), 32, bcast)?;
                self.l3.martian4 += self.l3.fib4.len() - before;
            }
        }
        for n in &ifc.v6 {
            let glean = self.adjacency(Adj {
                port,
                kind: AdjKind::Glean,
            })?;
            let net = u128::from(n.addr) & mask6(n.len);
            self.l3.fib6.add(net, n.len, glean)?;
            let local = self.adjacency(Adj {
                port,
                kind: AdjKind::Local,
            })?;
            self.l3.fib6.add(u128::from(n.addr), 128, local)?;
        }
        let idx = self.l3.ifaces.len();
        let p = port as usize;
        if self.l3.by_port.len() <= p {
            self.l3.by_port.resize(p + 1, None);
        }
        if let Some(slot) = self.l3.by_port.get_mut(p) {
            *slot = Some(idx);
        }
        self.l3.ifaces.push(ifc);
        Ok(())
    }

    /// The port whose connected subnet holds `gw`.
    pub fn port_for_v4(&self, gw: Ipv4Addr) -> Option<u16> {
        self.l3
            .ifaces
            .iter()
            .find(|i| i.v4.iter().any(|n| n.contains(gw)))
            .map(|i| i.port)
    }

    /// The port whose connected subnet holds `gw`.
    pub fn port_for_v6(&self, gw: &Ipv6Addr) -> Option<u16> {
        self.l3
            .ifaces
            .iter()
            .find(|i| i.v6.iter().any(|n| n.contains(gw)))
            .map(|i| i.port)
    }

    /// The adjacency index for IPv4 gateway `gw` (resolved to its port).
    pub fn via4(&mut self, gw: Ipv4Addr) -> Result<NextHop, L3Error> {
        let port = self
            .port_for_v4(gw)
            .ok_or_else(|| L3Error::GatewayUnreachable(alloc::format!("{gw}")))?;
        self.adjacency(Adj {
            port,
            kind: AdjKind::Via4(gw),
        })
    }

    /// The adjacency index for IPv6 gateway `gw`.
    pub fn via6(&mut self, gw: Ipv6Addr) -> Result<NextHop, L3Error> {
        let port = self
            .port_for_v6(&gw)
            .ok_or_else(|| L3Error::GatewayUnreachable(alloc::format!("{gw}")))?;
        self.adjacency(Adj {
            port,
            kind: AdjKind::Via6(gw),
        })
    }

    /// Adds (or replaces) an IPv4 route to adjacency `nh`.
    /// A route inside martian space (see the module documentation), or to the
    /// directed broadcast address of a connected subnet, is refused.
    pub fn route4(&mut self, net: Ipv4Addr, len: u8, nh: NextHop) -> Result<(), L3Error> {
        let a = u32::from(net) & mask4(len.min(32));
        let bcast = len == 32
            && self.l3.ifaces.iter().any(|i| {
                i.v4.iter()
                    .any(|n| n.len <= 30 && (u32::from(n.addr) | !mask4(n.len)) == a)
            });
        if in_martian4(a, len) || bcast {
            return Err(L3Error::MartianRoute(alloc::format!(
                "{}/{len}",
                Ipv4Addr::from(a)
            )));
        }
        self.l3.fib4.add(a, len, nh)?;
        Ok(())
    }

    /// Adds (or replaces) an IPv6 route to adjacency `nh`.
    pub fn route6(&mut self, net: Ipv6Addr, len: u8, nh: NextHop) -> Result<(), L3Error> {
        let a = u128::from(net) & mask6(len.min(128));
        self.l3.fib6.add(a, len, nh)?;
        Ok(())
    }

    /// A blackhole adjacency (for `drop` routes).
    pub fn blackhole(&mut self) -> Result<NextHop, L3Error> {
        self.adjacency(Adj {
            port: 0,
            kind: AdjKind::Drop,
        })
    }

    /// Mutable access to the state being built (neighbour timers, static ARP).
    pub fn state_mut(&mut self) -> &mut L3 {
        &mut self.l3
    }

    pub fn build(self) -> L3 {
        self.l3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Port 0 with the one IPv4 address `addr/len`.
    fn iface(addr: Ipv4Addr, len: u8) -> Iface {
        Iface {
            name: "a".into(),
            port: 0,
            mac: [2, 0, 0, 0, 0, 1],
            v4: alloc::vec![Net4 { addr, len }],
            v6: Vec::new(),
            mtu: 1500,
        }
    }

    fn builder() -> L3Builder {
        let mut b = L3Builder::new(16, 16).unwrap();
        b.iface(iface(Ipv4Addr::new(10, 1, 0, 1), 16)).unwrap();
        b
    }

    fn kind(l3: &L3, a: [u8; 4]) -> Option<AdjKind> {
        let nh = l3.fib4.lookup(u32::from_be_bytes(a))?;
        l3.adj(nh).map(|a| a.kind)
    }

    #[test]
    fn martian_destinations_are_drop_routes_whatever_the_default_route() {
        let mut b = builder();
        let gw = b.via4(Ipv4Addr::new(10, 1, 0, 2)).unwrap();
        b.route4(Ipv4Addr::UNSPECIFIED, 0, gw).unwrap();
        b.route4(Ipv4Addr::new(192, 0, 0, 0), 2, gw).unwrap();
        let l3 = b.build();
        // connected, local and the two routes; the martian entries are not counted
        assert_eq!(l3.routes4(), 4);
        assert_eq!(l3.fib4.len(), 4 + 4 + 1);
        let m = |a| match kind(&l3, a) {
            Some(AdjKind::Martian(m)) => Some(m.reason(u32::from_be_bytes(a))),
            _ => None,
        };
        assert_eq!(m([0, 0, 0, 0]), Some(Martian4::ThisNet));
        assert_eq!(m([0, 200, 1, 1]), Some(Martian4::ThisNet));
        assert_eq!(m([127, 0, 0, 1]), Some(Martian4::Loopback));
        assert_eq!(m([224, 0, 0, 5]), Some(Martian4::Multicast));
        assert_eq!(m([239, 255, 255, 255]), Some(Martian4::Multicast));
        assert_eq!(m([240, 0, 0, 1]), Some(Martian4::ClassE));
        assert_eq!(m([255, 255, 255, 254]), Some(Martian4::ClassE));
        assert_eq!(m([255, 255, 255, 255]), Some(Martian4::LimitedBroadcast));
        // the /16's broadcast, outside the /24 of our own address
        assert_eq!(m([10, 1, 255, 255]), Some(Martian4::DirectedBroadcast));
        // neighbours of the martian space are routed as configured
        assert_eq!(
            kind(&l3, [1, 0, 0, 0]),
            Some(AdjKind::Via4(Ipv4Addr::new(10, 1, 0, 2)))
        );
        assert_eq!(
            kind(&l3, [126, 255, 255, 255]),
            Some(AdjKind::Via4(Ipv4Addr::new(10, 1, 0, 2)))
        );
        assert_eq!(
            kind(&l3, [223, 255, 255, 255]),
            Some(AdjKind::Via4(Ipv4Addr::new(10, 1, 0, 2)))
        );
        assert_eq!(kind(&l3, [10, 1, 255, 254]), Some(AdjKind::Glean));
        assert_eq!(kind(&l3, [10, 1, 0, 1]), Some(AdjKind::Local));
    }

    #[test]
    fn routes_into_martian_space_are_refused_in_one_line() {
        let mut b = builder();
        let gw = b.via4(Ipv4Addr::new(10, 1, 0, 2)).unwrap();
        for (net, len) in [
            ([127, 0, 0, 0], 8),
            ([127, 1, 0, 0], 16),
            ([0, 0, 0, 0], 8),
            ([0, 0, 0, 0], 32),
            ([224, 0, 0, 0], 4),
            ([232, 1, 0, 0], 16),
            ([255, 255, 255, 255], 32),
            ([10, 1, 255, 255], 32),
        ] {
            let e = b.route4(Ipv4Addr::from(net), len, gw).unwrap_err();
            let t = alloc::format!("{e}");
            assert!(matches!(e, L3Error::MartianRoute(_)), "{t}");
            assert!(t.contains("martian") && !t.contains('\n'), "{t}");
        }
        let l3 = b.build();
        assert!(matches!(
            kind(&l3, [127, 1, 0, 1]),
            Some(AdjKind::Martian(_))
        ));
    }

    #[test]
    fn an_interface_inside_martian_space_is_refused() {
        let mut b = L3Builder::new(16, 16).unwrap();
        let e = b.iface(iface(Ipv4Addr::new(127, 0, 0, 1), 8)).unwrap_err();
        assert!(matches!(e, L3Error::MartianRoute(_)));
    }
}
