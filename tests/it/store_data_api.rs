//! The same store conformance suite as `store.rs`, through the RDS Data API driver
//! (aws-sdk-rdsdata) talking to the project's local Data API server, which runs the statements
//! on real Postgres. Each case gets its own server whose connections use a fresh schema.

use aws_credential_types::Credentials;
use aws_sdk_rdsdata::config::{BehaviorVersion, Region};
use jobs_lambda::data_api::client::{DataApiConfig, RdsDataExecutor};
use jobs_lambda::data_api::server::{AppState, Config, router};
use jobs_lambda::db::Executor;
use jobs_tests::store_suite::{Fixture, database_url, unique_schema};

/// The database name in a `postgres://user@host:port/db[?...]` URL.
fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or("postgres").to_owned()
}

async fn data_api(case: &str) -> Option<Fixture<RdsDataExecutor>> {
    data_api_with(case, "", true).await
}

/// A fixture whose server adds `options` (URL-encoded `-c` settings) to its connections, and
/// binds unhinted values by their JSON kind as the service does when `strict`.
async fn data_api_with(case: &str, options: &str, strict: bool) -> Option<Fixture<RdsDataExecutor>> {
    let url = database_url(case)?;
    let schema = unique_schema(case);
    // The Data API has no session state between calls: the schema comes from the server's
    // connection options, as a real cluster's would come from the user's search_path.
    let sep = if url.contains('?') { '&' } else { '?' };
    let server_url = format!("{url}{sep}options=-c%20search_path%3D{schema}{options}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let mut config = Config::new(server_url);
    config.strict_types = strict;
    let state = AppState::new(config).expect("data api server");
    tokio::spawn(async move { axum::serve(listener, router(state)).await.ok() });
    let sdk = aws_sdk_rdsdata::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(format!("http://{addr}"))
        .build();
    let exec = RdsDataExecutor::new(
        aws_sdk_rdsdata::Client::from_conf(sdk),
        DataApiConfig {
            resource_arn: "arn:aws:rds:us-east-1:123456789012:cluster:local".into(),
            secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:local".into(),
            database: database_name(&url),
            endpoint_url: None,
        },
    );
    Some(Fixture::new(exec, &schema).await)
}

jobs_tests::store_conformance!(data_api);

/// A page far over the Data API's 1 MiB response limit still lists, in order: the store reads
/// ids first, then rows by id in parts that fit. Some rows are also over the 64 KB a Data API
/// row may hold (120 KB error messages): they are read cut, then completed in pieces.
#[tokio::test]
async fn large_pages_are_read_under_the_response_limit() {
    use jobs_core::query::SearchRequest;
    use jobs_core::validate;
    let Some(f) = data_api("large_pages_are_read_under_the_response_limit").await else { return };
    let scope = f.user("big@example.com").await;
    let message = "é".repeat(60_000); // 120 KB of UTF-8 per job
    // 24 KB of metadata as PostgreSQL writes it: still inline, 40 of them are over 1 MiB.
    let metadata: serde_json::Map<String, serde_json::Value> =
        (0..1000).map(|i| (format!("k{i:04}"), serde_json::json!("vvvvvvvvvv"))).collect();
    let mut want = Vec::new();
    for i in 0..52 {
        let name = format!("big-{i:02}");
        let body =
            serde_json::json!({"type": "BUILD", "project_name": name, "status": "RUNNING", "metadata": metadata});
        let new = validate::create_from_json(body.to_string().as_bytes()).expect("valid create");
        let job = f.store.create(&scope, &new, jobs_tests::store_suite::new_id()).await.expect("create");
        let job = if i % 4 == 0 {
            let patch = serde_json::json!({"status": "FAILED", "error_message": message});
            let patch = validate::patch(&job, &patch, jobs_tests::store_suite::now()).expect("valid patch");
            f.store.update(&scope, &patch).await.expect("update")
        } else {
            job
        };
        want.push(job);
    }
    let req = SearchRequest::from_params([("limit", "100"), ("sort", "created_at")]).expect("valid");
    let (sql, params) = req.to_sql(&scope, jobs_core::sql::JOB_SELECT);
    let err = f.store.executor().query(&sql, &params).await.expect_err("one response cannot hold 1.2 MB");
    assert_eq!(err.sqlstate(), Some(jobs_lambda::db::RESPONSE_TOO_LARGE), "{err}");
    let jobs = f.store.list(&sql, &params).await.expect("paged list");
    assert_eq!(jobs.len(), 52);
    assert!(jobs.iter().zip(&want).all(|(got, want)| got == want), "whole jobs, in order");
    assert_eq!(jobs.iter().filter(|j| j.error_message.as_deref() == Some(message.as_str())).count(), 13);
    f.cleanup().await;
}

/// Forwards to the Data API driver and runs `hook` once, right after the first statement that
/// reads a large page's keys: a writer acting between the store's two steps.
struct BetweenSteps {
    inner: RdsDataExecutor,
    hook: std::sync::Mutex<Option<futures_util::future::BoxFuture<'static, ()>>>,
}

#[async_trait::async_trait]
impl Executor for BetweenSteps {
    type Tx<'a> = <RdsDataExecutor as Executor>::Tx<'a>;
    async fn query(
        &self,
        sql: &str,
        params: &[jobs_core::sql::Param],
    ) -> Result<Vec<jobs_lambda::db::Row>, jobs_lambda::db::DbError> {
        let rows = self.inner.query(sql, params).await;
        if sql.starts_with("SELECT q.id, q.version FROM (") {
            let hook = self.hook.lock().ok().and_then(|mut h| h.take());
            if let Some(hook) = hook {
                hook.await;
            }
        }
        rows
    }
    async fn execute(&self, sql: &str, params: &[jobs_core::sql::Param]) -> Result<u64, jobs_lambda::db::DbError> {
        self.inner.execute(sql, params).await
    }
    async fn begin(&self) -> Result<Self::Tx<'_>, jobs_lambda::db::DbError> {
        self.inner.begin().await
    }
}

/// A job deleted between a large page's two steps (its ids, then its rows) does not make the
/// page short, which the search would read as the last page: the page is read again, and still
/// holds the one more row that says another page follows.
#[tokio::test]
async fn a_large_page_read_across_a_delete_is_not_short() {
    use jobs_core::query::SearchRequest;
    use jobs_core::validate;
    let Some(f) = data_api("a_large_page_read_across_a_delete_is_not_short").await else { return };
    let scope = f.user("big@example.com").await;
    let metadata: serde_json::Map<String, serde_json::Value> =
        (0..1000).map(|i| (format!("k{i:04}"), serde_json::json!("vvvvvvvvvv"))).collect();
    let mut ids = Vec::new();
    for i in 0..60 {
        let body = serde_json::json!({"type": "BUILD", "project_name": format!("p{i:02}"), "metadata": metadata});
        let new = validate::create_from_json(body.to_string().as_bytes()).expect("valid create");
        ids.push(f.store.create(&scope, &new, jobs_tests::store_suite::new_id()).await.expect("create").id);
    }
    // 51 rows asked for (a page of 50 and one more), 1.2 MB: read in two steps.
    let req = SearchRequest::from_params([("limit", "50"), ("sort", "created_at")]).expect("valid");
    let (sql, params) = req.to_sql(&scope, jobs_core::sql::JOB_SELECT);
    let victim = ids[10];
    let (store, me) = (f.store.clone(), scope.clone());
    let hook: futures_util::future::BoxFuture<'static, ()> = Box::pin(async move {
        store.delete(&me, victim, None).await.expect("delete between the steps");
    });
    let wrapped = jobs_lambda::store::Store::new(BetweenSteps {
        inner: f.store.executor().clone(),
        hook: std::sync::Mutex::new(Some(hook)),
    });
    let got = wrapped.list(&sql, &params).await.expect("list");
    let want: Vec<_> = ids.iter().copied().filter(|id| *id != victim).take(51).collect();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), want, "51 rows: another page follows");
    f.cleanup().await;
}

/// Timestamps mean the same instant whatever the cluster's time zone (its `timezone` parameter
/// need not be UTC) and with values bound by their JSON kind, as the service binds them: a
/// job's completion written and read back, and the search fallback's time filters and cursor.
#[tokio::test]
async fn timestamps_do_not_depend_on_the_session_time_zone() {
    use jobs_core::query::SearchRequest;
    let case = "timestamps_do_not_depend_on_the_session_time_zone";
    let Some(f) = data_api_with(case, "%20-c%20TimeZone%3DAmerica/New_York", true).await else { return };
    let scope = f.user("tz@example.com").await;
    let running =
        f.create(&scope, serde_json::json!({"type": "BUILD", "project_name": "tz", "status": "RUNNING"})).await;
    let now = jobs_tests::store_suite::now();
    let patch = jobs_core::validate::patch(&running, &serde_json::json!({"status": "SUCCEEDED"}), now).expect("patch");
    let done = f.store.update(&scope, &patch).await.expect("update");
    assert_eq!(done.completed_at, patch.completed_at(), "written and read back as the same instant");
    assert_eq!(f.store.get(&scope, done.id).await.expect("get"), done);
    let at = done.completed_at.expect("completed").to_string();
    for (filter, found) in [("completed_after", true), ("completed_before", false)] {
        let req = SearchRequest::from_params([(filter, at.as_str())]).expect("valid");
        let (sql, params) = req.to_sql(&scope, jobs_core::sql::JOB_SELECT);
        let jobs = f.store.list(&sql, &params).await.expect("list");
        assert_eq!(jobs.iter().any(|j| j.id == done.id), found, "{filter}={at}");
    }
    let other = f.create(&scope, serde_json::json!({"type": "BUILD", "project_name": "tz2"})).await;
    let req = SearchRequest::from_params([("limit", "1"), ("sort", "created_at")]).expect("valid");
    let (sql, params) = req.to_sql(&scope, jobs_core::sql::JOB_SELECT);
    let first = f.store.list(&sql, &params).await.expect("list");
    let cursor = req.cursor_after(&first[0]);
    let next = SearchRequest::from_params([("limit", "1"), ("sort", "created_at"), ("cursor", cursor.as_str())])
        .expect("valid");
    let (sql, params) = next.to_sql(&scope, jobs_core::sql::JOB_SELECT);
    assert_eq!(f.store.list(&sql, &params).await.expect("list")[0].id, other.id);
    f.cleanup().await;
}
