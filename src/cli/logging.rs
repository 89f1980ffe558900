//! Log output: tracing to stderr, as text or JSON lines. stdout carries results only.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `verbose` 0 = info, 1 = debug, 2+ = trace (for
/// taskform's own modules); `RUST_LOG` overrides.
pub fn init(verbose: u8, json: bool) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,taskform={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(color).try_init()
    };
}
