//! Package assembly and all-or-nothing output.
//!
//! A package is an ordered list of entries (path inside the package, content). It is
//! written as a zip (SOL004 CSAR), a folder, or a gzip'd tar (OSM). Output is written
//! to a temporary sibling of the destination and renamed into place only when complete,
//! so a failure never leaves a half-written package behind.

use crate::error::{io, Error, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Content of a package entry.
#[derive(Debug, Clone)]
pub enum Content {
    /// In-memory bytes.
    Bytes(Vec<u8>),
    /// A file copied in (the software image).
    File(PathBuf),
}

/// One file of a package.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the package, `/`-separated.
    pub path: String,
    /// Content.
    pub content: Content,
    /// Unix mode bits.
    pub mode: u32,
    /// SHA-256 already known (the image, hashed once when inspected).
    pub known_sha256: Option<String>,
}

impl Entry {
    /// A text or binary file with mode 0644.
    pub fn bytes(path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Entry {
            path: path.into(),
            content: Content::Bytes(data.into()),
            mode: 0o644,
            known_sha256: None,
        }
    }

    /// An executable script with mode 0755.
    pub fn script(path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Entry {
            mode: 0o755,
            ..Entry::bytes(path, data)
        }
    }

    /// A file copied from disk.
    pub fn file(path: impl Into<String>, src: &Path) -> Self {
        Entry {
            path: path.into(),
            content: Content::File(src.to_path_buf()),
            mode: 0o644,
            known_sha256: None,
        }
    }

    /// A file copied from disk whose SHA-256 is already known.
    pub fn file_with_sha256(path: impl Into<String>, src: &Path, sha256: &str) -> Self {
        Entry {
            known_sha256: Some(sha256.to_string()),
            ..Entry::file(path, src)
        }
    }

    /// Feed the content to `f` in chunks.
    fn each_chunk(&self, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        match &self.content {
            Content::Bytes(b) => f(b),
            Content::File(p) => {
                let mut file = File::open(p).map_err(io(p))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = file.read(&mut buf).map_err(io(p))?;
                    if n == 0 {
                        return Ok(());
                    }
                    f(buf.get(..n).unwrap_or_default())?;
                }
            }
        }
    }

    /// SHA-256 of the content, lowercase hex.
    pub fn sha256(&self) -> Result<String> {
        if let Some(s) = &self.known_sha256 {
            return Ok(s.clone());
        }
        let mut h = Sha256::new();
        self.each_chunk(|c| {
            h.update(c);
            Ok(())
        })?;
        Ok(crate::image::hex(&h.finalize()))
    }

    /// Size in bytes.
    pub fn len(&self) -> Result<u64> {
        match &self.content {
            Content::Bytes(b) => Ok(b.len() as u64),
            Content::File(p) => Ok(std::fs::metadata(p).map_err(io(p))?.len()),
        }
    }

    /// True when the content is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// Write `entries` as a zip archive to `w`. Directory entries are emitted for each
/// parent folder before its first file, in entry order.
pub fn write_zip(out: &Path, entries: &[Entry], w: File) -> Result<()> {
    use zip::write::SimpleFileOptions;
    let zerr = |source| Error::Zip {
        path: out.to_path_buf(),
        source,
    };
    let mut z = zip::ZipWriter::new(w);
    let mut dirs: Vec<String> = Vec::new();
    for e in entries {
        let mut prefix = String::new();
        let parts: Vec<&str> = e.path.split('/').collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            prefix.push_str(part);
            prefix.push('/');
            if !dirs.contains(&prefix) {
                z.add_directory(
                    prefix.as_str(),
                    SimpleFileOptions::default().unix_permissions(0o755),
                )
                .map_err(zerr)?;
                dirs.push(prefix.clone());
            }
        }
        // Large binaries (images) are stored; everything else deflated.
        let method = match e.content {
            Content::File(_) => zip::CompressionMethod::Stored,
            Content::Bytes(_) => zip::CompressionMethod::Deflated,
        };
        let opts = SimpleFileOptions::default()
            .compression_method(method)
            .unix_permissions(e.mode)
            .large_file(e.len()? >= u64::from(u32::MAX));
        z.start_file(e.path.as_str(), opts).map_err(zerr)?;
        e.each_chunk(|c| z.write_all(c).map_err(io(out)))?;
    }
    let f = z.finish().map_err(zerr)?;
    f.sync_all().map_err(io(out))?;
    Ok(())
}

/// Write `entries` under the folder `dir`.
pub fn write_dir(dir: &Path, entries: &[Entry]) -> Result<()> {
    for e in entries {
        let p = dir.join(&e.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut f = File::create(&p).map_err(io(&p))?;
        e.each_chunk(|c| f.write_all(c).map_err(io(&p)))?;
        set_mode(&p, e.mode)?;
    }
    Ok(())
}

/// Write `entries` as a gzip'd tar with every path under `top/`.
pub fn write_tar_gz(out: &Path, top: &str, entries: &[Entry], w: File) -> Result<()> {
    let gz = flate2::write::GzEncoder::new(w, flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    let mut dirs: Vec<String> = Vec::new();
    let mut dir_entry = |t: &mut tar::Builder<_>, d: &str| -> Result<()> {
        if dirs.iter().any(|x| x == d) {
            return Ok(());
        }
        dirs.push(d.to_string());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        t.append_data(&mut h, format!("{d}/"), std::io::empty())
            .map_err(io(out))
    };
    dir_entry(&mut t, top)?;
    for e in entries {
        let full = format!("{top}/{}", e.path);
        let parts: Vec<&str> = full.split('/').collect();
        let mut prefix = String::new();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            dir_entry(&mut t, &prefix)?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(e.mode);
        h.set_size(e.len()?);
        h.set_mtime(0);
        match &e.content {
            Content::Bytes(b) => t
                .append_data(&mut h, &full, b.as_slice())
                .map_err(io(out))?,
            Content::File(p) => {
                let f = File::open(p).map_err(io(p))?;
                t.append_data(&mut h, &full, f).map_err(io(out))?
            }
        }
    }
    let gz = t.into_inner().map_err(io(out))?;
    let f = gz.finish().map_err(io(out))?;
    f.sync_all().map_err(io(out))?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p))
}

#[cfg(not(unix))]
fn set_mode(_p: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

/// A temporary sibling path of `out` (same filesystem, so rename is atomic).
fn temp_sibling(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Io {
            path: out.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "output path has no file name",
            ),
        })?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::Io {
            path: parent,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "output folder does not exist",
            ),
        });
    }
    Ok(parent.join(format!(".{name}.partial-{}", std::process::id())))
}

fn refuse_existing(out: &Path, force: bool) -> Result<()> {
    if !force && out.symlink_metadata().is_ok() {
        return Err(Error::Io {
            path: out.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists (use --force to replace it)",
            ),
        });
    }
    Ok(())
}

fn remove_any(p: &Path) {
    if p.is_dir() {
        let _ = std::fs::remove_dir_all(p);
    } else {
        let _ = std::fs::remove_file(p);
    }
}

/// Create the file `out` through `fill`; on error nothing is left at `out`.
pub fn atomic_file(out: &Path, force: bool, fill: impl FnOnce(File) -> Result<()>) -> Result<()> {
    refuse_existing(out, force)?;
    let tmp = temp_sibling(out)?;
    let res = File::create(&tmp).map_err(io(&tmp)).and_then(fill);
    if let Err(e) = res {
        remove_any(&tmp);
        return Err(e);
    }
    if out.is_dir() {
        remove_any(&tmp);
        return Err(Error::Io {
            path: out.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "is a folder"),
        });
    }
    std::fs::rename(&tmp, out).map_err(|e| {
        remove_any(&tmp);
        Error::Io {
            path: out.to_path_buf(),
            source: e,
        }
    })
}

/// Create the folder `out` through `fill`; on error nothing is left at `out`.
pub fn atomic_dir(out: &Path, force: bool, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    refuse_existing(out, force)?;
    let tmp = temp_sibling(out)?;
    remove_any(&tmp);
    let res = std::fs::create_dir(&tmp)
        .map_err(io(&tmp))
        .and_then(|()| fill(&tmp));
    if let Err(e) = res {
        remove_any(&tmp);
        return Err(e);
    }
    if out.symlink_metadata().is_ok() {
        let old = tmp.with_extension("old");
        std::fs::rename(out, &old).map_err(io(out))?;
        remove_any(&old);
    }
    std::fs::rename(&tmp, out).map_err(|e| {
        remove_any(&tmp);
        Error::Io {
            path: out.to_path_buf(),
            source: e,
        }
    })
}
