//! `softswitch`: see `softswitch --help` and OPERATIONS.md.

use softswitch::cli::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SOFTSWITCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file must stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("softswitch: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command() {
        Command::CheckConfig => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Command::Serve => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            // 0: tokio's default, one worker per core we may run on.
            if config.runtime.worker_threads > 0 {
                builder.worker_threads(config.runtime.worker_threads);
            }
            let runtime = match builder.enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("softswitch: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(softswitch::run(config, softswitch::switch::signal(), None)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("softswitch: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
