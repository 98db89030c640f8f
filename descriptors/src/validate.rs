//! `descriptors validate PATH`: the checks the tests run.
//!
//! For a CSAR, first our own SOL004 structure and manifest-digest check
//! ([`crate::csar::verify`]); then, for every package, the independent validators
//! through `validate/validate.py` in the Python venv (`$VNF_VENV`, default
//! `<workspace root>/.venv`): tosca-parser on the CSAR, yanglint (after RFC 7951
//! conversion with pyang) on OSM VNFD/NSD packages.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The validator script shipped with the crate.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("validate")
        .join("validate.py")
}

/// The venv python: `$VNF_VENV/bin/python`, default `<workspace root>/.venv/bin/python`.
pub fn venv_python() -> Result<PathBuf> {
    let venv = std::env::var_os("VNF_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join(".venv"));
    let py = venv.join("bin").join("python");
    if !py.is_file() {
        return Err(Error::ToolMissing(format!(
            "no python venv at {} (create it: python3 -m venv {v} && {v}/bin/pip install tosca-parser pyang; or set VNF_VENV)",
            venv.display(),
            v = venv.display()
        )));
    }
    Ok(py)
}

/// Validate the package(s) at `path`; returns the report, or [`Error::Invalid`].
pub fn validate(path: &Path) -> Result<String> {
    if !path.exists() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such package"),
        });
    }
    let mut report = String::new();
    let mut csars = Vec::new();
    find_csars(path, &mut csars);
    for c in &csars {
        let problems = crate::csar::verify(c)?;
        if !problems.is_empty() {
            return Err(Error::Invalid {
                path: c.clone(),
                report: problems.join("\n"),
            });
        }
        report.push_str(&format!(
            "OK   {} [SOL004 structure and SHA-256 digests (descriptors)]\n",
            c.display()
        ));
    }
    let py = venv_python()?;
    let reference = crate::reference_dir()?;
    let out = Command::new(&py)
        .arg(script())
        .arg("--reference")
        .arg(&reference)
        .arg(path)
        .output()
        .map_err(crate::error::io(&py))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            report.push_str(&text);
            Ok(report)
        }
        Some(2) => Err(Error::ToolMissing(text.trim().to_string())),
        _ => Err(Error::Invalid {
            path: path.to_path_buf(),
            report: text,
        }),
    }
}

/// `.csar` files at `path` (a file) or under it (a folder, recursively; hidden
/// entries skipped).
fn find_csars(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "csar") {
            out.push(path.to_path_buf());
        }
        return;
    }
    let Ok(rd) = std::fs::read_dir(path) else {
        return;
    };
    let mut kids: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    kids.sort();
    for k in kids {
        let hidden = k
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if !hidden {
            find_csars(&k, out);
        }
    }
}
