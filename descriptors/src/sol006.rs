//! ETSI GS NFV-SOL 006 VNFD and NSD rendering, in the YAML form OSM reads.
//!
//! The documents follow the SOL006 v2.6.1 YANG modules (`etsi-nfv-vnfd:vnfd`,
//! `etsi-nfv-nsd:nsd`) plus the OSM IM release 9 augments OSM relies on
//! (`mgmt-interface:mgmt-cp`, `interface:virtual-interface`, `interface:position`).
//! No `cloud-init-file`: the unikernel does not run cloud-init (the package's
//! `day0/README.md` says how it takes its configuration). They are SOL006-complete:
//! `software-version`, `vnfm-info`, image `checksum`/`size`/`min-disk`, instantiation
//! levels with a default, scaling aspects with deltas.
//!
//! Units are those of the YANG: memory and image sizes in GB (`decimal64` with one
//! fraction digit for memory, whole GB for `min-disk`/`size`/`size-of-storage`),
//! bitrates in Mbps, collection periods in ms.
//!
//! SOL006 binds compute resources to the VDU, not to the flavour, so with several
//! flavours each flavour gets its own VDUs (`<vdu>-<flavour>`) and external CPs expose
//! the internal virtual link (`ext-cpd/int-virtual-link-desc`); with one flavour the
//! VDU ids are the model's and external CPs map to a VDU CP (`ext-cpd/int-cpd`), which
//! is what OSM uses to find the management address.

use crate::image::ImageInfo;
use crate::model::*;
use crate::yaml::{list, push, single};
use serde_norway::Value;

/// VNFD id of a model.
pub fn vnfd_id(m: &VnfModel) -> String {
    format!("{}_vnfd", m.name)
}

/// NSD id of a model's single-VNF network service.
pub fn nsd_id(m: &VnfModel) -> String {
    format!("{}_nsd", m.name)
}

fn vdu_id(m: &VnfModel, vdu: &str, f: &Flavour) -> String {
    if m.flavours.len() == 1 {
        vdu.to_string()
    } else {
        format!("{vdu}-{}", f.id)
    }
}

/// GB with one fraction digit, rounded up (YANG decimal64 fraction-digits 1).
fn gb_tenths(mib: u64) -> f64 {
    let tenths = (mib * 10).div_ceil(1024);
    tenths as f64 / 10.0
}

fn mbps(bps: u64) -> u64 {
    bps.div_ceil(1_000_000)
}

fn protocols(lp: &[LayerProtocol]) -> Value {
    list(lp.iter().map(|p| p.as_str()))
}

/// The VNFD document (`vnfd:` at the top, as OSM stores it).
pub fn vnfd(m: &VnfModel, image: &ImageInfo) -> Value {
    let multi = m.flavours.len() > 1;
    let image_id = m.image.name.clone();
    let mut vdus = Vec::new();
    let mut computes = Vec::new();
    let mut storages = Vec::new();
    for f in &m.flavours {
        for vdu in &m.vdus {
            let Some(p) = f.vdu_profiles.iter().find(|p| p.vdu == vdu.id) else {
                continue;
            };
            let id = vdu_id(m, &vdu.id, f);
            let compute = format!("{id}-compute");
            let storage = format!("{id}-root");
            let cpds: Vec<Value> = vdu
                .cps
                .iter()
                .map(|cp| {
                    let vtype = match cp.vnic {
                        Vnic::Virtio => "PARAVIRT",
                        Vnic::SrIov => "SR-IOV",
                    };
                    ymap! {
                        "id" => cp.id.clone(),
                        "int-virtual-link-desc" => cp.virtual_link.clone(),
                        "bitrate-requirement" => mbps(cp.bitrate_bps),
                        "virtual-network-interface-requirement" => list([ymap! {
                            "name" => format!("{}-vnir", cp.id),
                            "description" => format!("{vtype} {:?} port", cp.role).to_lowercase(),
                            "support-mandatory" => cp.vnic == Vnic::SrIov,
                            "network-interface-requirements" => list([ymap! {
                                "key" => "interface-type",
                                "value" => match cp.vnic { Vnic::Virtio => "virtio", Vnic::SrIov => "sr-iov" },
                            }]),
                            "position" => u64::from(cp.order),
                            "virtual-interface" => ymap! { "type" => vtype },
                        }]),
                        "order" => list([u64::from(cp.order)]),
                        "layer-protocol" => protocols(&cp.layer_protocols),
                        "description" => format!("{:?} port of {}", cp.role, vdu.id).to_lowercase(),
                    }
                })
                .collect();
            let mons: Vec<Value> = m
                .kpis
                .iter()
                .filter_map(|k| {
                    k.osm_metric.as_ref().map(|om| {
                        ymap! {
                            "id" => format!("{id}-{}", k.id),
                            "name" => format!("{} ({})", k.name, k.metric),
                            "performance-metric" => om.clone(),
                            "collection-period" => k.collection_period_s * 1000,
                        }
                    })
                })
                .collect();
            vdus.push(ymap! {
                "id" => id.clone(),
                "name" => if multi { format!("{} ({})", vdu.name, f.id) } else { vdu.name.clone() },
                "description" => vdu.description.clone(),
                "int-cpd" => Value::Sequence(cpds),
                "virtual-compute-desc" => compute.clone(),
                "virtual-storage-desc" => list([storage.clone()]),
                "sw-image-desc" => image_id.clone(),
                "monitoring-parameter" => Value::Sequence(mons),
            });
            computes.push(ymap! {
                "id" => compute,
                "virtual-memory" => ymap! { "size" => gb_tenths(p.ram_mib) },
                "virtual-cpu" => ymap! { "num-virtual-cpu" => u64::from(p.vcpus) },
            });
            storages.push(ymap! {
                "id" => storage,
                "type-of-storage" => "root-storage",
                "size-of-storage" => p.disk_gib,
                "sw-image-desc" => image_id.clone(),
            });
        }
    }
    let size_gb = image.size.div_ceil(1 << 30).max(1);
    let sw = ymap! {
        "id" => image_id.clone(),
        "name" => m.image.name.clone(),
        "version" => m.image.version.clone(),
        "checksum" => ymap! { "algorithm" => "sha-256", "hash" => image.sha256.clone() },
        "container-format" => m.image.container_format.as_str(),
        "disk-format" => m.image.disk_format.as_str(),
        "min-disk" => m.image.min_disk_gib,
        "min-ram" => gb_tenths(m.image.min_ram_mib),
        "size" => size_gb,
        "image" => m.image.name.clone(),
        "operating-system" => m.image.operating_system.clone(),
        "supported-virtualization-environment" => list(m.image.supported_virtualisation_environments.clone()),
    };
    let vlds: Vec<Value> = m
        .virtual_links
        .iter()
        .map(|vl| {
            ymap! {
                "id" => vl.id.clone(),
                "flavour" => list([ymap! { "id" => "default" }]),
                "connectivity-type" => ymap! { "layer-protocol" => protocols(&vl.layer_protocols), "flow-pattern" => "mesh" },
                "description" => vl.description.clone(),
            }
        })
        .collect();
    let ext: Vec<Value> = m
        .ext_cps
        .iter()
        .map(|c| {
            let mut e = ymap! { "id" => c.id.clone() };
            match (multi, m.cps_on_link(&c.virtual_link).next()) {
                (false, Some((vdu, cp))) => push(
                    &mut e,
                    "int-cpd",
                    ymap! { "vdu-id" => vdu.id.clone(), "cpd" => cp.id.clone() },
                ),
                _ => push(&mut e, "int-virtual-link-desc", c.virtual_link.clone()),
            }
            push(&mut e, "layer-protocol", protocols(&c.layer_protocols));
            push(&mut e, "description", c.description.clone());
            e
        })
        .collect();
    let dfs: Vec<Value> = m.flavours.iter().map(|f| df(m, f)).collect();
    let scripts: Vec<Value> = m
        .lcm_scripts
        .iter()
        .map(|s| {
            ymap! {
                "id" => s.id.clone(),
                "event" => list([s.event.sol006_event()]),
                "script" => format!("scripts/{}", s.file_name),
                "script-dsl" => "sh",
            }
        })
        .collect();
    let mut v = ymap! {
        "id" => vnfd_id(m),
        "provider" => m.provider.clone(),
        "product-name" => m.product_name.clone(),
        "software-version" => m.software_version.clone(),
        "version" => m.descriptor_version.clone(),
        "product-info-name" => m.product_name.clone(),
        "product-info-description" => m.product_info_description.clone(),
        "vnfm-info" => list(m.vnfm_info.clone()),
        "vdu" => Value::Sequence(vdus),
        "virtual-compute-desc" => Value::Sequence(computes),
        "virtual-storage-desc" => Value::Sequence(storages),
        "sw-image-desc" => list([sw]),
        "int-virtual-link-desc" => Value::Sequence(vlds),
        "ext-cpd" => Value::Sequence(ext),
        "df" => Value::Sequence(dfs),
    };
    if !scripts.is_empty() {
        push(
            &mut v,
            "lifecycle-management-script",
            Value::Sequence(scripts),
        );
    }
    if let Some(mgmt) = m.mgmt_ext_cp() {
        push(&mut v, "mgmt-cp", mgmt.id.clone());
    }
    single("vnfd", v)
}

/// The flavour's LCM operation settings; with day-1/day-2 operations, OSM's
/// `operate-vnf-op-config/day1-2` (OSM IM augment `day1-2`) lists each as a
/// config primitive run by its script (`scripts/day2/`, calling the RESTCONF API),
/// the management address first and then the primitive's parameters.
fn lcm_ops(m: &VnfModel) -> Value {
    let mut v = ymap! {
        "scale-vnf-op-config" => ymap! { "scaling-by-more-than-one-step-supported" => true },
        "terminate-vnf-op-config" => ymap! { "min-graceful-termination" => 1000u64 },
    };
    if m.operations.is_empty() {
        return v;
    }
    let prims: Vec<Value> = m
        .operations
        .iter()
        .map(|o| {
            let mut p = ymap! {
                "name" => o.name.clone(),
                "user-defined-script" => format!("scripts/day2/{}", o.file_name),
            };
            if !o.params.is_empty() {
                let params: Vec<Value> = o
                    .params
                    .iter()
                    .map(|n| ymap! { "name" => n.clone(), "data-type" => "STRING" })
                    .collect();
                push(&mut p, "parameter", Value::Sequence(params));
            }
            p
        })
        .collect();
    push(
        &mut v,
        "operate-vnf-op-config",
        ymap! {
            "day1-2" => list([ymap! {
                "id" => m.name.clone(),
                "config-primitive" => Value::Sequence(prims),
            }]),
        },
    );
    v
}

fn df(m: &VnfModel, f: &Flavour) -> Value {
    let vdu_profiles: Vec<Value> = f
        .vdu_profiles
        .iter()
        .map(|p| {
            ymap! {
                "id" => vdu_id(m, &p.vdu, f),
                "min-number-of-instances" => u64::from(p.min_instances),
                "max-number-of-instances" => u64::from(p.max_instances),
            }
        })
        .collect();
    let vl_profiles: Vec<Value> = m
        .virtual_links
        .iter()
        .map(|vl| {
            // SOL006 v2.6.1 guards l2-/l3-protocol-data with `when` conditions that
            // compare the identityref to 'Ethernet'/'IPv4' (no such identities exist:
            // they are `ethernet`/`ipv4`), so a validating parser rejects either
            // container; only the protocol itself is given.
            let first = vl
                .layer_protocols
                .first()
                .copied()
                .unwrap_or(LayerProtocol::Ethernet);
            let pd = ymap! { "associated-layer-protocol" => first.as_str() };
            ymap! {
                "id" => vl.id.clone(),
                "flavour" => "default",
                "max-bit-rate-requirements" => ymap! { "root" => mbps(vl.max_bitrate_bps) },
                "min-bit-rate-requirements" => ymap! { "root" => mbps(vl.min_bitrate_bps) },
                "virtual-link-protocol-data" => pd,
            }
        })
        .collect();
    let levels: Vec<Value> = f
        .instantiation_levels
        .iter()
        .map(|l| {
            ymap! {
                "id" => l.id.clone(),
                "description" => l.description.clone(),
                "vdu-level" => list(l.vdu_instances.iter().map(|v| ymap! {
                    "vdu-id" => vdu_id(m, &v.vdu, f),
                    "number-of-instances" => u64::from(v.instances),
                })),
                "scaling-info" => list(l.scale_levels.iter().map(|s| ymap! {
                    "scaling-aspect-id" => s.aspect.clone(),
                    "scale-level" => u64::from(s.level),
                })),
            }
        })
        .collect();
    let mut ops = vec![
        "instantiate-vnf",
        "terminate-vnf",
        "heal-vnf",
        "operate-vnf",
        "query-vnf",
    ];
    if !f.scaling_aspects.is_empty() {
        ops.extend(["scale-vnf", "scale-vnf-to-level"]);
    }
    let mons: Vec<Value> = m
        .kpis
        .iter()
        .map(|k| {
            ymap! {
                "id" => k.id.clone(),
                "name" => format!("{} [{}]", k.name, k.unit),
                "performance-metric" => k.metric.clone(),
                "collection-period" => k.collection_period_s * 1000,
            }
        })
        .collect();
    let indicators: Vec<Value> = m
        .kpis
        .iter()
        .filter(|k| k.ifa027.is_none())
        .map(|k| {
            ymap! {
                "id" => k.id.clone(),
                "name" => format!("{} ({})", k.name, k.metric),
                "indicator-value" => format!("0..max {}", k.unit),
                "source" => "vnf",
            }
        })
        .collect();
    let aspects: Vec<Value> = f
        .scaling_aspects
        .iter()
        .map(|a| {
            ymap! {
                "id" => a.id.clone(),
                "name" => a.name.clone(),
                "description" => a.description.clone(),
                "max-scale-level" => u64::from(a.max_scale_level),
                "aspect-delta-details" => ymap! {
                    "deltas" => list([ymap! {
                        "id" => format!("{}-delta", a.id),
                        "vdu-delta" => list([ymap! {
                            "id" => vdu_id(m, &a.vdu, f),
                            "number-of-instances" => u64::from(a.delta_instances),
                        }]),
                    }]),
                    "step-deltas" => format!("{}-delta", a.id),
                },
            }
        })
        .collect();
    let mut d = ymap! {
        "id" => f.id.clone(),
        "description" => f.description.clone(),
        "vdu-profile" => Value::Sequence(vdu_profiles),
        "virtual-link-profile" => Value::Sequence(vl_profiles),
        "instantiation-level" => Value::Sequence(levels),
        "default-instantiation-level" => f.default_level.clone(),
        "supported-operation" => list(ops),
        "lcm-operations-configuration" => lcm_ops(m),
        "monitoring-parameter" => Value::Sequence(mons),
    };
    if !indicators.is_empty() {
        push(&mut d, "indicator", Value::Sequence(indicators));
    }
    if !aspects.is_empty() {
        push(&mut d, "scaling-aspect", Value::Sequence(aspects));
    }
    d
}

/// The NSD document (`nsd: {nsd: [...]}`) of a network service holding this one VNF,
/// with one NS virtual link per external CP and a SAP on every non-management one.
pub fn nsd(m: &VnfModel) -> Value {
    let vls: Vec<Value> = m
        .ext_cps
        .iter()
        .map(|c| {
            ymap! {
                "id" => format!("{}-net", c.id),
                "connectivity-type" => ymap! { "layer-protocol" => protocols(&c.layer_protocols) },
                "df" => list([ymap! { "id" => "default" }]),
                "description" => format!("NS network for the {} CP", c.id),
            }
        })
        .collect();
    let saps: Vec<Value> = m
        .ext_cps
        .iter()
        .map(|c| {
            ymap! {
                "id" => format!("{}-sap", c.id),
                "virtual-link-desc" => format!("{}-net", c.id),
            }
        })
        .collect();
    let dfs: Vec<Value> = m
        .flavours
        .iter()
        .map(|f| {
            let profile = format!("{}-{}", m.name, f.id);
            let vl_profiles: Vec<Value> = m
                .ext_cps
                .iter()
                .map(|c| {
                    let bps = m
                        .virtual_links
                        .iter()
                        .find(|v| v.id == c.virtual_link)
                        .map_or((1_000_000, 1_000_000), |v| (v.max_bitrate_bps, v.min_bitrate_bps));
                    ymap! {
                        "id" => format!("{}-net", c.id),
                        "virtual-link-desc-id" => format!("{}-net", c.id),
                        "flavour-id" => "default",
                        "max-bitrate-requirements" => ymap! { "root" => mbps(bps.0) },
                        "min-bitrate-requirements" => ymap! { "root" => mbps(bps.1) },
                    }
                })
                .collect();
            let conn: Vec<Value> = m
                .ext_cps
                .iter()
                .map(|c| {
                    ymap! {
                        "virtual-link-profile-id" => format!("{}-net", c.id),
                        "constituent-cpd-id" => list([ymap! {
                            "constituent-base-element-id" => profile.clone(),
                            "constituent-cpd-id" => c.id.clone(),
                        }]),
                    }
                })
                .collect();
            let max_instances = 1u64;
            ymap! {
                "id" => f.id.clone(),
                "vnf-profile" => list([ymap! {
                    "id" => profile.clone(),
                    "vnfd-id" => vnfd_id(m),
                    "flavour-id" => f.id.clone(),
                    "instantiation-level" => f.default_level.clone(),
                    "min-number-of-instances" => 1u64,
                    "max-number-of-instances" => max_instances,
                    "virtual-link-connectivity" => Value::Sequence(conn),
                }]),
                "virtual-link-profile" => Value::Sequence(vl_profiles),
                "ns-instantiation-level" => list([ymap! {
                    "id" => "default",
                    "description" => format!("One {} with flavour {}", m.name, f.id),
                    "vnf-to-level-mapping" => list([ymap! { "vnf-profile-id" => profile.clone(), "number-of-instances" => 1u64 }]),
                }]),
                "default-instantiation-level" => "default",
            }
        })
        .collect();
    let nsd = ymap! {
        "id" => nsd_id(m),
        "designer" => m.provider.clone(),
        "version" => m.descriptor_version.clone(),
        "name" => format!("{} network service", m.product_name),
        "invariant-id" => nsd_id(m),
        "vnfd-id" => list([vnfd_id(m)]),
        "sapd" => Value::Sequence(saps),
        "virtual-link-desc" => Value::Sequence(vls),
        "df" => Value::Sequence(dfs),
    };
    single("nsd", single("nsd", list([nsd])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yang_units() {
        assert_eq!(gb_tenths(2048), 2.0);
        assert_eq!(gb_tenths(512), 0.5);
        assert_eq!(gb_tenths(256), 0.3); // rounded up to one fraction digit
        assert_eq!(mbps(10_000_000_000), 10_000);
        assert_eq!(mbps(1), 1);
    }

    #[test]
    fn one_flavour_keeps_vdu_ids_and_maps_ext_cps_to_vdu_cps() {
        let m = crate::vnfs::vbng().with_only_flavour("small").unwrap();
        assert_eq!(vdu_id(&m, "vbng", &m.flavours[0]), "vbng");
        let two = crate::vnfs::vbng();
        assert_eq!(vdu_id(&two, "vbng", &two.flavours[1]), "vbng-large");
    }
}
