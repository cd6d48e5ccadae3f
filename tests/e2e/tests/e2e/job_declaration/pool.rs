//! The pool's side of declared jobs: custom jobs set only with the jd-server's job tokens,
//! and their shares credited.

use super::*;

/// The pool: a custom job is set only with the job token of a job the jd-server accepted, each
/// token once; shares on it are validated and accrue to the channel's key exactly as on pool
/// jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_sets_only_declared_jobs_and_credits_their_shares() -> anyhow::Result<()> {
    use bitcoin::Target;
    use hashpool_e2e::test_key;
    use mining_sv2::{
        OpenExtendedMiningChannelOwned, SetCustomMiningJobOwned, SubmitSharesExtendedOwned,
    };
    use parsers_sv2::MiningOwned;

    let s = setup().await?;
    let pool = &s.stack.pool;
    pool.wait_for_work(WAIT).await?;

    // The jd-client's channel on the pool, its ehash locked to its key.
    let key = test_key("jdc");
    let mut m = RawClient::connect(pool.address(), Some(public_key())).await?;
    m.send(CommonMessagesOwned::SetupConnection(setup_connection(
        Protocol::MiningProtocol,
    )))
    .await?;
    m.recv(WAIT).await?;
    m.send(MiningOwned::OpenExtendedMiningChannel(
        OpenExtendedMiningChannelOwned {
            request_id: 1,
            user_identity: hashpool_sv2_io::str0255(&key.to_hex()),
            nominal_hash_rate: 1_000.0,
            max_target: U256Owned::from([0xff; 32]),
            min_extranonce_size: 8,
        },
    ))
    .await?;
    let channel = m
        .recv_until(WAIT, |msg| match msg {
            AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannelSuccess(s)) => {
                Some(s.clone())
            }
            _ => None,
        })
        .await?;
    let tip = m
        .recv_until(WAIT, |msg| match msg {
            AnyMessageOwned::Mining(MiningOwned::SetNewPrevHash(p)) => Some(p.clone()),
            _ => None,
        })
        .await?;

    // The job: mempool transactions, the whole reward to the pool.
    let from_mempool = mempool(&s.rpc_url, 2).await?;
    let fees: Amount = from_mempool.iter().map(|(_, f)| *f).sum();
    let txs: Vec<Transaction> = from_mempool.into_iter().map(|(t, _)| t).collect();
    let reward = rules::subsidy(1) + fees;
    let full_extranonce =
        channel.extranonce_prefix.as_bytes().len() + channel.extranonce_size as usize;
    let cb = coinbase_with(
        1,
        pool_outputs(&s.pool_script, reward),
        &txs,
        full_extranonce,
    );
    let txids: Vec<Txid> = txs.iter().map(|t| t.compute_txid()).collect();
    let path = coinbase_merkle_path(&txids);
    let custom = |request_id: u32, token: Vec<u8>, outputs: &[TxOut]| {
        MiningOwned::SetCustomMiningJob(SetCustomMiningJobOwned {
            channel_id: channel.channel_id,
            request_id,
            token: B0255Owned::new(token).expect("token"),
            version: 0x2000_0000,
            prev_hash: tip.prev_hash.clone(),
            min_ntime: tip.min_ntime,
            nbits: tip.nbits,
            coinbase_tx_version: 2,
            coinbase_prefix: B0255Owned::new(cb.script_sig_prefix.clone()).expect("prefix"),
            coinbase_tx_input_n_sequence: u32::MAX,
            coinbase_tx_outputs: B064KOwned::new(consensus::serialize(&outputs.to_vec()))
                .expect("outputs"),
            coinbase_tx_locktime: 0,
            merkle_path: binary_sv2::Seq0255Owned::new(
                path.iter().map(|h| U256Owned::from(*h)).collect(),
            )
            .expect("path"),
        })
    };
    let custom_reply = |msg: &AnyMessageOwned| match msg {
        AnyMessageOwned::Mining(MiningOwned::SetCustomMiningJobSuccess(ok)) => Some(Ok(ok.job_id)),
        AnyMessageOwned::Mining(MiningOwned::SetCustomMiningJobError(e)) => {
            Some(Err(hashpool_sv2_io::text(&e.error_code)))
        }
        _ => None,
    };

    // Without a declared job: a made-up token is refused.
    m.send(custom(10, vec![1u8; 105], &cb.tx.output)).await?;
    assert_eq!(
        m.recv_until(WAIT, custom_reply).await?,
        Err("invalid-mining-job-token".to_string())
    );

    // Declared and accepted by the jd-server: set.
    let mut jdc = client(&s).await?;
    let (token, _) = allocate(&mut jdc, 1).await?;
    jdc.send(declare(2, &token, &cb, &txs)).await?;
    let job_token = match jd(jdc.recv(WAIT).await?) {
        JobDeclarationOwned::DeclareMiningJobSuccess(ok) => {
            ok.new_mining_job_token.as_ref().to_vec()
        }
        other => anyhow::bail!("expected DeclareMiningJob.Success, got {other}"),
    };
    // Its token on another job (one satoshi less for the pool): refused.
    let mut skimmed = cb.tx.output.clone();
    skimmed[0].value -= Amount::from_sat(1);
    m.send(custom(11, job_token.clone(), &skimmed)).await?;
    assert_eq!(
        m.recv_until(WAIT, custom_reply).await?,
        Err("invalid-mining-job-token".to_string())
    );
    // A min_ntime an hour ahead (blocks the network would refuse as too new): refused, and
    // the token is not used up by it.
    let mut ahead = custom(14, job_token.clone(), &cb.tx.output);
    if let MiningOwned::SetCustomMiningJob(j) = &mut ahead {
        j.min_ntime = tip.min_ntime.max(now_secs() as u32) + 3_600;
    }
    m.send(ahead).await?;
    assert_eq!(
        m.recv_until(WAIT, custom_reply).await?,
        Err("invalid-job-param-value-min-ntime".to_string())
    );
    m.send(custom(12, job_token.clone(), &cb.tx.output)).await?;
    let job_id = m
        .recv_until(WAIT, custom_reply)
        .await?
        .map_err(|code| anyhow::anyhow!("custom job refused: {code}"))?;
    // The same token twice: refused.
    m.send(custom(13, job_token.clone(), &cb.tx.output)).await?;
    assert_eq!(
        m.recv_until(WAIT, custom_reply).await?,
        Err("invalid-mining-job-token".to_string())
    );

    // A share on the custom job, built from the job's own coinbase: accepted and credited.
    let target = Target::from_le_bytes(channel.target.to_array());
    let mut share_seq = 0;
    let mut credited: u128 = 0;
    for round in 0..2u8 {
        let miner_extranonce = vec![0x30 + round; channel.extranonce_size as usize];
        let extranonce = [channel.extranonce_prefix.as_bytes(), &miner_extranonce].concat();
        let mut full = cb.tx.clone();
        let mut sig = cb.script_sig_prefix.clone();
        sig.extend_from_slice(&extranonce);
        full.input[0].script_sig = ScriptBuf::from_bytes(sig);
        let mut all = vec![full];
        all.extend(txs.iter().cloned());
        let root = bitcoin::merkle_tree::calculate_root(all.iter().map(|t| t.compute_txid()))
            .expect("txs");
        let mut header = Header {
            version: BlockVersion::from_consensus(0x2000_0000),
            prev_blockhash: BlockHash::from_byte_array(tip.prev_hash.to_array()),
            merkle_root: root.to_raw_hash().into(),
            time: tip.min_ntime,
            bits: CompactTarget::from_consensus(tip.nbits),
            nonce: 0,
        };
        while !target.is_met_by(header.block_hash()) {
            header.nonce += 1;
        }
        share_seq += 1;
        m.send(MiningOwned::SubmitSharesExtended(
            SubmitSharesExtendedOwned {
                channel_id: channel.channel_id,
                sequence_number: share_seq,
                job_id,
                nonce: header.nonce,
                ntime: tip.min_ntime,
                version: 0x2000_0000,
                extranonce: B032Owned::new(miner_extranonce).expect("extranonce"),
            },
        ))
        .await?;
        let ack = m
            .recv_until(WAIT, |msg| match msg {
                AnyMessageOwned::Mining(MiningOwned::SubmitSharesSuccess(ok)) => {
                    Some(Ok(ok.clone()))
                }
                AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e)) => {
                    Some(Err(hashpool_sv2_io::text(&e.error_code)))
                }
                _ => None,
            })
            .await?
            .map_err(|code| anyhow::anyhow!("share on the custom job refused: {code}"))?;
        assert_eq!(ack.last_sequence_number, share_seq);
        credited += hashpool_ehash::Work::from_target(&target).hashes();
    }
    // Exactly the work of the channel's target per share, to the channel's key.
    let accrual = pool
        .running
        .ledger
        .accrual(&key)
        .await?
        .expect("the key accrued");
    assert_eq!(accrual.shares, 2);
    assert_eq!(accrual.total.hashes(), credited);

    s.stack.stop().await
}
