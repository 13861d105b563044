//! Reads tried again on transient errors (a 429, a timeout, a database failing over): the one
//! policy of `jobsctl verify`'s reads and of a scan's pages.

use std::fmt::Display;
use std::time::Duration;

/// `read`, tried again while its error is `transient`: `attempts` in all, the first again after
/// 0.5 s, then twice as long each time. Only for calls that may run twice.
pub async fn reads<T, E: Display>(
    what: &str,
    attempts: u32,
    transient: impl Fn(&E) -> bool,
    mut read: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E> {
    let (mut attempt, mut delay) = (1, Duration::from_millis(500));
    loop {
        match read().await {
            Err(e) if transient(&e) && attempt < attempts => {
                tracing::warn!(error = %e, attempt, what, "a read failed; trying again");
                tokio::time::sleep(delay).await;
                (attempt, delay) = (attempt + 1, delay * 2);
            }
            r => return r,
        }
    }
}
