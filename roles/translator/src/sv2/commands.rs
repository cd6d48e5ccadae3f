//! What the SV1 side asks of a connected pool: forward a share, open, retarget or close a
//! miner's channel.

use binary_sv2::{B032Owned, U256Owned};
use hashpool_sv2_io::{str0255, ConnectionError};
use mining_sv2::{CloseChannelOwned, SubmitSharesExtendedOwned, UpdateChannelOwned};
use parsers_sv2::MiningOwned;

use super::{
    channel::{open_channel, open_message, slot_key},
    failover::apply_offline,
    Command, NotAccepted, Session,
};

impl Session<'_> {
    pub(super) async fn on_command(&mut self, command: Command) -> Result<(), ConnectionError> {
        match command {
            Command::Share(share) => {
                let Some(c) = self.channels.get_mut(&share.channel_id) else {
                    let _ = share.verdict.send(Err(NotAccepted::Unjudged(
                        "the miner's channel is not open",
                    )));
                    return Ok(());
                };
                let Ok(extranonce) = B032Owned::new(share.extranonce) else {
                    let _ = share
                        .verdict
                        .send(Err(NotAccepted::Unjudged("extranonce too long")));
                    return Ok(());
                };
                c.sequence = c.sequence.wrapping_add(1);
                c.pending.insert(c.sequence, share.verdict);
                let submit = MiningOwned::SubmitSharesExtended(SubmitSharesExtendedOwned {
                    channel_id: c.id,
                    sequence_number: c.sequence,
                    job_id: share.job_id,
                    nonce: share.nonce,
                    ntime: share.ntime,
                    version: share.version,
                    extranonce,
                });
                self.conn.send(submit).await?;
            }
            Command::Open {
                miner,
                hashrate,
                work,
                key,
            } => {
                apply_offline(
                    self.slots,
                    self.config,
                    Command::Open {
                        miner,
                        hashrate,
                        work,
                        key,
                    },
                );
                if let Some(slot) = self.slots.get(&miner) {
                    let open = open_message(miner, slot, self.mode, self.max_target);
                    let key = slot_key(slot, self.locking_key, self.tlv);
                    open_channel(&mut self.conn, open, key).await?;
                }
            }
            Command::Hashrate { miner, hashrate } => {
                apply_offline(
                    self.slots,
                    self.config,
                    Command::Hashrate { miner, hashrate },
                );
                if let Some(&channel_id) = self.by_slot.get(&miner) {
                    let update = MiningOwned::UpdateChannel(UpdateChannelOwned {
                        channel_id,
                        nominal_hash_rate: hashrate,
                        maximum_target: U256Owned::from(self.max_target),
                    });
                    self.conn.send(update).await?;
                }
            }
            Command::Close { miner } => {
                self.slots.remove(&miner);
                if let Some(channel_id) = self.by_slot.remove(&miner) {
                    if let Some(mut c) = self.channels.remove(&channel_id) {
                        c.fail_pending("the miner disconnected");
                    }
                    let close = MiningOwned::CloseChannel(CloseChannelOwned {
                        channel_id,
                        reason_code: str0255("miner disconnected"),
                    });
                    self.conn.send(close).await?;
                }
            }
        }
        Ok(())
    }
}
