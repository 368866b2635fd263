//! The `sluice` command line: run the example jobs, benchmark, render reports.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    cli::main()
}
