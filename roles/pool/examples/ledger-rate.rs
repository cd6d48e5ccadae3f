//! The accrual ledger's own rate, without the network or share validation: `WRITERS` ledger
//! instances (each as a pool instance holds it) on one ledger record shares as fast as it
//! commits them, each keeping `WINDOW` shares in flight in bursts of 64 (a connection's frames),
//! for `SECONDS`, the shares spread over `KEYS` locking keys. SQLite (a file, one writer) or PostgreSQL (`LEDGER_URL`, one or more
//! writers sharing it under the ledger's write lock). Prints credited shares/s and the commit
//! count. docs/benchmarks.md has the figures and the commands:
//!
//! ```sh
//! cargo run --release -p pool --example ledger-rate -- [writers] [seconds] [window] [keys]
//! LEDGER_URL=postgres://... cargo run --release -p pool --example ledger-rate -- 2 10 8192
//! ```

use std::time::{Duration, Instant};

use hashpool_ehash::{UnitWork, Work};
use pool::{
    accepted_share::AcceptedShare,
    ledger::{AccrualLedger, LedgerLocation},
};

/// Shares handed to the ledger together (one `record_all`).
const BURST: usize = 64;

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

/// Share `n` of writer `w`: its own hash, one of the keys.
fn share(keys: &[ext_mint_quote::LockingKey], w: u32, n: u64) -> AcceptedShare {
    let mut hash = [0u8; 32];
    hash[..8].copy_from_slice(&n.to_le_bytes());
    hash[8..12].copy_from_slice(&w.to_le_bytes());
    hash[31] = 0x77;
    AcceptedShare {
        channel_id: w + 1,
        locking_key: keys[(n % keys.len() as u64) as usize],
        share_hash: hash,
        work: Work::from_hashes(1u128 << 48),
        block_found: false,
        block: None,
        tip: 1,
    }
}

/// Records shares until `until`, `window` in flight; returns how many were credited.
async fn drive(
    ledger: AccrualLedger,
    keys: std::sync::Arc<Vec<ext_mint_quote::LockingKey>>,
    w: u32,
    window: usize,
    until: Instant,
) -> u64 {
    let mut in_flight = std::collections::VecDeque::new();
    let (mut next, mut credited) = (0u64, 0u64);
    while Instant::now() < until {
        while in_flight.len() * BURST < window {
            let burst: Vec<_> = (0..BURST as u64)
                .map(|i| share(&keys, w, next + i))
                .collect();
            next += BURST as u64;
            in_flight.push_back(ledger.record_all(burst).await);
        }
        if let Some(receipts) = in_flight.pop_front() {
            if let Ok(outcomes) = receipts.await {
                credited += outcomes.iter().filter(|o| **o == Ok(true)).count() as u64;
            }
        }
    }
    for receipts in in_flight {
        if let Ok(outcomes) = receipts.await {
            credited += outcomes.iter().filter(|o| **o == Ok(true)).count() as u64;
        }
    }
    credited
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let writers: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    let seconds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let window: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8_192);
    let key_count: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let dir = tempfile::tempdir()?;
    let location = match std::env::var("LEDGER_URL") {
        Ok(url) => LedgerLocation::Postgres(url),
        Err(_) => {
            anyhow::ensure!(writers == 1, "several writers need LEDGER_URL (PostgreSQL)");
            LedgerLocation::File(dir.path().join("ledger.sqlite"))
        }
    };
    let unit = UnitWork::from_work(Work::from_hashes(1u128 << 58)).map_err(anyhow::Error::msg)?;
    let mut ledgers = Vec::new();
    for _ in 0..writers {
        ledgers.push(AccrualLedger::open(&location, "hash", unit).await?);
    }
    // Derived before the clock starts (a key derivation costs more than a share).
    let keys = std::sync::Arc::new((0..key_count.max(1)).map(key).collect::<Vec<_>>());
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = ledgers
        .iter()
        .enumerate()
        .map(|(w, l)| tokio::spawn(drive(l.clone(), keys.clone(), w as u32, window, until)))
        .collect();
    let mut credited = 0;
    for t in tasks {
        credited += t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let commits: u64 = ledgers
        .iter()
        .map(|l| l.metrics().commit_seconds.count())
        .sum();
    println!(
        "ledger                 {} ({writers} writer{})",
        match location {
            LedgerLocation::File(_) => "SQLite",
            LedgerLocation::Postgres(_) => "PostgreSQL",
        },
        if writers == 1 { "" } else { "s" }
    );
    println!(
        "window                 {window} shares per writer, bursts of {BURST}, {key_count} keys"
    );
    println!("credited shares/s      {:.0}", credited as f64 / elapsed);
    println!(
        "group commits          {commits} ({:.0} shares each)",
        credited as f64 / commits.max(1) as f64
    );
    Ok(())
}
