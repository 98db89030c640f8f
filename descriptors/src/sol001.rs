//! ETSI GS NFV-SOL 001 TOSCA VNFD rendering.
//!
//! The VNFD uses the layout of SOL001 clause 6 / annex A (and of the ETSI and tacker
//! sample packages): a top-level service template (`<vnf>_top.vnfd.yaml`) with one
//! `VNF` node whose `flavour_id` is an input, a type file (`<vnf>_types.yaml`)
//! declaring the VNF-specific node type derived from `tosca.nodes.nfv.VNF` with one
//! requirement per external CP, and one deployment-flavour template per flavour
//! (`<vnf>_df_<flavour>.yaml`) whose `substitution_mappings` bind the flavour and map
//! the VNF's virtual-link requirements to `tosca.nodes.nfv.VnfExtCp` nodes.
//! A flavour template holds `Vdu.Compute`, `Vdu.VirtualBlockStorage` (root disk with
//! the software image artifact), `VduCp`, `VnfVirtualLink` and `VnfExtCp` nodes and the
//! policies of SOL001 clause 6.10: `ScalingAspects`, `VduScalingAspectDeltas`,
//! `VduInitialDelta`, `InstantiationLevels` and `VduInstantiationLevels`.
//! All imports are plain relative file names of the ETSI type files shipped beside.

use crate::image::ImageInfo;
use crate::model::*;
use crate::yaml::{list, push};
use serde_norway::{Mapping, Value};

/// The TOSCA version of our templates.
pub const TOSCA_VERSION: &str = "tosca_simple_yaml_1_3";
/// The SOL001 version of the ETSI type files we ship and import.
pub const SOL001_VERSION: &str = "v2.6.1";
/// ETSI common type file name.
pub const COMMON_TYPES: &str = "etsi_nfv_sol001_common_types.yaml";
/// ETSI VNFD type file name.
pub const VNFD_TYPES: &str = "etsi_nfv_sol001_vnfd_types.yaml";

/// The ETSI type files, shipped inside the crate (`etsi/README.md`: origin, licence).
pub const ETSI_TYPES: [(&str, &[u8]); 2] = [
    (
        COMMON_TYPES,
        include_bytes!("../etsi/sol001/v2.6.1/etsi_nfv_sol001_common_types.yaml"),
    ),
    (
        VNFD_TYPES,
        include_bytes!("../etsi/sol001/v2.6.1/etsi_nfv_sol001_vnfd_types.yaml"),
    ),
];

/// The VNF-specific node type name.
pub fn node_type(m: &VnfModel) -> String {
    format!("nfvrs.{}.VNF", m.name.replace('-', "_"))
}

/// File name of the top-level VNFD (the CSAR `Entry-Definitions`).
pub fn top_file(m: &VnfModel) -> String {
    format!("{}_top.vnfd.yaml", m.name)
}

fn types_file(m: &VnfModel) -> String {
    format!("{}_types.yaml", m.name)
}

fn df_file(m: &VnfModel, f: &Flavour) -> String {
    format!("{}_df_{}.yaml", m.name, f.id)
}

fn requirement_name(cp: &ExtCp) -> String {
    format!("virtual_link_{}", cp.id.replace('-', "_"))
}

fn header(description: String, imports: Vec<String>) -> Value {
    ymap! {
        "tosca_definitions_version" => TOSCA_VERSION,
        "description" => description,
        "imports" => list(imports),
    }
}

/// The Definitions/ files: (file name, YAML text).
pub fn render(m: &VnfModel, image: &ImageInfo) -> crate::Result<Vec<(String, String)>> {
    let mut out = vec![
        (top_file(m), serde_norway::to_string(&top(m))?),
        (types_file(m), serde_norway::to_string(&types(m))?),
    ];
    for f in &m.flavours {
        out.push((
            df_file(m, f),
            serde_norway::to_string(&flavour(m, f, image))?,
        ));
    }
    Ok(out)
}

fn base_imports(m: &VnfModel) -> Vec<String> {
    vec![
        COMMON_TYPES.to_string(),
        VNFD_TYPES.to_string(),
        types_file(m),
    ]
}

fn top(m: &VnfModel) -> Value {
    let mut imports = base_imports(m);
    imports.extend(m.flavours.iter().map(|f| df_file(m, f)));
    let mut doc = header(
        format!(
            "{} VNFD (ETSI GS NFV-SOL 001 {SOL001_VERSION})",
            m.product_name
        ),
        imports,
    );
    push(
        &mut doc,
        "metadata",
        ymap! {
            "template_name" => format!("{}-vnfd", m.name),
            "template_author" => m.provider.clone(),
            "template_version" => m.descriptor_version.clone(),
        },
    );
    let flavour_ids: Vec<String> = m.flavours.iter().map(|f| f.id.clone()).collect();
    let default = flavour_ids.first().cloned().unwrap_or_default();
    push(
        &mut doc,
        "topology_template",
        ymap! {
            "inputs" => ymap! {
                "selected_flavour" => ymap! {
                    "type" => "string",
                    "description" => "VNF deployment flavour selected by the consumer (InstantiateVnfRequest.flavourId)",
                    "default" => default,
                    "constraints" => list([ymap! { "valid_values" => list(flavour_ids) }]),
                },
            },
            "node_templates" => ymap! {
                "VNF" => ymap! {
                    "type" => node_type(m),
                    "properties" => ymap! {
                        "flavour_id" => ymap! { "get_input" => "selected_flavour" },
                        "descriptor_id" => m.descriptor_id.clone(),
                        "descriptor_version" => m.descriptor_version.clone(),
                        "provider" => m.provider.clone(),
                        "product_name" => m.product_name.clone(),
                        "software_version" => m.software_version.clone(),
                        "vnfm_info" => list(m.vnfm_info.clone()),
                        "monitoring_parameters" => vnf_monitoring(m),
                    },
                },
            },
        },
    );
    doc
}

/// VNF-level monitoring parameters: the KPIs that map to an IFA 027 measurement.
fn vnf_monitoring(m: &VnfModel) -> Value {
    list(m.kpis.iter().filter_map(|k| {
        k.ifa027.map(|metric| {
            ymap! {
                "name" => format!("{} ({}, {}, every {} s)", k.name, k.metric, k.unit, k.collection_period_s),
                "performance_metric" => metric.as_str(),
            }
        })
    }))
}

fn fixed_string(value: &str) -> Value {
    ymap! {
        "type" => "string",
        "constraints" => list([ymap! { "valid_values" => list([value]) }]),
        "default" => value,
    }
}

fn types(m: &VnfModel) -> Value {
    let mut doc = header(
        format!("{} VNF node type", m.product_name),
        vec![COMMON_TYPES.to_string(), VNFD_TYPES.to_string()],
    );
    let flavour_ids: Vec<String> = m.flavours.iter().map(|f| f.id.clone()).collect();
    let requirements = list(m.ext_cps.iter().map(|cp| {
        let mut r = Mapping::new();
        r.insert(
            Value::from(requirement_name(cp)),
            ymap! {
                "capability" => "tosca.capabilities.nfv.VirtualLinkable",
                "relationship" => "tosca.relationships.nfv.VirtualLinksTo",
                "occurrences" => list([Value::from(0u32), Value::from(1u32)]),
            },
        );
        Value::Mapping(r)
    }));
    let mut nt = Mapping::new();
    nt.insert(
        Value::from(node_type(m)),
        ymap! {
            "derived_from" => "tosca.nodes.nfv.VNF",
            "properties" => ymap! {
                "descriptor_id" => fixed_string(&m.descriptor_id),
                "descriptor_version" => fixed_string(&m.descriptor_version),
                "provider" => fixed_string(&m.provider),
                "product_name" => fixed_string(&m.product_name),
                "software_version" => fixed_string(&m.software_version),
                "product_info_description" => ymap! { "type" => "string", "default" => m.product_info_description.clone() },
                "vnfm_info" => ymap! {
                    "type" => "list",
                    "entry_schema" => ymap! {
                        "type" => "string",
                        "constraints" => list([ymap! { "valid_values" => list(m.vnfm_info.clone()) }]),
                    },
                    "default" => list(m.vnfm_info.clone()),
                },
                "flavour_id" => ymap! {
                    "type" => "string",
                    "constraints" => list([ymap! { "valid_values" => list(flavour_ids.clone()) }]),
                    "default" => flavour_ids.first().cloned().unwrap_or_default(),
                },
                "flavour_description" => ymap! { "type" => "string", "default" => "" },
            },
            "requirements" => requirements,
            "interfaces" => node_interfaces(m),
        },
    );
    push(&mut doc, "node_types", Value::Mapping(nt));
    if !m.operations.is_empty() {
        let mut it = Mapping::new();
        it.insert(Value::from(day2_interface_type(m)), day2_interface(m));
        push(&mut doc, "interface_types", Value::Mapping(it));
    }
    doc
}

/// The interface of the VNF's custom day-1/day-2 operations (the OSM config
/// primitives): SOL001 declares LCM operations beyond `tosca.interfaces.nfv.Vnflcm`
/// as a VNF-specific interface type derived from `tosca.interfaces.Root` (ETSI GS
/// NFV-SOL 001 v2.6.1 §6.7, interface types; a TOSCA Simple Profile in YAML 1.3
/// interface type definition), which the VNF node type lists next to `Vnflcm` and
/// the flavour's VNF node implements with the operations' scripts.
pub const DAY2_INTERFACE: &str = "Day2";

/// The VNF-specific interface type of [`DAY2_INTERFACE`].
pub fn day2_interface_type(m: &VnfModel) -> String {
    format!("nfvrs.{}.interfaces.Day2", m.name.replace('-', "_"))
}

/// The node type's interfaces: `Vnflcm`, and the day-2 one when there are operations.
fn node_interfaces(m: &VnfModel) -> Value {
    let mut i = ymap! { "Vnflcm" => ymap! { "type" => "tosca.interfaces.nfv.Vnflcm" } };
    if !m.operations.is_empty() {
        push(
            &mut i,
            DAY2_INTERFACE,
            ymap! { "type" => day2_interface_type(m) },
        );
    }
    i
}

/// The interface type: one operation per day-2 operation, its parameters as
/// string inputs (the script's arguments after the management address).
fn day2_interface(m: &VnfModel) -> Value {
    let mut t = ymap! {
        "derived_from" => "tosca.interfaces.Root",
        "description" => format!(
            "Day-1/day-2 operations of the {} over its RESTCONF API (RFC 8040), each run by its script",
            m.product_name
        ),
    };
    for o in &m.operations {
        let mut op =
            ymap! { "description" => format!("{} ({} {})", o.description, o.method, o.path) };
        if !o.params.is_empty() {
            let mut inputs = Mapping::new();
            for p in &o.params {
                inputs.insert(
                    Value::from(p.clone()),
                    ymap! { "type" => "string", "required" => true },
                );
            }
            push(&mut op, "inputs", Value::Mapping(inputs));
        }
        push(&mut t, &o.name, op);
    }
    t
}

fn mib(v: u64) -> String {
    format!("{v} MiB")
}

fn gib(v: u64) -> String {
    format!("{v} GiB")
}

fn sw_image_data(m: &VnfModel, image: &ImageInfo) -> Value {
    ymap! {
        "name" => m.image.name.clone(),
        "version" => m.image.version.clone(),
        "checksum" => ymap! { "algorithm" => "sha-256", "hash" => image.sha256.clone() },
        "container_format" => m.image.container_format.as_str(),
        "disk_format" => m.image.disk_format.as_str(),
        "min_disk" => gib(m.image.min_disk_gib),
        "min_ram" => mib(m.image.min_ram_mib),
        "size" => format!("{} B", image.size),
        "operating_system" => m.image.operating_system.clone(),
        "supported_virtualisation_environments" => list(m.image.supported_virtualisation_environments.clone()),
    }
}

fn protocols(lp: &[LayerProtocol]) -> Value {
    list(lp.iter().map(|p| p.as_str()))
}

fn vnir(cp: &VduCp) -> Value {
    let (name, kind) = match cp.vnic {
        Vnic::Virtio => ("virtio", "virtio"),
        Vnic::SrIov => ("sriov", "sr-iov"),
    };
    list([ymap! {
        "name" => name,
        "description" => format!("{} port ({:?})", kind, cp.role).to_lowercase(),
        "support_mandatory" => cp.vnic == Vnic::SrIov,
        "network_interface_requirements" => ymap! { "interfaceType" => kind },
    }])
}

fn flavour(m: &VnfModel, f: &Flavour, image: &ImageInfo) -> Value {
    let mut doc = header(
        format!(
            "{} deployment flavour `{}`: {}",
            m.product_name, f.id, f.description
        ),
        base_imports(m),
    );
    let mut reqs = Mapping::new();
    for cp in &m.ext_cps {
        reqs.insert(
            Value::from(requirement_name(cp)),
            list([cp.id.as_str(), "external_virtual_link"]),
        );
    }
    let mut nodes = Mapping::new();

    // The VNF node of this flavour: LCM scripts, monitoring parameters, artifacts.
    let mut vnf = ymap! { "type" => node_type(m) };
    let props = ymap! { "flavour_description" => f.description.clone() };
    push(&mut vnf, "properties", props);
    if !m.lcm_scripts.is_empty() {
        let mut ops = Mapping::new();
        let mut arts = Mapping::new();
        for s in &m.lcm_scripts {
            ops.insert(
                Value::from(s.event.sol001_operation()),
                ymap! { "implementation" => s.id.clone() },
            );
            arts.insert(
                Value::from(s.id.clone()),
                ymap! {
                    "type" => "tosca.artifacts.Implementation.Bash",
                    "file" => format!("../Scripts/{}", s.file_name),
                },
            );
        }
        let mut ifs = ymap! { "Vnflcm" => Value::Mapping(ops) };
        if !m.operations.is_empty() {
            // The day-2 operations' implementations: their scripts.
            let mut day2 = Mapping::new();
            for o in &m.operations {
                let id = format!("day2-{}", o.name);
                day2.insert(
                    Value::from(o.name.clone()),
                    ymap! { "implementation" => id.clone() },
                );
                arts.insert(
                    Value::from(id),
                    ymap! {
                        "type" => "tosca.artifacts.Implementation.Bash",
                        "file" => format!("../Scripts/day2/{}", o.file_name),
                    },
                );
            }
            push(&mut ifs, DAY2_INTERFACE, Value::Mapping(day2));
        }
        push(&mut vnf, "interfaces", ifs);
        push(&mut vnf, "artifacts", Value::Mapping(arts));
    }
    nodes.insert(Value::from("VNF"), vnf);

    for vdu in &m.vdus {
        let Some(p) = f.vdu_profiles.iter().find(|p| p.vdu == vdu.id) else {
            continue;
        };
        let storage = format!("{}-root", vdu.id);
        let mons: Vec<Value> = m
            .kpis
            .iter()
            .filter(|k| k.ifa027 == Some(Ifa027Metric::VCpuUsageMeanVnf))
            .map(|k| {
                ymap! {
                    "name" => format!("{} of {} (every {} s)", k.name, vdu.id, k.collection_period_s),
                    "performance_metric" => "v_cpu_usage_mean_vnf",
                }
            })
            .collect();
        let mut props = ymap! {
            "name" => vdu.name.clone(),
            "description" => vdu.description.clone(),
            "vdu_profile" => ymap! {
                "min_number_of_instances" => u64::from(p.min_instances),
                "max_number_of_instances" => u64::from(p.max_instances),
            },
            "boot_order" => list([storage.clone()]),
        };
        if !mons.is_empty() {
            push(&mut props, "monitoring_parameters", Value::Sequence(mons));
        }
        nodes.insert(
            Value::from(vdu.id.clone()),
            ymap! {
                "type" => "tosca.nodes.nfv.Vdu.Compute",
                "properties" => props,
                "capabilities" => ymap! {
                    "virtual_compute" => ymap! {
                        "properties" => ymap! {
                            "virtual_memory" => ymap! { "virtual_mem_size" => mib(p.ram_mib) },
                            "virtual_cpu" => ymap! { "num_virtual_cpu" => u64::from(p.vcpus) },
                        },
                    },
                },
                "artifacts" => ymap! {
                    "day0_config" => ymap! {
                        "type" => "tosca.artifacts.File",
                        "description" => format!("Day-0 configuration (TOML): fw_cfg {} for the unikernel, --config for the process (Files/day0/README.md)", m.day0.fw_cfg),
                        "file" => format!("../Files/day0/{}", m.day0.file_name),
                        "deploy_path" => m.day0.install_path.clone(),
                    },
                },
                "requirements" => list([ymap! { "virtual_storage" => storage.clone() }]),
            },
        );
        nodes.insert(
            Value::from(storage),
            ymap! {
                "type" => "tosca.nodes.nfv.Vdu.VirtualBlockStorage",
                "properties" => ymap! {
                    "virtual_block_storage_data" => ymap! {
                        "size_of_storage" => gib(p.disk_gib),
                        "rdma_enabled" => false,
                    },
                    "sw_image_data" => sw_image_data(m, image),
                },
                "artifacts" => ymap! {
                    "sw_image" => ymap! {
                        "type" => "tosca.artifacts.nfv.SwImage",
                        "file" => format!("../Files/images/{}", image.file_name),
                    },
                },
            },
        );
        for cp in &vdu.cps {
            let mut props = ymap! {
                "layer_protocols" => protocols(&cp.layer_protocols),
                "description" => format!("{:?} port of {}", cp.role, vdu.id).to_lowercase(),
                "order" => u64::from(cp.order),
                "bitrate_requirement" => cp.bitrate_bps,
                "vnic_type" => match cp.vnic { Vnic::Virtio => "virtio", Vnic::SrIov => "direct-physical" },
                "virtual_network_interface_requirements" => vnir(cp),
            };
            if cp.layer_protocols.contains(&LayerProtocol::Ipv4) {
                push(
                    &mut props,
                    "protocol",
                    list([ymap! {
                        "associated_layer_protocol" => "ipv4",
                        "address_data" => list([ymap! {
                            "address_type" => "ip_address",
                            "l3_address_data" => ymap! {
                                "ip_address_assignment" => true,
                                "floating_ip_activated" => false,
                                "ip_address_type" => "ipv4",
                                "number_of_ip_address" => 1u64,
                            },
                        }]),
                    }]),
                );
            }
            nodes.insert(
                Value::from(cp.id.clone()),
                ymap! {
                    "type" => "tosca.nodes.nfv.VduCp",
                    "properties" => props,
                    "requirements" => list([
                        ymap! { "virtual_binding" => vdu.id.clone() },
                        ymap! { "virtual_link" => cp.virtual_link.clone() },
                    ]),
                },
            );
        }
    }
    for vl in &m.virtual_links {
        let mut vlp = ymap! {
            "max_bitrate_requirements" => ymap! { "root" => vl.max_bitrate_bps },
            "min_bitrate_requirements" => ymap! { "root" => vl.min_bitrate_bps },
        };
        let first = vl
            .layer_protocols
            .first()
            .copied()
            .unwrap_or(LayerProtocol::Ethernet);
        let mut pd = ymap! {
            "associated_layer_protocol" => first.as_str(),
            "l2_protocol_data" => ymap! { "mtu" => u64::from(vl.mtu) },
        };
        if let Some(cidr) = &vl.cidr {
            let v = if cidr.contains(':') { "ipv6" } else { "ipv4" };
            push(
                &mut pd,
                "l3_protocol_data",
                ymap! { "ip_version" => v, "cidr" => cidr.clone(), "dhcp_enabled" => true },
            );
        }
        push(&mut vlp, "virtual_link_protocol_data", list([pd]));
        nodes.insert(
            Value::from(vl.id.clone()),
            ymap! {
                "type" => "tosca.nodes.nfv.VnfVirtualLink",
                "properties" => ymap! {
                    "connectivity_type" => ymap! { "layer_protocols" => protocols(&vl.layer_protocols), "flow_pattern" => "mesh" },
                    "description" => vl.description.clone(),
                    "vl_profile" => vlp,
                },
            },
        );
    }
    for cp in &m.ext_cps {
        nodes.insert(
            Value::from(cp.id.clone()),
            ymap! {
                "type" => "tosca.nodes.nfv.VnfExtCp",
                "properties" => ymap! {
                    "layer_protocols" => protocols(&cp.layer_protocols),
                    "description" => cp.description.clone(),
                },
                "requirements" => list([ymap! { "internal_virtual_link" => cp.virtual_link.clone() }]),
            },
        );
    }

    let mut policies = Vec::new();
    let mut one = |name: String, body: Value| {
        let mut p = Mapping::new();
        p.insert(Value::from(name), body);
        policies.push(Value::Mapping(p));
    };
    if !f.scaling_aspects.is_empty() {
        let mut aspects = Mapping::new();
        for a in &f.scaling_aspects {
            aspects.insert(
                Value::from(a.id.clone()),
                ymap! {
                    "name" => a.name.clone(),
                    "description" => a.description.clone(),
                    "max_scale_level" => u64::from(a.max_scale_level),
                    "step_deltas" => list(["delta_1"]),
                },
            );
        }
        one(
            "scaling_aspects".into(),
            ymap! { "type" => "tosca.policies.nfv.ScalingAspects", "properties" => ymap! { "aspects" => Value::Mapping(aspects) } },
        );
        for a in &f.scaling_aspects {
            one(
                format!("{}_scaling_aspect_deltas", a.vdu),
                ymap! {
                    "type" => "tosca.policies.nfv.VduScalingAspectDeltas",
                    "properties" => ymap! {
                        "aspect" => a.id.clone(),
                        "deltas" => ymap! { "delta_1" => ymap! { "number_of_instances" => u64::from(a.delta_instances) } },
                    },
                    "targets" => list([a.vdu.clone()]),
                },
            );
        }
    }
    for p in &f.vdu_profiles {
        one(
            format!("{}_initial_delta", p.vdu),
            ymap! {
                "type" => "tosca.policies.nfv.VduInitialDelta",
                "properties" => ymap! { "initial_delta" => ymap! { "number_of_instances" => u64::from(p.min_instances) } },
                "targets" => list([p.vdu.clone()]),
            },
        );
    }
    let mut levels = Mapping::new();
    for l in &f.instantiation_levels {
        let mut si = Mapping::new();
        for s in &l.scale_levels {
            si.insert(
                Value::from(s.aspect.clone()),
                ymap! { "scale_level" => u64::from(s.level) },
            );
        }
        let mut lv = ymap! { "description" => l.description.clone() };
        if !si.is_empty() {
            push(&mut lv, "scale_info", Value::Mapping(si));
        }
        levels.insert(Value::from(l.id.clone()), lv);
    }
    one(
        "instantiation_levels".into(),
        ymap! {
            "type" => "tosca.policies.nfv.InstantiationLevels",
            "properties" => ymap! { "levels" => Value::Mapping(levels), "default_level" => f.default_level.clone() },
        },
    );
    for p in &f.vdu_profiles {
        let mut levels = Mapping::new();
        for l in &f.instantiation_levels {
            if let Some(v) = l.vdu_instances.iter().find(|v| v.vdu == p.vdu) {
                levels.insert(
                    Value::from(l.id.clone()),
                    ymap! { "number_of_instances" => u64::from(v.instances) },
                );
            }
        }
        one(
            format!("{}_instantiation_levels", p.vdu),
            ymap! {
                "type" => "tosca.policies.nfv.VduInstantiationLevels",
                "properties" => ymap! { "levels" => Value::Mapping(levels) },
                "targets" => list([p.vdu.clone()]),
            },
        );
    }

    push(
        &mut doc,
        "topology_template",
        ymap! {
            "inputs" => ymap! {
                "descriptor_id" => ymap! { "type" => "string" },
                "descriptor_version" => ymap! { "type" => "string" },
                "provider" => ymap! { "type" => "string" },
                "product_name" => ymap! { "type" => "string" },
                "software_version" => ymap! { "type" => "string" },
                "vnfm_info" => ymap! { "type" => "list", "entry_schema" => ymap! { "type" => "string" } },
                "flavour_id" => ymap! { "type" => "string" },
                "flavour_description" => ymap! { "type" => "string" },
                "product_info_description" => ymap! { "type" => "string" },
                "monitoring_parameters" => ymap! {
                    "type" => "list",
                    "entry_schema" => ymap! { "type" => "tosca.datatypes.nfv.VnfMonitoringParameter" },
                },
            },
            "substitution_mappings" => ymap! {
                "node_type" => node_type(m),
                "properties" => ymap! { "flavour_id" => f.id.clone() },
                "requirements" => Value::Mapping(reqs),
            },
            "node_templates" => Value::Mapping(nodes),
            "policies" => Value::Sequence(policies),
        },
    );
    doc
}
