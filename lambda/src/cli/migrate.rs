//! `jobsctl migrate`: applies the embedded migrations (`lambda/src/migrate.rs`) to the database
//! the environment names: `DATABASE_URL`, or the Data API settings (`JOBS_DB_CLUSTER_ARN`, ...).

use crate::api::config;
use crate::migrate::{self, Options};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Migrate this schema (created if missing) instead of the connection's default
    #[arg(long)]
    pub schema: Option<String>,
}

pub fn run(args: &Args) -> ExitCode {
    super::serve::block_on(async {
        let db = match config::db_from_env().await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("jobsctl migrate: {e}");
                return ExitCode::from(2);
            }
        };
        match migrate::migrate(&db, &Options { schema: args.schema.clone() }).await {
            Ok(applied) if applied.is_empty() => {
                println!("up to date ({} migrations)", migrate::MIGRATIONS.len());
                ExitCode::SUCCESS
            }
            Ok(applied) => {
                for a in applied {
                    println!("applied {} ({} statements, {} ms)", a.script, a.statements, a.duration_ms);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jobsctl migrate: {e}");
                ExitCode::from(1)
            }
        }
    })
}
