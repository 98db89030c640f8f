//! The built-in models of our VNFs: `router`, `vbng`, `vcpe` and `keyserver`.
//!
//! Each model is an IFA 011 VNFD in [`crate::model`] form: two deployment flavours
//! (`small`, `large`), management/access/core connection points (SR-IOV for the
//! high-rate data ports, virtio for management), one software image (the unikernel
//! disk image `target/images/<vnf>.qcow2`), the KPIs each VNF exports in Prometheus
//! text format, and its day-0 TOML.

use crate::model::*;

/// Names of the built-in VNF models.
pub const NAMES: &[&str] = &["router", "vbng", "vcpe", "keyserver"];

/// The built-in model called `name`.
pub fn builtin(name: &str) -> Option<VnfModel> {
    match name {
        "router" => Some(router()),
        "vbng" => Some(vbng()),
        "vcpe" => Some(vcpe()),
        "keyserver" => Some(keyserver()),
        _ => None,
    }
}

const PROVIDER: &str = "nfv-rs";
const VERSION: &str = "0.1.0";
const RELEASE: &str = "2026-11-26T00:00:00+00:00";
const GBPS: u64 = 1_000_000_000;

fn s(x: &str) -> String {
    x.to_string()
}

fn image(name: &str) -> SwImage {
    SwImage {
        name: format!("{name}-unikernel"),
        version: s(VERSION),
        container_format: ContainerFormat::Bare,
        disk_format: DiskFormat::Qcow2,
        min_disk_gib: 1,
        min_ram_mib: 256,
        operating_system: s("nfv-rs-unikernel"),
        supported_virtualisation_environments: vec![s("kvm"), s("qemu")],
    }
}

fn cp(id: &str, role: CpRole, vnic: Vnic, order: u32, vl: &str, bps: u64) -> VduCp {
    let layer_protocols = match role {
        CpRole::Access => vec![LayerProtocol::Ethernet],
        _ => vec![LayerProtocol::Ipv4],
    };
    VduCp {
        id: s(id),
        role,
        vnic,
        order,
        virtual_link: s(vl),
        layer_protocols,
        bitrate_bps: bps,
    }
}

fn vl(id: &str, description: &str, lp: LayerProtocol, cidr: Option<&str>, bps: u64) -> VirtualLink {
    VirtualLink {
        id: s(id),
        description: s(description),
        layer_protocols: vec![lp],
        cidr: cidr.map(s),
        mtu: 1500,
        max_bitrate_bps: bps,
        min_bitrate_bps: bps / 10,
    }
}

fn ext(id: &str, description: &str, role: CpRole, vl: &str, lp: LayerProtocol) -> ExtCp {
    ExtCp {
        id: s(id),
        description: s(description),
        role,
        virtual_link: s(vl),
        layer_protocols: vec![lp],
    }
}

fn mgmt_vl() -> VirtualLink {
    vl(
        "mgmt-vl",
        "Management: config, Prometheus scrape",
        LayerProtocol::Ipv4,
        Some("192.168.100.0/24"),
        GBPS,
    )
}

/// Flavour builder for a VNF whose one scalable VDU is `vdu`; `fixed` lists VDUs with
/// exactly one instance in every flavour.
fn flavour(
    id: &str,
    description: &str,
    vdu: &str,
    (vcpus, ram_mib, disk_gib): (u16, u64, u64),
    max_scale: u32,
    fixed: &[(&str, u16, u64)],
) -> Flavour {
    let aspect = format!("{vdu}-scale-out");
    let mut vdu_profiles = vec![VduProfile {
        vdu: s(vdu),
        vcpus,
        ram_mib,
        disk_gib,
        min_instances: 1,
        max_instances: 1 + max_scale as u16,
    }];
    let mut fixed_levels = Vec::new();
    for &(f, f_vcpus, f_ram) in fixed {
        vdu_profiles.push(VduProfile {
            vdu: s(f),
            vcpus: f_vcpus,
            ram_mib: f_ram,
            disk_gib: 1,
            min_instances: 1,
            max_instances: 1,
        });
        fixed_levels.push(VduLevel {
            vdu: s(f),
            instances: 1,
        });
    }
    let level = |lid: &str, descr: &str, scale: u32| {
        let mut vdu_instances = vec![VduLevel {
            vdu: s(vdu),
            instances: 1 + scale as u16,
        }];
        vdu_instances.extend(fixed_levels.iter().cloned());
        InstantiationLevel {
            id: s(lid),
            description: s(descr),
            vdu_instances,
            scale_levels: vec![AspectLevel {
                aspect: aspect.clone(),
                level: scale,
            }],
        }
    };
    Flavour {
        id: s(id),
        description: s(description),
        vdu_profiles,
        scaling_aspects: vec![ScalingAspect {
            id: aspect.clone(),
            name: format!("{vdu} scale out"),
            description: format!("Adds one {vdu} instance per step (flows spread by RSS)"),
            vdu: s(vdu),
            max_scale_level: max_scale,
            delta_instances: 1,
        }],
        instantiation_levels: vec![
            level("minimal", "One instance", 0),
            level("maximal", "All scale steps taken", max_scale),
        ],
        default_level: s("minimal"),
    }
}

fn kpis(extra: Vec<Kpi>) -> Vec<Kpi> {
    let mut v = vec![
        Kpi {
            id: s("rx-mpps"),
            name: s("Forwarded rate"),
            metric: s("vnf_rx_packets_total"),
            unit: s("Mpps"),
            ifa027: Some(Ifa027Metric::PacketIncomingVnfExtCp),
            osm_metric: Some(s("packets_received")),
            collection_period_s: 10,
        },
        Kpi {
            id: s("tx-mpps"),
            name: s("Transmitted rate"),
            metric: s("vnf_tx_packets_total"),
            unit: s("Mpps"),
            ifa027: Some(Ifa027Metric::PacketOutgoingVnfExtCp),
            osm_metric: Some(s("packets_sent")),
            collection_period_s: 10,
        },
        Kpi {
            id: s("drops"),
            name: s("Dropped packets (all stage drop reasons)"),
            metric: s("vnf_drop_packets_total"),
            unit: s("packets"),
            ifa027: None,
            osm_metric: Some(s("packets_in_dropped")),
            collection_period_s: 10,
        },
        Kpi {
            id: s("cpu"),
            name: s("vCPU usage"),
            metric: s("vnf_cpu_busy_ratio"),
            unit: s("percent"),
            ifa027: Some(Ifa027Metric::VCpuUsageMeanVnf),
            osm_metric: Some(s("cpu_utilization")),
            collection_period_s: 30,
        },
    ];
    v.extend(extra);
    v
}

fn sessions_kpi(metric: &str, name: &str) -> Kpi {
    Kpi {
        id: s("sessions"),
        name: s(name),
        metric: s(metric),
        unit: s("sessions"),
        ifa027: None,
        osm_metric: None,
        collection_period_s: 30,
    }
}

fn health_script(vnf: &str) -> LcmScript {
    LcmScript {
        id: s("health-check"),
        event: LcmEvent::InstantiateEnd,
        file_name: s("health-check.sh"),
        content: format!(
            "#!/bin/sh\n\
             # instantiate_end: wait until the {vnf} metrics endpoint answers.\n\
             set -eu\n\
             host=\"${{1:?usage: health-check.sh MGMT_IP}}\"\n\
             i=0\n\
             while [ \"$i\" -lt 60 ]; do\n\
             \x20 if wget -q -O - \"http://$host:9100/metrics\" | grep -q '^vnf_rx_packets_total'; then\n\
             \x20   echo \"{vnf} ready\"; exit 0\n\
             \x20 fi\n\
             \x20 i=$((i + 1)); sleep 2\n\
             done\n\
             echo \"{vnf} did not become ready\" >&2\n\
             exit 1\n"
        ),
    }
}

fn drain_script(vnf: &str, what: &str) -> LcmScript {
    LcmScript {
        id: s("drain"),
        event: LcmEvent::TerminateStart,
        file_name: s("drain.sh"),
        content: format!(
            "#!/bin/sh\n\
             # terminate_start: ask {vnf} to stop accepting new {what} and report what is left.\n\
             set -eu\n\
             host=\"${{1:?usage: drain.sh MGMT_IP}}\"\n\
             wget -q -O - --post-data='' \"http://$host:9100/drain\"\n"
        ),
    }
}

fn base(name: &str, product: &str, description: &str, uuid: &str) -> VnfModel {
    VnfModel {
        name: s(name),
        descriptor_id: s(uuid),
        descriptor_version: s(VERSION),
        provider: s(PROVIDER),
        product_name: s(product),
        product_info_description: s(description),
        software_version: s(VERSION),
        vnfm_info: vec![s("etsivnfm:v2.6.1")],
        release_date_time: s(RELEASE),
        image: image(name),
        vdus: Vec::new(),
        virtual_links: Vec::new(),
        ext_cps: Vec::new(),
        flavours: Vec::new(),
        kpis: Vec::new(),
        day0: Day0Config {
            file_name: format!("{name}.toml"),
            install_path: format!("/etc/{name}/{name}.toml"),
            toml: String::new(),
        },
        lcm_scripts: Vec::new(),
    }
}

/// IP router: one data-plane VDU with access and core SR-IOV ports.
pub fn router() -> VnfModel {
    let mut m = base(
        "router",
        "nfv-rs Router",
        "Poll-mode IPv4/IPv6 router (DIR-24-8 LPM), virtio or SR-IOV ports",
        "5a0d5a3e-9f0b-4c59-8a1e-6d2f6b3c7001",
    );
    m.vdus = vec![Vdu {
        id: s("router"),
        name: s("router"),
        description: s("Router data plane and control plane in one unikernel"),
        cps: vec![
            cp(
                "router-mgmt",
                CpRole::Management,
                Vnic::Virtio,
                0,
                "mgmt-vl",
                GBPS,
            ),
            cp(
                "router-access",
                CpRole::Access,
                Vnic::SrIov,
                1,
                "access-vl",
                10 * GBPS,
            ),
            cp(
                "router-core",
                CpRole::Core,
                Vnic::SrIov,
                2,
                "core-vl",
                10 * GBPS,
            ),
        ],
    }];
    m.virtual_links = vec![
        mgmt_vl(),
        vl(
            "access-vl",
            "Access side",
            LayerProtocol::Ethernet,
            None,
            10 * GBPS,
        ),
        vl("core-vl", "Core side", LayerProtocol::Ipv4, None, 10 * GBPS),
    ];
    m.ext_cps = vec![
        ext(
            "mgmt",
            "Management",
            CpRole::Management,
            "mgmt-vl",
            LayerProtocol::Ipv4,
        ),
        ext(
            "access",
            "Access network",
            CpRole::Access,
            "access-vl",
            LayerProtocol::Ethernet,
        ),
        ext(
            "core",
            "Core network",
            CpRole::Core,
            "core-vl",
            LayerProtocol::Ipv4,
        ),
    ];
    m.flavours = vec![
        flavour(
            "small",
            "2 vCPU, 2 GiB: lab and edge",
            "router",
            (2, 2048, 1),
            2,
            &[],
        ),
        flavour(
            "large",
            "8 vCPU, 8 GiB: aggregation",
            "router",
            (8, 8192, 2),
            4,
            &[],
        ),
    ];
    m.kpis = kpis(vec![Kpi {
        id: s("routes"),
        name: s("Installed routes"),
        metric: s("router_fib_routes"),
        unit: s("routes"),
        ifa027: None,
        osm_metric: None,
        collection_period_s: 60,
    }]);
    m.day0.toml = include_str!("../../vnfs/router/examples/router.toml").to_string();
    m.lcm_scripts = vec![health_script("router")];
    m
}

/// vBNG: a scalable data-plane VDU and one control-plane VDU (PPPoE/IPoE sessions,
/// RADIUS), joined by an internal link.
pub fn vbng() -> VnfModel {
    let mut m = base(
        "vbng",
        "nfv-rs vBNG",
        "Virtual BNG: PPPoE and IPoE termination, RADIUS AAA, per-subscriber QoS, CGNAT",
        "5a0d5a3e-9f0b-4c59-8a1e-6d2f6b3c7002",
    );
    m.vdus = vec![
        Vdu {
            id: s("bng-dp"),
            name: s("bng-dp"),
            description: s("Data plane: PPPoE/IPoE forwarding, QoS, CGNAT"),
            cps: vec![
                cp(
                    "dp-mgmt",
                    CpRole::Management,
                    Vnic::Virtio,
                    0,
                    "mgmt-vl",
                    GBPS,
                ),
                cp(
                    "dp-access",
                    CpRole::Access,
                    Vnic::SrIov,
                    1,
                    "access-vl",
                    25 * GBPS,
                ),
                cp(
                    "dp-core",
                    CpRole::Core,
                    Vnic::SrIov,
                    2,
                    "core-vl",
                    25 * GBPS,
                ),
                cp(
                    "dp-ctrl",
                    CpRole::Internal,
                    Vnic::Virtio,
                    3,
                    "ctrl-vl",
                    GBPS,
                ),
            ],
        },
        Vdu {
            id: s("bng-cp"),
            name: s("bng-cp"),
            description: s("Control plane: PPP/DHCP sessions, RADIUS, table programming"),
            cps: vec![
                cp(
                    "cp-mgmt",
                    CpRole::Management,
                    Vnic::Virtio,
                    0,
                    "mgmt-vl",
                    GBPS,
                ),
                cp(
                    "cp-ctrl",
                    CpRole::Internal,
                    Vnic::Virtio,
                    1,
                    "ctrl-vl",
                    GBPS,
                ),
            ],
        },
    ];
    m.virtual_links = vec![
        mgmt_vl(),
        vl(
            "access-vl",
            "Subscriber access (S-VLAN/C-VLAN)",
            LayerProtocol::Ethernet,
            None,
            25 * GBPS,
        ),
        vl(
            "core-vl",
            "Core / Internet",
            LayerProtocol::Ipv4,
            None,
            25 * GBPS,
        ),
        vl(
            "ctrl-vl",
            "Punt path and table programming between bng-cp and bng-dp",
            LayerProtocol::Ipv4,
            Some("172.16.0.0/24"),
            GBPS,
        ),
    ];
    m.ext_cps = vec![
        ext(
            "mgmt",
            "Management and RADIUS",
            CpRole::Management,
            "mgmt-vl",
            LayerProtocol::Ipv4,
        ),
        ext(
            "access",
            "Subscriber access",
            CpRole::Access,
            "access-vl",
            LayerProtocol::Ethernet,
        ),
        ext(
            "core",
            "Core network",
            CpRole::Core,
            "core-vl",
            LayerProtocol::Ipv4,
        ),
    ];
    m.flavours = vec![
        flavour(
            "small",
            "4 vCPU data plane: 8k subscribers",
            "bng-dp",
            (4, 4096, 1),
            1,
            &[("bng-cp", 2, 2048)],
        ),
        flavour(
            "large",
            "16 vCPU data plane: 64k subscribers",
            "bng-dp",
            (16, 16384, 2),
            3,
            &[("bng-cp", 4, 4096)],
        ),
    ];
    m.kpis = kpis(vec![sessions_kpi(
        "vbng_sessions_active",
        "Active PPPoE/IPoE sessions",
    )]);
    m.day0.toml = include_str!("../../vnfs/vbng/vbng.example.toml").to_string();
    m.lcm_scripts = vec![
        health_script("vbng"),
        drain_script("vbng", "subscriber sessions"),
    ];
    m
}

/// vCPE: LAN DHCP, NAT, firewall and IPsec to the hub; all ports virtio.
pub fn vcpe() -> VnfModel {
    let mut m = base(
        "vcpe",
        "nfv-rs vCPE",
        "Virtual CPE: LAN DHCP, NAT, stateful firewall, IPsec site-to-site tunnels",
        "5a0d5a3e-9f0b-4c59-8a1e-6d2f6b3c7003",
    );
    m.vdus = vec![Vdu {
        id: s("cpe"),
        name: s("cpe"),
        description: s("vCPE pipeline: DHCP, NAT, firewall, routing, ESP"),
        cps: vec![
            cp(
                "cpe-mgmt",
                CpRole::Management,
                Vnic::Virtio,
                0,
                "mgmt-vl",
                GBPS,
            ),
            cp("cpe-lan", CpRole::Access, Vnic::Virtio, 1, "lan-vl", GBPS),
            cp("cpe-wan", CpRole::Core, Vnic::Virtio, 2, "wan-vl", GBPS),
        ],
    }];
    m.virtual_links = vec![
        mgmt_vl(),
        vl(
            "lan-vl",
            "Customer LAN",
            LayerProtocol::Ethernet,
            None,
            GBPS,
        ),
        vl(
            "wan-vl",
            "WAN uplink / IPsec to the hub",
            LayerProtocol::Ipv4,
            None,
            GBPS,
        ),
    ];
    m.ext_cps = vec![
        ext(
            "mgmt",
            "Management",
            CpRole::Management,
            "mgmt-vl",
            LayerProtocol::Ipv4,
        ),
        ext(
            "lan",
            "Customer LAN",
            CpRole::Access,
            "lan-vl",
            LayerProtocol::Ethernet,
        ),
        ext(
            "wan",
            "WAN uplink",
            CpRole::Core,
            "wan-vl",
            LayerProtocol::Ipv4,
        ),
    ];
    m.flavours = vec![
        flavour(
            "small",
            "1 vCPU, 512 MiB: branch office",
            "cpe",
            (1, 512, 1),
            1,
            &[],
        ),
        flavour(
            "large",
            "4 vCPU, 2 GiB: regional site",
            "cpe",
            (4, 2048, 1),
            1,
            &[],
        ),
    ];
    m.kpis = kpis(vec![sessions_kpi(
        "vcpe_nat_sessions",
        "NAT/firewall sessions",
    )]);
    m.day0.toml = s("# vCPE day-0 configuration (written by cloud-init)\n\
[vnf]\n\
name = \"vcpe\"\n\
\n\
[lan]\n\
port = \"lan\"\n\
address = \"192.168.1.1/24\"\n\
dhcp_pool = \"192.168.1.100-192.168.1.200\"\n\
\n\
[wan]\n\
port = \"wan\"\n\
dhcp = true\n\
\n\
[ipsec]\n\
hub = \"203.0.113.1\"\n\
keyserver = \"203.0.113.2:500\"\n\
\n\
[metrics]\n\
listen = \"0.0.0.0:9100\"\n");
    m.lcm_scripts = vec![health_script("vcpe")];
    m
}

/// SD-WAN key server: control-plane VNF, scaled out by instances.
pub fn keyserver() -> VnfModel {
    let mut m = base(
        "keyserver",
        "nfv-rs Key Server",
        "SD-WAN key server: authenticates CPEs and installs their IPsec SAs (IKEv2)",
        "5a0d5a3e-9f0b-4c59-8a1e-6d2f6b3c7004",
    );
    m.vdus = vec![Vdu {
        id: s("keyserver"),
        name: s("keyserver"),
        description: s("IKEv2 responder and SA distribution"),
        cps: vec![
            cp(
                "ks-mgmt",
                CpRole::Management,
                Vnic::Virtio,
                0,
                "mgmt-vl",
                GBPS,
            ),
            cp("ks-core", CpRole::Core, Vnic::Virtio, 1, "core-vl", GBPS),
        ],
    }];
    m.virtual_links = vec![
        mgmt_vl(),
        vl(
            "core-vl",
            "CPE-facing network (IKEv2)",
            LayerProtocol::Ipv4,
            None,
            GBPS,
        ),
    ];
    m.ext_cps = vec![
        ext(
            "mgmt",
            "Management",
            CpRole::Management,
            "mgmt-vl",
            LayerProtocol::Ipv4,
        ),
        ext(
            "core",
            "CPE-facing",
            CpRole::Core,
            "core-vl",
            LayerProtocol::Ipv4,
        ),
    ];
    m.flavours = vec![
        flavour(
            "small",
            "1 vCPU, 1 GiB: 1k CPEs",
            "keyserver",
            (1, 1024, 1),
            1,
            &[],
        ),
        flavour(
            "large",
            "4 vCPU, 4 GiB: 20k CPEs",
            "keyserver",
            (4, 4096, 1),
            3,
            &[],
        ),
    ];
    m.kpis = kpis(vec![sessions_kpi(
        "keyserver_cpes_served",
        "CPEs with installed SAs",
    )]);
    m.day0.toml = s("# key server day-0 configuration (written by cloud-init)\n\
[vnf]\n\
name = \"keyserver\"\n\
\n\
[ike]\n\
listen = \"0.0.0.0:500\"\n\
psk_file = \"/etc/keyserver/psk\"\n\
rekey_s = 3600\n\
\n\
[metrics]\n\
listen = \"0.0.0.0:9100\"\n");
    m.lcm_scripts = vec![
        health_script("keyserver"),
        drain_script("keyserver", "CPEs"),
    ];
    m
}
