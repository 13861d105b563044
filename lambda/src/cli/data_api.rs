//! `jobsctl data-api`: the local RDS Data API server (`lambda/src/data_api/server.rs`) over
//! `DATABASE_URL`, so the Lambda binaries' production driver can run against local Postgres
//! (point them at it with `AWS_ENDPOINT_URL_RDS_DATA=http://ADDR`).

use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to listen
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// The Postgres the statements run on
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
}

pub fn run(args: &Args) -> ExitCode {
    super::serve::block_on(async {
        eprintln!("jobsctl data-api: listening on http://{}", args.listen);
        match crate::data_api::server::serve(args.listen, &args.database_url).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jobsctl data-api: {e}");
                ExitCode::from(1)
            }
        }
    })
}
