//! `jobsctl token`: mints an HS256 token that `jobsctl serve` accepts (same `JOBS_JWT_SECRET`),
//! with the claims API Gateway's JWT authorizer would pass on: `sub`, `email`, `workspaces`.

use crate::api::auth::{self, Hs256Key, TokenRequest};
use crate::clock;
use std::process::ExitCode;
use uuid::Uuid;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user id (the token's `sub`)
    #[arg(long)]
    pub user: Uuid,
    /// The user's e-mail address
    #[arg(long)]
    pub email: Option<String>,
    /// A workspace the user belongs to (repeat for more)
    #[arg(long = "workspace")]
    pub workspaces: Vec<Uuid>,
    /// Lifetime in seconds
    #[arg(long, default_value_t = 86_400)]
    pub ttl: i64,
}

/// The token for `args`, signed with `key`.
pub fn token(args: &Args, key: &Hs256Key) -> Result<String, String> {
    if args.ttl <= 0 {
        return Err("--ttl must be positive".into());
    }
    let req = TokenRequest {
        user_id: args.user,
        email: args.email.clone(),
        workspaces: args.workspaces.clone(),
        issued_at: clock::now().as_millis() / 1000,
        ttl_secs: args.ttl,
    };
    auth::mint(key, &req)
}

pub fn run(args: &Args) -> ExitCode {
    let key = match Hs256Key::from_env() {
        Ok(Some(k)) => k,
        Ok(None) => {
            eprintln!("jobsctl token: set JOBS_JWT_SECRET (the secret `jobsctl serve` verifies tokens with)");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("jobsctl token: JOBS_JWT_SECRET: {e}");
            return ExitCode::from(2);
        }
    };
    match token(args, &key) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jobsctl token: {e}");
            ExitCode::from(2)
        }
    }
}
