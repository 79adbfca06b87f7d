//! `docdb-bench`: parse the flags, run, print the Markdown report to stdout. Exits 1
//! when the run failed, including when any result failed validation.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = docdb_bench::Cli::parse();
    match docdb_bench::run(&cli) {
        Ok(report) => {
            println!("{}", report.to_markdown());
            match report.failure() {
                Some(why) => {
                    eprintln!("docdb-bench: FAILED: {why}");
                    ExitCode::FAILURE
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("docdb-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
