//! Runs one role exactly as its binary does, for tests that SIGKILL processes:
//! `e2e-role <pool|mint|mining-device|translator|template-provider> [the role's arguments]`. (Cargo hands integration tests
//! only the binaries of their own package, so this package carries the roles' entry points.)

use clap::Parser;

/// The template provider's arguments, as its binary takes them.
#[derive(Parser)]
struct ProviderArgs {
    #[arg(short, long)]
    config: std::path::PathBuf,
    #[command(flatten)]
    log: hashpool_role::LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_default();
    let argv = std::iter::once(role.clone()).chain(args);
    match role.as_str() {
        "pool" => pool::cli::run(pool::cli::Args::parse_from(argv)).await,
        "mint" => mint::cli::run(mint::cli::Args::parse_from(argv)).await,
        "mining-device" => {
            mining_device::cli::run(mining_device::cli::Args::parse_from(argv)).await
        }
        "translator" => translator::cli::run(translator::cli::Args::parse_from(argv)).await,
        "template-provider" => {
            let args = ProviderArgs::parse_from(argv);
            let args = &args;
            hashpool_role::run("template provider", &args.log, |shutdown| async move {
                let config: template_provider::TemplateProviderConfig =
                    hashpool_config::load(&args.config)?;
                Ok(template_provider::start(config, shutdown).await?.task)
            })
            .await
        }
        other => anyhow::bail!(
            "unknown role `{other}`: pool, mint, mining-device, translator or template-provider"
        ),
    }
}
