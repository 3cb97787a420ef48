//! `ioscale`: the command line. Parses arguments, runs one subcommand, maps the outcome to an
//! exit code (0 success, 1 runtime failure, 2 bad usage — clap's own).

mod cli;
mod lab_cmd;
mod soak;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("ioscale: {e:#}");
            ExitCode::from(1)
        }
    }
}
