//! Validation of the three input kinds into types that prove it: `record` -> [`ValidJob`],
//! `create` -> [`ValidNewJob`], `patch` -> [`ValidPatch`]. Every problem is reported at once;
//! nothing panics, whatever the input.
//!
//! JSON text is read without building a JSON tree for the top level: strings are borrowed from
//! the input where they have no escapes, only `metadata` becomes a [`crate::tree::Object`].

use crate::issue::{Code, Issue, Issues};
use crate::metadata;
use crate::model::{Job, JobStatus, JobType};
use crate::msg;
use crate::spec::{EMAIL_MAX, ERROR_MESSAGE_MAX, PROJECT_NAME_MAX};
use crate::status;
use crate::text::{self, UuidError};
use crate::time::Timestamp;
use crate::tree::{Json, Object};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use uuid::Uuid;

/// Which input a text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Record,
    Create,
    Patch,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "record" => Some(Kind::Record),
            "create" => Some(Kind::Create),
            "patch" => Some(Kind::Patch),
            _ => None,
        }
    }
}

/// A whole job that passed every rule. Only this module makes one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ValidJob(Job);

impl ValidJob {
    pub fn job(&self) -> &Job {
        &self.0
    }
    pub fn into_job(self) -> Job {
        self.0
    }
}

/// A create request that passed every rule; the caller's identity and the clock complete it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidNewJob {
    id: Option<Uuid>,
    workspace_id: Option<Uuid>,
    status: JobStatus,
    #[serde(rename = "type")]
    job_type: JobType,
    project_name: String,
    hostname: Option<String>,
    arch: Option<String>,
    metadata: Object,
}

impl ValidNewJob {
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }
    pub fn workspace_id(&self) -> Option<Uuid> {
        self.workspace_id
    }
    pub fn status(&self) -> JobStatus {
        self.status
    }
    pub fn job_type(&self) -> JobType {
        self.job_type
    }
    pub fn project_name(&self) -> &str {
        &self.project_name
    }
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }
    pub fn arch(&self) -> Option<&str> {
        self.arch.as_deref()
    }
    pub fn metadata(&self) -> &Object {
        &self.metadata
    }
    /// Sets the id when the client gave none (a UUIDv7 made by the caller).
    pub fn with_id_if_missing(mut self, id: Uuid) -> Self {
        self.id.get_or_insert(id);
        self
    }
    /// The job this request creates, as the store will hold it at version 0.
    pub fn into_job(self, default_id: Uuid, user_id: Uuid, user_email: Option<&str>, now: Timestamp) -> ValidJob {
        ValidJob(Job {
            id: self.id.unwrap_or(default_id),
            workspace_id: self.workspace_id,
            user_id,
            status: self.status,
            job_type: self.job_type,
            project_name: self.project_name,
            hostname: self.hostname,
            arch: self.arch,
            user_email: user_email.and_then(text::normalise_email),
            error_message: None,
            metadata: self.metadata,
            created_at: now,
            updated_at: now,
            completed_at: None,
            version: 0,
        })
    }
}

/// A change to one job that passed every rule against that job's current state. It holds the
/// complete new values of the mutable fields and the version it was checked against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidPatch {
    id: Uuid,
    expected_version: i64,
    status: JobStatus,
    error_message: Option<String>,
    hostname: Option<String>,
    arch: Option<String>,
    metadata: Object,
    completed_at: Option<Timestamp>,
}

impl ValidPatch {
    pub fn id(&self) -> Uuid {
        self.id
    }
    /// The version the patch was checked against (optimistic locking: `WHERE version = $v`).
    pub fn expected_version(&self) -> i64 {
        self.expected_version
    }
    pub fn status(&self) -> JobStatus {
        self.status
    }
    pub fn error_message(&self) -> Option<&str> {
        self.error_message.as_deref()
    }
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }
    pub fn arch(&self) -> Option<&str> {
        self.arch.as_deref()
    }
    pub fn metadata(&self) -> &Object {
        &self.metadata
    }
    pub fn completed_at(&self) -> Option<Timestamp> {
        self.completed_at
    }
    /// The job after the patch, as the store will hold it (version + 1, `updated_at = now`).
    pub fn apply(&self, current: &Job, now: Timestamp) -> Job {
        self.clone().into_job(current.clone(), now)
    }
    /// [`ValidPatch::apply`] taking both by value: nothing cloned.
    pub fn into_job(self, current: Job, now: Timestamp) -> Job {
        Job {
            status: self.status,
            error_message: self.error_message,
            hostname: self.hostname,
            arch: self.arch,
            metadata: self.metadata,
            completed_at: self.completed_at,
            updated_at: now.max(current.created_at),
            version: current.version.saturating_add(1),
            ..current
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the top level of a JSON object with borrowed strings.

#[path = "json.rs"]
pub mod json;

use json::{Loose, Top};

impl Loose<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Loose::Null => "null",
            Loose::Bool(_) => "a boolean",
            Loose::Num(_) => "a number",
            Loose::Str(_) => "a string",
            Loose::Arr(_) => "an array",
            Loose::Obj(_) => "an object",
        }
    }

    fn into_value(self) -> Json {
        match self {
            Loose::Null => Json::Null,
            Loose::Bool(b) => Json::Bool(b),
            Loose::Num(n) => Json::Number(n),
            Loose::Str(s) => Json::String(s.into_owned()),
            Loose::Arr(a) => Json::Array(a),
            Loose::Obj(o) => Json::Object(o),
        }
    }

    /// A serde_json value's field, for [`record`], [`create`] and [`patch`]: strings borrowed,
    /// containers converted.
    fn borrow(v: &Value) -> Loose<'_> {
        match v {
            Value::Null => Loose::Null,
            Value::Bool(b) => Loose::Bool(*b),
            Value::Number(n) => Loose::Num(n.clone()),
            Value::String(s) => Loose::Str(Cow::Borrowed(s)),
            Value::Array(a) => Loose::Arr(a.iter().cloned().map(Json::from).collect()),
            Value::Object(o) => Loose::Obj(o.clone().into()),
        }
    }
}

fn parse_top(bytes: &[u8]) -> Result<Vec<(Cow<'_, str>, Loose<'_>)>, Vec<Issue>> {
    match json::parse_top(bytes) {
        Ok(top) => top_fields(top),
        Err(e) => Err(vec![Issue::new("", Code::InvalidJson, msg!("malformed JSON: ", e))]),
    }
}

fn top_fields(top: Top<'_>) -> Result<Vec<(Cow<'_, str>, Loose<'_>)>, Vec<Issue>> {
    match top {
        Top::Object(fields) => Ok(fields),
        Top::Other(what) => Err(vec![not_object(what)]),
    }
}

fn borrow_top(value: &Value) -> Result<Vec<(Cow<'_, str>, Loose<'_>)>, Vec<Issue>> {
    match value {
        Value::Object(map) => Ok(map.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), Loose::borrow(v))).collect()),
        other => Err(vec![not_object(Loose::borrow(other).type_name())]),
    }
}

fn not_object(what: &str) -> Issue {
    Issue::new("", Code::InvalidType, msg!("expected a JSON object, got ", what))
}

// ---------------------------------------------------------------------------------------------
// Field slots.

const ID: usize = 0;
const WORKSPACE_ID: usize = 1;
const USER_ID: usize = 2;
const STATUS: usize = 3;
const TYPE: usize = 4;
const PROJECT_NAME: usize = 5;
const HOSTNAME: usize = 6;
const ARCH: usize = 7;
const USER_EMAIL: usize = 8;
const ERROR_MESSAGE: usize = 9;
const METADATA: usize = 10;
const CREATED_AT: usize = 11;
const UPDATED_AT: usize = 12;
const COMPLETED_AT: usize = 13;
const VERSION: usize = 14;

/// The index in `spec::JOB_FIELDS` (the `job` table's column order) of a field name (one `match`, not up to fifteen comparisons).
fn slot_of(key: &str) -> Option<usize> {
    Some(match key {
        "id" => ID,
        "workspace_id" => WORKSPACE_ID,
        "user_id" => USER_ID,
        "status" => STATUS,
        "type" => TYPE,
        "project_name" => PROJECT_NAME,
        "hostname" => HOSTNAME,
        "arch" => ARCH,
        "user_email" => USER_EMAIL,
        "error_message" => ERROR_MESSAGE,
        "metadata" => METADATA,
        "created_at" => CREATED_AT,
        "updated_at" => UPDATED_AT,
        "completed_at" => COMPLETED_AT,
        "version" => VERSION,
        _ => return None,
    })
}

const ALL_FIELDS: [usize; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
/// Fields a create request may carry; error_message and completed_at get their own codes.
const CREATE_FIELDS: &[usize] = &[ID, WORKSPACE_ID, STATUS, TYPE, PROJECT_NAME, HOSTNAME, ARCH, METADATA];
const PATCH_FIELDS: &[usize] = &[STATUS, ERROR_MESSAGE, HOSTNAME, ARCH, METADATA, COMPLETED_AT];
/// Enough to spot typos without answering a hostile input with a huge error list.
const MAX_UNKNOWN_REPORTED: usize = 20;

type Slots<'a> = [Option<Loose<'a>>; 15];

fn fill_slots<'a>(
    fields: Vec<(Cow<'a, str>, Loose<'a>)>,
    allowed: &[usize],
    kind: Kind,
    issues: &mut Issues,
) -> Slots<'a> {
    let mut slots: Slots<'a> = Default::default();
    let mut unknown = 0usize;
    for (key, value) in fields {
        let idx = slot_of(&key);
        match idx {
            Some(i) if allowed.contains(&i) => {
                if slots[i].is_some() {
                    issues.push(key, Code::InvalidJson, "field appears more than once");
                } else {
                    slots[i] = Some(value);
                }
            }
            Some(ERROR_MESSAGE) if kind == Kind::Create => {
                issues.push(key, Code::ErrorMessageNotAllowed, "a new job cannot carry an error message")
            }
            Some(COMPLETED_AT) if kind == Kind::Create => {
                issues.push(key, Code::CompletedAtNotAllowed, "a new job cannot be completed")
            }
            _ => {
                unknown += 1;
                if unknown <= MAX_UNKNOWN_REPORTED {
                    let why = match (kind, idx) {
                        (Kind::Create, Some(_)) => "set by the server, not by the client",
                        (Kind::Patch, Some(_)) => "cannot be changed by a patch",
                        _ => "not a field of a job",
                    };
                    let path = key.into_owned();
                    let msg = msg!("unknown field ", text::Quoted(&path), ": ", why);
                    issues.push(path, Code::UnknownField, msg);
                }
            }
        }
    }
    if unknown > MAX_UNKNOWN_REPORTED {
        issues.push("", Code::UnknownField, msg!(unknown - MAX_UNKNOWN_REPORTED, crate::issue::NOT_LISTED));
    }
    slots
}

// ---------------------------------------------------------------------------------------------
// Single fields. Each reports its own problems and returns `None` when it reported any.

fn string<'a>(v: Loose<'a>, path: &str, issues: &mut Issues) -> Option<Cow<'a, str>> {
    match v {
        Loose::Str(s) => Some(s),
        other => {
            issues.push(path, Code::InvalidType, msg!("expected a string, got ", other.type_name()));
            None
        }
    }
}

fn too_long(s: &str, limit: usize, path: &str, issues: &mut Issues) -> bool {
    let long = text::char_len_exceeds(s, limit);
    if long {
        issues.push(path, Code::TooLong, msg!("at most ", limit, " characters"));
    }
    long
}

fn uuid_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<Uuid> {
    let s = string(v, path, issues)?;
    match text::parse_uuid(&s) {
        Ok(id) => Some(id),
        Err(UuidError::Nil) => {
            issues.push(path, Code::NilUuid, "the nil UUID is not an id");
            None
        }
        Err(UuidError::Invalid) => {
            issues.push(path, Code::InvalidUuid, "expected a UUID like 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
            None
        }
    }
}

fn status_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<JobStatus> {
    let s = string(v, path, issues)?;
    let status = JobStatus::parse(&s);
    if status.is_none() {
        issues.push(path, Code::UnknownStatus, "expected one of QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED");
    }
    status
}

fn type_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<JobType> {
    let s = string(v, path, issues)?;
    let t = JobType::parse(&s);
    if t.is_none() {
        issues.push(path, Code::UnknownType, "expected one of BUILD, TEST, DEPLOY, SCAN");
    }
    t
}

fn project_name_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<String> {
    let s = string(v, path, issues)?;
    let before = issues.len();
    if s.trim().is_empty() {
        issues.push(path, Code::Blank, "must not be empty or only spaces");
    }
    too_long(&s, PROJECT_NAME_MAX, path, issues);
    if text::has_control(&s) {
        issues.push(path, Code::ControlChars, "must not contain control characters");
    }
    (issues.len() == before).then(|| s.into_owned())
}

/// A string field with a length limit and a normaliser that either returns the stored form or
/// refuses the text with `code`.
fn normalised_field(
    v: Loose<'_>,
    path: &str,
    issues: &mut Issues,
    max: usize,
    normalise: fn(&str) -> Option<String>,
    code: Code,
    message: &str,
) -> Option<String> {
    let s = string(v, path, issues)?;
    if too_long(&s, max, path, issues) {
        return None;
    }
    let out = normalise(&s);
    if out.is_none() {
        issues.push(path, code, message);
    }
    out
}

fn hostname_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<String> {
    let msg = "expected dot-separated labels of 1-63 letters, digits or '-', not starting or ending with '-'";
    normalised_field(v, path, issues, text::HOSTNAME_MAX, text::normalise_hostname, Code::InvalidHostname, msg)
}

fn arch_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<String> {
    let msg = "expected a known architecture or a lowercase token of a-z, 0-9 and _";
    normalised_field(v, path, issues, text::ARCH_MAX, text::normalise_arch, Code::InvalidArch, msg)
}

fn email_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<String> {
    let msg = "expected an e-mail address like name@example.com";
    normalised_field(v, path, issues, EMAIL_MAX, text::normalise_email, Code::InvalidEmail, msg)
}

fn error_message_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<String> {
    let s = string(v, path, issues)?;
    if too_long(&s, ERROR_MESSAGE_MAX, path, issues) {
        return None;
    }
    if text::has_nul(&s) {
        issues.push(path, Code::ControlChars, "must not contain NUL (\\u0000)");
        return None;
    }
    Some(s.into_owned())
}

fn timestamp_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<Timestamp> {
    let s = string(v, path, issues)?;
    let t = Timestamp::parse(&s);
    if t.is_none() {
        issues.push(
            path,
            Code::InvalidTimestamp,
            "expected an RFC 3339 timestamp with an offset, like 2024-05-01T12:00:00Z",
        );
    }
    t
}

fn version_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<i64> {
    let Loose::Num(n) = v else {
        issues.push(path, Code::InvalidType, msg!("expected an integer, got ", v.type_name()));
        return None;
    };
    if let Some(i) = n.as_i64() {
        if i < 0 {
            issues.push(path, Code::OutOfRange, "must be 0 or more");
            return None;
        }
        return Some(i);
    }
    if n.is_u64() {
        issues.push(path, Code::OutOfRange, "must fit in a signed 64-bit integer");
    } else {
        issues.push(path, Code::NotInteger, "must be a whole number");
    }
    None
}

fn metadata_field(v: Loose<'_>, path: &str, issues: &mut Issues) -> Option<Object> {
    let before = issues.len();
    let m = metadata::shape(v.into_value(), path, issues);
    (issues.len() == before).then_some(m)
}

/// A required field: missing or null is `required`.
fn required<'a, T>(
    slot: Option<Loose<'a>>,
    path: &str,
    issues: &mut Issues,
    f: impl FnOnce(Loose<'a>, &str, &mut Issues) -> Option<T>,
) -> Option<T> {
    match slot {
        None | Some(Loose::Null) => {
            issues.push(path, Code::Required, "is required");
            None
        }
        Some(v) => f(v, path, issues),
    }
}

/// An optional field: `Ok(None)` when missing or null, `Err(())` when invalid (reported).
fn optional<'a, T>(
    slot: Option<Loose<'a>>,
    path: &str,
    issues: &mut Issues,
    f: impl FnOnce(Loose<'a>, &str, &mut Issues) -> Option<T>,
) -> Result<Option<T>, ()> {
    match slot {
        None | Some(Loose::Null) => Ok(None),
        Some(v) => f(v, path, issues).map(Some).ok_or(()),
    }
}

/// What a patch does to one field.
enum Change<T> {
    Keep,
    Clear,
    Set(T),
    Invalid,
}

fn change<'a, T>(
    slot: Option<Loose<'a>>,
    path: &str,
    issues: &mut Issues,
    f: impl FnOnce(Loose<'a>, &str, &mut Issues) -> Option<T>,
) -> Change<T> {
    match slot {
        None => Change::Keep,
        Some(Loose::Null) => Change::Clear,
        Some(v) => f(v, path, issues).map_or(Change::Invalid, Change::Set),
    }
}

impl<T: Clone> Change<T> {
    fn resolve(self, current: &Option<T>) -> Option<T> {
        match self {
            Change::Keep | Change::Invalid => current.clone(),
            Change::Clear => None,
            Change::Set(v) => Some(v),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The three kinds.

/// Validates a whole job record given as JSON text.
pub fn record_from_json(bytes: &[u8]) -> Result<ValidJob, Vec<Issue>> {
    record_fields(parse_top(bytes)?)
}

/// Validates a whole job record given as a JSON value.
pub fn record(value: &Value) -> Result<ValidJob, Vec<Issue>> {
    record_fields(borrow_top(value)?)
}

/// Re-checks a job read from storage (rows written by other services may break the rules).
pub fn recheck(job: &Job) -> Result<ValidJob, Vec<Issue>> {
    match serde_json::to_value(job) {
        Ok(v) => record(&v),
        Err(e) => Err(vec![Issue::new("", Code::InvalidJson, e.to_string())]),
    }
}

fn record_fields(fields: Vec<(Cow<'_, str>, Loose<'_>)>) -> Result<ValidJob, Vec<Issue>> {
    let mut issues = Issues::default();
    let mut s = fill_slots(fields, &ALL_FIELDS, Kind::Record, &mut issues);
    let mut take = |i: usize| s[i].take();
    let id = required(take(ID), "id", &mut issues, uuid_field);
    let workspace_id = optional(take(WORKSPACE_ID), "workspace_id", &mut issues, uuid_field);
    let user_id = required(take(USER_ID), "user_id", &mut issues, uuid_field);
    let status = required(take(STATUS), "status", &mut issues, status_field);
    let job_type = required(take(TYPE), "type", &mut issues, type_field);
    let project_name = required(take(PROJECT_NAME), "project_name", &mut issues, project_name_field);
    let hostname = optional(take(HOSTNAME), "hostname", &mut issues, hostname_field);
    let arch = optional(take(ARCH), "arch", &mut issues, arch_field);
    let user_email = optional(take(USER_EMAIL), "user_email", &mut issues, email_field);
    let error_message = optional(take(ERROR_MESSAGE), "error_message", &mut issues, error_message_field);
    let metadata = optional(take(METADATA), "metadata", &mut issues, metadata_field);
    let created_at = required(take(CREATED_AT), "created_at", &mut issues, timestamp_field);
    let updated_at = required(take(UPDATED_AT), "updated_at", &mut issues, timestamp_field);
    let completed_at = optional(take(COMPLETED_AT), "completed_at", &mut issues, timestamp_field);
    let version = required(take(VERSION), "version", &mut issues, version_field);

    if let Some(status) = status {
        check_completion(status, completed_at.as_ref().ok().map(|c| c.is_some()), &mut issues);
        if let Ok(Some(_)) = error_message
            && !status.allows_error_message()
        {
            issues.push(
                "error_message",
                Code::ErrorMessageNotAllowed,
                "only a FAILED or CANCELLED job has an error message",
            );
        }
    }
    if let Some(created) = created_at {
        if let Ok(Some(done)) = completed_at
            && done < created
        {
            issues.push("completed_at", Code::CompletedBeforeCreated, "must not be before created_at");
        }
        if let Some(updated) = updated_at
            && updated < created
        {
            issues.push("updated_at", Code::UpdatedBeforeCreated, "must not be before created_at");
        }
    }
    match (
        id,
        workspace_id,
        user_id,
        status,
        job_type,
        project_name,
        hostname,
        arch,
        user_email,
        error_message,
        metadata,
        created_at,
        updated_at,
        completed_at,
        version,
    ) {
        (
            Some(id),
            Ok(workspace_id),
            Some(user_id),
            Some(status),
            Some(job_type),
            Some(project_name),
            Ok(hostname),
            Ok(arch),
            Ok(user_email),
            Ok(error_message),
            Ok(metadata),
            Some(created_at),
            Some(updated_at),
            Ok(completed_at),
            Some(version),
        ) if issues.is_empty() => Ok(ValidJob(Job {
            id,
            workspace_id,
            user_id,
            status,
            job_type,
            project_name,
            hostname,
            arch,
            user_email,
            error_message,
            metadata: metadata.unwrap_or_default(),
            created_at,
            updated_at,
            completed_at,
            version,
        })),
        _ => Err(issues.into_vec()),
    }
}

/// `has_completed_at` is `None` when completed_at itself was invalid (already reported).
fn check_completion(status: JobStatus, has_completed_at: Option<bool>, issues: &mut Issues) {
    match (status.is_terminal(), has_completed_at) {
        (true, Some(false)) => {
            issues.push("completed_at", Code::CompletedAtRequired, msg!("a ", status, " job has completed_at"))
        }
        (false, Some(true)) => {
            issues.push("completed_at", Code::CompletedAtNotAllowed, msg!("a ", status, " job is not completed"))
        }
        _ => {}
    }
}

/// Validates a create request given as JSON text.
pub fn create_from_json(bytes: &[u8]) -> Result<ValidNewJob, Vec<Issue>> {
    create_fields(parse_top(bytes)?)
}

/// Validates a create request given as a JSON value.
pub fn create(value: &Value) -> Result<ValidNewJob, Vec<Issue>> {
    create_fields(borrow_top(value)?)
}

fn create_fields(fields: Vec<(Cow<'_, str>, Loose<'_>)>) -> Result<ValidNewJob, Vec<Issue>> {
    let mut issues = Issues::default();
    let mut s = fill_slots(fields, CREATE_FIELDS, Kind::Create, &mut issues);
    let mut take = |i: usize| s[i].take();
    let id = optional(take(ID), "id", &mut issues, uuid_field);
    let workspace_id = optional(take(WORKSPACE_ID), "workspace_id", &mut issues, uuid_field);
    let status = optional(take(STATUS), "status", &mut issues, status_field);
    let job_type = required(take(TYPE), "type", &mut issues, type_field);
    let project_name = required(take(PROJECT_NAME), "project_name", &mut issues, project_name_field);
    let hostname = optional(take(HOSTNAME), "hostname", &mut issues, hostname_field);
    let arch = optional(take(ARCH), "arch", &mut issues, arch_field);
    let metadata = optional(take(METADATA), "metadata", &mut issues, metadata_field);
    if let Ok(Some(st)) = status
        && !status::is_initial(st)
    {
        issues.push("status", Code::BadTransition, msg!("a job starts as QUEUED or RUNNING, not ", st));
    }
    match (id, workspace_id, status, job_type, project_name, hostname, arch, metadata) {
        (
            Ok(id),
            Ok(workspace_id),
            Ok(status),
            Some(job_type),
            Some(project_name),
            Ok(hostname),
            Ok(arch),
            Ok(metadata),
        ) if issues.is_empty() => Ok(ValidNewJob {
            id,
            workspace_id,
            status: status.unwrap_or(JobStatus::Queued),
            job_type,
            project_name,
            hostname,
            arch,
            metadata: metadata.unwrap_or_default(),
        }),
        _ => Err(issues.into_vec()),
    }
}

/// Validates a patch (JSON text) against the job's current state. `now` becomes `completed_at`
/// when the patch ends the job without saying when.
pub fn patch_from_json(current: &Job, bytes: &[u8], now: Timestamp) -> Result<ValidPatch, Vec<Issue>> {
    patch_fields(current, || current.metadata.clone(), parse_top(bytes)?, now)
}

/// Validates a patch (JSON value) against the job's current state.
pub fn patch(current: &Job, value: &Value, now: Timestamp) -> Result<ValidPatch, Vec<Issue>> {
    patch_fields(current, || current.metadata.clone(), borrow_top(value)?, now)
}

/// `current_metadata` gives `current.metadata` to keep or merge into: a copy for callers that
/// keep the job, the map itself for [`validate_any`] (no metadata clone in the WASM package).
fn patch_fields(
    current: &Job,
    current_metadata: impl FnOnce() -> Object,
    fields: Vec<(Cow<'_, str>, Loose<'_>)>,
    now: Timestamp,
) -> Result<ValidPatch, Vec<Issue>> {
    let mut issues = Issues::default();
    let mut s = fill_slots(fields, PATCH_FIELDS, Kind::Patch, &mut issues);
    let mut take = |i: usize| s[i].take();

    let status = match take(STATUS) {
        None => Some(current.status),
        Some(Loose::Null) => {
            issues.push("status", Code::Required, "status cannot be removed");
            None
        }
        Some(v) => status_field(v, "status", &mut issues),
    };
    if let Some(to) = status
        && to != current.status
        && !status::can_transition(current.status, to)
    {
        let msg = if current.status.is_terminal() {
            msg!("a ", current.status, " job changes no more")
        } else {
            msg!("a ", current.status, " job cannot become ", to)
        };
        issues.push("status", Code::BadTransition, msg);
    }
    let error_message = change(take(ERROR_MESSAGE), "error_message", &mut issues, error_message_field);
    let hostname = change(take(HOSTNAME), "hostname", &mut issues, hostname_field).resolve(&current.hostname);
    let arch = change(take(ARCH), "arch", &mut issues, arch_field).resolve(&current.arch);
    let metadata = match take(METADATA) {
        None => Some(current_metadata()),
        Some(Loose::Null) => Some(Object::new()),
        Some(Loose::Obj(patch)) => {
            metadata_field(Loose::Obj(metadata::merge_objects(current_metadata(), patch)), "metadata", &mut issues)
        }
        Some(_) => {
            issues.push("metadata", Code::MetadataNotObject, "a metadata patch is a JSON object (RFC 7396) or null");
            None
        }
    };
    let completed_change = change(take(COMPLETED_AT), "completed_at", &mut issues, timestamp_field);

    let mut completed_at = None;
    let mut error = None;
    if let Some(status) = status {
        completed_at = match (status.is_terminal(), completed_change) {
            (true, Change::Set(t)) => Some(t),
            // Not before the job was created, whichever clock is behind (the browser's; the
            // Lambda's against the database's, which stamped created_at): as updated_at.
            (true, Change::Keep) => Some(current.completed_at.unwrap_or(now.max(current.created_at))),
            (true, Change::Clear) => {
                issues.push("completed_at", Code::CompletedAtRequired, msg!("a ", status, " job has completed_at"));
                None
            }
            (false, Change::Set(_)) => {
                issues.push("completed_at", Code::CompletedAtNotAllowed, msg!("a ", status, " job is not completed"));
                None
            }
            (_, Change::Invalid) | (false, Change::Keep | Change::Clear) => None,
        };
        if let Some(done) = completed_at
            && done < current.created_at
        {
            issues.push("completed_at", Code::CompletedBeforeCreated, "must not be before created_at");
        }
        error = match error_message {
            Change::Set(_) if !status.allows_error_message() => {
                issues.push(
                    "error_message",
                    Code::ErrorMessageNotAllowed,
                    "only a FAILED or CANCELLED job has an error message",
                );
                None
            }
            other => other.resolve(&current.error_message).filter(|_| status.allows_error_message()),
        };
    }
    match (status, metadata) {
        (Some(status), Some(metadata)) if issues.is_empty() => Ok(ValidPatch {
            id: current.id,
            expected_version: current.version,
            status,
            error_message: error,
            hostname,
            arch,
            metadata,
            completed_at,
        }),
        _ => Err(issues.into_vec()),
    }
}

/// One input line of `jobsctl validate --kind patch` and of the WASM `patch` kind:
/// `{"current": <job>, "patch": <patch>}`, each field exactly once and no other, or the two as
/// an array (what serde's derived `Deserialize` with `deny_unknown_fields` accepted). Each half
/// is read as a top level is, strings borrowed and every field kept in order, so a half is
/// checked exactly as the same object given alone (duplicate fields included).
fn patch_envelope(bytes: &[u8]) -> Result<(Top<'_>, Top<'_>), String> {
    const HALVES: [&str; 2] = ["current", "patch"];
    match json::parse_pair(bytes, HALVES).map_err(|e| msg!(e))? {
        json::Pair::Halves(Some(current), Some(patch)) => Ok((current, patch)),
        json::Pair::Halves(None, _) => Err(msg!("missing field ", text::Quoted(HALVES[0]))),
        json::Pair::Halves(_, None) => Err(msg!("missing field ", text::Quoted(HALVES[1]))),
        json::Pair::UnknownField(key) => Err(msg!("unknown field ", text::Quoted(&key))),
        json::Pair::DuplicateField(key) => Err(msg!("duplicate field ", text::Quoted(&key))),
        json::Pair::NotTwo => Err("an array of exactly two values".to_owned()),
        json::Pair::Other => Err("not an object".to_owned()),
    }
}

/// What [`validate_any`] accepted, typed; it serialises exactly as [`validate_json`]'s value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Validated {
    Record(ValidJob),
    Create(ValidNewJob),
    /// The job after the patch, as the store will hold it.
    Patched(Job),
}

/// [`validate_json`] without the detour through `serde_json::Value`: for shells that serialise
/// the result themselves (the WASM package hands it straight to JS).
pub fn validate_any(kind: Kind, bytes: &[u8], now: Timestamp) -> Result<Validated, Vec<Issue>> {
    match kind {
        Kind::Record => record_from_json(bytes).map(Validated::Record),
        Kind::Create => create_from_json(bytes).map(Validated::Create),
        Kind::Patch => {
            let (current, patch_value) = patch_envelope(bytes).map_err(|e| {
                vec![Issue::new("", Code::InvalidJson, msg!("expected {\"current\": <job>, \"patch\": <patch>}: ", e))]
            })?;
            let current = top_fields(current).and_then(record_fields).map_err(|issues| prefix("current", issues))?;
            let mut current = current.into_job();
            let metadata = std::mem::take(&mut current.metadata);
            let p = top_fields(patch_value)
                .and_then(|fields| patch_fields(&current, || metadata, fields, now))
                .map_err(|issues| prefix("patch", issues))?;
            // The patch holds the complete new metadata; `current`'s was moved into it.
            Ok(Validated::Patched(p.into_job(current, now)))
        }
    }
}

/// Validates any kind of input text and returns the normalised result as JSON: the job for
/// `record`, the create request for `create`, the patched job for `patch` (whose input is
/// `{"current": <record>, "patch": <patch>}`). `now` is only read by `patch`.
pub fn validate_json(kind: Kind, bytes: &[u8], now: Timestamp) -> Result<Value, Vec<Issue>> {
    serde_json::to_value(validate_any(kind, bytes, now)?)
        .map_err(|e| vec![Issue::new("", Code::InvalidJson, e.to_string())])
}

fn prefix(p: &str, issues: Vec<Issue>) -> Vec<Issue> {
    issues
        .into_iter()
        .map(|mut i| {
            i.path = if i.path.is_empty() { p.to_owned() } else { msg!(p, ".", i.path) };
            i
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ended by a caller whose clock is behind the one that stamped `created_at`: completed
    /// when created, not before (that was `completed_before_created`, a 400 for a valid cancel).
    #[test]
    fn a_job_never_completes_before_it_was_created() {
        let current = r#"{"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","user_id":"0190a1b2-0000-7000-8000-000000000001",
            "status":"QUEUED","type":"BUILD","project_name":"p","metadata":{},"created_at":"2024-05-01T12:00:30Z",
            "updated_at":"2024-05-01T12:00:30Z","version":0}"#;
        let current = record_from_json(current.as_bytes()).expect("a record").into_job();
        let behind = Timestamp::parse("2024-05-01T12:00:00Z").expect("timestamp");
        let p = patch(&current, &serde_json::json!({"status": "CANCELLED"}), behind).expect("a valid cancel");
        assert_eq!(p.completed_at(), Some(current.created_at));
        assert_eq!(p.apply(&current, behind).updated_at, current.created_at);
    }

    /// The patch envelope: problems of the text, of the envelope, and of a half, each where it
    /// belongs; a text that is not JSON wins over any envelope problem.
    #[test]
    fn patch_envelope() {
        let rec = r#"{"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","user_id":"0190a1b2-0000-7000-8000-000000000001",
            "status":"RUNNING","type":"BUILD","project_name":"p","metadata":{},"created_at":"2024-05-01T12:00:00Z",
            "updated_at":"2024-05-01T12:00:00Z","version":1}"#;
        let envelope = |e: &str| {
            Some(("", Code::InvalidJson, format!("expected {{\"current\": <job>, \"patch\": <patch>}}: {e}")))
        };
        // The input, and the one problem expected (path, code, message) or none.
        type Want = Option<(&'static str, Code, String)>;
        let cases: Vec<(String, Want)> = vec![
            (format!(r#"{{"current":{rec},"patch":{{}}}}"#), None),
            (format!(r#"[{rec},{{}}]"#), None),
            (format!(" {{ \"patch\" : {{ }} , \"current\" : {rec} }} "), None),
            (format!("[{rec}]"), envelope("an array of exactly two values")),
            (format!("[{rec},{{}},1]"), envelope("an array of exactly two values")),
            ("[]".to_owned(), envelope("an array of exactly two values")),
            (format!(r#"{{"current":{rec}}}"#), envelope(r#"missing field "patch""#)),
            (r#"{"patch":{}}"#.to_owned(), envelope(r#"missing field "current""#)),
            (format!(r#"{{"current":{rec},"patch":{{}},"x":1}}"#), envelope(r#"unknown field "x""#)),
            (format!(r#"{{"current":{rec},"current":{rec},"patch":{{}}}}"#), envelope(r#"duplicate field "current""#)),
            ("7".to_owned(), envelope("not an object")),
            // Not JSON: the reader's fault, even after an envelope problem.
            (r#"{"x":1,"current":{}"#.to_owned(), envelope("unexpected end of input at byte 19")),
            (r#"{"x":1,"patch":{},}"#.to_owned(), envelope("expected a key at byte 18")),
            (r#"[{},{},{"a":tru}]"#.to_owned(), envelope("expected a value at byte 16")),
            // A half that is not an object is that half's problem.
            (
                r#"{"current":5,"patch":{}}"#.to_owned(),
                Some(("current", Code::InvalidType, "expected a JSON object, got a number".to_owned())),
            ),
            (
                format!(r#"{{"current":{rec},"patch":[]}}"#),
                Some(("patch", Code::InvalidType, "expected a JSON object, got an array".to_owned())),
            ),
        ];
        for (text, want) in cases {
            let got = validate_any(Kind::Patch, text.as_bytes(), Timestamp::MIN);
            match (&got, &want) {
                (Ok(_), None) => {}
                (Err(issues), Some((path, code, message))) => {
                    assert_eq!(issues.len(), 1, "{text}: {issues:?}");
                    assert_eq!(
                        (issues[0].path.as_str(), issues[0].code, issues[0].message.as_str()),
                        (*path, *code, message.as_str()),
                        "{text}"
                    );
                }
                _ => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// Nesting is counted from the envelope: `invalid_json` exactly where serde_json gives up.
    #[test]
    fn patch_envelope_nesting() {
        for depth in 120..=130 {
            let half = format!(r#"{{"metadata":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
            for text in [format!(r#"{{"current":{half},"patch":{{}}}}"#), format!(r#"[{{}},{half}]"#)] {
                let invalid_json = match validate_any(Kind::Patch, text.as_bytes(), Timestamp::MIN) {
                    Ok(_) => false,
                    Err(issues) => issues.iter().any(|i| i.code == Code::InvalidJson && i.path.is_empty()),
                };
                let serde_rejects = serde_json::from_str::<Value>(&text).is_err();
                assert_eq!(invalid_json, serde_rejects, "depth {depth}: {}", &text[..40]);
            }
        }
    }

    #[test]
    fn slot_of_matches_the_field_specs() {
        // The slots are the spec table's column order: one list of names, not two.
        for (i, field) in crate::spec::JOB_FIELDS.iter().enumerate() {
            assert_eq!(slot_of(field.name), Some(i), "{}", field.name);
        }
        for other in ["", "Id", "ids", "metadata ", "typ"] {
            assert_eq!(slot_of(other), None, "{other}");
        }
    }
}
