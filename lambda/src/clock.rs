//! The shell's clock and randomness, passed into the pure core.

use jobs_core::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// Now, from the system clock.
pub fn now() -> Timestamp {
    let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    Timestamp::from_micros(i64::try_from(micros).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX)
}

/// Fresh random bytes from the operating system (all zeros only if the OS refuses).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let _ = getrandom::fill(&mut b);
    b
}

/// A new time-ordered job id.
pub fn new_job_id() -> Uuid {
    let millis = u64::try_from(now().as_millis()).unwrap_or(0);
    jobs_core::text::new_uuid_v7(millis, random_bytes())
}

/// A random u64 (jitter seeds).
pub fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes())
}
