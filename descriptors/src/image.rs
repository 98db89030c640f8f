//! The software image artifact: size, SHA-256 checksum and qcow2 header checks.
//!
//! SOL001 `tosca.datatypes.nfv.SwImageData` and SOL006 `sw-image-desc` require the
//! image `checksum` (algorithm + hash), `size` and `min-disk`; this module measures
//! them from the file. For `disk_format: qcow2` the file must carry the qcow2 magic
//! (`QFI\xfb`, QEMU docs/interop/qcow2.txt) and its virtual disk size must fit in
//! `image.min_disk_gib`.

use crate::error::{model, Error, Result};
use crate::model::{DiskFormat, SwImage};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What the renderers need to know about the image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Source path.
    pub path: PathBuf,
    /// File name inside the package (`Files/images/<file_name>`):
    /// `<image name>-<version>.<disk format>`, whatever the source file is called.
    pub file_name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Virtual disk size (qcow2 header), or the file size for raw images.
    pub virtual_size: u64,
}

const GIB: u64 = 1 << 30;

/// Read and check the image at `path` against the model's image description.
pub fn inspect(path: &Path, img: &SwImage) -> Result<ImageInfo> {
    let bad = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let file_name = format!("{}-{}.{}", img.name, img.version, img.disk_format.as_str());
    let mut f = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(32);
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| bad(format!("read failed: {e}")))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        if head.len() < 32 {
            let take = (32 - head.len()).min(n);
            head.extend_from_slice(chunk.get(..take).unwrap_or_default());
        }
        hasher.update(chunk);
        size += n as u64;
    }
    if size == 0 {
        return Err(bad("image is empty".into()));
    }
    let virtual_size = match img.disk_format {
        DiskFormat::Qcow2 => qcow2_virtual_size(&head).ok_or_else(|| {
            bad(
                "image.disk_format is qcow2 but the file has no qcow2 header (magic QFI\\xfb)"
                    .into(),
            )
        })?,
        DiskFormat::Raw => size,
    };
    if virtual_size > img.min_disk_gib.saturating_mul(GIB) {
        return Err(model(
            "image.min_disk_gib",
            format!(
                "{} GiB is smaller than the image's virtual disk size ({virtual_size} bytes) of {}",
                img.min_disk_gib,
                path.display()
            ),
        ));
    }
    Ok(ImageInfo {
        path: path.to_path_buf(),
        file_name,
        size,
        sha256: hex(&hasher.finalize()),
        virtual_size,
    })
}

/// Virtual size from a qcow2 header: magic at 0..4, version at 4..8, size at 24..32.
fn qcow2_virtual_size(head: &[u8]) -> Option<u64> {
    if head.get(0..4)? != b"QFI\xfb" {
        return None;
    }
    let version = u32::from_be_bytes(head.get(4..8)?.try_into().ok()?);
    if !(2..=3).contains(&version) {
        return None;
    }
    Some(u64::from_be_bytes(head.get(24..32)?.try_into().ok()?))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of a byte slice, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcow2_header() {
        let mut h = b"QFI\xfb\0\0\0\x03".to_vec();
        h.extend_from_slice(&[0; 16]);
        h.extend_from_slice(&(5u64 << 20).to_be_bytes());
        assert_eq!(qcow2_virtual_size(&h), Some(5 << 20));
        assert_eq!(qcow2_virtual_size(b"QFI\xfb\0\0"), None);
        assert_eq!(qcow2_virtual_size(&[0u8; 32]), None);
    }

    #[test]
    fn sha256_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
