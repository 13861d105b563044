//! Create-job throughput, side by side in one run on the same Postgres: the store through the
//! direct driver (8 concurrent tasks), the store through the RDS Data API driver and the local
//! Data API server (8 tasks), and pgbench running a single-row INSERT into the same `job` table
//! (8 clients). Each gets a fresh schema. `DATABASE_URL` must point at a server this machine
//! runs (`./dev services start --engine none`); `./dev bench store` runs it.
//!
//! Prints a Markdown table: tps, p50 and p99 latency, and the ratio to pgbench.

use aws_credential_types::Credentials;
use aws_sdk_rdsdata::config::{BehaviorVersion, Region};
use jobs_core::query::Scope;
use jobs_core::validate;
use jobs_lambda::data_api::client::{DataApiConfig, RdsDataExecutor};
use jobs_lambda::data_api::server::{AppState, Config, router};
use jobs_lambda::db::Executor;
use jobs_lambda::migrate::{self, Options};
use jobs_lambda::pg::{PgExecutor, PgOptions};
use jobs_lambda::store::Store;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const TASKS: usize = 8;

fn seconds() -> u64 {
    std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15)
}

struct Result {
    name: &'static str,
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run_store<E: Executor + 'static>(name: &'static str, store: Arc<Store<E>>, scope: Scope) -> Result {
    let new = validate::create_from_json(br#"{"type":"BUILD","project_name":"bench","hostname":"ci-1.example.com","arch":"x86_64","metadata":{"cpuCores":4}}"#)
        .expect("valid create");
    let until = Instant::now() + Duration::from_secs(seconds());
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let (store, scope, new) = (store.clone(), scope.clone(), new.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                store.create(&scope, &new, Uuid::new_v4()).await.expect("create");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let start = Instant::now();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all.get(((all.len() as f64 - 1.0) * p) as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Result { name, tps: all.len() as f64 / elapsed, p50_ms: pct(0.5), p99_ms: pct(0.99) }
}

fn pgbench(url: &str, schema: &str, user: Uuid) -> Result {
    let script = std::env::temp_dir().join(format!("jobs-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "INSERT INTO {schema}.job (id, user_id, status, type, project_name, hostname, arch, metadata, created_at, updated_at) \
             VALUES (gen_random_uuid(), '{user}', 'QUEUED', 'BUILD', 'bench', 'ci-1.example.com', 'x86_64', '{{\"cpuCores\":4}}', now(), now());\n"
        ),
    )
    .expect("script");
    let bin = ["/usr/lib/postgresql/15/bin/pgbench", "pgbench"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("pgbench");
    // The triggers name their tables unqualified, as the app's sessions (search_path) expect.
    let out = Command::new(bin)
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .args(["-n", "-c", &TASKS.to_string(), "-j", "2", "-T", &seconds().to_string(), "-f"])
        .arg(&script)
        .arg(url)
        .output()
        .expect("pgbench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let avg = text
        .lines()
        .find_map(|l| l.strip_prefix("latency average = "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Result { name: "pgbench single-row INSERT (same table, 8 clients)", tps, p50_ms: avg, p99_ms: f64::NAN }
}

async fn fixture_schema(url: &str, tag: &str) -> (PgExecutor, String) {
    let schema = format!("bench_{tag}_{}", std::process::id());
    let db = PgExecutor::connect(&PgOptions::new(url).schema(&schema).max_connections(TASKS)).expect("pool");
    db.execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"), &[]).await.expect("drop");
    migrate::migrate(&db, &Options::schema(&schema)).await.expect("migrate");
    (db, schema)
}

#[tokio::main]
async fn main() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!(
            "DATABASE_URL is not set: run `./dev services start --engine none` and `eval \"$(./dev services env)\"`"
        );
        std::process::exit(2);
    };
    let user = Uuid::new_v4();
    let scope = Scope { user_id: user, workspace_ids: vec![] };
    let mut results = Vec::new();

    // pgbench first: the ceiling.
    let (db, schema) = fixture_schema(&url, "pgbench").await;
    Store::new(db.clone()).ensure_user(user, Some("bench@example.com")).await.expect("user");
    results.push(pgbench(&url, &schema, user));
    db.execute(&format!("DROP SCHEMA {schema} CASCADE"), &[]).await.expect("drop");

    let (db, schema) = fixture_schema(&url, "direct").await;
    let store = Arc::new(Store::new(db.clone()));
    store.ensure_user(user, Some("bench@example.com")).await.expect("user");
    results.push(run_store("store, direct driver (tokio-postgres, 8 tasks)", store, scope.clone()).await);
    db.execute(&format!("DROP SCHEMA {schema} CASCADE"), &[]).await.expect("drop");

    let (db, schema) = fixture_schema(&url, "dataapi").await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = AppState::new(Config::new(format!("{url}{sep}options=-c%20search_path%3D{schema}"))).expect("server");
    tokio::spawn(async move { axum::serve(listener, router(state)).await.ok() });
    let sdk = aws_sdk_rdsdata::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "static"))
        .endpoint_url(format!("http://{addr}"))
        .build();
    let database = url.split('?').next().unwrap_or(&url).rsplit('/').next().unwrap_or("postgres").to_owned();
    let exec = RdsDataExecutor::new(
        aws_sdk_rdsdata::Client::from_conf(sdk),
        DataApiConfig {
            resource_arn: "arn:aws:rds:us-east-1:1:cluster:local".into(),
            secret_arn: "arn:aws:secretsmanager:us-east-1:1:secret:local".into(),
            database,
            endpoint_url: None,
        },
    );
    let store = Arc::new(Store::new(exec));
    store.ensure_user(user, Some("bench@example.com")).await.expect("user");
    results.push(run_store("store, RDS Data API driver + local Data API server (8 tasks)", store, scope).await);
    db.execute(&format!("DROP SCHEMA {schema} CASCADE"), &[]).await.expect("drop");

    let ceiling = results[0].tps;
    println!("| {} s each, same server | tps | p50 ms | p99 ms | ratio to pgbench |", seconds());
    println!("|---|---|---|---|---|");
    for r in &results {
        let p50 =
            if r.name.starts_with("pgbench") { format!("{:.2} (avg)", r.p50_ms) } else { format!("{:.2}", r.p50_ms) };
        let p99 = if r.p99_ms.is_nan() { "-".to_owned() } else { format!("{:.2}", r.p99_ms) };
        println!("| {} | {:.0} | {p50} | {p99} | {:.2} |", r.name, r.tps, r.tps / ceiling);
    }
}
