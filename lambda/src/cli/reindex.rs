//! `jobsctl reindex`: rebuilds search from Postgres into a new index and swaps the alias to it,
//! while the API and the sync keep running. Readers never see an empty or partial index: they
//! read the old one until the swap, which is one atomic alias update.
//!
//! 1. Create `{alias}-v{N+1}` from the current mapping with 0 replicas and refresh off, carrying
//!    the alias `{alias}-reindex`. From then on every sync batch and write-through also goes to
//!    the new index (they resolve their targets after reading what they send).
//! 2. Backfill from Postgres by keyset on id (never OFFSET), a few bulks in flight, external
//!    versions: a row changed after the backfill read it reaches the new index through the
//!    sync, and whichever arrives second loses to the higher version.
//! 3. Catch up: run the sync (writing to both indexes) until nothing is due, within a budget.
//!    The deletes made during the backfill are sent again first: a page read before a delete
//!    may have reached the new index after it, once the engine had forgotten the delete.
//! 4. Restore replicas and refresh interval (the old index's), refresh, wait for yellow.
//! 5. Swap: remove the alias from the old index (which must still hold it), add it to the new
//!    one as write index, drop the reindex alias; all in one `_aliases` call. The old index is
//!    kept for rollback. What was dead-lettered since the start is put back in line, for the
//!    now live index alone to take (the old one may have been refusing it: a reindex is how a
//!    mapping is fixed).
//!
//! A running reindex beats: a counter in its index's mapping (`_meta.jobs_reindex`) goes up
//! every 10 s. One told to `--force` watches that counter for four beats and 2 s more (42 s),
//! and takes over only if it stood still (a live one is named, pid and host, and left alone)
//! and that reindex did not end meanwhile (its index may then be the live one).
//!
//! On failure before the swap, or an interrupt (Ctrl-C, SIGTERM: seen between pages of the
//! backfill, by the catch-up sync between its batches, and before the swap is sent, never
//! after), the new index is deleted and the alias is untouched; the sync's dead letters since
//! the start (changes the new index refused) are put back in line. A new index
//! that refused jobs in the backfill (a mapping they do not fit), or changes the sync sent it
//! since the start (dead-lettered or waiting for a retry, their errors name the index), is a
//! failure: the swap would make search lose them. So are rows the backfill cannot read
//! (another writer's data; the old index may hold an older version of them).
//! `--allow-rejected` swaps anyway and queues them for the sync, which dead-letters what is
//! refused again (`jobsctl dead-letters`).

use super::interrupt;
use super::sync::{block_on, connect, init_tracing};
use crate::db::Executor;
use crate::search::{SearchClient, SearchError};
use crate::store::{Store, StoreError};
use crate::sync_run::{self, Deadline, SyncConfig, SyncSummary};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use jobs_core::model::Job;
use jobs_core::search::{Change, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs per bulk request
    #[arg(long, default_value_t = 1_000)]
    pub batch_size: usize,
    /// Bulk requests in flight
    #[arg(long, default_value_t = 3)]
    pub parallel: usize,
    /// Seconds the catch-up sync may take before the swap
    #[arg(long, default_value_t = 120.0)]
    pub catch_up: f64,
    /// Take over from a reindex that died (deletes its unfinished index): refused while that
    /// reindex's heartbeat still moves (watched for four beats and 2 s, 42 s by default)
    #[arg(long)]
    pub force: bool,
    /// Swap even if the new index refused jobs (they are queued for the sync, which
    /// dead-letters what is refused again); without it, refusals fail the reindex before the swap
    #[arg(long)]
    pub allow_rejected: bool,
}

/// A point in the reindex, for [`ReindexOptions::hook`] (tests write concurrently here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReindexStep {
    /// The new index exists and receives the sync's writes.
    Created,
    /// A page of the backfill was read (jobs read so far).
    BackfillPage(u64),
    /// Every job was read and sent.
    Backfilled,
    /// The catch-up sync ended.
    CaughtUp,
}

pub type ReindexHook = Arc<dyn Fn(ReindexStep) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
pub struct ReindexOptions {
    pub batch_size: usize,
    pub parallel: usize,
    pub catch_up: Duration,
    pub force: bool,
    pub allow_rejected: bool,
    /// Set when an operator interrupts: the reindex stops as on a failure (`jobsctl` sets it on
    /// Ctrl-C or SIGTERM).
    pub interrupt: Option<&'static AtomicBool>,
    /// Show a progress bar on stderr (drawn only on a terminal).
    pub progress: bool,
    /// The catch-up sync's configuration.
    pub sync: SyncConfig,
    pub hook: Option<ReindexHook>,
    /// How often the running reindex beats (see [`Beat`]).
    pub heartbeat: Duration,
}

impl Default for ReindexOptions {
    fn default() -> Self {
        ReindexOptions {
            batch_size: 1_000,
            parallel: 3,
            catch_up: Duration::from_secs(120),
            force: false,
            allow_rejected: false,
            interrupt: None,
            progress: false,
            sync: SyncConfig::default(),
            hook: None,
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// What a reindex did.
#[derive(Debug, Clone, Serialize)]
pub struct ReindexReport {
    /// The index the alias pointed at before (kept).
    pub old: String,
    /// The index it points at now.
    pub new: String,
    /// Jobs read from Postgres and sent.
    pub backfilled: u64,
    /// Jobs the new index refused (their ids and errors, the first 100).
    pub rejected: u64,
    pub rejected_examples: Vec<(Uuid, String)>,
    /// Rows this code cannot read (another writer stored a status it does not know, a number
    /// past a double), left out as the sync leaves them out (their ids and reasons, the first
    /// 100).
    pub unreadable: u64,
    pub unreadable_examples: Vec<(Uuid, String)>,
    pub bulk_requests: u64,
    pub backfill_ms: u64,
    pub docs_per_sec: f64,
    pub catch_up: SyncSummary,
    /// Documents in the new index and jobs in Postgres right after the swap (writers may
    /// still be running, so these need not be equal).
    pub search_count: u64,
    pub postgres_count: i64,
    pub elapsed_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "a reindex into {index} is in progress{}, or died: if none is running, run with --force to take over \
         (it checks that the heartbeat has stopped, then deletes {index})",
        last.as_ref().map(|b| format!(" ({b})")).unwrap_or_default()
    )]
    InProgress { index: String, last: Option<Beat> },
    #[error(
        "a reindex into {index} is running ({beat}; its heartbeat moved while this one watched): --force takes over \
         only a dead one; stop it (Ctrl-C) or let it finish"
    )]
    Running { index: String, beat: Beat },
    #[error("backfill: {0}")]
    Backfill(String),
    #[error("catch-up sync failed: {0}")]
    CatchUp(String),
    #[error(
        "the new index refused {count} jobs, e.g. {}; the alias is unchanged: fix the mapping, or rerun with \
         --allow-rejected to swap and dead-letter them",
        first_three(examples)
    )]
    Rejected { count: u64, examples: Vec<(Uuid, String)> },
    #[error(
        "the new index refused {count} changes made during the reindex, e.g. {}; the alias is unchanged and \
         they are back in line: fix the mapping, or rerun with --allow-rejected to swap and dead-letter them",
        first_three(examples)
    )]
    DeadLettered { count: u64, examples: Vec<(Uuid, String)> },
    #[error(
        "{count} job rows cannot be read (another writer stored what this code does not know), e.g. {}; the alias \
         is unchanged: fix the rows, or rerun with --allow-rejected to swap without them (the sync dead-letters them)",
        first_three(examples)
    )]
    Unreadable { count: u64, examples: Vec<(Uuid, String)> },
    #[error("{0} is both the live index and marked as a reindex's unfinished one: fix the aliases by hand")]
    Tangled(String),
    #[error("interrupted")]
    Interrupted,
}

/// The heartbeat of a running reindex, kept in its index's mapping (`_meta.jobs_reindex`) and
/// written again every [`ReindexOptions::heartbeat`] with `beat` one higher. Another reindex told
/// to `--force` takes over only when `beat` stands still for four beats while it watches: the
/// counter, not the time, is compared, so no two clocks need to agree. `at` (the writer's clock),
/// `host` and `pid` are for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub beat: u64,
    pub every_ms: u64,
    pub pid: u32,
    pub host: String,
    pub at: String,
}

impl std::fmt::Display for Beat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}, last heartbeat at {} by its clock", self.pid, self.host, self.at)
    }
}

impl Beat {
    const KEY: &'static str = "jobs_reindex";

    fn first(every: Duration) -> Beat {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "an unknown host".to_owned());
        Beat {
            beat: 0,
            every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
            pid: std::process::id(),
            host,
            at: crate::clock::now().to_string(),
        }
    }

    fn meta(&self) -> Value {
        json!({ Beat::KEY: self })
    }

    /// The beat in an index's `_meta`: `Ok(None)` for an index an older `jobsctl` made (or
    /// anything else there), `Err(None)` when the index is gone.
    async fn read(client: &SearchClient, index: &str) -> Result<Option<Beat>, Option<SearchError>> {
        match client.index_meta(index).await {
            Ok(meta) => Ok(serde_json::from_value(meta[Beat::KEY].clone()).ok()),
            Err(e) if e.status() == 404 => Err(None),
            Err(e) => Err(Some(e)),
        }
    }

    /// Watches the reindex that wrote `last` into `index`: its beat is read every beat for four
    /// beats and two seconds more (a beat is late by a slow request's time, up to one beat), and
    /// so is the marker. The writer's interval is bounded (50 ms to 30 s): another process's data.
    async fn watch(
        client: &SearchClient,
        index: &str,
        last: &Beat,
        opts: &ReindexOptions,
    ) -> Result<Watched, SearchError> {
        let every = Duration::from_millis(last.every_ms.clamp(50, 30_000));
        let window = every * 4 + Duration::from_secs(2);
        let deadline = Instant::now() + window;
        tracing::info!(index, secs = window.as_secs_f64(), "watching the unfinished reindex's heartbeat");
        let marker = client.reindex_alias();
        while Instant::now() < deadline {
            tokio::time::sleep(every.min(deadline.saturating_duration_since(Instant::now()))).await;
            if interrupted(opts) {
                return Ok(Watched::Interrupted);
            }
            if client.alias_target(&marker).await?.as_deref() != Some(index) {
                return Ok(Watched::Ended);
            }
            match Beat::read(client, index).await {
                Ok(Some(now)) if now.beat != last.beat || now.pid != last.pid || now.host != last.host => {
                    return Ok(Watched::Beating(now));
                }
                Ok(_) => {}
                Err(None) => return Ok(Watched::Ended),
                Err(Some(e)) => return Err(e),
            }
        }
        Ok(Watched::Stopped)
    }
}

/// What watching an unfinished reindex found.
enum Watched {
    /// Its beat moved: it runs.
    Beating(Beat),
    /// Its beat stood still the whole time: it died.
    Stopped,
    /// It ended while watched (swapped, or failed and deleted its index): nothing to take over.
    Ended,
    /// An operator asked this reindex to stop.
    Interrupted,
}

/// Writes the heartbeat until dropped (with the reindex, however it ends).
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(client: &SearchClient, index: &str, mut beat: Beat) -> Heartbeat {
        let (client, index) = (client.clone(), index.to_owned());
        let every = Duration::from_millis(beat.every_ms.max(1));
        // Each write waits at most a beat (a second at least), so one slow cluster-state update
        // delays the next beat by no more than that; a watcher allows for it.
        let patience = every.max(Duration::from_secs(1));
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                beat.beat += 1;
                beat.at = crate::clock::now().to_string();
                if let Err(e) = client.put_index_meta(&index, &beat.meta(), Some(patience)).await {
                    tracing::warn!(error = %e, index, "reindex: could not write the heartbeat");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The first three of a list of (id, error), as a message names them.
fn first_three(examples: &[(Uuid, String)]) -> String {
    examples.iter().take(3).map(|(id, e)| format!("{id}: {e}")).collect::<Vec<_>>().join("; ")
}

pub fn run(args: &Args) -> ExitCode {
    block_on(async {
        init_tracing();
        let (store, client) = match connect("reindex").await {
            Ok(c) => c,
            Err(code) => return code,
        };
        interrupt::watch("reindex");
        let opts = ReindexOptions {
            batch_size: args.batch_size.max(1),
            parallel: args.parallel.max(1),
            catch_up: Duration::try_from_secs_f64(args.catch_up.max(0.0)).unwrap_or(Duration::MAX),
            force: args.force,
            allow_rejected: args.allow_rejected,
            interrupt: Some(&interrupt::INTERRUPTED),
            progress: true,
            ..ReindexOptions::default()
        };
        match reindex(&store, &client, &opts).await {
            Ok(report) => {
                match serde_json::to_string(&report) {
                    Ok(line) => println!("{line}"),
                    Err(e) => eprintln!("jobsctl reindex: {e}"),
                }
                eprintln!(
                    "jobsctl reindex: {} now points at {} ({} jobs, {:.0} docs/s); {} is kept: roll back with \
                     POST /_aliases {{\"actions\":[{{\"remove\":{{\"index\":\"{}\",\"alias\":\"{}\"}}}},{{\"add\":{{\"index\":\"{}\",\"alias\":\"{}\",\"is_write_index\":true}}}}]}}",
                    client.alias(),
                    report.new,
                    report.backfilled,
                    report.docs_per_sec,
                    report.old,
                    report.new,
                    client.alias(),
                    report.old,
                    client.alias()
                );
                if report.unreadable > 0 {
                    eprintln!(
                        "jobsctl reindex: {} job rows cannot be read and are not in the new index (as the sync leaves \
                         them out of search), e.g. {}",
                        report.unreadable,
                        first_three(&report.unreadable_examples)
                    );
                }
                if report.rejected > 0 {
                    eprintln!(
                        "jobsctl reindex: the new index refused {} jobs; queued for the sync, which dead-letters \
                         what it refuses again (jobsctl dead-letters)",
                        report.rejected
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jobsctl reindex: {e}");
                ExitCode::from(if matches!(e, ReindexError::Interrupted) { 130 } else { 1 })
            }
        }
    })
}

async fn step(opts: &ReindexOptions, s: ReindexStep) {
    if let Some(h) = &opts.hook {
        h(s).await;
    }
}

/// Reindexes (see the module docs). Drivable from tests: explicit options, any store.
pub async fn reindex<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    opts: &ReindexOptions,
) -> Result<ReindexReport, ReindexError> {
    let started = Instant::now();
    let marker = client.reindex_alias();
    // The next index is numbered past a dead reindex's too: if it was only stopped (a suspended
    // process) and wakes, its failure path deletes its own index, never ours.
    let mut past = 0;
    if let Some(stale) = client.alias_target(&marker).await? {
        past = client.index_version(&stale).unwrap_or(0);
        match Beat::read(client, &stale).await {
            Ok(last) if !opts.force => return Err(ReindexError::InProgress { index: stale, last }),
            Ok(last) => {
                let watched = match &last {
                    Some(last) => Beat::watch(client, &stale, last, opts).await?,
                    None => Watched::Stopped,
                };
                match watched {
                    Watched::Beating(beat) => return Err(ReindexError::Running { index: stale, beat }),
                    Watched::Ended => tracing::info!(index = %stale, "the unfinished reindex ended while watched"),
                    Watched::Stopped => take_over(client, &marker, &stale).await?,
                    Watched::Interrupted => return Err(ReindexError::Interrupted),
                }
            }
            // Gone between the two reads: it ended (its marker went with it).
            Err(None) => {}
            Err(Some(e)) => return Err(e.into()),
        }
    }
    // Read after any reindex before this one has ended: it may have swapped the alias.
    let old = client.ensure_index().await?;
    // An index (not an alias) by the marker's name is what a delete makes when it reaches the
    // marker alias just after a swap removed it: the engines create a missing index for a
    // delete even under `require_alias`. Ours are all named `-vN`, so it holds nothing of ours,
    // and creating the marker alias would fail on it, every time, --force or not.
    if client.is_index(&marker).await? {
        tracing::warn!(index = %marker, "an index has the reindex marker's name (a late delete made it): deleting it");
        client.delete_index(&marker).await?;
    }
    client.put_template().await?;
    let next = client.versions().await?.last().map_or(0, |(n, _)| *n).max(past).saturating_add(1);
    let new = client.index_name(next);
    let old_settings = client.index_settings(&old).await?;
    let mut body = client.index_body();
    body["settings"]["index"]["number_of_replicas"] = json!(0);
    body["settings"]["index"]["refresh_interval"] = json!("-1");
    body["aliases"] = json!({ marker.clone(): {} });
    let beat = Beat::first(opts.heartbeat);
    body["mappings"]["_meta"] = beat.meta();
    client.create_index(&new, &body).await?;
    let heartbeat = Heartbeat::start(client, &new, beat);
    tracing::info!(old = %old, new = %new, "reindex: created the new index; writes now go to both");

    let live = Live { index: &old, settings: &old_settings };
    match fill_and_swap(store, client, opts, live, &new, started, heartbeat).await {
        Ok(report) => Ok(report),
        Err(e) => {
            // Never the index the alias points at (a swap applied whose answer was lost is
            // handled where it happens; this keeps any other way there from deleting the live
            // index), nor one we cannot tell about.
            match client.alias_target(client.alias()).await {
                Ok(Some(live)) if live != new => {}
                Ok(None) => {}
                live => {
                    tracing::error!(error = %e, index = %new, ?live, "reindex failed; the new index is kept (the alias may point at it)");
                    return Err(e);
                }
            }
            tracing::error!(error = %e, index = %new, "reindex failed: deleting the new index; the alias is unchanged");
            if let Err(d) = client.delete_index(&new).await {
                tracing::error!(error = %d, index = %new, "could not delete the unfinished index (rerun with --force)");
                return Err(e);
            }
            // Changes the new index refused were dead-lettered though the live index took
            // them (the sync counts a change done only when every target has it): without the
            // new index they go through. What the live index refuses is dead-lettered again.
            match store.requeue_recent_dead_letters(since(started)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "reindex failed: its dead letters are back in line"),
                Err(r) => tracing::warn!(error = %r, "could not requeue the failed reindex's dead letters"),
            }
            Err(e)
        }
    }
}

/// Deletes a dead reindex's index, unless it is no longer the unfinished one: a reindex that
/// swapped just now made it the live index, which must never be taken.
async fn take_over(client: &SearchClient, marker: &str, stale: &str) -> Result<(), ReindexError> {
    if client.alias_target(marker).await?.as_deref() != Some(stale) {
        tracing::info!(index = %stale, "the unfinished reindex ended just now");
        return Ok(());
    }
    if client.alias_target(client.alias()).await?.as_deref() == Some(stale) {
        return Err(ReindexError::Tangled(stale.to_owned()));
    }
    tracing::warn!(index = %stale, "taking over from an unfinished reindex: deleting its index");
    client.delete_index(stale).await?;
    Ok(())
}

/// The window of the dead letters this reindex may have caused: since it started, read now
/// (a second more, for the clocks of the database and this process).
fn since(started: Instant) -> Duration {
    started.elapsed() + Duration::from_secs(1)
}

/// Whether an operator asked the reindex to stop.
fn interrupted(opts: &ReindexOptions) -> bool {
    opts.interrupt.is_some_and(|f| f.load(Ordering::SeqCst))
}

/// `Err(Interrupted)` once an operator asked to stop: checked between steps, never once the
/// swap is sent (from then on the reindex finishes, whatever happens).
fn check(opts: &ReindexOptions) -> Result<(), ReindexError> {
    if interrupted(opts) { Err(ReindexError::Interrupted) } else { Ok(()) }
}

/// The index the alias points at when the reindex starts, and its settings.
#[derive(Clone, Copy)]
struct Live<'a> {
    index: &'a str,
    settings: &'a Value,
}

async fn fill_and_swap<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    opts: &ReindexOptions,
    live: Live<'_>,
    new: &str,
    started: Instant,
    heartbeat: Heartbeat,
) -> Result<ReindexReport, ReindexError> {
    let (old, old_settings) = (live.index, live.settings);
    step(opts, ReindexStep::Created).await;
    let total = store.count_jobs().await?;
    let bar = if opts.progress { ProgressBar::new(u64::try_from(total).unwrap_or(0)) } else { ProgressBar::hidden() };
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} jobs  {per_sec}  ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let fill_started = Instant::now();
    let backfill = backfill(store, client, opts, new, &bar).await;
    bar.finish_and_clear();
    let backfill = backfill?;
    let backfill_ms = u64::try_from(fill_started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let docs_per_sec = backfill.sent as f64 / fill_started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(
        jobs = backfill.sent,
        rejected = backfill.rejected,
        ms = backfill_ms,
        docs_per_sec = docs_per_sec as u64,
        "reindex: backfilled"
    );
    step(opts, ReindexStep::Backfilled).await;
    // A job deleted after its page was read: the sync's delete found nothing in the new index
    // (done), and if the engine had forgotten that delete (`index.gc_deletes`, 60 s) when the
    // page arrived, it took the older version. Every delete since the backfill began is sent
    // again (to both indexes: the live one answers that it has it). A minute more: a delete is
    // dated by the start of its transaction, which may have begun before the backfill did.
    let resent = store.resend_recent_deletes(fill_started.elapsed() + Duration::from_secs(60)).await?;
    if resent > 0 {
        tracing::info!(deletes = resent, "reindex: deletes made during the backfill sent again");
    }
    if backfill.unreadable > 0 && !opts.allow_rejected {
        return Err(ReindexError::Unreadable { count: backfill.unreadable, examples: backfill.unreadable_examples });
    }
    if backfill.rejected > 0 {
        if !opts.allow_rejected {
            return Err(ReindexError::Rejected { count: backfill.rejected, examples: backfill.examples });
        }
        // Queued before the catch-up, which sends them to both indexes: the refusals become
        // dead letters, with the engine's reason, for an operator to see.
        for ids in backfill.rejected_ids.chunks(1_000) {
            store.resync_jobs(ids).await?;
        }
        tracing::warn!(rejected = backfill.rejected, "reindex: the new index refused jobs; queued for the sync");
    }

    check(opts)?;
    // Interrupted, the catch-up ends between batches, as `jobsctl sync` does.
    let mut deadline = Deadline::after(opts.catch_up);
    if let Some(flag) = opts.interrupt {
        deadline = deadline.or_when(flag);
    }
    let catch_up = sync_run::run(store, client, &opts.sync, deadline).await;
    check(opts)?;
    if catch_up.failed() {
        return Err(ReindexError::CatchUp(catch_up.error.clone().unwrap_or_else(|| format!("{:?}", catch_up.stopped))));
    }
    step(opts, ReindexStep::CaughtUp).await;

    let setting = |k: &str| old_settings.get(k).cloned().filter(|v| !v.is_null());
    let restore = json!({"index": {
        "number_of_replicas": setting("index.number_of_replicas").unwrap_or(json!(client.config().replicas)),
        "refresh_interval": setting("index.refresh_interval").unwrap_or(json!("1s")),
    }});
    client.put_settings(new, &restore).await?;
    check(opts)?;
    client.refresh(new).await?;
    check(opts)?;
    client.wait_for_yellow(new, Duration::from_secs(60)).await?;

    check(opts)?;
    // The catch-up and any other sync since the start wrote to both indexes, and retried or
    // dead-lettered what either refused, the error naming the index (the live one when both
    // refused: the swap loses nothing then). A refusal by the new index is a version it lacks:
    // swapped in, it would serve the older one (or none). So, as for the backfill's refusals,
    // no swap; the failure path puts them back in line. Looked at last, just before the swap.
    let window = since(started);
    let (late, examples) = store.recent_dead_letters(window, &format!("{}: ", client.reindex_alias()), 3).await?;
    if late > 0 && !opts.allow_rejected {
        return Err(ReindexError::DeadLettered { count: late, examples });
    }
    let alias = client.alias();
    // No beat after the swap: the index is live then, and its mapping keeps the last beat only.
    drop(heartbeat);
    let swap = json!({"actions": [
        {"remove": {"index": old, "alias": alias, "must_exist": true}},
        {"add": {"index": new, "alias": alias, "is_write_index": true}},
        {"remove": {"index": new, "alias": client.reindex_alias()}}
    ]});
    if let Err(e) = client.update_aliases(&swap).await {
        // The engine may have applied the swap and its answer been lost (a timeout, a dropped
        // connection): look before failing, or the failure path would take the live index.
        match client.alias_target(alias).await {
            Ok(Some(live)) if live == new => {
                tracing::warn!(error = %e, alias, new, "reindex: the swap's answer was lost, but it was applied");
            }
            _ => return Err(e.into()),
        }
    }
    tracing::info!(alias, old, new, "reindex: alias swapped; the old index is kept");
    // What was dead-lettered during the reindex (refused by the old index, which a reindex
    // often replaces for that reason, or by the new one when allowed) goes to the now live index
    // alone, which takes it or dead-letters it again.
    match store.requeue_recent_dead_letters(since(started)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "reindex: the dead letters of the reindex are back in line"),
        Err(r) => tracing::warn!(error = %r, "could not requeue the reindex's dead letters (jobsctl dead-letters)"),
    }

    let search_count = client.count(new).await.unwrap_or(0);
    let postgres_count = store.count_jobs().await.unwrap_or(-1);
    Ok(ReindexReport {
        old: old.to_owned(),
        new: new.to_owned(),
        backfilled: backfill.sent,
        rejected: backfill.rejected,
        rejected_examples: backfill.examples,
        unreadable: backfill.unreadable,
        unreadable_examples: backfill.unreadable_examples,
        bulk_requests: backfill.requests,
        backfill_ms,
        docs_per_sec,
        catch_up,
        search_count,
        postgres_count,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[derive(Default)]
struct Filled {
    sent: u64,
    rejected: u64,
    rejected_ids: Vec<Uuid>,
    examples: Vec<(Uuid, String)>,
    requests: u64,
    unreadable: u64,
    unreadable_examples: Vec<(Uuid, String)>,
}

/// Reads every job by keyset and sends it to `index`, `opts.parallel` bulks in flight.
async fn backfill<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    opts: &ReindexOptions,
    index: &str,
    bar: &ProgressBar,
) -> Result<Filled, ReindexError> {
    let mut filled = Filled::default();
    let mut inflight = FuturesUnordered::new();
    let mut after: Option<Uuid> = None;
    let mut read = 0u64;
    let batch = opts.batch_size.max(1);
    loop {
        // Interrupted: the bulks in flight end first (each after its current request: they
        // retry no more), so none reaches the engine after the failure path deletes the index,
        // which would make it again under the template.
        if interrupted(opts) {
            while inflight.next().await.is_some() {}
            return Err(ReindexError::Interrupted);
        }
        let page = store.scan_jobs(after, batch).await?;
        // By what the scan matched, not what it returned: a job deleted while its row was read
        // in parts makes a page short without it being the last.
        let last_page = page.matched < batch;
        after = page.last_id.or(after);
        filled.unreadable += page.unreadable.len() as u64;
        for u in page.unreadable {
            if filled.unreadable_examples.len() < 100 {
                filled.unreadable_examples.push((u.id, u.reason));
            }
        }
        let jobs = page.jobs;
        read += jobs.len() as u64;
        if !jobs.is_empty() {
            inflight.push(send_page(client.clone(), index.to_owned(), jobs, opts.interrupt));
        }
        step(opts, ReindexStep::BackfillPage(read)).await;
        while inflight.len() >= opts.parallel.max(1) || (last_page && !inflight.is_empty()) {
            let Some(page) = inflight.next().await else { break };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    // The other pages end first, so that no bulk follows the index's delete.
                    while inflight.next().await.is_some() {}
                    return Err(e);
                }
            };
            bar.inc(page.sent);
            filled.sent += page.sent;
            filled.rejected += page.rejected;
            filled.rejected_ids.extend(page.rejected_ids);
            filled.requests += page.requests;
            for ex in page.examples {
                if filled.examples.len() < 100 {
                    filled.examples.push(ex);
                }
            }
        }
        if last_page {
            return Ok(filled);
        }
    }
}

/// Sends one page, retrying what the engine asks to retry (whole requests and single items)
/// with backoff; what it rejects is counted, not retried.
async fn send_page(
    client: SearchClient,
    index: String,
    jobs: Vec<Job>,
    interrupt: Option<&'static AtomicBool>,
) -> Result<Filled, ReindexError> {
    const ATTEMPTS: u32 = 8;
    let mut out = Filled { sent: jobs.len() as u64, ..Filled::default() };
    let mut todo: Vec<&Job> = jobs.iter().collect();
    let targets = [index];
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            if interrupt.is_some_and(|f| f.load(Ordering::SeqCst)) {
                return Err(ReindexError::Interrupted);
            }
            let ms = (200u64 << attempt.min(6)) + crate::clock::random_u64() % 200;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let changes: Vec<Change<'_>> = todo.iter().map(|j| Change::Upsert(j)).collect();
        let report = client.bulk(&targets, &changes, None).await;
        out.requests += report.requests as u64;
        let mut again = Vec::new();
        for (job, o) in todo.iter().zip(report.outcomes) {
            match o {
                Some(Outcome::Indexed | Outcome::Stale) => {}
                Some(Outcome::Rejected { status, reason }) => {
                    out.rejected += 1;
                    out.rejected_ids.push(job.id);
                    out.examples.push((job.id, format!("{status}: {reason}")));
                }
                Some(Outcome::Retry { .. }) | None => again.push(*job),
            }
        }
        if again.is_empty() {
            return Ok(out);
        }
        if let Some(e) = &report.error {
            tracing::warn!(error = %e, attempt, "reindex: bulk failed; retrying");
        }
        todo = again;
    }
    Err(ReindexError::Backfill(format!("{} jobs still not taken after {ATTEMPTS} attempts", todo.len())))
}
