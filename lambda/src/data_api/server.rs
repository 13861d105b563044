//! A local RDS Data API: the restJson1 wire protocol aws-sdk-rdsdata speaks (`POST /Execute`,
//! `/BatchExecute`, `/BeginTransaction`, `/CommitTransaction`, `/RollbackTransaction`), served by
//! axum and run on real PostgreSQL through a deadpool of tokio-postgres connections.
//!
//! What it mirrors from the real service: named `:param` placeholders with type hints, typed
//! `records` / `columnMetadata` / `formattedRecords`, errors as `DatabaseErrorException` with the
//! PostgreSQL message and a `; SQLState: XXXXX` suffix, `UnsupportedResultException` for result
//! types the service does not return, `TransactionNotFoundException`, the 1 MiB response limit,
//! the 64 KB row limit (counted in PostgreSQL's bytes), transactions ended at their first error
//! and rolled back after an idle timeout (3 minutes). What it does not: SigV4 checks (any signature, or none, is accepted),
//! Secrets Manager (the ARNs are required but not looked up), TLS to PostgreSQL and the `schema`
//! parameter (the real one ignores it for PostgreSQL too).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex as AsyncMutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

use super::Segment;

/// The real service's limit on one response's data.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The most one row of a result may hold ("The Data API size limit is 64 KB per row in the
/// result set returned by the database", the Aurora user guide's limitations): counted here
/// as the row's bytes as PostgreSQL returns them. A larger row fails the whole statement.
pub const MAX_ROW_BYTES: usize = 64 * 1024;
/// The real service's limit on `formattedRecords` (documented as 10 MB).
pub const MAX_FORMATTED_RECORDS_BYTES: usize = 10 * 1024 * 1024;
/// The real service's limit on one request (headers and JSON included).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// How the server runs: where PostgreSQL is and the service limits it enforces.
#[derive(Debug, Clone)]
pub struct Config {
    /// `postgres://user[:password]@host:port/dbname` (or key=value form); the `database` field of
    /// a request selects another database on the same server.
    pub database_url: String,
    /// A transaction with no call for this long is rolled back (the real service: 3 minutes).
    pub transaction_timeout: Duration,
    /// A call running longer is cancelled with `StatementTimeoutException` unless it set
    /// `continueAfterTimeout` (the real service: 45 seconds).
    pub statement_timeout: Duration,
    pub max_response_bytes: usize,
    pub max_formatted_records_bytes: usize,
    pub max_request_bytes: usize,
    /// Connections per database; each open transaction holds one.
    pub pool_size: usize,
    /// Bind each value with the type of its JSON kind (stringValue as text, longValue as int8,
    /// ...), as the real service does, so that e.g. a uuid column compared with an unhinted
    /// stringValue fails with `operator does not exist: uuid = text`. When false (the default),
    /// unhinted values take the type PostgreSQL infers for their placeholder.
    pub strict_types: bool,
}

impl Config {
    pub fn new(database_url: impl Into<String>) -> Self {
        Config {
            database_url: database_url.into(),
            transaction_timeout: Duration::from_secs(180),
            statement_timeout: Duration::from_secs(45),
            max_response_bytes: MAX_RESPONSE_BYTES,
            max_formatted_records_bytes: MAX_FORMATTED_RECORDS_BYTES,
            max_request_bytes: MAX_REQUEST_BYTES,
            pool_size: 16,
            strict_types: false,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid database url: {0}")]
    DatabaseUrl(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The server's shared state: connection pools and open transactions. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    pg_config: tokio_postgres::Config,
    default_database: String,
    pools: StdMutex<HashMap<String, Pool>>,
    transactions: StdMutex<HashMap<String, Arc<TxEntry>>>,
}

struct TxEntry {
    database: String,
    /// `None` once committed, rolled back or reaped.
    conn: AsyncMutex<Option<Object>>,
    last_used: StdMutex<Instant>,
}

impl TxEntry {
    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn idle_for(&self) -> Duration {
        self.last_used.lock().map(|t| t.elapsed()).unwrap_or_default()
    }
}

/// At most this many databases get a pool (one is created per `database` name on first use).
const MAX_DATABASES: usize = 32;

impl AppState {
    /// Builds the state. Connections are opened lazily. When called inside a tokio runtime, a
    /// background task rolls back idle transactions; every request also sweeps them.
    pub fn new(config: Config) -> Result<Self, ServeError> {
        let mut pg_config: tokio_postgres::Config =
            config.database_url.parse().map_err(|e: tokio_postgres::Error| ServeError::DatabaseUrl(e.to_string()))?;
        // The real service's sessions run in UTC: TIMESTAMP-hinted values become timestamptz
        // through the session time zone.
        let options = match pg_config.get_options() {
            Some(o) if o.contains("TimeZone") => o.to_owned(),
            Some(o) => format!("{o} -c TimeZone=UTC"),
            None => "-c TimeZone=UTC".to_owned(),
        };
        pg_config.options(&options);
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("jobs-data-api");
        }
        let default_database = pg_config.get_dbname().or(pg_config.get_user()).unwrap_or("postgres").to_owned();
        let inner = Arc::new(Inner {
            config,
            pg_config,
            default_database,
            pools: StdMutex::new(HashMap::new()),
            transactions: StdMutex::new(HashMap::new()),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reaper(Arc::downgrade(&inner)));
        }
        Ok(AppState { inner })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Open transactions (for tests and diagnostics).
    pub fn open_transactions(&self) -> usize {
        self.inner.transactions.lock().map(|m| m.len()).unwrap_or(0)
    }
}

async fn reaper(inner: Weak<Inner>) {
    let interval = match inner.upgrade() {
        Some(i) => (i.config.transaction_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)),
        None => return,
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else { return };
        inner.reap_idle().await;
    }
}

/// The Data API routes over `state`.
pub fn router(state: AppState) -> Router {
    let limit = state.inner.config.max_request_bytes;
    Router::new()
        .route("/Execute", post(execute_handler))
        .route("/BatchExecute", post(batch_execute_handler))
        .route("/BeginTransaction", post(begin_handler))
        .route("/CommitTransaction", post(commit_handler))
        .route("/RollbackTransaction", post(rollback_handler))
        .fallback(unknown_operation)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves the Data API on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, database_url: &str) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_listener(listener, Config::new(database_url)).await
}

/// Serves the Data API on an already bound listener (port 0 in tests).
pub async fn serve_listener(listener: tokio::net::TcpListener, config: Config) -> Result<(), ServeError> {
    let state = AppState::new(config)?;
    tracing::info!(addr = ?listener.local_addr().ok(), "data api listening");
    axum::serve(listener, router(state)).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Errors, shaped like the real service's (restJson1: the type in `x-amzn-errortype`, the text in
// a JSON `message`).

const TIMED_OUT: &str = "StatementTimeoutException";

#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    /// A PostgreSQL-style error raised by the emulator itself (e.g. a value that does not parse
    /// as the parameter's type), formatted like one from the database.
    fn sql(code: &str, message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DatabaseErrorException", format!("ERROR: {message}; SQLState: {code}"))
    }

    fn unsupported_result(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "UnsupportedResultException", message)
    }

    fn transaction_not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "TransactionNotFoundException", format!("Transaction {id} is not found"))
    }

    fn unavailable(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "DatabaseUnavailableException",
            format!("The database is unavailable: {message}"),
        )
    }

    /// The service's exact words for this are not documented for PostgreSQL; what matters is
    /// that the statement fails (our store never reads such a row: see `sql_job_fits!`).
    fn row_too_large(bytes: usize) -> Self {
        Self::bad_request(format!("Database returned a row of {bytes} bytes, over the 64 KB row size limit"))
    }

    fn response_too_large() -> Self {
        Self::bad_request("Database returned more than the allowed response size limit")
    }

    fn statement_timeout() -> Self {
        Self::new(StatusCode::BAD_REQUEST, TIMED_OUT, "The statement timed out")
    }

    fn from_pg(e: &tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Self::new(
                StatusCode::BAD_REQUEST,
                "DatabaseErrorException",
                format!("{}: {}; SQLState: {}", db.severity(), db.message(), db.code().code()),
            ),
            // Not a database error: the connection broke (or the protocol did).
            None => Self::unavailable(e),
        }
    }

    fn from_pool(e: PoolError) -> Self {
        if let PoolError::Backend(pg) = &e
            && let Some(db) = pg.as_db_error()
            && *db.code() == SqlState::INVALID_CATALOG_NAME
        {
            return Self::new(StatusCode::NOT_FOUND, "DatabaseNotFoundException", db.message());
        }
        Self::unavailable(e)
    }
}

fn request_id() -> HeaderValue {
    HeaderValue::try_from(uuid::Uuid::new_v4().to_string()).unwrap_or(HeaderValue::from_static("local"))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::debug!(kind = self.kind, message = %self.message, "data api error");
        let body = json!({ "message": self.message }).to_string();
        (
            self.status,
            [
                (HeaderName::from_static("x-amzn-errortype"), HeaderValue::from_static(self.kind)),
                (HeaderName::from_static("x-amzn-requestid"), request_id()),
                (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            ],
            body,
        )
            .into_response()
    }
}

fn ok_json(body: Value) -> Response {
    (
        StatusCode::OK,
        [
            (HeaderName::from_static("x-amzn-requestid"), request_id()),
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        ],
        body.to_string(),
    )
        .into_response()
}

fn respond(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(body) => ok_json(body),
        Err(e) => e.into_response(),
    }
}

async fn unknown_operation() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "UnknownOperationException", "Unknown operation").into_response()
}

// ---------------------------------------------------------------------------------------------
// Requests: the SDK's field names (camelCase). Anything else in the body is ignored.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecuteRequest {
    resource_arn: Option<String>,
    secret_arn: Option<String>,
    sql: Option<String>,
    database: Option<String>,
    #[expect(dead_code, reason = "accepted and ignored, like the real service for PostgreSQL")]
    schema: Option<String>,
    parameters: Option<Vec<RawParameter>>,
    transaction_id: Option<String>,
    include_result_metadata: Option<bool>,
    continue_after_timeout: Option<bool>,
    format_records_as: Option<String>,
    result_set_options: Option<ResultSetOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchExecuteRequest {
    resource_arn: Option<String>,
    secret_arn: Option<String>,
    sql: Option<String>,
    database: Option<String>,
    #[expect(dead_code, reason = "accepted and ignored, like the real service for PostgreSQL")]
    schema: Option<String>,
    parameter_sets: Option<Vec<Vec<RawParameter>>>,
    transaction_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BeginRequest {
    resource_arn: Option<String>,
    secret_arn: Option<String>,
    database: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndRequest {
    resource_arn: Option<String>,
    secret_arn: Option<String>,
    transaction_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawParameter {
    name: Option<String>,
    value: Option<Value>,
    type_hint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultSetOptions {
    decimal_return_type: Option<String>,
    long_return_type: Option<String>,
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::bad_request("Request size exceeds the allowed limit"),
        other => ApiError::bad_request(other.body_text()),
    })?;
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &body };
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::bad_request(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))),
    }
}

fn check_arns(resource_arn: &Option<String>, secret_arn: &Option<String>) -> Result<(), ApiError> {
    required(resource_arn, "resourceArn")?;
    required(secret_arn, "secretArn")?;
    Ok(())
}

/// A type hint, for stringValue parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    Date,
    Decimal,
    Json,
    Time,
    Timestamp,
    Uuid,
}

impl Hint {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "DATE" => Hint::Date,
            "DECIMAL" => Hint::Decimal,
            "JSON" => Hint::Json,
            "TIME" => Hint::Time,
            "TIMESTAMP" => Hint::Timestamp,
            "UUID" => Hint::Uuid,
            _ => return None,
        })
    }

    fn pg_type(self) -> Type {
        match self {
            Hint::Date => Type::DATE,
            Hint::Decimal => Type::NUMERIC,
            Hint::Json => Type::JSONB,
            Hint::Time => Type::TIME,
            Hint::Timestamp => Type::TIMESTAMP,
            Hint::Uuid => Type::UUID,
        }
    }
}

/// A parameter value (the `Field` union).
#[derive(Debug, Clone, PartialEq)]
enum FieldValue {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
    Blob(Vec<u8>),
}

impl FieldValue {
    fn kind(&self) -> &'static str {
        match self {
            FieldValue::Null => "isNull",
            FieldValue::Bool(_) => "booleanValue",
            FieldValue::Long(_) => "longValue",
            FieldValue::Double(_) => "doubleValue",
            FieldValue::Str(_) => "stringValue",
            FieldValue::Blob(_) => "blobValue",
        }
    }

    /// The type the real service binds a value of this kind with.
    fn natural_type(&self) -> Type {
        match self {
            FieldValue::Null => Type::UNKNOWN,
            FieldValue::Bool(_) => Type::BOOL,
            FieldValue::Long(_) => Type::INT8,
            FieldValue::Double(_) => Type::FLOAT8,
            FieldValue::Str(_) => Type::TEXT,
            FieldValue::Blob(_) => Type::BYTEA,
        }
    }
}

#[derive(Debug, Clone)]
struct Param {
    name: String,
    value: FieldValue,
    hint: Option<Hint>,
}

fn parse_field(value: &Value, at: &str) -> Result<FieldValue, ApiError> {
    let Some(obj) = value.as_object() else {
        return Err(ApiError::bad_request(format!("{at}.value must be an object")));
    };
    let mut set = obj.iter().filter(|(k, v)| !v.is_null() && k.as_str() != "__type");
    let (Some((key, v)), None) = (set.next(), set.next()) else {
        return Err(ApiError::bad_request(format!(
            "{at}.value must set exactly one of isNull, booleanValue, longValue, doubleValue, stringValue, blobValue, arrayValue"
        )));
    };
    let wrong = || ApiError::bad_request(format!("{at}.value.{key} has the wrong type"));
    Ok(match key.as_str() {
        "isNull" => {
            v.as_bool().ok_or_else(wrong)?;
            FieldValue::Null
        }
        "booleanValue" => FieldValue::Bool(v.as_bool().ok_or_else(wrong)?),
        "longValue" => FieldValue::Long(v.as_i64().ok_or_else(wrong)?),
        "doubleValue" => FieldValue::Double(v.as_f64().ok_or_else(wrong)?),
        "stringValue" => FieldValue::Str(v.as_str().ok_or_else(wrong)?.to_owned()),
        "blobValue" => {
            let text = v.as_str().ok_or_else(wrong)?;
            FieldValue::Blob(base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| wrong())?)
        }
        "arrayValue" => return Err(ApiError::bad_request("Array parameters are not supported.")),
        other => return Err(ApiError::bad_request(format!("{at}.value has an unknown member {other}"))),
    })
}

fn parse_params(raw: &[RawParameter], at: &str) -> Result<Vec<Param>, ApiError> {
    raw.iter()
        .enumerate()
        .map(|(i, p)| {
            let at = format!("{at}.{}", i + 1);
            let name = match p.name.as_deref() {
                Some(n) if !n.is_empty() => n.trim_start_matches(':').to_owned(),
                _ => return Err(ApiError::bad_request(format!("{at}.name is required"))),
            };
            let value = match &p.value {
                Some(v) => parse_field(v, &at)?,
                None => return Err(ApiError::bad_request(format!("{at}.value is required"))),
            };
            let hint = match p.type_hint.as_deref() {
                None => None,
                Some(h) => Some(Hint::parse(h).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "1 validation error detected: Value '{h}' at '{at}.typeHint' failed to satisfy constraint: \
                         Member must satisfy enum value set: [JSON, TIME, TIMESTAMP, DATE, UUID, DECIMAL]"
                    ))
                })?),
            };
            Ok(Param { name, value, hint })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// SQL: named placeholders to positional ones.

/// SQL with `$n` placeholders and the parameter name for each `n`.
#[derive(Debug, PartialEq)]
struct Positional {
    sql: String,
    names: Vec<String>,
}

/// Rewrites `:name` placeholders (in code, not in literals, quoted identifiers or comments, and
/// not the `::` of a cast) to `$1..$n`; a name used twice gets the same number.
fn to_positional(sql: &str) -> Positional {
    let mut out = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    // Each name's number, found in constant time: a 4 MB statement of distinct names was
    // quadratic in a list.
    let mut numbers: HashMap<&str, usize> = HashMap::new();
    for segment in super::segments(sql) {
        let code = match segment {
            Segment::Other(text) => {
                out.push_str(text);
                continue;
            }
            Segment::Code(code) => code,
        };
        let mut chars = code.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != ':' {
                out.push(c);
                continue;
            }
            match chars.peek() {
                Some(&(_, ':')) => {
                    out.push_str("::");
                    chars.next();
                }
                Some(&(_, n)) if n.is_ascii_alphabetic() || n == '_' => {
                    let start = i + 1;
                    let mut end = start;
                    while let Some(&(j, n)) = chars.peek() {
                        if n.is_ascii_alphanumeric() || n == '_' {
                            end = j + n.len_utf8();
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    let name = &code[start..end];
                    let index = *numbers.entry(name).or_insert_with(|| {
                        names.push(name.to_owned());
                        names.len() - 1
                    });
                    out.push('$');
                    out.push_str(&(index + 1).to_string());
                }
                _ => out.push(':'),
            }
        }
    }
    Positional { sql: out, names }
}

/// The first keyword of a statement, uppercased (skipping blanks, comments and parentheses).
fn leading_keyword(sql: &str) -> String {
    for segment in super::segments(sql) {
        match segment {
            Segment::Other(text) if text.starts_with("--") || text.starts_with("/*") => continue,
            Segment::Other(_) => return String::new(),
            Segment::Code(code) => {
                let trimmed = code.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
                if trimmed.is_empty() {
                    continue;
                }
                return trimmed.chars().take_while(char::is_ascii_alphabetic).collect::<String>().to_ascii_uppercase();
            }
        }
    }
    String::new()
}

/// The values for `positional`'s placeholders, in order.
fn bind<'a>(positional: &Positional, params: &'a [Param]) -> Result<Vec<&'a Param>, ApiError> {
    // The first of a name given twice, as a scan of the list found it.
    let mut by_name: HashMap<&str, &Param> = HashMap::with_capacity(params.len());
    for p in params {
        by_name.entry(p.name.as_str()).or_insert(p);
    }
    positional
        .names
        .iter()
        .map(|name| {
            by_name
                .get(name.as_str())
                .copied()
                .ok_or_else(|| ApiError::bad_request(format!("No value specified for parameter: {name}")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Binding values: each value is encoded in PostgreSQL's binary format for the type its
// placeholder has.

/// A parameter already encoded for its placeholder's type.
#[derive(Debug)]
struct Encoded(Option<Vec<u8>>);

impl ToSql for Encoded {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

enum EncodeError {
    /// The emulator cannot encode this type; the value is rebound with its natural type.
    Unsupported,
    Sql(ApiError),
}

/// Prepares `sql` and encodes `values` for it. Hinted values are declared with the hint's type;
/// the others take the type PostgreSQL infers (or, with `strict`, their kind's natural type).
/// A placeholder whose type cannot be inferred, or has a type the emulator cannot encode,
/// falls back to the value's natural type, leaving PostgreSQL to accept or reject it.
async fn prepare(
    client: &Client,
    sql: &str,
    values: &[&Param],
    strict: bool,
) -> Result<(Statement, Vec<Encoded>), ApiError> {
    let mut declared: Vec<Type> = values
        .iter()
        .map(|p| match (p.hint, &p.value) {
            (Some(h), _) => h.pg_type(),
            (None, v) if strict => v.natural_type(),
            (None, _) => Type::UNKNOWN,
        })
        .collect();
    let mut statement = match client.prepare_typed(sql, &declared).await {
        Err(e)
            if !strict
                && matches!(e.code(), Some(c) if *c == SqlState::INDETERMINATE_DATATYPE || *c == SqlState::AMBIGUOUS_PARAMETER) =>
        {
            for (t, p) in declared.iter_mut().zip(values) {
                if *t == Type::UNKNOWN {
                    *t = p.value.natural_type();
                }
            }
            client.prepare_typed(sql, &declared).await
        }
        other => other,
    }
    .map_err(|e| ApiError::from_pg(&e))?;
    for attempt in 0..2 {
        let mut unsupported = Vec::new();
        let mut encoded = Vec::with_capacity(values.len());
        for (i, (param, ty)) in values.iter().zip(statement.params()).enumerate() {
            match encode(&param.value, ty, i + 1) {
                Ok(bytes) => encoded.push(Encoded(bytes)),
                Err(EncodeError::Sql(e)) => return Err(e),
                Err(EncodeError::Unsupported) => {
                    unsupported.push(i);
                    encoded.push(Encoded(None));
                }
            }
        }
        if unsupported.is_empty() {
            return Ok((statement, encoded));
        }
        if attempt == 1 || unsupported.iter().all(|&i| declared[i] == values[i].value.natural_type()) {
            let i = unsupported[0];
            return Err(ApiError::sql(
                "42804",
                format!(
                    "parameter ${} ({}) is of type {} but expression is of type {}",
                    i + 1,
                    values[i].name,
                    statement.params()[i].name(),
                    values[i].value.kind()
                ),
            ));
        }
        for &i in &unsupported {
            declared[i] = values[i].value.natural_type();
        }
        statement = client.prepare_typed(sql, &declared).await.map_err(|e| ApiError::from_pg(&e))?;
    }
    Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerErrorException", "unreachable"))
}

/// Encodes `sql`'s parameters for an already prepared statement (the later sets of a batch).
fn encode_all(statement: &Statement, values: &[&Param]) -> Result<Vec<Encoded>, ApiError> {
    values
        .iter()
        .zip(statement.params())
        .enumerate()
        .map(|(i, (p, ty))| match encode(&p.value, ty, i + 1) {
            Ok(bytes) => Ok(Encoded(bytes)),
            Err(EncodeError::Sql(e)) => Err(e),
            Err(EncodeError::Unsupported) => Err(ApiError::sql(
                "42804",
                format!("parameter ${} is of type {} but expression is of type {}", i + 1, ty.name(), p.value.kind()),
            )),
        })
        .collect()
}

fn invalid_input(type_name: &str, text: &str) -> EncodeError {
    EncodeError::Sql(ApiError::sql("22P02", format!("invalid input syntax for type {type_name}: \"{text}\"")))
}

fn invalid_datetime(type_name: &str, text: &str) -> EncodeError {
    EncodeError::Sql(ApiError::sql("22007", format!("invalid input syntax for type {type_name}: \"{text}\"")))
}

fn out_of_range(type_name: &str) -> EncodeError {
    EncodeError::Sql(ApiError::sql("22003", format!("{type_name} out of range")))
}

fn mismatch(ty: &Type, value: &FieldValue, position: usize) -> EncodeError {
    EncodeError::Sql(ApiError::sql(
        "42804",
        format!("parameter ${position} is of type {} but expression is of type {}", ty.name(), value.kind()),
    ))
}

fn encode(value: &FieldValue, ty: &Type, position: usize) -> Result<Option<Vec<u8>>, EncodeError> {
    if *value == FieldValue::Null {
        return Ok(None);
    }
    match ty.kind() {
        Kind::Domain(inner) => return encode(value, inner, position),
        Kind::Enum(_) => {
            return match value {
                FieldValue::Str(s) => Ok(Some(s.as_bytes().to_vec())),
                _ => Err(mismatch(ty, value, position)),
            };
        }
        Kind::Simple => {}
        _ => return Err(EncodeError::Unsupported),
    }
    let bytes = match *ty {
        Type::BOOL => vec![u8::from(match value {
            FieldValue::Bool(b) => *b,
            FieldValue::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "y" | "yes" | "on" | "1" => true,
                "f" | "false" | "n" | "no" | "off" | "0" => false,
                _ => return Err(invalid_input("boolean", s)),
            },
            _ => return Err(mismatch(ty, value, position)),
        })],
        Type::INT2 => {
            let n = to_i64(value, "smallint", ty, position)?;
            i16::try_from(n).map_err(|_| out_of_range("smallint"))?.to_be_bytes().to_vec()
        }
        Type::INT4 => {
            let n = to_i64(value, "integer", ty, position)?;
            i32::try_from(n).map_err(|_| out_of_range("integer"))?.to_be_bytes().to_vec()
        }
        Type::INT8 => to_i64(value, "bigint", ty, position)?.to_be_bytes().to_vec(),
        Type::OID => {
            let n = to_i64(value, "oid", ty, position)?;
            u32::try_from(n).map_err(|_| out_of_range("oid"))?.to_be_bytes().to_vec()
        }
        Type::FLOAT4 => {
            let f = to_f64(value, "real", ty, position)? as f32;
            f.to_be_bytes().to_vec()
        }
        Type::FLOAT8 => to_f64(value, "double precision", ty, position)?.to_be_bytes().to_vec(),
        Type::NUMERIC => {
            let text = match value {
                FieldValue::Long(n) => n.to_string(),
                FieldValue::Double(d) => float_text(*d),
                FieldValue::Str(s) => s.clone(),
                _ => return Err(mismatch(ty, value, position)),
            };
            codec::numeric_from_text(&text).ok_or_else(|| invalid_input("numeric", &text))?
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::XML => match value {
            FieldValue::Str(s) => s.as_bytes().to_vec(),
            FieldValue::Long(n) => n.to_string().into_bytes(),
            FieldValue::Double(d) => float_text(*d).into_bytes(),
            FieldValue::Bool(b) => b.to_string().into_bytes(),
            _ => return Err(mismatch(ty, value, position)),
        },
        Type::JSON | Type::JSONB => {
            let text = match value {
                FieldValue::Str(s) => s.clone(),
                FieldValue::Long(n) => n.to_string(),
                FieldValue::Double(d) if d.is_finite() => float_text(*d),
                FieldValue::Bool(b) => b.to_string(),
                _ => return Err(mismatch(ty, value, position)),
            };
            let mut out = Vec::with_capacity(text.len() + 1);
            if *ty == Type::JSONB {
                out.push(1);
            }
            out.extend_from_slice(text.as_bytes());
            out
        }
        Type::UUID => match value {
            FieldValue::Str(s) => {
                uuid::Uuid::parse_str(s.trim()).map_err(|_| invalid_input("uuid", s))?.as_bytes().to_vec()
            }
            _ => return Err(mismatch(ty, value, position)),
        },
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match value {
            FieldValue::Str(s) => {
                let with_zone = *ty == Type::TIMESTAMPTZ;
                let name = if with_zone { "timestamp with time zone" } else { "timestamp" };
                codec::parse_timestamp(s, with_zone).ok_or_else(|| invalid_datetime(name, s))?.to_be_bytes().to_vec()
            }
            _ => return Err(mismatch(ty, value, position)),
        },
        Type::DATE => match value {
            FieldValue::Str(s) => {
                codec::parse_date(s).ok_or_else(|| invalid_datetime("date", s))?.to_be_bytes().to_vec()
            }
            _ => return Err(mismatch(ty, value, position)),
        },
        Type::TIME => match value {
            FieldValue::Str(s) => codec::parse_time(s)
                .ok_or_else(|| invalid_datetime("time without time zone", s))?
                .to_be_bytes()
                .to_vec(),
            _ => return Err(mismatch(ty, value, position)),
        },
        Type::BYTEA => match value {
            FieldValue::Blob(b) => b.clone(),
            FieldValue::Str(s) => s.as_bytes().to_vec(),
            _ => return Err(mismatch(ty, value, position)),
        },
        Type::INET | Type::CIDR => match value {
            FieldValue::Str(s) => {
                let name = if *ty == Type::CIDR { "cidr" } else { "inet" };
                codec::inet_from_text(s, *ty == Type::CIDR).ok_or_else(|| invalid_input(name, s))?
            }
            _ => return Err(mismatch(ty, value, position)),
        },
        _ if ty.name() == "citext" => match value {
            FieldValue::Str(s) => s.as_bytes().to_vec(),
            _ => return Err(mismatch(ty, value, position)),
        },
        _ => return Err(EncodeError::Unsupported),
    };
    Ok(Some(bytes))
}

fn to_i64(value: &FieldValue, type_name: &str, ty: &Type, position: usize) -> Result<i64, EncodeError> {
    match value {
        FieldValue::Long(n) => Ok(*n),
        FieldValue::Double(d) => {
            let r = d.round_ties_even();
            if !r.is_finite() || r < i64::MIN as f64 || r >= i64::MAX as f64 {
                return Err(out_of_range(type_name));
            }
            Ok(r as i64)
        }
        FieldValue::Str(s) => s.trim().parse::<i64>().map_err(|_| invalid_input(type_name, s)),
        _ => Err(mismatch(ty, value, position)),
    }
}

fn to_f64(value: &FieldValue, type_name: &str, ty: &Type, position: usize) -> Result<f64, EncodeError> {
    match value {
        FieldValue::Long(n) => Ok(*n as f64),
        FieldValue::Double(d) => Ok(*d),
        FieldValue::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "nan" => Ok(f64::NAN),
            "infinity" | "+infinity" | "inf" => Ok(f64::INFINITY),
            "-infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            t => t.parse::<f64>().map_err(|_| invalid_input(type_name, s)),
        },
        _ => Err(mismatch(ty, value, position)),
    }
}

/// A float as PostgreSQL's text input accepts it (Rust's shortest round-trip form).
fn float_text(d: f64) -> String {
    if d.is_nan() {
        "NaN".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        format!("{d:?}")
    }
}

// ---------------------------------------------------------------------------------------------
// Reading results: every column is read as raw binary and decoded here, so no type is silently
// turned into something else.

/// A column value in PostgreSQL's binary format.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// How one scalar type is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Text,
    Uuid,
    Json,
    Jsonb,
    Timestamp,
    Date,
    Time,
    Bytea,
    Inet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    Scalar(Scalar),
    Array(Scalar),
}

fn scalar_for(ty: &Type) -> Option<Scalar> {
    match ty.kind() {
        Kind::Domain(inner) => return scalar_for(inner),
        Kind::Enum(_) => return Some(Scalar::Text),
        Kind::Simple => {}
        _ => return None,
    }
    Some(match *ty {
        Type::BOOL => Scalar::Bool,
        Type::INT2 => Scalar::Int2,
        Type::INT4 => Scalar::Int4,
        Type::INT8 => Scalar::Int8,
        Type::OID => Scalar::Oid,
        Type::FLOAT4 => Scalar::Float4,
        Type::FLOAT8 => Scalar::Float8,
        Type::NUMERIC => Scalar::Numeric,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Scalar::Text,
        Type::UUID => Scalar::Uuid,
        Type::JSON => Scalar::Json,
        Type::JSONB => Scalar::Jsonb,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => Scalar::Timestamp,
        Type::DATE => Scalar::Date,
        Type::TIME => Scalar::Time,
        Type::BYTEA => Scalar::Bytea,
        Type::INET | Type::CIDR => Scalar::Inet,
        _ if ty.name() == "citext" => Scalar::Text,
        _ => return None,
    })
}

fn decoder_for(ty: &Type) -> Result<Decoder, ApiError> {
    let decoder = match ty.kind() {
        Kind::Array(elem) => scalar_for(elem).filter(|s| *s != Scalar::Bytea).map(Decoder::Array),
        _ => scalar_for(ty).map(Decoder::Scalar),
    };
    decoder.ok_or_else(|| {
        ApiError::unsupported_result(format!(
            "The result contains the unsupported data type {}.",
            unsupported_type_name(ty)
        ))
    })
}

/// The type name the real service puts in its `UnsupportedResultException` (seen: `"CHAR"` for
/// `"char"`, `regclass`): upper case for the built-in types, as named by its driver.
fn unsupported_type_name(ty: &Type) -> String {
    match ty.name() {
        "char" => "\"CHAR\"".to_owned(),
        name if ty.oid() < 10_000 && !name.starts_with("reg") => name.trim_start_matches('_').to_ascii_uppercase(),
        name => name.to_owned(),
    }
}

/// One decoded value.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    /// Numeric text: `stringValue`, or a number with `decimalReturnType: DOUBLE_OR_LONG`.
    Decimal(String),
    Str(String),
    Blob(Vec<u8>),
    Array(OutArray),
}

#[derive(Debug, Clone, PartialEq)]
enum OutArray {
    // Elements may be NULL: the SDK's array lists are sparse.
    Bools(Vec<Option<bool>>),
    Longs(Vec<Option<i64>>),
    Doubles(Vec<Option<f64>>),
    Strings(Vec<Option<String>>),
    Arrays(Vec<OutArray>),
}

fn decode_scalar(scalar: Scalar, raw: &[u8]) -> Option<Out> {
    let mut r = codec::Reader::new(raw);
    let out = match scalar {
        Scalar::Bool => Out::Bool(r.u8()? != 0),
        Scalar::Int2 => Out::Long(i64::from(r.i16()?)),
        Scalar::Int4 => Out::Long(i64::from(r.i32()?)),
        Scalar::Int8 => Out::Long(r.i64()?),
        Scalar::Oid => Out::Long(i64::from(r.u32()?)),
        Scalar::Float4 => Out::Double(f64::from(f32::from_bits(r.u32()?))),
        Scalar::Float8 => Out::Double(f64::from_bits(r.i64()?.cast_unsigned())),
        Scalar::Numeric => Out::Decimal(codec::numeric_to_text(raw)?),
        Scalar::Text | Scalar::Json => Out::Str(String::from_utf8_lossy(raw).into_owned()),
        Scalar::Jsonb => Out::Str(String::from_utf8_lossy(raw.get(1..)?).into_owned()),
        Scalar::Uuid => Out::Str(uuid::Uuid::from_slice(raw).ok()?.hyphenated().to_string()),
        Scalar::Timestamp => Out::Str(codec::format_timestamp(r.i64()?)),
        Scalar::Date => Out::Str(codec::format_date(r.i32()?)),
        Scalar::Time => Out::Str(codec::format_time(r.i64()?)),
        Scalar::Bytea => Out::Blob(raw.to_vec()),
        Scalar::Inet => Out::Str(codec::inet_to_text(raw)?),
    };
    Some(out)
}

fn decode(decoder: Decoder, raw: Option<&[u8]>) -> Result<Out, ApiError> {
    let Some(raw) = raw else { return Ok(Out::Null) };
    let bad = || {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerErrorException",
            "could not decode a result value",
        )
    };
    match decoder {
        Decoder::Scalar(s) => decode_scalar(s, raw).ok_or_else(bad),
        Decoder::Array(s) => {
            let array = codec::parse_array(raw).ok_or_else(bad)?;
            let mut items = Vec::with_capacity(array.elements.len());
            for element in array.elements {
                items.push(match element {
                    Some(bytes) => decode_scalar(s, bytes).ok_or_else(bad)?,
                    None => Out::Null,
                });
            }
            Ok(Out::Array(shape_array(s, &array.dims, items)))
        }
    }
}

/// Nests a flat list of array elements into `dims` (PostgreSQL's row-major order).
fn shape_array(scalar: Scalar, dims: &[usize], items: Vec<Out>) -> OutArray {
    if dims.len() > 1 {
        let inner: usize = dims[1..].iter().product();
        let mut chunks = Vec::with_capacity(dims[0]);
        let mut items = items.into_iter();
        for _ in 0..dims[0] {
            let chunk: Vec<Out> = items.by_ref().take(inner).collect();
            chunks.push(shape_array(scalar, &dims[1..], chunk));
        }
        return OutArray::Arrays(chunks);
    }
    let items = items.into_iter();
    match scalar {
        Scalar::Bool => OutArray::Bools(items.map(|o| if let Out::Bool(b) = o { Some(b) } else { None }).collect()),
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 | Scalar::Oid => {
            OutArray::Longs(items.map(|o| if let Out::Long(n) = o { Some(n) } else { None }).collect())
        }
        Scalar::Float4 | Scalar::Float8 => {
            OutArray::Doubles(items.map(|o| if let Out::Double(d) = o { Some(d) } else { None }).collect())
        }
        _ => OutArray::Strings(
            items
                .map(|o| match o {
                    Out::Str(s) | Out::Decimal(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ),
    }
}

/// How results are returned (`resultSetOptions`).
#[derive(Debug, Clone, Copy, Default)]
struct Rendering {
    decimal_as_number: bool,
    long_as_string: bool,
}

fn number(d: f64) -> Option<Value> {
    serde_json::Number::from_f64(d).map(Value::Number)
}

/// A value as a `Field` of `records`.
fn field_json(out: &Out, r: Rendering) -> Value {
    match out {
        Out::Null => json!({ "isNull": true }),
        Out::Bool(b) => json!({ "booleanValue": b }),
        Out::Long(n) if r.long_as_string => json!({ "stringValue": n.to_string() }),
        Out::Long(n) => json!({ "longValue": n }),
        Out::Double(d) => match number(*d) {
            Some(n) => json!({ "doubleValue": n }),
            None => json!({ "stringValue": float_text(*d) }),
        },
        Out::Decimal(s) if r.decimal_as_number => match decimal_number(s) {
            Some(Value::Number(n)) if n.is_i64() => json!({ "longValue": n }),
            Some(n) => json!({ "doubleValue": n }),
            None => json!({ "stringValue": s }),
        },
        Out::Decimal(s) | Out::Str(s) => json!({ "stringValue": s }),
        Out::Blob(b) => json!({ "blobValue": base64::engine::general_purpose::STANDARD.encode(b) }),
        Out::Array(a) => json!({ "arrayValue": array_json(a) }),
    }
}

fn decimal_number(s: &str) -> Option<Value> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(Value::from(n));
    }
    s.parse::<f64>().ok().and_then(number)
}

fn array_json(a: &OutArray) -> Value {
    match a {
        OutArray::Bools(v) => json!({ "booleanValues": v }),
        OutArray::Longs(v) => json!({ "longValues": v }),
        OutArray::Doubles(v) => {
            json!({ "doubleValues": v.iter().map(|d| d.and_then(number).unwrap_or(Value::Null)).collect::<Vec<_>>() })
        }
        OutArray::Strings(v) => json!({ "stringValues": v }),
        OutArray::Arrays(v) => json!({ "arrayValues": v.iter().map(array_json).collect::<Vec<_>>() }),
    }
}

/// A value inside `formattedRecords`: plain JSON.
fn plain_json(out: &Out, r: Rendering) -> Value {
    match out {
        Out::Null => Value::Null,
        Out::Bool(b) => Value::Bool(*b),
        Out::Long(n) if r.long_as_string => Value::String(n.to_string()),
        Out::Long(n) => Value::from(*n),
        Out::Double(d) => number(*d).unwrap_or_else(|| Value::String(float_text(*d))),
        Out::Decimal(s) if r.decimal_as_number => decimal_number(s).unwrap_or_else(|| Value::String(s.clone())),
        Out::Decimal(s) | Out::Str(s) => Value::String(s.clone()),
        Out::Blob(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Out::Array(a) => plain_array(a),
    }
}

fn plain_array(a: &OutArray) -> Value {
    match a {
        OutArray::Bools(v) => json!(v),
        OutArray::Longs(v) => json!(v),
        OutArray::Doubles(v) => Value::Array(v.iter().map(|d| d.and_then(number).unwrap_or(Value::Null)).collect()),
        OutArray::Strings(v) => json!(v),
        OutArray::Arrays(v) => Value::Array(v.iter().map(plain_array).collect()),
    }
}

// ---------------------------------------------------------------------------------------------
// Column metadata.

/// The JDBC type code the real service reports (`java.sql.Types`).
fn jdbc_type(ty: &Type) -> i64 {
    match *ty {
        Type::BOOL => -7,
        Type::INT2 => 5,
        Type::INT4 | Type::OID => 4,
        Type::INT8 => -5,
        Type::FLOAT4 => 7,
        Type::FLOAT8 => 8,
        Type::NUMERIC => 2,
        Type::BPCHAR => 1,
        Type::TEXT | Type::VARCHAR | Type::NAME => 12,
        Type::DATE => 91,
        Type::TIME => 92,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => 93,
        Type::BYTEA => -2,
        _ => match ty.kind() {
            Kind::Array(_) => 2003,
            Kind::Domain(inner) => jdbc_type(inner),
            Kind::Enum(_) => 12,
            _ => 1111,
        },
    }
}

fn precision_scale(ty: &Type, typmod: i32) -> (i64, i64) {
    match *ty {
        Type::BOOL => (1, 0),
        Type::INT2 => (5, 0),
        Type::INT4 | Type::OID => (10, 0),
        Type::INT8 => (19, 0),
        Type::FLOAT4 => (8, 8),
        Type::FLOAT8 => (17, 17),
        Type::NUMERIC if typmod >= 4 => (i64::from(((typmod - 4) >> 16) & 0xffff), i64::from((typmod - 4) & 0xffff)),
        Type::NUMERIC => (0, 0),
        Type::VARCHAR | Type::BPCHAR if typmod >= 4 => (i64::from(typmod - 4), 0),
        Type::UUID => (36, 0),
        Type::DATE => (13, 0),
        Type::TIME => (15, 6),
        Type::TIMESTAMP => (29, 6),
        Type::TIMESTAMPTZ => (35, 6),
        _ => (i64::from(i32::MAX), 0),
    }
}

/// Per source table column: (schema, table, NOT NULL, auto-increment).
type TableColumns = HashMap<(u32, i16), (String, String, bool, bool)>;

async fn table_columns(client: &Client, statement: &Statement) -> Result<TableColumns, ApiError> {
    let oids: Vec<String> =
        statement.columns().iter().filter_map(|c| c.table_oid().filter(|o| *o != 0).map(|o| o.to_string())).collect();
    if oids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT a.attrelid, a.attnum, n.nspname::text, c.relname::text, a.attnotnull, \
                (a.attidentity <> '' OR COALESCE(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%', false)) \
         FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid IN ({}) AND a.attnum > 0",
        oids.join(",")
    );
    let rows = client.query(&sql, &[]).await.map_err(|e| ApiError::from_pg(&e))?;
    let mut out = HashMap::new();
    for row in rows {
        let oid: u32 = row.try_get(0).map_err(|e| ApiError::from_pg(&e))?;
        let attnum: i16 = row.try_get(1).map_err(|e| ApiError::from_pg(&e))?;
        let schema: String = row.try_get(2).map_err(|e| ApiError::from_pg(&e))?;
        let table: String = row.try_get(3).map_err(|e| ApiError::from_pg(&e))?;
        let not_null: bool = row.try_get(4).map_err(|e| ApiError::from_pg(&e))?;
        let auto: bool = row.try_get(5).map_err(|e| ApiError::from_pg(&e))?;
        out.insert((oid, attnum), (schema, table, not_null, auto));
    }
    Ok(out)
}

fn column_metadata(statement: &Statement, tables: &TableColumns) -> Vec<Value> {
    statement
        .columns()
        .iter()
        .map(|c| {
            let ty = c.type_();
            let source = c.table_oid().zip(c.column_id()).and_then(|k| tables.get(&k));
            let (schema, table, nullable, auto) = match source {
                Some((s, t, not_null, auto)) => (s.as_str(), t.as_str(), i64::from(!*not_null), *auto),
                None => ("", "", 2, false),
            };
            let (precision, scale) = precision_scale(ty, c.type_modifier());
            let signed =
                matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC);
            let case_sensitive = matches!(scalar_for(ty), Some(Scalar::Text | Scalar::Json | Scalar::Jsonb));
            let array_base = match ty.kind() {
                Kind::Array(elem) => jdbc_type(elem),
                _ => 0,
            };
            json!({
                "name": c.name(),
                "label": c.name(),
                "type": jdbc_type(ty),
                "typeName": ty.name(),
                "schemaName": schema,
                "tableName": table,
                "isAutoIncrement": auto,
                "isSigned": signed,
                "isCurrency": *ty == Type::MONEY,
                "isCaseSensitive": case_sensitive,
                "nullable": nullable,
                "precision": precision,
                "scale": scale,
                "arrayBaseColumnType": array_base,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Connections and transactions.

impl Inner {
    fn pool(&self, database: Option<&str>) -> Result<Pool, ApiError> {
        let name = match database {
            Some(d) if !d.is_empty() => d,
            _ => self.default_database.as_str(),
        };
        let mut pools = self.pools.lock().map_err(|_| ApiError::unavailable("pool registry poisoned"))?;
        if let Some(pool) = pools.get(name) {
            return Ok(pool.clone());
        }
        if pools.len() >= MAX_DATABASES {
            return Err(ApiError::bad_request(format!("At most {MAX_DATABASES} databases are served")));
        }
        let mut pg_config = self.pg_config.clone();
        pg_config.dbname(name);
        let manager = Manager::from_config(pg_config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(self.config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(ApiError::unavailable)?;
        pools.insert(name.to_owned(), pool.clone());
        Ok(pool)
    }

    async fn connection(&self, database: Option<&str>) -> Result<Object, ApiError> {
        let pool = self.pool(database)?;
        match pool.get().await {
            Ok(c) => Ok(c),
            Err(e) => {
                // A pool that never connected (a database that does not exist, a name made up)
                // leaves the registry: kept, 32 made-up names shut every other database out.
                if pool.status().size == 0 {
                    let name = database.filter(|d| !d.is_empty()).unwrap_or(&self.default_database);
                    if let Ok(mut pools) = self.pools.lock()
                        && pools.get(name).is_some_and(|p| p.status().size == 0)
                    {
                        pools.remove(name);
                    }
                }
                Err(ApiError::from_pool(e))
            }
        }
    }

    fn transaction(&self, id: &str) -> Result<Arc<TxEntry>, ApiError> {
        let map = self.transactions.lock().map_err(|_| ApiError::unavailable("transaction registry poisoned"))?;
        map.get(id).cloned().ok_or_else(|| ApiError::transaction_not_found(id))
    }

    fn remove_transaction(&self, id: &str) -> Result<Arc<TxEntry>, ApiError> {
        let mut map = self.transactions.lock().map_err(|_| ApiError::unavailable("transaction registry poisoned"))?;
        map.remove(id).ok_or_else(|| ApiError::transaction_not_found(id))
    }

    /// Rolls back the transactions idle for longer than the timeout (a transaction running a
    /// statement is not idle).
    async fn reap_idle(&self) {
        let timeout = self.config.transaction_timeout;
        let expired: Vec<(String, Arc<TxEntry>)> = match self.transactions.lock() {
            Ok(mut map) => {
                let ids: Vec<String> = map
                    .iter()
                    .filter(|(_, e)| e.idle_for() > timeout && e.conn.try_lock().is_ok())
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.into_iter().filter_map(|id| map.remove(&id).map(|e| (id, e))).collect()
            }
            Err(_) => return,
        };
        for (id, entry) in expired {
            tracing::info!(transaction = %id, "rolling back idle transaction");
            let conn = entry.conn.lock().await.take();
            if let Some(conn) = conn {
                finish(conn, "ROLLBACK").await.ok();
            }
        }
    }
}

/// Ends a transaction on `conn` and returns the connection to its pool, or drops it when the
/// connection is no longer usable.
async fn finish(conn: Object, sql: &str) -> Result<(), ApiError> {
    match conn.batch_execute(sql).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let err = ApiError::from_pg(&e);
            // After a failed COMMIT the transaction is over; anything else: do not reuse.
            if e.as_db_error().is_none() || sql != "COMMIT" {
                drop(Object::take(conn));
            }
            Err(err)
        }
    }
}

/// The connection a statement runs on: a pooled one, or the one holding its transaction.
enum Conn {
    Pooled(Box<Object>),
    Tx(Arc<TxEntry>),
}

impl AppState {
    async fn conn_for(&self, transaction_id: Option<&str>, database: Option<&str>) -> Result<Conn, ApiError> {
        self.inner.reap_idle().await;
        match transaction_id {
            Some(id) if !id.is_empty() => Ok(Conn::Tx(self.inner.transaction(id)?)),
            _ => Ok(Conn::Pooled(Box::new(self.inner.connection(database).await?))),
        }
    }

    /// Runs `work` on the connection, under the statement timeout.
    async fn with_conn<T>(
        &self,
        conn: Conn,
        transaction_id: Option<&str>,
        continue_after_timeout: bool,
        work: impl AsyncFnOnce(&Client) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let timeout = self.inner.config.statement_timeout;
        match conn {
            Conn::Pooled(object) => {
                let client: &Client = &object;
                let result = run_with_timeout(client, timeout, continue_after_timeout, work(client)).await;
                if matches!(&result, Err(e) if e.kind == TIMED_OUT) {
                    // The work was cut short: a batch's own BEGIN may be open without its
                    // ROLLBACK, and a cancel that lands late would stop the next caller's
                    // statement. The connection does not go back to the pool; a statement left
                    // to run (`continueAfterTimeout`) finishes first.
                    let client = Object::take(*object);
                    if continue_after_timeout {
                        tokio::spawn(async move { client.simple_query("").await.ok() });
                    }
                }
                result
            }
            Conn::Tx(entry) => {
                entry.touch();
                let mut guard = entry.conn.lock().await;
                let Some(object) = guard.as_ref() else {
                    return Err(ApiError::transaction_not_found(transaction_id.unwrap_or_default()));
                };
                let client: &Client = object;
                let result = run_with_timeout(client, timeout, continue_after_timeout, work(client)).await;
                if result.is_err() {
                    // The service ends a transaction at its first error: later calls in it,
                    // commit and rollback included, answer TransactionNotFoundException.
                    if let Some(conn) = guard.take() {
                        let _ = finish(conn, "ROLLBACK").await;
                    }
                    drop(guard);
                    if let Some(id) = transaction_id {
                        let _ = self.inner.remove_transaction(id);
                    }
                    return result;
                }
                drop(guard);
                entry.touch();
                result
            }
        }
    }

    async fn execute(&self, req: ExecuteRequest) -> Result<Value, ApiError> {
        check_arns(&req.resource_arn, &req.secret_arn)?;
        let sql = required(&req.sql, "sql")?.to_owned();
        let params = parse_params(req.parameters.as_deref().unwrap_or_default(), "parameters")?;
        let json_format = match req.format_records_as.as_deref() {
            None | Some("NONE") => false,
            Some("JSON") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "1 validation error detected: Value '{other}' at 'formatRecordsAs' failed to satisfy constraint: \
                     Member must satisfy enum value set: [NONE, JSON]"
                )));
            }
        };
        let options = req.result_set_options.unwrap_or_default();
        let rendering = Rendering {
            decimal_as_number: options.decimal_return_type.as_deref() == Some("DOUBLE_OR_LONG"),
            long_as_string: options.long_return_type.as_deref() == Some("STRING"),
        };
        let positional = to_positional(&sql);
        let values = bind(&positional, &params)?;
        let plan = Plan {
            positional: &positional,
            values: &values,
            strict: self.inner.config.strict_types,
            metadata: req.include_result_metadata.unwrap_or(false) && !json_format,
            json_format,
            rendering,
            max_response: self.inner.config.max_response_bytes,
            max_formatted: self.inner.config.max_formatted_records_bytes,
            keyword: leading_keyword(&sql),
        };
        let tx = req.transaction_id.as_deref().filter(|t| !t.is_empty());
        let conn = self.conn_for(tx, req.database.as_deref()).await?;
        let begins_session_tx = tx.is_none() && matches!(plan.keyword.as_str(), "BEGIN" | "START");
        let result = match conn {
            // A BEGIN outside BeginTransaction would leave a pooled connection inside a
            // transaction: run it, then close that connection (the server rolls back).
            Conn::Pooled(object) if begins_session_tx => {
                let client: &Client = &object;
                let timeout = self.inner.config.statement_timeout;
                let result = run_with_timeout(client, timeout, false, run_statement(client, &plan)).await;
                drop(Object::take(*object));
                result
            }
            conn => {
                self.with_conn(conn, tx, req.continue_after_timeout.unwrap_or(false), async |client: &Client| {
                    run_statement(client, &plan).await
                })
                .await
            }
        }?;
        let size = result.to_string().len();
        if !json_format && size > self.inner.config.max_response_bytes {
            return Err(ApiError::response_too_large());
        }
        Ok(result)
    }

    async fn batch_execute(&self, req: BatchExecuteRequest) -> Result<Value, ApiError> {
        check_arns(&req.resource_arn, &req.secret_arn)?;
        let sql = required(&req.sql, "sql")?.to_owned();
        let sets = req
            .parameter_sets
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, set)| parse_params(set, &format!("parameterSets.{}", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        let positional = to_positional(&sql);
        let bound = sets.iter().map(|set| bind(&positional, set)).collect::<Result<Vec<_>, _>>()?;
        let tx = req.transaction_id.as_deref().filter(|t| !t.is_empty());
        let conn = self.conn_for(tx, req.database.as_deref()).await?;
        if bound.is_empty() {
            return Ok(json!({ "updateResults": [] }));
        }
        let strict = self.inner.config.strict_types;
        let implicit_tx = tx.is_none();
        let count = bound.len();
        self.with_conn(conn, tx, false, async |client: &Client| {
            // Without a transaction the batch is atomic: all sets or none.
            if implicit_tx {
                client.batch_execute("BEGIN").await.map_err(|e| ApiError::from_pg(&e))?;
            }
            let result = run_batch(client, &positional.sql, &bound, strict).await;
            if implicit_tx {
                let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
                client.batch_execute(end).await.map_err(|e| ApiError::from_pg(&e))?;
            }
            result
        })
        .await?;
        let results: Vec<Value> = (0..count).map(|_| json!({ "generatedFields": [] })).collect();
        Ok(json!({ "updateResults": results }))
    }

    async fn begin(&self, req: BeginRequest) -> Result<Value, ApiError> {
        check_arns(&req.resource_arn, &req.secret_arn)?;
        self.inner.reap_idle().await;
        let database = req.database.clone().unwrap_or_else(|| self.inner.default_database.clone());
        let conn = self.inner.connection(Some(&database)).await?;
        conn.batch_execute("BEGIN").await.map_err(|e| ApiError::from_pg(&e))?;
        let id = transaction_id();
        let entry =
            Arc::new(TxEntry { database, conn: AsyncMutex::new(Some(conn)), last_used: StdMutex::new(Instant::now()) });
        self.inner
            .transactions
            .lock()
            .map_err(|_| ApiError::unavailable("transaction registry poisoned"))?
            .insert(id.clone(), entry);
        Ok(json!({ "transactionId": id }))
    }

    async fn end(&self, req: EndRequest, commit: bool) -> Result<Value, ApiError> {
        check_arns(&req.resource_arn, &req.secret_arn)?;
        let id = required(&req.transaction_id, "transactionId")?;
        self.inner.reap_idle().await;
        let entry = self.inner.remove_transaction(id)?;
        tracing::debug!(transaction = %id, database = %entry.database, commit, "ending transaction");
        let conn = entry.conn.lock().await.take().ok_or_else(|| ApiError::transaction_not_found(id))?;
        if commit {
            finish(conn, "COMMIT").await?;
            Ok(json!({ "transactionStatus": "Transaction Committed" }))
        } else {
            finish(conn, "ROLLBACK").await?;
            Ok(json!({ "transactionStatus": "Rollback Complete" }))
        }
    }
}

/// A transaction id: opaque, long and random, like the real service's.
fn transaction_id() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn run_with_timeout<T>(
    client: &Client,
    timeout: Duration,
    continue_after_timeout: bool,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => {
            if !continue_after_timeout {
                client.cancel_token().cancel_query(NoTls).await.ok();
            }
            Err(ApiError::statement_timeout())
        }
    }
}

/// Everything needed to run one Execute.
struct Plan<'a> {
    positional: &'a Positional,
    values: &'a [&'a Param],
    strict: bool,
    metadata: bool,
    json_format: bool,
    rendering: Rendering,
    max_response: usize,
    max_formatted: usize,
    keyword: String,
}

async fn run_statement(client: &Client, plan: &Plan<'_>) -> Result<Value, ApiError> {
    use futures_util::TryStreamExt as _;

    let (statement, encoded) = prepare(client, &plan.positional.sql, plan.values, plan.strict).await?;
    let decoders = statement.columns().iter().map(|c| decoder_for(c.type_())).collect::<Result<Vec<_>, _>>()?;
    let stream = client.query_raw(&statement, encoded.iter()).await.map_err(|e| ApiError::from_pg(&e))?;
    futures_util::pin_mut!(stream);

    let mut records: Vec<Value> = Vec::new();
    let mut formatted = String::from("[");
    let mut size = 0usize;
    let keys: Vec<String> =
        statement.columns().iter().map(|c| Value::String(c.name().to_owned()).to_string()).collect();
    while let Some(row) = stream.try_next().await.map_err(|e| ApiError::from_pg(&e))? {
        let mut outs = Vec::with_capacity(decoders.len());
        let mut row_bytes = 0usize;
        for (i, decoder) in decoders.iter().enumerate() {
            let raw: Option<Raw<'_>> = row.try_get(i).map_err(|e| ApiError::from_pg(&e))?;
            row_bytes += raw.as_ref().map_or(0, |r| r.0.len());
            outs.push(decode(*decoder, raw.map(|r| r.0))?);
        }
        if row_bytes > MAX_ROW_BYTES {
            return Err(ApiError::row_too_large(row_bytes));
        }
        if plan.json_format {
            if formatted.len() > 1 {
                formatted.push(',');
            }
            formatted.push('{');
            for (i, (key, out)) in keys.iter().zip(&outs).enumerate() {
                if i > 0 {
                    formatted.push(',');
                }
                formatted.push_str(key);
                formatted.push(':');
                formatted.push_str(&plain_json(out, plan.rendering).to_string());
            }
            formatted.push('}');
            if formatted.len() > plan.max_formatted {
                return Err(ApiError::response_too_large());
            }
        } else {
            let record = Value::Array(outs.iter().map(|o| field_json(o, plan.rendering)).collect());
            size += record.to_string().len() + 1;
            if size > plan.max_response {
                return Err(ApiError::response_too_large());
            }
            records.push(record);
        }
    }
    let affected = stream.rows_affected().unwrap_or(0);
    let returns_rows = !statement.columns().is_empty();
    let query_only = matches!(plan.keyword.as_str(), "SELECT" | "VALUES" | "TABLE" | "SHOW" | "EXPLAIN" | "FETCH");
    let mut body = Map::new();
    body.insert(
        "numberOfRecordsUpdated".to_owned(),
        Value::from(if returns_rows && query_only { 0 } else { affected }),
    );
    if !returns_rows {
        body.insert("generatedFields".to_owned(), json!([]));
    } else if plan.json_format {
        formatted.push(']');
        body.insert("formattedRecords".to_owned(), Value::String(formatted));
    } else {
        body.insert("records".to_owned(), Value::Array(records));
        if plan.metadata {
            let tables = table_columns(client, &statement).await?;
            body.insert("columnMetadata".to_owned(), Value::Array(column_metadata(&statement, &tables)));
        }
    }
    Ok(Value::Object(body))
}

async fn run_batch(client: &Client, sql: &str, sets: &[Vec<&Param>], strict: bool) -> Result<(), ApiError> {
    let Some(first) = sets.first() else { return Ok(()) };
    let (statement, encoded) = prepare(client, sql, first, strict).await?;
    client.execute_raw(&statement, encoded.iter()).await.map_err(|e| ApiError::from_pg(&e))?;
    for set in &sets[1..] {
        let encoded = encode_all(&statement, set)?;
        client.execute_raw(&statement, encoded.iter()).await.map_err(|e| ApiError::from_pg(&e))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Handlers.

async fn execute_handler(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(async { state.execute(parse_body(body)?).await }.await)
}

async fn batch_execute_handler(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(async { state.batch_execute(parse_body(body)?).await }.await)
}

async fn begin_handler(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(async { state.begin(parse_body(body)?).await }.await)
}

async fn commit_handler(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(async { state.end(parse_body(body)?, true).await }.await)
}

async fn rollback_handler(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(async { state.end(parse_body(body)?, false).await }.await)
}

// ---------------------------------------------------------------------------------------------

/// PostgreSQL's binary formats for the types the emulator reads and writes, and the Data API's
/// text forms of dates and times.
mod codec {
    use std::fmt::Write as _;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
    const PG_EPOCH_DAYS: i64 = 10_957;
    const MICROS_PER_DAY: i64 = 86_400_000_000;

    /// Bounds-checked big-endian reads.
    pub(super) struct Reader<'a> {
        buf: &'a [u8],
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(buf: &'a [u8]) -> Self {
            Reader { buf }
        }

        pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if self.buf.len() < n {
                return None;
            }
            let (head, tail) = self.buf.split_at(n);
            self.buf = tail;
            Some(head)
        }

        fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
            self.take(N)?.try_into().ok()
        }

        pub(super) fn u8(&mut self) -> Option<u8> {
            Some(self.array::<1>()?[0])
        }

        pub(super) fn i16(&mut self) -> Option<i16> {
            Some(i16::from_be_bytes(self.array()?))
        }

        pub(super) fn u16(&mut self) -> Option<u16> {
            Some(u16::from_be_bytes(self.array()?))
        }

        pub(super) fn i32(&mut self) -> Option<i32> {
            Some(i32::from_be_bytes(self.array()?))
        }

        pub(super) fn u32(&mut self) -> Option<u32> {
            Some(u32::from_be_bytes(self.array()?))
        }

        pub(super) fn i64(&mut self) -> Option<i64> {
            Some(i64::from_be_bytes(self.array()?))
        }
    }

    fn write_date(out: &mut String, days_since_1970: i64) {
        let (y, m, d) = super::super::civil_from_days(days_since_1970);
        if y > 0 {
            let _ = write!(out, "{y:04}-{m:02}-{d:02}");
        } else {
            let _ = write!(out, "{:04}-{m:02}-{d:02} BC", 1 - y);
        }
    }

    fn write_time(out: &mut String, micros_of_day: i64) {
        let secs = micros_of_day / 1_000_000;
        let frac = micros_of_day % 1_000_000;
        let _ = write!(out, "{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        if frac != 0 {
            let digits = format!("{frac:06}");
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
    }

    /// `YYYY-MM-DD HH:MM:SS[.ffffff]` (trailing zeros of the fraction dropped), in UTC for a
    /// timestamptz: the real service's text, without an offset.
    pub(super) fn format_timestamp(micros_since_2000: i64) -> String {
        match micros_since_2000 {
            i64::MAX => return "infinity".to_owned(),
            i64::MIN => return "-infinity".to_owned(),
            _ => {}
        }
        let days = micros_since_2000.div_euclid(MICROS_PER_DAY);
        let time = micros_since_2000.rem_euclid(MICROS_PER_DAY);
        let mut out = String::with_capacity(26);
        let mut date = String::new();
        write_date(&mut date, days + PG_EPOCH_DAYS);
        let (date, bc) = match date.strip_suffix(" BC") {
            Some(d) => (d.to_owned(), true),
            None => (date, false),
        };
        out.push_str(&date);
        out.push(' ');
        write_time(&mut out, time);
        if bc {
            out.push_str(" BC");
        }
        out
    }

    pub(super) fn format_date(days_since_2000: i32) -> String {
        match days_since_2000 {
            i32::MAX => return "infinity".to_owned(),
            i32::MIN => return "-infinity".to_owned(),
            _ => {}
        }
        let mut out = String::with_capacity(10);
        write_date(&mut out, i64::from(days_since_2000) + PG_EPOCH_DAYS);
        out
    }

    pub(super) fn format_time(micros_of_day: i64) -> String {
        let mut out = String::with_capacity(15);
        write_time(&mut out, micros_of_day.clamp(0, MICROS_PER_DAY));
        out
    }

    fn digits(s: &str, n: usize) -> Option<i64> {
        (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    }

    /// `YYYY-MM-DD` to days since 2000-01-01.
    pub(super) fn parse_date(s: &str) -> Option<i32> {
        let s = s.trim();
        let mut parts = s.splitn(3, '-');
        let y = digits(parts.next()?, 4)?;
        let m = u32::try_from(digits(parts.next()?, 2)?).ok()?;
        let d = u32::try_from(digits(parts.next()?, 2)?).ok()?;
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        i32::try_from(super::super::days_from_civil(y, m, d) - PG_EPOCH_DAYS).ok()
    }

    fn days_in_month(y: i64, m: u32) -> u32 {
        match m {
            4 | 6 | 9 | 11 => 30,
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            2 => 28,
            _ => 31,
        }
    }

    /// `HH:MM:SS[.f{1,9}]` (or `HH:MM`) to microseconds since midnight; 24:00:00 is allowed.
    pub(super) fn parse_time(s: &str) -> Option<i64> {
        let s = s.trim();
        let (hms, frac) = match s.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let mut parts = hms.split(':');
        let h = digits(parts.next()?, 2)?;
        let m = digits(parts.next()?, 2)?;
        let sec = match parts.next() {
            Some(p) => digits(p, 2)?,
            None if frac.is_none() => 0,
            None => return None,
        };
        if parts.next().is_some() || h > 24 || m > 59 || sec > 60 {
            return None;
        }
        let micros = match frac {
            None => 0,
            Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
                let padded = format!("{f:0<9}");
                let nanos: i64 = padded.parse().ok()?;
                // Round to microseconds, half away from zero, as PostgreSQL does.
                (nanos + 500) / 1000
            }
            Some(_) => return None,
        };
        let total = ((h * 60 + m) * 60 + sec) * 1_000_000 + micros;
        (total <= MICROS_PER_DAY).then_some(total)
    }

    /// `YYYY-MM-DD[ T]HH:MM:SS[.f]` (and, for timestamptz, an optional `Z` or `±HH[:MM]`; no
    /// offset means UTC) to microseconds since 2000-01-01.
    pub(super) fn parse_timestamp(s: &str, with_zone: bool) -> Option<i64> {
        let s = s.trim();
        let (date, rest) = s.split_at_checked(10)?;
        let days = i64::from(parse_date(date)?);
        let rest = rest.strip_prefix([' ', 'T'])?;
        let (time, offset_secs) = if with_zone { split_offset(rest)? } else { (rest, 0) };
        let micros = parse_time(time)?;
        days.checked_mul(MICROS_PER_DAY)?.checked_add(micros)?.checked_sub(offset_secs * 1_000_000)
    }

    fn split_offset(s: &str) -> Option<(&str, i64)> {
        if let Some(t) = s.strip_suffix('Z').or_else(|| s.strip_suffix(" UTC")) {
            return Some((t.trim_end(), 0));
        }
        let Some(pos) = s.rfind(['+', '-']) else { return Some((s, 0)) };
        let (time, offset) = s.split_at(pos);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let offset = &offset[1..];
        let (h, m) = match offset.split_once(':') {
            Some((h, m)) => (digits(h, 2)?, digits(m, 2)?),
            None if offset.len() == 4 => (digits(offset.get(..2)?, 2)?, digits(offset.get(2..)?, 2)?),
            None => (digits(offset, 2)?, 0),
        };
        if h > 15 || m > 59 {
            return None;
        }
        Some((time.trim_end(), sign * (h * 3600 + m * 60)))
    }

    /// PostgreSQL's binary numeric to its text form (as `numeric_out` writes it).
    pub(super) fn numeric_to_text(raw: &[u8]) -> Option<String> {
        let mut r = Reader::new(raw);
        let ndigits = usize::try_from(r.i16()?).ok()?;
        let weight = i64::from(r.i16()?);
        let sign = r.u16()?;
        let dscale = usize::try_from(r.i16()?).ok()?;
        let mut groups = Vec::with_capacity(ndigits);
        for _ in 0..ndigits {
            groups.push(r.i16()?);
        }
        match sign {
            0xC000 => return Some("NaN".to_owned()),
            0xD000 => return Some("Infinity".to_owned()),
            0xF000 => return Some("-Infinity".to_owned()),
            0x0000 | 0x4000 => {}
            _ => return None,
        }
        let group = |i: i64| usize::try_from(i).ok().and_then(|i| groups.get(i).copied()).unwrap_or(0);
        let mut out = String::new();
        if sign == 0x4000 {
            out.push('-');
        }
        if weight < 0 {
            out.push('0');
        } else {
            for i in 0..=weight {
                if i == 0 {
                    let _ = write!(out, "{}", group(i));
                } else {
                    let _ = write!(out, "{:04}", group(i));
                }
            }
        }
        if dscale > 0 {
            let mut frac = String::with_capacity(dscale + 4);
            let mut i = weight + 1;
            while frac.len() < dscale {
                let _ = write!(frac, "{:04}", group(i));
                i += 1;
            }
            frac.truncate(dscale);
            out.push('.');
            out.push_str(&frac);
        }
        Some(out)
    }

    /// Decimal text (`[+-]digits[.digits][e[+-]n]`, `NaN`, `[+-]Infinity`) to binary numeric.
    pub(super) fn numeric_from_text(text: &str) -> Option<Vec<u8>> {
        let t = text.trim();
        let special = match t.to_ascii_lowercase().as_str() {
            "nan" => Some(0xC000u16),
            "infinity" | "+infinity" | "inf" | "+inf" => Some(0xD000),
            "-infinity" | "-inf" => Some(0xF000),
            _ => None,
        };
        if let Some(sign) = special {
            let mut out = Vec::with_capacity(8);
            out.extend_from_slice(&0i16.to_be_bytes());
            out.extend_from_slice(&0i16.to_be_bytes());
            out.extend_from_slice(&sign.to_be_bytes());
            out.extend_from_slice(&0i16.to_be_bytes());
            return Some(out);
        }
        let (negative, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(pos) => (&t[..pos], t[pos + 1..].parse::<i64>().ok()?),
            None => (t, 0),
        };
        // `abs` would overflow on i64::MIN (a panic in a debug build).
        if !(-1000..=1000).contains(&exponent) {
            return None;
        }
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if (int_part.is_empty() && frac_part.is_empty())
            || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // All digits, and where the decimal point falls among them.
        let all: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).map(|b| b - b'0').collect();
        let point = i64::try_from(int_part.len()).ok()? + exponent;
        let frac_len = i64::try_from(frac_part.len()).ok()?;
        let dscale = u16::try_from((frac_len - exponent).max(0)).ok()?;
        // Align to base-10000 groups: pad on the left so the point falls on a group boundary.
        let pad_left = usize::try_from((4 - point.rem_euclid(4)) % 4).ok()?;
        let mut padded = vec![0u8; pad_left];
        padded.extend_from_slice(&all);
        while padded.len() % 4 != 0 {
            padded.push(0);
        }
        let first_group_weight = (point + i64::try_from(pad_left).ok()?) / 4 - 1;
        let mut groups: Vec<i16> =
            padded.chunks(4).map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(*d))).collect();
        // Leading zero groups dropped in one move: one at a time, 4 MB of zeros took minutes.
        let zeros = groups.iter().take_while(|g| **g == 0).count();
        groups.drain(..zeros);
        let mut weight = first_group_weight - i64::try_from(zeros).ok()?;
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        let ndigits = i16::try_from(groups.len()).ok()?;
        let weight = i16::try_from(weight).ok()?;
        let sign: u16 = if negative && !groups.is_empty() { 0x4000 } else { 0 };
        let mut out = Vec::with_capacity(8 + groups.len() * 2);
        out.extend_from_slice(&ndigits.to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&dscale.to_be_bytes());
        for g in groups {
            out.extend_from_slice(&g.to_be_bytes());
        }
        Some(out)
    }

    /// Binary inet/cidr to text: `addr` or `addr/bits`.
    pub(super) fn inet_to_text(raw: &[u8]) -> Option<String> {
        let mut r = Reader::new(raw);
        let family = r.u8()?;
        let bits = r.u8()?;
        let is_cidr = r.u8()? != 0;
        let len = usize::from(r.u8()?);
        let addr = r.take(len)?;
        let (ip, max) = match family {
            2 => (IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?)), 32),
            3 => (IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?)), 128),
            _ => return None,
        };
        Some(if is_cidr || bits != max { format!("{ip}/{bits}") } else { ip.to_string() })
    }

    pub(super) fn inet_from_text(text: &str, cidr: bool) -> Option<Vec<u8>> {
        let (addr, bits) = match text.trim().split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (text.trim(), None),
        };
        let ip: IpAddr = addr.parse().ok()?;
        let (family, bytes, max) = match ip {
            IpAddr::V4(v4) => (2u8, v4.octets().to_vec(), 32u8),
            IpAddr::V6(v6) => (3u8, v6.octets().to_vec(), 128u8),
        };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return None;
        }
        let mut out = vec![family, bits, u8::from(cidr), u8::try_from(bytes.len()).ok()?];
        out.extend_from_slice(&bytes);
        Some(out)
    }

    /// A binary array: its dimensions and its elements in row-major order.
    pub(super) struct Array<'a> {
        pub(super) dims: Vec<usize>,
        pub(super) elements: Vec<Option<&'a [u8]>>,
    }

    pub(super) fn parse_array(raw: &[u8]) -> Option<Array<'_>> {
        let mut r = Reader::new(raw);
        let ndim = usize::try_from(r.i32()?).ok()?;
        if ndim > 6 {
            return None;
        }
        let _has_nulls = r.i32()?;
        let _elem_oid = r.u32()?;
        let mut dims = Vec::with_capacity(ndim);
        for _ in 0..ndim {
            dims.push(usize::try_from(r.i32()?).ok()?);
            let _lower_bound = r.i32()?;
        }
        let count = if ndim == 0 { 0 } else { dims.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d))? };
        if count > raw.len() {
            return None;
        }
        let mut elements = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.i32()?;
            elements.push(match usize::try_from(len) {
                Ok(n) => Some(r.take(n)?),
                Err(_) => None,
            });
        }
        if count == 0 {
            // Empty (PostgreSQL writes no dimensions for '{}'): nothing to nest.
            dims = vec![0];
        }
        Some(Array { dims, elements })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_placeholders_become_positional() {
        fn check(sql: &str, expected: &str, names: &[&str]) {
            let p = to_positional(sql);
            assert_eq!(p.sql, expected, "{sql}");
            assert_eq!(p.names, names, "{sql}");
        }
        check("select :a, :b, :a", "select $1, $2, $1", &["a", "b"]);
        check("select :id::uuid", "select $1::uuid", &["id"]);
        check("select x::text from t where y = :y_1", "select x::text from t where y = $1", &["y_1"]);
        check("select ':no', \":no\" -- :no\n, :yes", "select ':no', \":no\" -- :no\n, $1", &["yes"]);
        check("select $$ :no $$, $t$:no$t$, :yes", "select $$ :no $$, $t$:no$t$, $1", &["yes"]);
        check("select a[1:2], :é", "select a[1:2], :é", &[]);
        check("select 1", "select 1", &[]);
    }

    #[test]
    fn leading_keywords() {
        assert_eq!(leading_keyword("  -- c\n /* x */ (select 1)"), "SELECT");
        assert_eq!(leading_keyword("insert into t values (1)"), "INSERT");
        assert_eq!(leading_keyword("begin"), "BEGIN");
        assert_eq!(leading_keyword(""), "");
    }

    #[test]
    fn timestamps_round_trip_through_text() {
        for (text, micros) in [
            ("2000-01-01 00:00:00", 0),
            ("1999-12-31 23:59:59.999999", -1),
            ("2024-02-29 12:34:56.123456", 762_525_296_123_456),
            ("1970-01-01 00:00:00", -946_684_800_000_000),
        ] {
            assert_eq!(codec::parse_timestamp(text, false), Some(micros), "{text}");
            assert_eq!(codec::format_timestamp(micros), text);
        }
        assert_eq!(codec::format_timestamp(100_000), "2000-01-01 00:00:00.1");
        assert_eq!(codec::parse_timestamp("2000-01-01T01:00:00+01:00", true), Some(0));
        assert_eq!(codec::parse_timestamp("2000-01-01 00:00:00Z", true), Some(0));
        assert_eq!(codec::parse_timestamp("2000-02-30 00:00:00", false), None);
        assert_eq!(codec::parse_timestamp("junk", false), None);
        assert_eq!(codec::parse_timestamp("2000-01-01 00:00:00+01", false), None);
        // A four-byte offset that is not four characters: refused, not a panic slicing a
        // character in two.
        for text in ["2024-01-01 00:00:00+aé9", "2024-01-01 00:00:00-é12", "2024-01-01 00:00:00+1é"] {
            assert_eq!(codec::parse_timestamp(text, true), None, "{text}");
        }
        assert_eq!(codec::parse_date("2000-01-02"), Some(1));
        assert_eq!(codec::format_date(-1), "1999-12-31");
        assert_eq!(codec::parse_time("01:02:03.5"), Some(3_723_500_000));
        assert_eq!(codec::format_time(3_723_500_000), "01:02:03.5");
    }

    /// The decimal `numeric_out` writes for `[-]int.frac e exp`, by moving the point on the
    /// digits as text: leading zeros dropped, the scale `frac - exp` kept, no sign on zero.
    fn reference_numeric(negative: bool, int: &str, frac: &str, exp: i64) -> String {
        let digits = format!("{int}{frac}");
        let scale = usize::try_from((frac.len() as i64 - exp).max(0)).unwrap_or(0);
        let point = int.len() as i64 + exp;
        let (whole, fraction) = if point <= 0 {
            (String::new(), format!("{}{digits}", "0".repeat(usize::try_from(-point).unwrap_or(0))))
        } else if point as usize >= digits.len() {
            (format!("{digits}{}", "0".repeat(point as usize - digits.len())), String::new())
        } else {
            (digits[..point as usize].to_owned(), digits[point as usize..].to_owned())
        };
        let mut fraction: String = fraction.chars().chain(std::iter::repeat('0')).take(scale).collect();
        if fraction.len() < scale {
            fraction.push_str(&"0".repeat(scale - fraction.len()));
        }
        let whole = whole.trim_start_matches('0');
        let whole = if whole.is_empty() { "0" } else { whole };
        let zero = digits.bytes().all(|b| b == b'0');
        let sign = if negative && !zero { "-" } else { "" };
        if scale == 0 { format!("{sign}{whole}") } else { format!("{sign}{whole}.{fraction}") }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// Any decimal, with leading or trailing zeros and an exponent, comes back from binary as
        /// PostgreSQL would print it.
        #[test]
        fn numerics_read_as_postgres_prints_them(
            negative: bool,
            int in "[0-9]{0,24}",
            frac in "[0-9]{0,24}",
            exp in -40i64..40,
            with_exp: bool,
        ) {
            proptest::prop_assume!(!(int.is_empty() && frac.is_empty()));
            let exp = if with_exp { exp } else { 0 };
            let mut text = format!("{}{int}", if negative { "-" } else { "" });
            if !frac.is_empty() {
                text = format!("{text}.{frac}");
            }
            if with_exp {
                text = format!("{text}e{exp}");
            }
            let bytes = codec::numeric_from_text(&text);
            proptest::prop_assert!(bytes.is_some(), "{}", text);
            let shown = bytes.and_then(|b| codec::numeric_to_text(&b));
            proptest::prop_assert_eq!(shown, Some(reference_numeric(negative, &int, &frac, exp)), "{}", text);
        }
    }

    #[test]
    fn numerics_round_trip_through_binary() {
        for (input, output) in [
            ("0", "0"),
            ("1", "1"),
            ("-1", "-1"),
            ("12345.678", "12345.678"),
            ("0.0001", "0.0001"),
            ("0.00001234", "0.00001234"),
            ("100000000", "100000000"),
            ("1.50", "1.50"),
            ("-0.5", "-0.5"),
            ("1e3", "1000"),
            ("1.5e-3", "0.0015"),
            ("NaN", "NaN"),
            ("-Infinity", "-Infinity"),
            ("99999999999999999999.000000000001", "99999999999999999999.000000000001"),
        ] {
            let bytes = codec::numeric_from_text(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(codec::numeric_to_text(&bytes).as_deref(), Some(output), "{input}");
        }
        for bad in ["", ".", "1.2.3", "abc", "1e", "--1", "1e99999", "1e-9223372036854775808", "1e9223372036854775807"]
        {
            assert!(codec::numeric_from_text(bad).is_none(), "{bad}");
        }
        // Leading zeros, many groups of them, before and after the point.
        let zeros = format!("{}1.5", "0".repeat(100_001));
        let bytes = codec::numeric_from_text(&zeros).expect("zeros");
        assert_eq!(codec::numeric_to_text(&bytes).as_deref(), Some("1.5"));
        let small = format!("0.{}7", "0".repeat(4_097));
        let bytes = codec::numeric_from_text(&small).expect("small");
        assert_eq!(codec::numeric_to_text(&bytes), Some(small));
    }

    #[test]
    fn fields_parse_like_the_sdk_writes_them() {
        let ok = |v: Value| parse_field(&v, "p").ok();
        assert_eq!(ok(json!({"isNull": true})), Some(FieldValue::Null));
        assert_eq!(ok(json!({"longValue": 5})), Some(FieldValue::Long(5)));
        assert_eq!(ok(json!({"doubleValue": 1.5})), Some(FieldValue::Double(1.5)));
        assert_eq!(ok(json!({"blobValue": "AAE="})), Some(FieldValue::Blob(vec![0, 1])));
        assert_eq!(ok(json!({"stringValue": "x", "longValue": null})), Some(FieldValue::Str("x".into())));
        assert_eq!(ok(json!({})), None);
        assert_eq!(ok(json!({"longValue": 1, "stringValue": "x"})), None);
        assert_eq!(ok(json!({"longValue": 1.5})), None);
        assert_eq!(ok(json!({"arrayValue": {"longValues": [1]}})), None);
        assert_eq!(ok(json!("x")), None);
    }
}
