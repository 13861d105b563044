//! `jobs-sync`: the scheduled sync as a Lambda function (EventBridge rule events, EventBridge
//! Scheduler's free-form input). The store and the search client are built once per instance;
//! each invocation syncs until clean or its time is nearly up and returns the summary.

use jobs_lambda::api::{lambda, sync_fn};
use lambda_runtime::service_fn;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::init_tracing();
    let deps = sync_fn::SyncDeps::from_env().await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event| sync_fn::handle(deps, event))).await
}
