//! `jobsctl verify [--repair]`: checks that search holds exactly what Postgres holds. Streams
//! both sides in id order (search under a point in time with `search_after` on `id`, Postgres
//! by keyset on the primary key), compares (id, version), takes a second, real-time look at
//! every difference (a change in flight is not drift: Postgres is read before and after the
//! engine, and a row that moved in between is pending), and prints one JSON line per
//! difference and a summary line. Exit 1 on drift, 2 on an error (transient engine and
//! database errors are tried again a few times first; the alias moving to another index during
//! the run, a reindex's swap, is an error: run it again).
//!
//! Kinds: `missing` (a job search lacks), `stale` (search holds an older version), `extra` (a
//! document for a job Postgres does not have), `ahead` (search holds a *newer* version than
//! Postgres: restored database; only a reindex fixes it), and `pending` (a difference the sync
//! is about to deliver: not drift). `--repair` makes missing, stale and extra rows dirty again
//! (and requeues dead-lettered ones) so the next sync fixes them.

use super::sync::{block_on, connect, init_tracing};
use crate::db::Executor;
use crate::search::{DocRef, SearchClient, SearchError};
use crate::store::{ExtraDoc, Store, StoreError};
use futures_util::future::BoxFuture;
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Make drifted rows dirty again so the next sync fixes them
    #[arg(long)]
    pub repair: bool,
    /// Rows per page on each side
    #[arg(long, default_value_t = 5_000)]
    pub page_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    Missing,
    Stale,
    Ahead,
    Extra,
    Pending,
}

/// One difference between Postgres and search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub kind: DriftKind,
    pub id: String,
    /// The job's version in Postgres (`None`: no such job).
    pub postgres_version: Option<i64>,
    /// The version search holds (`None`: no document).
    pub search_version: Option<i64>,
    /// The sync gave up on this row (its error is in the queue).
    pub dead_lettered: bool,
    /// `--repair` queued it.
    pub repaired: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub index: String,
    pub postgres: u64,
    pub search: u64,
    pub matched: u64,
    pub missing: u64,
    pub stale: u64,
    pub ahead: u64,
    pub extra: u64,
    pub pending: u64,
    pub repaired: u64,
    pub elapsed_ms: u64,
}

impl VerifyReport {
    /// Differences the sync will not fix by itself.
    pub fn drift(&self) -> u64 {
        self.missing + self.stale + self.ahead + self.extra
    }
}

/// Where a second look at a batch of differences is (tests make a change in flight there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyStep {
    /// Postgres was read; the engine is next.
    ReadPostgres,
    /// The engine was read; Postgres again is next.
    ReadEngine,
}

pub type VerifyHook = Arc<dyn Fn(VerifyStep) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
pub struct VerifyOptions {
    pub repair: bool,
    pub page_size: usize,
    pub hook: Option<VerifyHook>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions { repair: false, page_size: 5_000, hook: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the alias moved from {from} to {to} during the run (a reindex swapped it): run verify again")]
    AliasMoved { from: String, to: String },
}

impl VerifyError {
    fn is_transient(&self) -> bool {
        match self {
            VerifyError::Search(e) => e.is_transient(),
            VerifyError::Store(e) => e.is_transient(),
            VerifyError::AliasMoved { .. } => false,
        }
    }
}

/// Attempts of a read on transient errors ([`crate::retry::reads`]; the scan's pages retry on
/// their own, by the same policy).
const ATTEMPTS: u32 = 5;

/// `read`, tried again on transient errors: an engine's 429 or a database failover hours into
/// a run should not throw the run away.
async fn again<T, E, Fut>(what: &str, mut read: impl FnMut() -> Fut) -> Result<T, VerifyError>
where
    Fut: Future<Output = Result<T, E>>,
    VerifyError: From<E>,
{
    crate::retry::reads(what, ATTEMPTS, VerifyError::is_transient, async || read().await.map_err(VerifyError::from))
        .await
}

/// `Err(AliasMoved)` once the alias no longer points at `index`: a swap makes every later
/// change miss the index being compared, which would read as drift.
async fn check_alias(client: &SearchClient, index: &str) -> Result<(), VerifyError> {
    match again("alias", || client.alias_target(client.alias())).await? {
        Some(now) if now == index => Ok(()),
        now => Err(VerifyError::AliasMoved { from: index.to_owned(), to: now.unwrap_or_else(|| "nothing".into()) }),
    }
}

pub fn run(args: &Args) -> ExitCode {
    block_on(async {
        init_tracing();
        let (store, client) = match connect("verify").await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let opts = VerifyOptions { repair: args.repair, page_size: args.page_size.max(1), hook: None };
        let mut out = std::io::stdout().lock();
        let result = verify(&store, &client, &opts, |d| {
            if let Ok(line) = serde_json::to_string(d) {
                let _ = writeln!(out, "{line}");
            }
        })
        .await;
        match result {
            Ok(report) => {
                if let Ok(line) = serde_json::to_string(&serde_json::json!({ "summary": report })) {
                    println!("{line}");
                }
                if report.drift() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS }
            }
            Err(e) => {
                eprintln!("jobsctl verify: {e}");
                ExitCode::from(2)
            }
        }
    })
}

/// Compares Postgres and search (see the module docs); `emit` gets every difference.
pub async fn verify<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    opts: &VerifyOptions,
    mut emit: impl FnMut(&Drift),
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let index = client.alias_target(client.alias()).await?.ok_or_else(|| {
        SearchError::Config(format!("the alias {:?} does not exist: nothing to verify against", client.alias()))
    })?;
    let mut report = VerifyReport { index: index.clone(), ..VerifyReport::default() };
    let page = opts.page_size.max(1);
    let mut scanner = client.scanner(&index, page).await?;
    let result = async {
        let mut pg: VecDeque<(String, i64)> = VecDeque::new();
        let mut es: VecDeque<DocRef> = VecDeque::new();
        let (mut pg_done, mut es_done) = (false, false);
        let mut pg_after: Option<Uuid> = None;
        let mut suspects: Vec<Suspect> = Vec::new();
        loop {
            if pg.is_empty() && !pg_done {
                let rows = again("scan", || store.scan_versions(pg_after, page)).await?;
                pg_done = rows.len() < page;
                pg_after = rows.last().map(|(id, _)| *id).or(pg_after);
                report.postgres += rows.len() as u64;
                pg.extend(rows.into_iter().map(|(id, v)| (id.to_string(), v)));
            }
            if es.is_empty() && !es_done {
                match scanner.next_page().await? {
                    Some(docs) => {
                        report.search += docs.len() as u64;
                        es.extend(docs);
                    }
                    None => es_done = true,
                }
            }
            // Uuid text in canonical form sorts like the uuid bytes, which is how both sides sort.
            let next = match (pg.front(), es.front()) {
                (None, None) if pg_done && es_done => break,
                (None, None) => continue,
                (Some(_), None) if !es_done => continue,
                (None, Some(_)) if !pg_done => continue,
                (Some((p, _)), Some(d)) => p.as_str().cmp(d.id.as_str()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
            };
            match next {
                Ordering::Equal => {
                    let (Some((id, v)), Some(doc)) = (pg.pop_front(), es.pop_front()) else { continue };
                    if v == doc.version {
                        report.matched += 1;
                    } else {
                        suspects.push(Suspect { id, doc: Some(doc) });
                    }
                }
                Ordering::Less => {
                    if let Some((id, _)) = pg.pop_front() {
                        suspects.push(Suspect { id, doc: None });
                    }
                }
                Ordering::Greater => {
                    if let Some(doc) = es.pop_front() {
                        suspects.push(Suspect { id: doc.id.clone(), doc: Some(doc) });
                    }
                }
            }
            if suspects.len() >= 500 {
                // Long runs of differences keep the scan from its next page: its snapshot is
                // renewed as they are looked at.
                scanner.keep_alive().await;
                recheck(store, client, &index, opts, std::mem::take(&mut suspects), &mut report, &mut emit).await?;
            }
        }
        recheck(store, client, &index, opts, suspects, &mut report, &mut emit).await?;
        check_alias(client, &index).await
    }
    .await;
    scanner.close().await;
    result?;
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        index = %report.index, postgres = report.postgres, search = report.search, matched = report.matched,
        missing = report.missing, stale = report.stale, ahead = report.ahead, extra = report.extra,
        pending = report.pending, repaired = report.repaired, elapsed_ms = report.elapsed_ms, "verify done"
    );
    Ok(report)
}

/// A difference seen in the streams, to be looked at again.
struct Suspect {
    id: String,
    doc: Option<DocRef>,
}

/// Looks at each suspect again, in real time on both sides, and reports what is still wrong.
async fn recheck<E: Executor>(
    store: &Store<E>,
    client: &SearchClient,
    index: &str,
    opts: &VerifyOptions,
    suspects: Vec<Suspect>,
    report: &mut VerifyReport,
    emit: &mut impl FnMut(&Drift),
) -> Result<(), VerifyError> {
    if suspects.is_empty() {
        return Ok(());
    }
    check_alias(client, index).await?;
    let ids: Vec<String> = suspects.iter().map(|s| s.id.clone()).collect();
    let uuids: Vec<Uuid> = ids.iter().filter_map(|i| Uuid::parse_str(i).ok()).collect();
    // Postgres before and after the engine: a row that moved in between is a change in flight
    // (the API's write-through may have pushed it already), whatever the engine said.
    let before = again("sync state", || store.sync_state_of(&uuids)).await?;
    if let Some(h) = &opts.hook {
        h(VerifyStep::ReadPostgres).await;
    }
    let docs = again("versions", || client.versions_of(index, &ids)).await?;
    if let Some(h) = &opts.hook {
        h(VerifyStep::ReadEngine).await;
    }
    let states = again("sync state", || store.sync_state_of(&uuids)).await?;
    let mut drifts = Vec::new();
    let mut resync = Vec::new();
    let mut deletes = Vec::new();
    for s in &suspects {
        let uuid = Uuid::parse_str(&s.id).ok();
        let state = uuid.and_then(|u| states.iter().find(|st| st.id == u));
        let moved = state != uuid.and_then(|u| before.iter().find(|st| st.id == u));
        // The engine's real-time answer, found or not, is final; the snapshot's copy stands in
        // only when the engine said nothing of the id. (A job deleted, delete pushed, after the
        // snapshot opened is in neither store now: not an extra document.)
        let now_doc = match docs.iter().find(|(id, _)| id == &s.id) {
            Some((_, doc)) => doc.as_ref(),
            None => s.doc.as_ref(),
        };
        let pg = state.and_then(|st| st.job_version);
        let es = now_doc.map(|d| d.version);
        if pg == es {
            report.matched += u64::from(pg.is_some());
            continue;
        }
        let queued = state.is_some_and(|st| st.queued);
        let dead = state.is_some_and(|st| st.dead_lettered);
        let kind = match (pg, es) {
            _ if (queued && !dead) || moved => DriftKind::Pending,
            (Some(_), None) => DriftKind::Missing,
            (Some(p), Some(e)) if e < p => DriftKind::Stale,
            (Some(_), Some(_)) => DriftKind::Ahead,
            (None, _) => DriftKind::Extra,
        };
        match kind {
            DriftKind::Missing | DriftKind::Stale => {
                if let Some(st) = state {
                    resync.push(st.id);
                }
            }
            DriftKind::Extra => {
                if let (Ok(id), Some(d)) = (Uuid::parse_str(&s.id), now_doc) {
                    deletes.push(ExtraDoc {
                        id,
                        version: d.version,
                        user_id: d.user_id.unwrap_or(Uuid::nil()),
                        workspace_id: d.workspace_id,
                    });
                }
            }
            DriftKind::Ahead | DriftKind::Pending => {}
        }
        drifts.push(Drift {
            kind,
            id: s.id.clone(),
            postgres_version: pg,
            search_version: es,
            dead_lettered: dead,
            repaired: false,
        });
    }
    let mut repaired: Vec<Uuid> = Vec::new();
    if opts.repair {
        repaired.extend(store.resync_jobs(&resync).await?);
        repaired.extend(store.resync_deletes(&deletes).await?);
    }
    for mut d in drifts {
        match d.kind {
            DriftKind::Missing => report.missing += 1,
            DriftKind::Stale => report.stale += 1,
            DriftKind::Ahead => report.ahead += 1,
            DriftKind::Extra => report.extra += 1,
            DriftKind::Pending => report.pending += 1,
        }
        if repaired.iter().any(|r| r.to_string() == d.id) {
            d.repaired = true;
            report.repaired += 1;
        }
        emit(&d);
    }
    Ok(())
}
