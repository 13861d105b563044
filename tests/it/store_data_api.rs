//! The same store conformance suite as `store.rs`, through the RDS Data API driver
//! (aws-sdk-rdsdata) talking to the project's local Data API server, which runs the statements
//! on real Postgres. Each case gets its own server whose connections use a fresh schema.

use aws_credential_types::Credentials;
use aws_sdk_rdsdata::config::{BehaviorVersion, Region};
use jobs_lambda::data_api::client::{DataApiConfig, RdsDataExecutor};
use jobs_lambda::data_api::server::{AppState, Config, router};
use jobs_tests::store_suite::{Fixture, database_url, unique_schema};

/// The database name in a `postgres://user@host:port/db[?...]` URL.
fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or("postgres").to_owned()
}

async fn data_api(case: &str) -> Option<Fixture<RdsDataExecutor>> {
    let url = database_url(case)?;
    let schema = unique_schema(case);
    // The Data API has no session state between calls: the schema comes from the server's
    // connection options, as a real cluster's would come from the user's search_path.
    let sep = if url.contains('?') { '&' } else { '?' };
    let server_url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let state = AppState::new(Config::new(server_url)).expect("data api server");
    tokio::spawn(async move { axum::serve(listener, router(state)).await.ok() });
    let sdk = aws_sdk_rdsdata::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(format!("http://{addr}"))
        .build();
    let exec = RdsDataExecutor::new(
        aws_sdk_rdsdata::Client::from_conf(sdk),
        DataApiConfig {
            resource_arn: "arn:aws:rds:us-east-1:123456789012:cluster:local".into(),
            secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:local".into(),
            database: database_name(&url),
            endpoint_url: None,
        },
    );
    Some(Fixture::new(exec, &schema).await)
}

jobs_tests::store_conformance!(data_api);
