//! ETSI GS NFV-SOL 004 VNF package (CSAR) for ONAP.
//!
//! Layout (SOL004 v2.6.1 clause 4.1 "CSAR with TOSCA-Metadata directory"):
//!
//! ```text
//! TOSCA-Metadata/TOSCA.meta      first zip entry; block_0 keys in the order of
//!                                TOSCA-Simple-Profile-YAML 1.3 clause 4.2:
//!                                TOSCA-Meta-File-Version, CSAR-Version, Created-By,
//!                                Entry-Definitions, then SOL004 4.3.6 ETSI-Entry-*
//! Definitions/<vnf>_top.vnfd.yaml + <vnf>_types.yaml + <vnf>_df_<f>.yaml
//! Definitions/etsi_nfv_sol001_{common,vnfd}_types.yaml   ETSI type files
//! Files/images/<image>           the software image artifact
//! Files/day0/<vnf>.toml, README.md                         day-0 configuration and
//!                                how the VNF takes it (fw_cfg, `--config`)
//! Files/monitoring/<vnf>-kpis.yaml                         KPI → Prometheus metric map
//! Scripts/<lcm script>           Vnflcm operation implementations
//! Scripts/day2/<operation>.sh    day-1/day-2 operations over the RESTCONF API
//! ChangeLog.txt                  SOL004 4.3.5 change history
//! <vnf>.mf                       SOL004 4.3.2 manifest: metadata + SHA-256 per file
//! ```
//!
//! The manifest lists every other file of the package with `Source`, `Algorithm`
//! (`SHA-256`) and `Hash` (SOL004 4.3.3). With [`Signing`] the manifest carries a
//! detached CMS signature (PEM) at its end and the signer certificate ships as
//! `<vnf>.cert` (`ETSI-Entry-Certificate`), SOL004 v2.6.1 clause 5.3 option 1; the
//! signature is made with the `openssl cms` CLI.

use crate::error::{Error, Result};
use crate::image::ImageInfo;
use crate::model::VnfModel;
use crate::package::{self, Entry};
use crate::sol001;
use std::path::Path;

/// Path of TOSCA.meta inside the CSAR.
pub const TOSCA_META: &str = "TOSCA-Metadata/TOSCA.meta";

/// Manifest file name.
pub fn manifest_name(m: &VnfModel) -> String {
    format!("{}.mf", m.name)
}

/// Signing material for the manifest (SOL004 v2.6.1 clause 5.3, option 1): a PEM
/// private key and its X.509 certificate (shipped as `<vnf>.cert`).
#[derive(Debug, Clone)]
pub struct Signing {
    /// PEM private key.
    pub key: std::path::PathBuf,
    /// PEM X.509 certificate of that key.
    pub cert: std::path::PathBuf,
}

/// Certificate file name (root of the CSAR, `ETSI-Entry-Certificate`).
pub fn cert_name(m: &VnfModel) -> String {
    format!("{}.cert", m.name)
}

/// TOSCA.meta text.
pub fn tosca_meta(m: &VnfModel, signed: bool) -> String {
    let mut s = tosca_meta_unsigned(m);
    if signed {
        s.push_str(&format!("ETSI-Entry-Certificate: {}\n", cert_name(m)));
    }
    s
}

fn tosca_meta_unsigned(m: &VnfModel) -> String {
    format!(
        "TOSCA-Meta-File-Version: 1.0\n\
         CSAR-Version: 1.1\n\
         Created-By: {} (nfv-rs descriptors {})\n\
         Entry-Definitions: Definitions/{}\n\
         ETSI-Entry-Manifest: {}\n\
         ETSI-Entry-Change-Log: ChangeLog.txt\n",
        m.provider,
        env!("CARGO_PKG_VERSION"),
        sol001::top_file(m),
        manifest_name(m),
    )
}

fn changelog(m: &VnfModel) -> String {
    format!(
        "{date} {product} {ver}\n  - VNF package version {ver}, VNFD {id} version {dv}\n  - deployment flavours: {fl}\n",
        date = m.release_date_time,
        product = m.product_name,
        ver = m.software_version,
        id = m.descriptor_id,
        dv = m.descriptor_version,
        fl = m.flavours.iter().map(|f| f.id.as_str()).collect::<Vec<_>>().join(", "),
    )
}

/// The KPI map shipped in `Files/monitoring/` (and `monitoring/` of the OSM
/// package): every KPI, including those SOL001 `monitoring_parameters` cannot
/// express (their metric values are restricted to IFA 027 measurements), the
/// management endpoint, how day-0 is taken and the image file; `testbed onboard`
/// reads it.
pub fn kpi_file(m: &VnfModel) -> Result<String> {
    #[derive(serde::Serialize)]
    struct K<'a> {
        vnf: &'a str,
        scrape: String,
        management: &'a crate::model::Management,
        day0: Day0<'a>,
        image: String,
        kpis: &'a [crate::model::Kpi],
    }
    #[derive(serde::Serialize)]
    struct Day0<'a> {
        file_name: &'a str,
        install_path: &'a str,
        fw_cfg: &'a str,
        process_command: &'a str,
    }
    Ok(serde_norway::to_string(&K {
        vnf: &m.name,
        scrape: format!(
            "http://<mgmt-ip>:{}{} (Prometheus text format)",
            m.management.port, m.management.metrics_path
        ),
        management: &m.management,
        day0: Day0 {
            file_name: &m.day0.file_name,
            install_path: &m.day0.install_path,
            fw_cfg: &m.day0.fw_cfg,
            process_command: &m.day0.process_command,
        },
        image: format!(
            "{}-{}.{}",
            m.image.name,
            m.image.version,
            m.image.disk_format.as_str()
        ),
        kpis: &m.kpis,
    })?)
}

/// All files of the CSAR except the manifest, in zip order.
fn entries(m: &VnfModel, image: &ImageInfo, sign: Option<&Signing>) -> Result<Vec<Entry>> {
    let mut v = vec![Entry::bytes(TOSCA_META, tosca_meta(m, sign.is_some()))];
    for (name, text) in sol001::render(m, image)? {
        v.push(Entry::bytes(format!("Definitions/{name}"), text));
    }
    // The ETSI type files ship inside the crate (etsi/README.md: origin, licence).
    for (f, data) in sol001::ETSI_TYPES {
        v.push(Entry::bytes(format!("Definitions/{f}"), data.to_vec()));
    }
    v.push(Entry::file_with_sha256(
        format!("Files/images/{}", image.file_name),
        &image.path,
        &image.sha256,
    ));
    v.push(Entry::bytes(
        format!("Files/day0/{}", m.day0.file_name),
        m.day0.toml.clone(),
    ));
    v.push(Entry::bytes(
        format!("Files/day0/{}", crate::model::DAY0_README),
        m.day0_readme(),
    ));
    v.push(Entry::bytes(
        format!("Files/monitoring/{}-kpis.yaml", m.name),
        kpi_file(m)?,
    ));
    for s in &m.lcm_scripts {
        v.push(Entry::script(
            format!("Scripts/{}", s.file_name),
            s.content.clone(),
        ));
    }
    for o in &m.operations {
        v.push(Entry::script(
            format!("Scripts/day2/{}", o.file_name),
            o.content.clone(),
        ));
    }
    v.push(Entry::bytes("ChangeLog.txt", changelog(m)));
    if let Some(s) = sign {
        let cert = std::fs::read(&s.cert).map_err(crate::error::io(&s.cert))?;
        v.push(Entry::bytes(cert_name(m), cert));
    }
    Ok(v)
}

/// Detached CMS signature (PEM, `-----BEGIN CMS-----`) of `content`, made with the
/// openssl CLI.
fn cms_sign(content: &str, s: &Signing) -> Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args(["cms", "-sign", "-binary", "-outform", "PEM", "-signer"])
        .arg(&s.cert)
        .arg("-inkey")
        .arg(&s.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::ToolMissing(format!("openssl (needed to sign the manifest): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(content.as_bytes())
            .map_err(crate::error::io("openssl"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(crate::error::io("openssl"))?;
    let pem = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || !pem.starts_with("-----BEGIN CMS-----") {
        return Err(Error::Image {
            path: s.key.clone(),
            reason: format!(
                "signing the manifest failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(pem)
}

/// SOL004 manifest text for `entries`.
pub fn manifest(m: &VnfModel, entries: &[Entry]) -> Result<String> {
    let mut s = format!(
        "metadata:\n\
         vnf_provider_id: {}\n\
         vnf_product_name: {}\n\
         vnf_release_date_time: {}\n\
         vnf_package_version: {}\n",
        m.provider, m.product_name, m.release_date_time, m.software_version
    );
    for e in entries {
        s.push_str(&format!(
            "\nSource: {}\nAlgorithm: SHA-256\nHash: {}\n",
            e.path,
            e.sha256()?
        ));
    }
    Ok(s)
}

/// Build the CSAR for `m` and write it to `out` (all or nothing).
pub fn write(
    m: &VnfModel,
    image: &ImageInfo,
    out: &Path,
    force: bool,
    sign: Option<&Signing>,
) -> Result<()> {
    let mut all = entries(m, image, sign)?;
    let mut mf = manifest(m, &all)?;
    if let Some(s) = sign {
        // SOL004 5.3 option 1: the CMS signature of the manifest, appended to it.
        let pem = cms_sign(&mf, s)?;
        mf.push_str(&pem);
    }
    all.push(Entry::bytes(manifest_name(m), mf));
    package::atomic_file(out, force, |f| package::write_zip(out, &all, f))
}

/// Check a CSAR's SOL004 structure and manifest digests; returns the problems found.
pub fn verify(path: &Path) -> Result<Vec<String>> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(crate::error::io(path))?;
    let mut z = zip::ZipArchive::new(f).map_err(|source| Error::Zip {
        path: path.to_path_buf(),
        source,
    })?;
    let mut problems = Vec::new();
    let names: Vec<String> = z.file_names().map(str::to_string).collect();
    let read = |z: &mut zip::ZipArchive<std::fs::File>, name: &str| -> Option<Vec<u8>> {
        let mut e = z.by_name(name).ok()?;
        let mut b = Vec::new();
        e.read_to_end(&mut b).ok()?;
        Some(b)
    };
    let first_files: Vec<&String> = names.iter().filter(|n| !n.ends_with('/')).take(1).collect();
    if first_files.first().map(|s| s.as_str()) != Some(TOSCA_META) {
        problems.push(format!(
            "first file entry is {first_files:?}, SOL004 wants {TOSCA_META}"
        ));
    }
    let Some(meta) = read(&mut z, TOSCA_META) else {
        problems.push(format!("{TOSCA_META} missing"));
        return Ok(problems);
    };
    let meta = String::from_utf8_lossy(&meta).to_string();
    let keys: Vec<(&str, &str)> = meta
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim(), v.trim())))
        .collect();
    let want = [
        "TOSCA-Meta-File-Version",
        "CSAR-Version",
        "Created-By",
        "Entry-Definitions",
    ];
    let got: Vec<&str> = keys.iter().take(4).map(|(k, _)| *k).collect();
    if got != want {
        problems.push(format!(
            "TOSCA.meta starts with keys {got:?}, expected {want:?}"
        ));
    }
    let get = |k: &str| {
        keys.iter()
            .find(|(kk, _)| *kk == k)
            .map(|(_, v)| v.to_string())
    };
    for k in [
        "Entry-Definitions",
        "ETSI-Entry-Manifest",
        "ETSI-Entry-Change-Log",
    ] {
        match get(k) {
            Some(v) if names.contains(&v) => {}
            Some(v) => problems.push(format!("TOSCA.meta {k}: {v} is not in the archive")),
            None => problems.push(format!("TOSCA.meta lacks {k}")),
        }
    }
    let Some(mf_name) = get("ETSI-Entry-Manifest") else {
        return Ok(problems);
    };
    let Some(mf) = read(&mut z, &mf_name) else {
        return Ok(problems);
    };
    let mf = String::from_utf8_lossy(&mf).to_string();
    for k in [
        "vnf_provider_id",
        "vnf_product_name",
        "vnf_release_date_time",
        "vnf_package_version",
    ] {
        if !mf.lines().any(|l| l.starts_with(&format!("{k}:"))) {
            problems.push(format!("manifest metadata lacks {k}"));
        }
    }
    let mut listed = Vec::new();
    let mut source: Option<String> = None;
    let (body, signature) = match mf.find("-----BEGIN CMS-----") {
        Some(i) => (&mf[..i], Some(&mf[i..])),
        None => (mf.as_str(), None),
    };
    if signature.is_some() {
        match get("ETSI-Entry-Certificate") {
            Some(c) if names.contains(&c) => {}
            _ => problems.push("signed manifest but no ETSI-Entry-Certificate file".into()),
        }
    }
    for line in body.lines() {
        if let Some(v) = line.strip_prefix("Source:") {
            source = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Algorithm:") {
            if v.trim() != "SHA-256" {
                problems.push(format!("manifest algorithm {} is not SHA-256", v.trim()));
            }
        } else if let Some(v) = line.strip_prefix("Hash:") {
            let Some(src) = source.take() else {
                problems.push("manifest Hash without Source".into());
                continue;
            };
            let digest = z.by_name(&src).ok().and_then(|mut e| {
                let mut h = Sha256::new();
                std::io::copy(&mut e, &mut h).ok()?;
                Some(crate::image::hex(&h.finalize()))
            });
            match digest {
                Some(h) => {
                    if h != v.trim() {
                        problems.push(format!(
                            "digest mismatch for {src}: manifest {} actual {h}",
                            v.trim()
                        ));
                    }
                }
                None => problems.push(format!("manifest lists {src}, not in the archive")),
            }
            listed.push(src);
        }
    }
    for n in &names {
        if !n.ends_with('/') && *n != mf_name && !listed.contains(n) {
            problems.push(format!("{n} is not listed in the manifest"));
        }
    }
    Ok(problems)
}
