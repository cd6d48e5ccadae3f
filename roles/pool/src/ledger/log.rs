//! The share log's record format. A record is a share's 32-byte hash followed by its key id,
//! channel id and work as LEB128 varints: about 36 to 40 bytes for a share of ordinary
//! difficulty, written many to a row.

use hashpool_ehash::Work;

use super::error::LedgerError;

/// One share as the log keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    pub hash: [u8; 32],
    pub key_id: u64,
    pub channel_id: u32,
    pub work: Work,
}

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn take_varint(bytes: &[u8], at: &mut usize, max_bits: u32) -> Result<u128, LedgerError> {
    let mut value = 0u128;
    let mut shift = 0u32;
    loop {
        let byte = *bytes.get(*at).ok_or_else(corrupt)?;
        *at += 1;
        let part = u128::from(byte & 0x7f);
        if shift >= max_bits || (shift > 0 && part >> (max_bits - shift) != 0) {
            return Err(corrupt());
        }
        value |= part << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

fn corrupt() -> LedgerError {
    LedgerError::Database("corrupt share log record".into())
}

impl Record {
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        put_varint(out, u128::from(self.key_id));
        put_varint(out, u128::from(self.channel_id));
        put_varint(out, self.work.hashes());
    }
}

/// Decodes the records of one log row; `count` is the row's own count, checked.
pub(super) fn decode(bytes: &[u8], count: usize) -> Result<Vec<Record>, LedgerError> {
    let mut out = Vec::with_capacity(count);
    let mut at = 0;
    while at < bytes.len() {
        let hash: [u8; 32] = bytes
            .get(at..at + 32)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(corrupt)?;
        at += 32;
        let key_id = take_varint(bytes, &mut at, 64)? as u64;
        let channel_id = take_varint(bytes, &mut at, 32)? as u32;
        let work = Work::from_hashes(take_varint(bytes, &mut at, 128)?);
        out.push(Record {
            hash,
            key_id,
            channel_id,
            work,
        });
    }
    if out.len() != count {
        return Err(corrupt());
    }
    Ok(out)
}

/// The id of a chain tip in the log and in the duplicate filter: 8 bytes of its hash (the
/// low-order ones, which are random).
pub fn tip_id(prev_hash: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    if let Some(low) = prev_hash.get(..8) {
        b.copy_from_slice(low);
    }
    i64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8, key_id: u64, channel_id: u32, work: u128) -> Record {
        Record {
            hash: [n; 32],
            key_id,
            channel_id,
            work: Work::from_hashes(work),
        }
    }

    #[test]
    fn records_round_trip_at_every_width() {
        let records = [
            record(1, 0, 0, 0),
            record(2, 1, 1, 1),
            record(3, u64::MAX, u32::MAX, u128::MAX),
            record(4, 300, 70_000, 4_294_967_296),
        ];
        let mut bytes = Vec::new();
        for r in &records {
            r.encode(&mut bytes);
        }
        assert_eq!(decode(&bytes, records.len()).unwrap(), records);
    }

    #[test]
    fn a_share_takes_under_fifty_bytes() {
        let mut bytes = Vec::new();
        // Key 5,000, channel 20,000, difficulty 2^40 (2^72 hashes): 32 + 2 + 3 + 11 bytes.
        record(9, 5_000, 20_000, 1u128 << 72).encode(&mut bytes);
        assert_eq!(bytes.len(), 48);
    }

    #[test]
    fn truncated_or_overlong_records_are_refused() {
        let mut bytes = Vec::new();
        record(1, 7, 7, 7).encode(&mut bytes);
        assert!(decode(&bytes[..bytes.len() - 1], 1).is_err());
        assert!(decode(&bytes, 2).is_err());
        // A channel id wider than 32 bits.
        let mut wide = vec![0u8; 32];
        put_varint(&mut wide, 1);
        put_varint(&mut wide, 1u128 << 40);
        put_varint(&mut wide, 1);
        assert!(decode(&wide, 1).is_err());
        // A varint that never ends.
        let mut endless = vec![0u8; 32];
        endless.extend_from_slice(&[0xff; 40]);
        assert!(decode(&endless, 1).is_err());
    }
}
