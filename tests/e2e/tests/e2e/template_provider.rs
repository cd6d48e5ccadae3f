//! The template provider as any Template Distribution client sees it.

use std::time::Duration;

use binary_sv2::U256Owned;
use common_messages_sv2::Protocol;
use hashpool_e2e::{
    init_tracing, loopback_any_port, public_key,
    raw_client::{setup_connection, RawClient},
    wait_until, TestProvider, REGTEST_NBITS,
};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, TemplateDistributionOwned};
use template_distribution_sv2::{CoinbaseOutputConstraints, RequestTransactionData};

const WAIT: Duration = Duration::from_secs(10);

fn tdp(m: AnyMessageOwned) -> TemplateDistributionOwned {
    match m {
        AnyMessageOwned::TemplateDistribution(t) => t,
        other => panic!("expected a template distribution message, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_templates_tips_and_transaction_data() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(dir.path(), loopback_any_port(), REGTEST_NBITS, 50).await?;
    // A few synthetic transactions first, so the first template carries fees.
    wait_until(WAIT, "synthetic transactions in the mempool", || async {
        tp.status().await.is_ok_and(|s| s.mempool_size >= 3)
    })
    .await?;
    let mut c = RawClient::connect(tp.running.listen_address, Some(public_key())).await?;
    c.send(CommonMessagesOwned::SetupConnection(setup_connection(
        Protocol::TemplateDistributionProtocol,
    )))
    .await?;
    assert!(matches!(
        c.recv(WAIT).await?,
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(_))
    ));
    c.send(TemplateDistributionOwned::CoinbaseOutputConstraints(
        CoinbaseOutputConstraints {
            coinbase_output_max_additional_size: 100,
            coinbase_output_max_additional_sigops: 4,
        },
    ))
    .await?;
    let TemplateDistributionOwned::NewTemplate(t) = tdp(c.recv(WAIT).await?) else {
        panic!("expected NewTemplate first")
    };
    assert!(t.future_template);
    assert_eq!(t.coinbase_prefix.as_bytes(), &[0x51], "BIP34 height 1");
    assert!(
        t.coinbase_tx_value_remaining > 5_000_000_000,
        "subsidy plus fees"
    );
    let TemplateDistributionOwned::SetNewPrevHash(p) = tdp(c.recv(WAIT).await?) else {
        panic!("expected SetNewPrevHash after the future template")
    };
    assert_eq!(p.template_id, t.template_id);
    assert_eq!(p.n_bits, REGTEST_NBITS);
    let genesis: [u8; 32] = {
        use bitcoin::hashes::Hash;
        bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest)
            .block_hash()
            .to_byte_array()
    };
    assert_eq!(p.prev_hash, U256Owned::from(genesis));

    c.send(TemplateDistributionOwned::RequestTransactionData(
        RequestTransactionData {
            template_id: t.template_id,
        },
    ))
    .await?;
    let data = c
        .recv_until(WAIT, |m| match m {
            AnyMessageOwned::TemplateDistribution(
                TemplateDistributionOwned::RequestTransactionDataSuccess(s),
            ) => Some(s.clone()),
            _ => None,
        })
        .await?;
    assert_eq!(data.template_id, t.template_id);
    let fees = t.coinbase_tx_value_remaining - 5_000_000_000;
    assert_eq!(
        data.transaction_list.len() as u64 * 1_000,
        fees,
        "1000 sat per synthetic tx"
    );
    assert!(!data.transaction_list.is_empty());

    c.send(TemplateDistributionOwned::RequestTransactionData(
        RequestTransactionData { template_id: 3 },
    ))
    .await?;
    let code = c
        .recv_until(WAIT, |m| match m {
            AnyMessageOwned::TemplateDistribution(
                TemplateDistributionOwned::RequestTransactionDataError(e),
            ) => Some(String::from_utf8_lossy(e.error_code.as_bytes()).into_owned()),
            _ => None,
        })
        .await?;
    assert_eq!(code, "template-id-not-found");

    // Mempool changes bring templates for the current tip (future = false).
    let later = c
        .recv_until(WAIT, |m| match m {
            AnyMessageOwned::TemplateDistribution(TemplateDistributionOwned::NewTemplate(n)) => {
                Some(n.clone())
            }
            _ => None,
        })
        .await?;
    assert!(!later.future_template);
    assert!(later.template_id > t.template_id);

    // A client of another protocol is refused.
    let mut other = RawClient::connect(tp.running.listen_address, Some(public_key())).await?;
    other
        .send(CommonMessagesOwned::SetupConnection(setup_connection(
            Protocol::MiningProtocol,
        )))
        .await?;
    assert!(matches!(
        other.recv(WAIT).await?,
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionError(_))
    ));
    tp.stop().await?;
    Ok(())
}

/// A block on `tip` at `height` paying the subsidy plus `fees`, with `txs`, its proof of work
/// solved (regtest: about every second nonce).
fn mine(
    tip: bitcoin::BlockHash,
    height: u32,
    time: u32,
    txs: Vec<bitcoin::Transaction>,
    fees: bitcoin::Amount,
) -> bitcoin::Block {
    use bitcoin::{
        absolute::LockTime, block::Header, transaction::Version, CompactTarget, OutPoint,
        ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
    };
    use template_provider::chain::rules;
    let mut all = vec![Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: {
                let mut s = rules::bip34_prefix(height).into_bytes();
                s.extend_from_slice(b"rpc-test");
                ScriptBuf::from_bytes(s)
            },
            sequence: Sequence::MAX,
            witness: Witness::from(vec![vec![0u8; 32]]),
        }],
        output: vec![TxOut {
            value: rules::subsidy(height) + fees,
            script_pubkey: ScriptBuf::new_op_return([1u8; 4]),
        }],
    }];
    // The commitment covers the transactions after the coinbase.
    all[0].output.push(rules::witness_commitment_output(&txs));
    all.extend(txs);
    let mut block = bitcoin::Block {
        header: Header {
            version: bitcoin::block::Version::from_consensus(0x2000_0000),
            prev_blockhash: tip,
            merkle_root: rules::merkle_root(&all).expect("transactions"),
            time,
            bits: CompactTarget::from_consensus(REGTEST_NBITS),
            nonce: 0,
        },
        txdata: all,
    };
    let target = block.header.target();
    while !target.is_met_by(block.block_hash()) {
        block.header.nonce += 1;
    }
    block
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_serves_the_bitcoin_core_subset_a_job_declarator_needs() -> anyhow::Result<()> {
    use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(dir.path(), loopback_any_port(), REGTEST_NBITS, 50).await?;
    let url = format!("http://{}/", tp.running.http_address);
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + WAIT;
    let mempool = loop {
        let r = tp.rpc("getrawmempool", serde_json::json!([true])).await?;
        let entries = r["result"].as_object().cloned().unwrap_or_default();
        if entries.len() >= 2 {
            break entries;
        }
        assert!(std::time::Instant::now() < deadline, "no mempool: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let info = tp.rpc("getblockchaininfo", serde_json::json!([])).await?;
    assert_eq!(info["result"]["chain"], "regtest");
    assert_eq!(info["result"]["blocks"], 0);
    let tip: bitcoin::BlockHash = info["result"]["bestblockhash"]
        .as_str()
        .expect("hash")
        .parse()?;
    let best = tp.rpc("getbestblockhash", serde_json::json!([])).await?;
    assert_eq!(best["result"], tip.to_string());

    // Every mempool transaction, fetched by txid, hashes to its txid and wtxid.
    let mut txs = Vec::new();
    let mut fees = bitcoin::Amount::ZERO;
    for (txid, entry) in &mempool {
        let raw = tp
            .rpc("getrawtransaction", serde_json::json!([txid]))
            .await?;
        let tx: bitcoin::Transaction = deserialize_hex(raw["result"].as_str().expect("hex"))?;
        assert_eq!(&tx.compute_txid().to_string(), txid);
        assert_eq!(entry["wtxid"], tx.compute_wtxid().to_string());
        fees += bitcoin::Amount::from_btc(entry["fees"]["base"].as_f64().expect("fee"))?;
        txs.push(tx);
    }
    let plain = tp.rpc("getrawmempool", serde_json::json!([])).await?;
    assert!(plain["result"]
        .as_array()
        .is_some_and(|l| l.len() >= mempool.len()));

    // Refusals, with bitcoind's codes.
    let unknown = tp
        .rpc("getrawtransaction", serde_json::json!(["00".repeat(32)]))
        .await?;
    assert_eq!(unknown["error"]["code"], -5, "{unknown}");
    let bad = tp
        .rpc("getrawtransaction", serde_json::json!(["xyz"]))
        .await?;
    assert_eq!(bad["error"]["code"], -8, "{bad}");
    let nope = tp.rpc("sendtoaddress", serde_json::json!([])).await?;
    assert_eq!(nope["error"]["code"], -32601, "{nope}");
    let garbage: serde_json::Value = http
        .post(&url)
        .body("{not json")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(garbage["error"]["code"], -32700, "{garbage}");
    let undecodable = tp.rpc("submitblock", serde_json::json!(["00ff"])).await?;
    assert_eq!(undecodable["error"]["code"], -22, "{undecodable}");

    // A block with the mempool's transactions, its fees claimed: connected.
    let time = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()) as u32;
    let block = mine(tip, 1, time, txs.clone(), fees);
    let submitted = tp
        .rpc("submitblock", serde_json::json!([serialize_hex(&block)]))
        .await?;
    assert!(
        submitted["result"].is_null() && submitted["error"].is_null(),
        "{submitted}"
    );
    let count = tp.rpc("getblockcount", serde_json::json!([])).await?;
    assert_eq!(count["result"], 1);
    let status = tp.status().await?;
    assert_eq!(status.tip, block.block_hash().to_string());
    // Its transactions left the mempool and are now found in the chain.
    let after = tp.rpc("getrawmempool", serde_json::json!([])).await?;
    for tx in &txs {
        let txid = tx.compute_txid().to_string();
        assert!(!after["result"]
            .as_array()
            .expect("list")
            .iter()
            .any(|t| t == &txid));
        let found = tp
            .rpc("getrawtransaction", serde_json::json!([txid]))
            .await?;
        assert!(found["error"].is_null(), "{found}");
    }

    // The same block again; one on an old tip; one claiming more than it may; bad proof of work.
    let again = tp
        .rpc("submitblock", serde_json::json!([serialize_hex(&block)]))
        .await?;
    assert_eq!(again["result"], "duplicate");
    let stale = mine(tip, 1, time + 1, vec![], bitcoin::Amount::ZERO);
    let r = tp
        .rpc("submitblock", serde_json::json!([serialize_hex(&stale)]))
        .await?;
    assert_eq!(r["result"], "inconclusive");
    let greedy = mine(
        block.block_hash(),
        2,
        time + 1,
        vec![],
        bitcoin::Amount::from_sat(1),
    );
    let r = tp
        .rpc("submitblock", serde_json::json!([serialize_hex(&greedy)]))
        .await?;
    assert_eq!(r["result"], "bad-cb-amount");
    let mut weak = mine(
        block.block_hash(),
        2,
        time + 1,
        vec![],
        bitcoin::Amount::ZERO,
    );
    while weak.header.target().is_met_by(weak.block_hash()) {
        weak.header.nonce += 1;
    }
    let r = tp
        .rpc("submitblock", serde_json::json!([serialize_hex(&weak)]))
        .await?;
    assert_eq!(r["result"], "high-hash");
    assert_eq!(tp.status().await?.height, 1);
    tp.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_generates_reports_confirmations_and_reorgs_as_regtest_bitcoind(
) -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(dir.path(), loopback_any_port(), REGTEST_NBITS, 0).await?;
    let http = reqwest::Client::new();
    let address = bitcoin::Address::p2wsh(
        &bitcoin::ScriptBuf::new_op_return([5u8; 4]),
        bitcoin::KnownHrp::Regtest,
    );

    let r = tp
        .rpc(
            "generatetoaddress",
            serde_json::json!([3, address.to_string()]),
        )
        .await?;
    let hashes: Vec<String> = serde_json::from_value(r["result"].clone())?;
    assert_eq!(hashes.len(), 3);
    assert_eq!(tp.status().await?.height, 3);
    let r = tp.rpc("getblockhash", serde_json::json!([1])).await?;
    assert_eq!(r["result"], hashes[0]);
    let header = tp
        .rpc("getblockheader", serde_json::json!([hashes[0]]))
        .await?;
    assert_eq!(header["result"]["confirmations"], 3);
    assert_eq!(header["result"]["height"], 1);
    assert_eq!(header["result"]["nextblockhash"], hashes[1]);
    // The coinbase pays the address.
    let block: serde_json::Value = http
        .get(format!("http://{}/blocks/1", tp.running.http_address))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(block["coinbase_value_sats"], 5_000_000_000u64);
    assert_eq!(block["hash"], hashes[0]);

    // A reorg: the second block and the third leave the best chain, a new second comes.
    let r = tp
        .rpc("invalidateblock", serde_json::json!([hashes[1]]))
        .await?;
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(tp.status().await?.height, 1);
    for stale in &hashes[1..] {
        let h = tp.rpc("getblockheader", serde_json::json!([stale])).await?;
        assert_eq!(h["result"]["confirmations"], -1, "{h}");
    }
    let r = tp
        .rpc(
            "generatetoaddress",
            serde_json::json!([1, address.to_string()]),
        )
        .await?;
    let replacement = r["result"][0].as_str().unwrap_or_default().to_string();
    assert_ne!(replacement, hashes[1]);
    let header = tp
        .rpc("getblockheader", serde_json::json!([hashes[0]]))
        .await?;
    assert_eq!(header["result"]["confirmations"], 2);
    assert_eq!(header["result"]["nextblockhash"], replacement);

    // Refusals, with Bitcoin Core's codes.
    let unknown = "11".repeat(32);
    let r = tp
        .rpc("getblockheader", serde_json::json!([unknown]))
        .await?;
    assert_eq!(r["error"]["code"], -5);
    let r = tp
        .rpc("invalidateblock", serde_json::json!([unknown]))
        .await?;
    assert_eq!(r["error"]["code"], -5);
    let r = tp.rpc("getblockhash", serde_json::json!([99])).await?;
    assert_eq!(r["error"]["code"], -8);
    let mainnet = bitcoin::Address::p2wsh(
        &bitcoin::ScriptBuf::new_op_return([5u8; 4]),
        bitcoin::KnownHrp::Mainnet,
    );
    let r = tp
        .rpc(
            "generatetoaddress",
            serde_json::json!([1, mainnet.to_string()]),
        )
        .await?;
    assert_eq!(r["error"]["code"], -5);
    let r = tp
        .rpc(
            "generatetoaddress",
            serde_json::json!([1_000_000, address.to_string()]),
        )
        .await?;
    assert_eq!(r["error"]["code"], -8);
    assert_eq!(tp.status().await?.height, 2);
    tp.stop().await
}
