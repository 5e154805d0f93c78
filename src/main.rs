//! The `mongo2qdrant` binary: parse the command line, set up logging, dispatch to a command
//! ([`mongo2qdrant::commands`]), map the outcome to an exit code.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use mongo2qdrant::cli::{Cli, Command, LogFormat};
use mongo2qdrant::commands::{self, exit_code};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Interactive commands print their answer; their logs say only what went wrong.
    let quiet = matches!(cli.command, Command::Search(_) | Command::Status(_));
    init_tracing(cli.log_format, quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            // stderr may be closed (cron): never panic over a message
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Sync(args) => commands::sync::sync(*args).await,
        Command::Watch(args) => commands::watch::watch(*args).await,
        Command::Verify(args) => commands::verify::verify(*args).await,
        Command::Search(args) => commands::search::search(*args).await,
        Command::Status(args) => commands::status::status(*args).await,
        Command::Bench(args) => commands::bench::bench(*args).await,
    }
}

/// Logs to stderr, filtered by `M2Q_LOG`; colour only on a terminal and without `NO_COLOR`.
fn init_tracing(format: LogFormat, quiet: bool) {
    let default = if quiet {
        "warn,ort=warn,qdrant_edge=error"
    } else {
        "info,ort=warn,qdrant_edge=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("M2Q_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
