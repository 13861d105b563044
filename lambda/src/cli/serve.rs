//! `jobsctl serve`: the API, the sync loop and the demo page on one local address, against
//! the database (the Data API settings or `DATABASE_URL`, as every subcommand) and `SEARCH_URL` (search answered by Postgres alone when `SEARCH_URL` is
//! unset). Callers authenticate with HS256 tokens signed with `JOBS_JWT_SECRET` (`jobsctl token`).

use super::interrupt;
use super::sync::init_tracing;
use crate::api::auth::{Auth, Hs256Key};
use crate::api::config::{self, Db};
use crate::api::web::Site;
use crate::api::{Api, router};
use crate::search::SearchClient;
use crate::store::Store;
use crate::sync_run::{self, Deadline, SyncConfig};
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to listen (port 0: any free port; the address is printed)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The demo page, served at /
    #[arg(long, default_value = "wasm/web")]
    pub web_dir: PathBuf,
    /// The npm package, served at /pkg/
    #[arg(long, default_value = "wasm/pkg")]
    pub pkg_dir: PathBuf,
    /// Database connections (a direct connection's pool)
    #[arg(long, default_value_t = 16)]
    pub pool: usize,
    /// Milliseconds between sync runs (when a search engine is configured)
    #[arg(long, default_value_t = 1_000)]
    pub sync_interval_ms: u64,
    /// No sync loop (write-through only; run `jobsctl sync` separately)
    #[arg(long)]
    pub no_sync: bool,
}

/// Runs `fut` on a fresh multi-threaded runtime (the async subcommands).
pub fn block_on<F: Future<Output = ExitCode>>(fut: F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("jobsctl: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn run(args: &Args) -> ExitCode {
    block_on(async {
        match serve(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jobsctl serve: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn serve(args: &Args) -> Result<(), String> {
    init_tracing();
    interrupt::watch("serve");
    let key =
        Hs256Key::from_env()?.ok_or("set JOBS_JWT_SECRET (at least 16 bytes); mint tokens with `jobsctl token`")?;
    // The same database as `jobsctl migrate` and `sync` (the Data API settings or DATABASE_URL).
    let db = config::db_from_env_with_pool(Some(args.pool)).await.map_err(|e| e.to_string())?;
    let store = Arc::new(Store::new(db));
    let mut options = config::api_options_from_env().await.map_err(|e| e.to_string())?;
    options.site = Some(Site::new(&args.web_dir, &args.pkg_dir));
    for (dir, file, how) in [
        (&args.web_dir, "index.html", "--web-dir names the folder of the demo page"),
        (&args.pkg_dir, "index.js", "build the package with ./dev wasm, or name it with --pkg-dir"),
    ] {
        if !dir.join(file).is_file() {
            tracing::warn!(file = %dir.join(file).display(), "jobsctl serve: no such file ({how}); the API works, the page will not");
        }
    }
    if let Some(client) = options.searcher.client() {
        // The index before the first request: searches of a missing index would open the
        // search breaker, and write-throughs to it would all miss.
        match tokio::time::timeout(Duration::from_secs(10), client.ensure_index()).await {
            Ok(Ok(index)) => tracing::debug!(%index, "search index ready"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "jobsctl serve: search index not ready; searches use Postgres meanwhile")
            }
            Err(_) => {
                tracing::warn!(
                    "jobsctl serve: the search engine did not answer in 10 s; searches use Postgres meanwhile"
                )
            }
        }
    }
    let sync_client = options.searcher.client().cloned();
    let api = Arc::new(Api::new(store.clone(), Auth { key: Some(key) }, options));
    let listener = tokio::net::TcpListener::bind(args.addr).await.map_err(|e| format!("binding {}: {e}", args.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The sync starts once the address is ours: a failed bind leaves no run cut short.
    let sync = match (sync_client, args.no_sync) {
        (Some(client), false) => {
            let interval = Duration::from_millis(args.sync_interval_ms.max(10));
            Some(tokio::spawn(async move { sync_loop(&store, &client, interval).await }))
        }
        _ => None,
    };
    // The address line is what scripts wait for; a closed stdout must not stop the server.
    // Without its credentials (`SEARCH_URL=https://user:password@host` is basic auth).
    let search = match (&sync, std::env::var("SEARCH_URL").map(|u| crate::search::redact(&u))) {
        (Some(_), Ok(url)) => format!("{url} (write-through, and the sync every {} ms)", args.sync_interval_ms),
        (None, Ok(url)) if !url.trim().is_empty() => format!("{url} (write-through only: --no-sync)"),
        _ => "none: PostgreSQL answers searches (set SEARCH_URL for an engine)".to_owned(),
    };
    let banner = format!(
        "jobsctl serve: listening on http://{addr}\n  API      http://{addr}/v1/ (OpenAPI at /v1/openapi.json, health at /v1/health)\n  page     http://{addr}/ (from {})\n  search   {search}\n",
        args.web_dir.display()
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    drop(out);
    let served = axum::serve(listener, router(api)).with_graceful_shutdown(shutdown()).await;
    if let Some(task) = sync {
        // Stopping for any reason (an interrupt, or the server failing) stops the sync loop.
        interrupt::INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        // The run in progress ends between batches (no lease left to run out); a bulk in
        // flight takes at most its timeout.
        if tokio::time::timeout(Duration::from_secs(40), task).await.is_err() {
            tracing::warn!(
                "jobsctl serve: the sync did not stop in 40 s; its claims free themselves when their leases end"
            );
        }
    }
    served.map_err(|e| e.to_string())
}

/// The scheduled sync's local stand-in: runs to clean every `interval` (backing off up to 30 s
/// while the engine or the database fails), so whatever a write-through missed gets indexed.
async fn sync_loop(store: &Store<Db>, client: &SearchClient, interval: Duration) {
    let cfg = SyncConfig::default();
    let mut failures = 0u32;
    loop {
        let deadline = Deadline::after(Duration::from_secs(60)).or_when(&interrupt::INTERRUPTED);
        let summary = sync_run::run(store, client, &cfg, deadline).await;
        if deadline.interrupted() {
            return;
        }
        if summary.failed() {
            failures = failures.saturating_add(1);
            tracing::warn!(stopped = ?summary.stopped, error = ?summary.error, "sync run failed");
        } else {
            if failures > 0 || summary.claimed > 0 {
                tracing::info!(claimed = summary.claimed, marked = summary.marked, "sync run");
            }
            failures = 0;
        }
        let backoff = interval.saturating_mul(2u32.saturating_pow(failures.min(10))).min(Duration::from_secs(30));
        tokio::select! {
            _ = tokio::time::sleep(if failures == 0 { interval } else { backoff }) => {}
            _ = interrupt::interrupted() => return,
        }
    }
}

async fn shutdown() {
    interrupt::interrupted().await;
    tracing::info!("jobsctl serve: shutting down");
}
