//! `web-proxy`: the miner's page. The wallet balance and recent issuance come from a wallet API
//! (the translator's, or a miner's own `hashpool-wallet serve`), the SV1 miners and the ehash
//! and hashrate history from stats-proxy, the upstream pool's state from the translator's
//! monitoring API. A form creates a token and a button asks the faucet (both through the wallet
//! API, with its bearer token, which this server reads from the wallet's token file and never
//! hands to the browser). The page refreshes by itself.
//!
//! Only the wallet is required. A miner at home mining on a public translator runs neither a
//! translator nor stats-proxy: without them (not in the topology, or not answering) the page
//! shows the wallet and says plainly what is not available and why, instead of failing.

pub mod cli;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{rejection::JsonRejection, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use hashpool_web::{
    hashrate_windows, page, stats_charts::Titles, units, upstream::Upstream, Dashboard, Running,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Where web-proxy listens and what it reads, from the shared miner-side topology.
#[derive(Debug, Clone)]
pub struct WebProxyConfig {
    pub address: SocketAddr,
    /// stats-proxy's HTTP API; `None`: none runs here (no hashrate, SV1 miners or charts).
    pub stats_url: Option<String>,
    /// The wallet API (the translator's, or `hashpool-wallet serve`).
    pub wallet_url: String,
    /// The translator's monitoring API; `None`: no translator runs here (no upstream state).
    pub translator_url: Option<String>,
    /// The pool's miner API, where withdrawals' payouts are followed; `None`: withdrawals are
    /// listed without their state.
    pub pool_api_url: Option<String>,
    pub refresh_secs: u64,
    /// Other names the page may be reached by (`host:port`); its own address, `localhost` and
    /// `127.0.0.1` on its port always work.
    pub allowed_hosts: Vec<String>,
    /// The wallet API's bearer token file (mode 0600, written by the wallet's role), sent with
    /// the spending requests the page makes.
    pub wallet_token_path: PathBuf,
}

#[derive(Clone)]
struct AppState {
    config: Arc<WebProxyConfig>,
    upstream: Upstream,
    /// For the spending requests: a swap at the mint may take longer than a dashboard read.
    spending: reqwest::Client,
}

pub async fn start(
    config: WebProxyConfig,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    dashboard(config).serve(shutdown).await
}

/// The charts' titles.
const CHARTS: Titles = Titles {
    hashrate: "Miners' hashrate",
    issuance: "ehash minted",
};

/// The page, its API and the spending routes, ready to serve.
pub fn dashboard(config: WebProxyConfig) -> Dashboard {
    // For the spending requests: a swap at the mint may take longer than a dashboard read.
    let spending = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_default();
    let upstream = Upstream::default();
    let charts = config
        .stats_url
        .clone()
        .map(|stats| CHARTS.routes(upstream.clone(), stats));
    let listen = (config.address, config.allowed_hosts.clone());
    let state = AppState {
        spending,
        config: Arc::new(config),
        upstream,
    };
    let app = Router::new()
        .route("/", get(index))
        .route("/api/summary", get(summary))
        .route("/api/token", post(token))
        .route("/api/faucet", post(faucet))
        .route("/api/receive", post(receive))
        .with_state(state);
    let app = match charts {
        Some(charts) => app.merge(charts),
        None => app,
    };
    Dashboard::new(cli::BINARY.name, listen, app)
}

/// What each source gives the page, for the notice when it is not available.
const WALLET_GIVES: &str = "the wallet (balance, issuance, tokens)";
const STATS_GIVES: &str = "stats-proxy (miners' hashrate, SV1 miners, charts)";
const TRANSLATOR_GIVES: &str = "the translator's monitoring API (upstream pool)";

/// `GET base + route`, or `None` when the source is not configured.
async fn read(u: &Upstream, base: Option<&str>, route: &str) -> Option<Result<Value, String>> {
    match base {
        Some(base) => Some(u.get(&format!("{base}{route}")).await),
        None => None,
    }
}

/// The values of one source's reads (`null` where a read failed), and a line for the page if
/// the source is not configured or a read failed.
fn source<const N: usize>(
    gives: &str,
    reads: [Option<Result<Value, String>>; N],
    not_configured: &str,
    hint: &str,
) -> ([Value; N], Option<String>) {
    let mut why = None;
    let values = reads.map(|read| match read {
        Some(Ok(value)) => value,
        Some(Err(e)) => {
            why.get_or_insert(format!("{gives}: {e}{hint}"));
            Value::Null
        }
        None => {
            why.get_or_insert(format!("{gives}: {not_configured}"));
            Value::Null
        }
    });
    (values, why)
}

async fn summary(State(s): State<AppState>) -> Json<Value> {
    let c = &s.config;
    let u = &s.upstream;
    let (stats, translator) = (c.stats_url.as_deref(), c.translator_url.as_deref());
    let hashrate_route = format!("/api/v1/hashrate?range=1m&{}", hashrate_windows::query());
    let (balance, history, withdrawals, miners, hashrate, status) = tokio::join!(
        read(u, Some(&c.wallet_url), "/api/v1/balance"),
        read(u, Some(&c.wallet_url), "/api/v1/history?limit=10"),
        read(u, Some(&c.wallet_url), "/api/v1/withdrawals"),
        read(u, stats, "/api/v1/subjects?kind=miner"),
        read(u, stats, &hashrate_route),
        read(u, translator, "/api/v1/status"),
    );
    let ([balance, history], wallet_why) = source(
        WALLET_GIVES,
        [balance, history],
        "",
        " (is `hashpool-wallet serve` or the translator's wallet running?)",
    );
    let ([miners, hashrate], stats_why) = source(
        STATS_GIVES,
        [miners, hashrate],
        "not run here (no [stats] in the shared topology)",
        "",
    );
    let ([status], translator_why) = source(
        TRANSLATOR_GIVES,
        [status],
        "not run here (no [translator] in the shared topology)",
        "",
    );
    let unavailable: Vec<String> = [wallet_why, stats_why, translator_why]
        .into_iter()
        .flatten()
        .collect();
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
    // An older wallet API has no withdrawals: an empty list, not a missing source.
    let withdrawals = match withdrawals {
        Some(Ok(w)) => payouts_of(u, c.pool_api_url.as_deref(), &w).await,
        _ => Vec::new(),
    };
    Json(json!({
        "withdrawals": withdrawals,
        "balance": balance["balance"].as_u64(),
        // Sats from redemptions, and ehash by settlement epoch (`null`: not said).
        "sats": balance["sats"].as_u64(),
        "epochs": balance["epochs"].as_array().cloned(),
        "locking_key": balance["locking_key"],
        // `null` when the wallet does not say (an older wallet API): the button stays.
        "faucet": balance["faucet"].as_bool(),
        "hashrate_windows": if stats.is_some() {
            hashrate_windows::from_answer(&hashrate)
        } else {
            Vec::new()
        },
        "miners": miner_rows,
        "upstream": {
            // `null`: no translator here; `false`: it does not answer or has no pool.
            "connected": translator.map(|_| status["pool_connected"].as_bool().unwrap_or(false)),
            "sv1_connections": status["sv1_connections"],
            "channel_mode": status["channel_mode"],
        },
        "history": history["issuance"].as_array().cloned().unwrap_or_default(),
        "transfers": history["transfers"].as_array().cloned().unwrap_or_default(),
        "sources": {
            "wallet": true,
            "stats": stats.is_some(),
            "translator": translator.is_some(),
        },
        "unavailable": unavailable,
    }))
}

/// Withdrawals shown at most (the newest).
const WITHDRAWALS_SHOWN: usize = 20;

/// The newest withdrawals, each with where the pool's coinbases stand on it (`payout`:
/// `null` without a pool API or before the pool has read it).
async fn payouts_of(u: &Upstream, pool_api: Option<&str>, answer: &Value) -> Vec<Value> {
    let listed = answer["withdrawals"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for w in listed.iter().rev().take(WITHDRAWALS_SHOWN) {
        let quote = w["quote_id"].as_str().unwrap_or_default();
        // Quote ids are the mint's UUIDs; anything else is not looked up.
        let lookable =
            !quote.is_empty() && quote.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        let payout = match pool_api {
            Some(api) if lookable => u
                .get(&format!("{api}/api/v1/settlement/payouts/{quote}"))
                .await
                .ok(),
            _ => None,
        };
        out.push(json!({
            "quote_id": quote,
            "sats": w["sats"],
            "address": w["address"],
            "payout": payout,
        }));
    }
    out
}

async fn index(State(s): State<AppState>) -> Html<String> {
    let c = &s.config;
    let stats = c.stats_url.is_some();
    let translator = c.translator_url.is_some();
    // Only the parts whose source is configured; the notice says what is missing and why.
    let (stats_cards, hashrate_cards) = if stats {
        (
            r#"
  <div class="card"><div class="label">SV1 miners</div><div class="value" id="miners-count">–</div></div>"#,
            hashrate_windows::cards("Miners' hashrate"),
        )
    } else {
        ("", String::new())
    };
    let upstream_card = if translator {
        r#"
  <div class="card"><div class="label">Upstream pool</div><div class="value" id="upstream">–</div></div>"#
    } else {
        ""
    };
    let stats_sections = if stats {
        format!(
            r#"{issuance_chart}
{hashrate_chart}
<section><h2>Connected SV1 miners</h2><table id="miners"><tr><td class="empty">loading…</td></tr></table></section>"#,
            issuance_chart = page::chart("ehash issued to this wallet", "issuance"),
            hashrate_chart = page::chart("Hashrate of the miners", "hashrate"),
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"<section id="unavailable" hidden></section>
<div class="cards">
  <div class="card"><div class="label">Wallet balance</div><div class="value" id="balance">–</div></div>
  <div class="card"><div class="label">Sats (redeemed)</div><div class="value" id="sats">–</div></div>{stats_cards}{upstream_card}
</div>
{hashrate_cards}
<section><h2>Key (quotes are locked to it; the stratum username)</h2><code id="locking-key">–</code></section>
{stats_sections}
<section><h2>Send ehash</h2>
  <form id="token-form"><input type="number" id="token-amount" min="1" step="1" placeholder="amount (hash)" required>
  <button class="act" type="submit">Create token</button>
  <button class="act" type="button" id="faucet">Faucet</button></form>
  <div class="msg" id="token-msg"></div><textarea id="token" readonly placeholder="a cashuB… token appears here"></textarea>
  <button class="act" type="button" id="copy-token" hidden>Copy token</button>
  <div id="token-qr"></div>
</section>
<section><h2>Receive ehash</h2>
  <form id="receive-form"><textarea id="receive-token" placeholder="paste a cashuB… token" required></textarea>
  <button class="act" type="submit">Receive</button></form>
  <div class="msg" id="receive-msg"></div>
</section>
<section><h2>Ehash by epoch</h2><table id="epochs"><tr><td class="empty">loading…</td></tr></table></section>
<section><h2>Withdrawals</h2><table id="withdrawals"><tr><td class="empty">loading…</td></tr></table></section>
<section><h2>Recent issuance</h2><table id="history"><tr><td class="empty">loading…</td></tr></table></section>
<section><h2>Tokens sent and received</h2><table id="transfers"><tr><td class="empty">loading…</td></tr></table></section>"#,
    );
    let script = format!(
        r#"const charts = hp.charts({charts});
const showToken = (ok, r) => {{
  const msg = document.getElementById('token-msg');
  msg.className = ok ? 'msg' : 'msg err';
  msg.textContent = ok ? `token of ${{r.amount}} hash created` : r.error;
  if (!ok) return;
  document.getElementById('token').value = r.token;
  document.getElementById('copy-token').hidden = false;
  // The QR code is SVG drawn by this server from the token; the error text is ours too.
  const qr = document.getElementById('token-qr');
  if (r.qr_svg) qr.innerHTML = r.qr_svg; else qr.textContent = r.qr_error ?? '';
}};
document.getElementById('copy-token').addEventListener('click', async () => {{
  const text = document.getElementById('token');
  const msg = document.getElementById('token-msg');
  try {{ await navigator.clipboard.writeText(text.value); msg.textContent = 'token copied'; }}
  catch (e) {{ text.select(); msg.textContent = document.execCommand('copy') ? 'token copied' : 'select the token and copy it'; }}
}});
document.getElementById('receive-form').addEventListener('submit', async ev => {{
  ev.preventDefault();
  const msg = document.getElementById('receive-msg');
  const field = document.getElementById('receive-token');
  try {{
    const r = await hp.json('/api/receive', {{ method: 'POST', headers: {{ 'content-type': 'application/json' }}, body: JSON.stringify({{ token: field.value }}) }});
    msg.className = 'msg';
    msg.textContent = `received ${{r.amount}} hash`;
    field.value = '';
  }} catch (e) {{ msg.className = 'msg err'; msg.textContent = e.message; }}
}});
const postJson = async (url, body) => {{
  try {{ showToken(true, await hp.json(url, {{ method: 'POST', headers: {{ 'content-type': 'application/json' }}, body: JSON.stringify(body) }})); }}
  catch (e) {{ showToken(false, {{ error: e.message }}); }}
}};
const set = (id, fn) => {{ const e = document.getElementById(id); if (e) fn(e); }};
document.getElementById('token-form').addEventListener('submit', ev => {{
  ev.preventDefault();
  postJson('/api/token', {{ amount: Number(document.getElementById('token-amount').value) }});
}});
document.getElementById('faucet').addEventListener('click', () => postJson('/api/faucet', {{}}));
hp.refresh({refresh}, async () => {{
  const s = await hp.json('/api/summary');
  set('unavailable', e => {{
    e.hidden = s.unavailable.length === 0;
    e.innerHTML = '<h2>Not available</h2><ul>' + s.unavailable.map(u => `<li>${{hp.esc(u)}}</li>`).join('') + '</ul>';
  }});
  set('balance', e => {{
    e.textContent = s.balance === null ? 'unavailable' : s.balance + ' hash';
    e.dataset.balance = s.balance ?? '';
  }});
  set('locking-key', e => {{ e.textContent = s.locking_key ?? 'unavailable'; }});
  set('sats', e => {{ e.textContent = s.sats === null ? 'unavailable' : s.sats + ' sat'; }});
  set('epochs', e => {{
    e.innerHTML = s.epochs === null ? '<tr><td class="empty">unavailable</td></tr>'
      : s.epochs.length === 0 ? '<tr><td class="empty">no ehash</td></tr>'
      : '<tr><th>epoch</th><th class="num">ehash</th><th>state</th><th class="num">value</th></tr>' + s.epochs.map(r =>
          `<tr><td>${{r.epoch === null ? 'before epochs' : hp.esc(String(r.epoch))}}</td><td class="num">${{hp.esc(String(r.ehash))}}</td>` +
          `<td>${{r.final ? 'final' : 'open or not final'}}</td><td class="num">${{r.sats === null || r.sats === undefined ? '–' : hp.esc(String(r.sats)) + ' sat'}}</td></tr>`).join('');
  }});
  set('withdrawals', e => {{
    e.innerHTML = s.withdrawals.length === 0 ? '<tr><td class="empty">no withdrawal</td></tr>'
      : '<tr><th>address</th><th class="num">amount</th><th>state</th><th>transaction</th></tr>' + s.withdrawals.map(w => {{
          const p = w.payout;
          const state = p ? p.state.replace('_', ' ') : 'recorded by the mint';
          const tx = p && p.txid ? `<code>${{hp.esc(p.txid)}}:${{hp.esc(String(p.vout))}}</code>` : '–';
          return `<tr><td><code>${{hp.esc(String(w.address))}}</code></td><td class="num">${{hp.esc(String(w.sats))}} sat</td><td>${{hp.esc(state)}}</td><td>${{tx}}</td></tr>`;
        }}).join('');
  }});
  set('faucet', e => {{ e.hidden = s.faucet === false; }});
  hp.windows(s.hashrate_windows);
  set('miners-count', e => {{ e.textContent = s.miners.length; }});
  set('upstream', e => {{ e.innerHTML = hp.state(s.upstream.connected); }});
  set('miners', e => {{ e.innerHTML = s.miners.length === 0
    ? '<tr><td class="empty">no miner connected</td></tr>'
    : '<tr><th>worker</th><th class="num">hashrate</th><th class="num">shares accepted</th></tr>' +
      s.miners.map(m => `<tr><td>${{hp.esc(m.worker)}}</td><td class="num">${{hp.esc(m.hashrate_text)}}</td><td class="num">${{m.shares_total}}</td></tr>`).join(''); }});
  document.getElementById('history').innerHTML = s.history.length === 0
    ? '<tr><td class="empty">nothing minted yet</td></tr>'
    : '<tr><th>minted</th><th>quote</th><th class="num">amount</th></tr>' +
      s.history.map(h => `<tr><td>${{new Date(h.time * 1000).toLocaleString()}}</td><td><code>${{hp.esc(h.quote)}}</code></td><td class="num">${{h.amount}}</td></tr>`).join('');
  document.getElementById('transfers').innerHTML = s.transfers.length === 0
    ? '<tr><td class="empty">no token sent or received yet</td></tr>'
    : '<tr><th>when</th><th></th><th class="num">amount</th></tr>' +
      s.transfers.map(t => `<tr><td>${{new Date(t.time * 1000).toLocaleString()}}</td><td>${{hp.esc(t.direction)}}</td><td class="num">${{t.amount}}</td></tr>`).join('');
  await charts();
}});"#,
        charts = if stats {
            "['issuance', 'hashrate']"
        } else {
            "[]"
        },
        refresh = c.refresh_secs.max(1),
    );
    let subtitle = if stats || translator {
        "wallet and miners"
    } else {
        "wallet"
    };
    page::page("Hashpool — my miners", subtitle, &body, &script)
}

#[derive(Deserialize)]
struct TokenRequest {
    amount: u64,
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The wallet API's token, read from its file on every use (the wallet may create it after
/// this page started). Never created here, and refused if other users can read it.
fn read_wallet_token(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        format!(
            "wallet API token {}: {e} (the wallet creates it on its first start)",
            path.display()
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "wallet API token {}: readable by other users (mode {mode:o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let token = std::fs::read_to_string(path)
        .map_err(|e| format!("wallet API token {}: {e}", path.display()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("wallet API token {}: empty", path.display()));
    }
    Ok(token.to_string())
}

/// `POST` to a spending route of the wallet API with its bearer token; the wallet's own status
/// and JSON body, or the 502/503 response saying why it could not be asked.
async fn forward_spending(
    s: &AppState,
    route: &str,
    body: &Value,
) -> Result<(StatusCode, Value), Response> {
    let token = match read_wallet_token(&s.config.wallet_token_path) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!("{e}");
            return Err(json_error(StatusCode::SERVICE_UNAVAILABLE, e));
        }
    };
    forward(s, route, body, Some(token)).await
}

/// `POST` to the wallet API (with `bearer`, for spending routes).
async fn forward(
    s: &AppState,
    route: &str,
    body: &Value,
    bearer: Option<String>,
) -> Result<(StatusCode, Value), Response> {
    let url = format!("{}{route}", s.config.wallet_url);
    let mut request = s.spending.post(&url).json(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match response.json::<Value>().await {
                Ok(body) => Ok((status, body)),
                Err(e) => Err(json_error(
                    StatusCode::BAD_GATEWAY,
                    format!("{url}: not JSON ({e})"),
                )),
            }
        }
        Err(e) => Err(json_error(
            StatusCode::BAD_GATEWAY,
            format!("{url}: unreachable ({e})"),
        )),
    }
}

/// A created token as the page shows it: the wallet's answer, with the token's QR code as SVG
/// (`qr_svg`) or why there is none (`qr_error`).
fn created(answer: Result<(StatusCode, Value), Response>) -> Response {
    match answer {
        Ok((status, mut body)) => {
            if status.is_success() {
                if let Some(token) = body["token"].as_str().map(str::to_string) {
                    match token_qr(&token) {
                        Ok(code) => body["qr_svg"] = Value::String(qr_svg(&code)),
                        Err(e) => body["qr_error"] = Value::String(e),
                    }
                }
            }
            (status, Json(body)).into_response()
        }
        Err(response) => response,
    }
}

/// The QR code a phone wallet scans to receive `token`: lowest error correction, so the most
/// data fits (2,953 bytes at version 40); longer tokens get none.
fn token_qr(token: &str) -> Result<qrcode::QrCode, String> {
    qrcode::QrCode::with_error_correction_level(token.as_bytes(), qrcode::EcLevel::L).map_err(
        |_| {
            format!(
                "no QR code: the token ({} characters) is too long for one; copy it instead",
                token.len()
            )
        },
    )
}

fn qr_svg(code: &qrcode::QrCode) -> String {
    code.render::<qrcode::render::svg::Color>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build()
}

/// The longest token text the page passes on to the wallet (a token of hundreds of proofs is
/// far shorter); anything longer is refused here.
const MAX_RECEIVED_TOKEN: usize = 256 * 1024;

#[derive(Deserialize)]
struct ReceiveRequest {
    token: String,
}

/// Receives a pasted token into the wallet (the wallet API swaps it at the mint).
async fn receive(
    State(s): State<AppState>,
    body: Result<Json<ReceiveRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"token\": \"cashuB...\"}",
        );
    };
    let token = request.token.trim();
    if token.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "paste a token to receive");
    }
    if token.len() > MAX_RECEIVED_TOKEN {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a token of at most {MAX_RECEIVED_TOKEN} characters"),
        );
    }
    match forward(&s, "/api/v1/receive", &json!({ "token": token }), None).await {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(response) => response,
    }
}

/// A token of the chosen amount, from the wallet API.
async fn token(
    State(s): State<AppState>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"amount\": <positive integer>}",
        );
    };
    created(forward_spending(&s, "/api/v1/tokens", &json!({ "amount": request.amount })).await)
}

/// A faucet token. The wallet API limits the faucet per client address; through this page
/// every visitor is this page's address, so the page as a whole gets one per interval.
async fn faucet(State(s): State<AppState>) -> Response {
    created(forward_spending(&s, "/api/v1/faucet", &json!({})).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use tokio::net::TcpListener;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    /// Receive requests that reached the fake wallet.
    static RECEIVES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A wallet API that spends only for `Authorization: Bearer TOKEN`, as the real one does.
    async fn fake_wallet() -> SocketAddr {
        async fn spend(headers: HeaderMap) -> Response {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if auth == format!("Bearer {TOKEN}") {
                Json(json!({ "token": "cashuBfake", "amount": 2 })).into_response()
            } else {
                json_error(StatusCode::UNAUTHORIZED, "wrong API token")
            }
        }
        let app = Router::new()
            .route(
                "/api/v1/balance",
                get(|| async {
                    Json(json!({ "balance": 7, "unit": "hash", "locking_key": "02ab", "faucet": false }))
                }),
            )
            .route(
                "/api/v1/history",
                get(|| async {
                    Json(json!({
                        "issuance": [{ "quote": "q1", "amount": 7, "time": 1 }],
                        "transfers": [{ "direction": "sent", "amount": 2, "time": 2 }],
                    }))
                }),
            )
            .route(
                "/api/v1/withdrawals",
                get(|| async {
                    Json(json!({ "withdrawals": [
                        { "quote_id": "01a2-bf", "sats": 25000, "address": "bcrt1qa" },
                        { "quote_id": "../../api/v1/balance", "sats": 30000, "address": "bcrt1qb" },
                    ]}))
                }),
            )
            // The pool's payout of the first (the fake serves as the pool's API too).
            .route(
                "/api/v1/settlement/payouts/01a2-bf",
                get(|| async {
                    Json(json!({ "quote_id": "01a2-bf", "sats": 25000, "address": "bcrt1qa",
                        "state": "in_block", "height": 150, "block_hash": "00ab",
                        "txid": "cd01", "vout": 1 }))
                }),
            )
            .route("/api/v1/tokens", post(spend))
            .route("/api/v1/faucet", post(spend))
            .route(
                "/api/v1/receive",
                post(|Json(body): Json<Value>| async move {
                    RECEIVES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if body["token"] == "cashuBgood" {
                        Json(json!({ "amount": 5 })).into_response()
                    } else {
                        json_error(
                            StatusCode::BAD_REQUEST,
                            "cannot receive this token: already spent",
                        )
                    }
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    #[tokio::test]
    async fn withdrawals_show_where_the_pools_coinbases_stand_on_each() {
        let wallet = fake_wallet().await;
        let shutdown = CancellationToken::new();
        let mut config = config(format!("http://{wallet}"), None, None);
        config.pool_api_url = Some(format!("http://{wallet}"));
        let proxy = start(config, shutdown.clone()).await.unwrap();
        let summary: Value = reqwest::get(format!("http://{}/api/summary", proxy.address))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let shown = summary["withdrawals"].as_array().unwrap();
        // Newest first; an id that is no quote id is not looked up at the pool.
        assert_eq!(shown.len(), 2);
        assert_eq!(shown[0]["sats"], 30000);
        assert!(shown[0]["payout"].is_null(), "{summary}");
        assert_eq!(shown[1]["payout"]["state"], "in_block");
        assert_eq!(shown[1]["payout"]["txid"], "cd01");
        shutdown.cancel();
    }

    #[cfg(unix)]
    fn write_token(path: &Path, token: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, format!("{token}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn spending_requests_carry_the_token_read_server_side() {
        let dir = tempfile::tempdir().unwrap();
        let token_path = dir.path().join("wallet-api-token");
        let wallet = fake_wallet().await;
        let shutdown = CancellationToken::new();
        let proxy = start(
            WebProxyConfig {
                address: "127.0.0.1:0".parse().unwrap(),
                stats_url: Some("http://127.0.0.1:1".into()),
                wallet_url: format!("http://{wallet}"),
                translator_url: Some("http://127.0.0.1:1".into()),
                pool_api_url: None,
                refresh_secs: 1,
                allowed_hosts: Vec::new(),
                wallet_token_path: token_path.clone(),
            },
            shutdown.clone(),
        )
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let post = |route: &'static str| {
            http.post(format!("http://{}{route}", proxy.address))
                .json(&json!({ "amount": 2 }))
                .send()
        };
        let answer = |r: reqwest::Response| async move {
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        };

        // No token file yet (the wallet has not started): a clear error, nothing spent.
        let (status, body) = answer(post("/api/token").await.unwrap()).await;
        assert_eq!(status, 503);
        assert!(body["error"].as_str().unwrap().contains("wallet-api-token"));

        // A file others can read is not used.
        write_token(&token_path, TOKEN, 0o644);
        let (status, body) = answer(post("/api/faucet").await.unwrap()).await;
        assert_eq!(status, 503);
        assert!(
            body["error"].as_str().unwrap().contains("chmod 600"),
            "{body}"
        );

        // The wallet's token: the form and the faucet work.
        write_token(&token_path, TOKEN, 0o600);
        for route in ["/api/token", "/api/faucet"] {
            let (status, body) = answer(post(route).await.unwrap()).await;
            assert_eq!((status, body["token"].as_str()), (200, Some("cashuBfake")));
        }

        // A created token comes with its QR code.
        let (_, body) = answer(post("/api/token").await.unwrap()).await;
        assert!(
            body["qr_svg"]
                .as_str()
                .is_some_and(|svg| svg.contains("<svg")),
            "{body}"
        );

        // Receiving needs no API token; the wallet's answer (amount or refusal) reaches the page.
        let receive = |token: String| {
            http.post(format!("http://{}/api/receive", proxy.address))
                .json(&json!({ "token": token }))
                .send()
        };
        let (status, body) = answer(receive(" cashuBgood\n".into()).await.unwrap()).await;
        assert_eq!((status, body["amount"].as_u64()), (200, Some(5)));
        let (status, body) = answer(receive("cashuBspent".into()).await.unwrap()).await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("already spent"));
        // Nothing, or more than any token, is refused here without asking the wallet.
        let asked = RECEIVES.load(std::sync::atomic::Ordering::SeqCst);
        let (status, _) = answer(receive("  ".into()).await.unwrap()).await;
        assert_eq!(status, 400);
        let (status, _) = answer(receive("x".repeat(MAX_RECEIVED_TOKEN + 1)).await.unwrap()).await;
        assert_eq!(status, 413);
        assert_eq!(RECEIVES.load(std::sync::atomic::Ordering::SeqCst), asked);

        // Another token: the wallet's refusal reaches the page.
        write_token(&token_path, &TOKEN.replace('0', "1"), 0o600);
        let (status, body) = answer(post("/api/token").await.unwrap()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("wrong API token"))
        );

        // The page itself never carries the token.
        write_token(&token_path, TOKEN, 0o600);
        let page = http
            .get(format!("http://{}/", proxy.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("token-form") && !page.contains(TOKEN));
        shutdown.cancel();
    }

    /// The QR code of a token reads back as the token (what a phone wallet scans); a token too
    /// long for any QR code gets an explanation instead.
    #[test]
    fn a_tokens_qr_code_reads_back_as_the_token() {
        let token = format!(
            "cashuB{}",
            (0..700)
                .map(
                    |i| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                        [(i * 37 + i / 3) % 64] as char
                )
                .collect::<String>()
        );
        let code = token_qr(&token).unwrap();
        let (width, colors) = (code.width(), code.to_colors());
        let (scale, quiet) = (4, 4);
        let size = (width + 2 * quiet) * scale;
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(size, size, |x, y| {
            let (mx, my) = (x / scale, y / scale);
            let inside =
                (quiet..width + quiet).contains(&mx) && (quiet..width + quiet).contains(&my);
            if inside && colors[(my - quiet) * width + (mx - quiet)] == qrcode::Color::Dark {
                0
            } else {
                255
            }
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, token);
        assert!(qr_svg(&code).starts_with("<?xml"));

        // Byte mode (a token is base64url), past version 40's 2,953 bytes.
        let Err(err) = token_qr(&"a".repeat(3_000)) else {
            panic!("3,000 bytes fit no QR code")
        };
        assert!(err.contains("too long"), "{err}");
    }

    async fn page_and_summary(config: WebProxyConfig) -> (String, Value, u16) {
        let shutdown = CancellationToken::new();
        let proxy = start(config, shutdown.clone()).await.unwrap();
        let http = reqwest::Client::new();
        let get = |route: &str| http.get(format!("http://{}{route}", proxy.address)).send();
        let page = get("/").await.unwrap().text().await.unwrap();
        let summary = get("/api/summary").await.unwrap().json().await.unwrap();
        let chart = get("/chart/hashrate.json").await.unwrap().status().as_u16();
        shutdown.cancel();
        (page, summary, chart)
    }

    fn config(wallet_url: String, stats: Option<&str>, translator: Option<&str>) -> WebProxyConfig {
        WebProxyConfig {
            address: "127.0.0.1:0".parse().unwrap(),
            stats_url: stats.map(str::to_string),
            wallet_url,
            translator_url: translator.map(str::to_string),
            pool_api_url: None,
            refresh_secs: 1,
            allowed_hosts: Vec::new(),
            wallet_token_path: PathBuf::from("unused"),
        }
    }

    /// A miner at home: the wallet alone. The page shows the wallet, leaves out what needs a
    /// translator or stats-proxy and says why; the summary answers instead of failing.
    #[tokio::test]
    async fn in_front_of_a_wallet_alone_the_page_shows_the_wallet_and_says_what_is_missing() {
        let wallet = fake_wallet().await;
        let (page, summary, chart) =
            page_and_summary(config(format!("http://{wallet}"), None, None)).await;
        assert!(page.contains(r#"id="balance""#) && page.contains("token-form"));
        assert!(page.contains(r#"id="unavailable""#));
        for part in [
            r#"id="upstream""#,
            r#"id="miners""#,
            "hashrate-chart",
            "issuance-chart",
            "hashrate-1m",
        ] {
            assert!(!page.contains(part), "{part} shown without its source");
        }
        assert_eq!(chart, 404, "no chart without stats-proxy");
        assert_eq!(summary["balance"], 7);
        assert_eq!(summary["locking_key"], "02ab");
        assert_eq!(summary["faucet"], false);
        assert_eq!(summary["history"][0]["quote"], "q1");
        assert_eq!(summary["transfers"][0]["direction"], "sent");
        assert_eq!(summary["upstream"]["connected"], Value::Null);
        assert_eq!(summary["miners"], json!([]));
        assert_eq!(summary["hashrate_windows"], json!([]));
        assert_eq!(
            summary["unavailable"],
            json!([
                "stats-proxy (miners' hashrate, SV1 miners, charts): not run here (no [stats] in the shared topology)",
                "the translator's monitoring API (upstream pool): not run here (no [translator] in the shared topology)",
            ])
        );
    }

    /// A wallet named by host name (as `[upstreams] wallet_url` may give it) is resolved and
    /// read like one given by address.
    #[tokio::test]
    async fn a_wallet_named_by_host_name_is_read() {
        let wallet = fake_wallet().await;
        let (_, summary, _) = page_and_summary(config(
            format!("http://localhost:{}", wallet.port()),
            None,
            None,
        ))
        .await;
        assert_eq!(summary["balance"], 7, "{summary}");
        assert_eq!(summary["locking_key"], "02ab");
    }

    /// Configured but not answering: every part is on the page, the summary says which source
    /// failed and how; a wallet that does not answer is named with what to start.
    #[tokio::test]
    async fn sources_that_do_not_answer_are_named_on_the_page() {
        let wallet = fake_wallet().await;
        let down = "http://127.0.0.1:1";
        let (page, summary, chart) =
            page_and_summary(config(format!("http://{wallet}"), Some(down), Some(down))).await;
        assert!(page.contains(r#"id="upstream""#) && page.contains("hashrate-chart"));
        for label in ["last 1 min", "last 1 h", "last 24 h"] {
            assert!(
                page.contains(&format!("Miners&#39; hashrate, {label}")),
                "{label}"
            );
        }
        assert_eq!(chart, 502);
        // Each window's card says the stats service did not answer, not an old figure.
        let windows = summary["hashrate_windows"].as_array().unwrap();
        assert_eq!(windows.len(), 3);
        assert!(windows
            .iter()
            .all(|w| w["hashrate_text"] == "–" && w["note"] == "no answer from the stats service"));
        assert_eq!(summary["balance"], 7);
        assert_eq!(summary["upstream"]["connected"], false);
        let unavailable = summary["unavailable"].as_array().unwrap();
        assert_eq!(unavailable.len(), 2, "{summary}");
        assert!(
            unavailable[0]
                .as_str()
                .unwrap()
                .starts_with("stats-proxy (")
                && unavailable[0].as_str().unwrap().contains("unreachable")
        );
        assert!(
            unavailable[1]
                .as_str()
                .unwrap()
                .starts_with("the translator's monitoring API")
                && unavailable[1].as_str().unwrap().contains("unreachable")
        );

        let (_, summary, _) = page_and_summary(config(down.into(), None, None)).await;
        assert_eq!(summary["balance"], Value::Null);
        let first = summary["unavailable"][0].as_str().unwrap();
        assert!(
            first.starts_with("the wallet (balance, issuance, tokens): http://127.0.0.1:1/api/v1/balance: unreachable")
                && first.ends_with("(is `hashpool-wallet serve` or the translator's wallet running?)"),
            "{first}"
        );
    }
}
