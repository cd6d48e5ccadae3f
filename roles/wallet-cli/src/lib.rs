//! `hashpool-wallet`: a miner's ehash wallet on the command line. Its directory holds the
//! mnemonic (0600), the wallet database and the mint's URL; its public key is what a miner
//! puts in the SV1 username (`<key>.<worker>`) or SV2 identity, and `claim` mints every quote
//! the mint holds for that key (through the signed lookup), so nothing is lost while the
//! wallet is away. `serve` puts the wallet API (web-proxy's source) on the directory and claims
//! new quotes periodically. Every command answers in JSON with `--json`.

pub mod audit;
mod lock;
mod serve;

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hashpool_wallet::{EhashWallet, WalletConfig};
use serde_json::json;

pub use lock::DirLock;
pub use serve::{serve, ServeArgs, Served};

#[derive(Parser, Debug)]
#[command(name = "hashpool-wallet", version, about)]
pub struct Cli {
    /// The wallet's directory (mnemonic, database, mint URL).
    #[arg(long, env = "HASHPOOL_WALLET_DIR", default_value = ".hashpool-wallet")]
    pub dir: PathBuf,
    /// The Hashpool mint (e.g. http://127.0.0.1:3338); remembered in the directory once given.
    #[arg(long, env = "HASHPOOL_MINT")]
    pub mint: Option<String>,
    /// Answer in JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Creates the wallet's mnemonic (or restores one) and prints its public key.
    Init {
        /// Restore these words (12 or 24) instead of creating new ones.
        #[arg(long)]
        restore: Option<String>,
    },
    /// Prints the public key (the SV1 username / SV2 identity).
    Key,
    /// Serves the wallet API (balance, history, tokens; no faucet) for web-proxy, claiming new
    /// quotes periodically, until Ctrl-C.
    Serve(ServeArgs),
    #[command(flatten)]
    Wallet(WalletCommand),
}

/// What needs the mint.
#[derive(Subcommand, Debug)]
pub enum WalletCommand {
    /// Mints every quote the mint holds for this key that is not minted yet.
    Claim,
    /// The ehash held.
    Balance,
    /// The latest quotes minted into this wallet.
    History {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Prints a `cashuB` token of AMOUNT from this wallet.
    Send { amount: u64 },
    /// Receives a token into this wallet.
    Receive { token: String },
    /// Redeems this wallet's ehash of a final EPOCH for sat ecash of the mint, at the rate the
    /// pool signed (docs/settlement.md).
    Redeem { epoch: u32 },
    /// Withdraws SATS of this wallet's sats to ADDRESS on chain: the mint records it and the
    /// pool pays it in a coinbase output of one of its next blocks (docs/settlement.md).
    Withdraw { sats: u64, address: String },
    /// This wallet's withdrawals; with `--pool-api`, where each stands in the pool's coinbases
    /// (queued, offered, in a block with its transaction, matured).
    Withdrawals {
        /// The pool's miner API (`pool.api_address`), e.g. http://127.0.0.1:9113.
        #[arg(long, env = "HASHPOOL_POOL_API")]
        pool_api: Option<String>,
    },
    /// Checks the pool's settlement for this wallet's quotes: the signed rates and epoch
    /// commitments, each quote counted in its epoch, each final rate following from the
    /// published blocks; values this wallet's ehash per epoch. Fails when a check does.
    Audit {
        /// The pool's miner API (`pool.api_address`), e.g. http://127.0.0.1:9113.
        #[arg(long, env = "HASHPOOL_POOL_API")]
        pool_api: String,
        /// The pool's x-only authority key (64 hex characters), from the pool's published
        /// configuration, not from its API.
        #[arg(long, env = "HASHPOOL_POOL_KEY")]
        pool_key: String,
        /// The mint's x-only authority key (64 hex characters, `mint.authority_public_key`):
        /// also check the mint's signed report of each epoch against the pool's.
        #[arg(long, env = "HASHPOOL_MINT_KEY")]
        mint_key: Option<String>,
    },
}

/// The pool's payout of withdrawal `quote_id` (`None`: the pool has not read it yet).
async fn payout_of(
    pool_api: &str,
    quote_id: &str,
) -> anyhow::Result<Option<hashpool_settlement::withdrawals::Payout>> {
    let url = audit::url(pool_api, &["api", "v1", "settlement", "payouts", quote_id])?;
    let response = reqwest::get(url).await?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    Ok(Some(response.error_for_status()?.json().await?))
}

const MNEMONIC: &str = "mnemonic";
const MINT_URL: &str = "mint-url";
const DATABASE: &str = "wallet.sqlite";

fn database_path(dir: &Path) -> PathBuf {
    dir.join(DATABASE)
}

/// Runs one command, writing its answer to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = cli.dir.as_path();
    let json_out = cli.json;
    let command = match cli.command {
        Command::Init { restore } => {
            let key = init(dir, restore.as_deref())?;
            if let Some(mint) = &cli.mint {
                remember_mint(dir, mint)?;
            }
            return answer(
                out,
                json_out,
                json!({ "public_key": key }),
                &format!(
                    "public key: {key}\nSV1 username: {key}.<worker>   SV2 user identity: {key}\nback up {}",
                    dir.join(MNEMONIC).display()
                ),
            );
        }
        Command::Key => {
            let key = EhashWallet::locking_key_of(&read_mnemonic(dir)?)?.to_hex();
            return answer(out, json_out, json!({ "public_key": key }), &key);
        }
        Command::Serve(args) => {
            return serve_until_signal(dir, cli.mint.as_deref(), &args, json_out, out).await
        }
        Command::Wallet(command) => command,
    };
    // Commands that change the wallet: one process at a time (see `lock`).
    let changes = match &command {
        WalletCommand::Claim => Some("claim"),
        WalletCommand::Send { .. } => Some("send"),
        WalletCommand::Receive { .. } => Some("receive"),
        WalletCommand::Redeem { .. } => Some("redeem"),
        WalletCommand::Withdraw { .. } => Some("withdraw"),
        WalletCommand::Withdrawals { .. } => Some("withdrawals"),
        WalletCommand::Balance | WalletCommand::History { .. } | WalletCommand::Audit { .. } => {
            None
        }
    };
    let _lock = changes
        .map(|name| {
            DirLock::acquire(
                dir,
                &format!("`hashpool-wallet {name}` (pid {})", std::process::id()),
            )
        })
        .transpose()?;
    let wallet = open(dir, cli.mint.as_deref()).await?;
    match command {
        WalletCommand::Claim => {
            let mut quotes = 0;
            let claimed = wallet
                .recover_with_progress(|quote, amount| {
                    quotes += 1;
                    // Progress on stderr: stdout keeps the answer alone.
                    eprintln!("minted quote {quote}: {amount} hash");
                })
                .await?;
            let balance = wallet.balance().await?;
            answer(
                out,
                json_out,
                json!({ "claimed": claimed, "quotes": quotes, "balance": balance }),
                &format!("claimed {claimed} hash from {quotes} quotes; balance {balance} hash"),
            )
        }
        WalletCommand::Balance => {
            let balance = wallet.balance().await?;
            let sats = wallet.sat_balance().await?;
            // By epoch needs the mint's list of epochs: left out when it cannot be read.
            let epochs: Vec<serde_json::Value> = match wallet.balance_by_epoch().await {
                Ok(by) => by
                    .into_iter()
                    .map(|(epoch, ehash)| json!({ "epoch": epoch, "ehash": ehash }))
                    .collect(),
                Err(e) => {
                    eprintln!("ehash by epoch: {e}");
                    Vec::new()
                }
            };
            let mut text = format!("{balance} hash");
            if sats > 0 {
                text.push_str(&format!("\n{sats} sat"));
            }
            answer(
                out,
                json_out,
                json!({ "balance": balance, "sats": sats, "epochs": epochs }),
                &text,
            )
        }
        WalletCommand::Redeem { epoch } => {
            let r = wallet.redeem(epoch).await?;
            answer(
                out,
                json_out,
                serde_json::to_value(&r)?,
                &format!(
                    "redeemed {} hash of epoch {} for {} sat (sat quote {})",
                    r.ehash, r.epoch, r.sats, r.sat_quote
                ),
            )
        }
        WalletCommand::Withdraw { sats, address } => {
            let w = wallet.withdraw(sats, &address).await?;
            answer(
                out,
                json_out,
                serde_json::to_value(&w)?,
                &format!(
                    "withdrawal of {} sat to {} recorded (quote {}): the pool pays it in a \
                     coinbase of one of its next blocks",
                    w.sats, w.address, w.quote_id
                ),
            )
        }
        WalletCommand::Withdrawals { pool_api } => {
            wallet.settle_withdrawals().await?;
            let withdrawals = wallet.withdrawals().await?;
            let mut rows = Vec::new();
            let mut lines = Vec::new();
            for w in withdrawals {
                let payout = match &pool_api {
                    Some(api) => Some(payout_of(api, &w.quote_id).await),
                    None => None,
                };
                let standing = match &payout {
                    Some(Ok(Some(p))) => match (&p.txid, p.vout) {
                        (Some(txid), Some(vout)) => {
                            format!("{} in {txid}:{vout}", p.state.as_str())
                        }
                        _ => p.state.as_str().to_string(),
                    },
                    Some(Ok(None)) => "not read by the pool yet".to_string(),
                    Some(Err(e)) => format!("pool: {e}"),
                    None => "recorded by the mint".to_string(),
                };
                lines.push(format!(
                    "{}  {} sat  {}  {standing}",
                    w.quote_id, w.sats, w.address
                ));
                rows.push(json!({
                    "withdrawal": w,
                    "payout": payout.and_then(|p| p.ok()).flatten(),
                }));
            }
            answer(out, json_out, json!(rows), &lines.join("\n"))
        }
        WalletCommand::History { limit } => {
            let minted = wallet.history(limit).await?;
            let text = minted
                .iter()
                .map(|i| format!("{}  {}  {} hash", i.time, i.quote, i.amount))
                .collect::<Vec<_>>()
                .join("\n");
            answer(out, json_out, serde_json::to_value(&minted)?, &text)
        }
        WalletCommand::Send { amount } => {
            if amount == 0 {
                bail!("nothing to send: the amount is 0");
            }
            let token = wallet.send(amount).await?;
            answer(
                out,
                json_out,
                json!({ "token": token, "amount": amount }),
                &token,
            )
        }
        WalletCommand::Audit {
            pool_api,
            pool_key,
            mint_key,
        } => {
            let pool_key = audit::parse_pool_key(&pool_key)?;
            let mint_key = mint_key.as_deref().map(audit::parse_mint_key).transpose()?;
            let mut quotes = Vec::new();
            let mut after = None;
            loop {
                let page = wallet.quotes(after.as_deref()).await?;
                quotes.extend(page.quotes.into_iter().map(|q| (q.quote, q.amount)));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            let key = wallet.sv2_locking_key().to_hex();
            let mint = mint_key.map(|key| audit::MintToAudit {
                url: wallet.mint_url(),
                key,
            });
            let report =
                audit::audit_pool_and_mint(&pool_api, &pool_key, mint, &key, &quotes).await?;
            answer(
                out,
                json_out,
                serde_json::to_value(&report)?,
                &audit::describe(&report),
            )?;
            if !report.problems.is_empty() {
                bail!("the audit found {} problem(s)", report.problems.len());
            }
            Ok(())
        }
        WalletCommand::Receive { token } => {
            let received = wallet.receive(token.trim()).await?;
            answer(
                out,
                json_out,
                json!({ "received": received }),
                &format!("received {received} hash"),
            )
        }
    }
}

/// `serve` in the foreground: logging, the start line on `out`, then serving until SIGINT or
/// SIGTERM.
async fn serve_until_signal(
    dir: &Path,
    mint: Option<&str>,
    args: &ServeArgs,
    json_out: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    hashpool_role::run(
        "hashpool-wallet",
        &hashpool_role::LogArgs::with_file(args.log_file.clone()),
        |shutdown| async move {
            let served = serve(dir, mint, args, shutdown).await?;
            let claims = match args.claim_every {
                0 => "never (stop serve to claim)".to_string(),
                secs => format!("every {secs} s"),
            };
            answer(
                out,
                json_out,
                json!({
                    "api": format!("http://{}", served.address),
                    "token_path": served.token_path,
                    "public_key": served.public_key,
                    "claim_every_secs": args.claim_every,
                }),
                &format!(
                    "wallet API on http://{} (no faucet); token file {}; claiming {claims}; \
                     Ctrl-C stops",
                    served.address,
                    served.token_path.display()
                ),
            )?;
            out.flush()?;
            Ok(served.task)
        },
    )
    .await
}

fn answer(
    out: &mut dyn Write,
    json_out: bool,
    value: serde_json::Value,
    text: &str,
) -> anyhow::Result<()> {
    if json_out {
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "{text}")?;
    }
    Ok(())
}

/// The mnemonic file: created (0600) with new words, or with `restore`'s; an existing file is
/// never replaced by other words.
fn init(dir: &Path, restore: Option<&str>) -> anyhow::Result<String> {
    create_private_dir(dir)?;
    let path = dir.join(MNEMONIC);
    let wanted = match restore {
        Some(words) => Some(
            bip39::Mnemonic::parse(words.trim())
                .context("the words to restore are not a valid mnemonic")?
                .to_string(),
        ),
        None => None,
    };
    let words = hashpool_config::secret_file::load_or_create(&path, || {
        wanted.clone().unwrap_or_else(|| {
            bip39::Mnemonic::generate(12)
                .expect("12 words is a valid length")
                .to_string()
        })
    })?;
    if let Some(wanted) = wanted {
        if words.trim() != wanted {
            bail!(
                "{} already holds another mnemonic: not replaced (move it away first)",
                path.display()
            );
        }
    }
    Ok(EhashWallet::locking_key_of(words.trim())?.to_hex())
}

/// Creates the wallet's directory (and its parents) if missing, the directory itself readable by
/// its owner only: it holds the proofs (the database), the mnemonic and the API token. An
/// existing directory is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        // Created meanwhile by another process: as good.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
    }
}

fn read_mnemonic(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(MNEMONIC);
    let words = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: run `hashpool-wallet init` first", path.display()))?;
    Ok(words.trim().to_string())
}

fn remember_mint(dir: &Path, mint: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(MINT_URL), mint.trim())
        .with_context(|| format!("writing {}", dir.join(MINT_URL).display()))
}

/// The wallet of `dir` on the mint given now, or the one remembered.
async fn open(dir: &Path, mint: Option<&str>) -> anyhow::Result<EhashWallet> {
    let words = read_mnemonic(dir)?;
    let mint = match mint {
        Some(m) => {
            remember_mint(dir, m)?;
            m.trim().to_string()
        }
        None => std::fs::read_to_string(dir.join(MINT_URL))
            .map(|m| m.trim().to_string())
            .context("no mint: give --mint URL once")?,
    };
    Ok(EhashWallet::open(&WalletConfig {
        mint_url: mint,
        unit: "hash".into(),
        database_path: database_path(dir),
        mnemonic: Some(words),
        mnemonic_path: dir.join(MNEMONIC),
    })
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_a_private_mnemonic_and_never_replaces_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = init(dir.path(), None).unwrap();
        assert_eq!(key.len(), 66, "a compressed public key in hex");
        let mode = std::fs::metadata(dir.path().join(MNEMONIC))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Again: the same key.
        assert_eq!(init(dir.path(), None).unwrap(), key);
        // Restoring other words over it is refused.
        let other = bip39::Mnemonic::generate(12).unwrap().to_string();
        assert!(init(dir.path(), Some(&other)).is_err());
        assert_eq!(init(dir.path(), None).unwrap(), key);
    }

    #[test]
    fn a_new_wallet_directory_is_private_and_an_existing_one_is_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let parent = tempfile::tempdir().unwrap();
        // The directory holds the proofs, the mnemonic and the API token: its owner's alone.
        let dir = parent.path().join("home/.hashpool-wallet");
        init(&dir, None).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let shared = parent.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        init(&shared, None).unwrap();
        assert_eq!(mode(&shared), 0o755, "not changed behind its owner's back");
    }

    #[test]
    fn a_restored_mnemonic_gives_the_same_key_and_bad_words_are_refused() {
        let words = bip39::Mnemonic::generate(12).unwrap().to_string();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = init(a.path(), Some(&words)).unwrap();
        assert_eq!(
            init(b.path(), Some(&format!("  {words}\n"))).unwrap(),
            first
        );
        let c = tempfile::tempdir().unwrap();
        assert!(init(c.path(), Some("not a mnemonic at all")).is_err());
        assert!(!c.path().join(MNEMONIC).exists());
    }

    async fn cli(dir: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let dir = dir.to_str().expect("a UTF-8 path");
        let argv = ["hashpool-wallet", "--dir", dir, "--json"]
            .into_iter()
            .chain(args.iter().copied());
        let mut out = Vec::new();
        run(Cli::try_parse_from(argv)?, &mut out).await?;
        Ok(serde_json::from_slice(&out)?)
    }

    /// Without a mint (nothing listens on the URL): the API still serves the wallet's
    /// directory, with no faucet, its token file private; the claims fail and are retried
    /// without stopping it; other processes cannot change the wallet meanwhile.
    #[tokio::test]
    async fn serve_puts_the_api_on_the_directory_and_holds_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = init(dir.path(), None).unwrap();
        remember_mint(dir.path(), "http://127.0.0.1:1").unwrap();
        let args =
            ServeArgs::from_arg_matches_for(&["--listen", "127.0.0.1:0", "--claim-every", "1"]);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let served = serve(dir.path(), None, &args, shutdown.clone())
            .await
            .unwrap();
        assert_eq!(served.public_key, key);
        assert_eq!(served.token_path, dir.path().join("wallet-api-token"));
        let mode = std::fs::metadata(&served.token_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let token = std::fs::read_to_string(&served.token_path).unwrap();
        let api = format!("http://{}", served.address);
        let http = reqwest::Client::new();

        // Let a claim or two fail against the missing mint: the API keeps answering.
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
        let balance: serde_json::Value = http
            .get(format!("{api}/api/v1/balance"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            balance,
            // No mint here: ehash by epoch cannot be read.
            json!({
                "balance": 0,
                "unit": "hash",
                "sats": 0,
                "epochs": null,
                "locking_key": key,
                "faucet": false
            })
        );
        // Health as every role answers it, with no token.
        let health: serde_json::Value = http
            .get(format!("{api}/api/v1/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (&health["status"], &health["role"]),
            (&json!("ok"), &json!("wallet"))
        );
        let faucet = http
            .post(format!("{api}/api/v1/faucet"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        assert_eq!(faucet.status().as_u16(), 404);
        let body: serde_json::Value = faucet.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("no faucet"),
            "{body}"
        );
        let unauthorized = http
            .post(format!("{api}/api/v1/tokens"))
            .json(&json!({ "amount": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(unauthorized.status().as_u16(), 401);

        // Changing the wallet from another command is refused, naming the server; reading is not.
        let err = cli(dir.path(), &["claim"]).await.unwrap_err().to_string();
        assert!(
            err.contains("in use by `hashpool-wallet serve`")
                && err.contains(&served.address.to_string()),
            "{err}"
        );
        assert!(cli(dir.path(), &["send", "1"]).await.is_err());
        assert_eq!(cli(dir.path(), &["balance"]).await.unwrap()["balance"], 0);
        // A second server on the same directory is refused too.
        let second = ServeArgs::from_arg_matches_for(&["--listen", "127.0.0.1:0"]);
        assert!(serve(dir.path(), None, &second, shutdown.clone())
            .await
            .is_err());

        shutdown.cancel();
        served.task.await.unwrap();
        // Stopped: the directory is free again.
        DirLock::acquire(dir.path(), "test").unwrap();
    }

    impl ServeArgs {
        fn from_arg_matches_for(args: &[&str]) -> Self {
            let argv = ["hashpool-wallet", "serve"]
                .into_iter()
                .chain(args.iter().copied());
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Serve(args) => args,
                other => panic!("parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn serve_defaults_to_the_wallet_api_port_and_a_claim_a_minute() {
        let args = ServeArgs::from_arg_matches_for(&[]);
        assert_eq!(args.listen, "127.0.0.1:8083".parse().unwrap());
        assert_eq!(args.claim_every, 60);
        assert!(args.log_file.is_none());
    }
}
