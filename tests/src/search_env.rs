//! Harness for the search tests: the engines the environment names (`OPENSEARCH_URL`,
//! `ELASTICSEARCH_URL`), a fixture with a fresh Postgres schema and a fresh alias/index name per
//! test, a TCP gate to put an engine "down" or "slow" without touching it, a seeded generator
//! and fast inserts of generated jobs.
//!
//! The search tests are written once and run per engine with [`per_engine!`]; a missing engine
//! skips with a message, or fails under `CI=true`.

use crate::store_suite::{Fixture, database_url, unique_schema};
use jobs_core::model::Job;
use jobs_core::sql::Param;
use jobs_lambda::db::Executor;
use jobs_lambda::pg::{PgExecutor, PgOptions};
use jobs_lambda::search::{SearchClient, SearchConfig};
use jobs_lambda::store::Store;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The environment variable naming each engine's URL.
pub fn engine_var(engine: &str) -> &'static str {
    match engine {
        "opensearch" => "OPENSEARCH_URL",
        _ => "ELASTICSEARCH_URL",
    }
}

/// The engine's URL, or `None` (with a message) to skip. Under `CI=true` a missing engine is a
/// failure.
pub fn engine_url(engine: &str, case: &str) -> Option<String> {
    let var = engine_var(engine);
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{var} is not set and CI=true: start it with `./dev services start --engine both` and \
                 `eval \"$(./dev services env)\"`"
            );
            eprintln!(
                "skipping {case} on {engine}: {var} is not set (run `./dev services start --engine {engine}`, then \
                 `eval \"$(./dev services env)\"`)"
            );
            None
        }
    }
}

/// A fresh schema and a fresh alias on one engine.
pub struct SearchFixture {
    pub pg: Fixture<PgExecutor>,
    pub client: SearchClient,
    pub engine: &'static str,
    pub url: String,
}

impl SearchFixture {
    /// `None` to skip (see [`engine_url`], [`database_url`]).
    pub async fn new(engine: &'static str, case: &str) -> Option<SearchFixture> {
        let url = engine_url(engine, case)?;
        let db_url = database_url(case)?;
        let schema = unique_schema(case);
        let db = PgExecutor::connect(&PgOptions::new(db_url).schema(&schema).max_connections(8)).expect("pool");
        let pg = Fixture::new(db, &schema).await;
        // The schema name is unique and lowercase: reuse it for the alias.
        let client = SearchClient::new(Self::config(&url, &schema)).await.expect("search client");
        Some(SearchFixture { pg, client, engine, url })
    }

    /// The fixture's configuration for another URL (a gate in front of the engine, a dead port).
    pub fn config(url: &str, alias: &str) -> SearchConfig {
        SearchConfig::new(url).expect("search url").alias(alias).replicas(0).request_timeout(Duration::from_secs(30))
    }

    /// A client of the same alias through `url`.
    pub async fn client_via(&self, url: &str) -> SearchClient {
        SearchClient::new(Self::config(url, self.client.alias())).await.expect("search client")
    }

    pub fn store(&self) -> &Arc<Store<PgExecutor>> {
        &self.pg.store
    }

    /// Makes everything written so far searchable.
    pub async fn refresh(&self) {
        self.client.refresh(self.client.alias()).await.expect("refresh");
    }

    /// Drops the schema, the indexes and the template.
    pub async fn cleanup(self) {
        if let Ok(versions) = self.client.versions().await {
            for (_, index) in versions {
                let _ = self.client.delete_index(&index).await;
            }
        }
        let _ = self.client.delete_template().await;
        self.pg.cleanup().await;
    }
}

/// Expands to `mod opensearch { ... } mod elasticsearch { ... }` with one `#[tokio::test]` per
/// case; each case is `async fn case(engine: &'static str)` in the invoking module.
#[macro_export]
macro_rules! per_engine {
    ($($case:ident),+ $(,)?) => {
        mod opensearch {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case("opensearch").await
                }
            )+
        }
        mod elasticsearch {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case("elasticsearch").await
                }
            )+
        }
    };
}

// ---------------------------------------------------------------------------------------------
// A gate: a TCP forwarder in front of a real engine that can refuse or slow its traffic.

/// Forwards connections to an engine while open; while closed, accepts and drops them (and cuts
/// connections already open), as a dead engine behind a load balancer would.
pub struct Gate {
    addr: SocketAddr,
    state: Arc<GateState>,
    task: tokio::task::JoinHandle<()>,
}

struct GateState {
    open: AtomicBool,
    delay_ms: AtomicU64,
    connections: AtomicU64,
    /// Client writes seen (about one a request: a body may come in more than one).
    writes: AtomicU64,
    /// Client writes still passed before every connection is cut (negative: no limit).
    budget: AtomicI64,
}

impl Gate {
    /// A gate in front of `upstream` (`http://host:port`), open.
    pub async fn start(upstream: &str) -> Gate {
        let target = upstream.trim_end_matches('/').trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let addr = listener.local_addr().expect("gate addr");
        let state = Arc::new(GateState {
            open: AtomicBool::new(true),
            delay_ms: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            budget: AtomicI64::new(-1),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                if !st.open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let st = st.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(upstream) = TcpStream::connect(&target).await {
                        forward(client, upstream, st).await;
                    }
                });
            }
        });
        Gate { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_open(&self, open: bool) {
        self.state.open.store(open, Ordering::SeqCst);
    }

    /// Delays every request by `d` before passing it on.
    pub fn set_delay(&self, d: Duration) {
        self.state.delay_ms.store(u64::try_from(d.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Passes `n` more client writes (about one request each), then closes the gate.
    pub fn cut_after(&self, n: i64) {
        self.state.budget.store(n, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Client writes seen so far: at least one per request sent through the gate.
    pub fn writes(&self) -> u64 {
        self.state.writes.load(Ordering::SeqCst)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(client: TcpStream, upstream: TcpStream, st: Arc<GateState>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let up = {
        let st = st.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                st.writes.fetch_add(1, Ordering::SeqCst);
                let left = st.budget.load(Ordering::SeqCst);
                if left == 0 {
                    st.open.store(false, Ordering::SeqCst);
                    st.budget.store(-1, Ordering::SeqCst);
                } else if left > 0 {
                    st.budget.fetch_sub(1, Ordering::SeqCst);
                }
                let delay = st.delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                if !st.open.load(Ordering::SeqCst) || uw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match ur.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !st.open.load(Ordering::SeqCst) || cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either direction ending ends the connection (both halves drop).
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// A URL where nothing listens.
pub async fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------------
// Generated data

/// SplitMix64: small, seeded, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Inserts jobs as they are (ids, timestamps, versions and all), as a foreign writer or an
/// import would, in batches of one statement each. Users and workspaces must exist. Returns how
/// many rows were inserted.
pub async fn insert_jobs<E: Executor>(db: &E, jobs: &[Job]) -> u64 {
    const INSERT: &str = "INSERT INTO job (id, workspace_id, user_id, status, type, project_name, hostname, arch, \
        user_email, error_message, metadata, created_at, updated_at, completed_at, version) \
        SELECT x.id, x.workspace_id, x.user_id, x.status, x.type, x.project_name, x.hostname, x.arch, x.user_email, \
        x.error_message, x.metadata, x.created_at, x.updated_at, x.completed_at, x.version \
        FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, workspace_id uuid, user_id uuid, status text, type text, \
        project_name text, hostname text, arch text, user_email text, error_message text, metadata jsonb, \
        created_at timestamptz, updated_at timestamptz, completed_at timestamptz, version bigint)";
    let mut n = 0;
    for chunk in jobs.chunks(500) {
        let rows: Vec<Value> = chunk.iter().map(|j| serde_json::to_value(j).unwrap_or(json!({}))).collect();
        n += db.execute(INSERT, &[Param::Json(Value::Array(rows).to_string())]).await.expect("insert generated jobs");
    }
    n
}
