//! `jobsctl token`, `migrate`, `data-api` and `serve`, run as the built binary is run by people
//! and scripts (`./dev up`, the contract test): their output, exit codes and what they serve.
//!
//! Without `DATABASE_URL` the database cases skip with a message, except under `CI=true`.

use jobs_lambda::api::auth::{self, Hs256Key};
use jobs_lambda::data_api::client::{DataApiConfig, RdsDataExecutor};
use jobs_lambda::db::{Cell, Executor};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "jobsctl-api-tests-secret-0123";

fn jobsctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jobsctl"));
    c.env_remove("SEARCH_URL").env("JOBS_JWT_SECRET", SECRET).env("RUST_LOG", "warn");
    c
}

fn database_url(case: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "DATABASE_URL is not set and CI=true");
            eprintln!("skipping {case}: DATABASE_URL is not set");
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A long-running subcommand; killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits for its `... listening on http://ADDR` line.
fn start(mut cmd: Command) -> (Running, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn jobsctl");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(url) = line.split("listening on ").nth(1) {
            return (running, url.trim().to_owned());
        }
    }
    panic!("no listening line");
}

/// `JOBS_LOG_FORMAT=json`: each log line is one JSON object (the access line's fields at the
/// top level), for a log collector in front of `jobsctl serve`.
#[test]
fn serve_logs_json_lines_when_asked() {
    let Some(url) = database_url("serve_logs_json_lines_when_asked") else { return };
    let log = std::env::temp_dir().join(unique("serve-log"));
    let mut cmd = jobsctl();
    cmd.env("DATABASE_URL", url).env("JOBS_LOG_FORMAT", "json").env("RUST_LOG", "info").args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--no-sync",
        "--web-dir",
        "/nonexistent",
        "--pkg-dir",
        "/nonexistent",
    ]);
    cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(&log).expect("log file"));
    let mut child = cmd.spawn().expect("spawn jobsctl");
    let stdout = child.stdout.take().expect("stdout");
    let _server = Running(child);
    let base = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split("listening on ").nth(1).map(|u| u.trim().to_owned()))
        .expect("a listening line");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let status = rt.block_on(async { reqwest::get(format!("{base}/v1/jobs")).await.expect("answer").status() });
    assert_eq!(status, 401);
    let started = std::time::Instant::now();
    let access = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["target"] == "jobs::access");
        if let Some(v) = found {
            assert!(
                text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
                "every line JSON: {text}"
            );
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no access line: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (access["route"].clone(), access["status"].clone()),
        (serde_json::json!("/v1/jobs"), serde_json::json!(401))
    );
    let _ = std::fs::remove_file(&log);
}

#[test]
fn token_mints_what_serve_verifies() {
    let user = "6f1c1c34-0d6a-4c5e-9a57-5b0e3f3f2a11";
    let ws = "0a6e1f6c-3f7b-4b1e-8f7e-0e4f2b1a9c01";
    let out = jobsctl()
        .args(["token", "--user", user, "--email", "a@example.com", "--workspace", ws, "--ttl", "60"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let id = auth::verify(&Hs256Key::new(SECRET.as_bytes()).expect("key"), token.trim(), now).expect("valid token");
    assert_eq!(id.user_id.to_string(), user);
    assert_eq!(id.workspaces.iter().map(ToString::to_string).collect::<Vec<_>>(), vec![ws.to_owned()]);
    // no secret, or a bad user id: usage errors
    let out = jobsctl().env_remove("JOBS_JWT_SECRET").args(["token", "--user", user]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = jobsctl().args(["token", "--user", "alice"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn migrate_applies_once() {
    let Some(url) = database_url("migrate_applies_once") else { return };
    let schema = unique("jctl");
    let run = || jobsctl().env("DATABASE_URL", &url).args(["migrate", "--schema", &schema]).output().expect("run");
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied V1__init.sql"));
    let second = run();
    assert!(String::from_utf8_lossy(&second.stdout).contains("up to date"));
    let out = jobsctl().env("DATABASE_URL", &url).args(["migrate", "--schema", "bad;name"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    drop_schema(&url, &schema);
}

fn drop_schema(url: &str, schema: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let db = jobs_lambda::pg::PgExecutor::connect(&jobs_lambda::pg::PgOptions::new(url)).expect("pool");
        let _ = db.execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"), &[]).await;
    });
}

#[test]
fn data_api_serves_the_sdk() {
    let Some(url) = database_url("data_api_serves_the_sdk") else { return };
    let mut cmd = jobsctl();
    cmd.args(["data-api", "--listen", "127.0.0.1:0", "--database-url", &url]);
    let (_server, endpoint) = start(cmd);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("test", "test", None, None, "static"),
            ))
            .build();
        let config: tokio_postgres::Config = url.parse().expect("url");
        let exec = RdsDataExecutor::from_sdk_config(
            &sdk,
            DataApiConfig {
                resource_arn: "arn:aws:rds:us-east-1:123456789012:cluster:local".into(),
                secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:local".into(),
                database: config.get_dbname().unwrap_or("postgres").to_owned(),
                endpoint_url: Some(endpoint),
            },
        );
        let rows = exec.query("SELECT 1 + 1 AS two", &[]).await.expect("query through the Data API");
        assert_eq!(rows, vec![vec![Cell::Int(2)]]);
    });
}

#[test]
fn serve_answers_the_api_and_the_page() {
    let Some(url) = database_url("serve_answers") else { return };
    let schema = unique("jctl_serve");
    let out = jobsctl().env("DATABASE_URL", &url).args(["migrate", "--schema", &schema]).output().expect("migrate");
    assert!(out.status.success());
    let web = std::env::temp_dir().join(unique("web"));
    let pkg = web.join("pkg");
    std::fs::create_dir_all(&pkg).expect("dirs");
    std::fs::write(web.join("index.html"), "<!doctype html><title>jobs</title>").expect("index");
    std::fs::write(pkg.join("jobs_wasm_bg.wasm"), b"\0asm").expect("wasm");
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut cmd = jobsctl();
    cmd.env("DATABASE_URL", format!("{url}{sep}options=-c%20search_path%3D{schema}")).args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--web-dir",
        web.to_str().expect("path"),
        "--pkg-dir",
        pkg.to_str().expect("path"),
    ]);
    let (_server, base) = start(cmd);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
        let get = |path: &str| http.get(format!("{base}{path}")).send();
        let r = get("/v1/health").await.expect("health");
        assert_eq!(r.status(), 200);
        let r = get("/").await.expect("page");
        assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/html; charset=utf-8"));
        // The page holds a token: its own scripts only, no referrer.
        let csp = r.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(r.headers().get("referrer-policy").and_then(|v| v.to_str().ok()), Some("no-referrer"));
        assert!(r.text().await.expect("text").contains("<title>jobs</title>"));
        let r = get("/pkg/jobs_wasm_bg.wasm").await.expect("wasm");
        let header =
            |r: &reqwest::Response, name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(header(&r, "content-type").as_deref(), Some("application/wasm"));
        assert_eq!(header(&r, "x-content-type-options").as_deref(), Some("nosniff"));
        // A reload asks with the ETag and gets 304, not the module again.
        let etag = header(&r, "etag").expect("an etag");
        let ask = |tag: String| http.get(format!("{base}/pkg/jobs_wasm_bg.wasm")).header("if-none-match", tag).send();
        let again = ask(etag.clone()).await.expect("again");
        assert_eq!((again.status().as_u16(), header(&again, "etag")), (304, Some(etag.clone())));
        assert!(again.bytes().await.expect("body").is_empty());
        // Weak comparison: the same tag without its W/ matches too.
        let again = ask(etag.trim_start_matches("W/").to_owned()).await.expect("again");
        assert_eq!(again.status().as_u16(), 304);
        let other = ask("W/\"0-0\"".to_owned()).await.expect("other");
        assert_eq!(other.status().as_u16(), 200, "another version's tag gets the file");
        for missing in ["/nothing.js", "/pkg/nothing.wasm", "/../Cargo.toml", "/v1/nothing"] {
            let r = get(missing).await.expect("missing");
            assert_eq!(r.status(), 404, "{missing}");
        }
        let r = get("/v1/jobs").await.expect("jobs");
        assert_eq!(r.status(), 401, "the API needs a token");
    });
    let _ = std::fs::remove_dir_all(&web);
    drop_schema(&url, &schema);
}

#[test]
fn dead_letters_lists_and_requeues() {
    let Some(url) = database_url("dead_letters_lists_and_requeues") else { return };
    let schema = unique("jdl");
    let out = jobsctl().env("DATABASE_URL", &url).args(["migrate", "--schema", &schema]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scoped = format!("{url}{}options=-csearch_path%3D{schema}", if url.contains('?') { '&' } else { '?' });
    let run = |args: &[&str]| jobsctl().env("DATABASE_URL", &scoped).args(args).output().expect("run");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let out = run(&["dead-letters"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty() && text(&out.stderr).contains("0 dead-lettered"), "{}", text(&out.stderr));

    // Two dirty jobs; the sync gave up on one (as it does after the engine rejected it 3 times).
    let (a, b) = ("0190a1b2-0000-7000-8000-00000000000a", "0190a1b2-0000-7000-8000-00000000000b");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let db =
            jobs_lambda::pg::PgExecutor::connect(&jobs_lambda::pg::PgOptions::new(&url).schema(&schema)).expect("pool");
        for sql in [
            "INSERT INTO users (id, email) VALUES ('6f1c1c34-0d6a-4c5e-9a57-5b0e3f3f2a11', 'a@example.com')".to_owned(),
            format!(
                "INSERT INTO job (id, user_id, status, type, project_name) VALUES \
                 ('{a}', '6f1c1c34-0d6a-4c5e-9a57-5b0e3f3f2a11', 'QUEUED', 'BUILD', 'p'), \
                 ('{b}', '6f1c1c34-0d6a-4c5e-9a57-5b0e3f3f2a11', 'QUEUED', 'BUILD', 'q')"
            ),
            format!(
                "UPDATE job_sync_queue SET dead_lettered_at = now(), attempts = 3, \
                 last_error = '400: mapper_parsing_exception: failed to parse field [hostname]' WHERE job_id = '{a}'"
            ),
        ] {
            db.execute(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    });

    let out = run(&["dead-letters"]);
    assert_eq!(out.status.code(), Some(1), "dead letters are a failure for monitoring: {}", text(&out.stderr));
    let lines: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (lines[0]["id"].as_str(), lines[0]["attempts"].as_i64(), lines[0]["deleted"].as_bool()),
        (Some(a), Some(3), Some(false))
    );
    assert!(lines[0]["error"].as_str().is_some_and(|e| e.contains("mapper_parsing_exception")), "{lines:?}");
    assert!(text(&out.stderr).contains("1 dead-lettered (showing 1); 1 waiting to sync"), "{}", text(&out.stderr));

    // Usage errors: nothing changes.
    for args in [
        &["dead-letters", "--requeue"][..],
        &["dead-letters", a],
        &["dead-letters", "--all"],
        &["dead-letters", "--requeue", "--all", a],
    ] {
        assert_eq!(run(args).status.code(), Some(2), "{args:?}");
    }
    assert_eq!(run(&["dead-letters"]).status.code(), Some(1));

    let out = run(&["dead-letters", "--requeue", a]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("JSON");
    assert_eq!(v, serde_json::json!({"requeued": 1, "ids": [a]}));
    // Again: it is no longer dead-lettered, which is said (a typo looked like a success).
    let out = run(&["dead-letters", "--requeue", a]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("JSON");
    assert_eq!(v, serde_json::json!({"requeued": 0, "ids": [], "not_dead_lettered": [a]}));
    let out = run(&["dead-letters"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("0 dead-lettered (showing 0); 2 waiting to sync"), "{}", text(&out.stderr));
    // A database it cannot reach: 2, not the 1 that means "there are dead letters".
    let out = jobsctl().env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none").args(["dead-letters"]).output();
    assert_eq!(out.expect("run").status.code(), Some(2));
    drop_schema(&url, &schema);
}

/// Half of the Data API's pair beside DATABASE_URL: a configuration error (exit 2), not a
/// migration of the local database reported as a success.
#[test]
fn half_the_data_api_pair_is_refused() {
    let out = jobsctl()
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("JOBS_DB_CLUSTER_ARN", "arn:aws:rds:eu-west-1:123456789012:cluster:jobs")
        .env_remove("JOBS_DB_SECRET_ARN")
        .args(["migrate"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("go together"), "{err}");
}

/// Ctrl-C during `jobsctl sync --once`: it ends between batches (exit 130, `"stopped":
/// "interrupted"`), and no claim stays leased: a run right after takes every job left.
#[test]
fn sync_interrupted_leaves_no_lease() {
    let Some(url) = database_url("sync_interrupted_leaves_no_lease") else { return };
    let Some(engine) = std::env::var("OPENSEARCH_URL").or_else(|_| std::env::var("SEARCH_URL")).ok() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "no search engine and CI=true");
        eprintln!("skipping sync_interrupted_leaves_no_lease: no OPENSEARCH_URL / SEARCH_URL");
        return;
    };
    let schema = unique("jsi");
    let alias = schema.replace('_', "-");
    let out = jobsctl().env("DATABASE_URL", &url).args(["migrate", "--schema", &schema]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scoped = format!("{url}{}options=-csearch_path%3D{schema}", if url.contains('?') { '&' } else { '?' });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let db = rt.block_on(async {
        let db =
            jobs_lambda::pg::PgExecutor::connect(&jobs_lambda::pg::PgOptions::new(&url).schema(&schema)).expect("pool");
        for sql in [
            "INSERT INTO users (id, email) VALUES ('6f1c1c34-0d6a-4c5e-9a57-5b0e3f3f2a11', 'a@example.com')",
            "INSERT INTO job (id, user_id, status, type, project_name) SELECT \
             ('0190a1b2-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, \
             '6f1c1c34-0d6a-4c5e-9a57-5b0e3f3f2a11', 'QUEUED', 'BUILD', 'p' || i FROM generate_series(1, 3000) i",
        ] {
            db.execute(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        db
    });
    let sync = |args: &[&str]| {
        let mut c = jobsctl();
        c.env("DATABASE_URL", &scoped).env("SEARCH_URL", &engine).env("SEARCH_ALIAS", &alias).arg("sync").args(args);
        c
    };
    // Small batches, one at a time: the run takes seconds, and is interrupted in the middle.
    let child = sync(&["--once", "--batch-size", "10", "--workers", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let count = |sql: &str| match rt.block_on(db.query(sql, &[])).expect("count").first().and_then(|r| r.first()) {
        Some(Cell::Int(n)) => *n,
        other => panic!("{other:?}"),
    };
    // Interrupted once some jobs are synced (so the run is under way).
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while count("SELECT count(*) FROM job WHERE es_synced_at IS NOT NULL") < 100 {
        assert!(std::time::Instant::now() < until, "the sync did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the summary");
    assert_eq!(summary["stopped"], "interrupted", "{summary}");
    let synced = count("SELECT count(*) FROM job WHERE es_synced_at IS NOT NULL");
    assert!(synced < 3000, "interrupted before the end: {summary}");
    assert_eq!(count("SELECT count(*) FROM job_sync_queue WHERE claimed_until > now()"), 0, "no lease left");
    // The rest at once (leased claims would have been skipped for two minutes).
    let out = sync(&["--once"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(count("SELECT count(*) FROM job WHERE es_synced_at IS NOT NULL"), 3000);
    // The test's index (the first of its alias), deleted with curl, which the machine has.
    let _ =
        Command::new("curl").args(["-sS", "-o", "/dev/null", "-X", "DELETE", &format!("{engine}/{alias}-v1")]).status();
    drop_schema(&url, &schema);
}
