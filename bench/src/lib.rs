//! What the benchmark binaries share: reading pushed payloads, medians over runs, and the
//! runtime around a binary's body.
//!
//! ```text
//!   weft-bench ──────────────────────────────▶ stats
//!   weft-fanout (latency from "sent_at") ──┬─▶ payload, stats, run_main
//!   weft-lag (which write: "id") ──────────┘
//! ```

pub mod payload;
pub mod stats;

use std::future::Future;
use std::process::ExitCode;

/// Runs `body` on a multi-threaded tokio runtime; an error ends the process with a failure
/// status after printing `name: error`.
pub fn run_main(name: &str, body: impl Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
