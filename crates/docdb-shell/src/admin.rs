//! `docdb db list` and `docdb db drop NAME`: one-shot admin commands for a running
//! server, over its socket or TCP (`--host`, the shell's flags). Output: `OK` or `ERROR` first, then details, as the shell.
//! Exit 0 on success, 1 when the server refused, 2 when it could not be reached or the
//! token (`--token`, `DOCDB_TOKEN`) was refused.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::cli::ServerArgs;

/// `docdb db ...`.
#[derive(Args, Debug)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
    /// Where the server is, and the token (DropDB needs an admin token).
    #[command(flatten)]
    pub server: ServerArgs,
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
    let client = match args.server.connect() {
        Ok(c) => c,
        Err(code) => return code,
    };
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
