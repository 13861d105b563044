//! The one table of field specs. SQL column types, validation limits and the search mapping
//! are all read from here (and tests check the migration against it), so they cannot drift.

/// What a job field is, everywhere it appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// JSON name in inputs, outputs and search documents; also the SQL column name.
    pub name: &'static str,
    /// The column's SQL type, exactly as the migration declares it.
    pub sql_type: &'static str,
    /// The character limit the rules enforce (never above the column width).
    pub max_chars: Option<usize>,
    /// Whether the column accepts NULL.
    pub nullable: bool,
}

const fn field(name: &'static str, sql_type: &'static str, max: Option<usize>, nullable: bool) -> FieldSpec {
    FieldSpec { name, sql_type, max_chars: max, nullable }
}

pub const PROJECT_NAME_MAX: usize = 255;
pub const EMAIL_MAX: usize = 255;
pub const ERROR_MESSAGE_MAX: usize = 65_536;
pub const STATUS_MAX: usize = 50;

/// The columns of the `job` table a job record carries, in column order.
pub const JOB_FIELDS: &[FieldSpec] = &[
    field("id", "UUID", None, false),
    field("workspace_id", "UUID", None, true),
    field("user_id", "UUID", None, false),
    field("status", "VARCHAR(50)", Some(STATUS_MAX), false),
    field("type", "VARCHAR(50)", Some(STATUS_MAX), false),
    field("project_name", "VARCHAR(255)", Some(PROJECT_NAME_MAX), false),
    field("hostname", "VARCHAR(255)", Some(crate::text::HOSTNAME_MAX), true),
    field("arch", "VARCHAR(50)", Some(crate::text::ARCH_MAX), true),
    field("user_email", "VARCHAR(255)", Some(EMAIL_MAX), true),
    field("error_message", "TEXT", Some(ERROR_MESSAGE_MAX), true),
    field("metadata", "JSONB", None, false),
    field("created_at", "TIMESTAMPTZ", None, false),
    field("updated_at", "TIMESTAMPTZ", None, false),
    field("completed_at", "TIMESTAMPTZ", None, true),
    field("version", "BIGINT", None, false),
];

/// Columns internal to sync: in the table, never in any input or output.
pub const SYNC_FIELDS: &[FieldSpec] =
    &[field("es_synced_at", "TIMESTAMPTZ", None, true), field("es_sync_version", "BIGINT", None, false)];

pub fn job_field(name: &str) -> Option<&'static FieldSpec> {
    JOB_FIELDS.iter().find(|f| f.name == name)
}

/// The width `n` of a `VARCHAR(n)` type.
pub fn varchar_width(sql_type: &str) -> Option<usize> {
    sql_type.strip_prefix("VARCHAR(")?.strip_suffix(')')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_fit_the_columns() {
        for f in JOB_FIELDS {
            if let (Some(max), Some(width)) = (f.max_chars, varchar_width(f.sql_type)) {
                assert!(max <= width, "{}: limit {max} exceeds column width {width}", f.name);
            }
            if f.sql_type.starts_with("VARCHAR") {
                assert!(f.max_chars.is_some(), "{} needs a limit", f.name);
            }
        }
    }
}
