//! `web-proxy`: the miner's page. The wallet balance and recent issuance come from the
//! translator's wallet API, the SV1 miners and the ehash and hashrate history from stats-proxy,
//! the upstream pool's state from the translator's monitoring API. A form creates a token and a
//! button asks the faucet (both through the wallet API). The page refreshes by itself.

pub mod cli;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{rejection::JsonRejection, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use hashpool_web::{
    chart, page, range_secs, series, svg_response, units, unix_now, upstream::Upstream,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where web-proxy listens and what it reads, from the shared miner-side topology.
#[derive(Debug, Clone)]
pub struct WebProxyConfig {
    pub address: SocketAddr,
    /// stats-proxy's HTTP API.
    pub stats_url: String,
    /// The translator's wallet API.
    pub wallet_url: String,
    /// The translator's monitoring API.
    pub translator_url: String,
    pub refresh_secs: u64,
    /// Other names the page may be reached by (`host:port`); its own address, `localhost` and
    /// `127.0.0.1` on its port always work.
    pub allowed_hosts: Vec<String>,
}

#[derive(Clone)]
struct AppState {
    config: Arc<WebProxyConfig>,
    upstream: Upstream,
}

pub struct RunningWebProxy {
    pub address: SocketAddr,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start(
    config: WebProxyConfig,
    shutdown: CancellationToken,
) -> std::io::Result<RunningWebProxy> {
    let listener = TcpListener::bind(config.address).await?;
    let address = listener.local_addr()?;
    let allowed = hashpool_web::guard::AllowedHosts::for_address(address, &config.allowed_hosts);
    let app = router(config).layer(axum::middleware::from_fn_with_state(
        allowed,
        hashpool_web::guard::same_host,
    ));
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::warn!("web-proxy server stopped: {e}");
        }
    });
    Ok(RunningWebProxy { address, task })
}

pub fn router(config: WebProxyConfig) -> Router {
    let state = AppState {
        config: Arc::new(config),
        upstream: Upstream::default(),
    };
    Router::new()
        .route("/", get(index))
        .route("/api/summary", get(summary))
        .route("/api/token", post(token))
        .route("/api/faucet", post(faucet))
        .route("/chart/issuance.svg", get(issuance_chart))
        .route("/chart/hashrate.svg", get(hashrate_chart))
        .with_state(state)
}

async fn index(State(s): State<AppState>) -> Html<String> {
    let body = format!(
        r#"<div class="cards">
  <div class="card"><div class="label">Wallet balance</div><div class="value" id="balance">–</div></div>
  <div class="card"><div class="label">Miners' hashrate</div><div class="value" id="hashrate">–</div></div>
  <div class="card"><div class="label">SV1 miners</div><div class="value" id="miners-count">–</div></div>
  <div class="card"><div class="label">Upstream pool</div><div class="value" id="upstream">–</div></div>
</div>
<section><h2>ehash issued to this wallet {is_ranges}</h2><div class="chart" id="issuance-chart"></div></section>
<section><h2>Hashrate of the miners {hr_ranges}</h2><div class="chart" id="hashrate-chart"></div></section>
<section><h2>Connected SV1 miners</h2><table id="miners"><tr><td class="empty">loading…</td></tr></table></section>
<section><h2>Send ehash</h2>
  <form id="token-form"><input type="number" id="token-amount" min="1" step="1" placeholder="amount (hash)" required>
  <button class="act" type="submit">Create token</button>
  <button class="act" type="button" id="faucet">Faucet</button></form>
  <div class="msg" id="token-msg"></div><textarea id="token" readonly placeholder="a cashuB… token appears here"></textarea>
</section>
<section><h2>Recent issuance</h2><table id="history"><tr><td class="empty">loading…</td></tr></table></section>"#,
        is_ranges = page::ranges("issuance-ranges"),
        hr_ranges = page::ranges("hashrate-ranges"),
    );
    let script = format!(
        r#"let issuanceRange = '1h', hashrateRange = '1h';
const charts = () => Promise.all([
  hp.chart('issuance-chart', '/chart/issuance.svg?range=' + issuanceRange),
  hp.chart('hashrate-chart', '/chart/hashrate.svg?range=' + hashrateRange),
]);
hp.ranges('issuance-ranges', r => {{ issuanceRange = r; charts(); }});
hp.ranges('hashrate-ranges', r => {{ hashrateRange = r; charts(); }});
const showToken = (ok, r) => {{
  const msg = document.getElementById('token-msg');
  msg.className = ok ? 'msg' : 'msg err';
  msg.textContent = ok ? `token of ${{r.amount}} hash created` : r.error;
  if (ok) document.getElementById('token').value = r.token;
}};
const postJson = async (url, body) => {{
  try {{ showToken(true, await hp.json(url, {{ method: 'POST', headers: {{ 'content-type': 'application/json' }}, body: JSON.stringify(body) }})); }}
  catch (e) {{ showToken(false, {{ error: e.message }}); }}
}};
document.getElementById('token-form').addEventListener('submit', ev => {{
  ev.preventDefault();
  postJson('/api/token', {{ amount: Number(document.getElementById('token-amount').value) }});
}});
document.getElementById('faucet').addEventListener('click', () => postJson('/api/faucet', {{}}));
hp.refresh({refresh}, async () => {{
  const s = await hp.json('/api/summary');
  document.getElementById('balance').textContent = s.balance === null ? 'unavailable' : s.balance + ' hash';
  document.getElementById('balance').dataset.balance = s.balance ?? '';
  document.getElementById('hashrate').textContent = s.hashrate_text;
  document.getElementById('miners-count').textContent = s.miners.length;
  document.getElementById('upstream').innerHTML = hp.state(s.upstream.connected);
  document.getElementById('miners').innerHTML = s.miners.length === 0
    ? '<tr><td class="empty">no miner connected</td></tr>'
    : '<tr><th>worker</th><th class="num">hashrate</th><th class="num">shares accepted</th></tr>' +
      s.miners.map(m => `<tr><td>${{hp.esc(m.worker)}}</td><td class="num">${{hp.esc(m.hashrate_text)}}</td><td class="num">${{m.shares_total}}</td></tr>`).join('');
  document.getElementById('history').innerHTML = s.history.length === 0
    ? '<tr><td class="empty">nothing minted yet</td></tr>'
    : '<tr><th>minted</th><th>quote</th><th class="num">amount</th></tr>' +
      s.history.map(h => `<tr><td>${{new Date(h.time * 1000).toLocaleString()}}</td><td><code>${{hp.esc(h.quote)}}</code></td><td class="num">${{h.amount}}</td></tr>`).join('');
  await charts();
}});"#,
        refresh = s.config.refresh_secs.max(1),
    );
    page::page("Hashpool — my miners", "wallet and miners", &body, &script)
}

async fn summary(State(s): State<AppState>) -> Json<Value> {
    let c = &s.config;
    let u = &s.upstream;
    let urls = [
        format!("{}/api/v1/balance", c.wallet_url),
        format!("{}/api/v1/history?limit=10", c.wallet_url),
        format!("{}/api/v1/subjects?kind=miner", c.stats_url),
        format!("{}/api/v1/hashrate?range=1h", c.stats_url),
        format!("{}/api/v1/status", c.translator_url),
    ];
    let (balance, history, miners, hashrate, status) = tokio::join!(
        u.get(&urls[0]),
        u.get(&urls[1]),
        u.get(&urls[2]),
        u.get(&urls[3]),
        u.get(&urls[4]),
    );
    let mut errors = Vec::new();
    let mut ok = |r: Result<Value, String>| {
        r.unwrap_or_else(|e| {
            errors.push(e);
            Value::Null
        })
    };
    let (balance, history, miners, hashrate, status) = (
        ok(balance),
        ok(history),
        ok(miners),
        ok(hashrate),
        ok(status),
    );
    let latest = hashrate["samples"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s["hashrate"].as_f64())
        .unwrap_or(0.0);
    let miner_rows: Vec<Value> = miners["subjects"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter(|m| m["connected"] == true)
                .map(|m| {
                    let hashrate = m["hashrate"].as_f64().unwrap_or(0.0);
                    json!({
                        "worker": m["label"],
                        "hashrate": hashrate,
                        "hashrate_text": units::hashrate(hashrate),
                        "shares_total": m["shares_total"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Json(json!({
        "balance": balance["balance"].as_u64(),
        "locking_key": balance["locking_key"],
        "hashrate": latest,
        "hashrate_text": units::hashrate(latest),
        "miners": miner_rows,
        "upstream": {
            "connected": status["pool_connected"].as_bool().unwrap_or(false),
            "sv1_connections": status["sv1_connections"],
            "channel_mode": status["channel_mode"],
        },
        "history": history["issuance"].as_array().cloned().unwrap_or_default(),
        "errors": errors,
    }))
}

#[derive(Deserialize)]
struct TokenRequest {
    amount: u64,
}

fn forwarded((status, body): (u16, Value)) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, Json(body)).into_response()
}

/// A token of the chosen amount, from the wallet API.
async fn token(
    State(s): State<AppState>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "expected JSON {\"amount\": <positive integer>}" })),
        )
            .into_response();
    };
    let url = format!("{}/api/v1/tokens", s.config.wallet_url);
    forwarded(
        s.upstream
            .forward_post(&url, &json!({ "amount": request.amount }))
            .await,
    )
}

/// A faucet token. The wallet API limits the faucet per client address; through this page
/// every visitor is this page's address, so the page as a whole gets one per interval.
async fn faucet(State(s): State<AppState>) -> Response {
    let url = format!("{}/api/v1/faucet", s.config.wallet_url);
    forwarded(s.upstream.forward_post(&url, &json!({})).await)
}

#[derive(Deserialize)]
struct RangeQuery {
    range: Option<String>,
}

async fn issuance_chart(State(s): State<AppState>, Query(q): Query<RangeQuery>) -> Response {
    let (label, range) = range_secs(q.range.as_deref());
    let url = format!(
        "{}/api/v1/issuance?range={label}&limit=1",
        s.config.stats_url
    );
    svg_response(
        async {
            let v = s.upstream.get(&url).await?;
            chart::bar_chart(
                &format!("ehash minted, last {label}"),
                "hash",
                &series(&v, "buckets", "amount"),
                v["bucket_secs"].as_i64().unwrap_or(60),
                unix_now(),
                range,
            )
        }
        .await,
    )
}

async fn hashrate_chart(State(s): State<AppState>, Query(q): Query<RangeQuery>) -> Response {
    let (label, range) = range_secs(q.range.as_deref());
    let url = format!("{}/api/v1/hashrate?range={label}", s.config.stats_url);
    svg_response(
        async {
            let v = s.upstream.get(&url).await?;
            chart::line_chart(
                &format!("Miners' hashrate, last {label}"),
                "H/s",
                &series(&v, "samples", "hashrate"),
                unix_now(),
                range,
            )
        }
        .await,
    )
}
