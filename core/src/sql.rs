//! The SQL text the store runs, in one place, and the parameter values it binds.
//!
//! Statements use positional `$n` placeholders (tokio-postgres); the RDS Data API driver rewrites
//! them to named `:pN` parameters. Values are never spliced into SQL text.

use serde::{Deserialize, Serialize};

/// A bound parameter. Each variant maps to one Postgres type and one Data API type hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Canonical lowercase UUID text; bound as `uuid` (Data API hint UUID).
    Uuid(uuid::Uuid),
    /// Microseconds since the Unix epoch, UTC; bound as `timestamptz` (Data API hint TIMESTAMP).
    Timestamp(i64),
    /// JSON text; bound as `jsonb` (Data API hint JSON).
    Json(String),
}
