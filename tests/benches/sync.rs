//! The sync benchmarks (`./dev bench sync`, run by `scripts/bench-sync.sh`; not in CI), side by
//! side in one run on the same Postgres and the same OpenSearch:
//!
//! 1. throughput on `BENCH_JOBS` (100,000) jobs: the sync run (`jobsctl sync --once`: claim,
//!    bulk, mark) and the reindex backfill (`jobsctl reindex`), each against the raw `_bulk`
//!    ceiling: the same documents as prebuilt NDJSON, posted with the same batch size and the
//!    same number of requests in flight, into an index with the same settings;
//! 2. PGSync (`PGSYNC_BIN` names the venv's `bin/`): its initial sync of the same jobs into an
//!    index with the same mapping and settings;
//! 3. change-to-searchable lag at `BENCH_LAG_RATE` (500) updates/s for `BENCH_LAG_SECONDS` (30)
//!    with the sync polling every second (`jobsctl sync`'s loop, in process): from the commit of
//!    each update to the first `_search` that returns that version, probed every 100 ms.
//!
//! `DATABASE_URL` and `OPENSEARCH_URL` (or `SEARCH_URL`) name the services; everything the
//! benchmark creates (a schema, indexes, PGSync's triggers and replication slot) is removed at
//! the end. Prints Markdown tables for BENCHMARKS.md. `BENCH_SECTIONS` picks sections
//! (`throughput,pgsync,lag`), `BENCH_ROUNDS` the throughput repetitions (2).

use jobs_core::model::Job;
use jobs_core::search::{self, Change};
use jobs_core::sql::Param;
use jobs_lambda::cli::reindex::{self, ReindexOptions};
use jobs_lambda::db::{Cell, Executor};
use jobs_lambda::migrate::{self, Options};
use jobs_lambda::pg::{PgExecutor, PgOptions};
use jobs_lambda::search::{SearchClient, SearchConfig};
use jobs_lambda::store::Store;
use jobs_lambda::sync_run::{self, Deadline, SyncConfig};
use jobs_tests::engine_direct::Direct;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

type Res<T> = Result<T, String>;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn num(name: &str, default: u64) -> u64 {
    var(name).and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

struct Bench {
    db_url: String,
    engine_url: String,
    jobs: u64,
    rounds: u64,
    sections: Vec<String>,
    store: Arc<Store<PgExecutor>>,
    schema: String,
    direct: Direct,
    /// Indexes and aliases to remove at the end.
    created: Mutex<Vec<String>>,
    tag: String,
}

/// Primary shards of every index the benchmark makes (`BENCH_SHARDS`, default 1 like the
/// sync's own default `SEARCH_SHARDS`).
fn shards() -> u32 {
    u32::try_from(num("BENCH_SHARDS", 1).max(1)).unwrap_or(1)
}

/// One measured line of the throughput table.
struct Line {
    what: String,
    docs: u64,
    secs: f64,
    cpu: CpuUse,
}

impl Line {
    fn rate(&self) -> f64 {
        self.docs as f64 / self.secs.max(1e-9)
    }
}

fn fmt_int(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bench sync: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Res<()> {
    if var("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let db_url = var("DATABASE_URL").ok_or("DATABASE_URL is not set (eval \"$(./dev services env)\")")?;
    let engine_url = var("OPENSEARCH_URL").or_else(|| var("SEARCH_URL")).ok_or("OPENSEARCH_URL is not set")?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let tag = format!("{:08x}", (nanos ^ u64::from(std::process::id())) & 0xffff_ffff);
    let schema = format!("bench_sync_{tag}");
    let db = PgExecutor::connect(&PgOptions::new(db_url.clone()).schema(&schema).max_connections(16))
        .map_err(|e| format!("connecting: {e}"))?;
    migrate::migrate(&db, &Options::schema(&schema)).await.map_err(|e| format!("migrating {schema}: {e}"))?;
    let sections = var("BENCH_SECTIONS")
        .unwrap_or_else(|| "throughput,pgsync,lag".into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    let b = Bench {
        db_url,
        direct: Direct::new(&engine_url),
        engine_url,
        jobs: num("BENCH_JOBS", 100_000),
        rounds: num("BENCH_ROUNDS", 2).max(1),
        sections,
        store: Arc::new(Store::new(db)),
        schema,
        created: Mutex::new(Vec::new()),
        tag,
    };
    let result = b.all().await;
    if var("BENCH_KEEP").is_none() {
        b.cleanup().await;
    }
    result
}

impl Bench {
    fn wants(&self, s: &str) -> bool {
        self.sections.iter().any(|x| x == s)
    }

    fn name(&self, what: &str) -> String {
        let n = format!("bench_{what}_{}", self.tag);
        if let Ok(mut c) = self.created.lock() {
            c.push(n.clone());
        }
        n
    }

    async fn all(&self) -> Res<()> {
        let version = self.direct.get("/").await.ok().and_then(|v| v["version"]["number"].as_str().map(str::to_owned));
        println!(
            "engine: {} at {} ({} primary shard(s), 0 replicas); postgres schema {}; {} jobs",
            version.map_or_else(|| "unknown engine".into(), |v| format!("OpenSearch {v}")),
            self.engine_url,
            shards(),
            self.schema,
            fmt_int(self.jobs as f64)
        );
        let started = Instant::now();
        self.insert_jobs().await?;
        println!(
            "inserted {} jobs in {:.1} s (one INSERT ... SELECT)",
            fmt_int(self.jobs as f64),
            started.elapsed().as_secs_f64()
        );
        let docs = self.all_jobs().await?;
        let avg =
            docs.iter().map(|j| search::bulk_body("x", &[Change::Upsert(j)]).len()).sum::<usize>() / docs.len().max(1);
        println!("average bulk action + document: {avg} bytes\n");

        let mut lines = Vec::new();
        let mut last_alias = None;
        if self.wants("throughput") || self.wants("lag") {
            let rounds = if self.wants("throughput") { self.rounds } else { 1 };
            for round in 1..=rounds {
                let (l, alias) = self.throughput_round(round, &docs).await?;
                lines.extend(l);
                last_alias = Some(alias);
            }
        }
        let pgsync = if self.wants("pgsync") { self.pgsync().await? } else { None };
        print_throughput(&lines, pgsync.as_ref(), self.jobs);
        if self.wants("lag")
            && let Some(alias) = last_alias
        {
            let modes = var("BENCH_LAG_MODES").unwrap_or_else(|| "after,norefresh".into());
            for mode in modes.split(',').map(str::trim) {
                let mode = match mode {
                    "after" => Poll::After,
                    "tick" => Poll::Tick,
                    "busy" => Poll::WhenIdle,
                    "norefresh" => Poll::AfterNoRefresh,
                    other => return Err(format!("unknown lag mode {other} (after, norefresh, tick, busy)")),
                };
                self.lag(&alias, mode).await?;
            }
        }
        Ok(())
    }

    async fn cleanup(&self) {
        let names = self.created.lock().map(|c| c.clone()).unwrap_or_default();
        for n in names {
            // An alias's indexes are `{alias}-v{N}`; deleted by name (Elasticsearch refuses
            // wildcard deletes by default).
            let listed = self.direct.get(&format!("/_cat/indices/{n}*?format=json&h=index")).await.unwrap_or_default();
            for index in listed.as_array().into_iter().flatten().filter_map(|r| r["index"].as_str()) {
                let _ = self.direct.delete(&format!("/{index}")).await;
            }
            let _ = self.direct.delete(&format!("/_index_template/{n}")).await;
        }
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        if let Err(e) = self.store.executor().execute(&sql, &[]).await {
            eprintln!("bench sync: could not drop {}: {e}", self.schema);
        }
    }

    /// 100 users, 10 workspaces and the jobs, generated in the database (as an import would).
    async fn insert_jobs(&self) -> Res<()> {
        let db = self.store.executor();
        let exec = |sql: String| async move { db.execute(&sql, &[]).await.map_err(|e| format!("{e}: {sql}")) };
        exec(
            "INSERT INTO users (id, email) SELECT ('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, \
              'user' || g || '@example.com' FROM generate_series(1, 100) g"
                .into(),
        )
        .await?;
        exec(
            "INSERT INTO workspace (id, name) SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, \
              'team-' || g FROM generate_series(1, 10) g"
                .into(),
        )
        .await?;
        exec(format!(
            "INSERT INTO job (id, workspace_id, user_id, status, type, project_name, hostname, arch, user_email, \
               error_message, metadata, created_at, updated_at, completed_at, version) \
             SELECT md5('job' || g)::uuid, \
               CASE WHEN g % 3 = 0 THEN NULL ELSE ('00000000-0000-4000-8000-' || lpad(to_hex(1 + g % 10), 12, '0'))::uuid END, \
               ('00000000-0000-4000-9000-' || lpad(to_hex(1 + g % 100), 12, '0'))::uuid, \
               (ARRAY['QUEUED','RUNNING','SUCCEEDED','FAILED','CANCELLED'])[1 + g % 5], \
               (ARRAY['BUILD','TEST','DEPLOY','SCAN'])[1 + (g / 5) % 4], \
               'project-' || (g % 500) || '-service', \
               'build-host-' || (g % 64) || '.ci.example.com', \
               (ARRAY['x86_64','arm64'])[1 + g % 2], \
               'user' || (1 + g % 100) || '@example.com', \
               CASE WHEN g % 5 = 3 THEN 'step ' || (g % 17) || ' failed: exit status 1' END, \
               jsonb_build_object('dockerImageId', 'sha256:' || md5(g::text) || md5((g + 1)::text), \
                 'cpuCores', 1 + g % 16, 'memoryGb', 2 * (1 + g % 8), 'buildDurationMs', (g * 7919) % 3600000, \
                 'branch', 'feature/' || (g % 200), 'commit', substr(md5('c' || g), 1, 12)), \
               now() - make_interval(secs => g * 3), now() - make_interval(secs => g * 2), \
               CASE WHEN g % 5 >= 2 THEN now() - make_interval(secs => g * 2) END, \
               g % 4 \
             FROM generate_series(1, {}) g",
            self.jobs
        ))
        .await?;
        exec("ANALYZE".into()).await?;
        Ok(())
    }

    async fn all_jobs(&self) -> Res<Vec<Job>> {
        let mut out = Vec::with_capacity(self.jobs as usize);
        let mut after = None;
        for _ in 0..=(self.jobs / 5_000 + 1) {
            let page = self.store.scan_jobs(after, 5_000).await.map_err(|e| e.to_string())?;
            after = page.last_id;
            let done = page.matched < 5_000;
            out.extend(page.jobs);
            if done {
                break;
            }
        }
        Ok(out)
    }

    async fn client(&self, alias: &str) -> Res<SearchClient> {
        let cfg = SearchConfig::new(&self.engine_url)
            .map_err(|e| e.to_string())?
            .alias(alias)
            .shards(shards())
            .replicas(0)
            .request_timeout(Duration::from_secs(120));
        SearchClient::new(cfg).await.map_err(|e| e.to_string())
    }

    /// Posts prebuilt NDJSON (1,000 documents a request, the sync's batch) with `inflight`
    /// requests at a time into a fresh index made like the sync's (`refresh` as given).
    async fn ceiling(&self, docs: &[Job], inflight: usize, refresh: &str) -> Res<(f64, CpuUse)> {
        let index = self.name(&format!("ceiling{}", self.created.lock().map(|c| c.len()).unwrap_or(0)));
        let mut body = search::index_body(shards(), 0);
        body["settings"]["index"]["refresh_interval"] = json!(refresh);
        self.direct.put(&format!("/{index}"), body).await?;
        let bodies: Vec<Vec<u8>> = docs
            .chunks(1_000)
            .map(|c| search::bulk_body(&index, &c.iter().map(Change::Upsert).collect::<Vec<_>>()))
            .collect();
        let started = Instant::now();
        let cpu = cpu_mark();
        let mut set = tokio::task::JoinSet::new();
        let mut failed = 0usize;
        for body in bodies {
            if set.len() >= inflight.max(1)
                && let Some(r) = set.join_next().await
            {
                failed += r.map_err(|e| e.to_string())??;
            }
            let d = self.direct.clone();
            set.spawn(async move { d.bulk(body).await });
        }
        while let Some(r) = set.join_next().await {
            failed += r.map_err(|e| e.to_string())??;
        }
        // The refresh inside the clock: the sync's run ends with one too (`refresh: true`).
        self.direct.refresh(&index).await?;
        let secs = started.elapsed().as_secs_f64();
        let cpu = cpu_since(cpu);
        let count = self.direct.count(&index).await?;
        if failed > 0 || count != docs.len() as u64 {
            return Err(format!("ceiling into {index}: {failed} items failed, {count} documents"));
        }
        Ok((secs, cpu))
    }

    async fn throughput_round(&self, round: u64, docs: &[Job]) -> Res<(Vec<Line>, String)> {
        let n = docs.len() as u64;
        let mut lines = Vec::new();
        let sync_cfg = SyncConfig { workers: num("BENCH_SYNC_WORKERS", 2).max(1) as usize, ..SyncConfig::default() };
        let reindex_opts = ReindexOptions::default();

        // Every row dirty again (a sync-column-only update: no version bump).
        if round > 1 {
            self.store
                .executor()
                .execute("UPDATE job SET es_synced_at = NULL, es_sync_version = 0", &[])
                .await
                .map_err(|e| e.to_string())?;
            self.store.executor().execute("VACUUM ANALYZE job_sync_queue", &[]).await.map_err(|e| e.to_string())?;
        }

        let (secs, cpu) = self.ceiling(docs, sync_cfg.workers, "1s").await?;
        lines.push(Line {
            cpu,
            what: format!(
                "round {round}: raw `_bulk` ceiling, prebuilt NDJSON, {} x {} docs in flight, refresh 1s",
                sync_cfg.workers, sync_cfg.batch_size
            ),
            docs: n,
            secs,
        });

        let alias = self.name(&format!("sync{round}"));
        let client = self.client(&alias).await?;
        client.ensure_index().await.map_err(|e| e.to_string())?;
        let cpu = cpu_mark();
        let s = sync_run::run(&self.store, &client, &sync_cfg, Deadline::never()).await;
        let cpu = cpu_since(cpu);
        let done = s.counts.indexed + s.counts.stale;
        if s.failed() || done != n || s.marked != n {
            return Err(format!("sync run: {s:?}"));
        }
        lines.push(Line {
            what: format!(
                "round {round}: sync run (`jobsctl sync --once`: claim, bulk, mark), {} workers x {}",
                sync_cfg.workers, sync_cfg.batch_size
            ),
            docs: done,
            secs: s.elapsed_ms as f64 / 1e3,
            cpu,
        });

        let (secs, cpu) = self.ceiling(docs, reindex_opts.parallel, "-1").await?;
        lines.push(Line {
            cpu,
            what: format!(
                "round {round}: raw `_bulk` ceiling, {} x {} docs in flight, refresh off",
                reindex_opts.parallel, reindex_opts.batch_size
            ),
            docs: n,
            secs,
        });
        let cpu = cpu_mark();
        let r = reindex::reindex(&self.store, &client, &reindex_opts).await.map_err(|e| e.to_string())?;
        let cpu = cpu_since(cpu);
        if r.backfilled != n {
            return Err(format!("reindex backfilled {} of {n}", r.backfilled));
        }
        lines.push(Line {
            what: format!(
                "round {round}: reindex backfill (`jobsctl reindex`: keyset read, bulk), {} x {}",
                reindex_opts.parallel, reindex_opts.batch_size
            ),
            docs: r.backfilled,
            secs: r.backfill_ms as f64 / 1e3,
            cpu,
        });
        // End to end, as PGSync's whole run is: index made, backfill, settings restored,
        // catch-up, alias swapped.
        lines.push(Line {
            what: format!("round {round}: the whole `jobsctl reindex` (index, backfill, restore, catch-up, swap)"),
            docs: r.backfilled,
            secs: r.elapsed_ms as f64 / 1e3,
            cpu,
        });
        Ok((lines, alias))
    }

    /// PGSync's initial sync of the same jobs; `None` when it is not installed.
    async fn pgsync(&self) -> Res<Option<PgSyncResult>> {
        let Some(bin) = var("PGSYNC_BIN").map(PathBuf::from) else {
            println!("PGSync: skipped (PGSYNC_BIN is not set; scripts/bench-sync.sh installs it)");
            return Ok(None);
        };
        let index = self.name("pgsync");
        // The core's mapping and settings, open to the `_meta` field PGSync adds.
        let mut body = search::index_body(shards(), 0);
        body["mappings"]["dynamic"] = json!(true);
        self.direct.put(&format!("/{index}"), body).await?;

        let url = url_parts(&self.db_url)?;
        let dir = std::env::temp_dir().join(format!("bench-pgsync-{}", self.tag));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let template = include_str!("../../bench/pgsync/schema.json");
        let schema_json =
            template.replace("@DATABASE@", &url.database).replace("@SCHEMA@", &self.schema).replace("@INDEX@", &index);
        let config = dir.join("schema.json");
        std::fs::write(&config, schema_json).map_err(|e| e.to_string())?;
        let engine = url_parts(&self.engine_url)?;
        let envs: Vec<(String, String)> = vec![
            ("PG_HOST".into(), url.host.clone()),
            ("PG_PORT".into(), url.port.to_string()),
            ("PG_USER".into(), url.user.clone()),
            ("PG_DATABASE".into(), url.database.clone()),
            ("OPENSEARCH".into(), "true".into()),
            ("ELASTICSEARCH".into(), "false".into()),
            ("ELASTICSEARCH_HOST".into(), engine.host.clone()),
            ("ELASTICSEARCH_PORT".into(), engine.port.to_string()),
            ("ELASTICSEARCH_SCHEME".into(), "http".into()),
            ("ELASTICSEARCH_URL".into(), self.engine_url.clone()),
            ("REDIS_HOST".into(), "127.0.0.1".into()),
            ("REDIS_PORT".into(), var("REDIS_PORT").unwrap_or_else(|| "6379".into())),
            ("CHECKPOINT_PATH".into(), dir.display().to_string()),
        ];
        // PGSync logs to stdout and stderr: both go to a file, read on failure.
        let log_path = dir.join("pgsync.log");
        let cmd = |prog: &str, args: &[&str]| -> Res<tokio::process::Command> {
            let log =
                std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(|e| e.to_string())?;
            let log2 = log.try_clone().map_err(|e| e.to_string())?;
            let mut c = tokio::process::Command::new(bin.join(prog));
            // Only what is set here: PGSync reads many variables (ELASTICSEARCH_URL, PG_URL,
            // SCHEMA, ...) that the services' environment may also define, for other engines.
            c.env_clear().envs(["PATH", "HOME", "LANG"].iter().filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))));
            c.args(args).arg("--config").arg(&config).current_dir(&dir).envs(envs.iter().cloned());
            c.stdout(log).stderr(log2);
            Ok(c)
        };
        let log_tail = || tail(&std::fs::read(&log_path).unwrap_or_default());
        let out = cmd("bootstrap", &[])?.status().await.map_err(|e| format!("bootstrap: {e}"))?;
        if !out.success() {
            return Err(format!("pgsync bootstrap failed: {}", log_tail()));
        }
        let version = std::process::Command::new(bin.join("pgsync"))
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("Version: ").to_owned())
            .unwrap_or_default();

        // The initial sync (no --daemon: one pass, then exit), watched through `_count`.
        let started = Instant::now();
        let cpu = cpu_mark();
        let mut child = cmd("pgsync", &[])?.spawn().map_err(|e| format!("pgsync: {e}"))?;
        let mut first_doc: Option<f64> = None;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if first_doc.is_none() && self.direct.count(&index).await.unwrap_or(0) > 0 {
                first_doc = Some(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > Duration::from_secs(1_800) {
                let _ = child.kill().await;
                return Err("pgsync did not finish in 30 minutes".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_since(cpu);
        self.direct.refresh(&index).await?;
        let count = self.direct.count(&index).await?;
        let failure = (!status.success() || count != self.jobs).then(|| {
            format!("pgsync exited {status} with {count} documents (log {}): {}", log_path.display(), log_tail())
        });
        let teardown = cmd("bootstrap", &["--teardown"])?.status().await.map_err(|e| format!("teardown: {e}"))?;
        if !teardown.success() {
            eprintln!("bench sync: pgsync teardown failed: {}", log_tail());
        }
        if let Some(f) = failure {
            return Err(f);
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Some(PgSyncResult { version, docs: count, wall, first_doc: first_doc.unwrap_or(0.0), cpu }))
    }

    /// Updates at a fixed rate while the sync polls every second; the lag of each update until
    /// a search returns it.
    async fn lag(&self, alias: &str, mode: Poll) -> Res<()> {
        let rate = num("BENCH_LAG_RATE", 500).max(1);
        let secs = num("BENCH_LAG_SECONDS", 30).max(1);
        let interval = Duration::from_secs(1);
        let client = self.client(alias).await?;
        let index = client.alias_target(alias).await.map_err(|e| e.to_string())?.ok_or("no index behind the alias")?;
        let ids: Arc<Vec<Uuid>> = Arc::new(self.all_jobs().await?.into_iter().map(|j| j.id).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
        let refresh_before = self.refresh_stats(&index).await;
        let window = Instant::now();

        // The poller (see [`Poll`]).
        let poller = {
            let (store, client, stop, runs) = (self.store.clone(), client.clone(), stop.clone(), runs.clone());
            tokio::spawn(async move {
                // The default run refreshes the index after it indexed something.
                let cfg = SyncConfig { refresh: mode == Poll::After, ..SyncConfig::default() };
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::SeqCst) {
                    if mode == Poll::Tick {
                        tick.tick().await;
                    }
                    let s = sync_run::run(&store, &client, &cfg, Deadline::never()).await;
                    if let Ok(mut r) = runs.lock() {
                        r.push((s.claimed, s.elapsed_ms));
                    }
                    match mode {
                        Poll::After | Poll::AfterNoRefresh => tokio::time::sleep(interval).await,
                        Poll::WhenIdle if s.claimed == 0 || s.failed() => tokio::time::sleep(interval).await,
                        Poll::WhenIdle | Poll::Tick => {}
                    }
                }
            })
        };

        // The writer: `rate` single-statement version-bumping updates a second (a JPA-style
        // writer), each recorded with the instant its commit returned.
        let commits: Arc<Mutex<Vec<(Uuid, i64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
        let behind = Arc::new(AtomicU64::new(0));
        let writer = {
            let (store, commits, ids, behind) = (self.store.clone(), commits.clone(), ids.clone(), behind.clone());
            tokio::spawn(async move {
                let sem = Arc::new(tokio::sync::Semaphore::new(32));
                let tick = Duration::from_millis(10);
                let per_tick = (rate / 100).max(1);
                let start = Instant::now();
                let total = rate * secs;
                let mut sent = 0u64;
                let mut rng = 0x1234_5678_9abc_def0u64;
                let mut tasks = tokio::task::JoinSet::new();
                while sent < total {
                    let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
                    if due <= sent {
                        tokio::time::sleep(tick).await;
                        continue;
                    }
                    if due - sent > per_tick * 10 {
                        behind.fetch_add(1, Ordering::Relaxed);
                    }
                    for _ in sent..due {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let id = ids[(rng % ids.len().max(1) as u64) as usize];
                        let Ok(permit) = sem.clone().acquire_owned().await else { return };
                        let (store, commits) = (store.clone(), commits.clone());
                        tasks.spawn(async move {
                            let _permit = permit;
                            let r = store
                                .executor()
                                .query(
                                    "UPDATE job SET metadata = metadata || jsonb_build_object('progress', $2::bigint), \
                                     version = version + 1, updated_at = now() WHERE id = $1::uuid RETURNING version",
                                    &[Param::Uuid(id), Param::Int((rng % 100) as i64)],
                                )
                                .await;
                            let at = Instant::now();
                            if let Ok(rows) = r
                                && let Some(Cell::Int(v)) = rows.first().and_then(|r| r.first())
                                && let Ok(mut c) = commits.lock()
                            {
                                c.push((id, *v, at));
                            }
                        });
                        while tasks.try_join_next().is_some() {}
                    }
                    sent = due;
                }
                while tasks.join_next().await.is_some() {}
            })
        };

        // The prober: every 100 ms, which recorded versions does a search return?
        let mut lags: Vec<f64> = Vec::new();
        let mut pending: HashMap<Uuid, Vec<(i64, Instant)>> = HashMap::new();
        let started = Instant::now();
        let deadline = Duration::from_secs(secs + 60);
        let mut writer = Some(writer);
        let mut probes = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(mut c) = commits.lock() {
                for (id, v, at) in c.drain(..) {
                    pending.entry(id).or_default().push((v, at));
                }
            }
            let writer_done = writer.as_ref().is_none_or(|w| w.is_finished());
            if writer_done && let Some(w) = writer.take() {
                w.await.map_err(|e| e.to_string())?;
                if let Ok(mut c) = commits.lock() {
                    for (id, v, at) in c.drain(..) {
                        pending.entry(id).or_default().push((v, at));
                    }
                }
            }
            if pending.is_empty() {
                if writer.is_none() {
                    break;
                }
                continue;
            }
            let want: Vec<Uuid> = pending.keys().copied().collect();
            // Visible by the time this probe ran: its start is the (upper-bound) instant.
            let now = Instant::now();
            let seen = self.direct.searchable_versions(&index, &want).await?;
            probes += 1;
            for (id, v) in seen {
                if let Some(list) = pending.get_mut(&id) {
                    list.retain(|(want, at)| {
                        let visible = *want <= v;
                        if visible {
                            lags.push(now.duration_since(*at).as_secs_f64());
                        }
                        !visible
                    });
                    if list.is_empty() {
                        pending.remove(&id);
                    }
                }
            }
            if started.elapsed() > deadline {
                break;
            }
        }
        stop.store(true, Ordering::SeqCst);
        let refresh_after = self.refresh_stats(&index).await;
        let window = window.elapsed().as_secs_f64();
        let _ = tokio::time::timeout(Duration::from_secs(60), poller).await;
        let unseen: usize = pending.values().map(Vec::len).sum();
        let runs = runs.lock().map(|r| r.clone()).unwrap_or_default();
        let busy: Vec<&(u64, u64)> = runs.iter().filter(|(c, _)| *c > 0).collect();
        let mean_run = busy.iter().map(|(_, ms)| *ms as f64).sum::<f64>() / busy.len().max(1) as f64;
        let mean_claim = busy.iter().map(|(c, _)| *c as f64).sum::<f64>() / busy.len().max(1) as f64;
        lags.sort_by(f64::total_cmp);
        let pct =
            |p: f64| lags.get(((lags.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
        let achieved = lags.len() as f64 / secs as f64;
        println!("\n| change-to-searchable lag, {rate} updates/s for {secs} s; {} | value |", mode.describe());
        println!("|---|---:|");
        println!(
            "| updates committed (achieved rate) | {} ({:.0}/s) |",
            fmt_int((lags.len() + unseen) as f64),
            achieved
        );
        println!("| p50 | {:.2} s |", pct(0.50));
        println!("| p90 | {:.2} s |", pct(0.90));
        println!("| p99 | {:.2} s |", pct(0.99));
        println!("| max | {:.2} s |", lags.last().copied().unwrap_or(f64::NAN));
        println!("| never seen within {} s | {unseen} |", deadline.as_secs());
        println!(
            "| sync runs with work: {} (mean {:.0} changes, {:.0} ms each); probes: {probes} (every 100 ms) | |",
            busy.len(),
            mean_claim,
            mean_run
        );
        if let (Some((n0, ms0)), Some((n1, ms1))) = (refresh_before, refresh_after)
            && n1 > n0
        {
            println!(
                "| engine refreshes (search-visible): {} in {window:.0} s, one every {:.0} ms, each taking {:.0} ms on average | |",
                n1 - n0,
                window * 1e3 / (n1 - n0) as f64,
                (ms1 - ms0) as f64 / (n1 - n0) as f64
            );
        }
        if var("BENCH_LAG_HISTOGRAM").is_some() {
            let mut buckets = [0usize; 40];
            for l in &lags {
                buckets[((l * 10.0) as usize).min(39)] += 1;
            }
            let text: Vec<String> = buckets
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| format!("{:.1}s:{n}", i as f64 / 10.0))
                .collect();
            println!("histogram (100 ms buckets, lower bound): {}", text.join(" "));
        }
        if behind.load(Ordering::Relaxed) > 0 {
            println!("(the writer fell behind its schedule {} times)", behind.load(Ordering::Relaxed));
        }
        Ok(())
    }
}

/// CPU seconds spent during a measurement by the engine, by Postgres (postmaster and
/// backends), by this process, and by the whole machine (all cores, everyone).
#[derive(Debug, Clone, Copy, Default)]
struct CpuUse {
    engine: f64,
    postgres: f64,
    bench: f64,
    machine: f64,
    wall: f64,
}

#[derive(Debug, Clone, Copy)]
struct CpuMark {
    engine: u64,
    postgres: u64,
    bench: u64,
    machine: u64,
    at: Instant,
}

/// Clock ticks per second of /proc (USER_HZ: 100 on Linux x86_64).
const TICKS: f64 = 100.0;

/// `(ppid, utime + stime, cutime + cstime)` of a process, from `/proc/<pid>/stat`.
fn proc_ticks(pid: &str) -> Option<(String, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some((f.get(1)?.to_string(), n(11) + n(12), n(13) + n(14)))
}

/// The engine (`BENCH_ENGINE_PID`) and Postgres (`BENCH_PG_PID`, the postmaster, with every
/// child) CPU ticks, ours, and the machine's busy ticks.
fn cpu_mark() -> CpuMark {
    let engine = var("BENCH_ENGINE_PID").and_then(|p| proc_ticks(&p)).map_or(0, |(_, own, _)| own);
    let postgres = var("BENCH_PG_PID").map_or(0, |pm| {
        let mut total = proc_ticks(&pm).map_or(0, |(_, own, children)| own + children);
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.bytes().all(|b| b.is_ascii_digit())
                    && let Some((ppid, own, _)) = proc_ticks(&name)
                    && ppid == pm
                {
                    total += own;
                }
            }
        }
        total
    });
    let bench = proc_ticks("self").map_or(0, |(_, own, _)| own);
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let cpu =
                s.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse::<u64>().ok()).collect::<Vec<_>>();
            // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
            Some(cpu.iter().take(8).sum::<u64>() - cpu.get(3).copied().unwrap_or(0) - cpu.get(4).copied().unwrap_or(0))
        })
        .unwrap_or(0);
    CpuMark { engine, postgres, bench, machine, at: Instant::now() }
}

fn cpu_since(m: CpuMark) -> CpuUse {
    let now = cpu_mark();
    let s = |a: u64, b: u64| a.saturating_sub(b) as f64 / TICKS;
    CpuUse {
        engine: s(now.engine, m.engine),
        postgres: s(now.postgres, m.postgres),
        bench: s(now.bench, m.bench),
        machine: s(now.machine, m.machine),
        wall: now.at.duration_since(m.at).as_secs_f64(),
    }
}

/// How the lag benchmark's poller paces its sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poll {
    /// `jobsctl sync --interval 1` as it is: run to clean (a run that indexed something
    /// refreshes the index, `SyncConfig::refresh`), then sleep a second.
    After,
    /// As `After` without the refresh (`jobsctl sync --no-refresh`): documents wait for the
    /// engine's next scheduled refresh.
    AfterNoRefresh,
    /// Without the refresh, a run started every second (start to start).
    Tick,
    /// Without the refresh, sleep a second only after a run that found nothing.
    WhenIdle,
}

impl Poll {
    fn describe(self) -> &'static str {
        match self {
            Poll::After => "`jobsctl sync` loop: run to clean (`_refresh` if it indexed anything), sleep 1 s",
            Poll::AfterNoRefresh => "`jobsctl sync --no-refresh`: run to clean, sleep 1 s",
            Poll::Tick => "no refresh, a run started every 1 s (start to start)",
            Poll::WhenIdle => "no refresh, sleep 1 s only when a run found nothing (back to back while busy)",
        }
    }
}

impl Bench {
    /// Search-visible refreshes of an index so far: (count, total ms).
    async fn refresh_stats(&self, index: &str) -> Option<(u64, u64)> {
        let v = self.direct.get(&format!("/{index}/_stats/refresh")).await.ok()?;
        let r = &v["indices"][index]["primaries"]["refresh"];
        let n = r["external_total"].as_u64().or_else(|| r["total"].as_u64())?;
        let ms = r["external_total_time_in_millis"].as_u64().or_else(|| r["total_time_in_millis"].as_u64())?;
        Some((n, ms))
    }
}

struct PgSyncResult {
    version: String,
    docs: u64,
    wall: f64,
    first_doc: f64,
    cpu: CpuUse,
}

struct UrlParts {
    host: String,
    port: u16,
    user: String,
    database: String,
}

/// `scheme://[user@]host:port[/database]`: enough for the services' URLs.
fn url_parts(url: &str) -> Res<UrlParts> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) = auth.rsplit_once('@').unwrap_or(("", auth));
    let user = user.split(':').next().unwrap_or_default().to_owned();
    let (host, port) = hostport.rsplit_once(':').ok_or_else(|| format!("{url}: no port"))?;
    let port = port.parse().map_err(|_| format!("{url}: bad port"))?;
    let database = path.split('?').next().unwrap_or_default().to_owned();
    Ok(UrlParts { host: host.to_owned(), port, user, database })
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn print_throughput(lines: &[Line], pgsync: Option<&PgSyncResult>, jobs: u64) {
    if lines.is_empty() && pgsync.is_none() {
        return;
    }
    println!(
        "\n| {} jobs into OpenSearch | seconds | docs/s | vs the ceiling beside it | CPU s: engine / postgres / ours / whole machine |",
        fmt_int(jobs as f64)
    );
    println!("|---|---:|---:|---:|---|");
    let cpu = |c: &CpuUse| {
        format!("{:.1} / {:.1} / {:.1} / {:.1} of {:.1}", c.engine, c.postgres, c.bench, c.machine, c.wall * 2.0)
    };
    let mut ceiling = None;
    for l in lines {
        let ratio = if l.what.contains("ceiling") {
            ceiling = Some(l.rate());
            "1.00".to_owned()
        } else {
            ceiling.map_or_else(|| "-".into(), |c| format!("{:.2}", l.rate() / c))
        };
        println!("| {} | {:.1} | {} | {ratio} | {} |", l.what, l.secs, fmt_int(l.rate()), cpu(&l.cpu));
    }
    if let Some(p) = pgsync {
        let steady = p.docs as f64 / (p.wall - p.first_doc).max(1e-9);
        println!(
            "| PGSync {} initial sync (`pgsync --config`, its defaults: 5,000 docs x 4 threads), whole run | {:.1} | {} | | {} (PGSync's own: the rest) |",
            p.version,
            p.wall,
            fmt_int(p.docs as f64 / p.wall),
            cpu(&p.cpu)
        );
        println!(
            "| PGSync, from its first document to exit (startup excluded) | {:.1} | {} | | |",
            p.wall - p.first_doc,
            fmt_int(steady)
        );
        let ours: Vec<f64> = lines.iter().filter(|l| l.what.contains("sync run")).map(Line::rate).collect();
        let backfill: Vec<f64> = lines.iter().filter(|l| l.what.contains("reindex backfill")).map(Line::rate).collect();
        let whole: Vec<f64> =
            lines.iter().filter(|l| l.what.contains("whole `jobsctl reindex`")).map(Line::rate).collect();
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        if !ours.is_empty() {
            println!(
                "\nours / PGSync (median round of ours vs PGSync without its startup): sync run {:.1}x, reindex backfill {:.1}x",
                median(&ours) / steady,
                median(&backfill) / steady
            );
            println!(
                "end to end (the whole reindex vs PGSync's whole run): {:.1}x",
                median(&whole) / (p.docs as f64 / p.wall)
            );
        }
    }
}
