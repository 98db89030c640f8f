//! pcap replay at a given rate (or at the capture's own timing) and capture of a
//! port's traffic into a pcap file (libpcap format, nanosecond timestamps).

use crate::sig::now_ns;
use dataplane::batch::Batch;
use dataplane::buf::{PoolCache, DATA_ROOM};
use dataplane::port::pcap::PcapPort;
use dataplane::port::Port;
use pcap_file::pcap::PcapReader;
use std::path::Path;
use std::time::Duration;

/// A frame read from a capture, with its capture time.
#[derive(Clone, Debug)]
pub struct Frame {
    pub ts_ns: u64,
    pub data: Vec<u8>,
}

/// Reads every frame of a pcap file (frames larger than a buffer are skipped and
/// counted in the second value).
pub fn load(path: &Path) -> anyhow::Result<(Vec<Frame>, u64)> {
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut r = PcapReader::new(std::io::BufReader::new(f))
        .map_err(|e| anyhow::anyhow!("{}: not a pcap file: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut skipped = 0;
    while let Some(p) = r.next_packet() {
        let p = p.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if p.data.len() > DATA_ROOM {
            skipped += 1;
            continue;
        }
        out.push(Frame {
            ts_ns: p.timestamp.as_nanos() as u64,
            data: p.data.into_owned(),
        });
    }
    Ok((out, skipped))
}

/// How fast to replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Frames per second.
    Pps(f64),
    /// The gaps of the capture, scaled by this factor (1.0 = original speed).
    Original(f64),
    /// As fast as the port takes them.
    Max,
}

/// Replay counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayStats {
    pub sent: u64,
    pub refused: u64,
    pub bytes: u64,
    pub elapsed_ns: u64,
}

/// Sends `frames` `loops` times on `port` at `pace` (stops early after `limit`).
pub fn replay<P: Port + ?Sized>(
    port: &mut P,
    cache: &mut PoolCache,
    frames: &[Frame],
    pace: Pace,
    loops: u64,
    limit: Option<Duration>,
) -> ReplayStats {
    let mut st = ReplayStats::default();
    if frames.is_empty() {
        return st;
    }
    let start = now_ns();
    let deadline = limit.map(|d| start + d.as_nanos() as u64);
    let base_ts = frames.first().map(|f| f.ts_ns).unwrap_or(0);
    let span = frames
        .last()
        .map(|f| f.ts_ns.saturating_sub(base_ts))
        .unwrap_or(0);
    let total = frames.len() as u64 * loops;
    let mut batch = Batch::new();
    let mut i: u64 = 0;
    while i < total {
        let now = now_ns();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let elapsed = now - start;
        // index of the last frame due now
        let due: u64 = match pace {
            Pace::Max => total,
            Pace::Pps(r) => ((elapsed as f64 * r * 1e-9) as u64 + 1).min(total),
            Pace::Original(scale) => {
                let lp = i / frames.len() as u64;
                let k = (i % frames.len() as u64) as usize;
                let t = frames.get(k).map(|f| f.ts_ns - base_ts).unwrap_or(0);
                let at = ((lp * (span + 1) + t) as f64 / scale.max(1e-9)) as u64;
                if at <= elapsed {
                    i + 1
                } else {
                    i
                }
            }
        };
        while i < due && batch.room() > 0 {
            let Some(f) = frames.get((i % frames.len() as u64) as usize) else {
                break;
            };
            let Some(mut p) = cache.alloc() else { break };
            if p.copy_from(&f.data).is_err() {
                cache.free(p);
                i += 1;
                continue;
            }
            st.bytes += f.data.len() as u64;
            if let Err(p) = batch.push(p) {
                cache.free(p);
                break;
            }
            i += 1;
        }
        if !batch.is_empty() {
            st.sent += port.tx_burst(cache, &mut batch) as u64;
            st.refused += batch.len() as u64;
            batch.free_all(cache);
        } else {
            std::hint::spin_loop();
        }
    }
    st.elapsed_ns = now_ns() - start;
    st
}

/// Captures what `port` receives for `duration` (or until `max` frames) into `out`.
pub fn record<P: Port + ?Sized>(
    port: &mut P,
    cache: &mut PoolCache,
    out: &Path,
    duration: Duration,
    max: Option<u64>,
) -> anyhow::Result<u64> {
    let mut w = PcapPort::open(None, Some(out))?;
    let end = now_ns() + duration.as_nanos() as u64;
    let mut batch = Batch::new();
    let mut n = 0u64;
    while now_ns() < end && max.is_none_or(|m| n < m) {
        let got = port.rx_burst(cache, &mut batch);
        if got == 0 {
            std::thread::yield_now();
            continue;
        }
        if let Some(m) = max {
            while n + batch.len() as u64 > m {
                if let Some(p) = batch.pop() {
                    cache.free(p);
                }
            }
        }
        n += w.tx_burst(cache, &mut batch) as u64;
        batch.free_all(cache);
    }
    w.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::buf::Pool;
    use dataplane::port::mem;

    #[test]
    fn record_then_replay_at_rate() {
        let dir = std::env::temp_dir().join(format!("pktgen-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cap.pcap");
        let pool = Pool::new(4096).unwrap();
        let mut c = pool.cache();
        let (mut a, mut b) = mem::pair("a", "b", 512).unwrap();
        let mut batch = Batch::new();
        for i in 0..100u8 {
            let mut p = c.alloc().unwrap();
            p.copy_from(&[i; 60]).unwrap();
            batch.push(p).unwrap();
        }
        assert_eq!(a.tx_burst(&mut c, &mut batch), 100);
        let n = record(&mut b, &mut c, &path, Duration::from_millis(200), Some(100)).unwrap();
        assert_eq!(n, 100);
        let (frames, skipped) = load(&path).unwrap();
        assert_eq!((frames.len(), skipped), (100, 0));
        assert_eq!(frames[42].data, vec![42u8; 60]);
        // 300 frames at 10 kpps take about 30 ms
        let st = replay(&mut a, &mut c, &frames, Pace::Pps(10_000.0), 3, None);
        assert_eq!(st.sent + st.refused, 300);
        let ms = st.elapsed_ns as f64 / 1e6;
        assert!((25.0..200.0).contains(&ms), "{ms} ms");
        let mut got = Batch::new();
        let mut total = 0;
        loop {
            let k = b.rx_burst(&mut c, &mut got);
            if k == 0 {
                break;
            }
            total += k;
            got.free_all(&mut c);
        }
        assert_eq!(total as u64, st.sent);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
