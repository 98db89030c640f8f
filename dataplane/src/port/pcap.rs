//! pcap file port (std): receives the frames of a pcap file, and/or writes every
//! transmitted frame to a nanosecond-resolution pcap file (the `pcap-file` crate does
//! the format: libpcap's classic file format with magic 0xa1b23c4d).

use super::{Port, PortStats};
use crate::batch::Batch;
use crate::buf::{PoolCache, DATA_ROOM};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use std::fs::File;
use std::io::Write;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::string::{String, ToString};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Errors opening or writing a pcap port.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("pcap {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("pcap {path}: {source}")]
    Format {
        path: String,
        source: pcap_file::PcapError,
    },
}

/// A buffered file shared between the pcap writer and the port (so the port can
/// flush without taking the writer apart).
#[derive(Clone)]
struct SharedFile(Arc<Mutex<BufWriter<File>>>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut f) => f.write(buf),
            Err(_) => Err(std::io::Error::other("pcap writer poisoned")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.lock() {
            Ok(mut f) => f.flush(),
            Err(_) => Err(std::io::Error::other("pcap writer poisoned")),
        }
    }
}

/// A port over pcap files.
pub struct PcapPort {
    name: String,
    reader: Option<PcapReader<BufReader<File>>>,
    writer: Option<PcapWriter<SharedFile>>,
    file: Option<SharedFile>,
    stats: PortStats,
    /// Frames of the input file that were skipped (too large, or a read error).
    pub rx_skipped: u64,
    /// The last write error, if any (frames that failed are counted as tx_dropped).
    pub last_error: Option<String>,
}

impl PcapPort {
    /// A port receiving the frames of `rx` (if given) and writing transmitted frames
    /// to `tx` (if given; the file is created or truncated).
    pub fn open(rx: Option<&Path>, tx: Option<&Path>) -> Result<Self, PcapError> {
        let reader = match rx {
            Some(p) => {
                let f = File::open(p).map_err(|e| PcapError::Io {
                    path: p.display().to_string(),
                    source: e,
                })?;
                Some(
                    PcapReader::new(BufReader::new(f)).map_err(|e| PcapError::Format {
                        path: p.display().to_string(),
                        source: e,
                    })?,
                )
            }
            None => None,
        };
        let mut file = None;
        let writer = match tx {
            Some(p) => {
                let f = File::create(p).map_err(|e| PcapError::Io {
                    path: p.display().to_string(),
                    source: e,
                })?;
                let hdr = PcapHeader {
                    datalink: DataLink::ETHERNET,
                    ts_resolution: TsResolution::NanoSecond,
                    snaplen: 65535,
                    ..PcapHeader::default()
                };
                let shared = SharedFile(Arc::new(Mutex::new(BufWriter::new(f))));
                file = Some(shared.clone());
                Some(
                    PcapWriter::with_header(shared, hdr).map_err(|e| PcapError::Format {
                        path: p.display().to_string(),
                        source: e,
                    })?,
                )
            }
            None => None,
        };
        let name = match (rx, tx) {
            (Some(r), _) => r.display().to_string(),
            (None, Some(t)) => t.display().to_string(),
            (None, None) => "pcap".into(),
        };
        Ok(PcapPort {
            name,
            reader,
            writer,
            file,
            stats: PortStats::default(),
            rx_skipped: 0,
            last_error: None,
        })
    }

    /// True when the input file is exhausted (or there is none).
    pub fn rx_done(&self) -> bool {
        self.reader.is_none()
    }

    /// Flushes the output file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for PcapPort {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl Port for PcapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let mut n = 0;
        while batch.room() > 0 {
            let Some(r) = self.reader.as_mut() else { break };
            match r.next_packet() {
                None => {
                    self.reader = None;
                    break;
                }
                Some(Err(_)) => {
                    // A truncated or corrupt record ends the file.
                    self.rx_skipped += 1;
                    self.reader = None;
                    break;
                }
                Some(Ok(p)) => {
                    if p.data.len() > DATA_ROOM {
                        self.rx_skipped += 1;
                        continue;
                    }
                    let Some(mut pkt) = cache.alloc() else {
                        self.stats.rx_dropped += 1;
                        break;
                    };
                    // length checked above
                    let _ = pkt.copy_from(&p.data);
                    pkt.meta.ts = p.timestamp.as_nanos() as u64;
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += pkt.len() as u64;
                    let _ = batch.push(pkt);
                    n += 1;
                }
            }
        }
        n
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let n = batch.len();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let stats = &mut self.stats;
        let writer = &mut self.writer;
        let last_error = &mut self.last_error;
        batch.take_front(n, |pkt| {
            match writer.as_mut() {
                Some(w) => {
                    let rec = PcapPacket::new(now, pkt.len() as u32, pkt.data());
                    match w.write_packet(&rec) {
                        Ok(_) => {
                            stats.tx_packets += 1;
                            stats.tx_bytes += pkt.len() as u64;
                        }
                        Err(e) => {
                            stats.tx_dropped += 1;
                            *last_error = Some(e.to_string());
                        }
                    }
                }
                None => stats.tx_dropped += 1,
            }
            cache.free(pkt);
        });
        n
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;
    use std::format;

    #[test]
    fn write_then_read_back() {
        let dir = std::env::temp_dir().join(format!("dp-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let pool = Pool::new(64).unwrap();
        let mut c = pool.cache();
        {
            let mut w = PcapPort::open(None, Some(&path)).unwrap();
            let mut b = Batch::new();
            for i in 0..10u8 {
                let mut p = c.alloc().unwrap();
                p.copy_from(&[i; 60]).unwrap();
                b.push(p).unwrap();
            }
            assert_eq!(w.tx_burst(&mut c, &mut b), 10);
            assert_eq!(w.stats().tx_packets, 10);
        }
        let mut r = PcapPort::open(Some(&path), None).unwrap();
        let mut b = Batch::new();
        assert_eq!(r.rx_burst(&mut c, &mut b), 10);
        assert!(r.rx_done());
        for (i, p) in b.iter().enumerate() {
            assert_eq!(p.data(), &[i as u8; 60]);
        }
        b.free_all(&mut c);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_file_is_an_error_not_a_panic() {
        let path = std::env::temp_dir().join(format!("dp-garbage-{}.pcap", std::process::id()));
        std::fs::write(&path, b"not a pcap at all").unwrap();
        assert!(PcapPort::open(Some(&path), None).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
