//! The job record and its enumerations.

use crate::time::Timestamp;
use crate::tree::Object;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored spelling (exact uppercase, as JPA `EnumType.STRING` stores it).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the exact stored spelling; no case folding.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::msg::Piece for $name {
            fn push_to(&self, out: &mut String) {
                $crate::msg::push(out, self.as_str());
            }
        }
    };
}

string_enum! {
    /// Where a job is in its life. See [`crate::status`] for the transitions.
    JobStatus {
        Queued = "QUEUED",
        Running = "RUNNING",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
        Cancelled = "CANCELLED",
    }
}

string_enum! {
    /// What a job does.
    JobType {
        Build = "BUILD",
        Test = "TEST",
        Deploy = "DEPLOY",
        Scan = "SCAN",
    }
}

impl JobStatus {
    /// Terminal states change no more and carry `completed_at`.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }

    /// Whether `error_message` may be set in this state.
    pub fn allows_error_message(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Cancelled)
    }
}

/// A job as stored (the `job` table's columns, sync columns excluded) and as returned by the
/// API. Construct one through [`crate::validate`] to get a [`crate::validate::ValidJob`];
/// the store also reads rows into it as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: Uuid,
    pub workspace_id: Option<Uuid>,
    pub user_id: Uuid,
    pub status: JobStatus,
    #[serde(rename = "type")]
    pub job_type: JobType,
    pub project_name: String,
    pub hostname: Option<String>,
    pub arch: Option<String>,
    pub user_email: Option<String>,
    pub error_message: Option<String>,
    pub metadata: Object,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub version: i64,
}
