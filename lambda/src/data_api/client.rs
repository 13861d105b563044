//! The RDS Data API driver: [`Executor`] / [`Transaction`] over aws-sdk-rdsdata.
//!
//! Statements keep the store's positional `$n` placeholders until the last moment, when they
//! become named `:pN` parameters; `Param`s become `SqlParameter`s with the type hints the Data
//! API needs to bind uuid, timestamp and jsonb values. The SDK client is built once and shared
//! (cloning it is cheap); point it at a local server with `AWS_ENDPOINT_URL_RDS_DATA` or
//! [`DataApiConfig::endpoint_url`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_rdsdata::Client;
use aws_sdk_rdsdata::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rdsdata::types::{Field, SqlParameter, TypeHint};
use jobs_core::sql::Param;

use super::Segment;
use crate::db::{Cell, DbError, Executor, Row, Transaction};

/// Which cluster, secret and database the driver talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataApiConfig {
    /// The Aurora cluster's ARN.
    pub resource_arn: String,
    /// The Secrets Manager secret holding the database credentials.
    pub secret_arn: String,
    pub database: String,
    /// Overrides the endpoint (otherwise the SDK's: `AWS_ENDPOINT_URL_RDS_DATA`,
    /// `AWS_ENDPOINT_URL`, or the regional AWS endpoint).
    pub endpoint_url: Option<String>,
}

/// How often and how patiently a call is retried while an Aurora Serverless cluster resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeRetry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each later one.
    pub first_delay: Duration,
}

impl Default for ResumeRetry {
    fn default() -> Self {
        // 0.5 + 1 + 2 + 4 + 8 s: a paused cluster usually resumes within about 15 s.
        ResumeRetry { attempts: 6, first_delay: Duration::from_millis(500) }
    }
}

impl ResumeRetry {
    /// For a caller waiting on an HTTP request (the API function, whose timeout is 10 s): 0.5 +
    /// 1 + 2 s, then `Unavailable` (503 with `Retry-After`). The default's 15.5 s ran past the
    /// function's timeout, which API Gateway answers with a bare 500 and a cold start after.
    pub const FOR_REQUESTS: ResumeRetry = ResumeRetry { attempts: 4, first_delay: Duration::from_millis(500) };

    /// The longest it sleeps between attempts, in all.
    pub fn total_wait(&self) -> Duration {
        (0..self.attempts.saturating_sub(1)).map(|i| self.first_delay.saturating_mul(1 << i.min(20))).sum()
    }
}

/// The Data API driver. Cheap to clone: the SDK client and the configuration are shared.
#[derive(Debug, Clone)]
pub struct RdsDataExecutor {
    client: Client,
    config: Arc<DataApiConfig>,
    retry: ResumeRetry,
}

impl RdsDataExecutor {
    /// Wraps an SDK client built by the caller (its endpoint already chosen).
    pub fn new(client: Client, config: DataApiConfig) -> Self {
        RdsDataExecutor { client, config: Arc::new(config), retry: ResumeRetry::default() }
    }

    /// Builds the SDK client from a loaded `aws_config` (region, credentials, endpoint from the
    /// environment), applying [`DataApiConfig::endpoint_url`] when set.
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, config: DataApiConfig) -> Self {
        let mut builder = aws_sdk_rdsdata::config::Builder::from(sdk);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Self::new(Client::from_conf(builder.build()), config)
    }

    /// Loads the AWS configuration from the environment (as a Lambda function gets it) and
    /// builds the driver. Do this once per process.
    pub async fn from_env(config: DataApiConfig) -> Self {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::from_sdk_config(&sdk, config)
    }

    pub fn with_resume_retry(mut self, retry: ResumeRetry) -> Self {
        self.retry = retry;
        self
    }

    pub fn config(&self) -> &DataApiConfig {
        &self.config
    }

    pub fn sdk_client(&self) -> &Client {
        &self.client
    }

    /// Runs `call` until it succeeds, fails for good, or the cluster is still resuming after
    /// the last attempt.
    async fn with_retry<T, F, Fut>(&self, mut call: F) -> Result<T, DbError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(Failure::NotRun(message)) if attempt < self.retry.attempts => {
                    tracing::info!(attempt, ?delay, %message, "the service ran nothing (resuming, throttled); retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                Err(failure) => return Err(failure.into_db_error()),
            }
        }
    }

    async fn run(&self, sql: &str, params: &[Param], transaction_id: Option<&str>) -> Result<Statement, DbError> {
        let sql = to_named(sql);
        let parameters = parameters(params);
        self.with_retry(|| async {
            let out = self
                .client
                .execute_statement()
                .resource_arn(&self.config.resource_arn)
                .secret_arn(&self.config.secret_arn)
                .database(&self.config.database)
                .sql(&sql)
                .set_parameters(Some(parameters.clone()))
                .set_transaction_id(transaction_id.map(str::to_owned))
                .customize()
                .config_override(at_most_once())
                .send()
                .await
                .map_err(classify)?;
            Ok(Statement { records: out.records, updated: out.number_of_records_updated })
        })
        .await
    }

    async fn query_in(&self, sql: &str, params: &[Param], tx: Option<&str>) -> Result<Vec<Row>, DbError> {
        let statement = self.run(sql, params, tx).await?;
        statement.records.unwrap_or_default().into_iter().map(|record| record.into_iter().map(cell).collect()).collect()
    }

    async fn execute_in(&self, sql: &str, params: &[Param], tx: Option<&str>) -> Result<u64, DbError> {
        let statement = self.run(sql, params, tx).await?;
        Ok(u64::try_from(statement.updated).unwrap_or(0))
    }

    async fn begin_transaction(&self) -> Result<String, DbError> {
        self.with_retry(|| async {
            let out = self
                .client
                .begin_transaction()
                .resource_arn(&self.config.resource_arn)
                .secret_arn(&self.config.secret_arn)
                .database(&self.config.database)
                .send()
                .await
                .map_err(classify)?;
            out.transaction_id
                .ok_or_else(|| Failure::Other(DbError::Decode("BeginTransaction returned no transactionId".into())))
        })
        .await
    }

    async fn end_transaction(&self, id: &str, commit: bool) -> Result<(), Failure> {
        if commit {
            self.client
                .commit_transaction()
                .resource_arn(&self.config.resource_arn)
                .secret_arn(&self.config.secret_arn)
                .transaction_id(id)
                .customize()
                .config_override(at_most_once())
                .send()
                .await
                .map(drop)
                .map_err(classify)
        } else {
            self.client
                .rollback_transaction()
                .resource_arn(&self.config.resource_arn)
                .secret_arn(&self.config.secret_arn)
                .transaction_id(id)
                .customize()
                .config_override(at_most_once())
                .send()
                .await
                .map(drop)
                .map_err(classify)
        }
    }
}

/// The SDK's own retries off, for calls that must not run twice. The SDK's standard mode sends a
/// call again after a 5xx (`DatabaseUnavailableException` is a 504), a dropped connection or a
/// timeout, whatever the call is; but the first attempt may have run: an INSERT retried then
/// answered "duplicate key" for a job it had just created, an UPDATE "version conflict" against
/// itself, a COMMIT "transaction not found" for a transaction it had committed. Such a failure
/// is now `Unavailable`: whether the call ran is unknown, and the caller decides (the API
/// answers 503, the sync claims the batch again later). `BeginTransaction` keeps the SDK's
/// retries (a transaction begun twice holds nothing; the service ends it when idle), and
/// [`RdsDataExecutor::with_retry`] still retries `DatabaseResumingException` and throttling,
/// which the service answers before it runs anything.
/// (An override per call, not a second client: a client built from this one's configuration
/// gets an HTTP client, and connection pool, of its own.)
fn at_most_once() -> aws_sdk_rdsdata::config::Builder {
    aws_sdk_rdsdata::config::Builder::default().retry_config(aws_sdk_rdsdata::config::retry::RetryConfig::disabled())
}

/// What one ExecuteStatement returned.
struct Statement {
    records: Option<Vec<Vec<Field>>>,
    updated: i64,
}

/// Why a call failed: the service ran nothing and says to retry after a pause (the cluster is
/// resuming, or the call was throttled), the transaction named is not there (ended by the
/// service), or anything else.
#[derive(Debug)]
enum Failure {
    NotRun(String),
    NoTransaction(String),
    Other(DbError),
}

impl Failure {
    fn into_db_error(self) -> DbError {
        match self {
            Failure::NotRun(message) => DbError::Unavailable(message),
            Failure::NoTransaction(message) => {
                DbError::Database { sqlstate: None, message: format!("TransactionNotFoundException: {message}") }
            }
            Failure::Other(e) => e,
        }
    }
}

/// Maps an SDK error to the driver-independent [`DbError`]. SQL errors arrive only as text
/// ending `; SQLState: XXXXX`.
fn classify<E, R>(err: SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            classify_service(e.code().unwrap_or_default(), e.message().unwrap_or_default().to_owned())
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            Failure::Other(DbError::Unavailable(aws_sdk_rdsdata::error::DisplayErrorContext(&err).to_string()))
        }
        _ => Failure::Other(DbError::Database {
            sqlstate: None,
            message: aws_sdk_rdsdata::error::DisplayErrorContext(&err).to_string(),
        }),
    }
}

/// Maps the service's error code and message.
fn classify_service(code: &str, message: String) -> Failure {
    match code {
        // Refused before anything ran: safe to send again, unlike a 5xx or a lost answer (the
        // SDK's own retries, which did both, are off).
        "DatabaseResumingException"
        | "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => Failure::NotRun(message),
        "TransactionNotFoundException" => Failure::NoTransaction(message),
        "DatabaseUnavailableException" | "ServiceUnavailableError" | "InternalServerErrorException" => {
            Failure::Other(DbError::Unavailable(message))
        }
        // PostgreSQL's statement_timeout raises 57014 too: callers see one code for both.
        "StatementTimeoutException" => {
            Failure::Other(DbError::Database { sqlstate: Some("57014".to_owned()), message })
        }
        // The 1 MiB response limit: a code callers can act on (page and retry). The service has
        // been seen to word it two ways: "Database returned more than the allowed response size
        // limit" and "Database response exceeded size limit".
        "BadRequestException" if message.contains("response size limit") || message.contains("exceeded size limit") => {
            Failure::Other(DbError::Database { sqlstate: Some(crate::db::RESPONSE_TOO_LARGE.to_owned()), message })
        }
        code => {
            let (sqlstate, text) = split_sqlstate(&message);
            // The connection behind the service went away (a failover, a restart, too many
            // connections): retry later, as the direct driver says for the same states.
            if let Some(state) = sqlstate.as_deref().filter(|s| crate::db::is_unavailable_state(s)) {
                return Failure::Other(DbError::Unavailable(format!("{state}: {text}")));
            }
            let text = if sqlstate.is_some() || code.is_empty() { text } else { format!("{code}: {text}") };
            Failure::Other(DbError::Database { sqlstate, message: text })
        }
    }
}

/// Splits `ERROR: <message>; SQLState: <code>` into the code and the message.
fn split_sqlstate(message: &str) -> (Option<String>, String) {
    let Some((text, state)) = message.rsplit_once("; SQLState: ") else {
        return (None, message.to_owned());
    };
    let state = state.trim();
    if state.len() != 5 || !state.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return (None, message.to_owned());
    }
    let text = text.strip_prefix("ERROR: ").unwrap_or(text);
    (Some(state.to_owned()), without_failing_row(text).to_owned())
}

/// The message without a detail quoting the row ("Failing row contains (...)": e-mail
/// addresses, metadata), which would reach the logs with the error.
fn without_failing_row(text: &str) -> &str {
    let Some(at) = text.find("Failing row contains") else { return text };
    let head = text[..at].trim_end_matches([' ', ':', '\n', '\t']);
    let head = head.strip_suffix("DETAIL").or_else(|| head.strip_suffix("Detail")).unwrap_or(head);
    head.trim_end_matches([' ', ':', '\n', '\t', ';'])
}

fn cell(field: Field) -> Result<Cell, DbError> {
    Ok(match field {
        Field::IsNull(_) => Cell::Null,
        Field::BooleanValue(b) => Cell::Bool(b),
        Field::LongValue(n) => Cell::Int(n),
        Field::DoubleValue(d) => Cell::Float(d),
        Field::StringValue(s) => Cell::Text(s),
        Field::BlobValue(_) => return Err(DbError::Decode("a blob column (select it as text)".into())),
        Field::ArrayValue(_) => return Err(DbError::Decode("an array column (select it as text)".into())),
        _ => return Err(DbError::Decode("a result field of an unknown kind".into())),
    })
}

/// Rewrites positional `$n` placeholders to the Data API's named `:pn` (not inside literals,
/// quoted identifiers, dollar-quoted bodies or comments, and not the `$` inside an identifier).
pub fn to_named(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    for segment in super::segments(sql) {
        let code = match segment {
            Segment::Other(text) => {
                out.push_str(text);
                continue;
            }
            Segment::Code(code) => code,
        };
        let mut prev: Option<char> = None;
        let mut chars = code.chars().peekable();
        while let Some(c) = chars.next() {
            let in_identifier = prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '$');
            if c == '$' && !in_identifier && chars.peek().is_some_and(char::is_ascii_digit) {
                out.push_str(":p");
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    out.push(d);
                    prev = Some(d);
                }
                continue;
            }
            out.push(c);
            prev = Some(c);
        }
    }
    out
}

/// `Param`s as the Data API's named parameters `p1..pn`.
pub fn parameters(params: &[Param]) -> Vec<SqlParameter> {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (value, hint) = match p {
                Param::Null => (Field::IsNull(true), None),
                Param::Bool(b) => (Field::BooleanValue(*b), None),
                Param::Int(n) => (Field::LongValue(*n), None),
                Param::Float(f) => (Field::DoubleValue(*f), None),
                Param::Text(s) => (Field::StringValue(s.clone()), None),
                Param::Uuid(u) => (Field::StringValue(u.hyphenated().to_string()), Some(TypeHint::Uuid)),
                // With its offset and no hint: the TIMESTAMP hint makes a timestamp without
                // zone, which `::timestamptz` then reads in the session's time zone (a cluster's
                // `timezone` parameter need not be UTC); the statement's cast reads this as is.
                Param::Timestamp(micros) => (Field::StringValue(format!("{}+00", timestamp_text(*micros))), None),
                Param::Json(text) => (Field::StringValue(text.clone()), Some(TypeHint::Json)),
            };
            SqlParameter::builder().name(format!("p{}", i + 1)).value(value).set_type_hint(hint).build()
        })
        .collect()
}

/// Microseconds since the Unix epoch (UTC) as `YYYY-MM-DD HH:MM:SS.ffffff` (the TIMESTAMP hint's
/// format; parameters add `+00` and no hint).
pub fn timestamp_text(micros: i64) -> String {
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    let days = micros.div_euclid(MICROS_PER_DAY);
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = super::civil_from_days(days);
    let secs = of_day / 1_000_000;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}", secs / 3600, secs / 60 % 60, secs % 60, of_day % 1_000_000)
}

#[async_trait]
impl Executor for RdsDataExecutor {
    type Tx<'a>
        = RdsDataTx
    where
        Self: 'a;

    async fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError> {
        self.query_in(sql, params, None).await
    }

    async fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        self.execute_in(sql, params, None).await
    }

    async fn begin(&self) -> Result<Self::Tx<'_>, DbError> {
        let id = self.begin_transaction().await?;
        Ok(RdsDataTx { executor: self.clone(), id: Some(id), aborted: false })
    }
}

/// A Data API transaction. Dropped without `commit` or `rollback`, it is rolled back in the
/// background (when a tokio runtime is there to do it; otherwise the service's idle timeout
/// does).
#[derive(Debug)]
pub struct RdsDataTx {
    executor: RdsDataExecutor,
    /// `None` once ended.
    id: Option<String>,
    /// A statement failed: the transaction is aborted, as in PostgreSQL. Its id is kept: the
    /// service may have ended it already, or not (a timeout, the response limit), and only a
    /// rollback (or the drop's) makes sure it holds no locks until the service's idle timeout.
    aborted: bool,
}

impl RdsDataTx {
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    fn live_id(&self) -> Result<&str, DbError> {
        if self.aborted {
            // What PostgreSQL says in the same place, so callers see one code from both drivers.
            return Err(DbError::Database {
                sqlstate: Some("25P02".into()),
                message: "the transaction was aborted by an earlier error".into(),
            });
        }
        self.id.as_deref().ok_or_else(|| DbError::Decode("transaction already ended".into()))
    }

    /// Notes a statement the database refused (or that timed out, or whose transaction is
    /// gone): nothing more runs in this transaction. (Not a call that failed on its way: the
    /// statement may not have run, and the caller may go on or roll back.)
    fn after<T>(&mut self, result: Result<T, DbError>) -> Result<T, DbError> {
        if matches!(result, Err(DbError::Database { .. })) {
            self.aborted = true;
        }
        result
    }
}

#[async_trait]
impl Transaction for RdsDataTx {
    async fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError> {
        let id = self.live_id()?.to_owned();
        let result = self.executor.query_in(sql, params, Some(&id)).await;
        self.after(result)
    }

    async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        let id = self.live_id()?.to_owned();
        let result = self.executor.execute_in(sql, params, Some(&id)).await;
        self.after(result)
    }

    /// After a failed statement: an error, nothing was committed (PostgreSQL would answer
    /// ROLLBACK to the COMMIT), and the drop rolls the transaction back.
    async fn commit(mut self) -> Result<(), DbError> {
        self.live_id()?;
        let id = self.id.take().ok_or_else(|| DbError::Decode("transaction already ended".into()))?;
        self.executor.end_transaction(&id, true).await.map_err(Failure::into_db_error)
    }

    /// A transaction the service already ended (at an error, or idle) is rolled back already.
    /// After a failed statement nothing of it can commit, so a rollback that fails on its way is
    /// not the caller's error either (the service's idle timeout ends it).
    async fn rollback(mut self) -> Result<(), DbError> {
        let id = self.id.take().ok_or_else(|| DbError::Decode("transaction already ended".into()))?;
        match self.executor.end_transaction(&id, false).await {
            Ok(()) | Err(Failure::NoTransaction(_)) => Ok(()),
            Err(failure) if self.aborted => {
                tracing::info!(error = %failure.into_db_error(), "rolling back an aborted transaction failed");
                Ok(())
            }
            Err(failure) => Err(failure.into_db_error()),
        }
    }
}

impl Drop for RdsDataTx {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let executor = self.executor.clone();
        runtime.spawn(async move {
            match executor.end_transaction(&id, false).await {
                Ok(()) | Err(Failure::NoTransaction(_)) => {}
                Err(failure) => {
                    tracing::warn!(error = %failure.into_db_error(), "rolling back a dropped transaction failed")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_placeholders_become_named() {
        fn check(sql: &str, expected: &str) {
            assert_eq!(to_named(sql), expected, "{sql}");
        }
        check("select $1, $2::uuid", "select :p1, :p2::uuid");
        check("select $10 from t where a = $1", "select :p10 from t where a = :p1");
        check("select '$1', \"$1\" -- $1\n, $1", "select '$1', \"$1\" -- $1\n, :p1");
        check("select $$ $1 $$, $f$ $1 $f$, $1", "select $$ $1 $$, $f$ $1 $f$, :p1");
        check("select foo$1, x_$2 from t", "select foo$1, x_$2 from t");
        check("select E'\\'$1', $1", "select E'\\'$1', :p1");
        check("select 1", "select 1");
    }

    #[test]
    fn sqlstate_is_split_off_the_message() {
        assert_eq!(
            split_sqlstate("ERROR: duplicate key value violates unique constraint \"t_pkey\"; SQLState: 23505"),
            (Some("23505".to_owned()), "duplicate key value violates unique constraint \"t_pkey\"".to_owned())
        );
        assert_eq!(split_sqlstate("no code here"), (None, "no code here".to_owned()));
        let quoted = "ERROR: null value in column \"email\" violates not-null constraint\n  Detail: Failing row contains (2, null, secret@example.com).; SQLState: 23502";
        assert_eq!(
            split_sqlstate(quoted),
            (Some("23502".to_owned()), "null value in column \"email\" violates not-null constraint".to_owned())
        );
        assert_eq!(split_sqlstate("x; SQLState: toolong"), (None, "x; SQLState: toolong".to_owned()));
    }

    #[test]
    fn service_errors_map_to_what_callers_act_on() {
        let db = |code: &str, message: &str| classify_service(code, message.to_owned()).into_db_error();
        for message in
            ["Database returned more than the allowed response size limit", "Database response exceeded size limit"]
        {
            assert_eq!(db("BadRequestException", message).sqlstate(), Some(crate::db::RESPONSE_TOO_LARGE), "{message}");
        }
        for state in ["57P01", "08006", "53300"] {
            let e = db("DatabaseErrorException", &format!("FATAL: terminating connection; SQLState: {state}"));
            assert!(matches!(e, DbError::Unavailable(_)), "{state}: {e:?}");
        }
        let e = db("DatabaseErrorException", "ERROR: duplicate key; SQLState: 23505");
        assert_eq!(e.sqlstate(), Some("23505"));
        assert!(matches!(db("BadRequestException", "some other problem"), DbError::Database { sqlstate: None, .. }));
        assert!(matches!(db("DatabaseResumingException", "resuming"), DbError::Unavailable(_)));
        for code in ["DatabaseResumingException", "ThrottlingException", "TooManyRequestsException"] {
            assert!(matches!(classify_service(code, "x".into()), Failure::NotRun(_)), "{code} is retried");
        }
        for code in ["DatabaseUnavailableException", "ServiceUnavailableError", "InternalServerErrorException"] {
            assert!(matches!(classify_service(code, "x".into()), Failure::Other(_)), "{code} may have run");
        }
    }

    #[test]
    fn timestamps_have_six_fraction_digits() {
        assert_eq!(timestamp_text(0), "1970-01-01 00:00:00.000000");
        assert_eq!(timestamp_text(1_700_000_000_123_456), "2023-11-14 22:13:20.123456");
        assert_eq!(timestamp_text(-1), "1969-12-31 23:59:59.999999");
    }

    #[test]
    fn params_carry_type_hints() {
        let id = uuid::Uuid::nil();
        let ps = parameters(&[Param::Uuid(id), Param::Timestamp(0), Param::Json("{}".into()), Param::Null]);
        assert_eq!(ps.len(), 4);
        assert_eq!(ps[0].name(), Some("p1"));
        assert_eq!(ps[0].type_hint(), Some(&TypeHint::Uuid));
        assert_eq!(ps[1].type_hint(), None);
        assert_eq!(ps[1].value(), Some(&Field::StringValue("1970-01-01 00:00:00.000000+00".into())));
        assert_eq!(ps[2].type_hint(), Some(&TypeHint::Json));
        assert_eq!(ps[3].value(), Some(&Field::IsNull(true)));
    }
}
