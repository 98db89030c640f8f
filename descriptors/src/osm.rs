//! OSM packages (OSM IM release 9 / SOL006): a VNF package and an NS package per VNF.
//!
//! Layout as OSM's `osm package-build` produces and `osm vnfpkg-create` /
//! `osm nspkg-create` accept, each as a folder and as a `.tar.gz` holding that folder:
//!
//! ```text
//! <vnf>_vnf/<vnf>_vnfd.yaml            SOL006 VNFD (see crate::sol006)
//! <vnf>_vnf/day0/<vnf>.toml, README.md  day-0 TOML and how the VNF takes it
//! <vnf>_vnf/scripts/*.sh               lifecycle-management-script files
//! <vnf>_vnf/scripts/day2/*.sh          day-1/day-2 operations (RESTCONF API)
//! <vnf>_vnf/icons/<vnf>.png
//! <vnf>_vnf/checksums.txt              MD5 per file, `<md5>\t<path>`
//! <vnf>_ns/<vnf>_nsd.yaml              SOL006 NSD
//! <vnf>_ns/icons/<vnf>_ns.png, checksums.txt
//! ```
//!
//! OSM takes the image from the VIM by `sw-image-desc/image`, so the image itself is
//! not in the package; its checksum and size are in the VNFD.

use crate::error::Result;
use crate::image::{hex, ImageInfo};
use crate::model::VnfModel;
use crate::package::{self, Entry};
use crate::sol006;
use md5::{Digest, Md5};
use std::path::Path;

/// Folder name of the VNF package.
pub fn vnf_pkg_name(m: &VnfModel) -> String {
    format!("{}_vnf", m.name)
}

/// Folder name of the NS package.
pub fn ns_pkg_name(m: &VnfModel) -> String {
    format!("{}_ns", m.name)
}

fn with_checksums(mut entries: Vec<Entry>) -> Result<Vec<Entry>> {
    let mut sums = String::new();
    for e in &entries {
        let mut h = Md5::new();
        match &e.content {
            package::Content::Bytes(b) => h.update(b),
            package::Content::File(p) => h.update(std::fs::read(p).map_err(crate::error::io(p))?),
        }
        sums.push_str(&format!("{}\t{}\n", hex(&h.finalize()), e.path));
    }
    entries.push(Entry::bytes("checksums.txt", sums));
    Ok(entries)
}

/// Files of the VNF package.
pub fn vnf_entries(m: &VnfModel, image: &ImageInfo) -> Result<Vec<Entry>> {
    let mut v = vec![
        Entry::bytes(
            format!("{}_vnfd.yaml", m.name),
            serde_norway::to_string(&sol006::vnfd(m, image))?,
        ),
        Entry::bytes(format!("day0/{}", m.day0.file_name), m.day0.toml.clone()),
        Entry::bytes(
            format!("day0/{}", crate::model::DAY0_README),
            m.day0_readme(),
        ),
    ];
    for s in &m.lcm_scripts {
        v.push(Entry::script(
            format!("scripts/{}", s.file_name),
            s.content.clone(),
        ));
    }
    for o in &m.operations {
        v.push(Entry::script(
            format!("scripts/day2/{}", o.file_name),
            o.content.clone(),
        ));
    }
    v.push(Entry::bytes(
        format!("monitoring/{}-kpis.yaml", m.name),
        crate::csar::kpi_file(m)?,
    ));
    v.push(Entry::bytes(format!("icons/{}.png", m.name), icon(m, 0)));
    v.push(Entry::bytes("README.md", readme(m)));
    with_checksums(v)
}

/// Files of the NS package.
pub fn ns_entries(m: &VnfModel) -> Result<Vec<Entry>> {
    with_checksums(vec![
        Entry::bytes(format!("{}_nsd.yaml", m.name), serde_norway::to_string(&sol006::nsd(m))?),
        Entry::bytes(format!("icons/{}_ns.png", m.name), icon(m, 1)),
        Entry::bytes(
            "README.md",
            format!(
                "# {} network service\n\nOne {} ({}), NS networks per external CP. Onboard `{}` first.\n",
                m.product_name,
                m.name,
                sol006::vnfd_id(m),
                vnf_pkg_name(m)
            ),
        ),
    ])
}

fn readme(m: &VnfModel) -> String {
    let mut s = format!(
        "# {} {}\n\n{}\n\nVNFD `{}` (ETSI SOL006 v2.6.1 + OSM IM r9). Image `{}` must be in the VIM.\n\n## Flavours\n\n",
        m.product_name,
        m.software_version,
        m.product_info_description,
        sol006::vnfd_id(m),
        m.image.name
    );
    for f in &m.flavours {
        s.push_str(&format!("- `{}`: {}\n", f.id, f.description));
    }
    s.push_str(&format!(
        "\n## KPIs (Prometheus, mgmt CP port {}{})\n\n",
        m.management.port, m.management.metrics_path
    ));
    for k in &m.kpis {
        s.push_str(&format!("- `{}` [{}]: {}\n", k.metric, k.unit, k.name));
    }
    s.push_str("\n## Day-1/day-2 operations (`scripts/day2/`, RESTCONF)\n\n");
    for o in &m.operations {
        s.push_str(&format!(
            "- `{}` ({} {}): {}\n",
            o.file_name, o.method, o.path, o.description
        ));
    }
    s
}

/// Write both packages, as folders and tarballs, into the folder `out`.
pub fn write(m: &VnfModel, image: &ImageInfo, out: &Path, force: bool) -> Result<()> {
    let vnf = vnf_entries(m, image)?;
    let ns = ns_entries(m)?;
    package::atomic_dir(out, force, |dir| {
        for (name, entries) in [(vnf_pkg_name(m), &vnf), (ns_pkg_name(m), &ns)] {
            let folder = dir.join(&name);
            std::fs::create_dir(&folder).map_err(crate::error::io(&folder))?;
            package::write_dir(&folder, entries)?;
            let tgz = dir.join(format!("{name}.tar.gz"));
            let f = std::fs::File::create(&tgz).map_err(crate::error::io(&tgz))?;
            package::write_tar_gz(&tgz, &name, entries, f)?;
        }
        Ok(())
    })
}

/// A 64x64 PNG icon (ISO/IEC 15948): a coloured tile per VNF, drawn here so the
/// package carries no binary blobs from elsewhere.
pub fn icon(m: &VnfModel, variant: u8) -> Vec<u8> {
    const N: u32 = 64;
    let seed = m
        .name
        .bytes()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    let base = [
        (seed & 0x7f) as u8 + 64,
        ((seed >> 8) & 0x7f) as u8 + 64,
        ((seed >> 16) & 0x7f) as u8 + 96,
    ];
    let mut raw = Vec::with_capacity(((N * 3 + 1) * N) as usize);
    for y in 0..N {
        raw.push(0); // filter: none
        for x in 0..N {
            let border = x < 4 || y < 4 || x >= N - 4 || y >= N - 4;
            let stripe = variant == 1 && (x + y) % 16 < 4;
            let px = if border || stripe {
                [255, 255, 255]
            } else {
                base
            };
            raw.extend_from_slice(&px);
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = std::io::Write::write_all(&mut z, &raw);
    let idat = z.finish().unwrap_or_default();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&N.to_be_bytes());
    ihdr.extend_from_slice(&N.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", Vec::new())] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(&data);
        png.extend_from_slice(kind);
        png.extend_from_slice(&data);
        png.extend_from_slice(&crc.sum().to_be_bytes());
    }
    png
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn icon_is_a_valid_png() {
        let png = icon(&crate::vnfs::router(), 0);
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let mut i = 8;
        let mut kinds = Vec::new();
        while i + 12 <= png.len() {
            let n = u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as usize;
            let kind = &png[i + 4..i + 8];
            let body = &png[i + 8..i + 8 + n];
            let crc = u32::from_be_bytes(png[i + 8 + n..i + 12 + n].try_into().unwrap());
            let mut c = flate2::Crc::new();
            c.update(kind);
            c.update(body);
            assert_eq!(c.sum(), crc);
            if kind == b"IDAT" {
                let mut raw = Vec::new();
                flate2::read::ZlibDecoder::new(body)
                    .read_to_end(&mut raw)
                    .unwrap();
                assert_eq!(raw.len(), 64 * (64 * 3 + 1));
            }
            kinds.push(kind.to_vec());
            i += 12 + n;
        }
        assert_eq!(
            kinds,
            vec![b"IHDR".to_vec(), b"IDAT".to_vec(), b"IEND".to_vec()]
        );
    }
}
