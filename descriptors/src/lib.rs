//! ETSI VNF packages from one model (issue 7).
//!
//! One [`model::VnfModel`] per VNF (IFA 011 VNFD information) renders to:
//! - an ETSI GS NFV-SOL 001 (v2.6.1 types) TOSCA VNFD packaged as an ETSI GS NFV-SOL 004
//!   CSAR for ONAP ([`sol001`], [`csar`]);
//! - ETSI GS NFV-SOL 006 (v2.6.1, OSM IM release 9) VNFD and NSD packages for OSM
//!   ([`sol006`], [`osm`]).
//!
//! [`rules`] refuses a model that breaks a SOL rule, naming the field; output is
//! all-or-nothing ([`package`]). [`validate`] runs the independent validators
//! (tosca-parser, yanglint) that the tests run.

#[macro_use]
mod yaml;

pub mod csar;
pub mod error;
pub mod image;
pub mod model;
pub mod osm;
pub mod package;
pub mod rules;
pub mod sol001;
pub mod sol006;
pub mod validate;
pub mod vnfs;

pub use error::{Error, Result};

use std::path::{Path, PathBuf};

/// Root of the cargo workspace this crate lives in.
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// The shared reference folder: `$VNF_SHARED_REFERENCE`, else
/// `<workspace root>/../shared/reference`.
pub fn reference_dir() -> Result<PathBuf> {
    let p = match std::env::var_os("VNF_SHARED_REFERENCE") {
        Some(v) => PathBuf::from(v),
        None => workspace_root().join("..").join("shared").join("reference"),
    };
    if !p.join("sol001").is_dir() || !p.join("sol006").is_dir() {
        return Err(Error::Reference {
            reason: format!("{} has no sol001/ and sol006/ folders", p.display()),
        });
    }
    Ok(p)
}

/// Default image location: `target/images/<vnf>.qcow2` under the current directory
/// (where `testbed image build` writes it by default); not a path fixed at compile
/// time.
pub fn default_image(m: &model::VnfModel) -> PathBuf {
    PathBuf::from("target")
        .join("images")
        .join(format!("{}.qcow2", m.name))
}

/// The VNFs `testbed image build` can build.
pub const BUILDABLE: &[&str] = &["router", "vbng"];

/// Builds the missing default image `d` of a built-in VNF with the `testbed` binary
/// next to this one (`testbed image build <vnf>`, which writes
/// `target/images/<vnf>.qcow2` under the current directory); [`Error::NoImage`]
/// when the VNF has no unikernel build or no `testbed` binary is there.
fn build_image(m: &model::VnfModel, d: &Path) -> Result<()> {
    let no_image = || Error::NoImage {
        default: d.to_path_buf(),
    };
    if !BUILDABLE.contains(&m.name.as_str()) {
        return Err(no_image());
    }
    let testbed = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.join("testbed")))
        .filter(|p| p.is_file())
        .ok_or_else(no_image)?;
    let out_dir = d.parent().unwrap_or(Path::new("."));
    eprintln!(
        "descriptors: no image at {}: building it with {} image build {}",
        d.display(),
        testbed.display(),
        m.name
    );
    let st = std::process::Command::new(&testbed)
        .args(["image", "build", &m.name, "--out"])
        .arg(out_dir)
        .status()
        .map_err(error::io(&testbed))?;
    if !st.success() || !d.is_file() {
        return Err(no_image());
    }
    Ok(())
}

/// A built-in model by name, or a model file (`.yaml`, `.yml`, `.json`).
pub fn load_model(name: &str) -> Result<model::VnfModel> {
    if let Some(m) = vnfs::builtin(name) {
        return Ok(m);
    }
    let p = Path::new(name);
    let is_file = [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e));
    if !is_file {
        return Err(Error::UnknownVnf {
            name: name.to_string(),
            known: vnfs::NAMES.join(", "),
        });
    }
    let text = std::fs::read_to_string(p).map_err(error::io(p))?;
    let bad = |reason: String| Error::ModelFile {
        path: p.to_path_buf(),
        reason,
    };
    if name.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
    } else {
        serde_norway::from_str(&text).map_err(|e| bad(e.to_string()))
    }
}

/// Output format of [`build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SOL004 CSAR with a SOL001 VNFD (ONAP).
    Csar,
    /// OSM SOL006 VNF and NS packages.
    Osm,
}

/// Options of [`build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output format.
    pub format: Format,
    /// Only this flavour (default: all flavours of the model).
    pub flavour: Option<String>,
    /// The image file (default: [`default_image`]).
    pub image: Option<PathBuf>,
    /// Output: the `.csar` file, or the OSM output folder.
    pub out: PathBuf,
    /// Replace an existing output.
    pub force: bool,
    /// Sign the CSAR manifest (CSAR only).
    pub sign: Option<csar::Signing>,
}

/// Check the model, measure the image and write the package.
pub fn build(m: &model::VnfModel, opts: &BuildOptions) -> Result<()> {
    let m = match &opts.flavour {
        Some(f) => m
            .with_only_flavour(f)
            .ok_or_else(|| Error::UnknownFlavour {
                vnf: m.name.clone(),
                flavour: f.clone(),
                known: m
                    .flavours
                    .iter()
                    .map(|f| f.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        None => m.clone(),
    };
    rules::check(&m)?;
    let image_path = match &opts.image {
        Some(p) => p.clone(),
        None => {
            let d = default_image(&m);
            if !d.is_file() {
                build_image(&m, &d)?;
            }
            d
        }
    };
    let image = image::inspect(&image_path, &m.image)?;
    match opts.format {
        Format::Csar => csar::write(&m, &image, &opts.out, opts.force, opts.sign.as_ref()),
        Format::Osm => osm::write(&m, &image, &opts.out, opts.force),
    }
}
