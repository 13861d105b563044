//! The Lambda functions' (and `jobsctl serve`'s) configuration from the environment, and [`Db`]:
//! one executor type over either driver, so the router and the sync are compiled once.
//!
//! Database: the RDS Data API when `JOBS_DB_CLUSTER_ARN` and `JOBS_DB_SECRET_ARN` are set
//! (`JOBS_DB_NAME`, default `jobs`; the SDK reads region, credentials and
//! `AWS_ENDPOINT_URL_RDS_DATA` from the environment), else a direct connection to
//! `DATABASE_URL` (`JOBS_DB_POOL` connections, default 4). One of the pair without the other is
//! an error.

use crate::data_api::client::{DataApiConfig, RdsDataExecutor, RdsDataTx};
use crate::db::{DbError, Executor, Row, Transaction};
use crate::pg::{PgExecutor, PgOptions, PgTransaction};
use crate::search::{SearchClient, Searcher, SearcherOptions};
use async_trait::async_trait;
use jobs_core::sql::Param;
use std::time::Duration;

/// Either driver of the SQL-executor seam.
#[derive(Debug, Clone)]
pub enum Db {
    Pg(PgExecutor),
    DataApi(RdsDataExecutor),
}

/// A transaction of either driver.
pub enum DbTx {
    Pg(PgTransaction),
    DataApi(RdsDataTx),
}

#[async_trait]
impl Executor for Db {
    type Tx<'a> = DbTx;

    async fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError> {
        match self {
            Db::Pg(e) => e.query(sql, params).await,
            Db::DataApi(e) => e.query(sql, params).await,
        }
    }

    async fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        match self {
            Db::Pg(e) => e.execute(sql, params).await,
            Db::DataApi(e) => e.execute(sql, params).await,
        }
    }

    async fn begin(&self) -> Result<DbTx, DbError> {
        match self {
            Db::Pg(e) => e.begin().await.map(DbTx::Pg),
            Db::DataApi(e) => e.begin().await.map(DbTx::DataApi),
        }
    }
}

#[async_trait]
impl Transaction for DbTx {
    async fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError> {
        match self {
            DbTx::Pg(t) => t.query(sql, params).await,
            DbTx::DataApi(t) => t.query(sql, params).await,
        }
    }

    async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        match self {
            DbTx::Pg(t) => t.execute(sql, params).await,
            DbTx::DataApi(t) => t.execute(sql, params).await,
        }
    }

    async fn commit(self) -> Result<(), DbError> {
        match self {
            DbTx::Pg(t) => t.commit().await,
            DbTx::DataApi(t) => t.commit().await,
        }
    }

    async fn rollback(self) -> Result<(), DbError> {
        match self {
            DbTx::Pg(t) => t.rollback().await,
            DbTx::DataApi(t) => t.rollback().await,
        }
    }
}

/// A configuration problem: the function cannot start.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn parse_var<T: std::str::FromStr>(name: &str) -> Result<Option<T>, ConfigError> {
    var(name).map(|v| v.parse().map_err(|_| ConfigError(format!("{name}={v:?} is not valid")))).transpose()
}

/// The database the environment names (see the module docs).
pub async fn db_from_env() -> Result<Db, ConfigError> {
    db_from_env_with_pool(None).await
}

/// [`db_from_env`], with `pool` direct connections when given (`jobsctl serve --pool`).
pub async fn db_from_env_with_pool(pool: Option<usize>) -> Result<Db, ConfigError> {
    match database(var)? {
        Database::DataApi(config) => Ok(Db::DataApi(RdsDataExecutor::from_env(config).await)),
        Database::Url(url) => {
            let pool = match pool {
                Some(n) => n,
                None => parse_var::<usize>("JOBS_DB_POOL")?.unwrap_or(4),
            };
            PgExecutor::connect(&PgOptions::new(url).max_connections(pool))
                .map(Db::Pg)
                .map_err(|e| ConfigError(e.to_string()))
        }
    }
}

#[derive(Debug, PartialEq)]
enum Database {
    DataApi(DataApiConfig),
    Url(String),
}

/// Which database the variables name. Half of the Data API's pair is an error, not a reason to
/// fall back to `DATABASE_URL`: a shell that has both (after `./dev services env`) would
/// migrate, sync or requeue the wrong database and say it succeeded.
fn database(var: impl Fn(&str) -> Option<String>) -> Result<Database, ConfigError> {
    match (var("JOBS_DB_CLUSTER_ARN"), var("JOBS_DB_SECRET_ARN")) {
        (Some(cluster), Some(secret)) => Ok(Database::DataApi(DataApiConfig {
            resource_arn: cluster,
            secret_arn: secret,
            database: var("JOBS_DB_NAME").unwrap_or_else(|| "jobs".to_owned()),
            endpoint_url: None,
        })),
        (Some(_), None) | (None, Some(_)) => Err(ConfigError(
            "JOBS_DB_CLUSTER_ARN and JOBS_DB_SECRET_ARN go together (the Data API): one of them is unset".into(),
        )),
        (None, None) => var("DATABASE_URL").map(Database::Url).ok_or_else(|| {
            ConfigError("set JOBS_DB_CLUSTER_ARN and JOBS_DB_SECRET_ARN (Data API) or DATABASE_URL".into())
        }),
    }
}

/// The search engine the environment names (`SEARCH_URL` and friends, see
/// `search::SearchConfig::from_env`), if any. The client is built once per process.
pub async fn search_client_from_env() -> Result<Option<SearchClient>, ConfigError> {
    SearchClient::from_env().await.map_err(|e| ConfigError(e.to_string()))
}

/// The API's options: the searcher over [`search_client_from_env`] (the engine may take
/// `JOBS_SEARCH_DEADLINE_MS`, default 1500, before Postgres answers instead) and the
/// write-through timeout `JOBS_WRITE_THROUGH_TIMEOUT_MS` (default 500), and the request time limit
/// `JOBS_REQUEST_TIMEOUT_MS` (default 8000: the API function's timeout is 10 s; 0 is none).
pub async fn api_options_from_env() -> Result<super::Options, ConfigError> {
    let mut options = super::Options::default();
    let mut searcher = SearcherOptions::default();
    if let Some(ms) = parse_var::<u64>("JOBS_SEARCH_DEADLINE_MS")? {
        searcher.deadline = Duration::from_millis(ms);
    }
    options.searcher = Searcher::new(search_client_from_env().await?, searcher);
    if let Some(ms) = parse_var::<u64>("JOBS_WRITE_THROUGH_TIMEOUT_MS")? {
        options.write_through_timeout = Duration::from_millis(ms);
    }
    options.request_timeout = match parse_var::<u64>("JOBS_REQUEST_TIMEOUT_MS")?.unwrap_or(8_000) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Database, ConfigError> {
        database(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn half_the_data_api_pair_is_an_error_not_database_url() {
        let url = ("DATABASE_URL", "postgres://local/jobs");
        assert_eq!(with(&[url]).ok(), Some(Database::Url(url.1.to_owned())));
        let both = with(&[url, ("JOBS_DB_CLUSTER_ARN", "arn:c"), ("JOBS_DB_SECRET_ARN", "arn:s")]);
        assert!(matches!(both, Ok(Database::DataApi(ref c)) if c.resource_arn == "arn:c" && c.database == "jobs"));
        for half in [("JOBS_DB_CLUSTER_ARN", "arn:c"), ("JOBS_DB_SECRET_ARN", "arn:s")] {
            let e = with(&[url, half]).expect_err("half a pair");
            assert!(e.to_string().contains("go together"), "{e}");
        }
        assert!(with(&[]).is_err());
    }
}
