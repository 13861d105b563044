//! The search client and the API's searcher against real OpenSearch and Elasticsearch (each
//! test runs once per engine the environment names): the core's mapping, externally versioned
//! bulk writes, searches and cursors, the Postgres fallback and its circuit breaker, and the
//! differential test (engine vs Postgres fallback vs the core's reference on generated data).

use jobs_core::model::{Job, JobStatus, JobType};
use jobs_core::query::{Scope, SearchRequest};
use jobs_core::search::{Change, Outcome};
use jobs_core::time::Timestamp;
use jobs_lambda::search::{
    BreakerState, Flavor, SearchClient, SearchError, Searcher, SearcherOptions, Source, Targets,
};
use jobs_lambda::sync_run::{self, Deadline, SyncConfig};
use jobs_tests::search_env::{Gate, Rng, SearchFixture, dead_url, insert_jobs};
use jobs_tests::store_suite::new_id;
use serde_json::{Map, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use uuid::Uuid;

jobs_tests::per_engine!(
    mapping_is_accepted_and_ensure_is_race_safe,
    bulk_external_versioning,
    bulk_splits_large_batches,
    a_scan_kept_alive_outlives_its_point_in_time,
    search_get_and_cursors,
    fallback_when_the_engine_is_down_and_the_breaker,
    differential_engine_vs_postgres_vs_reference,
);

fn job(user: Uuid, n: i64) -> Job {
    let t = Timestamp::from_millis(1_714_564_800_000 + n);
    Job {
        id: new_id(),
        workspace_id: None,
        user_id: user,
        status: JobStatus::Running,
        job_type: JobType::Build,
        project_name: format!("project-{n}"),
        hostname: Some("ci-1.example.com".into()),
        arch: Some("x86_64".into()),
        user_email: None,
        error_message: None,
        metadata: jobs_core::Object::new(),
        created_at: t,
        updated_at: t,
        completed_at: None,
        version: 1,
    }
}

async fn mapping_is_accepted_and_ensure_is_race_safe(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "mapping").await else { return };
    let health = f.client.health().await.expect("health");
    assert!(["green", "yellow"].contains(&health.status.as_str()), "{health:?}");
    let want = if engine == "opensearch" { Flavor::OpenSearch } else { Flavor::Elasticsearch };
    assert_eq!(f.client.flavor().await.expect("flavor"), want);

    // Eight processes racing to create the index: one index, one alias, all agree.
    let clients: Vec<SearchClient> = (0..8).map(|_| f.client.clone()).collect();
    let results = futures_util::future::join_all(clients.iter().map(|c| c.ensure_index())).await;
    let names: HashSet<String> = results.into_iter().map(|r| r.expect("ensure_index")).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let index = names.into_iter().next().unwrap_or_default();
    assert_eq!(index, f.client.index_name(1));
    assert_eq!(f.client.versions().await.expect("versions").len(), 1);
    assert_eq!(f.client.ensure_index().await.expect("again"), index, "idempotent");
    let targets = f.client.targets().await.expect("targets");
    assert_eq!((targets.current.as_str(), targets.reindexing.as_deref()), (index.as_str(), None));

    // The mapping the engine stored is the core's (strict, every field).
    let settings = f.client.index_settings(&index).await.expect("settings");
    assert_eq!(settings["index.number_of_replicas"], "0");
    let body = f.client.index_body();
    let fields: Vec<&String> = body["mappings"]["properties"].as_object().expect("props").keys().collect();
    // Every document shape the core makes is accepted: nulls, unknown and nested metadata,
    // unicode, long text, a known key with a bad value (left out of the document).
    let user = new_id();
    let mut full = job(user, 1);
    full.workspace_id = Some(new_id());
    full.user_email = Some("ada@example.com".into());
    full.error_message = Some("é".repeat(3000));
    full.status = JobStatus::Failed;
    full.completed_at = Some(Timestamp::from_millis(1_714_564_900_000));
    full.metadata = serde_json::from_value(json!({
        "cpuCores": 8, "memoryGb": 1.5, "buildDurationMs": 120000,
        "dockerImageId": format!("sha256:{}", "a".repeat(64)),
        "branch": "main", "nested": {"deep": [1, {"x": null}]}, "emoji": "🚀"
    }))
    .expect("metadata");
    let mut sparse = job(user, 2);
    sparse.hostname = None;
    sparse.arch = None;
    sparse.project_name = "日本語 🚀".into();
    let mut odd = job(user, 3);
    odd.metadata = serde_json::from_value(json!({"cpuCores": "many", "memoryGb": -1})).expect("metadata");
    let jobs = [full, sparse, odd];
    let changes: Vec<Change<'_>> = jobs.iter().map(Change::Upsert).collect();
    let report = f.client.bulk(std::slice::from_ref(&index), &changes, None).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(report.outcomes, vec![Some(Outcome::Indexed); 3]);
    for j in &jobs {
        let (doc, version) = f.client.get(j.id, None).await.expect("get").expect("found");
        assert_eq!(version, j.version);
        assert_eq!(&doc, j, "a document's _source is the job as stored, metadata and all");
    }
    assert!(fields.contains(&&"created_at_us".to_owned()));

    // The alias lost while indexes remain (removed by hand; `-v1` deleted after reindexes; a
    // reindex's unfinished `-v4` beside them): it goes back on the newest finished index, not
    // on a new, empty `-v1` that would answer every search with nothing.
    let mut body = f.client.index_body();
    f.client.create_index(&f.client.index_name(3), &body).await.expect("v3");
    body["aliases"] = json!({ f.client.reindex_alias(): {} });
    f.client.create_index(&f.client.index_name(4), &body).await.expect("v4, reindexing");
    f.client.delete_index(&index).await.expect("delete v1 (and the alias with it)");
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), None);
    assert_eq!(f.client.ensure_index().await.expect("ensure"), f.client.index_name(3));
    assert!(!f.client.is_index(&index).await.expect("is_index"), "no new v1");
    assert_eq!(f.client.alias_target(f.client.alias()).await.expect("alias"), Some(f.client.index_name(3)));

    // An index that does not get to yellow in time: a timeout (the engines answer 408), which
    // used to surface as a non-transient "408" error.
    let missing = format!("{}-v99", f.client.alias());
    match f.client.wait_for_yellow(&missing, std::time::Duration::from_secs(1)).await {
        Err(SearchError::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    f.cleanup().await;
}

async fn bulk_external_versioning(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "versioning").await else { return };
    f.client.ensure_index().await.expect("index");
    let targets = f.client.targets().await.expect("targets");
    let user = new_id();
    let mut v3 = job(user, 1);
    v3.version = 3;
    v3.project_name = "three".into();
    let mut v2 = v3.clone();
    v2.version = 2;
    v2.project_name = "two".into();
    let mut v5 = v3.clone();
    v5.version = 5;
    v5.project_name = "five".into();
    let send = |c| send_one(&f, &targets, c);
    let doc = || async { f.client.get(v3.id, None).await.expect("get") };

    assert_eq!(send(Change::Upsert(&v3)).await, Outcome::Indexed);
    assert_eq!(send(Change::Upsert(&v2)).await, Outcome::Stale, "an older version never overwrites");
    assert_eq!(send(Change::Upsert(&v3)).await, Outcome::Stale, "the same version is already there");
    assert_eq!(doc().await.map(|(j, v)| (j.project_name, v)), Some(("three".into(), 3)));
    assert_eq!(send(Change::Upsert(&v5)).await, Outcome::Indexed);
    assert_eq!(doc().await.map(|(j, v)| (j.project_name, v)), Some(("five".into(), 5)));
    // An old delete (the row was deleted at version 3) loses to version 5.
    assert_eq!(send(Change::Delete { id: v3.id, version: 3 }).await, Outcome::Stale);
    assert!(doc().await.is_some());
    // The tombstone of version 5 (sent as 6) deletes it; an older upsert arriving late loses.
    assert_eq!(send(Change::Delete { id: v3.id, version: 5 }).await, Outcome::Indexed);
    assert!(doc().await.is_none());
    assert_eq!(send(Change::Upsert(&v5)).await, Outcome::Stale, "a late upsert cannot resurrect it");
    assert!(doc().await.is_none());
    // Deleting what was never there is done, not an error.
    assert_eq!(send(Change::Delete { id: new_id(), version: 0 }).await, Outcome::Indexed);
    // A newer version (re-created and updated past the delete) wins.
    let mut v9 = v3.clone();
    v9.version = 9;
    assert_eq!(send(Change::Upsert(&v9)).await, Outcome::Indexed);
    assert_eq!(doc().await.map(|(_, v)| v), Some(9));

    // Concurrent writers of different versions of one job: the highest wins, whatever the order.
    let versions: Vec<Job> = (10..40)
        .map(|v| {
            let mut j = v3.clone();
            j.version = v;
            j.project_name = format!("v{v}");
            j
        })
        .collect();
    let sends = versions.iter().rev().map(|j| send(Change::Upsert(j)));
    let outcomes = futures_util::future::join_all(sends).await;
    assert!(outcomes.iter().all(Outcome::is_done), "{outcomes:?}");
    assert_eq!(doc().await.map(|(j, v)| (j.project_name, v)), Some(("v39".into(), 39)));
    f.cleanup().await;
}

async fn send_one(f: &SearchFixture, targets: &Targets, c: Change<'_>) -> Outcome {
    let r = f.client.write(targets, &[c], None).await;
    r.outcomes.into_iter().next().flatten().expect("an outcome")
}

/// A scan's point in time outlives long gaps between its pages while `keep_alive` is called
/// (verify's second looks at a long run of differences); left alone, the engine drops it. The
/// engines here reap expired contexts every second (`search.keep_alive_interval` in
/// services.sh), so a 2 s keep-alive lapses within seconds (on Elasticsearch: see below).
async fn a_scan_kept_alive_outlives_its_point_in_time(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "pit").await else { return };
    let index = f.client.ensure_index().await.expect("index");
    let targets = f.client.targets().await.expect("targets");
    let user = new_id();
    let jobs: Vec<Job> = (0..6).map(|n| job(user, n)).collect();
    let report = f.client.write(&targets, &jobs.iter().map(Change::Upsert).collect::<Vec<_>>(), None).await;
    assert!(report.outcomes.iter().all(|o| o == &Some(Outcome::Indexed)), "{:?}", report.outcomes);
    f.refresh().await;
    let keep = Duration::from_secs(2);
    let mut kept = f.client.scanner_kept(&index, 2, keep).await.expect("scanner");
    let mut left = f.client.scanner_kept(&index, 2, keep).await.expect("scanner");
    assert_eq!(kept.next_page().await.expect("page").map(|p| p.len()), Some(2));
    assert_eq!(left.next_page().await.expect("page").map(|p| p.len()), Some(2));
    // 4.2 s without a page, twice the keep-alive; `kept` renews its point in time as it goes.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        kept.keep_alive().await;
    }
    let mut seen = 2;
    while let Some(page) = kept.next_page().await.expect("the renewed point in time is still there") {
        seen += page.len();
    }
    assert_eq!(seen, 6);
    // OpenSearch keeps a new point in time 30 s whatever it is asked (its creation's own
    // keep-alive, as `GET _search/point_in_time/_all` shows): only Elasticsearch lets one lapse
    // this soon, which shows this test can tell.
    if engine == "elasticsearch" {
        assert!(left.next_page().await.is_err(), "the point in time left alone lapsed (reaped every second)");
    }
    kept.close().await;
    left.close().await;
    f.cleanup().await;
}

async fn bulk_splits_large_batches(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "bulk_split").await else { return };
    let index = f.client.ensure_index().await.expect("index");
    let cfg = SearchFixture::config(&f.url, f.client.alias()).bulk_limits(20_000, 7);
    let small = SearchClient::new(cfg).await.expect("client");
    let user = new_id();
    let jobs: Vec<Job> = (0..100)
        .map(|n| {
            let mut j = job(user, n);
            j.error_message = Some("x".repeat(usize::try_from(n).unwrap_or(0) * 50));
            j.status = JobStatus::Failed;
            j
        })
        .collect();
    let changes: Vec<Change<'_>> = jobs.iter().map(Change::Upsert).collect();
    let report = small.bulk(std::slice::from_ref(&index), &changes, None).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert!(report.requests >= 15, "7 docs or 20 kB per request: {} requests", report.requests);
    assert!(report.outcomes.iter().all(|o| o == &Some(Outcome::Indexed)));
    f.refresh().await;
    assert_eq!(f.client.count(f.client.alias()).await.expect("count"), 100);
    f.cleanup().await;
}

async fn search_get_and_cursors(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "search").await else { return };
    let mut me = f.pg.user("me@example.com").await;
    let mut other = f.pg.user("other@example.com").await;
    let ws = f.pg.workspace(&mut [&mut me, &mut other]).await;
    for n in 0..30 {
        let (scope, workspace) = if n % 3 == 0 { (&other, Some(ws)) } else { (&me, None) };
        let owner = if n % 5 == 0 { &other } else { scope };
        f.pg.create(
            owner,
            json!({"type": "TEST", "project_name": format!("svc-{}", n % 4), "workspace_id": workspace, "metadata": {"cpuCores": n % 8 + 1}}),
        )
        .await;
    }
    let summary =
        sync_run::run(f.store(), &f.client, &SyncConfig::default(), Deadline::after(Duration::from_secs(60))).await;
    assert_eq!(summary.counts.indexed, 30, "{summary:?}");
    f.refresh().await;
    let all: Vec<Job> = f.store().scan_jobs(None, 1000).await.expect("scan").jobs;
    for (params, scope) in
        [("limit=4&sort=created_at", &me), ("q=SVC-1&limit=2", &me), ("metadata.cpuCores.gte=4&limit=3", &other)]
    {
        let pairs: Vec<(&str, &str)> = params.split('&').filter_map(|p| p.split_once('=')).collect();
        let mut req = SearchRequest::from_params(pairs.clone()).expect("valid");
        let mut want: Vec<&Job> = all.iter().filter(|j| req.matches(scope, j)).collect();
        want.sort_by(|a, b| req.compare(a, b));
        let mut got = Vec::new();
        loop {
            let page = f.client.search(scope, &req, None).await.expect("search");
            got.extend(page.items.iter().map(|j| j.id));
            let Some(cursor) = page.next_cursor else { break };
            let mut next = pairs.clone();
            next.push(("cursor", &cursor));
            req = SearchRequest::from_params(next).expect("cursor accepted");
        }
        assert_eq!(got, want.iter().map(|j| j.id).collect::<Vec<_>>(), "{params}");
        assert!(!got.is_empty(), "{params}");
    }
    f.cleanup().await;
}

async fn fallback_when_the_engine_is_down_and_the_breaker(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "fallback").await else { return };
    let me = f.pg.user("me@example.com").await;
    for n in 0..12 {
        f.pg.create(&me, json!({"type": "BUILD", "project_name": format!("p{n}")})).await;
    }
    f.client.ensure_index().await.expect("index");
    let summary =
        sync_run::run(f.store(), &f.client, &SyncConfig::default(), Deadline::after(Duration::from_secs(60))).await;
    assert_eq!(summary.counts.indexed, 12);
    f.refresh().await;
    let req = SearchRequest::from_params([("limit", "5")]).expect("valid");
    let store = f.store();

    // No engine configured: the database answers, without a reason to report.
    let db_only = Searcher::database_only();
    let page = db_only.search(store, &me, &req).await.expect("search");
    assert_eq!((page.source, page.items.len(), page.fallback_reason.as_deref()), (Source::Database, 5, None));
    let from_db: Vec<Uuid> = page.items.iter().map(|j| j.id).collect();

    // Through a gate we can close: engine first while it is up.
    let gate = Gate::start(&f.url).await;
    let opts = SearcherOptions {
        deadline: Duration::from_millis(800),
        failure_threshold: 2,
        cool_down: Duration::from_millis(600),
    };
    let searcher = Searcher::new(Some(f.client_via(&gate.url()).await), opts);
    let page = searcher.search(store, &me, &req).await.expect("search");
    assert_eq!(page.source, Source::Search);
    assert_eq!(page.items.iter().map(|j| j.id).collect::<Vec<_>>(), from_db, "both sources agree");

    // Engine down: each search still answers (from the database) and says why.
    gate.set_open(false);
    for _ in 0..2 {
        let page = searcher.search(store, &me, &req).await.expect("fallback");
        assert_eq!(page.source, Source::Database);
        assert_eq!(page.items.iter().map(|j| j.id).collect::<Vec<_>>(), from_db);
        assert!(page.fallback_reason.as_deref().is_some_and(|r| !r.contains("breaker")), "{page:?}");
    }
    assert_eq!(searcher.breaker_state(), BreakerState::Open, "two failures open it");
    // Open: the engine is not asked at all.
    let before = gate.connections();
    for _ in 0..5 {
        let started = Instant::now();
        let page = searcher.search(store, &me, &req).await.expect("fallback");
        assert_eq!(page.source, Source::Database);
        assert!(page.fallback_reason.as_deref().is_some_and(|r| r.contains("breaker")));
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    assert_eq!(gate.connections(), before, "an open breaker does not hammer a dead engine");

    // Slow engine: the deadline sends the search to the database.
    gate.set_open(true);
    gate.set_delay(Duration::from_millis(1_500));
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert_eq!(searcher.breaker_state(), BreakerState::HalfOpen);
    let started = Instant::now();
    let page = searcher.search(store, &me, &req).await.expect("fallback");
    assert_eq!(page.source, Source::Database);
    assert!(page.fallback_reason.as_deref().is_some_and(|r| r.contains("slower")), "{page:?}");
    assert!(started.elapsed() < Duration::from_millis(1_400), "the deadline bounds the wait: {:?}", started.elapsed());
    assert_eq!(searcher.breaker_state(), BreakerState::Open, "a failed trial reopens the breaker");

    // Healthy again: after the cool-down one trial goes through and closes the breaker.
    gate.set_delay(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(650)).await;
    let page = searcher.search(store, &me, &req).await.expect("search");
    assert_eq!(page.source, Source::Search);
    assert_eq!(searcher.breaker_state(), BreakerState::Closed);

    // A request the engine refuses (400: here a page past the index's result window) is the
    // caller's, not the engine's failing: answered from the database, the breaker left closed.
    // Counted, a few such requests from one caller sent every caller's searches to Postgres.
    let index = f.client.alias_target(f.client.alias()).await.expect("alias").expect("index");
    f.client.put_settings(&index, &json!({"index": {"max_result_window": 3}})).await.expect("settings");
    for _ in 0..3 {
        let page = searcher.search(store, &me, &req).await.expect("fallback");
        assert_eq!(page.source, Source::Database);
        assert!(page.fallback_reason.as_deref().is_some_and(|r| r.contains("400")), "{page:?}");
    }
    assert_eq!(searcher.breaker_state(), BreakerState::Closed, "refusals do not open the breaker");
    let small = SearchRequest::from_params([("limit", "2")]).expect("valid");
    assert_eq!(searcher.search(store, &me, &small).await.expect("search").source, Source::Search);
    f.client.put_settings(&index, &json!({"index": {"max_result_window": 10_000}})).await.expect("settings");

    // A dead URL (nothing listening) falls back too.
    let dead = Searcher::new(Some(f.client_via(&dead_url().await).await), SearcherOptions::default());
    let page = dead.search(store, &me, &req).await.expect("fallback");
    assert_eq!(page.source, Source::Database);
    assert!(page.fallback_reason.as_deref().is_some_and(|r| r.contains("unreachable")), "{page:?}");

    // A row another writer left unreadable (a status this code does not know) is left out of
    // the fallback's pages, as search leaves it out, instead of failing each page holding it.
    use jobs_lambda::db::Executor as _;
    let db = f.pg.db();
    db.execute("UPDATE job SET status = 'PENDING' WHERE project_name = 'p3'", &[]).await.expect("another writer");
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let mut params = vec![("limit", "5".to_owned())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let req = SearchRequest::from_params(params.iter().map(|(k, v)| (*k, v.as_str()))).expect("valid");
        let page = db_only.search(store, &me, &req).await.expect("a page holding it still answers");
        seen.extend(page.items.iter().map(|j| j.project_name.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    let mut want: Vec<String> = (0..12).filter(|n| *n != 3).map(|n| format!("p{n}")).collect();
    want.sort();
    assert_eq!(seen, want);
    // A page of nothing but such rows cannot say where the next begins: an error, not an
    // empty last page that would hide the rest.
    db.execute("UPDATE job SET status = 'PENDING'", &[]).await.expect("another writer");
    assert!(db_only.search(store, &me, &req).await.is_err(), "a page of unreadable rows is an error");
    f.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Differential: a few thousand generated jobs (a few as another service would write them, past
// the core's shaping), a few hundred generated queries; the engine and the Postgres fallback
// must return the same jobs in the same order, page after page, with the same cursors, and
// both must equal the core's reference (`matches` + `compare`).

const PROJECTS: &[&str] = &[
    "api-server",
    "API_Server",
    "web-frontend",
    "web 50% off",
    "data*pipe?line",
    "back\\slash",
    "naïve-ü-build",
    "日本語プロジェクト",
    "mobile-ios",
    "mobile-android",
    "infra",
    "Infra-Tools",
    "a",
];

const WORDS: &[&str] =
    &["timeout", "OOM killed", "segfault in worker", "exit code 137", "flaky test", "50%_done", "disk full"];

struct World {
    scopes: Vec<Scope>,
    workspaces: Vec<Uuid>,
    users: Vec<Uuid>,
    jobs: Vec<Job>,
}

fn pairs(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn long_project() -> String {
    // 255 characters, the column's limit, in astral-plane characters (two UTF-16 units each).
    "🚀".repeat(255)
}

fn generate(rng: &mut Rng, users: &[Uuid], workspaces: &[Uuid], n: usize) -> Vec<Job> {
    let base = 1_700_000_000_000_000i64;
    let mut jobs = Vec::with_capacity(n);
    let mut last_created = base;
    for i in 0..n {
        let user = *rng.pick(users);
        let workspace = if rng.chance(40) { Some(*rng.pick(workspaces)) } else { None };
        let status = *rng.pick(JobStatus::ALL);
        let job_type = *rng.pick(JobType::ALL);
        // Many exact timestamp ties (same µs) so the id tiebreak matters.
        let created = if rng.chance(15) { last_created } else { base + rng.below(30 * 86_400_000_000) as i64 };
        last_created = created;
        let updated = created + if rng.chance(20) { 0 } else { rng.below(3_600_000_000) as i64 };
        let completed = status.is_terminal().then(|| updated + rng.below(600_000_000) as i64);
        let project = if i % 997 == 0 { long_project() } else { (*rng.pick(PROJECTS)).to_owned() };
        let error_message = match rng.below(20) {
            0..=2 => Some(format!("{} at step {}", rng.pick(WORDS), rng.below(50))),
            3 => Some(format!("{} {}", "x".repeat(2040), rng.pick(WORDS))), // over 2,048: not searchable by q
            4 if rng.chance(30) => Some(format!("{}{}", "y".repeat(2048 - 7), "timeout")), // exactly 2,048
            // 1,100 characters but 2,200 UTF-16 code units: over the bound the engines measure.
            5 if rng.chance(30) => Some(format!("{} {}", "🔥".repeat(1_100), rng.pick(WORDS))),
            // 1,000 emoji (2,000 units) and a word: within it.
            6 if rng.chance(30) => Some(format!("{} {}", "🔥".repeat(1_000), rng.pick(WORDS))),
            _ => None,
        };
        let mut metadata = Map::new();
        if rng.chance(70) {
            metadata.insert("cpuCores".into(), json!(1 + rng.below(64)));
        }
        if rng.chance(60) {
            metadata.insert("memoryGb".into(), json!(*rng.pick(&[0.5, 1.0, 2.5, 4.0, 16.0, 7.75])));
        }
        if rng.chance(50) {
            metadata.insert("buildDurationMs".into(), json!(rng.below(1_000_000)));
        }
        if rng.chance(30) {
            metadata.insert("dockerImageId".into(), json!(format!("sha256:{:064x}", rng.below(4))));
        }
        if rng.chance(30) {
            metadata.insert("branch".into(), json!(*rng.pick(&["main", "dev", "feature/x"])));
        }
        // Rows written by another service, past the core's shaping: known keys with values of
        // the wrong type, out of range, or not in canonical form.
        if rng.chance(4) {
            let (k, v) = match rng.below(9) {
                0 => ("cpuCores", json!("4")),
                1 => ("cpuCores", json!(2_000)),
                2 => ("cpuCores", json!(2.5)),
                3 => ("cpuCores", json!(true)),
                4 => ("memoryGb", json!("2.5")),
                5 => ("memoryGb", json!(0)),
                6 => ("buildDurationMs", json!(-5)),
                7 => ("dockerImageId", json!(format!("sha256:{:064X}", 0xAB + rng.below(2)))),
                _ => ("dockerImageId", json!(null)),
            };
            metadata.insert(k.into(), v);
        }
        let ts = |us: i64| Timestamp::from_micros(us).unwrap_or(Timestamp::MIN);
        jobs.push(Job {
            id: new_id(),
            workspace_id: workspace,
            user_id: user,
            status,
            job_type,
            project_name: project,
            hostname: (!rng.chance(20)).then(|| format!("ci-{}.example.com", rng.below(5))),
            arch: [Some("x86_64"), Some("arm64"), Some("riscv64"), None][rng.below(4) as usize].map(str::to_owned),
            user_email: None,
            error_message: if status == JobStatus::Failed || status == JobStatus::Cancelled {
                error_message
            } else {
                None
            },
            metadata: metadata.into(),
            created_at: ts(created),
            updated_at: ts(updated),
            completed_at: completed.map(ts),
            version: rng.below(6) as i64,
        });
    }
    jobs
}

/// A random valid search as query-string pairs (parsed by the core like the API does).
fn query(rng: &mut Rng, w: &World) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: String| p.push((k.to_owned(), v));
    if rng.chance(35) {
        let n = 1 + rng.below(2);
        let s: Vec<&str> = (0..n).map(|_| rng.pick(JobStatus::ALL).as_str()).collect();
        add("status", s.join(","));
    }
    if rng.chance(25) {
        add("type", rng.pick(JobType::ALL).as_str().to_owned());
    }
    if rng.chance(20) {
        add("arch", (*rng.pick(&["x86_64", "arm64", "amd64,riscv64", "aarch64"])).to_owned());
    }
    if rng.chance(10) {
        add("hostname", format!("CI-{}.example.com", rng.below(5)));
    }
    if rng.chance(12) {
        let proj = if rng.chance(10) { long_project() } else { (*rng.pick(PROJECTS)).to_owned() };
        add("project", proj);
    }
    if rng.chance(10) {
        add("user", rng.pick(&w.users).to_string());
    }
    if rng.chance(10) {
        add("workspace", rng.pick(&w.workspaces).to_string());
    }
    let some = |rng: &mut Rng| w.jobs[rng.below(w.jobs.len() as u64) as usize].clone();
    for (field, pct) in [("created", 20), ("updated", 10), ("completed", 10)] {
        if rng.chance(pct) {
            let (a, b) = (some(rng), some(rng));
            let key = |j: &Job| match field {
                "created" => Some(j.created_at),
                "updated" => Some(j.updated_at),
                _ => j.completed_at,
            };
            if let (Some(x), Some(y)) = (key(&a), key(&b)) {
                let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
                if rng.chance(70) {
                    add(&format!("{field}_after"), lo.to_string());
                }
                if rng.chance(70) {
                    add(&format!("{field}_before"), hi.to_string());
                }
            }
        }
    }
    if rng.chance(30) {
        let (k, v) = match rng.below(10) {
            0 => ("metadata.cpuCores.gte".to_owned(), (1 + rng.below(64)).to_string()),
            1 => ("metadata.cpuCores".to_owned(), (1 + rng.below(8)).to_string()),
            2 => ("metadata.memoryGb.gt".to_owned(), (*rng.pick(&["0.5", "2", "4.0", "7.75"])).to_owned()),
            3 => ("metadata.memoryGb".to_owned(), (*rng.pick(&["4", "7.75", "0.5"])).to_owned()),
            4 => ("metadata.buildDurationMs.lt".to_owned(), rng.below(1_000_000).to_string()),
            5 => ("metadata.dockerImageId".to_owned(), format!("sha256:{:064X}", rng.below(4))),
            6 => ("metadata.dockerImageId".to_owned(), format!("sha256:{:064x}", 0xAB + rng.below(2))),
            7 => ("metadata.cpuCores.gte".to_owned(), (*rng.pick(&["2", "4", "1000"])).to_owned()),
            8 => ("metadata.memoryGb.gte".to_owned(), (*rng.pick(&["0.1", "2.5"])).to_owned()),
            _ => ("metadata.buildDurationMs.lt".to_owned(), "0".to_owned()),
        };
        add(&k, v);
    }
    if rng.chance(25) {
        let q = match rng.below(3) {
            0 => {
                let proj = *rng.pick(PROJECTS);
                let chars: Vec<char> = proj.chars().collect();
                let start = rng.below(chars.len() as u64) as usize;
                let len = 1 + rng.below((chars.len() - start) as u64) as usize;
                chars[start..start + len].iter().collect::<String>()
            }
            1 => (*rng.pick(WORDS)).to_owned(),
            _ => (*rng.pick(&["%", "_", "*", "?", "\\", "50%_", "ü", "日本"])).to_owned(),
        };
        // Flip ASCII case at random: matching ignores ASCII case on both sides.
        let q: String =
            q.chars().map(|c| if rng.chance(50) { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect();
        add("q", q);
    }
    let sort = *rng.pick(&["created_at", "-created_at", "updated_at", "-updated_at", "completed_at", "-completed_at"]);
    if rng.chance(80) {
        add("sort", sort.to_owned());
    }
    add("limit", (*rng.pick(&["1", "3", "10", "50", "200", "500"])).to_owned());
    p
}

async fn differential_engine_vs_postgres_vs_reference(engine: &'static str) {
    let Some(f) = SearchFixture::new(engine, "differential").await else { return };
    let started = Instant::now();
    let mut rng = Rng::new(0x5EED_F0B5 ^ u64::from(engine == "opensearch"));
    let mut scopes: Vec<Scope> = Vec::new();
    for i in 0..6 {
        scopes.push(f.pg.user(&format!("user{i}@example.com")).await);
    }
    let mut workspaces = Vec::new();
    {
        let (a, rest) = scopes.split_at_mut(1);
        let (b, rest) = rest.split_at_mut(1);
        let (c, rest) = rest.split_at_mut(1);
        let (d, _) = rest.split_at_mut(1);
        workspaces.push(f.pg.workspace(&mut [&mut a[0], &mut b[0]]).await);
        workspaces.push(f.pg.workspace(&mut [&mut b[0], &mut c[0]]).await);
        workspaces.push(f.pg.workspace(&mut [&mut a[0], &mut d[0]]).await);
    }
    let users: Vec<Uuid> = scopes.iter().map(|s| s.user_id).collect();
    let jobs = generate(&mut rng, &users, &workspaces, 3_000);
    assert_eq!(insert_jobs(f.pg.db(), &jobs).await, 3_000);
    let sync =
        sync_run::run(f.store(), &f.client, &SyncConfig::default(), Deadline::after(Duration::from_secs(120))).await;
    assert_eq!((sync.counts.indexed, sync.marked), (3_000, 3_000), "{sync:?}");
    f.refresh().await;
    // What Postgres holds, as the store reads it (the reference works on these).
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = f.store().scan_jobs(after, 1_000).await.expect("scan");
        after = page.last_id;
        let done = page.matched < 1_000;
        all.extend(page.jobs);
        if done {
            break;
        }
    }
    assert_eq!(all.len(), 3_000);
    let world = World { scopes, workspaces, users, jobs: all };

    let searcher_db = Searcher::database_only();
    let (mut queries, mut pages, mut nonempty, mut hits) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for qn in 0..300 {
        let scope = world.scopes[rng.below(world.scopes.len() as u64) as usize].clone();
        let mut params = query(&mut rng, &world);
        let first =
            SearchRequest::from_params(pairs(&params)).unwrap_or_else(|e| panic!("query {qn} {params:?}: {e:?}"));
        let mut want: Vec<&Job> = world.jobs.iter().filter(|j| first.matches(&scope, j)).collect();
        want.sort_by(|a, b| first.compare(a, b));
        // Keep the walk short: at most ~25 pages.
        let limit = (first.limit as usize).max(want.len().div_ceil(25)).min(500);
        if limit != first.limit as usize {
            params.retain(|(k, _)| k != "limit");
            params.push(("limit".into(), limit.to_string()));
        }
        queries += 1;
        nonempty += usize::from(!want.is_empty());
        hits += want.len();
        let (mut got_es, mut got_db) = (Vec::new(), Vec::new());
        let mut cursor: Option<String> = None;
        loop {
            let mut p = params.clone();
            if let Some(c) = &cursor {
                p.push(("cursor".into(), c.clone()));
            }
            let req = SearchRequest::from_params(pairs(&p)).expect("a page request");
            let es =
                f.client.search(&scope, &req, None).await.unwrap_or_else(|e| panic!("engine, query {qn} {p:?}: {e}"));
            let db =
                searcher_db.search(f.store(), &scope, &req).await.unwrap_or_else(|e| panic!("db, query {qn}: {e}"));
            pages += 1;
            if es.items.iter().zip(&db.items).any(|(a, b)| a != b) {
                failures.push(format!("query {qn} {p:?}: the same ids, but an engine hit is not the job as stored"));
            }
            got_es.extend(es.items.iter().map(|j| j.id));
            got_db.extend(db.items.iter().map(|j| j.id));
            if es.next_cursor != db.next_cursor {
                failures.push(format!(
                    "query {qn} {p:?}: cursors differ (engine {:?}, db {:?})",
                    es.next_cursor, db.next_cursor
                ));
                break;
            }
            match es.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
            if pages > 100_000 {
                break;
            }
        }
        let want_ids: Vec<Uuid> = want.iter().map(|j| j.id).collect();
        if got_es != want_ids || got_db != want_ids {
            let es_set: HashSet<&Uuid> = got_es.iter().collect();
            let db_set: HashSet<&Uuid> = got_db.iter().collect();
            let want_set: HashSet<&Uuid> = want_ids.iter().collect();
            let describe = |ids: &HashSet<&Uuid>| {
                ids.iter()
                    .take(3)
                    .filter_map(|id| world.jobs.iter().find(|j| &&j.id == id))
                    .map(|j| {
                        format!(
                            "{} {:?} {:?} {:?}",
                            j.id,
                            j.project_name.chars().take(20).collect::<String>(),
                            j.error_message.as_ref().map(|e| e.chars().count()),
                            j.metadata
                        )
                    })
                    .collect::<Vec<_>>()
            };
            failures.push(format!(
                "query {qn} {params:?} scope {:?}: want {} got engine {} db {}; engine-only {:?}; db-only {:?}; missing from engine {:?}; missing from db {:?}",
                scope.user_id,
                want_ids.len(),
                got_es.len(),
                got_db.len(),
                describe(&es_set.difference(&want_set).copied().collect()),
                describe(&db_set.difference(&want_set).copied().collect()),
                describe(&want_set.difference(&es_set).copied().collect()),
                describe(&want_set.difference(&db_set).copied().collect()),
            ));
        }
    }
    println!(
        "differential on {engine}: {} jobs, {queries} queries ({nonempty} non-empty, {hits} hits), {pages} pages per side, {} disagreements, {:.1} s",
        world.jobs.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} of {queries} queries disagree:\n{}", failures.len(), failures.join("\n"));
    assert!(nonempty > 150, "the generator should produce mostly non-empty results: {nonempty}");
    f.cleanup().await;
}
