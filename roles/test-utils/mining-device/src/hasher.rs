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
        self.stop.store(true, Ordering::Relaxed);
        let threads = self.threads;
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
    while !stop.load(Ordering::Relaxed) {
        let (generation, Some(work)) = slot.current() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let mut ntime = work.ntime;
        let mut header = header_bytes(&work, ntime);
        let start_nonce = index.wrapping_mul(span);
        let mut nonce = start_nonce;
        let started = Instant::now();
        let mut done: u64 = 0;
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
