//! `docdb`: the DocDB server (`docdb serve`, the default) and its operator tools.
//! Thin: parse flags, build the configuration, call the library.

mod token;

/// mimalloc rather than the C library's allocator: 3–20 % more throughput on the
/// standard runs, with transparent huge pages off (`docdb_server::run`; DECISIONS 77).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use docdb_core::FsyncMode;
use docdb_server::config::{parse_mode, AuthMode, Policy, ServerConfig};

#[derive(Parser)]
#[command(
    name = "docdb",
    version,
    about = "DocDB: many isolated, durable JSON document databases in one process",
    after_long_help = CONFIG_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    #[command(after_long_help = CONFIG_HELP)]
    Serve(Box<ServeArgs>),
    /// Verify every checksum of every database offline; exit 1 on corruption.
    ///
    /// Exit codes: 0 every database checked and intact; 1 corruption found (or the
    /// check could not run); 3 a running server holds the data directory, so the
    /// databases it has open were skipped (check those online with the shell's
    /// `.heal-all`, or stop the server and run again).
    Check(ToolArgs),
    /// Write every document as JSON Lines, to stdout or a directory.
    Dump(DumpArgs),
    /// Load what `dump` wrote; refuses to replace existing documents unless --force.
    Restore(RestoreArgs),
    /// The interactive shell: `docdb shell --socket /tmp/docdb.sock`.
    Shell(docdb_shell::cli::Args),
    /// Issue access tokens for `--auth token`, or rotate their key.
    Token(token::TokenArgs),
    /// Admin commands for a running server: `db list`, `db drop NAME`.
    Db(docdb_shell::admin::DbArgs),
    /// Configuration helpers: `docdb config example > docdb.toml`.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a configuration file listing every key with its default and meaning.
    Example,
}

/// Printed by `--help`: every configuration key with its default.
const CONFIG_HELP: &str = concat!(
    "Configuration file (--config FILE): every key, with its default and meaning.\n",
    "`docdb config example > docdb.toml` writes this text out. Flags override the file.\n\n",
    include_str!("../../docdb-server/docdb.example.toml")
);

/// Where the data is (for the offline tools; the server must be stopped).
#[derive(Args, Clone)]
struct ToolArgs {
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// WAL directory, if the server runs with --wal-dir.
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// The server's TOML configuration file, if any.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct DumpArgs {
    #[command(flatten)]
    tool: ToolArgs,
    /// Write <DIR>/<db>/<collection>.jsonl instead of one stream to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Only these databases (repeatable).
    #[arg(long = "db", value_name = "NAME")]
    dbs: Vec<String>,
}

#[derive(Args, Clone)]
struct RestoreArgs {
    #[command(flatten)]
    tool: ToolArgs,
    /// Read <DIR>/<db>/<collection>.jsonl instead of the stream form from stdin.
    #[arg(long = "from", value_name = "DIR")]
    from: Option<PathBuf>,
    /// Replace documents that already exist.
    #[arg(long)]
    force: bool,
}

impl ToolArgs {
    fn config(&self) -> anyhow::Result<ServerConfig> {
        build_config(&ServeArgs {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            wal_dir: self.wal_dir.clone(),
            ..ServeArgs::default()
        })
    }
}

/// `docdb check`'s exit code when a running server kept it from checking some
/// databases (documented in `docdb check --help`).
const EXIT_CHECK_SKIPPED: u8 = 3;

/// Runs an offline tool; exit 0 = fine, 1 = corruption found / refused, 2 = usage,
/// 3 = `check` skipped databases a running server has open.
fn run_tool(cmd: Command) -> ExitCode {
    let result = match cmd {
        Command::Serve(_) => return ExitCode::from(2),
        Command::Shell(a) => return docdb_shell::cli::run(a),
        Command::Token(a) => token::run(a, |data_dir, config| {
            let c = build_config(&ServeArgs {
                config,
                data_dir,
                ..ServeArgs::default()
            })?;
            Ok(c.data_dir)
        })
        .map(|()| true),
        Command::Db(a) => return docdb_shell::admin::run(a),
        Command::Config(ConfigCommand::Example) => {
            use std::io::Write as _;
            std::io::stdout()
                .lock()
                .write_all(docdb_server::config::EXAMPLE.as_bytes())
                .map(|()| true)
                .map_err(anyhow::Error::from)
        }
        Command::Check(a) => match a
            .config()
            .and_then(|c| docdb_server::tools::check::run(&c, &mut std::io::stdout().lock()))
        {
            Ok(s) if s.corrupt_databases > 0 => Ok(false),
            Ok(s) if s.server.is_some() => return ExitCode::from(EXIT_CHECK_SKIPPED),
            Ok(_) => Ok(true),
            Err(e) => Err(e),
        },
        Command::Dump(a) => a.tool.config().and_then(|c| {
            let s = docdb_server::tools::dump::run(
                &c,
                &a.dbs,
                a.out.as_deref(),
                &mut std::io::BufWriter::new(std::io::stdout().lock()),
            )?;
            eprintln!(
                "dumped {} document(s) in {} collection(s) of {} database(s)",
                s.documents, s.collections, s.databases
            );
            Ok(true)
        }),
        Command::Restore(a) => a.tool.config().and_then(|c| {
            let s = docdb_server::tools::restore::run(
                &c,
                a.from.as_deref(),
                &mut std::io::stdin().lock(),
                a.force,
            )?;
            eprintln!(
                "restored {} document(s) into {} database(s)",
                s.documents, s.databases
            );
            Ok(true)
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // `docdb dump | head`: the reader left; that is not a failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("docdb: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Flags keep the original's names; each overrides one key of the config file
/// ([`FLAG_KEYS`]), and its help names that key and its default, taken from
/// `ServerConfig::default()` ([`command`]), so no default is written here.
#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// TOML configuration file; `docdb config example > docdb.toml` writes one with every
    /// key, its default and meaning.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory holding the catalog and every database.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Unix socket path.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Socket file mode, octal.
    #[arg(long, value_parser = parse_mode)]
    socket_mode: Option<u32>,
    /// Global memory capacity for live documents, MiB.
    #[arg(long, value_name = "MB")]
    memory_global: Option<u64>,
    /// Per-database memory limit, MiB.
    #[arg(long, value_name = "MB")]
    memory_per_db: Option<u64>,
    /// Put the WAL of each database under this directory instead of the data dir.
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// Same as --fsync-mode; also accepts true (= group) and false (= none).
    #[arg(long, value_name = "MODE")]
    wal_fsync: Option<String>,
    /// always | group | interval | none.
    #[arg(long, value_parser = parse_fsync)]
    fsync_mode: Option<FsyncMode>,
    /// WAL segment size, MiB.
    #[arg(long, value_name = "MB")]
    wal_max_size: Option<u64>,
    /// Per-database request queue depth.
    #[arg(long)]
    queue_depth: Option<usize>,
    /// Compact a data file above this size, MiB.
    #[arg(long, value_name = "MB")]
    compact_size: Option<u64>,
    /// ...when more than this fraction of it is dead.
    #[arg(long)]
    compact_ratio: Option<f64>,
    /// Worker threads kept alive; 0 = auto.
    #[arg(long)]
    workers: Option<usize>,
    /// Maximum concurrent client connections; 0 = unlimited.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Serve GET /metrics and /healthz on this address (e.g. 127.0.0.1:9187).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Scheduler policy: fair | deepest | round_robin.
    #[arg(long)]
    policy: Option<Policy>,
    /// error | warn | info | debug | trace.
    #[arg(long)]
    log_level: Option<String>,
    /// Access control: none | peer | token (see `docdb token --help`).
    #[arg(long)]
    auth: Option<AuthMode>,
    /// Also serve on TCP at IP:PORT (port 0: any free one); a token is always required.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<String>,
    /// PEM certificate chain for TLS on --listen.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for TLS on --listen.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Plain TCP on --listen without TLS; loopback addresses only.
    #[arg(long)]
    insecure_tcp: bool,
}

/// The configuration key each flag overrides (`build_config` applies them).
const FLAG_KEYS: &[(&str, &str)] = &[
    ("data_dir", "data_dir"),
    ("socket", "socket"),
    ("socket_mode", "socket_mode"),
    ("memory_global", "memory.global_capacity_mb"),
    ("memory_per_db", "memory.per_db_limit_mb"),
    ("wal_dir", "wal_dir"),
    ("wal_fsync", "wal.fsync.mode"),
    ("fsync_mode", "wal.fsync.mode"),
    ("wal_max_size", "wal.max_file_size_mb"),
    ("queue_depth", "sched.queue_depth"),
    ("compact_size", "compaction.size_mb"),
    ("compact_ratio", "compaction.tombstone_ratio"),
    ("workers", "sched.workers"),
    ("max_connections", "max_connections"),
    ("http", "http"),
    ("policy", "sched.policy"),
    ("log_level", "log_level"),
    ("auth", "auth.mode"),
    ("listen", "net.listen"),
    ("tls_cert", "net.tls_cert"),
    ("tls_key", "net.tls_key"),
    ("insecure_tcp", "net.insecure_tcp"),
];

/// The CLI with every flag's help ending in the key it overrides and its default.
fn command() -> clap::Command {
    fn annotate(mut cmd: clap::Command) -> clap::Command {
        for (id, key) in FLAG_KEYS {
            if cmd.get_arguments().any(|a| a.get_id() == id) {
                let note = match ServerConfig::default_value(key) {
                    Some(d) => format!("[{key}, default: {d}]"),
                    None => format!("[{key}]"),
                };
                cmd = cmd.mut_arg(id, |a| {
                    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    a.help(format!("{help} {note}"))
                });
            }
        }
        cmd
    }
    let mut cli = annotate(Cli::command());
    for sub in ["serve", "check", "dump", "restore"] {
        cli = cli.mut_subcommand(sub, annotate);
    }
    cli
}

fn parse_fsync(s: &str) -> Result<FsyncMode, String> {
    match s {
        "true" => Ok(FsyncMode::Group),
        "false" => Ok(FsyncMode::None),
        other => other.parse(),
    }
}

fn build_config(a: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut c = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading config file {}: {e}", path.display()))?;
            ServerConfig::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => ServerConfig::default(),
    };
    macro_rules! set {
        ($flag:expr, $field:expr) => {
            if let Some(v) = $flag.clone() {
                $field = v;
            }
        };
    }
    set!(a.data_dir, c.data_dir);
    set!(a.socket, c.socket);
    set!(a.socket_mode, c.socket_mode);
    set!(a.memory_global, c.memory.global_capacity_mb);
    set!(a.memory_per_db, c.memory.engine.per_db_limit_mb);
    if a.wal_dir.is_some() {
        c.wal_dir = a.wal_dir.clone();
    }
    if let Some(m) = &a.wal_fsync {
        c.wal.fsync.mode = parse_fsync(m).map_err(|e| anyhow::anyhow!("--wal-fsync: {e}"))?;
    }
    set!(a.fsync_mode, c.wal.fsync.mode);
    set!(a.wal_max_size, c.wal.max_file_size_mb);
    set!(a.queue_depth, c.sched.queue_depth);
    set!(a.compact_size, c.compaction.size_mb);
    set!(a.compact_ratio, c.compaction.tombstone_ratio);
    set!(a.workers, c.sched.workers);
    set!(a.max_connections, c.max_connections);
    if a.http.is_some() {
        c.http = a.http.clone();
    }
    set!(a.policy, c.sched.policy);
    set!(a.log_level, c.log_level);
    set!(a.auth, c.auth.mode);
    set!(a.listen, c.net.listen);
    set!(a.tls_cert, c.net.tls_cert);
    set!(a.tls_key, c.net.tls_key);
    if a.insecure_tcp {
        c.net.insecure_tcp = true;
    }
    c.validate().map_err(|e| match flag_of(a, &e.key) {
        // Say it in the user's words: the flag they typed, not the key it sets.
        Some(flag) => anyhow::anyhow!("--{}: {}", flag.replace('_', "-"), e.reason),
        None => match &a.config {
            Some(path) => anyhow::anyhow!("{}: {e}", path.display()),
            None => e.into(),
        },
    })?;
    Ok(c)
}

/// The flag of `a` that set configuration key `key`, if one did.
fn flag_of(a: &ServeArgs, key: &str) -> Option<&'static str> {
    let set = |id: &str| match id {
        "data_dir" => a.data_dir.is_some(),
        "socket" => a.socket.is_some(),
        "socket_mode" => a.socket_mode.is_some(),
        "memory_global" => a.memory_global.is_some(),
        "memory_per_db" => a.memory_per_db.is_some(),
        "wal_dir" => a.wal_dir.is_some(),
        "wal_fsync" => a.wal_fsync.is_some(),
        "fsync_mode" => a.fsync_mode.is_some(),
        "wal_max_size" => a.wal_max_size.is_some(),
        "queue_depth" => a.queue_depth.is_some(),
        "compact_size" => a.compact_size.is_some(),
        "compact_ratio" => a.compact_ratio.is_some(),
        "workers" => a.workers.is_some(),
        "max_connections" => a.max_connections.is_some(),
        "http" => a.http.is_some(),
        "policy" => a.policy.is_some(),
        "log_level" => a.log_level.is_some(),
        "auth" => a.auth.is_some(),
        "listen" => a.listen.is_some(),
        "tls_cert" => a.tls_cert.is_some(),
        "tls_key" => a.tls_key.is_some(),
        "insecure_tcp" => a.insecure_tcp,
        _ => false,
    };
    FLAG_KEYS
        .iter()
        .rev()
        .find(|(id, k)| *k == key && set(id))
        .map(|(id, _)| *id)
}

fn init_logging(c: &ServerConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOCDB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&c.log_level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if c.log_format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    let args = match cli.command {
        Some(Command::Serve(a)) => *a,
        None => cli.serve,
        Some(tool) => return run_tool(tool),
    };
    let cfg = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("docdb: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    match docdb_server::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: the log goes to stderr too, so this is not also logged.
            eprintln!("docdb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_names_a_config_key_and_its_default() {
        let cmd = command();
        let serve = cmd.find_subcommand("serve").unwrap();
        for (id, key) in FLAG_KEYS {
            assert!(
                serve.get_arguments().any(|a| a.get_id() == id),
                "no flag --{id}"
            );
            let optional = ["wal_dir", "http"].contains(key);
            assert!(
                ServerConfig::default_value(key).is_some() || optional,
                "{key} is not a config key"
            );
        }
        // Every flag of `serve` but --config is in the table.
        for a in serve.get_arguments() {
            let id = a.get_id().as_str();
            assert!(
                ["config", "help"].contains(&id) || FLAG_KEYS.iter().any(|(f, _)| *f == id),
                "--{id} is missing from FLAG_KEYS"
            );
        }
        let help = serve.clone().render_long_help().to_string();
        assert!(
            help.contains("[memory.per_db_limit_mb, default: 256]"),
            "{help}"
        );
        assert!(help.contains("[socket_mode, default: 0600]"), "{help}");
        assert!(
            help.contains("[compaction.tombstone_ratio, default: 0.3]"),
            "{help}"
        );
        // ... and still ends with the shipped example.
        assert!(help.contains("[wal.fsync]"), "{help}");
    }

    #[test]
    fn a_bad_flag_value_names_the_flag_and_a_bad_file_value_the_key() {
        let e = build_config(&ServeArgs {
            compact_ratio: Some(2.0),
            ..ServeArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--compact-ratio: "), "{e}");
        assert!(!e.contains("tombstone_ratio"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docdb.toml");
        std::fs::write(&path, "[compaction]\ntombstone_ratio = 2.0\n").unwrap();
        let e = build_config(&ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("compaction.tombstone_ratio"), "{e}");
    }

    #[test]
    fn a_flag_overrides_the_key_it_names() {
        let c = build_config(&ServeArgs {
            memory_per_db: Some(7),
            policy: Some(Policy::Deepest),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(c.memory.engine.per_db_limit_mb, 7);
        assert_eq!(c.engine().memory.per_db_limit_mb, 7);
        assert_eq!(c.sched.policy, Policy::Deepest);
    }
}
