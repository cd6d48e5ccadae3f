//! Hashing threads. They read the current work, grind nonces, and hand shares that meet the
//! channel target back to the connection.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use bitcoin::{
    hashes::{sha256d, Hash},
    Target,
};
use tokio::sync::mpsc;

use crate::MinerStats;

/// What to hash: a header template and the target shares must meet.
#[derive(Debug, Clone)]
pub struct Work {
    pub job_id: u32,
    pub version: u32,
    pub prev_hash: [u8; 32],
    pub merkle_root: [u8; 32],
    pub ntime: u32,
    pub nbits: u32,
    pub target: Target,
}

#[derive(Debug, Clone, Copy)]
pub struct FoundShare {
    pub job_id: u32,
    pub nonce: u32,
    pub ntime: u32,
    pub version: u32,
}

/// Shared between the connection (writer) and the hashing threads (readers).
#[derive(Default)]
pub struct WorkSlot {
    work: RwLock<Option<Work>>,
    generation: AtomicU64,
}

impl WorkSlot {
    pub fn set(&self, work: Option<Work>) {
        *self.work.write().unwrap_or_else(|p| p.into_inner()) = work;
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn current(&self) -> (u64, Option<Work>) {
        let generation = self.generation.load(Ordering::Acquire);
        let work = self.work.read().unwrap_or_else(|p| p.into_inner()).clone();
        (generation, work)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

fn header_bytes(w: &Work, ntime: u32) -> [u8; 80] {
    let mut h = [0u8; 80];
    h[0..4].copy_from_slice(&w.version.to_le_bytes());
    h[4..36].copy_from_slice(&w.prev_hash);
    h[36..68].copy_from_slice(&w.merkle_root);
    h[68..72].copy_from_slice(&ntime.to_le_bytes());
    h[72..76].copy_from_slice(&w.nbits.to_le_bytes());
    h
}

const BATCH: u32 = 1024;

/// Running hashing threads, the work they read and the shares they find. Both miners (SV2 and
/// SV1) keep one of these across reconnections.
pub struct Hashers {
    pub slot: Arc<WorkSlot>,
    pub shares: mpsc::Receiver<FoundShare>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hashers {
    pub fn start(threads: usize, hashrate_limit: Option<f64>, stats: Arc<MinerStats>) -> Self {
        let slot = Arc::new(WorkSlot::default());
        let (share_tx, shares) = mpsc::channel(4096);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = spawn(
            threads,
            hashrate_limit,
            slot.clone(),
            share_tx,
            stats,
            stop.clone(),
        );
        Self {
            slot,
            shares,
            stop,
            threads,
        }
    }

    /// Stops the threads and waits for them (they notice within one batch), off the runtime.
    pub async fn stop(self) {
        let Self {
            stop,
            threads,
            shares,
            ..
        } = self;
        stop.store(true, Ordering::Relaxed);
        // A thread waiting for room in the share queue wakes up when it is gone.
        drop(shares);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Spawns `threads` hashing threads; they stop when `stop` reports true.
fn spawn(
    threads: usize,
    hashrate_limit: Option<f64>,
    slot: Arc<WorkSlot>,
    shares: mpsc::Sender<FoundShare>,
    stats: Arc<MinerStats>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let threads = threads.max(1);
    (0..threads)
        .map(|i| {
            let slot = slot.clone();
            let shares = shares.clone();
            let stats = stats.clone();
            let stop = stop.clone();
            let per_thread_rate = hashrate_limit.map(|r| (r / threads as f64).max(1.0));
            std::thread::Builder::new()
                .name(format!("hasher-{i}"))
                .spawn(move || {
                    hash_loop(
                        i as u32,
                        threads as u32,
                        per_thread_rate,
                        &slot,
                        &shares,
                        &stats,
                        &stop,
                    )
                })
                .expect("spawning a hashing thread")
        })
        .collect()
}

/// Whether two works hash the same headers (they may differ in target only).
fn same_header(a: &Work, b: &Work) -> bool {
    (
        a.job_id,
        a.version,
        a.prev_hash,
        a.merkle_root,
        a.ntime,
        a.nbits,
    ) == (
        b.job_id,
        b.version,
        b.prev_hash,
        b.merkle_root,
        b.ntime,
        b.nbits,
    )
}

fn hash_loop(
    index: u32,
    threads: u32,
    rate: Option<f64>,
    slot: &WorkSlot,
    shares: &mpsc::Sender<FoundShare>,
    stats: &MinerStats,
    stop: &std::sync::atomic::AtomicBool,
) {
    let span = u32::MAX / threads;
    let start_nonce = index.wrapping_mul(span);
    // The work being hashed and where in it this thread is.
    let mut current: Option<Work> = None;
    let (mut ntime, mut nonce, mut header) = (0, start_nonce, [0u8; 80]);
    let (mut started, mut done) = (Instant::now(), 0u64);
    while !stop.load(Ordering::Relaxed) {
        let (generation, Some(work)) = slot.current() else {
            current = None;
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        // A new target for the same job (SetTarget, set_difficulty) goes on from where the
        // thread was: starting the nonce range again would find the shares already sent.
        if !current.as_ref().is_some_and(|c| same_header(c, &work)) {
            ntime = work.ntime;
            header = header_bytes(&work, ntime);
            nonce = start_nonce;
            (started, done) = (Instant::now(), 0);
        }
        current = Some(work.clone());
        'work: while slot.generation() == generation && !stop.load(Ordering::Relaxed) {
            for _ in 0..BATCH {
                header[76..80].copy_from_slice(&nonce.to_le_bytes());
                let hash = sha256d::Hash::hash(&header);
                if Target::from_le_bytes(hash.to_byte_array()) <= work.target {
                    let share = FoundShare {
                        job_id: work.job_id,
                        nonce,
                        ntime,
                        version: work.version,
                    };
                    if shares.blocking_send(share).is_err() {
                        return;
                    }
                }
                nonce = nonce.wrapping_add(1);
                if nonce.wrapping_sub(start_nonce) >= span {
                    // This thread's nonce range is spent: move to the next second.
                    nonce = start_nonce;
                    ntime = ntime.wrapping_add(1);
                    header = header_bytes(&work, ntime);
                    continue 'work;
                }
            }
            done += BATCH as u64;
            stats.hashes.fetch_add(BATCH as u64, Ordering::Relaxed);
            if let Some(rate) = rate {
                let due = Duration::from_secs_f64(done as f64 / rate);
                while let Some(wait) = due.checked_sub(started.elapsed()) {
                    if slot.generation() != generation || stop.load(Ordering::Relaxed) {
                        break 'work;
                    }
                    // Sleep in short slices so new work is picked up promptly.
                    std::thread::sleep(wait.min(Duration::from_millis(50)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn work(target: [u8; 32]) -> Work {
        Work {
            job_id: 1,
            version: 0x2000_0000,
            prev_hash: [1; 32],
            merkle_root: [2; 32],
            ntime: 100,
            nbits: 0x207f_ffff,
            target: Target::from_le_bytes(target),
        }
    }

    async fn take(hashers: &mut Hashers, n: usize, seen: &mut HashSet<(u32, u32)>) -> usize {
        let mut repeated = 0;
        for _ in 0..n {
            let share = hashers.shares.recv().await.expect("hashing threads run");
            if !seen.insert((share.ntime, share.nonce)) {
                repeated += 1;
            }
        }
        repeated
    }

    #[tokio::test]
    async fn a_new_target_for_the_same_job_never_repeats_a_share() {
        let mut hashers = Hashers::start(1, None, Arc::new(MinerStats::default()));
        // Every hash meets this target: each nonce tried is a share.
        hashers.slot.set(Some(work([0xff; 32])));
        let mut seen = HashSet::new();
        assert_eq!(take(&mut hashers, 100, &mut seen).await, 0);
        // The same job at another (still trivial) target: hashing goes on from where it was.
        let mut retargeted = [0xff; 32];
        retargeted[31] = 0xfe;
        hashers.slot.set(Some(work(retargeted)));
        // More than the share queue holds, so shares hashed after the change are read too.
        assert_eq!(take(&mut hashers, 6_000, &mut seen).await, 0);
        // A different job starts its nonce range from the beginning.
        let mut other = work([0xff; 32]);
        other.job_id = 2;
        hashers.slot.set(Some(other));
        let first = loop {
            let share = hashers.shares.recv().await.expect("hashing threads run");
            if share.job_id == 2 {
                break share;
            }
        };
        assert_eq!((first.ntime, first.nonce), (100, 0));
        // Threads blocked on a full share queue stop too.
        hashers.stop().await;
    }
}
