//! The Lambda side of the API: real API Gateway (REST v1, HTTP API v2) and Function URL event
//! fixtures (`tests/data/*.json`) through `lambda_http`'s own event parsing into the very service
//! `jobs-api` runs, against real PostgreSQL; and the *built* `jobs-api` binary driven through a
//! local Lambda Runtime API, reaching Postgres through the RDS Data API driver and the local Data
//! API server.
//!
//! Without `DATABASE_URL` the tests skip with a message, except under `CI=true`, where they fail.

use jobs_lambda::api::auth::{self, Auth, Hs256Key, TokenRequest};
use jobs_lambda::api::config::Db;
use jobs_lambda::api::runtime_api::{Outcome, RuntimeApi};
use jobs_lambda::api::sync_fn::{SyncDeps, handle};
use jobs_lambda::api::{Api, Options, lambda, router};
use jobs_lambda::data_api::server::{AppState, Config};
use jobs_lambda::db::Executor;
use jobs_lambda::migrate;
use jobs_lambda::pg::{PgExecutor, PgOptions};
use jobs_lambda::search::{SearchClient, SearchConfig};
use jobs_lambda::store::Store;
use jobs_lambda::sync_run::SyncConfig;
use lambda_http::tower::ServiceExt as _;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

const SECRET: &[u8] = b"lambda-tests-secret-0123456789";

fn database_url(case: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "DATABASE_URL is not set and CI=true");
            eprintln!(
                "skipping {case}: DATABASE_URL is not set (./dev services start; eval \"$(./dev services env)\")"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn id() -> Uuid {
    static N: AtomicU32 = AtomicU32::new(1);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    Uuid::from_u64_pair(nanos, u64::from(N.fetch_add(1, Ordering::Relaxed)))
}

/// A migrated schema and a direct driver whose connections use it.
async fn schema(case: &str) -> Option<(String, String, PgExecutor)> {
    let url = database_url(case)?;
    let schema = unique("lam");
    let db = PgExecutor::connect(&PgOptions::new(url.clone()).schema(&schema).max_connections(4)).expect("pool");
    migrate::migrate(&db, &migrate::Options::schema(&schema)).await.expect("migrate");
    Some((url, schema, db))
}

async fn drop_schema(db: &PgExecutor, schema: &str) {
    let _ = db.execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"), &[]).await;
}

/// A fixture with its placeholders filled in.
fn fixture(name: &str, vars: &[(&str, String)]) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (k, v) in vars {
        text = text.replace(k, v);
    }
    text
}

struct Caller {
    sub: Uuid,
    email: String,
    ws1: Uuid,
    ws2: Uuid,
}

impl Caller {
    fn new() -> Caller {
        Caller { sub: id(), email: "dev@example.com".into(), ws1: id(), ws2: id() }
    }
    fn vars(&self, job: Option<&str>) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("__SUB__", self.sub.to_string()),
            ("__EMAIL__", self.email.clone()),
            ("__WS1__", self.ws1.to_string()),
            ("__WS2__", self.ws2.to_string()),
        ];
        if let Some(j) = job {
            v.push(("__JOB_ID__", j.to_owned()));
        }
        let key = Hs256Key::new(SECRET).expect("key");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let req = TokenRequest {
            user_id: self.sub,
            email: Some(self.email.clone()),
            workspaces: vec![self.ws1],
            issued_at: now,
            ttl_secs: 600,
        };
        v.push(("__TOKEN__", auth::mint(&key, &req).expect("mint")));
        v
    }
}

/// Sends one event through `lambda_http`'s parsing and the `jobs-api` service.
async fn call(service: &lambda::Service, event: &str) -> (u16, axum::http::HeaderMap, Value) {
    let req = lambda_http::request::from_str(event).expect("lambda_http reads the event");
    let resp = service.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
    (status, headers, body)
}

#[tokio::test]
async fn api_gateway_and_function_url_events_through_the_handler() {
    let Some((_, schema_name, db)) = schema("events").await else { return };
    let store = Arc::new(Store::new(db.clone()));
    let api = Arc::new(Api::new(store, Auth { key: Some(Hs256Key::new(SECRET).expect("key")) }, Options::default()));
    let service = lambda::service(router(api));
    let me = Caller::new();

    // HTTP API v2 with the JWT authorizer's claims (workspaces flattened to "[a b]")
    let (status, headers, job) = call(&service, &fixture("apigw-v2-jwt-create.json", &me.vars(None))).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(headers.get("etag").and_then(|v| v.to_str().ok()), Some("\"0\""));
    assert_eq!(job["user_id"], json!(me.sub));
    assert_eq!(job["user_email"], json!(me.email));
    assert_eq!(job["workspace_id"], json!(me.ws1));
    let job_id = job["id"].as_str().expect("id").to_owned();
    // Relative to the URL posted to (…/v1/jobs): right behind any stage or domain mapping.
    assert_eq!(headers.get("location").and_then(|v| v.to_str().ok()), Some(format!("jobs/{job_id}").as_str()));

    // a REST stage named like the API's first path segment: "/v1/jobs/..." is not "/v1" + "/jobs/..."
    let v1_stage = fixture("apigw-v1-cognito-get.json", &me.vars(Some(&job_id)))
        .replace("\"stage\": \"prod\"", "\"stage\": \"v1\"")
        .replace("\"path\": \"/prod/v1/jobs/", "\"path\": \"/v1/v1/jobs/");
    let (status, _, got) = call(&service, &v1_stage).await;
    assert_eq!((status, got["id"].clone()), (200, json!(job_id)), "{got}");

    // an HTTP API's payload format 1.0 on its $default route: a v1 event whose resource is
    // "$default", not a path (the route is the event's path)
    let default_route = fixture("apigw-v1-cognito-get.json", &me.vars(Some(&job_id)))
        .replace("\"resource\": \"/{proxy+}\"", "\"resource\": \"$default\"")
        .replace("\"resourcePath\": \"/{proxy+}\"", "\"resourcePath\": \"$default\"")
        .replace("\"stage\": \"prod\"", "\"stage\": \"$default\"")
        .replace("\"path\": \"/prod/v1/jobs/", "\"path\": \"/v1/jobs/");
    assert!(default_route.contains("\"resourcePath\": \"$default\""));
    let (status, _, got) = call(&service, &default_route).await;
    assert_eq!((status, got["id"].clone()), (200, json!(job_id)), "{got}");

    // a named stage ("/prod" in the path) and a query string
    let (status, _, page) = call(&service, &fixture("apigw-v2-jwt-stage-search.json", &me.vars(None))).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["id"], json!(job_id));
    assert_eq!(page["source"], json!("database"));

    // a create through a REST stage named v1
    let v1_create = fixture("apigw-v1-cognito-patch.json", &me.vars(Some(&job_id)))
        .replace("\"stage\": \"prod\"", "\"stage\": \"v1\"")
        .replace("\"httpMethod\": \"PATCH\"", "\"httpMethod\": \"POST\"")
        .replace(&format!("\"path\": \"/prod/v1/jobs/{job_id}\""), "\"path\": \"/v1/v1/jobs\"")
        .replace(&format!("\"path\": \"/v1/jobs/{job_id}\""), "\"path\": \"/v1/jobs\"")
        .replace(&format!("\"proxy\": \"v1/jobs/{job_id}\""), "\"proxy\": \"v1/jobs\"")
        .replace(r#""{\"status\":\"RUNNING\"}""#, r#""{\"type\":\"BUILD\",\"project_name\":\"v1-stage\"}""#);
    let (status, headers, made) = call(&service, &v1_create).await;
    assert_eq!(status, 201, "{made}");
    let location = headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(location, format!("jobs/{}", made["id"].as_str().expect("id")));

    // a REST API behind a custom domain whose mapping has a base path ("api"): API Gateway puts
    // the base path in the event's path too; the route comes from the resource and its
    // parameters (it was "/api/v1/jobs" to the router: 404)
    let domain_create = fixture("apigw-v1-cognito-patch.json", &me.vars(Some(&job_id)))
        .replace("\"httpMethod\": \"PATCH\"", "\"httpMethod\": \"POST\"")
        .replace(&format!("\"path\": \"/prod/v1/jobs/{job_id}\""), "\"path\": \"/api/v1/jobs\"")
        .replace(&format!("\"path\": \"/v1/jobs/{job_id}\""), "\"path\": \"/api/v1/jobs\"")
        .replace(&format!("\"proxy\": \"v1/jobs/{job_id}\""), "\"proxy\": \"v1/jobs\"")
        .replace(r#""{\"status\":\"RUNNING\"}""#, r#""{\"type\":\"BUILD\",\"project_name\":\"behind-a-domain\"}""#);
    assert!(domain_create.contains("/api/v1/jobs") && domain_create.contains("\"proxy\": \"v1/jobs\""));
    let (status, headers, made) = call(&service, &domain_create).await;
    assert_eq!(status, 201, "{made}");
    let location = headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(location, format!("jobs/{}", made["id"].as_str().expect("id")));

    // behind a named stage
    let staged = fixture("apigw-v2-jwt-create.json", &me.vars(None))
        .replace("\"rawPath\": \"/v1/jobs\"", "\"rawPath\": \"/prod/v1/jobs\"")
        .replace("\"path\": \"/v1/jobs\"", "\"path\": \"/prod/v1/jobs\"")
        .replace("\"stage\": \"$default\"", "\"stage\": \"prod\"");
    let (status, headers, other) = call(&service, &staged).await;
    assert_eq!(status, 201, "{other}");
    let location = headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(location, format!("jobs/{}", other["id"].as_str().expect("id")));

    // REST API v1 with a Cognito user pool authorizer ("custom:workspaces" as "a,b")
    let (status, _, got) = call(&service, &fixture("apigw-v1-cognito-get.json", &me.vars(Some(&job_id)))).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, job);
    let (status, headers, patched) =
        call(&service, &fixture("apigw-v1-cognito-patch.json", &me.vars(Some(&job_id)))).await;
    assert_eq!((status, patched["status"].clone()), (200, json!("RUNNING")), "{patched}");
    assert_eq!(headers.get("etag").and_then(|v| v.to_str().ok()), Some("\"1\""));
    // the same If-Match again: the version moved on
    let (status, _, err) = call(&service, &fixture("apigw-v1-cognito-patch.json", &me.vars(Some(&job_id)))).await;
    assert_eq!(
        (status, err["code"].clone(), err["current"]["version"].clone()),
        (412, json!("precondition_failed"), json!(1))
    );

    // someone else's claims see nothing of it
    let other = Caller::new();
    let (status, _, _) = call(&service, &fixture("apigw-v1-cognito-get.json", &other.vars(Some(&job_id)))).await;
    assert_eq!(status, 404);

    // a Function URL (no authorizer): a bearer token, or 401
    let (status, _, err) = call(&service, &fixture("function-url-no-auth.json", &me.vars(None))).await;
    assert_eq!((status, err["code"].clone()), (401, json!("unauthorized")));
    let (status, _, body) = call(&service, &fixture("function-url-delete.json", &me.vars(Some(&job_id)))).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _, _) = call(&service, &fixture("apigw-v1-cognito-get.json", &me.vars(Some(&job_id)))).await;
    assert_eq!(status, 404);

    // health needs no identity
    let (status, _, health) = call(&service, &fixture("apigw-v2-health.json", &[])).await;
    assert_eq!((status, health["database"]["status"].clone()), (200, json!("up")));
    drop_schema(&db, &schema_name).await;
}

/// Claims that are present but unusable are a 401, not a 500.
#[tokio::test]
async fn unusable_claims_are_401() {
    let Some((_, schema_name, db)) = schema("claims").await else { return };
    let api = Arc::new(Api::new(Arc::new(Store::new(db.clone())), Auth::default(), Options::default()));
    let service = lambda::service(router(api));
    let me = Caller::new();
    for (from, to) in
        [(me.sub.to_string(), "not-a-uuid".to_owned()), (format!("[{} {}]", me.ws1, me.ws2), "[nope]".to_owned())]
    {
        let event = fixture("apigw-v2-jwt-create.json", &me.vars(None)).replace(&from, &to);
        let (status, _, body) = call(&service, &event).await;
        assert_eq!((status, body["code"].clone()), (401, json!("unauthorized")), "{to}: {body}");
    }
    // no key configured: a bearer token alone is not an identity
    let (status, _, _) = call(&service, &fixture("function-url-delete.json", &me.vars(Some(&id().to_string())))).await;
    assert_eq!(status, 401);
    drop_schema(&db, &schema_name).await;
}

/// The local Data API server over `url`, its statements in `schema`.
async fn data_api_server(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = jobs_lambda::data_api::server::router(AppState::new(Config::new(url)).expect("state"));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{addr}")
}

fn database_name(url: &str) -> String {
    let config: tokio_postgres::Config = url.parse().expect("DATABASE_URL parses");
    config.get_dbname().or(config.get_user()).unwrap_or("postgres").to_owned()
}

/// A built function binary running against a local Runtime API; killed on drop.
pub struct Function {
    pub child: Child,
    pub runtime: RuntimeApi,
    pub started: Instant,
    /// What the function wrote on stdout so far, line by line (also passed on to ours).
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `argv` (the binary, or a wrapper such as `qemu-aarch64` and then the binary) the way
/// Lambda does: the Runtime API address and function settings in the environment, plus `env`;
/// nothing else of ours is inherited.
pub async fn start_function(argv: &[String], name: &str, env: &[(&str, String)]) -> Function {
    let runtime = RuntimeApi::start().await.expect("runtime api");
    let (binary, args) = argv.split_first().expect("a program");
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_RUNTIME_API", runtime.host())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {binary}: {e}"));
    let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    if let Some(out) = child.stdout.take() {
        let lines = stdout.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                println!("{line}");
                if let Ok(mut l) = lines.lock() {
                    l.push(line);
                }
            }
        });
    }
    Function { child, runtime, started, stdout }
}

/// The API Gateway response document a function returned.
fn http_response(outcome: Outcome) -> (u16, Value) {
    let Outcome::Response(bytes) = outcome else { panic!("expected a response, got {outcome:?}") };
    let doc: Value = serde_json::from_slice(&bytes).expect("response document");
    let status = doc["statusCode"].as_u64().expect("statusCode") as u16;
    let body = match doc["body"].as_str() {
        Some(b) if !b.is_empty() => serde_json::from_str(b).expect("JSON body"),
        _ => Value::Null,
    };
    (status, body)
}

#[tokio::test]
async fn built_jobs_api_binary_through_the_runtime_api_and_the_data_api() {
    let Some((url, schema_name, db)) = schema("runtime_api").await else { return };
    jobs_api_binary(&[env!("CARGO_BIN_EXE_jobs-api").to_owned()], &[], &url, &schema_name, &db).await;
    drop_schema(&db, &schema_name).await;
}

/// Extra environment variables for a function.
type FunctionEnv = Vec<(&'static str, String)>;

/// The arm64 release build (`./dev lambda-build`, what gets deployed) under `qemu-aarch64`:
/// `JOBS_LAMBDA_ARM64_DIR` names the directory holding `<name>/bootstrap` (scripts/test.sh sets
/// it when that build exists). Without it the test skips: the build takes minutes. Under CI it
/// fails, unless the run opted out with JOBS_TEST_ARM64=0.
fn arm64_function(case: &str, name: &str) -> Option<(Vec<String>, FunctionEnv)> {
    let Some(dir) = std::env::var_os("JOBS_LAMBDA_ARM64_DIR") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true") || std::env::var("JOBS_TEST_ARM64").as_deref() == Ok("0"),
            "JOBS_LAMBDA_ARM64_DIR is not set and CI=true (JOBS_TEST_ARM64=0 opts out)"
        );
        eprintln!("skipping {case}: JOBS_LAMBDA_ARM64_DIR is not set (./dev lambda-build; scripts/test.sh sets it)");
        return None;
    };
    let bootstrap = std::path::Path::new(&dir).join(name).join("bootstrap");
    assert!(bootstrap.is_file(), "{} is missing", bootstrap.display());
    let qemu = std::env::var("JOBS_QEMU_AARCH64").unwrap_or_else(|_| "qemu-aarch64".into());
    let sysroot = std::env::var("JOBS_AARCH64_SYSROOT").unwrap_or_else(|_| "/usr/aarch64-linux-gnu".into());
    Some((vec![qemu, bootstrap.display().to_string()], vec![("QEMU_LD_PREFIX", sysroot)]))
}

#[tokio::test]
async fn arm64_jobs_api_binary_under_qemu() {
    let Some((argv, env)) = arm64_function("arm64_api", "jobs-api") else { return };
    let Some((url, schema_name, db)) = schema("arm64_api").await else { return };
    jobs_api_binary(&argv, &env, &url, &schema_name, &db).await;
    drop_schema(&db, &schema_name).await;
}

/// The built `jobs-api` (run as `argv`) through the Runtime API, reaching Postgres through the
/// Data API driver and the local Data API server: create (HTTP API v2 with JWT claims), a bad
/// event, get (REST v1 with Cognito claims), health.
async fn jobs_api_binary(argv: &[String], extra: &[(&str, String)], url: &str, schema_name: &str, db: &PgExecutor) {
    let endpoint = data_api_server(url, schema_name).await;
    let mut env = vec![
        ("JOBS_DB_CLUSTER_ARN", "arn:aws:rds:us-east-1:123456789012:cluster:local".to_owned()),
        ("JOBS_DB_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:local".into()),
        ("JOBS_DB_NAME", database_name(url)),
        ("AWS_ENDPOINT_URL_RDS_DATA", endpoint),
    ];
    env.extend(extra.iter().cloned());
    let f = start_function(argv, "jobs-api", &env).await;
    let me = Caller::new();
    let timeout = Duration::from_secs(20);

    let (status, job) = http_response(
        f.runtime.invoke(fixture("apigw-v2-jwt-create.json", &me.vars(None)), timeout).await.expect("invoke"),
    );
    let first = f.started.elapsed();
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_str().expect("id").to_owned();
    eprintln!(
        "jobs-api: first poll {:?} after start, first response {first:?}",
        f.runtime.first_poll().map(|t| t.duration_since(f.started))
    );

    // an event that is no HTTP event at all: reported to the Runtime API as an error, and the
    // function keeps serving
    let outcome = f.runtime.invoke(r#"{"detail-type": "Scheduled Event"}"#, timeout).await.expect("invoke");
    assert!(matches!(outcome, Outcome::Error { .. }), "{outcome:?}");

    let (status, got) = http_response(
        f.runtime.invoke(fixture("apigw-v1-cognito-get.json", &me.vars(Some(&job_id))), timeout).await.expect("invoke"),
    );
    assert_eq!((status, got), (200, job.clone()));
    let (status, health) =
        http_response(f.runtime.invoke(fixture("apigw-v2-health.json", &[]), timeout).await.expect("invoke"));
    assert_eq!((status, health["database"]["status"].clone()), (200, json!("up")), "{health}");
    // the row is in Postgres, written through the Data API
    let rows = db
        .query("SELECT project_name FROM job WHERE id = $1::uuid", &[jobs_core::sql::Param::Text(job_id)])
        .await
        .expect("query");
    assert_eq!(rows, vec![vec![jobs_lambda::db::Cell::Text("lambda-v2".into())]]);
    eprintln!("{}: 4 invocations in {:?}", argv.join(" "), f.started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// jobs-sync

/// The engine for the sync tests: `SEARCH_URL` (what `./dev test` exports), else skip (fail
/// under `CI=true`).
fn search_url(case: &str) -> Option<String> {
    match std::env::var("SEARCH_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "SEARCH_URL is not set and CI=true");
            eprintln!("skipping {case}: SEARCH_URL is not set (./dev services start; eval \"$(./dev services env)\")");
            None
        }
    }
}

async fn search_client(url: &str, alias: &str) -> SearchClient {
    let cfg = SearchConfig::new(url).expect("search url").alias(alias).replicas(0);
    SearchClient::new(cfg).await.expect("search client")
}

async fn drop_indexes(client: &SearchClient) {
    if let Ok(versions) = client.versions().await {
        for (_, index) in versions {
            let _ = client.delete_index(&index).await;
        }
    }
    let _ = client.delete_template().await;
}

/// Three dirty jobs of one user.
async fn dirty_jobs(db: &PgExecutor) -> Vec<Uuid> {
    let store = Store::new(db.clone());
    let user = id();
    store.ensure_user(user, None).await.expect("user");
    let scope = jobs_lambda::store::Scope { user_id: user, workspace_ids: vec![] };
    let mut ids = Vec::new();
    for i in 0..3 {
        let new =
            jobs_core::validate::create(&json!({"type": "TEST", "project_name": format!("sync-{i}")})).expect("valid");
        ids.push(store.create(&scope, &new, id()).await.expect("create").id);
    }
    ids
}

fn context(deadline_in: Duration) -> lambda_runtime::Context {
    let mut ctx = lambda_runtime::Context::default();
    ctx.request_id = "test".into();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    ctx.deadline = now + deadline_in.as_millis() as u64;
    ctx
}

#[tokio::test]
async fn sync_events_through_the_handler() {
    let Some(url) = search_url("sync_events") else { return };
    let Some((_, schema_name, db)) = schema("sync_events").await else { return };
    let ids = dirty_jobs(&db).await;
    let client = search_client(&url, &schema_name).await;
    let deps =
        SyncDeps { store: Store::new(Db::Pg(db.clone())), client: Some(client.clone()), config: SyncConfig::default() };
    let scheduled: Value = serde_json::from_str(&fixture("eventbridge-scheduled.json", &[])).expect("fixture");

    let doc = handle(&deps, LambdaEvent::new(scheduled.clone(), context(Duration::from_secs(30)))).await.expect("run");
    assert_eq!(doc["trigger"]["kind"], json!("event_bridge"));
    assert_eq!(doc["trigger"]["detail_type"], json!("Scheduled Event"));
    assert_eq!(
        (doc["summary"]["stopped"].clone(), doc["summary"]["marked"].clone()),
        (json!("clean"), json!(3)),
        "{doc}"
    );
    assert_eq!(doc["summary"]["lag"]["dirty"], json!(0));
    for id in &ids {
        assert!(client.get(*id, None).await.expect("get").is_some(), "{id} indexed");
    }
    // EventBridge Scheduler's free-form input, nothing left to do
    let input: Value = serde_json::from_str(&fixture("scheduler-input.json", &[])).expect("fixture");
    let doc = handle(&deps, LambdaEvent::new(input, context(Duration::from_secs(30)))).await.expect("run");
    assert_eq!((doc["trigger"]["kind"].clone(), doc["summary"]["claimed"].clone()), (json!("input"), json!(0)));
    // the remaining time is respected: a deadline inside the margin leaves no budget
    let doc =
        handle(&deps, LambdaEvent::new(scheduled.clone(), context(Duration::from_millis(500)))).await.expect("run");
    assert_eq!(doc["budget_ms"], json!(0));

    // failures: a bad event is not retryable, an engine that cannot be reached is
    let err =
        handle(&deps, LambdaEvent::new(json!("go"), context(Duration::from_secs(5)))).await.expect_err("bad event");
    assert_eq!(lambda_runtime::Diagnostic::from(err).error_type, "NonRetryable.InvalidEvent");
    dirty_jobs(&db).await;
    let dead = SyncDeps {
        store: Store::new(Db::Pg(db.clone())),
        client: Some(search_client("http://127.0.0.1:1", &schema_name).await),
        config: SyncConfig::default(),
    };
    let err =
        handle(&dead, LambdaEvent::new(scheduled, context(Duration::from_secs(10)))).await.expect_err("engine down");
    assert!(err.retryable());
    assert_eq!(lambda_runtime::Diagnostic::from(err).error_type, "Retryable.Unavailable");
    drop_indexes(&client).await;
    drop_schema(&db, &schema_name).await;
}

#[tokio::test]
async fn built_jobs_sync_binary_through_the_runtime_api() {
    let Some(url) = search_url("runtime_api_sync") else { return };
    jobs_sync_binary("runtime_api_sync", &url, &[env!("CARGO_BIN_EXE_jobs-sync").to_owned()], &[]).await;
}

/// The same on Elasticsearch (`SEARCH_URL` is OpenSearch under `./dev test`).
#[tokio::test]
async fn built_jobs_sync_binary_on_elasticsearch() {
    let Some(url) = std::env::var("ELASTICSEARCH_URL").ok().filter(|u| !u.trim().is_empty()) else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "ELASTICSEARCH_URL is not set and CI=true");
        eprintln!("skipping built_jobs_sync_binary_on_elasticsearch: ELASTICSEARCH_URL is not set");
        return;
    };
    jobs_sync_binary("runtime_api_sync_es", &url, &[env!("CARGO_BIN_EXE_jobs-sync").to_owned()], &[]).await;
}

/// A backlog larger than one invocation can send: the built `jobs-sync` answers before its
/// deadline (the Runtime API here, as Lambda, takes no answer after it), the run stopped at its
/// budget with every batch it started recorded, and no lease left behind.
#[tokio::test]
async fn built_jobs_sync_binary_answers_before_its_deadline() {
    let case = "runtime_api_sync_deadline";
    let Some(url) = search_url(case) else { return };
    let Some((db_url, schema_name, db)) = schema(case).await else { return };
    let user = id();
    Store::new(db.clone()).ensure_user(user, None).await.expect("user");
    let insert = format!(
        "INSERT INTO job (id, user_id, status, type, project_name) SELECT gen_random_uuid(), '{user}', \
         'QUEUED', 'BUILD', 'd' || i FROM generate_series(1, 20000) i"
    );
    db.execute(&insert, &[]).await.expect("20,000 dirty jobs");
    let sep = if db_url.contains('?') { '&' } else { '?' };
    let env = vec![
        ("DATABASE_URL", format!("{db_url}{sep}options=-c%20search_path%3D{schema_name}")),
        ("SEARCH_URL", url.clone()),
        ("SEARCH_ALIAS", schema_name.clone()),
        ("SEARCH_REPLICAS", "0".into()),
    ];
    // The index made first: its creation is not what the budget is about.
    let client = search_client(&url, &schema_name).await;
    client.ensure_index().await.expect("index");
    let f = start_function(&[env!("CARGO_BIN_EXE_jobs-sync").to_owned()], "jobs-sync", &env).await;
    // 6 s with the default 2 s margin: a 4 s budget, in batches of 10 (2,000 of them would
    // take several times that).
    let timeout = Duration::from_secs(6);
    let outcome = f.runtime.invoke(r#"{"batch_size": 10}"#, timeout).await.expect("an answer before the deadline");
    let Outcome::Response(bytes) = outcome else { panic!("expected a response, got {outcome:?}") };
    let doc: Value = serde_json::from_slice(&bytes).expect("summary");
    let s = &doc["summary"];
    assert_eq!(s["stopped"], json!("deadline"), "{doc}");
    let (claimed, marked) = (s["claimed"].as_u64().unwrap_or(0), s["marked"].as_u64().unwrap_or(u64::MAX));
    assert!(claimed > 0 && claimed < 20_000 && marked == claimed, "{doc}");
    let leased =
        db.query("SELECT count(*) FROM job_sync_queue WHERE claimed_until > now()", &[]).await.expect("leases");
    assert_eq!(leased, vec![vec![jobs_lambda::db::Cell::Int(0)]], "{doc}");
    drop(f);
    drop_indexes(&client).await;
    drop_schema(&db, &schema_name).await;
}

#[tokio::test]
async fn arm64_jobs_sync_binary_under_qemu() {
    let Some((argv, env)) = arm64_function("arm64_sync", "jobs-sync") else { return };
    let Some(url) = search_url("arm64_sync") else { return };
    jobs_sync_binary("arm64_sync", &url, &argv, &env).await;
}

/// The built `jobs-sync` (run as `argv`) through the Runtime API: a scheduled event indexes three
/// dirty jobs; an event of the wrong shape is a non-retryable error.
async fn jobs_sync_binary(case: &str, url: &str, argv: &[String], extra: &[(&str, String)]) {
    let url = url.to_owned();
    let Some((db_url, schema_name, db)) = schema(case).await else { return };
    let ids = dirty_jobs(&db).await;
    let sep = if db_url.contains('?') { '&' } else { '?' };
    let mut env = vec![
        ("DATABASE_URL", format!("{db_url}{sep}options=-c%20search_path%3D{schema_name}")),
        ("SEARCH_URL", url.clone()),
        ("SEARCH_ALIAS", schema_name.clone()),
        ("SEARCH_REPLICAS", "0".into()),
        ("JOBS_METRICS_NAMESPACE", "jobs-test".into()),
    ];
    env.extend(extra.iter().cloned());
    let f = start_function(argv, "jobs-sync", &env).await;
    let timeout = Duration::from_secs(30);
    let outcome = f.runtime.invoke(fixture("eventbridge-scheduled.json", &[]), timeout).await.expect("invoke");
    eprintln!("{}: first answer {:?} after start", argv.join(" "), f.started.elapsed());
    let Outcome::Response(bytes) = outcome else { panic!("expected a response, got {outcome:?}") };
    let doc: Value = serde_json::from_slice(&bytes).expect("summary");
    assert_eq!(
        (doc["summary"]["stopped"].clone(), doc["summary"]["marked"].clone()),
        (json!("clean"), json!(3)),
        "{doc}"
    );
    let client = search_client(&url, &schema_name).await;
    for id in &ids {
        assert!(client.get(*id, None).await.expect("get").is_some(), "{id} indexed");
    }
    // The run's numbers as CloudWatch metrics: one embedded-metric line on stdout.
    // (Written before the answer; read by another thread, so looked for until it is there.)
    let emf_line = || f.stdout.lock().expect("stdout").iter().find(|l| l.contains("\"_aws\"")).cloned();
    let waited = Instant::now();
    while emf_line().is_none() && waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let emf = emf_line();
    let emf: Value = serde_json::from_str(&emf.expect("an embedded metric line on stdout")).expect("JSON");
    assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], json!("jobs-test"), "{emf}");
    assert_eq!(
        (emf["Function"].clone(), emf["Indexed"].clone(), emf["LagDirty"].clone()),
        (json!("jobs-sync"), json!(3), json!(0))
    );
    let outcome = f.runtime.invoke(r#"["not", "an", "event"]"#, timeout).await.expect("invoke");
    match outcome {
        Outcome::Error { body, .. } => {
            // the runtime reports the function's error type in the error document
            let doc: Value = serde_json::from_slice(&body).expect("error document");
            assert_eq!(doc["errorType"], json!("NonRetryable.InvalidEvent"), "{doc}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    drop(f);
    drop_indexes(&client).await;
    drop_schema(&db, &schema_name).await;
}
