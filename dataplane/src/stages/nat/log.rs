//! CGNAT port-block log records (RFC 6888 §4 REQ-12 and §5: an operator must be able
//! to tell which subscriber used an outside address and port at a given time, and
//! port-block allocation keeps that log small: one record per block allocation and
//! one per release instead of one per session).
//!
//! A record carries the subscriber (inside address), the outside address, the port
//! range and a timestamp. The stage hands records to a [`LogSink`]; [`RingLog`] is a
//! preallocated ring the control plane drains (and writes to syslog/IPFIX/a file);
//! timestamps are the engine's monotonic nanoseconds, which the drain converts to
//! wall-clock time with one offset.

use alloc::collections::VecDeque;
use core::fmt;
use core::net::Ipv4Addr;

/// What happened to the port block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogEvent {
    /// The block was allocated to the subscriber.
    Alloc,
    /// The block was released (no mapping left in it).
    Release,
}

/// One allocation or release of a port block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub event: LogEvent,
    /// The subscriber's inside address.
    pub subscriber: Ipv4Addr,
    /// The outside address the block belongs to.
    pub outside: Ipv4Addr,
    /// First port of the block.
    pub port_first: u16,
    /// Last port of the block (inclusive).
    pub port_last: u16,
    /// Monotonic time of the event in nanoseconds.
    pub time_ns: u64,
}

impl fmt::Display for LogRecord {
    /// `nat-block alloc sub=100.64.0.7 out=198.51.100.1 ports=1024-1535 t=12.345678901`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nat-block {} sub={} out={} ports={}-{} t={}.{:09}",
            match self.event {
                LogEvent::Alloc => "alloc",
                LogEvent::Release => "release",
            },
            self.subscriber,
            self.outside,
            self.port_first,
            self.port_last,
            self.time_ns / 1_000_000_000,
            self.time_ns % 1_000_000_000
        )
    }
}

/// Where the stage writes its log records. Called on the packet path when a block is
/// allocated or released: implementations must not block or allocate.
pub trait LogSink: Send {
    fn record(&mut self, rec: &LogRecord);
}

/// A bounded ring of records (preallocated); when full the oldest record is kept and
/// the new one counted in [`RingLog::lost`], so a slow drain is visible.
#[derive(Debug)]
pub struct RingLog {
    ring: VecDeque<LogRecord>,
    cap: usize,
    /// Records dropped because the ring was full.
    pub lost: u64,
}

impl RingLog {
    pub fn new(cap: usize) -> Self {
        RingLog {
            ring: VecDeque::with_capacity(cap),
            cap,
            lost: 0,
        }
    }

    /// Takes the oldest record.
    pub fn pop(&mut self) -> Option<LogRecord> {
        self.ring.pop_front()
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &LogRecord> {
        self.ring.iter()
    }
}

impl LogSink for RingLog {
    fn record(&mut self, rec: &LogRecord) {
        if self.ring.len() >= self.cap {
            self.lost += 1;
        } else {
            self.ring.push_back(*rec);
        }
    }
}

/// A sink that keeps nothing (logging disabled).
#[derive(Debug, Default)]
pub struct NoLog;

impl LogSink for NoLog {
    fn record(&mut self, _rec: &LogRecord) {}
}
