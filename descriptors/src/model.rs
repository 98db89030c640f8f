//! The VNF model: one description of a VNF from which every descriptor is rendered.
//!
//! The fields follow the VNFD information model of ETSI GS NFV-IFA 011 (clause 7.1),
//! which both ETSI GS NFV-SOL 001 (TOSCA) and ETSI GS NFV-SOL 006 (YANG) encode:
//! VNF identity (provider, product, software version), deployment flavours with VDU
//! profiles, instantiation levels and scaling aspects (IFA 011 7.1.8), VDUs with their
//! internal connection points (7.1.6), internal virtual links (7.1.7), external
//! connection points (7.1.3), the software image (7.1.6.5), monitoring parameters
//! (7.1.11.3), day-0 configuration and LCM scripts (7.1.13).
//!
//! The model is plain serde data, so a model can also be read from a YAML/JSON file
//! (`descriptors package path/to/model.yaml ...`). [`crate::rules`] checks it before
//! anything is rendered.

use serde::{Deserialize, Serialize};

/// One VNF product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VnfModel {
    /// Short name (`router`, `vbng`, ...): used for file names and node type names.
    pub name: String,
    /// VNFD identifier (IFA 011 vnfdId), a UUID.
    pub descriptor_id: String,
    /// VNFD version (IFA 011 vnfdVersion).
    pub descriptor_version: String,
    /// VNF provider (IFA 011 vnfProvider).
    pub provider: String,
    /// Product name (IFA 011 vnfProductName).
    pub product_name: String,
    /// Human readable description of the product.
    pub product_info_description: String,
    /// Software version of the VNF (IFA 011 vnfSoftwareVersion).
    pub software_version: String,
    /// Compatible VNFMs (IFA 011 vnfmInfo), e.g. `etsivnfm:v2.6.1`.
    pub vnfm_info: Vec<String>,
    /// Package release date and time, RFC 3339 (SOL004 manifest `vnf_release_date_time`).
    pub release_date_time: String,
    /// The software image every VDU of this VNF boots.
    pub image: SwImage,
    /// Virtualisation deployment units.
    pub vdus: Vec<Vdu>,
    /// Internal virtual links.
    pub virtual_links: Vec<VirtualLink>,
    /// External connection points, each exposing one internal virtual link.
    pub ext_cps: Vec<ExtCp>,
    /// Deployment flavours (at least one).
    pub flavours: Vec<Flavour>,
    /// KPIs the VNF exports.
    pub kpis: Vec<Kpi>,
    /// Day-0 configuration handed to every VNFC at boot.
    pub day0: Day0Config,
    /// Lifecycle management scripts.
    pub lcm_scripts: Vec<LcmScript>,
    /// Where the VNF serves its metrics and management API.
    pub management: Management,
    /// Day-1/day-2 operations over the management API (shipped as scripts).
    pub operations: Vec<Operation>,
}

/// The VNF's management endpoint (on the management CP): Prometheus metrics and the
/// RESTCONF API, one HTTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// TCP port of the listener (the VNF's `--listen`).
    pub port: u16,
    /// Path of the Prometheus text (`/metrics`).
    pub metrics_path: String,
    /// The RESTCONF data resource of the VNF's YANG module
    /// (`/restconf/data/vbng:vbng`).
    pub api_root: String,
    /// The resource the health check reads (answers 200 when the VNF runs).
    pub health_path: String,
    /// What serves it, honestly: which platforms have the endpoint.
    pub served_by: String,
}

/// A day-1/day-2 operation: a script calling the management API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// Name (OSM config-primitive / ONAP LCM operation name).
    pub name: String,
    /// What it does.
    pub description: String,
    /// HTTP method.
    pub method: String,
    /// RESTCONF path.
    pub path: String,
    /// The script's arguments after the management address, in order (OSM
    /// config-primitive parameters, all strings).
    #[serde(default)]
    pub params: Vec<String>,
    /// Script file name (`Scripts/day2/` in the CSAR, `scripts/day2/` for OSM).
    pub file_name: String,
    /// Script text (POSIX sh, curl).
    pub content: String,
}

/// File name of the day-0 notes in the packages.
pub const DAY0_README: &str = "README.md";

impl VnfModel {
    /// How the VNF takes its day-0 configuration, for `Files/day0/README.md`.
    pub fn day0_readme(&self) -> String {
        format!(
            "# Day-0 configuration of {product}\n\n\
             `{file}` is the VNF's own TOML configuration ({name} checks it with \
             `{name} --check`/`check`). How the VNF takes it:\n\n\
             - **Unikernel image** (`Files/images/`): from QEMU fw_cfg \
             `{fw_cfg}` (`-fw_cfg name={fw_cfg},file={file}`), else a boot module \
             (`-initrd`), else the configuration baked into the image; single keys \
             can be overridden on the kernel command line (`config.KEY=VALUE`). \
             The image does not read an OpenStack config drive or cloud-init user \
             data: a VIM that offers only those boots it with its baked \
             configuration.\n\
             - **Linux process** (the `{name}` binary): `{process}`.\n\n\
             Management (metrics, RESTCONF API) listens on port {port}: {served}\n",
            product = self.product_name,
            file = self.day0.file_name,
            name = self.name,
            fw_cfg = self.day0.fw_cfg,
            process = self.day0.process_command,
            port = self.management.port,
            served = self.management.served_by,
        )
    }
}

/// Software image (IFA 011 SwImageDesc, clause 7.1.6.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwImage {
    /// Image name as known to the VIM (OSM looks images up by this name).
    pub name: String,
    /// Image version.
    pub version: String,
    /// Container format (`bare` for a plain disk image).
    pub container_format: ContainerFormat,
    /// Disk format.
    pub disk_format: DiskFormat,
    /// Minimal disk the image needs, in GiB.
    pub min_disk_gib: u64,
    /// Minimal RAM the image needs, in MiB.
    pub min_ram_mib: u64,
    /// Operating system in the image.
    pub operating_system: String,
    /// Hypervisors the image boots on.
    pub supported_virtualisation_environments: Vec<String>,
}

/// Image container formats allowed by SOL001 `SwImageData.container_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerFormat {
    /// No container, the disk image itself.
    Bare,
    /// OVF package.
    Ovf,
}

/// Image disk formats (SOL001 `SwImageData.disk_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// Raw disk.
    Raw,
}

impl ContainerFormat {
    /// Name used by SOL001 and SOL006.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerFormat::Bare => "bare",
            ContainerFormat::Ovf => "ovf",
        }
    }
}

impl DiskFormat {
    /// Name used by SOL001 and SOL006.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// A VDU (IFA 011 Vdu, clause 7.1.6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vdu {
    /// Identifier, unique in the VNF.
    pub id: String,
    /// Human readable name.
    pub name: String,
    /// What this VNFC does.
    pub description: String,
    /// Internal connection points of this VDU.
    pub cps: Vec<VduCp>,
}

/// Connection point role in our VNFs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpRole {
    /// Subscriber side (PPPoE/IPoE access, CPE LAN).
    Access,
    /// Network side (core, CPE WAN, key server clients).
    Core,
    /// Management / OAM (metrics scrape, config).
    Management,
    /// Between VNFCs of one VNF.
    Internal,
}

/// How a connection point reaches the VNFC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vnic {
    /// Paravirtual virtio-net.
    Virtio,
    /// SR-IOV virtual function.
    SrIov,
}

/// Layer protocols (IFA 011 layerProtocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerProtocol {
    /// Ethernet.
    Ethernet,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl LayerProtocol {
    /// Name used by SOL001 and SOL006.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerProtocol::Ethernet => "ethernet",
            LayerProtocol::Ipv4 => "ipv4",
            LayerProtocol::Ipv6 => "ipv6",
        }
    }
}

/// An internal connection point of a VDU (IFA 011 VduCpd, clause 7.1.6.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VduCp {
    /// Identifier, unique in the VNF.
    pub id: String,
    /// Role of the port.
    pub role: CpRole,
    /// virtio or SR-IOV.
    pub vnic: Vnic,
    /// NIC order on the VNFC (eth0 = 0).
    pub order: u32,
    /// Internal virtual link this CP attaches to.
    pub virtual_link: String,
    /// Layer protocols carried.
    pub layer_protocols: Vec<LayerProtocol>,
    /// Bitrate requirement in bit/s.
    pub bitrate_bps: u64,
}

/// An internal virtual link (IFA 011 VnfVirtualLinkDesc, clause 7.1.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualLink {
    /// Identifier, unique in the VNF.
    pub id: String,
    /// Purpose of the link.
    pub description: String,
    /// Layer protocols of the link.
    pub layer_protocols: Vec<LayerProtocol>,
    /// IPv4 or IPv6 subnet of the link, when the VIM should allocate addresses.
    pub cidr: Option<String>,
    /// MTU of the link.
    pub mtu: u16,
    /// Maximum bitrate (root) in bit/s.
    pub max_bitrate_bps: u64,
    /// Minimum bitrate (root) in bit/s.
    pub min_bitrate_bps: u64,
}

/// An external connection point (IFA 011 VnfExtCpd, clause 7.1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtCp {
    /// Identifier, unique in the VNF.
    pub id: String,
    /// Purpose of the connection point.
    pub description: String,
    /// Role of the connection point.
    pub role: CpRole,
    /// Internal virtual link this external CP exposes.
    pub virtual_link: String,
    /// Layer protocols.
    pub layer_protocols: Vec<LayerProtocol>,
}

/// A deployment flavour (IFA 011 VnfDf, clause 7.1.8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flavour {
    /// Identifier (`small`, `large`).
    pub id: String,
    /// Human readable description.
    pub description: String,
    /// Resources and instance counts per VDU.
    pub vdu_profiles: Vec<VduProfile>,
    /// Scaling aspects.
    pub scaling_aspects: Vec<ScalingAspect>,
    /// Instantiation levels.
    pub instantiation_levels: Vec<InstantiationLevel>,
    /// Default instantiation level id.
    pub default_level: String,
}

/// Resources and instance bounds of one VDU in one flavour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VduProfile {
    /// The VDU.
    pub vdu: String,
    /// Virtual CPUs.
    pub vcpus: u16,
    /// RAM in MiB.
    pub ram_mib: u64,
    /// Root disk in GiB.
    pub disk_gib: u64,
    /// Fewest instances.
    pub min_instances: u16,
    /// Most instances.
    pub max_instances: u16,
}

/// A scaling aspect (IFA 011 ScalingAspect, clause 7.1.10.2): each step adds
/// `delta_instances` of `vdu`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingAspect {
    /// Identifier.
    pub id: String,
    /// Human readable name.
    pub name: String,
    /// Description.
    pub description: String,
    /// The VDU this aspect scales.
    pub vdu: String,
    /// Highest scale level.
    pub max_scale_level: u32,
    /// Instances added per step.
    pub delta_instances: u32,
}

/// An instantiation level (IFA 011 InstantiationLevel, clause 7.1.8.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstantiationLevel {
    /// Identifier.
    pub id: String,
    /// Description.
    pub description: String,
    /// Instances per VDU at this level.
    pub vdu_instances: Vec<VduLevel>,
    /// Scale level per aspect at this level.
    pub scale_levels: Vec<AspectLevel>,
}

/// Instances of one VDU at an instantiation level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VduLevel {
    /// The VDU.
    pub vdu: String,
    /// Instances.
    pub instances: u16,
}

/// Scale level of one aspect at an instantiation level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AspectLevel {
    /// The aspect.
    pub aspect: String,
    /// Level.
    pub level: u32,
}

/// A KPI the VNF exports (Prometheus text format on the management CP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kpi {
    /// Identifier.
    pub id: String,
    /// Human readable name.
    pub name: String,
    /// Prometheus metric exported by the VNF.
    pub metric: String,
    /// Unit (`Mpps`, `packets`, `sessions`).
    pub unit: String,
    /// The ETSI GS NFV-IFA 027 measurement this KPI corresponds to, if any (only those
    /// may appear in SOL001 `monitoring_parameters`, whose values are restricted).
    pub ifa027: Option<Ifa027Metric>,
    /// OSM MON metric name for the VDU monitoring parameter, if OSM collects it.
    pub osm_metric: Option<String>,
    /// Collection period in seconds.
    pub collection_period_s: u64,
}

/// VNF-level performance metrics allowed by SOL001 `VnfMonitoringParameter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ifa027Metric {
    /// Mean vCPU usage.
    VCpuUsageMeanVnf,
    /// Mean memory usage.
    VMemoryUsageMeanVnf,
    /// Packets in on external CPs.
    PacketIncomingVnfExtCp,
    /// Packets out on external CPs.
    PacketOutgoingVnfExtCp,
    /// Bytes in on external CPs.
    ByteIncomingVnfExtCp,
    /// Bytes out on external CPs.
    ByteOutgoingVnfExtCp,
}

impl Ifa027Metric {
    /// Name used by SOL001.
    pub fn as_str(self) -> &'static str {
        match self {
            Ifa027Metric::VCpuUsageMeanVnf => "v_cpu_usage_mean_vnf",
            Ifa027Metric::VMemoryUsageMeanVnf => "v_memory_usage_mean_vnf",
            Ifa027Metric::PacketIncomingVnfExtCp => "packet_incoming_vnf_ext_cp",
            Ifa027Metric::PacketOutgoingVnfExtCp => "packet_outgoing_vnf_ext_cp",
            Ifa027Metric::ByteIncomingVnfExtCp => "byte_incoming_vnf_ext_cp",
            Ifa027Metric::ByteOutgoingVnfExtCp => "byte_outgoing_vnf_ext_cp",
        }
    }
}

/// Day-0 configuration: the VNF's TOML, as the unikernel takes it (QEMU fw_cfg) and
/// as the Linux process takes it (`--config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Day0Config {
    /// File name of the TOML (`router.toml`).
    pub file_name: String,
    /// Where a Linux VNFC keeps it (the process's `--config`).
    pub install_path: String,
    /// The fw_cfg file name the unikernel reads it from (`opt/vnf/config`).
    pub fw_cfg: String,
    /// The process's command line with this file (`vbng run --config …`).
    pub process_command: String,
    /// The TOML text.
    pub toml: String,
}

/// Lifecycle events a script can hook (SOL001 `tosca.interfaces.nfv.Vnflcm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LcmEvent {
    /// After instantiation.
    InstantiateEnd,
    /// Before termination.
    TerminateStart,
    /// After a scale operation.
    ScaleEnd,
    /// After healing.
    HealEnd,
}

impl LcmEvent {
    /// SOL001 Vnflcm operation name.
    pub fn sol001_operation(self) -> &'static str {
        match self {
            LcmEvent::InstantiateEnd => "instantiate_end",
            LcmEvent::TerminateStart => "terminate_start",
            LcmEvent::ScaleEnd => "scale_end",
            LcmEvent::HealEnd => "heal_end",
        }
    }

    /// SOL006 `internal-lifecycle-management-script-event` enum value.
    pub fn sol006_event(self) -> &'static str {
        match self {
            LcmEvent::InstantiateEnd => "end-instantiation",
            LcmEvent::TerminateStart => "start-termination",
            LcmEvent::ScaleEnd => "end-scaling",
            LcmEvent::HealEnd => "end-healing",
        }
    }
}

/// A lifecycle management script shipped in the package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LcmScript {
    /// Identifier.
    pub id: String,
    /// Event the script runs on.
    pub event: LcmEvent,
    /// File name (`scripts/<file_name>` in the package).
    pub file_name: String,
    /// Script text (POSIX sh).
    pub content: String,
}

impl VnfModel {
    /// The flavour with this id.
    pub fn flavour(&self, id: &str) -> Option<&Flavour> {
        self.flavours.iter().find(|f| f.id == id)
    }

    /// The VDU with this id.
    pub fn vdu(&self, id: &str) -> Option<&Vdu> {
        self.vdus.iter().find(|v| v.id == id)
    }

    /// The VDU connection points attached to an internal virtual link, with their VDU.
    pub fn cps_on_link<'a>(&'a self, vl: &'a str) -> impl Iterator<Item = (&'a Vdu, &'a VduCp)> {
        self.vdus.iter().flat_map(move |vdu| {
            vdu.cps
                .iter()
                .filter(move |cp| cp.virtual_link == vl)
                .map(move |cp| (vdu, cp))
        })
    }

    /// The management external CP, if any.
    pub fn mgmt_ext_cp(&self) -> Option<&ExtCp> {
        self.ext_cps.iter().find(|c| c.role == CpRole::Management)
    }

    /// A copy with only the given flavour (for `--flavour`).
    pub fn with_only_flavour(&self, id: &str) -> Option<VnfModel> {
        let f = self.flavour(id)?.clone();
        let mut m = self.clone();
        m.flavours = vec![f];
        Some(m)
    }
}
