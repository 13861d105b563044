//! `jobsctl sync`: brings search up to date with Postgres (the same run as the scheduled
//! Lambda). `--once` runs until nothing is due (only dead-lettered or backing-off rows left)
//! and exits; without it, it polls every `--interval` until Ctrl-C. An interrupt (Ctrl-C,
//! SIGTERM) ends the run between batches: the batches in flight are finished and recorded,
//! those claimed ahead handed back (no lease left to run out); a second one stops at once.
//!
//! Configuration from the environment: `DATABASE_URL` (or the Data API settings,
//! `JOBS_DB_CLUSTER_ARN` and `JOBS_DB_SECRET_ARN`) and `SEARCH_URL` with its auth settings
//! (`SEARCH_AUTH`, ...; see `search::SearchConfig::from_env`). Also the helpers the other
//! search subcommands share.

use super::interrupt;
use crate::api::config::{self, Db};
use crate::db::Executor;
use crate::search::SearchClient;
use crate::store::Store;
use crate::sync_run::{self, Deadline, Stop, SyncConfig, SyncSummary};
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run until nothing is due, print the summary as JSON and exit (1 if the engine or the
    /// database failed)
    #[arg(long)]
    pub once: bool,
    /// Seconds between polls (without --once)
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Queue entries per batch
    #[arg(long, default_value_t = 1_000)]
    pub batch_size: usize,
    /// Concurrent batches
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Give up after this many seconds (--once)
    #[arg(long)]
    pub budget: Option<f64>,
    /// Do not refresh the index after a run that changed it (changes then become searchable
    /// at the engine's next scheduled refresh)
    #[arg(long)]
    pub no_refresh: bool,
}

pub fn run(args: &Args) -> ExitCode {
    block_on(async {
        init_tracing();
        let (store, client) = match connect("sync").await {
            Ok(c) => c,
            Err(code) => return code,
        };
        interrupt::watch("sync");
        let cfg = SyncConfig {
            batch_size: args.batch_size.max(1),
            workers: args.workers.max(1),
            refresh: !args.no_refresh,
            ..SyncConfig::default()
        };
        if args.once {
            let deadline = args.budget.map_or(Deadline::never(), |s| Deadline::after(secs(s)));
            let summary = once(&store, &client, &cfg, deadline.or_when(&interrupt::INTERRUPTED)).await;
            match serde_json::to_string(&summary) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("jobsctl sync: {e}"),
            }
            match summary.stopped {
                Stop::Interrupted => ExitCode::from(130),
                _ if summary.failed() => ExitCode::from(1),
                _ => ExitCode::SUCCESS,
            }
        } else {
            poll(&store, &client, &cfg, secs(args.interval)).await;
            ExitCode::SUCCESS
        }
    })
}

/// One run to clean.
pub async fn once<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    cfg: &SyncConfig,
    deadline: Deadline,
) -> SyncSummary {
    sync_run::run(store, client, cfg, deadline).await
}

/// Runs to clean, sleeps `interval` (longer after failures, up to 30 s), again, until
/// interrupted (the run in progress ends between batches).
async fn poll(store: &Store<Db>, client: &SearchClient, cfg: &SyncConfig, interval: Duration) {
    let mut failures = 0u32;
    loop {
        let deadline = Deadline::never().or_when(&interrupt::INTERRUPTED);
        let ok = !sync_run::run(store, client, cfg, deadline).await.failed();
        if deadline.interrupted() {
            break;
        }
        failures = if ok { 0 } else { failures.saturating_add(1) };
        let wait = if failures == 0 {
            interval
        } else {
            interval.max(Duration::from_secs(1)).saturating_mul(1 << failures.min(5)).min(Duration::from_secs(30))
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = interrupt::interrupted() => break,
        }
    }
    eprintln!("jobsctl sync: stopped");
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

/// The store and the search client the environment names; on failure `jobsctl {command}`
/// says why and the caller exits with 2 (a usage/configuration error).
pub(crate) async fn connect(command: &str) -> Result<(Store<Db>, SearchClient), ExitCode> {
    let connected = async {
        let db = config::db_from_env().await.map_err(|e| e.to_string())?;
        let client = SearchClient::from_env()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("set SEARCH_URL (`eval \"$(./dev services env)\"` locally)")?;
        Ok::<_, String>((Store::new(db), client))
    };
    connected.await.map_err(|e| {
        eprintln!("jobsctl {command}: {e}");
        ExitCode::from(2)
    })
}

/// Runs `fut` on a fresh multi-threaded runtime.
pub(crate) fn block_on<F: Future<Output = ExitCode>>(fut: F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("jobsctl: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr (`RUST_LOG`, default info), so stdout stays machine-readable.
/// Logs to stderr, filtered by `RUST_LOG` (default `info`); one JSON object per line with
/// `JOBS_LOG_FORMAT=json` (for a log collector: `jobsctl serve` in a container), text otherwise.
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if std::env::var("JOBS_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        fmt.json().flatten_event(true).try_init()
    } else {
        fmt.try_init()
    };
}
