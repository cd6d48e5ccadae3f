//! The jd-server's refusals: each bad declaration is refused with its error code (and
//! reason), and the connection keeps working.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_declarations_are_refused_with_their_codes_and_the_connection_keeps_working(
) -> anyhow::Result<()> {
    let s = setup().await?;
    let mut c = client(&s).await?;
    let txs: Vec<Transaction> = mempool(&s.rpc_url, 1)
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let fees = {
        let http = reqwest::Client::new();
        let reply: serde_json::Value = http
            .post(&s.rpc_url)
            .json(&serde_json::json!({"id": 1, "method": "getrawmempool", "params": [true]}))
            .send()
            .await?
            .json()
            .await?;
        let txid = txs[0].compute_txid().to_string();
        Amount::from_btc(
            reply["result"][&txid]["fees"]["base"]
                .as_f64()
                .unwrap_or(0.0),
        )?
    };
    let reward = rules::subsidy(1) + fees;
    let good = coinbase(1, pool_outputs(&s.pool_script, reward), &txs);

    // A token nobody allocated.
    c.send(declare(1, &[9u8; 16], &good, &txs)).await?;
    assert_eq!(refusal(&mut c, 1).await?, "invalid-mining-job-token");

    // A token allocated to another connection.
    let mut other = client(&s).await?;
    let (foreign, _) = allocate(&mut other, 1).await?;
    c.send(declare(2, &foreign, &good, &txs)).await?;
    assert_eq!(refusal(&mut c, 2).await?, "invalid-mining-job-token");

    let (token, _) = allocate(&mut c, 3).await?;
    // Each coinbase the pool's rules refuse, with what the details say.
    let elsewhere = ScriptBuf::new_op_return([7u8; 4]);
    let mut head_not_minimal = vec![0x01, 0x01];
    head_not_minimal.extend_from_slice(b"/jdc/");
    let mut head_ok = rules::bip34_prefix(1).into_bytes();
    head_ok.extend_from_slice(b"/jdc/");
    let mut skim = pool_outputs(&s.pool_script, reward);
    skim.push(TxOut {
        value: Amount::from_sat(1),
        script_pubkey: elsewhere.clone(),
    });
    let cases: Vec<(&str, Coinbase, &str, &str)> = vec![
        (
            "the pool's output missing",
            coinbase(1, pool_outputs(&elsewhere, reward), &txs),
            "invalid-coinbase-tx",
            "no output pays the pool's script",
        ),
        (
            "the pool's output one satoshi short",
            coinbase(
                1,
                pool_outputs(&s.pool_script, reward - Amount::from_sat(1)),
                &txs,
            ),
            "invalid-coinbase-tx",
            "the pool's output pays",
        ),
        (
            "the pool's output one satoshi over the reward",
            coinbase(
                1,
                pool_outputs(&s.pool_script, reward + Amount::from_sat(1)),
                &txs,
            ),
            "invalid-coinbase-tx",
            "more than the block's reward",
        ),
        (
            "a satoshi for the miner on top of the pool's reward",
            coinbase(1, skim, &txs),
            "invalid-coinbase-tx",
            "more than the block's reward",
        ),
        (
            "not a transaction",
            Coinbase {
                prefix: vec![1, 2, 3],
                suffix: vec![4, 5, 6],
                ..coinbase(1, vec![], &[])
            },
            "invalid-coinbase-tx",
            "do not make a transaction",
        ),
        (
            "bytes after the extranonce",
            coinbase_from(
                head_ok,
                pool_outputs(&s.pool_script, reward),
                &txs,
                EXTRANONCE,
                b"tail",
            ),
            "invalid-coinbase-tx",
            "extranonce must end",
        ),
        (
            "the height pushed non-minimally",
            coinbase_from(
                head_not_minimal,
                pool_outputs(&s.pool_script, reward),
                &txs,
                EXTRANONCE,
                &[],
            ),
            "invalid-coinbase-tx",
            "minimal push of the next height, 1",
        ),
        (
            "a later height",
            coinbase(5, pool_outputs(&s.pool_script, reward), &txs),
            "invalid-coinbase-tx",
            "minimal push of the next height, 1",
        ),
        (
            "a height the chain has passed",
            coinbase(0, pool_outputs(&s.pool_script, reward), &txs),
            "stale-chain-tip",
            "the next block is 1",
        ),
        (
            "a witness commitment for other transactions",
            coinbase(1, pool_outputs(&s.pool_script, reward), &[]),
            "invalid-coinbase-tx",
            "witness commitment",
        ),
    ];
    for (n, (what, cb, code, details)) in cases.into_iter().enumerate() {
        let request_id = 100 + n as u32;
        c.send(declare(request_id, &token, &cb, &txs)).await?;
        let (got_code, got_details) = refusal_details(&mut c, request_id).await?;
        assert_eq!(got_code, code, "{what}: {got_details}");
        assert!(got_details.contains(details), "{what}: {got_details}");
    }
    // The same transaction twice.
    let twice = vec![txs[0].clone(), txs[0].clone()];
    let cb = coinbase(1, pool_outputs(&s.pool_script, reward), &twice);
    c.send(declare(150, &token, &cb, &twice)).await?;
    let (code, details) = refusal_details(&mut c, 150).await?;
    assert_eq!(code, "invalid-job", "{details}");
    assert!(details.contains("listed twice"), "{details}");

    // An unknown transaction answered with a different one.
    let mut with_own = txs.clone();
    with_own.push(own_transaction(0x43));
    let cb = coinbase(1, pool_outputs(&s.pool_script, reward), &with_own);
    c.send(declare(7, &token, &cb, &with_own)).await?;
    assert!(matches!(
        jd(c.recv(WAIT).await?),
        JobDeclarationOwned::ProvideMissingTransactions(_)
    ));
    c.send(JobDeclarationOwned::ProvideMissingTransactionsSuccess(
        ProvideMissingTransactionsSuccessOwned {
            request_id: 7,
            transaction_list: Seq064KOwned::new(vec![B016MOwned::new(consensus::serialize(
                &own_transaction(0x44),
            ))
            .expect("tx")])
            .expect("list"),
        },
    ))
    .await?;
    assert_eq!(refusal(&mut c, 7).await?, "missing-txs");

    // After every refusal the same token still declares a good job on the same connection.
    c.send(declare(8, &token, &good, &txs)).await?;
    assert!(matches!(
        jd(c.recv(WAIT).await?),
        JobDeclarationOwned::DeclareMiningJobSuccess(_)
    ));

    // Declarations waiting for transactions are bounded per connection (4).
    let mut waiting = txs.clone();
    waiting.push(own_transaction(0x50));
    let cb = coinbase(1, pool_outputs(&s.pool_script, reward), &waiting);
    for n in 0..5u32 {
        let (t, _) = allocate(&mut c, 200 + n).await?;
        c.send(declare(200 + n, &t, &cb, &waiting)).await?;
        if n < 4 {
            assert!(matches!(
                jd(c.recv(WAIT).await?),
                JobDeclarationOwned::ProvideMissingTransactions(_)
            ));
        } else {
            let (code, details) = refusal_details(&mut c, 204).await?;
            assert_eq!(code, "invalid-job", "{details}");
            assert!(details.contains("already wait"), "{details}");
        }
    }

    s.stack.stop().await
}
