//! The batcher and the mint link's handling of the mint's answers, on a real ledger (a
//! temporary SQLite file) and a registry with one miner connection; the mint is a channel.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use binary_sv2::U256Owned;
use ext_mint_quote::{
    error_code, LockingKey, MintQuoteErrorOwned, MintQuoteMessage, MintQuoteResponseOwned,
};
use hashpool_ehash::Work;
use hashpool_sv2_io::ConnectionError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{batcher, mint_link::on_answer, MintLink, MintLinkHandles};
use crate::{
    accepted_share::AcceptedShare,
    config::PoolRunConfig,
    counters::{BatchesRefused, PoolStats},
    events::{EventSink, PoolEvent},
    ledger::{AccrualLedger, Batch},
    miners::{
        channel_set::{ChannelEntry, ChannelKind, ChannelSet},
        Registry,
    },
};

fn key(n: u8) -> LockingKey {
    let secp = bitcoin::secp256k1::Secp256k1::signing_only();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n; 32]).unwrap();
    LockingKey::from_slice(&bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize())
        .unwrap()
}

/// The pool side of the quote path, and what the mint and the miners receive from it.
struct Quotes {
    ctx: Arc<MintLinkHandles>,
    events: mpsc::Receiver<PoolEvent>,
    /// What the miner connection (the extension negotiated, one channel of `key(1)`) receives.
    announcements: mpsc::UnboundedReceiver<MintQuoteMessage>,
    _dir: tempfile::TempDir,
}

impl Quotes {
    async fn start(edit: impl FnOnce(&mut PoolRunConfig)) -> Self {
        let mut config = crate::config::shipped_for_tests();
        edit(&mut config);
        let dir = tempfile::tempdir().unwrap();
        let ledger = AccrualLedger::open(
            &dir.path().join("ledger.sqlite"),
            &config.unit,
            config.unit_work,
        )
        .await
        .unwrap();
        let registry = Arc::new(Registry::default());
        let announcements = miner_of(&registry, key(1));
        let (events, events_rx) = EventSink::channel();
        let ctx = Arc::new(MintLinkHandles {
            config: Arc::new(config),
            ledger,
            stats: Arc::new(PoolStats::default()),
            miners: registry,
            events,
        });
        Self {
            ctx,
            events: events_rx,
            announcements,
            _dir: dir,
        }
    }

    fn ledger(&self) -> &AccrualLedger {
        &self.ctx.ledger
    }

    /// Work of `units` ehash and `extra` hashes more.
    fn work(&self, units: u128, extra: u128) -> Work {
        Work::from_hashes(units * self.ledger().unit_work().work().hashes() + extra)
    }

    /// Records accepted shares of `work` each for `k`.
    async fn accrue(&self, k: LockingKey, works: &[Work]) {
        for (i, work) in works.iter().enumerate() {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            hash[8] = k.as_bytes()[1];
            let share = AcceptedShare {
                channel_id: 1,
                locking_key: k,
                share_hash: hash,
                work: *work,
                block_found: false,
                block: None,
                tip: 1,
            };
            assert_eq!(self.ledger().record(share).await.await.unwrap(), Ok(true));
        }
    }

    async fn pending(&self, k: LockingKey) -> Work {
        self.ledger().accrual(&k).await.unwrap().unwrap().pending
    }

    fn announced(&mut self) -> Vec<(u32, String, u64, LockingKey)> {
        let mut out = Vec::new();
        while let Ok(m) = self.announcements.try_recv() {
            let MintQuoteMessage::Announcement(a) = m else {
                panic!("not an announcement: {m:?}");
            };
            let k = LockingKey::from_slice(a.locking_key.as_bytes()).unwrap();
            out.push((
                a.channel_id,
                hashpool_sv2_io::text(&a.quote_id),
                a.amount,
                k,
            ));
        }
        out
    }
}

/// A miner connection with the extension negotiated and channel 42 locked to `k`.
fn miner_of(registry: &Registry, k: LockingKey) -> mpsc::UnboundedReceiver<MintQuoteMessage> {
    use channels_sv2::{
        extranonce_manager::ExtranonceAllocator, server::standard::StandardChannel, VardiffState,
    };
    let set = Arc::new(Mutex::new(ChannelSet::new(1, 0)));
    registry.insert(1, set.clone());
    let (tx, rx) = mpsc::unbounded_channel();
    registry.set_announcer(1, Some(tx));
    let mut allocator = ExtranonceAllocator::new(vec![0, 1], 20, 16).unwrap();
    let channel = StandardChannel::new_for_pool(
        42,
        "miner".into(),
        allocator.allocate_standard().unwrap(),
        bitcoin::Target::MAX,
        1e9,
        10,
        6.0,
        "test".into(),
        None,
    )
    .unwrap();
    let entry = ChannelEntry {
        kind: ChannelKind::Standard(channel),
        locking_key: k,
        vardiff: VardiffState::new().unwrap(),
        bootstrap_seq: 0,
        job_targets: Default::default(),
        network_target: None,
        acked: Default::default(),
        last_share_ms: None,
        best_difficulty: 0.0,
    };
    registry.open_channel(&mut set.lock().unwrap(), 42, entry);
    rx
}

fn response(batch: &Batch, quote_id: &str) -> MintQuoteMessage {
    MintQuoteMessage::Response(MintQuoteResponseOwned {
        request_id: U256Owned::from(batch.request_id),
        quote_id: hashpool_sv2_io::str0255(quote_id),
        amount: batch.amount,
    })
}

fn refusal(batch: &Batch, code: &str) -> MintQuoteMessage {
    MintQuoteMessage::Error(MintQuoteErrorOwned {
        request_id: U256Owned::from(batch.request_id),
        error_code: hashpool_sv2_io::str0255(code),
        message: hashpool_sv2_io::str0255("test"),
    })
}

/// One open batch of 3 ehash for `key(1)`, with a remainder left pending.
async fn one_batch(q: &Quotes) -> Batch {
    q.accrue(key(1), &[q.work(1, 0), q.work(2, 5)]).await;
    let mut created = q.ledger().create_batches().await.unwrap();
    assert_eq!(created.len(), 1);
    let batch = created.remove(0);
    assert_eq!((batch.amount, batch.share_count), (3, 2));
    assert_eq!(q.pending(key(1)).await, Work::from_hashes(5));
    batch
}

#[tokio::test]
async fn a_quote_is_recorded_and_announced_to_the_miners_of_its_key_once() {
    let mut q = Quotes::start(|_| {}).await;
    let batch = one_batch(&q).await;
    on_answer(&q.ctx, response(&batch, "quote-1"))
        .await
        .unwrap();
    let recorded = q.ledger().batches_of(&key(1)).await.unwrap();
    assert_eq!(recorded[0].quote_id.as_deref(), Some("quote-1"));
    assert!(q.ledger().open_batches().await.unwrap().is_empty());
    assert_eq!(q.announced(), vec![(42, "quote-1".into(), 3, key(1))]);
    match q.events.try_recv().unwrap() {
        PoolEvent::QuoteIssued {
            quote_id,
            amount,
            locking_key,
            ..
        } => assert_eq!(
            (quote_id, amount, locking_key),
            ("quote-1".into(), 3, key(1).to_hex())
        ),
        other => panic!("{other:?}"),
    }
    // The mint answering a resent request again: nothing new is announced or reported.
    on_answer(&q.ctx, response(&batch, "quote-1"))
        .await
        .unwrap();
    assert!(q.announced().is_empty());
    assert!(q.events.try_recv().is_err());
    // The work stays issued: only the remainder is pending.
    assert_eq!(q.pending(key(1)).await, Work::from_hashes(5));
}

#[tokio::test]
async fn a_temporary_failure_changes_nothing() {
    let mut q = Quotes::start(|_| {}).await;
    let batch = one_batch(&q).await;
    on_answer(&q.ctx, refusal(&batch, error_code::TEMPORARY_FAILURE))
        .await
        .unwrap();
    // Still open (it is sent again, same request id), its work still taken from pending.
    assert_eq!(
        q.ledger().open_batches().await.unwrap(),
        vec![batch.clone()]
    );
    assert_eq!(q.pending(key(1)).await, Work::from_hashes(5));
    assert_eq!(
        q.ctx.stats.snapshot().batches_refused,
        BatchesRefused::default()
    );
    assert!(q.announced().is_empty());
    // A quote afterwards is recorded as usual.
    on_answer(&q.ctx, response(&batch, "later")).await.unwrap();
    assert_eq!(q.announced().len(), 1);
}

#[tokio::test]
async fn a_refusal_for_good_returns_the_work_to_pending_once() {
    let mut q = Quotes::start(|_| {}).await;
    let batch = one_batch(&q).await;
    on_answer(&q.ctx, refusal(&batch, error_code::UNIT_MISMATCH))
        .await
        .unwrap();
    let refused = &q.ledger().batches_of(&key(1)).await.unwrap()[0];
    assert_eq!(
        refused.refused_code.as_deref(),
        Some(error_code::UNIT_MISMATCH)
    );
    assert!(q.ledger().open_batches().await.unwrap().is_empty());
    // Every hash is pending again: the 3 ehash taken and the remainder.
    assert_eq!(q.pending(key(1)).await, q.work(3, 5));
    assert_eq!(q.ctx.stats.snapshot().batches_refused.unit_mismatch, 1);
    // The refusal repeated (the pool resends until answered) or a late quote: nothing moves.
    on_answer(&q.ctx, refusal(&batch, error_code::UNIT_MISMATCH))
        .await
        .unwrap();
    on_answer(&q.ctx, response(&batch, "too-late"))
        .await
        .unwrap();
    assert_eq!(q.pending(key(1)).await, q.work(3, 5));
    assert_eq!(q.ctx.stats.snapshot().batches_refused.unit_mismatch, 1);
    assert!(q.announced().is_empty());
    // The next batch asks for the same work under a new request id, with the same shares.
    let again = q.ledger().create_batches().await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].amount, again[0].share_count), (3, 2));
    assert_eq!(again[0].share_commitment, batch.share_commitment);
    assert_ne!(again[0].request_id, batch.request_id);
}

#[tokio::test]
async fn a_mint_sending_anything_but_answers_breaks_the_link() {
    let q = Quotes::start(|_| {}).await;
    let batch = one_batch(&q).await;
    let messages = [
        batcher::request("hash", &batch),
        MintQuoteMessage::Challenge(ext_mint_quote::new_challenge()),
    ];
    for m in messages {
        let kind = m.message_type();
        match on_answer(&q.ctx, m).await {
            Err(ConnectionError::Protocol(_)) => {}
            other => panic!("message {kind:#04x}: {other:?}"),
        }
    }
    // And nothing was recorded.
    assert_eq!(q.ledger().open_batches().await.unwrap(), vec![batch]);
}

#[tokio::test]
async fn a_request_carries_the_batch_exactly() {
    let q = Quotes::start(|_| {}).await;
    let batch = one_batch(&q).await;
    let MintQuoteMessage::Request(r) = batcher::request("hash", &batch) else {
        panic!("not a request");
    };
    assert_eq!(r.request_id.to_array(), batch.request_id);
    assert_eq!(r.locking_key.as_bytes(), key(1).as_bytes());
    assert_eq!(hashpool_sv2_io::text(&r.unit), "hash");
    assert_eq!((r.amount, r.share_count), (3, 2));
    assert_eq!(r.share_commitment.to_array(), batch.share_commitment);
    // The batch's epoch, or the mark of none for work from before epochs.
    assert_eq!(ext_mint_quote::epoch_of(r.epoch), batch.epoch);
    let mut of_epoch = batch.clone();
    of_epoch.epoch = Some(7);
    let MintQuoteMessage::Request(r) = batcher::request("hash", &of_epoch) else {
        panic!("not a request");
    };
    assert_eq!(r.epoch, 7);
    of_epoch.epoch = None;
    let MintQuoteMessage::Request(r) = batcher::request("hash", &of_epoch) else {
        panic!("not a request");
    };
    assert_eq!(r.epoch, ext_mint_quote::NO_EPOCH);
}

/// Requests the mint receives within `wait`.
async fn requests_within(
    rx: &mut mpsc::Receiver<MintQuoteMessage>,
    wait: Duration,
) -> Vec<([u8; 32], u64)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let MintQuoteMessage::Request(r) = m else {
            panic!("the pool sent the mint {m:?}");
        };
        out.push((r.request_id.to_array(), r.amount));
    }
    out
}

#[tokio::test]
async fn the_batcher_requests_whole_units_and_resends_the_same_request_until_answered() {
    let q = Quotes::start(|c| {
        c.quotes.batch_interval_ms = 20;
        c.quotes.retry_interval_ms = 50;
    })
    .await;
    // 2 ehash and a bit for key 1; less than one for key 2 (stays pending).
    q.accrue(key(1), &[q.work(2, 7)]).await;
    q.accrue(key(2), &[q.work(0, 9)]).await;
    let link = Arc::new(MintLink::default());
    let (tx, mut mint) = mpsc::channel(64);
    link.attach(tx).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(batcher::run(
        q.ctx.config.clone(),
        q.ledger().clone(),
        link.clone(),
        shutdown.clone(),
    ));
    let sent = requests_within(&mut mint, Duration::from_millis(400)).await;
    let open = q.ledger().open_batches().await.unwrap();
    assert_eq!(open.len(), 1, "one batch, for key 1 only");
    assert_eq!((open[0].locking_key, open[0].amount), (key(1), 2));
    // Sent at creation and resent, always under the one request id.
    assert!(sent.len() >= 2, "{sent:?}");
    assert!(
        sent.iter().all(|s| *s == (open[0].request_id, 2)),
        "{sent:?}"
    );
    assert_eq!(q.pending(key(1)).await, Work::from_hashes(7));
    assert_eq!(q.pending(key(2)).await, q.work(0, 9));

    // Answered: no more resends.
    q.ledger()
        .record_quote(&open[0].request_id, "q")
        .await
        .unwrap()
        .unwrap();
    requests_within(&mut mint, Duration::from_millis(100)).await;
    assert!(requests_within(&mut mint, Duration::from_millis(200))
        .await
        .is_empty());
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the batcher stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn a_batch_made_while_no_mint_is_connected_is_sent_when_one_connects() {
    let q = Quotes::start(|c| {
        c.quotes.batch_interval_ms = 20;
        // No retry tick during the test: only the mint's arrival sends the request.
        c.quotes.retry_interval_ms = 3_600_000;
    })
    .await;
    q.accrue(key(1), &[q.work(4, 0)]).await;
    let link = Arc::new(MintLink::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(batcher::run(
        q.ctx.config.clone(),
        q.ledger().clone(),
        link.clone(),
        shutdown.clone(),
    ));
    let mut open = Vec::new();
    for _ in 0..100 {
        open = q.ledger().open_batches().await.unwrap();
        if !open.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open.len(), 1, "the batch is made (and kept) without a mint");
    assert!(!link.send(batcher::request("hash", &open[0])).await);

    let (tx, mut mint) = mpsc::channel(64);
    link.attach(tx).await;
    let sent = requests_within(&mut mint, Duration::from_millis(300)).await;
    assert_eq!(sent, vec![(open[0].request_id, 4)]);
    shutdown.cancel();
    task.await.unwrap();
}
