use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pencil_bridge::commands::run(pencil_bridge::commands::Cli::parse())
}
