//! The jd-server: mining job tokens, and each template declared with one (the transactions it
//! does not know provided on request). An accepted declaration goes on to the pool as a
//! custom job (`pool`).

use std::{
    collections::{HashMap, VecDeque},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use binary_sv2::{B016MOwned, B0255Owned, B064KOwned, Seq064KOwned, U256Owned};
use bitcoin::{consensus, hashes::Hash, ScriptBuf, Transaction, TxOut};
use job_declaration_sv2::{
    AllocateMiningJobTokenOwned, DeclareMiningJobOwned, ProvideMissingTransactionsSuccessOwned,
};
use parsers_sv2::{AnyMessageOwned, JobDeclarationOwned};
use template_distribution_sv2::NewTemplateOwned;
use tracing::{debug, warn};

use super::{Core, Out};

/// How long a declaration may wait for the jd-server's answer.
const DECLARATION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct JdServer {
    pub(super) link: Option<JdsLink>,
    /// Declarations sent, by request id, until the jd-server answers.
    declarations: HashMap<u32, Declaration>,
    /// (template, tip, pool opening) last declared: each is declared once.
    last_declared: Option<(u64, [u8; 32], u64)>,
}

pub(super) struct JdsLink {
    pub(super) tx: Out,
    /// Tokens with the withdrawals a coinbase declared with each must pay (for the height
    /// that was next when it was allocated).
    tokens: VecDeque<(Vec<u8>, Vec<TxOut>)>,
    allocating: bool,
    pool_script: Option<ScriptBuf>,
    /// The declaration waiting for its answer (one at a time: the newest template wins).
    declaring: Option<(u32, Instant)>,
}

/// A declaration on its way (to the jd-server, then as a custom job to the pool).
pub(super) struct Declaration {
    pub(super) template: NewTemplateOwned,
    pub(super) txs: Vec<Transaction>,
    pub(super) outputs: Vec<TxOut>,
    pub(super) full_extranonce_size: usize,
    pub(super) opening: u64,
    pub(super) prev_hash: [u8; 32],
    pub(super) coinbase_prefix_bip141: Vec<u8>,
    pub(super) coinbase_suffix_bip141: Vec<u8>,
}

impl Core {
    pub(super) fn on_jds_up(&mut self, tx: Out) {
        self.jds.link = Some(JdsLink {
            tx,
            tokens: VecDeque::new(),
            allocating: false,
            pool_script: None,
            declaring: None,
        });
        self.stats.jds_connected.store(true, Ordering::Relaxed);
        self.request_token();
    }

    pub(super) fn on_jds_lost(&mut self) {
        self.jds.link = None;
        self.jds.declarations.clear();
        self.stats.jds_connected.store(false, Ordering::Relaxed);
        // Jobs already set stay good at the pool, but without a jd-server no newer
        // template can be declared: the pool's jobs follow the mempool.
        self.jds.last_declared = None;
        self.fall_back();
    }

    /// Forgets the tokens whose withdrawals were for the previous height (the jd-server
    /// refuses them paid at another); tokens without any stay good.
    pub(super) fn drop_payout_tokens(&mut self) {
        if let Some(jds) = &mut self.jds.link {
            jds.tokens.retain(|(_, payouts)| payouts.is_empty());
        }
        self.request_token();
    }

    fn request_token(&mut self) {
        let id = self.request_id();
        let Some(jds) = &mut self.jds.link else {
            return;
        };
        if jds.allocating || jds.tokens.len() >= 2 {
            return;
        }
        jds.allocating = true;
        let _ = jds.tx.try_send(AnyMessageOwned::JobDeclaration(
            JobDeclarationOwned::AllocateMiningJobToken(AllocateMiningJobTokenOwned {
                user_identifier: hashpool_sv2_io::str0255(&self.config.pool.user_identity),
                request_id: id,
            }),
        ));
    }

    /// Declares the current template when everything it needs is there.
    pub(super) fn try_declare(&mut self) {
        let Some(template_id) = self.tp.current else {
            return;
        };
        let (Some(tp_tip), Some(pool)) = (&self.tp.tip, &self.pool.link) else {
            return;
        };
        let Some(pool_tip) = &pool.tip else { return };
        let prev_hash = tp_tip.prev_hash.to_array();
        // The pool takes custom jobs on its own tip only.
        if pool_tip.prev_hash.to_array() != prev_hash {
            return;
        }
        if self.jds.last_declared == Some((template_id, prev_hash, pool.opening)) {
            return;
        }
        let (Some(template), Some(txs)) = (
            self.tp.templates.get(&template_id),
            self.tp.tx_data.get(&template_id),
        ) else {
            return;
        };
        let Some(jds) = &self.jds.link else {
            // No jd-server: this template is mined through the pool's job.
            self.fall_back();
            return;
        };
        if let Some((request_id, at)) = jds.declaring {
            if at.elapsed() < DECLARATION_TIMEOUT {
                return;
            }
            // The jd-server never answered (or asked for what the job does not have): this
            // template is mined through the pool's job; the next one is declared.
            warn!(request_id, "no answer to a declaration: giving up on it");
            self.jds.declarations.remove(&request_id);
            self.stats
                .declarations_refused
                .fetch_add(1, Ordering::Relaxed);
            if let Some(jds) = &mut self.jds.link {
                jds.declaring = None;
            }
            self.fall_back();
            return;
        }
        let Some(script) = jds.pool_script.clone() else {
            return;
        };
        if jds.tokens.is_empty() {
            self.request_token();
            return;
        }
        let Some((_, payouts)) = jds.tokens.front() else {
            return;
        };
        // The pool's output gets what the withdrawals leave; the jd-server offered them within
        // the subsidy, so they fit any template.
        let owed: u64 = payouts.iter().map(|p| p.value.to_sat()).sum();
        let Some(rest) = template.coinbase_tx_value_remaining.checked_sub(owed) else {
            warn!(
                template_id,
                "the token's withdrawals exceed the template's value"
            );
            if let Some(jds) = &mut self.jds.link {
                jds.tokens.pop_front();
            }
            return;
        };
        let mut outputs = vec![TxOut {
            value: bitcoin::Amount::from_sat(rest),
            script_pubkey: script,
        }];
        outputs.extend(payouts.iter().cloned());
        let full_extranonce_size = pool.prefix.len() + pool.size;
        let (prefix, suffix) = match self.factory.new_coinbase_tx_prefix_and_suffix(
            template.clone(),
            outputs.clone(),
            full_extranonce_size,
        ) {
            Ok(p) => p,
            Err(e) => {
                warn!(
                    template_id,
                    "cannot build the coinbase for a declaration: {e:?}"
                );
                return;
            }
        };
        let wtxids: Vec<U256Owned> = txs
            .iter()
            .map(|t| U256Owned::from(t.compute_wtxid().to_byte_array()))
            .collect();
        let declaration = Declaration {
            template: template.clone(),
            txs: txs.clone(),
            outputs,
            full_extranonce_size,
            opening: pool.opening,
            prev_hash,
            coinbase_prefix_bip141: prefix.clone(),
            coinbase_suffix_bip141: suffix.clone(),
        };
        let version = template.version;
        let opening = pool.opening;
        let request_id = self.request_id();
        let Some(jds) = &mut self.jds.link else {
            return;
        };
        let Some((token, _)) = jds.tokens.pop_front() else {
            return;
        };
        let message = (|| {
            Some(DeclareMiningJobOwned {
                request_id,
                mining_job_token: B0255Owned::new(token).ok()?,
                version,
                coinbase_tx_prefix: B064KOwned::new(prefix).ok()?,
                coinbase_tx_suffix: B064KOwned::new(suffix).ok()?,
                wtxid_list: Seq064KOwned::new(wtxids).ok()?,
                excess_data: B064KOwned::new(Vec::new()).ok()?,
            })
        })();
        let Some(message) = message else {
            warn!(template_id, "a declaration does not fit its message");
            return;
        };
        if jds
            .tx
            .try_send(AnyMessageOwned::JobDeclaration(
                JobDeclarationOwned::DeclareMiningJob(message),
            ))
            .is_err()
        {
            return;
        }
        jds.declaring = Some((request_id, Instant::now()));
        self.jds.declarations.insert(request_id, declaration);
        self.jds.last_declared = Some((template_id, prev_hash, opening));
        debug!(
            template_id,
            request_id,
            txs = self.jds.declarations[&request_id].txs.len(),
            "declaring"
        );
        self.request_token();
    }

    pub(super) fn on_jds(&mut self, m: JobDeclarationOwned) {
        match m {
            JobDeclarationOwned::AllocateMiningJobTokenSuccess(s) => {
                let max = self.config.max_pool_script_bytes;
                let Some(jds) = &mut self.jds.link else {
                    return;
                };
                jds.allocating = false;
                let outputs = consensus::deserialize::<Vec<TxOut>>(s.coinbase_outputs.as_ref())
                    .unwrap_or_default();
                let mut outputs = outputs.into_iter();
                let script = outputs.next().map(|o| o.script_pubkey);
                // The rest: withdrawals a coinbase declared with this token must pay.
                let payouts: Vec<TxOut> = outputs.collect();
                let payouts_ok = payouts.len() <= self.config.max_payout_outputs
                    && payouts
                        .iter()
                        .all(|p| !p.script_pubkey.is_empty() && p.script_pubkey.len() <= 34);
                match script {
                    Some(script) if !script.is_empty() && script.len() <= max && payouts_ok => {
                        jds.pool_script = Some(script);
                        jds.tokens
                            .push_back((s.mining_job_token.as_ref().to_vec(), payouts));
                        self.stats.tokens_allocated.fetch_add(1, Ordering::Relaxed);
                        self.try_declare();
                    }
                    _ => warn!(
                        max_pool_script_bytes = max,
                        max_payout_outputs = self.config.max_payout_outputs,
                        "the jd-server's coinbase outputs are missing, or larger than configured: not declaring"
                    ),
                }
            }
            JobDeclarationOwned::ProvideMissingTransactions(p) => {
                let Some(d) = self.jds.declarations.get(&p.request_id) else {
                    return;
                };
                let mut list = Vec::new();
                for position in p.unknown_tx_position_list.into_inner() {
                    match d.txs.get(position as usize) {
                        Some(t) => match B016MOwned::new(consensus::serialize(t)) {
                            Ok(b) => list.push(b),
                            Err(_) => return,
                        },
                        None => {
                            warn!(
                                position,
                                "the jd-server asked for a transaction the job does not have"
                            );
                            return;
                        }
                    }
                }
                debug!(
                    request_id = p.request_id,
                    count = list.len(),
                    "providing transactions"
                );
                if let (Some(jds), Ok(transaction_list)) = (&self.jds.link, Seq064KOwned::new(list))
                {
                    let _ = jds.tx.try_send(AnyMessageOwned::JobDeclaration(
                        JobDeclarationOwned::ProvideMissingTransactionsSuccess(
                            ProvideMissingTransactionsSuccessOwned {
                                request_id: p.request_id,
                                transaction_list,
                            },
                        ),
                    ));
                }
            }
            JobDeclarationOwned::DeclareMiningJobSuccess(s) => {
                if let Some(jds) = &mut self.jds.link {
                    jds.declaring = None;
                }
                let Some(d) = self.jds.declarations.remove(&s.request_id) else {
                    return;
                };
                self.stats.jobs_declared.fetch_add(1, Ordering::Relaxed);
                self.set_custom_job(d, s.new_mining_job_token.as_ref().to_vec());
                self.try_declare();
            }
            JobDeclarationOwned::DeclareMiningJobError(e) => {
                if let Some(jds) = &mut self.jds.link {
                    jds.declaring = None;
                }
                self.jds.declarations.remove(&e.request_id);
                self.stats
                    .declarations_refused
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    code = %hashpool_sv2_io::text(&e.error_code),
                    details = %String::from_utf8_lossy(e.error_details.as_ref()),
                    "the jd-server refused a job: mining pool jobs"
                );
                self.fall_back();
                self.try_declare();
            }
            other => debug!("ignoring jd-server message {other}"),
        }
    }
}
