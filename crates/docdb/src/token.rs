//! `docdb token`: issue access tokens and rotate the key that signs them. Works while
//! the server runs (it does not take the data directory's lock).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use docdb_server::auth::glob::Glob;
use docdb_server::auth::token::{self, Claims};
use docdb_server::auth::Rights;

/// Printed by `docdb token --help`.
pub const HELP: &str = "\
Tokens are Ed25519-signed JWTs. The key pair lives in <data-dir>/keys/token.ed25519
(directory 0700, file 0600) and is made by the first `docdb token issue`.
A server started with `--auth token` (config auth.mode = \"token\") refuses every
command until the client sends Auth (16) with a token; the token's scope (a database
name pattern and read | write | admin rights) then holds for the connection.

Examples:
  docdb token issue --data-dir ./data --db 'tenant-*' --rights write --expires 30d
  docdb token issue --data-dir ./data --db '*' --rights admin --expires 12h

Rotating the key (after a leak, or on a schedule):
  docdb token rotate --data-dir ./data
writes a new key pair in place of the old one. Every token signed with the old key
stops working at its next Auth (connections already authenticated keep their scope
until they close); the running server reads the new key at the next Auth, no restart
needed. Then issue new tokens and hand them out.";

#[derive(Args, Clone)]
#[command(after_long_help = HELP)]
pub struct TokenArgs {
    #[command(subcommand)]
    cmd: TokenCmd,
}

#[derive(Subcommand, Clone)]
enum TokenCmd {
    /// Print one signed token on stdout.
    Issue(IssueArgs),
    /// Replace the signing key: every token issued before stops working.
    Rotate(Where),
}

/// Where the keys are: `<data-dir>/keys/`.
#[derive(Args, Clone)]
struct Where {
    /// Data directory of the server.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server's TOML configuration file, to take data_dir from.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct IssueArgs {
    #[command(flatten)]
    at: Where,
    /// Database names the token reaches: a pattern with `*`, `?`, `[..]`.
    #[arg(long, value_name = "GLOB")]
    db: String,
    /// read | write | admin (each includes the ones before it).
    #[arg(long)]
    rights: Rights,
    /// Lifetime: 90s, 15m, 12h, 30d. Default: never expires.
    #[arg(long, value_name = "DURATION", value_parser = token::parse_duration)]
    expires: Option<std::time::Duration>,
}

/// Runs `docdb token ...`; the data dir comes from `data_dir` or the config file.
pub fn run(
    a: TokenArgs,
    data_dir: impl Fn(Option<PathBuf>, Option<PathBuf>) -> anyhow::Result<PathBuf>,
) -> anyhow::Result<()> {
    match a.cmd {
        TokenCmd::Issue(i) => {
            let dir = data_dir(i.at.data_dir, i.at.config)?;
            Glob::new(&i.db).map_err(|e| anyhow::anyhow!("--db: {e}"))?;
            let signer = token::load_or_create(&dir)?;
            let iat = token::unix_now();
            let claims = Claims {
                db: i.db,
                rights: i.rights,
                iat,
                exp: i.expires.map(|d| iat.saturating_add(d.as_secs())),
            };
            println!("{}", signer.issue(&claims));
        }
        TokenCmd::Rotate(w) => {
            let dir = data_dir(w.data_dir, w.config)?;
            let kid = token::rotate(&dir)?;
            eprintln!(
                "new token key {kid} in {}; tokens issued before no longer work",
                token::keys_dir(&dir).display()
            );
        }
    }
    Ok(())
}
