//! `jobs-data-api`: the local RDS Data API server on its own (`jobsctl data-api` runs the same).
//!
//! `jobs-data-api [--listen 127.0.0.1:8081] [--database-url postgres://...]`; the database URL
//! defaults to `DATABASE_URL`.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:8081".parse()?;
    let mut database_url = std::env::var("DATABASE_URL").ok();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v.parse()?,
            ("--database-url", Some(v)) => database_url = Some(v),
            _ => return Err(format!("usage: jobs-data-api [--listen ADDR] [--database-url URL] (got {arg})").into()),
        }
    }
    let database_url = database_url.ok_or("set --database-url or DATABASE_URL")?;
    eprintln!("jobs-data-api: listening on http://{listen}");
    jobs_lambda::data_api::server::serve(listen, &database_url).await?;
    Ok(())
}
