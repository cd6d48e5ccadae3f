//! Bytes on disk per accepted share, and the ledger's own rate, over a long run of shares
//! recorded straight into the accrual ledger (no network): `N` shares under `KEYS` keys, a new
//! chain tip every 100,000 shares, batches every 50,000 as the batcher would make them, then
//! every share pruned by retention. docs/benchmarks.md has the figures and the command:
//!
//! ```sh
//! cargo run --release -p pool --example ledger-disk -- 10000000 1000
//! ```

use std::time::{Duration, Instant};

use hashpool_ehash::{UnitWork, Work};
use pool::{
    accepted_share::AcceptedShare,
    ledger::{AccrualLedger, LedgerOptions},
};

/// Receipts awaited together (the share path's in-flight shares).
const WINDOW: usize = 16_384;

fn key(n: u32) -> ext_mint_quote::LockingKey {
    let secp = bitcoin::secp256k1::Secp256k1::signing_only();
    let mut secret = [1u8; 32];
    secret[..4].copy_from_slice(&(n + 1).to_le_bytes());
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&secret).expect("a valid secret");
    ext_mint_quote::LockingKey::from_slice(
        &bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize(),
    )
    .expect("a compressed key")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let shares: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let key_count: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ledger.sqlite");
    // Difficulty 2^16 shares; one ehash per 2^10 of them.
    let share_work = Work::from_hashes(1u128 << 48);
    let unit = UnitWork::from_work(Work::from_hashes(1u128 << 58)).map_err(anyhow::Error::msg)?;
    let options = LedgerOptions {
        retention: Duration::from_secs(3600),
        ..LedgerOptions::default()
    };
    let ledger = AccrualLedger::open_with(&path, "hash", unit, options).await?;
    let keys: Vec<_> = (0..key_count).map(key).collect();
    let empty = ledger.bytes_on_disk().await?;
    let started = Instant::now();
    let mut receipts = Vec::with_capacity(WINDOW);
    let mut batches = 0usize;
    for n in 0..shares {
        let mut hash: [u8; 32] = rand::random();
        hash[28..].fill(0);
        let share = AcceptedShare {
            channel_id: (n % 4096) as u32 + 1,
            locking_key: keys[(n % u64::from(key_count)) as usize],
            share_hash: hash,
            work: share_work,
            block_found: false,
            block: None,
            tip: (n / 100_000) as i64 + 1,
        };
        receipts.push(ledger.record(share).await);
        if receipts.len() == WINDOW {
            for r in receipts.drain(..) {
                anyhow::ensure!(r.await? == Ok(true), "a share was not credited");
            }
        }
        if n % 50_000 == 49_999 {
            batches += ledger.create_batches().await?.len();
        }
    }
    for r in receipts.drain(..) {
        anyhow::ensure!(r.await? == Ok(true), "a share was not credited");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let used = ledger.bytes_on_disk().await? - empty;
    println!(
        "{shares} shares under {key_count} keys in {elapsed:.1} s ({:.0} shares/s), {batches} batches",
        shares as f64 / elapsed
    );
    println!(
        "ledger: {used} bytes of database pages beyond an empty ledger: {:.1} bytes per share",
        used as f64 / shares as f64
    );
    // Retention with every row outside the window: the share records go, totals stay.
    let pruned_started = Instant::now();
    let mut pruned = 0u64;
    loop {
        let pass = ledger.prune(i64::MAX).await?;
        pruned += pass.shares;
        if !pass.more {
            break;
        }
    }
    let live = ledger.live_bytes().await?;
    println!(
        "pruned {pruned} shares in {:.1} s; pages in use afterwards: {live} bytes (the file keeps \
         its freed pages for reuse)",
        pruned_started.elapsed().as_secs_f64()
    );
    let mut total = Work::ZERO;
    for k in &keys {
        if let Some(a) = ledger.accrual(k).await? {
            total = total
                .checked_add(a.total)
                .ok_or_else(|| anyhow::anyhow!("overflow"))?;
        }
    }
    anyhow::ensure!(
        total.hashes() == share_work.hashes() * u128::from(shares),
        "accrued work differs from the shares recorded"
    );
    println!("accrued work equals the shares recorded, after pruning");
    Ok(())
}
