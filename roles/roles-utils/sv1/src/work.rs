//! What SV1 encodes differently from the header: the previous hash's word order, targets as
//! "difficulty" (pool difficulty 1 = target 0xffff * 2^208), and the coinbase merkle path.

use bitcoin::hashes::{sha256d, Hash};

/// Difficulty 1 target is 0xffff * 2^208.
const DIFF1_MANTISSA: f64 = 65535.0;
const DIFF1_SHIFT: i32 = 208;

/// SV1 sends the previous hash as eight 4-byte words of the header's bytes, each word
/// byte-reversed, in hex.
pub fn prev_hash_to_sv1(header_prev_hash: &[u8; 32]) -> String {
    let mut out = [0u8; 32];
    for (o, i) in out.chunks_mut(4).zip(header_prev_hash.chunks(4)) {
        o.copy_from_slice(&[i[3], i[2], i[1], i[0]]);
    }
    hex::encode(out)
}

/// The header's bytes of an SV1 previous hash; `None` if it is not 64 hex digits.
pub fn prev_hash_from_sv1(sv1: &str) -> Option<[u8; 32]> {
    let bytes: [u8; 32] = hex::decode(sv1).ok()?.try_into().ok()?;
    let mut out = [0u8; 32];
    for (o, i) in out.chunks_mut(4).zip(bytes.chunks(4)) {
        o.copy_from_slice(&[i[3], i[2], i[1], i[0]]);
    }
    Some(out)
}

/// The 256-bit target (little-endian bytes, as SV2 carries it) of a pool difficulty. Difficulties
/// too small for 256 bits give the maximal target.
pub fn difficulty_to_target(difficulty: f64) -> [u8; 32] {
    let max = [0xff; 32];
    if !difficulty.is_finite() || difficulty <= 0.0 {
        return max;
    }
    let q = DIFF1_MANTISSA / difficulty;
    if q == 0.0 {
        return [0; 32];
    }
    // q = m * 2^(e - 53) with m a 53-bit integer.
    let e = q.log2().floor() as i32 + 1;
    let m = (q / 2f64.powi(e - 53)) as u64;
    let shift = e - 53 + DIFF1_SHIFT;
    if shift + 53 > 256 {
        return max;
    }
    let mut limbs = [0u64; 4];
    if shift < 0 {
        limbs[0] = m >> (-shift).min(63);
    } else {
        let (word, bit) = ((shift / 64) as usize, (shift % 64) as u32);
        limbs[word] = m << bit;
        if bit > 0 && word + 1 < 4 {
            limbs[word + 1] = m >> (64 - bit);
        }
    }
    let mut out = [0u8; 32];
    for (i, l) in limbs.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&l.to_le_bytes());
    }
    out
}

/// The pool difficulty of a target (little-endian bytes).
pub fn target_to_difficulty(target: &[u8; 32]) -> f64 {
    let value: f64 = target
        .chunks(8)
        .enumerate()
        .map(|(i, c)| {
            u64::from_le_bytes(c.try_into().expect("8 bytes")) as f64 * 2f64.powi(64 * i as i32)
        })
        .sum();
    if value == 0.0 {
        return f64::INFINITY;
    }
    DIFF1_MANTISSA * 2f64.powi(DIFF1_SHIFT) / value
}

/// Merkle root (internal byte order) from the coinbase's txid and the path SV1 sends.
pub fn merkle_root(coinbase: &[u8], branch: &[[u8; 32]]) -> [u8; 32] {
    let mut acc = sha256d::Hash::hash(coinbase).to_byte_array();
    for b in branch {
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(&acc);
        both[32..].copy_from_slice(b);
        acc = sha256d::Hash::hash(&both).to_byte_array();
    }
    acc
}

/// A share's block header.
pub struct ShareHeader<'a> {
    pub version: u32,
    /// Header byte order (as [`prev_hash_from_sv1`] returns it).
    pub prev_hash: &'a [u8; 32],
    pub merkle_root: &'a [u8; 32],
    pub ntime: u32,
    pub nbits: u32,
    pub nonce: u32,
}

impl ShareHeader<'_> {
    pub fn bytes(&self) -> [u8; 80] {
        let mut header = [0u8; 80];
        header[0..4].copy_from_slice(&self.version.to_le_bytes());
        header[4..36].copy_from_slice(self.prev_hash);
        header[36..68].copy_from_slice(self.merkle_root);
        header[68..72].copy_from_slice(&self.ntime.to_le_bytes());
        header[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        header[76..80].copy_from_slice(&self.nonce.to_le_bytes());
        header
    }

    /// The header's hash as a little-endian number, to compare with a target.
    pub fn hash(&self) -> bitcoin::Target {
        bitcoin::Target::from_le_bytes(sha256d::Hash::hash(&self.bytes()).to_byte_array())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be_hex(target: &[u8; 32]) -> String {
        let mut be = *target;
        be.reverse();
        hex::encode(be)
    }

    #[test]
    fn difficulty_one_is_the_classic_target() {
        assert_eq!(
            be_hex(&difficulty_to_target(1.0)),
            "00000000ffff0000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            be_hex(&difficulty_to_target(2.0)),
            "000000007fff8000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            be_hex(&difficulty_to_target(65536.0)),
            "000000000000ffff000000000000000000000000000000000000000000000000"
        );
    }

    #[test]
    fn difficulty_and_target_invert() {
        for d in [1e-6, 0.001, 0.5, 1.0, 3.7, 1024.0, 1e9, 1e14] {
            let back = target_to_difficulty(&difficulty_to_target(d));
            assert!((back - d).abs() / d < 1e-9, "{d} -> {back}");
        }
        assert_eq!(difficulty_to_target(0.0), [0xff; 32]);
        assert_eq!(difficulty_to_target(f64::NAN), [0xff; 32]);
        assert_eq!(difficulty_to_target(1e-80), [0xff; 32]);
    }

    #[test]
    fn prev_hash_words_swap_and_come_back() {
        let mut h = [0u8; 32];
        for (i, b) in h.iter_mut().enumerate() {
            *b = i as u8;
        }
        let sv1 = prev_hash_to_sv1(&h);
        assert!(sv1.starts_with("03020100"));
        assert_eq!(prev_hash_from_sv1(&sv1), Some(h));
        assert_eq!(prev_hash_from_sv1("zz"), None);
    }

    #[test]
    fn merkle_root_of_a_lone_coinbase_is_its_txid() {
        let cb = b"coinbase";
        assert_eq!(
            merkle_root(cb, &[]),
            sha256d::Hash::hash(cb).to_byte_array()
        );
        let one = merkle_root(cb, &[[1; 32]]);
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(&sha256d::Hash::hash(cb).to_byte_array());
        both[32..].copy_from_slice(&[1; 32]);
        assert_eq!(one, sha256d::Hash::hash(&both).to_byte_array());
    }
}
