//! `consumer`: thin CLI over [`consumer::run`].
//!
//! Exit status: 0 normally (`-C N` reached, Ctrl-C), 27 when `-W` timed out (as mosquitto_sub),
//! 1 on error.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = consumer::Options::parse();
    match consumer::run(options, std::io::stdout()).await {
        Ok(report) => std::process::ExitCode::from(report.exit_code()),
        Err(e) => {
            eprintln!("consumer: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
