//! `docdbsh`: thin entry point; see the library for the commands.

use std::process::ExitCode;

fn main() -> ExitCode {
    docdb_shell::cli::main()
}
