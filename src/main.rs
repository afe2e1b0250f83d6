//! The `chainsync` binary: parses the command line and hands over to [`chainsync::app`].

use std::process::ExitCode;

use chainsync::cli::{Cli, Command};
use chainsync::config::Config;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => {
                println!("{}: {}", file.display(), config.summary());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {}: {err}", file.display());
                ExitCode::from(2)
            }
        },
        command => {
            let system = actix::System::new();
            match system.block_on(execute(cli.config, command)) {
                Ok(code) => code,
                Err(err) => {
                    eprintln!(
                        "error: {}",
                        chainsync::redact::redact_urls_in_text(&format!("{err:#}"))
                    );
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn execute(config_path: std::path::PathBuf, command: Command) -> anyhow::Result<ExitCode> {
    if let Command::Devnet(devnet) = command {
        init_plain_tracing();
        chainsync::devnet::run(devnet).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::load(&config_path)
        .map_err(|err| anyhow::anyhow!("{}: {err}", config_path.display()))?;
    chainsync::telemetry::init_tracing(&config.log);
    match command {
        Command::Run => chainsync::app::run(config).await?,
        Command::Migrate { database_url } => chainsync::app::migrate(&config, database_url).await?,
        Command::Rewind { chain, to } => chainsync::app::rewind(&config, &chain, to).await?,
        Command::Verify { chain, from, to } => {
            if !chainsync::app::verify(&config, &chain, from, to).await? {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Watch {
            chain,
            tx_hash,
            from,
            nonce,
            label,
        } => {
            chainsync::app::watch(
                &config,
                &chain,
                &tx_hash,
                from.as_deref(),
                nonce,
                label.as_deref(),
            )
            .await?
        }
        Command::CheckConfig { .. } | Command::Devnet(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn init_plain_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHAINSYNC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}
