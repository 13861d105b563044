//! The store conformance suite: one set of cases every driver of the SQL-executor seam must pass
//! on real Postgres (the direct tokio-postgres driver, and the RDS Data API driver through the
//! local Data API server).
//!
//! A driver's test module provides one async function `make(case) -> Option<Fixture<E>>` that
//! returns `None` to skip (no database configured) and otherwise an executor whose statements run
//! in a fresh schema; then `jobs_tests::store_conformance!(make);` expands to one `#[tokio::test]`
//! per case. [`run_all`] runs every case in sequence for callers who want a single test.

use jobs_core::model::{Job, JobStatus};
use jobs_core::query::SearchRequest;
use jobs_core::sql::{self, Param};
use jobs_core::sync::{DeadLetter, Mark, Pending, PendingKind, Retry, SyncState};
use jobs_core::time::Timestamp;
use jobs_core::validate::{self, ValidNewJob, ValidPatch};
use jobs_lambda::db::{Cell, DbError, Executor, Transaction};
use jobs_lambda::migrate::{self, MigrateError, Migration, Options};
use jobs_lambda::store::{Claimed, Item, Scope, Store, StoreError};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// `DATABASE_URL`, or `None` (with a message) to skip. Under `CI=true` a missing database is a
/// failure, not a skip.
pub fn database_url(case: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "DATABASE_URL is not set and CI=true: start Postgres with `./dev services start` \
                 and `eval \"$(./dev services env)\"`"
            );
            eprintln!(
                "skipping {case}: DATABASE_URL is not set (run `./dev services start`, then `eval \"$(./dev services env)\"`)"
            );
            None
        }
    }
}

/// A schema name unique to this process and call: `t_<case>_<hex>`, at most 63 characters.
pub fn unique_schema(case: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let salt = (nanos as u64) ^ u64::from(std::process::id()).rotate_left(40) ^ N.fetch_add(1, Ordering::Relaxed);
    let case: String =
        case.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(40).collect();
    format!("t_{case}_{salt:016x}")
}

/// A new id, unique within the process.
pub fn new_id() -> Uuid {
    static N: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    Uuid::from_u64_pair(nanos, N.fetch_add(1, Ordering::Relaxed))
}

pub fn now() -> Timestamp {
    let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_micros(micros).unwrap_or(Timestamp::MIN)
}

/// A migrated schema and a store over it.
pub struct Fixture<E: Executor> {
    pub store: Arc<Store<E>>,
    pub schema: String,
}

impl<E: Executor + 'static> Fixture<E> {
    /// Migrates `schema` (creating it) through `db`, whose statements must run in that schema.
    pub async fn new(db: E, schema: &str) -> Fixture<E> {
        let applied = migrate::migrate(&db, &Options::schema(schema)).await.expect("migrating a fresh schema");
        assert_eq!(applied.len(), migrate::MIGRATIONS.len(), "a fresh schema gets every migration");
        Fixture { store: Arc::new(Store::new(db)), schema: schema.to_owned() }
    }

    pub fn db(&self) -> &E {
        self.store.executor()
    }

    /// Drops the schema (called after a case passed; a failed case leaves it for inspection).
    pub async fn cleanup(self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        if let Err(e) = self.db().execute(&sql, &[]).await {
            eprintln!("could not drop schema {}: {e}", self.schema);
        }
    }

    /// A user (with an email) and their scope.
    pub async fn user(&self, email: &str) -> Scope {
        let id = new_id();
        self.store.ensure_user(id, Some(email)).await.expect("ensure_user");
        Scope { user_id: id, workspace_ids: Vec::new() }
    }

    /// A workspace with these members; their scopes gain it.
    pub async fn workspace(&self, members: &mut [&mut Scope]) -> Uuid {
        let ws = new_id();
        self.store.ensure_workspace(ws, "team").await.expect("ensure_workspace");
        for m in members.iter_mut() {
            self.store.add_member(ws, m.user_id).await.expect("add_member");
            m.workspace_ids.push(ws);
        }
        ws
    }

    pub async fn create(&self, scope: &Scope, body: Value) -> Job {
        self.store.create(scope, &new_job(body), new_id()).await.expect("create")
    }

    /// Runs a statement the store does not have (a foreign writer, an operator).
    pub async fn exec(&self, sql: &str, params: &[Param]) -> u64 {
        self.db().execute(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Everything due, claimed and marked synced, so the next assertions start from clean.
    pub async fn sync_everything(&self) {
        loop {
            let claimed = self.store.claim_dirty(500, Duration::from_secs(60)).await.expect("claim");
            if claimed.is_empty() {
                return;
            }
            let marks: Vec<Mark> = claimed.iter().map(mark_of).collect();
            self.store.mark_synced(&marks).await.expect("mark");
        }
    }
}

pub fn new_job(body: Value) -> ValidNewJob {
    validate::create(&body).unwrap_or_else(|issues| panic!("invalid create {body}: {issues:?}"))
}

pub fn patch(current: &Job, body: Value) -> ValidPatch {
    validate::patch(current, &body, now()).unwrap_or_else(|issues| panic!("invalid patch {body}: {issues:?}"))
}

pub fn mark_of(c: &Claimed) -> Mark {
    Mark { id: c.pending.id, version: c.pending.version, kind: c.pending.kind }
}

fn ids(claimed: &[Claimed]) -> Vec<Uuid> {
    claimed.iter().map(|c| c.pending.id).collect()
}

const LEASE: Duration = Duration::from_secs(60);

/// Every case, in the order `run_all` runs them.
pub const CASES: &[&str] = &[
    "create_and_get",
    "nulls_round_trip",
    "jsonb_round_trip",
    "timestamps_keep_microseconds",
    "unique_violation",
    "references_and_scope",
    "tenancy",
    "optimistic_update",
    "concurrent_updates_one_wins",
    "delete_and_tombstone",
    "foreign_writers_are_detected",
    "mark_synced_never_goes_backwards",
    "stale_mark_leaves_row_dirty",
    "concurrent_claims_do_not_overlap",
    "retry_dead_letter_and_lease",
    "sync_state_of_a_page",
    "unreadable_rows_are_dead_lettered",
    "sync_lag",
    "list_by_fallback_query",
    "migrations",
    "executor_semantics",
    "dirty_batch_uses_the_index",
];

/// Expands to one `#[tokio::test]` per case. `$make` is an async fn `(&str) -> Option<Fixture<E>>`.
#[macro_export]
macro_rules! store_conformance {
    ($make:path) => {
        $crate::store_conformance!(@cases $make;
            create_and_get, nulls_round_trip, jsonb_round_trip, timestamps_keep_microseconds,
            unique_violation, references_and_scope, tenancy, optimistic_update,
            concurrent_updates_one_wins, delete_and_tombstone, foreign_writers_are_detected,
            mark_synced_never_goes_backwards, stale_mark_leaves_row_dirty,
            concurrent_claims_do_not_overlap, retry_dead_letter_and_lease, sync_state_of_a_page,
            unreadable_rows_are_dead_lettered, sync_lag,
            list_by_fallback_query, migrations, executor_semantics, dirty_batch_uses_the_index,
            wide_rows_read_whole, large_claims_fit_one_response, orphaned_entries_do_not_starve_claims,
            recreate_racing_a_delete_continues_the_version);
    };
    (@cases $make:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = $make(stringify!($case)).await else { return };
                $crate::store_suite::$case(&fixture).await;
                fixture.cleanup().await;
            }
        )+
    };
}

/// Runs every case in sequence, each in a fresh fixture from `make`.
pub async fn run_all<E, F, Fut>(make: F)
where
    E: Executor + 'static,
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = Option<Fixture<E>>>,
{
    macro_rules! each {
        ($($case:ident),+) => {
            $(
                if let Some(f) = make(stringify!($case)).await {
                    $case(&f).await;
                    f.cleanup().await;
                }
            )+
        };
    }
    each!(
        create_and_get,
        nulls_round_trip,
        jsonb_round_trip,
        timestamps_keep_microseconds,
        unique_violation,
        references_and_scope,
        tenancy,
        optimistic_update,
        concurrent_updates_one_wins,
        delete_and_tombstone,
        foreign_writers_are_detected,
        mark_synced_never_goes_backwards,
        stale_mark_leaves_row_dirty,
        concurrent_claims_do_not_overlap,
        retry_dead_letter_and_lease,
        sync_state_of_a_page,
        unreadable_rows_are_dead_lettered,
        sync_lag,
        list_by_fallback_query,
        migrations,
        executor_semantics,
        dirty_batch_uses_the_index,
        wide_rows_read_whole,
        large_claims_fit_one_response,
        orphaned_entries_do_not_starve_claims,
        recreate_racing_a_delete_continues_the_version
    );
}

// ---------------------------------------------------------------------------------------------
// Cases

pub async fn create_and_get<E: Executor + 'static>(f: &Fixture<E>) {
    let mut me = f.user("Ada@Example.COM").await;
    let ws = f.workspace(&mut [&mut me]).await;
    let body = json!({
        "workspace_id": ws, "type": "BUILD", "project_name": "api", "hostname": "ci-1.example.com",
        "arch": "x86_64", "metadata": {"cpuCores": 4, "branch": "main"}
    });
    let new = new_job(body);
    let id = new_id();
    let job = f.store.create(&me, &new, id).await.expect("create");
    assert_eq!(job.id, id, "the default id is used when the request names none");
    assert_eq!(job.workspace_id, Some(ws));
    assert_eq!(job.user_id, me.user_id);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.project_name, "api");
    assert_eq!(job.hostname.as_deref(), Some("ci-1.example.com"));
    assert_eq!(job.arch.as_deref(), Some("x86_64"));
    assert_eq!(job.user_email.as_deref(), Some("Ada@example.com"), "email copied from users at insert");
    assert_eq!(&job.metadata, new.metadata());
    assert_eq!(job.version, 0);
    assert_eq!(job.created_at, job.updated_at);
    assert_eq!(job.completed_at, None);
    assert_eq!(f.store.get(&me, id).await.expect("get"), job);
    assert_eq!(f.store.get_unscoped(id).await.expect("get_unscoped"), Some(job.clone()));

    // An id given in the request wins over the default.
    let named = new_id();
    let job2 = f.create(&me, json!({"id": named, "type": "TEST", "project_name": "api"})).await;
    assert_eq!(job2.id, named);

    // The email is denormalised at insert: a later change of the user's email leaves it.
    f.store.ensure_user(me.user_id, Some("ada@new.example")).await.expect("ensure_user");
    assert_eq!(f.store.get(&me, id).await.expect("get").user_email.as_deref(), Some("Ada@example.com"));
    let job3 = f.create(&me, json!({"type": "TEST", "project_name": "api"})).await;
    assert_eq!(job3.user_email.as_deref(), Some("ada@new.example"));

    // New rows are dirty from the start.
    let sync = f.store.sync_columns(id).await.expect("sync_columns").expect("row");
    assert_eq!((sync.version, sync.es_sync_version, sync.es_synced_at), (0, 0, None));
    let entry = f.store.queue_entry(id).await.expect("queue_entry").expect("queued");
    assert_eq!((entry.version, entry.deleted, entry.attempts), (0, false, 0));
}

pub async fn nulls_round_trip<E: Executor + 'static>(f: &Fixture<E>) {
    let id = new_id();
    f.store.ensure_user(id, None).await.expect("ensure_user without email");
    let me = Scope { user_id: id, workspace_ids: vec![] };
    let job = f.create(&me, json!({"type": "DEPLOY", "project_name": "p"})).await;
    assert_eq!(
        (&job.workspace_id, &job.hostname, &job.arch, &job.user_email, &job.error_message, &job.completed_at),
        (&None, &None, &None, &None, &None, &None)
    );
    assert!(job.metadata.is_empty());
    assert_eq!(f.store.get(&me, job.id).await.expect("get"), job);

    // Setting and clearing nullable fields through a patch.
    let running = f
        .store
        .update(&me, &patch(&job, json!({"status": "RUNNING", "hostname": "h1", "arch": "arm64"})))
        .await
        .expect("update");
    assert_eq!((running.hostname.as_deref(), running.arch.as_deref()), (Some("h1"), Some("arm64")));
    let cleared = f.store.update(&me, &patch(&running, json!({"hostname": null, "arch": null}))).await.expect("update");
    assert_eq!((cleared.hostname, cleared.arch), (None, None));

    // A NULL of every parameter type binds.
    let rows = f
        .db()
        .query(
            "SELECT $1::uuid IS NULL, $2::text IS NULL, $3::bigint IS NULL, $4::jsonb IS NULL, \
             $5::timestamptz IS NULL, $6::boolean IS NULL, $7::double precision IS NULL",
            &[Param::Null, Param::Null, Param::Null, Param::Null, Param::Null, Param::Null, Param::Null],
        )
        .await
        .expect("nulls");
    assert_eq!(rows, vec![vec![Cell::Bool(true); 7]]);
}

pub async fn jsonb_round_trip<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("u@example.com").await;
    let mut deep = json!({"leaf": "🌊"});
    for i in 0..4 {
        deep = json!({ format!("level{i}"): deep, "list": [i, {"x": null}] });
    }
    let big: Vec<String> = (0..300).map(|i| format!("{i:03}-ünïcødé-数据-{}", "x".repeat(60))).collect();
    let metadata = json!({
        "cpuCores": 8,
        "memoryGb": 15.5,
        "dockerImageId": format!("sha256:{}", "ab".repeat(32)),
        "quote\"key": "line\nbreak\ttab\\backslash \u{1F600} \u{00e9}\u{0301} \u{202E}rtl",
        "emptyObject": {},
        "emptyList": [],
        "bools": [true, false, null],
        "numbers": [0, -1, 9007199254740991_i64, 0.1, -2.5e-8, 1e20],
        // Doubles that PostgreSQL writes back with every digit (1.7976931348623155e308 as a
        // 309-digit integer: a row the server once could not read) or that a reader that is
        // not correctly rounded changes in the last bit.
        "doubles": [1.7976931348623155e308, f64::MAX, 5e-324, 2.2250738585072014e-308,
            985.6906946328695, 0.30000000000000004, 1.603964615428183e143, -1.0715660391465826e-75],
        "deep": deep,
        "big": big,
    });
    let new = new_job(json!({"type": "BUILD", "project_name": "json", "metadata": metadata}));
    let size = serde_json::to_string(new.metadata()).map_or(0, |s| s.len());
    assert!(size > 25_000, "the metadata is large ({size} bytes)");
    let job = f.store.create(&me, &new, new_id()).await.expect("create");
    assert_eq!(&job.metadata, new.metadata(), "insert returns the metadata unchanged");
    let read = f.store.get(&me, job.id).await.expect("get");
    assert_eq!(read.metadata, job.metadata, "a read returns it unchanged");

    // A merge patch round-trips too.
    let patched = f
        .store
        .update(&me, &patch(&read, json!({"metadata": {"big": null, "added": {"ключ": ["значение", 1]}}})))
        .await
        .expect("update");
    assert!(!patched.metadata.contains_key("big"));
    assert_eq!(patched.metadata.get("added"), Some(&json!({"ключ": ["значение", 1]}).into()));
    assert_eq!(f.store.get(&me, job.id).await.expect("get").metadata, patched.metadata);
}

pub async fn timestamps_keep_microseconds<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("t@example.com").await;
    let before = now();
    let job = f.create(&me, json!({"type": "TEST", "project_name": "t", "status": "RUNNING"})).await;
    let after = now();
    // The database clock is this machine's clock here; allow a little skew.
    let slack = 5_000_000;
    assert!(
        job.created_at.as_micros() >= before.as_micros() - slack
            && job.created_at.as_micros() <= after.as_micros() + slack,
        "created_at {} not near {before}..{after}",
        job.created_at
    );
    let done_at = Timestamp::parse("2031-02-03T04:05:06.123456Z").expect("timestamp");
    let done = f
        .store
        .update(&me, &patch(&job, json!({"status": "SUCCEEDED", "completed_at": "2031-02-03T04:05:06.123456Z"})))
        .await
        .expect("update");
    assert_eq!(done.completed_at, Some(done_at));
    let read = f.store.get(&me, job.id).await.expect("get");
    assert_eq!(read.completed_at.map(|t| t.to_string()).as_deref(), Some("2031-02-03T04:05:06.123456Z"));
    assert_eq!(read.created_at, job.created_at, "created_at survives to the microsecond");
    assert!(read.updated_at >= read.created_at);

    // Timestamps bind and read back exactly, including before 1970 and with odd microseconds.
    for text in ["1969-07-20T20:17:40.000001Z", "2000-01-01T00:00:00.000000Z", "2024-02-29T23:59:59.999999Z"] {
        let t = Timestamp::parse(text).expect("timestamp");
        let rows = f
            .db()
            .query(concat!("SELECT ", jobs_core::sql_utc!("$1::timestamptz")), &[Param::Timestamp(t.as_micros())])
            .await
            .expect("timestamp round trip");
        assert_eq!(rows, vec![vec![Cell::Text(text.to_owned())]]);
    }
}

pub async fn unique_violation<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("u@example.com").await;
    let id = new_id();
    let body = json!({"id": id, "type": "BUILD", "project_name": "p"});
    f.create(&me, body.clone()).await;
    match f.store.create(&me, &new_job(body), new_id()).await {
        Err(StoreError::AlreadyExists(msg)) => assert!(msg.contains("23505"), "{msg}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // The raw error carries the SQLSTATE.
    let err = f
        .db()
        .execute("INSERT INTO users (id) VALUES ($1::uuid)", &[Param::Uuid(me.user_id)])
        .await
        .expect_err("duplicate user");
    assert_eq!(err.sqlstate(), Some("23505"), "{err}");
}

pub async fn references_and_scope<E: Executor + 'static>(f: &Fixture<E>) {
    let mut me = f.user("u@example.com").await;
    let ghost = new_id();
    me.workspace_ids.push(ghost);
    let r = f
        .store
        .create(&me, &new_job(json!({"workspace_id": ghost, "type": "BUILD", "project_name": "p"})), new_id())
        .await;
    assert!(matches!(r, Err(StoreError::UnknownReference(_))), "unknown workspace: {r:?}");

    let other = new_id();
    let r = f
        .store
        .create(&me, &new_job(json!({"workspace_id": other, "type": "BUILD", "project_name": "p"})), new_id())
        .await;
    assert!(matches!(r, Err(StoreError::OutOfScope(w)) if w == other), "workspace outside the scope: {r:?}");

    let stranger = Scope { user_id: new_id(), workspace_ids: vec![] };
    let r = f.store.create(&stranger, &new_job(json!({"type": "BUILD", "project_name": "p"})), new_id()).await;
    assert!(matches!(r, Err(StoreError::UnknownReference(_))), "a user never ensured: {r:?}");
}

pub async fn tenancy<E: Executor + 'static>(f: &Fixture<E>) {
    let mut alice = f.user("alice@example.com").await;
    let mut bob = f.user("bob@example.com").await;
    let carol = f.user("carol@example.com").await;
    let ws = f.workspace(&mut [&mut alice, &mut bob]).await;
    let private = f.create(&alice, json!({"type": "BUILD", "project_name": "mine"})).await;
    let shared = f.create(&alice, json!({"workspace_id": ws, "type": "BUILD", "project_name": "ours"})).await;

    assert_eq!(f.store.scope_of(bob.user_id).await.expect("scope_of"), bob);
    assert!(matches!(f.store.get(&bob, private.id).await, Err(StoreError::NotFound)));
    assert_eq!(f.store.get(&bob, shared.id).await.expect("a member sees workspace jobs"), shared);
    assert!(matches!(f.store.get(&carol, shared.id).await, Err(StoreError::NotFound)));

    let p = patch(&private, json!({"status": "RUNNING"}));
    assert!(matches!(f.store.update(&bob, &p).await, Err(StoreError::NotFound)), "no update outside the scope");
    assert!(matches!(f.store.delete(&carol, shared.id, None).await, Err(StoreError::NotFound)));
    let updated = f.store.update(&bob, &patch(&shared, json!({"status": "RUNNING"}))).await.expect("member update");
    assert_eq!(updated.user_id, alice.user_id, "the owner stays");
    assert_eq!(f.store.get(&alice, private.id).await.expect("still there").version, 0);
}

pub async fn optimistic_update<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("u@example.com").await;
    let job = f.create(&me, json!({"type": "BUILD", "project_name": "p"})).await;
    let v1 = f.store.update(&me, &patch(&job, json!({"status": "RUNNING"}))).await.expect("update");
    assert_eq!(v1.version, 1);
    assert_eq!(v1.status, JobStatus::Running);
    assert!(v1.updated_at >= job.updated_at);
    assert_eq!(v1.created_at, job.created_at);

    // A patch checked against version 0 loses: the error carries the current job.
    match f.store.update(&me, &patch(&job, json!({"hostname": "late"}))).await {
        Err(StoreError::VersionConflict { current }) => assert_eq!(*current, v1),
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    let failed =
        f.store.update(&me, &patch(&v1, json!({"status": "FAILED", "error_message": "exit 1"}))).await.expect("update");
    assert_eq!((failed.version, failed.error_message.as_deref()), (2, Some("exit 1")));
    assert!(failed.completed_at.is_some(), "a terminal state has completed_at");

    let mut gone = job.clone();
    gone.id = new_id();
    assert!(matches!(
        f.store.update(&me, &patch(&gone, json!({"status": "RUNNING"}))).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn concurrent_updates_one_wins<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("u@example.com").await;
    let job = f.create(&me, json!({"type": "BUILD", "project_name": "race"})).await;
    let n = 16;
    let mut tasks = Vec::new();
    for i in 0..n {
        let store = Arc::clone(&f.store);
        let scope = me.clone();
        let p = patch(&job, json!({"status": "RUNNING", "metadata": {"writer": i}}));
        tasks.push(tokio::spawn(async move { store.update(&scope, &p).await }));
    }
    let mut won = Vec::new();
    let mut lost = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(j) => won.push(j),
            Err(StoreError::VersionConflict { current }) => {
                assert_eq!(current.version, 1, "the loser sees the winner's version");
                lost += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one writer wins");
    assert_eq!(lost, n - 1);
    let final_job = f.store.get(&me, job.id).await.expect("get");
    assert_eq!(final_job, won[0]);
    assert_eq!(final_job.version, 1);
}

pub async fn delete_and_tombstone<E: Executor + 'static>(f: &Fixture<E>) {
    let mut me = f.user("u@example.com").await;
    let ws = f.workspace(&mut [&mut me]).await;
    let job = f.create(&me, json!({"workspace_id": ws, "type": "BUILD", "project_name": "p"})).await;
    let v1 = f.store.update(&me, &patch(&job, json!({"status": "RUNNING"}))).await.expect("update");
    f.sync_everything().await;
    assert_eq!(f.store.queue_entry(job.id).await.expect("entry"), None, "synced rows leave the queue");

    match f.store.delete(&me, job.id, Some(0)).await {
        Err(StoreError::VersionConflict { current }) => assert_eq!(current.version, 1),
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    let deleted = f.store.delete(&me, job.id, Some(1)).await.expect("delete");
    assert_eq!((deleted.id, deleted.version), (job.id, 1));
    assert!(matches!(f.store.get(&me, job.id).await, Err(StoreError::NotFound)));
    assert!(matches!(f.store.delete(&me, job.id, None).await, Err(StoreError::NotFound)));

    let t = f.store.tombstone(job.id).await.expect("tombstone").expect("recorded");
    assert_eq!((t.version, t.user_id, t.workspace_id, t.es_synced_at), (v1.version, me.user_id, Some(ws), None));
    let entry = f.store.queue_entry(job.id).await.expect("entry").expect("tombstones are dirty");
    assert!(entry.deleted);

    let claimed = f.store.claim_dirty(10, LEASE).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].pending.kind, PendingKind::Tombstone);
    assert_eq!(claimed[0].pending.version, 1);
    assert!(matches!(&claimed[0].item, Item::Tombstone(t) if t.id == job.id && t.workspace_id == Some(ws)));
    assert_eq!(claimed[0].change().external_version(), 2, "the delete is sent above the last version");
    let marked = f.store.mark_synced(&[mark_of(&claimed[0])]).await.expect("mark");
    assert_eq!(marked, vec![job.id]);
    let t = f.store.tombstone(job.id).await.expect("tombstone").expect("kept");
    assert!(t.es_synced_at.is_some());
    assert_eq!(f.store.queue_entry(job.id).await.expect("entry"), None);

    // Deletes by another service (plain SQL) leave a tombstone in the same transaction too.
    let other = f.create(&me, json!({"type": "BUILD", "project_name": "p"})).await;
    let mut tx = f.db().begin().await.expect("begin");
    tx.execute("DELETE FROM job WHERE id = $1::uuid", &[Param::Uuid(other.id)]).await.expect("delete");
    let inside = tx
        .query("SELECT count(*) FROM job_tombstone WHERE id = $1::uuid", &[Param::Uuid(other.id)])
        .await
        .expect("count");
    assert_eq!(inside, vec![vec![Cell::Int(1)]], "the tombstone is written in the deleting transaction");
    tx.rollback().await.expect("rollback");
    assert_eq!(f.store.tombstone(other.id).await.expect("tombstone"), None, "and rolled back with it");
    f.exec("DELETE FROM job WHERE id = $1::uuid", &[Param::Uuid(other.id)]).await;
    let t = f.store.tombstone(other.id).await.expect("tombstone").expect("recorded");
    assert_eq!(t.version, 0);

    // Purging forgets only tombstones synced long enough ago.
    assert_eq!(f.store.purge_tombstones(Duration::from_secs(3600)).await.expect("purge"), 0);
    assert_eq!(f.store.purge_tombstones(Duration::ZERO).await.expect("purge"), 1);
    assert!(f.store.tombstone(other.id).await.expect("tombstone").is_some(), "unsynced tombstones stay");
}

pub async fn foreign_writers_are_detected<E: Executor + 'static>(f: &Fixture<E>) {
    let mut me = f.user("u@example.com").await;
    let ws = f.workspace(&mut [&mut me]).await;
    let job = f.create(&me, json!({"workspace_id": ws, "type": "BUILD", "project_name": "p"})).await;
    f.sync_everything().await;
    let clean = f.store.sync_columns(job.id).await.expect("sync").expect("row");
    assert_eq!((clean.version, clean.es_sync_version), (0, 0));
    assert!(clean.es_synced_at.is_some());

    // A JPA-style writer: bumps version, knows nothing of sync.
    f.exec(
        "UPDATE job SET status = 'RUNNING', version = version + 1, updated_at = now() WHERE id = $1::uuid",
        &[Param::Uuid(job.id)],
    )
    .await;
    let s = f.store.sync_columns(job.id).await.expect("sync").expect("row");
    assert_eq!((s.version, s.es_sync_version), (1, 0), "dirty by the rule");
    let claimed = f.store.claim_dirty(10, LEASE).await.expect("claim");
    assert_eq!(ids(&claimed), vec![job.id]);
    assert_eq!(claimed[0].pending.version, 1);
    f.store.mark_synced(&[mark_of(&claimed[0])]).await.expect("mark");

    // A writer that changes a row without bumping its version gets a new version anyway.
    let before = f.store.get(&me, job.id).await.expect("get");
    f.exec("UPDATE job SET hostname = 'sneaky' WHERE id = $1::uuid", &[Param::Uuid(job.id)]).await;
    let after = f.store.get(&me, job.id).await.expect("get");
    assert_eq!(after.version, before.version + 1);
    assert!(after.updated_at > before.updated_at);
    assert!(f.store.queue_entry(job.id).await.expect("entry").is_some());
    f.sync_everything().await;

    // So does the ON DELETE SET NULL of a deleted workspace (search must drop the tenancy).
    let before = f.store.get(&me, job.id).await.expect("get");
    f.exec("DELETE FROM workspace WHERE id = $1::uuid", &[Param::Uuid(ws)]).await;
    let after = f.store.get(&me, job.id).await.expect("get");
    assert_eq!((after.workspace_id, after.version), (None, before.version + 1));
    let claimed = f.store.claim_dirty(10, LEASE).await.expect("claim");
    assert!(matches!(&claimed[..], [c] if matches!(&c.item, Item::Job(j) if j.workspace_id.is_none())));
    f.store.mark_synced(&[mark_of(&claimed[0])]).await.expect("mark");

    // Updating only sync columns bumps nothing and dirties nothing.
    let before = f.store.get(&me, job.id).await.expect("get");
    f.exec("UPDATE job SET es_synced_at = now() WHERE id = $1::uuid", &[Param::Uuid(job.id)]).await;
    let after = f.store.get(&me, job.id).await.expect("get");
    assert_eq!(after, before, "no version or updated_at bump on a sync-column-only update");
    assert_eq!(f.store.queue_entry(job.id).await.expect("entry"), None);

    // An operator forcing a reindex (es_synced_at = NULL) makes it dirty again.
    f.exec("UPDATE job SET es_synced_at = NULL WHERE id = $1::uuid", &[Param::Uuid(job.id)]).await;
    let claimed = f.store.claim_dirty(10, LEASE).await.expect("claim");
    assert_eq!(ids(&claimed), vec![job.id]);
    assert_eq!(
        f.store.mark_synced(&[mark_of(&claimed[0])]).await.expect("mark"),
        vec![job.id],
        "equal version marks a NULL"
    );

    // The queue can be rebuilt from the truth if someone empties it.
    f.exec("UPDATE job SET version = version + 1 WHERE id = $1::uuid", &[Param::Uuid(job.id)]).await;
    f.exec("DELETE FROM job_sync_queue", &[]).await;
    assert_eq!(f.store.requeue_missing().await.expect("requeue"), 1);
    assert_eq!(ids(&f.store.claim_dirty(10, LEASE).await.expect("claim")), vec![job.id]);
}

pub async fn mark_synced_never_goes_backwards<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("u@example.com").await;
    let mut job = f.create(&me, json!({"type": "BUILD", "project_name": "p"})).await;
    let mark = |v: i64| Mark { id: job.id, version: v, kind: PendingKind::Upsert };
    assert_eq!(f.store.mark_synced(&[mark(0)]).await.expect("mark"), vec![job.id], "version 0 of a new row marks");
    let s = f.store.sync_columns(job.id).await.expect("sync").expect("row");
    assert_eq!(s.es_sync_version, 0);
    assert!(s.es_synced_at.is_some());
    assert_eq!(f.store.mark_synced(&[mark(0)]).await.expect("mark"), Vec::<Uuid>::new(), "marking again is a no-op");

    for status in ["RUNNING", "SUCCEEDED"] {
        job = f.store.update(&me, &patch(&job, json!({"status": status}))).await.expect("update");
    }
    let job_id = job.id;
    let mark = |v: i64| Mark { id: job_id, version: v, kind: PendingKind::Upsert };
    assert_eq!(job.version, 2);
    assert_eq!(
        f.store.mark_synced(&[mark(3)]).await.expect("mark"),
        Vec::<Uuid>::new(),
        "never beyond the row's version"
    );
    assert_eq!(f.store.mark_synced(&[mark(2)]).await.expect("mark"), vec![job.id]);
    let at_two = f.store.sync_columns(job.id).await.expect("sync").expect("row");
    assert_eq!(f.store.mark_synced(&[mark(1)]).await.expect("mark"), Vec::<Uuid>::new(), "an older run finishing late");
    assert_eq!(f.store.sync_columns(job.id).await.expect("sync").expect("row"), at_two, "nothing moved");
    assert_eq!(at_two.es_sync_version, 2);

    // Marks of tombstones never go backwards either.
    f.store.delete(&me, job.id, None).await.expect("delete");
    let tomb = |v: i64| Mark { id: job_id, version: v, kind: PendingKind::Tombstone };
    assert_eq!(
        f.store.mark_synced(&[tomb(1)]).await.expect("mark"),
        Vec::<Uuid>::new(),
        "an older delete does not count"
    );
    assert_eq!(f.store.mark_synced(&[tomb(2)]).await.expect("mark"), vec![job.id]);
}

pub async fn stale_mark_leaves_row_dirty<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("u@example.com").await;
    let job = f.create(&me, json!({"type": "BUILD", "project_name": "p"})).await;
    let claimed = f.store.claim_dirty(10, LEASE).await.expect("claim");
    assert_eq!(claimed[0].pending.version, 0);
    assert!(f.store.claim_dirty(10, LEASE).await.expect("claim").is_empty(), "leased");

    // The row changes while the run talks to search.
    f.store.update(&me, &patch(&job, json!({"status": "RUNNING"}))).await.expect("update");
    let entry = f.store.queue_entry(job.id).await.expect("entry").expect("still queued");
    assert_eq!((entry.version, entry.claimed_until), (1, None), "the new version released the lease");
    // The next batch claims the new version before the first one's mark lands.
    let again = f.store.claim_dirty(10, LEASE).await.expect("claim");
    assert_eq!(again.iter().map(|c| c.pending.version).collect::<Vec<_>>(), vec![1]);
    assert_eq!(f.store.mark_synced(&[mark_of(&claimed[0])]).await.expect("mark"), vec![job.id]);
    let s = f.store.sync_columns(job.id).await.expect("sync").expect("row");
    assert_eq!((s.version, s.es_sync_version), (1, 0), "marked at the indexed version, still dirty");
    // That mark leaves the newer claim's lease alone (the enqueue trigger used to clear it:
    // the entry was claimed again while in flight, and its retry then matched nothing).
    let entry = f.store.queue_entry(job.id).await.expect("entry").expect("still queued");
    assert_eq!((entry.version, entry.claimed_until.is_some()), (1, true), "the newer claim keeps its lease");
    assert!(f.store.claim_dirty(10, LEASE).await.expect("claim").is_empty(), "leased");
    f.store.mark_synced(&[mark_of(&again[0])]).await.expect("mark");
    assert!(f.store.queue_entry(job.id).await.expect("entry").is_none(), "synced");
}

pub async fn concurrent_claims_do_not_overlap<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("u@example.com").await;
    let n = 200;
    let mut all = BTreeSet::new();
    for i in 0..n {
        all.insert(f.create(&me, json!({"type": "BUILD", "project_name": format!("p{i}")})).await.id);
    }
    let mut runs = Vec::new();
    for _ in 0..3 {
        let store = Arc::clone(&f.store);
        runs.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_dirty(17, LEASE).await.expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(ids(&batch));
            }
        }));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for r in runs {
        let mine = r.await.expect("run");
        total += mine.len();
        seen.extend(mine);
    }
    assert_eq!(total, n, "no row claimed twice");
    assert_eq!(seen, all, "every row claimed once");
}

/// A row another writer stored in a shape this code cannot read is dead-lettered by the claim
/// with the reason, instead of failing every claim (and so every sync run) that reaches it.
pub async fn unreadable_rows_are_dead_lettered<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("u@example.com").await;
    let odd = f.create(&me, json!({"type": "BUILD", "project_name": "odd"})).await;
    let good = f.create(&me, json!({"type": "BUILD", "project_name": "good"})).await;
    // Another service writes a status this code does not know (the trigger bumps the version).
    f.exec("UPDATE job SET status = 'PENDING' WHERE id = $1::uuid", &[Param::Uuid(odd.id)]).await;

    // One entry per claim: the first claim meets only the unreadable row and claims again.
    let claimed = f.store.claim_dirty(1, LEASE).await.expect("the claim does not fail");
    assert_eq!(ids(&claimed), vec![good.id]);
    let e = f.store.queue_entry(odd.id).await.expect("entry").expect("still queued");
    assert!(e.dead_lettered_at.is_some(), "{e:?}");
    assert_eq!((e.version, e.attempts), (odd.version + 1, 1));
    let err = e.last_error.unwrap_or_default();
    assert!(err.contains("unknown status \"PENDING\""), "the reason is kept: {err}");
    assert!(f.store.claim_dirty(10, LEASE).await.expect("claim").is_empty());
    let lag = f.store.sync_lag().await.expect("lag");
    assert_eq!((lag.dirty, lag.dead_lettered), (1, 1));
    // Listings (the search fallback, the backfill's scan) leave it out, as search does, and
    // name it; they used to fail as a whole.
    let req = SearchRequest::from_params([("sort", "created_at")]).expect("valid search");
    let (sql, binds) = req.to_sql(&me, sql::JOB_SELECT);
    let listed = f.store.list_counted(&sql, &binds).await.expect("the listing does not fail");
    assert_eq!((listed.matched, listed.jobs.iter().map(|j| j.id).collect::<Vec<_>>()), (2, vec![good.id]));
    assert_eq!(listed.unreadable.iter().map(|u| u.id).collect::<Vec<_>>(), vec![odd.id]);
    assert!(listed.unreadable[0].reason.contains("unknown status"), "{:?}", listed.unreadable);
    let scanned = f.store.scan_jobs(None, 10).await.expect("the scan does not fail");
    assert_eq!((scanned.matched, scanned.jobs.len(), scanned.unreadable.len()), (2, 1, 1));

    // Repaired by a writer, the row is due again.
    f.exec("UPDATE job SET status = 'QUEUED' WHERE id = $1::uuid", &[Param::Uuid(odd.id)]).await;
    assert_eq!(ids(&f.store.claim_dirty(10, LEASE).await.expect("claim")), vec![odd.id]);

    // A row too wide for one Data API row is read cut, then completed: metadata it cannot read
    // (a 30 KB array) is found only then, and is dead-lettered the same way.
    let wide = f.create(&me, json!({"type": "BUILD", "project_name": "wide"})).await;
    f.exec(
        "UPDATE job SET metadata = (SELECT jsonb_agg(g) FROM generate_series(1, 6000) g) WHERE id = $1::uuid",
        &[Param::Uuid(wide.id)],
    )
    .await;
    assert!(f.store.claim_dirty(10, LEASE).await.expect("the claim does not fail").is_empty());
    let e = f.store.queue_entry(wide.id).await.expect("entry").expect("still queued");
    assert!(e.dead_lettered_at.is_some() && e.last_error.is_some_and(|m| m.contains("metadata")), "dead-lettered");

    // Timestamps this code cannot hold (`infinity`, which `to_char` writes as NULL; a year past
    // 9999) make the row unreadable, not the listing: it used to fail as a whole.
    let inf = f.create(&me, json!({"type": "BUILD", "project_name": "inf"})).await;
    let far = f.create(&me, json!({"type": "BUILD", "project_name": "far"})).await;
    f.exec("UPDATE job SET created_at = 'infinity' WHERE id = $1::uuid", &[Param::Uuid(inf.id)]).await;
    f.exec("UPDATE job SET completed_at = '10000-01-01T00:00:00Z' WHERE id = $1::uuid", &[Param::Uuid(far.id)]).await;
    let listed = f.store.list_counted(&sql, &binds).await.expect("the listing does not fail");
    let unreadable: Vec<Uuid> = listed.unreadable.iter().map(|u| u.id).collect();
    assert!(unreadable.contains(&inf.id) && unreadable.contains(&far.id), "{:?}", listed.unreadable);
    assert!(listed.jobs.iter().all(|j| j.id != inf.id && j.id != far.id));
    assert!(listed.jobs.iter().any(|j| j.id == good.id));
    let scanned = f.store.scan_jobs(None, 10).await.expect("the scan does not fail");
    assert!(scanned.unreadable.iter().any(|u| u.id == inf.id), "{:?}", scanned.unreadable);
}

pub async fn retry_dead_letter_and_lease<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("u@example.com").await;
    let a = f.create(&me, json!({"type": "BUILD", "project_name": "a"})).await;
    let b = f.create(&me, json!({"type": "BUILD", "project_name": "b"})).await;
    let c = f.create(&me, json!({"type": "BUILD", "project_name": "c"})).await;
    let claimed = f.store.claim_dirty(10, LEASE).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    let c_entry = claimed.iter().find(|x| x.pending.id == c.id).expect("c claimed").pending.clone();

    let later = Timestamp::from_micros(now().as_micros() + 3_600_000_000).expect("timestamp");
    let retry = Retry {
        id: a.id,
        kind: PendingKind::Upsert,
        version: 0,
        attempts: 1,
        next_attempt_at: later,
        error: "429: busy".into(),
    };
    assert_eq!(f.store.record_retries(std::slice::from_ref(&retry)).await.expect("retry"), vec![a.id]);
    let e = f.store.queue_entry(a.id).await.expect("entry").expect("queued");
    assert_eq!(
        (e.attempts, e.next_attempt_at, e.last_error.as_deref(), e.claimed_until),
        (1, later, Some("429: busy"), None)
    );
    let dead = DeadLetter { id: b.id, kind: PendingKind::Upsert, version: 0, attempts: 3, error: "x".repeat(5000) };
    assert_eq!(f.store.dead_letter(&[dead]).await.expect("dead letter"), vec![b.id]);
    let e = f.store.queue_entry(b.id).await.expect("entry").expect("queued");
    assert!(e.dead_lettered_at.is_some());
    assert_eq!(e.last_error.map(|s| s.len()), Some(2000), "errors are truncated");
    // A reindex's look for what its new index refused: by a piece of the error.
    let (n, listed) = f.store.recent_dead_letters(Duration::from_secs(60), "xxx", 3).await.expect("recent");
    assert_eq!((n, listed.iter().map(|(id, e)| (*id, e.len())).collect::<Vec<_>>()), (1, vec![(b.id, 2000)]));
    let none = f.store.recent_dead_letters(Duration::from_secs(60), "jobs-reindex: ", 3).await.expect("recent");
    assert_eq!(none, (0, vec![]));
    f.store.release(&[c_entry]).await.expect("release");

    // Waiting for a retry and dead-lettered entries are skipped; released ones come back.
    assert_eq!(ids(&f.store.claim_dirty(10, LEASE).await.expect("claim")), vec![c.id]);
    let lag = f.store.sync_lag().await.expect("lag");
    assert_eq!((lag.dirty, lag.dead_lettered), (2, 1));

    // An outcome for an entry no longer leased by the run (released, re-claimed, or changed) is ignored.
    assert!(f.store.record_retries(std::slice::from_ref(&retry)).await.expect("retry").is_empty());

    // A new version makes the waiting entry due at once with fresh retry state.
    let a1 = f.store.update(&me, &patch(&a, json!({"status": "RUNNING"}))).await.expect("update");
    let e = f.store.queue_entry(a.id).await.expect("entry").expect("queued");
    assert_eq!((e.version, e.attempts), (a1.version, 0));
    assert!(e.next_attempt_at < later);
    assert_eq!(ids(&f.store.claim_dirty(10, LEASE).await.expect("claim")), vec![a.id]);
    // The outcome of a run that sent the old version lands now: it leaves the new claim, its
    // lease and its fresh retry state alone.
    let old = Retry { attempts: 7, ..retry };
    assert!(f.store.record_retries(&[old]).await.expect("retry").is_empty());
    let e = f.store.queue_entry(a.id).await.expect("entry").expect("queued");
    assert_eq!((e.version, e.attempts, e.claimed_until.is_some()), (a1.version, 0, true));
    // So does its hand-back of the old version.
    let stale = Pending { id: a.id, version: 0, kind: PendingKind::Upsert, attempts: 0 };
    assert_eq!(f.store.release(&[stale]).await.expect("release"), 0);
    assert!(f.store.queue_entry(a.id).await.expect("entry").expect("queued").claimed_until.is_some());

    // Dead letters wait for an operator (or a change of the row).
    assert_eq!(f.store.requeue_dead_letters(Some(&[b.id])).await.expect("requeue"), vec![b.id]);
    let got = f.store.claim_dirty(10, Duration::from_millis(1)).await.expect("claim");
    assert_eq!(ids(&got), vec![b.id]);
    assert_eq!(got[0].pending.attempts, 0);

    // A lease that runs out makes the entry claimable again.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(ids(&f.store.claim_dirty(10, LEASE).await.expect("claim")), vec![b.id]);
    assert!(f.store.requeue_dead_letters(None).await.expect("requeue all").is_empty());
}

/// `GET /v1/jobs?include=sync`: each job's state from its row and queue entry, in one statement.
pub async fn sync_state_of_a_page<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("u@example.com").await;
    let a = f.create(&me, json!({"type": "BUILD", "project_name": "a"})).await;
    let b = f.create(&me, json!({"type": "BUILD", "project_name": "b"})).await;
    let c = f.create(&me, json!({"type": "BUILD", "project_name": "c"})).await;
    let claimed = f.store.claim_dirty(10, LEASE).await.expect("claim");
    let of = |id: Uuid| claimed.iter().find(|x| x.pending.id == id).expect("claimed");
    f.store.mark_synced(&[mark_of(of(a.id))]).await.expect("mark");
    let dead = DeadLetter { id: b.id, kind: PendingKind::Upsert, version: 0, attempts: 3, error: "400".into() };
    f.store.dead_letter(&[dead]).await.expect("dead letter");
    f.store.release(&[of(c.id).pending.clone()]).await.expect("release");
    let gone = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0042);

    let states = f.store.sync_of(&me, &[a.id, b.id, c.id, gone]).await.expect("sync state");
    let state = |id: Uuid| states.iter().find(|(i, _)| *i == id).map(|(_, s)| *s).expect("every id answered");
    let sa = state(a.id);
    assert_eq!((sa.state, sa.version, sa.synced_version), (SyncState::Synced, Some(0), Some(0)));
    assert!(sa.synced_at.is_some_and(|t| t.as_micros() <= now().as_micros()), "{sa:?}");
    let sb = state(b.id);
    assert_eq!((sb.state, sb.version, sb.synced_version), (SyncState::DeadLettered, Some(0), None));
    assert_eq!(state(c.id).state, SyncState::Pending);
    assert_eq!((state(gone).state, state(gone).version), (SyncState::Deleted, None));
    assert_eq!(states.len(), 4);

    // A new version of a synced job is pending, search still holding the old one.
    f.store.update(&me, &patch(&a, json!({"status": "RUNNING"}))).await.expect("update");
    let sa = f.store.sync_of(&me, &[a.id]).await.expect("sync state")[0].1;
    assert_eq!((sa.state, sa.version, sa.synced_version), (SyncState::Pending, Some(1), Some(0)));
    // A deleted job, its delete not yet in search.
    f.store.delete(&me, c.id, None).await.expect("delete");
    assert_eq!(f.store.sync_of(&me, &[c.id]).await.expect("sync state")[0].1.state, SyncState::Deleted);
    assert!(f.store.sync_of(&me, &[]).await.expect("nothing asked").is_empty());

    // Another user's job is as good as deleted, whoever asks by its id: a job deleted and
    // created again with the same id by someone else used to show their row's state.
    let other = f.user("o@example.com").await;
    let theirs = f.create(&other, json!({"type": "BUILD", "project_name": "theirs"})).await;
    let s = f.store.sync_of(&me, &[theirs.id]).await.expect("sync state")[0].1;
    assert_eq!((s.state, s.version, s.synced_version, s.synced_at), (SyncState::Deleted, None, None, None));
    assert_eq!(f.store.sync_of(&other, &[theirs.id]).await.expect("sync state")[0].1.state, SyncState::Pending);
}

pub async fn sync_lag<E: Executor + 'static>(f: &Fixture<E>) {
    let lag = f.store.sync_lag().await.expect("lag");
    assert_eq!((lag.dirty, lag.dead_lettered, lag.oldest_dirty_since, lag.oldest_age_ms), (0, 0, None, None));
    let me = f.user("u@example.com").await;
    let first = f.create(&me, json!({"type": "BUILD", "project_name": "a"})).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let second = f.create(&me, json!({"type": "BUILD", "project_name": "b"})).await;
    f.store.delete(&me, second.id, None).await.expect("delete");
    let lag = f.store.sync_lag().await.expect("lag");
    assert_eq!(lag.dirty, 2, "a dirty job and a tombstone");
    assert_eq!(lag.oldest_dirty_since, Some(first.created_at), "dirty since its first unsynced change");
    assert!(lag.oldest_age_ms.is_some_and(|ms| ms >= 25), "{lag:?}");
    // Further changes keep the first unsynced time.
    f.store.update(&me, &patch(&first, json!({"status": "RUNNING"}))).await.expect("update");
    assert_eq!(f.store.sync_lag().await.expect("lag").oldest_dirty_since, Some(first.created_at));
    f.sync_everything().await;
    let lag = f.store.sync_lag().await.expect("lag");
    assert_eq!((lag.dirty, lag.oldest_dirty_since), (0, None));
}

pub async fn list_by_fallback_query<E: Executor + 'static>(f: &Fixture<E>) {
    let mut alice = f.user("alice@example.com").await;
    let mut bob = f.user("bob@example.com").await;
    let ws = f.workspace(&mut [&mut alice, &mut bob]).await;
    let mut jobs = Vec::new();
    for i in 0..12 {
        let owner = if i % 3 == 0 { &bob } else { &alice };
        let body = json!({
            "workspace_id": if i % 2 == 0 { Some(ws) } else { None },
            "type": if i % 4 == 0 { "TEST" } else { "BUILD" },
            "project_name": format!("project-{}", i % 3),
            "arch": if i % 2 == 0 { "x86_64" } else { "arm64" },
            "metadata": {"cpuCores": i % 5 + 1, "memoryGb": 2.5 * f64::from(i + 1)},
        });
        let job = f.create(owner, body).await;
        let job = if i % 3 == 1 {
            f.store.update(owner, &patch(&job, json!({"status": "RUNNING"}))).await.expect("update")
        } else {
            job
        };
        jobs.push(job);
    }
    // Doubles with 16 and 17 significant digits: compared exactly, not as the 15 digits that
    // PostgreSQL's float8-to-numeric keeps (the Data API binds a doubleValue as float8, so a
    // filter sent as one read 15.999999999999998 as 16).
    for (i, memory) in [15.999999999999998, 16.0, 0.30000000000000004].into_iter().enumerate() {
        let body = json!({"type": "BUILD", "project_name": format!("precise-{i}"), "metadata": {"memoryGb": memory}});
        jobs.push(f.create(&alice, body).await);
    }
    for params in [
        vec![("metadata.memoryGb", "15.999999999999998")],
        vec![("metadata.memoryGb.lt", "15.999999999999998")],
        vec![("metadata.memoryGb.gte", "16")],
        vec![("metadata.memoryGb", "0.30000000000000004")],
        vec![],
        vec![("status", "RUNNING")],
        vec![("type", "BUILD"), ("arch", "arm64")],
        vec![("metadata.cpuCores.gte", "3"), ("sort", "updated_at")],
        vec![("sort", "-updated_at"), ("limit", "3")],
        vec![("metadata.memoryGb.lt", "12.5")],
        vec![("q", "PROJECT-2"), ("limit", "2")],
    ] {
        let req = SearchRequest::from_params(params.iter().copied()).expect("valid search");
        let (sql, binds) = req.to_sql(&alice, sql::JOB_SELECT);
        let got = f.store.list(&sql, &binds).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut want: Vec<Job> = jobs.iter().filter(|j| req.matches(&alice, j)).cloned().collect();
        want.sort_by(|a, b| req.compare(a, b));
        want.truncate(req.fetch_size() as usize);
        assert_eq!(
            got.iter().map(|j| j.id).collect::<Vec<_>>(),
            want.iter().map(|j| j.id).collect::<Vec<_>>(),
            "{params:?}"
        );
        assert_eq!(got, want, "{params:?}: whole jobs");
    }
}

/// Rows wider than one RDS Data API row may be (64 KB; the rules allow an error message of
/// 65,536 characters, 160 KB here, and 32 KiB of metadata) read whole on every path: the
/// write's own answer, get, the search fallback's list, the claim and the scan.
pub async fn wide_rows_read_whole<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("wide@example.com").await;
    // 28 KB as compact JSON, over the inline limit as PostgreSQL writes it (with spaces).
    let metadata: serde_json::Map<String, Value> = (0..2000).map(|i| (format!("k{i:04}"), json!("vé"))).collect();
    let body = json!({"type": "BUILD", "project_name": "wide", "status": "RUNNING", "metadata": metadata});
    let new = new_job(body.clone());
    let job = f.store.create(&me, &new, new_id()).await.expect("create");
    assert_eq!((&job.metadata, job.error_message.as_deref()), (new.metadata(), None));
    let message = "é€😀x".repeat(16_384);
    let failed =
        f.store.update(&me, &patch(&job, json!({"status": "FAILED", "error_message": message}))).await.expect("update");
    assert_eq!(failed.error_message.as_deref(), Some(message.as_str()));
    assert_eq!(&failed.metadata, new.metadata());
    assert_eq!(f.store.get(&me, job.id).await.expect("get"), failed);
    assert_eq!(f.store.get_unscoped(job.id).await.expect("get"), Some(failed.clone()));
    let small = f.create(&me, json!({"type": "TEST", "project_name": "small", "metadata": {"a": 1}})).await;
    let req = SearchRequest::from_params([("sort", "created_at")]).expect("valid search");
    let (sql, binds) = req.to_sql(&me, sql::JOB_SELECT);
    assert_eq!(f.store.list(&sql, &binds).await.expect("list"), vec![failed.clone(), small.clone()]);
    let claimed = f.store.claim_dirty(10, LEASE).await.expect("claim");
    let mut items: Vec<Job> =
        claimed.into_iter().filter_map(|c| if let Item::Job(j) = c.item { Some(j) } else { None }).collect();
    items.sort_by_key(|j| j.created_at);
    assert_eq!(items, vec![failed.clone(), small.clone()]);
    // A usual stack trace (10 KB) stays in its row: no second statement to read it.
    let trace = f.create(&me, json!({"type": "TEST", "project_name": "trace", "status": "RUNNING"})).await;
    let trace = f
        .store
        .update(&me, &patch(&trace, json!({"status": "FAILED", "error_message": "at x.y(z:1)\n".repeat(800)})))
        .await
        .expect("update");
    let row = f.db().query(sql::SELECT_JOB, &[Param::Uuid(trace.id)]).await.expect("select");
    assert!(matches!((&row[0][9], &row[0][10]), (Cell::Text(_), Cell::Text(_))), "inline: {:?}", &row[0][9..11]);
    assert_eq!(f.store.scan_jobs(None, 10).await.expect("scan").jobs.len(), 3);
    assert!(f.store.scan_jobs(None, 10).await.expect("scan").jobs.contains(&failed));
    assert!(f.store.scan_jobs(None, 10).await.expect("scan").jobs.contains(&trace));
    // Under the 32 KiB limit as compact JSON (`1e308`), but 1.4 MB as PostgreSQL writes it back
    // (a jsonb number is a numeric: 309 digits each): more pieces than one response holds.
    let huge =
        json!({"type": "BUILD", "project_name": "huge", "metadata": {"x": vec![1e308; 4300], "y": vec![5e-324; 100]}});
    let huge = f.create(&me, huge).await;
    let length = "SELECT octet_length(metadata::text) FROM job WHERE id = $1::uuid";
    let length = f.db().query(length, &[Param::Uuid(huge.id)]).await.expect("length");
    assert!(matches!(&length[0][0], Cell::Int(n) if *n > 1_300_000), "{length:?}");
    assert_eq!(f.store.get(&me, huge.id).await.expect("get"), huge);
    assert_eq!(f.store.get_unscoped(huge.id).await.expect("get"), Some(huge.clone()));
    assert!(f.store.scan_jobs(None, 10).await.expect("scan").jobs.contains(&huge));
}

/// A claim of a thousand jobs of 1.5 KB each is more than one RDS Data API response may hold
/// (1 MiB): the claim takes its leases in one statement and reads the jobs in parts that fit;
/// so do the scans of the backfill and of verify.
pub async fn large_claims_fit_one_response<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("many@example.com").await;
    f.exec(
        "INSERT INTO job (id, user_id, status, type, project_name, metadata) \
         SELECT gen_random_uuid(), $1::uuid, 'QUEUED', 'BUILD', 'p' || g, jsonb_build_object('notes', repeat('x', 1500)) \
         FROM generate_series(1, 1000) AS g",
        &[Param::Uuid(me.user_id)],
    )
    .await;
    let claimed = f.store.claim_dirty(1000, LEASE).await.expect("claim");
    assert_eq!(claimed.len(), 1000);
    assert!(claimed.iter().all(|c| matches!(&c.item, Item::Job(j) if j.metadata.len() == 1 && j.version == 0)));
    assert!(f.store.claim_dirty(1000, LEASE).await.expect("claim").is_empty(), "all leased");
    // The backfill's and verify's scans read pages as large, in id order.
    let first = f.store.scan_jobs(None, 600).await.expect("scan");
    let rest = f.store.scan_jobs(first.last_id, 600).await.expect("scan");
    assert_eq!((first.jobs.len(), first.matched, rest.jobs.len(), rest.matched), (600, 600, 400, 400));
    assert!(first.jobs.iter().chain(&rest.jobs).map(|j| j.id).collect::<Vec<_>>().is_sorted());
}

/// Queue entries whose job went without its delete trigger (TRUNCATE, triggers bypassed) are
/// dead-lettered where operators see them; released, they came first in every claim, and a
/// batch's worth of them starved every other job.
pub async fn orphaned_entries_do_not_starve_claims<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("orphans@example.com").await;
    let gone: BTreeSet<Uuid> = [
        f.create(&me, json!({"type": "BUILD", "project_name": "a"})).await.id,
        f.create(&me, json!({"type": "BUILD", "project_name": "b"})).await.id,
        f.create(&me, json!({"type": "BUILD", "project_name": "c"})).await.id,
    ]
    .into();
    f.exec("TRUNCATE job", &[]).await;
    let fresh = f.create(&me, json!({"type": "BUILD", "project_name": "fresh"})).await;
    let claimed = f.store.claim_dirty(3, LEASE).await.expect("claim");
    assert_eq!(ids(&claimed), vec![fresh.id], "the new job is claimed past the orphans");
    for id in &gone {
        let e = f.store.queue_entry(*id).await.expect("entry").expect("kept, dead-lettered");
        assert!(e.dead_lettered_at.is_some(), "{e:?}");
        assert!(e.last_error.as_deref().is_some_and(|m| m.contains("no tombstone")), "{e:?}");
    }
    assert_eq!(f.store.sync_lag().await.expect("lag").dead_lettered, 3);
}

/// A job id created again while its delete is still committing waits for the id, then either
/// fails as a serialization failure (to be retried) or continues the version past the delete's;
/// it never starts below it (search would refuse it as stale for good).
pub async fn recreate_racing_a_delete_continues_the_version<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("race@example.com").await;
    let id = new_id();
    let job = f.create(&me, json!({"id": id, "type": "BUILD", "project_name": "a"})).await;
    let job = f.store.update(&me, &patch(&job, json!({"status": "RUNNING"}))).await.expect("update");
    let mut tx = f.db().begin().await.expect("begin");
    tx.execute("DELETE FROM job WHERE id = $1::uuid", &[Param::Uuid(id)]).await.expect("delete");
    let pid = tx.query("SELECT pg_backend_pid()::bigint", &[]).await.expect("pid");
    let pid = match pid.first().and_then(|r| r.first()) {
        Some(Cell::Int(pid)) => *pid,
        other => panic!("pid: {other:?}"),
    };
    let (store, scope) = (f.store.clone(), me.clone());
    let again = tokio::spawn(async move {
        let new = new_job(json!({"id": id, "type": "TEST", "project_name": "b"}));
        store.create(&scope, &new, id).await
    });
    // The race itself: the insert waits on the deleting transaction before it commits (else
    // the create would just follow the delete, and the test pass without the race).
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY (pg_blocking_pids(pid))";
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while f.db().query(waiting, &[Param::Int(pid)]).await.expect("waiting") != vec![vec![Cell::Int(1)]] {
        assert!(std::time::Instant::now() < until, "the create never waited for the delete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.commit().await.expect("commit the delete");
    let created = match again.await.expect("task") {
        Ok(created) => created,
        Err(StoreError::Db(e)) if e.sqlstate() == Some("40001") => f
            .store
            .create(&me, &new_job(json!({"id": id, "type": "TEST", "project_name": "b"})), id)
            .await
            .expect("retry"),
        Err(e) => panic!("create: {e}"),
    };
    assert!(created.version >= job.version + 2, "version {} after a delete at {}", created.version, job.version);
}

pub async fn migrations<E: Executor + 'static>(f: &Fixture<E>) {
    let opts = Options::schema(&f.schema);
    assert!(migrate::migrate(f.db(), &opts).await.expect("re-run").is_empty(), "re-running is a no-op");
    let rows = f
        .db()
        .query(&format!("SELECT version, script FROM \"{}\".jobs_schema_history ORDER BY version", f.schema), &[])
        .await
        .expect("history");
    assert_eq!(rows.len(), migrate::MIGRATIONS.len());
    assert_eq!(rows[0], vec![Cell::Text("1".into()), Cell::Text("V1__init.sql".into())]);

    // The lock is the schema's, however it is named: a run on the connection's own schema
    // waits for one holding the lock by the schema's name (the key was "" then: no wait).
    let mut holder = f.db().begin().await.expect("begin");
    holder
        .query("SELECT 1 FROM pg_advisory_xact_lock(1785684577, hashtext($1::text))", &[Param::Text(f.schema.clone())])
        .await
        .expect("lock");
    let unnamed = migrate::migrate(f.db(), &Options { schema: None });
    assert!(tokio::time::timeout(Duration::from_millis(700), unnamed).await.is_err(), "it did not wait for the lock");
    holder.rollback().await.expect("unlock");
    assert!(migrate::migrate(f.db(), &Options { schema: None }).await.expect("then it runs").is_empty());

    // Concurrent runs on a new schema: both succeed, the migration is applied once.
    let other = unique_schema("concurrent");
    let other_opts = Options::schema(&other);
    let (a, b) = tokio::join!(migrate::migrate(f.db(), &other_opts), migrate::migrate(f.db(), &other_opts));
    let (a, b) = (a.expect("first run"), b.expect("second run"));
    assert_eq!(a.len() + b.len(), migrate::MIGRATIONS.len(), "applied exactly once: {a:?} {b:?}");

    // An applied migration that changed is an error, and so is one this build does not know.
    let changed: &'static str = Box::leak(format!("{}\n-- edited\n", migrate::MIGRATIONS[0].sql).into_boxed_str());
    let mut edited = migrate::MIGRATIONS.to_vec();
    edited[0] = Migration { file: "V1__init.sql", sql: changed };
    let r = migrate::migrate_with(f.db(), &Options::schema(&other), &edited).await;
    assert!(matches!(r, Err(MigrateError::ChecksumMismatch { .. })), "{r:?}");
    let r = migrate::migrate_with(f.db(), &Options::schema(&other), &[]).await;
    assert!(matches!(r, Err(MigrateError::UnknownApplied { ref version }) if version == "1"), "{r:?}");

    // A failing migration leaves nothing behind.
    let mut broken = migrate::MIGRATIONS.to_vec();
    broken.push(Migration { file: "V900__broken.sql", sql: "CREATE TABLE half_done (id int);\nSELECT 1/0;" });
    let r = migrate::migrate_with(f.db(), &Options::schema(&other), &broken).await;
    match r {
        Err(MigrateError::Statement { statement, source, .. }) => {
            assert_eq!((statement, source.sqlstate()), (2, Some("22012")));
        }
        other => panic!("expected a statement error, got {other:?}"),
    }
    let left = f
        .db()
        .query(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1::text AND tablename = 'half_done'",
            &[Param::Text(other.clone())],
        )
        .await
        .expect("pg_tables");
    assert_eq!(left, vec![vec![Cell::Int(0)]]);
    f.exec(&format!("DROP SCHEMA \"{other}\" CASCADE"), &[]).await;
    let r = migrate::migrate(f.db(), &Options::schema("bad-name; DROP")).await;
    assert!(matches!(r, Err(MigrateError::BadSchema(_))));
}

pub async fn executor_semantics<E: Executor + 'static>(f: &Fixture<E>) {
    let err = f.db().query("SELECT 1 / $1::integer", &[Param::Int(0)]).await.expect_err("division by zero");
    assert_eq!(err.sqlstate(), Some("22012"), "{err}");
    assert!(matches!(err, DbError::Database { .. }));

    let rows = f
        .db()
        .query(
            "SELECT $1::bigint, $2::double precision, $3::boolean, $4::text, $5::uuid::text, $6::jsonb::text, \
             $7::smallint, $8::integer, NULL::text",
            &[
                Param::Int(i64::MIN),
                Param::Float(-0.125),
                Param::Bool(false),
                Param::Text("ünï'\"\\".into()),
                Param::Uuid(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)),
                Param::Json(r#"{"b": [1, "x"], "a": null}"#.into()),
                Param::Int(-7),
                Param::Int(70_000),
            ],
        )
        .await
        .expect("types");
    assert_eq!(
        rows,
        vec![vec![
            Cell::Int(i64::MIN),
            Cell::Float(-0.125),
            Cell::Bool(false),
            Cell::Text("ünï'\"\\".into()),
            Cell::Text("01234567-89ab-cdef-0123-456789abcdef".into()),
            Cell::Text(r#"{"a": null, "b": [1, "x"]}"#.into()),
            Cell::Int(-7),
            Cell::Int(70_000),
            Cell::Null,
        ]]
    );

    // Transactions: commit keeps, rollback (or an error) discards.
    f.exec("CREATE TABLE tx_probe (n integer PRIMARY KEY)", &[]).await;
    let mut tx = f.db().begin().await.expect("begin");
    assert_eq!(tx.execute("INSERT INTO tx_probe VALUES (1), (2)", &[]).await.expect("insert"), 2);
    tx.commit().await.expect("commit");
    let mut tx = f.db().begin().await.expect("begin");
    tx.execute("INSERT INTO tx_probe VALUES (3)", &[]).await.expect("insert");
    tx.rollback().await.expect("rollback");
    let mut tx = f.db().begin().await.expect("begin");
    tx.execute("INSERT INTO tx_probe VALUES (4)", &[]).await.expect("insert");
    let dup = tx.execute("INSERT INTO tx_probe VALUES (1)", &[]).await.expect_err("duplicate");
    assert_eq!(dup.sqlstate(), Some("23505"));
    let aborted = tx.execute("INSERT INTO tx_probe VALUES (5)", &[]).await.expect_err("aborted");
    assert_eq!(aborted.sqlstate(), Some("25P02"), "after an error the transaction is aborted");
    tx.rollback().await.expect("rollback");
    {
        let mut tx = f.db().begin().await.expect("begin");
        tx.execute("INSERT INTO tx_probe VALUES (6)", &[]).await.expect("insert");
        // dropped without commit
    }
    let rows = f.db().query("SELECT n FROM tx_probe ORDER BY n", &[]).await.expect("select");
    assert_eq!(rows, vec![vec![Cell::Int(1)], vec![Cell::Int(2)]]);
}

/// Builds 100k+ jobs, dirties 1%, and checks the claim statement's plan: the queue is read
/// through its index, and jobs, tombstones and the lease update go by primary key: no
/// sequential scan anywhere, so a claim costs O(batch), not O(table) or O(dirty).
pub async fn dirty_batch_uses_the_index<E: Executor + 'static>(f: &Fixture<E>) {
    let me = f.user("bulk@example.com").await;
    let rows = 120_000;
    f.exec(
        "INSERT INTO job (id, user_id, status, type, project_name, metadata, version, es_synced_at, es_sync_version) \
         SELECT gen_random_uuid(), $1::uuid, 'SUCCEEDED', 'BUILD', 'p' || (g % 100), \
                jsonb_build_object('cpuCores', 1 + g % 8), 1, now(), 1 \
         FROM generate_series(1, $2::integer) g",
        &[Param::Uuid(me.user_id), Param::Int(rows)],
    )
    .await;
    // Some synced tombstones, as a table that has seen deletes has.
    f.exec("DELETE FROM job WHERE abs(hashtext(id::text)) % 50 = 1", &[]).await;
    f.exec("UPDATE job_tombstone SET es_synced_at = now()", &[]).await;
    f.exec("UPDATE job SET version = version + 1 WHERE abs(hashtext(id::text)) % 100 = 0", &[]).await;
    f.exec("ANALYZE job", &[]).await;
    f.exec("ANALYZE job_sync_queue", &[]).await;
    f.exec("ANALYZE job_tombstone", &[]).await;
    let dirty = f.store.sync_lag().await.expect("lag").dirty;
    assert!(dirty > 500 && dirty < 2_000, "about 1% dirty: {dirty}");

    // EXPLAIN's JSON output is a json column: read it as text through a function.
    f.exec(
        "CREATE FUNCTION explain_json(q text) RETURNS text LANGUAGE plpgsql AS $$ \
         DECLARE plan text; BEGIN EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO plan; RETURN plan; END $$",
        &[],
    )
    .await;
    let claim = sql::CLAIM_DIRTY.replace("$1::bigint", "100::bigint").replace("$2::bigint", "60000::bigint");
    let out = f.db().query("SELECT explain_json($1::text)", &[Param::Text(claim)]).await.expect("explain");
    let Some(Some(Cell::Text(plan))) = out.first().map(|r| r.first()) else { panic!("no plan: {out:?}") };
    let plan: Value = serde_json::from_str(plan).expect("plan json");
    let mut nodes = Vec::new();
    collect_nodes(&plan, &mut nodes);
    let scans: Vec<String> = nodes.iter().map(|(t, rel, idx)| format!("{t} {rel} {idx}")).collect();
    assert!(
        nodes.iter().any(|(t, _, idx)| t.contains("Index") && idx == "idx_job_sync_queue_due"),
        "the queue is read through its partial index: {scans:?}"
    );
    assert!(!nodes.iter().any(|(t, _, _)| t == "Seq Scan"), "no sequential scan: {scans:?}");
    // The claimed jobs are read next, by primary key.
    let ids: Vec<String> = (0..100).map(|i| format!("\"{}\"", Uuid::from_u128(i))).collect();
    let by_ids = sql::SELECT_JOBS_BY_IDS.replace("$1::jsonb", &format!("'[{}]'::jsonb", ids.join(",")));
    let out = f.db().query("SELECT explain_json($1::text)", &[Param::Text(by_ids)]).await.expect("explain");
    let Some(Some(Cell::Text(plan))) = out.first().map(|r| r.first()) else { panic!("no plan: {out:?}") };
    let mut nodes = Vec::new();
    collect_nodes(&serde_json::from_str(plan).expect("plan json"), &mut nodes);
    assert!(
        nodes.iter().any(|(t, _, idx)| t.contains("Index") && idx == "job_pkey"),
        "jobs are fetched by primary key: {nodes:?}"
    );
    assert!(!nodes.iter().any(|(t, _, _)| t == "Seq Scan"), "no sequential scan: {nodes:?}");

    let claimed = f.store.claim_dirty(100, LEASE).await.expect("claim");
    assert_eq!(claimed.len(), 100);
}

/// (node type, relation, index) of every plan node.
fn collect_nodes(v: &Value, out: &mut Vec<(String, String, String)>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_nodes(i, out)),
        Value::Object(map) => {
            if let Some(Value::String(t)) = map.get("Node Type") {
                let s = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                out.push((t.clone(), s("Relation Name"), s("Index Name")));
            }
            map.values().for_each(|i| collect_nodes(i, out));
        }
        _ => {}
    }
}
