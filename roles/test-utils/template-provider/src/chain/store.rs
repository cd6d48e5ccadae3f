//! Append-only block file: each record is a little-endian u32 length and a consensus-encoded
//! block. A torn last record (the process died mid-write) is cut off on open; a reorg
//! (`invalidateblock`) cuts the file back to the block it keeps.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    path::{Path, PathBuf},
};

use bitcoin::{consensus, Block};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("block file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("block file {path}: record {index} is not a valid block: {reason}")]
    Corrupt {
        path: PathBuf,
        index: usize,
        reason: String,
    },
}

pub struct BlockStore {
    path: PathBuf,
    file: File,
    /// File length after each stored record (record `i` is the block at height `i + 1`).
    ends: Vec<u64>,
}

impl BlockStore {
    /// Opens (creating if needed) `dir/blocks.dat` and returns it with every stored block.
    pub fn open(dir: &Path) -> Result<(Self, Vec<Block>), StoreError> {
        let path = dir.join("blocks.dat");
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;

        let mut blocks = Vec::new();
        let mut ends = Vec::new();
        let mut offset = 0usize;
        while offset + 4 <= bytes.len() {
            let len =
                u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes")) as usize;
            let Some(record) = bytes.get(offset + 4..offset + 4 + len) else {
                break; // torn tail
            };
            let block: Block = consensus::deserialize(record).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                index: blocks.len(),
                reason: e.to_string(),
            })?;
            blocks.push(block);
            offset += 4 + len;
            ends.push(offset as u64);
        }
        if offset != bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = bytes.len() - offset,
                "block file ends in a torn record; cutting it off"
            );
            file.set_len(offset as u64).map_err(io)?;
        }
        Ok((Self { path, file, ends }, blocks))
    }

    /// Appends `block` durably (fsync) before returning.
    pub fn append(&mut self, block: &Block) -> Result<(), StoreError> {
        let bytes = consensus::serialize(block);
        let mut record = Vec::with_capacity(bytes.len() + 4);
        record.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        record.extend_from_slice(&bytes);
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&record).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        let end = self.ends.last().copied().unwrap_or(0) + record.len() as u64;
        self.ends.push(end);
        Ok(())
    }

    /// Keeps the first `kept` records (the blocks up to height `kept`) and durably drops the
    /// rest.
    pub fn truncate(&mut self, kept: usize) -> Result<(), StoreError> {
        if kept >= self.ends.len() {
            return Ok(());
        }
        let len = kept.checked_sub(1).map_or(0, |i| self.ends[i]);
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.set_len(len).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.ends.truncate(kept);
        Ok(())
    }
}
