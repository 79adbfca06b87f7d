//! Flags and the two ways to run: interactive (line editing, tab completion, persistent
//! history) when stdin is a terminal, otherwise commands from stdin (or `-c`) with the
//! exit code non-zero if any command failed. Either way results go to stdout and errors
//! to stderr, and a line ending with brackets still open continues on the next.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use docdb_client::{Client, Tls};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Editor};

use crate::complete::ShellHelper;
use crate::{input, Shell};

#[derive(Parser, Debug)]
#[command(name = "docdbsh", version, about = "The DocDB shell")]
pub struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Run this command and exit (repeatable; runs in order).
    #[arg(short = 'c', long = "command", value_name = "CMD")]
    pub commands: Vec<String>,
    /// History file for interactive use, at most 1000 lines, saved after each command
    /// [default: $XDG_STATE_HOME/docdb/history if that is set, else ~/.docdb_history].
    #[arg(long)]
    pub history: Option<PathBuf>,
}

/// Where the server is and how to authenticate: the flags the shell and `docdb db`
/// share.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Server socket (ignored with --host).
    #[arg(long, global = true, default_value = "/tmp/docdb.sock")]
    pub socket: PathBuf,
    /// Connect over TCP to a server started with `--listen HOST:PORT`, with TLS (the
    /// certificate must name HOST) unless --insecure-tcp; needs a token.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub host: Option<String>,
    /// The CA certificate (PEM) that signed the server's certificate, with --host
    /// [default: the public root certificates].
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// With --host: plain TCP, no TLS, to a loopback address only (a server started
    /// with `--insecure-tcp`).
    #[arg(long, global = true)]
    pub insecure_tcp: bool,
    /// Authenticate with this token after connecting (`docdb token issue`); also read
    /// from the DOCDB_TOKEN environment variable, which keeps it out of `ps`.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

impl ServerArgs {
    /// Connects (socket or TCP) and sends Auth with `--token`, else `DOCDB_TOKEN`, if
    /// either is set. On failure prints `ERROR` and why, and returns exit code 2
    /// (nothing was done).
    pub fn connect(&self) -> Result<Client, ExitCode> {
        let fail = |msg: String| {
            eprintln!("ERROR\n{msg}");
            ExitCode::from(2)
        };
        let token = self
            .token
            .clone()
            .or_else(|| std::env::var("DOCDB_TOKEN").ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let client = match &self.host {
            None => {
                if self.tls_ca.is_some() || self.insecure_tcp {
                    let flag = if self.insecure_tcp { "--insecure-tcp" } else { "--tls-ca" };
                    return Err(fail(format!("{flag} goes with --host HOST:PORT")));
                }
                Client::connect(&self.socket)
            }
            Some(host) => {
                let tls = match (&self.tls_ca, self.insecure_tcp) {
                    (Some(_), true) => {
                        return Err(fail(
                            "--tls-ca and --insecure-tcp exclude each other".to_string(),
                        ))
                    }
                    (Some(ca), false) => Tls::Ca(ca.clone()),
                    (None, true) => Tls::Insecure,
                    (None, false) => Tls::System,
                };
                if token.is_none() {
                    return Err(fail(format!(
                        "--host {host} needs a token (--token or DOCDB_TOKEN): over TCP the server answers nothing before Auth; issue one with `docdb token issue`"
                    )));
                }
                Client::connect_tcp(host, tls)
            }
        }
        .map_err(|e| fail(e.to_string()))?;
        if let Some(token) = token {
            if let Err(e) = client.auth(&token) {
                return Err(fail(format!("authentication failed: {e}")));
            }
        }
        Ok(client)
    }
}

/// Entry point of `docdbsh` (and `docdb shell`).
pub fn main() -> ExitCode {
    run(Args::parse())
}

pub fn run(args: Args) -> ExitCode {
    let client = match args.server.connect() {
        Ok(c) => c,
        Err(code) => return code,
    };
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

/// Where an [`Outcome`](crate::Outcome) goes: results on stdout, errors on stderr, each
/// with its `OK`/`ERROR` line, so a script's output can be piped on while its errors
/// still reach the terminal.
fn print(o: &crate::Outcome) {
    if o.ok {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", o.render());
        let _ = out.flush();
    } else {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", o.render());
    }
}

/// Runs lines until `.exit` or the end; a line ending with brackets still open takes the
/// next lines too, until they close (or the input ends, which the JSON error reports).
fn script(shell: &mut Shell, lines: impl Iterator<Item = std::io::Result<String>>) -> ExitCode {
    let mut failed = false;
    let mut pending = String::new();
    let mut lines = lines.fuse();
    loop {
        let (line, at_end) = match lines.next() {
            Some(Ok(l)) => (l, false),
            Some(Err(e)) => {
                eprintln!("ERROR\nreading input: {e}");
                return ExitCode::from(1);
            }
            None if pending.is_empty() => break,
            // The input ended inside open brackets: run what there is (the JSON error
            // says what is missing).
            None => (String::new(), true),
        };
        // A command where more JSON was expected: run the unfinished one first (its
        // error says what is missing).
        if !pending.is_empty() && input::starts_command(&line) {
            if let Some(o) = shell.execute(&std::mem::take(&mut pending)) {
                failed |= !o.ok;
                if o.exit {
                    break;
                }
                print(&o);
            }
        }
        if !at_end {
            if !pending.is_empty() {
                pending.push('\n');
            }
            pending.push_str(&line);
        }
        if pending.len() > input::MAX_INPUT {
            print(&crate::Outcome::err(input::too_long()));
            failed = true;
            pending.clear();
            continue;
        }
        if input::needs_more(&pending) && !at_end {
            continue;
        }
        let text = std::mem::take(&mut pending);
        if let Some(o) = shell.execute(&text) {
            failed |= !o.ok;
            if o.exit {
                break;
            }
            print(&o);
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The history file: `--history`, else `$XDG_STATE_HOME/docdb/history` when that
/// variable is set, else `~/.docdb_history`.
fn history_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    if flag.is_some() {
        return flag;
    }
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        let dir = PathBuf::from(state).join("docdb");
        if std::fs::create_dir_all(&dir).is_ok() {
            return Some(dir.join("history"));
        }
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docdb_history"))
}

/// Most lines the history keeps (the file is rewritten to this many).
pub const HISTORY_MAX: usize = 1000;

fn interactive(shell: &mut Shell, history: Option<PathBuf>) -> ExitCode {
    let history = history_path(history);
    let config = match rustyline::Config::builder()
        .max_history_size(HISTORY_MAX)
        .map(|b| b.history_ignore_dups(true))
        .and_then(|b| b.map(|b| b.completion_type(CompletionType::List).build()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ERROR\nterminal: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rl: Editor<ShellHelper, DefaultHistory> = match Editor::with_config(config) {
        Ok(rl) => rl,
        Err(e) => {
            eprintln!("ERROR\nterminal: {e}");
            return ExitCode::from(2);
        }
    };
    rl.set_helper(Some(ShellHelper {
        names: shell.names(),
    }));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!("DocDB shell — .help lists the commands, Tab completes, .exit leaves");
    let mut saver = HistorySaver {
        path: history,
        warned: false,
    };
    'lines: loop {
        let mut text = match rl.readline(&shell.prompt()) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("ERROR\n{e}");
                break;
            }
        };
        // Brackets still open: read more lines into the same command.
        while input::needs_more(&text) {
            if text.len() > input::MAX_INPUT {
                print(&crate::Outcome::err(input::too_long()));
                continue 'lines;
            }
            match rl.readline(CONTINUE_PROMPT) {
                // A new command instead of more JSON: run the unfinished one (its error
                // says what is missing), then go on with this one.
                Ok(more) if input::starts_command(&more) => {
                    if submit(shell, &mut rl, &mut saver, &text) {
                        break 'lines;
                    }
                    text = more;
                }
                Ok(more) => {
                    text.push('\n');
                    text.push_str(&more);
                }
                // Ctrl-C or Ctrl-D abandons the unfinished command.
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => continue 'lines,
                Err(e) => {
                    eprintln!("ERROR\n{e}");
                    break 'lines;
                }
            }
        }
        if submit(shell, &mut rl, &mut saver, &text) {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// Where the history goes, and whether a failure to save it was reported already.
struct HistorySaver {
    path: Option<PathBuf>,
    warned: bool,
}

/// Records one command in the history (saved at once, so a killed shell or terminal
/// keeps what was typed), runs it and prints its outcome. True if it asked to leave.
fn submit(
    shell: &mut Shell,
    rl: &mut Editor<ShellHelper, DefaultHistory>,
    saver: &mut HistorySaver,
    text: &str,
) -> bool {
    if !text.trim().is_empty() {
        let _ = rl.add_history_entry(text);
        if let Some(h) = &saver.path {
            if let Err(e) = rl.append_history(h) {
                if !saver.warned {
                    eprintln!("warning: cannot save history to {}: {e}", h.display());
                    saver.warned = true;
                }
            }
        }
    }
    match shell.execute(text) {
        Some(o) if o.exit => true,
        Some(o) => {
            print(&o);
            false
        }
        None => false,
    }
}

/// The prompt of a line that continues an unfinished command.
pub const CONTINUE_PROMPT: &str = "...> ";
