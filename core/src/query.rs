//! A typed search request, validated, with the caller's tenancy scope always applied, rendered
//! two ways: Elasticsearch/OpenSearch query DSL and parameterised SQL for the Postgres fallback.
//! Both return the same jobs in the same order; [`SearchRequest::matches`] and
//! [`SearchRequest::sort_key`] are the reference both are tested against.
//!
//! Semantics, defined once:
//! - list filters (status, type, arch) match any listed value; other filters must all hold;
//! - time ranges are `[after, before)`; sorting by `completed_at` lists completed jobs only;
//! - `q` matches jobs whose project_name, or error_message of at most 2,048 UTF-16 code units
//!   (the unit the engines' `ignore_above` counts: an emoji is two), contains the text,
//!   ignoring ASCII case (engine: case-insensitive wildcard on the keyword sub-fields; SQL:
//!   ILIKE). Case folding beyond ASCII may differ between the two: the engines fold ASCII
//!   only, PostgreSQL's ILIKE by the database's locale (`q=k` finds a Kelvin sign there);
//! - metadata numbers compare as doubles (the engines index them as `double`); SQL compares
//!   jsonb's exact decimals, which agree for every number our writers store (shortest
//!   round-trip doubles, integers within 2^53), not for longer decimals another writer stores;
//! - ordering is by the sort field, then id, in the same direction; pages are keyset cursors.

use crate::issue::{Code, Issue, Issues};
use crate::metadata::KnownKey;
use crate::model::{Job, JobStatus, JobType};
use crate::search::ERROR_KEYWORD_IGNORE_ABOVE;
use crate::sql::Param;
use crate::text;
use crate::time::Timestamp;
use crate::tree::{Json, Object};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::cmp::Ordering;
use std::fmt::Write as _;
use uuid::Uuid;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
pub const MAX_TEXT: usize = 200;
pub const MAX_LIST: usize = 20;
/// Problems named in one answer; the rest are counted.
pub const MAX_REPORTED: usize = crate::issue::MAX_LISTED;

/// Who is asking: their own jobs and those of their workspaces are visible, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub user_id: Uuid,
    pub workspace_ids: Vec<Uuid>,
}

impl Scope {
    pub fn allows(&self, job: &Job) -> bool {
        self.owns(job.user_id, job.workspace_id)
    }

    /// Whether a job of this user, in this workspace, is in the scope.
    pub fn owns(&self, user_id: Uuid, workspace_id: Option<Uuid>) -> bool {
        user_id == self.user_id || workspace_id.is_some_and(|w| self.workspace_ids.contains(&w))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    CompletedAt,
}

impl SortField {
    fn column(self) -> &'static str {
        match self {
            SortField::CreatedAt => "created_at",
            SortField::UpdatedAt => "updated_at",
            SortField::CompletedAt => "completed_at",
        }
    }
    fn es_key(self) -> &'static str {
        match self {
            SortField::CreatedAt => "created_at_us",
            SortField::UpdatedAt => "updated_at_us",
            SortField::CompletedAt => "completed_at_us",
        }
    }
    fn of(self, job: &Job) -> Option<Timestamp> {
        match self {
            SortField::CreatedAt => Some(job.created_at),
            SortField::UpdatedAt => Some(job.updated_at),
            SortField::CompletedAt => job.completed_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
        }
    }
    fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Eq => o == Ordering::Equal,
            Op::Gt => o == Ordering::Greater,
            Op::Gte => o != Ordering::Less,
            Op::Lt => o == Ordering::Less,
            Op::Lte => o != Ordering::Greater,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetaValue {
    Int(i64),
    Float(f64),
    Text(String),
}

/// A filter on a known metadata key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaFilter {
    pub key: String,
    pub op: Op,
    pub value: MetaValue,
}

/// `[after, before)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub after: Option<Timestamp>,
    pub before: Option<Timestamp>,
}

impl TimeRange {
    fn contains(&self, t: Option<Timestamp>) -> bool {
        match t {
            None => self.after.is_none() && self.before.is_none(),
            Some(t) => self.after.is_none_or(|a| t >= a) && self.before.is_none_or(|b| t < b),
        }
    }
}

/// Where the previous page ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub key: i64,
    pub id: Uuid,
}

/// A validated search request. Make one with [`SearchRequest::from_params`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchRequest {
    pub statuses: Vec<JobStatus>,
    pub types: Vec<JobType>,
    pub arches: Vec<String>,
    pub hostname: Option<String>,
    pub project: Option<String>,
    pub user_id: Option<Uuid>,
    pub workspace_id: Option<Uuid>,
    pub created: TimeRange,
    pub updated: TimeRange,
    pub completed: TimeRange,
    pub metadata: Vec<MetaFilter>,
    pub text: Option<String>,
    pub sort: SortField,
    pub order: Order,
    pub limit: u32,
    #[serde(skip)]
    pub after: Option<After>,
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest {
            statuses: vec![],
            types: vec![],
            arches: vec![],
            hostname: None,
            project: None,
            user_id: None,
            workspace_id: None,
            created: TimeRange::default(),
            updated: TimeRange::default(),
            completed: TimeRange::default(),
            metadata: vec![],
            text: None,
            sort: SortField::CreatedAt,
            order: Order::Desc,
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// A search's problems: the first [`MAX_REPORTED`] named, the rest counted ("N more not
/// listed", as the rules do). A query string of many bad values (a hand-run server takes request
/// lines of hundreds of KB) is answered in a few hundred bytes.
#[derive(Default)]
struct Reported {
    named: Vec<Issue>,
    more: usize,
}

impl Reported {
    fn push(&mut self, path: &str, code: Code, message: impl Into<String>) {
        if self.named.len() < MAX_REPORTED {
            self.named.push(Issue::new(path, code, message));
        } else {
            self.more += 1;
        }
    }

    fn finish<T>(mut self, value: impl FnOnce() -> T) -> Result<T, Vec<Issue>> {
        if self.more > 0 {
            let more = self.more;
            self.named.push(Issue::new("", Code::InvalidQuery, format!("{more}{}", crate::issue::NOT_LISTED)));
        }
        if self.named.is_empty() { Ok(value()) } else { Err(self.named) }
    }
}

/// How many more values a list holding `len` may read: one past [`MAX_LIST`], enough to
/// refuse it, and no more (a query string of 60,000 values is not read whole).
fn room(len: usize) -> usize {
    (MAX_LIST + 1).saturating_sub(len)
}

fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl SearchRequest {
    /// Reads query-string parameters (`status=RUNNING,FAILED&metadata.cpuCores.gte=4&...`).
    /// Every problem is reported at once, with the parameter name as the path.
    pub fn from_params<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<SearchRequest, Vec<Issue>> {
        let mut r = SearchRequest::default();
        let mut issues = Reported::default();
        let mut cursor = None;
        for (name, value) in params {
            match name {
                "status" => {
                    for s in list(value).take(room(r.statuses.len())) {
                        match JobStatus::parse(s) {
                            Some(st) => r.statuses.push(st),
                            None => issues.push(name, Code::UnknownStatus, format!("unknown status {s:?}")),
                        }
                    }
                }
                "type" => {
                    for s in list(value).take(room(r.types.len())) {
                        match JobType::parse(s) {
                            Some(t) => r.types.push(t),
                            None => issues.push(name, Code::UnknownType, format!("unknown type {s:?}")),
                        }
                    }
                }
                "arch" => {
                    for s in list(value).take(room(r.arches.len())) {
                        match text::normalise_arch(s) {
                            Some(a) => r.arches.push(a),
                            None => issues.push(name, Code::InvalidArch, format!("invalid arch {s:?}")),
                        }
                    }
                }
                "hostname" => match text::normalise_hostname(value) {
                    Some(h) => r.hostname = Some(h),
                    None => issues.push(name, Code::InvalidHostname, "invalid hostname"),
                },
                "project" => {
                    if value.is_empty() || text::char_len_exceeds(value, crate::spec::PROJECT_NAME_MAX) {
                        issues.push(name, Code::TooLong, "a project name is 1 to 255 characters");
                    } else if text::has_control(value) {
                        // No project has one (the rules refuse them), and PostgreSQL refuses a
                        // NUL in a text parameter: the fallback answered 500.
                        issues.push(name, Code::ControlChars, "must not contain control characters");
                    } else {
                        r.project = Some(value.to_owned());
                    }
                }
                "user" | "workspace" => match text::parse_uuid(value) {
                    Ok(id) if name == "user" => r.user_id = Some(id),
                    Ok(id) => r.workspace_id = Some(id),
                    Err(_) => issues.push(name, Code::InvalidUuid, "expected a UUID"),
                },
                "q" => {
                    if text::char_len_exceeds(value, MAX_TEXT) {
                        issues.push(name, Code::TooLong, format!("at most {MAX_TEXT} characters"));
                    } else if text::has_control(value) {
                        issues.push(name, Code::ControlChars, "must not contain control characters");
                    } else if !value.trim().is_empty() {
                        r.text = Some(value.to_owned());
                    }
                }
                "sort" => {
                    let (order, field) = match value.strip_prefix('-') {
                        Some(f) => (Order::Desc, f),
                        None => (Order::Asc, value),
                    };
                    let field = match field {
                        "created_at" => Some(SortField::CreatedAt),
                        "updated_at" => Some(SortField::UpdatedAt),
                        "completed_at" => Some(SortField::CompletedAt),
                        _ => None,
                    };
                    match field {
                        Some(f) => {
                            r.sort = f;
                            r.order = order;
                        }
                        None => issues.push(
                            name,
                            Code::InvalidQuery,
                            "sort is created_at, updated_at or completed_at, with a leading - for descending",
                        ),
                    }
                }
                "limit" => {
                    // Digits alone, as the OpenAPI integer is written: `+5` is not one. Past
                    // i64 is still a whole number, out of range.
                    let digits = value.strip_prefix('-').unwrap_or(value);
                    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        issues.push(name, Code::NotInteger, "limit is a whole number");
                    } else {
                        match value.parse::<i64>() {
                            Ok(n) if (1..=i64::from(MAX_LIMIT)).contains(&n) => r.limit = n as u32,
                            _ => issues.push(name, Code::OutOfRange, format!("limit is 1 to {MAX_LIMIT}")),
                        }
                    }
                }
                "cursor" => cursor = Some(value),
                _ => {
                    if let Some((field, bound)) = time_param(name) {
                        match Timestamp::parse(value) {
                            Some(t) => {
                                let range = match field {
                                    SortField::CreatedAt => &mut r.created,
                                    SortField::UpdatedAt => &mut r.updated,
                                    SortField::CompletedAt => &mut r.completed,
                                };
                                if bound { range.after = Some(t) } else { range.before = Some(t) }
                            }
                            None => issues.push(
                                name,
                                Code::InvalidTimestamp,
                                "expected an RFC 3339 timestamp with an offset",
                            ),
                        }
                    } else if let Some(rest) = name.strip_prefix("metadata.") {
                        if r.metadata.len() > MAX_LIST {
                            continue;
                        }
                        match meta_filter(rest, value) {
                            Ok(f) => r.metadata.push(f),
                            Err((code, msg)) => issues.push(name, code, msg),
                        }
                    } else {
                        issues.push(name, Code::UnknownField, format!("unknown search parameter {name:?}"));
                    }
                }
            }
        }
        for (name, n) in [
            ("status", r.statuses.len()),
            ("type", r.types.len()),
            ("arch", r.arches.len()),
            ("metadata", r.metadata.len()),
        ] {
            if n > MAX_LIST {
                issues.push(name, Code::InvalidQuery, format!("at most {MAX_LIST} values"));
            }
        }
        dedup(&mut r.statuses);
        dedup(&mut r.types);
        dedup(&mut r.arches);
        if let Some(c) = cursor {
            match decode_cursor(c, &r) {
                Some(after) => r.after = Some(after),
                None => issues.push("cursor", Code::InvalidCursor, "this cursor was not issued for this search"),
            }
        }
        issues.finish(|| r)
    }

    /// The reference semantics: whether `job` is in the result (scope included).
    pub fn matches(&self, scope: &Scope, job: &Job) -> bool {
        scope.allows(job)
            && (self.statuses.is_empty() || self.statuses.contains(&job.status))
            && (self.types.is_empty() || self.types.contains(&job.job_type))
            && (self.arches.is_empty() || job.arch.as_ref().is_some_and(|a| self.arches.contains(a)))
            && self.hostname.as_ref().is_none_or(|h| job.hostname.as_ref() == Some(h))
            && self.project.as_ref().is_none_or(|p| &job.project_name == p)
            && self.user_id.is_none_or(|u| job.user_id == u)
            && self.workspace_id.is_none_or(|w| job.workspace_id == Some(w))
            && (self.created.after.is_none() && self.created.before.is_none()
                || self.created.contains(Some(job.created_at)))
            && (self.updated.after.is_none() && self.updated.before.is_none()
                || self.updated.contains(Some(job.updated_at)))
            && (self.completed.after.is_none() && self.completed.before.is_none()
                || self.completed.contains(job.completed_at))
            && (self.sort != SortField::CompletedAt || job.completed_at.is_some())
            && self.metadata.iter().all(|f| meta_matches(f, job))
            && self.text.as_ref().is_none_or(|q| text_matches(q, job))
            && self.after.is_none_or(|a| {
                self.sort_key(job).is_some_and(|k| {
                    let o = (k, job.id).cmp(&(a.key, a.id));
                    if self.order == Order::Desc { o == Ordering::Less } else { o == Ordering::Greater }
                })
            })
    }

    /// The sort key of a job for this request (µs of the sort field).
    pub fn sort_key(&self, job: &Job) -> Option<i64> {
        self.sort.of(job).map(Timestamp::as_micros)
    }

    /// Orders two jobs as the result pages do.
    pub fn compare(&self, a: &Job, b: &Job) -> Ordering {
        let o = (self.sort_key(a), a.id).cmp(&(self.sort_key(b), b.id));
        if self.order == Order::Desc { o.reverse() } else { o }
    }

    /// The opaque cursor for the page after `last`.
    pub fn cursor_after(&self, last: &Job) -> String {
        let key = self.sort_key(last).unwrap_or(0);
        let body = format!("{}:{}:{}:{:016x}", sort_tag(self), key, last.id, self.fingerprint());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body)
    }

    /// Identifies the filters and sort, so a cursor cannot be replayed on another search.
    fn fingerprint(&self) -> u64 {
        // In a canonical order: filters are ANDed and each list ORed, so their order means
        // nothing, and a REST API (v1) event's query string is rebuilt from a hash map, its
        // keys in another order each time (a second page's cursor was refused half the time).
        let mut canon = SearchRequest { after: None, limit: 0, ..self.clone() };
        canon.statuses.sort_by_key(|s| s.as_str());
        canon.types.sort_by_key(|t| t.as_str());
        canon.arches.sort();
        canon.metadata.sort_by_cached_key(|m| format!("{m:?}"));
        let mut s = String::new();
        let _ = write!(s, "{canon:?}");
        // FNV-1a: stable across builds and platforms (the browser may make cursors too).
        s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    }

    /// How many rows to fetch: one more than the page, to know whether another page exists.
    pub fn fetch_size(&self) -> u32 {
        self.limit + 1
    }

    /// The body of `POST /jobs/_search`.
    pub fn to_es(&self, scope: &Scope) -> Value {
        let mut filter = vec![scope_es(scope)];
        let terms = |field: &str, values: Vec<Value>| json!({"terms": { field: values }});
        if !self.statuses.is_empty() {
            filter.push(terms("status", self.statuses.iter().map(|s| json!(s.as_str())).collect()));
        }
        if !self.types.is_empty() {
            filter.push(terms("type", self.types.iter().map(|t| json!(t.as_str())).collect()));
        }
        if !self.arches.is_empty() {
            filter.push(terms("arch", self.arches.iter().map(|a| json!(a)).collect()));
        }
        if let Some(h) = &self.hostname {
            filter.push(json!({"term": {"hostname": h}}));
        }
        if let Some(p) = &self.project {
            filter.push(json!({"term": {"project_name.keyword": p}}));
        }
        if let Some(u) = self.user_id {
            filter.push(json!({"term": {"user_id": u}}));
        }
        if let Some(w) = self.workspace_id {
            filter.push(json!({"term": {"workspace_id": w}}));
        }
        for (field, range) in [
            (SortField::CreatedAt, self.created),
            (SortField::UpdatedAt, self.updated),
            (SortField::CompletedAt, self.completed),
        ] {
            let mut r = serde_json::Map::new();
            if let Some(a) = range.after {
                r.insert("gte".into(), json!(a.as_micros()));
            }
            if let Some(b) = range.before {
                r.insert("lt".into(), json!(b.as_micros()));
            }
            if !r.is_empty() {
                filter.push(json!({"range": { field.es_key(): r }}));
            }
        }
        if self.sort == SortField::CompletedAt {
            filter.push(json!({"exists": {"field": "completed_at_us"}}));
        }
        for f in &self.metadata {
            let field = format!("known_metadata.{}", f.key);
            filter.push(match f.op {
                Op::Eq => json!({"term": { field: f.value }}),
                op => json!({"range": { field: { op_name(op): f.value }}}),
            });
        }
        if let Some(q) = &self.text {
            let pattern = format!("*{}*", wildcard_escape(q));
            filter.push(json!({"bool": {"should": [
                {"wildcard": {"project_name.keyword": {"value": pattern, "case_insensitive": true}}},
                {"wildcard": {"error_message.keyword": {"value": pattern, "case_insensitive": true}}}
            ], "minimum_should_match": 1}}));
        }
        let dir = if self.order == Order::Desc { "desc" } else { "asc" };
        let mut body = json!({
            "size": self.fetch_size(),
            "track_total_hits": false,
            "query": {"bool": {"filter": filter}},
            "sort": [{ self.sort.es_key(): {"order": dir} }, {"id": {"order": dir}}]
        });
        if let (Some(a), Some(obj)) = (self.after, body.as_object_mut()) {
            obj.insert("search_after".into(), json!([a.key, a.id]));
        }
        body
    }

    /// `SELECT {select} FROM job WHERE ... ORDER BY ... LIMIT n`, with `$n` parameters.
    pub fn to_sql(&self, scope: &Scope, select: &str) -> (String, Vec<Param>) {
        let mut w = SqlBuilder::default();
        let me = w.bind(Param::Uuid(scope.user_id));
        if scope.workspace_ids.is_empty() {
            w.clause(format!("user_id = {me}"));
        } else {
            let ws = w.bind_all(scope.workspace_ids.iter().map(|id| Param::Uuid(*id)));
            w.clause(format!("(user_id = {me} OR workspace_id IN ({ws}))"));
        }
        if !self.statuses.is_empty() {
            let s = w.bind_all(self.statuses.iter().map(|s| Param::Text(s.as_str().into())));
            w.clause(format!("status IN ({s})"));
        }
        if !self.types.is_empty() {
            let s = w.bind_all(self.types.iter().map(|t| Param::Text(t.as_str().into())));
            w.clause(format!("type IN ({s})"));
        }
        if !self.arches.is_empty() {
            let s = w.bind_all(self.arches.iter().map(|a| Param::Text(a.clone())));
            w.clause(format!("arch IN ({s})"));
        }
        if let Some(h) = &self.hostname {
            let p = w.bind(Param::Text(h.clone()));
            w.clause(format!("hostname = {p}"));
        }
        if let Some(v) = &self.project {
            let p = w.bind(Param::Text(v.clone()));
            w.clause(format!("project_name = {p}"));
        }
        if let Some(u) = self.user_id {
            let p = w.bind(Param::Uuid(u));
            w.clause(format!("user_id = {p}"));
        }
        if let Some(ws) = self.workspace_id {
            let p = w.bind(Param::Uuid(ws));
            w.clause(format!("workspace_id = {p}"));
        }
        for (field, range) in [
            (SortField::CreatedAt, self.created),
            (SortField::UpdatedAt, self.updated),
            (SortField::CompletedAt, self.completed),
        ] {
            if let Some(a) = range.after {
                let p = w.bind(Param::Timestamp(a.as_micros()));
                w.clause(format!("{} >= {p}", field.column()));
            }
            if let Some(b) = range.before {
                let p = w.bind(Param::Timestamp(b.as_micros()));
                w.clause(format!("{} < {p}", field.column()));
            }
        }
        if self.sort == SortField::CompletedAt {
            w.clause("completed_at IS NOT NULL".into());
        }
        for f in &self.metadata {
            // The key is one of the known keys (checked in from_params), never caller text.
            let key = KnownKey::parse(&f.key).map_or("", KnownKey::name);
            let (expr, p) = match &f.value {
                MetaValue::Text(s) => (format!("metadata->>'{key}'"), w.bind(Param::Text(s.clone()))),
                MetaValue::Int(i) => (numeric_expr(key), w.bind(Param::Int(*i))),
                // As its shortest decimal text (Display: no exponent, the same double read
                // back), compared exactly; a double parameter cast to numeric keeps only 15
                // digits in PostgreSQL, and the Data API binds a doubleValue as one.
                MetaValue::Float(x) => (numeric_expr(key), format!("{}::numeric", w.bind(Param::Text(x.to_string())))),
            };
            w.clause(format!("{expr} {} {p}", f.op.sql()));
        }
        if let Some(q) = &self.text {
            let p = w.bind(Param::Text(format!("%{}%", like_escape(q))));
            // The length in UTF-16 code units: characters beyond U+FFFF count twice. At most as
            // many as bytes, so short messages skip the regular expression.
            let n = ERROR_KEYWORD_IGNORE_ABOVE;
            w.clause(format!(
                "(project_name ILIKE {p} OR ((octet_length(error_message) <= {n} OR char_length(regexp_replace(\
                 error_message, '[\\U00010000-\\U0010FFFF]', 'xx', 'g')) <= {n}) AND error_message ILIKE {p}))"
            ));
        }
        let col = self.sort.column();
        let (dir, cmp) = if self.order == Order::Desc { ("DESC", "<") } else { ("ASC", ">") };
        if let Some(a) = self.after {
            let k = w.bind(Param::Timestamp(a.key));
            let id = w.bind(Param::Uuid(a.id));
            w.clause(format!("({col}, id) {cmp} ({k}, {id})"));
        }
        let sql = format!(
            "SELECT {select} FROM job WHERE {} ORDER BY {col} {dir}, id {dir} LIMIT {}",
            w.clauses.join(" AND "),
            self.fetch_size()
        );
        (sql, w.params)
    }
}

fn numeric_expr(key: &str) -> String {
    format!("(CASE WHEN jsonb_typeof(metadata->'{key}') = 'number' THEN (metadata->>'{key}')::numeric END)")
}

#[derive(Default)]
struct SqlBuilder {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl SqlBuilder {
    /// A placeholder for `p`, with its explicit cast (the convention of `sql`): its type never
    /// rests on inference or on a driver's type hint. (The RDS Data API binds an unhinted string
    /// as text, and a timestamp hint as a timestamp without zone, read in the session's zone.)
    fn bind(&mut self, p: Param) -> String {
        let cast = match p {
            Param::Null => "",
            Param::Bool(_) => "::boolean",
            Param::Int(_) => "::bigint",
            // (Metadata filters bind a double as text cast to numeric: see `to_sql`.)
            Param::Float(_) => "::double precision",
            Param::Text(_) => "::text",
            Param::Uuid(_) => "::uuid",
            Param::Timestamp(_) => "::timestamptz",
            Param::Json(_) => "::jsonb",
        };
        self.params.push(p);
        format!("${}{cast}", self.params.len())
    }
    fn bind_all(&mut self, ps: impl Iterator<Item = Param>) -> String {
        ps.map(|p| self.bind(p)).collect::<Vec<_>>().join(", ")
    }
    fn clause(&mut self, c: String) {
        self.clauses.push(c);
    }
}

fn dedup<T: PartialEq>(v: &mut Vec<T>) {
    let mut i = 0;
    while i < v.len() {
        if v[..i].contains(&v[i]) {
            v.remove(i);
        } else {
            i += 1;
        }
    }
}

/// `created_after` -> (CreatedAt, true); `completed_before` -> (CompletedAt, false).
fn time_param(name: &str) -> Option<(SortField, bool)> {
    let (field, bound) = name.rsplit_once('_')?;
    let bound = match bound {
        "after" => true,
        "before" => false,
        _ => return None,
    };
    let field = match field {
        "created" => SortField::CreatedAt,
        "updated" => SortField::UpdatedAt,
        "completed" => SortField::CompletedAt,
        _ => return None,
    };
    Some((field, bound))
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Eq => "eq",
        Op::Gt => "gt",
        Op::Gte => "gte",
        Op::Lt => "lt",
        Op::Lte => "lte",
    }
}

/// `cpuCores.gte` = `4` -> a filter; the value is typed like the key.
fn meta_filter(spec: &str, value: &str) -> Result<MetaFilter, (Code, String)> {
    let (key, op) = match spec.split_once('.') {
        Some((k, op)) => (k, op),
        None => (spec, "eq"),
    };
    let known = KnownKey::parse(key)
        .ok_or((Code::InvalidQuery, format!("only known metadata keys can be searched, not {key:?}")))?;
    let op = match op {
        "eq" => Op::Eq,
        "gt" => Op::Gt,
        "gte" => Op::Gte,
        "lt" => Op::Lt,
        "lte" => Op::Lte,
        _ => return Err((Code::InvalidQuery, format!("unknown comparison {op:?}: use eq, gt, gte, lt or lte"))),
    };
    // Shape the value exactly as a stored value is shaped, so "4" and 4 mean the same.
    let mut one = Object::new();
    one.insert(known.name().to_owned(), Json::String(value.to_owned()));
    let mut issues = Issues::default();
    let shaped = crate::metadata::shape_map(one, "", &mut issues);
    let v = match (issues.into_vec().into_iter().next(), shaped.get(known.name())) {
        (Some(issue), _) => return Err((issue.code, issue.message)),
        (None, Some(v)) => v.clone(),
        (None, None) => return Err((Code::InvalidQuery, "no value".into())),
    };
    let value = match v {
        Json::String(s) => {
            if op != Op::Eq {
                return Err((Code::InvalidQuery, format!("{key} can only be compared for equality")));
            }
            MetaValue::Text(s)
        }
        Json::Number(n) => match n.as_i64() {
            Some(i) => MetaValue::Int(i),
            None => MetaValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        _ => return Err((Code::InvalidQuery, "unexpected value".into())),
    };
    Ok(MetaFilter { key: known.name().to_owned(), op, value })
}

fn meta_matches(f: &MetaFilter, job: &Job) -> bool {
    let Some(v) = job.metadata.get(&f.key) else { return false };
    match (&f.value, v) {
        (MetaValue::Text(want), Json::String(have)) => f.op == Op::Eq && have == want,
        (MetaValue::Int(want), Json::Number(have)) => {
            have.as_f64().and_then(|h| h.partial_cmp(&(*want as f64))).is_some_and(|o| f.op.holds(o))
        }
        (MetaValue::Float(want), Json::Number(have)) => {
            have.as_f64().and_then(|h| h.partial_cmp(want)).is_some_and(|o| f.op.holds(o))
        }
        _ => false,
    }
}

fn text_matches(q: &str, job: &Job) -> bool {
    let q = q.to_ascii_lowercase();
    let hit = |s: &str| s.to_ascii_lowercase().contains(&q);
    hit(&job.project_name)
        || job
            .error_message
            .as_deref()
            .is_some_and(|e| e.encode_utf16().nth(ERROR_KEYWORD_IGNORE_ABOVE).is_none() && hit(e))
}

/// Escapes `*`, `?` and `\` for a wildcard query.
fn wildcard_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes `%`, `_` and `\` for LIKE (backslash is Postgres' default escape character).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn sort_tag(r: &SearchRequest) -> String {
    format!("{}{}", if r.order == Order::Desc { "-" } else { "+" }, r.sort.column())
}

fn decode_cursor(c: &str, r: &SearchRequest) -> Option<After> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    let s = String::from_utf8(bytes).ok()?;
    let mut parts = s.split(':');
    let (tag, key, id, fp) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || tag != sort_tag(r) || fp != format!("{:016x}", r.fingerprint()) {
        return None;
    }
    // The key is a timestamp's microseconds: anything outside years 0001-9999 is no cursor of
    // ours (PostgreSQL would refuse it as out of range: a 500 instead of a 400).
    let key = key.parse().ok().filter(|&k| crate::Timestamp::from_micros(k).is_some())?;
    Some(After { key, id: text::parse_uuid(id).ok()? })
}

fn scope_es(scope: &Scope) -> Value {
    let mut should = vec![json!({"term": {"user_id": scope.user_id}})];
    if !scope.workspace_ids.is_empty() {
        should.push(json!({"terms": {"workspace_id": scope.workspace_ids}}));
    }
    json!({"bool": {"should": should, "minimum_should_match": 1}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<SearchRequest, Vec<(String, Code)>> {
        let pairs: Vec<(&str, &str)> =
            q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
        SearchRequest::from_params(pairs).map_err(|e| e.into_iter().map(|i| (i.path, i.code)).collect())
    }

    #[track_caller]
    fn bad(q: &str, path: &str, code: Code) {
        assert_eq!(parse(q).err(), Some(vec![(path.to_owned(), code)]), "{q}");
    }

    #[test]
    fn params() {
        let r = parse("status=RUNNING,FAILED,RUNNING&type=BUILD&arch=amd64&hostname=CI.Example.com&metadata.cpuCores.gte=4&metadata.memoryGb=1.5&sort=-updated_at&limit=10&q=api").expect("valid");
        assert_eq!(r.statuses, vec![JobStatus::Running, JobStatus::Failed]);
        assert_eq!(r.arches, vec!["x86_64"]);
        assert_eq!(r.hostname.as_deref(), Some("ci.example.com"));
        assert_eq!(r.metadata[0], MetaFilter { key: "cpuCores".into(), op: Op::Gte, value: MetaValue::Int(4) });
        assert_eq!(r.metadata[1].value, MetaValue::Float(1.5));
        assert_eq!((r.sort, r.order, r.limit), (SortField::UpdatedAt, Order::Desc, 10));
        assert_eq!(parse("").expect("empty is fine"), SearchRequest::default());
        bad("status=DONE", "status", Code::UnknownStatus);
        bad("type=x", "type", Code::UnknownType);
        bad("arch=A-B", "arch", Code::InvalidArch);
        bad("hostname=-x", "hostname", Code::InvalidHostname);
        bad("user=nope", "user", Code::InvalidUuid);
        bad("created_after=yesterday", "created_after", Code::InvalidTimestamp);
        bad("limit=0", "limit", Code::OutOfRange);
        bad("limit=501", "limit", Code::OutOfRange);
        bad("limit=ten", "limit", Code::NotInteger);
        bad("limit=+5", "limit", Code::NotInteger);
        bad("limit=-", "limit", Code::NotInteger);
        bad("limit=", "limit", Code::NotInteger);
        bad("limit=5.0", "limit", Code::NotInteger);
        bad("limit=99999999999999999999", "limit", Code::OutOfRange);
        bad("limit=-99999999999999999999", "limit", Code::OutOfRange);
        bad("sort=name", "sort", Code::InvalidQuery);
        bad("metadata.team=core", "metadata.team", Code::InvalidQuery);
        bad("metadata.cpuCores.like=4", "metadata.cpuCores.like", Code::InvalidQuery);
        bad("metadata.cpuCores=2.5", "metadata.cpuCores", Code::NotInteger);
        bad("metadata.cpuCores=x", "metadata.cpuCores", Code::NotNumber);
        bad("metadata.dockerImageId.gt=sha256:00", "metadata.dockerImageId.gt", Code::InvalidDigest);
        bad("cursor=abc", "cursor", Code::InvalidCursor);
        bad("colour=red", "colour", Code::UnknownField);
        bad(&format!("q={}", "x".repeat(201)), "q", Code::TooLong);
        bad("q=a\u{1}b", "q", Code::ControlChars);
        bad("project=a\u{0}b", "project", Code::ControlChars);
        bad("project=a\nb", "project", Code::ControlChars);
    }

    /// Work and answer bounded by the limits, not by the query string: a list past MAX_LIST
    /// stops being read, and past MAX_REPORTED problems the rest are counted.
    #[test]
    fn long_query_strings_are_bounded() {
        let many = |v: &str, n: usize| vec![v; n].join(",");
        assert_eq!(
            parse(&format!("arch={}", many("arm64", 60_000))).err(),
            Some(vec![("arch".into(), Code::InvalidQuery)])
        );
        let errors = parse(&format!("status={}", many("x", 60_000))).expect_err("bad");
        assert_eq!(errors.len(), MAX_REPORTED + 1);
        assert!(errors[..MAX_REPORTED].iter().all(|(p, c)| p == "status" && *c == Code::UnknownStatus));
        let unknown: String = (0..5_000).map(|i| format!("p{i}=1&")).collect();
        let errors = SearchRequest::from_params(
            unknown.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))),
        )
        .expect_err("bad");
        assert_eq!(errors.len(), MAX_REPORTED + 1);
        assert_eq!(errors[MAX_REPORTED].message, format!("{}{}", 5_000 - MAX_REPORTED, crate::issue::NOT_LISTED));
        let filters: String = (0..1_000).map(|_| "metadata.cpuCores=1&").collect();
        assert_eq!(parse(&filters).err(), Some(vec![("metadata".into(), Code::InvalidQuery)]));
    }

    #[test]
    fn sql_rendering_binds_every_value() {
        let r = parse(
            "status=RUNNING&q=50%_off\\&metadata.cpuCores.gte=4&created_after=2024-01-01T00:00:00Z&sort=created_at",
        )
        .expect("valid");
        let scope = Scope { user_id: Uuid::from_u128(1), workspace_ids: vec![Uuid::from_u128(2), Uuid::from_u128(3)] };
        let (sql, params) = r.to_sql(&scope, "id");
        assert_eq!(
            sql,
            "SELECT id FROM job WHERE (user_id = $1::uuid OR workspace_id IN ($2::uuid, $3::uuid)) \
             AND status IN ($4::text) AND created_at >= $5::timestamptz \
             AND (CASE WHEN jsonb_typeof(metadata->'cpuCores') = 'number' THEN (metadata->>'cpuCores')::numeric END) \
             >= $6::bigint AND (project_name ILIKE $7::text OR ((octet_length(error_message) <= 2048 OR \
             char_length(regexp_replace(error_message, '[\\U00010000-\\U0010FFFF]', 'xx', 'g')) <= 2048) \
             AND error_message ILIKE $7::text)) ORDER BY created_at ASC, id ASC LIMIT 51"
        );
        assert_eq!(params.len(), 7);
        assert_eq!(params[6], Param::Text("%50\\%\\_off\\\\%".into()));
        assert!(!sql.contains("50"), "values are bound, never spliced");
    }

    #[test]
    fn es_rendering() {
        let r = parse("type=TEST&q=a*b&sort=-completed_at&limit=5").expect("valid");
        let scope = Scope { user_id: Uuid::from_u128(1), workspace_ids: vec![] };
        let body = r.to_es(&scope);
        assert_eq!(body["size"], 6);
        assert_eq!(body["sort"], json!([{"completed_at_us": {"order": "desc"}}, {"id": {"order": "desc"}}]));
        let filter = body["query"]["bool"]["filter"].as_array().expect("filters");
        assert_eq!(
            filter[0],
            json!({"bool": {"should": [{"term": {"user_id": Uuid::from_u128(1)}}], "minimum_should_match": 1}})
        );
        assert!(filter.contains(&json!({"exists": {"field": "completed_at_us"}})));
        assert_eq!(
            filter.last().expect("q")["bool"]["should"][0]["wildcard"]["project_name.keyword"]["value"],
            "*a\\*b*"
        );
    }

    #[test]
    fn cursors_are_bound_to_their_search() {
        let r = parse("status=RUNNING").expect("valid");
        let job = Job {
            id: Uuid::from_u128(9),
            workspace_id: None,
            user_id: Uuid::from_u128(1),
            status: JobStatus::Running,
            job_type: JobType::Build,
            project_name: "p".into(),
            hostname: None,
            arch: None,
            user_email: None,
            error_message: None,
            metadata: Default::default(),
            created_at: Timestamp::from_millis(5),
            updated_at: Timestamp::from_millis(5),
            completed_at: None,
            version: 0,
        };
        let c = r.cursor_after(&job);
        let next = parse(&format!("status=RUNNING&cursor={c}")).expect("same search");
        assert_eq!(next.after, Some(After { key: 5000, id: job.id }));
        assert!(parse(&format!("status=FAILED&cursor={c}")).is_err(), "other filters");
        assert!(parse(&format!("status=RUNNING&sort=created_at&cursor={c}")).is_err(), "other sort");
        assert!(parse(&format!("status=RUNNING&limit=7&cursor={c}")).is_ok(), "page size may change");
        // The same filters in another order are the same search.
        let ordered = parse("metadata.cpuCores.gte=1&metadata.cpuCores.lte=64&status=RUNNING,QUEUED&arch=arm64,x86_64")
            .expect("valid");
        let c2 = ordered.cursor_after(&job);
        let other = format!(
            "arch=x86_64,arm64&status=QUEUED,RUNNING&metadata.cpuCores.lte=64&metadata.cpuCores.gte=1&cursor={c2}"
        );
        assert!(parse(&other).is_ok(), "the order of parameters and values means nothing");
        // The fingerprint does not cover the key: a key edited out of timestamp range is refused.
        let fp = format!("{:016x}", r.fingerprint());
        let forge = |key: &str| {
            let body = format!("-created_at:{key}:{}:{fp}", job.id);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body)
        };
        assert!(parse(&format!("status=RUNNING&cursor={}", forge("5000"))).is_ok(), "the forge is right");
        for key in ["-1000000000000000000", &i64::MIN.to_string(), &i64::MAX.to_string(), "253402300800000000"] {
            assert!(parse(&format!("status=RUNNING&cursor={}", forge(key))).is_err(), "{key}");
        }
    }
}
