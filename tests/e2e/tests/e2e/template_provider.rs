//! The template provider as any Template Distribution client sees it.

use std::time::Duration;

use binary_sv2::U256Owned;
use common_messages_sv2::Protocol;
use hashpool_e2e::{
    init_tracing, loopback_any_port, public_key,
    raw_client::{setup_connection, RawClient},
    TestProvider, REGTEST_NBITS,
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
    // Let a few synthetic transactions arrive.
    tokio::time::sleep(Duration::from_millis(400)).await;
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
