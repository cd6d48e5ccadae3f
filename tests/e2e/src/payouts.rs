//! Reading withdrawals' payouts back from the pool's API and the chain, for the tests of
//! withdrawals in the coinbase.

use bitcoin::{
    secp256k1::{rand::thread_rng, Secp256k1},
    Address, BlockHash, CompressedPublicKey, Network, ScriptBuf,
};
use hashpool_bitcoin_rpc::{BitcoinRpc, RpcSettings};
use hashpool_settlement::withdrawals::Payout;

/// A fresh P2WPKH address of `network`, of a key nobody keeps.
pub fn address(network: Network) -> Address {
    let (_, public) = Secp256k1::new().generate_keypair(&mut thread_rng());
    Address::p2wpkh(&CompressedPublicKey(public), network)
}

/// The JSON-RPC client of a node (the template provider's) at `http`.
pub fn node(http: std::net::SocketAddr) -> anyhow::Result<BitcoinRpc> {
    Ok(BitcoinRpc::new(RpcSettings {
        url: format!("http://{http}/"),
        cookie_file: None,
        user: None,
        password: None,
    })?)
}

/// The pool's payout of withdrawal `quote_id` (`api`: `.../api/v1/settlement`); `None` while
/// the pool does not hold it (or does not answer).
pub async fn payout(api: &str, quote_id: &str) -> Option<Payout> {
    let response = reqwest::get(format!("{api}/payouts/{quote_id}"))
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// The blocks of the best chain from height `from` to the tip whose coinbase has an output
/// paying `script` exactly `sats`, once per such output.
pub async fn paid_in_best_chain(
    node: &BitcoinRpc,
    from: u32,
    script: &ScriptBuf,
    sats: u64,
) -> anyhow::Result<Vec<BlockHash>> {
    let (_, tip) = node.chain().await?;
    let mut found = Vec::new();
    for height in from..=tip {
        let Some(hash) = node.block_hash_at(height).await? else {
            break;
        };
        let block = node.block(&hash).await?;
        let Some(coinbase) = block.txdata.first() else {
            anyhow::bail!("block {hash} has no coinbase");
        };
        for out in &coinbase.output {
            if &out.script_pubkey == script && out.value.to_sat() == sats {
                found.push(hash);
            }
        }
    }
    Ok(found)
}

/// Waits (at most `wait`) until the pool's API (`api`: `.../api/v1/settlement`) lists epoch 0
/// final in its signed rates and every batch of it quoted; its rate as (reward sats, ehash).
pub async fn epoch0_final(api: &str, wait: std::time::Duration) -> anyhow::Result<(u64, u64)> {
    let rates = format!("{api}/rates");
    let commitment = format!("{api}/epochs/0");
    let get = |url: String| async move {
        match reqwest::get(url).await {
            Ok(r) => r.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        }
    };
    crate::wait_until(wait, "epoch 0 final, every batch quoted", || async {
        let final0 = get(rates.clone()).await.is_some_and(|s| {
            s["body"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["epoch"] == 0))
        });
        let answered = get(commitment.clone())
            .await
            .is_some_and(|c| c["body"]["unanswered"] == 0);
        final0 && answered
    })
    .await?;
    let sheet = get(rates.clone())
        .await
        .ok_or_else(|| anyhow::anyhow!("{rates} no longer answers"))?;
    let rate = sheet["body"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["epoch"] == 0))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("epoch 0's rate left the sheet"))?;
    match (rate["reward_sats"].as_u64(), rate["ehash"].as_u64()) {
        (Some(reward), Some(ehash)) => Ok((reward, ehash)),
        _ => anyhow::bail!("epoch 0's rate is not two numbers: {rate}"),
    }
}
