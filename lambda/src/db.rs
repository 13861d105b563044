//! The SQL-executor seam: the store is written once over [`Executor`]; drivers implement it
//! (direct Postgres via tokio-postgres, and the RDS Data API via aws-sdk-rdsdata).
//!
//! Statements come from `jobs_core::sql` with positional `$n` placeholders and
//! `jobs_core::sql::Param` values. Results are rows of [`Cell`]s: the store's SQL selects
//! timestamps as formatted UTC text, ids as text and JSONB as text, so both drivers return the
//! same plain values whatever the wire.

use async_trait::async_trait;
use jobs_core::sql::Param;

/// SQLSTATE `54000` (program_limit_exceeded): the driver's answer when a result is too large to
/// return in one response (the RDS Data API's 1 MiB limit). Callers page and try again.
pub const RESPONSE_TOO_LARGE: &str = "54000";

/// SQLSTATEs that mean "the server is going away or not taking connections": retry later
/// (both drivers map them to [`DbError::Unavailable`]).
pub fn is_unavailable_state(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// One column value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// A result row: cells in the order of the SELECT list.
pub type Row = Vec<Cell>;

/// What can go wrong talking to the database, independent of the driver.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database rejected the statement; `sqlstate` is the five-character SQLSTATE
    /// (e.g. 23505 unique_violation, 40001 serialization_failure) when known.
    #[error("database error {sqlstate:?}: {message}")]
    Database { sqlstate: Option<String>, message: String },
    /// The database could not be reached or is resuming/unavailable; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A result could not be read into the expected shape.
    #[error("unexpected result: {0}")]
    Decode(String),
    /// A row holds what this code cannot represent: another writer stored a status or a type
    /// it does not know, or metadata it cannot read (not an object, a number past a double).
    /// Retrying cannot help; listings leave such a row out, the sync dead-letters it.
    #[error("{0}")]
    Unreadable(String),
}

impl DbError {
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Database { sqlstate, .. } => sqlstate.as_deref(),
            _ => None,
        }
    }
}

/// Runs single statements. Implementations must be cheap to share (`Arc` inside).
#[async_trait]
pub trait Executor: Send + Sync {
    type Tx<'a>: Transaction + 'a
    where
        Self: 'a;

    /// Runs a statement that returns rows.
    async fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError>;
    /// Runs a statement and returns the number of rows it affected.
    async fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, DbError>;
    /// Starts a transaction; dropping it without `commit` rolls it back (best effort).
    async fn begin(&self) -> Result<Self::Tx<'_>, DbError>;
}

/// A transaction: statements run inside it until `commit` or `rollback`.
#[async_trait]
pub trait Transaction: Send {
    async fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError>;
    async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError>;
    async fn commit(self) -> Result<(), DbError>;
    async fn rollback(self) -> Result<(), DbError>;
}
