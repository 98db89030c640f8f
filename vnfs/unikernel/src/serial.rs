//! Serial console on COM1 (0x3f8), a polled 16550 UART (NS16550A data sheet: THR at
//! +0, LSR bit 5 "THR empty"), plus the `log` backend and `print!`/`println!`.

use crate::arch::{inb, outb};
use core::fmt::{self, Write};

const COM1: u16 = 0x3f8;

/// Program 115200 8N1, FIFOs on, interrupts off.
pub fn init() {
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0xC7);
    outb(COM1 + 4, 0x03);
}

fn put(b: u8) {
    let mut spins = 0u32;
    while inb(COM1 + 5) & 0x20 == 0 && spins < 100_000 {
        spins += 1;
    }
    outb(COM1, b);
}

/// Wait until the transmitter is empty (LSR bit 6) so nothing is lost at exit.
pub fn flush() {
    let mut spins = 0u32;
    while inb(COM1 + 5) & 0x40 == 0 && spins < 1_000_000 {
        spins += 1;
    }
}

/// Read a byte if one is waiting (LSR bit 0).
pub fn try_read() -> Option<u8> {
    if inb(COM1 + 5) & 1 != 0 {
        Some(inb(COM1))
    } else {
        None
    }
}

/// A `fmt::Write` sink on COM1 that turns `\n` into `\r\n`.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put(b'\r');
            }
            put(b);
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    // Single CPU, interrupts off: no other writer can interleave.
    let _ = Console.write_fmt(args);
}

/// Print to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::serial::_print(format_args!($($arg)*)) };
}

/// Print a line to the serial console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::serial::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        // The virtio driver's own chatter only at debug level.
        let cap = if m.target().starts_with("virtio_drivers") && log::max_level() < log::LevelFilter::Debug {
            log::LevelFilter::Warn
        } else {
            log::max_level()
        };
        m.level() <= cap
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let t = crate::clock::uptime_us();
            crate::println!("[{:>6}.{:03}] {:<5} {}", t / 1000, t % 1000, r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Route `log` records to the console at `level`.
pub fn init_log(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
