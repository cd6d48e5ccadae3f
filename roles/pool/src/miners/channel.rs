//! One interface over the two kinds of mining channel the pool serves, so job fan-out, vardiff
//! and monitoring are written once. The state itself stays in the channels_sv2 objects.

use bitcoin::{Target, TxOut};
use channels_sv2::server::{
    error::{ExtendedChannelError, StandardChannelError},
    extended::ExtendedChannel,
    share_accounting::ShareAccounting,
    standard::StandardChannel,
};
use mining_sv2::SetNewPrevHashOwned as MiningSetNewPrevHash;
use parsers_sv2::MiningOwned;
use template_distribution_sv2::{NewTemplateOwned, SetNewPrevHashOwned};

pub trait PoolChannel {
    fn channel_id(&self) -> u32;
    fn user_identity(&self) -> &str;
    fn target(&self) -> Target;
    fn nominal_hashrate(&self) -> f32;
    fn shares_per_minute(&self) -> f32;
    fn share_accounting(&self) -> &ShareAccounting;
    /// Id of the job shares are mined on now.
    fn active_job_id(&self) -> Option<u32>;
    /// Whether shares on `job_id` can still be accepted: the active job or a past job of the
    /// current tip that channels_sv2 still keeps.
    fn holds_job(&self, job_id: u32) -> bool;
    /// The ledger's id of the chain tip the channel's jobs are on (0 before the first tip).
    fn tip_id(&self) -> i64;
    /// Applies vardiff's (or UpdateChannel's) new hashrate; returns the new target, or the
    /// SV2 error code of the refusal.
    fn update(&mut self, hashrate: f32, max_target: Option<Target>)
        -> Result<Target, &'static str>;
    /// Applies a template; returns the job message to send.
    fn apply_template(
        &mut self,
        template: NewTemplateOwned,
        outputs: Vec<TxOut>,
    ) -> Result<MiningOwned, String>;
    /// Applies a new tip; returns the mining SetNewPrevHash to send.
    fn apply_prev_hash(&mut self, prev_hash: SetNewPrevHashOwned) -> Result<MiningOwned, String>;
}

fn mining_prev_hash(channel_id: u32, job_id: u32, p: &SetNewPrevHashOwned) -> MiningOwned {
    MiningOwned::SetNewPrevHash(MiningSetNewPrevHash {
        channel_id,
        job_id,
        prev_hash: p.prev_hash.clone(),
        min_ntime: p.header_timestamp,
        nbits: p.n_bits,
    })
}

macro_rules! impl_pool_channel {
    ($ty:ty, $err:ident, $job_variant:ident) => {
        impl PoolChannel for $ty {
            fn channel_id(&self) -> u32 {
                self.get_channel_id()
            }
            fn user_identity(&self) -> &str {
                self.get_user_identity()
            }
            fn target(&self) -> Target {
                *self.get_target()
            }
            fn nominal_hashrate(&self) -> f32 {
                self.get_nominal_hashrate()
            }
            fn shares_per_minute(&self) -> f32 {
                self.get_shares_per_minute()
            }
            fn share_accounting(&self) -> &ShareAccounting {
                self.get_share_accounting()
            }
            fn active_job_id(&self) -> Option<u32> {
                self.get_active_job().map(|j| j.get_job_id())
            }
            fn holds_job(&self, job_id: u32) -> bool {
                self.get_active_job()
                    .is_some_and(|j| j.get_job_id() == job_id)
                    || self.get_past_job(job_id).is_some()
            }
            fn tip_id(&self) -> i64 {
                self.get_chain_tip()
                    .map(|t| crate::ledger::tip_id(t.prev_hash().as_ref()))
                    .unwrap_or(0)
            }
            fn update(
                &mut self,
                hashrate: f32,
                max_target: Option<Target>,
            ) -> Result<Target, &'static str> {
                self.update_channel(hashrate, max_target).map_err($err)?;
                Ok(*self.get_target())
            }
            fn apply_template(
                &mut self,
                template: NewTemplateOwned,
                outputs: Vec<TxOut>,
            ) -> Result<MiningOwned, String> {
                let template_id = template.template_id;
                let future = template.future_template;
                self.on_new_template(template, outputs)
                    .map_err(|e| format!("{e:?}"))?;
                let job = if future {
                    self.get_future_job_id_from_template_id(template_id)
                        .and_then(|id| self.get_future_job(id))
                } else {
                    self.get_active_job()
                };
                job.map(|j| MiningOwned::$job_variant(j.get_job_message().clone()))
                    .ok_or_else(|| format!("no job for template {template_id}"))
            }
            fn apply_prev_hash(
                &mut self,
                prev_hash: SetNewPrevHashOwned,
            ) -> Result<MiningOwned, String> {
                let message_source = prev_hash.clone();
                self.on_set_new_prev_hash(prev_hash)
                    .map_err(|e| format!("{e:?}"))?;
                let job_id = self
                    .get_active_job()
                    .map(|j| j.get_job_id())
                    .ok_or_else(|| "no active job after the new tip".to_string())?;
                Ok(mining_prev_hash(
                    self.get_channel_id(),
                    job_id,
                    &message_source,
                ))
            }
        }
    };
}

fn standard_update_code(e: StandardChannelError) -> &'static str {
    match e {
        StandardChannelError::UpdateChannelInvalidNominalHashrate(code)
        | StandardChannelError::UpdateChannelInvalidMaxTarget(code) => code,
        _ => mining_sv2::ERROR_CODE_UPDATE_CHANNEL_INVALID_NOMINAL_HASHRATE,
    }
}

fn extended_update_code(e: ExtendedChannelError) -> &'static str {
    match e {
        ExtendedChannelError::UpdateChannelInvalidNominalHashrate(code)
        | ExtendedChannelError::UpdateChannelInvalidMaxTarget(code) => code,
        _ => mining_sv2::ERROR_CODE_UPDATE_CHANNEL_INVALID_NOMINAL_HASHRATE,
    }
}

impl_pool_channel!(StandardChannel, standard_update_code, NewMiningJob);
impl_pool_channel!(ExtendedChannel, extended_update_code, NewExtendedMiningJob);
