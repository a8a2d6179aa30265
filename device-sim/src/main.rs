//! `device-sim`: thin CLI over [`device_sim::run`].
//!
//! Exit status: 0 when every publish was acknowledged (or on Ctrl-C), 1 when some publish failed
//! or on error.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = device_sim::Options::parse();
    match device_sim::run(options).await {
        Ok(summary) if summary.failed == 0 => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("device-sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
