//! The jd-client's state, owned by one task: templates from its template provider, tokens and
//! declarations with the jd-server, the pool channel and its jobs, and the miners' channels.
//! Every connection talks to it through [`Event`]s, so no state is shared or locked.
//!
//! The work miners get is always a job the pool knows: the custom job the jd-server accepted
//! for the current template (declared mode), or, while that is not possible (no jd-server, a
//! refusal, a new tip not yet declared), the pool's own job on the same channel. Switching is
//! a new job for every channel: miners stay connected.
//!
//! The state is split by peer, each part in its module with the handlers of that peer's
//! messages: `template_provider`, `jd_server`, `pool`, `miners` (their channels in
//! `channel`), and `shares` (a miner's share, checked, then to the pool and as a block).
//! Handlers are methods of [`Core`] because one peer's message often moves another's state
//! (a template is declared, a declared job becomes the miners' work).

mod channel;
mod jd_server;
mod miners;
mod pool;
mod shares;
mod template_provider;

use std::sync::Arc;

use channels_sv2::server::jobs::factory::JobFactory;
use mining_sv2::OpenExtendedMiningChannelSuccessOwned;
use parsers_sv2::{AnyMessageOwned, JobDeclarationOwned, MiningOwned, TemplateDistributionOwned};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{config::JdClientRunConfig, stats::JdClientStats};

use self::{jd_server::JdServer, miners::Miners, pool::Pool, template_provider::TemplateProvider};

/// Where the core writes to one connection.
type Out = mpsc::Sender<AnyMessageOwned>;

/// What the connections tell the core.
pub enum Event {
    TpUp(Out),
    TpLost,
    Tp(TemplateDistributionOwned),
    JdsUp(Out),
    JdsLost,
    Jds(JobDeclarationOwned),
    PoolUp {
        tx: Out,
        channel: OpenExtendedMiningChannelSuccessOwned,
    },
    PoolLost,
    Pool(MiningOwned),
    MinerUp {
        conn: u64,
        tx: Out,
    },
    MinerGone {
        conn: u64,
    },
    Miner {
        conn: u64,
        message: MiningOwned,
    },
}

pub struct Core {
    config: JdClientRunConfig,
    stats: Arc<JdClientStats>,
    /// Builds the coinbases of declarations and the custom jobs set on the pool.
    factory: JobFactory,
    /// Request ids of messages to the jd-server and the pool (one sequence for both).
    next_request: u32,
    tp: TemplateProvider,
    jds: JdServer,
    pool: Pool,
    miners: Miners,
}

impl Core {
    pub fn new(config: JdClientRunConfig, stats: Arc<JdClientStats>) -> Self {
        let factory = JobFactory::new(true, None, Some(config.miner_tag.clone()));
        Self {
            config,
            stats,
            factory,
            next_request: 1,
            tp: TemplateProvider::default(),
            jds: JdServer::default(),
            pool: Pool::default(),
            miners: Miners::new(),
        }
    }

    pub async fn run(mut self, mut events: mpsc::Receiver<Event>, shutdown: CancellationToken) {
        let mut vardiff = tokio::time::interval(self.config.vardiff_interval);
        vardiff.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                e = events.recv() => match e { Some(e) => e, None => return },
                _ = vardiff.tick() => {
                    self.run_vardiff();
                    continue;
                }
                _ = shutdown.cancelled() => return,
            };
            self.on_event(event);
        }
    }

    pub fn on_event(&mut self, event: Event) {
        match event {
            Event::TpUp(tx) => self.on_tp_up(tx),
            Event::TpLost => self.on_tp_lost(),
            Event::Tp(m) => self.on_tp(m),
            Event::JdsUp(tx) => self.on_jds_up(tx),
            Event::JdsLost => self.on_jds_lost(),
            Event::Jds(m) => self.on_jds(m),
            Event::PoolUp { tx, channel } => self.on_pool_up(tx, channel),
            Event::PoolLost => self.on_pool_lost(),
            Event::Pool(m) => self.on_pool(m),
            Event::MinerUp { conn, tx } => self.miners.connect(conn, tx),
            Event::MinerGone { conn } => self.miner_gone(conn),
            Event::Miner { conn, message } => self.on_miner(conn, message),
        }
    }

    fn request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        id
    }
}
