//! Monotonic clock: the TSC, calibrated at boot.
//!
//! Source order: the hypervisor timing leaf CPUID 0x4000_0010 (TSC kHz, exposed by
//! KVM/VMware when the TSC is invariant), else a measurement against the i8254 PIT
//! (Intel 8254 data sheet: 1.193182 MHz input, counter latch command, mode 0). The
//! PIT method uses channel 0 and counter read-back, so it needs neither the port-0x61
//! gate (absent on `-machine microvm`) nor interrupts. Each window runs between two
//! counter reads that are each bracketed by TSC reads; a read whose bracket is wide (the
//! vCPU was stalled in it) is not used as an end of a window, and the rate is the median
//! of five windows. Under TCG on a loaded host a single unbracketed 2 ms window was seen
//! to land 20 % off, which made the guest clock run 20 % slow.

use crate::arch::{cpuid, inb, outb, rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};

/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window in PIT ticks (~2 ms).
const WINDOW_TICKS: u64 = 2_400;
/// Windows measured; the median sets the rate.
const WINDOWS: usize = 5;

/// Nanoseconds per TSC tick as a 32.32 fixed-point multiplier.
static NS_MULT: AtomicU64 = AtomicU64::new(0);

/// Where the TSC frequency came from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// CPUID leaf 0x4000_0010.
    HypervisorLeaf,
    /// Measured against the PIT.
    Pit,
}

impl core::fmt::Display for Source {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Source::HypervisorLeaf => "hypervisor CPUID leaf",
            Source::Pit => "PIT calibration",
        })
    }
}

/// The clock could not be calibrated.
#[derive(Debug)]
pub struct NoClock;

/// Calibrate the TSC; returns its frequency in Hz and how it was found.
pub fn init() -> Result<(u64, Source), NoClock> {
    let (hz, src) = match hypervisor_tsc_hz() {
        Some(hz) => (hz, Source::HypervisorLeaf),
        None => (pit_calibrate().ok_or(NoClock)?, Source::Pit),
    };
    NS_MULT.store(((1_000_000_000u128 << 32) / hz as u128) as u64, Ordering::Relaxed);
    Ok((hz, src))
}

fn hypervisor_tsc_hz() -> Option<u64> {
    let (_, _, ecx, _) = cpuid(1);
    if ecx & (1 << 31) == 0 {
        return None;
    }
    let (max, _, _, _) = cpuid(0x4000_0000);
    if max < 0x4000_0010 {
        return None;
    }
    let (khz, _, _, _) = cpuid(0x4000_0010);
    (khz != 0).then_some(khz as u64 * 1000)
}

/// Latch and read PIT channel 0.
fn pit_read() -> u16 {
    outb(0x43, 0x00);
    let lo = inb(0x40) as u16;
    let hi = inb(0x40) as u16;
    lo | (hi << 8)
}

/// Program channel 0 for a free-running count from 0xffff and make sure our reads are
/// in step with its low/high byte flip-flop (firmware such as GRUB may leave a latched
/// count half read, which would swap the bytes of every later read).
fn pit_start() -> bool {
    // Channel 0, lobyte/hibyte, mode 0 (interrupt on terminal count), binary; count
    // 0xffff. Interrupts are off, so the IRQ0 edge at terminal count goes nowhere.
    outb(0x43, 0x30);
    outb(0x40, 0xff);
    outb(0x40, 0xff);
    for _ in 0..4 {
        let a = pit_read();
        let b = pit_read();
        if b <= a && a - b < 0x400 {
            return true;
        }
        // Out of step: consume one byte to realign.
        let _ = inb(0x40);
    }
    false
}

/// One PIT read bracketed by two TSC reads: where the count was taken, and how long the
/// read took. A vCPU descheduled in the middle of a read shows up as a wide bracket.
#[derive(Clone, Copy)]
struct Mark {
    count: u16,
    tsc: u64,
    width: u64,
}

fn mark() -> Mark {
    let a = rdtsc();
    let count = pit_read();
    let b = rdtsc();
    let width = b.wrapping_sub(a);
    Mark {
        count,
        tsc: a.wrapping_add(width / 2),
        width,
    }
}

/// The widest bracket a calibration mark may have: a few times the narrowest of a burst
/// of reads. A read that took longer was interrupted (host preemption of the vCPU, a
/// translation-cache flush under TCG) and would bias the rate by the length of the stall.
fn tight_width() -> u64 {
    let narrowest = (0..32).map(|_| mark().width).min().unwrap_or(0);
    narrowest.saturating_mul(4).max(narrowest + 64)
}

/// One measurement of the TSC rate against at least `WINDOW_TICKS` of the PIT, between
/// two tight marks. Only the moments of the two marks matter: the PIT and the TSC both
/// keep running while the vCPU is off the host CPU, so a stall inside the window costs
/// nothing, and a stall inside a mark is caught by its width.
fn pit_window(tight: u64) -> Option<u64> {
    if !pit_start() {
        return None;
    }
    let mut start = mark();
    let mut spins = 0u32;
    while start.width > tight {
        start = mark();
        spins += 1;
        if spins > 1_000 {
            return None;
        }
    }
    let mut prev = start.count;
    let mut spins = 0u32;
    loop {
        let m = mark();
        // A count-down from 0xffff cannot go up within the window: a misread, or the
        // counter wrapped while no tight end mark came.
        if m.count > prev {
            return None;
        }
        prev = m.count;
        let elapsed = (start.count - m.count) as u64;
        if elapsed >= WINDOW_TICKS && m.width <= tight {
            return Some(m.tsc.wrapping_sub(start.tsc) * PIT_HZ / elapsed);
        }
        spins += 1;
        if spins > 10_000_000 {
            return None;
        }
    }
}

/// The median of `WINDOWS` window measurements (plausible x86-64 TSC rates only:
/// 200 MHz .. 10 GHz), so that one disturbed window cannot set the clock.
fn pit_calibrate() -> Option<u64> {
    let tight = tight_width();
    let mut rates = [0u64; WINDOWS];
    let mut n = 0;
    for _ in 0..WINDOWS * 2 {
        if n == WINDOWS {
            break;
        }
        if let Some(hz) = pit_window(tight).filter(|hz| (200_000_000..10_000_000_000).contains(hz)) {
            rates[n] = hz;
            n += 1;
        }
    }
    let got = &mut rates[..n];
    got.sort_unstable();
    got.get(n / 2).copied()
}

/// Convert TSC ticks to nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ((ticks as u128 * NS_MULT.load(Ordering::Relaxed) as u128) >> 32) as u64
}

/// Nanoseconds since the first instruction of the boot stub.
pub fn now_ns() -> u64 {
    ticks_to_ns(rdtsc().wrapping_sub(crate::boot::boot_tsc()))
}

/// Microseconds since boot.
pub fn uptime_us() -> u64 {
    now_ns() / 1000
}

/// Busy-wait for `ns` nanoseconds.
pub fn spin_ns(ns: u64) {
    let end = now_ns() + ns;
    while now_ns() < end {
        core::hint::spin_loop();
    }
}
