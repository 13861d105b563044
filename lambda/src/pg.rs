//! The direct Postgres driver of the SQL-executor seam: tokio-postgres over a deadpool pool
//! (local runs, RDS Proxy, benchmarks), with TLS as libpq's `sslmode` says ([`crate::pg_tls`]).
//!
//! Parameters bind by the type the server inferred for each placeholder (the store's SQL casts
//! every one), so one [`Param`] works for `uuid`, `text`, `jsonb`, `timestamptz`, ... and
//! [`Param::Null`] is a NULL of any type. Result cells are read by column type; anything but
//! integers, floats, booleans and text is a decode error telling to cast in SQL, which keeps this
//! driver and the Data API driver returning the same values.

use crate::db::{Cell, DbError, Executor, Row, Transaction};
use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use jobs_core::sql::Param;
use std::error::Error as StdError;
use std::time::Duration;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01T00:00:00Z).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// How a [`PgExecutor`] connects. Its `Debug` leaves the password out.
#[derive(Clone)]
pub struct PgOptions {
    /// A `postgres://` URL or a `key=value` connection string (`DATABASE_URL`).
    pub url: String,
    /// Runs every statement with `search_path` set to this schema (tests: a fresh schema each).
    /// Must be a plain identifier (letters, digits, `_`).
    pub schema: Option<String>,
    /// The most connections the pool opens.
    pub max_connections: usize,
    /// How long to wait for a free connection, and for a new one to connect.
    pub timeout: Duration,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact_connection(&self.url))
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A connection URL or `key=value` string as it may be shown: the URL's credentials become
/// `***`, and so does everything from a `password` key on (its value may be quoted and hold
/// spaces; the keys after it are not worth the risk of a misread).
pub fn redact_connection(conn: &str) -> String {
    if conn.contains("://") {
        return crate::search::redact(conn);
    }
    match conn.to_ascii_lowercase().find("password") {
        Some(at) => format!("{}password=***", &conn[..at]),
        None => conn.to_owned(),
    }
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions { url: url.into(), schema: None, max_connections: 16, timeout: Duration::from_secs(10) }
    }

    /// From `DATABASE_URL`; `None` when it is unset or empty.
    pub fn from_env() -> Option<PgOptions> {
        std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty()).map(PgOptions::new)
    }

    pub fn schema(mut self, schema: impl Into<String>) -> PgOptions {
        self.schema = Some(schema.into());
        self
    }

    pub fn max_connections(mut self, n: usize) -> PgOptions {
        self.max_connections = n.max(1);
        self
    }
}

/// Whether `name` can be used unquoted-safe in `search_path` and quoted in DDL.
pub fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// A pool of direct Postgres connections. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgExecutor {
    pool: Pool,
    /// The connector, kept to send cancel requests with the connections' TLS settings.
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for PgExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgExecutor").field("status", &self.pool.status()).finish()
    }
}

impl PgExecutor {
    /// Builds the pool; connections open lazily, on first use.
    pub fn connect(opts: &PgOptions) -> Result<PgExecutor, DbError> {
        let (url, tls) = crate::pg_tls::split(&opts.url, |k| std::env::var(k).ok())
            .map_err(|e| DbError::Unavailable(format!("invalid database url: {e}")))?;
        let mut cfg: tokio_postgres::Config =
            url.parse().map_err(|e| DbError::Unavailable(format!("invalid database url: {e}")))?;
        cfg.ssl_mode(tls.pg_mode());
        let connector = tls.connector().map_err(DbError::Unavailable)?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(opts.timeout);
        }
        if cfg.get_application_name().is_none() {
            cfg.application_name("jobs");
        }
        if let Some(schema) = &opts.schema {
            if !is_plain_identifier(schema) {
                return Err(DbError::Unavailable(format!("invalid schema name {schema:?}")));
            }
            let options = match cfg.get_options() {
                Some(existing) if !existing.is_empty() => format!("{existing} -c search_path={schema}"),
                _ => format!("-c search_path={schema}"),
            };
            cfg.options(options);
        }
        let manager =
            Manager::from_config(cfg, connector.clone(), ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(opts.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(opts.timeout))
            .create_timeout(Some(opts.timeout))
            .build()
            .map_err(|e| DbError::Unavailable(format!("building the pool: {e}")))?;
        Ok(PgExecutor { pool, tls: connector })
    }

    /// From `DATABASE_URL` (see [`PgOptions::from_env`]).
    pub fn from_env() -> Result<PgExecutor, DbError> {
        let opts = PgOptions::from_env().ok_or_else(|| DbError::Unavailable("DATABASE_URL is not set".into()))?;
        PgExecutor::connect(&opts)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => map_err(e),
            other => DbError::Unavailable(other.to_string()),
        })
    }
}

#[async_trait]
impl Executor for PgExecutor {
    type Tx<'a> = PgTransaction;

    async fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError> {
        let conn = InFlight::new(self.client().await?, &self.tls);
        let rows = run_query(conn.client()?, sql, params).await;
        conn.done();
        rows
    }

    async fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        let conn = InFlight::new(self.client().await?, &self.tls);
        let n = run_execute(conn.client()?, sql, params).await;
        conn.done();
        n
    }

    async fn begin(&self) -> Result<PgTransaction, DbError> {
        let conn = InFlight::new(self.client().await?, &self.tls);
        match conn.client()?.batch_execute("BEGIN").await {
            Ok(()) => Ok(PgTransaction { conn }),
            Err(e) => {
                conn.done();
                Err(map_err(e))
            }
        }
    }
}

/// A pooled connection with a statement in flight. Dropped before [`InFlight::done`] (the
/// caller's future was dropped: a timeout, an interrupt, a client gone), the connection leaves
/// the pool and the server is asked to cancel what it runs. Without that the statement ran on
/// to its end, holding its locks, and the next caller given that connection waited behind it.
/// The connection is not reused after a cancel: a cancel request that lands late would stop
/// the next caller's statement instead.
struct InFlight {
    client: Option<deadpool_postgres::Object>,
    tls: MakeRustlsConnect,
}

impl InFlight {
    fn new(client: deadpool_postgres::Object, tls: &MakeRustlsConnect) -> InFlight {
        InFlight { client: Some(client), tls: tls.clone() }
    }

    fn client(&self) -> Result<&deadpool_postgres::Object, DbError> {
        self.client.as_ref().ok_or_else(|| DbError::Unavailable("the connection was already given back".into()))
    }

    /// The statement ended (well or not): the connection goes back to the pool.
    fn done(mut self) {
        drop(self.client.take());
    }

    /// The connection leaves the pool and closes; a cancel request stops whatever it still runs
    /// (nothing, when idle: then the server just sees the connection close).
    fn abandon(&mut self) {
        let Some(client) = self.client.take() else { return };
        let token = client.cancel_token();
        drop(deadpool_postgres::Object::take(client));
        let tls = self.tls.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = token.cancel_query(tls).await {
                    tracing::debug!(error = %e, "cancelling an abandoned statement");
                }
            });
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// A transaction on one pooled connection. Dropped without `commit`/`rollback`, the connection
/// is closed instead of returned to the pool (and what it still runs cancelled), so the server
/// rolls back and no pooled connection is left inside a transaction.
pub struct PgTransaction {
    conn: InFlight,
}

impl PgTransaction {
    fn client(&self) -> Result<&deadpool_postgres::Object, DbError> {
        self.conn.client()
    }

    async fn finish(self, sql: &str) -> Result<(), DbError> {
        match self.conn.client()?.batch_execute(sql).await {
            Ok(()) => {
                self.conn.done();
                Ok(())
            }
            // The session state is unknown: the connection is not given back to the pool
            // (dropping `self` abandons it).
            Err(e) => Err(map_err(e)),
        }
    }
}

#[async_trait]
impl Transaction for PgTransaction {
    async fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError> {
        run_query(self.client()?, sql, params).await
    }

    async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        run_execute(self.client()?, sql, params).await
    }

    async fn commit(self) -> Result<(), DbError> {
        self.finish("COMMIT").await
    }

    async fn rollback(self) -> Result<(), DbError> {
        self.finish("ROLLBACK").await
    }
}

async fn run_query(client: &deadpool_postgres::Object, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError> {
    let stmt = client.prepare_cached(sql).await.map_err(map_err)?;
    let binds: Vec<Bind<'_>> = params.iter().map(Bind).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&stmt, &refs).await.map_err(map_err)?;
    rows.iter().map(read_row).collect()
}

async fn run_execute(client: &deadpool_postgres::Object, sql: &str, params: &[Param]) -> Result<u64, DbError> {
    let stmt = client.prepare_cached(sql).await.map_err(map_err)?;
    let binds: Vec<Bind<'_>> = params.iter().map(Bind).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
    client.execute(&stmt, &refs).await.map_err(map_err)
}

/// Maps a tokio-postgres error: server errors keep their SQLSTATE; a broken connection (or one
/// that never opened) is `Unavailable`; the rest are statements the client could not run.
pub fn map_err(e: tokio_postgres::Error) -> DbError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if crate::db::is_unavailable_state(code) {
            return DbError::Unavailable(format!("{code}: {}", db.message()));
        }
        let mut message = db.message().to_owned();
        // Not the detail of a not-null or check violation, which quotes the row ("Failing row
        // contains (...)": e-mail addresses, metadata) into the logs with the error.
        if let Some(detail) = db.detail().filter(|_| !matches!(code, "23502" | "23514")) {
            message.push_str(": ");
            message.push_str(detail);
        }
        return DbError::Database { sqlstate: Some(code.to_owned()), message };
    }
    // One walk over the causes: is any an I/O error, and the whole chain for the message
    // ("error performing TLS handshake: invalid peer certificate: ...").
    let mut io = false;
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        io |= s.is::<std::io::Error>();
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_closed() || io || chain.starts_with("error connecting") {
        return DbError::Unavailable(chain);
    }
    let message = match e.source() {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    };
    DbError::Database { sqlstate: None, message }
}

fn read_row(row: &tokio_postgres::Row) -> Result<Row, DbError> {
    (0..row.len()).map(|i| read_cell(row, i)).collect()
}

fn read_cell(row: &tokio_postgres::Row, i: usize) -> Result<Cell, DbError> {
    let column = &row.columns()[i];
    let ty = column.type_();
    let decode = |e: tokio_postgres::Error| DbError::Decode(format!("column {} ({ty}): {e}", column.name()));
    let cell = if *ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i).map_err(decode)?.map(|v| Cell::Int(v.into()))
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i).map_err(decode)?.map(|v| Cell::Int(v.into()))
    } else if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i).map_err(decode)?.map(Cell::Int)
    } else if *ty == Type::OID {
        row.try_get::<_, Option<u32>>(i).map_err(decode)?.map(|v| Cell::Int(v.into()))
    } else if *ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(i).map_err(decode)?.map(|v| Cell::Float(v.into()))
    } else if *ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i).map_err(decode)?.map(Cell::Float)
    } else if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i).map_err(decode)?.map(Cell::Bool)
    } else if is_text(ty) {
        row.try_get::<_, Option<String>>(i).map_err(decode)?.map(Cell::Text)
    } else {
        return Err(DbError::Decode(format!(
            "column {} has type {ty}, which this driver does not read: cast it in SQL \
             (e.g. ::text, ::bigint, or to_char for timestamps)",
            column.name()
        )));
    };
    Ok(cell.unwrap_or(Cell::Null))
}

fn is_text(ty: &Type) -> bool {
    *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::BPCHAR || *ty == Type::NAME || *ty == Type::UNKNOWN
}

/// A [`Param`] bound by the type the server inferred for its placeholder.
#[derive(Debug)]
struct Bind<'a>(&'a Param);

type BoxError = Box<dyn StdError + Sync + Send>;

fn cannot(param: &Param, ty: &Type) -> BoxError {
    let kind = match param {
        Param::Null => "null",
        Param::Bool(_) => "a boolean",
        Param::Int(_) => "an integer",
        Param::Float(_) => "a float",
        Param::Text(_) => "text",
        Param::Uuid(_) => "a uuid",
        Param::Timestamp(_) => "a timestamp",
        Param::Json(_) => "json",
    };
    format!("cannot bind {kind} to a parameter of type {ty}: cast the placeholder in SQL").into()
}

impl ToSql for Bind<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let p = self.0;
        match p {
            Param::Null => Ok(IsNull::Yes),
            Param::Bool(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            Param::Int(v) => {
                if *ty == Type::INT8 {
                    v.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(*v).map_err(|_| format!("{v} does not fit int4"))?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(*v).map_err(|_| format!("{v} does not fit int2"))?.to_sql(ty, out)
                } else if *ty == Type::FLOAT8 {
                    (*v as f64).to_sql(ty, out)
                } else if *ty == Type::NUMERIC {
                    numeric_to_sql(&v.to_string(), out)
                } else if is_text(ty) {
                    v.to_string().to_sql(ty, out)
                } else {
                    Err(cannot(p, ty))
                }
            }
            Param::Float(v) => {
                if *ty == Type::FLOAT8 {
                    v.to_sql(ty, out)
                } else if *ty == Type::FLOAT4 {
                    (*v as f32).to_sql(ty, out)
                } else if *ty == Type::NUMERIC && v.is_finite() {
                    // Display never uses an exponent and round-trips the f64.
                    numeric_to_sql(&v.to_string(), out)
                } else {
                    Err(cannot(p, ty))
                }
            }
            Param::Text(s) => {
                if is_text(ty) {
                    s.as_str().to_sql(ty, out)
                } else if *ty == Type::JSON || *ty == Type::JSONB {
                    json_to_sql(s, ty, out)
                } else if *ty == Type::UUID {
                    uuid::Uuid::parse_str(s).map_err(|e| format!("invalid uuid {s:?}: {e}"))?.to_sql(ty, out)
                } else {
                    Err(cannot(p, ty))
                }
            }
            Param::Uuid(u) => {
                if *ty == Type::UUID {
                    u.to_sql(ty, out)
                } else if is_text(ty) {
                    u.hyphenated().to_string().to_sql(ty, out)
                } else {
                    Err(cannot(p, ty))
                }
            }
            Param::Timestamp(micros) => {
                if *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP {
                    let pg = micros.checked_sub(PG_EPOCH_MICROS).ok_or("timestamp out of range")?;
                    out.extend_from_slice(&pg.to_be_bytes());
                    Ok(IsNull::No)
                } else if is_text(ty) {
                    let ts = jobs_core::Timestamp::from_micros(*micros).ok_or("timestamp out of range")?;
                    ts.to_string().to_sql(ty, out)
                } else {
                    Err(cannot(p, ty))
                }
            }
            Param::Json(s) => {
                if *ty == Type::JSON || *ty == Type::JSONB {
                    json_to_sql(s, ty, out)
                } else if is_text(ty) {
                    s.as_str().to_sql(ty, out)
                } else {
                    Err(cannot(p, ty))
                }
            }
            Param::Bool(_) => Err(cannot(p, ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Every type is attempted; `to_sql` explains the ones that cannot be bound.
        true
    }

    to_sql_checked!();
}

/// Encodes a plain decimal (`-12.5`, `100`, `0.001`; no exponent) as Postgres' binary
/// `numeric`: digit count, weight, sign, display scale, then base-10000 digits.
fn numeric_to_sql(decimal: &str, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    let (negative, unsigned) = match decimal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, decimal),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int_part.is_empty() || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(format!("not a plain decimal: {decimal:?}").into());
    }
    let dscale = u16::try_from(frac_part.len()).map_err(|_| "numeric scale too large")?;
    // Pad the integer part on the left and the fraction on the right to whole 4-digit groups.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let digits: String = "0".repeat(int_pad) + int_part + frac_part + &"0".repeat(frac_pad);
    let mut groups: Vec<i16> =
        digits.as_bytes().chunks(4).map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0'))).collect();
    let mut weight = i16::try_from((int_pad + int_part.len()) / 4).map_err(|_| "numeric too large")? - 1;
    let leading = groups.iter().take_while(|&&g| g == 0).count();
    groups.drain(..leading);
    weight -= i16::try_from(leading).map_err(|_| "numeric too large")?;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign: u16 = if negative && !groups.is_empty() { 0x4000 } else { 0 };
    let ndigits = i16::try_from(groups.len()).map_err(|_| "numeric too large")?;
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(IsNull::No)
}

/// `json` is sent as text, `jsonb` as a version byte (1) and text.
fn json_to_sql(s: &str, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    if *ty == Type::JSONB {
        out.extend_from_slice(&[1]);
    }
    out.extend_from_slice(s.as_bytes());
    Ok(IsNull::No)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_the_password_out() {
        let shown = format!("{:?}", PgOptions::new("postgres://jobs:hunter2@db.example.com:5432/jobs"));
        assert!(!shown.contains("hunter2") && shown.contains("db.example.com:5432/jobs"), "{shown}");
        let shown = format!("{:?}", PgOptions::new("host=db user=jobs password=hunter2 dbname=jobs"));
        assert!(!shown.contains("hunter2") && shown.contains("host=db user=jobs password=***"), "{shown}");
        let shown = format!("{:?}", PgOptions::new("host=db password = 'hunter 2' user=jobs"));
        assert!(!shown.contains("hunter") && !shown.contains(" 2'"), "{shown}");
    }

    #[test]
    fn plain_identifiers() {
        for ok in ["public", "t_1", "_x", "jobs_test_0123abcd"] {
            assert!(is_plain_identifier(ok), "{ok}");
        }
        for bad in ["", "1x", "a-b", "a b", "a;drop", "\"x\"", &"x".repeat(64)] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn binds_by_inferred_type() {
        let mut out = BytesMut::new();
        let ts = Bind(&Param::Timestamp(PG_EPOCH_MICROS + 5));
        assert!(matches!(ts.to_sql(&Type::TIMESTAMPTZ, &mut out), Ok(IsNull::No)));
        assert_eq!(&out[..], &5i64.to_be_bytes());

        out.clear();
        let json = Bind(&Param::Json("{}".into()));
        assert!(json.to_sql(&Type::JSONB, &mut out).is_ok());
        assert_eq!(&out[..], b"\x01{}");

        out.clear();
        assert!(matches!(Bind(&Param::Null).to_sql(&Type::UUID, &mut out), Ok(IsNull::Yes)));
        assert!(Bind(&Param::Int(1 << 40)).to_sql(&Type::INT4, &mut out).is_err());
        out.clear();
        assert!(Bind(&Param::Int(-12_345_678)).to_sql(&Type::NUMERIC, &mut out).is_ok());
        // 2 groups (1234, 5678), weight 1, negative, scale 0
        assert_eq!(&out[..], &[0, 2, 0, 1, 0x40, 0, 0, 0, 0x04, 0xD2, 0x16, 0x2E]);
        out.clear();
        assert!(Bind(&Param::Float(0.05)).to_sql(&Type::NUMERIC, &mut out).is_ok());
        // 1 group (0500), weight -1, positive, scale 2
        assert_eq!(&out[..], &[0, 1, 0xFF, 0xFF, 0, 0, 0, 2, 0x01, 0xF4]);
        out.clear();
        assert!(Bind(&Param::Float(f64::NAN)).to_sql(&Type::NUMERIC, &mut out).is_err());
        let err = Bind(&Param::Bool(true)).to_sql(&Type::UUID, &mut out).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("cast the placeholder")));
    }
}
