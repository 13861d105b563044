//! Subcommands of `jobsctl`, one module each; the binary only parses arguments and dispatches.

pub mod data_api;
pub mod dead_letters;
pub mod migrate;
pub mod reindex;
pub mod serve;
pub mod sync;
pub mod token;
pub mod validate;
pub mod verify;
pub mod interrupt {
    //! Ctrl-C and SIGTERM for the subcommands that hold work (sync, serve's sync loop, reindex):
    //! the first asks them to stop where nothing is left half done (batches in flight finished,
    //! those claimed ahead handed back, an unfinished index deleted); the second ends the
    //! process at once (exit 130).

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Set by the first interrupt once [`watch`] runs.
    pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    /// Starts listening (call inside the runtime). `what` names the subcommand in messages.
    pub fn watch(what: &'static str) {
        tokio::spawn(async move {
            let mut seen = 0u32;
            loop {
                if !signal().await {
                    return;
                }
                seen += 1;
                if seen == 1 {
                    INTERRUPTED.store(true, Ordering::SeqCst);
                    tracing::warn!(
                        "jobsctl {what}: stopping after the work in flight (interrupt again to stop at once)"
                    );
                } else {
                    // Stopped at once, a reindex leaves its unfinished index, which every write
                    // still reaches through the reindex alias until someone takes over.
                    let left = if what == "reindex" {
                        "; the unfinished index keeps the reindex alias: run jobsctl reindex --force to take over"
                    } else {
                        ""
                    };
                    tracing::warn!("jobsctl {what}: stopped at once{left}");
                    std::process::exit(130);
                }
            }
        });
    }

    /// Resolves once interrupted.
    pub async fn interrupted() {
        while !INTERRUPTED.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next Ctrl-C or SIGTERM; false when signals cannot be watched.
    async fn signal() -> bool {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else { return tokio::signal::ctrl_c().await.is_ok() };
            tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                s = term.recv() => s.is_some(),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.is_ok()
        }
    }
}
