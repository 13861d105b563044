//! jobsctl: the operators' and developers' command line.

use clap::{Parser, Subcommand, ValueEnum};
use jobs_core::validate::Kind;
use jobs_lambda::{cli, clock};
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "jobsctl", version, about = "Validate, migrate, serve, sync, reindex and verify jobs")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate NDJSON jobs: one verdict line per input line; exit 1 if any is invalid
    Validate {
        /// What each line is (patch lines are {"current": <job>, "patch": <patch>})
        #[arg(long, value_enum, default_value_t = KindArg::Record)]
        kind: KindArg,
        /// The NDJSON file, or - for standard input
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Serve the API, the sync loop and the demo page (DATABASE_URL, SEARCH_URL, JOBS_JWT_SECRET)
    Serve(cli::serve::Args),
    /// Print an HS256 token `jobsctl serve` accepts (signed with JOBS_JWT_SECRET)
    Token(cli::token::Args),
    /// Apply the schema migrations (DATABASE_URL, or the Data API settings)
    Migrate(cli::migrate::Args),
    /// Run the local RDS Data API server over DATABASE_URL
    DataApi(cli::data_api::Args),
    /// Bring search up to date with Postgres (DATABASE_URL, SEARCH_URL); --once or poll
    Sync(cli::sync::Args),
    /// Rebuild search into a new index from Postgres and swap the alias to it
    Reindex(cli::reindex::Args),
    /// Compare Postgres and search (JSON lines); --repair queues fixes; exit 1 on drift
    Verify(cli::verify::Args),
    /// List what the sync gave up on (JSON lines; exit 1 if any), or --requeue it
    DeadLetters(cli::dead_letters::Args),
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Record,
    Create,
    Patch,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match args.command {
        Command::Serve(a) => cli::serve::run(&a),
        Command::Token(a) => cli::token::run(&a),
        Command::Migrate(a) => cli::migrate::run(&a),
        Command::DataApi(a) => cli::data_api::run(&a),
        Command::Sync(a) => cli::sync::run(&a),
        Command::Reindex(a) => cli::reindex::run(&a),
        Command::Verify(a) => cli::verify::run(&a),
        Command::DeadLetters(a) => cli::dead_letters::run(&a),
        Command::Validate { kind, file } => {
            let kind = match kind {
                KindArg::Record => Kind::Record,
                KindArg::Create => Kind::Create,
                KindArg::Patch => Kind::Patch,
            };
            let stdout = io::stdout().lock();
            let result = if file.as_os_str() == "-" {
                cli::validate::run(kind, io::stdin().lock(), stdout, clock::now())
            } else {
                match std::fs::File::open(&file) {
                    Ok(f) => cli::validate::run(kind, BufReader::new(f), stdout, clock::now()),
                    Err(e) => {
                        eprintln!("jobsctl: cannot read {}: {e}", file.display());
                        return ExitCode::from(2);
                    }
                }
            };
            match result {
                Ok(s) if s.invalid == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                // A closed pipe (`| head`) is the reader's choice, not an error.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("jobsctl: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
