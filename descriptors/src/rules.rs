//! Model checks run before anything is rendered.
//!
//! The rules are the constraints SOL001 (v2.6.1 type definitions) and SOL006 (v2.6.1
//! YANG) place on a VNFD, stated on the model so that a bad model is refused with the
//! name of the offending field instead of producing a package a validator rejects:
//! identifiers unique and resolvable (IFA 011 7.1.2), `vnfm_info` pattern (SOL001
//! 6.8.1 `tosca.nodes.nfv.VNF`), VDU profile bounds (`max >= min`, SOL006
//! `vdu-profile` must), `max-scale-level >= 1` (SOL006 `scaling-aspect`), instantiation
//! level counts within the VDU profile (SOL006 `vdu-level` must), the default level
//! present (SOL006 `df` must), flavour resources at least the image minimums
//! (IFA 011 7.1.6.5), and a day-0 TOML that parses.

use crate::error::{model, Result};
use crate::model::*;
use std::collections::HashSet;

/// Check the whole model.
pub fn check(m: &VnfModel) -> Result<()> {
    check_name("name", &m.name)?;
    nonempty("provider", &m.provider)?;
    nonempty("product_name", &m.product_name)?;
    nonempty("software_version", &m.software_version)?;
    nonempty("descriptor_version", &m.descriptor_version)?;
    check_uuid("descriptor_id", &m.descriptor_id)?;
    check_rfc3339("release_date_time", &m.release_date_time)?;
    if m.vnfm_info.is_empty() {
        return Err(model(
            "vnfm_info",
            "at least one VNFM is required (SOL001 VNF.vnfm_info)",
        ));
    }
    for (i, v) in m.vnfm_info.iter().enumerate() {
        if !vnfm_info_ok(v) {
            return Err(model(
                format!("vnfm_info[{i}]"),
                format!("`{v}` does not match `etsivnfm:vX.Y.Z` or `<number>:<name>` (SOL001 VNF.vnfm_info pattern)"),
            ));
        }
    }
    check_image(&m.image)?;

    if m.vdus.is_empty() {
        return Err(model("vdus", "a VNF needs at least one VDU"));
    }
    let vls = unique_ids(
        "virtual_links",
        m.virtual_links.iter().map(|v| v.id.as_str()),
    )?;
    let vdus = unique_ids("vdus", m.vdus.iter().map(|v| v.id.as_str()))?;
    let mut all_cps: HashSet<&str> = HashSet::new();
    for vdu in &m.vdus {
        let f = format!("vdus[{}]", vdu.id);
        nonempty(&format!("{f}.name"), &vdu.name)?;
        nonempty(&format!("{f}.description"), &vdu.description)?;
        if vdu.cps.is_empty() {
            return Err(model(
                format!("{f}.cps"),
                "a VDU needs at least one connection point",
            ));
        }
        let mut orders = HashSet::new();
        for cp in &vdu.cps {
            let cf = format!("{f}.cps[{}]", cp.id);
            check_id(&format!("{cf}.id"), &cp.id)?;
            if !all_cps.insert(cp.id.as_str()) {
                return Err(model(
                    format!("{cf}.id"),
                    "connection point ids must be unique in the VNF",
                ));
            }
            if !orders.insert(cp.order) {
                return Err(model(
                    format!("{cf}.order"),
                    format!("order {} used twice in this VDU", cp.order),
                ));
            }
            if !vls.contains(cp.virtual_link.as_str()) {
                return Err(model(
                    format!("{cf}.virtual_link"),
                    format!("no virtual link `{}` in virtual_links", cp.virtual_link),
                ));
            }
            if cp.layer_protocols.is_empty() {
                return Err(model(
                    format!("{cf}.layer_protocols"),
                    "at least one layer protocol is required",
                ));
            }
        }
    }
    for vl in &m.virtual_links {
        let f = format!("virtual_links[{}]", vl.id);
        if vl.layer_protocols.is_empty() {
            return Err(model(
                format!("{f}.layer_protocols"),
                "at least one layer protocol is required",
            ));
        }
        if vl.min_bitrate_bps > vl.max_bitrate_bps {
            return Err(model(
                format!("{f}.min_bitrate_bps"),
                "larger than max_bitrate_bps",
            ));
        }
        if vl.max_bitrate_bps > u64::from(u32::MAX) * 1000 {
            return Err(model(
                format!("{f}.max_bitrate_bps"),
                "too large for SOL006 (uint32 kbit/s)",
            ));
        }
        if let Some(c) = &vl.cidr {
            check_cidr(&format!("{f}.cidr"), c)?;
        }
        if m.cps_on_link(&vl.id).next().is_none() {
            return Err(model(
                f.clone(),
                "no VDU connection point attaches to this virtual link",
            ));
        }
    }
    let ext_ids = unique_ids("ext_cps", m.ext_cps.iter().map(|c| c.id.as_str()))?;
    for id in &ext_ids {
        if all_cps.contains(id) {
            return Err(model(
                format!("ext_cps[{id}].id"),
                "clashes with a VDU connection point id",
            ));
        }
    }
    let mut ext_vls = HashSet::new();
    for c in &m.ext_cps {
        let f = format!("ext_cps[{}]", c.id);
        if !vls.contains(c.virtual_link.as_str()) {
            return Err(model(
                format!("{f}.virtual_link"),
                format!("no virtual link `{}`", c.virtual_link),
            ));
        }
        if !ext_vls.insert(c.virtual_link.as_str()) {
            return Err(model(
                format!("{f}.virtual_link"),
                "two external CPs expose the same virtual link",
            ));
        }
        if c.layer_protocols.is_empty() {
            return Err(model(
                format!("{f}.layer_protocols"),
                "at least one layer protocol is required",
            ));
        }
    }
    if m.mgmt_ext_cp().is_none() {
        return Err(model(
            "ext_cps",
            "no external CP with role `management` (OSM mgmt-cp needs one)",
        ));
    }

    if m.flavours.is_empty() {
        return Err(model(
            "flavours",
            "at least one deployment flavour is required (SOL001 VNF.flavour_id)",
        ));
    }
    unique_ids("flavours", m.flavours.iter().map(|f| f.id.as_str()))?;
    for fl in &m.flavours {
        check_flavour(m, fl, &vdus)?;
    }

    unique_ids("kpis", m.kpis.iter().map(|k| k.id.as_str()))?;
    for k in &m.kpis {
        if k.collection_period_s == 0 {
            return Err(model(
                format!("kpis[{}].collection_period_s", k.id),
                "must be greater than 0 s (SOL001 collection_period)",
            ));
        }
        nonempty(&format!("kpis[{}].metric", k.id), &k.metric)?;
    }

    check_file_name("day0.file_name", &m.day0.file_name)?;
    if !m.day0.install_path.starts_with('/') {
        return Err(model("day0.install_path", "must be an absolute path"));
    }
    if let Err(e) = toml::from_str::<toml::Table>(&m.day0.toml) {
        return Err(model("day0.toml", format!("not valid TOML: {e}")));
    }
    unique_ids("lcm_scripts", m.lcm_scripts.iter().map(|s| s.id.as_str()))?;
    let mut names = HashSet::new();
    for s in &m.lcm_scripts {
        let f = format!("lcm_scripts[{}]", s.id);
        check_file_name(&format!("{f}.file_name"), &s.file_name)?;
        if !names.insert(s.file_name.as_str()) {
            return Err(model(format!("{f}.file_name"), "file name used twice"));
        }
        if !s.content.starts_with("#!") {
            return Err(model(
                format!("{f}.content"),
                "script must start with a #! line",
            ));
        }
    }
    Ok(())
}

fn check_flavour(m: &VnfModel, fl: &Flavour, vdus: &HashSet<&str>) -> Result<()> {
    let f = format!("flavours[{}]", fl.id);
    nonempty(&format!("{f}.description"), &fl.description)?;
    let profiled = unique_ids(
        &format!("{f}.vdu_profiles"),
        fl.vdu_profiles.iter().map(|p| p.vdu.as_str()),
    )?;
    for v in vdus {
        if !profiled.contains(v) {
            return Err(model(
                format!("{f}.vdu_profiles"),
                format!("VDU `{v}` has no profile in this flavour"),
            ));
        }
    }
    for p in &fl.vdu_profiles {
        let pf = format!("{f}.vdu_profiles[{}]", p.vdu);
        if !vdus.contains(p.vdu.as_str()) {
            return Err(model(format!("{pf}.vdu"), format!("no VDU `{}`", p.vdu)));
        }
        if p.vcpus == 0 {
            return Err(model(
                format!("{pf}.vcpus"),
                "must be greater than 0 (SOL001 num_virtual_cpu)",
            ));
        }
        if p.ram_mib < m.image.min_ram_mib {
            return Err(model(
                format!("{pf}.ram_mib"),
                format!(
                    "{} MiB is below the image minimum image.min_ram_mib = {} MiB",
                    p.ram_mib, m.image.min_ram_mib
                ),
            ));
        }
        if p.disk_gib < m.image.min_disk_gib {
            return Err(model(
                format!("{pf}.disk_gib"),
                format!(
                    "{} GiB is below the image minimum image.min_disk_gib = {} GiB",
                    p.disk_gib, m.image.min_disk_gib
                ),
            ));
        }
        if p.max_instances == 0 {
            return Err(model(format!("{pf}.max_instances"), "must be at least 1"));
        }
        if p.max_instances < p.min_instances {
            return Err(model(
                format!("{pf}.max_instances"),
                format!(
                    "{} is below min_instances {} (SOL006 vdu-profile must)",
                    p.max_instances, p.min_instances
                ),
            ));
        }
    }
    let profile = |vdu: &str| fl.vdu_profiles.iter().find(|p| p.vdu == vdu);
    let aspects = unique_ids(
        &format!("{f}.scaling_aspects"),
        fl.scaling_aspects.iter().map(|a| a.id.as_str()),
    )?;
    for a in &fl.scaling_aspects {
        let af = format!("{f}.scaling_aspects[{}]", a.id);
        nonempty(&format!("{af}.name"), &a.name)?;
        nonempty(&format!("{af}.description"), &a.description)?;
        let Some(p) = profile(&a.vdu) else {
            return Err(model(
                format!("{af}.vdu"),
                format!("no VDU profile `{}` in this flavour", a.vdu),
            ));
        };
        if a.max_scale_level == 0 {
            return Err(model(
                format!("{af}.max_scale_level"),
                "must be at least 1 (SOL006 max-scale-level range 1..max)",
            ));
        }
        if a.delta_instances == 0 {
            return Err(model(format!("{af}.delta_instances"), "must be at least 1"));
        }
        let top = u64::from(p.min_instances)
            + u64::from(a.max_scale_level) * u64::from(a.delta_instances);
        if top > u64::from(p.max_instances) {
            return Err(model(
                format!("{af}.max_scale_level"),
                format!(
                    "scaling to level {} gives {top} instances of `{}`, above vdu_profiles[{}].max_instances = {}",
                    a.max_scale_level, a.vdu, a.vdu, p.max_instances
                ),
            ));
        }
    }
    if fl.instantiation_levels.is_empty() {
        return Err(model(
            format!("{f}.instantiation_levels"),
            "at least one level is required (SOL001 InstantiationLevels min_length 1)",
        ));
    }
    let levels = unique_ids(
        &format!("{f}.instantiation_levels"),
        fl.instantiation_levels.iter().map(|l| l.id.as_str()),
    )?;
    if !levels.contains(fl.default_level.as_str()) {
        return Err(model(
            format!("{f}.default_level"),
            format!("no instantiation level `{}`", fl.default_level),
        ));
    }
    for l in &fl.instantiation_levels {
        let lf = format!("{f}.instantiation_levels[{}]", l.id);
        nonempty(&format!("{lf}.description"), &l.description)?;
        for v in &l.vdu_instances {
            let Some(p) = profile(&v.vdu) else {
                return Err(model(
                    format!("{lf}.vdu_instances[{}]", v.vdu),
                    "no such VDU profile in this flavour",
                ));
            };
            if v.instances < p.min_instances || v.instances > p.max_instances {
                return Err(model(
                    format!("{lf}.vdu_instances[{}].instances", v.vdu),
                    format!(
                        "{} is outside the VDU profile bounds {}..={}",
                        v.instances, p.min_instances, p.max_instances
                    ),
                ));
            }
        }
        for s in &l.scale_levels {
            let Some(a) = fl.scaling_aspects.iter().find(|a| a.id == s.aspect) else {
                return Err(model(
                    format!("{lf}.scale_levels[{}]", s.aspect),
                    "no such scaling aspect",
                ));
            };
            if s.level > a.max_scale_level {
                return Err(model(
                    format!("{lf}.scale_levels[{}].level", s.aspect),
                    format!("{} is above max_scale_level {}", s.level, a.max_scale_level),
                ));
            }
            let p = profile(&a.vdu);
            let want = p.map(|p| {
                u64::from(p.min_instances) + u64::from(s.level) * u64::from(a.delta_instances)
            });
            let have = l
                .vdu_instances
                .iter()
                .find(|v| v.vdu == a.vdu)
                .map(|v| u64::from(v.instances));
            if want != have {
                return Err(model(
                    format!("{lf}.vdu_instances[{}].instances", a.vdu),
                    format!(
                        "scale level {} of aspect `{}` means {} instances, the level says {}",
                        s.level,
                        a.id,
                        want.unwrap_or(0),
                        have.map_or_else(|| "none".to_string(), |h| h.to_string())
                    ),
                ));
            }
        }
        for a in &aspects {
            if !l.scale_levels.iter().any(|s| s.aspect == *a) {
                return Err(model(
                    format!("{lf}.scale_levels"),
                    format!("no scale level for aspect `{a}`"),
                ));
            }
        }
    }
    Ok(())
}

fn check_image(img: &SwImage) -> Result<()> {
    check_id("image.name", &img.name)?;
    check_id("image.version", &img.version)?;
    if img.min_disk_gib == 0 {
        return Err(model("image.min_disk_gib", "must be at least 1 GiB"));
    }
    Ok(())
}

fn nonempty(field: &str, v: &str) -> Result<()> {
    if v.trim().is_empty() {
        return Err(model(field, "must not be empty"));
    }
    Ok(())
}

/// Identifiers become TOSCA node template names, YANG keys and file names.
fn check_id(field: &str, v: &str) -> Result<()> {
    nonempty(field, v)?;
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(model(
            field,
            format!("`{v}` may only hold letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

fn check_name(field: &str, v: &str) -> Result<()> {
    nonempty(field, v)?;
    if !v
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || !v.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Err(model(
            field,
            format!("`{v}` must be lowercase letters, digits and '-', starting with a letter"),
        ));
    }
    Ok(())
}

fn check_file_name(field: &str, v: &str) -> Result<()> {
    check_id(field, v)?;
    if v.starts_with('.') {
        return Err(model(field, "must not start with '.'"));
    }
    Ok(())
}

fn unique_ids<'a>(field: &str, ids: impl Iterator<Item = &'a str>) -> Result<HashSet<&'a str>> {
    let mut seen = HashSet::new();
    for id in ids {
        check_id(&format!("{field}[{id}].id"), id)?;
        if !seen.insert(id) {
            return Err(model(format!("{field}[{id}]"), "duplicate id"));
        }
    }
    Ok(seen)
}

fn check_uuid(field: &str, v: &str) -> Result<()> {
    let groups: Vec<&str> = v.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(model(
            field,
            format!("`{v}` is not a UUID (8-4-4-4-12 hex digits)"),
        ));
    }
    Ok(())
}

/// SOL001 v2.6.1 `vnfm_info` entry pattern.
fn vnfm_info_ok(v: &str) -> bool {
    if let Some(rest) = v.strip_prefix("etsivnfm:v") {
        let parts: Vec<&str> = rest.split('.').collect();
        return parts.len() == 3
            && parts
                .iter()
                .all(|p| (1..=2).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()));
    }
    match v.split_once(':') {
        Some((n, name)) => {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }
        None => false,
    }
}

fn check_rfc3339(field: &str, v: &str) -> Result<()> {
    let b = v.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let ok = b.len() >= 20
        && digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19)
        && (v.ends_with('Z')
            || v.get(v.len() - 6..)
                .is_some_and(|z| z.starts_with(['+', '-'])));
    if !ok {
        return Err(model(
            field,
            format!("`{v}` is not an RFC 3339 date-time (e.g. 2026-11-26T00:00:00+00:00)"),
        ));
    }
    Ok(())
}

fn check_cidr(field: &str, v: &str) -> Result<()> {
    let ok = v.split_once('/').is_some_and(|(addr, len)| {
        let Ok(len) = len.parse::<u8>() else {
            return false;
        };
        match addr.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => len <= 32,
            Ok(std::net::IpAddr::V6(_)) => len <= 128,
            Err(_) => false,
        }
    });
    if !ok {
        return Err(model(
            field,
            format!("`{v}` is not an address/prefix-length"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnfs;

    #[test]
    fn builtin_models_pass() {
        for name in vnfs::NAMES {
            let m = vnfs::builtin(name).expect("builtin");
            check(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    fn err_field(m: &VnfModel) -> String {
        match check(m) {
            Err(crate::Error::Model { field, .. }) => field,
            other => panic!("expected a model error, got {other:?}"),
        }
    }

    #[test]
    fn bad_models_name_the_field() {
        let mut m = vnfs::router();
        m.vnfm_info = vec!["tacker".into()];
        assert_eq!(err_field(&m), "vnfm_info[0]");

        let mut m = vnfs::router();
        m.flavours[0].vdu_profiles[0].ram_mib = 64;
        assert_eq!(
            err_field(&m),
            "flavours[small].vdu_profiles[router].ram_mib"
        );

        let mut m = vnfs::vbng();
        m.vdus[0].cps[1].virtual_link = "nowhere".into();
        assert_eq!(err_field(&m), "vdus[vbng].cps[vbng-core].virtual_link");

        let mut m = vnfs::vcpe();
        m.flavours[1].scaling_aspects[0].max_scale_level = 0;
        assert_eq!(
            err_field(&m),
            "flavours[large].scaling_aspects[cpe-scale-out].max_scale_level"
        );

        let mut m = vnfs::keyserver();
        m.flavours[0].default_level = "huge".into();
        assert_eq!(err_field(&m), "flavours[small].default_level");

        let mut m = vnfs::router();
        m.day0.toml = "[vnf\nname=".into();
        assert_eq!(err_field(&m), "day0.toml");

        let mut m = vnfs::router();
        m.descriptor_id = "not-a-uuid".into();
        assert_eq!(err_field(&m), "descriptor_id");

        let mut m = vnfs::router();
        m.flavours[0].instantiation_levels[1].vdu_instances[0].instances = 2;
        assert_eq!(
            err_field(&m),
            "flavours[small].instantiation_levels[maximal].vdu_instances[router].instances"
        );
    }

    #[test]
    fn vnfm_info_pattern() {
        assert!(vnfm_info_ok("etsivnfm:v2.6.1"));
        assert!(vnfm_info_ok("0:onap-vnfm"));
        assert!(!vnfm_info_ok("etsivnfm:v2.6"));
        assert!(!vnfm_info_ok("Tacker"));
    }
}
