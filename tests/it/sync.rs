//! The sync against real Postgres and real engines (each test once per engine): end to end,
//! concurrent runs, a poison row, the engine down, a run killed between bulk and mark, the API's
//! write-through, reindex under concurrent writes, and verify with --repair.

use jobs_core::model::{Job, JobStatus};
use jobs_core::search::Change;
use jobs_core::sql::Param;
use jobs_core::sync::Policy;
use jobs_faultproxy::{self as faultproxy, FaultProxy};
use jobs_lambda::cli::reindex::{self, ReindexOptions, ReindexStep};
use jobs_lambda::cli::verify::{self, Drift, DriftKind, VerifyOptions, VerifyReport};
use jobs_lambda::db::Executor;
use jobs_lambda::pg::PgExecutor;
use jobs_lambda::search::SearchClient;
use jobs_lambda::store::{Scope, Store};
use jobs_lambda::sync_run::{self, Control, Deadline, PushOutcome, Step, Stop, SyncConfig, SyncSummary};
use jobs_tests::search_env::{Gate, SearchFixture, dead_url};
use jobs_tests::store_suite::{new_id, patch};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

jobs_tests::per_engine!(
    sync_end_to_end,
    a_run_leaves_its_changes_searchable,
    concurrent_sync_runs_and_writers_converge,
    rejected_document_dead_letters_without_blocking_others,
    a_write_blocked_index_delays_not_dead_letters,
    a_change_too_large_alone_is_rejected_not_a_stop,
    engine_down_releases_the_batch,
    run_killed_between_bulk_and_mark_loses_nothing,
    deadline_ends_the_run_between_batches,
    an_interrupted_run_leaves_no_lease_behind,
    write_through_pushes_one_job,
    a_recreated_id_continues_past_its_delete,
    reindex_with_concurrent_writes_then_swap,
    a_delete_during_the_backfill_stays_deleted,
    a_reindex_swap_applied_but_unanswered_is_a_swap,
    a_reindex_whose_new_index_refuses_jobs_does_not_swap,
    a_reindex_tells_the_new_index_s_refusals_from_the_live_one_s,
    a_reindex_leaves_out_a_row_it_cannot_read,
    an_interrupted_reindex_leaves_no_index_behind,
    force_takes_over_only_a_reindex_whose_heartbeat_stopped,
    a_late_delete_leaves_no_index_in_a_reindex_s_way,
    verify_detects_and_repair_fixes_drift,
    verify_ignores_a_job_deleted_during_its_scan,
    verify_takes_a_change_during_its_second_look_for_one_in_flight,
    verify_rides_out_an_outage_and_stops_when_the_alias_moves,
);

const MINUTE: Duration = Duration::from_secs(60);

async fn run(f: &SearchFixture, cfg: &SyncConfig) -> SyncSummary {
    sync_run::run(f.store(), &f.client, cfg, Deadline::after(MINUTE)).await
}

/// Runs the sync until nothing is waiting (retries included), for at most `budget`.
async fn drain(f: &SearchFixture, cfg: &SyncConfig, budget: Duration) -> SyncSummary {
    let until = Instant::now() + budget;
    loop {
        let s = run(f, cfg).await;
        let dirty = s.lag.as_ref().map_or(1, |l| l.dirty);
        if dirty == 0 || Instant::now() > until {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn verify_quiet(f: &SearchFixture, repair: bool) -> (VerifyReport, Vec<Drift>) {
    let mut drifts = Vec::new();
    let report = verify::verify(
        f.store(),
        &f.client,
        &VerifyOptions { repair, page_size: 97, ..VerifyOptions::default() },
        |d| drifts.push(d.clone()),
    )
    .await
    .expect("verify");
    (report, drifts)
}

/// A job whose row says "synced" though search never got it (a lost write): its id.
async fn lost_write(f: &SearchFixture, me: &Scope, project: &str) -> Uuid {
    let id = new_id();
    f.pg.db()
        .execute(
            "INSERT INTO job (id, user_id, status, type, project_name, es_synced_at) VALUES ($1::uuid, $2::uuid, 'QUEUED', 'BUILD', $3::text, now())",
            &[Param::Uuid(id), Param::Uuid(me.user_id), Param::Text(project.to_owned())],
        )
        .await
        .expect("insert");
    id
}

/// A verify hook that, at `at`, does what the API would between verify's reads: changes
/// `update`, deletes `delete`, and pushes each to search at once.
fn change_at(
    f: &SearchFixture,
    me: &Scope,
    at: verify::VerifyStep,
    update: Option<Uuid>,
    delete: Option<Uuid>,
) -> verify::VerifyHook {
    let (store, client, me) = (f.store().clone(), f.client.clone(), me.clone());
    Arc::new(move |step| {
        let (store, client, me) = (store.clone(), client.clone(), me.clone());
        Box::pin(async move {
            if step != at {
                return;
            }
            if let Some(id) = update {
                let current = store.get(&me, id).await.expect("the job");
                store.update(&me, &patch(&current, json!({"status": "SUCCEEDED"}))).await.expect("update");
            }
            if let Some(id) = delete {
                store.delete(&me, id, None).await.expect("delete");
            }
            for id in update.into_iter().chain(delete) {
                let pushed = sync_run::push_one(&store, &client, id, Duration::from_secs(5)).await;
                assert!(matches!(pushed, PushOutcome::Synced { .. }), "{pushed:?}");
            }
        })
    })
}

/// A newer version of a job marked synced without reaching search (a buggy marker).
async fn stale_mark(f: &SearchFixture, id: Uuid) {
    let db = f.pg.db();
    db.execute("UPDATE job SET status = 'RUNNING', version = version + 1 WHERE id = $1::uuid", &[Param::Uuid(id)])
        .await
        .expect("update");
    db.execute(
        "UPDATE job SET es_sync_version = version, es_synced_at = now() WHERE id = $1::uuid",
        &[Param::Uuid(id)],
    )
    .await
    .expect("mark");
}

/// No queue entry is leased: every claim was recorded or handed back.
async fn assert_no_lease(f: &SearchFixture) {
    let leased =
        f.pg.db().query("SELECT count(*) FROM job_sync_queue WHERE claimed_until > now()", &[]).await.expect("leases");
    assert_eq!(leased, vec![vec![jobs_lambda::db::Cell::Int(0)]], "no lease left behind");
}

/// Every document of the alias: id -> (version, project).
async fn search_side(client: &SearchClient) -> BTreeMap<Uuid, i64> {
    let index = client.alias_target(client.alias()).await.expect("alias").expect("an index");
    let mut scanner = client.scanner(&index, 500).await.expect("scanner");
    let mut out = BTreeMap::new();
    while let Some(page) = scanner.next_page().await.expect("page") {
        for d in page {
            out.insert(Uuid::parse_str(&d.id).expect("uuid id"), d.version);
        }
    }
    scanner.close().await;
    out
}

async fn postgres_side(store: &Store<PgExecutor>) -> BTreeMap<Uuid, i64> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page = store.scan_versions(after, 1000).await.expect("scan");
        after = page.last().map(|(id, _)| *id);
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return out;
        }
    }
}

async fn create_many(f: &SearchFixture, scope: &Scope, n: usize, prefix: &str) -> Vec<Job> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"type": "BUILD", "project_name": format!("{prefix}-{}", i % 7), "metadata": {"cpuCores": i % 16 + 1}});
        out.push(f.pg.create(scope, body).await);
    }
    out
}

/// With the engine's scheduled refreshes off, only the run's own refresh can make documents
/// searchable: a run with `refresh: false` leaves them invisible to `_count`, the default run
/// makes them visible, and a run that did nothing does not refresh.
async fn a_run_leaves_its_changes_searchable(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "sync_refresh").await else { return };
    let me = f.pg.user("refresh@example.com").await;
    let index = f.client.ensure_index().await.expect("index");
    f.client.put_settings(&index, &json!({"index": {"refresh_interval": "-1"}})).await.expect("refresh off");
    let alias = f.client.alias().to_owned();

    create_many(&f, &me, 12, "quiet").await;
    let s = run(&f, &SyncConfig { refresh: false, ..SyncConfig::default() }).await;
    assert_eq!((s.counts.indexed, s.refreshed), (12, false), "{s:?}");
    assert_eq!(f.client.count(&alias).await.expect("count"), 0, "nothing refreshed yet");

    create_many(&f, &me, 5, "loud").await;
    let s = run(&f, &SyncConfig::default()).await;
    assert_eq!((s.counts.indexed, s.refreshed), (5, true), "{s:?}");
    assert_eq!(f.client.count(&alias).await.expect("count"), 17, "the run refreshed the index");

    let s = run(&f, &SyncConfig::default()).await;
    assert_eq!((s.claimed, s.refreshed), (0, false), "{s:?}");
}

async fn sync_end_to_end(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "sync_e2e").await else { return };
    let mut me = f.pg.user("me@example.com").await;
    let ws = f.pg.workspace(&mut [&mut me]).await;
    let jobs = create_many(&f, &me, 120, "svc").await;
    // Updates and deletes before the first sync: the sync sends the latest state only.
    for j in &jobs[..30] {
        let next = patch(j, json!({"status": "RUNNING"}));
        f.store().update(&me, &next).await.expect("update");
    }
    for j in &jobs[30..40] {
        f.store().delete(&me, j.id, None).await.expect("delete");
    }
    let s = run(&f, &SyncConfig { batch_size: 25, ..SyncConfig::default() }).await;
    assert_eq!(s.stopped, Stop::Clean, "{s:?}");
    assert_eq!(s.claimed, 120, "110 jobs and 10 tombstones");
    assert_eq!((s.counts.indexed, s.counts.retried, s.counts.rejected), (120, 0, 0));
    assert_eq!(s.marked, 120);
    assert!(s.batches >= 5);
    assert_eq!(s.lag.as_ref().map(|l| (l.dirty, l.dead_lettered)), Some((0, 0)));
    f.refresh().await;
    assert_eq!(search_side(&f.client).await, postgres_side(f.store()).await, "search equals Postgres");

    // More changes after the first sync: updates (twice), deletes, creates in a workspace.
    for j in &jobs[40..60] {
        let cur = f.store().get(&me, j.id).await.expect("get");
        let next = f.store().update(&me, &patch(&cur, json!({"status": "RUNNING"}))).await.expect("update");
        f.store().update(&me, &patch(&next, json!({"status": "SUCCEEDED"}))).await.expect("update");
    }
    for j in &jobs[60..70] {
        f.store().delete(&me, j.id, Some(j.version)).await.expect("delete");
    }
    for i in 0..15 {
        f.pg.create(&me, json!({"type": "DEPLOY", "project_name": format!("new-{i}"), "workspace_id": ws})).await;
    }
    // Nothing searchable changes until the sync runs (the sync, not the write, feeds search).
    let s = run(&f, &SyncConfig::default()).await;
    assert_eq!((s.claimed, s.counts.indexed, s.marked), (45, 45, 45), "{s:?}");
    f.refresh().await;
    let (es, pg) = (search_side(&f.client).await, postgres_side(f.store()).await);
    assert_eq!(es, pg);
    assert_eq!(pg.len(), 120 - 20 + 15);
    // The documents are the jobs: spot-check content through the engine.
    let any = &jobs[45];
    let (doc, v) = f.client.get(any.id, None).await.expect("get").expect("found");
    assert_eq!((doc.status, v), (JobStatus::Succeeded, any.version + 2));
    let (report, drifts) = verify_quiet(&f, false).await;
    assert_eq!((report.drift(), report.pending, report.matched), (0, 0, 115), "{drifts:?}");
    // Nothing to do: a clean run does nothing.
    let s = run(&f, &SyncConfig::default()).await;
    assert_eq!((s.stopped, s.claimed, s.batches), (Stop::Clean, 0, 0));
    f.cleanup().await;
}

async fn concurrent_sync_runs_and_writers_converge(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "sync_concurrent").await else { return };
    let me = f.pg.user("me@example.com").await;
    let jobs = create_many(&f, &me, 400, "c").await;
    f.client.ensure_index().await.expect("index");
    let cfg = SyncConfig { batch_size: 20, workers: 2, ..SyncConfig::default() };
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    // A writer updating and deleting while four runs sync.
    let writer = {
        let store = f.store().clone();
        let me = me.clone();
        let jobs = jobs.clone();
        let stop = stop.clone();
        let writes = writes.clone();
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) && i < 300 {
                // Each job once (7 and 400 are coprime): every write must succeed.
                let j = &jobs[(i * 7) % jobs.len()];
                if i % 10 == 9 {
                    store.delete(&me, j.id, None).await.expect("delete");
                } else {
                    let cur = store.get(&me, j.id).await.expect("get");
                    let status = if cur.status == JobStatus::Queued { "RUNNING" } else { "SUCCEEDED" };
                    store.update(&me, &patch(&cur, json!({"status": status}))).await.expect("update");
                }
                writes.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        })
    };
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let store = f.store().clone();
            let client = f.client.clone();
            let cfg = cfg.clone();
            tokio::spawn(async move { sync_run::run(&store, &client, &cfg, Deadline::after(MINUTE)).await })
        })
        .collect();
    let mut claimed = 0;
    for r in runs {
        let s = r.await.expect("run");
        assert!(!s.failed(), "{s:?}");
        claimed += s.claimed;
    }
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    // Leases keep runs off each other's rows: every job at least once, and at most once per
    // version (a write makes one more: an update's version, a delete's tombstone).
    let written = writes.load(Ordering::SeqCst);
    assert!(written > 0, "the writer wrote");
    assert!((400..=400 + written).contains(&claimed), "{claimed} claims for 400 jobs and {written} writes");
    let s = drain(&f, &cfg, MINUTE).await;
    assert_eq!(s.lag.as_ref().map(|l| l.dirty), Some(0));
    f.refresh().await;
    assert_eq!(
        search_side(&f.client).await,
        postgres_side(f.store()).await,
        "after {} writes",
        writes.load(Ordering::SeqCst)
    );
    let (report, drifts) = verify_quiet(&f, false).await;
    assert_eq!(report.drift() + report.pending, 0, "{drifts:?}");
    f.cleanup().await;
}

async fn rejected_document_dead_letters_without_blocking_others(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "sync_poison").await else { return };
    // An index whose mapping refuses some documents: hostname as an IP address.
    let mut body = f.client.index_body();
    body["mappings"]["properties"]["hostname"] = json!({"type": "ip"});
    body["aliases"] = json!({ f.client.alias(): {"is_write_index": true} });
    f.client.create_index(&f.client.index_name(1), &body).await.expect("strict index");
    let me = f.pg.user("me@example.com").await;
    let good = create_many(&f, &me, 30, "ok").await;
    let mut bad = Vec::new();
    for i in 0..3 {
        bad.push(
            f.pg.create(
                &me,
                json!({"type": "SCAN", "project_name": format!("bad-{i}"), "hostname": "build-host.example.com"}),
            )
            .await,
        );
    }
    let ok_ip = f.pg.create(&me, json!({"type": "SCAN", "project_name": "ip", "hostname": "10.0.0.7"})).await;
    let policy = Policy { max_rejected_attempts: 3, max_retry_attempts: 10, base_backoff_ms: 10, max_backoff_ms: 40 };
    let cfg = SyncConfig { batch_size: 8, policy, ..SyncConfig::default() };
    let first = run(&f, &cfg).await;
    assert_eq!(first.stopped, Stop::Clean);
    assert_eq!(first.counts.indexed, 31, "the poison rows do not hold up the others: {first:?}");
    assert!(first.counts.rejected >= 3, "{first:?}");
    let s = drain(&f, &cfg, Duration::from_secs(20)).await;
    assert_eq!(s.lag.as_ref().map(|l| (l.dirty, l.dead_lettered)), Some((0, 3)), "{s:?}");
    for b in &bad {
        let q = f.store().queue_entry(b.id).await.expect("queue").expect("still queued");
        assert!(q.dead_lettered_at.is_some());
        assert_eq!(q.attempts, 3);
        let err = q.last_error.unwrap_or_default();
        assert!(err.starts_with("400: ") && err.contains("parse"), "the error is kept: {err}");
    }
    f.refresh().await;
    let es = search_side(&f.client).await;
    assert_eq!(es.len(), 31);
    assert!(good.iter().chain([&ok_ip]).all(|j| es.contains_key(&j.id)));
    // verify calls them drift (dead-lettered), not pending.
    let (report, drifts) = verify_quiet(&f, false).await;
    assert_eq!(report.missing, 3);
    assert!(drifts.iter().all(|d| d.kind == DriftKind::Missing && d.dead_lettered), "{drifts:?}");
    // A new version of a dead-lettered row is tried again (and fixed, here).
    let fixed = f.store().update(&me, &patch(&bad[0], json!({"hostname": "10.0.0.8"}))).await.expect("update");
    let s = drain(&f, &cfg, Duration::from_secs(20)).await;
    assert_eq!(s.lag.as_ref().map(|l| l.dead_lettered), Some(2));
    assert_eq!(f.client.get(fixed.id, None).await.expect("get").map(|(_, v)| v), Some(fixed.version));
    f.cleanup().await;
}

/// An index that refuses writes for a while (`index.blocks.write`: a shrink, a clone, an
/// operator; read-only when the disk is full) answers each item 403 `cluster_block_exception`.
/// That says nothing against the documents: they wait and are indexed once the block is lifted.
/// They were dead-lettered (a 403 counted as the document's fault), after three attempts within
/// seconds, and stayed out of date until an operator requeued them.
async fn a_write_blocked_index_delays_not_dead_letters(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "sync_blocked").await else { return };
    let me = f.pg.user("blocked@example.com").await;
    let index = f.client.ensure_index().await.expect("index");
    let jobs = create_many(&f, &me, 6, "blocked").await;
    f.client.put_settings(&index, &json!({"index": {"blocks": {"write": true}}})).await.expect("block writes");
    // A rejection would dead-letter at its first attempt.
    let policy = Policy { max_rejected_attempts: 1, max_retry_attempts: 100, base_backoff_ms: 10, max_backoff_ms: 20 };
    let cfg = SyncConfig { policy, ..SyncConfig::default() };
    for _ in 0..3 {
        let s = run(&f, &cfg).await;
        assert_eq!((s.counts.indexed, s.counts.rejected), (0, 0), "{s:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let lag = f.store().sync_lag().await.expect("lag");
    assert_eq!((lag.dirty, lag.dead_lettered), (6, 0));
    f.client.put_settings(&index, &json!({"index": {"blocks": {"write": false}}})).await.expect("unblock");
    let s = drain(&f, &cfg, Duration::from_secs(20)).await;
    assert_eq!(s.lag.as_ref().map(|l| (l.dirty, l.dead_lettered)), Some((0, 0)), "{s:?}");
    for j in &jobs {
        assert_eq!(f.client.get(j.id, None).await.expect("get").map(|(_, v)| v), Some(j.version));
    }
    f.cleanup().await;
}

/// A change over the engine's request size limit even alone (a 64 KB error message, an engine
/// with a small `http.max_content_length`: here the fault proxy's) is rejected and dead-lettered;
/// it does not stop the run, nor every later run, in front of the changes behind it.
async fn a_change_too_large_alone_is_rejected_not_a_stop(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "sync_too_large").await else { return };
    f.client.ensure_index().await.expect("index");
    let proxy =
        FaultProxy::start_with(faultproxy::Options { max_body: 48 * 1024, ..faultproxy::Options::new(&f.url, 1) })
            .await
            .expect("fault proxy");
    let client = f.client_via(&proxy.url()).await;
    let me = f.pg.user("me@example.com").await;
    let mut ids = create_many(&f, &me, 12, "small").await.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let big = f.pg.create(&me, json!({"type": "BUILD", "project_name": "big", "status": "RUNNING"})).await;
    let big = f
        .store()
        .update(&me, &patch(&big, json!({"status": "FAILED", "error_message": "x".repeat(60_000)})))
        .await
        .expect("update");
    ids.extend(create_many(&f, &me, 12, "after").await.into_iter().map(|j| j.id));
    let policy = Policy { max_rejected_attempts: 1, ..Policy::default() };
    let cfg = SyncConfig { policy, ..SyncConfig::default() };
    let s = sync_run::run(f.store(), &client, &cfg, Deadline::after(MINUTE)).await;
    assert_eq!((s.stopped, s.counts.indexed, s.counts.rejected), (Stop::Clean, 24, 1), "{s:?}");
    assert_eq!(s.lag.as_ref().map(|l| (l.dirty, l.dead_lettered)), Some((0, 1)), "{s:?}");
    let q = f.store().queue_entry(big.id).await.expect("queue").expect("dead-lettered, kept");
    assert!(q.dead_lettered_at.is_some(), "{q:?}");
    assert!(q.last_error.as_deref().is_some_and(|e| e.starts_with("413: ")), "{q:?}");
    f.refresh().await;
    let es = search_side(&f.client).await;
    assert!(ids.iter().all(|id| es.contains_key(id)) && !es.contains_key(&big.id), "{} documents", es.len());
    f.cleanup().await;
}

async fn engine_down_releases_the_batch(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "sync_down").await else { return };
    f.client.ensure_index().await.expect("index");
    let me = f.pg.user("me@example.com").await;
    let jobs = create_many(&f, &me, 10, "down").await;
    // Nothing listening: the run does not even claim (the index check fails first).
    let dead = f.client_via(&dead_url().await).await;
    let s = sync_run::run(f.store(), &dead, &SyncConfig::default(), Deadline::after(MINUTE)).await;
    assert_eq!(s.stopped, Stop::EngineUnavailable, "{s:?}");
    assert!(s.error.as_deref().is_some_and(|e| e.contains("unreachable")), "{s:?}");
    assert_eq!((s.claimed, s.marked), (0, 0));
    assert!(s.failed());
    // The engine goes down after the batch is claimed: the batch is released, not retried.
    let gate = Arc::new(Gate::start(&f.url).await);
    let through = f.client_via(&gate.url()).await;
    let g = gate.clone();
    let cfg = SyncConfig {
        hook: Some(Arc::new(move |step, _| {
            if step == Step::Claimed {
                g.set_open(false);
            }
            Control::Continue
        })),
        workers: 1,
        ..SyncConfig::default()
    };
    let s = sync_run::run(f.store(), &through, &cfg, Deadline::after(MINUTE)).await;
    assert_eq!(s.stopped, Stop::EngineUnavailable, "{s:?}");
    assert_eq!((s.claimed, s.released, s.marked, s.counts.retried), (10, 10, 0, 0), "{s:?}");
    for j in &jobs {
        let q = f.store().queue_entry(j.id).await.expect("queue").expect("still dirty");
        assert_eq!((q.attempts, q.claimed_until, q.dead_lettered_at), (0, None, None), "not the document's fault");
    }
    // The engine answers the target lookup but the bulk request dies: released too.
    gate.set_open(true);
    let g = gate.clone();
    let cfg = SyncConfig {
        hook: Some(Arc::new(move |step, _| {
            if step == Step::Claimed {
                g.cut_after(1);
            }
            Control::Continue
        })),
        workers: 1,
        ..SyncConfig::default()
    };
    let s = sync_run::run(f.store(), &through, &cfg, Deadline::after(MINUTE)).await;
    assert_eq!((s.stopped, s.claimed, s.released, s.marked), (Stop::EngineUnavailable, 10, 10, 0), "{s:?}");
    assert_eq!(s.bulk_requests, 1, "the bulk was sent: {s:?}");
    // A request timing out is the same: nothing marked, batch released.
    let slow = SearchClient::new(
        // (The timeout covers the run's requests before its claim too: room for a loaded box.)
        SearchFixture::config(&gate.url(), f.client.alias()).request_timeout(Duration::from_millis(1_500)),
    )
    .await
    .expect("client");
    let g = gate.clone();
    let cfg = SyncConfig {
        hook: Some(Arc::new(move |step, _| {
            if step == Step::Claimed {
                g.set_delay(Duration::from_millis(4_000));
            }
            Control::Continue
        })),
        workers: 1,
        ..SyncConfig::default()
    };
    gate.set_open(true);
    let s = sync_run::run(f.store(), &slow, &cfg, Deadline::after(MINUTE)).await;
    assert_eq!((s.stopped, s.marked, s.released), (Stop::EngineUnavailable, 0, 10), "{s:?}");
    assert!(s.error.as_deref().is_some_and(|e| e.contains("did not answer")), "{s:?}");
    // The engine back: everything goes through.
    let s = run(&f, &SyncConfig::default()).await;
    assert!(s.counts.indexed + s.counts.stale == 10 && s.marked == 10, "{s:?}");
    f.cleanup().await;
}

async fn run_killed_between_bulk_and_mark_loses_nothing(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "sync_killed").await else { return };
    f.client.ensure_index().await.expect("index");
    let me = f.pg.user("me@example.com").await;
    create_many(&f, &me, 50, "k").await;
    let lease = Duration::from_millis(1_500);
    let killer = SyncConfig {
        lease,
        batch_size: 50,
        workers: 1,
        hook: Some(Arc::new(|step, _| if step == Step::Bulked { Control::Abort } else { Control::Continue })),
        ..SyncConfig::default()
    };
    let s = run(&f, &killer).await;
    assert_eq!((s.stopped, s.claimed, s.marked), (Stop::Aborted, 50, 0), "{s:?}");
    // Indexed but not marked, and leased: another run leaves the rows alone until the lease ends.
    let cfg = SyncConfig { lease, ..SyncConfig::default() };
    let s = run(&f, &cfg).await;
    assert_eq!((s.stopped, s.claimed), (Stop::Clean, 0));
    assert_eq!(s.lag.as_ref().map(|l| l.dirty), Some(50));
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let s = run(&f, &cfg).await;
    assert_eq!((s.claimed, s.counts.stale, s.marked), (50, 50, 50), "already in search: 409, marked: {s:?}");
    assert_eq!(s.lag.as_ref().map(|l| l.dirty), Some(0));
    // Killed after claiming, before sending: same story.
    let rows = create_many(&f, &me, 5, "k2").await;
    let killer = SyncConfig {
        lease,
        hook: Some(Arc::new(|step, _| if step == Step::Claimed { Control::Abort } else { Control::Continue })),
        ..SyncConfig::default()
    };
    assert_eq!(run(&f, &killer).await.stopped, Stop::Aborted);
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let s = run(&f, &cfg).await;
    assert_eq!((s.counts.indexed, s.marked), (5, 5));
    f.refresh().await;
    let es = search_side(&f.client).await;
    assert!(rows.iter().all(|j| es.contains_key(&j.id)));
    assert_eq!(verify_quiet(&f, false).await.0.drift(), 0);
    f.cleanup().await;
}

async fn deadline_ends_the_run_between_batches(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "sync_deadline").await else { return };
    f.client.ensure_index().await.expect("index");
    let me = f.pg.user("me@example.com").await;
    // Warm up the engine's bulk path and the pools first: the rule under test predicts a batch
    // from the ones before it, and nothing predicts a first bulk into a just-started engine.
    create_many(&f, &me, 20, "warm-up").await;
    assert_eq!(run(&f, &SyncConfig::default()).await.counts.indexed, 20);
    // Through a gate that delays every request 80 ms: batch times are then steady, as the
    // rule assumes (it predicts from the batches before). On the bare engine a batch on a
    // loaded machine could run past twice the longest before it (seen once in CI: 65 ms left,
    // the longest batch ~30 ms), and without the rule the last batch is nearly always cut.
    let gate = Gate::start(&f.url).await;
    gate.set_delay(Duration::from_millis(80));
    let through = SearchClient::new(SearchFixture::config(&gate.url(), f.client.alias())).await.expect("client");
    let now = jobs_tests::store_suite::now();
    let jobs: Vec<Job> = (0..2_000)
        .map(|i| Job {
            id: new_id(),
            workspace_id: None,
            user_id: me.user_id,
            status: JobStatus::Queued,
            job_type: jobs_core::model::JobType::Build,
            project_name: format!("d-{i}"),
            hostname: None,
            arch: None,
            user_email: None,
            error_message: None,
            metadata: jobs_core::Object::new(),
            created_at: now,
            updated_at: now,
            completed_at: None,
            version: i64::from(i % 3),
        })
        .collect();
    jobs_tests::search_env::insert_jobs(f.pg.db(), &jobs).await;
    let cfg = SyncConfig { batch_size: 20, workers: 1, ..SyncConfig::default() };
    let budget = Duration::from_millis(800);
    let started = Instant::now();
    let s = sync_run::run(f.store(), &through, &cfg, Deadline::after(budget)).await;
    let took = started.elapsed();
    assert_eq!(s.stopped, Stop::Deadline, "{s:?}");
    assert!(s.claimed > 0 && s.claimed < 2_000, "{s:?}");
    assert_eq!(s.marked, s.claimed, "every batch started is finished: {s:?}");
    // Without the deadline the 100 batches take 8 s and more (80 ms each at the gate): a wide
    // margin still tells, and a loaded machine's pause does not fail it.
    assert!(took < budget + Duration::from_secs(3), "{took:?}");
    assert_no_lease(&f).await;
    assert_eq!(s.lag.as_ref().map(|l| l.dirty), Some(2_000 - i64::try_from(s.claimed).unwrap_or(0)));
    let rest = run(&f, &SyncConfig::default()).await;
    assert_eq!((rest.stopped, rest.claimed + s.claimed), (Stop::Clean, 2_000));
    f.cleanup().await;
}

/// Ctrl-C (or SIGTERM) during `jobsctl sync`: the run ends between batches, finishing what it
/// sent and handing back what it claimed ahead. It used to be dropped where it stood, leaving
/// its claims leased for two minutes, and a rerun then skipped them and said "clean".
async fn an_interrupted_run_leaves_no_lease_behind(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "sync_interrupted").await else { return };
    f.client.ensure_index().await.expect("index");
    let me = f.pg.user("me@example.com").await;
    create_many(&f, &me, 300, "i").await;
    let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let batches = Arc::new(AtomicU64::new(0));
    let b = batches.clone();
    let cfg = SyncConfig {
        batch_size: 20,
        workers: 2,
        // The operator presses Ctrl-C once the third batch is claimed.
        hook: Some(Arc::new(move |step, _| {
            if step == Step::Claimed && b.fetch_add(1, Ordering::SeqCst) == 2 {
                flag.store(true, Ordering::SeqCst);
            }
            Control::Continue
        })),
        ..SyncConfig::default()
    };
    let s = sync_run::run(f.store(), &f.client, &cfg, Deadline::never().or_when(flag)).await;
    assert_eq!(s.stopped, Stop::Interrupted, "{s:?}");
    assert!(s.claimed > 0 && s.claimed < 300, "{s:?}");
    assert_eq!(s.marked, s.claimed, "each batch sent is recorded: {s:?}");
    assert_no_lease(&f).await;
    // A run whose interrupt came first claims nothing (it claimed a batch per worker only to
    // hand it back).
    let claims_before = batches.load(Ordering::SeqCst);
    let again = sync_run::run(f.store(), &f.client, &cfg, Deadline::never().or_when(flag)).await;
    assert_eq!((again.stopped, again.claimed), (Stop::Interrupted, 0), "{again:?}");
    assert_eq!(batches.load(Ordering::SeqCst), claims_before, "no claim made");
    let rest = run(&f, &SyncConfig::default()).await;
    assert_eq!((rest.stopped, rest.marked + s.marked), (Stop::Clean, 300), "the rest at once: {rest:?}");
    f.cleanup().await;
}

async fn write_through_pushes_one_job(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "push_one").await else { return };
    f.client.ensure_index().await.expect("index");
    let me = f.pg.user("me@example.com").await;
    let t = Duration::from_secs(5);
    let job = f.pg.create(&me, json!({"type": "BUILD", "project_name": "wt"})).await;
    assert_eq!(sync_run::push_one(f.store(), &f.client, job.id, t).await, PushOutcome::Synced { version: 0 });
    assert_eq!(f.client.get(job.id, None).await.expect("get").map(|(_, v)| v), Some(0));
    let cols = f.store().sync_columns(job.id).await.expect("cols").expect("row");
    assert!(cols.es_synced_at.is_some() && cols.es_sync_version == 0);
    assert!(f.store().queue_entry(job.id).await.expect("queue").is_none(), "clean: nothing for the sync");
    let next = f.store().update(&me, &patch(&job, json!({"status": "RUNNING"}))).await.expect("update");
    assert_eq!(sync_run::push_one(f.store(), &f.client, job.id, t).await, PushOutcome::Synced { version: 1 });
    // Pushing an old state again is harmless (the engine keeps the newer version).
    assert_eq!(f.client.get(job.id, None).await.expect("get").map(|(j, v)| (j.status, v)), Some((next.status, 1)));
    f.store().delete(&me, job.id, None).await.expect("delete");
    assert_eq!(sync_run::push_one(f.store(), &f.client, job.id, t).await, PushOutcome::Synced { version: 1 });
    assert!(f.client.get(job.id, None).await.expect("get").is_none());
    assert!(f.store().tombstone(job.id).await.expect("tombstone").is_some_and(|t| t.es_synced_at.is_some()));
    assert_eq!(sync_run::push_one(f.store(), &f.client, new_id(), t).await, PushOutcome::NotFound);
    // Engine down: the push fails quickly, the row stays dirty, the sync delivers it later.
    let other = f.pg.create(&me, json!({"type": "BUILD", "project_name": "later"})).await;
    let dead = f.client_via(&dead_url().await).await;
    let started = Instant::now();
    let out = sync_run::push_one(f.store(), &dead, other.id, Duration::from_millis(300)).await;
    assert!(matches!(out, PushOutcome::Failed { .. }), "{out:?}");
    // No retrying for long (the sync delivers it later); a margin for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(f.store().queue_entry(other.id).await.expect("queue").is_some());
    let s = run(&f, &SyncConfig::default()).await;
    assert_eq!(s.counts.indexed, 1);
    f.cleanup().await;
}

/// A job deleted and created again with the same id (clients may choose ids) continues its
/// version past the delete's, so search takes the new job: whether the delete reached the engine
/// first (which then remembers its version for `index.gc_deletes`) or was still on its way.
async fn a_recreated_id_continues_past_its_delete(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "recreate").await else { return };
    f.client.ensure_index().await.expect("index");
    let me = f.pg.user("me@example.com").await;
    let cfg = SyncConfig::default();
    for delete_synced_first in [true, false] {
        let id = new_id();
        let job = f.pg.create(&me, json!({"id": id, "type": "BUILD", "project_name": "first"})).await;
        let job = f.store().update(&me, &patch(&job, json!({"status": "RUNNING"}))).await.expect("update");
        f.store().update(&me, &patch(&job, json!({"status": "SUCCEEDED"}))).await.expect("update");
        drain(&f, &cfg, MINUTE).await;
        assert_eq!(f.client.get(id, None).await.expect("get").map(|(_, v)| v), Some(2));
        f.store().delete(&me, id, None).await.expect("delete");
        if delete_synced_first {
            drain(&f, &cfg, MINUTE).await;
            assert!(f.client.get(id, None).await.expect("get").is_none(), "the delete reached search");
        }
        let again = f.pg.create(&me, json!({"id": id, "type": "TEST", "project_name": "second"})).await;
        // The delete went to search as version 3: the new job starts above it.
        assert_eq!(again.version, 4, "delete synced first: {delete_synced_first}");
        let s = drain(&f, &cfg, MINUTE).await;
        assert_eq!(s.counts.stale, 0, "{s:?}");
        let (doc, version) = f.client.get(id, None).await.expect("get").expect("the new job is in search");
        assert_eq!((doc.project_name.as_str(), version), ("second", 4), "delete synced first: {delete_synced_first}");
        let next = f.store().update(&me, &patch(&again, json!({"status": "RUNNING"}))).await.expect("update");
        assert_eq!(next.version, 5);
    }
    f.cleanup().await;
}

/// A job deleted after the backfill read it and before its page reached the new index: the
/// sync's delete finds nothing there (done), and once the engine has forgotten that delete
/// (`index.gc_deletes`, 60 s by default: a page retried through a busy engine's 429s can take
/// that long) the page's older version is taken. The swap then brought back a job Postgres no
/// longer has, and nothing queued it again. The deletes made during the backfill are now sent
/// again after it. Here the engine forgets at once (`gc_deletes` 0) and the page waits for it.
async fn a_delete_during_the_backfill_stays_deleted(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "reindex_delete").await else { return };
    let me = f.pg.user("me@example.com").await;
    let mut jobs = create_many(&f, &me, 250, "d").await;
    assert_eq!(run(&f, &SyncConfig::default()).await.counts.indexed, 250);
    jobs.sort_by_key(|j| j.id);
    let victim = jobs[0].id;
    let hook: reindex::ReindexHook = {
        let (store, client, me) = (f.store().clone(), f.client.clone(), me.clone());
        Arc::new(move |step| {
            let (store, client, me) = (store.clone(), client.clone(), me.clone());
            Box::pin(async move {
                match step {
                    ReindexStep::Created => {
                        let forget = json!({"index": {"gc_deletes": "0s"}});
                        client.put_settings(&client.reindex_alias(), &forget).await.expect("gc_deletes");
                    }
                    // The first page (the smallest ids, the victim's among them) is read, not sent.
                    ReindexStep::BackfillPage(100) => {
                        store.delete(&me, victim, None).await.expect("delete");
                        let s = sync_run::run(&store, &client, &SyncConfig::default(), Deadline::after(MINUTE)).await;
                        assert_eq!(s.counts.indexed, 1, "{s:?}");
                        // The engine's clock for pruning moves in steps of ~200 ms; a refresh prunes.
                        tokio::time::sleep(Duration::from_millis(600)).await;
                        client.refresh(&client.reindex_alias()).await.expect("refresh");
                    }
                    // The premise: the page brought the deleted job into the new index (a GET
                    // by id is real-time). Without it this test could not fail.
                    ReindexStep::Backfilled => {
                        let marker = client.reindex_alias();
                        let found = client.versions_of(&marker, &[victim.to_string()]).await.expect("mget");
                        assert!(
                            matches!(found.as_slice(), [(_, Some(_))]),
                            "the engine still knew the delete, the page did not bring the job back: {found:?}"
                        );
                    }
                    _ => {}
                }
            })
        })
    };
    let opts = ReindexOptions { batch_size: 100, parallel: 2, hook: Some(hook), ..ReindexOptions::default() };
    let report = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect("reindex");
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(report.new.clone()));
    f.refresh().await;
    assert_eq!(f.client.get(victim, None).await.expect("get"), None, "the deleted job is back: {report:?}");
    let (es, pg) = (search_side(&f.client).await, postgres_side(f.store()).await);
    assert_eq!(es, pg);
    f.cleanup().await;
}

async fn reindex_with_concurrent_writes_then_swap(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "reindex").await else { return };
    let me = f.pg.user("me@example.com").await;
    let jobs = create_many(&f, &me, 1_500, "r").await;
    let s = run(&f, &SyncConfig::default()).await;
    assert_eq!(s.counts.indexed, 1_500);
    f.refresh().await;
    let old = f.client.alias_target(f.client.alias()).await.expect("alias").expect("index");
    let before = f.client.count(f.client.alias()).await.expect("count");

    // While the reindex runs: a writer (through the store) and a sync loop, as in production,
    // and a reader checking that the alias never shows an empty or partial index.
    let stop = Arc::new(AtomicBool::new(false));
    let deleted = Arc::new(AtomicU64::new(0));
    let sync_loop = {
        let (store, client, stop) = (f.store().clone(), f.client.clone(), stop.clone());
        tokio::spawn(async move {
            let cfg = SyncConfig { batch_size: 50, ..SyncConfig::default() };
            while !stop.load(Ordering::SeqCst) {
                sync_run::run(&store, &client, &cfg, Deadline::after(MINUTE)).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let reader = {
        let (client, stop, deleted) = (f.client.clone(), stop.clone(), deleted.clone());
        tokio::spawn(async move {
            let (mut min_seen, mut seen) = (u64::MAX, 0u64);
            while !stop.load(Ordering::SeqCst) {
                let _ = client.refresh(client.alias()).await;
                // An alias missing for a moment (a swap that removed then added it) answers
                // 404: that is an empty index to a reader, so it fails here too. A busy
                // engine's 429 or a timeout is no verdict on the alias.
                match client.count(client.alias()).await {
                    Ok(n) => {
                        // Creates only add; deletes are counted before they are made.
                        assert!(n + deleted.load(Ordering::SeqCst) >= before, "readers saw {n} documents");
                        min_seen = min_seen.min(n);
                        seen += 1;
                    }
                    Err(e) => assert!(e.status() != 404, "readers found no alias: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (min_seen, seen)
        })
    };
    let pages = Arc::new(AtomicU64::new(0));
    let hook: reindex::ReindexHook = {
        let (store, me, jobs, pages, deleted) =
            (f.store().clone(), me.clone(), jobs.clone(), pages.clone(), deleted.clone());
        Arc::new(move |step| {
            let (store, me, jobs, pages, deleted) =
                (store.clone(), me.clone(), jobs.clone(), pages.clone(), deleted.clone());
            Box::pin(async move {
                let ReindexStep::BackfillPage(_) = step else { return };
                let p = pages.fetch_add(1, Ordering::SeqCst) as usize;
                // Each page: update two jobs the backfill has read and two it has not, delete
                // one, create one.
                for k in [p * 3, p * 3 + 1, 1_499 - p * 3, 1_498 - p * 3] {
                    if let Ok(cur) = store.get(&me, jobs[k % 1_500].id).await
                        && !cur.status.is_terminal()
                    {
                        let next = if cur.status == JobStatus::Queued { "RUNNING" } else { "FAILED" };
                        let error = if next == "FAILED" { Some("boom") } else { None };
                        store
                            .update(&me, &patch(&cur, json!({"status": next, "error_message": error})))
                            .await
                            .expect("update");
                    }
                }
                deleted.fetch_add(1, Ordering::SeqCst);
                store.delete(&me, jobs[(p * 11 + 5) % 1_500].id, None).await.expect("delete");
                let new =
                    jobs_tests::store_suite::new_job(json!({"type": "TEST", "project_name": format!("during-{p}")}));
                store.create(&me, &new, new_id()).await.expect("create");
            })
        })
    };
    let opts = ReindexOptions {
        batch_size: 100,
        parallel: 3,
        catch_up: MINUTE,
        hook: Some(hook),
        ..ReindexOptions::default()
    };
    let report = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect("reindex");
    assert!(pages.load(Ordering::SeqCst) >= 15, "writes happened during the backfill");
    assert_eq!(report.old, old);
    assert_eq!(report.new, f.client.index_name(2));
    assert!(report.backfilled >= 1_500, "{report:?}");
    assert_eq!(report.rejected, 0);
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(report.new.clone()), "swapped");
    assert_eq!(f.client.alias_target(&f.client.reindex_alias()).await.expect("marker"), None);
    let kept = f.client.versions().await.expect("versions");
    assert_eq!(
        kept.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
        vec![old.as_str(), report.new.as_str()],
        "old kept"
    );
    let settings = f.client.index_settings(&report.new).await.expect("settings");
    assert_eq!(
        (settings["index.number_of_replicas"].as_str(), settings["index.refresh_interval"].as_str()),
        (Some("0"), Some("1s"))
    );
    // Writes after the swap land in the new index only.
    let after = f.pg.create(&me, json!({"type": "DEPLOY", "project_name": "after-swap"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    sync_loop.await.expect("sync loop");
    let (min_seen, seen) = reader.await.expect("reader");
    assert!(seen > 0, "the reader counted the alias's documents at least once");
    assert!(min_seen >= before - deleted.load(Ordering::SeqCst), "{min_seen}");
    let s = drain(&f, &SyncConfig::default(), MINUTE).await;
    assert_eq!(s.lag.as_ref().map(|l| l.dirty), Some(0));
    f.refresh().await;
    let (es, pg) = (search_side(&f.client).await, postgres_side(f.store()).await);
    assert_eq!(es.len(), pg.len());
    assert_eq!(es, pg, "search sees every job at its version");
    assert!(es.contains_key(&after.id));
    let (report, drifts) = verify_quiet(&f, false).await;
    assert_eq!(report.drift(), 0, "{drifts:?}");
    // A reindex that died leaves its marker: the next one refuses, unless told to take over.
    // This one's index has no heartbeat (an older jobsctl's): --force takes over at once.
    let mut body = f.client.index_body();
    body["aliases"] = json!({ f.client.reindex_alias(): {} });
    f.client.create_index(&f.client.index_name(7), &body).await.expect("a dead reindex's index");
    let err = reindex::reindex(f.store().as_ref(), &f.client, &ReindexOptions::default()).await.map(|r| r.new);
    assert!(
        matches!(err, Err(reindex::ReindexError::InProgress { ref index, last: None }) if index == &f.client.index_name(7)),
        "{err:?}"
    );
    let forced = ReindexOptions { force: true, ..ReindexOptions::default() };
    let r = reindex::reindex(f.store().as_ref(), &f.client, &forced).await.expect("forced reindex");
    assert_eq!(r.new, f.client.index_name(8), "numbered past the dead one's");
    assert!(!f.client.is_index(&f.client.index_name(7)).await.expect("is_index"), "the dead one's index is gone");
    assert_eq!(f.client.versions().await.expect("versions").len(), 3);
    assert_eq!(verify_quiet(&f, false).await.0.drift(), 0);
    f.cleanup().await;
}

async fn verify_detects_and_repair_fixes_drift(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "verify").await else { return };
    let me = f.pg.user("me@example.com").await;
    let jobs = create_many(&f, &me, 200, "v").await;
    let s = run(&f, &SyncConfig::default()).await;
    assert_eq!(s.marked, 200);
    f.refresh().await;
    assert_eq!(verify_quiet(&f, false).await.0.drift(), 0);
    let index = f.client.alias_target(f.client.alias()).await.expect("alias").expect("index");

    // missing: rows that say "synced" but search never got (a lost write).
    let mut lost = Vec::new();
    for i in 0..3 {
        lost.push(lost_write(&f, &me, &format!("lost-{i}")).await);
    }
    // stale: a newer version marked synced without reaching search (a buggy marker).
    for j in &jobs[10..12] {
        stale_mark(&f, j.id).await;
    }
    // extra: documents for jobs Postgres does not have.
    let ghosts: Vec<Job> = (0..2)
        .map(|i| {
            let mut g = jobs[0].clone();
            g.id = new_id();
            g.version = 4;
            g.project_name = format!("ghost-{i}");
            g
        })
        .collect();
    let changes: Vec<Change<'_>> = ghosts.iter().map(Change::Upsert).collect();
    let r = f.client.bulk(std::slice::from_ref(&index), &changes, None).await;
    assert!(r.outcomes.iter().all(|o| o.as_ref().is_some_and(jobs_core::search::Outcome::is_done)));
    // ahead: Postgres went back in time (a restore): search holds a newer version.
    let mut newer = jobs[21].clone();
    newer.version = 3;
    let r = f.client.bulk(std::slice::from_ref(&index), &[Change::Upsert(&newer)], None).await;
    assert!(r.outcomes[0].as_ref().is_some_and(jobs_core::search::Outcome::is_done));
    let bump = &jobs[21];
    // pending: a change the sync has not delivered yet is not drift.
    let pending = f.store().update(&me, &patch(&jobs[30], json!({"status": "RUNNING"}))).await.expect("update");
    f.refresh().await;

    let (report, drifts) = verify_quiet(&f, false).await;
    let kinds = |k: DriftKind| drifts.iter().filter(|d| d.kind == k).map(|d| d.id.clone()).collect::<Vec<_>>();
    let mut want_missing: Vec<String> = lost.iter().map(Uuid::to_string).collect();
    want_missing.sort();
    assert_eq!(kinds(DriftKind::Missing), want_missing, "{drifts:?}");
    assert_eq!(kinds(DriftKind::Stale).len(), 2, "{drifts:?}");
    let mut want_extra: Vec<String> = ghosts.iter().map(|g| g.id.to_string()).collect();
    want_extra.sort();
    assert_eq!(kinds(DriftKind::Extra), want_extra);
    assert_eq!(kinds(DriftKind::Ahead), vec![bump.id.to_string()]);
    assert_eq!(kinds(DriftKind::Pending), vec![pending.id.to_string()]);
    assert_eq!((report.missing, report.stale, report.extra, report.ahead, report.pending), (3, 2, 2, 1, 1));
    assert_eq!(report.drift(), 8);
    assert!(drifts.iter().all(|d| !d.repaired));
    assert_eq!(report.postgres, 203);

    // --repair queues missing, stale and extra; the next sync fixes them.
    let (report, drifts) = verify_quiet(&f, true).await;
    assert_eq!(report.repaired, 7, "{drifts:?}");
    assert!(drifts.iter().filter(|d| d.kind != DriftKind::Ahead && d.kind != DriftKind::Pending).all(|d| d.repaired));
    let s = drain(&f, &SyncConfig::default(), MINUTE).await;
    assert_eq!(s.lag.as_ref().map(|l| l.dirty), Some(0), "{s:?}");
    f.refresh().await;
    let (report, drifts) = verify_quiet(&f, false).await;
    assert_eq!((report.drift(), report.ahead), (1, 1), "only 'ahead' is left (a reindex fixes it): {drifts:?}");
    // A reindex rebuilds from Postgres, the truth: no drift at all.
    let r = reindex::reindex(f.store().as_ref(), &f.client, &ReindexOptions::default()).await.expect("reindex");
    assert_eq!(r.backfilled, 203);
    let (report, drifts) = verify_quiet(&f, false).await;
    assert_eq!(report.drift() + report.pending, 0, "{drifts:?}");
    assert_eq!(report.matched, 203);
    f.cleanup().await;
}

/// A job deleted (and its delete pushed to search) after verify opened its snapshot of the
/// index but before its Postgres scan reached the job is in neither store by then: no drift.
/// The engine's real-time answer that the document is gone is final; the snapshot's copy is
/// not a reason to report the job as extra.
async fn verify_ignores_a_job_deleted_during_its_scan(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "verify_race").await else { return };
    let me = f.pg.user("me@example.com").await;
    let jobs = create_many(&f, &me, 300, "race").await;
    drain(&f, &SyncConfig::default(), MINUTE).await;
    f.refresh().await;
    let last = jobs.iter().max_by_key(|j| j.id.to_string()).expect("jobs").clone();
    // Every engine request of verify's waits 200 ms. Its first requests find the index and open
    // the snapshot; the next one, the first page, is sent only once the snapshot is open: the
    // delete waits for it. The Postgres scan, in lockstep with 25 pages of the index, reaches
    // the last id some 5 s later (the counts below fail, rather than pass for nothing, should
    // the delete come too late).
    let gate = Gate::start(&f.url).await;
    gate.set_delay(Duration::from_millis(200));
    let slow = f.client_via(&gate.url()).await;
    let store = f.store();
    let deleter = async {
        let until = Instant::now() + MINUTE;
        while gate.writes() < 4 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store.delete(&me, last.id, None).await.expect("delete");
        sync_run::push_one(store, &f.client, last.id, Duration::from_secs(5)).await
    };
    let opts = VerifyOptions { repair: false, page_size: 12, ..VerifyOptions::default() };
    let mut drifts = Vec::new();
    let (report, pushed) = tokio::join!(verify::verify(store, &slow, &opts, |d| drifts.push(d.clone())), deleter);
    let report = report.expect("verify");
    assert!(matches!(pushed, PushOutcome::Synced { .. }), "{pushed:?}");
    assert_eq!(report.search, 300, "the snapshot held the job: {report:?}");
    assert_eq!(report.postgres, 299, "the scan did not: {report:?}");
    assert_eq!((report.extra, report.drift()), (0, 0), "{drifts:?}");
    f.cleanup().await;
}

/// Verify's second look at a difference reads Postgres, then the engine. A job changed and
/// pushed by the API between the two reads was reported as drift: `ahead` (Postgres read at
/// the old version, the engine at the new one), or `missing` for a job deleted meanwhile.
/// Postgres is read again after the engine: a row that moved is a change in flight, also when
/// it moves after the engine's answer (`stale` against the engine's older version).
async fn verify_takes_a_change_during_its_second_look_for_one_in_flight(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "verify_second_look").await else { return };
    let me = f.pg.user("me@example.com").await;
    let jobs = create_many(&f, &me, 5, "look").await;
    drain(&f, &SyncConfig::default(), MINUTE).await;
    // Two differences: a version marked synced that never reached search, and a row search
    // never got.
    let stale = jobs[0].id;
    stale_mark(&f, stale).await;
    let lost = lost_write(&f, &me, "lost").await;
    f.refresh().await;
    let (report, _) = verify_quiet(&f, false).await;
    assert_eq!((report.stale, report.missing), (1, 1), "{report:?}");
    // Between the two reads, the API changes the one and deletes the other, each pushed at once.
    let hook = change_at(&f, &me, verify::VerifyStep::ReadPostgres, Some(stale), Some(lost));
    let mut drifts = Vec::new();
    let opts = VerifyOptions { hook: Some(hook), ..VerifyOptions::default() };
    let report = verify::verify(f.store(), &f.client, &opts, |d| drifts.push(d.clone())).await.expect("verify");
    assert_eq!(report.drift(), 0, "{drifts:?}");
    assert_eq!(report.matched, 5, "{report:?}");

    // The same after the engine's answer: a version marked synced without reaching search, then
    // changed and pushed once the engine has answered with the old one.
    stale_mark(&f, jobs[1].id).await;
    f.refresh().await;
    let hook = change_at(&f, &me, verify::VerifyStep::ReadEngine, Some(jobs[1].id), None);
    let mut drifts = Vec::new();
    let opts = VerifyOptions { hook: Some(hook), ..VerifyOptions::default() };
    let report = verify::verify(f.store(), &f.client, &opts, |d| drifts.push(d.clone())).await.expect("verify");
    assert_eq!((report.drift(), report.pending), (0, 1), "{drifts:?}");
    f.cleanup().await;
}

/// An engine that stops answering for a moment hours into a verify no longer throws the run
/// away (its reads are tried again); an alias that moves to another index during the run (a
/// reindex's swap) ends it with an error rather than reporting every later change as drift.
async fn verify_rides_out_an_outage_and_stops_when_the_alias_moves(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "verify_outage").await else { return };
    let me = f.pg.user("me@example.com").await;
    create_many(&f, &me, 5, "outage").await;
    drain(&f, &SyncConfig::default(), MINUTE).await;
    // A difference, so that the second look (and its hook) happens.
    lost_write(&f, &me, "lost").await;
    f.refresh().await;
    let gate = Arc::new(Gate::start(&f.url).await);
    let through_gate = f.client_via(&gate.url()).await;
    // The engine gone for 1.2 s as the second look begins.
    let outage: verify::VerifyHook = {
        let gate = gate.clone();
        Arc::new(move |step| {
            let gate = gate.clone();
            Box::pin(async move {
                if step != verify::VerifyStep::ReadPostgres {
                    return;
                }
                gate.set_open(false);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1200)).await;
                    gate.set_open(true);
                });
            })
        })
    };
    let mut drifts = Vec::new();
    let opts = VerifyOptions { hook: Some(outage), ..VerifyOptions::default() };
    let report = verify::verify(f.store(), &through_gate, &opts, |d| drifts.push(d.clone())).await.expect("verify");
    assert_eq!((report.missing, report.matched), (1, 5), "{drifts:?}");

    // A swap during the run.
    let swap: verify::VerifyHook = {
        let client = f.client.clone();
        Arc::new(move |step| {
            let client = client.clone();
            Box::pin(async move {
                if step != verify::VerifyStep::ReadPostgres {
                    return;
                }
                let old = client.alias_target(client.alias()).await.expect("alias").expect("an index");
                let new = client.index_name(9);
                client.create_index(&new, &client.index_body()).await.expect("create");
                let swap = json!({"actions": [
                    {"remove": {"index": old, "alias": client.alias()}},
                    {"add": {"index": new, "alias": client.alias(), "is_write_index": true}}
                ]});
                client.update_aliases(&swap).await.expect("swap");
            })
        })
    };
    let opts = VerifyOptions { hook: Some(swap), ..VerifyOptions::default() };
    let e = verify::verify(f.store(), &f.client, &opts, |_| {}).await.expect_err("the alias moved");
    assert!(matches!(e, verify::VerifyError::AliasMoved { .. }), "{e}");
    f.cleanup().await;
}

/// The swap's request reached the engine and was applied, but its answer was lost: the reindex
/// looks before failing and finds the alias on the new index. It must not take the path that
/// deletes the new index (which is then the live one: every document gone).
async fn a_reindex_swap_applied_but_unanswered_is_a_swap(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "reindex_lost_swap").await else { return };
    let me = f.pg.user("me@example.com").await;
    create_many(&f, &me, 20, "kept").await;
    drain(&f, &SyncConfig::default(), MINUTE).await;
    let old = f.client.alias_target(f.client.alias()).await.expect("alias").expect("an index");
    let new = f.client.index_name(2);
    // Applies the very swap the reindex is about to ask for: its own request then fails (the
    // old index no longer has the alias), as a swap whose answer was lost looks from here.
    let hook: reindex::ReindexHook = {
        let (client, old, new) = (f.client.clone(), old.clone(), new.clone());
        Arc::new(move |step| {
            let (client, old, new) = (client.clone(), old.clone(), new.clone());
            Box::pin(async move {
                if step != ReindexStep::CaughtUp {
                    return;
                }
                let swap = json!({"actions": [
                    {"remove": {"index": old, "alias": client.alias()}},
                    {"add": {"index": new, "alias": client.alias(), "is_write_index": true}},
                    {"remove": {"index": new, "alias": client.reindex_alias()}}
                ]});
                client.update_aliases(&swap).await.expect("the swap, applied behind the reindex's back");
            })
        })
    };
    let opts = ReindexOptions { hook: Some(hook), ..ReindexOptions::default() };
    let report = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect("the reindex succeeded");
    assert_eq!(report.new, new);
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(new.clone()));
    f.refresh().await;
    assert_eq!(f.client.count(&new).await.expect("count"), 20, "the live index kept its documents");
    f.cleanup().await;
}

/// A new mapping that some rows do not fit (hostname as an IP address here): the reindex
/// fails before the swap, the new index deleted, the alias unchanged, instead of making live an
/// index that lacks those jobs for good (they were marked synced). With `allow_rejected` it
/// swaps, and the refused jobs become dead letters an operator can see.
async fn a_reindex_whose_new_index_refuses_jobs_does_not_swap(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "reindex_refused").await else { return };
    let me = f.pg.user("me@example.com").await;
    let mut refused = Vec::new();
    for i in 0..6 {
        let hostname = if i < 2 { "build.example.com".to_owned() } else { format!("10.0.0.{i}") };
        let job =
            f.pg.create(&me, json!({"type": "SCAN", "project_name": format!("p{i}"), "hostname": hostname})).await;
        if i < 2 {
            refused.push(job);
        }
    }
    drain(&f, &SyncConfig::default(), MINUTE).await;
    let old = f.client.alias_target(f.client.alias()).await.expect("alias").expect("an index");
    // The new index, made again with the stricter mapping as soon as the reindex created it.
    let strict: reindex::ReindexHook = {
        let client = f.client.clone();
        Arc::new(move |step| {
            let client = client.clone();
            Box::pin(async move {
                if step != ReindexStep::Created {
                    return;
                }
                let new = client.alias_target(&client.reindex_alias()).await.expect("marker").expect("new index");
                client.delete_index(&new).await.expect("delete");
                let mut body = client.index_body();
                body["mappings"]["properties"]["hostname"] = json!({"type": "ip"});
                body["aliases"] = json!({ client.reindex_alias(): {} });
                client.create_index(&new, &body).await.expect("the stricter index");
            })
        })
    };
    // During the backfill a refused job changes: the live index takes it, the new one refuses
    // it, and the sync dead-letters it (at once, by this policy).
    let policy = Policy { max_rejected_attempts: 1, max_retry_attempts: 10, base_backoff_ms: 10, max_backoff_ms: 40 };
    let changing: reindex::ReindexHook = {
        let (strict, store, client, me, job) =
            (strict.clone(), f.store().clone(), f.client.clone(), me.clone(), refused[0].clone());
        Arc::new(move |step| {
            let (strict, store, client, me, job) =
                (strict.clone(), store.clone(), client.clone(), me.clone(), job.clone());
            Box::pin(async move {
                strict(step).await;
                if step != ReindexStep::Created {
                    return;
                }
                store.update(&me, &patch(&job, json!({"status": "RUNNING"}))).await.expect("update");
                let cfg = SyncConfig { policy, ..SyncConfig::default() };
                let s = sync_run::run(&store, &client, &cfg, Deadline::after(MINUTE)).await;
                assert_eq!(s.counts.dead_lettered, 1, "{s:?}");
            })
        })
    };
    let opts = ReindexOptions { hook: Some(changing), ..ReindexOptions::default() };
    let e = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect_err("refusals fail the reindex");
    assert!(matches!(e, reindex::ReindexError::Rejected { count: 2, .. }), "{e}");
    assert!(e.to_string().contains("--allow-rejected"), "{e}");
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(old.clone()), "not swapped");
    assert_eq!(f.client.alias_target(&f.client.reindex_alias()).await.expect("marker"), None, "the new index is gone");
    assert!(!f.client.is_index(&f.client.index_name(2)).await.expect("is_index"));
    // The failed reindex's dead letter is back in line: without the new index, the change goes
    // through. It stayed dead-lettered, its row dirty for good, though the live index had it.
    let s = drain(&f, &SyncConfig { policy, ..SyncConfig::default() }, Duration::from_secs(20)).await;
    assert_eq!(s.lag.as_ref().map(|l| (l.dirty, l.dead_lettered)), Some((0, 0)), "{s:?}");
    assert_eq!(f.client.get(refused[0].id, None).await.expect("get").map(|(_, v)| v), Some(1));

    let opts = ReindexOptions { hook: Some(strict), allow_rejected: true, ..ReindexOptions::default() };
    let report = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect("swapped anyway");
    assert_eq!((report.rejected, report.backfilled), (2, 6));
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(report.new.clone()));
    let s = drain(&f, &SyncConfig { policy, ..SyncConfig::default() }, Duration::from_secs(20)).await;
    assert_eq!(s.lag.as_ref().map(|l| (l.dirty, l.dead_lettered)), Some((0, 2)), "{s:?}");
    f.cleanup().await;
}

/// Changes made after the backfill reach the new index through the catch-up sync, which
/// dead-letters what either index refuses. Refused by the new index (its mapping stricter), a
/// change is a version search would lack after the swap: no swap, as for the backfill's
/// refusals. Refused by the live index only (the reindex is what fixes its mapping), it is
/// sent again once the new index is live, and goes through.
async fn a_reindex_tells_the_new_index_s_refusals_from_the_live_one_s(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "reindex_late_refusals").await else { return };
    let me = f.pg.user("me@example.com").await;
    let mut jobs = Vec::new();
    for i in 0..4 {
        let body = json!({"type": "SCAN", "project_name": format!("p{i}"), "hostname": format!("10.0.0.{i}")});
        jobs.push(f.pg.create(&me, body).await);
    }
    drain(&f, &SyncConfig::default(), MINUTE).await;
    let policy = Policy { max_rejected_attempts: 1, max_retry_attempts: 10, base_backoff_ms: 10, max_backoff_ms: 40 };
    let sync = SyncConfig { policy, ..SyncConfig::default() };
    // At `Created`, the new index made again with hostname an IP address (when `strict`); at
    // `Backfilled`, a job's hostname changed to a name.
    let hook = |strict: bool, job: Job, hostname: &'static str| -> reindex::ReindexHook {
        let (store, client, me) = (f.store().clone(), f.client.clone(), me.clone());
        Arc::new(move |step| {
            let (store, client, me, job) = (store.clone(), client.clone(), me.clone(), job.clone());
            Box::pin(async move {
                if step == ReindexStep::Created && strict {
                    let new = client.alias_target(&client.reindex_alias()).await.expect("marker").expect("new index");
                    client.delete_index(&new).await.expect("delete");
                    let mut body = client.index_body();
                    body["mappings"]["properties"]["hostname"] = json!({"type": "ip"});
                    body["aliases"] = json!({ client.reindex_alias(): {} });
                    client.create_index(&new, &body).await.expect("the stricter index");
                }
                if step == ReindexStep::Backfilled && !hostname.is_empty() {
                    let current = store.get(&me, job.id).await.expect("the job");
                    store.update(&me, &patch(&current, json!({"hostname": hostname}))).await.expect("update");
                }
            })
        })
    };

    // The new index refuses the change: no swap, and the change is back in line.
    // (With the default policy, as `jobsctl reindex` runs it: the refused change is still
    // waiting for a retry when the catch-up ends, not yet dead-lettered.)
    let old = f.client.alias_target(f.client.alias()).await.expect("alias").expect("an index");
    let opts =
        ReindexOptions { hook: Some(hook(true, jobs[0].clone(), "build.example.com")), ..ReindexOptions::default() };
    let e = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect_err("a late refusal fails the reindex");
    assert!(matches!(e, reindex::ReindexError::DeadLettered { count: 1, .. }), "{e}");
    assert!(e.to_string().contains(&jobs[0].id.to_string()) && e.to_string().contains("--allow-rejected"), "{e}");
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(old.clone()), "not swapped");
    let s = drain(&f, &sync, Duration::from_secs(20)).await;
    assert_eq!(s.lag.as_ref().map(|l| (l.dirty, l.dead_lettered)), Some((0, 0)), "{s:?}");
    let current = f.store().get(&me, jobs[0].id).await.expect("the job");
    assert_eq!(current.hostname.as_deref(), Some("build.example.com"));
    assert_eq!(f.client.get(jobs[0].id, None).await.expect("get").map(|(_, v)| v), Some(current.version));
    // Back to IP addresses everywhere, then a strict index made live.
    f.store().update(&me, &patch(&current, json!({"hostname": "10.0.0.9"}))).await.expect("update");
    drain(&f, &sync, Duration::from_secs(20)).await;
    let opts =
        ReindexOptions { hook: Some(hook(true, jobs[0].clone(), "")), sync: sync.clone(), ..ReindexOptions::default() };
    let strict = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect("a strict index made live").new;

    // Reindexing to a lenient mapping: the live (strict) index refuses a change the new one
    // takes. The swap goes ahead, and the change reaches search once the new index is live.
    let opts = ReindexOptions {
        hook: Some(hook(false, jobs[1].clone(), "ci.example.com")),
        sync: sync.clone(),
        ..ReindexOptions::default()
    };
    let report = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect("the lenient index swapped in");
    assert_ne!(report.new, strict);
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(report.new.clone()));
    let s = drain(&f, &sync, Duration::from_secs(20)).await;
    assert_eq!(s.lag.as_ref().map(|l| (l.dirty, l.dead_lettered)), Some((0, 0)), "{s:?}");
    let current = f.store().get(&me, jobs[1].id).await.expect("the job");
    assert_eq!(current.hostname.as_deref(), Some("ci.example.com"));
    assert_eq!(f.client.get(jobs[1].id, None).await.expect("get").map(|(_, v)| v), Some(current.version));
    f.cleanup().await;
}

/// A row another writer left unreadable to this code (a status it does not know) made the
/// backfill's scan fail with a decoding error, and with it every reindex. The scan now leaves it
/// out; the reindex stops before the swap naming it, and `--allow-rejected` swaps without it (as
/// the sync leaves it out of search: dead-lettered), the report naming it.
async fn a_reindex_leaves_out_a_row_it_cannot_read(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "reindex_unreadable").await else { return };
    let me = f.pg.user("me@example.com").await;
    let jobs = create_many(&f, &me, 5, "u").await;
    drain(&f, &SyncConfig::default(), MINUTE).await;
    f.pg.db()
        .execute("UPDATE job SET status = 'PENDING' WHERE id = $1::uuid", &[Param::Uuid(jobs[2].id)])
        .await
        .expect("another writer");
    // As for refusals: no swap (the live index may hold an older version of the row) unless
    // allowed, and the error names the row.
    let old = f.client.alias_target(f.client.alias()).await.expect("alias");
    let e = reindex::reindex(f.store().as_ref(), &f.client, &ReindexOptions::default()).await.expect_err("no swap");
    assert!(matches!(e, reindex::ReindexError::Unreadable { count: 1, .. }), "{e}");
    assert!(e.to_string().contains(&jobs[2].id.to_string()) && e.to_string().contains("unknown status"), "{e}");
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), old, "not swapped");
    let opts = ReindexOptions { allow_rejected: true, ..ReindexOptions::default() };
    let report = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect("reindex");
    assert_eq!((report.backfilled, report.unreadable), (4, 1), "{report:?}");
    assert_eq!(report.unreadable_examples[0].0, jobs[2].id);
    assert!(report.unreadable_examples[0].1.contains("unknown status"), "{report:?}");
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(report.new.clone()));
    f.cleanup().await;
}

/// Ctrl-C during `jobsctl reindex`: the half-filled index (refresh off, no replicas, receiving
/// every write through the marker alias) is deleted and the alias left alone, as on a failure;
/// a killed reindex used to leave it there until someone ran `reindex --force`.
async fn an_interrupted_reindex_leaves_no_index_behind(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "reindex_interrupted").await else { return };
    let me = f.pg.user("me@example.com").await;
    create_many(&f, &me, 50, "x").await;
    drain(&f, &SyncConfig::default(), MINUTE).await;
    let old = f.client.alias_target(f.client.alias()).await.expect("alias").expect("an index");
    let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let hook: reindex::ReindexHook = Arc::new(move |step| {
        Box::pin(async move {
            // Seen before the next page is read.
            if let ReindexStep::BackfillPage(_) = step {
                flag.store(true, Ordering::SeqCst);
            }
        })
    });
    let opts = ReindexOptions { hook: Some(hook), interrupt: Some(flag), batch_size: 10, ..ReindexOptions::default() };
    let e = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect_err("interrupted");
    assert!(matches!(e, reindex::ReindexError::Interrupted), "{e}");
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(old.clone()));
    assert_eq!(f.client.alias_target(&f.client.reindex_alias()).await.expect("marker"), None);
    assert!(!f.client.is_index(&f.client.index_name(2)).await.expect("is_index"), "the unfinished index is gone");

    // Interrupted in the catch-up sync, jobs waiting for it: the flag is set as its first batch
    // is claimed, so the run hands that batch back (no lease left) and nothing is swapped.
    create_many(&f, &me, 30, "late").await;
    let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let claimed = Arc::new(AtomicU64::new(0));
    let c = claimed.clone();
    let sync = SyncConfig {
        batch_size: 10,
        workers: 1,
        hook: Some(Arc::new(move |step, _| {
            if step == Step::Claimed {
                c.fetch_add(1, Ordering::SeqCst);
                flag.store(true, Ordering::SeqCst);
            }
            Control::Continue
        })),
        ..SyncConfig::default()
    };
    let opts = ReindexOptions { sync, interrupt: Some(flag), ..ReindexOptions::default() };
    let e = reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect_err("interrupted");
    assert!(matches!(e, reindex::ReindexError::Interrupted), "{e}");
    assert!(claimed.load(Ordering::SeqCst) >= 1, "the catch-up claimed before it was interrupted");
    let lag = f.store().sync_lag().await.expect("lag");
    assert_eq!(lag.dirty, 30, "the catch-up stopped at its first batch and handed it back");
    assert_no_lease(&f).await;
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(old));
    assert_eq!(f.client.alias_target(&f.client.reindex_alias()).await.expect("marker"), None);
    // And the next reindex needs no --force.
    let report = reindex::reindex(f.store().as_ref(), &f.client, &ReindexOptions::default()).await.expect("reindex");
    assert_eq!(report.backfilled, 80);
    f.cleanup().await;
}

/// `reindex --force` used to delete whatever the marker pointed at, a running reindex's index
/// too (which then failed, or worse). The running one beats in its index's `_meta`; a forced
/// reindex watches the beat and takes over only when it stands still.
async fn force_takes_over_only_a_reindex_whose_heartbeat_stopped(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "reindex_heartbeat").await else { return };
    let me = f.pg.user("me@example.com").await;
    create_many(&f, &me, 20, "x").await;
    drain(&f, &SyncConfig::default(), MINUTE).await;
    let (entered, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let (e, r) = (entered.clone(), release.clone());
    let hook: reindex::ReindexHook = Arc::new(move |step| {
        let (e, r) = (e.clone(), r.clone());
        Box::pin(async move {
            if step == ReindexStep::Created {
                e.notify_one();
                r.notified().await;
            }
        })
    });
    let beat = Duration::from_millis(100);
    let running = ReindexOptions { hook: Some(hook), heartbeat: beat, ..ReindexOptions::default() };
    let forced = ReindexOptions { force: true, heartbeat: beat, ..ReindexOptions::default() };
    let (first, taken) = tokio::join!(reindex::reindex(f.store().as_ref(), &f.client, &running), async {
        entered.notified().await;
        // Held at `Created` for longer than three beats: the work stands still, the beat not.
        let started = Instant::now();
        let taken = reindex::reindex(f.store().as_ref(), &f.client, &forced).await.map(|r| r.new);
        let alive = f.client.is_index(&f.client.index_name(2)).await.expect("is_index");
        release.notify_one();
        (taken, alive, started.elapsed())
    });
    let (taken, alive, watched) = taken;
    let index = f.client.index_name(2);
    match &taken {
        Err(reindex::ReindexError::Running { index: i, beat }) => {
            assert_eq!(i, &index);
            assert_eq!(beat.pid, std::process::id());
            assert!(beat.beat >= 1, "{beat:?}");
        }
        other => panic!("a running reindex was taken over: {other:?}"),
    }
    assert!(watched < Duration::from_secs(10), "it answers once the beat moves: {watched:?}");
    assert!(alive, "the running reindex's index is still there");
    let first = first.expect("the running reindex finishes");
    assert_eq!(first.new, index);
    assert_eq!(first.backfilled, 20);

    // A dead one's beat stands still: it is named, then taken over after three beats' watch.
    let mut body = f.client.index_body();
    body["aliases"] = json!({ f.client.reindex_alias(): {} });
    let dead = json!({"beat": 41, "every_ms": 100, "pid": 1, "host": "gone.example", "at": "2026-11-28T00:00:00Z"});
    body["mappings"]["_meta"] = json!({ "jobs_reindex": dead });
    f.client.create_index(&f.client.index_name(5), &body).await.expect("a dead reindex's index");
    let err = reindex::reindex(f.store().as_ref(), &f.client, &ReindexOptions::default()).await.map(|r| r.new);
    let msg = err.as_ref().map_err(ToString::to_string).expect_err("in progress");
    assert!(msg.contains("pid 1 on gone.example, last heartbeat at 2026-11-28T00:00:00Z"), "{msg}");
    // Interrupted while it watches: it stops there, taking nothing.
    let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(true)));
    let stopping = ReindexOptions { interrupt: Some(flag), ..forced.clone() };
    let e = reindex::reindex(f.store().as_ref(), &f.client, &stopping).await.expect_err("interrupted");
    assert!(matches!(e, reindex::ReindexError::Interrupted), "{e}");
    assert!(f.client.is_index(&f.client.index_name(5)).await.expect("is_index"), "nothing taken");
    let started = Instant::now();
    let r = reindex::reindex(f.store().as_ref(), &f.client, &forced).await.expect("the dead one is taken over");
    assert!(started.elapsed() >= Duration::from_millis(300), "it watched: {:?}", started.elapsed());
    assert_eq!(r.new, f.client.index_name(6));
    assert!(!f.client.is_index(&f.client.index_name(5)).await.expect("is_index"));
    assert_eq!(r.backfilled, 20);

    // One that swaps while watched (its last beat written just before) made its index the live
    // one: the watch sees its marker gone and takes nothing; the live index is left alone.
    let late = f.client.index_name(9);
    f.client.create_index(&late, &body).await.expect("a reindex about to swap");
    let live = f.client.alias_target(f.client.alias()).await.expect("alias").expect("live");
    let swap = json!({"actions": [
        {"remove": {"index": live, "alias": f.client.alias()}},
        {"add": {"index": late, "alias": f.client.alias(), "is_write_index": true}},
        {"remove": {"index": late, "alias": f.client.reindex_alias()}}
    ]});
    let (r, ()) = tokio::join!(reindex::reindex(f.store().as_ref(), &f.client, &forced), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        f.client.update_aliases(&swap).await.expect("the swap");
    });
    let r = r.expect("a reindex after the one that ended");
    assert!(f.client.is_index(&late).await.expect("is_index"), "the index swapped in during the watch is kept");
    assert_eq!((r.old.as_str(), r.new.as_str()), (late.as_str(), f.client.index_name(10).as_str()));
    assert_eq!(r.backfilled, 20);
    f.cleanup().await;
}

/// A delete sent to the reindex alias just as the swap removed it makes an index by that name
/// (the engines create a missing index for a delete, `require_alias` or not). The next reindex
/// clears it out of its way instead of failing on it for good.
async fn a_late_delete_leaves_no_index_in_a_reindex_s_way(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "reindex_late_delete").await else { return };
    let me = f.pg.user("me@example.com").await;
    create_many(&f, &me, 5, "x").await;
    drain(&f, &SyncConfig::default(), MINUTE).await;
    let seen = Arc::new(std::sync::Mutex::new(None));
    let hook: reindex::ReindexHook = {
        let (client, seen) = (f.client.clone(), seen.clone());
        Arc::new(move |step| {
            let (client, seen) = (client.clone(), seen.clone());
            Box::pin(async move {
                if step == ReindexStep::Backfilled {
                    let targets = client.targets().await.expect("targets");
                    *seen.lock().expect("lock") = Some(targets);
                }
            })
        })
    };
    let opts = ReindexOptions { hook: Some(hook), ..ReindexOptions::default() };
    reindex::reindex(f.store().as_ref(), &f.client, &opts).await.expect("first reindex");
    let late = seen.lock().expect("lock").clone().expect("targets seen during the reindex");
    assert!(late.reindexing.is_some(), "{late:?}");
    // The sync's write, resolved while the reindex ran, lands after its swap.
    let report = f.client.write(&late, &[Change::Delete { id: new_id(), version: 0 }], None).await;
    assert!(report.error.is_none(), "{report:?}");
    let marker = f.client.reindex_alias();
    assert!(f.client.is_index(&marker).await.expect("is_index"), "the engine made an index by the marker's name");
    let second = reindex::reindex(f.store().as_ref(), &f.client, &ReindexOptions::default()).await.expect("second");
    assert!(!f.client.is_index(&marker).await.expect("is_index"));
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(second.new));
    f.cleanup().await;
}
