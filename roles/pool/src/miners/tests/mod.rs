//! Unit tests of the miners' message handlers (channel opening, shares, custom jobs), each
//! called as a connection calls it: a [`MinerHandles`] over a real ledger (a temporary SQLite
//! file) and a [`JobSource`] holding one template and its tip, and one connection's
//! [`ChannelSet`]. No socket: the handlers take messages and return the replies.

mod custom_jobs;
mod opening;
mod share_handling;

use std::sync::Arc;

use binary_sv2::{B0255Owned, B064KOwned, Seq0255Owned, U256Owned};
use bitcoin::{
    block::{Header, Version},
    hashes::Hash,
    BlockHash, CompactTarget, ScriptBuf, Target, TxMerkleNode,
};
use ext_mint_quote::LockingKey;
use mining_sv2::{
    OpenExtendedMiningChannelOwned, OpenStandardMiningChannelOwned, SubmitSharesStandardOwned,
};
use parsers_sv2::{MiningOwned, Tlv};
use template_distribution_sv2::{NewTemplateOwned, SetNewPrevHashOwned, SubmitSolutionOwned};
use tokio::sync::mpsc;

use super::{channel_set::ChannelSet, targets::network_target, MinerHandles, ShareSink};
use crate::{
    config::PoolRunConfig,
    counters::PoolStats,
    events::{EventSink, PoolEvent},
    jobs::JobSource,
    ledger::AccrualLedger,
};

/// Regtest's `nBits`: nearly every hash is a block.
pub const REGTEST_NBITS: u32 = 0x207f_ffff;
/// Difficulty 1 (`Target::MAX`): a share at a small difficulty is almost never a block.
pub const TESTNET_NBITS: u32 = 0x1d00_ffff;
/// The pool's floor in these tests (`limits.min_share_difficulty`).
pub const MIN_DIFFICULTY: f64 = 1e-6;
/// The tip every test pool starts on.
pub const TIP: [u8; 32] = [7; 32];

pub fn key(n: u8) -> LockingKey {
    let secp = bitcoin::secp256k1::Secp256k1::signing_only();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n; 32]).unwrap();
    LockingKey::from_slice(&bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize())
        .unwrap()
}

pub fn target_of(bytes: &U256Owned) -> Target {
    Target::from_le_bytes(bytes.to_array())
}

/// A target whose value is 1: harder than anything a miner could meet.
pub fn target_one() -> Target {
    let mut b = [0u8; 32];
    b[0] = 1;
    Target::from_le_bytes(b)
}

pub fn all_ff() -> Target {
    Target::from_le_bytes([0xff; 32])
}

/// The shipped local configuration, with the tests' floor.
fn run_config() -> PoolRunConfig {
    let mut config = crate::config::shipped_for_tests();
    config.limits.min_share_difficulty = MIN_DIFFICULTY;
    config.pool.default_locking_key = None;
    config.jd_server_public_key = None;
    config
}

pub fn now() -> u32 {
    hashpool_role::unix_now() as u32
}

/// A template as a provider sends it: no transactions, the provider's outputs empty.
pub fn template(id: u64, future: bool) -> NewTemplateOwned {
    NewTemplateOwned {
        template_id: id,
        future_template: future,
        version: 0x2000_0000,
        coinbase_tx_version: 2,
        // A BIP34 height push (height 10,000).
        coinbase_prefix: B0255Owned::new(vec![0x02, 0x10, 0x27]).unwrap(),
        coinbase_tx_input_sequence: u32::MAX,
        coinbase_tx_value_remaining: 5_000_000_000,
        coinbase_tx_outputs_count: 0,
        coinbase_tx_outputs: B064KOwned::new(vec![]).unwrap(),
        coinbase_tx_locktime: 0,
        merkle_path: Seq0255Owned::new(vec![]).unwrap(),
    }
}

pub fn prev_hash(template_id: u64, hash: [u8; 32], nbits: u32) -> SetNewPrevHashOwned {
    SetNewPrevHashOwned {
        template_id,
        prev_hash: U256Owned::from(hash),
        header_timestamp: now(),
        n_bits: nbits,
        target: U256Owned::from(network_target(nbits).to_le_bytes()),
    }
}

/// One pool with one miner connection.
pub struct Pool {
    pub ctx: MinerHandles,
    pub set: ChannelSet,
    pub solutions: mpsc::Receiver<SubmitSolutionOwned>,
    pub events: mpsc::Receiver<PoolEvent>,
    _dir: tempfile::TempDir,
}

impl Pool {
    /// A pool on a tip of `nbits` (template 1 activated by tip [`TIP`]), its config edited by
    /// `edit`.
    pub async fn start(nbits: u32, edit: impl FnOnce(&mut PoolRunConfig)) -> Self {
        let mut config = run_config();
        edit(&mut config);
        let dir = tempfile::tempdir().unwrap();
        let ledger = AccrualLedger::open(
            &dir.path().join("ledger.sqlite"),
            &config.unit,
            config.unit_work,
        )
        .await
        .unwrap();
        let jobs = Arc::new(JobSource::new(ScriptBuf::from_bytes(vec![0x51])));
        jobs.on_new_template(template(1, true));
        jobs.on_set_new_prev_hash(prev_hash(1, TIP, nbits));
        let stats = Arc::new(PoolStats::default());
        let (events, events_rx) = EventSink::channel();
        let (solutions, solutions_rx) = mpsc::channel(8);
        let ctx = MinerHandles::new(
            Arc::new(config),
            jobs,
            ShareSink::new(stats.clone(), ledger),
            stats,
            events,
            solutions,
        )
        .unwrap();
        let set = ChannelSet::new(ctx.next_client_id(), 0);
        Self {
            ctx,
            set,
            solutions: solutions_rx,
            events: events_rx,
            _dir: dir,
        }
    }

    pub fn open_standard(
        &mut self,
        user: &str,
        hashrate: f32,
        max_target: Target,
        tlvs: &[Tlv],
    ) -> Vec<MiningOwned> {
        let m = OpenStandardMiningChannelOwned {
            request_id: 7,
            user_identity: hashpool_sv2_io::str0255(user),
            nominal_hash_rate: hashrate,
            max_target: U256Owned::from(max_target.to_le_bytes()),
        };
        super::open::standard(&self.ctx, &mut self.set, m, tlvs)
    }

    pub fn open_extended(
        &mut self,
        user: &str,
        hashrate: f32,
        max_target: Target,
        min_extranonce_size: u16,
        tlvs: &[Tlv],
    ) -> Vec<MiningOwned> {
        let m = OpenExtendedMiningChannelOwned {
            request_id: 8,
            user_identity: hashpool_sv2_io::str0255(user),
            nominal_hash_rate: hashrate,
            max_target: U256Owned::from(max_target.to_le_bytes()),
            min_extranonce_size,
        };
        super::open::extended(&self.ctx, &mut self.set, m, tlvs)
    }

    /// Opens a standard channel for `key` that must succeed; returns its work.
    pub fn standard_channel(&mut self, hashrate: f32, max_target: Target) -> StandardWork {
        let out = self.open_standard(&key(1).to_hex(), hashrate, max_target, &[]);
        assert!(
            matches!(out[0], MiningOwned::OpenStandardMiningChannelSuccess(_)),
            "{out:?}"
        );
        StandardWork::from_messages(&out)
    }

    pub fn submit(
        &mut self,
        share: SubmitSharesStandardOwned,
        accepted: &mut Vec<crate::accepted_share::AcceptedShare>,
    ) -> Vec<MiningOwned> {
        super::shares::standard(&self.ctx, &mut self.set, share, accepted)
    }
}

/// The open-mining-channel error code in `out`, if it is one.
pub fn open_error(out: &[MiningOwned]) -> Option<String> {
    match out {
        [MiningOwned::OpenMiningChannelError(e)] => Some(hashpool_sv2_io::text(&e.error_code)),
        _ => None,
    }
}

/// What a standard channel mines on: its active job and tip, from the messages that gave them.
#[derive(Debug, Clone)]
pub struct StandardWork {
    pub channel_id: u32,
    pub job_id: u32,
    pub version: u32,
    pub merkle_root: [u8; 32],
    pub prev_hash: [u8; 32],
    pub ntime: u32,
    pub nbits: u32,
}

impl StandardWork {
    /// From a channel's SetNewPrevHash and the NewMiningJob it activates.
    pub fn from_messages(out: &[MiningOwned]) -> Self {
        let tip = out
            .iter()
            .rev()
            .find_map(|m| match m {
                MiningOwned::SetNewPrevHash(p) => Some(p.clone()),
                _ => None,
            })
            .expect("a SetNewPrevHash");
        let job = out
            .iter()
            .find_map(|m| match m {
                MiningOwned::NewMiningJob(j) if j.job_id == tip.job_id => Some(j.clone()),
                _ => None,
            })
            .expect("the job the tip activates");
        Self {
            channel_id: job.channel_id,
            job_id: job.job_id,
            version: job.version,
            merkle_root: job.merkle_root.to_array(),
            prev_hash: tip.prev_hash.to_array(),
            ntime: tip.min_ntime,
            nbits: tip.nbits,
        }
    }

    pub fn hash(&self, nonce: u32) -> BlockHash {
        Header {
            version: Version::from_consensus(self.version as i32),
            prev_blockhash: BlockHash::from_byte_array(self.prev_hash),
            merkle_root: TxMerkleNode::from_byte_array(self.merkle_root),
            time: self.ntime,
            bits: CompactTarget::from_consensus(self.nbits),
            nonce,
        }
        .block_hash()
    }

    /// The first nonce from `from` whose header hash satisfies `wanted`.
    pub fn find(&self, from: u32, wanted: impl Fn(BlockHash) -> bool) -> (u32, BlockHash) {
        (from..u32::MAX)
            .map(|n| (n, self.hash(n)))
            .find(|(_, h)| wanted(*h))
            .expect("a nonce")
    }

    pub fn share(&self, sequence_number: u32, nonce: u32) -> SubmitSharesStandardOwned {
        SubmitSharesStandardOwned {
            channel_id: self.channel_id,
            sequence_number,
            job_id: self.job_id,
            nonce,
            ntime: self.ntime,
            version: self.version,
        }
    }
}
