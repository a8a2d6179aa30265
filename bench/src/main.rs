//! `mqtt-bench`: run one scenario against a running broker, or `compare`
//! our broker with Mosquitto.

use std::net::SocketAddr;

use anyhow::Result;
use bench::compare::{self, CompareArgs};
use bench::{Scenario, Target};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "mqtt-bench", version, about)]
struct Cli {
    /// The broker's address.
    #[arg(long, default_value = "127.0.0.1:1883", global = true)]
    addr: SocketAddr,
    /// The broker's process id, for its CPU seconds and RSS.
    #[arg(long, global = true)]
    broker_pid: Option<u32>,
    /// Print only the JSON line.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Scenario(Scenario),
    /// Our broker against Mosquitto, side by side.
    Compare(CompareArgs),
}

fn main() {
    let cli = Cli::parse();
    // One thread: the generator is pinned to one CPU, and a single-threaded
    // runtime spends nothing on cross-thread wake-ups.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqtt-bench: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("mqtt-bench: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    compare::raise_nofile();
    match cli.command {
        Command::Scenario(s) => {
            let Some(pid) = cli.broker_pid else {
                anyhow::bail!("--broker-pid is needed for the broker's CPU seconds and RSS");
            };
            let report = s
                .run(Target {
                    addr: cli.addr,
                    pid,
                })
                .await?;
            if !cli.json {
                println!("{}", report.row());
            }
            println!("{}", report.json());
            Ok(())
        }
        Command::Compare(args) => compare::run(args).await,
    }
}
