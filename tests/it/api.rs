//! The HTTP API end to end: the real router served by hyper on 127.0.0.1, real HTTP requests
//! (reqwest), real PostgreSQL in a fresh schema per test. Tenancy, optimistic locking, every
//! error status, and that a rejected request writes nothing.

use jobs_core::model::JobStatus;
use jobs_lambda::api::auth::{self, Auth, Hs256Key, TokenRequest};
use jobs_lambda::api::{Api, Options, router};
use jobs_lambda::db::{Cell, Executor};
use jobs_lambda::pg::{PgExecutor, PgOptions};
use jobs_lambda::search::{Searcher, SearcherOptions};
use jobs_lambda::store::Store;
use jobs_tests::search_env::{Gate, SearchFixture, dead_url};
use jobs_tests::store_suite::{Fixture, database_url, new_id, unique_schema};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

const SECRET: &[u8] = b"api-tests-secret-0123456789";

/// A caller: a user id, an email and the workspaces their token claims.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub workspaces: Vec<Uuid>,
}

impl User {
    pub fn new(name: &str, workspaces: &[Uuid]) -> User {
        User { id: new_id(), email: format!("{name}@example.com"), workspaces: workspaces.to_vec() }
    }
}

/// The API served on a free port over a migrated schema (and a fresh index, on the engine path).
pub struct Served {
    pub base: String,
    pub http: reqwest::Client,
    pub fixture: Option<Fixture<PgExecutor>>,
    pub search: Option<SearchFixture>,
    server: tokio::task::JoinHandle<()>,
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub fn key() -> Hs256Key {
    Hs256Key::new(SECRET).expect("test key")
}

pub fn token_for(user: &User) -> String {
    let req = TokenRequest {
        user_id: user.id,
        email: Some(user.email.clone()),
        workspaces: user.workspaces.clone(),
        issued_at: now_secs(),
        ttl_secs: 3600,
    };
    auth::mint(&key(), &req).expect("mint")
}

pub async fn serve(case: &str, options: Options) -> Option<Served> {
    let url = database_url(case)?;
    let schema = unique_schema(case);
    let db = PgExecutor::connect(&PgOptions::new(url).schema(&schema).max_connections(16)).expect("pool");
    let fixture = Fixture::new(db, &schema).await;
    let store = fixture.store.clone();
    Some(start(store, options, Some(fixture), None).await)
}

/// The API over a search fixture: the engine answers searches, writes go through to it.
pub async fn serve_engine(engine: &'static str, case: &str, options: Options) -> Option<Served> {
    let sf = SearchFixture::new(engine, case).await?;
    sf.client.ensure_index().await.expect("index");
    let searcher = Searcher::new(Some(sf.client.clone()), SearcherOptions::default());
    let store = sf.pg.store.clone();
    Some(start(store, Options { searcher, ..options }, None, Some(sf)).await)
}

async fn start(
    store: Arc<Store<PgExecutor>>,
    options: Options,
    fixture: Option<Fixture<PgExecutor>>,
    search: Option<SearchFixture>,
) -> Served {
    let api = Arc::new(Api::new(store, Auth { key: Some(key()) }, options));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(api);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::builder().pool_max_idle_per_host(32).build().expect("client");
    Served { base: format!("http://{addr}"), http, fixture, search, server }
}

/// A response, read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
    pub fn issue_codes(&self) -> Vec<&str> {
        self.body["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["code"].as_str()).collect())
            .unwrap_or_default()
    }
}

impl Served {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        user: Option<&User>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(u) = user {
            req = req.bearer_auth(token_for(u));
        }
        if let Some(b) = body {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                req = req.header("content-type", "application/json");
            }
            req = req.body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        if status.is_server_error() {
            panic!("{path}: {status} {body}");
        }
        Resp { status, headers, body }
    }

    pub async fn create(&self, user: &User, body: Value) -> Value {
        let r = self.send(Method::POST, "/v1/jobs", Some(user), &[], Some(&body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{body}: {}", r.body);
        r.body
    }

    pub fn db(&self) -> &PgExecutor {
        match (&self.fixture, &self.search) {
            (Some(f), _) => f.db(),
            (None, Some(s)) => s.pg.db(),
            (None, None) => unreachable!("a served API has a database"),
        }
    }

    pub fn store(&self) -> &Store<PgExecutor> {
        self.db_fixture().store.as_ref()
    }

    fn db_fixture(&self) -> &Fixture<PgExecutor> {
        match (&self.fixture, &self.search) {
            (Some(f), _) => f,
            (None, Some(s)) => &s.pg,
            (None, None) => unreachable!("a served API has a database"),
        }
    }

    /// Every job row in the schema (to prove a rejected request wrote nothing).
    pub async fn job_count(&self) -> i64 {
        let rows = self.db().query("SELECT count(*)::bigint FROM job", &[]).await.expect("count");
        match rows.first().and_then(|r| r.first()) {
            Some(Cell::Int(n)) => *n,
            other => panic!("count: {other:?}"),
        }
    }

    pub async fn finish(self) {
        self.server.abort();
        if let Some(f) = self.fixture {
            f.cleanup().await;
        }
        if let Some(s) = self.search {
            s.cleanup().await;
        }
    }
}

fn job_body(project: &str) -> Value {
    json!({"type": "BUILD", "project_name": project, "hostname": "ci-1.example.com", "arch": "arm64", "metadata": {"cpuCores": 4}})
}

#[tokio::test]
async fn api_create_get_patch_delete_with_etags() {
    let Some(s) = serve("api_crud", Options::default()).await else { return };
    let alice = User::new("alice", &[]);
    let r = s.send(Method::POST, "/v1/jobs", Some(&alice), &[], Some(&job_body("web"))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("etag"), Some("\"0\""));
    let id = r.body["id"].as_str().expect("id").to_owned();
    assert_eq!(r.header("location"), Some(format!("jobs/{id}").as_str()), "relative to /v1/jobs");
    assert_eq!(r.body["user_id"], json!(alice.id));
    assert_eq!(r.body["user_email"], json!(alice.email));
    assert_eq!(r.body["status"], json!("QUEUED"));
    assert_eq!(r.body["version"], json!(0));

    let path = format!("/v1/jobs/{id}");
    let got = s.send(Method::GET, &path, Some(&alice), &[], None).await;
    assert_eq!((got.status, got.header("etag")), (StatusCode::OK, Some("\"0\"")));
    assert_eq!(got.body, r.body);

    let running = json!({"status": "RUNNING", "metadata": {"memoryGb": 8}});
    let p = s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"0\"")], Some(&running)).await;
    assert_eq!((p.status, p.header("etag")), (StatusCode::OK, Some("\"1\"")), "{}", p.body);
    assert_eq!(p.body["metadata"], json!({"cpuCores": 4, "memoryGb": 8}));

    // merge-patch media type, a list of tags including the current one
    let failed = json!({"status": "FAILED", "error_message": "exit 2"});
    let p = s
        .send(
            Method::PATCH,
            &path,
            Some(&alice),
            &[("if-match", "\"7\", \"1\""), ("content-type", "application/merge-patch+json")],
            Some(&failed),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(p.body["status"], json!("FAILED"));
    assert!(p.body["completed_at"].is_string());

    // a terminal job changes no more: 400 bad_transition, nothing written
    let again = json!({"status": "RUNNING"});
    let p = s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"2\"")], Some(&again)).await;
    assert_eq!((p.status, p.code()), (StatusCode::BAD_REQUEST, "invalid_input"));
    assert_eq!(p.issue_codes(), vec!["bad_transition"]);
    let got = s.send(Method::GET, &path, Some(&alice), &[], None).await;
    assert_eq!(got.body["version"], json!(2));

    // stale If-Match on delete: 412 with the current job
    let d = s.send(Method::DELETE, &path, Some(&alice), &[("if-match", "\"1\"")], None).await;
    assert_eq!((d.status, d.code()), (StatusCode::PRECONDITION_FAILED, "precondition_failed"));
    assert_eq!(d.body["current"]["version"], json!(2));
    let d = s.send(Method::DELETE, &path, Some(&alice), &[("if-match", "\"2\"")], None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let got = s.send(Method::GET, &path, Some(&alice), &[], None).await;
    assert_eq!((got.status, got.code()), (StatusCode::NOT_FOUND, "not_found"));
    let d = s.send(Method::DELETE, &path, Some(&alice), &[], None).await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
    s.finish().await;
}

#[tokio::test]
async fn api_error_statuses_write_nothing() {
    let Some(s) = serve("api_errors", Options::default()).await else { return };
    let alice = User::new("alice", &[]);
    let job = s.create(&alice, job_body("web")).await;
    let path = format!("/v1/jobs/{}", job["id"].as_str().expect("id"));
    let before = s.job_count().await;

    // 401: no token, garbage, wrong secret, expired, sub not a UUID
    let r = s.send(Method::GET, "/v1/jobs", None, &[], None).await;
    assert_eq!(
        (r.status, r.code(), r.header("www-authenticate")),
        (StatusCode::UNAUTHORIZED, "unauthorized", Some("Bearer"))
    );
    let r = s.send(Method::POST, "/v1/jobs", None, &[("authorization", "Bearer nope")], Some(&job_body("x"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let other = Hs256Key::new(b"some-other-secret-xyz").expect("key");
    let req = TokenRequest { user_id: alice.id, email: None, workspaces: vec![], issued_at: now_secs(), ttl_secs: 60 };
    let forged = auth::mint(&other, &req).expect("mint");
    let r = s.send(Method::GET, &path, None, &[("authorization", &format!("Bearer {forged}"))], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let expired = auth::mint(&key(), &TokenRequest { issued_at: now_secs() - 7200, ..req.clone() }).expect("mint");
    let r = s.send(Method::GET, &path, None, &[("authorization", &format!("Bearer {expired}"))], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body["message"].as_str().is_some_and(|m| m.contains("expired")), "{}", r.body);
    let r = s.send(Method::GET, &path, None, &[("authorization", "Basic YWxpY2U6cHc=")], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // 404: unknown id, an id that is not a UUID, an unknown route
    let r = s.send(Method::GET, &format!("/v1/jobs/{}", new_id()), Some(&alice), &[], None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = s.send(Method::GET, "/v1/jobs/not-a-uuid", Some(&alice), &[], None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.send(Method::GET, "/v1/nothing", Some(&alice), &[], None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    // 405
    let r = s.send(Method::PUT, &path, Some(&alice), &[], Some(&json!({}))).await;
    assert_eq!((r.status, r.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));

    // 415: no content type, the wrong one
    let r =
        s.send(Method::POST, "/v1/jobs", Some(&alice), &[("content-type", "text/plain")], Some(&job_body("x"))).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    let raw = s
        .http
        .post(format!("{}/v1/jobs", s.base))
        .bearer_auth(token_for(&alice))
        .body(job_body("x").to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // 413: over 1 MiB, declared or streamed
    let big = json!({"type": "BUILD", "project_name": "x", "metadata": {"blob": "y".repeat(1100 * 1024)}});
    let r = s.send(Method::POST, "/v1/jobs", Some(&alice), &[], Some(&big)).await;
    assert_eq!((r.status, r.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    assert_eq!(s.chunked_post(&alice, 140 * 8 * 1024).await, 413, "chunked, no Content-Length");
    assert_eq!(s.chunked_post(&alice, 1024).await, 400, "a small chunked body is read (and is not JSON)");

    // 400: malformed JSON, not an object, invalid fields (all reported), bad search parameters
    let r = s.send(Method::POST, "/v1/jobs", Some(&alice), &[("content-type", "application/json")], None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_json"));
    let broken = s
        .http
        .post(format!("{}/v1/jobs", s.base))
        .bearer_auth(token_for(&alice))
        .header("content-type", "application/json")
        .body("{\"type\": \"BUILD\",")
        .send()
        .await
        .expect("send");
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    let body: Value = broken.json().await.expect("json");
    assert_eq!(body["code"], json!("invalid_json"));
    let r = s.send(Method::POST, "/v1/jobs", Some(&alice), &[], Some(&json!([1]))).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_input"));
    let bad =
        json!({"type": "FLY", "project_name": "", "hostname": "-bad-", "status": "SUCCEEDED", "user_id": alice.id});
    let r = s.send(Method::POST, "/v1/jobs", Some(&alice), &[], Some(&bad)).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_input"));
    let mut codes = r.issue_codes();
    codes.sort_unstable();
    assert_eq!(codes, vec!["bad_transition", "blank", "invalid_hostname", "unknown_field", "unknown_type"]);
    for q in [
        "limit=0",
        "status=SLEEPING",
        "sort=name",
        "cursor=abc",
        "created_after=yesterday",
        "bogus=1",
        "metadata.cpuCores=many",
    ] {
        let r = s.send(Method::GET, &format!("/v1/jobs?{q}"), Some(&alice), &[], None).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_query"), "{q}: {}", r.body);
        assert!(!r.issue_codes().is_empty(), "{q}");
    }

    // 428 without If-Match; 412 with a stale one (and the current job), garbage matches nothing
    let patch = json!({"status": "RUNNING"});
    let r = s.send(Method::PATCH, &path, Some(&alice), &[], Some(&patch)).await;
    assert_eq!((r.status, r.code()), (StatusCode::PRECONDITION_REQUIRED, "precondition_required"));
    for stale in ["\"5\"", "W/\"0\"", "0", "garbage"] {
        let r = s.send(Method::PATCH, &path, Some(&alice), &[("if-match", stale)], Some(&patch)).await;
        assert_eq!((r.status, r.code()), (StatusCode::PRECONDITION_FAILED, "precondition_failed"), "{stale}");
        assert_eq!(r.body["current"], job, "{stale}");
        assert_eq!(r.header("etag"), Some("\"0\""));
    }
    // a stale If-Match with a patch that is malformed whatever the state: 400, not 412; with
    // one that is only wrong for the current state: 412 (the caller must refetch first)
    let r = s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"5\"")], Some(&json!({"status": 7}))).await;
    assert_eq!((r.status, r.issue_codes()), (StatusCode::BAD_REQUEST, vec!["invalid_type"]));
    let r = s
        .send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"5\"")], Some(&json!({"status": "SUCCEEDED"})))
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    // 409: an id that exists already
    let dup = json!({"id": job["id"], "type": "TEST", "project_name": "dup"});
    let r = s.send(Method::POST, "/v1/jobs", Some(&alice), &[], Some(&dup)).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "already_exists"));
    // 403: a workspace the caller does not claim
    let elsewhere = json!({"type": "TEST", "project_name": "x", "workspace_id": new_id()});
    let r = s.send(Method::POST, "/v1/jobs", Some(&alice), &[], Some(&elsewhere)).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "workspace_forbidden"));

    assert_eq!(s.job_count().await, before, "a rejected request wrote a job");
    let got = s.send(Method::GET, &path, Some(&alice), &[], None).await;
    assert_eq!(got.body, job, "a rejected request changed the job");
    s.finish().await;
}

/// The largest job the rules accept, with every character escaped as JSON allows, is a body the
/// API reads: 65,536 characters outside the BMP as `\uD83D\uDE00` (786 KB).
#[tokio::test]
async fn api_the_largest_valid_job_fits_the_body_limit() {
    let Some(s) = serve("api_largest", Options::default()).await else { return };
    let alice = User::new("alice", &[]);
    let body = json!({"type": "BUILD", "project_name": "big", "status": "RUNNING"});
    let r = s.send(Method::POST, "/v1/jobs", Some(&alice), &[], Some(&body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let path = format!("/v1/jobs/{}", r.body["id"].as_str().expect("id"));
    let escaped = format!(r#"{{"status":"FAILED","error_message":"{}"}}"#, "\\ud83d\\ude00".repeat(65_536));
    assert!(escaped.len() > 780_000);
    let resp = s
        .http
        .patch(format!("{}{path}", s.base))
        .bearer_auth(token_for(&alice))
        .header("content-type", "application/json")
        .header("if-match", "\"0\"")
        .body(escaped)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    let job: Value = resp.json().await.expect("json");
    assert_eq!(job["error_message"].as_str().map(|m| m.chars().count()), Some(65_536));
    assert!(job["error_message"].as_str().is_some_and(|m| m.chars().all(|c| c == '😀')));
    s.finish().await;
}

/// A page of large jobs stops at `PAGE_BYTES` of items (a Lambda response holds 6 MB, and API
/// Gateway's event can double a body by escaping it) and continues at its cursor: every job
/// once, none lost.
#[tokio::test]
async fn api_pages_of_large_jobs_fit_a_lambda_response() {
    let Some(s) = serve("api_large_pages", Options::default()).await else { return };
    let alice = User::new("alice", &[]);
    let quotes = "\"".repeat(65_536); // 131 KB of JSON in a response, 262 KB once escaped again
    let mut want = Vec::new();
    for i in 0..40 {
        let job =
            s.create(&alice, json!({"type": "BUILD", "project_name": format!("p{i}"), "status": "RUNNING"})).await;
        let path = format!("/v1/jobs/{}", job["id"].as_str().expect("id"));
        let failed = json!({"status": "FAILED", "error_message": quotes});
        let r = s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"0\"")], Some(&failed)).await;
        assert_eq!(r.status, StatusCode::OK);
        want.push(job["id"].as_str().expect("id").to_owned());
    }
    let raw = s
        .http
        .get(format!("{}/v1/jobs?limit=100&sort=created_at", s.base))
        .bearer_auth(token_for(&alice))
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    assert!(raw.len() <= jobs_lambda::api::PAGE_BYTES + 4096, "{} bytes", raw.len());
    let page: Value = serde_json::from_slice(&raw).expect("json");
    let n = page["items"].as_array().map_or(0, Vec::len);
    assert!((10..40).contains(&n) && page["next_cursor"].is_string(), "{n} items");
    let mut got = Vec::new();
    let mut cursor = String::new();
    for _ in 0..40 {
        let r =
            s.send(Method::GET, &format!("/v1/jobs?limit=100&sort=created_at{cursor}"), Some(&alice), &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        got.extend(
            r.body["items"].as_array().expect("items").iter().filter_map(|j| j["id"].as_str()).map(str::to_owned),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(got, want, "every job once, in order");
    s.finish().await;
}

#[tokio::test]
async fn api_concurrent_patches_exactly_one_wins() {
    let Some(s) = serve("api_locking", Options::default()).await else { return };
    let alice = User::new("alice", &[]);
    let job = s.create(&alice, job_body("race")).await;
    let path = format!("/v1/jobs/{}", job["id"].as_str().expect("id"));
    let s = Arc::new(s);
    const N: usize = 16;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::new();
    for i in 0..N {
        let (s, path, alice, barrier) = (s.clone(), path.clone(), alice.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"status": "RUNNING", "hostname": format!("worker-{i}.example.com")});
            barrier.wait().await;
            s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"0\"")], Some(&body)).await
        }));
    }
    let mut ok = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            StatusCode::OK => ok.push(r),
            StatusCode::PRECONDITION_FAILED => {
                assert_eq!(r.body["current"]["version"], json!(1));
                failed += 1;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!((ok.len(), failed), (1, N - 1));
    let got = s.send(Method::GET, &path, Some(&alice), &[], None).await;
    assert_eq!(got.body, ok[0].body, "the winner's write is the one stored");
    assert_eq!(got.body["version"], json!(1));

    // `If-Match: *` holds whatever the version: concurrent patches each apply (checked again
    // against the job as another left it), none is a 412. As many writers as the handler's
    // attempts: each lost attempt is another writer's success.
    const ANY: usize = 4;
    let barrier = Arc::new(tokio::sync::Barrier::new(ANY));
    let mut tasks = Vec::new();
    for i in 0..ANY {
        let (s, path, alice, barrier) = (s.clone(), path.clone(), alice.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"metadata": {format!("k{i}"): i}});
            barrier.wait().await;
            s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "*")], Some(&body)).await
        }));
    }
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let got = s.send(Method::GET, &path, Some(&alice), &[], None).await;
    assert_eq!(got.body["version"], json!(1 + ANY), "{}", got.body);
    for i in 0..ANY {
        assert_eq!(got.body["metadata"][format!("k{i}")], json!(i), "{}", got.body);
    }
    if let Ok(s) = Arc::try_unwrap(s) {
        s.finish().await;
    }
}

/// Lists every job id a caller's search returns (following cursors), and its source.
pub async fn search_ids(s: &Served, user: &User, query: &str) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut sources = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("/v1/jobs?limit=2&{query}");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let r = s.send(Method::GET, &q, Some(user), &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
        sources.push(r.body["source"].as_str().unwrap_or("").to_owned());
        ids.extend(
            r.body["items"].as_array().expect("items").iter().map(|j| j["id"].as_str().unwrap_or("").to_owned()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.sort();
    (ids, sources)
}

/// Two users sharing a workspace and an outsider, over every endpoint and the search path the
/// API is configured with.
pub async fn tenancy_matrix(s: &Served, expect_source: &str) {
    let ws = new_id();
    let alice = User::new("alice", &[ws]);
    let bob = User::new("bob", &[ws]);
    let eve = User::new("eve", &[]);
    let a_own = s.create(&alice, job_body("alice-own")).await;
    let b_own = s.create(&bob, job_body("bob-own")).await;
    let shared = s.create(&bob, json!({"type": "DEPLOY", "project_name": "shared", "workspace_id": ws})).await;
    let e_own = s.create(&eve, job_body("eve-own")).await;
    let id = |j: &Value| j["id"].as_str().unwrap_or("").to_owned();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let visible = [
        (&alice, sorted(vec![id(&a_own), id(&shared)])),
        (&bob, sorted(vec![id(&b_own), id(&shared)])),
        (&eve, vec![id(&e_own)]),
    ];
    s.refresh_search().await;
    for (user, want) in &visible {
        let (ids, sources) = search_ids(s, user, "").await;
        assert_eq!(&ids, want, "{} lists", user.email);
        assert!(sources.iter().all(|src| src == expect_source), "{} sources {sources:?}", user.email);
        // filters never widen the scope
        let (ids, _) = search_ids(s, user, &format!("workspace={ws}")).await;
        let want_ws: Vec<String> = want.iter().filter(|i| **i == id(&shared)).cloned().collect();
        assert_eq!(ids, want_ws, "{} by workspace", user.email);
        let (ids, _) = search_ids(s, user, &format!("user={}", bob.id)).await;
        let want_bob: Vec<String> = want.iter().filter(|i| **i == id(&b_own) || **i == id(&shared)).cloned().collect();
        assert_eq!(ids, want_bob, "{} by user", user.email);
        for job in [&a_own, &b_own, &shared, &e_own] {
            let path = format!("/v1/jobs/{}", id(job));
            let sees = want.contains(&id(job));
            let r = s.send(Method::GET, &path, Some(user), &[], None).await;
            assert_eq!(r.status == StatusCode::OK, sees, "{} GET {}", user.email, job["project_name"]);
            if !sees {
                assert_eq!(r.body, json!({"code": "not_found", "message": "no such job"}), "existence is not leaked");
                let p = s
                    .send(
                        Method::PATCH,
                        &path,
                        Some(user),
                        &[("if-match", "\"0\"")],
                        Some(&json!({"status": "RUNNING"})),
                    )
                    .await;
                assert_eq!(p.status, StatusCode::NOT_FOUND, "{} PATCH {}", user.email, job["project_name"]);
                let d = s.send(Method::DELETE, &path, Some(user), &[], None).await;
                assert_eq!(d.status, StatusCode::NOT_FOUND, "{} DELETE {}", user.email, job["project_name"]);
            }
        }
    }
    // alice may change bob's job in their workspace, eve may not create in the workspace
    let path = format!("/v1/jobs/{}", id(&shared));
    let p =
        s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"0\"")], Some(&json!({"status": "RUNNING"}))).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.body["user_id"], json!(bob.id), "the owner stays");
    let r = s
        .send(
            Method::POST,
            "/v1/jobs",
            Some(&eve),
            &[],
            Some(&json!({"type": "TEST", "project_name": "x", "workspace_id": ws})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // nothing the outsiders tried changed anything
    for (job, owner, version) in [(&a_own, &alice, 0), (&b_own, &bob, 0), (&e_own, &eve, 0), (&shared, &bob, 1)] {
        let r = s.send(Method::GET, &format!("/v1/jobs/{}", id(job)), Some(owner), &[], None).await;
        assert_eq!((r.status, r.body["version"].clone()), (StatusCode::OK, json!(version)), "{}", job["project_name"]);
    }
    // leaving the workspace (a token without it) hides its jobs again
    let alice_alone = User { workspaces: vec![], ..alice.clone() };
    let (ids, _) = search_ids(s, &alice_alone, "").await;
    assert_eq!(ids, vec![id(&a_own)]);
    let r = s.send(Method::GET, &path, Some(&alice_alone), &[], None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // the first request of each user created their users row; membership was recorded
    let rows = s
        .db()
        .query(
            "SELECT count(*)::bigint FROM workspace_member WHERE workspace_id = $1::uuid",
            &[jobs_core::sql::Param::Uuid(ws)],
        )
        .await
        .expect("members");
    assert_eq!(rows, vec![vec![Cell::Int(2)]]);
    for u in [&alice, &bob, &eve] {
        let rows = s
            .db()
            .query("SELECT email FROM users WHERE id = $1::uuid", &[jobs_core::sql::Param::Uuid(u.id)])
            .await
            .expect("users");
        assert_eq!(rows, vec![vec![Cell::Text(u.email.clone())]]);
    }
}

impl Served {
    /// POSTs `len` spaces as a chunked body (no Content-Length) over a raw connection and
    /// returns the status code.
    pub async fn chunked_post(&self, user: &User, len: usize) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /v1/jobs HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
            token_for(user)
        );
        conn.write_all(head.as_bytes()).await.expect("head");
        let chunk = vec![b' '; 8 * 1024];
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            let frame = [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
            if conn.write_all(&frame).await.is_err() {
                break; // the server answered and closed early
            }
            sent += n;
        }
        let _ = conn.write_all(b"0\r\n\r\n").await;
        let mut buf = Vec::new();
        let _ = conn.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// Makes what was written searchable (no-op on the database path).
    pub async fn refresh_search(&self) {
        if let Some(s) = &self.search {
            s.refresh().await;
        }
    }
}

jobs_tests::per_engine!(
    api_tenancy_matrix_engine_search,
    api_write_through_keeps_search_current,
    api_write_through_skips_an_engine_the_breaker_holds_down
);

/// While the circuit breaker is open (searches found the engine down), writes do not try the
/// engine either: each used to wait for the write-through's timeout against an engine known to
/// be down. The sync delivers them.
async fn api_write_through_skips_an_engine_the_breaker_holds_down(engine: &'static str) {
    let Some(sf) = SearchFixture::new(engine, "api_write_through_breaker").await else { return };
    sf.client.ensure_index().await.expect("index");
    let gate = Gate::start(&sf.url).await;
    gate.set_open(false);
    let opts = SearcherOptions {
        failure_threshold: 2,
        cool_down: std::time::Duration::from_secs(60),
        ..SearcherOptions::default()
    };
    let searcher = Searcher::new(Some(sf.client_via(&gate.url()).await), opts);
    let store = sf.pg.store.clone();
    let s = start(store, Options { searcher, ..Options::default() }, None, Some(sf)).await;
    let alice = User::new("alice", &[]);
    for _ in 0..2 {
        let r = s.send(Method::GET, "/v1/jobs", Some(&alice), &[], None).await;
        assert_eq!((r.status, r.body["source"].clone()), (StatusCode::OK, json!("database")));
    }
    let before = gate.connections();
    assert!(before >= 2, "the searches tried the engine");
    let job = s.create(&alice, job_body("while down")).await;
    assert_eq!(gate.connections(), before, "the write did not try an engine the breaker holds down");
    assert_eq!(s.store().sync_lag().await.expect("lag").dirty, 1, "left for the sync: {job}");
    s.finish().await;
}

/// The matrix on the engine path: every page must come from the engine.
async fn api_tenancy_matrix_engine_search(engine: &'static str) {
    let Some(s) = serve_engine(engine, "api_tenancy_engine", Options::default()).await else { return };
    tenancy_matrix(&s, "search").await;
    s.finish().await;
}

/// Creates, updates and deletes reach the engine with the request (no sync run) and mark the
/// row synced; with the engine unreachable the request still succeeds, within the timeout, and
/// the row stays dirty for the sync.
async fn api_write_through_keeps_search_current(engine: &'static str) {
    let Some(s) = serve_engine(engine, "api_write_through", Options::default()).await else { return };
    let sf = s.search.as_ref().expect("engine");
    let alice = User::new("alice", &[]);
    let job = s.create(&alice, job_body("wt")).await;
    let id: Uuid = job["id"].as_str().and_then(|i| i.parse().ok()).expect("id");
    let indexed = sf.client.get(id, None).await.expect("get").map(|(j, v)| (j.version, v));
    assert_eq!(indexed, Some((0, 0)), "created: in search at version 0");
    let cols = s.store().sync_columns(id).await.expect("sync columns").expect("row");
    assert_eq!((cols.version, cols.es_sync_version, cols.es_synced_at.is_some()), (0, 0, true));
    // The page's Sync column: each item's state, read from Postgres, beside the engine's answer.
    s.refresh_search().await;
    let r = s.send(Method::GET, "/v1/jobs?include=sync", Some(&alice), &[], None).await;
    assert_eq!((r.status, r.body["source"].clone()), (StatusCode::OK, json!("search")), "{}", r.body);
    let sync = &r.body["sync"][id.to_string()];
    assert_eq!(
        (sync["state"].clone(), sync["version"].clone(), sync["synced_version"].clone()),
        (json!("synced"), json!(0), json!(0))
    );
    let r = s.send(Method::GET, "/v1/jobs", Some(&alice), &[], None).await;
    assert!(r.body.get("sync").is_none(), "only when asked for: {}", r.body);
    let many = vec!["include=x"; 500].join("&");
    for bad in ["include=", "include=sync,sync", "include=Sync", "include=x&include=sync&include=y", &many] {
        let r = s.send(Method::GET, &format!("/v1/jobs?{bad}"), Some(&alice), &[], None).await;
        assert_eq!((r.status, r.issue_codes()), (StatusCode::BAD_REQUEST, vec!["invalid_query"]), "{bad}");
    }
    let r = s.send(Method::GET, "/v1/jobs?include=counts&status=NOPE", Some(&alice), &[], None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let paths: Vec<_> = r.body["errors"].as_array().expect("errors").iter().map(|e| e["path"].clone()).collect();
    assert_eq!(paths, vec![json!("include"), json!("status")], "every problem at once: {}", r.body);
    let path = format!("/v1/jobs/{id}");
    let p =
        s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"0\"")], Some(&json!({"status": "RUNNING"}))).await;
    assert_eq!(p.status, StatusCode::OK);
    let indexed = sf.client.get(id, None).await.expect("get").map(|(j, v)| (j.status, v));
    assert_eq!(indexed, Some((JobStatus::Running, 1)));
    assert_eq!(s.store().sync_lag().await.expect("lag").dirty, 0);
    let d = s.send(Method::DELETE, &path, Some(&alice), &[], None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert_eq!(sf.client.get(id, None).await.expect("get"), None, "deleted: gone from search");
    assert_eq!(s.store().sync_lag().await.expect("lag").dirty, 0, "the tombstone is synced too");
    s.finish().await;

    // An engine that cannot be reached: the write succeeds within the timeout, stays dirty.
    let timeout = std::time::Duration::from_millis(300);
    let Some(sf) = SearchFixture::new(engine, "api_write_through_down").await else { return };
    let dead_address = dead_url().await;
    let dead = SearchFixture::config(&dead_address, sf.client.alias());
    let searcher = Searcher::new(
        Some(jobs_lambda::search::SearchClient::new(dead).await.expect("client")),
        SearcherOptions::default(),
    );
    let store = sf.pg.store.clone();
    let s =
        start(store, Options { searcher, write_through_timeout: timeout, ..Options::default() }, None, Some(sf)).await;
    let started = std::time::Instant::now();
    let job = s.create(&alice, job_body("down")).await;
    assert!(started.elapsed() < timeout + std::time::Duration::from_millis(700), "{:?}", started.elapsed());
    let lag = s.store().sync_lag().await.expect("lag");
    assert_eq!(lag.dirty, 1, "left for the sync: {job}");
    // ... and searches fall back to Postgres, saying so
    let r = s.send(Method::GET, "/v1/jobs?include=sync", Some(&alice), &[], None).await;
    assert_eq!((r.status, r.body["source"].clone()), (StatusCode::OK, json!("database")));
    assert!(r.body["fallback_reason"].is_string());
    let address = dead_address.trim_start_matches("http://");
    assert!(!r.body.to_string().contains(address), "the engine's address stays in the log: {}", r.body);
    let id = job["id"].as_str().expect("id");
    assert_eq!(r.body["sync"][id]["state"], json!("pending"), "{}", r.body);
    let h = s.send(Method::GET, "/v1/health", None, &[], None).await;
    assert_eq!(
        (h.status, h.body["search"]["status"].clone(), h.body["sync"]["dirty"].clone()),
        (StatusCode::OK, json!("down"), json!(1))
    );
    assert_eq!(h.body["search"]["error"], json!("search engine unreachable"), "{}", h.body);
    s.finish().await;
}

/// A stale patch whose metadata only overflows because another writer's keys came first is
/// told it is stale (412 with the job as it is now), not that its patch is bad (400).
#[tokio::test]
async fn api_stale_patch_over_the_metadata_limit_is_412() {
    let Some(s) = serve("api_stale_meta", Options::default()).await else { return };
    let alice = User::new("alice", &[]);
    let job =
        s.create(&alice, json!({"type": "BUILD", "project_name": "m", "metadata": {"a": "x".repeat(20_000)}})).await;
    let path = format!("/v1/jobs/{}", job["id"].as_str().expect("id"));
    let patch = |key: &str, n: usize| json!({ "metadata": { key: "y".repeat(n) } });
    let first = s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"0\"")], Some(&patch("b", 10_000))).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.code());
    let stale = s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"0\"")], Some(&patch("c", 5_000))).await;
    assert_eq!(
        (stale.status, stale.body["current"]["version"].clone()),
        (StatusCode::PRECONDITION_FAILED, json!(1)),
        "{}",
        stale.code()
    );
    // Current, the same patch is over the limit: 400.
    let current = s.send(Method::PATCH, &path, Some(&alice), &[("if-match", "\"1\"")], Some(&patch("c", 5_000))).await;
    assert_eq!((current.status, current.issue_codes()), (StatusCode::BAD_REQUEST, vec!["metadata_too_large"]));
    s.finish().await;
}

/// A token's e-mail claim longer than `users.email` holds: the caller is recorded without it
/// (it was a 500 on every request of that user: Postgres refused the value, 22001).
#[tokio::test]
async fn api_token_email_too_long_to_store() {
    let Some(s) = serve("api_long_email", Options::default()).await else { return };
    let mut long = User::new("long", &[]);
    long.email = format!("{}@example.com", "x".repeat(300));
    let r = s.send(Method::POST, "/v1/jobs", Some(&long), &[], Some(&job_body("long"))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["user_email"], Value::Null);
    let r = s.send(Method::GET, "/v1/jobs", Some(&long), &[], None).await;
    assert_eq!((r.status, r.body["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    s.finish().await;
}

#[tokio::test]
async fn api_tenancy_matrix_database_search() {
    let Some(s) = serve("api_tenancy_db", Options::default()).await else { return };
    tenancy_matrix(&s, "database").await;
    s.finish().await;
}

#[tokio::test]
async fn api_search_filters_sorts_and_pages() {
    let Some(s) = serve("api_search", Options::default()).await else { return };
    let alice = User::new("alice", &[]);
    for i in 0..5 {
        let mut b = job_body(&format!("proj-{i}"));
        b["metadata"] = json!({"cpuCores": i + 1});
        s.create(&alice, b).await;
    }
    let r =
        s.send(Method::GET, "/v1/jobs?metadata.cpuCores.gte=3&sort=created_at&limit=10", Some(&alice), &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    let names: Vec<&str> =
        r.body["items"].as_array().expect("items").iter().filter_map(|j| j["project_name"].as_str()).collect();
    assert_eq!(names, vec!["proj-2", "proj-3", "proj-4"]);
    assert_eq!(r.body["next_cursor"], Value::Null);
    let r = s.send(Method::GET, "/v1/jobs?q=PROJ-1&status=QUEUED,RUNNING", Some(&alice), &[], None).await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1));
    let (ids, _) = search_ids(&s, &alice, "sort=-created_at").await;
    assert_eq!(ids.len(), 5);
    // a cursor is bound to its search
    let r = s.send(Method::GET, "/v1/jobs?limit=2", Some(&alice), &[], None).await;
    let c = r.body["next_cursor"].as_str().expect("cursor").to_owned();
    let r = s.send(Method::GET, &format!("/v1/jobs?limit=2&status=RUNNING&cursor={c}"), Some(&alice), &[], None).await;
    assert_eq!((r.status, r.issue_codes()), (StatusCode::BAD_REQUEST, vec!["invalid_cursor"]));
    // a cursor whose key was edited out of timestamp range: 400 on every path, not the database's
    // "timestamp out of range" as a 500 on the Postgres one
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = String::from_utf8(b64.decode(&c).expect("base64")).expect("utf-8");
    let parts: Vec<&str> = body.split(':').collect();
    let forged = b64.encode(format!("{}:-1000000000000000000:{}:{}", parts[0], parts[2], parts[3]));
    let r = s.send(Method::GET, &format!("/v1/jobs?limit=2&cursor={forged}"), Some(&alice), &[], None).await;
    assert_eq!((r.status, r.issue_codes()), (StatusCode::BAD_REQUEST, vec!["invalid_cursor"]), "{}", r.body);
    let _ = JobStatus::Queued;
    s.finish().await;
}

/// The API remembers which identities it recorded; when a workspace is deleted behind its back,
/// the next create in it records it again instead of failing.
#[tokio::test]
async fn api_recovers_when_a_workspace_vanishes() {
    let Some(s) = serve("api_ws_vanishes", Options::default()).await else { return };
    let ws = new_id();
    let alice = User::new("alice", &[ws]);
    let body = json!({"type": "BUILD", "project_name": "p", "workspace_id": ws});
    s.create(&alice, body.clone()).await;
    s.db()
        .execute("DELETE FROM workspace WHERE id = $1::uuid", &[jobs_core::sql::Param::Uuid(ws)])
        .await
        .expect("delete");
    let job = s.create(&alice, body).await;
    assert_eq!(job["workspace_id"], json!(ws));
    s.finish().await;
}

#[tokio::test]
async fn api_health_and_openapi() {
    let Some(s) = serve("api_health", Options::default()).await else { return };
    let r = s.send(Method::GET, "/v1/health", None, &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], json!("ok"));
    assert_eq!(r.body["database"]["status"], json!("up"));
    assert!(r.body["sync"]["dirty"].is_i64());
    let r = s.send(Method::GET, "/v1/openapi.json", None, &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    let file: Value = serde_json::from_str(jobs_lambda::api::openapi::DOCUMENT).expect("document");
    assert_eq!(r.body, file);
    assert_eq!(r.body["openapi"], json!("3.1.0"));
    s.finish().await;
}

#[tokio::test]
async fn api_health_reports_a_dead_database_as_503() {
    let db = PgExecutor::connect(&PgOptions::new("postgres://nobody@127.0.0.1:1/none")).expect("pool");
    let store = Arc::new(jobs_lambda::store::Store::new(db));
    let api = Arc::new(Api::new(store, Auth { key: Some(key()) }, Options::default()));
    let app = router(api);
    let resp = tower::ServiceExt::oneshot(
        app.clone(),
        axum::http::Request::get("/v1/health").body(axum::body::Body::empty()).expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["database"]["error"], json!("unavailable"), "{body}");
    // a request that needs the database is a 503 with a retry hint, never a 500
    let alice = User::new("alice", &[]);
    let req = axum::http::Request::get("/v1/jobs")
        .header("authorization", format!("Bearer {}", token_for(&alice)))
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = tower::ServiceExt::oneshot(app, req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    // What failed, without the driver's words (they named the host and the connection error).
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body, json!({"code": "unavailable", "message": "the database is unavailable"}));
}
