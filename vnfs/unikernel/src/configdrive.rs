//! Day-0 configuration from a config drive: a virtio-blk disk (virtio 1.2 §5.2,
//! read-only use) holding an ISO 9660 volume labelled `config-2` (OpenStack config
//! drive: `openstack/latest/user_data`) or `cidata` (cloud-init NoCloud: `user-data`),
//! as OpenStack and OSM attach it to a VM. The user data is the VNF's TOML itself
//! (not `#cloud-config` YAML). See `iso9660` for the reader.

use crate::iso9660::{self, DriveKind, Sectors, SECTOR};
use crate::virtio::{self, IdentityHal};
use alloc::string::String;
use alloc::vec::Vec;
use virtio_drivers::device::blk::{VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::{DeviceType, SomeTransport};

/// Bounce buffer size: reads go through an identity-mapped buffer of this size.
const BOUNCE: usize = 64 * 1024;

struct Blk {
    dev: VirtIOBlk<IdentityHal, SomeTransport<'static>>,
    bounce: Vec<u8>,
    /// Capacity in ISO sectors.
    sectors: u64,
}

impl Sectors for Blk {
    fn read(&mut self, lba: u32, buf: &mut [u8]) -> bool {
        let per = SECTOR / SECTOR_SIZE;
        let mut lba = u64::from(lba);
        for chunk in buf.chunks_mut(BOUNCE) {
            let n = chunk.len().div_ceil(SECTOR);
            if lba + n as u64 > self.sectors {
                return false;
            }
            let Some(b) = self.bounce.get_mut(..n * SECTOR) else {
                return false;
            };
            if self.dev.read_blocks(lba as usize * per, b).is_err() {
                return false;
            }
            chunk.copy_from_slice(&b[..chunk.len()]);
            // The drive stays open for the guest's life: its bounce buffer must not
            // keep the user data's secrets (PSKs, RADIUS and ESP keys) after a read.
            zeroize::Zeroize::zeroize(b);
            lba += n as u64;
        }
        true
    }
}

/// The config drive the configuration came from, kept open for the files the
/// configuration names (`route_file.path`, `user_file`).
// Side files (route/user tables) are read by the router and vBNG apps only (not
// the vCPE, the vBNG user plane or the key server: no AAA, no route file).
#[cfg_attr(any(feature = "vcpe", feature = "vbng-up", feature = "keyserver"), allow(dead_code))]
struct Open {
    blk: Blk,
    volume: iso9660::Volume,
    loc: String,
}

// SAFETY: the unikernel runs on one CPU without threads; the device is only ever
// touched from the boot path through the lock below.
unsafe impl Send for Open {}

static DRIVE: spinning_top::Spinlock<Option<Open>> = spinning_top::Spinlock::new(None);

/// The user data of the first virtio-blk disk that is a config drive: `None` when
/// there is none; an error (one line) when one is there but unreadable. The drive
/// stays open for [`file`].
pub fn read() -> Option<Result<(DriveKind, Vec<u8>), String>> {
    for f in virtio::discover_kind(DeviceType::Block) {
        let loc = f.location.clone();
        let dev = match VirtIOBlk::<IdentityHal, _>::new(f.transport) {
            Ok(d) => d,
            Err(e) => {
                log::warn!("virtio-blk at {loc}: {e}; skipped");
                continue;
            }
        };
        let sectors = dev.capacity() * SECTOR_SIZE as u64 / SECTOR as u64;
        // Device-visible: the bounce buffer must be identity-mapped memory.
        let bounce = crate::sparse::dma_safe(|| alloc::vec![0u8; BOUNCE]);
        let mut blk = Blk { dev, bounce, sectors };
        let found = iso9660::config_volume(&mut blk).and_then(|r| match r {
            Some((kind, v)) => iso9660::read_file(&mut blk, &v, kind.path()).map(|d| Some((kind, v, d))),
            None => Ok(None),
        });
        match found {
            Ok(Some((kind, volume, data))) => {
                log::info!(
                    "config drive: virtio-blk at {loc}, {} volume, {} ({} bytes)",
                    kind.label(),
                    kind.path(),
                    data.len()
                );
                *DRIVE.lock() = Some(Open { blk, volume, loc });
                return Some(Ok((kind, data)));
            }
            Ok(None) => log::info!("virtio-blk at {loc}: ISO 9660 but not config-2 or cidata; skipped"),
            Err(iso9660::IsoError::NotIso) => log::info!("virtio-blk at {loc}: not ISO 9660; skipped"),
            Err(e) => {
                return Some(Err(alloc::format!("config drive at {loc}: {e}")));
            }
        }
    }
    None
}

/// A file the configuration names (`route_file.path`, `user_file`), from the config
/// drive the configuration came from: `path` relative to the volume's root (a
/// leading `/` ignored), as the host put it there (`testbed image run --config-drive`
/// copies the file the TOML names to the same path on the drive). `None` when the
/// configuration did not come from a config drive; an error (one line) when it did
/// but the file is not there or unreadable.
// Side files (route/user tables) are read by the router and vBNG apps only (not
// the vCPE, the vBNG user plane or the key server: no AAA, no route file).
#[cfg_attr(any(feature = "vcpe", feature = "vbng-up", feature = "keyserver"), allow(dead_code))]
pub fn file(path: &str) -> Option<Result<Vec<u8>, String>> {
    let mut g = DRIVE.lock();
    let d = g.as_mut()?;
    let t0 = crate::clock::now_ns();
    Some(match iso9660::read_file(&mut d.blk, &d.volume, path) {
        Ok(data) => {
            log::info!(
                "config drive: {path} ({} bytes in {} ms)",
                data.len(),
                (crate::clock::now_ns() - t0) / 1_000_000
            );
            Ok(data)
        }
        Err(e) => Err(alloc::format!("config drive at {}: {path}: {e}", d.loc)),
    })
}

/// The text of a file the configuration names (`key` = `path`): from the config
/// drive when the configuration came from one and the file is there, else from
/// fw_cfg file `fwcfg`; a one-line error when neither has it.
// Side files (route/user tables) are read by the router and vBNG apps only (not
// the vCPE, the vBNG user plane or the key server: no AAA, no route file).
#[cfg_attr(any(feature = "vcpe", feature = "vbng-up", feature = "keyserver"), allow(dead_code))]
pub fn side_file(key: &str, path: &str, fwcfg: &str) -> Result<String, String> {
    let bytes = match file(path) {
        Some(Ok(b)) => b,
        drive => match crate::fwcfg::read_file(fwcfg) {
            Some(b) => {
                log::info!("config: {key} from fw_cfg {fwcfg} ({} bytes)", b.len());
                b
            }
            None => {
                return Err(match drive {
                    Some(Err(e)) => alloc::format!("{key}: {e}, and no fw_cfg {fwcfg}"),
                    _ => alloc::format!(
                        "{key} = {path:?}: put the file on the config drive at that path or pass it as fw_cfg {fwcfg}"
                    ),
                })
            }
        },
    };
    String::from_utf8(bytes).map_err(|_| alloc::format!("{key} = {path:?}: the file is not UTF-8"))
}
