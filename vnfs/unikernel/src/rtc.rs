//! Wall-clock time from the CMOS real-time clock (the MC146818 register set QEMU
//! emulates on `pc`, `q35` and `microvm`): index port 0x70, data port 0x71; seconds,
//! minutes, hours, day of month, month and year in registers 0, 2, 4, 7, 8, 9, the
//! update-in-progress flag in status A (bit 7), BCD or binary and 12/24-hour mode in
//! status B (bits 2 and 1). Read only at boot, for the PFCP Recovery Time Stamp of the
//! vBNG user plane (3GPP TS 29.244 §8.2.65: when the node started, NTP seconds).

use crate::arch::{inb, outb};

/// Seconds between 1900 (NTP era 0) and 1970.
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

fn reg(r: u8) -> u8 {
    // Bit 7 of the index keeps NMIs disabled while we read.
    outb(0x70, 0x80 | r);
    inb(0x71)
}

/// The raw time registers, read while no update is in progress.
fn snapshot() -> [u8; 6] {
    // Status A bit 7: an update is in progress for the next ~2 ms.
    let mut spins = 0u32;
    while reg(0x0a) & 0x80 != 0 && spins < 1_000_000 {
        spins += 1;
        core::hint::spin_loop();
    }
    [reg(0), reg(2), reg(4), reg(7), reg(8), reg(9)]
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

/// Days from 1970-01-01 to the civil date `y-m-d` (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of the RTC (taken as UTC, years 2000-2099), or `None` when there is
/// no RTC (the ports float to 0xff) or it holds no valid date.
pub fn unix_seconds() -> Option<u64> {
    let b = reg(0x0b);
    if b == 0xff {
        return None;
    }
    // Two equal snapshots: no update rolled over between the reads.
    let mut t = snapshot();
    for _ in 0..4 {
        let u = snapshot();
        if u == t {
            break;
        }
        t = u;
    }
    let binary = b & 0x04 != 0;
    let h24 = b & 0x02 != 0;
    let conv = |v: u8| if binary { v } else { from_bcd(v) };
    let pm = !h24 && t[2] & 0x80 != 0;
    let (sec, min, mut hour) = (conv(t[0]), conv(t[1]), conv(t[2] & 0x7f));
    if !h24 {
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    let (day, month, year) = (conv(t[3]), conv(t[4]), conv(t[5]));
    if sec > 59 || min > 59 || hour > 23 || !(1..=31).contains(&day) || !(1..=12).contains(&month) || year > 99 {
        return None;
    }
    let days = days_from_civil(2000 + i64::from(year), u32::from(month), u32::from(day));
    let s = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec);
    u64::try_from(s).ok()
}
