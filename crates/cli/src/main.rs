//! `spanflow`: the agent, the server, or both in one process (`spanflow up`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use spanflow_cli::serve::{self, Role};
use spanflow_cli::settings::Settings;

/// Ingest allocates and frees many small strings per span; with mimalloc the embedded store's
/// write path takes about a fifth less CPU than with the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "spanflow",
    version,
    about = "OpenTelemetry traces in, stored, and served back"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Agent and server in one process, with the default ports and a local store.
    Up(RunArgs),
    /// The node agent: OTLP receivers that forward to a server.
    Agent(RunArgs),
    /// The server: ingest from agents, a store, and the query API.
    Server(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// A YAML file of settings; flags and SPANFLOW_* environment variables override it.
    #[arg(long, env = "SPANFLOW_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (role, args) = match cli.command {
        Command::Up(args) => (Role::Both, args),
        Command::Agent(args) => (Role::Agent, args),
        Command::Server(args) => (Role::Server, args),
    };
    let file = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let settings = args.settings.or(file).resolve();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&settings.log))
        .context("parsing the log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut running = serve::start(role, settings).await?;
        let shutdown = running.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
        running.wait().await
    })
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
