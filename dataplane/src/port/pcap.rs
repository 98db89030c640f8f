//! pcap file port (std): receives the frames of a pcap file, and/or writes every
//! transmitted frame to a nanosecond-resolution pcap file (the `pcap-file` crate does
//! the format: libpcap's classic file format with magic 0xa1b23c4d).
//!
//! Input frames larger than a buffer's data room ([`DATA_ROOM`], 2048 bytes) cannot
//! be received: they are skipped and counted as receive drops (`rx_dropped`, and
//! [`PcapPort::rx_oversize`]), never lost silently. Two ports must not share a file
//! (two writers interleave and lose records; a writer truncates a reader's input):
//! [`shared_file`] finds such a configuration before any port is opened.

use super::{Port, PortStats};
use crate::batch::Batch;
use crate::buf::{PoolCache, DATA_ROOM};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use std::fs::File;
use std::io::Write;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
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
    /// Frames of the input file that were skipped (too large, or a read error); each
    /// is also counted in the port's `rx_dropped`.
    pub rx_skipped: u64,
    /// Input frames skipped because they exceed [`DATA_ROOM`] bytes.
    pub rx_oversize: u64,
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
            rx_oversize: 0,
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
                    self.stats.rx_dropped += 1;
                    self.reader = None;
                    break;
                }
                Some(Ok(p)) => {
                    if p.data.len() > DATA_ROOM {
                        self.rx_skipped += 1;
                        self.rx_oversize += 1;
                        self.stats.rx_dropped += 1;
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

/// Two ports of one configuration that would share a file (see [`shared_file`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileClash {
    /// The file, canonicalised.
    pub path: PathBuf,
    /// Index of the port that uses it first, and whether that port reads it.
    pub first: usize,
    pub first_reads: bool,
    /// Index of the port that would write it too.
    pub second: usize,
}

impl core::fmt::Display for FileClash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "pcap output {} is also the {} of port {}",
            self.path.display(),
            if self.first_reads { "input" } else { "output" },
            self.first
        )
    }
}

/// `p` canonicalised; a file that does not exist yet is its canonical directory
/// joined with its name (and a path whose directory does not exist either is kept
/// as given: opening it will fail with its own error).
fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (dir.canonicalize(), p.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => p.to_path_buf(),
    }
}

/// Finds two pcap ports that would share a file: one writing a file another port
/// (or the same one) reads, or two writing the same file. `ports[i]` is port `i`'s
/// (input, output). Paths are compared canonicalised, so `./a.pcap`, `a.pcap` and
/// a symlink to it are the same file. Reading one file from two ports is fine.
pub fn shared_file(ports: &[(Option<&Path>, Option<&Path>)]) -> Option<FileClash> {
    let canon: std::vec::Vec<(Option<PathBuf>, Option<PathBuf>)> = ports
        .iter()
        .map(|(r, t)| (r.map(canonical), t.map(canonical)))
        .collect();
    for (second, (_, tx)) in canon.iter().enumerate() {
        let Some(tx) = tx else { continue };
        for (first, (r, t)) in canon.iter().enumerate() {
            if r.as_ref() == Some(tx) {
                return Some(FileClash {
                    path: tx.clone(),
                    first,
                    first_reads: true,
                    second,
                });
            }
            if first < second && t.as_ref() == Some(tx) {
                return Some(FileClash {
                    path: tx.clone(),
                    first,
                    first_reads: false,
                    second,
                });
            }
        }
    }
    None
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
    fn oversize_input_frames_are_counted_not_lost() {
        let dir = std::env::temp_dir().join(format!("dp-pcap-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.pcap");
        {
            // written with pcap-file directly: our own port cannot hold such frames
            let f = File::create(&path).unwrap();
            let mut w = PcapWriter::new(f).unwrap();
            for len in [60usize, DATA_ROOM + 1, 9000, DATA_ROOM, 64] {
                let data = std::vec![0xabu8; len];
                w.write_packet(&PcapPacket::new(Duration::ZERO, len as u32, &data))
                    .unwrap();
            }
        }
        let pool = Pool::new(64).unwrap();
        let mut c = pool.cache();
        let mut r = PcapPort::open(Some(&path), None).unwrap();
        let mut b = Batch::new();
        assert_eq!(r.rx_burst(&mut c, &mut b), 3);
        let lens: std::vec::Vec<usize> = b.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [60, DATA_ROOM, 64]);
        let st = r.stats();
        assert_eq!((st.rx_packets, st.rx_dropped), (3, 2), "{st:?}");
        assert_eq!(r.rx_oversize, 2);
        b.free_all(&mut c);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ports_sharing_a_file_are_found_through_any_spelling() {
        let dir = std::env::temp_dir().join(format!("dp-pcap-share-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let a = dir.join("a.pcap");
        let a2 = dir.join("sub/../a.pcap");
        let b = dir.join("b.pcap");
        let inp = dir.join("in.pcap");
        std::fs::write(&inp, b"").unwrap();
        let inp2 = dir.join("./in.pcap");
        // two outputs, spelled differently, one not existing yet
        let s = shared_file(&[(None, Some(&a)), (None, Some(&b)), (None, Some(&a2))]).unwrap();
        assert_eq!((s.first, s.second, s.first_reads), (0, 2, false));
        assert_eq!(s.path, dir.canonicalize().unwrap().join("a.pcap"));
        assert!(s.to_string().contains("also the output of port 0"), "{s}");
        // an output overwriting another port's input, or its own
        let s = shared_file(&[(Some(&inp), None), (None, Some(&inp2))]).unwrap();
        assert_eq!((s.first, s.second, s.first_reads), (0, 1, true));
        let s = shared_file(&[(Some(&inp), Some(&inp2))]).unwrap();
        assert_eq!((s.first, s.second, s.first_reads), (0, 0, true));
        // distinct files, and one input read by two ports, are fine
        assert_eq!(
            shared_file(&[(Some(&inp), Some(&a)), (Some(&inp), Some(&b))]),
            None
        );
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
