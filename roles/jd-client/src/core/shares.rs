//! A miner's share: judged on its channel's job (the job, the target it may have been worked at
//! and duplicates by the shared checker in `channel`, the header by `work`, every verdict a
//! [`ShareError`] with its `SubmitShares.Error` code), forwarded to the pool when it meets the
//! pool channel's target, and, on a declared job, a block submitted to the template provider
//! and the jd-server.

use std::sync::{atomic::Ordering, Arc};

use binary_sv2::{B032Owned, B064KOwned, U256Owned};
use channels_sv2::Vardiff;
use hashpool_shares::check_extranonce_size;
use job_declaration_sv2::PushSolutionOwned;
use mining_sv2::{
    SubmitSharesErrorOwned, SubmitSharesExtendedOwned, SubmitSharesSuccess,
    ERROR_CODE_SUBMIT_SHARES_INVALID_CHANNEL_ID,
};
use parsers_sv2::{AnyMessageOwned, JobDeclarationOwned, MiningOwned, TemplateDistributionOwned};
use template_distribution_sv2::SubmitSolutionOwned;
use tracing::info;

use super::Core;
use crate::{
    stats::FoundBlock,
    work::{Checked, ShareError, ShareHeader, Work},
};

/// The `SubmitShares.Error` code of a share with no pool channel to take it (the jd-client's
/// own: no verdict of the shared checker).
const NO_UPSTREAM: &str = "no-upstream";

/// A share whose header checked on its channel's job.
struct Judged {
    work: Arc<Work>,
    /// The full extranonce (the pool channel's prefix, the channel's index, what was rolled).
    extranonce: Vec<u8>,
    checked: Checked,
    /// `Some`: a block that could not be remembered (its job's share bound is reached). It is
    /// refused with this verdict, so not credited (a duplicate is never accepted), but its
    /// block is still submitted: no bound may lose a block.
    unremembered: Option<ShareError>,
}

impl Core {
    fn share_error(&mut self, conn: u64, channel_id: u32, sequence_number: u32, code: &str) {
        self.stats.shares_rejected.fetch_add(1, Ordering::Relaxed);
        self.reply(
            conn,
            MiningOwned::SubmitSharesError(SubmitSharesErrorOwned {
                channel_id,
                sequence_number,
                error_code: hashpool_sv2_io::str0255(code),
            }),
        );
    }

    pub(super) fn on_share(
        &mut self,
        conn: u64,
        channel_id: u32,
        sequence_number: u32,
        job_id: u32,
        header: ShareHeader,
        rolled: Option<Vec<u8>>,
    ) {
        let share = match self.judge(conn, channel_id, job_id, header, rolled) {
            Ok(s) => s,
            Err(code) => return self.share_error(conn, channel_id, sequence_number, code),
        };
        let Judged {
            work,
            extranonce,
            checked,
            unremembered,
        } = share;
        match unremembered {
            Some(e) => self.share_error(conn, channel_id, sequence_number, e.code()),
            None => {
                self.stats.shares_accepted.fetch_add(1, Ordering::Relaxed);
                self.reply(
                    conn,
                    MiningOwned::SubmitSharesSuccess(SubmitSharesSuccess {
                        channel_id,
                        last_sequence_number: sequence_number,
                        new_submits_accepted_count: 1,
                        new_shares_sum: 1,
                    }),
                );
            }
        }
        self.forward(
            &work,
            &extranonce[work.pool_prefix.len()..],
            header,
            checked,
        );
        if checked.block {
            self.submit_block(&work, &extranonce, header, checked);
        }
    }

    /// Judges a share on its channel in the order SV2 answers: channel, job (the shared
    /// checker's: its verdicts and codes), extranonce size, then `work`'s ntime, version and
    /// target checks against the target the job may have been worked at, then duplicates.
    /// `Err`: the `SubmitShares.Error` code.
    fn judge(
        &mut self,
        conn: u64,
        channel_id: u32,
        job_id: u32,
        header: ShareHeader,
        rolled: Option<Vec<u8>>,
    ) -> Result<Judged, &'static str> {
        let opening = self.pool.link.as_ref().ok_or(NO_UPSTREAM)?.opening;
        let next_job_id = self.miners.next_job_id;
        let ch = self
            .miners
            .conns
            .get_mut(&conn)
            .and_then(|m| m.channels.get_mut(&channel_id))
            .ok_or(ERROR_CODE_SUBMIT_SHARES_INVALID_CHANNEL_ID)?;
        let (work, required) = match ch.job(job_id) {
            Ok(sent) => (sent.job.clone(), sent.required),
            // Not listed: issued (to this or another channel) and gone, or never issued.
            Err(_) => return Err(ShareError::unknown_job(job_id, next_job_id).code()),
        };
        if work.opening != opening {
            return Err(ShareError::Stale.code());
        }
        let rolled = match (ch.extended, rolled) {
            (Some(rollable), Some(e)) => check_extranonce_size(e.len(), rollable).map(|()| e),
            (None, None) => Ok(Vec::new()),
            _ => Err(ShareError::ExtranonceSize),
        }
        .map_err(|e| e.code())?;
        let extranonce = work.extranonce(&ch.index, &rolled);
        let checked = work
            .check(&extranonce, header, &required)
            .map_err(|e| e.code())?;
        let unremembered = match ch.record(job_id, &checked.hash_target(), &required) {
            Ok(()) => {
                ch.vardiff.increment_shares_since_last_update();
                None
            }
            Err(e @ ShareError::JobShareLimit(_)) if checked.block => Some(e),
            Err(e) => return Err(e.code()),
        };
        Ok(Judged {
            work,
            extranonce,
            checked,
            unremembered,
        })
    }

    /// A share at the pool channel's target goes to the pool, on the job's upstream id.
    fn forward(&mut self, work: &Work, extranonce: &[u8], header: ShareHeader, checked: Checked) {
        if !checked.for_pool {
            return;
        }
        let Some(pool) = &mut self.pool.link else {
            return;
        };
        let Ok(extranonce) = B032Owned::new(extranonce.to_vec()) else {
            return;
        };
        pool.sequence = pool.sequence.wrapping_add(1);
        let share = SubmitSharesExtendedOwned {
            channel_id: pool.channel_id,
            sequence_number: pool.sequence,
            job_id: work.upstream_job_id,
            nonce: header.nonce,
            ntime: header.ntime,
            version: header.version,
            extranonce,
        };
        if pool
            .tx
            .try_send(AnyMessageOwned::Mining(MiningOwned::SubmitSharesExtended(
                share,
            )))
            .is_ok()
        {
            self.stats.shares_forwarded.fetch_add(1, Ordering::Relaxed);
            if work.declared.is_some() {
                self.stats
                    .shares_forwarded_declared
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A block on a declared job: to the template provider (which connects it) and to the
    /// jd-server (which submits it to the pool's node).
    fn submit_block(
        &mut self,
        work: &Work,
        extranonce: &[u8],
        header: ShareHeader,
        checked: Checked,
    ) {
        let (Some(declared), Some(coinbase)) = (&work.declared, work.full_coinbase(extranonce))
        else {
            // A pool job: the pool, which has its transactions, submits it.
            return;
        };
        info!(hash = %checked.hash, template_id = declared.template_id, txs = declared.txids.len(), "block found on a declared job");
        self.stats.blocks_found.fetch_add(1, Ordering::Relaxed);
        self.stats.record_block(FoundBlock {
            hash: checked.hash,
            template_id: declared.template_id,
            txids: declared.txids.clone(),
        });
        if let (Some(tp), Ok(coinbase_tx)) = (&self.tp.tx, B064KOwned::new(coinbase)) {
            let _ = tp.try_send(AnyMessageOwned::TemplateDistribution(
                TemplateDistributionOwned::SubmitSolution(SubmitSolutionOwned {
                    template_id: declared.template_id,
                    version: header.version,
                    header_timestamp: header.ntime,
                    header_nonce: header.nonce,
                    coinbase_tx,
                }),
            ));
        }
        if let (Some(jds), Ok(e)) = (&self.jds.link, B032Owned::new(extranonce.to_vec())) {
            let _ = jds.tx.try_send(AnyMessageOwned::JobDeclaration(
                JobDeclarationOwned::PushSolution(PushSolutionOwned {
                    extranonce: e,
                    prev_hash: U256Owned::from(work.prev_hash),
                    nonce: header.nonce,
                    ntime: header.ntime,
                    nbits: work.nbits,
                    version: header.version,
                }),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The core judging a miner's shares end to end (events in, replies out): the shared
    //! checker's verdicts with their codes, targets across an `UpdateChannel`, and the
    //! duplicate bound.

    use std::{path::Path, sync::Arc};

    use binary_sv2::U256Owned;
    use bitcoin::{hashes::Hash, CompactTarget, Target};
    use mining_sv2::{
        OpenExtendedMiningChannelSuccessOwned, OpenStandardMiningChannelOwned,
        SubmitSharesStandardOwned, UpdateChannelOwned,
    };
    use parsers_sv2::{AnyMessageOwned, MiningOwned};
    use tokio::sync::mpsc;

    use super::super::{channel::MAX_SHARES_PER_JOB, Core, Event};
    use crate::{
        config::{JdClientConfig, JdClientRunConfig},
        stats::JdClientStats,
        work::{ShareHeader, Work},
    };

    const CONN: u64 = 1;
    const MIN_NTIME: u32 = 1_000;

    struct Rig {
        core: Core,
        miner: mpsc::Receiver<AnyMessageOwned>,
        pool: mpsc::Receiver<AnyMessageOwned>,
        channel_id: u32,
        /// The standard channel's full extranonce.
        extranonce: Vec<u8>,
        nbits: u32,
        /// The channel's target when it opened.
        target: Target,
        seq: u32,
    }

    fn work(nbits: u32) -> Work {
        Work {
            upstream_job_id: 9,
            opening: 1,
            version: 0x2000_0000,
            version_rolling_allowed: true,
            coinbase_prefix: vec![1, 2, 3],
            coinbase_suffix: vec![4, 5, 6],
            pool_prefix: vec![0xA0; 4],
            pool_size: 8,
            merkle_path: vec![[3; 32]],
            prev_hash: [7; 32],
            nbits,
            min_ntime: MIN_NTIME,
            upstream_target: Target::from_le_bytes([0xff; 32]),
            declared: None,
        }
    }

    impl Rig {
        /// A pool channel, the work `work(nbits)`, and one standard channel at `hashrate`.
        fn new(nbits: u32, hashrate: f32) -> Rig {
            let file =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/jd-client.config.toml");
            let own: JdClientConfig = hashpool_config::load_with_env(&file, vec![]).unwrap();
            let mut core = Core::new(
                JdClientRunConfig::new(&own).unwrap(),
                Arc::new(JdClientStats::default()),
            );
            let (pool_tx, pool) = mpsc::channel(1 << 14);
            let (miner_tx, miner) = mpsc::channel(1 << 14);
            core.on_event(Event::PoolUp {
                tx: pool_tx,
                channel: OpenExtendedMiningChannelSuccessOwned {
                    request_id: 1,
                    channel_id: 1,
                    target: U256Owned::from([0xff; 32]),
                    extranonce_size: 8,
                    extranonce_prefix: vec![0xA0; 4].try_into().unwrap(),
                    group_channel_id: 0,
                },
            });
            core.set_work(work(nbits));
            core.on_event(Event::MinerUp {
                conn: CONN,
                tx: miner_tx,
            });
            core.on_event(Event::Miner {
                conn: CONN,
                message: MiningOwned::OpenStandardMiningChannel(OpenStandardMiningChannelOwned {
                    request_id: 1,
                    user_identity: hashpool_sv2_io::str0255("rig"),
                    nominal_hash_rate: hashrate,
                    max_target: U256Owned::from([0xff; 32]),
                }),
            });
            let mut rig = Rig {
                core,
                miner,
                pool,
                channel_id: 0,
                extranonce: Vec::new(),
                nbits,
                target: Target::ZERO,
                seq: 0,
            };
            match rig.next() {
                MiningOwned::OpenStandardMiningChannelSuccess(s) => {
                    rig.channel_id = s.channel_id;
                    rig.extranonce = s.extranonce_prefix.as_ref().to_vec();
                    rig.target = hashpool_shares::u256_to_target(&s.target);
                }
                other => panic!("{other:?}"),
            }
            rig
        }

        fn next(&mut self) -> MiningOwned {
            match self.miner.try_recv() {
                Ok(AnyMessageOwned::Mining(m)) => m,
                other => panic!("{other:?}"),
            }
        }

        /// The id of the job the channel was sent last (skipping its `SetNewPrevHash`).
        fn job(&mut self) -> u32 {
            let id = match self.next() {
                MiningOwned::NewMiningJob(j) => j.job_id,
                other => panic!("{other:?}"),
            };
            while let Ok(m) = self.miner.try_recv() {
                assert!(matches!(
                    m,
                    AnyMessageOwned::Mining(MiningOwned::SetNewPrevHash(_))
                ));
            }
            id
        }

        fn hash(&self, nonce: u32) -> Target {
            let header = ShareHeader {
                version: 0x2000_0000,
                ntime: MIN_NTIME,
                nonce,
            };
            let h = work(self.nbits)
                .header(&self.extranonce, header)
                .block_hash();
            Target::from_le_bytes(h.to_byte_array())
        }

        /// A nonce from `from` on whose hash `pick` holds.
        fn nonce(&self, from: u32, pick: impl Fn(Target) -> bool) -> u32 {
            (from..u32::MAX).find(|n| pick(self.hash(*n))).unwrap()
        }

        /// Submits a share; the miner's verdict (`Err`: its code).
        fn submit(&mut self, job_id: u32, nonce: u32) -> Result<(), String> {
            self.seq += 1;
            self.core.on_event(Event::Miner {
                conn: CONN,
                message: MiningOwned::SubmitSharesStandard(SubmitSharesStandardOwned {
                    channel_id: self.channel_id,
                    sequence_number: self.seq,
                    job_id,
                    nonce,
                    ntime: MIN_NTIME,
                    version: 0x2000_0000,
                }),
            });
            match self.next() {
                MiningOwned::SubmitSharesSuccess(s) if s.last_sequence_number == self.seq => Ok(()),
                MiningOwned::SubmitSharesError(e) if e.sequence_number == self.seq => {
                    Err(hashpool_sv2_io::text(&e.error_code))
                }
                other => panic!("{other:?}"),
            }
        }

        fn forwarded(&mut self) -> usize {
            std::iter::from_fn(|| self.pool.try_recv().ok()).count()
        }
    }

    /// No block: a network target no hash here meets.
    const NO_BLOCKS: u32 = 0x1d00_ffff;

    #[test]
    fn verdicts_carry_the_shared_checkers_codes() {
        let mut rig = Rig::new(NO_BLOCKS, 1.0);
        let target = rig.target;
        let (a, b) = (rig.nonce(0, |h| h <= target), rig.nonce(0, |h| h > target));
        let c = rig.nonce(a + 1, |h| h <= target);
        let job = rig.job();
        assert_eq!(rig.submit(job, a), Ok(()));
        assert_eq!(rig.submit(job, a), Err("duplicate-share".into()));
        assert_eq!(rig.submit(job, b), Err("difficulty-too-low".into()));
        assert_eq!(rig.submit(job + 1_000, c), Err("invalid-job-id".into()));
        // The same work sent again as a new job: the same share is the same work.
        rig.core.set_work(work(NO_BLOCKS));
        let newer = rig.job();
        assert_eq!(rig.submit(newer, a), Err("duplicate-share".into()));
        assert_eq!(rig.submit(newer, c), Ok(()));
        // A new tip: the older jobs are stale.
        rig.core.set_work(Work {
            prev_hash: [8; 32],
            ..work(NO_BLOCKS)
        });
        rig.job();
        assert_eq!(rig.submit(job, c), Err("stale-share".into()));
        rig.seq += 1;
        rig.core.on_event(Event::Miner {
            conn: CONN,
            message: MiningOwned::SubmitSharesStandard(SubmitSharesStandardOwned {
                channel_id: rig.channel_id + 1,
                sequence_number: rig.seq,
                job_id: newer,
                nonce: 0,
                ntime: MIN_NTIME,
                version: 0x2000_0000,
            }),
        });
        assert!(matches!(
            rig.next(),
            MiningOwned::SubmitSharesError(e) if hashpool_sv2_io::text(&e.error_code) == "invalid-channel-id"
        ));
    }

    #[test]
    fn a_job_sent_before_a_harder_target_keeps_the_easier_one() {
        let mut rig = Rig::new(NO_BLOCKS, 1.0);
        let before = rig.job();
        // Ten times the hashrate: about one hash in sixty meets the channel's target.
        rig.core.on_event(Event::Miner {
            conn: CONN,
            message: MiningOwned::UpdateChannel(UpdateChannelOwned {
                channel_id: rig.channel_id,
                nominal_hash_rate: 10.0,
                maximum_target: U256Owned::from([0xff; 32]),
            }),
        });
        let hard = match rig.next() {
            MiningOwned::SetTarget(t) => hashpool_shares::u256_to_target(&t.maximum_target),
            other => panic!("{other:?}"),
        };
        rig.core.set_work(work(NO_BLOCKS));
        let after = rig.job();
        let easy_only = rig.nonce(0, |h| h > hard);
        // Found before the SetTarget reached the miner: it counts on the job it had then.
        assert_eq!(rig.submit(before, easy_only), Ok(()));
        assert_eq!(
            rig.submit(after, easy_only),
            Err("difficulty-too-low".into())
        );
        let hard_enough = rig.nonce(0, |h| h <= hard);
        assert_eq!(rig.submit(after, hard_enough), Ok(()));
    }

    #[test]
    fn past_a_jobs_share_bound_shares_are_refused_but_a_block_is_not_lost() {
        // A network target of 2^252: about a third of the channel's shares (1 H/s, its target
        // near 2^256 / 6) are blocks.
        let nbits = 0x2010_0000;
        let network = Target::from_compact(CompactTarget::from_consensus(nbits));
        let mut rig = Rig::new(nbits, 1.0);
        let target = rig.target;
        assert!(network < target, "some shares are not blocks");
        let job = rig.job();
        let mut nonce = 0;
        for i in 0..MAX_SHARES_PER_JOB {
            nonce = rig.nonce(nonce + 1, |h| h <= target);
            assert_eq!(rig.submit(job, nonce), Ok(()), "share {i}");
        }
        assert_eq!(rig.forwarded(), MAX_SHARES_PER_JOB);
        let full = Err("invalid-share".to_string());
        let share = rig.nonce(nonce + 1, |h| h <= target && h > network);
        assert_eq!(rig.submit(job, share), full);
        assert_eq!(rig.forwarded(), 0, "refused: not forwarded");
        // A block: refused (not credited, it could not be remembered) but still sent on (a
        // pool job's block is the pool's to submit).
        let block = rig.nonce(nonce + 1, |h| h <= network);
        assert_eq!(rig.submit(job, block), full);
        assert_eq!(rig.forwarded(), 1);
        // The remembered shares are still duplicates.
        assert_eq!(rig.submit(job, nonce), Err("duplicate-share".into()));
    }
}
