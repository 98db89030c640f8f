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
            lba += n as u64;
        }
        true
    }
}

/// The user data of the first virtio-blk disk that is a config drive: `None` when
/// there is none; an error (one line) when one is there but unreadable.
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
        match iso9660::user_data(&mut blk) {
            Ok(Some((kind, data))) => {
                log::info!(
                    "config drive: virtio-blk at {loc}, {} volume, {} ({} bytes)",
                    kind.label(),
                    kind.path(),
                    data.len()
                );
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
