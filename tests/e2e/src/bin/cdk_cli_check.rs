//! The real cdk-cli against our mint (not in CI: building cdk-cli takes a quarter of an hour;
//! `scripts/cdk-cli-check.sh` builds it and runs this). A mint runs in-process with an ehash
//! quote paid to a miner's key; cdk-cli, given the miner's mnemonic as its seed, mints the
//! quote by id, shows the balance, sends a token a hashpool wallet receives, and receives one
//! back. Exits non-zero on the first check that fails.

use std::{path::Path, process::Command};

use anyhow::{bail, Context};
use binary_sv2::{B0255Owned, U256Owned};
use clap::Parser;
use ext_mint_quote::MintQuoteRequestOwned;
use hashpool_e2e::{free_address, open_wallet, TestMint};
use hashpool_sv2_io::str0255;

#[derive(Parser)]
struct Args {
    /// The cdk-cli 0.18.3 binary.
    #[arg(long)]
    cdk_cli: std::path::PathBuf,
}

/// Runs cdk-cli with `args`; its stdout, or an error with both outputs.
fn cdk_cli(bin: &Path, work_dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let work_dir = work_dir.to_str().context("a UTF-8 work directory")?;
    let output = Command::new(bin)
        .args(["--work-dir", work_dir, "--unit", "hash"])
        .args(args)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "cdk-cli {args:?} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    println!("$ cdk-cli {}\n{}", args.join(" "), stdout.trim_end());
    Ok(stdout)
}

fn check(ok: bool, what: &str) -> anyhow::Result<()> {
    if !ok {
        bail!("check failed: {what}");
    }
    println!("ok: {what}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mint = TestMint::start(&dir.path().join("mint"), free_address()).await?;
    let url = mint.url();
    // The miner's wallet gives the seed; it never mints here (one wallet per seed at a time).
    let miner = open_wallet(&dir.path().join("miner"), &url).await?;
    let work_dir = dir.path().join("cdk-cli");
    std::fs::create_dir_all(&work_dir)?;
    std::fs::copy(
        dir.path().join("miner").join("mnemonic"),
        work_dir.join("seed"),
    )?;
    let issued = mint
        .running
        .issuer
        .issue(&MintQuoteRequestOwned {
            request_id: U256Owned::from([1; 32]),
            locking_key: B0255Owned::new(miner.locking_key().to_bytes().to_vec())
                .map_err(|e| anyhow::anyhow!("locking key: {e:?}"))?,
            unit: str0255("hash"),
            amount: 777,
            share_count: 1,
            share_commitment: U256Owned::from([1; 32]),
            epoch: 0,
        })
        .await?;
    let quote = issued.quote_id.as_str();
    let bin = args.cdk_cli.as_path();
    let minted = cdk_cli(
        bin,
        &work_dir,
        &[
            "mint",
            &url,
            "--method",
            "ehash",
            "--quote-id",
            quote,
            "--wait-duration",
            "3",
        ],
    )?;
    check(
        minted.contains("Received"),
        "cdk-cli minted the paid ehash quote by id",
    )?;
    let balance = cdk_cli(bin, &work_dir, &["balance"])?;
    check(
        balance.contains("777"),
        "cdk-cli's balance is the quote's 777 hash",
    )?;

    let sent = cdk_cli(
        bin,
        &work_dir,
        &["send", "--amount", "100", "--mint-url", &url],
    )?;
    let token = sent
        .lines()
        .rev()
        .find(|l| l.starts_with("cashu"))
        .context("a token in cdk-cli's output")?;
    let friend = open_wallet(&dir.path().join("friend"), &url).await?;
    check(
        friend.receive(token).await? == 100,
        "a hashpool wallet received cdk-cli's token of 100",
    )?;
    let back = friend.send(40).await?;
    let received = cdk_cli(bin, &work_dir, &["receive", &back])?;
    check(
        received.contains("Received: 40"),
        "cdk-cli received a hashpool wallet's token of 40",
    )?;
    let balance = cdk_cli(bin, &work_dir, &["balance"])?;
    check(
        balance.contains("717"),
        "cdk-cli's balance is 777 - 100 + 40",
    )?;
    mint.stop().await?;
    println!("cdk-cli 0.18.3 mints, holds, sends and receives ehash");
    Ok(())
}
