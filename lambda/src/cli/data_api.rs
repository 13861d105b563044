//! `jobsctl data-api`: the local RDS Data API server (`lambda/src/data_api/server.rs`) over
//! `DATABASE_URL`, so the Lambda binaries' production driver can run against local Postgres
//! (point them at it with `AWS_ENDPOINT_URL_RDS_DATA=http://ADDR`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Where to listen (port 0: any free port; the address is printed)
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// The Postgres the statements run on
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = crate::pg::redact_connection(&self.database_url);
        f.debug_struct("Args").field("listen", &self.listen).field("database_url", &url).finish()
    }
}

pub fn run(args: &Args) -> ExitCode {
    super::serve::block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("jobsctl data-api: binding {}: {e}", args.listen);
                return ExitCode::from(1);
            }
        };
        let addr = listener.local_addr().map_or_else(|_| args.listen.to_string(), |a| a.to_string());
        // The address line is what scripts wait for; a closed stdout must not stop the server.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "jobsctl data-api: listening on http://{addr}").and_then(|()| out.flush());
        drop(out);
        let config = crate::data_api::server::Config::new(&args.database_url);
        match crate::data_api::server::serve_listener(listener, config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jobsctl data-api: {e}");
                ExitCode::from(1)
            }
        }
    })
}
