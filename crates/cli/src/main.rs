//! `spanflow`: the agent, the server, or both in one process (`spanflow up`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use spanflow_cli::client;
use spanflow_cli::serve::{self, Role};
use spanflow_cli::settings::Settings;

/// Ingest allocates and frees many small strings per span; with mimalloc the embedded store's
/// write path takes about a fifth less CPU than with the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: spanflow_store::allocator::Allocator = spanflow_store::allocator::Allocator;

/// Every `spanflow` process keeps off transparent huge pages from its first allocation on
/// (`spanflow_store::allocator::no_huge_pages_from_start`): by `main`, Rust's runtime and
/// mimalloc have mapped memory already. glibc runs the functions of `.init_array` before `main`
/// and before the constructors of default priority, such as mimalloc's.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00090"]
static BEFORE_MAIN: extern "C" fn() = before_main;

#[cfg(target_os = "linux")]
extern "C" fn before_main() {
    spanflow_store::allocator::no_huge_pages_from_start();
}

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
    /// Sends OTLP load to a receiver and reports throughput and latency.
    Loadgen(LoadgenArgs),
    /// Accepts what agents send (and any other POST) and only counts it: the server an
    /// agent is benchmarked against, and an empty HTTP handler to measure the stack's ceiling.
    Sink(SinkArgs),
    /// Draws a trace as a waterfall in the terminal.
    Trace(TraceArgs),
    /// Lists the newest traces that match.
    Search(SearchArgs),
    /// Runs DeepFlow-style SQL over `l7_flow_log` and prints the rows.
    Query(QueryArgs),
}

#[derive(clap::Args)]
struct ServerArg {
    /// The server's query API.
    #[arg(
        long,
        env = "SPANFLOW_SERVER",
        default_value = "http://127.0.0.1:20416"
    )]
    server: String,
    /// Print the API's JSON instead of drawing it.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(clap::Args)]
struct TraceArgs {
    /// The trace id: 32 hex digits (or 16).
    trace_id: String,
    #[command(flatten)]
    server: ServerArg,
    /// Spans to show at most (the upper levels of the tree first).
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    color: ColorChoice,
    /// Width of the time axis, in characters.
    #[arg(long, default_value_t = 40)]
    width: usize,
}

#[derive(clap::Args)]
struct SearchArgs {
    #[command(flatten)]
    server: ServerArg,
    #[arg(long)]
    service: Option<String>,
    /// The span name.
    #[arg(long)]
    operation: Option<String>,
    /// An attribute filter, `key=value`; repeatable.
    #[arg(long = "attr")]
    attributes: Vec<String>,
    /// As `250ms`, `1.5s`, or µs.
    #[arg(long)]
    min_duration: Option<String>,
    #[arg(long)]
    max_duration: Option<String>,
    /// `error`, `ok`, `server_error`, `client_error`, `timeout` or `unknown`.
    #[arg(long)]
    status: Option<String>,
    /// RFC 3339, or µs since the epoch.
    #[arg(long)]
    start: Option<String>,
    #[arg(long)]
    end: Option<String>,
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(clap::Args)]
struct QueryArgs {
    /// One SELECT over `l7_flow_log`, or a DeepFlow `show` command.
    sql: String,
    #[command(flatten)]
    server: ServerArg,
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn trace(args: TraceArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(limit) = args.limit {
        query.push(("limit".to_string(), limit.to_string()));
    }
    let path = format!("/api/v1/traces/{}", args.trace_id);
    let trace = client_runtime()?.block_on(client::get(&args.server.server, &path, &query))?;
    if args.server.json {
        return print_json(&trace);
    }
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    print!(
        "{}",
        client::waterfall(&trace, color, args.width.clamp(10, 400))
    );
    Ok(())
}

fn search(args: SearchArgs) -> anyhow::Result<()> {
    let mut query: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            query.push((name.to_string(), value));
        }
    };
    add("service", args.service);
    add("operation", args.operation);
    add("min_duration", args.min_duration);
    add("max_duration", args.max_duration);
    add("status", args.status);
    add("start", args.start);
    add("end", args.end);
    add("limit", Some(args.limit.to_string()));
    for attribute in &args.attributes {
        let (key, value) = attribute
            .split_once('=')
            .with_context(|| format!("--attr {attribute:?} is not key=value"))?;
        query.push((format!("attr.{key}"), value.to_string()));
    }
    let result =
        client_runtime()?.block_on(client::get(&args.server.server, "/api/v1/traces", &query))?;
    if args.server.json {
        return print_json(&result);
    }
    print!("{}", client::search_table(&result));
    Ok(())
}

fn query(args: QueryArgs) -> anyhow::Result<()> {
    let answer = client_runtime()?.block_on(client::sql(&args.server.server, &args.sql))?;
    if args.server.json {
        return print_json(&answer);
    }
    print!("{}", client::sql_table(&answer));
    Ok(())
}

#[derive(clap::Args)]
struct SinkArgs {
    #[arg(long, default_value = "127.0.0.1:30033")]
    listen: std::net::SocketAddr,
}

#[derive(clap::Args)]
struct LoadgenArgs {
    /// For HTTP the full URL (`.../v1/traces` or `.../api/v1/otel/trace`); for gRPC the
    /// receiver's address; for batch the server's ingest URL (`.../ingest/v1/batch`).
    #[arg(long, default_value = "http://127.0.0.1:4318/v1/traces")]
    endpoint: String,
    #[arg(long, value_enum, default_value = "http")]
    protocol: LoadgenProtocol,
    #[arg(long, default_value_t = 100)]
    spans_per_request: usize,
    /// Send the requests uncompressed instead of gzip'd.
    #[arg(long)]
    no_gzip: bool,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Spans per second, in an open loop (latency from each request's intended send time);
    /// without it the connections send back to back.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many spans (even before the duration is up).
    #[arg(long)]
    spans: Option<u64>,
    /// Requests in the corpus, built before the run; a longer run sends them again, ids and all.
    #[arg(long, default_value_t = 2_000)]
    distinct_requests: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A request header, `name: value`; repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// OTLP requests per agent batch, with `--protocol batch`.
    #[arg(long, default_value_t = 10)]
    payloads_per_batch: usize,
    /// A spanflow query API (`http://127.0.0.1:20416`): a few times a second, send one span
    /// of a new trace and time how long after its acknowledgement the API returns it.
    #[arg(long)]
    probe: Option<String>,
    /// Send nothing: time how fast this core decodes the corpus (protobuf, gunzip, both),
    /// each for `--duration` seconds, and report that instead.
    #[arg(long)]
    ceilings: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LoadgenProtocol {
    /// OTLP/HTTP protobuf.
    Http,
    /// OTLP/gRPC.
    Grpc,
    /// The agent-to-server batches, to drive a server alone.
    Batch,
}

fn loadgen(args: LoadgenArgs) -> anyhow::Result<()> {
    let mut headers = Vec::new();
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("header `{header}` is not `name: value`"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    anyhow::ensure!(
        args.duration.is_finite() && args.duration > 0.0,
        "--duration must be a positive number of seconds"
    );
    let config = spanflow_loadgen::Config {
        endpoint: args.endpoint,
        protocol: match args.protocol {
            LoadgenProtocol::Http => spanflow_loadgen::Protocol::Http,
            LoadgenProtocol::Grpc => spanflow_loadgen::Protocol::Grpc,
            LoadgenProtocol::Batch => spanflow_loadgen::Protocol::Batch,
        },
        spans_per_request: args.spans_per_request,
        gzip: !args.no_gzip,
        connections: args.connections,
        rate: args.rate,
        duration: std::time::Duration::from_secs_f64(args.duration),
        max_spans: args.spans,
        distinct_requests: args.distinct_requests,
        seed: args.seed,
        headers,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        payloads_per_batch: args.payloads_per_batch,
        probe: args.probe,
        probe_interval: std::time::Duration::from_millis(250),
    };
    if args.ceilings {
        let corpus = spanflow_loadgen::corpus::build(
            config.distinct_requests.max(1),
            config.spans_per_request.max(1),
            config.seed,
        );
        let ceilings = spanflow_loadgen::ceiling::measure(&corpus, config.duration);
        let json = serde_json::to_string_pretty(&ceilings)?;
        if let Some(path) = &args.out {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
        }
        for (what, rate) in [
            ("protobuf decode", &ceilings.decode),
            ("gunzip + decode", &ceilings.gunzip_decode),
            ("gunzip", &ceilings.gunzip),
        ] {
            println!(
                "{what:16} {:>10.0} spans/s on one core, {:.2} CPU-s per million spans",
                rate.spans_per_second, rate.cpu_seconds_per_million_spans
            );
        }
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(spanflow_loadgen::run(config))?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.out {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{} spans accepted in {:.1} s ({:.0} spans/s); requests: {} accepted, {} refused, {} failed; \
         latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        report.spans.accepted,
        report.elapsed_seconds,
        report.spans_per_second,
        report.requests.accepted,
        report.requests.refused,
        report.requests.failed,
        report.latency.p50_ms,
        report.latency.p99_ms,
        report.latency.max_ms,
    );
    if let Some(queryable) = &report.queryable {
        println!(
            "queryable after acknowledgement: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
             ({} probes, {} never found)",
            queryable.p50_ms,
            queryable.p99_ms,
            queryable.max_ms,
            queryable.probes,
            queryable.not_found
        );
    }
    for failure in &report.failures {
        println!("failure: {failure}");
    }
    if report.ids_repeated {
        println!(
            "note: the run sent more requests than the corpus holds ({}), so span ids repeat",
            report.corpus_requests
        );
    }
    Ok(())
}

/// Threads for blocking work (file reads, flushes, batch decoding, fsyncs): enough to keep
/// every core busy while some of them wait on the disk. Tokio's default of 512 lets a query's
/// burst of file reads start hundreds of threads, and each keeps an allocator heap of its own:
/// the service map over ten million stored spans peaked at 2.6 GB resident with 322 threads,
/// and at 1.2 GB with 8. No blocking task waits on another, so a cap only queues them.
fn blocking_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .saturating_mul(4)
        .max(8)
}

fn sink(args: SinkArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        eprintln!("spanflow sink listening on {}", args.listen);
        axum::serve(listener, spanflow_cli::sink::router())
            .with_graceful_shutdown(wait_for_signal())
            .await
            .context("serving")
    })
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
        Command::Loadgen(args) => return loadgen(args),
        Command::Sink(args) => return sink(args),
        Command::Trace(args) => return trace(args),
        Command::Search(args) => return search(args),
        Command::Query(args) => return query(args),
    };
    if !spanflow_store::allocator::huge_pages_disabled() {
        eprintln!("spanflow: the kernel kept transparent huge pages on; memory use may be higher");
    }
    if role != Role::Agent {
        // The store frees and reallocates buffers of megabytes a flush; the agent keeps
        // mimalloc's purge delay, for its small resident size.
        spanflow_store::allocator::hold_freed_memory();
    }
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
        .max_blocking_threads(blocking_threads())
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
