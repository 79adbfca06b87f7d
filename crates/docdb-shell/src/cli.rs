//! Flags and the two ways to run: interactive (line editing, persistent history) when
//! stdin is a terminal, otherwise commands from stdin (or `-c`) with the exit code
//! non-zero if any command failed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use docdb_client::Client;
use rustyline::error::ReadlineError;

use crate::Shell;

#[derive(Parser, Debug)]
#[command(name = "docdbsh", version, about = "The DocDB shell")]
pub struct Args {
    /// Server socket.
    #[arg(long, default_value = "/tmp/docdb.sock")]
    pub socket: PathBuf,
    /// Run this command and exit (repeatable; runs in order).
    #[arg(short = 'c', long = "command", value_name = "CMD")]
    pub commands: Vec<String>,
    /// History file for interactive use [default: ~/.docdb_history].
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Authenticate with this token after connecting (`docdb token issue`); also read
    /// from the DOCDB_TOKEN environment variable, which keeps it out of `ps`.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// Entry point of `docdbsh` (and `docdb shell`).
pub fn main() -> ExitCode {
    run(Args::parse())
}

pub fn run(args: Args) -> ExitCode {
    let client = match Client::connect(&args.socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ERROR\ncannot connect to {}: {e}", args.socket.display());
            return ExitCode::from(2);
        }
    };
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("DOCDB_TOKEN").ok().filter(|t| !t.is_empty()));
    if let Some(token) = token {
        if let Err(e) = client.auth(token.trim()) {
            eprintln!("ERROR\nauthentication failed: {e}");
            return ExitCode::from(2);
        }
    }
    let mut shell = Shell::new(client);
    if !args.commands.is_empty() {
        return script(&mut shell, args.commands.iter().map(|s| Ok(s.clone())));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        shell.set_interactive(true);
        interactive(&mut shell, args.history)
    } else {
        script(&mut shell, stdin.lock().lines())
    }
}

fn script(shell: &mut Shell, lines: impl Iterator<Item = std::io::Result<String>>) -> ExitCode {
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for line in lines {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                let _ = writeln!(out, "ERROR\nreading input: {e}");
                return ExitCode::from(1);
            }
        };
        if let Some(o) = shell.execute(&line) {
            failed |= !o.ok;
            if !o.exit {
                let _ = writeln!(out, "{}", o.render());
            }
            if o.exit {
                break;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn interactive(shell: &mut Shell, history: Option<PathBuf>) -> ExitCode {
    let history = history
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docdb_history")));
    let mut rl = match rustyline::DefaultEditor::new() {
        Ok(rl) => rl,
        Err(e) => {
            eprintln!("ERROR\nterminal: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!("DocDB shell — .help lists the commands, .exit leaves");
    loop {
        match rl.readline(&shell.prompt()) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = rl.add_history_entry(line.as_str());
                }
                if let Some(o) = shell.execute(&line) {
                    if o.exit {
                        break;
                    }
                    println!("{}", o.render());
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("ERROR\n{e}");
                break;
            }
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    ExitCode::SUCCESS
}
