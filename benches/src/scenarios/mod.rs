//! Bench scenarios. Each is `fn(&Params) -> anyhow::Result<Report>`, registered in
//! [`SCENARIOS`].

use crate::{Params, Report};

pub mod bng;
pub mod esp;
pub mod ike;
pub mod l3fwd;
pub mod nat;
pub mod pktgen;
pub mod vcpe;

pub type ScenarioFn = fn(&Params) -> anyhow::Result<Report>;

/// Registered scenarios: (name, description, function).
pub const SCENARIOS: &[(&str, &str, ScenarioFn)] = &[
    (
        "l3fwd-small",
        "router pipeline, 16 routes, mem rings",
        l3fwd::l3fwd_small,
    ),
    (
        "l3fwd-bgp",
        "router pipeline, 1M BGP-like prefixes, random destinations",
        l3fwd::l3fwd_bgp,
    ),
    (
        "nat44",
        "NAT44 in2out, 1M active sessions, random flows",
        nat::nat44,
    ),
    ("nat44-new", "NAT44 new sessions per second", nat::nat44_new),
    ("fw", "stateful firewall, 1k rules", nat::fw),
    ("policer", "two-rate three-colour policer", nat::policer),
    (
        "esp-enc",
        "ESP AES-GCM-128 tunnel encrypt stage",
        esp::esp_enc,
    ),
    (
        "esp-dec",
        "ESP AES-GCM-128 tunnel decrypt stage",
        esp::esp_dec,
    ),
    (
        "ike-handshake",
        "IKEv2 IKE_SA_INIT + IKE_AUTH + child SA per second, DH groups 14/19/31",
        ike::ike_handshake,
    ),
    (
        "bng-up",
        "vBNG upstream (PPPoE decap, anti-spoofing, route), 10k sessions",
        bng::bng_up,
    ),
    (
        "bng-up-ipoe",
        "vBNG upstream IPoE (DHCPv4 sessions, anti-spoofing, route), 10k sessions",
        bng::bng_up_ipoe,
    ),
    (
        "bng-down",
        "vBNG downstream (PPPoE encap), 10k sessions",
        bng::bng_down,
    ),
    (
        "pktgen-tx",
        "generator rate per core into the in-memory ring",
        pktgen::pktgen_tx,
    ),
    (
        "vcpe",
        "vCPE LAN->WAN: firewall + NAT44 to the Internet and ESP AES-GCM-128 to a site, 1k flows",
        vcpe::vcpe,
    ),
];
