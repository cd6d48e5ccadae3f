//! The jd-server against a bare job declarator client, on the template provider's chain and
//! its JSON-RPC: tokens, declarations with mempool and unknown transactions, the pool's
//! coinbase rules, refusals with their error codes on a connection that keeps working, and a
//! pushed solution whose block (with the client's transactions) the chain connects.

use std::time::Duration;

use binary_sv2::{B016MOwned, B0255Owned, B032Owned, B064KOwned, Seq064KOwned, U256Owned};
use bitcoin::{
    absolute::LockTime,
    block::{Header, Version as BlockVersion},
    consensus,
    hashes::Hash,
    transaction::Version,
    Amount, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
    Txid, Witness,
};
use common_messages_sv2::Protocol;
use hashpool_e2e::{
    init_tracing, jd_server_config, public_key,
    raw_client::{setup_connection, RawClient},
    Running, Stack, REGTEST_NBITS,
};
use hashpool_job_declaration::{coinbase_merkle_path, JobCommitment, JobToken};
use job_declaration_sv2::{
    AllocateMiningJobTokenOwned, DeclareMiningJobOwned, ProvideMissingTransactionsSuccessOwned,
    PushSolutionOwned,
};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, JobDeclarationOwned};
use template_provider::chain::rules;

mod pool;
mod refusals;

const WAIT: Duration = Duration::from_secs(10);
const EXTRANONCE: usize = 16;

/// The chain (new mempool transactions every 50 ms), the jd-server on it and a pool that takes
/// its job tokens; what the jd-server was configured with.
struct Setup {
    stack: Running,
    rpc_url: String,
    pool_script: ScriptBuf,
}

async fn setup() -> anyhow::Result<Setup> {
    init_tracing();
    let stack = Stack::new()
        .mempool_tx_every_ms(50)
        .with_jd_server()
        .start()
        .await?;
    let config = jd_server_config(stack.jd_server().address(), &stack.tp)?;
    Ok(Setup {
        rpc_url: config.rpc.url,
        pool_script: config.pool_script,
        stack,
    })
}

async fn client(s: &Setup) -> anyhow::Result<RawClient> {
    let mut c = RawClient::connect(s.stack.jd_server().address(), Some(public_key())).await?;
    c.send(CommonMessagesOwned::SetupConnection(setup_connection(
        Protocol::JobDeclarationProtocol,
    )))
    .await?;
    match c.recv(WAIT).await? {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(_)) => Ok(c),
        other => anyhow::bail!("expected SetupConnection.Success, got {other}"),
    }
}

fn jd(m: AnyMessageOwned) -> JobDeclarationOwned {
    match m {
        AnyMessageOwned::JobDeclaration(j) => j,
        other => panic!("expected a job declaration message, got {other}"),
    }
}

async fn allocate(c: &mut RawClient, request_id: u32) -> anyhow::Result<(Vec<u8>, Vec<TxOut>)> {
    c.send(JobDeclarationOwned::AllocateMiningJobToken(
        AllocateMiningJobTokenOwned {
            user_identifier: hashpool_sv2_io::str0255("jdc-test"),
            request_id,
        },
    ))
    .await?;
    match jd(c.recv(WAIT).await?) {
        JobDeclarationOwned::AllocateMiningJobTokenSuccess(s) => {
            assert_eq!(s.request_id, request_id);
            let outputs: Vec<TxOut> = consensus::deserialize(s.coinbase_outputs.as_ref())?;
            Ok((s.mining_job_token.as_ref().to_vec(), outputs))
        }
        other => anyhow::bail!("expected AllocateMiningJobToken.Success, got {other}"),
    }
}

/// The mempool as the node reports it: (tx, fee) in its order.
async fn mempool(rpc_url: &str, at_least: usize) -> anyhow::Result<Vec<(Transaction, Amount)>> {
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let reply: serde_json::Value = http
            .post(rpc_url)
            .json(&serde_json::json!({"id": 1, "method": "getrawmempool", "params": [true]}))
            .send()
            .await?
            .json()
            .await?;
        let entries = reply["result"].as_object().cloned().unwrap_or_default();
        if entries.len() >= at_least {
            let mut out = Vec::new();
            for (txid, entry) in entries.iter().take(at_least) {
                let raw: serde_json::Value = http
                    .post(rpc_url)
                    .json(&serde_json::json!({"id": 1, "method": "getrawtransaction", "params": [txid]}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let tx: Transaction =
                    consensus::encode::deserialize_hex(raw["result"].as_str().unwrap_or(""))?;
                let fee = Amount::from_btc(entry["fees"]["base"].as_f64().unwrap_or(0.0))?;
                out.push((tx, fee));
            }
            return Ok(out);
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "mempool stayed small");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A transaction the node has never seen (the client's own choice).
fn own_transaction(tag: u8) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([tag; 32]), 1),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from(vec![vec![tag; 8]]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: ScriptBuf::new_op_return([tag; 8]),
        }],
    }
}

/// A declared job's coinbase, split at its extranonce.
struct Coinbase {
    tx: Transaction,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    script_sig_prefix: Vec<u8>,
}

fn coinbase(height: u32, outputs: Vec<TxOut>, txs: &[Transaction]) -> Coinbase {
    coinbase_with(height, outputs, txs, EXTRANONCE)
}

/// The same with an extranonce of `extranonce_len` bytes (a pool channel's prefix and the
/// miner's part).
fn coinbase_with(
    height: u32,
    outputs: Vec<TxOut>,
    txs: &[Transaction],
    extranonce_len: usize,
) -> Coinbase {
    let mut head = rules::bip34_prefix(height).into_bytes();
    head.extend_from_slice(b"/jdc/");
    coinbase_from(head, outputs, txs, extranonce_len, &[])
}

/// Any scriptSig head, and bytes after the extranonce.
fn coinbase_from(
    head: Vec<u8>,
    outputs: Vec<TxOut>,
    txs: &[Transaction],
    extranonce_len: usize,
    tail: &[u8],
) -> Coinbase {
    let mut sig = head.clone();
    sig.extend(std::iter::repeat_n(0xEE, extranonce_len));
    sig.extend_from_slice(tail);
    let mut outputs = outputs;
    outputs.push(rules::witness_commitment_output(txs));
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(sig),
            sequence: Sequence::MAX,
            witness: Witness::from(vec![vec![0u8; 32]]),
        }],
        output: outputs,
    };
    let bytes = consensus::serialize(&tx);
    let at = bytes
        .windows(extranonce_len)
        .position(|w| w.iter().all(|b| *b == 0xEE))
        .expect("extranonce in the coinbase");
    Coinbase {
        prefix: bytes[..at].to_vec(),
        suffix: bytes[at + extranonce_len..].to_vec(),
        script_sig_prefix: head,
        tx,
    }
}

fn declare(
    request_id: u32,
    token: &[u8],
    cb: &Coinbase,
    txs: &[Transaction],
) -> JobDeclarationOwned {
    let wtxids: Vec<U256Owned> = txs
        .iter()
        .map(|t| U256Owned::from(t.compute_wtxid().to_byte_array()))
        .collect();
    JobDeclarationOwned::DeclareMiningJob(DeclareMiningJobOwned {
        request_id,
        mining_job_token: B0255Owned::new(token.to_vec()).expect("token"),
        version: 0x2000_0000,
        coinbase_tx_prefix: B064KOwned::new(cb.prefix.clone()).expect("prefix"),
        coinbase_tx_suffix: B064KOwned::new(cb.suffix.clone()).expect("suffix"),
        wtxid_list: Seq064KOwned::new(wtxids).expect("wtxids"),
        excess_data: B064KOwned::new(Vec::new()).expect("empty"),
    })
}

/// DeclareMiningJob.Error's code, after checking it answers `request_id`.
async fn refusal(c: &mut RawClient, request_id: u32) -> anyhow::Result<String> {
    Ok(refusal_details(c, request_id).await?.0)
}

/// DeclareMiningJob.Error's code and details.
async fn refusal_details(c: &mut RawClient, request_id: u32) -> anyhow::Result<(String, String)> {
    match jd(c.recv(WAIT).await?) {
        JobDeclarationOwned::DeclareMiningJobError(e) => {
            assert_eq!(e.request_id, request_id);
            Ok((
                hashpool_sv2_io::text(&e.error_code),
                String::from_utf8_lossy(e.error_details.as_ref()).into_owned(),
            ))
        }
        other => anyhow::bail!("expected DeclareMiningJob.Error, got {other}"),
    }
}

fn pool_outputs(script: &ScriptBuf, value: Amount) -> Vec<TxOut> {
    vec![TxOut {
        value,
        script_pubkey: script.clone(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_job_with_its_own_transactions_is_accepted_and_its_block_connects(
) -> anyhow::Result<()> {
    let s = setup().await?;
    let mut c = client(&s).await?;
    let (token, required) = allocate(&mut c, 1).await?;
    assert_eq!(token.len(), 16);
    assert_eq!(required.len(), 1);
    assert_eq!(
        required[0].script_pubkey, s.pool_script,
        "the pool's script is required"
    );

    // Two transactions from the node's mempool and one of the client's own.
    let from_mempool = mempool(&s.rpc_url, 2).await?;
    let fees: Amount = from_mempool.iter().map(|(_, f)| *f).sum();
    let mut txs: Vec<Transaction> = from_mempool.into_iter().map(|(t, _)| t).collect();
    let own = own_transaction(0x42);
    txs.push(own.clone());
    let reward = rules::subsidy(1) + fees;
    let cb = coinbase(1, pool_outputs(&s.pool_script, reward), &txs);
    c.send(declare(7, &token, &cb, &txs)).await?;

    // The unknown one is asked for, by position.
    match jd(c.recv(WAIT).await?) {
        JobDeclarationOwned::ProvideMissingTransactions(p) => {
            assert_eq!(p.request_id, 7);
            assert_eq!(
                p.unknown_tx_position_list
                    .iter()
                    .copied()
                    .collect::<Vec<u16>>(),
                vec![2]
            );
        }
        other => anyhow::bail!("expected ProvideMissingTransactions, got {other}"),
    }
    c.send(JobDeclarationOwned::ProvideMissingTransactionsSuccess(
        ProvideMissingTransactionsSuccessOwned {
            request_id: 7,
            transaction_list: Seq064KOwned::new(vec![
                B016MOwned::new(consensus::serialize(&own)).expect("tx")
            ])
            .expect("list"),
        },
    ))
    .await?;
    let job_token = match jd(c.recv(WAIT).await?) {
        JobDeclarationOwned::DeclareMiningJobSuccess(ok) => {
            assert_eq!(ok.request_id, 7);
            ok.new_mining_job_token.as_ref().to_vec()
        }
        other => anyhow::bail!("expected DeclareMiningJob.Success, got {other}"),
    };

    // The pool can check the token against the job it will be sent, with the jd-server's
    // public key alone; another job under it is refused.
    let txids: Vec<Txid> = txs.iter().map(|t| t.compute_txid()).collect();
    let path = coinbase_merkle_path(&txids);
    let commitment = JobCommitment::new(
        0x2000_0000,
        2,
        &cb.script_sig_prefix,
        EXTRANONCE,
        u32::MAX,
        &cb.tx.output,
        0,
        &path,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let jds_key = public_key().into_bytes();
    JobToken::verify(&job_token, &jds_key, &commitment, now)?;
    let other_job = JobCommitment::new(
        0x2000_0000,
        2,
        &cb.script_sig_prefix,
        EXTRANONCE,
        u32::MAX,
        &cb.tx.output,
        0,
        &path[1..],
    );
    assert!(JobToken::verify(&job_token, &jds_key, &other_job, now).is_err());

    // The same allocation token again: refused, and the connection keeps working.
    c.send(declare(8, &token, &cb, &txs)).await?;
    assert_eq!(refusal(&mut c, 8).await?, "invalid-mining-job-token");

    // A solution for the job: the jd-server rebuilds the block and the node connects it.
    let tip: BlockHash = s.stack.tp.status().await?.tip.parse()?;
    let extranonce = [0x5Au8; EXTRANONCE];
    let full: Transaction = consensus::deserialize(
        &[cb.prefix.as_slice(), &extranonce, cb.suffix.as_slice()].concat(),
    )?;
    let mut all = vec![full];
    all.extend(txs.iter().cloned());
    let merkle_root =
        bitcoin::merkle_tree::calculate_root(all.iter().map(|t| t.compute_txid())).expect("txs");
    let ntime = now as u32;
    let mut header = Header {
        version: BlockVersion::from_consensus(0x2000_0000),
        prev_blockhash: tip,
        merkle_root: merkle_root.to_raw_hash().into(),
        time: ntime,
        bits: CompactTarget::from_consensus(REGTEST_NBITS),
        nonce: 0,
    };
    while !header.target().is_met_by(header.block_hash()) {
        header.nonce += 1;
    }
    c.send(JobDeclarationOwned::PushSolution(PushSolutionOwned {
        extranonce: B032Owned::new(extranonce.to_vec()).expect("extranonce"),
        prev_hash: U256Owned::from(tip.to_byte_array()),
        nonce: header.nonce,
        ntime,
        nbits: REGTEST_NBITS,
        version: 0x2000_0000,
    }))
    .await?;
    let deadline = std::time::Instant::now() + WAIT;
    while s.stack.tp.status().await?.height < 1 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the block never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let block: template_provider::http::BlockResponse = reqwest::get(format!(
        "http://{}/blocks/1",
        s.stack.tp.running.http_address
    ))
    .await?
    .json()
    .await?;
    assert_eq!(block.hash, header.block_hash().to_string());
    for txid in &txids {
        assert!(
            block.txids.contains(&txid.to_string()),
            "{txid} in the block"
        );
    }
    assert!(
        block.txids.contains(&own.compute_txid().to_string()),
        "the client's own transaction is in the chain"
    );

    // What the jd-server's metrics say of it: this connection, its two tokens, one job
    // accepted and one refused by code, one block the node took; and its health.
    let metrics = s
        .stack
        .jd_server()
        .running
        .metrics_address
        .expect("the test jd-server serves metrics");
    // The block is counted once the node's answer to submitblock is back, which may be just
    // after the chain shows it.
    let scrape = || async {
        reqwest::get(format!("http://{metrics}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await
    };
    hashpool_e2e::wait_until(
        WAIT,
        "the block counted in the jd-server's metrics",
        || async {
            scrape().await.is_ok_and(|t| {
                hashpool_e2e::metric_value(
                    &t,
                    r#"hashpool_jd_server_blocks_total{result="accepted"}"#,
                )
                .is_some()
            })
        },
    )
    .await?;
    let text = scrape().await?;
    assert_eq!(
        hashpool_e2e::promtool_check(&text)?,
        Vec::<String>::new(),
        "{text}"
    );
    let value = |name: &str| hashpool_e2e::metric_value(&text, name);
    assert_eq!(value("hashpool_jd_server_connections"), Some(1.0), "{text}");
    assert!(value("hashpool_jd_server_tokens_allocated_total").is_some_and(|v| v >= 1.0));
    assert_eq!(
        value(r#"hashpool_jd_server_declarations_total{result="accepted"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(r#"hashpool_jd_server_declarations_total{result="invalid-mining-job-token"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(r#"hashpool_jd_server_blocks_total{result="accepted"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains(r#"role="jd-server""#) && text.contains("hashpool_build_info{"),
        "{text}"
    );
    let health: serde_json::Value = reqwest::get(format!("http://{metrics}/api/v1/health"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(health["role"], "jd-server");

    s.stack.stop().await
}
