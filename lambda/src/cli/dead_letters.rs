//! `jobsctl dead-letters`: what the sync gave up on, and putting it back in line.
//!
//! Without `--requeue`: one JSON line per dead-lettered entry, oldest first (`id`, `version`,
//! `deleted`, `attempts`, `error`, `dead_lettered_at`), then the backlog on stderr; exit 1 when
//! there is any (for monitoring), 0 when none. `--requeue ID...` or `--requeue --all` makes
//! them due again with fresh retry state (after fixing the cause: a mapping, a bad value) and
//! prints `{"requeued": N, "ids": [...]}`, plus `"not_dead_lettered": [...]` and exit 1 when
//! some ids named were not dead-lettered (a typo, or already back). A dead-lettered row also
//! comes back by itself when it is written again. Exit 2: usage, configuration or database
//! errors (a monitor tells an outage from a backlog). Configuration as for `jobsctl migrate`
//! (`DATABASE_URL` or the Data API settings); no search engine is needed.

use crate::api::config;
use crate::store::Store;
use std::process::ExitCode;
use uuid::Uuid;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Requeue these entries (ids) instead of listing
    #[arg(long)]
    pub requeue: bool,
    /// With --requeue: every dead-lettered entry
    #[arg(long, requires = "requeue")]
    pub all: bool,
    /// Listing: at most this many entries
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// With --requeue: the job ids to requeue
    pub ids: Vec<Uuid>,
}

pub fn run(args: &Args) -> ExitCode {
    super::serve::block_on(async {
        let store = match config::db_from_env().await {
            Ok(db) => Store::new(db),
            Err(e) => {
                eprintln!("jobsctl dead-letters: {e}");
                return ExitCode::from(2);
            }
        };
        if args.requeue {
            requeue(&store, args).await
        } else if !args.ids.is_empty() {
            eprintln!("jobsctl dead-letters: ids are for --requeue");
            ExitCode::from(2)
        } else {
            list(&store, args.limit).await
        }
    })
}

async fn requeue(store: &Store<config::Db>, args: &Args) -> ExitCode {
    let ids = match (args.all, args.ids.is_empty()) {
        (true, true) => None,
        (false, false) => Some(args.ids.as_slice()),
        _ => {
            eprintln!("jobsctl dead-letters: --requeue takes ids or --all (not both, not neither)");
            return ExitCode::from(2);
        }
    };
    match store.requeue_dead_letters(ids).await {
        Ok(requeued) => {
            let missed: Vec<&Uuid> = ids.unwrap_or_default().iter().filter(|id| !requeued.contains(id)).collect();
            if missed.is_empty() {
                println!("{}", serde_json::json!({"requeued": requeued.len(), "ids": requeued}));
                ExitCode::SUCCESS
            } else {
                println!(
                    "{}",
                    serde_json::json!({"requeued": requeued.len(), "ids": requeued, "not_dead_lettered": missed})
                );
                eprintln!("jobsctl dead-letters: {} of the ids named were not dead-lettered", missed.len());
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("jobsctl dead-letters: {e}");
            ExitCode::from(2)
        }
    }
}

async fn list(store: &Store<config::Db>, limit: usize) -> ExitCode {
    let (entries, lag) = match (store.dead_letters(limit.max(1)).await, store.sync_lag().await) {
        (Ok(e), Ok(l)) => (e, l),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("jobsctl dead-letters: {e}");
            return ExitCode::from(2);
        }
    };
    for e in &entries {
        match serde_json::to_string(e) {
            Ok(line) => println!("{line}"),
            Err(err) => eprintln!("jobsctl dead-letters: {err}"),
        }
    }
    let oldest = lag.oldest_age_ms.map_or_else(|| "none".to_owned(), |ms| format!("{:.1} s ago", ms as f64 / 1000.0));
    eprintln!(
        "{} dead-lettered (showing {}); {} waiting to sync, oldest change {oldest}",
        lag.dead_lettered,
        entries.len(),
        lag.dirty
    );
    if lag.dead_lettered > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
