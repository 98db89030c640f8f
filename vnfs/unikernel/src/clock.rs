//! Monotonic clock: the TSC, calibrated at boot.
//!
//! Source order: the hypervisor timing leaf CPUID 0x4000_0010 (TSC kHz, exposed by
//! KVM/VMware when the TSC is invariant), else a measurement against the i8254 PIT
//! (Intel 8254 data sheet: 1.193182 MHz input, counter latch command, mode 0). The
//! PIT method uses channel 0 and counter read-back, so it needs neither the port-0x61
//! gate (absent on `-machine microvm`) nor interrupts. The measured window is taken
//! between two exact counter reads, so polling latency does not bias the result.

use crate::arch::{cpuid, inb, outb, rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};

/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window in PIT ticks (~2 ms).
const WINDOW_TICKS: u64 = 2_400;

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

/// One measurement of the TSC rate against `WINDOW_TICKS` of the PIT.
fn pit_window() -> Option<u64> {
    if !pit_start() {
        return None;
    }
    // Wait for the counter to move, then take the first exact reading.
    let first = pit_read();
    let mut c0 = first;
    let mut spins = 0u32;
    while c0 == first {
        c0 = pit_read();
        spins += 1;
        if spins > 1_000_000 {
            return None;
        }
    }
    let t0 = rdtsc();
    let mut prev = c0;
    let mut spins = 0u32;
    loop {
        let c = pit_read();
        let t = rdtsc();
        // A count-down from 0xffff cannot go up within the window: a misread.
        if c > prev {
            return None;
        }
        prev = c;
        let elapsed = (c0 - c) as u64;
        if elapsed >= WINDOW_TICKS {
            return Some((t - t0) * PIT_HZ / elapsed);
        }
        spins += 1;
        if spins > 10_000_000 {
            return None;
        }
    }
}

fn pit_calibrate() -> Option<u64> {
    // Plausible x86-64 TSC rates: 200 MHz .. 10 GHz; retry a misread window.
    (0..5)
        .filter_map(|_| pit_window())
        .find(|hz| (200_000_000..10_000_000_000).contains(hz))
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
