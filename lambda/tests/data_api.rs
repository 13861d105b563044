//! The local Data API server and the Data API driver, end to end: the server runs in-process on
//! 127.0.0.1:0 over real PostgreSQL (`DATABASE_URL`), and a real aws-sdk-rdsdata client (bare,
//! and inside `RdsDataExecutor`) talks to it over HTTP. Each test works in its own schema.
//!
//! Without `DATABASE_URL` the tests skip with a message, except under `CI=true`, where they fail.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_rdsdata::config::{BehaviorVersion, Region};
use aws_sdk_rdsdata::error::ProvideErrorMetadata;
use aws_sdk_rdsdata::types::{Field, RecordsFormatType, SqlParameter, TypeHint};
use jobs_core::sql::Param;
use jobs_lambda::data_api::client::{DataApiConfig, RdsDataExecutor};
use jobs_lambda::data_api::server::{AppState, Config, router};
use jobs_lambda::db::{Cell, DbError, Executor, Transaction};
use serde_json::{Value, json};

const RESOURCE_ARN: &str = "arn:aws:rds:us-east-1:123456789012:cluster:local";
const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:local";

fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("DATABASE_URL is not set: under CI=true the Data API tests need PostgreSQL")
        }
        _ => {
            eprintln!("skipping: DATABASE_URL is not set (start PostgreSQL with `./dev services start --engine none`)");
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A running server, an SDK client and a driver pointed at it, and a fresh schema.
struct Harness {
    state: AppState,
    sdk: aws_sdk_rdsdata::Client,
    exec: RdsDataExecutor,
    endpoint: String,
    schema: String,
}

async fn start(config: Config) -> (AppState, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let state = AppState::new(config).expect("server state");
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (state, format!("http://{addr}"))
}

/// What passes through a [`tap`]: calls per operation, and a text that, the first time a
/// request body holds it, gets its answer replaced by a 504 `DatabaseUnavailableException`
/// after the server has run it (a response lost on its way back, as in a failover).
#[derive(Default)]
struct Tap {
    calls: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    lose_answer_to: std::sync::Mutex<Option<String>>,
}

impl Tap {
    fn calls(&self, operation: &str) -> u32 {
        self.calls.lock().expect("tap").get(operation).copied().unwrap_or(0)
    }
}

/// The server behind a [`Tap`].
async fn start_tapped(config: Config, tap: std::sync::Arc<Tap>) -> (AppState, String) {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let state = AppState::new(config).expect("server state");
    let app = router(state.clone()).layer(axum::middleware::from_fn(
        move |req: Request<Body>, next: axum::middleware::Next| {
            let tap = tap.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
                *tap.calls.lock().expect("tap").entry(parts.uri.path().to_owned()).or_default() += 1;
                let lose = {
                    let mut marker = tap.lose_answer_to.lock().expect("tap");
                    let hit = marker.as_deref().is_some_and(|m| String::from_utf8_lossy(&bytes).contains(m));
                    if hit {
                        *marker = None;
                    }
                    hit
                };
                let answer = next.run(Request::from_parts(parts, Body::from(bytes))).await;
                if !lose {
                    return answer;
                }
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    [("x-amzn-errortype", "DatabaseUnavailableException"), ("content-type", "application/json")],
                    r#"{"message":"The database is unavailable (the answer was lost)"}"#,
                )
                    .into_response()
            }
        },
    ));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (state, format!("http://{addr}"))
}

fn sdk_client(endpoint: &str) -> aws_sdk_rdsdata::Client {
    let config = aws_sdk_rdsdata::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_rdsdata::Client::from_conf(config)
}

fn data_api_config(database: &str) -> DataApiConfig {
    DataApiConfig {
        resource_arn: RESOURCE_ARN.into(),
        secret_arn: SECRET_ARN.into(),
        database: database.into(),
        endpoint_url: None,
    }
}

fn database_name(url: &str) -> String {
    let config: tokio_postgres::Config = url.parse().expect("DATABASE_URL parses");
    config.get_dbname().or(config.get_user()).unwrap_or("postgres").to_owned()
}

async fn harness_with(configure: impl FnOnce(&mut Config)) -> Option<Harness> {
    let url = database_url()?;
    let mut config = Config::new(&url);
    configure(&mut config);
    let (state, endpoint) = start(config).await;
    let sdk = sdk_client(&endpoint);
    let exec = RdsDataExecutor::new(sdk.clone(), data_api_config(&database_name(&url)));
    let schema = unique("da");
    exec.execute(&format!("CREATE SCHEMA {schema}"), &[]).await.expect("create schema");
    Some(Harness { state, sdk, exec, endpoint, schema })
}

async fn harness() -> Option<Harness> {
    harness_with(|_| {}).await
}

impl Harness {
    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }

    fn execute_statement(
        &self,
        sql: &str,
    ) -> aws_sdk_rdsdata::operation::execute_statement::builders::ExecuteStatementFluentBuilder {
        self.sdk
            .execute_statement()
            .resource_arn(RESOURCE_ARN)
            .secret_arn(SECRET_ARN)
            .database(&self.exec.config().database)
            .sql(sql)
    }

    async fn drop_schema(self) {
        self.exec.execute(&format!("DROP SCHEMA {} CASCADE", self.schema), &[]).await.ok();
    }
}

fn sqlstate(result: Result<impl std::fmt::Debug, DbError>) -> Option<String> {
    match result {
        Err(DbError::Database { sqlstate, .. }) => sqlstate,
        other => panic!("expected a database error, got {other:?}"),
    }
}

fn string_param(name: &str, value: &str, hint: Option<TypeHint>) -> SqlParameter {
    SqlParameter::builder().name(name).value(Field::StringValue(value.into())).set_type_hint(hint).build()
}

fn nested_json(depth: usize, width: usize) -> Value {
    if depth == 0 {
        return json!({"leaf": "✓ ünïcödé", "n": 1.5, "ok": true, "none": null});
    }
    let children: Vec<Value> = (0..width).map(|_| nested_json(depth - 1, width)).collect();
    json!({ "depth": depth, "children": children })
}

#[tokio::test]
async fn typed_values_round_trip_through_the_driver() {
    let Some(h) = harness().await else { return };
    let t = h.table("typed");
    h.exec
        .execute(
            &format!(
                "CREATE TABLE {t} (id int8 PRIMARY KEY, flag bool, score float8, name text, ref uuid, doc jsonb, at timestamptz, missing text)"
            ),
            &[],
        )
        .await
        .expect("create table");
    let id = uuid::Uuid::parse_str("7f1c0d3e-5b7a-4e43-9a3d-2f8e6c1b9a01").expect("uuid");
    let doc = nested_json(4, 4);
    let doc_text = doc.to_string();
    assert!(doc_text.len() > 10_000, "the document is large: {}", doc_text.len());
    // 2024-02-29 12:34:56.123456 UTC
    let at = 1_709_210_096_123_456;
    let inserted = h
        .exec
        .execute(
            &format!(
                "INSERT INTO {t} (id, flag, score, name, ref, doc, at, missing) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                Param::Int(i64::MAX),
                Param::Bool(true),
                Param::Float(-0.125),
                Param::Text("Grüße, 世界 🚀 'quoted' $1 :name".into()),
                Param::Uuid(id),
                Param::Json(doc_text.clone()),
                Param::Timestamp(at),
                Param::Null,
            ],
        )
        .await
        .expect("insert");
    assert_eq!(inserted, 1);

    let rows = h
        .exec
        .query(
            &format!("SELECT id, flag, score, name, ref, doc, at, missing FROM {t} WHERE ref = $1 AND at = $2"),
            &[Param::Uuid(id), Param::Timestamp(at)],
        )
        .await
        .expect("select");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row[0], Cell::Int(i64::MAX));
    assert_eq!(row[1], Cell::Bool(true));
    assert_eq!(row[2], Cell::Float(-0.125));
    assert_eq!(row[3], Cell::Text("Grüße, 世界 🚀 'quoted' $1 :name".into()));
    assert_eq!(row[4], Cell::Text(id.to_string()));
    let Cell::Text(back) = &row[5] else { panic!("jsonb comes back as text: {:?}", row[5]) };
    assert_eq!(serde_json::from_str::<Value>(back).expect("json"), doc);
    // timestamptz: UTC text without an offset, microseconds kept.
    assert_eq!(row[6], Cell::Text("2024-02-29 12:34:56.123456".into()));
    assert_eq!(row[7], Cell::Null);

    // The same row through the bare SDK: the wire's typed fields.
    let out = h
        .execute_statement(&format!("SELECT id, flag, score, name, missing, at FROM {t} WHERE id = :id"))
        .parameters(SqlParameter::builder().name("id").value(Field::LongValue(i64::MAX)).build())
        .send()
        .await
        .expect("sdk select");
    let record = &out.records()[0];
    assert_eq!(record[0], Field::LongValue(i64::MAX));
    assert_eq!(record[1], Field::BooleanValue(true));
    assert_eq!(record[2], Field::DoubleValue(-0.125));
    assert_eq!(record[3], Field::StringValue("Grüße, 世界 🚀 'quoted' $1 :name".into()));
    assert_eq!(record[4], Field::IsNull(true));
    assert_eq!(record[5], Field::StringValue("2024-02-29 12:34:56.123456".into()));
    assert_eq!(out.number_of_records_updated(), 0);
    h.drop_schema().await;
}

#[tokio::test]
async fn placeholders_ignore_literals_and_casts_and_hints_pick_types() {
    let Some(h) = harness().await else { return };
    let out = h
        .execute_statement(
            "SELECT ':skip' AS literal, :n::int + 1 AS next, '{\"a\":7}'::jsonb->>'a' AS field, \
             :id AS id, pg_typeof(:id)::text AS id_type, pg_typeof(:doc)::text AS doc_type, \
             :when AS ts, :day AS day, :price AS price, :n AS again -- :not_a_param",
        )
        .parameters(SqlParameter::builder().name("n").value(Field::LongValue(41)).build())
        .parameters(string_param("id", "7f1c0d3e-5b7a-4e43-9a3d-2f8e6c1b9a01", Some(TypeHint::Uuid)))
        .parameters(string_param("doc", "{\"k\": [1, 2]}", Some(TypeHint::Json)))
        .parameters(string_param("when", "2001-02-03 04:05:06.7", Some(TypeHint::Timestamp)))
        .parameters(string_param("day", "2001-02-03", Some(TypeHint::Date)))
        .parameters(string_param("price", "12345.6700", Some(TypeHint::Decimal)))
        .send()
        .await
        .expect("select");
    let r = &out.records()[0];
    assert_eq!(r[0], Field::StringValue(":skip".into()));
    assert_eq!(r[1], Field::LongValue(42));
    assert_eq!(r[2], Field::StringValue("7".into()));
    assert_eq!(r[3], Field::StringValue("7f1c0d3e-5b7a-4e43-9a3d-2f8e6c1b9a01".into()));
    assert_eq!(r[4], Field::StringValue("uuid".into()));
    assert_eq!(r[5], Field::StringValue("jsonb".into()));
    assert_eq!(r[6], Field::StringValue("2001-02-03 04:05:06.7".into()));
    assert_eq!(r[7], Field::StringValue("2001-02-03".into()));
    assert_eq!(r[8], Field::StringValue("12345.6700".into()));
    assert_eq!(r[9], Field::LongValue(41));

    // A bad value for a hint is the database's kind of error.
    let err = h
        .execute_statement("SELECT :id")
        .parameters(string_param("id", "not-a-uuid", Some(TypeHint::Uuid)))
        .send()
        .await
        .expect_err("bad uuid");
    assert_eq!(err.code(), Some("DatabaseErrorException"));
    assert_eq!(err.message(), Some("ERROR: invalid input syntax for type uuid: \"not-a-uuid\"; SQLState: 22P02"));
    h.drop_schema().await;
}

#[tokio::test]
async fn arrays_come_back_as_array_values() {
    use aws_sdk_rdsdata::types::ArrayValue;
    let Some(h) = harness().await else { return };
    let out = h
        .execute_statement(
            "SELECT ARRAY[[1,2],[3,NULL]]::int8[], '{}'::int4[], ARRAY['a',NULL], ARRAY[true], ARRAY[0.5::float8]",
        )
        .send()
        .await
        .expect("select");
    let r = &out.records()[0];
    assert_eq!(
        r[0],
        Field::ArrayValue(ArrayValue::ArrayValues(vec![
            Some(ArrayValue::LongValues(vec![Some(1), Some(2)])),
            Some(ArrayValue::LongValues(vec![Some(3), None])),
        ]))
    );
    assert_eq!(r[1], Field::ArrayValue(ArrayValue::LongValues(vec![])));
    assert_eq!(r[2], Field::ArrayValue(ArrayValue::StringValues(vec![Some("a".into()), None])));
    assert_eq!(r[3], Field::ArrayValue(ArrayValue::BooleanValues(vec![Some(true)])));
    assert_eq!(r[4], Field::ArrayValue(ArrayValue::DoubleValues(vec![Some(0.5)])));
    h.drop_schema().await;
}

#[tokio::test]
async fn records_format_as_json() {
    let Some(h) = harness().await else { return };
    let out = h
        .execute_statement(
            "SELECT x AS id, 'n' || x AS name, x % 2 = 0 AS even, NULL::text AS nothing, 1.5::float8 AS half, \
             '{\"a\":1}'::jsonb AS doc, 10.50::numeric AS price FROM generate_series(1, 2) AS x",
        )
        .format_records_as(RecordsFormatType::Json)
        .include_result_metadata(true)
        .send()
        .await
        .expect("select");
    assert!(out.records().is_empty());
    assert!(out.column_metadata().is_empty(), "no columnMetadata with JSON records");
    let formatted: Value = serde_json::from_str(out.formatted_records().expect("formattedRecords")).expect("json");
    assert_eq!(
        formatted,
        json!([
            {"id": 1, "name": "n1", "even": false, "nothing": null, "half": 1.5, "doc": "{\"a\": 1}", "price": "10.50"},
            {"id": 2, "name": "n2", "even": true, "nothing": null, "half": 1.5, "doc": "{\"a\": 1}", "price": "10.50"},
        ])
    );
    h.drop_schema().await;
}

#[tokio::test]
async fn result_metadata_describes_columns() {
    let Some(h) = harness().await else { return };
    let t = h.table("meta");
    h.exec
        .execute(
            &format!("CREATE TABLE {t} (id bigserial PRIMARY KEY, name varchar(50) NOT NULL, price numeric(10,2))"),
            &[],
        )
        .await
        .expect("create");
    let out = h
        .execute_statement(&format!("SELECT id, name AS label, price, now() AS computed FROM {t}"))
        .include_result_metadata(true)
        .send()
        .await
        .expect("select");
    let meta = out.column_metadata();
    assert_eq!(meta.len(), 4);
    assert_eq!(meta[0].name(), Some("id"));
    assert_eq!(meta[0].type_name(), Some("int8"));
    assert_eq!(meta[0].r#type(), -5);
    assert!(meta[0].is_auto_increment());
    assert_eq!(meta[0].nullable(), 0);
    assert_eq!(meta[0].table_name(), Some("meta"));
    assert_eq!(meta[0].schema_name(), Some(h.schema.as_str()));
    assert_eq!(meta[1].label(), Some("label"));
    assert_eq!(meta[1].type_name(), Some("varchar"));
    assert_eq!(meta[1].precision(), 50);
    assert_eq!(meta[2].type_name(), Some("numeric"));
    assert_eq!((meta[2].precision(), meta[2].scale()), (10, 2));
    assert_eq!(meta[2].nullable(), 1);
    assert_eq!(meta[3].type_name(), Some("timestamptz"));
    assert_eq!(meta[3].table_name(), Some(""));
    assert_eq!(meta[3].nullable(), 2);
    h.drop_schema().await;
}

#[tokio::test]
async fn batch_execute_runs_every_parameter_set() {
    let Some(h) = harness().await else { return };
    let t = h.table("batch");
    h.exec.execute(&format!("CREATE TABLE {t} (id int4 PRIMARY KEY, ref uuid, note text)"), &[]).await.expect("create");
    let sets: Vec<Vec<SqlParameter>> = (1..=5)
        .map(|i| {
            vec![
                SqlParameter::builder().name("id").value(Field::LongValue(i)).build(),
                string_param("ref", &uuid::Uuid::from_u128(i.cast_unsigned().into()).to_string(), Some(TypeHint::Uuid)),
                if i == 3 {
                    SqlParameter::builder().name("note").value(Field::IsNull(true)).build()
                } else {
                    string_param("note", &format!("note {i}"), None)
                },
            ]
        })
        .collect();
    let out = h
        .sdk
        .batch_execute_statement()
        .resource_arn(RESOURCE_ARN)
        .secret_arn(SECRET_ARN)
        .database(&h.exec.config().database)
        .sql(format!("INSERT INTO {t} (id, ref, note) VALUES (:id, :ref, :note)"))
        .set_parameter_sets(Some(sets))
        .send()
        .await
        .expect("batch");
    assert_eq!(out.update_results().len(), 5);
    let rows = h.exec.query(&format!("SELECT count(*), count(note) FROM {t}"), &[]).await.expect("count");
    assert_eq!(rows, vec![vec![Cell::Int(5), Cell::Int(4)]]);

    // A failing set (duplicate key) fails the whole batch: nothing of it stays.
    let sets = vec![
        vec![SqlParameter::builder().name("id").value(Field::LongValue(6)).build()],
        vec![SqlParameter::builder().name("id").value(Field::LongValue(1)).build()],
    ];
    let err = h
        .sdk
        .batch_execute_statement()
        .resource_arn(RESOURCE_ARN)
        .secret_arn(SECRET_ARN)
        .sql(format!("INSERT INTO {t} (id) VALUES (:id)"))
        .set_parameter_sets(Some(sets))
        .send()
        .await
        .expect_err("duplicate");
    assert!(err.message().unwrap_or_default().ends_with("; SQLState: 23505"), "{:?}", err.message());
    let rows = h.exec.query(&format!("SELECT count(*) FROM {t}"), &[]).await.expect("count");
    assert_eq!(rows, vec![vec![Cell::Int(5)]]);
    h.drop_schema().await;
}

#[tokio::test]
async fn transactions_commit_and_roll_back() {
    let Some(h) = harness().await else { return };
    let t = h.table("tx");
    h.exec.execute(&format!("CREATE TABLE {t} (id int8 PRIMARY KEY)"), &[]).await.expect("create");
    let count = async |h: &Harness| h.exec.query(&format!("SELECT count(*) FROM {t}"), &[]).await.expect("count");

    let mut tx = h.exec.begin().await.expect("begin");
    assert_eq!(tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[Param::Int(1)]).await.expect("insert"), 1);
    assert_eq!(
        tx.query(&format!("SELECT count(*) FROM {t}"), &[]).await.expect("count in tx"),
        vec![vec![Cell::Int(1)]]
    );
    assert_eq!(count(&h).await, vec![vec![Cell::Int(0)]], "not visible before commit");
    tx.commit().await.expect("commit");
    assert_eq!(count(&h).await, vec![vec![Cell::Int(1)]]);

    let mut tx = h.exec.begin().await.expect("begin");
    tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[Param::Int(2)]).await.expect("insert");
    tx.rollback().await.expect("rollback");
    assert_eq!(count(&h).await, vec![vec![Cell::Int(1)]]);

    // An error aborts the transaction, as in PostgreSQL; the service ends it there (later calls
    // in it are TransactionNotFoundException), and the driver answers as PostgreSQL would.
    let mut tx = h.exec.begin().await.expect("begin");
    let id = tx.id().expect("an id").to_owned();
    tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[Param::Int(9)]).await.expect("insert");
    assert_eq!(
        sqlstate(tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[Param::Int(1)]).await).as_deref(),
        Some("23505")
    );
    assert_eq!(h.state.open_transactions(), 0, "the service ended it");
    let gone = h.execute_statement("SELECT 1").transaction_id(&id).send().await.expect_err("no such transaction");
    assert!(matches!(gone.as_service_error(), Some(e) if e.is_transaction_not_found_exception()), "{gone:?}");
    assert_eq!(sqlstate(tx.query("SELECT 1", &[]).await).as_deref(), Some("25P02"));
    tx.rollback().await.expect("rollback");
    assert_eq!(count(&h).await, vec![vec![Cell::Int(1)]], "the insert before the error is gone");
    let mut tx = h.exec.begin().await.expect("begin");
    let _ = tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[Param::Int(1)]).await;
    assert_eq!(sqlstate(tx.commit().await).as_deref(), Some("25P02"), "nothing to commit");

    // Dropping a transaction rolls it back in the background.
    let mut tx = h.exec.begin().await.expect("begin");
    tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[Param::Int(3)]).await.expect("insert");
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.state.open_transactions() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.state.open_transactions(), 0);
    assert_eq!(count(&h).await, vec![vec![Cell::Int(1)]]);
    h.drop_schema().await;
}

#[tokio::test]
async fn an_unknown_transaction_is_not_found() {
    let Some(h) = harness().await else { return };
    let err = h
        .execute_statement("SELECT 1")
        .transaction_id("no-such-transaction")
        .send()
        .await
        .expect_err("unknown transaction");
    let service = err.into_service_error();
    assert!(service.is_transaction_not_found_exception(), "{service:?}");
    let err = h
        .sdk
        .commit_transaction()
        .resource_arn(RESOURCE_ARN)
        .secret_arn(SECRET_ARN)
        .transaction_id("no-such-transaction")
        .send()
        .await
        .expect_err("unknown transaction");
    assert!(err.into_service_error().is_transaction_not_found_exception());
    h.drop_schema().await;
}

#[tokio::test]
async fn idle_transactions_are_rolled_back() {
    let Some(h) = harness_with(|c| c.transaction_timeout = Duration::from_millis(300)).await else { return };
    let t = h.table("idle");
    h.exec.execute(&format!("CREATE TABLE {t} (id int8)"), &[]).await.expect("create");
    let mut tx = h.exec.begin().await.expect("begin");
    tx.execute(&format!("INSERT INTO {t} VALUES (1)"), &[]).await.expect("insert");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(h.state.open_transactions(), 0, "reaped");
    let err = tx.execute("SELECT 1", &[]).await.expect_err("gone");
    assert!(err.to_string().contains("TransactionNotFoundException"), "{err}");
    assert_eq!(h.exec.query(&format!("SELECT count(*) FROM {t}"), &[]).await.expect("count"), vec![vec![Cell::Int(0)]]);
    h.drop_schema().await;
}

#[tokio::test]
async fn sql_errors_carry_their_sqlstate() {
    let Some(h) = harness().await else { return };
    let t = h.table("errors");
    h.exec.execute(&format!("CREATE TABLE {t} (id int8 PRIMARY KEY)"), &[]).await.expect("create");
    h.exec.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[Param::Int(1)]).await.expect("insert");
    let dup = h.exec.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[Param::Int(1)]).await;
    match &dup {
        Err(DbError::Database { sqlstate, message }) => {
            assert_eq!(sqlstate.as_deref(), Some("23505"));
            assert!(message.starts_with("duplicate key value violates unique constraint"), "{message}");
        }
        other => panic!("expected a unique violation, got {other:?}"),
    }
    assert_eq!(sqlstate(h.exec.query("SELEC 1", &[]).await).as_deref(), Some("42601"));
    assert_eq!(sqlstate(h.exec.query("SELECT * FROM no_such_table_here", &[]).await).as_deref(), Some("42P01"));

    // The wire format of the message, as the real service writes it.
    let err = h.execute_statement("SELEC 1").send().await.expect_err("syntax error");
    assert_eq!(err.code(), Some("DatabaseErrorException"));
    assert_eq!(err.message(), Some("ERROR: syntax error at or near \"SELEC\"; SQLState: 42601"));
    let raw = err.raw_response().expect("raw response");
    assert_eq!(raw.status().as_u16(), 400);
    assert_eq!(raw.headers().get("x-amzn-errortype"), Some("DatabaseErrorException"));
    h.drop_schema().await;
}

#[tokio::test]
async fn responses_over_one_mib_are_refused() {
    let Some(h) = harness().await else { return };
    let sql = "SELECT repeat('x', 1000) FROM generate_series(1, 1100)";
    let err = h.execute_statement(sql).send().await.expect_err("over 1 MiB");
    assert_eq!(err.code(), Some("BadRequestException"));
    assert_eq!(err.message(), Some("Database returned more than the allowed response size limit"));
    match h.exec.query(sql, &[]).await {
        // The driver reports the limit as SQLSTATE 54000 so the store can page.
        Err(DbError::Database { sqlstate: Some(state), message }) if state == jobs_lambda::db::RESPONSE_TOO_LARGE => {
            assert!(message.contains("response size limit"), "{message}")
        }
        other => panic!("expected the size limit, got {other:?}"),
    }
    // Just under the limit is fine.
    let rows = h.exec.query("SELECT repeat('x', 1000) FROM generate_series(1, 900)", &[]).await.expect("under 1 MiB");
    assert_eq!(rows.len(), 900);
    h.drop_schema().await;
}

#[tokio::test]
async fn unsupported_result_types_are_refused_like_the_real_service() {
    let Some(h) = harness().await else { return };
    let err = h.execute_statement("SELECT 'a'::\"char\"").send().await.expect_err("\"char\"");
    assert_eq!(err.code(), Some("UnsupportedResultException"));
    assert_eq!(err.message(), Some("The result contains the unsupported data type \"CHAR\"."));
    let err = h.execute_statement("SELECT 'pg_class'::regclass").send().await.expect_err("regclass");
    assert_eq!(err.message(), Some("The result contains the unsupported data type regclass."));
    // Selected as text they are fine.
    let out = h.execute_statement("SELECT 'pg_class'::regclass::text").send().await.expect("text");
    assert_eq!(out.records()[0][0], Field::StringValue("pg_class".into()));
    h.drop_schema().await;
}

#[tokio::test]
async fn strict_types_bind_strings_as_text_like_the_real_service() {
    let Some(h) = harness_with(|c| c.strict_types = true).await else { return };
    let t = h.table("strict");
    h.exec.execute(&format!("CREATE TABLE {t} (id uuid)"), &[]).await.expect("create");
    let sql = format!("SELECT count(*) FROM {t} WHERE id = :id");
    let unhinted = h
        .execute_statement(&sql)
        .parameters(string_param("id", "7f1c0d3e-5b7a-4e43-9a3d-2f8e6c1b9a01", None))
        .send()
        .await
        .expect_err("uuid = text");
    assert_eq!(unhinted.message(), Some("ERROR: operator does not exist: uuid = text; SQLState: 42883"));
    let hinted = h
        .execute_statement(&sql)
        .parameters(string_param("id", "7f1c0d3e-5b7a-4e43-9a3d-2f8e6c1b9a01", Some(TypeHint::Uuid)))
        .send()
        .await
        .expect("hinted");
    assert_eq!(hinted.records()[0][0], Field::LongValue(0));
    h.drop_schema().await;

    // By default the placeholder's inferred type is used instead.
    let Some(h) = harness().await else { return };
    let out = h
        .execute_statement(
            "SELECT count(*) FROM (SELECT '00000000-0000-0000-0000-000000000000'::uuid AS u) s WHERE u <> :id",
        )
        .parameters(string_param("id", "7f1c0d3e-5b7a-4e43-9a3d-2f8e6c1b9a01", None))
        .send()
        .await
        .expect("inferred");
    assert_eq!(out.records()[0][0], Field::LongValue(1));
    h.drop_schema().await;
}

#[tokio::test]
async fn long_statements_time_out_and_are_cancelled() {
    let Some(h) = harness_with(|c| c.statement_timeout = Duration::from_millis(300)).await else { return };
    let started = Instant::now();
    let result = h.exec.query("SELECT 1 FROM pg_sleep(10)", &[]).await;
    assert_eq!(sqlstate(result).as_deref(), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // The connection is usable again: the statement was cancelled, not left running.
    let rows = h.exec.query("SELECT 1", &[]).await.expect("after timeout");
    assert_eq!(rows, vec![vec![Cell::Int(1)]]);
    h.drop_schema().await;
}

/// A call whose answer is lost after it ran is not sent again: the SDK's standard retries
/// re-sent the INSERT, which then failed as a duplicate of the row it had just written (the API
/// answered 409 for a job it had created), and a COMMIT, which then "was not found".
#[tokio::test]
async fn a_call_that_may_have_run_is_not_sent_again() {
    let Some(url) = database_url() else { return };
    let tap = std::sync::Arc::new(Tap::default());
    let (_state, endpoint) = start_tapped(Config::new(&url), tap.clone()).await;
    let exec = RdsDataExecutor::new(sdk_client(&endpoint), data_api_config(&database_name(&url)));
    let schema = unique("da");
    exec.execute(&format!("CREATE SCHEMA {schema}"), &[]).await.expect("create schema");
    let t = format!("{schema}.once");
    exec.execute(&format!("CREATE TABLE {t} (id int8 PRIMARY KEY)"), &[]).await.expect("create");

    *tap.lose_answer_to.lock().expect("tap") = Some(format!("INSERT INTO {t}"));
    let before = tap.calls("/Execute");
    match exec.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[Param::Int(1)]).await {
        Err(DbError::Unavailable(message)) => assert!(message.contains("unavailable"), "{message}"),
        other => panic!("expected Unavailable (the INSERT may have run), got {other:?}"),
    }
    assert_eq!(tap.calls("/Execute") - before, 1, "the INSERT was sent again");
    let count = exec.query(&format!("SELECT count(*) FROM {t}"), &[]).await.expect("count");
    assert_eq!(count, vec![vec![Cell::Int(1)]], "it ran once");

    let mut tx = exec.begin().await.expect("begin");
    tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[Param::Int(2)]).await.expect("insert");
    let id = tx.id().expect("id").to_owned();
    *tap.lose_answer_to.lock().expect("tap") = Some(id);
    match tx.commit().await {
        Err(DbError::Unavailable(_)) => {}
        other => panic!("expected Unavailable (the COMMIT may have run), got {other:?}"),
    }
    assert_eq!(tap.calls("/CommitTransaction"), 1, "the COMMIT was sent again");
    let count = exec.query(&format!("SELECT count(*) FROM {t}"), &[]).await.expect("count");
    assert_eq!(count, vec![vec![Cell::Int(2)]], "it committed");
    exec.execute(&format!("DROP SCHEMA {schema} CASCADE"), &[]).await.ok();
}

/// A transaction whose statement failed is still rolled back on the service: it may not have
/// ended it (a timeout, the response limit), and an aborted PostgreSQL transaction keeps its
/// locks (a migration's advisory lock, its DDL's) until the service's idle timeout. The driver
/// used to forget the transaction's id at the first error, so neither `rollback` nor the drop
/// sent anything.
#[tokio::test]
async fn an_aborted_transaction_is_still_rolled_back() {
    let Some(url) = database_url() else { return };
    let tap = std::sync::Arc::new(Tap::default());
    let mut config = Config::new(&url);
    config.statement_timeout = Duration::from_millis(300);
    let (state, endpoint) = start_tapped(config, tap.clone()).await;
    let exec = RdsDataExecutor::new(sdk_client(&endpoint), data_api_config(&database_name(&url)));

    let mut tx = exec.begin().await.expect("begin");
    assert_eq!(sqlstate(tx.query("SELECT 1 FROM pg_sleep(10)", &[]).await).as_deref(), Some("57014"));
    assert_eq!(sqlstate(tx.query("SELECT 1", &[]).await).as_deref(), Some("25P02"), "aborted, as in PostgreSQL");
    tx.rollback().await.expect("a rollback of a transaction the service ended is not an error");
    assert_eq!(tap.calls("/RollbackTransaction"), 1);

    let mut tx = exec.begin().await.expect("begin");
    assert_eq!(sqlstate(tx.query("SELECT 1/0", &[]).await).as_deref(), Some("22012"));
    drop(tx);
    let until = Instant::now() + Duration::from_secs(5);
    while tap.calls("/RollbackTransaction") < 2 {
        assert!(Instant::now() < until, "the drop sent no rollback");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A COMMIT after the error is refused without a call; the drop then rolls back.
    let mut tx = exec.begin().await.expect("begin");
    assert_eq!(sqlstate(tx.query("SELECT 1/0", &[]).await).as_deref(), Some("22012"));
    assert_eq!(sqlstate(tx.commit().await).as_deref(), Some("25P02"));
    assert_eq!(tap.calls("/CommitTransaction"), 0);
    let until = Instant::now() + Duration::from_secs(5);
    while tap.calls("/RollbackTransaction") < 3 {
        assert!(Instant::now() < until, "the failed commit's drop sent no rollback");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state.open_transactions(), 0);
}

/// A batch cut short by the statement timeout leaves nothing open on the connection it ran on:
/// its own BEGIN had no ROLLBACK, and the pooled connection went back inside an aborted
/// transaction (every later call on it 25P02) or a live one (later writes never committed).
#[tokio::test]
async fn a_batch_cut_short_leaves_no_transaction_behind() {
    let Some(h) = harness_with(|c| {
        c.pool_size = 1;
        c.statement_timeout = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    let t = h.table("cut");
    h.exec.execute(&format!("CREATE TABLE {t} (id int8)"), &[]).await.expect("create");
    for sql in ["SELECT pg_sleep(:s)".to_owned(), format!("INSERT INTO {t} SELECT 1 FROM pg_sleep(:s)")] {
        let err = h
            .sdk
            .batch_execute_statement()
            .resource_arn(RESOURCE_ARN)
            .secret_arn(SECRET_ARN)
            .database(&h.exec.config().database)
            .sql(&sql)
            .set_parameter_sets(Some(vec![vec![
                SqlParameter::builder().name("s").value(Field::DoubleValue(2.0)).build(),
            ]]))
            .send()
            .await
            .expect_err("timed out");
        assert!(err.as_service_error().is_some_and(|e| e.is_statement_timeout_exception()), "{err:?}");
        h.exec.execute(&format!("INSERT INTO {t} VALUES (7)"), &[]).await.expect("the next call on the pool");
    }
    let rows = h.exec.query(&format!("SELECT count(*) FROM {t} WHERE id = 7"), &[]).await.expect("count");
    assert_eq!(rows, vec![vec![Cell::Int(2)]]);
    h.drop_schema().await;
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    // Nothing listens on port 1 (no DATABASE_URL needed).
    let (_state, endpoint) = start(Config::new("postgres://jobs@127.0.0.1:1/jobs")).await;
    let exec = RdsDataExecutor::new(sdk_client(&endpoint), data_api_config("jobs"));
    match exec.query("SELECT 1", &[]).await {
        Err(DbError::Unavailable(message)) => assert!(message.contains("unavailable"), "{message}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
}

/// Names of databases that do not exist are not kept: 32 of them used to fill the server's
/// registry for good, and every database not seen before was then refused.
#[tokio::test]
async fn made_up_database_names_do_not_shut_out_real_ones() {
    let Some(url) = database_url() else { return };
    let (_state, endpoint) = start(Config::new(&url)).await;
    let sdk = sdk_client(&endpoint);
    let call = |database: String| {
        sdk.execute_statement().resource_arn(RESOURCE_ARN).secret_arn(SECRET_ARN).database(database).sql("SELECT 1")
    };
    for i in 0..40 {
        let err = call(format!("no_such_database_{i}")).send().await.expect_err("no such database");
        assert!(err.message().is_some_and(|m| !m.contains("databases are served")), "{i}: {err:?}");
    }
    let out = call(database_name(&url)).send().await.expect("the real database is served");
    assert_eq!(out.records().len(), 1);
}

#[tokio::test]
async fn the_endpoint_comes_from_aws_endpoint_url_rds_data() {
    let Some(h) = harness().await else { return };
    let env = aws_types::os_shim_internal::Env::from_slice(&[
        ("AWS_ENDPOINT_URL_RDS_DATA", h.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).env(env).load().await;
    let exec = RdsDataExecutor::from_sdk_config(&sdk, h.exec.config().clone());
    assert_eq!(exec.query("SELECT 40 + $1", &[Param::Int(2)]).await.expect("query"), vec![vec![Cell::Int(42)]]);
    h.drop_schema().await;
}

mod fuzz {
    //! No request body, however malformed, makes the server panic or answer 500.

    use std::sync::OnceLock;

    use axum::body::Body;
    use axum::http::Request;
    use proptest::prelude::*;
    use tower::ServiceExt as _;

    use super::*;

    fn runtime() -> &'static tokio::runtime::Runtime {
        static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
        })
    }

    fn app() -> &'static axum::Router {
        static APP: OnceLock<axum::Router> = OnceLock::new();
        APP.get_or_init(|| {
            // A database nobody listens on: requests that get that far answer 504.
            let _guard = runtime().enter();
            router(AppState::new(Config::new("postgres://jobs@127.0.0.1:1/jobs")).expect("state"))
        })
    }

    const KEYS: &[&str] = &[
        "resourceArn",
        "secretArn",
        "sql",
        "database",
        "schema",
        "parameters",
        "parameterSets",
        "name",
        "value",
        "typeHint",
        "isNull",
        "booleanValue",
        "longValue",
        "doubleValue",
        "stringValue",
        "blobValue",
        "arrayValue",
        "transactionId",
        "includeResultMetadata",
        "formatRecordsAs",
        "resultSetOptions",
        "decimalReturnType",
        "continueAfterTimeout",
        "__type",
        "x",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop::sample::select(vec!["", "arn", "SELECT 1", "JSON", "UUID", "TIMESTAMP", "AAE=", ":x", "NONE", "é🚀"])
                .prop_map(|s| Value::String(s.to_owned())),
            "[ -~]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => json_value().prop_map(|v| v.to_string().into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

        #[test]
        fn any_body_gets_a_well_formed_answer(
            route in prop::sample::select(vec!["/Execute", "/BatchExecute", "/BeginTransaction", "/CommitTransaction", "/RollbackTransaction", "/Nope"]),
            body in body(),
        ) {
            let response = runtime().block_on(async {
                let request = Request::post(route).header("content-type", "application/json").body(Body::from(body)).expect("request");
                app().clone().oneshot(request).await
            }).expect("infallible");
            let status = response.status().as_u16();
            prop_assert!(matches!(status, 200 | 400 | 404 | 504), "status {status}");
            if status != 200 {
                prop_assert!(response.headers().contains_key("x-amzn-errortype"));
                let bytes = runtime().block_on(axum::body::to_bytes(response.into_body(), 1 << 20)).expect("body");
                let v: Value = serde_json::from_slice(&bytes).expect("a JSON error body");
                prop_assert!(v["message"].is_string());
            }
        }
    }
}
