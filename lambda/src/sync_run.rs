//! The sync run: what the scheduled Lambda and `jobsctl sync` call to bring search up to date
//! with Postgres, and the API's write-through of one job.
//!
//! One step: claim a batch of due queue entries under a lease (concurrent runs skip each
//! other's rows), resolve where writes go *after* claiming (so a reindex that starts meanwhile
//! gets the batch too), `_bulk` the batch with external versioning (an older version never
//! overwrites a newer one, whatever order runs finish in), classify every item (core), and
//! execute the core's plan: mark exactly the indexed version (never backwards), schedule
//! retries with backoff and jitter, dead-letter with the error kept. A request that fails as a
//! whole (engine down, timeout) says nothing about the documents: their leases are released,
//! nothing is marked, and the run stops rather than hammer the engine. Steps repeat, on
//! `workers` concurrent loops, until nothing is due or the [`Deadline`] is near.
//!
//! Everything the run needs is passed in ([`SyncConfig`], the store, the client, the deadline),
//! and [`SyncConfig::hook`] lets a test stop a run dead between any two steps (as if its
//! process were killed) to check that nothing is lost.

use crate::clock;
use crate::db::Executor;
use crate::search::{SearchClient, SearchError};
use crate::store::{Claimed, Item, Store, StoreError};
use jobs_core::search::{Change, Outcome};
use jobs_core::sync::{self, Counts, Mark, Pending, PendingKind, Policy};
use serde::Serialize;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// When a run must be done by. In Lambda: the invocation's deadline minus a margin. From the
/// CLI, also when an operator interrupts (Ctrl-C, SIGTERM): the run then ends between batches as
/// at a deadline, finishing the batches in flight and handing back the ones claimed ahead, so no
/// lease is left to run out.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Option<Instant>,
    interrupt: Option<&'static AtomicBool>,
}

impl Deadline {
    pub fn at(instant: Instant) -> Deadline {
        Deadline { at: Some(instant), interrupt: None }
    }

    /// `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline { at: Instant::now().checked_add(budget), interrupt: None }
    }

    /// No time limit (`jobsctl sync --once` runs until clean).
    pub fn never() -> Deadline {
        Deadline { at: None, interrupt: None }
    }

    /// This deadline, or earlier: as soon as `flag` is set.
    pub fn or_when(self, flag: &'static AtomicBool) -> Deadline {
        Deadline { interrupt: Some(flag), ..self }
    }

    /// Whether the run was interrupted (rather than out of time).
    pub fn interrupted(&self) -> bool {
        self.interrupt.is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Time left for the work in flight (an interruption does not cut it short).
    pub fn remaining(&self) -> Duration {
        self.at.map_or(Duration::MAX, |at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether no new batch may start.
    pub fn passed(&self) -> bool {
        self.remaining().is_zero() || self.interrupted()
    }

    /// The instant it falls at (`None`: never).
    pub fn end(&self) -> Option<Instant> {
        self.at
    }

    /// Why a run that it ended stopped.
    fn stop(&self) -> Stop {
        if self.interrupted() { Stop::Interrupted } else { Stop::Deadline }
    }
}

/// A point in a batch's life, for [`SyncConfig::hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The batch is claimed (leased); nothing sent yet.
    Claimed,
    /// The bulk request(s) answered; nothing marked yet.
    Bulked,
    /// Outcomes recorded (marks, retries, dead letters, releases).
    Recorded,
}

/// What a hook wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop the run here without recording anything (leases stay until they expire), as a
    /// killed process would.
    Abort,
}

/// Called at each [`Step`] with the batch size.
pub type Hook = Arc<dyn Fn(Step, usize) -> Control + Send + Sync>;

/// How a run behaves.
#[derive(Clone)]
pub struct SyncConfig {
    /// Queue entries claimed per batch (one bulk request up to the client's limits).
    pub batch_size: usize,
    /// How long a claim keeps other runs off its rows. Longer than a batch takes; a run that
    /// dies leaves its rows to others after this.
    pub lease: Duration,
    /// Concurrent claim/bulk/mark loops within the run.
    pub workers: usize,
    /// Retry and dead-letter rules (core).
    pub policy: Policy,
    /// Stop after this many batches (across workers).
    pub max_batches: Option<u64>,
    /// The time limit of one bulk request (also bounded by the deadline).
    pub bulk_timeout: Duration,
    /// After a run that indexed or deleted something, refresh the index behind the alias
    /// (`POST _refresh`), so the changes are searchable when the run returns instead of at the
    /// engine's next scheduled refresh (up to `refresh_interval`, 1 s, later). It halves the
    /// change-to-searchable lag's tail at 500 updates/s (BENCHMARKS.md, "## Sync") and costs
    /// one cheap request per run that did something: a poller running every second adds about
    /// one refresh a second, which the scheduled refresh then skips.
    pub refresh: bool,
    pub hook: Option<Hook>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            batch_size: 1_000,
            lease: Duration::from_secs(120),
            workers: 2,
            policy: Policy::default(),
            max_batches: None,
            bulk_timeout: Duration::from_secs(30),
            refresh: true,
            hook: None,
        }
    }
}

impl std::fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncConfig")
            .field("batch_size", &self.batch_size)
            .field("lease", &self.lease)
            .field("workers", &self.workers)
            .field("policy", &self.policy)
            .field("max_batches", &self.max_batches)
            .field("bulk_timeout", &self.bulk_timeout)
            .field("refresh", &self.refresh)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Nothing due: the queue is empty, or holds only dead-lettered, backing-off or leased rows.
    Clean,
    MaxBatches,
    Deadline,
    /// An operator interrupted the run (Ctrl-C, SIGTERM): it ended as at a deadline.
    Interrupted,
    /// A request failed as a whole (engine down, timeout, auth): batch released.
    EngineUnavailable,
    /// The database failed; leased rows are retried when their lease ends.
    DatabaseError,
    /// A hook stopped the run.
    Aborted,
}

/// The sync backlog after a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lag {
    pub dirty: i64,
    pub dead_lettered: i64,
    pub oldest_age_ms: Option<i64>,
}

/// What a run did (the scheduled Lambda returns it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncSummary {
    pub stopped: Stop,
    /// The error behind `engine_unavailable` / `database_error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub batches: u64,
    pub claimed: u64,
    /// Per outcome (core): indexed, stale, retried, rejected, dead_lettered.
    pub counts: Counts,
    /// Rows marked synced (a row written again meanwhile is not: it stays dirty).
    pub marked: u64,
    /// Leases given back without an outcome (their request failed as a whole).
    pub released: u64,
    pub bulk_requests: u64,
    pub bulk_bytes: u64,
    /// The index was refreshed after the run ([`SyncConfig::refresh`]).
    pub refreshed: bool,
    pub elapsed_ms: u64,
    pub docs_per_sec: f64,
    /// The backlog when the run ended (`None` if it could not be read).
    pub lag: Option<Lag>,
}

impl SyncSummary {
    /// The run hit a failure (engine or database) rather than running out of work or time.
    pub fn failed(&self) -> bool {
        matches!(self.stopped, Stop::EngineUnavailable | Stop::DatabaseError)
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// A failure (or the deadline) stopped the run: claims in flight are handed back.
    halt: AtomicBool,
    /// A hook stopped the run dead: nothing more is recorded or released.
    aborted: AtomicBool,
    reason: Mutex<Option<(Stop, Option<String>)>>,
    batches: AtomicU64,
    claimed: AtomicU64,
    marked: AtomicU64,
    released: AtomicU64,
    bulk_requests: AtomicU64,
    bulk_bytes: AtomicU64,
    counts: Mutex<Counts>,
    /// The longest batch so far (send to recorded), in µs: no batch starts with less than twice
    /// that left.
    longest_us: AtomicU64,
}

impl Shared {
    /// Records why the run stops; the most serious reason wins.
    fn stop(&self, why: Stop, error: Option<String>) {
        if why >= Stop::Deadline {
            self.halt.store(true, Ordering::SeqCst);
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(mut r) = self.reason.lock()
            && r.as_ref().is_none_or(|(old, _)| why > *old)
        {
            *r = Some((why, error));
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn halting(&self) -> bool {
        self.halt.load(Ordering::SeqCst)
    }

    fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        self.stop(Stop::Aborted, None);
    }

    fn aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }
}

/// Makes sure the index and alias exist, then runs the sync until nothing is due, the
/// deadline is near, or a failure (see the module docs). Failures are in the summary.
pub async fn run<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    cfg: &SyncConfig,
    deadline: Deadline,
) -> SyncSummary {
    let started = Instant::now();
    let shared = Shared::default();
    // The index and alias must exist before anything is sent (one GET when they do).
    match within(deadline, cfg.bulk_timeout, client.ensure_index()).await {
        Ok(_) => {
            let workers = cfg.workers.max(1);
            let loops = (0..workers).map(|w| worker(w, store, client, cfg, deadline, &shared));
            futures_util::future::join_all(loops).await;
        }
        Err(e) => shared.stop(stop_for(&e, deadline), Some(e.to_string())),
    }

    let counts = shared.counts.lock().map(|c| *c).unwrap_or_default();
    let refreshed = cfg.refresh
        && counts.indexed > 0
        && !shared.aborted()
        && match within(deadline, cfg.bulk_timeout, client.refresh(client.alias())).await {
            Ok(()) => true,
            Err(e) => {
                // The documents are in; they become searchable at the next scheduled refresh.
                tracing::info!(error = %e, "refresh after the sync run failed");
                false
            }
        };
    let (stopped, error) = shared.reason.lock().ok().and_then(|mut r| r.take()).unwrap_or((Stop::Clean, None));
    // The backlog is a report, not work: it gets what is left of the deadline (at least a
    // half second of the margin behind it, at most five), never the invocation itself (a
    // run that ends at its deadline, the queue at its largest, counting a million entries).
    let lag_budget = deadline.remaining().clamp(Duration::from_millis(500), Duration::from_secs(5));
    let lag = match tokio::time::timeout(lag_budget, store.sync_lag()).await {
        Ok(Ok(l)) => Some(Lag { dirty: l.dirty, dead_lettered: l.dead_lettered, oldest_age_ms: l.oldest_age_ms }),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading the sync lag");
            None
        }
        Err(_) => {
            tracing::info!(budget_ms = lag_budget.as_millis() as u64, "reading the sync lag took too long; left out");
            None
        }
    };
    let elapsed = started.elapsed();
    let done = counts.indexed + counts.stale;
    let summary = SyncSummary {
        stopped,
        error,
        batches: shared.batches.load(Ordering::SeqCst),
        claimed: shared.claimed.load(Ordering::SeqCst),
        counts,
        marked: shared.marked.load(Ordering::SeqCst),
        released: shared.released.load(Ordering::SeqCst),
        bulk_requests: shared.bulk_requests.load(Ordering::SeqCst),
        bulk_bytes: shared.bulk_bytes.load(Ordering::SeqCst),
        refreshed,
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        docs_per_sec: if elapsed.as_secs_f64() > 0.0 { done as f64 / elapsed.as_secs_f64() } else { 0.0 },
        lag,
    };
    log_summary(&summary);
    summary
}

fn log_summary(s: &SyncSummary) {
    let (dirty, dead, age) =
        s.lag.as_ref().map_or((-1, -1, -1), |l| (l.dirty, l.dead_lettered, l.oldest_age_ms.unwrap_or(0)));
    let stopped = format!("{:?}", s.stopped);
    if s.failed() {
        tracing::warn!(
            stopped,
            error = s.error.as_deref().unwrap_or(""),
            batches = s.batches,
            claimed = s.claimed,
            indexed = s.counts.indexed,
            stale = s.counts.stale,
            retried = s.counts.retried,
            rejected = s.counts.rejected,
            dead_lettered = s.counts.dead_lettered,
            marked = s.marked,
            released = s.released,
            lag_dirty = dirty,
            lag_dead_lettered = dead,
            lag_oldest_ms = age,
            elapsed_ms = s.elapsed_ms,
            "sync run ended early"
        );
    } else if s.claimed == 0 {
        tracing::debug!(
            stopped,
            lag_dirty = dirty,
            lag_dead_lettered = dead,
            lag_oldest_ms = age,
            "sync run: nothing due"
        );
    } else {
        tracing::info!(
            stopped,
            batches = s.batches,
            claimed = s.claimed,
            indexed = s.counts.indexed,
            stale = s.counts.stale,
            retried = s.counts.retried,
            rejected = s.counts.rejected,
            dead_lettered = s.counts.dead_lettered,
            marked = s.marked,
            released = s.released,
            lag_dirty = dirty,
            lag_dead_lettered = dead,
            lag_oldest_ms = age,
            refreshed = s.refreshed,
            elapsed_ms = s.elapsed_ms,
            docs_per_sec = s.docs_per_sec as u64,
            "sync run done"
        );
    }
}

fn hook(cfg: &SyncConfig, step: Step, n: usize) -> Control {
    cfg.hook.as_ref().map_or(Control::Continue, |h| h(step, n))
}

/// One of the run's loops, pipelined: while batch n's bulk request is in flight, the loop
/// records batch n-1's outcomes and claims batch n+1, so the engine does not wait on Postgres
/// between bulks and the run keeps `workers` requests in flight. Every batch still goes claim
/// -> bulk -> record in that order ([`Step`]), and what a failure leaves behind is the same as
/// without pipelining: the batch ahead is handed back, the batch behind is recorded.
async fn worker<E: Executor>(
    w: usize,
    store: &Store<E>,
    client: &SearchClient,
    cfg: &SyncConfig,
    deadline: Deadline,
    shared: &Shared,
) {
    let mut ahead: Option<Vec<Claimed>> = None;
    let mut behind: Option<Sent> = None;
    let ended: Result<(), StoreError> = async {
        loop {
            let batch = match ahead.take() {
                Some(b) => b,
                // Another loop found the queue clean, or the run is over (a claim now would
                // only be handed back).
                None if shared.stopping() || deadline.passed() => {
                    if !shared.stopping() {
                        shared.stop(deadline.stop(), None);
                    }
                    return Ok(());
                }
                None => match claim(store, cfg, shared).await? {
                    Some(b) => b,
                    None => return Ok(()),
                },
            };
            if shared.aborted() {
                return Ok(());
            }
            // A batch claimed ahead is still sent when another loop found nothing more to do,
            // but handed back when the run halts or could not finish it in time: it starts
            // only with twice the longest batch so far left (send to recorded), since batch
            // times vary (an engine refresh or GC pause) and a batch the deadline cuts is work
            // thrown away.
            let longest = Duration::from_micros(shared.longest_us.load(Ordering::SeqCst));
            if shared.halting() || deadline.passed() || deadline.remaining() < longest.saturating_mul(2) {
                shared.stop(deadline.stop(), None);
                give_back(store, shared, &batch).await?;
                return Ok(());
            }
            let previous = behind.take();
            let (sent, next) = tokio::join!(send(store, client, cfg, deadline, shared, batch), async {
                if let Some(p) = previous {
                    record(w, store, cfg, shared, p).await?;
                }
                if shared.stopping() || deadline.passed() { Ok(None) } else { claim(store, cfg, shared).await }
            });
            // Keep both before looking at errors: the flush below records or hands back each.
            match (sent, next) {
                (Ok(s), Ok(n)) => {
                    behind = s;
                    ahead = n;
                }
                (Ok(s), Err(e)) => {
                    behind = s;
                    return Err(e);
                }
                (Err(e), Ok(n)) => {
                    ahead = n;
                    return Err(e);
                }
                (Err(e), Err(_)) => return Err(e),
            }
            if shared.aborted() {
                return Ok(());
            }
        }
    }
    .await;
    if let Err(e) = ended {
        tracing::error!(worker = w, error = %e, "sync step failed on the database");
        shared.stop(Stop::DatabaseError, Some(e.to_string()));
    }
    if shared.aborted() {
        // As if the process died here: leases stay until they expire.
        return;
    }
    let flushed: Result<(), StoreError> = async {
        if let Some(b) = ahead.take() {
            give_back(store, shared, &b).await?;
        }
        if let Some(s) = behind.take() {
            record(w, store, cfg, shared, s).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = flushed {
        tracing::error!(worker = w, error = %e, "sync step failed on the database");
        shared.stop(Stop::DatabaseError, Some(e.to_string()));
    }
}

/// Claims the next batch and counts it. `None` when nothing is due (the run is clean), the
/// batch budget is spent, or the run is halting (the claim is handed back untouched).
async fn claim<E: Executor>(
    store: &Store<E>,
    cfg: &SyncConfig,
    shared: &Shared,
) -> Result<Option<Vec<Claimed>>, StoreError> {
    if let Some(max) = cfg.max_batches {
        // Reserve a batch number; give it back if over.
        if shared.batches.fetch_add(1, Ordering::SeqCst) >= max {
            shared.batches.fetch_sub(1, Ordering::SeqCst);
            shared.stop(Stop::MaxBatches, None);
            return Ok(None);
        }
    } else {
        shared.batches.fetch_add(1, Ordering::SeqCst);
    }
    let claimed = match store.claim_dirty(cfg.batch_size.max(1), cfg.lease).await {
        Ok(c) => c,
        Err(e) => {
            shared.batches.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
    };
    if claimed.is_empty() {
        // Nothing claimed: not a batch.
        shared.batches.fetch_sub(1, Ordering::SeqCst);
        shared.stop(Stop::Clean, None);
        return Ok(None);
    }
    let n = claimed.len();
    shared.claimed.fetch_add(n as u64, Ordering::SeqCst);
    if shared.halting() {
        // Another worker hit a failure while this claim ran: hand the rows back untouched, as
        // if this claim had not happened.
        give_back(store, shared, &claimed).await?;
        return Ok(None);
    }
    if hook(cfg, Step::Claimed, n) == Control::Abort {
        shared.abort();
        return Ok(None);
    }
    Ok(Some(claimed))
}

/// Hands a claimed batch back unsent, as if it had not been claimed.
async fn give_back<E: Executor>(store: &Store<E>, shared: &Shared, batch: &[Claimed]) -> Result<(), StoreError> {
    let entries: Vec<Pending> = batch.iter().map(|c| c.pending.clone()).collect();
    store.release(&entries).await?;
    shared.claimed.fetch_sub(batch.len() as u64, Ordering::SeqCst);
    shared.batches.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

/// A batch whose bulk request(s) answered, to be recorded.
struct Sent {
    claimed: Vec<Claimed>,
    outcomes: Vec<Option<Outcome>>,
    reindexing: bool,
    bulk_ms: u64,
    began: Instant,
}

/// Sends one batch. `None` when nothing came back to record (where writes go could not be
/// resolved: the batch was released), or when a hook aborted the run.
async fn send<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    cfg: &SyncConfig,
    deadline: Deadline,
    shared: &Shared,
    claimed: Vec<Claimed>,
) -> Result<Option<Sent>, StoreError> {
    let began = Instant::now();
    // Where writes go, resolved after the claim (see the module docs).
    let targets = match within(deadline, cfg.bulk_timeout, client.targets()).await {
        Ok(t) => t,
        Err(e) => {
            // Stop first, so a claim that picks up these rows once released sees it.
            shared.stop(stop_for(&e, deadline), Some(e.to_string()));
            let entries: Vec<Pending> = claimed.iter().map(|c| c.pending.clone()).collect();
            let released = store.release(&entries).await?;
            shared.released.fetch_add(released, Ordering::SeqCst);
            return Ok(None);
        }
    };
    let changes: Vec<Change<'_>> = claimed.iter().map(Claimed::change).collect();
    let timeout = cfg.bulk_timeout.min(deadline.remaining()).max(Duration::from_millis(1));
    let t1 = Instant::now();
    // Each request within the bulk timeout, all of them by the deadline (a batch split in
    // several requests).
    let report = client.write_until(&targets, &changes, Some(timeout), deadline.end()).await;
    drop(changes);
    let bulk_ms = t1.elapsed().as_millis() as u64;
    // Known now, while the next batch may already be about to start (this one is recorded
    // beside it): the deadline check must not wait for the record to learn a batch was slow.
    shared.longest_us.fetch_max(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX), Ordering::SeqCst);
    shared.bulk_requests.fetch_add(report.requests as u64, Ordering::SeqCst);
    shared.bulk_bytes.fetch_add(report.bytes as u64, Ordering::SeqCst);
    if let Some(e) = &report.error {
        shared.stop(stop_for(e, deadline), Some(e.to_string()));
    }
    if hook(cfg, Step::Bulked, claimed.len()) == Control::Abort {
        shared.abort();
        return Ok(None);
    }
    Ok(Some(Sent { claimed, outcomes: report.outcomes, reindexing: targets.reindexing.is_some(), bulk_ms, began }))
}

/// Records a sent batch: the core's plan (marks, retries, dead letters), and the leases of
/// changes that were never answered handed back.
async fn record<E: Executor>(
    w: usize,
    store: &Store<E>,
    cfg: &SyncConfig,
    shared: &Shared,
    sent: Sent,
) -> Result<(), StoreError> {
    let n = sent.claimed.len();
    let mut rows: Vec<Pending> = Vec::with_capacity(n);
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(n);
    let mut unsent: Vec<Pending> = Vec::new();
    for (c, o) in sent.claimed.into_iter().zip(sent.outcomes) {
        match o {
            Some(o) => {
                rows.push(c.pending);
                outcomes.push(o);
            }
            None => unsent.push(c.pending),
        }
    }
    let t2 = Instant::now();
    let plan = sync::plan(&rows, &outcomes, clock::now(), clock::random_u64(), &cfg.policy);
    let marked = store.mark_synced(&plan.mark).await?;
    store.record_retries(&plan.retry).await?;
    store.dead_letter(&plan.dead_letter).await?;
    let released = store.release(&unsent).await?;
    shared.marked.fetch_add(marked.len() as u64, Ordering::SeqCst);
    shared.released.fetch_add(released, Ordering::SeqCst);
    if let Ok(mut c) = shared.counts.lock() {
        c.add(&plan.counts);
    }
    let us = u64::try_from(sent.began.elapsed().as_micros()).unwrap_or(u64::MAX);
    shared.longest_us.fetch_max(us, Ordering::SeqCst);
    tracing::debug!(
        worker = w,
        claimed = n,
        indexed = plan.counts.indexed,
        stale = plan.counts.stale,
        retried = plan.counts.retried,
        rejected = plan.counts.rejected,
        dead_lettered = plan.counts.dead_lettered,
        marked = marked.len(),
        released,
        bulk_ms = sent.bulk_ms,
        record_ms = t2.elapsed().as_millis() as u64,
        reindexing = sent.reindexing,
        "sync batch"
    );
    if hook(cfg, Step::Recorded, n) == Control::Abort {
        shared.abort();
    }
    Ok(())
}

/// `fut`, given at most `cap` and what is left of the deadline.
async fn within<T>(
    deadline: Deadline,
    cap: Duration,
    fut: impl std::future::Future<Output = Result<T, SearchError>>,
) -> Result<T, SearchError> {
    let limit = cap.min(deadline.remaining()).max(Duration::from_millis(1));
    tokio::time::timeout(limit, fut).await.unwrap_or(Err(SearchError::Timeout(limit)))
}

fn stop_for(e: &SearchError, deadline: Deadline) -> Stop {
    // Out of time, not interrupted: a request that timed out after an interrupt is the engine's.
    if matches!(e, SearchError::Timeout(_)) && deadline.remaining().is_zero() {
        Stop::Deadline
    } else {
        Stop::EngineUnavailable
    }
}

/// What a write-through did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum PushOutcome {
    /// Search has this version now and the row is marked synced.
    Synced { version: i64 },
    /// Search has this version now, but the row changed meanwhile (the sync sends the newer).
    Sent { version: i64 },
    /// No job and no tombstone with this id.
    NotFound,
    /// Not sent or not taken; the scheduled sync will deliver it.
    Failed { reason: String },
}

/// Pushes the current state of one job (or its deletion) to search right after a commit:
/// externally versioned like the sync, within `timeout`, and marked synced with the same
/// version guard. Failures are only logged: the row stays dirty and the sync delivers it.
pub async fn push_one<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    job_id: Uuid,
    timeout: Duration,
) -> PushOutcome {
    let out = match tokio::time::timeout(timeout, push_inner(store, client, job_id, timeout)).await {
        Ok(o) => o,
        Err(_) => PushOutcome::Failed { reason: format!("no answer within {} ms", timeout.as_millis()) },
    };
    if let PushOutcome::Failed { reason } = &out {
        tracing::info!(id = %job_id, reason, "write-through to search failed; the sync will deliver it");
    }
    out
}

async fn push_inner<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    job_id: Uuid,
    timeout: Duration,
) -> PushOutcome {
    let item = match store.get_unscoped(job_id).await {
        Ok(Some(job)) => Item::Job(job),
        Ok(None) => match store.tombstone(job_id).await {
            Ok(Some(t)) => Item::Tombstone(t),
            Ok(None) => return PushOutcome::NotFound,
            Err(e) => return PushOutcome::Failed { reason: e.to_string() },
        },
        Err(e) => return PushOutcome::Failed { reason: e.to_string() },
    };
    push_item(store, client, &item, timeout).await
}

/// [`push_one`] for a state already read (saves the read).
pub async fn push_item<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    item: &Item,
    timeout: Duration,
) -> PushOutcome {
    let (change, mark) = match item {
        Item::Job(job) => (Change::Upsert(job), Mark { id: job.id, version: job.version, kind: PendingKind::Upsert }),
        Item::Tombstone(t) => (
            Change::Delete { id: t.id, version: t.version },
            Mark { id: t.id, version: t.version, kind: PendingKind::Tombstone },
        ),
    };
    let targets = match client.targets().await {
        Ok(t) => t,
        Err(e) => return PushOutcome::Failed { reason: e.to_string() },
    };
    let report = client.write(&targets, &[change], Some(timeout)).await;
    match report.outcomes.into_iter().next().flatten() {
        Some(o) if o.is_done() => match store.mark_synced(std::slice::from_ref(&mark)).await {
            Ok(marked) if marked.contains(&mark.id) => PushOutcome::Synced { version: mark.version },
            Ok(_) => PushOutcome::Sent { version: mark.version },
            Err(e) => PushOutcome::Failed { reason: format!("sent, but marking failed: {e}") },
        },
        Some(Outcome::Retry { status, reason } | Outcome::Rejected { status, reason }) => {
            PushOutcome::Failed { reason: format!("{status}: {reason}") }
        }
        Some(_) | None => {
            PushOutcome::Failed { reason: report.error.map_or_else(|| "no outcome".to_owned(), |e| e.to_string()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines() {
        assert!(!Deadline::never().passed());
        assert_eq!(Deadline::never().remaining(), Duration::MAX);
        assert!(Deadline::after(Duration::ZERO).passed());
        let d = Deadline::after(Duration::from_secs(60));
        assert!(d.remaining() > Duration::from_secs(59) && !d.passed());
    }

    #[test]
    fn the_most_serious_stop_reason_wins() {
        let s = Shared::default();
        s.stop(Stop::Clean, None);
        s.stop(Stop::EngineUnavailable, Some("down".into()));
        s.stop(Stop::Deadline, None);
        let r = s.reason.lock().ok().and_then(|r| r.clone());
        assert_eq!(r, Some((Stop::EngineUnavailable, Some("down".into()))));
        assert!(s.stopping());
    }
}
