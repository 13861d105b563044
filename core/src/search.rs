//! The search side of a job: the document, the index settings and mapping, index naming behind
//! an alias, the `_bulk` NDJSON body with external versioning, and the reading of a `_bulk`
//! response into per-item outcomes. Works on Elasticsearch 8.x and OpenSearch 2.x with core
//! field types only (the OpenSearch integ-test zip has no analysis-common or mapper-extras).

use crate::metadata::KnownKey;
use crate::model::Job;
use crate::time::Timestamp;
use crate::tree::Object;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The alias readers and writers use; it points at exactly one `jobs-v{N}` index.
pub const ALIAS: &str = "jobs";

/// The engines measure `ignore_above` in UTF-16 code units (two for a character outside the
/// Basic Multilingual Plane, e.g. an emoji), and `project_name` is at most 255 characters: twice
/// that keeps every name's keyword (found by the differential test: 255 emoji were not
/// searchable by project with 256).
pub const PROJECT_KEYWORD_IGNORE_ABOVE: usize = 2 * crate::spec::PROJECT_NAME_MAX;
/// Error messages up to this many UTF-16 code units (the engines' unit for `ignore_above`) get
/// a keyword, used by free-text matching; the SQL fallback and the reference apply the same
/// bound in the same unit, so all paths match the same jobs.
pub const ERROR_KEYWORD_IGNORE_ABOVE: usize = 2048;

/// The name of version `n` of the index.
pub fn index_name(n: u32) -> String {
    format!("{ALIAS}-v{n}")
}

/// The `N` of an index named `jobs-v{N}`.
pub fn index_version(name: &str) -> Option<u32> {
    name.strip_prefix(ALIAS)?.strip_prefix("-v")?.parse().ok()
}

/// The search document for a job (serialise it). `metadata` is carried exactly as stored and
/// not indexed (so a hit's `_source` is the job as Postgres has it); `known_metadata` holds the
/// known keys whose stored values have the type their field is mapped to (numbers for the
/// numeric keys, a string for `dockerImageId`), as stored, for filtering. A value of another
/// type (a row written by another service: `"4"`, `true`) is left out of it, so the document
/// is never rejected for it and filters treat it exactly as the reference and the SQL do (no
/// match).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Document<'a> {
    id: Uuid,
    workspace_id: Option<Uuid>,
    user_id: Uuid,
    status: crate::model::JobStatus,
    #[serde(rename = "type")]
    job_type: crate::model::JobType,
    project_name: &'a str,
    hostname: Option<&'a str>,
    arch: Option<&'a str>,
    user_email: Option<&'a str>,
    error_message: Option<&'a str>,
    metadata: &'a Object,
    known_metadata: KnownMetadata<'a>,
    created_at: Timestamp,
    updated_at: Timestamp,
    completed_at: Option<Timestamp>,
    version: i64,
    // Exact microsecond keys for sorting, ranges and cursors (a `date` keeps milliseconds only,
    // and `date_nanos` cannot hold dates before 1970).
    created_at_us: i64,
    updated_at_us: i64,
    completed_at_us: Option<i64>,
}

/// The document for `job`.
pub fn document(job: &Job) -> Document<'_> {
    Document {
        id: job.id,
        workspace_id: job.workspace_id,
        user_id: job.user_id,
        status: job.status,
        job_type: job.job_type,
        project_name: &job.project_name,
        hostname: job.hostname.as_deref(),
        arch: job.arch.as_deref(),
        user_email: job.user_email.as_deref(),
        error_message: job.error_message.as_deref(),
        metadata: &job.metadata,
        known_metadata: KnownMetadata(&job.metadata),
        created_at: job.created_at,
        updated_at: job.updated_at,
        completed_at: job.completed_at,
        version: job.version,
        created_at_us: job.created_at.as_micros(),
        updated_at_us: job.updated_at.as_micros(),
        completed_at_us: job.completed_at.map(Timestamp::as_micros),
    }
}

#[derive(Debug, Clone, Copy)]
struct KnownMetadata<'a>(&'a Object);

impl Serialize for KnownMetadata<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for key in KnownKey::ALL {
            if let Some(v) = key.typed_value(self.0) {
                m.serialize_entry(key.name(), v)?;
            }
        }
        m.end()
    }
}

fn date() -> Value {
    json!({"type": "date", "format": "strict_date_optional_time"})
}

/// The index settings and mapping (the body of `PUT /jobs-v{N}`).
pub fn index_body(shards: u32, replicas: u32) -> Value {
    let keyword = json!({"type": "keyword"});
    json!({
        "settings": {
            "index": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "refresh_interval": "1s",
                "max_result_window": 10000
            }
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "id": keyword,
                "workspace_id": keyword,
                "user_id": keyword,
                "status": keyword,
                "type": keyword,
                "project_name": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": PROJECT_KEYWORD_IGNORE_ABOVE}}},
                "hostname": keyword,
                "arch": keyword,
                "user_email": keyword,
                "error_message": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": ERROR_KEYWORD_IGNORE_ABOVE}}},
                // Kept in _source as stored, not indexed (any shape, any keys).
                "metadata": {"type": "object", "enabled": false},
                // Numbers compare as doubles, as the reference compares them; a string too long
                // to be a digest is kept but not indexed (it cannot match one).
                "known_metadata": {
                    "type": "object",
                    "dynamic": "strict",
                    "properties": {
                        "dockerImageId": {"type": "keyword", "ignore_above": 256},
                        "cpuCores": {"type": "double"},
                        "memoryGb": {"type": "double"},
                        "buildDurationMs": {"type": "double"}
                    }
                },
                "created_at": date(),
                "updated_at": date(),
                "completed_at": date(),
                "version": {"type": "long"},
                "created_at_us": {"type": "long"},
                "updated_at_us": {"type": "long"},
                "completed_at_us": {"type": "long"}
            }
        }
    })
}

/// The body of `POST /_aliases` that points the alias at `new` (and away from `old`) atomically.
pub fn alias_swap_body(old: Option<&str>, new: &str) -> Value {
    let mut actions = Vec::new();
    if let Some(old) = old {
        actions.push(json!({"remove": {"index": old, "alias": ALIAS}}));
    }
    actions.push(json!({"add": {"index": new, "alias": ALIAS, "is_write_index": true}}));
    json!({ "actions": actions })
}

/// One change to send: a job's current state, or its deletion.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<'a> {
    Upsert(&'a Job),
    /// A deleted job: `version` is the row's last version; the delete is sent one above it, so
    /// it wins over the last indexed document and loses to any later re-creation.
    Delete {
        id: Uuid,
        version: i64,
    },
}

impl Change<'_> {
    pub fn id(&self) -> Uuid {
        match self {
            Change::Upsert(job) => job.id,
            Change::Delete { id, .. } => *id,
        }
    }
    /// The external version the engine stores for this change.
    pub fn external_version(&self) -> i64 {
        match self {
            Change::Upsert(job) => job.version,
            Change::Delete { version, .. } => version.saturating_add(1),
        }
    }
}

/// Appends the NDJSON lines for `changes` to `out` (the body of `POST /{index}/_bulk`). Every
/// action carries `version_type=external`, so an older version never overwrites a newer one
/// whatever order concurrent runs finish in.
pub fn bulk_body_into(index: &str, changes: &[Change<'_>], out: &mut Vec<u8>) {
    use std::io::Write as _;
    for c in changes {
        let op = match c {
            Change::Upsert(_) => "index",
            Change::Delete { .. } => "delete",
        };
        // Ids are UUIDs and the index name is ours: nothing in the action line needs escaping.
        // Writing into a Vec cannot fail.
        let _ = writeln!(
            out,
            r#"{{"{op}":{{"_index":"{index}","_id":"{}","version":{},"version_type":"external"}}}}"#,
            c.id(),
            c.external_version()
        );
        if let Change::Upsert(job) = c {
            let _ = serde_json::to_writer(&mut *out, &document(job));
            out.push(b'\n');
        }
    }
}

/// The NDJSON body for `changes`.
pub fn bulk_body(index: &str, changes: &[Change<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(changes.len() * 700);
    bulk_body_into(index, changes, &mut out);
    out
}

/// What happened to one item of a `_bulk` request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Stored (or, for a delete, recorded: a delete of a missing document is also done).
    Indexed,
    /// 409: the engine already has this or a newer version. Counts as done.
    Stale,
    /// 429, 5xx or no answer: try again later, with backoff.
    Retry { status: u16, reason: String },
    /// Any other 4xx: the document itself is wrong; dead-letter after a few attempts.
    Rejected { status: u16, reason: String },
}

impl Outcome {
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Indexed | Outcome::Stale)
    }

    /// Classifies one item by its HTTP status and error.
    pub fn classify(status: u16, reason: impl FnOnce() -> String) -> Outcome {
        match status {
            200..=299 => Outcome::Indexed,
            409 => Outcome::Stale,
            429 | 500..=599 => Outcome::Retry { status, reason: reason() },
            _ => Outcome::Rejected { status, reason: reason() },
        }
    }
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<Map<String, Value>>,
}

/// Reads a `_bulk` response body into one outcome per sent change, in order. Items the
/// response does not account for (a truncated or malformed body) are `Retry`, never `Indexed`.
pub fn parse_bulk_response(body: &[u8], sent: usize) -> Vec<Outcome> {
    let parsed: Option<BulkResponse> = serde_json::from_slice(body).ok();
    let items = parsed.map(|r| r.items).unwrap_or_default();
    let mut out: Vec<Outcome> = items.iter().take(sent).map(item_outcome).collect();
    while out.len() < sent {
        out.push(Outcome::Retry { status: 0, reason: "no result for this item in the bulk response".into() });
    }
    out
}

fn item_outcome(item: &Map<String, Value>) -> Outcome {
    let Some((op, body)) = item.iter().next() else {
        return Outcome::Retry { status: 0, reason: "empty bulk item".into() };
    };
    let status = body.get("status").and_then(Value::as_u64).map_or(0, |s| s.min(999) as u16);
    let err = body.get("error");
    // A delete of a document that is not there is done; a 404 with an error is about the
    // index (`index_not_found_exception`: the alias is gone), which the client retries.
    if op == "delete" && status == 404 && err.is_none() {
        return Outcome::Indexed;
    }
    if status == 0 {
        return Outcome::Retry { status, reason: "bulk item without a status".into() };
    }
    let kind = err.and_then(|e| e.get("type")).and_then(Value::as_str).unwrap_or("error");
    let reason = || {
        let why = err.and_then(|e| e.get("reason")).and_then(Value::as_str).unwrap_or("");
        let mut s = format!("{kind}: {why}");
        s.truncate(s.floor_char_boundary(1000));
        s
    };
    // A block on the index (`index.blocks.write`, read-only during a shrink or a full disk), a
    // closed index (closed for a settings change, a restore) or a timeout says nothing against
    // the document: it passes, so the change waits and is never dead-lettered for it (a 403
    // was, after three attempts within seconds).
    if status == 408 || kind == "cluster_block_exception" || kind == "index_closed_exception" {
        return Outcome::Retry { status, reason: reason() };
    }
    Outcome::classify(status, reason)
}

/// The outcome for every item when the whole request failed (HTTP status of the response, or
/// 0 for a transport error).
pub fn whole_request_failed(status: u16, reason: &str, sent: usize) -> Vec<Outcome> {
    let one = match status {
        0 | 429 | 500..=599 => Outcome::Retry { status, reason: reason.to_owned() },
        // 413: the batch is too large; smaller batches will succeed.
        413 => Outcome::Retry { status, reason: reason.to_owned() },
        _ => Outcome::Rejected { status, reason: reason.to_owned() },
    };
    vec![one; sent]
}

/// The date text the engine stores for a timestamp (also valid in range queries).
pub fn date_text(t: Timestamp) -> String {
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobStatus, JobType};

    fn job() -> Job {
        let mut metadata = Object::new();
        metadata.insert("cpuCores".into(), json!(4).into());
        metadata.insert("cpu".into(), json!({"model": "x"}).into());
        metadata.insert("memoryGb".into(), json!("lots").into());
        Job {
            id: Uuid::from_u128(0x0190_a1b2_c3d4_7e5f_8a9b_0c1d_2e3f_4a5b),
            workspace_id: None,
            user_id: Uuid::from_u128(1),
            status: JobStatus::Running,
            job_type: JobType::Build,
            project_name: "api \"server\"".into(),
            hostname: Some("h".into()),
            arch: None,
            user_email: None,
            error_message: None,
            metadata,
            created_at: Timestamp::from_millis(1_714_564_800_000),
            updated_at: Timestamp::from_millis(1_714_564_800_123),
            completed_at: None,
            version: 7,
        }
    }

    #[test]
    fn document_snapshot() {
        let doc = serde_json::to_value(document(&job())).expect("json");
        let want = json!({
            "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "workspace_id": null,
            "user_id": "00000000-0000-0000-0000-000000000001", "status": "RUNNING", "type": "BUILD",
            "project_name": "api \"server\"", "hostname": "h", "arch": null, "user_email": null,
            "error_message": null, "metadata": {"cpu": {"model": "x"}, "cpuCores": 4, "memoryGb": "lots"},
            "known_metadata": {"cpuCores": 4},
            "created_at": "2024-05-01T12:00:00.000000Z", "updated_at": "2024-05-01T12:00:00.123000Z",
            "completed_at": null, "version": 7,
            "created_at_us": 1_714_564_800_000_000i64, "updated_at_us": 1_714_564_800_123_000i64,
            "completed_at_us": null
        });
        assert_eq!(doc, want);
    }

    #[test]
    fn mapping_covers_every_document_field_and_nothing_else() {
        let body = index_body(1, 0);
        let props = body["mappings"]["properties"].as_object().expect("properties");
        let doc = serde_json::to_value(document(&job())).expect("json");
        let fields: Vec<&String> = doc.as_object().expect("object").keys().collect();
        let mapped: Vec<&String> = props.keys().collect();
        assert_eq!(fields, mapped);
        for spec in crate::spec::JOB_FIELDS {
            assert!(props.contains_key(spec.name), "{} not mapped", spec.name);
        }
        assert_eq!(body["mappings"]["dynamic"], "strict");
        assert_eq!(body["mappings"]["properties"]["metadata"]["enabled"], false);
        let known = body["mappings"]["properties"]["known_metadata"]["properties"].as_object().expect("known");
        assert_eq!(known.len(), KnownKey::ALL.len());
        assert!(KnownKey::ALL.iter().all(|k| known.contains_key(k.name())));
    }

    #[test]
    fn bulk_body_is_versioned_ndjson() {
        let j = job();
        let body = bulk_body("jobs-v1", &[Change::Upsert(&j), Change::Delete { id: Uuid::from_u128(2), version: 4 }]);
        let body = String::from_utf8(body).expect("utf-8");
        let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            json!({"index": {"_index": "jobs-v1", "_id": j.id, "version": 7, "version_type": "external"}})
        );
        assert_eq!(lines[1], serde_json::to_value(document(&j)).expect("json"));
        assert_eq!(lines[2]["delete"]["version"], 5);
        assert!(body.ends_with('\n'));
    }

    #[test]
    fn bulk_outcomes() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"_id":"a","status":201,"result":"created"}},
            {"index":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"current version [9] is higher"}}},
            {"index":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"_id":"d","status":503,"error":{"type":"unavailable_shards_exception","reason":"x"}}},
            {"index":{"_id":"e","status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}},
            {"delete":{"_id":"f","status":404,"result":"not_found"}},
            {"delete":{"_id":"g","status":200,"result":"deleted"}}
        ]}"#;
        let out = parse_bulk_response(body, 8);
        assert_eq!(out[0], Outcome::Indexed);
        assert_eq!(out[1], Outcome::Stale);
        assert!(
            matches!(&out[2], Outcome::Retry { status: 429, reason } if reason.starts_with("es_rejected_execution_exception"))
        );
        assert!(matches!(out[3], Outcome::Retry { status: 503, .. }));
        assert!(
            matches!(&out[4], Outcome::Rejected { status: 400, reason } if reason.contains("mapper_parsing_exception: bad"))
        );
        assert_eq!(out[5], Outcome::Indexed);
        assert_eq!(out[6], Outcome::Indexed);
        assert!(matches!(out[7], Outcome::Retry { status: 0, .. }), "missing item must be retried");
        // A delete whose 404 is about the index, not the document, is not done; a write block
        // or a timeout waits.
        let body = br#"{"items":[
            {"delete":{"_id":"f","status":404,"error":{"type":"index_not_found_exception","reason":"no such index [jobs]"}}},
            {"index":{"_id":"a","status":403,"error":{"type":"cluster_block_exception","reason":"index [jobs-v1] blocked by: [FORBIDDEN/8/index write (api)];"}}},
            {"index":{"_id":"b","status":408,"error":{"type":"process_cluster_event_timeout_exception","reason":"x"}}},
            {"index":{"_id":"c","status":400,"error":{"type":"index_closed_exception","reason":"closed"}}}
        ]}"#;
        let out = parse_bulk_response(body, 4);
        assert!(matches!(out[3], Outcome::Retry { status: 400, .. }));
        assert!(
            matches!(&out[0], Outcome::Rejected { status: 404, reason } if reason.starts_with("index_not_found_exception"))
        );
        assert!(
            matches!(&out[1], Outcome::Retry { status: 403, reason } if reason.starts_with("cluster_block_exception"))
        );
        assert!(matches!(out[2], Outcome::Retry { status: 408, .. }));
        assert!(parse_bulk_response(b"<html>", 2).iter().all(|o| matches!(o, Outcome::Retry { .. })));
    }

    #[test]
    fn index_names() {
        assert_eq!(index_name(3), "jobs-v3");
        assert_eq!(index_version("jobs-v12"), Some(12));
        assert_eq!(index_version("jobs-vx"), None);
        assert_eq!(index_version("other-v1"), None);
    }
}
