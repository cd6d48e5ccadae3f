//! `hashpool-wallet`: a miner's ehash wallet on the command line. Its directory holds the
//! mnemonic (0600), the wallet database and the mint's URL; its public key is what a miner
//! puts in the SV1 username (`<key>.<worker>`) or SV2 identity, and `claim` mints every quote
//! the mint holds for that key (through the signed lookup), so nothing is lost while the
//! wallet is away. Every command answers in JSON with `--json`.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hashpool_wallet::{EhashWallet, WalletConfig};
use serde_json::json;

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
    #[command(flatten)]
    Wallet(WalletCommand),
}

/// What needs the mint.
#[derive(Subcommand, Debug)]
pub enum WalletCommand {
    /// Mints every quote the mint holds for this key that is not minted yet.
    Claim,
    Balance,
    /// The latest quotes minted into this wallet.
    History {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Prints a `cashuB` token of AMOUNT from this wallet.
    Send {
        amount: u64,
    },
    /// Receives a token into this wallet.
    Receive {
        token: String,
    },
}

const MNEMONIC: &str = "mnemonic";
const MINT_URL: &str = "mint-url";

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
        Command::Wallet(command) => command,
    };
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
            answer(
                out,
                json_out,
                json!({ "balance": balance }),
                &format!("{balance} hash"),
            )
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
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
        database_path: dir.join("wallet.sqlite"),
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
}
