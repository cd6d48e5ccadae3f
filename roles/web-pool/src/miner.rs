//! `/miner/<key>`: one miner key's page (hashrate windows, workers, shares, ehash accrued,
//! quoted and pending, blocks), from the pool's per-key API (`pool.api_address`). Public and
//! read-only like a pool's address pages: nothing on it can spend.
//!
//! - `GET /miner?key=...`: the main page's search box; redirects to `/miner/<key>`.
//! - `GET /miner/<key>`: the page; `GET /miner/<key>/body`: its content, which the page
//!   reloads by itself.
//!
//! A key that is not 66 hex characters of a compressed public key gets 400, a valid key nobody
//! mined for an honest "no shares from this key yet".

pub mod answer;
pub mod render;

use axum::{
    extract::{rejection::PathRejection, Path, Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Router,
};
use hashpool_web::{html, page};
use serde::Deserialize;

use crate::AppState;
use answer::MinerAnswer;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/miner", get(search))
        .route("/miner/{key}", get(full_page))
        .route("/miner/{key}/body", get(body))
}

/// `text` as a miner key (trimmed, lowercase) if it has the shape of one: 66 hex characters
/// starting with 02 or 03. Whether it is a point on the curve is the pool's to say.
pub fn key_shape(text: &str) -> Option<String> {
    let key = text.trim().to_ascii_lowercase();
    let shaped = key.len() == 66
        && key.bytes().all(|b| b.is_ascii_hexdigit())
        && (key.starts_with("02") || key.starts_with("03"));
    shaped.then_some(key)
}

const BAD_KEY: &str = "Not a miner key";

fn bad_key_detail(text: &str) -> String {
    format!(
        "“{}” is not a miner key: a key is 66 hex characters, a compressed secp256k1 public \
         key starting with 02 or 03 (the key the miner's ehash is locked to).",
        text.chars().take(80).collect::<String>()
    )
}

/// What a page for `key_text` shows: a miner, or why not (with its status).
enum Outcome {
    Miner(Box<MinerAnswer>),
    Problem(StatusCode, &'static str, String),
}

async fn outcome(s: &AppState, key_text: &str) -> Outcome {
    let Some(key) = key_shape(key_text) else {
        return Outcome::Problem(StatusCode::BAD_REQUEST, BAD_KEY, bad_key_detail(key_text));
    };
    let Some(api) = &s.config.pool_api_url else {
        return Outcome::Problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Miner pages are off",
            "This pool does not serve its per-key API (`pool.api_address` is not set in the \
             shared config)."
                .into(),
        );
    };
    let url = format!("{api}/api/v1/miners/{key}");
    match s.upstream.get_status(&url).await {
        Ok((200, body)) => match serde_json::from_value::<MinerAnswer>(body) {
            Ok(mut answer) => {
                // The epochs' states and rates; without them the page says "unknown".
                let report = s
                    .upstream
                    .get(&format!("{api}/api/v1/settlement"))
                    .await
                    .unwrap_or_default();
                answer.value_epochs(&report);
                Outcome::Miner(Box::new(answer))
            }
            Err(e) => Outcome::Problem(
                StatusCode::BAD_GATEWAY,
                "The pool's answer could not be read",
                e.to_string(),
            ),
        },
        Ok((400, body)) => Outcome::Problem(
            StatusCode::BAD_REQUEST,
            BAD_KEY,
            body["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| bad_key_detail(key_text)),
        ),
        Ok((status, body)) => Outcome::Problem(
            StatusCode::BAD_GATEWAY,
            "The pool could not answer",
            format!(
                "{status}: {}",
                body["error"].as_str().unwrap_or("no reason given")
            ),
        ),
        Err(e) => Outcome::Problem(
            StatusCode::BAD_GATEWAY,
            "The pool's miner API is unreachable",
            e,
        ),
    }
}

fn content(outcome: &Outcome) -> (StatusCode, String) {
    match outcome {
        Outcome::Miner(a) => (StatusCode::OK, render::miner(a)),
        Outcome::Problem(status, title, detail) => (*status, render::problem(title, detail)),
    }
}

/// The key of a path, or "" when the path could not be decoded (then answered as a bad key).
fn path_key(path: Result<Path<String>, PathRejection>) -> String {
    path.map(|Path(key)| key).unwrap_or_default()
}

async fn full_page(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let key = path_key(path);
    let outcome = outcome(&s, &key).await;
    let (status, content) = content(&outcome);
    let script = match (&outcome, key_shape(&key)) {
        // The key is hex here: safe in the script as it is.
        (Outcome::Miner(_), Some(key)) => format!(
            r#"hp.refresh({refresh}, async () => {{
  const r = await fetch('/miner/{key}/body');
  if (r.ok) document.getElementById('miner').innerHTML = await r.text();
}});"#,
            refresh = s.config.refresh_secs.max(1),
        ),
        _ => "document.getElementById('updated').textContent = '';".into(),
    };
    let subtitle = match key_shape(&key) {
        Some(k) => format!("miner {}…{}", &k[..8], &k[58..]),
        None => "miner".into(),
    };
    let page = page::page(
        "Hashpool — miner",
        &html::escape(&subtitle),
        &format!(r#"<p><a href="/">← pool</a></p><div id="miner">{content}</div>"#),
        &script,
    );
    (status, page).into_response()
}

async fn body(State(s): State<AppState>, path: Result<Path<String>, PathRejection>) -> Response {
    let (status, content) = content(&outcome(&s, &path_key(path)).await);
    (status, Html(content)).into_response()
}

#[derive(Deserialize)]
struct Search {
    #[serde(default)]
    key: String,
}

/// The search box: a key of the right shape goes to its page, anything else gets the 400 page.
async fn search(State(s): State<AppState>, Query(q): Query<Search>) -> Response {
    match key_shape(&q.key) {
        Some(key) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/miner/{key}"))],
        )
            .into_response(),
        None => full_page(State(s), Ok(Path(q.key))).await,
    }
}

/// The search box on the main page.
pub fn search_box() -> &'static str {
    r#"<section><h2>Miner page</h2><form id="miner-search" action="/miner" method="get"><input type="search" name="key" id="miner-key" placeholder="a miner's key: 66 hex characters, 02… or 03…" autocomplete="off" spellcheck="false" maxlength="200"><button class="act" type="submit" id="miner-go">Show</button></form><p class="note">Hashrate, workers, shares, ehash and blocks of one key: the key a miner's ehash is locked to.</p></section>"#
}

#[cfg(test)]
mod tests;
