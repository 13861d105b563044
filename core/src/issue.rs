//! Problems with input as values: `Issue { path, code, message }` with stable machine codes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, machine-readable problem code. The serialised names are a public contract shared
/// by the API, the WASM package and the page: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    Required,
    InvalidType,
    UnknownField,
    TooLong,
    Blank,
    ControlChars,
    InvalidUuid,
    NilUuid,
    UnknownStatus,
    UnknownType,
    InvalidHostname,
    InvalidArch,
    InvalidEmail,
    InvalidTimestamp,
    CompletedAtRequired,
    CompletedAtNotAllowed,
    CompletedBeforeCreated,
    UpdatedBeforeCreated,
    ErrorMessageNotAllowed,
    BadTransition,
    MetadataNotObject,
    MetadataTooLarge,
    MetadataTooDeep,
    InvalidMetadataKey,
    InvalidDigest,
    OutOfRange,
    NotInteger,
    NotNumber,
    InvalidJson,
    /// A search request names a filter, sort or cursor that cannot be honoured.
    InvalidQuery,
    /// A cursor that was not issued for this query (tampered, or from another sort).
    InvalidCursor,
}

impl Code {
    /// Every code, in declaration order (for docs, TypeScript types and exhaustive tests).
    pub const ALL: &'static [Code] = &[
        Code::Required,
        Code::InvalidType,
        Code::UnknownField,
        Code::TooLong,
        Code::Blank,
        Code::ControlChars,
        Code::InvalidUuid,
        Code::NilUuid,
        Code::UnknownStatus,
        Code::UnknownType,
        Code::InvalidHostname,
        Code::InvalidArch,
        Code::InvalidEmail,
        Code::InvalidTimestamp,
        Code::CompletedAtRequired,
        Code::CompletedAtNotAllowed,
        Code::CompletedBeforeCreated,
        Code::UpdatedBeforeCreated,
        Code::ErrorMessageNotAllowed,
        Code::BadTransition,
        Code::MetadataNotObject,
        Code::MetadataTooLarge,
        Code::MetadataTooDeep,
        Code::InvalidMetadataKey,
        Code::InvalidDigest,
        Code::OutOfRange,
        Code::NotInteger,
        Code::NotNumber,
        Code::InvalidJson,
        Code::InvalidQuery,
        Code::InvalidCursor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Required => "required",
            Code::InvalidType => "invalid_type",
            Code::UnknownField => "unknown_field",
            Code::TooLong => "too_long",
            Code::Blank => "blank",
            Code::ControlChars => "control_chars",
            Code::InvalidUuid => "invalid_uuid",
            Code::NilUuid => "nil_uuid",
            Code::UnknownStatus => "unknown_status",
            Code::UnknownType => "unknown_type",
            Code::InvalidHostname => "invalid_hostname",
            Code::InvalidArch => "invalid_arch",
            Code::InvalidEmail => "invalid_email",
            Code::InvalidTimestamp => "invalid_timestamp",
            Code::CompletedAtRequired => "completed_at_required",
            Code::CompletedAtNotAllowed => "completed_at_not_allowed",
            Code::CompletedBeforeCreated => "completed_before_created",
            Code::UpdatedBeforeCreated => "updated_before_created",
            Code::ErrorMessageNotAllowed => "error_message_not_allowed",
            Code::BadTransition => "bad_transition",
            Code::MetadataNotObject => "metadata_not_object",
            Code::MetadataTooLarge => "metadata_too_large",
            Code::MetadataTooDeep => "metadata_too_deep",
            Code::InvalidMetadataKey => "invalid_metadata_key",
            Code::InvalidDigest => "invalid_digest",
            Code::OutOfRange => "out_of_range",
            Code::NotInteger => "not_integer",
            Code::NotNumber => "not_number",
            Code::InvalidJson => "invalid_json",
            Code::InvalidQuery => "invalid_query",
            Code::InvalidCursor => "invalid_cursor",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl crate::msg::Piece for Code {
    fn push_to(&self, out: &mut String) {
        crate::msg::push(out, self.as_str());
    }
}

/// One problem with one field of the input. `path` is dotted (`metadata.cpuCores`); the empty
/// path means the input as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub path: String,
    pub code: Code,
    pub message: String,
}

impl Issue {
    pub fn new(path: impl Into<String>, code: Code, message: impl Into<String>) -> Self {
        Issue { path: path.into(), code, message: message.into() }
    }
}

/// `path: code: message`, or `code: message` for the input as a whole.
impl crate::msg::Piece for Issue {
    fn push_to(&self, out: &mut String) {
        if !self.path.is_empty() {
            crate::msg::push(out, &self.path);
            crate::msg::push(out, ": ");
        }
        crate::msg::push(out, self.code.as_str());
        crate::msg::push(out, ": ");
        crate::msg::push(out, &self.message);
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::msg::display(self, f)
    }
}

/// The message closing a list cut short: "N more not listed" (one text for every such list:
/// each string is bytes of the WASM package).
pub const NOT_LISTED: &str = " more not listed";

/// How many problems of one kind are listed one by one before the rest are counted (metadata's
/// problems, a search's parameters).
pub const MAX_LISTED: usize = 20;

/// Collects issues while validating; a validator reports everything it finds, not the first.
#[derive(Debug, Default)]
pub struct Issues(Vec<Issue>);

impl Issues {
    pub fn push(&mut self, path: impl Into<String>, code: Code, message: impl Into<String>) {
        self.0.push(Issue::new(path, code, message));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn into_vec(self) -> Vec<Issue> {
        self.0
    }
    pub fn extend(&mut self, other: Vec<Issue>) {
        self.0.extend(other);
    }
    /// `Ok(value)` when nothing was reported.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Vec<Issue>> {
        if self.0.is_empty() { Ok(value()) } else { Err(self.0) }
    }
}
