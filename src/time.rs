//! Wall-clock instants shared between processes.
//!
//! A job's creation time and deadline cross process boundaries, so they travel as milliseconds
//! since the Unix epoch. Durations measured inside one process use `std::time::Instant`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// Microseconds since the Unix epoch, now: fine enough to measure a few milliseconds of overhead
/// across processes on one clock.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
