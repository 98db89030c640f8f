//! Package tests with independent validators: tosca-parser (PyPI) on the SOL004 CSARs,
//! yanglint (libyang2-tools) with the SOL006 YANG modules on the OSM VNFD/NSD, both
//! through `validate/validate.py` (the same checks `descriptors validate` runs).
//! Needs: `qemu-img` (qemu-utils), the venv at `$VNF_VENV` or `<workspace>/.venv`
//! with `tosca-parser` and `pyang`, and `yanglint`. Missing tools fail the tests.

use descriptors::{csar, validate, vnfs, BuildOptions, Error, Format};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A small qcow2 image made with qemu-img.
fn make_image(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&p)
        .arg("64M")
        .output()
        .expect("qemu-img is required (apt-get install qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-img failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

fn opts(format: Format, image: &Path, out: PathBuf) -> BuildOptions {
    BuildOptions {
        format,
        flavour: None,
        image: Some(image.to_path_buf()),
        out,
        force: false,
        sign: None,
    }
}

fn must_validate(p: &Path) -> String {
    match validate::validate(p) {
        Ok(r) => r,
        Err(e) => panic!("validation of {} failed: {e}", p.display()),
    }
}

fn must_reject(p: &Path, what: &str) -> String {
    match validate::validate(p) {
        Err(Error::Invalid { report, .. }) => {
            assert!(
                report.contains(what),
                "expected `{what}` in the report:\n{report}"
            );
            report
        }
        Err(e) => panic!("expected an invalid-package report, got: {e}"),
        Ok(r) => panic!("broken package {} passed validation:\n{r}", p.display()),
    }
}

#[test]
fn every_vnf_csar_passes_tosca_parser_and_sol004_checks() {
    let d = tmpdir();

    let img = make_image(d.path(), "img.qcow2");
    let out = d.path().join("csar");
    std::fs::create_dir(&out).unwrap();
    for name in vnfs::NAMES {
        let m = vnfs::builtin(name).unwrap();
        let p = out.join(format!("{name}.csar"));
        descriptors::build(&m, &opts(Format::Csar, &img, p.clone())).unwrap();
        assert_eq!(csar::verify(&p).unwrap(), Vec::<String>::new(), "{name}");
        // SOL004: TOSCA.meta is the first file entry, the manifest digests verify.
        let mut z = zip::ZipArchive::new(std::fs::File::open(&p).unwrap()).unwrap();
        let first = z
            .file_names()
            .find(|n| !n.ends_with('/'))
            .map(str::to_string);
        let names: Vec<String> = z.file_names().map(str::to_string).collect();
        assert_eq!(first.as_deref(), Some("TOSCA-Metadata/TOSCA.meta"));
        let mut meta = String::new();
        z.by_name("TOSCA-Metadata/TOSCA.meta")
            .unwrap()
            .read_to_string(&mut meta)
            .unwrap();
        assert!(
            meta.starts_with("TOSCA-Meta-File-Version: 1.0\nCSAR-Version: 1.1\nCreated-By: "),
            "{meta}"
        );
        assert!(meta.contains(&format!(
            "Entry-Definitions: Definitions/{name}_top.vnfd.yaml"
        )));
        let image_member = format!("Files/images/{name}-unikernel-0.1.0.qcow2");
        for f in [
            "Definitions/etsi_nfv_sol001_common_types.yaml",
            "Definitions/etsi_nfv_sol001_vnfd_types.yaml",
            &image_member,
            "ChangeLog.txt",
        ] {
            assert!(names.iter().any(|n| n == f), "{name}: {f} missing");
        }
        let mut mf = String::new();
        z.by_name(&format!("{name}.mf"))
            .unwrap()
            .read_to_string(&mut mf)
            .unwrap();
        let img_hash = hex(&sha2::Sha256::digest(std::fs::read(&img).unwrap()));
        assert!(mf.contains(&format!(
            "Source: {image_member}\nAlgorithm: SHA-256\nHash: {img_hash}\n"
        )));
        // SOL001: the day-1/day-2 operations (the OSM config primitives) are an
        // interface of the VNF node type, its type derived from tosca.interfaces.Root,
        // each operation implemented by its script in the package.
        let mut types = String::new();
        z.by_name(&format!("Definitions/{name}_types.yaml"))
            .unwrap()
            .read_to_string(&mut types)
            .unwrap();
        let types: serde_norway::Value = serde_norway::from_str(&types).unwrap();
        let itype = descriptors::sol001::day2_interface_type(&m);
        let node = &types["node_types"][descriptors::sol001::node_type(&m).as_str()];
        assert_eq!(
            node["interfaces"]["Day2"]["type"].as_str(),
            Some(itype.as_str()),
            "{name}"
        );
        let it = &types["interface_types"][itype.as_str()];
        assert_eq!(
            it["derived_from"].as_str(),
            Some("tosca.interfaces.Root"),
            "{name}"
        );
        assert!(!m.operations.is_empty(), "{name}");
        for o in &m.operations {
            assert!(
                it[o.name.as_str()]["description"].is_string(),
                "{name}: {}",
                o.name
            );
            for p in &o.params {
                assert_eq!(
                    it[o.name.as_str()]["inputs"][p.as_str()]["type"].as_str(),
                    Some("string")
                );
            }
            let script = format!("Scripts/day2/{}", o.file_name);
            assert!(names.contains(&script), "{name}: {script} missing");
        }
    }
    let report = must_validate(&out);
    assert_eq!(
        report.matches("tosca-parser]").count(),
        vnfs::NAMES.len(),
        "{report}"
    );
}

#[test]
fn every_vnf_osm_package_passes_yanglint() {
    let d = tmpdir();
    let img = make_image(d.path(), "img.qcow2");
    let out = d.path().join("osm");
    std::fs::create_dir(&out).unwrap();
    for name in vnfs::NAMES {
        let m = vnfs::builtin(name).unwrap();
        descriptors::build(&m, &opts(Format::Osm, &img, out.join(name))).unwrap();
        for f in [
            format!("{name}_vnf/{name}_vnfd.yaml"),
            format!("{name}_vnf/checksums.txt"),
            format!("{name}_vnf/day0/{name}.toml"),
            format!("{name}_vnf/day0/README.md"),
            format!("{name}_vnf/icons/{name}.png"),
            format!("{name}_ns/{name}_nsd.yaml"),
            format!("{name}_vnf.tar.gz"),
            format!("{name}_ns.tar.gz"),
        ] {
            assert!(out.join(name).join(&f).is_file(), "{f} missing");
        }
        // Day-1/day-2: every operation is an OSM config primitive (day1-2) run by
        // its script, which the package ships.
        let vnfd =
            std::fs::read_to_string(out.join(name).join(format!("{name}_vnf/{name}_vnfd.yaml")))
                .unwrap();
        assert!(!m.operations.is_empty(), "{name} has no day-2 operation");
        assert!(vnfd.contains("day1-2:"), "{vnfd}");
        for o in &m.operations {
            let script = format!("scripts/day2/{}", o.file_name);
            assert!(
                vnfd.contains(&format!("user-defined-script: {script}")),
                "{name}: {} not a config primitive",
                o.name
            );
            assert!(out
                .join(name)
                .join(format!("{name}_vnf/{script}"))
                .is_file());
            assert!(o.path.starts_with("/restconf/"), "{}", o.path);
        }
    }
    // One flavour only: VDU ids are the model's and ext-cpd maps to int-cpd.
    let m = vnfs::vbng();
    let mut o = opts(Format::Osm, &img, out.join("vbng-large"));
    o.flavour = Some("large".into());
    descriptors::build(&m, &o).unwrap();
    let vnfd = std::fs::read_to_string(out.join("vbng-large/vbng_vnf/vbng_vnfd.yaml")).unwrap();
    assert!(
        vnfd.contains("vdu-id: vbng") && !vnfd.contains("id: small"),
        "{vnfd}"
    );

    let report = must_validate(&out);
    // VNFD and NSD, each against OSM IM r9 and strict SOL006 v2.6.1, for 5 outputs.
    assert_eq!(
        report.matches("\nOK ").count() + usize::from(report.starts_with("OK ")),
        20,
        "{report}"
    );
    assert!(!report.contains("FAIL"), "{report}");
    // The tarball on its own.
    must_validate(&out.join("router/router_vnf.tar.gz"));
}

/// Rewrite a CSAR with `edit` applied to one member, keeping the manifest digests
/// correct (so the validator, not the digest check, must catch it) unless `fix_mf` is
/// false.
fn tamper_csar(
    src: &Path,
    dst: &Path,
    member: &str,
    fix_mf: bool,
    edit: impl Fn(String) -> String,
) {
    let mut z = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..z.len() {
        let mut e = z.by_index(i).unwrap();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        files.push((e.name().to_string(), b));
    }
    let mut old_hash = String::new();
    let mut new_hash = String::new();
    for (n, b) in files.iter_mut() {
        if n == member {
            old_hash = hex(&sha2::Sha256::digest(&b[..]));
            let s = edit(String::from_utf8(b.clone()).unwrap());
            assert_ne!(s.as_bytes(), &b[..], "edit changed nothing");
            *b = s.into_bytes();
            new_hash = hex(&sha2::Sha256::digest(&b[..]));
        }
    }
    assert!(!old_hash.is_empty(), "{member} not in the CSAR");
    if fix_mf {
        for (n, b) in files.iter_mut() {
            if n.ends_with(".mf") {
                *b = String::from_utf8(b.clone())
                    .unwrap()
                    .replace(&old_hash, &new_hash)
                    .into_bytes();
            }
        }
    }
    let mut w = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    for (n, b) in files {
        if n.ends_with('/') {
            w.add_directory(
                n.trim_end_matches('/'),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
        } else {
            w.start_file(n, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(&b).unwrap();
        }
    }
    w.finish().unwrap();
}

#[test]
fn broken_csars_are_rejected() {
    let d = tmpdir();
    let img = make_image(d.path(), "img.qcow2");
    let good = d.path().join("router.csar");
    descriptors::build(&vnfs::router(), &opts(Format::Csar, &img, good.clone())).unwrap();
    let broken = d.path().join("broken");
    std::fs::create_dir(&broken).unwrap();

    // A VduCp vnic_type outside the SOL001 valid_values: tosca-parser rejects it.
    let vnic = broken.join("bad-vnic.csar");
    tamper_csar(
        &good,
        &vnic,
        "Definitions/router_df_small.yaml",
        true,
        |s| s.replacen("vnic_type: direct-physical", "vnic_type: sriov", 1),
    );
    // A Vdu.Compute without its required vdu_profile.
    let profile = broken.join("bad-profile.csar");
    tamper_csar(
        &good,
        &profile,
        "Definitions/router_df_large.yaml",
        true,
        |s| s.replacen("vdu_profile:", "vdu_profil:", 1),
    );
    // Both in one validator run; each must fail for its own reason.
    let report = must_reject(&broken, "tosca-parser");
    for (p, why) in [(&vnic, "vnic_type"), (&profile, "vdu_profil")] {
        let prefix = format!("FAIL {}", p.display());
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(why)),
            "no `{why}` failure for {}:\n{report}",
            p.display()
        );
    }

    // A changed file whose manifest digest was not updated.
    let bad = d.path().join("bad-digest.csar");
    tamper_csar(&good, &bad, "Files/day0/router.toml", false, |s| {
        s.replace("192.0.2.1/24", "192.0.2.9/24")
    });
    must_reject(&bad, "digest mismatch");
}

/// Edit an OSM descriptor and refresh its checksums.txt line.
fn tamper_osm(pkg: &Path, file: &str, edit: impl Fn(String) -> String) {
    let p = pkg.join(file);
    let old = std::fs::read(&p).unwrap();
    let new = edit(String::from_utf8(old.clone()).unwrap());
    assert_ne!(new.as_bytes(), &old[..], "edit changed nothing");
    std::fs::write(&p, &new).unwrap();
    let sums = pkg.join("checksums.txt");
    let old_md5 = hex(&md5::Md5::digest(&old));
    let new_md5 = hex(&md5::Md5::digest(new.as_bytes()));
    let s = std::fs::read_to_string(&sums)
        .unwrap()
        .replace(&old_md5, &new_md5);
    std::fs::write(&sums, s).unwrap();
}

#[test]
fn broken_osm_packages_are_rejected() {
    let d = tmpdir();
    let img = make_image(d.path(), "img.qcow2");
    let cases = d.path().join("cases");
    std::fs::create_dir(&cases).unwrap();
    let case = |n: &str| {
        let out = cases.join(n);
        let mut o = opts(Format::Osm, &img, out.clone());
        o.flavour = Some("small".into());
        descriptors::build(&vnfs::vcpe(), &o).unwrap();
        out
    };
    let mut expect: Vec<(PathBuf, &str)> = Vec::new();
    // SOL006 mandatory leaf missing.
    let out = case("no-sw-version");
    tamper_osm(&out.join("vcpe_vnf"), "vcpe_vnfd.yaml", |s| {
        s.replacen("  software-version: 0.1.0\n", "", 1)
    });
    expect.push((out.join("vcpe_vnf/vcpe_vnfd.yaml"), "software-version"));
    // An identity that does not exist.
    let out = case("bad-identity");
    tamper_osm(&out.join("vcpe_vnf"), "vcpe_vnfd.yaml", |s| {
        s.replacen("algorithm: sha-256", "algorithm: crc32", 1)
    });
    expect.push((out.join("vcpe_vnf/vcpe_vnfd.yaml"), "crc32"));
    // vdu-profile max below min breaks a SOL006 `must`.
    let out = case("bad-must");
    tamper_osm(&out.join("vcpe_vnf"), "vcpe_vnfd.yaml", |s| {
        s.replacen(
            "max-number-of-instances: 2",
            "max-number-of-instances: 0",
            1,
        )
    });
    expect.push((out.join("vcpe_vnf/vcpe_vnfd.yaml"), "yanglint"));
    // The NSD references a VNFD that is not there (leafref).
    let out = case("bad-leafref");
    tamper_osm(&out.join("vcpe_ns"), "vcpe_nsd.yaml", |s| {
        s.replace("vnfd-id: vcpe_vnfd", "vnfd-id: ghost_vnfd")
    });
    expect.push((out.join("vcpe_ns/vcpe_nsd.yaml"), "ghost_vnfd"));
    // A file changed behind checksums.txt.
    let out = case("bad-md5");
    std::fs::write(out.join("vcpe_vnf/README.md"), "changed").unwrap();
    expect.push((out.join("vcpe_vnf"), "checksum mismatch"));

    // One validator run over all cases; each case must fail for its own reason.
    let report = must_reject(&cases, "FAIL");
    for (path, why) in &expect {
        let prefix = format!("FAIL {}", path.display());
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(why)),
            "no `{why}` failure for {}:\n{report}",
            path.display()
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---- CLI: bad input gets a clear error naming the field, nothing is left behind.

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_descriptors"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|n| n == "img.qcow2" || n == "model.yaml"),
        "left behind: {left:?}"
    );
}

#[test]
fn cli_errors_name_the_problem_and_leave_nothing() {
    let d = tmpdir();
    let dp = d.path();
    let img = make_image(dp, "img.qcow2");
    let img_s = img.to_str().unwrap();
    let out = dp.join("x.csar");
    let out_s = out.to_str().unwrap();

    let (ok, msg) = cli(&[
        "package", "bng", "--format", "csar", "--image", img_s, "-o", out_s,
    ]);
    assert!(
        !ok && msg.contains("unknown VNF `bng`") && msg.contains("vbng"),
        "{msg}"
    );
    assert_empty(dp);

    let missing = dp.join("nope.qcow2");
    let (ok, msg) = cli(&[
        "package",
        "router",
        "--format",
        "csar",
        "--image",
        missing.to_str().unwrap(),
        "-o",
        out_s,
    ]);
    assert!(
        !ok && msg.contains("image") && msg.contains("nope.qcow2"),
        "{msg}"
    );
    assert_empty(dp);

    let (ok, msg) = cli(&[
        "package",
        "router",
        "--format",
        "osm",
        "--flavour",
        "huge",
        "--image",
        img_s,
        "-o",
        out_s,
    ]);
    assert!(
        !ok && msg.contains("flavour `huge`") && msg.contains("small, large"),
        "{msg}"
    );
    assert_empty(dp);

    // Not a qcow2 file although the model says qcow2.
    let raw = dp.join("raw.img");
    std::fs::write(&raw, b"not an image").unwrap();
    let (ok, msg) = cli(&[
        "package",
        "router",
        "--format",
        "csar",
        "--image",
        raw.to_str().unwrap(),
        "-o",
        out_s,
    ]);
    assert!(!ok && msg.contains("qcow2"), "{msg}");
    std::fs::remove_file(&raw).unwrap();
    assert_empty(dp);

    // A model file that breaks a SOL rule: max-scale-level 0.
    let (ok, model) = cli(&["model", "keyserver"]);
    assert!(ok);
    let broken = model.replacen("max_scale_level: 1", "max_scale_level: 0", 1);
    assert_ne!(broken, model);
    let mf = dp.join("model.yaml");
    std::fs::write(&mf, broken).unwrap();
    let (ok, msg) = cli(&[
        "package",
        mf.to_str().unwrap(),
        "--format",
        "osm",
        "--image",
        img_s,
        "-o",
        dp.join("o").to_str().unwrap(),
    ]);
    assert!(
        !ok && msg.contains("flavours[small].scaling_aspects[keyserver-scale-out].max_scale_level"),
        "{msg}"
    );
    assert_empty(dp);

    // No --image and no built image at target/images/<vnf>.qcow2: SOL001/SOL006 need
    // the checksum and size, so this is an error naming the image.
    std::fs::write(
        &mf,
        model.replacen("name: keyserver", "name: imageless-vnf", 1),
    )
    .unwrap();
    let (ok, msg) = cli(&[
        "package",
        mf.to_str().unwrap(),
        "--format",
        "csar",
        "-o",
        out_s,
    ]);
    assert!(
        !ok && msg.contains("imageless-vnf.qcow2") && msg.contains("no --image"),
        "{msg}"
    );
    assert_empty(dp);

    // A model file with an unknown field.
    std::fs::write(&mf, model.replacen("provider:", "vendor:", 1)).unwrap();
    let (ok, msg) = cli(&[
        "package",
        mf.to_str().unwrap(),
        "--format",
        "csar",
        "--image",
        img_s,
        "-o",
        out_s,
    ]);
    assert!(!ok && msg.contains("vendor"), "{msg}");
    assert_empty(dp);

    // Packaging reads nothing from outside the repository (the ETSI type files ship
    // inside the crate): with the reference folder pointing nowhere it still works.
    let out2 = dp.join("noref.csar");
    let o = Command::new(env!("CARGO_BIN_EXE_descriptors"))
        .args([
            "package", "router", "--format", "csar", "--image", img_s, "-o",
        ])
        .arg(&out2)
        .env("VNF_SHARED_REFERENCE", dp.join("no-such-reference"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(&out2).unwrap();

    // Success, then a refusal to overwrite without --force.
    let (ok, msg) = cli(&[
        "package",
        "vcpe",
        "--format",
        "csar",
        "--flavour",
        "small",
        "--image",
        img_s,
        "-o",
        out_s,
    ]);
    assert!(ok, "{msg}");
    let (ok, msg) = cli(&[
        "package", "vcpe", "--format", "csar", "--image", img_s, "-o", out_s,
    ]);
    assert!(!ok && msg.contains("already exists"), "{msg}");
    let (ok, msg) = cli(&["validate", out_s]);
    assert!(ok && msg.contains("tosca-parser"), "{msg}");
}

#[test]
fn signed_csar_verifies_and_tampering_breaks_the_signature() {
    let d = tmpdir();
    let img = make_image(d.path(), "img.qcow2");
    let (key, cert) = (d.path().join("key.pem"), d.path().join("cert.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-subj",
            "/CN=nfv-rs package signing test",
            "-days",
            "2",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl CLI is required");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = d.path().join("pkgs");
    std::fs::create_dir(&dir).unwrap();
    let signed = dir.join("keyserver.csar");
    let mut o = opts(Format::Csar, &img, signed.clone());
    o.sign = Some(csar::Signing { key, cert });
    descriptors::build(&vnfs::keyserver(), &o).unwrap();
    assert_eq!(csar::verify(&signed).unwrap(), Vec::<String>::new());

    // Change the manifest metadata: digests still match, the signature does not.
    let bad = dir.join("tampered.csar");
    tamper_csar(&signed, &bad, "keyserver.mf", false, |s| {
        s.replacen(
            "vnf_package_version: 0.1.0",
            "vnf_package_version: 9.9.9",
            1,
        )
    });
    // One validator run over both.
    let report = must_reject(&dir, "CMS signature does not verify");
    assert!(
        report.contains(&format!("OK   {} [SOL004", signed.display())),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "FAIL {}: manifest CMS signature does not verify",
            bad.display()
        )),
        "{report}"
    );
}
