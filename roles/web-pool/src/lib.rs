//! `web-pool`: the operator's dashboard. It reads stats-pool's API (hashrate samples and the
//! last minute's, hour's and day's averages, channels
//! and the proxies they come from, blocks, ehash issued, health reported by the pool) and checks
//! the pool's monitoring API and the mint itself; the page refreshes by itself. Each miner key
//! has its own page ([`miner`]), from the pool's per-key API.

pub mod cli;
pub mod miner;
mod settlement;

use std::{net::SocketAddr, sync::Arc};

use axum::{extract::State, response::Html, routing::get, Json, Router};
use hashpool_web::{
    hashrate_windows, page,
    stats_charts::Titles,
    units, unix_now,
    upstream::{answers, Upstream},
    Dashboard, Running,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Where web-pool listens and what it reads, from the shared pool topology.
#[derive(Debug, Clone)]
pub struct WebPoolConfig {
    pub address: SocketAddr,
    /// stats-pool's HTTP API, e.g. `http://127.0.0.1:8091`.
    pub stats_url: String,
    /// The pool's monitoring API.
    pub pool_monitoring_url: String,
    /// The pool's per-key miner API (`pool.api_address`); the miner pages say they are off
    /// without it.
    pub pool_api_url: Option<String>,
    /// The mint's Cashu API.
    pub mint_url: String,
    /// The page reloads its data this often.
    pub refresh_secs: u64,
    /// Other names the page may be reached by (`host:port`); its own address, `localhost` and
    /// `127.0.0.1` on its port always work.
    pub allowed_hosts: Vec<String>,
}

#[derive(Clone)]
pub(crate) struct AppState {
    config: Arc<WebPoolConfig>,
    upstream: Upstream,
}

pub async fn start(config: WebPoolConfig, shutdown: CancellationToken) -> std::io::Result<Running> {
    dashboard(config).serve(shutdown).await
}

/// The charts' titles.
const CHARTS: Titles = Titles {
    hashrate: "Pool hashrate",
    issuance: "ehash issued",
};

/// The page and its API, ready to serve.
pub fn dashboard(config: WebPoolConfig) -> Dashboard {
    let upstream = Upstream::default();
    let charts = CHARTS.routes(upstream.clone(), config.stats_url.clone());
    let listen = (config.address, config.allowed_hosts.clone());
    let state = AppState {
        config: Arc::new(config),
        upstream,
    };
    let app = Router::new()
        .route("/", get(index))
        .route("/api/summary", get(summary))
        .merge(miner::routes())
        .with_state(state);
    Dashboard::new(cli::BINARY.name, listen, app.merge(charts))
}

async fn index(State(s): State<AppState>) -> Html<String> {
    let body = format!(
        r#"{search}
{hashrate_cards}
<div class="cards">
  <div class="card"><div class="label">Blocks found</div><div class="value" id="blocks-count">–</div></div>
  <div class="card"><div class="label">ehash issued</div><div class="value" id="ehash">–</div></div>
  <div class="card"><div class="label">Proxies / channels</div><div class="value" id="connected">–</div></div>
</div>
<div class="cards">
  <div class="card"><div class="label">Network difficulty</div><div class="value" id="net-difficulty">–</div></div>
  <div class="card"><div class="label">Mining height</div><div class="value" id="net-height">–</div></div>
  <div class="card"><div class="label">Last block found</div><div class="value" id="last-block">–</div></div>
  <div class="card"><div class="label">Round effort</div><div class="value" id="effort">–</div></div>
</div>
{hashrate_chart}
<section><h2>Services</h2><table id="health"><tr><td class="empty">loading…</td></tr></table></section>
<section><h2>Connected proxies and channels</h2><table id="channels"><tr><td class="empty">loading…</td></tr></table></section>
<section><h2>Blocks found</h2><table id="blocks"><tr><td class="empty">loading…</td></tr></table></section>
<section><h2>Settlement</h2><p id="settlement-terms" class="empty">loading…</p>
<p id="liabilities" class="empty"></p>
<table id="epochs"><tr><td class="empty">loading…</td></tr></table>
<table id="settled-blocks"></table></section>
{issuance_chart}"#,
        search = miner::search_box(),
        hashrate_cards = hashrate_windows::cards("Pool hashrate"),
        hashrate_chart = page::chart("Pool hashrate", "hashrate"),
        issuance_chart = page::chart("ehash issued", "issuance"),
    );
    let script = format!(
        r#"const charts = hp.charts(['hashrate', 'issuance']);
hp.refresh({refresh}, async () => {{
  const s = await hp.json('/api/summary');
  hp.windows(s.hashrate_windows);
  document.getElementById('blocks-count').textContent = s.blocks_found;
  document.getElementById('ehash').textContent = s.ehash_issued + ' hash';
  document.getElementById('connected').textContent = s.proxies.length + ' / ' + s.channels.length;
  document.getElementById('net-difficulty').textContent = s.network.difficulty_text;
  document.getElementById('net-height').textContent = s.network.height_text;
  document.getElementById('last-block').textContent = s.network.last_block_text;
  document.getElementById('effort').textContent = s.network.effort_text;
  document.getElementById('health').innerHTML = '<tr><th>service</th><th>state</th><th>detail</th></tr>' +
    s.health.map(h => `<tr><td>${{hp.esc(h.name)}}</td><td>${{hp.state(h.up)}}</td><td>${{hp.esc(h.detail)}}</td></tr>`).join('');
  document.getElementById('channels').innerHTML = s.channels.length === 0
    ? '<tr><td class="empty">no channel open</td></tr>'
    : '<tr><th>proxy / miner</th><th>channel</th><th class="num">hashrate</th><th class="num">shares</th></tr>' +
      s.channels.map(c => `<tr><td>${{hp.esc(c.proxy)}}</td><td>${{hp.esc(c.label)}}</td><td class="num">${{hp.esc(c.hashrate_text)}}</td><td class="num">${{c.shares_total}}</td></tr>`).join('');
  const st = s.settlement;
  document.getElementById('settlement-terms').textContent = st.on
    ? `fee ${{st.fee_text}}, each block pays the last ${{st.window_text}}; fees taken ${{st.fees_text}}, carried to the next block ${{st.carry_text}}; ${{st.final_epochs}} epoch(s) final`
    : 'settlement is off (the pool has no [settlement] section, or its API is not reachable)';
  document.getElementById('liabilities').textContent = st.on
    ? `outstanding: final epochs' rewards not yet redeemed ${{st.liabilities.unredeemed_text}}; sat ecash not withdrawn ${{st.liabilities.sat_ecash_text}}; withdrawals owed on chain ${{st.liabilities.owed_text}} (${{st.liabilities.owed_count}} payout(s))`
    : '';
  document.getElementById('epochs').innerHTML = st.epochs.length === 0
    ? '<tr><td class="empty">no epoch yet</td></tr>'
    : '<tr><th class="num">epoch</th><th>state</th><th class="num">ehash</th><th class="num">reward</th><th class="num">not yet matured</th><th class="num">rate</th></tr>' +
      st.epochs.map(e => `<tr><td class="num">${{e.index}}</td><td>${{hp.esc(e.state)}}</td><td class="num">${{e.ehash}}</td><td class="num">${{hp.esc(e.reward_text)}}</td><td class="num">${{hp.esc(e.pending_text)}}</td><td class="num">${{hp.esc(e.rate_text)}}</td></tr>`).join('');
  document.getElementById('settled-blocks').innerHTML = st.blocks.length === 0
    ? ''
    : '<tr><th class="num">height</th><th>standing</th><th class="num">value</th><th class="num">paid to epochs</th><th class="num">epochs</th></tr>' +
      st.blocks.map(b => `<tr><td class="num">${{hp.esc(b.height_text)}}</td><td>${{hp.esc(b.status)}}</td><td class="num">${{hp.esc(b.value_text)}}</td><td class="num">${{hp.esc(b.paid_text)}}</td><td class="num">${{b.epochs}}</td></tr>`).join('');
  document.getElementById('blocks').innerHTML = s.blocks.length === 0
    ? '<tr><td class="empty">none yet</td></tr>'
    : '<tr><th>found</th><th class="num">height</th><th class="num">reward</th><th class="num">effort</th><th>block hash</th><th>channel</th></tr>' +
      s.blocks.map(b => `<tr><td>${{new Date(b.at * 1000).toLocaleString()}}</td><td class="num">${{hp.esc(b.height_text)}}</td><td class="num">${{hp.esc(b.reward_text)}}</td><td class="num">${{hp.esc(b.effort_text)}}</td><td><code>${{hp.esc(b.hash)}}</code></td><td>${{hp.esc(b.subject)}}</td></tr>`).join('');
  await charts();
}});"#,
        refresh = s.config.refresh_secs.max(1),
    );
    page::page("Hashpool — pool", "operator dashboard", &body, &script)
}

/// Everything the page shows but the charts, in one request.
async fn summary(State(s): State<AppState>) -> Json<Value> {
    let stats = &s.config.stats_url;
    let u = &s.upstream;
    let urls = [
        format!("{stats}/api/v1/health"),
        format!(
            "{stats}/api/v1/hashrate?range=1m&{}",
            hashrate_windows::query()
        ),
        format!("{stats}/api/v1/subjects?kind=channel"),
        format!("{stats}/api/v1/subjects?kind=downstream"),
        format!("{stats}/api/v1/blocks?limit=10"),
        format!("{stats}/api/v1/issuance?range=24h&limit=1"),
        format!("{}/api/v1/health", s.config.pool_monitoring_url),
        format!("{}/v1/info", s.config.mint_url),
        format!("{stats}/api/v1/network"),
    ];
    // The pool's settlement report and its payouts, fetched with the rest (none without its
    // API); then the mint's report of the newest final epoch, for what the mint owes.
    let settlement = async {
        let Some(api) = &s.config.pool_api_url else {
            return None;
        };
        let (report_url, payouts_url) = (
            format!("{api}/api/v1/settlement"),
            format!("{api}/api/v1/settlement/payouts"),
        );
        let (report, payouts) = tokio::join!(u.get(&report_url), u.get(&payouts_url));
        let report = report.ok()?;
        let newest_final = report["epochs"].as_array().and_then(|e| {
            e.iter()
                .rev()
                .find(|e| e["state"] == "final")
                .and_then(|e| e["index"].as_u64())
        });
        let mint = match newest_final {
            Some(e) => u
                .get(&format!(
                    "{}/v1/hashpool/epochs/{e}/report",
                    s.config.mint_url
                ))
                .await
                .ok(),
            None => None,
        };
        Some(json!({ "report": report, "payouts": payouts.ok(), "mint": mint }))
    };
    let (
        health,
        hashrate,
        channels,
        downstreams,
        blocks,
        issuance,
        pool_up,
        mint_up,
        network,
        settlement,
    ) = tokio::join!(
        u.get(&urls[0]),
        u.get(&urls[1]),
        u.get(&urls[2]),
        u.get(&urls[3]),
        u.get(&urls[4]),
        u.get(&urls[5]),
        u.up(&urls[6]),
        u.up(&urls[7]),
        u.get(&urls[8]),
        settlement,
    );
    let ([health, hashrate, channels, downstreams, blocks, issuance, network], errors) = answers([
        health,
        hashrate,
        channels,
        downstreams,
        blocks,
        issuance,
        network,
    ]);
    let reported = |name: &str| {
        health["services"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == name).cloned())
    };
    // The pool reports the template provider's state every few seconds; a report a minute old
    // means the pool stopped reporting, and the provider's state is unknown.
    let tp = reported("template-provider").filter(|t| {
        t["last_seen"]
            .as_i64()
            .is_some_and(|seen| unix_now() - seen < 60)
    });
    let stats_up = !health.is_null();
    let service =
        |name: &str, up: bool, detail: String| json!({"name": name, "up": up, "detail": detail});
    let health_rows = vec![
        service("pool", pool_up, s.config.pool_monitoring_url.clone()),
        service("mint", mint_up, s.config.mint_url.clone()),
        service(
            "template-provider",
            tp.as_ref().is_some_and(|t| t["up"] == true),
            tp.as_ref()
                .and_then(|t| t["detail"].as_str().map(str::to_string))
                .unwrap_or_else(|| "no recent report from the pool".into()),
        ),
        service("stats-pool", stats_up, stats.clone()),
    ];
    let connected = |v: &Value| -> Vec<Value> {
        v["subjects"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| r["connected"] == true)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let proxies = connected(&downstreams);
    let proxy_label = |id: &Value| {
        proxies
            .iter()
            .find(|p| &p["id"] == id)
            .and_then(|p| p["label"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let channel_rows: Vec<Value> = connected(&channels)
        .iter()
        .map(|c| {
            let hashrate = c["hashrate"].as_f64().unwrap_or(0.0);
            json!({
                "id": c["id"],
                "label": c["label"],
                "proxy": proxy_label(&c["parent"]),
                "hashrate": hashrate,
                "hashrate_text": units::hashrate(hashrate),
                "shares_total": c["shares_total"],
            })
        })
        .collect();
    let recent_blocks: Vec<Value> = blocks["blocks"]
        .as_array()
        .map(|rows| rows.iter().map(block_row).collect())
        .unwrap_or_default();
    Json(json!({
        "hashrate_windows": hashrate_windows::from_answer(&hashrate),
        "blocks_found": blocks["total"].as_i64().unwrap_or(0),
        "blocks": recent_blocks,
        "ehash_issued": issuance["total_amount"].as_i64().unwrap_or(0),
        "issuances": issuance["total_count"].as_i64().unwrap_or(0),
        "proxies": proxies,
        "channels": channel_rows,
        "health": health_rows,
        "network": network_cards(&network, unix_now()),
        "settlement": settlement.map_or_else(
            || settlement::view(&Value::Null, &Value::Null, &Value::Null),
            |s| settlement::view(&s["report"], &s["payouts"], &s["mint"]),
        ),
        "errors": errors,
    }))
}

/// `12.5 %`; a dash when unknown.
fn effort_text(effort: Option<f64>) -> String {
    effort
        .filter(|e| e.is_finite())
        .map_or_else(|| "–".into(), |e| format!("{:.1} %", e * 100.0))
}

/// A block of stats-pool's list, with its figures as the table shows them.
fn block_row(b: &Value) -> Value {
    let mut row = b.clone();
    row["height_text"] = json!(b["height"].as_i64().map_or("–".into(), |h| h.to_string()));
    row["reward_text"] = json!(b["reward_sats"]
        .as_i64()
        .map_or("–".into(), units::sats_as_btc));
    row["effort_text"] = json!(effort_text(b["effort"].as_f64()));
    row
}

/// The network cards: difficulty and height of the block being mined, the last block the pool
/// found, and the effort of the round since it, from stats-pool's `/api/v1/network`.
fn network_cards(n: &Value, now: i64) -> Value {
    let chain = &n["network"];
    let last = &n["last_block"];
    let last_block_text = match (last["at"].as_i64(), last["height"].as_i64()) {
        (Some(at), Some(h)) => format!("{h}, {}", units::ago(at * 1000, now * 1000)),
        (Some(at), None) => units::ago(at * 1000, now * 1000),
        _ => "none yet".into(),
    };
    json!({
        "height": chain["height"],
        "difficulty": chain["difficulty"],
        "height_text": chain["height"].as_i64().map_or("–".into(), |h| h.to_string()),
        "difficulty_text": chain["difficulty"].as_f64().map_or("–".into(), units::difficulty),
        "last_block_text": last_block_text,
        "effort": n["effort"],
        "effort_text": effort_text(n["effort"].as_f64()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_cards_read_stats_pools_answer() {
        let answer = json!({
            "network": {"reporter": "pool-1", "height": 840_001, "difficulty": 8.6e13,
                        "tip_seen_at": 1_000, "reported_at": 1_010},
            "last_block": {"hash": "00ab", "at": 400, "height": 839_990, "reward_sats": 312_500_000,
                           "effort": 1.25},
            "work_since_last_block": 4.3e13,
            "effort": 0.5,
        });
        let cards = network_cards(&answer, 1_000);
        assert_eq!(cards["height_text"], "840001");
        assert_eq!(cards["difficulty_text"], "86.00 T");
        assert_eq!(cards["last_block_text"], "839990, 10 min ago");
        assert_eq!(cards["effort_text"], "50.0 %");

        // Nothing reported yet (stats-pool down or no pool): dashes and "none yet".
        let empty = network_cards(&Value::Null, 1_000);
        assert_eq!(empty["height_text"], "–");
        assert_eq!(empty["difficulty_text"], "–");
        assert_eq!(empty["last_block_text"], "none yet");
        assert_eq!(empty["effort_text"], "–");
    }

    #[test]
    fn a_block_row_shows_height_reward_and_effort() {
        let row = block_row(&json!({"hash": "00", "at": 1, "height": 201,
                                    "reward_sats": 5_000_001_000i64, "effort": 0.031}));
        assert_eq!(row["height_text"], "201");
        assert_eq!(row["reward_text"], "50.00001000 BTC");
        assert_eq!(row["effort_text"], "3.1 %");
        // A block reported by an older pool: no figures, dashes.
        let row = block_row(&json!({"hash": "00", "at": 1}));
        assert_eq!(row["height_text"], "–");
        assert_eq!(row["reward_text"], "–");
        assert_eq!(row["effort_text"], "–");
    }
}
