//! The `weft` binary: `weft start [flags]` (or no subcommand) runs a server until SIGINT or
//! SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use weft::config::{Cli, Command, Config, StartArgs};
use weft::server::Server;

/// Stack of the runtime's worker threads (tokio's default is 2 MiB).
const WORKER_STACK: usize = 16 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // tarpc opens an INFO span for every peer call: thousands per second in a cluster.
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tarpc=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = match cli.command {
        Some(Command::Start(args)) => args,
        None => StartArgs::default(),
    };
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weft: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Sessions parse, rewrite and plan on these threads, recursing once per level of an
        // expression (up to weft_sql's limit of 1,000): room for that, reserved, not committed.
        .thread_stack_size(WORKER_STACK)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weft: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let server = match Server::start(&config).await {
        Ok(s) => s,
        Err(e) if e.is_locked() => {
            eprintln!(
                "weft: data directory {} is in use by another weft process ({e})",
                config.data_dir.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("weft: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One machine-readable line on stdout: tools and tests started on port 0 read the ports here.
    match server.peer_addr() {
        Some(peer) => println!("weft ready pg={} peer={peer}", server.local_addr()),
        None => println!("weft ready pg={}", server.local_addr()),
    }
    let signal = wait_for_signal().await;
    tracing::info!(signal, "shutting down");
    match server.shutdown().await {
        Ok(()) => {
            tracing::info!("shutdown complete");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weft: shutdown failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGINT or SIGTERM; returns the signal's name.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
