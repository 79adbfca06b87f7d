//! `docdb db list` and `docdb db drop NAME`: one-shot admin commands for a running
//! server, over its socket. Output: `OK` or `ERROR` first, then details, as the shell.
//! Exit 0 on success, 1 when the server refused, 2 when it could not be reached or the
//! token (`--token`, `DOCDB_TOKEN`) was refused.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use docdb_client::Client;

/// `docdb db ...`.
#[derive(Args, Debug)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
    /// Server socket.
    #[arg(long, global = true, default_value = "/tmp/docdb.sock")]
    pub socket: PathBuf,
    /// Authenticate with this token first (a server with `--auth token`; DropDB needs an
    /// admin token); also read from DOCDB_TOKEN, which keeps it out of `ps`.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// List every database (id, name, creation time, live documents, WAL bytes).
    List,
    /// Drop a database: close it, remove its files, free its name (its id is never
    /// reused). No confirmation: this is for scripts.
    Drop {
        /// The database's name.
        name: String,
    },
}

pub fn run(args: DbArgs) -> ExitCode {
    let client = match Client::connect(&args.socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ERROR\n{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(code) = crate::cli::authenticate(&client, args.token) {
        return code;
    }
    let result = match args.command {
        DbCommand::List => client.list_dbs().map(|dbs| {
            dbs.iter()
                .map(|d| {
                    format!(
                        "{}\t{}\tcreated {}\tdocs {}\twal {} B",
                        d.id, d.name, d.created_at, d.docs_live, d.wal_size
                    )
                })
                .collect::<Vec<_>>()
        }),
        DbCommand::Drop { name } => client
            .drop_db(&name)
            .map(|()| vec![format!("dropped {name}")]),
    };
    match result {
        Ok(lines) => {
            println!("OK");
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ERROR\n{e}");
            ExitCode::from(1)
        }
    }
}
