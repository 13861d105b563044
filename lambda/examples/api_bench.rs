//! The API and Lambda benchmarks behind `./dev bench api` (scripts/bench-api.sh). Not run in CI.
//!
//! ```text
//! api_bench create  --url URL --token T [--seconds 10] [--connections 8]
//!     create-job over HTTP (8 keep-alive connections), then the same creates through the store
//!     alone (8 tasks, DATABASE_URL + --schema), side by side: req/s, p50, p99 and the ratio
//! api_bench lag     --url URL --token T [--rate 20] [--seconds 20]
//!     change-to-searchable lag through the API: a steady stream of creates, each polled through
//!     `GET /v1/jobs` until the search engine (source=search) returns it
//! api_bench lambda  --bin PATH --event FILE [--invocations 20] [--data-api] [--env K=V]...
//!     a built function binary under a local Runtime API: time from process start to the first
//!     poll and to the first answered event, per-invocation latency, peak RSS (VmHWM)
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use jobs_lambda::api::runtime_api::{Outcome, RuntimeApi};
use jobs_lambda::clock;
use jobs_lambda::pg::{PgExecutor, PgOptions};
use jobs_lambda::store::{Scope, Store};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let mut opts: HashMap<String, Vec<String>> = HashMap::new();
    let mut flags = Vec::new();
    while let Some(a) = args.next() {
        let Some(name) = a.strip_prefix("--") else { return Err(format!("unexpected {a}").into()) };
        if name == "data-api" {
            flags.push(name.to_owned());
        } else if let Some((k, v)) = name.split_once('=') {
            opts.entry(k.to_owned()).or_default().push(v.to_owned());
        } else {
            let v = args.next().ok_or(format!("--{name} needs a value"))?;
            opts.entry(name.to_owned()).or_default().push(v);
        }
    }
    let get = |k: &str| opts.get(k).and_then(|v| v.last()).cloned();
    let num = |k: &str, d: u64| get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match mode.as_str() {
        "create" => rt.block_on(create(
            &get("url").ok_or("--url")?,
            &get("token").ok_or("--token")?,
            get("schema"),
            Duration::from_secs(num("seconds", 10)),
            num("connections", 8) as usize,
        )),
        "list" => rt.block_on(list(
            &get("url").ok_or("--url")?,
            &get("token").ok_or("--token")?,
            Duration::from_secs(num("seconds", 10)),
            num("connections", 4) as usize,
        )),
        "lag" => rt.block_on(lag(
            &get("url").ok_or("--url")?,
            &get("token").ok_or("--token")?,
            num("rate", 20),
            Duration::from_secs(num("seconds", 20)),
        )),
        "lambda" => rt.block_on(lambda(
            &get("bin").ok_or("--bin")?,
            &get("event").ok_or("--event")?,
            num("invocations", 20) as usize,
            flags.iter().any(|f| f == "data-api"),
            opts.get("env").cloned().unwrap_or_default(),
        )),
        _ => Err("usage: api_bench create|list|lag|lambda ... (see the source)".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn stats(mut micros: Vec<u64>, elapsed: Duration) -> Stats {
    micros.sort_unstable();
    let q = |p: f64| {
        if micros.is_empty() {
            return 0.0;
        }
        let i = ((micros.len() as f64 * p).ceil() as usize).clamp(1, micros.len()) - 1;
        micros[i] as f64 / 1000.0
    };
    Stats { n: micros.len(), per_sec: micros.len() as f64 / elapsed.as_secs_f64(), p50_ms: q(0.50), p99_ms: q(0.99) }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 connections

struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

async fn connect(url: &str) -> Result<Conn, Error> {
    let host = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let stream = tokio::net::TcpStream::connect(&host).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender, host })
}

impl Conn {
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), Error> {
        self.sender.ready().await?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

fn job_body(i: u64) -> String {
    json!({
        "type": "BUILD",
        "project_name": format!("bench-{}", i % 97),
        "hostname": format!("ci-{}.example.com", i % 13),
        "arch": "arm64",
        "metadata": {"cpuCores": 1 + i % 16, "memoryGb": 8, "buildDurationMs": i * 10}
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// create-job: HTTP vs store alone

async fn create(url: &str, token: &str, schema: Option<String>, secs: Duration, conns: usize) -> Result<(), Error> {
    // The two sides alternate in rounds of ROUND, so load from outside the benchmark (other
    // processes on a shared machine) weighs on both alike.
    const ROUND: Duration = Duration::from_secs(2);
    let db_url = std::env::var("DATABASE_URL")?;
    let mut pg = PgOptions::new(db_url).max_connections(conns);
    if let Some(s) = schema {
        pg = pg.schema(s);
    }
    let store = Arc::new(Store::new(PgExecutor::connect(&pg)?));
    let user = Uuid::new_v4();
    store.ensure_user(user, Some("bench@example.com")).await?;
    let scope = Arc::new(Scope { user_id: user, workspace_ids: vec![] });
    let counter = Arc::new(AtomicU64::new(0));
    let mut conns_http = Vec::new();
    for _ in 0..conns {
        conns_http.push(connect(url).await?);
    }
    // warm both paths up
    http_round(&mut conns_http, token, &counter, Duration::from_millis(500)).await?;
    store_round(&store, &scope, conns, &counter, Duration::from_millis(500)).await?;
    let (mut http_lat, mut store_lat) = (Vec::new(), Vec::new());
    let (mut http_time, mut store_time) = (Duration::ZERO, Duration::ZERO);
    let rounds = (secs.as_secs_f64() / ROUND.as_secs_f64()).ceil().max(1.0) as u32;
    for _ in 0..rounds {
        let t = Instant::now();
        http_lat.extend(http_round(&mut conns_http, token, &counter, ROUND).await?);
        http_time += t.elapsed();
        let t = Instant::now();
        store_lat.extend(store_round(&store, &scope, conns, &counter, ROUND).await?);
        store_time += t.elapsed();
    }
    let http = stats(http_lat, http_time);
    let direct = stats(store_lat, store_time);
    let total = ROUND * rounds;
    println!(
        "| create-job, {conns} connections/tasks, {}s each (alternating 2s rounds) | req/s | p50 ms | p99 ms |",
        total.as_secs()
    );
    println!("|---|---:|---:|---:|");
    println!("| HTTP (jobsctl serve, keep-alive) | {:.0} | {:.2} | {:.2} |", http.per_sec, http.p50_ms, http.p99_ms);
    println!(
        "| store alone (validate + insert) | {:.0} | {:.2} | {:.2} |",
        direct.per_sec, direct.p50_ms, direct.p99_ms
    );
    println!("| HTTP / store | {:.2} | | |", http.per_sec / direct.per_sec.max(1e-9));
    eprintln!("requests: http {} store {}", http.n, direct.n);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A page of 50 jobs, with and without include=sync (the page's Sync column)

async fn list(url: &str, token: &str, secs: Duration, conns: usize) -> Result<(), Error> {
    const ROUND: Duration = Duration::from_secs(2);
    let mut c = connect(url).await?;
    for i in 0..500 {
        let (status, body) = c.send("POST", "/v1/jobs", token, Some(job_body(i))).await?;
        if status != 201 {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)).into());
        }
    }
    let mut open = Vec::new();
    for _ in 0..conns {
        open.push(connect(url).await?);
    }
    let paths = ["/v1/jobs?limit=50", "/v1/jobs?limit=50&include=sync"];
    for p in paths {
        get_round(&mut open, token, p, Duration::from_millis(500)).await?;
    }
    let mut lat = [Vec::new(), Vec::new()];
    let mut time = [Duration::ZERO; 2];
    let rounds = (secs.as_secs_f64() / ROUND.as_secs_f64()).ceil().max(1.0) as u32;
    for _ in 0..rounds {
        for (k, p) in paths.iter().enumerate() {
            let t = Instant::now();
            lat[k].extend(get_round(&mut open, token, p, ROUND).await?);
            time[k] += t.elapsed();
        }
    }
    let [plain, with_sync] = [0, 1].map(|k| stats(std::mem::take(&mut lat[k]), time[k]));
    println!(
        "| GET a page of 50 (of 500 jobs), {conns} connections, {}s each (alternating 2s rounds) | req/s | p50 ms | p99 ms |",
        (ROUND * rounds).as_secs()
    );
    println!("|---|---:|---:|---:|");
    println!("| `GET /v1/jobs?limit=50` | {:.0} | {:.2} | {:.2} |", plain.per_sec, plain.p50_ms, plain.p99_ms);
    println!(
        "| `... &include=sync` (one more statement) | {:.0} | {:.2} | {:.2} |",
        with_sync.per_sec, with_sync.p50_ms, with_sync.p99_ms
    );
    println!(
        "| with / without | {:.2} | {:.2} | |",
        with_sync.per_sec / plain.per_sec.max(1e-9),
        with_sync.p50_ms / plain.p50_ms.max(1e-9)
    );
    Ok(())
}

/// GETs `path` over the open connections, one request at a time on each, for `d`.
async fn get_round(conns: &mut [Conn], token: &str, path: &str, d: Duration) -> Result<Vec<u64>, Error> {
    http_loop(conns, token, d, || ("GET", path.to_owned(), None, 200)).await
}

/// One round of creates over the open connections, one request at a time on each.
async fn http_round(conns: &mut [Conn], token: &str, counter: &Arc<AtomicU64>, d: Duration) -> Result<Vec<u64>, Error> {
    http_loop(conns, token, d, || {
        let i = counter.fetch_add(1, Ordering::Relaxed);
        ("POST", "/v1/jobs".to_owned(), Some(job_body(i)), 201)
    })
    .await
}

/// Requests over the open connections, one at a time on each, for `d`: `next` gives each one
/// (method, path, body) and the status it must answer. Their latencies, in µs.
async fn http_loop(
    conns: &mut [Conn],
    token: &str,
    d: Duration,
    next: impl Fn() -> (&'static str, String, Option<String>, u16),
) -> Result<Vec<u64>, Error> {
    let start = Instant::now();
    let next = &next;
    let loops = conns.iter_mut().map(|c| async move {
        let mut lat = Vec::new();
        while start.elapsed() < d {
            let (method, path, body, want) = next();
            let t = Instant::now();
            let (status, resp) = c.send(method, &path, token, body).await?;
            if status != want {
                return Err::<Vec<u64>, Error>(format!("{status}: {}", String::from_utf8_lossy(&resp)).into());
            }
            lat.push(t.elapsed().as_micros() as u64);
        }
        Ok(lat)
    });
    let mut all = Vec::new();
    for r in futures_util::future::join_all(loops).await {
        all.extend(r?);
    }
    Ok(all)
}

/// One round of the same creates through the store, `tasks` at a time.
async fn store_round(
    store: &Arc<Store<PgExecutor>>,
    scope: &Arc<Scope>,
    tasks: usize,
    counter: &Arc<AtomicU64>,
    d: Duration,
) -> Result<Vec<u64>, Error> {
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, scope, counter) = (store.clone(), scope.clone(), counter.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < d {
                let body = job_body(counter.fetch_add(1, Ordering::Relaxed));
                let t = Instant::now();
                let new = jobs_core::validate::create_from_json(body.as_bytes()).map_err(|e| format!("{e:?}"))?;
                store.create(&scope, &new, clock::new_job_id()).await?;
                lat.push(t.elapsed().as_micros() as u64);
            }
            Ok::<Vec<u64>, Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    Ok(all)
}

// ---------------------------------------------------------------------------------------------
// change-to-searchable lag

async fn lag(url: &str, token: &str, rate: u64, secs: Duration) -> Result<(), Error> {
    // One writer creates jobs at a steady rate; one poller searches every POLL for this run's
    // jobs (newest first) and notes when each first comes back from the engine. One search per
    // poll, whatever the number of jobs in flight, so the measuring does not load the engine.
    const POLL: Duration = Duration::from_millis(25);
    let run = Uuid::new_v4().simple().to_string();
    let sent: Arc<std::sync::Mutex<HashMap<String, (Instant, Duration)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (url, token, run, sent, done) = (url.to_owned(), token.to_owned(), run.clone(), sent.clone(), done.clone());
        tokio::spawn(async move {
            let mut c = connect(&url).await?;
            let mut seen: HashMap<String, Duration> = HashMap::new();
            let mut sources: HashMap<String, u64> = HashMap::new();
            let path = format!("/v1/jobs?q=lag-{run}-&sort=-created_at&limit=500");
            let mut finished_at = None;
            loop {
                let (status, body) = c.send("GET", &path, &token, None).await?;
                let page: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let source = page["source"].as_str().unwrap_or("").to_owned();
                *sources.entry(source.clone()).or_insert(0) += 1;
                if status == 200 && source == "search" {
                    let now = Instant::now();
                    let sent = sent.lock().map_err(|_| "poisoned")?;
                    for item in page["items"].as_array().into_iter().flatten() {
                        let Some(p) = item["project_name"].as_str() else { continue };
                        if let (Some((t, _)), false) = (sent.get(p), seen.contains_key(p)) {
                            seen.insert(p.to_owned(), now.duration_since(*t));
                        }
                    }
                }
                let total = sent.lock().map_err(|_| "poisoned")?.len();
                if done.load(Ordering::SeqCst) {
                    let since = *finished_at.get_or_insert_with(Instant::now);
                    if seen.len() >= total || since.elapsed() > Duration::from_secs(30) {
                        return Ok::<_, Error>((seen, sources, total));
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        })
    };
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut ticker = tokio::time::interval(interval);
    let mut writer = connect(url).await?;
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < secs {
        ticker.tick().await;
        i += 1;
        let project = format!("lag-{run}-{i}");
        let body = json!({"type": "TEST", "project_name": project}).to_string();
        let t = Instant::now();
        let (status, resp) = writer.send("POST", "/v1/jobs", token, Some(body)).await?;
        if status != 201 {
            return Err(format!("create: {status} {}", String::from_utf8_lossy(&resp)).into());
        }
        sent.lock().map_err(|_| "poisoned")?.insert(project, (t, t.elapsed()));
    }
    done.store(true, Ordering::SeqCst);
    let (seen, sources, total) = poller.await??;
    let lags: Vec<u64> = seen.values().map(|d| d.as_micros() as u64).collect();
    let writes: Vec<u64> = sent.lock().map_err(|_| "poisoned")?.values().map(|(_, d)| d.as_micros() as u64).collect();
    let l = stats(lags, secs);
    let w = stats(writes, secs);
    println!("| change-to-searchable through the API, {rate} creates/s for {}s | p50 ms | p99 ms |", secs.as_secs());
    println!("|---|---:|---:|");
    println!("| create answered (includes the write-through) | {:.1} | {:.1} |", w.p50_ms, w.p99_ms);
    println!("| searchable: first returned by GET /v1/jobs from the engine | {:.1} | {:.1} |", l.p50_ms, l.p99_ms);
    eprintln!("jobs: {total}, seen in search {} (searches by source {sources:?})", l.n);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A function binary under the local Runtime API

async fn lambda(bin: &str, event: &str, invocations: usize, data_api: bool, env: Vec<String>) -> Result<(), Error> {
    let event = std::fs::read_to_string(event)?;
    let runtime = RuntimeApi::start().await?;
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_RUNTIME_API", runtime.host())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for kv in &env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    if data_api {
        let url = std::env::var("DATABASE_URL")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state =
            jobs_lambda::data_api::server::AppState::new(jobs_lambda::data_api::server::Config::new(url.clone()))?;
        let app = jobs_lambda::data_api::server::router(state);
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        let config: tokio_postgres::Config = url.parse()?;
        let db = config.get_dbname().unwrap_or("jobs").to_owned();
        cmd.env("JOBS_DB_CLUSTER_ARN", "arn:aws:rds:us-east-1:123456789012:cluster:bench")
            .env("JOBS_DB_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench")
            .env("JOBS_DB_NAME", db)
            .env("AWS_ENDPOINT_URL_RDS_DATA", format!("http://{addr}"));
    }
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let mut lat = Vec::new();
    let mut first = None;
    let t0 = Instant::now();
    for _ in 0..invocations {
        let t = Instant::now();
        let outcome = runtime.invoke(event.clone(), Duration::from_secs(30)).await;
        if first.is_none() {
            first = Some(started.elapsed());
        }
        match outcome {
            Ok(Outcome::Response(_)) => lat.push(t.elapsed().as_micros() as u64),
            other => {
                let _ = child.kill();
                return Err(format!("invocation failed: {other:?}").into());
            }
        }
    }
    let total = t0.elapsed();
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let s = stats(lat, total);
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let name = std::path::Path::new(bin).file_name().and_then(|n| n.to_str()).unwrap_or(bin);
    println!(
        "| {name} | {:.1} MiB | {:.1} MiB | {:.0} ms | {:.0} ms | {:.2} | {:.2} |",
        size as f64 / 1048576.0,
        hwm as f64 / 1024.0,
        runtime.first_poll().map_or(0.0, |t| t.duration_since(started).as_secs_f64() * 1000.0),
        first.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        s.p50_ms,
        s.p99_ms
    );
    Ok(())
}
