//! Create-job throughput, side by side in one run on the same Postgres: the store through the
//! direct driver (8 concurrent tasks), the store through the RDS Data API driver and the local
//! Data API server (8 tasks), and pgbench running a single-row INSERT into the same `job` table
//! (8 clients). Each gets a fresh schema. `DATABASE_URL` must point at a server this machine
//! runs (`./dev services start --engine none`); `./dev bench store` runs it.
//!
//! The three run in rounds (`BENCH_ROUNDS`, 3), `BENCH_SECONDS` (15) split between them, the
//! order rotated each round: the load of a shared machine moves, and a fixed order would give
//! one contender the quiet minute. Prints a Markdown table: the median round's tps, p50 and p99
//! latency, and the median of the rounds' ratios to pgbench.

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

fn rounds() -> u64 {
    std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1)
}

struct Result {
    name: &'static str,
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run_store<E: Executor + 'static>(name: &'static str, store: Arc<Store<E>>, scope: Scope, secs: u64) -> Result {
    let new = validate::create_from_json(br#"{"type":"BUILD","project_name":"bench","hostname":"ci-1.example.com","arch":"x86_64","metadata":{"cpuCores":4}}"#)
        .expect("valid create");
    let until = Instant::now() + Duration::from_secs(secs);
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

fn pgbench(url: &str, schema: &str, user: Uuid, secs: u64) -> Result {
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
        .args(["-n", "-c", &TASKS.to_string(), "-j", "2", "-T", &secs.to_string(), "-f"])
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

    // pgbench, the ceiling, and the store through either driver, each in a schema of its own.
    let (pg_db, pg_schema) = fixture_schema(&url, "pgbench").await;
    Store::new(pg_db.clone()).ensure_user(user, Some("bench@example.com")).await.expect("user");
    let (direct_db, direct_schema) = fixture_schema(&url, "direct").await;
    let direct = Arc::new(Store::new(direct_db.clone()));
    direct.ensure_user(user, Some("bench@example.com")).await.expect("user");
    let (api_db, api_schema) = fixture_schema(&url, "dataapi").await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state =
        AppState::new(Config::new(format!("{url}{sep}options=-c%20search_path%3D{api_schema}"))).expect("server");
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
    let data_api = Arc::new(Store::new(exec));
    data_api.ensure_user(user, Some("bench@example.com")).await.expect("user");

    let secs = (seconds() / rounds()).max(2);
    let mut by: [Vec<Result>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..rounds() {
        for k in 0..3 {
            let which = (k + round as usize) % 3;
            let r = match which {
                0 => pgbench(&url, &pg_schema, user, secs),
                1 => {
                    run_store("store, direct driver (tokio-postgres, 8 tasks)", direct.clone(), scope.clone(), secs)
                        .await
                }
                _ => {
                    let name = "store, RDS Data API driver + local Data API server (8 tasks)";
                    run_store(name, data_api.clone(), scope.clone(), secs).await
                }
            };
            by[which].push(r);
        }
    }
    for (db, schema) in [(&pg_db, &pg_schema), (&direct_db, &direct_schema), (&api_db, &api_schema)] {
        db.execute(&format!("DROP SCHEMA {schema} CASCADE"), &[]).await.expect("drop");
    }

    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!(
        "| {} rounds of {secs} s each, order rotated, same server | tps (median round) | p50 ms | p99 ms | ratio to pgbench (median of the rounds') |",
        rounds()
    );
    println!("|---|---|---|---|---|");
    for runs in &by {
        let name = runs.first().map_or("", |r| r.name);
        let ratios = runs.iter().zip(&by[0]).map(|(r, c)| r.tps / c.tps).collect();
        let (tps, p50, p99) = (
            median(runs.iter().map(|r| r.tps).collect()),
            median(runs.iter().map(|r| r.p50_ms).collect()),
            median(runs.iter().map(|r| r.p99_ms).collect()),
        );
        let p50 = if name.starts_with("pgbench") { format!("{p50:.2} (avg)") } else { format!("{p50:.2}") };
        let p99 = if p99.is_nan() { "-".to_owned() } else { format!("{p99:.2}") };
        println!("| {name} | {tps:.0} | {p50} | {p99} | {:.2} |", median(ratios));
    }
}
