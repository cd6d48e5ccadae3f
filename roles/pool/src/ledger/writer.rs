//! The one task every ledger write goes through, in queue order: queued shares committed
//! together (group commit), batch creation and the mint's answers between groups.

use std::sync::{atomic::AtomicU64, Arc};

use ext_mint_quote::LockingKey;
use hashpool_ehash::UnitWork;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error};

use super::{
    batches,
    book::Book,
    epochs::{self, OpenEpoch},
    error::LedgerError,
    metrics::LedgerMetrics,
    retention::{self, Pruned},
    share_commit::write_group,
    store::{begin_write, finish, Db},
    Batch,
};
use crate::accepted_share::AcceptedShare;

/// Shares written in one transaction at most.
pub(super) const MAX_GROUP: usize = 4096;

/// Resolves once the share is durable: `Ok(true)` credited, `Ok(false)` already in the ledger
/// (a replay: not credited twice), `Err(AccrualOverflow)` refused, not stored.
pub type Receipt = oneshot::Receiver<Result<bool, LedgerError>>;

/// Resolves once every share handed in together is durable: their outcomes, in order (as
/// [`Receipt`]'s).
pub type Receipts = oneshot::Receiver<Vec<Result<bool, LedgerError>>>;

/// Shares handed in together, answered together: one queue entry and one wake-up for all the
/// shares of a miner's burst of frames.
pub(super) struct Pending {
    pub(super) shares: Vec<AcceptedShare>,
    pub(super) done: Done,
}

pub(super) enum Done {
    One(oneshot::Sender<Result<bool, LedgerError>>),
    Many(oneshot::Sender<Vec<Result<bool, LedgerError>>>),
}

impl Done {
    pub(super) fn send(self, mut outcomes: Vec<Result<bool, LedgerError>>) {
        match self {
            Done::One(done) => {
                let _ = done.send(outcomes.pop().unwrap_or(Err(LedgerError::Stopped)));
            }
            Done::Many(done) => {
                let _ = done.send(outcomes);
            }
        }
    }
}

/// What the writer task does, in queue order.
pub(super) enum Command {
    Shares(Pending),
    CreateBatches {
        unit: UnitWork,
        done: oneshot::Sender<Result<Vec<Batch>, LedgerError>>,
    },
    RecordQuote {
        request_id: [u8; 32],
        quote_id: String,
        done: oneshot::Sender<Result<Option<Batch>, LedgerError>>,
    },
    RecordRefusal {
        request_id: [u8; 32],
        code: String,
        done: oneshot::Sender<Result<Option<Batch>, LedgerError>>,
    },
    Prune {
        /// Log rows committed before this (unix ms) go.
        before_ms: i64,
        done: oneshot::Sender<Result<Pruned, LedgerError>>,
    },
    /// The network's work per block at a new tip: sizes the next epoch, and opens the first.
    NetworkWork(hashpool_ehash::Work),
    BlockStatus {
        hash: bitcoin::BlockHash,
        status: super::found_blocks::BlockStatus,
        confirmations: i64,
        done: oneshot::Sender<Result<bool, LedgerError>>,
    },
    /// A write of settlement's own (the payouts), in queue order with the others; it answers
    /// on its own channel.
    Run(Job),
}

/// What [`Command::Run`] runs.
pub(super) type Job =
    Box<dyn FnOnce(Db) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

/// Runs every write. Batch creation, the mint's answers and pruning come in on `control` and
/// go first whenever both queues hold something, so a flood of shares never holds a batch back
/// by more than the group being committed.
pub(super) async fn writer(
    db: Db,
    mut book: Book,
    mut control: mpsc::Receiver<Command>,
    mut rx: mpsc::Receiver<Command>,
    examined: Arc<AtomicU64>,
    unit_work: UnitWork,
    metrics: Arc<LedgerMetrics>,
) {
    let batch_work = |b: &Batch| u128::from(b.amount).saturating_mul(unit_work.work().hashes());
    loop {
        let command = tokio::select! {
            biased;
            Some(c) = control.recv() => c,
            Some(c) = rx.recv() => c,
            else => return,
        };
        match command {
            Command::Shares(first) => {
                let mut count = first.shares.len();
                let mut group = vec![first];
                while count < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(Command::Shares(p)) => {
                            count += p.shares.len();
                            group.push(p);
                        }
                        // Only shares come in on this queue.
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                let credited =
                    commit_group(&db, &mut book, group, &metrics, unit_work, &examined).await;
                if let Some(keys) = book.dirty.as_mut() {
                    keys.extend(credited);
                }
            }
            Command::CreateBatches { unit, done } => {
                let result = batches::create(&db, &mut book, unit, &examined).await;
                if let Ok(created) = &result {
                    let taken = created.iter().map(batch_work).sum();
                    metrics.batched(created.len(), taken, hashpool_role::unix_now_ms());
                }
                let _ = done.send(result);
            }
            Command::RecordQuote {
                request_id,
                quote_id,
                done,
            } => {
                let result = batches::record_quote(&db.pool, &request_id, &quote_id).await;
                if let Ok(Some(batch)) = &result {
                    super::quote_feed::publish(&db, batch).await;
                    metrics.closed(&db.pool, 0).await;
                }
                let _ = done.send(result);
            }
            Command::RecordRefusal {
                request_id,
                code,
                done,
            } => {
                let result = batches::record_refusal(&db, &mut book, &request_id, &code).await;
                // The returned work is pending again: the next creation must look at its key.
                if let Ok(Some(batch)) = &result {
                    if let Some(keys) = book.dirty.as_mut() {
                        keys.insert(batch.locking_key);
                    }
                    metrics.closed(&db.pool, batch_work(batch)).await;
                }
                let _ = done.send(result);
            }
            Command::Prune { before_ms, done } => {
                let _ = done.send(retention::prune(&db, before_ms).await);
            }
            Command::NetworkWork(work) => {
                book.network_work = Some(work);
                if book.epoch.is_none() {
                    if let Err(e) = open_first_epoch(&db, &mut book).await {
                        error!("opening the first epoch failed: {e}");
                    }
                }
            }
            Command::BlockStatus {
                hash,
                status,
                confirmations,
                done,
            } => {
                let result =
                    super::found_blocks::set_status(&db.pool, &hash, status, confirmations).await;
                let _ = done.send(result);
            }
            Command::Run(job) => job(db.clone()).await,
        }
    }
}

/// Opens the first epoch where the pool's work stands, sized from the network's work per
/// block the book now knows (work before it is no epoch's). Another instance may have opened
/// it first: the catch-up then finds it, and nothing is written.
async fn open_first_epoch(db: &Db, book: &mut Book) -> Result<(), LedgerError> {
    let Some(network_work) = book.network_work else {
        return Ok(());
    };
    let mut conn = begin_write(db).await?;
    let result = async {
        book.catch_up(&mut conn).await?;
        if book.epoch.is_some() {
            return Ok(None);
        }
        let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM epochs")
            .fetch_one(&mut *conn)
            .await?;
        let epoch = OpenEpoch {
            index: u32::try_from(next)
                .map_err(|_| LedgerError::Database("corrupt epoch index".into()))?,
            start: book.pool_work,
            length: book.sizing.length(network_work),
            network_work,
        };
        epochs::insert(&mut conn, &epoch).await?;
        super::book::set_generation(&mut conn, book.next_generation()).await?;
        Ok(Some(epoch))
    }
    .await;
    if let Some(epoch) = finish(conn, result).await? {
        book.epoch = Some(epoch);
        book.generation = book.next_generation();
    }
    Ok(())
}

/// Commits a group; returns the keys whose shares were credited. Where a share starts the next
/// epoch, the part before it is committed, the epoch turns (its batches made) and the rest
/// follows.
pub(super) async fn commit_group(
    db: &Db,
    book: &mut Book,
    group: Vec<Pending>,
    metrics: &LedgerMetrics,
    unit_work: UnitWork,
    examined: &AtomicU64,
) -> Vec<LockingKey> {
    let shares: Vec<&AcceptedShare> = group.iter().flat_map(|p| &p.shares).collect();
    let started = std::time::Instant::now();
    let mut outcomes: Vec<Result<bool, LedgerError>> = Vec::with_capacity(shares.len());
    while outcomes.len() < shares.len() {
        let rest = &shares[outcomes.len()..];
        let failed = match write_group(db, book, rest).await {
            Ok(written) => {
                outcomes.extend(written.outcomes);
                match written.epoch_ends_at {
                    None => None,
                    Some(_) => match batches::turn_epoch(db, book, unit_work, examined).await {
                        Ok(created) => {
                            let taken = created
                                .iter()
                                .map(|b| {
                                    u128::from(b.amount).saturating_mul(unit_work.work().hashes())
                                })
                                .sum();
                            metrics.batched(created.len(), taken, hashpool_role::unix_now_ms());
                            None
                        }
                        Err(e) => Some(e),
                    },
                }
            }
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            let unwritten = shares.len() - outcomes.len();
            error!("ledger write failed; {unwritten} share(s) not acknowledged: {e}");
            outcomes.extend(std::iter::repeat_n(Err(e), unwritten));
        }
    }
    metrics.commit_seconds.observe_duration(started.elapsed());
    metrics.set_pool_work(book.pool_work.hashes());
    debug!(shares = shares.len(), "ledger group committed");
    let mut credited = Vec::new();
    let mut outcomes = outcomes.into_iter();
    for p in group {
        let mine: Vec<_> = outcomes.by_ref().take(p.shares.len()).collect();
        for (share, outcome) in p.shares.iter().zip(&mine) {
            if *outcome == Ok(true) {
                metrics.credited(share.work.hashes());
                credited.push(share.locking_key);
            }
        }
        p.done.send(mine);
    }
    credited
}
