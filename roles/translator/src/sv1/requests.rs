//! A miner's requests: subscribe, authorize, configure, extranonce.subscribe,
//! suggest_difficulty, and submit (handed to [`super::shares`]).

use std::time::Duration;

use hashpool_shares::VERSION_ROLLING_MASK;
use hashpool_sv1::{error_code, response_error, response_ok, ClientRequest};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{
    key_channels::{JoinRefused, KeyChannels},
    miner::{on_work, Miner},
    shares::on_submit,
    username::parse_username,
    vardiff::suggest_difficulty,
    Shared, Work,
};
use crate::{stats::Sv1Limit, sv2::Command};
use tracing::debug;

/// How long a new subscription waits for the pool's first work.
const WORK_WAIT: Duration = Duration::from_secs(10);

/// The lines answering `request` (a share's answer may come later, through `out`).
pub(super) async fn on_request(
    request: ClientRequest,
    m: &mut Miner,
    work: &mut Work,
    shared: &Shared,
    out: &mpsc::UnboundedSender<String>,
) -> Vec<String> {
    match request {
        ClientRequest::Subscribe { id, .. } => subscribe(id, m, work, shared).await,
        ClientRequest::Authorize { id, user, .. } => authorize(id, user, m, work, shared).await,
        ClientRequest::Configure {
            id,
            extensions,
            version_rolling_mask,
            ..
        } => vec![configure(id, extensions, version_rolling_mask, m)],
        ClientRequest::ExtranonceSubscribe { id } => {
            m.extranonce_subscribed = true;
            vec![response_ok(&id, json!(true))]
        }
        ClientRequest::SuggestDifficulty { id, difficulty } => {
            suggest_difficulty(m, difficulty, work, shared).await;
            let mut replies = vec![response_ok(&id, json!(true))];
            replies.extend(current_work(m, work));
            replies
        }
        ClientRequest::Submit { id, submit } => on_submit(id, submit, m, work, shared, out).await,
    }
}

/// What the miner is sent of the current work, if there is any.
fn current_work(m: &mut Miner, work: &Work) -> Vec<String> {
    let current = work.borrow().clone();
    current.map(|w| on_work(m, &w)).unwrap_or_default()
}

/// `mining.subscribe`: in channel-per-miner mode the miner's channel is opened first; either way
/// the answer waits for the pool's first work (the extranonce comes with it). In public mode the
/// extranonce is the miner's own (its index) and the answer is immediate: its channel is its
/// key's, known at authorize.
async fn subscribe(id: Value, m: &mut Miner, work: &mut Work, shared: &Shared) -> Vec<String> {
    if m.fixed_extranonce {
        m.subscribed = true;
        return vec![subscribed(&id, m)];
    }
    if let Some(own) = m.own_channel.take() {
        let open = Command::Open {
            miner: m.index,
            hashrate: m.hashrate,
            work: own,
            key: None,
        };
        if shared.commands.send(open).await.is_err() {
            return vec![response_error(
                &id,
                error_code::OTHER,
                "translator stopping",
            )];
        }
    }
    let current = match tokio::time::timeout(WORK_WAIT, work.wait_for(|w| w.is_some())).await {
        Ok(Ok(w)) => w.clone(),
        _ => None,
    };
    let Some(w) = current else {
        return vec![response_error(
            &id,
            error_code::OTHER,
            "the pool is unreachable; try again",
        )];
    };
    m.subscribed = true;
    m.take_extranonce(&w);
    vec![subscribed(&id, m)]
}

fn subscribed(id: &Value, m: &Miner) -> String {
    let subscription = format!("{:08x}", m.index);
    response_ok(
        id,
        json!([
            [
                ["mining.set_difficulty", subscription],
                ["mining.notify", subscription]
            ],
            hex::encode(m.extranonce1()),
            m.extranonce2_size
        ]),
    )
}

/// `mining.authorize`: any non-empty worker name (in public mode one that names the miner's
/// key, see [`super::username`]), after subscribe; the miner's work follows.
async fn authorize(
    id: Value,
    user: String,
    m: &mut Miner,
    work: &mut Work,
    shared: &Shared,
) -> Vec<String> {
    if !m.subscribed {
        return vec![response_error(
            &id,
            error_code::NOT_SUBSCRIBED,
            "subscribe first",
        )];
    }
    if user.is_empty() {
        return vec![response_error(
            &id,
            error_code::UNAUTHORIZED,
            "empty worker name",
        )];
    }
    if let Some(keys) = &shared.keys {
        if let Err(refusal) = join_key(&user, m, work, keys, shared).await {
            debug!(miner = m.index, "authorize refused: {refusal}");
            return vec![response_error(&id, error_code::UNAUTHORIZED, &refusal)];
        }
    }
    if m.authorized.is_none() {
        shared.stats.rehash(0.0, m.hashrate);
    }
    m.counters = Some(shared.stats.register_miner(m.index, &user, m.hashrate));
    m.authorized = Some(user);
    let mut replies = vec![response_ok(&id, json!(true))];
    replies.extend(current_work(m, work));
    replies
}

/// Public mode: the miner mines on the channel of the key its username names. A connection
/// stays with its first key (another worker of the same key may authorize on it too).
async fn join_key(
    user: &str,
    m: &mut Miner,
    work: &mut Work,
    keys: &KeyChannels,
    shared: &Shared,
) -> Result<(), String> {
    let named = parse_username(user, keys.default_key()).map_err(|e| e.to_string())?;
    match m.key {
        Some((key, _)) if key == named.key => Ok(()),
        Some((key, _)) => Err(format!(
            "this connection mines for {key}; connect again to mine for another key"
        )),
        None => {
            let joined = keys
                .join(named.key, m.source, m.hashrate, &shared.commands)
                .await
                .map_err(|refused| {
                    if let JoinRefused::TooManyKeys(_) = refused {
                        shared.stats.limit_hits.count(Sv1Limit::KeysPerAddress);
                    }
                    refused.to_string()
                })?;
            m.key = Some((named.key, joined.slot));
            *work = joined.work;
            Ok(())
        }
    }
}

/// `mining.configure`: version rolling (BIP 310, within BIP 320's bits); no other extension.
fn configure(
    id: Value,
    extensions: Vec<String>,
    version_rolling_mask: Option<u32>,
    m: &mut Miner,
) -> String {
    let mut result = serde_json::Map::new();
    for e in extensions {
        if e == "version-rolling" {
            let mask = version_rolling_mask.unwrap_or(VERSION_ROLLING_MASK) & VERSION_ROLLING_MASK;
            m.version_rolling = mask != 0;
            result.insert("version-rolling".into(), json!(mask != 0));
            result.insert("version-rolling.mask".into(), json!(format!("{mask:08x}")));
        } else {
            result.insert(e, json!(false));
        }
    }
    response_ok(&id, Value::Object(result))
}
