//! A small read-only ISO 9660 reader (ECMA-119 4th ed.) for day-0 config drives:
//! the volume descriptor set from sector 16 (§8: primary, type 1; supplementary,
//! type 2, taken as Joliet when its escape sequences name UCS-2 level 1-3), directory
//! records (§9.1) walked from the root, file names from Joliet (UCS-2 big-endian),
//! else from Rock Ridge `NM` entries (RRIP 1.12 §4.1.4, in the SUSP system use area,
//! IEEE P1281 §5), else the ISO name without its `;1` version, compared
//! case-insensitively. Single-extent files only (no multi-extent, no interleaving).
//!
//! OpenStack's config drive is a volume labelled `config-2` with the user data in
//! `openstack/latest/user_data`; cloud-init's NoCloud seed is labelled `cidata` with
//! `user-data` at the root. [`user_data`] finds either.
//!
//! Every offset and length read from the image is checked: a malformed image is an
//! error, never a panic (the fuzz target `iso9660` of `vnfs/unikernel/fuzz` feeds it
//! arbitrary bytes).

use alloc::string::String;
use alloc::vec::Vec;

/// Logical sector size (§6.1.2; the only size this reader accepts).
pub const SECTOR: usize = 2048;
/// Largest directory read.
const MAX_DIR: u32 = 1 << 20;
/// Largest file read.
pub const MAX_FILE: u32 = 64 << 20;
/// Volume descriptors looked at, at most.
const MAX_DESCRIPTORS: u32 = 32;
/// Path components, at most.
const MAX_DEPTH: usize = 8;

/// Why a volume or file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsoError {
    /// The device could not be read at this sector.
    Io(u32),
    /// No primary volume descriptor ("CD001") from sector 16.
    NotIso,
    /// A structure is inconsistent.
    Malformed(&'static str),
    /// The path does not exist (or names a directory).
    NotFound,
    /// The file is larger than the reader takes.
    TooLarge(u32),
}

impl core::fmt::Display for IsoError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::Io(s) => write!(f, "read error at sector {s}"),
            Self::NotIso => write!(f, "not an ISO 9660 volume"),
            Self::Malformed(w) => write!(f, "malformed ISO 9660 volume: {w}"),
            Self::NotFound => write!(f, "no such file"),
            Self::TooLarge(n) => write!(f, "file of {n} bytes is too large"),
        }
    }
}

/// Reads whole sectors: `read(lba, buf)` fills `buf` (a multiple of [`SECTOR`]) from
/// sector `lba` on; `false` on a device error.
pub trait Sectors {
    fn read(&mut self, lba: u32, buf: &mut [u8]) -> bool;
}

/// An image in memory (tests, fuzzing).
impl Sectors for &[u8] {
    fn read(&mut self, lba: u32, buf: &mut [u8]) -> bool {
        let start = lba as usize * SECTOR;
        match start.checked_add(buf.len()).and_then(|end| self.get(start..end)) {
            Some(s) => {
                buf.copy_from_slice(s);
                true
            }
            None => false,
        }
    }
}

/// An extent: first sector and length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    lba: u32,
    len: u32,
}

/// An open volume.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Volume identifier of the primary descriptor (trailing spaces removed).
    pub label: String,
    root: Extent,
    joliet: bool,
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn sectors_for(len: u32) -> usize {
    (len as usize).div_ceil(SECTOR).max(1)
}

fn read_extent(dev: &mut impl Sectors, e: Extent) -> Result<Vec<u8>, IsoError> {
    // Not `vec![0; n]`: a zeroed allocation of a megabyte or more would land in the
    // unikernel's demand-zero window, which is never given back; a route file read
    // here is freed once the tables are built.
    let n = sectors_for(e.len) * SECTOR;
    let mut buf = Vec::new();
    buf.try_reserve_exact(n).map_err(|_| IsoError::TooLarge(e.len))?;
    buf.resize(n, 0);
    if !dev.read(e.lba, &mut buf) {
        return Err(IsoError::Io(e.lba));
    }
    buf.truncate(e.len as usize);
    Ok(buf)
}

/// The root directory record of a volume descriptor (§8.4.18: 34 bytes at 156).
fn root_of(d: &[u8]) -> Result<Extent, IsoError> {
    let r = d.get(156..190).ok_or(IsoError::Malformed("short volume descriptor"))?;
    let e = Extent {
        lba: le32(r, 2).ok_or(IsoError::Malformed("root record"))?,
        len: le32(r, 10).ok_or(IsoError::Malformed("root record"))?,
    };
    if r[0] < 34 || r[25] & 2 == 0 || e.len == 0 || e.len > MAX_DIR {
        return Err(IsoError::Malformed("root directory record"));
    }
    Ok(e)
}

/// Open the volume on `dev`: its label and root (Joliet's when present).
pub fn open(dev: &mut impl Sectors) -> Result<Volume, IsoError> {
    let mut pvd: Option<(String, Extent)> = None;
    let mut joliet: Option<Extent> = None;
    let mut d = [0u8; SECTOR];
    for lba in 16..16 + MAX_DESCRIPTORS {
        if !dev.read(lba, &mut d) {
            break;
        }
        if &d[1..6] != b"CD001" {
            break;
        }
        match d[0] {
            1 if pvd.is_none() => {
                let id = &d[40..72];
                let label: String = id
                    .iter()
                    .map(|&c| {
                        if c.is_ascii_graphic() || c == b' ' {
                            c as char
                        } else {
                            '?'
                        }
                    })
                    .collect();
                pvd = Some((String::from(label.trim_end()), root_of(&d)?));
            }
            // Joliet: escape sequences %/@, %/C or %/E (UCS-2 levels 1-3) at 88.
            2 if joliet.is_none() && d[88] == b'%' && d[89] == b'/' && matches!(d[90], b'@' | b'C' | b'E') => {
                joliet = root_of(&d).ok();
            }
            255 => break,
            _ => {}
        }
    }
    let (label, root) = pvd.ok_or(IsoError::NotIso)?;
    Ok(match joliet {
        Some(j) => Volume {
            label,
            root: j,
            joliet: true,
        },
        None => Volume {
            label,
            root,
            joliet: false,
        },
    })
}

/// A directory record's name as this reader compares it.
fn record_name(r: &[u8], joliet: bool) -> Option<String> {
    let nlen = usize::from(*r.get(32)?);
    let raw = r.get(33..33 + nlen)?;
    if nlen == 1 && (raw[0] == 0 || raw[0] == 1) {
        return None; // "." and ".."
    }
    if joliet {
        let units = raw.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        let s: String = char::decode_utf16(units).map(|c| c.unwrap_or('?')).collect();
        return Some(String::from(s.split(';').next().unwrap_or("")));
    }
    // Rock Ridge NM in the system use area (after the name, padded to even).
    let su = 33 + nlen + (1 - nlen % 2);
    let len = usize::from(r[0]);
    let mut nm = String::new();
    let mut found = false;
    let mut at = su;
    while at + 4 <= len {
        let e = r.get(at..len)?;
        let elen = usize::from(e[2]);
        if elen < 4 || elen > e.len() {
            break;
        }
        if &e[..2] == b"NM" && elen >= 5 {
            let flags = e[4];
            // flags: 1 continue, 2 current, 4 parent.
            if flags & 6 == 0 {
                nm.extend(e[5..elen].iter().map(|&c| if c.is_ascii() { c as char } else { '?' }));
                found = true;
            }
        }
        at += elen;
    }
    if found && !nm.is_empty() {
        return Some(nm);
    }
    let s: String = raw
        .iter()
        .map(|&c| if c.is_ascii() { c as char } else { '?' })
        .collect();
    let s = s.split(';').next().unwrap_or("");
    Some(String::from(s.strip_suffix('.').unwrap_or(s)))
}

/// Find `name` in the directory at `dir`: (extent, is a directory).
fn lookup(dev: &mut impl Sectors, v: &Volume, dir: Extent, name: &str) -> Result<(Extent, bool), IsoError> {
    if dir.len > MAX_DIR {
        return Err(IsoError::Malformed("directory too large"));
    }
    let data = read_extent(dev, dir)?;
    let mut at = 0usize;
    while at < data.len() {
        let len = usize::from(data[at]);
        if len == 0 {
            // Records never cross a sector: the rest of this sector is padding.
            at = (at / SECTOR + 1) * SECTOR;
            continue;
        }
        let r = data
            .get(at..at + len)
            .ok_or(IsoError::Malformed("directory record past the extent"))?;
        if len < 34 {
            return Err(IsoError::Malformed("short directory record"));
        }
        if let Some(n) = record_name(r, v.joliet) {
            if n.eq_ignore_ascii_case(name) {
                let e = Extent {
                    lba: le32(r, 2).ok_or(IsoError::Malformed("record extent"))?,
                    len: le32(r, 10).ok_or(IsoError::Malformed("record length"))?,
                };
                // flags: 2 directory, 0x80 multi-extent.
                if r[25] & 0x80 != 0 {
                    return Err(IsoError::Malformed("multi-extent file"));
                }
                return Ok((e, r[25] & 2 != 0));
            }
        }
        at += len;
    }
    Err(IsoError::NotFound)
}

/// The contents of the file at `path` (`/`-separated, case-insensitive).
pub fn read_file(dev: &mut impl Sectors, v: &Volume, path: &str) -> Result<Vec<u8>, IsoError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.len() > MAX_DEPTH {
        return Err(IsoError::NotFound);
    }
    let mut cur = v.root;
    for (i, p) in parts.iter().enumerate() {
        let (e, is_dir) = lookup(dev, v, cur, p)?;
        let last = i + 1 == parts.len();
        if last {
            if is_dir {
                return Err(IsoError::NotFound);
            }
            if e.len > MAX_FILE {
                return Err(IsoError::TooLarge(e.len));
            }
            if e.len == 0 {
                return Ok(Vec::new());
            }
            return read_extent(dev, e);
        }
        if !is_dir {
            return Err(IsoError::NotFound);
        }
        cur = e;
    }
    Err(IsoError::NotFound)
}

/// Which kind of config drive a volume is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveKind {
    /// OpenStack config drive (`config-2`).
    ConfigDrive,
    /// cloud-init NoCloud seed (`cidata`).
    NoCloud,
}

impl DriveKind {
    /// The volume label this kind has (`config-2`, `cidata`).
    pub fn label(self) -> &'static str {
        match self {
            Self::ConfigDrive => "config-2",
            Self::NoCloud => "cidata",
        }
    }
    /// Where the user data is.
    pub fn path(self) -> &'static str {
        match self {
            Self::ConfigDrive => "openstack/latest/user_data",
            Self::NoCloud => "user-data",
        }
    }
}

/// The user data of a config drive on `dev`: `Ok(None)` when the volume is ISO 9660
/// but neither `config-2` nor `cidata`.
// The kernel goes through `config_volume` (it keeps the volume open for the side
// files); the host tests (`testbed/tests/iso9660_xorriso.rs`) and the fuzz target use this.
#[allow(dead_code)]
pub fn user_data(dev: &mut impl Sectors) -> Result<Option<(DriveKind, Vec<u8>)>, IsoError> {
    let Some((kind, v)) = config_volume(dev)? else {
        return Ok(None);
    };
    Ok(Some((kind, read_file(dev, &v, kind.path())?)))
}

/// The volume on `dev` when it is a config drive (`config-2` or `cidata`), kept
/// open for the files the configuration names (a route file, a user file).
pub fn config_volume(dev: &mut impl Sectors) -> Result<Option<(DriveKind, Volume)>, IsoError> {
    let v = open(dev)?;
    let kind = if v.label.eq_ignore_ascii_case("config-2") {
        DriveKind::ConfigDrive
    } else if v.label.eq_ignore_ascii_case("cidata") {
        DriveKind::NoCloud
    } else {
        return Ok(None);
    };
    Ok(Some((kind, v)))
}
