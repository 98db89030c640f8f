//! Drivers for the vBNG fuzz targets (`fuzz_targets/`), run by `scripts/fuzz`.
//!
//! - `wire`: the stateless parsers the vBNG uses — the engine's protocol views
//!   `dataplane::proto::ethernet` (Ethernet with IEEE 802.1Q / 802.1ad QinQ tags and the
//!   TR-101 access-line VLAN pair), `pppoe` (discovery tags, RFC 2516 §5), `ppp`
//!   (control packets and options, RFC 1661 §5–6; PAP, RFC 1334 §2.2; CHAP, RFC 1994
//!   §4) and `radius` (packets and attributes, RFC 2865 §3, §5; authenticators), and
//!   the vBNG's own Access-Accept reply reader, Framed-IPv6-Prefix (RFC 3162 §2.3) and
//!   IPv6 Neighbor Discovery over PPP (RFC 4861 §4.1–4.3, `vbng::nd`) — with
//!   parse → emit → parse round trips where an emitter exists.
//! - `control`: the stateful control plane. A real emulated subscriber brings a
//!   session up first, then the input is a script of operations: raw frames, frames
//!   inside the live PPPoE session (any PPP protocol), discovery packets with any code,
//!   time jumps (restart timers, keepalives, idle timeouts), more subscribers, and
//!   exchange rounds with the emulated subscribers (one to four at a time, so any
//!   other operation can land between two steps of a set-up). Frames the control
//!   plane sends reach the subscriber they are addressed to. The session table must
//!   stay within its capacity.
//! - `radius`: the RADIUS client and dynamic authorization. A subscriber reaches the
//!   authentication phase against a RADIUS server address (no socket: datagrams are
//!   taken from and given to the control plane), then the input supplies responses —
//!   raw, or correctly signed with the shared secret (so attribute handling is
//!   reached) — and CoA/Disconnect requests (RFC 5176), raw or signed.
//! - `client`: the subscriber emulator (pktgen's PPPoE client) parsing whatever a
//!   BNG might send, in every phase.

use dataplane::proto::ethernet::{self, Vlans};
use dataplane::proto::{ppp, pppoe, radius};
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use std::sync::{Arc, OnceLock};
use vbng::config::{Config, Pool6Config, PoolConfig, RadiusConfig, ServerConfig, UserConfig};
use vbng::control::{ControlPlane, SessionCounters};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::radius::Transmit;
use vbng::rng::Rng;

const SECRET: &[u8] = b"fuzz-secret";
const SLOTS: u32 = 16;
/// Session slots of the `radius` target: it has one subscriber, so a smaller table
/// (cloned for every input) loses nothing.
const RADIUS_SLOTS: u32 = 4;

/// A cursor over the fuzz input.
struct Input<'a> {
    d: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.d.split_first()?;
        self.d = rest;
        Some(b)
    }

    /// A length-prefixed chunk (one length byte; 255 = the rest of the input).
    fn chunk(&mut self) -> Option<&'a [u8]> {
        let l = usize::from(self.byte()?);
        let l = if l == 255 {
            self.d.len()
        } else {
            l.min(self.d.len())
        };
        let (c, rest) = self.d.split_at(l);
        self.d = rest;
        Some(c)
    }
}

fn params(i: u32, auth: AuthProto, password: &[u8]) -> ClientParams {
    ClientParams {
        mac: [2, 0x5c, 0, 0, (i >> 8) as u8, i as u8],
        vlans: Vlans {
            svlan: if i.is_multiple_of(2) { 0 } else { 100 },
            cvlan: (i % 4000) as u16 + 1,
        },
        user: b"alice".to_vec(),
        password: password.to_vec(),
        accept_auth: [Some(auth), None],
        service_name: Vec::new(),
        host_uniq: Some(i.to_be_bytes().to_vec()),
        max_payload: if i.is_multiple_of(2) {
            Some(1500)
        } else {
            None
        },
        timers: Timers::default(),
        ipv6cp: true,
        magic: 0x1000 + i,
        discovery_tries: 3,
    }
}

fn base_config(auth: AuthProto) -> Config {
    Config {
        auth,
        auth_fallback: Some(if auth == AuthProto::Pap {
            AuthProto::Chap
        } else {
            AuthProto::Pap
        }),
        ipv6cp: true,
        keepalive_interval_s: 1,
        // A small pool of its own (the default one is a /14).
        pools: vec![PoolConfig {
            name: "default".into(),
            ranges: vec!["100.64.0.2-100.64.0.31".parse().unwrap()],
        }],
        // Dual stack: sessions get a /64, so RS/NS inside a live session reach the
        // RA/NA code (RFC 4861) and the client's SLAAC.
        pools6: vec![Pool6Config {
            name: "v6".into(),
            prefix: "2001:db8:100::/56".parse().unwrap(),
        }],
        users: vec![UserConfig {
            name: "alice".into(),
            password: "pw".into(),
            ip: None,
            rate: Some("1M/2M".into()),
        }],
        // IPoE beside PPPoE: DHCP and ARP frames reach the DHCP server and the
        // IPoE sessions (a small pool, so exhaustion is reachable).
        ipoe: Some(vbng::config::IpoeSection {
            authorize: false,
            dhcp: vbng::dhcp4::Dhcp4Config {
                gateway: "100.72.0.1/24".parse().unwrap(),
                pools: vec![PoolConfig {
                    name: "ipoe".into(),
                    ranges: vec!["100.72.0.10-100.72.0.17".parse().unwrap()],
                }],
                lease_time_s: 60,
                ..Default::default()
            },
            // IPv6 for IPoE too: DHCPv6 and ND from IPoE lines reach the server and
            // the RA/NA code (small pools, so exhaustion is reachable).
            dhcp6: true,
            ..Default::default()
        }),
        dhcp6: Some(vbng::dhcp6::Dhcp6Config {
            address_pools: vec![vbng::dhcp6::AddrPoolConfig {
                name: "na".into(),
                first: "2001:db8:300::10".parse().unwrap(),
                last: "2001:db8:300::17".parse().unwrap(),
            }],
            prefix_pools: vec![vbng::dhcp6::PrefixPoolConfig {
                name: "pd".into(),
                prefix: "2001:db8:400::/60".parse().unwrap(),
                len: 62,
            }],
            valid_lifetime_s: 120,
            preferred_lifetime_s: 60,
            ..Default::default()
        }),
        ..Config::default()
    }
}

/// A DHCPv6 client message `msg` (any bytes) from MAC `2:5c:dd:0:0:m` on line
/// `vlans`: Ethernet to 33:33:00:01:00:02, IPv6 from the client's link-local
/// address to `ff02::1:2`, UDP 546 → 547 with a valid checksum (RFC 8200 §8.1), so
/// it reaches the DHCPv6 code; `nd`: an ICMPv6 Router Solicitation body instead.
fn dhcp6_frame(m: u8, vlans: Vlans, nd: bool, msg: &[u8]) -> Vec<u8> {
    use dataplane::proto::checksum::PseudoHeader;
    use dataplane::proto::{icmpv6, ipv6, udp, EtherType, IpProtocol};
    let mac = [2, 0x5c, 0xdd, 0, 0, m];
    let eth = ethernet::Repr {
        dst_addr: ethernet::MacAddr([0x33, 0x33, 0, 1, 0, 2]),
        src_addr: ethernet::MacAddr(mac),
        vlans: vlans.to_stack(),
        ethertype: EtherType::IPV6,
    };
    let src = vbng::dhcp6::wire::link_local(ethernet::MacAddr(mac));
    let dst: core::net::Ipv6Addr = if nd { "ff02::2" } else { "ff02::1:2" }.parse().unwrap();
    let l3 = eth.buffer_len();
    let l4 = if nd { msg.len().max(8) } else { udp::HEADER_LEN + msg.len() };
    let mut f = vec![0u8; l3 + ipv6::HEADER_LEN + l4];
    let _ = eth.emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    let _ = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: if nd { IpProtocol::ICMPV6 } else { IpProtocol::UDP },
        payload_len: l4,
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ipv6::Packet::new_unchecked(&mut f[l3..]));
    let at = l3 + ipv6::HEADER_LEN;
    if nd {
        f[at..at + msg.len()].copy_from_slice(msg);
        f[at] = 133;
        icmpv6::Packet::new_unchecked(&mut f[at..]).fill_checksum(&src, &dst);
        return f;
    }
    let mut u = udp::Packet::new_unchecked(&mut f[at..]);
    let _ = udp::Repr {
        src_port: 546,
        dst_port: 547,
        payload_len: msg.len(),
    }
    .emit(&mut u);
    u.payload_mut().copy_from_slice(msg);
    u.fill_checksum(&PseudoHeader::V6 { src, dst });
    f
}

/// A DHCP client message `msg` (any bytes) from MAC `2:5c:dd:0:0:m` on line `vlans`
/// as a well-formed frame (Ethernet, IPv4 with a valid header checksum, UDP 68 → 67
/// without checksum, RFC 768), so it passes the framing and reaches the DHCP code.
fn dhcp_frame(m: u8, vlans: Vlans, unicast: bool, msg: &[u8]) -> Vec<u8> {
    use dataplane::proto::{ipv4, udp, EtherType, IpProtocol};
    let eth = ethernet::Repr {
        dst_addr: ethernet::MacAddr::BROADCAST,
        src_addr: ethernet::MacAddr([2, 0x5c, 0xdd, 0, 0, m]),
        vlans: vlans.to_stack(),
        ethertype: EtherType::IPV4,
    };
    let l3 = eth.buffer_len();
    let ulen = udp::HEADER_LEN + msg.len();
    let mut f = vec![0u8; l3 + ipv4::HEADER_LEN + ulen];
    let _ = eth.emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    let (src, dst) = if unicast {
        (
            core::net::Ipv4Addr::new(100, 72, 0, 10 + (m & 7)),
            core::net::Ipv4Addr::new(100, 72, 0, 1),
        )
    } else {
        (
            core::net::Ipv4Addr::UNSPECIFIED,
            core::net::Ipv4Addr::BROADCAST,
        )
    };
    let _ = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::UDP,
        payload_len: ulen,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut f[l3..]));
    let at = l3 + ipv4::HEADER_LEN;
    f[at..at + 8].copy_from_slice(&[0, 68, 0, 67, (ulen >> 8) as u8, ulen as u8, 0, 0]);
    f[at + 8..].copy_from_slice(msg);
    f
}

fn control_plane(cfg: &Config, slots: u32) -> Option<(ControlPlane, Arc<SessionCounters>)> {
    let counters = SessionCounters::new(slots as usize);
    let cp = ControlPlane::new(cfg, slots, counters.clone(), Rng::from_seed([7; 32])).ok()?;
    Some((cp, counters))
}

/// Where the `control`, `radius` and `client` inputs start: a control plane with the
/// reference subscriber's session set up as far as the target needs. That prefix
/// depends only on the protocol byte (fixed RNG seed, fixed subscriber, time 0), so it
/// is run once per protocol and each input starts from a clone of its end state: an
/// input then costs only its own operations, not a fresh engine and a PPPoE/PPP
/// exchange every time (which was most of each run).
///
/// The clone is exact: everything is owned, except the per-slot traffic counters
/// (`Arc<SessionCounters>`), which the clones share and only the fast path writes
/// (there is none here); [`check_counters`] asserts after each input they are still
/// zero.
#[derive(Clone)]
struct Start {
    cp: ControlPlane,
    subs: Vec<Subscriber>,
    counters: Arc<SessionCounters>,
    /// RADIUS datagrams sent and not yet answered (the `radius` target).
    pending: Vec<Transmit>,
}

fn check_counters(c: &SessionCounters) {
    for i in 0..c.capacity() as u32 {
        assert_eq!(
            c.get(i),
            (0, 0, 0, 0),
            "traffic counters written without a fast path"
        );
    }
}

fn auth_of(b: u8) -> AuthProto {
    if b & 1 == 0 {
        AuthProto::Pap
    } else {
        AuthProto::Chap
    }
}

/// The start state for `auth` (index 0 = PAP, 1 = CHAP), built on first use.
fn start(
    cells: &'static [OnceLock<Start>; 2],
    auth: AuthProto,
    make: fn(AuthProto) -> Start,
) -> Start {
    let i = usize::from(auth != AuthProto::Pap);
    cells[i].get_or_init(|| make(auth)).clone()
}

/// Hands each frame the control plane sent to the subscribers it is addressed to;
/// their answers are appended to `up`. Returns the number of frames it sent.
fn deliver(
    cp: &mut ControlPlane,
    subs: &mut [Subscriber],
    now: u64,
    up: &mut Vec<Vec<u8>>,
) -> usize {
    let tx = cp.take_tx();
    let n = tx.len();
    for (_, f) in tx {
        for s in subs
            .iter_mut()
            .filter(|s| f.get(..6) == Some(&s.params().mac[..]))
        {
            s.input(&f, now, up);
        }
    }
    n
}

/// Exchange frames between the control plane and the subscribers until quiet.
fn converse(cp: &mut ControlPlane, subs: &mut [Subscriber], now: u64, mut up: Vec<Vec<u8>>) {
    for _ in 0..40 {
        for f in up.drain(..) {
            cp.input(0, &f, now);
        }
        cp.poll(now);
        if deliver(cp, subs, now, &mut up) == 0 {
            break;
        }
    }
    let _ = cp.take_fib();
    let _ = cp.take_setup_ms();
}

/// Stateless parsers with round trips.
pub fn exercise_wire(data: &[u8]) {
    if let Ok(e) = ethernet::Frame::new_checked(data).and_then(|f| ethernet::Repr::parse(&f)) {
        // Through the access-line VLAN pair, as the vBNG keys and answers a subscriber.
        let access = ethernet::Repr {
            vlans: Vlans::from(e.vlans).to_stack(),
            ..e
        };
        for r in [e, access] {
            let mut buf = vec![0u8; r.buffer_len()];
            if r.emit(&mut ethernet::Frame::new_unchecked(&mut buf[..]))
                .is_ok()
            {
                let again =
                    ethernet::Frame::new_checked(&buf[..]).and_then(|f| ethernet::Repr::parse(&f));
                assert!(again.is_ok(), "emitted Ethernet header does not parse");
            }
        }
    }
    if let Ok(p) = pppoe::Packet::new_checked(data) {
        let _ = (p.code(), p.session_id(), p.length(), p.payload().len());
        for t in pppoe::Tags::new(p.payload()) {
            let _ = t;
        }
        if let Ok(r) = pppoe::DiscoveryRepr::parse(&p) {
            let mut out = Vec::new();
            if r.emit(&mut out).is_ok() {
                if let Ok(p2) = pppoe::Packet::new_checked(&out[..]) {
                    assert!(
                        pppoe::DiscoveryRepr::parse(&p2).is_ok(),
                        "emitted discovery packet does not parse"
                    );
                }
            }
        }
    }
    if let Ok((_proto, info)) = ppp::split_protocol(data) {
        if let Ok(cp) = ppp::ControlPacket::parse(info) {
            for o in ppp::Options::new(cp.data) {
                if o.is_err() {
                    break;
                }
            }
            let _ = ppp::Options::validate(cp.data);
            if let Ok(pap) = ppp::PapRepr::parse(&cp) {
                let mut out = Vec::new();
                pap.emit_frame(cp.id, &mut out);
            }
            if let Ok(chap) = ppp::ChapRepr::parse(&cp) {
                let mut out = Vec::new();
                chap.emit_frame(cp.id, &mut out);
            }
        }
    }
    if let Ok(p) = radius::Packet::new_checked(data) {
        for a in p.attrs() {
            let _ = a;
        }
        let _ = p.vsa(0, 0);
        let _ = vbng::radius::Reply::from_packet(&p);
        let _ = radius::verify_response(&p, SECRET, &[0; 16]);
        let _ = radius::verify_request_md5(&p, SECRET);
    }
    if let Some((p, l)) = vbng::radius::parse_ipv6_prefix(data) {
        let v = vbng::radius::ipv6_prefix_value(p, l);
        assert_eq!(
            vbng::radius::parse_ipv6_prefix(&v),
            Some((p, l)),
            "Framed-IPv6-Prefix round trip"
        );
    }
    if let Ok(vbng::nd::Nd::RouterAdvert {
        src,
        lifetime_s,
        slaac_prefix: Some(prefix @ 1..),
        ..
    }) = vbng::nd::parse(data)
    {
        let mut f = Vec::new();
        let p = vbng::nd::RaParams {
            prefix,
            router_lifetime_s: lifetime_s,
            valid_s: 1,
            preferred_s: 1,
            mtu: 0,
            dns: Vec::new(),
            dns_lifetime_s: 0,
            managed: false,
            other: false,
            slla: None,
        };
        vbng::nd::router_advertisement(src as u64, vbng::nd::ALL_NODES, &p, &mut f);
        assert!(
            matches!(vbng::nd::parse(&f[2..]), Ok(vbng::nd::Nd::RouterAdvert { slaac_prefix: Some(x), .. }) if x == prefix),
            "emitted RA does not parse"
        );
    }
    if data.len() >= 16 {
        let ra: [u8; 16] = data[..16].try_into().unwrap_or([0; 16]);
        let _ = radius::unhide_password(SECRET, &ra, &data[16..]);
    }
}

/// The `control` start: one real session up.
fn control_start(auth: AuthProto) -> Start {
    let (mut cp, counters) =
        control_plane(&base_config(auth), SLOTS).expect("the base configuration is valid");
    let mut subs = vec![Subscriber::new(params(1, auth, b"pw"))];
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    converse(&mut cp, &mut subs, 0, up);
    let live = subs[0].phase == ClientPhase::Up;
    assert!(live, "the reference session did not come up");
    Start {
        cp,
        subs,
        counters,
        pending: Vec::new(),
    }
}

/// The control plane driven by a script, after one real session came up.
pub fn exercise_control(data: &[u8]) {
    static STARTS: [OnceLock<Start>; 2] = [const { OnceLock::new() }; 2];
    let mut inp = Input { d: data };
    let auth = auth_of(inp.byte().unwrap_or(0));
    let Start {
        mut cp,
        mut subs,
        counters,
        ..
    } = start(&STARTS, auth, control_start);
    let mut now = 0u64;
    let mut up: Vec<Vec<u8>> = Vec::new();
    let frame_of = |s: &Subscriber, code: u8, sid: u16, payload: &[u8]| -> Vec<u8> {
        let p = s.params();
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&p.mac);
        f.extend_from_slice(&[0x88, 0x63, 0x11, code]);
        f.extend_from_slice(&sid.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    while let Some(op) = inp.byte() {
        match op % 7 {
            0 => {
                let c = inp.chunk().unwrap_or(&[]);
                cp.input(0, c, now);
            }
            6 => {
                // A DHCP message (IPoE) from one of eight clients on two lines;
                // the message is the script's, often a fixed header with its options.
                let b = inp.byte().unwrap_or(0);
                let c = inp.chunk().unwrap_or(&[]);
                let mut msg = Vec::with_capacity(240 + c.len());
                if b & 0x80 != 0 {
                    // BOOTREQUEST, Ethernet, chaddr = the frame's MAC, magic cookie:
                    // the script writes the options.
                    msg.extend_from_slice(&[1, 1, 6, 0, 0, 0, 0, b, 0, 0, 0x80, 0]);
                    msg.resize(28, 0);
                    msg.extend_from_slice(&[2, 0x5c, 0xdd, 0, 0, b & 7]);
                    msg.resize(236, 0);
                    msg.extend_from_slice(&[99, 130, 83, 99]);
                }
                msg.extend_from_slice(c);
                let vlans = Vlans {
                    svlan: 0,
                    cvlan: if b & 8 != 0 { 7 } else { 0 },
                };
                if b & 0x20 != 0 && b & 0x80 == 0 {
                    // DHCPv6 (or a Router Solicitation) from the same lines.
                    cp.input(0, &dhcp6_frame(b & 7, vlans, b & 0x40 != 0, c), now);
                } else {
                    cp.input(0, &dhcp_frame(b & 7, vlans, b & 0x40 != 0, &msg), now);
                }
            }
            1 => {
                // Any PPP payload inside the live session.
                let c = inp.chunk().unwrap_or(&[]);
                let f = subs[0].session_frame(c);
                cp.input(0, &f, now);
            }
            2 => {
                let code = inp.byte().unwrap_or(0x09);
                let sid = u16::from(inp.byte().unwrap_or(0));
                let c = inp.chunk().unwrap_or(&[]);
                let f = frame_of(&subs[0], code, sid, c);
                cp.input(0, &f, now);
            }
            3 => {
                now += u64::from(inp.byte().unwrap_or(1)) * 250;
                cp.poll(now);
            }
            4 => {
                // A second subscriber (wrong password on odd bytes) runs alongside.
                let b = inp.byte().unwrap_or(0);
                let pw: &[u8] = if b & 1 == 0 { b"pw" } else { b"bad" };
                if subs.len() < 4 {
                    subs.push(Subscriber::new(params(2 + u32::from(b % 8), auth, pw)));
                    if let Some(s) = subs.last_mut() {
                        s.start(now, &mut up);
                    }
                }
            }
            _ => {
                // A few exchange rounds between the control plane and the emulated
                // subscribers (their timers first): the script decides how far each
                // set-up gets before the next operation, so retransmissions, time
                // jumps and raw frames land between any two steps of it.
                let rounds = 1 + inp.byte().unwrap_or(0) % 4;
                for s in subs.iter_mut() {
                    s.poll(now, &mut up);
                }
                for _ in 0..rounds {
                    if up.is_empty() {
                        break;
                    }
                    for f in up.drain(..) {
                        cp.input(0, &f, now);
                    }
                    cp.poll(now);
                    deliver(&mut cp, &mut subs, now, &mut up);
                }
            }
        }
        // What the control plane sent reaches the subscriber it is addressed to;
        // their answers wait in `up` for the next exchange round.
        deliver(&mut cp, &mut subs, now, &mut up);
        let _ = cp.take_fib();
        let _ = cp.take_setup_ms();
        let _ = cp.take_radius_tx();
        assert!(
            cp.session_count() <= SLOTS as usize,
            "session table overflow"
        );
    }
    let _ = cp.sessions();
    check_counters(&counters);
}

fn radius_config(auth: AuthProto) -> Config {
    let srv = |port: u16| ServerConfig {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        secret: String::from_utf8_lossy(SECRET).into_owned().into(),
    };
    Config {
        radius: Some(RadiusConfig {
            auth: vec![srv(1812), srv(2812)],
            acct: vec![srv(1813)],
            timeout_ms: 500,
            tries: 2,
            interim_s: 1,
            coa_secret: String::from_utf8_lossy(SECRET).into_owned().into(),
            local_fallback: true,
            ..RadiusConfig::default()
        }),
        ..base_config(auth)
    }
}

/// A response to `req` built from fuzz attributes, signed with the shared secret.
fn signed_response(req: &[u8], code: u8, attrs: &[u8], msg_auth: bool) -> Option<Vec<u8>> {
    let p = radius::Packet::new_checked(req).ok()?;
    let mut b = radius::Builder::new(code, p.id(), [0; 16]);
    push_attrs(&mut b, attrs);
    if msg_auth {
        b.message_authenticator();
    }
    b.finish_response(SECRET, &p.authenticator()).ok()
}

fn push_attrs(b: &mut radius::Builder, mut attrs: &[u8]) {
    while let [t, l, rest @ ..] = attrs {
        let l = usize::from(*l).min(rest.len());
        b.attr(*t, &rest[..l]);
        attrs = &rest[l..];
    }
}

/// The `radius` start: the subscriber authenticated, its Access-Request pending.
fn radius_start(auth: AuthProto) -> Start {
    let (mut cp, counters) = control_plane(&radius_config(auth), RADIUS_SLOTS)
        .expect("the RADIUS configuration is valid");
    let mut subs = vec![Subscriber::new(params(1, auth, b"pw"))];
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    converse(&mut cp, &mut subs, 0, up);
    let pending = cp.take_radius_tx();
    assert!(
        !pending.is_empty(),
        "no Access-Request after the subscriber authenticated"
    );
    Start {
        cp,
        subs,
        counters,
        pending,
    }
}

/// RADIUS responses and dynamic-authorization requests.
pub fn exercise_radius(data: &[u8]) {
    static STARTS: [OnceLock<Start>; 2] = [const { OnceLock::new() }; 2];
    let mut inp = Input { d: data };
    let auth = auth_of(inp.byte().unwrap_or(0));
    let Start {
        mut cp,
        mut subs,
        counters,
        mut pending,
    } = start(&STARTS, auth, radius_start);
    let mut now = 0u64;
    while let Some(op) = inp.byte() {
        match op % 6 {
            0 => {
                let c = inp.chunk().unwrap_or(&[]);
                if let Some(t) = pending.first() {
                    cp.radius_input(t.channel, t.to, c, now);
                }
            }
            1 | 2 => {
                // A correctly signed response to the oldest pending request.
                let code = inp.byte().unwrap_or(2);
                let attrs = inp.chunk().unwrap_or(&[]);
                if !pending.is_empty() {
                    let t = pending.remove(0);
                    if let Some(r) = signed_response(&t.bytes, code % 6, attrs, op % 6 == 1) {
                        cp.radius_input(t.channel, t.to, &r, now);
                    }
                }
            }
            3 => {
                let c = inp.chunk().unwrap_or(&[]);
                let _ = cp.dynauth(c, now);
            }
            4 => {
                // A signed CoA (43) or Disconnect (40) request with fuzz attributes.
                let code = if inp.byte().unwrap_or(0) & 1 == 0 {
                    43
                } else {
                    40
                };
                let id = inp.byte().unwrap_or(0);
                let attrs = inp.chunk().unwrap_or(&[]);
                let mut b = radius::Builder::new(code, id, [0; 16]);
                push_attrs(&mut b, attrs);
                if let Ok(req) = b.finish_request_md5(SECRET) {
                    let _ = cp.dynauth(&req, now);
                }
            }
            _ => {
                now += u64::from(inp.byte().unwrap_or(1)) * 100;
                cp.poll(now);
                let mut up = Vec::new();
                for s in subs.iter_mut() {
                    s.poll(now, &mut up);
                }
                converse(&mut cp, &mut subs, now, up);
            }
        }
        pending.extend(cp.take_radius_tx());
        if pending.len() > 64 {
            pending.drain(..pending.len() - 64);
        }
        let _ = cp.take_tx();
        let _ = cp.take_fib();
        assert!(
            cp.session_count() <= RADIUS_SLOTS as usize,
            "session table overflow"
        );
    }
    let _ = cp.radius_stats();
    let _ = cp.sessions();
    check_counters(&counters);
}

/// Exchanges with a real BNG the `client` target can stop after.
const CLIENT_STOPS: usize = 12;

/// The subscriber after 0..CLIENT_STOPS exchanges with a real BNG, and the frames it
/// has queued for it.
type ClientStarts = Vec<(Subscriber, Vec<Vec<u8>>)>;

fn client_starts(auth: AuthProto) -> ClientStarts {
    let (mut cp, _) =
        control_plane(&base_config(auth), SLOTS).expect("the base configuration is valid");
    let mut sub = Subscriber::new(params(1, auth, b"pw"));
    let mut up = Vec::new();
    let now = 0;
    sub.start(now, &mut up);
    let mut starts = vec![(sub.clone(), up.clone())];
    for _ in 1..CLIENT_STOPS {
        for f in up.drain(..) {
            cp.input(0, &f, now);
        }
        for (_, f) in cp.take_tx() {
            sub.input(&f, now, &mut up);
        }
        starts.push((sub.clone(), up.clone()));
    }
    starts
}

/// The subscriber emulator parsing arbitrary BNG output in each phase.
pub fn exercise_client(data: &[u8]) {
    static STARTS: [OnceLock<ClientStarts>; 2] = [const { OnceLock::new() }; 2];
    let mut inp = Input { d: data };
    let auth = auth_of(inp.byte().unwrap_or(0));
    // A real BNG takes the client part of the way (up to `stop` exchanges), then the
    // fuzz input speaks for the BNG. Those exchanges depend only on `auth` and `stop`:
    // they run once and each input starts from a clone of the subscriber after them.
    let stop = usize::from(inp.byte().unwrap_or(0)) % CLIENT_STOPS;
    let starts = STARTS[usize::from(auth != AuthProto::Pap)].get_or_init(|| client_starts(auth));
    let (mut sub, mut up) = starts[stop].clone();
    let mut now = 0;
    let mac = sub.params().mac;
    while let Some(op) = inp.byte() {
        let c = inp.chunk().unwrap_or(&[]);
        match op % 3 {
            0 => sub.input(c, now, &mut up),
            1 => {
                // Addressed to the client, from the BNG's MAC, any ethertype/payload.
                let mut f = mac.to_vec();
                f.extend_from_slice(&[2, 0, 0, 0, 0xb0, 1]);
                f.extend_from_slice(c);
                sub.input(&f, now, &mut up);
            }
            _ => {
                now += u64::from(op) * 50;
                sub.poll(now, &mut up);
            }
        }
        up.clear();
    }
    let _ = sub.deadline();
}

/// The `bng-fastpath` stage (RFC 2516 §6 session frames, IPv4/IPv6 forwarding,
/// anti-spoofing, ICMP errors, MSS clamping, fragmentation, core-side ARP) on both
/// ports: raw frames, and frames inside a live session or towards a subscriber with
/// fuzz payloads. Every buffer must come back to the pool.
pub fn exercise_fastpath(data: &[u8]) {
    use dataplane::batch::{Batch, Out};
    use dataplane::buf::Pool;
    use dataplane::stage::{NodeStats, Stage};
    use std::sync::{Arc, OnceLock};
    use vbng::control::FibUpdate;
    use vbng::corelink::CoreLink;
    use vbng::fastpath::{update_queue, FastPath, FastPathConfig, LocalConfig, ERRORS};
    use vbng::mss::MssClamp;
    use vbng::pppoe::AccessKey;

    static POOL: OnceLock<Option<&'static Pool>> = OnceLock::new();
    let Some(pool) = *POOL.get_or_init(|| Pool::new(512)) else {
        return;
    };
    let before = pool.available();
    let mut inp = Input { d: data };
    let flags = inp.byte().unwrap_or(0);
    const SUB_IP: u32 = 0x6440_0005;
    const PREFIX6: u64 = 0x2001_0db8_0100_0001;
    let key = AccessKey {
        port: 0,
        mac: [2, 1, 1, 1, 1, 1],
        vlans: Vlans {
            svlan: if flags & 1 != 0 { 10 } else { 0 },
            cvlan: if flags & 2 != 0 { 20 } else { 0 },
        },
    };
    let counters = SessionCounters::new(8);
    let cfg = FastPathConfig {
        access_port: 0,
        core_port: 1,
        access_mac: [2, 0, 0, 0, 0, 0xa],
        core_mac: [2, 0, 0, 0, 0, 0xc],
        core_next_hop: [2, 0, 0, 0, 0, 0xd],
        max_sessions: 8,
    };
    let mut fp = FastPath::new(cfg, update_queue(16), counters).with_local(LocalConfig {
        gateway: Some(core::net::Ipv4Addr::new(100, 64, 0, 1)),
        mss: if flags & 4 != 0 {
            MssClamp::Fixed(1400)
        } else {
            MssClamp::Auto
        },
        icmp_rate: 0,
        icmp_burst: 8,
    });
    if flags & 8 != 0 {
        fp = fp.with_core_link(Arc::new(CoreLink::new(
            core::net::Ipv4Addr::new(198, 51, 100, 1),
            24,
            Some(core::net::Ipv4Addr::new(198, 51, 100, 254)),
        )));
    }
    fp.apply(
        FibUpdate::Add {
            idx: 3,
            key,
            sid: 0x55,
            ip: SUB_IP,
            rate: if flags & 16 != 0 {
                (64_000, 64_000)
            } else {
                (0, 0)
            },
            mtu: if flags & 32 != 0 { 1500 } else { 1492 },
        },
        0,
    );
    fp.apply(
        FibUpdate::Add6 {
            idx: 3,
            prefix: PREFIX6,
            router_iid: 0x0200_00ff_fe00_000a,
        },
        0,
    );
    {
        let mut out = Out::new(2, pool.cache());
        let mut node = NodeStats::new("bng-fastpath", ERRORS);
        let mut now = 1u64;
        // Frames go through in batches of up to 8 (a tick or the end of the input
        // sends what is pending), so the fast path's prefetch of the packet a few
        // places ahead runs on hostile frames too.
        let mut b = Batch::new();
        fn flush(fp: &mut FastPath, node: &mut NodeStats, b: &mut Batch, out: &mut Out, now: u64) {
            out.now_ns = now;
            fp.process(b, node, out);
            b.free_all(&mut out.cache);
            for i in 0..out.ports.len() {
                let mut tx = core::mem::take(&mut out.ports[i]);
                tx.free_all(&mut out.cache);
            }
            let mut punt = core::mem::take(&mut out.punt);
            punt.free_all(&mut out.cache);
        }
        while let Some(op) = inp.byte() {
            let c = inp.chunk().unwrap_or(&[]);
            let (port, frame) = match op % 5 {
                0 => (0u16, c.to_vec()),
                1 => (1u16, c.to_vec()),
                2 => {
                    // Inside the live session: PPP protocol and payload from the input.
                    let mut f = vec![2, 0, 0, 0, 0, 0xa];
                    f.extend_from_slice(&key.mac);
                    if key.vlans.svlan != 0 {
                        f.extend_from_slice(&[0x88, 0xa8, 0, 10]);
                    }
                    if key.vlans.cvlan != 0 {
                        f.extend_from_slice(&[0x81, 0x00, 0, 20]);
                    }
                    f.extend_from_slice(&[0x88, 0x64, 0x11, 0, 0, 0x55]);
                    f.extend_from_slice(&(c.len() as u16).to_be_bytes());
                    f.extend_from_slice(c);
                    (0, f)
                }
                3 => {
                    // From the core towards the subscriber's IPv4 address or /64.
                    let mut f = vec![2, 0, 0, 0, 0, 0xc, 2, 0, 0, 0, 0, 0xd];
                    let mut ip = c.to_vec();
                    if op & 0x80 == 0 {
                        f.extend_from_slice(&[0x08, 0x00]);
                        if ip.len() >= 20 {
                            ip[0] = 0x45;
                            let l = ip.len() as u16;
                            ip[2..4].copy_from_slice(&l.to_be_bytes());
                            ip[16..20].copy_from_slice(&SUB_IP.to_be_bytes());
                        }
                    } else {
                        f.extend_from_slice(&[0x86, 0xdd]);
                        if ip.len() >= 40 {
                            ip[0] = 0x60;
                            let l = (ip.len() - 40) as u16;
                            ip[4..6].copy_from_slice(&l.to_be_bytes());
                            ip[24..32].copy_from_slice(&PREFIX6.to_be_bytes());
                        }
                    }
                    f.extend_from_slice(&ip);
                    (1, f)
                }
                _ => {
                    flush(&mut fp, &mut node, &mut b, &mut out, now);
                    now += u64::from(op) * 10_000_000;
                    out.now_ns = now;
                    fp.tick(&mut out);
                    continue;
                }
            };
            let Some(mut p) = out.cache.alloc() else {
                break;
            };
            if p.copy_from(&frame).is_err() {
                out.cache.free(p);
                continue;
            }
            p.meta.port = port;
            if let Err(p) = b.push(p) {
                out.cache.free(p);
                continue;
            }
            if b.len() >= 8 {
                flush(&mut fp, &mut node, &mut b, &mut out, now);
            }
        }
        flush(&mut fp, &mut node, &mut b, &mut out, now);
        // Whatever the last operation queued (a tick's ARP request) goes back too.
        for i in 0..out.ports.len() {
            let mut tx = core::mem::take(&mut out.ports[i]);
            tx.free_all(&mut out.cache);
        }
        let mut punt = core::mem::take(&mut out.punt);
        punt.free_all(&mut out.cache);
    }
    assert_eq!(pool.available(), before, "the fast path leaked buffers");
}
