//! The seed of the vBNG's random source (`vbng::rng::Rng`: PPP magic numbers, CHAP
//! challenges, PPPoE cookies). Sources, all hashed together with SHA-256 (FIPS 180-4):
//!
//! - RDSEED, else RDRAND (Intel SDM vol. 1 §7.3.17; CPUID.07H:EBX.RDSEED[bit 18],
//!   CPUID.01H:ECX.RDRAND[bit 30]), each read checked: the carry flag must be set
//!   (retried 10 times, Intel's guidance for RDRAND) and a value of all zeros or all
//!   ones, or the same value twice in a row, refuses the instruction (the failure mode
//!   of some AMD parts after resume);
//! - a seed handed in by the host, fw_cfg `opt/vnf/entropy` (e.g.
//!   `-fw_cfg name=opt/vnf/entropy,file=SEED` with 32 bytes from /dev/urandom);
//! - always, the low bits of 1024 TSC readings around a short loop (timing jitter).
//!
//! With neither a hardware source nor a host seed the console says so: the TSC jitter
//! of an emulated CPU is a weak source.

use crate::arch;
use core::arch::asm;
use sha2::{Digest, Sha256};

/// TSC readings mixed in.
const JITTER_SAMPLES: usize = 1024;

/// fw_cfg file with a seed from the host.
const FWCFG_ENTROPY: &str = "opt/vnf/entropy";

/// Which hardware instruction fed the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hw {
    Rdseed,
    Rdrand,
    None,
}

/// Where the seed came from (for the console).
#[derive(Debug, Clone, Copy)]
pub struct Sources {
    pub hw: Hw,
    /// Bytes of fw_cfg `opt/vnf/entropy`.
    pub host_bytes: usize,
}

impl Sources {
    /// Whether anything better than TSC jitter went in.
    pub fn strong(&self) -> bool {
        self.hw != Hw::None || self.host_bytes >= 16
    }

    /// `RDSEED`, `RDRAND + host seed (32 bytes)`, `TSC jitter only`, ...
    pub fn describe(&self) -> alloc::string::String {
        let hw = match self.hw {
            Hw::Rdseed => "RDSEED",
            Hw::Rdrand => "RDRAND",
            Hw::None => "",
        };
        match (hw, self.host_bytes) {
            ("", 0) => "TSC jitter only".into(),
            ("", n) => alloc::format!("host seed ({n} bytes) and TSC jitter"),
            (h, 0) => alloc::format!("{h} and TSC jitter"),
            (h, n) => alloc::format!("{h}, host seed ({n} bytes) and TSC jitter"),
        }
    }
}

fn rdseed_step() -> Option<u64> {
    let (v, ok): (u64, u8);
    // SAFETY: only executed when CPUID reports RDSEED; no memory is touched.
    unsafe { asm!("rdseed {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack)) }
    (ok != 0).then_some(v)
}

fn rdrand_step() -> Option<u64> {
    let (v, ok): (u64, u8);
    // SAFETY: only executed when CPUID reports RDRAND; no memory is touched.
    unsafe { asm!("rdrand {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack)) }
    (ok != 0).then_some(v)
}

/// Eight checked words from `step`, or `None` if the instruction misbehaves.
fn words(step: fn() -> Option<u64>) -> Option<[u64; 8]> {
    let mut out = [0u64; 8];
    let mut last = None;
    for w in out.iter_mut() {
        let v = (0..10).find_map(|_| step())?;
        if v == 0 || v == u64::MAX || last == Some(v) {
            return None;
        }
        last = Some(v);
        *w = v;
    }
    Some(out)
}

fn has_rdrand() -> bool {
    arch::cpuid(1).2 & (1 << 30) != 0
}

fn has_rdseed() -> bool {
    arch::cpuid(0).0 >= 7 && arch::cpuid(7).1 & (1 << 18) != 0
}

/// A 32-byte seed and where it came from.
pub fn seed() -> ([u8; 32], Sources) {
    let mut h = Sha256::new();
    h.update(b"unikernel vbng rng seed v1");
    let mut hw = Hw::None;
    if has_rdseed() {
        if let Some(w) = words(rdseed_step) {
            w.iter().for_each(|x| h.update(x.to_le_bytes()));
            hw = Hw::Rdseed;
        }
    }
    if hw == Hw::None && has_rdrand() {
        if let Some(w) = words(rdrand_step) {
            w.iter().for_each(|x| h.update(x.to_le_bytes()));
            hw = Hw::Rdrand;
        }
    }
    let host = crate::fwcfg::read_file(FWCFG_ENTROPY).unwrap_or_default();
    h.update((host.len() as u64).to_le_bytes());
    h.update(&host);
    // Timing jitter: the TSC around a loop whose length depends on the last reading.
    let mut samples = [0u16; JITTER_SAMPLES];
    let mut prev = arch::rdtsc();
    let mut acc = prev;
    for s in samples.iter_mut() {
        for _ in 0..(acc & 7) {
            core::hint::spin_loop();
        }
        let t = arch::rdtsc();
        acc = acc.rotate_left(7) ^ t.wrapping_sub(prev);
        prev = t;
        *s = t as u16;
    }
    samples.iter().for_each(|s| h.update(s.to_le_bytes()));
    h.update(acc.to_le_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(&h.finalize());
    (
        out,
        Sources {
            hw,
            host_bytes: host.len(),
        },
    )
}
