//! The command line: one file per command.

mod check;
mod deliveries;
mod render;
mod send_test;
pub mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "pencil-bridge",
    version,
    about = "Turns Pencil Spaces webhook events into chat messages"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "PENCIL_BRIDGE_CONFIG",
        default_value = "config.toml"
    )]
    pub config: PathBuf,
    /// Log line format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve,
    /// Validate the config, compile templates and render the sample events; exit 1 on any problem.
    Check,
    /// Show the routes an event matches and the exact body per destination; sends nothing.
    Render {
        /// JSON file with one Pencil event.
        #[arg(long)]
        event: PathBuf,
        /// Environment to render for (a secret's `environment`); the first secret's by default.
        #[arg(long)]
        environment: Option<String>,
    },
    /// Render one message for DESTINATION and deliver it now.
    SendTest {
        destination: String,
        /// JSON file with one Pencil event; the built-in RECORDING_AVAILABLE sample by default.
        #[arg(long)]
        event: Option<PathBuf>,
    },
    /// Inspect and replay stored deliveries.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// One row per delivery, dead letters first.
    List {
        /// pending, scheduled, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        destination: Option<String>,
        /// Only deliveries created within this long, e.g. 1h or 7d.
        #[arg(long)]
        since: Option<String>,
    },
    /// The event, the request body and every attempt of one delivery.
    Show { id: i64 },
    /// Make a delivery, or every dead one, due now.
    Retry {
        /// Delivery id.
        id: Option<i64>,
        /// Retry every dead delivery.
        #[arg(long, conflicts_with = "id")]
        dead: bool,
        /// With --dead: only this destination's.
        #[arg(long, requires = "dead")]
        destination: Option<String>,
    },
}

/// Runs the command and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    telemetry::init(format);

    if let Command::Check = cli.command {
        return if check::run(&cli.config) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if let Command::Render { event, environment } = &cli.command {
        return report(render::run(&cli.config, event, environment.as_deref()));
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve => report(serve::run(&cli.config).await),
            Command::SendTest { destination, event } => {
                match send_test::run(&cli.config, &destination, event.as_deref()).await {
                    Ok(true) => ExitCode::SUCCESS,
                    Ok(false) => ExitCode::FAILURE,
                    Err(err) => report(Err(err)),
                }
            }
            Command::Deliveries(command) => report(match command {
                DeliveriesCommand::List {
                    status,
                    destination,
                    since,
                } => {
                    deliveries::list(
                        &cli.config,
                        status.as_deref(),
                        destination,
                        since.as_deref(),
                    )
                    .await
                }
                DeliveriesCommand::Show { id } => deliveries::show(&cli.config, id).await,
                DeliveriesCommand::Retry {
                    id,
                    dead,
                    destination,
                } => deliveries::retry(&cli.config, id, dead, destination.as_deref()).await,
            }),
            Command::Check | Command::Render { .. } => unreachable!("handled above"),
        }
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`deliveries list | head`); nothing is wrong.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|err| err.kind() == std::io::ErrorKind::BrokenPipe)
}
