//! The `jobs-sync` function's plumbing: what invoked it (an EventBridge rule's scheduled event,
//! or EventBridge Scheduler's free-form input), how long it may run (the invocation's deadline
//! minus a margin), and how its failures are reported to Lambda (named retryable or not).
//!
//! Free-form input (Scheduler, or a manual `aws lambda invoke`) is `null`, `{}` or an object
//! with any of `batch_size` (1..=1000), `max_batches` (>= 1) and `margin_ms` (1000..=60000);
//! other keys are ignored, a known key with a wrong value is a `NonRetryable` error.
//!
//! The run itself is the sync's ([`crate::sync_run::run`]): claim, bulk with external
//! versioning, mark, until nothing is due or the budget is spent. With
//! `JOBS_METRICS_NAMESPACE` set (template.yaml sets it), each run also writes its numbers as
//! CloudWatch metrics ([`metrics_document`]), which the template's alarms watch.

use super::config::{self, Db};
use crate::search::SearchClient;
use crate::store::Store;
use crate::sync_run::{self, Deadline, Stop, SyncConfig, SyncSummary};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The least time kept back from the deadline to finish a batch and answer.
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(2_000);
pub const MAX_BATCH_SIZE: usize = 1_000;
/// The range of an event's `margin_ms`.
pub const MIN_MARGIN_MS: u64 = 1_000;
pub const MAX_MARGIN_MS: u64 = 60_000;

/// What a run may do, from the event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RunOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batches: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin_ms: Option<u64>,
}

/// What invoked the function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Trigger {
    /// An EventBridge event (a schedule rule's "Scheduled Event", or any other rule's).
    EventBridge { id: Option<String>, detail_type: String, source: String, resources: Vec<String> },
    /// Free-form input (EventBridge Scheduler, a manual invoke).
    Input,
}

/// Why a run failed, in the error type: `Retryable.*` (try again; the next scheduled run will
/// too) or `NonRetryable.*` (fix the event or the configuration). For alarms and logs: Lambda's
/// asynchronous invocation retries any error the same way (the template allows one retry), so a
/// bad event is tried twice, harmlessly.
#[derive(Debug, thiserror::Error)]
pub enum SyncFnError {
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    #[error("sync failed: {0}")]
    Failed(String),
}

impl SyncFnError {
    pub fn retryable(&self) -> bool {
        matches!(self, SyncFnError::Unavailable(_) | SyncFnError::Failed(_))
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            SyncFnError::InvalidEvent(_) => "NonRetryable.InvalidEvent",
            SyncFnError::Config(_) => "NonRetryable.Configuration",
            SyncFnError::Unavailable(_) => "Retryable.Unavailable",
            SyncFnError::Failed(_) => "Retryable.SyncFailed",
        }
    }
}

impl From<SyncFnError> for Diagnostic {
    fn from(e: SyncFnError) -> Diagnostic {
        Diagnostic { error_type: e.error_type().to_owned(), error_message: e.to_string() }
    }
}

/// Reads the invocation's event.
pub fn parse_event(payload: &Value) -> Result<(Trigger, RunOptions), SyncFnError> {
    match payload {
        Value::Null => Ok((Trigger::Input, RunOptions::default())),
        Value::Object(map) if map.contains_key("detail-type") => {
            let event: EventBridgeEvent<Value> = serde_json::from_value(payload.clone())
                .map_err(|e| SyncFnError::InvalidEvent(format!("not an EventBridge event: {e}")))?;
            // A rule's event carries options only if someone put them in its detail.
            let options = match &event.detail {
                Value::Object(d) if !d.is_empty() => options(&event.detail)?,
                _ => RunOptions::default(),
            };
            let trigger = Trigger::EventBridge {
                id: event.id.clone(),
                detail_type: event.detail_type.clone(),
                source: event.source.clone(),
                resources: event.resources.clone().unwrap_or_default(),
            };
            Ok((trigger, options))
        }
        Value::Object(_) => Ok((Trigger::Input, options(payload)?)),
        other => Err(SyncFnError::InvalidEvent(format!("expected an EventBridge event or a JSON object, got {other}"))),
    }
}

fn options(v: &Value) -> Result<RunOptions, SyncFnError> {
    let o: RunOptions =
        serde_json::from_value(v.clone()).map_err(|e| SyncFnError::InvalidEvent(format!("invalid options: {e}")))?;
    if o.batch_size.is_some_and(|n| n == 0 || n > MAX_BATCH_SIZE) {
        return Err(SyncFnError::InvalidEvent(format!("batch_size is 1 to {MAX_BATCH_SIZE}")));
    }
    if o.max_batches == Some(0) {
        return Err(SyncFnError::InvalidEvent("max_batches is at least 1".into()));
    }
    // Work goes on past the run's deadline (recording the batch behind, handing back the one
    // ahead, at least 0.5 s for the backlog): a smaller margin ran into the function's timeout
    // (killed, retried, leases held). A margin of minutes made every run a no-op that succeeded.
    if o.margin_ms.is_some_and(|m| !(MIN_MARGIN_MS..=MAX_MARGIN_MS).contains(&m)) {
        return Err(SyncFnError::InvalidEvent(format!("margin_ms is {MIN_MARGIN_MS} to {MAX_MARGIN_MS}")));
    }
    Ok(o)
}

/// What the function keeps between invocations: the store over the configured driver and the
/// search client, built once per instance.
pub struct SyncDeps {
    pub store: Store<Db>,
    /// `None` without `SEARCH_URL`: every invocation answers that there is nothing to do.
    pub client: Option<SearchClient>,
    pub config: SyncConfig,
}

impl SyncDeps {
    /// From the environment (see [`super::config`]).
    pub async fn from_env() -> Result<SyncDeps, config::ConfigError> {
        let store = Store::new(config::db_from_env().await?);
        let client = config::search_client_from_env().await?;
        Ok(SyncDeps { store, client, config: SyncConfig::default() })
    }
}

/// Handles one invocation: runs the sync until clean, out of batches, or `margin` before the
/// invocation's deadline, and returns the summary. A run stopped by the engine or the database
/// is a retryable error (its summary in the message); a bad event is not retryable.
pub async fn handle(deps: &SyncDeps, event: LambdaEvent<Value>) -> Result<Value, SyncFnError> {
    let (trigger, options) = parse_event(&event.payload)?;
    let Some(client) = &deps.client else {
        return Ok(
            json!({"trigger": trigger, "stopped": "no_search_engine", "message": "SEARCH_URL is not set: nothing to sync"}),
        );
    };
    let margin = options.margin_ms.map_or(DEFAULT_MARGIN, Duration::from_millis);
    let budget = budget(event.context.deadline, margin, Duration::from_secs(60));
    let mut cfg = deps.config.clone();
    if let Some(n) = options.batch_size {
        cfg.batch_size = n;
    }
    if let Some(n) = options.max_batches {
        cfg.max_batches = Some(u64::from(n));
    }
    let summary = sync_run::run(&deps.store, client, &cfg, Deadline::after(budget)).await;
    // The run logged its summary, field by field; this is the function's answer.
    let doc = json!({"trigger": trigger, "budget_ms": u64::try_from(budget.as_millis()).unwrap_or(u64::MAX), "summary": summary});
    if let Some(namespace) = std::env::var("JOBS_METRICS_NAMESPACE").ok().filter(|n| !n.is_empty()) {
        let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "jobs-sync".to_owned());
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let line = metrics_document(&namespace, &function, u64::try_from(now_ms).unwrap_or(0), &summary).to_string();
        // Its own line on stdout, where Lambda's log agent takes it to CloudWatch Logs.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
    match summary.stopped {
        Stop::EngineUnavailable => Err(SyncFnError::Unavailable(format!("search engine: {doc}"))),
        Stop::DatabaseError => Err(SyncFnError::Unavailable(format!("database: {doc}"))),
        _ => Ok(doc),
    }
}

/// A run in CloudWatch's embedded metric format: one JSON object whose `_aws` member names the
/// metrics, by the `Function` dimension. The backlog as the run left it: `LagDirty`,
/// `LagDeadLettered`, `LagOldestMs` (left out when it could not be read); what the run did:
/// `Indexed`, `Rejected`, `DeadLettered`; and `RunFailed` (1 when the engine or the database
/// stopped it).
pub fn metrics_document(namespace: &str, function: &str, now_ms: u64, s: &SyncSummary) -> Value {
    let mut values: Vec<(&str, &str, Value)> = vec![
        ("Indexed", "Count", json!(s.counts.indexed)),
        ("Rejected", "Count", json!(s.counts.rejected)),
        ("DeadLettered", "Count", json!(s.counts.dead_lettered)),
        ("RunFailed", "Count", json!(u8::from(s.failed()))),
    ];
    if let Some(lag) = &s.lag {
        values.push(("LagDirty", "Count", json!(lag.dirty)));
        values.push(("LagDeadLettered", "Count", json!(lag.dead_lettered)));
        values.push(("LagOldestMs", "Milliseconds", json!(lag.oldest_age_ms.unwrap_or(0))));
    }
    let metrics: Vec<Value> = values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
    let mut doc = serde_json::Map::new();
    doc.insert(
        "_aws".into(),
        json!({"Timestamp": now_ms, "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [["Function"]], "Metrics": metrics}]}),
    );
    doc.insert("Function".into(), json!(function));
    for (name, _, value) in values {
        doc.insert(name.into(), value);
    }
    Value::Object(doc)
}

/// The time left before `deadline_ms` (ms since the epoch, from the invocation) minus `margin`.
/// A zero deadline (no deadline given) leaves `fallback`.
pub fn budget(deadline_ms: u64, margin: Duration, fallback: Duration) -> Duration {
    if deadline_ms == 0 {
        return fallback;
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let left = u128::from(deadline_ms).saturating_sub(now_ms);
    Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX)).saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The document follows the embedded metric format: every metric `_aws` names is a
    /// top-level number, the dimension a top-level string.
    #[test]
    fn a_run_as_embedded_metrics() {
        let summary = SyncSummary {
            stopped: Stop::EngineUnavailable,
            error: Some("down".into()),
            batches: 1,
            claimed: 3,
            counts: jobs_core::sync::Counts { indexed: 2, stale: 0, retried: 0, rejected: 1, dead_lettered: 1 },
            marked: 2,
            released: 0,
            bulk_requests: 1,
            bulk_bytes: 100,
            refreshed: false,
            elapsed_ms: 5,
            docs_per_sec: 1.0,
            lag: Some(sync_run::Lag { dirty: 7, dead_lettered: 4, oldest_age_ms: Some(90_000) }),
        };
        let doc = metrics_document("jobs", "sync-fn", 1_700_000_000_000, &summary);
        let aws = &doc["_aws"];
        assert_eq!(aws["Timestamp"], json!(1_700_000_000_000u64));
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(
            (directive["Namespace"].clone(), directive["Dimensions"].clone()),
            (json!("jobs"), json!([["Function"]]))
        );
        assert_eq!(doc["Function"], json!("sync-fn"));
        let names: Vec<&str> =
            directive["Metrics"].as_array().expect("metrics").iter().filter_map(|m| m["Name"].as_str()).collect();
        assert_eq!(names.len(), 7);
        for name in &names {
            assert!(doc[*name].is_number(), "{name}: {doc}");
        }
        assert_eq!(
            [&doc["Indexed"], &doc["Rejected"], &doc["DeadLettered"], &doc["RunFailed"]],
            [&json!(2), &json!(1), &json!(1), &json!(1)]
        );
        assert_eq!(
            [&doc["LagDirty"], &doc["LagDeadLettered"], &doc["LagOldestMs"]],
            [&json!(7), &json!(4), &json!(90_000)]
        );
        // A backlog that could not be read is left out, not reported as zero.
        let unread = SyncSummary { lag: None, ..summary };
        let doc = metrics_document("jobs", "f", 0, &unread);
        assert!(
            doc.get("LagDirty").is_none()
                && doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().is_some_and(|m| m.len() == 4)
        );
    }

    #[test]
    fn reads_every_trigger() {
        let scheduled = json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2015-10-08T16:53:06Z",
            "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/r"], "detail": {}
        });
        let (t, o) = parse_event(&scheduled).expect("scheduled event");
        assert!(matches!(t, Trigger::EventBridge { ref detail_type, .. } if detail_type == "Scheduled Event"));
        assert_eq!(o, RunOptions::default());
        assert_eq!(parse_event(&json!({})).map(|(_, o)| o).ok(), Some(RunOptions::default()));
        assert_eq!(parse_event(&Value::Null).map(|(t, _)| t).ok(), Some(Trigger::Input));
        let (_, o) = parse_event(&json!({"batch_size": 10, "max_batches": 2, "other": true})).expect("free input");
        assert_eq!((o.batch_size, o.max_batches), (Some(10), Some(2)));
    }

    #[test]
    fn refuses_bad_events_as_non_retryable() {
        for bad in [
            json!("go"),
            json!([1]),
            json!({"batch_size": 0}),
            json!({"batch_size": "ten"}),
            json!({"max_batches": 0}),
            json!({"margin_ms": 0}),
            json!({"margin_ms": 999}),
            json!({"margin_ms": 600_000}),
            json!({"detail-type": "Scheduled Event"}),
        ] {
            let e = parse_event(&bad).map(|_| ()).expect_err("refused");
            assert!(!e.retryable(), "{bad}");
            assert!(Diagnostic::from(e).error_type.starts_with("NonRetryable."), "{bad}");
        }
        assert!(SyncFnError::Unavailable("db".into()).retryable());
    }

    #[test]
    fn budgets_leave_the_margin() {
        assert_eq!(budget(0, DEFAULT_MARGIN, Duration::from_secs(9)), Duration::from_secs(9));
        assert_eq!(budget(1, DEFAULT_MARGIN, Duration::from_secs(9)), Duration::ZERO);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let b = budget(now_ms + 10_000, DEFAULT_MARGIN, Duration::ZERO);
        assert!(b <= Duration::from_secs(8) && b > Duration::from_secs(7), "{b:?}");
    }
}
