//! Settlement epochs in the mint: one `hash` keyset per epoch (docs/settlement.md, "Epochs in
//! the mint"), so that ehash carries the epoch whose rate it is redeemed at.
//!
//! CDK 0.18.3 signs only with a unit's one active keyset; a closed epoch's ehash must still be
//! minted (its quotes can be minted late) and swapped (it can change hands). So the mint's
//! signatory is [`EpochSignatory`]: CDK's own `DbSignatory` for every other keyset (the `hash`
//! keyset of ehash from before epochs, any other unit), and beside it the epochs' keysets,
//! every one of which signs. Each is derived from the mint's seed along
//! `m/EPOCH_PURPOSE'/<epoch>'`, so it is the same after a restart without storing a secret, and
//! recorded in CDK's keyset table (the proofs' foreign key) with no derivation index, so CDK's
//! own choice of the unit's active keyset never picks one.
//!
//! Which keyset a quote's outputs and a swap's outputs must be in is checked at the HTTP layer
//! (`http::keep_epochs`); this module says which epoch a keyset is.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use async_trait::async_trait;
use bitcoin::{
    bip32::{ChildNumber, DerivationPath, Xpriv},
    secp256k1::{All, Secp256k1},
};
use cdk::nuts::{
    nut02::KeySetVersion, BlindSignature, BlindedMessage, CurrencyUnit, Id, MintKeySet, Proof,
};
use cdk_common::{
    database::{Error as DbError, MintKeysDatabase},
    dhke::{sign_message, verify_message},
    mint::MintKeySetInfo,
    Error,
};
use cdk_signatory::{
    db_signatory::DbSignatory,
    signatory::{RotateKeyArguments, Signatory, SignatoryKeySet, SignatoryKeysets},
};
use tokio::sync::watch;

/// The hardened purpose of the epochs' derivation paths: "hash" in ASCII, below 2^31 as a
/// hardened index must be. CDK's own keysets live under its purpose 129372'.
pub const EPOCH_PURPOSE: u32 = 0x6861_7368;

pub type KeysDb = Arc<dyn MintKeysDatabase<Err = DbError> + Send + Sync>;

/// `m/EPOCH_PURPOSE'/<epoch>'`. An epoch is a u32 and a hardened index holds 31 bits: epochs
/// past 2^31 - 1 are refused (at an epoch a minute that is four thousand years).
pub fn derivation_path(epoch: u32) -> Option<DerivationPath> {
    let purpose = ChildNumber::from_hardened_idx(EPOCH_PURPOSE).ok()?;
    let epoch = ChildNumber::from_hardened_idx(epoch).ok()?;
    Some(DerivationPath::from(vec![purpose, epoch]))
}

/// The epoch a keyset's derivation path is of, if it is an epoch's.
pub fn epoch_of_path(path: &DerivationPath) -> Option<u32> {
    match path.as_ref() {
        [ChildNumber::Hardened { index: purpose }, ChildNumber::Hardened { index: epoch }]
            if *purpose == EPOCH_PURPOSE =>
        {
            Some(*epoch)
        }
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EpochKeysetError {
    #[error("epoch {0} is past the last epoch a keyset can be derived for")]
    OutOfRange(u32),
    #[error("recording the keyset of epoch {0}: {1}")]
    Database(u32, String),
}

struct EpochKeyset {
    epoch: u32,
    keyset: MintKeySet,
    amounts: Vec<u64>,
}

impl EpochKeyset {
    fn public(&self) -> SignatoryKeySet {
        SignatoryKeySet {
            id: self.keyset.id,
            unit: self.keyset.unit.clone(),
            active: true,
            keys: self.keyset.keys.clone().into(),
            amounts: self.amounts.clone(),
            input_fee_ppk: 0,
            final_expiry: None,
            issuer_version: None,
            version: 1,
        }
    }
}

#[derive(Default)]
struct Epochs {
    by_epoch: BTreeMap<u32, Arc<EpochKeyset>>,
    by_id: HashMap<Id, Arc<EpochKeyset>>,
}

/// The mint's signatory: CDK's, with every epoch's `hash` keyset signing beside it.
pub struct EpochSignatory {
    inner: Arc<DbSignatory>,
    keys_db: KeysDb,
    secp: Secp256k1<All>,
    xpriv: Xpriv,
    unit: CurrencyUnit,
    amounts: Vec<u64>,
    epochs: RwLock<Arc<Epochs>>,
    /// CDK's signatory's latest keysets.
    inner_view: watch::Receiver<SignatoryKeysets>,
    /// Epochs are added one at a time (derive, record, publish).
    adding: tokio::sync::Mutex<()>,
    updates: watch::Sender<SignatoryKeysets>,
}

impl EpochSignatory {
    /// CDK's signatory on `keys_db` for `units` (unit -> input fee, amounts), and the epoch
    /// keysets of `unit` already recorded there.
    pub async fn open(
        keys_db: KeysDb,
        seed: &[u8],
        units: HashMap<CurrencyUnit, (u64, Vec<u64>)>,
        unit: CurrencyUnit,
    ) -> anyhow::Result<Arc<Self>> {
        let amounts = units
            .get(&unit)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| anyhow::anyhow!("unit {unit} is not configured"))?;
        let inner = Arc::new(DbSignatory::new(keys_db.clone(), seed, units, HashMap::new()).await?);
        let xpriv = Xpriv::new_master(bitcoin::Network::Bitcoin, seed)?;
        let mut inner_updates = inner.subscribe_keysets().await?;
        let first = inner_updates.borrow_and_update().clone();
        let (updates, _) = watch::channel(first);
        let signatory = Arc::new(Self {
            inner,
            inner_view: inner_updates.clone(),
            keys_db: keys_db.clone(),
            secp: Secp256k1::new(),
            xpriv,
            unit,
            amounts,
            epochs: RwLock::default(),
            adding: Default::default(),
            updates,
        });
        let infos = {
            let mut tx = keys_db.begin_transaction().await?;
            let infos = tx.get_keyset_infos().await?;
            tx.commit().await?;
            infos
        };
        let recorded: Vec<u32> = infos
            .iter()
            .filter(|info| info.unit == signatory.unit)
            .filter_map(|info| epoch_of_path(&info.derivation_path))
            .collect();
        for epoch in recorded {
            signatory.ensure_epoch(epoch).await?;
        }
        signatory.publish();
        // CDK's own keysets change when it rotates one: pass those changes on, merged.
        let weak = Arc::downgrade(&signatory);
        tokio::spawn(async move {
            while inner_updates.changed().await.is_ok() {
                match weak.upgrade() {
                    Some(signatory) => signatory.publish(),
                    None => break,
                }
            }
        });
        Ok(signatory)
    }

    fn epochs(&self) -> Arc<Epochs> {
        self.epochs
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The keyset of `epoch`, derived and recorded the first time it is asked for.
    pub async fn ensure_epoch(&self, epoch: u32) -> Result<Id, EpochKeysetError> {
        if let Some(k) = self.epochs().by_epoch.get(&epoch) {
            return Ok(k.keyset.id);
        }
        let _one_at_a_time = self.adding.lock().await;
        if let Some(k) = self.epochs().by_epoch.get(&epoch) {
            return Ok(k.keyset.id);
        }
        let path = derivation_path(epoch).ok_or(EpochKeysetError::OutOfRange(epoch))?;
        let keyset = MintKeySet::generate_from_xpriv(
            &self.secp,
            self.xpriv,
            &self.amounts,
            self.unit.clone(),
            path.clone(),
            0,
            None,
            KeySetVersion::Version01,
        );
        let id = keyset.id;
        let info = MintKeySetInfo {
            id,
            unit: self.unit.clone(),
            // CDK's active flag is its one active keyset per unit: ours sign through this
            // signatory, whatever the table says.
            active: false,
            valid_from: 0,
            derivation_path: path,
            derivation_path_index: None,
            amounts: self.amounts.clone(),
            input_fee_ppk: 0,
            final_expiry: None,
            issuer_version: None,
        };
        let record = async {
            let mut tx = self.keys_db.begin_transaction().await?;
            tx.add_keyset_info(info).await?;
            tx.commit().await
        };
        record
            .await
            .map_err(|e| EpochKeysetError::Database(epoch, e.to_string()))?;
        let added = Arc::new(EpochKeyset {
            epoch,
            keyset,
            amounts: self.amounts.clone(),
        });
        {
            let mut guard = self
                .epochs
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut next = Epochs {
                by_epoch: guard.by_epoch.clone(),
                by_id: guard.by_id.clone(),
            };
            next.by_epoch.insert(epoch, added.clone());
            next.by_id.insert(id, added);
            *guard = Arc::new(next);
        }
        tracing::info!(epoch, keyset = %id, "epoch keyset added");
        self.publish();
        Ok(id)
    }

    /// The ehash unit.
    pub fn unit(&self) -> &CurrencyUnit {
        &self.unit
    }

    /// The epoch a keyset is of (`None`: not an epoch's).
    pub fn epoch_of(&self, id: &Id) -> Option<u32> {
        self.epochs().by_id.get(id).map(|k| k.epoch)
    }

    /// The keyset of an epoch, if the mint has one.
    pub fn keyset_of(&self, epoch: u32) -> Option<Id> {
        self.epochs().by_epoch.get(&epoch).map(|k| k.keyset.id)
    }

    /// The newest epoch's keyset.
    pub fn newest(&self) -> Option<Id> {
        self.epochs()
            .by_epoch
            .last_key_value()
            .map(|(_, k)| k.keyset.id)
    }

    /// Every epoch with its keyset, oldest first.
    pub fn all(&self) -> Vec<(u32, Id)> {
        self.epochs()
            .by_epoch
            .iter()
            .map(|(e, k)| (*e, k.keyset.id))
            .collect()
    }

    /// CDK's keysets with the epochs' beside them, CDK's active `hash` keyset first (CDK's
    /// builder and wallets that take the first active one see the pre-epoch keyset).
    fn merged(&self, inner: SignatoryKeysets) -> SignatoryKeysets {
        let epochs = self.epochs();
        let mut keysets: Vec<SignatoryKeySet> = inner
            .keysets
            .into_iter()
            .filter(|k| !epochs.by_id.contains_key(&k.id))
            .collect();
        keysets.sort_by_key(|k| !(k.active && k.unit == self.unit));
        keysets.extend(epochs.by_epoch.values().map(|k| k.public()));
        SignatoryKeysets {
            pubkey: inner.pubkey,
            keysets,
        }
    }

    fn publish(&self) {
        let latest = self.inner_view.borrow().clone();
        self.updates.send_replace(self.merged(latest));
    }

    fn sign_one(
        &self,
        epochs: &Epochs,
        message: BlindedMessage,
    ) -> Option<Result<BlindSignature, Error>> {
        let k = epochs.by_id.get(&message.keyset_id)?;
        Some((|| {
            let pair = k
                .keyset
                .keys
                .get(&message.amount)
                .ok_or(Error::UnknownKeySet)?;
            let c = sign_message(&pair.secret_key, &message.blinded_secret)?;
            Ok(BlindSignature::new(
                message.amount,
                c,
                message.keyset_id,
                &message.blinded_secret,
                &pair.secret_key,
            )?)
        })())
    }
}

#[async_trait]
impl Signatory for EpochSignatory {
    fn name(&self) -> String {
        format!("hashpool epochs over {}", self.inner.name())
    }

    async fn blind_sign(
        &self,
        blinded_messages: Vec<BlindedMessage>,
    ) -> Result<Vec<BlindSignature>, Error> {
        let epochs = self.epochs();
        if !blinded_messages
            .iter()
            .any(|m| epochs.by_id.contains_key(&m.keyset_id))
        {
            return self.inner.blind_sign(blinded_messages).await;
        }
        // Ours signed here, the rest by CDK's, answers in the order asked.
        let mut answers: Vec<Option<BlindSignature>> = vec![None; blinded_messages.len()];
        let mut theirs = Vec::new();
        let mut their_places = Vec::new();
        for (i, message) in blinded_messages.into_iter().enumerate() {
            match self.sign_one(&epochs, message.clone()) {
                Some(signed) => answers[i] = Some(signed?),
                None => {
                    theirs.push(message);
                    their_places.push(i);
                }
            }
        }
        if !theirs.is_empty() {
            let signed = self.inner.blind_sign(theirs).await?;
            if signed.len() != their_places.len() {
                return Err(Error::Internal);
            }
            for (i, s) in their_places.into_iter().zip(signed) {
                answers[i] = Some(s);
            }
        }
        answers
            .into_iter()
            .map(|a| a.ok_or(Error::Internal))
            .collect()
    }

    async fn verify_proofs(&self, proofs: Vec<Proof>) -> Result<(), Error> {
        let epochs = self.epochs();
        let (ours, theirs): (Vec<Proof>, Vec<Proof>) = proofs
            .into_iter()
            .partition(|p| epochs.by_id.contains_key(&p.keyset_id));
        for proof in &ours {
            let k = epochs
                .by_id
                .get(&proof.keyset_id)
                .ok_or(Error::UnknownKeySet)?;
            let pair = k
                .keyset
                .keys
                .get(&proof.amount)
                .ok_or(Error::UnknownKeySet)?;
            verify_message(&pair.secret_key, proof.c, proof.secret.as_bytes())?;
        }
        if theirs.is_empty() {
            return Ok(());
        }
        self.inner.verify_proofs(theirs).await
    }

    async fn keysets(&self) -> Result<SignatoryKeysets, Error> {
        Ok(self.merged(self.inner.keysets().await?))
    }

    async fn subscribe_keysets(&self) -> Result<watch::Receiver<SignatoryKeysets>, Error> {
        Ok(self.updates.subscribe())
    }

    async fn rotate_keyset(&self, args: RotateKeyArguments) -> Result<SignatoryKeySet, Error> {
        let rotated = self.inner.rotate_keyset(args).await?;
        self.publish();
        Ok(rotated)
    }
}
