//! The template provider: the templates it sends, its tip, and their transactions (asked for
//! to declare the current template).

use std::{collections::HashMap, sync::atomic::Ordering};

use bitcoin::{consensus, ScriptBuf, Transaction, TxOut};
use parsers_sv2::{AnyMessageOwned, TemplateDistributionOwned};
use template_distribution_sv2::{
    NewTemplateOwned, RequestTransactionData, SetNewPrevHashOwned as TpPrevHash,
};
use tracing::{debug, warn};

use super::{Core, Out};

/// Templates kept (the current one and a few future ones).
const MAX_TEMPLATES: usize = 16;

#[derive(Default)]
pub(super) struct TemplateProvider {
    pub(super) tx: Option<Out>,
    pub(super) templates: HashMap<u64, NewTemplateOwned>,
    pub(super) tip: Option<TpPrevHash>,
    /// The newest template on the current tip: the one to declare.
    pub(super) current: Option<u64>,
    pub(super) tx_data: HashMap<u64, Vec<Transaction>>,
}

impl TemplateProvider {
    /// Keeps a template, forgetting the oldest ones past [`MAX_TEMPLATES`].
    fn insert(&mut self, t: NewTemplateOwned) {
        self.templates.insert(t.template_id, t);
        while self.templates.len() > MAX_TEMPLATES {
            let Some(oldest) = self.templates.keys().min().copied() else {
                break;
            };
            self.templates.remove(&oldest);
            self.tx_data.remove(&oldest);
        }
    }
}

impl Core {
    pub(super) fn on_tp_up(&mut self, tx: Out) {
        // Room in the coinbase for the pool's output, whose script the jd-server gives later,
        // and for the withdrawals it may ask for (a standard output's script is at most 34
        // bytes).
        let mut outputs = vec![TxOut {
            value: bitcoin::Amount::ZERO,
            script_pubkey: ScriptBuf::from_bytes(vec![0; self.config.max_pool_script_bytes]),
        }];
        outputs.extend((0..self.config.max_payout_outputs).map(|_| TxOut {
            value: bitcoin::Amount::ZERO,
            script_pubkey: ScriptBuf::from_bytes(vec![0; 34]),
        }));
        let constraints =
            stratum_apps::coinbase_output_constraints::coinbase_output_constraints_message(outputs);
        let _ = tx.try_send(AnyMessageOwned::TemplateDistribution(
            TemplateDistributionOwned::CoinbaseOutputConstraints(constraints),
        ));
        self.tp.tx = Some(tx);
        self.stats.tp_connected.store(true, Ordering::Relaxed);
    }

    pub(super) fn on_tp_lost(&mut self) {
        self.tp = TemplateProvider::default();
        self.stats.tp_connected.store(false, Ordering::Relaxed);
    }

    pub(super) fn on_tp(&mut self, m: TemplateDistributionOwned) {
        match m {
            TemplateDistributionOwned::NewTemplate(t) => {
                debug!(
                    template_id = t.template_id,
                    future = t.future_template,
                    "new template"
                );
                let id = t.template_id;
                let future = t.future_template;
                self.tp.insert(t);
                if !future && self.tp.tip.is_some() {
                    self.tp.current = Some(id);
                    self.request_tx_data(id);
                }
            }
            TemplateDistributionOwned::SetNewPrevHash(p) => {
                debug!(
                    template_id = p.template_id,
                    "new tip from the template provider"
                );
                self.tp.current = Some(p.template_id);
                let id = p.template_id;
                self.tp.tip = Some(p);
                // Tokens carrying withdrawals were for the height just mined.
                self.drop_payout_tokens();
                self.request_tx_data(id);
            }
            TemplateDistributionOwned::RequestTransactionDataSuccess(s) => {
                let mut txs = Vec::new();
                for raw in s.transaction_list.into_inner() {
                    match consensus::deserialize::<Transaction>(raw.as_ref()) {
                        Ok(t) => txs.push(t),
                        Err(e) => {
                            warn!(
                                template_id = s.template_id,
                                "undecodable transaction from the template provider: {e}"
                            );
                            return;
                        }
                    }
                }
                self.tp.tx_data.insert(s.template_id, txs);
                self.try_declare();
            }
            TemplateDistributionOwned::RequestTransactionDataError(e) => {
                warn!(template_id = e.template_id, code = %hashpool_sv2_io::text(&e.error_code), "the template provider has no transactions for a template");
            }
            other => debug!("ignoring template provider message {other}"),
        }
    }

    fn request_tx_data(&mut self, template_id: u64) {
        if self.tp.tx_data.contains_key(&template_id) {
            self.try_declare();
            return;
        }
        if let Some(tp) = &self.tp.tx {
            let _ = tp.try_send(AnyMessageOwned::TemplateDistribution(
                TemplateDistributionOwned::RequestTransactionData(RequestTransactionData {
                    template_id,
                }),
            ));
        }
    }
}
