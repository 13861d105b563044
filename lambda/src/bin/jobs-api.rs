//! `jobs-api`: the HTTP API as a Lambda function (API Gateway HTTP API v2 with its JWT
//! authorizer, REST API v1 and Function URL events). The router and its clients are built once
//! per instance, before the first event.

use jobs_lambda::api::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda::init_tracing();
    let service = lambda::service_from_env().await?;
    lambda_http::run(service).await
}
