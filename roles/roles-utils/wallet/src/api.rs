//! A wallet over HTTP (the translator's, the jd-client's, or a miner's own under
//! `hashpool-wallet serve`; bound to 127.0.0.1 by default): balance, recent issuance, create a
//! token, receive a token, and (for the roles that offer one) a faucet limited per client
//! address. The miner's page (web-proxy) reads it.
//! Routes that spend (create a token, the faucet) need `Authorization: Bearer <token>`, the
//! token being the content of a file the wallet creates on its first start (mode 0600, see
//! [`ApiToken`]): any local process may reach a loopback port, only the wallet's user may read
//! the file. Errors are JSON `{"error": "..."}` with a fitting status.

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use crate::{EhashWallet, WalletError};
use axum::{
    extract::{rejection::JsonRejection, ConnectInfo, Query, Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct FaucetSettings {
    /// ehash per faucet token.
    pub amount: u64,
    /// One faucet token per client address per this long.
    pub interval: Duration,
}

impl FaucetSettings {
    /// From a role's config: ehash per token (at least 1), seconds between a client's tokens.
    pub fn from_config(amount: u64, interval_secs: u64) -> Self {
        Self {
            amount: amount.max(1),
            interval: Duration::from_secs(interval_secs),
        }
    }
}

/// File name of the API token, beside the wallet's database unless configured elsewhere.
pub const TOKEN_FILE_NAME: &str = "wallet-api-token";

/// Shortest token accepted from a file (hex characters): an operator's own token must not be
/// guessable either.
const MIN_TOKEN_LEN: usize = 32;

/// The bearer token of the spending routes.
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

impl ApiToken {
    /// The token in `path`, created there on first use (32 random bytes as hex, mode 0600,
    /// never overwritten); refused if other users can read the file or it is too short.
    pub fn load_or_create(path: &Path) -> Result<Self, WalletError> {
        let token = hashpool_config::secret_file::load_or_create(path, || {
            hex::encode(rand::random::<[u8; 32]>())
        })?;
        Self::from_secret(token).map_err(|e| WalletError::ApiToken(path.to_path_buf(), e))
    }

    /// A token given directly (tests, embedding); at least 32 characters.
    pub fn from_secret(token: impl Into<String>) -> Result<Self, String> {
        let token = token.into();
        if token.len() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
            return Err(format!(
                "the token must be at least {MIN_TOKEN_LEN} characters without spaces"
            ));
        }
        Ok(Self(token.into()))
    }

    /// The secret, for a client (web-proxy) that sends it.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Where the token lives when the role's config names no path: beside the wallet's database.
pub fn default_token_path(database_path: &Path) -> PathBuf {
    database_path.parent().map_or_else(
        || PathBuf::from(TOKEN_FILE_NAME),
        |d| d.join(TOKEN_FILE_NAME),
    )
}

/// Lets a request through only with `Authorization: Bearer <the token>`.
async fn require_token(State(token): State<ApiToken>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(p) if token.matches(p) => next.run(request).await,
        found => {
            let why = if found.is_some() {
                "wrong API token"
            } else {
                "this route spends ehash: send `Authorization: Bearer <token>` with the token \
                 from the wallet's API token file"
            };
            let mut response = error(StatusCode::UNAUTHORIZED, why);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

#[derive(Clone)]
struct ApiState {
    wallet: Arc<EhashWallet>,
    /// `None`: this wallet gives no faucet tokens (a miner's own wallet).
    faucet: Option<(FaucetSettings, Arc<FaucetLimiter>)>,
}

/// One faucet token per client address per interval.
struct FaucetLimiter(DefaultKeyedRateLimiter<std::net::IpAddr>);

impl FaucetLimiter {
    fn new(interval: Duration) -> Self {
        let per = interval.max(Duration::from_millis(1));
        let quota = Quota::with_period(per)
            .expect("non-zero period")
            .allow_burst(NonZeroU32::MIN);
        Self(RateLimiter::keyed(quota))
    }

    /// Takes `address`'s turn if it has one; else the seconds until it has (at least 1).
    fn check(&self, address: std::net::IpAddr) -> Result<(), u64> {
        self.0.check_key(&address).map_err(|not_until| {
            not_until
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .as_secs()
                .max(1)
        })
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn wallet_error(e: WalletError) -> Response {
    let text = e.to_string();
    // What the caller asked for cannot be done with this wallet (vs. the wallet or mint failing).
    let status = if text.contains("nsufficient") || text.contains("Token") || text.contains("token")
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    error(status, text)
}

/// The API's routes. `faucet`: the faucet's settings, or `None` for a wallet without one
/// (`POST /api/v1/faucet` then answers 404 saying so, and the balance says `"faucet": false`).
pub fn router(
    wallet: Arc<EhashWallet>,
    faucet: impl Into<Option<FaucetSettings>>,
    token: ApiToken,
) -> Router {
    let faucet = faucet.into().map(|settings| {
        let limiter = Arc::new(FaucetLimiter::new(settings.interval));
        (settings, limiter)
    });
    let state = ApiState { wallet, faucet };
    let spending = Router::new()
        .route("/api/v1/tokens", post(create_token))
        .route("/api/v1/faucet", post(faucet_token))
        .route_layer(axum::middleware::from_fn_with_state(token, require_token));
    Router::new()
        .route("/api/v1/balance", get(balance))
        .route("/api/v1/history", get(history))
        .route("/api/v1/withdrawals", get(withdrawals))
        .route("/api/v1/receive", post(receive))
        .merge(spending)
        .with_state(state)
        .merge(hashpool_metrics::health_router("wallet"))
}

/// Serves the API on `address` until `shutdown`; returns the bound address. `faucet` as in
/// [`router`].
pub async fn serve(
    address: SocketAddr,
    wallet: Arc<EhashWallet>,
    faucet: impl Into<Option<FaucetSettings>>,
    token: ApiToken,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    // Spending endpoints on a loopback port: only requests that name this server, and not
    // from another site's page (DNS rebinding, cross-origin POSTs).
    let allowed = hashpool_web::guard::AllowedHosts::for_address(bound, &[]);
    let app = router(wallet, faucet, token)
        .layer(axum::middleware::from_fn_with_state(
            allowed,
            hashpool_web::guard::same_host,
        ))
        .into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!("wallet API: {e}");
        }
    });
    Ok((bound, task))
}

async fn balance(State(s): State<ApiState>) -> Response {
    let (balance, sats) = match (s.wallet.balance().await, s.wallet.sat_balance().await) {
        (Ok(b), Ok(sats)) => (b, sats),
        (Err(e), _) | (_, Err(e)) => return wallet_error(e),
    };
    // Ehash by epoch needs the mint's list of epochs: `null` while it cannot be read.
    // `sats`: what a final epoch's ehash redeems for; `null` while it is open or not final.
    let epochs = s.wallet.holdings_by_epoch().await.ok().map(|by| {
        by.into_iter()
            .map(|h| json!({ "epoch": h.epoch, "ehash": h.ehash, "final": h.sats.is_some(), "sats": h.sats }))
            .collect::<Vec<_>>()
    });
    Json(json!({
        "balance": balance,
        "unit": "hash",
        "sats": sats,
        "epochs": epochs,
        "locking_key": s.wallet.locking_key().to_hex(),
        "faucet": s.faucet.is_some(),
    }))
    .into_response()
}

/// The wallet's withdrawals the mint recorded (quote id, sats, address), oldest first.
async fn withdrawals(State(s): State<ApiState>) -> Response {
    match s.wallet.withdrawals().await {
        Ok(w) => Json(json!({ "withdrawals": w })).into_response(),
        Err(e) => wallet_error(e),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(State(s): State<ApiState>, Query(q): Query<HistoryQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let (issuance, transfers) = tokio::join!(s.wallet.history(limit), s.wallet.transfers(limit));
    match (issuance, transfers) {
        (Ok(issuance), Ok(transfers)) => {
            Json(json!({ "issuance": issuance, "transfers": transfers })).into_response()
        }
        (Err(e), _) | (_, Err(e)) => wallet_error(e),
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    amount: u64,
}

async fn create_token(
    State(s): State<ApiState>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"amount\": <positive integer>}",
        );
    };
    if request.amount == 0 {
        return error(StatusCode::BAD_REQUEST, "amount must be positive");
    }
    match s.wallet.balance().await {
        Ok(b) if b < request.amount => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("insufficient balance: {b} < {}", request.amount),
            )
        }
        Err(e) => return wallet_error(e),
        _ => {}
    }
    match s.wallet.send(request.amount).await {
        Ok(token) => Json(json!({ "token": token, "amount": request.amount })).into_response(),
        Err(e) => wallet_error(e),
    }
}

#[derive(Deserialize)]
struct ReceiveRequest {
    token: String,
}

async fn receive(
    State(s): State<ApiState>,
    body: Result<Json<ReceiveRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"token\": \"cashuB...\"}",
        );
    };
    match s.wallet.receive(request.token.trim()).await {
        Ok(amount) => Json(json!({ "amount": amount })).into_response(),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("cannot receive this token: {e}"),
        ),
    }
}

async fn faucet_token(
    State(s): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let Some((faucet, limiter)) = &s.faucet else {
        return error(StatusCode::NOT_FOUND, "this wallet gives no faucet tokens");
    };
    if let Err(retry_after_secs) = limiter.check(peer.ip()) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({
                "error": "faucet used too recently from this address",
                "retry_after_secs": retry_after_secs,
            })),
        )
            .into_response();
    }
    match s.wallet.send(faucet.amount).await {
        Ok(token) => Json(json!({ "token": token, "amount": faucet.amount })).into_response(),
        Err(e) => wallet_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_created_private_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_token_path(&dir.path().join("w/wallet.sqlite"));
        assert_eq!(path, dir.path().join("w").join(TOKEN_FILE_NAME));
        let first = ApiToken::load_or_create(&path).unwrap();
        assert_eq!(first.secret().len(), 64);
        assert!(first.secret().bytes().all(|b| b.is_ascii_hexdigit()));
        let again = ApiToken::load_or_create(&path).unwrap();
        assert_eq!(again.secret(), first.secret(), "never overwritten");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let err = ApiToken::load_or_create(&path).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn a_short_token_is_refused_and_only_the_exact_token_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        hashpool_config::secret_file::load_or_create(&path, || "short".into()).unwrap();
        let err = ApiToken::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
        let token = ApiToken::from_secret("a".repeat(32)).unwrap();
        assert!(token.matches(&"a".repeat(32)));
        assert!(!token.matches(&"a".repeat(31)));
        assert!(!token.matches(&format!("{}b", "a".repeat(31))));
        assert!(!format!("{token:?}").contains("aaaa"), "never logged");
    }

    #[test]
    fn an_unreadable_token_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be.
        let path = dir.path().join("token-dir");
        std::fs::create_dir(&path).unwrap();
        let err = ApiToken::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("token-dir"), "{err}");
        assert!(path.is_dir());
        #[cfg(unix)]
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let private = |name: &str, bytes: &[u8]| {
                let p = dir.path().join(name);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&p)
                    .unwrap();
                f.write_all(bytes).unwrap();
                p
            };
            // Not text, or empty: refused, never replaced by a new token.
            let binary = private("binary", &[0xff, 0xfe, 0x00, 0x80]);
            assert!(ApiToken::load_or_create(&binary).is_err());
            assert_eq!(std::fs::read(&binary).unwrap(), [0xff, 0xfe, 0x00, 0x80]);
            let empty = private("empty", b"\n");
            let err = ApiToken::load_or_create(&empty).unwrap_err();
            assert!(err.to_string().contains("empty"), "{err}");
            assert_eq!(std::fs::read(&empty).unwrap(), b"\n");
            // An operator's own token (long enough, 0600) is used as written.
            let own = private("own", format!("{}\n", "f".repeat(40)).as_bytes());
            assert_eq!(
                ApiToken::load_or_create(&own).unwrap().secret(),
                "f".repeat(40)
            );
        }
    }

    #[test]
    fn the_faucet_gives_each_address_one_token_per_interval() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let one = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let two = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let six = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let limiter = FaucetLimiter::new(Duration::from_secs(60));
        assert_eq!(limiter.check(one), Ok(()));
        // Again from the same address: refused, told how long to wait (within the interval).
        let wait = limiter.check(one).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(limiter.check(one).is_err());
        // Other addresses have their own turn.
        assert_eq!(limiter.check(two), Ok(()));
        assert_eq!(limiter.check(six), Ok(()));
        assert!(limiter.check(six).is_err());

        // Once the interval has passed, the address has a turn again; a wait shorter than a
        // second is reported as 1 (the Retry-After unit).
        let quick = FaucetLimiter::new(Duration::from_millis(200));
        assert_eq!(quick.check(one), Ok(()));
        assert_eq!(quick.check(one), Err(1));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(quick.check(one), Ok(()));
        // A zero interval still limits (one token per millisecond), it does not switch off.
        let zero = FaucetLimiter::new(Duration::ZERO);
        assert_eq!(zero.check(one), Ok(()));
    }

    #[test]
    fn faucet_settings_give_at_least_one_ehash() {
        let s = FaucetSettings::from_config(0, 30);
        assert_eq!((s.amount, s.interval), (1, Duration::from_secs(30)));
        assert_eq!(FaucetSettings::from_config(64, 0).amount, 64);
    }
}
