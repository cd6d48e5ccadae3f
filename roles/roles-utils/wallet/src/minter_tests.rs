//! The minter's bookkeeping against a stand-in wallet: announced quotes minted in order, a
//! quote that cannot be minted yet retried with back-off before any later one, foreign quotes
//! skipped, recoveries retried and counted; and how announcement frames are read.

use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::Ordering, Mutex},
    time::Instant,
};

use ext_mint_quote::{
    EXTENSION_TYPE, MESSAGE_TYPE_MINT_QUOTE_RESPONSE, MESSAGE_TYPE_QUOTE_ANNOUNCEMENT,
};

use super::*;

/// Ehash every quote of the stand-in mints.
const QUOTE_AMOUNT: u64 = 5;

/// A wallet whose mint answers as scripted: per quote, the failures to give first; a quote
/// minted before mints 0 again, as the real wallet does.
#[derive(Default)]
struct StandIn {
    failures: Mutex<HashMap<String, Vec<WalletError>>>,
    recover_failures: Mutex<u32>,
    recovered: u64,
    minted: Mutex<HashSet<String>>,
    /// Every mint attempt: quote id and when.
    calls: Mutex<Vec<(String, Instant)>>,
    recover_calls: Mutex<Vec<Instant>>,
}

impl StandIn {
    fn failing(self, quote: &str, errors: Vec<WalletError>) -> Self {
        self.failures.lock().unwrap().insert(quote.into(), errors);
        self
    }

    fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(q, _)| q.clone())
            .collect()
    }
}

impl QuoteMinting for StandIn {
    fn mint_quote(&self, quote_id: &str) -> impl Future<Output = Result<u64, WalletError>> + Send {
        self.calls
            .lock()
            .unwrap()
            .push((quote_id.to_string(), Instant::now()));
        let failure = self
            .failures
            .lock()
            .unwrap()
            .get_mut(quote_id)
            .and_then(|f| (!f.is_empty()).then(|| f.remove(0)));
        let result = match failure {
            Some(e) => Err(e),
            None if self.minted.lock().unwrap().insert(quote_id.to_string()) => Ok(QUOTE_AMOUNT),
            None => Ok(0),
        };
        std::future::ready(result)
    }

    fn recover(&self) -> impl Future<Output = Result<u64, WalletError>> + Send {
        self.recover_calls.lock().unwrap().push(Instant::now());
        let mut failures = self.recover_failures.lock().unwrap();
        let result = if *failures > 0 {
            *failures -= 1;
            Err(WalletError::Lookup("mint unreachable".into()))
        } else {
            Ok(self.recovered)
        };
        std::future::ready(result)
    }
}

fn down() -> WalletError {
    WalletError::Lookup("mint unreachable".into())
}

/// Waits until `done` holds (at most 5 s).
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn start(wallet: &Arc<StandIn>) -> (Minter, CancellationToken) {
    let shutdown = CancellationToken::new();
    let minter = Minter::start(wallet.clone(), Duration::from_secs(3600), shutdown.clone());
    (minter, shutdown)
}

#[tokio::test]
async fn announced_quotes_are_minted_in_order_and_a_repeated_one_is_not_counted_twice() {
    let wallet = Arc::new(StandIn::default());
    let (minter, shutdown) = start(&wallet);
    for q in ["a", "b", "a", "c"] {
        minter.announce(q.into());
    }
    until("4 mint attempts", || wallet.calls().len() == 4).await;
    assert_eq!(wallet.calls(), ["a", "b", "a", "c"]);
    let stats = minter.stats();
    // The repeated announcement minted nothing more and is not a quote minted.
    assert_eq!(stats.quotes_minted.load(Ordering::Relaxed), 3);
    assert_eq!(stats.ehash_minted.load(Ordering::Relaxed), 3 * QUOTE_AMOUNT);
    assert_eq!(stats.mint_failures.load(Ordering::Relaxed), 0);
    // The recovery at start ran once (nothing to recover).
    assert_eq!(stats.recoveries.load(Ordering::Relaxed), 1);
    shutdown.cancel();
}

#[tokio::test]
async fn a_quote_that_cannot_be_minted_yet_is_retried_with_back_off_before_later_ones() {
    let wallet = Arc::new(StandIn::default().failing("a", vec![down(), down()]));
    let (minter, shutdown) = start(&wallet);
    minter.announce("a".into());
    minter.announce("b".into());
    until("a minted, then b", || wallet.calls().len() == 4).await;
    assert_eq!(wallet.calls(), ["a", "a", "a", "b"], "b never overtakes a");
    let times: Vec<Instant> = wallet.calls.lock().unwrap().iter().map(|c| c.1).collect();
    // Back-off: 250 ms, then twice that.
    assert!(
        times[1] - times[0] >= RETRY_INITIAL,
        "{:?}",
        times[1] - times[0]
    );
    assert!(
        times[2] - times[1] >= RETRY_INITIAL * 2,
        "{:?}",
        times[2] - times[1]
    );
    let stats = minter.stats();
    assert_eq!(stats.mint_failures.load(Ordering::Relaxed), 2);
    assert_eq!(stats.quotes_minted.load(Ordering::Relaxed), 2);
    assert_eq!(stats.ehash_minted.load(Ordering::Relaxed), 2 * QUOTE_AMOUNT);
    // The queue moves on: a later quote is minted as it comes.
    minter.announce("c".into());
    until("c minted", || wallet.calls().len() == 5).await;
    shutdown.cancel();
}

#[tokio::test]
async fn a_quote_locked_to_another_key_is_skipped_not_retried() {
    let wallet = Arc::new(
        StandIn::default().failing("foreign", vec![WalletError::ForeignQuote("foreign".into())]),
    );
    let (minter, shutdown) = start(&wallet);
    minter.announce("foreign".into());
    minter.announce("mine".into());
    until("both tried", || wallet.calls().len() == 2).await;
    // Give a retry time to happen, were there one.
    tokio::time::sleep(RETRY_INITIAL * 2).await;
    assert_eq!(wallet.calls(), ["foreign", "mine"]);
    let stats = minter.stats();
    assert_eq!(stats.mint_failures.load(Ordering::Relaxed), 0);
    assert_eq!(stats.quotes_minted.load(Ordering::Relaxed), 1);
    shutdown.cancel();
}

#[tokio::test]
async fn a_failed_recovery_is_retried_and_what_it_finds_is_counted() {
    let wallet = Arc::new(StandIn {
        recover_failures: Mutex::new(1),
        recovered: 7,
        ..StandIn::default()
    });
    let (minter, shutdown) = start(&wallet);
    until("a recovery", || {
        minter.stats().recoveries.load(Ordering::Relaxed) == 1
    })
    .await;
    let calls = wallet.recover_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "failed once, then succeeded");
    assert!(calls[1] - calls[0] >= RETRY_INITIAL);
    assert_eq!(minter.stats().ehash_minted.load(Ordering::Relaxed), 7);
    shutdown.cancel();
}

#[tokio::test]
async fn after_shutdown_nothing_is_minted() {
    let wallet = Arc::new(StandIn::default());
    let (minter, shutdown) = start(&wallet);
    until("the first recovery", || {
        !wallet.recover_calls.lock().unwrap().is_empty()
    })
    .await;
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    minter.announce("late".into());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(wallet.calls().is_empty());
}

fn locking_key() -> [u8; 33] {
    let secp = bitcoin::secp256k1::Secp256k1::signing_only();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).unwrap();
    bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize()
}

/// A QuoteAnnouncement's payload as the pool writes it (SPEC.md): channel id (u32), quote id
/// (STR0_255), amount (u64), locking key (B0_255).
fn announcement(quote: &str, amount: u64, key: &[u8]) -> Vec<u8> {
    let mut p = 4u32.to_le_bytes().to_vec();
    p.push(quote.len() as u8);
    p.extend_from_slice(quote.as_bytes());
    p.extend_from_slice(&amount.to_le_bytes());
    p.push(key.len() as u8);
    p.extend_from_slice(key);
    p
}

#[test]
fn an_announcement_frame_gives_its_quote_and_anything_else_nothing() {
    let kind = MESSAGE_TYPE_QUOTE_ANNOUNCEMENT;
    let payload = announcement("quote-9", 12, &locking_key());
    assert_eq!(
        announced_quote(EXTENSION_TYPE, kind, &payload),
        Some(("quote-9".to_string(), 12))
    );
    // Another extension's frame with the same bytes.
    assert_eq!(announced_quote(EXTENSION_TYPE + 1, kind, &payload), None);
    assert_eq!(announced_quote(0, kind, &payload), None);
    // Truncated, or empty.
    assert_eq!(
        announced_quote(EXTENSION_TYPE, kind, &payload[..payload.len() - 3]),
        None
    );
    assert_eq!(announced_quote(EXTENSION_TYPE, kind, &[]), None);
    // An announcement whose locking key is not a key.
    let bad_key = announcement("quote-9", 12, &[0x02; 10]);
    assert_eq!(announced_quote(EXTENSION_TYPE, kind, &bad_key), None);
    // A message of the extension that is not for miners (the mint's answer to the pool:
    // request id, quote id, amount), and a message type the extension does not have.
    let mut response = vec![1u8; 32];
    response.push(1);
    response.push(b'q');
    response.extend_from_slice(&12u64.to_le_bytes());
    assert!(
        ext_mint_quote::MintQuoteMessage::decode(MESSAGE_TYPE_MINT_QUOTE_RESPONSE, &response)
            .is_ok()
    );
    assert_eq!(
        announced_quote(EXTENSION_TYPE, MESSAGE_TYPE_MINT_QUOTE_RESPONSE, &response),
        None
    );
    assert_eq!(announced_quote(EXTENSION_TYPE, 0x7f, &payload), None);
}
