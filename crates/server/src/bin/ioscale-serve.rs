//! `ioscale serve` as a stand-alone program, `ioscale-serve` (the server crate's tests run it as
//! a real process; it is also the smallest binary to deploy):
//!
//!     cargo run --release -p ioscale-server --bin ioscale-serve -- --port 8080 --root .
//!
//! It takes exactly the arguments of `ioscale serve` and exits with its exit codes.

use clap::Parser;

#[derive(Parser)]
#[command(name = "ioscale-serve", version, about = "ioscale serve as a stand-alone program")]
struct Args {
    #[command(flatten)]
    serve: ioscale_server::cli::ServeArgs,
}

fn main() -> std::process::ExitCode {
    ioscale_server::cli::run(&Args::parse().serve)
}
