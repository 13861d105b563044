//! The schema migrations (`migrations/V*__*.sql`, embedded at build time) and the runner that
//! applies them over any [`Executor`] — the direct Postgres driver or the RDS Data API.
//!
//! Each pending migration runs in its own transaction, split into single statements (the Data
//! API runs one statement per call), after taking a transaction-scoped advisory lock on the
//! schema: concurrent runs (two operators, two deploy pipelines, two test harnesses) wait for
//! each other and then find nothing left to do. Applied versions are recorded in
//! `jobs_schema_history` with a checksum computed as Flyway computes its own (CRC-32 of the
//! script's lines without line endings), so an edited, already-applied migration is an error
//! rather than silently skipped.

use crate::db::{Cell, DbError, Executor, Transaction};
use jobs_core::sql::Param;
use std::time::Instant;

/// One migration script: `V<version>__<description>.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub file: &'static str,
    pub sql: &'static str,
}

/// The migrations this binary knows, in file-name order (a test checks this list against the
/// `migrations/` folder, so a new file cannot be forgotten here).
pub const MIGRATIONS: &[Migration] = &[
    Migration { file: "V1__init.sql", sql: include_str!("../../migrations/V1__init.sql") },
    Migration {
        file: "V2__recreated_id_continues_version.sql",
        sql: include_str!("../../migrations/V2__recreated_id_continues_version.sql"),
    },
    Migration {
        file: "V3__recreate_racing_a_delete_retries.sql",
        sql: include_str!("../../migrations/V3__recreate_racing_a_delete_retries.sql"),
    },
    Migration {
        file: "V4__a_stale_mark_keeps_the_newer_lease.sql",
        sql: include_str!("../../migrations/V4__a_stale_mark_keeps_the_newer_lease.sql"),
    },
];

/// The table recording applied migrations, in the target schema.
pub const HISTORY_TABLE: &str = "jobs_schema_history";

const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS jobs_schema_history (\
     version TEXT PRIMARY KEY, \
     description TEXT NOT NULL, \
     script TEXT NOT NULL, \
     checksum INTEGER NOT NULL, \
     installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), \
     execution_time_ms BIGINT NOT NULL)";

const SELECT_HISTORY: &str = "SELECT version, script, checksum FROM jobs_schema_history";

const INSERT_HISTORY: &str = "INSERT INTO jobs_schema_history \
     (version, description, script, checksum, execution_time_ms) \
     VALUES ($1::text, $2::text, $3::text, $4::integer, $5::bigint)";

/// Serialises runs on the same schema (the second key is the schema's hash).
// `SELECT 1 FROM ...`: the function returns void, which the RDS Data API refuses as a result type.
/// Keyed by the schema migrated: the one named, or else the connection's current schema (so
/// `migrate` and `migrate --schema public` on a default search_path take the same lock).
const LOCK: &str = "SELECT 1 FROM pg_advisory_xact_lock(1785684577, hashtext(coalesce($1::text, current_schema())))";

/// A migration this run applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: String,
    pub description: String,
    pub script: &'static str,
    pub statements: usize,
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {script} was changed after it was applied (checksum {applied} in the database, {local} here)")]
    ChecksumMismatch { script: String, applied: i32, local: i32 },
    #[error(
        "the database has migration {version} applied, which this build does not know: it is newer than this binary"
    )]
    UnknownApplied { version: String },
    #[error("invalid migration file name {0:?}: expected V<version>__<description>.sql")]
    BadName(String),
    #[error("invalid schema name {0:?}: use letters, digits and underscores")]
    BadSchema(String),
    #[error("migration {script}, statement {statement}: {source}")]
    Statement { script: String, statement: usize, source: DbError },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Where and what to migrate.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Create this schema if needed and migrate inside it (`SET LOCAL search_path`); `None`
    /// migrates the connection's current schema (normally `public`).
    pub schema: Option<String>,
}

impl Options {
    pub fn schema(schema: impl Into<String>) -> Options {
        Options { schema: Some(schema.into()) }
    }
}

/// Applies the embedded [`MIGRATIONS`]; see [`migrate_with`].
pub async fn migrate<E: Executor>(db: &E, opts: &Options) -> Result<Vec<Applied>, MigrateError> {
    migrate_with(db, opts, MIGRATIONS).await
}

/// Applies `migrations` that are not applied yet, in version order, one transaction each.
/// Re-running is a no-op; an applied migration whose text changed is an error.
pub async fn migrate_with<E: Executor>(
    db: &E,
    opts: &Options,
    migrations: &[Migration],
) -> Result<Vec<Applied>, MigrateError> {
    if let Some(schema) = &opts.schema
        && !crate::pg::is_plain_identifier(schema)
    {
        return Err(MigrateError::BadSchema(schema.clone()));
    }
    let mut local = migrations
        .iter()
        .map(|m| parse_name(m.file).map(|(version, description)| (version, description, m)))
        .collect::<Result<Vec<_>, _>>()?;
    local.sort_by_key(|a| version_key(&a.0));

    let mut applied = Vec::new();
    loop {
        let mut tx = db.begin().await?;
        let step = next_step(&mut tx, opts, &local).await;
        let pending = match step {
            Ok(Some(i)) => i,
            Ok(None) => {
                tx.commit().await?;
                return Ok(applied);
            }
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        };
        let (version, description, m) = &local[pending];
        let started = Instant::now();
        let statements = split_statements(m.sql);
        for (n, stmt) in statements.iter().enumerate() {
            if let Err(source) = tx.execute(stmt, &[]).await {
                let _ = tx.rollback().await;
                return Err(MigrateError::Statement { script: m.file.to_owned(), statement: n + 1, source });
            }
        }
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let record = [
            Param::Text(version.clone()),
            Param::Text(description.clone()),
            Param::Text(m.file.to_owned()),
            Param::Int(checksum(m.sql).into()),
            Param::Int(i64::try_from(duration_ms).unwrap_or(i64::MAX)),
        ];
        if let Err(e) = tx.execute(INSERT_HISTORY, &record).await {
            let _ = tx.rollback().await;
            return Err(e.into());
        }
        tx.commit().await?;
        tracing::info!(script = m.file, statements = statements.len(), duration_ms, "migration applied");
        applied.push(Applied {
            version: version.clone(),
            description: description.clone(),
            script: m.file,
            statements: statements.len(),
            duration_ms,
        });
    }
}

/// Inside a fresh transaction: lock, make sure the schema and history exist, validate what is
/// applied, and return the index of the first pending migration.
async fn next_step<T: Transaction>(
    tx: &mut T,
    opts: &Options,
    local: &[(String, String, &Migration)],
) -> Result<Option<usize>, MigrateError> {
    let key = opts.schema.clone().map_or(Param::Null, Param::Text);
    tx.execute(LOCK, &[key]).await?;
    if let Some(schema) = &opts.schema {
        tx.execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""), &[]).await?;
        tx.execute(&format!("SET LOCAL search_path TO \"{schema}\""), &[]).await?;
    }
    tx.execute(CREATE_HISTORY, &[]).await?;
    let rows = tx.query(SELECT_HISTORY, &[]).await?;
    // Ordered, so an unknown applied migration is always reported the same way (the first).
    let mut done = std::collections::BTreeMap::new();
    for row in rows {
        match row.as_slice() {
            [Cell::Text(version), Cell::Text(script), Cell::Int(sum)] => {
                let sum = i32::try_from(*sum).map_err(|_| DbError::Decode(format!("checksum {sum} out of range")))?;
                done.insert(version.clone(), (script.clone(), sum));
            }
            other => return Err(DbError::Decode(format!("unexpected history row {other:?}")).into()),
        }
    }
    for version in done.keys() {
        if !local.iter().any(|(v, _, _)| v == version) {
            return Err(MigrateError::UnknownApplied { version: version.clone() });
        }
    }
    let mut first_pending = None;
    for (i, (version, _, m)) in local.iter().enumerate() {
        match done.get(version) {
            Some((_, sum)) if *sum != checksum(m.sql) => {
                return Err(MigrateError::ChecksumMismatch {
                    script: m.file.to_owned(),
                    applied: *sum,
                    local: checksum(m.sql),
                });
            }
            Some(_) => {}
            None => {
                first_pending.get_or_insert(i);
            }
        }
    }
    Ok(first_pending)
}

/// `V1_2__add_things.sql` -> (`1.2`, `add things`), as Flyway reads it.
pub fn parse_name(file: &str) -> Result<(String, String), MigrateError> {
    let bad = || MigrateError::BadName(file.to_owned());
    let stem = file.strip_prefix('V').and_then(|s| s.strip_suffix(".sql")).ok_or_else(bad)?;
    let (version, description) = stem.split_once("__").ok_or_else(bad)?;
    let version = version.replace('_', ".");
    if version.is_empty() || version.split('.').any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    Ok((version, description.replace('_', " ")))
}

/// Numeric ordering of dotted versions (`1.10` after `1.9`).
fn version_key(version: &str) -> Vec<u64> {
    version.split('.').map(|p| p.parse().unwrap_or(u64::MAX)).collect()
}

/// Flyway's checksum: CRC-32 over the UTF-8 bytes of each line without its line ending (and
/// without a leading byte-order mark), as a signed 32-bit integer.
pub fn checksum(sql: &str) -> i32 {
    let sql = sql.strip_prefix('\u{feff}').unwrap_or(sql);
    let mut crc = Crc32::new();
    for line in sql.split('\n') {
        crc.update(line.strip_suffix('\r').unwrap_or(line).as_bytes());
    }
    // A final newline ends the last line; it does not start an empty one.
    i32::from_ne_bytes(crc.finish().to_ne_bytes())
}

struct Crc32(u32);

impl Crc32 {
    fn new() -> Crc32 {
        Crc32(0xFFFF_FFFF)
    }
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let mut c = (self.0 ^ u32::from(b)) & 0xFF;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            self.0 = (self.0 >> 8) ^ c;
        }
    }
    fn finish(&self) -> u32 {
        !self.0
    }
}

/// Splits a script into single statements at top-level `;`, honouring `--` and (nested) `/* */`
/// comments, quoted strings and identifiers, `E''` escapes and `$tag$` dollar quoting.
/// Statements that are only whitespace and comments are dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' | b'"' => {
                has_code = true;
                let escapes = c == b'\'' && i > 0 && matches!(b[i - 1], b'E' | b'e') && !is_ident(b, i - 1);
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == c {
                        if b.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            b'$' if i == 0 || !is_ident_byte(b[i - 1]) => {
                if let Some(tag_len) = dollar_tag(&b[i..]) {
                    has_code = true;
                    let tag = &b[i..i + tag_len];
                    i += tag_len;
                    while i < b.len() && !b[i..].starts_with(tag) {
                        i += 1;
                    }
                    i = (i + tag_len).min(b.len());
                    continue;
                }
                has_code = true;
            }
            b';' => {
                if has_code {
                    out.push(sql[start..i].trim().to_owned());
                }
                start = i + 1;
                has_code = false;
            }
            c if !c.is_ascii_whitespace() => has_code = true,
            _ => {}
        }
        i += 1;
    }
    if has_code {
        out.push(sql[start..].trim().to_owned());
    }
    out
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Whether the byte at `i` continues an identifier (so `E` in `TABLE'` is not an escape prefix).
fn is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && is_ident_byte(b[i - 1])
}

/// The length of a `$tag$` opening at the start of `b` (tags cannot start with a digit, so `$1`
/// is a placeholder, not a quote).
fn dollar_tag(b: &[u8]) -> Option<usize> {
    let mut j = 1;
    while j < b.len() && b[j] != b'$' {
        let ok = b[j].is_ascii_alphabetic() || b[j] == b'_' || b[j] >= 0x80 || (j > 1 && b[j].is_ascii_digit());
        if !ok {
            return None;
        }
        j += 1;
    }
    (j < b.len()).then_some(j + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(sql: &str, expected: &[&str]) {
        assert_eq!(split_statements(sql), expected);
    }

    #[test]
    fn splits_statements() {
        check("SELECT 1; SELECT 2;", &["SELECT 1", "SELECT 2"]);
        check("SELECT 1", &["SELECT 1"]);
        check("-- a; comment\nSELECT 1; -- trailing; comment\n", &["-- a; comment\nSELECT 1"]);
        check("/* a; /* nested; */ still; */ SELECT 1;", &["/* a; /* nested; */ still; */ SELECT 1"]);
        check("SELECT 'a;b', \"c;d\", 'it''s;';", &["SELECT 'a;b', \"c;d\", 'it''s;'"]);
        check(r"SELECT E'a\';b'; SELECT 2", &[r"SELECT E'a\';b'", "SELECT 2"]);
        check(
            "CREATE FUNCTION f() RETURNS int AS $$ BEGIN; RETURN 1; END $$ LANGUAGE plpgsql; SELECT 2",
            &["CREATE FUNCTION f() RETURNS int AS $$ BEGIN; RETURN 1; END $$ LANGUAGE plpgsql", "SELECT 2"],
        );
        check("SELECT $fn$ a; $$ b; $fn$; SELECT $1::int;", &["SELECT $fn$ a; $$ b; $fn$", "SELECT $1::int"]);
        check(" ; ;\n-- only a comment\n", &[]);
        check("SELECT a$b; SELECT 1", &["SELECT a$b", "SELECT 1"]);
    }

    #[test]
    fn splits_the_real_migrations() {
        for m in MIGRATIONS {
            let stmts = split_statements(m.sql);
            assert!(!stmts.is_empty(), "{}", m.file);
            for s in &stmts {
                assert!(!s.trim_start().starts_with(';'), "{}: {s}", m.file);
            }
        }
        let v1 = split_statements(MIGRATIONS[0].sql);
        assert!(v1.iter().any(|s| s.contains("CREATE FUNCTION job_sync_enqueue()") && s.ends_with("$$")));
        assert!(v1.iter().any(|s| s.contains("CREATE TABLE job (")));
    }

    #[test]
    fn names_like_flyway() {
        assert_eq!(parse_name("V1__init.sql").ok(), Some(("1".into(), "init".into())));
        assert_eq!(parse_name("V2_1__add_thing_x.sql").ok(), Some(("2.1".into(), "add thing x".into())));
        for bad in ["V__x.sql", "1__x.sql", "V1_x.sql", "V1__x.txt", "Vx__y.sql", "V1.__x.sql"] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
        assert!(version_key("1.10") > version_key("1.9"));
        assert!(version_key("10") > version_key("9"));
    }

    #[test]
    fn checksum_is_crc32_of_lines() {
        // CRC-32 check value of "123456789" is 0xCBF43926.
        assert_eq!(checksum("123456789") as u32, 0xCBF4_3926);
        assert_eq!(checksum("1234\r\n56789\n"), checksum("123456789"));
        assert_ne!(checksum("SELECT 1"), checksum("SELECT 2"));
    }

    /// The `job` table declares exactly the core's field specs (name, type, nullability, order),
    /// so column widths, validation limits and the search mapping cannot drift apart.
    #[test]
    fn job_table_matches_the_field_specs() {
        use jobs_core::spec::{JOB_FIELDS, SYNC_FIELDS};
        let v1 = MIGRATIONS[0].sql;
        let start = v1.find("CREATE TABLE job (").map(|i| i + "CREATE TABLE job (".len());
        let body = start.and_then(|s| v1[s..].find("\n)").map(|e| &v1[s..s + e])).unwrap_or_default();
        let columns: Vec<(String, String, bool)> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("--"))
            .map(|l| {
                let l = l.trim_end_matches(',');
                let (name, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
                let rest = rest.trim();
                let ty: String = rest.split_whitespace().next().unwrap_or_default().to_owned();
                let nullable = !rest.contains("NOT NULL") && !rest.contains("PRIMARY KEY");
                (name.to_owned(), ty, nullable)
            })
            .collect();
        let expected: Vec<(String, String, bool)> = JOB_FIELDS
            .iter()
            .chain(SYNC_FIELDS)
            .map(|f| (f.name.to_owned(), f.sql_type.to_owned(), f.nullable))
            .collect();
        assert_eq!(columns, expected);
    }

    #[test]
    fn every_migration_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        files.retain(|f| f.ends_with(".sql"));
        files.sort();
        let mut embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.file).collect();
        embedded.sort_unstable();
        assert_eq!(files, embedded, "add new files in migrations/ to MIGRATIONS");
        for m in MIGRATIONS {
            let on_disk = std::fs::read_to_string(dir.join(m.file)).unwrap_or_default();
            assert_eq!(on_disk, m.sql, "{} differs from the embedded text", m.file);
            assert!(parse_name(m.file).is_ok(), "{}", m.file);
        }
    }
}
