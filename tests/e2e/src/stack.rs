//! A whole test stack in one expression. The default is a template provider (regtest
//! difficulty, no mempool traffic) and a pool with [`PoolOptions::default`]; each test states
//! only what differs, and the harness starts the roles in the order a deployment does (chain,
//! pool, mint, wallet, jd-server, translator) and stops them in reverse.
//!
//! ```text
//! let stack = Stack::new()
//!     .nbits(HARD_NBITS)
//!     .with_pool(PoolOptions { shares_per_minute: 120.0, ..Default::default() })
//!     .with_mint()
//!     .start()
//!     .await?;
//! let miner = stack.miner("alice", 20_000.0);
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hashpool_wallet::{EhashWallet, Minter};
use tokio_util::sync::CancellationToken;
use translator::{ChannelMode, RunningTranslator, Sv1Limits, TranslatorRunConfig};

use anyhow::Context;

use crate::{
    loopback_any_port, miner_options, mint_run_config, open_wallet, public_key, sv1_miner_options,
    translator_config, PoolOptions, TestJdServer, TestMint, TestPool, TestProvider, REGTEST_NBITS,
};

/// What to start; [`Stack::start`] starts it.
pub struct Stack {
    nbits: u32,
    synthetic_tx_interval_ms: u64,
    provider_address: SocketAddr,
    pool: PoolOptions,
    mint: bool,
    redeem: bool,
    withdraw: bool,
    wallet: bool,
    jd_server: bool,
    jd_server_address: SocketAddr,
    translator: Option<TranslatorSetup>,
    translator_limits: Sv1Limits,
    follow_chain: bool,
}

/// A change to the translator's configuration once the stack's addresses are known.
type EditTranslator = Box<dyn FnOnce(&mut TranslatorRunConfig) + Send>;

struct TranslatorSetup {
    user: String,
    initial_hashrate: f32,
    edit: EditTranslator,
}

impl Default for Stack {
    fn default() -> Self {
        Self {
            nbits: REGTEST_NBITS,
            synthetic_tx_interval_ms: 0,
            provider_address: loopback_any_port(),
            pool: PoolOptions::default(),
            mint: false,
            redeem: false,
            withdraw: false,
            wallet: false,
            jd_server: false,
            jd_server_address: loopback_any_port(),
            translator: None,
            translator_limits: Sv1Limits::default(),
            follow_chain: false,
        }
    }
}

impl Stack {
    pub fn new() -> Self {
        Self::default()
    }

    /// The chain's difficulty (default regtest's, where most shares are blocks).
    pub fn nbits(mut self, nbits: u32) -> Self {
        self.nbits = nbits;
        self
    }

    /// A synthetic mempool transaction every `ms` milliseconds (default none), so templates
    /// and jobs change under the miners.
    pub fn mempool_tx_every_ms(mut self, ms: u64) -> Self {
        self.synthetic_tx_interval_ms = ms;
        self
    }

    /// Where the template provider listens (default a port the OS picks): a test that restarts
    /// it needs to know.
    pub fn provider_address(mut self, address: SocketAddr) -> Self {
        self.provider_address = address;
        self
    }

    /// The pool follows its found blocks in the template provider's chain (its JSON-RPC),
    /// checking every 100 ms, and settles them: a 2 % fee, windows of 8 blocks' work, epochs
    /// of at least 5e-5 difficulty-1 shares (about ten seconds of a 20 kH/s test miner).
    pub fn follow_chain(mut self) -> Self {
        self.follow_chain = true;
        self
    }

    pub fn with_pool(mut self, options: PoolOptions) -> Self {
        self.pool = options;
        self
    }

    /// The real mint, linked to the pool.
    pub fn with_mint(mut self) -> Self {
        self.mint = true;
        self
    }

    /// The mint redeems final epochs' ehash at the rates the pool's miner API signs.
    pub fn with_redemption(mut self) -> Self {
        self.mint = true;
        self.redeem = true;
        self
    }

    /// Redemption, and withdrawals of sats paid in the pool's coinbases (the chain followed).
    pub fn with_withdrawals(mut self) -> Self {
        self.mint = true;
        self.redeem = true;
        self.withdraw = true;
        self.follow_chain = true;
        self
    }

    /// A wallet on the mint (started too) and a minter minting its quotes; the translator, if
    /// any, locks its ehash to the wallet's key and mints with it.
    pub fn with_wallet(mut self) -> Self {
        self.mint = true;
        self.wallet = true;
        self
    }

    /// A jd-server on the chain; the pool requires its job tokens unless its options name
    /// another key.
    pub fn with_jd_server(mut self) -> Self {
        self.jd_server = true;
        self
    }

    /// Where the jd-server listens (default a port the OS picks): a test that restarts it
    /// needs to know.
    pub fn jd_server_address(mut self, address: SocketAddr) -> Self {
        self.jd_server_address = address;
        self
    }

    /// A translator in front of the pool ([`translator_config`] for `user` and
    /// `initial_hashrate`), changed by `edit` before it starts.
    pub fn with_translator(
        mut self,
        user: &str,
        initial_hashrate: f32,
        edit: impl FnOnce(&mut TranslatorRunConfig) + Send + 'static,
    ) -> Self {
        self.translator = Some(TranslatorSetup {
            user: user.into(),
            initial_hashrate,
            edit: Box::new(edit),
        });
        self
    }

    /// The translator's limits on its SV1 miners (default [`Sv1Limits::default`], the shipped
    /// ones).
    pub fn translator_limits(mut self, limits: Sv1Limits) -> Self {
        self.translator_limits = limits;
        self
    }

    pub async fn start(self) -> anyhow::Result<Running> {
        let dir = tempfile::tempdir()?;
        let stop = CancellationToken::new();
        let tp = TestProvider::start(
            &dir.path().join("chain"),
            self.provider_address,
            self.nbits,
            self.synthetic_tx_interval_ms,
        )
        .await?;
        let mut pool_options = self.pool;
        // The pool reads the mint's withdrawals, and starts first: the mint's port is chosen
        // now (outside the ephemeral range, so no other socket takes it in between).
        let mint_http = if self.withdraw {
            SocketAddr::from(([127, 0, 0, 1], crate::ports_outside_ephemeral_range(1)[0]))
        } else {
            loopback_any_port()
        };
        if self.follow_chain {
            pool_options.settlement = Some(pool::config::SettlementSettings {
                node_rpc: hashpool_bitcoin_rpc::RpcSettings {
                    url: format!("http://{}/", tp.running.http_address),
                    cookie_file: None,
                    user: None,
                    password: None,
                },
                follow_interval_ms: 100,
                fee_ppm: 20_000,
                window_multiplier: 8,
                epoch_work_ppm: 500_000,
                // About 215,000 hashes: ten seconds of a 20 kH/s test miner.
                min_epoch_difficulty: 5e-5,
                pay_withdrawals: self.withdraw,
                withdrawals_url: Some(format!(
                    "http://{mint_http}{}",
                    ext_mint_quote::WITHDRAWALS_PATH
                )),
                max_payouts_per_block: 100,
            });
        }
        if self.jd_server && pool_options.jd_server_public_key.is_none() {
            pool_options.jd_server_public_key = Some(public_key());
        }
        let pool = TestPool::start(tp.running.listen_address, pool_options).await?;
        let mint = if self.mint {
            let mint_dir = dir.path().join("mint");
            std::fs::create_dir_all(&mint_dir)?;
            let mut config = mint_run_config(&mint_dir, pool.running.mint_link_address, mint_http);
            if self.withdraw {
                config.withdraw = Some(mint::withdraw::WithdrawConfig {
                    network: bitcoin::Network::Regtest,
                    min_sats: 10_000,
                    max_sats: 100_000_000,
                });
            }
            if self.redeem {
                let api = pool
                    .running
                    .api_address
                    .context("redemption reads the pool's miner API")?;
                config.redeem = Some(mint::redeem::RedeemConfig {
                    rates_url: format!("http://{api}/api/v1/settlement/rates"),
                    pool_key: public_key().into_bytes(),
                });
            }
            Some(TestMint::start_with(config).await?)
        } else {
            None
        };
        let (wallet, minter) = match (&mint, self.wallet) {
            (Some(mint), true) => {
                let wallet_dir = dir.path().join("wallet");
                std::fs::create_dir_all(&wallet_dir)?;
                let wallet = Arc::new(open_wallet(&wallet_dir, &mint.url()).await?);
                let minter = Minter::spawn(wallet.clone(), Duration::from_secs(3600), stop.clone());
                (Some(wallet), Some(minter))
            }
            _ => (None, None),
        };
        let jd_server = if self.jd_server {
            let mut config = crate::jd_server_config(self.jd_server_address, &tp)?;
            // With withdrawals, declared coinbases must pay the pool's payouts.
            if self.withdraw {
                config.payouts_url = pool
                    .running
                    .api_address
                    .map(|api| format!("http://{api}/api/v1/settlement/payouts/offer"));
            }
            Some(TestJdServer::start_with(config).await?)
        } else {
            None
        };
        let translator = match self.translator {
            Some(setup) => {
                let mut config = translator_config(
                    pool.address(),
                    &setup.user,
                    wallet.as_ref().map(|w| w.sv2_locking_key()),
                    setup.initial_hashrate,
                );
                (setup.edit)(&mut config);
                let channel_mode = config.channel_mode;
                let running = translator::start_with_limits(
                    config,
                    self.translator_limits,
                    minter.clone(),
                    stop.clone(),
                )
                .await?;
                Some(TestTranslator {
                    running,
                    channel_mode,
                })
            }
            None => None,
        };
        Ok(Running {
            dir,
            tp,
            pool,
            mint,
            wallet,
            minter,
            jd_server,
            translator,
            stop,
        })
    }
}

/// The stack's translator, and the channel mode it was configured with (its monitoring is
/// served with it).
pub struct TestTranslator {
    pub running: RunningTranslator,
    pub channel_mode: ChannelMode,
}

/// A started [`Stack`]: every handle, the roles not asked for `None`.
pub struct Running {
    /// The chain's, the mint's and the wallet's files (`chain/`, `mint/`, `wallet/`). A test
    /// destructuring the stack binds it: dropped, it removes the chain under the provider.
    pub dir: tempfile::TempDir,
    pub tp: TestProvider,
    pub pool: TestPool,
    pub mint: Option<TestMint>,
    pub wallet: Option<Arc<EhashWallet>>,
    pub minter: Option<Minter>,
    pub jd_server: Option<TestJdServer>,
    pub translator: Option<TestTranslator>,
    /// Stops the minter, the translator and the miners of [`Running::miner`].
    pub stop: CancellationToken,
}

impl Running {
    pub fn mint(&self) -> &TestMint {
        self.mint.as_ref().expect("a stack built with_mint()")
    }

    pub fn wallet(&self) -> &Arc<EhashWallet> {
        self.wallet.as_ref().expect("a stack built with_wallet()")
    }

    pub fn minter(&self) -> &Minter {
        self.minter.as_ref().expect("a stack built with_wallet()")
    }

    pub fn jd_server(&self) -> &TestJdServer {
        self.jd_server
            .as_ref()
            .expect("a stack built with_jd_server()")
    }

    pub fn translator(&self) -> &TestTranslator {
        self.translator
            .as_ref()
            .expect("a stack built with_translator()")
    }

    /// An SV2 miner on the pool ([`miner_options`], its hashrate limited to `hashrate`),
    /// stopped by [`Running::stop`].
    pub fn miner(&self, user: &str, hashrate: f32) -> mining_device::Miner {
        self.start_miner(miner_options(self.pool.address(), user, hashrate, true))
    }

    /// An SV1 miner on the stack's translator ([`sv1_miner_options`], its hashrate limited to
    /// `hashrate`), stopped by [`Running::stop`].
    pub fn sv1_miner(&self, user: &str, hashrate: f64) -> mining_device_sv1::Sv1Miner {
        let address = self.translator().running.downstream_address;
        mining_device_sv1::start(
            sv1_miner_options(address, user, hashrate),
            self.stop.clone(),
        )
    }

    /// A miner with these options, stopped by [`Running::stop`].
    pub fn start_miner(&self, options: mining_device::MinerOptions) -> mining_device::Miner {
        mining_device::start(options, self.stop.clone())
    }

    /// Stops everything, the last started first, waiting for each.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        if let Some(translator) = self.translator {
            translator.running.task.await?;
        }
        if let Some(jd_server) = self.jd_server {
            jd_server.stop().await?;
        }
        if let Some(mint) = self.mint {
            mint.stop().await?;
        }
        self.pool.stop().await?;
        self.tp.stop().await
    }
}
