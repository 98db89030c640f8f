//! The built-in models of our VNFs: `router`, `vbng`, `vcpe` and `keyserver`.
//!
//! Each model is an IFA 011 VNFD in [`crate::model`] form: two deployment flavours
//! (`small`, `large`), access/core/management connection points in the order the
//! VNF takes its ports (SR-IOV for the data ports, virtio for management), one
//! software image (the unikernel disk image `target/images/<vnf>.qcow2`), the KPIs
//! taken from the code's metric registry (`dataplane::metrics`, `vbng::metrics`),
//! its management endpoint, health check, drain and day-2 scripts over its RESTCONF
//! API, and its day-0 TOML with how the VNF takes it (fw_cfg or `--config`).
//! The router and the vBNG exist; the vCPE and key server models are sketches of
//! VNFs not written yet (their packages say so).

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

/// A KPI from a metric family of the code's registry (`dataplane::metrics`,
/// `vbng::metrics`): the package names exactly what the VNF exports.
fn kpi(
    id: &str,
    name: &str,
    metric: &dataplane::metrics::Metric,
    unit: &str,
    ifa027: Option<Ifa027Metric>,
    osm_metric: Option<&str>,
    collection_period_s: u64,
) -> Kpi {
    Kpi {
        id: s(id),
        name: s(name),
        metric: s(metric.name),
        unit: s(unit),
        ifa027,
        osm_metric: osm_metric.map(s),
        collection_period_s,
    }
}

/// The engine's KPIs, which every VNF on it exports (per port, node and worker).
fn kpis(extra: Vec<Kpi>) -> Vec<Kpi> {
    use dataplane::metrics as dm;
    let mut v = vec![
        kpi(
            "rx-packets",
            "Frames received (per port)",
            &dm::PORT_RX_PACKETS,
            "packets",
            Some(Ifa027Metric::PacketIncomingVnfExtCp),
            Some("packets_received"),
            10,
        ),
        kpi(
            "tx-packets",
            "Frames sent (per port)",
            &dm::PORT_TX_PACKETS,
            "packets",
            Some(Ifa027Metric::PacketOutgoingVnfExtCp),
            Some("packets_sent"),
            10,
        ),
        kpi(
            "rx-bytes",
            "Bytes received (per port)",
            &dm::PORT_RX_BYTES,
            "bytes",
            Some(Ifa027Metric::ByteIncomingVnfExtCp),
            None,
            10,
        ),
        kpi(
            "tx-bytes",
            "Bytes sent (per port)",
            &dm::PORT_TX_BYTES,
            "bytes",
            Some(Ifa027Metric::ByteOutgoingVnfExtCp),
            None,
            10,
        ),
        kpi(
            "drops",
            "Dropped packets (per node and reason)",
            &dm::NODE_DROPS,
            "packets",
            None,
            Some("packets_in_dropped"),
            10,
        ),
        kpi(
            "idle-loops",
            "Poll loops without a packet (busy ratio = 1 - idle/loops)",
            &dm::WORKER_IDLE_LOOPS,
            "loops",
            None,
            None,
            30,
        ),
    ];
    v.extend(extra);
    v
}

fn curl_json() -> &'static str {
    "curl -sf -H 'Content-Type: application/yang-data+json' -H 'Accept: application/yang-data+json'"
}

/// `instantiate_end`: the management endpoint answers (the RESTCONF state resource
/// and the first KPI's metric family).
fn health_script(m: &VnfModel) -> LcmScript {
    let mg = &m.management;
    let first = m.kpis.first().map_or("", |k| k.metric.as_str());
    LcmScript {
        id: s("health-check"),
        event: LcmEvent::InstantiateEnd,
        file_name: s("health-check.sh"),
        content: format!(
            "#!/bin/sh\n\
             # instantiate_end: wait until {vnf} answers on its management endpoint:\n\
             # GET {health} (RESTCONF) and {metrics} with `{first}`.\n\
             set -eu\n\
             host=\"${{1:?usage: health-check.sh MGMT_IP [TRIES]}}\"\n\
             tries=\"${{2:-60}}\"\n\
             base=\"http://$host:{port}\"\n\
             i=0\n\
             while [ \"$i\" -lt \"$tries\" ]; do\n\
             \x20 if curl -sf -H 'Accept: application/yang-data+json' \"$base{health}\" >/dev/null &&\n\
             \x20    curl -sf \"$base{metrics}\" | grep -q '^{first}'; then\n\
             \x20   echo \"{vnf} healthy\"; exit 0\n\
             \x20 fi\n\
             \x20 i=$((i + 1)); sleep 1\n\
             done\n\
             echo \"{vnf} did not become healthy\" >&2\n\
             exit 1\n",
            vnf = m.name,
            port = mg.port,
            health = mg.health_path,
            metrics = mg.metrics_path,
        ),
    }
}

/// `terminate_start`: the vBNG's `drain` RPC (no new sessions, existing ones stay).
fn drain_script(m: &VnfModel) -> LcmScript {
    LcmScript {
        id: s("drain"),
        event: LcmEvent::TerminateStart,
        file_name: s("drain.sh"),
        content: format!(
            "#!/bin/sh\n\
             # terminate_start: {vnf} stops accepting sessions (RESTCONF RPC {vnf}:drain);\n\
             # prints the RPC output (sessions left).\n\
             set -eu\n\
             host=\"${{1:?usage: drain.sh MGMT_IP}}\"\n\
             {curl} -X POST -d '{{\"{vnf}:input\":{{\"enable\":true}}}}' \\\n\
             \x20 \"http://$host:{port}/restconf/operations/{vnf}:drain\"\n\
             echo\n",
            vnf = m.name,
            curl = curl_json(),
            port = m.management.port,
        ),
    }
}

/// A day-1/day-2 operation script: `METHOD PATH` with a JSON body built from the
/// script's arguments by `body` (a shell expression), answering 2xx or failing.
fn operation(
    m: &VnfModel,
    name: &str,
    description: &str,
    method: &str,
    path: &str,
    usage: &str,
    body: Option<&str>,
) -> Operation {
    let data = body.map_or(String::new(), |b| format!(" -d \"{b}\""));
    Operation {
        name: s(name),
        description: s(description),
        method: s(method),
        path: s(path),
        params: usage
            .split_whitespace()
            .map(|p| p.to_ascii_lowercase().replace(['_', '|'], "-"))
            .collect(),
        file_name: format!("{name}.sh"),
        content: format!(
            "#!/bin/sh\n\
             # {description}\n\
             # {method} {path} on the {vnf} management API (RESTCONF, RFC 8040).\n\
             set -eu\n\
             [ \"$#\" -ge 1 ] || {{ echo 'usage: {name}.sh MGMT_IP {usage}' >&2; exit 2; }}\n\
             host=\"$1\"; shift\n\
             {curl} -X {method}{data} \"http://$host:{port}{path}\"\n",
            vnf = m.name,
            curl = curl_json(),
            port = m.management.port,
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
            fw_cfg: s("opt/vnf/config"),
            process_command: format!("{name} --config /etc/{name}/{name}.toml"),
            toml: String::new(),
        },
        lcm_scripts: Vec::new(),
        management: Management {
            port: 9100,
            metrics_path: s("/metrics"),
            api_root: format!("/restconf/data/{name}:{name}"),
            health_path: format!("/restconf/data/{name}:{name}/state"),
            served_by: format!("not implemented yet: there is no {name} binary"),
        },
        operations: Vec::new(),
    }
}

/// The three connection points of our single-VDU VNFs, in the order the unikernel
/// takes its virtio-net NICs (port 0 access, port 1 core) and the process its
/// ports; management last (the process's `--listen`; the unikernel has no
/// management NIC yet).
fn three_cps(vdu: &str, bps: u64) -> Vec<VduCp> {
    vec![
        cp(
            &format!("{vdu}-access"),
            CpRole::Access,
            Vnic::SrIov,
            0,
            "access-vl",
            bps,
        ),
        cp(
            &format!("{vdu}-core"),
            CpRole::Core,
            Vnic::SrIov,
            1,
            "core-vl",
            bps,
        ),
        cp(
            &format!("{vdu}-mgmt"),
            CpRole::Management,
            Vnic::Virtio,
            2,
            "mgmt-vl",
            GBPS,
        ),
    ]
}

fn three_ext_cps(access: &str, core: &str, mgmt: &str) -> Vec<ExtCp> {
    vec![
        ext(
            "mgmt",
            mgmt,
            CpRole::Management,
            "mgmt-vl",
            LayerProtocol::Ipv4,
        ),
        ext(
            "access",
            access,
            CpRole::Access,
            "access-vl",
            LayerProtocol::Ethernet,
        ),
        ext("core", core, CpRole::Core, "core-vl", LayerProtocol::Ipv4),
    ]
}

/// `PREFIX` percent-encoded for a list key in a path (RFC 8040 §3.5.3), in sh.
const ROUTE_KEY: &str = "$(printf %s \"$1\" | sed 's|/|%2F|')";

/// IP router: one VDU (data and control plane in one process or unikernel) with
/// access and core ports and the management endpoint.
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
        description: s("Router data plane and control plane in one process or unikernel"),
        cps: three_cps("router", 10 * GBPS),
    }];
    m.virtual_links = vec![
        mgmt_vl(),
        vl(
            "access-vl",
            "Access side (interface 0)",
            LayerProtocol::Ethernet,
            None,
            10 * GBPS,
        ),
        vl(
            "core-vl",
            "Core side (interface 1)",
            LayerProtocol::Ipv4,
            None,
            10 * GBPS,
        ),
    ];
    m.ext_cps = three_ext_cps("Access network", "Core network", "Management");
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
    m.kpis = kpis(Vec::new());
    // The shipped example with its two interfaces on AF_PACKET ports named like the
    // CPs (the unikernel maps interfaces to its NICs in order and ignores the spec).
    m.day0.toml = include_str!("../../vnfs/router/examples/router.toml")
        .replace("\"mem:access\"", "\"afpacket:access\"")
        .replace("\"mem:core\"", "\"afpacket:core\"");
    m.day0.process_command = s("router --config /etc/router/router.toml --listen 0.0.0.0:9100");
    m.management.served_by = s(
        "the `router` process (`--listen`), and the unikernel image's own host network \
         stack on its access NIC (port 9100 at interface 0's first IPv4 address: /metrics \
         and the same RESTCONF API, route and policer changes included)",
    );
    m.lcm_scripts = vec![health_script(&m)];
    let route = format!("/restconf/data/router:router/route={ROUTE_KEY}");
    m.operations = vec![
        operation(
            &m,
            "set-nat-pool",
            "Replace the NAT44 pool (existing sessions keep their bindings; removed addresses drain)",
            "PUT",
            "/restconf/data/router:router/nat",
            "ADDR|PREFIX|RANGE",
            Some("{\\\"router:nat\\\":{\\\"pool\\\":[\\\"$1\\\"]}}"),
        ),
        operation(
            &m,
            "add-route",
            "Add or replace a static route",
            "PUT",
            &route,
            "PREFIX NEXT_HOP",
            Some("{\\\"router:route\\\":[{\\\"prefix\\\":\\\"$1\\\",\\\"next-hop\\\":\\\"$2\\\"}]}"),
        ),
        operation(
            &m,
            "delete-route",
            "Delete a static route",
            "DELETE",
            &route,
            "PREFIX",
            None,
        ),
        operation(
            &m,
            "get-state",
            "Read the operational state (interfaces, routes, NAT, drops)",
            "GET",
            "/restconf/data/router:router/state",
            "",
            None,
        ),
    ];
    m
}

/// vBNG: one VDU (PPPoE/IPoE termination, RADIUS or local AAA, QoS, CGNAT in one
/// process or unikernel), the access and core ports and the management endpoint.
pub fn vbng() -> VnfModel {
    let mut m = base(
        "vbng",
        "nfv-rs vBNG",
        "Virtual BNG: PPPoE and IPoE termination, RADIUS AAA, per-subscriber QoS, CGNAT",
        "5a0d5a3e-9f0b-4c59-8a1e-6d2f6b3c7002",
    );
    m.vdus = vec![Vdu {
        id: s("vbng"),
        name: s("vbng"),
        description: s(
            "Subscriber termination (PPPoE, IPoE), AAA, QoS, CGNAT and routing to the core",
        ),
        cps: three_cps("vbng", 25 * GBPS),
    }];
    m.virtual_links = vec![
        mgmt_vl(),
        vl(
            "access-vl",
            "Subscriber access (S-VLAN/C-VLAN), port 0",
            LayerProtocol::Ethernet,
            None,
            25 * GBPS,
        ),
        vl(
            "core-vl",
            "Core / Internet, port 1",
            LayerProtocol::Ipv4,
            None,
            25 * GBPS,
        ),
    ];
    m.ext_cps = three_ext_cps("Subscriber access", "Core network", "Management and RADIUS");
    m.flavours = vec![
        flavour(
            "small",
            "4 vCPU: 8k subscribers",
            "vbng",
            (4, 4096, 1),
            1,
            &[],
        ),
        flavour(
            "large",
            "16 vCPU: 64k subscribers",
            "vbng",
            (16, 16384, 2),
            3,
            &[],
        ),
    ];
    m.kpis = kpis(vec![
        kpi(
            "sessions",
            "Subscriber sessions (PPPoE and IPoE)",
            &vbng::metrics::SESSIONS,
            "sessions",
            None,
            None,
            30,
        ),
        kpi(
            "draining",
            "1 while draining (no new sessions)",
            &vbng::metrics::DRAINING,
            "flag",
            None,
            None,
            30,
        ),
    ]);
    // The configuration the unikernel image bakes in (local users: the image has no
    // host network stack for RADIUS yet); the process takes it too.
    m.day0.toml = include_str!("../../vnfs/unikernel/examples/vbng.toml").to_string();
    m.day0.process_command = s(
        "vbng run --config /etc/vbng/vbng.toml --access afpacket:access --core afpacket:core --listen 0.0.0.0:9180",
    );
    m.management.port = 9180;
    m.management.served_by = s(
        "the `vbng run` process (`--listen`); the unikernel image serves /metrics, \
         /sessions and /errors on its core NIC (the port of `listen` at `core_ip`) but \
         not the RESTCONF API",
    );
    m.lcm_scripts = vec![health_script(&m), drain_script(&m)];
    m.operations = vec![
        operation(
            &m,
            "set-cgnat-pool",
            "Replace the CGNAT pool (existing subscribers keep their address, which drains; new ones use the new pool)",
            "PUT",
            "/restconf/data/vbng:vbng/cgnat",
            "ADDR|PREFIX|RANGE",
            Some("{\\\"vbng:cgnat\\\":{\\\"pool\\\":[\\\"$1\\\"]}}"),
        ),
        operation(
            &m,
            "drain",
            "Stop accepting new sessions (existing ones stay); `false` ends it",
            "POST",
            "/restconf/operations/vbng:drain",
            "[true|false]",
            Some("{\\\"vbng:input\\\":{\\\"enable\\\":${1:-true}}}"),
        ),
        operation(
            &m,
            "set-subscriber-rate",
            "Default per-subscriber rates in bit/s (sessions without their own)",
            "PATCH",
            "/restconf/data/vbng:vbng/subscriber-defaults",
            "RATE_UP RATE_DOWN",
            Some("{\\\"vbng:subscriber-defaults\\\":{\\\"rate-up\\\":\\\"$1\\\",\\\"rate-down\\\":\\\"$2\\\"}}"),
        ),
        operation(
            &m,
            "disconnect-session",
            "End a session (Acct-Terminate-Cause Admin-Reset)",
            "POST",
            "/restconf/data/vbng:vbng/state/session=$1/disconnect",
            "SESSION_ID",
            None,
        ),
        operation(
            &m,
            "get-state",
            "Read the operational state (sessions, counters)",
            "GET",
            "/restconf/data/vbng:vbng/state",
            "",
            None,
        ),
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
    m.kpis = kpis(Vec::new());
    // The shipped example (site A): `vcpe check` passes it.
    m.day0.toml = include_str!("../../vnfs/vcpe/examples/vcpe-a.toml").to_string();
    m.day0.process_command = s("vcpe run /etc/vcpe/vcpe.toml --listen 0.0.0.0:9100");
    m.management.served_by = s(
        "the `vcpe run` process (`--listen`): RESTCONF-shaped API of the YANG module \
         vcpe@2026-12-02 (`vcpe api` is its client)",
    );
    m.lcm_scripts = vec![health_script(&m)];
    let route = format!("/restconf/data/vcpe:vcpe/route={ROUTE_KEY}");
    let rule = "/restconf/data/vcpe:vcpe/firewall/rule=$1";
    m.operations = vec![
        operation(
            &m,
            "add-route",
            "Add or replace a static route (applied while traffic flows)",
            "PUT",
            &route,
            "PREFIX NEXT_HOP",
            Some("{\\\"vcpe:route\\\":[{\\\"prefix\\\":\\\"$1\\\",\\\"next-hop\\\":\\\"$2\\\"}]}"),
        ),
        operation(
            &m,
            "delete-route",
            "Delete a static route",
            "DELETE",
            &route,
            "PREFIX",
            None,
        ),
        operation(
            &m,
            "deny-destination",
            "Add or replace a firewall rule denying LAN traffic to a destination (tracked connections to it end)",
            "PUT",
            rule,
            "RULE_NAME DESTINATION",
            Some("{\\\"vcpe:rule\\\":[{\\\"name\\\":\\\"$1\\\",\\\"action\\\":\\\"deny\\\",\\\"from\\\":\\\"lan\\\",\\\"destination\\\":\\\"$2\\\"}]}"),
        ),
        operation(
            &m,
            "delete-rule",
            "Delete a firewall rule",
            "DELETE",
            rule,
            "RULE_NAME",
            None,
        ),
        operation(
            &m,
            "get-state",
            "Read the operational state (interfaces, leases, NAT, firewall, tunnel SAs)",
            "GET",
            "/restconf/data/vcpe:vcpe/state",
            "",
            None,
        ),
    ];
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
    m.kpis = kpis(Vec::new());
    // The configuration the unikernel image bakes in (`testbed image build
    // keyserver`; no journal: the image has no persistent disk, a restarted guest
    // re-keys every CPE); the process takes it too.
    m.day0.toml = include_str!("../../vnfs/unikernel/examples/keyserver.toml").to_string();
    m.day0.process_command = s("keyserver run /etc/keyserver/keyserver.toml");
    m.management.served_by = s(
        "the `keyserver run` process on `server.metrics`: /metrics, POST /revoke and the \
         RESTCONF-shaped API of the YANG module keyserver@2026-12-02 (`keyserver api`); \
         the unikernel image serves /metrics, GET .../state and the revoke action at \
         `server.metrics` on its management NIC (ks-mgmt, NIC 0; `mgmt=` on the kernel \
         command line moves it) and IKE at `server.listen` on its CPE-facing NIC \
         (ks-core, NIC 1; `core=`), a stack on each; with `metrics` at `listen`'s \
         address one stack on NIC 0 serves both",
    );
    m.lcm_scripts = vec![health_script(&m)];
    m.operations = vec![
        operation(
            &m,
            "set-rekey-interval",
            "Change how often every tunnel's keys are replaced (seconds; at run time)",
            "PATCH",
            "/restconf/data/keyserver:keyserver/server",
            "SECONDS",
            Some("{\\\"keyserver:server\\\":{\\\"rekey-interval\\\":$1}}"),
        ),
        operation(
            &m,
            "revoke-cpe",
            "Revoke a CPE: its peers delete their SAs with it (YANG action revoke)",
            "POST",
            "/restconf/data/keyserver:keyserver/cpe=$1/revoke",
            "CPE_ID",
            None,
        ),
        operation(
            &m,
            "get-state",
            "Read the operational state (CPEs up/served, tunnels' SA generation and rekey times)",
            "GET",
            "/restconf/data/keyserver:keyserver/state",
            "",
            None,
        ),
    ];
    m
}
